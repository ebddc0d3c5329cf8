/* Envelope encryption, blind index and the record encoding (DESIGN M4, M5; invariant 2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "crypto/keys.h"
#include "store/record.h"
#include "core/util.h"

static char tmpdir[256];

static int setup(void **state)
{
    return hdx_mkdtemp("hdx-crypto-", tmpdir, sizeof(tmpdir));
}

static int teardown(void **state)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

static struct hdx_keyring *ring(const char *name)
{
    char path[320];
    struct hdx_keyring *kr = NULL;
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    if (access(path, F_OK) != 0) assert_int_equal(hdx_kek_create(path), HDX_OK);
    assert_int_equal(hdx_keyring_open(path, &kr, NULL, 0), HDX_OK);
    return kr;
}

static void test_kek_file_is_private(void **state)
{
    char path[320];
    struct stat st;
    struct hdx_keyring *kr = NULL;
    snprintf(path, sizeof(path), "%s/kek-mode", tmpdir);
    assert_int_equal(hdx_kek_create(path), HDX_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(hdx_kek_create(path), HDX_E_EXISTS);
    chmod(path, 0644);
    assert_int_equal(hdx_keyring_open(path, &kr, NULL, 0), HDX_E_PERM);
    assert_null(kr);
}

/* The rule every private key hdxd reads is held to (kek.key, log.key, server.key). */
static void test_secret_file_rule(void **state)
{
    char path[320], link[330], why[1024], want[1024];
    uint8_t *buf = NULL;
    size_t len = 0;
    struct hdx_keyring *kr = NULL;
    snprintf(path, sizeof(path), "%s/kek-rule", tmpdir);
    snprintf(link, sizeof(link), "%s.link", path);
    assert_int_equal(hdx_kek_create(path), HDX_OK);
    assert_int_equal(hdx_secret_read(path, 256, &buf, &len, why, sizeof(why)), HDX_OK);
    assert_int_equal(len, 65);
    hdx_secret_free(buf, len);
    const mode_t open_modes[] = {0640, 0604, 0620, 0602, 0610, 0660};
    for (size_t i = 0; i < HDX_ARRAY_LEN(open_modes); i++) {
        chmod(path, open_modes[i]);
        assert_int_equal(hdx_keyring_open(path, &kr, why, sizeof(why)), HDX_E_PERM);
        assert_null(kr);
        snprintf(want, sizeof(want), "%s is mode %04o, open to group or others: run chmod 600 %s",
                 path, (unsigned)open_modes[i], path);
        assert_string_equal(why, want);
    }
    chmod(path, 0400); /* stricter than 0600 is fine */
    assert_int_equal(hdx_keyring_open(path, &kr, why, sizeof(why)), HDX_OK);
    hdx_keyring_free(kr);
    kr = NULL;
    /* A link is refused even to a private file: the key's place is the data directory. */
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(hdx_keyring_open(link, &kr, why, sizeof(why)), HDX_E_PERM);
    assert_non_null(strstr(why, "is a symbolic link"));
    unlink(link);
    assert_int_equal(mkfifo(link, 0600), 0);
    assert_int_equal(hdx_secret_read(link, 256, &buf, &len, why, sizeof(why)), HDX_E_PERM);
    assert_non_null(strstr(why, "is not a regular file"));
    assert_null(buf);
    unlink(link);
    assert_int_equal(hdx_secret_read(link, 256, &buf, &len, why, sizeof(why)), HDX_E_NOTFOUND);
    assert_int_equal(hdx_secret_read(path, 16, &buf, &len, why, sizeof(why)), HDX_E_TOOBIG);
    assert_int_equal(hdx_secret_read(path, 16, &buf, &len, NULL, 0), HDX_E_TOOBIG);
}

