#include "route/match.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Sizes of the compiled form. Every value is copied out of the text (unquoting, the dropped
 * '*' of a sender prefix and the split of a type only shrink it), so the pool never needs more
 * than the text; a value costs at least two bytes of text (itself and a separator) but a type,
 * which makes two values. Each "not" costs at least four bytes ("not " or "not("). The
 * compiler checks every bound anyway. */
#define POOL_MAX HDX_MATCH_TEXT_MAX
#define VALS_MAX (HDX_MATCH_TEXT_MAX / 2 + 2 * HDX_MATCH_PRED_MAX)
#define NODE_MAX (2 * HDX_MATCH_PRED_MAX + HDX_MATCH_TEXT_MAX / 4)
#define INSN_MAX (2 * NODE_MAX)
#define QUOTE_MAX 24 /* bytes of configuration text an error quotes */

enum pkind { P_ALL, P_TYPE, P_TRIGGER, P_SENDER, P_PATIENT, P_EQ, P_NE, P_IN, P_EXISTS };

struct pred {
    uint8_t kind;              /* enum pkind */
    uint8_t prefix;            /* P_SENDER: the value is a prefix (its final '*' dropped) */
    char seg[4];               /* field predicates: the segment id, NUL-terminated */
    uint16_t occ;              /* 0: any occurrence */
    uint16_t field, comp, sub; /* comp, sub 0: the whole repetition / component */
    uint16_t first, count;     /* values: vals[first, first + count); P_TYPE: code, trigger */
};

struct val {
    uint16_t off, len; /* into pool; P_TYPE: len 0 = any */
};

/* The program: OP_PRED sets the accumulator, OP_NOT flips it, OP_JF/OP_JT jump forward to
 * arg when it is false/true (the short cut of and/or, whose value is then the accumulator). */
enum op { OP_PRED, OP_NOT, OP_JF, OP_JT };

struct insn {
    uint8_t op;
    uint16_t arg; /* OP_PRED: index in preds; jumps: target pc (always > this pc) */
};

struct hdx_match {
    uint16_t npreds, ninsns, nvals, pool_len;
    int index_only;
    struct pred preds[HDX_MATCH_PRED_MAX];
    struct insn insns[INSN_MAX];
    struct val vals[VALS_MAX];
    char pool[POOL_MAX];
    size_t canon_len;
    char canon[HDX_MATCH_TEXT_MAX + 1];
};

/* ---- compiling ------------------------------------------------------------------------ */

enum nkind { N_PRED, N_NOT, N_AND, N_OR };

struct node {
    uint8_t kind;
    uint16_t pred;             /* N_PRED */
    int16_t first, last, next; /* children (N_NOT: one), as a list; -1 = none */
};

struct cc {
    const char *s;
    size_t len, pos;
    int depth;
    struct hdx_match *m;
    struct node nodes[NODE_MAX];
    size_t nnodes;
    char *err;
    size_t err_cap;
    int failed;
    size_t out_len; /* canonical text being written into m->canon */
    int out_over;
};

