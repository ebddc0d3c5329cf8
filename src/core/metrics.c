#include "core/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"

/* DESIGN: every value is a static _Atomic uint64_t slot (a gauge is stored two's complement
 * and read back as int64_t), updated with one relaxed fetch_add. The families below are the
 * whole registry; render walks them in order. Relaxed order is enough: each slot is exact
 * on its own, and nothing synchronises through a metric. */

#define RELAXED memory_order_relaxed
#define HIST_MAX 16 /* bounds per histogram, +Inf not included */

static void add(_Atomic uint64_t *slot, uint64_t n)
{
    atomic_fetch_add_explicit(slot, n, RELAXED);
}

/* A histogram of integer observations: per-bucket (not cumulative) counts, the last bucket
 * being +Inf, and the sum. Bounds ascend; render divides them and the sum by scale. */
struct hist {
    const uint64_t *le;
    size_t nle;
    double scale;
    _Atomic uint64_t b[HIST_MAX + 1];
    _Atomic uint64_t sum;
};

static void observe(struct hist *h, uint64_t v)
{
    size_t i = 0;
    while (i < h->nle && v > h->le[i]) /* no division: at most HIST_MAX compares */
        i++;
    add(&h->b[i], 1);
    add(&h->sum, v);
}

/* ---------- the slots ---------- */

