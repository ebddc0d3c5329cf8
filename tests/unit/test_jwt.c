/* auth/jwt: SMART Backend Services client assertions with real keys made here (OpenSSL EVP:
 * EC P-384, RSA-3072) and real tokens signed by cjose; one test per rule and why code, the
 * classic algorithm attacks, the replay cache's lifetime and bounds, junk, truncations and bit
 * flips; and tokens made by PyJWT (tests/data/jwt/, an implementation nobody here wrote). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjose/cjose.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "core/err.h"

#define CLIENT "backend-1"
#define URL "https://hdx.example/auth/token"
#define NOW INT64_C(1767225600)
#define LIFE HDX_JWT_MAX_LIFETIME_S
#define SKEW HDX_JWT_SKEW_S

static cjose_jwk_t *ec1, *ec2, *rsa1; /* private keys; ec2 is registered without a kid */
static char *rsa1_pem;                /* rsa1's public key as PEM: the HMAC attack's secret */
static struct hdx_jwks *keys;         /* ec1 (kid "ec1"), rsa1 (kid "rsa1"), ec2 (no kid) */
static struct hdx_jti_cache *cache;

/* ---- keys ---------------------------------------------------------------------------- */

static uint8_t *bn_param(EVP_PKEY *k, const char *name, size_t pad, size_t *len)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    uint8_t *b = malloc(n);
    assert_non_null(b);
    assert_true(BN_bn2binpad(bn, b, (int)n) == (int)n);
    BN_clear_free(bn);
    *len = n;
    return b;
}

static cjose_jwk_t *ec_key(const char *curve, size_t coord, int cjose_crv, const char *kid)
{
    EVP_PKEY *k = EVP_EC_gen(curve);
    assert_non_null(k);
    cjose_jwk_ec_keyspec s = {.crv = cjose_crv};
    s.x = bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, coord, &s.xlen);
    s.y = bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, coord, &s.ylen);
    s.d = bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, coord, &s.dlen);
    cjose_err err;
    cjose_jwk_t *j = cjose_jwk_create_EC_spec(&s, &err);
    assert_non_null(j);
    if (kid) assert_true(cjose_jwk_set_kid(j, kid, strlen(kid), &err));
    free(s.x), free(s.y), free(s.d);
    EVP_PKEY_free(k);
    return j;
}

static cjose_jwk_t *rsa_key(unsigned bits, const char *kid, char **pem)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    assert_non_null(k);
    cjose_jwk_rsa_keyspec s;
    memset(&s, 0, sizeof(s));
    s.n = bn_param(k, OSSL_PKEY_PARAM_RSA_N, 0, &s.nlen);
    s.e = bn_param(k, OSSL_PKEY_PARAM_RSA_E, 0, &s.elen);
    s.d = bn_param(k, OSSL_PKEY_PARAM_RSA_D, 0, &s.dlen);
    s.p = bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR1, 0, &s.plen);
    s.q = bn_param(k, OSSL_PKEY_PARAM_RSA_FACTOR2, 0, &s.qlen);
    s.dp = bn_param(k, OSSL_PKEY_PARAM_RSA_EXPONENT1, 0, &s.dplen);
    s.dq = bn_param(k, OSSL_PKEY_PARAM_RSA_EXPONENT2, 0, &s.dqlen);
    s.qi = bn_param(k, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, 0, &s.qilen);
    cjose_err err;
    cjose_jwk_t *j = cjose_jwk_create_RSA_spec(&s, &err);
    assert_non_null(j);
    if (kid) assert_true(cjose_jwk_set_kid(j, kid, strlen(kid), &err));
    if (pem) {
        BIO *b = BIO_new(BIO_s_mem());
        char *p;
        assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
        long n = BIO_get_mem_data(b, &p);
        /* the BIO's bytes have no NUL after them: strndup may look one past (ASan saw it) */
        *pem = malloc((size_t)n + 1);
        assert_non_null(*pem);
        memcpy(*pem, p, (size_t)n);
        (*pem)[n] = '\0';
        BIO_free(b);
    }
    free(s.n), free(s.e), free(s.d), free(s.p), free(s.q), free(s.dp), free(s.dq), free(s.qi);
    EVP_PKEY_free(k);
    return j;
}

/* {"keys":[public JWK of each]} (malloc'd). */
static char *jwks_of(cjose_jwk_t **k, size_t n, int priv)
{
    char *out = malloc(65536);
    assert_non_null(out);
    size_t o = (size_t)snprintf(out, 65536, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        cjose_err err;
        char *j = cjose_jwk_to_json(k[i], priv, &err);
        assert_non_null(j);
        o += (size_t)snprintf(out + o, 65536 - o, "%s%s", i ? "," : "", j);
        free(j);
    }
    snprintf(out + o, 65536 - o, "]}");
    return out;
}

static int parse_jwks(const char *json, struct hdx_jwks **out, char *why)
{
    return hdx_jwks_parse(json, strlen(json), out, why, 64);
}

/* ---- tokens -------------------------------------------------------------------------- */

/* A compact JWS of payload under alg with kid / typ (NULL: absent), signed by k (malloc'd). */
static char *sign_raw(cjose_jwk_t *k, const char *alg, const char *kid, const char *typ,
                      const char *crit, const char *payload)
{
    cjose_err err;
    cjose_header_t *h = cjose_header_new(&err);
    assert_non_null(h);
    assert_true(cjose_header_set(h, CJOSE_HDR_ALG, alg, &err));
    if (kid) assert_true(cjose_header_set(h, CJOSE_HDR_KID, kid, &err));
    if (typ) assert_true(cjose_header_set(h, "typ", typ, &err));
    if (crit) assert_true(cjose_header_set_raw(h, "crit", crit, &err));
    cjose_jws_t *jws = cjose_jws_sign(k, h, (const uint8_t *)payload, strlen(payload), &err);
    assert_non_null(jws);
    const char *ser;
    assert_true(cjose_jws_export(jws, &ser, &err));
    char *t = strdup(ser);
    cjose_jws_release(jws);
    cjose_header_release(h);
    return t;
}

