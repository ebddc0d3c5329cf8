/* ack: HL7 v2 original-mode acknowledgements (HL7 v2.5.1 section 2.9.2).
 * Builds MSH + MSA (+ ERR) answering a received message: MSH-3/4 and MSH-5/6 swapped, the
 * received delimiters, MSH-9 "ACK^<trigger>^ACK", MSH-11 and MSH-12 echoed, MSA-2 = the
 * received MSH-10. On AE/AR an ERR segment carries ERR-2 (location), ERR-3 (table 0357 code
 * "^text^HL70357"), ERR-4 severity "E" and ERR-8 (user message); MSA-3 repeats the text for
 * pre-2.5 receivers. When the message could not be parsed at all (msg NULL or no MSH) the
 * ACK uses default delimiters and HDX/HDX as sender. `extra` (may be NULL) is appended as
 * further segments (each ending in CR), e.g. a receipt Z-segment.
 * Output is the payload without MLLP framing, segments terminated by CR.
 * Echoed fields are copied raw, cut to at most 199 bytes (on a character and escape boundary)
 * and at the first control byte. If err is NULL for AE/AR, code 207 is reported.
 * out is NUL-terminated; the terminator is not counted.
 * Returns the length written, or -1 when cap is too small. Thread: any. */
#ifndef HDX_ACK_H
#define HDX_ACK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/hl7.h"

enum hl7_ack_code { HL7_AA, HL7_AE, HL7_AR };

struct hl7_ack_params {
    enum hl7_ack_code code;
    const struct hl7_error *err; /* required for AE/AR, ignored for AA */
    const char *ack_control_id;  /* MSH-10 of the ACK itself */
    int64_t time_us;             /* MSH-7, UTC microseconds since the epoch */
    const char *extra;           /* extra segments, may be NULL */
};

int hl7_ack_build(const struct hl7_msg *msg, const struct hl7_ack_params *p, char *out, size_t cap);

#endif
