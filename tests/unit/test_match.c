/* route/match: the match expressions of routes: every condition, precedence, occurrences and
 * repetitions, escaping, the canonical text and every refusal with its column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "proto/hl7.h"
#include "route/match.h"

static const char oru[] = "MSH|^~\\&|MON|ICU|HDX|HOSP|20261202120000||ORU^R01|C1|P|2.5.1\r"
                          "PID|1||PAT-7^^^H^MR~ALT-1^^^X||DOE^JO\r"
                          "PV1|1|I|ICU^12^A\r"
                          "OBX|1|NM|8867-4^Heart rate^LN||72|/min\r"
                          "OBX|2|NM|59408-5^SpO2^LN||97|%\r"
                          "OBX|3|ST|X-1^Note^L||a\\T\\b and c|\r"
                          "NTE|1||first~second&sub\r";

static struct hl7_msg msg;

static int setup(void **state)
{
    struct hl7_error e;
    return hl7_parse((const uint8_t *)oru, strlen(oru), NULL, &msg, &e);
}

static int teardown(void **state)
{
    hl7_msg_free(&msg);
    return 0;
}

static int eval_s(const char *text, const char *sender)
{
    struct hdx_match *m;
    char err[200];
    int rc = hdx_match_compile(text, &m, err, sizeof(err));
    if (rc != HDX_OK) fail_msg("'%s' refused: %s", text, err);
    int r = hdx_match_eval(m, &msg, sender);
    /* the canonical text is an equivalent expression, and canonical itself */
    char d1[5000], d2[5000];
    assert_true(hdx_match_describe(m, d1, sizeof(d1)) > 0);
    struct hdx_match *m2;
    if (hdx_match_compile(d1, &m2, err, sizeof(err)) != HDX_OK)
        fail_msg("describe '%s' -> '%s' refused: %s", text, d1, err);
    assert_int_equal(hdx_match_eval(m2, &msg, sender), r);
    assert_true(hdx_match_describe(m2, d2, sizeof(d2)) > 0);
    assert_string_equal(d1, d2);
    hdx_match_free(m2);
    hdx_match_free(m);
    return r;
}

static int eval(const char *text)
{
    return eval_s(text, "mon-01");
}

static void refused(const char *text, int column, const char *words)
{
    struct hdx_match *m = NULL;
    char err[200] = "", want[32];
    assert_int_equal(hdx_match_compile(text, &m, err, sizeof(err)), HDX_E_INVAL);
    assert_null(m);
    snprintf(want, sizeof(want), "column %d: ", column);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("'%s': error '%s', want '%s'", text, err, want);
    if (words && !strstr(err, words)) fail_msg("'%s': error '%s' lacks '%s'", text, err, words);
}

static void test_conditions(void **state)
{
    assert_true(eval("*"));
    assert_true(eval("ALL"));
    assert_true(eval("type:ORU^R01"));
    assert_true(eval("type:ORU"));
    assert_true(eval("type:ORU^*"));
    assert_true(eval("type:*^R01"));
    assert_false(eval("type:ADT^A01"));
    assert_false(eval("type:ORU^R30"));
    assert_false(eval("type:OR"));
    assert_true(eval("trigger:R01"));
    assert_false(eval("trigger:R02"));
    assert_true(eval("sender:mon-01"));
    assert_true(eval("sender:mon-*"));
    assert_false(eval("sender:mon-0"));
    assert_false(eval_s("sender:mon-*", "gw-1"));
    assert_true(eval("patient:PAT-7"));
    assert_false(eval("patient:ALT-1")); /* the first repetition only */
    assert_true(eval("PV1-3.1 = ICU"));
    assert_true(eval("PV1-3.1=ICU"));
    assert_false(eval("PV1-3.1 = icu")); /* values are exact */
    assert_true(eval("PV1-3 = ICU^12^A"));
    assert_true(eval("MSH-3 = MON"));
    assert_true(eval("MSH-9.2 = R01"));
}

static void test_occurrences_and_repetitions(void **state)
{
    assert_true(eval("OBX-3.1 = 59408-5"));     /* any OBX */
    assert_false(eval("OBX[1]-3.1 = 59408-5")); /* only the first */
    assert_true(eval("OBX[2]-3.1 = 59408-5"));
    assert_false(eval("OBX[4]-3.1 exists"));
    assert_true(eval("OBX-3.1 in (1-1, 8867-4, 2-2)"));
    assert_false(eval("OBX-3.1 in (1-1,2-2)"));
    assert_true(eval("PID-3.1 = ALT-1")); /* any repetition of a field */
    assert_true(eval("NTE-3 = second&sub"));
    assert_true(eval("NTE-3.1.2 = sub"));
    assert_true(eval("NTE-3.1.1 = second"));
    assert_true(eval("OBX[3]-5 = \"a&b and c\"")); /* \T\ unescaped before comparing */
    assert_false(eval("OBX[3]-5 = \"a\\\\T\\\\b and c\""));
}

static void test_absent_and_not(void **state)
{
    assert_false(eval("ZZZ-1 = a"));
    assert_true(eval("ZZZ-1 != a")); /* != is not = */
    assert_false(eval("ZZZ-1 exists"));
    assert_false(eval("OBX-6 = \"\"")); /* empty never equals */
    assert_false(eval("PV1-4 exists")); /* past the end */
    assert_true(eval("OBX-6 exists"));
    assert_false(eval("OBX-3.1 != 8867-4")); /* one OBX has it */
    assert_true(eval("not type:ADT"));
    assert_false(eval("not not type:ADT"));
}

