/* front_internal: what front.c (logins, sessions) and front_api.c (the /api routes) share.
 * Not for other modules. Thread: the network thread. */
#ifndef HDX_NET_FRONT_INTERNAL_H
#define HDX_NET_FRONT_INTERNAL_H

#include <jansson.h>

#include "auth/session.h"
#include "auth/throttle.h"
#include "auth/worker.h"
#include "commit/admin.h"
#include "net/front.h"
#include "policy/policy.h"

struct front_api; /* front_api.c's */

struct hdx_front {
    struct hdx_front_env env;
    struct hdx_sessions *sessions;
    struct hdx_throttle *throttle;
    struct hdx_auth_worker *worker;
    int worker_fd;
    struct event *worker_ev;
    struct front_api *api;
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

#endif
