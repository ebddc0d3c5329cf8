/* audit/review: the rules of hdx access-review's findings at their boundaries (a subject
 * exactly as old as the period, a use exactly at its start), which roles and devices each
 * applies to, the periods the options take, the finding line's escaping, the (user,
 * patient) pair set against a reference, and hdx_store_senders_since (the devices' last
 * records) at its boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/review.h"
#include "core/err.h"
#include "core/util.h"
#include "policy/policy_load.h"
#include "store/store.h"

#define DAY HDX_REVIEW_DAY_US
#define NOW (1798761600LL * 1000000) /* 2027-01-01T00:00:00Z */

static const struct hdx_review_window W = {NOW, 90 * DAY, 30 * DAY, 7 * DAY, 365};

static int64_t period(const char *s)
{
    int64_t us = -1;
    return hdx_review_period(s, &us) == HDX_OK ? us : -1;
}

static void test_period(void **state)
{
    (void)state;
    assert_int_equal(period("90"), 90 * DAY);
    assert_int_equal(period("90d"), 90 * DAY);
    assert_int_equal(period("12h"), 12 * 3600LL * 1000000);
    assert_int_equal(period("15m"), 15 * 60LL * 1000000);
    assert_int_equal(period("30s"), 30 * 1000000LL);
    assert_int_equal(period("1s"), 1000000);
    assert_int_equal(period("36600"), HDX_REVIEW_PERIOD_MAX_US);
    const char *bad[] = {"",        "0",
                         "0s",      "-1",
                         "+1",      "1x",
                         "1ss",     "01",
                         "1 d",     "36601",
                         "1.5",     "d",
                         "s",       "99999999999999999999",
                         "1dd",     " 1",
                         "878401h", "9223372036854775807s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t us = 7;
        assert_int_equal(hdx_review_period(bad[i], &us), HDX_E_INVAL);
        assert_int_equal(us, 7); /* untouched */
    }
    assert_int_equal(hdx_review_period(NULL, NULL), HDX_E_INVAL);
}

static struct hdx_review_user user(const char *role)
{
    struct hdx_review_user u = {.name = "u1",
                                .role = role,
                                .has_mfa = 1,
                                .created_us = NOW - 400 * DAY,
                                .training = "2026-12-01"};
    return u;
}

static void test_dormant(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX];
    int64_t since = NOW - 90 * DAY;
    struct hdx_review_user u = user("clinician");
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 1); /* never logged in */
    assert_non_null(strstr(d, "no successful login since 2026-10-03T00:00:00Z"));
    u.last_login_us = since - 1;
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 1);
    u.last_login_us = since; /* a login at the period's first microsecond counts */
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 0);
    u.last_login_us = 0;
    u.created_us = since; /* exactly as old as the period: not judged yet */
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 0);
    u.created_us = since - 1;
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 1);
    u.role = "auditor"; /* every role */
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "no successful login since"));
    u.role = "integration";
    u.api_key = 1; /* a service: its requests are its logins */
    assert_int_equal(hdx_review_dormant(&W, &u, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "no request with its API key since"));
}

static void test_role_unused(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX];
    int64_t since = NOW - 30 * DAY;
    const char *reads[] = {"clinician", "nurse", "researcher", "integration"};
    const char *not_reads[] = {"admin", "security-officer", "auditor", "device", "nobody", ""};
    for (size_t i = 0; i < 4; i++) {
        struct hdx_review_user u = user(reads[i]);
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 1);
        assert_non_null(strstr(d, reads[i]));
        u.last_access_us = since - 1;
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 1);
        u.last_access_us = since;
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 0);
        u.last_access_us = 0;
        u.created_us = since;
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 0);
        u.created_us = since - 1;
        u.last_login_us = NOW; /* logging in is not reading */
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 1);
    }
    for (size_t i = 0; i < sizeof(not_reads) / sizeof(not_reads[0]); i++) {
        struct hdx_review_user u = user(not_reads[i]);
        assert_int_equal(hdx_review_role_unused(&W, &u, d, sizeof(d)), 0);
    }
}

