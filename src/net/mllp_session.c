#include "net/mllp_session.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "merkle/receipt.h"
#include "policy/policy.h"
#include "proto/ack.h"
#include "proto/checkpoint.h"
#include "proto/hl7.h"
#include "proto/mllp.h"

/* More messages than this between two checkpoints are still hashed, but not all marked. */
#define CKPT_MARK_MAX HDX_CKPT_MARKS_MAX

struct hdx_mllp {
    const struct hdx_conf *conf;
    struct hl7_limits limits;
    void (*submit)(void *arg, struct hdx_intake_item *it);
    void *submit_arg;
    int64_t started_s;
    uint64_t acks_built;
};

/* A checkpoint already judged on arrival; its record is submitted once every message before
 * it has its seq (reading pauses meanwhile, so nothing after it can slip in). */
struct pending_ckpt {
    enum hdx_ckpt_verdict verdict;
    struct hdx_checkpoint cp;
    uint64_t received;   /* messages hdxd hashed since the previous checkpoint */
    int64_t received_us; /* monotonic: when its frame arrived */
    struct hl7_delims d;
    char type[HDX_TYPE_MAX + 1];
    uint8_t *payload;
    size_t len;
};

struct mllp_conn {
    size_t scan_resume;
    size_t garbage_total; /* for the close log line */
    size_t garbage_run;   /* since the last frame: the limit applies to this */
    struct event *frame_timer, *idle_timer;
    int frame_timer_armed;
    uint64_t received, acked;
    int64_t frame_us; /* monotonic: when the frame being handled arrived */
    /* Device stream signatures (proto/checkpoint.h), when the device has a signing key. */
    int signing;
    uint8_t sign_pub[32], binding[32];
    struct hdx_stream stream;
    uint64_t *covered; /* seqs acknowledged since the last checkpoint */
    size_t ncovered, covered_cap;
    struct pending_ckpt *ckpt; /* waits for the messages before it to be committed */
};

static void pending_ckpt_free(struct pending_ckpt *p)
{
    if (!p) return;
    free(p->payload);
    free(p);
}

/* ---------- writing ---------- */

/* One MLLP frame of payload followed by more (which may be empty). */
static void write_frame2(struct hdx_conn *c, const char *payload, size_t len, const char *more,
                         size_t more_len)
{
    static const uint8_t sb = MLLP_SB, tail[2] = {MLLP_EB, MLLP_CR};
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t unsent = evbuffer_get_length(out);
    evbuffer_add(out, &sb, 1);
    evbuffer_add(out, payload, len);
    if (more_len) evbuffer_add(out, more, more_len);
    evbuffer_add(out, tail, 2);
    hdx_conn_write_soon(c, unsent); /* the sender waits for this answer */
}

static void write_frame(struct hdx_conn *c, const char *payload, size_t len)
{
    write_frame2(c, payload, len, NULL, 0);
}

/* Builds an ACK; its control id is unique within this hdxd run (MSH-10 of an ACK only has to
 * be unique for the receiver's bookkeeping). Returns the length, or -1. */
static int build_ack(struct hdx_mllp *m, const struct hl7_msg *msg, enum hl7_ack_code code,
                     const struct hl7_error *err, char *out, size_t cap)
{
    char ack_id[32];
    snprintf(ack_id, sizeof(ack_id), "HDX%llx.%llu", (unsigned long long)m->started_s,
             (unsigned long long)++m->acks_built);
    struct hl7_ack_params p = {code, err, ack_id, hdx_now_us(), NULL};
    return hl7_ack_build(msg && msg->nsegs ? msg : NULL, &p, out, cap);
}

static void send_ack(struct hdx_conn *c, const struct hl7_msg *msg, enum hl7_ack_code code,
                     const struct hl7_error *err)
{
    struct hdx_mllp *m = c->ctx;
    char ack[2048];
    int n = build_ack(m, msg, code, err, ack, sizeof(ack));
    if (n > 0) write_frame(c, ack, (size_t)n);
}

