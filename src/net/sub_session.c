#include "net/sub_session.h"

#include <event2/buffer.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "policy/policy.h"
#include "policy/policy_load.h"
#include "policy/scope.h"
#include "store/logproof.h"

#define SUB_LINE_MAX 1024

/* The accounting of disclosures (HIPAA 164.528): per patient, what went to this subscriber
 * since the last summary; summarised into audit records every minute, when the table fills,
 * and when the subscription ends. */
#define DISCLOSURE_PERIOD_S 60
#define DISCLOSURE_SLOTS_MIN 16   /* the table grows from this (a power of two) */
#define DISCLOSURE_SLOTS_MAX 4096 /* to this: at half of it, a summary is written early */
#define POLICY_RETRY_US 1000000   /* a policy that could not be reloaded: tried again */

struct disclosure {
    uint8_t patient[HDX_BLIND_LEN];
    uint64_t first, last, count;
    int used;
};

struct sub_conn {
    struct hdx_conn *c;
    struct sub_conn *prev, *next; /* the subscribed ones: hdx_sub_ctx.active */
    struct hdx_bus_sub *sub;
    int ended; /* the subscription ended before the connection (a scope change) */
    /* The granted scope it subscribed under (policy/scope.h), NULL: none (everything); its
     * canonical text, to tell whether a committed device_scope changes it. */
    struct hdx_scope *scope;
    char scope_text[HDX_DEVICE_SCOPE_MAX + 1];
    char filter[HDX_AUDIT_VALUE_MAX + 1]; /* as audited (the audit cuts there too) */
    uint64_t delivered;
    struct disclosure *disc; /* disc_cap slots, allocated at SUB */
    size_t ndisc, disc_cap;
    uint64_t anon_first, anon_last, anon_count; /* records without a patient */
    /* Records in scope the policy refused (a consent directive), since the last summary:
     * summarised with the disclosures as one subscribe deny (count, seqs, the first reason). */
    uint64_t held_first, held_last, held_count;
    enum hdx_policy_reason held_reason;
    struct event *summary_timer;
};

static struct hdx_bus *bus_of(const struct hdx_conn *c)
{
    return ((const struct hdx_sub_ctx *)c->ctx)->bus;
}

/* ---------- the bus's sink ---------- */

static void sink_write(void *conn, const void *data, size_t len)
{
    struct hdx_conn *c = conn;
    size_t unsent = hdx_conn_unsent(c);
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
    hdx_conn_write_soon(c, unsent); /* a subscriber's latency is this write's */
}

static size_t sink_queued(void *conn)
{
    struct hdx_conn *c = conn;
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void sink_drop(void *conn, const char *reason)
{
    struct hdx_conn *c = conn;
    char line[96];
    size_t queued = sink_queued(c);
    int n = snprintf(line, sizeof(line), "BYE reason=%s\n", reason);
    evbuffer_add(bufferevent_get_output(c->bev), line, (size_t)n);
    hdx_warn("subscriber_dropped", "peer=%s sender=%s reason=%s queued=%zu", c->peer, c->principal,
             reason, queued);
    hdx_conn_close(c, 0); /* the write timeout ends it if the reader never drains */
}

static void audit_subscription(struct hdx_conn *c, const char *outcome, const char *reason,
                               uint64_t count, const char *detail)
{
    struct hdx_audit a = {.event = "subscribe",
                          .action = "subscribe",
                          .outcome = outcome,
                          .reason = reason,
                          .count = count,
                          .detail = detail};
    hdx_conn_audit(c, &a);
}

static void disclosures_flush(struct hdx_conn *c)
{
    struct sub_conn *s = c->session;
    if (!s || !s->disc) return;
    for (size_t i = 0; i < s->disc_cap && s->ndisc; i++) {
        struct disclosure *d = &s->disc[i];
        if (!d->used) continue;
        struct hdx_audit a = {.event = "disclosure",
                              .action = "subscribe",
                              .outcome = "permit",
                              .reason = "-",
                              .patient = d->patient,
                              .first_seq = d->first,
                              .last_seq = d->last,
                              .count = d->count,
                              .detail = s->filter};
        hdx_conn_audit(c, &a);
        memset(d, 0, sizeof(*d));
        s->ndisc--;
    }
    if (s->held_count) {
        struct hdx_audit a = {.event = "subscribe",
                              .action = "subscribe",
                              .outcome = "deny",
                              .reason = hdx_policy_reason_name(s->held_reason),
                              .first_seq = s->held_first,
                              .last_seq = s->held_last,
                              .count = s->held_count,
                              .detail = s->filter};
        hdx_conn_audit(c, &a);
        s->held_count = s->held_first = s->held_last = 0;
    }
    if (s->anon_count) {
        struct hdx_audit a = {.event = "disclosure",
                              .action = "subscribe",
                              .outcome = "permit",
                              .reason = "no_patient",
                              .first_seq = s->anon_first,
                              .last_seq = s->anon_last,
                              .count = s->anon_count,
                              .detail = s->filter};
        hdx_conn_audit(c, &a);
        s->anon_count = s->anon_first = s->anon_last = 0;
    }
}

static struct disclosure *disc_slot(struct disclosure *t, size_t cap, const uint8_t *patient)
{
    uint64_t h;
    memcpy(&h, patient, sizeof(h)); /* a keyed token already: its bytes are uniform */
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!t[i].used || memcmp(t[i].patient, patient, HDX_BLIND_LEN) == 0) return &t[i];
}