static void test_mfa_locked(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX] = "untouched";
    struct hdx_review_user u = user("nurse");
    assert_int_equal(hdx_review_mfa_missing(&W, &u, d, sizeof(d)), 0);
    assert_int_equal(hdx_review_locked(&W, &u, d, sizeof(d)), 0);
    assert_string_equal(d, "untouched");
    u.has_mfa = 0;
    u.created_us = NOW; /* no grace: a pending enrolment is a finding at once */
    assert_int_equal(hdx_review_mfa_missing(&W, &u, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "role=nurse"));
    u.locked = 1;
    assert_int_equal(hdx_review_locked(&W, &u, d, sizeof(d)), 1);
    u.role = "integration";
    u.api_key = 1; /* a service with an API key has no second factor by design */
    assert_int_equal(hdx_review_mfa_missing(&W, &u, d, sizeof(d)), 0);
    u.api_key = 0; /* a service with a password does */
    assert_int_equal(hdx_review_mfa_missing(&W, &u, d, sizeof(d)), 1);
}

static void test_training(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX];
    int64_t at;
    assert_int_equal(hdx_policy_date_us("2026-01-01", &at), HDX_OK);
    struct hdx_review_window w = W;
    struct hdx_review_user u = user("clinician");
    u.training = "2026-01-01";
    w.now_us = at + 365 * DAY; /* exactly the period: still valid (the engine's rule) */
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 0);
    assert_int_equal(hdx_review_training_missing(&w, &u, d, sizeof(d)), 0);
    w.now_us++;
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "training=2026-01-01 expired 2027-01-01T00:00:00Z"));
    assert_non_null(strstr(d, "policy.training_period_days=365"));
    w.training_period_days = 730;
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 0);
    u.training = "";
    assert_int_equal(hdx_review_training_missing(&w, &u, d, sizeof(d)), 1);
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 0);
    u.training = "2023-02-29"; /* no such day: missing, not expired */
    assert_int_equal(hdx_review_training_missing(&w, &u, d, sizeof(d)), 1);
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 0);
    /* people only: an integration account is a service */
    const char *people[] = {"admin", "security-officer", "auditor", "clinician",
                            "nurse", "researcher"};
    for (size_t i = 0; i < 6; i++) {
        u.role = people[i];
        u.training = "";
        assert_int_equal(hdx_review_training_missing(&w, &u, d, sizeof(d)), 1);
        u.training = "2000-01-01";
        assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 1);
    }
    u.role = "integration";
    assert_int_equal(hdx_review_training_expired(&w, &u, d, sizeof(d)), 0);
    u.training = "";
    assert_int_equal(hdx_review_training_missing(&w, &u, d, sizeof(d)), 0);
}

static void test_careteam_grant(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX];
    uint8_t p[HDX_BLIND_LEN];
    for (int i = 0; i < HDX_BLIND_LEN; i++)
        p[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(hdx_review_careteam_unused(&W, p, 1, 0, d, sizeof(d)), 0);
    assert_int_equal(hdx_review_careteam_unused(&W, p, 0, 1, d, sizeof(d)), 0);
    assert_int_equal(hdx_review_careteam_unused(&W, p, 1, 1, d, sizeof(d)), 0);
    assert_int_equal(hdx_review_careteam_unused(&W, p, 0, 0, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "patient=a0a1a2a3a4a5 "));
    assert_null(strstr(d, "a6")); /* a prefix only */

    struct hdx_break_glass g = {.user = "clin", .granted_us = NOW - DAY, .expires_us = NOW + 1};
    memcpy(g.patient, p, sizeof(p));
    assert_int_equal(hdx_review_grant_unreviewed(&W, &g, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "patient=a0a1a2a3a4a5 "));
    assert_non_null(strstr(d, "state=active"));
    char granted[40];
    snprintf(granted, sizeof(granted), "granted_us=%lld ", (long long)g.granted_us);
    assert_non_null(strstr(d, granted)); /* what hdx break-glass review takes */
    assert_null(strstr(d, "a6a7"));
    g.expires_us = NOW;
    assert_int_equal(hdx_review_grant_unreviewed(&W, &g, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "state=expired"));
    snprintf(g.reviewed_by, sizeof(g.reviewed_by), "aud");
    assert_int_equal(hdx_review_grant_unreviewed(&W, &g, d, sizeof(d)), 0);
}