static void test_wrap_unwrap_and_wrong_kek(void **state)
{
    struct hdx_keyring *a = ring("kek-a"), *a2 = ring("kek-a"), *b = ring("kek-b");
    uint8_t wrapped[HDX_WRAPPED_LEN], nonce[HDX_NONCE_LEN], ct[64 + HDX_TAG_LEN], pt[64];
    const uint8_t msg[] = "MSH|^~\\&|A|B|||20260101||ORU^R01|1|P|2.5.1";
    assert_int_equal(hdx_keyring_new_key(a, HDX_KEY_DATA, 7, wrapped), HDX_OK);
    assert_int_equal(hdx_keyring_current(a), 7);
    assert_int_equal(hdx_seal(a, 7, (const uint8_t *)"aad", 3, msg, sizeof(msg), nonce, ct),
                     HDX_OK);
    /* Same KEK in another process: the stored wrapped key opens the ciphertext. */
    assert_int_equal(hdx_keyring_add(a2, HDX_KEY_DATA, 7, wrapped, sizeof(wrapped)), HDX_OK);
    assert_int_equal(
        hdx_open(a2, 7, (const uint8_t *)"aad", 3, nonce, ct, sizeof(msg) + HDX_TAG_LEN, pt),
        HDX_OK);
    assert_memory_equal(pt, msg, sizeof(msg));
    /* Another KEK, another id or kind, or a flipped bit: the key does not unwrap. */
    assert_int_equal(hdx_keyring_add(b, HDX_KEY_DATA, 7, wrapped, sizeof(wrapped)), HDX_E_CRYPTO);
    assert_int_equal(hdx_keyring_add(a2, HDX_KEY_DATA, 8, wrapped, sizeof(wrapped)), HDX_E_CRYPTO);
    assert_int_equal(hdx_keyring_add(a2, HDX_KEY_BLIND, 7, wrapped, sizeof(wrapped)), HDX_E_CRYPTO);
    wrapped[20] ^= 1;
    assert_int_equal(hdx_keyring_add(a2, HDX_KEY_DATA, 9, wrapped, sizeof(wrapped)), HDX_E_CRYPTO);
    assert_int_equal(hdx_keyring_add(a2, HDX_KEY_DATA, 9, wrapped, 10), HDX_E_INTEGRITY);
    hdx_keyring_free(a);
    hdx_keyring_free(a2);
    hdx_keyring_free(b);
}

static void test_seal_detects_every_alteration(void **state)
{
    struct hdx_keyring *kr = ring("kek-c");
    uint8_t wrapped[HDX_WRAPPED_LEN], nonce[HDX_NONCE_LEN], ct[32 + HDX_TAG_LEN], pt[32];
    uint8_t msg[32];
    memset(msg, 'x', sizeof(msg));
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, wrapped), HDX_OK);
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 2, wrapped), HDX_OK);
    assert_int_equal(hdx_seal(kr, 1, (const uint8_t *)"hdr", 3, msg, 32, nonce, ct), HDX_OK);
    assert_memory_not_equal(ct, msg, 32); /* it is ciphertext */
    for (size_t i = 0; i < sizeof(ct); i++) {
        ct[i] ^= 0x80;
        assert_int_equal(hdx_open(kr, 1, (const uint8_t *)"hdr", 3, nonce, ct, sizeof(ct), pt),
                         HDX_E_CRYPTO);
        ct[i] ^= 0x80;
    }
    nonce[0] ^= 1;
    assert_int_equal(hdx_open(kr, 1, (const uint8_t *)"hdr", 3, nonce, ct, sizeof(ct), pt),
                     HDX_E_CRYPTO);
    nonce[0] ^= 1;
    assert_int_equal(hdx_open(kr, 1, (const uint8_t *)"hdR", 3, nonce, ct, sizeof(ct), pt),
                     HDX_E_CRYPTO);
    assert_int_equal(hdx_open(kr, 2, (const uint8_t *)"hdr", 3, nonce, ct, sizeof(ct), pt),
                     HDX_E_CRYPTO);
    assert_int_equal(hdx_open(kr, 3, (const uint8_t *)"hdr", 3, nonce, ct, sizeof(ct), pt),
                     HDX_E_NOTFOUND);
    assert_int_equal(hdx_open(kr, 1, (const uint8_t *)"hdr", 3, nonce, ct, sizeof(ct), pt), HDX_OK);
    assert_memory_equal(pt, msg, 32);
    hdx_keyring_free(kr);
}

