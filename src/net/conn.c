#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"

#define ALLOW_MAX 32
/* Failed handshakes and shed or refused connections are logged at most this often a second;
 * the rest are counted and summed up in one line (a scanner must not flood the log). */
#define NOISY_LOG_PER_S 20

struct allow_entry {
    int family;
    uint8_t addr[16];
    int prefix;
};

struct hdx_listener {
    struct hdx_listener *next;
    struct hdx_net *net;
    struct evconnlistener *evl;
    const struct hdx_session_ops *ops;
    void *ctx;
    int tls, cert_optional;
    int max_connections;
    size_t write_low;
    size_t live; /* live connections on this port */
    struct allow_entry allow[ALLOW_MAX];
    size_t nallow;
};

/* A log line that an attacker can make as often as they like. */
struct noisy_log {
    int64_t window_us;
    unsigned logged;
    uint64_t suppressed;
};

struct hdx_net {
    const struct hdx_conf *conf;
    struct event_base *base;
    struct hdx_tls *tls;
    struct hdx_store *ro_store;
    struct hdx_listener *listeners;
    struct hdx_conn *conns;              /* every allocated connection */
    struct hdx_conn *hs_head, *hs_tail;  /* live and unauthenticated, oldest first */
    size_t live, handshaking, allocated; /* live: counted in the budgets (not closing) */
    struct event *reap_ev;
    int stopping;
    uint64_t refused, shed;
    struct noisy_log hs_log, admit_log, audit_fail;
    void (*audit)(void *arg, const struct hdx_audit *a);
    void *audit_arg;
};

/* ---------- noisy log lines ---------- */

static void noisy_flush(struct noisy_log *l, const char *event, int64_t now)
{
    if (now - l->window_us < 1000000) return;
    if (l->suppressed)
        hdx_warn(event, "count=%llu window_ms=%lld limit_per_s=%d",
                 (unsigned long long)l->suppressed, (long long)((now - l->window_us) / 1000),
                 NOISY_LOG_PER_S);
    l->window_us = now;
    l->logged = 0;
    l->suppressed = 0;
}

static int noisy_allowed(struct noisy_log *l, const char *event)
{
    noisy_flush(l, event, hdx_monotonic_us());
    if (l->logged < NOISY_LOG_PER_S) {
        l->logged++;
        return 1;
    }
    l->suppressed++;
    return 0;
}

#define HS_SUPPRESSED "tls_handshake_failed_suppressed"
#define ADMIT_SUPPRESSED "connection_admission_suppressed"

/* Failed authentications are audited one by one up to NOISY_LOG_PER_S a second; the rest
 * in one record with their count (a flood must not fill the log). */
static void audit_failures_flush(struct hdx_net *n, int64_t now)
{
    struct noisy_log *l = &n->audit_fail;
    if (now - l->window_us < 1000000) return;
    if (l->suppressed && n->audit) {
        char detail[64];
        snprintf(detail, sizeof(detail), "failed authentications not audited one by one");
        struct hdx_audit a = {.event = "auth",
                              .action = "tls",
                              .outcome = "failure",
                              .reason = "suppressed",
                              .count = l->suppressed,
                              .detail = detail};
        n->audit(n->audit_arg, &a);
    }
    l->window_us = now;
    l->logged = 0;
    l->suppressed = 0;
}

void hdx_net_tick(struct hdx_net *n)
{
    int64_t now = hdx_monotonic_us();
    audit_failures_flush(n, now);
    if (n->hs_log.suppressed) noisy_flush(&n->hs_log, HS_SUPPRESSED, now);
    if (n->admit_log.suppressed) noisy_flush(&n->admit_log, ADMIT_SUPPRESSED, now);
}

/* ---------- budgets ---------- */

static void hs_unlink(struct hdx_net *n, struct hdx_conn *c)
{
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else if (n->hs_head == c)
        n->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else if (n->hs_tail == c)
        n->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
}

