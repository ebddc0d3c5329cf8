#include "proto/checkpoint.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

void hdx_stream_init(struct hdx_stream *s)
{
    memset(s, 0, sizeof(*s));
}

static void restart(struct hdx_stream *s)
{
    memset(s->hash, 0, sizeof(s->hash));
    s->count = 0;
}

int hdx_stream_add(struct hdx_stream *s, const uint8_t *payload, size_t len)
{
    uint8_t buf[64];
    memcpy(buf, s->hash, 32);
    if (hdx_sha256_once(payload, len, buf + 32) != 0 ||
        hdx_sha256_once(buf, sizeof(buf), s->hash) != 0)
        return HDX_E_CRYPTO;
    s->count++;
    return HDX_OK;
}

int hdx_is_checkpoint(const struct hl7_msg *m)
{
    return strncmp(m->msg_type, HDX_CKPT_TYPE, strlen(HDX_CKPT_TYPE)) == 0 &&
           (m->msg_type[strlen(HDX_CKPT_TYPE)] == 0 || m->msg_type[strlen(HDX_CKPT_TYPE)] == '^');
}

static int field(const struct hl7_msg *m, int n, char *out, size_t cap)
{
    struct hl7_view v;
    return hl7_get(m, "ZCK", 1, n, 1, 0, 0, &v) == 0 && hl7_unescape(m, v, out, cap) >= 0 ? 0 : -1;
}

