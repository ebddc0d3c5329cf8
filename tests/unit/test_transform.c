/* route/transform: golden cases (tests/data/transform/NN-name/{in.hl7,rules,out.hl7|error}),
 * every refusal at compile and at apply. HDX_TRANSFORM_REGEN=1 rewrites the expected files
 * from what the code does now (review the diff before committing it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"
#include "route/transform.h"

static char tmpdir[256];

static int setup(void **state)
{
    return hdx_mkdtemp("hdx-transform-", tmpdir, sizeof tmpdir) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char p[512];
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    if (d != NULL) closedir(d);
    return rmdir(tmpdir);
}

static const char *data_dir(void)
{
    const char *d = getenv("HDX_TEST_DATA");
    return d != NULL ? d : "tests/data";
}

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* Compiles one line against tmpdir and returns the code; err gets the text. */
static int compile1(const char *line, char *err, size_t cap)
{
    struct hdx_transform *t = NULL;
    int rc = hdx_transform_compile(&line, 1, tmpdir, &t, err, cap);
    if (rc == HDX_OK) {
        assert_non_null(t);
        assert_int_equal(hdx_transform_count(t), 1);
    } else {
        assert_null(t);
    }
    hdx_transform_free(t);
    return rc;
}

static void refused(const char *line, const char *want)
{
    char err[512];
    assert_int_equal(compile1(line, err, sizeof err), HDX_E_INVAL);
    if (strstr(err, want) == NULL)
        fail_msg("line \"%s\": got \"%s\", want \"%s\"", line, err, want);
    assert_true(strncmp(err, "transform 1: ", 13) == 0);
}

/* ---- golden cases --------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t read_lines(const char *path, char **buf, const char **lines, size_t max)
{
    uint8_t *b = NULL;
    size_t len = 0, n = 0;
    assert_int_equal(hdx_read_file(path, 1 << 20, &b, &len), HDX_OK);
    *buf = (char *)b;
    for (char *s = *buf, *nl; *s != '\0' && n < max; s = nl + 1) {
        nl = strchr(s, '\n');
        assert_non_null(nl); /* every rule line ends in LF */
        *nl = '\0';
        lines[n++] = s;
    }
    return n;
}

static void run_case(const char *dir, int regen)
{
    char p[2048], err[512], *rbuf = NULL;
    const char *lines[64];
    uint8_t *in = NULL, *want = NULL, *out = NULL;
    size_t in_len = 0, want_len = 0, out_len = 0;
    struct hdx_transform *t = NULL;

    snprintf(p, sizeof p, "%s/rules", dir);
    size_t n = read_lines(p, &rbuf, lines, 64);
    snprintf(p, sizeof p, "%s/in.hl7", dir);
    assert_int_equal(hdx_read_file(p, 1 << 20, &in, &in_len), HDX_OK);
    if (hdx_transform_compile(lines, n, dir, &t, err, sizeof err) != HDX_OK)
        fail_msg("%s: compile: %s", dir, err);
    assert_int_equal(hdx_transform_count(t), (int)n);
    int rc = hdx_transform_apply(t, in, in_len, &out, &out_len, err, sizeof err);
    if (regen) {
        char q[2048];
        snprintf(p, sizeof p, "%s/out.hl7", dir);
        snprintf(q, sizeof q, "%s/error", dir);
        unlink(p);
        unlink(q);
        FILE *f = fopen(rc == HDX_OK ? p : q, "wb");
        assert_non_null(f);
        if (rc == HDX_OK)
            fwrite(out, 1, out_len, f);
        else
            fprintf(f, "%s\n", err);
        fclose(f);
    } else {
        snprintf(p, sizeof p, "%s/out.hl7", dir);
        if (hdx_read_file(p, 1 << 20, &want, &want_len) == HDX_OK) {
            if (rc != HDX_OK) fail_msg("%s: apply: %s", dir, err);
            if (out_len != want_len || memcmp(out, want, out_len) != 0)
                fail_msg("%s: output differs from out.hl7:\n%.*s", dir, (int)out_len,
                         (const char *)out);
        } else {
            snprintf(p, sizeof p, "%s/error", dir);
            assert_int_equal(hdx_read_file(p, 4096, &want, &want_len), HDX_OK);
            if (want_len > 0 && want[want_len - 1] == '\n') want[--want_len] = '\0';
            if (rc == HDX_OK) fail_msg("%s: applied, want error \"%s\"", dir, (char *)want);
            assert_int_equal(rc, HDX_E_INVAL);
            assert_null(out);
            assert_string_equal(err, (char *)want);
        }
    }
    if (rc == HDX_OK) {
        /* Every output re-parses and keeps the control id. */
        struct hl7_msg a, b;
        struct hl7_error e;
        assert_int_equal(hl7_parse(in, in_len, NULL, &a, &e), 0);
        assert_int_equal(hl7_parse(out, out_len, NULL, &b, &e), 0);
        assert_string_equal(a.control_id, b.control_id);
        assert_int_equal(out[out_len - 1], '\r');
        assert_null(memchr(out, '\n', out_len));
        hl7_msg_free(&a);
        hl7_msg_free(&b);
    }
    free(out);
    free(want);
    free(in);
    free(rbuf);
    hdx_transform_free(t);
}

