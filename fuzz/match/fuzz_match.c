/* fuzz_match: route/match.h. Input: a match expression, a NUL byte, then an HL7 message.
 * Whatever compiles evaluates to 0 or 1 on the message (when it parses), and its canonical
 * text compiles to an expression that describes the same and evaluates the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/hl7.h"
#include "route/match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    char *text = malloc(tlen + 1);
    if (!text) return 0;
    memcpy(text, data, tlen);
    text[tlen] = 0;
    struct hdx_match *m = NULL;
    char err[256];
    err[0] = 0;
    int rc = hdx_match_compile(text, &m, err, sizeof(err));
    if (rc != HDX_OK) {
        if (m || strncmp(err, "column ", 7) != 0 || !memchr(err, 0, sizeof(err))) abort();
        free(text);
        return 0;
    }
    char d1[8192], d2[8192];
    if (hdx_match_describe(m, d1, sizeof(d1)) < 0) abort();
    struct hdx_match *m2 = NULL;
    if (hdx_match_compile(d1, &m2, err, sizeof(err)) != HDX_OK) abort();
    if (hdx_match_describe(m2, d2, sizeof(d2)) < 0 || strcmp(d1, d2) != 0) abort();
    if (hdx_match_index_only(m) != hdx_match_index_only(m2)) abort();
    if (nul) {
        struct hl7_msg msg;
        struct hl7_error e;
        size_t mlen = size - tlen - 1;
        uint8_t *body = malloc(mlen ? mlen : 1); /* exact size: reads past it are caught */
        if (body) {
            memcpy(body, nul + 1, mlen);
            if (hl7_parse(body, mlen, NULL, &msg, &e) == 0) {
                int a = hdx_match_eval(m, &msg, "mon-01"), b = hdx_match_eval(m2, &msg, "mon-01");
                if ((a != 0 && a != 1) || a != b) abort();
                hl7_msg_free(&msg);
            }
            free(body);
        }
    }
    hdx_match_free(m2);
    hdx_match_free(m);
    free(text);
    return 0;
}
