#include "net/http_session.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"

#define ROUTES_MAX 64

struct hdx_http {
    const struct hdx_conf *conf;
    struct http_limits limits;
    struct hdx_http_route routes[ROUTES_MAX];
    size_t nroutes;
};

struct http_conn {
    struct event *deadline; /* the request in progress: its head, then the whole of it */
    int deferred;           /* a handler owes the answer (hdx_http_finish) */
    int deferred_keep_alive, deferred_head;
    int streaming; /* an event stream: see hdx_http_reply.stream */
    void (*stream_read)(void *arg, struct evbuffer *in);
    void (*stream_drained)(void *arg);
    void (*stream_closed)(void *arg);
    void *stream_arg;
    int in_request; /* bytes of a request have arrived */
    int head_done;
    int64_t started_us;
    uint64_t requests;
};

/* Headers every answer carries: the API serves PHI, so nothing may be cached, sniffed,
 * framed or referred; HSTS since the port is TLS only. */
static const char security_headers[] =
    "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Cache-Control: no-store\r\n"
    "Pragma: no-cache\r\n"
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";

const char *hdx_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

void hdx_http_json(struct hdx_http_reply *reply, int status, const char *json)
{
    reply->status = status;
    reply->content_type = NULL;
    free(reply->body);
    reply->body_len = strlen(json);
    reply->body = malloc(reply->body_len + 1);
    if (!reply->body) {
        reply->status = 503;
        reply->body_len = 0;
        reply->close = 1;
        return;
    }
    memcpy(reply->body, json, reply->body_len + 1);
}

/* Into a buffer of ours: the body is freed with free(), whatever allocator jansson was given
 * (net/front.h gives it one that wipes). */
/* 15 significant digits: a temperature of 36.8 is written 36.8, not 36.799999999999997. */
static char *dump(const json_t *value, size_t *len)
{
    size_t n = value ? json_dumpb(value, NULL, 0, JSON_COMPACT | JSON_REAL_PRECISION(15)) : 0;
    char *s = n ? malloc(n + 1) : NULL;
    if (!s || json_dumpb(value, s, n, JSON_COMPACT | JSON_REAL_PRECISION(15)) != n) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}

void hdx_http_json_value(struct hdx_http_reply *reply, int status, struct json_t *value)
{
    size_t len = 0;
    char *s = dump(value, &len);
    json_decref(value);
    if (!s) {
        hdx_http_error(reply, 503, "unavailable", "out of memory");
        return;
    }
    free(reply->body);
    reply->status = status;
    reply->content_type = NULL;
    reply->body = s;
    reply->body_len = len;
}

void hdx_http_error(struct hdx_http_reply *reply, int status, const char *code, const char *message)
{
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", message);
    size_t len;
    char *s = dump(o, &len);
    json_decref(o);
    hdx_http_json(reply, status, s ? s : "{\"error\":\"internal\",\"message\":\"\"}");
    free(s);
}

/* body 0: the answer to HEAD, whose body is never sent (RFC 9112 6.3: it ends at the
 * empty line whatever its Content-Length says, so sent bytes would become the next answer). */
/* What is handed to the output buffer by reference is wiped and freed once it is sent (or the
 * connection goes): answers hold PHI, and a copy in libevent's chains would be freed as is. */
static void sent_wipe(const void *data, size_t len, void *arg)
{
    (void)arg;
    void *p = (void *)(uintptr_t)data; /* malloc'd here or by the handler: ours to free */
    explicit_bzero(p, len);
    free(p);
}

#define HEAD_MAX 4096
#define BODY_BY_REFERENCE (64u << 10) /* larger bodies go as they are, after the head */

