/* hdx access-review: the regular review of who may reach what (HIPAA §164.308(a)(1)(ii)(D)
 * information system activity review, (a)(4) access authorization; docs/ACCESS-REVIEW.md).
 * Read-only over the store with the data directory's key, like hdx audit query, inside one
 * read snapshot. The findings are a table of checks (checks[] below); each applies a pure rule
 * of audit/review.h to the subjects of one table. The audit and admin records are read only
 * for the longest period (the scan starts at the period's first seq, found by binary search
 * over time), and the devices' last records come from the index without their bodies. */
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/review.h"
#include "auth/apikey.h"
#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "policy/policy.h"

static const char review_usage[] =
    "NAME\n"
    "    hdx access-review - users, care teams, grants and devices whose access needs a look\n"
    "\n"
    "SYNOPSIS\n"
    "    hdx access-review -d DIR [--json] [--dormant-days N] [--unused-days N]\n"
    "                      [--silent-days N]\n"
    "\n"
    "DESCRIPTION\n"
    "    The regular review of information system activity and access authorization (HIPAA\n"
    "    164.308(a)(1)(ii)(D) and (a)(4)). Reads the store of DIR read-only with its key (no\n"
    "    hdxd needed, none disturbed): the users, careteams, break_glass and devices tables,\n"
    "    and the audit and admin records of the longest period only. Prints one line per\n"
    "    finding,\n"
    "        finding=KIND subject=NAME detail=\"...\"\n"
    "    then one line 'summary findings=N informational=N users=N devices=N careteams=N\n"
    "    grants=N audit_records=N errors=N'. Patients appear only as the first 12 hex digits\n"
    "    of their blind token (as hdx careteam list prints it in full), never the identifier.\n"
    "    A user, device or care-team row not older than a finding's period is not judged by\n"
    "    it (docs/ACCESS-REVIEW.md has every definition).\n"
    "\n"
    "FINDINGS\n"
    "    mfa_missing             a user without a second factor (added --enrol-at-login,\n"
    "                            enrolment pending); not a service with an API key\n"
    "    account_locked          a locked user (informational: it does not change the exit\n"
    "                            status)\n"
    "    dormant                 a user created before the dormant period without a\n"
    "                            successful login (audit event=auth action=login\n"
    "                            outcome=success) in it; for a service with an API key,\n"
    "                            without any access audit record (its requests) in it\n"
    "    role_unused             a user whose role reads records (clinician, nurse,\n"
    "                            researcher, integration), created before the unused period,\n"
    "                            without an access audit record of outcome permit in it\n"
    "    training_missing        a person (admin .. researcher) without a training date\n"
    "    training_expired        a person whose training is older than\n"
    "                            policy.training_period_days (hdx.conf)\n"
    "    careteam_unused         a care-team row (user, patient) not assigned within the\n"
    "                            unused period, without a permitted access record of the\n"
    "                            user for the patient in it; subject is the user\n"
    "    break_glass_unreviewed  a break-glass grant nobody has reviewed (hdx break-glass\n"
    "                            review); subject is the clinician\n"
    "    device_silent           an enrolled, unrevoked device or gateway enrolled before the\n"
    "                            silent period without a record of its sender in it\n"
    "    subscriber_unscoped     an unrevoked certificate whose role may subscribe\n"
    "                            (subscriber, gateway) with no scope (hdx device scope): it\n"
    "                            receives every record\n"
    "    service_unscoped        an unlocked service (API key) with no scope (hdx user\n"
    "                            scope): it reads every record its role may\n"
    "\n"
    "OPTIONS\n"
    "    -d DIR            the data directory\n"
    "    --json            one JSON object instead: {\"findings\": [{\"finding\", \"subject\",\n"
    "                      \"detail\", \"informational\"}...], \"summary\": {...}}\n"
    "    --dormant-days N  the dormant period (default 90)\n"
    "    --unused-days N   the period for role_unused and careteam_unused (default 90)\n"
    "    --silent-days N   the period for device_silent (default 7)\n"
    "    N is a number of days, or a number with one unit s, m, h or d (\"36h\", \"30s\").\n"
    "\n"
    "EXIT STATUS\n"
    "    0  no finding but informational ones\n"
    "    1  at least one finding to act on\n"
    "    2  usage error\n"
    "    3  the review is incomplete: the store could not be read, or a record or row is\n"
    "       damaged (run hdx verify); what could be read is still printed\n";

