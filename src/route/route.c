#include "route/route.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dicom/dataset.h"
#include "dicom/sop.h"
#include "policy/policy.h"
#include "policy/policy_load.h"
#include "proto/hl7.h"
#include "proto/http.h"
#include "proto/mllp.h"
#include "route/cursor.h"
#include "route/match.h"
#include "route/scu.h"
#include "route/transform.h"
#include "store/store.h"

#define WIN_CAP(rc) (4 * ((size_t)(rc)->max_inflight + 1)) /* window FIFO's array */
#define PREFETCH_MAX 256                                   /* messages read ahead of the window */
#define PREFETCH_BYTES (8u << 20) /* and their bytes (a few large ones are enough) */
#define SCAN_CHUNK 512            /* index rows per scan */
#define DISCLOSURE_PERIOD_US 10000000
#define DISCLOSURE_SLOTS 1024 /* patients per lane before a summary is written early */
#define STATUS_PERIOD_US 1000000
#define WAIT_SLICE_MS 100      /* how often a blocked lane looks at its stop flag */
#define FAILING_AFTER 1        /* consecutive failures before route_failing is said */
#define FEED_MAX 256           /* committed batches kept in memory for lanes that keep up */
#define FEED_BYTES (16u << 20) /* and their message bytes */
#define COMMIT_RING 4096       /* recent commit times kept for the latency figure */
#define LANE_NICE 10           /* lanes' nice value (see lane_main) */
#define LAT_BUCKETS 1001       /* delivery latency in 100 us steps up to 100 ms, then over */
#define SCU_IDLE_US 2000000    /* a DICOM association idle this long is released */

/* snprintf whose cut is deliberate (paths are bounded by HDX_PATH_MAX, texts by their
 * buffers): the result is checked where a cut would matter. */
static int sfmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sfmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---------- tickets: a lane waiting for a record of its own to be durable ---------- */

/* Shared by a lane and the commit's on_done (network thread); whoever is last frees it, so a
 * lane that stops while its record is still in the pipeline leaves nothing dangling. */
struct ticket {
    int refs, done, status;
    struct ticket *prev, *next; /* every live one, for hdx_routes_free */
};

static pthread_mutex_t ticket_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ticket_cv = PTHREAD_COND_INITIALIZER;
static struct ticket *tickets;

static void ticket_release(struct ticket *t)
{
    int free_it;
    pthread_mutex_lock(&ticket_mu);
    free_it = --t->refs == 0;
    if (free_it) {
        if (t->prev)
            t->prev->next = t->next;
        else
            tickets = t->next;
        if (t->next) t->next->prev = t->prev;
    }
    pthread_mutex_unlock(&ticket_mu);
    if (free_it) free(t);
}

static void ticket_done(void *arg, const struct hdx_intake_item *it)
{
    struct ticket *t = arg;
    pthread_mutex_lock(&ticket_mu);
    t->done = 1;
    t->status = it->status;
    pthread_cond_broadcast(&ticket_cv);
    pthread_mutex_unlock(&ticket_mu);
    ticket_release(t);
}

/* ---------- the objects ---------- */

struct pending {
    uint64_t seq;
    int64_t time_us;
    int64_t committed_us; /* when hdxd reported it committed (monotonic), 0: not known */
    uint8_t *msg;         /* what is sent: the stored message after the transforms */
    size_t len;
    char control_id[200]; /* MSH-10; a DICOM instance: its SOP Instance UID */
    /* a DICOM instance: its SOP class, transfer syntax and where its data set starts in msg */
    char sop_class[HDX_DS_UID_MAX + 1], ts[HDX_DS_UID_MAX + 1];
    size_t ds_off;
    uint8_t patient[HDX_BLIND_LEN];
    int has_patient;
    int sent, acked, attempts, retry; /* retry: a dead letter sent again (hdx route retry) */
    int64_t sent_us;
    char dead_reason[200]; /* set: to become a dead letter */
};

struct disclosure {
    uint8_t patient[HDX_BLIND_LEN];
    uint64_t first, last, count;
    int used;
};

struct route;

struct lane {
    struct route *rt;
    int index;
    pthread_t th;
    int started;
    atomic_int finished; /* the lane's loop is over (its thread may still be joined) */
    struct hdx_store *store;
    struct hdx_keyctx *kc;
    struct hdx_cursor *cursor;
    struct hdx_cursor_pos pos;
    uint64_t scanned; /* every record up to here was looked at (window, prefetch or skipped) */
    /* prefetched messages, then the window of those in flight; both in seq order, both FIFOs
     * whose live part starts at pre (win) inside pre_buf (win_buf): see fifo_push */
    struct pending *pre, *pre_buf;
    size_t npre, pre_bytes;
    struct pending *win, *win_buf;
    size_t nwin;
    uint8_t *ptbuf;
    size_t ptcap;
    /* the connection */
    int fd;
    SSL *ssl;
    uint8_t *rbuf;
    size_t rlen, rcap, resume;
    int keepalive;         /* https: the server keeps the connection */
    struct hdx_scu *scu;   /* dicom(s)://: the association over the connection, NULL before */
    int64_t idle_since_us; /* monotonic: the window became empty (0: not idle) */
    int insecure_logged;
    /* failures */
    int failures; /* consecutive, of the destination */
    int failing;
    int64_t next_try_us; /* monotonic */
    char last_error[200];
    int64_t last_error_us, last_ok_us;
    /* the accounting of disclosures since the last summary */
    struct disclosure disc[DISCLOSURE_SLOTS];
    size_t ndisc;
    uint64_t anon_first, anon_last, anon_count;
    int64_t disc_since_us;
    struct ticket *audit_ticket; /* the last summary's, while in the pipeline */
    uint64_t audit_pending_to;   /* what it covers */
    /* the policy engine's data (consent), reloaded when a policy record commits */
    struct hdx_policy *policy;
    unsigned policy_gen;
    uint64_t held_first, held_last, held_count; /* refused by a patient's directive */
    enum hdx_policy_reason held_reason;
    /* counters, for the status file */
    uint64_t sent_total, acked_total, dead_total, late_acks, retried_total;
    uint64_t from_feed, from_store; /* messages taken from the live feed, read from the store */
    int64_t status_us;
    char state[16];
    uint64_t status_acked; /* what the last status file said */
    /* from hdxd's report that a message is committed (the moment its sender's AA goes out) to
     * the destination's acknowledgement, for messages acknowledged at the first attempt and
     * committed while the route was running (a backlog is not counted): the route's own
     * latency, for the status file and the benchmark */
    uint64_t lat[LAT_BUCKETS], lat_n;
    char status_state[16];
    int64_t metered; /* what this lane counts in hdx_route_queued_messages (core/metrics.h) */
};

struct route {
    struct hdx_routes *rs;
    struct hdx_route_conf *conf;
    SSL_CTX *ctx;
    atomic_int stop, drain;
    /* a reload: the configuration to start once this one has drained (NULL: removed) */
    struct hdx_route_conf *next;
    int retiring;
    int64_t drain_deadline;
    char dir[HDX_PATH_MAX];
    char dest_desc[300]; /* "mllps://host:port" without anything secret */
    /* dead letters marked for retry (under rs->mu) */
    uint64_t *retry;
    size_t nretry, retry_cap;
    int nlanes;
    struct lane lanes[];
};

/* The live feed: the plaintext of recently committed batches, as the network thread had it,
 * shared by every lane that has read everything before it (so a message is decrypted and
 * read from the store once for all routes, not once per route). A batch covers the seqs
 * first..last with nothing missing (its items are the clinical messages among them); a lane
 * whose cursor is not at a batch's start reads the store instead. Refcounted under rs->mu;
 * bodies wiped when freed. */
struct feed_item {
    uint64_t seq;
    int64_t time_us;
    char sender[HDX_SENDER_MAX + 1];
    char type[HDX_TYPE_MAX + 1];
    uint8_t patient[HDX_BLIND_LEN]; /* all zero: none */
    uint32_t off, len;
};

struct feed_batch {
    int refs;
    uint64_t first, last;
    int64_t commit_us; /* monotonic: when hdxd reported it committed */
    size_t n, bytes;
    struct feed_item *items;
    uint8_t *body;
};

static void feed_release(struct feed_batch *b);

struct hdx_routes {
    struct hdx_routes_env env;
    char dir[HDX_PATH_MAX], store_path[HDX_PATH_MAX], tls_min[8];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last_seq; /* under mu */
    /* when each recent batch was reported committed: (last seq, monotonic us), a ring under mu;
     * a delivery's latency is counted from there (the "after commit") */
    uint64_t commit_seq[COMMIT_RING];
    int64_t commit_us[COMMIT_RING];
    unsigned commit_head;
    struct feed_batch *feed[FEED_MAX]; /* oldest first, under mu */
    size_t nfeed, feed_bytes;
    atomic_uint policy_gen; /* bumped by every committed policy record */
    int shutting;           /* hdx_routes_drain: nothing is started any more */
    struct route *r[HDX_ROUTES_MAX];
    size_t n;
};

/* ---------- small helpers ---------- */

/* stop: at once (hdx_routes_free). drain (hdxd stopping, or the route reloaded): the lane
 * sends nothing new, reads the ACKs of what is in flight (within ack_timeout_ms), writes its
 * pending disclosures and waits for them while the event loop still runs, and ends; so a
 * reload neither drops nor repeats a message. */
static int halted(const struct lane *l)
{
    return atomic_load(&l->rt->stop);
}

static int draining(const struct lane *l)
{
    return atomic_load(&l->rt->drain);
}

static int stopping(const struct lane *l)
{
    return halted(l) || draining(l);
}

/* What the window has sent and not had answered yet. */
static size_t in_flight(const struct lane *l);

static void set_error(struct lane *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct lane *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->last_error, sizeof(l->last_error), fmt, ap);
    va_end(ap);
    l->last_error_us = hdx_now_us();
}

static size_t in_flight(const struct lane *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nwin; i++)
        n += l->win[i].sent && !l->win[i].acked && !l->win[i].dead_reason[0];
    return n;
}

/* The slot after the n live entries from *head in buf (cap entries), for a push. Taking from
 * the front moves *head; the live part goes back to the buffer's start only when the end is
 * reached, so each entry (about 650 bytes) moves O(1) times: moving the rest of a window of
 * 64 on every ACK was a fifth of a lane's time. n < cap / 2 on every push. */
static struct pending *fifo_push(struct pending *buf, size_t cap, struct pending **head, size_t n)
{
    if ((size_t)(*head - buf) + n >= cap) {
        memmove(buf, *head, n * sizeof(*buf));
        *head = buf;
    }
    return *head + n;
}

static void pre_push(struct lane *l, const struct pending *p)
{
    *fifo_push(l->pre_buf, 2 * PREFETCH_MAX, &l->pre, l->npre) = *p;
    l->npre++;
}

static void win_push(struct lane *l, const struct pending *p)
{
    *fifo_push(l->win_buf, WIN_CAP(l->rt->conf), &l->win, l->nwin) = *p;
    l->nwin++;
}

static void pending_free(struct pending *p)
{
    if (p->msg) {
        sodium_memzero(p->msg, p->len);
        free(p->msg);
    }
    sodium_memzero(p, sizeof(*p));
}

/* Waits on the routes' condition until woken, the deadline (monotonic µs) or the stop flag. */
static void lane_sleep(struct lane *l, int64_t until_us)
{
    struct hdx_routes *rs = l->rt->rs;
    pthread_mutex_lock(&rs->mu);
    int64_t now = hdx_monotonic_us();
    if (!stopping(l) && until_us > now && rs->last_seq <= l->scanned && !l->rt->nretry) {
        int64_t wait = until_us - now;
        if (wait > WAIT_SLICE_MS * 1000) wait = WAIT_SLICE_MS * 1000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait % 1000000) * 1000;
        ts.tv_sec += wait / 1000000 + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&rs->cv, &rs->mu, &ts);
    }
    pthread_mutex_unlock(&rs->mu);
}