/* The claims of a good assertion for client c with exp and jti, plus extra members ("" or
 * ",\"k\":v"). */
static char *claims(const char *c, int64_t exp, const char *jti, const char *extra)
{
    char *p = malloc(16384);
    assert_non_null(p);
    snprintf(p, 16384,
             "{\"iss\":\"%s\",\"sub\":\"%s\",\"aud\":\"%s\",\"exp\":%lld,\"jti\":\"%s\"%s}", c, c,
             URL, (long long)exp, jti, extra);
    return p;
}

static char *sign_claims(cjose_jwk_t *k, const char *alg, const char *kid, const char *payload)
{
    return sign_raw(k, alg, kid, "JWT", NULL, payload);
}

static char *good_ec(const char *jti, int64_t exp)
{
    char *c = claims(CLIENT, exp, jti, "");
    char *t = sign_claims(ec1, "ES384", "ec1", c);
    free(c);
    return t;
}

static char why[128];
static struct hdx_assertion got;

static int check_at(const char *token, const char *client, int64_t now)
{
    return hdx_assertion_check(token, strlen(token), client, keys, URL, now, LIFE, SKEW, cache,
                               &got, why, sizeof(why));
}

static int check(const char *token)
{
    return check_at(token, CLIENT, NOW);
}

/* Signs payload with ec1/ES384/kid ec1 and expects rc and why code. */
static void expect_claims(const char *payload, int rc, const char *code)
{
    char *t = sign_claims(ec1, "ES384", "ec1", payload);
    assert_int_equal(check(t), rc);
    assert_string_equal(why, code);
    free(t);
}

static char *b64u(const char *s)
{
    cjose_err err;
    char *o;
    size_t n;
    assert_true(cjose_base64url_encode((const uint8_t *)s, strlen(s), &o, &n, &err));
    return o;
}

/* ---- fixtures ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    ec1 = ec_key("P-384", 48, CJOSE_JWK_EC_P_384, "ec1");
    ec2 = ec_key("P-384", 48, CJOSE_JWK_EC_P_384, NULL);
    rsa1 = rsa_key(3072, "rsa1", &rsa1_pem);
    cjose_jwk_t *all[] = {ec1, rsa1, ec2};
    char *j = jwks_of(all, 3, 0), w[64];
    int rc = parse_jwks(j, &keys, w);
    free(j);
    return rc;
}

static int group_teardown(void **state)
{
    hdx_jwks_free(keys);
    cjose_jwk_release(ec1);
    cjose_jwk_release(ec2);
    cjose_jwk_release(rsa1);
    free(rsa1_pem);
    return 0;
}

static int setup(void **state)
{
    return hdx_jti_cache_new(64, &cache);
}

static int teardown(void **state)
{
    hdx_jti_cache_free(cache);
    cache = NULL;
    return 0;
}

/* ---- accepted ------------------------------------------------------------------------ */

static void test_valid_es384(void **state)
{
    char *t = good_ec("jti-es-1", NOW + 120);
    assert_int_equal(check(t), HDX_OK);
    assert_string_equal(why, "");
    assert_string_equal(got.client_id, CLIENT);
    assert_string_equal(got.jti, "jti-es-1");
    assert_string_equal(got.kid, "ec1");
    assert_int_equal(got.exp, NOW + 120);
    free(t);
}

static void test_valid_rs384(void **state)
{
    char *c = claims(CLIENT, NOW + 300, "jti-rs-1", ",\"iat\":1767225600,\"nbf\":1767225590");
    char *t = sign_claims(rsa1, "RS384", "rsa1", c);
    assert_int_equal(check(t), HDX_OK);
    assert_string_equal(got.kid, "rsa1");
    free(t), free(c);
}

static void test_no_kid_tries_each_key(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "jti-nokid", "");
    char *t = sign_claims(ec2, "ES384", NULL, c); /* ec1 is tried first and fails */
    assert_int_equal(check(t), HDX_OK);
    assert_string_equal(got.kid, "");
    free(t);
    t = sign_raw(rsa1, "RS384", NULL, NULL, NULL, c); /* no typ: allowed */
    assert_int_equal(check(t), HDX_E_EXISTS);         /* verified, then the same jti */
    assert_string_equal(why, "jti_replayed");
    free(t), free(c);
}

static void test_aud_array(void **state)
{
    char p[512];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":[\"https://other\",\"" URL
             "\"],\"exp\":%lld,\"jti\":\"a1\"}",
             (long long)NOW + 10);
    expect_claims(p, HDX_OK, "");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT
             "\",\"aud\":[\"https://other\",1,null],\"exp\":%lld,\"jti\":\"a2\"}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "aud_mismatch");
}

/* ---- header rules -------------------------------------------------------------------- */

static void test_alg_none(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "none-1", "");
    const char *hdrs[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}",
                          "{\"alg\":\"none\",\"kid\":\"ec1\"}", "{\"alg\":\"NONE\"}",
                          "{\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *h = b64u(hdrs[i]), *p = b64u(c), t[2048];
        snprintf(t, sizeof(t), "%s.%s.", h, p);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "alg_not_allowed");
        /* with a signature of some other token attached */
        char *good = good_ec("none-2", NOW + 60);
        snprintf(t, sizeof(t), "%s.%s.%s", h, p, strrchr(good, '.') + 1);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "alg_not_allowed");
        free(h), free(p), free(good);
    }
    free(c);
}

/* The classic attack: HS384 with the RSA public key (its PEM text, and its raw JWK) as the
 * HMAC secret, kid naming the RSA key and without kid. */
