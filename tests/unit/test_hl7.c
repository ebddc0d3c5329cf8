/* test_hl7: HL7 v2 parser (HL7 v2.5.1 ch. 2: 2.5 message construction, 2.7 escape
 * sequences, 2.14.9 MSH; DESIGN invariant 5).
 * Proves: every terminator style parses alike; any legal delimiter set is honoured (incl.
 * space as escape, "^~ &"); fields, repetitions, components and sub-components are found
 * by the standard's numbering; escapes decode; each rejection in hl7.h gives its exact
 * table 0357 code and AE/AR; random damage never crashes or yields an inconsistent msg. */
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

#define MSH_STD "MSH|^~\\&|MONITOR|ICU|HDX|HOSP|20240101120000||ORU^R01^ORU_R01|MSG00001|P|2.5.1"

static const char oru[] = MSH_STD "||||||UNICODE UTF-8\r"
                                  "PID|1||123456^^^HOSP&1.2.3&ISO^MR~987^^^OTHER^PI||DOE^JOHN^Q||"
                                  "19700101|M\r"
                                  "OBR|1|||8867-4^Heart rate^LN\r"
                                  "OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|||"
                                  "||F\r"
                                  "OBX|2|NM|8480-6^Systolic BP^LN||120|mm[Hg]|||||F\r";

static const char adt[] = "MSH|^~\\&|REG|HOSP|HDX|HOSP|20240101||ADT^A01|A1|P|2.3\r"
                          "EVN|A01|20240101\r"
                          "PID|||\\X41\\42\\T\\7||SMITH^ANNE\r"
                          "PV1||I|W1^101^1\r";

static int parse(const char *s, size_t len, struct hl7_msg *m, struct hl7_error *e)
{
    return hl7_parse((const uint8_t *)s, len, NULL, m, e);
}

static int parse_str(const char *s, struct hl7_msg *m, struct hl7_error *e)
{
    return parse(s, strlen(s), m, e);
}

static void assert_view(const struct hl7_msg *m, struct hl7_view v, const char *want)
{
    assert_int_equal(v.len, strlen(want));
    assert_true(v.off <= m->len && v.len <= m->len - v.off);
    assert_memory_equal(m->data + v.off, want, v.len);
}

static void assert_get(const struct hl7_msg *m, const char *seg, int occ, int field, int rep,
                       int comp, int sub, const char *want)
{
    struct hl7_view v;

    assert_int_equal(hl7_get(m, seg, occ, field, rep, comp, sub, &v), 0);
    assert_view(m, v, want);
}

static void assert_absent(const struct hl7_msg *m, const char *seg, int occ, int field, int rep,
                          int comp, int sub)
{
    struct hl7_view v;

    assert_int_equal(hl7_get(m, seg, occ, field, rep, comp, sub, &v), -1);
}

/* Expects a rejection with exact code, ACK kind and location. */
static void assert_reject(const char *s, size_t len, const struct hl7_limits *lim, int code,
                          char ack, const char *seg, int seq, int field)
{
    struct hl7_msg m;
    struct hl7_error e;

    assert_int_equal(hl7_parse((const uint8_t *)s, len, lim, &m, &e), -1);
    assert_int_equal(e.code, code);
    assert_int_equal(e.ack, ack);
    assert_string_equal(e.seg, seg);
    assert_int_equal(e.seg_seq, seq);
    assert_int_equal(e.field, field);
    assert_true(e.text[0] != '\0');
    assert_null(m.segs);
    hl7_msg_free(&m);
}

/* For string literals, which may hold NUL bytes. */
#define REJECT(lit, ...) assert_reject(lit, sizeof(lit) - 1, __VA_ARGS__)

static void test_oru_fields(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_int_equal(parse_str(oru, &m, &e), 0);
    assert_int_equal(e.code, 0);
    assert_int_equal(m.nsegs, 5);
    assert_string_equal(m.msg_type, "ORU^R01");
    assert_string_equal(m.trigger, "R01");
    assert_string_equal(m.control_id, "MSG00001");
    assert_string_equal(m.version, "2.5.1");
    assert_string_equal(m.charset, "UNICODE UTF-8");
    assert_string_equal(m.patient_id, "123456");
    assert_view(&m, m.sending_app, "MONITOR");
    assert_view(&m, m.sending_facility, "ICU");
    assert_view(&m, m.receiving_app, "HDX");
    assert_view(&m, m.receiving_facility, "HOSP");
    assert_view(&m, m.msg_type_raw, "ORU^R01^ORU_R01");
    assert_view(&m, m.control_id_raw, "MSG00001");
    assert_view(&m, m.processing_id_raw, "P");
    assert_view(&m, m.version_raw, "2.5.1");
    assert_int_equal(m.d.field, '|');
    assert_int_equal(m.d.comp, '^');
    assert_int_equal(m.d.rep, '~');
    assert_int_equal(m.d.esc, '\\');
    assert_int_equal(m.d.sub, '&');
    assert_int_equal(m.d.trunc, 0);
    hl7_msg_free(&m);
    assert_null(m.segs);
    assert_int_equal(m.nsegs, 0);
    hl7_msg_free(NULL);
}