/* Doubles the table (up to DISCLOSURE_SLOTS_MAX); 0 when it could not. */
static int disc_grow(struct sub_conn *s)
{
    size_t cap = s->disc_cap * 2;
    if (cap > DISCLOSURE_SLOTS_MAX) return 0;
    struct disclosure *t = calloc(cap, sizeof(*t));
    if (!t) return 0;
    for (size_t i = 0; i < s->disc_cap; i++)
        if (s->disc[i].used) *disc_slot(t, cap, s->disc[i].patient) = s->disc[i];
    free(s->disc);
    s->disc = t;
    s->disc_cap = cap;
    return 1;
}

static void sink_disclosed(void *conn, const uint8_t *patient, uint64_t seq)
{
    struct hdx_conn *c = conn;
    struct sub_conn *s = c->session;
    if (!s || !s->disc) return;
    s->delivered++;
    if (!patient) {
        if (!s->anon_count) s->anon_first = seq;
        s->anon_last = seq;
        s->anon_count++;
        return;
    }
    struct disclosure *d = disc_slot(s->disc, s->disc_cap, patient);
    if (d->used) {
        d->last = seq;
        d->count++;
        return;
    }
    if (s->ndisc + 1 > s->disc_cap / 2 && !disc_grow(s))
        disclosures_flush(c); /* full: summarise now and start again */
    d = disc_slot(s->disc, s->disc_cap, patient);
    memcpy(d->patient, patient, HDX_BLIND_LEN);
    d->first = d->last = seq;
    d->count = 1;
    d->used = 1;
    s->ndisc++;
}

static void on_summary(evutil_socket_t fd, short what, void *arg)
{
    disclosures_flush(arg);
}

const struct hdx_bus_sink hdx_sub_sink = {
    .write = sink_write, .queued = sink_queued, .drop = sink_drop, .disclosed = sink_disclosed};

/* ---------- requests ---------- */

static void write_err(struct hdx_conn *c, const char *why)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "ERR %s\n", why);
    evbuffer_add(bufferevent_get_output(c->bev), line, (size_t)n);
}

/* A refused SUB: "ERR why", audited (deny, reason: the policy's reason or "refused" for a bad
 * request), logged, closed. */
static void sub_deny(struct hdx_conn *c, const char *reason, const char *why)
{
    char w[200];
    write_err(c, why);
    audit_subscription(c, "deny", reason, 0, why);
    hdx_warn("subscribe_refused", "peer=%s sender=%s reason=%s", c->peer, c->principal,
             hdx_log_str(w, sizeof(w), why));
    hdx_conn_close(c, 0);
}

static void sub_error(struct hdx_conn *c, const char *why)
{
    sub_deny(c, "refused", why);
}

/* The policy engine on the subscription as a whole (docs/POLICY.md): a SUB names no patient,
 * so for a machine role this is rule 1, the role's permission; a device reads nothing.
 * Returns 1 when permitted; else it has refused and audited. */
static int sub_permitted(struct hdx_conn *c)
{
    const struct hdx_sub_ctx *ctx = c->ctx;
    struct hdx_policy_request req = {.principal = c->principal,
                                     .role = hdx_role_parse(c->role),
                                     .action = HDX_ACT_SUBSCRIBE,
                                     .resource = HDX_RES_RECORD,
                                     .purpose = HDX_PURPOSE_TREATMENT,
                                     .now_us = hdx_now_us()};
    struct hdx_policy_decision d = {0, HDX_PR_ROLE};
    char why[96];
    if (!ctx->policy) { /* not loaded (yet): nothing is decided without it */
        sub_deny(c, "policy_unavailable", "policy unavailable");
        return 0;
    }
    hdx_policy_decide(ctx->policy, &req, &d);
    if (d.permit) return 1;
    hdx_metric_policy_denial(HDX_METRIC_FRONT_SUB);
    if (d.reason == HDX_PR_ROLE || d.reason == HDX_PR_UNKNOWN_ROLE)
        snprintf(why, sizeof(why), "role %s may not subscribe", c->role);
    else
        snprintf(why, sizeof(why), "policy: %s", hdx_policy_reason_name(d.reason));
    sub_deny(c, hdx_policy_reason_name(d.reason), why);
    return 0;
}

