/* front_api: the /api routes of the HTTPS port (docs/HTTP.md "The API"): records, one record,
 * the live event stream, the audit trail, break-glass. Every record disclosed passes the
 * policy engine (policy/policy.h) for the asking principal, and every request that touches
 * PHI leaves audit records (event access): one per patient disclosed (count, first and last
 * seq), one for what was withheld, and one for a refusal. A record the principal may not read
 * is answered like one that does not exist, so sequence numbers and patient ids cannot be
 * probed for what exists. */
#include <event2/event.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "auth/apikey.h"
#include "bus/bus.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "net/front_internal.h"
#include "policy/policy_load.h"
#include "policy/scope.h"
#include "proto/jsonw.h"
#include "store/record.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define SCAN_BUDGET 10000 /* records looked at per list request, disclosed or not */
#define STREAM_SUMMARY_US (60 * 1000000LL)
#define STREAM_KEEPALIVE_US (15 * 1000000LL)
#define POLICY_RETRY_US 1000000
#define KEY_FAIL_AUDIT_MAX 20 /* refused API keys audited one by one per second */

/* A machine: a certificate (a device of the registry) or a service's API key, not a person's
 * session: the principals with a granted scope (policy/scope.h, keyed by name). */
int hdx_front_is_machine(const struct asker *who)
{
    return !who->serial;
}

struct stream {
    struct stream *prev, *next;
    struct front_api *api;
    struct hdx_conn *c;
    struct hdx_bus_sub *sub;
    struct asker who;
    char route[16];
    struct tally tally;
    int64_t summary_due_us, last_write_us;
    int ended;
    /* A certificate's granted scope (policy/scope.h), NULL: none; the bus asks it for every
     * record (hdx_bus_admit_scope); its text tells a committed change (streams_check). */
    struct hdx_scope *scope;
    char scope_text[HDX_DEVICE_SCOPE_MAX + 1];
};

struct front_api {
    struct hdx_front *f;
    int64_t key_fail_window_us;
    uint64_t key_fail_count, key_fail_suppressed;
    struct hdx_policy *policy;
    int policy_stale;
    int64_t policy_retry_us;
    struct stream *streams;
};

/* ---------- policy ---------- */

static int reload_policy(struct front_api *api)
{
    struct hdx_policy *p = NULL;
    const struct hdx_conf *conf = api->f->env.conf;
    int rc =
        hdx_policy_load(api->f->env.ro_store, conf->policy_training_period_days, hdx_now_us(), &p);
    if (rc != HDX_OK) {
        /* The old policy stays; a table that cannot be read is a store to verify. */
        hdx_error("policy_load_failed", "err=%s", hdx_strerror(rc));
        api->policy_retry_us = hdx_monotonic_us() + POLICY_RETRY_US;
        return rc;
    }
    hdx_policy_free(api->policy);
    api->policy = p;
    api->policy_stale = 0;
    return HDX_OK;
}

void hdx_front_policy_changed(struct hdx_front *f, const struct hdx_admin *a)
{
    /* What a login consumed and the device registry change no policy data. */
    if (a->op == HDX_ADMIN_USER_TOTP_USED || a->op == HDX_ADMIN_USER_RECOVERY_USED ||
        a->op == HDX_ADMIN_DEVICE_ADD || a->op == HDX_ADMIN_DEVICE_REVOKE ||
        a->op == HDX_ADMIN_DEVICE_SIGNKEY || a->op == HDX_ADMIN_DEVICE_IMPORT)
        return;
    f->api->policy_stale = 1;
    (void)reload_policy(f->api);
}

void hdx_front_decide(struct front_api *api, const struct asker *who, enum hdx_action act,
                      enum hdx_resource res, const uint8_t *patient, struct hdx_policy_decision *d)
{
    struct hdx_policy_request req = {.principal = who->user,
                                     .role = who->role,
                                     .mfa = who->mfa,
                                     .action = act,
                                     .resource = res,
                                     .patient = patient,
                                     .purpose = who->purpose,
                                     .now_us = hdx_now_us()};
    if (!api->policy)
        *d = (struct hdx_policy_decision){0, HDX_PR_UNKNOWN_ROLE};
    else
        hdx_policy_decide(api->policy, &req, d);
    if (!d->permit) hdx_metric_policy_denial(HDX_METRIC_FRONT_HTTPS);
}

/* ---------- audit ---------- */

void hdx_front_audit_access(struct front_api *api, const struct hdx_conn *c,
                            const struct asker *who, const char *action, const char *outcome,
                            const char *reason, const uint8_t *patient, uint64_t first,
                            uint64_t last, uint64_t count, const char *route)
{
    char detail[128];
    snprintf(detail, sizeof(detail), "session=%s purpose=%s route=%s",
             who->session[0] ? who->session : "-", hdx_purpose_name(who->purpose), route);
    struct hdx_audit a = {.event = "access",
                          .action = action,
                          .outcome = outcome,
                          .reason = reason,
                          .principal = who->user,
                          .role = who->role_name,
                          .source = c->peer,
                          .cert = c->cert_sha256[0] ? c->cert_sha256 : "-",
                          .patient = patient,
                          .first_seq = first,
                          .last_seq = last,
                          .count = count,
                          .detail = detail};
    api->f->env.audit(api->f->env.arg, &a);
}

void hdx_front_tally_flush(struct front_api *api, const struct hdx_conn *c, const struct asker *who,
                           struct tally *t, const char *action, const char *route)
{
    for (size_t i = 0; i < t->n; i++) {
        struct tally_entry *e = &t->e[i];
        hdx_front_audit_access(
            api, c, who, action, "permit",
            e->break_glass ? hdx_policy_reason_name(HDX_PR_PERMIT_BREAK_GLASS) : "-",
            e->has_patient ? e->patient : NULL, e->first, e->last, e->count, route);
    }
    if (t->denied)
        hdx_front_audit_access(api, c, who, action, "deny", hdx_policy_reason_name(t->deny_reason),
                               NULL, 0, 0, t->denied, route);
    sodium_memzero(t, sizeof(*t));
}

