/* front_smart: SMART Backend Services on the HTTPS port (docs/FHIR.md "SMART Backend
 * Services"): POST /auth/token takes a client_credentials grant with a private_key_jwt client
 * assertion (RFC 7523), checks it against the client's registered JWK Set (auth/jwt.h; the
 * registry is the smart_clients table, replayed from admin records) and issues a short-lived
 * access token (auth/smart_token.h) carrying the requested scopes narrowed to the registered
 * ones; /.well-known/smart-configuration says so. Every issue and refusal is an audit record
 * (event auth, action smart_token). Every refusal of a client is the same 401
 * invalid_client whatever failed (the reason goes to the log and the audit only), so nothing
 * tells a caller which part of a forged assertion was wrong.
 * Thread: the network thread. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/jwt.h"
#include "auth/smart_scope.h"
#include "auth/smart_token.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "net/front_internal.h"

#define TOKENS_MAX 4096
#define JTI_MAX 65536
#define FORM_MAX 16384

static void oauth_error(struct hdx_http_reply *r, int status, const char *error,
                        const char *description)
{
    json_t *o = json_pack("{s:s, s:s}", "error", error, "error_description", description);
    hdx_http_json_value(r, status, o);
    if (status == 401)
        snprintf(r->extra, sizeof(r->extra), "WWW-Authenticate: Basic realm=\"hdx\"\r\n");
}

/* A form field of the body (application/x-www-form-urlencoded), decoded: its length, -1
 * absent, -2 malformed or too long. */
static int form_get(const char *form, const char *key, char *out, size_t cap)
{
    struct http_req fake;
    memset(&fake, 0, sizeof(fake));
    fake.query = form;
    return http_query_get(&fake, key, out, cap);
}

static void token_refused(struct hdx_front *f, struct hdx_conn *c, const char *client,
                          const char *why, struct hdx_http_reply *r)
{
    hdx_warn("smart_token_refused", "peer=%s client=%s reason=%s", c->peer,
             client[0] ? client : "-", why);
    hdx_front_audit_auth(f, c, "smart_token", "failure", why, client[0] ? client : "-",
                         "integration", "route=token");
    oauth_error(r, 401, "invalid_client", "the client assertion was not accepted");
}

static void route_token(void *arg, struct hdx_conn *c, const struct http_req *req,
                        struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    const char *ct = http_header_get(req, "content-type");
    if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        oauth_error(r, 400, "invalid_request", "the body is application/x-www-form-urlencoded");
        return;
    }
    if (req->body_len > FORM_MAX || memchr(req->body, '\0', req->body_len)) {
        oauth_error(r, 400, "invalid_request", "the body is too long");
        return;
    }
    char *form = malloc(req->body_len + 1);
    char *assertion = malloc(HDX_JWT_MAX_LEN + 1);
    char grant[64], atype[128], scope[HDX_SMART_SCOPE_IN_MAX + 1],
        iss[HDX_JWT_CLIENT_ID_MAX + 1] = "";
    char why[64] = "";
    struct hdx_jwks *keys = NULL;
    struct hdx_smart_client cl;
    memset(&cl, 0, sizeof(cl));
    if (!form || !assertion) {
        oauth_error(r, 503, "temporarily_unavailable", "out of memory");
        goto out;
    }
    memcpy(form, req->body, req->body_len);
    form[req->body_len] = '\0';
    int gn = form_get(form, "grant_type", grant, sizeof(grant));
    int tn = form_get(form, "client_assertion_type", atype, sizeof(atype));
    int an = form_get(form, "client_assertion", assertion, HDX_JWT_MAX_LEN + 1);
    int sn = form_get(form, "scope", scope, sizeof(scope));
    if (gn == -2 || tn == -2 || an == -2 || sn == -2 || gn < 0) {
        oauth_error(r, 400, "invalid_request",
                    "grant_type, client_assertion_type, "
                    "client_assertion and scope, form-encoded");
        goto out;
    }
    if (strcmp(grant, "client_credentials")) {
        oauth_error(r, 400, "unsupported_grant_type", "only client_credentials");
        goto out;
    }
    if (tn < 0 || strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") ||
        an <= 0) {
        oauth_error(r, 400, "invalid_request",
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:"
                    "jwt-bearer, with a client_assertion");
        goto out;
    }
    if (sn < 0) scope[0] = '\0';
    struct hdx_smart_scopes requested, granted, issued;
    if (hdx_smart_scope_parse(scope, strlen(scope), &requested, why, sizeof(why)) != HDX_OK) {
        oauth_error(r, 400, "invalid_scope", "the scope is not SMART v2 (or v1) clinical scopes");
        goto out;
    }
    if (hdx_assertion_peek(assertion, (size_t)an, iss, sizeof(iss), why, sizeof(why)) != HDX_OK) {
        token_refused(f, c, "", why, r);
        goto out;
    }
    int rc = hdx_store_client_get(f->env.ro_store, iss, &cl);
    if (rc != HDX_OK || cl.revoked_us) {
        token_refused(f, c, iss, rc == HDX_OK ? "client_revoked" : "client_unknown", r);
        goto out;
    }
    if (hdx_jwks_parse((const char *)cl.jwks, cl.jwks_len, &keys, why, sizeof(why)) != HDX_OK ||
        hdx_smart_scope_parse(cl.scope, strlen(cl.scope), &granted, why, sizeof(why)) != HDX_OK) {
        hdx_error("smart_client_unreadable", "client=%s reason=%s", iss, why);
        oauth_error(r, 503, "temporarily_unavailable", "the client's registration is unreadable");
        goto out;
    }
    struct hdx_assertion as;
    int64_t now = hdx_now_us() / 1000000;
    rc = hdx_assertion_check(assertion, (size_t)an, iss, keys, hdx_front_token_url(f), now,
                             HDX_JWT_MAX_LIFETIME_S, HDX_JWT_SKEW_S, f->jti, &as, why, sizeof(why));
    if (rc == HDX_E_TOOBIG && !strcmp(why, "jti_cache_full")) {
        hdx_front_audit_auth(f, c, "smart_token", "failure", why, iss, "integration",
                             "route=token");
        oauth_error(r, 503, "temporarily_unavailable", "too many assertions at once");
        goto out;
    }
    if (rc != HDX_OK) {
        token_refused(f, c, iss, why, r);
        goto out;
    }
    if (hdx_smart_scope_intersect(&requested, &granted, &issued) != HDX_OK || !issued.n) {
        hdx_front_audit_auth(f, c, "smart_token", "failure", "scope_not_granted", iss,
                             "integration", "route=token");
        oauth_error(r, 400, "invalid_scope", "none of the requested scopes is granted");
        goto out;
    }
    char tok[HDX_SMART_TOKEN_LEN + 1], text[HDX_SMART_SCOPE_TEXT_MAX + 1];
    if (hdx_smart_scope_format(&issued, text, sizeof(text)) != HDX_OK ||
        hdx_smart_tokens_issue(f->smart_tokens, iss, &issued, now, HDX_SMART_TOKEN_TTL_S, tok) !=
            HDX_OK) {
        oauth_error(r, 503, "temporarily_unavailable", "no token can be issued now");
        goto out;
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "route=token kid=%.48s", as.kid[0] ? as.kid : "-");
    hdx_front_audit_auth(f, c, "smart_token", "success", "-", iss, "integration", detail);
    hdx_info("smart_token", "peer=%s client=%s expires_in=%d", c->peer, iss, HDX_SMART_TOKEN_TTL_S);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "access_token", tok, "token_type", "bearer",
                          "expires_in", HDX_SMART_TOKEN_TTL_S, "scope", text);
    sodium_memzero(tok, sizeof(tok));
    hdx_http_json_value(r, 200, o);
