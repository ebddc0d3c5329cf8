#include "commit/admin.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/err.h"
#include "auth/apikey.h"
#include "auth/jwt.h"
#include "auth/password.h"
#include "auth/smart_scope.h"
#include "auth/totp.h"
#include "core/util.h"
#include "pki/pki.h"
#include "policy/policy.h"
#include "policy/scope.h"

#define ADMIN_MAGIC "HDX-ADMIN 1\n"

static const char *const op_names[] = {
    [HDX_ADMIN_DEVICE_ADD] = "device_add",
    [HDX_ADMIN_DEVICE_REVOKE] = "device_revoke",
    [HDX_ADMIN_DEVICE_SIGNKEY] = "device_signkey",
    [HDX_ADMIN_DEVICE_IMPORT] = "device_import",
    [HDX_ADMIN_USER_ADD] = "user_add",
    [HDX_ADMIN_USER_PASSWD] = "user_passwd",
    [HDX_ADMIN_USER_LOCK] = "user_lock",
    [HDX_ADMIN_USER_UNLOCK] = "user_unlock",
    [HDX_ADMIN_USER_REVOKE_SESSIONS] = "user_revoke_sessions",
    [HDX_ADMIN_USER_MFA] = "user_mfa",
    [HDX_ADMIN_USER_TRAINING] = "user_training",
    [HDX_ADMIN_USER_TOTP_USED] = "user_totp_used",
    [HDX_ADMIN_USER_RECOVERY_USED] = "user_recovery_used",
    [HDX_ADMIN_CARETEAM_ADD] = "careteam_add",
    [HDX_ADMIN_CARETEAM_REMOVE] = "careteam_remove",
    [HDX_ADMIN_CONSENT_DENY] = "consent_deny",
    [HDX_ADMIN_CONSENT_REMOVE] = "consent_remove",
    [HDX_ADMIN_BREAK_GLASS] = "break_glass",
    [HDX_ADMIN_BREAK_GLASS_REVIEW] = "break_glass_review",
    [HDX_ADMIN_DEVICE_SCOPE] = "device_scope",
    [HDX_ADMIN_ROUTE_DEAD] = "route_dead",
    [HDX_ADMIN_ROUTE_RETRY] = "route_retry",
    [HDX_ADMIN_ROUTE_SKIP] = "route_skip",
    [HDX_ADMIN_ROUTE_DELIVERED] = "route_delivered",
    [HDX_ADMIN_CLIENT_ADD] = "client_add",
    [HDX_ADMIN_CLIENT_SCOPE] = "client_scope",
    [HDX_ADMIN_CLIENT_REVOKE] = "client_revoke",
    [HDX_ADMIN_AE_ADD] = "ae_add",
    [HDX_ADMIN_AE_REMOVE] = "ae_remove",
};
#define NOPS (sizeof(op_names) / sizeof(op_names[0]))
_Static_assert(NOPS == HDX_ADMIN_OP_LAST + 1, "one name per op");
_Static_assert(HDX_USER_TOTP_SEALED_LEN == HDX_TOTP_SEALED_LEN, "sealed TOTP size");
_Static_assert(HDX_USER_RECOVERY_CODES == HDX_RECOVERY_CODES &&
                   HDX_USER_RECOVERY_LEN == HDX_RECOVERY_STORED_LEN,
               "recovery code size");
_Static_assert(HDX_USER_PW_HASH_MAX == HDX_PW_HASH_MAX, "password hash size");
_Static_assert(HDX_POLICY_TOKEN_LEN == HDX_BLIND_LEN, "patient token size");
_Static_assert(HDX_DEVICE_SCOPE_MAX == HDX_SCOPE_TEXT_MAX, "scope text size");
/* the canonical text of any SMART scope that parses: 32 terms of "patient/" TYPE "." "cruds" */
#define SMART_TERM_MAX (8 + HDX_SMART_SCOPE_TYPE_MAX + 1 + 5 + 1) /* with its space */
_Static_assert(HDX_SMART_SCOPE_TERMS_MAX *SMART_TERM_MAX <= HDX_SMART_CLIENT_SCOPE_MAX + 1,
               "a canonical SMART scope fits");
_Static_assert(HDX_SMART_JWKS_MAX <= HDX_JWKS_MAX_LEN, "hdx_jwks_parse takes a whole JWK Set");
#define B64U sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* base64url characters of the largest JWK Set (sodium's length counts the NUL) */
#define JWKS_B64_MAX (sodium_base64_ENCODED_LEN(HDX_SMART_JWKS_MAX, B64U) - 1)

/* The keys after op=, in their one allowed order. */
enum key {
    K_NAME,
    K_ROLE,
    K_SERIAL,
    K_CREATED,
    K_REVOKED,
    K_PUB,
    K_PWHASH,
    K_TOTP,
    K_RECOVERY,
    K_AT,
    K_DATE,
    K_STEP,
    K_INDEX,
    K_PATIENT,
    K_PURPOSE,
    K_EXPIRES,
    K_JUSTIFICATION,
    K_GRANTED,
    K_REVIEWER,
    K_SCOPE,
    K_SEQ,
    K_REASON,
    K_JWKS,
    K_CSCOPE, /* a SMART client's scope: its own grammar (auth/smart_scope.h) */
    K_TITLE,
    K_END
};
static const char *const key_names[] = {
    "name",        "role",       "serial",        "created_us", "revoked_us", "sign_pub", "pw_hash",
    "totp_sealed", "recovery",   "at_us",         "date",       "step",       "index",    "patient",
    "purpose",     "expires_us", "justification", "granted_us", "reviewer",   "scope",    "seq",
    "reason",      "jwks",       "scope",         "title"};
_Static_assert(sizeof(key_names) / sizeof(key_names[0]) == K_END, "one name per key");
static const enum key op_keys[][7] = {
    [HDX_ADMIN_DEVICE_ADD] = {K_NAME, K_ROLE, K_SERIAL, K_CREATED, K_PUB, K_END},
    [HDX_ADMIN_DEVICE_REVOKE] = {K_NAME, K_SERIAL, K_REVOKED, K_END},
    [HDX_ADMIN_DEVICE_SIGNKEY] = {K_NAME, K_PUB, K_END},
    [HDX_ADMIN_DEVICE_IMPORT] = {K_NAME, K_ROLE, K_SERIAL, K_CREATED, K_REVOKED, K_PUB, K_END},
    [HDX_ADMIN_USER_ADD] = {K_NAME, K_ROLE, K_PWHASH, K_TOTP, K_RECOVERY, K_CREATED, K_END},
    [HDX_ADMIN_USER_PASSWD] = {K_NAME, K_PWHASH, K_END},
    [HDX_ADMIN_USER_LOCK] = {K_NAME, K_END},
    [HDX_ADMIN_USER_UNLOCK] = {K_NAME, K_END},
    [HDX_ADMIN_USER_REVOKE_SESSIONS] = {K_NAME, K_AT, K_END},
    [HDX_ADMIN_USER_MFA] = {K_NAME, K_TOTP, K_RECOVERY, K_END},
    [HDX_ADMIN_USER_TRAINING] = {K_NAME, K_DATE, K_END},
    [HDX_ADMIN_USER_TOTP_USED] = {K_NAME, K_STEP, K_END},
    [HDX_ADMIN_USER_RECOVERY_USED] = {K_NAME, K_INDEX, K_END},
    [HDX_ADMIN_CARETEAM_ADD] = {K_NAME, K_PATIENT, K_END},
    [HDX_ADMIN_CARETEAM_REMOVE] = {K_NAME, K_PATIENT, K_END},
    [HDX_ADMIN_CONSENT_DENY] = {K_PATIENT, K_PURPOSE, K_ROLE, K_END},
    [HDX_ADMIN_CONSENT_REMOVE] = {K_PATIENT, K_PURPOSE, K_ROLE, K_END},
    [HDX_ADMIN_BREAK_GLASS] = {K_NAME, K_PATIENT, K_EXPIRES, K_JUSTIFICATION, K_END},
    [HDX_ADMIN_BREAK_GLASS_REVIEW] = {K_NAME, K_PATIENT, K_GRANTED, K_REVIEWER, K_END},
    [HDX_ADMIN_DEVICE_SCOPE] = {K_NAME, K_SCOPE, K_END},
    [HDX_ADMIN_ROUTE_DEAD] = {K_NAME, K_SEQ, K_REASON, K_END},
    [HDX_ADMIN_ROUTE_RETRY] = {K_NAME, K_SEQ, K_END},
    [HDX_ADMIN_ROUTE_SKIP] = {K_NAME, K_SEQ, K_END},
    [HDX_ADMIN_ROUTE_DELIVERED] = {K_NAME, K_SEQ, K_END},
    [HDX_ADMIN_CLIENT_ADD] = {K_NAME, K_JWKS, K_CSCOPE, K_CREATED, K_END},
    [HDX_ADMIN_CLIENT_SCOPE] = {K_NAME, K_CSCOPE, K_END},
    [HDX_ADMIN_CLIENT_REVOKE] = {K_NAME, K_REVOKED, K_END},
    [HDX_ADMIN_AE_ADD] = {K_NAME, K_TITLE, K_END},
    [HDX_ADMIN_AE_REMOVE] = {K_TITLE, K_END},
};
/* The longest value copied out of a body: a SMART client's scope (a device scope is 1,536,
 * recovery, ten 64-digit codes and nine commas, 650). A JWK Set is decoded in place. */