/* latency bounds in µs: 0.5 ms .. 10 s */
static const uint64_t lat_le[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                  100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const uint64_t batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

static _Atomic uint64_t ingested[HDX_METRIC_PROTO_COUNT], rejected[HDX_METRIC_PROTO_COUNT];
static struct hist ack_latency = {lat_le, sizeof(lat_le) / sizeof(lat_le[0]), 1e6, {0}, 0};
static _Atomic uint64_t commit_records, commit_duplicates, commit_failed, commit_batches;
static _Atomic uint64_t commit_flushes, intake_queue;
static struct hist batch_items = {batch_le, sizeof(batch_le) / sizeof(batch_le[0]), 1, {0}, 0};
static _Atomic uint64_t connections[HDX_METRIC_PROTO_COUNT], tls_hs_failed;
static _Atomic uint64_t route_outcome[HDX_METRIC_ROUTE_OUTCOME_COUNT], route_queued;
static struct hist route_latency = {lat_le, sizeof(lat_le) / sizeof(lat_le[0]), 1e6, {0}, 0};
static struct hist notify_latency = {lat_le, sizeof(lat_le) / sizeof(lat_le[0]), 1e6, {0}, 0};
static _Atomic uint64_t notifications;
static _Atomic uint64_t auth_failures[HDX_METRIC_AUTH_COUNT];
static _Atomic uint64_t policy_denials[HDX_METRIC_FRONT_COUNT];
#define CLASSES 4 /* 2xx 3xx 4xx 5xx */
static _Atomic uint64_t fhir_requests[HDX_METRIC_FHIR_COUNT * CLASSES];
static _Atomic uint64_t http_requests[CLASSES];
static _Atomic int64_t started_us;

static unsigned status_class(int status)
{
    if (status >= 200 && status < 300) return 0;
    if (status >= 300 && status < 400) return 1;
    if (status >= 400 && status < 500) return 2;
    return 3;
}

/* ---------- updates ---------- */

void hdx_metric_ingest(enum hdx_metric_proto p)
{
    if ((unsigned)p < HDX_METRIC_PROTO_COUNT) add(&ingested[p], 1);
}

void hdx_metric_rejected(enum hdx_metric_proto p)
{
    if ((unsigned)p < HDX_METRIC_PROTO_COUNT) add(&rejected[p], 1);
}

void hdx_metric_ack_latency(int64_t us)
{
    observe(&ack_latency, us > 0 ? (uint64_t)us : 0);
}

void hdx_metric_commit_batch(uint64_t items, uint64_t records, uint64_t duplicates, uint64_t failed)
{
    if (!items) return;
    add(&commit_batches, 1);
    observe(&batch_items, items);
    if (records) add(&commit_records, records);
    if (duplicates) add(&commit_duplicates, duplicates);
    if (failed) add(&commit_failed, failed);
}

void hdx_metric_flush(void)
{
    add(&commit_flushes, 1);
}

void hdx_metric_intake_queue(int64_t delta)
{
    add(&intake_queue, (uint64_t)delta);
}

void hdx_metric_connections(enum hdx_metric_proto p, int delta)
{
    if ((unsigned)p < HDX_METRIC_PROTO_COUNT) add(&connections[p], (uint64_t)(int64_t)delta);
}

void hdx_metric_tls_handshake_failed(void)
{
    add(&tls_hs_failed, 1);
}

void hdx_metric_route(enum hdx_metric_route_outcome o)
{
    if ((unsigned)o < HDX_METRIC_ROUTE_OUTCOME_COUNT) add(&route_outcome[o], 1);
}

void hdx_metric_route_latency(int64_t us)
{
    observe(&route_latency, us > 0 ? (uint64_t)us : 0);
}

void hdx_metric_fhir_notification(int64_t since_write_us)
{
    add(&notifications, 1);
    observe(&notify_latency, since_write_us > 0 ? (uint64_t)since_write_us : 0);
}

void hdx_metric_route_queued(int64_t delta)
{
    add(&route_queued, (uint64_t)delta);
}

void hdx_metric_auth_failure(enum hdx_metric_auth m)
{
    if ((unsigned)m < HDX_METRIC_AUTH_COUNT) add(&auth_failures[m], 1);
}

void hdx_metric_policy_denial(enum hdx_metric_front f)
{
    if ((unsigned)f < HDX_METRIC_FRONT_COUNT) add(&policy_denials[f], 1);
}

void hdx_metric_fhir(enum hdx_metric_fhir_interaction i, int status)
{
    if ((unsigned)i < HDX_METRIC_FHIR_COUNT)
        add(&fhir_requests[(unsigned)i * CLASSES + status_class(status)], 1);
}

void hdx_metric_http_status(int status)
{
    add(&http_requests[status_class(status)], 1);
}

void hdx_metrics_start(void)
{
    atomic_store_explicit(&started_us, hdx_monotonic_us(), RELAXED);
}

/* ---------- the registry ---------- */

enum kind { COUNTER, GAUGE, HISTOGRAM, PROCESS };

static const char *const proto_names[] = {"mllp", "legacy", "http", "sub", "dicom", "dicom-plain"};
static const char *const outcome_names[] = {"delivered", "retried", "dead"};
static const char *const auth_names[] = {"login", "api_key", "certificate"};
static const char *const front_names[] = {"https", "sub", "route", "dicom"};
static const char *const fhir_names[] = {"read",   "vread",       "update",  "delete",
                                         "create", "search",      "history", "transaction",
                                         "batch",  "capabilities"};
static const char *const class_names[] = {"2xx", "3xx", "4xx", "5xx"};

_Static_assert(sizeof(proto_names) / sizeof(proto_names[0]) == HDX_METRIC_PROTO_COUNT, "labels");
_Static_assert(sizeof(outcome_names) / sizeof(outcome_names[0]) == HDX_METRIC_ROUTE_OUTCOME_COUNT,
               "labels");
_Static_assert(sizeof(auth_names) / sizeof(auth_names[0]) == HDX_METRIC_AUTH_COUNT, "labels");
_Static_assert(sizeof(front_names) / sizeof(front_names[0]) == HDX_METRIC_FRONT_COUNT, "labels");
_Static_assert(sizeof(fhir_names) / sizeof(fhir_names[0]) == HDX_METRIC_FHIR_COUNT, "labels");

enum process_value { P_RSS, P_FDS, P_UPTIME };

/* A label: its name and values; a family has up to two (the slot of (i, j) is i * n2 + j).
 * nvals limits which of the values are shown (ingest has no sub port). */
struct label {
    const char *name;
    const char *const *vals;
    size_t n;
};

struct family {
    const char *name, *help;
    enum kind kind;
    _Atomic uint64_t *v; /* COUNTER, GAUGE */
    struct label l1, l2;
    struct hist *h; /* HISTOGRAM */
    enum process_value pv;
};

#define L(nm, arr, cnt)                                                                            \
    {                                                                                              \
        nm, arr, cnt                                                                               \
    }
#define NOLABEL                                                                                    \
    {                                                                                              \
        NULL, NULL, 0                                                                              \
    }

static const struct family families[] = {
    {"hdx_messages_ingested_total",
     "Messages handed to the commit pipeline (HL7 v2 over MLLP; FHIR writes over HTTPS).", COUNTER,
     ingested, L("protocol", proto_names, 3), NOLABEL, NULL, 0},
    {"hdx_messages_rejected_total", "Messages answered AE or AR on arrival, never stored.", COUNTER,
     rejected, L("protocol", proto_names, 2), NOLABEL, NULL, 0},
    {"hdx_ack_latency_seconds",
     "From a message's frame received to its ACK written to the connection, for messages "
     "that went through the commit pipeline.",
     HISTOGRAM, NULL, NOLABEL, NOLABEL, &ack_latency, 0},
    {"hdx_commit_records_total", "Records committed to the log (duplicates not included).", COUNTER,
     &commit_records, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_commit_duplicates_total", "Items found already stored and answered with their seq.",
     COUNTER, &commit_duplicates, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_commit_failed_total", "Items refused because their batch failed in the store.", COUNTER,
     &commit_failed, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_commit_batches_total", "Commit batches finished (each one index transaction).", COUNTER,
     &commit_batches, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_commit_flushes_total", "fdatasync calls that made record frames durable.", COUNTER,
     &commit_flushes, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_commit_batch_items", "Items per commit batch.", HISTOGRAM, NULL, NOLABEL, NOLABEL,
     &batch_items, 0},
    {"hdx_intake_queue_items", "Items waiting in the intake queue for the sealer.", GAUGE,
     &intake_queue, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_connections_open", "Connections admitted (handshake done, peer checked), not closing.",
     GAUGE, connections, L("protocol", proto_names, 4), NOLABEL, NULL, 0},
    {"hdx_tls_handshake_failures_total", "TLS handshakes that failed or timed out.", COUNTER,
     &tls_hs_failed, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_auth_failures_total", "Authentications refused, by mechanism.", COUNTER, auth_failures,
     L("mechanism", auth_names, HDX_METRIC_AUTH_COUNT), NOLABEL, NULL, 0},
    {"hdx_policy_denials_total", "Decisions of the policy engine that denied, by front end.",
     COUNTER, policy_denials, L("front", front_names, HDX_METRIC_FRONT_COUNT), NOLABEL, NULL, 0},
    {"hdx_route_deliveries_total", "Outbound route messages by outcome.", COUNTER, route_outcome,
     L("outcome", outcome_names, HDX_METRIC_ROUTE_OUTCOME_COUNT), NOLABEL, NULL, 0},
    {"hdx_route_delivery_latency_seconds",
     "From a message reported committed to the destination's acknowledgement (first "
     "attempts of messages committed while the route ran).",
     HISTOGRAM, NULL, NOLABEL, NOLABEL, &route_latency, 0},
    {"hdx_route_queued_messages",
     "Messages the route lanes hold, read from the log and not yet acknowledged or dead.", GAUGE,
     &route_queued, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_fhir_requests_total", "FHIR interactions answered, by interaction and status class.",
     COUNTER, fhir_requests, L("interaction", fhir_names, HDX_METRIC_FHIR_COUNT),
     L("code", class_names, CLASSES), NULL, 0},
    {"hdx_fhir_notifications_total",
     "FHIR Subscription events sent (websocket) or handed to a rest-hook worker.", COUNTER,
     &notifications, NOLABEL, NOLABEL, NULL, 0},
    {"hdx_fhir_notification_latency_seconds",
     "From an event's resource version written to its notification sent.", HISTOGRAM, NULL, NOLABEL,
     NOLABEL, &notify_latency, 0},
    {"hdx_http_requests_total", "HTTPS answers written, by status class.", COUNTER, http_requests,
     L("code", class_names, CLASSES), NOLABEL, NULL, 0},
    {"hdx_process_resident_memory_bytes", "Resident memory of hdxd.", PROCESS, NULL, NOLABEL,
     NOLABEL, NULL, P_RSS},
    {"hdx_process_open_fds", "Open file descriptors of hdxd.", PROCESS, NULL, NOLABEL, NOLABEL,
     NULL, P_FDS},
    {"hdx_uptime_seconds", "Seconds since hdxd started.", PROCESS, NULL, NOLABEL, NOLABEL, NULL,
     P_UPTIME},
};

/* ---------- rendering ---------- */

struct out {
    char *p;
    size_t len, cap;
    int failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !o->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) break;
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->p, cap);
        if (!p) break;
        o->p = p;
        o->cap = cap;
    }
    o->failed = 1;
}