static void write_reply(struct hdx_conn *c, struct hdx_http_reply *r, int body)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t unsent = evbuffer_get_length(out);
    char date[64], length[48] = "", head[HEAD_MAX];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!r->stream) snprintf(length, sizeof(length), "Content-Length: %zu\r\n", r->body_len);
    hdx_metric_http_status(r->status);
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: hdx\r\nContent-Type: %s\r\n"
                      "%s%s%s%s\r\n",
                      r->status, hdx_http_reason(r->status), date,
                      r->stream                ? "text/event-stream"
                      : r->content_type        ? r->content_type
                      : r->content_type_own[0] ? r->content_type_own
                                               : "application/json",
                      length, r->close || r->stream ? "Connection: close\r\n" : "",
                      security_headers, r->extra);
    size_t hl = hn < 0 ? 0 : (size_t)hn < sizeof(head) ? (size_t)hn : sizeof(head) - 1;
    size_t bl = r->body && body ? r->body_len : 0;
    uint8_t *one = bl < BODY_BY_REFERENCE ? malloc(hl + bl + 1) : NULL;
    if (one) {
        /* head and a small body in one piece (one TLS record), wiped once sent */
        memcpy(one, head, hl);
        if (bl) memcpy(one + hl, r->body, bl);
        if (evbuffer_add_reference(out, one, hl + bl, sent_wipe, NULL) != 0) {
            evbuffer_add(out, one, hl + bl);
            sent_wipe(one, hl + bl, NULL);
        }
    } else {
        evbuffer_add(out, head, hl);
        if (bl && evbuffer_add_reference(out, r->body, bl, sent_wipe, NULL) == 0)
            r->body = NULL; /* the buffer's now: no copy, wiped when sent */
        else if (bl)
            evbuffer_add(out, r->body, bl);
    }
    if (r->body) explicit_bzero(r->body, r->body_len);
    hdx_conn_write_soon(c, unsent);
}

/* ---------- timers ---------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    struct http_conn *s = c->session;
    struct hdx_http_reply r = {0};
    if (c->closing) return;
    hdx_warn("http_timeout", "peer=%s sender=%s phase=%s", c->peer,
             c->principal[0] ? c->principal : "-", s->head_done ? "body" : "head");
    hdx_http_error(&r, 408, "timeout",
                   s->head_done ? "the request body did not arrive in time"
                                : "the request head did not arrive in time");
    r.close = 1;
    write_reply(c, &r, 1);
    free(r.body);
    hdx_conn_close(c, 0);
}

static void arm(struct hdx_conn *c, int ms)
{
    struct http_conn *s = c->session;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(s->deadline, &tv);
}

/* Starts or moves the request's deadline for what is buffered now. */
static void track_request(struct hdx_conn *c, const uint8_t *data, size_t len)
{
    struct http_conn *s = c->session;
    struct hdx_http *h = c->ctx;
    if (!len) return;
    if (!s->in_request) {
        s->in_request = 1;
        s->head_done = 0;
        s->started_us = hdx_monotonic_us();
        arm(c, h->conf->http_header_timeout_ms);
    }
    if (!s->head_done && memmem(data, len, "\r\n\r\n", 4)) {
        s->head_done = 1;
        int64_t left =
            h->conf->http_request_timeout_ms - (hdx_monotonic_us() - s->started_us) / 1000;
        arm(c, left > 0 ? (int)left : 1);
    }
}

static void request_done(struct hdx_conn *c)
{
    struct http_conn *s = c->session;
    s->in_request = 0;
    s->head_done = 0;
    evtimer_del(s->deadline);
}

/* ---------- requests ---------- */

static void route(struct hdx_http *h, struct hdx_conn *c, const struct http_req *req,
                  struct hdx_http_reply *r)
{
    char allow[128] = "";
    size_t off = 0;
    for (size_t i = 0; i < h->nroutes; i++) {
        const struct hdx_http_route *rt = &h->routes[i];
        size_t plen = strlen(rt->path);
        /* A route ending in '/' takes what lies below it; any other takes its path with or
         * without one trailing '/' (a FHIR client POSTs a Bundle to "[base]/"). */
        int match =
            rt->path[plen - 1] == '/'
                ? strncmp(rt->path, req->path, plen) == 0 && req->path[plen] != 0
                : strncmp(rt->path, req->path, plen) == 0 &&
                      (req->path[plen] == 0 || (req->path[plen] == '/' && !req->path[plen + 1]));
        if (!match) continue;
        if (strcmp(rt->method, req->method) == 0) {
            rt->fn(rt->arg, c, req, r);
            return;
        }
        int n = snprintf(allow + off, sizeof(allow) - off, "%s%s", off ? ", " : "", rt->method);
        if (n > 0 && (size_t)n < sizeof(allow) - off) off += (size_t)n;
    }
    if (off) {
        hdx_http_error(r, 405, "method_not_allowed", "this method is not allowed here");
        snprintf(r->extra, sizeof(r->extra), "Allow: %s\r\n", allow);
        return;
    }
    /* The API's resources exist only for a principal: an unauthenticated client learns
     * nothing from 404 versus 401 below /api/. */
    if (strncmp(req->path, "/api/", 5) == 0 || strcmp(req->path, "/api") == 0) {
        hdx_http_error(r, 401, "unauthorized", "authentication required");
        snprintf(r->extra, sizeof(r->extra), "WWW-Authenticate: Bearer realm=\"hdx\"\r\n");
        return;
    }
    hdx_http_error(r, 404, "not_found", "no such resource");
}

