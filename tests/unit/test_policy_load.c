/* policy/policy_load: a policy built from a store whose users, care teams, consent directives
 * and break-glass grants were made by admin statements (commit/admin.h), checked through
 * hdx_policy_decide; its refusal of damaged rows (all or nothing); the training date. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "policy/policy_load.h"

#define PWH                                                                                        \
    "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$"                                       \
    "TjQSOcD9Pxbt1ZLTflJAfYpbHrACQhzcM0ZcvwKIDpc"
#define DAY_US (86400LL * 1000000)
#define NOW (1798761600LL * 1000000) /* 2027-01-01T00:00:00Z */

static char tmpdir[256], dbpath[320];
static struct hdx_store *st;
static uint8_t p1[HDX_BLIND_LEN] = {1}, p2[HDX_BLIND_LEN] = {2}, p3[HDX_BLIND_LEN] = {3},
               p4[HDX_BLIND_LEN] = {4};

static void commit(const struct hdx_admin *a, int64_t t)
{
    char body[HDX_ADMIN_BODY_MAX + 1];
    int64_t id;
    int n = hdx_admin_format(a, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(hdx_store_admin_enqueue(st, (uint8_t *)body, (size_t)n, t, &id), HDX_OK);
    assert_int_equal(hdx_store_begin(st), HDX_OK);
    assert_int_equal(hdx_admin_commit(st, id, (uint8_t *)body, (size_t)n, t), HDX_OK);
    assert_int_equal(hdx_store_commit(st), HDX_OK);
}

static void user(const char *name, const char *role, const char *training)
{
    struct hdx_admin a = {.op = HDX_ADMIN_USER_ADD, .created_us = 1};
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.role, sizeof(a.role), "%s", role);
    snprintf(a.pw_hash, sizeof(a.pw_hash), "%s", PWH);
    commit(&a, 10);
    if (!training) return;
    a = (struct hdx_admin){.op = HDX_ADMIN_USER_TRAINING};
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.date, sizeof(a.date), "%s", training);
    commit(&a, 11);
}

static void member(enum hdx_admin_op op, const char *name, const uint8_t *patient)
{
    struct hdx_admin a = {.op = op};
    snprintf(a.name, sizeof(a.name), "%s", name);
    memcpy(a.patient, patient, HDX_BLIND_LEN);
    commit(&a, 20);
}

static void consent(enum hdx_admin_op op, const uint8_t *patient, const char *purpose,
                    const char *role)
{
    struct hdx_admin a = {.op = op};
    memcpy(a.patient, patient, HDX_BLIND_LEN);
    snprintf(a.purpose, sizeof(a.purpose), "%s", purpose);
    snprintf(a.role, sizeof(a.role), "%s", role);
    commit(&a, 30);
}

static void grant(const char *name, const uint8_t *patient, int64_t expires_us)
{
    struct hdx_admin a;
    assert_int_equal(hdx_admin_break_glass(name, patient, expires_us, "unresponsive in ED", &a),
                     HDX_OK);
    commit(&a, NOW - DAY_US);
}

