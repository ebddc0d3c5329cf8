/* admin: the registry (devices, users and the policy data) as records of the log (kind
 * HDX_KIND_ADMIN).
 * Contract: the `devices`, `device_keys`, `device_scopes`, `users`, `careteams`, `consents`,
 * `break_glass` and `smart_clients` tables are the replay of the admin records in seq order, and
 * nothing else writes them. A producer (hdx device, the migration of an older store) enqueues a
 * statement in the store's admin_queue; the commit thread seals it as a record (sender
 * HDX_ADMIN_SENDER, type "admin/<op>", no patient, no duplicate token) and, in the SAME
 * transaction, applies it to the tables and deletes its queue row (hdx_admin_commit). `hdx verify`
 * replays every admin record into an in-memory registry (hdx_registry_*) and compares it with the
 * tables row by row.
 *
 * Body (the record's plaintext): canonical text, every line LF-terminated, keys in exactly
 * this order per op, nothing before or after (docs/RECORD-FORMAT.md, "Admin records"):
 *   HDX-ADMIN 1
 *   op=device_add      name role serial created_us sign_pub
 *   op=device_revoke   name serial revoked_us
 *   op=device_signkey  name sign_pub
 *   op=device_import   name role serial created_us revoked_us sign_pub
 *   op=user_add        name role pw_hash totp_sealed recovery created_us
 *   op=user_passwd     name pw_hash
 *   op=user_lock       name
 *   op=user_unlock     name
 *   op=user_revoke_sessions name at_us
 *   op=user_mfa        name totp_sealed recovery
 *   op=user_training   name date
 *   op=user_totp_used  name step
 *   op=user_recovery_used name index
 *   op=careteam_add    name patient
 *   op=careteam_remove name patient
 *   op=consent_deny    patient purpose role
 *   op=consent_remove  patient purpose role
 *   op=break_glass     name patient expires_us justification
 *   op=break_glass_review name patient granted_us reviewer
 *   op=device_scope    name scope
 *   op=route_dead      name seq reason
 *   op=route_retry     name seq
 *   op=route_skip      name seq
 *   op=route_delivered name seq
 *   op=client_add      name jwks scope created_us
 *   op=client_scope    name scope
 *   op=client_revoke   name revoked_us
 *   op=ae_add          name title
 *   op=ae_remove       title
 * name: pki_name_valid; role: device|subscriber|gateway for devices, admin|security-officer|
 * auditor|clinician|nurse|researcher|integration for users; serial: 1-40 lower-case hex digits;
 * *_us: decimal without leading zeros (created_us >= 1, revoked_us >= 1, or 0 in an import:
 * active; at_us >= 1); sign_pub: 64 lower-case hex digits (Ed25519 raw public key) or empty
 * (none); pw_hash: an Argon2id string (hdx_password_hash_valid); totp_sealed: 104 lower-case hex
 * digits (auth/totp.h HDX_TOTP_SEALED_LEN bytes); recovery: ten times 64 lower-case hex digits
 * (salt and keyed hash), comma-separated; both empty together (no second factor); date:
 * YYYY-MM-DD, a real calendar date from 2000 on, or empty (none); step >= 1; index 0-9;
 * patient: 32 lower-case hex digits, the patient's blind token (crypto/keys.h hdx_blind,
 * domain "patient": never the identifier itself); purpose and role of a consent: exactly one
 * is non-empty, purpose a purpose of use (policy.h hdx_purpose_parse: treatment, payment,
 * operations, research), role a recipient role (hdx_role_parse: any role but none);
 * expires_us, granted_us >= 1; justification: 1-500 bytes, each printable ASCII 0x20-0x7e
 * (no LF, CR, tab or other control byte, nothing above 0x7e), taken verbatim; reviewer: a name
 * (as name), other than name (nobody reviews their own grant); scope: a canonical scope text
 * (policy/scope.h hdx_scope_parse), or empty (no scope: every record the filter matches);
 * in the client_* ops: a SMART Backend Services client. name: a client id, as a user name;
 * jwks: the client's JWK Set document (RFC 7517 5) as the unpadded base64url (RFC 4648 5) of
 * its 1 to HDX_SMART_JWKS_MAX bytes, one spelling only (no padding, no non-zero trailing
 * bits), that auth/jwt.h hdx_jwks_parse accepts (public EC P-384 or RSA 2048-8192 keys: a
 * private key, a small RSA key, a key of another type is not a statement); scope: a SMART
 * scope text (auth/smart_scope.h), non-empty and canonical (hdx_smart_scope_format of its
 * parse gives back exactly the same bytes).
 * hdx_admin_parse is pure and treats its input as untrusted: length-checked, it refuses
 * unknown, missing, repeated or reordered keys, trailing bytes, bad hex and bad names.
 *
 * Apply (deterministic, total: every statement that parses applies; the same function is
 * used for the tables and for the replay, so they cannot drift):
 *   device_add     the row becomes (role, serial, created_us, revoked_us 0); its signing key
 *                  becomes sign_pub (or none), key created_us = the record's time
 *   device_revoke  when the row exists, has this serial and is active: revoked_us; else none
 *   device_signkey when the row exists: its key becomes sign_pub (or none), created_us = time
 *   device_import  the row becomes exactly the snapshot; key as in device_add
 *   user_add       the row becomes (role, pw_hash, totp, recovery, created_us; unlocked, no step
 *                  used, no code used, no training, pw_changed_us = mfa_us = time)
 * and, only when the user's row exists:
 *   user_passwd    pw_hash; pw_changed_us = time; sessions_revoked_us = max(it, time)
 *   user_lock, user_unlock  locked 1, 0
 *   user_revoke_sessions    sessions_revoked_us = max(it, at_us)
 *   user_mfa       totp, recovery; totp_step 0, recovery_used 0, mfa_us = time;
 *                  sessions_revoked_us = max(it, time)
 *   user_training  training = date
 *   user_totp_used when the user has a second factor and step > totp_step: totp_step = step
 *   user_recovery_used when the user has a second factor: bit index of recovery_used set
 * (time: the record's commit time). The last two are what a login consumed
 * (auth/user.h): they are records too, so a replayed code is refused after a restart and the
 * use of every code is in the tamper-evident log. A statement for a user that does not exist
 * changes nothing. The policy data (policy/policy_load.h builds a struct hdx_policy of it):
 *   careteam_add   when the user exists: row (name, patient) present
 *   careteam_remove row (name, patient) absent
 *   consent_deny   row (patient, purpose, role) present
 *   consent_remove row (patient, purpose, role) absent
 *   break_glass    when the user exists: row (name, patient, granted_us = time) becomes
 *                  (expires_us, justification, not reviewed); a second grant for the same
 *                  user and patient at the same microsecond replaces the first
 *   break_glass_review when the grant (name, patient, granted_us) exists and is not reviewed
 *                  yet, and the reviewer exists as a user: reviewed_by = reviewer,
 *                  reviewed_us = time; a grant is reviewed once
 * No user statement removes a user, so a care-team or grant row never outlives its user.
 * A subscriber's scope (net/sub_session.h applies it to every record it delivers):
 *   device_scope   row (name) becomes (scope, set_us = time), or absent when scope is empty;
 *                  whether or not the device exists, so that `hdx device add --scope` can
 *                  commit the scope BEFORE the device_add: a scoped device is never enrolled
 *                  without its scope, not even for one batch. device_add and device_revoke
 *                  leave it alone: a name re-enrolled keeps the (narrower) scope it had.
 * A route's dead letters (route/route.h, docs/ROUTES.md): route_dead (hdxd gave up on message
 * seq: reason, 1-500 printable ASCII bytes as a justification), route_retry and route_skip
 * (an operator's hdx route retry/skip), route_delivered (a retried dead letter went through).
 * They change no table: the dead-letter list is the replay of these records in seq order
 * (a seq is dead after route_dead until a route_skip or route_delivered; route_retry marks it
 * for another attempt), read from the log itself, so the log is its only authority.
 * SMART Backend Services clients (auth/jwt.h checks their assertions against the JWK Set):
 *   client_add     when no row exists or the row is revoked (a name registered again): the
 *                  row becomes (jwks, scope, created_us, revoked_us 0); an ACTIVE client is
 *                  never replaced (the statement changes nothing: hdx client add refuses it
 *                  before it is queued, so only a race or a hand-made statement gets here)
 *   client_scope   when the row exists and is active: scope
 *   client_revoke  when the row exists and is active: revoked_us (a second revoke keeps the
 *                  first time); the row stays, so the name stays taken
 * The record's time is not used. A client's name is a principal's: the hdx CLI refuses a
 * client_add for the name of a user or device, and a user_add or device_add for a client's
 * name (active or revoked), at queue time; apply does not look (it stays total).
 * DICOM AE titles (net/dicom_session.h binds an association's calling AE title to a device):
 *   ae_add         row (title) becomes (name, set_us = time), replacing any; the device need
 *                  not exist (hdx ae add refuses a title of another device, and a name that is
 *                  not an enrolled device, at queue time)
 *   ae_remove      row (title) absent
 * title: 1-16 bytes of printable ASCII (0x20-0x7e) without backslash, no leading or trailing
 * space (PS3.5 AE: those are padding).
 * Thread: parse/format/registry any; hdx_admin_commit and hdx_admin_migrate on
 * the store handle's thread. */
