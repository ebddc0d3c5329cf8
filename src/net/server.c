#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "net/tls.h"
#include "proto/ack.h"
#include "proto/checkpoint.h"
#include "commit/admin.h"
#include "proto/hl7.h"
#include "proto/mllp.h"
#include "merkle/receipt.h"
#include "store/logproof.h"

#define SUB_LINE_MAX 1024
#define WRITE_TIMEOUT_S 10
#define SHUTDOWN_GRACE_US 5000000
#define ALLOW_MAX 32
/* A sender that does not read its ACKs: past this many unsent bytes hdxd stops reading from
 * it until they drain (the write watermark calls on_write), so its ACKs cannot grow memory. */
#define MLLP_OUT_PAUSE (256 * 1024)

enum conn_kind { CONN_MLLP_TLS, CONN_MLLP_PLAIN, CONN_SUB };

struct conn {
    struct conn *prev, *next;
    struct hdx_server *srv;
    struct bufferevent *bev;
    enum conn_kind kind;
    int established, closing, force_close, reading_paused;
    int inflight;
    char peer[64];
    char sender[HDX_SENDER_MAX + 1], role[16], serial[41];
    size_t scan_resume;
    size_t garbage_total; /* for the close log line */
    size_t garbage_run;   /* since the last frame: the limit applies to this */
    struct event *frame_timer;
    int frame_timer_armed;
    struct hdx_bus_sub *sub;
    uint64_t received, acked;
    /* Device stream signatures (proto/checkpoint.h), when the device has a signing key. */
    int signing;
    uint8_t sign_pub[32], binding[32];
    struct hdx_stream stream;
    uint64_t *covered; /* seqs acknowledged since the last checkpoint */
    size_t ncovered, covered_cap;
    struct pending_ckpt *ckpt; /* waits for the messages before it to be committed */
};

/* A checkpoint already judged on arrival; its record is submitted once every message before
 * it has its seq (reading pauses meanwhile, so nothing after it can slip in). */
struct pending_ckpt {
    enum hdx_ckpt_verdict verdict;
    struct hdx_checkpoint cp;
    uint64_t received; /* messages hdxd hashed since the previous checkpoint */
    struct hl7_delims d;
    char type[HDX_TYPE_MAX + 1];
    uint8_t *payload;
    size_t len;
};

#define HANDSHAKE_LOG_PER_S 20

/* More messages than this between two checkpoints are still hashed, but not all marked. */
#define CKPT_MARK_MAX HDX_CKPT_MARKS_MAX

struct allow_entry {
    int family;
    uint8_t addr[16];
    int prefix;
};

struct hdx_server {
    const struct hdx_conf *conf;
    struct event_base *base;
    const struct hdx_keyring *kr;
    struct hdx_keyctx *kc; /* the network thread's: tokens are made before the hand-over */
    struct hdx_store *ro_store;
    struct hdx_tls *tls;
    struct hdx_commit *commit;
    struct hdx_bus *bus;
    struct evconnlistener *mllp_lis, *legacy_lis, *sub_lis;
    struct event *done_ev, *crl_ev, *reap_ev, *shutdown_ev;
    /* Items parsed in this pass of the event loop, handed to the commit pipeline together
     * once every connection ready in this pass has been read (submit_ev). */
    struct event *submit_ev;
    struct hdx_intake_item *submit_head, *submit_tail;
    int done_fd;
    struct conn *conns;
    size_t nconns;
    struct allow_entry allow[ALLOW_MAX];
    size_t nallow;
    struct hl7_limits limits;
    int stopping;
    int64_t stop_deadline;
    int64_t last_refusal_log;
    /* Failed handshakes are logged at most HANDSHAKE_LOG_PER_S a second; the rest are
     * counted and summed up in one line (a scanner must not flood the log). */
    int64_t hs_window_us;
    unsigned hs_logged;
    uint64_t hs_suppressed;
    uint64_t refused;
    int64_t started_s;
    char head_file[HDX_PATH_MAX];
    uint64_t acks_built;
    int64_t admin_next; /* admin_queue ids up to this one were submitted (commit/admin.h) */
};

/* ---------- connection lifetime ---------- */

static void pending_ckpt_free(struct pending_ckpt *p)
{
    if (!p) return;
    free(p->payload);
    free(p);
}

static void conn_free(struct conn *c)
{
    struct hdx_server *srv = c->srv;
    pending_ckpt_free(c->ckpt);
    free(c->covered);
    if (c->sub) hdx_bus_unsubscribe(srv->bus, c->sub);
    if (c->frame_timer) event_free(c->frame_timer);
    if (c->bev) bufferevent_free(c->bev); /* closes the socket and frees the SSL */
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    free(c);
}

static void schedule_reap(struct hdx_server *srv)
{
    event_active(srv->reap_ev, EV_TIMEOUT, 0);
}

/* Marks a connection closing; it is freed from the loop once nothing is in flight and (unless
 * force) its output has been written. Never frees synchronously: callers may be iterating. */
static void conn_close(struct conn *c, int force)
{
    if (force) c->force_close = 1;
    if (!c->closing) {
        c->closing = 1;
        if (c->bev) bufferevent_disable(c->bev, EV_READ);
    }
    schedule_reap(c->srv);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    struct conn *c = srv->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->closing || c->inflight > 0) continue;
        if (c->force_close || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
    }
    if (srv->stopping) {
        int busy = 0;
        for (c = srv->conns; c; c = c->next)
            busy += c->inflight;
        if (!busy || hdx_monotonic_us() > srv->stop_deadline) event_base_loopexit(srv->base, NULL);
    }
}

static void log_close(struct conn *c, const char *event, const char *reason)
{
    char r[160];
    hdx_info(event, "peer=%s sender=%s reason=%s received=%llu acked=%llu garbage_bytes=%zu",
             c->peer, c->sender[0] ? c->sender : "-", hdx_log_str(r, sizeof(r), reason),
             (unsigned long long)c->received, (unsigned long long)c->acked, c->garbage_total);
}

/* ---------- writing ---------- */

/* One MLLP frame of payload followed by more (which may be empty). */
static void write_frame2(struct conn *c, const char *payload, size_t len, const char *more,
                         size_t more_len)
{
    static const uint8_t sb = MLLP_SB, tail[2] = {MLLP_EB, MLLP_CR};
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, &sb, 1);
    evbuffer_add(out, payload, len);
    if (more_len) evbuffer_add(out, more, more_len);
    evbuffer_add(out, tail, 2);
}

static void write_frame(struct conn *c, const char *payload, size_t len)
{
    write_frame2(c, payload, len, NULL, 0);
}

/* Builds an ACK; its control id is unique within this hdxd run (MSH-10 of an ACK only has to
 * be unique for the receiver's bookkeeping). Returns the length, or -1. */
