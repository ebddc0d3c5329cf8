/* fuzz_jwt: libFuzzer entry point for the SMART Backend Services pieces (auth/jwt.h,
 * auth/smart_scope.h). Byte 0 % 4 picks the mode, the rest is the input:
 *   0  a client assertion as received: hdx_assertion_peek and hdx_assertion_check against a
 *      fixed JWK Set (an EC P-384 key made at start-up, kid "k1"). Traps when anything is
 *      accepted (nothing can carry a signature of that fresh key), when a refusal's why is not
 *      one of the documented codes, or when the replay cache records anything.
 *   1  a JWK Set document: hdx_jwks_parse. Traps when a set is accepted with no key or more
 *      than HDX_JWKS_MAX_KEYS, or a refusal leaves a set or a code outside the list.
 *   2  two scope texts split at the first '\n': hdx_smart_scope_parse of each; for what
 *      parses, the canonical text parses back to itself, and the intersection of the two is
 *      sound (everything it allows both allow) and complete (everything a term of the first
 *      names that the second allows, it allows); an empty request gets the grant.
 *   3  a header (JSON) and claims (bytes) split at the first NUL, signed here with the fixed
 *      key when the header is an object whose alg starts "ES" (cjose's own signer), then
 *      checked: reaches the claim rules. Traps when an accepted assertion is not for the
 *      fixed client and URL, carries an exp outside the window, or is accepted twice. */
#include <cjose/cjose.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "auth/smart_scope.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

#define CLIENT "fuzz-client"
#define URL "https://hdx.example/auth/token"
#define NOW INT64_C(1767225600)

static cjose_jwk_t *key;
static struct hdx_jwks *keys;

static const char *const assertion_codes[] = {
    "too_long",       "malformed",      "alg_not_allowed", "typ_not_allowed",   "crit_unsupported",
    "kid_unknown",    "no_key_for_alg", "bad_signature",   "iss_sub_mismatch",  "aud_mismatch",
    "exp_missing",    "exp_invalid",    "expired",         "lifetime_too_long", "nbf_invalid",
    "iat_invalid",    "not_yet_valid",  "jti_missing",     "jti_invalid",       "jti_replayed",
    "jti_cache_full", "nomem",          "iss_invalid"};
static const char *const jwks_codes[] = {
    "too_long",        "malformed",          "no_keys",     "too_many_keys",
    "kty_not_allowed", "crv_not_allowed",    "private_key", "key_alg_not_allowed",
    "use_not_sig",     "key_ops_not_verify", "kid_invalid", "kid_duplicate",
    "rsa_too_small",   "rsa_too_large",      "key_invalid", "nomem"};

static int known(const char *why, const char *const *codes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(why, codes[i]) == 0) return 1;
    return 0;
}

static void init(void)
{
    if (keys) return;
    cjose_err err;
    key = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_384, &err);
    CHECK(key && cjose_jwk_set_kid(key, "k1", 2, &err));
    char *pub = cjose_jwk_to_json(key, false, &err), doc[1024], why[64];
    CHECK(pub);
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", pub);
    free(pub);
    CHECK(hdx_jwks_parse(doc, strlen(doc), &keys, why, sizeof(why)) == HDX_OK);
}

static void check_token(const char *t, size_t n, int may_accept)
{
    struct hdx_jti_cache *c;
    struct hdx_assertion a;
    char why[64], iss[HDX_JWT_CLIENT_ID_MAX + 1];
    CHECK(hdx_jti_cache_new(4, &c) == HDX_OK);
    int prc = hdx_assertion_peek(t, n, iss, sizeof(iss), why, sizeof(why));
    CHECK(memchr(iss, 0, sizeof(iss)));
    if (prc == HDX_OK)
        CHECK(iss[0] && strlen(iss) <= HDX_JWT_CLIENT_ID_MAX);
    else
        CHECK(known(why, assertion_codes, sizeof(assertion_codes) / sizeof(assertion_codes[0])));
    int rc = hdx_assertion_check(t, n, CLIENT, keys, URL, NOW, HDX_JWT_MAX_LIFETIME_S,
                                 HDX_JWT_SKEW_S, c, &a, why, sizeof(why));
    if (rc == HDX_OK) {
        CHECK(may_accept);
        CHECK(prc == HDX_OK && strcmp(iss, CLIENT) == 0);
        CHECK(strcmp(a.client_id, CLIENT) == 0 && a.jti[0] && strcmp(a.kid, "k1") == 0);
        CHECK(a.exp > NOW - HDX_JWT_SKEW_S &&
              a.exp <= NOW + HDX_JWT_MAX_LIFETIME_S + HDX_JWT_SKEW_S);
        CHECK(hdx_jti_cache_live(c, NOW) == 1);
        CHECK(hdx_assertion_check(t, n, CLIENT, keys, URL, NOW, HDX_JWT_MAX_LIFETIME_S,
                                  HDX_JWT_SKEW_S, c, &a, why, sizeof(why)) == HDX_E_EXISTS);
        CHECK(strcmp(why, "jti_replayed") == 0 && a.jti[0] == 0);
    } else {
        CHECK(known(why, assertion_codes, sizeof(assertion_codes) / sizeof(assertion_codes[0])));
        CHECK(a.client_id[0] == 0 && a.jti[0] == 0);
        CHECK(hdx_jti_cache_live(c, NOW) == 0);
    }
    hdx_jti_cache_free(c);
}