__attribute__((format(printf, 3, 4))) static int bad(struct cc *c, size_t at, const char *fmt, ...)
{
    if (c->failed) return -1; /* the first failure wins */
    c->failed = 1;
    if (c->err != NULL && c->err_cap > 0) {
        char why[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        snprintf(c->err, c->err_cap, "column %zu: %s", at + 1, why);
    }
    return -1;
}

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Ends a bare token: whitespace, ( ) , " and the end of the text. */
static int ends_bare(struct cc *c, size_t at)
{
    if (at >= c->len) return 1;
    char ch = c->s[at];
    return is_ws(ch) || ch == '(' || ch == ')' || ch == ',' || ch == '"';
}

/* Ends a keyword: whitespace, ( ) and the end of the text. */
static int ends_kw(struct cc *c, size_t at)
{
    if (at >= c->len) return 1;
    char ch = c->s[at];
    return is_ws(ch) || ch == '(' || ch == ')';
}

static void skip_ws(struct cc *c)
{
    while (c->pos < c->len && is_ws(c->s[c->pos]))
        c->pos++;
}

static int ieq_prefix(struct cc *c, const char *kw, size_t n)
{
    if (c->len - c->pos < n) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = c->s[c->pos + i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (ch != kw[i]) return 0;
    }
    return 1;
}

/* The keyword kw (lower case) at pos, case-insensitively and followed by a keyword end:
 * consumed and 1, or 0. */
static int kw(struct cc *c, const char *word)
{
    size_t n = strlen(word);
    if (!ieq_prefix(c, word, n) || !ends_kw(c, c->pos + n)) return 0;
    c->pos += n;
    return 1;
}

/* The length of the text to quote in an error about the token at `at`. */
static int quote_len(struct cc *c, size_t at)
{
    size_t n = 0;
    while (at + n < c->len && n < QUOTE_MAX && !is_ws(c->s[at + n]))
        n++;
    return (int)n;
}

static int new_node(struct cc *c, enum nkind kind, size_t at)
{
    if (c->nnodes == NODE_MAX) return bad(c, at, "expression too complex");
    struct node *n = &c->nodes[c->nnodes];
    n->kind = (uint8_t)kind;
    n->first = n->last = n->next = -1;
    return (int)c->nnodes++;
}

/* Appends child to parent; a child of the same kind (and in and, or in or) gives its own
 * children instead, so "(a and b) and c" is one and of three. */
static void add_child(struct cc *c, int parent, int child)
{
    struct node *p = &c->nodes[parent], *ch = &c->nodes[child];
    int16_t first = (int16_t)child, last = (int16_t)child;
    if (ch->kind == p->kind && (p->kind == N_AND || p->kind == N_OR)) {
        first = ch->first;
        last = ch->last;
    }
    if (p->last < 0)
        p->first = first;
    else
        c->nodes[p->last].next = first;
    p->last = last;
}

static int add_value(struct cc *c, const char *v, size_t n, size_t at)
{
    struct hdx_match *m = c->m;
    if (m->nvals == VALS_MAX || n > (size_t)(POOL_MAX - m->pool_len))
        return bad(c, at, "expression too large");
    m->vals[m->nvals].off = m->pool_len;
    m->vals[m->nvals].len = (uint16_t)n;
    memcpy(m->pool + m->pool_len, v, n);
    m->pool_len = (uint16_t)(m->pool_len + n);
    return m->nvals++;
}

/* VALUE into buf (HDX_MATCH_VALUE_MAX + 1 bytes, NUL-terminated), its length into *n. */
static int parse_value(struct cc *c, char *buf, size_t *n)
{
    size_t start = c->pos, k = 0;
    if (c->pos < c->len && c->s[c->pos] == '"') {
        c->pos++;
        for (;;) {
            if (c->pos >= c->len) return bad(c, start, "unterminated quoted value");
            char ch = c->s[c->pos];
            if (ch == '"') {
                c->pos++;
                break;
            }
            if (ch == '\\') {
                char e = c->pos + 1 < c->len ? c->s[c->pos + 1] : 0;
                if (e != '"' && e != '\\')
                    return bad(c, c->pos, "in a quoted value only \\\" and \\\\ are escapes");
                ch = e;
                c->pos++;
            }
            if (k == HDX_MATCH_VALUE_MAX)
                return bad(c, start, "value longer than %d bytes", HDX_MATCH_VALUE_MAX);
            buf[k++] = ch;
            c->pos++;
        }
        if (k == 0) return bad(c, start, "empty value");
    } else {
        while (!ends_bare(c, c->pos)) {
            if (k == HDX_MATCH_VALUE_MAX)
                return bad(c, start, "value longer than %d bytes", HDX_MATCH_VALUE_MAX);
            buf[k++] = c->s[c->pos++];
        }
        if (k == 0) return bad(c, start, "expected a value");
    }
    buf[k] = 0;
    *n = k;
    return 0;
}

/* A number 1-999 without leading zeros. */
static int parse_num(struct cc *c, uint16_t *out)
{
    size_t start = c->pos;
    unsigned v = 0;
    while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
        if (c->pos - start == 3) break;
        v = v * 10 + (unsigned)(c->s[c->pos] - '0');
        c->pos++;
    }
    if (c->pos == start) return bad(c, start, "expected a number");
    if (c->s[start] == '0' || (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9'))
        return bad(c, start, "numbers are 1-%d without leading zeros", HDX_MATCH_NUM_MAX);
    *out = (uint16_t)v;
    return 0;
}

static int is_seg_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static int is_alnum(char ch)
{
    return is_seg_char(ch) || (ch >= 'a' && ch <= 'z');
}

/* Does a FIELD start at pos: three letters or digits, then '-' or '['. */
static int looks_like_field(struct cc *c)
{
    const char *p = c->s + c->pos;
    return c->len - c->pos >= 4 && is_alnum(p[0]) && is_alnum(p[1]) && is_alnum(p[2]) &&
           (p[3] == '-' || p[3] == '[');
}

static int parse_field(struct cc *c, struct pred *p)
{
    size_t start = c->pos;
    for (int i = 0; i < 3; i++)
        if (!is_seg_char(c->s[c->pos + (size_t)i]))
            return bad(c, start, "a segment id is three upper-case letters or digits, not '%.3s'",
                       c->s + start);
    memcpy(p->seg, c->s + start, 3);
    p->seg[3] = 0;
    c->pos += 3;
    if (c->s[c->pos] == '[') {
        c->pos++;
        if (parse_num(c, &p->occ)) return -1;
        if (c->pos >= c->len || c->s[c->pos] != ']') return bad(c, c->pos, "expected ']'");
        c->pos++;
    }
    if (c->pos >= c->len || c->s[c->pos] != '-')
        return bad(c, c->pos, "expected '-' and a field number");
    c->pos++;
    if (parse_num(c, &p->field)) return -1;
    if (c->pos < c->len && c->s[c->pos] == '.') {
        c->pos++;
        if (parse_num(c, &p->comp)) return -1;
        if (c->pos < c->len && c->s[c->pos] == '.') {
            c->pos++;
            if (parse_num(c, &p->sub)) return -1;
        }
    }
    if (strcmp(p->seg, "MSH") == 0 && p->field <= 2)
        return bad(c, start, "MSH-1 and MSH-2 are the delimiters and cannot be matched");
    return 0;
}

/* What follows a FIELD: = VALUE, != VALUE, in (VALUE, ...), exists. */
static int parse_field_op(struct cc *c, struct pred *p, size_t fstart)
{
    char v[HDX_MATCH_VALUE_MAX + 1];
    size_t n, vstart;
    skip_ws(c);
    int eq = c->pos < c->len && c->s[c->pos] == '=';
    int ne = c->len - c->pos >= 2 && c->s[c->pos] == '!' && c->s[c->pos + 1] == '=';
    if (eq || ne) {
        p->kind = eq ? P_EQ : P_NE;
        c->pos += eq ? 1 : 2;
        skip_ws(c);
        vstart = c->pos;
        if (parse_value(c, v, &n)) return -1;
        int i = add_value(c, v, n, vstart);
        if (i < 0) return -1;
        p->first = (uint16_t)i;
        p->count = 1;
        return 0;
    }
    if (kw(c, "exists")) {
        p->kind = P_EXISTS;
        return 0;
    }
    if (!kw(c, "in"))
        return bad(c, c->pos, "expected '=', '!=', 'in' or 'exists' after the field %.*s",
                   (int)(c->pos - fstart), c->s + fstart);
    p->kind = P_IN;
    skip_ws(c);
    if (c->pos >= c->len || c->s[c->pos] != '(') return bad(c, c->pos, "expected '(' after 'in'");
    c->pos++;
    p->first = c->m->nvals;
    for (;;) {
        skip_ws(c);
        vstart = c->pos;
        if (p->count == HDX_MATCH_IN_MAX)
            return bad(c, vstart, "more than %d values in an 'in' list", HDX_MATCH_IN_MAX);
        if (parse_value(c, v, &n) || add_value(c, v, n, vstart) < 0) return -1;
        p->count++;
        skip_ws(c);
        if (c->pos < c->len && c->s[c->pos] == ',') {
            c->pos++;
            continue;
        }
        if (c->pos < c->len && c->s[c->pos] == ')') {
            c->pos++;
            return 0;
        }
        return bad(c, c->pos, "expected ',' or ')' in the 'in' list");
    }
}

/* A message code or trigger: letters, digits, '_' and '-' (what hl7_parse admits in MSH-9). */
static int code_ok(const char *v, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(v[i]) && v[i] != '_' && v[i] != '-') return 0;
    return 1;
}

static int parse_type(struct cc *c, struct pred *p, const char *v, size_t n, size_t at)
{
    const char *caret = memchr(v, '^', n);
    size_t cn = caret ? (size_t)(caret - v) : n;
    const char *t = caret ? caret + 1 : "*";
    size_t tn = caret ? n - cn - 1 : 1;
    if (memchr(t, '^', tn)) return bad(c, at, "a type is MSG or MSG^TRG");
    if (!(cn == 1 && v[0] == '*') && !code_ok(v, cn))
        return bad(c, at, "a message code is '*' or letters, digits, '_' and '-'");
    if (!(tn == 1 && t[0] == '*') && !code_ok(t, tn))
        return bad(c, at, "a trigger is '*' or letters, digits, '_' and '-'");
    int i = add_value(c, v, v[0] == '*' ? 0 : cn, at);
    if (i < 0 || add_value(c, t, t[0] == '*' ? 0 : tn, at) < 0) return -1;
    p->first = (uint16_t)i;
    p->count = 2;
    return 0;
}

/* "type:", "trigger:", "sender:", "patient:" and their value. */
static int parse_keyed(struct cc *c, struct pred *p, enum pkind kind)
{
    char v[HDX_MATCH_VALUE_MAX + 1];
    size_t n, at = c->pos;
    if (ends_bare(c, c->pos) && (c->pos >= c->len || c->s[c->pos] != '"'))
        return bad(c, c->pos, "expected a value right after ':'");
    if (parse_value(c, v, &n)) return -1;
    p->kind = (uint8_t)kind;
    if (kind == P_TYPE) return parse_type(c, p, v, n, at);
    if (kind == P_TRIGGER && !code_ok(v, n))
        return bad(c, at, "a trigger is letters, digits, '_' and '-'");
    if (kind == P_SENDER && v[n - 1] == '*') {
        p->prefix = 1;
        n--;
    }
    int i = add_value(c, v, n, at);
    if (i < 0) return -1;
    p->first = (uint16_t)i;
    p->count = 1;
    return 0;
}

static int parse_pred(struct cc *c)
{
    static const struct {
        const char *kw;
        enum pkind kind;
    } keyed[] = {
        {"type:", P_TYPE}, {"trigger:", P_TRIGGER}, {"sender:", P_SENDER}, {"patient:", P_PATIENT}};
    size_t start = c->pos;
    struct hdx_match *m = c->m;
    if (m->npreds == HDX_MATCH_PRED_MAX)
        return bad(c, start, "more than %d predicates", HDX_MATCH_PRED_MAX);
    struct pred *p = &m->preds[m->npreds];
    memset(p, 0, sizeof(*p));
    int rc = 1; /* 1: not recognised yet */
    if (c->s[c->pos] == '*' && ends_kw(c, c->pos + 1)) {
        c->pos++;
        p->kind = P_ALL;
        rc = 0;
    } else if (kw(c, "all")) {
        p->kind = P_ALL;
        rc = 0;
    }
    for (size_t i = 0; rc == 1 && i < sizeof(keyed) / sizeof(keyed[0]); i++) {
        size_t kn = strlen(keyed[i].kw);
        if (ieq_prefix(c, keyed[i].kw, kn)) {
            c->pos += kn;
            rc = parse_keyed(c, p, keyed[i].kind);
        }
    }
    if (rc == 1 && looks_like_field(c)) rc = parse_field(c, p) ? -1 : parse_field_op(c, p, start);
    if (rc == 1) {
        if (ends_bare(c, c->pos))
            return c->pos >= c->len
                       ? bad(c, c->pos, "expected a predicate at the end")
                       : bad(c, c->pos, "expected a predicate, not '%c'", c->s[c->pos]);
        size_t n = 0;
        while (!ends_bare(c, c->pos + n) && c->s[c->pos + n] != ':' && n < QUOTE_MAX)
            n++;
        if (c->pos + n < c->len && c->s[c->pos + n] == ':') n++;
        if ((n == 3 && ieq_prefix(c, "and", 3)) || (n == 2 && ieq_prefix(c, "or", 2)))
            return bad(c, start, "expected a predicate before '%.*s'", (int)n, c->s + start);
        return bad(c, start, "unknown keyword '%.*s'", (int)n, c->s + start);
    }
    if (rc < 0) return -1;
    int node = new_node(c, N_PRED, start);
    if (node < 0) return -1;
    c->nodes[node].pred = m->npreds++;
    return node;
}

static int parse_or(struct cc *c);

static int parse_unary(struct cc *c)
{
    skip_ws(c);
    size_t start = c->pos;
    if (c->pos >= c->len) return bad(c, c->pos, "expected a predicate at the end");
    int is_not = kw(c, "not");
    if (is_not || c->s[c->pos] == '(') {
        if (c->depth == HDX_MATCH_DEPTH_MAX)
            return bad(c, start, "nesting deeper than %d", HDX_MATCH_DEPTH_MAX);
        c->depth++;
        int inner;
        if (is_not) {
            int child = parse_unary(c);
            inner = child < 0 ? -1 : new_node(c, N_NOT, start);
            if (inner >= 0) add_child(c, inner, child);
        } else {
            c->pos++;
            inner = parse_or(c);
            skip_ws(c);
            if (inner >= 0 && (c->pos >= c->len || c->s[c->pos] != ')'))
                return bad(c, c->pos, "expected ')' to close the '(' at column %zu", start + 1);
            c->pos++;
        }
        c->depth--;
        return inner;
    }
    return parse_pred(c);
}

/* and = unary *("and" unary), or likewise: one node only when there are two or more. */
static int parse_list(struct cc *c, enum nkind kind)
{
    const char *word = kind == N_AND ? "and" : "or";
    size_t start = c->pos;
    int first = kind == N_AND ? parse_unary(c) : parse_list(c, N_AND);
    if (first < 0) return -1;
    skip_ws(c);
    if (!kw(c, word)) return first;
    int n = new_node(c, kind, start);
    if (n < 0) return -1;
    add_child(c, n, first);
    do {
        int next = kind == N_AND ? parse_unary(c) : parse_list(c, N_AND);
        if (next < 0) return -1;
        add_child(c, n, next);
        skip_ws(c);
    } while (kw(c, word));
    return n;
}

static int parse_or(struct cc *c)
{
    return parse_list(c, N_OR);
}

static int emit(struct cc *c, enum op op, uint16_t arg)
{
    struct hdx_match *m = c->m;
    if (m->ninsns == INSN_MAX) return bad(c, 0, "expression too complex");
    m->insns[m->ninsns].op = (uint8_t)op;
    m->insns[m->ninsns].arg = arg;
    return m->ninsns++;
}

/* The program of a node. and: each child, then "false? jump to the end" between them; or
 * alike with "true?". Recursion is bounded by the tree's depth (HDX_MATCH_DEPTH_MAX). */
static int gen(struct cc *c, int ni)
{
    const struct node *n = &c->nodes[ni];
    if (n->kind == N_PRED) return emit(c, OP_PRED, n->pred) < 0 ? -1 : 0;
    if (n->kind == N_NOT) return gen(c, n->first) || emit(c, OP_NOT, 0) < 0 ? -1 : 0;
    int jumps[HDX_MATCH_PRED_MAX]; /* each child holds at least one predicate */
    size_t nj = 0;
    for (int ch = n->first; ch >= 0; ch = c->nodes[ch].next) {
        if (gen(c, ch)) return -1;
        if (c->nodes[ch].next >= 0) {
            int j = emit(c, n->kind == N_AND ? OP_JF : OP_JT, 0);
            if (j < 0 || nj == HDX_MATCH_PRED_MAX) return -1;
            jumps[nj++] = j;
        }
    }
    for (size_t i = 0; i < nj; i++)
        c->m->insns[jumps[i]].arg = c->m->ninsns;
    return 0;
}

/* ---- the canonical text --------------------------------------------------------------- */

static void put(struct cc *c, const char *s, size_t n)
{
    if (c->out_over || n > HDX_MATCH_TEXT_MAX - c->out_len) {
        c->out_over = 1;
        return;
    }
    memcpy(c->m->canon + c->out_len, s, n);
    c->out_len += n;
}

static void puts_(struct cc *c, const char *s)
{
    put(c, s, strlen(s));
}

static void put_value(struct cc *c, const char *v, size_t n, int star)
{
    int quote = 0;
    for (size_t i = 0; i < n; i++)
        if (is_ws(v[i]) || v[i] == '(' || v[i] == ')' || v[i] == ',' || v[i] == '"') quote = 1;
    if (!quote) {
        put(c, v, n);
        if (star) put(c, "*", 1);
        return;
    }
    put(c, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\') put(c, "\\", 1);
        put(c, v + i, 1);
    }
    if (star) put(c, "*", 1);
    put(c, "\"", 1);
}

static void put_val(struct cc *c, uint16_t vi, int star)
{
    const struct val *v = &c->m->vals[vi];
    put_value(c, c->m->pool + v->off, v->len, star);
}

static void put_num(struct cc *c, const char *before, unsigned v)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "%s%u", before, v);
    put(c, b, (size_t)n);
}

