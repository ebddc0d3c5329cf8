/* dcmjson: a DICOM data set (bytes, as walked by dicom/dataset.h) to the DICOM JSON Model
 * (PS3.18 Annex F.2) as a jansson object, for WADO-RS metadata and QIDO-RS answers. Pure (no
 * I/O). Keys are "GGGGEEEE" (upper-case hex); each attribute is {"vr": "XX", "Value": [...]}
 * with "Value" left out when the value is empty (every value empty included, as dcm2json).
 *  - Strings: converted to UTF-8 through dicom/charset.h in the data set's Specific Character
 *    Set (0008,0005); an item's own (0008,0005) applies inside that item (PS3.3 C.12.1.1.2),
 *    and every (0008,0005) is written "ISO_IR 192" (even an empty one), the set the JSON text
 *    is in, as dcm2json does. Multi-valued VRs (AE AS CS DA DS DT IS LO PN SH TM UC UI) split on
 *    '\', an empty value is null; LT ST UT UR are single-valued. Trailing spaces and NULs are
 *    removed from every string; leading spaces too, value by value, except for LT ST UT UR
 *    UC, where PS3.5 6.2 makes them significant. A NUL inside a text value (not trailing
 *    padding) is refused.
 *  - PN: {"Alphabetic", "Ideographic", "Phonetic"} split on '=', an empty group left out; in
 *    each group the components are space-trimmed and trailing empty components dropped (PS3.5
 *    6.2.1.1); a name with no group left is null.
 *  - IS and DS: JSON numbers (DS as a double); a value that is not a number in PS3.5's form,
 *    or does not fit (IS in 64 bits, DS finite), is written as a JSON string, as dcm2json does
 *    (PS3.18 F.2.3 gives no rule for an invalid value; refusing the data set would lose the
 *    metadata of an instance over one bad attribute).
 *  - US SS UL SL FL FD SV UV: numbers from the binary value in its syntax's byte order; SV and
 *    UV beyond +-(2^53 - 1) are decimal strings (PS3.18 F.2.3.1). A non-finite FL/FD, or a
 *    length that is not a multiple of the VR's size, is refused. AT: "GGGGEEEE" strings.
 *  - SQ: an array of item objects, defined or undefined length, empty sequence {"vr":"SQ"},
 *    empty item {}. An explicit UN of undefined length (CP-246) is written as SQ.
 *  - OB OD OF OL OV OW UN (and any VR the walker read but DICOM does not define, written as
 *    "UN"): "InlineBinary" (base64, in little-endian byte order whatever the syntax) when the
 *    value is at most inline_max bytes; longer: "BulkDataURI" when bulk_uri is set, else the
 *    vr only. Encapsulated pixel data is never inlined. An empty value has the vr only.
 *  - Implicit VR: each VR comes from PS3.6's dictionary (pydicom's copy, built in), "US or SS"
 *    by Pixel Representation (0028,0103) of the same data set or item (as dcmtk), "OB or OW"
 *    as OW, private creators LO, group lengths UL, anything else UN.
 * Refusals are HDX_E_INVAL with a fixed reason in why (never input bytes): what the walker
 * refuses, a value invalid in its character set or an unknown set, the refusals above;
 * HDX_E_TOOBIG past max_bytes; HDX_E_NOMEM. On any refusal *out is NULL.
 * PHI: the temporary buffers are wiped; the json_t strings are jansson's (the caller owns and
 * frees the object, and should not log it). Thread: any. */
#ifndef HDX_DICOM_DCMJSON_H
#define HDX_DICOM_DCMJSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dicom/dataset.h"

#define HDX_DCMJSON_MAX_BYTES_DEFAULT ((size_t)64 << 20)

struct hdx_dcmjson_opts {
    const struct hdx_ds_limits *lim; /* NULL: hdx_ds_limits_default */
    size_t inline_max;      /* binary VRs (OB OD OF OL OV OW UN) with a value longer than this are
                             * not inlined */
    const char *bulk_uri;   /* non-NULL: such a value becomes {"vr":..,"BulkDataURI": bulk_uri +
                             * "/" + path}, path "GGGGEEEE" for a top-level element and
                             * "GGGGEEEE/I/GGGGEEEE..." (item index from 0) for nested ones;
                             * NULL: the element is written with its vr only */
    int skip_group_lengths; /* (gggg,0000) left out */
    size_t max_bytes;       /* budget for the text and base64 held in the result (about its JSON
                             * size); 0: HDX_DCMJSON_MAX_BYTES_DEFAULT. HDX_E_TOOBIG past it */
};

/* p[0..n) in syntax syn (Explicit BE allowed) to a DICOM JSON object in *out (new reference).
 * o NULL: defaults (inline_max 0, no bulk_uri). HDX_OK; HDX_E_INVAL with why (fixed text) for
 * a data set the walker refuses or a value that does not convert; HDX_E_TOOBIG; HDX_E_NOMEM.
 * why may be NULL; it is "" on success. */
int hdx_dcmjson_dataset(const uint8_t *p, size_t n, enum hdx_ds_syntax syn,
                        const struct hdx_dcmjson_opts *o, json_t **out, char *why, size_t cap);

/* Sets one string-valued attribute in obj (replacing one of the same tag), for callers
 * building QIDO answers themselves: vr one of AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI
 * UR UT, or a numeric VR (US SS UL SL SV UV FL FD) given as decimal text; utf8_value is
 * UTF-8 (NULL or "": no Value), split and trimmed by the rules above. HDX_OK; HDX_E_INVAL
 * for a bad argument, a VR not listed, invalid UTF-8, a numeric text that is not a number in
 * its VR's range; HDX_E_NOMEM. */
int hdx_dcmjson_put(json_t *obj, uint16_t group, uint16_t element, const char *vr,
                    const char *utf8_value);

#endif