/* The bus asks this for every record the SUB filter matched, live and replayed (before a
 * replayed body is decrypted): the granted scope first (outside it is not a refusal, just not
 * this subscriber's), then the policy engine on that record's patient, as the HTTPS stream
 * does (a consent directive denying this recipient role or purpose). */
static int sub_admit(void *arg, const struct hdx_bus_event *ev)
{
    struct sub_conn *s = arg;
    const struct hdx_sub_ctx *ctx = s->c->ctx;
    if (s->scope && !hdx_scope_admits(s->scope, ev->sender, ev->type, ev->patient)) return 0;
    struct hdx_policy_request req = {.principal = s->c->principal,
                                     .role = hdx_role_parse(s->c->role),
                                     .action = HDX_ACT_SUBSCRIBE,
                                     .resource = HDX_RES_RECORD,
                                     .patient = ev->patient,
                                     .purpose = HDX_PURPOSE_TREATMENT,
                                     .now_us = hdx_now_us()};
    struct hdx_policy_decision d = {0, HDX_PR_UNKNOWN_ROLE};
    if (ctx->policy) hdx_policy_decide(ctx->policy, &req, &d);
    if (d.permit) return 1;
    hdx_metric_policy_denial(HDX_METRIC_FRONT_SUB);
    if (!s->held_count) {
        s->held_first = ev->seq;
        s->held_reason = d.reason;
    }
    s->held_last = ev->seq;
    s->held_count++;
    return 0;
}

/* The principal's scope from the registry into s (none: s->scope NULL). 0 when the row cannot
 * be read or is no canonical scope: the SUB is refused then, never served unscoped. */
static int load_scope(struct hdx_conn *c, struct sub_conn *s)
{
    int rc = hdx_scope_load(hdx_conn_store(c), c->principal, &s->scope, s->scope_text);
    if (rc == HDX_OK) return 1;
    hdx_error("scope_unreadable", "sender=%s err=%s", c->principal, hdx_strerror(rc));
    return 0;
}

/* Witness requests, before any SUB: "STH" -> "STH {json}", "CONSISTENCY OLD NEW" and
 * "INCLUSION SEQ" (against the newest head, for `hdx receipt check`) -> "PROOF {json}", or
 * "NO reason" (the connection stays open). Returns 1 if it was one. */
static int witness_request(struct hdx_conn *c, const char *line)
{
    char json[HDX_PROOF_JSON_MAX], why[160];
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct hdx_store *store = hdx_conn_store(c);
    struct hdx_logreq req;
    int n;
    switch (hdx_logreq_parse(line, &req)) {
    case HDX_LOGREQ_STH: {
        struct hdx_sth sth;
        n = hdx_store_sth_latest(store, &sth);
        if (n == HDX_OK) n = hdx_sth_json(&sth, json, sizeof(json));
        if (n < 0) snprintf(why, sizeof(why), "no signed tree head yet");
        evbuffer_add_printf(out, n < 0 ? "NO %s\n" : "STH %s\n", n < 0 ? why : json);
        return 1;
    }
    case HDX_LOGREQ_INCLUSION:
        n = hdx_log_inclusion_json(store, req.a, json, sizeof(json), why, sizeof(why));
        break;
    case HDX_LOGREQ_CONSISTENCY:
        n = hdx_log_consistency_json(store, req.a, req.b, json, sizeof(json), why, sizeof(why));
        break;
    default:
        return 0;
    }
    evbuffer_add_printf(out, n < 0 ? "NO %s\n" : "PROOF %s\n", n < 0 ? why : json);
    return 1;
}

