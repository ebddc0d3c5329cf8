/* match: C-FIND attribute matching (see match.h for the contract).
 *
 * DESIGN: compile does all the judging. A key is parsed once into a form eval can use
 * without re-checking it (a validated UTF-8 pattern, a UID list, or two normalised bounds),
 * so a malformed key is refused before any instance is looked at and the SCP answers the
 * query with an error instead of an empty or a full match set. Stored values are data, not
 * queries: one that does not parse (a bad date in an old file) simply does not match a range.
 *
 * Wildcards use the greedy two-pointer algorithm (remember the last '*', retry one character
 * further on a mismatch): O(len(key) x len(value)) at worst, no recursion, no backtracking
 * explosion on keys like "*a*a*a...b". Characters are UTF-8 sequences: '?' takes one whole
 * sequence; a byte that does not start a valid sequence in a stored value counts as one
 * character, so nothing reads past the value.
 *
 * Choices where PS3.4 C.2.2.2 leaves room:
 *  - Only trailing spaces are removed (from keys and values; NUL pads too for UI). Leading
 *    spaces are kept: they are significant for ST/LT/UT and hdx does not know the exact VR.
 *  - A stored multi-valued text (backslash inside) is compared as one string; a caller that
 *    wants "any value matches" splits it and calls eval per value.
 *  - PN: trailing '^' of each component group are dropped on both sides ("Doe^John^^" is
 *    "Doe^John", PS3.5 6.2 lets trailing empty components go). A key without '=' is matched
 *    against each group of the value and matches if any does (so "山田*" finds the
 *    ideographic group); a key with '=' is matched group by group, an empty key group
 *    matching anything. More than three groups in a key is refused.
 *  - UI: each UID is 1 to 64 digits and dots without empty components; leading zeros in a
 *    component are accepted (real archives hold such UIDs, and refusing a query for them
 *    would hide studies). Range and wildcard keys on UI are refused by name.
 *  - DA: keys are YYYYMMDD with a real calendar date; stored values are YYYYMMDD or the
 *    retired ACR-NEMA form YYYY.MM.DD (PS3.5 6.2, some old files carry it). A key in the
 *    ACR-NEMA form is refused: a query is written now, against the current standard.
 *  - TM: a bound is padded to its extreme ("10" as lower bound is 10:00:00.000000, "1200" as
 *    upper bound is 12:00:59.999999), so a key "1000-1200" matches stored "1130" and
 *    "120030", and a single value "1130" matches anything within that minute. A stored value
 *    is its lower point (stored "11" is 11:00:00). SS may be 60 (leap second). The retired
 *    form HH:MM:SS(.F) is accepted in stored values.
 *  - DT: the same padding over YYYYMMDDHHMMSS.FFFFFF (an upper bound's missing day is the
 *    last day of its month). A time zone suffix &ZZXX is checked for form (-1200..+1400) and
 *    then ignored: values are compared as written, clock time against clock time, since a
 *    stored value without a suffix has no known offset to convert from. Because '-' is both
 *    the range separator and a negative offset sign, every reading of the key is tried; a
 *    key with more than one valid reading is refused as ambiguous.
 *  - A range whose lower bound is after its upper bound is refused (it could only match
 *    nothing; a TM range across midnight is not a PS3.4 form). "-" alone is refused. */
#include "dicom/match.h"

#include <string.h>

#include "core/err.h"

/* ---------- UTF-8 ---------- */

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left), or 0 when it is not one
 * (overlong forms, surrogates and code points over U+10FFFF are not). */
static size_t u8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned cp;

    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        len = 2;
        cp = c & 0x1F;
    } else if (c < 0xF0) {
        len = 3;
        cp = c & 0x0F;
    } else if (c < 0xF5) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* One character of a stored value: a valid sequence, or else one byte. */
static size_t u8_char(const unsigned char *p, size_t n)
{
    size_t l = u8_seq(p, n);
    return l != 0 ? l : 1;
}

static int u8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < n;) {
        size_t l = u8_seq(p + i, n - i);
        if (l == 0) return 0;
        i += l;
    }
    return 1;
}

/* ---------- helpers ---------- */

static size_t trim_len(const char *s, size_t n, int nul_too)
{
    while (n > 0 && (s[n - 1] == ' ' || (nul_too && s[n - 1] == '\0')))
        n--;
    return n;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i])) return 0;
    return 1;
}

static unsigned num(const char *s, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    return v;
}

