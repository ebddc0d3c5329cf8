/* fuzz_transform: libFuzzer entry point for route/transform (compile and apply).
 * Input: transform lines separated by LF, a NUL, then the message. One table, t.tsv, is
 * written once into a temporary directory at start-up, so "map ADDR t.tsv" compiles.
 * Beyond "no crash", it traps on broken promises: a compile error names a line that exists;
 * an accepted message gives output within 2 x input + 64 KiB that re-parses under default
 * limits, is CR-terminated and keeps the input's MSH-10; a refusal leaves no output and an
 * error text of one of the three documented forms; applying twice gives the same bytes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"
#include "route/transform.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

#define MAX_LINES 16

static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char table[] = "# fuzz table\nLDL\t13457-7\nHDL\t2085-9\nA\tB^C\nX\t\n";
    char path[512];

    if (hdx_mkdtemp("hdx-fuzz-transform-", dir, sizeof dir) != 0) abort();
    snprintf(path, sizeof path, "%s/t.tsv", dir);
    if (hdx_write_new_file(path, table, sizeof table - 1, 0600) != 0) abort();
    return 0;
}

static bool err_form_ok(const char *err)
{
    unsigned n;
    char colon;
    if (strncmp(err, "input: ", 7) == 0 || strncmp(err, "output: ", 8) == 0) return true;
    return sscanf(err, "transform %u%c", &n, &colon) == 2 && colon == ':' && n >= 1;
}

static void apply_and_check(const struct hdx_transform *t, const uint8_t *msg, size_t len)
{
    uint8_t *out = (uint8_t *)"", *again = NULL;
    size_t out_len = 1, again_len = 0;
    char err[512];

    int rc = hdx_transform_apply(t, msg, len, &out, &out_len, err, sizeof err);
    if (rc != HDX_OK) {
        CHECK(rc == HDX_E_INVAL && out == NULL && out_len == 0 && err_form_ok(err));
        return;
    }
    CHECK(out != NULL && out_len > 0 && out_len <= 2 * len + 65536);
    CHECK(out[out_len - 1] == '\r' && memchr(out, '\n', out_len) == NULL);
    struct hl7_msg a, b;
    struct hl7_error e;
    CHECK(hl7_parse(msg, len, NULL, &a, &e) == 0);
    CHECK(hl7_parse(out, out_len, NULL, &b, &e) == 0);
    CHECK(strcmp(a.control_id, b.control_id) == 0);
    CHECK(b.segs[0].off == 0 && memcmp(out, "MSH", 3) == 0);
    hl7_msg_free(&a);
    hl7_msg_free(&b);
    /* Immutable once compiled: the same input gives the same bytes. */
    CHECK(hdx_transform_apply(t, msg, len, &again, &again_len, err, sizeof err) == HDX_OK);
    CHECK(again_len == out_len && memcmp(again, out, out_len) == 0);
    free(again);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (nul == NULL) return 0;
    size_t rules_len = (size_t)(nul - data);
    char *rules = malloc(rules_len + 1);
    if (rules == NULL) return 0;
    memcpy(rules, data, rules_len);
    rules[rules_len] = '\0';
    const char *lines[MAX_LINES];
    size_t n = 0;
    for (char *s = rules; n < MAX_LINES;) {
        lines[n++] = s;
        char *nl = strchr(s, '\n');
        if (nl == NULL) break;
        *nl = '\0';
        s = nl + 1;
    }
    if (rules_len == 0) n = 0;

    struct hdx_transform *t = NULL;
    char err[512];
    int rc = hdx_transform_compile(lines, n, dir, &t, err, sizeof err);
    if (rc != HDX_OK) {
        unsigned k;
        CHECK(rc == HDX_E_INVAL && t == NULL);
        CHECK(sscanf(err, "transform %u:", &k) == 1 && k >= 1 && k <= n);
    } else {
        CHECK(t != NULL && hdx_transform_count(t) == (int)n);
        /* An exact-size heap copy, so ASan sees any read past the message. */
        size_t len = size - rules_len - 1;
        uint8_t *msg = malloc(len > 0 ? len : 1);
        if (msg != NULL) {
            memcpy(msg, nul + 1, len);
            apply_and_check(t, msg, len);
            free(msg);
        }
    }
    hdx_transform_free(t);
    free(rules);
    return 0;
}
