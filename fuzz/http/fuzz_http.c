/* fuzz_http: libFuzzer entry point for HTTP/1.1 requests (proto/http.h http_parse_request).
 * The input is a byte stream as a client would send it; it is parsed as http_session does:
 * request after request from the start of what is left (pipelining), until one needs more
 * bytes or is refused. libFuzzer's buffer is exactly the input's length, so a read past it
 * shows under ASan. Each stream is parsed under the default limits and under tight ones.
 * Beyond "no crash", it traps when an accepted request consumed nothing or more than it was
 * given; has a path that does not start with '/' or holds a "." or ".." segment, "//", a
 * backslash or a control byte (a decoded NUL would end the string early: the path is
 * compared with the target's decoded length); a header name that is empty or not lower-case
 * token characters, or a value with CR, LF or NUL; a body over max_body; a query outside its
 * target; when a request accepted under the tight limits is not accepted alike under the
 * defaults; when the request minus its last byte does not need more (a request split by the
 * network would be refused); and when a refusal has a status outside {400, 413, 414, 431,
 * 505, 503}, an empty code, or an unterminated text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static int token_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A "." or ".." segment ("/a..b" is a name, not a traversal). */
static int has_dot_segment(const char *path)
{
    size_t n = strlen(path);
    return strstr(path, "/../") || strstr(path, "/./") ||
           (n >= 3 && !strcmp(path + n - 3, "/..")) || (n >= 2 && !strcmp(path + n - 2, "/."));
}

/* The length of the target's path once percent-decoded (bytes, NULs counted). */
static size_t decoded_len(const char *target)
{
    size_t n = 0;
    for (const char *p = target; *p && *p != '?'; p++, n++)
        if (*p == '%') p += 2; /* accepted, so the escape is whole */
    return n;
}

static void check_ok(const struct http_req *r, size_t used, size_t len, const struct http_limits *l)
{
    CHECK(used > 0 && used <= len);
    CHECK(r->method[0] != 0 && memchr(r->method, 0, sizeof(r->method)) != NULL);
    CHECK(r->path != NULL && r->path[0] == '/');
    CHECK(strlen(r->path) == decoded_len(r->target)); /* no NUL inside */
    CHECK(!has_dot_segment(r->path) && strstr(r->path, "//") == NULL);
    CHECK(strchr(r->path, '\\') == NULL);
    for (const char *p = r->path; *p; p++)
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    CHECK(r->target[0] == '/');
    CHECK(r->query[0] == 0 || (r->query > r->target && r->query[-1] == '?' &&
                               r->query < r->target + strlen(r->target) + 1));
    CHECK(r->nheaders <= l->max_headers);
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        CHECK(n[0] != 0);
        for (; *n; n++)
            CHECK(token_char((unsigned char)*n));
        CHECK(strpbrk(v, "\r\n") == NULL);
        CHECK(http_header_get(r, r->headers[i].name) != NULL);
    }
    CHECK(r->body_len <= l->max_body);
    CHECK(r->body_len == 0 || r->body != NULL);
    CHECK(r->keep_alive == 0 || r->keep_alive == 1);
    CHECK(r->http_minor == 0 || r->http_minor == 1);
    char out[64];
    int q = http_query_get(r, "a", out, sizeof(out));
    CHECK(q >= -2 && q < (int)sizeof(out));
    if (q >= 0) CHECK(strlen(out) == (size_t)q);
}

static void check_error(const struct http_error *e)
{
    CHECK(e->status == 400 || e->status == 413 || e->status == 414 || e->status == 431 ||
          e->status == 505 || e->status == 503);
    CHECK(e->code != NULL && e->code[0] != 0);
    CHECK(memchr(e->text, 0, sizeof(e->text)) != NULL && e->text[0] != 0);
}

/* Parses one request at buf; returns its result and, when accepted, what it consumed. */
static enum http_result one(const uint8_t *buf, size_t len, const struct http_limits *l,
                            size_t *used, const struct http_limits *wider)
{
    struct http_req r;
    struct http_error e;
    memset(&e, 0, sizeof(e));
    *used = 0;
    enum http_result rc = http_parse_request(buf, len, l, &r, used, &e);
    if (rc == HTTP_ERROR) {
        check_error(&e);
        return rc;
    }
    if (rc == HTTP_NEED_MORE) return rc;
    CHECK(rc == HTTP_OK);
    check_ok(&r, *used, len, l);
    size_t n = *used;
    if (wider) { /* what the tight limits accept, the defaults accept alike */
        struct http_req w;
        size_t wused = 0;
        CHECK(http_parse_request(buf, len, wider, &w, &wused, &e) == HTTP_OK);
        CHECK(wused == n && strcmp(w.target, r.target) == 0 && w.nheaders == r.nheaders &&
              w.body_len == r.body_len &&
              (r.body_len == 0 || memcmp(w.body, r.body, r.body_len) == 0));
        http_req_free(&w);
    }
    http_req_free(&r);
    /* The same request minus its last byte is still on its way. */
    uint8_t *cut = malloc(n - 1 ? n - 1 : 1);
    CHECK(cut != NULL);
    memcpy(cut, buf, n - 1);
    struct http_req c;
    size_t cused = 0;
    CHECK(http_parse_request(cut, n - 1, l, &c, &cused, &e) == HTTP_NEED_MORE);
    free(cut);
    return rc;
}

static void drive(const uint8_t *data, size_t size, const struct http_limits *l,
                  const struct http_limits *wider)
{
    size_t pos = 0, used = 0;
    while (pos < size && one(data + pos, size - pos, l, &used, wider) == HTTP_OK)
        pos += used; /* used > 0: the loop ends */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_limits def, tight = {
                                .max_line = 96,
                                .max_header_bytes = 384,
                                .max_headers = 6,
                                .max_body = 128,
                            };
    http_limits_default(&def);
    drive(data, size, &def, NULL);
    drive(data, size, &tight, &def);
    return 0;
}
