/* front_fhir: FHIR R4 at /fhir on the HTTPS port (docs/FHIR.md). The same principals,
 * policy engine and access audit as the /api routes (front_api.c): a resource is a clinical
 * record of its patient, read or written only when the policy permits it for the asking
 * principal, and a resource the principal may not see is answered exactly like one that does
 * not exist (404), by id, by version, by search, by _history and by _include.
 * Writes: every create, update and delete is one record in the commit pipeline (kind FHIR,
 * fhir/resource.h); its answer waits until the record is durable AND in the FHIR index
 * (fhir/index.h), so that what a client was told exists can be read at once. Versions are
 * assigned here, on the network thread, the only writer: a table of the writes still in
 * flight keeps If-Match checks and version numbers right while they are, and conditional
 * creates of a type run one after the other, so that eight identical ones make one
 * resource.
 * Thread: the network thread. */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "auth/smart_scope.h"
#include "auth/smart_token.h"
#include "audit/audit.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "fhir/index.h"
#include "fhir/resource.h"
#include "fhir/search.h"
#include "fhir/subscription.h"
#include "fhir/v2map.h"
#include "fhir/validate.h"
#include "net/front_internal.h"
#include "policy/scope.h"
#include "store/logproof.h"
#include "store/record.h"

#define FHIR_CT "application/fhir+json; charset=utf-8"
#define COUNT_DEFAULT HDX_FHIR_COUNT_DEFAULT
#define COUNT_MAX HDX_FHIR_COUNT_MAX
#define SEARCH_BUDGET 10000 /* rows looked at per search, disclosed or not */
#define PENDING_MAX 4096    /* writes in flight */
#define INCLUDE_MAX 100

/* A write whose answer waits: for durability (on_done), then for the index. */
struct fhir_write {
    struct fhir_write *next;
    struct front_fhir *ff;
    struct hdx_conn *c;
    struct asker who;
    char type[HDX_FHIR_TYPE_MAX + 1], id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    int status;   /* the answer's: 201, 200 or 204 */
    int deleting; /* a tombstone */
    int conditional;
    uint8_t patient[HDX_BLIND_LEN];
    int has_patient;
    char *body; /* the stored resource, answered as it is */
    size_t body_len;
    uint64_t seq; /* once durable */
    char last_modified[40];
    int metric; /* enum hdx_metric_fhir_interaction of the answer */
    /* A Bundle (transaction or batch): the versions it writes, and the answer prepared */
    struct txn_part *parts;
    size_t nparts;
    char *answer;
    size_t answer_len;
    /* Its GET entries, answered once its writes are indexed (so that they see them), into
     * answer_js; the SMART token's scopes they are checked against (a copy: the token may
     * end before). */
    struct bundle_get *gets;
    size_t ngets;
    json_t *answer_js;
    struct hdx_smart_token *smart;
    /* A vital sign's ORU^R01 for HL7 v2 subscribers and routes: stored once the resource is
     * durable, and the answer waits for it too (so what was acknowledged reaches them). */
    struct hdx_intake_item *oru;
};

struct txn_part {
    char type[HDX_FHIR_TYPE_MAX + 1], id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    int deleting, has_patient;
    uint8_t patient[HDX_BLIND_LEN];
};

/* A Bundle's GET entry: request.url as the request it names. */
struct bundle_get {
    size_t index;                            /* in the answer's entries */
    char *url;                               /* as sent: relative or under the base, a query */
    char *if_none_match, *if_modified_since; /* NULL: none */
};

/* Writes in flight per resource: their newest version. */
struct pending {
    char type[HDX_FHIR_TYPE_MAX + 1], id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    unsigned inflight;
};

/* A conditional create waiting for the one before it (same type) to finish. */
struct cond_wait {
    struct cond_wait *next;
    struct hdx_conn *c;
    struct http_req *req; /* a copy: the original belongs to the session */
    int bundle;           /* a Bundle with ifNoneExist entries, not a POST /fhir/T */
};

struct front_fhir {
    struct hdx_front *f;
    struct hdx_fhir_index *ix;
    struct hdx_keyctx *kc;
    int notify_fd;
    struct event *notify_ev;
    struct fhir_write *waiting; /* durable, waiting for the index */
    struct pending *pend;
    size_t npend, pend_cap;
    int cond_busy; /* a conditional create is between its search and its answer */
    struct cond_wait *cond_head, *cond_tail;
    char base_url[160];
    char token_url[200];
    char *capability; /* the CapabilityStatement, compact JSON */
    size_t capability_len;
    /* The last patient token resolved to its Patient (patient_of_token), while the index is
     * at the same position: every row of a patient's search asks for the same one. */
    struct {
        int valid;
        uint64_t through;
        uint8_t tok[HDX_BLIND_LEN];
        char id[HDX_FHIR_ID_MAX + 1];
    } last_patient;
};

static const char *const supported[] = {"Patient",   "Observation", "Device",  "DiagnosticReport",
                                        "Encounter", "Provenance",  "Consent", "Subscription"};

static int type_writable(const char *t)
{
    for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++)
        if (!strcmp(t, supported[i])) return 1;
    return 0;
}

static int type_readable(const char *t)
{
    return type_writable(t);
}

/* ---------- answers ---------- */

/* Compact JSON in plain malloc'd memory (jansson's own allocator is front.c's wiping one). */
static char *dump_plain(const json_t *v, size_t *len)
{
    size_t n = v ? json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_REAL_PRECISION(15)) : 0;
    char *s = n ? malloc(n + 1) : NULL;
    if (!s || json_dumpb(v, s, n, JSON_COMPACT | JSON_REAL_PRECISION(15)) != n) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

static void answer_json(struct hdx_http_reply *r, int status, json_t *v)
{
    hdx_http_json_value(r, status, v);
    if (r->status == status) r->content_type = FHIR_CT;
}

static void outcome(struct hdx_http_reply *r, int status, const char *code, const char *diag,
                    const char *expr)
{
    json_t *o = hdx_fhir_outcome(code, diag, expr);
    if (!o) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    answer_json(r, status, o);
}

static void not_found(struct hdx_http_reply *r, const char *type, const char *id)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "%s/%s is not known", type, id);
    outcome(r, 404, "not-found", msg, NULL);
}

static void add_header(struct hdx_http_reply *r, const char *name, const char *value)
{
    size_t n = strlen(r->extra);
    snprintf(r->extra + n, sizeof(r->extra) - n, "%s: %s\r\n", name, value);
}

