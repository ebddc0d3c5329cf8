#include "net/front.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "auth/session.h"
#include "auth/throttle.h"
#include "auth/worker.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "net/front_internal.h"

#define LOGIN_QUEUE_MAX 64 /* Argon2id at ~0.1 s each: a few seconds of logins at most */
#define SECOND_MAX 31

/* ---------- JSON memory is wiped when freed (bodies hold passwords, answers PHI) ---------- */

static void *wiping_malloc(size_t n)
{
    size_t *p = malloc(sizeof(size_t) + n);
    if (!p) return NULL;
    *p = n;
    return p + 1;
}

static void wiping_free(void *ptr)
{
    if (!ptr) return;
    size_t *p = (size_t *)ptr - 1;
    sodium_memzero(ptr, *p);
    free(p);
}

/* ---------- who is asking ---------- */

void hdx_front_source_key(const struct hdx_conn *c, char *out, size_t cap)
{
    char hex[33];
    size_t n = c->src_family == 4 ? 4 : 8;
    sodium_bin2hex(hex, sizeof(hex), c->src, n);
    snprintf(out, cap, "%s", hex);
}

int hdx_front_who(struct hdx_front *f, const struct http_req *req, struct hdx_front_who *who)
{
    memset(who, 0, sizeof(*who));
    const char *h = http_header_get(req, "authorization");
    if (!h) return HDX_E_NOTFOUND;
    if (strncasecmp(h, "Bearer ", 7) != 0) return HDX_E_INVAL;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    const struct hdx_session *s = hdx_sessions_check(f->sessions, tok, strlen(tok), hdx_now_us());
    if (!s) return HDX_E_PERM;
    who->session = s;
    who->role = hdx_role_parse(s->role);
    return HDX_OK;
}

void hdx_front_unauthorized(struct hdx_http_reply *r, int bad_token)
{
    hdx_http_error(r, 401, "unauthorized",
                   bad_token ? "the session is not valid (expired, ended or revoked)"
                             : "authentication required");
    snprintf(r->extra, sizeof(r->extra), "WWW-Authenticate: Bearer realm=\"hdx\"%s\r\n",
             bad_token ? ", error=\"invalid_token\"" : "");
}

void hdx_front_audit_auth(struct hdx_front *f, const struct hdx_conn *c, const char *action,
                          const char *outcome, const char *reason, const char *principal,
                          const char *role, const char *detail)
{
    struct hdx_audit a = {.event = "auth",
                          .action = action,
                          .outcome = outcome,
                          .reason = reason ? reason : "-",
                          .principal = principal && principal[0] ? principal : "-",
                          .role = role && role[0] ? role : "-",
                          .source = c ? c->peer : "-",
                          .cert = c && c->cert_sha256[0] ? c->cert_sha256 : "-",
                          .detail = detail};
    f->env.audit(f->env.arg, &a);
}

/* ---------- logins ---------- */

struct login {
    struct hdx_front *f;
    struct hdx_conn *c;
    char name[65];
    char source[40];
    struct hdx_auth_outcome out;
};