static void reject(struct hdx_conn *c, const struct hl7_msg *msg, const struct hl7_error *err)
{
    char text[200], type[80];
    send_ack(c, msg, err->ack == 'R' ? HL7_AR : HL7_AE, err);
    hdx_metric_rejected(c->tls ? HDX_METRIC_MLLP : HDX_METRIC_LEGACY);
    hdx_warn("hl7_rejected", "peer=%s sender=%s ack=A%c code=%d seg=%s field=%d type=%s reason=%s",
             c->peer, c->principal[0] ? c->principal : "-", err->ack, err->code,
             err->seg[0] ? err->seg : "-", err->field,
             hdx_log_str(type, sizeof(type), msg && msg->msg_type[0] ? msg->msg_type : "-"),
             hdx_log_str(text, sizeof(text), err->text));
}

static void submit_message(struct hdx_conn *c, const uint8_t *payload, size_t len,
                           const struct hl7_msg *msg)
{
    struct hdx_mllp *m = c->ctx;
    struct hl7_error err = {0};
    struct hdx_intake_item *it = hdx_intake_item_new(payload, len);
    if (!it) {
        err = (struct hl7_error){HL7_ERR_INTERNAL, 'R', "", 0, 0, "server out of memory"};
        reject(c, msg, &err);
        return;
    }
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", c->principal);
    snprintf(it->type, sizeof(it->type), "%s", msg->msg_type);
    snprintf(it->control_id, sizeof(it->control_id), "%s", msg->control_id);
    snprintf(it->patient_id, sizeof(it->patient_id), "%s", msg->patient_id);
    it->origin = c;
    it->received_us = ((struct mllp_conn *)c->session)->frame_us;
    /* The AA is prepared now, while the message is parsed; it is sent only once the commit
     * thread reports the record durable. */
    char ack[2048];
    int n = build_ack(m, msg, HL7_AA, NULL, ack, sizeof(ack));
    if (n > 0 && (it->reply = malloc((size_t)n)) != NULL) {
        memcpy(it->reply, ack, (size_t)n);
        it->reply_len = (size_t)n;
    }
    c->inflight++;
    hdx_metric_ingest(c->tls ? HDX_METRIC_MLLP : HDX_METRIC_LEGACY);
    m->submit(m->submit_arg, it);
}

static const char *verdict_word(enum hdx_ckpt_verdict v)
{
    static const char *const words[] = {"verified", "malformed", "bad-signature", "replayed",
                                        "mismatch"};
    return (unsigned)v < sizeof(words) / sizeof(words[0]) ? words[v] : "?";
}