static void subscribe(struct hdx_conn *c, char *line, size_t n)
{
    struct sub_conn *s = c->session;
    struct hdx_sub_ctx *ctx = c->ctx;
    if (!sub_permitted(c)) {
        free(line);
        return;
    }
    struct hdx_bus_filter f;
    uint64_t after;
    char why[128];
    int rc = n > SUB_LINE_MAX
                 ? HDX_E_TOOBIG
                 : hdx_bus_parse_request(line, n, ctx->kr, &f, &after, why, sizeof(why));
    free(line);
    if (rc != HDX_OK) {
        sub_error(c, rc == HDX_E_TOOBIG ? "request line too long" : why);
        return;
    }
    if (!load_scope(c, s)) {
        sub_deny(c, "scope_unreadable", "scope unreadable");
        return;
    }
    char scope[HDX_AUDIT_VALUE_MAX + 1] = "all";
    if (s->scope) hdx_scope_describe(s->scope, scope, sizeof(scope));
    s->c = c;
    f.admit = sub_admit;
    f.admit_arg = s;
    snprintf(s->filter, sizeof(s->filter), "after=%s %stype=%s sender=%s patient=%s scope=%s",
             after == UINT64_MAX ? "live" : "seq", f.kind == HDX_KIND_DICOM ? "kind=dicom " : "",
             f.type[0] ? f.type : "any", f.sender[0] ? f.sender : "any",
             f.has_patient ? "one" : "any", scope);
    s->disc_cap = DISCLOSURE_SLOTS_MIN;
    s->disc = calloc(s->disc_cap, sizeof(*s->disc));
    s->summary_timer = event_new(hdx_conn_base(c), -1, EV_PERSIST, on_summary, c);
    struct timeval period = {DISCLOSURE_PERIOD_S, 0};
    if (s->disc && s->summary_timer) s->sub = hdx_bus_subscribe(ctx->bus, c, &f, after);
    if (!s->sub) {
        sub_error(c, "out of memory");
        return;
    }
    char ok[64];
    int m =
        snprintf(ok, sizeof(ok), "OK last=%llu\n", (unsigned long long)hdx_bus_last_seq(ctx->bus));
    evbuffer_add(bufferevent_get_output(c->bev), ok, (size_t)m);
    /* Subscribers listen and need not speak (no read timeout), but one that stops reading
     * is closed by the write timeout rather than pinning its buffers forever. */
    struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, NULL, &wr);
    event_add(s->summary_timer, &period);
    s->next = ctx->active;
    if (ctx->active) ctx->active->prev = s;
    ctx->active = s;
    audit_subscription(c, "permit", "-", 0, s->filter);
    hdx_info("subscribed", "peer=%s sender=%s after=%s type=%s filter_patient=%d scoped=%d",
             c->peer, c->principal, after == UINT64_MAX ? "live" : "seq", f.type[0] ? "set" : "any",
             f.has_patient, s->scope != NULL);
    hdx_bus_pump(ctx->bus, s->sub);
}

static void sub_read(struct hdx_conn *c)
{
    struct sub_conn *s = c->session;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (s->sub || s->ended) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* nothing more is expected */
        return;
    }
    for (;;) {
        /* A client that sends requests without reading the answers stops being read. */
        if (hdx_conn_output_full(c)) {
            hdx_conn_pause(c, HDX_PAUSE_OUTPUT);
            return;
        }
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) {
            if (evbuffer_get_length(in) > SUB_LINE_MAX) sub_error(c, "request line too long");
            return;
        }
        if (n <= SUB_LINE_MAX && strlen(line) == n && witness_request(c, line)) {
            free(line);
            continue;
        }
        subscribe(c, line, n);
        return;
    }
}

/* ---------- session ops ---------- */

static int sub_role_allowed(const char *role)
{
    /* A device may ask for heads and proofs (hashes only, to check its receipts); SUB asks
     * the policy engine (subscribe). */
    enum hdx_role r = hdx_role_parse(role);
    return r == HDX_ROLE_DEVICE || hdx_policy_role_has(r, HDX_RES_RECORD, HDX_ACT_SUBSCRIBE);
}

static int sub_open(struct hdx_conn *c)
{
    struct sub_conn *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    c->session = s;
    struct timeval idle = {hdx_conn_conf(c)->mllp_idle_timeout_s, 0};
    struct timeval wr = {HDX_CONN_WRITE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &idle, &wr); /* until it subscribes */
    return 0;
}

static void sub_refuse(struct hdx_conn *c, const char *why)
{
    write_err(c, why);
}

static void sub_drained(struct hdx_conn *c)
{
    struct sub_conn *s = c->session;
    if (s && s->sub) hdx_bus_pump(bus_of(c), s->sub);
}

/* Ends the subscription (the connection may outlive it, closing): its disclosures and its
 * end audited (reason "-", or why it was ended), off the bus and the active list. */
