/* charset: Specific Character Set (0008,0005) to UTF-8 and back (see charset.h).
 *
 * DESIGN: three paths. The default repertoire and ISO_IR 192 need no iconv (ASCII is checked,
 * UTF-8 validated, both copied). A single-valued set without code extensions (ISO_IR 100 ...,
 * GB18030, GBK) is one iconv descriptor pair. Everything with code extensions (any
 * "ISO 2022 IR n" term, and ISO_IR 13) goes through hdx's own ISO 2022 reader and writer
 * (PS3.5 6.1.2.5, Annexes H, I, J; PS3.3 C.12.1.1.2): escape sequences switch what G0 (bytes
 * 0x21-0x7E) and G1 (bytes 0xA0-0xFF) mean, and each run of characters is converted by the
 * iconv descriptor of its own set (ISO-8859-n, EUC-JP, EUC-KR, GB2312).
 *
 * Why not iconv's ISO-2022-JP-2 and ISO-2022-KR, as a first reading suggests: DICOM's escape
 * sequences only partly line up with them. ISO-2022-KR (RFC 1557) is 7-bit: one ESC $ ) C
 * at the start, then SO/SI shifting KS X 1001 into G0; DICOM (PS3.5 Annex I) designates
 * KS X 1001 to G1 with ESC $ ) C before each run and sends its bytes with the high bit set,
 * never SO/SI, so ISO-2022-KR refuses every DICOM Korean value. ISO-2022-JP-2 (RFC 1554) is
 * 7-bit too: it has no G1, so JIS X 0201 katakana (ISO 2022 IR 13, ESC ) I, bytes 0xA1-0xDF,
 * PS3.5 Annex H) cannot be read with it, and as an encoder it may pick sets DICOM does not
 * allow (ESC . A single shifts, GB 2312 in G0). Reading the escapes here and converting
 * each run with a plain descriptor is faithful for every combination PS3.3 lists.
 *
 * Each descriptor pair is opened once in hdx_charset_open and reset before each use, so an
 * open hdx_charset is used by one thread at a time.
 *
 * Choices where the standard leaves room:
 *  - Value 1 gives the initial G0 and G1 (empty means ISO 2022 IR 6). A multi-byte G0 set as
 *    value 1 (ISO 2022 IR 87, 159) does not make G0 start multi-byte: G0 starts as ASCII and
 *    the set is reached by its escape, since otherwise no delimiter could be read.
 *  - ESC ( B (ASCII into G0) is accepted whatever the values say: ISO-IR 6 is the default
 *    repertoire every DICOM text may return to. Any other escape must belong to a declared
 *    value, or the text is refused.
 *  - ISO-IR 14 (JIS X 0201 Roman, ESC ( J) is read as ASCII: it differs only at 05/12 (yen)
 *    and 07/14 (overline), and DICOM uses byte 05/12 as the value delimiter in every
 *    repertoire; pydicom reads it the same way.
 *  - The reader follows escapes only; it does not reset to value 1 at '^', '=' or '\', since
 *    those bytes can be the second byte of a two-byte character. The writer resets before
 *    '^', '=', '\', every control character and at the end of the value (PS3.5 6.1.2.5.3),
 *    which costs a few bytes outside PN and keeps one writer for all VRs.
 *  - C1 bytes (0x80-0x9F) under code extensions are refused. Under a plain ISO_IR 100 etc.
 *    iconv passes them as U+0080-U+009F, as the single-byte sets define them.
 *  - A multi-valued set must be all ISO 2022 terms; ISO_IR 192, GB18030 and GBK take no code
 *    extensions (PS3.3 C.12.1.1.2). "ISO_IR 6" is read as the default repertoire.
 *  - iconv's count of irreversible conversions must be 0: a character that only maps
 *    approximately is refused, not sent or stored changed. */
#include "dicom/charset.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum mode { M_ASCII, M_UTF8, M_ICONV, M_2022 };

/* What one graphic set of ISO 2022 holds. */
enum kind { K_NONE, K_ASCII, K_ROMAN, K_SB, K_KANA, K_JIS0208, K_JIS0212, K_KSC, K_GB2312 };

