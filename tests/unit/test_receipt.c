/* Receipts: every receipt of batches of 1..70 entries (and larger) verifies, and its batch
 * root, recomputed here by the plain RFC 9162 recursion, is what the log key signed; every
 * alteration, another key, malformed ZRC fields and malformed JSON are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "merkle/receipt.h"

static EVP_PKEY *key, *other;
static struct hdx_receipt_signer *signer;

static int setup(void **state)
{
    key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return key && other && hdx_receipt_signer_new(key, &signer) == HDX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    hdx_receipt_signer_free(signer);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return 0;
}

static void sha(const uint8_t *in, size_t len, uint8_t out[32])
{
    assert_int_equal(EVP_Digest(in, len, out, NULL, EVP_sha256(), NULL), 1);
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The documented entry hash and MTH, written out independently of merkle.c. */
static void entry_hash(const struct hdx_receipt_entry *e, uint8_t out[32])
{
    uint8_t b[49] = {0};
    be64(b + 1, e->seq);
    be64(b + 9, (uint64_t)e->time_us);
    memcpy(b + 17, e->leaf_hash, 32);
    sha(b, sizeof(b), out);
}

static void mth(const struct hdx_receipt_entry *e, size_t n, uint8_t out[32])
{
    if (n == 1) {
        entry_hash(e, out);
        return;
    }
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t b[65];
    b[0] = 0x01;
    mth(e, k, b + 1);
    mth(e + k, n - k, b + 33);
    sha(b, sizeof(b), out);
}

static void make_entries(struct hdx_receipt_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        e[i].seq = 1000 + i;
        e[i].time_us = 1795612991738000 + (int64_t)i;
        for (int j = 0; j < 32; j++)
            e[i].leaf_hash[j] = (uint8_t)(i * 31 + (size_t)j);
    }
}

static void test_every_receipt_verifies(void **state)
{
    static struct hdx_receipt_entry e[2048];
    static const size_t sizes[] = {1,  2,  3,  4,  5,  6,  7,  8,   9,   15,  16,  17,
                                   31, 32, 33, 63, 64, 65, 70, 255, 256, 257, 2048};
    make_entries(e, 2048);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        struct hdx_receipt_batch *b;
        assert_int_equal(hdx_receipt_batch_new(e, n, signer, (unsigned)n, &b), HDX_OK);
        uint8_t root[32], msg[HDX_RECEIPT_SIGNED_LEN];
        mth(e, n, root);
        memcpy(msg, "HDX-RCPT-v1", 11);
        be64(msg + 11, n);
        memcpy(msg + 19, root, 32);
        for (size_t i = 0; i < n; i++) {
            struct hdx_receipt r;
            assert_int_equal(hdx_receipt_get(b, i, &r), HDX_OK);
            assert_int_equal(r.seq, e[i].seq);
            assert_int_equal(r.index, i);
            assert_int_equal(r.batch_size, n);
            assert_int_equal(hdx_receipt_verify(&r, key), HDX_OK);
            if (i == 0) { /* the signature is over the documented bytes */
                EVP_MD_CTX *ctx = EVP_MD_CTX_new();
                assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key), 1);
                assert_int_equal(EVP_DigestVerify(ctx, r.signature, 64, msg, sizeof(msg)), 1);
                EVP_MD_CTX_free(ctx);
            }
            hdx_receipt_batch_release(b); /* one reference per receipt */
        }
    }
}

static struct hdx_receipt sample(size_t n, size_t index)
{
    static struct hdx_receipt_entry e[64];
    struct hdx_receipt_batch *b;
    struct hdx_receipt r;
    make_entries(e, n);
    assert_int_equal(hdx_receipt_batch_new(e, n, signer, 1, &b), HDX_OK);
    assert_int_equal(hdx_receipt_get(b, index, &r), HDX_OK);
    hdx_receipt_batch_release(b);
    return r;
}

static void test_alterations_refused(void **state)
{
    struct hdx_receipt good = sample(13, 6), r;
    assert_int_equal(hdx_receipt_verify(&good, key), HDX_OK);
    assert_int_equal(hdx_receipt_verify(&good, other), HDX_E_INTEGRITY);
#define REFUSED(change)                                                                            \
    do {                                                                                           \
        r = good;                                                                                  \
        change;                                                                                    \
        assert_int_equal(hdx_receipt_verify(&r, key), HDX_E_INTEGRITY);                            \
    } while (0)
    REFUSED(r.seq++);
    REFUSED(r.time_us++);
    REFUSED(r.leaf_hash[31] ^= 1);
    REFUSED(r.index ^= 1);
    REFUSED(r.index = 13);
    REFUSED(r.batch_size = 14);
    REFUSED(r.batch_size = 0);
    REFUSED(r.path[0][0] ^= 0x80);
    REFUSED(r.path[r.path_len - 1][5] ^= 1);
    REFUSED(r.path_len--);
    REFUSED(r.path_len++);
    REFUSED(r.path_len = HDX_RECEIPT_PATH_MAX + 1);
    REFUSED(r.signature[0] ^= 1);
    REFUSED(r.signature[63] ^= 0x40);
#undef REFUSED
    /* A batch of one has no path at all. */
    struct hdx_receipt one = sample(1, 0);
    assert_int_equal(one.path_len, 0);
    assert_int_equal(hdx_receipt_verify(&one, key), HDX_OK);
}