#ifndef HDX_ADMIN_H
#define HDX_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "commit/commit.h"
#include "store/store.h"

/* client_add is the largest: a 64-character name, a JWK Set of HDX_SMART_JWKS_MAX bytes
 * (10,923 base64url characters), the longest canonical SMART scope (2,527) and a by= make
 * about 13,700 bytes (device_scope about 1,650, user_add about 1,100). Callers' buffers of
 * this size are on the stack of threads with the default (8 MiB) stack; none sets a smaller
 * one. */
#define HDX_ADMIN_BODY_MAX 16384
#define HDX_ADMIN_SENDER "hdx:admin" /* ':' is outside device names: no CN can take it */

enum hdx_admin_op {
    HDX_ADMIN_DEVICE_ADD = 1,
    HDX_ADMIN_DEVICE_REVOKE,
    HDX_ADMIN_DEVICE_SIGNKEY,
    HDX_ADMIN_DEVICE_IMPORT,
    HDX_ADMIN_USER_ADD,
    HDX_ADMIN_USER_PASSWD,
    HDX_ADMIN_USER_LOCK,
    HDX_ADMIN_USER_UNLOCK,
    HDX_ADMIN_USER_REVOKE_SESSIONS,
    HDX_ADMIN_USER_MFA,
    HDX_ADMIN_USER_TRAINING,
    HDX_ADMIN_USER_TOTP_USED,
    HDX_ADMIN_USER_RECOVERY_USED,
    HDX_ADMIN_CARETEAM_ADD,
    HDX_ADMIN_CARETEAM_REMOVE,
    HDX_ADMIN_CONSENT_DENY,
    HDX_ADMIN_CONSENT_REMOVE,
    HDX_ADMIN_BREAK_GLASS,
    HDX_ADMIN_BREAK_GLASS_REVIEW,
    HDX_ADMIN_DEVICE_SCOPE,
    HDX_ADMIN_ROUTE_DEAD,
    HDX_ADMIN_ROUTE_RETRY,
    HDX_ADMIN_ROUTE_SKIP,
    HDX_ADMIN_ROUTE_DELIVERED,
    HDX_ADMIN_CLIENT_ADD,
    HDX_ADMIN_CLIENT_SCOPE,
    HDX_ADMIN_CLIENT_REVOKE,
    HDX_ADMIN_AE_ADD,
    HDX_ADMIN_AE_REMOVE,
};
#define HDX_ADMIN_OP_LAST HDX_ADMIN_AE_REMOVE