struct gset {
    enum kind kind;
    const char *esc;   /* designating escape sequence */
    const char *iconv; /* K_SB and the multi-byte kinds */
};

struct term {
    const char *name;
    enum mode mode;
    const char *iconv; /* M_ICONV */
    struct gset g0, g1;
};

#define SB(esc, name)                                                                              \
    {K_ASCII, "\x1b(B", NULL},                                                                     \
    {                                                                                              \
        K_SB, esc, name                                                                            \
    }
#define NOSET                                                                                      \
    {                                                                                              \
        K_NONE, NULL, NULL                                                                         \
    }

/* PS3.3 C.12.1.1.2 Tables C.12-2 to C.12-5. */
static const struct term terms[] = {
    {"", M_ASCII, NULL, NOSET, NOSET},
    {"ISO_IR 6", M_ASCII, NULL, NOSET, NOSET},
    {"ISO_IR 100", M_ICONV, "ISO-8859-1", NOSET, NOSET},
    {"ISO_IR 101", M_ICONV, "ISO-8859-2", NOSET, NOSET},
    {"ISO_IR 109", M_ICONV, "ISO-8859-3", NOSET, NOSET},
    {"ISO_IR 110", M_ICONV, "ISO-8859-4", NOSET, NOSET},
    {"ISO_IR 144", M_ICONV, "ISO-8859-5", NOSET, NOSET},
    {"ISO_IR 127", M_ICONV, "ISO-8859-6", NOSET, NOSET},
    {"ISO_IR 126", M_ICONV, "ISO-8859-7", NOSET, NOSET},
    {"ISO_IR 138", M_ICONV, "ISO-8859-8", NOSET, NOSET},
    {"ISO_IR 148", M_ICONV, "ISO-8859-9", NOSET, NOSET},
    {"ISO_IR 166", M_ICONV, "TIS-620", NOSET, NOSET},
    {"ISO_IR 13", M_2022, NULL, {K_ROMAN, "\x1b(J", NULL}, {K_KANA, "\x1b)I", NULL}},
    {"ISO_IR 192", M_UTF8, NULL, NOSET, NOSET},
    {"GB18030", M_ICONV, "GB18030", NOSET, NOSET},
    {"GBK", M_ICONV, "GBK", NOSET, NOSET},
    {"ISO 2022 IR 6", M_2022, NULL, {K_ASCII, "\x1b(B", NULL}, NOSET},
    {"ISO 2022 IR 100", M_2022, NULL, SB("\x1b-A", "ISO-8859-1")},
    {"ISO 2022 IR 101", M_2022, NULL, SB("\x1b-B", "ISO-8859-2")},
    {"ISO 2022 IR 109", M_2022, NULL, SB("\x1b-C", "ISO-8859-3")},
    {"ISO 2022 IR 110", M_2022, NULL, SB("\x1b-D", "ISO-8859-4")},
    {"ISO 2022 IR 144", M_2022, NULL, SB("\x1b-L", "ISO-8859-5")},
    {"ISO 2022 IR 127", M_2022, NULL, SB("\x1b-G", "ISO-8859-6")},
    {"ISO 2022 IR 126", M_2022, NULL, SB("\x1b-F", "ISO-8859-7")},
    {"ISO 2022 IR 138", M_2022, NULL, SB("\x1b-H", "ISO-8859-8")},
    {"ISO 2022 IR 148", M_2022, NULL, SB("\x1b-M", "ISO-8859-9")},
    {"ISO 2022 IR 166", M_2022, NULL, SB("\x1b-T", "TIS-620")},
    {"ISO 2022 IR 13", M_2022, NULL, {K_ROMAN, "\x1b(J", NULL}, {K_KANA, "\x1b)I", NULL}},
    {"ISO 2022 IR 87", M_2022, NULL, {K_JIS0208, "\x1b$B", "EUC-JP"}, NOSET},
    {"ISO 2022 IR 159", M_2022, NULL, {K_JIS0212, "\x1b$(D", "EUC-JP"}, NOSET},
    {"ISO 2022 IR 149", M_2022, NULL, NOSET, {K_KSC, "\x1b$)C", "EUC-KR"}},
    {"ISO 2022 IR 58", M_2022, NULL, NOSET, {K_GB2312, "\x1b$)A", "GB2312"}},
};
#define NTERMS (sizeof(terms) / sizeof(terms[0]))