/* c stops counting in every budget: at its close, not at its free, so that a shed
 * connection makes room at once. */
static void uncount(struct hdx_conn *c)
{
    struct hdx_net *n = c->net;
    if (c->metered) {
        c->metered = 0;
        hdx_metric_connections((enum hdx_metric_proto)c->metric_proto, -1);
    }
    if (!c->counted) return;
    c->counted = 0;
    n->live--;
    c->lis->live--;
    if (!c->established && c->tls) {
        hs_unlink(n, c);
        n->handshaking--;
    }
}

static void source_key(const struct sockaddr *sa, uint8_t key[16], int *family)
{
    memset(key, 0, 16);
    *family = sa->sa_family;
    if (sa->sa_family == AF_INET)
        memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6) /* one host's addresses share a /64 */
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 8);
}

/* 1 when nothing has come from c yet: not one byte of a ClientHello read or waiting. Such a
 * connection is shed before one that is under way, so that a flood of connections that
 * never speak cannot cut short an enrolled device's handshake, whatever its timing. */
static int silent(struct hdx_conn *c)
{
    SSL *ssl = c->tls && c->bev ? bufferevent_openssl_get_ssl(c->bev) : NULL;
    int avail = 0;
    if (!ssl) return 0;
    BIO *r = SSL_get_rbio(ssl);
    if (r && BIO_number_read(r) > 0) return 0;
    if (ioctl(bufferevent_getfd(c->bev), FIONREAD, &avail) != 0) return 1;
    return avail == 0;
}

/* The oldest unauthenticated connection from src (NULL: any source) on lis (NULL: any),
 * silent ones first. */
static struct hdx_conn *oldest_unauth(struct hdx_net *n, const uint8_t *src, int family,
                                      const struct hdx_listener *lis)
{
    for (int pass = 0; pass < 2; pass++)
        for (struct hdx_conn *c = n->hs_head; c; c = c->hs_next)
            if ((!src || (c->src_family == family && memcmp(c->src, src, 16) == 0)) &&
                (!lis || c->lis == lis) && (pass || silent(c)))
                return c;
    return NULL;
}

static size_t unauth_from(struct hdx_net *n, const uint8_t *src, int family)
{
    size_t k = 0;
    for (struct hdx_conn *c = n->hs_head; c; c = c->hs_next)
        k += c->src_family == family && memcmp(c->src, src, 16) == 0;
    return k;
}

static void shed(struct hdx_conn *c, const char *budget)
{
    struct hdx_net *n = c->net;
    n->shed++;
    if (noisy_allowed(&n->admit_log, ADMIT_SUPPRESSED))
        hdx_warn("connection_shed", "peer=%s port=%s budget=%s reason=\"oldest unauthenticated\"",
                 c->peer, c->ops->port, budget);
    hdx_conn_close(c, 1);
}

/* Makes room for one more connection on lis from src, shedding unauthenticated ones as the
 * budgets say (conn.h). Returns 0, or -1 when the new one must be refused. */
static int make_room(struct hdx_net *n, struct hdx_listener *lis, const uint8_t *src, int family)
{
    const struct hdx_conf *conf = n->conf;
    struct hdx_conn *v;
    if (lis->tls) {
        while (n->handshaking >= (size_t)conf->net_max_handshakes) {
            if (!(v = oldest_unauth(n, NULL, 0, NULL))) return -1;
            shed(v, "net.max_handshakes");
        }
        while (unauth_from(n, src, family) >= (size_t)conf->net_max_per_source) {
            if (!(v = oldest_unauth(n, src, family, NULL))) return -1;
            shed(v, "net.max_per_source");
        }
    }
    while (lis->live >= (size_t)lis->max_connections) {
        if (!(v = oldest_unauth(n, NULL, 0, lis))) return -1;
        shed(v, "port max_connections");
    }
    while (n->live >= (size_t)conf->net_max_connections) {
        if (!(v = oldest_unauth(n, NULL, 0, NULL))) return -1;
        shed(v, "net.max_connections");
    }
    return 0;
}

