#include "auth/jwt.h"

#include <cjose/cjose.h>
#include <jansson.h>
#include <math.h>
#include <openssl/err.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum key_kind { KIND_NONE = 0, KIND_ES384, KIND_RS384 };

struct hdx_jwk {
    cjose_jwk_t *jwk;
    enum key_kind kind;
    int has_kid;
    char kid[HDX_JWK_KID_MAX + 1];
};

struct hdx_jwks {
    size_t n;
    struct hdx_jwk k[HDX_JWKS_MAX_KEYS];
};

static int refuse(char *why, size_t cap, const char *code, int rc)
{
    if (why && cap) snprintf(why, cap, "%s", code);
    return rc;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

/* Strict unpadded base64url (RFC 7515 2): alphabet only, no '=', zero unused bits; libsodium's
 * decoder refuses the rest. Returns the decoded length or -1; out holds cap bytes. */
static long b64u_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (len % 4 == 1) return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
    }
    if (len == 0) return 0;
    if (sodium_base642bin(out, cap, in, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return (long)n;
}

/* ---- JWK Set ------------------------------------------------------------------------- */

static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

/* A JSON string member that is canonical base64url of 1..max bytes into out; -1 otherwise. */
static long member_b64u(json_t *o, const char *name, uint8_t *out, size_t max)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v)) return -1;
    size_t len = json_string_length(v);
    if (len == 0 || len > (max + 2) / 3 * 4) return -1;
    long n = b64u_decode(json_string_value(v), len, out, max);
    return n > 0 ? n : -1;
}

static const char *check_ec(json_t *o)
{
    json_t *crv = json_object_get(o, "crv");
    if (!json_is_string(crv) || strcmp(json_string_value(crv), "P-384") != 0)
        return "crv_not_allowed";
    uint8_t b[64];
    if (member_b64u(o, "x", b, sizeof(b)) != 48 || member_b64u(o, "y", b, sizeof(b)) != 48)
        return "key_invalid";
    return NULL;
}

static const char *check_rsa(json_t *o)
{
    uint8_t n[HDX_JWT_RSA_MAX_BITS / 8 + 1], e[8];
    json_t *nv = json_object_get(o, "n");
    if (json_is_string(nv) && json_string_length(nv) > (sizeof(n) + 2) / 3 * 4)
        return "rsa_too_large";
    long nl = member_b64u(o, "n", n, sizeof(n)), el = member_b64u(o, "e", e, sizeof(e));
    if (nl < 1 || el < 1) return "key_invalid";
    if (n[0] == 0 || e[0] == 0) return "key_invalid"; /* RFC 7518 6.3.1: no leading zeros */
    size_t bits = (size_t)(nl - 1) * 8;
    for (unsigned v = n[0]; v; v >>= 1)
        bits++;
    if (bits < HDX_JWT_RSA_MIN_BITS) return "rsa_too_small";
    if (bits > HDX_JWT_RSA_MAX_BITS) return "rsa_too_large";
    if (!(e[el - 1] & 1) || (el == 1 && e[0] < 3)) return "key_invalid";
    if (!(n[nl - 1] & 1)) return "key_invalid"; /* a modulus is odd */
    return NULL;
}

