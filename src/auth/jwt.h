/* jwt: the client assertion of SMART App Launch 2.x Backend Services (client_credentials with
 * private_key_jwt, RFC 7523 2.2 and RFC 7521 4.2): a compact JWS signed by a registered
 * backend client with one of the keys of its registered JWK Set, checked by hdx before it
 * issues an access token. JWS parsing, JWK import and signature verification are cjose's
 * (Debian libcjose 0.6.2, over OpenSSL); hdx writes no cryptography here. cjose is lenient
 * where an authorisation server must not be (it imports alg "none", lets jansson keep the last
 * of duplicate members, takes any signature length for ECDSA, ignores base64url bytes after a
 * '=' and asserts on some such inputs), so every byte goes through hdx's strict checks first
 * and cjose only ever sees a token or key that already has the one accepted shape.
 *
 * Two steps, because the verifying keys depend on the claimed client:
 *   1. hdx_assertion_peek(token) gives the unverified iss: only a name to look the client's
 *      registration (its JWK Set) up by. It proves nothing.
 *   2. hdx_assertion_check(token, client_id, that client's keys, ...) verifies everything and,
 *      on success only, records the jti in the replay cache.
 * A token whose iss is not a registered client fails at the lookup; the caller answers the
 * same for that as for a refusal here (RFC 6749 5.2 invalid_client), so no code tells an
 * unauthenticated caller more than "refused". The why codes are for hdx's own log.
 *
 * Rules (a refusal sets why to exactly one of these stable codes; values are never quoted):
 *   bad_argument        caller error (NULL, client id or token URL too long, time out of range)
 *   too_long            token over HDX_JWT_MAX_LEN (8 KiB) bytes (HDX_E_TOOBIG)
 *   malformed           not exactly three canonical unpadded base64url parts (RFC 7515 7.1) of
 *                       which the first two are JSON objects without duplicate members, or a
 *                       header member of the wrong type, or a kid over HDX_JWK_KID_MAX
 *   alg_not_allowed     header alg absent or not exactly "ES384" or "RS384" (refuses "none",
 *                       HS256/384/512 whatever the key, RS256, PS*, ES256, any other)
 *   typ_not_allowed     header typ present and not exactly "JWT"
 *   crit_unsupported    header crit present (RFC 7515 4.1.11: hdx understands no extension)
 *   kid_unknown         header kid names no key of the client's set (with alg's key type)
 *   no_key_for_alg      no kid, and the set holds no key of alg's type (EC P-384 / RSA)
 *   bad_signature       no candidate key verifies the signature (HDX_E_CRYPTO); an ES384
 *                       signature must be exactly 96 bytes (r || s, RFC 7518 3.4)
 *   iss_sub_mismatch    iss or sub absent, not a string, or not byte-equal to the client id
 *   aud_mismatch        aud absent, or neither a string equal to token_url nor an array of
 *                       strings one of which equals it (exact bytes: no URL normalisation)
 *   exp_missing         no exp
 *   exp_invalid         exp not a JSON number (or a real that is not finite, beyond 2^53)
 *   expired             exp <= now - skew
 *   lifetime_too_long   exp > now + max_lifetime + skew
 *   nbf_invalid, iat_invalid   present and not a number
 *   not_yet_valid       nbf or iat later than now + skew
 *   jti_missing         no jti
 *   jti_invalid         jti not a string, empty, over HDX_JWT_JTI_MAX bytes, or holding a
 *                       byte outside printable ASCII 0x20-0x7e
 *   jti_replayed        (client id, jti) already seen and still live (HDX_E_EXISTS)
 *   jti_cache_full      the replay cache is full of live entries (HDX_E_TOOBIG): the
 *                       assertion is refused rather than a live entry evicted; the caller
 *                       answers "temporarily unavailable", not invalid_client
 *   nomem               out of memory (HDX_E_NOMEM)
 * Any other refusal is HDX_E_PERM (policy) or HDX_E_INVAL (malformed, bad_argument).
 * Order: shape, header (alg, typ, crit, kid), signature, then the claims, then the replay
 * cache; so no claim is judged, and nothing is cached, before the signature verifies.
 * Numbers: an integer is taken as is; a real is floored for exp and rounded up for nbf/iat
 * (each the stricter way).
 *
 * Replay cache: keeps (client id, jti) until exp + skew, the first instant at which that
 * assertion is expired by the rule above, and never shorter (a cache that forgets a jti while
 * its token is still acceptable reopens replay: Azure-Samples #413). Entries are keyed BLAKE2b
 * digests (libsodium, a random key per cache) of the length-prefixed client id and the jti,
 * so client "a" jti "bc" and client "ab" jti "c" differ, bucket order cannot be steered, and
 * an entry costs ~48 bytes whatever the lengths. Bounded: expired entries are dropped when met
 * and swept when the cache is full; a cache full of live entries refuses. The cache trusts the
 * now it is given: a wall clock stepped back by more than skew can accept a jti purged before
 * the step.
 *
 * OpenSSL: every path that let cjose fail clears this thread's OpenSSL error queue, so a
 * refused assertion leaves nothing for a later SSL_get_error on the same thread to find.
 * Secrets: none here. Ids (iss, sub, aud, kid, jti) are public, compared with memcmp.
 * Ownership: the key set and the cache belong to their creators (free functions accept NULL);
 * the token is only read.
 * Thread: any. A key set is read-only once parsed and may be shared between threads; the
 * replay cache has its own lock. */
