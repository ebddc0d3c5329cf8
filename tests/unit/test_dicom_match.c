/* test_dicom_match: C-FIND attribute matching (PS3.4 C.2.2.2; dicom/match.h) and Specific
 * Character Set conversion (PS3.3 C.12.1.1.2, PS3.5 6.1 and Annexes H, I, J; dicom/charset.h).
 * Proves: universal, single value, wildcard, UID list and range matching each match what
 * they should and nothing else; open-ended date ranges "-20210115" and "20210115-" work
 * (Microsoft dicom-server #1087); every mangled key kind is refused at compile time with a
 * fixed reason and leaves the struct zeroed; PN folds ASCII letters only and matches
 * component groups; the retired ACR-NEMA date YYYY.MM.DD compares as YYYYMMDD; a
 * pathological wildcard ends (greedy, not exponential); and the PatientName of each of
 * pydicom's charset sample files converts to exactly pydicom's UTF-8, back to its own bytes,
 * and is found by wildcard keys in its own script. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/charset.h"
#include "dicom/match.h"

/* Large (a UID list is 8 KiB): kept off the stack. */
static struct hdx_dmatch m;

static void compile_ok(enum hdx_dmatch_vr vr, const char *key)
{
    const char *why = "unset";
    int rc = hdx_dmatch_compile(vr, key, strlen(key), &m, &why);
    if (rc != HDX_OK) fail_msg("key \"%s\" refused: %s", key, why != NULL ? why : "(null)");
    assert_null(why);
}

static int match(enum hdx_dmatch_vr vr, const char *key, const char *value)
{
    compile_ok(vr, key);
    return hdx_dmatch_eval(&m, value, strlen(value));
}

/* Refused with exactly reason, and nothing compiled is left behind. */
static void refused(enum hdx_dmatch_vr vr, const char *key, const char *reason)
{
    static const struct hdx_dmatch zero;
    const char *why = NULL;

    int rc = hdx_dmatch_compile(vr, key, strlen(key), &m, &why);
    if (rc != HDX_E_INVAL) fail_msg("key \"%s\" accepted, rc %d", key, rc);
    assert_non_null(why);
    assert_string_equal(why, reason);
    assert_memory_equal(&m, &zero, sizeof m);
    assert_int_equal(hdx_dmatch_eval(&m, "x", 1), 0);
}

/* ---------- universal, single value (C.2.2.2.1, C.2.2.2.3) ---------- */

static void test_universal(void **state)
{
    static const enum hdx_dmatch_vr vrs[] = {HDX_DMATCH_TEXT, HDX_DMATCH_PN, HDX_DMATCH_UI,
                                             HDX_DMATCH_DA,   HDX_DMATCH_TM, HDX_DMATCH_DT};
    (void)state;
    for (size_t i = 0; i < sizeof vrs / sizeof vrs[0]; i++) {
        compile_ok(vrs[i], "");
        assert_true(m.universal);
        assert_int_equal(hdx_dmatch_eval(&m, "", 0), 1);
        assert_int_equal(hdx_dmatch_eval(&m, "anything", 8), 1);
        assert_int_equal(hdx_dmatch_eval(&m, NULL, 0), 1);
        compile_ok(vrs[i], "    "); /* only padding: still zero length */
        assert_true(m.universal);
    }
    assert_int_equal(hdx_dmatch_compile(HDX_DMATCH_TEXT, NULL, 0, &m, NULL), HDX_OK);
    assert_true(m.universal);
}

static void test_single_value(void **state)
{
    (void)state;
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT", "CT"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT", "MR"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT", "ct"), 0); /* case-sensitive but for PN */
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT", "CTX"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT  ", "CT "), 1); /* trailing pad */
    assert_int_equal(match(HDX_DMATCH_TEXT, " CT", "CT"), 0);   /* leading space kept */
    assert_int_equal(match(HDX_DMATCH_TEXT, "CT", ""), 0);      /* empty matches universal only */
    assert_int_equal(match(HDX_DMATCH_TEXT, "Müller", "Müller"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "Müller", "MÜller"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "ORIGINAL\\PRIMARY", "ORIGINAL\\PRIMARY"), 1);
    refused(HDX_DMATCH_TEXT, "\xc3(", "key is not valid UTF-8");
    refused(HDX_DMATCH_TEXT, "\xed\xa0\x80", "key is not valid UTF-8"); /* a surrogate */
    const char nul[] = {'a', '\0', 'b'};
    assert_int_equal(hdx_dmatch_compile(HDX_DMATCH_TEXT, nul, 3, &m, NULL), HDX_E_INVAL);
}