/* Checks one key object and imports it into *k; NULL or the refusal code. */
static const char *jwk_one(json_t *o, struct hdx_jwk *k)
{
    if (!json_is_object(o)) return "malformed";
    for (size_t i = 0; i < sizeof(private_members) / sizeof(private_members[0]); i++)
        if (json_object_get(o, private_members[i])) return "private_key";
    json_t *kty = json_object_get(o, "kty");
    if (!json_is_string(kty)) return "kty_not_allowed";
    const char *t = json_string_value(kty), *bad;
    if (strcmp(t, "EC") == 0) {
        k->kind = KIND_ES384;
        if ((bad = check_ec(o))) return bad;
    } else if (strcmp(t, "RSA") == 0) {
        k->kind = KIND_RS384;
        if ((bad = check_rsa(o))) return bad;
    } else {
        return "kty_not_allowed";
    }
    json_t *alg = json_object_get(o, "alg");
    if (alg && (!json_is_string(alg) ||
                strcmp(json_string_value(alg), k->kind == KIND_ES384 ? "ES384" : "RS384") != 0))
        return "key_alg_not_allowed";
    json_t *use = json_object_get(o, "use");
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
        return "use_not_sig";
    json_t *ops = json_object_get(o, "key_ops");
    if (ops) {
        int verify = 0;
        size_t i;
        json_t *op;
        if (!json_is_array(ops)) return "key_ops_not_verify";
        json_array_foreach(ops, i, op)
        {
            if (!json_is_string(op)) return "key_ops_not_verify";
            if (strcmp(json_string_value(op), "verify") == 0) verify = 1;
        }
        if (!verify) return "key_ops_not_verify";
    }
    json_t *kid = json_object_get(o, "kid");
    if (kid) {
        size_t n = json_is_string(kid) ? json_string_length(kid) : 0;
        if (n == 0 || n > HDX_JWK_KID_MAX || !printable(json_string_value(kid), n))
            return "kid_invalid";
        memcpy(k->kid, json_string_value(kid), n + 1);
        k->has_kid = 1;
    }
    /* The shape is now exactly what cjose handles well: hand it the same object. */
    /* cjose reports a point off the curve as CJOSE_ERR_NO_MEMORY: its codes do not tell. */
    cjose_err err = {0};
    k->jwk = cjose_jwk_import_json((cjose_header_t *)o, &err);
    ERR_clear_error(); /* a failed import leaves OpenSSL errors queued (see verify_sig) */
    if (!k->jwk) return "key_invalid";
    cjose_jwk_kty_t want = k->kind == KIND_ES384 ? CJOSE_JWK_KTY_EC : CJOSE_JWK_KTY_RSA;
    if (cjose_jwk_get_kty(k->jwk, &err) != want) return "key_invalid";
    if (k->kind == KIND_ES384 && cjose_jwk_EC_get_curve(k->jwk, &err) != CJOSE_JWK_EC_P_384)
        return "key_invalid";
    return NULL;
}

void hdx_jwks_free(struct hdx_jwks *k)
{
    if (!k) return;
    for (size_t i = 0; i < k->n; i++)
        cjose_jwk_release(k->k[i].jwk);
    free(k);
}

size_t hdx_jwks_count(const struct hdx_jwks *k)
{
    return k ? k->n : 0;
}

int hdx_jwks_parse(const char *json, size_t len, struct hdx_jwks **out, char *why, size_t cap)
{
    if (!out) return refuse(why, cap, "bad_argument", HDX_E_INVAL);
    *out = NULL;
    if (!json) return refuse(why, cap, "bad_argument", HDX_E_INVAL);
    if (len > HDX_JWKS_MAX_LEN) return refuse(why, cap, "too_long", HDX_E_TOOBIG);
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *keys = json_is_object(doc) ? json_object_get(doc, "keys") : NULL;
    if (!json_is_array(keys)) {
        json_decref(doc);
        return refuse(why, cap, "malformed", HDX_E_INVAL);
    }
    size_t n = json_array_size(keys);
    if (n == 0 || n > HDX_JWKS_MAX_KEYS) {
        json_decref(doc);
        return refuse(why, cap, n ? "too_many_keys" : "no_keys", n ? HDX_E_TOOBIG : HDX_E_INVAL);
    }
    struct hdx_jwks *s = calloc(1, sizeof(*s));
    if (!s) {
        json_decref(doc);
        return refuse(why, cap, "nomem", HDX_E_NOMEM);
    }
    const char *bad = NULL;
    for (size_t i = 0; i < n && !bad; i++) {
        bad = jwk_one(json_array_get(keys, i), &s->k[i]);
        if (s->k[i].jwk) s->n = i + 1;
        for (size_t j = 0; !bad && s->k[i].has_kid && j < i; j++)
            if (s->k[j].has_kid && strcmp(s->k[j].kid, s->k[i].kid) == 0) bad = "kid_duplicate";
    }
    json_decref(doc);
    if (bad) {
        hdx_jwks_free(s);
        return refuse(why, cap, bad, strcmp(bad, "nomem") == 0 ? HDX_E_NOMEM : HDX_E_INVAL);
    }
    *out = s;
    return HDX_OK;
}

