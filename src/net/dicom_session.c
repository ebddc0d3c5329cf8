#include "net/dicom_session.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dicom/catalog.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/dimse.h"
#include "dicom/dsenc.h"
#include "dicom/match.h"
#include "dicom/query.h"
#include "dicom/sop.h"
#include "dicom/ul.h"
#include "policy/policy.h"
#include "policy/scope.h"
#include "store/record.h"
#include "store/store.h"

/* A Part 10 meta header of hdx's is well under this (six UIDs of 64 bytes, an AE title). */
#define META_MAX 1024
/* Every PDU but P-DATA-TF is small; an A-ASSOCIATE-RQ is the largest (dicom/ul.h). */
#define OTHER_PDU_MAX HDX_UL_RQ_MAX

struct hdx_dicom {
    const struct hdx_conf *conf;
    void (*submit)(void *arg, struct hdx_intake_item *it);
    void *submit_arg;
    const char *const *ts;
    size_t nts;
    struct hdx_dcat *cat; /* what C-FIND searches */
    /* the subscription port's policy (kept current there): the consent directives that
     * withhold a patient from receiving principals withhold it from C-FIND too */
    struct hdx_policy *const *policy;
    struct hdx_keyctx *kc; /* the network thread's: content digests as data sets arrive */
};

/* What a DIMSE request whose data set is still arriving asked for. */
enum pending_kind { PENDING_NONE, PENDING_STORE, PENDING_FIND, PENDING_DISCARD };

struct find;

struct dcm_conn {
    enum hdx_ul_state state;
    struct event *artim, *pdu_timer, *idle;
    int pdu_timer_armed;
    struct hdx_ul_assoc_ac *ac; /* the negotiated contexts, once associated */
    uint32_t peer_max;          /* the requestor's maximum PDU length, 0: unlimited */
    char calling[HDX_UL_AE_LEN + 1];
    /* the command set being assembled, then the request it made */
    uint8_t *cmd;
    size_t cmd_len;
    struct hdx_dimse_cmd q;
    uint8_t q_pctx;
    enum pending_kind pending;
    /* the record being assembled: the meta header (meta_len bytes, made from the command),
     * then the data set as it arrives, so the body is never copied again */
    uint8_t *ds;
    size_t meta_len, ds_len, ds_cap, ds_seen;
    size_t ds_hint; /* the last instance's size: a modality sends many alike */
    int ds_overflow;
    /* the record's content digest (duplicate detection), kept as its bytes arrive so that
     * hashing them overlaps with their transfer instead of following it */
    struct hdx_blind_stream *digest;
    int digest_ok;
    int64_t ds_started_us;
    /* the C-STORE being committed */
    uint16_t store_msg_id;
    uint8_t store_pctx;
    char store_class[HDX_DS_UID_MAX + 1], store_instance[HDX_DS_UID_MAX + 1];
    struct hdx_dcm_keys *store_keys; /* for the catalogue, once it is durable */
    struct find *find;               /* the C-FIND being answered */
    int release_pending;
    uint64_t stored, refused, echoes, finds;
};

static const struct hdx_ul_pctx_result *context(const struct dcm_conn *ss, uint8_t id)
{
    if (!ss->ac) return NULL;
    for (size_t i = 0; i < ss->ac->npctx; i++)
        if (ss->ac->pctx[i].id == id && ss->ac->pctx[i].result == HDX_PCTX_ACCEPT)
            return &ss->ac->pctx[i];
    return NULL;
}

static const char *who(const struct hdx_conn *c)
{
    return c->principal[0] ? c->principal : "-";
}

static int str_eq(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static int is_find_model(const char *uid)
{
    return str_eq(uid, HDX_UID_FIND_PATIENT_ROOT) || str_eq(uid, HDX_UID_FIND_STUDY_ROOT);
}

/* ---------- timers ---------- */

static void start_timer(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void artim_start(struct hdx_conn *c)
{
    struct hdx_dicom *d = c->ctx;
    start_timer(((struct dcm_conn *)c->session)->artim, d->conf->dicom_artim_ms);
}

static void arm_idle(struct hdx_conn *c)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    if (ss->state == HDX_STA6) start_timer(ss->idle, d->conf->dicom_idle_timeout_s * 1000);
}

static void arm_pdu_timer(struct hdx_conn *c, int on)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    if (on && !ss->pdu_timer_armed) {
        start_timer(ss->pdu_timer, d->conf->dicom_artim_ms);
        ss->pdu_timer_armed = 1;
    } else if (!on && ss->pdu_timer_armed) {
        evtimer_del(ss->pdu_timer);
        ss->pdu_timer_armed = 0;
    }
}

/* ---------- writing ---------- */

static void write_pdu(struct hdx_conn *c, const uint8_t *p, size_t n)
{
    if (n) evbuffer_add(bufferevent_get_output(c->bev), p, n);
}

/* Sends A-ABORT and waits (ARTIM) for the peer to close: AA-1 and AA-8. */
static void send_abort(struct hdx_conn *c, uint8_t source, uint8_t reason, const char *event,
                       const char *why)
{
    struct dcm_conn *ss = c->session;
    uint8_t pdu[16];
    hdx_warn(event,
             "peer=%s sender=%s calling=%s state=%s abort_source=%u abort_reason=%u "
             "reason=\"%s\"",
             c->peer, who(c), ss->calling[0] ? ss->calling : "-", hdx_ul_state_name(ss->state),
             source, reason, why);
    write_pdu(c, pdu, hdx_ul_build_abort(source, reason, pdu, sizeof(pdu)));
    ss->state = HDX_STA13;
    evtimer_del(ss->idle);
    artim_start(c);
}

static void provider_abort(struct hdx_conn *c, uint8_t reason, const char *why)
{
    send_abort(c, HDX_ABORT_SOURCE_PROVIDER, reason, "dicom_abort", why);
}

/* A DIMSE message (command set, then the data set when there is one) as P-DATA-TF PDUs of at
 * most the peer's maximum length, into out (an evbuffer) or a malloc'd buffer. */
static int frame_message(struct evbuffer *out, uint32_t peer_max, uint8_t pctx, const uint8_t *cmd,
                         size_t cmd_len, const uint8_t *ds, size_t ds_len)
{
    /* the variable field of a PDU: its PDV item (4 length + 2 header + data) */
    size_t room = peer_max ? peer_max - 6 : (1u << 20);
    for (int part = 0; part < 2; part++) {
        const uint8_t *p = part ? ds : cmd;
        size_t left = part ? ds_len : cmd_len;
        if (part && !ds) break;
        do {
            size_t n = left < room ? left : room;
            uint8_t hdr[HDX_UL_PDATA_OVERHEAD];
            uint8_t control = (uint8_t)((part ? 0 : 1) | (n == left ? 2 : 0));
            hdx_ul_pdata_header(hdr, pctx, control, (uint32_t)n);
            if (evbuffer_add(out, hdr, sizeof(hdr)) != 0 || (n && evbuffer_add(out, p, n) != 0))
                return HDX_E_NOMEM;
            p += n;
            left -= n;
        } while (left);
    }
    return HDX_OK;
}

static void send_response(struct hdx_conn *c, uint8_t pctx, uint16_t command, uint16_t msg_id,
                          const char *cls, const char *inst, uint16_t status, const char *comment)
{
    struct dcm_conn *ss = c->session;
    uint8_t rsp[512];
    size_t unsent = hdx_conn_unsent(c);
    size_t n =
        hdx_dimse_build_rsp(command, msg_id, cls, inst, status, 0, comment, rsp, sizeof(rsp));
    if (!n || frame_message(bufferevent_get_output(c->bev), ss->peer_max, pctx, rsp, n, NULL, 0))
        hdx_error("dicom_response_failed", "peer=%s command=0x%04x", c->peer, command);
    hdx_conn_write_soon(c, unsent);
}