static void test_hs384_keyed_with_public_key(void **state)
{
    cjose_err err;
    cjose_jwk_t *oct = cjose_jwk_create_oct_spec((const uint8_t *)rsa1_pem, strlen(rsa1_pem), &err);
    assert_non_null(oct);
    char *c = claims(CLIENT, NOW + 60, "hs-1", "");
    const char *algs[] = {"HS256", "HS384", "HS512"};
    for (size_t i = 0; i < 3; i++) {
        char *t = sign_claims(oct, algs[i], "rsa1", c);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "alg_not_allowed");
        free(t);
        t = sign_claims(oct, algs[i], NULL, c);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "alg_not_allowed");
        free(t);
    }
    cjose_jwk_release(oct);
    char *pub = cjose_jwk_to_json(rsa1, false, &err);
    oct = cjose_jwk_create_oct_spec((const uint8_t *)pub, strlen(pub), &err);
    char *t = sign_claims(oct, "HS384", "rsa1", c);
    assert_int_equal(check(t), HDX_E_PERM);
    assert_string_equal(why, "alg_not_allowed");
    free(t), free(pub), free(c);
    cjose_jwk_release(oct);
}

static void test_other_algs(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "alg-1", "");
    struct {
        cjose_jwk_t *k;
        const char *alg, *kid;
    } cases[] = {{rsa1, "RS256", "rsa1"},
                 {rsa1, "RS512", "rsa1"},
                 {rsa1, "PS384", "rsa1"},
                 {ec1, "ES256", "ec1"},
                 {ec1, "ES512", "ec1"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = sign_claims(cases[i].k, cases[i].alg, cases[i].kid, c);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "alg_not_allowed");
        free(t);
    }
    /* a JSON non-string alg is malformed; a lower-case one is another alg */
    char *h = b64u("{\"alg\":384}"), *p = b64u(c), t[2048];
    snprintf(t, sizeof(t), "%s.%s.AAAA", h, p);
    assert_int_equal(check(t), HDX_E_INVAL);
    assert_string_equal(why, "malformed");
    free(h);
    h = b64u("{\"alg\":\"es384\"}");
    snprintf(t, sizeof(t), "%s.%s.AAAA", h, p);
    assert_int_equal(check(t), HDX_E_PERM);
    assert_string_equal(why, "alg_not_allowed");
    free(h), free(p), free(c);
}

/* alg says ES384 but the kid names the RSA key; RS384 against a set of EC keys only. */
static void test_alg_key_type_mismatch(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "mix-1", "");
    char *t = sign_claims(ec1, "ES384", "rsa1", c);
    assert_int_equal(check(t), HDX_E_PERM);
    assert_string_equal(why, "kid_unknown");
    free(t);
    struct hdx_jwks *eonly;
    char w[64], *j = jwks_of(&ec1, 1, 0);
    assert_int_equal(parse_jwks(j, &eonly, w), HDX_OK);
    t = sign_claims(rsa1, "RS384", NULL, c);
    assert_int_equal(hdx_assertion_check(t, strlen(t), CLIENT, eonly, URL, NOW, LIFE, SKEW, cache,
                                         &got, why, sizeof(why)),
                     HDX_E_PERM);
    assert_string_equal(why, "no_key_for_alg");
    free(t), free(j), free(c);
    hdx_jwks_free(eonly);
}

static void test_typ(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "typ-1", "");
    const char *bad[] = {"JOSE", "jwt", "at+jwt", ""};
    for (size_t i = 0; i < 4; i++) {
        char *t = sign_raw(ec1, "ES384", "ec1", bad[i], NULL, c);
        assert_int_equal(check(t), HDX_E_PERM);
        assert_string_equal(why, "typ_not_allowed");
        free(t);
    }
    free(c);
}

static void test_crit(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "crit-1", "");
    char *t = sign_raw(ec1, "ES384", "ec1", "JWT", "[\"exp\"]", c);
    assert_int_equal(check(t), HDX_E_PERM);
    assert_string_equal(why, "crit_unsupported");
    free(t), free(c);
}

static void test_kid_unknown(void **state)
{
    char *c = claims(CLIENT, NOW + 60, "kid-1", "");
    char *t = sign_claims(ec1, "ES384", "nope", c);
    assert_int_equal(check(t), HDX_E_PERM);
    assert_string_equal(why, "kid_unknown");
    free(t), free(c);
}

static void test_bad_signature(void **state)
{
    /* a token signed by a key the client never registered, under a registered kid */
    cjose_jwk_t *other = ec_key("P-384", 48, CJOSE_JWK_EC_P_384, "ec1");
    char *c = claims(CLIENT, NOW + 60, "sig-1", "");
    char *t = sign_claims(other, "ES384", "ec1", c);
    assert_int_equal(check(t), HDX_E_CRYPTO);
    assert_string_equal(why, "bad_signature");
    assert_int_equal(ERR_peek_error(), 0); /* nothing left on this thread's OpenSSL queue */
    free(t);
    /* a changed signature byte */
    t = good_ec("sig-2", NOW + 60);
    char *s = strrchr(t, '.') + 1;
    s[10] = s[10] == 'A' ? 'B' : 'A';
    assert_int_equal(check(t), HDX_E_CRYPTO);
    assert_string_equal(why, "bad_signature");
    free(t);
    /* an RSA token with its signature removed */
    t = sign_claims(rsa1, "RS384", "rsa1", c);
    char *dot = strrchr(t, '.');
    size_t keep = (size_t)(dot - t);
    char *forged = malloc(keep + 2);
    memcpy(forged, t, keep);
    memcpy(forged + keep, ".", 2);
    assert_int_equal(check(forged), HDX_E_CRYPTO); /* empty signature */
    assert_string_equal(why, "bad_signature");
    free(forged), free(t), free(c);
    cjose_jwk_release(other);
    /* the payload changed after signing (the signature no longer covers it) */
    t = good_ec("sig-3", NOW + 60);
    char *c2 = claims(CLIENT, NOW + 60, "sig-4", ""), *p2 = b64u(c2);
    char *d1 = strchr(t, '.'), *d2 = strrchr(t, '.'), spliced[4096];
    snprintf(spliced, sizeof(spliced), "%.*s.%s%s", (int)(d1 - t), t, p2, d2);
    assert_int_equal(check(spliced), HDX_E_CRYPTO);
    assert_string_equal(why, "bad_signature");
    free(t), free(c2), free(p2);
    assert_int_equal(hdx_jti_cache_live(cache, NOW), 0); /* nothing recorded */
}

