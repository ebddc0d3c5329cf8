/* store: the durable record store: record bodies (their leaf encodings: header, nonce,
 * ciphertext) in append-only segment files (store/segment.h), and in SQLite 3 (WAL mode) the
 * index (seq, time, kind, sender, type, patient and duplicate blind tokens, hashes, where the
 * frame is), the duplicate tokens again in an append-only log (read back into memory by the
 * commit pipeline: commit/dedup.h), the Merkle nodes and signed heads, wrapped keys and
 * enrolled devices; never a plaintext identifier or message. A successful
 * hdx_store_append_batch() means the batch's records are on disk (their frames fdatasync'd);
 * the index commit that follows needs no flush of its own for the writer (HDX_STORE_WRITER:
 * synchronous=NORMAL; it is rebuilt from the frames after a power cut, hdx_store_recover),
 * while other writers (tools) commit with synchronous=FULL. Records of a schema-1 store keep
 * their ciphertext in their row and are read as they are. Sticky error: after a
 * failed write or commit the handle refuses further writes (HDX_E_STORE) so nothing is acknowledged
 * on a store whose state is unknown; the daemon must reopen (restart) to recover. Readers (other
 * processes) may open the same file read-only at any time. Thread: a handle belongs to one thread
 * at a time; open one handle per thread. Ownership: a record filled by hdx_store_get owns its
 * ciphertext (hdx_record_clear frees it). A record handed to a hdx_store_scan callback borrows
 * its ciphertext from SQLite: r->ct is valid only until the callback returns, must not be
 * freed, cleared or written, and is copied by a callback that needs it later. The callback
 * may use the same handle for other calls (they run other statements). */
#ifndef HDX_STORE_H
#define HDX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"
#include "store/record.h"

struct hdx_store;

/* HDX_STORE_WRITER: the one high-rate writer (the commit thread). It gets a large page cache
 * and a background checkpointer thread with its own connection, so WAL checkpoints never
 * stall a group commit. */
enum { HDX_STORE_RDONLY = 1, HDX_STORE_CREATE = 2, HDX_STORE_NOSYNC = 4, HDX_STORE_WRITER = 8 };

int hdx_store_open(const char *path, int flags, struct hdx_store **out);
void hdx_store_close(struct hdx_store *s);

int hdx_store_begin(struct hdx_store *s);
int hdx_store_commit(struct hdx_store *s);
void hdx_store_rollback(struct hdx_store *s);

/* A read snapshot across several calls (a proof: tree size, head, nodes and record): every
 * read until hdx_store_read_end sees the same committed state, however hdxd writes meanwhile,
 * and SQLite locks once instead of once per statement (most of a proof's cost otherwise).
 * Not inside hdx_store_begin; keep it short: the WAL cannot be checkpointed past it. */
int hdx_store_read_begin(struct hdx_store *s);
void hdx_store_read_end(struct hdx_store *s);

/* The newest record's seq (0 when empty), chain hash and time. */
int hdx_store_last(struct hdx_store *s, uint64_t *seq, uint8_t chain[HDX_HASH_LEN],
                   int64_t *time_us);
/* One record to append: the record (r->ct its ciphertext), its whole leaf encoding when the
 * caller has it (record.h; NULL: built here), and for the duplicate log the content digest of
 * its body (NULL: none kept) and whether it reused an earlier record's control id. */
struct hdx_store_entry {
    const struct hdx_record *r;
    const uint8_t *leaf;
    size_t leaf_len;
    const uint8_t *content;
    int reused;
};
/* Appends records in seq order, and the duplicate token (if any) of each to the append-only
 * dedup log, inside the caller's transaction. */
int hdx_store_append_batch(struct hdx_store *s, const struct hdx_store_entry *e, size_t n);
/* Writer start-up, before the first append (hdx_store_append_batch does it with cb NULL if the
 * caller has not): finds the records whose frames are in the segment files but whose index
 * rows are not (a crash or power cut between the flush and the index commit; see the DESIGN
 * note in store_sqlite.c), and for each, in seq order, calls cb with the record (parsed from
 * its frame, ct borrowed, leaf and chain hash set) and its entry, whose content and reused
 * fields cb fills (what the index derives from the body), then indexes it in the caller's
 * transaction; cb returning an error stops and fails. Then cuts everything after the last
 * whole frame (never acknowledged). *reindexed and *cut (may be NULL) count both. Sticky
 * failure on any error, including HDX_E_INTEGRITY when the newest index row has no frame. */