static void test_key_too_long(void **state)
{
    static char big[HDX_DMATCH_KEY_MAX + 2];
    const char *why;

    (void)state;
    memset(big, 'A', sizeof big - 1);
    assert_int_equal(hdx_dmatch_compile(HDX_DMATCH_TEXT, big, HDX_DMATCH_KEY_MAX, &m, &why),
                     HDX_OK);
    assert_int_equal(hdx_dmatch_eval(&m, big, HDX_DMATCH_KEY_MAX), 1);
    refused(HDX_DMATCH_TEXT, big, "key over 1024 bytes");
}

/* ---------- wildcard (C.2.2.2.4) ---------- */

static void test_wildcard(void **state)
{
    (void)state;
    assert_int_equal(match(HDX_DMATCH_TEXT, "*", ""), 1); /* "*" alone: everything, empty too */
    assert_int_equal(match(HDX_DMATCH_TEXT, "*", "CT"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "**", ""), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C*", ""), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C*", "C"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C*", "CT"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C*", "MR"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "*T", "CT"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "*T", "CTX"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "a*b*c", "aXXbYYc"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "a*b*c", "aXXcYYb"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "a*bc", "abcbc"), 1); /* retries the star */
    assert_int_equal(match(HDX_DMATCH_TEXT, "C?", "CT"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C?", "C"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "C?", "CTX"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "?", ""), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "c*", "CT"), 0); /* still case-sensitive */
    /* '?' is one UTF-8 character, not one byte. */
    assert_int_equal(match(HDX_DMATCH_TEXT, "M?ller", "Müller"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "M??ller", "Müller"), 0);
    assert_int_equal(match(HDX_DMATCH_TEXT, "??", "東京"), 1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "?", "\xf0\x9f\x98\x80"), 1); /* 4 bytes */
    assert_int_equal(match(HDX_DMATCH_TEXT, "??", "\xf0\x9f\x98\x80"), 0);
    /* A stored byte that starts no valid sequence is one character; nothing reads past. */
    assert_int_equal(match(HDX_DMATCH_TEXT, "a?b",
                           "a\xe2"
                           "b"),
                     1);
    assert_int_equal(match(HDX_DMATCH_TEXT, "*?", "\xe2\x82"), 1);
    assert_true(m.wildcard);
}

/* "*a" x 200 then "b" against 10,000 'a': exponential for a backtracking matcher, a few
 * million steps for the greedy one. No timing assertion; it must simply finish. */
static void test_wildcard_pathological(void **state)
{
    static char key[401 + 1], val[10000];

    (void)state;
    for (size_t i = 0; i < 200; i++)
        memcpy(key + 2 * i, "*a", 2);
    key[400] = 'b';
    memset(val, 'a', sizeof val);
    compile_ok(HDX_DMATCH_TEXT, key);
    assert_int_equal(hdx_dmatch_eval(&m, val, sizeof val), 0);
    compile_ok(HDX_DMATCH_PN, key);
    assert_int_equal(hdx_dmatch_eval(&m, val, sizeof val), 0);
    val[sizeof val - 1] = 'b';
    assert_int_equal(hdx_dmatch_eval(&m, val, sizeof val), 1);
}

/* ---------- PN ---------- */

static void test_pn(void **state)
{
    (void)state;
    assert_int_equal(match(HDX_DMATCH_PN, "doe^john", "DOE^JOHN"), 1); /* ASCII folds */
    assert_int_equal(match(HDX_DMATCH_PN, "DOE^JOHN", "doe^john"), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "doe*", "Doe^Jane"), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "doe^j?hn", "DOE^JOHN"), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "doe", "DOE^JOHN"), 0);
    assert_int_equal(match(HDX_DMATCH_PN, "Doe^John", "Doe^John^^^"), 1); /* trailing ^ */
    assert_int_equal(match(HDX_DMATCH_PN, "Doe^John^^", "Doe^John"), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "Doe^John", ""), 0);
    assert_int_equal(match(HDX_DMATCH_PN, "*", ""), 1);
    /* Only ASCII letters fold: ü/Ü and д/Д are different characters. */
    assert_int_equal(match(HDX_DMATCH_PN, "müller", "MÜLLER"), 0);
    assert_int_equal(match(HDX_DMATCH_PN, "MüLLER", "müller"), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "дмитрий", "Дмитрий"), 0);
    assert_int_equal(match(HDX_DMATCH_PN, "Дмитрий", "Дмитрий"), 1);
    /* Component groups: a key without '=' may match any group. */
    const char *v = "Yamada^Tarou=山田^太郎=やまだ^たろう";
    assert_int_equal(match(HDX_DMATCH_PN, "yamada^tarou", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "山田*", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "やまだ^たろう", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "Suzuki*", v), 0);
    /* A key with '=' is matched group by group; an empty key group matches anything. */
    assert_int_equal(match(HDX_DMATCH_PN, "Yamada*=山田^太郎", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "=山田*", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "==やまだ*", v), 1);
    assert_int_equal(match(HDX_DMATCH_PN, "=やまだ*", v), 0); /* the wrong group */
    assert_int_equal(match(HDX_DMATCH_PN, "Yamada^Tarou=鈴木*", v), 0);
    assert_int_equal(match(HDX_DMATCH_PN, "=山田*", "Yamada^Tarou"), 0); /* no such group */
    refused(HDX_DMATCH_PN, "a=b=c=d", "PN key has more than three component groups");
}