static void mode_signed(const uint8_t *d, size_t n)
{
    const uint8_t *nul = memchr(d, 0, n);
    if (!nul) return;
    json_t *h = json_loadb((const char *)d, (size_t)(nul - d), 0, NULL);
    json_t *alg = json_object_get(h, "alg");
    cjose_err err;
    /* cjose's HMAC signer reads an EC key's struct as key bytes: only ES algs are signed */
    if (json_is_object(h) && json_is_string(alg) && strncmp(json_string_value(alg), "ES", 2) == 0) {
        cjose_jws_t *jws =
            cjose_jws_sign(key, (cjose_header_t *)h, nul + 1, n - (size_t)(nul + 1 - d), &err);
        const char *ser;
        if (jws && cjose_jws_export(jws, &ser, &err)) check_token(ser, strlen(ser), 1);
        cjose_jws_release(jws);
    }
    json_decref(h);
}

static void mode_jwks(const uint8_t *d, size_t n)
{
    struct hdx_jwks *k = (struct hdx_jwks *)&k;
    char why[64];
    int rc = hdx_jwks_parse((const char *)d, n, &k, why, sizeof(why));
    if (rc == HDX_OK) {
        CHECK(k && hdx_jwks_count(k) >= 1 && hdx_jwks_count(k) <= HDX_JWKS_MAX_KEYS);
        hdx_jwks_free(k);
    } else {
        CHECK(k == NULL && known(why, jwks_codes, sizeof(jwks_codes) / sizeof(jwks_codes[0])));
    }
}

static const char *const ctxs[] = {"patient", "user", "system"};

static void mode_scope(const uint8_t *d, size_t n)
{
    const uint8_t *nl = memchr(d, '\n', n);
    size_t an = nl ? (size_t)(nl - d) : n;
    const char *b = nl ? (const char *)nl + 1 : "";
    size_t bn = nl ? n - an - 1 : 0;
    static struct hdx_smart_scopes A, B, I, R;
    static char text[HDX_SMART_SCOPE_TEXT_MAX + 1], text2[HDX_SMART_SCOPE_TEXT_MAX + 1];
    char why[64];
    int ra = hdx_smart_scope_parse((const char *)d, an, &A, why, sizeof(why));
    if (ra != HDX_OK) CHECK(A.n == 0 && why[0]);
    int rb = hdx_smart_scope_parse(b, bn, &B, why, sizeof(why));
    if (ra != HDX_OK || rb != HDX_OK) return;
    CHECK(hdx_smart_scope_format(&A, text, sizeof(text)) == HDX_OK);
    CHECK(hdx_smart_scope_parse(text, strlen(text), &R, why, sizeof(why)) == HDX_OK);
    CHECK(hdx_smart_scope_format(&R, text2, sizeof(text2)) == HDX_OK && !strcmp(text, text2));
    CHECK(hdx_smart_scope_intersect(&A, &B, &I) == HDX_OK);
    if (A.n == 0) {
        CHECK(hdx_smart_scope_format(&B, text, sizeof(text)) == HDX_OK);
        CHECK(hdx_smart_scope_format(&I, text2, sizeof(text2)) == HDX_OK && !strcmp(text, text2));
        return;
    }
    for (size_t i = 0; i < I.n; i++) /* sound */
        for (unsigned bit = 0; bit < 5; bit++) {
            if (!(I.t[i].perms & (1u << bit))) continue;
            const char *c = ctxs[I.t[i].context];
            CHECK(hdx_smart_scope_allows(&A, c, I.t[i].type, "cruds"[bit]));
            CHECK(hdx_smart_scope_allows(&B, c, I.t[i].type, "cruds"[bit]));
        }
    for (size_t i = 0; i < A.n; i++) /* complete */
        for (unsigned bit = 0; bit < 5; bit++) {
            const char *c = ctxs[A.t[i].context];
            char l = "cruds"[bit];
            if ((A.t[i].perms & (1u << bit)) && hdx_smart_scope_allows(&B, c, A.t[i].type, l))
                CHECK(hdx_smart_scope_allows(&I, c, A.t[i].type, l));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size == 0) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: {
        char *t = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        CHECK(t);
        memcpy(t, d, n);
        check_token(t, n, 0);
        free(t);
        break;
    }
    case 1: {
        char *t = malloc(n ? n : 1);
        CHECK(t);
        memcpy(t, d, n);
        mode_jwks((const uint8_t *)t, n);
        free(t);
        break;
    }
    case 2:
        mode_scope(d, n);
        break;
    default:
        mode_signed(d, n);
        break;
    }
    return 0;
}