static void test_get_numbering(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_int_equal(parse_str(oru, &m, &e), 0);
    /* MSH numbering: MSH-1 is the separator, MSH-2 the encoding characters. */
    assert_get(&m, "MSH", 1, 1, 1, 0, 0, "|");
    assert_get(&m, "MSH", 1, 2, 1, 0, 0, "^~\\&");
    assert_get(&m, "MSH", 1, 2, 1, 1, 1, "^~\\&");
    assert_absent(&m, "MSH", 1, 2, 1, 2, 0); /* MSH-2 is never split */
    assert_absent(&m, "MSH", 1, 1, 2, 0, 0);
    assert_get(&m, "MSH", 1, 3, 1, 0, 0, "MONITOR");
    assert_get(&m, "MSH", 1, 7, 1, 0, 0, "20240101120000");
    assert_get(&m, "MSH", 1, 8, 1, 0, 0, "");
    assert_get(&m, "MSH", 1, 9, 1, 1, 0, "ORU");
    assert_get(&m, "MSH", 1, 9, 1, 2, 0, "R01");
    assert_get(&m, "MSH", 1, 9, 1, 3, 0, "ORU_R01");
    assert_absent(&m, "MSH", 1, 9, 1, 4, 0);
    assert_get(&m, "MSH", 1, 18, 1, 0, 0, "UNICODE UTF-8");
    assert_absent(&m, "MSH", 1, 19, 1, 0, 0);
    /* Other segments: normal numbering, repetitions, components, sub-components. */
    assert_get(&m, "PID", 1, 1, 1, 0, 0, "1");
    assert_get(&m, "PID", 1, 2, 1, 0, 0, "");
    assert_get(&m, "PID", 1, 3, 1, 0, 0, "123456^^^HOSP&1.2.3&ISO^MR");
    assert_get(&m, "PID", 1, 3, 1, 4, 0, "HOSP&1.2.3&ISO");
    assert_get(&m, "PID", 1, 3, 1, 4, 1, "HOSP");
    assert_get(&m, "PID", 1, 3, 1, 4, 2, "1.2.3");
    assert_get(&m, "PID", 1, 3, 1, 4, 3, "ISO");
    assert_absent(&m, "PID", 1, 3, 1, 4, 4);
    assert_get(&m, "PID", 1, 3, 1, 2, 0, "");
    assert_get(&m, "PID", 1, 3, 2, 0, 0, "987^^^OTHER^PI");
    assert_get(&m, "PID", 1, 3, 2, 1, 0, "987");
    assert_get(&m, "PID", 1, 3, 2, 5, 0, "PI");
    assert_absent(&m, "PID", 1, 3, 3, 0, 0);
    assert_get(&m, "PID", 1, 5, 1, 2, 0, "JOHN");
    assert_get(&m, "PID", 1, 8, 1, 0, 0, "M");
    assert_absent(&m, "PID", 1, 9, 1, 0, 0);
    assert_get(&m, "OBX", 1, 5, 1, 0, 0, "72");
    assert_get(&m, "OBX", 2, 5, 1, 0, 0, "120");
    assert_get(&m, "OBX", 2, 11, 1, 0, 0, "F");
    assert_absent(&m, "OBX", 3, 1, 1, 0, 0);
    assert_absent(&m, "ZZZ", 1, 1, 1, 0, 0);
    /* Bad requests. */
    assert_absent(&m, "PID", 0, 3, 1, 0, 0);
    assert_absent(&m, "PID", 1, 0, 1, 0, 0);
    assert_absent(&m, "PID", 1, 3, 0, 0, 0);
    assert_absent(&m, "PID", 1, 3, 1, -1, 0);
    assert_absent(&m, "PID", 1, 3, 1, 0, 1);
    assert_absent(&m, "PI", 1, 3, 1, 0, 0);
    assert_absent(&m, "PIDX", 1, 3, 1, 0, 0);
    struct hl7_view v;
    assert_int_equal(hl7_get(NULL, "PID", 1, 3, 1, 0, 0, &v), -1);
    assert_int_equal(hl7_get(&m, NULL, 1, 3, 1, 0, 0, &v), -1);
    assert_int_equal(hl7_get(&m, "PID", 1, 3, 1, 0, 0, NULL), -1);
    hl7_msg_free(&m);
}

static void test_segment_without_fields(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_int_equal(parse_str("MSH|^~\\&|||||||ADT^A01|1\rZZ1\rZZ2|\r", &m, &e), 0);
    assert_int_equal(m.nsegs, 3);
    assert_absent(&m, "ZZ1", 1, 1, 1, 0, 0);
    assert_get(&m, "ZZ2", 1, 1, 1, 0, 0, "");
    assert_string_equal(m.patient_id, "");
    hl7_msg_free(&m);
}

/* Replaces every "\r" of oru with `term`; `tail` is appended instead of the final one. */
static size_t with_terminators(char *out, size_t cap, const char *term, const char *tail)
{
    size_t n = 0;
    size_t src = strlen(oru);

    for (size_t i = 0; i < src; i++) {
        const char *add = oru[i] != '\r' ? NULL : (i + 1 == src ? tail : term);
        size_t k = add != NULL ? strlen(add) : 1;
        assert_true(n + k < cap);
        memcpy(out + n, add != NULL ? add : &oru[i], k);
        n += k;
    }
    out[n] = '\0';
    return n;
}

static void test_terminators(void **state)
{
    static const char *const variants[][2] = {
        {"\r", "\r"}, {"\n", "\n"},     {"\r\n", "\r\n"}, {"\r", ""},           {"\n", ""},
        {"\r\n", ""}, {"\r\r", "\r\r"}, {"\n\n\n", "\n"}, {"\r\n\r\n", "\r\n"}, {"\n\r", ""},
    };
    char buf[1024];
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        size_t n = with_terminators(buf, sizeof buf, variants[i][0], variants[i][1]);
        assert_int_equal(parse(buf, n, &m, &e), 0);
        assert_int_equal(m.nsegs, 5); /* empty lines are skipped, not segments */
        assert_int_equal(m.segs[0].off, 0);
        assert_int_equal(m.segs[4].len, strlen("OBX|2|NM|8480-6^Systolic BP^LN||120|mm[Hg]|||||F"));
        assert_string_equal(m.patient_id, "123456");
        assert_get(&m, "OBX", 2, 11, 1, 0, 0, "F");
        assert_get(&m, "MSH", 1, 18, 1, 0, 0, "UNICODE UTF-8");
        hl7_msg_free(&m);
    }
}