static void describe_pred(struct cc *c, const struct pred *p)
{
    const struct hdx_match *m = c->m;
    switch (p->kind) {
    case P_ALL:
        puts_(c, "*");
        return;
    case P_TYPE: {
        const struct val *code = &m->vals[p->first], *trg = &m->vals[p->first + 1];
        puts_(c, "type:");
        if (code->len)
            put(c, m->pool + code->off, code->len);
        else
            puts_(c, "*");
        if (trg->len) {
            puts_(c, "^");
            put(c, m->pool + trg->off, trg->len);
        }
        return;
    }
    case P_TRIGGER:
    case P_SENDER:
    case P_PATIENT:
        puts_(c, p->kind == P_TRIGGER ? "trigger:" : p->kind == P_SENDER ? "sender:" : "patient:");
        put_val(c, p->first, p->prefix);
        return;
    default:
        break;
    }
    puts_(c, p->seg);
    if (p->occ) {
        put_num(c, "[", p->occ);
        puts_(c, "]");
    }
    put_num(c, "-", p->field);
    if (p->comp) put_num(c, ".", p->comp);
    if (p->sub) put_num(c, ".", p->sub);
    if (p->kind == P_EXISTS) {
        puts_(c, " exists");
        return;
    }
    if (p->kind != P_IN) {
        puts_(c, p->kind == P_EQ ? " = " : " != ");
        put_val(c, p->first, 0);
        return;
    }
    puts_(c, " in (");
    for (uint16_t i = 0; i < p->count; i++) {
        if (i) puts_(c, ", ");
        put_val(c, (uint16_t)(p->first + i), 0);
    }
    puts_(c, ")");
}

