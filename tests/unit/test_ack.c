/* test_ack: HL7 v2 original-mode ACK (HL7 v2.5.1 2.9.2 original acknowledgment rules,
 * 2.15.8 MSA, 2.15.5 ERR; DESIGN invariant 5: bad input gets AE/AR with ERR).
 * Proves the exact ACK bytes for AA, AE and AR, with received and default delimiters;
 * sender/receiver swap; echo truncation that never splits a character or an escape; that
 * hdx-made values are escaped; capacity handling; and that every ACK re-parses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ack.h"
#include "proto/hl7.h"

#define T0 INT64_C(1704110400123456) /* 2024-01-01 12:00:00.123456 UTC */
#define TS "20240101120000.1234+0000"

static const char oru[] =
    "MSH|^~\\&|MONITOR|ICU|HDX|HOSP|20240101120000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\r"
    "PID|1||123456^^^HOSP^MR||DOE^JOHN\r"
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F\r";

/* Parses s (len bytes), builds an ACK and compares it with want, byte for byte. */
static void expect_ack(const char *s, size_t len, int want_rc, enum hl7_ack_code code,
                       const char *ack_id, const char *want)
{
    struct hl7_msg m;
    struct hl7_error e;
    char out[2048];

    assert_int_equal(hl7_parse((const uint8_t *)s, len, NULL, &m, &e), want_rc);
    struct hl7_ack_params p = {code, &e, ack_id, T0, NULL};
    int n = hl7_ack_build(&m, &p, out, sizeof out);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(out, want);
    hl7_msg_free(&m);
}

#define EXPECT_ACK(lit, rc, code, id, want) expect_ack(lit, sizeof(lit) - 1, rc, code, id, want)

static void test_aa_golden(void **state)
{
    (void)state;
    EXPECT_ACK(oru, 0, HL7_AA, "ACK0001",
               "MSH|^~\\&|HDX|HOSP|MONITOR|ICU|" TS "||ACK^R01^ACK|ACK0001|P|2.5.1\r"
               "MSA|AA|MSG00001\r");
    /* No trigger: MSH-9 is just "ACK". */
    EXPECT_ACK("MSH|^~\\&|A|B|C|D|2024||ACK|C1|T|2.3\r", 0, HL7_AA, "K1",
               "MSH|^~\\&|C|D|A|B|" TS "||ACK|K1|T|2.3\rMSA|AA|C1\r");
    /* Absent MSH-11/12 stay empty. */
    EXPECT_ACK("MSH|^~\\&|||||||ADT^A08|Z", 0, HL7_AA, "K2",
               "MSH|^~\\&|||||" TS "||ACK^A08^ACK|K2||\rMSA|AA|Z\r");
}

static void test_trigger_echoed_raw(void **state)
{
    struct hl7_msg m, a;
    struct hl7_error e, ae;
    char out[512];

    (void)state;
    /* MSH-9.2 keeps its escaped form; only its first repetition counts. */
    EXPECT_ACK("MSH|^~\\&|A|B|C|D|2024||ADT^\\X41\\01^ADT_A01|C1|P|2.5\r", 0, HL7_AA, "K",
               "MSH|^~\\&|C|D|A|B|" TS "||ACK^\\X41\\01^ACK|K|P|2.5\rMSA|AA|C1\r");
    EXPECT_ACK("MSH|^~\\&|A|B|C|D|2024||ADT~X^Y|C1|P|2.5\r", 0, HL7_AA, "K",
               "MSH|^~\\&|C|D|A|B|" TS "||ACK|K|P|2.5\rMSA|AA|C1\r");
    /* Regression (fuzz_hl7): a trigger that decodes to a non-UTF-8 byte once made the ACK
     * itself invalid UTF-8; the raw echo keeps the ACK parseable. */
    /* Such a trigger is refused (MSH-9 holds coded values only), and the AR still echoes
     * it in its escaped form. */
    static const char msg[] = "MSH|^~\\&|||||||ADT^\\XDA\\|C";
    assert_int_equal(hl7_parse((const uint8_t *)msg, sizeof msg - 1, NULL, &m, &e), -1);
    assert_int_equal(e.code, 102);
    assert_int_equal(e.ack, 'R');
    assert_string_equal(m.trigger, "\xda");
    struct hl7_ack_params p = {HL7_AR, &e, "K", T0, NULL};
    int n = hl7_ack_build(&m, &p, out, sizeof out);
    assert_true(n > 0);
    assert_non_null(strstr(out, "||ACK^\\XDA\\^ACK|K|"));
    for (int i = 0; i < n; i++)
        assert_true((unsigned char)out[i] < 0x80); /* the ACK itself stays 7-bit */
    (void)a;
    (void)ae;
    hl7_msg_free(&m);
}

