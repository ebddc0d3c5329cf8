#include "route/match.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

#define NODES_MAX (4 * HDX_MATCH_PREDS_MAX)
#define WORD_MAX 255

enum kind {
    K_TRUE = 1,
    K_AND,
    K_OR,
    K_NOT,
    K_TYPE,    /* v0: message code or "*", v1: trigger or "*" */
    K_TRIGGER, /* v0 */
    K_SENDER,  /* v0, prefix when `prefix` */
    K_PATIENT, /* v0 */
    K_EQ,      /* field = v0 */
    K_NE,      /* field != v0 */
    K_IN,      /* field in (vfirst .. vfirst + vcount) */
    K_EXISTS,
};

struct node {
    uint8_t kind, prefix;
    int16_t a, b; /* children */
    char seg[4];
    uint16_t occ, field, comp, sub; /* occ 0: any occurrence */
    uint32_t vfirst, vcount;
};

struct hdx_match {
    struct node n[NODES_MAX];
    int nn, root, npreds;
    uint32_t *voff; /* value i at arena + voff[i], NUL-terminated */
    uint32_t nv, vcap;
    char *arena;
    size_t alen, acap;
};

/* ---------- lexer ---------- */

enum tok { T_END, T_LP, T_RP, T_COMMA, T_EQ, T_NE, T_WORD };

struct parser {
    struct hdx_match *m;
    const char *s;
    size_t len, pos;
    enum tok tok;
    size_t col; /* 1-based column of the current token */
    char word[WORD_MAX + 1];
    size_t wlen;
    int quoted;
    int depth;
    char *err;
    size_t err_cap;
    int failed;
};

static int fail(struct parser *p, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, size_t col, const char *fmt, ...)
{
    if (p->failed) return -1;
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_cap, "column %zu: %s", col, why);
    p->failed = 1;
    return -1;
}

static int bare_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(),=!\"", c);
}

static int next(struct parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
    p->col = p->pos + 1;
    p->wlen = 0;
    p->quoted = 0;
    p->word[0] = 0;
    if (p->pos >= p->len) return p->tok = T_END, 0;
    char c = p->s[p->pos];
    if (c == '(' || c == ')' || c == ',' || c == '=') {
        p->pos++;
        p->tok = c == '(' ? T_LP : c == ')' ? T_RP : c == ',' ? T_COMMA : T_EQ;
        return 0;
    }
    if (c == '!') {
        if (p->pos + 1 < p->len && p->s[p->pos + 1] == '=') {
            p->pos += 2;
            p->tok = T_NE;
            return 0;
        }
        return fail(p, p->col, "'!' must be '!='");
    }
    if (c == '"') {
        p->pos++;
        for (;;) {
            if (p->pos >= p->len) return fail(p, p->col, "unterminated quoted value");
            char q = p->s[p->pos++];
            if (q == '"') break;
            if (q == '\\') {
                if (p->pos >= p->len || (p->s[p->pos] != '"' && p->s[p->pos] != '\\'))
                    return fail(p, p->pos, "only \\\" and \\\\ are escapes in a quoted value");
                q = p->s[p->pos++];
            }
            if ((unsigned char)q < 0x20 || q == 0x7f)
                return fail(p, p->pos, "a control character in a quoted value");
            if (p->wlen >= HDX_MATCH_VALUE_MAX)
                return fail(p, p->col, "a value longer than %d bytes", HDX_MATCH_VALUE_MAX);
            p->word[p->wlen++] = q;
        }
        p->word[p->wlen] = 0;
        p->quoted = 1;
        p->tok = T_WORD;
        return 0;
    }
    if (!bare_char((unsigned char)c))
        return fail(p, p->col, "unexpected character 0x%02x", (unsigned char)c);
    while (p->pos < p->len && bare_char((unsigned char)p->s[p->pos])) {
        if (p->wlen >= WORD_MAX) return fail(p, p->col, "a word longer than %d bytes", WORD_MAX);
        p->word[p->wlen++] = p->s[p->pos++];
    }
    p->word[p->wlen] = 0;
    p->tok = T_WORD;
    return 0;
}

