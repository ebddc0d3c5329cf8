#include "auth/throttle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define SPRAY_SET 16 /* distinct accounts remembered per source */
#define BACKOFF_MAX_S 60

struct entry {
    uint64_t h; /* 0: free */
    char key[72];
    int failures;
    int64_t first_us, last_us, locked_until_us;
    uint64_t accounts[SPRAY_SET]; /* sources: the accounts they failed on */
    int naccounts;
};

struct table {
    struct entry *e;
    size_t n;
};

struct hdx_throttle {
    struct hdx_throttle_conf conf;
    struct table accounts, sources;
};

/* FNV-1a: only to skip unequal keys quickly; keys are compared in full. */
static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 1099511628211ull;
    return h ? h : 1;
}

int hdx_throttle_new(const struct hdx_throttle_conf *conf, struct hdx_throttle **out)
{
    *out = NULL;
    if (!conf->max_entries || conf->max_failures < 1 || conf->source_max_failures < 1 ||
        conf->spray_accounts < 2 || conf->spray_accounts > SPRAY_SET)
        return HDX_E_INVAL;
    struct hdx_throttle *t = calloc(1, sizeof(*t));
    if (!t) return HDX_E_NOMEM;
    t->conf = *conf;
    t->accounts.n = t->sources.n = conf->max_entries;
    t->accounts.e = calloc(conf->max_entries, sizeof(struct entry));
    t->sources.e = calloc(conf->max_entries, sizeof(struct entry));
    if (!t->accounts.e || !t->sources.e) {
        hdx_throttle_free(t);
        return HDX_E_NOMEM;
    }
    *out = t;
    return HDX_OK;
}

void hdx_throttle_free(struct hdx_throttle *t)
{
    if (!t) return;
    free(t->accounts.e);
    free(t->sources.e);
    free(t);
}

static struct entry *find(struct table *tb, const char *key)
{
    uint64_t h = key_hash(key);
    for (size_t i = 0; i < tb->n; i++)
        if (tb->e[i].h == h && strcmp(tb->e[i].key, key) == 0) return &tb->e[i];
    return NULL;
}

/* The entry for key, made if missing in a free slot or the least recently used one's. */
static struct entry *get(struct table *tb, const char *key)
{
    struct entry *e = find(tb, key), *lru = NULL;
    if (e) return e;
    for (size_t i = 0; i < tb->n && !e; i++) {
        if (!tb->e[i].h)
            e = &tb->e[i];
        else if (!lru || tb->e[i].last_us < lru->last_us)
            lru = &tb->e[i];
    }
    if (!e) e = lru;
    memset(e, 0, sizeof(*e));
    e->h = key_hash(key);
    snprintf(e->key, sizeof(e->key), "%s", key);
    return e;
}

/* A window that passed without a lock forgets its failures. */
static void age(const struct hdx_throttle *t, struct entry *e, int64_t now_us)
{
    if (e->locked_until_us > now_us) return;
    if (e->locked_until_us || (e->failures && now_us - e->first_us > t->conf.window_us)) {
        e->failures = 0;
        e->naccounts = 0;
        e->locked_until_us = 0;
    }
}

static int64_t wait_s(int64_t until_us, int64_t now_us)
{
    int64_t s = (until_us - now_us + 999999) / 1000000;
    return s < 1 ? 1 : s;
}

int64_t hdx_throttle_check(struct hdx_throttle *t, const char *source, const char *account,
                           int64_t now_us, const char **why)
{
    struct entry *s = find(&t->sources, source), *a = find(&t->accounts, account);
    if (s) age(t, s, now_us);
    if (a) age(t, a, now_us);
    if (s && s->locked_until_us > now_us) {
        *why = "source";
        return wait_s(s->locked_until_us, now_us);
    }
    if (a && a->locked_until_us > now_us) {
        *why = "account";
        return wait_s(a->locked_until_us, now_us);
    }
    if (a && a->failures >= 2) {
        int shift = a->failures - 2 < 6 ? a->failures - 2 : 6;
        int64_t backoff = (int64_t)1 << shift;
        if (backoff > BACKOFF_MAX_S) backoff = BACKOFF_MAX_S;
        int64_t until = a->last_us + backoff * 1000000;
        if (until > now_us) {
            *why = "account";
            return wait_s(until, now_us);
        }
    }
    *why = NULL;
    return 0;
}

int hdx_throttle_failure(struct hdx_throttle *t, const char *source, const char *account,
                         int64_t now_us)
{
    int flags = 0;
    struct entry *a = get(&t->accounts, account), *s = get(&t->sources, source);
    age(t, a, now_us);
    age(t, s, now_us);
    if (!a->failures) a->first_us = now_us;
    if (!s->failures) s->first_us = now_us;
    a->failures++;
    s->failures++;
    a->last_us = s->last_us = now_us;
    if (a->failures >= t->conf.max_failures && a->locked_until_us <= now_us) {
        a->locked_until_us = now_us + t->conf.lockout_us;
        flags |= HDX_THROTTLE_ACCOUNT_LOCKED;
    }
    uint64_t h = key_hash(account);
    int seen = 0;
    for (int i = 0; i < s->naccounts; i++)
        seen |= s->accounts[i] == h;
    if (!seen && s->naccounts < SPRAY_SET) s->accounts[s->naccounts++] = h;
    if (s->locked_until_us <= now_us) {
        if (s->naccounts >= t->conf.spray_accounts) {
            s->locked_until_us = now_us + t->conf.lockout_us;
            flags |= HDX_THROTTLE_SPRAY | HDX_THROTTLE_SOURCE_LOCKED;
        } else if (s->failures >= t->conf.source_max_failures) {
            s->locked_until_us = now_us + t->conf.lockout_us;
            flags |= HDX_THROTTLE_SOURCE_LOCKED;
        }
    }
    return flags;
}

void hdx_throttle_success(struct hdx_throttle *t, const char *account)
{
    struct entry *a = find(&t->accounts, account);
    if (a && a->locked_until_us == 0) {
        a->failures = 0;
        a->first_us = 0;
    }
}
