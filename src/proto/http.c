#include "proto/http.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_limits_default(struct http_limits *l)
{
    l->max_line = 8192;
    l->max_header_bytes = 16384;
    l->max_headers = HTTP_HEADERS_MAX;
    l->max_body = 1 << 20;
}

static enum http_result fail(struct http_error *err, int status, const char *code, const char *text)
{
    err->status = status;
    err->code = code;
    snprintf(err->text, sizeof(err->text), "%s", text);
    return HTTP_ERROR;
}

/* ---------- hdx's own checks of the header block ---------- */

/* Offset just past the empty line ending the header block that starts at from, 0 if not
 * (yet) within max. */
static size_t header_end(const uint8_t *buf, size_t len, size_t max, size_t from)
{
    size_t lim = len < max ? len : max;
    for (size_t i = from + 3; i < lim; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* Every line ends in CRLF; no control byte but HTAB; no line of the headers starts with
 * whitespace (obs-fold: two parsers could join it differently). */
static enum http_result check_block(const uint8_t *b, size_t n, const struct http_limits *lim,
                                    size_t *nlines, struct http_error *err)
{
    size_t line_start = 0, lines = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = b[i];
        if (ch == '\n') {
            if (i == 0 || b[i - 1] != '\r')
                return fail(err, 400, "bad_header", "bare LF in the request head");
            if (lines == 0 && i + 1 > lim->max_line)
                return fail(err, 414, "uri_too_long", "request line too long");
            lines++;
            line_start = i + 1;
            continue;
        }
        if (ch == '\r') {
            if (i + 1 >= n || b[i + 1] != '\n')
                return fail(err, 400, "bad_header", "bare CR in the request head");
            continue;
        }
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(err, 400, "bad_header", "control character in the request head");
        if (i == line_start && lines > 0 && (ch == ' ' || ch == '\t'))
            return fail(err, 400, "bad_header", "obs-fold (a folded header line) is refused");
    }
    if (lines == 0 || (lines == 1 && n > lim->max_line))
        return fail(err, 414, "uri_too_long", "request line too long");
    *nlines = lines;
    return HTTP_OK;
}

/* ---------- http-parser callbacks ---------- */

struct parse_state {
    const struct http_limits *lim;
    struct http_req *req;
    char *url;
    size_t url_len;
    char *s; /* strings storage: name\0value\0... */
    size_t s_len, s_cap;
    int in_value; /* the last callback was a header value */
    size_t nheaders;
    uint8_t *body;
    size_t body_len;
    int complete, headers_done, too_big;
};

static int append(struct parse_state *p, const char *at, size_t len)
{
    if (p->s_len + len + 1 > p->s_cap) return -1; /* trailers are not in the block */
    memcpy(p->s + p->s_len, at, len);
    p->s_len += len;
    p->s[p->s_len] = 0;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct parse_state *p = hp->data;
    char *u = realloc(p->url, p->url_len + len + 1);
    if (!u) return -1;
    memcpy(u + p->url_len, at, len);
    p->url = u;
    p->url_len += len;
    u[p->url_len] = 0;
    return 0;
}

static int on_field(http_parser *hp, const char *at, size_t len)
{
    struct parse_state *p = hp->data;
    if (p->in_value || !p->nheaders) { /* a new header */
        if (p->nheaders == p->lim->max_headers) return -1;
        if (p->nheaders && append(p, "", 0)) return -1; /* ends the previous value */
        if (p->nheaders) p->s_len++;
        p->req->headers[p->nheaders].name = (const char *)(uintptr_t)p->s_len; /* offset */
        p->nheaders++;
        p->in_value = 0;
    }
    return append(p, at, len);
}

static int on_value(http_parser *hp, const char *at, size_t len)
{
    struct parse_state *p = hp->data;
    if (!p->in_value) {
        if (p->s_len + 2 > p->s_cap) return -1; /* room for the value's NUL */
        p->s_len++;                             /* past the name's NUL */
        p->s[p->s_len] = 0;
        p->req->headers[p->nheaders - 1].value = (const char *)(uintptr_t)p->s_len;
        p->in_value = 1;
    }
    return append(p, at, len);
}

static int on_headers_complete(http_parser *hp)
{
    struct parse_state *p = hp->data;
    p->headers_done = 1;
    if (p->nheaders && !p->in_value) { /* a name with no value (http-parser allows "X:") */
        if (p->s_len + 2 > p->s_cap) return -1;
        p->s_len++;
        p->s[p->s_len] = 0;
        p->req->headers[p->nheaders - 1].value = (const char *)(uintptr_t)p->s_len;
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct parse_state *p = hp->data;
    if (p->body_len + len > p->lim->max_body) {
        p->too_big = 1;
        return -1;
    }
    uint8_t *b = realloc(p->body, p->body_len + len ? p->body_len + len : 1);
    if (!b) return -1;
    memcpy(b + p->body_len, at, len);
    p->body = b;
    p->body_len += len;
    return 0;
}

static int on_complete(http_parser *hp)
{
    struct parse_state *p = hp->data;
    p->complete = 1;
    http_parser_pause(hp, 1); /* one request per call: the next one is the caller's next call */
    return 0;
}

/* ---------- the request's own rules ---------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into out (cap >= n + 1); -1 on a bad escape or a NUL. */
static int pct_decode(const char *src, size_t n, char *out, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == 0 || c < 0x20 || c == 0x7f) return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return (int)o;
}

static int path_ok(const char *path)
{
    if (path[0] != '/' || strchr(path, '\\') || strstr(path, "//")) return 0;
    for (const char *seg = path + 1; *seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
        if (!end) break;
        seg = end + 1;
    }
    return 1;
}

static enum http_result check_framing(const struct http_req *req, struct http_error *err)
{
    int cl = 0, te = 0, chunked = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcmp(req->headers[i].name, "content-length") == 0) cl++;
        if (strcmp(req->headers[i].name, "transfer-encoding") == 0) {
            te++;
            chunked = strcasecmp(req->headers[i].value, "chunked") == 0;
        }
    }
    if (cl > 1) return fail(err, 400, "smuggling", "Content-Length given more than once");
    if (cl && te) return fail(err, 400, "smuggling", "Content-Length and Transfer-Encoding");
    if (te > 1 || (te && !chunked))
        return fail(err, 400, "smuggling", "only Transfer-Encoding: chunked is accepted");
    return HTTP_OK;
}

