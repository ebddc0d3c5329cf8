/* test_match: route source filters (route/match.h, issue 12).
 * Proves: every predicate kind; and/or/not precedence and parentheses; any occurrence vs
 * occurrence [N], any repetition, components and sub-components; values compared with the
 * unescaped field byte-exactly (\T\ in the field is & in the value, a decoded NUL never
 * matches); quoted values; absent and empty fields; "!=" is "not ="; each limit and syntax
 * error refused with its column; index_only and hdx_match_eval_index agree with eval; the
 * canonical text (hdx_match_describe) compiles back to itself (checked on every expression
 * compiled here); the field splitting agrees with hl7_get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/hl7.h"
#include "route/match.h"

static const char oru[] =
    "MSH|^~\\&|MON|ICU|HDX|HOSP|20240101120000||ORU^R01^ORU_R01|MSG1|P|2.5.1\r"
    "PID|1||PAT-7^^^HOSP^MR~OTHER-9^^^X^PI||DOE^JANE\r"
    "PV1|1|I|ICU^12^A\r"
    "OBR|1|||8867-4^say \"hi\"^LN\r"
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min\r"
    "OBX|2|ST|NOTE^Note^L||a\\T\\b~second rep|x\\F\\y\r"
    "OBX|3|CE|X^Y^Z&sub1&sub2||~~last\r"
    "ZZZ||ICU\\X00\\junk|bad\\Tesc\r";

static const char ack[] = "MSH|^~\\&|HDX|HOSP|MON|ICU|20240101120000||ACK|A1|P|2.5.1\r"
                          "MSA|AA|MSG1\r";

/* Other delimiters: component $, repetition *, escape \, sub-component #. */
static const char odd[] = "MSH|$*\\#|LAB|X|HDX|H|20240101||ORU$R01|M2|P|2.5.1\r"
                          "OBX|1|ST|A$B#C$D*E$F#G||v1*v2$w#x**\r"
                          "OBX|2||||a\\S\\b\r";

static struct hl7_msg m_oru, m_ack, m_odd;