static void version_headers(struct hdx_http_reply *r, uint32_t version, int64_t updated_us)
{
    char etag[24], lm[48];
    snprintf(etag, sizeof(etag), "W/\"%u\"", version);
    add_header(r, "ETag", etag);
    time_t t = (time_t)(updated_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    add_header(r, "Last-Modified", lm);
}

/* ---------- reading versions back ---------- */

/* The Patient filed under a patient token, for a v2 view's subject: its id into out. */
static int patient_of_token(struct front_fhir *ff, const uint8_t *tok, char *out, size_t cap);

/* The record a row points at, decrypted (*pt malloc'd: the caller wipes and frees it). */
static int open_row(struct front_fhir *ff, const struct hdx_fhir_row *row, struct hdx_record *rec,
                    uint8_t **pt, size_t *len)
{
    memset(rec, 0, sizeof(*rec));
    *pt = NULL;
    *len = 0;
    int rc = hdx_store_get(ff->f->env.ro_store, row->seq, rec);
    if (rc == HDX_OK) rc = hdx_record_open(rec, ff->f->env.kr, pt, len);
    return rc;
}

/* Wipes and frees what open_row gave; the read's outcome (logged when it failed): rc, or
 * HDX_E_INTEGRITY when the record opened but produced nothing. */
static int close_row(const struct hdx_fhir_row *row, struct hdx_record *rec, uint8_t *pt,
                     size_t len, int rc, int produced)
{
    if (pt) {
        sodium_memzero(pt, len);
        free(pt);
    }
    hdx_record_clear(rec);
    int err = rc != HDX_OK ? rc : produced ? HDX_OK : HDX_E_INTEGRITY;
    if (err != HDX_OK)
        hdx_error("fhir_read_failed", "seq=%llu err=%s", (unsigned long long)row->seq,
                  hdx_strerror(err));
    return err;
}

/* The resource in an opened record (new reference), or NULL. */
static json_t *row_resource(struct front_fhir *ff, const struct hdx_fhir_row *row,
                            const struct hdx_record *rec, const uint8_t *pt, size_t len)
{
    json_t *v = NULL, *out = NULL;
    if (rec->kind == HDX_KIND_HL7V2) {
        char pid[HDX_FHIR_ID_MAX + 1], ref[HDX_FHIR_ID_MAX + 16];
        struct hdx_v2map_in in = {
            .sender = rec->sender, .seq = rec->seq, .patient_ref = NULL, .only = row->part};
        if (hdx_record_has_patient(rec) &&
            patient_of_token(ff, rec->patient, pid, sizeof(pid)) == HDX_OK) {
            snprintf(ref, sizeof(ref), "Patient/%s", pid);
            in.patient_ref = ref;
        }
        char why[128];
        if (hdx_v2map_observations(pt, len, &in, &v, why, sizeof(why)) != HDX_OK) v = NULL;
        out = json_incref(json_array_get(v, 0)); /* the row's one (or the first) */
        if (out) {
            /* the view's version: the message's, for ever */
            char upd[40];
            hdx_fhir_instant(rec->time_us, upd, sizeof(upd));
            json_object_set_new(out, "meta",
                                json_pack("{s:s, s:s}", "versionId", "1", "lastUpdated", upd));
        }
    } else {
        v = json_loadb((const char *)pt, len, 0, NULL);
        if (row->part)
            out = json_incref(json_object_get(
                json_array_get(json_object_get(v, "entry"), row->part - 1), "resource"));
        else
            out = json_incref(v);
    }
    json_decref(v);
    return out;
}

/* The resource a row points at (new reference), or NULL (*err set). */
static json_t *load_row(struct front_fhir *ff, const struct hdx_fhir_row *row, int *err)
{
    struct hdx_record rec;
    uint8_t *pt = NULL;
    size_t len = 0;
    json_t *out = NULL;
    int rc = open_row(ff, row, &rec, &pt, &len);
    if (rc == HDX_OK) out = row_resource(ff, row, &rec, pt, len);
    *err = close_row(row, &rec, pt, len, rc, out != NULL);
    return out;
}

/* The resource a row points at as the compact JSON text it is answered in (malloc'd, *len),
 * or NULL (*err set). A FHIR record that is one resource holds exactly that text
 * (submit_version), so it is sent as it was stored, without parsing and dumping it again. */
static char *load_row_text(struct front_fhir *ff, const struct hdx_fhir_row *row, size_t *len,
                           int *err)
{
    struct hdx_record rec;
    uint8_t *pt = NULL;
    size_t n = 0;
    char *text = NULL;
    *len = 0;
    int rc = open_row(ff, row, &rec, &pt, &n);
    if (rc == HDX_OK && rec.kind == HDX_KIND_FHIR && !row->part) {
        text = (char *)pt; /* hdx_record_open ends it with a NUL */
        *len = n;
        pt = NULL;
    } else if (rc == HDX_OK) {
        json_t *res = row_resource(ff, row, &rec, pt, n);
        text = res ? dump_plain(res, len) : NULL;
        json_decref(res);
    }
    *err = close_row(row, &rec, pt, n, rc, text != NULL);
    return text;
}

static int first_patient(void *ctx, const struct hdx_fhir_row *row)
{
    snprintf(ctx, HDX_FHIR_ID_MAX + 1, "%s", row->id);
    return 1;
}

static int patient_of_token(struct front_fhir *ff, const uint8_t *tok, char *out, size_t cap)
{
    /* read before the query: an index that moves on meanwhile only makes the entry unused */
    uint64_t through = hdx_fhir_index_through(ff->ix);
    if (ff->last_patient.valid && ff->last_patient.through == through &&
        !memcmp(ff->last_patient.tok, tok, HDX_BLIND_LEN)) {
        snprintf(out, cap, "%s", ff->last_patient.id);
        return HDX_OK;
    }
    char id[HDX_FHIR_ID_MAX + 1] = "";
    struct hdx_fhir_query q = {.type = "Patient", .patient = tok};
    long n = hdx_fhir_index_query(ff->ix, &q, 1, first_patient, id);
    if (n <= 0 || !id[0]) return HDX_E_NOTFOUND;
    ff->last_patient.valid = 1;
    ff->last_patient.through = through;
    memcpy(ff->last_patient.tok, tok, HDX_BLIND_LEN);
    snprintf(ff->last_patient.id, sizeof(ff->last_patient.id), "%s", id);
    snprintf(out, cap, "%s", id);
    return HDX_OK;
}

/* May who read this row? Audited by the caller (a tally or one record). */
static int may_read(struct front_fhir *ff, const struct asker *who, const struct hdx_fhir_row *row,
                    struct hdx_policy_decision *d)
{
    if (!strcmp(row->type, "Subscription")) {
        /* its owner's alone: its channel may hold the receiver's credentials */
        int err;
        struct hdx_fhir_row cur = *row;
        if (row->deleted && row->version > 1) cur.version = row->version - 1;
        json_t *res = NULL;
        if (!row->deleted)
            res = load_row(ff, row, &err);
        else if (hdx_fhir_index_get(ff->ix, row->type, row->id, cur.version, &cur) == HDX_OK)
            res = load_row(ff, &cur, &err);
        int mine = res && hdx_front_sub_owns(ff->f, who, res);
        json_decref(res);
        if (!mine) {
            *d = (struct hdx_policy_decision){0, HDX_PR_ROLE};
            return 0;
        }
    }
    hdx_front_decide(ff->f->api, who, HDX_ACT_READ, HDX_RES_RECORD,
                     row->has_patient ? row->patient : NULL, d);
    return d->permit;
}

json_t *hdx_front_fhir_load(struct hdx_front *f, const struct hdx_fhir_row *row, int *err)
{
    return load_row(f->fhir, row, err);
}

const char *hdx_front_fhir_base(struct hdx_front *f)
{
    return f->fhir->base_url;
}

char *hdx_front_fhir_dump(const json_t *v, size_t *len)
{
    return dump_plain(v, len);
}

void hdx_front_fhir_outcome(struct hdx_http_reply *r, int status, const char *code,
                            const char *diag, const char *expr)
{
    outcome(r, status, code, diag, expr);
}

void hdx_front_fhir_answer(struct hdx_http_reply *r, int status, json_t *v)
{
    answer_json(r, status, v);
}

/* A SMART client's token must cover the interaction (R4 type, SMART v2 letter): 1, or 0 when
 * it does not. Other principals have no SMART scopes: the policy alone decides for them. */
static int smart_covers(const struct asker *who, const char *type, char interaction)
{
    return !who->smart || hdx_smart_scope_allows(&who->smart->scopes, "system", type, interaction);
}

/* ---------- the audit before the answer ---------- */

/* Every audit record a FHIR request makes is durable before its answer goes (BALP events were
 * lost on shutdown where they waited in memory: HAPI #4787). While a handler or an answer is
 * composed, the front's audit hook is this one: it submits the record itself and counts it;
 * the answer is held until the last one is durable (batches complete in seq order, so the
 * earlier ones are too). A record that cannot be made durable turns the answer into a 503:
 * nothing is disclosed that is not audited. */
struct hdx_audit_gate {
    struct hdx_front *f;
    struct hdx_conn *c;
    void (*fail)(struct hdx_http_reply *r);
    unsigned pending;
    int armed, failed;
    struct hdx_http_reply reply;
};

static struct hdx_audit_gate *gate_now; /* the network thread's; set only inside begin/end */
static void (*gate_saved)(void *arg, const struct hdx_audit *a);

static void gate_finish(struct hdx_audit_gate *g)
{
    if (g->failed) {
        free(g->reply.body);
        memset(&g->reply, 0, sizeof(g->reply));
        g->fail(&g->reply);
    }
    hdx_http_finish(g->c, &g->reply);
    free(g->reply.body);
    free(g);
}

static void gate_item_done(void *arg, const struct hdx_intake_item *it)
{
    struct hdx_audit_gate *g = arg;
    if (it->status != HDX_OK) g->failed = 1;
    if (--g->pending) return;
    if (g->armed)
        gate_finish(g);
    else
        free(g);
}

static void gated_audit(void *arg, const struct hdx_audit *a)
{
    struct hdx_audit_gate *g = gate_now;
    struct hdx_intake_item *it = hdx_audit_item_new(a);
    if (!it) {
        hdx_error("audit_failed", "reason=out_of_memory event=%s", a->event ? a->event : "-");
        g->failed = 1;
        return;
    }
    it->on_done = gate_item_done;
    it->done_arg = g;
    g->pending++;
    g->f->env.submit(arg, it);
}

struct hdx_audit_gate *hdx_front_gate_begin(struct hdx_front *f, struct hdx_conn *c,
                                            void (*fail)(struct hdx_http_reply *r))
{
    struct hdx_audit_gate *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->f = f;
    g->c = c;
    g->fail = fail;
    gate_now = g;
    gate_saved = f->env.audit;
    f->env.audit = gated_audit;
    return g;
}

void hdx_front_gate_end(struct hdx_audit_gate *g, struct hdx_http_reply *r)
{
    if (!g) return;
    g->f->env.audit = gate_saved;
    gate_now = NULL;
    if (r->deferred || (!g->pending && !g->failed)) {
        if (!g->pending) free(g);
        return; /* a deferred one's records complete on their own */
    }
    if (!g->pending) { /* an audit record could not even be made */
        g->reply = *r;
        memset(r, 0, sizeof(*r));
        r->deferred = 1;
        gate_finish(g);
        return;
    }
    g->reply = *r;
    memset(r, 0, sizeof(*r));
    r->deferred = 1;
    g->armed = 1;
}

void hdx_front_gate_end_finish(struct hdx_audit_gate *g, struct hdx_conn *c,
                               struct hdx_http_reply *r)
{
    if (!g) {
        hdx_http_finish(c, r);
        free(r->body);
        return;
    }
    g->f->env.audit = gate_saved;
    gate_now = NULL;
    g->reply = *r;
    memset(r, 0, sizeof(*r));
    if (!g->pending) {
        gate_finish(g);
        return;
    }
    g->armed = 1;
}

static void fhir_gate_fail(struct hdx_http_reply *r)
{
    outcome(r, 503, "transient", "the access could not be audited; nothing is disclosed", NULL);
}

static struct hdx_audit_gate *gate_begin(struct front_fhir *ff, struct hdx_conn *c)
{
    return hdx_front_gate_begin(ff->f, c, fhir_gate_fail);
}

/* ---------- pending writes ---------- */

static struct pending *pending_find(struct front_fhir *ff, const char *type, const char *id)
{
    for (size_t i = 0; i < ff->npend; i++)
        if (!strcmp(ff->pend[i].type, type) && !strcmp(ff->pend[i].id, id)) return &ff->pend[i];
    return NULL;
}

static int pending_add(struct front_fhir *ff, const char *type, const char *id, uint32_t version)
{
    struct pending *p = pending_find(ff, type, id);
    if (!p) {
        if (ff->npend == PENDING_MAX) return HDX_E_TOOBIG;
        if (ff->npend == ff->pend_cap) {
            size_t cap = ff->pend_cap ? ff->pend_cap * 2 : 64;
            struct pending *n = realloc(ff->pend, cap * sizeof(*n));
            if (!n) return HDX_E_NOMEM;
            ff->pend = n;
            ff->pend_cap = cap;
        }
        p = &ff->pend[ff->npend++];
        memset(p, 0, sizeof(*p));
        snprintf(p->type, sizeof(p->type), "%s", type);
        snprintf(p->id, sizeof(p->id), "%s", id);
    }
    p->version = version;
    p->inflight++;
    return HDX_OK;
}

static void pending_done(struct front_fhir *ff, const char *type, const char *id)
{
    struct pending *p = pending_find(ff, type, id);
    if (!p || --p->inflight) return;
    *p = ff->pend[--ff->npend];
}

/* The newest version of a resource, the writes in flight included: 0 none; *deleted and
 * *row (when it is in the index) set. */
static uint32_t newest_version(struct front_fhir *ff, const char *type, const char *id,
                               struct hdx_fhir_row *row, int *found, int *deleted, int *err)
{
    *found = 0;
    *deleted = 0;
    *err = HDX_OK;
    int rc = hdx_fhir_index_get(ff->ix, type, id, 0, row);
    uint32_t v = 0;
    if (rc == HDX_OK) {
        *found = 1;
        *deleted = row->deleted;
        v = row->version;
    } else if (rc != HDX_E_NOTFOUND) {
        *err = rc;
    }
    struct pending *p = pending_find(ff, type, id);
    if (p && p->version > v) {
        v = p->version;
        *deleted = 0; /* the pending write decides; a pending delete says so itself */
    }
    return v;
}

/* ---------- writing ---------- */

static void cond_next(struct front_fhir *ff);
struct fhir_path;
static void fhir_dispatch(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                          const struct asker *whop, const struct fhir_path *pp,
                          struct hdx_http_reply *r);
static void do_bundle(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, int queued, struct hdx_http_reply *r);

static void bundle_gets_free(struct bundle_get *g, size_t n)
{
    for (size_t i = 0; g && i < n; i++) {
        free(g[i].url);
        free(g[i].if_none_match);
        free(g[i].if_modified_since);
    }
    free(g);
}

static void write_free(struct fhir_write *w)
{
    if (!w) return;
    hdx_intake_item_free(w->oru);
    free(w->parts);
    bundle_gets_free(w->gets, w->ngets);
    json_decref(w->answer_js);
    if (w->smart) {
        sodium_memzero(w->smart, sizeof(*w->smart));
        free(w->smart);
    }
    if (w->answer) {
        sodium_memzero(w->answer, w->answer_len);
        free(w->answer);
    }
    if (w->body) {
        sodium_memzero(w->body, w->body_len);
        free(w->body);
    }
    sodium_memzero(w, sizeof(*w));
    free(w);
}

static void bundle_gets_run(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                            json_t *answer, const struct bundle_get *gets, size_t n);

static void bundle_answer(struct fhir_write *w)
{
    struct front_fhir *ff = w->ff;
    struct hdx_http_reply r = {0};
    struct hdx_audit_gate *g = gate_begin(ff, w->c);
    if (w->ngets) { /* now that its writes are indexed */
        struct asker who = w->who;
        who.smart = w->smart;
        bundle_gets_run(ff, w->c, &who, w->answer_js, w->gets, w->ngets);
        w->answer = dump_plain(w->answer_js, &w->answer_len);
    }
    if (w->answer) {
        r.status = 200;
        r.content_type = FHIR_CT;
        r.body = w->answer;
        r.body_len = w->answer_len;
        w->answer = NULL;
    } else {
        outcome(&r, 500, "exception", "the Bundle is stored, but its answer could not be made",
                NULL);
    }
    for (size_t i = 0; i < w->nparts; i++) {
        struct txn_part *p = &w->parts[i];
        hdx_front_audit_access(ff->f->api, w->c, &w->who,
                               p->deleting       ? "delete"
                               : p->version == 1 ? "create"
                                                 : "update",
                               "permit", "-", p->has_patient ? p->patient : NULL, w->seq, w->seq, 1,
                               "fhir");
        pending_done(ff, p->type, p->id);
    }
    hdx_metric_fhir((enum hdx_metric_fhir_interaction)w->metric, r.status);
    hdx_front_gate_end_finish(g, w->c, &r);
    if (w->conditional) {
        ff->cond_busy = 0;
        cond_next(ff);
    }
    write_free(w);
}

static void write_answer(struct fhir_write *w)
{
    struct front_fhir *ff = w->ff;
    struct hdx_http_reply r = {0};
    if (w->parts) {
        bundle_answer(w);
        return;
    }
    if (w->status == 204) {
        r.status = 204;
        r.content_type = FHIR_CT;
        char etag[24];
        snprintf(etag, sizeof(etag), "W/\"%u\"", w->version);
        add_header(&r, "ETag", etag);
    } else {
        r.status = w->status;
        r.content_type = FHIR_CT;
        r.body = w->body;
        r.body_len = w->body_len;
        w->body = NULL;
        char loc[sizeof(ff->base_url) + 2 * HDX_FHIR_ID_MAX + 32];
        snprintf(loc, sizeof(loc), "%s/%s/%s/_history/%u", ff->base_url, w->type, w->id,
                 w->version);
        add_header(&r, "Location", loc);
        char etag[24];
        snprintf(etag, sizeof(etag), "W/\"%u\"", w->version);
        add_header(&r, "ETag", etag);
    }
    struct hdx_audit_gate *g = gate_begin(ff, w->c);
    hdx_front_audit_access(ff->f->api, w->c, &w->who,
                           w->deleting        ? "delete"
                           : w->status == 201 ? "create"
                                              : "update",
                           "permit", "-", w->has_patient ? w->patient : NULL, w->seq, w->seq, 1,
                           "fhir");
    pending_done(ff, w->type, w->id);
    hdx_metric_fhir(w->deleting        ? HDX_METRIC_FHIR_DELETE
                    : w->status == 201 ? HDX_METRIC_FHIR_CREATE
                                       : HDX_METRIC_FHIR_UPDATE,
                    r.status);
    hdx_front_gate_end_finish(g, w->c, &r);
    if (w->conditional) {
        ff->cond_busy = 0;
        cond_next(ff);
    }
    if (!strcmp(w->type, "Subscription")) hdx_front_sub_changed(ff->f);
    write_free(w);
}

static void release_indexed(struct front_fhir *ff)
{
    uint64_t through = hdx_fhir_index_through(ff->ix);
    struct fhir_write **pp = &ff->waiting;
    while (*pp) {
        struct fhir_write *w = *pp;
        if (w->seq <= through) {
            *pp = w->next;
            write_answer(w);
        } else {
            pp = &w->next;
        }
    }
}

static void oru_done(void *arg, const struct hdx_intake_item *it);

static void write_done(void *arg, const struct hdx_intake_item *it)
{
    struct fhir_write *w = arg;
    struct front_fhir *ff = w->ff;
    if (it->status != HDX_OK) {
        hdx_error("fhir_write_failed", "type=%s err=%s", w->type, hdx_strerror(it->status));
        struct hdx_http_reply r = {0};
        outcome(&r, 503, "transient", "the resource could not be stored; nothing was kept", NULL);
        pending_done(ff, w->type, w->id);
        hdx_http_finish(w->c, &r);
        free(r.body);
        if (w->conditional) {
            ff->cond_busy = 0;
            cond_next(ff);
        }
        write_free(w);
        return;
    }
    if (w->oru) { /* the resource is durable: now its ORU^R01 */
        struct hdx_intake_item *oru = w->oru;
        w->oru = NULL;
        w->seq = it->seq;
        oru->on_done = oru_done;
        oru->done_arg = w;
        ff->f->env.submit(ff->f->env.arg, oru);
        return;
    }
    if (!w->seq) w->seq = it->seq;
    w->next = ff->waiting;
    ff->waiting = w;
    release_indexed(ff);
}

static void oru_done(void *arg, const struct hdx_intake_item *it)
{
    struct fhir_write *w = arg;
    if (it->status != HDX_OK)
        /* The resource itself is durable and answered; the subscribers' copy is what failed. */
        hdx_error("fhir_oru_failed", "type=%s err=%s", w->type, hdx_strerror(it->status));
    w->next = w->ff->waiting;
    w->ff->waiting = w;
    release_indexed(w->ff);
}

static void on_indexed(evutil_socket_t fd, short what, void *arg)
{
    struct front_fhir *ff = arg;
    uint64_t n;
    if (read(ff->notify_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_read_failed", "errno=%d", errno);
    release_indexed(ff);
    hdx_front_sub_indexed(ff->f);
}

static void notify_indexed(void *arg)
{
    struct front_fhir *ff = arg;
    uint64_t one = 1;
    if (write(ff->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        abort(); /* the answers to writes would never go */
}

/* Submits one version: its record's body is res as it will be answered. */
static int submit_version(struct front_fhir *ff, struct fhir_write *w, json_t *res,
                          const char *record_type)
{
    w->body = dump_plain(res, &w->body_len);
    if (!w->body) return HDX_E_NOMEM;
    struct hdx_intake_item *it = hdx_intake_item_new((const uint8_t *)w->body, w->body_len);
    if (!it) return HDX_E_NOMEM;
    int rc = pending_add(ff, w->type, w->id, w->version);
    if (rc != HDX_OK) {
        hdx_intake_item_free(it);
        return rc;
    }
    it->kind = HDX_KIND_FHIR;
    snprintf(it->sender, sizeof(it->sender), "%s", w->who.user);
    snprintf(it->type, sizeof(it->type), "%s", record_type);
    if (w->has_patient) memcpy(it->patient, w->patient, HDX_BLIND_LEN);
    it->blinded = 1; /* the patient token is known; no duplicate detection */
    it->on_done = write_done;
    it->done_arg = w;
    ff->f->env.submit(ff->f->env.arg, it);
    return HDX_OK;
}

/* ---------- requests: paths ---------- */

struct fhir_path {
    char type[HDX_FHIR_TYPE_MAX + 1];
    char id[HDX_FHIR_ID_MAX + 1];
    int history; /* .../_history */
    uint32_t vid;
    int search;  /* .../_search */
    int proof;   /* .../$proof: the inclusion proof of the version's record */
    char op[24]; /* Subscription/ID/$status, $events, $get-ws-binding-token */
    int n;       /* segments after /fhir */
};

/* /fhir, /fhir/T, /fhir/T/ID, /fhir/T/ID/_history, /fhir/T/ID/_history/V, /fhir/T/_history,
 * /fhir/T/_search. 0, or -1 when the path is none of them. */
static int path_parse(const char *path, struct fhir_path *p)
{
    memset(p, 0, sizeof(*p));
    if (strncmp(path, "/fhir", 5)) return -1;
    const char *s = path + 5;
    char seg[5][80];
    int n = 0;
    while (*s == '/' && s[1]) {
        s++;
        const char *e = strchr(s, '/');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (n == 5 || l == 0 || l >= sizeof(seg[0])) return -1;
        memcpy(seg[n], s, l);
        seg[n][l] = '\0';
        n++;
        s += l;
    }
    if (*s && strcmp(s, "/")) return -1;
    if (n >= 3 && !strcmp(seg[n - 1], "$proof")) {
        p->proof = 1;
        n--;
    } else if (n == 3 && (!strcmp(seg[2], "$status") || !strcmp(seg[2], "$events") ||
                          !strcmp(seg[2], "$get-ws-binding-token"))) {
        snprintf(p->op, sizeof(p->op), "%.23s", seg[2]);
        n--;
    }
    p->n = n;
    if (n == 0) return 0;
    if (strlen(seg[0]) > HDX_FHIR_TYPE_MAX) return -1;
    snprintf(p->type, sizeof(p->type), "%s", seg[0]);
    if (n == 1) return 0;
    if (!strcmp(seg[1], "_history")) {
        p->history = 1;
        return n == 2 ? 0 : -1;
    }
    if (!strcmp(seg[1], "_search")) {
        p->search = 1;
        return n == 2 ? 0 : -1;
    }
    if (!hdx_fhir_id_valid(seg[1])) return -1;
    memcpy(p->id, seg[1], strlen(seg[1]) + 1); /* an id: at most 64 bytes */
    if (n == 2) return 0;
    if (strcmp(seg[2], "_history") || (p->proof && n != 4)) return -1;
    p->history = 1;
    if (n == 3) return 0;
    char *end;
    unsigned long v = strtoul(seg[3], &end, 10);
    if (*end || !v || v > UINT32_MAX) return -1;
    p->vid = (uint32_t)v;
    return 0;
}

static int fhir_content_type(const struct http_req *req)
{
    const char *ct = http_header_get(req, "content-type");
    if (!ct) return 0;
    size_t l = strcspn(ct, ";");
    while (l && ct[l - 1] == ' ')
        l--;
    return (l == 21 && !strncasecmp(ct, "application/fhir+json", 21)) ||
           (l == 16 && !strncasecmp(ct, "application/json", 16));
}

/* The body as a resource of the expected type, validated: the JSON (new reference), or NULL
 * with the answer in r. */
static json_t *read_resource(const struct http_req *req, const char *expect,
                             struct hdx_http_reply *r)
{
    if (!fhir_content_type(req)) {
        outcome(r, 415, "not-supported", "the body must be application/fhir+json", NULL);
        return NULL;
    }
    char why[160], path[256];
    json_t *res = NULL;
    int rc = hdx_fhir_parse(req->body, req->body_len, &res, why, sizeof(why));
    if (rc == HDX_E_TOOBIG) {
        outcome(r, 413, "too-costly", why, NULL);
        return NULL;
    }
    if (rc != HDX_OK) {
        outcome(r, 400, "structure", why, NULL);
        return NULL;
    }
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    if (!type || (expect && strcmp(type, expect))) {
        char msg[128];
        snprintf(msg, sizeof(msg), "resourceType must be %s", expect ? expect : "given");
        json_decref(res);
        outcome(r, 400, "invalid", msg, "resourceType");
        return NULL;
    }
    path[0] = '\0';
    if (hdx_fhir_validate(res, path, sizeof(path), why, sizeof(why)) != HDX_OK) {
        json_decref(res);
        outcome(r, 400, "invalid", why, path[0] ? path : NULL);
        return NULL;
    }
    return res;
}

/* The patient a resource to be written is filed under: 0 and *has/tok, or -1 with the answer
 * in r (a reference to a patient that does not exist or that who may not see: 422, the same
 * for both). */
static int write_patient(struct front_fhir *ff, const struct asker *who, json_t *res,
                         const json_t *local, int *has, uint8_t *tok, struct hdx_http_reply *r)
{
    *has = 0;
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    if (!strcmp(type, "Patient")) {
        char key[300];
        hdx_fhir_patient_key(res, key, sizeof(key));
        int rc = hdx_keyctx_blind(ff->kc, "patient", key, strlen(key), tok);
        sodium_memzero(key, sizeof(key));
        if (rc != HDX_OK) {
            outcome(r, 503, "transient", "the patient cannot be keyed now", NULL);
            return -1;
        }
        *has = 1;
        return 0;
    }
    char pid[HDX_FHIR_ID_MAX + 1];
    int ref = hdx_fhir_patient_ref(res, pid, sizeof(pid));
    const char *expr = !strcmp(type, "Consent") || !strcmp(type, "Device") ? "patient" : "subject";
    char where[64];
    snprintf(where, sizeof(where), "%s.%s", type, expr);
    if (ref < 0) {
        outcome(r, 422, "processing", "a patient is referred to as Patient/ID", where);
        return -1;
    }
    if (ref == 0) return 0;
    /* a Patient the same transaction creates */
    const char *hex = json_string_value(json_object_get(local, pid));
    if (hex && hdx_unhex(hex, tok, HDX_BLIND_LEN) == 0) {
        *has = 1;
        return 0;
    }
    struct hdx_fhir_row row;
    struct hdx_policy_decision d;
    if (hdx_fhir_index_get(ff->ix, "Patient", pid, 0, &row) != HDX_OK || row.deleted ||
        !row.has_patient || !may_read(ff, who, &row, &d)) {
        outcome(r, 422, "processing", "the referenced Patient does not exist", where);
        return -1;
    }
    *has = 1;
    memcpy(tok, row.patient, HDX_BLIND_LEN);
    return 0;
}

static void set_meta(json_t *res, uint32_t version, char *updated, size_t cap)
{
    hdx_fhir_instant(hdx_now_us(), updated, cap);
    char v[16];
    snprintf(v, sizeof(v), "%u", version);
    json_t *meta = json_object_get(res, "meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(res, "meta", meta);
    }
    json_object_set_new(meta, "versionId", json_string(v));
    json_object_set_new(meta, "lastUpdated", json_string(updated));
}

/* 1 when an Observation is in the vital-signs category. */
static int is_vital(const json_t *obs)
{
    size_t i, j;
    json_t *cat, *coding;
    json_array_foreach(json_object_get(obs, "category"), i, cat)
    {
        json_array_foreach(json_object_get(cat, "coding"), j, coding)
        {
            const char *code = json_string_value(json_object_get(coding, "code"));
            if (code && !strcmp(code, "vital-signs")) return 1;
        }
    }
    return 0;
}

/* The ORU^R01 of a created vital-sign Observation (fhir/v2map.h), as an intake item, or NULL
 * when it is none or cannot be mapped (then only FHIR clients see it: logged). PID-3 is the
 * Patient's identifier as hdx files it, so the message has the resource's patient token. */
static struct hdx_intake_item *vital_oru(struct front_fhir *ff, const json_t *obs,
                                         const uint8_t *patient)
{
    char pid[HDX_FHIR_ID_MAX + 1];
    struct hdx_fhir_row row;
    int err;
    if (!is_vital(obs) || hdx_fhir_patient_ref(obs, pid, sizeof(pid)) != 1 ||
        hdx_fhir_index_get(ff->ix, "Patient", pid, 0, &row) != HDX_OK ||
        memcmp(row.patient, patient, HDX_BLIND_LEN))
        return NULL;
    json_t *pat = load_row(ff, &row, &err);
    if (!pat) return NULL;
    char key[200], ctl[80], why[128];
    hdx_fhir_patient_key(pat, key, sizeof(key));
    json_t *first = json_array_get(json_object_get(pat, "identifier"), 0);
    const char *authority = json_string_value(json_object_get(first, "system"));
    snprintf(ctl, sizeof(ctl), "fhir-%s", json_string_value(json_object_get(obs, "id")));
    struct hdx_v2map_out o = {.control_id = ctl,
                              .patient_mrn = key,
                              .patient_authority = authority,
                              .now_us = hdx_now_us(),
                              .sending_app = "HDX-FHIR"};
    char *msg = NULL;
    size_t len = 0;
    int rc = hdx_v2map_oru(obs, &o, &msg, &len, why, sizeof(why));
    json_decref(pat);
    struct hdx_intake_item *it = rc == HDX_OK ? hdx_intake_item_new((uint8_t *)msg, len) : NULL;
    if (msg) {
        sodium_memzero(msg, len);
        free(msg);
    }
    if (!it) {
        sodium_memzero(key, sizeof(key));
        if (rc != HDX_OK) hdx_warn("fhir_oru_unmapped", "reason=\"%s\"", why);
        return NULL;
    }
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", HDX_V2MAP_SENDER);
    snprintf(it->type, sizeof(it->type), "ORU^R01");
    snprintf(it->control_id, sizeof(it->control_id), "%s", ctl);
    snprintf(it->patient_id, sizeof(it->patient_id), "%s", key);
    sodium_memzero(key, sizeof(key));
    return it;
}

/* Writes res as version of type/id; the answer is deferred. 0, or the answer in r. */
static void write_version(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                          json_t *res, const char *type, const char *id, uint32_t version,
                          int status, int deleting, int conditional, struct hdx_http_reply *r)
{
    struct fhir_write *w = calloc(1, sizeof(*w));
    if (!w) {
        outcome(r, 503, "transient", "out of memory", NULL);
        return;
    }
    w->ff = ff;
    w->c = c;
    w->who = *who;
    w->who.smart = NULL; /* the token may end before the answer */
    snprintf(w->type, sizeof(w->type), "%s", type);
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->version = version;
    w->status = status;
    w->deleting = deleting;
    w->conditional = conditional;
    if (!strcmp(type, "Subscription") && !deleting) {
        json_t *prior = NULL;
        struct hdx_fhir_row row;
        int err;
        if (version > 1 && hdx_fhir_index_get(ff->ix, type, id, 0, &row) == HDX_OK && !row.deleted)
            prior = load_row(ff, &row, &err);
        int bad = (version > 1 && !prior) ||
                  hdx_front_sub_prepare(ff->f, who, res, prior, &w->has_patient, w->patient, r);
        if (version > 1 && !prior)
            outcome(r, 503, "transient", "the resource cannot be read now", NULL);
        json_decref(prior);
        if (bad) {
            write_free(w);
            return;
        }
    } else if (!deleting && write_patient(ff, who, res, NULL, &w->has_patient, w->patient, r)) {
        write_free(w);
        return;
    }
    if (deleting) {
        /* a tombstone keeps the patient of the version it ends */
        struct hdx_fhir_row row;
        if (hdx_fhir_index_get(ff->ix, type, id, 0, &row) == HDX_OK && row.has_patient) {
            w->has_patient = 1;
            memcpy(w->patient, row.patient, HDX_BLIND_LEN);
        }
    }
    struct hdx_policy_decision d = {1, HDX_PR_PERMIT};
    /* a Subscription's own decision (subscribe, its filter's patient) and its owner's were made
     * by hdx_front_sub_prepare and may_read */
    if (strcmp(type, "Subscription") != 0)
        hdx_front_decide(ff->f->api, who, HDX_ACT_WRITE, HDX_RES_RECORD,
                         w->has_patient ? w->patient : NULL, &d);
    if (!d.permit) {
        hdx_front_audit_access(ff->f->api, c, who, deleting ? "delete" : "write", "deny",
                               hdx_policy_reason_name(d.reason), w->has_patient ? w->patient : NULL,
                               0, 0, 0, "fhir");
        char msg[96];
        snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(d.reason));
        outcome(r, 403, "forbidden", msg, NULL);
        write_free(w);
        return;
    }
    json_object_set_new(res, "id", json_string(id));
    set_meta(res, version, w->last_modified, sizeof(w->last_modified));
    if (!deleting && version == 1 && w->has_patient && !strcmp(type, "Observation"))
        w->oru = vital_oru(ff, res, w->patient);
    char rtype[HDX_TYPE_MAX + 1];
    snprintf(rtype, sizeof(rtype), "%s%s", type, deleting ? HDX_FHIR_TOMBSTONE : "");
    int rc = submit_version(ff, w, res, rtype);
    if (rc != HDX_OK) {
        outcome(r, 503, "transient",
                rc == HDX_E_TOOBIG ? "too many writes in flight" : "out of memory", NULL);
        write_free(w);
        return;
    }
    r->deferred = 1;
}

/* ---------- search ---------- */

struct search {
    struct front_fhir *ff;
    const struct asker *who;
    struct hdx_conn *c;
    struct tally *tally;
    json_t *entries;
    size_t offset, count, skipped, total, looked;
    int summary_count, include_subject;
    json_t *included; /* ids already included */
    int failed;
};

static void entry_add(struct search *s, json_t *res, const char *mode)
{
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    char url[sizeof(s->ff->base_url) + HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 4];
    snprintf(url, sizeof(url), "%s/%s/%s", s->ff->base_url, type ? type : "", id ? id : "");
    json_array_append_new(s->entries, json_pack("{s:s, s:o, s:{s:s}}", "fullUrl", url, "resource",
                                                res, "search", "mode", mode));
}

static void include_subject(struct search *s, json_t *res)
{
    char pid[HDX_FHIR_ID_MAX + 1];
    if (!smart_covers(s->who, "Patient", 'r') || hdx_fhir_patient_ref(res, pid, sizeof(pid)) != 1 ||
        json_object_get(s->included, pid) || json_object_size(s->included) >= INCLUDE_MAX)
        return;
    struct hdx_fhir_row row;
    struct hdx_policy_decision d;
    if (hdx_fhir_index_get(s->ff->ix, "Patient", pid, 0, &row) != HDX_OK || row.deleted) return;
    if (!may_read(s->ff, s->who, &row, &d)) {
        hdx_front_tally_deny(s->tally, d.reason);
        return;
    }
    int err;
    json_t *p = load_row(s->ff, &row, &err);
    if (!p) return;
    json_object_set_new(s->included, pid, json_true());
    if (hdx_front_tally_add(s->tally, row.patient, row.seq, d.reason == HDX_PR_PERMIT_BREAK_GLASS))
        hdx_front_tally_flush(s->ff->f->api, s->c, s->who, s->tally, "read", "fhir");
    entry_add(s, p, "include");
}

static int search_one(void *ctx, const struct hdx_fhir_row *row)
{
    struct search *s = ctx;
    struct hdx_policy_decision d;
    s->looked++;
    if (!may_read(s->ff, s->who, row, &d)) {
        hdx_front_tally_deny(s->tally, d.reason);
        return s->looked >= SEARCH_BUDGET;
    }
    s->total++;
    if (s->summary_count || s->skipped < s->offset) {
        s->skipped += !s->summary_count;
        return s->looked >= SEARCH_BUDGET;
    }
    if (json_array_size(s->entries) >= s->count + (s->include_subject ? INCLUDE_MAX : 0) ||
        s->total > s->offset + s->count)
        return s->looked >= SEARCH_BUDGET;
    int err;
    json_t *res = load_row(s->ff, row, &err);
    if (!res) {
        s->failed = 1;
        return 1;
    }
    if (hdx_front_tally_add(s->tally, row->has_patient ? row->patient : NULL, row->seq,
                            d.reason == HDX_PR_PERMIT_BREAK_GLASS))
        hdx_front_tally_flush(s->ff->f->api, s->c, s->who, s->tally, "read", "fhir");
    if (s->include_subject) include_subject(s, res);
    entry_add(s, res, "match");
    return s->looked >= SEARCH_BUDGET;
}

/* The patient a search names: 1 and tok, 0 none named, -1 a bad value (answer in r). A
 * Patient that does not exist matches nothing: *none. */
static int patient_param(struct front_fhir *ff, const char *value, uint8_t *tok, int *none)
{
    const char *id = !strncmp(value, "Patient/", 8) ? value + 8 : value;
    if (!hdx_fhir_id_valid(id)) return -1;
    struct hdx_fhir_row row;
    if (hdx_fhir_index_get(ff->ix, "Patient", id, 0, &row) != HDX_OK || row.deleted ||
        !row.has_patient) {
        *none = 1;
        return 0;
    }
    memcpy(tok, row.patient, HDX_BLIND_LEN);
    return 1;
}

static void bundle_link(json_t *links, const char *rel, const char *url)
{
    json_array_append_new(links, json_pack("{s:s, s:s}", "relation", rel, "url", url));
}

/* The next page's link: the same query with _count and _offset replaced. Left out when it
 * does not fit (a query near the URL limit), rather than sent cut. */
/* The query with _count and the next page's place: _offset, or with after non-zero the
 * keyset cursor _after (the last log seq the page covered, which reaches any depth) and
 * what is left of an _offset. */
static void next_link(struct front_fhir *ff, const char *path, const char *query, size_t count,
                      size_t offset, uint64_t after, json_t *links)
{
    char next[sizeof(ff->base_url) + 1300];
    int k = snprintf(next, sizeof(next), "%s/%s?", ff->base_url, path);
    for (const char *qs = query; *qs && k > 0 && (size_t)k < sizeof(next);) {
        const char *amp = strchr(qs, '&');
        size_t l = amp ? (size_t)(amp - qs) : strlen(qs);
        if (strncmp(qs, "_offset=", 8) && strncmp(qs, "_count=", 7) && strncmp(qs, "_after=", 7))
            k += snprintf(next + k, sizeof(next) - (size_t)k, "%.*s&", (int)l, qs);
        qs += l + (amp ? 1 : 0);
    }
    if (k > 0 && (size_t)k < sizeof(next))
        k += snprintf(next + k, sizeof(next) - (size_t)k, "_count=%zu", count);
    if (k > 0 && (size_t)k < sizeof(next) && after)
        k +=
            snprintf(next + k, sizeof(next) - (size_t)k, "&_after=%llu", (unsigned long long)after);
    if (k > 0 && (size_t)k < sizeof(next) && (offset || !after))
        k += snprintf(next + k, sizeof(next) - (size_t)k, "&_offset=%zu", offset);
    if (k > 0 && (size_t)k < sizeof(next)) bundle_link(links, "next", next);
}

static void do_search(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, const char *type, const char *query,
                      struct hdx_http_reply *r)
{
    struct hdx_fhir_search *sp = calloc(1, sizeof(*sp));
    struct tally *tally = calloc(1, sizeof(*tally));
    struct hdx_fhir_query *q = sp ? &sp->q : NULL;
    int none = 0;
    char bad[128] = "";
    if (!sp || !tally) {
        outcome(r, 503, "transient", "out of memory", NULL);
        goto out;
    }
    int prc = hdx_fhir_search_parse(type, query, ff->kc, sp, bad, sizeof(bad));
    if (prc != HDX_OK) {
        if (prc == HDX_E_INVAL)
            outcome(r, 400, "not-supported", bad, NULL);
        else
            outcome(r, 503, "transient", "the search cannot be keyed now", NULL);
        goto out;
    }
    if (sp->patient_id[0]) {
        struct hdx_fhir_row prow;
        /* a deleted Patient's tombstone keeps its token: what refers to it is still found */
        if (hdx_fhir_index_get(ff->ix, "Patient", sp->patient_id, 0, &prow) != HDX_OK ||
            !prow.has_patient) {
            none = 1; /* a Patient that does not exist matches nothing */
        } else {
            memcpy(sp->patient_tok, prow.patient, HDX_BLIND_LEN);
            q->patient = sp->patient_tok;
        }
    }
    size_t count = sp->count, offset = sp->offset;
    int summary_count = sp->summary_count, include_subject = sp->include_subject;
    /* Asking about one patient: decided first, like /api/records; the answer says nothing of
     * whether the patient has resources. */
    struct hdx_policy_decision d;
    hdx_front_decide(ff->f->api, who, HDX_ACT_READ, HDX_RES_RECORD, q->patient, &d);
    if (!hdx_policy_role_has(who->role, HDX_RES_RECORD, HDX_ACT_READ) ||
        d.reason == HDX_PR_MFA_REQUIRED || d.reason == HDX_PR_TRAINING ||
        d.reason == HDX_PR_PURPOSE || d.reason == HDX_PR_UNKNOWN_ROLE) {
        enum hdx_policy_reason why = d.reason == HDX_PR_NO_PATIENT ? HDX_PR_ROLE : d.reason;
        hdx_front_audit_access(ff->f->api, c, who, "search", "deny", hdx_policy_reason_name(why),
                               NULL, 0, 0, 0, "fhir");
        char msg[96];
        snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(why));
        outcome(r, 403, "forbidden", msg, NULL);
        goto out;
    }
    struct search s = {.ff = ff,
                       .who = who,
                       .c = c,
                       .tally = tally,
                       .entries = json_array(),
                       .offset = offset,
                       .count = count,
                       .summary_count = summary_count,
                       .include_subject = include_subject,
                       .included = json_object()};
    long n = none ? 0 : hdx_fhir_index_query(ff->ix, q, 0, search_one, &s);
    hdx_front_tally_flush(ff->f->api, c, who, tally, "read", "fhir");
    if (n < 0 || s.failed || !s.entries) {
        json_decref(s.entries);
        json_decref(s.included);
        outcome(r, 503, "transient", "the search cannot be answered now", NULL);
        goto out;
    }
    json_decref(s.included);
    json_t *bundle =
        json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "searchset", "link");
    json_t *links = json_object_get(bundle, "link");
    char self[sizeof(ff->base_url) + 1200];
    snprintf(self, sizeof(self), "%s/%s%s%s", ff->base_url, type, query[0] ? "?" : "", query);
    bundle_link(links, "self", self);
    int complete = s.looked < SEARCH_BUDGET;
    if (complete) json_object_set_new(bundle, "total", json_integer((json_int_t)s.total));
    if (!summary_count && (s.total > offset + count || !complete)) {
        /* the same query, the next page: the parameters again with the offset moved */
        next_link(ff, type, query, count, offset + count, 0, links);
    }
    if (summary_count)
        json_decref(s.entries);
    else
        json_object_set_new(bundle, "entry", s.entries);
    answer_json(r, 200, bundle);
out:
    if (sp) sodium_memzero(sp, sizeof(*sp));
    free(sp);
    free(tally);
}

/* POST Type/_search: the parameters in the URL and in a form body (R4 3.1.1.0.4). */
static void post_search(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                        const struct asker *who, const char *type, struct hdx_http_reply *r)
{
    const char *ct = http_header_get(req, "content-type");
    if (req->body_len && (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0)) {
        outcome(r, 415, "not-supported", "a search body is application/x-www-form-urlencoded",
                NULL);
        return;
    }
    size_t ql = strlen(req->query);
    if (req->body_len > 4096 || memchr(req->body, '\0', req->body_len)) {
        outcome(r, 400, "invalid", "the search body is too long or holds a NUL", NULL);
        return;
    }
    char *q = malloc(ql + req->body_len + 2);
    if (!q) {
        outcome(r, 503, "transient", "out of memory", NULL);
        return;
    }
    memcpy(q, req->query, ql);
    size_t n = ql;
    if (ql && req->body_len) q[n++] = '&';
    memcpy(q + n, req->body, req->body_len);
    n += req->body_len;
    while (n && (q[n - 1] == '\n' || q[n - 1] == '\r'))
        n--;
    q[n] = '\0';
    do_search(ff, c, req, who, type, q, r);
    sodium_memzero(q, n);
    free(q);
}

/* GET T/ID/$proof, T/ID/_history/V/$proof: the RFC 9162 inclusion proof of the record that
 * holds the version (docs/FHIR.md "Proofs"), as `hdx proof inclusion` prints it, for
 * `hdx verify-proof` with the log's public key. */
static void do_proof(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                     const struct fhir_path *p, struct hdx_http_reply *r)
{
    struct hdx_fhir_row row;
    struct hdx_policy_decision d;
    int rc = hdx_fhir_index_get(ff->ix, p->type, p->id, p->vid, &row);
    if (rc != HDX_OK || !may_read(ff, who, &row, &d)) {
        if (rc == HDX_OK)
            hdx_front_audit_access(
                ff->f->api, c, who, "read", "deny", hdx_policy_reason_name(d.reason),
                row.has_patient ? row.patient : NULL, row.seq, row.seq, 1, "fhir");
        not_found(r, p->type, p->id);
        return;
    }
    char *json = malloc(HDX_PROOF_JSON_MAX), why[160];
    int n = json ? hdx_log_inclusion_json(ff->f->env.ro_store, row.seq, json, HDX_PROOF_JSON_MAX,
                                          why, sizeof(why))
                 : HDX_E_NOMEM;
    if (n < 0) {
        free(json);
        /* the newest signed head comes within a second of the commit */
        outcome(r, 503, "transient", "no signed tree head covers the record yet; ask again", NULL);
        add_header(r, "Retry-After", "1");
        return;
    }
    hdx_front_audit_access(ff->f->api, c, who, "proof", "permit", "-",
                           row.has_patient ? row.patient : NULL, row.seq, row.seq, 1, "fhir");
    r->status = 200;
    r->content_type = "application/json";
    r->body = json;
    r->body_len = (size_t)n;
    char v[96];
    snprintf(v, sizeof(v), "seq=%llu; part=%u; version=%u", (unsigned long long)row.seq, row.part,
             row.version);
    add_header(r, "X-Hdx-Record", v);
}

/* ---------- interactions ---------- */

static void do_read(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                    const struct fhir_path *p, struct hdx_http_reply *r)
{
    struct hdx_fhir_row row;
    int rc = hdx_fhir_index_get(ff->ix, p->type, p->id, p->vid, &row);
    if (rc == HDX_E_NOTFOUND) {
        not_found(r, p->type, p->id);
        return;
    }
    if (rc != HDX_OK) {
        outcome(r, 503, "transient", "the resource cannot be read now", NULL);
        return;
    }
    struct hdx_policy_decision d;
    if (!may_read(ff, who, &row, &d)) {
        hdx_front_audit_access(ff->f->api, c, who, "read", "deny", hdx_policy_reason_name(d.reason),
                               row.has_patient ? row.patient : NULL, row.seq, row.seq, 1, "fhir");
        not_found(r, p->type, p->id);
        return;
    }
    if (row.deleted) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s/%s was deleted", p->type, p->id);
        outcome(r, 410, "deleted", msg, NULL);
        version_headers(r, row.version, row.updated_us);
        return;
    }
    int err;
    size_t len;
    char *text = load_row_text(ff, &row, &len, &err);
    if (!text) {
        outcome(r, 503, "transient", "the resource cannot be read now", NULL);
        return;
    }
    hdx_front_audit_access(ff->f->api, c, who, "read", "permit",
                           d.reason == HDX_PR_PERMIT_BREAK_GLASS
                               ? hdx_policy_reason_name(HDX_PR_PERMIT_BREAK_GLASS)
                               : "-",
                           row.has_patient ? row.patient : NULL, row.seq, row.seq, 1, "fhir");
    free(r->body);
    r->status = 200;
    r->content_type = FHIR_CT;
    r->body = text;
    r->body_len = len;
    version_headers(r, row.version, row.updated_us);
}

static int history_one(void *ctx, const struct hdx_fhir_row *row)
{
    struct search *s = ctx;
    struct hdx_policy_decision d;
    s->looked++;
    if (!may_read(s->ff, s->who, row, &d)) {
        hdx_front_tally_deny(s->tally, d.reason);
        return s->looked >= SEARCH_BUDGET;
    }
    s->total++;
    if (s->skipped < s->offset) {
        s->skipped++;
        return s->looked >= SEARCH_BUDGET;
    }
    if (json_array_size(s->entries) >= s->count) return s->looked >= SEARCH_BUDGET;
    char full[sizeof(s->ff->base_url) + HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 32];
    char url[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 2];
    snprintf(full, sizeof(full), "%s/%s/%s", s->ff->base_url, row->type, row->id);
    /* request.url as the client sent it: relative, a create to the type */
    if (!row->deleted && row->version == 1)
        snprintf(url, sizeof(url), "%s", row->type);
    else
        snprintf(url, sizeof(url), "%s/%s", row->type, row->id);
    json_t *e = json_pack("{s:s}", "fullUrl", full);
    if (row->deleted) {
        json_object_set_new(e, "request", json_pack("{s:s, s:s}", "method", "DELETE", "url", url));
    } else {
        int err;
        json_t *res = load_row(s->ff, row, &err);
        if (!res) {
            json_decref(e);
            s->failed = 1;
            return 1;
        }
        json_object_set_new(e, "resource", res);
        json_object_set_new(
            e, "request",
            json_pack("{s:s, s:s}", "method", row->version == 1 ? "POST" : "PUT", "url", url));
    }
    char st[16];
    snprintf(st, sizeof(st), "%d", row->deleted ? 204 : row->version == 1 ? 201 : 200);
    json_object_set_new(e, "response", json_pack("{s:s}", "status", st));
    json_array_append_new(s->entries, e);
    if (hdx_front_tally_add(s->tally, row->has_patient ? row->patient : NULL, row->seq,
                            d.reason == HDX_PR_PERMIT_BREAK_GLASS))
        hdx_front_tally_flush(s->ff->f->api, s->c, s->who, s->tally, "read", "fhir");
    return s->looked >= SEARCH_BUDGET;
}

static void do_history(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                       const struct asker *who, const struct fhir_path *p, struct hdx_http_reply *r)
{
    struct hdx_fhir_query q = {.type = p->type, .id = p->id[0] ? p->id : NULL, .history = 1};
    char v[64];
    size_t count = COUNT_DEFAULT;
    int n = http_query_get(req, "_since", v, sizeof(v));
    int64_t hi;
    if (n == -2 || n == 0 || (n > 0 && hdx_fhir_time_range(v, &q.since_us, &hi))) {
        outcome(r, 400, "invalid", "_since must be an instant", NULL);
        return;
    }
    size_t offset = 0;
    n = http_query_get(req, "_count", v, sizeof(v));
    if (n > 0) {
        char *end;
        count = strtoul(v, &end, 10);
        if (*end || count > COUNT_MAX) n = -2;
    }
    int m = http_query_get(req, "_offset", v, sizeof(v));
    if (m > 0) {
        char *end;
        offset = strtoul(v, &end, 10);
        if (*end || offset > 1000000) m = -2;
    }
    if (n == -2 || n == 0 || m == -2 || m == 0) {
        outcome(r, 400, "invalid", "_count must be 0 to 1000, _offset a number", NULL);
        return;
    }
    if (p->id[0]) {
        struct hdx_fhir_row row;
        struct hdx_policy_decision d;
        if (hdx_fhir_index_get(ff->ix, p->type, p->id, 0, &row) != HDX_OK ||
            !may_read(ff, who, &row, &d)) {
            not_found(r, p->type, p->id);
            return;
        }
    }
    struct tally *tally = calloc(1, sizeof(*tally));
    struct search s = {.ff = ff,
                       .who = who,
                       .c = c,
                       .tally = tally,
                       .entries = json_array(),
                       .count = count,
                       .offset = offset};
    long k =
        tally && s.entries ? hdx_fhir_index_query(ff->ix, &q, 0, history_one, &s) : HDX_E_NOMEM;
    if (tally) hdx_front_tally_flush(ff->f->api, c, who, tally, "read", "fhir");
    free(tally);
    if (k < 0 || s.failed) {
        json_decref(s.entries);
        outcome(r, 503, "transient", "the history cannot be read now", NULL);
        return;
    }
    json_t *b = json_pack("{s:s, s:s, s:I, s:[]}", "resourceType", "Bundle", "type", "history",
                          "total", (json_int_t)s.total, "link");
    char self[sizeof(ff->base_url) + 2 * HDX_FHIR_ID_MAX + 96];
    int sl = snprintf(self, sizeof(self), "%s/%s%s%s/_history", ff->base_url, p->type,
                      p->id[0] ? "/" : "", p->id);
    bundle_link(json_object_get(b, "link"), "self", self);
    if (count && s.total > offset + count && sl > 0 && (size_t)sl < sizeof(self)) {
        char next[sizeof(self) + 64];
        snprintf(next, sizeof(next), "%s?_count=%zu&_offset=%zu", self, count, offset + count);
        bundle_link(json_object_get(b, "link"), "next", next);
    }
    if (json_array_size(s.entries))
        json_object_set_new(b, "entry", s.entries);
    else
        json_decref(s.entries);
    answer_json(r, 200, b);
}

static void do_create(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, const char *type, int conditional_ok,
                      struct hdx_http_reply *r);

/* A conditional create: the search runs when no other one is between its search and its
 * answer, so that the second of two identical ones sees what the first made. */
static void cond_run(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                     struct hdx_http_reply *r);

static void cond_next(struct front_fhir *ff)
{
    while (!ff->cond_busy && ff->cond_head) {
        struct cond_wait *w = ff->cond_head;
        ff->cond_head = w->next;
        if (!ff->cond_head) ff->cond_tail = NULL;
        struct hdx_http_reply r = {0};
        struct hdx_audit_gate *g = gate_begin(ff, w->c);
        if (w->bundle) {
            struct asker who;
            if (!hdx_front_asks(ff->f, w->c, w->req, &r, &who))
                do_bundle(ff, w->c, w->req, &who, 1, &r);
        } else {
            cond_run(ff, w->c, w->req, &r);
        }
        hdx_front_gate_end(g, &r);
        if (!r.deferred) {
            hdx_http_finish(w->c, &r);
            free(r.body);
        }
        http_req_free(w->req);
        free(w->req);
        free(w);
    }
}

static void cond_run(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                     struct hdx_http_reply *r)
{
    struct asker who;
    if (hdx_front_asks(ff->f, c, req, r, &who)) return;
    struct fhir_path p;
    path_parse(req->path, &p);
    const char *cond = http_header_get(req, "if-none-exist");
    const char *qs = strchr(cond, '?') ? strchr(cond, '?') + 1 : cond;
    /* the condition as a search: only its parameters that identify (identifier, code...) */
    struct hdx_http_reply sr = {0};
    do_search(ff, c, req, &who, p.type, qs, &sr);
    if (sr.status != 200) {
        *r = sr;
        if (r->status == 400) {
            free(r->body);
            r->body = NULL;
            outcome(r, 400, "invalid", "If-None-Exist is not a supported search", NULL);
        }
        return;
    }
    json_t *b = json_loadb(sr.body, sr.body_len, 0, NULL);
    free(sr.body);
    json_t *entries = json_object_get(b, "entry");
    size_t matches = 0;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *mode = json_string_value(json_object_get(json_object_get(e, "search"), "mode"));
        if (mode && !strcmp(mode, "match")) matches++;
    }
    if (matches > 1) {
        json_decref(b);
        outcome(r, 412, "duplicate", "If-None-Exist matches more than one resource", NULL);
        return;
    }
    if (matches == 1) {
        json_t *res = json_incref(json_object_get(json_array_get(entries, 0), "resource"));
        json_decref(b);
        const char *vid =
            json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));
        char etag[32];
        snprintf(etag, sizeof(etag), "W/\"%s\"", vid ? vid : "1");
        char loc[sizeof(ff->base_url) + 2 * HDX_FHIR_ID_MAX + 40];
        snprintf(loc, sizeof(loc), "%s/%s/%s/_history/%s", ff->base_url, p.type,
                 json_string_value(json_object_get(res, "id")), vid ? vid : "1");
        answer_json(r, 200, res);
        add_header(r, "Location", loc);
        add_header(r, "ETag", etag);
        return;
    }
    json_decref(b);
    ff->cond_busy = 1;
    do_create(ff, c, req, &who, p.type, 0, r);
    if (!r->deferred) ff->cond_busy = 0;
}

