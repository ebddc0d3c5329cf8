/* transform: declarative rewrites of HL7 v2 messages on outbound routes (see transform.h).
 *
 * DESIGN: compile turns each line into a step (verb, addresses, value or table); apply
 *   1. parses the input once with hl7_parse (default limits) for its delimiters and control id,
 *   2. copies its segments, CR-terminated, into one working buffer that becomes the output,
 *   3. runs the steps in order, each editing that buffer in place (splice = memmove of the
 *      tail), locating positions by scanning separators, so a step sees what earlier steps did,
 *   4. re-parses the result and checks MSH-10 is unchanged.
 * Values are escaped into stack buffers of fixed size; nothing is allocated per field.
 *
 * Invariants:
 *  1. The working buffer holds whole segments, each ending in CR; segment ids are never edited
 *     (every address has field >= 1) and MSH stays first (strip refuses MSH, nothing inserts
 *     segments).
 *  2. w.len <= w.max (2 x input + 64 KiB) at all times: every growth goes through wb_reserve.
 *  3. Error texts are built from rule text, table names and constants, never message bytes. */
#include "route/transform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"
#include "proto/jsonw.h"

#define BOUND_SLACK (64u << 10)
/* Keeps 2 x input + slack inside hl7_parse's 32-bit offsets. */
#define INPUT_MAX ((UINT32_MAX - BOUND_SLACK) / 2)
#define FIELD_MAX 500
#define COMP_MAX 100
#define OCC_MAX 10000
#define NAME_MAX_LEN 128
/* hl7_escape writes at most 5 bytes per input byte (\Xhh\ for a control byte). */
#define ESC_CAP (5 * HDX_TRANSFORM_VALUE_MAX + 1)
#define COPY_CAP (3 * HDX_TRANSFORM_COPY_MAX)

enum op { OP_SET, OP_COPY, OP_CLEAR, OP_MAP, OP_STRIP, OP_VERSION };
enum dflt { D_KEEP, D_CLEAR, D_REJECT };
enum ver { V_23, V_251 };

struct addr {
    char seg[4];
    int occ; /* 0: the verb's default */
    int field, comp, sub;
    char text[32]; /* as written, for error texts */
};

struct row {
    const char *key, *val;
    uint32_t klen, vlen, line;
};

struct table {
    char *buf; /* the file, its separators turned into NULs; rows point into it */
    struct row *rows;
    size_t n;
    char name[NAME_MAX_LEN + 1];
};

struct step {
    enum op op;
    struct addr dst, src; /* src: copy only */
    char *value;          /* set: NUL-terminated text */
    struct table *tab;
    enum dflt dflt;
    char pat[4]; /* strip: id or prefix */
    size_t patlen;
    bool prefix;
    enum ver ver;
};

struct hdx_transform {
    size_t n;
    struct step steps[];
};

/* ---- compile: errors and words -------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int why(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return HDX_E_INVAL;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool is_id_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static const char *skip_blanks(const char *p)
{
    while (is_blank(*p))
        p++;
    return p;
}

/* The next blank-separated word at *p: its start and length, *p moved past it. */
static size_t next_word(const char **p, const char **w)
{
    const char *s = skip_blanks(*p);
    const char *e = s;

    while (*e != '\0' && !is_blank(*e))
        e++;
    *w = s;
    *p = e;
    return (size_t)(e - s);
}

static bool word_is(const char *w, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* True when s[0, i) ends in '=' and blanks: a '"' at i opens a quoted set value. */
static bool opens_value(const char *s, size_t i)
{
    while (i > 0 && is_blank(s[i - 1]))
        i--;
    return i > 0 && s[i - 1] == '=';
}

/* Cuts a comment: '#' at the start or after a blank, outside a quoted set value (a '"' right
 * after the '=' opens one; a '"' anywhere else is an ordinary character). */
static void cut_comment(char *s)
{
    bool q = false;

    for (char *p = s; *p != '\0'; p++) {
        if (q && *p == '\\' && p[1] != '\0') {
            p++;
            continue;
        }
        if (*p == '"' && (q || opens_value(s, (size_t)(p - s)))) q = !q;
        if (!q && *p == '#' && (p == s || is_blank(p[-1]))) {
            *p = '\0';
            return;
        }
    }
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = '\0';
}

/* A decimal in [lo, hi] of at most 5 digits, no leading zero. */
static int parse_num(const char **p, int lo, int hi, int *out)
{
    const char *s = *p;
    int v = 0, k = 0;

    if (*s == '0') return -1;
    while (s[k] >= '0' && s[k] <= '9' && k < 6)
        v = v * 10 + (s[k++] - '0');
    if (k == 0 || k > 5 || v < lo || v > hi) return -1;
    *p = s + k;
    *out = v;
    return 0;
}

/* SEG[ "[" N "]" ]-F[.C[.S]] */
static int parse_addr(const char *w, size_t n, struct addr *a, char *err, size_t cap)
{
    char tmp[32];

    memset(a, 0, sizeof *a);
    if (n == 0 || n >= sizeof tmp) return why(err, cap, "bad field address");
    memcpy(tmp, w, n);
    tmp[n] = '\0';
    memcpy(a->text, tmp, n + 1);
    const char *p = tmp;
    if (!is_id_char(p[0]) || !is_id_char(p[1]) || !is_id_char(p[2]))
        return why(err, cap,
                   "bad field address %s: segment id must be 3 upper-case letters or "
                   "digits",
                   a->text);
    memcpy(a->seg, p, 3);
    p += 3;
    if (*p == '[') {
        p++;
        if (parse_num(&p, 1, OCC_MAX, &a->occ) != 0 || *p != ']')
            return why(err, cap, "bad field address %s: occurrence must be 1..%d", a->text,
                       OCC_MAX);
        p++;
    }
    if (*p != '-' || (p++, parse_num(&p, 1, FIELD_MAX, &a->field)) != 0)
        return why(err, cap, "bad field address %s: want SEG[N]-F[.C[.S]], F 1..%d", a->text,
                   FIELD_MAX);
    if (*p == '.') {
        p++;
        if (parse_num(&p, 1, COMP_MAX, &a->comp) != 0)
            return why(err, cap, "bad field address %s: component must be 1..%d", a->text,
                       COMP_MAX);
    }
    if (*p == '.') {
        p++;
        if (parse_num(&p, 1, COMP_MAX, &a->sub) != 0)
            return why(err, cap, "bad field address %s: sub-component must be 1..%d", a->text,
                       COMP_MAX);
    }
    if (*p != '\0') return why(err, cap, "bad field address %s", a->text);
    if (strcmp(a->seg, "MSH") == 0) {
        if (a->occ > 1) return why(err, cap, "%s: a message has one MSH", a->text);
        if (a->field <= 2)
            return why(err, cap, "%s: MSH-1 and MSH-2 hold the delimiters and cannot be changed",
                       a->text);
        if (a->field == 10)
            return why(err, cap,
                       "%s: MSH-10 (the control id, which ACKs are matched on) "
                       "cannot be changed",
                       a->text);
    }
    return HDX_OK;
}

/* Printable UTF-8 of at most HDX_TRANSFORM_VALUE_MAX bytes. */
static bool value_ok(const char *v, size_t n)
{
    if (n > HDX_TRANSFORM_VALUE_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)v[i] < 0x20 || (uint8_t)v[i] == 0x7F) return false;
    return hdx_utf8_valid((const uint8_t *)v, n) == 1;
}