static void test_golden(void **state)
{
    char root[512], dir[1024];
    char *names[128];
    size_t n = 0;
    const char *regen = getenv("HDX_TRANSFORM_REGEN");

    snprintf(root, sizeof root, "%s/transform", data_dir());
    DIR *d = opendir(root);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.') continue;
        assert_true(n < 128);
        names[n] = strdup(de->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], name_cmp);
    assert_true(n >= 20);
    for (size_t i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        run_case(dir, regen != NULL && strcmp(regen, "1") == 0);
        free(names[i]);
    }
    print_message("transform: %zu golden cases\n", n);
}

/* ---- compile refusals ----------------------------------------------------------------- */

static void test_refuse_msh_fields(void **state)
{
    refused("set MSH-10 = X", "MSH-10 (the control id");
    refused("clear MSH-10", "MSH-10 (the control id");
    refused("map MSH-10 t.tsv", "MSH-10 (the control id");
    refused("copy PID-3 to MSH-10", "MSH-10 (the control id");
    refused("copy MSH-10 to ZZZ-1", "MSH-10 (the control id");
    refused("set MSH-10.1 = X", "MSH-10 (the control id");
    refused("set MSH-1 = #", "MSH-1 and MSH-2 hold the delimiters");
    refused("clear MSH-2", "MSH-1 and MSH-2 hold the delimiters");
    refused("set MSH[2]-3 = X", "a message has one MSH");
}

static void test_refuse_bad_address(void **state)
{
    const char *bad[] = {
        "set pid-3 = X",        "set PI-3 = X",
        "set PIDX-3 = X",       "set PID = X",
        "set PID- = X",         "set PID-0 = X",
        "set PID-03 = X",       "set PID-501 = X",
        "set PID-3. = X",       "set PID-3.0 = X",
        "set PID-3.101 = X",    "set PID-3.1.0 = X",
        "set PID-3.1.1.1 = X",  "set PID[0]-3 = X",
        "set PID[10001]-3 = X", "set PID[1-3 = X",
        "clear PID-3x",         "copy PID-3 to",
        "copy PID-3 PID-2",     "clear",
        "set PID-3.1 X",        "copy PID-3 to PID-2 extra",
        "clear PID-3 PID-4",
    };
    char err[512];
    for (size_t i = 0; i < HDX_ARRAY_LEN(bad); i++) {
        if (compile1(bad[i], err, sizeof err) != HDX_E_INVAL) fail_msg("accepted \"%s\"", bad[i]);
        assert_true(strncmp(err, "transform 1: ", 13) == 0);
    }
    refused("set PID-0 = X", "bad field address PID-0");
    refused("set PID[0]-3 = X", "occurrence must be 1..10000");
    /* Accepted forms, for contrast. */
    assert_int_equal(compile1("set PID[2]-3.4.2 = X", err, sizeof err), HDX_OK);
    assert_int_equal(compile1("set ZP1-500.100.100 = X", err, sizeof err), HDX_OK);
    assert_int_equal(compile1("set PID-3.1=X", err, sizeof err), HDX_OK);
    assert_int_equal(compile1("  clear PID-19   # a comment", err, sizeof err), HDX_OK);
}