/* Parentheses only where precedence needs them: an or inside an and or a not, an and inside
 * a not. */
static void describe(struct cc *c, int ni)
{
    const struct node *n = &c->nodes[ni];
    if (n->kind == N_PRED) {
        describe_pred(c, &c->m->preds[n->pred]);
        return;
    }
    for (int ch = n->first; ch >= 0; ch = c->nodes[ch].next) {
        const struct node *k = &c->nodes[ch];
        int paren = k->kind == N_OR || (n->kind == N_NOT && k->kind == N_AND);
        if (n->kind == N_NOT) puts_(c, "not ");
        if (ch != n->first) puts_(c, n->kind == N_AND ? " and " : " or ");
        if (paren) puts_(c, "(");
        describe(c, ch);
        if (paren) puts_(c, ")");
    }
}

int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap)
{
    int rc = HDX_E_INVAL;
    if (err != NULL && err_cap > 0) err[0] = 0;
    if (out == NULL) return HDX_E_INVAL;
    *out = NULL;
    struct cc *c = calloc(1, sizeof(*c));
    struct hdx_match *m = calloc(1, sizeof(*m));
    if (c == NULL || m == NULL) {
        free(c);
        free(m);
        if (err != NULL && err_cap > 0) snprintf(err, err_cap, "column 1: out of memory");
        return HDX_E_NOMEM;
    }
    c->s = text != NULL ? text : "";
    c->len = strnlen(c->s, HDX_MATCH_TEXT_MAX + 1);
    c->m = m;
    c->err = err;
    c->err_cap = err_cap;
    if (c->len > HDX_MATCH_TEXT_MAX) {
        bad(c, HDX_MATCH_TEXT_MAX, "expression longer than %d bytes", HDX_MATCH_TEXT_MAX);
        goto out;
    }
    for (size_t i = 0; i < c->len; i++) {
        unsigned char ch = (unsigned char)c->s[i];
        if ((ch < 0x20 && !is_ws((char)ch)) || ch == 0x7f) {
            bad(c, i, "control byte 0x%02x", ch);
            goto out;
        }
    }
    skip_ws(c);
    if (c->pos == c->len) {
        bad(c, c->pos, "empty expression");
        goto out;
    }
    int root = parse_or(c);
    if (root < 0) goto out;
    skip_ws(c);
    if (c->pos < c->len) {
        bad(c, c->pos, "unexpected '%.*s' (expected 'and', 'or' or the end)", quote_len(c, c->pos),
            c->s + c->pos);
        goto out;
    }
    if (gen(c, root)) {
        bad(c, 0, "expression too complex");
        goto out;
    }
    describe(c, root);
    if (c->out_over) {
        bad(c, 0, "canonical form longer than %d bytes", HDX_MATCH_TEXT_MAX);
        goto out;
    }
    m->canon[c->out_len] = 0;
    m->canon_len = c->out_len;
    m->index_only = 1;
    for (uint16_t i = 0; i < m->npreds; i++)
        if (m->preds[i].kind > P_SENDER) m->index_only = 0;
    *out = m;
    m = NULL;
    rc = HDX_OK;
out:
    free(m);
    free(c);
    return rc;
}