/* ---- compile: tables ------------------------------------------------------------------ */

static int span_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an > bn) - (an < bn);
}

static int row_cmp(const void *x, const void *y)
{
    const struct row *a = x, *b = y;
    int c = span_cmp(a->key, a->klen, b->key, b->klen);
    return c != 0 ? c : (a->line > b->line) - (a->line < b->line);
}

static void table_free(struct table *t)
{
    if (t == NULL) return;
    free(t->rows);
    free(t->buf);
    free(t);
}

static bool table_name_ok(const char *w, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN || w[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char ch = w[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int read_table_file(const char *path, struct table *t, size_t *len, char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0) return why(err, cap, "map: table %s: cannot open", t->name);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return why(err, cap, "map: table %s: not a regular file", t->name);
    }
    if ((uint64_t)st.st_size > HDX_TRANSFORM_TABLE_BYTES) {
        close(fd);
        return why(err, cap, "map: table %s: larger than %u bytes", t->name,
                   HDX_TRANSFORM_TABLE_BYTES);
    }
    t->buf = malloc((size_t)st.st_size + 1);
    if (t->buf == NULL) {
        close(fd);
        return HDX_E_NOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, t->buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) return why(err, cap, "map: table %s: short read", t->name);
    t->buf[got] = '\0';
    *len = got;
    return HDX_OK;
}

/* One line [s, e) of a table, NUL-terminated in place; 0 = skipped, 1 = a row, else an error. */
static int table_line(struct table *t, char *s, char *e, uint32_t line, struct row *r, char *err,
                      size_t cap)
{
    if (e > s && e[-1] == '\r') e--;
    *e = '\0';
    if (e == s || s[0] == '#') return 0;
    if (memchr(s, '\0', (size_t)(e - s)) != NULL)
        return why(err, cap, "map: %s:%u: NUL byte", t->name, line);
    char *tab = memchr(s, '\t', (size_t)(e - s));
    if (tab == NULL || memchr(tab + 1, '\t', (size_t)(e - tab - 1)) != NULL)
        return why(err, cap, "map: %s:%u: want from<TAB>to", t->name, line);
    *tab = '\0';
    size_t kl = (size_t)(tab - s), vl = (size_t)(e - tab - 1);
    if (kl == 0) return why(err, cap, "map: %s:%u: empty key", t->name, line);
    if (!value_ok(s, kl) || !value_ok(tab + 1, vl))
        return why(err, cap,
                   "map: %s:%u: key or value over %d bytes, with a control byte or not UTF-8",
                   t->name, line, HDX_TRANSFORM_VALUE_MAX);
    *r = (struct row){s, tab + 1, (uint32_t)kl, (uint32_t)vl, line};
    return 1;
}

static int table_parse(struct table *t, size_t len, char *err, size_t cap)
{
    size_t rows = 0;

    /* Pass 1 counts rows so the limit is checked before the row array is allocated. */
    for (char *s = t->buf, *end = t->buf + len; s < end;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *e = nl != NULL ? nl : end;
        size_t n = (size_t)(e - s) - (e > s && e[-1] == '\r');
        if (n > 0 && s[0] != '#') rows++;
        s = e + 1;
    }
    if (rows > HDX_TRANSFORM_TABLE_ROWS)
        return why(err, cap, "map: table %s: more than %d rows", t->name, HDX_TRANSFORM_TABLE_ROWS);
    t->rows = calloc(rows > 0 ? rows : 1, sizeof *t->rows);
    if (t->rows == NULL) return HDX_E_NOMEM;
    uint32_t line = 0;
    for (char *s = t->buf, *end = t->buf + len; s < end;) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *e = nl != NULL ? nl : end;
        int rc = table_line(t, s, e, ++line, &t->rows[t->n], err, cap);
        if (rc < 0) return rc;
        t->n += (size_t)rc;
        s = e + 1;
    }
    qsort(t->rows, t->n, sizeof *t->rows, row_cmp);
    for (size_t i = 1; i < t->n; i++) {
        const struct row *a = &t->rows[i - 1], *b = &t->rows[i];
        if (span_cmp(a->key, a->klen, b->key, b->klen) == 0)
            return why(err, cap, "map: %s:%u: duplicate key (first at line %u)", t->name, b->line,
                       a->line);
    }
    return HDX_OK;
}