static struct http_req *req_copy(const struct http_req *req)
{
    struct http_req *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    /* what cond_run reads: the path, the query, the headers it asks for, the body */
    size_t need = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        need += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 2;
    q->target = strdup(req->target);
    q->path = strdup(req->path);
    q->strings = malloc(need + 1);
    q->body = req->body_len ? malloc(req->body_len) : NULL;
    if (!q->target || !q->path || !q->strings || (req->body_len && !q->body)) {
        http_req_free(q);
        free(q);
        return NULL;
    }
    memcpy(q->method, req->method, sizeof(q->method));
    const char *qm = strchr(q->target, '?'); /* the original's query may be a literal "" */
    q->query = qm ? qm + 1 : "";
    char *s = q->strings;
    for (size_t i = 0; i < req->nheaders; i++) {
        size_t ln = strlen(req->headers[i].name) + 1, lv = strlen(req->headers[i].value) + 1;
        memcpy(s, req->headers[i].name, ln);
        q->headers[i].name = s;
        s += ln;
        memcpy(s, req->headers[i].value, lv);
        q->headers[i].value = s;
        s += lv;
    }
    q->nheaders = req->nheaders;
    if (req->body_len) memcpy(q->body, req->body, req->body_len);
    q->body_len = req->body_len;
    q->keep_alive = req->keep_alive;
    q->http_minor = req->http_minor;
    return q;
}

