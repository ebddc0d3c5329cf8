/* hl7: HL7 v2 message parser (see hl7.h for the contract).
 *
 * DESIGN: parsing is a fixed sequence of steps, each bounded by the input length:
 *   1. parse_delims   MSH-1/MSH-2 (a failure here leaves msg empty: nothing is addressable)
 *   2. msh views      raw views of MSH-3..MSH-12 for an addressed ACK (msg->nsegs = 1 from here)
 *   3. extract_msh    MSH-9, MSH-10, MSH-12 into the char arrays, required-field checks
 *   4. charset        MSH-18 selects the byte policy for step 5
 *   5. split          count segments (limit before allocation), then one pass per segment:
 *                     forbidden bytes, character set, field length, segment id
 *   6. extract_pid    PID-3.1
 * The header is validated before the body so that every later error can still be answered
 * with an ACK that names the sender's control id.
 *
 * Invariants:
 *  1. Every view satisfies off + len <= msg->len <= UINT32_MAX (len is checked up front).
 *  2. No loop runs more than O(len) steps per call; nothing recurses on input.
 *  3. Error texts are built from constants and numbers only, never from message bytes. */
#include "proto/hl7.h"

#include "proto/jsonw.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HL7_DEFAULT_MAX_SEGMENTS 10000
#define HL7_DEFAULT_MAX_FIELD_LEN 65536

enum charset_policy { CS_UTF8, CS_ASCII, CS_ANY };

struct pctx {
    const uint8_t *p;
    size_t len;
    size_t max_segments;
    size_t max_field;
    enum charset_policy cs;
    struct hl7_seg msh; /* the first segment, before the segment table exists */
    struct hl7_msg *msg;
    struct hl7_error *err;
};

/* Output cursor for the escape/unescape writers; lim excludes the NUL terminator. */
struct obuf {
    char *p;
    size_t lim;
    size_t n;
};

void hl7_limits_default(struct hl7_limits *lim)
{
    if (lim == NULL) return;
    lim->max_segments = HL7_DEFAULT_MAX_SEGMENTS;
    lim->max_field_len = HL7_DEFAULT_MAX_FIELD_LEN;
}

static bool is_term(uint8_t b)
{
    return b == '\r' || b == '\n';
}