static void sub_end(struct hdx_conn *c, const char *reason)
{
    struct sub_conn *s = c->session;
    struct hdx_sub_ctx *ctx = c->ctx;
    if (!s || !s->sub) return;
    disclosures_flush(c);
    audit_subscription(c, "end", reason, s->delivered, s->filter);
    hdx_bus_unsubscribe(bus_of(c), s->sub);
    s->sub = NULL;
    s->ended = 1;
    if (s->summary_timer) event_del(s->summary_timer);
    if (s->prev)
        s->prev->next = s->next;
    else if (ctx->active == s)
        ctx->active = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void sub_free(struct hdx_conn *c)
{
    struct sub_conn *s = c->session;
    if (!s) return;
    sub_end(c, "-");
    if (s->summary_timer) event_free(s->summary_timer);
    free(s->disc);
    free(s->scope);
    free(s);
    c->session = NULL;
}

/* DESIGN (scope changes): a committed device_scope that changes the scope a subscription was
 * made under ends that subscription at once ("BYE reason=scope-changed", audited as its end
 * with reason scope_changed), as revocation closes connections; the client subscribes again
 * and gets the new scope. Ending rather than re-scoping in place keeps one scope per
 * subscription, so each subscribe permit/end pair and its disclosures say exactly which
 * scope they were made under. It runs on the commit's completion, before any record committed
 * after the statement is published, so no later record goes out under the old scope. */
/* A parsed statement may hold a user's password hash and sealed secrets: wiped, then freed. */
static void admin_free(struct hdx_admin *a)
{
    sodium_memzero(a, sizeof(*a));
    free(a);
}

void hdx_sub_admin_committed(struct hdx_sub_ctx *ctx, const struct hdx_intake_item *it)
{
    struct hdx_admin *a = calloc(1, sizeof(*a));
    if (!a) { /* the subscriptions stay as they are: said loudly */
        hdx_error("subscriptions_not_checked", "type=%s reason=out_of_memory", it->type);
        return;
    }
    if (it->status != HDX_OK || hdx_admin_parse(it->body, it->body_len, a) != HDX_OK) {
        admin_free(a);
        return;
    }
    /* A machine's decision reads only consent directives (rules 2 and 4-6 otherwise concern
     * people), so only they reload the port's policy; the next record is decided with it. */
    if (a->op == HDX_ADMIN_CONSENT_DENY || a->op == HDX_ADMIN_CONSENT_REMOVE) {
        ctx->policy_stale = 1;
        (void)hdx_sub_policy_reload(ctx);
    }
    if (a->op != HDX_ADMIN_DEVICE_SCOPE) {
        admin_free(a);
        return;
    }
    size_t ended = 0;
    for (struct sub_conn *s = ctx->active, *next; s; s = next) {
        next = s->next;
        if (strcmp(s->c->principal, a->name) != 0) continue;
        if (a->has_scope == (s->scope != NULL) &&
            (!a->has_scope || strcmp(a->scope, s->scope_text) == 0))
            continue; /* the same scope again: nothing changes for it */
        static const char bye[] = "BYE reason=scope-changed\n";
        evbuffer_add(bufferevent_get_output(s->c->bev), bye, sizeof(bye) - 1);
        struct hdx_conn *c = s->c;
        sub_end(c, "scope_changed");
        hdx_conn_close(c, 0);
        ended++;
    }
    if (ended) hdx_info("subscriptions_rescoped", "sender=%s ended=%zu", a->name, ended);
    admin_free(a);
}

const struct hdx_session_ops hdx_sub_ops = {
    .port = "sub",
    .role_allowed = sub_role_allowed,
    .open = sub_open,
    .refuse = sub_refuse,
    .read = sub_read,
    .drained = sub_drained,
    .free = sub_free,
};

int hdx_sub_policy_reload(struct hdx_sub_ctx *ctx)
{
    struct hdx_policy *p = NULL;
    int rc = hdx_policy_load(ctx->ro_store, ctx->training_period_days, hdx_now_us(), &p);
    if (rc != HDX_OK) {
        /* The old policy stays (none at start: every SUB refused); a table that cannot be
         * read is a store to verify. */
        hdx_error("policy_load_failed", "port=sub err=%s", hdx_strerror(rc));
        ctx->policy_retry_us = hdx_monotonic_us() + POLICY_RETRY_US;
        return rc;
    }
    hdx_policy_free(ctx->policy);
    ctx->policy = p;
    ctx->policy_stale = 0;
    return HDX_OK;
}

void hdx_sub_tick(struct hdx_sub_ctx *ctx)
{
    if (ctx->policy_stale && hdx_monotonic_us() >= ctx->policy_retry_us)
        (void)hdx_sub_policy_reload(ctx);
}

void hdx_sub_ctx_free(struct hdx_sub_ctx *ctx)
{
    hdx_policy_free(ctx->policy);
    ctx->policy = NULL;
}