struct rv_user {
    char name[65];
    char role[24];
    int has_mfa, locked, api_key;
    int64_t created_us;
    char training[11];
    int64_t last_login_us, last_access_us;
};

struct rv_sender {
    char name[HDX_SENDER_MAX + 1];
    int64_t last_us;
};

struct review {
    struct cli_ctx *cli;
    struct hdx_review_window w;
    int json;
    json_t *out;
    struct rv_user *users;
    size_t n_users, cap_users;
    struct rv_sender *senders;
    size_t n_senders, cap_senders;
    struct hdx_review_pairs accessed; /* (user, patient) of permitted access records */
    struct hdx_review_pairs assigned; /* (user, patient) of careteam_add records */
    unsigned long findings, informational, errors;
    unsigned long n_devices, n_careteams, n_grants, n_audit;
};

__attribute__((format(printf, 2, 3))) static void review_error(struct review *rv, const char *fmt,
                                                               ...)
{
    va_list ap;
    fputs("hdx access-review: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    rv->errors++;
}

/* ---------- the findings ---------- */

struct check;
/* Runs one check over its table; emit() each finding. */
typedef void (*check_run)(struct review *rv, const struct check *c);

struct check {
    const char *kind;
    int informational;
    check_run run;
    hdx_review_user_rule user_rule; /* for each_user */
};

static void emit(struct review *rv, const struct check *c, const char *subject, const char *detail)
{
    if (c->informational)
        rv->informational++;
    else
        rv->findings++;
    if (rv->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "finding", c->kind, "subject", subject,
                              "detail", detail, "informational", c->informational);
        if (!o || json_array_append_new(json_object_get(rv->out, "findings"), o) != 0)
            review_error(rv, "out of memory for the %s findings", c->kind);
        return;
    }
    char line[2 * HDX_REVIEW_DETAIL_MAX + 256];
    if (hdx_review_line(c->kind, subject, detail, line, sizeof(line)) >= 0)
        puts(line);
    else
        review_error(rv, "a %s finding about %s is too long to print", c->kind, subject);
}

static void each_user(struct review *rv, const struct check *c)
{
    char detail[HDX_REVIEW_DETAIL_MAX];
    for (size_t i = 0; i < rv->n_users; i++) {
        const struct rv_user *r = &rv->users[i];
        struct hdx_review_user u = {.name = r->name,
                                    .role = r->role,
                                    .has_mfa = r->has_mfa,
                                    .locked = r->locked,
                                    .api_key = r->api_key,
                                    .created_us = r->created_us,
                                    .training = r->training,
                                    .last_login_us = r->last_login_us,
                                    .last_access_us = r->last_access_us};
        if (c->user_rule(&rv->w, &u, detail, sizeof(detail))) emit(rv, c, r->name, detail);
    }
}

static int user_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rv_user *)a)->name, ((const struct rv_user *)b)->name);
}

/* The user's index, or -1 (a device, a subscriber, "-", or a name no user has). */
static long user_index(const struct review *rv, const char *name)
{
    struct rv_user key;
    if (strlen(name) >= sizeof(key.name)) return -1;
    memcpy(key.name, name, strlen(name) + 1);
    const struct rv_user *u =
        rv->n_users ? bsearch(&key, rv->users, rv->n_users, sizeof(*u), user_cmp) : NULL;
    return u ? (long)(u - rv->users) : -1;
}

struct row_ctx {
    struct review *rv;
    const struct check *c;
};

