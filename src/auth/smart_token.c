/* smart_token: SMART access tokens, kept as their SHA-256 (smart_token.h). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/smart_token.h"
#include "core/err.h"

/* Open addressing on the token's SHA-256 (uniform: where a token sits says nothing about it);
 * used: 0 never, 1 a token, 2 one that ended (probes go past it). */
struct slot {
    int used;
    uint8_t hash[crypto_hash_sha256_BYTES];
    struct hdx_smart_token tok;
};

struct hdx_smart_tokens {
    struct slot *slots;
    size_t max, live;
};

static size_t home(const struct hdx_smart_tokens *t, const uint8_t *h)
{
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return (size_t)(v % t->max);
}

int hdx_smart_tokens_new(size_t max, struct hdx_smart_tokens **out)
{
    *out = NULL;
    struct hdx_smart_tokens *t = calloc(1, sizeof(*t));
    if (!t || !max || !(t->slots = calloc(max, sizeof(*t->slots)))) {
        free(t);
        return max ? HDX_E_NOMEM : HDX_E_INVAL;
    }
    t->max = max;
    *out = t;
    return HDX_OK;
}

void hdx_smart_tokens_free(struct hdx_smart_tokens *t)
{
    if (!t) return;
    sodium_memzero(t->slots, t->max * sizeof(*t->slots));
    free(t->slots);
    free(t);
}

void hdx_smart_tokens_sweep(struct hdx_smart_tokens *t, int64_t now_s)
{
    for (size_t i = 0; i < t->max; i++)
        if (t->slots[i].used == 1 && t->slots[i].tok.expires_s <= now_s) {
            sodium_memzero(&t->slots[i], sizeof(t->slots[i]));
            t->slots[i].used = 2;
            t->live--;
        }
}

int hdx_smart_tokens_issue(struct hdx_smart_tokens *t, const char *client,
                           const struct hdx_smart_scopes *scopes, int64_t now_s, int64_t ttl_s,
                           char *out)
{
    if (t->live == t->max) hdx_smart_tokens_sweep(t, now_s);
    if (t->live == t->max) return HDX_E_TOOBIG;
    uint8_t raw[32], h[crypto_hash_sha256_BYTES];
    randombytes_buf(raw, sizeof(raw));
    memcpy(out, HDX_SMART_TOKEN_PREFIX, 5);
    sodium_bin2base64(out + 5, HDX_SMART_TOKEN_LEN - 5 + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    crypto_hash_sha256(h, (const uint8_t *)out, HDX_SMART_TOKEN_LEN);
    struct slot *s = NULL;
    for (size_t k = 0, i = home(t, h); k < t->max && !s; k++, i = (i + 1) % t->max)
        if (t->slots[i].used != 1) s = &t->slots[i];
    if (!s) return HDX_E_TOOBIG;
    memcpy(s->hash, h, sizeof(h));
    s->used = 1;
    memset(&s->tok, 0, sizeof(s->tok));
    size_t cl = strlen(client);
    if (cl >= sizeof(s->tok.client)) cl = sizeof(s->tok.client) - 1;
    memcpy(s->tok.client, client, cl);
    s->tok.scopes = *scopes;
    s->tok.issued_s = now_s;
    s->tok.expires_s = now_s + ttl_s;
    t->live++;
    return HDX_OK;
}

const struct hdx_smart_token *hdx_smart_tokens_find(struct hdx_smart_tokens *t, const char *text,
                                                    size_t len, int64_t now_s)
{
    if (len != HDX_SMART_TOKEN_LEN || memcmp(text, HDX_SMART_TOKEN_PREFIX, 5)) return NULL;
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const uint8_t *)text, len);
    for (size_t k = 0, i = home(t, h); k < t->max && t->slots[i].used; k++, i = (i + 1) % t->max)
        if (t->slots[i].used == 1 && sodium_memcmp(t->slots[i].hash, h, sizeof(h)) == 0)
            return t->slots[i].tok.expires_s > now_s ? &t->slots[i].tok : NULL;
    return NULL;
}

size_t hdx_smart_tokens_revoke(struct hdx_smart_tokens *t, const char *client)
{
    size_t n = 0;
    for (size_t i = 0; i < t->max; i++)
        if (t->slots[i].used == 1 && !strcmp(t->slots[i].tok.client, client)) {
            sodium_memzero(&t->slots[i], sizeof(t->slots[i]));
            t->slots[i].used = 2;
            t->live--;
            n++;
        }
    return n;
}

size_t hdx_smart_tokens_live(const struct hdx_smart_tokens *t)
{
    return t->live;
}