#define HDX_ADMIN_BY_MAX 96
struct hdx_admin {
    enum hdx_admin_op op;
    char name[65];
    char role[24];
    char serial[41];
    int64_t created_us, revoked_us;
    int has_pub; /* sign_pub set; 0: empty (no key / key removed) */
    uint8_t sign_pub[32];
    /* users */
    char pw_hash[HDX_USER_PW_HASH_MAX];
    int has_mfa; /* totp_sealed and recovery set; 0: both empty */
    uint8_t totp_sealed[HDX_USER_TOTP_SEALED_LEN];
    uint8_t recovery[HDX_USER_RECOVERY_CODES][HDX_USER_RECOVERY_LEN];
    int64_t at_us;
    char date[11]; /* "" or YYYY-MM-DD */
    uint64_t step;
    int index;
    /* policy data; role above is a consent's recipient role ("" or a policy.h role name) */
    uint8_t patient[HDX_BLIND_LEN];
    char purpose[16]; /* "" or a policy.h purpose name */
    int64_t expires_us, granted_us;
    char justification[HDX_JUSTIFICATION_MAX + 1];
    char reviewer[65];
    /* device_scope */
    int has_scope; /* 0: scope empty (removed) */
    char scope[HDX_DEVICE_SCOPE_MAX + 1];
    /* route_*: name is the route's, seq the message's, reason why it is a dead letter */
    uint64_t seq;
    char reason[HDX_JUSTIFICATION_MAX + 1];
    /* client_*: name is the client id; created_us (add), revoked_us (revoke); the JWK Set
     * document's bytes (add) and the canonical SMART scope (add, scope) */
    size_t jwks_len;
    uint8_t jwks[HDX_SMART_JWKS_MAX];
    char smart_scope[HDX_SMART_CLIENT_SCOPE_MAX + 1];
    /* ae_*: the AE title (name is the device) */
    char title[HDX_AE_TITLE_MAX + 1];
    /* Who made the change, the last line of every statement: "local:LOGIN" (the hdx CLI, by
     * the operating-system account that ran it; "local:root/sudo:LOGIN" under sudo) or
     * "user:NAME" (hdxd, on behalf of a signed-in user) or
     * "route:NAME" (hdxd's route engine, for its own dead letters). "" in records older than the
     * key. */
    char by[HDX_ADMIN_BY_MAX + 1];
};
/* 1 when by is a valid actor: "local:", "user:" or "route:", then [A-Za-z0-9._@:/+-_]; 90 bytes at
 * most in all. */
