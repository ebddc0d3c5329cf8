/* ws: see ws.h. */
#include "net/ws.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "core/err.h"
#include "core/log.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct hdx_ws {
    struct hdx_conn *c;
    wslay_event_context_ptr ctx;
    const struct hdx_ws_ops *ops;
    void *arg;
    struct evbuffer *in; /* during stream_read only */
    int closing;
};

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct hdx_ws *w = user;
    int n = w->in ? evbuffer_remove(w->in, buf, len) : 0;
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct hdx_ws *w = user;
    if (w->c->closing || evbuffer_add(bufferevent_get_output(w->c->bev), data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int ws_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    randombytes_buf(buf, len); /* a server never masks; wslay asks only a client */
    return 0;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    struct hdx_ws *w = user;
    if (arg->opcode == WSLAY_TEXT_FRAME && !w->closing && w->ops->text)
        w->ops->text(w->arg, w, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME)
        hdx_ws_close(w, WSLAY_CODE_UNSUPPORTED_DATA, "text messages only");
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .genmask_callback = ws_genmask,
    .on_msg_recv_callback = ws_msg,
};

/* Sends what wslay has queued; the connection ends once both directions are closed. */
static void ws_flush(struct hdx_ws *w)
{
    if (w->c->closing) return;
    if (wslay_event_send(w->ctx) != 0 ||
        (!wslay_event_want_read(w->ctx) && !wslay_event_want_write(w->ctx)))
        hdx_conn_close(w->c, 0);
}

static void ws_read(void *arg, struct evbuffer *in)
{
    struct hdx_ws *w = arg;
    w->in = in;
    int rc = wslay_event_recv(w->ctx);
    w->in = NULL;
    if (rc != 0) {
        hdx_info("ws_protocol_error", "peer=%s rc=%d", w->c->peer, rc);
        evbuffer_drain(in, evbuffer_get_length(in));
        hdx_conn_close(w->c, 0);
        return;
    }
    ws_flush(w);
}

static void ws_drained(void *arg)
{
    struct hdx_ws *w = arg;
    if (w->ops->drained && !w->closing) w->ops->drained(w->arg, w);
}

static void ws_closed(void *arg)
{
    struct hdx_ws *w = arg;
    if (w->ops->closed) w->ops->closed(w->arg, w);
    wslay_event_context_free(w->ctx);
    free(w);
}

/* 1 when the comma-separated header value holds token (case-insensitive). */
static int has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *s = value; s && *s;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - s) == tl && !strncasecmp(s, token, tl)) return 1;
        s = e;
    }
    return 0;
}

int hdx_ws_accept(struct hdx_conn *c, const struct http_req *req, struct hdx_http_reply *r,
                  const struct hdx_ws_ops *ops, void *arg, struct hdx_ws **out)
{
    *out = NULL;
    const char *upgrade = http_header_get(req, "upgrade");
    const char *conn = http_header_get(req, "connection");
    const char *version = http_header_get(req, "sec-websocket-version");
    const char *key = http_header_get(req, "sec-websocket-key");
    uint8_t raw[32];
    size_t raw_len = 0;
    if (strcmp(req->method, "GET") != 0 || !upgrade || strcasecmp(upgrade, "websocket") != 0 ||
        !conn || !has_token(conn, "upgrade") || !key || strlen(key) != 24 ||
        sodium_base642bin(raw, sizeof(raw), key, 24, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        raw_len != 16) {
        hdx_http_error(r, 400, "bad_request", "a WebSocket handshake (RFC 6455) is expected here");
        return HDX_E_INVAL;
    }
    if (!version || strcmp(version, "13") != 0) {
        hdx_http_error(r, 426, "upgrade_required", "Sec-WebSocket-Version 13 only");
        snprintf(r->extra, sizeof(r->extra), "Sec-WebSocket-Version: 13\r\n");
        return HDX_E_INVAL;
    }
    char text[24 + sizeof(WS_GUID)];
    snprintf(text, sizeof(text), "%s%s", key, WS_GUID);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    char accept[40];
    if (!EVP_Digest(text, strlen(text), digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
        return HDX_E_NOMEM;
    sodium_bin2base64(accept, sizeof(accept), digest, dlen, sodium_base64_VARIANT_ORIGINAL);
    struct hdx_ws *w = calloc(1, sizeof(*w));
    if (!w) return HDX_E_NOMEM;
    w->c = c;
    w->ops = ops;
    w->arg = arg;
    if (wslay_event_context_server_init(&w->ctx, &ws_callbacks, w) != 0) {
        free(w);
        return HDX_E_NOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(w->ctx, HDX_WS_MSG_MAX);
    snprintf(r->extra, sizeof(r->extra),
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
    r->status = 101;
    r->stream = 1;
    r->upgrade = 1;
    r->stream_read = ws_read;
    r->stream_drained = ws_drained;
    r->stream_closed = ws_closed;
    r->stream_arg = w;
    *out = w;
    return HDX_OK;
}

int hdx_ws_send_text(struct hdx_ws *w, const void *data, size_t len)
{
    if (w->closing || w->c->closing) return HDX_E_IO;
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = data, .msg_length = len};
    if (wslay_event_queue_msg(w->ctx, &m) != 0) return HDX_E_IO;
    ws_flush(w);
    return HDX_OK;
}

size_t hdx_ws_queued(const struct hdx_ws *w)
{
    return evbuffer_get_length(bufferevent_get_output(w->c->bev)) +
           wslay_event_get_queued_msg_length(w->ctx);
}

void hdx_ws_close(struct hdx_ws *w, uint16_t code, const char *reason)
{
    if (w->closing) return;
    w->closing = 1;
    wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    ws_flush(w);
}

const char *hdx_ws_peer(const struct hdx_ws *w)
{
    return w->c->peer;
}