static void grant(struct login *l)
{
    struct hdx_front *f = l->f;
    struct hdx_http_reply r = {0};
    struct hdx_user u;
    int mfa = l->out.result == HDX_AUTH_OK;
    int64_t now = hdx_now_us();
    /* The row again: a lock or revocation committed while the password was being checked
     * must not be outlived by a session made from the older row. */
    if (hdx_store_user_get(f->env.ro_store, l->name, &u) != HDX_OK || u.locked ||
        u.sessions_revoked_us > now) {
        sodium_memzero(&u, sizeof(u));
        hdx_metric_auth_failure(HDX_METRIC_AUTH_LOGIN);
        hdx_front_audit_auth(f, l->c, "login", "failure", "locked", l->name, NULL, NULL);
        hdx_http_error(&r, 401, "invalid_credentials", "invalid credentials");
        hdx_http_finish(l->c, &r);
        return;
    }
    sodium_memzero(&u, sizeof(u));
    char token[HDX_SESSION_TOKEN_LEN + 1];
    const struct hdx_session *s = NULL;
    if (hdx_sessions_create(f->sessions, l->name, l->out.role, mfa, l->c->peer, now, token, &s) !=
        HDX_OK) {
        hdx_http_error(&r, 503, "unavailable", "cannot make a session now");
        hdx_http_finish(l->c, &r);
        return;
    }
    hdx_throttle_success(f->throttle, l->name);
    char detail[64];
    snprintf(detail, sizeof(detail), "session=%s factor=%s", s->id,
             l->out.factor == HDX_FACTOR_TOTP       ? "totp"
             : l->out.factor == HDX_FACTOR_RECOVERY ? "recovery"
                                                    : "none");
    hdx_front_audit_auth(f, l->c, "login", "success", mfa ? "-" : "enrol_only", l->name,
                         l->out.role, detail);
    hdx_info("login", "peer=%s user=%s role=%s session=%s mfa=%d", l->c->peer, l->name, l->out.role,
             s->id, mfa);
    json_t *o = json_pack("{s:s, s:I, s:s, s:b}", "token", token, "expires_in",
                          (json_int_t)hdx_sessions_remaining_s(f->sessions, s, now), "role",
                          l->out.role, "mfa", mfa);
    if (o && !mfa) json_object_set_new(o, "enrol_required", json_true());
    sodium_memzero(token, sizeof(token));
    hdx_http_json_value(&r, 200, o);
    hdx_http_finish(l->c, &r);
}

static void consumed_done(void *arg, const struct hdx_intake_item *it)
{
    struct login *l = arg;
    if (it->status == HDX_OK) {
        grant(l);
    } else {
        struct hdx_http_reply r = {0};
        hdx_error("login_commit_failed", "user=%s err=%s", l->name, hdx_strerror(it->status));
        hdx_http_error(&r, 503, "unavailable", "the login could not be recorded; try again");
        hdx_http_finish(l->c, &r);
    }
    sodium_memzero(l, sizeof(*l));
    free(l);
}

/* hdxd's own admin statement into the pipeline; done(arg, it) once it is durable or failed. */
int hdx_front_admin_submit(struct hdx_front *f, const struct hdx_admin *a, const char *user,
                           void (*done)(void *arg, const struct hdx_intake_item *it), void *arg)
{
    char body[HDX_ADMIN_BODY_MAX];
    struct hdx_admin signed_by = *a;
    snprintf(signed_by.by, sizeof(signed_by.by), "user:%s", user);
    int bad = 0, len = hdx_admin_format(&signed_by, body, sizeof(body));
    sodium_memzero(&signed_by, sizeof(signed_by));
    if (len < 0) return len;
    struct hdx_intake_item *it = hdx_admin_item_new(0, (const uint8_t *)body, (size_t)len, &bad);
    sodium_memzero(body, sizeof(body));
    if (!it) return bad ? HDX_E_INVAL : HDX_E_NOMEM;
    it->on_done = done;
    it->done_arg = arg;
    f->env.submit(f->env.arg, it);
    return HDX_OK;
}

static void login_failed(struct login *l)
{
    struct hdx_front *f = l->f;
    struct hdx_http_reply r = {0};
    const char *reason = hdx_auth_reason_name(l->out.reason);
    int flags = l->out.reason == HDX_AUTH_R_ERROR
                    ? 0
                    : hdx_throttle_failure(f->throttle, l->source, l->name, hdx_now_us());
    if (l->out.reason != HDX_AUTH_R_ERROR) hdx_metric_auth_failure(HDX_METRIC_AUTH_LOGIN);
    hdx_front_audit_auth(f, l->c, "login", "failure", reason, l->name, NULL, NULL);
    hdx_warn("login_failed", "peer=%s user=%s reason=%s", l->c->peer, l->name, reason);
    if (flags & HDX_THROTTLE_ACCOUNT_LOCKED) {
        hdx_warn("alert", "kind=account_locked user=%s peer=%s", l->name, l->c->peer);
        hdx_front_audit_auth(f, l->c, "lockout", "deny", "account_locked", l->name, NULL, NULL);
    }
    if (flags & HDX_THROTTLE_SPRAY) {
        hdx_warn("alert", "kind=password_spray peer=%s", l->c->peer);
        hdx_front_audit_auth(f, l->c, "lockout", "deny", "password_spray", "-", NULL,
                             "one source failed logins on many accounts");
    } else if (flags & HDX_THROTTLE_SOURCE_LOCKED) {
        hdx_warn("alert", "kind=source_locked peer=%s", l->c->peer);
        hdx_front_audit_auth(f, l->c, "lockout", "deny", "source_locked", "-", NULL, NULL);
    }
    if (l->out.reason == HDX_AUTH_R_ERROR)
        hdx_http_error(&r, 503, "unavailable", "the login cannot be checked now; try again");
    else
        hdx_http_error(&r, 401, "invalid_credentials", "invalid credentials");
    hdx_http_finish(l->c, &r);
}

