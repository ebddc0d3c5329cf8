/* fuzz_http_answer: libFuzzer entry point for the answers of HTTPS route destinations
 * (proto/http.h http_answer_feed). The first input byte chooses how the rest is cut into
 * reads (as the network would), the rest is what the destination sent; then the peer closes.
 * Traps when: the answer fed whole and the answer fed in pieces end differently (result,
 * status, keep-alive): framing must not depend on where reads end; a complete answer has a
 * status outside 200..999 (1xx answers are interim and skipped); a refusal has no reason; a
 * feed after completion reads anything or changes the answer; more than HTTP_ANSWER_MAX bytes
 * were taken before completion. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

struct outcome {
    enum http_result r;
    unsigned status;
    int keepalive;
};

static struct outcome run(const uint8_t *p, size_t n, unsigned step)
{
    struct http_answer a;
    struct outcome o = {HTTP_NEED_MORE, 0, 0};
    const char *why = NULL;
    http_answer_init(&a);
    size_t off = 0;
    while (o.r == HTTP_NEED_MORE && off < n) {
        size_t k = step ? step : n - off;
        if (k > n - off) k = n - off;
        o.r = http_answer_feed(&a, p + off, k, &why);
        off += k;
        if (step) step = step * 3 % 61 + 1; /* uneven pieces */
    }
    if (o.r == HTTP_NEED_MORE) o.r = http_answer_feed(&a, NULL, 0, &why);
    CHECK(o.r != HTTP_NEED_MORE); /* the peer closed: done either way */
    if (o.r == HTTP_ERROR) {
        CHECK(why != NULL && why[0] != '\0');
        CHECK(!a.complete);
        return o;
    }
    CHECK(a.complete && a.status >= 200 && a.status <= 999);
    CHECK(a.fed <= HTTP_ANSWER_MAX);
    o.status = a.status;
    o.keepalive = a.keepalive;
    /* completion is sticky */
    size_t fed = a.fed;
    CHECK(http_answer_feed(&a, (const uint8_t *)"HTTP/1.1 500 X\r\n\r\n", 18, &why) == HTTP_OK);
    CHECK(a.fed == fed && a.status == o.status && a.keepalive == o.keepalive);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned step = data[0] % 17 + 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct outcome whole = run(p, n, 0), pieces = run(p, n, step);
    CHECK(whole.r == pieces.r);
    CHECK(whole.status == pieces.status && whole.keepalive == pieces.keepalive);
    return 0;
}
