/* front_internal: what front.c (logins, sessions) and front_api.c (the /api routes) share.
 * Not for other modules. Thread: the network thread. */
#ifndef HDX_NET_FRONT_INTERNAL_H
#define HDX_NET_FRONT_INTERNAL_H

#include <jansson.h>

#include "auth/apikey.h"
#include "auth/session.h"
#include "auth/smart_token.h"
#include "auth/throttle.h"
#include "auth/worker.h"
#include "commit/admin.h"
#include "net/front.h"
#include "policy/policy.h"

struct front_api;  /* front_api.c's */
struct front_fhir; /* front_fhir.c's */
struct front_sub;  /* front_sub.c's */
struct hdx_fhir_index;
struct hdx_fhir_row;

#define TALLY_MAX 256 /* patients counted before a disclosure summary is written early */

/* Per patient: what one request or stream disclosed (audit/audit.h, event access). */
struct tally_entry {
    uint8_t patient[HDX_BLIND_LEN];
    int has_patient;
    uint64_t first, last, count;
    int break_glass;
};
struct tally {
    struct tally_entry e[TALLY_MAX];
    size_t n;
    uint64_t denied;
    enum hdx_policy_reason deny_reason;
};

/* Who is asking, for the policy and the audit. */
struct asker {
    char user[65];
    char role_name[24];
    enum hdx_role role;
    int mfa;
    char session[HDX_SESSION_ID_LEN + 1];
    uint64_t serial; /* 0: a certificate or an API key, not a session */
    enum hdx_purpose purpose;
    char key_hash[HDX_APIKEY_HASH_LEN + 1]; /* a service: its stored key when it was checked */
    /* A SMART Backend Services client's access token (auth/smart_token.h): its scopes limit
     * every FHIR interaction. Valid only during the handler's call (not in deferred work). */
    const struct hdx_smart_token *smart;
};

struct hdx_front {
    struct hdx_front_env env;
    struct hdx_sessions *sessions;
    struct hdx_throttle *throttle;
    struct hdx_auth_worker *worker;
    int worker_fd;
    struct event *worker_ev;
    struct front_api *api;
    struct front_fhir *fhir;
    struct front_sub *sub;
    struct hdx_smart_tokens *smart_tokens; /* front_smart.c */
    struct hdx_jti_cache *jti;
    char dicomweb_base[300]; /* front_dicomweb.c: the absolute URL of /dicomweb */
};

struct hdx_front_who {
    const struct hdx_session *session; /* valid until the next call into the session table */
    enum hdx_role role;
};

/* The session of the request's bearer token: HDX_OK, HDX_E_NOTFOUND (no Authorization
 * header), HDX_E_INVAL (not a bearer token) or HDX_E_PERM (no such live session). */
int hdx_front_who(struct hdx_front *f, const struct http_req *req, struct hdx_front_who *who);
/* The 401 answer; bad_token: a token was sent and is not (or no longer) valid. */
void hdx_front_unauthorized(struct hdx_http_reply *r, int bad_token);
void hdx_front_audit_auth(struct hdx_front *f, const struct hdx_conn *c, const char *action,
                          const char *outcome, const char *reason, const char *principal,
                          const char *role, const char *detail);
/* hdxd's own admin statement, made on behalf of user (its by=user:USER), into the pipeline;
 * done(arg, it) once durable or failed. */
int hdx_front_admin_submit(struct hdx_front *f, const struct hdx_admin *a, const char *user,
                           void (*done)(void *arg, const struct hdx_intake_item *it), void *arg);
/* The request's JSON object body, or NULL with the 4xx answer in r. */
json_t *hdx_front_json_body(const struct http_req *req, struct hdx_http_reply *r);
/* The throttle's key for c's source: its IPv4 address or IPv6 /64, hex. */
void hdx_front_source_key(const struct hdx_conn *c, char *out, size_t cap);
void hdx_front_session_ended(struct hdx_front *f, uint64_t serial);

/* front_api.c */
int hdx_front_api_init(struct hdx_front *f, struct hdx_http *h);
void hdx_front_api_free(struct hdx_front *f);
void hdx_front_api_tick(struct hdx_front *f);
/* Open streams whose session ended are closed. */
void hdx_front_streams_check(struct hdx_front *f);
/* An admin statement committed: policy data it touches is reloaded. */
void hdx_front_policy_changed(struct hdx_front *f, const struct hdx_admin *a);

/* What front_api.c lends front_fhir.c: who asks (0, or the 401/400 in r), the policy's
 * decision for them, the access audit, the per-patient disclosure tally. */
int hdx_front_is_machine(const struct asker *who);
int hdx_front_asks(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                   struct hdx_http_reply *r, struct asker *who);
void hdx_front_decide(struct front_api *api, const struct asker *who, enum hdx_action act,
                      enum hdx_resource res, const uint8_t *patient, struct hdx_policy_decision *d);
