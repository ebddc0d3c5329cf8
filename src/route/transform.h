/* transform: declarative, safe rewrites of HL7 v2 messages on outbound routes (issue 12).
 * A route's "transform =" lines compile once into an immutable hdx_transform that any thread
 * may apply to any number of messages. The language is fixed and small; there is no scripting.
 *
 * LANGUAGE (one transform per line; words separated by blanks; a '#' at the start or after a
 * blank begins a comment, except inside a quoted set value, i.e. one whose '"' follows '='):
 *   set ADDR = VALUE            write VALUE at ADDR (VALUE: rest of the line, trimmed, or
 *                               "quoted" with \" and \\ escapes; "" is the empty value)
 *   copy ADDR to ADDR           copy the source position to the destination
 *   clear ADDR                  empty the position (never creates it)
 *   map ADDR TABLE [default keep|clear|reject]
 *                               replace the value by TABLE's "to" for it; unmapped values are
 *                               kept (default), emptied, or fail the apply
 *   strip SEG | strip P*        remove every segment with id SEG, or whose id starts with P
 *                               (1 or 2 characters)
 *   version 2.3 | version 2.5.1 convert the message (see VERSION below)
 * ADDR is SEG[ "[" N "]" ]-F[.C[.S]]: a segment id (3 upper-case letters or digits), an
 * optional occurrence N (1..10000), field F (1..500, numbered as the standard does: MSH-1 is
 * the field separator), component C and sub-component S (1..100). F alone is the whole field,
 * every repetition; .C and .C.S are inside the first repetition.
 *   Occurrence: without [N], set/clear/map act on every occurrence of the segment and copy
 *   writes every occurrence of the destination segment; copy reads the first occurrence of
 *   its source unless [N] is given. A copy whose source is absent changes nothing.
 *   set creates missing fields, components and sub-components by padding with separators;
 *   when the segment is absent it does nothing (no segment is ever created, MSH least of all).
 *   Values are written escaped with the message's own delimiters (hl7_escape): set and map
 *   values are text, so a '^' in them arrives as \S\, never as structure. copy keeps the
 *   source's bytes (already escaped in the same delimiters) and escapes only the separators the
 *   destination level cannot hold (for a component, '~' and '^'; for a sub-component also '&').
 *   A copy source is at most HDX_TRANSFORM_COPY_MAX bytes, else the apply fails.
 *   map compares the unescaped value with the table's keys, exactly (case-sensitive); an
 *   absent or empty position is left alone under every default.
 *   Refused at compile: MSH-1, MSH-2 (the delimiters) and MSH-10 (the control id: ACKs are
 *   matched on it) anywhere in set/copy/clear/map; strip of any pattern that would match MSH;
 *   values longer than HDX_TRANSFORM_VALUE_MAX bytes, with control bytes or invalid UTF-8.
 * TABLES: a plain file name (no '/', no leading '.') read from base_dir at compile: "from<TAB>to"
 *   per line, '#' comment lines and blank lines skipped, a trailing CR dropped; at most
 *   HDX_TRANSFORM_TABLE_ROWS rows and HDX_TRANSFORM_TABLE_BYTES bytes, keys and values at most
 *   HDX_TRANSFORM_VALUE_MAX bytes, non-empty keys; a duplicate key is refused. Lookup is a
 *   binary search over the sorted keys.
 * VERSION: the message's MSH-12.1 must be 2.3 or 2.3.x, or 2.5 or 2.5.x, else the apply fails;
 *   a message already exactly at the target is left as it is. Going to 2.5.1: MSH-12 becomes
 *   2.5.1 and, when MSH-9.3 (message structure, required in 2.5.1, absent in 2.3) is empty, it
 *   is added from a table of common events (ADT^A04 -> ADT_A01, ORU^R01 -> ORU_R01, ...); an
 *   event not in the table fails the apply. Going to 2.3: MSH-12 becomes 2.3, MSH-9 keeps its
 *   first two components, SFT segments (new in 2.5) are removed, and fields 2.3 does not
 *   define are cut: MSH after 19, EVN after 5, PID after 30, ORC after 19, OBX after 17.
 * OUTPUT: segments CR-terminated (empty lines dropped), at most 2 x input + 64 KiB, else the
 *   apply fails; the result must re-parse with hl7_parse under default limits with the input's
 *   MSH-10, else the apply fails (defensive). Input that does not parse fails the apply.
 * Errors: "transform N: reason" (N 1-based) at compile and apply, plus "input: ..." and
 *   "output: ..." at apply (e.g. "transform 3: map OBX-3.1: code not in loinc.tsv"); the text
 *   names verbs, tables and addresses as configured, never message bytes, so it may be logged.
 * Cost: apply parses the input once, edits one growing output buffer in place (no allocation
 *   per field), then re-parses the result once. Thread: compile anywhere; apply from any
 *   thread on a shared transform. */
#ifndef HDX_TRANSFORM_H
#define HDX_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

#define HDX_TRANSFORM_VALUE_MAX 1024
#define HDX_TRANSFORM_COPY_MAX 8192
#define HDX_TRANSFORM_TABLE_ROWS 100000
#define HDX_TRANSFORM_TABLE_BYTES (8u << 20)
#define HDX_TRANSFORM_LINE_MAX 4096

struct hdx_transform; /* compiled, immutable: apply from any thread */

/* Compiles n lines (each the text after "transform ="; at most 4096 lines of at most
 * HDX_TRANSFORM_LINE_MAX bytes); tables are read from base_dir. Returns HDX_OK and *out, or
 * HDX_E_INVAL (HDX_E_NOMEM when memory runs out) with err = "transform N: reason" and *out NULL.
 * n == 0 gives a transform that copies (normalised to CR terminators). */
int hdx_transform_compile(const char *const *lines, size_t n, const char *base_dir,
                          struct hdx_transform **out, char *err, size_t err_cap);
void hdx_transform_free(struct hdx_transform *t); /* NULL is fine */

/* Applies t to one message (untrusted bytes). HDX_OK with *out (malloc'd, the caller frees)
 * and *out_len, or HDX_E_INVAL (HDX_E_NOMEM when memory runs out) with err
 * saying which transform failed and why ("input: ...", "transform N: ...", "output: ...");
 * *out is then NULL. The output bound and every refusal give HDX_E_INVAL. */
int hdx_transform_apply(const struct hdx_transform *t, const uint8_t *msg, size_t len,
                        uint8_t **out, size_t *out_len, char *err, size_t err_cap);
int hdx_transform_count(const struct hdx_transform *t);

#endif
