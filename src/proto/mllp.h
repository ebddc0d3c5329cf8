/* mllp: MLLP framing of HL7 v2 over a byte stream (HL7 v2 Appendix C, MLLP release 2).
 * A frame is 0x0B <payload> 0x1C 0x0D. Input is untrusted: the scanner never looks further
 * than max_frame payload bytes for the end block, so a frame that never ends costs bounded
 * CPU and memory; bytes before a start block are reported as garbage, never delivered.
 * Owns nothing and allocates nothing: the caller owns the buffer; offsets refer into it.
 * Pure function of its input (plus the resume hint), so it can be fuzzed without sockets.
 * Thread: any. */
#ifndef HDX_MLLP_H
#define HDX_MLLP_H

#include <stddef.h>
#include <stdint.h>

#define MLLP_SB 0x0B
#define MLLP_EB 0x1C
#define MLLP_CR 0x0D

enum mllp_status {
    MLLP_NEED_MORE = 0, /* no complete frame yet; drop `garbage` bytes, keep the rest */
    MLLP_FRAME = 1,     /* a complete frame: payload at [payload_off, payload_off+payload_len) */
    MLLP_TOO_BIG = 2,   /* payload exceeds max_frame with no end block: refuse the frame */
};

struct mllp_scan {
    size_t garbage;     /* bytes before the start block (or all bytes when none was seen) */
    size_t payload_off; /* offset of the first payload byte (after 0x0B) */
    size_t payload_len; /* payload bytes, excluding 0x0B, 0x1C and 0x0D */
    size_t consumed;    /* MLLP_FRAME: bytes to drain from the buffer, garbage included */
};

/* Scans buf[0, len). *resume is the scan position to continue from (0 for a new buffer or
 * after the caller drained bytes); the function updates it so that repeated calls on a
 * growing buffer are linear overall. A 0x1C not followed by 0x0D is payload data.
 * *resume is opaque: it counts payload bytes already searched, relative to the start block,
 * so it stays valid when the caller drains only garbage; resetting it to 0 is always safe.
 * On MLLP_TOO_BIG, garbage and payload_off are set and consumed is 0. */
enum mllp_status mllp_scan(const uint8_t *buf, size_t len, size_t max_frame, size_t *resume,
                           struct mllp_scan *out);

/* Writes 0x0B payload 0x1C 0x0D into out; returns bytes written, or 0 if cap is too small. */
size_t mllp_wrap(const uint8_t *payload, size_t len, uint8_t *out, size_t cap);

#endif