#define CS_VALUES 8                 /* values of (0008,0005) */
#define CS_SETS (2 * CS_VALUES + 1) /* graphic sets: two per value plus ASCII */
#define CS_CONVS (CS_VALUES + 1)

struct conv {
    const char *name;
    iconv_t to;   /* set -> UTF-8 */
    iconv_t from; /* UTF-8 -> set */
};

struct slot {
    int g; /* 0 or 1 */
    enum kind kind;
    const char *esc;
    int conv; /* index into cv, -1 none */
};

struct hdx_charset {
    enum mode mode;
    int escapes; /* M_2022: escape sequences allowed (not for plain ISO_IR 13) */
    struct conv cv[CS_CONVS];
    size_t ncv;
    struct slot set[CS_SETS]; /* set[0] is ASCII into G0 */
    size_t nset;
    int init_g0, init_g1; /* indices into set; init_g1 -1 when G1 starts empty */
};

/* ---------- helpers ---------- */

static int refuse(const char **why, const char *reason)
{
    if (why != NULL) *why = reason;
    return HDX_E_INVAL;
}

/* Length of the valid UTF-8 sequence at p and its code point, 0 when there is none. */
static size_t u8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned c = p[0];
    size_t len;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        len = 2;
        v = c & 0x1F;
    } else if (c < 0xF0) {
        len = 3;
        v = c & 0x0F;
    } else if (c < 0xF5) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

static int u8_valid(const char *s, size_t n)
{
    uint32_t cp;

    for (size_t i = 0; i < n;) {
        size_t l = u8_decode((const unsigned char *)s + i, n - i, &cp);
        if (l == 0) return 0;
        i += l;
    }
    return 1;
}

static int put(char *out, size_t lim, size_t *o, const void *b, size_t n)
{
    if (n > lim - *o) return HDX_E_TOOBIG;
    memcpy(out + *o, b, n);
    *o += n;
    return HDX_OK;
}

/* One whole conversion through cd into out[0..lim), appending at *o. iconv wants a char **
 * for input it never writes; the cast goes through uintptr_t to say so. */
static int run_iconv(iconv_t cd, const void *in, size_t len, char *out, size_t lim, size_t *o)
{
    char *ip = (char *)(uintptr_t)in, *op = out + *o;
    size_t il = len, ol = lim - *o;

    iconv(cd, NULL, NULL, NULL, NULL);
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    if (r == (size_t)-1) return errno == E2BIG ? HDX_E_TOOBIG : HDX_E_INVAL;
    if (r != 0) return HDX_E_INVAL; /* irreversible: not faithful */
    if (iconv(cd, NULL, NULL, &op, &ol) == (size_t)-1)
        return errno == E2BIG ? HDX_E_TOOBIG : HDX_E_INVAL;
    *o = (size_t)(op - out);
    return HDX_OK;
}

static const struct term *find_term(const char *s, size_t n)
{
    for (size_t i = 0; i < NTERMS; i++)
        if (strlen(terms[i].name) == n && memcmp(terms[i].name, s, n) == 0) return &terms[i];
    return NULL;
}

/* ---------- open, close ---------- */

static int add_conv(struct hdx_charset *cs, const char *name, const char **why)
{
    for (size_t i = 0; i < cs->ncv; i++)
        if (strcmp(cs->cv[i].name, name) == 0) return (int)i;
    if (cs->ncv == CS_CONVS) return refuse(why, "too many character sets");
    struct conv *c = &cs->cv[cs->ncv];
    c->to = iconv_open("UTF-8", name);
    if (c->to == (iconv_t)-1) return refuse(why, "iconv cannot convert from this character set");
    c->from = iconv_open(name, "UTF-8");
    if (c->from == (iconv_t)-1) {
        iconv_close(c->to);
        return refuse(why, "iconv cannot convert to this character set");
    }
    c->name = name;
    return (int)cs->ncv++;
}