static void test_custom_delimiters(void **state)
{
    static const char msg[] = "MSH#$*!%#SND#FAC#RCV#RF#2024##ORU$R01#C!F!1#P#2.5.1\r"
                              "PID###ID!S!1$x*ID2##A!T!B%sub$C\r";
    struct hl7_msg m;
    struct hl7_error e;
    char out[64];

    (void)state;
    assert_int_equal(parse_str(msg, &m, &e), 0);
    assert_int_equal(m.d.field, '#');
    assert_int_equal(m.d.comp, '$');
    assert_int_equal(m.d.rep, '*');
    assert_int_equal(m.d.esc, '!');
    assert_int_equal(m.d.sub, '%');
    assert_string_equal(m.msg_type, "ORU^R01"); /* always joined with '^' */
    assert_string_equal(m.control_id, "C#1");
    assert_string_equal(m.patient_id, "ID$1");
    assert_get(&m, "MSH", 1, 1, 1, 0, 0, "#");
    assert_get(&m, "MSH", 1, 2, 1, 0, 0, "$*!%");
    assert_get(&m, "PID", 1, 3, 2, 0, 0, "ID2");
    assert_get(&m, "PID", 1, 5, 1, 1, 2, "sub");
    struct hl7_view v;
    assert_int_equal(hl7_get(&m, "PID", 1, 5, 1, 1, 0, &v), 0);
    assert_int_equal(hl7_unescape(&m, v, out, sizeof out), 7);
    assert_string_equal(out, "A%B%sub"); /* !T! is the sub-component character */
    hl7_msg_free(&m);
}

static void test_space_escape_char(void **state)
{
    /* Real-world sender: MSH-2 "^~ &" uses space as escape character. */
    static const char msg[] = "MSH|^~ &|DEV|WARD|||20240101||ORU^R01|77|P|2.4\r"
                              "PID|||55 F 66\r"
                              "OBX|1|ST|X||a S b E c\r";
    struct hl7_msg m;
    struct hl7_error e;
    struct hl7_view v;
    char out[32];

    (void)state;
    assert_int_equal(parse_str(msg, &m, &e), 0);
    assert_int_equal(m.d.esc, ' ');
    assert_string_equal(m.patient_id, "55|66");
    assert_get(&m, "MSH", 1, 2, 1, 0, 0, "^~ &");
    assert_int_equal(hl7_get(&m, "OBX", 1, 5, 1, 0, 0, &v), 0);
    assert_int_equal(hl7_unescape(&m, v, out, sizeof out), 5);
    assert_string_equal(out, "a^b c");
    hl7_msg_free(&m);
}

static void test_truncation_char(void **state)
{
    static const char msg[] = "MSH|^~\\&#|A|B|C|D|2024||ADT^A04|9|P|2.7\rPID|||X\\P\\Y\r";
    struct hl7_msg m;
    struct hl7_error e;
    char out[32];

    (void)state;
    assert_int_equal(parse_str(msg, &m, &e), 0);
    assert_int_equal(m.d.trunc, '#');
    assert_get(&m, "MSH", 1, 2, 1, 0, 0, "^~\\&#");
    assert_get(&m, "MSH", 1, 3, 1, 0, 0, "A");
    assert_string_equal(m.patient_id, "X#Y");
    assert_int_equal(hl7_escape(&m.d, "a#b", out, sizeof out), 5);
    assert_string_equal(out, "a\\P\\b");
    hl7_msg_free(&m);
}

static void unescape_case(const struct hl7_msg *m, const char *raw, int want_len, const char *want)
{
    struct hl7_msg tmp = *m;
    struct hl7_view v = {0, (uint32_t)strlen(raw)};
    char out[64];

    tmp.data = (const uint8_t *)raw;
    tmp.len = strlen(raw);
    assert_int_equal(hl7_unescape(&tmp, v, out, sizeof out), want_len);
    if (want_len >= 0)
        assert_memory_equal(out, want, (size_t)want_len + 1);
    else
        assert_string_equal(out, "");
}

static void test_unescape(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;
    char out[8];

    (void)state;
    assert_int_equal(parse_str(adt, &m, &e), 0);
    assert_string_equal(m.patient_id, "A42&7");
    unescape_case(&m, "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F", 11, "A|B^C&D~E\\F");
    unescape_case(&m, "\\X41\\", 1, "A");
    unescape_case(&m, "\\X414243\\x", 4, "ABCx");
    unescape_case(&m, "\\X4a4B\\", 2, "JK");
    unescape_case(&m, "\\X\\", 0, "");
    unescape_case(&m, "line1\\.br\\line2", 11, "line1\nline2");
    unescape_case(&m, "\\H\\bold\\N\\", 4, "bold");
    unescape_case(&m, "a\\.sp\\b\\Zfoo\\c\\C2842\\", 3, "abc");
    unescape_case(&m, "\\P\\", 0, ""); /* no truncation character declared */
    unescape_case(&m, "\\\\", 0, "");
    unescape_case(&m, "", 0, "");
    unescape_case(&m, "abc\\F", -1, NULL);
    unescape_case(&m, "\\", -1, NULL);
    unescape_case(&m, "\\X4\\", -1, NULL);
    unescape_case(&m, "\\XZZ\\", -1, NULL);
    unescape_case(&m, "\\X00\\", 1, "\0");
    /* Exact capacity: 3 chars need cap 4. */
    struct hl7_view v = {m.sending_app.off, 3}; /* "REG" */
    assert_int_equal(hl7_unescape(&m, v, out, 4), 3);
    assert_int_equal(hl7_unescape(&m, v, out, 3), -1);
    assert_int_equal(hl7_unescape(&m, v, out, 0), -1);
    assert_int_equal(hl7_unescape(&m, v, NULL, 8), -1);
    assert_int_equal(hl7_unescape(NULL, v, out, sizeof out), -1);
    struct hl7_view bad = {(uint32_t)m.len, 1};
    assert_int_equal(hl7_unescape(&m, bad, out, sizeof out), -1);
    hl7_msg_free(&m);
}

