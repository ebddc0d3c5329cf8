#include "policy/scope.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

/* An operator's text longer than this cannot make a canonical scope of HDX_SCOPE_TEXT_MAX
 * bytes with HDX_SCOPE_VALUES_MAX patients of HDX_SCOPE_PATIENT_ID_MAX bytes; refused before
 * any work. */
#define OPERATOR_MAX (3 * HDX_SCOPE_VALUES_MAX * (HDX_SCOPE_PATIENT_ID_MAX + 1) + 64)

_Static_assert(HDX_DEVICE_SCOPE_MAX == HDX_SCOPE_TEXT_MAX, "the store holds a whole scope");

enum key { K_TYPE, K_SENDER, K_PATIENT, K_COUNT };
static const char *const key_names[K_COUNT] = {"type", "sender", "patient"};

/* The key of the term t[0..n) and where its values start; K_COUNT when none. */
static enum key term_key(const char *t, size_t n, size_t *vstart)
{
    for (int k = 0; k < K_COUNT; k++) {
        size_t kl = strlen(key_names[k]);
        if (n > kl && memcmp(t, key_names[k], kl) == 0 && t[kl] == '=') {
            *vstart = kl + 1;
            return (enum key)k;
        }
    }
    return K_COUNT;
}

/* A type or sender value: printable, no ',' '=' '*', except a sender's final '*' after at
 * least one byte. */
static int name_value_ok(enum key k, const char *v, size_t n)
{
    size_t max = k == K_TYPE ? HDX_TYPE_MAX : HDX_SENDER_MAX;
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '*' && k == K_SENDER && i == n - 1 && n >= 2) continue;
        if (c < 0x21 || c > 0x7e || c == ',' || c == '=' || c == '*') return 0;
    }
    return 1;
}

static int lower_hex(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) return 0;
    return 1;
}

/* Span compare: bytewise, a shorter prefix first (strcmp's order on NUL-free strings). */
static int span_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