static void test_refuse_verbs_and_values(void **state)
{
    refused("delete PID-3", "unknown verb");
    refused("SET PID-3 = X", "unknown verb");
    refused("", "empty transform");
    refused("# only a comment", "empty transform");
    refused("strip MSH", "would remove MSH");
    refused("strip M*", "would remove MSH");
    refused("strip MS*", "would remove MSH");
    refused("strip *", "would remove MSH");
    refused("strip Z", "want a segment id");
    refused("strip ZABC*", "want a segment id");
    refused("strip nte", "upper-case");
    refused("strip NTE ZZZ", "one segment id");
    refused("version 2.4", "target must be 2.3 or 2.5.1");
    refused("version", "target must be 2.3 or 2.5.1");
    refused("version 2.3 2.5.1", "one target version");
    refused("set PID-3 = \"unterminated", "unterminated quoted value");
    refused("set PID-3 = \"a\" b", "text after the quoted value");
    refused("set PID-3 = \"a\\n\"", "may be escaped");
    refused("set PID-3 = tab\there", "control byte");
    refused("set PID-3 = \xff\xfe", "not UTF-8");
    char big[HDX_TRANSFORM_VALUE_MAX + 32];
    snprintf(big, sizeof big, "set PID-3 = %0*d", HDX_TRANSFORM_VALUE_MAX + 1, 0);
    refused(big, "value over 1024 bytes");
    char line[HDX_TRANSFORM_LINE_MAX + 8];
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    refused(line, "longer than 4096 bytes");
    /* N is the 1-based index of the failing line. */
    const char *lines[] = {"clear PID-19", "set PID-3 = ok", "set MSH-10 = X"};
    struct hdx_transform *t = NULL;
    char err[512];
    assert_int_equal(hdx_transform_compile(lines, 3, tmpdir, &t, err, sizeof err), HDX_E_INVAL);
    assert_null(t);
    assert_true(strncmp(err, "transform 3: ", 13) == 0);
}

static void test_refuse_tables(void **state)
{
    char err[512];
    refused("map OBX-3.1 missing.tsv", "map: table missing.tsv: cannot open");
    refused("map OBX-3.1 ../etc/passwd", "plain file name");
    refused("map OBX-3.1 /etc/passwd", "plain file name");
    refused("map OBX-3.1 .hidden", "plain file name");
    refused("map OBX-3.1", "want map ADDR TABLE");
    write_file(tmpdir, "ok.tsv", "A\tB\r\n# c\n\nC\t\n", 13);
    assert_int_equal(compile1("map OBX-3.1 ok.tsv", err, sizeof err), HDX_OK);
    assert_int_equal(compile1("map OBX-3.1 ok.tsv default reject", err, sizeof err), HDX_OK);
    refused("map OBX-3.1 ok.tsv default drop", "default must be keep, clear or reject");
    refused("map OBX-3.1 ok.tsv fallback keep", "want map ADDR TABLE");
    refused("map OBX-3.1 ok.tsv default keep extra", "text after the default");
    char dir_in_tmp[600];
    snprintf(dir_in_tmp, sizeof dir_in_tmp, "%s/sub.tsv", tmpdir);
    assert_int_equal(mkdir(dir_in_tmp, 0700), 0);
    refused("map OBX-3.1 sub.tsv", "not a regular file");
    rmdir(dir_in_tmp);
    write_file(tmpdir, "dup.tsv", "A\t1\nB\t2\nA\t3\n", 12);
    refused("map OBX-3.1 dup.tsv", "map: dup.tsv:3: duplicate key (first at line 1)");
    write_file(tmpdir, "notab.tsv", "A\t1\nB 2\n", 8);
    refused("map OBX-3.1 notab.tsv", "map: notab.tsv:2: want from<TAB>to");
    write_file(tmpdir, "twotabs.tsv", "A\t1\t2\n", 6);
    refused("map OBX-3.1 twotabs.tsv", "twotabs.tsv:1: want from<TAB>to");
    write_file(tmpdir, "emptykey.tsv", "\t1\n", 3);
    refused("map OBX-3.1 emptykey.tsv", "emptykey.tsv:1: empty key");
    write_file(tmpdir, "ctl.tsv", "A\x01\t1\n", 5);
    refused("map OBX-3.1 ctl.tsv", "ctl.tsv:1: key or value");
    /* Over the row limit, then over the byte limit. */
    size_t rows = HDX_TRANSFORM_TABLE_ROWS + 1, len = 0;
    char *big = malloc(HDX_TRANSFORM_TABLE_BYTES + 16);
    assert_non_null(big);
    for (size_t i = 0; i < rows; i++)
        len += (size_t)sprintf(big + len, "%zu\tx\n", i);
    write_file(tmpdir, "rows.tsv", big, len);
    refused("map OBX-3.1 rows.tsv", "more than 100000 rows");
    /* Exactly the row limit is fine. */
    len = 0;
    for (size_t i = 0; i < HDX_TRANSFORM_TABLE_ROWS; i++)
        len += (size_t)sprintf(big + len, "%zu\tx\n", i);
    write_file(tmpdir, "maxrows.tsv", big, len);
    assert_int_equal(compile1("map OBX-3.1 maxrows.tsv", err, sizeof err), HDX_OK);
    memset(big, '#', HDX_TRANSFORM_TABLE_BYTES + 1);
    write_file(tmpdir, "bytes.tsv", big, HDX_TRANSFORM_TABLE_BYTES + 1);
    refused("map OBX-3.1 bytes.tsv", "larger than 8388608 bytes");
    free(big);
    /* No base directory at all. */
    const char *line = "map OBX-3.1 ok.tsv";
    struct hdx_transform *t = NULL;
    assert_int_equal(hdx_transform_compile(&line, 1, NULL, &t, err, sizeof err), HDX_E_INVAL);
    assert_non_null(strstr(err, "no usable base directory"));
}