static void login_checked(struct login *l)
{
    struct hdx_front *f = l->f;
    if (l->out.result == HDX_AUTH_DENIED) {
        login_failed(l);
    } else if (l->out.result == HDX_AUTH_OK && l->out.factor != HDX_FACTOR_NONE) {
        struct hdx_admin a;
        int rc = hdx_auth_consumed(&l->out, l->name, &a);
        if (rc == HDX_OK &&
            (rc = hdx_front_admin_submit(f, &a, l->name, consumed_done, l)) == HDX_OK)
            return; /* l is consumed_done's now */
        l->out.reason = HDX_AUTH_R_ERROR;
        login_failed(l);
    } else {
        grant(l);
    }
    sodium_memzero(l, sizeof(*l));
    free(l);
}

static void on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    struct hdx_front *f = arg;
    uint64_t n;
    if (read(f->worker_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_read_failed", "errno=%d", errno);
    for (struct hdx_login_job *j = hdx_auth_worker_take_done(f->worker), *next; j; j = next) {
        next = j->next;
        struct login *l = j->arg;
        l->out = j->out;
        hdx_login_job_free(j);
        login_checked(l);
    }
}

static void notify_worker(void *arg)
{
    struct hdx_front *f = arg;
    uint64_t one = 1;
    if (write(f->worker_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        abort(); /* a login would never be answered */
}

/* The string member key of o: 1 and *out when present and a string of 1..max bytes, 0 absent,
 * -1 otherwise. */
static int json_str(json_t *o, const char *key, size_t max, const char **out, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max) return -1;
    *out = json_string_value(v);
    *len = json_string_length(v);
    return 1;
}

/* The JSON object body of a request, or NULL with the 4xx answer in r. */
json_t *hdx_front_json_body(const struct http_req *req, struct hdx_http_reply *r)
{
    const char *ct = http_header_get(req, "content-type");
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
        hdx_http_error(r, 415, "unsupported_media_type", "the body must be application/json");
        return NULL;
    }
    json_error_t err;
    json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        hdx_http_error(r, 400, "bad_json", "the body is not a JSON object");
        return NULL;
    }
    return o;
}

