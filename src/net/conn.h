/* conn: hdxd's connection layer, shared by every protocol (DESIGN "net").
 * It owns the listeners, admission, the TLS handshake and its deadline, the registry check
 * of the peer, back-pressure on unsent output, closing and reaping. A protocol is a session
 * module (net/mllp_session.h, net/sub_session.h) that supplies hdx_session_ops; adding one
 * means adding a module and a listener, nothing here.
 *
 * Admission (docs/CONFIGURATION.md, [net]). Separate budgets, each a count of live (not
 * closing) connections: still in the handshake, all ports (net.max_handshakes); still in the
 * handshake from one source address, an IPv4 address or an IPv6 /64 (net.max_per_source);
 * per port (its max_connections); in total (net.max_connections); authenticated, per
 * principal (net.max_per_principal). A new connection that finds an unauthenticated budget
 * full sheds the oldest unauthenticated connection within it (one that has sent nothing yet
 * before one whose handshake is under way); one that finds its port or the
 * total full sheds the oldest unauthenticated connection there and is refused only when all
 * of them are authenticated. So connections that never authenticate, however many and from
 * wherever, cannot keep an enrolled device out. A principal over its cap is refused after
 * the handshake, through its session's refusal (protocol-correct), then closed.
 *
 * Authority: after the handshake the peer's certificate CN names a principal that must be
 * enrolled in the store's registry, not revoked, with this very certificate; its role is the
 * registry's, never the certificate's OU.
 *
 * Output: a connection whose unsent bytes pass net.max_unsent is not read until they drain to
 * half; sessions check hdx_conn_output_full() in loops that answer several requests at once.
 *
 * Lifetime: sessions never free a connection. hdx_conn_close() marks it; the layer frees it
 * from the loop once nothing is in flight (hdx_conn.inflight, answers owed) and, unless the
 * close was forced, its output has been written.
 * Thread: the network thread only. */
#ifndef HDX_CONN_H
#define HDX_CONN_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "core/conf.h"
#include "net/tls.h"
#include "store/record.h"
#include "store/store.h"

struct hdx_net;
struct hdx_conn;

struct hdx_session_ops {
    const char *port; /* "mllp", "sub", "legacy": in log lines */
    /* 1 when a principal of this registry role may use the port. */
    int (*role_allowed)(const char *role);
    /* The peer is admitted: set up the session (hdx_conn.session). Non-zero closes it. */
    int (*open)(struct hdx_conn *c);
    /* A protocol-correct refusal written before a close (NULL: the connection just closes). */
    void (*refuse)(struct hdx_conn *c, const char *why);
    /* Input is waiting (never called while the connection is paused or closing). */
    void (*read)(struct hdx_conn *c);
    /* Output fell under the low mark. */
    void (*drained)(struct hdx_conn *c);
    /* The connection is being freed: release hdx_conn.session. */
    void (*free)(struct hdx_conn *c);
    /* Optional: " key=value ..." for the connection's close line. */
    void (*describe)(const struct hdx_conn *c, char *buf, size_t cap);
};

enum hdx_conn_pause { HDX_PAUSE_OUTPUT = 1, HDX_PAUSE_SESSION = 2 };

/* What sessions read and set. Everything else is the layer's. */
struct hdx_conn {
    struct bufferevent *bev;
    const struct hdx_session_ops *ops;
    void *ctx;     /* the listener's context, for the session */
    void *session; /* the session's state */
    char peer[64]; /* "ADDR:PORT" */
    char principal[HDX_SENDER_MAX + 1], role[16], serial[41]; /* "" on an anonymous one */
    char cert_sha256[65];                                     /* of the peer's certificate */
    int tls; /* 0: the plaintext (allow-listed) listener */
    int established, closing;
    int inflight; /* answers owed: the connection is not freed before they are written */
    /* ---- the layer's ---- */
    struct hdx_conn *prev, *next;       /* every connection */
    struct hdx_conn *hs_prev, *hs_next; /* unauthenticated ones, oldest first */
    struct hdx_listener *lis;
    struct hdx_net *net;
    struct event *hs_timer;
    int force_close, paused, counted;
    int metered, metric_proto; /* counted in hdx_connections_open (core/metrics.h) */
    uint8_t src[16];           /* source key: IPv4 address or IPv6 /64 */
    int src_family;
};