int hdx_store_recover(struct hdx_store *s,
                      int (*cb)(void *ctx, const struct hdx_record *r, struct hdx_store_entry *e),
                      void *ctx, uint64_t *reindexed, uint64_t *cut);
/* How many whole frames follow the index's newest record in the segment files (what
 * hdx_store_recover would re-index); readers too. */
int hdx_store_unindexed(struct hdx_store *s, uint64_t *n);
/* Test builds (HDX_DEBUG_ASSERTIONS): with HDX_CRASH_AT=POINT:N in the environment, the Nth
 * arrival at POINT kills the process (SIGKILL). Points: before_segment, segment_flushed (in
 * hdx_store_append_batch), index_committed, head_file_written (commit.c). A no-op otherwise. */
void hdx_store_crash_point(const char *point);
/* The size of each new segment file (0: HDX_SEG_SIZE_DEFAULT, 64 MiB); before the first
 * append. Files already made keep theirs. */
void hdx_store_set_segment_size(struct hdx_store *s, size_t bytes);
/* cb is called from hdx_store_append_batch once the batch's records are durable, before their
 * index rows are written (the commit pipeline starts sealing the next batch then). */
void hdx_store_on_durable(struct hdx_store *s, void (*cb)(void *arg), void *arg);
/* The same for one record without a content digest (tools, tests). */
int hdx_store_append(struct hdx_store *s, const struct hdx_record *r);
/* Calls cb for each duplicate token of a record with seq > after_seq, in seq order, with its
 * content digest (NULL when the record predates them). */
int hdx_store_dedup_load(struct hdx_store *s, uint64_t after_seq,
                         void (*cb)(void *ctx, const uint8_t *token, const uint8_t *content,
                                    uint64_t seq),
                         void *ctx);
/* A stored record's time and leaf hash, from the index alone (a duplicate's receipt). */
int hdx_store_leaf_at(struct hdx_store *s, uint64_t seq, int64_t *time_us,
                      uint8_t leaf[HDX_HASH_LEN]);
int hdx_store_get(struct hdx_store *s, uint64_t seq, struct hdx_record *out);
uint64_t hdx_store_count(struct hdx_store *s);

struct hdx_store_filter {
    uint64_t from_seq; /* first seq to consider (0 or 1: from the start) */
    int64_t since_us;  /* 0: any time */
    int kind;          /* 0: any */
    const char *type;  /* NULL: any */
    const char *sender;
    const uint8_t *patient; /* NULL: any */
    int reused_only;        /* only records stored under a reused control id */
    /* A record whose body frame is missing or damaged is passed with ct_len 0 (no real record
     * has one: the tag alone is 16 bytes) instead of ending the scan with HDX_E_INTEGRITY
     * (hdx verify, to name every such seq). */
    int damaged_too;
};
/* Calls cb for each matching record in seq order, at most limit (0 = no limit); cb returns
 * non-zero to stop. The record and its borrowed ct live only during the call (see the top).
 * Returns the number visited, or a negative hdx_err. */
long hdx_store_scan(struct hdx_store *s, const struct hdx_store_filter *f, size_t limit,
                    int (*cb)(void *ctx, const struct hdx_record *r), void *ctx);
/* Calls cb with every record's seq and leaf hash in seq order (the index only, no
 * ciphertext is read); cb returns non-zero to stop. Returns the count or a negative error. */
long hdx_store_leaves(struct hdx_store *s, int (*cb)(void *ctx, uint64_t seq, const uint8_t *leaf),
                      void *ctx);
/* First seq whose time is >= t (records are committed in non-decreasing time), or
 * last_seq + 1 when none. Binary search over the primary key: O(log n) lookups. */
uint64_t hdx_store_seq_at_time(struct hdx_store *s, int64_t t);

/* The Merkle tree's perfect subtrees (merkle/merkle.h) in this store: level 0 reads the
 * records' leaf hashes, higher levels the merkle_nodes table (written in the caller's
 * transaction). The handle must outlive the tree. */
void hdx_store_merkle(struct hdx_store *s, struct merkle_store *out);
/* Levels below this are not stored but folded from the leaves when asked for. */
#define HDX_STORE_MERKLE_MIN_LEVEL 4
/* Signed tree heads: every one published is kept. */
int hdx_store_sth_put(struct hdx_store *s, const struct hdx_sth *sth);
int hdx_store_sth_latest(struct hdx_store *s, struct hdx_sth *out); /* HDX_E_NOTFOUND: none */
int hdx_store_sth_at(struct hdx_store *s, uint64_t tree_size, struct hdx_sth *out);
int hdx_store_sth_list(struct hdx_store *s, int (*cb)(void *ctx, const struct hdx_sth *sth),
                       void *ctx);