static int table_load(const char *dir, const char *w, size_t n, struct table **out, char *err,
                      size_t cap)
{
    char path[4096];
    size_t len = 0;

    *out = NULL;
    if (!table_name_ok(w, n))
        return why(err, cap, "map: table must be a plain file name (letters, digits, . _ -)");
    struct table *t = calloc(1, sizeof *t);
    if (t == NULL) return HDX_E_NOMEM;
    memcpy(t->name, w, n);
    t->name[n] = '\0';
    int rc = HDX_E_INVAL;
    if (dir == NULL || hdx_path(path, sizeof path, dir, t->name) != 0)
        rc = why(err, cap, "map: table %s: no usable base directory", t->name);
    else if ((rc = read_table_file(path, t, &len, err, cap)) == HDX_OK)
        rc = table_parse(t, len, err, cap);
    if (rc != HDX_OK) {
        table_free(t);
        return rc;
    }
    *out = t;
    return HDX_OK;
}

static const struct row *table_find(const struct table *t, const char *k, size_t kn)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = span_cmp(k, kn, t->rows[mid].key, t->rows[mid].klen);
        if (c == 0) return &t->rows[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- compile: verbs ------------------------------------------------------------------- */

/* set ADDR = VALUE; p points after the verb. */
static int compile_set(struct step *st, const char *p, char *err, size_t cap)
{
    const char *a = skip_blanks(p);
    const char *e = a;

    while (*e != '\0' && !is_blank(*e) && *e != '=')
        e++;
    int rc = parse_addr(a, (size_t)(e - a), &st->dst, err, cap);
    if (rc != HDX_OK) return rc;
    p = skip_blanks(e);
    if (*p != '=') return why(err, cap, "set: want set ADDR = VALUE");
    p = skip_blanks(p + 1);
    size_t left = strlen(p);
    st->value = malloc(left + 1);
    if (st->value == NULL) return HDX_E_NOMEM;
    size_t n = 0;
    if (*p == '"') {
        for (p++;; p++) {
            if (*p == '\0') return why(err, cap, "set: unterminated quoted value");
            if (*p == '"') break;
            if (*p == '\\') {
                p++;
                if (*p != '"' && *p != '\\')
                    return why(err, cap,
                               "set: only \\\" and \\\\ may be escaped in a quoted value");
            }
            st->value[n++] = *p;
        }
        if (*skip_blanks(p + 1) != '\0') return why(err, cap, "set: text after the quoted value");
    } else {
        memcpy(st->value, p, left);
        n = left;
    }
    st->value[n] = '\0';
    if (!value_ok(st->value, n))
        return why(err, cap, "set: value over %d bytes, with a control byte or not UTF-8",
                   HDX_TRANSFORM_VALUE_MAX);
    return HDX_OK;
}

static int compile_copy(struct step *st, const char *p, char *err, size_t cap)
{
    const char *w;
    size_t n = next_word(&p, &w);
    int rc = parse_addr(w, n, &st->src, err, cap);

    if (rc != HDX_OK) return rc;
    n = next_word(&p, &w);
    if (!word_is(w, n, "to")) return why(err, cap, "copy: want copy ADDR to ADDR");
    n = next_word(&p, &w);
    if ((rc = parse_addr(w, n, &st->dst, err, cap)) != HDX_OK) return rc;
    if (next_word(&p, &w) != 0) return why(err, cap, "copy: text after the destination");
    return HDX_OK;
}

static int compile_map(struct step *st, const char *p, const char *dir, char *err, size_t cap)
{
    const char *w, *tw;
    size_t n = next_word(&p, &w);
    int rc = parse_addr(w, n, &st->dst, err, cap);

    if (rc != HDX_OK) return rc;
    size_t tn = next_word(&p, &tw);
    if (tn == 0) return why(err, cap, "map: want map ADDR TABLE [default keep|clear|reject]");
    n = next_word(&p, &w);
    st->dflt = D_KEEP;
    if (n != 0) {
        if (!word_is(w, n, "default"))
            return why(err, cap, "map: want map ADDR TABLE [default keep|clear|reject]");
        n = next_word(&p, &w);
        if (word_is(w, n, "keep"))
            st->dflt = D_KEEP;
        else if (word_is(w, n, "clear"))
            st->dflt = D_CLEAR;
        else if (word_is(w, n, "reject"))
            st->dflt = D_REJECT;
        else
            return why(err, cap, "map: default must be keep, clear or reject");
        if (next_word(&p, &w) != 0) return why(err, cap, "map: text after the default");
    }
    return table_load(dir, tw, tn, &st->tab, err, cap);
}

static int compile_strip(struct step *st, const char *p, char *err, size_t cap)
{
    const char *w;
    size_t n = next_word(&p, &w);
    const char *rest;

    if (next_word(&p, &rest) != 0) return why(err, cap, "strip: one segment id or prefix");
    st->prefix = n >= 1 && w[n - 1] == '*';
    size_t k = st->prefix ? n - 1 : n;
    if (st->prefix && k == 0)
        return why(err, cap, "strip: * would remove MSH, which every message needs");
    if (st->prefix ? (k < 1 || k > 2) : k != 3)
        return why(err, cap, "strip: want a segment id (NTE) or a 1-2 character prefix (Z*)");
    for (size_t i = 0; i < k; i++)
        if (!is_id_char(w[i]))
            return why(err, cap, "strip: segment ids are upper-case letters and digits");
    memcpy(st->pat, w, k);
    st->patlen = k;
    if (memcmp("MSH", st->pat, k) == 0)
        return why(err, cap, "strip: would remove MSH, which every message needs");
    return HDX_OK;
}

static bool events_sorted(void);

static int compile_version(struct step *st, const char *p, char *err, size_t cap)
{
    if (!events_sorted()) return why(err, cap, "version: internal event table unsorted");
    const char *w, *rest;
    size_t n = next_word(&p, &w);

    if (next_word(&p, &rest) != 0) return why(err, cap, "version: one target version");
    if (word_is(w, n, "2.3"))
        st->ver = V_23;
    else if (word_is(w, n, "2.5.1"))
        st->ver = V_251;
    else
        return why(err, cap, "version: target must be 2.3 or 2.5.1");
    return HDX_OK;
}

static int compile_line(struct step *st, const char *line, const char *dir, char *err, size_t cap)
{
    char buf[HDX_TRANSFORM_LINE_MAX + 1];
    size_t len = line != NULL ? strnlen(line, sizeof buf) : 0;

    if (line == NULL) return why(err, cap, "no text");
    if (len > HDX_TRANSFORM_LINE_MAX)
        return why(err, cap, "longer than %d bytes", HDX_TRANSFORM_LINE_MAX);
    memcpy(buf, line, len + 1);
    cut_comment(buf);
    trim_right(buf);
    const char *p = buf, *w;
    size_t n = next_word(&p, &w);
    if (word_is(w, n, "set")) {
        st->op = OP_SET;
        return compile_set(st, p, err, cap);
    }
    if (word_is(w, n, "copy")) {
        st->op = OP_COPY;
        return compile_copy(st, p, err, cap);
    }
    if (word_is(w, n, "clear")) {
        st->op = OP_CLEAR;
        n = next_word(&p, &w);
        int rc = parse_addr(w, n, &st->dst, err, cap);
        if (rc == HDX_OK && next_word(&p, &w) != 0) rc = why(err, cap, "clear: one address");
        return rc;
    }
    if (word_is(w, n, "map")) {
        st->op = OP_MAP;
        return compile_map(st, p, dir, err, cap);
    }
    if (word_is(w, n, "strip")) {
        st->op = OP_STRIP;
        return compile_strip(st, p, err, cap);
    }
    if (word_is(w, n, "version")) {
        st->op = OP_VERSION;
        return compile_version(st, p, err, cap);
    }
    if (n == 0) return why(err, cap, "empty transform");
    return why(err, cap, "unknown verb (want set, copy, clear, map, strip or version)");
}

void hdx_transform_free(struct hdx_transform *t)
{
    if (t == NULL) return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->steps[i].value);
        table_free(t->steps[i].tab);
    }
    free(t);
}