static int build_ack(struct hdx_server *srv, const struct hl7_msg *msg, enum hl7_ack_code code,
                     const struct hl7_error *err, char *out, size_t cap)
{
    char ack_id[32];
    snprintf(ack_id, sizeof(ack_id), "HDX%llx.%llu", (unsigned long long)srv->started_s,
             (unsigned long long)++srv->acks_built);
    struct hl7_ack_params p = {code, err, ack_id, hdx_now_us(), NULL};
    return hl7_ack_build(msg && msg->nsegs ? msg : NULL, &p, out, cap);
}

static void send_ack(struct conn *c, const struct hl7_msg *msg, enum hl7_ack_code code,
                     const struct hl7_error *err)
{
    char ack[2048];
    int n = build_ack(c->srv, msg, code, err, ack, sizeof(ack));
    if (n > 0) write_frame(c, ack, (size_t)n);
}

static void reject(struct conn *c, const struct hl7_msg *msg, const struct hl7_error *err)
{
    char text[200], type[80];
    send_ack(c, msg, err->ack == 'R' ? HL7_AR : HL7_AE, err);
    hdx_warn("hl7_rejected", "peer=%s sender=%s ack=A%c code=%d seg=%s field=%d type=%s reason=%s",
             c->peer, c->sender[0] ? c->sender : "-", err->ack, err->code,
             err->seg[0] ? err->seg : "-", err->field,
             hdx_log_str(type, sizeof(type), msg && msg->msg_type[0] ? msg->msg_type : "-"),
             hdx_log_str(text, sizeof(text), err->text));
}

/* ---------- MLLP session ---------- */

/* One hand-over per pass of the event loop, not one per message: the commit pipeline wakes
 * once and finds every message read in the pass (a larger batch, and one wake-up instead of a
 * context switch per message on a machine with few cores). */
static void on_submit(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    struct hdx_intake_item *head = srv->submit_head;
    srv->submit_head = srv->submit_tail = NULL;
    if (head) hdx_commit_submit_list(srv->commit, head);
}

static void submit(struct hdx_server *srv, struct hdx_intake_item *it)
{
    /* On failure the sealer tries again, and refuses the item if it fails there too. */
    if (srv->kc) (void)hdx_intake_blind(it, srv->kc);
    it->next = NULL;
    if (srv->submit_tail)
        srv->submit_tail->next = it;
    else
        srv->submit_head = it;
    srv->submit_tail = it;
    /* Activated now, it runs after the callbacks already active in this pass. */
    if (srv->submit_head == it) event_active(srv->submit_ev, EV_TIMEOUT, 0);
}

static void submit_message(struct conn *c, const uint8_t *payload, size_t len,
                           const struct hl7_msg *msg)
{
    struct hl7_error err = {0};
    struct hdx_intake_item *it = hdx_intake_item_new(payload, len);
    if (!it) {
        err = (struct hl7_error){HL7_ERR_INTERNAL, 'R', "", 0, 0, "server out of memory"};
        reject(c, msg, &err);
        return;
    }
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", c->sender);
    snprintf(it->type, sizeof(it->type), "%s", msg->msg_type);
    snprintf(it->control_id, sizeof(it->control_id), "%s", msg->control_id);
    snprintf(it->patient_id, sizeof(it->patient_id), "%s", msg->patient_id);
    it->origin = c;
    /* The AA is prepared now, while the message is parsed; it is sent only once the commit
     * thread reports the record durable. */
    char ack[2048];
    int n = build_ack(c->srv, msg, HL7_AA, NULL, ack, sizeof(ack));
    if (n > 0 && (it->reply = malloc((size_t)n)) != NULL) {
        memcpy(it->reply, ack, (size_t)n);
        it->reply_len = (size_t)n;
    }
    c->inflight++;
    submit(c->srv, it);
}

static const char *verdict_word(enum hdx_ckpt_verdict v)
{
    static const char *const words[] = {"verified", "malformed", "bad-signature", "replayed",
                                        "mismatch"};
    return (unsigned)v < sizeof(words) / sizeof(words[0]) ? words[v] : "?";
}

/* A checkpoint frame: judged now, against exactly the payloads that came before it. */
static void take_checkpoint(struct conn *c, const uint8_t *payload, size_t len,
                            const struct hl7_msg *msg)
{
    struct hl7_error err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    if (!c->signing) {
        snprintf(err.text, sizeof(err.text), "%s",
                 c->kind != CONN_MLLP_TLS
                     ? "checkpoint refused: stream signatures need a TLS connection"
                     : "checkpoint refused: this device has no stream-signing key registered");
        reject(c, msg, &err);
        return;
    }
    struct pending_ckpt *p = calloc(1, sizeof(*p));
    if (!p || !(p->payload = malloc(len ? len : 1))) {
        free(p);
        snprintf(err.text, sizeof(err.text), "server out of memory");
        reject(c, msg, &err);
        return;
    }
    memcpy(p->payload, payload, len);
    p->len = len;
    p->d = msg->d;
    snprintf(p->type, sizeof(p->type), "%s", msg->msg_type);
    p->received = c->stream.count;
    struct hl7_view zcv;
    /* A ZCV or ZCS of the device's own would sit beside hdx's verdict in the record. */
    if (hdx_checkpoint_parse(msg, &p->cp) != HDX_OK ||
        hl7_get(msg, "ZCV", 1, 1, 1, 0, 0, &zcv) == 0 ||
        hl7_get(msg, "ZCS", 1, 1, 1, 0, 0, &zcv) == 0) {
        uint64_t last_n = c->stream.last_n;
        p->verdict = HDX_CKPT_MALFORMED;
        hdx_stream_init(&c->stream); /* the device starts a new running hash too */
        c->stream.last_n = last_n;
    } else {
        p->verdict = hdx_checkpoint_check(&c->stream, &p->cp, c->binding, c->sign_pub);
    }
    if (p->verdict == HDX_CKPT_OK)
        hdx_info("stream_checkpoint", "peer=%s sender=%s n=%llu messages=%llu verdict=verified",
                 c->peer, c->sender, (unsigned long long)p->cp.n, (unsigned long long)p->received);
    else
        hdx_error("stream_alert",
                  "peer=%s sender=%s n=%llu messages_unverified=%llu verdict=%s reason=\"%s\"",
                  c->peer, c->sender, (unsigned long long)p->cp.n, (unsigned long long)p->received,
                  verdict_word(p->verdict), hdx_ckpt_verdict_text(p->verdict));
    c->ckpt = p;
}

/* One "a-b" or "c" run of the covered seqs starting at *i (ascending runs). */
static int seq_run(const uint64_t *seqs, size_t n, size_t *i, char *out, size_t cap)
{
    size_t j = *i;
    while (j + 1 < n && seqs[j + 1] == seqs[j] + 1)
        j++;
    int w = j > *i ? snprintf(out, cap, "%llu-%llu", (unsigned long long)seqs[*i],
                              (unsigned long long)seqs[j])
                   : snprintf(out, cap, "%llu", (unsigned long long)seqs[*i]);
    *i = j + 1;
    return w;
}

