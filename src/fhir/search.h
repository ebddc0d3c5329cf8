/* fhir/search: a FHIR search's query string into an index query (fhir/index.h), pure but for
 * the key context that blinds its values (docs/FHIR.md "Search"). Untrusted input: at most
 * HDX_FHIR_QPARAMS_MAX parameters, names of 39 and values of 511 bytes after
 * percent-decoding, no control byte, names only of [A-Za-z0-9_:.-]; every parameter is either
 * understood for the type or the search is refused with the parameter named (never ignored). What
 * needs the index to resolve (the Patient a patient= names) is handed back as an id for the caller.
 * Thread: any; the key context is its thread's. */
#ifndef HDX_FHIR_SEARCH_H
#define HDX_FHIR_SEARCH_H

#include <stddef.h>

#include "crypto/keys.h"
#include "fhir/index.h"

#define HDX_FHIR_QPARAMS_MAX 32
#define HDX_FHIR_COUNT_DEFAULT 50
#define HDX_FHIR_COUNT_MAX 1000

struct hdx_fhir_qparam {
    char name[40];
    char value[512];
};

struct hdx_fhir_search {
    struct hdx_fhir_query q; /* q.type is the caller's; q.id and q.patient point in here */
    char patient_id[HDX_FHIR_ID_MAX + 1]; /* patient= / subject=, "" when none */
    uint8_t patient_tok[HDX_BLIND_LEN];   /* the caller's, once resolved (q.patient) */
    size_t count, offset;
    int summary_count, include_subject;
    size_t nparams;
    struct hdx_fhir_qparam params[HDX_FHIR_QPARAMS_MAX];
};

/* Splits a query string into its decoded parameters: 0, or -1 when it is malformed. */
int hdx_fhir_params_split(const char *query, struct hdx_fhir_qparam *p, size_t max, size_t *n);
/* "eq".."ge" at the start of v: its length (2) and *p, or 0 and HDX_FHIR_EQ. */
int hdx_fhir_prefix_parse(const char *v, enum hdx_fhir_prefix *p);
/* The search for type (an hdx type) into *out (zeroed first). HDX_OK, or HDX_E_INVAL with bad
 * naming the parameter (fixed text and the parameter's name, never its value), or the key
 * context's error. */
int hdx_fhir_search_parse(const char *type, const char *query, struct hdx_keyctx *kc,
                          struct hdx_fhir_search *out, char *bad, size_t cap);

#endif