int hdx_scope_parse(const char *canon, size_t len, struct hdx_scope *out)
{
    memset(out, 0, sizeof(*out));
    if (!canon || len == 0 || len > HDX_SCOPE_TEXT_MAX || memchr(canon, 0, len)) goto bad;
    int last_key = -1;
    size_t pos = 0;
    while (pos < len) {
        if (pos > 0) {
            if (canon[pos] != ' ') goto bad;
            pos++;
        }
        const char *t = canon + pos;
        const char *sp = memchr(t, ' ', len - pos);
        size_t tn = sp ? (size_t)(sp - t) : len - pos, vs = 0;
        enum key k = term_key(t, tn, &vs);
        if (k == K_COUNT || (int)k <= last_key) goto bad; /* unknown, repeated or reordered */
        last_key = (int)k;
        const char *prev = NULL;
        size_t prevn = 0, count = 0;
        for (size_t i = vs; i <= tn;) {
            const char *v = t + i;
            const char *comma = memchr(v, ',', tn - i);
            size_t vn = comma ? (size_t)(comma - v) : tn - i;
            if (count == HDX_SCOPE_VALUES_MAX) goto bad;
            if (k == K_PATIENT) {
                if (vn != 2 * HDX_BLIND_LEN || !lower_hex(v, vn)) goto bad;
                char hex[2 * HDX_BLIND_LEN + 1];
                memcpy(hex, v, vn);
                hex[vn] = 0;
                if (hdx_unhex(hex, out->patients[count], HDX_BLIND_LEN) != 0) goto bad;
            } else {
                if (!name_value_ok(k, v, vn)) goto bad;
                char *dst = k == K_TYPE ? out->types[count] : out->senders[count];
                memcpy(dst, v, vn);
                dst[vn] = 0;
            }
            if (prev && span_cmp(prev, prevn, v, vn) >= 0) goto bad; /* ascending, unique */
            prev = v;
            prevn = vn;
            count++;
            if (!comma) break;
            i += vn + 1;
            if (i == tn) goto bad; /* a trailing comma */
        }
        if (k == K_TYPE) out->ntypes = count;
        if (k == K_SENDER) out->nsenders = count;
        if (k == K_PATIENT) out->npatients = count;
        pos += tn;
    }
    return HDX_OK;
bad:
    sodium_memzero(out, sizeof(*out));
    return HDX_E_INVAL;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One key's values (already checked) sorted, unique, joined into out at *off. */
static int append_values(char **vals, size_t n, const char *key, char *out, size_t cap, size_t *off)
{
    qsort(vals, n, sizeof(*vals), str_cmp);
    int w = snprintf(out + *off, cap - *off, "%s%s=", *off ? " " : "", key);
    if (w < 0 || (size_t)w >= cap - *off) return -1;
    *off += (size_t)w;
    for (size_t i = 0; i < n; i++) {
        if (i && !strcmp(vals[i], vals[i - 1])) continue;
        w = snprintf(out + *off, cap - *off, "%s%s", out[*off - 1] == '=' ? "" : ",", vals[i]);
        if (w < 0 || (size_t)w >= cap - *off) return -1;
        *off += (size_t)w;
    }
    return 0;
}

struct op_state {
    char *vals[K_COUNT][HDX_SCOPE_VALUES_MAX];
    size_t n[K_COUNT];
    /* patients, blinded and in hex; types and senders point into names */
    char hex[HDX_SCOPE_VALUES_MAX][2 * HDX_BLIND_LEN + 1];
    char names[2][HDX_SCOPE_VALUES_MAX][HDX_SENDER_MAX + 1];
};

static int fail(char *why, size_t cap, const char *text)
{
    snprintf(why, cap, "%s", text);
    return HDX_E_INVAL;
}

static int operator_value(struct op_state *st, enum key k, const char *v, size_t vn,
                          const struct hdx_keyring *kr, char *why, size_t why_cap)
{
    size_t i = st->n[k];
    if (vn == 0) return fail(why, why_cap, "a value is empty (two commas, or one at an end)");
    if (i == HDX_SCOPE_VALUES_MAX) {
        snprintf(why, why_cap, "more than %d values for %s", HDX_SCOPE_VALUES_MAX, key_names[k]);
        return HDX_E_INVAL;
    }
    if (k == K_PATIENT) {
        uint8_t tok[HDX_BLIND_LEN];
        for (size_t j = 0; j < vn; j++)
            if ((unsigned char)v[j] < 0x21 || (unsigned char)v[j] > 0x7e)
                return fail(why, why_cap, "a patient identifier has a byte outside 0x21-0x7e");
        if (vn > HDX_SCOPE_PATIENT_ID_MAX)
            return fail(why, why_cap, "a patient identifier is longer than 199 bytes");
        if (hdx_blind(kr, "patient", v, vn, tok) != HDX_OK)
            return fail(why, why_cap, "cannot blind a patient identifier");
        hdx_hex(tok, HDX_BLIND_LEN, st->hex[i]);
        sodium_memzero(tok, sizeof(tok));
        st->vals[k][i] = st->hex[i];
    } else {
        if (!name_value_ok(k, v, vn)) {
            snprintf(why, why_cap,
                     k == K_TYPE ? "a type must be 1-63 bytes of 0x21-0x7e without , = *"
                                 : "a sender must be 1-64 bytes of 0x21-0x7e without , = *, or "
                                   "a prefix ending in one *");
            return HDX_E_INVAL;
        }
        char *dst = st->names[k][i];
        memcpy(dst, v, vn);
        dst[vn] = 0;
        st->vals[k][i] = dst;
    }
    st->n[k]++;
    return HDX_OK;
}

int hdx_scope_from_operator(const char *text, size_t len, const struct hdx_keyring *kr, char *canon,
                            size_t cap, char *why, size_t why_cap)
{
    struct op_state *st = calloc(1, sizeof(*st));
    int rc = HDX_E_INVAL;
    unsigned seen = 0;
    if (cap) canon[0] = 0;
    if (!st) return fail(why, why_cap, "out of memory");
    if (len == 0) {
        rc = fail(why, why_cap, "the scope is empty");
        goto out;
    }
    if (len > OPERATOR_MAX) {
        rc = fail(why, why_cap, "the scope is too long");
        goto out;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e) {
            rc = fail(why, why_cap, "the scope has a byte outside printable ASCII");
            goto out;
        }
    for (size_t pos = 0; pos <= len;) {
        const char *t = text + pos;
        const char *sp = memchr(t, ' ', len - pos);
        size_t tn = sp ? (size_t)(sp - t) : len - pos, vs = 0;
        if (tn == 0) {
            rc = fail(why, why_cap, "terms must be separated by exactly one space");
            goto out;
        }
        enum key k = term_key(t, tn, &vs);
        if (k == K_COUNT) {
            rc = fail(why, why_cap, "unknown key: a term is type=..., sender=... or patient=...");
            goto out;
        }
        if (seen & (1u << k)) {
            snprintf(why, why_cap, "key %s given twice (list its values with commas)",
                     key_names[k]);
            goto out;
        }
        seen |= 1u << k;
        for (size_t i = vs;;) {
            const char *comma = memchr(t + i, ',', tn - i);
            size_t vn = comma ? (size_t)(comma - (t + i)) : tn - i;
            if ((rc = operator_value(st, k, t + i, vn, kr, why, why_cap)) != HDX_OK) goto out;
            rc = HDX_E_INVAL;
            if (!comma) break;
            i += vn + 1;
            if (i == tn) {
                fail(why, why_cap, "a value is empty (two commas, or one at an end)");
                goto out;
            }
        }
        if (!sp) break;
        pos += tn + 1;
    }
    size_t off = 0;
    for (int k = 0; k < K_COUNT; k++)
        if (st->n[k] && append_values(st->vals[k], st->n[k], key_names[k], canon, cap, &off)) {
            rc = fail(why, why_cap, "the scope is too long");
            goto out;
        }
    struct hdx_scope check;
    if (off > HDX_SCOPE_TEXT_MAX) {
        rc = fail(why, why_cap, "the scope is too long");
    } else if (hdx_scope_parse(canon, off, &check) != HDX_OK) {
        rc = fail(why, why_cap, "the scope does not make a canonical scope"); /* cannot happen */
    } else {
        rc = HDX_OK;
    }
    sodium_memzero(&check, sizeof(check));
out:
    if (rc != HDX_OK && cap) canon[0] = 0;
    sodium_memzero(st, sizeof(*st));
    free(st);
    return rc;
}

static int sender_match(const char *pattern, const char *sender)
{
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*') return strncmp(pattern, sender, n - 1) == 0;
    return strcmp(pattern, sender) == 0;
}

int hdx_scope_admits(const struct hdx_scope *s, const char *sender, const char *type,
                     const uint8_t *patient)
{
    int ok = s->ntypes == 0;
    for (size_t i = 0; !ok && i < s->ntypes; i++)
        ok = strcmp(s->types[i], type) == 0;
    if (!ok) return 0;
    ok = s->nsenders == 0;
    for (size_t i = 0; !ok && i < s->nsenders; i++)
        ok = sender_match(s->senders[i], sender);
    if (!ok) return 0;
    if (s->npatients == 0) return 1;
    if (!patient) return 0;
    for (size_t i = 0; i < s->npatients; i++)
        if (sodium_memcmp(s->patients[i], patient, HDX_BLIND_LEN) == 0) return 1;
    return 0;
}

/* Appends a then b to out, cut to cap (off stays below cap). */
static void put(char *out, size_t cap, size_t *off, const char *a, const char *b)
{
    int w = snprintf(out + *off, cap - *off, "%s%s", a, b);
    if (w > 0) *off += (size_t)w < cap - *off ? (size_t)w : cap - *off - 1;
}

void hdx_scope_describe(const struct hdx_scope *s, char *out, size_t cap)
{
    size_t off = 0;
    char count[32];
    if (!cap) return;
    out[0] = 0;
    for (size_t i = 0; i < s->ntypes; i++)
        put(out, cap, &off, i ? "," : "type=", s->types[i]);
    for (size_t i = 0; i < s->nsenders; i++)
        put(out, cap, &off, i ? "," : off ? " sender=" : "sender=", s->senders[i]);
    snprintf(count, sizeof(count), "%zu", s->npatients);
    if (s->npatients) put(out, cap, &off, off ? " patients=" : "patients=", count);
}

int hdx_scope_load(struct hdx_store *s, const char *name, struct hdx_scope **out, char *text)
{
    *out = NULL;
    struct hdx_device_scope *row = calloc(1, sizeof(*row));
    struct hdx_scope *sc = calloc(1, sizeof(*sc));
    int rc = row && sc ? hdx_store_device_scope_get(s, name, row) : HDX_E_NOMEM;
    if (rc == HDX_OK && hdx_scope_parse(row->scope, strlen(row->scope), sc) != HDX_OK)
        rc = HDX_E_INTEGRITY; /* a row only a hand could have written */
    if (rc == HDX_OK) {
        if (text) memcpy(text, row->scope, sizeof(row->scope));
        *out = sc;
        sc = NULL;
    } else if (rc == HDX_E_NOTFOUND) {
        rc = HDX_OK;
    }
    free(row);
    free(sc);
    return rc;
}
