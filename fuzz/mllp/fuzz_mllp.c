/* fuzz_mllp: libFuzzer entry point for MLLP framing.
 * Input layout: 8 header bytes, then the byte stream. Header bytes 0-1 give max_frame
 * (0..4095), byte 2 bit 0 whether the caller resets *resume after draining garbage (the
 * contract allows both), bytes 3-7 a cycle of chunk sizes (1..64) in which the stream is
 * delivered to a growing receive buffer, drained as mllp.h says.
 * The frames delivered must equal those of a naive one-shot reference scanner over the
 * whole stream, whatever the chunking: this is what proves the resume logic. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mllp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 8
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

struct ref {
    size_t *off, *len; /* frames, as offsets into the stream */
    size_t n;
    bool too_big;
};

/* One frame at or after pos: 1 = frame, 0 = need more, 2 = too big. Deliberately naive. */
static int ref_next(const uint8_t *s, size_t n, size_t pos, size_t max, size_t *off, size_t *len,
                    size_t *next)
{
    size_t i = pos;

    while (i < n && s[i] != MLLP_SB)
        i++;
    if (i == n) return 0;
    size_t start = i + 1;
    for (size_t k = 0; start + k < n; k++) {
        if (s[start + k] == MLLP_EB) {
            if (start + k + 1 == n) return 0;
            if (s[start + k + 1] == MLLP_CR) {
                *off = start;
                *len = k;
                *next = start + k + 2;
                return 1;
            }
        }
        if (k >= max) return 2; /* the payload already holds max + 1 bytes */
    }
    return 0;
}

static void ref_scan(const uint8_t *s, size_t n, size_t max, struct ref *r)
{
    size_t pos = 0, off, len, next;
    int st;

    r->n = 0;
    r->too_big = false;
    while ((st = ref_next(s, n, pos, max, &off, &len, &next)) == 1) {
        r->off[r->n] = off;
        r->len[r->n] = len;
        r->n++;
        pos = next;
    }
    r->too_big = st == 2;
}

static void check_sane(const uint8_t *b, size_t len, size_t max, enum mllp_status st,
                       const struct mllp_scan *sc)
{
    CHECK(sc->garbage <= len && memchr(b, MLLP_SB, sc->garbage) == NULL);
    if (st != MLLP_FRAME) {
        CHECK(sc->consumed == 0);
        return;
    }
    CHECK(sc->payload_off == sc->garbage + 1 && b[sc->garbage] == MLLP_SB);
    CHECK(sc->payload_len <= max && sc->consumed == sc->payload_off + sc->payload_len + 2);
    CHECK(sc->consumed <= len && b[sc->consumed - 2] == MLLP_EB && b[sc->consumed - 1] == MLLP_CR);
}

/* Drives mllp_scan chunk by chunk; returns whether it ended on TOO_BIG. */
static bool drive(const uint8_t *hdr, const uint8_t *s, size_t n, uint8_t *rx, const struct ref *r)
{
    size_t max = ((size_t)hdr[0] | (size_t)hdr[1] << 8) & 0x0FFF;
    bool reset = (hdr[2] & 1) != 0;
    size_t have = 0, fed = 0, resume = 0, got = 0, base = 0; /* base: stream offset of rx[0] */
    struct mllp_scan sc;

    for (size_t c = 0; fed < n; c++) {
        size_t chunk = (size_t)(hdr[3 + c % 5] % 64) + 1;
        chunk = chunk < n - fed ? chunk : n - fed;
        memcpy(rx + have, s + fed, chunk);
        have += chunk;
        fed += chunk;
        for (;;) {
            enum mllp_status st = mllp_scan(rx, have, max, &resume, &sc);
            check_sane(rx, have, max, st, &sc);
            if (st == MLLP_TOO_BIG) {
                CHECK(got == r->n);
                return true;
            }
            if (st == MLLP_NEED_MORE) {
                memmove(rx, rx + sc.garbage, have - sc.garbage);
                have -= sc.garbage;
                base += sc.garbage;
                if (sc.garbage != 0 && reset) resume = 0;
                break;
            }
            CHECK(got < r->n && r->off[got] == base + sc.payload_off &&
                  r->len[got] == sc.payload_len);
            got++;
            memmove(rx, rx + sc.consumed, have - sc.consumed);
            have -= sc.consumed;
            base += sc.consumed;
            resume = 0;
        }
    }
    CHECK(got == r->n);
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR) return 0;
    const uint8_t *s = data + HDR;
    size_t n = size - HDR;
    size_t max = ((size_t)data[0] | (size_t)data[1] << 8) & 0x0FFF;
    struct ref r;
    uint8_t *rx = malloc(n + 1);

    r.off = malloc((n / 3 + 1) * sizeof *r.off);
    r.len = malloc((n / 3 + 1) * sizeof *r.len);
    if (rx == NULL || r.off == NULL || r.len == NULL) abort();
    ref_scan(s, n, max, &r);
    CHECK(drive(data, s, n, rx, &r) == r.too_big);
    uint8_t wrapped[64];
    size_t w = mllp_wrap(s, n < 61 ? n : 61, wrapped, sizeof wrapped);
    CHECK(w == (n < 61 ? n : 61) + 3 && wrapped[0] == MLLP_SB && wrapped[w - 1] == MLLP_CR);
    free(r.len);
    free(r.off);
    free(rx);
    return 0;
}