/* Queues a conditional create or Bundle behind the one being written, so that it sees what
 * that one made; the answer is deferred until cond_next runs it. */
static void cond_enqueue(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                         int bundle, struct hdx_http_reply *r)
{
    struct cond_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->req = req_copy(req))) {
        free(w);
        outcome(r, 503, "transient", "out of memory", NULL);
        return;
    }
    w->c = c;
    w->bundle = bundle;
    if (ff->cond_tail)
        ff->cond_tail->next = w;
    else
        ff->cond_head = w;
    ff->cond_tail = w;
    r->deferred = 1;
}

static void do_create(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, const char *type, int conditional_ok,
                      struct hdx_http_reply *r)
{
    const char *cond = http_header_get(req, "if-none-exist");
    if (cond && conditional_ok) {
        if (ff->cond_busy || ff->cond_head) {
            cond_enqueue(ff, c, req, 0, r);
            return;
        }
        cond_run(ff, c, req, r);
        return;
    }
    json_t *res = read_resource(req, type, r);
    if (!res) return;
    char id[33];
    hdx_fhir_new_id(id);
    write_version(ff, c, who, res, type, id, 1, 201, 0, cond != NULL, r);
    json_decref(res);
}

static int if_match(const struct http_req *req, uint32_t *version)
{
    const char *h = http_header_get(req, "if-match");
    if (!h) return 0;
    if (!strncmp(h, "W/", 2)) h += 2;
    char *end;
    if (*h != '"') return -1;
    unsigned long v = strtoul(h + 1, &end, 10);
    if (*end != '"' || end[1] || !v || v > UINT32_MAX) return -1;
    *version = (uint32_t)v;
    return 1;
}