/* ---------- UI (C.2.2.2.2) ---------- */

static void test_ui(void **state)
{
    static char list[HDX_DMATCH_UIDS_MAX * 8 + 16];
    size_t n = 0;

    (void)state;
    assert_int_equal(match(HDX_DMATCH_UI, "1.2.840.10008.1.1", "1.2.840.10008.1.1"), 1);
    assert_int_equal(match(HDX_DMATCH_UI, "1.2.840.10008.1.1", "1.2.840.10008.1.1\0"), 1);
    assert_int_equal(match(HDX_DMATCH_UI, "1.2.840.10008.1.1", "1.2.840.10008.1.10"), 0);
    assert_int_equal(match(HDX_DMATCH_UI, "1.2.840.10008.1.1", ""), 0);
    compile_ok(HDX_DMATCH_UI, "1.2.3\\1.2.4\\1.2.840.10008.5.1.4.1.1.2");
    assert_int_equal(m.nuids, 3);
    assert_int_equal(hdx_dmatch_eval(&m, "1.2.4", 5), 1);
    assert_int_equal(hdx_dmatch_eval(&m, "1.2.840.10008.5.1.4.1.1.2", 25), 1);
    assert_int_equal(hdx_dmatch_eval(&m, "1.2.5", 5), 0);
    assert_int_equal(hdx_dmatch_eval(&m, "1.2.3\\1.2.4", 11), 0);
    refused(HDX_DMATCH_UI, "1.2.3-1.2.9", "range matching is not allowed on UI");
    refused(HDX_DMATCH_UI, "-1.2.9", "range matching is not allowed on UI");
    refused(HDX_DMATCH_UI, "1.2.*", "wildcard matching is not allowed on UI");
    refused(HDX_DMATCH_UI, "1.2.?", "wildcard matching is not allowed on UI");
    refused(HDX_DMATCH_UI, "1.2.abc", "UID holds a byte other than a digit or '.'");
    refused(HDX_DMATCH_UI, "1..2", "UID has an empty component");
    refused(HDX_DMATCH_UI, ".1.2", "UID has an empty component");
    refused(HDX_DMATCH_UI, "1.2\\\\1.3", "empty UID in list");
    refused(HDX_DMATCH_UI, "1.2\\", "empty UID in list");
    refused(HDX_DMATCH_UI,
            "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27",
            "UID over 64 bytes");
    for (int i = 0; i <= HDX_DMATCH_UIDS_MAX; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s1.%d", i ? "\\" : "", i);
    refused(HDX_DMATCH_UI, list, "more than 128 UIDs in list");
    *strrchr(list, '\\') = '\0';
    compile_ok(HDX_DMATCH_UI, list);
    assert_int_equal(m.nuids, HDX_DMATCH_UIDS_MAX);
    assert_int_equal(hdx_dmatch_eval(&m, "1.127", 5), 1);
}

/* ---------- DA (C.2.2.2.5) ---------- */

static void test_da(void **state)
{
    (void)state;
    assert_int_equal(match(HDX_DMATCH_DA, "20210115", "20210115"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115", "20210116"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115", ""), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210101-20210131", "20210101"), 1); /* inclusive */
    assert_int_equal(match(HDX_DMATCH_DA, "20210101-20210131", "20210131"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210101-20210131", "20210115"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210101-20210131", "20201231"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210101-20210131", "20210201"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-20210115", "20210115"), 1);
    /* Open-ended ranges (Microsoft dicom-server #1087). */
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "20210115"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "19000101"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "20210116"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-", "20210115"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-", "29991231"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-", "20210114"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-", ""), 0);
    /* The retired ACR-NEMA form in stored values (PS3.5 6.2). */
    assert_int_equal(match(HDX_DMATCH_DA, "20210115", "2021.01.15"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "1997.04.24"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20210115-", "1997.04.24"), 0);
    /* A stored value that is no date does not match a range. */
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "2021011"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "20211345"), 0);
    assert_int_equal(match(HDX_DMATCH_DA, "-20210115", "1997/04/24"), 0);
    /* Leap years. */
    assert_int_equal(match(HDX_DMATCH_DA, "20200229", "20200229"), 1);
    assert_int_equal(match(HDX_DMATCH_DA, "20000229", "20000229"), 1);

    const char *bad = "DA key is not YYYYMMDD, a real date, or a range of them";
    refused(HDX_DMATCH_DA, "2021-13-45", "more than one '-' in a range");
    refused(HDX_DMATCH_DA, "20210115-2021", bad);
    refused(HDX_DMATCH_DA, "202101", bad);
    refused(HDX_DMATCH_DA, "20211345", bad);
    refused(HDX_DMATCH_DA, "20210230", bad);
    refused(HDX_DMATCH_DA, "21000229", bad); /* 2100 is no leap year */
    refused(HDX_DMATCH_DA, "20210100", bad);
    refused(HDX_DMATCH_DA, "2021.01.15", bad); /* a key uses the current form */
    refused(HDX_DMATCH_DA, "2021011a", bad);
    refused(HDX_DMATCH_DA, "20210115--", "more than one '-' in a range");
    refused(HDX_DMATCH_DA, "2021*", "wildcard matching is not allowed on DA, TM, DT");
    refused(HDX_DMATCH_DA, "2021011?", "wildcard matching is not allowed on DA, TM, DT");
    refused(HDX_DMATCH_DA, "*", "wildcard matching is not allowed on DA, TM, DT");
    refused(HDX_DMATCH_DA, "20210131-20210101", "range lower bound is after its upper bound");
    refused(HDX_DMATCH_DA, "-", "range with neither bound");
}

