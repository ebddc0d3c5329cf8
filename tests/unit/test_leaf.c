/* The leaf encoding as the commit pipeline writes it (sealed in one buffer through a key
 * context) and as the store reads it back from segment frames (untrusted: every kind of
 * malformed leaf is refused); the content digest that tells a resend from a reused control
 * id; the marks a stored checkpoint record implies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "proto/checkpoint.h"
#include "store/record.h"

static char tmpdir[256];
static struct hdx_keyring *kr;
static struct hdx_keyctx *kc;

static int setup(void **state)
{
    char path[320];
    uint8_t wrapped[HDX_WRAPPED_LEN];
    if (hdx_mkdtemp("hdx-leaf-", tmpdir, sizeof(tmpdir)) != 0) return -1;
    snprintf(path, sizeof(path), "%s/kek", tmpdir);
    if (hdx_kek_create(path) || hdx_keyring_open(path, &kr, NULL, 0) ||
        hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, wrapped) ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, wrapped) || hdx_keyctx_new(kr, &kc))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[320];
    hdx_keyctx_free(kc);
    hdx_keyring_free(kr);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

static void sample(struct hdx_record *r)
{
    memset(r, 0, sizeof(*r));
    r->seq = 42;
    r->time_us = 1795000000123456;
    r->kind = HDX_KIND_HL7V2;
    snprintf(r->sender, sizeof(r->sender), "mon-01");
    snprintf(r->type, sizeof(r->type), "ORU^R01");
    memset(r->patient, 0x11, HDX_BLIND_LEN);
    memset(r->dedup, 0x22, HDX_BLIND_LEN);
}

static void test_seal_leaf_round_trip(void **state)
{
    static const char msg[] = "MSH|^~\\&|MON|ICU|||20261125||ORU^R01|C1|P|2.5.1\rPID|1||P1\r";
    struct hdx_record r, back;
    uint8_t *leaf, h[HDX_HASH_LEN];
    size_t len, ptlen;
    sample(&r);
    assert_int_equal(
        hdx_record_seal_leaf(&r, kr, kc, (const uint8_t *)msg, strlen(msg), &leaf, &len), HDX_OK);
    /* The leaf hash is the record's RFC 9162 leaf hash, computed the usual way. */
    hdx_record_leaf_hash(&r, h);
    assert_memory_equal(h, r.leaf_hash, HDX_HASH_LEN);
    assert_int_equal(hdx_record_from_leaf(leaf, len, &back), HDX_OK);
    assert_int_equal(back.seq, 42);
    assert_int_equal(back.time_us, r.time_us);
    assert_string_equal(back.sender, "mon-01");
    assert_string_equal(back.type, "ORU^R01");
    assert_memory_equal(back.patient, r.patient, HDX_BLIND_LEN);
    assert_memory_equal(back.dedup, r.dedup, HDX_BLIND_LEN);
    assert_memory_equal(back.nonce, r.nonce, HDX_NONCE_LEN);
    assert_int_equal(back.key_id, r.key_id);
    assert_int_equal(back.ct_len, strlen(msg) + HDX_TAG_LEN);
    assert_ptr_equal(back.ct + back.ct_len, leaf + len); /* borrowed from the leaf */
    uint8_t pt[256];
    assert_int_equal(hdx_record_open_into(&back, kc, pt, sizeof(pt), &ptlen), HDX_OK);
    assert_int_equal(ptlen, strlen(msg));
    assert_memory_equal(pt, msg, ptlen);
    /* A sealed ciphertext does not open under another header (seq moved). */
    back.seq = 43;
    assert_int_not_equal(hdx_record_open_into(&back, kc, pt, sizeof(pt), &ptlen), HDX_OK);
    free(leaf);
}

static void test_from_leaf_refuses_malformed(void **state)
{
    static const char msg[] = "MSH|^~\\&|A|B|||1||ORU^R01|X|P|2.5.1\r";
    struct hdx_record r, back;
    uint8_t *leaf, copy[512];
    size_t len;
    sample(&r);
    assert_int_equal(
        hdx_record_seal_leaf(&r, kr, kc, (const uint8_t *)msg, strlen(msg), &leaf, &len), HDX_OK);
    assert_true(len < sizeof(copy));
    /* Every truncation, and one byte too many. */
    for (size_t n = 0; n < len; n++)
        assert_int_equal(hdx_record_from_leaf(leaf, n, &back), HDX_E_INTEGRITY);
    memcpy(copy, leaf, len);
    copy[len] = 0;
    assert_int_equal(hdx_record_from_leaf(copy, len + 1, &back), HDX_E_INTEGRITY);
    /* Magic, version, a sender longer than allowed, a NUL inside the sender, a ct_len that
     * does not match, a ciphertext shorter than its tag. */
    size_t sender_len_at = 4 + 1 + 8 + 8 + 1 + 4, sender_at = sender_len_at + 2;
    size_t ctlen_at = len - (strlen(msg) + HDX_TAG_LEN) - 4;
    struct {
        size_t at;
        uint8_t val;
    } bad[] = {{0, 'X'},
               {4, HDX_RECORD_VERSION + 1},
               {sender_len_at, 0xff},
               {sender_len_at + 1, HDX_SENDER_MAX + 1},
               {sender_at + 1, 0},
               {ctlen_at + 3, (uint8_t)(strlen(msg) + HDX_TAG_LEN + 1)},
               {ctlen_at, 0x80}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(copy, leaf, len);
        copy[bad[i].at] = bad[i].val;
        assert_int_equal(hdx_record_from_leaf(copy, len, &back), HDX_E_INTEGRITY);
    }
    memcpy(copy, leaf, len);
    assert_int_equal(hdx_record_from_leaf(copy, len, &back), HDX_OK);
    free(leaf);
}