void hdx_match_free(struct hdx_match *m)
{
    free(m);
}

int hdx_match_index_only(const struct hdx_match *m)
{
    return m != NULL && m->index_only;
}

int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap)
{
    if (m == NULL || out == NULL || cap <= m->canon_len) {
        if (out != NULL && cap > 0) out[0] = 0;
        return -1;
    }
    memcpy(out, m->canon, m->canon_len + 1);
    return (int)m->canon_len;
}

/* ---- evaluating ----------------------------------------------------------------------- */

struct facts {
    const char *code, *trig, *sender;
    size_t code_len, trig_len, sender_len;
    const struct hl7_msg *msg; /* NULL: index only */
};

static int val_eq(const struct hdx_match *m, uint16_t vi, const char *s, size_t n)
{
    const struct val *v = &m->vals[vi];
    return v->len == n && memcmp(m->pool + v->off, s, n) == 0;
}

/* The n-th (1-based) sep-separated part of *v, as hl7_get narrows a field; 0 when absent. */
static int nth_part(const uint8_t *d, struct hl7_view *v, unsigned n, char sep)
{
    uint32_t start = v->off, end = v->off + v->len;
    if (n == 0) return 1; /* the whole */
    for (unsigned k = 1; k < n; k++) {
        const uint8_t *q = memchr(d + start, (uint8_t)sep, end - start);
        if (q == NULL) return 0;
        start = (uint32_t)(q - d) + 1;
    }
    const uint8_t *q = memchr(d + start, (uint8_t)sep, end - start);
    v->off = start;
    v->len = (q != NULL ? (uint32_t)(q - d) : end) - start;
    return 1;
}