/* A checkpoint frame: judged now, against exactly the payloads that came before it. */
static void take_checkpoint(struct hdx_conn *c, const uint8_t *payload, size_t len,
                            const struct hl7_msg *msg)
{
    struct mllp_conn *ss = c->session;
    struct hl7_error err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    if (!ss->signing) {
        snprintf(err.text, sizeof(err.text), "%s",
                 !c->tls ? "checkpoint refused: stream signatures need a TLS connection"
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
    p->received = ss->stream.count;
    p->received_us = ss->frame_us;
    struct hl7_view zcv;
    /* A ZCV or ZCS of the device's own would sit beside hdx's verdict in the record. */
    if (hdx_checkpoint_parse(msg, &p->cp) != HDX_OK ||
        hl7_get(msg, "ZCV", 1, 1, 1, 0, 0, &zcv) == 0 ||
        hl7_get(msg, "ZCS", 1, 1, 1, 0, 0, &zcv) == 0) {
        uint64_t last_n = ss->stream.last_n;
        p->verdict = HDX_CKPT_MALFORMED;
        hdx_stream_init(&ss->stream); /* the device starts a new running hash too */
        ss->stream.last_n = last_n;
    } else {
        p->verdict = hdx_checkpoint_check(&ss->stream, &p->cp, ss->binding, ss->sign_pub);
    }
    if (p->verdict == HDX_CKPT_OK)
        hdx_info("stream_checkpoint", "peer=%s sender=%s n=%llu messages=%llu verdict=verified",
                 c->peer, c->principal, (unsigned long long)p->cp.n,
                 (unsigned long long)p->received);
    else
        hdx_error("stream_alert",
                  "peer=%s sender=%s n=%llu messages_unverified=%llu verdict=%s reason=\"%s\"",
                  c->peer, c->principal, (unsigned long long)p->cp.n,
                  (unsigned long long)p->received, verdict_word(p->verdict),
                  hdx_ckpt_verdict_text(p->verdict));
    ss->ckpt = p;
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
static size_t put_seq_segments(const struct hdx_conn *c, const struct hl7_delims *d, char *out,
                               size_t cap)
{
    struct mllp_conn *ss = c->session;
    char raw[ZCS_RAW_MAX + 48], esc[5 * ZCS_RAW_MAX + 256];
    size_t n = 0, i = 0;
    while (i < ss->ncovered) {
        size_t rl = 0;
        while (i < ss->ncovered && rl < ZCS_RAW_MAX) {
            if (rl) raw[rl++] = ',';
            rl += (size_t)seq_run(ss->covered, ss->ncovered, &i, raw + rl, sizeof(raw) - rl);
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
static void submit_checkpoint(struct hdx_conn *c)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    struct pending_ckpt *p = ss->ckpt;
    struct hl7_msg msg;
    struct hl7_error err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    char bind[65], reason[400], fs = p->d.field;
    /* a run is at most 41 bytes and escaping at most quintuples it */
    size_t cap = p->len + 1024 + ss->ncovered * 5 * 42;
    uint8_t *body = malloc(cap);
    struct hdx_intake_item *it = NULL;
    ss->ckpt = NULL;
    hdx_hex(ss->binding, 32, bind);
    memset(&msg, 0, sizeof(msg));
    if (body && hl7_escape(&p->d, hdx_ckpt_verdict_text(p->verdict), reason, sizeof(reason)) >= 0) {
        size_t n = p->len;
        memcpy(body, p->payload, n);
        if (!n || body[n - 1] != '\r') body[n++] = '\r';
        n += (size_t)snprintf((char *)body + n, cap - n, "ZCV%c1%c%s%c%s%c%s%c%llu%c%zu\r", fs, fs,
                              verdict_word(p->verdict), fs, reason, fs, bind, fs,
                              (unsigned long long)p->received, fs, ss->ncovered);
        n += put_seq_segments(c, &p->d, (char *)body + n, cap - n);
        it = hdx_intake_item_new(body, n);
    }
    free(body);
    (void)hl7_parse(p->payload, p->len, &m->limits, &msg, &err);
    if (!it) {
        err = (struct hl7_error){HL7_ERR_INTERNAL, 'R', "", 0, 0, "server out of memory"};
        reject(c, &msg, &err);
        hl7_msg_free(&msg);
        pending_ckpt_free(p);
        return;
    }
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", c->principal);
    snprintf(it->type, sizeof(it->type), "%s", p->type);
    it->origin = c;
    it->checkpoint = 1;
    it->received_us = p->received_us;
    it->verified = p->verdict == HDX_CKPT_OK;
    it->covers = ss->covered;
    it->ncovers = ss->ncovered;
    ss->covered = NULL;
    ss->ncovered = ss->covered_cap = 0;
    /* Accepted: AA (with its receipt). Refused: AR 207 with the reason, sent once the
     * refused checkpoint is on record too. */
    char ack[2048];
    struct hl7_error refusal = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    snprintf(refusal.text, sizeof(refusal.text), "%s", hdx_ckpt_verdict_text(p->verdict));
    int n = build_ack(m, &msg, it->verified ? HL7_AA : HL7_AR, it->verified ? NULL : &refusal, ack,
                      sizeof(ack));
    if (n > 0 && (it->reply = malloc((size_t)n)) != NULL) {
        memcpy(it->reply, ack, (size_t)n);
        it->reply_len = (size_t)n;
    }
    hl7_msg_free(&msg);
    pending_ckpt_free(p);
    c->inflight++;
    hdx_metric_ingest(c->tls ? HDX_METRIC_MLLP : HDX_METRIC_LEGACY);
    m->submit(m->submit_arg, it);
}

static void handle_frame(struct hdx_conn *c, const uint8_t *payload, size_t len)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    struct hl7_msg msg;
    struct hl7_error err;
    memset(&msg, 0, sizeof(msg));
    memset(&err, 0, sizeof(err));
    ss->received++;
    ss->frame_us = hdx_monotonic_us();
    int parsed = hl7_parse(payload, len, &m->limits, &msg, &err) == 0;
    /* Only this path may store a ZCK^Z01 record (with hdx's ZCV verdict): on a plaintext
     * connection there is no binding, so a checkpoint there is refused (take_checkpoint). */
    if (parsed && hdx_is_checkpoint(&msg)) {
        take_checkpoint(c, payload, len, &msg);
        hl7_msg_free(&msg);
        return;
    }
    /* Every other payload is in the device's running hash, refused ones included. */
    if (ss->signing && hdx_stream_add(&ss->stream, payload, len) != HDX_OK)
        hdx_error("stream_hash_failed", "peer=%s sender=%s", c->peer, c->principal);
    if (!parsed) {
        reject(c, &msg, &err);
        hl7_msg_free(&msg);
        return;
    }
    if (strncmp(msg.msg_type, "ACK", 3) == 0) {
        /* An acknowledgement is never acknowledged (HL7 v2.5.1 2.9.2): that would loop. */
        hdx_info("ack_ignored", "peer=%s sender=%s", c->peer, c->principal);
        hl7_msg_free(&msg);
        return;
    }
    submit_message(c, payload, len, &msg);
    hl7_msg_free(&msg);
}

static void on_frame_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    ss->frame_timer_armed = 0;
    hdx_warn("mllp_frame_timeout", "peer=%s sender=%s timeout_ms=%d", c->peer,
             c->principal[0] ? c->principal : "-", m->conf->mllp_read_timeout_ms);
    hdx_conn_close(c, 1);
}

static void arm_idle_timer(struct hdx_conn *c)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    struct timeval tv = {m->conf->mllp_idle_timeout_s, 0};
    evtimer_add(ss->idle_timer, &tv);
}

/* No whole frame for mllp.idle_timeout_s. A sender waiting for its answers is not idle. */
static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    if (c->closing) return;
    if (c->inflight > 0) {
        arm_idle_timer(c);
        return;
    }
    hdx_conn_log_close(c, "connection_timeout", "idle");
    hdx_conn_close(c, 1);
}

static void arm_frame_timer(struct hdx_conn *c, int on)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    if (on && !ss->frame_timer_armed) {
        int ms = m->conf->mllp_read_timeout_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(ss->frame_timer, &tv);
        ss->frame_timer_armed = 1;
    } else if (!on && ss->frame_timer_armed) {
        evtimer_del(ss->frame_timer);
        ss->frame_timer_armed = 0;
    }
}