/* A C-STORE refused before it reached the log: its DIMSE status and one log line. */
static void store_refused(struct hdx_conn *c, uint16_t status, const char *why)
{
    struct dcm_conn *ss = c->session;
    char inst[80];
    ss->refused++;
    hdx_metric_rejected(c->tls ? HDX_METRIC_DICOM : HDX_METRIC_DICOM_PLAIN);
    hdx_warn(
        "dicom_store_refused",
        "peer=%s sender=%s calling=%s status=0x%04x instance=%s "
        "reason=\"%s\"",
        c->peer, who(c), ss->calling, status,
        hdx_log_str(inst, sizeof(inst), ss->q.affected_instance[0] ? ss->q.affected_instance : "-"),
        why);
    send_response(c, ss->q_pctx, HDX_C_STORE_RSP, ss->q.message_id, ss->q.affected_class,
                  ss->q.affected_instance, status, why);
}

/* ---------- association ---------- */

/* An association's authentication is an audit record (docs/AUDIT.md, event auth action dicom):
 * the certificate was checked by the connection layer; this is the AE title's binding. */
static void audit_association(struct hdx_conn *c, const char *outcome, const char *reason,
                              const char *called, const char *why)
{
    struct dcm_conn *ss = c->session;
    char detail[HDX_AUDIT_VALUE_MAX + 1];
    snprintf(detail, sizeof(detail), "calling=%s called=%s%s%s", ss->calling[0] ? ss->calling : "-",
             called && called[0] ? called : "-", why ? " why=" : "", why ? why : "");
    struct hdx_audit a = {
        .event = "auth", .action = "dicom", .outcome = outcome, .reason = reason, .detail = detail};
    hdx_conn_audit(c, &a);
}

static void send_reject(struct hdx_conn *c, uint8_t result, uint8_t source, uint8_t reason,
                        const char *code, const char *called, const char *why)
{
    struct dcm_conn *ss = c->session;
    uint8_t pdu[16];
    audit_association(c, "failure", code, called, why);
    char calling[40];
    hdx_warn("dicom_association_rejected",
             "peer=%s sender=%s calling=%s result=%u source=%u reason_code=%u reason=\"%s\"",
             c->peer, who(c),
             hdx_log_str(calling, sizeof(calling), ss->calling[0] ? ss->calling : "-"), result,
             source, reason, why);
    write_pdu(c, pdu, hdx_ul_build_assoc_rj(result, source, reason, pdu, sizeof(pdu)));
    ss->state = HDX_STA13; /* AE-8 */
    artim_start(c);
}

/* The calling AE title must be bound to the certificate's device (to any device on the
 * plaintext port, where there is no certificate). 0 when it is. */
static int calling_bound(struct hdx_conn *c, const char *calling, char *why, size_t cap)
{
    struct hdx_dicom_ae ae;
    int rc = hdx_store_dicom_ae_get(hdx_conn_store(c), calling, &ae);
    if (rc == HDX_E_NOTFOUND) {
        snprintf(why, cap, "calling AE title not bound to any device (hdx ae add)");
        return -1;
    }
    if (rc != HDX_OK) {
        snprintf(why, cap, "cannot read the AE titles: %s", hdx_strerror(rc));
        return -1;
    }
    if (c->tls && strcmp(ae.name, c->principal) != 0) {
        snprintf(why, cap, "calling AE title is bound to another device than the certificate's");
        return -1;
    }
    return 0;
}

/* A principal may C-FIND when it may receive others' records (docs/SECURITY.md: the roles
 * subscriber and gateway) and no scope narrows what it receives: scope terms name senders,
 * types and patients that the catalogue does not judge, so a scoped receiver is refused the
 * query models rather than shown more than its scope. */
static int may_find(struct hdx_conn *c)
{
    if (!c->tls || !hdx_policy_role_has(hdx_role_parse(c->role), HDX_RES_RECORD, HDX_ACT_SUBSCRIBE))
        return 0;
    struct hdx_scope *scope = NULL;
    char text[HDX_DEVICE_SCOPE_MAX + 1];
    int rc = hdx_scope_load(hdx_conn_store(c), c->principal, &scope, text);
    int unscoped = rc == HDX_OK && scope == NULL;
    free(scope);
    return unscoped;
}

/* The policy of each accepted context: C-FIND reads records (may_find, in an uncompressed
 * syntax: an identifier is never compressed), a storage class writes a stream (on the
 * plaintext port the allow-listed legacy sender may). */
static void restrict_contexts(struct hdx_conn *c, struct hdx_ul_assoc_ac *ac)
{
    enum hdx_role role = hdx_role_parse(c->role);
    int finder = -1; /* judged once, when a query model was proposed */
    int may_store = !c->tls || hdx_policy_role_has(role, HDX_RES_STREAM, HDX_ACT_WRITE);
    for (size_t i = 0; i < ac->npctx; i++) {
        struct hdx_ul_pctx_result *r = &ac->pctx[i];
        if (r->result != HDX_PCTX_ACCEPT) continue;
        if (is_find_model(r->abstract_syntax)) {
            int deflated = 0;
            (void)hdx_ds_syntax_of(r->ts, &deflated);
            if (finder < 0) finder = may_find(c);
            if (!finder)
                r->result = HDX_PCTX_USER_REJECT;
            else if (deflated || hdx_ts_compressed(r->ts))
                r->result = HDX_PCTX_TS_UNSUPPORTED;
        } else if (!str_eq(r->abstract_syntax, HDX_UID_VERIFICATION) && !may_store) {
            r->result = HDX_PCTX_USER_REJECT;
        }
        if (r->result != HDX_PCTX_ACCEPT) ac->accepted--;
    }
}

/* AE-6: the A-ASSOCIATE-RQ, judged; then AE-7 (A-ASSOCIATE-AC, Sta6) or AE-8 (-RJ, Sta13). */
static void associate(struct hdx_conn *c, const uint8_t *body, size_t len)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    const char *why = NULL;
    char reason[160];
    uint8_t abort_reason = HDX_ABORT_NOT_SPECIFIED;
    struct hdx_ul_assoc_rq *rq = calloc(1, sizeof(*rq));
    struct hdx_ul_assoc_ac *ac = calloc(1, sizeof(*ac));
    size_t cap = 1024 + HDX_UL_PCTX_MAX * (12 + HDX_UL_UID_MAX);
    uint8_t *pdu = malloc(cap);
    evtimer_del(ss->artim);
    if (!rq || !ac || !pdu) {
        send_reject(c, 2, 3, 1, "busy", NULL, "server out of memory"); /* transient */
        goto out;
    }
    if (hdx_ul_parse_assoc_rq(body, len, rq, &why, &abort_reason) != HDX_OK) {
        ss->state = HDX_STA2; /* the PDU was invalid: Evt19 in Sta2 (AA-1) */
        send_abort(c, HDX_ABORT_SOURCE_USER, 0, "dicom_abort", why);
        goto out;
    }
    snprintf(ss->calling, sizeof(ss->calling), "%s", rq->calling);
    if (!(rq->protocol_version & 1)) {
        send_reject(c, 1, 2, 2, "protocol_version", rq->called, "protocol version not supported");
        goto out;
    }
    if (strcmp(rq->app_context, HDX_UL_APP_CONTEXT) != 0) {
        send_reject(c, 1, 1, 2, "app_context", rq->called,
                    "application context name not supported");
        goto out;
    }
    if (strcmp(rq->called, d->conf->dicom_ae_title) != 0) {
        snprintf(reason, sizeof(reason), "called AE title not recognized (this is %s)",
                 d->conf->dicom_ae_title);
        send_reject(c, 1, 1, 7, "called_ae", rq->called, reason);
        goto out;
    }
    if (calling_bound(c, rq->calling, reason, sizeof(reason)) != 0) {
        send_reject(c, 1, 1, 3, "calling_ae", rq->called, reason);
        goto out;
    }
    hdx_ul_negotiate(rq, hdx_sop_abstract_ok, d->ts, d->nts, ac);
    restrict_contexts(c, ac);
    size_t n =
        hdx_ul_build_assoc_ac(rq, ac, (uint32_t)d->conf->dicom_max_pdu,
                              HDX_UID_IMPLEMENTATION_CLASS, HDX_IMPLEMENTATION_VERSION, pdu, cap);
    if (!n) {
        send_reject(c, 2, 3, 2, "busy", rq->called, "A-ASSOCIATE-AC does not fit");
        goto out;
    }
    write_pdu(c, pdu, n);
    audit_association(c, "success", "-", rq->called, NULL);
    ss->ac = ac;
    ac = NULL;
    ss->peer_max = rq->max_pdu && rq->max_pdu < HDX_UL_PDU_MIN ? HDX_UL_PDU_MIN : rq->max_pdu;
    ss->state = HDX_STA6; /* AE-7 */
    arm_idle(c);
    if (!ss->ac->accepted)
        hdx_warn("dicom_no_context",
                 "peer=%s sender=%s calling=%s contexts=%zu reason=\"no "
                 "presentation context is acceptable\"",
                 c->peer, who(c), ss->calling, rq->npctx);
    hdx_info("dicom_associated",
             "peer=%s sender=%s calling=%s contexts=%zu accepted=%zu "
             "max_pdu=%u implementation=%s tls=%s",
             c->peer, who(c), ss->calling, rq->npctx, ss->ac->accepted, rq->max_pdu,
             rq->impl_class[0] ? rq->impl_class : "-", c->tls ? "yes" : "none");