/* Lower-cases s; 0 when it is not a token (RFC 9110 5.6.2): http-parser, not strict, takes a
 * SP in a name ("Content-Length : 3"), which RFC 9112 5.1 says to refuse. */
static int lower_token(char *s)
{
    int ok = *s != 0;
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            ok = 0;
    }
    return ok;
}

static enum http_result finish(struct parse_state *p, http_parser *hp, struct http_req *req,
                               struct http_error *err)
{
    if (!p->url || p->url[0] != '/')
        return fail(err, 400, "bad_path", "the target must be an absolute path");
    char *q = strchr(p->url, '?');
    size_t plen = q ? (size_t)(q - p->url) : p->url_len;
    req->path = malloc(plen + 1);
    if (!req->path) return fail(err, 503, "no_memory", "out of memory");
    if (strchr(p->url, '#') || pct_decode(p->url, plen, req->path, 0) < 0 || !path_ok(req->path))
        return fail(err, 400, "bad_path", "the path is not acceptable");
    req->query = q ? q + 1 : "";
    req->target = p->url; /* q points into it */
    p->url = NULL;
    snprintf(req->method, sizeof(req->method), "%s", http_method_str(hp->method));
    req->http_minor = hp->http_minor;
    req->keep_alive = http_should_keep_alive(hp);
    return HTTP_OK;
}

enum http_result http_parse_request(const uint8_t *buf, size_t len, const struct http_limits *lim,
                                    struct http_req *req, size_t *consumed, struct http_error *err)
{
    /* Empty lines before the request line are ignored (RFC 9112 2.2; http-parser skips
     * them): the head's checks start after them, and they count toward max_header_bytes. */
    size_t skip = 0;
    while (skip + 2 <= len && skip + 2 <= lim->max_header_bytes && buf[skip] == '\r' &&
           buf[skip + 1] == '\n')
        skip += 2;
    size_t head = header_end(buf, len, lim->max_header_bytes, skip), rest = len - skip;
    if (!head) {
        /* Every byte here is the head's: a bare LF is refused now (a head of bare LFs never
         * has the CRLF CRLF that would have it checked). */
        size_t n = len < lim->max_header_bytes ? len : lim->max_header_bytes;
        for (size_t i = skip; i < n; i++)
            if (buf[i] == '\n' && (i == skip || buf[i - 1] != '\r'))
                return fail(err, 400, "bad_header", "bare LF in the request head");
        /* A request line already too long need not be waited for (414 before 431: both
         * hold for a long line once max_header_bytes of it are buffered). */
        const uint8_t *nl = memchr(buf + skip, '\n', rest < lim->max_line ? rest : lim->max_line);
        if (!nl && rest > lim->max_line)
            return fail(err, 414, "uri_too_long", "request line too long");
        if (len >= lim->max_header_bytes)
            return fail(err, 431, "headers_too_large", "request head too large");
        return HTTP_NEED_MORE;
    }
    size_t nlines = 0;
    if (check_block(buf + skip, head - skip, lim, &nlines, err) != HTTP_OK) return HTTP_ERROR;
    if (nlines - 2 > lim->max_headers) /* minus the request line and the empty line */
        return fail(err, 431, "headers_too_large", "too many header fields");