static int is_kw(const struct parser *p, const char *kw)
{
    return p->tok == T_WORD && !p->quoted && strcasecmp(p->word, kw) == 0;
}

/* ---------- building ---------- */

static int new_node(struct parser *p, enum kind k)
{
    struct hdx_match *m = p->m;
    if (m->nn >= NODES_MAX) return fail(p, p->col, "expression too large");
    memset(&m->n[m->nn], 0, sizeof(m->n[0]));
    m->n[m->nn].kind = (uint8_t)k;
    m->n[m->nn].a = m->n[m->nn].b = -1;
    return m->nn++;
}

static int add_value(struct parser *p, const char *v, size_t len)
{
    struct hdx_match *m = p->m;
    if (len > HDX_MATCH_VALUE_MAX)
        return fail(p, p->col, "a value longer than %d bytes", HDX_MATCH_VALUE_MAX);
    if (m->nv == m->vcap) {
        uint32_t cap = m->vcap ? m->vcap * 2 : 16;
        uint32_t *o = realloc(m->voff, cap * sizeof(*o));
        if (!o) return fail(p, p->col, "out of memory");
        m->voff = o;
        m->vcap = cap;
    }
    if (m->alen + len + 1 > m->acap) {
        size_t cap = m->acap ? m->acap * 2 : 256;
        while (cap < m->alen + len + 1)
            cap *= 2;
        char *a = realloc(m->arena, cap);
        if (!a) return fail(p, p->col, "out of memory");
        m->arena = a;
        m->acap = cap;
    }
    memcpy(m->arena + m->alen, v, len);
    m->arena[m->alen + len] = 0;
    m->voff[m->nv] = (uint32_t)m->alen;
    m->alen += len + 1;
    return (int)m->nv++;
}

static const char *value(const struct hdx_match *m, uint32_t i)
{
    return m->arena + m->voff[i];
}

/* 1..999 without a leading zero at s[*i]; -1 when not. */
static int number(const char *s, size_t *i)
{
    int v = 0, n = 0;
    if (s[*i] == '0') return -1;
    while (isdigit((unsigned char)s[*i]) && n < 4) {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        n++;
    }
    return n == 0 || n > 3 ? -1 : v;
}

static int parse_field(struct parser *p, struct node *nd)
{
    const char *w = p->word;
    size_t i = 3;
    if (p->quoted || p->wlen < 5) return fail(p, p->col, "'%s' is not a field such as OBX-3.1", w);
    for (int k = 0; k < 3; k++)
        if (!isupper((unsigned char)w[k]) && !isdigit((unsigned char)w[k]))
            return fail(p, p->col, "'%s' is not a field such as OBX-3.1", w);
    memcpy(nd->seg, w, 3);
    nd->seg[3] = 0;
    if (w[i] == '[') {
        i++;
        int n = number(w, &i);
        if (n < 0 || w[i] != ']') return fail(p, p->col, "'%s': [N] takes 1..999", w);
        nd->occ = (uint16_t)n;
        i++;
    }
    if (w[i] != '-') return fail(p, p->col, "'%s' is not a field such as OBX-3.1", w);
    i++;
    int f = number(w, &i), c = 0, s = 0;
    if (f < 0) return fail(p, p->col, "'%s': the field number is 1..999", w);
    if (w[i] == '.') {
        i++;
        if ((c = number(w, &i)) < 0) return fail(p, p->col, "'%s': the component is 1..999", w);
        if (w[i] == '.') {
            i++;
            if ((s = number(w, &i)) < 0)
                return fail(p, p->col, "'%s': the sub-component is 1..999", w);
        }
    }
    if (w[i]) return fail(p, p->col, "'%s': unexpected '%c'", w, w[i]);
    if (!strcmp(nd->seg, "MSH") && f <= 2)
        return fail(p, p->col, "MSH-1 and MSH-2 are the delimiters, not data");
    nd->field = (uint16_t)f;
    nd->comp = (uint16_t)c;
    nd->sub = (uint16_t)s;
    return 0;
}

