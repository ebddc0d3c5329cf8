/* policy/scope: the operator grammar into the canonical form (sorted, unique, patients
 * blinded), the strict canonical parser (one spelling per scope), and the per-record match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "policy/scope.h"

static struct hdx_keyring *kr;

static int setup(void **state)
{
    char dir[256], kek[320];
    uint8_t w[HDX_WRAPPED_LEN];
    if (hdx_mkdtemp("hdx-scope-", dir, sizeof(dir)) != 0) return -1;
    snprintf(kek, sizeof(kek), "%s/kek.key", dir);
    if (hdx_kek_create(kek) || hdx_keyring_open(kek, &kr, NULL, 0) ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, w))
        return -1;
    unlink(kek);
    rmdir(dir);
    return 0;
}

static int teardown(void **state)
{
    hdx_keyring_free(kr);
    return 0;
}

static int op(const char *text, char *canon, size_t cap)
{
    char why[200];
    return hdx_scope_from_operator(text, strlen(text), kr, canon, cap, why, sizeof(why));
}

static void token_hex(const char *id, char hex[33])
{
    uint8_t t[HDX_BLIND_LEN];
    assert_int_equal(hdx_blind(kr, "patient", id, strlen(id), t), HDX_OK);
    hdx_hex(t, HDX_BLIND_LEN, hex);
}

static void test_operator_to_canonical(void **state)
{
    char c[HDX_SCOPE_TEXT_MAX + 1], want[400], p1[33], p2[33];
    assert_int_equal(op("type=ORU^R01 sender=monitor-*", c, sizeof(c)), HDX_OK);
    assert_string_equal(c, "type=ORU^R01 sender=monitor-*");
    /* keys reordered, values sorted and made unique */
    assert_int_equal(op("sender=b,a*,b type=ORU^R01,ADT^A01,ORU^R01", c, sizeof(c)), HDX_OK);
    assert_string_equal(c, "type=ADT^A01,ORU^R01 sender=a*,b");
    /* patients become their blind tokens, never the identifier */
    token_hex("PAT-1", p1);
    token_hex("PAT-2", p2);
    assert_int_equal(op("patient=PAT-2,PAT-1", c, sizeof(c)), HDX_OK);
    snprintf(want, sizeof(want), "patient=%s,%s", strcmp(p1, p2) < 0 ? p1 : p2,
             strcmp(p1, p2) < 0 ? p2 : p1);
    assert_string_equal(c, want);
    assert_null(strstr(c, "PAT"));
    /* the canonical form is a fixed point */
    char again[HDX_SCOPE_TEXT_MAX + 1];
    assert_int_equal(op("type=ADT^A01,ORU^R01 sender=a*,b", again, sizeof(again)), HDX_OK);
    assert_string_equal(again, "type=ADT^A01,ORU^R01 sender=a*,b");
}

static void test_operator_refusals(void **state)
{
    char c[HDX_SCOPE_TEXT_MAX + 1], big[8000];
    static const char *const bad[] = {
        "",           " type=A",   "type=A ",    "type=A  sender=B", "ward=3",        "type",
        "type=",      "type=A,",   "type=,A",    "type=A,,B",        "type=A type=B", "sender=*",
        "sender=a*b", "sender=**", "type=A*",    "type=A=B",         "sender=a=b",    "type=A\tB",
        "patient=",   "TYPE=A",    "type=A\x7f", "type=A\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(c, 'x', sizeof(c));
        assert_int_equal(op(bad[i], c, sizeof(c)), HDX_E_INVAL);
        assert_string_equal(c, "");
    }
    /* NUL inside the given length */
    char why[200];
    assert_int_equal(hdx_scope_from_operator("type=A\0B", 8, kr, c, sizeof(c), why, sizeof(why)),
                     HDX_E_INVAL);
    /* 33 values for one key */
    size_t off = (size_t)snprintf(big, sizeof(big), "sender=s0");
    for (int i = 1; i <= 32; i++)
        off += (size_t)snprintf(big + off, sizeof(big) - off, ",s%d", i);
    assert_int_equal(op(big, c, sizeof(c)), HDX_E_INVAL);
    /* 32 are fine */
    big[strlen(big) - 4] = 0;
    assert_int_equal(op(big, c, sizeof(c)), HDX_OK);
    /* 32 senders of 64 bytes and 32 types of 63: over HDX_SCOPE_TEXT_MAX */
    off = 0;
    for (int i = 0; i < 32; i++)
        off += (size_t)snprintf(big + off, sizeof(big) - off, "%s%02d%062d", i ? "," : "sender=", i,
                                0);
    assert_int_equal(op(big, c, sizeof(c)), HDX_E_INVAL);
    /* a patient identifier over 199 bytes */
    memset(big, 'p', 300);
    memcpy(big, "patient=", 8);
    big[8 + 200] = 0;
    assert_int_equal(op(big, c, sizeof(c)), HDX_E_INVAL);
    big[8 + 199] = 0;
    assert_int_equal(op(big, c, sizeof(c)), HDX_OK);
}