/* ---- claims -------------------------------------------------------------------------- */

static void test_iss_sub(void **state)
{
    char *c = claims("someone-else", NOW + 60, "iss-1", "");
    expect_claims(c, HDX_E_PERM, "iss_sub_mismatch");
    free(c);
    char p[512];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"other\",\"aud\":\"" URL
             "\",\"exp\":%lld,\"jti\":\"x\"}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "iss_sub_mismatch");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"aud\":\"" URL "\",\"exp\":%lld,\"jti\":\"x\"}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "iss_sub_mismatch");
    /* a prefix of the client id, and the client id with a suffix */
    c = claims("backend-", NOW + 60, "iss-2", "");
    expect_claims(c, HDX_E_PERM, "iss_sub_mismatch");
    free(c);
    c = claims("backend-1x", NOW + 60, "iss-3", "");
    expect_claims(c, HDX_E_PERM, "iss_sub_mismatch");
    free(c);
    /* the right token checked as another client (the caller looked the wrong one up) */
    char *t = good_ec("iss-4", NOW + 60);
    assert_int_equal(check_at(t, "backend-2", NOW), HDX_E_PERM);
    assert_string_equal(why, "iss_sub_mismatch");
    free(t);
}

static void test_aud_mismatch(void **state)
{
    const char *auds[] = {"\"https://hdx.example/auth/token/\"",
                          "\"https://HDX.example/auth/token\"",
                          "[]",
                          "{}",
                          "null",
                          "\"\""};
    for (size_t i = 0; i < sizeof(auds) / sizeof(auds[0]); i++) {
        char p[512];
        snprintf(p, sizeof(p),
                 "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":%s,\"exp\":%lld,"
                 "\"jti\":\"x\"}",
                 auds[i], (long long)NOW + 10);
        expect_claims(p, HDX_E_PERM, "aud_mismatch");
    }
    char p[512];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"exp\":%lld,\"jti\":\"x\"}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "aud_mismatch");
}

static void test_exp_missing_invalid(void **state)
{
    expect_claims("{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" URL
                  "\",\"jti\":\"x\"}",
                  HDX_E_PERM, "exp_missing");
    const char *bad[] = {"\"1767225700\"", "null", "true", "[1767225700]"};
    for (size_t i = 0; i < 4; i++) {
        char p[512];
        snprintf(p, sizeof(p),
                 "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" URL
                 "\",\"exp\":%s,\"jti\":\"x\"}",
                 bad[i]);
        expect_claims(p, HDX_E_PERM, "exp_invalid");
    }
    /* a real is floored: 1767225660.9 is exp 1767225660 */
    char p[512];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" URL
             "\",\"exp\":%lld.9,\"jti\":\"real\"}",
             (long long)NOW + 60);
    expect_claims(p, HDX_OK, "");
    assert_int_equal(got.exp, NOW + 60);
}

static void test_expired(void **state)
{
    char *c = claims(CLIENT, NOW - SKEW, "exp-1", ""); /* exactly at the edge: expired */
    expect_claims(c, HDX_E_PERM, "expired");
    free(c);
    c = claims(CLIENT, NOW - 3600, "exp-2", "");
    expect_claims(c, HDX_E_PERM, "expired");
    free(c);
    c = claims(CLIENT, NOW - SKEW + 1, "exp-3", ""); /* within the skew: accepted */
    expect_claims(c, HDX_OK, "");
    free(c);
}

static void test_lifetime_too_long(void **state)
{
    char *c = claims(CLIENT, NOW + LIFE + SKEW + 1, "life-1", "");
    expect_claims(c, HDX_E_PERM, "lifetime_too_long");
    free(c);
    c = claims(CLIENT, NOW + 86400 * 365, "life-2", "");
    expect_claims(c, HDX_E_PERM, "lifetime_too_long");
    free(c);
    c = claims(CLIENT, NOW + LIFE + SKEW, "life-3", "");
    expect_claims(c, HDX_OK, "");
    free(c);
}

static void test_not_yet_valid(void **state)
{
    char extra[128], *c;
    snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)(NOW + SKEW + 1));
    c = claims(CLIENT, NOW + 120, "nbf-1", extra);
    expect_claims(c, HDX_E_PERM, "not_yet_valid");
    free(c);
    snprintf(extra, sizeof(extra), ",\"iat\":%lld", (long long)(NOW + SKEW + 1));
    c = claims(CLIENT, NOW + 120, "iat-1", extra);
    expect_claims(c, HDX_E_PERM, "not_yet_valid");
    free(c);
    snprintf(extra, sizeof(extra), ",\"iat\":%lld.5", (long long)(NOW + SKEW)); /* rounds up */
    c = claims(CLIENT, NOW + 120, "iat-2", extra);
    expect_claims(c, HDX_E_PERM, "not_yet_valid");
    free(c);
    c = claims(CLIENT, NOW + 120, "nbf-2", ",\"nbf\":\"soon\"");
    expect_claims(c, HDX_E_PERM, "nbf_invalid");
    free(c);
    c = claims(CLIENT, NOW + 120, "iat-3", ",\"iat\":null");
    expect_claims(c, HDX_E_PERM, "iat_invalid");
    free(c);
    snprintf(extra, sizeof(extra), ",\"iat\":%lld,\"nbf\":%lld", (long long)(NOW + SKEW),
             (long long)(NOW + SKEW));
    c = claims(CLIENT, NOW + 120, "iat-4", extra);
    expect_claims(c, HDX_OK, "");
    free(c);
}

