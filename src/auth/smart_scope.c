#include "auth/smart_scope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static const char *const contexts[] = {"patient", "user", "system"};
static const char letters[] = "cruds";

static int term_cmp(const void *a, const void *b)
{
    const struct hdx_smart_term *x = a, *y = b;
    if (x->context != y->context) return x->context < y->context ? -1 : 1;
    return strcmp(x->type, y->type);
}

/* Adds (context, type, perms) to s, merging with an existing term; 0 when s is full. */
static int add_term(struct hdx_smart_scopes *s, enum hdx_smart_context ctx, const char *type,
                    size_t tlen, unsigned perms)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->t[i].context == ctx && strlen(s->t[i].type) == tlen &&
            memcmp(s->t[i].type, type, tlen) == 0) {
            s->t[i].perms |= perms;
            return 1;
        }
    if (s->n == HDX_SMART_SCOPE_CAP) return 0;
    struct hdx_smart_term *t = &s->t[s->n++];
    t->context = ctx;
    memcpy(t->type, type, tlen);
    t->type[tlen] = 0;
    t->perms = perms;
    return 1;
}

static void canonical(struct hdx_smart_scopes *s)
{
    qsort(s->t, s->n, sizeof(s->t[0]), term_cmp);
}

static int type_valid(const char *p, size_t n)
{
    if (n == 1 && p[0] == '*') return 1;
    if (n == 0 || n > HDX_SMART_SCOPE_TYPE_MAX || p[0] < 'A' || p[0] > 'Z') return 0;
    for (size_t i = 1; i < n; i++)
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z'))) return 0;
    return 1;
}

/* v2 letters in order, or a v1 word; the bits, or 0. */
static unsigned perms_of(const char *p, size_t n)
{
    if (n == 4 && memcmp(p, "read", 4) == 0) return HDX_SMART_R | HDX_SMART_S;
    if (n == 5 && memcmp(p, "write", 5) == 0) return HDX_SMART_C | HDX_SMART_U | HDX_SMART_D;
    if (n == 1 && p[0] == '*') return HDX_SMART_ALL;
    unsigned bits = 0;
    size_t at = 0; /* the next letter allowed starts at letters[at] */
    for (size_t i = 0; i < n; i++) {
        const char *l = memchr(letters + at, p[i], sizeof(letters) - 1 - at);
        if (!l || !p[i]) return 0;
        at = (size_t)(l - letters) + 1;
        bits |= 1u << (at - 1);
    }
    return bits;
}

/* One term; NULL or the refusal code. */
static const char *parse_term(const char *p, size_t n, struct hdx_smart_scopes *s)
{
    if (n == 0) return "empty_term";
    const char *slash = memchr(p, '/', n);
    if (!slash) return "bad_context";
    size_t cl = (size_t)(slash - p);
    int ctx = -1;
    for (int i = 0; i < 3; i++)
        if (strlen(contexts[i]) == cl && memcmp(contexts[i], p, cl) == 0) ctx = i;
    if (ctx < 0) return "bad_context";
    const char *type = slash + 1, *end = p + n;
    const char *dot = memchr(type, '.', (size_t)(end - type));
    if (!dot || !type_valid(type, (size_t)(dot - type))) return "bad_resource";
    unsigned perms = perms_of(dot + 1, (size_t)(end - dot - 1));
    if (!perms) return "bad_permissions";
    if (!add_term(s, (enum hdx_smart_context)ctx, type, (size_t)(dot - type), perms))
        return "too_many_terms";
    return NULL;
}

