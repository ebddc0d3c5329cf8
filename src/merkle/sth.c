#include "merkle/sth.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1; /* an encrypted key is refused, never prompted for */
}

int hdx_logkey_load_private(const char *path, EVP_PKEY **out, char *why, size_t why_cap)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = hdx_secret_read(path, 16384, &pem, &len, why, why_cap);
    if (rc != HDX_OK) return rc;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    *out = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    hdx_secret_free(pem, len);
    if (*out && EVP_PKEY_get_id(*out) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    if (!*out && why) snprintf(why, why_cap, "%s holds no unencrypted Ed25519 private key", path);
    return *out ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_logkey_load_public(const char *path, EVP_PKEY **out)
{
    FILE *f = fopen(path, "r");
    *out = NULL;
    if (!f) return HDX_E_NOTFOUND;
    *out = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (*out && EVP_PKEY_get_id(*out) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    return *out ? HDX_OK : HDX_E_CRYPTO;
}

void hdx_sth_signed_bytes(const struct hdx_sth *sth, uint8_t out[HDX_STH_SIGNED_LEN])
{
    memcpy(out, "HDX-STH-v1", 10);
    put_be64(out + 10, sth->tree_size);
    put_be64(out + 18, sth->timestamp_ms);
    memcpy(out + 26, sth->root, 32);
}

int hdx_sth_sign(struct hdx_sth *sth, EVP_PKEY *key)
{
    uint8_t msg[HDX_STH_SIGNED_LEN];
    size_t siglen = HDX_STH_SIG_LEN;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1;
    hdx_sth_signed_bytes(sth, msg);
    ok = ok && EVP_DigestSign(ctx, sth->signature, &siglen, msg, sizeof(msg)) == 1 &&
         siglen == HDX_STH_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_sth_verify(const struct hdx_sth *sth, EVP_PKEY *pub)
{
    uint8_t msg[HDX_STH_SIGNED_LEN];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    hdx_sth_signed_bytes(sth, msg);
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(ctx, sth->signature, HDX_STH_SIG_LEN, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? HDX_OK : HDX_E_INTEGRITY;
}

int hdx_sth_file_write(const char *path, const struct hdx_sth *sth)
{
    uint8_t buf[HDX_STH_FILE_LEN];
    hdx_sth_signed_bytes(sth, buf);
    memcpy(buf + HDX_STH_SIGNED_LEN, sth->signature, HDX_STH_SIG_LEN);
    return hdx_write_file_atomic(path, buf, sizeof(buf), 0644);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int hdx_sth_file_read(const char *path, struct hdx_sth *sth)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = hdx_read_file(path, 4096, &buf, &len);
    if (rc != HDX_OK) return rc;
    if (len != HDX_STH_FILE_LEN || memcmp(buf, "HDX-STH-v1", 10) != 0) {
        free(buf);
        return HDX_E_INTEGRITY;
    }
    sth->tree_size = get_be64(buf + 10);
    sth->timestamp_ms = get_be64(buf + 18);
    memcpy(sth->root, buf + 26, 32);
    memcpy(sth->signature, buf + HDX_STH_SIGNED_LEN, HDX_STH_SIG_LEN);
    free(buf);
    return HDX_OK;
}

int hdx_sth_json(const struct hdx_sth *sth, char *out, size_t cap)
{
    char root[65], sig[2 * HDX_STH_SIG_LEN + 1];
    hdx_hex(sth->root, 32, root);
    hdx_hex(sth->signature, HDX_STH_SIG_LEN, sig);
    int n = snprintf(out, cap,
                     "{\"tree_size\":%llu,\"timestamp_ms\":%llu,\"root_hash\":\"%s\","
                     "\"signature\":\"%s\"}",
                     (unsigned long long)sth->tree_size, (unsigned long long)sth->timestamp_ms,
                     root, sig);
    return n < 0 || (size_t)n >= cap ? HDX_E_TOOBIG : n;
}