static void digest(const char *s, uint8_t out[HDX_BLIND_LEN])
{
    assert_int_equal(hdx_content_digest_kc(kc, (const uint8_t *)s, strlen(s), out), HDX_OK);
}

static void test_content_digest_normalises_terminators(void **state)
{
    uint8_t a[HDX_BLIND_LEN], b[HDX_BLIND_LEN];
    digest("MSH|1\rPID|2\rOBX|3\r", a);
    digest("MSH|1\nPID|2\nOBX|3", b); /* LF, no final terminator */
    assert_memory_equal(a, b, HDX_BLIND_LEN);
    digest("MSH|1\r\nPID|2\r\nOBX|3\r\n\r\n", b); /* CRLF, trailing terminators */
    assert_memory_equal(a, b, HDX_BLIND_LEN);
    digest("MSH|1\rPID|2\rOBX|3\r\r\r", b); /* CR only (no copy made), trailing ones */
    assert_memory_equal(a, b, HDX_BLIND_LEN);
    digest("MSH|1\rPID|2\rOBX|3", b);
    assert_memory_equal(a, b, HDX_BLIND_LEN);
    digest("MSH|1\rPID|2\rOBX|4\r", b); /* one byte of content */
    assert_memory_not_equal(a, b, HDX_BLIND_LEN);
    digest("MSH|1\r\rPID|2\rOBX|3\r", b); /* an empty segment is content */
    assert_memory_not_equal(a, b, HDX_BLIND_LEN);
    /* Domain separated from the patient and duplicate tokens. */
    assert_int_equal(hdx_keyctx_blind(kc, "dedup", "MSH|1\rPID|2\rOBX|3", 17, b), HDX_OK);
    assert_memory_not_equal(a, b, HDX_BLIND_LEN);
    /* Larger than the stack buffer. */
    size_t n = 10000;
    char *big = malloc(n + 1), *big2 = malloc(n + 1);
    assert_non_null(big);
    assert_non_null(big2);
    for (size_t i = 0; i < n; i++)
        big[i] = big2[i] = i % 100 == 99 ? '\r' : 'x';
    big[n] = big2[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (big2[i] == '\r') big2[i] = '\n';
    digest(big, a);
    digest(big2, b);
    assert_memory_equal(a, b, HDX_BLIND_LEN);
    free(big);
    free(big2);
}

static int marks(const char *zcs, int *verified, uint64_t **seqs, size_t *n)
{
    char body[512];
    snprintf(body, sizeof(body),
             "MSH|^~\\&|D|W|||1||ZCK^Z01|CK1|P|2.5.1\rZCK|1|1|3|00|00\r"
             "ZCV|1|verified|ok|00|3|3\r%s",
             zcs);
    return hdx_checkpoint_record_marks((const uint8_t *)body, strlen(body), verified, seqs, n);
}

static void test_checkpoint_record_marks(void **state)
{
    int verified = 0;
    uint64_t *seqs = NULL;
    size_t n = 0;
    assert_int_equal(marks("ZCS|4-6,9\rZCS|12\r", &verified, &seqs, &n), HDX_OK);
    assert_int_equal(verified, 1);
    assert_int_equal(n, 5);
    uint64_t want[] = {4, 5, 6, 9, 12};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(seqs[i], want[i]);
    free(seqs);
    assert_int_equal(marks("", &verified, &seqs, &n), HDX_OK); /* covers nothing */
    assert_int_equal(n, 0);
    const char *bad[] = {"ZCS|6-4\r", "ZCS|a\r",  "ZCS|1,,2\r",      "ZCS|1-\r",
                         "ZCS|-1\r",  "ZCS|1 \r", "ZCS|1-99999999\r"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(marks(bad[i], &verified, &seqs, &n), HDX_E_INVAL);
        assert_null(seqs);
        assert_int_equal(n, 0);
    }
    /* No verdict segment: not a checkpoint record hdxd wrote. */
    const char *nover = "MSH|^~\\&|D|W|||1||ZCK^Z01|CK1|P|2.5.1\rZCS|1\r";
    assert_int_equal(
        hdx_checkpoint_record_marks((const uint8_t *)nover, strlen(nover), &verified, &seqs, &n),
        HDX_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_leaf_round_trip),
        cmocka_unit_test(test_from_leaf_refuses_malformed),
        cmocka_unit_test(test_content_digest_normalises_terminators),
        cmocka_unit_test(test_checkpoint_record_marks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