#define VAL_MAX HDX_SMART_CLIENT_SCOPE_MAX
_Static_assert(VAL_MAX >= HDX_DEVICE_SCOPE_MAX, "a device scope fits a value");
_Static_assert(VAL_MAX >= HDX_USER_RECOVERY_CODES * (2 * HDX_USER_RECOVERY_LEN + 1),
               "recovery fits a value");

const char *hdx_admin_type(enum hdx_admin_op op)
{
    static const char *const types[] = {
        [HDX_ADMIN_DEVICE_ADD] = "admin/device_add",
        [HDX_ADMIN_DEVICE_REVOKE] = "admin/device_revoke",
        [HDX_ADMIN_DEVICE_SIGNKEY] = "admin/device_signkey",
        [HDX_ADMIN_DEVICE_IMPORT] = "admin/device_import",
        [HDX_ADMIN_USER_ADD] = "admin/user_add",
        [HDX_ADMIN_USER_PASSWD] = "admin/user_passwd",
        [HDX_ADMIN_USER_LOCK] = "admin/user_lock",
        [HDX_ADMIN_USER_UNLOCK] = "admin/user_unlock",
        [HDX_ADMIN_USER_REVOKE_SESSIONS] = "admin/user_revoke_sessions",
        [HDX_ADMIN_USER_MFA] = "admin/user_mfa",
        [HDX_ADMIN_USER_TRAINING] = "admin/user_training",
        [HDX_ADMIN_USER_TOTP_USED] = "admin/user_totp_used",
        [HDX_ADMIN_USER_RECOVERY_USED] = "admin/user_recovery_used",
        [HDX_ADMIN_CARETEAM_ADD] = "admin/careteam_add",
        [HDX_ADMIN_CARETEAM_REMOVE] = "admin/careteam_remove",
        [HDX_ADMIN_CONSENT_DENY] = "admin/consent_deny",
        [HDX_ADMIN_CONSENT_REMOVE] = "admin/consent_remove",
        [HDX_ADMIN_BREAK_GLASS] = "admin/break_glass",
        [HDX_ADMIN_BREAK_GLASS_REVIEW] = "admin/break_glass_review",
        [HDX_ADMIN_DEVICE_SCOPE] = "admin/device_scope",
        [HDX_ADMIN_ROUTE_DEAD] = "admin/route_dead",
        [HDX_ADMIN_ROUTE_RETRY] = "admin/route_retry",
        [HDX_ADMIN_ROUTE_SKIP] = "admin/route_skip",
        [HDX_ADMIN_ROUTE_DELIVERED] = "admin/route_delivered",
        [HDX_ADMIN_CLIENT_ADD] = "admin/client_add",
        [HDX_ADMIN_CLIENT_SCOPE] = "admin/client_scope",
        [HDX_ADMIN_CLIENT_REVOKE] = "admin/client_revoke",
        [HDX_ADMIN_AE_ADD] = "admin/ae_add",
        [HDX_ADMIN_AE_REMOVE] = "admin/ae_remove",
    };
    return op >= HDX_ADMIN_DEVICE_ADD && (size_t)op < NOPS ? types[op] : NULL;
}

int hdx_admin_is_user_op(enum hdx_admin_op op)
{
    return op >= HDX_ADMIN_USER_ADD && op <= HDX_ADMIN_USER_RECOVERY_USED;
}

int hdx_admin_is_route_op(enum hdx_admin_op op)
{
    return op >= HDX_ADMIN_ROUTE_DEAD && op <= HDX_ADMIN_ROUTE_DELIVERED;
}

int hdx_admin_is_policy_op(enum hdx_admin_op op)
{
    return op >= HDX_ADMIN_CARETEAM_ADD && op <= HDX_ADMIN_BREAK_GLASS_REVIEW;
}

int hdx_admin_is_client_op(enum hdx_admin_op op)
{
    return op >= HDX_ADMIN_CLIENT_ADD && op <= HDX_ADMIN_CLIENT_REVOKE;
}

static int is_consent_op(enum hdx_admin_op op)
{
    return op == HDX_ADMIN_CONSENT_DENY || op == HDX_ADMIN_CONSENT_REMOVE;
}

static int role_ok(const char *r)
{
    return !strcmp(r, "device") || !strcmp(r, "subscriber") || !strcmp(r, "gateway");
}

int hdx_admin_user_role_valid(const char *r)
{
    static const char *const roles[] = {"admin", "security-officer", "auditor",    "clinician",
                                        "nurse", "researcher",       "integration"};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (!strcmp(r, roles[i])) return 1;
    return 0;
}

static int serial_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Lower-case hex only: one spelling per key, so one body per statement. */
static int lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int hex_field(const char *v, uint8_t *out, size_t len)
{
    return strlen(v) == 2 * len && lower_hex(v, 2 * len) && hdx_unhex(v, out, len) == 0;
}

/* A time: decimal, no leading zero, within int64; min is 0 or 1. */
static int time_ok(const char *v, int64_t min, int64_t *out)
{
    uint64_t u;
    if (hdx_parse_u64(v, &u) != 0 || u > (uint64_t)INT64_MAX || (int64_t)u < min) return 0;
    *out = (int64_t)u;
    return 1;
}

/* YYYY-MM-DD, a day that exists, year 2000-9999: one spelling per date. */
static int date_ok(const char *v)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(v) != 10 || v[4] != '-' || v[7] != '-') return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9')) return 0;
    int y = atoi(v), m = atoi(v + 5), d = atoi(v + 8);
    if (y < 2000 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return 0;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 0;
    return 1;
}

/* 1-HDX_JUSTIFICATION_MAX bytes of printable ASCII (0x20-0x7e): nothing a terminal or a
 * line-oriented reader could take for anything but text. */
static int justification_ok(const char *v, size_t n)
{
    if (n < 1 || n > HDX_JUSTIFICATION_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e) return 0;
    return 1;
}

/* A consent's role, after its purpose: exactly one of the two is set. */
static int consent_role_ok(const struct hdx_admin *a, const char *v, size_t n)
{
    if (n == 0) return a->purpose[0] != 0;
    return !a->purpose[0] && hdx_role_parse(v) != HDX_ROLE_NONE;
}