static void refuse_oversize(struct hdx_conn *c, const uint8_t *payload, size_t have)
{
    struct hdx_mllp *m = c->ctx;
    struct hl7_msg msg;
    struct hl7_error perr, err = {HL7_ERR_INTERNAL, 'R', "", 0, 0, ""};
    memset(&msg, 0, sizeof(msg));
    /* Parse what arrived so the AR can at least be addressed; the error is the size. */
    (void)hl7_parse(payload, have, &m->limits, &msg, &perr);
    snprintf(err.text, sizeof(err.text), "message exceeds the maximum size of %zu bytes",
             m->conf->mllp_max_message);
    reject(c, &msg, &err);
    hl7_msg_free(&msg);
    hdx_conn_close(c, 0);
}

static int drop_garbage(struct hdx_conn *c, struct evbuffer *in, size_t n)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    if (!n) return 0;
    evbuffer_drain(in, n);
    if (ss->garbage_total == 0) /* once per connection; the total is in the close line */
        hdx_warn("mllp_garbage", "peer=%s sender=%s bytes=%zu", c->peer,
                 c->principal[0] ? c->principal : "-", n);
    ss->garbage_total += n;
    ss->garbage_run += n;
    if (ss->garbage_run > m->conf->mllp_max_message) {
        hdx_warn("mllp_garbage_limit", "peer=%s bytes=%zu", c->peer, ss->garbage_run);
        hdx_conn_close(c, 1);
        return -1;
    }
    return 0;
}

/* 1 when the buffer holds a frame that began in an earlier read (the start block at offset 0,
 * *resume payload bytes searched) and no 0x1C arrived since: mllp_scan would answer NEED_MORE
 * with *resume at the end, which is set here without making the buffer contiguous. Pulling
 * it up on every read copied a 512 KiB message about 32 times (one copy per 16 KiB read). */
