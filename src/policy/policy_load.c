#include "policy/policy_load.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/err.h"

int hdx_policy_date_us(const char *date, int64_t *us)
{
    struct tm tm = {0}, back;
    if (strlen(date) != 10 || date[4] != '-' || date[7] != '-') return HDX_E_INVAL;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (date[i] < '0' || date[i] > '9')) return HDX_E_INVAL;
    int y = (date[0] - '0') * 1000 + (date[1] - '0') * 100 + (date[2] - '0') * 10 + (date[3] - '0');
    int m = (date[5] - '0') * 10 + (date[6] - '0'), d = (date[8] - '0') * 10 + (date[9] - '0');
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    time_t t = timegm(&tm); /* normalises 2023-02-29 to March 1st, in tm too */
    /* a day that exists reads back as itself */
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_year != y - 1900 ||
        back.tm_mon != m - 1 || back.tm_mday != d)
        return HDX_E_INVAL;
    *us = (int64_t)t * 1000000;
    return HDX_OK;
}

struct load {
    struct hdx_policy *p;
    int64_t now_us;
    int rc;
};

/* Records the first failure and stops the walk. */
static int failed(struct load *l, int rc)
{
    if (l->rc == HDX_OK) l->rc = rc;
    return 1;
}

static int user_one(void *arg, const struct hdx_user *u, int bad)
{
    struct load *l = arg;
    int64_t at = 0;
    /* bad: a blob of the second factor, nothing the policy reads */
    if (u->training[0] && hdx_policy_date_us(u->training, &at) != HDX_OK)
        return failed(l, HDX_E_INTEGRITY);
    int rc = at ? hdx_policy_training_set(l->p, u->name, at) : HDX_OK;
    return rc == HDX_OK ? 0 : failed(l, rc);
}

static int careteam_one(void *arg, const struct hdx_careteam *c, int bad)
{
    struct load *l = arg;
    if (bad) return failed(l, HDX_E_INTEGRITY);
    int rc = hdx_policy_careteam_add(l->p, c->user, c->patient);
    return rc == HDX_OK ? 0 : failed(l, rc);
}

static int consent_one(void *arg, const struct hdx_consent *c, int bad)
{
    struct load *l = arg;
    int purpose = c->purpose[0] ? hdx_purpose_parse(c->purpose) : -1;
    enum hdx_role role = c->role[0] ? hdx_role_parse(c->role) : HDX_ROLE_NONE;
    /* exactly one of the two, and a known one (commit/admin.h) */
    if (bad || (purpose < 0) == (role == HDX_ROLE_NONE) || (c->purpose[0] && purpose < 0) ||
        (c->role[0] && role == HDX_ROLE_NONE))
        return failed(l, HDX_E_INTEGRITY);
    int rc = hdx_policy_consent_deny(l->p, c->patient, purpose, role);
    return rc == HDX_OK ? 0 : failed(l, rc);
}

static int grant_one(void *arg, const struct hdx_break_glass *g, int bad)
{
    struct load *l = arg;
    if (bad) return failed(l, HDX_E_INTEGRITY);
    if (g->expires_us <= l->now_us) return 0;
    int rc = hdx_policy_break_glass_add(l->p, g->user, g->patient, g->expires_us);
    return rc == HDX_OK ? 0 : failed(l, rc);
}

int hdx_policy_load(struct hdx_store *s, int64_t training_period_days, int64_t now_us,
                    struct hdx_policy **out)
{
    struct load l = {NULL, now_us, HDX_OK};
    *out = NULL;
    int rc = hdx_policy_new(training_period_days, &l.p);
    if (rc != HDX_OK) return rc;
    if ((rc = hdx_store_read_begin(s)) != HDX_OK) {
        hdx_policy_free(l.p);
        return rc;
    }
    rc = hdx_store_users_list(s, user_one, &l);
    if (rc == HDX_OK && l.rc == HDX_OK) rc = hdx_store_careteams_list(s, NULL, careteam_one, &l);
    if (rc == HDX_OK && l.rc == HDX_OK) rc = hdx_store_consents_list(s, NULL, consent_one, &l);
    if (rc == HDX_OK && l.rc == HDX_OK) rc = hdx_store_break_glass_list(s, grant_one, &l);
    hdx_store_read_end(s);
    if (rc == HDX_OK) rc = l.rc;
    if (rc != HDX_OK) {
        hdx_policy_free(l.p);
        return rc;
    }
    *out = l.p;
    return HDX_OK;
}