int hdx_checkpoint_parse(const struct hl7_msg *m, struct hdx_checkpoint *out)
{
    char ver[8], n[24], count[24], hash[72], sig[136];
    memset(out, 0, sizeof(*out));
    if (field(m, 1, ver, sizeof(ver)) || strcmp(ver, "1") || field(m, 2, n, sizeof(n)) ||
        hdx_parse_u64(n, &out->n) || out->n == 0 || field(m, 3, count, sizeof(count)) ||
        hdx_parse_u64(count, &out->count) || field(m, 4, hash, sizeof(hash)) ||
        strlen(hash) != 64 || hdx_unhex(hash, out->hash, 32) || field(m, 5, sig, sizeof(sig)) ||
        strlen(sig) != 128 || hdx_unhex(sig, out->signature, 64))
        return HDX_E_INVAL;
    return HDX_OK;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

void hdx_checkpoint_signed_bytes(const struct hdx_checkpoint *c, const uint8_t binding[32],
                                 uint8_t out[HDX_CKPT_SIGNED_LEN])
{
    memcpy(out, "HDX-CKPT-v1", 11);
    memcpy(out + 11, binding, 32);
    put_u64(out + 43, c->n);
    put_u64(out + 51, c->count);
    memcpy(out + 59, c->hash, 32);
}

int hdx_checkpoint_make(struct hdx_stream *s, uint64_t n, const uint8_t binding[32], EVP_PKEY *key,
                        struct hdx_checkpoint *c)
{
    uint8_t msg[HDX_CKPT_SIGNED_LEN];
    size_t siglen = sizeof(c->signature);
    c->n = n;
    c->count = s->count;
    memcpy(c->hash, s->hash, 32);
    hdx_checkpoint_signed_bytes(c, binding, msg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(ctx, c->signature, &siglen, msg, sizeof(msg)) == 1 && siglen == 64;
    EVP_MD_CTX_free(ctx);
    restart(s);
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

int hdx_checkpoint_segment(const struct hdx_checkpoint *c, char *out, size_t cap)
{
    char hash[65], sig[129];
    hdx_hex(c->hash, 32, hash);
    hdx_hex(c->signature, 64, sig);
    int n = snprintf(out, cap, "ZCK|1|%" PRIu64 "|%" PRIu64 "|%s|%s\r", c->n, c->count, hash, sig);
    return n > 0 && (size_t)n < cap ? n : HDX_E_TOOBIG;
}

static int signature_valid(const struct hdx_checkpoint *c, const uint8_t binding[32],
                           const uint8_t pub[32])
{
    uint8_t msg[HDX_CKPT_SIGNED_LEN];
    hdx_checkpoint_signed_bytes(c, binding, msg);
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *ctx = key ? EVP_MD_CTX_new() : NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestVerify(ctx, c->signature, sizeof(c->signature), msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}

enum hdx_ckpt_verdict hdx_checkpoint_check(struct hdx_stream *s, const struct hdx_checkpoint *c,
                                           const uint8_t binding[32], const uint8_t pub[32])
{
    enum hdx_ckpt_verdict v;
    if (!signature_valid(c, binding, pub))
        v = HDX_CKPT_BAD_SIGNATURE;
    else if (c->n <= s->last_n)
        v = HDX_CKPT_REPLAYED;
    else {
        s->last_n = c->n;
        v = c->count == s->count && CRYPTO_memcmp(c->hash, s->hash, 32) == 0 ? HDX_CKPT_OK
                                                                             : HDX_CKPT_MISMATCH;
    }
    restart(s);
    return v;
}

const char *hdx_ckpt_verdict_text(enum hdx_ckpt_verdict v)
{
    switch (v) {
    case HDX_CKPT_OK:
        return "verified";
    case HDX_CKPT_MALFORMED:
        return "malformed checkpoint";
    case HDX_CKPT_BAD_SIGNATURE:
        return "checkpoint signature invalid (another key, or made for another connection)";
    case HDX_CKPT_REPLAYED:
        return "replayed checkpoint (its number was already used on this connection)";
    case HDX_CKPT_MISMATCH:
        return "stream mismatch: the messages received differ from the ones the device signed";
    }
    return "?";
}

int hdx_checkpoint_marks(const struct hl7_msg *msg, int *verified, uint64_t **seqs, size_t *n)
{
    struct hl7_view v;
    char word[32];
    size_t cap = 0;
    *seqs = NULL;
    *n = 0;
    *verified = 0;
    if (hl7_get(msg, "ZCV", 1, 2, 1, 0, 0, &v) != 0 || hl7_unescape(msg, v, word, sizeof(word)) < 0)
        return HDX_E_INVAL;
    *verified = !strcmp(word, "verified");
    int rc = HDX_OK;
    for (int occ = 1; rc == HDX_OK && hl7_get(msg, "ZCS", occ, 1, 1, 0, 0, &v) == 0; occ++) {
        char *runs = malloc((size_t)v.len + 1);
        if (!runs || hl7_unescape(msg, v, runs, (size_t)v.len + 1) < 0) {
            free(runs);
            rc = runs ? HDX_E_INVAL : HDX_E_NOMEM;
            break;
        }
        const char *p = runs;
        while (rc == HDX_OK && *p) {
            uint64_t a, b;
            const char *end;
            if (hdx_parse_dec(p, &a, &end) != 0) rc = HDX_E_INVAL;
            b = a;
            if (rc == HDX_OK && *end == '-' && (hdx_parse_dec(end + 1, &b, &end) != 0 || b < a))
                rc = HDX_E_INVAL;
            if (rc == HDX_OK && *end == ',')
                end++;
            else if (rc == HDX_OK && *end)
                rc = HDX_E_INVAL;
            /* A run is bounded by the marks a checkpoint may carry (CKPT_MARK_MAX in hdxd). */
            if (rc == HDX_OK && b - a >= HDX_CKPT_MARKS_MAX - *n) rc = HDX_E_INVAL;
            for (uint64_t x = a; rc == HDX_OK; x++) {
                if (*n == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    uint64_t *q = realloc(*seqs, ncap * sizeof(*q));
                    if (!q) {
                        rc = HDX_E_NOMEM;
                        break;
                    }
                    *seqs = q;
                    cap = ncap;
                }
                (*seqs)[(*n)++] = x;
                if (x == b) break;
            }
            p = end;
        }
        free(runs);
    }
    if (rc != HDX_OK) {
        free(*seqs);
        *seqs = NULL;
        *n = 0;
    }
    return rc;
}

int hdx_checkpoint_record_marks(const uint8_t *body, size_t len, int *verified, uint64_t **seqs,
                                size_t *n)
{
    struct hl7_limits lim;
    struct hl7_msg msg;
    struct hl7_error err;
    hl7_limits_default(&lim);
    *seqs = NULL;
    *n = 0;
    *verified = 0;
    if (hl7_parse(body, len, &lim, &msg, &err) != 0) return HDX_E_INVAL;
    int rc = hdx_checkpoint_marks(&msg, verified, seqs, n);
    hl7_msg_free(&msg);
    return rc;
}