/* ---- apply ---------------------------------------------------------------------------- */

static const char MSG[] = "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C42|P|2.5.1\r"
                          "PID|1||123^^^X^MR||DOE^J\r"
                          "OBX|1|ST|AAA^a||v1\r"
                          "OBX|2|ST|BBB^b||v2\r";

static int apply_lines(const char *const *lines, size_t n, const void *msg, size_t len,
                       uint8_t **out, size_t *out_len, char *err, size_t cap)
{
    struct hdx_transform *t = NULL;
    assert_int_equal(hdx_transform_compile(lines, n, tmpdir, &t, err, cap), HDX_OK);
    int rc = hdx_transform_apply(t, msg, len, out, out_len, err, cap);
    hdx_transform_free(t);
    if (rc != HDX_OK) assert_null(*out);
    return rc;
}

/* A '#' after a blank starts a comment, except in a value quoted right after '='; a '"'
 * inside an unquoted value is an ordinary character. */
static void test_values_and_comments(void **state)
{
    const struct {
        const char *line, *want;
    } cases[] = {
        {"set PID-5 = 5\" tall # a comment", "PID|1||123^^^X^MR||5\" tall\r"},
        {"set PID-5 = \"a # b\"   # c", "PID|1||123^^^X^MR||a # b\r"},
        {"set PID-5 = \"say \\\"hi\\\" \\\\ \"", "PID|1||123^^^X^MR||say \"hi\" \\E\\ \r"},
        {"set PID-5 = \"\"", "PID|1||123^^^X^MR||\r"},
        {"set PID-5 =", "PID|1||123^^^X^MR||\r"},
        {"set PID-5 = a#b", "PID|1||123^^^X^MR||a#b\r"},
        {"set PID-5.2 = x", "PID|1||123^^^X^MR||DOE^x\r"},
        {"set PID-5.3 = x", "PID|1||123^^^X^MR||DOE^J^x\r"},
        {"set PID-3 = 9", "PID|1||9||DOE^J\r"},
        {"set PID-1.1.2 = s", "PID|1&s||123^^^X^MR||DOE^J\r"},
        {"set PID[2]-1 = none", "PID|1||123^^^X^MR||DOE^J\r"},
    };
    for (size_t i = 0; i < HDX_ARRAY_LEN(cases); i++) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        char err[256];
        assert_int_equal(
            apply_lines(&cases[i].line, 1, MSG, strlen(MSG), &out, &out_len, err, sizeof err),
            HDX_OK);
        if (memmem(out, out_len, cases[i].want, strlen(cases[i].want)) == NULL)
            fail_msg("\"%s\": got %.*s", cases[i].line, (int)out_len, (const char *)out);
        free(out);
    }
}

