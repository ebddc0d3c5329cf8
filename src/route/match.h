/* match: the source filter of an outbound route (issue 12), the `match =` line of a
 * `[route NAME]` section of hdx.conf. hdx_match_compile turns the operator's text into an
 * immutable program; hdx_match_eval runs it on one parsed HL7 v2 message (proto/hl7.h) and the
 * record's sender. Pure: no I/O, no logging, no global state.
 *
 * Grammar (keywords case-insensitive, values case-sensitive, whitespace = space, tab, CR, LF):
 *   expr  = or                 or = and *("or" and)         and = unary *("and" unary)
 *   unary = "not" unary | "(" expr ")" | pred
 *   pred  = "*" | "all"                          every message
 *         | "type:" MSG ["^" TRG]                MSH-9.1 [and MSH-9.2]; MSG or TRG "*" = any;
 *                                                "ORU" = "ORU^*" = ORU with any trigger
 *         | "trigger:" TRG                       MSH-9.2
 *         | "sender:" VALUE                      the record's sender; a final "*" = prefix
 *         | "patient:" VALUE                     PID-3.1 of the first PID, first repetition
 *         | FIELD ("=" | "!=") VALUE | FIELD "in" "(" VALUE *("," VALUE) ")" | FIELD "exists"
 *   FIELD = SEG ["[" N "]"] "-" F ["." C ["." S]]   SEG: 3 of A-Z 0-9; N F C S: 1-999, no
 *                                                   leading zero; MSH-1 and MSH-2 refused
 *   VALUE = bare token (bytes but whitespace ( ) , " and control bytes) | '"' chars '"' with
 *           \" and \\ the only escapes; 1-199 bytes once unquoted
 *   MSG, TRG: letters, digits, '_' and '-' (what hl7_parse lets into MSH-9), or "*".
 * Semantics: a FIELD without [N] holds when any occurrence of SEG and any repetition of F
 * does; with [N] only occurrence N is read. F alone is the whole repetition, C a component, S
 * a sub-component. Values compare byte-exactly with the field after hl7_unescape; a field that
 * is absent, empty, badly escaped or longer than 199 bytes once unescaped equals nothing.
 * type: and trigger: read the indexed type (hl7_msg.msg_type) split at its first '^': MSH-9.1
 * and MSH-9.2, but for a message whose component separator is not '^' and whose MSH-9.1 holds
 * one, where the split is the index's (so index and message decisions never differ).
 * "exists": present and non-empty as sent. "A != v" is exactly "not (A = v)", so it holds
 * for an absent A. "patient:" is the same PID-3.1 the index blinds (hl7_msg.patient_id).
 *
 * Limits, refused at compile with "column N: reason" (N 1-based, the byte where it failed):
 * text <= HDX_MATCH_TEXT_MAX bytes and so its canonical form (hdx_match_describe), at most
 * HDX_MATCH_PRED_MAX predicates, nesting (each "(" and each "not") at most HDX_MATCH_DEPTH_MAX,
 * an "in" list at most HDX_MATCH_IN_MAX values, a value at most HDX_MATCH_VALUE_MAX bytes,
 * numbers 1-999. Empty text, trailing text, unknown keywords and control bytes are refused.
 * Reasons may quote the configuration text (not PHI), never a message.
 *
 * Evaluation is bounded: the compiled form is a flat program of predicates and forward jumps
 * (short-circuit and/or), run in one pass without recursion or allocation; each field
 * predicate reads the message once, linearly in its size.
 * Ownership: *out belongs to the caller (hdx_match_free, NULL accepted). Thread: any; a
 * compiled match is immutable and may be evaluated from several threads at once. */
#ifndef HDX_MATCH_H
#define HDX_MATCH_H

#include <stddef.h>

#include "proto/hl7.h"

#define HDX_MATCH_TEXT_MAX 4096 /* bytes of text (and of the canonical form), no NUL */
#define HDX_MATCH_PRED_MAX 64
#define HDX_MATCH_DEPTH_MAX 16
#define HDX_MATCH_IN_MAX 256
#define HDX_MATCH_VALUE_MAX 199
#define HDX_MATCH_NUM_MAX 999

struct hdx_match; /* compiled, immutable: evaluate from any thread */

/* Compiles text (NUL-terminated). HDX_OK and *out, or HDX_E_INVAL (*out NULL) with err set to
 * "column N: reason" (when err_cap > 0; cut to fit), or HDX_E_NOMEM. */
int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap);
void hdx_match_free(struct hdx_match *m);

/* 1 when the message matches, 0 when not. msg: as hl7_parse filled it (0 returned); sender:
 * the record's sender (device name, the TLS CN), may be "" (NULL is taken as ""). */
int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender);

/* 1 when the expression reads only type, trigger and sender (so the engine may decide from the
 * index without decrypting) */
int hdx_match_index_only(const struct hdx_match *m);

/* The decision from the index alone: type as indexed (hl7_msg.msg_type, "ORU^R01", "ACK"),
 * sender as in hdx_match_eval. 1 or 0, the same answer hdx_match_eval gives for a message of
 * that type and sender; -1 when the expression is not index-only (decrypt and call eval). */
int hdx_match_eval_index(const struct hdx_match *m, const char *type, const char *sender);

/* The canonical text of the expression (normalised spacing, keywords lower-case, values quoted
 * only when needed, and/or flattened, parentheses only where precedence needs them, "*" for
 * all) into out; for `hdx route list`. It compiles back to the same canonical text. Returns
 * its length, or -1 if cap is too small (HDX_MATCH_TEXT_MAX + 1 is always enough). */
int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap);

#endif