/* Wrapped keys. */
int hdx_store_key_put(struct hdx_store *s, enum hdx_key_kind kind, uint32_t id,
                      const uint8_t *wrapped, size_t len);
/* Unwraps every stored key into kr. */
int hdx_store_keys_load(struct hdx_store *s, struct hdx_keyring *kr);
uint32_t hdx_store_key_max_id(struct hdx_store *s, enum hdx_key_kind kind);

/* Devices: identity = certificate CN; role = certificate OU. */
struct hdx_device {
    char name[65];
    char role[16];
    char serial[41];
    int64_t created_us;
    int64_t revoked_us; /* 0 = active */
};
int hdx_store_device_add(struct hdx_store *s, const struct hdx_device *d);
int hdx_store_device_get(struct hdx_store *s, const char *name, struct hdx_device *out);
int hdx_store_device_revoke(struct hdx_store *s, const char *name, int64_t when_us);
/* Serials of every revoked device, for the daemon to drop open connections. */
int hdx_store_devices_list(struct hdx_store *s, int (*cb)(void *ctx, const struct hdx_device *d),
                           void *ctx);

/* Device stream signatures (proto/checkpoint.h): a device's registered Ed25519 public key
 * (replaced on re-registration), and per message the checkpoint record that covered it and
 * whether that checkpoint verified. A mark is written once, in the checkpoint's transaction;
 * the checkpoint record in the log (its ZCV segment) is the authority, this the index.
 * signkey_put with pub NULL removes the device's key. */
int hdx_store_device_signkey_put(struct hdx_store *s, const char *name, const uint8_t pub[32]);
int hdx_store_device_signkey_get(struct hdx_store *s, const char *name, uint8_t pub[32]);
int hdx_store_marks_put(struct hdx_store *s, const uint64_t *seqs, size_t n, uint64_t checkpoint,
                        int verified);
int hdx_store_mark_get(struct hdx_store *s, uint64_t seq, uint64_t *checkpoint, int *verified);

/* The device registry's writers (commit/admin.h: only an admin record's transaction calls
 * them). device_put replaces the whole row; signkey_set with pub NULL removes the key.
 * signkey_row reads the key and its created_us (HDX_E_NOTFOUND: none). */
int hdx_store_device_put(struct hdx_store *s, const struct hdx_device *d);
int hdx_store_device_signkey_set(struct hdx_store *s, const char *name, const uint8_t pub[32],
                                 int64_t created_us);
int hdx_store_device_signkey_row(struct hdx_store *s, const char *name, uint8_t pub[32],
                                 int64_t *created_us);
/* Every device_keys row in name order, as stored (pub_len may be other than 32 in a damaged
 * store); cb returns non-zero to stop. */
int hdx_store_device_keys_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const char *name, const uint8_t *pub,
                                         size_t pub_len, int64_t created_us),
                               void *ctx);

/* Users (people: DESIGN M8). A row is the replay of the user_* admin records (commit/admin.h)
 * and nothing else writes it. Secrets are never here in plaintext: pw_hash is an Argon2id
 * string (auth/password.h), totp_sealed the TOTP secret sealed under a data key, recovery the
 * salted keyed hashes of the ten recovery codes (auth/totp.h). has_mfa 0: neither (the user
 * can only enrol). totp_step: the last TOTP step used (a code at or below it is refused);
 * recovery_used: bit i set once code i was used. sessions_revoked_us: sessions issued before
 * it are void. training: "YYYY-MM-DD" of the last security-awareness training, or "". */
