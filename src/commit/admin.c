#include "commit/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"

#define ADMIN_MAGIC "HDX-ADMIN 1\n"

static const char *const op_names[] = {
    [HDX_ADMIN_DEVICE_ADD] = "device_add",
    [HDX_ADMIN_DEVICE_REVOKE] = "device_revoke",
    [HDX_ADMIN_DEVICE_SIGNKEY] = "device_signkey",
    [HDX_ADMIN_DEVICE_IMPORT] = "device_import",
};
#define NOPS (sizeof(op_names) / sizeof(op_names[0]))

/* The keys after op=, in their one allowed order. */
enum key { K_NAME, K_ROLE, K_SERIAL, K_CREATED, K_REVOKED, K_PUB, K_END };
static const char *const key_names[] = {"name",       "role",       "serial",
                                        "created_us", "revoked_us", "sign_pub"};
static const enum key op_keys[][7] = {
    [HDX_ADMIN_DEVICE_ADD] = {K_NAME, K_ROLE, K_SERIAL, K_CREATED, K_PUB, K_END},
    [HDX_ADMIN_DEVICE_REVOKE] = {K_NAME, K_SERIAL, K_REVOKED, K_END},
    [HDX_ADMIN_DEVICE_SIGNKEY] = {K_NAME, K_PUB, K_END},
    [HDX_ADMIN_DEVICE_IMPORT] = {K_NAME, K_ROLE, K_SERIAL, K_CREATED, K_REVOKED, K_PUB, K_END},
};

const char *hdx_admin_type(enum hdx_admin_op op)
{
    static const char *const types[] = {
        [HDX_ADMIN_DEVICE_ADD] = "admin/device_add",
        [HDX_ADMIN_DEVICE_REVOKE] = "admin/device_revoke",
        [HDX_ADMIN_DEVICE_SIGNKEY] = "admin/device_signkey",
        [HDX_ADMIN_DEVICE_IMPORT] = "admin/device_import",
    };
    return op >= HDX_ADMIN_DEVICE_ADD && (size_t)op < NOPS ? types[op] : NULL;
}

static int role_ok(const char *r)
{
    return !strcmp(r, "device") || !strcmp(r, "subscriber") || !strcmp(r, "gateway");
}

static int serial_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Lower-case hex only: one spelling per key, so one body per statement. */
static int lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* A time: decimal, no leading zero, within int64; min is 0 or 1. */
static int time_ok(const char *v, int64_t min, int64_t *out)
{
    uint64_t u;
    if (hdx_parse_u64(v, &u) != 0 || u > (uint64_t)INT64_MAX || (int64_t)u < min) return 0;
    *out = (int64_t)u;
    return 1;
}

/* One value into a; 0 when invalid. */
static int set_value(struct hdx_admin *a, enum key k, const char *v)
{
    size_t n = strlen(v);
    switch (k) {
    case K_NAME:
        if (!pki_name_valid(v) || n >= sizeof(a->name)) return 0;
        memcpy(a->name, v, n + 1);
        return 1;
    case K_ROLE:
        if (!role_ok(v)) return 0;
        memcpy(a->role, v, n + 1);
        return 1;
    case K_SERIAL:
        if (!serial_ok(v)) return 0;
        memcpy(a->serial, v, n + 1);
        return 1;
    case K_CREATED:
        return time_ok(v, 1, &a->created_us);
    case K_REVOKED:
        return time_ok(v, a->op == HDX_ADMIN_DEVICE_IMPORT ? 0 : 1, &a->revoked_us);
    case K_PUB:
        if (n == 0) return 1;
        if (n != 64 || !lower_hex(v, n) || hdx_unhex(v, a->sign_pub, 32) != 0) return 0;
        a->has_pub = 1;
        return 1;
    case K_END:
        break;
    }
    return 0;
}

/* The next "key=value\n" line at body[*off]: key must be want; the value (no NUL, no LF,
 * at most cap - 1 bytes) goes to val. */
static int next_line(const uint8_t *body, size_t len, size_t *off, const char *want, char *val,
                     size_t cap)
{
    size_t klen = strlen(want), i = *off;
    if (len - i < klen + 2 || memcmp(body + i, want, klen) != 0 || body[i + klen] != '=') return 0;
    i += klen + 1;
    const uint8_t *nl = memchr(body + i, '\n', len - i);
    if (!nl) return 0;
    size_t vlen = (size_t)(nl - (body + i));
    if (vlen >= cap || memchr(body + i, 0, vlen)) return 0;
    memcpy(val, body + i, vlen);
    val[vlen] = 0;
    *off = i + vlen + 1;
    return 1;
}