static int careteam_one(void *arg, const struct hdx_careteam *t, int bad)
{
    struct row_ctx *x = arg;
    struct review *rv = x->rv;
    char detail[HDX_REVIEW_DETAIL_MAX];
    rv->n_careteams++;
    if (bad) {
        review_error(rv, "a careteams row of %s is damaged (run hdx verify)", t->user);
        return 0;
    }
    long u = user_index(rv, t->user);
    int assigned = u >= 0 && hdx_review_pairs_has(&rv->assigned, (uint32_t)u, t->patient);
    int accessed = u >= 0 && hdx_review_pairs_has(&rv->accessed, (uint32_t)u, t->patient);
    if (hdx_review_careteam_unused(&rv->w, t->patient, assigned, accessed, detail, sizeof(detail)))
        emit(rv, x->c, t->user, detail);
    return 0;
}

static void check_careteams(struct review *rv, const struct check *c)
{
    struct row_ctx x = {rv, c};
    rv->n_careteams = 0;
    int rc = hdx_store_careteams_list(rv->cli->store, NULL, careteam_one, &x);
    if (rc != HDX_OK) review_error(rv, "cannot read the careteams table: %s", hdx_strerror(rc));
}

static int grant_one(void *arg, const struct hdx_break_glass *g, int bad)
{
    struct row_ctx *x = arg;
    char detail[HDX_REVIEW_DETAIL_MAX];
    x->rv->n_grants++;
    if (bad) {
        review_error(x->rv, "a break_glass row of %s is damaged (run hdx verify)", g->user);
        return 0;
    }
    if (hdx_review_grant_unreviewed(&x->rv->w, g, detail, sizeof(detail)))
        emit(x->rv, x->c, g->user, detail);
    return 0;
}

static void check_grants(struct review *rv, const struct check *c)
{
    struct row_ctx x = {rv, c};
    rv->n_grants = 0;
    int rc = hdx_store_break_glass_list(rv->cli->store, grant_one, &x);
    if (rc != HDX_OK) review_error(rv, "cannot read the break_glass table: %s", hdx_strerror(rc));
}

static int sender_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rv_sender *)a)->name, ((const struct rv_sender *)b)->name);
}

static int device_one(void *arg, const struct hdx_device *d)
{
    struct row_ctx *x = arg;
    struct review *rv = x->rv;
    struct rv_sender key;
    char detail[HDX_REVIEW_DETAIL_MAX];
    rv->n_devices++;
    snprintf(key.name, sizeof(key.name), "%s", d->name);
    const struct rv_sender *s =
        rv->n_senders ? bsearch(&key, rv->senders, rv->n_senders, sizeof(*s), sender_cmp) : NULL;
    if (hdx_review_device_silent(&rv->w, d, s ? s->last_us : 0, detail, sizeof(detail)))
        emit(rv, x->c, d->name, detail);
    return 0;
}

static void check_devices(struct review *rv, const struct check *c)
{
    struct row_ctx x = {rv, c};
    rv->n_devices = 0;
    int rc = hdx_store_devices_list(rv->cli->store, device_one, &x);
    if (rc != HDX_OK) review_error(rv, "cannot read the devices table: %s", hdx_strerror(rc));
}

/* An active certificate that may subscribe with no scope receives every record. */
static int scope_one(void *arg, const struct hdx_device *d, const struct hdx_device_scope *scope,
                     int bad)
{
    struct row_ctx *x = arg;
    if (bad) {
        review_error(x->rv, "the device_scopes row of %s is damaged (run hdx verify)", d->name);
        return 0;
    }
    if (!scope && !d->revoked_us &&
        hdx_policy_role_has(hdx_role_parse(d->role), HDX_RES_RECORD, HDX_ACT_SUBSCRIBE)) {
        char detail[HDX_REVIEW_DETAIL_MAX];
        snprintf(detail, sizeof(detail), "role=%s scope=all", d->role);
        emit(x->rv, x->c, d->name, detail);
    }
    return 0;
}

static void check_scopes(struct review *rv, const struct check *c)
{
    struct row_ctx x = {rv, c};
    int rc = hdx_store_device_scopes_list(rv->cli->store, scope_one, &x);
    if (rc != HDX_OK) review_error(rv, "cannot read the device_scopes table: %s", hdx_strerror(rc));
}