out:
    hdx_jwks_free(keys);
    hdx_smart_client_clear(&cl);
    if (form) {
        sodium_memzero(form, req->body_len);
        free(form);
    }
    if (assertion) {
        sodium_memzero(assertion, HDX_JWT_MAX_LEN + 1);
        free(assertion);
    }
}

static void route_smart_config(void *arg, struct hdx_conn *c, const struct http_req *req,
                               struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    json_t *o =
        json_pack("{s:s, s:[s], s:[s, s], s:[s], s:[s, s, s], s:[s, s]}", "token_endpoint",
                  hdx_front_token_url(f), "token_endpoint_auth_methods_supported",
                  "private_key_jwt", "token_endpoint_auth_signing_alg_values_supported", "ES384",
                  "RS384", "grant_types_supported", "client_credentials", "scopes_supported",
                  "system/*.cruds", "system/Observation.rs", "system/Patient.rs", "capabilities",
                  "client-confidential-asymmetric", "permission-v2");
    hdx_http_json_value(r, 200, o);
}

int hdx_front_smart_init(struct hdx_front *f, struct hdx_http *h)
{
    int rc = hdx_smart_tokens_new(TOKENS_MAX, &f->smart_tokens);
    if (rc == HDX_OK) rc = hdx_jti_cache_new(JTI_MAX, &f->jti);
    struct hdx_http_route a = {"POST", "/auth/token", route_token, f};
    struct hdx_http_route b = {"GET", "/.well-known/smart-configuration", route_smart_config, f};
    if (rc == HDX_OK) rc = hdx_http_route_add(h, &a);
    if (rc == HDX_OK) rc = hdx_http_route_add(h, &b);
    return rc;
}

void hdx_front_smart_free(struct hdx_front *f)
{
    hdx_smart_tokens_free(f->smart_tokens);
    f->smart_tokens = NULL;
    hdx_jti_cache_free(f->jti);
    f->jti = NULL;
}

void hdx_front_smart_admin(struct hdx_front *f, const struct hdx_admin *a)
{
    if (!f->smart_tokens) return;
    if (a->op != HDX_ADMIN_CLIENT_REVOKE && a->op != HDX_ADMIN_CLIENT_SCOPE &&
        a->op != HDX_ADMIN_CLIENT_ADD)
        return;
    size_t n = hdx_smart_tokens_revoke(f->smart_tokens, a->name);
    if (n) hdx_info("smart_tokens_ended", "client=%s tokens=%zu", a->name, n);
}