static int code_ok(const char *s, size_t n)
{
    if (n == 1 && s[0] == '*') return 1;
    if (n == 0 || n > 15) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

static int parse_or(struct parser *p);

static int parse_pred(struct parser *p)
{
    size_t col = p->col;
    if (p->tok != T_WORD) return fail(p, col, "expected a condition");
    if (++p->m->npreds > HDX_MATCH_PREDS_MAX)
        return fail(p, col, "more than %d conditions", HDX_MATCH_PREDS_MAX);
    const char *w = p->word;
    int id;
    if (!p->quoted && (!strcmp(w, "*") || !strcasecmp(w, "all"))) {
        id = new_node(p, K_TRUE);
        return id < 0 || next(p) < 0 ? -1 : id;
    }
    const char *colon = p->quoted ? NULL : strchr(w, ':');
    if (colon) {
        size_t pl = (size_t)(colon - w);
        const char *v = colon + 1;
        size_t vl = strlen(v);
        enum kind k = pl == 4 && !strncasecmp(w, "type", 4)      ? K_TYPE
                      : pl == 7 && !strncasecmp(w, "trigger", 7) ? K_TRIGGER
                      : pl == 6 && !strncasecmp(w, "sender", 6)  ? K_SENDER
                      : pl == 7 && !strncasecmp(w, "patient", 7) ? K_PATIENT
                                                                 : 0;
        if (!k) return fail(p, col, "unknown condition '%.*s:'", (int)pl, w);
        char quoted_val[HDX_MATCH_VALUE_MAX + 1];
        if (!vl) { /* "patient:" "A B": the value may be quoted after the colon */
            if (next(p) < 0) return -1;
            if (p->tok != T_WORD || !p->quoted || p->wlen > HDX_MATCH_VALUE_MAX)
                return fail(p, col, "a condition with ':' needs a value");
            memcpy(quoted_val, p->word, p->wlen + 1); /* p->word is the next token's */
            v = quoted_val;
            vl = p->wlen;
        }
        if ((id = new_node(p, k)) < 0) return -1;
        struct node *nd = &p->m->n[id];
        if (k == K_TYPE) {
            const char *caret = memchr(v, '^', vl);
            size_t ml = caret ? (size_t)(caret - v) : vl;
            const char *trg = caret ? caret + 1 : "*";
            size_t tl = caret ? vl - ml - 1 : 1;
            if (!code_ok(v, ml) || !code_ok(trg, tl) || memchr(trg, '^', tl))
                return fail(p, col, "type:MSG^TRG wants upper-case codes (or *), e.g. ORU^R01");
            int v0 = add_value(p, v, ml), v1 = add_value(p, trg, tl);
            if (v0 < 0 || v1 < 0) return -1;
            nd = &p->m->n[id];
            nd->vfirst = (uint32_t)v0;
            nd->vcount = 2;
        } else {
            if (k == K_TRIGGER && !code_ok(v, vl))
                return fail(p, col, "trigger: wants an upper-case code (or *), e.g. R01");
            if (k == K_SENDER && vl && v[vl - 1] == '*') {
                nd->prefix = 1;
                vl--;
            }
            int v0 = add_value(p, v, vl);
            if (v0 < 0) return -1;
            nd = &p->m->n[id];
            nd->vfirst = (uint32_t)v0;
            nd->vcount = 1;
        }
        return next(p) < 0 ? -1 : id;
    }
    struct node f = {0};
    if (parse_field(p, &f) < 0 || next(p) < 0) return -1;
    enum kind k;
    if (p->tok == T_EQ || p->tok == T_NE) {
        k = p->tok == T_EQ ? K_EQ : K_NE;
        if (next(p) < 0) return -1;
        if (p->tok != T_WORD) return fail(p, p->col, "expected a value");
        int v0 = add_value(p, p->word, p->wlen);
        if (v0 < 0) return -1;
        f.vfirst = (uint32_t)v0;
        f.vcount = 1;
    } else if (is_kw(p, "in")) {
        k = K_IN;
        if (next(p) < 0) return -1;
        if (p->tok != T_LP) return fail(p, p->col, "expected '(' after in");
        f.vfirst = p->m->nv;
        for (;;) {
            if (next(p) < 0) return -1;
            if (p->tok != T_WORD) return fail(p, p->col, "expected a value");
            if (f.vcount == HDX_MATCH_LIST_MAX)
                return fail(p, p->col, "more than %d values in one list", HDX_MATCH_LIST_MAX);
            if (add_value(p, p->word, p->wlen) < 0) return -1;
            f.vcount++;
            if (next(p) < 0) return -1;
            if (p->tok == T_RP) break;
            if (p->tok != T_COMMA) return fail(p, p->col, "expected ',' or ')'");
        }
    } else if (is_kw(p, "exists")) {
        k = K_EXISTS;
    } else {
        return fail(p, p->col, "expected =, !=, in or exists after the field");
    }
    if ((id = new_node(p, k)) < 0) return -1;
    struct node *nd = &p->m->n[id];
    memcpy(nd->seg, f.seg, sizeof(f.seg));
    nd->occ = f.occ;
    nd->field = f.field;
    nd->comp = f.comp;
    nd->sub = f.sub;
    nd->vfirst = f.vfirst;
    nd->vcount = f.vcount;
    return next(p) < 0 ? -1 : id;
}

static int parse_unary(struct parser *p)
{
    size_t col = p->col;
    if (is_kw(p, "not")) {
        if (++p->depth > HDX_MATCH_DEPTH_MAX)
            return fail(p, col, "nested deeper than %d", HDX_MATCH_DEPTH_MAX);
        if (next(p) < 0) return -1;
        int a = parse_unary(p);
        p->depth--;
        if (a < 0) return -1;
        int id = new_node(p, K_NOT);
        if (id >= 0) p->m->n[id].a = (int16_t)a;
        return id;
    }
    if (p->tok == T_LP) {
        if (++p->depth > HDX_MATCH_DEPTH_MAX)
            return fail(p, col, "nested deeper than %d", HDX_MATCH_DEPTH_MAX);
        if (next(p) < 0) return -1;
        int a = parse_or(p);
        if (a < 0) return -1;
        if (p->tok != T_RP) return fail(p, p->col, "expected ')' for the '(' at column %zu", col);
        p->depth--;
        return next(p) < 0 ? -1 : a;
    }
    if (is_kw(p, "and") || is_kw(p, "or"))
        return fail(p, col, "'%s' needs a condition before it", p->word);
    return parse_pred(p);
}

static int parse_binary(struct parser *p, const char *kw, enum kind k, int (*sub)(struct parser *))
{
    int a = sub(p);
    while (a >= 0 && is_kw(p, kw)) {
        if (next(p) < 0) return -1;
        int b = sub(p);
        if (b < 0) return -1;
        int id = new_node(p, k);
        if (id < 0) return -1;
        p->m->n[id].a = (int16_t)a;
        p->m->n[id].b = (int16_t)b;
        a = id;
    }
    return a;
}

static int parse_and(struct parser *p)
{
    return parse_binary(p, "and", K_AND, parse_unary);
}

static int parse_or(struct parser *p)
{
    return parse_binary(p, "or", K_OR, parse_and);
}

void hdx_match_free(struct hdx_match *m)
{
    if (!m) return;
    free(m->voff);
    free(m->arena);
    free(m);
}

int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap)
{
    *out = NULL;
    size_t len = strlen(text);
    if (len > HDX_MATCH_TEXT_MAX) {
        snprintf(err, err_cap, "column %d: longer than %d bytes", HDX_MATCH_TEXT_MAX + 1,
                 HDX_MATCH_TEXT_MAX);
        return HDX_E_INVAL;
    }
    struct hdx_match *m = calloc(1, sizeof(*m));
    if (!m) return HDX_E_NOMEM;
    struct parser p = {.m = m, .s = text, .len = len, .err = err, .err_cap = err_cap};
    int root = -1;
    if (next(&p) == 0) {
        if (p.tok == T_END)
            fail(&p, 1, "empty (use * for every message)");
        else if ((root = parse_or(&p)) >= 0 && p.tok != T_END)
            root = fail(&p, p.col, "unexpected '%s' after the expression",
                        p.tok == T_WORD ? p.word
                        : p.tok == T_RP ? ")"
                                        : "token");
    }
    if (p.failed || root < 0) {
        hdx_match_free(m);
        return HDX_E_INVAL;
    }
    m->root = root;
    *out = m;
    return HDX_OK;
}

