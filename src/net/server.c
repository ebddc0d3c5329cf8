#include "net/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bus/bus.h"
#include "audit/audit.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "net/conn.h"
#include "net/dicom_session.h"
#include "net/front.h"
#include "net/http_session.h"
#include "net/mllp_session.h"
#include "net/sub_session.h"
#include "net/tls.h"
#include "route/route.h"

#define SHUTDOWN_GRACE_US 5000000

/* DESIGN (the server): glue between the connection layer (net/conn.h) and its sessions, the
 * commit pipeline (commit/commit.h) and the bus (bus/bus.h). Sessions hand intake items to
 * submit(); the pipeline's completions come back on done_fd and go to their session
 * (hdx_mllp_done) after the record is published on the bus. */
struct hdx_server {
    const struct hdx_conf *conf;
    struct event_base *base;
    const struct hdx_keyring *kr;
    struct hdx_keyctx *kc; /* the network thread's: tokens are made before the hand-over */
    struct hdx_store *ro_store;
    struct hdx_tls *tls;
    struct hdx_net *net;
    struct hdx_mllp *mllp;
    struct hdx_dicom *dicom;
    struct hdx_http *http;
    struct hdx_front *front;
    struct hdx_sub_ctx sub;
    struct hdx_commit *commit;
    struct hdx_bus *bus;
    struct event *done_ev, *crl_ev, *shutdown_ev;
    /* Items parsed in this pass of the event loop, handed to the commit pipeline together
     * once every connection ready in this pass has been read (submit_ev). */
    struct event *submit_ev;
    struct hdx_intake_item *submit_head, *submit_tail;
    int done_fd;
    int stopping;
    int64_t stop_deadline;
    char head_file[HDX_PATH_MAX];
    int64_t admin_next;        /* admin_queue ids up to this one were submitted (commit/admin.h) */
    struct hdx_routes *routes; /* outbound routes (route/route.h), NULL: none declared */
};

/* ---------- into the pipeline ---------- */

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

