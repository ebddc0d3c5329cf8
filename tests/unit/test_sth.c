/* Signed tree heads: signature over the documented bytes, every alteration refused, another
 * key refused, the head file round trip and its malformed forms, and the key-file checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "merkle/sth.h"
#include "core/util.h"

static char dir[256];

static int setup(void **state)
{
    return hdx_mkdtemp("hdx-sth-", dir, sizeof(dir));
}

static int teardown(void **state)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static struct hdx_sth sample(void)
{
    struct hdx_sth s;
    memset(&s, 0, sizeof(s));
    s.tree_size = 0x0102030405060708ULL;
    s.timestamp_ms = 1795612991738ULL;
    for (int i = 0; i < 32; i++)
        s.root[i] = (uint8_t)i;
    return s;
}

static void test_signed_bytes_layout(void **state)
{
    struct hdx_sth s = sample();
    uint8_t b[HDX_STH_SIGNED_LEN];
    hdx_sth_signed_bytes(&s, b);
    assert_memory_equal(b, "HDX-STH-v1", 10);
    static const uint8_t size_be[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b + 10, size_be, 8);
    assert_int_equal(b[25], (uint8_t)(1795612991738ULL & 0xff));
    assert_memory_equal(b + 26, s.root, 32);
    assert_int_equal(HDX_STH_SIGNED_LEN, 58);
}

static void test_sign_verify_alterations(void **state)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct hdx_sth s = sample(), t;
    assert_int_equal(hdx_sth_sign(&s, k), HDX_OK);
    assert_int_equal(hdx_sth_verify(&s, k), HDX_OK);
    assert_int_equal(hdx_sth_verify(&s, other), HDX_E_INTEGRITY);
    t = s;
    t.tree_size++;
    assert_int_equal(hdx_sth_verify(&t, k), HDX_E_INTEGRITY);
    t = s;
    t.timestamp_ms--;
    assert_int_equal(hdx_sth_verify(&t, k), HDX_E_INTEGRITY);
    for (int i = 0; i < 32; i++) {
        t = s;
        t.root[i] ^= 0x10;
        assert_int_equal(hdx_sth_verify(&t, k), HDX_E_INTEGRITY);
    }
    for (int i = 0; i < HDX_STH_SIG_LEN; i++) {
        t = s;
        t.signature[i] ^= 0x01;
        assert_int_equal(hdx_sth_verify(&t, k), HDX_E_INTEGRITY);
    }
    char json[512];
    assert_true(hdx_sth_json(&s, json, sizeof(json)) > 0);
    assert_non_null(strstr(json, "\"tree_size\":72623859790382856,"));
    assert_int_equal(hdx_sth_json(&s, json, 20), HDX_E_TOOBIG);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

static void test_head_file(void **state)
{
    char path[320];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct hdx_sth s = sample(), r;
    snprintf(path, sizeof(path), "%s/log.sth", dir);
    assert_int_equal(hdx_sth_file_read(path, &r), HDX_E_NOTFOUND);
    assert_int_equal(hdx_sth_sign(&s, k), HDX_OK);
    assert_int_equal(hdx_sth_file_write(path, &s), HDX_OK);
    assert_int_equal(hdx_sth_file_read(path, &r), HDX_OK);
    assert_memory_equal(&r, &s, sizeof(s));
    assert_int_equal(hdx_sth_verify(&r, k), HDX_OK);
    FILE *f = fopen(path, "ab"); /* one byte too many */
    fputc(0, f);
    fclose(f);
    assert_int_equal(hdx_sth_file_read(path, &r), HDX_E_INTEGRITY);
    f = fopen(path, "wb");
    fwrite("HDX-STH-v2", 1, 10, f);
    for (int i = 10; i < HDX_STH_FILE_LEN; i++)
        fputc(0, f);
    fclose(f);
    assert_int_equal(hdx_sth_file_read(path, &r), HDX_E_INTEGRITY);
    EVP_PKEY_free(k);
}

static void test_key_files(void **state)
{
    char priv[320], pub[320];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *got = NULL;
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    snprintf(priv, sizeof(priv), "%s/log.key", dir);
    snprintf(pub, sizeof(pub), "%s/log.pub.pem", dir);
    FILE *f = fopen(priv, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(pub, "w");
    PEM_write_PUBKEY(f, k);
    fclose(f);
    chmod(priv, 0644);
    assert_int_equal(hdx_logkey_load_private(priv, &got, NULL, 0), HDX_E_PERM);
    chmod(priv, 0600);
    assert_int_equal(hdx_logkey_load_private(priv, &got, NULL, 0), HDX_OK);
    EVP_PKEY_free(got);
    assert_int_equal(hdx_logkey_load_public(pub, &got), HDX_OK);
    EVP_PKEY_free(got);
    f = fopen(pub, "w"); /* a P-256 key is not a log key */
    PEM_write_PUBKEY(f, ec);
    fclose(f);
    assert_int_equal(hdx_logkey_load_public(pub, &got), HDX_E_CRYPTO);
    assert_null(got);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_bytes_layout),
        cmocka_unit_test(test_sign_verify_alterations),
        cmocka_unit_test(test_head_file),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