static void test_escape(void **state)
{
    const struct hl7_delims d = {'|', '^', '~', '\\', '&', 0};
    char out[64];

    (void)state;
    assert_int_equal(hl7_escape(&d, "a|b^c~d\\e&f\x01g\rh", out, sizeof out), 33);
    assert_string_equal(out, "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X01\\g\\X0D\\h");
    assert_int_equal(hl7_escape(&d, "\x1f\x20\x7f", out, sizeof out), 7);
    assert_string_equal(out, "\\X1F\\ \x7f");
    assert_int_equal(hl7_escape(&d, "", out, sizeof out), 0);
    assert_int_equal(hl7_escape(&d, "plain text", out, 11), 10);
    assert_int_equal(hl7_escape(&d, "plain text", out, 10), -1);
    assert_string_equal(out, "");
    assert_int_equal(hl7_escape(&d, "|", out, 4), 3);
    assert_int_equal(hl7_escape(&d, "|", out, 3), -1);
    assert_int_equal(hl7_escape(NULL, "x", out, sizeof out), -1);
    assert_int_equal(hl7_escape(&d, NULL, out, sizeof out), -1);
    /* Round trip through the parser's unescape. */
    static const char text[] = "x|y^z~w\\v&u\tt";
    char msg[256], dec[64];
    struct hl7_msg m;
    struct hl7_error e;
    struct hl7_view v;
    assert_true(hl7_escape(&d, text, out, sizeof out) > 0);
    snprintf(msg, sizeof msg, "MSH|^~\\&|||||||ADT^A01|1\rNTE|1||%s\r", out);
    assert_int_equal(parse_str(msg, &m, &e), 0);
    assert_int_equal(hl7_get(&m, "NTE", 1, 3, 1, 0, 0, &v), 0);
    assert_int_equal(hl7_unescape(&m, v, dec, sizeof dec), (int)strlen(text));
    assert_string_equal(dec, text);
    hl7_msg_free(&m);
}

static void test_encoding_chars_accepted(void **state)
{
    static const char *const ok[] = {
        "MSH|^~\\&|||||||ADT^A01|1", "MSH|^~ &|||||||ADT^A01|1", "MSH ^~\\&       ADT^A01 1",
        "MSH|!\"#$|||||||ADT!A01|1", "MSH|{}[]|||||||ADT{A01|1", "MSH|^~\\&#|||||||ADT^A01|1",
        "MSH~^|\\&~~~~~~~ADT^A01~1", "MSH|:;<=|||||||ADT:A01|1",
    };
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(parse_str(ok[i], &m, &e), 0);
        assert_string_equal(m.msg_type, "ADT^A01");
        assert_string_equal(m.control_id, "1");
        hl7_msg_free(&m);
    }
}

static void test_reject_msh_structure(void **state)
{
    (void)state;
    /* No MSH at the start: 100, AR. */
    REJECT("", NULL, 100, 'R', "", 0, 0);
    REJECT("PID|1", NULL, 100, 'R', "", 0, 0);
    REJECT("\rMSH|^~\\&|||||||ADT^A01|1", NULL, 100, 'R', "", 0, 0);
    REJECT("msh|^~\\&|||||||ADT^A01|1", NULL, 100, 'R', "", 0, 0);
    REJECT("MS", NULL, 100, 'R', "", 0, 0);
    /* MSH too short. */
    REJECT("MSH", NULL, 100, 'R', "MSH", 1, 1);
    REJECT("MSH\r", NULL, 100, 'R', "MSH", 1, 1);
    /* Bad MSH-1: 102, AR. */
    REJECT("MSHA^~\\&A", NULL, 102, 'R', "MSH", 1, 1);
    REJECT("MSH5^~\\&5", NULL, 102, 'R', "MSH", 1, 1);
    REJECT("MSH\x80^~\\&\x80", NULL, 102, 'R', "MSH", 1, 1);
    REJECT("MSH\x1f^~\\&\x1f", NULL, 102, 'R', "MSH", 1, 1);
    REJECT("MSH\x7f^~\\&\x7f", NULL, 102, 'R', "MSH", 1, 1);
    REJECT("MSH\0^~\\&\0", NULL, 102, 'R', "MSH", 1, 1);
    /* Bad MSH-2: wrong length, alphanumeric, duplicate, other bytes. 102, AR. */
    static const char *const bad2[] = {
        "MSH||||||||ADT^A01|1",          "MSH|^|||||||ADT^A01|1",
        "MSH|^~|||||||ADT^A01|1",        "MSH|^~\\|||||||ADT^A01|1",
        "MSH|^~\\&#$|||||||ADT^A01|1",   "MSH|^~\\&",
        "MSH|^~\\A|||||||ADT^A01|1",     "MSH|a~\\&|||||||ADT^A01|1",
        "MSH|^~9&|||||||ADT^A01|1",      "MSH|^^\\&|||||||ADT^A01|1",
        "MSH|^~\\^|||||||ADT^A01|1",     "MSH|^~\\&&|||||||ADT^A01|1",
        "MSH|^~\\\x80|||||||ADT^A01|1",  "MSH|^~\\\t|||||||ADT^A01|1",
        "MSH|^~\\&\x01|||||||ADT^A01|1", "MSH|^~\\\x0b|||||||ADT^A01|1",
        "MSH|^~\r\\&|||||||ADT^A01|1",
    };
    for (size_t i = 0; i < sizeof bad2 / sizeof bad2[0]; i++) {
        struct hl7_msg m;
        struct hl7_error e;
        if (strcmp(bad2[i], "MSH|^~\\&") == 0) {
            /* 4 characters then end of message: MSH-2 is fine, MSH-9 is missing. */
            assert_reject(bad2[i], strlen(bad2[i]), NULL, 101, 'R', "MSH", 1, 9);
            continue;
        }
        assert_int_equal(parse_str(bad2[i], &m, &e), -1);
        assert_int_equal(e.code, 102);
        assert_int_equal(e.ack, 'R');
        assert_string_equal(e.seg, "MSH");
        assert_int_equal(e.field, 2);
        assert_int_equal(m.nsegs, 0); /* nothing addressable */
    }
}