/* An unlocked service with an API key and no scope reads every record its role may. */
static void check_service_scopes(struct review *rv, const struct check *c)
{
    for (size_t i = 0; i < rv->n_users; i++) {
        const struct rv_user *u = &rv->users[i];
        if (!u->api_key || u->locked) continue;
        struct hdx_device_scope sc;
        int rc = hdx_store_device_scope_get(rv->cli->store, u->name, &sc);
        if (rc == HDX_E_NOTFOUND)
            emit(rv, c, u->name, "role=integration scope=all");
        else if (rc != HDX_OK)
            review_error(rv, "the scope of %s cannot be read (run hdx verify)", u->name);
    }
}

/* The review, in output order. One more finding is one row here and, unless it is about
 * users (each_user with its rule), one function like check_grants. */
static const struct check checks[] = {
    {"mfa_missing", 0, each_user, hdx_review_mfa_missing},
    {"account_locked", 1, each_user, hdx_review_locked},
    {"dormant", 0, each_user, hdx_review_dormant},
    {"role_unused", 0, each_user, hdx_review_role_unused},
    {"training_missing", 0, each_user, hdx_review_training_missing},
    {"training_expired", 0, each_user, hdx_review_training_expired},
    {"careteam_unused", 0, check_careteams, NULL},
    {"break_glass_unreviewed", 0, check_grants, NULL},
    {"device_silent", 0, check_devices, NULL},
    {"subscriber_unscoped", 0, check_scopes, NULL},
    {"service_unscoped", 0, check_service_scopes, NULL},
};

/* ---------- the facts ---------- */

static int user_load(void *arg, const struct hdx_user *u, int bad)
{
    struct review *rv = arg;
    if (bad) {
        review_error(rv, "the users row of %s is damaged (run hdx verify)", u->name);
        return 0;
    }
    if (rv->n_users == rv->cap_users) {
        size_t cap = rv->cap_users ? rv->cap_users * 2 : 64;
        struct rv_user *n = realloc(rv->users, cap * sizeof(*n));
        if (!n) {
            review_error(rv, "out of memory for the users");
            return 1;
        }
        rv->users = n;
        rv->cap_users = cap;
    }
    struct rv_user *r = &rv->users[rv->n_users++];
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", u->name);
    snprintf(r->role, sizeof(r->role), "%s", u->role);
    snprintf(r->training, sizeof(r->training), "%s", u->training);
    r->has_mfa = u->has_mfa;
    r->locked = u->locked;
    r->api_key = hdx_apikey_hash_valid(u->pw_hash);
    r->created_us = u->created_us;
    return 0;
}

static int sender_load(void *arg, const char *sender, int64_t last_us)
{
    struct review *rv = arg;
    if (strlen(sender) > HDX_SENDER_MAX) return 0; /* no device has such a name */
    if (rv->n_senders == rv->cap_senders) {
        size_t cap = rv->cap_senders ? rv->cap_senders * 2 : 64;
        struct rv_sender *n = realloc(rv->senders, cap * sizeof(*n));
        if (!n) {
            review_error(rv, "out of memory for the senders");
            return 1;
        }
        rv->senders = n;
        rv->cap_senders = cap;
    }
    struct rv_sender *s = &rv->senders[rv->n_senders++];
    memcpy(s->name, sender, strlen(sender) + 1);
    s->last_us = last_us;
    return 0;
}

/* The plaintext of a record of the scan into *pt (the caller wipes and frees it); 0, or 1
 * with one error line. */
static int open_record(struct review *rv, const struct hdx_record *r, uint8_t **pt, size_t *len)
{
    if (hdx_record_open(r, rv->cli->kr, pt, len) == HDX_OK) return 0;
    review_error(rv, "record %llu does not decrypt (run hdx verify)", (unsigned long long)r->seq);
    return 1;
}

static void pair_add(struct review *rv, struct hdx_review_pairs *p, long user,
                     const uint8_t *patient)
{
    if (user >= 0 && hdx_review_pairs_add(p, (uint32_t)user, patient) != HDX_OK)
        review_error(rv, "out of memory for the (user, patient) pairs");
}