out:
    free(rq);
    free(ac);
    free(pdu);
}

/* AR-2 then, at once, AR-4: the release is answered once nothing is owed. */
static void release_reply(struct hdx_conn *c)
{
    struct dcm_conn *ss = c->session;
    uint8_t pdu[16];
    ss->release_pending = 0;
    write_pdu(c, pdu, hdx_ul_build_release_rp(pdu, sizeof(pdu)));
    ss->state = HDX_STA13;
    evtimer_del(ss->idle);
    artim_start(c);
}

/* ---------- DIMSE ---------- */

static int ds_reserve(struct dcm_conn *ss, size_t more)
{
    size_t need = ss->meta_len + ss->ds_len + more;
    if (need <= ss->ds_cap) return HDX_OK;
    /* Sized from the last instance, so a stream of alike instances is not grown by doubling
     * (a copy and fresh pages each time) on every one of them. */
    size_t cap = ss->ds_cap ? ss->ds_cap : ss->ds_hint > 64 * 1024 ? ss->ds_hint : 64 * 1024;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(ss->ds, cap);
    if (!p) return HDX_E_NOMEM;
    ss->ds = p;
    ss->ds_cap = cap;
    return HDX_OK;
}

static void ds_reset(struct dcm_conn *ss)
{
    ss->meta_len = ss->ds_len = ss->ds_seen = 0;
    ss->ds_overflow = 0;
    ss->digest_ok = 0;
    ss->pending = PENDING_NONE;
}

/* ---------- C-FIND ---------- */

/* The C-FIND being answered: the parsed query (dicom/query.h) and the ids it matched. */
struct find {
    uint16_t msg_id;
    uint8_t pctx;
    char model[HDX_DS_UID_MAX + 1];
    struct hdx_dquery q;
    uint32_t *ids;
    size_t n, pos;
};

static void find_free(struct find *f)
{
    if (!f) return;
    hdx_dquery_free(&f->q);
    free(f->ids);
    free(f);
}

static void find_status(struct hdx_conn *c, uint16_t status, const char *why)
{
    struct dcm_conn *ss = c->session;
    char calling[40];
    hdx_warn("dicom_find_refused", "peer=%s sender=%s calling=%s status=0x%04x reason=\"%s\"",
             c->peer, who(c), hdx_log_str(calling, sizeof(calling), ss->calling), status, why);
    send_response(c, ss->q_pctx, HDX_C_FIND_RSP, ss->q.message_id, ss->q.affected_class, "", status,
                  why);
}

static void audit_find(struct hdx_conn *c, const struct find *f, const char *outcome,
                       const char *reason, uint64_t count)
{
    static const char *const levels[] = {"-", "PATIENT", "STUDY", "SERIES", "IMAGE"};
    char detail[HDX_AUDIT_VALUE_MAX + 1];
    snprintf(detail, sizeof(detail), "model=%s level=%s keys=%s",
             str_eq(f->model, HDX_UID_FIND_PATIENT_ROOT) ? "PatientRoot" : "StudyRoot",
             levels[f->q.level <= HDX_DCAT_IMAGE ? f->q.level : 0],
             f->q.names[0] ? f->q.names : "-");
    struct hdx_audit a = {.event = "access",
                          .action = "dicom_find",
                          .outcome = outcome,
                          .reason = reason,
                          .count = count,
                          .detail = detail};
    hdx_conn_audit(c, &a);
}

static void find_end(struct hdx_conn *c)
{
    struct dcm_conn *ss = c->session;
    find_free(ss->find);
    ss->find = NULL;
    if (ss->release_pending && !c->inflight) release_reply(c);
}

/* Sends pending responses while the peer reads them, then the final one. */
static void find_continue(struct hdx_conn *c)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    struct find *f = ss->find;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t rsp[512];
    size_t rlen =
        hdx_dimse_build_rsp(HDX_C_FIND_RSP, f->msg_id, f->model, "",
                            f->q.unsupported ? 0xFF01 : 0xFF00, 1, NULL, rsp, sizeof(rsp));
    while (f->pos < f->n && !c->closing) {
        if (hdx_conn_output_full(c)) return; /* dcm_drained brings us back */
        struct hdx_dsenc e;
        int rc = hdx_dquery_answer(&f->q, d->cat, f->ids[f->pos], &e);
        if (rc != HDX_OK || !rlen ||
            frame_message(out, ss->peer_max, f->pctx, rsp, rlen, e.buf, e.len) != HDX_OK) {
            hdx_dsenc_free(&e);
            hdx_error("dicom_find_failed", "peer=%s sender=%s err=%s", c->peer, who(c),
                      hdx_strerror(rc != HDX_OK ? rc : HDX_E_NOMEM));
            send_response(c, f->pctx, HDX_C_FIND_RSP, f->msg_id, f->model, "", 0xA700,
                          "an answer could not be encoded");
            find_end(c);
            return;
        }
        hdx_dsenc_free(&e);
        f->pos++;
    }
    if (c->closing) return;
    send_response(c, f->pctx, HDX_C_FIND_RSP, f->msg_id, f->model, "", 0x0000, NULL);
    hdx_info("dicom_find", "peer=%s sender=%s calling=%s level=%d matches=%zu", c->peer, who(c),
             ss->calling, (int)f->q.level, f->n);
    find_end(c);
}

/* C-CANCEL-RQ for the C-FIND being answered: what is sent is sent; the final status FE00. */
static void find_cancel(struct hdx_conn *c)
{
    struct dcm_conn *ss = c->session;
    struct find *f = ss->find;
    hdx_info("dicom_find_cancelled", "peer=%s sender=%s calling=%s sent=%zu of=%zu", c->peer,
             who(c), ss->calling, f->pos, f->n);
    send_response(c, f->pctx, HDX_C_FIND_RSP, f->msg_id, f->model, "", 0xFE00, NULL);
    find_end(c);
}

struct find_admit {
    struct hdx_conn *c;
    const struct hdx_policy *policy;
    enum hdx_policy_reason first; /* why the first withheld match was */
    int64_t now_us;
};

/* The policy engine on a match's patient, as for a subscription's records (a consent
 * directive denying this recipient role); no policy loaded: nothing is shown. */