/* Counts a disclosed record; 1 when the tally is full and must be flushed first. */
int hdx_front_tally_add(struct tally *t, const uint8_t *patient, uint64_t seq, int break_glass)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    int has = patient && memcmp(patient, zero, HDX_BLIND_LEN) != 0;
    for (size_t i = 0; i < t->n; i++) {
        struct tally_entry *e = &t->e[i];
        if (e->has_patient != has || (has && memcmp(e->patient, patient, HDX_BLIND_LEN))) continue;
        /* the lowest and highest seq: a FHIR search may disclose newest first */
        if (seq < e->first) e->first = seq;
        if (seq > e->last) e->last = seq;
        e->count++;
        e->break_glass |= break_glass;
        return 0;
    }
    if (t->n == TALLY_MAX) return 1;
    struct tally_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof(*e));
    if (has) memcpy(e->patient, patient, HDX_BLIND_LEN);
    e->has_patient = has;
    e->first = e->last = seq;
    e->count = 1;
    e->break_glass = break_glass;
    return 0;
}

void hdx_front_tally_deny(struct tally *t, enum hdx_policy_reason why)
{
    if (!t->denied) t->deny_reason = why;
    t->denied++;
}

/* ---------- requests ---------- */

/* A service's API key (auth/apikey.h): 1 and who, 0 not an API key, -1 refused (audited). */
static int service_asks(struct front_api *api, struct hdx_conn *c, const struct http_req *req,
                        struct asker *who)
{
    const char *h = http_header_get(req, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *key = h + 7;
    while (*key == ' ')
        key++;
    size_t len = strlen(key);
    if (len < sizeof(HDX_APIKEY_PREFIX) - 1 || memcmp(key, HDX_APIKEY_PREFIX, 5) != 0) return 0;
    char name[65] = "";
    struct hdx_user u;
    memset(&u, 0, sizeof(u));
    int ok = hdx_apikey_name(key, len, name, sizeof(name)) == HDX_OK &&
             hdx_store_user_get(api->f->env.ro_store, name, &u) == HDX_OK && !u.locked &&
             !strcmp(u.role, "integration") && hdx_apikey_verify(key, len, u.pw_hash);
    if (ok) memcpy(who->key_hash, u.pw_hash, HDX_APIKEY_HASH_LEN + 1);
    sodium_memzero(&u, sizeof(u));
    if (!ok) {
        hdx_metric_auth_failure(HDX_METRIC_AUTH_API_KEY);
        /* Recorded up to a bound per second, then counted: a flood must not fill the log. */
        int64_t now = hdx_monotonic_us();
        if (now - api->key_fail_window_us >= 1000000) {
            if (api->key_fail_suppressed) {
                char detail[48];
                snprintf(detail, sizeof(detail), "suppressed=%llu",
                         (unsigned long long)api->key_fail_suppressed);
                hdx_front_audit_auth(api->f, c, "api_key", "failure", "suppressed", "-", "-",
                                     detail);
            }
            api->key_fail_window_us = now;
            api->key_fail_count = api->key_fail_suppressed = 0;
        }
        if (api->key_fail_count++ < KEY_FAIL_AUDIT_MAX)
            hdx_front_audit_auth(api->f, c, "api_key", "failure", "invalid_key",
                                 name[0] ? name : "-", "-", "route=api");
        else
            api->key_fail_suppressed++;
        hdx_warn("api_key_refused", "peer=%s", c->peer);
        return -1;
    }
    snprintf(who->user, sizeof(who->user), "%s", name);
    snprintf(who->role_name, sizeof(who->role_name), "integration");
    snprintf(who->session, sizeof(who->session), "api-key");
    who->role = HDX_ROLE_INTEGRATION;
    who->mfa = 1; /* a machine's 256-bit key, not a person's password */
    return 1;
}

/* The asking principal: a session's user, a service's API key, or an enrolled certificate's
 * machine. 0, or the 401 in r. */
int hdx_front_asks(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                   struct hdx_http_reply *r, struct asker *who)
{
    struct hdx_front_who w;
    memset(who, 0, sizeof(*who));
    const char *bearer = http_header_get(req, "authorization");
    if (bearer && !strncasecmp(bearer, "Bearer hdxs_", 12)) {
        /* A SMART access token: for FHIR only, its client and scopes are the principal. */
        const char *tok = bearer + 7;
        const struct hdx_smart_token *t =
            f->smart_tokens && !strncmp(req->path, "/fhir", 5)
                ? hdx_smart_tokens_find(f->smart_tokens, tok, strlen(tok), hdx_now_us() / 1000000)
                : NULL;
        if (!t) {
            hdx_front_unauthorized(r, 1);
            return -1;
        }
        snprintf(who->user, sizeof(who->user), "%s", t->client);
        snprintf(who->role_name, sizeof(who->role_name), "integration");
        snprintf(who->session, sizeof(who->session), "smart");
        who->role = HDX_ROLE_INTEGRATION;
        who->mfa = 1; /* a signed assertion with a registered key */
        who->smart = t;
        who->purpose = HDX_PURPOSE_TREATMENT;
        return 0;
    }
    int svc = service_asks(f->api, c, req, who);
    int rc = svc ? HDX_OK : hdx_front_who(f, req, &w);
    if (svc < 0) {
        hdx_front_unauthorized(r, 1);
        return -1;
    }
    if (svc == 0 && rc == HDX_OK) {
        snprintf(who->user, sizeof(who->user), "%s", w.session->user);
        snprintf(who->role_name, sizeof(who->role_name), "%s", w.session->role);
        snprintf(who->session, sizeof(who->session), "%s", w.session->id);
        who->role = w.role;
        who->mfa = w.session->mfa;
        who->serial = w.session->serial;
    } else if (svc == 0 && rc == HDX_E_NOTFOUND && c->principal[0]) {
        /* A machine's certificate is its authentication; the policy knows what its role may. */
        snprintf(who->user, sizeof(who->user), "%s", c->principal);
        snprintf(who->role_name, sizeof(who->role_name), "%s", c->role);
        who->role = hdx_role_parse(c->role);
        who->mfa = 1;
    } else if (svc == 0) {
        hdx_front_unauthorized(r, rc != HDX_E_NOTFOUND);
        return -1;
    }
    char purpose[16];
    int n = http_query_get(req, "purpose", purpose, sizeof(purpose));
    int p = n > 0 ? hdx_purpose_parse(purpose) : n == -1 ? HDX_PURPOSE_TREATMENT : -1;
    if (p < 0) {
        hdx_http_error(r, 400, "bad_request",
                       "purpose must be treatment, payment, operations or research");
        return -1;
    }
    who->purpose = (enum hdx_purpose)p;
    return 0;
}

void hdx_front_deny_answer(struct hdx_http_reply *r, enum hdx_policy_reason why)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(why));
    hdx_http_error(r, 403, "forbidden", msg);
}

