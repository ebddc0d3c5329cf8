/* audit: audit records, in the same tamper-evident log as everything else (kind
 * HDX_KIND_AUDIT, sender HDX_AUDIT_SENDER, type "audit/<event>", the patient's blind token in
 * the record header so that `hdx audit disclosures --patient` finds them through the index).
 * Encrypted at rest like any record; covered by the signed tree heads, proofs and hdx verify.
 *
 * Body: canonical text, one "key=value" line each, LF-terminated, in exactly this order:
 *   HDX-AUDIT 1
 *   event      auth | subscribe | disclosure | access
 *   action     what was asked (tls, subscribe, read, ...)
 *   outcome    success | failure | permit | deny | end
 *   reason     a stable code ("-" when none)
 *   principal  who ("-" when unknown)
 *   role       the registry's role ("-")
 *   source     the peer address
 *   cert       SHA-256 of the peer certificate, hex ("-")
 *   patient    the patient's blind token, hex ("-")
 *   seqs       "FIRST-LAST" of the records disclosed ("-")
 *   count      records disclosed, or events summarised (0)
 *   detail     free text chosen by hdx (a filter, a justification): printable ASCII
 * Every value but detail is one token of printable ASCII without spaces or '='; bytes outside
 * are replaced by '?' when formatting (nothing from a client can forge a line), and a value
 * is cut at HDX_AUDIT_VALUE_MAX. hdx_audit_parse is strict and treats its input as untrusted.
 * Thread: any. */
#ifndef HDX_AUDIT_H
#define HDX_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "commit/commit.h"

#define HDX_AUDIT_SENDER "hdx:audit"
#define HDX_AUDIT_VALUE_MAX 200
#define HDX_AUDIT_BODY_MAX 2048

struct hdx_audit {
    const char *event, *action, *outcome, *reason;
    const char *principal, *role, *source, *cert;
    const uint8_t *patient; /* HDX_BLIND_LEN bytes, or NULL */
    uint64_t first_seq, last_seq, count;
    const char *detail; /* NULL: "" */
};

/* The parsed form (copies). */
struct hdx_audit_view {
    char event[24], action[24], outcome[16], reason[64];
    char principal[80], role[24], source[80], cert[65], patient[65];
    uint64_t first_seq, last_seq, count;
    char detail[HDX_AUDIT_VALUE_MAX + 1];
};

/* The canonical body; returns its length, or -1 if cap is too small. */
int hdx_audit_format(const struct hdx_audit *a, char *out, size_t cap);
/* HDX_OK, or HDX_E_INVAL for anything that is not exactly a canonical body. */
int hdx_audit_parse(const uint8_t *body, size_t len, struct hdx_audit_view *v);
/* An intake item for the commit pipeline (origin NULL), or NULL without memory. */
struct hdx_intake_item *hdx_audit_item_new(const struct hdx_audit *a);

#endif