int hdx_transform_compile(const char *const *lines, size_t n, const char *base_dir,
                          struct hdx_transform **out, char *err, size_t err_cap)
{
    char reason[512];
    char dummy[1];

    if (err == NULL || err_cap == 0) {
        err = dummy;
        err_cap = sizeof dummy;
    }
    err[0] = '\0';
    if (out == NULL) return HDX_E_INVAL;
    *out = NULL;
    if (n > 0 && lines == NULL) return why(err, err_cap, "transform: no lines");
    if (n > 4096) return why(err, err_cap, "transform: more than 4096 lines");
    struct hdx_transform *t = calloc(1, sizeof *t + n * sizeof t->steps[0]);
    if (t == NULL) return HDX_E_NOMEM;
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        reason[0] = '\0';
        int rc = compile_line(&t->steps[i], lines[i], base_dir, reason, sizeof reason);
        if (rc != HDX_OK) {
            if (rc == HDX_E_NOMEM) snprintf(reason, sizeof reason, "out of memory");
            snprintf(err, err_cap, "transform %zu: %s", i + 1, reason);
            hdx_transform_free(t);
            return rc;
        }
    }
    *out = t;
    return HDX_OK;
}

int hdx_transform_count(const struct hdx_transform *t)
{
    return t != NULL ? (int)t->n : 0;
}

/* ---- apply: the working buffer -------------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t len, cap, max;
    struct hl7_delims d;
};

struct actx {
    struct wbuf w;
    const char *val; /* what set/copy write at each destination */
    size_t vlen;
    char *err; /* reason, filled by the step that fails */
    size_t err_cap;
};

static int wb_reserve(struct wbuf *w, size_t extra)
{
    if (extra > w->max - w->len) return HDX_E_TOOBIG;
    size_t need = w->len + extra;
    if (need <= w->cap) return HDX_OK;
    size_t ncap = w->cap > w->max / 2 ? w->max : w->cap * 2;
    if (ncap < need) ncap = need;
    uint8_t *np = realloc(w->p, ncap);
    if (np == NULL) return HDX_E_NOMEM;
    w->p = np;
    w->cap = ncap;
    return HDX_OK;
}

/* Replaces [off, off + del) by n bytes from ins (never inside w), or by n copies of fill when
 * ins is NULL. */
static int wb_splice(struct wbuf *w, size_t off, size_t del, const void *ins, size_t n, char fill)
{
    if (n > del) {
        int rc = wb_reserve(w, n - del);
        if (rc != HDX_OK) return rc;
    }
    memmove(w->p + off + n, w->p + off + del, w->len - off - del);
    if (ins != NULL)
        memcpy(w->p + off, ins, n);
    else
        memset(w->p + off, (uint8_t)fill, n);
    w->len = w->len - del + n;
    return HDX_OK;
}

static size_t seg_end(const struct wbuf *w, size_t s)
{
    const uint8_t *q = memchr(w->p + s, '\r', w->len - s);
    return q != NULL ? (size_t)(q - w->p) : w->len;
}

static bool seg_is(const struct wbuf *w, size_t s, size_t e, const char *id)
{
    return e - s >= 3 && memcmp(w->p + s, id, 3) == 0;
}

/* Token idx (0-based) of [rs, re) split on sep: true and [*ts, *te), or false and *have =
 * the number of tokens there are. */