static void test_reject_required(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    /* Missing MSH-9: 101, AR, but the header stays addressable. */
    assert_int_equal(parse_str("MSH|^~\\&|A|B|C|D|2024|||C1|P|2.5.1\r", &m, &e), -1);
    assert_int_equal(e.code, 101);
    assert_int_equal(e.ack, 'R');
    assert_string_equal(e.seg, "MSH");
    assert_int_equal(e.seg_seq, 1);
    assert_int_equal(e.field, 9);
    assert_int_equal(m.nsegs, 1);
    assert_null(m.segs);
    assert_view(&m, m.control_id_raw, "C1");
    assert_view(&m, m.sending_app, "A");
    REJECT("MSH|^~\\&|A|B|C|D|2024", NULL, 101, 'R', "MSH", 1, 9);
    REJECT("MSH|^~\\&|A|B|C|D|2024||^R01|C1", NULL, 101, 'R', "MSH", 1, 9);
    /* Missing or empty MSH-10: 101, AR. */
    REJECT("MSH|^~\\&|A|B|C|D|2024||ADT^A01", NULL, 101, 'R', "MSH", 1, 10);
    REJECT("MSH|^~\\&|A|B|C|D|2024||ADT^A01||P", NULL, 101, 'R', "MSH", 1, 10);
    assert_int_equal(parse_str("MSH|^~\\&|A|B|C|D|2024||ADT^A01|\rPID|1\r", &m, &e), -1);
    assert_int_equal(e.code, 101);
    assert_string_equal(m.trigger, "A01"); /* still known for the ACK */
}

static void test_reject_bytes(void **state)
{
    static const char base[] = MSH_STD "\rPID|1||42||DOE^JOHN\rOBX|1|NM|X||1\rOBX|2|NM|Y||2\r";
    char buf[sizeof base];
    const char *p;
    static const uint8_t bad[] = {0x00, 0x0B, 0x1C};

    (void)state;
    for (size_t i = 0; i < sizeof bad; i++) {
        /* In OBX-5 of the second OBX: 102, AE, located exactly. */
        memcpy(buf, base, sizeof base);
        p = strstr(buf, "||2\r");
        buf[p - buf + 2] = (char)bad[i];
        assert_reject(buf, sizeof base - 1, NULL, 102, 'E', "OBX", 2, 5);
        /* In MSH-3. */
        memcpy(buf, base, sizeof base);
        buf[10] = (char)bad[i];
        assert_reject(buf, sizeof base - 1, NULL, 102, 'E', "MSH", 1, 3);
        /* In a segment id: still the byte error, not the id error. */
        memcpy(buf, base, sizeof base);
        p = strstr(buf, "PID");
        buf[p - buf + 1] = (char)bad[i];
        assert_reject(buf, sizeof base - 1, NULL, 102, 'E', "", 0, 0);
        /* In MSH-10 (extracted): 102, AE at MSH-10. */
        memcpy(buf, base, sizeof base);
        p = strstr(buf, "MSG00001");
        buf[p - buf + 3] = (char)bad[i];
        assert_reject(buf, sizeof base - 1, NULL, 102, 'E', "MSH", 1, 10);
    }
}

static void utf8_case(const char *pid5, int ok, const char *charset)
{
    char buf[512];
    struct hl7_msg m;
    struct hl7_error e;

    snprintf(buf, sizeof buf, "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1||||||%s\rPID|1||42||%s\r",
             charset, pid5);
    int rc = parse_str(buf, &m, &e);
    if (ok) {
        assert_int_equal(rc, 0);
        hl7_msg_free(&m);
        return;
    }
    assert_int_equal(rc, -1);
    assert_int_equal(e.code, 102);
    assert_int_equal(e.ack, 'E');
    assert_string_equal(e.seg, "PID");
    assert_int_equal(e.seg_seq, 1);
    assert_int_equal(e.field, 5);
}

static void test_charset_utf8(void **state)
{
    static const char *const good[] = {
        "Jos\xc3\xa9",  "\xe2\x82\xac",     "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
        "\xed\x9f\xbf", "\xee\x80\x80",     "\xc2\x80",         "\xdf\xbf",
        "\xe0\xa0\x80", "\xf0\x90\x80\x80", "\x7f\x01\t",
    };
    static const char *const bad[] = {
        "\xc0\x80",
        "\xc1\xbf",
        "\xe0\x80\x80",
        "\xe0\x9f\xbf",
        "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf",
        "\xed\xa0\x80",
        "\xed\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\x80",
        "\xbf",
        "\xe2\x82",
        "\xe2\x82^",
        "\xf0\x9f\x98",
        "\xc3",
        "\xc3\xc3\xa9",
        "\xe2\x28\xa1",
        "\xf8\x88\x80\x80\x80",
    };

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        utf8_case(good[i], 1, "");
        utf8_case(good[i], 1, "UNICODE UTF-8");
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        utf8_case(bad[i], 0, "");
        utf8_case(bad[i], 0, "UNICODE UTF-8");
        utf8_case(bad[i], 0, "UTF-8");
        utf8_case(bad[i], 0, "ASCII");
        utf8_case(bad[i], 1, "8859/1"); /* 8-bit sets accept any byte but NUL/0B/1C */
        utf8_case(bad[i], 1, "8859/1~UNICODE UTF-8");
    }
    /* Truncated sequence as the very last bytes of the message (no terminator), in an
     * exact-size heap buffer so that ASan catches any read past the end. */
    static const char tail[] = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1\rPID|1||42||X\xe2\x82";
    static const char tail4[] = "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1\rPID|1||42||X\xf0\x9f\x98";
    char *heap = malloc(sizeof tail4 - 1);
    assert_non_null(heap);
    memcpy(heap, tail, sizeof tail - 1);
    assert_reject(heap, sizeof tail - 1, NULL, 102, 'E', "PID", 1, 5);
    memcpy(heap, tail4, sizeof tail4 - 1);
    assert_reject(heap, sizeof tail4 - 1, NULL, 102, 'E', "PID", 1, 5);
    free(heap);
    /* Invalid UTF-8 in the header itself. */
    static const char hdr[] = "MSH|^~\\&|A\xc0\xaf|B|C|D|2024||ADT^A01|1\r";
    assert_reject(hdr, sizeof hdr - 1, NULL, 102, 'E', "MSH", 1, 3);
}