    struct parse_state p = {.lim = lim, .req = req, .s_cap = head + 2 * HTTP_HEADERS_MAX + 2};
    memset(req, 0, sizeof(*req));
    p.s = malloc(p.s_cap);
    if (!p.s) return fail(err, 503, "no_memory", "out of memory");
    p.s[0] = 0;
    http_parser hp;
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_url = on_url;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_message_complete = on_complete;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &p;
    enum http_result rc = HTTP_OK;
    size_t used = http_parser_execute(&hp, &st, (const char *)buf, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&hp);
    if (p.too_big)
        rc = fail(err, 413, "body_too_large", "request body too large");
    else if (e == HPE_UNEXPECTED_CONTENT_LENGTH)
        rc = fail(err, 400, "smuggling", "conflicting message length");
    else if (e == HPE_INVALID_CONTENT_LENGTH || e == HPE_INVALID_TRANSFER_ENCODING)
        rc = fail(err, 400, "smuggling", http_errno_description(e)); /* "1, 1"; "gzip" */
    else if (e != HPE_OK && e != HPE_PAUSED)
        rc = fail(err, 400, "bad_request", http_errno_description(e));
    else if (p.headers_done && (hp.http_major != 1 || hp.http_minor > 1))
        rc = fail(err, 505, "bad_version", "only HTTP/1.0 and HTTP/1.1");
    if (rc == HTTP_OK && p.headers_done) {
        /* Offsets become pointers now that the storage no longer moves. */
        int tokens = 1;
        req->nheaders = p.nheaders;
        for (size_t i = 0; i < p.nheaders; i++) {
            req->headers[i].name = p.s + (uintptr_t)req->headers[i].name;
            req->headers[i].value = p.s + (uintptr_t)req->headers[i].value;
            tokens &= lower_token((char *)(uintptr_t)req->headers[i].name);
        }
        req->strings = p.s;
        p.s = NULL;
        rc = tokens ? check_framing(req, err)
                    : fail(err, 400, "bad_header", "a header name is not a token");
        if (rc == HTTP_OK && hp.content_length != ULLONG_MAX && !(hp.flags & F_CHUNKED) &&
            hp.content_length > lim->max_body)
            rc = fail(err, 413, "body_too_large", "request body too large");
    }
    if (rc == HTTP_OK && !p.complete) rc = HTTP_NEED_MORE;
    if (rc == HTTP_OK) rc = finish(&p, &hp, req, err);
    if (rc == HTTP_OK) {
        req->body = p.body;
        req->body_len = p.body_len;
        p.body = NULL;
        *consumed = used;
    } else {
        http_req_free(req);
    }
    free(p.url);
    free(p.s);
    free(p.body);
    return rc;
}

void http_req_free(struct http_req *req)
{
    free(req->target);
    free(req->path);
    free(req->strings);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

const char *http_header_get(const struct http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

int http_query_next(const char **cursor, char *key, size_t kcap, char *val, size_t vcap)
{
    const char *p = *cursor;
    while (*p == '&')
        p++;
    if (!*p) {
        *cursor = p;
        return 0;
    }
    const char *amp = strchr(p, '&');
    size_t n = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', n);
    size_t kn = eq ? (size_t)(eq - p) : n, vn = eq ? n - kn - 1 : 0;
    *cursor = p + n;
    if (kn + 1 > kcap || vn + 1 > vcap || pct_decode(p, kn, key, 1) < 0 ||
        pct_decode(eq ? eq + 1 : "", vn, val, 1) < 0)
        return -2;
    return 1;
}

int http_query_get(const struct http_req *req, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = req->query; *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vlen = n - klen - 1;
            if (vlen + 1 > cap) return -2;
            return pct_decode(p + klen + 1, vlen, out, 1) < 0 ? -2 : (int)strlen(out);
        }
        if (!amp) break;
        p = amp + 1;
    }
    return -1;
}

/* ---------- answers ---------- */

static int answer_complete(http_parser *hp)
{
    struct http_answer *a = hp->data;
    if (hp->status_code < 200) return 0; /* interim: the real answer follows */
    a->complete = 1;
    a->status = hp->status_code;
    a->keepalive = http_should_keep_alive(hp);
    http_parser_pause(hp, 1); /* nothing after it is read */
    return 0;
}

static const http_parser_settings answer_settings = {.on_message_complete = answer_complete};

void http_answer_init(struct http_answer *a)
{
    memset(a, 0, sizeof(*a));
    http_parser_init(&a->hp, HTTP_RESPONSE);
    a->hp.data = a;
}

enum http_result http_answer_feed(struct http_answer *a, const uint8_t *p, size_t n,
                                  const char **why)
{
    const char *unused;
    if (why == NULL) why = &unused;
    *why = NULL;
    if (a->complete) return HTTP_OK;
    /* only what fits the limit is parsed: an answer that ends within it is taken whatever
     * follows it in the same read */
    size_t k = n > HTTP_ANSWER_MAX - a->fed ? HTTP_ANSWER_MAX - a->fed : n;
    if (n && !k) {
        *why = "the answer is too long";
        return HTTP_ERROR;
    }
    a->fed += k;
    a->hp.data = a; /* the struct may have been copied since init */
    http_parser_execute(&a->hp, &answer_settings, k ? (const char *)p : NULL, k);
    if (a->complete) return HTTP_OK;
    if (k < n) {
        *why = "the answer is too long";
        return HTTP_ERROR;
    }
    if (HTTP_PARSER_ERRNO(&a->hp) != HPE_OK) {
        *why = "the answer is not HTTP/1.1";
        return HTTP_ERROR;
    }
    if (n == 0) {
        *why = "the destination closed the connection before the end of its answer";
        return HTTP_ERROR;
    }
    return HTTP_NEED_MORE;
}
