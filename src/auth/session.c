#include "auth/session.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Entries live in one array; a chained hash over the first bytes of the token's SHA-256 finds
 * them (the hash is uniformly random, so no keyed hash is needed against collisions). */
struct entry {
    struct hdx_session s;
    uint8_t hash[crypto_hash_sha256_BYTES];
    int live;
    int32_t next; /* in its bucket's chain, or the free list */
};

struct hdx_sessions {
    int64_t idle_us, lifetime_us;
    struct entry *e;
    size_t max, count;
    int32_t *bucket, free_head;
    size_t nbuckets; /* a power of two */
    uint64_t next_serial;
};

int hdx_sessions_new(int64_t idle_us, int64_t lifetime_us, size_t max, struct hdx_sessions **out)
{
    *out = NULL;
    if (!max || max > (1u << 24) || idle_us <= 0 || lifetime_us <= 0) return HDX_E_INVAL;
    if (sodium_init() < 0) return HDX_E_CRYPTO;
    struct hdx_sessions *t = calloc(1, sizeof(*t));
    if (!t) return HDX_E_NOMEM;
    t->idle_us = idle_us;
    t->lifetime_us = lifetime_us;
    t->max = max;
    for (t->nbuckets = 16; t->nbuckets < 2 * max; t->nbuckets *= 2) {
    }
    t->e = calloc(max, sizeof(*t->e));
    t->bucket = malloc(t->nbuckets * sizeof(*t->bucket));
    if (!t->e || !t->bucket) {
        hdx_sessions_free(t);
        return HDX_E_NOMEM;
    }
    for (size_t i = 0; i < t->nbuckets; i++)
        t->bucket[i] = -1;
    for (size_t i = 0; i < max; i++)
        t->e[i].next = i + 1 < max ? (int32_t)(i + 1) : -1;
    t->free_head = 0;
    t->next_serial = 1;
    *out = t;
    return HDX_OK;
}

void hdx_sessions_free(struct hdx_sessions *t)
{
    if (!t) return;
    if (t->e) sodium_memzero(t->e, t->max * sizeof(*t->e));
    free(t->e);
    free(t->bucket);
    free(t);
}

static size_t bucket_of(const struct hdx_sessions *t, const uint8_t *hash)
{
    uint64_t v;
    memcpy(&v, hash, sizeof(v));
    return (size_t)(v & (t->nbuckets - 1));
}

static void unlink_entry(struct hdx_sessions *t, int32_t idx)
{
    struct entry *en = &t->e[idx];
    int32_t *p = &t->bucket[bucket_of(t, en->hash)];
    while (*p != -1 && *p != idx)
        p = &t->e[*p].next;
    if (*p == idx) *p = en->next;
    sodium_memzero(en, sizeof(*en));
    en->next = t->free_head;
    t->free_head = idx;
    t->count--;
}

static int expired(const struct hdx_sessions *t, const struct entry *en, int64_t now_us)
{
    return now_us - en->s.last_us > t->idle_us || now_us - en->s.created_us >= t->lifetime_us;
}

int hdx_sessions_create(struct hdx_sessions *t, const char *user, const char *role, int mfa,
                        const char *source, int64_t now_us, char token[HDX_SESSION_TOKEN_LEN + 1],
                        const struct hdx_session **out)
{
    uint8_t raw[HDX_SESSION_TOKEN_BYTES];
    if (strlen(user) >= sizeof(t->e[0].s.user) || strlen(role) >= sizeof(t->e[0].s.role))
        return HDX_E_INVAL;
    if (t->free_head == -1) { /* full: the least recently used one goes */
        int32_t lru = 0;
        for (size_t i = 1; i < t->max; i++)
            if (t->e[i].s.last_us < t->e[lru].s.last_us) lru = (int32_t)i;
        unlink_entry(t, lru);
    }
    int32_t idx = t->free_head;
    struct entry *en = &t->e[idx];
    t->free_head = en->next;
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(token, HDX_SESSION_TOKEN_LEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_hash_sha256(en->hash, (const uint8_t *)token, HDX_SESSION_TOKEN_LEN);
    sodium_memzero(raw, sizeof(raw));
    memset(&en->s, 0, sizeof(en->s));
    snprintf(en->s.user, sizeof(en->s.user), "%s", user);
    snprintf(en->s.role, sizeof(en->s.role), "%s", role);
    snprintf(en->s.source, sizeof(en->s.source), "%s", source ? source : "-");
    sodium_bin2hex(en->s.id, sizeof(en->s.id), en->hash, HDX_SESSION_ID_LEN / 2);
    en->s.mfa = mfa;
    en->s.serial = t->next_serial++;
    en->s.created_us = en->s.last_us = now_us;
    en->live = 1;
    size_t b = bucket_of(t, en->hash);
    en->next = t->bucket[b];
    t->bucket[b] = idx;
    t->count++;
    *out = &en->s;
    return HDX_OK;
}

const struct hdx_session *hdx_sessions_check(struct hdx_sessions *t, const char *token, size_t len,
                                             int64_t now_us)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    if (len != HDX_SESSION_TOKEN_LEN) return NULL;
    crypto_hash_sha256(hash, (const uint8_t *)token, len);
    for (int32_t i = t->bucket[bucket_of(t, hash)]; i != -1; i = t->e[i].next) {
        struct entry *en = &t->e[i];
        if (sodium_memcmp(en->hash, hash, sizeof(hash)) != 0) continue;
        if (expired(t, en, now_us)) {
            unlink_entry(t, i);
            return NULL;
        }
        en->s.last_us = now_us;
        return &en->s;
    }
    return NULL;
}

static int32_t find_serial(const struct hdx_sessions *t, uint64_t serial)
{
    for (size_t i = 0; i < t->max; i++)
        if (t->e[i].live && t->e[i].s.serial == serial) return (int32_t)i;
    return -1;
}

const struct hdx_session *hdx_sessions_by_serial(struct hdx_sessions *t, uint64_t serial,
                                                 int64_t now_us)
{
    int32_t i = find_serial(t, serial);
    if (i < 0) return NULL;
    if (expired(t, &t->e[i], now_us)) {
        unlink_entry(t, i);
        return NULL;
    }
    return &t->e[i].s;
}

int hdx_sessions_end(struct hdx_sessions *t, uint64_t serial)
{
    int32_t i = find_serial(t, serial);
    if (i < 0) return 0;
    unlink_entry(t, i);
    return 1;
}

size_t hdx_sessions_revoke_user(struct hdx_sessions *t, const char *user, int64_t before_us)
{
    size_t n = 0;
    for (size_t i = 0; i < t->max; i++) {
        struct entry *en = &t->e[i];
        if (en->live && strcmp(en->s.user, user) == 0 && en->s.created_us <= before_us) {
            unlink_entry(t, (int32_t)i);
            n++;
        }
    }
    return n;
}

size_t hdx_sessions_expire(struct hdx_sessions *t, int64_t now_us)
{
    size_t n = 0;
    for (size_t i = 0; i < t->max; i++)
        if (t->e[i].live && expired(t, &t->e[i], now_us)) {
            unlink_entry(t, (int32_t)i);
            n++;
        }
    return n;
}

size_t hdx_sessions_count(const struct hdx_sessions *t)
{
    return t->count;
}

int64_t hdx_sessions_remaining_s(const struct hdx_sessions *t, const struct hdx_session *s,
                                 int64_t now_us)
{
    int64_t left = s->created_us + t->lifetime_us - now_us;
    return left > 0 ? left / 1000000 : 0;
}