static void test_ae_golden(void **state)
{
    static const char nul[] = "MSH|^~\\&|LAB|L1|HDX|H1|20240101||ORU^R01|CTRL9|T|2.5.1\r"
                              "OBX|1|NM|X||1\0\r";

    (void)state;
    EXPECT_ACK(nul, -1, HL7_AE, "ACK0002",
               "MSH|^~\\&|HDX|H1|LAB|L1|" TS "||ACK^R01^ACK|ACK0002|T|2.5.1\r"
               "MSA|AE|CTRL9|NUL or MLLP control byte\r"
               "ERR||OBX^1^5|102^NUL or MLLP control byte^HL70357|E||||NUL or MLLP control "
               "byte\r");
    /* Invalid UTF-8 in PID-5. */
    EXPECT_ACK("MSH|^~\\&|A|B|C|D|2024||ADT^A01|X7|P|2.5.1\rPID|1||42||\xc0\xaf\r", -1, HL7_AE, "K",
               "MSH|^~\\&|C|D|A|B|" TS "||ACK^A01^ACK|K|P|2.5.1\r"
               "MSA|AE|X7|invalid UTF-8\r"
               "ERR||PID^1^5|102^invalid UTF-8^HL70357|E||||invalid UTF-8\r");
}

static void test_ar_golden(void **state)
{
    (void)state;
    /* Missing MSH-10: addressed ACK with empty MSA-2. */
    EXPECT_ACK("MSH|^~\\&|LAB|L1|HDX|H1|2024||ADT^A01||P|2.3\r", -1, HL7_AR, "ACK3",
               "MSH|^~\\&|HDX|H1|LAB|L1|" TS "||ACK^A01^ACK|ACK3|P|2.3\r"
               "MSA|AR||MSH-10 message control id missing\r"
               "ERR||MSH^1^10|101^MSH-10 message control id missing^HL70357|E||||MSH-10 "
               "message control id missing\r");
    /* Not HL7 at all: default delimiters, HDX/HDX, empty MSA-2 and ERR-2. */
    EXPECT_ACK("GET / HTTP/1.1\r\n", -1, HL7_AR, "ACK4",
               "MSH|^~\\&|HDX|HDX|||" TS "||ACK|ACK4|P|2.5.1\r"
               "MSA|AR||message does not start with MSH\r"
               "ERR|||100^message does not start with MSH^HL70357|E||||message does not start "
               "with MSH\r");
    /* Bad MSH-2: the sender's delimiters cannot be trusted, so defaults are used. */
    EXPECT_ACK("MSH|^~|A|B|C|D|2024||ADT^A01|1\r", -1, HL7_AR, "ACK5",
               "MSH|^~\\&|HDX|HDX|||" TS "||ACK|ACK5|P|2.5.1\r"
               "MSA|AR||MSH-2 must hold 4 or 5 encoding characters\r"
               "ERR||MSH^1^2|102^MSH-2 must hold 4 or 5 encoding characters^HL70357|E||||MSH-2 "
               "must hold 4 or 5 encoding characters\r");
    /* Bad segment id: no location. */
    EXPECT_ACK("MSH|^~\\&|A|B|C|D|2024||ADT^A01|Q|P|2.5\rpid|1\r", -1, HL7_AR, "K",
               "MSH|^~\\&|C|D|A|B|" TS "||ACK^A01^ACK|K|P|2.5\r"
               "MSA|AR|Q|invalid segment id (segment 2)\r"
               "ERR|||100^invalid segment id (segment 2)^HL70357|E||||invalid segment id "
               "(segment 2)\r");
}