int hdx_admin_by_valid(const char *by);
/* 1 for the user_* ops. */
int hdx_admin_is_user_op(enum hdx_admin_op op);
/* 1 for the route_* ops. */
int hdx_admin_is_route_op(enum hdx_admin_op op);
/* 1 for the careteam_*, consent_* and break_glass* ops. */
int hdx_admin_is_policy_op(enum hdx_admin_op op);
/* 1 for the client_* ops. */
int hdx_admin_is_client_op(enum hdx_admin_op op);
/* 1 when role is one a user may have. */
int hdx_admin_user_role_valid(const char *role);

/* HDX_OK and *out, or HDX_E_INVAL (out zeroed). */
int hdx_admin_parse(const uint8_t *body, size_t len, struct hdx_admin *out);
/* The canonical body into out (NUL-terminated); returns its length, or a negative hdx_err when
 * a field is invalid or cap is small. parse(format(a)) == a. */
int hdx_admin_format(const struct hdx_admin *a, char *out, size_t cap);
/* "admin/device_add" etc.; NULL for an unknown op. */
const char *hdx_admin_type(enum hdx_admin_op op);
/* The break_glass statement into *a (zeroed first), for hdxd once the policy permitted the
 * claim: user holds an emergency grant to the patient (token) until expires_us, for the
 * reason given. HDX_OK, or HDX_E_INVAL when a field is invalid (then *a is zeroed). Format
 * and queue it as any statement (hdx_admin_format, hdx_store_admin_enqueue); the grant's
 * granted_us is its record's commit time. */
int hdx_admin_break_glass(const char *user, const uint8_t patient[HDX_BLIND_LEN],
                          int64_t expires_us, const char *justification, struct hdx_admin *a);