static void do_update(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, const struct fhir_path *p, struct hdx_http_reply *r)
{
    if (!strncmp(p->id, "v2-", 3)) {
        outcome(r, 405, "not-supported",
                "an Observation made from an HL7 v2 message is read-only: its message is the "
                "record",
                NULL);
        return;
    }
    uint32_t want = 0;
    int im = if_match(req, &want);
    if (im < 0) {
        outcome(r, 400, "invalid", "If-Match must be a version ETag: W/\"N\"", NULL);
        return;
    }
    json_t *res = read_resource(req, p->type, r);
    if (!res) return;
    const char *bid = json_string_value(json_object_get(res, "id"));
    if (!bid || strcmp(bid, p->id)) {
        json_decref(res);
        outcome(r, 400, "invalid", "the resource's id must be the id in the URL", "id");
        return;
    }
    struct hdx_fhir_row row;
    int found, deleted, err;
    uint32_t v = newest_version(ff, p->type, p->id, &row, &found, &deleted, &err);
    struct hdx_policy_decision d;
    if (err != HDX_OK) {
        json_decref(res);
        outcome(r, 503, "transient", "the resource cannot be read now", NULL);
        return;
    }
    if (!v || (found && !may_read(ff, who, &row, &d))) {
        json_decref(res);
        outcome(r, 405, "not-supported",
                "update creates nothing here: create with POST (the server assigns ids)", NULL);
        return;
    }
    if (im && want != v) {
        json_decref(res);
        char msg[96];
        snprintf(msg, sizeof(msg), "If-Match names version %u; the current version is %u", want, v);
        outcome(r, 412, "conflict", msg, NULL);
        return;
    }
    write_version(ff, c, who, res, p->type, p->id, v + 1, 200, 0, 0, r);
    json_decref(res);
}

static void do_delete(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, const struct fhir_path *p, struct hdx_http_reply *r)
{
    if (!strncmp(p->id, "v2-", 3)) {
        outcome(r, 405, "not-supported", "an Observation made from an HL7 v2 message is read-only",
                NULL);
        return;
    }
    struct hdx_fhir_row row;
    int found, deleted, err;
    uint32_t v = newest_version(ff, p->type, p->id, &row, &found, &deleted, &err);
    struct hdx_policy_decision d;
    if (err != HDX_OK) {
        outcome(r, 503, "transient", "the resource cannot be read now", NULL);
        return;
    }
    if (!v || (found && !may_read(ff, who, &row, &d))) {
        not_found(r, p->type, p->id);
        return;
    }
    uint32_t want;
    int im = if_match(req, &want);
    if (im < 0 || (im && want != v)) {
        outcome(r, im < 0 ? 400 : 412, im < 0 ? "invalid" : "conflict",
                "If-Match does not name the current version", NULL);
        return;
    }
    if (deleted) { /* already: nothing new to record */
        r->status = 204;
        r->content_type = FHIR_CT;
        return;
    }
    json_t *t = json_pack("{s:s}", "resourceType", p->type);
    write_version(ff, c, who, t, p->type, p->id, v + 1, 204, 1, 0, r);
    json_decref(t);
}

/* ---------- AuditEvent: the audit log in the IHE BALP shape, read-only ---------- */

/* One audit record as an AuditEvent (IHE Basic Audit Log Patterns: a RESTful operation for
 * route=fhir, else a patient-record or authentication event; the requesting agent, hdx as the
 * observer, the patient and the disclosed records as entities). NULL when it is not one. */
static json_t *audit_event(struct front_fhir *ff, const struct hdx_record *rec, const uint8_t *pt,
                           size_t len)
{
    struct hdx_audit_view v;
    if (hdx_audit_parse(pt, len, &v) != HDX_OK) return NULL;
    char id[32], when[40];
    snprintf(id, sizeof(id), "audit-%llu", (unsigned long long)rec->seq);
    hdx_fhir_instant(rec->time_us, when, sizeof(when));
    int fhir = strstr(v.detail, "route=fhir") != NULL;
    int auth = !strcmp(v.event, "auth");
    const char *a = v.action;
    char action = !strcmp(a, "create")                          ? 'C'
                  : !strcmp(a, "update") || !strcmp(a, "write") ? 'U'
                  : !strcmp(a, "delete")                        ? 'D'
                  : auth                                        ? 'E'
                                                                : 'R';
    const char *sub = !strcmp(a, "create")   ? "create"
                      : !strcmp(a, "update") ? "update"
                      : !strcmp(a, "delete") ? "delete"
                      : !strcmp(a, "search") ? "search-type"
                                             : "read";
    int ok = !strcmp(v.outcome, "permit") || !strcmp(v.outcome, "success");
    json_t *type = auth   ? json_pack("{s:s, s:s, s:s}", "system",
                                      "http://dicom.nema.org/resources/ontology/DCM", "code",
                                      "110114", "display", "User Authentication")
                   : fhir ? json_pack("{s:s, s:s, s:s}", "system",
                                      "http://terminology.hl7.org/CodeSystem/audit-event-type",
                                      "code", "rest", "display", "RESTful Operation")
                          : json_pack("{s:s, s:s, s:s}", "system",
                                      "http://dicom.nema.org/resources/ontology/DCM", "code",
                                      "110110", "display", "Patient Record");
    char act[2] = {action, '\0'};
    char addr[80];
    snprintf(addr, sizeof(addr), "%s", v.source);
    char *colon = strrchr(addr, ':');
    if (colon && strchr(addr, '.')) *colon = '\0'; /* "ADDR:PORT" -> ADDR */
    int machine = !strcmp(v.role, "integration") || !strcmp(v.role, "device") ||
                  !strcmp(v.role, "subscriber") || !strcmp(v.role, "gateway");
    json_t *agent =
        json_pack("{s:{s:[{s:s, s:s}]}, s:{s:{s:s, s:s}}, s:b, s:[{s:s}]}", "type", "coding",
                  "system", "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                  "code", machine ? "dataprocessor" : "humanuser", "who", "identifier", "system",
                  "urn:hdx:principal", "value", v.principal[0] ? v.principal : "-", "requestor", 1,
                  "role", "text", v.role[0] ? v.role : "-");
    if (strcmp(v.source, "-"))
        json_object_set_new(agent, "network",
                            json_pack("{s:s, s:s}", "address", addr, "type", "2"));
    json_t *ev = json_pack(
        "{s:s, s:s, s:o, s:s, s:s, s:s, s:[o], s:{s:{s:s}, s:[{s:s, s:s, s:s}]}}", "resourceType",
        "AuditEvent", "id", id, "type", type, "action", act, "recorded", when, "outcome",
        ok ? "0" : "4", "agent", agent, "source", "observer", "display", "hdx", "type", "system",
        "http://terminology.hl7.org/CodeSystem/security-source-type", "code", "4", "display",
        "Application Server");
    if (fhir && !auth)
        json_object_set_new(ev, "subtype",
                            json_pack("[{s:s, s:s}]", "system",
                                      "http://hl7.org/fhir/restful-interaction", "code", sub));
    if (strcmp(v.reason, "-")) json_object_set_new(ev, "outcomeDesc", json_string(v.reason));
    json_t *entities = json_array();
    if (hdx_record_has_patient(rec)) {
        char pid[HDX_FHIR_ID_MAX + 1], ref[HDX_FHIR_ID_MAX + 16], hex[2 * HDX_BLIND_LEN + 1];
        json_t *what;
        if (patient_of_token(ff, rec->patient, pid, sizeof(pid)) == HDX_OK) {
            snprintf(ref, sizeof(ref), "Patient/%s", pid);
            what = json_pack("{s:s}", "reference", ref);
        } else {
            hdx_hex(rec->patient, HDX_BLIND_LEN, hex);
            what = json_pack("{s:{s:s, s:s}}", "identifier", "system", "urn:hdx:patient-token",
                             "value", hex);
        }
        json_array_append_new(
            entities, json_pack("{s:o, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}", "what", what, "type",
                                "system", "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                "code", "1", "display", "Person", "role", "system",
                                "http://terminology.hl7.org/CodeSystem/object-role", "code", "1",
                                "display", "Patient"));
    }
    if (v.first_seq) {
        char seqs[48], count[24];
        snprintf(seqs, sizeof(seqs), "%llu-%llu", (unsigned long long)v.first_seq,
                 (unsigned long long)v.last_seq);
        snprintf(count, sizeof(count), "%llu", (unsigned long long)v.count);
        json_array_append_new(
            entities,
            json_pack("{s:{s:{s:s, s:s}}, s:{s:s, s:s, s:s}, s:[{s:s, s:s}]}", "what", "identifier",
                      "system", "urn:hdx:log-seq", "value", seqs, "type", "system",
                      "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code", "2",
                      "display", "System Object", "detail", "type", "count", "valueString", count));
    }
    if (json_array_size(entities))
        json_object_set_new(ev, "entity", entities);
    else
        json_decref(entities);
    json_object_set_new(ev, "meta", json_pack("{s:s, s:s}", "versionId", "1", "lastUpdated", when));
    return ev;
}

struct audit_search {
    struct front_fhir *ff;
    json_t *entries;
    const char *agent;
    int64_t before_us; /* 0: none */
    size_t offset, count, total, skipped;
    int keyset;              /* _after given: stop at the first match past the page */
    uint64_t last_seq;       /* the last record looked at */
    uint64_t last_entry_seq; /* the last record on the page */
    int more, ended, failed; /* a match past the page; the date range ended the scan */
};

static int audit_search_one(void *ctx, const struct hdx_record *rec)
{
    struct audit_search *s = ctx;
    if (s->before_us && rec->time_us >= s->before_us) {
        s->ended = 1;
        return 1;
    }
    s->last_seq = rec->seq;
    uint8_t *pt = NULL;
    size_t len = 0;
    if (hdx_record_open(rec, s->ff->f->env.kr, &pt, &len) != HDX_OK) {
        s->failed = 1;
        return 1;
    }
    json_t *ev = audit_event(s->ff, rec, pt, len);
    sodium_memzero(pt, len);
    free(pt);
    if (!ev) return 0;
    const char *who = json_string_value(json_object_get(
        json_object_get(json_object_get(json_array_get(json_object_get(ev, "agent"), 0), "who"),
                        "identifier"),
        "value"));
    if (s->agent && (!who || strcmp(who, s->agent))) {
        json_decref(ev);
        return 0;
    }
    s->total++;
    if (s->skipped < s->offset) {
        s->skipped++;
        json_decref(ev);
        return 0;
    }
    if (json_array_size(s->entries) >= s->count) {
        json_decref(ev);
        s->more = 1;
        return s->keyset; /* without a cursor, go on counting the total */
    }
    s->last_entry_seq = rec->seq;
    char url[sizeof(s->ff->base_url) + 48];
    snprintf(url, sizeof(url), "%s/AuditEvent/%s", s->ff->base_url,
             json_string_value(json_object_get(ev, "id")));
    json_array_append_new(s->entries, json_pack("{s:s, s:o, s:{s:s}}", "fullUrl", url, "resource",
                                                ev, "search", "mode", "match"));
    return 0;
}