/* ---------- TM ---------- */

static void test_tm(void **state)
{
    (void)state;
    const char *r = "1000-1200";
    assert_int_equal(match(HDX_DMATCH_TM, r, "1130"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, r, "113045.5"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, r, "10"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, r, "100000"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, r, "120059.999999"), 1); /* "1200" is the minute */
    assert_int_equal(match(HDX_DMATCH_TM, r, "1201"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, r, "095959.999999"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, r, "12:00:30"), 1); /* retired form stored */
    assert_int_equal(match(HDX_DMATCH_TM, r, "11:3"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, r, "2500"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, r, ""), 0);
    assert_int_equal(match(HDX_DMATCH_TM, "1130", "113059.9"), 1); /* one value, one range */
    assert_int_equal(match(HDX_DMATCH_TM, "1130", "1131"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, "11", "115959"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, "113045.5", "113045.5"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, "113045.5", "113045.6"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, "-0800", "075959"), 1);
    assert_int_equal(match(HDX_DMATCH_TM, "-0800", "0801"), 0);
    assert_int_equal(match(HDX_DMATCH_TM, "2200-", "235960"), 1); /* leap second */

    const char *bad = "TM key is not HH[MM[SS[.F]]] or a range of them";
    refused(HDX_DMATCH_TM, "2400", bad);
    refused(HDX_DMATCH_TM, "1060", bad);
    refused(HDX_DMATCH_TM, "103", bad);
    refused(HDX_DMATCH_TM, "10:30", bad);
    refused(HDX_DMATCH_TM, "103000.", bad);
    refused(HDX_DMATCH_TM, "103000.1234567", bad);
    refused(HDX_DMATCH_TM, "10*", "wildcard matching is not allowed on DA, TM, DT");
    refused(HDX_DMATCH_TM, "1200-1000", "range lower bound is after its upper bound");
    refused(HDX_DMATCH_TM, "10-11-12", "more than one '-' in a range");
}

/* ---------- DT ---------- */