static int find_admit(void *arg, const uint8_t *patient)
{
    struct find_admit *fa = arg;
    struct hdx_policy_request req = {.principal = fa->c->principal,
                                     .role = hdx_role_parse(fa->c->role),
                                     .action = HDX_ACT_SUBSCRIBE,
                                     .resource = HDX_RES_RECORD,
                                     .patient = patient,
                                     .purpose = HDX_PURPOSE_TREATMENT,
                                     .now_us = fa->now_us};
    struct hdx_policy_decision dec = {0, HDX_PR_UNKNOWN_ROLE};
    if (fa->policy) hdx_policy_decide(fa->policy, &req, &dec);
    if (!dec.permit && fa->first == HDX_PR_PERMIT) fa->first = dec.reason;
    return dec.permit;
}

/* The identifier is complete: parsed and compiled (dicom/query.h), matched, the answers
 * started. */
static void on_find(struct hdx_conn *c, const struct hdx_ul_pctx_result *ctx)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    char why[200];
    uint16_t status = 0xC000;
    struct find *f = calloc(1, sizeof(*f));
    if (!f) {
        find_status(c, 0xA700, "server out of memory");
        return;
    }
    f->msg_id = ss->q.message_id;
    f->pctx = ctx->id;
    snprintf(f->model, sizeof(f->model), "%s", ctx->abstract_syntax);
    if (ss->ds_overflow) {
        find_status(c, 0xC000, "identifier over 64 KiB");
        goto out;
    }
    if (hdx_dquery_parse(ss->ds, ss->ds_len, hdx_ds_syntax_of(ctx->ts, &(int){0}),
                         str_eq(f->model, HDX_UID_FIND_STUDY_ROOT), &f->q, &status, why,
                         sizeof(why)) != HDX_OK) {
        find_status(c, status, why);
        goto out;
    }
    int more = 0;
    size_t withheld = 0;
    struct find_admit fa = {c, d->policy ? *d->policy : NULL, HDX_PR_PERMIT, hdx_now_us()};
    struct hdx_dcat_admit admit = {find_admit, &fa};
    int rc =
        hdx_dcat_find(d->cat, f->q.level, f->q.keys, f->q.nkeys, &admit,
                      (size_t)d->conf->dicom_max_find_results, &f->ids, &f->n, &more, &withheld);
    hdx_dquery_drop_keys(&f->q); /* PHI, and no longer needed */
    if (rc != HDX_OK) {
        find_status(c, 0xA700, "server out of memory");
        goto out;
    }
    if (more) {
        snprintf(why, sizeof(why),
                 "more than %d matches (dicom.max_find_results): narrow the query",
                 d->conf->dicom_max_find_results);
        audit_find(c, f, "deny", "too_many", 0);
        find_status(c, 0xA700, why);
        goto out;
    }
    ss->finds++;
    audit_find(c, f, "permit", "-", f->n);
    if (withheld) { /* matches the policy kept back: one record, the first one's reason */
        hdx_metric_policy_denial(HDX_METRIC_FRONT_DICOM);
        audit_find(c, f, "deny", hdx_policy_reason_name(fa.first), withheld);
    }
    ss->find = f;
    f = NULL;
    find_continue(c);
out:
    find_free(f);
}

/* A command set is complete. */
static void on_command(struct hdx_conn *c, const struct hdx_ul_pctx_result *ctx)
{
    struct dcm_conn *ss = c->session;
    const char *why = NULL;
    int rc = hdx_dimse_parse(ss->cmd, ss->cmd_len, &ss->q, &why);
    ss->cmd_len = 0;
    if (rc != HDX_OK) {
        provider_abort(c, HDX_ABORT_INVALID_PARAM, why);
        return;
    }
    if (ss->find) { /* only its cancellation may come while a C-FIND is being answered */
        if (ss->q.command == HDX_C_CANCEL_RQ && ss->q.responded_id == ss->find->msg_id)
            find_cancel(c);
        else if (ss->q.command != HDX_C_CANCEL_RQ)
            provider_abort(c, HDX_ABORT_UNEXPECTED_PDU,
                           "a request while a C-FIND is being answered (no asynchronous "
                           "operations window was granted)");
        return;
    }
    ss->q_pctx = ctx->id;
    int has_ds = ss->q.data_set_type != HDX_DIMSE_NO_DATASET;
    ds_reset(ss);
    ss->ds_started_us = hdx_monotonic_us();
    switch (ss->q.command) {
    case HDX_C_ECHO_RQ:
        if (has_ds) {
            ss->pending = PENDING_DISCARD;
            return;
        }
        ss->echoes++;
        send_response(c, ctx->id, HDX_C_ECHO_RSP, ss->q.message_id, ss->q.affected_class, "",
                      0x0000, NULL);
        return;
    case HDX_C_STORE_RQ: {
        if (!has_ds) {
            store_refused(c, 0xC000, "C-STORE-RQ without a data set");
            return;
        }
        ss->pending = PENDING_STORE;
        /* The meta header names the command's class and instance: the data set must carry
         * the same ones or it is refused (on_store), so it is right for what gets stored. */
        uint8_t meta[META_MAX];
        size_t mlen = hdx_dcm_meta_build(ss->q.affected_class, ss->q.affected_instance, ctx->ts,
                                         HDX_UID_IMPLEMENTATION_CLASS, HDX_IMPLEMENTATION_VERSION,
                                         ss->calling, meta, sizeof(meta));
        if (mlen && ds_reserve(ss, mlen) == HDX_OK) {
            memcpy(ss->ds, meta, mlen);
            ss->meta_len = mlen;
            struct hdx_dicom *d = c->ctx;
            if (d->kc && !ss->digest && hdx_blind_stream_new(d->kc, &ss->digest) != HDX_OK)
                ss->digest = NULL;
            ss->digest_ok = ss->digest && hdx_blind_stream_begin(ss->digest, "content") == HDX_OK &&
                            hdx_blind_stream_update(ss->digest, meta, mlen) == HDX_OK;
        }
        return;
    }
    case HDX_C_FIND_RQ:
        if (!is_find_model(ctx->abstract_syntax) ||
            !str_eq(ss->q.affected_class, ctx->abstract_syntax)) {
            if (has_ds) {
                ss->pending = PENDING_DISCARD;
                return;
            }
            find_status(c, 0xA900, "C-FIND-RQ on a context that is not its query/retrieve model");
            return;
        }
        if (!has_ds) {
            find_status(c, 0xC000, "C-FIND-RQ without an identifier");
            return;
        }
        ss->pending = PENDING_FIND;
        return;
    case HDX_C_CANCEL_RQ:
        return; /* a late cancel: the C-FIND it names has ended */
    default:
        if (has_ds) {
            ss->pending = PENDING_DISCARD;
            return;
        }
        send_response(c, ctx->id, (uint16_t)(ss->q.command | 0x8000), ss->q.message_id,
                      ss->q.affected_class, "", 0x0211, "unrecognized operation");
        return;
    }
}