/* The patient query parameter as its blind token: 1 and token, 0 absent, -1 (400 in r). */
static int patient_param(struct hdx_front *f, const struct http_req *req, uint8_t *token,
                         struct hdx_http_reply *r)
{
    char id[200];
    int n = http_query_get(req, "patient", id, sizeof(id));
    if (n == -1) return 0;
    if (n <= 0 || hdx_blind(f->env.kr, "patient", id, (size_t)n, token) != HDX_OK) {
        sodium_memzero(id, sizeof(id));
        hdx_http_error(r, 400, "bad_request", "patient must be a patient identifier (PID-3)");
        return -1;
    }
    sodium_memzero(id, sizeof(id));
    return 1;
}

/* One record as a JSON object into w (proto/jsonw.h: no jansson tree on this path). A message
 * that is not UTF-8 (an 8-bit character set, MSH-18) goes as base64, byte for byte, rather
 * than altered. */
static void record_write(struct hdx_jsonw *w, const struct hdx_record *r, const uint8_t *pt,
                         size_t len)
{
    char t[32];
    hdx_format_time(r->time_us, t, sizeof(t));
    const char *kind = hdx_kind_name(r->kind);
    hdx_jsonw_raw(w, "{\"seq\":", 7);
    hdx_jsonw_u64(w, r->seq);
    hdx_jsonw_raw(w, ",\"time\":", 8);
    (void)hdx_jsonw_string(w, (const uint8_t *)t, strlen(t));
    hdx_jsonw_raw(w, ",\"kind\":", 8);
    (void)hdx_jsonw_string(w, (const uint8_t *)kind, strlen(kind));
    /* The index's sender and type are printable tokens: never refused as not UTF-8. */
    hdx_jsonw_raw(w, ",\"sender\":", 10);
    if (hdx_jsonw_string(w, (const uint8_t *)r->sender, strlen(r->sender))) w->failed = 1;
    hdx_jsonw_raw(w, ",\"type\":", 8);
    if (hdx_jsonw_string(w, (const uint8_t *)r->type, strlen(r->type))) w->failed = 1;
    hdx_jsonw_raw(w, ",\"body\":", 8);
    if (hdx_jsonw_string(w, pt, len) != 0) {
        size_t cap = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc(cap);
        if (!b64) {
            w->failed = 1;
            return;
        }
        sodium_bin2base64(b64, cap, pt, len, sodium_base64_VARIANT_ORIGINAL);
        if (w->failed) {
            free(b64);
            return;
        }
        w->len -= 6; /* body": becomes body_base64": */
        hdx_jsonw_raw(w, "body_base64\":", 13);
        (void)hdx_jsonw_string(w, (const uint8_t *)b64, strlen(b64));
        sodium_memzero(b64, cap);
        free(b64);
    }
    hdx_jsonw_raw(w, "}", 1);
}

/* w's text as the 200 answer (503 when the writer failed). */
static void answer_text(struct hdx_http_reply *r, struct hdx_jsonw *w)
{
    size_t len = 0;
    char *text = hdx_jsonw_take(w, &len);
    if (!text) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    free(r->body);
    r->status = 200;
    r->content_type = NULL;
    r->body = text;
    r->body_len = len;
}

struct list_ctx {
    struct front_api *api;
    const struct asker *who;
    const struct hdx_scope *scope; /* a machine's granted scope, NULL: none */
    struct hdx_jsonw *out;         /* '{"records":[' and the records so far */
    size_t want, got;
    uint64_t last_seen;
    struct tally *tally;
    int failed, stopped;
};