static void test_device(void **state)
{
    (void)state;
    char d[HDX_REVIEW_DETAIL_MAX];
    int64_t since = NOW - 7 * DAY;
    struct hdx_device dev = {.name = "mon", .role = "device", .created_us = since - 1};
    assert_int_equal(hdx_review_device_silent(&W, &dev, 0, d, sizeof(d)), 1);
    assert_int_equal(hdx_review_device_silent(&W, &dev, since - 1, d, sizeof(d)), 1);
    assert_int_equal(hdx_review_device_silent(&W, &dev, since, d, sizeof(d)), 0);
    snprintf(dev.role, sizeof(dev.role), "gateway");
    assert_int_equal(hdx_review_device_silent(&W, &dev, 0, d, sizeof(d)), 1);
    assert_non_null(strstr(d, "role=gateway"));
    snprintf(dev.role, sizeof(dev.role), "subscriber"); /* sends nothing */
    assert_int_equal(hdx_review_device_silent(&W, &dev, 0, d, sizeof(d)), 0);
    snprintf(dev.role, sizeof(dev.role), "device");
    dev.created_us = since;
    assert_int_equal(hdx_review_device_silent(&W, &dev, 0, d, sizeof(d)), 0);
    dev.created_us = since - 1;
    dev.revoked_us = NOW - DAY;
    assert_int_equal(hdx_review_device_silent(&W, &dev, 0, d, sizeof(d)), 0);
}

static void test_line(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(hdx_review_line("dormant", "alice", "role=nurse x", out, sizeof(out)),
                     (int)strlen("finding=dormant subject=alice detail=\"role=nurse x\""));
    assert_string_equal(out, "finding=dormant subject=alice detail=\"role=nurse x\"");
    hdx_review_line("k d", "a=b\"c", "say \"hi\" \\ \n\x01\xff", out, sizeof(out));
    assert_string_equal(out, "finding=k?d subject=a?b?c detail=\"say \\\"hi\\\" \\\\ ???\"");
    const char *want = "finding=k subject=s detail=\"\\\"\"";
    assert_int_equal(hdx_review_line("k", "s", "\"", out, strlen(want) + 1), (int)strlen(want));
    assert_string_equal(out, want);
    for (size_t cap = 0; cap <= strlen(want); cap++)
        assert_int_equal(hdx_review_line("k", "s", "\"", out, cap), -1);
}

static void test_pairs(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct hdx_review_pairs p = {0};
    static uint8_t tok[N][HDX_BLIND_LEN];
    uint8_t other[HDX_BLIND_LEN];
    assert_int_equal(hdx_review_pairs_has(&p, 0, tok[0]), 0); /* empty */
    srand(7);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < HDX_BLIND_LEN; j++)
            tok[i][j] = (uint8_t)rand();
    for (int i = 0; i < N; i++) {
        assert_int_equal(hdx_review_pairs_add(&p, (uint32_t)(i % 97), tok[i]), HDX_OK);
        assert_int_equal(hdx_review_pairs_add(&p, (uint32_t)(i % 97), tok[i]), HDX_OK);
    }
    assert_int_equal(p.n, N); /* duplicates once */
    for (int i = 0; i < N; i++) {
        assert_int_equal(hdx_review_pairs_has(&p, (uint32_t)(i % 97), tok[i]), 1);
        /* the same patient, another user */
        assert_int_equal(hdx_review_pairs_has(&p, (uint32_t)(i % 97) + 97, tok[i]), 0);
        memcpy(other, tok[i], sizeof(other));
        other[HDX_BLIND_LEN - 1] ^= 1;
        assert_int_equal(hdx_review_pairs_has(&p, (uint32_t)(i % 97), other), 0);
    }
    assert_true(p.n * 2 <= p.cap);
    hdx_review_pairs_free(&p);
    assert_int_equal(p.n, 0);
    assert_int_equal(hdx_review_pairs_has(&p, 0, tok[0]), 0);
}

