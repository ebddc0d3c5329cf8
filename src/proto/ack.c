/* ack: HL7 v2 original-mode acknowledgements (see ack.h for the contract).
 *
 * DESIGN: the ACK is written through one bounded writer that turns "out of room" into a
 * sticky failure, so the segment builders below stay linear and never check sizes
 * themselves. Everything hdx adds (timestamp, ACK control id, error text) goes through
 * hl7_escape() with the delimiters the ACK uses, so no value can split a field; echoed
 * fields (MSH-3..6, MSH-9.2, MSH-10..12) are copied raw because they are already in the
 * sender's escaped form, and a decode/re-encode could change their bytes.
 *
 * Invariants:
 *  1. The output never contains NUL, 0x0B or 0x1C from the received message: echoes stop at
 *     the first control byte, which also keeps CR/LF from forging segments.
 *  2. An echo is at most 199 bytes and, when cut, ends on a UTF-8 character boundary and
 *     outside an escape sequence.
 *  3. out is always NUL-terminated (empty on failure). */
#include "proto/ack.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define ECHO_MAX 199
#define ACK_MAX_TIME_US INT64_C(253402300799999999) /* 9999-12-31 23:59:59.999999 UTC */

struct wr {
    char *p;
    size_t cap; /* includes room for the NUL terminator */
    size_t n;
    bool bad;
};

static const struct hl7_delims default_delims = {'|', '^', '~', '\\', '&', 0};

static void w_bytes(struct wr *w, const void *s, size_t k)
{
    if (w->bad) return;
    if (k >= w->cap - w->n) { /* by subtraction: n < cap always holds */
        w->bad = true;
        return;
    }
    memcpy(w->p + w->n, s, k);
    w->n += k;
    w->p[w->n] = '\0';
}

static void w_str(struct wr *w, const char *s)
{
    w_bytes(w, s, strlen(s));
}

static void w_ch(struct wr *w, char ch)
{
    w_bytes(w, &ch, 1);
}

static void w_esc(struct wr *w, const struct hl7_delims *d, const char *text)
{
    if (w->bad) return;
    int n = hl7_escape(d, text, w->p + w->n, w->cap - w->n);
    if (n < 0) {
        w->bad = true;
        return;
    }
    w->n += (size_t)n;
}

/* How many bytes of view v to echo (invariants 1 and 2). */
static size_t echo_len(const struct hl7_msg *m, struct hl7_view v)
{
    if (v.off > m->len || v.len > m->len - v.off) return 0;
    const uint8_t *p = m->data + v.off;
    size_t n = v.len < ECHO_MAX ? v.len : ECHO_MAX;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20) {
            n = i;
            break;
        }
    }
    if (n == v.len) return n; /* whole field: copied exactly as received */
    /* Cut inside a multi-byte character: drop its lead and continuation bytes. */
    for (int k = 0; k < 3 && n > 0 && (p[n] & 0xC0) == 0x80; k++)
        n--;
    /* Cut inside an escape sequence: drop the unterminated opening. */
    size_t escs = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == (uint8_t)m->d.esc) {
            escs++;
            last = i;
        }
    }
    return escs % 2 != 0 ? last : n;
}

static void w_echo(struct wr *w, const struct hl7_msg *m, struct hl7_view v)
{
    size_t n = echo_len(m, v);

    if (n != 0) /* only then is v known to lie inside m->data */
        w_bytes(w, m->data + v.off, n);
}

/* MSH-9.2 as received: the second component of MSH-9's first repetition. Echoed raw like
 * every other field: re-escaping the decoded trigger could turn \XDA\ into a raw 0xDA
 * byte and so make a UTF-8 ACK invalid (found by fuzz_hl7). */
static struct hl7_view trigger_raw(const struct hl7_msg *m)
{
    struct hl7_view v = m->msg_type_raw, none = {0, 0};
    size_t i = 0;