static bool is_upper_or_digit(uint8_t b)
{
    return (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9');
}

/* HL7 allows any printable non-alphanumeric ASCII as a delimiter; real senders use space
 * as escape character ("^~ &"), so 0x20 is deliberately included. */
static bool enc_char_ok(uint8_t b)
{
    return b >= 0x20 && b <= 0x7E && !is_upper_or_digit(b) && !(b >= 'a' && b <= 'z');
}

/* NUL breaks C consumers; 0x0B and 0x1C would let payload bytes forge MLLP framing. */
static bool is_forbidden(uint8_t b)
{
    return b == 0x00 || b == 0x0B || b == 0x1C;
}

__attribute__((format(printf, 7, 8))) static int fail(struct hl7_error *err, int code, char ack,
                                                      const char *seg, int seq, int field,
                                                      const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    err->ack = ack;
    snprintf(err->seg, sizeof err->seg, "%s", seg);
    err->seg_seq = seq;
    err->field = field;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- views ---------------------------------------------------------------------------- */

/* Finds the n-th (1-based) sep-separated token of `in`. Returns -1 when there are fewer
 * than n tokens; a present but empty token gives 0 with len 0. */
static int nth_token(const uint8_t *p, struct hl7_view in, char sep, int n, struct hl7_view *out)
{
    uint32_t start = in.off;
    uint32_t end = in.off + in.len;

    if (n < 1) return -1;
    for (int k = 1; k < n; k++) {
        const uint8_t *q = memchr(p + start, (uint8_t)sep, end - start);
        if (q == NULL) return -1;
        start = (uint32_t)(q - p) + 1;
    }
    const uint8_t *q = memchr(p + start, (uint8_t)sep, end - start);
    out->off = start;
    out->len = q != NULL ? (uint32_t)(q - p) - start : end - start;
    return 0;
}

static bool seg_is_msh(const uint8_t *p, const struct hl7_seg *s)
{
    return s->len >= 3 && memcmp(p + s->off, "MSH", 3) == 0;
}

/* Field `field` of segment s, numbered as the standard does: in MSH the separator after
 * the id is MSH-1 itself, so MSH-n is the (n-1)-th token after it. */
static int seg_field(const struct hl7_msg *m, const struct hl7_seg *s, int field,
                     struct hl7_view *out)
{
    if (field < 1 || s->len < 4) return -1;
    struct hl7_view rest = {s->off + 4, s->len - 4};
    if (!seg_is_msh(m->data, s)) return nth_token(m->data, rest, m->d.field, field, out);
    if (field == 1) {
        out->off = s->off + 3;
        out->len = 1;
        return 0;
    }
    return nth_token(m->data, rest, m->d.field, field - 1, out);
}

/* Narrows a field to repetition/component/sub-component (comp 0 = whole repetition,
 * sub 0 = whole component). */
static int field_part(const struct hl7_msg *m, struct hl7_view f, int rep, int comp, int sub,
                      struct hl7_view *out)
{
    struct hl7_view r, c;

    if (rep < 1 || comp < 0 || sub < 0 || (comp == 0 && sub != 0)) return -1;
    if (nth_token(m->data, f, m->d.rep, rep, &r) != 0) return -1;
    if (comp == 0) {
        *out = r;
        return 0;
    }
    if (nth_token(m->data, r, m->d.comp, comp, &c) != 0) return -1;
    if (sub == 0) {
        *out = c;
        return 0;
    }
    return nth_token(m->data, c, m->d.sub, sub, out);
}

static const struct hl7_seg *find_seg(const struct hl7_msg *m, const char *id, int occurrence)
{
    int seen = 0;

    for (size_t i = 0; i < m->nsegs; i++) {
        const struct hl7_seg *s = &m->segs[i];
        if (s->len >= 3 && memcmp(m->data + s->off, id, 3) == 0 && ++seen == occurrence) return s;
    }
    return NULL;
}

int hl7_get(const struct hl7_msg *msg, const char *seg_id, int occurrence, int field, int rep,
            int comp, int sub, struct hl7_view *out)
{
    struct hl7_view f;

    if (msg == NULL || msg->data == NULL || msg->segs == NULL || seg_id == NULL || out == NULL ||
        occurrence < 1 || strnlen(seg_id, 4) != 3)
        return -1;
    const struct hl7_seg *s = find_seg(msg, seg_id, occurrence);
    if (s == NULL || seg_field(msg, s, field, &f) != 0) return -1;
    if (seg_is_msh(msg->data, s) && field <= 2) {
        /* MSH-1 and MSH-2 hold the delimiters themselves: they cannot be split. */
        if (rep != 1 || comp < 0 || comp > 1 || sub < 0 || sub > 1) return -1;
        *out = f;
        return 0;
    }
    return field_part(msg, f, rep, comp, sub, out);
}

/* ---- escaping ------------------------------------------------------------------------- */

static bool put(struct obuf *o, char ch)
{
    if (o->n >= o->lim) return false;
    o->p[o->n++] = ch;
    return true;
}

static int hexval(uint8_t b)
{
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    return -1;
}

/* \Xhhhh..\ : an even number of hex digits, each pair one byte. */
static bool decode_hex(const uint8_t *s, size_t n, struct obuf *o)
{
    if (n % 2 != 0) return false;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]);
        int lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0 || !put(o, (char)(hi << 4 | lo))) return false;
    }
    return true;
}

/* Decodes the text between two escape characters. */
static bool decode_escape(const struct hl7_delims *d, const uint8_t *s, size_t n, struct obuf *o)
{
    if (n == 1) {
        switch (s[0]) {
        case 'F':
            return put(o, d->field);
        case 'S':
            return put(o, d->comp);
        case 'T':
            return put(o, d->sub);
        case 'R':
            return put(o, d->rep);
        case 'E':
            return put(o, d->esc);
        case 'P':
            return d->trunc == 0 || put(o, d->trunc); /* v2.7 truncation character */
        default:
            return true;
        }
    }
    if (n >= 1 && s[0] == 'X') return decode_hex(s + 1, n - 1, o);
    if (n == 3 && memcmp(s, ".br", 3) == 0) return put(o, '\n');
    /* \H\ \N\ \Cxxyy\ \Mxxyyzz\ \Zxx\ \.sp\ ...: formatting or charset switches that a
     * plain-text consumer cannot honour; dropping them keeps the text readable. */
    return true;
}