static int frame_still_open(struct evbuffer *in, size_t len, size_t max, size_t *resume)
{
    size_t rel = *resume;
    unsigned char first;
    if (rel == 0 || len - 1 > max || 1 + rel > len) return 0;
    if (evbuffer_copyout(in, &first, 1) != 1 || first != MLLP_SB) return 0;
    if (1 + rel < len) {
        struct evbuffer_ptr at;
        if (evbuffer_ptr_set(in, &at, 1 + rel, EVBUFFER_PTR_SET) != 0) return 0;
        if (evbuffer_search(in, "\x1c", 1, &at).pos != -1) return 0; /* the scanner decides */
    }
    *resume = len - 1;
    return 1;
}

static void mllp_read(struct hdx_conn *c)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max = m->conf->mllp_max_message;
    while (!c->closing) {
        if (ss->ckpt && c->inflight == 0) submit_checkpoint(c);
        if (ss->ckpt || c->inflight >= m->conf->mllp_max_inflight) {
            hdx_conn_pause(c, HDX_PAUSE_SESSION); /* back-pressure until ACKs go out */
            arm_frame_timer(c, 0);                /* the wait is ours, not the sender's */
            return;
        }
        if (hdx_conn_output_full(c)) { /* a sender that does not read its ACKs */
            hdx_conn_pause(c, HDX_PAUSE_OUTPUT);
            arm_frame_timer(c, 0);
            return;
        }
        size_t len = evbuffer_get_length(in), want = len < max + 3 ? len : max + 3;
        if (!len) break;
        if (frame_still_open(in, len, max, &ss->scan_resume)) {
            arm_frame_timer(c, 1);
            return;
        }
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)want);
        struct mllp_scan s;
        enum mllp_status st = mllp_scan(data, want, max, &ss->scan_resume, &s);
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
            if (ss->garbage_total == 0)
                hdx_warn("mllp_garbage", "peer=%s sender=%s bytes=%zu", c->peer,
                         c->principal[0] ? c->principal : "-", s.garbage);
            ss->garbage_total += s.garbage;
        }
        ss->garbage_run = 0;
        arm_idle_timer(c); /* only a whole frame is traffic: stray bytes are not */
        handle_frame(c, data + s.payload_off, s.payload_len);
        evbuffer_drain(in, s.consumed);
        ss->scan_resume = 0;
        arm_frame_timer(c, 0);
    }
}

/* Undoes mllp_read's own back-pressure once its causes are gone (the layer resumes
 * reading and calls mllp_read for what is buffered). */
static void resume_reading(struct hdx_conn *c)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    if (c->closing || ss->ckpt || c->inflight >= m->conf->mllp_max_inflight) return;
    hdx_conn_resume(c, HDX_PAUSE_SESSION);
}