static void test_null_msg(void **state)
{
    char out[512];
    struct hl7_ack_params p = {HL7_AA, NULL, "ACK5", T0, NULL};

    (void)state;
    assert_int_equal(hl7_ack_build(NULL, &p, out, sizeof out),
                     (int)strlen("MSH|^~\\&|HDX|HDX|||" TS "||ACK|ACK5|P|2.5.1\rMSA|AA|\r"));
    assert_string_equal(out, "MSH|^~\\&|HDX|HDX|||" TS "||ACK|ACK5|P|2.5.1\rMSA|AA|\r");
    /* AE without an error object: reported as an internal error (207). */
    p.code = HL7_AE;
    assert_true(hl7_ack_build(NULL, &p, out, sizeof out) > 0);
    assert_string_equal(out, "MSH|^~\\&|HDX|HDX|||" TS "||ACK|ACK5|P|2.5.1\r"
                             "MSA|AE||application internal error\r"
                             "ERR|||207^application internal error^HL70357|E||||application "
                             "internal error\r");
    /* A zeroed (never parsed) message counts as unusable. */
    struct hl7_msg zero;
    memset(&zero, 0, sizeof zero);
    p.code = HL7_AA;
    p.ack_control_id = NULL;
    assert_true(hl7_ack_build(&zero, &p, out, sizeof out) > 0);
    assert_string_equal(out, "MSH|^~\\&|HDX|HDX|||" TS "||ACK||P|2.5.1\rMSA|AA|\r");
}

static void test_custom_delimiters(void **state)
{
    (void)state;
    /* Space as escape character: MSH-2 echoed exactly, spaces in our text escaped. */
    EXPECT_ACK("MSH|^~ &|MY APP|WARD|HDX|H|20240101||ORU^R01|77|P|2.4\r", 0, HL7_AA, "A6",
               "MSH|^~ &|HDX|H|MY APP|WARD|" TS "||ACK^R01^ACK|A6|P|2.4\rMSA|AA|77\r");
    EXPECT_ACK("MSH|^~ &|DEV|WARD|HDX|H|20240101||ORU^R01|77|P|2.4\rZZ|1\r", -1, HL7_AR, "A6",
               "MSH|^~ &|HDX|H|DEV|WARD|" TS "||ACK^R01^ACK|A6|P|2.4\r"
               "MSA|AR|77|invalid E segment E id E (segment E 2)\r"
               "ERR|||100^invalid E segment E id E (segment E 2)^HL70357|E||||invalid E segment E "
               "id E (segment E 2)\r");
    /* '.' as component separator: the timestamp's '.' must be escaped. */
    EXPECT_ACK("MSH|.~\\&|A|B|C|D|2024||ORU.R01|9|P|2\r", 0, HL7_AA, "A7",
               "MSH|.~\\&|C|D|A|B|20240101120000\\S\\1234+0000||ACK.R01.ACK|A7|P|2\r"
               "MSA|AA|9\r");
    /* '+' as repetition separator. */
    EXPECT_ACK("MSH|^+\\&|A|B|C|D|2024||ORU^R01|9|P|2\r", 0, HL7_AA, "A8",
               "MSH|^+\\&|C|D|A|B|20240101120000.1234\\R\\0000||ACK^R01^ACK|A8|P|2\r"
               "MSA|AA|9\r");
    /* Every delimiter replaced, plus a v2.7 truncation character; our ACK id is escaped
     * with the sender's characters ('#' -> !F!, '@' -> !P!) while '|' is plain data. */
    EXPECT_ACK("MSH#$*!%@#S#SF#R#RF#2024##ORU$R01#C!F!1#P$T#2.7\r", 0, HL7_AA, "A#9@|",
               "MSH#$*!%@#R#RF#S#SF#" TS "##ACK$R01$ACK#A!F!9!P!|#P$T#2.7\r"
               "MSA#AA#C!F!1\r");
    EXPECT_ACK("MSH#$*!%@#S#SF#R#RF#2024##ORU$R01#C!F!1#P$T#2.7\rOBX#1#\x1c\r", -1, HL7_AE, "K",
               "MSH#$*!%@#R#RF#S#SF#" TS "##ACK$R01$ACK#K#P$T#2.7\r"
               "MSA#AE#C!F!1#NUL or MLLP control byte\r"
               "ERR##OBX$1$2#102$NUL or MLLP control byte$HL70357#E####NUL or MLLP control "
               "byte\r");
}

