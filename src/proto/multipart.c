#include "proto/multipart.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* ---------- the fixed refusal texts (never input bytes) ---------- */

static const char R_BOUNDARY[] = "the boundary is not valid";
static const char R_NO_OPEN[] = "no opening delimiter";
static const char R_NO_PART[] = "a close delimiter before any part";
static const char R_DELIM_LF[] = "a bare LF at a delimiter line (lines must end in CRLF)";
static const char R_DELIM_CR[] = "a bare CR on a delimiter line";
static const char R_DELIM_JUNK[] = "bytes after the boundary on a delimiter line";
static const char R_DELIM_TRUNC[] = "the body ends inside a delimiter line";
static const char R_TRUNC[] = "a part with no closing delimiter (truncated body)";
static const char R_TOO_MANY[] = "more parts than max_parts";
static const char R_HDR_TRUNC[] = "the body ends inside a part header block";
static const char R_HDR_BIG[] = "a part header block over max_part_header_bytes";
static const char R_HDR_MANY[] = "more part header lines than max_part_headers";
static const char R_HDR_LF[] = "a bare LF in a part header block";
static const char R_HDR_CR[] = "a bare CR in a part header block";
static const char R_HDR_CTL[] = "a control byte in a part header block";
static const char R_HDR_FOLD[] = "obs-fold (a folded part header line) is refused";
static const char R_HDR_COLON[] = "a part header line without a colon";
static const char R_HDR_NAME[] = "a part header name that is not a token";
static const char R_CT_TWICE[] = "Content-Type given twice in a part";
static const char R_CT_LONG[] = "a part Content-Type over 255 bytes";
static const char R_LOC_TWICE[] = "Content-Location given twice in a part";
static const char R_LOC_LONG[] = "a part Content-Location over 511 bytes";
static const char R_CTE_TWICE[] = "Content-Transfer-Encoding given twice in a part";
static const char R_CTE[] = "a Content-Transfer-Encoding other than binary, 8bit or 7bit";
static const char R_LEN_TWICE[] = "Content-Length given twice in a part";
static const char R_LEN_BAD[] = "a part Content-Length that is not one decimal number";
static const char R_LEN_DIFF[] = "a part Content-Length that does not match its body";

/* ---------- characters ---------- */

static int is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 2046 5.1.1 bchars (SP included). */
static int is_bchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* s[0..n) equals the lower-case word w, case-insensitively. */
static int ieq(const uint8_t *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    if (n != wl) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != w[i]) return 0;
    return 1;
}

