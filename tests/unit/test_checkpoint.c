/* Device stream checkpoints: the running hash is the documented chain; a checkpoint made by
 * the device verifies on hdxd's side over the same payloads; another key, another connection's
 * binding, a reused number, and a dropped, altered or inserted message are each refused with
 * their own verdict; the ZCK segment parses back and its malformed forms are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "proto/checkpoint.h"
#include "proto/hl7.h"

static EVP_PKEY *key, *other;
static uint8_t pub[32], binding[32], binding2[32];

static int setup(void **state)
{
    size_t len = 32;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    other = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    memset(binding, 0xb1, 32);
    memset(binding2, 0xb2, 32);
    return key && other && EVP_PKEY_get_raw_public_key(key, pub, &len) == 1 ? 0 : -1;
}

static int teardown(void **state)
{
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return 0;
}

static const char *payloads[] = {"MSH|^~\\&|A|B|C|D|20261125||ORU^R01|1|P|2.5.1\r",
                                 "MSH|^~\\&|A|B|C|D|20261125||ORU^R01|2|P|2.5.1\r", "x", ""};

static void feed(struct hdx_stream *s, size_t skip)
{
    for (size_t i = 0; i < 4; i++)
        if (i != skip)
            assert_int_equal(hdx_stream_add(s, (const uint8_t *)payloads[i], strlen(payloads[i])),
                             HDX_OK);
}

static void test_running_hash(void **state)
{
    struct hdx_stream s;
    uint8_t h[32] = {0}, buf[64];
    hdx_stream_init(&s);
    feed(&s, 99);
    for (size_t i = 0; i < 4; i++) {
        memcpy(buf, h, 32);
        EVP_Digest(payloads[i], strlen(payloads[i]), buf + 32, NULL, EVP_sha256(), NULL);
        EVP_Digest(buf, 64, h, NULL, EVP_sha256(), NULL);
    }
    assert_memory_equal(s.hash, h, 32);
    assert_int_equal(s.count, 4);
}

static void test_verdicts(void **state)
{
    struct hdx_stream dev, srv;
    struct hdx_checkpoint c;
    hdx_stream_init(&dev);
    hdx_stream_init(&srv);
    /* 1: honest */
    feed(&dev, 99);
    feed(&srv, 99);
    assert_int_equal(hdx_checkpoint_make(&dev, 1, binding, key, &c), HDX_OK);
    assert_int_equal(dev.count, 0); /* a new running hash starts */
    assert_int_equal(hdx_checkpoint_check(&srv, &c, binding, pub), HDX_CKPT_OK);
    assert_int_equal(srv.last_n, 1);
    /* the same checkpoint again on this connection: replayed */
    assert_int_equal(hdx_checkpoint_check(&srv, &c, binding, pub), HDX_CKPT_REPLAYED);
    /* on another connection: the binding differs, so the signature fails */
    struct hdx_stream srv2;
    hdx_stream_init(&srv2);
    assert_int_equal(hdx_checkpoint_check(&srv2, &c, binding2, pub), HDX_CKPT_BAD_SIGNATURE);
    /* signed by another device's key */
    feed(&dev, 99);
    feed(&srv, 99);
    assert_int_equal(hdx_checkpoint_make(&dev, 2, binding, other, &c), HDX_OK);
    assert_int_equal(hdx_checkpoint_check(&srv, &c, binding, pub), HDX_CKPT_BAD_SIGNATURE);
    assert_int_equal(srv.count, 0);
    assert_int_equal(srv.last_n, 1);
    /* a message lost on the way, one altered, one inserted: mismatch, n still consumed */
    for (int kind = 0; kind < 3; kind++) {
        uint64_t n = 3 + (uint64_t)kind;
        feed(&dev, 99);
        if (kind == 0) feed(&srv, 2);
        if (kind == 1) {
            feed(&srv, 0);
            assert_int_equal(hdx_stream_add(&srv, (const uint8_t *)"MSH|altered", 11), HDX_OK);
        }
        if (kind == 2) {
            feed(&srv, 99);
            assert_int_equal(hdx_stream_add(&srv, (const uint8_t *)"", 0), HDX_OK);
        }
        assert_int_equal(hdx_checkpoint_make(&dev, n, binding, key, &c), HDX_OK);
        assert_int_equal(hdx_checkpoint_check(&srv, &c, binding, pub), HDX_CKPT_MISMATCH);
        assert_int_equal(srv.last_n, n);
    }
    /* a bit flipped anywhere in the checkpoint: refused */
    feed(&dev, 99);
    assert_int_equal(hdx_checkpoint_make(&dev, 9, binding, key, &c), HDX_OK);
    struct hdx_checkpoint bad = c;
    bad.hash[0] ^= 1;
    feed(&srv, 99);
    assert_int_equal(hdx_checkpoint_check(&srv, &bad, binding, pub), HDX_CKPT_BAD_SIGNATURE);
    bad = c;
    bad.count++;
    feed(&srv, 99);
    assert_int_equal(hdx_checkpoint_check(&srv, &bad, binding, pub), HDX_CKPT_BAD_SIGNATURE);
    feed(&srv, 99);
    assert_int_equal(hdx_checkpoint_check(&srv, &c, binding, pub), HDX_CKPT_OK);
    assert_string_equal(hdx_ckpt_verdict_text(HDX_CKPT_OK), "verified");
}

