/* http_session: HTTPS on http.listen (TLS as on every port; a client certificate is optional:
 * people have none, and one that is presented names a principal), net/conn.h doing
 * admission and lifetime. HTTP/1.1 with keep-alive and pipelining (answers in request
 * order); each request parsed by proto/http.h within its limits; a request whose head does
 * not arrive within http.header_timeout_ms, or that is not whole within
 * http.request_timeout_ms, gets 408 and the connection closes.
 * Every answer carries the security headers (HSTS, X-Content-Type-Options, Cache-Control
 * no-store, a CSP of default-src 'none', Referrer-Policy, X-Frame-Options). Errors are JSON
 * {"error": CODE, "message": TEXT} with a stable CODE (docs/HTTP.md); a refusal of the
 * request's framing closes the connection.
 * Routes are a table of (method, path, handler); a path ending in '/' matches every path below
 * it. A handler answers from the network thread, at once or later: one that must wait (a login
 * on the auth worker, an admin record on the commit pipeline) sets reply->deferred, and the
 * session then reads no further request of that connection, keeps the connection alive
 * (hdx_conn.inflight) and answers when hdx_http_finish is called, so pipelined answers stay in
 * request order. The bytes of a request with a body are wiped from the input buffer once
 * parsed (a body may hold a password); an answer's body goes to the output by reference (no
 * copy, however large) and is wiped and freed once it is sent (answers hold PHI).
 * Thread: the network thread. */
#ifndef HDX_HTTP_SESSION_H
#define HDX_HTTP_SESSION_H

#include "net/conn.h"
#include "proto/http.h"

struct hdx_http_reply {
    int status;
    const char *content_type;   /* NULL: content_type_own, or application/json when that is "" */
    char content_type_own[128]; /* a per-answer type (a multipart boundary) */
    char *body;                 /* malloc'd, or NULL */
    size_t body_len;
    char extra[256]; /* more header lines, each ending in CRLF */
    int close;       /* close the connection after it */
    int deferred;    /* set by a handler: the answer comes through hdx_http_finish */
    /* Set by a handler: the answer is an event stream (text/event-stream). Its head goes out
     * now, without a length (the stream ends with the connection); from then on the
     * connection is the handler's: it writes with hdx_http_stream_write and ends it with
     * hdx_conn_close. Input is discarded; the idle timeout no longer applies (the write
     * timeout does). drained(arg) runs when the output falls under the low mark, closed(arg)
     * once when the connection goes, whoever closed it. */
    int stream;
    /* With stream: the answer is 101 Switching Protocols (a WebSocket, net/ws.h) whose header
     * lines are extra, nothing else; and input is not discarded but handed to stream_read,
     * which consumes what it can of it (the rest waits for more). */
    int upgrade;
    void (*stream_read)(void *arg, struct evbuffer *in);
    void (*stream_drained)(void *arg);
    void (*stream_closed)(void *arg);
    void *stream_arg;
};

/* A handler fills reply (or defers it); the request is read-only. */
typedef void (*hdx_http_handler)(void *arg, struct hdx_conn *c, const struct http_req *req,
                                 struct hdx_http_reply *reply);

struct hdx_http_route {
    const char *method;
    const char *path; /* exact, or ending in '/': a prefix */
    hdx_http_handler fn;
    void *arg;
};

struct hdx_http;

int hdx_http_new(const struct hdx_conf *conf, struct hdx_http **out);
/* Adds a route (before the listener opens). */
int hdx_http_route_add(struct hdx_http *h, const struct hdx_http_route *r);
void hdx_http_free(struct hdx_http *h);

/* reply = the JSON error {"error": code, "message": message}. */
void hdx_http_error(struct hdx_http_reply *reply, int status, const char *code,
                    const char *message);
/* reply = status with a JSON body (copied). */
void hdx_http_json(struct hdx_http_reply *reply, int status, const char *json);
/* reply = status with the JSON value (compact), which it consumes (json_decref). */
struct json_t;
void hdx_http_json_value(struct hdx_http_reply *reply, int status, struct json_t *value);
/* The deferred answer of c's request (its body is taken over: r->body becomes NULL). Once per
 * deferred request; on a connection closed meanwhile it only releases it. */
void hdx_http_finish(struct hdx_conn *c, struct hdx_http_reply *r);
/* The reason phrase of an HTTP status ("OK", "Not Found"). */
const char *hdx_http_reason(int status);

void hdx_http_stream_write(struct hdx_conn *c, const void *data, size_t len);
size_t hdx_http_stream_queued(struct hdx_conn *c);

/* The listener's ctx is the struct hdx_http. */
extern const struct hdx_session_ops hdx_http_ops;

#endif