static void do_audit_events(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                            const struct asker *who, const struct fhir_path *p,
                            struct hdx_http_reply *r)
{
    struct hdx_policy_decision d;
    hdx_front_decide(ff->f->api, who, HDX_ACT_READ, HDX_RES_AUDIT, NULL, &d);
    if (!d.permit || who->smart) {
        hdx_front_audit_access(ff->f->api, c, who, "read_audit", "deny",
                               who->smart ? "smart_scope" : hdx_policy_reason_name(d.reason), NULL,
                               0, 0, 0, "fhir");
        char msg[96];
        snprintf(msg, sizeof(msg), "not permitted: %s",
                 who->smart ? "scope" : hdx_policy_reason_name(d.reason));
        outcome(r, 403, "forbidden", msg, NULL);
        return;
    }
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        outcome(r, 405, "not-supported", "AuditEvent is read-only: the audit log writes it", NULL);
        return;
    }
    if (p->id[0] || p->history) {
        char *end;
        unsigned long long seq = !strncmp(p->id, "audit-", 6) ? strtoull(p->id + 6, &end, 10) : 0;
        struct hdx_record rec;
        memset(&rec, 0, sizeof(rec));
        json_t *ev = NULL;
        if (seq && !*end && !p->history &&
            hdx_store_get(ff->f->env.ro_store, seq, &rec) == HDX_OK && rec.kind == HDX_KIND_AUDIT) {
            uint8_t *pt = NULL;
            size_t len = 0;
            if (hdx_record_open(&rec, ff->f->env.kr, &pt, &len) == HDX_OK) {
                ev = audit_event(ff, &rec, pt, len);
                sodium_memzero(pt, len);
                free(pt);
            }
        }
        hdx_record_clear(&rec);
        hdx_front_audit_access(ff->f->api, c, who, "read_audit", "permit", "-", NULL, 0, 0,
                               ev ? 1 : 0, "fhir");
        if (!ev) {
            not_found(r, "AuditEvent", p->id[0] ? p->id : "_history");
            return;
        }
        answer_json(r, 200, ev);
        return;
    }
    struct hdx_fhir_qparam *qp = calloc(HDX_FHIR_QPARAMS_MAX, sizeof(*qp));
    size_t np = 0;
    struct audit_search s = {.ff = ff, .entries = json_array(), .count = COUNT_DEFAULT};
    struct hdx_store_filter flt = {.kind = HDX_KIND_AUDIT};
    uint8_t ptok[HDX_BLIND_LEN];
    uint64_t after = 0;
    int none = 0;
    char bad[96] = "";
    if (!qp || !s.entries || hdx_fhir_params_split(req->query, qp, HDX_FHIR_QPARAMS_MAX, &np)) {
        snprintf(bad, sizeof(bad), "the query string is malformed");
        np = 0;
    }
    for (size_t i = 0; i < np && !bad[0]; i++) {
        const char *n = qp[i].name, *v = qp[i].value;
        char *end;
        if (!strcmp(n, "_count")) {
            s.count = strtoul(v, &end, 10);
            if (*end || !*v || s.count > COUNT_MAX) snprintf(bad, sizeof(bad), "bad _count");
        } else if (!strcmp(n, "_offset")) {
            s.offset = strtoul(v, &end, 10);
            if (*end || !*v) snprintf(bad, sizeof(bad), "bad _offset");
        } else if (!strcmp(n, "_after")) {
            errno = 0;
            after = strtoull(v, &end, 10);
            if (*end || *v < '1' || *v > '9' || errno) snprintf(bad, sizeof(bad), "bad _after");
            s.keyset = 1;
        } else if (!strcmp(n, "agent")) {
            s.agent = v;
        } else if (!strcmp(n, "patient")) {
            int rc = patient_param(ff, v, ptok, &none);
            if (rc < 0) snprintf(bad, sizeof(bad), "the value of patient is not valid");
            if (rc == 1) flt.patient = ptok;
        } else if (!strcmp(n, "date")) {
            enum hdx_fhir_prefix pf;
            int k = hdx_fhir_prefix_parse(v, &pf);
            int64_t lo, hi;
            if (hdx_fhir_time_range(v + k, &lo, &hi) ||
                (pf != HDX_FHIR_GE && pf != HDX_FHIR_GT && pf != HDX_FHIR_LT && pf != HDX_FHIR_LE &&
                 pf != HDX_FHIR_EQ))
                snprintf(bad, sizeof(bad), "date takes eq, ge, gt, le, lt");
            else if (pf == HDX_FHIR_GE || pf == HDX_FHIR_EQ)
                flt.since_us = lo > flt.since_us ? lo : flt.since_us;
            else if (pf == HDX_FHIR_GT)
                flt.since_us = hi;
            if (!bad[0] && (pf == HDX_FHIR_EQ || pf == HDX_FHIR_LE))
                s.before_us = hi;
            else if (!bad[0] && pf == HDX_FHIR_LT)
                s.before_us = lo;
        } else if (strcmp(n, "_format") && strcmp(n, "_pretty") && strcmp(n, "purpose")) {
            snprintf(bad, sizeof(bad), "search parameter %.40s is not supported for AuditEvent", n);
        }
    }
    if (bad[0]) {
        free(qp);
        json_decref(s.entries);
        outcome(r, 400, "not-supported", bad, NULL);
        return;
    }
    if (flt.since_us) flt.from_seq = hdx_store_seq_at_time(ff->f->env.ro_store, flt.since_us);
    if (after >= flt.from_seq) flt.from_seq = after + 1;
    long n =
        none ? 0 : hdx_store_scan(ff->f->env.ro_store, &flt, SEARCH_BUDGET, audit_search_one, &s);
    free(qp);
    hdx_front_audit_access(ff->f->api, c, who, "read_audit", "permit", "-", flt.patient, 0, 0,
                           json_array_size(s.entries), "fhir");
    if (n < 0 || s.failed) {
        json_decref(s.entries);
        outcome(r, 503, "transient", "the audit log cannot be read now", NULL);
        return;
    }
    json_t *b =
        json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "searchset", "link");
    char self[sizeof(ff->base_url) + 1200];
    snprintf(self, sizeof(self), "%s/AuditEvent%s%s", ff->base_url, req->query[0] ? "?" : "",
             req->query);
    bundle_link(json_object_get(b, "link"), "self", self);
    /* A page behind a cursor saw only the log after it: its count is no total. */
    if (n < SEARCH_BUDGET && !s.keyset)
        json_object_set_new(b, "total", json_integer((json_int_t)s.total));
    /* The next page starts after the last record this one shows, or, when the scan budget
     * ran out before the page filled, after the last record looked at: every page moves on,
     * so paging reaches the whole log however sparse the matches. */
    uint64_t cursor = s.more                                      ? s.last_entry_seq
                      : n >= SEARCH_BUDGET && !s.ended && s.count ? s.last_seq
                                                                  : 0;
    if (cursor)
        next_link(ff, "AuditEvent", req->query, s.count, s.more ? 0 : s.offset - s.skipped, cursor,
                  json_object_get(b, "link"));
    if (json_array_size(s.entries))
        json_object_set_new(b, "entry", s.entries);
    else
        json_decref(s.entries);
    answer_json(r, 200, b);
}

/* ---------- Bundles: transaction and batch ---------- */

#define BUNDLE_ENTRIES_MAX 100
#define BUNDLE_GETS_MAX 20    /* each a read or a search on the network thread */
#define BUNDLE_PATH_MAX 256   /* a GET entry's path */
#define BUNDLE_QUERY_MAX 2048 /* its query, and an ifNoneExist */

/* Every {"reference": R} in v whose R a transaction entry's fullUrl names becomes the
 * Type/id that entry was given. */
static void refs_rewrite(json_t *v, const json_t *map, int depth)
{
    if (depth > HDX_FHIR_NEST_MAX) return;
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x)
        {
            const char *to = json_is_string(x) && !strcmp(k, "reference")
                                 ? json_string_value(json_object_get(map, json_string_value(x)))
                                 : NULL;
            if (to)
                json_object_set_new(v, k, json_string(to));
            else
                refs_rewrite(x, map, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) refs_rewrite(x, map, depth + 1);
    }
}

struct entry_plan {
    int method; /* 'P'ost, 'U' put, 'D'elete, 'G'et */
    char type[HDX_FHIR_TYPE_MAX + 1], id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    int skip;    /* a delete of what is already deleted: nothing to store */
    int matched; /* a POST whose ifNoneExist found the resource: nothing to store */
    int status;
    char error[200];
    char code[24];
    struct txn_part part;
};

/* "Type" or "Type/id" of a request.url (relative, or under our base). */
static int entry_url(struct front_fhir *ff, const char *url, char *type, char *id)
{
    size_t bl = strlen(ff->base_url);
    if (!strncmp(url, ff->base_url, bl) && url[bl] == '/') url += bl + 1;
    if (strchr(url, '?')) return -1;
    const char *slash = strchr(url, '/');
    size_t tl = slash ? (size_t)(slash - url) : strlen(url);
    if (!tl || tl > HDX_FHIR_TYPE_MAX) return -1;
    memcpy(type, url, tl);
    type[tl] = '\0';
    id[0] = '\0';
    if (slash) {
        if (strlen(slash + 1) > HDX_FHIR_ID_MAX || !hdx_fhir_id_valid(slash + 1)) return -1;
        memcpy(id, slash + 1, strlen(slash + 1) + 1);
    }
    return 0;
}

/* A GET entry's request.url (relative, or under our base) as the path and query of the
 * request it names. 0, or -1 when it is not a FHIR path or too long. */
static int get_url_parse(struct front_fhir *ff, const char *url, char *path, size_t cap,
                         const char **query, struct fhir_path *p)
{
    size_t bl = strlen(ff->base_url);
    if (!strncmp(url, ff->base_url, bl) && url[bl] == '/') url += bl + 1;
    const char *q = strchr(url, '?');
    size_t pl = q ? (size_t)(q - url) : strlen(url);
    if (!pl || url[0] == '/' || pl + 7 > cap || (q && strlen(q + 1) > BUNDLE_QUERY_MAX)) return -1;
    memcpy(path, "/fhir/", 6);
    memcpy(path + 6, url, pl);
    path[6 + pl] = '\0';
    *query = q ? q + 1 : "";
    return path_parse(path, p);
}

static void plan_fail(struct entry_plan *e, int status, const char *code, const char *msg)
{
    e->status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->error, sizeof(e->error), "%s", msg);
}

/* A GET entry: what it names must be a read, vread, search or history that this principal's
 * scopes cover; it runs later (bundle_gets_run). */
static void plan_get(struct front_fhir *ff, const struct asker *who, json_t *entry,
                     struct entry_plan *e)
{
    json_t *req = json_object_get(entry, "request");
    const char *url = json_string_value(json_object_get(req, "url"));
    char path[BUNDLE_PATH_MAX];
    const char *query;
    struct fhir_path p;
    e->method = 'G';
    if (json_object_get(entry, "resource")) {
        plan_fail(e, 400, "invalid", "a GET entry has no resource");
        return;
    }
    if (!url || get_url_parse(ff, url, path, sizeof(path), &query, &p) || p.n == 0 || p.search ||
        p.op[0]) {
        plan_fail(e, 400, "invalid",
                  "a GET entry's request.url is a read, vread, search or history "
                  "(Type/id, Type/id/_history/v, Type?query, Type/id/_history, Type/_history)");
        return;
    }
    const char *inm = json_string_value(json_object_get(req, "ifNoneMatch"));
    const char *ims = json_string_value(json_object_get(req, "ifModifiedSince"));
    int64_t lo, hi;
    if ((inm || ims) && (!p.id[0] || (p.history && !p.vid))) {
        plan_fail(e, 400, "invalid", "ifNoneMatch and ifModifiedSince apply to a read");
        return;
    }
    if ((inm && strlen(inm) > 32) || (ims && hdx_fhir_time_range(ims, &lo, &hi))) {
        plan_fail(e, 400, "invalid", "ifNoneMatch is an ETag, ifModifiedSince an instant");
        return;
    }
    char act = (p.n == 1 || (p.history && !p.vid && !p.id[0])) ? 's' : 'r';
    if (strcmp(p.type, "AuditEvent") && !type_readable(p.type)) {
        plan_fail(e, 404, "not-supported", "this resource type is not supported");
        return;
    }
    if (!smart_covers(who, p.type, act)) {
        plan_fail(e, 403, "forbidden", "the access token's scopes do not cover this entry");
        return;
    }
    snprintf(e->type, sizeof(e->type), "%s", p.type);
    e->status = 200;
}

/* What an entry asks, checked against the index and the policy; its resource made ready to
 * store (id, meta). */
static void plan_entry(struct front_fhir *ff, const struct asker *who, json_t *entry,
                       const json_t *local, json_t *seen, struct entry_plan *e)
{
    json_t *req = json_object_get(entry, "request");
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *url = json_string_value(json_object_get(req, "url"));
    json_t *res = json_object_get(entry, "resource");
    if (method && !strcmp(method, "GET")) {
        plan_get(ff, who, entry, e);
        return;
    }
    if (!method || !url || entry_url(ff, url, e->type, e->id)) {
        plan_fail(e, 400, "invalid",
                  url && strchr(url, '?')
                      ? "conditional update and delete (Type?query) are not supported"
                      : "request.method and request.url (Type or Type/id) are required");
        return;
    }
    e->method = !strcmp(method, "POST")     ? 'P'
                : !strcmp(method, "PUT")    ? 'U'
                : !strcmp(method, "DELETE") ? 'D'
                                            : 0;
    if (!e->method || (e->method == 'P') != !e->id[0]) {
        plan_fail(e, 400, "not-supported",
                  "entries are POST Type, PUT Type/id, DELETE Type/id or GET");
        return;
    }
    if (!type_writable(e->type) || !strcmp(e->type, "Subscription")) {
        plan_fail(e, 404, "not-supported", "this resource type cannot be written");
        return;
    }
    if (!smart_covers(who, e->type, e->method == 'P' ? 'c' : e->method == 'U' ? 'u' : 'd')) {
        plan_fail(e, 403, "forbidden", "the access token's scopes do not cover this entry");
        return;
    }
    if (e->matched) { /* its ifNoneExist found it: answered with it, nothing written */
        e->status = 200;
        return;
    }
    const char *rt = json_string_value(json_object_get(res, "resourceType"));
    if (e->method != 'D' && (!rt || strcmp(rt, e->type))) {
        plan_fail(e, 400, "invalid", "the entry's resource must be of the request's type");
        return;
    }
    if (e->method == 'U') {
        const char *bid = json_string_value(json_object_get(res, "id"));
        if (!bid || strcmp(bid, e->id)) {
            plan_fail(e, 400, "invalid", "the resource's id must be the id in request.url");
            return;
        }
    }
    char key[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 2];
    snprintf(key, sizeof(key), "%s/%s", e->type, e->id);
    if (e->method != 'P' && json_object_get(seen, key)) {
        plan_fail(e, 400, "duplicate", "the same resource twice in one Bundle");
        return;
    }
    json_object_set_new(seen, key, json_true());
    if (e->method != 'P') {
        struct hdx_fhir_row row;
        int found, deleted, err;
        struct hdx_policy_decision d;
        uint32_t v = newest_version(ff, e->type, e->id, &row, &found, &deleted, &err);
        if (err != HDX_OK) {
            plan_fail(e, 503, "transient", "the resource cannot be read now");
            return;
        }
        if (!v || (found && !may_read(ff, who, &row, &d))) {
            plan_fail(e, e->method == 'D' ? 404 : 405, "not-found",
                      e->method == 'D' ? "no such resource"
                                       : "update creates nothing here: create with POST");
            return;
        }
        const char *im = json_string_value(json_object_get(req, "ifMatch"));
        char want[24];
        snprintf(want, sizeof(want), "W/\"%u\"", v);
        if (im && strcmp(im, want) &&
            strcmp(im + (im[0] == 'W' && im[1] == '/' ? 2 : 0), want + 2)) {
            plan_fail(e, 412, "conflict", "ifMatch does not name the current version");
            return;
        }
        if (e->method == 'D' && deleted) {
            e->skip = 1;
            e->status = 204;
            return;
        }
        e->version = v + 1;
        if (e->method == 'D' && found && row.has_patient) {
            e->part.has_patient = 1;
            memcpy(e->part.patient, row.patient, HDX_BLIND_LEN);
        }
    } else {
        e->version = 1;
    }
    struct hdx_http_reply r = {0};
    if (e->method != 'D' &&
        write_patient(ff, who, res, local, &e->part.has_patient, e->part.patient, &r)) {
        json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
        const char *diag = json_string_value(
            json_object_get(json_array_get(json_object_get(o, "issue"), 0), "diagnostics"));
        plan_fail(e, r.status, "processing", diag ? diag : "the patient cannot be resolved");
        json_decref(o);
        free(r.body);
        return;
    }
    struct hdx_policy_decision d;
    hdx_front_decide(ff->f->api, who, HDX_ACT_WRITE, HDX_RES_RECORD,
                     e->part.has_patient ? e->part.patient : NULL, &d);
    if (!d.permit) {
        char msg[96];
        snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(d.reason));
        plan_fail(e, 403, "forbidden", msg);
        return;
    }
    snprintf(e->part.type, sizeof(e->part.type), "%s", e->type);
    snprintf(e->part.id, sizeof(e->part.id), "%s", e->id);
    e->part.version = e->version;
    e->part.deleting = e->method == 'D';
    e->status = e->method == 'P' ? 201 : e->method == 'U' ? 200 : 204;
}

static json_t *entry_response(struct front_fhir *ff, const struct entry_plan *e)
{
    char st[48];
    snprintf(st, sizeof(st), "%d %s", e->status, hdx_http_reason(e->status));
    json_t *resp = json_pack("{s:s}", "status", st);
    if (e->status < 300 && e->id[0] && (!e->skip || e->matched)) {
        char loc[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 32], etag[24];
        snprintf(loc, sizeof(loc), "%s/%s/_history/%u", e->type, e->id, e->version);
        snprintf(etag, sizeof(etag), "W/\"%u\"", e->version);
        json_object_set_new(resp, "location", json_string(loc));
        json_object_set_new(resp, "etag", json_string(etag));
    }
    if (e->status >= 400)
        json_object_set_new(resp, "outcome", hdx_fhir_outcome(e->code, e->error, NULL));
    (void)ff;
    return json_pack("{s:o}", "response", resp);
}