static int audit_one(void *arg, const struct hdx_record *r)
{
    struct review *rv = arg;
    uint8_t *pt = NULL, tok[HDX_BLIND_LEN];
    size_t len = 0;
    struct hdx_audit_view v;
    rv->n_audit++;
    if (open_record(rv, r, &pt, &len)) return 0;
    int rc = hdx_audit_parse(pt, len, &v);
    sodium_memzero(pt, len);
    free(pt);
    if (rc != HDX_OK) {
        review_error(rv, "record %llu is not an audit record hdx wrote",
                     (unsigned long long)r->seq);
        return 0;
    }
    long u = user_index(rv, v.principal);
    if (u < 0) return 0;
    struct rv_user *user = &rv->users[u];
    int login =
        !strcmp(v.event, "auth") && !strcmp(v.action, "login") && !strcmp(v.outcome, "success");
    /* A service with an API key never logs in: each request it made is an access record. */
    if (login || (user->api_key && !strcmp(v.event, "access")))
        if (r->time_us > user->last_login_us) user->last_login_us = r->time_us;
    if (!strcmp(v.event, "access") && !strcmp(v.outcome, "permit")) {
        if (r->time_us > user->last_access_us) user->last_access_us = r->time_us;
        if (r->time_us >= hdx_review_since(&rv->w, rv->w.unused_us) &&
            strlen(v.patient) == 2 * HDX_BLIND_LEN && hdx_unhex(v.patient, tok, HDX_BLIND_LEN) == 0)
            pair_add(rv, &rv->accessed, u, tok);
    }
    return 0;
}

static int assignment_one(void *arg, const struct hdx_record *r)
{
    struct review *rv = arg;
    uint8_t *pt = NULL;
    size_t len = 0;
    struct hdx_admin a;
    if (open_record(rv, r, &pt, &len)) return 0;
    int rc = hdx_admin_parse(pt, len, &a);
    sodium_memzero(pt, len);
    free(pt);
    if (rc != HDX_OK || a.op != HDX_ADMIN_CARETEAM_ADD) {
        review_error(rv, "record %llu is not an admin record hdx wrote",
                     (unsigned long long)r->seq);
        return 0;
    }
    pair_add(rv, &rv->assigned, user_index(rv, a.name), a.patient);
    return 0;
}

static void gather(struct review *rv)
{
    struct hdx_store *st = rv->cli->store;
    int64_t longest = rv->w.dormant_us > rv->w.unused_us ? rv->w.dormant_us : rv->w.unused_us;
    int rc = hdx_store_users_list(st, user_load, rv);
    if (rc != HDX_OK) review_error(rv, "cannot read the users table: %s", hdx_strerror(rc));
    if (rv->n_users) qsort(rv->users, rv->n_users, sizeof(*rv->users), user_cmp);

    /* damaged_too: a record whose body is damaged is one error (open_record), not the end of
     * the scan. */
    struct hdx_store_filter audit = {
        .kind = HDX_KIND_AUDIT, .since_us = hdx_review_since(&rv->w, longest), .damaged_too = 1};
    long n = hdx_store_scan(st, &audit, 0, audit_one, rv);
    if (n < 0) review_error(rv, "cannot read the audit records: %s", hdx_strerror((int)n));

    struct hdx_store_filter admin = {.kind = HDX_KIND_ADMIN,
                                     .type = hdx_admin_type(HDX_ADMIN_CARETEAM_ADD),
                                     .since_us = hdx_review_since(&rv->w, rv->w.unused_us),
                                     .damaged_too = 1};
    n = hdx_store_scan(st, &admin, 0, assignment_one, rv);
    if (n < 0) review_error(rv, "cannot read the admin records: %s", hdx_strerror((int)n));

    rc = hdx_store_senders_since(st, hdx_review_since(&rv->w, rv->w.silent_us), sender_load, rv);
    if (rc != HDX_OK) review_error(rv, "cannot read the records' senders: %s", hdx_strerror(rc));
    if (rv->n_senders) qsort(rv->senders, rv->n_senders, sizeof(*rv->senders), sender_cmp);
}