int hdx_smart_scope_parse(const char *text, size_t len, struct hdx_smart_scopes *out, char *why,
                          size_t cap)
{
    if (out) memset(out, 0, sizeof(*out));
    if (!out || (!text && len)) {
        if (why && cap) snprintf(why, cap, "bad_argument");
        return HDX_E_INVAL;
    }
    if (len > HDX_SMART_SCOPE_IN_MAX) {
        if (why && cap) snprintf(why, cap, "too_long");
        return HDX_E_TOOBIG;
    }
    size_t pos = 0, term = 0;
    while (len && pos <= len) {
        const char *sp = memchr(text + pos, ' ', len - pos);
        size_t n = sp ? (size_t)(sp - (text + pos)) : len - pos;
        if (++term > HDX_SMART_SCOPE_TERMS_MAX) {
            memset(out, 0, sizeof(*out));
            if (why && cap) snprintf(why, cap, "too_many_terms");
            return HDX_E_TOOBIG;
        }
        const char *bad = parse_term(text + pos, n, out);
        if (bad) {
            memset(out, 0, sizeof(*out));
            if (why && cap) snprintf(why, cap, "term %zu: %s", term, bad);
            return HDX_E_INVAL;
        }
        pos += n + 1;
    }
    canonical(out);
    if (why && cap) why[0] = 0;
    return HDX_OK;
}

int hdx_smart_scope_allows(const struct hdx_smart_scopes *s, const char *context,
                           const char *resource_type, char interaction)
{
    if (!s || !context || !resource_type || s->n > HDX_SMART_SCOPE_CAP) return 0;
    const char *l = interaction ? strchr(letters, interaction) : NULL;
    if (!l) return 0;
    unsigned bit = 1u << (l - letters);
    int ctx = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(contexts[i], context) == 0) ctx = i;
    if (ctx < 0) return 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct hdx_smart_term *t = &s->t[i];
        if ((int)t->context == ctx && (t->perms & bit) &&
            (strcmp(t->type, "*") == 0 || strcmp(t->type, resource_type) == 0))
            return 1;
    }
    return 0;
}

int hdx_smart_scope_intersect(const struct hdx_smart_scopes *requested,
                              const struct hdx_smart_scopes *granted, struct hdx_smart_scopes *out)
{
    if (!requested || !granted || !out || out == requested || out == granted ||
        requested->n > HDX_SMART_SCOPE_CAP || granted->n > HDX_SMART_SCOPE_CAP)
        return HDX_E_INVAL;
    memset(out, 0, sizeof(*out));
    if (requested->n == 0) {
        *out = *granted;
        canonical(out);
        return HDX_OK;
    }
    for (size_t i = 0; i < requested->n; i++) {
        const struct hdx_smart_term *r = &requested->t[i];
        for (size_t j = 0; j < granted->n; j++) {
            const struct hdx_smart_term *g = &granted->t[j];
            unsigned common = r->perms & g->perms;
            if (g->context != r->context || !common) continue;
            const char *type;
            if (strcmp(g->type, "*") == 0)
                type = r->type;
            else if (strcmp(r->type, "*") == 0 || strcmp(r->type, g->type) == 0)
                type = g->type;
            else
                continue;
            /* Each type named comes from one side or the other: at most twice the terms. */
            if (!add_term(out, r->context, type, strlen(type), common)) {
                memset(out, 0, sizeof(*out));
                return HDX_E_TOOBIG;
            }
        }
    }
    canonical(out);
    return HDX_OK;
}

int hdx_smart_scope_format(const struct hdx_smart_scopes *s, char *out, size_t cap)
{
    if (!s || !out || cap == 0 || s->n > HDX_SMART_SCOPE_CAP) return HDX_E_INVAL;
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < s->n; i++) {
        char p[6];
        size_t k = 0;
        for (size_t b = 0; b < 5; b++)
            if (s->t[i].perms & (1u << b)) p[k++] = letters[b];
        p[k] = 0;
        int n = snprintf(out + o, cap - o, "%s%s/%s.%s", i ? " " : "", contexts[s->t[i].context],
                         s->t[i].type, p);
        if (n < 0 || (size_t)n >= cap - o) {
            out[0] = 0;
            return HDX_E_TOOBIG;
        }
        o += (size_t)n;
    }
    return HDX_OK;
}