static void refuse(struct hdx_conn *c, const struct http_error *e)
{
    struct hdx_http_reply r = {0};
    hdx_warn("http_refused", "peer=%s sender=%s status=%d code=%s reason=\"%s\"", c->peer,
             c->principal[0] ? c->principal : "-", e->status, e->code, e->text);
    hdx_http_error(&r, e->status, e->code, e->text);
    r.close = 1;
    write_reply(c, &r, 1);
    free(r.body);
    hdx_conn_close(c, 0);
}

static void start_stream(struct hdx_conn *c, const struct hdx_http_reply *r)
{
    struct http_conn *s = c->session;
    struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
    s->streaming = 1;
    s->stream_read = r->stream_read;
    s->stream_drained = r->stream_drained;
    s->stream_closed = r->stream_closed;
    s->stream_arg = r->stream_arg;
    bufferevent_set_timeouts(c->bev, NULL, &wr);
    if (r->upgrade) { /* not counted in hdx_http_requests_total: its classes are 2xx-5xx */
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "HTTP/1.1 101 Switching Protocols\r\nServer: hdx\r\n%s\r\n", r->extra);
        return;
    }
    struct hdx_http_reply head = *r;
    head.status = 200;
    head.body_len = 0;
    write_reply(c, &head, 0);
}

void hdx_http_stream_write(struct hdx_conn *c, const void *data, size_t len)
{
    if (c->closing) return;
    size_t unsent = hdx_conn_unsent(c);
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
    hdx_conn_write_soon(c, unsent);
}

size_t hdx_http_stream_queued(struct hdx_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void http_read(struct hdx_conn *c)
{
    struct http_conn *s = c->session;
    struct hdx_http *h = c->ctx;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t cap = h->limits.max_header_bytes + h->limits.max_body + 64;
    if (s->streaming) { /* nothing more is asked on an event stream */
        if (s->stream_read)
            s->stream_read(s->stream_arg, in);
        else
            evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while (!c->closing) {
        if (hdx_conn_output_full(c)) { /* a pipelining client that does not read */
            hdx_conn_pause(c, HDX_PAUSE_OUTPUT);
            return;
        }
        size_t len = evbuffer_get_length(in), want = len < cap ? len : cap;
        if (!len) return;
        uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)want);
        struct http_req req;
        struct http_error err = {0};
        size_t used = 0;
        enum http_result rc = http_parse_request(data, want, &h->limits, &req, &used, &err);
        if (rc == HTTP_NEED_MORE && want == cap) {
            /* The parser sees at most cap bytes: a request that needs more (a chunked
             * encoding larger than its body) can never complete, and the input would grow. */
            err = (struct http_error){.status = 413, .code = "body_too_large"};
            snprintf(err.text, sizeof(err.text), "request too large");
            refuse(c, &err);
            return;
        }
        if (rc == HTTP_NEED_MORE) {
            track_request(c, data, want);
            return;
        }
        if (rc == HTTP_ERROR) {
            refuse(c, &err);
            return;
        }
        request_done(c);
        s->requests++;
        struct hdx_http_reply r = {0};
        route(h, c, &req, &r);
        /* A body may hold a password: its bytes do not stay in freed buffers. */
        if (req.body_len) explicit_bzero(data, used);
        if (r.deferred) {
            s->deferred = 1;
            s->deferred_keep_alive = req.keep_alive;
            s->deferred_head = strcmp(req.method, "HEAD") == 0;
            c->inflight++;
            hdx_conn_pause(c, HDX_PAUSE_SESSION);
            free(r.body);
            http_req_free(&req);
            evbuffer_drain(in, used);
            return;
        }
        if (r.stream) {
            start_stream(c, &r);
            free(r.body);
            http_req_free(&req);
            if (r.stream_read) { /* what follows the request is the new protocol's */
                evbuffer_drain(in, used);
                if (evbuffer_get_length(in)) r.stream_read(r.stream_arg, in);
            } else {
                evbuffer_drain(in, evbuffer_get_length(in));
            }
            return;
        }
        if (!req.keep_alive) r.close = 1;
        if (r.status >= 400)
            hdx_info("http_request", "peer=%s sender=%s method=%s status=%d", c->peer,
                     c->principal[0] ? c->principal : "-", req.method, r.status);
        write_reply(c, &r, strcmp(req.method, "HEAD") != 0);
        free(r.body);
        http_req_free(&req);
        evbuffer_drain(in, used);
        if (r.close) {
            hdx_conn_close(c, 0);
            return;
        }
    }
}