struct seen {
    char names[8][HDX_SENDER_MAX + 1];
    int64_t last[8];
    int n, stop_after;
};

static int seen_cb(void *ctx, const char *sender, int64_t last_us)
{
    struct seen *s = ctx;
    assert_true(s->n < 8);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", sender);
    s->last[s->n++] = last_us;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_senders_since(void **state)
{
    (void)state;
    char dir[256], db[320], cmd[300];
    struct hdx_store *st = NULL;
    struct seen s = {0};
    uint8_t ct[32] = {0}, chain[HDX_HASH_LEN] = {0};
    assert_int_equal(hdx_mkdtemp("hdx-review-", dir, sizeof(dir)), 0);
    snprintf(db, sizeof(db), "%s/store.db", dir);
    assert_int_equal(hdx_store_open(db, HDX_STORE_CREATE | HDX_STORE_NOSYNC, &st), HDX_OK);
    assert_int_equal(hdx_store_senders_since(st, 0, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 0); /* an empty store */
    /* seq: sender at time */
    const char *senders[] = {"mon-b", "mon-a", "mon-b", "hdx:audit", "mon-c", "mon-a"};
    const int64_t times[] = {100, 200, 300, 300, 400, 500};
    hdx_store_set_segment_size(st, 1 << 20);
    assert_int_equal(hdx_store_begin(st), HDX_OK);
    for (int i = 0; i < 6; i++) {
        struct hdx_record r = {.seq = (uint64_t)i + 1,
                               .time_us = times[i],
                               .kind = HDX_KIND_HL7V2,
                               .key_id = 1,
                               .ct = ct,
                               .ct_len = sizeof(ct)};
        snprintf(r.sender, sizeof(r.sender), "%s", senders[i]);
        snprintf(r.type, sizeof(r.type), "ORU^R01");
        hdx_record_leaf_hash(&r, r.leaf_hash);
        hdx_record_chain(chain, r.leaf_hash, r.chain);
        memcpy(chain, r.chain, sizeof(chain));
        assert_int_equal(hdx_store_append(st, &r), HDX_OK);
    }
    assert_int_equal(hdx_store_commit(st), HDX_OK);
    assert_int_equal(hdx_store_senders_since(st, 0, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 4); /* one row per sender, in sender order, its newest time */
    assert_string_equal(s.names[0], "hdx:audit");
    assert_string_equal(s.names[1], "mon-a");
    assert_int_equal(s.last[1], 500);
    assert_string_equal(s.names[2], "mon-b");
    assert_int_equal(s.last[2], 300);
    assert_string_equal(s.names[3], "mon-c");
    memset(&s, 0, sizeof(s));
    assert_int_equal(hdx_store_senders_since(st, 300, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 4); /* a record exactly at since counts */
    memset(&s, 0, sizeof(s));
    assert_int_equal(hdx_store_senders_since(st, 301, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "mon-a");
    assert_string_equal(s.names[1], "mon-c");
    memset(&s, 0, sizeof(s));
    assert_int_equal(hdx_store_senders_since(st, 501, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 0);
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    assert_int_equal(hdx_store_senders_since(st, 0, seen_cb, &s), HDX_OK);
    assert_int_equal(s.n, 1); /* the callback stops it */
    hdx_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_period),      cmocka_unit_test(test_dormant),
        cmocka_unit_test(test_role_unused), cmocka_unit_test(test_mfa_locked),
        cmocka_unit_test(test_training),    cmocka_unit_test(test_careteam_grant),
        cmocka_unit_test(test_device),      cmocka_unit_test(test_line),
        cmocka_unit_test(test_pairs),       cmocka_unit_test(test_senders_since),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