static void test_jti_missing_invalid(void **state)
{
    char p[1024];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" URL "\",\"exp\":%lld}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "jti_missing");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" CLIENT "\",\"sub\":\"" CLIENT "\",\"aud\":\"" URL
             "\",\"exp\":%lld,\"jti\":42}",
             (long long)NOW + 10);
    expect_claims(p, HDX_E_PERM, "jti_invalid");
    char *c = claims(CLIENT, NOW + 10, "", "");
    expect_claims(c, HDX_E_PERM, "jti_invalid");
    free(c);
    c = claims(CLIENT, NOW + 10, "tab\\there", "");
    expect_claims(c, HDX_E_PERM, "jti_invalid");
    free(c);
    char long_jti[HDX_JWT_JTI_MAX + 2];
    memset(long_jti, 'j', sizeof(long_jti) - 1);
    long_jti[HDX_JWT_JTI_MAX + 1] = 0; /* 256 */
    c = claims(CLIENT, NOW + 10, long_jti, "");
    expect_claims(c, HDX_E_PERM, "jti_invalid");
    free(c);
    long_jti[HDX_JWT_JTI_MAX] = 0; /* 255 */
    c = claims(CLIENT, NOW + 10, long_jti, "");
    expect_claims(c, HDX_OK, "");
    assert_int_equal(strlen(got.jti), HDX_JWT_JTI_MAX);
    free(c);
}

/* ---- replay -------------------------------------------------------------------------- */

static void test_jti_replayed(void **state)
{
    char *t = good_ec("replay-1", NOW + 100);
    assert_int_equal(check(t), HDX_OK);
    assert_int_equal(check(t), HDX_E_EXISTS);
    assert_string_equal(why, "jti_replayed");
    assert_int_equal(check_at(t, CLIENT, NOW + 100 + SKEW - 1), HDX_E_EXISTS);
    /* another token (RS384, other exp) with the same jti */
    char *c = claims(CLIENT, NOW + 200, "replay-1", "");
    char *t2 = sign_claims(rsa1, "RS384", "rsa1", c);
    assert_int_equal(check(t2), HDX_E_EXISTS);
    assert_string_equal(why, "jti_replayed");
    free(t), free(t2), free(c);
}

static void test_jti_other_client(void **state)
{
    char *t = good_ec("shared-jti", NOW + 100);
    assert_int_equal(check(t), HDX_OK);
    char *c = claims("backend-2", NOW + 100, "shared-jti", "");
    char *t2 = sign_claims(ec1, "ES384", "ec1", c); /* backend-2 registered the same keys */
    assert_int_equal(check_at(t2, "backend-2", NOW), HDX_OK);
    assert_int_equal(check_at(t2, "backend-2", NOW), HDX_E_EXISTS);
    free(t), free(t2), free(c);
}

/* The entry lives until exp + skew and not a second less (Azure-Samples #413). */
static void test_jti_lifetime(void **state)
{
    int64_t exp = NOW + 100;
    char *t = good_ec("again", exp);
    assert_int_equal(check(t), HDX_OK);
    char *c = claims(CLIENT, NOW + 400, "again", "");
    char *t2 = sign_claims(ec1, "ES384", "ec1", c);
    /* the first token itself is still acceptable one second before exp + skew */
    assert_int_equal(check_at(t, CLIENT, exp + SKEW - 1), HDX_E_EXISTS);
    assert_int_equal(check_at(t2, CLIENT, exp + SKEW - 1), HDX_E_EXISTS);
    assert_string_equal(why, "jti_replayed");
    assert_int_equal(check_at(t, CLIENT, exp + SKEW), HDX_E_PERM); /* now expired itself */
    assert_string_equal(why, "expired");
    assert_int_equal(check_at(t2, CLIENT, exp + SKEW), HDX_OK);
    assert_int_equal(check_at(t2, CLIENT, exp + SKEW), HDX_E_EXISTS);
    free(t), free(t2), free(c);
}