static size_t principal_live(struct hdx_net *n, const char *principal)
{
    size_t k = 0;
    for (struct hdx_conn *c = n->conns; c; c = c->next)
        k += c->counted && c->established && strcmp(c->principal, principal) == 0;
    return k;
}

/* ---------- lifetime ---------- */

static void conn_free(struct hdx_conn *c)
{
    struct hdx_net *n = c->net;
    uncount(c);
    if (c->ops && c->ops->free) c->ops->free(c);
    if (c->hs_timer) event_free(c->hs_timer);
    if (c->bev) bufferevent_free(c->bev); /* closes the socket and frees the SSL */
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    n->allocated--;
    free(c);
}

void hdx_net_reap(struct hdx_net *n)
{
    for (struct hdx_conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (!c->closing || c->inflight > 0) continue;
        if (c->force_close || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
    }
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    hdx_net_reap(arg);
}

void hdx_conn_close(struct hdx_conn *c, int force)
{
    if (force) c->force_close = 1;
    if (!c->closing) {
        c->closing = 1;
        uncount(c);
        if (c->bev) bufferevent_disable(c->bev, EV_READ);
    }
    event_active(c->net->reap_ev, EV_TIMEOUT, 0);
}

void hdx_conn_settle(struct hdx_conn *c)
{
    if (c->inflight > 0) c->inflight--;
    if (c->closing && c->inflight == 0) event_active(c->net->reap_ev, EV_TIMEOUT, 0);
}

void hdx_conn_pause(struct hdx_conn *c, enum hdx_conn_pause why)
{
    if (!c->paused && c->bev) bufferevent_disable(c->bev, EV_READ);
    c->paused |= (int)why;
}

void hdx_conn_resume(struct hdx_conn *c, enum hdx_conn_pause why)
{
    if (!(c->paused & (int)why)) return;
    c->paused &= ~(int)why;
    if (c->paused || c->closing) return;
    bufferevent_enable(c->bev, EV_READ);
    /* Input may already be buffered: no new read event would come for it. */
    if (c->established && evbuffer_get_length(bufferevent_get_input(c->bev))) c->ops->read(c);
}

int hdx_conn_output_full(struct hdx_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) > c->net->conf->net_max_unsent;
}

/* A bufferevent writes added output only once epoll reports the socket writable: one more
 * pass of the loop per answer, and two epoll_ctl calls (EPOLLOUT on, then off). Running its
 * write callback from the active queue writes in this pass, and the changelist
 * (EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) cancels the EPOLLOUT it had queued when the write
 * empties the buffer; a socket that cannot take it all keeps EPOLLOUT as before. ev_write is
 * public (event2/bufferevent_struct.h); both the socket and the OpenSSL bufferevent of
 * libevent 2.1 write from it. Never during a handshake, whose ev_write drives SSL_accept. */
