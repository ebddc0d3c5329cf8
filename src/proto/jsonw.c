#include "proto/jsonw.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t hdx_utf8_seq_len(const uint8_t *p, size_t n)
{
    uint8_t b = p[0];
    uint8_t lo = 0x80, hi = 0xBF;
    size_t need;

    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        lo = b == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F would be overlong */
        hi = b == 0xED ? 0x9F : 0xBF; /* ED A0..BF would encode a surrogate */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        lo = b == 0xF0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        hi = b == 0xF4 ? 0x8F : 0xBF; /* F4 90.. would exceed U+10FFFF */
    } else {
        return 0; /* 80..C1 (continuation or overlong lead) and F5..FF */
    }
    if (n - 1 < need) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k <= need; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
    }
    return need + 1;
}

int hdx_utf8_valid(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) { /* the common case, a byte at a time without the call */
            i++;
            continue;
        }
        size_t k = hdx_utf8_seq_len(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Room for need more bytes (and a NUL); 0, or -1 and the writer failed. */
static int reserve(struct hdx_jsonw *w, size_t need)
{
    if (w->failed) return -1;
    if (w->len + need + 1 <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 1024;
    while (cap < w->len + need + 1) {
        if (cap > SIZE_MAX / 2) {
            w->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *b = malloc(cap);
    if (!b) {
        w->failed = 1;
        return -1;
    }
    if (w->len) memcpy(b, w->buf, w->len);
    if (w->buf) {
        sodium_memzero(w->buf, w->cap);
        free(w->buf);
    }
    w->buf = b;
    w->cap = cap;
    return 0;
}

void hdx_jsonw_raw(struct hdx_jsonw *w, const char *s, size_t n)
{
    if (reserve(w, n)) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

int hdx_jsonw_string(struct hdx_jsonw *w, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (!hdx_utf8_valid(s, n)) return -1;
    /* At most 6 bytes per input byte (\u00XX) and the two quotes. */
    if (n > (SIZE_MAX - 2) / 6 || reserve(w, 6 * n + 2)) return 0;
    char *o = w->buf + w->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
    return 0;
}

void hdx_jsonw_u64(struct hdx_jsonw *w, uint64_t v)
{
    char d[24];
    int n = snprintf(d, sizeof(d), "%llu", (unsigned long long)v);
    hdx_jsonw_raw(w, d, (size_t)n);
}

char *hdx_jsonw_take(struct hdx_jsonw *w, size_t *len)
{
    if (w->failed || reserve(w, 0)) {
        hdx_jsonw_free(w);
        return NULL;
    }
    char *s = w->buf;
    s[w->len] = 0;
    *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    return s;
}

void hdx_jsonw_free(struct hdx_jsonw *w)
{
    if (w->buf) {
        sodium_memzero(w->buf, w->cap);
        free(w->buf);
    }
    w->buf = NULL;
    w->len = w->cap = 0;
    w->failed = 0;
}