#define HDX_USER_TOTP_SEALED_LEN 52 /* auth/totp.h HDX_TOTP_SEALED_LEN */
#define HDX_USER_RECOVERY_CODES 10
#define HDX_USER_RECOVERY_LEN 32 /* salt 16 || keyed hash 16 */
#define HDX_USER_PW_HASH_MAX 128 /* auth/password.h HDX_PW_HASH_MAX */
struct hdx_user {
    char name[65];
    char role[24];
    char pw_hash[HDX_USER_PW_HASH_MAX];
    int has_mfa;
    uint8_t totp_sealed[HDX_USER_TOTP_SEALED_LEN];
    uint8_t recovery[HDX_USER_RECOVERY_CODES][HDX_USER_RECOVERY_LEN];
    uint32_t recovery_used;
    uint64_t totp_step;
    int locked;
    int64_t created_us, pw_changed_us, mfa_us, sessions_revoked_us;
    char training[11];
};
/* HDX_OK and *out, HDX_E_NOTFOUND, or HDX_E_INTEGRITY for a row no statement could have made
 * (a blob of the wrong size). */
int hdx_store_user_get(struct hdx_store *s, const char *name, struct hdx_user *out);
/* Replaces the whole row: only an admin record's transaction calls it (commit/admin.h). */
int hdx_store_user_put(struct hdx_store *s, const struct hdx_user *u);
/* Every row in name order; a damaged row is passed with bad set (its blobs zeroed) so that
 * hdx verify names it; cb returns non-zero to stop. */
int hdx_store_users_list(struct hdx_store *s,
                         int (*cb)(void *ctx, const struct hdx_user *u, int bad), void *ctx);

/* 1 when the users table has a row for name, 0 when not, or a negative error. */
int hdx_store_user_exists(struct hdx_store *s, const char *name);

/* Policy data (DESIGN M7; schema 4): care teams, consent directives and break-glass grants,
 * each table the replay of its admin records (commit/admin.h) and written by nothing else;
 * policy/policy_load.h builds the decision engine's data from them. A patient is its blind
 * token (crypto/keys.h, domain "patient"), never the identifier. A consent row denies one
 * purpose of use or one recipient role: exactly one of purpose and role is non-empty ("" is
 * stored, not NULL, so that the key is unique). A grant is keyed by (user, patient,
 * granted_us = its record's time); reviewed_by "" and reviewed_us 0 until it is reviewed. */
#define HDX_JUSTIFICATION_MAX 500
struct hdx_careteam {
    char user[65];
    uint8_t patient[HDX_BLIND_LEN];
};
struct hdx_consent {
    uint8_t patient[HDX_BLIND_LEN];
    char purpose[16]; /* "" or a purpose of use (policy/policy.h) */
    char role[24];    /* "" or a recipient role (policy/policy.h) */
};
struct hdx_break_glass {
    char user[65];
    uint8_t patient[HDX_BLIND_LEN];
    int64_t granted_us, expires_us;
    char justification[HDX_JUSTIFICATION_MAX + 1];
    char reviewed_by[65];
    int64_t reviewed_us;
};
/* The writers (only an admin record's transaction calls them): set makes the row present or
 * absent; break_glass_put replaces the whole row. */
int hdx_store_careteam_set(struct hdx_store *s, const struct hdx_careteam *c, int present);
int hdx_store_consent_set(struct hdx_store *s, const struct hdx_consent *c, int present);
int hdx_store_break_glass_put(struct hdx_store *s, const struct hdx_break_glass *g);
/* The grant with key's (user, patient, granted_us) into *out: HDX_OK, HDX_E_NOTFOUND, or
 * HDX_E_INTEGRITY for a row no statement could have made. key and out may be the same. */
int hdx_store_break_glass_get(struct hdx_store *s, const struct hdx_break_glass *key,
                              struct hdx_break_glass *out);
/* Every row in key order (careteams: user, patient; consents: patient, purpose, role; grants:
 * user, patient, granted_us), only those of user / patient when it is not NULL. A row no
 * statement could have made (a patient blob not HDX_BLIND_LEN bytes, a text too long for its
 * field) is passed with bad set, so that hdx verify names it and a loader refuses it. cb
 * returns non-zero to stop. The row lives only during the call. */
int hdx_store_careteams_list(struct hdx_store *s, const char *user,
                             int (*cb)(void *ctx, const struct hdx_careteam *c, int bad),
                             void *ctx);
int hdx_store_consents_list(struct hdx_store *s, const uint8_t *patient,
                            int (*cb)(void *ctx, const struct hdx_consent *c, int bad), void *ctx);
int hdx_store_break_glass_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const struct hdx_break_glass *g, int bad),
                               void *ctx);

/* DICOM AE titles (schema 7): the replay of the ae_add/ae_remove admin records
 * (commit/admin.h), keyed by title: an association whose calling AE title is here is bound to
 * device name (net/dicom_session.h). set_us: the commit time of the record that set it. */
