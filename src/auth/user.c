#include "auth/user.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "pki/pki.h"

const char *hdx_auth_reason_name(enum hdx_auth_reason r)
{
    switch (r) {
    case HDX_AUTH_R_NONE:
        return "none";
    case HDX_AUTH_R_NO_USER:
        return "no_user";
    case HDX_AUTH_R_PASSWORD:
        return "password";
    case HDX_AUTH_R_LOCKED:
        return "locked";
    case HDX_AUTH_R_NO_SECOND:
        return "no_second_factor";
    case HDX_AUTH_R_SECOND:
        return "second_factor";
    case HDX_AUTH_R_REPLAY:
        return "totp_replay";
    case HDX_AUTH_R_ERROR:
        return "error";
    }
    return "error";
}

static int is_totp_shape(const char *s)
{
    size_t n = strlen(s);
    if (n != HDX_TOTP_DIGITS) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* The second factor of a user whose password matched. */
static void second_factor(const struct hdx_keyring *kr, const struct hdx_user *u,
                          const struct hdx_auth_input *in, struct hdx_auth_outcome *out)
{
    if (!in->second || !in->second[0]) {
        out->reason = HDX_AUTH_R_NO_SECOND;
        return;
    }
    if (is_totp_shape(in->second)) {
        uint8_t secret[HDX_TOTP_SECRET_LEN];
        uint64_t last = u->totp_step > in->pending_step ? u->totp_step : in->pending_step, step;
        if (hdx_totp_open(kr, u->name, u->totp_sealed, secret) != HDX_OK) {
            out->reason = HDX_AUTH_R_ERROR; /* a sealed secret that does not open: tampering */
            return;
        }
        int rc = hdx_totp_check(secret, sizeof(secret), in->now, HDX_TOTP_DIGITS, in->second, last,
                                &step);
        sodium_memzero(secret, sizeof(secret));
        if (rc == HDX_E_EXISTS) {
            out->reason = HDX_AUTH_R_REPLAY;
        } else if (rc != HDX_OK) {
            out->reason = HDX_AUTH_R_SECOND;
        } else {
            out->result = HDX_AUTH_OK;
            out->factor = HDX_FACTOR_TOTP;
            out->step = step;
        }
        return;
    }
    int i = hdx_recovery_match(kr, u->name, in->second, u->recovery,
                               u->recovery_used | in->pending_recovery);
    if (i < 0) {
        out->reason = HDX_AUTH_R_SECOND;
        return;
    }
    out->result = HDX_AUTH_OK;
    out->factor = HDX_FACTOR_RECOVERY;
    out->recovery_index = i;
}

int hdx_user_authenticate(struct hdx_store *s, const struct hdx_keyring *kr,
                          const struct hdx_pw_cost *cost, const struct hdx_auth_input *in,
                          struct hdx_auth_outcome *out)
{
    struct hdx_user u;
    memset(out, 0, sizeof(*out));
    out->recovery_index = -1;
    if (!s || !kr || !cost || !in || !in->name || !in->password) return HDX_E_INVAL;
    int found = pki_name_valid(in->name) ? hdx_store_user_get(s, in->name, &u) : HDX_E_NOTFOUND;
    /* The Argon2id work is done whatever the row says: found or not, locked or not. */
    int pw_ok = hdx_password_verify(cost, found == HDX_OK ? u.pw_hash : NULL, in->password,
                                    in->password_len, &out->rehash);
    if (found != HDX_OK) {
        out->reason = found == HDX_E_NOTFOUND ? HDX_AUTH_R_NO_USER : HDX_AUTH_R_ERROR;
        out->rehash = 0;
        goto done;
    }
    if (!pw_ok) {
        out->reason = HDX_AUTH_R_PASSWORD;
        goto done;
    }
    if (u.locked) {
        out->reason = HDX_AUTH_R_LOCKED;
        goto done;
    }
    if (!u.has_mfa) {
        out->result = HDX_AUTH_ENROL_ONLY;
    } else {
        second_factor(kr, &u, in, out);
    }
    if (out->result != HDX_AUTH_DENIED) {
        snprintf(out->role, sizeof(out->role), "%s", u.role);
        out->sessions_revoked_us = u.sessions_revoked_us;
        snprintf(out->training, sizeof(out->training), "%s", u.training);
    }
done:
    sodium_memzero(&u, sizeof(u));
    return HDX_OK;
}

int hdx_auth_consumed(const struct hdx_auth_outcome *o, const char *name, struct hdx_admin *a)
{
    memset(a, 0, sizeof(*a));
    if (o->result != HDX_AUTH_OK || !pki_name_valid(name) || strlen(name) >= sizeof(a->name))
        return HDX_E_INVAL;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (o->factor == HDX_FACTOR_TOTP && o->step > 0) {
        a->op = HDX_ADMIN_USER_TOTP_USED;
        a->step = o->step;
        return HDX_OK;
    }
    if (o->factor == HDX_FACTOR_RECOVERY && o->recovery_index >= 0 &&
        o->recovery_index < HDX_RECOVERY_CODES) {
        a->op = HDX_ADMIN_USER_RECOVERY_USED;
        a->index = o->recovery_index;
        return HDX_OK;
    }
    memset(a, 0, sizeof(*a));
    return HDX_E_INVAL;
}

int hdx_user_enrol(const struct hdx_keyring *kr, const char *name, struct hdx_admin *a,
                   struct hdx_enrolment *e)
{
    uint8_t secret[HDX_TOTP_SECRET_LEN];
    memset(e, 0, sizeof(*e));
    hdx_totp_secret_new(secret);
    int rc = hdx_totp_seal(kr, name, secret, a->totp_sealed);
    if (rc == HDX_OK) rc = hdx_totp_uri(name, secret, sizeof(secret), e->uri, sizeof(e->uri));
    if (rc == HDX_OK) rc = hdx_recovery_new(kr, name, e->codes, a->recovery);
    sodium_memzero(secret, sizeof(secret));
    if (rc != HDX_OK) {
        sodium_memzero(e, sizeof(*e));
        memset(a->totp_sealed, 0, sizeof(a->totp_sealed));
        memset(a->recovery, 0, sizeof(a->recovery));
        a->has_mfa = 0;
        return rc;
    }
    a->has_mfa = 1;
    return HDX_OK;
}