static int unescape_raw(const struct hl7_delims *d, const uint8_t *s, size_t n, char *out,
                        size_t cap)
{
    struct obuf o = {out, cap - 1 > INT_MAX ? INT_MAX : cap - 1, 0};
    size_t i = 0;

    while (i < n) {
        if (s[i] != (uint8_t)d->esc) {
            if (!put(&o, (char)s[i])) goto fail;
            i++;
            continue;
        }
        const uint8_t *close = memchr(s + i + 1, (uint8_t)d->esc, n - i - 1);
        if (close == NULL) goto fail;
        size_t clen = (size_t)(close - (s + i + 1));
        if (!decode_escape(d, s + i + 1, clen, &o)) goto fail;
        i += clen + 2;
    }
    out[o.n] = '\0';
    return (int)o.n;
fail:
    out[0] = '\0';
    return -1;
}

int hl7_unescape(const struct hl7_msg *msg, struct hl7_view v, char *out, size_t cap)
{
    if (out == NULL || cap == 0) return -1;
    out[0] = '\0';
    if (msg == NULL || msg->data == NULL || msg->d.esc == 0) return -1;
    if (v.off > msg->len || v.len > msg->len - v.off) return -1;
    return unescape_raw(&msg->d, msg->data + v.off, v.len, out, cap);
}

static char escape_code(const struct hl7_delims *d, char ch)
{
    if (ch == d->field) return 'F';
    if (ch == d->comp) return 'S';
    if (ch == d->sub) return 'T';
    if (ch == d->rep) return 'R';
    if (ch == d->esc) return 'E';
    if (d->trunc != 0 && ch == d->trunc) return 'P';
    return 0;
}

int hl7_escape(const struct hl7_delims *d, const char *text, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";

    if (out == NULL || cap == 0) return -1;
    out[0] = '\0';
    if (d == NULL || text == NULL || d->esc == 0) return -1;
    struct obuf o = {out, cap - 1 > INT_MAX ? INT_MAX : cap - 1, 0};
    for (const char *s = text; *s != '\0'; s++) {
        char code = escape_code(d, *s);
        uint8_t b = (uint8_t)*s;
        bool ok;
        if (code != 0)
            ok = put(&o, d->esc) && put(&o, code) && put(&o, d->esc);
        else if (b < 0x20)
            ok = put(&o, d->esc) && put(&o, 'X') && put(&o, hex[b >> 4]) && put(&o, hex[b & 0xF]) &&
                 put(&o, d->esc);
        else
            ok = put(&o, *s);
        if (!ok) {
            out[0] = '\0';
            return -1;
        }
    }
    out[o.n] = '\0';
    return (int)o.n;
}

/* ---- parsing: MSH --------------------------------------------------------------------- */

/* MSH-1 and MSH-2: "MSH" fs comp rep esc sub [trunc] fs. */
static int parse_delims(struct pctx *c)
{
    const uint8_t *p = c->p;
    uint8_t e[5];
    size_t n = 0;

    if (c->len < 3 || memcmp(p, "MSH", 3) != 0)
        return fail(c->err, 100, 'R', "", 0, 0, "message does not start with MSH");
    if (c->len < 4 || is_term(p[3]))
        return fail(c->err, 100, 'R', "MSH", 1, 1, "MSH segment too short");
    if (!enc_char_ok(p[3]))
        return fail(c->err, 102, 'R', "MSH", 1, 1, "invalid field separator in MSH-1");
    while (n < sizeof e + 1 && n < c->len - 4 && p[4 + n] != p[3] && !is_term(p[4 + n]))
        n++;
    if (n != 4 && n != 5)
        return fail(c->err, 102, 'R', "MSH", 1, 2, "MSH-2 must hold 4 or 5 encoding characters");
    for (size_t k = 0; k < n; k++) {
        e[k] = p[4 + k];
        if (!enc_char_ok(e[k]))
            return fail(c->err, 102, 'R', "MSH", 1, 2, "invalid encoding character in MSH-2");
        for (size_t j = 0; j < k; j++) {
            if (e[j] == e[k])
                return fail(c->err, 102, 'R', "MSH", 1, 2, "duplicate encoding character");
        }
    }
    struct hl7_delims *d = &c->msg->d;
    d->field = (char)p[3];
    d->comp = (char)e[0];
    d->rep = (char)e[1];
    d->esc = (char)e[2];
    d->sub = (char)e[3];
    d->trunc = n == 5 ? (char)e[4] : 0;
    return 0;
}