static int list_one(void *arg, const struct hdx_record *r)
{
    struct list_ctx *l = arg;
    struct hdx_policy_decision d;
    static const uint8_t zero[HDX_BLIND_LEN];
    const uint8_t *patient = memcmp(r->patient, zero, HDX_BLIND_LEN) ? r->patient : NULL;
    l->last_seen = r->seq;
    /* Outside the granted scope is outside the principal's world: skipped like a filter. */
    if (l->scope && !hdx_scope_admits(l->scope, r->sender, r->type, patient)) return 0;
    hdx_front_decide(l->api, l->who, HDX_ACT_READ, HDX_RES_RECORD, patient, &d);
    if (!d.permit) {
        hdx_front_tally_deny(l->tally, d.reason);
        return 0;
    }
    uint8_t *pt = NULL;
    size_t len = 0;
    if (hdx_record_open(r, l->api->f->env.kr, &pt, &len) != HDX_OK) {
        hdx_error("api_record_unreadable", "seq=%llu action=\"run hdx verify\"",
                  (unsigned long long)r->seq);
        l->failed = 1;
        return 1;
    }
    if (l->got) hdx_jsonw_raw(l->out, ",", 1);
    record_write(l->out, r, pt, len);
    sodium_memzero(pt, len);
    free(pt);
    if (l->out->failed) {
        l->failed = 1;
        return 1;
    }
    (void)hdx_front_tally_add(l->tally, patient, r->seq, d.reason == HDX_PR_PERMIT_BREAK_GLASS);
    l->stopped = ++l->got >= l->want || l->tally->n == TALLY_MAX;
    return l->stopped;
}

static int u64_param(const struct http_req *req, const char *key, uint64_t *out)
{
    char v[24], *end;
    int n = http_query_get(req, key, v, sizeof(v));
    if (n == -1) return 0;
    if (n <= 0 || v[0] < '0' || v[0] > '9') return -1;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || x == ULLONG_MAX) return -1;
    *out = x;
    return 1;
}

static void route_records(void *arg, struct hdx_conn *c, const struct http_req *req,
                          struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_api *api = f->api;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    uint8_t token[HDX_BLIND_LEN];
    int has_patient = patient_param(f, req, token, r);
    if (has_patient < 0) return;
    char type[HDX_TYPE_MAX + 1], since[40], sender[HDX_SENDER_MAX + 1];
    int tn = http_query_get(req, "type", type, sizeof(type));
    int sn = http_query_get(req, "since", since, sizeof(since));
    int en = http_query_get(req, "sender", sender, sizeof(sender));
    uint64_t limit = LIST_DEFAULT, after = 0;
    struct hdx_store_filter flt = {.kind = HDX_KIND_HL7V2};
    if (tn == -2 || tn == 0 || sn == -2 || sn == 0 || en == -2 || en == 0 ||
        (sn > 0 && hdx_parse_time(since, &flt.since_us) != 0) ||
        u64_param(req, "limit", &limit) < 0 || limit < 1 || limit > LIST_MAX ||
        u64_param(req, "after", &after) < 0) {
        hdx_http_error(r, 400, "bad_request",
                       "parameters: patient, type, sender, since (a time), after (a seq), limit "
                       "(1-1000), purpose");
        return;
    }
    if (tn > 0) flt.type = type;
    if (en > 0) flt.sender = sender;
    if (has_patient > 0) flt.patient = token;
    flt.from_seq = after + 1;
    /* Asking for one patient: the decision needs no record, so it is made first, and its
     * answer says nothing about whether the patient has records. */
    struct hdx_policy_decision d;
    hdx_front_decide(api, &who, HDX_ACT_READ, HDX_RES_RECORD, has_patient > 0 ? token : NULL, &d);
    if (has_patient > 0 && !d.permit) {
        hdx_front_audit_access(api, c, &who, "read", "deny", hdx_policy_reason_name(d.reason),
                               token, 0, 0, 0, "records");
        hdx_front_deny_answer(r, d.reason);
        return;
    }
    if (!hdx_policy_role_has(who.role, HDX_RES_RECORD, HDX_ACT_READ) ||
        (d.reason == HDX_PR_MFA_REQUIRED || d.reason == HDX_PR_TRAINING ||
         d.reason == HDX_PR_PURPOSE || d.reason == HDX_PR_UNKNOWN_ROLE)) {
        /* Denied whatever the patient: say so rather than answer an empty list. */
        enum hdx_policy_reason why = d.reason == HDX_PR_NO_PATIENT ? HDX_PR_ROLE : d.reason;
        hdx_front_audit_access(api, c, &who, "read", "deny", hdx_policy_reason_name(why), NULL, 0,
                               0, 0, "records");
        hdx_front_deny_answer(r, why);
        return;
    }
    struct hdx_scope *scope = NULL;
    if (hdx_front_is_machine(&who) &&
        hdx_scope_load(f->env.ro_store, who.user, &scope, NULL) != HDX_OK) {
        hdx_front_audit_access(api, c, &who, "read", "deny", "scope_unreadable", NULL, 0, 0, 0,
                               "records");
        hdx_http_error(r, 503, "unavailable", "scope unreadable");
        return;
    }
    struct tally *tally = calloc(1, sizeof(*tally));
    struct hdx_jsonw out = {0};
    hdx_jsonw_raw(&out, "{\"records\":[", 12);
    struct list_ctx l = {api, &who, scope, &out, (size_t)limit, 0, after, tally, 0, 0};
    long n = tally ? hdx_store_scan(f->env.ro_store, &flt, SCAN_BUDGET, list_one, &l) : HDX_E_NOMEM;
    if (tally) hdx_front_tally_flush(api, c, &who, tally, "read", "records");
    free(tally);
    free(scope);
    if (n < 0 || l.failed) {
        hdx_jsonw_free(&out);
        hdx_http_error(r, 503, "unavailable", "the records cannot be read now");
        return;
    }
    /* More may follow when the scan stopped early (the limit, the budget, a full tally):
     * the client asks again with after=next_after. */
    hdx_jsonw_raw(&out, "]", 1);
    if (l.stopped || n >= SCAN_BUDGET) {
        hdx_jsonw_raw(&out, ",\"next_after\":", 14);
        hdx_jsonw_u64(&out, l.last_seen);
    }
    hdx_jsonw_raw(&out, "}", 1);
    answer_text(r, &out);
}