/* ---------- the command ---------- */

static void summary(struct review *rv)
{
    if (rv->json) {
        json_t *s = json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "findings",
            (json_int_t)rv->findings, "informational", (json_int_t)rv->informational, "users",
            (json_int_t)rv->n_users, "devices", (json_int_t)rv->n_devices, "careteams",
            (json_int_t)rv->n_careteams, "grants", (json_int_t)rv->n_grants, "audit_records",
            (json_int_t)rv->n_audit, "errors", (json_int_t)rv->errors, "now_us",
            (json_int_t)rv->w.now_us, "dormant_s", (json_int_t)(rv->w.dormant_us / 1000000),
            "unused_s", (json_int_t)(rv->w.unused_us / 1000000), "silent_s",
            (json_int_t)(rv->w.silent_us / 1000000));
        char *text = NULL;
        if (s && json_object_set_new(rv->out, "summary", s) == 0)
            text = json_dumps(rv->out, JSON_INDENT(1));
        if (text)
            puts(text);
        else
            review_error(rv, "out of memory for the JSON");
        free(text);
        return;
    }
    printf("summary findings=%lu informational=%lu users=%zu devices=%lu careteams=%lu grants=%lu "
           "audit_records=%lu errors=%lu\n",
           rv->findings, rv->informational, rv->n_users, rv->n_devices, rv->n_careteams,
           rv->n_grants, rv->n_audit, rv->errors);
}

static int period_opt(int argc, char **argv, int *i, int64_t *us)
{
    const char *v = cli_arg(argc, argv, i);
    if (v && hdx_review_period(v, us) == HDX_OK) return 0;
    fprintf(stderr,
            "hdx access-review: %s wants a number of days, or a number with a unit s, m, h or d "
            "(at least 1, at most 100 years), not '%s'\n",
            argv[*i - 1], v ? v : "");
    return 2;
}

int cmd_access_review(int argc, char **argv)
{
    const char *dir = NULL;
    struct review rv = {0};
    rv.w.dormant_us = 90 * HDX_REVIEW_DAY_US;
    rv.w.unused_us = 90 * HDX_REVIEW_DAY_US;
    rv.w.silent_us = 7 * HDX_REVIEW_DAY_US;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--json"))
            rv.json = 1;
        else if (!strcmp(a, "--dormant-days")) {
            if (period_opt(argc, argv, &i, &rv.w.dormant_us)) return 2;
        } else if (!strcmp(a, "--unused-days")) {
            if (period_opt(argc, argv, &i, &rv.w.unused_us)) return 2;
        } else if (!strcmp(a, "--silent-days")) {
            if (period_opt(argc, argv, &i, &rv.w.silent_us)) return 2;
        } else if (!strcmp(a, "--help")) {
            fputs(review_usage, stdout);
            return 0;
        } else {
            fputs(review_usage, stderr);
            return 2;
        }
    }
    if (!dir) {
        fputs(review_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 3;
    rv.cli = &ctx;
    rv.w.now_us = hdx_now_us();
    rv.w.training_period_days = ctx.conf.policy_training_period_days;
    if (rv.json && !(rv.out = json_pack("{s:[]}", "findings"))) {
        cli_close(&ctx);
        return 3;
    }
    int rc = hdx_store_read_begin(ctx.store);
    if (rc != HDX_OK) review_error(&rv, "cannot take a read snapshot: %s", hdx_strerror(rc));
    gather(&rv);
    for (size_t i = 0; i < HDX_ARRAY_LEN(checks); i++)
        checks[i].run(&rv, &checks[i]);
    if (rc == HDX_OK) hdx_store_read_end(ctx.store);
    cli_close(&ctx);
    summary(&rv);
    json_decref(rv.out);
    free(rv.users);
    free(rv.senders);
    hdx_review_pairs_free(&rv.accessed);
    hdx_review_pairs_free(&rv.assigned);
    if (fflush(stdout) != 0) return 3;
    return rv.errors ? 3 : rv.findings ? 1 : 0;
}