void hdx_front_audit_access(struct front_api *api, const struct hdx_conn *c,
                            const struct asker *who, const char *action, const char *outcome,
                            const char *reason, const uint8_t *patient, uint64_t first,
                            uint64_t last, uint64_t count, const char *route);
void hdx_front_tally_flush(struct front_api *api, const struct hdx_conn *c, const struct asker *who,
                           struct tally *t, const char *action, const char *route);
int hdx_front_tally_add(struct tally *t, const uint8_t *patient, uint64_t seq, int break_glass);
void hdx_front_tally_deny(struct tally *t, enum hdx_policy_reason why);
void hdx_front_deny_answer(struct hdx_http_reply *r, enum hdx_policy_reason why);

/* The audit before the answer (front_fhir.c): while a handler runs between begin and end,
 * every audit record it makes is submitted and counted, and its answer r is held (made
 * deferred) until they are all durable; one that fails turns the answer into fail's (a 503 in
 * the route's own error shape): nothing is disclosed that is not audited. end_finish is the
 * same for an answer composed outside a handler (a write's, once durable). NULL from begin:
 * out of memory. */
struct hdx_audit_gate;
struct hdx_audit_gate *hdx_front_gate_begin(struct hdx_front *f, struct hdx_conn *c,
                                            void (*fail)(struct hdx_http_reply *r));
void hdx_front_gate_end(struct hdx_audit_gate *g, struct hdx_http_reply *r);
void hdx_front_gate_end_finish(struct hdx_audit_gate *g, struct hdx_conn *c,
                               struct hdx_http_reply *r);

/* front_dicomweb.c: the /dicomweb routes (docs/DICOMWEB.md) */
int hdx_front_dicomweb_init(struct hdx_front *f, struct hdx_http *h);

/* front_smart.c: POST /auth/token and /.well-known/smart-configuration (docs/FHIR.md) */
int hdx_front_smart_init(struct hdx_front *f, struct hdx_http *h);
void hdx_front_smart_free(struct hdx_front *f);
/* An admin record about a SMART client committed: its tokens end when it was revoked or
 * re-scoped. */
void hdx_front_smart_admin(struct hdx_front *f, const struct hdx_admin *a);
/* The token endpoint's URL, as assertions must name it (aud). */
const char *hdx_front_token_url(struct hdx_front *f);

/* front_fhir.c: the /fhir routes (docs/FHIR.md) */
int hdx_front_fhir_init(struct hdx_front *f, struct hdx_http *h, char *why, size_t cap);
void hdx_front_fhir_free(struct hdx_front *f);
/* What front_sub.c borrows: the resource a row points at (new reference, or NULL and *err);
 * the FHIR base URL; compact JSON in plain malloc'd memory; an OperationOutcome answer; a
 * JSON answer (consumes v). */
json_t *hdx_front_fhir_load(struct hdx_front *f, const struct hdx_fhir_row *row, int *err);
const char *hdx_front_fhir_base(struct hdx_front *f);
char *hdx_front_fhir_dump(const json_t *v, size_t *len);
void hdx_front_fhir_outcome(struct hdx_http_reply *r, int status, const char *code,
                            const char *diag, const char *expr);
void hdx_front_fhir_answer(struct hdx_http_reply *r, int status, json_t *v);

/* front_sub.c: FHIR Subscriptions (docs/FHIR.md "Subscriptions") */
int hdx_front_sub_init(struct hdx_front *f, struct hdx_fhir_index *ix, char *why, size_t cap);
void hdx_front_sub_free(struct hdx_front *f);
/* The FHIR view advanced: new events are numbered, audited, then sent. */
void hdx_front_sub_indexed(struct hdx_front *f);
/* An admin record committed: owners' standing is looked up again at their next event. */
void hdx_front_sub_admin(struct hdx_front *f);
/* A Subscription was written (and is indexed): the subscriptions are read again. */
void hdx_front_sub_changed(struct hdx_front *f);
/* Once a second: heartbeats, rest-hook retries' outcomes, binding timeouts. */
void hdx_front_sub_tick(struct hdx_front *f);
/* Before a Subscription version is written (prior: the current one, or NULL): 0 with the
 * server's status and owner tag set in res and the filter's patient token, or -1 with r. */
int hdx_front_sub_prepare(struct hdx_front *f, const struct asker *who, json_t *res,
                          const json_t *prior, int *has_patient, uint8_t *patient,
                          struct hdx_http_reply *r);
/* 1 when res (a Subscription) is who's. */
int hdx_front_sub_owns(struct hdx_front *f, const struct asker *who, const json_t *res);
/* GET Subscription/ID/$status, $events, $get-ws-binding-token. */
void hdx_front_sub_operation(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                             const struct asker *who, const char *id, const char *op,
                             struct hdx_http_reply *r);
/* GET /fhir/ws: the WebSocket channel (bind-with-token). */
void hdx_front_sub_ws(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                      struct hdx_http_reply *r);

#endif