/* Appends "ZCS|runs\r" segments listing the covered seqs ("a-b,c,..."), each short enough
 * that, escaped, it stays under the parser's field limit (hdx verify re-parses the record). */
#define ZCS_RAW_MAX 8000
static size_t put_seq_segments(const struct conn *c, const struct hl7_delims *d, char *out,
                               size_t cap)
{
    char raw[ZCS_RAW_MAX + 48], esc[5 * ZCS_RAW_MAX + 256];
    size_t n = 0, i = 0;
    while (i < c->ncovered) {
        size_t rl = 0;
        while (i < c->ncovered && rl < ZCS_RAW_MAX) {
            if (rl) raw[rl++] = ',';
            rl += (size_t)seq_run(c->covered, c->ncovered, &i, raw + rl, sizeof(raw) - rl);
        }
        raw[rl] = 0;
        int w = hl7_escape(d, raw, esc, sizeof(esc));
        if (w < 0 || n + (size_t)w + 6 > cap) break;
        n += (size_t)snprintf(out + n, cap - n, "ZCS%c%s\r", d->field, esc);
    }
    return n;
}

/* The checkpoint's record: the checkpoint as received plus hdx's verdict in the device's own
 * delimiters, then the covered seqs:
 *   ZCV|1|verdict|reason|binding hex|messages hashed|messages marked
 *   ZCS|a-b,c,...   (as many as needed) */
static void submit_checkpoint(struct conn *c)
{
    struct pending_ckpt *p = c->ckpt;
    struct hl7_msg msg;
    struct hl7_error err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    char bind[65], reason[400], fs = p->d.field;
    /* a run is at most 41 bytes and escaping at most quintuples it */
    size_t cap = p->len + 1024 + c->ncovered * 5 * 42;
    uint8_t *body = malloc(cap);
    struct hdx_intake_item *it = NULL;
    c->ckpt = NULL;
    hdx_hex(c->binding, 32, bind);
    memset(&msg, 0, sizeof(msg));
    if (body && hl7_escape(&p->d, hdx_ckpt_verdict_text(p->verdict), reason, sizeof(reason)) >= 0) {
        size_t n = p->len;
        memcpy(body, p->payload, n);
        if (!n || body[n - 1] != '\r') body[n++] = '\r';
        n += (size_t)snprintf((char *)body + n, cap - n, "ZCV%c1%c%s%c%s%c%s%c%llu%c%zu\r", fs, fs,
                              verdict_word(p->verdict), fs, reason, fs, bind, fs,
                              (unsigned long long)p->received, fs, c->ncovered);
        n += put_seq_segments(c, &p->d, (char *)body + n, cap - n);
        it = hdx_intake_item_new(body, n);
    }
    free(body);
    (void)hl7_parse(p->payload, p->len, &c->srv->limits, &msg, &err);
    if (!it) {
        err = (struct hl7_error){HL7_ERR_INTERNAL, 'R', "", 0, 0, "server out of memory"};
        reject(c, &msg, &err);
        hl7_msg_free(&msg);
        pending_ckpt_free(p);
        return;
    }
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", c->sender);
    snprintf(it->type, sizeof(it->type), "%s", p->type);
    it->origin = c;
    it->checkpoint = 1;
    it->verified = p->verdict == HDX_CKPT_OK;
    it->covers = c->covered;
    it->ncovers = c->ncovered;
    c->covered = NULL;
    c->ncovered = c->covered_cap = 0;
    /* Accepted: AA (with its receipt). Refused: AR 207 with the reason, sent once the
     * refused checkpoint is on record too. */
    char ack[2048];
    struct hl7_error refusal = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    snprintf(refusal.text, sizeof(refusal.text), "%s", hdx_ckpt_verdict_text(p->verdict));
    int n = build_ack(c->srv, &msg, it->verified ? HL7_AA : HL7_AR, it->verified ? NULL : &refusal,
                      ack, sizeof(ack));
    if (n > 0 && (it->reply = malloc((size_t)n)) != NULL) {
        memcpy(it->reply, ack, (size_t)n);
        it->reply_len = (size_t)n;
    }
    hl7_msg_free(&msg);
    pending_ckpt_free(p);
    c->inflight++;
    submit(c->srv, it);
}

static void handle_frame(struct conn *c, const uint8_t *payload, size_t len)
{
    struct hl7_msg msg;
    struct hl7_error err;
    memset(&msg, 0, sizeof(msg));
    memset(&err, 0, sizeof(err));
    c->received++;
    int parsed = hl7_parse(payload, len, &c->srv->limits, &msg, &err) == 0;
    /* Only this path may store a ZCK^Z01 record (with hdx's ZCV verdict): on a plaintext
     * connection there is no binding, so a checkpoint there is refused (take_checkpoint). */
    if (parsed && hdx_is_checkpoint(&msg)) {
        take_checkpoint(c, payload, len, &msg);
        hl7_msg_free(&msg);
        return;
    }
    /* Every other payload is in the device's running hash, refused ones included. */
    if (c->signing && hdx_stream_add(&c->stream, payload, len) != HDX_OK)
        hdx_error("stream_hash_failed", "peer=%s sender=%s", c->peer, c->sender);
    if (!parsed) {
        reject(c, &msg, &err);
        hl7_msg_free(&msg);
        return;
    }
    if (strncmp(msg.msg_type, "ACK", 3) == 0) {
        /* An acknowledgement is never acknowledged (HL7 v2.5.1 2.9.2): that would loop. */
        hdx_info("ack_ignored", "peer=%s sender=%s", c->peer, c->sender);
        hl7_msg_free(&msg);
        return;
    }
    submit_message(c, payload, len, &msg);
    hl7_msg_free(&msg);
}

/* The line for the failures suppressed in the last window, once it has passed. */
static void handshake_log_flush(struct hdx_server *srv, int64_t now)
{
    if (now - srv->hs_window_us < 1000000) return;
    if (srv->hs_suppressed)
        hdx_warn("tls_handshake_failed_suppressed", "count=%llu window_ms=%lld limit_per_s=%d",
                 (unsigned long long)srv->hs_suppressed,
                 (long long)((now - srv->hs_window_us) / 1000), HANDSHAKE_LOG_PER_S);
    srv->hs_window_us = now;
    srv->hs_logged = 0;
    srv->hs_suppressed = 0;
}

/* 1 when this failed handshake may have its own log line. */
static int handshake_log_allowed(struct hdx_server *srv)
{
    handshake_log_flush(srv, hdx_monotonic_us());
    if (srv->hs_logged < HANDSHAKE_LOG_PER_S) {
        srv->hs_logged++;
        return 1;
    }
    srv->hs_suppressed++;
    return 0;
}