/* "HEX64,HEX64,...": exactly HDX_USER_RECOVERY_CODES codes. */
static int recovery_ok(const char *v, struct hdx_admin *a)
{
    for (int i = 0; i < HDX_USER_RECOVERY_CODES; i++) {
        char one[2 * HDX_USER_RECOVERY_LEN + 1];
        if (strnlen(v, sizeof(one) - 1) != sizeof(one) - 1) return 0;
        memcpy(one, v, sizeof(one) - 1);
        one[sizeof(one) - 1] = 0;
        if (!hex_field(one, a->recovery[i], HDX_USER_RECOVERY_LEN)) return 0;
        v += sizeof(one) - 1;
        if (*v != (i + 1 < HDX_USER_RECOVERY_CODES ? ',' : 0)) return 0;
        v++;
    }
    return 1;
}

/* A SMART client's scope: non-empty, and exactly the canonical text of what it parses to (one
 * spelling per grant), into a->smart_scope. */
static int smart_scope_ok(struct hdx_admin *a, const char *v, size_t n)
{
    struct hdx_smart_scopes sc;
    char why[64];
    if (n < 1 || n > HDX_SMART_CLIENT_SCOPE_MAX ||
        hdx_smart_scope_parse(v, n, &sc, why, sizeof(why)) != HDX_OK || sc.n == 0 ||
        hdx_smart_scope_format(&sc, a->smart_scope, sizeof(a->smart_scope)) != HDX_OK ||
        strcmp(a->smart_scope, v) != 0) {
        a->smart_scope[0] = 0;
        return 0;
    }
    return 1;
}

/* A JWK Set: v (n bytes, not terminated) the unpadded base64url of a document hdx_jwks_parse
 * accepts, in its one spelling (libsodium refuses padding, other characters and non-zero
 * trailing bits), into a->jwks. */
static int jwks_value(struct hdx_admin *a, const char *v, size_t n)
{
    size_t bin = 0;
    const char *end = NULL;
    char why[64];
    struct hdx_jwks *k = NULL;
    /* the alphabet first: libsodium 1.0.18 decodes some bytes above 0x7f as if they were
     * base64url characters (found by fuzz_admin), which would give one statement two spellings */
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) || (unsigned char)v[i] > 0x7f)
            if (v[i] != '-' && v[i] != '_') return 0;
    if (n < 1 || n > JWKS_B64_MAX ||
        sodium_base642bin(a->jwks, sizeof(a->jwks), v, n, NULL, &bin, &end, B64U) != 0 ||
        end != v + n || bin < 1 || bin > HDX_SMART_JWKS_MAX ||
        sodium_base64_ENCODED_LEN(bin, B64U) - 1 != n)
        return 0;
    if (hdx_jwks_parse((const char *)a->jwks, bin, &k, why, sizeof(why)) != HDX_OK) return 0;
    hdx_jwks_free(k);
    a->jwks_len = bin;
    return 1;
}