/* The C-STORE's data set is complete: checked, then handed to the commit pipeline. */
static void on_store(struct hdx_conn *c, const struct hdx_ul_pctx_result *ctx)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    char why[200];
    if (ss->ds_overflow) {
        snprintf(why, sizeof(why), "data set of %zu bytes exceeds dicom.max_instance (%zu)",
                 ss->ds_seen, d->conf->dicom_max_instance);
        store_refused(c, 0xA700, why);
        return;
    }
    if (!ss->ds_len) {
        store_refused(c, 0xC000, "empty data set");
        return;
    }
    int deflated = 0;
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(ctx->ts, &deflated);
    const uint8_t *ds = ss->ds + ss->meta_len;
    uint8_t *inflated = NULL;
    size_t walk_len = ss->ds_len;
    struct hdx_ds_limits lim;
    struct hdx_ds_error err = {0};
    struct hdx_dcm_keys *k = calloc(1, sizeof(*k));
    if (!k) {
        store_refused(c, 0xA700, "server out of memory");
        return;
    }
    hdx_ds_limits_default(&lim);
    int rc = HDX_OK;
    if (deflated) {
        rc = hdx_ds_inflate(ds, ss->ds_len, d->conf->dicom_max_instance, &inflated, &walk_len);
        if (rc == HDX_E_TOOBIG) {
            snprintf(why, sizeof(why), "inflated data set exceeds dicom.max_instance (%zu)",
                     d->conf->dicom_max_instance);
            store_refused(c, 0xA700, why);
            goto out;
        }
        if (rc != HDX_OK) {
            store_refused(c, 0xC000, "deflated data set does not inflate");
            goto out;
        }
    }
    rc = hdx_dcm_extract(inflated ? inflated : ds, walk_len, syn, &lim, k, &err);
    if (rc != HDX_OK) {
        snprintf(why, sizeof(why), "cannot understand the data set: %s at offset %zu",
                 err.why ? err.why : "malformed", err.offset);
        store_refused(c, 0xC000, why);
        goto out;
    }
    if (!k->sop_class[0] || !k->sop_instance[0]) {
        store_refused(c, 0xA900, "data set has no SOP Class UID or SOP Instance UID");
        goto out;
    }
    if (!str_eq(k->sop_class, ctx->abstract_syntax) ||
        !str_eq(k->sop_class, ss->q.affected_class)) {
        store_refused(c, 0xA900,
                      "SOP Class UID of the data set differs from the presentation context's "
                      "or the command's");
        goto out;
    }
    if (!str_eq(k->sop_instance, ss->q.affected_instance)) {
        store_refused(c, 0xA900, "SOP Instance UID of the data set differs from the command's");
        goto out;
    }
    struct hdx_intake_item *it = ss->meta_len ? calloc(1, sizeof(*it)) : NULL;
    uint8_t rsp[512];
    size_t rlen = hdx_dimse_build_rsp(HDX_C_STORE_RSP, ss->q.message_id, k->sop_class,
                                      k->sop_instance, 0x0000, 0, NULL, rsp, sizeof(rsp));
    struct evbuffer *framed = evbuffer_new();
    if (!it || !rlen || !framed ||
        frame_message(framed, ss->peer_max, ctx->id, rsp, rlen, NULL, 0) != HDX_OK) {
        free(it);
        if (framed) evbuffer_free(framed);
        store_refused(c, 0xA700, "server out of memory");
        goto out;
    }
    /* The record's body is the Part 10 file, already in place: the buffer becomes the item's. */
    it->body = ss->ds;
    it->body_len = ss->meta_len + ss->ds_len;
    ss->ds_hint = it->body_len <= 4 * 1024 * 1024 ? it->body_len : 0;
    ss->ds = NULL;
    ss->ds_cap = 0;
    it->reply_len = evbuffer_get_length(framed);
    it->reply = malloc(it->reply_len);
    if (it->reply)
        evbuffer_remove(framed, it->reply, it->reply_len);
    else
        it->reply_len = 0;
    evbuffer_free(framed);
    it->kind = HDX_KIND_DICOM;
    /* the digest of exactly the body's bytes, meta header and data set, as they arrived */
    it->content_given = ss->digest_ok && hdx_blind_stream_final(ss->digest, it->content) == HDX_OK;
    ss->digest_ok = 0;
    snprintf(it->sender, sizeof(it->sender), "%s", c->principal);
    snprintf(it->type, sizeof(it->type), "%s", hdx_sop_storage_name(k->sop_class));
    snprintf(it->control_id, sizeof(it->control_id), "%s", k->sop_instance);
    snprintf(it->patient_id, sizeof(it->patient_id), "%s", k->patient_id);
    it->origin = c;
    it->received_us = ss->ds_started_us;
    ss->store_msg_id = ss->q.message_id;
    ss->store_pctx = ctx->id;
    memcpy(ss->store_class, k->sop_class, sizeof(ss->store_class));
    memcpy(ss->store_instance, k->sop_instance, sizeof(ss->store_instance));
    c->inflight++;
    hdx_metric_ingest(c->tls ? HDX_METRIC_DICOM : HDX_METRIC_DICOM_PLAIN);
    ss->store_keys = k;
    k = NULL;
    d->submit(d->submit_arg, it);
out:
    if (inflated) {
        sodium_memzero(inflated, walk_len);
        free(inflated);
    }
    if (k) {
        sodium_memzero(k, sizeof(*k)); /* patient name and id */
        free(k);
    }
}

static void on_dataset(struct hdx_conn *c, const struct hdx_ul_pctx_result *ctx)
{
    struct dcm_conn *ss = c->session;
    enum pending_kind kind = ss->pending;
    ss->pending = PENDING_NONE;
    if (kind == PENDING_STORE) {
        on_store(c, ctx);
    } else if (kind == PENDING_FIND) {
        on_find(c, ctx);
    } else { /* a request hdx does not carry a data set for */
        uint16_t status = ss->q.command == HDX_C_ECHO_RQ ? 0xC000 : 0x0211;
        send_response(c, ctx->id, (uint16_t)(ss->q.command | 0x8000), ss->q.message_id,
                      ss->q.affected_class, "", status,
                      status == 0xC000 ? "C-ECHO-RQ with a data set" : "unrecognized operation");
    }
    if (ss->ds && ss->ds_cap > 4 * 1024 * 1024) { /* one large instance should not pin memory */
        free(ss->ds);
        ss->ds = NULL;
        ss->ds_cap = 0;
    }
    ds_reset(ss);
}

/* DT-2: the PDVs of one P-DATA-TF. */
static void pdata(struct hdx_conn *c, const uint8_t *body, size_t len)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    struct hdx_dcur cur = hdx_dcur_make(body, len);
    struct hdx_ul_pdv pdv;
    const char *why = NULL;
    int n = 0, rc;
    while (!c->closing && ss->state == HDX_STA6 &&
           (rc = hdx_ul_pdv_next(&cur, &pdv, &why)) == HDX_OK) {
        const struct hdx_ul_pctx_result *ctx = context(ss, pdv.pctx_id);
        n++;
        if (!ctx) {
            provider_abort(c, HDX_ABORT_INVALID_PARAM,
                           "PDV on a presentation context that was not accepted");
            return;
        }
        if (c->inflight) {
            provider_abort(c, HDX_ABORT_UNEXPECTED_PDU,
                           "a request while another is outstanding (no asynchronous operations "
                           "window was granted)");
            return;
        }
        if (pdv.control & 1) { /* command */
            if (ss->pending != PENDING_NONE) {
                provider_abort(c, HDX_ABORT_UNEXPECTED_PARAM,
                               "command fragment while a data set was expected");
                return;
            }
            if (ss->cmd_len + pdv.len > HDX_DIMSE_CMD_MAX) {
                provider_abort(c, HDX_ABORT_INVALID_PARAM, "command set over 64 KiB");
                return;
            }
            if (!ss->cmd && !(ss->cmd = malloc(HDX_DIMSE_CMD_MAX))) {
                provider_abort(c, HDX_ABORT_NOT_SPECIFIED, "server out of memory");
                return;
            }
            memcpy(ss->cmd + ss->cmd_len, pdv.data, pdv.len);
            ss->cmd_len += pdv.len;
            if (pdv.control & 2) on_command(c, ctx);
            continue;
        }
        if (ss->pending == PENDING_NONE || pdv.pctx_id != ss->q_pctx) {
            provider_abort(c, HDX_ABORT_UNEXPECTED_PARAM,
                           ss->pending == PENDING_NONE
                               ? "data set fragment without a command that announced one"
                               : "data set fragment on another presentation context than its "
                                 "command's");
            return;
        }
        ss->ds_seen += pdv.len;
        if ((ss->pending == PENDING_STORE || ss->pending == PENDING_FIND) && !ss->ds_overflow) {
            size_t max =
                ss->pending == PENDING_FIND ? HDX_DQUERY_ID_MAX : d->conf->dicom_max_instance;
            if (ss->ds_len + pdv.len > max)
                ss->ds_overflow = 1; /* read to its end, answered A700, never kept */
            else if (ds_reserve(ss, pdv.len) != HDX_OK) {
                provider_abort(c, HDX_ABORT_NOT_SPECIFIED, "server out of memory");
                return;
            } else {
                memcpy(ss->ds + ss->meta_len + ss->ds_len, pdv.data, pdv.len);
                ss->ds_len += pdv.len;
                if (ss->digest_ok && ss->pending == PENDING_STORE)
                    ss->digest_ok =
                        hdx_blind_stream_update(ss->digest, pdv.data, pdv.len) == HDX_OK;
            }
        }
        if (pdv.control & 2) on_dataset(c, ctx);
    }
    if (c->closing || ss->state != HDX_STA6) return;
    if (rc != HDX_E_NOTFOUND)
        provider_abort(c, HDX_ABORT_INVALID_PARAM, why ? why : "malformed PDV");
    else if (n == 0)
        provider_abort(c, HDX_ABORT_INVALID_PARAM, "P-DATA-TF without a PDV");
}