/* ---- replay cache -------------------------------------------------------------------- */

#define NIL UINT32_MAX

struct jti_entry {
    uint8_t id[32];
    int64_t until; /* live while now < until */
    uint32_t next; /* bucket chain, or free list */
};

struct hdx_jti_cache {
    pthread_mutex_t mu;
    size_t max, live;
    uint32_t nbuckets, free_head;
    uint32_t *buckets;
    struct jti_entry *e;
    uint8_t key[crypto_generichash_KEYBYTES];
};

int hdx_jti_cache_new(size_t max_entries, struct hdx_jti_cache **out)
{
    if (!out) return HDX_E_INVAL;
    *out = NULL;
    if (max_entries < 1 || max_entries > HDX_JTI_CACHE_MAX) return HDX_E_INVAL;
    if (sodium_init() < 0) return HDX_E_CRYPTO;
    struct hdx_jti_cache *c = calloc(1, sizeof(*c));
    if (!c) return HDX_E_NOMEM;
    c->max = max_entries;
    c->nbuckets = 1;
    while (c->nbuckets < max_entries)
        c->nbuckets <<= 1;
    c->buckets = malloc(sizeof(uint32_t) * c->nbuckets);
    c->e = calloc(max_entries, sizeof(*c->e));
    if (!c->buckets || !c->e || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->buckets);
        free(c->e);
        free(c);
        return HDX_E_NOMEM;
    }
    for (uint32_t i = 0; i < c->nbuckets; i++)
        c->buckets[i] = NIL;
    for (size_t i = 0; i < max_entries; i++)
        c->e[i].next = i + 1 < max_entries ? (uint32_t)(i + 1) : NIL;
    c->free_head = 0;
    randombytes_buf(c->key, sizeof(c->key));
    *out = c;
    return HDX_OK;
}

void hdx_jti_cache_free(struct hdx_jti_cache *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c->e);
    free(c);
}

static void entry_id(const struct hdx_jti_cache *c, const char *client, const char *jti,
                     uint8_t id[32])
{
    crypto_generichash_state st;
    uint8_t n[2];
    size_t cl = strlen(client), jl = strlen(jti);
    crypto_generichash_init(&st, c->key, sizeof(c->key), 32);
    n[0] = (uint8_t)(cl >> 8), n[1] = (uint8_t)cl;
    crypto_generichash_update(&st, n, 2);
    crypto_generichash_update(&st, (const uint8_t *)client, cl);
    n[0] = (uint8_t)(jl >> 8), n[1] = (uint8_t)jl;
    crypto_generichash_update(&st, n, 2);
    crypto_generichash_update(&st, (const uint8_t *)jti, jl);
    crypto_generichash_final(&st, id, 32);
}

static void unlink_at(struct hdx_jti_cache *c, uint32_t *pp)
{
    uint32_t i = *pp;
    *pp = c->e[i].next;
    c->e[i].next = c->free_head;
    c->free_head = i;
    c->live--;
}

static void sweep(struct hdx_jti_cache *c, int64_t now)
{
    for (uint32_t b = 0; b < c->nbuckets; b++) {
        uint32_t *pp = &c->buckets[b];
        while (*pp != NIL) {
            if (c->e[*pp].until <= now)
                unlink_at(c, pp);
            else
                pp = &c->e[*pp].next;
        }
    }
}

