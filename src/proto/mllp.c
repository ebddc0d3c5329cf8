/* mllp: MLLP framing (see mllp.h for the contract).
 *
 * DESIGN: the scanner is a pure function of (buf, len, max_frame, *resume). The only state
 * carried between calls is *resume, which counts payload bytes already known not to start
 * an end block. It is relative to the payload start, not to buf, so it stays correct when
 * the caller drains leading garbage without resetting it, and a reset to 0 merely costs one
 * re-scan of the partial payload. Each payload byte is therefore examined O(1) times over
 * the life of a frame, however the bytes arrive.
 *
 * Invariants:
 *  1. Nothing past buf[len) is read; no payload byte beyond max_frame + 1 is examined.
 *  2. A 0x1C counts as end block only when the very next byte is 0x0D.
 *  3. A 0x1C as the last available byte is never skipped: *resume stops before it. */
#include "proto/mllp.h"

#include <string.h>

/* Fills out for a NEED_MORE/TOO_BIG answer; consumed stays 0 so the caller drains nothing
 * but garbage. */
static void scan_result(struct mllp_scan *out, size_t garbage, size_t payload_off,
                        size_t payload_len)
{
    out->garbage = garbage;
    out->payload_off = payload_off;
    out->payload_len = payload_len;
    out->consumed = 0;
}

/* Searches the payload p[0, avail) for 0x1C 0x0D with the 0x1C at index <= max_frame,
 * starting at *rel. Returns MLLP_FRAME with *end = index of the 0x1C, MLLP_NEED_MORE, or
 * MLLP_TOO_BIG. */
static enum mllp_status find_end(const uint8_t *p, size_t avail, size_t max_frame, size_t *rel,
                                 size_t *end)
{
    /* An end block may start at indexes 0..max_frame; max_frame + 1 cannot overflow here
     * because it is only computed when max_frame < avail. */
    size_t window = max_frame < avail ? max_frame + 1 : avail;
    size_t i = *rel <= window ? *rel : 0;

    while (i < window) {
        const uint8_t *eb = memchr(p + i, MLLP_EB, window - i);
        if (eb == NULL) break;
        i = (size_t)(eb - p);
        if (avail - i < 2) {
            *rel = i; /* invariant 3: re-check this 0x1C when the next byte arrives */
            return MLLP_NEED_MORE;
        }
        if (p[i + 1] == MLLP_CR) {
            *end = i;
            return MLLP_FRAME;
        }
        i++; /* invariant 2: a lone 0x1C is payload */
    }
    *rel = window;
    return avail > max_frame ? MLLP_TOO_BIG : MLLP_NEED_MORE;
}

enum mllp_status mllp_scan(const uint8_t *buf, size_t len, size_t max_frame, size_t *resume,
                           struct mllp_scan *out)
{
    struct mllp_scan dummy;
    size_t rel = 0;
    size_t end = 0;

    if (out == NULL) out = &dummy;
    if (resume != NULL) rel = *resume;
    if (buf == NULL || len == 0) {
        scan_result(out, 0, 0, 0);
        if (resume != NULL) *resume = 0;
        return MLLP_NEED_MORE;
    }
    const uint8_t *sb = memchr(buf, MLLP_SB, len);
    if (sb == NULL) {
        scan_result(out, len, 0, 0); /* all garbage: nothing of a frame seen yet */
        if (resume != NULL) *resume = 0;
        return MLLP_NEED_MORE;
    }
    size_t garbage = (size_t)(sb - buf);
    size_t off = garbage + 1;
    enum mllp_status st = find_end(buf + off, len - off, max_frame, &rel, &end);

    if (st == MLLP_FRAME) {
        scan_result(out, garbage, off, end);
        out->consumed = off + end + 2;
        rel = 0; /* the next scan starts on the next frame */
    } else {
        scan_result(out, garbage, off, 0);
    }
    if (resume != NULL) *resume = rel;
    return st;
}

size_t mllp_wrap(const uint8_t *payload, size_t len, uint8_t *out, size_t cap)
{
    if (out == NULL || (payload == NULL && len != 0)) return 0;
    if (len > cap || cap - len < 3) return 0;
    out[0] = MLLP_SB;
    if (len != 0) memcpy(out + 1, payload, len);
    out[len + 1] = MLLP_EB;
    out[len + 2] = MLLP_CR;
    return len + 3;
}
