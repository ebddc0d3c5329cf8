#include "crypto/keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

struct key_slot {
    uint32_t id;
    enum hdx_key_kind kind;
    uint8_t *key; /* sodium_malloc'd HDX_KEY_LEN bytes */
};

struct hdx_keyring {
    uint8_t *kek; /* sodium_malloc'd */
    struct key_slot slots[HDX_KEYRING_MAX];
    size_t nslots;
    uint32_t current;
    int blind_slot; /* index into slots, -1 when absent */
};

/* OpenSSL 3 looks an algorithm up by name, under a lock, every time EVP_sha256() or
 * EVP_aes_256_gcm() is passed to an init call: half the cost of hashing a short input.
 * Fetched once here and kept for the life of the process. */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *alg_sha256;
static EVP_CIPHER *alg_gcm;

/* hdx_sha256 keeps one digest context per thread (freed when the thread ends): a new and
 * freed context per hash was a tenth of hdx verify --fast. */
static pthread_key_t sha_ctx_key;
static int sha_ctx_key_ok;

static void sha_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void algs_fetch(void)
{
    alg_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    sha_ctx_key_ok = pthread_key_create(&sha_ctx_key, sha_ctx_free) == 0;
}

static const EVP_MD *sha256_md(void)
{
    pthread_once(&algs_once, algs_fetch);
    return alg_sha256;
}

static const EVP_CIPHER *gcm_cipher(void)
{
    pthread_once(&algs_once, algs_fetch);
    return alg_gcm;
}

static int sodium_ready(void)
{
    return sodium_init() >= 0 ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_kek_create(const char *path)
{
    uint8_t key[HDX_KEY_LEN];
    char hex[2 * HDX_KEY_LEN + 2];
    if (RAND_priv_bytes(key, sizeof(key)) != 1) return HDX_E_CRYPTO;
    hdx_hex(key, sizeof(key), hex);
    hex[2 * HDX_KEY_LEN] = '\n';
    int rc = hdx_write_new_file(path, hex, 2 * HDX_KEY_LEN + 1, 0600);
    sodium_memzero(key, sizeof(key));
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

static int read_kek(const char *path, uint8_t *kek, char *why, size_t why_cap)
{
    uint8_t *buf = NULL;
    size_t len = 0, n;
    int rc = hdx_secret_read(path, 256, &buf, &len, why, why_cap);
    if (rc != HDX_OK) return rc;
    for (n = len; n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'); n--)
        buf[n - 1] = 0;
    rc = hdx_unhex((const char *)buf, kek, HDX_KEY_LEN) == 0 ? HDX_OK : HDX_E_CONFIG;
    hdx_secret_free(buf, len);
    if (rc != HDX_OK && why)
        snprintf(why, why_cap, "%s does not hold %d hex digits", path, 2 * HDX_KEY_LEN);
    return rc;
}

int hdx_keyring_open(const char *kek_path, struct hdx_keyring **out, char *why, size_t why_cap)
{
    *out = NULL;
    if (sodium_ready() != HDX_OK) {
        if (why) snprintf(why, why_cap, "libsodium failed to initialise");
        return HDX_E_CRYPTO;
    }
    struct hdx_keyring *kr = calloc(1, sizeof(*kr));
    if (kr) kr->kek = sodium_malloc(HDX_KEY_LEN);
    if (!kr || !kr->kek) {
        free(kr);
        if (why) snprintf(why, why_cap, "out of memory");
        return HDX_E_NOMEM;
    }
    kr->blind_slot = -1;
    int rc = read_kek(kek_path, kr->kek, why, why_cap);
    if (rc != HDX_OK) {
        hdx_keyring_free(kr);
        return rc;
    }
    *out = kr;
    return HDX_OK;
}

void hdx_keyring_free(struct hdx_keyring *kr)
{
    if (!kr) return;
    for (size_t i = 0; i < kr->nslots; i++)
        sodium_free(kr->slots[i].key); /* sodium_free wipes before unmapping */
    sodium_free(kr->kek);
    free(kr);
}

static int gcm(int enc, const uint8_t *key, const uint8_t *aad, size_t aad_len,
               const uint8_t *nonce, const uint8_t *in, size_t in_len, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = 0;
    const EVP_CIPHER *cipher = gcm_cipher();
    if (!ctx || !cipher || in_len > INT32_MAX || aad_len > INT32_MAX) goto out;
    if (EVP_CipherInit_ex2(ctx, cipher, key, nonce, enc, NULL) != 1) goto out;
    if (aad_len && EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) goto out;
    if (in_len && EVP_CipherUpdate(ctx, out, &len, in, (int)in_len) != 1) goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, HDX_TAG_LEN, tag) != 1) goto out;
    if (EVP_CipherFinal_ex(ctx, out + len, &len) != 1) goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, HDX_TAG_LEN, tag) != 1) goto out;
    ok = 1;