static bool token(const uint8_t *p, size_t rs, size_t re, char sep, int idx, size_t *ts, size_t *te,
                  int *have)
{
    size_t pos = rs;

    for (int k = 0; k < idx; k++) {
        const uint8_t *q = memchr(p + pos, (uint8_t)sep, re - pos);
        if (q == NULL) {
            *have = k + 1;
            return false;
        }
        pos = (size_t)(q - p) + 1;
    }
    const uint8_t *q = memchr(p + pos, (uint8_t)sep, re - pos);
    *ts = pos;
    *te = q != NULL ? (size_t)(q - p) : re;
    return true;
}

/* Finds a's position in the segment [s, *e) into [*ps, *pe). With create, missing fields,
 * components and sub-components are padded with separators (*e moves). Returns 1 found,
 * 0 absent (create false), or a negative hdx_err. */
static int locate(struct actx *c, size_t s, size_t *e, const struct addr *a, bool create,
                  size_t *ps, size_t *pe)
{
    const struct hl7_delims *d = &c->w.d;
    bool msh = seg_is(&c->w, s, *e, "MSH");
    char sep[4] = {d->field, d->rep, d->comp, d->sub};
    int idx[4] = {msh ? a->field - 1 : a->field, 0, a->comp - 1, a->sub - 1};
    int depth = a->comp == 0 ? 1 : a->sub == 0 ? 3 : 4;
    size_t rs = s, re = *e;

    for (int k = 0; k < depth; k++) {
        size_t ts, te;
        int have = 0;
        if (!token(c->w.p, rs, re, sep[k], idx[k], &ts, &te, &have)) {
            if (!create) return 0;
            size_t add = (size_t)(idx[k] - have + 1);
            int rc = wb_splice(&c->w, re, 0, NULL, add, sep[k]);
            if (rc != HDX_OK) return rc;
            *e += add;
            ts = te = re + add;
        }
        rs = ts;
        re = te;
    }
    *ps = rs;
    *pe = re;
    return 1;
}

static int replace_at(struct actx *c, size_t *e, size_t ps, size_t pe, const char *v, size_t n)
{
    int rc = wb_splice(&c->w, ps, pe - ps, v, n, 0);
    if (rc == HDX_OK) *e = *e - (pe - ps) + n;
    return rc;
}

typedef int (*seg_fn)(struct actx *c, const struct step *st, size_t s, size_t *e);

/* Runs fn on the segments a names: its occurrence, or every one when a->occ is 0. */
static int each_seg(struct actx *c, const struct step *st, const struct addr *a, seg_fn fn)
{
    int seen = 0;

    for (size_t s = 0; s < c->w.len;) {
        size_t e = seg_end(&c->w, s);
        if (seg_is(&c->w, s, e, a->seg)) {
            seen++;
            if (a->occ == 0 || a->occ == seen) {
                int rc = fn(c, st, s, &e);
                if (rc != HDX_OK || a->occ != 0) return rc;
            }
        }
        s = e + 1;
    }
    return HDX_OK;
}

/* ---- apply: verbs --------------------------------------------------------------------- */

static int write_val(struct actx *c, const struct step *st, size_t s, size_t *e)
{
    size_t ps, pe;
    int rc = locate(c, s, e, &st->dst, true, &ps, &pe);

    return rc < 0 ? rc : replace_at(c, e, ps, pe, c->val, c->vlen);
}

static int clear_at(struct actx *c, const struct step *st, size_t s, size_t *e)
{
    size_t ps, pe;
    int rc = locate(c, s, e, &st->dst, false, &ps, &pe);

    return rc <= 0 ? rc : replace_at(c, e, ps, pe, "", 0);
}

static int map_at(struct actx *c, const struct step *st, size_t s, size_t *e)
{
    char key[HDX_TRANSFORM_VALUE_MAX + 1], esc[ESC_CAP];
    size_t ps, pe;
    int rc = locate(c, s, e, &st->dst, false, &ps, &pe);

    if (rc <= 0 || pe == ps) return rc; /* nothing to translate */
    const struct row *r = NULL;
    if (pe - ps <= 5 * HDX_TRANSFORM_VALUE_MAX) {
        struct hl7_msg view = {.data = c->w.p, .len = c->w.len, .d = c->w.d};
        struct hl7_view v = {(uint32_t)ps, (uint32_t)(pe - ps)};
        int n = hl7_unescape(&view, v, key, sizeof key);
        /* Too long, badly escaped or decoding to a NUL: no key can equal it. */
        if (n >= 0 && strlen(key) == (size_t)n) r = table_find(st->tab, key, (size_t)n);
    }
    if (r != NULL) {
        int n = hl7_escape(&c->w.d, r->val, esc, sizeof esc);
        if (n < 0) return HDX_E_INVAL; /* cannot happen: ESC_CAP fits any value */
        return replace_at(c, e, ps, pe, esc, (size_t)n);
    }
    if (st->dflt == D_CLEAR) return replace_at(c, e, ps, pe, "", 0);
    if (st->dflt == D_REJECT) {
        snprintf(c->err, c->err_cap, "map %s: code not in %s", st->dst.text, st->tab->name);
        return HDX_E_INVAL;
    }
    return HDX_OK;
}

static int run_set(struct actx *c, const struct step *st)
{
    char esc[ESC_CAP];
    int n = hl7_escape(&c->w.d, st->value, esc, sizeof esc);

    if (n < 0) return HDX_E_INVAL; /* cannot happen: ESC_CAP fits any value */
    c->val = esc;
    c->vlen = (size_t)n;
    return each_seg(c, st, &st->dst, write_val);
}