size_t hdx_conn_unsent(const struct hdx_conn *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

/* Only from an empty buffer: libevent restarts a persistent event's timeout whenever its
 * callback runs (event_persist_closure), so hurrying every write to a stalled reader would
 * keep its write timeout from ever firing. From empty, the bufferevent has just added ev_write
 * with a fresh timeout anyway. */
void hdx_conn_write_soon(struct hdx_conn *c, size_t unsent)
{
    if (!unsent && c->bev && c->established && hdx_conn_unsent(c))
        event_active(&c->bev->ev_write, EV_WRITE, 1);
}

struct event_base *hdx_conn_base(const struct hdx_conn *c)
{
    return c->net->base;
}

const struct hdx_conf *hdx_conn_conf(const struct hdx_conn *c)
{
    return c->net->conf;
}

struct hdx_store *hdx_conn_store(const struct hdx_conn *c)
{
    return c->net->ro_store;
}

void hdx_conn_log_close(struct hdx_conn *c, const char *event, const char *reason)
{
    char r[160], more[160] = "";
    if (c->ops->describe) c->ops->describe(c, more, sizeof(more));
    hdx_info(event, "peer=%s sender=%s reason=%s port=%s%s", c->peer,
             c->principal[0] ? c->principal : "-", hdx_log_str(r, sizeof(r), reason), c->ops->port,
             more);
}

/* ---------- bufferevent callbacks ---------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct hdx_conn *c = arg;
    if (c->closing || !c->established || c->paused) return;
    if (hdx_conn_output_full(c)) {
        hdx_conn_pause(c, HDX_PAUSE_OUTPUT); /* until the peer reads what it was sent */
        return;
    }
    c->ops->read(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct hdx_conn *c = arg;
    if (c->closing) {
        event_active(c->net->reap_ev, EV_TIMEOUT, 0);
        return;
    }
    if ((c->paused & HDX_PAUSE_OUTPUT) &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= c->net->conf->net_max_unsent / 2)
        hdx_conn_resume(c, HDX_PAUSE_OUTPUT);
    if (!c->closing && c->established && c->ops->drained) c->ops->drained(c);
}

void hdx_conn_audit(const struct hdx_conn *c, struct hdx_audit *a)
{
    a->principal = c->principal;
    a->role = c->role;
    a->source = c->peer;
    a->cert = c->cert_sha256;
    if (c->net->audit) c->net->audit(c->net->audit_arg, a);
}

static void audit_auth(struct hdx_conn *c, const char *outcome, const char *reason,
                       const char *detail)
{
    struct hdx_net *n = c->net;
    if (!n->audit || !c->tls) return;
    if (strcmp(outcome, "failure") == 0) {
        audit_failures_flush(n, hdx_monotonic_us());
        if (n->audit_fail.logged >= NOISY_LOG_PER_S) {
            n->audit_fail.suppressed++;
            return;
        }
        n->audit_fail.logged++;
    }
    struct hdx_audit a = {
        .event = "auth", .action = "tls", .outcome = outcome, .reason = reason, .detail = detail};
    hdx_conn_audit(c, &a);
}

static void refuse_peer(struct hdx_conn *c, const char *why)
{
    char w[160];
    hdx_warn("connection_refused", "peer=%s sender=%s serial=%s reason=%s port=%s", c->peer,
             c->principal[0] ? c->principal : "-", c->serial[0] ? c->serial : "-",
             hdx_log_str(w, sizeof(w), why), c->ops->port);
    audit_auth(c, "failure", "refused", why);
    hdx_metric_auth_failure(HDX_METRIC_AUTH_CERTIFICATE);
    if (c->ops->refuse) {
        struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
        bufferevent_set_timeouts(c->bev, NULL, &wr);
        c->ops->refuse(c, why);
        hdx_conn_close(c, 0);
    } else {
        hdx_conn_close(c, 1);
    }
}

/* After the TLS handshake: the certificate chained to our CA and is not on the CRL; now the
 * registry must know the principal, not revoked, with this very certificate. Its role is the
 * registry's: the certificate's OU is only what the CA was told at enrolment. */