/* Splits a ZRC segment at fs into its eight field values. */
static int split(char *seg, char fs, const char *f[8])
{
    assert_memory_equal(seg, "ZRC", 3);
    size_t len = strlen(seg);
    assert_int_equal(seg[len - 1], '\r');
    seg[len - 1] = 0;
    int n = 0;
    for (char *p = seg + 3; p && *p == fs && n < 8; n++) {
        *p = 0;
        f[n] = p + 1;
        p = strchr(p + 1, fs);
    }
    return n;
}

static void test_segment_round_trip(void **state)
{
    struct hdx_receipt r = sample(40, 39), back;
    const char seps[] = {'|', '#', '!'};
    for (size_t s = 0; s < sizeof(seps); s++) {
        char seg[HDX_RECEIPT_SEGMENT_MAX];
        const char *f[8];
        int n = hdx_receipt_segment(&r, seps[s], seg, sizeof(seg));
        assert_true(n > 0 && (size_t)n == strlen(seg));
        assert_int_equal(split(seg, seps[s], f), 8);
        assert_int_equal(hdx_receipt_from_fields(f, &back), HDX_OK);
        assert_memory_equal(&back, &r, sizeof(r));
        assert_int_equal(hdx_receipt_verify(&back, key), HDX_OK);
    }
    char small[100];
    assert_int_equal(hdx_receipt_segment(&r, '|', small, sizeof(small)), HDX_E_TOOBIG);
}

static void test_malformed_fields(void **state)
{
    struct hdx_receipt r = sample(9, 4), out;
    char seg[HDX_RECEIPT_SEGMENT_MAX], path_extra[HDX_RECEIPT_SEGMENT_MAX];
    const char *f[8], *g[8];
    assert_true(hdx_receipt_segment(&r, '|', seg, sizeof(seg)) > 0);
    assert_int_equal(split(seg, '|', f), 8);
    snprintf(path_extra, sizeof(path_extra), "%sab", f[6]);
    const char *bad[][2] = {
        {"0", "2"},   /* unknown version */
        {"1", "0"},   /* seq 0 */
        {"1", "012"}, /* leading zero */
        {"1", "-5"},  /* sign */
        {"1", "99999999999999999999999"},
        {"2", "9223372036854775808"}, /* time past int64 */
        {"3", "abc"},                 /* leaf hash too short */
        {"4", "9"},                   /* index = batch size */
        {"5", "2000000"},             /* batch over the maximum */
        {"6", path_extra},            /* path not a multiple of 64 */
        {"7", "00"},                  /* signature too short */
        {"3", "zz000000000000000000000000000000000000000000000000000000000000zz"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(g, f, sizeof(g));
        g[bad[i][0][0] - '0'] = bad[i][1];
        assert_int_equal(hdx_receipt_from_fields(g, &out), HDX_E_INVAL);
    }
    memcpy(g, f, sizeof(g));
    g[7] = NULL;
    assert_int_equal(hdx_receipt_from_fields(g, &out), HDX_E_INVAL);
    /* 21 path hashes: over the limit before any decoding. */
    static char longpath[64 * 21 + 1];
    memset(longpath, 'a', 64 * 21);
    memcpy(g, f, sizeof(g));
    g[6] = longpath;
    assert_int_equal(hdx_receipt_from_fields(g, &out), HDX_E_INVAL);
}

static void test_json(void **state)
{
    struct hdx_receipt r = sample(64, 17), back;
    char js[HDX_RECEIPT_JSON_MAX], cid[64];
    int n = hdx_receipt_json(&r, "MSG-17", js, sizeof(js));
    assert_true(n > 0);
    assert_int_equal(hdx_receipt_parse_json(js, (size_t)n, &back, cid, sizeof(cid)), HDX_OK);
    assert_memory_equal(&back, &r, sizeof(r));
    assert_string_equal(cid, "MSG-17");
    assert_int_equal(hdx_receipt_verify(&back, key), HDX_OK);
    const char *bad[] = {
        "",
        "[]",
        "{\"seq\":1}",
        ("{\"seq\":1,\"seq\":2,\"time_us\":1,\"leaf_hash\":\"\",\"index\":0,\"batch_size\":1,"
         "\"path\":[],\"signature\":\"\"}"),
        "{\"seq\":-1,\"time_us\":1,\"index\":0,\"batch_size\":1,\"path\":[]}",
        "{\"seq\":\"1\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hdx_receipt_parse_json(bad[i], strlen(bad[i]), &back, NULL, 0),
                         HDX_E_INVAL);
    /* Each field altered in the text: refused by the parser or by the signature. */
    char *p = strstr(js, "\"path\":[\"");
    assert_non_null(p);
    p[9] = p[9] == '0' ? '1' : '0';
    assert_int_equal(hdx_receipt_parse_json(js, strlen(js), &back, NULL, 0), HDX_OK);
    assert_int_equal(hdx_receipt_verify(&back, key), HDX_E_INTEGRITY);
    char big[HDX_RECEIPT_JSON_MAX + 2];
    memset(big, ' ', sizeof(big));
    assert_int_equal(hdx_receipt_parse_json(big, sizeof(big), &back, NULL, 0), HDX_E_TOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_receipt_verifies),
        cmocka_unit_test(test_alterations_refused),
        cmocka_unit_test(test_segment_round_trip),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