static int setup(void **state)
{
    if (hdx_mkdtemp("hdx-policy-load-", tmpdir, sizeof(tmpdir)) != 0) return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    return hdx_store_open(dbpath, HDX_STORE_CREATE, &st) == HDX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[320];
    hdx_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

static enum hdx_policy_reason decide(const struct hdx_policy *p, const char *who,
                                     enum hdx_role role, enum hdx_action act,
                                     const uint8_t *patient, enum hdx_purpose purpose)
{
    struct hdx_policy_request q = {who, role, 1, act, HDX_RES_RECORD, patient, purpose, NOW};
    struct hdx_policy_decision d;
    hdx_policy_decide(p, &q, &d);
    assert_int_equal(d.permit, d.reason == HDX_PR_PERMIT || d.reason == HDX_PR_PERMIT_BREAK_GLASS);
    return d.reason;
}

static void test_date(void **state)
{
    int64_t us = 0;
    assert_int_equal(hdx_policy_date_us("2024-01-01", &us), HDX_OK);
    assert_int_equal(us, 1704067200LL * 1000000);
    assert_int_equal(hdx_policy_date_us("2024-02-29", &us), HDX_OK);
    const char *bad[] = {"2023-02-29", "2024-13-01", "2024-00-10",  "2024-04-31", "2024-1-01",
                         "2024/01/01", "",           "2024-01-01T", "abcd-ef-gh"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hdx_policy_date_us(bad[i], &us), HDX_E_INVAL);
}

static void test_load_and_decide(void **state)
{
    struct hdx_policy *p = NULL;
    /* an empty store: default deny for the compartment, nothing else in the way */
    assert_int_equal(hdx_policy_load(st, 365, NOW, &p), HDX_OK);
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p1, HDX_PURPOSE_TREATMENT),
        HDX_PR_TRAINING);
    hdx_policy_free(p);

    user("alice", "clinician", "2026-06-01"); /* within a year of NOW */
    user("nina", "nurse", "2026-12-31");
    user("olga", "clinician", "2025-06-01"); /* more than a year ago */
    user("ray", "researcher", "2026-10-01");
    user("ian", "integration", NULL);
    member(HDX_ADMIN_CARETEAM_ADD, "alice", p1);
    member(HDX_ADMIN_CARETEAM_ADD, "alice", p2);
    member(HDX_ADMIN_CARETEAM_REMOVE, "alice", p2);
    member(HDX_ADMIN_CARETEAM_ADD, "nina", p1);
    member(HDX_ADMIN_CARETEAM_ADD, "olga", p1);
    member(HDX_ADMIN_CARETEAM_ADD, "ghost", p1); /* no such user: no row */
    consent(HDX_ADMIN_CONSENT_DENY, p1, "", "nurse");
    consent(HDX_ADMIN_CONSENT_DENY, p2, "research", "");
    consent(HDX_ADMIN_CONSENT_DENY, p3, "payment", "");
    consent(HDX_ADMIN_CONSENT_REMOVE, p3, "payment", "");
    consent(HDX_ADMIN_CONSENT_DENY, p4, "", "integration");
    grant("alice", p3, NOW + DAY_US); /* active */
    grant("alice", p4, NOW - 1);      /* expired */
    grant("alice", p2, NOW + DAY_US); /* active, over a consent that does not bind treatment */

    assert_int_equal(hdx_policy_load(st, 365, NOW, &p), HDX_OK);
    /* care teams */
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p1, HDX_PURPOSE_TREATMENT),
        HDX_PR_PERMIT);
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_WRITE, p1, HDX_PURPOSE_TREATMENT),
        HDX_PR_PERMIT);
    /* removed from p2's team, but holding a grant */
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p2, HDX_PURPOSE_TREATMENT),
        HDX_PR_PERMIT_BREAK_GLASS);
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p3, HDX_PURPOSE_TREATMENT),
        HDX_PR_PERMIT_BREAK_GLASS);
    /* the expired grant was left out */
    assert_int_equal(
        decide(p, "alice", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p4, HDX_PURPOSE_TREATMENT),
        HDX_PR_NOT_ON_CARE_TEAM);
    /* training: expired, and none at all */
    assert_int_equal(decide(p, "olga", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p1, HDX_PURPOSE_TREATMENT),
                     HDX_PR_TRAINING);
    assert_int_equal(
        decide(p, "ghost", HDX_ROLE_CLINICIAN, HDX_ACT_READ, p1, HDX_PURPOSE_TREATMENT),
        HDX_PR_TRAINING);
    /* consent: a denied recipient role, a denied purpose, a removed directive */
    assert_int_equal(decide(p, "nina", HDX_ROLE_NURSE, HDX_ACT_READ, p1, HDX_PURPOSE_TREATMENT),
                     HDX_PR_CONSENT);
    assert_int_equal(decide(p, "nina", HDX_ROLE_NURSE, HDX_ACT_WRITE, p1, HDX_PURPOSE_TREATMENT),
                     HDX_PR_PERMIT); /* consent binds disclosures only */
    assert_int_equal(decide(p, "ray", HDX_ROLE_RESEARCHER, HDX_ACT_READ, p2, HDX_PURPOSE_RESEARCH),
                     HDX_PR_CONSENT);
    assert_int_equal(decide(p, "ray", HDX_ROLE_RESEARCHER, HDX_ACT_READ, p1, HDX_PURPOSE_RESEARCH),
                     HDX_PR_PERMIT);
    assert_int_equal(decide(p, "ian", HDX_ROLE_INTEGRATION, HDX_ACT_READ, p3, HDX_PURPOSE_PAYMENT),
                     HDX_PR_PERMIT);
    assert_int_equal(
        decide(p, "ian", HDX_ROLE_INTEGRATION, HDX_ACT_EXPORT, p4, HDX_PURPOSE_OPERATIONS),
        HDX_PR_CONSENT);
    hdx_policy_free(p);

    /* the same store, later: alice's p3 grant has run out, and the engine says so even with
     * a policy loaded before (no reload is needed when a grant expires) */
    assert_int_equal(hdx_policy_load(st, 365, NOW, &p), HDX_OK);
    struct hdx_policy_request q = {"alice",
                                   HDX_ROLE_CLINICIAN,
                                   1,
                                   HDX_ACT_READ,
                                   HDX_RES_RECORD,
                                   p3,
                                   HDX_PURPOSE_TREATMENT,
                                   NOW + 2 * DAY_US};
    struct hdx_policy_decision d;
    hdx_policy_decide(p, &q, &d);
    assert_false(d.permit);
    assert_int_equal(d.reason, HDX_PR_NOT_ON_CARE_TEAM);
    hdx_policy_free(p);
}

/* A damaged row makes the load fail as a whole, leaving *out NULL. */
static void tamper(const char *sql, const char *undo)
{
    sqlite3 *db = NULL;
    struct hdx_policy *p = (struct hdx_policy *)&p; /* not NULL before */
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(hdx_policy_load(st, 365, NOW, &p), HDX_E_INTEGRITY);
    assert_null(p);
    assert_int_equal(sqlite3_exec(db, undo, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(hdx_policy_load(st, 365, NOW, &p), HDX_OK);
    hdx_policy_free(p);
}

#define P1 "01000000000000000000000000000000"
#define P3 "03000000000000000000000000000000"

static void test_damaged_rows(void **state)
{
    tamper("UPDATE consents SET role='doctor' WHERE role='nurse'",
           "UPDATE consents SET role='nurse' WHERE role='doctor'");
    tamper("UPDATE consents SET purpose='treatment' WHERE role='nurse'",
           "UPDATE consents SET purpose='' WHERE role='nurse'");
    tamper("UPDATE consents SET patient=x'01' WHERE role='nurse'",
           "UPDATE consents SET patient=x'" P1 "' WHERE role='nurse'");
    tamper("UPDATE careteams SET patient=x'0102' WHERE name='nina'",
           "UPDATE careteams SET patient=x'" P1 "' WHERE name='nina'");
    tamper("UPDATE break_glass SET patient=x'' WHERE patient=x'" P3 "'",
           "UPDATE break_glass SET patient=x'" P3 "' WHERE patient=x''");
    tamper("UPDATE users SET training='2026-02-30' WHERE name='ray'",
           "UPDATE users SET training='' WHERE name='ray'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_load_and_decide),
        cmocka_unit_test(test_damaged_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