static void on_frame_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->frame_timer_armed = 0;
    if (!c->established) {
        /* An absolute deadline: a client dribbling its handshake byte by byte still ends. */
        if (handshake_log_allowed(c->srv))
            hdx_warn("tls_handshake_failed", "peer=%s reason=\"handshake timeout\" timeout_ms=%d",
                     c->peer, c->srv->conf->tls_handshake_timeout_ms);
        conn_close(c, 1);
        return;
    }
    hdx_warn("mllp_frame_timeout", "peer=%s sender=%s timeout_ms=%d", c->peer,
             c->sender[0] ? c->sender : "-", c->srv->conf->mllp_read_timeout_ms);
    conn_close(c, 1);
}

static void arm_frame_timer(struct conn *c, int on)
{
    if (on && !c->frame_timer_armed) {
        int ms = c->srv->conf->mllp_read_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(c->frame_timer, &tv);
        c->frame_timer_armed = 1;
    } else if (!on && c->frame_timer_armed) {
        evtimer_del(c->frame_timer);
        c->frame_timer_armed = 0;
    }
}

static void refuse_oversize(struct conn *c, const uint8_t *payload, size_t have)
{
    struct hl7_msg msg;
    struct hl7_error perr, err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    memset(&msg, 0, sizeof(msg));
    /* Parse what arrived so the AR can at least be addressed; the error is the size. */
    (void)hl7_parse(payload, have, &c->srv->limits, &msg, &perr);
    snprintf(err.text, sizeof(err.text), "message exceeds the maximum size of %zu bytes",
             c->srv->conf->mllp_max_message);
    reject(c, &msg, &err);
    hl7_msg_free(&msg);
    conn_close(c, 0);
}

static int drop_garbage(struct conn *c, struct evbuffer *in, size_t n)
{
    if (!n) return 0;
    evbuffer_drain(in, n);
    if (c->garbage_total == 0) /* once per connection; the total is in the close line */
        hdx_warn("mllp_garbage", "peer=%s sender=%s bytes=%zu", c->peer,
                 c->sender[0] ? c->sender : "-", n);
    c->garbage_total += n;
    c->garbage_run += n;
    if (c->garbage_run > c->srv->conf->mllp_max_message) {
        hdx_warn("mllp_garbage_limit", "peer=%s bytes=%zu", c->peer, c->garbage_run);
        conn_close(c, 1);
        return -1;
    }
    return 0;
}

static void mllp_read(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max = c->srv->conf->mllp_max_message;
    while (!c->closing) {
        if (c->ckpt && c->inflight == 0) submit_checkpoint(c);
        if (c->ckpt || c->inflight >= c->srv->conf->mllp_max_inflight ||
            evbuffer_get_length(bufferevent_get_output(c->bev)) > MLLP_OUT_PAUSE) {
            bufferevent_disable(c->bev, EV_READ); /* back-pressure until ACKs go out */
            c->reading_paused = 1;
            arm_frame_timer(c, 0); /* the wait is ours, not the sender's */
            return;
        }
        size_t len = evbuffer_get_length(in), want = len < max + 3 ? len : max + 3;
        if (!len) break;
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)want);
        struct mllp_scan s;
        enum mllp_status st = mllp_scan(data, want, max, &c->scan_resume, &s);
        if (st == MLLP_TOO_BIG) {
            refuse_oversize(c, data + s.payload_off, want - s.payload_off);
            return;
        }
        if (st == MLLP_NEED_MORE) {
            if (drop_garbage(c, in, s.garbage) != 0) return;
            /* Dropping garbage may bring a whole frame within the scanned window. */
            if (s.garbage && want == max + 3) continue;
            arm_frame_timer(c, evbuffer_get_length(in) > 0);
            return;
        }
        if (s.garbage) {
            if (c->garbage_total == 0)
                hdx_warn("mllp_garbage", "peer=%s sender=%s bytes=%zu", c->peer,
                         c->sender[0] ? c->sender : "-", s.garbage);
            c->garbage_total += s.garbage;
        }
        c->garbage_run = 0;
        handle_frame(c, data + s.payload_off, s.payload_len);
        evbuffer_drain(in, s.consumed);
        c->scan_resume = 0;
        arm_frame_timer(c, 0);
    }
}

/* Undoes the back-pressure of mllp_read once both its causes are gone. */
static void resume_reading(struct conn *c)
{
    if (!c->reading_paused || c->closing || c->ckpt ||
        c->inflight >= c->srv->conf->mllp_max_inflight ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) > MLLP_OUT_PAUSE)
        return;
    c->reading_paused = 0;
    bufferevent_enable(c->bev, EV_READ);
    mllp_read(c); /* frames may already be buffered; no new read event would come */
}

/* ---------- commit completions ---------- */

static void publish(struct hdx_server *srv, const struct hdx_intake_item *it)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    struct hdx_bus_event ev = {
        it->seq,    it->time_us,  it->kind,
        it->sender, it->type,     memcmp(it->patient, zero, HDX_BLIND_LEN) ? it->patient : NULL,
        it->body,   it->body_len, it->durable_us};
    hdx_bus_publish(srv->bus, &ev);
}