int hdx_admin_ae_title_valid(const char *t)
{
    size_t n = strlen(t);
    if (n < 1 || n > HDX_AE_TITLE_MAX || t[0] == ' ' || t[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0x20 || t[i] > 0x7e || t[i] == '\\') return 0;
    return 1;
}

/* One value into a; 0 when invalid. */
static int set_value(struct hdx_admin *a, enum key k, const char *v)
{
    size_t n = strlen(v);
    uint64_t u;
    switch (k) {
    case K_NAME:
        if (!pki_name_valid(v) || n >= sizeof(a->name)) return 0;
        memcpy(a->name, v, n + 1);
        return 1;
    case K_ROLE:
        if (n >= sizeof(a->role) || !(is_consent_op(a->op)          ? consent_role_ok(a, v, n)
                                      : hdx_admin_is_user_op(a->op) ? hdx_admin_user_role_valid(v)
                                                                    : role_ok(v)))
            return 0;
        memcpy(a->role, v, n + 1);
        return 1;
    case K_SERIAL:
        if (!serial_ok(v)) return 0;
        memcpy(a->serial, v, n + 1);
        return 1;
    case K_CREATED:
        return time_ok(v, 1, &a->created_us);
    case K_REVOKED:
        return time_ok(v, a->op == HDX_ADMIN_DEVICE_IMPORT ? 0 : 1, &a->revoked_us);
    case K_PUB:
        if (n == 0) return 1;
        if (!hex_field(v, a->sign_pub, 32)) return 0;
        a->has_pub = 1;
        return 1;
    case K_PWHASH: /* a service's API key only for the integration role (auth/apikey.h) */
        if (n >= sizeof(a->pw_hash) ||
            !(hdx_password_hash_valid(v) ||
              (hdx_apikey_hash_valid(v) &&
               (a->op == HDX_ADMIN_USER_PASSWD || !strcmp(a->role, "integration")))))
            return 0;
        memcpy(a->pw_hash, v, n + 1);
        return 1;
    case K_TOTP: /* recovery follows and must agree: both or neither */
        if (n == 0) return 1;
        if (!hex_field(v, a->totp_sealed, HDX_USER_TOTP_SEALED_LEN)) return 0;
        a->has_mfa = 1;
        return 1;
    case K_RECOVERY:
        if (n == 0) return !a->has_mfa;
        return a->has_mfa && recovery_ok(v, a);
    case K_AT:
        return time_ok(v, 1, &a->at_us);
    case K_DATE:
        if (n != 0 && !date_ok(v)) return 0;
        memcpy(a->date, v, n + 1);
        return 1;
    case K_STEP:
        if (hdx_parse_u64(v, &u) != 0 || u < 1 || u > (uint64_t)INT64_MAX) return 0;
        a->step = u;
        return 1;
    case K_INDEX:
        if (n != 1 || v[0] < '0' || v[0] >= '0' + HDX_USER_RECOVERY_CODES) return 0;
        a->index = v[0] - '0';
        return 1;
    case K_PATIENT:
        return hex_field(v, a->patient, HDX_BLIND_LEN);
    case K_PURPOSE:
        if (n != 0 && hdx_purpose_parse(v) < 0) return 0;
        memcpy(a->purpose, v, n + 1); /* purpose names are < 16 bytes: parsed above */
        return 1;
    case K_EXPIRES:
        return time_ok(v, 1, &a->expires_us);
    case K_JUSTIFICATION:
        if (!justification_ok(v, n)) return 0;
        memcpy(a->justification, v, n + 1);
        return 1;
    case K_GRANTED:
        return time_ok(v, 1, &a->granted_us);
    case K_REVIEWER: /* after name: nobody reviews their own grant */
        if (!pki_name_valid(v) || n >= sizeof(a->reviewer) || !strcmp(v, a->name)) return 0;
        memcpy(a->reviewer, v, n + 1);
        return 1;
    case K_SCOPE: {
        struct hdx_scope sc; /* one spelling per scope: only the canonical text parses */
        if (n == 0) return 1;
        if (n >= sizeof(a->scope) || hdx_scope_parse(v, n, &sc) != HDX_OK) return 0;
        memcpy(a->scope, v, n + 1);
        a->has_scope = 1;
        return 1;
    }
    case K_SEQ:
        return hdx_parse_u64(v, &a->seq) == 0 && a->seq >= 1 && (v[0] != '0');
    case K_REASON:
        if (!justification_ok(v, n) || n >= sizeof(a->reason)) return 0;
        memcpy(a->reason, v, n + 1);
        return 1;
    case K_CSCOPE:
        return smart_scope_ok(a, v, n);
    case K_TITLE:
        if (!hdx_admin_ae_title_valid(v)) return 0;
        memcpy(a->title, v, n + 1);
        return 1;
    case K_JWKS: /* decoded from the body in place (jwks_value) */
    case K_END:
        break;
    }
    return 0;
}

/* The next "key=value\n" line at body[*off]: key must be want; *v, *vlen: the value in body
 * (no NUL, no LF; not terminated). */
static int next_view(const uint8_t *body, size_t len, size_t *off, const char *want, const char **v,
                     size_t *vlen)
{
    size_t klen = strlen(want), i = *off;
    if (len - i < klen + 2 || memcmp(body + i, want, klen) != 0 || body[i + klen] != '=') return 0;
    i += klen + 1;
    const uint8_t *nl = memchr(body + i, '\n', len - i);
    if (!nl) return 0;
    *vlen = (size_t)(nl - (body + i));
    if (memchr(body + i, 0, *vlen)) return 0;
    *v = (const char *)body + i;
    *off = i + *vlen + 1;
    return 1;
}

/* The same, the value copied to val (at most cap - 1 bytes) and terminated. */
static int next_line(const uint8_t *body, size_t len, size_t *off, const char *want, char *val,
                     size_t cap)
{
    const char *v;
    size_t vlen;
    if (!next_view(body, len, off, want, &v, &vlen) || vlen >= cap) return 0;
    memcpy(val, v, vlen);
    val[vlen] = 0;
    return 1;
}

int hdx_admin_parse(const uint8_t *body, size_t len, struct hdx_admin *out)
{
    char val[VAL_MAX + 1];
    size_t off = sizeof(ADMIN_MAGIC) - 1;
    memset(out, 0, sizeof(*out));
    if (!body || len > HDX_ADMIN_BODY_MAX || len < off || memcmp(body, ADMIN_MAGIC, off) != 0 ||
        !next_line(body, len, &off, "op", val, sizeof(val)))
        goto bad;
    for (size_t i = HDX_ADMIN_DEVICE_ADD; i < NOPS; i++)
        if (!strcmp(val, op_names[i])) out->op = (enum hdx_admin_op)i;
    if (!out->op) goto bad;
    for (const enum key *k = op_keys[out->op]; *k != K_END; k++) {
        const char *v;
        size_t vlen;
        if (*k == K_JWKS
                ? !next_view(body, len, &off, key_names[*k], &v, &vlen) || !jwks_value(out, v, vlen)
                : !next_line(body, len, &off, key_names[*k], val, sizeof(val)) ||
                      !set_value(out, *k, val))
            goto bad;
    }
    /* The actor came later: optional, and the last line. */
    if (off != len) {
        if (!next_line(body, len, &off, "by", val, sizeof(val)) || !hdx_admin_by_valid(val))
            goto bad;
        memcpy(out->by, val, strlen(val) + 1);
    }
    if (off != len) goto bad; /* trailing bytes, or a key this op does not have */
    sodium_memzero(val, sizeof(val));
    return HDX_OK;
bad:
    sodium_memzero(val, sizeof(val));
    memset(out, 0, sizeof(*out));
    return HDX_E_INVAL;
}

/* One "key=value\n" line of a's field k into out; the snprintf result. */
static int format_key(const struct hdx_admin *a, enum key k, char *out, size_t cap)
{
    char hex[VAL_MAX + 1] = "";
    switch (k) {
    case K_NAME:
        return snprintf(out, cap, "name=%s\n", a->name);
    case K_ROLE:
        return snprintf(out, cap, "role=%s\n", a->role);
    case K_SERIAL:
        return snprintf(out, cap, "serial=%s\n", a->serial);
    case K_CREATED:
        return snprintf(out, cap, "created_us=%lld\n", (long long)a->created_us);
    case K_REVOKED:
        return snprintf(out, cap, "revoked_us=%lld\n", (long long)a->revoked_us);
    case K_PUB:
        if (a->has_pub) hdx_hex(a->sign_pub, 32, hex);
        return snprintf(out, cap, "sign_pub=%s\n", hex);
    case K_PWHASH:
        return snprintf(out, cap, "pw_hash=%s\n", a->pw_hash);
    case K_TOTP:
        if (a->has_mfa) hdx_hex(a->totp_sealed, HDX_USER_TOTP_SEALED_LEN, hex);
        return snprintf(out, cap, "totp_sealed=%s\n", hex);
    case K_RECOVERY:
        for (int i = 0; a->has_mfa && i < HDX_USER_RECOVERY_CODES; i++) {
            char *p = hex + i * (2 * HDX_USER_RECOVERY_LEN + 1);
            hdx_hex(a->recovery[i], HDX_USER_RECOVERY_LEN, p);
            if (i + 1 < HDX_USER_RECOVERY_CODES) p[2 * HDX_USER_RECOVERY_LEN] = ',';
        }
        return snprintf(out, cap, "recovery=%s\n", hex);
    case K_AT:
        return snprintf(out, cap, "at_us=%lld\n", (long long)a->at_us);
    case K_DATE:
        return snprintf(out, cap, "date=%s\n", a->date);
    case K_STEP:
        return snprintf(out, cap, "step=%llu\n", (unsigned long long)a->step);
    case K_INDEX:
        return snprintf(out, cap, "index=%d\n", a->index);
    case K_PATIENT:
        hdx_hex(a->patient, HDX_BLIND_LEN, hex);
        return snprintf(out, cap, "patient=%s\n", hex);
    case K_PURPOSE:
        return snprintf(out, cap, "purpose=%s\n", a->purpose);
    case K_EXPIRES:
        return snprintf(out, cap, "expires_us=%lld\n", (long long)a->expires_us);
    case K_JUSTIFICATION:
        return snprintf(out, cap, "justification=%s\n", a->justification);
    case K_GRANTED:
        return snprintf(out, cap, "granted_us=%lld\n", (long long)a->granted_us);
    case K_REVIEWER:
        return snprintf(out, cap, "reviewer=%s\n", a->reviewer);
    case K_SCOPE:
        return snprintf(out, cap, "scope=%s\n", a->has_scope ? a->scope : "");
    case K_SEQ:
        return snprintf(out, cap, "seq=%llu\n", (unsigned long long)a->seq);
    case K_REASON:
        return snprintf(out, cap, "reason=%s\n", a->reason);
    case K_CSCOPE:
        return snprintf(out, cap, "scope=%s\n", a->smart_scope);
    case K_TITLE:
        return snprintf(out, cap, "title=%s\n", a->title);
    case K_JWKS: {
        if (a->jwks_len < 1 || a->jwks_len > HDX_SMART_JWKS_MAX) return -1;
        size_t enc = sodium_base64_ENCODED_LEN(a->jwks_len, B64U); /* with its NUL */
        if (cap < 5 + enc + 1) return (int)(5 + enc);              /* too small: as snprintf says */
        memcpy(out, "jwks=", 5);
        sodium_bin2base64(out + 5, enc, a->jwks, a->jwks_len, B64U);
        out[5 + enc - 1] = '\n';
        out[5 + enc] = 0;
        return (int)(5 + enc);
    }
    case K_END:
        break;
    }
    return 0;
}

int hdx_admin_by_valid(const char *by)
{
    size_t n = strlen(by), prefix = !strncmp(by, "local:", 6)   ? 6
                                    : !strncmp(by, "user:", 5)  ? 5
                                    : !strncmp(by, "route:", 6) ? 6
                                                                : 0;
    if (!prefix || n == prefix || n > 90) return 0;
    for (size_t i = prefix; i < n; i++) {
        unsigned char ch = (unsigned char)by[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("._@:/+-_", ch)))
            return 0;
    }
    return 1;
}

int hdx_admin_format(const struct hdx_admin *a, char *out, size_t cap)
{
    if (!hdx_admin_type(a->op) || cap < 1) return HDX_E_INVAL;
    size_t n = 0;
    int w = snprintf(out, cap, "%sop=%s\n", ADMIN_MAGIC, op_names[a->op]);
    if (w < 0 || (size_t)w >= cap) return HDX_E_TOOBIG;
    n = (size_t)w;
    for (const enum key *k = op_keys[a->op]; *k != K_END; k++) {
        w = format_key(a, *k, out + n, cap - n);
        if (w < 0 || (size_t)w >= cap - n) return HDX_E_TOOBIG;
        n += (size_t)w;
    }
    if (a->by[0]) {
        w = snprintf(out + n, cap - n, "by=%s\n", a->by);
        if (w < 0 || (size_t)w >= cap - n) return HDX_E_TOOBIG;
        n += (size_t)w;
    }
    /* Only what parses is written: the producer's statement is the record. */
    if (n > HDX_ADMIN_BODY_MAX) return HDX_E_INVAL;
    struct hdx_admin *back = malloc(sizeof(*back)); /* 15 KB: not on the caller's stack */
    if (!back) return HDX_E_NOMEM;
    int rc = hdx_admin_parse((const uint8_t *)out, n, back);
    sodium_memzero(back, sizeof(*back));
    free(back);
    return rc == HDX_OK ? (int)n : HDX_E_INVAL;
}