static unsigned char fold(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

static int refuse(const char **why, const char *reason)
{
    if (why != NULL) *why = reason;
    return HDX_E_INVAL;
}

/* ---------- wildcard ---------- */

/* Does the character of key at k (kl bytes) equal the one of the value at v (vl bytes)? */
static int char_eq(const unsigned char *k, size_t kl, const unsigned char *v, size_t vl, int ci)
{
    if (kl != vl) return 0;
    if (kl == 1 && ci) return fold(k[0]) == fold(v[0]);
    return memcmp(k, v, kl) == 0;
}

/* Greedy two-pointer glob: '*' any run of characters (none included), '?' one character.
 * star_k/star_v remember the last '*' and where in the value it was tried; a mismatch moves
 * that '*' one character on, so each (key position, value position) pair is visited at most
 * once per '*': bounded by len(key) x len(value), never exponential. */
static int glob(const char *key, size_t kn, const char *val, size_t vn, int ci)
{
    const unsigned char *k = (const unsigned char *)key, *v = (const unsigned char *)val;
    size_t ki = 0, vi = 0, star_k = 0, star_v = 0;
    int have_star = 0;

    while (vi < vn) {
        if (ki < kn && k[ki] == '*') {
            have_star = 1;
            star_k = ++ki;
            star_v = vi;
            continue;
        }
        if (ki < kn) {
            size_t kl = u8_char(k + ki, kn - ki), vl = u8_char(v + vi, vn - vi);
            if (k[ki] == '?' || char_eq(k + ki, kl, v + vi, vl, ci)) {
                ki += kl;
                vi += vl;
                continue;
            }
        }
        if (!have_star) return 0;
        star_v += u8_char(v + star_v, vn - star_v);
        vi = star_v;
        ki = star_k;
    }
    while (ki < kn && k[ki] == '*')
        ki++;
    return ki == kn;
}

static int text_match(const char *key, size_t kn, int wildcard, const char *val, size_t vn, int ci)
{
    if (wildcard) return glob(key, kn, val, vn, ci);
    if (kn != vn) return 0;
    if (!ci) return memcmp(key, val, kn) == 0;
    for (size_t i = 0; i < kn; i++)
        if (fold((unsigned char)key[i]) != fold((unsigned char)val[i])) return 0;
    return 1;
}

/* ---------- PN ---------- */

#define PN_GROUPS 3

struct pn_groups {
    const char *p[PN_GROUPS];
    size_t n[PN_GROUPS];
    size_t count;
};

/* Splits at '=' into at most PN_GROUPS groups (the rest, '=' included, stays in the last,
 * so a stored value with too many groups still matches as far as it can), each without
 * its trailing '^' and spaces. */
static void pn_split(const char *s, size_t n, struct pn_groups *g)
{
    size_t start = 0;

    g->count = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && (s[i] != '=' || g->count == PN_GROUPS - 1)) continue;
        size_t len = i - start;
        while (len > 0 && (s[start + len - 1] == '^' || s[start + len - 1] == ' '))
            len--;
        g->p[g->count] = s + start;
        g->n[g->count] = len;
        g->count++;
        start = i + 1;
    }
}

static int has_wild(const char *s, size_t n)
{
    return memchr(s, '*', n) != NULL || memchr(s, '?', n) != NULL;
}

static int pn_group_match(const char *k, size_t kn, const char *v, size_t vn)
{
    if (kn == 0) return 1; /* an empty key group is universal for that group */
    return text_match(k, kn, has_wild(k, kn), v, vn, 1);
}

static int pn_match(const struct hdx_dmatch *m, const char *val, size_t vn)
{
    struct pn_groups kg, vg;
    size_t kn = strlen(m->key);

    pn_split(m->key, kn, &kg);
    pn_split(val, vn, &vg);
    if (kg.count == 1) {
        for (size_t i = 0; i < vg.count; i++)
            if (pn_group_match(kg.p[0], kg.n[0], vg.p[i], vg.n[i])) return 1;
        return 0;
    }
    for (size_t i = 0; i < kg.count; i++) {
        const char *vp = i < vg.count ? vg.p[i] : "";
        size_t vl = i < vg.count ? vg.n[i] : 0;
        if (!pn_group_match(kg.p[i], kg.n[i], vp, vl)) return 0;
    }
    return 1;
}

/* ---------- UI ---------- */

static int uid_check(const char *s, size_t n, const char **why)
{
    if (n == 0) return refuse(why, "empty UID in list");
    if (n > 64) return refuse(why, "UID over 64 bytes");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (i == 0 || i == n - 1 || s[i - 1] == '.')
                return refuse(why, "UID has an empty component");
        } else if (!is_digit(s[i])) {
            return refuse(why, "UID holds a byte other than a digit or '.'");
        }
    }
    return HDX_OK;
}