static void test_escaping_of_hdx_values(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;
    char out[1024];

    (void)state;
    assert_int_equal(hl7_parse((const uint8_t *)oru, sizeof oru - 1, NULL, &m, &e), 0);
    struct hl7_error mine = {HL7_ERR_TABLE_VALUE, 'E', "OBX", 1, 3, "bad|code^x&y~z\\w"};
    struct hl7_ack_params p = {HL7_AE, &mine, "ID|1", T0, NULL};
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    assert_string_equal(out, "MSH|^~\\&|HDX|HOSP|MONITOR|ICU|" TS "||ACK^R01^ACK|ID\\F\\1|P|2.5.1\r"
                             "MSA|AE|MSG00001|bad\\F\\code\\S\\x\\T\\y\\R\\z\\E\\w\r"
                             "ERR||OBX^1^3|103^bad\\F\\code\\S\\x\\T\\y\\R\\z\\E\\w^HL70357|E||||"
                             "bad\\F\\code\\S\\x\\T\\y\\R\\z\\E\\w\r");
    /* Location without a field; invalid segment names are not echoed. */
    struct hl7_error loc = {HL7_ERR_SEGMENT_SEQUENCE, 'R', "PID", 2, 0, "x"};
    p.err = &loc;
    p.code = HL7_AR;
    p.ack_control_id = "K";
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    assert_non_null(strstr(out, "\rERR||PID^2|100^x^HL70357|E||||x\r"));
    struct hl7_error badseg = {HL7_ERR_SEGMENT_SEQUENCE, 'R', "p|", 2, 4, "x"};
    p.err = &badseg;
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    assert_non_null(strstr(out, "\rERR|||100^x^HL70357|E||||x\r"));
    /* A text filling its whole array without a terminator is read bounded. */
    struct hl7_error full;
    memset(&full, 'a', sizeof full);
    full.code = 207;
    p.err = &full;
    int n = hl7_ack_build(&m, &p, out, sizeof out);
    assert_true(n > 0);
    assert_non_null(strstr(out, "MSA|AR|MSG00001|aaaa"));
    hl7_msg_free(&m);
}

/* Builds "MSH|^~\&|<msh3>|F|||2024||ADT^A01|<ctl>", parses it and returns the ACK's MSH-5
 * (the echo of MSH-3) into got. */
static void echo_of(const char *msh3, char *got, size_t cap)
{
    char msg[1024], out[2048];
    struct hl7_msg m;
    struct hl7_error e;

    snprintf(msg, sizeof msg, "MSH|^~\\&|%s|F|||2024||ADT^A01|C", msh3);
    (void)hl7_parse((const uint8_t *)msg, strlen(msg), NULL, &m, &e);
    assert_int_equal(m.nsegs > 0, 1);
    struct hl7_ack_params p = {HL7_AA, &e, "K", T0, NULL};
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    const char *start = out + strlen("MSH|^~\\&|||");
    const char *end = strchr(start, '|');
    assert_non_null(end);
    assert_true((size_t)(end - start) < cap);
    memcpy(got, start, (size_t)(end - start));
    got[end - start] = '\0';
    hl7_msg_free(&m);
}

static void test_echo_truncation(void **state)
{
    char in[512], want[512], got[512];

    (void)state;
    memset(in, 'A', 250);
    in[250] = '\0';
    echo_of(in, got, sizeof got);
    assert_int_equal(strlen(got), 199);
    assert_memory_equal(got, in, 199);
    /* Exactly 199: unchanged. */
    in[199] = '\0';
    echo_of(in, got, sizeof got);
    assert_string_equal(got, in);
    /* A 2-byte character straddling byte 199 is dropped whole. */
    memset(in, 'A', 198);
    snprintf(in + 198, sizeof in - 198,
             "\xc3\xa9"
             "BBBB");
    echo_of(in, got, sizeof got);
    assert_int_equal(strlen(got), 198);
    /* ... a 4-byte one too. */
    memset(in, 'A', 197);
    snprintf(in + 197, sizeof in - 197, "\xf0\x9f\x98\x80Z");
    echo_of(in, got, sizeof got);
    assert_int_equal(strlen(got), 197);
    /* An escape cut in half is dropped; a complete one at the edge is kept. */
    memset(in, 'A', 197);
    snprintf(in + 197, sizeof in - 197, "\\F\\BBB");
    echo_of(in, got, sizeof got);
    assert_int_equal(strlen(got), 197);
    memset(in, 'A', 196);
    snprintf(in + 196, sizeof in - 196, "\\F\\BBB");
    echo_of(in, got, sizeof got);
    memcpy(want, in, 199);
    want[199] = '\0';
    assert_string_equal(got, want);
    /* Control bytes end the echo, so they cannot reach the ACK. */
    static const char ctl[] = "MSH|^~\\&|AB\0CD|F|||2024||ADT^A01|C\r";
    struct hl7_msg m;
    struct hl7_error e;
    char out[512];
    assert_int_equal(hl7_parse((const uint8_t *)ctl, sizeof ctl - 1, NULL, &m, &e), -1);
    struct hl7_ack_params p = {HL7_AE, &e, "K", T0, NULL};
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    assert_string_equal(out, "MSH|^~\\&|||AB|F|" TS "||ACK^A01^ACK|K||\r"
                             "MSA|AE|C|NUL or MLLP control byte\r"
                             "ERR||MSH^1^3|102^NUL or MLLP control byte^HL70357|E||||NUL or MLLP "
                             "control byte\r");
}