static int canon(const char *s)
{
    struct hdx_scope sc;
    return hdx_scope_parse(s, strlen(s), &sc);
}

static void test_canonical_strict(void **state)
{
    const char *hex = "00112233445566778899aabbccddeeff",
               *hex2 = "00112233445566778899aabbccddeef0";
    char buf[200];
    assert_int_equal(canon("type=ORU^R01"), HDX_OK);
    assert_int_equal(canon("type=A,B sender=a*,b"), HDX_OK);
    snprintf(buf, sizeof(buf), "sender=w* patient=%s,%s", hex2, hex);
    assert_int_equal(canon(buf), HDX_OK);
    static const char *const bad[] = {
        "",        "type=B,A", "type=A,A",         "sender=a type=A", "type=A type=B",
        "type=A ", " type=A",  "type=A  sender=a", "type=A,",         "patient=XYZ",
        "other=1", "sender=*", "type=a*",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(canon(bad[i]), HDX_E_INVAL);
    snprintf(buf, sizeof(buf), "patient=%s,%s", hex, hex2); /* descending */
    assert_int_equal(canon(buf), HDX_E_INVAL);
    snprintf(buf, sizeof(buf), "patient=00112233445566778899AABBCCDDEEFF"); /* upper case */
    assert_int_equal(canon(buf), HDX_E_INVAL);
    struct hdx_scope sc;
    assert_int_equal(hdx_scope_parse("type=A\0", 7, &sc), HDX_E_INVAL);
    assert_int_equal(sc.ntypes, 0);
}

static void test_admits(void **state)
{
    char c[HDX_SCOPE_TEXT_MAX + 1], d[200];
    struct hdx_scope s;
    uint8_t p1[HDX_BLIND_LEN], p2[HDX_BLIND_LEN];
    assert_int_equal(hdx_blind(kr, "patient", "PAT-1", 5, p1), HDX_OK);
    assert_int_equal(hdx_blind(kr, "patient", "PAT-2", 5, p2), HDX_OK);
    assert_int_equal(op("type=ORU^R01 sender=ward3-*,lab", c, sizeof(c)), HDX_OK);
    assert_int_equal(hdx_scope_parse(c, strlen(c), &s), HDX_OK);
    assert_true(hdx_scope_admits(&s, "ward3-bed1", "ORU^R01", NULL));
    assert_true(hdx_scope_admits(&s, "ward3-", "ORU^R01", p1));
    assert_true(hdx_scope_admits(&s, "lab", "ORU^R01", NULL));
    assert_false(hdx_scope_admits(&s, "lab2", "ORU^R01", NULL)); /* exact */
    assert_false(hdx_scope_admits(&s, "ward4-bed1", "ORU^R01", NULL));
    assert_false(hdx_scope_admits(&s, "ward3-bed1", "ADT^A01", NULL));
    assert_false(hdx_scope_admits(&s, "ward3", "ORU^R01", NULL));
    hdx_scope_describe(&s, d, sizeof(d));
    assert_string_equal(d, "type=ORU^R01 sender=lab,ward3-*");
    assert_int_equal(op("patient=PAT-1", c, sizeof(c)), HDX_OK);
    assert_int_equal(hdx_scope_parse(c, strlen(c), &s), HDX_OK);
    assert_true(hdx_scope_admits(&s, "any", "ADT^A01", p1));
    assert_false(hdx_scope_admits(&s, "any", "ADT^A01", p2));
    assert_false(hdx_scope_admits(&s, "any", "ADT^A01", NULL)); /* no patient: out */
    hdx_scope_describe(&s, d, sizeof(d));
    assert_string_equal(d, "patients=1");
    hdx_scope_describe(&s, d, 4);
    assert_string_equal(d, "pat");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operator_to_canonical),
        cmocka_unit_test(test_operator_refusals),
        cmocka_unit_test(test_canonical_strict),
        cmocka_unit_test(test_admits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