static int compile_ui(const char *key, size_t n, struct hdx_dmatch *m, const char **why)
{
    size_t start = 0;

    if (memchr(key, '*', n) != NULL || memchr(key, '?', n) != NULL)
        return refuse(why, "wildcard matching is not allowed on UI");
    if (memchr(key, '-', n) != NULL) return refuse(why, "range matching is not allowed on UI");
    for (size_t i = 0; i <= n; i++) {
        if (i < n && key[i] != '\\') continue;
        size_t len = i - start;
        /* A list item may carry its own pad (PS3.5 6.4: each value of a UI list is padded
         * to even length only at the end, but SCUs differ). */
        len = trim_len(key + start, len, 1);
        int rc = uid_check(key + start, len, why);
        if (rc != HDX_OK) return rc;
        if (m->nuids == HDX_DMATCH_UIDS_MAX) return refuse(why, "more than 128 UIDs in list");
        memcpy(m->uids[m->nuids], key + start, len);
        m->uids[m->nuids][len] = '\0';
        m->nuids++;
        start = i + 1;
    }
    return HDX_OK;
}

/* ---------- DA, TM, DT ---------- */

enum bound { LOWER, UPPER };

static int leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned mdays(unsigned y, unsigned mo)
{
    static const unsigned d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return mo == 2 && leap(y) ? 29 : d[mo - 1];
}

static int date_ok(const char *d)
{
    unsigned y = num(d, 4), mo = num(d + 4, 2), dd = num(d + 6, 2);
    return mo >= 1 && mo <= 12 && dd >= 1 && dd <= mdays(y, mo);
}

/* A DA value (8 digits, a real date) into out[9]; legacy allows YYYY.MM.DD. */
static int parse_da(const char *s, size_t n, int legacy, char out[9])
{
    if (n == 8 && all_digits(s, 8)) {
        memcpy(out, s, 8);
    } else if (legacy && n == 10 && s[4] == '.' && s[7] == '.' && all_digits(s, 4) &&
               all_digits(s + 5, 2) && all_digits(s + 8, 2)) {
        memcpy(out, s, 4);
        memcpy(out + 4, s + 5, 2);
        memcpy(out + 6, s + 8, 2);
    } else {
        return -1;
    }
    out[8] = '\0';
    return date_ok(out) ? 0 : -1;
}

/* Pads a time prefix t (HH, HHMM, HHMMSS, HHMMSS.F{1,6}; already checked) to 13 chars
 * HHMMSS.FFFFFF at the extreme of its precision. */
static void pad_time(const char *t, size_t n, enum bound b, char out[14])
{
    const char *lo = "000000.000000", *hi = "235959.999999";
    const char *fill = b == LOWER ? lo : hi;

    memcpy(out, fill, 13);
    memcpy(out, t, n);
    out[13] = '\0';
}

/* Checks a time prefix; colons (retired HH:MM:SS) are removed into buf when legacy. */
static int check_time(const char *s, size_t n, int legacy, char buf[16], size_t *len)
{
    size_t o = 0;

    if (n > 15) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':' && legacy && (i == 2 || i == 5)) continue;
        buf[o++] = s[i];
    }
    buf[o] = '\0';
    if (o != 2 && o != 4 && o != 6 && !(o >= 8 && o <= 13 && buf[6] == '.')) return -1;
    if (!all_digits(buf, o < 6 ? o : 6) || (o > 7 && !all_digits(buf + 7, o - 7))) return -1;
    if (num(buf, 2) > 23 || (o >= 4 && num(buf + 2, 2) > 59) || (o >= 6 && num(buf + 4, 2) > 60))
        return -1;
    *len = o;
    return 0;
}

static int parse_tm(const char *s, size_t n, enum bound b, int legacy, char out[14])
{
    char buf[16];
    size_t len;

    if (check_time(s, n, legacy, buf, &len) != 0) return -1;
    pad_time(buf, len, b, out);
    return 0;
}

/* A DT value: YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]] then an optional +HHMM/-HHMM that is
 * checked and dropped. Out: 21 chars YYYYMMDDHHMMSS.FFFFFF padded to the bound's extreme. */