static void route_record(void *arg, struct hdx_conn *c, const struct http_req *req,
                         struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_api *api = f->api;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    const char *s = req->path + strlen("/api/records/");
    char *end;
    unsigned long long seq = s[0] >= '1' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (!seq || *end || seq == ULLONG_MAX) {
        hdx_http_error(r, 404, "not_found", "no such record");
        return;
    }
    struct hdx_record rec;
    int rc = hdx_store_get(f->env.ro_store, seq, &rec);
    static const uint8_t zero[HDX_BLIND_LEN];
    struct hdx_policy_decision d = {0, HDX_PR_ROLE};
    const uint8_t *patient = NULL;
    struct hdx_scope *scope = NULL;
    const char *why = NULL;
    if (rc == HDX_OK && rec.kind == HDX_KIND_HL7V2) {
        patient = memcmp(rec.patient, zero, HDX_BLIND_LEN) ? rec.patient : NULL;
        hdx_front_decide(api, &who, HDX_ACT_READ, HDX_RES_RECORD, patient, &d);
        if (d.permit && hdx_front_is_machine(&who)) {
            /* Outside a machine's scope (or a scope that cannot be read): not there for it. */
            if (hdx_scope_load(f->env.ro_store, who.user, &scope, NULL) != HDX_OK)
                why = "scope_unreadable";
            else if (scope && !hdx_scope_admits(scope, rec.sender, rec.type, patient))
                why = "scope";
            if (why) d.permit = 0;
            free(scope);
        }
    }
    if (rc != HDX_OK || rec.kind != HDX_KIND_HL7V2 || !d.permit) {
        /* Not there, not a clinical record, or not for this principal: one answer. */
        if (rc == HDX_OK && rec.kind == HDX_KIND_HL7V2)
            hdx_front_audit_access(api, c, &who, "read", "deny",
                                   why ? why : hdx_policy_reason_name(d.reason), patient, seq, seq,
                                   0, "record");
        if (rc == HDX_OK) hdx_record_clear(&rec);
        if (rc != HDX_OK && rc != HDX_E_NOTFOUND)
            hdx_error("api_record_unreadable", "seq=%llu err=%s", seq, hdx_strerror(rc));
        hdx_http_error(r, 404, "not_found", "no such record");
        return;
    }
    uint8_t *pt = NULL;
    size_t len = 0;
    rc = hdx_record_open(&rec, f->env.kr, &pt, &len);
    if (rc != HDX_OK) {
        hdx_record_clear(&rec);
        hdx_error("api_record_unreadable", "seq=%llu err=%s", seq, hdx_strerror(rc));
        hdx_http_error(r, 503, "unavailable", "the record cannot be read now");
        return;
    }
    struct hdx_jsonw out = {0};
    record_write(&out, &rec, pt, len);
    sodium_memzero(pt, len);
    free(pt);
    hdx_front_audit_access(api, c, &who, "read", "permit",
                           d.reason == HDX_PR_PERMIT_BREAK_GLASS ? hdx_policy_reason_name(d.reason)
                                                                 : "-",
                           patient, seq, seq, 1, "record");
    hdx_record_clear(&rec);
    answer_text(r, &out);
}

/* ---------- the live stream (Server-Sent Events) ---------- */

static void stream_end(struct stream *st, const char *reason)
{
    if (st->ended) return;
    st->ended = 1;
    char ev[128];
    int n = snprintf(ev, sizeof(ev), "event: end\ndata: {\"reason\":\"%s\"}\n\n", reason);
    hdx_http_stream_write(st->c, ev, (size_t)n);
    hdx_info("stream_end", "peer=%s user=%s reason=%s", st->c->peer, st->who.user, reason);
    hdx_conn_close(st->c, 0);
}

static void stream_write(void *conn, const void *data, size_t len)
{
    struct stream *st = conn;
    hdx_http_stream_write(st->c, data, len);
}

static size_t stream_queued(void *conn)
{
    struct stream *st = conn;
    return hdx_http_stream_queued(st->c);
}

static void stream_drop(void *conn, const char *reason)
{
    stream_end(conn, reason);
}

static void stream_deliver(void *conn, const struct hdx_bus_event *ev)
{
    struct stream *st = conn;
    struct hdx_policy_decision d;
    if (st->ended) return;
    hdx_front_decide(st->api, &st->who, HDX_ACT_SUBSCRIBE, HDX_RES_RECORD, ev->patient, &d);
    if (!d.permit) {
        hdx_front_tally_deny(&st->tally, d.reason);
        return;
    }
    if (hdx_front_tally_add(&st->tally, ev->patient, ev->seq,
                            d.reason == HDX_PR_PERMIT_BREAK_GLASS)) {
        hdx_front_tally_flush(st->api, st->c, &st->who, &st->tally, "subscribe", st->route);
        (void)hdx_front_tally_add(&st->tally, ev->patient, ev->seq,
                                  d.reason == HDX_PR_PERMIT_BREAK_GLASS);
    }
    struct hdx_record rec = {.seq = ev->seq, .time_us = ev->time_us, .kind = ev->kind};
    snprintf(rec.sender, sizeof(rec.sender), "%s", ev->sender);
    snprintf(rec.type, sizeof(rec.type), "%s", ev->type);
    char head[64];
    struct hdx_jsonw out = {0};
    int h = snprintf(head, sizeof(head),
                     "id: %llu\nevent: record\ndata: ", (unsigned long long)ev->seq);
    hdx_jsonw_raw(&out, head, (size_t)h);
    record_write(&out, &rec, ev->body, ev->body_len); /* JSON text has no raw LF: one line */
    hdx_jsonw_raw(&out, "\n\n", 2);
    size_t n = 0;
    char *text = hdx_jsonw_take(&out, &n);
    if (text) {
        hdx_http_stream_write(st->c, text, n);
        st->last_write_us = hdx_monotonic_us();
        sodium_memzero(text, n);
        free(text);
    }
}