static void answer_item(struct conn *c, const struct hdx_intake_item *it)
{
    struct hl7_msg msg;
    struct hl7_error err = {0};
    if (c->signing && !it->checkpoint && it->status == HDX_OK) {
        if (c->ncovered == c->covered_cap && c->covered_cap < CKPT_MARK_MAX) {
            size_t cap = c->covered_cap ? c->covered_cap * 2 : 64;
            uint64_t *p = realloc(c->covered, cap * sizeof(*p));
            if (p) {
                c->covered = p;
                c->covered_cap = cap;
            }
        }
        if (c->ncovered < c->covered_cap) c->covered[c->ncovered++] = it->seq;
    }
    if (it->status == HDX_OK && it->reply) {
        /* The receipt goes last, in the ACK's own field separator (MSH-1 of the reply). */
        char zrc[HDX_RECEIPT_SEGMENT_MAX];
        struct hdx_receipt r;
        int zn = 0;
        if (it->receipt_batch && it->reply_len > 4 && (!it->checkpoint || it->verified) &&
            hdx_receipt_get(it->receipt_batch, it->receipt_index, &r) == HDX_OK)
            zn = hdx_receipt_segment(&r, (char)it->reply[3], zrc, sizeof(zrc));
        write_frame2(c, (const char *)it->reply, it->reply_len, zrc, zn > 0 ? (size_t)zn : 0);
        c->acked++;
        return;
    }
    /* Rare paths (store failure, no memory for the prepared ACK): parse again to address
     * the answer. */
    memset(&msg, 0, sizeof(msg));
    if (hl7_parse(it->body, it->body_len, &c->srv->limits, &msg, &err) != 0)
        memset(&msg, 0, sizeof(msg));
    if (it->status == HDX_OK) {
        send_ack(c, &msg, HL7_AA, NULL);
        c->acked++;
    } else {
        err = (struct hl7_error){HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
        snprintf(err.text, sizeof(err.text), "%s",
                 it->status == HDX_E_INTEGRITY
                     ? "message not stored: log integrity alarm, hdx is read-only until an "
                       "operator has checked the store"
                     : "message not stored (storage failure); send it again later");
        reject(c, &msg, &err);
    }
    hl7_msg_free(&msg);
}

static void admin_done(struct hdx_server *srv, const struct hdx_intake_item *it);

static void on_commit_done(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    uint64_t n;
    if (read(srv->done_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_read_failed", "errno=%d", errno);
    struct hdx_intake_item *it = hdx_commit_take_done(srv->commit), *next;
    for (; it; it = next) {
        next = it->next;
        struct conn *c = it->origin;
        if (!c) { /* an admin statement: nobody to answer */
            admin_done(srv, it);
            hdx_intake_item_free(it);
            continue;
        }
        if (it->status == HDX_OK && !it->duplicate) publish(srv, it);
        if (!c->closing) answer_item(c, it);
        c->inflight--;
        if (c->ckpt && c->inflight == 0 && !c->closing) submit_checkpoint(c);
        if (c->closing && c->inflight == 0)
            schedule_reap(srv);
        else
            resume_reading(c);
        hdx_intake_item_free(it);
    }
}

static void notify_done(void *arg)
{
    struct hdx_server *srv = arg;
    uint64_t one = 1;
    if (write(srv->done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        abort(); /* the network thread would never learn of durable messages */
}

/* ---------- subscribers ---------- */

static void sink_write(void *conn, const void *data, size_t len)
{
    struct conn *c = conn;
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
}

static size_t sink_queued(void *conn)
{
    struct conn *c = conn;
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void sink_drop(void *conn, const char *reason)
{
    struct conn *c = conn;
    char line[96];
    size_t queued = sink_queued(c);
    int n = snprintf(line, sizeof(line), "BYE reason=%s\n", reason);
    evbuffer_add(bufferevent_get_output(c->bev), line, (size_t)n);
    hdx_warn("subscriber_dropped", "peer=%s sender=%s reason=%s queued=%zu", c->peer, c->sender,
             reason, queued);
    conn_close(c, 0); /* the write timeout ends it if the reader never drains */
}

static void sub_error(struct conn *c, const char *why)
{
    char line[256], w[200];
    int n = snprintf(line, sizeof(line), "ERR %s\n", why);
    evbuffer_add(bufferevent_get_output(c->bev), line, (size_t)n);
    hdx_warn("subscribe_refused", "peer=%s sender=%s reason=%s", c->peer, c->sender,
             hdx_log_str(w, sizeof(w), why));
    conn_close(c, 0);
}

/* Witness requests, before any SUB: "STH" -> "STH {json}", "CONSISTENCY OLD NEW" and
 * "INCLUSION SEQ" (against the newest head, for `hdx receipt check`) -> "PROOF {json}", or
 * "NO reason" (the connection stays open). Returns 1 if it was one. */
static int witness_request(struct conn *c, const char *line)
{
    char json[HDX_PROOF_JSON_MAX], why[160];
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct hdx_logreq req;
    int n;
    switch (hdx_logreq_parse(line, &req)) {
    case HDX_LOGREQ_STH: {
        struct hdx_sth sth;
        n = hdx_store_sth_latest(c->srv->ro_store, &sth);
        if (n == HDX_OK) n = hdx_sth_json(&sth, json, sizeof(json));
        if (n < 0) snprintf(why, sizeof(why), "no signed tree head yet");
        evbuffer_add_printf(out, n < 0 ? "NO %s\n" : "STH %s\n", n < 0 ? why : json);
        return 1;
    }
    case HDX_LOGREQ_INCLUSION:
        n = hdx_log_inclusion_json(c->srv->ro_store, req.a, json, sizeof(json), why, sizeof(why));
        break;
    case HDX_LOGREQ_CONSISTENCY:
        n = hdx_log_consistency_json(c->srv->ro_store, req.a, req.b, json, sizeof(json), why,
                                     sizeof(why));
        break;
    default:
        return 0;
    }
    evbuffer_add_printf(out, n < 0 ? "NO %s\n" : "PROOF %s\n", n < 0 ? why : json);
    return 1;
}

static void sub_read(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->sub) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* nothing more is expected */
        return;
    }
    size_t n = 0;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    while (line && n <= SUB_LINE_MAX && witness_request(c, line)) {
        free(line);
        line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    }
    if (!line) {
        if (evbuffer_get_length(in) > SUB_LINE_MAX) sub_error(c, "request line too long");
        return;
    }
    if (strcmp(c->role, "device") == 0) {
        free(line);
        sub_error(c, "role device may not subscribe");
        return;
    }
    struct hdx_bus_filter f;
    uint64_t after;
    char why[128];
    int rc = n > SUB_LINE_MAX
                 ? HDX_E_TOOBIG
                 : hdx_bus_parse_request(line, n, c->srv->kr, &f, &after, why, sizeof(why));
    free(line);
    if (rc != HDX_OK) {
        sub_error(c, rc == HDX_E_TOOBIG ? "request line too long" : why);
        return;
    }
    c->sub = hdx_bus_subscribe(c->srv->bus, c, &f, after);
    if (!c->sub) {
        sub_error(c, "out of memory");
        return;
    }
    char ok[64];
    int m = snprintf(ok, sizeof(ok), "OK last=%llu\n",
                     (unsigned long long)hdx_bus_last_seq(c->srv->bus));
    evbuffer_add(bufferevent_get_output(c->bev), ok, (size_t)m);
    /* Subscribers listen and need not speak (no read timeout), but one that stops reading
     * is closed by the write timeout rather than pinning its buffers forever. */
    struct timeval wr = {WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wr);
    hdx_info("subscribed", "peer=%s sender=%s after=%s type=%s filter_patient=%d", c->peer,
             c->sender, after == UINT64_MAX ? "live" : "seq", f.type[0] ? "set" : "any",
             f.has_patient);
    hdx_bus_pump(c->srv->bus, c->sub);
}

/* ---------- bufferevent callbacks ---------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->closing || !c->established) return;
    if (c->kind == CONN_SUB)
        sub_read(c);
    else
        mllp_read(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        schedule_reap(c->srv);
    else if (c->sub)
        hdx_bus_pump(c->srv->bus, c->sub);
    else
        resume_reading(c);
}

static int role_allowed(enum conn_kind kind, const char *role)
{
    if (strcmp(role, "gateway") == 0) return 1;
    /* A device may ask the subscription port for heads and proofs (hashes only, to check
     * its receipts), but only subscribers may SUB (sub_read). */
    if (kind == CONN_SUB) return strcmp(role, "subscriber") == 0 || strcmp(role, "device") == 0;
    return strcmp(role, "device") == 0;
}

/* After the TLS handshake: the certificate chained to our CA and is not on the CRL; now the
 * store must know the device, not revoked, with this very certificate, in a fitting role. */
static int admit_peer(struct conn *c, char *why, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct hdx_device d;
    if (hdx_tls_peer_identity(ssl, c->sender, sizeof(c->sender), c->role, sizeof(c->role),
                              c->serial, sizeof(c->serial)) != HDX_OK) {
        snprintf(why, cap, "certificate has no subject CN");
        return -1;
    }
    if (hdx_store_device_get(c->srv->ro_store, c->sender, &d) != HDX_OK) {
        snprintf(why, cap, "device not enrolled");
        return -1;
    }
    if (d.revoked_us || strcmp(d.serial, c->serial) != 0) {
        snprintf(why, cap, "certificate revoked or superseded");
        return -1;
    }
    if (!role_allowed(c->kind, c->role)) {
        snprintf(why, cap, "role %s may not use this port", c->role[0] ? c->role : "(none)");
        return -1;
    }
    /* A device with a stream-signing key: its checkpoints are bound to this connection. */
    if (c->kind == CONN_MLLP_TLS &&
        hdx_store_device_signkey_get(c->srv->ro_store, c->sender, c->sign_pub) == HDX_OK) {
        if (SSL_export_keying_material(ssl, c->binding, sizeof(c->binding), HDX_CKPT_LABEL,
                                       strlen(HDX_CKPT_LABEL), NULL, 0, 0) != 1) {
            snprintf(why, cap, "cannot derive the stream-signature binding");
            return -1;
        }
        c->signing = 1;
        hdx_stream_init(&c->stream);
    }
    return 0;
}

static void on_connected(struct conn *c)
{
    char why[128], w[160];
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (admit_peer(c, why, sizeof(why)) != 0) {
        hdx_warn("connection_refused", "peer=%s sender=%s serial=%s reason=%s", c->peer,
                 c->sender[0] ? c->sender : "-", c->serial[0] ? c->serial : "-",
                 hdx_log_str(w, sizeof(w), why));
        if (c->kind == CONN_SUB) {
            sub_error(c, why);
            return;
        }
        conn_close(c, 1);
        return;
    }
    c->established = 1;
    arm_frame_timer(c, 0);
    struct timeval idle = {c->srv->conf->mllp_idle_timeout_s, 0}, wr = {WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &idle, &wr);
    hdx_info("connection_open", "peer=%s sender=%s role=%s serial=%s tls=%s cipher=%s port=%s",
             c->peer, c->sender, c->role, c->serial, SSL_get_version(ssl), SSL_get_cipher(ssl),
             c->kind == CONN_SUB ? "sub" : "mllp");
    on_read(c->bev, c); /* data may have arrived with the handshake's last flight */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    char why[200], w[220];
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(c);
        return;
    }
    if (c->closing) {
        conn_close(c, 1);
        return;
    }
    if (!c->established && c->kind != CONN_MLLP_PLAIN) {
        if (what & BEV_EVENT_TIMEOUT)
            snprintf(why, sizeof(why), "handshake timeout");
        else
            hdx_tls_failure_reason(bufferevent_openssl_get_ssl(bev),
                                   bufferevent_get_openssl_error(bev), why, sizeof(why));
        if (handshake_log_allowed(c->srv))
            hdx_warn("tls_handshake_failed", "peer=%s reason=%s", c->peer,
                     hdx_log_str(w, sizeof(w), why));
    } else if (what & BEV_EVENT_TIMEOUT) {
        log_close(c, "connection_timeout", (what & BEV_EVENT_WRITING) ? "write" : "idle");
    } else if (what & BEV_EVENT_EOF) {
        log_close(c, "connection_closed", "peer closed");
    } else {
        int sock_err = EVUTIL_SOCKET_ERROR();
        unsigned long e = c->kind == CONN_MLLP_PLAIN ? 0 : bufferevent_get_openssl_error(bev);
        const char *why_s = e ? ERR_reason_error_string(e) : NULL;
        log_close(c, "connection_error",
                  why_s      ? why_s
                  : sock_err ? evutil_socket_error_to_string(sock_err)
                             : "reset");
    }
    conn_close(c, 1);
}

/* ---------- accepting ---------- */

static void format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "unknown");
    }
}

