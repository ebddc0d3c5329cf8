/* match: a route's source filter, the `match =` key of a [route NAME] section (docs/ROUTES.md,
 * "Match expressions"). Compiled once from the configuration; evaluated on every parsed
 * message of the route's lane, without allocating.
 *
 *   expr  := or ;  or := and ("or" and)* ;  and := unary ("and" unary)*
 *   unary := "not" unary | "(" expr ")" | pred
 *   pred  := "*" | "all"                         every message
 *          | "type:" MSG ["^" TRG]               MSH-9.1 (and MSH-9.2); TRG "*" or absent: any;
 *                                                MSG "*": any ("*^R01")
 *          | "trigger:" TRG                      MSH-9.2
 *          | "sender:" NAME                      the record's sender (device); "ab*": prefix
 *          | "patient:" VALUE                    PID-3.1 of the first repetition
 *          | FIELD ("=" | "!=") VALUE
 *          | FIELD "in" "(" VALUE ("," VALUE)* ")"
 *          | FIELD "exists"                      present and not empty
 *   FIELD := SEG ["[" N "]"] "-" F ["." C ["." S]]   e.g. OBX-3.1, PV1-3.1, OBX[2]-5, PID-3.1.1
 *   VALUE := a bare word (no space, parenthesis, comma, '=', '!' or '"') or "a quoted string"
 *            with \" and \\ as its only escapes
 * Keywords and prefixes are case-insensitive, values are compared byte for byte with the
 * field's unescaped text (hl7_unescape). A field without [N] matches when ANY occurrence of its
 * segment and any repetition of the field does (every OBX of an ORU); [N] names occurrence N.
 * `F != v` is exactly `not (F = v)`: an absent field is != anything. An absent or empty field
 * is never = or in, and does not exist. MSH-1 and MSH-2 cannot be named.
 * Limits (refused beyond, "column N: reason"): text 4096 bytes, 64 predicates, nesting 16,
 * 256 values in one list, a value 199 bytes, N F C S 1..999.
 * Thread: compile anywhere; a compiled expression is immutable (evaluate from any thread). */
#ifndef HDX_ROUTE_MATCH_H
#define HDX_ROUTE_MATCH_H

#include <stddef.h>

#include "proto/hl7.h"

#define HDX_MATCH_TEXT_MAX 4096
#define HDX_MATCH_PREDS_MAX 64
#define HDX_MATCH_DEPTH_MAX 16
#define HDX_MATCH_LIST_MAX 256
#define HDX_MATCH_VALUE_MAX 199

struct hdx_match;

/* HDX_OK and *out, or HDX_E_INVAL with err = "column N: reason" (or HDX_E_NOMEM). */
int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap);
void hdx_match_free(struct hdx_match *m);
/* 1 when the message matches, else 0. sender: the record's sender, may be "". */
int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender);
/* 1 when the expression reads nothing but type, trigger and sender. */
int hdx_match_index_only(const struct hdx_match *m);
/* The canonical text (keywords lower-case, one space between tokens, values quoted only when
 * they must be, parentheses only where needed): compiling it gives the same expression.
 * Returns its length, or -1 when cap is too small. */
int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap);

#endif