static struct hl7_view msh_raw(const struct pctx *c, int field)
{
    struct hl7_view v = {0, 0};

    if (seg_field(c->msg, &c->msh, field, &v) != 0) v.off = v.len = 0;
    return v;
}

static void fill_msh_views(struct pctx *c)
{
    struct hl7_msg *m = c->msg;
    size_t end = 0;

    while (end < c->len && !is_term(c->p[end]))
        end++;
    c->msh.off = 0;
    c->msh.len = (uint32_t)end;
    m->sending_app = msh_raw(c, 3);
    m->sending_facility = msh_raw(c, 4);
    m->receiving_app = msh_raw(c, 5);
    m->receiving_facility = msh_raw(c, 6);
    m->msg_type_raw = msh_raw(c, 9);
    m->control_id_raw = msh_raw(c, 10);
    m->processing_id_raw = msh_raw(c, 11);
    m->version_raw = msh_raw(c, 12);
}

/* Unescapes MSH-field (repetition rep, component comp; rep 0 = whole field) into out,
 * which is "" when the position is absent. Text that does not fit, is badly escaped or
 * decodes to a NUL is an error: silently truncating an identifier could alias another. */
static int msh_text(struct pctx *c, int field, int rep, int comp, char *out, size_t cap)
{
    struct hl7_view f, v;

    out[0] = '\0';
    if (seg_field(c->msg, &c->msh, field, &f) != 0) return 0;
    if (rep == 0)
        v = f;
    else if (field_part(c->msg, f, rep, comp, 0, &v) != 0)
        return 0;
    int n = unescape_raw(&c->msg->d, c->p + v.off, v.len, out, cap);
    if (n < 0 || strlen(out) != (size_t)n) {
        out[0] = '\0';
        return fail(c->err, 102, 'E', "MSH", 1, field, "MSH-%d too long or badly escaped", field);
    }
    return 0;
}

static int extract_msh(struct pctx *c)
{
    struct hl7_msg *m = c->msg;

    /* Trigger first: even if MSH-9.1 is bad, the ACK can still name the event. */
    if (msh_text(c, 9, 1, 2, m->trigger, sizeof m->trigger) != 0) return -1;
    if (msh_text(c, 9, 1, 1, m->msg_type, sizeof m->msg_type) != 0) return -1;
    if (m->msg_type[0] == '\0')
        return fail(c->err, 101, 'R', "MSH", 1, 9, "MSH-9 message type missing");
    if (m->trigger[0] != '\0') {
        size_t a = strlen(m->msg_type);
        size_t b = strlen(m->trigger);
        if (b + 1 >= sizeof m->msg_type - a)
            return fail(c->err, 102, 'E', "MSH", 1, 9, "MSH-9 too long");
        m->msg_type[a] = '^';
        memcpy(m->msg_type + a + 1, m->trigger, b + 1);
    }
    /* Message type and event are coded values (tables 0076, 0003). Anything else, e.g. an
     * escaped separator or space, would reach routing keys and subscriber headers. */
    for (const char *t = m->msg_type; *t; t++)
        if (!isalnum((unsigned char)*t) && *t != '^' && *t != '_' && *t != '-')
            return fail(c->err, 102, 'R', "MSH", 1, 9,
                        "MSH-9 may hold only letters, digits, '_' and '-'");
    if (msh_text(c, 10, 0, 0, m->control_id, sizeof m->control_id) != 0) return -1;
    if (m->control_id[0] == '\0')
        return fail(c->err, 101, 'R', "MSH", 1, 10, "MSH-10 message control id missing");
    return msh_text(c, 12, 1, 1, m->version, sizeof m->version);
}

