/* fuzz_match: libFuzzer entry point for route source filters (route/match.h), the `match =`
 * line of a route (operator text) evaluated on an HL7 v2 message (untrusted). Input: the
 * expression text, a NUL byte, then the message (no NUL: no message). Beyond "no crash", it
 * traps when a refusal is not "column N: ..." or leaves a match behind; when the canonical text
 * of an accepted expression does not compile, or compiles to another canonical text, another
 * index_only, or another answer on the message; when eval gives anything but 0 or 1; when the
 * index decision (hdx_match_eval_index) differs from eval for an index-only expression or is
 * not -1 for another; when "not (canonical)" does not give the opposite answer; when describe
 * into a buffer one byte short does not say -1. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/hl7.h"
#include "route/match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static const char *const senders[] = {"", "mon-1", "ward 3 bed 2"};

static int eval_checked(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender)
{
    int r = hdx_match_eval(m, msg, sender);
    CHECK(r == 0 || r == 1);
    int ri = hdx_match_eval_index(m, msg != NULL ? msg->msg_type : "", sender);
    if (hdx_match_index_only(m))
        CHECK(msg == NULL || ri == r);
    else
        CHECK(ri == -1);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul != NULL ? (size_t)(nul - data) : size;
    char *text = malloc(tlen + 1);
    if (text == NULL) return 0;
    memcpy(text, data, tlen);
    text[tlen] = 0;

    struct hdx_match *m = (struct hdx_match *)text, *m2 = NULL, *mn = NULL;
    char err[128], d1[HDX_MATCH_TEXT_MAX + 1], d2[HDX_MATCH_TEXT_MAX + 1];
    char neg[HDX_MATCH_TEXT_MAX + 16];
    int rc = hdx_match_compile(text, &m, err, sizeof(err));
    if (rc != HDX_OK) {
        CHECK(rc == HDX_E_INVAL && m == NULL);
        CHECK(memchr(err, 0, sizeof(err)) != NULL && strncmp(err, "column ", 7) == 0);
        free(text);
        return 0;
    }
    int n = hdx_match_describe(m, d1, sizeof(d1));
    CHECK(n > 0 && n <= HDX_MATCH_TEXT_MAX && (size_t)n == strlen(d1));
    CHECK(hdx_match_describe(m, d2, (size_t)n) == -1);
    CHECK(hdx_match_compile(d1, &m2, err, sizeof(err)) == HDX_OK);
    CHECK(hdx_match_describe(m2, d2, sizeof(d2)) == n && memcmp(d1, d2, (size_t)n + 1) == 0);
    CHECK(hdx_match_index_only(m) == hdx_match_index_only(m2));
    memcpy(neg, "not (", 5);
    memcpy(neg + 5, d1, (size_t)n);
    memcpy(neg + 5 + n, ")", 2);
    if (hdx_match_compile(neg, &mn, err, sizeof(err)) != HDX_OK) mn = NULL; /* may nest 17 */

    struct hl7_msg msg;
    struct hl7_error e;
    int parsed = nul != NULL && hl7_parse(nul + 1, size - tlen - 1, NULL, &msg, &e) == 0;
    for (size_t i = 0; i < sizeof(senders) / sizeof(senders[0]); i++) {
        const struct hl7_msg *mp = parsed ? &msg : NULL;
        int r = eval_checked(m, mp, senders[i]);
        CHECK(eval_checked(m2, mp, senders[i]) == r);
        if (mn != NULL) CHECK(eval_checked(mn, mp, senders[i]) == !r);
    }
    if (parsed) hl7_msg_free(&msg);
    hdx_match_free(mn);
    hdx_match_free(m2);
    hdx_match_free(m);
    free(text);
    return 0;
}