static int parse_dt(const char *s, size_t n, enum bound b, char out[22])
{
    size_t dn = n;
    char d[9];

    if (n >= 5 && (s[n - 5] == '+' || s[n - 5] == '-')) {
        const char *z = s + n - 5;
        if (!all_digits(z + 1, 4)) return -1;
        unsigned hh = num(z + 1, 2), mm = num(z + 3, 2);
        if (mm > 59 || (z[0] == '-' && hh * 100 + mm > 1200) ||
            (z[0] == '+' && hh * 100 + mm > 1400))
            return -1;
        dn = n - 5;
    }
    if (dn != 4 && dn != 6 && dn != 8 && !(dn > 8 && dn <= 8 + 13)) return -1;
    if (!all_digits(s, dn < 8 ? dn : 8)) return -1;
    unsigned y = num(s, 4);
    unsigned mo = dn >= 6 ? num(s + 4, 2) : (b == LOWER ? 1 : 12);
    if (mo < 1 || mo > 12) return -1;
    unsigned dd = dn >= 8 ? num(s + 6, 2) : (b == LOWER ? 1 : mdays(y, mo));
    if (dd < 1 || dd > mdays(y, mo)) return -1;
    d[0] = s[0], d[1] = s[1], d[2] = s[2], d[3] = s[3];
    d[4] = (char)('0' + mo / 10), d[5] = (char)('0' + mo % 10);
    d[6] = (char)('0' + dd / 10), d[7] = (char)('0' + dd % 10), d[8] = '\0';
    memcpy(out, d, 8);
    if (dn > 8) {
        if (parse_tm(s + 8, dn - 8, b, 0, out + 8) != 0) return -1;
    } else {
        pad_time("", 0, b, out + 8);
    }
    out[21] = '\0';
    return 0;
}

/* One bound of a key in vr, into out (DA 8, TM 13, DT 21 chars). */
static int parse_bound(enum hdx_dmatch_vr vr, const char *s, size_t n, enum bound b, char *out)
{
    switch (vr) {
    case HDX_DMATCH_DA:
        return parse_da(s, n, 0, out);
    case HDX_DMATCH_TM:
        return parse_tm(s, n, b, 0, out);
    default:
        return parse_dt(s, n, b, out);
    }
}

/* Reads key as a range split at sep (or, sep == n, as a single value) into lo/hi. */
static int try_range(enum hdx_dmatch_vr vr, const char *key, size_t n, size_t sep, char lo[32],
                     char hi[32])
{
    lo[0] = hi[0] = '\0';
    if (sep == n) {
        if (parse_bound(vr, key, n, LOWER, lo) != 0) return -1;
        if (parse_bound(vr, key, n, UPPER, hi) != 0) return -1;
        return 0;
    }
    if (sep == 0 && n == 1) return -1; /* "-" */
    if (sep > 0 && parse_bound(vr, key, sep, LOWER, lo) != 0) return -1;
    if (sep + 1 < n && parse_bound(vr, key + sep + 1, n - sep - 1, UPPER, hi) != 0) return -1;
    if (lo[0] != '\0' && hi[0] != '\0' && strcmp(lo, hi) > 0) return -2;
    return 0;
}

static int compile_range(const char *key, size_t n, struct hdx_dmatch *m, const char **why)
{
    char lo[32], hi[32];
    int found = 0, backwards = 0;

    if (memchr(key, '*', n) != NULL || memchr(key, '?', n) != NULL)
        return refuse(why, "wildcard matching is not allowed on DA, TM, DT");
    if (n > 2 * 26 + 1) return refuse(why, "date or time key too long");
    if (n == 1 && key[0] == '-') return refuse(why, "range with neither bound");
    if (m->vr != HDX_DMATCH_DT) {
        const char *dash = memchr(key, '-', n);
        if (dash != NULL && memchr(dash + 1, '-', n - (size_t)(dash - key) - 1) != NULL)
            return refuse(why, "more than one '-' in a range");
    }
    /* Every reading: the whole key as one value, or a range split at each '-'. */
    for (size_t sep = 0; sep <= n; sep++) {
        if (sep < n && key[sep] != '-') continue;
        int rc = try_range(m->vr, key, n, sep, lo, hi);
        if (rc == -2) backwards = 1;
        if (rc != 0) continue;
        if (found++ > 0) return refuse(why, "ambiguous DT range (time zone or separator)");
        memcpy(m->lo, lo, sizeof m->lo);
        memcpy(m->hi, hi, sizeof m->hi);
    }
    if (found == 1) return HDX_OK;
    memset(m->lo, 0, sizeof m->lo);
    memset(m->hi, 0, sizeof m->hi);
    if (backwards) return refuse(why, "range lower bound is after its upper bound");
    switch (m->vr) {
    case HDX_DMATCH_DA:
        return refuse(why, "DA key is not YYYYMMDD, a real date, or a range of them");
    case HDX_DMATCH_TM:
        return refuse(why, "TM key is not HH[MM[SS[.F]]] or a range of them");
    default:
        return refuse(why, "DT key is not YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX] or a range");
    }
}

