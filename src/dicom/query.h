/* query: a C-FIND identifier (PS3.4 C.4.1.1.3) made into a catalogue query and its answers,
 * pure: the identifier is walked (dicom/dataset.h, depth and size limits), its Query/Retrieve
 * Level and Specific Character Set read, each key converted to UTF-8 and compiled
 * (dicom/match.h); the keys of the query's level and above become catalogue keys and the
 * attributes to return; an answer for one catalogue entity is written (dicom/dsenc.h) in the
 * query's character set when every value fits it, else in ISO_IR 192. A refusal has the
 * DIMSE status of PS3.4 C.4.1.1.4 and a fixed-shape reason that names the attribute, never a
 * value: A900 (no or bad level, PATIENT in Study Root, a key not well formed for its VR),
 * C000 (the identifier does not parse, its character set is unknown or its bytes invalid),
 * A700 (out of memory). Thread: any. */
#ifndef HDX_DICOM_QUERY_H
#define HDX_DICOM_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/catalog.h"
#include "dicom/dataset.h"
#include "dicom/dsenc.h"

#define HDX_DQUERY_KEYS_MAX 128  /* top-level elements of one identifier */
#define HDX_DQUERY_ALT_MAX 16    /* values of a multi-valued Modalities in Study key */
#define HDX_DQUERY_ID_MAX 65536  /* bytes of one identifier, and of one answer */
#define HDX_DQUERY_NAMES_MAX 160 /* the key names, comma-separated, for the audit record (cut) */

struct hdx_dquery_ret {
    uint16_t group, element;
    const struct hdx_dcat_attr *attr; /* NULL: the level or the character set */
};

struct hdx_charset;

struct hdx_dquery {
    enum hdx_ds_syntax syn;
    enum hdx_dcat_level level;
    /* what each answer carries, in tag order */
    struct hdx_dquery_ret ret[HDX_DQUERY_KEYS_MAX + 2];
    size_t nret;
    /* the compiled keys (m is malloc'd; hdx_dquery_drop_keys wipes it once the find ran) */
    struct hdx_dcat_key keys[HDX_DQUERY_KEYS_MAX];
    size_t nkeys;
    struct hdx_dmatch *m;
    size_t m_cap;
    struct hdx_charset *cs;
    char charset[65];
    int cs_utf8;
    int unsupported; /* a key hdx does not know was asked for: pending status FF01 */
    char names[HDX_DQUERY_NAMES_MAX];
};

/* Parses id (len bytes in syntax syn) for the model (study_root: no PATIENT level) into q
 * (zeroed here). HDX_OK, or a negative hdx_err with *status and why set; either way
 * hdx_dquery_free(q) afterwards. */
int hdx_dquery_parse(const uint8_t *id, size_t len, enum hdx_ds_syntax syn, int study_root,
                     struct hdx_dquery *q, uint16_t *status, char *why, size_t cap);
/* The compiled keys are only needed by the find: wiped and freed (they hold PHI). */
void hdx_dquery_drop_keys(struct hdx_dquery *q);
void hdx_dquery_free(struct hdx_dquery *q);
/* The answer for entity id of cat at q's level into e (initialised here; hdx_dsenc_free it).
 * HDX_OK or the encoder's error. */
int hdx_dquery_answer(const struct hdx_dquery *q, const struct hdx_dcat *cat, uint32_t id,
                      struct hdx_dsenc *e);

#endif