static void test_apply_copies_when_empty(void **state)
{
    struct hdx_transform *t = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    assert_int_equal(hdx_transform_compile(NULL, 0, NULL, &t, err, sizeof err), HDX_OK);
    assert_int_equal(hdx_transform_count(t), 0);
    const char lf[] = "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C42|P|2.5.1\nPID|1\r\n\r\nOBX|1";
    assert_int_equal(
        hdx_transform_apply(t, (const uint8_t *)lf, strlen(lf), &out, &out_len, err, sizeof err),
        HDX_OK);
    const char want[] = "MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C42|P|2.5.1\rPID|1\rOBX|1\r";
    assert_int_equal(out_len, strlen(want));
    assert_memory_equal(out, want, out_len);
    free(out);
    hdx_transform_free(t);
    hdx_transform_free(NULL);
    assert_int_equal(hdx_transform_count(NULL), 0);
}

static void test_apply_reject_unmapped(void **state)
{
    uint8_t *out = (uint8_t *)"x";
    size_t out_len = 7;
    char err[256];
    write_file(tmpdir, "codes.tsv", "AAA\tA1\n", 7);
    const char *lines[] = {"clear PID-5", "map OBX-3.1 codes.tsv default reject"};
    assert_int_equal(apply_lines(lines, 2, MSG, strlen(MSG), &out, &out_len, err, sizeof err),
                     HDX_E_INVAL);
    assert_string_equal(err, "transform 2: map OBX-3.1: code not in codes.tsv");
    assert_int_equal(out_len, 0);
    /* With BBB in the table, both map. */
    write_file(tmpdir, "codes.tsv", "AAA\tA1\nBBB\tB^1\n", 15);
    assert_int_equal(apply_lines(lines, 2, MSG, strlen(MSG), &out, &out_len, err, sizeof err),
                     HDX_OK);
    assert_non_null(memmem(out, out_len, "OBX|1|ST|A1^a||v1\r", 18));
    assert_non_null(memmem(out, out_len, "OBX|2|ST|B\\S\\1^b||v2\r", 21));
    assert_non_null(memmem(out, out_len, "PID|1||123^^^X^MR||\r", 20));
    free(out);
}

static void test_apply_unparsable(void **state)
{
    const char *line = "clear PID-19";
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    const char *bad[] = {"", "PID|1", "MSH|^~\\&|A", "MSH|^~\\&|A|B|C|D|2026||ORU^R01||P|2.5\r",
                         "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C1|P|2.5\rPID|\x0b"};
    for (size_t i = 0; i < HDX_ARRAY_LEN(bad); i++) {
        assert_int_equal(apply_lines(&line, 1, bad[i], strlen(bad[i]) + (i == 4), &out, &out_len,
                                     err, sizeof err),
                         HDX_E_INVAL);
        assert_true(strncmp(err, "input: not a valid HL7 v2 message (", 35) == 0);
    }
    /* A NUL byte inside, and message bytes never reach the error text. */
    const char nul[] = "MSH|^~\\&|SECRETAPP|B|C|D|2026||ORU^R01|C1|P|2.5\rPID|1||SECRET\0X\r";
    assert_int_equal(apply_lines(&line, 1, nul, sizeof nul - 1, &out, &out_len, err, sizeof err),
                     HDX_E_INVAL);
    assert_null(strstr(err, "SECRET"));
}

static void test_apply_output_bound(void **state)
{
    /* 200 two-byte segments: input ~1 KiB, bound ~66 KiB, 200 x 1 KiB values exceed it. */
    char msg[4096], line[HDX_TRANSFORM_VALUE_MAX + 32];
    size_t n = (size_t)snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C9|P|2.5\r");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(msg + n, sizeof msg - n, "ZZZ\r");
    snprintf(line, sizeof line, "set ZZZ-1 = %0*d", HDX_TRANSFORM_VALUE_MAX, 7);
    const char *lines[] = {"clear ZZZ-1", line};
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    assert_int_equal(apply_lines(lines, 2, msg, n, &out, &out_len, err, sizeof err), HDX_E_INVAL);
    assert_string_equal(err, "transform 2: set: output over the bound (2 x input + 64 KiB)");
    /* Padding counts too. */
    const char *pad = "set ZZZ-500.100.100 = x";
    assert_int_equal(apply_lines(&pad, 1, msg, n, &out, &out_len, err, sizeof err), HDX_E_INVAL);
    assert_string_equal(err, "transform 1: set: output over the bound (2 x input + 64 KiB)");
    /* 50 occurrences fit (50 KiB < 66 KiB). */
    const char *one = line;
    n = (size_t)snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C9|P|2.5\r");
    for (int i = 0; i < 50; i++)
        n += (size_t)snprintf(msg + n, sizeof msg - n, "ZZZ\r");
    assert_int_equal(apply_lines(&one, 1, msg, n, &out, &out_len, err, sizeof err), HDX_OK);
    assert_true(out_len > 50 * HDX_TRANSFORM_VALUE_MAX && out_len <= 2 * n + 65536);
    free(out);
}