/* Copies the source's raw bytes, escaping the separators the destination level cannot hold. */
static int run_copy(struct actx *c, const struct step *st)
{
    char buf[COPY_CAP];
    const struct hl7_delims *d = &c->w.d;
    const struct addr *a = &st->src;
    int want = a->occ != 0 ? a->occ : 1, seen = 0;

    for (size_t s = 0; s < c->w.len;) {
        size_t e = seg_end(&c->w, s), ps, pe;
        if (!seg_is(&c->w, s, e, a->seg) || ++seen != want) {
            s = e + 1;
            continue;
        }
        if (locate(c, s, &e, a, false, &ps, &pe) != 1) return HDX_OK; /* absent: no change */
        if (pe - ps > HDX_TRANSFORM_COPY_MAX) {
            snprintf(c->err, c->err_cap, "copy %s: source longer than %d bytes", a->text,
                     HDX_TRANSFORM_COPY_MAX);
            return HDX_E_INVAL;
        }
        size_t n = 0;
        for (size_t i = ps; i < pe; i++) {
            char ch = (char)c->w.p[i], code = 0;
            if (st->dst.comp != 0 && ch == d->rep) code = 'R';
            if (st->dst.comp != 0 && ch == d->comp) code = 'S';
            if (st->dst.sub != 0 && ch == d->sub) code = 'T';
            if (code == 0) {
                buf[n++] = ch;
                continue;
            }
            buf[n++] = d->esc;
            buf[n++] = code;
            buf[n++] = d->esc;
        }
        c->val = buf;
        c->vlen = n;
        return each_seg(c, st, &st->dst, write_val);
    }
    return HDX_OK;
}

static bool strip_match(const struct step *st, const uint8_t *id)
{
    return memcmp(id, st->pat, st->patlen) == 0;
}

static int run_strip(struct actx *c, const struct step *st)
{
    for (size_t s = 0; s < c->w.len;) {
        size_t e = seg_end(&c->w, s);
        /* Invariant 1: MSH is first and never matches (compile refuses such patterns). */
        if (s > 0 && e - s >= 3 && strip_match(st, c->w.p + s)) {
            int rc = wb_splice(&c->w, s, e + 1 - s, NULL, 0, 0);
            if (rc != HDX_OK) return rc;
            continue;
        }
        s = e + 1;
    }
    return HDX_OK;
}

/* ---- apply: version conversion -------------------------------------------------------- */

/* HL7 v2.5.1 message structures (table 0354) of common events, sorted by key for bsearch. */
static const struct {
    const char *key, *structure;
} events[] = {
    {"ADR^A19", "ADR_A19"}, {"ADT^A01", "ADT_A01"}, {"ADT^A02", "ADT_A02"}, {"ADT^A03", "ADT_A03"},
    {"ADT^A04", "ADT_A01"}, {"ADT^A05", "ADT_A05"}, {"ADT^A06", "ADT_A06"}, {"ADT^A07", "ADT_A06"},
    {"ADT^A08", "ADT_A01"}, {"ADT^A09", "ADT_A09"}, {"ADT^A10", "ADT_A09"}, {"ADT^A11", "ADT_A09"},
    {"ADT^A12", "ADT_A12"}, {"ADT^A13", "ADT_A01"}, {"ADT^A14", "ADT_A05"}, {"ADT^A15", "ADT_A15"},
    {"ADT^A16", "ADT_A16"}, {"ADT^A17", "ADT_A17"}, {"ADT^A18", "ADT_A18"}, {"ADT^A20", "ADT_A20"},
    {"ADT^A21", "ADT_A21"}, {"ADT^A22", "ADT_A21"}, {"ADT^A23", "ADT_A21"}, {"ADT^A24", "ADT_A24"},
    {"ADT^A25", "ADT_A21"}, {"ADT^A26", "ADT_A21"}, {"ADT^A27", "ADT_A21"}, {"ADT^A28", "ADT_A05"},
    {"ADT^A29", "ADT_A21"}, {"ADT^A30", "ADT_A30"}, {"ADT^A31", "ADT_A05"}, {"ADT^A32", "ADT_A21"},
    {"ADT^A33", "ADT_A21"}, {"ADT^A34", "ADT_A30"}, {"ADT^A35", "ADT_A30"}, {"ADT^A36", "ADT_A30"},
    {"ADT^A37", "ADT_A37"}, {"ADT^A38", "ADT_A38"}, {"ADT^A39", "ADT_A39"}, {"ADT^A40", "ADT_A39"},
    {"ADT^A41", "ADT_A39"}, {"ADT^A42", "ADT_A39"}, {"ADT^A43", "ADT_A43"}, {"ADT^A44", "ADT_A43"},
    {"ADT^A45", "ADT_A45"}, {"ADT^A46", "ADT_A30"}, {"ADT^A47", "ADT_A30"}, {"ADT^A48", "ADT_A30"},
    {"ADT^A49", "ADT_A30"}, {"ADT^A50", "ADT_A50"}, {"ADT^A51", "ADT_A50"}, {"ADT^A52", "ADT_A52"},
    {"ADT^A53", "ADT_A52"}, {"ADT^A54", "ADT_A54"}, {"ADT^A60", "ADT_A60"}, {"ADT^A61", "ADT_A61"},
    {"ADT^A62", "ADT_A61"}, {"BAR^P01", "BAR_P01"}, {"BAR^P02", "BAR_P02"}, {"BAR^P05", "BAR_P05"},
    {"BAR^P06", "BAR_P06"}, {"BAR^P10", "BAR_P10"}, {"BAR^P12", "BAR_P12"}, {"DFT^P03", "DFT_P03"},
    {"DFT^P11", "DFT_P11"}, {"MDM^T01", "MDM_T01"}, {"MDM^T02", "MDM_T02"}, {"MDM^T03", "MDM_T01"},
    {"MDM^T04", "MDM_T02"}, {"MDM^T05", "MDM_T01"}, {"MDM^T06", "MDM_T02"}, {"MDM^T07", "MDM_T01"},
    {"MDM^T08", "MDM_T02"}, {"MDM^T09", "MDM_T01"}, {"MDM^T10", "MDM_T02"}, {"MDM^T11", "MDM_T01"},
    {"OMG^O19", "OMG_O19"}, {"OMI^O23", "OMI_O23"}, {"OML^O21", "OML_O21"}, {"ORG^O20", "ORG_O20"},
    {"ORL^O22", "ORL_O22"}, {"ORM^O01", "ORM_O01"}, {"ORR^O02", "ORR_O02"}, {"ORU^R01", "ORU_R01"},
    {"ORU^R30", "ORU_R30"}, {"ORU^R31", "ORU_R30"}, {"ORU^R32", "ORU_R30"}, {"OUL^R21", "OUL_R21"},
    {"QRY^A19", "QRY_A19"}, {"RAS^O17", "RAS_O17"}, {"RDE^O11", "RDE_O11"}, {"RDS^O13", "RDS_O13"},
    {"SIU^S12", "SIU_S12"}, {"SIU^S13", "SIU_S12"}, {"SIU^S14", "SIU_S12"}, {"SIU^S15", "SIU_S12"},
    {"SIU^S16", "SIU_S12"}, {"SIU^S17", "SIU_S12"}, {"SIU^S18", "SIU_S12"}, {"SIU^S19", "SIU_S12"},
    {"SIU^S20", "SIU_S12"}, {"SIU^S21", "SIU_S12"}, {"SIU^S22", "SIU_S12"}, {"SIU^S23", "SIU_S12"},
    {"SIU^S24", "SIU_S12"}, {"SIU^S26", "SIU_S12"}, {"VXU^V04", "VXU_V04"},
};

