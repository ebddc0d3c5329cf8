/* fhir/resource: FHIR R4 JSON resources as hdx reads, stores and indexes them (docs/FHIR.md).
 * Pure but for the key context that blinds search tokens.
 *
 * Reading: a body is at most HDX_FHIR_BODY_MAX bytes and HDX_FHIR_NEST_MAX levels of
 * nesting (checked on the bytes before any parse, so hostile nesting costs nothing), one
 * JSON object with no duplicate key and no NUL (jansson with JSON_REJECT_DUPLICATES).
 * Stored form: a version is one record of kind HDX_KIND_FHIR whose type is the resource
 * type ("Observation") or, for a delete, the type followed by HDX_FHIR_TOMBSTONE; its body
 * is the resource as answered (id, meta.versionId and meta.lastUpdated set by hdx). A
 * transaction Bundle is one record of type HDX_FHIR_TXN_TYPE whose body is a Bundle of the
 * versions it wrote, in entry order: all of them or none are in the log.
 * Index values (hdx_fhir_extract): what search needs, as keyed blind tokens
 * (crypto/keys.h, domain HDX_FHIR_TOKEN_DOMAIN) and time ranges; never a plaintext value.
 * Thread: any; a key context is its thread's. */
#ifndef HDX_FHIR_RESOURCE_H
#define HDX_FHIR_RESOURCE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"

#define HDX_FHIR_BODY_MAX (1 << 20)
#define HDX_FHIR_NEST_MAX 32
#define HDX_FHIR_ID_MAX 64
#define HDX_FHIR_TYPE_MAX 31
#define HDX_FHIR_TOMBSTONE ":deleted"
#define HDX_FHIR_TXN_TYPE "Bundle:transaction"
#define HDX_FHIR_TOKEN_DOMAIN "fhir-token"
#define HDX_FHIR_TOKENS_MAX 64

/* Search parameters held as tokens. */
enum hdx_fhir_param {
    HDX_FP_CODE = 1,       /* Observation.code: "system|code" and "|code" */
    HDX_FP_CATEGORY = 2,   /* Observation.category, the same forms */
    HDX_FP_IDENTIFIER = 3, /* Patient/Device/Encounter.identifier: "system|value", "|value" */
    HDX_FP_NAME = 4,       /* Patient.name parts: every prefix, lower-cased (starts-with) */
    HDX_FP_BIRTHDATE = 5,  /* Patient.birthDate at each precision it has */
};

struct hdx_fhir_token {
    uint8_t param;
    uint8_t tok[HDX_BLIND_LEN];
};

/* What the index holds of one version. */
struct hdx_fhir_entry {
    char type[HDX_FHIR_TYPE_MAX + 1];
    char id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    int deleted;
    int64_t updated_us;
    int has_date; /* Observation.effective[x] / issued, as [date_lo, date_hi) */
    int64_t date_lo, date_hi;
    size_t ntok;
    struct hdx_fhir_token tok[HDX_FHIR_TOKENS_MAX];
};

/* Parses a request body into a JSON object (new reference). HDX_OK, or HDX_E_TOOBIG (over
 * the size) or HDX_E_INVAL with why (fixed text, never client bytes). */
int hdx_fhir_parse(const uint8_t *body, size_t len, json_t **out, char *why, size_t cap);

/* A FHIR date, dateTime or instant as the half-open range of microseconds it covers
 * ("2024" is the whole year, UTC when no zone). 0, or -1 when it is none of them. */
int hdx_fhir_time_range(const char *s, int64_t *lo, int64_t *hi);
/* An instant for meta.lastUpdated: "2024-05-01T10:20:30.123456Z". */
void hdx_fhir_instant(int64_t us, char *out, size_t cap);
/* 1 when s is a FHIR id ([A-Za-z0-9\-\.]{1,64}). */
int hdx_fhir_id_valid(const char *s);
/* A fresh server-assigned id: 32 lower-case hex digits of randomness. */
void hdx_fhir_new_id(char out[33]);

/* The token of one search value: blind(domain, param || value). */
int hdx_fhir_token(struct hdx_keyctx *kc, enum hdx_fhir_param p, const char *value, size_t len,
                   uint8_t out[HDX_BLIND_LEN]);
/* The index values of a stored version (res: its body). HDX_OK, HDX_E_NOMEM, or the key
 * context's error. Values past HDX_FHIR_TOKENS_MAX are not indexed (docs/FHIR.md). */
int hdx_fhir_extract(const json_t *res, struct hdx_keyctx *kc, struct hdx_fhir_entry *out);

/* The patient identifier a resource is filed under (its blind token is the record's patient,
 * which the policy engine decides on): a Patient's first identifier value, or when it has
 * none "urn:hdx:fhir:Patient/ID". Only for Patient; "" otherwise. */
void hdx_fhir_patient_key(const json_t *patient, char *out, size_t cap);
/* The "Patient/ID" a resource refers to as its patient (Observation.subject, Encounter.subject,
 * DiagnosticReport.subject, Consent.patient, Device.patient, Provenance.target's first
 * Patient...), its id into out; 1 found, 0 none, -1 a reference that is not Patient/ID. */
int hdx_fhir_patient_ref(const json_t *res, char *id, size_t cap);

/* An OperationOutcome with one issue (new reference): severity "error", code (an
 * IssueType: "invalid", "not-found", "forbidden"...), diagnostics, and expression when not
 * NULL. */
json_t *hdx_fhir_outcome(const char *code, const char *diagnostics, const char *expression);

#endif
