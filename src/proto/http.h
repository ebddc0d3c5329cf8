/* http: one HTTP/1.1 request out of untrusted bytes (pure: no I/O; fuzzed by fuzz/http).
 * Framing and tokens are http-parser's (Debian libhttp-parser); around it, hdx's own rules
 * for what a front door of health data must refuse, each with a status and a stable code:
 *   request line over max_line                                   414 uri_too_long
 *   header block over max_header_bytes, more than max_headers    431 headers_too_large
 *   obs-fold (a header line starting with SP/HTAB), a bare LF,
 *   NUL or another control byte in the header block, a header
 *   name that is not a token (SP before the colon)               400 bad_header
 *   Content-Length and Transfer-Encoding together, Content-Length
 *   twice (or a list, or not one decimal number), a
 *   Transfer-Encoding other than "chunked" alone                 400 smuggling (request
 *                                                                smuggling: RFC 9112 6.3)
 *   a body over max_body                                         413 body_too_large
 *   a target that is not an absolute path, or whose decoded path
 *   has a NUL, a backslash, a "." or ".." segment, or "//"       400 bad_path
 *   anything else http-parser refuses                            400 bad_request
 *   a version other than HTTP/1.0 or 1.1                         505 bad_version
 * Every refusal closes the connection (the rest of the stream cannot be trusted).
 * A parsed request borrows nothing: its strings and body are copies, bounded by the limits.
 * Thread: any. */
#ifndef HDX_PROTO_HTTP_H
#define HDX_PROTO_HTTP_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_HEADERS_MAX 64
#define HTTP_ANSWER_MAX (64u << 10) /* the longest answer http_answer_feed reads */

struct http_limits {
    size_t max_line;         /* request line */
    size_t max_header_bytes; /* request line and headers, up to the empty line */
    size_t max_headers;      /* <= HTTP_HEADERS_MAX */
    size_t max_body;
};

void http_limits_default(struct http_limits *l);

struct http_header {
    const char *name; /* lower-cased */
    const char *value;
};

struct http_req {
    char method[16];
    char *target;      /* as received: path and query */
    char *path;        /* percent-decoded path */
    const char *query; /* raw query (after '?'), "" if none; inside target */
    struct http_header headers[HTTP_HEADERS_MAX];
    size_t nheaders;
    uint8_t *body;
    size_t body_len;
    int keep_alive;
    int http_minor;
    char *strings; /* the headers' storage */
};

struct http_error {
    int status;       /* 400, 413, ... */
    const char *code; /* stable, e.g. "smuggling" */
    char text[128];   /* for the message, never client bytes */
};

enum http_result { HTTP_NEED_MORE = 0, HTTP_OK = 1, HTTP_ERROR = -1 };

/* Parses the request at the start of buf. HTTP_OK: *req is filled (free with http_req_free)
 * and *consumed is its length; HTTP_NEED_MORE: nothing is filled (call again with more);
 * HTTP_ERROR: *err says why, nothing is filled. */
enum http_result http_parse_request(const uint8_t *buf, size_t len, const struct http_limits *lim,
                                    struct http_req *req, size_t *consumed, struct http_error *err);
void http_req_free(struct http_req *req);

/* The value of header name (lower-case), or NULL. A repeated header: the first. */
const char *http_header_get(const struct http_req *req, const char *name);
/* The percent-decoded value of query parameter key into out. Returns its length, -1 when
 * absent, -2 when malformed, too long or holding a NUL or control byte. */
int http_query_get(const struct http_req *req, const char *key, char *out, size_t cap);

/* The query's parameters one by one: *cursor starts at req->query. 1 with the percent-decoded
 * key and value ("" when there is no '='), 0 at the end, -2 for one that is malformed, too
 * long or holds a NUL or control byte (*cursor has moved past it). */
int http_query_next(const char **cursor, char *key, size_t kcap, char *val, size_t vcap);

/* An answer to a request hdx sent (an HTTPS route's POST, route/route.c; fuzzed by
 * fuzz/http_answer): its status and whether the connection may be kept. Framing is
 * http-parser's, in response mode (length-delimited, chunked and close-delimited bodies);
 * interim 1xx answers are skipped (RFC 9110 15.2); bytes after the answer are not read. */
struct http_answer {
    http_parser hp;
    int complete, keepalive;
    unsigned status; /* 200-999 once complete */
    size_t fed;
};
void http_answer_init(struct http_answer *a);
/* Feeds the next n bytes (n = 0: the peer closed). HTTP_OK once the answer is complete (status,
 * keepalive set; later calls return HTTP_OK again and read nothing), HTTP_NEED_MORE, or
 * HTTP_ERROR with *why a fixed text: not HTTP/1.x, more than HTTP_ANSWER_MAX bytes before its
 * end, or closed before its end. */
enum http_result http_answer_feed(struct http_answer *a, const uint8_t *p, size_t n,
                                  const char **why);

#endif