static int ticket_wait(struct lane *l, struct ticket *t)
{
    int done = 0, status = HDX_E_TIMEOUT;
    int64_t deadline = hdx_monotonic_us() + 5000000; /* the pipeline failing is sticky */
    while (!done && !atomic_load(&l->rt->stop) && hdx_monotonic_us() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_SLICE_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_mutex_lock(&ticket_mu);
        if (!t->done) pthread_cond_timedwait(&ticket_cv, &ticket_mu, &ts);
        done = t->done;
        status = t->status;
        pthread_mutex_unlock(&ticket_mu);
    }
    return done ? status : HDX_E_TIMEOUT;
}

static struct ticket *ticket_new(void)
{
    struct ticket *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->refs = 2; /* the lane's and on_done's */
    pthread_mutex_lock(&ticket_mu);
    t->next = tickets;
    if (tickets) tickets->prev = t;
    tickets = t;
    pthread_mutex_unlock(&ticket_mu);
    return t;
}

/* ---------- admin statements of a lane ---------- */

/* Submits a route_* statement; with want_durable, waits until it is (HDX_OK) or failed. */
static int submit_statement(struct lane *l, enum hdx_admin_op op, uint64_t seq, const char *reason,
                            int want_durable)
{
    struct hdx_admin a = {.op = op, .seq = seq};
    char body[HDX_ADMIN_BODY_MAX];
    int bad = 0;
    sfmt(a.name, sizeof(a.name), "%s", l->rt->conf->name);
    if (reason) sfmt(a.reason, sizeof(a.reason), "%s", reason);
    sfmt(a.by, sizeof(a.by), "route:%s", l->rt->conf->name);
    int n = hdx_admin_format(&a, body, sizeof(body));
    if (n < 0) return n;
    struct hdx_intake_item *it = hdx_admin_item_new(0, (const uint8_t *)body, (size_t)n, &bad);
    if (!it) return HDX_E_NOMEM;
    struct ticket *t = want_durable ? ticket_new() : NULL;
    if (want_durable && !t) {
        hdx_intake_item_free(it);
        return HDX_E_NOMEM;
    }
    if (t) {
        it->on_done = ticket_done;
        it->done_arg = t;
    }
    hdx_commit_submit(l->rt->rs->env.commit, it);
    if (!t) return HDX_OK;
    int rc = ticket_wait(l, t);
    ticket_release(t);
    return rc;
}

/* ---------- the accounting of disclosures ---------- */

static struct disclosure *disc_slot(struct lane *l, const uint8_t *patient)
{
    uint64_t h;
    memcpy(&h, patient, sizeof(h));
    for (size_t i = h & (DISCLOSURE_SLOTS - 1);; i = (i + 1) & (DISCLOSURE_SLOTS - 1))
        if (!l->disc[i].used || memcmp(l->disc[i].patient, patient, HDX_BLIND_LEN) == 0)
            return &l->disc[i];
}

/* One summary record; t (may be NULL) learns when it is durable. */
static void disc_submit(struct lane *l, const char *outcome, const char *reason,
                        const uint8_t *patient, uint64_t first, uint64_t last, uint64_t count,
                        struct ticket *t)
{
    char principal[80], detail[HDX_AUDIT_VALUE_MAX + 1];
    sfmt(principal, sizeof(principal), "route:%s", l->rt->conf->name);
    sfmt(detail, sizeof(detail), "to=%s lane=%d", l->rt->dest_desc, l->index);
    struct hdx_audit a = {.event = "disclosure",
                          .action = "route",
                          .outcome = outcome,
                          .reason = reason,
                          .principal = principal,
                          .role = "integration",
                          .source = l->rt->dest_desc,
                          .cert = "-",
                          .patient = patient,
                          .first_seq = first,
                          .last_seq = last,
                          .count = count,
                          .detail = detail};
    struct hdx_intake_item *it = hdx_audit_item_new(&a);
    if (!it) {
        hdx_error("audit_failed", "reason=out_of_memory event=disclosure route=%s",
                  l->rt->conf->name);
        if (t) { /* as if committed and failed: the lane logs it and tries at the next period */
            struct hdx_intake_item failed = {.status = HDX_E_NOMEM};
            ticket_done(t, &failed);
        }
        return;
    }
    if (t) {
        it->on_done = ticket_done;
        it->done_arg = t;
    }
    hdx_commit_submit(l->rt->rs->env.commit, it);
}

/* Writes the summaries; once the last is durable, pos.audited = upto (see lane_audit_check). */
static void disc_flush(struct lane *l, uint64_t upto)
{
    if (l->audit_ticket) return; /* one summary in flight at a time */
    if (l->held_count) {         /* what the policy kept back: one deny summary */
        disc_submit(l, "deny", hdx_policy_reason_name(l->held_reason), NULL, l->held_first,
                    l->held_last, l->held_count, NULL);
        l->held_count = l->held_first = l->held_last = 0;
    }
    size_t left = l->ndisc + (l->anon_count ? 1 : 0);
    if (left == 0) {
        if (l->pos.audited < upto) l->pos.audited = upto;
        l->disc_since_us = hdx_monotonic_us();
        return;
    }
    struct ticket *t = ticket_new();
    if (!t) return; /* tried again at the next period */
    for (size_t i = 0; i < DISCLOSURE_SLOTS && left; i++) {
        struct disclosure *d = &l->disc[i];
        if (!d->used) continue;
        left--;
        disc_submit(l, "permit", "-", d->patient, d->first, d->last, d->count,
                    left == 0 ? t : NULL);
        memset(d, 0, sizeof(*d));
    }
    if (l->anon_count)
        disc_submit(l, "permit", "no_patient", NULL, l->anon_first, l->anon_last, l->anon_count, t);
    l->anon_count = l->anon_first = l->anon_last = 0;
    l->ndisc = 0;
    l->audit_ticket = t;
    l->audit_pending_to = upto;
    l->disc_since_us = hdx_monotonic_us();
}

static void disc_add(struct lane *l, const struct pending *p)
{
    if (!p->has_patient) {
        if (!l->anon_count) l->anon_first = p->seq;
        l->anon_last = p->seq;
        l->anon_count++;
        return;
    }
    struct disclosure *d = disc_slot(l, p->patient);
    if (!d->used) {
        if (l->ndisc + 1 > DISCLOSURE_SLOTS / 2 && !l->audit_ticket) {
            disc_flush(l, p->seq - 1);
            d = disc_slot(l, p->patient);
        }
        memcpy(d->patient, p->patient, HDX_BLIND_LEN);
        d->first = p->seq;
        d->used = 1;
        l->ndisc++;
    }
    d->last = p->seq;
    d->count++;
}

/* A summary that became durable moves pos.audited. */
static void lane_audit_check(struct lane *l)
{
    struct ticket *t = l->audit_ticket;
    if (!t) return;
    pthread_mutex_lock(&ticket_mu);
    int done = t->done, status = t->status;
    pthread_mutex_unlock(&ticket_mu);
    if (!done) return;
    if (status == HDX_OK && l->pos.audited < l->audit_pending_to)
        l->pos.audited = l->audit_pending_to;
    else if (status != HDX_OK)
        hdx_error("route_audit_failed", "route=%s lane=%d err=%s", l->rt->conf->name, l->index,
                  hdx_strerror(status));
    ticket_release(t);
    l->audit_ticket = NULL;
}

/* ---------- reading the log ---------- */

static int lane_of(const struct lane *l, const struct hdx_record *r)
{
    if (l->rt->nlanes == 1) return 0;
    if (!hdx_record_has_patient(r)) return 0;
    uint64_t h;
    memcpy(&h, r->patient, sizeof(h)); /* a keyed token: uniform bytes */
    return (int)(h % (uint64_t)l->rt->nlanes);
}

/* When the batch holding seq was reported committed, or 0 when that is older than the ring.
 * Call with rs->mu held. */
static int64_t commit_time(const struct hdx_routes *rs, uint64_t seq)
{
    unsigned n = rs->commit_head < COMMIT_RING ? rs->commit_head : COMMIT_RING;
    int64_t at = 0;
    for (unsigned k = 1; k <= n; k++) { /* newest first: the first batch reported with seq */
        unsigned i = (rs->commit_head - k) % COMMIT_RING;
        if (rs->commit_seq[i] < seq) break;
        at = rs->commit_us[i];
    }
    return at;
}

/* MSH-10 of a message hdxd parsed at ingest, read from its first segment: 0, or -1 when
 * the value holds the escape character or does not fit (then the full parser decides). */
static int fast_control_id(const uint8_t *b, size_t len, char *out, size_t cap)
{
    if (len < 8 || memcmp(b, "MSH", 3) != 0) return -1;
    uint8_t fs = b[3], esc = b[6];
    size_t i = 4, field = 2; /* b[4..] is MSH-2 */
    while (i < len && field < 10) {
        if (b[i] == '\r' || b[i] == '\n') return -1;
        if (b[i++] == fs) field++;
    }
    size_t start = i;
    while (i < len && b[i] != fs && b[i] != '\r' && b[i] != '\n') {
        if (b[i] == esc) return -1;
        i++;
    }
    if (field != 10 || i - start == 0 || i - start >= cap) return -1;
    memcpy(out, b + start, i - start);
    out[i - start] = 0;
    return 0;
}

/* The message a record becomes on this route, or 0 when the route does not take it; -1 when
 * it cannot be read (then p->dead_reason says why: it becomes a dead letter). */
static int record_to_pending(struct lane *l, const struct hdx_record *r, const uint8_t *plain,
                             size_t plain_len, struct pending *p)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    size_t need = plain ? 1 : r->ct_len + 1, len = 0;
    memset(p, 0, sizeof(*p));
    p->seq = r->seq;
    p->time_us = r->time_us;
    if (need > l->ptcap) {
        uint8_t *b = realloc(l->ptbuf, need);
        if (!b) return -2;
        l->ptbuf = b;
        l->ptcap = need;
    }
    /* A match on type, trigger and sender alone is decided from the index, before the
     * record is even decrypted (the record's type is MSH-9.1^MSH-9.2 as parsed at ingest). */
    int index_only = !rc->match || hdx_match_index_only(rc->match);
    if (rc->match && index_only && hdx_match_eval_index(rc->match, r->type, r->sender) != 1)
        return 0;
    /* the feed's plaintext is shared and read-only; the lane's own buffer is wiped after use */
    const uint8_t *pt = plain;
    if (plain) {
        len = plain_len;
    } else if (hdx_record_open_into(r, l->kc, l->ptbuf, l->ptcap, &len) != HDX_OK) {
        sfmt(p->dead_reason, sizeof(p->dead_reason), "the record could not be decrypted");
        return -1;
    } else {
        pt = l->ptbuf;
    }