static void test_precedence(void **state)
{
    /* and binds tighter than or */
    assert_true(eval("type:ADT and trigger:R01 or PV1-3.1 = ICU"));
    assert_false(eval("type:ADT and (trigger:R01 or PV1-3.1 = ICU)"));
    assert_true(eval("type:ORU^R01 and PV1-3.1 = ICU"));
    assert_false(eval("not type:ORU or type:ADT"));
    assert_true(eval("not (type:ADT or trigger:A01) and OBX-3.1 in (8867-4)"));
    assert_true(eval("((((*))))"));
    assert_true(eval("TYPE:ORU AND Trigger:R01"));
}

static void test_describe(void **state)
{
    struct hdx_match *m;
    char err[200], d[400];
    assert_int_equal(hdx_match_compile("  TYPE:ORU^*  And (PV1-3.1=ICU or  OBX-3.1 IN (a,\"b c\"))",
                                       &m, err, sizeof(err)),
                     HDX_OK);
    assert_true(hdx_match_describe(m, d, sizeof(d)) > 0);
    assert_string_equal(d, "type:ORU and (PV1-3.1 = ICU or OBX-3.1 in (a, \"b c\"))");
    assert_int_equal(hdx_match_describe(m, d, 10), -1);
    assert_true(hdx_match_index_only(m) == 0);
    hdx_match_free(m);
    assert_int_equal(hdx_match_compile("type:ORU and not sender:gw-*", &m, err, sizeof(err)),
                     HDX_OK);
    assert_true(hdx_match_index_only(m));
    hdx_match_free(m);
    assert_int_equal(hdx_match_compile("patient:PAT-7", &m, err, sizeof(err)), HDX_OK);
    assert_false(hdx_match_index_only(m));
    hdx_match_free(m);
}

static void test_refusals(void **state)
{
    refused("", 1, "empty");
    refused("   ", 1, "empty");
    refused("type:ORU^R01 and", 17, "expected a condition");
    refused("and type:ORU", 1, "needs a condition");
    refused("type:oru", 1, "upper-case");
    refused("colour:red", 1, "unknown condition");
    refused("PV1-3.1", 8, "expected =, !=, in or exists");
    refused("PV1-3.1 = ", 11, "expected a value");
    refused("PV1-3.1 ! ICU", 9, "'!='");
    refused("PV1-3.1 = ICU extra", 15, "unexpected 'extra'");
    refused("(type:ORU", 10, "expected ')'");
    refused("type:ORU)", 9, "unexpected ')'");
    refused("MSH-2 = x", 1, "delimiters");
    refused("MSH-1 exists", 1, "delimiters");
    refused("pv1-3 = x", 1, "not a field");
    refused("PV1-0 = x", 1, "1..999");
    refused("PV1-03 = x", 1, "1..999");
    refused("PV1-1000 = x", 1, "1..999");
    refused("OBX[0]-3 = x", 1, "[N]");
    refused("OBX-3.1.2.3 = x", 1, "unexpected '.'");
    refused("OBX-3 in ()", 11, "expected a value");
    refused("OBX-3 in (a b)", 13, "expected ',' or ')'");
    refused("OBX-3 = \"open", 9, "unterminated");
    refused("OBX-3 = \"a\\nb\"", 11, "escapes");
    refused("OBX-3 = \"a\tb\"", 11, "control");
    /* limits */
    char big[HDX_MATCH_TEXT_MAX + 16];
    memset(big, '*', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    refused(big, HDX_MATCH_TEXT_MAX + 1, "longer than");
    char v[300], e[400];
    memset(v, 'x', 200);
    v[200] = 0;
    snprintf(e, sizeof(e), "OBX-3 = \"%s\"", v);
    refused(e, 9, "longer than 199");
    char many[2000] = "";
    for (int i = 0; i < HDX_MATCH_PREDS_MAX + 1; i++)
        strcat(many, i ? " or *" : "*");
    refused(many, 5 * HDX_MATCH_PREDS_MAX + 1, "more than 64 conditions");
    char deep[200] = "";
    for (int i = 0; i < HDX_MATCH_DEPTH_MAX + 1; i++)
        strcat(deep, "(");
    strcat(deep, "*");
    refused(deep, HDX_MATCH_DEPTH_MAX + 1, "nested deeper than 16");
    char list[4000] = "OBX-3 in (";
    for (int i = 0; i < HDX_MATCH_LIST_MAX + 1; i++)
        strcat(list, i ? ",a" : "a");
    strcat(list, ")");
    refused(list, 10 + 2 * HDX_MATCH_LIST_MAX + 1, "more than 256 values");
    /* exactly at the limits: accepted */
    struct hdx_match *m;
    char err[200];
    many[strlen(many) - 5] = 0; /* 64 conditions */
    assert_int_equal(hdx_match_compile(many, &m, err, sizeof(err)), HDX_OK);
    hdx_match_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conditions),     cmocka_unit_test(test_occurrences_and_repetitions),
        cmocka_unit_test(test_absent_and_not), cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_describe),       cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