size_t hdx_jti_cache_live(struct hdx_jti_cache *c, int64_t now_s)
{
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    sweep(c, now_s);
    size_t n = c->live;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* HDX_OK (recorded), HDX_E_EXISTS (live duplicate), HDX_E_TOOBIG (full of live entries). */
static int jti_record(struct hdx_jti_cache *c, const char *client, const char *jti, int64_t until,
                      int64_t now)
{
    uint8_t id[32];
    entry_id(c, client, jti, id);
    uint32_t b;
    memcpy(&b, id, sizeof(b));
    b &= c->nbuckets - 1;
    int rc = HDX_OK;
    pthread_mutex_lock(&c->mu);
    uint32_t *pp = &c->buckets[b];
    while (*pp != NIL) {
        struct jti_entry *e = &c->e[*pp];
        if (e->until <= now) {
            unlink_at(c, pp);
            continue;
        }
        if (memcmp(e->id, id, sizeof(id)) == 0) {
            rc = HDX_E_EXISTS;
            goto out;
        }
        pp = &e->next;
    }
    if (c->free_head == NIL) sweep(c, now);
    if (c->free_head == NIL) {
        rc = HDX_E_TOOBIG;
        goto out;
    }
    uint32_t i = c->free_head;
    c->free_head = c->e[i].next;
    memcpy(c->e[i].id, id, sizeof(id));
    c->e[i].until = until;
    c->e[i].next = c->buckets[b];
    c->buckets[b] = i;
    c->live++;
out:
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- the assertion ------------------------------------------------------------------- */

#define PART_MAX (HDX_JWT_MAX_LEN / 4 * 3 + 3)

struct parsed {
    json_t *hdr, *claims;
    const char *alg, *kid; /* into hdr */
    enum key_kind kind;
    size_t siglen, paylen;
    uint8_t payload[PART_MAX];
    uint8_t sig[PART_MAX];
};

static void parsed_free(struct parsed *p)
{
    json_decref(p->hdr);
    json_decref(p->claims);
    free(p);
}

/* Shape only: three strict parts, header and payload JSON objects without duplicates, and the
 * header's members typed. Fills *pp (free with parsed_free) or refuses. */
static int parse_shape(const char *token, size_t len, struct parsed **pp, char *why, size_t cap)
{
    *pp = NULL;
    if (!token) return refuse(why, cap, "bad_argument", HDX_E_INVAL);
    if (len > HDX_JWT_MAX_LEN) return refuse(why, cap, "too_long", HDX_E_TOOBIG);
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return refuse(why, cap, "malformed", HDX_E_INVAL);
    size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1),
           sl = len - (size_t)(d2 + 1 - token);
    struct parsed *p = calloc(1, sizeof(*p));
    if (!p) return refuse(why, cap, "nomem", HDX_E_NOMEM);
    uint8_t *hbuf = p->sig; /* the header is decoded through the signature's buffer first */
    long n = hl ? b64u_decode(token, hl, hbuf, PART_MAX) : -1;
    if (n > 0) p->hdr = json_loadb((const char *)hbuf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    n = pl ? b64u_decode(d1 + 1, pl, p->payload, PART_MAX) : -1;
    if (n > 0) {
        p->paylen = (size_t)n;
        p->claims = json_loadb((const char *)p->payload, p->paylen, JSON_REJECT_DUPLICATES, NULL);
    }
    n = b64u_decode(d2 + 1, sl, p->sig, PART_MAX);
    if (!json_is_object(p->hdr) || !json_is_object(p->claims) || n < 0) goto malformed;
    p->siglen = (size_t)n;
    json_t *alg = json_object_get(p->hdr, "alg"), *kid = json_object_get(p->hdr, "kid");
    json_t *typ = json_object_get(p->hdr, "typ");
    if ((alg && !json_is_string(alg)) || (typ && !json_is_string(typ))) goto malformed;
    if (kid) {
        if (!json_is_string(kid) || json_string_length(kid) > HDX_JWK_KID_MAX) goto malformed;
        p->kid = json_string_value(kid);
    }
    p->alg = alg ? json_string_value(alg) : NULL;
    *pp = p;
    return HDX_OK;
malformed:
    parsed_free(p);
    return refuse(why, cap, "malformed", HDX_E_INVAL);
}

int hdx_assertion_peek(const char *token, size_t len, char *iss, size_t cap, char *why,
                       size_t why_cap)
{
    struct parsed *p;
    if (iss && cap) iss[0] = 0;
    if (!iss || cap == 0) return refuse(why, why_cap, "bad_argument", HDX_E_INVAL);
    int rc = parse_shape(token, len, &p, why, why_cap);
    if (rc != HDX_OK) return rc;
    json_t *v = json_object_get(p->claims, "iss");
    if (!json_is_string(v)) {
        rc = refuse(why, why_cap, "iss_sub_mismatch", HDX_E_PERM);
    } else {
        size_t n = json_string_length(v);
        if (n == 0 || n > HDX_JWT_CLIENT_ID_MAX || n >= cap || !printable(json_string_value(v), n))
            rc = refuse(why, why_cap, "iss_invalid", HDX_E_INVAL);
        else
            memcpy(iss, json_string_value(v), n + 1);
    }
    parsed_free(p);
    return rc;
}

static int str_is(json_t *v, const char *want)
{
    size_t n = strlen(want);
    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), want, n) == 0;
}