#define WIPE()                                                                                     \
    do {                                                                                           \
        if (!plain) sodium_memzero(l->ptbuf, len);                                                 \
    } while (0)
    if (rc->kind == HDX_ROUTE_DICOM) {
        /* a Part 10 file, checked at ingest: its meta group names what the association needs */
        struct hdx_dcm_file f;
        struct hdx_ds_error de;
        if (hdx_dcm_file_parse(pt, len, &f, &de) != HDX_OK || !f.sop_class[0] ||
            !f.sop_instance[0] || f.dataset_off > len) {
            WIPE();
            sfmt(p->dead_reason, sizeof(p->dead_reason),
                 "the stored instance has no readable file meta information");
            return -1;
        }
        sfmt(p->control_id, sizeof(p->control_id), "%s", f.sop_instance);
        memcpy(p->sop_class, f.sop_class, sizeof(p->sop_class));
        memcpy(p->ts, f.ts, sizeof(p->ts));
        p->ds_off = f.dataset_off;
    } else if (!index_only || fast_control_id(pt, len, p->control_id, sizeof(p->control_id)) != 0) {
        /* The message was parsed and checked at ingest: when nothing but MSH-10 is needed, it
         * is read without a second full parse (a parse was most of a delivery's CPU). */
        struct hl7_msg m;
        struct hl7_error e;
        if (hl7_parse(pt, len, NULL, &m, &e) != 0) {
            WIPE();
            sfmt(p->dead_reason, sizeof(p->dead_reason), "stored message does not parse: %s",
                 e.text);
            return -1;
        }
        int take = index_only || hdx_match_eval(rc->match, &m, r->sender);
        if (take) sfmt(p->control_id, sizeof(p->control_id), "%s", m.control_id);
        hl7_msg_free(&m);
        if (!take) {
            WIPE();
            return 0;
        }
    }
    p->has_patient = hdx_record_has_patient(r);
    memcpy(p->patient, r->patient, HDX_BLIND_LEN);
    /* Every route is a disclosure to a service (role integration) for the route's purpose:
     * the one policy engine decides, so a patient's directive holds here too. */
    struct hdx_policy_request req = {.principal = rc->name,
                                     .role = HDX_ROLE_INTEGRATION,
                                     .mfa = 1,
                                     .action = HDX_ACT_EXPORT,
                                     .resource = HDX_RES_RECORD,
                                     .patient = p->has_patient ? p->patient : NULL,
                                     .purpose = (enum hdx_purpose)rc->purpose,
                                     .now_us = hdx_now_us()};
    struct hdx_policy_decision d;
    hdx_policy_decide(l->policy, &req, &d);
    if (!d.permit && !(d.reason == HDX_PR_NO_PATIENT && !p->has_patient)) {
        hdx_metric_policy_denial(HDX_METRIC_FRONT_ROUTE);
        WIPE();
        if (!l->held_count) l->held_first = r->seq, l->held_reason = d.reason;
        l->held_last = r->seq;
        l->held_count++;
        return 0;
    }
    if (rc->transform && rc->kind == HDX_ROUTE_HL7V2) {
        char err[300];
        if (hdx_transform_apply(rc->transform, pt, len, &p->msg, &p->len, err, sizeof(err)) !=
            HDX_OK) {
            WIPE();
            sfmt(p->dead_reason, sizeof(p->dead_reason), "%s", err);
            return -1;
        }
    } else {
        if (!(p->msg = malloc(len ? len : 1))) return -2;
        memcpy(p->msg, pt, len);
        p->len = len;
    }
    WIPE();
    return 1;
#undef WIPE
}

struct scan_ctx {
    struct lane *l;
    uint64_t last_visited;
    int full, err;
};

static int scan_cb(void *ctx, const struct hdx_record *r)
{
    struct scan_ctx *sc = ctx;
    struct lane *l = sc->l;
    if (l->npre >= PREFETCH_MAX || l->pre_bytes >= PREFETCH_BYTES) {
        sc->full = 1;
        return 1;
    }
    sc->last_visited = r->seq;
    if (lane_of(l, r) != l->index) return 0;
    struct pending p;
    int rc = record_to_pending(l, r, NULL, 0, &p);
    if (rc == -2) {
        sc->err = HDX_E_NOMEM;
        sc->last_visited = r->seq - 1;
        return 1;
    }
    if (rc == 0) return 0;
    pthread_mutex_lock(&l->rt->rs->mu);
    p.committed_us = commit_time(l->rt->rs, p.seq);
    pthread_mutex_unlock(&l->rt->rs->mu);
    l->from_store++;
    pre_push(l, &p); /* a dead_reason one goes through the window too: in order */
    l->pre_bytes += p.len;
    return 0;
}

/* Reads ahead from scanned + 1 up to the newest committed record. */
/* The lane's policy, loaded again when a policy record committed since; without one nothing
 * is read (default deny): the lane backs off and tries again. */
static int lane_policy(struct lane *l)
{
    struct hdx_routes *rs = l->rt->rs;
    unsigned gen = atomic_load(&rs->policy_gen);
    if (l->policy && gen == l->policy_gen) return HDX_OK;
    struct hdx_policy *p = NULL;
    int rc = hdx_policy_load(l->store, rs->env.training_period_days, hdx_now_us(), &p);
    if (rc != HDX_OK) {
        set_error(l, "cannot load the policy data: %s", hdx_strerror(rc));
        return rc;
    }
    hdx_policy_free(l->policy);
    l->policy = p;
    l->policy_gen = gen;
    return HDX_OK;
}

/* Takes what it can from the live feed: each batch that starts right after what the lane has
 * looked at, whole (a batch taken in part leaves the lane to the store for the rest). */
static int lane_feed(struct lane *l)
{
    struct hdx_routes *rs = l->rt->rs;
    if (l->rt->conf->kind != HDX_ROUTE_HL7V2) return HDX_OK; /* the feed holds HL7 v2 only */
    while (l->npre < PREFETCH_MAX && l->pre_bytes < PREFETCH_BYTES && !stopping(l)) {
        struct feed_batch *b = NULL;
        pthread_mutex_lock(&rs->mu);
        for (size_t i = 0; i < rs->nfeed && !b; i++)
            if (rs->feed[i]->first == l->scanned + 1) b = rs->feed[i];
        if (b) b->refs++;
        pthread_mutex_unlock(&rs->mu);
        if (!b) return HDX_OK;
        int rc = HDX_OK;
        size_t k;
        for (k = 0; k < b->n; k++) {
            if (l->npre >= PREFETCH_MAX || l->pre_bytes >= PREFETCH_BYTES) break;
            const struct feed_item *fi = &b->items[k];
            struct hdx_record r;
            memset(&r, 0, sizeof(r));
            r.seq = fi->seq;
            r.time_us = fi->time_us;
            r.kind = HDX_KIND_HL7V2;
            memcpy(r.sender, fi->sender, sizeof(r.sender));
            memcpy(r.type, fi->type, sizeof(r.type));
            memcpy(r.patient, fi->patient, HDX_BLIND_LEN);
            if (lane_of(l, &r) != l->index) continue;
            struct pending p;
            int pr = record_to_pending(l, &r, b->body + fi->off, fi->len, &p);
            if (pr == -2) {
                rc = HDX_E_NOMEM;
                break;
            }
            if (pr == 0) continue;
            p.committed_us = b->commit_us;
            l->from_feed++;
            pre_push(l, &p);
            l->pre_bytes += p.len;
        }
        /* all of it, or up to the item before the one not taken */
        if (k == b->n && rc == HDX_OK)
            l->scanned = b->last;
        else if (k > 0)
            l->scanned = b->items[k - 1].seq;
        size_t total = b->n;
        pthread_mutex_lock(&rs->mu);
        feed_release(b);
        pthread_mutex_unlock(&rs->mu);
        if (rc != HDX_OK || k < total) return rc;
    }
    return HDX_OK;
}

static int lane_prefetch(struct lane *l)
{
    struct hdx_routes *rs = l->rt->rs;
    int prc = lane_policy(l);
    if (prc != HDX_OK) return prc;
    int frc = lane_feed(l);
    if (frc != HDX_OK) return frc;
    pthread_mutex_lock(&rs->mu);
    uint64_t last = rs->last_seq;
    pthread_mutex_unlock(&rs->mu);
    while (l->scanned < last && l->npre < PREFETCH_MAX && l->pre_bytes < PREFETCH_BYTES &&
           !stopping(l)) {
        struct hdx_store_filter f = {.from_seq = l->scanned + 1,
                                     .kind = l->rt->conf->kind == HDX_ROUTE_DICOM ? HDX_KIND_DICOM
                                                                                  : HDX_KIND_HL7V2};
        struct scan_ctx sc = {.l = l};
        long n = hdx_store_scan(l->store, &f, SCAN_CHUNK, scan_cb, &sc);
        if (n < 0) {
            set_error(l, "reading the store: %s", hdx_strerror((int)n));
            return (int)n;
        }
        if (sc.err) return sc.err;
        if (sc.full) {
            l->scanned = sc.last_visited;
            break;
        }
        if (n < SCAN_CHUNK) {
            /* nothing more of this kind up to now: everything to `last` was looked at */
            l->scanned = sc.last_visited > last ? sc.last_visited : last;
            break;
        }
        l->scanned = sc.last_visited;
    }
    return HDX_OK;
}

/* A dead letter marked for retry, read again by seq: 1 one was queued, 0 none. */
static int lane_take_retry(struct lane *l)
{
    struct route *rt = l->rt;
    struct hdx_routes *rs = rt->rs;
    uint64_t seq = 0;
    pthread_mutex_lock(&rs->mu);
    if (rt->nretry) { /* any lane: a retried message is outside the order anyway */
        seq = rt->retry[0];
        memmove(&rt->retry[0], &rt->retry[1], (rt->nretry - 1) * sizeof(uint64_t));
        rt->nretry--;
    }
    pthread_mutex_unlock(&rs->mu);
    if (!seq) return 0;
    struct hdx_record r = {0};
    if (hdx_store_get(l->store, seq, &r) != HDX_OK) {
        hdx_warn("route_retry_missing", "route=%s seq=%llu", rt->conf->name,
                 (unsigned long long)seq);
        return 0;
    }
    struct pending p;
    int rc = record_to_pending(l, &r, NULL, 0, &p);
    hdx_record_clear(&r);
    if (rc == 0) { /* the route's match changed since: it no longer takes it */
        hdx_info("route_retry_not_matched", "route=%s seq=%llu", rt->conf->name,
                 (unsigned long long)seq);
        (void)submit_statement(l, HDX_ADMIN_ROUTE_SKIP, seq, NULL, 0);
        return 0;
    }
    if (rc == -2) return 0;
    p.retry = 1;
    win_push(l, &p);
    l->retried_total++;
    return 1;
}

/* ---------- connections ---------- */

static int wait_fd(int fd, short events, int64_t deadline_us, struct lane *l)
{
    for (;;) {
        if (halted(l)) return HDX_E_TIMEOUT;
        int64_t left = deadline_us - hdx_monotonic_us();
        if (left <= 0) return HDX_E_TIMEOUT;
        int ms = left > WAIT_SLICE_MS * 1000 ? WAIT_SLICE_MS : (int)(left / 1000) + 1;
        struct pollfd pf = {fd, events, 0};
        int n = poll(&pf, 1, ms);
        if (n > 0) return HDX_OK;
        if (n < 0 && errno != EINTR) return HDX_E_IO;
    }
}

static void lane_disconnect(struct lane *l)
{
    hdx_scu_free(l->scu);
    l->scu = NULL;
    if (l->ssl) {
        SSL_shutdown(l->ssl); /* non-blocking: one close_notify, no waiting */
        SSL_free(l->ssl);
        l->ssl = NULL;
    }
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    l->rlen = l->resume = 0;
    l->keepalive = 0;
}

static const char *tls_reason(SSL *ssl, char *buf, size_t cap)
{
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        sfmt(buf, cap, "server certificate: %s", X509_verify_cert_error_string(v));
        return buf;
    }
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    sfmt(buf, cap, "TLS handshake: %s", r ? r : "connection closed");
    return buf;
}