static int admit_peer(struct hdx_conn *c, char *why, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct hdx_device d;
    char cert_ou[16];
    if (c->lis->cert_optional && !SSL_get0_peer_certificate(ssl)) {
        if (!c->ops->role_allowed("")) {
            snprintf(why, cap, "a client certificate is required");
            return -1;
        }
        return 0; /* anonymous: the session authenticates each request */
    }
    X509 *cert = SSL_get0_peer_certificate(ssl);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (cert && X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == sizeof(md))
        hdx_hex(md, sizeof(md), c->cert_sha256);
    if (hdx_tls_peer_identity(ssl, c->principal, sizeof(c->principal), cert_ou, sizeof(cert_ou),
                              c->serial, sizeof(c->serial)) != HDX_OK) {
        snprintf(why, cap, "certificate has no subject CN");
        return -1;
    }
    if (hdx_store_device_get(c->net->ro_store, c->principal, &d) != HDX_OK) {
        snprintf(why, cap, "device not enrolled");
        return -1;
    }
    if (d.revoked_us || strcmp(d.serial, c->serial) != 0) {
        snprintf(why, cap, "certificate revoked or superseded");
        return -1;
    }
    snprintf(c->role, sizeof(c->role), "%s", d.role);
    if (!c->ops->role_allowed(c->role)) {
        snprintf(why, cap, "role %s may not use this port", c->role);
        return -1;
    }
    if (principal_live(c->net, c->principal) >= (size_t)c->net->conf->net_max_per_principal) {
        snprintf(why, cap, "too many connections for this principal (net.max_per_principal=%d)",
                 c->net->conf->net_max_per_principal);
        return -1;
    }
    return 0;
}

static int metric_proto(const char *port)
{
    return !strcmp(port, "legacy")        ? HDX_METRIC_LEGACY
           : !strcmp(port, "http")        ? HDX_METRIC_HTTP
           : !strcmp(port, "sub")         ? HDX_METRIC_SUB
           : !strcmp(port, "dicom")       ? HDX_METRIC_DICOM
           : !strcmp(port, "dicom-plain") ? HDX_METRIC_DICOM_PLAIN
                                          : HDX_METRIC_MLLP;
}

/* The peer is who it says and may be here: it leaves the unauthenticated budgets. */
static void establish(struct hdx_conn *c)
{
    struct hdx_net *n = c->net;
    if (c->counted && c->tls) {
        hs_unlink(n, c);
        n->handshaking--;
    }
    c->established = 1;
    c->metric_proto = metric_proto(c->ops->port);
    c->metered = 1;
    hdx_metric_connections((enum hdx_metric_proto)c->metric_proto, 1);
    evtimer_del(c->hs_timer);
    struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wr);
}

static void open_session(struct hdx_conn *c)
{
    if (c->ops->open(c) != 0) {
        hdx_conn_close(c, 1);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(c->bev)))
        on_read(c->bev, c); /* data may have arrived with the handshake's last flight */
}

static void on_connected(struct hdx_conn *c)
{
    char why[160];
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (admit_peer(c, why, sizeof(why)) != 0) {
        refuse_peer(c, why);
        return;
    }
    establish(c);
    if (c->principal[0]) audit_auth(c, "success", "-", NULL);
    hdx_info("connection_open", "peer=%s sender=%s role=%s serial=%s tls=%s cipher=%s port=%s",
             c->peer, c->principal[0] ? c->principal : "-", c->role[0] ? c->role : "-",
             c->serial[0] ? c->serial : "-", SSL_get_version(ssl), SSL_get_cipher(ssl),
             c->ops->port);
    open_session(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct hdx_conn *c = arg;
    char why[200], w[220];
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(c);
        return;
    }
    if (c->closing) {
        hdx_conn_close(c, 1);
        return;
    }
    if (!c->established && c->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        hdx_metric_tls_handshake_failed();
        if (ssl && SSL_get_verify_result(ssl) != X509_V_OK)
            hdx_metric_auth_failure(HDX_METRIC_AUTH_CERTIFICATE);
        if (what & BEV_EVENT_TIMEOUT)
            snprintf(why, sizeof(why), "handshake timeout");
        else
            hdx_tls_failure_reason(bufferevent_openssl_get_ssl(bev),
                                   bufferevent_get_openssl_error(bev), why, sizeof(why));
        if (noisy_allowed(&c->net->hs_log, HS_SUPPRESSED))
            hdx_warn("tls_handshake_failed", "peer=%s reason=%s", c->peer,
                     hdx_log_str(w, sizeof(w), why));
    } else if (what & BEV_EVENT_TIMEOUT) {
        hdx_conn_log_close(c, "connection_timeout", (what & BEV_EVENT_WRITING) ? "write" : "idle");
    } else if (what & BEV_EVENT_EOF) {
        hdx_conn_log_close(c, "connection_closed", "peer closed");
    } else {
        int sock_err = EVUTIL_SOCKET_ERROR();
        unsigned long e = c->tls ? bufferevent_get_openssl_error(bev) : 0;
        const char *why_s = e ? ERR_reason_error_string(e) : NULL;
        hdx_conn_log_close(c, "connection_error",
                           why_s      ? why_s
                           : sock_err ? evutil_socket_error_to_string(sock_err)
                                      : "reset");
    }
    hdx_conn_close(c, 1);
}