static int setup(void **state)
{
    struct hl7_error e;
    if (hl7_parse((const uint8_t *)oru, strlen(oru), NULL, &m_oru, &e) != 0) return -1;
    if (hl7_parse((const uint8_t *)ack, strlen(ack), NULL, &m_ack, &e) != 0) return -1;
    if (hl7_parse((const uint8_t *)odd, strlen(odd), NULL, &m_odd, &e) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    hl7_msg_free(&m_oru);
    hl7_msg_free(&m_ack);
    hl7_msg_free(&m_odd);
    return 0;
}

/* Compiles (must succeed) and checks the canonical text compiles back to itself. */
static struct hdx_match *compile_ok(const char *text)
{
    struct hdx_match *m = NULL, *m2 = NULL;
    char err[200], d1[HDX_MATCH_TEXT_MAX + 1], d2[HDX_MATCH_TEXT_MAX + 1];
    int rc = hdx_match_compile(text, &m, err, sizeof(err));
    if (rc != HDX_OK) fail_msg("'%s' refused: %s", text, err);
    int n = hdx_match_describe(m, d1, sizeof(d1));
    assert_true(n > 0 && (size_t)n == strlen(d1));
    if (hdx_match_compile(d1, &m2, err, sizeof(err)) != HDX_OK)
        fail_msg("canonical '%s' of '%s' refused: %s", d1, text, err);
    assert_int_equal(hdx_match_describe(m2, d2, sizeof(d2)), n);
    assert_string_equal(d1, d2);
    assert_int_equal(hdx_match_index_only(m), hdx_match_index_only(m2));
    hdx_match_free(m2);
    return m;
}

static int ev_on(const char *text, const struct hl7_msg *msg, const char *sender)
{
    struct hdx_match *m = compile_ok(text);
    int r = hdx_match_eval(m, msg, sender);
    assert_true(r == 0 || r == 1);
    if (hdx_match_index_only(m)) /* the index gives the same answer */
        assert_int_equal(hdx_match_eval_index(m, msg->msg_type, sender), r);
    else
        assert_int_equal(hdx_match_eval_index(m, msg->msg_type, sender), -1);
    hdx_match_free(m);
    return r;
}

static int ev(const char *text)
{
    return ev_on(text, &m_oru, "mon-1");
}

static void refused(const char *text, const char *want_prefix)
{
    struct hdx_match *m = (struct hdx_match *)&m;
    char err[200];
    assert_int_equal(hdx_match_compile(text, &m, err, sizeof(err)), HDX_E_INVAL);
    assert_null(m);
    if (strncmp(err, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("'%.60s': got '%s', want '%s...'", text, err, want_prefix);
}

static void canon(const char *text, const char *want)
{
    struct hdx_match *m = compile_ok(text);
    char d[HDX_MATCH_TEXT_MAX + 1];
    assert_int_equal(hdx_match_describe(m, d, sizeof(d)), (int)strlen(want));
    assert_string_equal(d, want);
    hdx_match_free(m);
}

static void test_everything_type_trigger(void **state)
{
    assert_true(ev("*"));
    assert_true(ev("all"));
    assert_true(ev("ALL"));
    assert_true(ev("type:ORU^R01"));
    assert_true(ev("TYPE:ORU^R01"));
    assert_true(ev("type:ORU"));
    assert_true(ev("type:ORU^*"));
    assert_true(ev("type:*^R01"));
    assert_true(ev("type:*"));
    assert_false(ev("type:ADT"));
    assert_false(ev("type:ORU^R02"));
    assert_false(ev("type:*^R02"));
    assert_false(ev("type:oru")); /* values are case-sensitive */
    assert_true(ev("trigger:R01"));
    assert_false(ev("trigger:R02"));
    /* a message without a trigger */
    assert_true(ev_on("type:ACK", &m_ack, ""));
    assert_true(ev_on("type:ACK^*", &m_ack, ""));
    assert_false(ev_on("type:*^R01", &m_ack, ""));
    assert_false(ev_on("trigger:R01", &m_ack, ""));
}

/* fuzz_match finding: with component separator '(' MSH-9.1 is "ADT^A01" and MSH-9.2 empty;
 * the indexed type reads "ADT^A01", and eval must answer as the index does. */
static void test_regress_type_caret_in_code(void **state)
{
    static const char t[] = "MSH|(~\\&|R|H|HDX|H|20240101||ADT^A01|A9|P|2.5\rPV1|1|I\r";
    struct hl7_msg msg;
    struct hl7_error e;
    assert_int_equal(hl7_parse((const uint8_t *)t, strlen(t), NULL, &msg, &e), 0);
    assert_string_equal(msg.msg_type, "ADT^A01");
    assert_string_equal(msg.trigger, "");
    assert_true(ev_on("type:*^A01", &msg, ""));
    assert_true(ev_on("trigger:A01", &msg, ""));
    assert_true(ev_on("type:ADT^A01 and type:ADT", &msg, ""));
    assert_false(ev_on("type:*^R01 or Trigger:R01", &msg, ""));
    hl7_msg_free(&msg);
}

static void test_sender_patient(void **state)
{
    assert_true(ev_on("sender:mon-1", &m_oru, "mon-1"));
    assert_false(ev_on("sender:mon-1", &m_oru, "mon-12"));
    assert_false(ev_on("sender:mon-12", &m_oru, "mon-1"));
    assert_true(ev_on("sender:mon-*", &m_oru, "mon-12"));
    assert_true(ev_on("sender:mon-*", &m_oru, "mon-"));
    assert_false(ev_on("sender:mon-*", &m_oru, "lab"));
    assert_false(ev_on("sender:mon-*", &m_oru, ""));
    assert_true(ev_on("sender:*", &m_oru, ""));
    assert_false(ev_on("sender:x", &m_oru, ""));
    assert_false(ev_on("sender:x", &m_oru, NULL));
    assert_true(ev_on("sender:\"ward 3*\"", &m_oru, "ward 3 bed 2"));
    assert_true(ev("patient:PAT-7"));
    assert_false(ev("patient:OTHER-9")); /* first repetition only */
    assert_false(ev("patient:PAT"));
    assert_false(ev_on("patient:PAT-7", &m_ack, "")); /* no PID */
}

static void test_fields(void **state)
{
    assert_true(ev("PV1-3.1 = ICU"));
    assert_true(ev("PV1-3.1=ICU"));
    assert_false(ev("PV1-3.1 = icu"));
    assert_false(ev("PV1-3 = ICU"));         /* the whole repetition */
    assert_true(ev("PV1-3 = \"ICU^12^A\"")); /* delimiters inside compare as sent */
    assert_true(ev("PV1-3.2 = 12"));
    assert_true(ev("MSH-3 = MON"));
    assert_true(ev("MSH-9.2 = R01"));
    assert_true(ev("MSH-9.3 = ORU_R01"));
    assert_true(ev("PV1-3.1 in (CCU, ICU)"));
    assert_true(ev("PV1-3.1 IN(ICU)"));
    assert_false(ev("PV1-3.1 in (CCU, NICU)"));
    assert_true(ev("PV1-3.2 exists"));
    assert_false(ev("PV1-3.4 exists"));
    assert_true(ev("PV1-1 exists"));
    assert_false(ev("PV1-9 exists"));
    assert_false(ev("ZZZ-1 exists")); /* present but empty */
    assert_false(ev("ABC-1 exists")); /* no such segment */
    /* absent or empty: = and in false, != true */
    assert_false(ev("ABC-1 = x"));
    assert_false(ev("ABC-1 in (x)"));
    assert_false(ev("ZZZ-1 = x"));
    assert_false(ev("PV1-9 = x"));
    assert_true(ev("PV1-9 != x"));
    assert_true(ev("ZZZ-1 != x"));
    assert_false(ev("PV1-3.1 != ICU"));
    assert_true(ev("PV1-3.1 != CCU"));
}

static void test_repeats_components(void **state)
{
    assert_true(ev("OBX-3.1 = NOTE")); /* any occurrence */
    assert_false(ev("OBX[1]-3.1 = NOTE"));
    assert_true(ev("OBX[2]-3.1 = NOTE"));
    assert_false(ev("OBX[3]-3.1 = NOTE"));
    assert_false(ev("OBX[4]-1 exists"));
    assert_true(ev("OBX[3]-1 exists"));
    assert_false(ev("OBX-3.1 != NOTE")); /* not (some OBX has NOTE) */
    assert_true(ev("OBX[1]-3.1 != NOTE"));
    assert_true(ev("OBX-5 = \"second rep\"")); /* any repetition */
    assert_true(ev("OBX[2]-5 = \"second rep\""));
    assert_true(ev("OBX[3]-5 = last")); /* after two empty repetitions */
    assert_true(ev("OBX[3]-5 exists"));
    assert_true(ev("PID-3.1 = OTHER-9"));
    assert_true(ev("PID-3.1 in (NONE, OTHER-9)"));
    assert_true(ev("PID-3.5 = PI"));
    assert_true(ev("OBX-3.3 = \"Z&sub1&sub2\""));
    assert_true(ev("OBX-3.3.1 = Z"));
    assert_true(ev("OBX-3.3.2 = sub1"));
    assert_true(ev("OBX-3.3.3 = sub2"));
    assert_false(ev("OBX-3.3.4 exists"));
    assert_true(ev("OBX-3.1.1 = X")); /* sub-component 1 of a component without any */
    assert_false(ev("OBX-3.1.2 exists"));
    /* other delimiters */
    assert_true(ev_on("OBX-3.1 = A", &m_odd, ""));
    assert_true(ev_on("OBX-3.2.2 = C", &m_odd, ""));
    assert_true(ev_on("OBX-3.1 = E", &m_odd, "")); /* second repetition */
    assert_true(ev_on("OBX-3.2 = \"F#G\"", &m_odd, ""));
    assert_true(ev_on("OBX-5.2.2 = x", &m_odd, ""));
    assert_true(ev_on("OBX-5 = a$b", &m_odd, "")); /* \S\ is this message's $ */
    assert_false(ev_on("OBX-3.1 = \"A$B#C\"", &m_odd, ""));
}

static void test_escapes_quotes(void **state)
{
    assert_true(ev("OBX-5 = a&b"));      /* \T\ in the field */
    assert_false(ev("OBX-5 = a\\T\\b")); /* the escaped form is not the value */
    assert_true(ev("OBX-6 = x|y"));      /* \F\ */
    assert_true(ev("OBX-3.2 = \"Heart rate\""));
    assert_false(ev("OBX-3.2 = Heart"));
    assert_true(ev("OBR-4.2 = \"say \\\"hi\\\"\""));
    assert_false(ev("ZZZ-2 = ICU")); /* decodes to ICU NUL junk: byte-exact */
    assert_false(ev("ZZZ-2 = \"ICU\""));
    assert_true(ev("ZZZ-2 exists"));
    assert_false(ev("ZZZ-3 = bad\\Tesc")); /* badly escaped: equals nothing */
    assert_false(ev("ZZZ-3 = bad"));
    assert_true(ev("ZZZ-3 exists"));
    assert_true(ev("ZZZ-3 != bad"));
}

static void test_logic(void **state)
{
    assert_true(ev("type:ADT and trigger:R01 or *")); /* (F and T) or T */
    assert_false(ev("type:ADT and (trigger:R01 or *)"));
    assert_true(ev("type:ORU or type:ADT and trigger:X")); /* ORU or (ADT and X) */
    assert_false(ev("(type:ORU or type:ADT) and trigger:X"));
    assert_true(ev("not type:ADT"));
    assert_false(ev("not type:ADT and type:ADT")); /* (not ADT) and ADT */
    assert_false(ev("not (type:ADT or trigger:R01)"));
    assert_true(ev("not (type:ADT and trigger:R01)"));
    assert_true(ev("NOT NOT *"));
    assert_false(ev("not not not *"));
    assert_true(ev("((((*))))"));
    assert_true(ev("type:ORU And PV1-3.1 = ICU aNd not PV1-3.1 = CCU"));
    assert_true(ev("type:ADT or type:ACK or PV1-3.1 = ICU"));
    assert_false(ev("type:ADT or type:ACK or PV1-3.1 = CCU"));
    assert_false(ev("* and * and * and not *"));
    assert_true(ev("not * or * and *"));
    assert_true(ev("(type:ORU)and(PV1-3.1=ICU)"));
    assert_true(ev("\ttype:ORU\r\nand\n*  "));
    assert_true(ev("PV1-3.1 = ICU and(not PV1-3.1 = CCU)"));
    assert_true(ev("NOT-3 exists or *")); /* NOT-3 is a field of a segment named NOT */
}

static void test_refusals(void **state)
{
    char big[2 * HDX_MATCH_TEXT_MAX];
    refused("", "column 1: empty expression");
    refused("   ", "column 4: empty expression");
    refused(NULL, "column 1: empty expression");
    /* text limit */
    memset(big, 0, sizeof(big));
    memcpy(big, "PV1-3 = ", 8);
    memset(big + 8, 'x', 4088);
    assert_int_equal(strlen(big), HDX_MATCH_TEXT_MAX); /* 4096: value too long, not text */
    refused(big, "column 9: value longer than 199 bytes");
    big[4096] = 'x';
    refused(big, "column 4097: expression longer than 4096 bytes");
    /* 64 predicates, not 65 */
    big[0] = 0;
    for (int i = 0; i < 64; i++)
        strcat(big, i ? " or *" : "*");
    hdx_match_free(compile_ok(big));
    strcat(big, " or *");
    refused(big, "column 321: more than 64 predicates");
    /* nesting 16, not 17: not and ( alike */
    big[0] = 0;
    for (int i = 0; i < 16; i++)
        strcat(big, "not ");
    strcat(big, "*");
    hdx_match_free(compile_ok(big));
    memmove(big + 4, big, strlen(big) + 1);
    memcpy(big, "not ", 4);
    refused(big, "column 65: nesting deeper than 16");
    memset(big, 0, sizeof(big));
    memset(big, '(', 16);
    strcat(big, "*");
    memset(big + 17, ')', 16);
    hdx_match_free(compile_ok(big));
    memmove(big + 1, big, strlen(big) + 1);
    big[0] = '(';
    strcat(big, ")");
    refused(big, "column 17: nesting deeper than 16");
    hdx_match_free(compile_ok("not (not (not (not (not (not (not (not *)))))))"));
    hdx_match_free(compile_ok("not (not (not (not (not (not (not (not (*))))))))"));
    refused("not (not (not (not (not (not (not (not (not *))))))))",
            "column 41: nesting deeper than 16");
    /* in list: 256 values, not 257 */
    strcpy(big, "OBX-5 in (v");
    for (int i = 1; i < 256; i++)
        strcat(big, ",v");
    strcat(big, ")");
    hdx_match_free(compile_ok(big));
    big[strlen(big) - 1] = 0;
    strcat(big, ",w)");
    refused(big, "column 523: more than 256 values in an 'in' list");
    /* a value: 199 bytes, not 200, bare or quoted */
    memset(big, 0, sizeof(big));
    memcpy(big, "PV1-3 = ", 8);
    memset(big + 8, 'v', 199);
    hdx_match_free(compile_ok(big));
    big[8 + 199] = 'v';
    refused(big, "column 9: value longer than 199 bytes");
    memset(big, 0, sizeof(big));
    memcpy(big, "sender:\"", 8);
    memset(big + 8, ' ', 200);
    big[208] = '"';
    refused(big, "column 8: value longer than 199 bytes");
    refused("patient:\"\"", "column 9: empty value");
    refused("PV1-3 = \"\"", "column 9: empty value");
    /* numbers 1-999 */
    hdx_match_free(compile_ok("ZZZ[999]-999.999.999 exists"));
    refused("ZZZ-1000 exists", "column 5: numbers are 1-999");
    refused("ZZZ[1000]-1 exists", "column 5: numbers are 1-999");
    refused("ZZZ-1.1000 exists", "column 7: numbers are 1-999");
    refused("ZZZ-1.1.1000 exists", "column 9: numbers are 1-999");
    refused("ZZZ-0 exists", "column 5: numbers are 1-999");
    refused("ZZZ-01 exists", "column 5: numbers are 1-999");
    refused("ZZZ[0]-1 exists", "column 5: numbers are 1-999");
    refused("ZZZ-x exists", "column 5: expected a number");
    refused("ZZZ[2-1 exists", "column 6: expected ']'");
    refused("ZZZ[2]1 exists", "column 7: expected '-'");
    /* MSH-1, MSH-2 */
    refused("MSH-1 = |", "column 1: MSH-1 and MSH-2");
    refused("MSH-2 exists", "column 1: MSH-1 and MSH-2");
    refused("MSH[1]-2.1 exists", "column 1: MSH-1 and MSH-2");
    refused("pv1-3 exists", "column 1: a segment id is three upper-case");
    /* syntax */
    refused("* *", "column 3: unexpected '*'");
    refused("type:ORU )", "column 10: unexpected ')'");
    refused("type:ORU PV1-3 exists", "column 10: unexpected 'PV1-3'");
    refused("foo", "column 1: unknown keyword 'foo'");
    refused("* or typ:ORU", "column 6: unknown keyword 'typ:'");
    refused("exists", "column 1: unknown keyword 'exists'");
    refused("and *", "column 1: expected a predicate before 'and'");
    refused("* and or *", "column 7: expected a predicate before 'or'");
    refused("* and", "column 6: expected a predicate at the end");
    refused("not", "column 4: expected a predicate at the end");
    refused("not ", "column 5: expected a predicate at the end");
    refused(")", "column 1: expected a predicate, not ')'");
    refused("()", "column 2: expected a predicate, not ')'");
    refused("(*", "column 3: expected ')' to close the '(' at column 1");
    refused("(* or (*)", "column 10: expected ')' to close the '(' at column 1");
    refused("PV1-3", "column 6: expected '=', '!=', 'in' or 'exists' after the field PV1-3");
    refused("PV1-3 is x", "column 7: expected '='");
    refused("PV1-3 =", "column 8: expected a value");
    refused("PV1-3 = (x)", "column 9: expected a value");
    refused("PV1-3 = \"abc", "column 9: unterminated quoted value");
    refused("PV1-3 = \"a\\x\"", "column 11: in a quoted value only");
    refused("PV1-3 in ()", "column 11: expected a value");
    refused("PV1-3 in (a b)", "column 13: expected ',' or ')'");
    refused("PV1-3 in (a,)", "column 13: expected a value");
    refused("PV1-3 in a", "column 10: expected '(' after 'in'");
    refused("type:", "column 6: expected a value right after ':'");
    refused("type: ORU", "column 6: expected a value right after ':'");
    refused("type:ORU^R01^X", "column 6: a type is MSG or MSG^TRG");
    refused("type:ORU^", "column 6: a trigger is");
    refused("type:O.R", "column 6: a message code is");
    refused("trigger:*", "column 9: a trigger is");
    refused("* and\x01*", "column 6: control byte 0x01");
    refused("PV1-3 = \"a\x7f\"", "column 11: control byte 0x7f");
    /* the canonical form is held to the text limit too: 64 "ZZZ-1=v..." of 4092 bytes grow
     * by two spaces each */
    memset(big, 0, sizeof(big));
    for (size_t i = 0, k = 0; i < 64; i++, k += 54) {
        k += (size_t)sprintf(big + k, "%s", i ? " or ZZZ-1=" : "ZZZ-1=");
        memset(big + k, 'v', 54);
    }
    assert_int_equal(strlen(big), 4092);
    refused(big, "column 1: canonical form longer than 4096 bytes");
    /* no err buffer at all is fine */
    struct hdx_match *m = NULL;
    assert_int_equal(hdx_match_compile("foo", &m, NULL, 0), HDX_E_INVAL);
    assert_null(m);
}

static void test_index_only(void **state)
{
    static const char *const yes[] = {"*", "type:ORU", "not type:ADT and sender:x*",
                                      "trigger:R01 or (type:*^R02 and not sender:a)"};
    static const char *const no[] = {"patient:PAT-7", "type:ORU and PV1-3 exists",
                                     "not (sender:x or MSH-3 = MON)", "OBX-5 != x"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        struct hdx_match *m = compile_ok(yes[i]);
        assert_int_equal(hdx_match_index_only(m), 1);
        hdx_match_free(m);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        struct hdx_match *m = compile_ok(no[i]);
        assert_int_equal(hdx_match_index_only(m), 0);
        assert_int_equal(hdx_match_eval_index(m, "ORU^R01", "x"), -1);
        hdx_match_free(m);
    }
    struct hdx_match *m = compile_ok("type:*^R01 and sender:ward-*");
    assert_int_equal(hdx_match_eval_index(m, "ORU^R01", "ward-1"), 1);
    assert_int_equal(hdx_match_eval_index(m, "ADT^R01", "ward-1"), 1);
    assert_int_equal(hdx_match_eval_index(m, "ACK", "ward-1"), 0);
    assert_int_equal(hdx_match_eval_index(m, "ORU^R01", "lab"), 0);
    assert_int_equal(hdx_match_eval_index(m, NULL, NULL), 0);
    assert_int_equal(hdx_match_eval_index(NULL, "ORU^R01", ""), -1);
    assert_int_equal(hdx_match_index_only(NULL), 0);
    assert_int_equal(hdx_match_eval(NULL, &m_oru, ""), 0);
    hdx_match_free(m);
    hdx_match_free(NULL);
}

static void test_describe(void **state)
{
    canon("TYPE:ORU^R01   AND   PV1-3.1=ICU", "type:ORU^R01 and PV1-3.1 = ICU");
    canon("ALL", "*");
    canon("type:ORU^*", "type:ORU");
    canon("type:*^*", "type:*");
    canon("type:*^R01", "type:*^R01");
    canon("type:\"ORU\"", "type:ORU");
    canon("Trigger:R01 OR Sender:ward3-* oR PATIENT:\"P 1\"",
          "trigger:R01 or sender:ward3-* or patient:\"P 1\"");
    canon("(type:A and type:B) and type:C", "type:A and type:B and type:C");
    canon("(type:A or type:B) or (type:C or type:D)", "type:A or type:B or type:C or type:D");
    canon("type:A and (type:B or type:C)", "type:A and (type:B or type:C)");
    canon("(type:A and type:B) or type:C", "type:A and type:B or type:C");
    canon("((type:A))", "type:A");
    canon("not (not *)", "not not *");
    canon("not(type:A and type:B)", "not (type:A and type:B)");
    canon("not (type:A or type:B) and *", "not (type:A or type:B) and *");
    canon("not ((not type:A) and *)", "not (not type:A and *)");
    canon("PV1-3 = \"ICU\"", "PV1-3 = ICU");
    canon("PV1-3 = \"a b\"", "PV1-3 = \"a b\"");
    canon("PV1-3 = \"a\\\"b\"", "PV1-3 = \"a\\\"b\"");
    canon("PV1-3 = a\\b", "PV1-3 = a\\b");
    canon("PV1-3 = \"a\\\\b\"", "PV1-3 = a\\b");
    canon("PV1-3 = \"a\\\\b c\"", "PV1-3 = \"a\\\\b c\"");
    canon("PV1-3 = \"x,y\"", "PV1-3 = \"x,y\"");
    canon("PV1-3 = \"(x)\"", "PV1-3 = \"(x)\"");
    canon("PV1-3 = and", "PV1-3 = and");
    canon("PV1-3!=x", "PV1-3 != x");
    canon("PV1-3 IN(a,b ,  \"c d\")", "PV1-3 in (a, b, \"c d\")");
    canon("OBX[2]-5.1.2 EXISTS", "OBX[2]-5.1.2 exists");
    canon("sender:\"ward 3*\"", "sender:\"ward 3*\"");
    canon("sender:*", "sender:*");
    canon("PV1-3 = é", "PV1-3 = é");
    /* the buffer */
    struct hdx_match *m = compile_ok("type:ORU");
    char d[16];
    assert_int_equal(hdx_match_describe(m, d, 8), -1);
    assert_string_equal(d, "");
    assert_int_equal(hdx_match_describe(m, d, 9), 8);
    assert_string_equal(d, "type:ORU");
    assert_int_equal(hdx_match_describe(m, NULL, 9), -1);
    hdx_match_free(m);
}

/* The field reading of eval (its own split of repetitions, components, sub-components) against
 * hl7_get: "SEG[n]-f.c.s exists" holds exactly when some repetition hl7_get finds there is
 * non-empty, and "= v" for v the first such value as hl7_unescape gives it. */
static void agree_on(const struct hl7_msg *msg, const char *seg, int occs, int fields)
{
    char text[64], buf[HDX_MATCH_VALUE_MAX + 1];
    for (int o = 1; o <= occs; o++)
        for (int f = 1; f <= fields; f++)
            for (int c = 0; c <= 4; c++)
                for (int s = 0; s <= (c ? 3 : 0); s++) {
                    if (!strcmp(seg, "MSH") && f <= 2) continue;
                    int want = 0;
                    char first[HDX_MATCH_VALUE_MAX + 1] = "";
                    struct hl7_view v;
                    for (int r = 1; r <= 8; r++)
                        if (hl7_get(msg, seg, o, f, r, c, s, &v) == 0 && v.len > 0) {
                            int un = hl7_unescape(msg, v, buf, sizeof(buf));
                            if (!want && un > 0 && (size_t)un == strlen(buf) && un < 40 &&
                                !strpbrk(buf, "\"\\"))
                                strcpy(first, buf);
                            want = 1;
                        }
                    int n = snprintf(text, sizeof(text), "%s[%d]-%d", seg, o, f);
                    if (c) n += snprintf(text + n, sizeof(text) - (size_t)n, ".%d", c);
                    if (s) n += snprintf(text + n, sizeof(text) - (size_t)n, ".%d", s);
                    snprintf(text + n, sizeof(text) - (size_t)n, " exists");
                    if (ev_on(text, msg, "") != want) fail_msg("%s: want %d", text, want);
                    if (first[0]) {
                        snprintf(text + n, sizeof(text) - (size_t)n, " = \"%s\"", first);
                        if (!ev_on(text, msg, "")) fail_msg("%s: want 1", text);
                    }
                }
}

static void test_split_agrees_with_hl7_get(void **state)
{
    agree_on(&m_oru, "MSH", 1, 13);
    agree_on(&m_oru, "PID", 1, 6);
    agree_on(&m_oru, "OBX", 3, 7);
    agree_on(&m_oru, "ZZZ", 1, 4);
    agree_on(&m_odd, "OBX", 2, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_type_trigger),
        cmocka_unit_test(test_regress_type_caret_in_code),
        cmocka_unit_test(test_sender_patient),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_repeats_components),
        cmocka_unit_test(test_escapes_quotes),
        cmocka_unit_test(test_logic),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_index_only),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_split_agrees_with_hl7_get),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