static int lane_connect(struct lane *l)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    sfmt(port, sizeof(port), "%d", rc->port);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(rc->host, port, &hints, &res) != 0 || !res) {
        set_error(l, "cannot resolve %s", rc->host);
        return HDX_E_IO;
    }
    const struct addrinfo *to = res;
    int plain = rc->dest == HDX_DEST_MLLP || rc->dest == HDX_DEST_DICOM;
    if (plain) {
        /* a name passed the load only as a name; what it resolves to now must be allowed too */
        char refused[INET6_ADDRSTRLEN + 1];
        to = hdx_route_plaintext_pick(rc->plaintext_allow, rc->host, res, refused, sizeof(refused));
        if (!to) {
            set_error(l, "plaintext to %s: it resolves to %s, not in [routes] plaintext_allow",
                      rc->host, refused[0] ? refused : "no usable address");
            freeaddrinfo(res);
            return HDX_E_IO;
        }
    }
    int fd = socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        set_error(l, "socket: %s", strerror(errno));
        return HDX_E_IO;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int64_t deadline = hdx_monotonic_us() + (int64_t)rc->connect_timeout_ms * 1000;
    int r = connect(fd, to->ai_addr, to->ai_addrlen);
    freeaddrinfo(res);
    if (r != 0 && errno != EINPROGRESS) {
        set_error(l, "connect to %s:%d: %s", rc->host, rc->port, strerror(errno));
        close(fd);
        return HDX_E_IO;
    }
    if (r != 0) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (wait_fd(fd, POLLOUT, deadline, l) != HDX_OK) {
            set_error(l, "connect to %s:%d: timed out", rc->host, rc->port);
            close(fd);
            return HDX_E_TIMEOUT;
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            set_error(l, "connect to %s:%d: %s", rc->host, rc->port, strerror(soerr));
            close(fd);
            return HDX_E_IO;
        }
    }
    l->fd = fd;
    if (plain) {
        if (!l->insecure_logged++) /* once per lane: a failing destination reconnects often */
            hdx_warn("route_insecure", "route=%s lane=%d to=%s reason=plaintext_allow_listed",
                     rc->name, l->index, l->rt->dest_desc);
        return HDX_OK;
    }
    l->ssl = SSL_new(l->rt->ctx);
    if (!l->ssl) {
        lane_disconnect(l);
        set_error(l, "out of memory");
        return HDX_E_NOMEM;
    }
    X509_VERIFY_PARAM *vp = SSL_get0_param(l->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, rc->server_name) != 1) {
        char sni[sizeof(rc->server_name)]; /* the macro takes a non-const pointer */
        memcpy(sni, rc->server_name, sizeof(sni));
        SSL_set1_host(l->ssl, sni);
        SSL_set_tlsext_host_name(l->ssl, sni);
    }
    SSL_set_fd(l->ssl, fd);
    ERR_clear_error();
    for (;;) {
        int hr = SSL_connect(l->ssl);
        if (hr == 1) break;
        int e = SSL_get_error(l->ssl, hr);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev || wait_fd(fd, ev, deadline, l) != HDX_OK) {
            char why[160];
            set_error(l, "%s",
                      ev ? "TLS handshake timed out" : tls_reason(l->ssl, why, sizeof(why)));
            lane_disconnect(l);
            return HDX_E_TLS;
        }
    }
    return HDX_OK;
}

/* Writes everything or fails (HDX_E_IO / HDX_E_TIMEOUT). */
static int lane_write(struct lane *l, const uint8_t *p, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t n;
        short ev = POLLOUT;
        if (l->ssl) {
            ERR_clear_error();
            int w = SSL_write(l->ssl, p, (int)(len > (1u << 30) ? (1u << 30) : len));
            if (w > 0) {
                n = w;
            } else {
                int e = SSL_get_error(l->ssl, w);
                if (e == SSL_ERROR_WANT_READ)
                    ev = POLLIN;
                else if (e != SSL_ERROR_WANT_WRITE)
                    return HDX_E_IO;
                n = 0;
            }
        } else {
            n = send(l->fd, p, len, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) return HDX_E_IO;
            if (n < 0) n = 0;
        }
        p += n;
        len -= (size_t)n;
        if (len && n == 0 && wait_fd(l->fd, ev, deadline, l) != HDX_OK) return HDX_E_TIMEOUT;
    }
    return HDX_OK;
}

/* Reads what is there into buf (after waiting up to the deadline for something): >0 bytes,
 * 0 the peer closed, HDX_E_TIMEOUT, HDX_E_IO. */
static int lane_recv(struct lane *l, uint8_t *buf, size_t cap, int64_t deadline)
{
    if (cap > (1u << 30)) cap = 1u << 30;
    for (;;) {
        short ev = POLLIN;
        if (l->ssl) {
            ERR_clear_error();
            int n = SSL_read(l->ssl, buf, (int)cap);
            if (n > 0) return n;
            int e = SSL_get_error(l->ssl, n);
            if (e == SSL_ERROR_ZERO_RETURN) return 0;
            if (e == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (e != SSL_ERROR_WANT_READ)
                return e == SSL_ERROR_SYSCALL && !ERR_peek_error() ? 0 : HDX_E_IO;
        } else {
            ssize_t n = recv(l->fd, buf, cap, 0);
            if (n > 0) return (int)n;
            if (n == 0) return 0;
            if (errno != EAGAIN && errno != EINTR) return HDX_E_IO;
        }
        int w = wait_fd(l->fd, ev, deadline, l);
        if (w != HDX_OK) return w;
    }
}

/* Reads what is there (after waiting up to the deadline for something): >0 bytes added to
 * rbuf, 0 the peer closed, HDX_E_TIMEOUT, HDX_E_IO, HDX_E_TOOBIG (answer over max_ack). */
static int lane_read(struct lane *l, int64_t deadline)
{
    size_t max = l->rt->rs->env.max_ack + 16;
    if (l->rlen >= max) return HDX_E_TOOBIG;
    if (l->rcap - l->rlen < 4096) {
        size_t cap = l->rcap ? l->rcap * 2 : 16384;
        if (cap > max) cap = max;
        if (cap <= l->rlen) return HDX_E_TOOBIG;
        uint8_t *b = realloc(l->rbuf, cap);
        if (!b) return HDX_E_NOMEM;
        l->rbuf = b;
        l->rcap = cap;
    }
    int n = lane_recv(l, l->rbuf + l->rlen, l->rcap - l->rlen, deadline);
    if (n > 0) l->rlen += (size_t)n;
    return n;
}

/* ---------- delivery: MLLP ---------- */

static struct pending *find_inflight(struct lane *l, const char *control_id)
{
    for (size_t i = 0; i < l->nwin; i++) /* the oldest unanswered one with that id */
        if (l->win[i].sent && !l->win[i].acked && !l->win[i].dead_reason[0] &&
            strcmp(l->win[i].control_id, control_id) == 0)
            return &l->win[i];
    return NULL;
}

/* A message answered AE (or not at all): tried again later, or a dead letter at the limit. */
static void attempt_failed(struct lane *l, struct pending *p, const char *why)
{
    p->sent = 0;
    p->attempts++;
    if (p->attempts >= l->rt->conf->max_attempts)
        sfmt(p->dead_reason, sizeof(p->dead_reason), "%s (%d attempts)", why, p->attempts);
    else
        hdx_metric_route(HDX_METRIC_ROUTE_RETRIED);
}

/* One answer frame: 0 handled, -1 the connection cannot be trusted any more. */
static int mllp_answer(struct lane *l, const uint8_t *frame, size_t len)
{
    char codes[8] = "", idtext[200] = "";
    /* most answers are plain MSH and MSA: read without the parser (it was a sixth of a
     * lane's time); anything else goes through it */
    int ok = hl7_peek_ack(frame, len, codes, sizeof(codes), idtext, sizeof(idtext)) == 0 &&
             strlen(codes) >= 2;
    if (!ok) {
        struct hl7_msg m;
        struct hl7_error e;
        struct hl7_view code, id;
        if (hl7_parse(frame, len, NULL, &m, &e) != 0) {
            set_error(l, "the answer is not an HL7 message: %s", e.text);
            return -1;
        }
        ok = hl7_get(&m, "MSA", 1, 1, 1, 0, 0, &code) == 0 && code.len >= 2 && code.len < 8 &&
             hl7_get(&m, "MSA", 1, 2, 1, 0, 0, &id) == 0 &&
             hl7_unescape(&m, code, codes, sizeof(codes)) >= 0 &&
             hl7_unescape(&m, id, idtext, sizeof(idtext)) >= 0;
        hl7_msg_free(&m);
    }
    if (!ok) {
        set_error(l, "the answer has no MSA-1 and MSA-2");
        return -1;
    }
    struct pending *p = find_inflight(l, idtext);
    if (!p) { /* a late ACK for one already retried or given up, or for nothing we sent */
        l->late_acks++;
        hdx_warn("route_ack_unmatched", "route=%s lane=%d code=%s reason=no_message_in_flight",
                 l->rt->conf->name, l->index, codes);
        return 0;
    }
    if (!strcmp(codes, "AA") || !strcmp(codes, "CA")) {
        p->acked = 1;
    } else if (!strcmp(codes, "AR") || !strcmp(codes, "CR")) {
        sfmt(p->dead_reason, sizeof(p->dead_reason), "rejected by the destination (%s)", codes);
    } else if (!strcmp(codes, "AE") || !strcmp(codes, "CE")) {
        set_error(l, "message seq=%llu answered %s", (unsigned long long)p->seq, codes);
        attempt_failed(l, p, "answered AE");
        l->next_try_us = 0; /* its backoff is the lane's: see deliver_mllp */
        return 1;
    } else {
        set_error(l, "the answer's MSA-1 is not an acknowledgment code");
        return -1;
    }
    return 0;
}

static int deliver_mllp(struct lane *l)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    int64_t now = hdx_monotonic_us();
    /* Send what is not in flight yet, every frame in one buffer and one write (a write, and
     * a TLS record, per frame would cost a syscall each); one frame per write is also what
     * receivers that parse each read alone need (node-hl7-server 2.3.0), and with
     * max_inflight 1 there is only one. */
    size_t total = 0;
    for (size_t i = 0; i < l->nwin && !draining(l); i++) {
        struct pending *p = &l->win[i];
        if (!p->sent && !p->acked && !p->dead_reason[0]) total += p->len + 3;
    }
    if (total) {
        int64_t dl = now + (int64_t)rc->ack_timeout_ms * 1000;
        uint8_t *buf = malloc(total);
        if (!buf) return -1;
        size_t off = 0;
        for (size_t i = 0; i < l->nwin; i++) {
            struct pending *p = &l->win[i];
            if (p->sent || p->acked || p->dead_reason[0]) continue;
            off += mllp_wrap(p->msg, p->len, buf + off, total - off);
        }
        int wr = lane_write(l, buf, off, dl);
        sodium_memzero(buf, total);
        free(buf);
        for (size_t i = 0; i < l->nwin; i++) {
            struct pending *p = &l->win[i];
            if (p->sent || p->acked || p->dead_reason[0]) continue;
            if (wr) {
                attempt_failed(l, p, "sending failed");
                continue;
            }
            p->sent = 1;
            p->sent_us = now;
            l->sent_total++;
        }
        if (wr) {
            set_error(l, "sending to %s failed", l->rt->dest_desc);
            return -1;
        }
    }
    /* read answers until one for the oldest in flight is there, or its deadline passes */
    int ae = 0;
    for (;;) {
        struct pending *oldest = NULL;
        for (size_t i = 0; i < l->nwin && !oldest; i++)
            if (l->win[i].sent && !l->win[i].acked && !l->win[i].dead_reason[0])
                oldest = &l->win[i];
        if (!oldest) return ae ? 1 : 0;
        /* The head of the window answered and nothing more buffered: back to the loop, which
         * moves the cursor and sends the next ones while the rest are still in flight. */
        const struct pending *head = &l->win[0];
        if (!ae && (head->acked || head->dead_reason[0]) && l->rlen == 0) return 0;
        /* answers already buffered first */
        struct mllp_scan s;
        enum mllp_status st = mllp_scan(l->rbuf, l->rlen, l->rt->rs->env.max_ack, &l->resume, &s);
        if (st == MLLP_FRAME || (st == MLLP_NEED_MORE && s.garbage)) {
            if (s.garbage) {
                set_error(l, "the destination sent bytes outside MLLP frames");
                goto broken;
            }
            int r = mllp_answer(l, l->rbuf + s.payload_off, s.payload_len);
            memmove(l->rbuf, l->rbuf + s.consumed, l->rlen - s.consumed);
            l->rlen -= s.consumed;
            l->resume = 0;
            if (r < 0) goto broken;
            if (r > 0) ae = 1;
            /* after an AE the rest of the window is still answered, but nothing more is
             * sent until its backoff: the receiver asked us to slow down */
            continue;
        }
        if (st == MLLP_TOO_BIG) {
            set_error(l, "the answer is longer than mllp.max_message");
            goto broken;
        }
        int n = lane_read(l, oldest->sent_us + (int64_t)rc->ack_timeout_ms * 1000);
        if (n > 0) continue;
        if (n == HDX_E_TIMEOUT && halted(l)) return -2;
        set_error(l, "%s",
                  n == HDX_E_TIMEOUT ? "no answer within ack_timeout_ms"
                  : n == 0           ? "the destination closed the connection"
                                     : "reading the answer failed");
    broken:
        for (size_t i = 0; i < l->nwin; i++)
            if (l->win[i].sent && !l->win[i].acked && !l->win[i].dead_reason[0])
                attempt_failed(l, &l->win[i], "no valid answer");
        return -1;
    }
}