static void test_jti_cache_full(void **state)
{
    struct hdx_jti_cache *small;
    assert_int_equal(hdx_jti_cache_new(2, &small), HDX_OK);
    char *t[3];
    for (int i = 0; i < 3; i++) {
        char j[16];
        snprintf(j, sizeof(j), "full-%d", i);
        t[i] = good_ec(j, NOW + 10 + i * 100);
    }
    struct hdx_assertion a;
    assert_int_equal(hdx_assertion_check(t[0], strlen(t[0]), CLIENT, keys, URL, NOW, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_OK);
    assert_int_equal(hdx_assertion_check(t[1], strlen(t[1]), CLIENT, keys, URL, NOW, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_OK);
    assert_int_equal(hdx_assertion_check(t[2], strlen(t[2]), CLIENT, keys, URL, NOW, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_E_TOOBIG);
    assert_string_equal(why, "jti_cache_full");
    /* no live entry was evicted to make room */
    assert_int_equal(hdx_assertion_check(t[0], strlen(t[0]), CLIENT, keys, URL, NOW + 5, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_E_EXISTS);
    assert_int_equal(hdx_jti_cache_live(small, NOW), 2);
    /* once the first has expired (exp + skew), its slot is reused */
    int64_t later = NOW + 10 + SKEW;
    assert_int_equal(hdx_assertion_check(t[2], strlen(t[2]), CLIENT, keys, URL, later, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_OK);
    assert_int_equal(hdx_jti_cache_live(small, later), 2);
    assert_int_equal(hdx_assertion_check(t[1], strlen(t[1]), CLIENT, keys, URL, later, LIFE, SKEW,
                                         small, &a, why, sizeof(why)),
                     HDX_E_EXISTS);
    for (int i = 0; i < 3; i++)
        free(t[i]);
    hdx_jti_cache_free(small);
    assert_int_equal(hdx_jti_cache_new(0, &small), HDX_E_INVAL);
    assert_null(small);
}

/* Many clients and jtis through a cache of 64: each recorded once, and the bound holds. */
static void test_jti_cache_many(void **state)
{
    for (int i = 0; i < 64; i++) {
        char j[16];
        snprintf(j, sizeof(j), "many-%d", i);
        char *t = good_ec(j, NOW + 1 + i % 7);
        assert_int_equal(check(t), HDX_OK);
        free(t);
    }
    assert_int_equal(hdx_jti_cache_live(cache, NOW), 64);
    char *t = good_ec("many-65", NOW + 100);
    assert_int_equal(check(t), HDX_E_TOOBIG);
    assert_int_equal(check_at(t, CLIENT, NOW + 1 + SKEW), HDX_OK); /* some have expired */
    assert_true(hdx_jti_cache_live(cache, NOW + 1 + SKEW) < 64);
    free(t);
}

/* ---- size and junk ------------------------------------------------------------------- */

static void test_too_long(void **state)
{
    char *pad = malloc(7000), extra[7100];
    memset(pad, 'a', 6999);
    pad[6999] = 0;
    snprintf(extra, sizeof(extra), ",\"pad\":\"%s\"", pad);
    char *c = claims(CLIENT, NOW + 60, "big-1", extra);
    char *t = sign_claims(ec1, "ES384", "ec1", c);
    assert_true(strlen(t) > HDX_JWT_MAX_LEN);
    assert_int_equal(check(t), HDX_E_TOOBIG);
    assert_string_equal(why, "too_long");
    char iss[HDX_JWT_CLIENT_ID_MAX + 1];
    assert_int_equal(hdx_assertion_peek(t, strlen(t), iss, sizeof(iss), why, sizeof(why)),
                     HDX_E_TOOBIG);
    free(t), free(c), free(pad);
}

static void expect_malformed(const char *t, size_t len)
{
    int rc = hdx_assertion_check(t, len, CLIENT, keys, URL, NOW, LIFE, SKEW, cache, &got, why,
                                 sizeof(why));
    assert_int_not_equal(rc, HDX_OK);
    assert_true(why[0] != 0);
    char iss[HDX_JWT_CLIENT_ID_MAX + 1];
    (void)hdx_assertion_peek(t, len, iss, sizeof(iss), why, sizeof(why));
    assert_true(memchr(iss, 0, sizeof(iss)) != NULL);
}

static void test_malformed(void **state)
{
    const char *junk[] = {
        "", ".", "..", "...", "a.b.c", "abc", "eyJhbGciOiJFUzM4NCJ9", "eyJhbGciOiJFUzM4NCJ9..",
        "eyJhbGciOiJFUzM4NCJ9.e30.", "e30.e30.e30", "W10.e30.AAAA", "e30.W10.AAAA",
        /* padding, standard alphabet, whitespace: not base64url */
        "eyJhbGciOiJFUzM4NCJ9==.e30.AAAA", "eyJhbGciOiJFUzM4NCJ9.e30=.AAAA",
        "eyJhbGciOiJFUzM4NCJ9.e30.AA+/", "eyJhbGciOiJFUzM4NCJ9 .e30.AAAA",
        "A=AA.A=AA.A=AA", /* '=' early: makes cjose 0.6.2.1's decoder assert */
        "eyJhbGciOiJFUzM4NCJ9.e30.A", "eyJhbGciOiJFUzM4NCJ9.e31.AAAA", /* non-zero tail bits */
        "\xff\xfe.\x01.\x02"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        expect_malformed(junk[i], strlen(junk[i]));
        if (strcmp(junk[i], "eyJhbGciOiJFUzM4NCJ9.e30.") == 0)
            assert_string_equal(why, "iss_sub_mismatch"); /* peek: no iss */
    }
    /* duplicate members: {"alg":"none","alg":"ES384"} and a duplicate iss */
    char *h = b64u("{\"alg\":\"none\",\"alg\":\"ES384\"}"), t[1024];
    snprintf(t, sizeof(t), "%s.e30.AAAA", h);
    assert_int_equal(check(t), HDX_E_INVAL);
    assert_string_equal(why, "malformed");
    free(h);
    expect_claims("{\"iss\":\"" CLIENT "\",\"iss\":\"" CLIENT "\"}", HDX_E_INVAL, "malformed");
    /* a NUL inside, a \u0000 inside a claim */
    char *g = good_ec("nul-1", NOW + 60);
    size_t gl = strlen(g);
    g[5] = 0;
    expect_malformed(g, gl);
    free(g);
    expect_claims("{\"iss\":\"" CLIENT "\\u0000x\",\"sub\":\"" CLIENT "\"}", HDX_E_INVAL,
                  "malformed");
    /* deterministic random bytes and random base64url "tokens" */
    uint32_t x = 12345;
    char buf[600];
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    for (int r = 0; r < 2000; r++) {
        size_t n = (x = x * 1103515245u + 12345u) % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = r % 2 ? (char)(x >> 16) : al[(x >> 16) % (sizeof(al) - 1)];
        }
        expect_malformed(buf, n);
    }
    assert_int_equal(hdx_jti_cache_live(cache, NOW), 0);
}

/* Every prefix and every single-bit flip of a good token is refused, and never crashes. */
static void test_truncations_and_flips(void **state)
{
    char *t = good_ec("flip-1", NOW + 60);
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        expect_malformed(t, i);
    char *c = malloc(n);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) {
            memcpy(c, t, n);
            c[i] ^= (char)(1 << b);
            expect_malformed(c, n);
        }
    free(c);
    assert_int_equal(hdx_jti_cache_live(cache, NOW), 0);
    assert_int_equal(check(t), HDX_OK);
    free(t);
}

static void test_peek(void **state)
{
    char iss[HDX_JWT_CLIENT_ID_MAX + 1];
    char *t = good_ec("peek-1", NOW + 60);
    assert_int_equal(hdx_assertion_peek(t, strlen(t), iss, sizeof(iss), why, sizeof(why)), HDX_OK);
    assert_string_equal(iss, CLIENT);
    assert_int_equal(hdx_jti_cache_live(cache, NOW), 0); /* peek records nothing */
    free(t);
    char *c = claims("bad\\u0001name", NOW + 60, "peek-2", "");
    t = sign_claims(ec1, "ES384", "ec1", c);
    assert_int_equal(hdx_assertion_peek(t, strlen(t), iss, sizeof(iss), why, sizeof(why)),
                     HDX_E_INVAL);
    assert_string_equal(why, "iss_invalid");
    assert_string_equal(iss, "");
    free(t), free(c);
    /* bad arguments */
    assert_int_equal(hdx_assertion_peek("a.b.c", 5, iss, 0, why, sizeof(why)), HDX_E_INVAL);
    assert_int_equal(hdx_assertion_check("a.b.c", 5, NULL, keys, URL, NOW, LIFE, SKEW, cache, &got,
                                         why, sizeof(why)),
                     HDX_E_INVAL);
    assert_string_equal(why, "bad_argument");
    assert_int_equal(hdx_assertion_check("a.b.c", 5, CLIENT, keys, URL, NOW, LIFE, SKEW, NULL, &got,
                                         why, sizeof(why)),
                     HDX_E_INVAL);
    assert_int_equal(hdx_assertion_check("a.b.c", 5, CLIENT, keys, URL, -1, LIFE, SKEW, cache, &got,
                                         why, sizeof(why)),
                     HDX_E_INVAL);
}

/* ---- JWK Sets ------------------------------------------------------------------------ */

static void expect_jwks(const char *json, int rc, const char *code)
{
    struct hdx_jwks *k = (struct hdx_jwks *)1;
    char w[64];
    assert_int_equal(parse_jwks(json, &k, w), rc);
    assert_string_equal(w, code);
    assert_null(k);
}

/* The public JWK of key with one member replaced or added: {"keys":[...]} (malloc'd). */
static char *jwks_edit(cjose_jwk_t *key, int priv, const char *extra)
{
    cjose_err err;
    char *j = cjose_jwk_to_json(key, priv, &err), *out = malloc(strlen(j) + 256);
    j[strlen(j) - 1] = 0; /* drop the closing brace */
    sprintf(out, "{\"keys\":[%s%s}]}", j, extra);
    free(j);
    return out;
}

static void test_jwks_private_refused(void **state)
{
    char *j = jwks_of(&ec1, 1, 1);
    expect_jwks(j, HDX_E_INVAL, "private_key");
    free(j);
    j = jwks_of(&rsa1, 1, 1);
    expect_jwks(j, HDX_E_INVAL, "private_key");
    free(j);
    j = jwks_edit(rsa1, 0, ",\"p\":\"AQAB\"");
    expect_jwks(j, HDX_E_INVAL, "private_key");
    free(j);
    /* a secret key of any kind */
    expect_jwks("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", HDX_E_INVAL, "private_key");
}

static void test_jwks_rsa_1024_refused(void **state)
{
    cjose_jwk_t *r = rsa_key(1024, "small", NULL);
    char *j = jwks_of(&r, 1, 0);
    expect_jwks(j, HDX_E_INVAL, "rsa_too_small");
    free(j);
    cjose_jwk_release(r);
}

static void test_jwks_rules(void **state)
{
    struct hdx_jwks *k;
    char w[64];
    /* the group's set: three keys */
    assert_int_equal(hdx_jwks_count(keys), 3);
    expect_jwks("{\"keys\":[{\"kty\":\"oct\"}]}", HDX_E_INVAL, "kty_not_allowed");
    expect_jwks("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}", HDX_E_INVAL,
                "kty_not_allowed");
    expect_jwks("{\"keys\":[{\"crv\":\"P-384\"}]}", HDX_E_INVAL, "kty_not_allowed");
    cjose_jwk_t *p256 = ec_key("P-256", 32, CJOSE_JWK_EC_P_256, "p256");
    char *j = jwks_of(&p256, 1, 0);
    expect_jwks(j, HDX_E_INVAL, "crv_not_allowed");
    free(j);
    cjose_jwk_release(p256);
    expect_jwks("{\"keys\":[]}", HDX_E_INVAL, "no_keys");
    expect_jwks("{\"keys\":{}}", HDX_E_INVAL, "malformed");
    expect_jwks("[]", HDX_E_INVAL, "malformed");
    expect_jwks("{\"keys\":[1]}", HDX_E_INVAL, "malformed");
    expect_jwks("{\"keys\":[],\"keys\":[]}", HDX_E_INVAL, "malformed");
    expect_jwks("not json", HDX_E_INVAL, "malformed");
    cjose_jwk_t *nine[9];
    for (int i = 0; i < 9; i++)
        nine[i] = ec1;
    j = jwks_of(nine, 9, 0);
    expect_jwks(j, HDX_E_TOOBIG, "too_many_keys");
    free(j);
    j = jwks_of(nine, 2, 0); /* ec1 twice: kid "ec1" twice */
    expect_jwks(j, HDX_E_INVAL, "kid_duplicate");
    free(j);
    cjose_jwk_t *eight[8] = {ec1, ec2, ec2, ec2, ec2, ec2, ec2, rsa1}; /* ec2 has no kid */
    j = jwks_of(eight, 8, 0);
    assert_int_equal(parse_jwks(j, &k, w), HDX_OK);
    assert_int_equal(hdx_jwks_count(k), 8);
    hdx_jwks_free(k);
    free(j);
    j = jwks_edit(rsa1, 0, ",\"alg\":\"RS256\"");
    expect_jwks(j, HDX_E_INVAL, "key_alg_not_allowed");
    free(j);
    j = jwks_edit(ec1, 0, ",\"alg\":\"RS384\"");
    expect_jwks(j, HDX_E_INVAL, "key_alg_not_allowed");
    free(j);
    j = jwks_edit(ec1, 0, ",\"alg\":\"ES384\",\"use\":\"sig\",\"key_ops\":[\"verify\"]");
    assert_int_equal(parse_jwks(j, &k, w), HDX_OK);
    hdx_jwks_free(k);
    free(j);
    j = jwks_edit(ec1, 0, ",\"use\":\"enc\"");
    expect_jwks(j, HDX_E_INVAL, "use_not_sig");
    free(j);
    j = jwks_edit(ec1, 0, ",\"key_ops\":[\"sign\"]");
    expect_jwks(j, HDX_E_INVAL, "key_ops_not_verify");
    free(j);
    expect_jwks("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":7}]}", HDX_E_INVAL,
                "key_invalid"); /* no x, y: refused before the kid is looked at */
    j = jwks_edit(ec2, 0, ",\"kid\":\"\"");
    expect_jwks(j, HDX_E_INVAL, "kid_invalid");
    free(j);
    expect_jwks("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", HDX_E_INVAL, "key_invalid");
    assert_int_equal(hdx_jwks_parse("{}", 2, NULL, w, sizeof(w)), HDX_E_INVAL);
    char *huge = malloc(HDX_JWKS_MAX_LEN + 2);
    memset(huge, ' ', HDX_JWKS_MAX_LEN + 1);
    huge[HDX_JWKS_MAX_LEN + 1] = 0;
    expect_jwks(huge, HDX_E_TOOBIG, "too_long");
    free(huge);
}