/* One device in a registry: the devices row and its device_keys row. */
struct hdx_registry_entry {
    struct hdx_device dev;
    int has_key;
    uint8_t sign_pub[32];
    int64_t key_created_us;
};
struct hdx_registry {
    struct hdx_registry_entry *e; /* sorted by name */
    size_t n, cap;
    struct hdx_user *u; /* sorted by name */
    size_t nu, ucap;
    struct hdx_careteam *ct; /* sorted by (user, patient) */
    size_t nct, ctcap;
    struct hdx_consent *cs; /* sorted by (patient, purpose, role) */
    size_t ncs, cscap;
    struct hdx_break_glass *bg; /* sorted by (user, patient, granted_us) */
    size_t nbg, bgcap;
    struct hdx_device_scope *sc; /* sorted by name */
    size_t nsc, sccap;
    struct hdx_smart_client *cl; /* sorted by name; each jwks owned (hdx_registry_free) */
    size_t ncl, clcap;
    struct hdx_dicom_ae *ae; /* sorted by title */
    size_t nae, aecap;
};
void hdx_registry_free(struct hdx_registry *r);
/* Applies one statement committed at time_us (see the top). HDX_E_NOMEM only. */
int hdx_registry_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us);
const struct hdx_registry_entry *hdx_registry_find(const struct hdx_registry *r, const char *name);
const struct hdx_user *hdx_registry_user(const struct hdx_registry *r, const char *name);
/* The row with key's key fields (careteam: user, patient; consent: all three; grant: user,
 * patient, granted_us), or NULL. */
const struct hdx_careteam *hdx_registry_careteam(const struct hdx_registry *r,
                                                 const struct hdx_careteam *key);
const struct hdx_consent *hdx_registry_consent(const struct hdx_registry *r,
                                               const struct hdx_consent *key);
const struct hdx_break_glass *hdx_registry_break_glass(const struct hdx_registry *r,
                                                       const struct hdx_break_glass *key);
/* name's scope row, or NULL (no scope). */
const struct hdx_device_scope *hdx_registry_scope(const struct hdx_registry *r, const char *name);
/* title's AE row, or NULL. */
const struct hdx_dicom_ae *hdx_registry_ae(const struct hdx_registry *r, const char *title);
/* 1 for a valid AE title (see ae_add above). */
int hdx_admin_ae_title_valid(const char *title);
/* name's SMART client row (active or revoked), or NULL. */
const struct hdx_smart_client *hdx_registry_client(const struct hdx_registry *r, const char *name);
/* The user row a statement makes of the row before it (present: it exists, before and after):
 * the apply above for one user, for callers that hold the row (the store, auth/user.c). */
void hdx_admin_user_apply(struct hdx_user *u, int *present, const struct hdx_admin *a,
                          int64_t time_us);

/* The commit thread, inside the transaction that appends the admin record committed at
 * time_us: parses body, applies it to its table(s) and deletes admin_queue row
 * queue_id (0: none; a row already gone is no error). Any failure fails the transaction. */
int hdx_admin_commit(struct hdx_store *s, int64_t queue_id, const uint8_t *body, size_t len,
                     int64_t time_us);

/* The intake item (kind ADMIN, sender HDX_ADMIN_SENDER, type of its op, no patient, no
 * duplicate token, origin NULL) for queue row id; NULL when body does not parse (*bad set)
 * or on no memory (*bad 0). The queue also carries one kind of audit record: the hdx command
 * line's own account of an offline read (audit/audit.h, event access, action offline_read, a
 * local: principal), which becomes an audit item with its patient token; the commit removes
 * its row in the same transaction. Any other audit body is refused (*bad). */
struct hdx_intake_item *hdx_admin_item_new(int64_t id, const uint8_t *body, size_t len, int *bad);

/* DIR/hdxd.lock: hdxd holds an exclusive flock on it while it runs; a writer outside hdxd
 * (hdx device) that gets it may apply the admin queue itself. HDX_OK and *fd (close it to
 * release), HDX_E_EXISTS when another process holds it, HDX_E_IO otherwise. */
int hdx_admin_lock(const char *path, int *fd);

/* For a writer opening a store made before admin records: when meta registry_logged is
 * unset, enqueues one device_import per devices row (with its signing key) and sets the key,
 * in one transaction. *queued: how many. Not inside a transaction. */
int hdx_admin_migrate(struct hdx_store *s, size_t *queued);

#endif