/* ---------- delivery: HTTPS ---------- */

static int deliver_https(struct lane *l)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    struct pending *p = &l->win[0];
    char head[2048], ctype[160], part[128] = "", tail[64] = "";
    int64_t now = hdx_monotonic_us(), dl = now + (int64_t)rc->ack_timeout_ms * 1000;
    size_t body_len = p->len;
    if (rc->kind == HDX_ROUTE_DICOM) {
        /* STOW-RS (PS3.18 10.5): the Part 10 file as the one part of a multipart/related body;
         * a random boundary cannot occur in it by chance (2^-128) */
        uint8_t rnd[16];
        char boundary[40];
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(boundary, sizeof(boundary), rnd, sizeof(rnd));
        sfmt(ctype, sizeof(ctype), "multipart/related; type=\"application/dicom\"; boundary=%s",
             boundary);
        sfmt(part, sizeof(part), "--%s\r\nContent-Type: application/dicom\r\n\r\n", boundary);
        sfmt(tail, sizeof(tail), "\r\n--%s--\r\n", boundary);
        body_len += strlen(part) + strlen(tail);
    } else {
        sfmt(ctype, sizeof(ctype), "%s", rc->content_type);
    }
    int hn = sfmt(head, sizeof(head),
                  "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n%s"
                  "Content-Length: %zu\r\nX-HDX-Route: %s\r\nX-HDX-Seq: %llu\r\n"
                  "Connection: keep-alive\r\n\r\n",
                  rc->path, rc->server_name, rc->port, ctype,
                  rc->kind == HDX_ROUTE_DICOM ? "Accept: application/dicom+json\r\n" : "", body_len,
                  rc->name, (unsigned long long)p->seq);
    if (hn < 0 || (size_t)hn >= sizeof(head) || lane_write(l, (uint8_t *)head, (size_t)hn, dl) ||
        (part[0] && lane_write(l, (const uint8_t *)part, strlen(part), dl)) ||
        lane_write(l, p->msg, p->len, dl) ||
        (tail[0] && lane_write(l, (const uint8_t *)tail, strlen(tail), dl))) {
        set_error(l, "sending to %s failed", l->rt->dest_desc);
        attempt_failed(l, p, "sending failed");
        return -1;
    }
    p->sent = 1;
    p->sent_us = now;
    l->sent_total++;
    struct http_answer a;
    http_answer_init(&a);
    size_t parsed = 0;
    l->rlen = 0;
    for (;;) {
        const char *why = NULL;
        enum http_result hr = HTTP_NEED_MORE;
        if (parsed < l->rlen) {
            hr = http_answer_feed(&a, l->rbuf + parsed, l->rlen - parsed, &why);
            parsed = l->rlen;
        }
        if (hr == HTTP_OK) break;
        int n = hr == HTTP_ERROR ? 1 : lane_read(l, dl);
        if (hr == HTTP_NEED_MORE && n == 0) hr = http_answer_feed(&a, NULL, 0, &why);
        if (hr == HTTP_OK) break;
        if (hr == HTTP_ERROR || n < 0) {
            set_error(l, "%s",
                      hr == HTTP_ERROR     ? why
                      : n == HDX_E_TIMEOUT ? "no answer within ack_timeout_ms"
                      : n == HDX_E_TOOBIG  ? "the answer is too long"
                                           : "reading the answer failed");
            attempt_failed(l, p, "no valid answer");
            return -1;
        }
    }
    l->rlen = 0;
    l->keepalive = a.keepalive;
    if (a.status >= 200 && a.status < 300) {
        p->acked = 1;
        return 0;
    }
    set_error(l, "the destination answered HTTP %u", a.status);
    if (a.status >= 400 && a.status < 500 && a.status != 408 && a.status != 429) {
        sfmt(p->dead_reason, sizeof(p->dead_reason), "refused by the destination (HTTP %u)",
             a.status);
        return 0;
    }
    attempt_failed(l, p, "answered HTTP 5xx, 408 or 429");
    return 1;
}

/* ---------- delivery: DICOM C-STORE ---------- */

static int scu_send(void *ctx, const uint8_t *p, size_t n, int64_t deadline)
{
    return lane_write(ctx, p, n, deadline);
}

static int scu_recv(void *ctx, uint8_t *p, size_t cap, int64_t deadline)
{
    return lane_recv(ctx, p, cap, deadline);
}

/* The association, released in order (idle, reload, stop) before the connection closes. */
static void lane_release(struct lane *l)
{
    if (!l->scu) return;
    (void)hdx_scu_release(l->scu, hdx_monotonic_us() + 2000000);
    lane_disconnect(l);
}

/* One instance per call, over an association that proposes a context for every (SOP class,
 * transfer syntax) waiting; an instance of a pair not proposed yet releases it, and the next
 * call associates again with the pairs then waiting. */
static int deliver_dicom(struct lane *l)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    struct pending *p = &l->win[0];
    int64_t now = hdx_monotonic_us(), dl = now + (int64_t)rc->ack_timeout_ms * 1000;
    char why[256];
    if (!l->scu) {
        struct hdx_scu_pair pairs[HDX_UL_PCTX_MAX];
        size_t n = 0;
        pairs[n++] = (struct hdx_scu_pair){p->sop_class, p->ts};
        for (size_t i = 0; i < l->npre && n < HDX_UL_PCTX_MAX; i++)
            if (!l->pre[i].dead_reason[0])
                pairs[n++] = (struct hdx_scu_pair){l->pre[i].sop_class, l->pre[i].ts};
        struct hdx_scu_io io = {.ctx = l, .send = scu_send, .recv = scu_recv};
        int64_t adl = now + (int64_t)rc->connect_timeout_ms * 1000;
        enum hdx_scu_result r = hdx_scu_associate(&io, rc->calling_ae, rc->called_ae, pairs, n, adl,
                                                  &l->scu, why, sizeof(why));
        if (r != HDX_SCU_OK) { /* the destination's failure: no instance is blamed */
            set_error(l, "%s", r == HDX_SCU_NOMEM ? "out of memory" : why);
            return -1;
        }
    }
    int id = hdx_scu_context(l->scu, p->sop_class, p->ts);
    if (id < 0) { /* a pair this association did not propose */
        lane_release(l);
        return 0;
    }
    if (id == 0) {
        sfmt(p->dead_reason, sizeof(p->dead_reason),
             "the destination accepts no presentation context for SOP class %s in transfer "
             "syntax %s (%s)",
             p->sop_class, p->ts, hdx_ts_name(p->ts));
        return 0;
    }
    uint16_t status = 0;
    p->sent = 1;
    p->sent_us = now;
    l->sent_total++;
    enum hdx_scu_result r =
        hdx_scu_store(l->scu, id, p->sop_class, p->control_id, p->msg + p->ds_off,
                      p->len - p->ds_off, dl, &status, why, sizeof(why));
    if (r != HDX_SCU_OK) {
        set_error(l, "%s", r == HDX_SCU_NOMEM ? "out of memory" : why);
        attempt_failed(l, p, "no valid answer");
        return -1;
    }
    switch (hdx_scu_judge(status)) {
    case HDX_SCU_DELIVERED:
        if (status != 0)
            hdx_info("route_dicom_warning", "route=%s lane=%d seq=%llu status=%04X", rc->name,
                     l->index, (unsigned long long)p->seq, status);
        p->acked = 1;
        return 0;
    case HDX_SCU_RETRY:
        set_error(l, "instance seq=%llu answered status %04X", (unsigned long long)p->seq, status);
        attempt_failed(l, p, "answered a C-STORE status to retry");
        return 1;
    case HDX_SCU_REFUSED:
        break;
    }
    sfmt(p->dead_reason, sizeof(p->dead_reason), "refused by the destination (status %04X%s%s)",
         status, why[0] ? ": " : "", why);
    return 0;
}

/* ---------- delivery: spool directory ---------- */

static int deliver_spool(struct lane *l)
{
    struct pending *p = &l->win[0];
    const char *dir = l->rt->conf->path;
    char tmp[HDX_PATH_MAX], final[HDX_PATH_MAX];
    /* The name is the seq: commit order sorts by name, and a resend after a crash replaces
     * the same file instead of adding a second one. */
    sfmt(tmp, sizeof(tmp), "%s/.hdx-%020llu.tmp", dir, (unsigned long long)p->seq);
    sfmt(final, sizeof(final), "%s/%020llu.%s", dir, (unsigned long long)p->seq,
         l->rt->conf->kind == HDX_ROUTE_DICOM ? "dcm" : "hl7");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int ok = fd >= 0;
    for (size_t off = 0; ok && off < p->len;) {
        ssize_t n = write(fd, p->msg + off, p->len - off);
        if (n <= 0)
            ok = 0;
        else
            off += (size_t)n;
    }
    if (ok) ok = fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0) ok = 0;
    if (ok) ok = rename(tmp, final) == 0 && hdx_fsync_dir(dir) == 0;
    if (!ok) {
        set_error(l, "writing to the spool directory: %s", strerror(errno));
        unlink(tmp);
        return -1; /* the directory is the destination: it is down, the message not to blame */
    }
    p->sent = p->acked = 1;
    l->sent_total++;
    return 0;
}

/* ---------- the lane ---------- */

static int64_t backoff_us(const struct lane *l)
{
    const struct hdx_route_conf *rc = l->rt->conf;
    int64_t d = (int64_t)rc->backoff_ms * 1000;
    for (int i = 1; i < l->failures && d < (int64_t)rc->backoff_max_ms * 1000; i++)
        d *= 2;
    if (d > (int64_t)rc->backoff_max_ms * 1000) d = (int64_t)rc->backoff_max_ms * 1000;
    /* full jitter over the upper half: receivers coming back are not hit in step */
    return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 > 0 ? d / 2 : 1));
}

static void lane_failed(struct lane *l)
{
    l->failures++;
    l->next_try_us = hdx_monotonic_us() + backoff_us(l);
    if (!l->failing && l->failures >= FAILING_AFTER) {
        l->failing = 1;
        hdx_warn("route_failing", "route=%s lane=%d to=%s error=\"%s\"", l->rt->conf->name,
                 l->index, l->rt->dest_desc, l->last_error);
    }
    sfmt(l->state, sizeof(l->state), "backoff");
}

static void lane_ok(struct lane *l)
{
    if (l->failing)
        hdx_info("route_recovered", "route=%s lane=%d to=%s after_failures=%d", l->rt->conf->name,
                 l->index, l->rt->dest_desc, l->failures);
    l->failing = 0;
    l->failures = 0;
    l->next_try_us = 0;
    l->last_ok_us = hdx_now_us();
}

static void cursor_path(const struct route *rt, int lane, char *out, size_t cap)
{
    sfmt(out, cap, "%s/lane-%d.cursor", rt->dir, lane);
}

/* The q-quantile of the latency histogram in ms (the bucket's upper edge), -1 when empty. */
static double lat_quantile(const struct lane *l, double q)
{
    if (!l->lat_n) return -1;
    uint64_t want = (uint64_t)((double)l->lat_n * q), seen = 0;
    for (size_t b = 0; b < LAT_BUCKETS; b++)
        if ((seen += l->lat[b]) > want) return (double)(b + 1) / 10.0;
    return (double)LAT_BUCKETS / 10.0;
}

