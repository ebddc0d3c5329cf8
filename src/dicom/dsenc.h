/* dsenc: writes a DICOM data set (PS3.5 section 7): the identifiers of C-FIND responses, in the
 * negotiated transfer syntax (Implicit VR Little Endian, Explicit VR Little or Big Endian),
 * into a growable buffer bounded by max. Elements go in ascending tag order (a tag not above
 * the previous one is refused: a data set hdx writes is always sorted); values are padded to
 * an even length (UI with NUL, the others with a space); an explicit VR's length form follows
 * PS3.5 Table 7.1-1 (4-byte lengths for OB, OD, OF, OL, OV, OW, SQ, SV, UC, UN, UR, UT, UV).
 * Sequences are not written (C-FIND identifiers of hdx carry none). After any refusal the
 * encoder is failed: every later call refuses and the result must not be sent.
 * Thread: any. */
#ifndef HDX_DICOM_DSENC_H
#define HDX_DICOM_DSENC_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/dataset.h"

struct hdx_dsenc {
    uint8_t *buf;
    size_t len, cap, max;
    enum hdx_ds_syntax syntax;
    uint32_t last; /* the last tag written, (group << 16) | element; 0 before the first */
    int failed;
};

void hdx_dsenc_init(struct hdx_dsenc *e, enum hdx_ds_syntax syntax, size_t max);
/* One element. vr: two upper-case letters (used in explicit syntaxes; its length form is
 * checked against len: at most 65534 after padding for the 2-byte forms). HDX_OK,
 * HDX_E_INVAL (order, VR, length), HDX_E_TOOBIG (max), HDX_E_NOMEM. */
int hdx_dsenc_add(struct hdx_dsenc *e, uint16_t group, uint16_t element, const char *vr,
                  const void *value, size_t len);
/* The same for a NUL-terminated string. */
int hdx_dsenc_str(struct hdx_dsenc *e, uint16_t group, uint16_t element, const char *vr,
                  const char *s);
/* An unsigned short (US) in the syntax's byte order. */
int hdx_dsenc_us(struct hdx_dsenc *e, uint16_t group, uint16_t element, uint16_t v);
/* Frees the buffer (wiped: identifiers hold PHI). */
void hdx_dsenc_free(struct hdx_dsenc *e);

#endif