out:
    EVP_CIPHER_CTX_free(ctx);
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

static void wrap_aad(char *aad, size_t cap, enum hdx_key_kind kind, uint32_t id)
{
    snprintf(aad, cap, "hdx-key-v1|%d|%u", (int)kind, id);
}

static const struct key_slot *find_slot(const struct hdx_keyring *kr, enum hdx_key_kind kind,
                                        uint32_t id)
{
    for (size_t i = 0; i < kr->nslots; i++)
        if (kr->slots[i].id == id && kr->slots[i].kind == kind) return &kr->slots[i];
    return NULL;
}

static int keep_key(struct hdx_keyring *kr, enum hdx_key_kind kind, uint32_t id, uint8_t *key)
{
    if (find_slot(kr, kind, id)) {
        sodium_free(key);
        return HDX_OK;
    }
    if (kr->nslots == HDX_KEYRING_MAX) {
        sodium_free(key);
        return HDX_E_TOOBIG;
    }
    sodium_mprotect_readonly(key);
    kr->slots[kr->nslots] = (struct key_slot){id, kind, key};
    if (kind == HDX_KEY_BLIND)
        kr->blind_slot = (int)kr->nslots;
    else if (id > kr->current)
        kr->current = id;
    kr->nslots++;
    return HDX_OK;
}

int hdx_keyring_new_key(struct hdx_keyring *kr, enum hdx_key_kind kind, uint32_t id,
                        uint8_t wrapped[HDX_WRAPPED_LEN])
{
    char aad[48];
    uint8_t *key = sodium_malloc(HDX_KEY_LEN);
    if (!key) return HDX_E_NOMEM;
    if (RAND_priv_bytes(key, HDX_KEY_LEN) != 1 || RAND_bytes(wrapped, HDX_NONCE_LEN) != 1) {
        sodium_free(key);
        return HDX_E_CRYPTO;
    }
    wrap_aad(aad, sizeof(aad), kind, id);
    int rc = gcm(1, kr->kek, (const uint8_t *)aad, strlen(aad), wrapped, key, HDX_KEY_LEN,
                 wrapped + HDX_NONCE_LEN, wrapped + HDX_NONCE_LEN + HDX_KEY_LEN);
    if (rc != HDX_OK) {
        sodium_free(key);
        return rc;
    }
    return keep_key(kr, kind, id, key);
}

int hdx_keyring_add(struct hdx_keyring *kr, enum hdx_key_kind kind, uint32_t id,
                    const uint8_t *wrapped, size_t wrapped_len)
{
    char aad[48];
    uint8_t tag[HDX_TAG_LEN];
    if (wrapped_len != HDX_WRAPPED_LEN) return HDX_E_INTEGRITY;
    uint8_t *key = sodium_malloc(HDX_KEY_LEN);
    if (!key) return HDX_E_NOMEM;
    memcpy(tag, wrapped + HDX_NONCE_LEN + HDX_KEY_LEN, HDX_TAG_LEN);
    wrap_aad(aad, sizeof(aad), kind, id);
    int rc = gcm(0, kr->kek, (const uint8_t *)aad, strlen(aad), wrapped, wrapped + HDX_NONCE_LEN,
                 HDX_KEY_LEN, key, tag);
    if (rc != HDX_OK) {
        sodium_free(key);
        return HDX_E_CRYPTO;
    }
    return keep_key(kr, kind, id, key);
}

uint32_t hdx_keyring_current(const struct hdx_keyring *kr)
{
    return kr->current;
}

int hdx_keyring_has_blind(const struct hdx_keyring *kr)
{
    return kr->blind_slot >= 0;
}

int hdx_seal(const struct hdx_keyring *kr, uint32_t key_id, const uint8_t *aad, size_t aad_len,
             const uint8_t *pt, size_t pt_len, uint8_t nonce[HDX_NONCE_LEN], uint8_t *ct)
{
    const struct key_slot *s = find_slot(kr, HDX_KEY_DATA, key_id);
    if (!s) return HDX_E_NOTFOUND;
    /* Random 96-bit nonces: a DEK is rotated long before 2^32 records (NIST SP 800-38D). */
    if (RAND_bytes(nonce, HDX_NONCE_LEN) != 1) return HDX_E_CRYPTO;
    return gcm(1, s->key, aad, aad_len, nonce, pt, pt_len, ct, ct + pt_len);
}

