/* review: the pure part of `hdx access-review` (docs/ACCESS-REVIEW.md, HIPAA
 * §164.308(a)(1)(ii)(D) and (a)(4)): the periods its options take, the rule of each finding
 * over the facts the command gathered from the store (the users, care-team, break_glass and
 * devices tables, and what the audit and admin records of a bounded window say), the set of
 * (user, patient) pairs those records name, and the line a finding prints.
 *
 * One rule for every "unused" finding: a subject is judged only once it is older than the
 * finding's period (a user created, a device enrolled, a patient assigned to a care team
 * within the period had no full period in which to be used), and it is unused when no record
 * of the period shows its use. Times are microseconds since the epoch; a period is > 0.
 * A detail names patients only by the first HDX_REVIEW_PATIENT_HEX hex digits of their blind
 * token, never the identifier. No I/O. Thread: any; a pair set belongs to its caller. */
#ifndef HDX_REVIEW_H
#define HDX_REVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "store/store.h"

#define HDX_REVIEW_PATIENT_HEX 12
#define HDX_REVIEW_DAY_US (86400LL * 1000000)
#define HDX_REVIEW_PERIOD_MAX_US (36600 * HDX_REVIEW_DAY_US) /* 100 years */
#define HDX_REVIEW_DETAIL_MAX 256

/* "N" (days), or N followed by one unit s, m, h or d ("90", "90d", "12h", "30s"): N a decimal
 * number >= 1, the whole at most HDX_REVIEW_PERIOD_MAX_US. HDX_OK and *us, or HDX_E_INVAL. */
int hdx_review_period(const char *s, int64_t *us);

/* The review's clock and periods. training_period_days: policy.training_period_days. */
struct hdx_review_window {
    int64_t now_us;
    int64_t dormant_us; /* --dormant-days */
    int64_t unused_us;  /* --unused-days: roles and care-team rows */
    int64_t silent_us;  /* --silent-days */
    int64_t training_period_days;
};

/* The first time of the period that ends now: now_us - period_us. */
int64_t hdx_review_since(const struct hdx_review_window *w, int64_t period_us);

/* One user: the users table's row (no secret) and what the window's audit records showed. */
struct hdx_review_user {
    const char *name, *role;
    int has_mfa, locked;
    int api_key; /* a service that authenticates with an API key (auth/apikey.h): no login */
    int64_t created_us;
    const char *training;   /* "" (none) or YYYY-MM-DD */
    int64_t last_login_us;  /* newest event=auth action=login outcome=success; 0: none seen */
    int64_t last_access_us; /* newest event=access outcome=permit; 0: none seen */
};

/* The rule of a finding about a user: 1 and the detail (NUL-terminated, cut to cap) when
 * it holds, else 0 (detail untouched).
 *   mfa_missing       no second factor enrolled (has_mfa 0: a user added with
 *                     --enrol-at-login who has not enrolled yet); not a service with an API
 *                     key, which has none by design
 *   account_locked    locked (informational: nobody logs in as them)
 *   dormant           created before the dormant period and no successful login in it
 *                     (for a service with an API key, which never logs in, the caller
 *                     passes its newest access record of any outcome as last_login_us)
 *   role_unused       a role holding records:read (policy.h) created before the unused
 *                     period, and no permitted access record in it
 *   training_missing  a person (admin .. researcher) without a training date, or with one
 *                     that is not a date
 *   training_expired  a person whose training is older than training_period_days (the
 *                     engine's rule: now - date > period; it reads no records then) */
typedef int (*hdx_review_user_rule)(const struct hdx_review_window *w,
                                    const struct hdx_review_user *u, char *detail, size_t cap);
int hdx_review_mfa_missing(const struct hdx_review_window *w, const struct hdx_review_user *u,
                           char *detail, size_t cap);
int hdx_review_locked(const struct hdx_review_window *w, const struct hdx_review_user *u,
                      char *detail, size_t cap);
int hdx_review_dormant(const struct hdx_review_window *w, const struct hdx_review_user *u,
                       char *detail, size_t cap);
int hdx_review_role_unused(const struct hdx_review_window *w, const struct hdx_review_user *u,
                           char *detail, size_t cap);
int hdx_review_training_missing(const struct hdx_review_window *w, const struct hdx_review_user *u,
                                char *detail, size_t cap);
int hdx_review_training_expired(const struct hdx_review_window *w, const struct hdx_review_user *u,
                                char *detail, size_t cap);

/* careteam_unused: the row (user, patient) was not assigned within the unused period (no
 * careteam_add record for it there: assigned_recently 0) and the user made no permitted
 * access record naming the patient in it (accessed 0). */
int hdx_review_careteam_unused(const struct hdx_review_window *w, const uint8_t *patient,
                               int assigned_recently, int accessed, char *detail, size_t cap);
/* break_glass_unreviewed: a grant nobody has reviewed yet, expired or not. */
int hdx_review_grant_unreviewed(const struct hdx_review_window *w, const struct hdx_break_glass *g,
                                char *detail, size_t cap);
/* device_silent: an enrolled, unrevoked device whose role writes streams (device, gateway;
 * a subscriber sends nothing), enrolled before the silent period, with no record of its
 * sender in it (last_us: the newest one seen there, 0 none). */
int hdx_review_device_silent(const struct hdx_review_window *w, const struct hdx_device *d,
                             int64_t last_us, char *detail, size_t cap);

/* The text form of a finding: `finding=KIND subject=NAME detail="DETAIL"`, with '"' and '\'
 * in the detail escaped by '\' and any byte outside printable ASCII (and any space, '=' or
 * '"' in KIND and NAME) as '?'. Returns the length, or -1 when cap is too small. */
int hdx_review_line(const char *kind, const char *subject, const char *detail, char *out,
                    size_t cap);

/* A set of (user index, patient token) pairs: open addressing, grows by doubling. Zeroed
 * is empty; add returns HDX_OK or HDX_E_NOMEM; has 1 or 0; free empties it. */
struct hdx_review_pairs {
    struct hdx_review_pair *slots;
    size_t cap, n;
};
int hdx_review_pairs_add(struct hdx_review_pairs *p, uint32_t user,
                         const uint8_t patient[HDX_BLIND_LEN]);
int hdx_review_pairs_has(const struct hdx_review_pairs *p, uint32_t user,
                         const uint8_t patient[HDX_BLIND_LEN]);
void hdx_review_pairs_free(struct hdx_review_pairs *p);

#endif