/* The value of header name in a reply's extra header lines, into out ("" when absent). */
static void reply_header(const struct hdx_http_reply *r, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *s = r->extra; *s;) {
        const char *eol = strstr(s, "\r\n");
        if (!eol) break;
        if (!strncasecmp(s, name, nl) && s[nl] == ':') {
            const char *v = s + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(eol - v), v);
            return;
        }
        s = eol + 2;
    }
}

/* Runs one GET entry as the request it names, for who (policy, scopes and the disclosure's
 * audit exactly as that request alone), into its entry of the answer. */
static json_t *bundle_get_run(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                              const struct bundle_get *g)
{
    char path[BUNDLE_PATH_MAX];
    const char *query;
    struct fhir_path p;
    struct hdx_http_reply r = {0};
    if (get_url_parse(ff, g->url, path, sizeof(path), &query, &p)) {
        outcome(&r, 400, "invalid", "request.url is not a FHIR read or search", NULL);
    } else {
        struct http_req req;
        memset(&req, 0, sizeof(req));
        snprintf(req.method, sizeof(req.method), "GET");
        req.target = g->url;
        req.path = path;
        req.query = query;
        fhir_dispatch(ff, c, &req, who, &p, &r);
        if (r.deferred) abort(); /* plan_get admits no operation that answers later */
    }
    json_t *body = r.body ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    if (r.body) {
        sodium_memzero(r.body, r.body_len);
        free(r.body);
    }
    char etag[40], updated[48] = "";
    reply_header(&r, "ETag", etag, sizeof(etag));
    const char *lu =
        json_string_value(json_object_get(json_object_get(body, "meta"), "lastUpdated"));
    if (lu && r.status == 200 && p.id[0]) snprintf(updated, sizeof(updated), "%s", lu);
    int status = r.status;
    if (status == 200 && g->if_none_match && etag[0]) {
        const char *a = g->if_none_match, *b = etag;
        a += a[0] == 'W' && a[1] == '/' ? 2 : 0;
        b += b[0] == 'W' && b[1] == '/' ? 2 : 0;
        if (!strcmp(a, b) || !strcmp(g->if_none_match, "*")) status = 304;
    }
    int64_t ims_lo, ims_hi, lu_lo, lu_hi;
    if (status == 200 && g->if_modified_since && updated[0] &&
        !hdx_fhir_time_range(g->if_modified_since, &ims_lo, &ims_hi) &&
        !hdx_fhir_time_range(updated, &lu_lo, &lu_hi) && lu_lo < ims_hi)
        status = 304;
    char st[48];
    snprintf(st, sizeof(st), "%d %s", status, hdx_http_reason(status));
    json_t *resp = json_pack("{s:s}", "status", st);
    if (etag[0]) json_object_set_new(resp, "etag", json_string(etag));
    if (updated[0]) json_object_set_new(resp, "lastModified", json_string(updated));
    json_t *e = json_object();
    if (status >= 400 && body)
        json_object_set(resp, "outcome", body);
    else if (status < 300 && body)
        json_object_set(e, "resource", body);
    json_decref(body);
    json_object_set_new(e, "response", resp);
    return e;
}

static void bundle_gets_run(struct front_fhir *ff, struct hdx_conn *c, const struct asker *who,
                            json_t *answer, const struct bundle_get *gets, size_t n)
{
    json_t *entries = json_object_get(answer, "entry");
    for (size_t i = 0; i < n; i++)
        json_array_set_new(entries, gets[i].index, bundle_get_run(ff, c, who, &gets[i]));
}

static char *json_strdup_or_null(const json_t *v, int *oom)
{
    const char *s = json_string_value(v);
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *oom = 1;
    return d;
}

/* An ifNoneExist entry's search, as the same principal's conditional create runs it: into e
 * (matched, its id and version) or a failure. */
static void plan_condition(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                           const struct asker *who, const char *type, const char *cond,
                           struct entry_plan *e)
{
    const char *qs = strchr(cond, '?') ? strchr(cond, '?') + 1 : cond;
    struct hdx_http_reply sr = {0};
    if (!type_writable(type) || !strcmp(type, "Subscription")) return; /* plan_entry says */
    if (!smart_covers(who, type, 's')) {
        plan_fail(e, 403, "forbidden", "the access token's scopes do not cover ifNoneExist");
        return;
    }
    do_search(ff, c, req, who, type, qs, &sr);
    json_t *b = sr.status == 200 ? json_loadb(sr.body, sr.body_len, 0, NULL) : NULL;
    if (sr.body) {
        sodium_memzero(sr.body, sr.body_len);
        free(sr.body);
    }
    if (!b) {
        plan_fail(e, sr.status == 200 || sr.status == 400 ? 400 : sr.status, "invalid",
                  "ifNoneExist is not a supported search");
        return;
    }
    json_t *entries = json_object_get(b, "entry"), *x, *match = NULL;
    size_t i, matches = 0;
    json_array_foreach(entries, i, x)
    {
        const char *mode = json_string_value(json_object_get(json_object_get(x, "search"), "mode"));
        if (mode && !strcmp(mode, "match")) {
            matches++;
            match = json_object_get(x, "resource");
        }
    }
    if (matches > 1) {
        plan_fail(e, 412, "duplicate", "ifNoneExist matches more than one resource");
    } else if (matches == 1) {
        const char *id = json_string_value(json_object_get(match, "id"));
        const char *vid =
            json_string_value(json_object_get(json_object_get(match, "meta"), "versionId"));
        e->matched = 1;
        e->skip = 1;
        snprintf(e->id, sizeof(e->id), "%s", id ? id : "");
        e->version = vid ? (uint32_t)strtoul(vid, NULL, 10) : 1;
    }
    json_decref(b);
}

static int bundle_conditional(const json_t *entries)
{
    size_t i;
    json_t *entry;
    json_array_foreach(entries, i, entry)
    {
        json_t *req = json_object_get(entry, "request");
        const char *method = json_string_value(json_object_get(req, "method"));
        if (method && !strcmp(method, "POST") && json_object_get(req, "ifNoneExist")) return 1;
    }
    return 0;
}

static void do_bundle(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                      const struct asker *who, int queued, struct hdx_http_reply *r)
{
    json_t *b = read_resource(req, "Bundle", r);
    if (!b) return;
    const char *btype = json_string_value(json_object_get(b, "type"));
    int txn = btype && !strcmp(btype, "transaction");
    json_t *entries = json_object_get(b, "entry");
    size_t n = json_array_size(entries);
    if (!txn && (!btype || strcmp(btype, "batch"))) {
        json_decref(b);
        outcome(r, 400, "invalid", "POST /fhir takes a Bundle of type transaction or batch",
                "Bundle.type");
        return;
    }
    if (n > BUNDLE_ENTRIES_MAX) {
        json_decref(b);
        outcome(r, 413, "too-costly", "a Bundle holds at most 100 entries", "Bundle.entry");
        return;
    }
    int conditional = bundle_conditional(entries);
    if (conditional && !queued && (ff->cond_busy || ff->cond_head)) {
        /* after the conditional create or Bundle before it, so that it sees what that made */
        json_decref(b);
        cond_enqueue(ff, c, req, 1, r);
        return;
    }
    struct entry_plan *plan = calloc(n ? n : 1, sizeof(*plan));
    json_t *map = json_object(), *local = json_object(), *seen = json_object();
    json_t *stored =
        json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "transaction", "entry");
    json_t *answer = json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type",
                               txn ? "transaction-response" : "batch-response", "entry");
    struct fhir_write *w = calloc(1, sizeof(*w));
    if (w) w->parts = calloc(n ? n : 1, sizeof(*w->parts));
    if (w) w->gets = calloc(n ? n : 1, sizeof(*w->gets));
    if (!plan || !map || !local || !seen || !stored || !answer || !w || !w->parts || !w->gets) {
        outcome(r, 503, "transient", "out of memory", NULL);
        goto out;
    }
    size_t i, ngets = 0;
    json_t *entry;
    int failed = -1;
    json_array_foreach(entries, i, entry)
    {
        const char *method =
            json_string_value(json_object_get(json_object_get(entry, "request"), "method"));
        if (method && !strcmp(method, "GET") && ++ngets > BUNDLE_GETS_MAX) {
            outcome(r, 413, "too-costly", "a Bundle holds at most 20 GET entries", "Bundle.entry");
            goto out;
        }
    }
    /* ifNoneExist first: a POST that finds its resource writes nothing, and its fullUrl
     * names what it found */
    json_array_foreach(entries, i, entry)
    {
        json_t *rq = json_object_get(entry, "request");
        const char *method = json_string_value(json_object_get(rq, "method"));
        const char *cond = json_string_value(json_object_get(rq, "ifNoneExist"));
        const char *url = json_string_value(json_object_get(rq, "url"));
        if (!method || strcmp(method, "POST") || !json_object_get(rq, "ifNoneExist")) continue;
        if (!cond || !url || strchr(url, '?') || strchr(url, '/') ||
            strlen(cond) > BUNDLE_QUERY_MAX) {
            plan_fail(&plan[i], 400, "invalid", "ifNoneExist is a search string on a POST Type");
        } else {
            char type[HDX_FHIR_TYPE_MAX + 1], none[HDX_FHIR_ID_MAX + 1];
            if (!entry_url(ff, url, type, none))
                plan_condition(ff, c, req, who, type, cond, &plan[i]);
        }
        if (plan[i].status >= 400 && txn) {
            failed = (int)i;
            break;
        }
    }
    /* ids next, so references between entries (fullUrl) resolve, a Patient's before its
     * Observations' */
    json_array_foreach(entries, i, entry)
    {
        if (failed >= 0) break;
        json_t *res = json_object_get(entry, "resource");
        const char *method =
            json_string_value(json_object_get(json_object_get(entry, "request"), "method"));
        const char *rt = json_string_value(json_object_get(res, "resourceType"));
        if (!method || strcmp(method, "POST") || !rt || plan[i].status >= 400) continue;
        char id[HDX_FHIR_ID_MAX + 1];
        if (plan[i].matched) {
            snprintf(id, sizeof(id), "%s", plan[i].id);
        } else {
            hdx_fhir_new_id(id);
            json_object_set_new(res, "id", json_string(id));
        }
        const char *full = json_string_value(json_object_get(entry, "fullUrl"));
        char ref[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 2];
        snprintf(ref, sizeof(ref), "%s/%s", rt, id);
        if (txn && full) json_object_set_new(map, full, json_string(ref));
    }
    if (txn && failed < 0)
        json_array_foreach(entries, i, entry)
            refs_rewrite(json_object_get(entry, "resource"), map, 0);
    json_array_foreach(entries, i, entry)
    {
        if (failed >= 0) break;
        json_t *res = json_object_get(entry, "resource");
        const char *rt = json_string_value(json_object_get(res, "resourceType"));
        if (txn && rt && !strcmp(rt, "Patient") && json_object_get(res, "id") && !plan[i].matched) {
            char key[300];
            uint8_t tok[HDX_BLIND_LEN];
            char hex[2 * HDX_BLIND_LEN + 1];
            hdx_fhir_patient_key(res, key, sizeof(key));
            if (hdx_keyctx_blind(ff->kc, "patient", key, strlen(key), tok) == HDX_OK) {
                hdx_hex(tok, HDX_BLIND_LEN, hex);
                json_object_set_new(local, json_string_value(json_object_get(res, "id")),
                                    json_string(hex));
            }
            sodium_memzero(key, sizeof(key));
        }
    }
    json_array_foreach(entries, i, entry)
    {
        if (failed >= 0) break;
        if (plan[i].status >= 400) continue; /* its ifNoneExist failed (a batch) */
        json_t *res = json_object_get(entry, "resource");
        const char *method =
            json_string_value(json_object_get(json_object_get(entry, "request"), "method"));
        if (res && method && !strcmp(method, "POST") && !plan[i].matched) {
            snprintf(plan[i].id, sizeof(plan[i].id), "%s",
                     json_string_value(json_object_get(res, "id")) ?: "");
        }
        char keep_id[HDX_FHIR_ID_MAX + 1];
        snprintf(keep_id, sizeof(keep_id), "%s", plan[i].id);
        plan_entry(ff, who, entry, local, seen, &plan[i]);
        if (plan[i].method == 'P') snprintf(plan[i].id, sizeof(plan[i].id), "%s", keep_id);
        if (plan[i].method == 'P')
            snprintf(plan[i].part.id, sizeof(plan[i].part.id), "%s", keep_id);
        if (plan[i].status >= 400 && txn) {
            failed = (int)i;
            break;
        }
    }
    if (failed >= 0) {
        char msg[300], expr[48];
        snprintf(msg, sizeof(msg), "entry %d: %s; nothing was stored", failed, plan[failed].error);
        snprintf(expr, sizeof(expr), "Bundle.entry[%d]", failed);
        hdx_front_audit_access(ff->f->api, c, who, "write", "deny", "transaction_refused", NULL, 0,
                               0, 0, "fhir");
        outcome(r, plan[failed].status, plan[failed].code, msg, expr);
        goto out;
    }
    char updated[40];
    int oom = 0;
    json_array_foreach(entries, i, entry)
    {
        struct entry_plan *e = &plan[i];
        json_array_append_new(json_object_get(answer, "entry"), entry_response(ff, e));
        if (e->method == 'G' && e->status < 300) {
            json_t *rq = json_object_get(entry, "request");
            struct bundle_get *g = &w->gets[w->ngets++];
            g->index = i;
            g->url = json_strdup_or_null(json_object_get(rq, "url"), &oom);
            g->if_none_match = json_strdup_or_null(json_object_get(rq, "ifNoneMatch"), &oom);
            g->if_modified_since =
                json_strdup_or_null(json_object_get(rq, "ifModifiedSince"), &oom);
            continue;
        }
        if (e->status >= 300 || e->skip) continue;
        json_t *res = e->method == 'D' ? json_pack("{s:s}", "resourceType", e->type)
                                       : json_incref(json_object_get(entry, "resource"));
        json_object_set_new(res, "id", json_string(e->id));
        set_meta(res, e->version, updated, sizeof(updated));
        char hex[2 * HDX_BLIND_LEN + 1] = "";
        if (e->part.has_patient) hdx_hex(e->part.patient, HDX_BLIND_LEN, hex);
        char url[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 2];
        snprintf(url, sizeof(url), "%s/%s", e->type, e->id);
        json_t *se = json_pack("{s:o, s:{s:s, s:s}}", "resource", res, "request", "method",
                               e->method == 'P'   ? "POST"
                               : e->method == 'U' ? "PUT"
                                                  : "DELETE",
                               "url", url);
        if (hex[0]) json_object_set_new(se, "hdxPatient", json_string(hex));
        json_array_append_new(json_object_get(stored, "entry"), se);
        w->parts[w->nparts++] = e->part;
    }
    if (oom) {
        outcome(r, 503, "transient", "out of memory", NULL);
        goto out;
    }
    if (!w->nparts) { /* nothing to store: reads, refusals, or nothing new */
        bundle_gets_run(ff, c, who, answer, w->gets, w->ngets);
        r->status = 200;
        r->content_type = FHIR_CT;
        r->body = dump_plain(answer, &r->body_len);
        if (!r->body) outcome(r, 503, "transient", "out of memory", NULL);
        goto out;
    }
    if (w->ngets) {
        w->answer_js = json_incref(answer);
        if (who->smart && !(w->smart = malloc(sizeof(*w->smart)))) {
            outcome(r, 503, "transient", "out of memory", NULL);
            goto out;
        }
        if (who->smart) *w->smart = *who->smart;
    } else {
        w->answer = dump_plain(answer, &w->answer_len);
        if (!w->answer) {
            outcome(r, 503, "transient", "out of memory", NULL);
            goto out;
        }
    }
    w->ff = ff;
    w->c = c;
    w->who = *who;
    w->who.smart = NULL;
    w->status = 200;
    w->conditional = conditional;
    w->metric = txn ? HDX_METRIC_FHIR_TRANSACTION : HDX_METRIC_FHIR_BATCH;
    snprintf(w->type, sizeof(w->type), "Bundle");
    w->body = dump_plain(stored, &w->body_len);
    struct hdx_intake_item *it =
        w->body ? hdx_intake_item_new((const uint8_t *)w->body, w->body_len) : NULL;
    if (!it) {
        outcome(r, 503, "transient", "out of memory", NULL);
        goto out;
    }
    for (size_t k = 0; k < w->nparts; k++)
        if (pending_add(ff, w->parts[k].type, w->parts[k].id, w->parts[k].version) != HDX_OK) {
            for (size_t j = 0; j < k; j++)
                pending_done(ff, w->parts[j].type, w->parts[j].id);
            hdx_intake_item_free(it);
            outcome(r, 503, "transient", "too many writes in flight", NULL);
            goto out;
        }
    it->kind = HDX_KIND_FHIR;
    snprintf(it->sender, sizeof(it->sender), "%s", who->user);
    snprintf(it->type, sizeof(it->type), "%s", HDX_FHIR_TXN_TYPE);
    if (w->parts[0].has_patient) memcpy(it->patient, w->parts[0].patient, HDX_BLIND_LEN);
    it->blinded = 1;
    it->on_done = write_done;
    it->done_arg = w;
    if (conditional) ff->cond_busy = 1; /* until its answer: the next one must see it */
    ff->f->env.submit(ff->f->env.arg, it);
    r->deferred = 1;
    w = NULL; /* write_done's */