    if (v.off > m->len || v.len > m->len - v.off) return none;
    const uint8_t *p = m->data + v.off;
    while (i < v.len && p[i] != (uint8_t)m->d.comp && p[i] != (uint8_t)m->d.rep)
        i++;
    if (i == v.len || p[i] != (uint8_t)m->d.comp) return none;
    size_t start = ++i;
    while (i < v.len && p[i] != (uint8_t)m->d.comp && p[i] != (uint8_t)m->d.rep)
        i++;
    return (struct hl7_view){v.off + (uint32_t)start, (uint32_t)(i - start)};
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* MSH-7 as YYYYMMDDHHMMSS.ffff+0000. Computed by hand rather than with gmtime_r so the
 * module stays a pure function; times outside years 1970..9999 are clamped. */
static void format_ts(int64_t us, char *out, size_t cap)
{
    int y, mo, d;

    if (us < 0) us = 0;
    if (us > ACK_MAX_TIME_US) us = ACK_MAX_TIME_US;
    int64_t secs = us / 1000000;
    int frac = (int)(us % 1000000 / 100);
    int sod = (int)(secs % 86400);
    civil_from_days(secs / 86400, &y, &mo, &d);
    snprintf(out, cap, "%04d%02d%02d%02d%02d%02d.%04d+0000", y, mo, d, sod / 3600, sod / 60 % 60,
             sod % 60, frac);
}

static void w_delims(struct wr *w, const struct hl7_delims *d)
{
    w_str(w, "MSH");
    w_ch(w, d->field);
    w_ch(w, d->comp);
    w_ch(w, d->rep);
    w_ch(w, d->esc);
    w_ch(w, d->sub);
    if (d->trunc != 0) w_ch(w, d->trunc); /* MSH-2 exactly as received */
}

/* MSH answering m: sender and receiver swapped, MSH-11/12 echoed. */
static void w_msh_reply(struct wr *w, const struct hl7_msg *m, const char *ts, const char *ack_id)
{
    const struct hl7_delims *d = &m->d;

    w_delims(w, d);
    w_ch(w, d->field);
    w_echo(w, m, m->receiving_app);
    w_ch(w, d->field);
    w_echo(w, m, m->receiving_facility);
    w_ch(w, d->field);
    w_echo(w, m, m->sending_app);
    w_ch(w, d->field);
    w_echo(w, m, m->sending_facility);
    w_ch(w, d->field);
    w_esc(w, d, ts); /* '.' or '+' may be a delimiter of this sender */
    w_ch(w, d->field);
    w_ch(w, d->field); /* MSH-8 security: empty */
    w_str(w, "ACK");
    struct hl7_view trig = trigger_raw(m);
    if (echo_len(m, trig) != 0) {
        w_ch(w, d->comp);
        w_echo(w, m, trig);
        w_ch(w, d->comp);
        w_str(w, "ACK");
    }
    w_ch(w, d->field);
    w_esc(w, d, ack_id);
    w_ch(w, d->field);
    w_echo(w, m, m->processing_id_raw);
    w_ch(w, d->field);
    w_echo(w, m, m->version_raw);
    w_ch(w, '\r');
}

/* MSH when nothing of the received header could be trusted. */
static void w_msh_default(struct wr *w, const char *ts, const char *ack_id)
{
    w_str(w, "MSH|^~\\&|HDX|HDX|||");
    w_esc(w, &default_delims, ts);
    w_str(w, "||ACK|");
    w_esc(w, &default_delims, ack_id);
    w_str(w, "|P|2.5.1\r");
}

/* ERR-2 (ERL): segment^sequence^field, empty when the parser could not name a segment. */
static void w_location(struct wr *w, const struct hl7_delims *d, const struct hl7_error *e)
{
    char num[16];
    const char *s = e->seg;

    for (int i = 0; i < 3; i++) {
        uint8_t b = (uint8_t)s[i];
        if (!((b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')))
            return; /* also stops at a short or empty id */
    }
    w_bytes(w, s, 3);
    w_ch(w, d->comp);
    if (e->seg_seq > 0) {
        snprintf(num, sizeof num, "%d", e->seg_seq);
        w_str(w, num);
    }
    if (e->field > 0) {
        snprintf(num, sizeof num, "%d", e->field);
        w_ch(w, d->comp);
        w_str(w, num);
    }
}

static void w_err(struct wr *w, const struct hl7_delims *d, const struct hl7_error *e,
                  const char *text)
{
    char num[16];
    char fs = d->field;

    snprintf(num, sizeof num, "%d", e->code);
    w_str(w, "ERR");
    w_ch(w, fs);
    w_ch(w, fs);
    w_location(w, d, e);
    w_ch(w, fs);
    w_str(w, num);
    w_ch(w, d->comp);
    w_esc(w, d, text);
    w_ch(w, d->comp);
    w_str(w, "HL70357");
    w_ch(w, fs);
    w_str(w, "E");
    for (int i = 0; i < 4; i++)
        w_ch(w, fs); /* ERR-5..ERR-7 empty, then ERR-8 */
    w_esc(w, d, text);
    w_ch(w, '\r');
}

static bool msg_usable(const struct hl7_msg *m)
{
    return m != NULL && m->nsegs > 0 && m->data != NULL && m->d.field != 0 && m->d.comp != 0 &&
           m->d.rep != 0 && m->d.esc != 0 && m->d.sub != 0;
}

int hl7_ack_build(const struct hl7_msg *msg, const struct hl7_ack_params *p, char *out, size_t cap)
{
    static const struct hl7_error internal = {
        HL7_ERR_INTERNAL, 'E', "", 0, 0, "application internal error"};
    static const char *const codes[] = {"AA", "AE", "AR"};
    char ts[48], text[sizeof internal.text];

    if (out == NULL || cap == 0) return -1;
    out[0] = '\0';
    if (p == NULL || (int)p->code < (int)HL7_AA || (int)p->code > (int)HL7_AR) return -1;
    struct wr w = {out, cap > (size_t)INT_MAX ? (size_t)INT_MAX : cap, 0, false};
    bool usable = msg_usable(msg);
    const struct hl7_delims *d = usable ? &msg->d : &default_delims;
    const char *ack_id = p->ack_control_id != NULL ? p->ack_control_id : "";
    const struct hl7_error *e = p->err != NULL ? p->err : &internal;

    /* err->text may fill its array without a terminator; copy it bounded. */
    size_t tl = strnlen(e->text, sizeof e->text);
    memcpy(text, e->text, tl < sizeof text - 1 ? tl : sizeof text - 1);
    text[tl < sizeof text - 1 ? tl : sizeof text - 1] = '\0';
    format_ts(p->time_us, ts, sizeof ts);
    if (usable)
        w_msh_reply(&w, msg, ts, ack_id);
    else
        w_msh_default(&w, ts, ack_id);
    w_str(&w, "MSA");
    w_ch(&w, d->field);
    w_str(&w, codes[p->code]);
    w_ch(&w, d->field);
    if (usable) w_echo(&w, msg, msg->control_id_raw);
    if (p->code != HL7_AA) {
        w_ch(&w, d->field);
        w_esc(&w, d, text);
    }
    w_ch(&w, '\r');
    if (p->code != HL7_AA) w_err(&w, d, e, text);
    if (p->extra != NULL && p->extra[0] != '\0') {
        w_str(&w, p->extra);
        if (p->extra[strlen(p->extra) - 1] != '\r')
            w_ch(&w, '\r'); /* keep the ACK well-formed even if the caller forgot */
    }
    if (w.bad) {
        out[0] = '\0';
        return -1;
    }
    return (int)w.n;
}