static void submit(void *arg, struct hdx_intake_item *it)
{
    struct hdx_server *srv = arg;
    if (it->kind == HDX_KIND_FHIR) hdx_metric_ingest(HDX_METRIC_HTTP); /* the FHIR writes */
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

static void admin_done(struct hdx_server *srv, const struct hdx_intake_item *it);

/* Audit records go through the pipeline like any other record (audit/audit.h). */
static void audit_submit(void *arg, const struct hdx_audit *a)
{
    struct hdx_server *srv = arg;
    if (!srv->commit) return; /* freeing: nothing more reaches the log */
    struct hdx_intake_item *it = hdx_audit_item_new(a);
    if (!it) {
        hdx_error("audit_failed", "reason=out_of_memory event=%s", a->event ? a->event : "-");
        return;
    }
    submit(srv, it);
}

static void on_commit_done(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    uint64_t n;
    if (read(srv->done_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_read_failed", "errno=%d", errno);
    struct hdx_intake_item *it = hdx_commit_take_done(srv->commit), *next;
    uint64_t last = 0;
    for (const struct hdx_intake_item *i = it; i; i = i->next)
        if (i->status == HDX_OK && i->seq > last) last = i->seq;
    /* the routes first, while the items (and their plaintext) are still here */
    if (last) hdx_routes_committed(srv->routes, it, last);
    if (last && srv->front) hdx_front_fhir_committed(srv->front, last);
    for (; it; it = next) {
        next = it->next;
        struct hdx_conn *c = it->origin;
        /* Every record goes on the bus, audit and admin ones too: subscribers receive only
         * clinical messages (bus.h), but their cursor must pass the others, or the next
         * message would look like a gap and be read back from the store. */
        if (!c && it->status == HDX_OK) publish(srv, it);
        if (!c && it->kind == HDX_KIND_AUDIT) {
            if (it->status != HDX_OK)
                hdx_error("audit_commit_failed", "type=%s err=%s", it->type,
                          hdx_strerror(it->status));
            /* One from the queue (an offline read's) is tried again, like a statement. */
            if (it->status != HDX_OK && it->admin_id && srv->admin_next >= it->admin_id)
                srv->admin_next = it->admin_id - 1;
            if (it->on_done) it->on_done(it->done_arg, it); /* a route's disclosures */
        } else if (!c && (it->kind == HDX_KIND_FHIR || it->kind == HDX_KIND_DICOM)) {
            /* the FHIR write's or the STOW-RS instance's answer */
            if (it->on_done) it->on_done(it->done_arg, it);
        } else if (!c) { /* an admin statement: nobody to answer, or hdxd's own */
            admin_done(srv, it);
            if (it->on_done) it->on_done(it->done_arg, it);
        } else {
            if (it->status == HDX_OK && !it->duplicate) publish(srv, it);
            if (it->kind == HDX_KIND_DICOM)
                hdx_dicom_done(c, it);
            else
                hdx_mllp_done(c, it);
        }
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

/* ---------- the registry's admin queue, revocation, shutdown ---------- */

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
        if (srv->front) hdx_front_admin_committed(srv->front, it);
        hdx_sub_admin_committed(&srv->sub, it);
        hdx_routes_admin_committed(srv->routes, it);
        return;
    }
    if (!it->admin_id) { /* hdxd's own: its on_done answers for it */
        hdx_error("admin_commit_failed", "type=%s err=%s", it->type, hdx_strerror(it->status));
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
    hdx_net_tick(srv->net);
    if (srv->front) hdx_front_tick(srv->front);
    hdx_routes_tick(srv->routes);
    hdx_sub_tick(&srv->sub);
    poll_admin_queue(srv);
    if (hdx_tls_crl_changed(srv->tls)) hdx_net_sweep_revoked(srv->net);
}

static void on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_server *srv = arg;
    hdx_net_reap(srv->net);
    if ((!hdx_net_inflight(srv->net) && hdx_routes_drained(srv->routes)) ||
        hdx_monotonic_us() > srv->stop_deadline)
        event_base_loopexit(srv->base, NULL);
}

void hdx_server_shutdown(struct hdx_server *srv)
{
    if (srv->stopping) return;
    srv->stopping = 1;
    srv->stop_deadline = hdx_monotonic_us() + SHUTDOWN_GRACE_US;
    hdx_info("shutdown", "connections=%zu", hdx_net_count(srv->net));
    hdx_net_stop(srv->net);
    hdx_routes_drain(srv->routes);
    struct timeval tick = {0, 20000};
    event_add(srv->shutdown_ev, &tick);
}

static int open_listeners(struct hdx_server *srv, char *why, size_t cap)
{
    const struct hdx_conf *conf = srv->conf;
    struct hdx_listener_spec mllp = {.addr = conf->mllp_listen,
                                     .ops = &hdx_mllp_tls_ops,
                                     .ctx = srv->mllp,
                                     .tls = 1,
                                     .max_connections = conf->mllp_max_connections};
    int rc = hdx_net_listen(srv->net, &mllp, why, cap);
    if (rc == HDX_OK && conf->sub_listen[0]) {
        /* The bus refills a subscriber's output once it drains to a quarter of its queue. */
        struct hdx_listener_spec sub = {.addr = conf->sub_listen,
                                        .ops = &hdx_sub_ops,
                                        .ctx = &srv->sub,
                                        .tls = 1,
                                        .max_connections = conf->sub_max_connections,
                                        .write_low = conf->sub_max_queue / 4};
        rc = hdx_net_listen(srv->net, &sub, why, cap);
    }
    if (rc == HDX_OK && conf->legacy_listen[0]) {
        struct hdx_listener_spec legacy = {.addr = conf->legacy_listen,
                                           .ops = &hdx_mllp_plain_ops,
                                           .ctx = srv->mllp,
                                           .allow = conf->legacy_allow,
                                           .max_connections = conf->legacy_max_connections};
        rc = hdx_net_listen(srv->net, &legacy, why, cap);
    }
    if (rc == HDX_OK && conf->dicom_listen[0]) {
        struct hdx_listener_spec dicom = {.addr = conf->dicom_listen,
                                          .ops = &hdx_dicom_tls_ops,
                                          .ctx = srv->dicom,
                                          .tls = 1,
                                          .max_connections = conf->dicom_max_connections};
        rc = hdx_net_listen(srv->net, &dicom, why, cap);
    }
    if (rc == HDX_OK && conf->dicom_plain_listen[0]) {
        struct hdx_listener_spec dicom = {.addr = conf->dicom_plain_listen,
                                          .ops = &hdx_dicom_plain_ops,
                                          .ctx = srv->dicom,
                                          .allow = conf->dicom_plain_allow,
                                          .max_connections = conf->dicom_max_connections};
        rc = hdx_net_listen(srv->net, &dicom, why, cap);
    }
    if (rc == HDX_OK && conf->http_listen[0]) {
        /* People have no certificate: one is asked for, checked if sent, not required. */
        struct hdx_listener_spec http = {.addr = conf->http_listen,
                                         .ops = &hdx_http_ops,
                                         .ctx = srv->http,
                                         .tls = 1,
                                         .cert_optional = 1,
                                         .max_connections = conf->http_max_connections};
        rc = hdx_net_listen(srv->net, &http, why, cap);
    }
    if (rc != HDX_OK) return rc;
    hdx_info("listening", "mllp=%s sub=%s http=%s legacy=%s dicom=%s dicom_plain=%s",
             conf->mllp_listen, conf->sub_listen[0] ? conf->sub_listen : "off",
             conf->http_listen[0] ? conf->http_listen : "off",
             conf->legacy_listen[0] ? conf->legacy_listen : "off",
             conf->dicom_listen[0] ? conf->dicom_listen : "off",
             conf->dicom_plain_listen[0] ? conf->dicom_plain_listen : "off");
    return HDX_OK;
}

static int make_events(struct hdx_server *srv)
{
    srv->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->done_fd < 0) return HDX_E_IO;
    srv->done_ev = event_new(srv->base, srv->done_fd, EV_READ | EV_PERSIST, on_commit_done, srv);
    srv->crl_ev = event_new(srv->base, -1, EV_PERSIST, on_housekeeping, srv);
    srv->shutdown_ev = event_new(srv->base, -1, EV_PERSIST, on_shutdown_tick, srv);
    srv->submit_ev = event_new(srv->base, -1, 0, on_submit, srv);
    if (!srv->done_ev || !srv->crl_ev || !srv->shutdown_ev || !srv->submit_ev) return HDX_E_NOMEM;
    int ms = srv->conf->tls_crl_check_ms;
    struct timeval crl = {ms / 1000, (ms % 1000) * 1000};
    event_add(srv->done_ev, NULL);
    event_add(srv->crl_ev, &crl);
    return HDX_OK;
}

/* The [route NAME] sections of hdx.conf: at start every one must be valid. */
static int start_routes(struct hdx_server *srv, uint64_t last, char *why, size_t why_cap)
{
    const struct hdx_conf *conf = srv->conf;
    struct hdx_routes_conf rc;
    char store_path[HDX_PATH_MAX];
    int rcode = hdx_routes_conf_load(conf->path, conf->dir, &rc);
    if (rcode != HDX_OK) {
        snprintf(why, why_cap, "%s", rc.error);
        hdx_routes_conf_free(&rc);
        return HDX_E_CONFIG;
    }
    for (size_t i = 0; i < rc.n; i++)
        if (!rc.r[i]->valid) {
            snprintf(why, why_cap, "%s", rc.r[i]->error);
            hdx_routes_conf_free(&rc);
            return HDX_E_CONFIG;
        }
    if (rc.n == 0) {
        hdx_routes_conf_free(&rc);
        return HDX_OK;
    }
    struct hdx_routes_env env = {.dir = conf->dir,
                                 .store_path = store_path,
                                 .kr = srv->kr,
                                 .commit = srv->commit,
                                 .tls_min_version = conf->tls_min_version,
                                 .max_ack = conf->mllp_max_message,
                                 .last_seq = last,
                                 .training_period_days = conf->policy_training_period_days};
    if (hdx_conf_path(conf, conf->store_path, store_path, sizeof(store_path)) != HDX_OK ||
        (rcode = hdx_routes_new(&env, &srv->routes)) != HDX_OK) {
        snprintf(why, why_cap, "cannot start the routes");
        hdx_routes_conf_free(&rc);
        return HDX_E_NOMEM;
    }
    hdx_routes_apply(srv->routes, &rc);
    hdx_routes_conf_free(&rc);
    return HDX_OK;
}

void hdx_server_reload(struct hdx_server *srv)
{
    struct hdx_routes_conf rc;
    char why[512];
    int rcode = hdx_routes_conf_load(srv->conf->path, srv->conf->dir, &rc);
    if (rcode != HDX_OK) {
        hdx_error("reload_refused", "reason=\"%s\"", rc.error);
        hdx_routes_conf_free(&rc);
        return;
    }
    size_t n = rc.n;
    if (!srv->routes && n) {
        hdx_routes_conf_free(&rc);
        uint64_t last = 0;
        uint8_t chain[HDX_HASH_LEN];
        (void)hdx_store_last(srv->ro_store, &last, chain, NULL);
        if (start_routes(srv, last, why, sizeof(why)) != HDX_OK)
            hdx_error("reload_refused", "reason=\"%s\"", why);
        hdx_info("reloaded", "routes=%zu", n);
        return;
    }
    if (srv->routes) hdx_routes_apply(srv->routes, &rc);
    hdx_info("reloaded", "routes=%zu", n);
    hdx_routes_conf_free(&rc);
}

int hdx_server_new(const struct hdx_conf *conf, struct event_base *base,
                   const struct hdx_keyring *kr, EVP_PKEY *log_key, struct hdx_store *ro_store,
                   struct hdx_store *commit_store, struct hdx_server **out, char *why,
                   size_t why_cap)
{
    uint64_t last = 0;
    uint8_t chain[HDX_HASH_LEN];
    *out = NULL;
    struct hdx_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        hdx_store_close(commit_store);
        return HDX_E_NOMEM;
    }
    hdx_metrics_start();
    srv->conf = conf;
    srv->base = base;
    srv->kr = kr;
    if (hdx_keyctx_new(kr, &srv->kc) != HDX_OK) srv->kc = NULL; /* the sealer blinds then */
    srv->ro_store = ro_store;
    srv->done_fd = -1;
    srv->sub.kr = kr;
    srv->sub.ro_store = ro_store;
    srv->sub.training_period_days = conf->policy_training_period_days;
    if (hdx_sub_policy_reload(&srv->sub) != HDX_OK) srv->sub.policy_stale = 1; /* retried */
    if (hdx_conf_path(conf, "log.sth", srv->head_file, sizeof(srv->head_file)) != HDX_OK)
        srv->head_file[0] = 0;
    int rc = hdx_tls_new(conf, &srv->tls, why, why_cap);
    if (rc == HDX_OK && ((rc = hdx_net_new(conf, base, srv->tls, ro_store, audit_submit, srv,
                                           &srv->net)) != HDX_OK ||
                         (rc = hdx_mllp_new(conf, submit, srv, &srv->mllp)) != HDX_OK ||
                         (rc = hdx_http_new(conf, &srv->http)) != HDX_OK))
        snprintf(why, why_cap, "cannot create the connection layer: %s", hdx_strerror(rc));
    if (rc == HDX_OK) rc = hdx_dicom_new(conf, submit, srv, &srv->dicom, why, why_cap);
    if (rc == HDX_OK) hdx_dicom_set_policy(srv->dicom, &srv->sub.policy);
    if (rc == HDX_OK) hdx_dicom_set_keyctx(srv->dicom, srv->kc);
    if (rc == HDX_OK && (rc = hdx_dicom_load(srv->dicom, ro_store, kr)) != HDX_OK)
        snprintf(why, why_cap, "cannot read the DICOM instances: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = make_events(srv)) != HDX_OK)
        snprintf(why, why_cap, "cannot create events: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = hdx_store_last(ro_store, &last, chain, NULL)) != HDX_OK)
        snprintf(why, why_cap, "cannot read the store: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = hdx_bus_new(ro_store, kr, &hdx_sub_sink, conf->sub_max_queue,
                                          conf->sub_max_lag_ms, last, &srv->bus)) != HDX_OK)
        snprintf(why, why_cap, "cannot create the bus");
    srv->sub.bus = srv->bus;
    if (rc == HDX_OK) {
        rc = hdx_commit_start(commit_store, kr, conf->store_batch_max, conf->store_dedup_window,
                              log_key, conf->store_receipts, srv->head_file, notify_done, srv,
                              &srv->commit);
        commit_store = NULL; /* moved to the commit thread, or closed below */
        if (rc != HDX_OK)
            snprintf(why, why_cap, "cannot start the commit thread: %s", hdx_strerror(rc));
    }
    if (rc == HDX_OK && conf->http_listen[0]) {
        struct hdx_front_env env = {.conf = conf,
                                    .base = base,
                                    .kr = kr,
                                    .ro_store = ro_store,
                                    .bus = srv->bus,
                                    .dicom = srv->dicom,
                                    .submit = submit,
                                    .audit = audit_submit,
                                    .arg = srv};
        rc = hdx_front_new(&env, srv->http, &srv->front, why, why_cap);
    }
    if (rc == HDX_OK) rc = start_routes(srv, last, why, why_cap);
    if (rc == HDX_OK) rc = open_listeners(srv, why, why_cap);
    hdx_store_close(commit_store);
    if (rc != HDX_OK) {
        hdx_server_free(srv);
        return rc;
    }
    *out = srv;
    return HDX_OK;
}

static void log_commit_stats(struct hdx_commit *commit)
{
    struct hdx_commit_stats st;
    hdx_commit_get_stats(commit, &st);
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

void hdx_server_free(struct hdx_server *srv)
{
    if (!srv) return;
    /* Stop the commit thread first: it commits what is queued; connections still holding
     * in-flight items are then answered by nobody, and their senders will resend. */
    hdx_routes_free(srv->routes); /* its lanes submit to the commit pipeline */
    srv->routes = NULL;
    if (srv->commit) {
        on_submit(-1, 0, srv); /* what this pass read is committed too */
        log_commit_stats(srv->commit);
    }
    hdx_commit_stop(srv->commit);
    srv->commit = NULL;
    hdx_net_free(srv->net); /* before the bus: subscribers unsubscribe */
    hdx_front_free(srv->front);
    hdx_bus_free(srv->bus);
    hdx_sub_ctx_free(&srv->sub);
    hdx_mllp_free(srv->mllp);
    hdx_dicom_free(srv->dicom);
    hdx_http_free(srv->http);
    if (srv->submit_ev) event_free(srv->submit_ev);
    hdx_keyctx_free(srv->kc);
    if (srv->done_ev) event_free(srv->done_ev);
    if (srv->crl_ev) event_free(srv->crl_ev);
    if (srv->shutdown_ev) event_free(srv->shutdown_ev);
    if (srv->done_fd >= 0) close(srv->done_fd);
    hdx_tls_free(srv->tls);
    free(srv);
}