int hdx_mp_boundary_ok(const char *b)
{
    size_t n = strlen(b);
    if (n == 0 || n > HDX_MP_BOUNDARY_MAX || b[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_bchar((unsigned char)b[i])) return 0;
    return 1;
}

/* ---------- Content-Type ---------- */

#define CT_PARAMS_MAX 16
#define CT_NAME_MAX 64
#define CT_VALUE_MAX 1024

static int ct_refuse(struct hdx_mp_ctype *ct, const char **why, const char *reason)
{
    memset(ct, 0, sizeof(*ct));
    *why = reason;
    return HDX_E_INVAL;
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A token at *s, lower-cased into out (cap bytes with the NUL); its length, 0 if none, or
 * cap when it does not fit. */
static size_t take_token(const char **s, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = *s;
    for (; is_tchar((unsigned char)*p); p++, n++)
        if (n + 1 < cap) out[n] = (char)lower((unsigned char)*p);
    *s = p;
    if (n + 1 > cap) return cap;
    out[n] = 0;
    return n;
}

/* "type/subtype" (tokens), lower-cased; 1 when the whole of s is one. */
static int media_ok(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash[1] == 0) return 0;
    for (const char *p = s; *p; p++)
        if (p != slash && !is_tchar((unsigned char)*p)) return 0;
    return 1;
}

/* The parameter value at *s (token or quoted-string, quoted-pairs undone) into out (cap
 * CT_VALUE_MAX + 1); its length, or -1 with *why set. */
static int take_value(const char **s, char *out, const char **why)
{
    const char *p = *s;
    size_t n = 0;
    if (*p != '"') {
        for (; is_tchar((unsigned char)*p); p++) {
            if (n == CT_VALUE_MAX) return *why = "a parameter value too long", -1;
            out[n++] = *p;
        }
        if (n == 0) return *why = "a parameter value that is neither token nor quoted-string", -1;
    } else {
        for (p++;; p++) {
            unsigned c = (unsigned char)*p;
            if (c == 0) return *why = "an unterminated quoted-string", -1;
            if (c == '"') {
                p++;
                break;
            }
            if (c == '\\') {
                c = (unsigned char)*++p;
                if (!(c == '\t' || (c >= 0x20 && c != 0x7f)))
                    return *why = "a bad quoted-pair in a quoted-string", -1;
            } else if (!(c == '\t' || (c >= 0x20 && c != 0x7f))) {
                return *why = "a control byte in a quoted-string", -1;
            }
            if (n == CT_VALUE_MAX) return *why = "a parameter value too long", -1;
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
    *s = p;
    return (int)n;
}

/* Keeps one known parameter's value; NULL or a reason. */
static const char *ct_keep(struct hdx_mp_ctype *ct, const char *name, const char *v, size_t n,
                           int multipart)
{
    if (strcmp(name, "boundary") == 0 && multipart) {
        if (!hdx_mp_boundary_ok(v)) return "the boundary is not 1-70 bchars (RFC 2046)";
        memcpy(ct->boundary, v, n + 1);
    } else if (strcmp(name, "type") == 0) {
        if (n >= sizeof(ct->type) || !media_ok(v)) return "the type parameter is not a media type";
        for (size_t i = 0; i <= n; i++)
            ct->type[i] = (char)lower((unsigned char)v[i]);
    } else if (strcmp(name, "start") == 0) {
        if (n >= sizeof(ct->start)) return "the start parameter is too long";
        memcpy(ct->start, v, n + 1);
    } else if (strcmp(name, "transfer-syntax") == 0) {
        if (n == 0 || n >= sizeof(ct->transfer_syntax) || strspn(v, "0123456789.") != n)
            return "the transfer-syntax parameter is not a UID";
        memcpy(ct->transfer_syntax, v, n + 1);
    }
    return NULL;
}

int hdx_mp_content_type(const char *value, struct hdx_mp_ctype *ct, const char **why)
{
    char names[CT_PARAMS_MAX][CT_NAME_MAX + 1];
    char v[CT_VALUE_MAX + 1];
    size_t nparams = 0;
    memset(ct, 0, sizeof(*ct));
    const char *s = skip_ows(value);
    size_t n = take_token(&s, ct->media, sizeof(ct->media));
    if (n == 0 || n == sizeof(ct->media) || *s != '/')
        return ct_refuse(ct, why, "not a type/subtype media type");
    s++;
    size_t m = take_token(&s, ct->media + n + 1, sizeof(ct->media) - n - 1);
    if (m == 0 || m == sizeof(ct->media) - n - 1)
        return ct_refuse(ct, why, "not a type/subtype media type");
    ct->media[n] = '/';
    int multipart = strncmp(ct->media, "multipart/", 10) == 0;
    for (;;) {
        s = skip_ows(s);
        if (*s == 0) break;
        if (*s != ';') return ct_refuse(ct, why, "bytes that are not a parameter list");
        s = skip_ows(s + 1);
        if (*s == ';' || *s == 0) continue; /* an empty parameter (RFC 9110 5.6.6) */
        if (nparams == CT_PARAMS_MAX) return ct_refuse(ct, why, "too many parameters");
        char *name = names[nparams];
        size_t nl = take_token(&s, name, CT_NAME_MAX + 1);
        if (nl == 0) return ct_refuse(ct, why, "a parameter name that is not a token");
        if (nl == CT_NAME_MAX + 1) return ct_refuse(ct, why, "a parameter name too long");
        if (*s != '=')
            return ct_refuse(ct, why, "a parameter without '=' (or with whitespace around it)");
        s++;
        int vl = take_value(&s, v, why);
        if (vl < 0) return ct_refuse(ct, why, *why);
        for (size_t i = 0; i < nparams; i++)
            if (strcmp(names[i], name) == 0) return ct_refuse(ct, why, "a parameter given twice");
        nparams++;
        const char *bad = ct_keep(ct, name, v, (size_t)vl, multipart);
        if (bad) return ct_refuse(ct, why, bad);
    }
    if (multipart && ct->boundary[0] == 0)
        return ct_refuse(ct, why, "a multipart media type without a boundary");
    return HDX_OK;
}

/* ---------- reading ---------- */

void hdx_mp_limits_default(struct hdx_mp_limits *l)
{
    l->max_parts = 1000;
    l->max_part_header_bytes = 8192;
    l->max_part_headers = 16;
}

void hdx_mp_begin(struct hdx_mp_reader *r, const uint8_t *body, size_t len, const char *boundary,
                  const struct hdx_mp_limits *lim)
{
    memset(r, 0, sizeof(*r));
    r->buf = body;
    r->len = body ? len : 0;
    if (lim)
        r->lim = *lim;
    else
        hdx_mp_limits_default(&r->lim);
    if (boundary && hdx_mp_boundary_ok(boundary)) {
        r->blen = strlen(boundary);
        memcpy(r->boundary, boundary, r->blen + 1);
    }
}

size_t hdx_mp_count(const struct hdx_mp_reader *r)
{
    return r->count;
}

enum { D_ERR = -1, D_NOT = 0, D_DELIM = 1, D_CLOSE = 2 };

struct fault {
    const char *why;
    size_t off;
};

static int fault(struct fault *f, const char *why, size_t off)
{
    f->why = why;
    f->off = off;
    return D_ERR;
}

/* What follows "--" boundary, with q just past the boundary: D_NOT (body bytes: the line is
 * "--boundaryX"), D_DELIM or D_CLOSE with *end just past the line (its CRLF, or the end of
 * the body for a close delimiter), or D_ERR. Scans only transport padding: no LF. */
static int classify(const struct hdx_mp_reader *r, size_t q, size_t *end, struct fault *f)
{
    const uint8_t *b = r->buf;
    size_t n = r->len;
    int close = 0;
    if (q == n) return fault(f, R_DELIM_TRUNC, q);
    if (b[q] == '-') {
        if (q + 1 == n || b[q + 1] != '-') return D_NOT; /* a longer boundary "b-..." */
        close = 1;
        q += 2;
    } else if (b[q] != ' ' && b[q] != '\t' && b[q] != '\r' && b[q] != '\n') {
        return D_NOT;
    }
    while (q < n && (b[q] == ' ' || b[q] == '\t'))
        q++;
    if (q == n) {
        if (!close) return fault(f, R_DELIM_TRUNC, q);
        *end = n;
        return D_CLOSE;
    }
    if (b[q] == '\n') return fault(f, R_DELIM_LF, q);
    if (b[q] != '\r') return fault(f, R_DELIM_JUNK, q);
    if (q + 1 == n) return fault(f, R_DELIM_TRUNC, q + 1);
    if (b[q + 1] != '\n') return fault(f, R_DELIM_CR, q);
    *end = q + 2;
    return close ? D_CLOSE : D_DELIM;
}

/* The first delimiter whose LF is at or after from: D_DELIM or D_CLOSE with *start at its
 * CR and *end past its line, D_NOT when the body has none, or D_ERR. Linear: memchr to an
 * LF; "--" boundary holds no LF, so when the next boundary + 2 bytes hold one, no LF before
 * it can start a delimiter and the search moves to it (a byte is looked at no more than
 * twice, and a body of LFs costs one step per boundary + 2 bytes); otherwise at most
 * boundary + 2 bytes are compared and the padding scanned once. An LF before "--" boundary that is
 * not after a CR is refused when the line is otherwise a delimiter line (a reader splitting at bare
 * LFs would split there). */
static int find_delim(const struct hdx_mp_reader *r, size_t from, size_t *start, size_t *end,
                      struct fault *f)
{
    const uint8_t *b = r->buf;
    size_t n = r->len, need = r->blen + 2;
    for (size_t j = from; j < n; j++) {
        const uint8_t *lf = memchr(b + j, '\n', n - j);
        if (!lf) break;
        j = (size_t)(lf - b);
        if (n - j - 1 < need) break; /* no room for "--" boundary after it */
        /* An LF within the next need bytes rules out every LF up to it: go to the last one. */
        const uint8_t *next = memrchr(b + j + 1, '\n', need);
        if (next) {
            j = (size_t)(next - b) - 1;
            continue;
        }
        if (b[j + 1] != '-' || b[j + 2] != '-' || memcmp(b + j + 3, r->boundary, r->blen) != 0)
            continue;
        int k = classify(r, j + 1 + need, end, f);
        if (k == D_NOT) continue;
        if (j == 0 || b[j - 1] != '\r') return fault(f, R_DELIM_LF, j);
        if (k == D_ERR) return k;
        *start = j - 1;
        return k;
    }
    return D_NOT;
}

static int refuse(struct hdx_mp_reader *r, struct hdx_mp_part *p, const char **why, size_t *offset,
                  const char *reason, size_t off)
{
    r->state = 3;
    r->why = reason;
    r->err_off = off;
    memset(p, 0, sizeof(*p));
    *why = reason;
    *offset = off;
    return HDX_E_INVAL;
}

struct part_hdrs {
    int ct, loc, cte, has_len;
    uint64_t clen;
};

/* One header line b[s..e) (no CRLF): NULL or a reason, *at the offending byte. */
static const char *header_line(const uint8_t *b, size_t s, size_t e, struct hdx_mp_part *p,
                               struct part_hdrs *h, size_t *at)
{
    *at = s;
    if (b[s] == ' ' || b[s] == '\t') return R_HDR_FOLD;
    const uint8_t *colon = memchr(b + s, ':', e - s);
    if (!colon) return R_HDR_COLON;
    size_t c = (size_t)(colon - b);
    if (c == s) return R_HDR_NAME;
    for (size_t i = s; i < c; i++)
        if (!is_tchar(b[i])) return *at = i, R_HDR_NAME;
    size_t vs = c + 1, ve = e;
    while (vs < ve && (b[vs] == ' ' || b[vs] == '\t'))
        vs++;
    while (ve > vs && (b[ve - 1] == ' ' || b[ve - 1] == '\t'))
        ve--;
    const uint8_t *v = b + vs;
    size_t vn = ve - vs;
    *at = vs;
    if (ieq(b + s, c - s, "content-type")) {
        if (h->ct++) return *at = s, R_CT_TWICE;
        if (vn >= sizeof(p->content_type)) return R_CT_LONG;
        memcpy(p->content_type, v, vn);
    } else if (ieq(b + s, c - s, "content-location")) {
        if (h->loc++) return *at = s, R_LOC_TWICE;
        if (vn >= sizeof(p->content_location)) return R_LOC_LONG;
        memcpy(p->content_location, v, vn);
    } else if (ieq(b + s, c - s, "content-transfer-encoding")) {
        if (h->cte++) return *at = s, R_CTE_TWICE;
        if (!ieq(v, vn, "binary") && !ieq(v, vn, "8bit") && !ieq(v, vn, "7bit")) return R_CTE;
    } else if (ieq(b + s, c - s, "content-length")) {
        if (h->has_len++) return *at = s, R_LEN_TWICE;
        if (vn == 0 || vn > 19) return R_LEN_BAD; /* 19 digits fit in a uint64_t */
        for (size_t i = 0; i < vn; i++) {
            if (v[i] < '0' || v[i] > '9') return R_LEN_BAD;
            h->clen = h->clen * 10 + (uint64_t)(v[i] - '0');
        }
    }
    return NULL;
}

/* The header block starting at s: *blank is the CR of its empty line. NULL or a reason with
 * *at. Reads at most max_part_header_bytes bytes. */
static const char *header_block(const struct hdx_mp_reader *r, size_t s, size_t *blank,
                                struct hdx_mp_part *p, struct part_hdrs *h, size_t *at)
{
    const uint8_t *b = r->buf;
    size_t n = r->len, max = r->lim.max_part_header_bytes, lines = 0;
    for (size_t ls = s, i = s;; i++) {
        if (i - s >= max) return *at = i, R_HDR_BIG;
        if (i == n) return *at = i, R_HDR_TRUNC;
        uint8_t c = b[i];
        if (c == '\n') return *at = i, R_HDR_LF;
        if (c == '\r') {
            if (i + 1 == n) return *at = i + 1, R_HDR_TRUNC;
            if (b[i + 1] != '\n') return *at = i, R_HDR_CR;
            if (i + 1 - s >= max) return *at = i + 1, R_HDR_BIG;
            if (i == ls) {
                *blank = i;
                return NULL;
            }
            if (++lines > r->lim.max_part_headers) return *at = ls, R_HDR_MANY;
            const char *bad = header_line(b, ls, i, p, h, at);
            if (bad) return bad;
            i++;
            ls = i + 1;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) return *at = i, R_HDR_CTL;
    }
}

/* Finds the opening delimiter: r->pos past its line. 0, or a refusal. */
static int open_body(struct hdx_mp_reader *r, struct hdx_mp_part *p, const char **why,
                     size_t *offset)
{
    const uint8_t *b = r->buf;
    size_t need = r->blen + 2, start = 0, end = 0;
    struct fault f = {NULL, 0};
    int k = D_NOT;
    if (r->blen == 0) return refuse(r, p, why, offset, R_BOUNDARY, 0);
    if (r->len >= need && b[0] == '-' && b[1] == '-' && memcmp(b + 2, r->boundary, r->blen) == 0)
        k = classify(r, need, &end, &f);
    if (k == D_NOT) k = find_delim(r, 0, &start, &end, &f);
    if (k == D_ERR) return refuse(r, p, why, offset, f.why, f.off);
    if (k == D_NOT) return refuse(r, p, why, offset, R_NO_OPEN, 0);
    if (k == D_CLOSE) return refuse(r, p, why, offset, R_NO_PART, start);
    r->pos = end;
    r->state = 1;
    return 0;
}

int hdx_mp_next(struct hdx_mp_reader *r, struct hdx_mp_part *p, const char **why, size_t *offset)
{
    const char *why_unused;
    size_t off_unused;
    if (!why) why = &why_unused;
    if (!offset) offset = &off_unused;
    memset(p, 0, sizeof(*p));
    if (r->state == 3) {
        *why = r->why;
        *offset = r->err_off;
        return HDX_E_INVAL;
    }
    if (r->state == 2) return 0;
    if (r->state == 0 && open_body(r, p, why, offset) != 0) return HDX_E_INVAL;

    /* r->pos is just past a delimiter line: a part starts there. */
    if (r->count >= r->lim.max_parts) return refuse(r, p, why, offset, R_TOO_MANY, r->pos);
    struct part_hdrs h = {0, 0, 0, 0, 0};
    size_t blank = 0, at = 0, start = 0, end = 0;
    const char *bad = header_block(r, r->pos, &blank, p, &h, &at);
    if (bad) return refuse(r, p, why, offset, bad, at);
    /* The empty line's CRLF may be the next delimiter's (an empty body): search from its LF. */
    struct fault f = {NULL, 0};
    int k = find_delim(r, blank + 1, &start, &end, &f);
    if (k == D_ERR) return refuse(r, p, why, offset, f.why, f.off);
    if (k == D_NOT) return refuse(r, p, why, offset, R_TRUNC, blank + 2);
    size_t body = blank + 2; /* <= r->len: "--" boundary follows the empty line at least */
    p->body = r->buf + body;
    p->len = start > body ? start - body : 0;
    if (h.has_len && h.clen != p->len) return refuse(r, p, why, offset, R_LEN_DIFF, body);
    r->count++;
    if (k == D_CLOSE)
        r->state = 2; /* the epilogue is ignored */
    else
        r->pos = end;
    return 1;
}

/* ---------- writing ---------- */

void hdx_mp_out_init(struct hdx_mp_out *o, size_t max)
{
    o->buf = NULL;
    o->len = o->cap = 0;
    o->max = max;
}

void hdx_mp_out_free(struct hdx_mp_out *o)
{
    if (!o) return;
    if (o->buf) {
        sodium_memzero(o->buf, o->cap);
        free(o->buf);
    }
    o->buf = NULL;
    o->len = o->cap = 0;
}

/* Room for add more bytes. Growth copies and wipes the old block: realloc could free PHI
 * unwiped. */
static int reserve(struct hdx_mp_out *o, size_t add)
{
    if (o->len > o->max || add > o->max - o->len) return HDX_E_TOOBIG;
    if (add <= o->cap - o->len) return HDX_OK;
    size_t want = o->len + add, cap = o->cap ? o->cap : 4096;
    while (cap < want && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < want || cap > o->max) cap = o->max; /* want <= max: checked above */
    uint8_t *nb = malloc(cap);
    if (!nb) return HDX_E_NOMEM;
    if (o->buf) {
        memcpy(nb, o->buf, o->len);
        sodium_memzero(o->buf, o->cap);
        free(o->buf);
    }
    o->buf = nb;
    o->cap = cap;
    return HDX_OK;
}

static void put(struct hdx_mp_out *o, const void *s, size_t n)
{
    if (n) memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct hdx_mp_out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* A header value the reader gives back unchanged: no control byte (HTAB inside only), no
 * SP/HTAB at either end, under cap bytes. */
static int value_ok(const char *v, size_t cap)
{
    size_t n = strlen(v);
    if (n >= cap) return 0;
    if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

/* "--" boundary at the body's start or after any LF in it. */
static int body_has_boundary(const uint8_t *b, size_t n, const char *boundary, size_t bl)
{
    if (n >= bl + 2 && b[0] == '-' && b[1] == '-' && memcmp(b + 2, boundary, bl) == 0) return 1;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *lf = memchr(b + j, '\n', n - j);
        if (!lf) break;
        j = (size_t)(lf - b);
        if (n - j - 1 < bl + 2) break;
        const uint8_t *next = memrchr(b + j + 1, '\n', bl + 2); /* as in find_delim */
        if (next) {
            j = (size_t)(next - b) - 1;
            continue;
        }
        if (b[j + 1] == '-' && b[j + 2] == '-' && memcmp(b + j + 3, boundary, bl) == 0) return 1;
    }
    return 0;
}

int hdx_mp_write_part(struct hdx_mp_out *o, const char *boundary, const char *content_type,
                      const char *content_location, const uint8_t *body, size_t len)
{
    if (!boundary || !hdx_mp_boundary_ok(boundary)) return HDX_E_INVAL;
    if (!content_type) content_type = "";
    if (!content_location) content_location = "";
    if (!value_ok(content_type, sizeof(((struct hdx_mp_part *)0)->content_type)) ||
        !value_ok(content_location, sizeof(((struct hdx_mp_part *)0)->content_location)))
        return HDX_E_INVAL;
    if (len && !body) return HDX_E_INVAL;
    size_t bl = strlen(boundary), ctl = strlen(content_type), cll = strlen(content_location);
    if (len && body_has_boundary(body, len, boundary, bl)) return HDX_E_INVAL;
    /* Bounded: bl <= 70, ctl < 256, cll < 512; only len can be large. */
    size_t head = 2 + 2 + bl + 2 + (ctl ? 14 + ctl + 2 : 0) + (cll ? 18 + cll + 2 : 0) + 2;
    if (len > SIZE_MAX - head) return HDX_E_TOOBIG;
    int first = o->len == 0;
    int rc = reserve(o, head + len - (first ? 2 : 0));
    if (rc != HDX_OK) return rc;
    if (!first) puts_(o, "\r\n");
    puts_(o, "--");
    put(o, boundary, bl);
    puts_(o, "\r\n");
    if (ctl) {
        puts_(o, "Content-Type: ");
        put(o, content_type, ctl);
        puts_(o, "\r\n");
    }
    if (cll) {
        puts_(o, "Content-Location: ");
        put(o, content_location, cll);
        puts_(o, "\r\n");
    }
    puts_(o, "\r\n");
    put(o, body, len);
    return HDX_OK;
}

int hdx_mp_write_end(struct hdx_mp_out *o, const char *boundary)
{
    if (!boundary || !hdx_mp_boundary_ok(boundary) || o->len == 0) return HDX_E_INVAL;
    size_t bl = strlen(boundary);
    int rc = reserve(o, 2 + 2 + bl + 2 + 2);
    if (rc != HDX_OK) return rc;
    puts_(o, "\r\n--");
    put(o, boundary, bl);
    puts_(o, "--\r\n");
    return HDX_OK;
}