int hdx_open(const struct hdx_keyring *kr, uint32_t key_id, const uint8_t *aad, size_t aad_len,
             const uint8_t nonce[HDX_NONCE_LEN], const uint8_t *ct, size_t ct_len, uint8_t *pt)
{
    uint8_t tag[HDX_TAG_LEN];
    const struct key_slot *s = find_slot(kr, HDX_KEY_DATA, key_id);
    if (!s) return HDX_E_NOTFOUND;
    if (ct_len < HDX_TAG_LEN) return HDX_E_CRYPTO;
    memcpy(tag, ct + ct_len - HDX_TAG_LEN, HDX_TAG_LEN);
    int rc = gcm(0, s->key, aad, aad_len, nonce, ct, ct_len - HDX_TAG_LEN, pt, tag);
    if (rc != HDX_OK)
        sodium_memzero(pt, ct_len - HDX_TAG_LEN); /* never hand back unauthenticated bytes */
    return rc;
}

int hdx_blind(const struct hdx_keyring *kr, const char *domain, const void *value, size_t len,
              uint8_t out[HDX_BLIND_LEN])
{
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    if (kr->blind_slot < 0) return HDX_E_NOTFOUND;
    crypto_auth_hmacsha256_init(&st, kr->slots[kr->blind_slot].key, HDX_KEY_LEN);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)domain, strlen(domain) + 1);
    crypto_auth_hmacsha256_update(&st, value, len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, mac, HDX_BLIND_LEN);
    sodium_memzero(&st, sizeof(st));
    return HDX_OK;
}

struct hdx_keyctx {
    const struct hdx_keyring *kr;
    EVP_CIPHER_CTX *gcm;
    uint32_t gcm_key_id;  /* the data key gcm is keyed with; 0: none */
    EVP_CIPHER_CTX *seal; /* the same for sealing (a context encrypts or decrypts) */
    uint32_t seal_key_id;
    EVP_MD_CTX *ipad, *opad, *work; /* ipad/opad NULL without a blind key */
    EVP_MD_CTX *hash;               /* plain SHA-256 */
};

#define HMAC_BLOCK 64

/* RFC 2104 with the key shorter than a block: SHA-256 states after (key ^ ipad) and
 * (key ^ opad), so each token hashes only its own input and the inner digest. */