#define HDX_AE_TITLE_MAX 16
struct hdx_dicom_ae {
    char title[HDX_AE_TITLE_MAX + 1];
    char name[65];
    int64_t set_us;
};
/* The writer (only an admin record's transaction): name NULL removes the row. */
int hdx_store_dicom_ae_set(struct hdx_store *s, const char *title, const char *name,
                           int64_t set_us);
/* HDX_OK, HDX_E_NOTFOUND, or HDX_E_INTEGRITY for a row that does not fit. */
int hdx_store_dicom_ae_get(struct hdx_store *s, const char *title, struct hdx_dicom_ae *out);
/* Every row in title order (bad: the row does not fit). */
int hdx_store_dicom_aes_list(struct hdx_store *s,
                             int (*cb)(void *ctx, const struct hdx_dicom_ae *a, int bad),
                             void *ctx);

/* Subscribers' granted scopes (schema 5): the replay of the device_scope admin records
 * (commit/admin.h), written by nothing else, keyed by device name. scope is a canonical scope
 * text (policy/scope.h: types, senders, patient tokens; never an identifier); no row: no
 * scope, the device may receive every record its SUB filter matches. set_us: the commit time
 * of the record that set it. A row may exist for a name no device has (yet): a scope is set
 * before the device_add that enrols a scoped device, so it is never enrolled without it. */
#define HDX_DEVICE_SCOPE_MAX 1536 /* policy/scope.h HDX_SCOPE_TEXT_MAX */
struct hdx_device_scope {
    char name[65];
    char scope[HDX_DEVICE_SCOPE_MAX + 1];
    int64_t set_us;
};
/* The writer (only an admin record's transaction): scope NULL removes the row. */
int hdx_store_device_scope_set(struct hdx_store *s, const char *name, const char *scope,
                               int64_t set_us);
/* name's row into *out: HDX_OK, HDX_E_NOTFOUND (no scope), or HDX_E_INTEGRITY for a row no
 * statement could have made (a text too long, a NUL, not text): a caller deciding access
 * refuses then, it does not fall back to "no scope". */
int hdx_store_device_scope_get(struct hdx_store *s, const char *name, struct hdx_device_scope *out);
/* Every device_scopes row in name order, as stored (hdx verify); bad: see _get. */
int hdx_store_scope_rows_list(struct hdx_store *s,
                              int (*cb)(void *ctx, const struct hdx_device_scope *d, int bad),
                              void *ctx);
/* Every device (devices row, revoked ones too) in name order with its scope row, or NULL when
 * it has none (it receives everything: hdx access-review flags those that may subscribe);
 * bad: a row no statement could have made. For hdx device list and hdx access-review. cb
 * returns non-zero to stop; the rows live only during the call. */
int hdx_store_device_scopes_list(struct hdx_store *s,
                                 int (*cb)(void *ctx, const struct hdx_device *d,
                                           const struct hdx_device_scope *scope, int bad),
                                 void *ctx);

/* SMART Backend Services clients (schema 6): the replay of the client_* admin records
 * (commit/admin.h), written by nothing else, keyed by the client id (a principal name: no
 * user or device has it, the hdx CLI refuses the clash both ways). jwks: the registered JWK
 * Set document as the operator gave it (public keys only: auth/jwt.h hdx_jwks_parse accepted
 * it), 1 to HDX_SMART_JWKS_MAX bytes; scope: the canonical SMART scope text the client is
 * granted (auth/smart_scope.h), never empty; revoked_us 0 while active. A revoked client's
 * row stays (its name stays taken) until a client_add registers the name again. */
#define HDX_SMART_JWKS_MAX 8192 /* bytes of a registered JWK Set document */
/* the canonical text of 32 terms of at most "patient/" + 64 + "." + "cruds", a space apart
 * (auth/smart_scope.h: HDX_SMART_SCOPE_TERMS_MAX, HDX_SMART_SCOPE_TYPE_MAX) */