static int parse_zck(const char *zck, struct hl7_msg *m, struct hdx_checkpoint *c)
{
    char buf[600];
    struct hl7_limits lim;
    struct hl7_error e;
    hl7_limits_default(&lim);
    memset(m, 0, sizeof(*m));
    int n = snprintf(buf, sizeof(buf),
                     "MSH|^~\\&|DEV|W|HDX|H|20261125||ZCK^Z01^ZCK_Z01|C1|P|2.5.1\r%s", zck);
    assert_int_equal(hl7_parse((const uint8_t *)buf, (size_t)n, &lim, m, &e), 0);
    assert_true(hdx_is_checkpoint(m));
    int rc = hdx_checkpoint_parse(m, c);
    hl7_msg_free(m);
    return rc;
}

static void test_segment(void **state)
{
    struct hdx_stream dev;
    struct hdx_checkpoint c, back;
    struct hl7_msg m;
    char seg[HDX_CKPT_SEGMENT_MAX], bad[HDX_CKPT_SEGMENT_MAX];
    hdx_stream_init(&dev);
    feed(&dev, 99);
    assert_int_equal(hdx_checkpoint_make(&dev, 12, binding, key, &c), HDX_OK);
    assert_true(hdx_checkpoint_segment(&c, seg, sizeof(seg)) > 0);
    assert_int_equal(parse_zck(seg, &m, &back), HDX_OK);
    assert_memory_equal(&back, &c, sizeof(c));
    /* malformed: each field in turn */
    const char *edits[][2] = {{"ZCK|1|", "ZCK|2|"},
                              {"ZCK|1|12|", "ZCK|1|0|"},
                              {"ZCK|1|12|", "ZCK|1|012|"},
                              {"ZCK|1|12|4|", "ZCK|1|12|-4|"},
                              {"ZCK|", "ZXX|"},
                              {"ZCK|1|12|4|", "ZCK|1|12|4|00"}};
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        const char *at = strstr(seg, edits[i][0]);
        assert_non_null(at);
        snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - seg), seg, edits[i][1],
                 at + strlen(edits[i][0]));
        assert_int_equal(parse_zck(bad, &m, &back), HDX_E_INVAL);
    }
    snprintf(bad, sizeof(bad), "%.*s\r", (int)strlen(seg) - 3, seg); /* signature cut short */
    assert_int_equal(parse_zck(bad, &m, &back), HDX_E_INVAL);
    assert_int_equal(parse_zck("", &m, &back), HDX_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_hash),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_segment),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