struct hdx_listener_spec {
    const char *addr; /* HOST:PORT */
    const struct hdx_session_ops *ops;
    void *ctx;
    int tls;             /* 0: plaintext, only for addresses in allow */
    int cert_optional;   /* TLS without a client certificate is admitted anonymously (HTTPS:
                          * people have none); one that is presented is checked as always */
    const char *allow;   /* comma-separated addresses or CIDRs (plaintext listeners) */
    int max_connections; /* this port's budget */
    size_t write_low;    /* ops->drained runs when output drains to this (0: max_unsent / 2) */
};

/* audit: how audit records reach the log (every TLS authentication, success or failure, is
 * one: failures at most 20 a second, the rest summed up in one record a second). */
int hdx_net_new(const struct hdx_conf *conf, struct event_base *base, struct hdx_tls *tls,
                struct hdx_store *ro_store, void (*audit)(void *arg, const struct hdx_audit *a),
                void *audit_arg, struct hdx_net **out);
/* Listens; why receives the reason on failure. */
int hdx_net_listen(struct hdx_net *n, const struct hdx_listener_spec *spec, char *why, size_t cap);
/* Closes every listener and connection (in-flight items are owed to nobody after this). */
void hdx_net_free(struct hdx_net *n);

/* Stops accepting and asks every connection to close once its answers are written. */
void hdx_net_stop(struct hdx_net *n);
/* Answers still owed over all connections. */
size_t hdx_net_inflight(const struct hdx_net *n);
size_t hdx_net_count(const struct hdx_net *n);
/* Closes connections whose certificate the current CRL revokes. */
void hdx_net_sweep_revoked(struct hdx_net *n);
/* Writes the summary line of suppressed handshake-failure logs when its window passed. */
void hdx_net_tick(struct hdx_net *n);
/* Frees the connections that are closed and owe nothing (also runs by itself on a close). */
void hdx_net_reap(struct hdx_net *n);

/* Marks c closing (reads stop); force: do not wait for its output to be written. */
void hdx_conn_close(struct hdx_conn *c, int force);
/* One answer owed by c was written (or can no longer be): the reaper may free it. */
void hdx_conn_settle(struct hdx_conn *c);
/* Pauses or resumes reading for one cause; resuming the last cause calls ops->read. */
void hdx_conn_pause(struct hdx_conn *c, enum hdx_conn_pause why);
void hdx_conn_resume(struct hdx_conn *c, enum hdx_conn_pause why);
/* 1 when c's unsent output is past net.max_unsent (reading is paused until it drains). */
int hdx_conn_output_full(struct hdx_conn *c);
/* Writes c's output in this pass of the loop instead of after the next poll: for answers
 * someone waits for (an ACK). What is added before the pass goes on still goes in one write.
 * unsent: hdx_conn_unsent() before the caller added its answer; only an answer to a connection
 * with nothing unsent is hurried (output already waiting goes when the socket is writable, and
 * the write timeout keeps counting from then: a reader that stalls is still cut off). */
size_t hdx_conn_unsent(const struct hdx_conn *c);
void hdx_conn_write_soon(struct hdx_conn *c, size_t unsent);
/* An audit record about c (principal, role, source and certificate filled in from c). */
void hdx_conn_audit(const struct hdx_conn *c, struct hdx_audit *a);
/* The close line: EVENT peer= sender= reason=REASON port= and the session's fields. */
void hdx_conn_log_close(struct hdx_conn *c, const char *event, const char *reason);
struct event_base *hdx_conn_base(const struct hdx_conn *c);
const struct hdx_conf *hdx_conn_conf(const struct hdx_conn *c);
/* The read-only store handle of the network thread. */
struct hdx_store *hdx_conn_store(const struct hdx_conn *c);

/* The write timeout of every established connection (a peer that stops reading ends). */
#define HDX_CONN_WRITE_TIMEOUT_S 10

#endif
