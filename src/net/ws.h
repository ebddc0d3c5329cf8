/* ws: a WebSocket (RFC 6455) server end on an upgraded HTTPS request (net/http_session.h
 * stream with upgrade). The opening handshake is checked here (GET, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version 13, a Sec-WebSocket-Key of 16 bytes in base64);
 * framing, masking, fragments, ping/pong and the closing handshake are wslay's (libwslay, the
 * Debian library). A message from the client is at most HDX_WS_MSG_MAX bytes; a bigger one
 * or a protocol error closes the connection (wslay sends the close code RFC 6455 names).
 * Lifetime: the connection owns the ws; closed(arg) runs once when it goes, after which the ws
 * is freed and must not be used. Thread: the network thread. */
#ifndef HDX_NET_WS_H
#define HDX_NET_WS_H

#include <stddef.h>
#include <stdint.h>

#include "net/http_session.h"

#define HDX_WS_MSG_MAX 4096

struct hdx_ws;

struct hdx_ws_ops {
    void (*text)(void *arg, struct hdx_ws *w, const uint8_t *msg, size_t len);
    void (*drained)(void *arg, struct hdx_ws *w); /* output fell under the low mark */
    void (*closed)(void *arg, struct hdx_ws *w);
};

/* The request's upgrade: HDX_OK with the 101 answer in r (r->stream, r->upgrade and its
 * callbacks set) and *out, or HDX_E_INVAL with a 400 in r (not a WebSocket handshake), or
 * HDX_E_NOMEM. */
int hdx_ws_accept(struct hdx_conn *c, const struct http_req *req, struct hdx_http_reply *r,
                  const struct hdx_ws_ops *ops, void *arg, struct hdx_ws **out);
/* Queues a text message and sends it. HDX_OK, or HDX_E_IO once closing. */
int hdx_ws_send_text(struct hdx_ws *w, const void *data, size_t len);
/* Bytes not yet written to the socket. */
size_t hdx_ws_queued(const struct hdx_ws *w);
/* Starts the closing handshake (code, reason), then the connection ends. */
void hdx_ws_close(struct hdx_ws *w, uint16_t code, const char *reason);
const char *hdx_ws_peer(const struct hdx_ws *w);

#endif