static void on_handshake_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    if (c->established || c->closing) return;
    hdx_metric_tls_handshake_failed();
    /* An absolute deadline: a client dribbling its handshake byte by byte still ends. */
    if (noisy_allowed(&c->net->hs_log, HS_SUPPRESSED))
        hdx_warn("tls_handshake_failed", "peer=%s reason=\"handshake timeout\" timeout_ms=%d",
                 c->peer, c->net->conf->tls_handshake_timeout_ms);
    hdx_conn_close(c, 1);
}

/* ---------- accepting ---------- */

static void format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

static int prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static int allowed(const struct hdx_listener *lis, const struct sockaddr *sa)
{
    const uint8_t *addr;
    int family = sa->sa_family;
    if (family == AF_INET)
        addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (family == AF_INET6)
        addr = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    else
        return 0;
    for (size_t i = 0; i < lis->nallow; i++)
        if (lis->allow[i].family == family &&
            prefix_match(lis->allow[i].addr, addr, lis->allow[i].prefix))
            return 1;
    return 0;
}

static void refuse_at_accept(struct hdx_net *n, struct hdx_listener *lis, evutil_socket_t fd,
                             const char *peer)
{
    evutil_closesocket(fd);
    n->refused++;
    if (noisy_allowed(&n->admit_log, ADMIT_SUPPRESSED))
        hdx_warn("connection_limit",
                 "peer=%s port=%s live=%zu port_live=%zu max=%d port_max=%d refused_total=%llu",
                 peer, lis->ops->port, n->live, lis->live, n->conf->net_max_connections,
                 lis->max_connections, (unsigned long long)n->refused);
}

static struct hdx_conn *conn_new(struct hdx_listener *lis, const struct sockaddr *sa,
                                 const char *peer)
{
    struct hdx_net *n = lis->net;
    struct hdx_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->net = n;
    c->lis = lis;
    c->ops = lis->ops;
    c->ctx = lis->ctx;
    c->tls = lis->tls;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    source_key(sa, c->src, &c->src_family);
    c->hs_timer = evtimer_new(n->base, on_handshake_deadline, c);
    if (!c->hs_timer) {
        free(c);
        return NULL;
    }
    c->next = n->conns;
    if (n->conns) n->conns->prev = c;
    n->conns = c;
    n->allocated++;
    c->counted = 1;
    n->live++;
    lis->live++;
    if (c->tls) {
        c->hs_prev = n->hs_tail;
        if (n->hs_tail)
            n->hs_tail->hs_next = c;
        else
            n->hs_head = c;
        n->hs_tail = c;
        n->handshaking++;
    }
    return c;
}