/* Coordinates that are not a point on P-384, padded or short base64url, an even exponent. */
static void test_jwks_bad_key_material(void **state)
{
    cjose_err err;
    char *pub = cjose_jwk_to_json(ec2, false, &err);
    json_t *o = json_loads(pub, 0, NULL);
    free(pub);
    char y[80];
    snprintf(y, sizeof(y), "%s", json_string_value(json_object_get(o, "y")));
    y[5] = y[5] == 'A' ? 'B' : 'A';
    const char *ys[] = {y, "AAAA", "A=AA", "====", ""};
    for (size_t i = 0; i < sizeof(ys) / sizeof(ys[0]); i++) {
        json_object_set_new(o, "y", json_string(ys[i]));
        char *s = json_dumps(o, JSON_COMPACT), doc[1024];
        snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", s);
        expect_jwks(doc, HDX_E_INVAL, "key_invalid");
        assert_int_equal(ERR_peek_error(), 0);
        free(s);
    }
    json_decref(o);
    /* the same 96-character x with a '=' inside (cjose's decoder would stop there) */
    pub = cjose_jwk_to_json(ec2, false, &err);
    o = json_loads(pub, 0, NULL);
    free(pub);
    char x[80];
    snprintf(x, sizeof(x), "%s", json_string_value(json_object_get(o, "x")));
    x[1] = '=';
    json_object_set_new(o, "x", json_string(x));
    char *s = json_dumps(o, JSON_COMPACT), doc[1024];
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", s);
    expect_jwks(doc, HDX_E_INVAL, "key_invalid");
    free(s);
    json_decref(o);
    pub = cjose_jwk_to_json(rsa1, false, &err);
    o = json_loads(pub, 0, NULL);
    free(pub);
    const char *es[] = {"AQAA", "AQ", "AAEAAQ", "Ag"}; /* 65536 even; 1; leading zero; 2 */
    for (size_t i = 0; i < 4; i++) {
        json_object_set_new(o, "e", json_string(es[i]));
        char *t = json_dumps(o, JSON_COMPACT), *d = malloc(strlen(t) + 16);
        sprintf(d, "{\"keys\":[%s]}", t);
        expect_jwks(d, HDX_E_INVAL, "key_invalid");
        free(t), free(d);
    }
    json_decref(o);
}