int hdx_admin_parse(const uint8_t *body, size_t len, struct hdx_admin *out)
{
    char val[80];
    size_t off = sizeof(ADMIN_MAGIC) - 1;
    memset(out, 0, sizeof(*out));
    if (!body || len > HDX_ADMIN_BODY_MAX || len < off || memcmp(body, ADMIN_MAGIC, off) != 0 ||
        !next_line(body, len, &off, "op", val, sizeof(val)))
        goto bad;
    for (size_t i = HDX_ADMIN_DEVICE_ADD; i < NOPS; i++)
        if (!strcmp(val, op_names[i])) out->op = (enum hdx_admin_op)i;
    if (!out->op) goto bad;
    for (const enum key *k = op_keys[out->op]; *k != K_END; k++)
        if (!next_line(body, len, &off, key_names[*k], val, sizeof(val)) ||
            !set_value(out, *k, val))
            goto bad;
    if (off != len) goto bad; /* trailing bytes, or a key this op does not have */
    return HDX_OK;
bad:
    memset(out, 0, sizeof(*out));
    return HDX_E_INVAL;
}

int hdx_admin_format(const struct hdx_admin *a, char *out, size_t cap)
{
    if (!hdx_admin_type(a->op) || cap < 1) return HDX_E_INVAL;
    size_t n = 0;
    int w = snprintf(out, cap, "%sop=%s\n", ADMIN_MAGIC, op_names[a->op]);
    if (w < 0 || (size_t)w >= cap) return HDX_E_TOOBIG;
    n = (size_t)w;
    for (const enum key *k = op_keys[a->op]; *k != K_END; k++) {
        char pub[65] = "";
        if (*k == K_PUB && a->has_pub) hdx_hex(a->sign_pub, 32, pub);
        switch (*k) {
        case K_NAME:
            w = snprintf(out + n, cap - n, "name=%s\n", a->name);
            break;
        case K_ROLE:
            w = snprintf(out + n, cap - n, "role=%s\n", a->role);
            break;
        case K_SERIAL:
            w = snprintf(out + n, cap - n, "serial=%s\n", a->serial);
            break;
        case K_CREATED:
            w = snprintf(out + n, cap - n, "created_us=%lld\n", (long long)a->created_us);
            break;
        case K_REVOKED:
            w = snprintf(out + n, cap - n, "revoked_us=%lld\n", (long long)a->revoked_us);
            break;
        case K_PUB:
            w = snprintf(out + n, cap - n, "sign_pub=%s\n", pub);
            break;
        case K_END:
            w = 0;
            break;
        }
        if (w < 0 || (size_t)w >= cap - n) return HDX_E_TOOBIG;
        n += (size_t)w;
    }
    /* Only what parses is written: the producer's statement is the record. */
    struct hdx_admin back;
    if (n > HDX_ADMIN_BODY_MAX || hdx_admin_parse((const uint8_t *)out, n, &back) != HDX_OK)
        return HDX_E_INVAL;
    return (int)n;
}

/* ---------- apply: one function for the tables and for the replay ---------- */

/* present: the entry exists before (in) and after (out) the statement. */
static void entry_apply(struct hdx_registry_entry *e, int *present, const struct hdx_admin *a,
                        int64_t time_us)
{
    switch (a->op) {
    case HDX_ADMIN_DEVICE_ADD:
    case HDX_ADMIN_DEVICE_IMPORT:
        memset(e, 0, sizeof(*e));
        snprintf(e->dev.name, sizeof(e->dev.name), "%s", a->name);
        snprintf(e->dev.role, sizeof(e->dev.role), "%s", a->role);
        snprintf(e->dev.serial, sizeof(e->dev.serial), "%s", a->serial);
        e->dev.created_us = a->created_us;
        e->dev.revoked_us = a->op == HDX_ADMIN_DEVICE_IMPORT ? a->revoked_us : 0;
        *present = 1;
        break;
    case HDX_ADMIN_DEVICE_REVOKE:
        if (*present && !e->dev.revoked_us && !strcmp(e->dev.serial, a->serial))
            e->dev.revoked_us = a->revoked_us;
        return;
    case HDX_ADMIN_DEVICE_SIGNKEY:
        if (!*present) return;
        break;
    }
    e->has_key = a->has_pub;
    memcpy(e->sign_pub, a->sign_pub, 32);
    e->key_created_us = a->has_pub ? time_us : 0;
}

static size_t registry_pos(const struct hdx_registry *r, const char *name, int *found)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->e[mid].dev.name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const struct hdx_registry_entry *hdx_registry_find(const struct hdx_registry *r, const char *name)
{
    int found;
    size_t i = registry_pos(r, name, &found);
    return found ? &r->e[i] : NULL;
}

int hdx_registry_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    int found;
    size_t i = registry_pos(r, a->name, &found);
    struct hdx_registry_entry e = {0};
    int present = found;
    if (found) e = r->e[i];
    entry_apply(&e, &present, a, time_us);
    if (!present) return HDX_OK;
    if (found) {
        r->e[i] = e;
        return HDX_OK;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct hdx_registry_entry *p = realloc(r->e, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->e = p;
        r->cap = cap;
    }
    memmove(&r->e[i + 1], &r->e[i], (r->n - i) * sizeof(*r->e));
    r->e[i] = e;
    r->n++;
    return HDX_OK;
}