static void test_blind_index(void **state)
{
    struct hdx_keyring *a = ring("kek-d"), *b = ring("kek-e");
    uint8_t w[HDX_WRAPPED_LEN], t1[HDX_BLIND_LEN], t2[HDX_BLIND_LEN], t3[HDX_BLIND_LEN];
    assert_int_equal(hdx_blind(a, "patient", "MRN1", 4, t1), HDX_E_NOTFOUND);
    assert_int_equal(hdx_keyring_new_key(a, HDX_KEY_BLIND, 1, w), HDX_OK);
    assert_int_equal(hdx_keyring_new_key(b, HDX_KEY_BLIND, 1, w), HDX_OK);
    assert_int_equal(hdx_blind(a, "patient", "MRN1", 4, t1), HDX_OK);
    assert_int_equal(hdx_blind(a, "patient", "MRN1", 4, t2), HDX_OK);
    assert_memory_equal(t1, t2, HDX_BLIND_LEN);
    assert_int_equal(hdx_blind(a, "dedup", "MRN1", 4, t2), HDX_OK);
    assert_memory_not_equal(t1, t2, HDX_BLIND_LEN);
    assert_int_equal(hdx_blind(a, "patient", "MRN2", 4, t2), HDX_OK);
    assert_memory_not_equal(t1, t2, HDX_BLIND_LEN);
    assert_int_equal(hdx_blind(b, "patient", "MRN1", 4, t3), HDX_OK);
    assert_memory_not_equal(t1, t3, HDX_BLIND_LEN);
    hdx_keyring_free(a);
    hdx_keyring_free(b);
}

/* The per-thread context must give exactly the keyring's results: same tokens, same
 * plaintexts, same refusals, across key switches and after a failed open. */
static void test_keyctx_matches_keyring(void **state)
{
    struct hdx_keyring *kr = ring("kek-g");
    struct hdx_keyctx *kc = NULL;
    uint8_t w[HDX_WRAPPED_LEN], t1[HDX_BLIND_LEN], t2[HDX_BLIND_LEN];
    uint8_t nonce[2][HDX_NONCE_LEN], ct[2][100 + HDX_TAG_LEN], msg[2][100], pt[100];
    char value[200];
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, w), HDX_OK);
    assert_int_equal(hdx_keyctx_new(kr, &kc), HDX_OK);
    assert_int_equal(hdx_keyctx_blind(kc, "patient", "MRN1", 4, t1), HDX_E_NOTFOUND);
    hdx_keyctx_free(kc);
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 2, w), HDX_OK);
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, w), HDX_OK);
    assert_int_equal(hdx_keyctx_new(kr, &kc), HDX_OK);
    for (size_t len = 0; len < sizeof(value); len += 7) { /* across SHA-256 block edges */
        memset(value, 'a' + (int)(len % 26), len);
        assert_int_equal(hdx_blind(kr, "patient", value, len, t1), HDX_OK);
        assert_int_equal(hdx_keyctx_blind(kc, "patient", value, len, t2), HDX_OK);
        assert_memory_equal(t1, t2, HDX_BLIND_LEN);
        assert_int_equal(hdx_blind(kr, "dedup", value, len, t1), HDX_OK);
        assert_int_equal(hdx_keyctx_blind(kc, "dedup", value, len, t2), HDX_OK);
        assert_memory_equal(t1, t2, HDX_BLIND_LEN);
    }
    for (int k = 0; k < 2; k++) {
        memset(msg[k], 'p' + k, sizeof(msg[k]));
        assert_int_equal(
            hdx_seal(kr, (uint32_t)k + 1, (const uint8_t *)"hdr", 3, msg[k], 100, nonce[k], ct[k]),
            HDX_OK);
    }
    for (int round = 0; round < 4; round++) { /* 1, 2, 1, 2: the kept key must follow */
        int k = round % 2;
        assert_int_equal(hdx_keyctx_open(kc, (uint32_t)k + 1, (const uint8_t *)"hdr", 3, nonce[k],
                                         ct[k], sizeof(ct[k]), pt),
                         HDX_OK);
        assert_memory_equal(pt, msg[k], 100);
    }
    ct[0][7] ^= 1;
    assert_int_equal(
        hdx_keyctx_open(kc, 1, (const uint8_t *)"hdr", 3, nonce[0], ct[0], sizeof(ct[0]), pt),
        HDX_E_CRYPTO);
    for (size_t i = 0; i < sizeof(pt); i++)
        assert_int_equal(pt[i], 0); /* nothing unauthenticated handed back */
    ct[0][7] ^= 1;
    assert_int_equal(
        hdx_keyctx_open(kc, 1, (const uint8_t *)"hdR", 3, nonce[0], ct[0], sizeof(ct[0]), pt),
        HDX_E_CRYPTO);
    assert_int_equal(
        hdx_keyctx_open(kc, 2, (const uint8_t *)"hdr", 3, nonce[0], ct[0], sizeof(ct[0]), pt),
        HDX_E_CRYPTO);
    assert_int_equal(
        hdx_keyctx_open(kc, 3, (const uint8_t *)"hdr", 3, nonce[0], ct[0], sizeof(ct[0]), pt),
        HDX_E_NOTFOUND);
    assert_int_equal(
        hdx_keyctx_open(kc, 1, (const uint8_t *)"hdr", 3, nonce[0], ct[0], sizeof(ct[0]), pt),
        HDX_OK);
    assert_memory_equal(pt, msg[0], 100);
    hdx_keyctx_free(kc);
    hdx_keyring_free(kr);
}