static int add_set(struct hdx_charset *cs, int g, const struct gset *s, const char **why)
{
    int conv = -1;

    if (s->kind == K_NONE) return -1;
    for (size_t i = 0; i < cs->nset; i++)
        if (strcmp(cs->set[i].esc, s->esc) == 0) return (int)i;
    if (s->iconv != NULL) {
        conv = add_conv(cs, s->iconv, why);
        if (conv < 0) return -2;
    }
    cs->set[cs->nset] = (struct slot){g, s->kind, s->esc, conv};
    return (int)cs->nset++;
}

/* Splits the (0008,0005) value into at most CS_VALUES trimmed values. */
static int split_values(const char *s, const char *v[CS_VALUES], size_t vn[CS_VALUES], size_t *nv,
                        const char **why)
{
    size_t n = strlen(s), start = 0;

    *nv = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '\\') continue;
        size_t a = start, b = i;
        while (a < b && s[a] == ' ')
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\0'))
            b--;
        if (*nv == CS_VALUES) return refuse(why, "more than 8 Specific Character Set values");
        v[*nv] = s + a;
        vn[*nv] = b - a;
        (*nv)++;
        start = i + 1;
    }
    return HDX_OK;
}

static int open_2022(struct hdx_charset *cs, const struct term *t[CS_VALUES], size_t nv,
                     const char **why)
{
    static const struct gset ascii = {K_ASCII, "\x1b(B", NULL};

    cs->mode = M_2022;
    cs->escapes = strncmp(t[0]->name, "ISO 2022", 8) == 0;
    add_set(cs, 0, &ascii, why);
    cs->init_g0 = 0;
    cs->init_g1 = -1;
    for (size_t i = 0; i < nv; i++) {
        int g0 = add_set(cs, 0, &t[i]->g0, why), g1 = add_set(cs, 1, &t[i]->g1, why);
        if (g0 == -2 || g1 == -2) return HDX_E_INVAL;
        if (i > 0) continue;
        if (g0 >= 0 && (cs->set[g0].kind == K_ASCII || cs->set[g0].kind == K_ROMAN))
            cs->init_g0 = g0;
        cs->init_g1 = g1 >= 0 ? g1 : -1;
    }
    return HDX_OK;
}

int hdx_charset_open(const char *charset, struct hdx_charset **out, const char **why)
{
    const char *v[CS_VALUES];
    size_t vn[CS_VALUES], nv;
    const struct term *t[CS_VALUES];
    int rc;

    if (why != NULL) *why = NULL;
    if (out == NULL) return refuse(why, "no output");
    *out = NULL;
    if (charset == NULL) charset = "";
    rc = split_values(charset, v, vn, &nv, why);
    if (rc != HDX_OK) return rc;
    for (size_t i = 0; i < nv; i++) {
        /* An empty value 1 of a multi-valued set is ISO 2022 IR 6 (PS3.3 C.12.1.1.2). */
        t[i] = (nv > 1 && i == 0 && vn[0] == 0) ? find_term("ISO 2022 IR 6", 13)
                                                : find_term(v[i], vn[i]);
        if (nv > 1 && i > 0 && vn[i] == 0)
            return refuse(why, "empty Specific Character Set value after value 1");
        if (t[i] == NULL) return refuse(why, "unknown Specific Character Set term");
        if (nv > 1 && (t[i]->mode == M_UTF8 || strncmp(t[i]->name, "GB", 2) == 0))
            return refuse(why, "ISO_IR 192, GB18030 and GBK take no code extensions");
        if (nv > 1 && strncmp(t[i]->name, "ISO 2022", 8) != 0)
            return refuse(why, "a multi-valued Specific Character Set needs ISO 2022 terms");
    }
    struct hdx_charset *cs = calloc(1, sizeof *cs);
    if (cs == NULL) return HDX_E_NOMEM;
    cs->mode = t[0]->mode;
    if (cs->mode == M_ICONV) {
        rc = add_conv(cs, t[0]->iconv, why) < 0 ? HDX_E_INVAL : HDX_OK;
    } else if (cs->mode == M_2022) {
        rc = open_2022(cs, t, nv, why);
    }
    if (rc != HDX_OK) {
        hdx_charset_close(cs);
        return rc;
    }
    *out = cs;
    return HDX_OK;
}