static void test_control_id_truncated(void **state)
{
    char msg[512], out[1024], want[256];
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    memset(want, '9', 250);
    want[250] = '\0';
    snprintf(msg, sizeof msg, "MSH|^~\\&|||||||ADT^A01|%s|P|2.5\r", want);
    assert_int_equal(hl7_parse((const uint8_t *)msg, strlen(msg), NULL, &m, &e), -1);
    assert_int_equal(e.code, 102); /* too long for control_id[200] */
    struct hl7_ack_params p = {HL7_AE, &e, "K", T0, NULL};
    assert_true(hl7_ack_build(&m, &p, out, sizeof out) > 0);
    want[199] = '\0';
    char *msa = strstr(out, "\rMSA|AE|");
    assert_non_null(msa);
    assert_memory_equal(msa + 8, want, 199);
    assert_int_equal(msa[8 + 199], '|');
}

static void test_timestamps(void **state)
{
    static const struct {
        int64_t us;
        const char *ts;
    } cases[] = {
        {0, "19700101000000.0000+0000"},
        {-5, "19700101000000.0000+0000"},
        {INT64_MIN, "19700101000000.0000+0000"},
        {99, "19700101000000.0000+0000"},
        {100, "19700101000000.0001+0000"},
        {INT64_C(951782400000000), "20000229000000.0000+0000"},
        {INT64_C(1709251199999999), "20240229235959.9999+0000"},
        {INT64_C(2147483648000000), "20380119031408.0000+0000"},
        {INT64_C(4102444800000000), "21000101000000.0000+0000"},
        {INT64_C(253402300799999999), "99991231235959.9999+0000"},
        {INT64_MAX, "99991231235959.9999+0000"},
    };
    char out[256], want[256];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hl7_ack_params p = {HL7_AA, NULL, "K", cases[i].us, NULL};
        assert_true(hl7_ack_build(NULL, &p, out, sizeof out) > 0);
        snprintf(want, sizeof want, "MSH|^~\\&|HDX|HDX|||%s||ACK|K|P|2.5.1\rMSA|AA|\r",
                 cases[i].ts);
        assert_string_equal(out, want);
    }
}

static void test_extra_segments(void **state)
{
    char out[512];
    struct hl7_ack_params p = {HL7_AA, NULL, "K", T0, "ZRC|r1|abc\r"};
    static const char base[] = "MSH|^~\\&|HDX|HDX|||" TS "||ACK|K|P|2.5.1\rMSA|AA|\r";

    (void)state;
    assert_int_equal(hl7_ack_build(NULL, &p, out, sizeof out), (int)strlen(base) + 11);
    assert_string_equal(out, "MSH|^~\\&|HDX|HDX|||" TS "||ACK|K|P|2.5.1\rMSA|AA|\rZRC|r1|abc\r");
    p.extra = "ZRC|r1\rZRD|2"; /* missing final CR is added */
    assert_true(hl7_ack_build(NULL, &p, out, sizeof out) > 0);
    assert_string_equal(out, "MSH|^~\\&|HDX|HDX|||" TS "||ACK|K|P|2.5.1\rMSA|AA|\rZRC|r1\rZRD|2\r");
    p.extra = "";
    assert_int_equal(hl7_ack_build(NULL, &p, out, sizeof out), (int)strlen(base));
}