static int over_capacity(struct hdx_server *srv, evutil_socket_t fd)
{
    if (srv->nconns < (size_t)srv->conf->net_max_connections && !srv->stopping) return 0;
    evutil_closesocket(fd);
    srv->refused++;
    int64_t now = hdx_monotonic_us();
    if (now - srv->last_refusal_log > 1000000) {
        hdx_warn("connection_limit", "max=%d refused_total=%llu", srv->conf->net_max_connections,
                 (unsigned long long)srv->refused);
        srv->last_refusal_log = now;
    }
    return 1;
}

static struct conn *conn_new(struct hdx_server *srv, enum conn_kind kind, const struct sockaddr *sa)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->srv = srv;
    c->kind = kind;
    format_peer(sa, c->peer, sizeof(c->peer));
    c->frame_timer = evtimer_new(srv->base, on_frame_timeout, c);
    if (!c->frame_timer) {
        free(c);
        return NULL;
    }
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    return c;
}

static void start_conn(struct conn *c, struct bufferevent *bev, int handshake_timeout_ms)
{
    /* An ACK is a small write answering a small read: without TCP_NODELAY, Nagle holds it
     * until the peer's delayed ACK (up to 40 ms) whenever a sender pipelines messages. */
    int one = 1;
    (void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bev;
    struct timeval hs = {handshake_timeout_ms / 1000, (handshake_timeout_ms % 1000) * 1000};
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    evtimer_add(c->frame_timer, &hs); /* the handshake deadline; disarmed once admitted */
    c->frame_timer_armed = 1;
    bufferevent_setwatermark(
        bev, EV_WRITE, c->kind == CONN_SUB ? c->srv->conf->sub_max_queue / 4 : MLLP_OUT_PAUSE / 2,
        0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_tls(struct hdx_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
                       enum conn_kind kind)
{
    if (over_capacity(srv, fd)) return;
    SSL *ssl = SSL_new(hdx_tls_ctx(srv->tls));
    struct conn *c = ssl ? conn_new(srv, kind, sa) : NULL;
    struct bufferevent *bev =
        c ? bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE)
          : NULL;
    if (!bev) {
        hdx_error("accept_failed", "reason=out_of_memory");
        SSL_free(ssl);
        evutil_closesocket(fd);
        if (c) conn_free(c);
        return;
    }
    start_conn(c, bev, srv->conf->tls_handshake_timeout_ms);
}

static void on_accept_mllp(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int len, void *arg)
{
    accept_tls(arg, fd, sa, CONN_MLLP_TLS);
}

static void on_accept_sub(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    accept_tls(arg, fd, sa, CONN_SUB);
}

/* ---------- legacy plaintext MLLP ---------- */

static int parse_allow(struct hdx_server *srv, const char *list, char *why, size_t cap)
{
    char buf[512], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        struct allow_entry *e = &srv->allow[srv->nallow];
        char *slash = strchr(tok, '/');
        if (srv->nallow == ALLOW_MAX) {
            snprintf(why, cap, "legacy.allow: more than %d entries", ALLOW_MAX);
            return HDX_E_CONFIG;
        }
        if (slash) *slash = 0;
        e->family = strchr(tok, ':') ? AF_INET6 : AF_INET;
        int bits = e->family == AF_INET ? 32 : 128;
        e->prefix = slash ? atoi(slash + 1) : bits;
        if (inet_pton(e->family, tok, e->addr) != 1 || e->prefix < 0 || e->prefix > bits) {
            snprintf(why, cap, "legacy.allow: '%s' is not an address or CIDR", tok);
            return HDX_E_CONFIG;
        }
        srv->nallow++;
    }
    return HDX_OK;
}

static int prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static int allowed(const struct hdx_server *srv, const struct sockaddr *sa)
{
    const uint8_t *addr;
    int family = sa->sa_family;
    if (family == AF_INET)
        addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (family == AF_INET6)
        addr = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    else
        return 0;
    for (size_t i = 0; i < srv->nallow; i++)
        if (srv->allow[i].family == family &&
            prefix_match(srv->allow[i].addr, addr, srv->allow[i].prefix))
            return 1;
    return 0;
}

static void on_accept_legacy(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int len, void *arg)
{
    struct hdx_server *srv = arg;
    char peer[64];
    format_peer(sa, peer, sizeof(peer));
    if (!allowed(srv, sa)) {
        hdx_warn("legacy_refused", "peer=%s reason=not_in_legacy.allow", peer);
        evutil_closesocket(fd);
        return;
    }
    if (over_capacity(srv, fd)) return;
    struct conn *c = conn_new(srv, CONN_MLLP_PLAIN, sa);
    struct bufferevent *bev =
        c ? bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!bev) {
        evutil_closesocket(fd);
        if (c) conn_free(c);
        return;
    }
    /* Legacy senders have no certificate; the address is all we know of them. */
    char host[HDX_SENDER_MAX - 8];
    snprintf(host, sizeof(host), "%.*s", (int)sizeof(host) - 1, peer);
    char *colon = strrchr(host, ':');
    if (colon) *colon = 0;
    snprintf(c->sender, sizeof(c->sender), "legacy:%s", host);
    snprintf(c->role, sizeof(c->role), "legacy");
    start_conn(c, bev, srv->conf->mllp_idle_timeout_s * 1000);
    c->established = 1;
    arm_frame_timer(c, 0);
    struct timeval idle = {srv->conf->mllp_idle_timeout_s, 0}, wr = {WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(bev, &idle, &wr);
    hdx_warn("insecure_connection", "peer=%s listener=legacy tls=none sender=%s", peer, c->sender);
}

/* ---------- revocation, shutdown ---------- */

static int admin_submit(void *arg, int64_t id, const uint8_t *body, size_t len)
{
    struct hdx_server *srv = arg;
    int bad = 0;
    struct hdx_intake_item *it = hdx_admin_item_new(id, body, len, &bad);
    if (!it && !bad) return 1; /* no memory: again at the next tick */
    srv->admin_next = id;
    if (!it) {
        hdx_error("admin_statement_refused", "queue_id=%lld reason=\"malformed\"", (long long)id);
        return 0;
    }
    submit(srv, it);
    return 0;
}

/* The device registry changes only through admin records: statements producers queued
 * (hdx device) become records of the commit thread, which applies them in their own
 * transaction. Read through the read-only handle; a few rows at most per tick. */
static void poll_admin_queue(struct hdx_server *srv)
{
    if (srv->stopping || hdx_commit_read_only(srv->commit)) return;
    (void)hdx_store_admin_pending(srv->ro_store, srv->admin_next, admin_submit, srv);
}

static void admin_done(struct hdx_server *srv, const struct hdx_intake_item *it)
{
    if (it->status == HDX_OK) {
        hdx_info("admin_committed", "seq=%llu type=%s queue_id=%lld", (unsigned long long)it->seq,
                 it->type, (long long)it->admin_id);
        return;
    }
    hdx_error("admin_commit_failed", "type=%s queue_id=%lld err=%s", it->type,
              (long long)it->admin_id, hdx_strerror(it->status));
    if (srv->admin_next >= it->admin_id) srv->admin_next = it->admin_id - 1; /* retried */
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    hdx_bus_tick(srv->bus, hdx_monotonic_us());
    if (srv->hs_suppressed) handshake_log_flush(srv, hdx_monotonic_us());
    poll_admin_queue(srv);
    if (!hdx_tls_crl_changed(srv->tls)) return;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (c->kind == CONN_MLLP_PLAIN || c->closing || !c->bev) continue;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && hdx_tls_is_revoked(srv->tls, SSL_get0_peer_certificate(ssl))) {
            hdx_warn("device_revoked_disconnect", "peer=%s sender=%s serial=%s", c->peer, c->sender,
                     c->serial);
            conn_close(c, 1);
        }
    }
}