/* ---------- the state machine ---------- */

static void close_now(struct hdx_conn *c, const char *reason)
{
    struct dcm_conn *ss = c->session;
    ss->state = HDX_STA1;
    hdx_conn_log_close(c, "connection_closed", reason);
    hdx_conn_close(c, 0);
}

/* One event and the action Table 9-10 names for it in the current state. */
static void ul_event(struct hdx_conn *c, enum hdx_ul_event evt, const uint8_t *body, size_t len)
{
    struct dcm_conn *ss = c->session;
    enum hdx_ul_state next;
    enum hdx_ul_action act = hdx_ul_transition(ss->state, evt, &next);
    char why[120];
    switch (act) {
    case HDX_AE6:
        ss->state = HDX_STA3;
        associate(c, body, len);
        return;
    case HDX_DT2:
        ss->state = next;
        pdata(c, body, len);
        return;
    case HDX_AR2:
        ss->state = HDX_STA8;
        if (c->inflight || ss->find)
            ss->release_pending = 1; /* answered after the outstanding C-STORE or C-FIND */
        else
            release_reply(c);
        return;
    case HDX_AA3: /* the peer aborted */
        hdx_info("dicom_aborted_by_peer", "peer=%s sender=%s calling=%s state=%s", c->peer, who(c),
                 ss->calling[0] ? ss->calling : "-", hdx_ul_state_name(ss->state));
        close_now(c, "peer aborted");
        return;
    case HDX_AA6: /* Sta13: whatever arrives is ignored until the close */
    case HDX_ACT_NONE:
        if (act == HDX_AA6 || evt == HDX_EVT17) return;
        break;
    case HDX_AA1:
        send_abort(c, HDX_ABORT_SOURCE_USER, 0, "dicom_abort",
                   evt == HDX_EVT19 ? "not a DICOM PDU (or not one expected before association)"
                                    : "PDU not expected before association");
        return;
    case HDX_AA2:
    case HDX_AA4:
    case HDX_AA5:
    case HDX_AR5:
        close_now(c, act == HDX_AA2 ? "ARTIM expired" : "closed");
        return;
    case HDX_AA7:
        send_abort(c, HDX_ABORT_SOURCE_PROVIDER, HDX_ABORT_UNEXPECTED_PDU, "dicom_abort",
                   "PDU after the association ended");
        return;
    case HDX_AA8:
        snprintf(why, sizeof(why), "%s in %s",
                 evt == HDX_EVT19 ? "unrecognized or invalid PDU" : "unexpected PDU",
                 hdx_ul_state_name(ss->state));
        provider_abort(c, evt == HDX_EVT19 ? HDX_ABORT_UNRECOGNIZED_PDU : HDX_ABORT_UNEXPECTED_PDU,
                       why);
        return;
    default:
        break;
    }
    /* An action of the requestor's side, which an acceptor never takes. */
    snprintf(why, sizeof(why), "%s in %s (not an acceptor's action)", hdx_ul_action_name(act),
             hdx_ul_state_name(ss->state));
    provider_abort(c, HDX_ABORT_UNEXPECTED_PDU, why);
}

static void on_artim(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    struct dcm_conn *ss = c->session;
    if (c->closing) return;
    if (ss->state == HDX_STA2)
        hdx_warn("dicom_artim_expired",
                 "peer=%s sender=%s state=Sta2 reason=\"no "
                 "A-ASSOCIATE-RQ within dicom.artim_ms\"",
                 c->peer, who(c));
    ul_event(c, HDX_EVT18, NULL, 0);
}

static void on_pdu_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    struct dcm_conn *ss = c->session;
    ss->pdu_timer_armed = 0;
    if (c->closing) return;
    if (ss->state == HDX_STA13) {
        close_now(c, "ARTIM expired");
        return;
    }
    provider_abort(c, HDX_ABORT_NOT_SPECIFIED, "a PDU did not complete within dicom.artim_ms");
    hdx_conn_close(c, 0);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_conn *c = arg;
    struct dcm_conn *ss = c->session;
    if (c->closing || ss->state != HDX_STA6) return;
    if (c->inflight || ss->find) {
        arm_idle(c);
        return;
    }
    provider_abort(c, HDX_ABORT_NOT_SPECIFIED, "no PDU for dicom.idle_timeout_s");
    hdx_conn_close(c, 0);
}

static void dcm_read(struct hdx_conn *c)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* dcmtk's SCUs (Debian's build) leave Nagle on and write a C-STORE's command PDU and its
     * data set apart: with Linux's delayed ACK the data set then waited up to 40 ms for our ACK
     * of the command (measured: 44 ms per instance on one association). Quick ACKs end the
     * wait; the kernel clears the flag by itself, so it is set again on every read. */
    int one = 1;
    (void)setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    while (!c->closing) {
        size_t len = evbuffer_get_length(in);
        if (ss->state == HDX_STA13 || ss->state == HDX_STA1) { /* AA-6: ignored until the close */
            evbuffer_drain(in, len);
            return;
        }
        if (c->inflight || ss->release_pending) {
            hdx_conn_pause(c, HDX_PAUSE_SESSION); /* one operation at a time */
            arm_pdu_timer(c, 0);
            return;
        }
        if (hdx_conn_output_full(c)) {
            hdx_conn_pause(c, HDX_PAUSE_OUTPUT);
            arm_pdu_timer(c, 0);
            return;
        }
        uint8_t hdr[HDX_UL_HEADER_LEN], type;
        uint32_t blen;
        if (len < HDX_UL_HEADER_LEN ||
            evbuffer_copyout(in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr) ||
            hdx_ul_pdu_header(hdr, sizeof(hdr), &type, &blen) != HDX_OK) {
            arm_pdu_timer(c, len > 0);
            return;
        }
        enum hdx_ul_event evt = hdx_ul_pdu_event(type);
        size_t max = type == HDX_PDU_P_DATA ? (size_t)d->conf->dicom_max_pdu : OTHER_PDU_MAX;
        if (evt == HDX_EVT19) { /* not a PDU type: nothing after it can be framed */
            evbuffer_drain(in, len);
            ul_event(c, HDX_EVT19, NULL, 0);
            return;
        }
        if (blen > max) {
            char why[160];
            snprintf(why, sizeof(why), "PDU of %u bytes exceeds the maximum of %zu%s", blen, max,
                     type == HDX_PDU_P_DATA ? " (dicom.max_pdu, as negotiated)" : "");
            evbuffer_drain(in, len);
            if (ss->state == HDX_STA2)
                send_abort(c, HDX_ABORT_SOURCE_USER, 0, "dicom_abort", why);
            else
                provider_abort(c, HDX_ABORT_INVALID_PARAM, why);
            return;
        }
        if (len < HDX_UL_HEADER_LEN + (size_t)blen) {
            arm_pdu_timer(c, 1);
            return;
        }
        arm_pdu_timer(c, 0);
        const uint8_t *pdu = evbuffer_pullup(in, (ev_ssize_t)(HDX_UL_HEADER_LEN + blen));
        if (!pdu) {
            provider_abort(c, HDX_ABORT_NOT_SPECIFIED, "server out of memory");
            return;
        }
        arm_idle(c);
        ul_event(c, evt, pdu + HDX_UL_HEADER_LEN, blen);
        evbuffer_drain(in, HDX_UL_HEADER_LEN + blen);
    }
}