static void test_capacity(void **state)
{
    static const char nul[] = "MSH|^~\\&|LAB|L1|HDX|H1|20240101||ORU^R01|CTRL9|T|2.5.1\r"
                              "OBX|1|NM|X||1\0\r";
    struct hl7_msg m;
    struct hl7_error e;
    char full[1024];
    char *out = malloc(1024);

    (void)state;
    assert_non_null(out);
    assert_int_equal(hl7_parse((const uint8_t *)nul, sizeof nul - 1, NULL, &m, &e), -1);
    struct hl7_ack_params p = {HL7_AE, &e, "ACK0002", T0, "ZRC|1\r"};
    int n = hl7_ack_build(&m, &p, full, sizeof full);
    assert_true(n > 100);
    /* Every capacity short of n + 1 fails cleanly with an empty string. */
    for (size_t cap = 1; cap <= (size_t)n; cap++) {
        memset(out, 'x', 1024);
        assert_int_equal(hl7_ack_build(&m, &p, out, cap), -1);
        assert_int_equal(out[0], '\0');
        assert_int_equal(out[cap], 'x'); /* nothing written past cap */
    }
    assert_int_equal(hl7_ack_build(&m, &p, out, (size_t)n + 1), n);
    assert_string_equal(out, full);
    assert_int_equal(hl7_ack_build(&m, &p, out, 0), -1);
    assert_int_equal(hl7_ack_build(&m, &p, NULL, 100), -1);
    assert_int_equal(hl7_ack_build(&m, NULL, out, 100), -1);
    p.code = (enum hl7_ack_code)7;
    assert_int_equal(hl7_ack_build(&m, &p, out, 100), -1);
    free(out);
}

static void test_ack_reparses(void **state)
{
    struct hl7_msg m, a;
    struct hl7_error e, ae;
    char out[1024];
    struct hl7_view v;

    (void)state;
    assert_int_equal(hl7_parse((const uint8_t *)oru, sizeof oru - 1, NULL, &m, &e), 0);
    struct hl7_ack_params p = {HL7_AA, NULL, "ACK0001", T0, NULL};
    int n = hl7_ack_build(&m, &p, out, sizeof out);
    assert_true(n > 0);
    assert_int_equal(hl7_parse((const uint8_t *)out, (size_t)n, NULL, &a, &ae), 0);
    assert_string_equal(a.msg_type, "ACK^R01");
    assert_string_equal(a.control_id, "ACK0001");
    assert_string_equal(a.version, "2.5.1");
    assert_int_equal(hl7_get(&a, "MSA", 1, 2, 1, 0, 0, &v), 0);
    assert_int_equal(v.len, 8);
    assert_memory_equal(out + v.off, "MSG00001", 8);
    assert_int_equal(hl7_get(&a, "MSH", 1, 7, 1, 0, 0, &v), 0);
    assert_memory_equal(out + v.off, TS, v.len);
    hl7_msg_free(&a);
    hl7_msg_free(&m);
}

/* STYLE 6.8: ACKs for damaged versions of a golden message are always well formed. */
static void test_bitflip_truncation(void **state)
{
    uint8_t b[sizeof oru];
    char out[2048];
    struct hl7_msg m, a;
    struct hl7_error e, ae;

    (void)state;
    for (size_t i = 0; i < (sizeof oru - 1) * 9; i++) {
        size_t len = sizeof oru - 1;
        memcpy(b, oru, len);
        if (i < len * 8)
            b[i / 8] ^= (uint8_t)(1u << (i % 8));
        else
            len = i - len * 8; /* prefixes */
        int rc = hl7_parse(b, len, NULL, &m, &e);
        struct hl7_ack_params p = {rc == 0        ? HL7_AA
                                   : e.ack == 'R' ? HL7_AR
                                                  : HL7_AE,
                                   &e, "K", T0, NULL};
        int n = hl7_ack_build(&m, &p, out, sizeof out);
        assert_true(n > 0);
        /* Every ACK we send is itself a valid message. The only excuse is an echoed
         * header field that carried the very bytes the sender was rejected for. */
        int arc = hl7_parse((const uint8_t *)out, (size_t)n, NULL, &a, &ae);
        if (rc == 0) {
            assert_int_equal(arc, 0);
            assert_int_equal(a.nsegs, 2);
        } else if (arc != 0) {
            assert_int_equal(ae.code, 102);
            assert_int_equal(e.code, 102);
        }
        hl7_msg_free(&a);
        hl7_msg_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aa_golden),
        cmocka_unit_test(test_trigger_echoed_raw),
        cmocka_unit_test(test_ae_golden),
        cmocka_unit_test(test_ar_golden),
        cmocka_unit_test(test_null_msg),
        cmocka_unit_test(test_custom_delimiters),
        cmocka_unit_test(test_escaping_of_hdx_values),
        cmocka_unit_test(test_echo_truncation),
        cmocka_unit_test(test_control_id_truncated),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_extra_segments),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_ack_reparses),
        cmocka_unit_test(test_bitflip_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