/* A blind index given its value in pieces equals the one-shot one, whatever the pieces. */
static void test_blind_stream(void **state)
{
    (void)state;
    struct hdx_keyring *kr = ring("kek-s");
    struct hdx_keyctx *kc = NULL;
    struct hdx_blind_stream *bs = NULL;
    uint8_t w[HDX_WRAPPED_LEN], t1[HDX_BLIND_LEN], t2[HDX_BLIND_LEN];
    static uint8_t value[70000];
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, w), HDX_OK);
    assert_int_equal(hdx_keyctx_new(kr, &kc), HDX_OK);
    assert_int_equal(hdx_blind_stream_new(kc, &bs), HDX_E_NOTFOUND); /* no blind key */
    assert_null(bs);
    hdx_keyctx_free(kc);
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, w), HDX_OK);
    assert_int_equal(hdx_keyctx_new(kr, &kc), HDX_OK);
    assert_int_equal(hdx_blind_stream_new(kc, &bs), HDX_OK);
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 31 + 7);
    static const size_t pieces[] = {1, 63, 64, 65, 4096, 16384, 70000};
    for (size_t len = 0; len <= sizeof(value); len += len < 200 ? 13 : 9973) {
        assert_int_equal(hdx_keyctx_blind(kc, "content", value, len, t1), HDX_OK);
        for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
            assert_int_equal(hdx_blind_stream_begin(bs, "content"), HDX_OK);
            for (size_t off = 0; off < len; off += pieces[pi]) {
                size_t n = len - off < pieces[pi] ? len - off : pieces[pi];
                assert_int_equal(hdx_blind_stream_update(bs, value + off, n), HDX_OK);
            }
            assert_int_equal(hdx_blind_stream_final(bs, t2), HDX_OK);
            assert_memory_equal(t1, t2, HDX_BLIND_LEN);
        }
    }
    /* the domain is part of it; a stream not begun again refuses */
    assert_int_equal(hdx_blind_stream_begin(bs, "dedup"), HDX_OK);
    assert_int_equal(hdx_blind_stream_update(bs, value, 10), HDX_OK);
    assert_int_equal(hdx_blind_stream_final(bs, t2), HDX_OK);
    assert_int_equal(hdx_keyctx_blind(kc, "content", value, 10, t1), HDX_OK);
    assert_memory_not_equal(t1, t2, HDX_BLIND_LEN);
    assert_int_equal(hdx_blind_stream_update(bs, value, 10), HDX_E_CRYPTO);
    assert_int_equal(hdx_blind_stream_final(bs, t2), HDX_E_CRYPTO);
    hdx_blind_stream_free(bs);
    hdx_blind_stream_free(NULL);
    hdx_keyctx_free(kc);
    hdx_keyring_free(kr);
}

static void fill_record(struct hdx_record *r)
{
    memset(r, 0, sizeof(*r));
    r->seq = 42;
    r->time_us = 1764000000000000;
    r->kind = HDX_KIND_HL7V2;
    snprintf(r->sender, sizeof(r->sender), "monitor-01");
    snprintf(r->type, sizeof(r->type), "ORU^R01");
    memset(r->patient, 0xaa, sizeof(r->patient));
}