/* ---------- evaluation ---------- */

static size_t seg_count(const struct hl7_msg *msg, const char *id)
{
    size_t n = 0;
    for (size_t i = 0; i < msg->nsegs && msg->segs; i++) {
        const struct hl7_seg *s = &msg->segs[i];
        if (s->len >= 3 && memcmp(msg->data + s->off, id, 3) == 0 &&
            (s->len == 3 || msg->data[s->off + 3] == (uint8_t)msg->d.field))
            n++;
    }
    return n;
}

/* Does one field value satisfy the node (=, in: equal to a value; exists: not empty)? */
static int value_test(const struct hdx_match *m, const struct node *nd, const struct hl7_msg *msg,
                      struct hl7_view v)
{
    if (v.len == 0) return 0;
    if (nd->kind == K_EXISTS) return 1;
    char buf[HDX_MATCH_VALUE_MAX + 2];
    if (v.len > HDX_MATCH_VALUE_MAX * 8) return 0; /* cannot unescape to a value's length */
    int n = hl7_unescape(msg, v, buf, sizeof(buf));
    if (n < 0) return 0; /* longer than any value, or badly escaped: equal to none */
    for (uint32_t i = 0; i < nd->vcount; i++) {
        const char *want = value(m, nd->vfirst + i);
        if (strlen(want) == (size_t)n && memcmp(want, buf, (size_t)n) == 0) return 1;
    }
    return 0;
}

