/* admin: the device registry as records of the log (kind HDX_KIND_ADMIN).
 * Contract: the `devices` and `device_keys` tables are the replay of the admin records in seq
 * order, and nothing else writes them. A producer (hdx device, the migration of an older
 * store) enqueues a statement in the store's admin_queue; the commit thread seals it as a
 * record (sender HDX_ADMIN_SENDER, type "admin/<op>", no patient, no duplicate token) and, in
 * the SAME transaction, applies it to the tables and deletes its queue row
 * (hdx_admin_commit). `hdx verify` replays every admin record into an in-memory registry
 * (hdx_registry_*) and compares it with the tables row by row.
 *
 * Body (the record's plaintext): canonical text, every line LF-terminated, keys in exactly
 * this order per op, nothing before or after (docs/RECORD-FORMAT.md, "Admin records"):
 *   HDX-ADMIN 1
 *   op=device_add      name role serial created_us sign_pub
 *   op=device_revoke   name serial revoked_us
 *   op=device_signkey  name sign_pub
 *   op=device_import   name role serial created_us revoked_us sign_pub
 * name: pki_name_valid; role: device|subscriber|gateway; serial: 1-40 lower-case hex digits;
 * *_us: decimal without leading zeros (created_us >= 1, revoked_us >= 1, or 0 in an import:
 * active); sign_pub: 64 lower-case hex digits (Ed25519 raw public key) or empty (none).
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
 * Thread: parse/format/registry any; hdx_admin_commit and hdx_admin_migrate on the store
 * handle's thread. */
#ifndef HDX_ADMIN_H
#define HDX_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "commit/commit.h"
#include "store/store.h"

#define HDX_ADMIN_BODY_MAX 512
#define HDX_ADMIN_SENDER "hdx:admin" /* ':' is outside device names: no CN can take it */

enum hdx_admin_op {
    HDX_ADMIN_DEVICE_ADD = 1,
    HDX_ADMIN_DEVICE_REVOKE,
    HDX_ADMIN_DEVICE_SIGNKEY,
    HDX_ADMIN_DEVICE_IMPORT,
};

struct hdx_admin {
    enum hdx_admin_op op;
    char name[65];
    char role[16];
    char serial[41];
    int64_t created_us, revoked_us;
    int has_pub; /* sign_pub set; 0: empty (no key / key removed) */
    uint8_t sign_pub[32];
};

/* HDX_OK and *out, or HDX_E_INVAL (out zeroed). */
int hdx_admin_parse(const uint8_t *body, size_t len, struct hdx_admin *out);
/* The canonical body into out (NUL-terminated); returns its length, or a negative hdx_err when
 * a field is invalid or cap is small. parse(format(a)) == a. */
int hdx_admin_format(const struct hdx_admin *a, char *out, size_t cap);
/* "admin/device_add" etc.; NULL for an unknown op. */
const char *hdx_admin_type(enum hdx_admin_op op);

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
};
void hdx_registry_free(struct hdx_registry *r);
/* Applies one statement committed at time_us (see the top). HDX_E_NOMEM only. */
int hdx_registry_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us);
const struct hdx_registry_entry *hdx_registry_find(const struct hdx_registry *r, const char *name);

/* The commit thread, inside the transaction that appends the admin record committed at
 * time_us: parses body, applies it to devices/device_keys and deletes admin_queue row
 * queue_id (0: none; a row already gone is no error). Any failure fails the transaction. */
int hdx_admin_commit(struct hdx_store *s, int64_t queue_id, const uint8_t *body, size_t len,
                     int64_t time_us);

/* The intake item (kind ADMIN, sender HDX_ADMIN_SENDER, type of its op, no patient, no
 * duplicate token, origin NULL) for queue row id; NULL when body does not parse (*bad set)
 * or on no memory (*bad 0). */
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