static void keys_drop(struct dcm_conn *ss)
{
    if (!ss->store_keys) return;
    sodium_memzero(ss->store_keys, sizeof(*ss->store_keys));
    free(ss->store_keys);
    ss->store_keys = NULL;
}

void hdx_dicom_stored(struct hdx_dicom *d, const struct hdx_dcm_keys *k,
                      const struct hdx_intake_item *it)
{
    int lossy = 0;
    static const uint8_t none[HDX_BLIND_LEN];
    int has = memcmp(it->patient, none, sizeof(none)) != 0;
    int rc = hdx_dcat_add(d->cat, k, it->seq, has ? it->patient : NULL, &lossy);
    if (rc != HDX_OK || lossy)
        hdx_warn("dicom_catalog_add", "seq=%llu err=%s reason=\"%s\"", (unsigned long long)it->seq,
                 hdx_strerror(rc),
                 rc != HDX_OK ? "not findable by C-FIND or QIDO-RS until hdxd restarts"
                              : "a value is not valid in its Specific Character Set: "
                                "not findable by that value");
}

struct hdx_dcat *hdx_dicom_catalog(struct hdx_dicom *d)
{
    return d->cat;
}

int hdx_dicom_file_check(const struct hdx_dicom *d, const uint8_t *p, size_t n,
                         struct hdx_dcm_keys *k, char *ts, size_t ts_cap, uint16_t *status,
                         char *why, size_t cap)
{
    struct hdx_dcm_file f;
    struct hdx_ds_error err = {0};
    struct hdx_ds_limits lim;
    uint8_t *inflated = NULL;
    size_t walk_len = 0, nts = 0;
    int deflated = 0, rc;
    memset(k, 0, sizeof(*k));
    hdx_ds_limits_default(&lim);
    *status = 0xC000;
    if (hdx_dcm_file_parse(p, n, &f, &err) != HDX_OK) {
        snprintf(why, cap, "not a DICOM Part 10 file: %s at offset %zu",
                 err.why ? err.why : "malformed", err.offset);
        return HDX_E_INVAL;
    }
    snprintf(ts, ts_cap, "%s", f.ts);
    const char *const *acc = hdx_ts_accepted(&nts);
    size_t i = 0;
    while (i < nts && strcmp(acc[i], f.ts) != 0)
        i++;
    if (i == nts) {
        *status = 0xA900;
        snprintf(why, cap, "transfer syntax %s is not one hdx accepts (docs/DICOM-CONFORMANCE.md)",
                 hdx_uid_valid(f.ts) ? f.ts : "(not a UID)");
        return HDX_E_INVAL;
    }
    if (n - f.dataset_off > d->conf->dicom_max_instance) {
        *status = 0xA700;
        snprintf(why, cap, "data set of %zu bytes exceeds dicom.max_instance (%zu)",
                 n - f.dataset_off, d->conf->dicom_max_instance);
        return HDX_E_TOOBIG;
    }
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(f.ts, &deflated);
    const uint8_t *ds = p + f.dataset_off;
    walk_len = n - f.dataset_off;
    if (deflated) {
        rc = hdx_ds_inflate(ds, walk_len, d->conf->dicom_max_instance, &inflated, &walk_len);
        if (rc != HDX_OK) {
            *status = rc == HDX_E_TOOBIG ? 0xA700 : 0xC000;
            snprintf(why, cap, "%s",
                     rc == HDX_E_TOOBIG ? "inflated data set exceeds dicom.max_instance"
                                        : "deflated data set does not inflate");
            return rc == HDX_E_TOOBIG ? HDX_E_TOOBIG : HDX_E_INVAL;
        }
    }
    rc = hdx_dcm_extract(inflated ? inflated : ds, walk_len, syn, &lim, k, &err);
    if (inflated) {
        sodium_memzero(inflated, walk_len);
        free(inflated);
    }
    if (rc != HDX_OK) {
        snprintf(why, cap, "cannot understand the data set: %s at offset %zu",
                 err.why ? err.why : "malformed", err.offset);
        return HDX_E_INVAL;
    }
    *status = 0xA900;
    if (!k->sop_class[0] || !k->sop_instance[0] || !k->study_uid[0] || !k->series_uid[0]) {
        snprintf(why, cap, "data set lacks SOP Class, SOP Instance, Study or Series Instance UID");
        return HDX_E_INVAL;
    }
    if (strcmp(k->sop_class, f.sop_class) != 0 || strcmp(k->sop_instance, f.sop_instance) != 0) {
        snprintf(why, cap,
                 "SOP Class or Instance UID of the data set differs from the meta "
                 "header's");
        return HDX_E_INVAL;
    }
    if (!hdx_sop_storage_name(k->sop_class)) {
        *status = 0x0122;
        snprintf(why, cap, "SOP class %s is not a storage class hdx accepts",
                 hdx_uid_valid(k->sop_class) ? k->sop_class : "(not a UID)");
        return HDX_E_INVAL;
    }
    *status = 0;
    return HDX_OK;
}

void hdx_dicom_done(struct hdx_conn *c, const struct hdx_intake_item *it)
{
    struct hdx_dicom *d = c->ctx;
    struct dcm_conn *ss = c->session;
    /* Durable whatever became of the connection: findable from now on. A duplicate's seq is
     * the earlier record's, which the catalogue already holds. */
    if (it->status == HDX_OK && ss->store_keys) hdx_dicom_stored(d, ss->store_keys, it);
    keys_drop(ss);
    if (!c->closing && ss->state != HDX_STA13) {
        if (it->status == HDX_OK && it->reply_len) {
            write_pdu(c, it->reply, it->reply_len);
            ss->stored++;
            if (it->received_us) hdx_metric_ack_latency(hdx_monotonic_us() - it->received_us);
        } else {
            const char *why = it->status == HDX_OK ? "stored, but the response could not be "
                                                     "prepared; send it again"
                              : it->status == HDX_E_INTEGRITY
                                  ? "not stored: log integrity alarm, hdx is read-only"
                                  : "not stored (storage failure); send it again later";
            ss->refused++;
            hdx_warn("dicom_store_failed", "peer=%s sender=%s calling=%s status=0x%04x err=%s",
                     c->peer, who(c), ss->calling, 0xA700, hdx_strerror(it->status));
            send_response(c, ss->store_pctx, HDX_C_STORE_RSP, ss->store_msg_id, ss->store_class,
                          ss->store_instance, 0xA700, why);
        }
    }
    hdx_conn_settle(c);
    if (c->closing) return;
    if (ss->release_pending) {
        release_reply(c);
        return;
    }
    hdx_conn_resume(c, HDX_PAUSE_SESSION);
}

/* ---------- session ops ---------- */

static int tls_role_allowed(const char *role)
{
    enum hdx_role r = hdx_role_parse(role);
    return hdx_policy_role_has(r, HDX_RES_STREAM, HDX_ACT_WRITE) ||
           hdx_policy_role_has(r, HDX_RES_RECORD, HDX_ACT_SUBSCRIBE);
}

static int plain_role_allowed(const char *role)
{
    return strcmp(role, "legacy") == 0;
}