static bool ascii_ieq(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        char x = (*a >= 'a' && *a <= 'z') ? (char)(*a - 32) : *a;
        char y = (*b >= 'a' && *b <= 'z') ? (char)(*b - 32) : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

/* MSH-18 (HL7 table 0211). Absent means the default, which hdx takes to be UTF-8 (a strict
 * superset of ASCII); only a declared 8-bit or other character set relaxes the check. */
static int charset_policy(struct pctx *c)
{
    const char *cs = c->msg->charset;

    if (msh_text(c, 18, 1, 0, c->msg->charset, sizeof c->msg->charset) != 0) return -1;
    if (cs[0] == '\0' || ascii_ieq(cs, "UNICODE UTF-8") || ascii_ieq(cs, "UTF-8"))
        c->cs = CS_UTF8;
    else if (ascii_ieq(cs, "ASCII"))
        c->cs = CS_ASCII;
    else
        c->cs = CS_ANY;
    return 0;
}

/* ---- parsing: segments ---------------------------------------------------------------- */

static bool seg_id_ok(const uint8_t *s, size_t n, uint8_t fs)
{
    if (n < 3 || !is_upper_or_digit(s[0]) || !is_upper_or_digit(s[1]) || !is_upper_or_digit(s[2]))
        return false;
    return n == 3 || s[3] == fs;
}

/* Records where segment idx is (id and 1-based occurrence); counted only on error, so the
 * common path stays linear. */
static int seg_fail(struct pctx *c, size_t idx, int field, int code, const char *text)
{
    const struct hl7_seg *segs = c->msg->segs;
    const uint8_t *id = c->p + segs[idx].off;
    int seq = 1;

    if (!seg_id_ok(id, segs[idx].len, (uint8_t)c->msg->d.field))
        return fail(c->err, code, 'E', "", 0, field, "%s (segment %zu)", text, idx + 1);
    for (size_t j = 0; j < idx && seq < INT_MAX; j++) {
        if (segs[j].len >= 3 && memcmp(c->p + segs[j].off, id, 3) == 0) seq++;
    }
    char seg[4] = {(char)id[0], (char)id[1], (char)id[2], '\0'};
    return fail(c->err, code, 'E', seg, seq, field, "%s", text);
}

/* 1 when all 8 bytes of w are printable ASCII (0x20..0x7F) other than the field separator
 * (fs8: fs in every byte): the bytes the loop below would pass one by one. Word-at-a-time
 * tests: a byte below 0x20 borrows into its top bit in w - 0x20.., a byte equal to fs is a
 * zero byte of w ^ fs8. Large messages (an embedded PDF, base64) are almost all such words. */
static inline int plain8(uint64_t w, uint64_t fs8)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t x = w ^ fs8;
    return ((w | ((w - 0x20 * ones) & ~w) | ((x - ones) & ~x)) & high) == 0;
}

/* One pass over a segment's bytes: forbidden bytes, the character-set policy and the
 * field-length limit, tracking the field number for the error location. Printable ASCII
 * other than the field separator takes one well-predicted branch: it is almost every byte. */
static int check_bytes(struct pctx *c, size_t idx)
{
    const struct hl7_seg *s = &c->msg->segs[idx];
    const uint8_t *p = c->p + s->off;
    const uint8_t fs = (uint8_t)c->msg->d.field;
    bool msh = seg_is_msh(c->p, s);
    int field = 0; /* 0 = the segment id */
    size_t fstart = 0;

    const uint64_t fs8 = 0x0101010101010101u * fs;
    for (size_t i = 0, step; i < s->len; i += step) {
        uint64_t w;
        if (s->len - i >= 8 && (memcpy(&w, p + i, 8), plain8(w, fs8))) {
            step = 8;
            continue;
        }
        uint8_t b = p[i];
        step = 1;
        if (b >= 0x20 && b < 0x80 && b != fs) continue;
        if (b == fs) {
            if (field > 0 && i - fstart > c->max_field)
                return seg_fail(c, idx, field, 102, "field longer than limit");
            if (field < INT_MAX) field = (field == 0 && msh) ? 2 : field + 1;
            fstart = i + 1;
            continue;
        }
        if (is_forbidden(b)) return seg_fail(c, idx, field, 102, "NUL or MLLP control byte");
        if (b >= 0x80 && c->cs == CS_ASCII)
            return seg_fail(c, idx, field, 102, "non-ASCII byte with ASCII character set");
        if (b >= 0x80 && c->cs == CS_UTF8) {
            step = hdx_utf8_seq_len(p + i, s->len - i);
            if (step == 0) return seg_fail(c, idx, field, 102, "invalid UTF-8");
        }
    }
    if (field > 0 && s->len - fstart > c->max_field)
        return seg_fail(c, idx, field, 102, "field longer than limit");
    return 0;
}