static void write_status(struct lane *l, int force)
{
    int64_t now = hdx_monotonic_us();
    /* when the lane goes idle: at once if its state changed, with new counts at most every
     * 50 ms, so that hdx route status answers what just happened */
    int moved = strcmp(l->status_state, l->state) != 0;
    int counted = l->status_acked != l->acked_total + l->dead_total;
    if (force == 2 && (moved || (counted && now - l->status_us >= 50000))) force = 1;
    if (force != 1 && now - l->status_us < STATUS_PERIOD_US) return;
    l->status_acked = l->acked_total + l->dead_total;
    sfmt(l->status_state, sizeof(l->status_state), "%s", l->state);
    l->status_us = now;
    char path[HDX_PATH_MAX], tmp[HDX_PATH_MAX + 8], buf[3072];
    sfmt(path, sizeof(path), "%s/lane-%d.%s", l->rt->dir, l->index, HDX_ROUTE_STATUS_FILE);
    sfmt(tmp, sizeof(tmp), "%s.tmp", path);
    int64_t oldest = l->nwin ? l->win[0].time_us : l->npre ? l->pre[0].time_us : 0;
    size_t inflight = 0;
    for (size_t i = 0; i < l->nwin; i++)
        inflight += l->win[i].sent && !l->win[i].acked;
    int n =
        sfmt(buf, sizeof(buf),
             "route=%s\nlane=%d\nlanes=%d\nto=%s\nstate=%s\nconnected=%d\n"
             "delivered=%llu\naudited=%llu\nscanned=%llu\ninflight=%zu\nqueued=%zu\n"
             "oldest_pending_us=%lld\nsent=%llu\nacked=%llu\ndead=%llu\nretried=%llu\n"
             "late_acks=%llu\nfailures=%d\nlast_error=%s\nlast_error_us=%lld\n"
             "last_ok_us=%lld\nwritten_us=%lld\npid=%d\nlatency_n=%llu\n"
             "latency_p50_ms=%.1f\nlatency_p99_ms=%.1f\nlatency_p999_ms=%.1f\nfrom_feed=%llu\n"
             "from_store=%llu\n",
             l->rt->conf->name, l->index, l->rt->nlanes, l->rt->dest_desc, l->state, l->fd >= 0,
             (unsigned long long)l->pos.delivered, (unsigned long long)l->pos.audited,
             (unsigned long long)l->scanned, inflight, l->nwin + l->npre, (long long)oldest,
             (unsigned long long)l->sent_total, (unsigned long long)l->acked_total,
             (unsigned long long)l->dead_total, (unsigned long long)l->retried_total,
             (unsigned long long)l->late_acks, l->failures, l->last_error[0] ? l->last_error : "-",
             (long long)l->last_error_us, (long long)l->last_ok_us, (long long)hdx_now_us(),
             (int)getpid(), (unsigned long long)l->lat_n, lat_quantile(l, 0.5),
             lat_quantile(l, 0.99), lat_quantile(l, 0.999), (unsigned long long)l->from_feed,
             (unsigned long long)l->from_store);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    int ok = n > 0 && write(fd, buf, (size_t)n) == n;
    close(fd);
    if (ok) (void)rename(tmp, path);
}

/* The messages this lane holds, into the gauge of all lanes (by difference: no lock). */
static void lane_meter(struct lane *l, int64_t now)
{
    if (now != l->metered) hdx_metric_route_queued(now - l->metered);
    l->metered = now;
}

/* Pops what is finished at the head of the window and moves the cursor over it. */
static int lane_advance(struct lane *l)
{
    size_t done = 0;
    int rc = HDX_OK;
    while (done < l->nwin) {
        struct pending *p = &l->win[done];
        if (p->dead_reason[0]) {
            /* the dead letter is a record of the log before the cursor passes it */
            int s = submit_statement(l, HDX_ADMIN_ROUTE_DEAD, p->seq, p->dead_reason, 1);
            if (s != HDX_OK) {
                rc = s;
                break;
            }
            hdx_warn("route_dead_letter", "route=%s lane=%d seq=%llu reason=\"%s\"",
                     l->rt->conf->name, l->index, (unsigned long long)p->seq, p->dead_reason);
            l->dead_total++;
            hdx_metric_route(HDX_METRIC_ROUTE_DEAD);
        } else if (p->acked) {
            l->acked_total++;
            hdx_metric_route(HDX_METRIC_ROUTE_DELIVERED);
            if (!p->retry && p->attempts == 0 && p->committed_us) {
                int64_t us = hdx_monotonic_us() - p->committed_us;
                size_t b = us <= 0 ? 0 : (size_t)(us / 100);
                l->lat[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
                l->lat_n++;
                hdx_metric_route_latency(us);
            }
            disc_add(l, p);
            if (p->retry) (void)submit_statement(l, HDX_ADMIN_ROUTE_DELIVERED, p->seq, NULL, 0);
        } else {
            break;
        }
        if (!p->retry && p->seq > l->pos.delivered) l->pos.delivered = p->seq;
        pending_free(p);
        done++;
    }
    if (done) {
        l->win += done;
        l->nwin -= done;
        if (!l->nwin) l->win = l->win_buf;
    }
    /* records the route skipped (not matched, not this lane) before the next message */
    uint64_t upto = l->nwin ? l->win[0].seq - 1 : l->npre ? l->pre[0].seq - 1 : l->scanned;
    for (size_t i = 0; i < l->nwin; i++)
        if (l->win[i].retry) upto = l->pos.delivered; /* a retry is not in the order */
    if (upto > l->pos.delivered) l->pos.delivered = upto;
    if (!l->ndisc && !l->anon_count && !l->held_count && !l->audit_ticket &&
        l->pos.audited < l->pos.delivered)
        l->pos.audited = l->pos.delivered; /* nothing disclosed since: nothing to write */
    if (done || upto) {
        if (hdx_cursor_set(l->cursor, &l->pos, 0) != HDX_OK) {
            set_error(l, "cannot write the cursor file");
            return HDX_E_IO;
        }
    }
    return rc;
}

/* Disclosures between the audited and the delivered position, from the log: a crash or a
 * power cut can lose the summaries not yet written, never the deliveries. */
static int lane_recover_audit(struct lane *l)
{
    if (l->pos.audited >= l->pos.delivered) return HDX_OK;
    uint64_t from = l->pos.audited, to = l->pos.delivered, n = 0;
    uint64_t saved_scanned = l->scanned;
    l->scanned = from;
    while (l->scanned < to && !halted(l)) {
        int rc = lane_prefetch(l);
        if (rc != HDX_OK) return rc;
        for (size_t i = 0; i < l->npre; i++) {
            if (l->pre[i].seq <= to && !l->pre[i].dead_reason[0]) {
                disc_add(l, &l->pre[i]);
                n++;
            }
            pending_free(&l->pre[i]);
        }
        l->npre = l->pre_bytes = 0;
        l->pre = l->pre_buf;
        if (l->scanned >= to) break;
    }
    l->scanned = saved_scanned;
    hdx_info("route_audit_recovered", "route=%s lane=%d from=%llu to=%llu messages=%llu",
             l->rt->conf->name, l->index, (unsigned long long)from + 1, (unsigned long long)to,
             (unsigned long long)n);
    disc_flush(l, to);
    return HDX_OK;
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    struct route *rt = l->rt;
    const struct hdx_route_conf *rc = rt->conf;
    char name[16];
    sfmt(name, sizeof(name), "hdx-r%.6s-%d", rc->name, l->index);
    pthread_setname_np(pthread_self(), name);
    /* Delivery yields to ingest: on a machine whose cores are all busy, the threads that
     * acknowledge senders (network, commit) run first, and a lane takes what is left. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), LANE_NICE);
    sfmt(l->state, sizeof(l->state), "starting");
    char path[HDX_PATH_MAX];
    cursor_path(rt, l->index, path, sizeof(path));
    /* a new route starts after what is committed now (at start, or when a reload adds it) */
    pthread_mutex_lock(&rt->rs->mu);
    uint64_t now_seq = rt->rs->last_seq;
    pthread_mutex_unlock(&rt->rs->mu);
    struct hdx_cursor_pos start = {.delivered = now_seq,
                                   .audited = now_seq,
                                   .lanes = (uint32_t)rt->nlanes,
                                   .lane = (uint32_t)l->index};
    int rcode;
    if ((rcode = hdx_store_open(rt->rs->store_path, HDX_STORE_RDONLY, &l->store)) != HDX_OK ||
        (rcode = hdx_keyctx_new(rt->rs->env.kr, &l->kc)) != HDX_OK ||
        (rcode = hdx_cursor_open(path, &start, &l->cursor)) != HDX_OK) {
        hdx_error("route_stopped", "route=%s lane=%d reason=\"cannot open %s\" err=%s", rc->name,
                  l->index, l->store ? (l->kc ? "its cursor file" : "a key context") : "the store",
                  hdx_strerror(rcode));
        sfmt(l->state, sizeof(l->state), "stopped");
        write_status(l, 1);
        atomic_store(&l->finished, 1);
        return NULL;
    }
    hdx_cursor_get(l->cursor, &l->pos);
    if (l->pos.lanes != (uint32_t)rt->nlanes) { /* route_start made them one partition */
        hdx_error("route_stopped",
                  "route=%s lane=%d reason=\"its cursor was written for %u lanes, not %d\"",
                  rc->name, l->index, l->pos.lanes, rt->nlanes);
        goto out;
    }
    l->scanned = l->pos.delivered;
    l->disc_since_us = hdx_monotonic_us();
    hdx_info("route_started", "route=%s lane=%d to=%s resume_after=%llu", rc->name, l->index,
             rt->dest_desc, (unsigned long long)l->pos.delivered);
    if (lane_recover_audit(l) != HDX_OK) goto out;
    while (!halted(l)) {
        lane_meter(l, (int64_t)(l->nwin + l->npre));
        if (draining(l) && !in_flight(l)) break; /* everything sent is answered */
        lane_audit_check(l);
        int64_t now = hdx_monotonic_us();
        if (now - l->disc_since_us >= DISCLOSURE_PERIOD_US) disc_flush(l, l->pos.delivered);
        write_status(l, 0);
        /* fill the window (not while draining: only what is in flight is finished) */
        if (!l->nwin && !draining(l)) (void)lane_take_retry(l);
        if (!draining(l) && l->npre < PREFETCH_MAX / 2 && (rcode = lane_prefetch(l)) != HDX_OK) {
            lane_failed(l);
            lane_sleep(l, l->next_try_us);
            continue;
        }
        int has_retry = l->nwin && l->win[0].retry;
        while (!has_retry && !draining(l) && l->nwin < (size_t)rc->max_inflight && l->npre) {
            win_push(l, &l->pre[0]);
            l->pre_bytes -= l->pre[0].len;
            l->pre++;
            if (!--l->npre) l->pre = l->pre_buf;
        }
        if (lane_advance(l) != HDX_OK) { /* dead letters at the head; the cursor */
            if (stopping(l)) break;
            lane_failed(l);
            lane_sleep(l, l->next_try_us);
            continue;
        }
        if (!l->nwin) {
            sfmt(l->state, sizeof(l->state), l->failing ? "backoff" : "idle");
            (void)hdx_cursor_set(l->cursor, &l->pos, 0);
            write_status(l, 2);
            if (l->fd >= 0 && rc->dest == HDX_DEST_HTTPS && !l->keepalive) lane_disconnect(l);
            /* an association is kept over short pauses (one per instance would cost a
             * handshake each) and released once idle: PACS limit their associations */
            int64_t t = hdx_monotonic_us();
            if (!l->idle_since_us) l->idle_since_us = t;
            if (l->scu && t - l->idle_since_us >= SCU_IDLE_US) lane_release(l);
            lane_sleep(l, hdx_monotonic_us() + 1000000);
            continue;
        }
        l->idle_since_us = 0;
        if (l->next_try_us && hdx_monotonic_us() < l->next_try_us) {
            if (draining(l)) break; /* no retry now: the cursor stays before it */
            lane_sleep(l, l->next_try_us);
            continue;
        }
        if (rc->dest != HDX_DEST_SPOOL && l->fd < 0) {
            if (draining(l)) break;
            sfmt(l->state, sizeof(l->state), "connecting");
            if (lane_connect(l) != HDX_OK) {
                lane_failed(l);
                continue;
            }
        }
        sfmt(l->state, sizeof(l->state), "delivering");
        int r = rc->dest == HDX_DEST_SPOOL                                  ? deliver_spool(l)
                : rc->dest == HDX_DEST_HTTPS                                ? deliver_https(l)
                : rc->dest == HDX_DEST_DICOMS || rc->dest == HDX_DEST_DICOM ? deliver_dicom(l)
                                                                            : deliver_mllp(l);
        if (r == -2) break;
        if (r < 0) {
            lane_disconnect(l);
            lane_failed(l);
        } else if (r > 0) { /* an AE (or a 5xx): the message waits, the connection stays */
            lane_failed(l);
        } else {
            lane_ok(l);
            if (rc->dest == HDX_DEST_HTTPS && !l->keepalive) lane_disconnect(l);
        }
        if (lane_advance(l) != HDX_OK && !stopping(l)) lane_failed(l);
    }
out:
    lane_meter(l, 0); /* what is left is not this lane's any more */
    sfmt(l->state, sizeof(l->state), "stopped");
    lane_release(l);
    lane_disconnect(l);
    /* The disclosures not yet in the log, and waited for when hdxd drains (the event loop
     * still delivers on_done then); otherwise a restart writes them again from the log. */
    if (l->audit_ticket && atomic_load(&rt->drain)) (void)ticket_wait(l, l->audit_ticket);
    lane_audit_check(l);
    if (!l->audit_ticket) disc_flush(l, l->pos.delivered);
    if (l->audit_ticket && atomic_load(&rt->drain)) (void)ticket_wait(l, l->audit_ticket);
    lane_audit_check(l);
    if (l->cursor) (void)hdx_cursor_set(l->cursor, &l->pos, 1);
    write_status(l, 1);
    hdx_info("route_lane_stopped", "route=%s lane=%d delivered=%llu audited=%llu", rc->name,
             l->index, (unsigned long long)l->pos.delivered, (unsigned long long)l->pos.audited);
    atomic_store(&l->finished, 1);
    return NULL;
}

/* ---------- routes ---------- */

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) == 0) {
        char parent[HDX_PATH_MAX];
        sfmt(parent, sizeof(parent), "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash) *slash = 0;
        return hdx_fsync_dir(parent);
    }
    return errno == EEXIST ? 0 : -1;
}