static int range_match(const struct hdx_dmatch *m, const char *val, size_t vn)
{
    char v[32];
    int rc;

    switch (m->vr) {
    case HDX_DMATCH_DA:
        rc = parse_da(val, vn, 1, v);
        break;
    case HDX_DMATCH_TM:
        rc = parse_tm(val, vn, LOWER, 1, v);
        break;
    default:
        rc = parse_dt(val, vn, LOWER, v);
        break;
    }
    if (rc != 0) return 0;
    if (m->lo[0] != '\0' && strcmp(v, m->lo) < 0) return 0;
    if (m->hi[0] != '\0' && strcmp(v, m->hi) > 0) return 0;
    return 1;
}

/* ---------- compile, eval ---------- */

static int compile_text(enum hdx_dmatch_vr vr, const char *key, size_t len, struct hdx_dmatch *m,
                        const char **why)
{
    if (vr == HDX_DMATCH_PN) {
        size_t groups = 1;
        for (size_t i = 0; i < len; i++)
            groups += key[i] == '=';
        if (groups > PN_GROUPS) return refuse(why, "PN key has more than three component groups");
    }
    memcpy(m->key, key, len);
    m->key[len] = '\0';
    m->wildcard = has_wild(key, len);
    return HDX_OK;
}

int hdx_dmatch_compile(enum hdx_dmatch_vr vr, const char *key, size_t len, struct hdx_dmatch *m,
                       const char **why)
{
    int rc = HDX_OK;

    if (why != NULL) *why = NULL;
    if (m == NULL) return refuse(why, "no match struct");
    memset(m, 0, sizeof *m);
    if (vr < HDX_DMATCH_TEXT || vr > HDX_DMATCH_DT) return refuse(why, "unknown match VR");
    if (key == NULL && len > 0) return refuse(why, "no key");
    m->vr = vr;
    len = key != NULL ? trim_len(key, len, vr == HDX_DMATCH_UI) : 0;
    if (len == 0) {
        m->universal = 1;
        return HDX_OK;
    }
    if (memchr(key, '\0', len) != NULL) {
        rc = refuse(why, "key holds a NUL byte");
    } else if (len > HDX_DMATCH_KEY_MAX && (vr == HDX_DMATCH_TEXT || vr == HDX_DMATCH_PN)) {
        rc = refuse(why, "key over 1024 bytes");
    } else if (len > HDX_DMATCH_UIDS_MAX * 65) {
        rc = refuse(why, "more than 128 UIDs in list");
    } else if (!u8_valid(key, len)) {
        rc = refuse(why, "key is not valid UTF-8");
    } else {
        switch (vr) {
        case HDX_DMATCH_UI:
            rc = compile_ui(key, len, m, why);
            break;
        case HDX_DMATCH_DA:
        case HDX_DMATCH_TM:
        case HDX_DMATCH_DT:
            rc = compile_range(key, len, m, why);
            break;
        case HDX_DMATCH_PN:
        case HDX_DMATCH_TEXT:
            rc = compile_text(vr, key, len, m, why);
            break;
        }
    }
    if (rc != HDX_OK) {
        const char *w = why != NULL ? *why : NULL;
        memset(m, 0, sizeof *m);
        if (why != NULL) *why = w;
    }
    return rc;
}

int hdx_dmatch_eval(const struct hdx_dmatch *m, const char *value, size_t len)
{
    if (m == NULL || m->vr < HDX_DMATCH_TEXT || m->vr > HDX_DMATCH_DT) return 0;
    if (m->universal) return 1;
    if (value == NULL) len = 0;
    len = trim_len(value, len, m->vr == HDX_DMATCH_UI);
    switch (m->vr) {
    case HDX_DMATCH_TEXT:
        return text_match(m->key, strlen(m->key), m->wildcard, len > 0 ? value : "", len, 0);
    case HDX_DMATCH_PN:
        return pn_match(m, len > 0 ? value : "", len);
    case HDX_DMATCH_UI:
        for (size_t i = 0; i < m->nuids; i++) {
            size_t ul = strlen(m->uids[i]);
            if (ul == len && memcmp(m->uids[i], value, len) == 0) return 1;
        }
        return 0;
    default:
        return len > 0 && range_match(m, value, len);
    }
}