#define HDX_SMART_CLIENT_SCOPE_MAX 2560
struct hdx_smart_client {
    char name[65];
    uint8_t *jwks; /* malloc'd (hdx_smart_client_clear frees it) */
    size_t jwks_len;
    char scope[HDX_SMART_CLIENT_SCOPE_MAX + 1];
    int64_t created_us, revoked_us; /* revoked_us 0: active */
};
/* Frees c->jwks and zeroes *c; NULL is fine. */
void hdx_smart_client_clear(struct hdx_smart_client *c);
/* The writer (only an admin record's transaction): replaces the whole row of c->name. */
int hdx_store_client_put(struct hdx_store *s, const struct hdx_smart_client *c);
/* name's row into *out (zeroed first; out->jwks malloc'd: hdx_smart_client_clear): HDX_OK,
 * HDX_E_NOTFOUND, HDX_E_NOMEM, or HDX_E_INTEGRITY for a row no statement could have made (a
 * jwks that is not a blob of 1..HDX_SMART_JWKS_MAX bytes, a scope that is not text, is empty,
 * too long or holds a NUL, a time out of range): a caller deciding access refuses then. */
int hdx_store_client_get(struct hdx_store *s, const char *name, struct hdx_smart_client *out);
/* Every well-formed row in name order (the row and its jwks live only during the call); cb
 * returns non-zero to stop. HDX_OK, or HDX_E_INTEGRITY when a damaged row was passed over
 * (the others are still visited), or a store error. */
int hdx_store_clients_list(struct hdx_store *s,
                           int (*cb)(void *ctx, const struct hdx_smart_client *c), void *ctx);
/* Every row, damaged ones too (bad set; their fields as far as they could be read), for hdx
 * verify. */
int hdx_store_client_rows_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const struct hdx_smart_client *c, int bad),
                               void *ctx);

/* admin_queue: statements waiting for their admin record (commit/admin.h). enqueue sets *id
 * (> 0); pending calls cb for rows with id > after_id in id order (cb returns non-zero to
 * stop); dequeue deletes one (HDX_E_NOTFOUND when absent: another writer took it); queued
 * says whether a row is still there (1, 0, or a negative error); count is the number of rows
 * (0 on a store older than the table). */
int hdx_store_admin_enqueue(struct hdx_store *s, const uint8_t *body, size_t len,
                            int64_t created_us, int64_t *id);
int hdx_store_admin_pending(struct hdx_store *s, int64_t after_id,
                            int (*cb)(void *ctx, int64_t id, const uint8_t *body, size_t len),
                            void *ctx);
int hdx_store_admin_dequeue(struct hdx_store *s, int64_t id);
/* The queue row holding exactly this statement (0: none): a statement whose record was
 * re-indexed at start (hdx_store_recover) must not be submitted again. */
int64_t hdx_store_admin_find(struct hdx_store *s, const uint8_t *body, size_t len);
int hdx_store_admin_queued(struct hdx_store *s, int64_t id);
long hdx_store_admin_count(struct hdx_store *s);

/* meta(k, v) integers. get: HDX_E_NOTFOUND when unset. */
int hdx_store_meta_get(struct hdx_store *s, const char *key, int64_t *v);
int hdx_store_meta_set(struct hdx_store *s, const char *key, int64_t v);

/* A cursor over dedup_log in seq order from from_seq, for merge walks (hdx verify): next
 * returns 1 and a row (tok_ok 0 when the stored token is not 16 bytes; tok then zero), 0 at
 * the end, or a negative error. The handle may be used for other calls meanwhile. */
struct hdx_store_iter;
int hdx_store_dedup_iter(struct hdx_store *s, int64_t from_seq, struct hdx_store_iter **out);
/* The current row's content digest: 1 (in content), 0 (NULL: a schema-1 row) or -1 (not 16
 * bytes); *reused its reused flag (-1: NULL). */
int hdx_store_iter_dedup_content(struct hdx_store_iter *it, uint8_t content[HDX_BLIND_LEN],
                                 int *reused);
int hdx_store_iter_dedup_next(struct hdx_store_iter *it, int64_t *seq, uint8_t tok[HDX_BLIND_LEN],
                              int *tok_ok);
void hdx_store_iter_free(struct hdx_store_iter *it);
/* Every stream mark in seq order; cb returns non-zero to stop. */
int hdx_store_marks_list(struct hdx_store *s,
                         int (*cb)(void *ctx, int64_t seq, int64_t checkpoint, int64_t verified),
                         void *ctx);

/* Each sender of a record at or after since_us (seq range from hdx_store_seq_at_time), with
 * the time of its newest such record, in sender order, from the index alone: no body is
 * read (hdx access-review: devices silent for a period). cb returns non-zero to stop. */
int hdx_store_senders_since(struct hdx_store *s, int64_t since_us,
                            int (*cb)(void *ctx, const char *sender, int64_t last_us), void *ctx);

#endif