/* ---- PyJWT interop ------------------------------------------------------------------- */

static char *slurp(const char *name)
{
    char path[4096];
    const char *dir = getenv("HDX_TEST_DATA");
    snprintf(path, sizeof(path), "%s/jwt/%s", dir ? dir : "tests/data", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = calloc(1, 65536);
    size_t n = fread(b, 1, 65535, f);
    fclose(f);
    while (n && (b[n - 1] == '\n' || b[n - 1] == '\r'))
        b[--n] = 0;
    return b;
}

static void test_interop_pyjwt(void **state)
{
    const char *pairs[][3] = {{"ec-jwks.json", "ec-assertion.jwt", "interop-ec"},
                              {"rsa-jwks.json", "rsa-assertion.jwt", "interop-rsa"}};
    const int64_t now = 1767225700;
    for (size_t i = 0; i < 2; i++) {
        char *j = slurp(pairs[i][0]), *t = slurp(pairs[i][1]), w[64], iss[256];
        struct hdx_jwks *k;
        assert_int_equal(parse_jwks(j, &k, w), HDX_OK);
        assert_int_equal(hdx_assertion_peek(t, strlen(t), iss, sizeof(iss), why, sizeof(why)),
                         HDX_OK);
        assert_string_equal(iss, "interop-client");
        int rc = hdx_assertion_check(t, strlen(t), iss, k, URL, now, LIFE, SKEW, cache, &got, why,
                                     sizeof(why));
        if (rc != HDX_OK) fprintf(stderr, "interop %zu: %s\n", i, why);
        assert_int_equal(rc, HDX_OK);
        assert_string_equal(got.kid, pairs[i][2]);
        assert_int_equal(got.exp, 1767225900);
        /* and the same token is refused an hour later, and at another token URL */
        assert_int_equal(hdx_assertion_check(t, strlen(t), iss, k, URL, now + 3600, LIFE, SKEW,
                                             cache, &got, why, sizeof(why)),
                         HDX_E_PERM);
        assert_string_equal(why, "expired");
        assert_int_equal(hdx_assertion_check(t, strlen(t), iss, k, "https://hdx.example/token", now,
                                             LIFE, SKEW, cache, &got, why, sizeof(why)),
                         HDX_E_PERM);
        assert_string_equal(why, "aud_mismatch");
        hdx_jwks_free(k);
        free(j), free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_es384, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_rs384, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_kid_tries_each_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aud_array, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hs384_keyed_with_public_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_algs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_key_type_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typ, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kid_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iss_sub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aud_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exp_missing_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_missing_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_other_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_cache_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jti_cache_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncations_and_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_private_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_rsa_1024_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_bad_key_material, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interop_pyjwt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