static void answer_item(struct hdx_conn *c, const struct hdx_intake_item *it)
{
    struct mllp_conn *ss = c->session;
    struct hdx_mllp *m = c->ctx;
    struct hl7_msg msg;
    struct hl7_error err = {0};
    if (ss->signing && !it->checkpoint && it->status == HDX_OK) {
        if (ss->ncovered == ss->covered_cap && ss->covered_cap < CKPT_MARK_MAX) {
            size_t cap = ss->covered_cap ? ss->covered_cap * 2 : 64;
            uint64_t *p = realloc(ss->covered, cap * sizeof(*p));
            if (p) {
                ss->covered = p;
                ss->covered_cap = cap;
            }
        }
        if (ss->ncovered < ss->covered_cap) ss->covered[ss->ncovered++] = it->seq;
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
        ss->acked++;
        return;
    }
    /* Rare paths (store failure, no memory for the prepared ACK): parse again to address
     * the answer. */
    memset(&msg, 0, sizeof(msg));
    if (hl7_parse(it->body, it->body_len, &m->limits, &msg, &err) != 0)
        memset(&msg, 0, sizeof(msg));
    if (it->status == HDX_OK) {
        send_ack(c, &msg, HL7_AA, NULL);
        ss->acked++;
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
void hdx_mllp_done(struct hdx_conn *c, const struct hdx_intake_item *it)
{
    struct mllp_conn *ss = c->session;
    if (!c->closing) {
        answer_item(c, it);
        if (it->received_us) hdx_metric_ack_latency(hdx_monotonic_us() - it->received_us);
    }
    hdx_conn_settle(c);
    if (c->closing) return;
    if (ss->ckpt && c->inflight == 0) submit_checkpoint(c);
    resume_reading(c);
}

/* ---------- session ops ---------- */

/* The policy engine's permission table decides who may send (policy/policy.h, rule 1). */
static int tls_role_allowed(const char *role)
{
    return hdx_policy_role_has(hdx_role_parse(role), HDX_RES_STREAM, HDX_ACT_WRITE);
}

static int plain_role_allowed(const char *role)
{
    return strcmp(role, "legacy") == 0;
}

static int mllp_open(struct hdx_conn *c)
{
    struct mllp_conn *ss = calloc(1, sizeof(*ss));
    if (!ss) return -1;
    c->session = ss;
    ss->frame_timer = evtimer_new(hdx_conn_base(c), on_frame_timeout, c);
    ss->idle_timer = evtimer_new(hdx_conn_base(c), on_idle_timeout, c);
    if (!ss->frame_timer || !ss->idle_timer) return -1;
    arm_idle_timer(c);
    if (!c->tls) return 0;
    /* A device with a stream-signing key: its checkpoints are bound to this connection. */
    if (hdx_store_device_signkey_get(hdx_conn_store(c), c->principal, ss->sign_pub) == HDX_OK) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (SSL_export_keying_material(ssl, ss->binding, sizeof(ss->binding), HDX_CKPT_LABEL,
                                       strlen(HDX_CKPT_LABEL), NULL, 0, 0) != 1) {
            hdx_warn("connection_refused",
                     "peer=%s sender=%s reason=\"cannot derive the "
                     "stream-signature binding\"",
                     c->peer, c->principal);
            return -1;
        }
        ss->signing = 1;
        hdx_stream_init(&ss->stream);
    }
    return 0;
}

static void mllp_free(struct hdx_conn *c)
{
    struct mllp_conn *ss = c->session;
    if (!ss) return;
    pending_ckpt_free(ss->ckpt);
    free(ss->covered);
    if (ss->frame_timer) event_free(ss->frame_timer);
    if (ss->idle_timer) event_free(ss->idle_timer);
    free(ss);
    c->session = NULL;
}

static void mllp_describe(const struct hdx_conn *c, char *buf, size_t cap)
{
    const struct mllp_conn *ss = c->session;
    if (!ss) return;
    snprintf(buf, cap, " received=%llu acked=%llu garbage_bytes=%zu",
             (unsigned long long)ss->received, (unsigned long long)ss->acked, ss->garbage_total);
}

static void mllp_drained(struct hdx_conn *c)
{
    resume_reading(c);
}

const struct hdx_session_ops hdx_mllp_tls_ops = {
    .port = "mllp",
    .role_allowed = tls_role_allowed,
    .open = mllp_open,
    .read = mllp_read,
    .drained = mllp_drained,
    .free = mllp_free,
    .describe = mllp_describe,
};

const struct hdx_session_ops hdx_mllp_plain_ops = {
    .port = "legacy",
    .role_allowed = plain_role_allowed,
    .open = mllp_open,
    .read = mllp_read,
    .drained = mllp_drained,
    .free = mllp_free,
    .describe = mllp_describe,
};

int hdx_mllp_new(const struct hdx_conf *conf, void (*submit)(void *arg, struct hdx_intake_item *it),
                 void *submit_arg, struct hdx_mllp **out)
{
    struct hdx_mllp *m = calloc(1, sizeof(*m));
    if (!m) return HDX_E_NOMEM;
    m->conf = conf;
    hl7_limits_default(&m->limits);
    m->submit = submit;
    m->submit_arg = submit_arg;
    m->started_s = hdx_now_us() / 1000000;
    *out = m;
    return HDX_OK;
}

void hdx_mllp_free(struct hdx_mllp *m)
{
    free(m);
}