static void test_record_seal_binds_header(void **state)
{
    struct hdx_keyring *kr = ring("kek-f");
    uint8_t w[HDX_WRAPPED_LEN], *pt = NULL;
    size_t len = 0;
    struct hdx_record r;
    const char *msg = "MSH|^~\\&|X";
    assert_int_equal(hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, w), HDX_OK);
    fill_record(&r);
    assert_int_equal(hdx_record_seal(&r, kr, (const uint8_t *)msg, strlen(msg)), HDX_OK);
    assert_int_equal(r.ct_len, strlen(msg) + HDX_TAG_LEN);
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_OK);
    assert_int_equal(len, strlen(msg));
    assert_memory_equal(pt, msg, len);
    free(pt);
    /* Moving the ciphertext to another place in the log fails authentication. */
    r.seq = 43;
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_E_CRYPTO);
    r.seq = 42;
    r.type[0] = 'A';
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_E_CRYPTO);
    r.type[0] = 'O';
    r.patient[3] ^= 1;
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_E_CRYPTO);
    r.patient[3] ^= 1;
    r.sender[0] = 'M';
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_E_CRYPTO);
    r.sender[0] = 'm';
    assert_int_equal(hdx_record_open(&r, kr, &pt, &len), HDX_OK);
    free(pt);
    /* The same through a key context into the caller's buffer, which must hold a NUL too. */
    struct hdx_keyctx *kc = NULL;
    uint8_t buf[64];
    assert_int_equal(hdx_keyctx_new(kr, &kc), HDX_OK);
    assert_int_equal(hdx_record_open_into(&r, kc, buf, strlen(msg), &len), HDX_E_TOOBIG);
    assert_int_equal(hdx_record_open_into(&r, kc, buf, strlen(msg) + 1, &len), HDX_OK);
    assert_int_equal(len, strlen(msg));
    assert_string_equal((const char *)buf, msg);
    r.seq = 43;
    assert_int_equal(hdx_record_open_into(&r, kc, buf, sizeof(buf), &len), HDX_E_CRYPTO);
    hdx_keyctx_free(kc);
    hdx_record_clear(&r);
    hdx_keyring_free(kr);
}

static void test_record_hashes(void **state)
{
    struct hdx_record r;
    uint8_t ct[20], h1[32], h2[32], zero[32] = {0}, c1[32], c2[32];
    uint8_t header[HDX_HEADER_MAX];
    fill_record(&r);
    memset(ct, 7, sizeof(ct));
    r.ct = ct;
    r.ct_len = sizeof(ct);
    size_t hl = hdx_record_header(&r, header, sizeof(header));
    /* "HDXR" v1, seq 42 big-endian right after the version byte. */
    assert_memory_equal(header, "HDXR\x01", 5);
    assert_int_equal(header[12], 42);
    assert_int_equal(hl, 4 + 1 + 8 + 8 + 1 + 4 + 2 + 10 + 2 + 7 + 32);
    hdx_record_leaf_hash(&r, h1);
    ct[5] ^= 1;
    hdx_record_leaf_hash(&r, h2);
    assert_memory_not_equal(h1, h2, 32);
    ct[5] ^= 1;
    r.nonce[0] = 1;
    hdx_record_leaf_hash(&r, h2);
    assert_memory_not_equal(h1, h2, 32);
    hdx_record_chain(zero, h1, c1);
    hdx_record_chain(c1, h1, c2);
    assert_memory_not_equal(c1, c2, 32);
    /* A sender too long for the format is refused, not truncated. */
    memset(r.sender, 'a', HDX_SENDER_MAX);
    r.sender[HDX_SENDER_MAX] = 0;
    assert_true(hdx_record_header(&r, header, sizeof(header)) > 0);
    assert_int_equal(hdx_record_header(&r, header, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kek_file_is_private),
        cmocka_unit_test(test_secret_file_rule),
        cmocka_unit_test(test_wrap_unwrap_and_wrong_kek),
        cmocka_unit_test(test_seal_detects_every_alteration),
        cmocka_unit_test(test_blind_index),
        cmocka_unit_test(test_keyctx_matches_keyring),
        cmocka_unit_test(test_blind_stream),
        cmocka_unit_test(test_record_seal_binds_header),
        cmocka_unit_test(test_record_hashes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