static void on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    on_reap(fd, what, arg);
}

void hdx_server_shutdown(struct hdx_server *srv)
{
    if (srv->stopping) return;
    srv->stopping = 1;
    srv->stop_deadline = hdx_monotonic_us() + SHUTDOWN_GRACE_US;
    hdx_info("shutdown", "connections=%zu", srv->nconns);
    if (srv->mllp_lis) evconnlistener_disable(srv->mllp_lis);
    if (srv->legacy_lis) evconnlistener_disable(srv->legacy_lis);
    if (srv->sub_lis) evconnlistener_disable(srv->sub_lis);
    for (struct conn *c = srv->conns; c; c = c->next)
        conn_close(c, 0);
    struct timeval tick = {0, 50000};
    event_add(srv->shutdown_ev, &tick);
}

static struct evconnlistener *listen_on(struct hdx_server *srv, const char *addr,
                                        evconnlistener_cb cb, char *why, size_t cap)
{
    char host[128];
    int port;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (hdx_split_hostport(addr, host, sizeof(host), &port) != 0 ||
        evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(why, cap, "'%s' is not HOST:PORT", addr);
        return NULL;
    }
    struct evconnlistener *l = evconnlistener_new_bind(
        srv->base, cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 4096,
        (struct sockaddr *)&ss, sslen);
    if (!l) snprintf(why, cap, "cannot listen on %s: %s", addr, strerror(errno));
    return l;
}