static int value_holds(const struct hdx_match *m, const struct pred *p, const struct hl7_msg *one,
                       struct hl7_view v)
{
    if (v.len == 0) return 0;
    if (p->kind == P_EXISTS) return 1;
    char buf[HDX_MATCH_VALUE_MAX + 1]; /* longer cannot equal a value */
    int n = hl7_unescape(one, v, buf, sizeof(buf));
    if (n <= 0) return 0;
    for (uint16_t i = 0; i < p->count; i++)
        if (val_eq(m, (uint16_t)(p->first + i), buf, (size_t)n)) return 1;
    return 0;
}

/* One segment (one holds just it): hl7_get finds the field and its first repetition; the
 * repetitions, components and sub-components are then split here, in one pass, because asking
 * hl7_get for repetition r walks r - 1 repetitions and would make a field of many repetitions
 * quadratic. The splitting is hl7_get's own (field_part), test_match checks they agree. */
static int segment_holds(const struct hdx_match *m, const struct pred *p, const struct hl7_msg *one,
                         const struct hl7_seg *s)
{
    struct hl7_view r;
    if (hl7_get(one, p->seg, 1, p->field, 1, 0, 0, &r) != 0) return 0;
    const uint8_t *d = one->data;
    uint32_t seg_end = s->off + s->len;
    const uint8_t *fe = memchr(d + r.off, (uint8_t)one->d.field, seg_end - r.off);
    uint32_t field_end = fe != NULL ? (uint32_t)(fe - d) : seg_end, start = r.off;
    for (;;) {
        const uint8_t *re = memchr(d + start, (uint8_t)one->d.rep, field_end - start);
        struct hl7_view v = {start, (re != NULL ? (uint32_t)(re - d) : field_end) - start};
        if (nth_part(d, &v, p->comp, one->d.comp) && nth_part(d, &v, p->sub, one->d.sub) &&
            value_holds(m, p, one, v))
            return 1;
        if (re == NULL) return 0;
        start = (uint32_t)(re - d) + 1;
    }
}

