/* fuzz_multipart: libFuzzer entry point for MIME multipart bodies (proto/multipart.h).
 * The input's first line (up to the first LF, a CR before it dropped) is a Content-Type value
 * for hdx_mp_content_type; the rest is the body, on an exact-size heap copy (a read past it
 * shows under ASan), read with hdx_mp_next under the default limits and under tight ones
 * (3 parts, 96 header bytes, 2 headers), with the parsed boundary or, when the value is
 * refused or not multipart, the boundary "b". Every part read under the defaults is written
 * again with hdx_mp_write_part / hdx_mp_write_end and the output read back.
 * Beyond "no crash", it traps when: a Content-Type result is not HDX_OK or HDX_E_INVAL, a
 * refusal has no reason or leaves a field set, an accepted value has a media that is not a
 * lower-case token/token, a multipart media without a valid boundary, or a type that is not
 * lower-case; hdx_mp_next returns anything but 1, 0 or HDX_E_INVAL, a part's body is not
 * inside the body or its header copies are unterminated, more than max_parts parts come out,
 * a refusal has no reason, an offset past the end, or is not given again on the next call,
 * a finished reader does not stay finished; the same bytes read twice differ; the tight
 * limits accept a part the defaults do not give alike; the writer refuses a part for any
 * reason but the body holding "--" boundary at its start or after an LF; what it wrote
 * does not read back as exactly the same parts (content type, location, bytes), then 0. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "proto/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

#define MAXP 64 /* parts kept for the comparisons (the rest are still read and checked) */

struct result {
    int rc; /* the last hdx_mp_next result */
    size_t n;
    struct hdx_mp_part parts[MAXP];
    const char *why;
    size_t off;
};

