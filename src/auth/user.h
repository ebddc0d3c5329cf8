/* user: the login decision for a person (DESIGN M8) and the enrolment of a second factor.
 * hdx_user_authenticate reads the user's row (store/store.h, the replay of the user_* admin
 * records) and checks the password (Argon2id) and then the second factor: a 6-digit TOTP code
 * or one of the recovery codes. It always does the same Argon2id work, for a missing user, a
 * locked one and a wrong password alike (auth/password.h: the dummy hash), so the caller's
 * answer can be one message in one time. The reason says which check failed: for the log
 * and the audit record only, never for the reply ("invalid credentials" whatever it is).
 * It decides and never writes: on success the outcome names what the login consumed (the
 * TOTP step, or the recovery code), and the caller MUST commit hdx_auth_consumed's statement
 * (an admin record, commit/admin.h) before it grants the session, so a code works once even
 * across a restart. Until that record is committed the table still holds the old step: the
 * caller passes what it has accepted but not yet committed for this user in pending_step and
 * pending_recovery (or serialises logins per user), or a code could be used twice meanwhile.
 * Thread: the store handle's thread; kr and cost shared read-only. */
#ifndef HDX_AUTH_USER_H
#define HDX_AUTH_USER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "auth/password.h"
#include "auth/totp.h"
#include "commit/admin.h"
#include "store/store.h"

enum hdx_auth_result {
    HDX_AUTH_DENIED = 0,
    HDX_AUTH_OK,         /* password and second factor */
    HDX_AUTH_ENROL_ONLY, /* password right, the user has no second factor: may only enrol */
};
enum hdx_auth_reason { /* internal: logs and audit records only */
                       HDX_AUTH_R_NONE = 0,
                       HDX_AUTH_R_NO_USER,
                       HDX_AUTH_R_PASSWORD,
                       HDX_AUTH_R_LOCKED,
                       HDX_AUTH_R_NO_SECOND, /* the user has MFA and none was given */
                       HDX_AUTH_R_SECOND,    /* wrong TOTP or recovery code */
                       HDX_AUTH_R_REPLAY,    /* a TOTP code whose step was already used */
                       HDX_AUTH_R_ERROR,     /* store or key failure: denied too */
};
enum hdx_auth_factor { HDX_FACTOR_NONE = 0, HDX_FACTOR_TOTP, HDX_FACTOR_RECOVERY };

struct hdx_auth_input {
    const char *name;
    const char *password;
    size_t password_len;
    const char *second; /* TOTP code or recovery code; NULL or "": none */
    time_t now;
    uint64_t pending_step;     /* highest step accepted for this user, not yet committed */
    uint32_t pending_recovery; /* codes accepted for this user, not yet committed */
};

struct hdx_auth_outcome {
    enum hdx_auth_result result;
    enum hdx_auth_reason reason;
    enum hdx_auth_factor factor;
    uint64_t step;      /* HDX_FACTOR_TOTP: the step the code matched */
    int recovery_index; /* HDX_FACTOR_RECOVERY: which code */
    int rehash;         /* the password hash was made under another cost */
    /* On OK and ENROL_ONLY, what the session needs (no secret): */
    char role[24];
    int64_t sessions_revoked_us;
    char training[11];
};

/* Returns HDX_OK with the decision in *out (DENIED included), or a negative error only for
 * bad arguments. */
int hdx_user_authenticate(struct hdx_store *s, const struct hdx_keyring *kr,
                          const struct hdx_pw_cost *cost, const struct hdx_auth_input *in,
                          struct hdx_auth_outcome *out);
/* The user_totp_used or user_recovery_used statement for an OK outcome of user name.
 * HDX_E_INVAL when the outcome consumed nothing. */
int hdx_auth_consumed(const struct hdx_auth_outcome *o, const char *name, struct hdx_admin *a);
/* A short stable word for the reason ("no_user", "password", ...), for log lines. */
const char *hdx_auth_reason_name(enum hdx_auth_reason r);

/* What enrolment shows the user once: the otpauth URI (holding the secret) and the recovery
 * codes. Wipe it with sodium_memzero after printing. */
struct hdx_enrolment {
    char uri[HDX_TOTP_URI_MAX];
    char codes[HDX_RECOVERY_CODES][HDX_RECOVERY_SHOWN_LEN + 1];
};
/* A new TOTP secret and recovery codes for user name: sealed and hashed into a->totp_sealed,
 * a->recovery and a->has_mfa (for user_add or user_mfa), shown in *e. */
int hdx_user_enrol(const struct hdx_keyring *kr, const char *name, struct hdx_admin *a,
                   struct hdx_enrolment *e);

#endif