/* =, !=, in, exists before any negation: some occurrence (or occurrence N) holds. Each
 * occurrence is read through a one-segment view of the message, so the whole walk is linear. */
static int field_holds(const struct hdx_match *m, const struct pred *p, const struct hl7_msg *msg)
{
    if (msg == NULL || msg->data == NULL || msg->segs == NULL) return 0;
    struct hl7_msg one = {.data = msg->data, .len = msg->len, .d = msg->d, .nsegs = 1};
    unsigned seen = 0;
    for (size_t i = 0; i < msg->nsegs; i++) {
        const struct hl7_seg *s = &msg->segs[i];
        if (s->len < 3 || memcmp(msg->data + s->off, p->seg, 3) != 0) continue;
        seen++;
        if (p->occ != 0 && seen != p->occ) continue;
        one.segs = msg->segs + i;
        if (segment_holds(m, p, &one, s)) return 1;
        if (p->occ != 0) return 0;
    }
    return 0;
}

static int pred_holds(const struct hdx_match *m, const struct pred *p, const struct facts *f)
{
    const struct val *v = &m->vals[p->first];
    switch (p->kind) {
    case P_ALL:
        return 1;
    case P_TYPE:
        return (v[0].len == 0 || val_eq(m, p->first, f->code, f->code_len)) &&
               (v[1].len == 0 || val_eq(m, (uint16_t)(p->first + 1), f->trig, f->trig_len));
    case P_TRIGGER:
        return val_eq(m, p->first, f->trig, f->trig_len);
    case P_SENDER:
        if (p->prefix)
            return f->sender_len >= v->len && memcmp(m->pool + v->off, f->sender, v->len) == 0;
        return val_eq(m, p->first, f->sender, f->sender_len);
    case P_PATIENT:
        return f->msg != NULL && val_eq(m, p->first, f->msg->patient_id,
                                        strnlen(f->msg->patient_id, sizeof(f->msg->patient_id)));
    case P_NE:
        return !field_holds(m, p, f->msg);
    default:
        return field_holds(m, p, f->msg);
    }
}