static int check_segment(struct pctx *c, size_t idx)
{
    const struct hl7_seg *s = &c->msg->segs[idx];

    if (check_bytes(c, idx) != 0) return -1;
    if (!seg_id_ok(c->p + s->off, s->len, (uint8_t)c->msg->d.field))
        return fail(c->err, 100, 'R', "", 0, 0, "invalid segment id (segment %zu)", idx + 1);
    /* One frame carries one message: a second MSH would be acknowledged and stored as part
     * of the first, and its sender would never get its own ACK. */
    if (idx > 0 && seg_is_msh(c->p, s))
        return fail(c->err, 100, 'R', "MSH", 2, 0, "more than one message in one frame");
    return 0;
}

/* Non-empty lines; CR, LF and CRLF all end a segment and empty lines are not segments. */
static size_t count_segments(const uint8_t *p, size_t len)
{
    size_t n = 0;
    bool in = false;

    for (size_t i = 0; i < len; i++) {
        if (is_term(p[i]))
            in = false;
        else if (!in) {
            in = true;
            n++;
        }
    }
    return n;
}

/* An upper bound on the segment count from memchr (vectorised in libc): terminators + 1. */
static size_t count_terminators(const uint8_t *p, size_t len, uint8_t t)
{
    size_t n = 0;
    for (const uint8_t *q = p, *end = p + len; q < end; q++, n++) {
        q = memchr(q, t, (size_t)(end - q));
        if (q == NULL) break;
    }
    return n;
}

static size_t segment_end(const uint8_t *p, size_t pos, size_t len)
{
    const uint8_t *cr = memchr(p + pos, '\r', len - pos);
    size_t lim = cr != NULL ? (size_t)(cr - p) : len;
    const uint8_t *lf = memchr(p + pos, '\n', lim - pos);
    return lf != NULL ? (size_t)(lf - p) : lim;
}

static int split_segments(struct pctx *c)
{
    struct hl7_msg *m = c->msg;
    size_t n = count_terminators(c->p, c->len, '\r') + count_terminators(c->p, c->len, '\n') + 1;
    size_t k = 0;

    if (n > c->max_segments) n = count_segments(c->p, c->len); /* exact, only when it matters */

    /* The limit is enforced before allocating, so a hostile count costs no memory. */
    if (n > c->max_segments)
        return fail(c->err, 100, 'E', "", 0, 0, "more than %zu segments", c->max_segments);
    m->segs = calloc(n, sizeof *m->segs);
    if (m->segs == NULL) return fail(c->err, 207, 'E', "", 0, 0, "out of memory");
    for (size_t pos = 0; pos < c->len && k < n;) {
        if (is_term(c->p[pos])) {
            pos++;
            continue;
        }
        size_t end = segment_end(c->p, pos, c->len);
        m->segs[k].off = (uint32_t)pos;
        m->segs[k].len = (uint32_t)(end - pos);
        if (check_segment(c, k) != 0) return -1;
        k++;
        pos = end;
    }
    m->nsegs = k;
    return 0;
}

static int extract_pid(struct pctx *c)
{
    struct hl7_msg *m = c->msg;
    struct hl7_view v;

    if (hl7_get(m, "PID", 1, 3, 1, 1, 0, &v) != 0)
        return 0; /* no PID or no PID-3: not every message is about a patient */
    int n = unescape_raw(&m->d, c->p + v.off, v.len, m->patient_id, sizeof m->patient_id);
    if (n < 0 || strlen(m->patient_id) != (size_t)n) {
        m->patient_id[0] = '\0';
        return fail(c->err, 102, 'E', "PID", 1, 3, "PID-3 too long or badly escaped");
    }
    return 0;
}