static const struct hdx_bus_sink stream_sink = {
    .write = stream_write, .queued = stream_queued, .drop = stream_drop, .deliver = stream_deliver};

static void stream_drained(void *arg)
{
    struct stream *st = arg;
    if (st->sub && !st->ended) hdx_bus_pump(st->api->f->env.bus, st->sub);
}

static void stream_closed(void *arg)
{
    struct stream *st = arg;
    struct front_api *api = st->api;
    if (st->sub) hdx_bus_unsubscribe(api->f->env.bus, st->sub);
    hdx_front_tally_flush(api, st->c, &st->who, &st->tally, "subscribe", st->route);
    hdx_front_audit_access(api, st->c, &st->who, "subscribe", "end", "-", NULL, 0, 0, 0, st->route);
    if (st->prev)
        st->prev->next = st->next;
    else
        api->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    free(st->scope);
    sodium_memzero(st, sizeof(*st));
    free(st);
}

static void route_stream(void *arg, struct hdx_conn *c, const struct http_req *req,
                         struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_api *api = f->api;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    struct hdx_bus_filter flt;
    memset(&flt, 0, sizeof(flt));
    int has_patient = patient_param(f, req, flt.patient, r);
    if (has_patient < 0) return;
    flt.has_patient = has_patient;
    int tn = http_query_get(req, "type", flt.type, sizeof(flt.type));
    int en = http_query_get(req, "sender", flt.sender, sizeof(flt.sender));
    uint64_t after = UINT64_MAX;
    const char *last = http_header_get(req, "last-event-id");
    int bad = tn == -2 || tn == 0 || en == -2 || en == 0;
    if (last) {
        char *end;
        unsigned long long x = last[0] >= '0' && last[0] <= '9' ? strtoull(last, &end, 10) : 0;
        if (last[0] < '0' || last[0] > '9' || *end || x == ULLONG_MAX) bad = 1;
        after = x;
    } else if (u64_param(req, "after", &after) < 0) {
        bad = 1;
    }
    if (bad) {
        hdx_http_error(
            r, 400, "bad_request",
            "parameters: patient, type, sender, purpose, after (a seq) or Last-Event-ID");
        return;
    }
    struct hdx_policy_decision d;
    hdx_front_decide(api, &who, HDX_ACT_SUBSCRIBE, HDX_RES_RECORD, has_patient ? flt.patient : NULL,
                     &d);
    if ((has_patient && !d.permit) ||
        !hdx_policy_role_has(who.role, HDX_RES_RECORD, HDX_ACT_SUBSCRIBE) ||
        d.reason == HDX_PR_MFA_REQUIRED || d.reason == HDX_PR_TRAINING ||
        d.reason == HDX_PR_PURPOSE || d.reason == HDX_PR_UNKNOWN_ROLE) {
        enum hdx_policy_reason why = d.reason == HDX_PR_NO_PATIENT ? HDX_PR_ROLE : d.reason;
        hdx_front_audit_access(api, c, &who, "subscribe", "deny", hdx_policy_reason_name(why),
                               has_patient ? flt.patient : NULL, 0, 0, 0, "stream");
        hdx_front_deny_answer(r, why);
        return;
    }
    struct stream *st = calloc(1, sizeof(*st));
    if (!st) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    /* A machine's certificate receives only its granted scope, as on the subscription port
     * (docs/SUBSCRIBE.md "Scopes"); an unreadable one refuses, never serves unscoped. */
    if (hdx_front_is_machine(&who) &&
        hdx_scope_load(f->env.ro_store, who.user, &st->scope, st->scope_text)) {
        free(st);
        hdx_front_audit_access(api, c, &who, "subscribe", "deny", "scope_unreadable", NULL, 0, 0, 0,
                               "stream");
        hdx_http_error(r, 503, "unavailable", "scope unreadable");
        return;
    }
    if (st->scope) {
        flt.admit = hdx_bus_admit_scope;
        flt.admit_arg = st->scope;
    }
    st->api = api;
    st->c = c;
    st->who = who;
    snprintf(st->route, sizeof(st->route), "stream");
    st->summary_due_us = hdx_monotonic_us() + STREAM_SUMMARY_US;
    st->last_write_us = hdx_monotonic_us();
    st->sub = hdx_bus_subscribe_sink(f->env.bus, st, &flt, after, &stream_sink);
    if (!st->sub) {
        free(st->scope);
        free(st);
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    st->next = api->streams;
    if (api->streams) api->streams->prev = st;
    api->streams = st;
    hdx_front_audit_access(api, c, &who, "subscribe", "permit", "-",
                           has_patient ? flt.patient : NULL, 0, 0, 0, "stream");
    hdx_info("stream_start", "peer=%s user=%s after=%s", c->peer, who.user,
             after == UINT64_MAX ? "live" : "seq");
    r->stream = 1;
    r->stream_drained = stream_drained;
    r->stream_closed = stream_closed;
    r->stream_arg = st;
    /* The head goes out when the handler returns; the replay starts right after it. */
    sodium_memzero(&flt, sizeof(flt));
}

/* 1 while the service's key is the one its stream was opened with and it is not locked. */
static int service_key_current(struct hdx_front *f, const struct asker *who)
{
    struct hdx_user u;
    int ok = hdx_store_user_get(f->env.ro_store, who->user, &u) == HDX_OK && !u.locked &&
             sodium_memcmp(u.pw_hash, who->key_hash, HDX_APIKEY_HASH_LEN) == 0;
    sodium_memzero(&u, sizeof(u));
    return ok;
}

/* 1 when a machine certificate's stream was opened under a scope other than today's. */
static int scope_changed(struct front_api *api, const struct stream *st)
{
    struct hdx_scope *now = NULL;
    char *text = calloc(1, HDX_DEVICE_SCOPE_MAX + 1);
    int rc = text ? hdx_scope_load(api->f->env.ro_store, st->who.user, &now, text) : HDX_E_NOMEM;
    int changed = rc != HDX_OK || !now != !st->scope || (now && strcmp(text, st->scope_text));
    free(now);
    free(text);
    return changed;
}

void hdx_front_streams_check(struct hdx_front *f)
{
    for (struct stream *st = f->api->streams; st; st = st->next) {
        if (st->ended) continue;
        if (st->who.serial && !hdx_sessions_by_serial(f->sessions, st->who.serial, hdx_now_us()))
            stream_end(st, "session_ended");
        else if (st->who.key_hash[0] && !service_key_current(f, &st->who))
            stream_end(st, "api_key_revoked");
        else if (hdx_front_is_machine(&st->who) && scope_changed(f->api, st))
            stream_end(st, "scope_changed");
    }
}

void hdx_front_api_tick(struct hdx_front *f)
{
    struct front_api *api = f->api;
    int64_t now = hdx_monotonic_us();
    if (api->policy_stale && now >= api->policy_retry_us) (void)reload_policy(api);
    for (struct stream *st = api->streams; st; st = st->next) {
        if (st->ended) continue;
        if (!st->sub) continue;
        if (now >= st->summary_due_us) {
            hdx_front_tally_flush(api, st->c, &st->who, &st->tally, "subscribe", st->route);
            st->summary_due_us = now + STREAM_SUMMARY_US;
        }
        if (now - st->last_write_us >= STREAM_KEEPALIVE_US) {
            hdx_http_stream_write(st->c, ":\n\n", 3); /* an SSE comment keeps proxies open */
            st->last_write_us = now;
        }
        hdx_bus_pump(f->env.bus, st->sub); /* the first replay, and any catch-up */
    }
}

/* ---------- the audit trail ---------- */

struct audit_ctx {
    struct front_api *api;
    json_t *out;
    size_t want, got;
    uint64_t last_seen;
    const struct hdx_audit_view *match;
    int failed;
};

static int audit_one(void *arg, const struct hdx_record *r)
{
    struct audit_ctx *a = arg;
    uint8_t *pt = NULL;
    size_t len = 0;
    struct hdx_audit_view v;
    a->last_seen = r->seq;
    if (hdx_record_open(r, a->api->f->env.kr, &pt, &len) != HDX_OK) {
        a->failed = 1;
        return 1;
    }
    int rc = hdx_audit_parse(pt, len, &v);
    sodium_memzero(pt, len);
    free(pt);
    if (rc != HDX_OK) return 0;
    const struct hdx_audit_view *m = a->match;
    if ((m->principal[0] && strcmp(m->principal, v.principal)) ||
        (m->event[0] && strcmp(m->event, v.event)) ||
        (m->action[0] && strcmp(m->action, v.action)) ||
        (m->outcome[0] && strcmp(m->outcome, v.outcome)))
        return 0;
    char t[32];
    hdx_format_time(r->time_us, t, sizeof(t));
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "seq",
        (json_int_t)r->seq, "time", t, "event", v.event, "action", v.action, "outcome", v.outcome,
        "reason", v.reason, "principal", v.principal, "role", v.role, "source", v.source, "cert",
        v.cert, "patient", v.patient, "first_seq", (json_int_t)v.first_seq, "last_seq",
        (json_int_t)v.last_seq, "count", (json_int_t)v.count, "detail", v.detail);
    if (!o || json_array_append_new(a->out, o) != 0) {
        a->failed = 1;
        return 1;
    }
    return ++a->got >= a->want;
}