static SSL_CTX *client_ctx(const struct hdx_routes *rs, const struct hdx_route_conf *rc, char *why,
                           size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int min = strcmp(rs->tls_min, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, min) ||
        SSL_CTX_load_verify_locations(ctx, rc->ca, NULL) != 1) {
        sfmt(why, cap, "cannot load the CA file %s", rc->ca);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (min == TLS1_2_VERSION &&
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1") != 1) {
        sfmt(why, cap, "cannot set the TLS 1.2 ciphers");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (rc->cert[0]) {
        struct stat st;
        if (stat(rc->key, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
            sfmt(why, cap, "the key file %s must be a regular file of mode 0600", rc->key);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, rc->cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, rc->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            sfmt(why, cap, "cannot load the client certificate %s and key %s", rc->cert, rc->key);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

static void route_stop(struct route *rt)
{
    if (!rt) return;
    atomic_store(&rt->stop, 1);
    pthread_mutex_lock(&rt->rs->mu);
    pthread_cond_broadcast(&rt->rs->cv);
    pthread_mutex_unlock(&rt->rs->mu);
    for (int i = 0; i < rt->nlanes; i++) {
        struct lane *l = &rt->lanes[i];
        if (l->started) pthread_join(l->th, NULL);
        for (size_t k = 0; k < l->nwin; k++)
            pending_free(&l->win[k]);
        for (size_t k = 0; k < l->npre; k++)
            pending_free(&l->pre[k]);
        free(l->win_buf);
        free(l->pre_buf);
        if (l->ptbuf) sodium_memzero(l->ptbuf, l->ptcap);
        free(l->ptbuf);
        free(l->rbuf);
        if (l->audit_ticket) ticket_release(l->audit_ticket);
        hdx_cursor_close(l->cursor);
        hdx_keyctx_free(l->kc);
        hdx_policy_free(l->policy);
        hdx_store_close(l->store);
    }
    SSL_CTX_free(rt->ctx);
    hdx_route_conf_free(rt->conf);
    hdx_route_conf_free(rt->next);
    free(rt->retry);
    free(rt);
}

static struct route *route_start(struct hdx_routes *rs, struct hdx_route_conf *rc)
{
    char why[512] = "";
    struct route *rt = calloc(1, sizeof(*rt) + (size_t)rc->lanes * sizeof(struct lane));
    if (!rt) return NULL;
    rt->rs = rs;
    rt->conf = rc;
    rt->nlanes = rc->lanes;
    if (rc->dest == HDX_DEST_SPOOL)
        sfmt(rt->dest_desc, sizeof(rt->dest_desc), "spool:%s", rc->path);
    else
        sfmt(rt->dest_desc, sizeof(rt->dest_desc), "%s://%s:%d%s%s", hdx_route_dest_name(rc->dest),
             rc->host, rc->port,
             rc->dest == HDX_DEST_HTTPS                                  ? rc->path
             : rc->dest == HDX_DEST_DICOMS || rc->dest == HDX_DEST_DICOM ? "/"
                                                                         : "",
             rc->dest == HDX_DEST_DICOMS || rc->dest == HDX_DEST_DICOM ? rc->called_ae : "");
    for (char *p = rt->dest_desc; *p; p++) /* one audit token: no space or '=' */
        if (*p <= 0x20 || *p >= 0x7f || *p == '=') *p = '?';
    char routes_dir[HDX_PATH_MAX];
    sfmt(routes_dir, sizeof(routes_dir), "%s/routes", rs->dir);
    sfmt(rt->dir, sizeof(rt->dir), "%s/%s", routes_dir, rc->name);
    if (make_dir(routes_dir) != 0 || make_dir(rt->dir) != 0) {
        hdx_error("route_refused", "route=%s reason=\"cannot make %s\"", rc->name, rt->dir);
        rt->conf = NULL;
        free(rt);
        return NULL;
    }
    /* Lanes changed (or a lane's file is missing): every lane starts from the lowest position
     * of the lanes that wrote last, decided here once, before any lane thread reads a file
     * another lane is rewriting. */
    uint32_t moved_from;
    uint64_t resume;
    int prc = hdx_cursor_repartition(rt->dir, (uint32_t)rt->nlanes, HDX_ROUTE_LANES_MAX,
                                     &moved_from, &resume);
    if (prc != HDX_OK) {
        hdx_error("route_refused", "route=%s reason=\"its lane cursors in %s: %s\"", rc->name,
                  rt->dir, hdx_strerror(prc));
        rt->conf = NULL;
        free(rt);
        return NULL;
    }
    for (int k = rt->nlanes; k < HDX_ROUTE_LANES_MAX; k++) { /* status of lanes gone */
        char st[HDX_PATH_MAX];
        sfmt(st, sizeof(st), "%s/lane-%d.%s", rt->dir, k, HDX_ROUTE_STATUS_FILE);
        (void)unlink(st);
    }
    if (moved_from)
        hdx_info("route_lanes_changed", "route=%s from_lanes=%u to_lanes=%d resume=%llu", rc->name,
                 moved_from, rt->nlanes, (unsigned long long)resume);
    if ((rc->dest == HDX_DEST_MLLPS || rc->dest == HDX_DEST_HTTPS || rc->dest == HDX_DEST_DICOMS) &&
        !(rt->ctx = client_ctx(rs, rc, why, sizeof(why)))) {
        hdx_error("route_refused", "route=%s reason=\"%s\"", rc->name, why);
        rt->conf = NULL;
        free(rt);
        return NULL;
    }
    for (int i = 0; i < rt->nlanes; i++) {
        struct lane *l = &rt->lanes[i];
        l->rt = rt;
        l->index = i;
        l->fd = -1;
        l->win = l->win_buf = calloc(WIN_CAP(rc), sizeof(*l->win));
        l->pre = l->pre_buf = calloc(2 * PREFETCH_MAX, sizeof(*l->pre));
        if (!l->win || !l->pre || pthread_create(&l->th, NULL, lane_main, l) != 0) {
            hdx_error("route_refused", "route=%s reason=\"cannot start lane %d\"", rc->name, i);
            route_stop(rt);
            return NULL;
        }
        l->started = 1;
    }
    return rt;
}

int hdx_routes_new(const struct hdx_routes_env *env, struct hdx_routes **out)
{
    struct hdx_routes *rs = calloc(1, sizeof(*rs));
    if (!rs) return HDX_E_NOMEM;
    rs->env = *env;
    sfmt(rs->dir, sizeof(rs->dir), "%s", env->dir);
    sfmt(rs->store_path, sizeof(rs->store_path), "%s", env->store_path);
    sfmt(rs->tls_min, sizeof(rs->tls_min), "%s",
         env->tls_min_version ? env->tls_min_version : "1.3");
    rs->env.dir = rs->dir;
    rs->env.store_path = rs->store_path;
    rs->env.tls_min_version = rs->tls_min;
    rs->last_seq = env->last_seq;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    *out = rs;
    return HDX_OK;
}

/* The retries still pending in the log at start (a retry committed, not yet delivered). */
static int queue_retry(void *ctx, uint64_t seq, const char *reason, int64_t dead_us, int retry)
{
    struct route *rt = ctx;
    if (!retry) return 0;
    if (rt->nretry == rt->retry_cap) {
        size_t cap = rt->retry_cap ? rt->retry_cap * 2 : 16;
        uint64_t *p = realloc(rt->retry, cap * sizeof(*p));
        if (!p) return 1;
        rt->retry = p;
        rt->retry_cap = cap;
    }
    rt->retry[rt->nretry++] = seq;
    return 0;
}

/* Starts a route and queues the retries its dead letters still ask for. */
static struct route *route_launch(struct hdx_routes *rs, struct hdx_route_conf *c)
{
    struct route *rt = route_start(rs, c);
    if (!rt) {
        hdx_route_conf_free(c);
        return NULL;
    }
    struct hdx_store *ro = NULL;
    if (hdx_store_open(rs->store_path, HDX_STORE_RDONLY, &ro) == HDX_OK) {
        pthread_mutex_lock(&rs->mu);
        (void)hdx_route_dead_letters(ro, rs->env.kr, c->name, queue_retry, rt);
        pthread_cond_broadcast(&rs->cv);
        pthread_mutex_unlock(&rs->mu);
    }
    hdx_store_close(ro);
    return rt;
}

/* A running route to replace (next: its new configuration) or remove (next NULL): it drains
 * first, and hdx_routes_tick swaps it once its lanes are done. */
static void route_retire(struct hdx_routes *rs, struct route *rt, struct hdx_route_conf *next)
{
    if (rt->next) hdx_route_conf_free(rt->next); /* reloaded again while draining */
    rt->next = next;
    if (!atomic_load(&rt->drain)) {
        rt->drain_deadline =
            hdx_monotonic_us() + (int64_t)rt->conf->ack_timeout_ms * 1000 + 2000000;
        atomic_store(&rt->drain, 1);
        pthread_mutex_lock(&rs->mu);
        pthread_cond_broadcast(&rs->cv);
        pthread_mutex_unlock(&rs->mu);
    }
    rt->retiring = 1;
}

void hdx_routes_apply(struct hdx_routes *rs, struct hdx_routes_conf *rc)
{
    int seen[HDX_ROUTES_MAX] = {0};
    for (size_t i = 0; i < rc->n; i++) {
        struct hdx_route_conf *c = rc->r[i];
        size_t j;
        for (j = 0; j < rs->n; j++)
            if (strcmp(rs->r[j]->conf->name, c->name) == 0) break;
        if (j < rs->n) seen[j] = 1;
        if (!c->valid) {
            hdx_error("route_refused", "route=%s error=\"%s\" running=%s", c->name, c->error,
                      j < rs->n ? "previous_configuration" : "no");
            continue;
        }
        if (j < rs->n && !rs->r[j]->retiring &&
            memcmp(rs->r[j]->conf->fingerprint, c->fingerprint, 32) == 0)
            continue; /* unchanged: it keeps running, untouched */
        struct hdx_route_conf *taken = hdx_routes_conf_take(rc, i);
        if (j < rs->n) { /* changed: drained, then started again from its cursor */
            hdx_info("route_reloading", "route=%s", c->name);
            route_retire(rs, rs->r[j], taken);
            continue;
        }
        if (rs->n == HDX_ROUTES_MAX) {
            hdx_route_conf_free(taken);
            continue;
        }
        struct route *rt = route_launch(rs, taken);
        if (rt) {
            seen[rs->n] = 1;
            rs->r[rs->n++] = rt;
        }
    }
    for (size_t j = 0; j < rs->n; j++)
        if (!seen[j] && (!rs->r[j]->retiring || rs->r[j]->next)) {
            hdx_info("route_removed", "route=%s", rs->r[j]->conf->name);
            route_retire(rs, rs->r[j], NULL);
        }
}

void hdx_routes_tick(struct hdx_routes *rs)
{
    if (!rs || rs->shutting) return;
    size_t w = 0;
    for (size_t j = 0; j < rs->n; j++) {
        struct route *rt = rs->r[j];
        int done = 1;
        for (int i = 0; rt->retiring && i < rt->nlanes; i++)
            done &= !rt->lanes[i].started || atomic_load(&rt->lanes[i].finished);
        if (!rt->retiring || (!done && hdx_monotonic_us() < rt->drain_deadline)) {
            rs->r[w++] = rt;
            continue;
        }
        struct hdx_route_conf *next = rt->next;
        rt->next = NULL;
        route_stop(rt); /* its lanes have ended (or are told to now) */
        struct route *fresh = next ? route_launch(rs, next) : NULL;
        if (fresh) rs->r[w++] = fresh;
    }
    rs->n = w;
}

static void feed_release(struct feed_batch *b) /* under rs->mu */
{
    if (!b || --b->refs > 0) return;
    if (b->body) sodium_memzero(b->body, b->bytes);
    free(b->body);
    free(b->items);
    free(b);
}

/* A batch of the done list, or NULL when it has nothing to share or no memory (lanes then read
 * the store, as always). first is what rs had before it. */
static struct feed_batch *feed_build(const struct hdx_intake_item *head, uint64_t first,
                                     uint64_t last, int64_t now)
{
    size_t n = 0, bytes = 0;
    uint64_t low = UINT64_MAX;
    for (const struct hdx_intake_item *it = head; it; it = it->next) {
        if (it->status != HDX_OK || it->duplicate) continue;
        if (it->seq < low) low = it->seq;
        if (it->kind == HDX_KIND_HL7V2 && it->body) {
            n++;
            bytes += it->body_len;
        }
    }
    if (low != first || bytes > FEED_BYTES) return NULL; /* not contiguous with what came before */
    struct feed_batch *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->items = calloc(n ? n : 1, sizeof(*b->items));
    b->body = malloc(bytes ? bytes : 1);
    if (!b->items || !b->body) {
        free(b->items);
        free(b->body);
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->first = first;
    b->last = last;
    b->commit_us = now;
    b->bytes = bytes;
    size_t off = 0;
    for (const struct hdx_intake_item *it = head; it; it = it->next) {
        if (it->status != HDX_OK || it->duplicate || it->kind != HDX_KIND_HL7V2 || !it->body)
            continue;
        struct feed_item *fi = &b->items[b->n++];
        fi->seq = it->seq;
        fi->time_us = it->time_us;
        sfmt(fi->sender, sizeof(fi->sender), "%s", it->sender);
        sfmt(fi->type, sizeof(fi->type), "%s", it->type);
        memcpy(fi->patient, it->patient, HDX_BLIND_LEN);
        fi->off = (uint32_t)off;
        fi->len = (uint32_t)it->body_len;
        memcpy(b->body + off, it->body, it->body_len);
        off += it->body_len;
    }
    return b;
}

void hdx_routes_committed(struct hdx_routes *rs, const struct hdx_intake_item *head,
                          uint64_t last_seq)
{
    if (!rs) return;
    int64_t now = hdx_monotonic_us();
    pthread_mutex_lock(&rs->mu);
    uint64_t first = rs->last_seq + 1;
    pthread_mutex_unlock(&rs->mu);
    /* built outside the lock: the lanes keep reading the ring meanwhile; with no route at all
     * only the position is kept (a route a reload adds starts from it) */
    struct feed_batch *b =
        rs->n && last_seq >= first ? feed_build(head, first, last_seq, now) : NULL;
    pthread_mutex_lock(&rs->mu);
    if (last_seq > rs->last_seq) {
        rs->last_seq = last_seq;
        rs->commit_seq[rs->commit_head % COMMIT_RING] = last_seq;
        rs->commit_us[rs->commit_head % COMMIT_RING] = now;
        rs->commit_head++;
        if (b) {
            while (rs->nfeed && (rs->nfeed == FEED_MAX || rs->feed_bytes + b->bytes > FEED_BYTES)) {
                rs->feed_bytes -= rs->feed[0]->bytes;
                feed_release(rs->feed[0]);
                memmove(rs->feed, rs->feed + 1, (rs->nfeed - 1) * sizeof(rs->feed[0]));
                rs->nfeed--;
            }
            rs->feed[rs->nfeed++] = b;
            rs->feed_bytes += b->bytes;
            b = NULL;
        }
        pthread_cond_broadcast(&rs->cv);
    }
    feed_release(b); /* not used */
    pthread_mutex_unlock(&rs->mu);
}

void hdx_routes_admin_committed(struct hdx_routes *rs, const struct hdx_intake_item *it)
{
    struct hdx_admin a;
    if (!rs || hdx_admin_parse(it->body, it->body_len, &a) != HDX_OK) return;
    if (hdx_admin_is_policy_op(a.op) || hdx_admin_is_user_op(a.op)) {
        atomic_fetch_add(&rs->policy_gen, 1);
        return;
    }
    if (a.op != HDX_ADMIN_ROUTE_RETRY && a.op != HDX_ADMIN_ROUTE_SKIP) return;
    pthread_mutex_lock(&rs->mu);
    for (size_t j = 0; j < rs->n; j++) {
        struct route *rt = rs->r[j];
        if (strcmp(rt->conf->name, a.name) != 0) continue;
        size_t k;
        for (k = 0; k < rt->nretry && rt->retry[k] != a.seq; k++)
            ;
        if (a.op == HDX_ADMIN_ROUTE_SKIP && k < rt->nretry) {
            memmove(&rt->retry[k], &rt->retry[k + 1], (rt->nretry - k - 1) * sizeof(uint64_t));
            rt->nretry--;
        } else if (a.op == HDX_ADMIN_ROUTE_RETRY && k == rt->nretry) {
            (void)queue_retry(rt, a.seq, NULL, 0, 1);
            pthread_cond_broadcast(&rs->cv);
        }
    }
    pthread_mutex_unlock(&rs->mu);
}

void hdx_routes_drain(struct hdx_routes *rs)
{
    if (!rs) return;
    rs->shutting = 1;
    for (size_t j = 0; j < rs->n; j++)
        atomic_store(&rs->r[j]->drain, 1);
    pthread_mutex_lock(&rs->mu);
    pthread_cond_broadcast(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

int hdx_routes_drained(struct hdx_routes *rs)
{
    for (size_t j = 0; rs && j < rs->n; j++)
        for (int i = 0; i < rs->r[j]->nlanes; i++)
            if (rs->r[j]->lanes[i].started && !atomic_load(&rs->r[j]->lanes[i].finished)) return 0;
    return 1;
}

void hdx_routes_free(struct hdx_routes *rs)
{
    if (!rs) return;
    for (size_t j = 0; j < rs->n; j++)
        atomic_store(&rs->r[j]->stop, 1);
    for (size_t j = 0; j < rs->n; j++)
        route_stop(rs->r[j]);
    /* Records still in the pipeline: the event loop has ended, so their on_done will not
     * run (the caller frees the routes before stopping the commit pipeline). */
    for (size_t i = 0; i < rs->nfeed; i++)
        feed_release(rs->feed[i]);
    rs->nfeed = 0;
    pthread_mutex_lock(&ticket_mu);
    while (tickets) {
        struct ticket *t = tickets;
        tickets = t->next;
        free(t);
    }
    pthread_mutex_unlock(&ticket_mu);
    pthread_mutex_destroy(&rs->mu);
    pthread_cond_destroy(&rs->cv);
    free(rs);
}

/* ---------- dead letters, from the log ---------- */

struct dead {
    uint64_t seq;
    int64_t dead_us;
    int retry;
    char reason[HDX_JUSTIFICATION_MAX + 1];
};

struct dead_ctx {
    const struct hdx_keyring *kr;
    const char *route;
    struct dead *d;
    size_t n, cap;
    int err;
};

static struct dead *dead_find(struct dead_ctx *c, uint64_t seq, int add)
{
    for (size_t i = 0; i < c->n; i++) /* dead letters are few: a list is enough */
        if (c->d[i].seq == seq) return &c->d[i];
    if (!add) return NULL;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct dead *p = realloc(c->d, cap * sizeof(*p));
        if (!p) return NULL;
        c->d = p;
        c->cap = cap;
    }
    memset(&c->d[c->n], 0, sizeof(c->d[0]));
    c->d[c->n].seq = seq;
    return &c->d[c->n++];
}

static int dead_cb(void *ctx, const struct hdx_record *r)
{
    struct dead_ctx *c = ctx;
    if (strncmp(r->type, "admin/route_", 12) != 0) return 0;
    uint8_t *pt = NULL;
    size_t len = 0;
    struct hdx_admin a;
    if (hdx_record_open(r, c->kr, &pt, &len) != HDX_OK) {
        c->err = HDX_E_CRYPTO;
        return 1;
    }
    int ok = hdx_admin_parse(pt, len, &a) == HDX_OK;
    free(pt);
    if (!ok || strcmp(a.name, c->route) != 0) return 0;
    struct dead *d = dead_find(c, a.seq, a.op == HDX_ADMIN_ROUTE_DEAD);
    if (!d) {
        if (a.op == HDX_ADMIN_ROUTE_DEAD) c->err = HDX_E_NOMEM;
        return c->err ? 1 : 0;
    }
    switch (a.op) {
    case HDX_ADMIN_ROUTE_DEAD:
        d->dead_us = r->time_us;
        d->retry = 0;
        sfmt(d->reason, sizeof(d->reason), "%s", a.reason);
        break;
    case HDX_ADMIN_ROUTE_RETRY:
        d->retry = 1;
        break;
    default: /* skip, delivered: no longer dead */
        *d = c->d[--c->n];
        break;
    }
    return 0;
}

static int dead_cmp(const void *x, const void *y)
{
    const struct dead *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int hdx_route_dead_letters(struct hdx_store *s, const struct hdx_keyring *kr, const char *route,
                           int (*cb)(void *ctx, uint64_t seq, const char *reason, int64_t dead_us,
                                     int retry),
                           void *ctx)
{
    struct dead_ctx c = {.kr = kr, .route = route};
    struct hdx_store_filter f = {.kind = HDX_KIND_ADMIN};
    long n = hdx_store_scan(s, &f, 0, dead_cb, &c);
    int rc = n < 0 ? (int)n : c.err;
    if (rc == HDX_OK) {
        if (c.n) qsort(c.d, c.n, sizeof(*c.d), dead_cmp);
        for (size_t i = 0; i < c.n; i++)
            if (cb(ctx, c.d[i].seq, c.d[i].reason, c.d[i].dead_us, c.d[i].retry)) break;
    }
    free(c.d);
    return rc;
}