int hl7_parse(const uint8_t *data, size_t len, const struct hl7_limits *lim, struct hl7_msg *msg,
              struct hl7_error *err)
{
    struct hl7_error dummy;
    struct pctx c = {.p = data, .len = len, .msg = msg, .err = err != NULL ? err : &dummy};

    memset(c.err, 0, sizeof *c.err);
    if (msg == NULL) return fail(c.err, 207, 'E', "", 0, 0, "no message object");
    memset(msg, 0, sizeof *msg);
    c.max_segments =
        lim != NULL && lim->max_segments != 0 ? lim->max_segments : HL7_DEFAULT_MAX_SEGMENTS;
    c.max_field =
        lim != NULL && lim->max_field_len != 0 ? lim->max_field_len : HL7_DEFAULT_MAX_FIELD_LEN;
    if (data == NULL) return fail(c.err, 100, 'R', "", 0, 0, "message does not start with MSH");
    if (len > UINT32_MAX) return fail(c.err, 102, 'E', "", 0, 0, "message too large");
    if (parse_delims(&c) != 0) {
        memset(msg, 0, sizeof *msg);
        return -1;
    }
    msg->data = data;
    msg->len = len;
    msg->nsegs = 1; /* from here on the MSH views are valid, even on error */
    fill_msh_views(&c);
    if (extract_msh(&c) != 0 || charset_policy(&c) != 0 || split_segments(&c) != 0 ||
        extract_pid(&c) != 0) {
        free(msg->segs);
        msg->segs = NULL;
        msg->nsegs = 1;
        return -1;
    }
    return 0;
}

void hl7_msg_free(struct hl7_msg *msg)
{
    if (msg == NULL) return;
    free(msg->segs);
    msg->segs = NULL;
    msg->nsegs = 0;
}

/* One field of a segment from data[*pos]: copied when it holds no delimiter of MSH-2; *pos
 * then at the byte after it (a field separator, a terminator or the end). */
static int peek_field(const uint8_t *data, size_t len, size_t *pos, uint8_t fs, const uint8_t *enc,
                      size_t nenc, char *out, size_t cap)
{
    size_t i = *pos, n = 0;
    for (; i < len && data[i] != fs && !is_term(data[i]); i++, n++) {
        if (data[i] < 0x20 || memchr(enc, data[i], nenc) != NULL || n + 1 >= cap) return -1;
        out[n] = (char)data[i];
    }
    out[n] = '\0';
    *pos = i;
    return 0;
}

int hl7_peek_ack(const uint8_t *data, size_t len, char *code, size_t code_cap, char *id,
                 size_t id_cap)
{
    if (len < 8 || code_cap == 0 || id_cap == 0 || memcmp(data, "MSH", 3) != 0) return -1;
    uint8_t fs = data[3];
    const uint8_t *enc = data + 4;
    size_t nenc = 0;
    while (4 + nenc < len && data[4 + nenc] != fs && !is_term(data[4 + nenc]))
        nenc++;
    if (nenc < 4 || nenc > 5 || memchr(enc, fs, nenc) != NULL) return -1;
    for (size_t pos = 0; pos < len;) {
        const uint8_t *t = memchr(data + pos, '\r', len - pos);
        size_t end = t != NULL ? (size_t)(t - data) : len;
        const uint8_t *lf = memchr(data + pos, '\n', end - pos);
        if (lf != NULL) end = (size_t)(lf - data);
        if (end - pos >= 3 && memcmp(data + pos, "MSA", 3) == 0) {
            size_t i = pos + 3;
            if (end - pos < 4 || data[i] != fs) return -1; /* no fields, or not "MSA" */
            i++;
            if (peek_field(data, end, &i, fs, enc, nenc, code, code_cap) != 0) return -1;
            if (i >= end) return -1; /* no MSA-2 */
            i++;
            return peek_field(data, end, &i, fs, enc, nenc, id, id_cap);
        }
        pos = end + 1;
    }
    return -1;
}
