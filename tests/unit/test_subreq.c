/* The subscription request line (bus/bus.h hdx_bus_parse_request; grammar in
 * docs/SUBSCRIBE.md "Request"): the accepted forms and their boundaries, and each refusal with
 * its exact reason. Every line is parsed from a heap copy of exactly its length, so a read past
 * it (or up to a NUL) shows under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/err.h"
#include "core/util.h"

static struct hdx_keyring *kr;
static struct hdx_bus_filter f;
static uint64_t after;
static char why[128];

static int setup(void **state)
{
    char dir[256], kek[320];
    uint8_t w[HDX_WRAPPED_LEN];
    if (hdx_mkdtemp("hdx-subreq-", dir, sizeof(dir)) != 0) return -1;
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

static int parse_n(const char *line, size_t len)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, line, len);
    why[0] = 0;
    int rc = hdx_bus_parse_request(copy, len, kr, &f, &after, why, sizeof(why));
    free(copy);
    return rc;
}

/* String literals keep their embedded NULs: the length is the literal's, not strlen's. */
#define PARSE(lit) parse_n((lit), sizeof(lit) - 1)
#define ACCEPTED(lit) assert_int_equal(PARSE(lit), HDX_OK)
#define REFUSED(lit, reason)                                                                       \
    do {                                                                                           \
        assert_int_equal(PARSE(lit), HDX_E_INVAL);                                                 \
        assert_string_equal(why, (reason));                                                        \
        assert_true(after == UINT64_MAX);                                                          \
        assert_int_equal(f.has_patient, 0);                                                        \
        assert_string_equal(f.type, "");                                                           \
        assert_string_equal(f.sender, "");                                                         \
    } while (0)

static void test_accepted(void **state)
{
    uint8_t tok[HDX_BLIND_LEN];
    ACCEPTED("SUB");
    assert_true(after == UINT64_MAX);
    assert_string_equal(f.type, "");
    assert_string_equal(f.sender, "");
    assert_int_equal(f.has_patient, 0);
    ACCEPTED("SUB after=17 type=ORU^R01 sender=mon1 patient=P1");
    assert_int_equal(after, 17);
    assert_string_equal(f.type, "ORU^R01");
    assert_string_equal(f.sender, "mon1");
    assert_int_equal(f.has_patient, 1);
    assert_int_equal(hdx_blind(kr, "patient", "P1", 2, tok), HDX_OK);
    assert_memory_equal(f.patient, tok, sizeof(tok));
    /* Any order; a value may hold '=' and any other printable byte but space. */
    ACCEPTED("SUB patient=P1 sender=mon1 type=A=B~\\&");
    assert_true(after == UINT64_MAX);
    assert_string_equal(f.type, "A=B~\\&");
    assert_memory_equal(f.patient, tok, sizeof(tok));
    /* Exactly len bytes are read: what follows them is not part of the request. */
    assert_int_equal(parse_n("SUB after=17 type=X", 12), HDX_OK);
    assert_int_equal(after, 17);
    assert_string_equal(f.type, "");
}

/* kind: HL7 v2 messages (the default) or DICOM announcements; nothing else. */
static void test_kind(void **state)
{
    ACCEPTED("SUB");
    assert_int_equal(f.kind, 0);
    ACCEPTED("SUB kind=hl7");
    assert_int_equal(f.kind, HDX_KIND_HL7V2);
    ACCEPTED("SUB after=3 kind=dicom type=CTImageStorage");
    assert_int_equal(f.kind, HDX_KIND_DICOM);
    assert_string_equal(f.type, "CTImageStorage");
    REFUSED("SUB kind=", "kind must be hl7 or dicom");
    REFUSED("SUB kind=DICOM", "kind must be hl7 or dicom");
    REFUSED("SUB kind=dicomx", "kind must be hl7 or dicom");
    REFUSED("SUB kind=dicom kind=hl7", "duplicate parameter kind");
    assert_int_equal(f.kind, 0);
}

static void test_after_bounds(void **state)
{
    ACCEPTED("SUB after=0");
    assert_int_equal(after, 0);
    ACCEPTED("SUB after=007");
    assert_int_equal(after, 7);
    ACCEPTED("SUB after=18446744073709551614");
    assert_true(after == UINT64_MAX - 1);
    ACCEPTED("SUB after=000000000000000000000000018446744073709551614");
    assert_true(after == UINT64_MAX - 1);
    const char *num = "after must be a decimal sequence number";
    REFUSED("SUB after=18446744073709551615", num); /* the "live" sentinel */
    REFUSED("SUB after=18446744073709551616", num); /* wraps to 0 if unchecked */
    REFUSED("SUB after=18446744073709551624", num);
    REFUSED("SUB after=28446744073709551614", num);
    REFUSED("SUB after=99999999999999999999999999", num);
    REFUSED("SUB after=-1", num);
    REFUSED("SUB after=+1", num);
    REFUSED("SUB after=", num);
    REFUSED("SUB after=x", num);
    REFUSED("SUB after=1x", num);
    REFUSED("SUB after=0x10", num);
    REFUSED("SUB after=1e3", num);
    REFUSED("SUB after=1.0", num);
}