void hdx_charset_close(struct hdx_charset *cs)
{
    if (cs == NULL) return;
    for (size_t i = 0; i < cs->ncv; i++) {
        iconv_close(cs->cv[i].to);
        iconv_close(cs->cv[i].from);
    }
    free(cs);
}

int hdx_charset_is_utf8(const struct hdx_charset *cs)
{
    return cs != NULL && (cs->mode == M_ASCII || cs->mode == M_UTF8);
}

/* ---------- ISO 2022 reader ---------- */

static int match_esc(const struct hdx_charset *cs, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < cs->nset; i++) {
        size_t l = strlen(cs->set[i].esc);
        if (l <= n && memcmp(cs->set[i].esc, p, l) == 0) return (int)i;
    }
    return -1;
}

static int is_94(unsigned char b)
{
    return b >= 0xA1 && b <= 0xFE;
}

/* One character from G0 (a 94 x 94 set) at p: bytes 0x21-0x7E, sent to EUC-JP. */
static int read_g0_double(const struct hdx_charset *cs, const struct slot *s,
                          const unsigned char *p, size_t n, char *out, size_t lim, size_t *o)
{
    unsigned char e[3];
    size_t el = 0;

    if (n < 2 || p[1] < 0x21 || p[1] > 0x7E) return HDX_E_INVAL;
    if (s->kind == K_JIS0212) e[el++] = 0x8F;
    e[el++] = (unsigned char)(p[0] | 0x80);
    e[el++] = (unsigned char)(p[1] | 0x80);
    return run_iconv(cs->cv[s->conv].to, e, el, out, lim, o);
}