static int tchar_lower(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_media(const char *m)
{
    const char *slash = strchr(m, '/');
    CHECK(slash && slash != m && slash[1] != 0);
    for (const char *p = m; *p; p++)
        CHECK(p == slash || tchar_lower((unsigned char)*p));
}

static void check_ctype(const char *value)
{
    struct hdx_mp_ctype ct;
    const char *why = NULL;
    int rc = hdx_mp_content_type(value, &ct, &why);
    CHECK(rc == HDX_OK || rc == HDX_E_INVAL);
    CHECK(memchr(ct.media, 0, sizeof(ct.media)) && memchr(ct.boundary, 0, sizeof(ct.boundary)) &&
          memchr(ct.type, 0, sizeof(ct.type)) && memchr(ct.start, 0, sizeof(ct.start)) &&
          memchr(ct.transfer_syntax, 0, sizeof(ct.transfer_syntax)));
    if (rc != HDX_OK) {
        CHECK(why != NULL && why[0] != 0);
        CHECK(!ct.media[0] && !ct.boundary[0] && !ct.type[0] && !ct.start[0] &&
              !ct.transfer_syntax[0]);
        return;
    }
    check_media(ct.media);
    if (strncmp(ct.media, "multipart/", 10) == 0)
        CHECK(hdx_mp_boundary_ok(ct.boundary));
    else
        CHECK(ct.boundary[0] == 0);
    if (ct.type[0]) check_media(ct.type);
    CHECK(strspn(ct.transfer_syntax, "0123456789.") == strlen(ct.transfer_syntax));
    struct hdx_mp_ctype again;
    CHECK(hdx_mp_content_type(value, &again, &why) == HDX_OK &&
          memcmp(&ct, &again, sizeof(ct)) == 0);
}

static void read_all(const uint8_t *b, size_t n, const char *boundary,
                     const struct hdx_mp_limits *l, struct result *res)
{
    struct hdx_mp_reader r;
    struct hdx_mp_part p;
    hdx_mp_begin(&r, b, n, boundary, l);
    res->n = 0;
    res->why = NULL;
    res->off = 0;
    for (;;) {
        const char *why = NULL;
        size_t off = 0;
        int rc = hdx_mp_next(&r, &p, &why, &off);
        CHECK(rc == 1 || rc == 0 || rc == HDX_E_INVAL);
        res->rc = rc;
        if (rc == 1) {
            CHECK(p.body != NULL && p.body >= b && p.len <= n && p.body + p.len <= b + n);
            CHECK(memchr(p.content_type, 0, sizeof(p.content_type)));
            CHECK(memchr(p.content_location, 0, sizeof(p.content_location)));
            CHECK(++res->n <= l->max_parts);
            CHECK(hdx_mp_count(&r) == res->n);
            if (res->n <= MAXP) res->parts[res->n - 1] = p;
            continue;
        }
        CHECK(p.body == NULL && p.len == 0);
        if (rc == 0) {
            CHECK(res->n > 0);
            CHECK(hdx_mp_next(&r, &p, NULL, NULL) == 0);
        } else {
            CHECK(why != NULL && why[0] != 0 && off <= n);
            const char *why2 = NULL;
            size_t off2 = 0;
            CHECK(hdx_mp_next(&r, &p, &why2, &off2) == HDX_E_INVAL && why2 == why && off2 == off);
            res->why = why;
            res->off = off;
        }
        return;
    }
}

static int same_part(const struct hdx_mp_part *a, const struct hdx_mp_part *b)
{
    return strcmp(a->content_type, b->content_type) == 0 &&
           strcmp(a->content_location, b->content_location) == 0 && a->len == b->len &&
           (a->len == 0 || memcmp(a->body, b->body, a->len) == 0);
}

/* "--" boundary at the body's start or after an LF (what the writer must refuse). */
static int holds_boundary(const uint8_t *b, size_t n, const char *boundary)
{
    size_t bl = strlen(boundary);
    for (size_t i = 0; i + 2 + bl <= n; i++)
        if ((i == 0 || b[i - 1] == '\n') && b[i] == '-' && b[i + 1] == '-' &&
            memcmp(b + i + 2, boundary, bl) == 0)
            return 1;
    return 0;
}

static void round_trip(const struct result *res, const char *boundary)
{
    struct hdx_mp_out o;
    size_t kept = res->n < MAXP ? res->n : MAXP, written = 0;
    const struct hdx_mp_part *w[MAXP];
    hdx_mp_out_init(&o, 1 << 24);
    for (size_t i = 0; i < kept; i++) {
        const struct hdx_mp_part *p = &res->parts[i];
        int rc =
            hdx_mp_write_part(&o, boundary, p->content_type, p->content_location, p->body, p->len);
        if (rc == HDX_E_INVAL) {
            CHECK(holds_boundary(p->body, p->len, boundary));
            continue;
        }
        CHECK(rc == HDX_OK);
        w[written++] = p;
    }
    if (written) {
        CHECK(hdx_mp_write_end(&o, boundary) == HDX_OK);
        struct hdx_mp_limits def;
        hdx_mp_limits_default(&def);
        uint8_t *copy = malloc(o.len);
        CHECK(copy != NULL);
        memcpy(copy, o.buf, o.len);
        struct result *back = malloc(sizeof(*back));
        CHECK(back != NULL);
        read_all(copy, o.len, boundary, &def, back);
        CHECK(back->rc == 0 && back->n == written);
        for (size_t i = 0; i < written; i++)
            CHECK(same_part(&back->parts[i], w[i]));
        free(back);
        free(copy);
    } else {
        CHECK(hdx_mp_write_end(&o, boundary) == HDX_E_INVAL);
    }
    hdx_mp_out_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t vlen = nl ? (size_t)(nl - data) : size;
    size_t skip = nl ? vlen + 1 : size;
    if (vlen && data[vlen - 1] == '\r') vlen--;
    char value[2048];
    if (vlen >= sizeof(value)) vlen = sizeof(value) - 1;
    memcpy(value, data, vlen);
    value[vlen] = 0;
    check_ctype(value);

    struct hdx_mp_ctype ct;
    const char *why = NULL;
    const char *boundary = "b";
    if (hdx_mp_content_type(value, &ct, &why) == HDX_OK && ct.boundary[0]) boundary = ct.boundary;

    size_t n = size - skip;
    uint8_t *body = malloc(n ? n : 1);
    CHECK(body != NULL);
    memcpy(body, data + skip, n);
    struct hdx_mp_limits def,
        tight = {.max_parts = 3, .max_part_header_bytes = 96, .max_part_headers = 2};
    hdx_mp_limits_default(&def);
    struct result *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *t = malloc(sizeof(*t));
    CHECK(a && b && t);
    read_all(body, n, boundary, &def, a);
    read_all(body, n, boundary, &def, b); /* deterministic */
    CHECK(a->rc == b->rc && a->n == b->n && a->why == b->why && a->off == b->off);
    for (size_t i = 0; i < a->n && i < MAXP; i++)
        CHECK(same_part(&a->parts[i], &b->parts[i]) && a->parts[i].body == b->parts[i].body);
    read_all(body, n, boundary, &tight, t);
    /* Whatever the tight limits give, the defaults gave alike. */
    CHECK(t->n <= a->n);
    for (size_t i = 0; i < t->n && i < MAXP; i++)
        CHECK(same_part(&t->parts[i], &a->parts[i]) && t->parts[i].body == a->parts[i].body);
    if (t->rc == 0) CHECK(a->rc == 0 && a->n == t->n);
    round_trip(a, boundary);
    free(a);
    free(b);
    free(t);
    free(body);
    return 0;
}