out:
    write_free(w);
    free(plan);
    json_decref(map);
    json_decref(local);
    json_decref(seen);
    json_decref(stored);
    json_decref(answer);
    json_decref(b);
}

/* ---------- metadata ---------- */

static int capability_build(struct front_fhir *ff)
{
    json_t *resources = json_array();
    for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++) {
        const char *t = supported[i];
        json_t *sp = json_array();
        json_array_append_new(sp, json_pack("{s:s, s:s}", "name", "_id", "type", "token"));
        json_array_append_new(sp, json_pack("{s:s, s:s}", "name", "_lastUpdated", "type", "date"));
        if (!strcmp(t, "Observation")) {
            static const char *const obs[][2] = {{"patient", "reference"},
                                                 {"subject", "reference"},
                                                 {"code", "token"},
                                                 {"category", "token"},
                                                 {"date", "date"}};
            for (size_t k = 0; k < 5; k++)
                json_array_append_new(
                    sp, json_pack("{s:s, s:s}", "name", obs[k][0], "type", obs[k][1]));
        } else if (!strcmp(t, "Patient")) {
            json_array_append_new(sp,
                                  json_pack("{s:s, s:s}", "name", "identifier", "type", "token"));
            json_array_append_new(sp, json_pack("{s:s, s:s}", "name", "name", "type", "string"));
            json_array_append_new(sp, json_pack("{s:s, s:s}", "name", "birthdate", "type", "date"));
        } else if (!strcmp(t, "Device") || !strcmp(t, "Encounter")) {
            json_array_append_new(sp,
                                  json_pack("{s:s, s:s}", "name", "identifier", "type", "token"));
        }
        json_t *ia =
            json_pack("[{s:s},{s:s},{s:s},{s:s},{s:s},{s:s},{s:s},{s:s}]", "code", "read", "code",
                      "vread", "code", "update", "code", "delete", "code", "history-instance",
                      "code", "history-type", "code", "create", "code", "search-type");
        json_t *res = json_pack("{s:s, s:o, s:s, s:b, s:b, s:s, s:b, s:o}", "type", t,
                                "interaction", ia, "versioning", "versioned-update", "readHistory",
                                1, "updateCreate", 0, "conditionalDelete", "not-supported",
                                "conditionalCreate", 1, "searchParam", sp);
        if (!strcmp(t, "Observation"))
            json_object_set_new(res, "searchInclude", json_pack("[s]", "Observation:subject"));
        if (!strcmp(t, "Subscription")) {
#define BACKPORT "http://hl7.org/fhir/uv/subscriptions-backport/"
            json_object_set_new(
                res, "extension",
                json_pack("[{s:s, s:s}]", "url",
                          BACKPORT "StructureDefinition/capabilitystatement-subscriptiontopic-"
                                   "canonical",
                          "valueCanonical", HDX_SUB_TOPIC));
            json_object_set_new(
                res, "supportedProfile",
                json_pack("[s]", BACKPORT "StructureDefinition/backport-subscription"));
            json_object_set_new(
                res, "operation",
                json_pack(
                    "[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "name", "status", "definition",
                    BACKPORT "OperationDefinition/backport-subscription-status", "name", "events",
                    "definition", BACKPORT "OperationDefinition/backport-subscription-events",
                    "name", "get-ws-binding-token", "definition",
                    BACKPORT "OperationDefinition/backport-subscription-get-ws-binding-token"));
#undef BACKPORT
        }
        json_array_append_new(resources, res);
    }
    json_array_append_new(
        resources, json_pack("{s:s, s:[{s:s},{s:s}], s:[{s:s, s:s},{s:s, s:s},{s:s, s:s}]}", "type",
                             "AuditEvent", "interaction", "code", "read", "code", "search-type",
                             "searchParam", "name", "date", "type", "date", "name", "agent", "type",
                             "reference", "name", "patient", "type", "reference"));
    char token_url[sizeof(ff->base_url) + 32];
    snprintf(token_url, sizeof(token_url), "%.*s/auth/token",
             (int)(strlen(ff->base_url) - strlen("/fhir")), ff->base_url);
    json_t *cs = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:[s],"
                           " s:[{s:s, s:o}]}",
                           "resourceType", "CapabilityStatement", "status", "active", "date",
                           "2026-12-02", "kind", "instance", "fhirVersion", "4.0.1", "publisher",
                           "hdx", "software", "name", "hdx", "version", HDX_VERSION,
                           "implementation", "description", "hdx", "url", ff->base_url, "format",
                           "json", "rest", "mode", "server", "resource", resources);
    if (!cs) return HDX_E_NOMEM;
    json_t *rest = json_array_get(json_object_get(cs, "rest"), 0);
    json_object_set_new(
        rest, "security",
        json_pack("{s:b, s:[{s:[{s:s, s:s}]}], s:s, s:[{s:s, s:[{s:s, s:s}]}]}", "cors", 0,
                  "service", "coding", "system",
                  "http://terminology.hl7.org/CodeSystem/restful-security-service", "code",
                  "SMART-on-FHIR", "description",
                  "Sessions (POST /auth/login), integration API keys and client certificates; "
                  "SMART Backend Services token endpoint in /.well-known/smart-configuration",
                  "extension", "url",
                  "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                  "extension", "url", "token", "valueUri", token_url));
    ff->capability = dump_plain(cs, &ff->capability_len);
    json_decref(cs);
    if (!ff->capability) return HDX_E_NOMEM;
    return HDX_OK;
}

/* ---------- dispatch ---------- */

static void route_fhir_inner(void *arg, struct hdx_conn *c, const struct http_req *req,
                             struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct front_fhir *ff = f->fhir;
    struct fhir_path p;
    if (path_parse(req->path, &p)) {
        outcome(r, 404, "not-found", "no such FHIR endpoint", NULL);
        return;
    }
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    if (p.n == 1 && !strcmp(p.type, "metadata") && get) {
        hdx_http_json(r, 200, ff->capability);
        r->content_type = FHIR_CT;
        return;
    }
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) {
        if (r->status == 401) {
            free(r->body);
            r->body = NULL;
            outcome(r, 401, "login", "authentication required: a bearer token", NULL);
            add_header(r, "WWW-Authenticate", "Bearer realm=\"hdx\"");
        }
        return;
    }
    if (hdx_front_is_machine(&who)) {
        /* A machine's granted scope (policy/scope.h) is written for HL7 v2 records; until FHIR
         * checks it per resource, a scoped machine is refused here rather than given more. */
        struct hdx_scope *scope = NULL;
        int src = hdx_scope_load(f->env.ro_store, who.user, &scope, NULL), scoped = scope != NULL;
        free(scope);
        if (src != HDX_OK || scoped) {
            hdx_front_audit_access(f->api, c, &who, "read", "deny", "scoped_principal", NULL, 0, 0,
                                   0, "fhir");
            outcome(r, 403, "forbidden",
                    "a principal with a granted scope cannot use FHIR yet (docs/FHIR.md)", NULL);
            return;
        }
    }
    fhir_dispatch(ff, c, req, &who, &p, r);
}

/* A request of an authenticated principal, by its path: also a Bundle's GET entries'. */
static void fhir_dispatch(struct front_fhir *ff, struct hdx_conn *c, const struct http_req *req,
                          const struct asker *whop, const struct fhir_path *pp,
                          struct hdx_http_reply *r)
{
    struct hdx_front *f = ff->f;
    struct asker who = *whop;
    struct fhir_path p = *pp;
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    if (p.n == 0) {
        if (!strcmp(req->method, "POST"))
            do_bundle(ff, c, req, &who, 0, r);
        else
            outcome(r, 405, "not-supported", "POST a transaction or batch Bundle to the base",
                    NULL);
        return;
    }
    if (!strcmp(p.type, "AuditEvent")) {
        do_audit_events(ff, c, req, &who, &p, r);
        return;
    }
    if (!type_readable(p.type)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "resource type %.40s is not supported", p.type);
        outcome(r, 404, "not-supported", msg, NULL);
        return;
    }
    int post = !strcmp(req->method, "POST"), put = !strcmp(req->method, "PUT"),
        del = !strcmp(req->method, "DELETE");
    char act = (get && p.n == 1) || (post && p.search)  ? 's'
               : get && p.history && !p.vid && !p.id[0] ? 's'
               : get                                    ? 'r'
               : post                                   ? 'c'
               : put                                    ? 'u'
                                                        : 'd';
    if (!smart_covers(&who, p.type, act)) {
        hdx_front_audit_access(f->api, c, &who, "read", "deny", "smart_scope", NULL, 0, 0, 0,
                               "fhir");
        char msg[128];
        snprintf(msg, sizeof(msg), "the access token's scopes do not cover %c on %s", act, p.type);
        outcome(r, 403, "forbidden", msg, NULL);
        return;
    }
    if (p.op[0] && (strcmp(p.type, "Subscription") != 0 || !get))
        outcome(r, 404, "not-supported",
                "operations: GET Subscription/ID/$status, $events and "
                "$get-ws-binding-token",
                NULL);
    else if (p.op[0])
        hdx_front_sub_operation(f, c, req, &who, p.id, p.op, r);
    else if (get && p.n == 1)
        do_search(ff, c, req, &who, p.type, req->query, r);
    else if (post && p.search)
        post_search(ff, c, req, &who, p.type, r);

    else if (get && p.proof)
        do_proof(ff, c, &who, &p, r);
    else if (get && p.history && !p.vid)
        do_history(ff, c, req, &who, &p, r);
    else if (get && p.id[0])
        do_read(ff, c, &who, &p, r);
    else if (post && p.n == 1)
        do_create(ff, c, req, &who, p.type, 1, r);
    else if (put && p.id[0] && !p.history)
        do_update(ff, c, req, &who, &p, r);
    else if (del && p.id[0] && !p.history)
        do_delete(ff, c, req, &who, &p, r);
    else
        outcome(r, 405, "not-supported", "this interaction is not supported on this path", NULL);
}

static void route_fhir(void *arg, struct hdx_conn *c, const struct http_req *req,
                       struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    if (!strcmp(req->path, "/fhir/ws") && !strcmp(req->method, "GET")) {
        /* the websocket channel: its authentication is the binding token it sends */
        hdx_front_sub_ws(f, c, req, r);
        return;
    }
    struct hdx_audit_gate *g = gate_begin(f->fhir, c);
    if (!g) {
        outcome(r, 503, "transient", "out of memory", NULL);
        return;
    }
    route_fhir_inner(arg, c, req, r);
    if (!r->deferred) { /* a write's answer is counted when it goes */
        struct fhir_path p;
        int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
        int post = !strcmp(req->method, "POST");
        enum hdx_metric_fhir_interaction i =
            path_parse(req->path, &p)                        ? HDX_METRIC_FHIR_READ
            : p.n == 1 && !strcmp(p.type, "metadata") && get ? HDX_METRIC_FHIR_CAPABILITIES
            : p.n == 0                                       ? HDX_METRIC_FHIR_TRANSACTION
            : (get && p.n == 1) || (post && p.search)        ? HDX_METRIC_FHIR_SEARCH
            : get && p.history && !p.vid                     ? HDX_METRIC_FHIR_HISTORY
            : get && p.vid                                   ? HDX_METRIC_FHIR_VREAD
            : get                                            ? HDX_METRIC_FHIR_READ
            : post                                           ? HDX_METRIC_FHIR_CREATE
            : !strcmp(req->method, "PUT")                    ? HDX_METRIC_FHIR_UPDATE
                                                             : HDX_METRIC_FHIR_DELETE;
        hdx_metric_fhir(i, r->status);
    }
    hdx_front_gate_end(g, r);
}

int hdx_front_fhir_init(struct hdx_front *f, struct hdx_http *h, char *why, size_t cap)
{
    const struct hdx_conf *conf = f->env.conf;
    struct front_fhir *ff = calloc(1, sizeof(*ff));
    if (!ff) return HDX_E_NOMEM;
    f->fhir = ff;
    ff->f = f;
    ff->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    char db[HDX_PATH_MAX + 16], store[HDX_PATH_MAX];
    snprintf(db, sizeof(db), "%s/fhir.db", conf->dir);
    if (hdx_conf_path(conf, conf->store_path, store, sizeof(store)) != HDX_OK) {
        snprintf(why, cap, "the store path is too long");
        return HDX_E_CONFIG;
    }
    size_t bl = strlen(conf->fhir_base);
    while (bl && conf->fhir_base[bl - 1] == '/')
        bl--;
    if (bl)
        snprintf(ff->base_url, sizeof(ff->base_url), "%.*s/fhir", (int)bl, conf->fhir_base);
    else
        snprintf(ff->base_url, sizeof(ff->base_url), "https://%s/fhir", conf->http_listen);
    snprintf(ff->token_url, sizeof(ff->token_url), "%.*s/auth/token",
             (int)(strlen(ff->base_url) - strlen("/fhir")), ff->base_url);
    struct hdx_fhir_index_env env = {.db_path = db,
                                     .store_path = store,
                                     .kr = f->env.kr,
                                     .v2 = conf->fhir_v2,
                                     .notify = notify_indexed,
                                     .arg = ff};
    int rc = ff->notify_fd < 0 ? HDX_E_IO : HDX_OK;
    if (rc == HDX_OK && !(ff->notify_ev = event_new(f->env.base, ff->notify_fd,
                                                    EV_READ | EV_PERSIST, on_indexed, ff)))
        rc = HDX_E_NOMEM;
    if (rc == HDX_OK) rc = event_add(ff->notify_ev, NULL) ? HDX_E_NOMEM : HDX_OK;
    if (rc == HDX_OK) rc = hdx_keyctx_new(f->env.kr, &ff->kc);
    if (rc == HDX_OK) rc = capability_build(ff);
    if (rc != HDX_OK) snprintf(why, cap, "cannot set up FHIR: %s", hdx_strerror(rc));
    if (rc == HDX_OK) rc = hdx_fhir_index_open(&env, &ff->ix, why, cap);
    if (rc == HDX_OK) rc = hdx_front_sub_init(f, ff->ix, why, cap);
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    for (size_t i = 0; rc == HDX_OK && i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct hdx_http_route a = {methods[i], "/fhir/", route_fhir, f};
        struct hdx_http_route b = {methods[i], "/fhir", route_fhir, f};
        rc = hdx_http_route_add(h, &a);
        if (rc == HDX_OK) rc = hdx_http_route_add(h, &b);
    }
    return rc;
}

void hdx_front_fhir_free(struct hdx_front *f)
{
    struct front_fhir *ff = f->fhir;
    if (!ff) return;
    hdx_front_sub_free(f);
    hdx_fhir_index_close(ff->ix);
    for (struct fhir_write *w = ff->waiting, *n; w; w = n) {
        n = w->next;
        write_free(w);
    }
    for (struct cond_wait *w = ff->cond_head, *n; w; w = n) {
        n = w->next;
        http_req_free(w->req);
        free(w->req);
        free(w);
    }
    if (ff->notify_ev) event_free(ff->notify_ev);
    if (ff->notify_fd >= 0) close(ff->notify_fd);
    hdx_keyctx_free(ff->kc);
    free(ff->pend);
    free(ff->capability);
    free(ff);
    f->fhir = NULL;
}

const char *hdx_front_token_url(struct hdx_front *f)
{
    return f->fhir ? f->fhir->token_url : "";
}

void hdx_front_fhir_committed(struct hdx_front *f, uint64_t seq)
{
    if (f->fhir && f->fhir->ix) hdx_fhir_index_advance(f->fhir->ix, seq);
}