/* bsearch needs the table sorted; checked on every compile of a version step (cheap). */
static bool events_sorted(void)
{
    for (size_t i = 1; i < HDX_ARRAY_LEN(events); i++)
        if (strcmp(events[i - 1].key, events[i].key) >= 0) return false;
    return true;
}

static const char *event_structure(const uint8_t *type, size_t tn, const uint8_t *ev, size_t en)
{
    char key[8];
    size_t lo = 0, hi = HDX_ARRAY_LEN(events);

    if (tn == 3 && memcmp(type, "ACK", 3) == 0) return "ACK"; /* every ACK^<event> is ACK */
    if (tn != 3 || en != 3) return NULL;
    memcpy(key, type, 3);
    key[3] = '^';
    memcpy(key + 4, ev, 3);
    key[7] = '\0';
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(key, events[mid].key);
        if (cmp == 0) return events[mid].structure;
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* "2.3" or "2.3.<digits>" for major "2.3". */
static bool version_in(const uint8_t *v, size_t n, const char *major)
{
    size_t m = strlen(major);

    if (n < m || memcmp(v, major, m) != 0) return false;
    if (n == m) return true;
    if (v[m] != '.' || n == m + 1) return false;
    for (size_t i = m + 1; i < n; i++)
        if (v[i] < '0' || v[i] > '9') return false;
    return true;
}

static int set_msh(struct actx *c, int field, int comp, const char *v)
{
    struct addr a = {.seg = "MSH", .field = field, .comp = comp};
    size_t e = seg_end(&c->w, 0), ps, pe;
    int rc = locate(c, 0, &e, &a, true, &ps, &pe);

    return rc < 0 ? rc : replace_at(c, &e, ps, pe, v, strlen(v));
}

static bool msh_part(struct actx *c, int field, int comp, size_t *ps, size_t *pe)
{
    struct addr a = {.seg = "MSH", .field = field, .comp = comp};
    size_t e = seg_end(&c->w, 0);
    return locate(c, 0, &e, &a, false, ps, pe) == 1;
}

static int up_to_251(struct actx *c)
{
    size_t ts = 0, te = 0, es = 0, ee = 0, ss = 0, se = 0;

    if (!msh_part(c, 9, 3, &ss, &se) || ss == se) {
        if (!msh_part(c, 9, 1, &ts, &te) || !msh_part(c, 9, 2, &es, &ee)) ts = te = es = ee = 0;
        const char *st = event_structure(c->w.p + ts, te - ts, c->w.p + es, ee - es);
        if (st == NULL) {
            snprintf(c->err, c->err_cap,
                     "version: no 2.5.1 message structure (MSH-9.3) known for the event");
            return HDX_E_INVAL;
        }
        int rc = set_msh(c, 9, 3, st);
        if (rc != HDX_OK) return rc;
    }
    return set_msh(c, 12, 0, "2.5.1");
}

/* Fields HL7 v2.3 defines in segments that later versions extended. */
static const struct {
    const char *id;
    int last;
} v23_fields[] = {{"MSH", 19}, {"EVN", 5}, {"PID", 30}, {"ORC", 19}, {"OBX", 17}};

static int cut_fields(struct actx *c, size_t s, size_t *e, int last)
{
    size_t ts, te;
    int have;
    int idx = seg_is(&c->w, s, *e, "MSH") ? last : last + 1; /* token of field last + 1 */

    if (!token(c->w.p, s, *e, c->w.d.field, idx, &ts, &te, &have)) return HDX_OK;
    int rc = wb_splice(&c->w, ts - 1, *e - (ts - 1), NULL, 0, 0);
    if (rc == HDX_OK) *e = ts - 1;
    return rc;
}

static int down_to_23(struct actx *c)
{
    size_t fs, fe, ts, te;
    int have, rc;

    /* MSH-9 keeps message type and trigger event: 2.3 has no message structure. */
    if (msh_part(c, 9, 0, &fs, &fe) && token(c->w.p, fs, fe, c->w.d.comp, 2, &ts, &te, &have)) {
        size_t e = seg_end(&c->w, 0);
        if ((rc = replace_at(c, &e, ts - 1, fe, "", 0)) != HDX_OK) return rc;
    }
    if ((rc = set_msh(c, 12, 0, "2.3")) != HDX_OK) return rc;
    for (size_t s = 0; s < c->w.len;) {
        size_t e = seg_end(&c->w, s);
        if (s > 0 && seg_is(&c->w, s, e, "SFT")) { /* SFT is new in 2.5 */
            if ((rc = wb_splice(&c->w, s, e + 1 - s, NULL, 0, 0)) != HDX_OK) return rc;
            continue;
        }
        for (size_t k = 0; k < HDX_ARRAY_LEN(v23_fields); k++)
            if (seg_is(&c->w, s, e, v23_fields[k].id) &&
                (rc = cut_fields(c, s, &e, v23_fields[k].last)) != HDX_OK)
                return rc;
        s = e + 1;
    }
    return HDX_OK;
}

static int run_version(struct actx *c, const struct step *st)
{
    size_t vs, ve;

    if (!msh_part(c, 12, 1, &vs, &ve)) vs = ve = 0;
    const uint8_t *v = c->w.p + vs;
    size_t n = ve - vs;
    const char *target = st->ver == V_23 ? "2.3" : "2.5.1";
    if (n == strlen(target) && memcmp(v, target, n) == 0) return HDX_OK; /* already there */
    if (!version_in(v, n, "2.3") && !version_in(v, n, "2.5")) {
        snprintf(c->err, c->err_cap,
                 "version: message version (MSH-12) is neither 2.3.x nor 2.5.x");
        return HDX_E_INVAL;
    }
    return st->ver == V_23 ? down_to_23(c) : up_to_251(c);
}

static int run_step(struct actx *c, const struct step *st)
{
    switch (st->op) {
    case OP_SET:
        return run_set(c, st);
    case OP_COPY:
        return run_copy(c, st);
    case OP_CLEAR:
        return each_seg(c, st, &st->dst, clear_at);
    case OP_MAP:
        return each_seg(c, st, &st->dst, map_at);
    case OP_STRIP:
        return run_strip(c, st);
    case OP_VERSION:
        return run_version(c, st);
    }
    return HDX_E_INVAL;
}

static const char *verb_name(enum op op)
{
    static const char *const names[] = {"set", "copy", "clear", "map", "strip", "version"};
    return names[op];
}

/* Steps 1-2: parse the input, copy its segments CR-terminated into c->w. */
static int load_input(struct actx *c, const uint8_t *msg, size_t len, char *cid, size_t cid_cap,
                      char *err, size_t err_cap)
{
    struct hl7_msg m;
    struct hl7_error he;

    if (len > INPUT_MAX) return why(err, err_cap, "input: larger than %u bytes", INPUT_MAX);
    if (hl7_parse(msg, len, NULL, &m, &he) != 0)
        return why(err, err_cap, "input: not a valid HL7 v2 message (%s)", he.text);
    snprintf(cid, cid_cap, "%s", m.control_id);
    c->w.d = m.d;
    c->w.max = 2 * len + BOUND_SLACK;
    c->w.cap = len + len / 8 + 4096 < c->w.max ? len + len / 8 + 4096 : c->w.max;
    c->w.p = malloc(c->w.cap);
    if (c->w.p == NULL) {
        hl7_msg_free(&m);
        return HDX_E_NOMEM;
    }
    for (size_t i = 0; i < m.nsegs; i++) {
        /* Terminators never exceed the bytes they replace, plus one for a last segment
         * without one: the initial capacity holds the copy. */
        memcpy(c->w.p + c->w.len, msg + m.segs[i].off, m.segs[i].len);
        c->w.len += m.segs[i].len;
        c->w.p[c->w.len++] = '\r';
    }
    hl7_msg_free(&m);
    return HDX_OK;
}

int hdx_transform_apply(const struct hdx_transform *t, const uint8_t *msg, size_t len,
                        uint8_t **out, size_t *out_len, char *err, size_t err_cap)
{
    char reason[256], cid[200], dummy[1];
    struct actx c = {.err = reason, .err_cap = sizeof reason};

    if (err == NULL || err_cap == 0) {
        err = dummy;
        err_cap = sizeof dummy;
    }
    err[0] = '\0';
    if (out == NULL || out_len == NULL) return HDX_E_INVAL;
    *out = NULL;
    *out_len = 0;
    if (t == NULL || (msg == NULL && len > 0)) return why(err, err_cap, "no transform");
    int rc = load_input(&c, msg, len, cid, sizeof cid, err, err_cap);
    if (rc != HDX_OK) return rc;
    for (size_t i = 0; i < t->n; i++) {
        reason[0] = '\0';
        rc = run_step(&c, &t->steps[i]);
        if (rc == HDX_OK) continue;
        if (rc == HDX_E_TOOBIG)
            snprintf(reason, sizeof reason, "%s: output over the bound (2 x input + 64 KiB)",
                     verb_name(t->steps[i].op));
        else if (rc == HDX_E_NOMEM)
            snprintf(reason, sizeof reason, "out of memory");
        else if (reason[0] == '\0')
            snprintf(reason, sizeof reason, "%s failed", verb_name(t->steps[i].op));
        snprintf(err, err_cap, "transform %zu: %s", i + 1, reason);
        free(c.w.p);
        return rc == HDX_E_NOMEM ? rc : HDX_E_INVAL;
    }
    /* Step 4, defensive: what leaves must be a message hdx itself would accept, acknowledged
     * under the same control id. */
    struct hl7_msg m;
    struct hl7_error he;
    if (hl7_parse(c.w.p, c.w.len, NULL, &m, &he) != 0) {
        free(c.w.p);
        return why(err, err_cap, "output: does not re-parse (%s)", he.text);
    }
    bool same = strcmp(m.control_id, cid) == 0;
    hl7_msg_free(&m);
    if (!same) {
        free(c.w.p);
        return why(err, err_cap, "output: MSH-10 changed");
    }
    *out = c.w.p;
    *out_len = c.w.len;
    return HDX_OK;
}