static int hmac_pads(struct hdx_keyctx *kc, const uint8_t *key)
{
    uint8_t pad[HMAC_BLOCK];
    const EVP_MD *md = sha256_md();
    int ok = md && (kc->ipad = EVP_MD_CTX_new()) && (kc->opad = EVP_MD_CTX_new());
    for (int round = 0; ok && round < 2; round++) {
        uint8_t x = round ? 0x5c : 0x36;
        memset(pad, x, sizeof(pad));
        for (size_t i = 0; i < HDX_KEY_LEN; i++)
            pad[i] = key[i] ^ x;
        EVP_MD_CTX *c = round ? kc->opad : kc->ipad;
        ok = EVP_DigestInit_ex2(c, md, NULL) == 1 && EVP_DigestUpdate(c, pad, sizeof(pad)) == 1;
    }
    OPENSSL_cleanse(pad, sizeof(pad));
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_keyctx_new(const struct hdx_keyring *kr, struct hdx_keyctx **out)
{
    *out = NULL;
    struct hdx_keyctx *kc = calloc(1, sizeof(*kc));
    if (!kc) return HDX_E_NOMEM;
    kc->kr = kr;
    int rc = (kc->gcm = EVP_CIPHER_CTX_new()) && (kc->seal = EVP_CIPHER_CTX_new()) &&
                     (kc->work = EVP_MD_CTX_new()) && (kc->hash = EVP_MD_CTX_new()) &&
                     gcm_cipher() && sha256_md()
                 ? HDX_OK
                 : HDX_E_CRYPTO;
    if (rc == HDX_OK && kr->blind_slot >= 0) rc = hmac_pads(kc, kr->slots[kr->blind_slot].key);
    if (rc != HDX_OK) {
        hdx_keyctx_free(kc);
        return rc;
    }
    *out = kc;
    return HDX_OK;
}

void hdx_keyctx_free(struct hdx_keyctx *kc)
{
    if (!kc) return;
    /* OpenSSL cleanses a context's algorithm state (key schedule, hash state) on free. */
    EVP_CIPHER_CTX_free(kc->gcm);
    EVP_CIPHER_CTX_free(kc->seal);
    EVP_MD_CTX_free(kc->hash);
    EVP_MD_CTX_free(kc->ipad);
    EVP_MD_CTX_free(kc->opad);
    EVP_MD_CTX_free(kc->work);
    free(kc);
}

int hdx_keyctx_open(struct hdx_keyctx *kc, uint32_t key_id, const uint8_t *aad, size_t aad_len,
                    const uint8_t nonce[HDX_NONCE_LEN], const uint8_t *ct, size_t ct_len,
                    uint8_t *pt)
{
    uint8_t tag[HDX_TAG_LEN];
    int len = 0, ok = 0;
    if (key_id != kc->gcm_key_id || !key_id) {
        const struct key_slot *s = find_slot(kc->kr, HDX_KEY_DATA, key_id);
        if (!s) return HDX_E_NOTFOUND;
        if (EVP_CipherInit_ex2(kc->gcm, gcm_cipher(), s->key, NULL, 0, NULL) != 1)
            return HDX_E_CRYPTO;
        kc->gcm_key_id = key_id;
    }
    if (ct_len < HDX_TAG_LEN) return HDX_E_CRYPTO;
    size_t n = ct_len - HDX_TAG_LEN;
    if (n > INT32_MAX || aad_len > INT32_MAX) return HDX_E_CRYPTO;
    memcpy(tag, ct + n, HDX_TAG_LEN);
    /* A new IV restarts GCM on the kept key schedule. */
    if (EVP_CipherInit_ex2(kc->gcm, NULL, NULL, nonce, 0, NULL) != 1) goto out;
    if (aad_len && EVP_CipherUpdate(kc->gcm, NULL, &len, aad, (int)aad_len) != 1) goto out;
    if (n && EVP_CipherUpdate(kc->gcm, pt, &len, ct, (int)n) != 1) goto out;
    if (EVP_CIPHER_CTX_ctrl(kc->gcm, EVP_CTRL_GCM_SET_TAG, HDX_TAG_LEN, tag) != 1) goto out;
    if (EVP_CipherFinal_ex(kc->gcm, pt + len, &len) != 1) goto out;
    ok = 1;
out:
    if (!ok) {
        sodium_memzero(pt, n); /* never hand back unauthenticated bytes */
        kc->gcm_key_id = 0;    /* rekey next time rather than trust a context that failed */
        return HDX_E_CRYPTO;
    }
    return HDX_OK;
}

int hdx_keyctx_seal(struct hdx_keyctx *kc, uint32_t key_id, const uint8_t *aad, size_t aad_len,
                    const uint8_t *pt, size_t pt_len, uint8_t nonce[HDX_NONCE_LEN], uint8_t *ct)
{
    int len = 0;
    if (key_id != kc->seal_key_id || !key_id) {
        const struct key_slot *s = find_slot(kc->kr, HDX_KEY_DATA, key_id);
        if (!s) return HDX_E_NOTFOUND;
        if (EVP_CipherInit_ex2(kc->seal, gcm_cipher(), s->key, NULL, 1, NULL) != 1)
            return HDX_E_CRYPTO;
        kc->seal_key_id = key_id;
    }
    if (pt_len > INT32_MAX || aad_len > INT32_MAX) return HDX_E_CRYPTO;
    /* Random 96-bit nonces, as hdx_seal. */
    if (RAND_bytes(nonce, HDX_NONCE_LEN) != 1) return HDX_E_CRYPTO;
    int ok = EVP_CipherInit_ex2(kc->seal, NULL, NULL, nonce, 1, NULL) == 1 &&
             (!aad_len || EVP_CipherUpdate(kc->seal, NULL, &len, aad, (int)aad_len) == 1) &&
             (!pt_len || EVP_CipherUpdate(kc->seal, ct, &len, pt, (int)pt_len) == 1) &&
             EVP_CipherFinal_ex(kc->seal, ct + pt_len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(kc->seal, EVP_CTRL_GCM_GET_TAG, HDX_TAG_LEN, ct + pt_len) == 1;
    if (!ok) kc->seal_key_id = 0;
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

void hdx_keyctx_sha256(struct hdx_keyctx *kc, uint8_t out[32], size_t n, const void *const *parts,
                       const size_t *lens)
{
    unsigned int olen = 32;
    /* As hdx_sha256: a broken OpenSSL must not let integrity code continue. */
    if (EVP_DigestInit_ex2(kc->hash, sha256_md(), NULL) != 1) abort();
    for (size_t i = 0; i < n; i++)
        if (EVP_DigestUpdate(kc->hash, parts[i], lens[i]) != 1) abort();
    if (EVP_DigestFinal_ex(kc->hash, out, &olen) != 1) abort();
}

int hdx_keyctx_blind(struct hdx_keyctx *kc, const char *domain, const void *value, size_t len,
                     uint8_t out[HDX_BLIND_LEN])
{
    uint8_t inner[32], mac[32];
    unsigned int n = 0;
    if (!kc->ipad) return HDX_E_NOTFOUND;
    int ok = EVP_MD_CTX_copy_ex(kc->work, kc->ipad) == 1 &&
             EVP_DigestUpdate(kc->work, domain, strlen(domain) + 1) == 1 &&
             EVP_DigestUpdate(kc->work, value, len) == 1 &&
             EVP_DigestFinal_ex(kc->work, inner, &n) == 1 &&
             EVP_MD_CTX_copy_ex(kc->work, kc->opad) == 1 &&
             EVP_DigestUpdate(kc->work, inner, sizeof(inner)) == 1 &&
             EVP_DigestFinal_ex(kc->work, mac, &n) == 1;
    if (ok) memcpy(out, mac, HDX_BLIND_LEN);
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

struct hdx_blind_stream {
    struct hdx_keyctx *kc;
    EVP_MD_CTX *md;
    int live; /* begun and not yet final */
};

int hdx_blind_stream_new(struct hdx_keyctx *kc, struct hdx_blind_stream **out)
{
    *out = NULL;
    if (!kc->ipad) return HDX_E_NOTFOUND;
    struct hdx_blind_stream *s = calloc(1, sizeof(*s));
    if (!s) return HDX_E_NOMEM;
    if (!(s->md = EVP_MD_CTX_new())) {
        free(s);
        return HDX_E_NOMEM;
    }
    s->kc = kc;
    *out = s;
    return HDX_OK;
}

int hdx_blind_stream_begin(struct hdx_blind_stream *s, const char *domain)
{
    s->live = EVP_MD_CTX_copy_ex(s->md, s->kc->ipad) == 1 &&
              EVP_DigestUpdate(s->md, domain, strlen(domain) + 1) == 1;
    return s->live ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_blind_stream_update(struct hdx_blind_stream *s, const void *p, size_t n)
{
    if (!s->live) return HDX_E_CRYPTO;
    if (n && EVP_DigestUpdate(s->md, p, n) != 1) s->live = 0;
    return s->live ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_blind_stream_final(struct hdx_blind_stream *s, uint8_t out[HDX_BLIND_LEN])
{
    uint8_t inner[32], mac[32];
    unsigned int n = 0;
    int ok = s->live && EVP_DigestFinal_ex(s->md, inner, &n) == 1 &&
             EVP_MD_CTX_copy_ex(s->md, s->kc->opad) == 1 &&
             EVP_DigestUpdate(s->md, inner, sizeof(inner)) == 1 &&
             EVP_DigestFinal_ex(s->md, mac, &n) == 1;
    s->live = 0;
    if (ok) memcpy(out, mac, HDX_BLIND_LEN);
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

void hdx_blind_stream_free(struct hdx_blind_stream *s)
{
    if (!s) return;
    EVP_MD_CTX_free(s->md); /* EVP_MD_CTX_free cleanses the digest state */
    free(s);
}

void hdx_sha256(uint8_t out[32], size_t n, const void *const *parts, const size_t *lens)
{
    unsigned int olen = 32;
    /* Failure here means OpenSSL itself is broken; integrity code must not continue. */
    const EVP_MD *md = sha256_md();
    EVP_MD_CTX *ctx = sha_ctx_key_ok ? pthread_getspecific(sha_ctx_key) : NULL;
    int kept = ctx != NULL;
    if (!ctx && (ctx = EVP_MD_CTX_new()) != NULL && sha_ctx_key_ok &&
        pthread_setspecific(sha_ctx_key, ctx) == 0)
        kept = 1;
    if (!ctx || !md || EVP_DigestInit_ex2(ctx, md, NULL) != 1) abort();
    for (size_t i = 0; i < n; i++)
        if (EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1) abort();
    if (EVP_DigestFinal_ex(ctx, out, &olen) != 1) abort();
    if (!kept) EVP_MD_CTX_free(ctx);
}