static void route_audit(void *arg, struct hdx_conn *c, const struct http_req *req,
                        struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_api *api = f->api;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    struct hdx_policy_decision d;
    hdx_front_decide(api, &who, HDX_ACT_READ, HDX_RES_AUDIT, NULL, &d);
    if (!d.permit) {
        hdx_front_audit_access(api, c, &who, "read_audit", "deny", hdx_policy_reason_name(d.reason),
                               NULL, 0, 0, 0, "audit");
        hdx_front_deny_answer(r, d.reason);
        return;
    }
    struct hdx_audit_view m;
    memset(&m, 0, sizeof(m));
    uint8_t token[HDX_BLIND_LEN];
    char since[40];
    uint64_t limit = LIST_DEFAULT, after = 0;
    struct hdx_store_filter flt = {.kind = HDX_KIND_AUDIT};
    int has_patient = patient_param(f, req, token, r);
    if (has_patient < 0) return;
    int un = http_query_get(req, "user", m.principal, sizeof(m.principal));
    int en = http_query_get(req, "event", m.event, sizeof(m.event));
    int an = http_query_get(req, "action", m.action, sizeof(m.action));
    int on = http_query_get(req, "outcome", m.outcome, sizeof(m.outcome));
    int sn = http_query_get(req, "since", since, sizeof(since));
    if (un == -2 || un == 0 || en == -2 || en == 0 || an == -2 || an == 0 || on == -2 || on == 0 ||
        sn == -2 || sn == 0 || (sn > 0 && hdx_parse_time(since, &flt.since_us)) ||
        u64_param(req, "limit", &limit) < 0 || limit < 1 || limit > LIST_MAX ||
        u64_param(req, "after", &after) < 0) {
        hdx_http_error(r, 400, "bad_request",
                       "parameters: user, patient, event, action, outcome, since, after, limit");
        return;
    }
    if (has_patient > 0) flt.patient = token;
    flt.from_seq = after + 1;
    struct audit_ctx a = {api, json_array(), (size_t)limit, 0, after, &m, 0};
    long n =
        a.out ? hdx_store_scan(f->env.ro_store, &flt, SCAN_BUDGET, audit_one, &a) : HDX_E_NOMEM;
    hdx_front_audit_access(api, c, &who, "read_audit", "permit", "-",
                           has_patient > 0 ? token : NULL, 0, 0, a.got, "audit");
    if (n < 0 || a.failed) {
        json_decref(a.out);
        hdx_http_error(r, 503, "unavailable", "the audit trail cannot be read now");
        return;
    }
    json_t *o = json_pack("{s:o}", "audit", a.out);
    if (o && (a.got >= a.want || n >= SCAN_BUDGET))
        json_object_set_new(o, "next_after", json_integer((json_int_t)a.last_seen));
    hdx_http_json_value(r, 200, o);
}