static void test_charset_ascii(void **state)
{
    (void)state;
    utf8_case("plain\x7f\x01", 1, "ASCII");
    utf8_case("Jos\xc3\xa9", 0, "ASCII");
    utf8_case("Jos\xc3\xa9", 0, "ascii");
    utf8_case("Jos\xe9", 1, "8859/1");
    utf8_case("\xff\xfe", 1, "8859/15");
    utf8_case("\xa4", 1, "ISO IR100");
}

static void test_limits(void **state)
{
    struct hl7_limits lim;
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    hl7_limits_default(&lim);
    assert_int_equal(lim.max_segments, 10000);
    assert_int_equal(lim.max_field_len, 65536);
    hl7_limits_default(NULL);
    /* More segments than the limit: 100, AE. */
    lim.max_segments = 4;
    assert_reject(oru, strlen(oru), &lim, 100, 'E', "", 0, 0);
    lim.max_segments = 5;
    assert_int_equal(hl7_parse((const uint8_t *)oru, strlen(oru), &lim, &m, &e), 0);
    hl7_msg_free(&m);
    /* A field longer than the limit: 102, AE, located. "8867-4^Heart rate^LN" is 20. */
    hl7_limits_default(&lim);
    lim.max_field_len = 19;
    assert_reject(oru, strlen(oru), &lim, 102, 'E', "PID", 1, 3);
    static const char msg[] = "MSH|^~\\&|||||||A^B|1\rOBX|1|NM|8867-4^Heart rate^LN||7\r";
    assert_reject(msg, sizeof msg - 1, &lim, 102, 'E', "OBX", 1, 3);
    lim.max_field_len = 20;
    assert_int_equal(hl7_parse((const uint8_t *)msg, sizeof msg - 1, &lim, &m, &e), 0);
    hl7_msg_free(&m);
    /* Zero means the default. */
    lim.max_segments = 0;
    lim.max_field_len = 0;
    assert_int_equal(hl7_parse((const uint8_t *)oru, strlen(oru), &lim, &m, &e), 0);
    hl7_msg_free(&m);
}

static void test_reject_segment_ids(void **state)
{
    static const char *const bad[] = {
        "pid|1", "PI|1", "PIDX|1", "PI", "P", "PID^1", "PiD|1", " PID|1", "PI-|1", "\xc3\xa9X|1",
    };
    char buf[256];
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "MSH|^~\\&|||||||ADT^A01|1\rEVN|A01\r%s\rPV1|1\r", bad[i]);
        assert_int_equal(parse_str(buf, &m, &e), -1);
        assert_int_equal(e.code, 100);
        assert_int_equal(e.ack, 'R');
        assert_string_equal(e.seg, "");
        assert_non_null(strstr(e.text, "segment 3"));
        assert_int_equal(m.nsegs, 1);
        assert_null(m.segs);
    }
    assert_int_equal(parse_str("MSH|^~\\&|||||||ADT^A01|1\rZ01|x\r123|y\rPID\r", &m, &e), 0);
    assert_int_equal(m.nsegs, 4);
    hl7_msg_free(&m);
}

/* One message per frame (a second MSH), and MSH-9 holding only coded values: both would
 * otherwise let one sender's bytes pose as another message or forge subscriber headers. */
static void test_reject_second_msh_and_bad_type(void **state)
{
    static const char *const bad_types[] = {"ORU R01", "ORU\\F\\x^R01", "OR=U^R01",
                                            "ORU^R\\X0A\\1"};
    char buf[256];
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_int_equal(parse_str("MSH|^~\\&|||||||ORU^R01|A1|P|2.5\rPID|1||P1\r"
                               "MSH|^~\\&|||||||ORU^R01|A2|P|2.5\rPID|1||P2\r",
                               &m, &e),
                     -1);
    assert_int_equal(e.code, 100);
    assert_int_equal(e.ack, 'R');
    assert_string_equal(e.seg, "MSH");
    assert_string_equal(m.control_id, "A1"); /* the AR is addressed to the first message */
    hl7_msg_free(&m);
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        snprintf(buf, sizeof buf, "MSH|^~\\&|||||||%s|C1|P|2.5\rPID|1||P1\r", bad_types[i]);
        assert_int_equal(parse_str(buf, &m, &e), -1);
        assert_int_equal(e.code, 102);
        assert_int_equal(e.ack, 'R');
        assert_int_equal(e.field, 9);
        hl7_msg_free(&m);
    }
    assert_int_equal(parse_str("MSH|^~\\&|||||||ZX_1^Z-01|C1|P|2.5\r", &m, &e), 0);
    assert_string_equal(m.msg_type, "ZX_1^Z-01");
    hl7_msg_free(&m);
    /* "MSH" inside field data is not a segment. */
    assert_int_equal(parse_str("MSH|^~\\&|||||||ORU^R01|C1|P|2.5\rOBX|1|ST|||MSH|x\r", &m, &e), 0);
    hl7_msg_free(&m);
}