static void test_dt(void **state)
{
    (void)state;
    const char *r = "20210101-20210131";
    assert_int_equal(match(HDX_DMATCH_DT, r, "20210131235959.999999"), 1); /* whole last day */
    assert_int_equal(match(HDX_DMATCH_DT, r, "20210101"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, r, "2021"), 1); /* its lower point */
    assert_int_equal(match(HDX_DMATCH_DT, r, "20210201000000"), 0);
    assert_int_equal(match(HDX_DMATCH_DT, r, "20201231235959"), 0);
    assert_int_equal(match(HDX_DMATCH_DT, r, "20210115120000+0100"), 1); /* zone ignored */
    assert_int_equal(match(HDX_DMATCH_DT, r, "20210115120000+9999"), 0); /* bad zone */
    assert_int_equal(match(HDX_DMATCH_DT, "202102", "20210228235959"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "202102", "20210301"), 0);
    assert_int_equal(match(HDX_DMATCH_DT, "2020", "20201231"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "-20210115", "20210115235959"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "-20210115", "20210116"), 0);
    assert_int_equal(match(HDX_DMATCH_DT, "20210115-", "20210115"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "20210115-", "20210114235959"), 0);
    assert_int_equal(match(HDX_DMATCH_DT, "2021011510-2021011512", "20210115113000"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "2021011510-2021011512", "20210115130000"), 0);
    /* A negative offset on a single value is not a range to the year 0500. */
    assert_int_equal(match(HDX_DMATCH_DT, "20210101-0500", "20210101120000"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "20210101-0500-20210102+0100", "20210102"), 1);
    assert_int_equal(match(HDX_DMATCH_DT, "20210101-0500-20210102+0100", "20210103"), 0);

    const char *bad = "DT key is not YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX] or a range";
    refused(HDX_DMATCH_DT, "2021-13", bad);
    refused(HDX_DMATCH_DT, "202113", bad);
    refused(HDX_DMATCH_DT, "20210230", bad);
    refused(HDX_DMATCH_DT, "202101011", bad);
    refused(HDX_DMATCH_DT, "2021010125", bad);
    refused(HDX_DMATCH_DT, "20210101+1500", bad);
    refused(HDX_DMATCH_DT, "2021*", "wildcard matching is not allowed on DA, TM, DT");
    refused(HDX_DMATCH_DT, "2022-2021", "range lower bound is after its upper bound");
    /* "2000-1000" alone reads as year 2000 at -10:00, or a backwards range: one reading. */
    compile_ok(HDX_DMATCH_DT, "2000-1000");
    assert_int_equal(hdx_dmatch_eval(&m, "20000601", 8), 1);
    /* "1000-1100" reads both as year 1000 at -11:00 and as the years 1000 to 1100. */
    refused(HDX_DMATCH_DT, "1000-1100", "ambiguous DT range (time zone or separator)");
}

static void test_eval_guards(void **state)
{
    struct hdx_dmatch z;

    (void)state;
    memset(&z, 0, sizeof z);
    assert_int_equal(hdx_dmatch_eval(NULL, "x", 1), 0);
    assert_int_equal(hdx_dmatch_eval(&z, "x", 1), 0); /* never compiled */
    assert_int_equal(hdx_dmatch_compile((enum hdx_dmatch_vr)99, "x", 1, &m, NULL), HDX_E_INVAL);
    compile_ok(HDX_DMATCH_TEXT, "x");
    assert_int_equal(hdx_dmatch_eval(&m, NULL, 0), 0);
}

/* ---------- charset: pydicom's sample files ---------- */

struct row {
    char file[64], cs[128];
    char raw[512], utf8[512];
    size_t raw_n, utf8_n;
};

static size_t unhex(const char *h, char *out, size_t cap)
{
    size_t n = strlen(h) / 2;
    assert_true(strlen(h) % 2 == 0 && n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (char)v;
    }
    return n;
}

static size_t load_rows(struct row *rows, size_t max)
{
    char path[1024], line[4096];
    const char *d = getenv("HDX_TEST_DATA");
    size_t n = 0;

    assert_non_null(d);
    snprintf(path, sizeof path, "%s/dicom/charset.tsv", d);
    FILE *f = fopen(path, "r");
    if (f == NULL) fail_msg("cannot open %s", path);
    while (fgets(line, sizeof line, f) != NULL && n < max) {
        char *col[4];
        if (line[0] == '#') continue;
        line[strcspn(line, "\r\n")] = '\0';
        /* strtok_r would merge the empty charset column of a default-repertoire row. */
        col[0] = line;
        for (int c = 1; c < 4; c++) {
            char *t = strchr(col[c - 1], '\t');
            assert_non_null(t);
            *t = '\0';
            col[c] = t + 1;
        }
        struct row *r = &rows[n++];
        snprintf(r->file, sizeof r->file, "%.63s", col[0]);
        snprintf(r->cs, sizeof r->cs, "%.*s", (int)sizeof r->cs - 1, col[1]);
        r->raw_n = unhex(col[2], r->raw, sizeof r->raw);
        r->utf8_n = unhex(col[3], r->utf8, sizeof r->utf8);
    }
    fclose(f);
    return n;
}

static struct row rows[32];
static size_t nrows;

static const struct row *row_of(const char *file)
{
    for (size_t i = 0; i < nrows; i++)
        if (strcmp(rows[i].file, file) == 0) return &rows[i];
    fail_msg("%s missing from charset.tsv", file);
    return NULL;
}