void hdx_http_finish(struct hdx_conn *c, struct hdx_http_reply *r)
{
    struct http_conn *s = c->session;
    if (!s || !s->deferred) {
        free(r->body);
        r->body = NULL;
        return;
    }
    s->deferred = 0;
    if (!c->closing) {
        if (!s->deferred_keep_alive) r->close = 1;
        if (r->status >= 400)
            hdx_info("http_request", "peer=%s sender=%s status=%d", c->peer,
                     c->principal[0] ? c->principal : "-", r->status);
        write_reply(c, r, !s->deferred_head);
    }
    free(r->body);
    r->body = NULL;
    hdx_conn_settle(c);
    if (c->closing) return;
    if (r->close)
        hdx_conn_close(c, 0);
    else
        hdx_conn_resume(c, HDX_PAUSE_SESSION);
}

/* ---------- session ops ---------- */

static int http_role_allowed(const char *role)
{
    return 1; /* anonymous or any enrolled principal: each request is authorized on its own */
}

static int http_open(struct hdx_conn *c)
{
    struct hdx_http *h = c->ctx;
    struct http_conn *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    c->session = s;
    s->deadline = evtimer_new(hdx_conn_base(c), on_deadline, c);
    if (!s->deadline) return -1;
    struct timeval idle = {h->conf->http_idle_timeout_s, 0};
    struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &idle, &wr);
    return 0;
}

static void http_refuse_peer(struct hdx_conn *c, const char *why)
{
    struct hdx_http_reply r = {0};
    hdx_http_error(&r, 403, "forbidden", "this client certificate is not accepted");
    r.close = 1;
    write_reply(c, &r, 1);
    free(r.body);
}

static void http_drained(struct hdx_conn *c)
{
    struct http_conn *s = c->session;
    if (s && s->streaming && s->stream_drained && !c->closing) s->stream_drained(s->stream_arg);
}

static void http_free(struct hdx_conn *c)
{
    struct http_conn *s = c->session;
    if (!s) return;
    if (s->streaming && s->stream_closed) s->stream_closed(s->stream_arg);
    if (s->deadline) event_free(s->deadline);
    free(s);
    c->session = NULL;
}

static void http_describe(const struct hdx_conn *c, char *buf, size_t cap)
{
    const struct http_conn *s = c->session;
    if (s) snprintf(buf, cap, " requests=%llu", (unsigned long long)s->requests);
}

const struct hdx_session_ops hdx_http_ops = {
    .port = "http",
    .role_allowed = http_role_allowed,
    .open = http_open,
    .refuse = http_refuse_peer,
    .read = http_read,
    .drained = http_drained,
    .free = http_free,
    .describe = http_describe,
};

/* ---------- built-in routes ---------- */

static void healthz(void *arg, struct hdx_conn *c, const struct http_req *req,
                    struct hdx_http_reply *r)
{
    hdx_http_json(r, 200, "{\"status\":\"ok\"}");
}

int hdx_http_new(const struct hdx_conf *conf, struct hdx_http **out)
{
    struct hdx_http *h = calloc(1, sizeof(*h));
    if (!h) return HDX_E_NOMEM;
    h->conf = conf;
    http_limits_default(&h->limits);
    h->limits.max_body = conf->http_max_body;
    static const struct hdx_http_route health = {"GET", "/healthz", healthz, NULL};
    hdx_http_route_add(h, &health);
    *out = h;
    return HDX_OK;
}

int hdx_http_route_add(struct hdx_http *h, const struct hdx_http_route *r)
{
    if (h->nroutes == ROUTES_MAX) return HDX_E_TOOBIG;
    h->routes[h->nroutes++] = *r;
    return HDX_OK;
}

void hdx_http_free(struct hdx_http *h)
{
    free(h);
}
