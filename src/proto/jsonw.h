/* jsonw: JSON text written straight into a growable buffer, for hdx's hot answers (the
 * records of /api/records, /api/records/SEQ and /api/stream), where building a jansson tree
 * and dumping it cost a quarter of a read (docs/PERFORMANCE.md "Issue 11's benchmarks").
 * Everything else keeps jansson. Strings are escaped as RFC 8259 section 7 requires: '"', '\'
 * and the bytes below 0x20 (as \n, \r, \t, \b, \f or \u00XX); other bytes are copied, once
 * the whole value is known to be well-formed UTF-8 (RFC 3629: no overlong forms, surrogates
 * or code points above U+10FFFF). A value that is not is refused with nothing written, so
 * the caller can send it another way (base64). A failed allocation makes the writer failed:
 * later calls do nothing, and hdx_jsonw_take returns NULL. Freed memory is wiped: bodies are
 * PHI. Pure; no I/O. Thread: the caller's. */
#ifndef HDX_JSONW_H
#define HDX_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct hdx_jsonw {
    char *buf;
    size_t len, cap;
    int failed;
};

/* The length of the well-formed UTF-8 sequence at p[0, n) (n >= 1), or 0 when it is not one. */
size_t hdx_utf8_seq_len(const uint8_t *p, size_t n);
/* 1 when all n bytes are well-formed UTF-8. */
int hdx_utf8_valid(const uint8_t *p, size_t n);

/* n bytes of JSON text the caller vouches for (punctuation, member names it wrote). */
void hdx_jsonw_raw(struct hdx_jsonw *w, const char *s, size_t n);
/* A string value, quotes included: 0, or -1 when s is not UTF-8 (nothing written). */
int hdx_jsonw_string(struct hdx_jsonw *w, const uint8_t *s, size_t n);
void hdx_jsonw_u64(struct hdx_jsonw *w, uint64_t v);
/* The text (NUL-terminated, *len without it) for the caller to free, or NULL when the writer
 * failed; the writer is empty afterwards. */
char *hdx_jsonw_take(struct hdx_jsonw *w, size_t *len);
/* Wipes and frees what the writer holds. */
void hdx_jsonw_free(struct hdx_jsonw *w);

#endif