/* Any occurrence (or occurrence occ), any repetition. */
static int field_any(const struct hdx_match *m, const struct node *nd, const struct hl7_msg *msg)
{
    size_t first = nd->occ ? nd->occ : 1, last = nd->occ ? nd->occ : seg_count(msg, nd->seg);
    for (size_t o = first; o <= last; o++)
        for (int rep = 1; rep < 100000; rep++) {
            struct hl7_view v;
            if (hl7_get(msg, nd->seg, (int)o, nd->field, rep, 0, 0, &v) != 0) break; /* no more */
            if ((nd->comp || nd->sub) &&
                hl7_get(msg, nd->seg, (int)o, nd->field, rep, nd->comp, nd->sub, &v) != 0)
                continue; /* this repetition lacks the component */
            if (value_test(m, nd, msg, v)) return 1;
        }
    return 0;
}

static int eval(const struct hdx_match *m, int i, const struct hl7_msg *msg, const char *sender)
{
    const struct node *nd = &m->n[i];
    switch ((enum kind)nd->kind) {
    case K_TRUE:
        return 1;
    case K_AND:
        return eval(m, nd->a, msg, sender) && eval(m, nd->b, msg, sender);
    case K_OR:
        return eval(m, nd->a, msg, sender) || eval(m, nd->b, msg, sender);
    case K_NOT:
        return !eval(m, nd->a, msg, sender);
    case K_TYPE: {
        const char *code = value(m, nd->vfirst), *trg = value(m, nd->vfirst + 1);
        size_t cl = strcspn(msg->msg_type, "^");
        if (strcmp(code, "*") && (strlen(code) != cl || memcmp(code, msg->msg_type, cl))) return 0;
        return !strcmp(trg, "*") || !strcmp(trg, msg->trigger);
    }
    case K_TRIGGER: {
        const char *trg = value(m, nd->vfirst);
        return !strcmp(trg, "*") || !strcmp(trg, msg->trigger);
    }
    case K_SENDER: {
        const char *v = value(m, nd->vfirst);
        return nd->prefix ? strncmp(sender, v, strlen(v)) == 0 : strcmp(sender, v) == 0;
    }
    case K_PATIENT:
        return strcmp(msg->patient_id, value(m, nd->vfirst)) == 0;
    case K_EQ:
    case K_IN:
    case K_EXISTS:
        return field_any(m, nd, msg);
    case K_NE:
        return !field_any(m, nd, msg);
    }
    return 0;
}

