/* hl7: HL7 v2 message parser (HL7 v2.5.1 chapter 2, "Control").
 * Parses one message held in caller memory; keeps the original bytes untouched and
 * describes segments and fields as views (offset, length) into them. Honours the field
 * separator (MSH-1) and encoding characters (MSH-2: component, repetition, escape,
 * sub-component, optional truncation), accepts CR, LF or CRLF segment terminators and a last
 * segment with no terminator at all.
 * Input is untrusted: every limit is explicit (struct hl7_limits); on failure hl7_parse()
 * fills struct hl7_error with an HL7 table 0357 code, the ACK code to answer (AE or AR),
 * the location and a short text that contains no message bytes, so it may be logged.
 * Ownership: hl7_msg points into the caller's buffer, which must outlive it; hl7_msg_free()
 * releases the segment table only. Thread: any. */
#ifndef HDX_HL7_H
#define HDX_HL7_H

#include <stddef.h>
#include <stdint.h>

/* HL7 table 0357, message error condition codes. */
enum hl7_err_code {
    HL7_ERR_ACCEPTED = 0,
    HL7_ERR_SEGMENT_SEQUENCE = 100,
    HL7_ERR_REQUIRED_FIELD = 101,
    HL7_ERR_DATA_TYPE = 102,
    HL7_ERR_TABLE_VALUE = 103,
    HL7_ERR_UNSUPPORTED_MSG_TYPE = 200,
    HL7_ERR_UNSUPPORTED_EVENT = 201,
    HL7_ERR_UNSUPPORTED_PROCESSING_ID = 202,
    HL7_ERR_UNSUPPORTED_VERSION = 203,
    HL7_ERR_UNKNOWN_KEY = 204,
    HL7_ERR_DUPLICATE_KEY = 205,
    HL7_ERR_RECORD_LOCKED = 206,
    HL7_ERR_INTERNAL = 207,
};

/* A field left 0 (or lim == NULL) means the default. */
struct hl7_limits {
    size_t max_segments;  /* default 10000 */
    size_t max_field_len; /* longest single field, default 65536 */
};

struct hl7_delims {
    char field, comp, rep, esc, sub, trunc; /* trunc is 0 when MSH-2 has only 4 characters */
};

struct hl7_view {
    uint32_t off, len; /* into hl7_msg.data */
};

struct hl7_seg {
    uint32_t off, len; /* segment bytes without terminator */
};

struct hl7_error {
    int code;       /* enum hl7_err_code */
    char ack;       /* 'E' (AE: content error) or 'R' (AR: rejected: structure, unsupported) */
    char seg[4];    /* segment id where found, "" if unknown */
    int seg_seq;    /* 1-based occurrence of that segment, 0 if unknown */
    int field;      /* 1-based field number, 0 if whole segment/message */
    char text[160]; /* human-readable cause; never contains message bytes */
};

struct hl7_msg {
    const uint8_t *data;
    size_t len;
    struct hl7_delims d;
    struct hl7_seg *segs; /* allocated by hl7_parse, freed by hl7_msg_free */
    size_t nsegs;
    /* Extracted for routing, ACKs and the index. Views are raw (still escaped); the
     * char arrays are unescaped, NUL-terminated, and empty when absent. */
    struct hl7_view sending_app, sending_facility;     /* MSH-3, MSH-4 */
    struct hl7_view receiving_app, receiving_facility; /* MSH-5, MSH-6 */
    struct hl7_view msg_type_raw;                      /* MSH-9 */
    struct hl7_view control_id_raw;                    /* MSH-10 */
    struct hl7_view processing_id_raw;                 /* MSH-11 */
    struct hl7_view version_raw;                       /* MSH-12 */
    char msg_type[64];    /* MSH-9.1 "^" MSH-9.2, e.g. "ORU^R01" ("ACK" when no trigger) */
    char trigger[8];      /* MSH-9.2, e.g. "R01" */
    char control_id[200]; /* MSH-10 */
    char version[16];     /* MSH-12.1 */
    char charset[32];     /* MSH-18 first repetition, "" when absent */
    char patient_id[200]; /* PID-3 first repetition, component 1 (CX.1); "" when no PID */
};

