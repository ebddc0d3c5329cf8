/* scope: a machine principal's granted scope (DESIGN invariant 4, "a service only its
 * scopes"; docs/POLICY.md rule 7): which records a subscriber may receive on the subscription
 * port, whatever its SUB filter asks. Delivery = the request's filter AND the scope, checked
 * for every record, live and replayed (net/sub_session.h). No scope at all means every record
 * (the behaviour before scopes; hdx access-review flags such subscribers).
 *
 * Operator form (hdx device add --scope, hdx device scope; docs/SUBSCRIBE.md "Scopes"):
 *   SCOPE = TERM *(" " TERM)          one space between terms, none before or after
 *   TERM  = KEY "=" VALUE *("," VALUE)
 *   KEY   = "type" | "sender" | "patient", each at most once
 * type: an exact message type as indexed (MSH-9, "ORU^R01"); sender: an exact sender name, or
 * a non-empty prefix followed by one "*" at its very end ("ward3-*"); patient: a PID-3
 * identifier, blinded at once (crypto/keys.h hdx_blind, domain "patient", as the index and
 * SUB patient= do) and kept only as its token. Values are printable ASCII (0x21-0x7e) without
 * ','; type and sender values also without '=' and '*' (but a sender's final '*'). At most
 * HDX_SCOPE_VALUES_MAX values per key; a repeated value is taken once.
 * A record is in scope when every key present admits it: its type is one of the types, its
 * sender matches one of the senders, its patient token is one of the tokens. A record without
 * a patient is outside any scope that names patients (fail closed).
 *
 * Canonical form (what admin records and the store hold, docs/RECORD-FORMAT.md): the same
 * grammar with keys in the order type, sender, patient, each key's values in strictly
 * ascending byte order (so unique), patients as 32 lower-case hex digits of their token, at
 * most HDX_SCOPE_TEXT_MAX bytes. One spelling per scope: hdx_scope_parse refuses anything
 * else, so two scopes are equal exactly when their texts are.
 *
 * Refusals (why) never quote a value: a patient value is an identifier.
 * Thread: any; pure but for the keyring read by hdx_scope_from_operator and the store read by
 * hdx_scope_load (the store handle's thread). */
#ifndef HDX_SCOPE_H
#define HDX_SCOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "store/record.h"
#include "store/store.h"

#define HDX_SCOPE_VALUES_MAX 32
#define HDX_SCOPE_TEXT_MAX 1536      /* canonical bytes, without the NUL */
#define HDX_SCOPE_PATIENT_ID_MAX 199 /* as SUB patient= (bus/bus.h) */

struct hdx_scope {
    size_t ntypes, nsenders, npatients; /* 0: that key is absent (no restriction by it) */
    char types[HDX_SCOPE_VALUES_MAX][HDX_TYPE_MAX + 1];
    char senders[HDX_SCOPE_VALUES_MAX][HDX_SENDER_MAX + 1]; /* a final '*': a prefix */
    uint8_t patients[HDX_SCOPE_VALUES_MAX][HDX_BLIND_LEN];
};

/* The operator's text (len bytes, no NUL needed) into its canonical form in canon (cap bytes,
 * NUL-terminated), patients blinded with kr. HDX_OK, or HDX_E_INVAL with why set to a fixed
 * text naming the key at most (canon is then ""). */
int hdx_scope_from_operator(const char *text, size_t len, const struct hdx_keyring *kr, char *canon,
                            size_t cap, char *why, size_t why_cap);

/* A canonical text (untrusted: an admin record, a store row) into *out. HDX_OK, or
 * HDX_E_INVAL for anything that is not exactly a canonical scope (out zeroed). */
int hdx_scope_parse(const char *canon, size_t len, struct hdx_scope *out);

/* 1 when the record (sender, type, patient token or NULL) is in scope. */
int hdx_scope_admits(const struct hdx_scope *s, const char *sender, const char *type,
                     const uint8_t *patient);

/* A principal's scope from the registry (store.h device_scopes), for a front end about to
 * deliver records to it: HDX_OK with *out NULL (no scope: everything) or a scope to free()
 * (and its canonical text into text when text is not NULL, HDX_DEVICE_SCOPE_MAX + 1 bytes);
 * else a negative hdx_err (HDX_E_INTEGRITY: a row no statement writes), and the caller
 * refuses: an unreadable scope never means "no scope". */
int hdx_scope_load(struct hdx_store *s, const char *name, struct hdx_scope **out, char *text);

/* The scope for people (audit details, `hdx device list`): "type=A,B sender=C* patients=N",
 * absent keys left out; the patients only counted (their tokens say nothing to a reader and
 * link records). Cut to cap (NUL-terminated). */
void hdx_scope_describe(const struct hdx_scope *s, char *out, size_t cap);

#endif