int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender)
{
    return eval(m, m->root, msg, sender ? sender : "");
}

int hdx_match_index_only(const struct hdx_match *m)
{
    for (int i = 0; i < m->nn; i++)
        if (m->n[i].kind == K_PATIENT || m->n[i].kind >= K_EQ) return 0;
    return 1;
}

/* ---------- the canonical text ---------- */

struct out {
    char *p;
    size_t cap, len;
    int over;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->len < o->cap ? o->p + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0,
                      fmt, ap);
    va_end(ap);
    if (n < 0 || o->len + (size_t)n >= o->cap) o->over = 1;
    o->len += n > 0 ? (size_t)n : 0;
}

static void put_value(struct out *o, const char *v)
{
    int bare = v[0] != 0;
    for (const char *c = v; *c && bare; c++)
        bare = bare_char((unsigned char)*c);
    if (bare) {
        put(o, "%s", v);
        return;
    }
    put(o, "\"");
    for (const char *c = v; *c; c++)
        put(o, "%s%c", *c == '"' || *c == '\\' ? "\\" : "", *c);
    put(o, "\"");
}

static void put_field(struct out *o, const struct node *nd)
{
    put(o, "%s", nd->seg);
    if (nd->occ) put(o, "[%u]", nd->occ);
    put(o, "-%u", nd->field);
    if (nd->comp) put(o, ".%u", nd->comp);
    if (nd->sub) put(o, ".%u", nd->sub);
}

static void render(const struct hdx_match *m, int i, enum kind parent, struct out *o)
{
    const struct node *nd = &m->n[i];
    switch ((enum kind)nd->kind) {
    case K_TRUE:
        put(o, "*");
        return;
    case K_AND:
    case K_OR: {
        int paren = (nd->kind == K_OR && parent == K_AND) || parent == K_NOT;
        if (paren) put(o, "(");
        render(m, nd->a, nd->kind, o);
        put(o, nd->kind == K_AND ? " and " : " or ");
        render(m, nd->b, nd->kind, o);
        if (paren) put(o, ")");
        return;
    }
    case K_NOT:
        put(o, "not ");
        render(m, nd->a, K_NOT, o);
        return;
    case K_TYPE:
        put(o, "type:%s", value(m, nd->vfirst));
        if (strcmp(value(m, nd->vfirst + 1), "*")) put(o, "^%s", value(m, nd->vfirst + 1));
        return;
    case K_TRIGGER:
        put(o, "trigger:%s", value(m, nd->vfirst));
        return;
    case K_SENDER:
    case K_PATIENT: {
        const char *v = value(m, nd->vfirst);
        int bare = v[0] != 0;
        for (const char *c = v; *c && bare; c++)
            bare = bare_char((unsigned char)*c);
        put(o, "%s:", nd->kind == K_SENDER ? "sender" : "patient");
        if (bare || nd->prefix)
            put(o, "%s%s", v, nd->prefix ? "*" : "");
        else
            put_value(o, v);
        return;
    }
    case K_EQ:
    case K_NE:
        put_field(o, nd);
        put(o, nd->kind == K_EQ ? " = " : " != ");
        put_value(o, value(m, nd->vfirst));
        return;
    case K_IN:
        put_field(o, nd);
        put(o, " in (");
        for (uint32_t k = 0; k < nd->vcount; k++) {
            if (k) put(o, ", ");
            put_value(o, value(m, nd->vfirst + k));
        }
        put(o, ")");
        return;
    case K_EXISTS:
        put_field(o, nd);
        put(o, " exists");
        return;
    }
}

int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap)
{
    struct out o = {out, cap, 0, 0};
    if (!cap) return -1;
    out[0] = 0;
    render(m, m->root, K_TRUE, &o);
    return o.over ? -1 : (int)o.len;
}