static int open_listeners(struct hdx_server *srv, char *why, size_t cap)
{
    const struct hdx_conf *conf = srv->conf;
    srv->mllp_lis = listen_on(srv, conf->mllp_listen, on_accept_mllp, why, cap);
    if (!srv->mllp_lis) return HDX_E_CONFIG;
    if (conf->sub_listen[0]) {
        srv->sub_lis = listen_on(srv, conf->sub_listen, on_accept_sub, why, cap);
        if (!srv->sub_lis) return HDX_E_CONFIG;
    }
    if (conf->legacy_listen[0]) {
        if (parse_allow(srv, conf->legacy_allow, why, cap) != HDX_OK) return HDX_E_CONFIG;
        srv->legacy_lis = listen_on(srv, conf->legacy_listen, on_accept_legacy, why, cap);
        if (!srv->legacy_lis) return HDX_E_CONFIG;
        hdx_warn("legacy_listener_enabled", "listen=%s allow=%zu_entries tls=none",
                 conf->legacy_listen, srv->nallow);
    }
    hdx_info("listening", "mllp=%s sub=%s legacy=%s", conf->mllp_listen,
             conf->sub_listen[0] ? conf->sub_listen : "off",
             conf->legacy_listen[0] ? conf->legacy_listen : "off");
    return HDX_OK;
}

static int make_events(struct hdx_server *srv)
{
    srv->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->done_fd < 0) return HDX_E_IO;
    srv->done_ev = event_new(srv->base, srv->done_fd, EV_READ | EV_PERSIST, on_commit_done, srv);
    srv->crl_ev = event_new(srv->base, -1, EV_PERSIST, on_housekeeping, srv);
    srv->reap_ev = event_new(srv->base, -1, 0, on_reap, srv);
    srv->shutdown_ev = event_new(srv->base, -1, EV_PERSIST, on_shutdown_tick, srv);
    srv->submit_ev = event_new(srv->base, -1, 0, on_submit, srv);
    if (!srv->done_ev || !srv->crl_ev || !srv->reap_ev || !srv->shutdown_ev || !srv->submit_ev)
        return HDX_E_NOMEM;
    int ms = srv->conf->tls_crl_check_ms;
    struct timeval crl = {ms / 1000, (ms % 1000) * 1000};
    event_add(srv->done_ev, NULL);
    event_add(srv->crl_ev, &crl);
    return HDX_OK;
}

int hdx_server_new(const struct hdx_conf *conf, struct event_base *base,
                   const struct hdx_keyring *kr, EVP_PKEY *log_key, struct hdx_store *ro_store,
                   struct hdx_store *commit_store, struct hdx_server **out, char *why,
                   size_t why_cap)
{
    static const struct hdx_bus_sink sink = {sink_write, sink_queued, sink_drop};
    uint64_t last = 0;
    uint8_t chain[HDX_HASH_LEN];
    *out = NULL;
    struct hdx_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        hdx_store_close(commit_store);
        return HDX_E_NOMEM;
    }
    srv->conf = conf;
    srv->base = base;
    srv->kr = kr;
    if (hdx_keyctx_new(kr, &srv->kc) != HDX_OK) srv->kc = NULL; /* the sealer blinds then */
    srv->ro_store = ro_store;
    srv->done_fd = -1;
    srv->started_s = hdx_now_us() / 1000000;
    if (hdx_conf_path(conf, "log.sth", srv->head_file, sizeof(srv->head_file)) != HDX_OK)
        srv->head_file[0] = 0;
    hl7_limits_default(&srv->limits);
    int rc = hdx_tls_new(conf, &srv->tls, why, why_cap);
    if (rc == HDX_OK && (rc = make_events(srv)) != HDX_OK)
        snprintf(why, why_cap, "cannot create events: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = hdx_store_last(ro_store, &last, chain, NULL)) != HDX_OK)
        snprintf(why, why_cap, "cannot read the store: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = hdx_bus_new(ro_store, kr, &sink, conf->sub_max_queue,
                                          conf->sub_max_lag_ms, last, &srv->bus)) != HDX_OK)
        snprintf(why, why_cap, "cannot create the bus");
    if (rc == HDX_OK) {
        rc = hdx_commit_start(commit_store, kr, conf->store_batch_max, conf->store_dedup_window,
                              log_key, conf->store_receipts, srv->head_file, notify_done, srv,
                              &srv->commit);
        commit_store = NULL; /* moved to the commit thread, or closed below */
        if (rc != HDX_OK)
            snprintf(why, why_cap, "cannot start the commit thread: %s", hdx_strerror(rc));
    }
    if (rc == HDX_OK) rc = open_listeners(srv, why, why_cap);
    hdx_store_close(commit_store);
    if (rc != HDX_OK) {
        hdx_server_free(srv);
        return rc;
    }
    *out = srv;
    return HDX_OK;
}

void hdx_server_free(struct hdx_server *srv)
{
    if (!srv) return;
    if (srv->hs_suppressed) handshake_log_flush(srv, srv->hs_window_us + 1000000);
    if (srv->mllp_lis) evconnlistener_free(srv->mllp_lis);
    if (srv->legacy_lis) evconnlistener_free(srv->legacy_lis);
    if (srv->sub_lis) evconnlistener_free(srv->sub_lis);
    /* Stop the commit thread first: it commits what is queued; connections still holding
     * in-flight items are then answered by nobody, and their senders will resend. */
    if (srv->commit) on_submit(-1, 0, srv); /* what this pass read is committed too */
    if (srv->commit) {
        struct hdx_commit_stats st;
        hdx_commit_get_stats(srv->commit, &st);
        char hist[HDX_COMMIT_HIST * 24] = "";
        size_t off = 0;
        for (unsigned k = 0; k < HDX_COMMIT_HIST; k++) {
            if (!st.batch_hist[k]) continue;
            int n = snprintf(hist + off, sizeof(hist) - off, "%s%u:%llu", off ? "," : "", 1u << k,
                             (unsigned long long)st.batch_hist[k]);
            if (n < 0 || (size_t)n >= sizeof(hist) - off) break;
            off += (size_t)n;
        }
        hdx_info("commit_stats",
                 "batches=%llu records=%llu duplicates=%llu failures=%llu last_seq=%llu "
                 "batch_hist=%s seal_ms=%llu flush_ms=%llu",
                 (unsigned long long)st.batches, (unsigned long long)st.records,
                 (unsigned long long)st.duplicates, (unsigned long long)st.failures,
                 (unsigned long long)st.last_seq, off ? hist : "-",
                 (unsigned long long)(st.seal_ns / 1000000),
                 (unsigned long long)(st.flush_ns / 1000000));
    }
    hdx_commit_stop(srv->commit);
    srv->commit = NULL;
    while (srv->conns) {
        srv->conns->inflight = 0;
        conn_free(srv->conns);
    }
    hdx_bus_free(srv->bus);
    if (srv->submit_ev) event_free(srv->submit_ev);
    hdx_keyctx_free(srv->kc);
    if (srv->done_ev) event_free(srv->done_ev);
    if (srv->crl_ev) event_free(srv->crl_ev);
    if (srv->reap_ev) event_free(srv->reap_ev);
    if (srv->shutdown_ev) event_free(srv->shutdown_ev);
    if (srv->done_fd >= 0) close(srv->done_fd);
    hdx_tls_free(srv->tls);
    free(srv);
}