/* A NumericDate (RFC 7519 2) into *t: 1, or 0 when not a usable number. up: round a real up. */
static int numeric_date(json_t *v, int up, int64_t *t)
{
    if (json_is_integer(v)) {
        *t = (int64_t)json_integer_value(v);
        return 1;
    }
    if (!json_is_real(v)) return 0;
    double d = json_real_value(v);
    if (!isfinite(d) || d > 9007199254740992.0 || d < -9007199254740992.0) return 0;
    int64_t i = (int64_t)d; /* toward zero; then the stricter way (no libm) */
    if (!up && (double)i > d) i--;
    if (up && (double)i < d) i++;
    *t = i;
    return 1;
}

/* Verifies the signature with the candidate keys; the index of the key that verified, or -1
 * with why set. */
static int verify_sig(const char *token, size_t len, const struct parsed *p,
                      const struct hdx_jwks *keys, char *why, size_t cap, int *rc)
{
    int cand[HDX_JWKS_MAX_KEYS], nc = 0;
    for (size_t i = 0; i < keys->n; i++) {
        const struct hdx_jwk *k = &keys->k[i];
        if (p->kid && !(k->has_kid && strcmp(k->kid, p->kid) == 0)) continue;
        if (k->kind == p->kind) cand[nc++] = (int)i;
    }
    if (nc == 0) {
        *rc = refuse(why, cap, p->kid ? "kid_unknown" : "no_key_for_alg", HDX_E_PERM);
        return -1;
    }
    if (p->kind == KIND_ES384 && p->siglen != 96) {
        *rc = refuse(why, cap, "bad_signature", HDX_E_CRYPTO);
        return -1;
    }
    cjose_err err = {0};
    cjose_jws_t *jws = cjose_jws_import(token, len, &err);
    if (!jws) {
        ERR_clear_error();
        *rc = refuse(why, cap, "malformed", HDX_E_INVAL); /* or out of memory: cjose cannot tell */
        return -1;
    }
    /* cjose decoded the same bytes; make sure it sees the same alg and payload. */
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    const char *calg = cjose_header_get(cjose_jws_get_protected(jws), CJOSE_HDR_ALG, &err);
    if (!calg || strcmp(calg, p->alg) != 0 || !cjose_jws_get_plaintext(jws, &pt, &ptlen, &err) ||
        ptlen != p->paylen || memcmp(pt, p->payload, ptlen) != 0) {
        cjose_jws_release(jws);
        *rc = refuse(why, cap, "malformed", HDX_E_INVAL);
        return -1;
    }
    int found = -1;
    for (int i = 0; i < nc && found < 0; i++)
        if (cjose_jws_verify(jws, keys->k[cand[i]].jwk, &err)) found = cand[i];
    cjose_jws_release(jws);
    /* A failed verification leaves errors on this thread's OpenSSL queue, where a later
     * SSL_get_error on a TLS connection served by the same thread would find them. */
    ERR_clear_error();
    if (found < 0) *rc = refuse(why, cap, "bad_signature", HDX_E_CRYPTO);
    return found;
}

