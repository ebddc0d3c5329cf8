/* ackserver: the ACK-only MLLP over mutual TLS ceiling of this machine (BASELINES "MLLP over
 * mutual TLS 1.3, the ceiling"), measured in the same run as hdxd by bench/run.sh.
 *   ackserver -c DIR/hdx.conf -l HOST:PORT [-t MAX_SECONDS]
 * The server SSL_CTX is hdxd's own (net/tls.h: TLS 1.3, client certificate required and checked
 * against DIR's CA and CRL, no resumption, SSL_MODE_RELEASE_BUFFERS), the sockets are libevent
 * bufferevent_openssl with TCP_NODELAY as in net/server.c, and frames are found by the same
 * MLLP scanner. Each frame is parsed (hl7_parse, default limits, as hdxd does) and answered
 * with an original-mode AA built by hl7_ack_build (MSA-2 = the frame's MSH-10; AR if it does
 * not parse). Nothing is stored, encrypted or signed: the difference to hdxd is exactly the
 * durable commit pipeline. The ACKs answering the frames of one read are written with one
 * bufferevent write (one TLS record where they fit), which is the best a server can do here.
 * One thread. Prints event=listening on stderr when ready; SIGTERM/SIGINT, or MAX_SECONDS
 * (default 3600), stop it with an event=ackserver_stats line. Loopback use by the bench only.
 * Build: cmake -DHDX_BENCH=ON (target ackserver). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "core/err.h"
#include "core/util.h"
#include "net/tls.h"
#include "proto/ack.h"
#include "proto/hl7.h"
#include "proto/mllp.h"

#define ACK_MAX 4096

struct asrv {
    struct event_base *base;
    struct hdx_tls *tls;
    struct hl7_limits lim;
    size_t max_frame;
    unsigned long long frames, conns, refused, handshake_failures;
    unsigned long long ack_seq;
};

struct aconn {
    struct asrv *s;
    struct bufferevent *bev;
    struct evbuffer *out; /* the ACKs of one read, handed over at once */
    size_t resume;
    int connected;
};

static const char usage[] =
    "usage: ackserver -c DIR/hdx.conf -l HOST:PORT [-t MAX_SECONDS]\n"
    "An ACK-only MLLP server over mutual TLS with hdxd's TLS context: answers every frame\n"
    "with AA (MSA-2 = MSH-10), stores nothing. For bench/run.sh.\n";

static void conn_free(struct aconn *c)
{
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE: closes the socket, frees the SSL */
    evbuffer_free(c->out);
    free(c);
}

/* One ACK for one frame into c->out; AR when the frame is not HL7. */
static void answer(struct aconn *c, const uint8_t *payload, size_t len)
{
    struct asrv *s = c->s;
    struct hl7_msg m;
    struct hl7_error e;
    char ack[ACK_MAX + 3], id[32];
    memset(&m, 0, sizeof(m));
    int ok = hl7_parse(payload, len, &s->lim, &m, &e) == 0;
    snprintf(id, sizeof(id), "ACK%llu", ++s->ack_seq);
    struct hl7_ack_params p = {ok ? HL7_AA : (e.ack == 'E' ? HL7_AE : HL7_AR), ok ? NULL : &e, id,
                               hdx_now_us(), NULL};
    int n = hl7_ack_build(ok || m.nsegs ? &m : NULL, &p, ack + 1, ACK_MAX);
    hl7_msg_free(&m);
    if (n < 0) return;
    if (!ok) s->refused++;
    ack[0] = MLLP_SB;
    ack[n + 1] = MLLP_EB;
    ack[n + 2] = MLLP_CR;
    evbuffer_add(c->out, ack, (size_t)n + 3);
    s->frames++;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct aconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    while ((len = evbuffer_get_length(in)) > 0) {
        size_t want = len < c->s->max_frame + 3 ? len : c->s->max_frame + 3;
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)want);
        struct mllp_scan sc;
        enum mllp_status st = mllp_scan(data, want, c->s->max_frame, &c->resume, &sc);
        if (st == MLLP_TOO_BIG) {
            conn_free(c);
            return;
        }
        if (st == MLLP_NEED_MORE) {
            evbuffer_drain(in, sc.garbage);
            break;
        }
        answer(c, data + sc.payload_off, sc.payload_len);
        evbuffer_drain(in, sc.consumed);
        c->resume = 0;
    }
    if (evbuffer_get_length(c->out)) {
        evbuffer_pullup(c->out, -1); /* one chain: one SSL_write, one record, one send */
        bufferevent_write_buffer(bev, c->out);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct aconn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->s->conns++;
        c->connected = 1;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (!c->connected) c->s->handshake_failures++;
        conn_free(c);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct asrv *s = arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL *ssl = SSL_new(hdx_tls_ctx(s->tls));
    struct aconn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev =
        ssl && c ? bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : NULL;
    if (c) c->out = evbuffer_new();
    if (!bev || !c->out) {
        if (bev)
            bufferevent_free(bev);
        else {
            SSL_free(ssl);
            evutil_closesocket(fd);
        }
        if (c) evbuffer_free(c->out);
        free(c);
        return;
    }
    c->s = s;
    c->bev = bev;
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, on_read, NULL, on_event, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL, *listen = NULL;
    double max_s = 3600;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            conf_path = argv[++i];
        else if (!strcmp(argv[i], "-l") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            max_s = atof(argv[++i]);
        else
            return fputs(usage, stderr), 2;
    }
    if (!conf_path || !listen || !(max_s > 0)) return fputs(usage, stderr), 2;
    signal(SIGPIPE, SIG_IGN);
    struct hdx_conf conf;
    char err[512], host[128];
    int port;
    hdx_conf_defaults(&conf);
    if (hdx_conf_load(&conf, conf_path, err, sizeof(err)) != HDX_OK) {
        fprintf(stderr, "ackserver: %s\n", err);
        return 1;
    }
    struct asrv s = {0};
    hl7_limits_default(&s.lim);
    s.max_frame = conf.mllp_max_message;
    if (hdx_tls_new(&conf, &s.tls, err, sizeof(err)) != HDX_OK) {
        fprintf(stderr, "ackserver: %s\n", err);
        return 1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (hdx_split_hostport(listen, host, sizeof(host), &port) != 0 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ackserver: -l %s: want IPv4 HOST:PORT\n", listen);
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    s.base = event_base_new();
    struct evconnlistener *l =
        s.base ? evconnlistener_new_bind(s.base, on_accept, &s,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                         (struct sockaddr *)&sa, sizeof(sa))
               : NULL;
    if (!l) {
        fprintf(stderr, "ackserver: cannot listen on %s\n", listen);
        return 1;
    }
    struct event *sigterm = evsignal_new(s.base, SIGTERM, on_stop, s.base);
    struct event *sigint = evsignal_new(s.base, SIGINT, on_stop, s.base);
    struct event *limit = evtimer_new(s.base, on_stop, s.base);
    struct timeval tv = {(time_t)max_s, 0};
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    evtimer_add(limit, &tv);
    fprintf(stderr, "level=info event=listening addr=%s max_s=%.0f\n", listen, max_s);
    event_base_dispatch(s.base);
    fprintf(stderr,
            "level=info event=ackserver_stats frames=%llu connections=%llu refused=%llu "
            "failed_handshakes=%llu\n",
            s.frames, s.conns, s.refused, s.handshake_failures);
    event_free(sigterm);
    event_free(sigint);
    event_free(limit);
    evconnlistener_free(l);
    event_base_free(s.base); /* open connections are reclaimed by the exit */
    hdx_tls_free(s.tls);
    return 0;
}