static void test_reject_extracted_too_long(void **state)
{
    char buf[1024];
    char big[256];

    (void)state;
    memset(big, '7', 200);
    big[200] = '\0';
    snprintf(buf, sizeof buf, "MSH|^~\\&|||||||ADT^A01|%s\r", big);
    assert_reject(buf, strlen(buf), NULL, 102, 'E', "MSH", 1, 10);
    big[199] = '\0'; /* 199 fits control_id[200] */
    snprintf(buf, sizeof buf, "MSH|^~\\&|||||||ADT^A01|%s\rPID|||%s7\r", big, big);
    assert_reject(buf, strlen(buf), NULL, 102, 'E', "PID", 1, 3);
    REJECT("MSH|^~\\&|||||||ADT^A01TOOLONG|1", NULL, 102, 'E', "MSH", 1, 9);
    REJECT("MSH|^~\\&|||||||ADT^A01|1|P|2.5.1.1.1.1.1.1.1", NULL, 102, 'E', "MSH", 1, 12);
    REJECT("MSH|^~\\&|||||||ADT^A01|1|P|2.5||||||ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", NULL, 102, 'E',
           "MSH", 1, 18);
    /* An escaped NUL would silently shorten an identifier: rejected. */
    REJECT("MSH|^~\\&|||||||ADT^A01|1\rPID|||12\\X00\\34\r", NULL, 102, 'E', "PID", 1, 3);
    REJECT("MSH|^~\\&|||||||ADT^A01|1\rPID|||12\\F\r", NULL, 102, 'E', "PID", 1, 3);
    REJECT("MSH|^~\\&|||||||ADT^A01|\\X00\\", NULL, 102, 'E', "MSH", 1, 10);
    /* 63 characters of message type still fit. */
    struct hl7_msg m;
    struct hl7_error e;
    memset(big, 'T', 59);
    big[59] = '\0';
    snprintf(buf, sizeof buf, "MSH|^~\\&|||||||%s^A01|1", big);
    assert_int_equal(parse_str(buf, &m, &e), 0);
    assert_int_equal(strlen(m.msg_type), 63);
    hl7_msg_free(&m);
    snprintf(buf, sizeof buf, "MSH|^~\\&|||||||%sT^A01|1", big);
    assert_reject(buf, strlen(buf), NULL, 102, 'E', "MSH", 1, 9);
}

static void test_msg_without_trigger(void **state)
{
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_int_equal(parse_str("MSH|^~\\&|||||||ACK|X1|P|2.5.1\rMSA|AA|1\r", &m, &e), 0);
    assert_string_equal(m.msg_type, "ACK");
    assert_string_equal(m.trigger, "");
    hl7_msg_free(&m);
    assert_int_equal(hl7_parse(NULL, 0, NULL, &m, &e), -1);
    assert_int_equal(e.code, 100);
    assert_int_equal(hl7_parse((const uint8_t *)oru, strlen(oru), NULL, NULL, &e), -1);
    assert_int_equal(hl7_parse((const uint8_t *)oru, strlen(oru), NULL, &m, NULL), 0);
    hl7_msg_free(&m);
}

/* Checks that a parse result is internally consistent, then that an ACK can be built. */
static void check_sane(const uint8_t *b, size_t len, int rc, const struct hl7_msg *m,
                       const struct hl7_error *e)
{
    char ack[2048];
    struct hl7_ack_params p = {HL7_AA, e, "A1", 0, NULL};

    if (rc == 0) {
        assert_true(m->nsegs >= 1);
        assert_non_null(m->segs);
        for (size_t i = 0; i < m->nsegs; i++) {
            assert_true(m->segs[i].len >= 3);
            assert_true(m->segs[i].off <= len && m->segs[i].len <= len - m->segs[i].off);
        }
        assert_memory_equal(b, "MSH", 3);
        assert_true(m->msg_type[0] != '\0' && m->control_id[0] != '\0');
        assert_true(memchr(m->control_id, '\0', sizeof m->control_id) != NULL);
    } else {
        assert_int_equal(rc, -1);
        assert_true(e->ack == 'E' || e->ack == 'R');
        assert_true(e->code == 100 || e->code == 101 || e->code == 102);
        assert_true(e->text[0] != '\0');
        assert_non_null(memchr(e->text, '\0', sizeof e->text));
        assert_null(m->segs);
        assert_true(m->nsegs <= 1);
        p.code = e->ack == 'E' ? HL7_AE : HL7_AR;
    }
    int n = hl7_ack_build(m, &p, ack, sizeof ack);
    assert_true(n > 0);
    assert_memory_equal(ack, "MSH", 3);
    assert_int_equal(ack[n - 1], '\r');
    for (int i = 0; i < n; i++)
        assert_true((uint8_t)ack[i] >= 0x20 || ack[i] == '\r');
}

/* STYLE 6.8: every bit of every golden message flipped, and every prefix. */
static void test_bitflip_truncation(void **state)
{
    static const char *const golden[] = {
        oru, adt, "MSH|^~ &|DEV|WARD|||20240101||ORU^R01|77|P|2.4\rPID|||55\r",
        "MSH#$*!%#SND#FAC#RCV#RF#2024##ORU$R01#C!F!1#P#2.5.1\r"};
    uint8_t *b = malloc(1024);
    struct hl7_msg m;
    struct hl7_error e;

    (void)state;
    assert_non_null(b);
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        size_t len = strlen(golden[g]);
        for (size_t cut = 0; cut <= len; cut++) {
            memcpy(b, golden[g], len);
            int rc = hl7_parse(b, cut, NULL, &m, &e);
            check_sane(b, cut, rc, &m, &e);
            hl7_msg_free(&m);
        }
        for (size_t bit = 0; bit < len * 8; bit++) {
            memcpy(b, golden[g], len);
            b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int rc = hl7_parse(b, len, NULL, &m, &e);
            check_sane(b, len, rc, &m, &e);
            hl7_msg_free(&m);
        }
    }
    free(b);
}