/* ---------- break-glass ---------- */

struct glass {
    struct front_api *api;
    struct hdx_conn *c;
    struct asker who;
    uint8_t patient[HDX_BLIND_LEN];
    int64_t expires_us;
};

static void glass_done(void *arg, const struct hdx_intake_item *it)
{
    struct glass *g = arg;
    struct hdx_http_reply r = {0};
    if (it->status != HDX_OK) {
        hdx_http_error(&r, 503, "unavailable", "the grant could not be recorded; try again");
    } else {
        /* The grant is in the tables (the admin record's own transaction) and in the policy
         * (reloaded when it committed, before this runs). */
        hdx_warn("alert", "kind=break_glass user=%s peer=%s admin_seq=%llu", g->who.user,
                 g->c->peer, (unsigned long long)it->seq);
        hdx_front_audit_access(g->api, g->c, &g->who, "break_glass", "permit",
                               hdx_policy_reason_name(HDX_PR_PERMIT_BREAK_GLASS), g->patient,
                               it->seq, it->seq, 0, "break-glass");
        json_t *o = json_pack("{s:I, s:I, s:s}", "expires_in",
                              (json_int_t)((g->expires_us - hdx_now_us()) / 1000000), "grant_seq",
                              (json_int_t)it->seq, "review", "required");
        hdx_http_json_value(&r, 201, o);
    }
    hdx_http_finish(g->c, &r);
    sodium_memzero(g, sizeof(*g));
    free(g);
}

static void route_break_glass(void *arg, struct hdx_conn *c, const struct http_req *req,
                              struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_api *api = f->api;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    json_t *o = hdx_front_json_body(req, r);
    if (!o) return;
    json_t *p = json_object_get(o, "patient"), *j = json_object_get(o, "justification");
    const char *key;
    json_t *v;
    int bad = !json_is_string(p) || !json_is_string(j) || json_string_length(p) == 0 ||
              json_string_length(p) >= 200 || json_string_length(j) == 0 ||
              json_string_length(j) > 500;
    json_object_foreach(o, key, v) bad |= strcmp(key, "patient") && strcmp(key, "justification");
    struct glass *g = bad ? NULL : calloc(1, sizeof(*g));
    if (bad || !g ||
        hdx_blind(f->env.kr, "patient", json_string_value(p), json_string_length(p), g->patient) !=
            HDX_OK) {
        free(g);
        json_decref(o);
        hdx_http_error(r, 400, "bad_request",
                       "expected {\"patient\": PID-3, \"justification\": 1-500 characters}");
        return;
    }
    g->api = api;
    g->c = c;
    g->who = who;
    struct hdx_policy_decision d;
    hdx_front_decide(api, &who, HDX_ACT_BREAK_GLASS, HDX_RES_RECORD, g->patient, &d);
    if (!d.permit) {
        hdx_front_audit_access(api, c, &who, "break_glass", "deny",
                               hdx_policy_reason_name(d.reason), g->patient, 0, 0, 0,
                               "break-glass");
        json_decref(o);
        free(g);
        hdx_front_deny_answer(r, d.reason);
        return;
    }
    struct hdx_admin a;
    g->expires_us = hdx_now_us() + (int64_t)f->env.conf->policy_break_glass_minutes * 60000000;
    int rc = hdx_admin_break_glass(who.user, g->patient, g->expires_us, json_string_value(j), &a);
    json_decref(o);
    if (rc != HDX_OK) {
        free(g);
        hdx_http_error(r, 400, "bad_request",
                       "the justification must be printable text on one line");
        return;
    }
    rc = hdx_front_admin_submit(f, &a, who.user, glass_done, g);
    sodium_memzero(&a, sizeof(a));
    if (rc != HDX_OK) {
        free(g);
        hdx_http_error(r, 503, "unavailable", "cannot record the grant now");
        return;
    }
    r->deferred = 1;
}

/* ---------- set-up ---------- */

int hdx_front_api_init(struct hdx_front *f, struct hdx_http *h)
{
    struct front_api *api = calloc(1, sizeof(*api));
    if (!api) return HDX_E_NOMEM;
    api->f = f;
    f->api = api;
    int rc = reload_policy(api);
    if (rc != HDX_OK) return rc;
    static const struct {
        const char *method, *path;
        hdx_http_handler fn;
    } routes[] = {{"GET", "/api/records", route_records},
                  {"GET", "/api/records/", route_record},
                  {"GET", "/api/stream", route_stream},
                  {"GET", "/api/audit", route_audit},
                  {"POST", "/api/break-glass", route_break_glass}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct hdx_http_route rt = {routes[i].method, routes[i].path, routes[i].fn, f};
        if ((rc = hdx_http_route_add(h, &rt)) != HDX_OK) return rc;
    }
    return HDX_OK;
}

void hdx_front_api_free(struct hdx_front *f)
{
    if (!f->api) return;
    /* Streams went with their connections (hdx_net_free runs first). */
    hdx_policy_free(f->api->policy);
    free(f->api);
    f->api = NULL;
}