static int check_claims(const struct parsed *p, const char *client_id, const char *token_url,
                        int64_t now, int64_t max_life, int64_t skew, int64_t *exp, char *why,
                        size_t cap)
{
    json_t *c = p->claims;
    if (!str_is(json_object_get(c, "iss"), client_id) ||
        !str_is(json_object_get(c, "sub"), client_id))
        return refuse(why, cap, "iss_sub_mismatch", HDX_E_PERM);
    json_t *aud = json_object_get(c, "aud");
    int aud_ok = str_is(aud, token_url);
    if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a) aud_ok |= str_is(a, token_url);
    }
    if (!aud_ok) return refuse(why, cap, "aud_mismatch", HDX_E_PERM);
    json_t *v = json_object_get(c, "exp");
    if (!v) return refuse(why, cap, "exp_missing", HDX_E_PERM);
    if (!numeric_date(v, 0, exp)) return refuse(why, cap, "exp_invalid", HDX_E_PERM);
    if (*exp <= now - skew) return refuse(why, cap, "expired", HDX_E_PERM);
    if (*exp > now + max_life + skew) return refuse(why, cap, "lifetime_too_long", HDX_E_PERM);
    static const char *const past[][2] = {{"nbf", "nbf_invalid"}, {"iat", "iat_invalid"}};
    for (size_t i = 0; i < 2; i++) {
        int64_t t;
        if (!(v = json_object_get(c, past[i][0]))) continue;
        if (!numeric_date(v, 1, &t)) return refuse(why, cap, past[i][1], HDX_E_PERM);
        if (t > now + skew) return refuse(why, cap, "not_yet_valid", HDX_E_PERM);
    }
    v = json_object_get(c, "jti");
    if (!v) return refuse(why, cap, "jti_missing", HDX_E_PERM);
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || n > HDX_JWT_JTI_MAX || !printable(json_string_value(v), n))
        return refuse(why, cap, "jti_invalid", HDX_E_PERM);
    return HDX_OK;
}

int hdx_assertion_check(const char *token, size_t len, const char *client_id,
                        const struct hdx_jwks *keys, const char *token_url, int64_t now_s,
                        int64_t max_lifetime_s, int64_t skew_s, struct hdx_jti_cache *jti,
                        struct hdx_assertion *out, char *why, size_t cap)
{
    if (out) memset(out, 0, sizeof(*out));
    if (!out || !client_id || !keys || !token_url || !jti || !client_id[0] ||
        strlen(client_id) > HDX_JWT_CLIENT_ID_MAX || !token_url[0] ||
        strlen(token_url) > HDX_JWT_TOKEN_URL_MAX || now_s < 0 || now_s > (INT64_C(1) << 40) ||
        max_lifetime_s < 1 || max_lifetime_s > 86400 || skew_s < 0 || skew_s > 3600)
        return refuse(why, cap, "bad_argument", HDX_E_INVAL);
    struct parsed *p;
    int rc = parse_shape(token, len, &p, why, cap);
    if (rc != HDX_OK) return rc;
    if (p->alg && strcmp(p->alg, "ES384") == 0)
        p->kind = KIND_ES384;
    else if (p->alg && strcmp(p->alg, "RS384") == 0)
        p->kind = KIND_RS384;
    else {
        rc = refuse(why, cap, "alg_not_allowed", HDX_E_PERM);
        goto out;
    }
    json_t *typ = json_object_get(p->hdr, "typ");
    if (typ && !str_is(typ, "JWT")) {
        rc = refuse(why, cap, "typ_not_allowed", HDX_E_PERM);
        goto out;
    }
    if (json_object_get(p->hdr, "crit")) {
        rc = refuse(why, cap, "crit_unsupported", HDX_E_PERM);
        goto out;
    }
    int k = verify_sig(token, len, p, keys, why, cap, &rc);
    if (k < 0) goto out;
    int64_t exp = 0;
    rc = check_claims(p, client_id, token_url, now_s, max_lifetime_s, skew_s, &exp, why, cap);
    if (rc != HDX_OK) goto out;
    const char *j = json_string_value(json_object_get(p->claims, "jti"));
    rc = jti_record(jti, client_id, j, exp + skew_s, now_s);
    if (rc == HDX_E_EXISTS) {
        refuse(why, cap, "jti_replayed", rc);
        goto out;
    }
    if (rc == HDX_E_TOOBIG) {
        refuse(why, cap, "jti_cache_full", rc);
        goto out;
    }
    snprintf(out->client_id, sizeof(out->client_id), "%s", client_id);
    snprintf(out->jti, sizeof(out->jti), "%s", j);
    snprintf(out->kid, sizeof(out->kid), "%s", keys->k[k].has_kid ? keys->k[k].kid : "");
    out->exp = exp;
    if (why && cap) why[0] = 0;
out:
    parsed_free(p);
    return rc;
}