static void route_login(void *arg, struct hdx_conn *c, const struct http_req *req,
                        struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    json_t *o = hdx_front_json_body(req, r);
    if (!o) return;
    const char *name = NULL, *pw = NULL, *second = NULL, *key;
    size_t name_len = 0, pw_len = 0, second_len = 0;
    json_t *v;
    int bad = 0;
    json_object_foreach(o, key, v) bad |= strcmp(key, "username") && strcmp(key, "password") &&
                                          strcmp(key, "totp") && strcmp(key, "recovery_code");
    if (!bad && (json_str(o, "username", 64, &name, &name_len) != 1 ||
                 json_str(o, "password", HDX_PW_MAX_CHARS * 4, &pw, &pw_len) != 1))
        bad = 1;
    int t = bad ? 0 : json_str(o, "totp", SECOND_MAX, &second, &second_len);
    if (t == 0 && !bad) t = json_str(o, "recovery_code", SECOND_MAX, &second, &second_len);
    if (bad || t < 0 || strlen(name) != name_len) {
        json_decref(o);
        hdx_http_error(r, 400, "bad_request",
                       "expected {\"username\", \"password\", \"totp\" or \"recovery_code\"}");
        return;
    }
    struct login *l = calloc(1, sizeof(*l));
    struct hdx_login_job *job = calloc(1, sizeof(*job));
    char *pwcopy = malloc(pw_len + 1);
    if (!l || !job || !pwcopy) {
        free(l);
        free(job);
        free(pwcopy);
        json_decref(o);
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    memcpy(l->name, name, name_len);
    hdx_front_source_key(c, l->source, sizeof(l->source));
    l->f = f;
    l->c = c;
    memcpy(pwcopy, pw, pw_len);
    pwcopy[pw_len] = 0;
    memcpy(job->name, name, name_len);
    job->password = pwcopy;
    job->password_len = pw_len;
    if (second) memcpy(job->second, second, second_len);
    job->now = time(NULL);
    job->arg = l;
    json_decref(o);
    const char *why = NULL;
    int64_t wait = hdx_throttle_check(f->throttle, l->source, l->name, hdx_now_us(), &why);
    if (wait) {
        hdx_metric_auth_failure(HDX_METRIC_AUTH_LOGIN);
        hdx_warn("login_throttled", "peer=%s user=%s by=%s retry_after_s=%lld", c->peer, l->name,
                 why, (long long)wait);
        hdx_http_error(r, 429, "too_many_attempts", "too many failed logins; try again later");
        snprintf(r->extra, sizeof(r->extra), "Retry-After: %lld\r\n", (long long)wait);
        hdx_login_job_free(job);
        free(l);
        return;
    }
    if (hdx_auth_worker_submit(f->worker, job) != HDX_OK) {
        hdx_warn("login_busy", "peer=%s queued=%d", c->peer, LOGIN_QUEUE_MAX);
        hdx_http_error(r, 503, "busy", "too many logins at once; try again");
        snprintf(r->extra, sizeof(r->extra), "Retry-After: 1\r\n");
        hdx_login_job_free(job);
        free(l);
        return;
    }
    r->deferred = 1;
}

static void route_logout(void *arg, struct hdx_conn *c, const struct http_req *req,
                         struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct hdx_front_who who;
    int rc = hdx_front_who(f, req, &who);
    if (rc != HDX_OK) {
        hdx_front_unauthorized(r, rc != HDX_E_NOTFOUND);
        return;
    }
    char detail[40], user[65], role[24];
    snprintf(detail, sizeof(detail), "session=%s", who.session->id);
    snprintf(user, sizeof(user), "%s", who.session->user);
    snprintf(role, sizeof(role), "%s", who.session->role);
    hdx_front_session_ended(f, who.session->serial);
    hdx_front_audit_auth(f, c, "logout", "success", "-", user, role, detail);
    r->status = 204;
}

static void route_session(void *arg, struct hdx_conn *c, const struct http_req *req,
                          struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct hdx_front_who who;
    int rc = hdx_front_who(f, req, &who);
    if (rc != HDX_OK) {
        hdx_front_unauthorized(r, rc != HDX_E_NOTFOUND);
        return;
    }
    const struct hdx_session *s = who.session;
    json_t *o = json_pack("{s:s, s:s, s:b, s:s, s:I, s:I}", "user", s->user, "role", s->role, "mfa",
                          s->mfa, "session", s->id, "expires_in",
                          (json_int_t)hdx_sessions_remaining_s(f->sessions, s, hdx_now_us()),
                          "idle_timeout_s", (json_int_t)f->env.conf->auth_session_idle_s);
    hdx_http_json_value(r, 200, o);
}

/* ---------- enrolment of a second factor ---------- */

struct enrol {
    struct hdx_conn *c;
    struct hdx_enrolment e;
};

static void enrol_done(void *arg, const struct hdx_intake_item *it)
{
    struct enrol *en = arg;
    struct hdx_http_reply r = {0};
    if (it->status != HDX_OK) {
        hdx_http_error(&r, 503, "unavailable", "the enrolment could not be recorded; try again");
    } else {
        json_t *codes = json_array();
        for (int i = 0; codes && i < HDX_RECOVERY_CODES; i++)
            json_array_append_new(codes, json_string(en->e.codes[i]));
        json_t *o = json_pack("{s:s, s:o, s:s}", "otpauth", en->e.uri, "recovery_codes", codes,
                              "next", "log in again with a code from the authenticator");
        hdx_http_json_value(&r, 200, o);
    }
    hdx_http_finish(en->c, &r);
    sodium_memzero(en, sizeof(*en));
    free(en);
}

static void route_enrol(void *arg, struct hdx_conn *c, const struct http_req *req,
                        struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct hdx_front_who who;
    int rc = hdx_front_who(f, req, &who);
    if (rc != HDX_OK) {
        hdx_front_unauthorized(r, rc != HDX_E_NOTFOUND);
        return;
    }
    struct enrol *en = calloc(1, sizeof(*en));
    struct hdx_admin a;
    memset(&a, 0, sizeof(a));
    a.op = HDX_ADMIN_USER_MFA;
    snprintf(a.name, sizeof(a.name), "%s", who.session->user);
    if (!en || hdx_user_enrol(f->env.kr, a.name, &a, &en->e) != HDX_OK ||
        hdx_front_admin_submit(f, &a, who.session->user, enrol_done, en) != HDX_OK) {
        if (en) sodium_memzero(en, sizeof(*en));
        free(en);
        sodium_memzero(&a, sizeof(a));
        hdx_http_error(r, 503, "unavailable", "cannot enrol now");
        return;
    }
    char detail[40];
    snprintf(detail, sizeof(detail), "session=%s", who.session->id);
    hdx_front_audit_auth(f, c, "mfa_enrol", "success", "-", who.session->user, who.session->role,
                         detail);
    sodium_memzero(&a, sizeof(a));
    en->c = c;
    r->deferred = 1;
}

/* ---------- metrics ---------- */

/* GET /metrics (core/metrics.h, docs/METRICS.md): counts only, no PHI and no names, but
 * still nothing without authentication. A service's API key (role integration), or an MFA
 * session of a role that watches the system: admin, security-officer, auditor. */
static int metrics_allowed(const struct asker *who)
{
    if (who->key_hash[0]) return who->role == HDX_ROLE_INTEGRATION;
    return who->serial && who->mfa &&
           (who->role == HDX_ROLE_ADMIN || who->role == HDX_ROLE_SECURITY_OFFICER ||
            who->role == HDX_ROLE_AUDITOR);
}

static void route_metrics(void *arg, struct hdx_conn *c, const struct http_req *req,
                          struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return; /* the 401 */
    if (!metrics_allowed(&who)) {
        hdx_warn("metrics_refused", "peer=%s user=%s role=%s", c->peer, who.user,
                 who.role_name[0] ? who.role_name : "-");
        hdx_http_error(r, 403, "forbidden",
                       "metrics need an integration API key or an admin, security-officer or "
                       "auditor session");
        return;
    }
    char *body = NULL;
    size_t len = 0;
    if (hdx_metrics_render(&body, &len) != HDX_OK) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    free(r->body);
    r->status = 200;
    r->content_type = HDX_METRICS_CONTENT_TYPE;
    r->body = body;
    r->body_len = len;
}

/* ---------- sessions and admin changes ---------- */

void hdx_front_session_ended(struct hdx_front *f, uint64_t serial)
{
    hdx_sessions_end(f->sessions, serial);
    hdx_front_streams_check(f);
}

void hdx_front_admin_committed(struct hdx_front *f, const struct hdx_intake_item *it)
{
    struct hdx_admin a;
    if (it->status != HDX_OK || hdx_admin_parse(it->body, it->body_len, &a) != HDX_OK) return;
    if (hdx_admin_is_user_op(a.op) && a.op != HDX_ADMIN_USER_TOTP_USED &&
        a.op != HDX_ADMIN_USER_RECOVERY_USED) {
        struct hdx_user u;
        int rc = hdx_store_user_get(f->env.ro_store, a.name, &u);
        int64_t before = rc != HDX_OK || u.locked ? INT64_MAX : u.sessions_revoked_us;
        sodium_memzero(&u, sizeof(u));
        size_t n = hdx_sessions_revoke_user(f->sessions, a.name, before);
        if (n) hdx_info("sessions_revoked", "user=%s sessions=%zu by=%s", a.name, n, it->type);
    }
    hdx_front_smart_admin(f, &a);
    hdx_front_policy_changed(f, &a);
    hdx_front_sub_admin(f);
    sodium_memzero(&a, sizeof(a));
    hdx_front_streams_check(f);
}

void hdx_front_tick(struct hdx_front *f)
{
    if (hdx_sessions_expire(f->sessions, hdx_now_us())) hdx_front_streams_check(f);
    hdx_front_api_tick(f);
    hdx_front_sub_tick(f);
}

/* ---------- set-up ---------- */

int hdx_front_new(const struct hdx_front_env *env, struct hdx_http *h, struct hdx_front **out,
                  char *why, size_t why_cap)
{
    const struct hdx_conf *conf = env->conf;
    char path[HDX_PATH_MAX];
    *out = NULL;
    json_set_alloc_funcs(wiping_malloc, wiping_free);
    struct hdx_front *f = calloc(1, sizeof(*f));
    if (!f) return HDX_E_NOMEM;
    f->env = *env;
    f->worker_fd = -1;
    struct hdx_throttle_conf tc = {.max_failures = conf->auth_max_failures,
                                   .source_max_failures = conf->auth_source_max_failures,
                                   .spray_accounts = conf->auth_spray_accounts,
                                   .window_us = (int64_t)conf->auth_failure_window_s * 1000000,
                                   .lockout_us = (int64_t)conf->auth_lockout_s * 1000000,
                                   .max_entries = 4096};
    struct hdx_pw_cost cost = {(unsigned long long)conf->auth_argon2_opslimit,
                               (size_t)conf->auth_argon2_memlimit_kib * 1024};
    int rc = hdx_sessions_new((int64_t)conf->auth_session_idle_s * 1000000,
                              (int64_t)conf->auth_session_max_s * 1000000,
                              (size_t)conf->auth_max_sessions, &f->sessions);
    if (rc == HDX_OK) rc = hdx_throttle_new(&tc, &f->throttle);
    if (rc == HDX_OK) {
        f->worker_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        f->worker_ev = f->worker_fd < 0 ? NULL
                                        : event_new(env->base, f->worker_fd, EV_READ | EV_PERSIST,
                                                    on_worker_done, f);
        if (!f->worker_ev || event_add(f->worker_ev, NULL) != 0) rc = HDX_E_IO;
    }
    if (rc == HDX_OK && hdx_conf_path(conf, conf->store_path, path, sizeof(path)) != HDX_OK)
        rc = HDX_E_TOOBIG;
    if (rc == HDX_OK)
        rc = hdx_auth_worker_start(path, env->kr, &cost, LOGIN_QUEUE_MAX, notify_worker, f,
                                   &f->worker);
    if (rc == HDX_OK) rc = hdx_front_api_init(f, h);
    if (rc == HDX_OK) rc = hdx_front_smart_init(f, h);
    if (rc == HDX_OK && (rc = hdx_front_fhir_init(f, h, why, why_cap)) != HDX_OK) {
        hdx_front_free(f); /* why names what FHIR could not do */
        return rc;
    }
    if (rc == HDX_OK) rc = hdx_front_dicomweb_init(f, h);
    if (rc != HDX_OK) {
        snprintf(why, why_cap, "cannot start the login front end: %s", hdx_strerror(rc));
        hdx_front_free(f);
        return rc;
    }
    static const struct {
        const char *method, *path;
        hdx_http_handler fn;
    } routes[] = {{"POST", "/auth/login", route_login},
                  {"POST", "/auth/logout", route_logout},
                  {"GET", "/auth/session", route_session},
                  {"POST", "/auth/mfa/enrol", route_enrol},
                  {"GET", "/metrics", route_metrics}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct hdx_http_route rt = {routes[i].method, routes[i].path, routes[i].fn, f};
        if ((rc = hdx_http_route_add(h, &rt)) != HDX_OK) break;
    }
    if (rc != HDX_OK) {
        snprintf(why, why_cap, "too many HTTP routes");
        hdx_front_free(f);
        return rc;
    }
    *out = f;
    return HDX_OK;
}

static void drop_login(void *arg)
{
    struct login *l = arg;
    sodium_memzero(l, sizeof(*l));
    free(l);
}

void hdx_front_free(struct hdx_front *f)
{
    if (!f) return;
    hdx_auth_worker_stop(f->worker, drop_login);
    hdx_front_fhir_free(f);
    hdx_front_smart_free(f);
    hdx_front_api_free(f);
    if (f->worker_ev) event_free(f->worker_ev);
    if (f->worker_fd >= 0) close(f->worker_fd);
    hdx_sessions_free(f->sessions);
    hdx_throttle_free(f->throttle);
    free(f);
}