static double process_value(enum process_value pv)
{
    if (pv == P_UPTIME) {
        int64_t s = atomic_load_explicit(&started_us, RELAXED);
        return s ? (double)(hdx_monotonic_us() - s) / 1e6 : 0;
    }
    if (pv == P_RSS) {
        unsigned long long size = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");
        if (!f) return 0;
        int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
        fclose(f);
        long page = sysconf(_SC_PAGESIZE);
        return ok && page > 0 ? (double)resident * (double)page : 0;
    }
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    unsigned long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n ? (double)(n - 1) : 0; /* not the directory's own descriptor */
}

static void render_hist(struct out *o, const struct family *f)
{
    const struct hist *h = f->h;
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nle; i++) {
        cum += atomic_load_explicit(&h->b[i], RELAXED);
        if (i < h->nle)
            put(o, "%s_bucket{le=\"%g\"} %llu\n", f->name, (double)h->le[i] / h->scale,
                (unsigned long long)cum);
        else
            put(o, "%s_bucket{le=\"+Inf\"} %llu\n", f->name, (unsigned long long)cum);
    }
    uint64_t sum = atomic_load_explicit(&h->sum, RELAXED);
    if (h->scale == 1)
        put(o, "%s_sum %llu\n", f->name, (unsigned long long)sum);
    else
        put(o, "%s_sum %.6f\n", f->name, (double)sum / h->scale);
    put(o, "%s_count %llu\n", f->name, (unsigned long long)cum);
}