static int run(const struct hdx_match *m, const struct facts *f)
{
    int acc = 0;
    for (size_t pc = 0; pc < m->ninsns; pc++) {
        const struct insn *in = &m->insns[pc];
        switch (in->op) {
        case OP_PRED:
            acc = pred_holds(m, &m->preds[in->arg], f);
            break;
        case OP_NOT:
            acc = !acc;
            break;
        case OP_JF:
            if (!acc) pc = (size_t)in->arg - 1; /* forward: arg > pc */
            break;
        default:
            if (acc) pc = (size_t)in->arg - 1;
            break;
        }
    }
    return acc;
}

static void split_type(const char *type, size_t cap, struct facts *f)
{
    size_t n = strnlen(type, cap);
    const char *caret = memchr(type, '^', n);
    f->code = type;
    f->code_len = caret != NULL ? (size_t)(caret - type) : n;
    f->trig = caret != NULL ? caret + 1 : "";
    f->trig_len = caret != NULL ? n - f->code_len - 1 : 0;
}

int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender)
{
    struct facts f = {.sender = sender != NULL ? sender : "", .msg = msg};
    if (m == NULL) return 0;
    f.sender_len = strlen(f.sender);
    if (msg != NULL) {
        /* From msg_type, as the index holds it, not from msg->trigger: when a message's
         * component separator is not '^', MSH-9.1 may hold a '^' ("ADT^A01" with "(~\&"),
         * and the decision must not change with whether the engine read the index. */
        split_type(msg->msg_type, sizeof(msg->msg_type), &f);
    } else {
        f.code = f.trig = "";
    }
    return run(m, &f);
}

int hdx_match_eval_index(const struct hdx_match *m, const char *type, const char *sender)
{
    struct facts f = {.sender = sender != NULL ? sender : ""};
    if (m == NULL || !m->index_only) return -1;
    f.sender_len = strlen(f.sender);
    split_type(type != NULL ? type : "", HDX_MATCH_TEXT_MAX, &f);
    return run(m, &f);
}