static void test_apply_output_must_reparse(void **state)
{
    /* MSH-9 may hold only letters, digits, '_' and '-': an escaped value there fails the
     * defensive re-parse, never leaves. So does a PID-3.1 the parser cannot hold. */
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    const char *l1 = "set MSH-9.1 = A B";
    assert_int_equal(apply_lines(&l1, 1, MSG, strlen(MSG), &out, &out_len, err, sizeof err),
                     HDX_E_INVAL);
    assert_true(strncmp(err, "output: does not re-parse (", 27) == 0);
    char big[300];
    snprintf(big, sizeof big, "set PID-3.1 = %0250d", 1);
    const char *l2 = big;
    assert_int_equal(apply_lines(&l2, 1, MSG, strlen(MSG), &out, &out_len, err, sizeof err),
                     HDX_E_INVAL);
    assert_true(strncmp(err, "output: does not re-parse (", 27) == 0);
}

static void test_apply_copy_limits(void **state)
{
    char msg[16384];
    size_t n =
        (size_t)snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C9|P|2.5\rNTE|1||");
    memset(msg + n, 'a', HDX_TRANSFORM_COPY_MAX + 1);
    n += HDX_TRANSFORM_COPY_MAX + 1;
    msg[n++] = '\r';
    const char *line = "copy NTE-3 to NTE-4";
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    assert_int_equal(apply_lines(&line, 1, msg, n, &out, &out_len, err, sizeof err), HDX_E_INVAL);
    assert_string_equal(err, "transform 1: copy NTE-3: source longer than 8192 bytes");
    n -= 2; /* exactly the limit */
    msg[n++] = '\r';
    assert_int_equal(apply_lines(&line, 1, msg, n, &out, &out_len, err, sizeof err), HDX_OK);
    free(out);
}

static void test_apply_version_errors(void **state)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    char err[256];
    const char *line = "version 2.3";
    const char *vs[] = {"2.4", "2.5.1x", "2.", "2.3.", "", "2.51", "2.30"};
    for (size_t i = 0; i < HDX_ARRAY_LEN(vs); i++) {
        char msg[256];
        int n =
            snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C9|P|%s\rPID|1\r", vs[i]);
        assert_int_equal(apply_lines(&line, 1, msg, (size_t)n, &out, &out_len, err, sizeof err),
                         HDX_E_INVAL);
        assert_string_equal(err,
                            "transform 1: version: message version (MSH-12) is neither 2.3.x nor "
                            "2.5.x");
    }
    const char *ok[] = {"2.3.1", "2.5", "2.5.1", "2.5.1^NLD", "2.3"};
    for (size_t i = 0; i < HDX_ARRAY_LEN(ok); i++) {
        char msg[256];
        int n =
            snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|2026||ORU^R01|C9|P|%s\rPID|1\r", ok[i]);
        assert_int_equal(apply_lines(&line, 1, msg, (size_t)n, &out, &out_len, err, sizeof err),
                         HDX_OK);
        assert_non_null(memmem(out, out_len, "|ORU^R01|C9|P|2.3\r", 18));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_refuse_msh_fields),
        cmocka_unit_test(test_refuse_bad_address),
        cmocka_unit_test(test_refuse_verbs_and_values),
        cmocka_unit_test(test_refuse_tables),
        cmocka_unit_test(test_values_and_comments),
        cmocka_unit_test(test_apply_copies_when_empty),
        cmocka_unit_test(test_apply_reject_unmapped),
        cmocka_unit_test(test_apply_unparsable),
        cmocka_unit_test(test_apply_output_bound),
        cmocka_unit_test(test_apply_output_must_reparse),
        cmocka_unit_test(test_apply_copy_limits),
        cmocka_unit_test(test_apply_version_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