static void render_value(struct out *o, const struct family *f, size_t slot)
{
    uint64_t v = atomic_load_explicit(&f->v[slot], RELAXED);
    if (f->kind == GAUGE)
        put(o, "%lld\n", (long long)(int64_t)v);
    else
        put(o, "%llu\n", (unsigned long long)v);
}

static void render_family(struct out *o, const struct family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "gauge"};
    put(o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
    if (f->kind == HISTOGRAM) {
        render_hist(o, f);
    } else if (f->kind == PROCESS) {
        put(o, "%s %.17g\n", f->name, process_value(f->pv));
    } else if (!f->l1.name) {
        put(o, "%s ", f->name);
        render_value(o, f, 0);
    } else {
        size_t n2 = f->l2.name ? f->l2.n : 1;
        for (size_t i = 0; i < f->l1.n; i++)
            for (size_t j = 0; j < n2; j++) {
                put(o, "%s{%s=\"%s\"", f->name, f->l1.name, f->l1.vals[i]);
                if (f->l2.name) put(o, ",%s=\"%s\"", f->l2.name, f->l2.vals[j]);
                put(o, "} ");
                render_value(o, f, i * n2 + j);
            }
    }
}

int hdx_metrics_render(char **out, size_t *len)
{
    struct out o = {malloc(16384), 0, 16384, 0};
    *out = NULL;
    *len = 0;
    if (!o.p) return HDX_E_NOMEM;
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        render_family(&o, &families[i]);
    if (o.failed) {
        free(o.p);
        return HDX_E_NOMEM;
    }
    *out = o.p;
    *len = o.len;
    return HDX_OK;
}

static void hist_reset(struct hist *h)
{
    for (size_t i = 0; i <= HIST_MAX; i++)
        atomic_store_explicit(&h->b[i], 0, RELAXED);
    atomic_store_explicit(&h->sum, 0, RELAXED);
}

void hdx_metrics_reset(void)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        const struct family *f = &families[i];
        if (f->h) hist_reset(f->h);
        if (!f->v) continue;
        size_t n = (f->l1.name ? f->l1.n : 1) * (f->l2.name ? f->l2.n : 1);
        for (size_t k = 0; k < n; k++)
            atomic_store_explicit(&f->v[k], 0, RELAXED);
    }
    /* the label subsets shown (ingest, rejected) leave slots render never reads */
    for (size_t k = 0; k < HDX_METRIC_PROTO_COUNT; k++) {
        atomic_store_explicit(&ingested[k], 0, RELAXED);
        atomic_store_explicit(&rejected[k], 0, RELAXED);
    }
    atomic_store_explicit(&started_us, 0, RELAXED);
}