static void test_charset_pydicom(void **state)
{
    char out[1024], back[1024];
    size_t n, bn;

    (void)state;
    nrows = load_rows(rows, sizeof rows / sizeof rows[0]);
    assert_true(nrows >= 12);
    for (size_t i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        struct hdx_charset *cs = NULL;
        const char *why = NULL;

        if (hdx_charset_open(r->cs, &cs, &why) != HDX_OK)
            fail_msg("%s: set \"%s\" refused: %s", r->file, r->cs, why);
        int rc = hdx_charset_to_utf8(cs, r->raw, r->raw_n, out, sizeof out, &n);
        if (rc != HDX_OK) fail_msg("%s: to_utf8 rc %d", r->file, rc);
        if (n != r->utf8_n || memcmp(out, r->utf8, n) != 0)
            fail_msg("%s: \"%s\" is not pydicom's \"%.*s\"", r->file, out, (int)r->utf8_n, r->utf8);
        assert_int_equal(out[n], '\0');
        /* And back to the file's own bytes, escape sequences included. */
        rc = hdx_charset_from_utf8(cs, out, n, back, sizeof back, &bn);
        if (rc != HDX_OK) fail_msg("%s: from_utf8 rc %d", r->file, rc);
        if (bn != r->raw_n || memcmp(back, r->raw, bn) != 0)
            fail_msg("%s: written back as other bytes (%zu, file has %zu)", r->file, bn, r->raw_n);
        /* Every value fits exactly into strlen + 1 and not one byte less. */
        assert_int_equal(hdx_charset_to_utf8(cs, r->raw, r->raw_n, out, n + 1, &bn), HDX_OK);
        assert_int_equal(bn, n);
        assert_int_equal(hdx_charset_to_utf8(cs, r->raw, r->raw_n, out, n, &bn), HDX_E_TOOBIG);
        assert_int_equal(bn, 0);
        assert_string_equal(out, "");
        hdx_charset_close(cs);
    }
}

/* Converts a sample file's name and matches key against it as a PN. */
static int pn_matches(const char *file, const char *key)
{
    const struct row *r = row_of(file);
    struct hdx_charset *cs = NULL;
    char out[1024];
    size_t n;

    assert_int_equal(hdx_charset_open(r->cs, &cs, NULL), HDX_OK);
    assert_int_equal(hdx_charset_to_utf8(cs, r->raw, r->raw_n, out, sizeof out, &n), HDX_OK);
    hdx_charset_close(cs);
    compile_ok(HDX_DMATCH_PN, key);
    return hdx_dmatch_eval(&m, out, n);
}

static void test_charset_match(void **state)
{
    (void)state;
    if (nrows == 0) nrows = load_rows(rows, sizeof rows / sizeof rows[0]);
    assert_int_equal(pn_matches("chrFren.dcm", "Buc^J*"), 1);
    assert_int_equal(pn_matches("chrFren.dcm", "buc^jérôme"), 1);
    assert_int_equal(pn_matches("chrFren.dcm", "Buc^J?r?me"), 1);
    assert_int_equal(pn_matches("chrFren.dcm", "Buc^JÉrôme"), 0); /* é is not folded */
    assert_int_equal(pn_matches("chrFren.dcm", "Buc^Jerome"), 0);
    assert_int_equal(pn_matches("chrGerm.dcm", "Äneas^R?diger"), 1);
    assert_int_equal(pn_matches("chrGerm.dcm", "äneas*"), 0);
    assert_int_equal(pn_matches("chrGerm.dcm", "*^Rüdiger"), 1);
    /* The Russian sample mixes Cyrillic with Latin c, e, y, p (as the file holds it). */
    assert_int_equal(pn_matches("chrRuss.dcm", "Люкceмбypг*"), 1);
    assert_int_equal(pn_matches("chrRuss.dcm", "Люк*"), 1);
    assert_int_equal(pn_matches("chrRuss.dcm", "Люк??мб??г"), 1);
    assert_int_equal(pn_matches("chrRuss.dcm", "Люксембург"), 0); /* all Cyrillic: other */
    assert_int_equal(pn_matches("chrRuss.dcm", "люк*"), 0);
    assert_int_equal(pn_matches("chrGreek.dcm", "Διον*"), 1);
    assert_int_equal(pn_matches("chrArab.dcm", "قباني^*"), 1);
    assert_int_equal(pn_matches("chrHbrw.dcm", "שרון^*"), 1);
    assert_int_equal(pn_matches("chrX1.dcm", "wang^xiao*"), 1);
    assert_int_equal(pn_matches("chrX1.dcm", "王^小東"), 1);
    assert_int_equal(pn_matches("chrX1.dcm", "=王^小?"), 1);
    assert_int_equal(pn_matches("chrX2.dcm", "=王^小?"), 1);
    assert_int_equal(pn_matches("chrX2.dcm", "王^小東"), 0); /* 东, simplified */
    assert_int_equal(pn_matches("chrH31.dcm", "yamada^tarou=山田^太郎=やまだ^たろう"), 1);
    assert_int_equal(pn_matches("chrH31.dcm", "=山田*"), 1);
    assert_int_equal(pn_matches("chrH31.dcm", "*^たろう"), 1);
    assert_int_equal(pn_matches("chrH32.dcm", "ﾔﾏﾀﾞ^*"), 1);
    assert_int_equal(pn_matches("chrH32.dcm", "????^???"), 1); /* ﾀﾞ is two characters */
    assert_int_equal(pn_matches("chrH32.dcm", "=山田^太郎"), 1);
    assert_int_equal(pn_matches("chrI2.dcm", "hong^gildong"), 1);
    assert_int_equal(pn_matches("chrI2.dcm", "=洪^吉洞"), 1);
    assert_int_equal(pn_matches("chrI2.dcm", "홍^길*"), 1);
    assert_int_equal(pn_matches("chrI2.dcm", "홍^길"), 0);
}