static void test_control_bytes(void **state)
{
    const char *ctl = "control character in request";
    REFUSED("SUB type=ORU\0R01", ctl); /* strlen would have seen "SUB type=ORU" */
    REFUSED("SUB\0", ctl);
    REFUSED("\0SUB", ctl);
    REFUSED("SUB after=1\0", ctl);
    REFUSED("SUB type=ORU^R01\r", ctl);
    REFUSED("SUB\ttype=A", ctl);
    REFUSED("SUB sender=a\x1b[2J", ctl);
    REFUSED("SUB sender=a\x7f", ctl);
    REFUSED("GET /\n", ctl); /* checked before the command word */
    /* Every control byte, at the start, in the middle and at the end. */
    for (int c = 0; c < 0x80; c++) {
        if (c >= 0x20 && c != 0x7f) continue;
        char line[] = "?SUB type=A?B?";
        line[0] = line[11] = line[13] = (char)c;
        for (size_t at = 0; at < 3; at++) {
            char one[] = "SUB type=A B ";
            size_t pos = at == 0 ? 0 : at == 1 ? 10 : 12;
            one[pos] = (char)c;
            assert_int_equal(parse_n(one, sizeof(one) - 1), HDX_E_INVAL);
            assert_string_equal(why, ctl);
        }
        assert_int_equal(parse_n(line, sizeof(line) - 1), HDX_E_INVAL);
        assert_string_equal(why, ctl);
    }
    REFUSED("SUB type=\x80", "parameters must be printable ASCII");
    REFUSED("SUB patient=J\xc3\xa9r\xc3\xb4me", "parameters must be printable ASCII");
}

static void test_duplicates(void **state)
{
    REFUSED("SUB after=1 after=2", "duplicate parameter after");
    REFUSED("SUB after=1 after=1", "duplicate parameter after");
    REFUSED("SUB type=A type=A", "duplicate parameter type");
    REFUSED("SUB sender=a type=B sender=b", "duplicate parameter sender");
    REFUSED("SUB patient=P1 after=3 patient=P2", "duplicate parameter patient");
    /* The first refusal in the line is the one reported. */
    REFUSED("SUB after=x after=1", "after must be a decimal sequence number");
    REFUSED("SUB type=A type=A colour=red", "duplicate parameter type");
}

static void test_tokens(void **state)
{
    const char *sp = "parameters must be separated by one space";
    REFUSED("SUB ", sp);
    REFUSED("SUB  type=A", sp);
    REFUSED("SUB type=A  sender=b", sp);
    REFUSED("SUB type=A ", sp);
    const char *sub = "expected SUB";
    REFUSED("", sub);
    REFUSED(" SUB", sub);
    REFUSED("SU", sub);
    REFUSED("sub", sub);
    REFUSED("SUBS", sub);
    REFUSED("SUBtype=A", sub);
    REFUSED("GET /", sub);
    REFUSED("STH", sub);
    const char *unk = "unknown parameter";
    REFUSED("SUB color=red", unk);
    REFUSED("SUB type", unk);
    REFUSED("SUB Type=A", unk);
    REFUSED("SUB =A", unk);
    REFUSED("SUB types=A", unk);
    const char *val = "parameter value empty or too long";
    REFUSED("SUB type=", val);
    REFUSED("SUB sender=", val);
    REFUSED("SUB patient=", val);
}

static void test_lengths(void **state)
{
    const char *val = "parameter value empty or too long";
    char line[1100];
    /* type: up to HDX_TYPE_MAX bytes; sender: HDX_SENDER_MAX; patient: 199. */
    int n = snprintf(line, sizeof(line), "SUB type=%0*d", HDX_TYPE_MAX, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_OK);
    assert_int_equal(strlen(f.type), HDX_TYPE_MAX);
    n = snprintf(line, sizeof(line), "SUB type=%0*d", HDX_TYPE_MAX + 1, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_E_INVAL);
    assert_string_equal(why, val);
    n = snprintf(line, sizeof(line), "SUB sender=%0*d", HDX_SENDER_MAX, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_OK);
    assert_int_equal(strlen(f.sender), HDX_SENDER_MAX);
    n = snprintf(line, sizeof(line), "SUB sender=%0*d", HDX_SENDER_MAX + 1, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_E_INVAL);
    assert_string_equal(why, val);
    n = snprintf(line, sizeof(line), "SUB patient=%0*d", 199, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_OK);
    assert_int_equal(f.has_patient, 1);
    n = snprintf(line, sizeof(line), "SUB patient=%0*d", 200, 0);
    assert_int_equal(parse_n(line, (size_t)n), HDX_E_INVAL);
    assert_string_equal(why, val);
    /* The whole line: 1,023 bytes are parsed (and here refused for another reason), 1,024
     * are too long whatever they hold, even a NUL. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "SUB type=", 9);
    assert_int_equal(parse_n(line, 1023), HDX_E_INVAL);
    assert_string_equal(why, val);
    assert_int_equal(parse_n(line, 1024), HDX_E_INVAL);
    assert_string_equal(why, "request too long");
    line[20] = 0;
    assert_int_equal(parse_n(line, 1024), HDX_E_INVAL);
    assert_string_equal(why, "request too long");
}

/* A refusal after a value was taken leaves nothing of it behind. */
static void test_refusal_clears(void **state)
{
    REFUSED("SUB after=5 patient=P1 type=A sender=s colour=red", "unknown parameter");
    uint8_t zero[HDX_BLIND_LEN] = {0};
    assert_memory_equal(f.patient, zero, sizeof(zero));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),       cmocka_unit_test(test_after_bounds),
        cmocka_unit_test(test_control_bytes),  cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_tokens),         cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_refusal_clears), cmocka_unit_test(test_kind),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