static int dcm_open(struct hdx_conn *c)
{
    struct dcm_conn *ss = calloc(1, sizeof(*ss));
    if (!ss) return -1;
    c->session = ss;
    ss->state = HDX_STA2; /* Evt5 in Sta1: AE-5, transport open, ARTIM started */
    ss->artim = evtimer_new(hdx_conn_base(c), on_artim, c);
    ss->pdu_timer = evtimer_new(hdx_conn_base(c), on_pdu_timeout, c);
    ss->idle = evtimer_new(hdx_conn_base(c), on_idle, c);
    if (!ss->artim || !ss->pdu_timer || !ss->idle) return -1;
    artim_start(c);
    return 0;
}

/* Refused after the handshake (role, too many connections for the principal): the request is
 * answered A-ASSOCIATE-RJ, whatever it says. */
static void dcm_refuse(struct hdx_conn *c, const char *why)
{
    uint8_t pdu[16];
    int transient = strstr(why, "too many") != NULL;
    write_pdu(c, pdu,
              hdx_ul_build_assoc_rj(transient ? 2 : 1, transient ? 3 : 1, transient ? 2 : 1, pdu,
                                    sizeof(pdu)));
}

static void dcm_free(struct hdx_conn *c)
{
    struct dcm_conn *ss = c->session;
    if (!ss) return;
    if (ss->artim) event_free(ss->artim);
    if (ss->pdu_timer) event_free(ss->pdu_timer);
    if (ss->idle) event_free(ss->idle);
    if (ss->ds) {
        sodium_memzero(ss->ds, ss->ds_cap); /* an instance is PHI */
        free(ss->ds);
    }
    if (ss->cmd) free(ss->cmd);
    hdx_blind_stream_free(ss->digest);
    find_free(ss->find);
    keys_drop(ss);
    free(ss->ac);
    free(ss);
    c->session = NULL;
}

static void dcm_describe(const struct hdx_conn *c, char *buf, size_t cap)
{
    const struct dcm_conn *ss = c->session;
    if (!ss) return;
    char calling[40];
    snprintf(buf, cap, " calling=%s state=%s stored=%llu refused=%llu echoes=%llu finds=%llu",
             hdx_log_str(calling, sizeof(calling), ss->calling[0] ? ss->calling : "-"),
             hdx_ul_state_name(ss->state), (unsigned long long)ss->stored,
             (unsigned long long)ss->refused, (unsigned long long)ss->echoes,
             (unsigned long long)ss->finds);
}

static void dcm_drained(struct hdx_conn *c)
{
    struct dcm_conn *ss = c->session;
    if (!c->closing && ss->find) find_continue(c);
    if (c->closing || c->inflight || ss->release_pending) return;
    hdx_conn_resume(c, HDX_PAUSE_SESSION);
}

const struct hdx_session_ops hdx_dicom_tls_ops = {
    .port = "dicom",
    .role_allowed = tls_role_allowed,
    .open = dcm_open,
    .refuse = dcm_refuse,
    .read = dcm_read,
    .drained = dcm_drained,
    .free = dcm_free,
    .describe = dcm_describe,
};

const struct hdx_session_ops hdx_dicom_plain_ops = {
    .port = "dicom-plain",
    .role_allowed = plain_role_allowed,
    .open = dcm_open,
    .refuse = dcm_refuse,
    .read = dcm_read,
    .drained = dcm_drained,
    .free = dcm_free,
    .describe = dcm_describe,
};

int hdx_dicom_new(const struct hdx_conf *conf,
                  void (*submit)(void *arg, struct hdx_intake_item *it), void *submit_arg,
                  struct hdx_dicom **out, char *why, size_t cap)
{
    if (!hdx_admin_ae_title_valid(conf->dicom_ae_title)) {
        snprintf(why, cap,
                 "dicom.ae_title: '%s' is not an AE title (1-16 printable ASCII, no "
                 "backslash, no leading or trailing space)",
                 conf->dicom_ae_title);
        return HDX_E_CONFIG;
    }
    int rc = hdx_sop_add_storage(conf->dicom_storage_classes, why, cap);
    if (rc != HDX_OK) return rc;
    struct hdx_dicom *d = calloc(1, sizeof(*d));
    if (!d) return HDX_E_NOMEM;
    d->conf = conf;
    d->submit = submit;
    d->submit_arg = submit_arg;
    d->ts = hdx_ts_accepted(&d->nts);
    if ((rc = hdx_dcat_new(&d->cat)) != HDX_OK) {
        free(d);
        return rc;
    }
    *out = d;
    return HDX_OK;
}

void hdx_dicom_free(struct hdx_dicom *d)
{
    if (!d) return;
    hdx_dcat_free(d->cat);
    free(d);
}

struct load_walk {
    struct hdx_dicom *d;
    const struct hdx_keyring *kr;
    size_t n, bad, lossy;
    uint64_t bytes;
    uint64_t first_bad;
};

static int load_one(void *arg, const struct hdx_record *r)
{
    struct load_walk *w = arg;
    uint8_t *pt = NULL, *inflated = NULL;
    size_t len = 0, walk_len = 0;
    struct hdx_dcm_file f;
    struct hdx_ds_error err;
    struct hdx_ds_limits lim;
    struct hdx_dcm_keys k;
    int ok = 0, lossy = 0;
    hdx_ds_limits_default(&lim);
    memset(&k, 0, sizeof(k));
    if (hdx_record_open(r, w->kr, &pt, &len) == HDX_OK &&
        hdx_dcm_file_parse(pt, len, &f, &err) == HDX_OK) {
        int deflated = 0;
        enum hdx_ds_syntax syn = hdx_ds_syntax_of(f.ts, &deflated);
        const uint8_t *ds = pt + f.dataset_off;
        walk_len = len - f.dataset_off;
        if (deflated && hdx_ds_inflate(ds, walk_len, w->d->conf->dicom_max_instance, &inflated,
                                       &walk_len) != HDX_OK)
            walk_len = 0;
        ok = (!deflated || inflated) &&
             hdx_dcm_extract(inflated ? inflated : ds, walk_len, syn, &lim, &k, &err) == HDX_OK &&
             hdx_dcat_add(w->d->cat, &k, r->seq, hdx_record_has_patient(r) ? r->patient : NULL,
                          &lossy) == HDX_OK;
    }
    w->bytes += len;
    if (ok) {
        w->n++;
        w->lossy += lossy != 0;
    } else if (!w->bad++) {
        w->first_bad = r->seq;
    }
    sodium_memzero(&k, sizeof(k));
    if (inflated) {
        sodium_memzero(inflated, walk_len);
        free(inflated);
    }
    if (pt) {
        sodium_memzero(pt, len);
        free(pt);
    }
    return 0;
}

void hdx_dicom_set_policy(struct hdx_dicom *d, struct hdx_policy *const *policy)
{
    d->policy = policy;
}

void hdx_dicom_set_keyctx(struct hdx_dicom *d, struct hdx_keyctx *kc)
{
    d->kc = kc;
}

int hdx_dicom_load(struct hdx_dicom *d, struct hdx_store *s, const struct hdx_keyring *kr)
{
    struct load_walk w = {.d = d, .kr = kr};
    struct hdx_store_filter flt = {.kind = HDX_KIND_DICOM};
    int64_t t0 = hdx_monotonic_us();
    long rc = hdx_store_scan(s, &flt, 0, load_one, &w);
    if (rc < 0) return (int)rc;
    hdx_info("dicom_catalog_loaded",
             "instances=%zu studies=%zu patients=%zu bytes=%llu ms=%lld unreadable=%zu "
             "lossy=%zu",
             w.n, hdx_dcat_count(d->cat, HDX_DCAT_STUDY), hdx_dcat_count(d->cat, HDX_DCAT_PATIENT),
             (unsigned long long)w.bytes, (long long)((hdx_monotonic_us() - t0) / 1000), w.bad,
             w.lossy);
    if (w.bad)
        hdx_warn("dicom_catalog_unreadable",
                 "records=%zu first_seq=%llu reason=\"DICOM records that do not decrypt or "
                 "parse are not findable (hdx verify checks the log)\"",
                 w.bad, (unsigned long long)w.first_bad);
    return HDX_OK;
}