/* ---------- charset: sets, refusals ---------- */

static struct hdx_charset *open_ok(const char *set)
{
    struct hdx_charset *cs = NULL;
    const char *why = NULL;
    if (hdx_charset_open(set, &cs, &why) != HDX_OK) fail_msg("\"%s\": %s", set, why);
    assert_non_null(cs);
    return cs;
}

static void open_refused(const char *set, const char *reason)
{
    struct hdx_charset *cs = (struct hdx_charset *)&cs;
    const char *why = NULL;
    assert_int_equal(hdx_charset_open(set, &cs, &why), HDX_E_INVAL);
    assert_null(cs);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static int to_utf8(const char *set, const char *in, size_t len, char *out, size_t cap)
{
    struct hdx_charset *cs = open_ok(set);
    size_t n;
    int rc = hdx_charset_to_utf8(cs, in, len, out, cap, &n);
    hdx_charset_close(cs);
    return rc;
}

static void test_charset_sets(void **state)
{
    char out[256];
    size_t n;
    struct hdx_charset *cs;

    (void)state;
    /* Default repertoire: ASCII only, both ways. */
    cs = open_ok("");
    assert_true(hdx_charset_is_utf8(cs));
    assert_int_equal(hdx_charset_to_utf8(cs, "Doe^John", 8, out, sizeof out, &n), HDX_OK);
    assert_string_equal(out, "Doe^John");
    assert_int_equal(hdx_charset_to_utf8(cs, "D\xe9", 2, out, sizeof out, &n), HDX_E_INVAL);
    assert_int_equal(n, 0);
    assert_int_equal(hdx_charset_from_utf8(cs, "Dé", 3, out, sizeof out, &n), HDX_E_INVAL);
    hdx_charset_close(cs);
    cs = open_ok("ISO_IR 192");
    assert_true(hdx_charset_is_utf8(cs));
    assert_int_equal(hdx_charset_to_utf8(cs, "\xc0\xaf", 2, out, sizeof out, &n), HDX_E_INVAL);
    assert_int_equal(hdx_charset_to_utf8(cs, "Zoë", 4, out, sizeof out, &n), HDX_OK);
    hdx_charset_close(cs);
    cs = open_ok("ISO_IR 100 "); /* CS padding */
    assert_false(hdx_charset_is_utf8(cs));
    assert_int_equal(hdx_charset_from_utf8(cs, "Jérôme", 8, out, sizeof out, &n), HDX_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "J\xe9r\xf4me", 6);
    assert_int_equal(hdx_charset_from_utf8(cs, "Жанна", 10, out, sizeof out, &n), HDX_E_INVAL);
    assert_int_equal(hdx_charset_from_utf8(cs, "\xff", 1, out, sizeof out, &n), HDX_E_INVAL);
    hdx_charset_close(cs);
    /* Each single-byte set decodes its own letter. */
    assert_int_equal(to_utf8("ISO_IR 101", "\xb1", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "ą");
    assert_int_equal(to_utf8("ISO_IR 109", "\xa1", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "Ħ");
    assert_int_equal(to_utf8("ISO_IR 110", "\xa2", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "ĸ");
    assert_int_equal(to_utf8("ISO_IR 148", "\xf0", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "ğ");
    assert_int_equal(to_utf8("ISO_IR 166", "\xa1", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "ก");
    assert_int_equal(to_utf8("GBK", "\xcd\xf5", 2, out, sizeof out), HDX_OK);
    assert_string_equal(out, "王");
    assert_int_equal(to_utf8("ISO_IR 127", "\xa1", 1, out, sizeof out), HDX_E_INVAL);
    /* ISO 2022 single-byte forms: G1 from the start, escapes of declared sets only. */
    assert_int_equal(to_utf8("ISO 2022 IR 100", "\xe9", 1, out, sizeof out), HDX_OK);
    assert_string_equal(out, "é");
    assert_int_equal(to_utf8("ISO 2022 IR 100", "\x1b-A\xe9\x1b(B.", 8, out, sizeof out), HDX_OK);
    assert_string_equal(out, "é.");
    assert_int_equal(to_utf8("ISO 2022 IR 6", "abc", 3, out, sizeof out), HDX_OK);
    assert_int_equal(to_utf8("ISO 2022 IR 6", "\xe9", 1, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO 2022 IR 100", "\x1b$B;3", 5, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO 2022 IR 100", "\x1b", 1, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO 2022 IR 100", "\x85", 1, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO 2022 IR 6\\ISO 2022 IR 144", "\x1b-L\xbb", 4, out, sizeof out),
                     HDX_OK);
    assert_string_equal(out, "Л");
    /* Japanese: a cut two-byte character, katakana outside its range. */
    assert_int_equal(to_utf8("\\ISO 2022 IR 87", "\x1b$B;", 4, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO 2022 IR 13", "\xe0", 1, out, sizeof out), HDX_E_INVAL);
    assert_int_equal(to_utf8("ISO_IR 13", "\xd4\xcf", 2, out, sizeof out), HDX_OK);
    assert_string_equal(out, "ﾔﾏ");
    assert_int_equal(to_utf8("ISO_IR 13", "\x1b$B;3", 5, out, sizeof out), HDX_E_INVAL);
    /* JIS X 0212 and GB 2312 with code extensions. */
    cs = open_ok("\\ISO 2022 IR 159");
    assert_int_equal(hdx_charset_from_utf8(cs, "丂", 3, out, sizeof out, &n), HDX_OK);
    assert_memory_equal(out, "\x1b$(D", 4);
    char back[64];
    size_t bn;
    assert_int_equal(hdx_charset_to_utf8(cs, out, n, back, sizeof back, &bn), HDX_OK);
    assert_string_equal(back, "丂");
    hdx_charset_close(cs);
    cs = open_ok("\\ISO 2022 IR 58");
    assert_int_equal(hdx_charset_from_utf8(cs, "Wang^王", 8, out, sizeof out, &n), HDX_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "Wang^\x1b$)A\xcd\xf5", 11);
    hdx_charset_close(cs);
    /* Refusals. */
    open_refused("ISO_IR 999", "unknown Specific Character Set term");
    open_refused("ISO_IR 192\\ISO 2022 IR 87",
                 "ISO_IR 192, GB18030 and GBK take no code extensions");
    open_refused("\\GB18030", "ISO_IR 192, GB18030 and GBK take no code extensions");
    open_refused("ISO_IR 100\\ISO_IR 126",
                 "a multi-valued Specific Character Set needs ISO 2022 terms");
    open_refused("ISO 2022 IR 6\\", "empty Specific Character Set value after value 1");
    open_refused("\\\\\\\\\\\\\\\\", "more than 8 Specific Character Set values");
    assert_int_equal(hdx_charset_open("", NULL, NULL), HDX_E_INVAL);
    cs = open_ok("");
    assert_int_equal(hdx_charset_to_utf8(cs, "a", 1, out, 0, &n), HDX_E_TOOBIG);
    assert_int_equal(hdx_charset_to_utf8(cs, "ab", 2, out, 2, &n), HDX_E_TOOBIG);
    assert_int_equal(hdx_charset_to_utf8(cs, "", 0, out, 1, &n), HDX_OK);
    assert_int_equal(n, 0);
    hdx_charset_close(cs);
    hdx_charset_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_universal),
        cmocka_unit_test(test_single_value),
        cmocka_unit_test(test_key_too_long),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_wildcard_pathological),
        cmocka_unit_test(test_pn),
        cmocka_unit_test(test_ui),
        cmocka_unit_test(test_da),
        cmocka_unit_test(test_tm),
        cmocka_unit_test(test_dt),
        cmocka_unit_test(test_eval_guards),
        cmocka_unit_test(test_charset_pydicom),
        cmocka_unit_test(test_charset_match),
        cmocka_unit_test(test_charset_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