int hdx_admin_break_glass(const char *user, const uint8_t patient[HDX_BLIND_LEN],
                          int64_t expires_us, const char *justification, struct hdx_admin *a)
{
    char body[HDX_ADMIN_BODY_MAX + 1];
    memset(a, 0, sizeof(*a));
    a->op = HDX_ADMIN_BREAK_GLASS;
    if (strlen(user) >= sizeof(a->name) || strlen(justification) > HDX_JUSTIFICATION_MAX) goto bad;
    memcpy(a->name, user, strlen(user) + 1);
    memcpy(a->patient, patient, HDX_BLIND_LEN);
    a->expires_us = expires_us;
    memcpy(a->justification, justification, strlen(justification) + 1);
    if (hdx_admin_format(a, body, sizeof(body)) >= 0) return HDX_OK; /* every field checked */
bad:
    memset(a, 0, sizeof(*a));
    return HDX_E_INVAL;
}

/* ---------- apply: one function for the tables and for the replay ---------- */

/* present: the entry exists before (in) and after (out) the statement. */
static void entry_apply(struct hdx_registry_entry *e, int *present, const struct hdx_admin *a,
                        int64_t time_us)
{
    switch (a->op) {
    case HDX_ADMIN_DEVICE_ADD:
    case HDX_ADMIN_DEVICE_IMPORT:
        memset(e, 0, sizeof(*e));
        snprintf(e->dev.name, sizeof(e->dev.name), "%s", a->name);
        snprintf(e->dev.role, sizeof(e->dev.role), "%.15s", a->role); /* device roles: <= 10 */
        snprintf(e->dev.serial, sizeof(e->dev.serial), "%s", a->serial);
        e->dev.created_us = a->created_us;
        e->dev.revoked_us = a->op == HDX_ADMIN_DEVICE_IMPORT ? a->revoked_us : 0;
        *present = 1;
        break;
    case HDX_ADMIN_DEVICE_REVOKE:
        if (*present && !e->dev.revoked_us && !strcmp(e->dev.serial, a->serial))
            e->dev.revoked_us = a->revoked_us;
        return;
    case HDX_ADMIN_DEVICE_SIGNKEY:
        if (!*present) return;
        break;
    default: /* a user statement: never reaches a device entry */
        return;
    }
    e->has_key = a->has_pub;
    memcpy(e->sign_pub, a->sign_pub, 32);
    e->key_created_us = a->has_pub ? time_us : 0;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

void hdx_admin_user_apply(struct hdx_user *u, int *present, const struct hdx_admin *a,
                          int64_t time_us)
{
    if (a->op == HDX_ADMIN_USER_ADD) {
        memset(u, 0, sizeof(*u));
        snprintf(u->name, sizeof(u->name), "%s", a->name);
        snprintf(u->role, sizeof(u->role), "%s", a->role);
        snprintf(u->pw_hash, sizeof(u->pw_hash), "%s", a->pw_hash);
        u->has_mfa = a->has_mfa;
        memcpy(u->totp_sealed, a->totp_sealed, sizeof(u->totp_sealed));
        memcpy(u->recovery, a->recovery, sizeof(u->recovery));
        u->created_us = a->created_us;
        u->pw_changed_us = u->mfa_us = time_us;
        *present = 1;
        return;
    }
    if (!*present) return;
    switch (a->op) {
    case HDX_ADMIN_USER_PASSWD:
        /* A person's account never takes an API key: that would be a login without MFA. */
        if (hdx_apikey_hash_valid(a->pw_hash) && strcmp(u->role, "integration") != 0) return;
        snprintf(u->pw_hash, sizeof(u->pw_hash), "%s", a->pw_hash);
        u->pw_changed_us = time_us;
        u->sessions_revoked_us = max64(u->sessions_revoked_us, time_us);
        break;
    case HDX_ADMIN_USER_LOCK:
    case HDX_ADMIN_USER_UNLOCK:
        u->locked = a->op == HDX_ADMIN_USER_LOCK;
        break;
    case HDX_ADMIN_USER_REVOKE_SESSIONS:
        u->sessions_revoked_us = max64(u->sessions_revoked_us, a->at_us);
        break;
    case HDX_ADMIN_USER_MFA:
        u->has_mfa = a->has_mfa;
        memcpy(u->totp_sealed, a->totp_sealed, sizeof(u->totp_sealed));
        memcpy(u->recovery, a->recovery, sizeof(u->recovery));
        u->totp_step = 0;
        u->recovery_used = 0;
        u->mfa_us = time_us;
        u->sessions_revoked_us = max64(u->sessions_revoked_us, time_us);
        break;
    case HDX_ADMIN_USER_TRAINING:
        snprintf(u->training, sizeof(u->training), "%s", a->date);
        break;
    case HDX_ADMIN_USER_TOTP_USED:
        if (u->has_mfa && a->step > u->totp_step) u->totp_step = a->step;
        break;
    case HDX_ADMIN_USER_RECOVERY_USED:
        if (u->has_mfa) u->recovery_used |= 1u << a->index;
        break;
    default:
        break;
    }
}

static size_t user_pos(const struct hdx_registry *r, const char *name, int *found)
{
    size_t lo = 0, hi = r->nu;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->u[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct hdx_user *hdx_registry_user(const struct hdx_registry *r, const char *name)
{
    int found;
    size_t i = user_pos(r, name, &found);
    return found ? &r->u[i] : NULL;
}

static int registry_user_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    int found;
    size_t i = user_pos(r, a->name, &found);
    struct hdx_user u = {0};
    int present = found;
    if (found) u = r->u[i];
    hdx_admin_user_apply(&u, &present, a, time_us);
    if (!present) return HDX_OK;
    if (found) {
        r->u[i] = u;
        return HDX_OK;
    }
    if (r->nu == r->ucap) {
        size_t cap = r->ucap ? r->ucap * 2 : 16;
        struct hdx_user *p = realloc(r->u, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->u = p;
        r->ucap = cap;
    }
    memmove(&r->u[i + 1], &r->u[i], (r->nu - i) * sizeof(*r->u));
    r->u[i] = u;
    r->nu++;
    return HDX_OK;
}

static size_t registry_pos(const struct hdx_registry *r, const char *name, int *found)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->e[mid].dev.name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const struct hdx_registry_entry *hdx_registry_find(const struct hdx_registry *r, const char *name)
{
    int found;
    size_t i = registry_pos(r, name, &found);
    return found ? &r->e[i] : NULL;
}

/* ---------- policy data: careteams, consents, break_glass ---------- */

union policy_row {
    struct hdx_careteam ct;
    struct hdx_consent cs;
    struct hdx_break_glass bg;
};

static int careteam_cmp(const void *x, const void *y)
{
    const struct hdx_careteam *a = x, *b = y;
    int c = strcmp(a->user, b->user);
    return c ? c : memcmp(a->patient, b->patient, HDX_BLIND_LEN);
}

static int consent_cmp(const void *x, const void *y)
{
    const struct hdx_consent *a = x, *b = y;
    int c = memcmp(a->patient, b->patient, HDX_BLIND_LEN);
    if (!c) c = strcmp(a->purpose, b->purpose);
    return c ? c : strcmp(a->role, b->role);
}

static int grant_cmp(const void *x, const void *y)
{
    const struct hdx_break_glass *a = x, *b = y;
    int c = strcmp(a->user, b->user);
    if (!c) c = memcmp(a->patient, b->patient, HDX_BLIND_LEN);
    return c ? c : (a->granted_us > b->granted_us) - (a->granted_us < b->granted_us);
}

/* The row statement a addresses, its key fields only: the grant's time is the record's for
 * break_glass, granted_us for its review. */
static void policy_key(const struct hdx_admin *a, int64_t time_us, union policy_row *row)
{
    memset(row, 0, sizeof(*row));
    if (is_consent_op(a->op)) {
        memcpy(row->cs.patient, a->patient, HDX_BLIND_LEN);
        snprintf(row->cs.purpose, sizeof(row->cs.purpose), "%s", a->purpose);
        snprintf(row->cs.role, sizeof(row->cs.role), "%s", a->role);
    } else if (a->op == HDX_ADMIN_CARETEAM_ADD || a->op == HDX_ADMIN_CARETEAM_REMOVE) {
        snprintf(row->ct.user, sizeof(row->ct.user), "%s", a->name);
        memcpy(row->ct.patient, a->patient, HDX_BLIND_LEN);
    } else {
        snprintf(row->bg.user, sizeof(row->bg.user), "%s", a->name);
        memcpy(row->bg.patient, a->patient, HDX_BLIND_LEN);
        row->bg.granted_us = a->op == HDX_ADMIN_BREAK_GLASS ? time_us : a->granted_us;
    }
}

/* What a makes of the row it addresses (*present: it exists, before and after), given whether
 * its user and its reviewer exist: the apply at the top. Returns 0 when it changes nothing.
 * Only a review reads the row before it; the others set it whatever it was. */
static int policy_apply(union policy_row *row, int *present, const struct hdx_admin *a,
                        int64_t time_us, int user_ok, int reviewer_ok)
{
    switch (a->op) {
    case HDX_ADMIN_CARETEAM_ADD:
        if (!user_ok) return 0;
        *present = 1;
        return 1;
    case HDX_ADMIN_CONSENT_DENY:
        *present = 1;
        return 1;
    case HDX_ADMIN_CARETEAM_REMOVE:
    case HDX_ADMIN_CONSENT_REMOVE:
        *present = 0;
        return 1;
    case HDX_ADMIN_BREAK_GLASS:
        if (!user_ok) return 0;
        row->bg.expires_us = a->expires_us;
        snprintf(row->bg.justification, sizeof(row->bg.justification), "%s", a->justification);
        row->bg.reviewed_by[0] = 0;
        row->bg.reviewed_us = 0;
        *present = 1;
        return 1;
    case HDX_ADMIN_BREAK_GLASS_REVIEW:
        if (!*present || row->bg.reviewed_by[0] || !reviewer_ok) return 0;
        snprintf(row->bg.reviewed_by, sizeof(row->bg.reviewed_by), "%s", a->reviewer);
        row->bg.reviewed_us = time_us;
        return 1;
    default:
        return 0;
    }
}

/* A sorted array of rows of one policy table in the registry. */
struct ptab {
    void **base;
    size_t *n, *cap, size;
    int (*cmp)(const void *, const void *);
};

static struct ptab registry_table(struct hdx_registry *r, enum hdx_admin_op op)
{
    if (is_consent_op(op))
        return (struct ptab){(void **)&r->cs, &r->ncs, &r->cscap, sizeof(*r->cs), consent_cmp};
    if (op == HDX_ADMIN_CARETEAM_ADD || op == HDX_ADMIN_CARETEAM_REMOVE)
        return (struct ptab){(void **)&r->ct, &r->nct, &r->ctcap, sizeof(*r->ct), careteam_cmp};
    return (struct ptab){(void **)&r->bg, &r->nbg, &r->bgcap, sizeof(*r->bg), grant_cmp};
}

/* Where key is (*found) or would go in base[0..n). */
static size_t sorted_pos(const void *base, size_t n, size_t size, const void *key,
                         int (*cmp)(const void *, const void *), int *found)
{
    size_t lo = 0, hi = n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp((const char *)base + mid * size, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const void *sorted_find(const void *base, size_t n, size_t size, const void *key,
                               int (*cmp)(const void *, const void *))
{
    int found;
    size_t i = sorted_pos(base, n, size, key, cmp, &found);
    return found ? (const char *)base + i * size : NULL;
}

/* ---------- subscribers' scopes ---------- */

static int scope_cmp(const void *x, const void *y)
{
    const struct hdx_device_scope *a = x, *b = y;
    return strcmp(a->name, b->name);
}

const struct hdx_device_scope *hdx_registry_scope(const struct hdx_registry *r, const char *name)
{
    struct hdx_device_scope key; /* only its name is compared */
    snprintf(key.name, sizeof(key.name), "%s", name);
    return sorted_find(r->sc, r->nsc, sizeof(*r->sc), &key, scope_cmp);
}

/* device_scope: the row becomes the scope, or goes; the device need not exist (see the top). */
static int registry_scope_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    int found;
    struct hdx_device_scope row = {0};
    snprintf(row.name, sizeof(row.name), "%s", a->name);
    size_t i = sorted_pos(r->sc, r->nsc, sizeof(*r->sc), &row, scope_cmp, &found);
    if (!a->has_scope) {
        if (found) {
            memmove(&r->sc[i], &r->sc[i + 1], (r->nsc - i - 1) * sizeof(*r->sc));
            r->nsc--;
        }
        return HDX_OK;
    }
    snprintf(row.scope, sizeof(row.scope), "%s", a->scope);
    row.set_us = time_us;
    if (!found && r->nsc == r->sccap) {
        size_t cap = r->sccap ? r->sccap * 2 : 8;
        struct hdx_device_scope *p = realloc(r->sc, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->sc = p;
        r->sccap = cap;
    }
    if (!found) {
        memmove(&r->sc[i + 1], &r->sc[i], (r->nsc - i) * sizeof(*r->sc));
        r->nsc++;
    }
    r->sc[i] = row;
    return HDX_OK;
}

/* ---------- DICOM AE titles ---------- */

static int ae_cmp(const void *x, const void *y)
{
    const struct hdx_dicom_ae *a = x, *b = y;
    return strcmp(a->title, b->title);
}

const struct hdx_dicom_ae *hdx_registry_ae(const struct hdx_registry *r, const char *title)
{
    struct hdx_dicom_ae key; /* only its title is compared */
    snprintf(key.title, sizeof(key.title), "%s", title);
    return sorted_find(r->ae, r->nae, sizeof(*r->ae), &key, ae_cmp);
}

static int registry_ae_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    int found;
    struct hdx_dicom_ae row = {0};
    snprintf(row.title, sizeof(row.title), "%s", a->title);
    size_t i = sorted_pos(r->ae, r->nae, sizeof(*r->ae), &row, ae_cmp, &found);
    if (a->op == HDX_ADMIN_AE_REMOVE) {
        if (found) {
            memmove(&r->ae[i], &r->ae[i + 1], (r->nae - i - 1) * sizeof(*r->ae));
            r->nae--;
        }
        return HDX_OK;
    }
    snprintf(row.name, sizeof(row.name), "%s", a->name);
    row.set_us = time_us;
    if (!found && r->nae == r->aecap) {
        size_t cap = r->aecap ? r->aecap * 2 : 8;
        struct hdx_dicom_ae *p = realloc(r->ae, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->ae = p;
        r->aecap = cap;
    }
    if (!found) {
        memmove(&r->ae[i + 1], &r->ae[i], (r->nae - i) * sizeof(*r->ae));
        r->nae++;
    }
    r->ae[i] = row;
    return HDX_OK;
}

static int registry_policy_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    struct ptab t = registry_table(r, a->op);
    union policy_row row;
    int found;
    policy_key(a, time_us, &row);
    size_t i = sorted_pos(*t.base, *t.n, t.size, &row, t.cmp, &found);
    int present = found;
    if (found) memcpy(&row, (char *)*t.base + i * t.size, t.size);
    if (!policy_apply(&row, &present, a, time_us, hdx_registry_user(r, a->name) != NULL,
                      hdx_registry_user(r, a->reviewer) != NULL) ||
        (!found && !present))
        return HDX_OK;
    if (!found && *t.n == *t.cap) {
        size_t cap = *t.cap ? *t.cap * 2 : 16;
        void *p = realloc(*t.base, cap * t.size);
        if (!p) return HDX_E_NOMEM;
        *t.base = p;
        *t.cap = cap;
    }
    char *at = (char *)*t.base + i * t.size; /* not NULL: a row was there, or room made */
    if (found && present) {
        memcpy(at, &row, t.size);
    } else if (found) {
        memmove(at, at + t.size, (*t.n - i - 1) * t.size);
        (*t.n)--;
    } else {
        memmove(at + t.size, at, (*t.n - i) * t.size);
        memcpy(at, &row, t.size);
        (*t.n)++;
    }
    return HDX_OK;
}

const struct hdx_careteam *hdx_registry_careteam(const struct hdx_registry *r,
                                                 const struct hdx_careteam *key)
{
    return sorted_find(r->ct, r->nct, sizeof(*r->ct), key, careteam_cmp);
}

const struct hdx_consent *hdx_registry_consent(const struct hdx_registry *r,
                                               const struct hdx_consent *key)
{
    return sorted_find(r->cs, r->ncs, sizeof(*r->cs), key, consent_cmp);
}

const struct hdx_break_glass *hdx_registry_break_glass(const struct hdx_registry *r,
                                                       const struct hdx_break_glass *key)
{
    return sorted_find(r->bg, r->nbg, sizeof(*r->bg), key, grant_cmp);
}

/* A policy statement against its table: the same apply as the replay. */
static int policy_commit(struct hdx_store *s, const struct hdx_admin *a, int64_t time_us)
{
    union policy_row row;
    int present = 0, user_ok = 0, reviewer_ok = 0, rc = HDX_OK;
    policy_key(a, time_us, &row);
    if (a->op == HDX_ADMIN_CARETEAM_ADD || a->op == HDX_ADMIN_BREAK_GLASS)
        rc = user_ok = hdx_store_user_exists(s, a->name);
    if (a->op == HDX_ADMIN_BREAK_GLASS_REVIEW) {
        rc = reviewer_ok = hdx_store_user_exists(s, a->reviewer);
        if (rc >= 0) rc = hdx_store_break_glass_get(s, &row.bg, &row.bg);
        present = rc == HDX_OK;
        if (rc == HDX_E_NOTFOUND) rc = HDX_OK; /* HDX_E_INTEGRITY: not silently replaced */
    }
    if (rc < 0) return rc;
    if (!policy_apply(&row, &present, a, time_us, user_ok, reviewer_ok)) return HDX_OK;
    if (is_consent_op(a->op)) return hdx_store_consent_set(s, &row.cs, present);
    if (a->op == HDX_ADMIN_CARETEAM_ADD || a->op == HDX_ADMIN_CARETEAM_REMOVE)
        return hdx_store_careteam_set(s, &row.ct, present);
    return hdx_store_break_glass_put(s, &row.bg); /* a grant, once made, stays */
}

/* ---------- SMART Backend Services clients ---------- */

/* What a client_* statement makes of the row before it (*present: it exists, before and
 * after): the apply at the top. 1 changed, 0 nothing, HDX_E_NOMEM (the row unchanged). A
 * client_add gives the row a fresh copy of the JWK Set and frees the one it had. */
static int client_apply(struct hdx_smart_client *c, int *present, const struct hdx_admin *a)
{
    switch (a->op) {
    case HDX_ADMIN_CLIENT_ADD: {
        if (*present && !c->revoked_us) return 0; /* an active client is never replaced */
        uint8_t *jwks = malloc(a->jwks_len ? a->jwks_len : 1);
        if (!jwks) return HDX_E_NOMEM;
        memcpy(jwks, a->jwks, a->jwks_len);
        hdx_smart_client_clear(c);
        snprintf(c->name, sizeof(c->name), "%s", a->name);
        c->jwks = jwks;
        c->jwks_len = a->jwks_len;
        snprintf(c->scope, sizeof(c->scope), "%s", a->smart_scope);
        c->created_us = a->created_us;
        c->revoked_us = 0;
        *present = 1;
        return 1;
    }
    case HDX_ADMIN_CLIENT_SCOPE:
        if (!*present || c->revoked_us) return 0;
        snprintf(c->scope, sizeof(c->scope), "%s", a->smart_scope);
        return 1;
    case HDX_ADMIN_CLIENT_REVOKE:
        if (!*present || c->revoked_us) return 0;
        c->revoked_us = a->revoked_us;
        return 1;
    default:
        return 0;
    }
}

static int client_cmp(const void *x, const void *y)
{
    const struct hdx_smart_client *a = x, *b = y;
    return strcmp(a->name, b->name);
}

const struct hdx_smart_client *hdx_registry_client(const struct hdx_registry *r, const char *name)
{
    struct hdx_smart_client key; /* only its name is compared */
    snprintf(key.name, sizeof(key.name), "%s", name);
    return sorted_find(r->cl, r->ncl, sizeof(*r->cl), &key, client_cmp);
}

static int registry_client_apply(struct hdx_registry *r, const struct hdx_admin *a)
{
    int found;
    struct hdx_smart_client key;
    snprintf(key.name, sizeof(key.name), "%s", a->name);
    size_t i = sorted_pos(r->cl, r->ncl, sizeof(*r->cl), &key, client_cmp, &found);
    if (found) { /* in place: the row owns its JWK Set */
        int present = 1, rc = client_apply(&r->cl[i], &present, a);
        return rc < 0 ? rc : HDX_OK;
    }
    if (a->op != HDX_ADMIN_CLIENT_ADD) return HDX_OK; /* nothing to change */
    if (r->ncl == r->clcap) {
        size_t cap = r->clcap ? r->clcap * 2 : 8;
        struct hdx_smart_client *p = realloc(r->cl, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->cl = p;
        r->clcap = cap;
    }
    struct hdx_smart_client row = {0};
    int present = 0, rc = client_apply(&row, &present, a);
    if (rc < 0) return rc;
    memmove(&r->cl[i + 1], &r->cl[i], (r->ncl - i) * sizeof(*r->cl));
    r->cl[i] = row; /* moved: the registry owns row.jwks now */
    r->ncl++;
    return HDX_OK;
}

/* A client statement against its table: the same apply as the replay. */
static int client_commit(struct hdx_store *s, const struct hdx_admin *a)
{
    struct hdx_smart_client c;
    int present = 0, rc = hdx_store_client_get(s, a->name, &c);
    if (rc == HDX_OK)
        present = 1;
    else if (rc != HDX_E_NOTFOUND)
        return rc; /* a damaged row is not silently replaced */
    rc = client_apply(&c, &present, a);
    if (rc > 0) rc = hdx_store_client_put(s, &c);
    hdx_smart_client_clear(&c);
    return rc < 0 ? rc : HDX_OK;
}

int hdx_registry_apply(struct hdx_registry *r, const struct hdx_admin *a, int64_t time_us)
{
    if (hdx_admin_is_client_op(a->op)) return registry_client_apply(r, a);
    if (hdx_admin_is_user_op(a->op)) return registry_user_apply(r, a, time_us);
    if (hdx_admin_is_policy_op(a->op)) return registry_policy_apply(r, a, time_us);
    if (a->op == HDX_ADMIN_DEVICE_SCOPE) return registry_scope_apply(r, a, time_us);
    if (a->op == HDX_ADMIN_AE_ADD || a->op == HDX_ADMIN_AE_REMOVE)
        return registry_ae_apply(r, a, time_us);
    if (hdx_admin_is_route_op(a->op)) return HDX_OK; /* no table: the log is the list */
    int found;
    size_t i = registry_pos(r, a->name, &found);
    struct hdx_registry_entry e = {0};
    int present = found;
    if (found) e = r->e[i];
    entry_apply(&e, &present, a, time_us);
    if (!present) return HDX_OK;
    if (found) {
        r->e[i] = e;
        return HDX_OK;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct hdx_registry_entry *p = realloc(r->e, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        r->e = p;
        r->cap = cap;
    }
    memmove(&r->e[i + 1], &r->e[i], (r->n - i) * sizeof(*r->e));
    r->e[i] = e;
    r->n++;
    return HDX_OK;
}

void hdx_registry_free(struct hdx_registry *r)
{
    free(r->ct);
    free(r->cs);
    free(r->bg);
    free(r->sc);
    free(r->ae);
    for (size_t i = 0; i < r->ncl; i++)
        free(r->cl[i].jwks);
    free(r->cl);
    free(r->e);
    if (r->u) sodium_memzero(r->u, r->ucap * sizeof(*r->u));
    free(r->u);
    memset(r, 0, sizeof(*r));
}

/* A user statement against the users table: the same apply as the replay. */
static int user_commit(struct hdx_store *s, const struct hdx_admin *a, int64_t time_us)
{
    struct hdx_user u = {0};
    int present = 0, rc = hdx_store_user_get(s, a->name, &u);
    if (rc == HDX_OK)
        present = 1;
    else if (rc != HDX_E_NOTFOUND)
        return rc; /* a damaged row is not silently replaced */
    hdx_admin_user_apply(&u, &present, a, time_us);
    rc = present ? hdx_store_user_put(s, &u) : HDX_OK;
    sodium_memzero(&u, sizeof(u));
    return rc;
}

int hdx_admin_commit(struct hdx_store *s, int64_t queue_id, const uint8_t *body, size_t len,
                     int64_t time_us)
{
    struct hdx_admin a;
    struct hdx_registry_entry e = {0};
    int present = 0, rc = hdx_admin_parse(body, len, &a);
    if (rc != HDX_OK) return rc;
    if (hdx_admin_is_user_op(a.op) || hdx_admin_is_policy_op(a.op)) {
        rc = hdx_admin_is_user_op(a.op) ? user_commit(s, &a, time_us)
                                        : policy_commit(s, &a, time_us);
        goto dequeue;
    }
    if (hdx_admin_is_route_op(a.op)) goto dequeue; /* no table (see admin.h) */
    if (hdx_admin_is_client_op(a.op)) {
        rc = client_commit(s, &a);
        goto dequeue;
    }
    if (a.op == HDX_ADMIN_DEVICE_SCOPE) {
        rc = hdx_store_device_scope_set(s, a.name, a.has_scope ? a.scope : NULL, time_us);
        goto dequeue;
    }
    if (a.op == HDX_ADMIN_AE_ADD || a.op == HDX_ADMIN_AE_REMOVE) {
        rc = hdx_store_dicom_ae_set(s, a.title, a.op == HDX_ADMIN_AE_ADD ? a.name : NULL, time_us);
        goto dequeue;
    }
    rc = hdx_store_device_get(s, a.name, &e.dev);
    if (rc == HDX_OK) {
        present = 1;
        rc = hdx_store_device_signkey_row(s, a.name, e.sign_pub, &e.key_created_us);
        e.has_key = rc == HDX_OK;
        if (rc == HDX_E_NOTFOUND) rc = HDX_OK;
    } else if (rc == HDX_E_NOTFOUND) {
        rc = HDX_OK;
    }
    if (rc != HDX_OK) return rc;
    entry_apply(&e, &present, &a, time_us);
    if (present) {
        rc = hdx_store_device_put(s, &e.dev);
        if (rc == HDX_OK)
            rc = hdx_store_device_signkey_set(s, e.dev.name, e.has_key ? e.sign_pub : NULL,
                                              e.key_created_us);
    }
dequeue:
    /* The row may already be gone when no one else could have taken it: a statement is applied
     * once, by the one commit thread that owns the store. */
    if (rc == HDX_OK && queue_id) {
        rc = hdx_store_admin_dequeue(s, queue_id);
        if (rc == HDX_E_NOTFOUND) rc = HDX_OK;
    }
    return rc;
}

struct migrate_ctx {
    struct hdx_store *s;
    size_t n;
    int rc;
};

static int migrate_one(void *arg, const struct hdx_device *d)
{
    struct migrate_ctx *m = arg;
    struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_IMPORT};
    char body[HDX_ADMIN_BODY_MAX + 1];
    int64_t created = 0, id;
    snprintf(a.name, sizeof(a.name), "%s", d->name);
    snprintf(a.role, sizeof(a.role), "%s", d->role);
    snprintf(a.serial, sizeof(a.serial), "%s", d->serial);
    a.created_us = d->created_us;
    a.revoked_us = d->revoked_us;
    a.has_pub = hdx_store_device_signkey_row(m->s, d->name, a.sign_pub, &created) == HDX_OK;
    int n = hdx_admin_format(&a, body, sizeof(body));
    if (n < 0) {
        m->rc = n; /* a row no statement can describe: an operator must look at it */
        return 1;
    }
    m->rc = hdx_store_admin_enqueue(m->s, (const uint8_t *)body, (size_t)n, hdx_now_us(), &id);
    m->n++;
    return m->rc != HDX_OK;
}

int hdx_admin_migrate(struct hdx_store *s, size_t *queued)
{
    int64_t v;
    *queued = 0;
    int rc = hdx_store_meta_get(s, "registry_logged", &v);
    if (rc != HDX_E_NOTFOUND) return rc;
    struct migrate_ctx m = {s, 0, HDX_OK};
    if ((rc = hdx_store_begin(s)) != HDX_OK) return rc;
    rc = hdx_store_devices_list(s, migrate_one, &m);
    if (rc == HDX_OK) rc = m.rc;
    if (rc == HDX_OK) rc = hdx_store_meta_set(s, "registry_logged", 1);
    if (rc == HDX_OK) rc = hdx_store_commit(s);
    if (rc != HDX_OK) {
        hdx_store_rollback(s);
        return rc;
    }
    *queued = m.n;
    return HDX_OK;
}

/* An offline read's audit record from the queue (hdx_admin_item_new). */
static struct hdx_intake_item *queued_audit_item(int64_t id, const uint8_t *body, size_t len,
                                                 int *bad)
{
    struct hdx_audit_view v;
    uint8_t patient[HDX_BLIND_LEN] = {0};
    *bad = hdx_audit_parse(body, len, &v) != HDX_OK || strcmp(v.event, "access") != 0 ||
           strcmp(v.action, "offline_read") != 0 || strncmp(v.principal, "local:", 6) != 0 ||
           (strcmp(v.patient, "-") != 0 && hdx_unhex(v.patient, patient, HDX_BLIND_LEN) != 0);
    if (*bad) return NULL;
    struct hdx_intake_item *it = hdx_intake_item_new(body, len);
    if (!it) return NULL;
    it->kind = HDX_KIND_AUDIT;
    snprintf(it->sender, sizeof(it->sender), "%s", HDX_AUDIT_SENDER);
    snprintf(it->type, sizeof(it->type), "audit/access");
    memcpy(it->patient, patient, HDX_BLIND_LEN);
    it->admin_id = id;
    return it;
}

struct hdx_intake_item *hdx_admin_item_new(int64_t id, const uint8_t *body, size_t len, int *bad)
{
    struct hdx_admin a;
    static const char audit_magic[] = "HDX-AUDIT 1\n";
    if (len >= sizeof(audit_magic) - 1 && !memcmp(body, audit_magic, sizeof(audit_magic) - 1))
        return queued_audit_item(id, body, len, bad);
    *bad = hdx_admin_parse(body, len, &a) != HDX_OK;
    if (*bad) return NULL;
    struct hdx_intake_item *it = hdx_intake_item_new(body, len);
    if (!it) return NULL;
    it->kind = HDX_KIND_ADMIN;
    snprintf(it->sender, sizeof(it->sender), "%s", HDX_ADMIN_SENDER);
    snprintf(it->type, sizeof(it->type), "%s", hdx_admin_type(a.op));
    it->admin_id = id;
    return it;
}

int hdx_admin_lock(const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) return HDX_E_IO;
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return HDX_OK;
    int busy = errno == EWOULDBLOCK;
    close(*fd);
    *fd = -1;
    return busy ? HDX_E_EXISTS : HDX_E_IO;
}