void hl7_limits_default(struct hl7_limits *lim);

/* Parses data[0, len). Returns 0 and fills msg, or -1 and fills err (msg is then
 * empty and needs no free; but if err->code != 100 and MSH was readable, the MSH views in
 * msg stay valid so the caller can build an addressed ACK: check msg->nsegs > 0).
 * Rejects: no MSH at the start (100, AR), MSH too short or bad MSH-1/MSH-2 (unknown,
 * duplicate or alphanumeric encoding characters) (102 or 100, AR), missing MSH-9/MSH-10
 * (101, AR), NUL or MLLP control bytes (0x0B, 0x1C) anywhere (102, AE), invalid UTF-8
 * when MSH-18 is empty or names UTF-8/ASCII (102, AE), more segments than the limit or a
 * field longer than the limit (100/102, AE), segment ids that are not 3 upper-case
 * letters or digits (100, AR). Checks run header first (MSH-1/2, MSH-9/10, MSH-18), then
 * segment by segment (bytes, character set, field length, then the id); the first failure
 * wins. Once MSH-1/MSH-2 parsed, a failure leaves nsegs == 1 with segs == NULL, the MSH
 * views and the header char arrays filled; an unescaped value that does not fit its array,
 * is badly escaped or decodes to a NUL is a 102 (AE) error, never silently truncated. */
int hl7_parse(const uint8_t *data, size_t len, const struct hl7_limits *lim, struct hl7_msg *msg,
              struct hl7_error *err);
void hl7_msg_free(struct hl7_msg *msg);

/* Finds field `field` (1-based; for MSH, field 1 is the field separator itself, as the
 * standard numbers it) of the `occurrence`-th (1-based) segment named `seg_id`; then
 * repetition `rep` (1-based), component `comp` (1-based, 0 = whole repetition) and
 * sub-component `sub` (1-based, 0 = whole component). Returns 0 and sets *out, or -1 when
 * absent. A position that exists but is empty ("||") gives 0 with out->len == 0. MSH-1 and
 * MSH-2 are returned whole (rep 1, comp 0 or 1, sub 0 or 1 only). */
int hl7_get(const struct hl7_msg *msg, const char *seg_id, int occurrence, int field, int rep,
            int comp, int sub, struct hl7_view *out);

/* MSA-1 and MSA-2 of an acknowledgement read without the parser (a route reads one per
 * message it delivers): 0 and both copied NUL-terminated, or -1, and then hl7_parse decides,
 * when data does not start with MSH and a 4- or 5-character MSH-2, its first MSA segment is
 * not followed by both fields, either holds a character of MSH-2, or one does not fit its
 * buffer. Where it answers 0 and hl7_parse accepts data, the values are hl7_get's (rep 1,
 * whole) unescaped: fuzz_hl7 checks it. Nothing else of the message is checked. */
int hl7_peek_ack(const uint8_t *data, size_t len, char *code, size_t code_cap, char *id,
                 size_t id_cap);

/* Decodes escape sequences (\F\ \S\ \T\ \R\ \E\, \Xhh..\ to bytes, \.br\ to "\n", others
 * such as \H\ \N\ dropped; \P\ gives the v2.7 truncation character when MSH-2 has one) of a
 * view into out (NUL-terminated). Returns the decoded length, or -1 when out is too small,
 * an escape is unterminated or a \X..\ escape is not an even number of hex digits. */
int hl7_unescape(const struct hl7_msg *msg, struct hl7_view v, char *out, size_t cap);

/* Writes text escaped for the message's delimiters (\F\ \S\ \T\ \R\ \E\, \P\ when
 * d->trunc is set, bytes below 0x20 as \Xhh\); out is NUL-terminated. Returns the length or
 * -1 if cap is small. */
int hl7_escape(const struct hl7_delims *d, const char *text, char *out, size_t cap);

#endif