static int peek(const char *text, char *code, char *id)
{
    return hl7_peek_ack((const uint8_t *)text, strlen(text), code, 8, id, 200);
}

/* check_bytes reads eight bytes at a time where they are all plain: every byte value, at
 * every offset of a word, must still get the byte-by-byte verdict and location, and a field
 * must still be measured to the byte. */
static const char obx_head[] = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X1|P|2.5.1\rOBX|1|ST|X||";

/* buf = obx_head then 24 'A's (OBX-5); returns where OBX-5 starts */
static size_t obx5_of_as(char *buf)
{
    size_t n = sizeof(obx_head) - 1;
    memcpy(buf, obx_head, n);
    memset(buf + n, 'A', 24);
    return n;
}

static void test_every_byte_at_every_offset(void **state)
{
    (void)state;
    char buf[256];
    for (int b = 0; b < 256; b++) {
        if (b == '\r' || b == '\n') continue; /* terminators: another segment */
        for (size_t k = 0; k < 18; k++) {
            struct hl7_msg m;
            struct hl7_error e;
            size_t n = obx5_of_as(buf);
            buf[n + k] = (char)b;
            memcpy(buf + n + 24, "|Z\r", 3);
            int bad = b == 0x00 || b == 0x0B || b == 0x1C || b >= 0x80; /* lone byte: not UTF-8 */
            int rc = parse(buf, n + 27, &m, &e);
            if (rc != (bad ? -1 : 0)) fail_msg("byte 0x%02x at offset %zu: rc %d", b, k, rc);
            if (bad) {
                assert_string_equal(e.seg, "OBX");
                assert_int_equal(e.field, 5);
            }
            hl7_msg_free(&m);
        }
    }
    /* a field separator inside a word still counts: the NUL after it is in OBX-6 */
    for (size_t k = 0; k < 18; k++) {
        struct hl7_msg m;
        struct hl7_error e;
        size_t n = obx5_of_as(buf);
        buf[n + k] = '|';
        buf[n + k + 3] = '\0';
        memcpy(buf + n + 24, "\r", 1);
        assert_int_equal(parse(buf, n + 25, &m, &e), -1);
        assert_int_equal(e.field, 6);
        hl7_msg_free(&m);
    }
    /* OBX-5 of exactly the limit passes; one byte more fails, at every length's alignment */
    for (size_t lim = 8; lim < 40; lim++) {
        struct hl7_limits l = {0, lim};
        for (size_t extra = 0; extra < 2; extra++) {
            struct hl7_msg m;
            struct hl7_error e;
            size_t n = sizeof(obx_head) - 1, f = lim + extra;
            memcpy(buf, obx_head, n);
            memset(buf + n, 'B', f);
            memcpy(buf + n + f, "\r", 1);
            int rc = hl7_parse((const uint8_t *)buf, n + f + 1, &l, &m, &e);
            if (rc != (extra ? -1 : 0)) fail_msg("limit %zu, field of %zu: rc %d", lim, f, rc);
            if (extra) assert_int_equal(e.field, 5);
            hl7_msg_free(&m);
        }
    }
}

static void test_peek_ack(void **state)
{
    (void)state;
    char code[8], id[200];
    assert_int_equal(
        peek("MSH|^~\\&|R|F|H|F|20260101||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|MSG-7\r", code, id), 0);
    assert_string_equal(code, "AA");
    assert_string_equal(id, "MSG-7");
    /* other separators, LF terminators, a 5-character MSH-2, MSA-3 after it, no final CR */
    assert_int_equal(peek("MSH#^~\\&!#R#F#H#F#1##ACK#A1#P#2.7\nMSA#CE#X 1#text", code, id), 0);
    assert_string_equal(code, "CE");
    assert_string_equal(id, "X 1");
    assert_int_equal(peek("MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|\r", code, id), 0);
    assert_string_equal(id, "");
    /* the parser decides: an escape, a repetition or a component in MSA-1/MSA-2, no MSA,
     * no MSA-2, a segment only named MSA, a first MSA without fields before a good one, a
     * control byte, too long, not HL7 */
    const char *hard[] = {
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|M\\F\\7\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|M7~M8\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA^x|M7\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA\rMSA|AA|M7\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSAX|AA|M7\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|M\t7\r",
        "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AAAAAAAA|M7\r",
        "MSH|^~|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|M7\r",
        "HTTP/1.1 400 Bad Request\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(hard) / sizeof(hard[0]); i++)
        assert_int_equal(peek(hard[i], code, id), -1);
    char longid[300] = "MSH|^~\\&|R|F|H|F|1||ACK|A1|P|2.5\rMSA|AA|";
    memset(longid + strlen(longid), 'x', 200);
    assert_int_equal(peek(longid, code, id), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oru_fields),
        cmocka_unit_test(test_get_numbering),
        cmocka_unit_test(test_segment_without_fields),
        cmocka_unit_test(test_terminators),
        cmocka_unit_test(test_custom_delimiters),
        cmocka_unit_test(test_space_escape_char),
        cmocka_unit_test(test_truncation_char),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_encoding_chars_accepted),
        cmocka_unit_test(test_reject_msh_structure),
        cmocka_unit_test(test_reject_required),
        cmocka_unit_test(test_reject_bytes),
        cmocka_unit_test(test_charset_utf8),
        cmocka_unit_test(test_charset_ascii),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_reject_segment_ids),
        cmocka_unit_test(test_reject_second_msh_and_bad_type),
        cmocka_unit_test(test_reject_extracted_too_long),
        cmocka_unit_test(test_msg_without_trigger),
        cmocka_unit_test(test_bitflip_truncation),
        cmocka_unit_test(test_peek_ack),
        cmocka_unit_test(test_every_byte_at_every_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