static void start_conn(struct hdx_conn *c, struct bufferevent *bev)
{
    /* An ACK is a small write answering a small read: without TCP_NODELAY, Nagle holds it
     * until the peer's delayed ACK (up to 40 ms) whenever a sender pipelines messages. */
    int one = 1;
    (void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bev;
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    /* on_write runs whenever output is at or under this: reading resumes once it is under
     * net.max_unsent / 2, and the session may refill (a subscriber's catch-up). */
    bufferevent_setwatermark(bev, EV_WRITE, c->lis->write_low, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct hdx_listener *lis = arg;
    struct hdx_net *n = lis->net;
    char peer[64];
    uint8_t src[16];
    int family;
    format_peer(sa, peer, sizeof(peer));
    if (n->stopping) {
        evutil_closesocket(fd);
        return;
    }
    if (!lis->tls && !allowed(lis, sa)) {
        if (noisy_allowed(&n->admit_log, ADMIT_SUPPRESSED))
            hdx_warn("legacy_refused", "peer=%s reason=not_in_legacy.allow", peer);
        evutil_closesocket(fd);
        return;
    }
    source_key(sa, src, &family);
    if (make_room(n, lis, src, family) != 0) {
        refuse_at_accept(n, lis, fd, peer);
        return;
    }
    SSL *ssl = lis->tls ? SSL_new(hdx_tls_ctx(n->tls)) : NULL;
    if (ssl && lis->cert_optional) /* asked for, verified if sent, not required */
        SSL_set_verify(ssl, SSL_VERIFY_PEER, SSL_CTX_get_verify_callback(hdx_tls_ctx(n->tls)));
    struct hdx_conn *c = !lis->tls || ssl ? conn_new(lis, sa, peer) : NULL;
    struct bufferevent *bev = NULL;
    if (c && lis->tls)
        bev = bufferevent_openssl_socket_new(n->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    else if (c)
        bev = bufferevent_socket_new(n->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        hdx_error("accept_failed", "reason=out_of_memory");
        SSL_free(ssl);
        evutil_closesocket(fd);
        if (c) conn_free(c);
        return;
    }
    start_conn(c, bev);
    if (lis->tls) {
        int ms = n->conf->tls_handshake_timeout_ms;
        struct timeval hs = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(c->hs_timer, &hs);
        return;
    }
    /* Plaintext senders have no certificate; the allow-listed address is all we know. */
    char host[HDX_SENDER_MAX - 8];
    snprintf(host, sizeof(host), "%.*s", (int)sizeof(host) - 1, peer);
    char *colon = strrchr(host, ':');
    if (colon) *colon = 0;
    snprintf(c->principal, sizeof(c->principal), "legacy:%s", host);
    snprintf(c->role, sizeof(c->role), "legacy");
    establish(c);
    hdx_warn("insecure_connection", "peer=%s listener=%s tls=none sender=%s", peer, lis->ops->port,
             c->principal);
    open_session(c);
}

static int parse_allow(struct hdx_listener *lis, const char *list, char *why, size_t cap)
{
    char buf[512], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        struct allow_entry *e = &lis->allow[lis->nallow];
        char *slash = strchr(tok, '/');
        if (lis->nallow == ALLOW_MAX) {
            snprintf(why, cap, "legacy.allow: more than %d entries", ALLOW_MAX);
            return HDX_E_CONFIG;
        }
        if (slash) *slash = 0;
        e->family = strchr(tok, ':') ? AF_INET6 : AF_INET;
        int bits = e->family == AF_INET ? 32 : 128;
        char *end = NULL;
        long prefix = slash ? strtol(slash + 1, &end, 10) : bits;
        if (inet_pton(e->family, tok, e->addr) != 1 || (slash && (!slash[1] || *end)) ||
            prefix < 0 || prefix > bits) {
            snprintf(why, cap, "legacy.allow: '%s' is not an address or CIDR", tok);
            return HDX_E_CONFIG;
        }
        e->prefix = (int)prefix;
        lis->nallow++;
    }
    return HDX_OK;
}

int hdx_net_listen(struct hdx_net *n, const struct hdx_listener_spec *spec, char *why, size_t cap)
{
    char host[128];
    int port;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    struct hdx_listener *lis = calloc(1, sizeof(*lis));
    if (!lis) return HDX_E_NOMEM;
    lis->net = n;
    lis->ops = spec->ops;
    lis->ctx = spec->ctx;
    lis->tls = spec->tls;
    lis->cert_optional = spec->cert_optional;
    lis->max_connections = spec->max_connections;
    lis->write_low = spec->write_low ? spec->write_low : n->conf->net_max_unsent / 2;
    if (!spec->tls && parse_allow(lis, spec->allow ? spec->allow : "", why, cap) != HDX_OK) {
        free(lis);
        return HDX_E_CONFIG;
    }
    if (hdx_split_hostport(spec->addr, host, sizeof(host), &port) != 0 ||
        evutil_parse_sockaddr_port(spec->addr, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(why, cap, "'%s' is not HOST:PORT", spec->addr);
        free(lis);
        return HDX_E_CONFIG;
    }
    lis->evl = evconnlistener_new_bind(
        n->base, on_accept, lis, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        4096, (struct sockaddr *)&ss, sslen);
    if (!lis->evl) {
        snprintf(why, cap, "cannot listen on %s: %s", spec->addr, strerror(errno));
        free(lis);
        return HDX_E_CONFIG;
    }
    lis->next = n->listeners;
    n->listeners = lis;
    if (!spec->tls)
        hdx_warn("legacy_listener_enabled", "listen=%s allow=%zu_entries tls=none", spec->addr,
                 lis->nallow);
    return HDX_OK;
}

/* ---------- the whole layer ---------- */

int hdx_net_new(const struct hdx_conf *conf, struct event_base *base, struct hdx_tls *tls,
                struct hdx_store *ro_store, void (*audit)(void *arg, const struct hdx_audit *a),
                void *audit_arg, struct hdx_net **out)
{
    struct hdx_net *n = calloc(1, sizeof(*n));
    if (!n) return HDX_E_NOMEM;
    n->conf = conf;
    n->base = base;
    n->tls = tls;
    n->ro_store = ro_store;
    n->audit = audit;
    n->audit_arg = audit_arg;
    n->reap_ev = event_new(base, -1, 0, on_reap, n);
    if (!n->reap_ev) {
        free(n);
        return HDX_E_NOMEM;
    }
    *out = n;
    return HDX_OK;
}

void hdx_net_stop(struct hdx_net *n)
{
    n->stopping = 1;
    for (struct hdx_listener *l = n->listeners; l; l = l->next)
        evconnlistener_disable(l->evl);
    for (struct hdx_conn *c = n->conns; c; c = c->next)
        hdx_conn_close(c, 0);
}

size_t hdx_net_inflight(const struct hdx_net *n)
{
    size_t k = 0;
    for (const struct hdx_conn *c = n->conns; c; c = c->next)
        k += (size_t)(c->inflight > 0 ? c->inflight : 0);
    return k;
}

size_t hdx_net_count(const struct hdx_net *n)
{
    return n->allocated;
}

void hdx_net_sweep_revoked(struct hdx_net *n)
{
    for (struct hdx_conn *c = n->conns; c; c = c->next) {
        if (!c->tls || c->closing || !c->bev) continue;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && hdx_tls_is_revoked(n->tls, SSL_get0_peer_certificate(ssl))) {
            hdx_warn("device_revoked_disconnect", "peer=%s sender=%s serial=%s", c->peer,
                     c->principal, c->serial);
            hdx_conn_close(c, 1);
        }
    }
}

void hdx_net_free(struct hdx_net *n)
{
    if (!n) return;
    int64_t later = hdx_monotonic_us() + 2000000;
    if (n->hs_log.suppressed) noisy_flush(&n->hs_log, HS_SUPPRESSED, later);
    if (n->admit_log.suppressed) noisy_flush(&n->admit_log, ADMIT_SUPPRESSED, later);
    while (n->conns) {
        n->conns->inflight = 0;
        conn_free(n->conns);
    }
    for (struct hdx_listener *l = n->listeners, *next; l; l = next) {
        next = l->next;
        evconnlistener_free(l->evl);
        free(l);
    }
    if (n->reap_ev) event_free(n->reap_ev);
    free(n);
}