#ifndef HDX_JWT_H
#define HDX_JWT_H

#include <stddef.h>
#include <stdint.h>

#define HDX_JWT_MAX_LEN 8192         /* bytes of a compact client assertion */
#define HDX_JWKS_MAX_LEN 65536       /* bytes of a registered JWK Set document */
#define HDX_JWKS_MAX_KEYS 8          /* keys in one client's set */
#define HDX_JWT_CLIENT_ID_MAX 255    /* bytes */
#define HDX_JWT_JTI_MAX 255          /* bytes */
#define HDX_JWK_KID_MAX 255          /* bytes */
#define HDX_JWT_TOKEN_URL_MAX 2048   /* bytes */
#define HDX_JWT_MAX_LIFETIME_S 300   /* SMART: exp no more than five minutes ahead */
#define HDX_JWT_SKEW_S 60            /* a reasonable clock skew */
#define HDX_JWT_RSA_MIN_BITS 2048    /* RS384 keys below this are refused */
#define HDX_JWT_RSA_MAX_BITS 8192    /* and above this (verification cost) */
#define HDX_JTI_CACHE_MAX (1u << 20) /* entries */

/* A client's registered verifying keys. */
struct hdx_jwks;

/* Parses a JWK Set document (RFC 7517 5, {"keys":[...]}, len bytes, no NUL needed) into *out
 * (free with hdx_jwks_free). Accepted keys: kty "EC" with crv "P-384" (used for ES384) and kty
 * "RSA" with a modulus of 2048 to 8192 bits and an odd public exponent >= 3 (used for RS384),
 * public parts only; a key's optional alg must then be "ES384" / "RS384", its optional use
 * "sig", its optional key_ops an array holding "verify"; kid optional, unique in the set.
 * Members other than these are ignored (x5c, x5t, ...: hdx never follows a certificate or URL).
 * HDX_OK, or HDX_E_INVAL / HDX_E_TOOBIG / HDX_E_NOMEM with *out NULL and why one of:
 *   too_long (over HDX_JWKS_MAX_LEN), malformed (not JSON, duplicate members, no keys array,
 *   a key that is not an object), no_keys, too_many_keys (over HDX_JWKS_MAX_KEYS),
 *   kty_not_allowed (oct, OKP, absent, ...), crv_not_allowed (P-256, P-521, ...),
 *   private_key (any of d, p, q, dp, dq, qi, oth, k present: a leaked private key is refused,
 *   not silently stripped), key_alg_not_allowed, use_not_sig, key_ops_not_verify,
 *   kid_invalid (not a string, empty, too long, not printable ASCII), kid_duplicate,
 *   rsa_too_small, rsa_too_large, key_invalid (x, y, n or e not canonical unpadded base64url
 *   of the right size, a point not on the curve, an even or tiny exponent), nomem. */
int hdx_jwks_parse(const char *json, size_t len, struct hdx_jwks **out, char *why, size_t cap);
void hdx_jwks_free(struct hdx_jwks *k);
size_t hdx_jwks_count(const struct hdx_jwks *k);

/* The replay cache, at most max_entries (1 .. HDX_JTI_CACHE_MAX) live entries.
 * HDX_OK, HDX_E_INVAL, HDX_E_NOMEM. */
struct hdx_jti_cache;
int hdx_jti_cache_new(size_t max_entries, struct hdx_jti_cache **out);
void hdx_jti_cache_free(struct hdx_jti_cache *c);
/* Live entries at now (for tests and metrics; sweeps expired ones). */
size_t hdx_jti_cache_live(struct hdx_jti_cache *c, int64_t now_s);

/* What a verified assertion said. */
struct hdx_assertion {
    char client_id[HDX_JWT_CLIENT_ID_MAX + 1];
    char jti[HDX_JWT_JTI_MAX + 1];
    char kid[HDX_JWK_KID_MAX + 1]; /* the verifying key's kid; "" when it has none */
    int64_t exp;
};

/* Step 1: the unverified iss of token into iss (cap bytes, NUL-terminated; cap >
 * HDX_JWT_CLIENT_ID_MAX is always enough). Only checks the shape (too_long, malformed) and the
 * iss: iss_sub_mismatch when absent or not a string, iss_invalid when empty, longer than
 * HDX_JWT_CLIENT_ID_MAX, or not printable ASCII. Never a reason to trust anything. */
int hdx_assertion_peek(const char *token, size_t len, char *iss, size_t cap, char *why,
                       size_t why_cap);

/* Step 2: checks token (len bytes, the client_assertion form field as received) for the
 * registered client client_id with its keys, at now_s (Unix seconds, 0 .. 2^40), accepting
 * exp at most max_lifetime_s (1 .. 86400; HDX_JWT_MAX_LIFETIME_S) ahead and a clock skew of
 * skew_s (0 .. 3600; HDX_JWT_SKEW_S); token_url is this server's token endpoint URL as the
 * client was told it (aud must carry it). On HDX_OK the jti is recorded in jti (which must
 * not be NULL) and *out filled; on a refusal *out is zeroed, why set (see the top), and the
 * cache holds no new entry (expired ones may have been dropped). */
int hdx_assertion_check(const char *token, size_t len, const char *client_id,
                        const struct hdx_jwks *keys, const char *token_url, int64_t now_s,
                        int64_t max_lifetime_s, int64_t skew_s, struct hdx_jti_cache *jti,
                        struct hdx_assertion *out, char *why, size_t cap);

#endif