/* One character from G1 at p (p[0] >= 0xA0); *used is its byte count. */
static int read_g1(const struct hdx_charset *cs, const struct slot *s, const unsigned char *p,
                   size_t n, char *out, size_t lim, size_t *o, size_t *used)
{
    *used = 1;
    switch (s->kind) {
    case K_SB:
        return run_iconv(cs->cv[s->conv].to, p, 1, out, lim, o);
    case K_KANA: {
        if (p[0] < 0xA1 || p[0] > 0xDF) return HDX_E_INVAL;
        uint32_t cp = 0xFF61 + (uint32_t)(p[0] - 0xA1); /* halfwidth katakana block */
        unsigned char u[3] = {(unsigned char)(0xE0 | (cp >> 12)),
                              (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
                              (unsigned char)(0x80 | (cp & 0x3F))};
        return put(out, lim, o, u, 3);
    }
    case K_KSC:
    case K_GB2312:
        if (n < 2 || !is_94(p[0]) || !is_94(p[1])) return HDX_E_INVAL;
        *used = 2;
        return run_iconv(cs->cv[s->conv].to, p, 2, out, lim, o);
    default:
        return HDX_E_INVAL;
    }
}

static int read_2022(const struct hdx_charset *cs, const unsigned char *p, size_t n, char *out,
                     size_t lim, size_t *o)
{
    int g0 = cs->init_g0, g1 = cs->init_g1, rc = HDX_OK;

    for (size_t i = 0; i < n && rc == HDX_OK;) {
        unsigned char b = p[i];
        if (b == 0x1B) {
            int s = cs->escapes ? match_esc(cs, p + i, n - i) : -1;
            if (s < 0) return HDX_E_INVAL;
            if (cs->set[s].g == 0)
                g0 = s;
            else
                g1 = s;
            i += strlen(cs->set[s].esc);
        } else if (b < 0x80) {
            enum kind k = cs->set[g0].kind;
            if (b < 0x21 || b == 0x7F || k == K_ASCII || k == K_ROMAN) {
                rc = put(out, lim, o, &b, 1);
                i++;
            } else {
                rc = read_g0_double(cs, &cs->set[g0], p + i, n - i, out, lim, o);
                i += 2;
            }
        } else {
            size_t used;
            if (g1 < 0 || b < 0xA0) return HDX_E_INVAL; /* no G1, or a C1 control */
            rc = read_g1(cs, &cs->set[g1], p + i, n - i, out, lim, o, &used);
            i += used;
        }
    }
    return rc;
}

/* ---------- ISO 2022 writer ---------- */

/* Encodes one character (UTF-8 u, ul bytes, code point cp) in set s into b; 0 when it fits. */
static int write_one(const struct hdx_charset *cs, const struct slot *s, const char *u, size_t ul,
                     uint32_t cp, unsigned char b[4], size_t *bl)
{
    char tmp[8];
    size_t n = 0;

    switch (s->kind) {
    case K_KANA:
        if (cp < 0xFF61 || cp > 0xFF9F) return -1;
        b[0] = (unsigned char)(0xA1 + (cp - 0xFF61));
        *bl = 1;
        return 0;
    case K_SB:
    case K_JIS0208:
    case K_JIS0212:
    case K_KSC:
    case K_GB2312:
        break;
    default:
        return -1;
    }
    if (run_iconv(cs->cv[s->conv].from, u, ul, tmp, sizeof tmp, &n) != HDX_OK) return -1;
    const unsigned char *t = (const unsigned char *)tmp;
    if (s->kind == K_SB && n == 1 && t[0] >= 0xA0) {
        b[0] = t[0];
        *bl = 1;
        return 0;
    }
    if (s->kind == K_JIS0208 && n == 2 && is_94(t[0]) && is_94(t[1])) {
        b[0] = t[0] & 0x7F, b[1] = t[1] & 0x7F;
        *bl = 2;
        return 0;
    }
    if (s->kind == K_JIS0212 && n == 3 && t[0] == 0x8F && is_94(t[1]) && is_94(t[2])) {
        b[0] = t[1] & 0x7F, b[1] = t[2] & 0x7F;
        *bl = 2;
        return 0;
    }
    if ((s->kind == K_KSC || s->kind == K_GB2312) && n == 2 && is_94(t[0]) && is_94(t[1])) {
        b[0] = t[0], b[1] = t[1];
        *bl = 2;
        return 0;
    }
    return -1;
}

struct wstate {
    int g0, g1;
    char *out;
    size_t lim, o;
};

static int designate(const struct hdx_charset *cs, struct wstate *w, int s)
{
    int *cur = cs->set[s].g == 0 ? &w->g0 : &w->g1;

    if (*cur == s) return HDX_OK;
    if (!cs->escapes) return HDX_E_INVAL;
    *cur = s;
    return put(w->out, w->lim, &w->o, cs->set[s].esc, strlen(cs->set[s].esc));
}

/* Back to what value 1 designates (PS3.5 6.1.2.5.3). When value 1 leaves G1 empty, G1 counts
 * as empty again, so the next G1 character repeats its escape: readers that decode each
 * component on its own (pydicom does) then still know the set, and the bytes equal PS3.5
 * Annex I's examples. */
static int reset(const struct hdx_charset *cs, struct wstate *w)
{
    int rc = designate(cs, w, cs->init_g0);
    if (rc != HDX_OK) return rc;
    if (cs->init_g1 < 0) {
        w->g1 = -1;
        return HDX_OK;
    }
    return designate(cs, w, cs->init_g1);
}

static int write_2022(const struct hdx_charset *cs, const char *in, size_t n, struct wstate *w)
{
    int rc = HDX_OK;

    for (size_t i = 0; i < n && rc == HDX_OK;) {
        uint32_t cp;
        size_t l = u8_decode((const unsigned char *)in + i, n - i, &cp);
        if (l == 0 || cp == 0x1B) return HDX_E_INVAL; /* checked UTF-8; ESC is not text */
        if (cp < 0x80) {
            unsigned char c = (unsigned char)cp;
            enum kind k = cs->set[w->g0].kind;
            if (c < 0x20 || c == 0x7F || c == '^' || c == '=' || c == '\\')
                rc = reset(cs, w);
            else if (k != K_ASCII && k != K_ROMAN)
                rc = designate(cs, w, cs->init_g0);
            if (rc == HDX_OK) rc = put(w->out, w->lim, &w->o, &c, 1);
        } else {
            unsigned char b[4];
            size_t bl = 0;
            int found = -1;
            /* What is designated now first (fewest escapes), then the values in order. */
            if (w->g1 >= 0 && write_one(cs, &cs->set[w->g1], in + i, l, cp, b, &bl) == 0)
                found = w->g1;
            else if (write_one(cs, &cs->set[w->g0], in + i, l, cp, b, &bl) == 0)
                found = w->g0;
            for (size_t s = 1; found < 0 && s < cs->nset; s++)
                if (write_one(cs, &cs->set[s], in + i, l, cp, b, &bl) == 0) found = (int)s;
            if (found < 0) return HDX_E_INVAL;
            rc = designate(cs, w, found);
            if (rc == HDX_OK) rc = put(w->out, w->lim, &w->o, b, bl);
        }
        i += l;
    }
    return rc == HDX_OK ? reset(cs, w) : rc;
}

/* ---------- conversions ---------- */

static int finish(int rc, char *out, size_t o, size_t *out_len)
{
    if (rc != HDX_OK) o = 0;
    out[o] = '\0';
    if (out_len != NULL) *out_len = o;
    return rc;
}

int hdx_charset_to_utf8(struct hdx_charset *cs, const char *in, size_t len, char *out, size_t cap,
                        size_t *out_len)
{
    size_t o = 0, lim;
    int rc = HDX_OK;

    if (out_len != NULL) *out_len = 0;
    if (out == NULL || cap == 0) return HDX_E_TOOBIG;
    if (cs == NULL || (in == NULL && len > 0)) return finish(HDX_E_INVAL, out, 0, out_len);
    lim = cap - 1; /* room for the NUL */
    if (len == 0) return finish(HDX_OK, out, 0, out_len);
    switch (cs->mode) {
    case M_ASCII:
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)in[i] > 0x7F) return finish(HDX_E_INVAL, out, 0, out_len);
        rc = put(out, lim, &o, in, len);
        break;
    case M_UTF8:
        rc = u8_valid(in, len) ? put(out, lim, &o, in, len) : HDX_E_INVAL;
        break;
    case M_ICONV:
        rc = run_iconv(cs->cv[0].to, in, len, out, lim, &o);
        break;
    case M_2022:
        rc = read_2022(cs, (const unsigned char *)in, len, out, lim, &o);
        break;
    }
    return finish(rc, out, o, out_len);
}

int hdx_charset_from_utf8(struct hdx_charset *cs, const char *in, size_t len, char *out, size_t cap,
                          size_t *out_len)
{
    size_t o = 0, lim;
    int rc = HDX_OK;

    if (out_len != NULL) *out_len = 0;
    if (out == NULL || cap == 0) return HDX_E_TOOBIG;
    if (cs == NULL || (in == NULL && len > 0) || (len > 0 && !u8_valid(in, len)))
        return finish(HDX_E_INVAL, out, 0, out_len);
    lim = cap - 1;
    if (len == 0) return finish(HDX_OK, out, 0, out_len);
    switch (cs->mode) {
    case M_ASCII:
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)in[i] > 0x7F) return finish(HDX_E_INVAL, out, 0, out_len);
        rc = put(out, lim, &o, in, len);
        break;
    case M_UTF8:
        rc = put(out, lim, &o, in, len);
        break;
    case M_ICONV:
        rc = run_iconv(cs->cv[0].from, in, len, out, lim, &o);
        break;
    case M_2022: {
        struct wstate w = {cs->init_g0, cs->init_g1, out, lim, 0};
        rc = write_2022(cs, in, len, &w);
        o = w.o;
        break;
    }
    }
    return finish(rc, out, o, out_len);
}