void hdx_registry_free(struct hdx_registry *r)
{
    free(r->e);
    memset(r, 0, sizeof(*r));
}

int hdx_admin_commit(struct hdx_store *s, int64_t queue_id, const uint8_t *body, size_t len,
                     int64_t time_us)
{
    struct hdx_admin a;
    struct hdx_registry_entry e = {0};
    int present = 0, rc = hdx_admin_parse(body, len, &a);
    if (rc != HDX_OK) return rc;
    rc = hdx_store_device_get(s, a.name, &e.dev);
    if (rc == HDX_OK) {
        present = 1;
        rc = hdx_store_device_signkey_row(s, a.name, e.sign_pub, &e.key_created_us);
        e.has_key = rc == HDX_OK;
        if (rc == HDX_E_NOTFOUND) rc = HDX_OK;
    } else if (rc == HDX_E_NOTFOUND) {
        rc = HDX_OK;
    }
    if (rc != HDX_OK) return rc;
    entry_apply(&e, &present, &a, time_us);
    if (present) {
        rc = hdx_store_device_put(s, &e.dev);
        if (rc == HDX_OK)
            rc = hdx_store_device_signkey_set(s, e.dev.name, e.has_key ? e.sign_pub : NULL,
                                              e.key_created_us);
    }
    /* The row may already be gone when no one else could have taken it: a statement is applied
     * once, by the one commit thread that owns the store. */
    if (rc == HDX_OK && queue_id) {
        rc = hdx_store_admin_dequeue(s, queue_id);
        if (rc == HDX_E_NOTFOUND) rc = HDX_OK;
    }
    return rc;
}

struct migrate_ctx {
    struct hdx_store *s;
    size_t n;
    int rc;
};

static int migrate_one(void *arg, const struct hdx_device *d)
{
    struct migrate_ctx *m = arg;
    struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_IMPORT};
    char body[HDX_ADMIN_BODY_MAX + 1];
    int64_t created = 0, id;
    snprintf(a.name, sizeof(a.name), "%s", d->name);
    snprintf(a.role, sizeof(a.role), "%s", d->role);
    snprintf(a.serial, sizeof(a.serial), "%s", d->serial);
    a.created_us = d->created_us;
    a.revoked_us = d->revoked_us;
    a.has_pub = hdx_store_device_signkey_row(m->s, d->name, a.sign_pub, &created) == HDX_OK;
    int n = hdx_admin_format(&a, body, sizeof(body));
    if (n < 0) {
        m->rc = n; /* a row no statement can describe: an operator must look at it */
        return 1;
    }
    m->rc = hdx_store_admin_enqueue(m->s, (const uint8_t *)body, (size_t)n, hdx_now_us(), &id);
    m->n++;
    return m->rc != HDX_OK;
}

int hdx_admin_migrate(struct hdx_store *s, size_t *queued)
{
    int64_t v;
    *queued = 0;
    int rc = hdx_store_meta_get(s, "registry_logged", &v);
    if (rc != HDX_E_NOTFOUND) return rc;
    struct migrate_ctx m = {s, 0, HDX_OK};
    if ((rc = hdx_store_begin(s)) != HDX_OK) return rc;
    rc = hdx_store_devices_list(s, migrate_one, &m);
    if (rc == HDX_OK) rc = m.rc;
    if (rc == HDX_OK) rc = hdx_store_meta_set(s, "registry_logged", 1);
    if (rc == HDX_OK) rc = hdx_store_commit(s);
    if (rc != HDX_OK) {
        hdx_store_rollback(s);
        return rc;
    }
    *queued = m.n;
    return HDX_OK;
}

struct hdx_intake_item *hdx_admin_item_new(int64_t id, const uint8_t *body, size_t len, int *bad)
{
    struct hdx_admin a;
    *bad = hdx_admin_parse(body, len, &a) != HDX_OK;
    if (*bad) return NULL;
    struct hdx_intake_item *it = hdx_intake_item_new(body, len);
    if (!it) return NULL;
    it->kind = HDX_KIND_ADMIN;
    snprintf(it->sender, sizeof(it->sender), "%s", HDX_ADMIN_SENDER);
    snprintf(it->type, sizeof(it->type), "%s", hdx_admin_type(a.op));
    it->admin_id = id;
    return it;
}

int hdx_admin_lock(const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) return HDX_E_IO;
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return HDX_OK;
    int busy = errno == EWOULDBLOCK;
    close(*fd);
    *fd = -1;
    return busy ? HDX_E_EXISTS : HDX_E_IO;
}
