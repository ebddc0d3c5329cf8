/* The session table (auth/session.h) and the login throttle (auth/throttle.h): tokens, idle
 * and absolute expiry, logout and revocation, the bound on memory; backoff, lockout for
 * existing and missing accounts alike, per-source locks and spray detection, the window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/session.h"
#include "auth/throttle.h"
#include "core/err.h"

#define S 1000000LL /* a second in microseconds */

static void test_session_token(void **state)
{
    struct hdx_sessions *t;
    char tok[HDX_SESSION_TOKEN_LEN + 1], tok2[HDX_SESSION_TOKEN_LEN + 1];
    const struct hdx_session *s, *s2;
    assert_int_equal(hdx_sessions_new(60 * S, 3600 * S, 8, &t), HDX_OK);
    assert_int_equal(
        hdx_sessions_create(t, "alice", "clinician", 1, "127.0.0.1", 1000 * S, tok, &s), HDX_OK);
    assert_int_equal(strlen(tok), HDX_SESSION_TOKEN_LEN);
    for (const char *p = tok; *p; p++)
        assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
    assert_int_equal(strlen(s->id), HDX_SESSION_ID_LEN);
    assert_null(strstr(tok, s->id)); /* the public id is not part of the token */
    assert_int_equal(hdx_sessions_create(t, "alice", "clinician", 1, NULL, 1000 * S, tok2, &s2),
                     HDX_OK);
    assert_string_not_equal(tok, tok2);
    assert_true(s->serial != s2->serial);
    const struct hdx_session *got = hdx_sessions_check(t, tok, strlen(tok), 1001 * S);
    assert_non_null(got);
    assert_string_equal(got->user, "alice");
    assert_int_equal(got->mfa, 1);
    /* one character changed, shorter, longer, empty */
    char bad[HDX_SESSION_TOKEN_LEN + 2];
    memcpy(bad, tok, sizeof(tok));
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    assert_null(hdx_sessions_check(t, bad, HDX_SESSION_TOKEN_LEN, 1001 * S));
    assert_null(hdx_sessions_check(t, tok, HDX_SESSION_TOKEN_LEN - 1, 1001 * S));
    memcpy(bad, tok, sizeof(tok));
    bad[HDX_SESSION_TOKEN_LEN] = 'x';
    bad[HDX_SESSION_TOKEN_LEN + 1] = 0;
    assert_null(hdx_sessions_check(t, bad, HDX_SESSION_TOKEN_LEN + 1, 1001 * S));
    assert_null(hdx_sessions_check(t, "", 0, 1001 * S));
    assert_int_equal(hdx_sessions_count(t), 2);
    hdx_sessions_free(t);
}

static void test_session_expiry(void **state)
{
    struct hdx_sessions *t;
    char tok[HDX_SESSION_TOKEN_LEN + 1];
    const struct hdx_session *s;
    assert_int_equal(hdx_sessions_new(10 * S, 30 * S, 8, &t), HDX_OK);
    assert_int_equal(hdx_sessions_create(t, "bob", "nurse", 1, "-", 0, tok, &s), HDX_OK);
    assert_int_equal(hdx_sessions_remaining_s(t, s, 0), 30);
    /* requests every 9 s keep it alive, up to the absolute lifetime */
    for (int64_t now = 9 * S; now < 30 * S; now += 9 * S)
        assert_non_null(hdx_sessions_check(t, tok, strlen(tok), now));
    assert_null(hdx_sessions_check(t, tok, strlen(tok), 30 * S));
    assert_int_equal(hdx_sessions_count(t), 0);
    /* idle */
    assert_int_equal(hdx_sessions_create(t, "bob", "nurse", 1, "-", 100 * S, tok, &s), HDX_OK);
    assert_non_null(hdx_sessions_check(t, tok, strlen(tok), 110 * S));
    assert_null(hdx_sessions_check(t, tok, strlen(tok), 120 * S + 1));
    /* the tick ends idle ones without a request */
    assert_int_equal(hdx_sessions_create(t, "bob", "nurse", 1, "-", 200 * S, tok, &s), HDX_OK);
    assert_int_equal(hdx_sessions_expire(t, 205 * S), 0);
    assert_int_equal(hdx_sessions_expire(t, 211 * S), 1);
    assert_int_equal(hdx_sessions_count(t), 0);
    hdx_sessions_free(t);
}

static void test_session_revoke(void **state)
{
    struct hdx_sessions *t;
    char a1[HDX_SESSION_TOKEN_LEN + 1], a2[HDX_SESSION_TOKEN_LEN + 1],
        b1[HDX_SESSION_TOKEN_LEN + 1];
    const struct hdx_session *s;
    assert_int_equal(hdx_sessions_new(600 * S, 3600 * S, 8, &t), HDX_OK);
    assert_int_equal(hdx_sessions_create(t, "alice", "clinician", 1, "-", 10 * S, a1, &s), HDX_OK);
    uint64_t a1_serial = s->serial;
    assert_int_equal(hdx_sessions_create(t, "alice", "clinician", 1, "-", 20 * S, a2, &s), HDX_OK);
    assert_int_equal(hdx_sessions_create(t, "bob", "nurse", 1, "-", 10 * S, b1, &s), HDX_OK);
    /* revoked before 15 s: alice's first only */
    assert_int_equal(hdx_sessions_revoke_user(t, "alice", 15 * S), 1);
    assert_null(hdx_sessions_check(t, a1, strlen(a1), 21 * S));
    assert_null(hdx_sessions_by_serial(t, a1_serial, 21 * S));
    assert_non_null(hdx_sessions_check(t, a2, strlen(a2), 21 * S));
    assert_non_null(hdx_sessions_check(t, b1, strlen(b1), 21 * S));
    s = hdx_sessions_check(t, b1, strlen(b1), 22 * S);
    assert_int_equal(hdx_sessions_end(t, s->serial), 1);
    assert_int_equal(hdx_sessions_end(t, s->serial), 0);
    assert_null(hdx_sessions_check(t, b1, strlen(b1), 22 * S));
    assert_int_equal(hdx_sessions_revoke_user(t, "alice", INT64_MAX), 1);
    assert_int_equal(hdx_sessions_count(t), 0);
    hdx_sessions_free(t);
}

static void test_session_bound(void **state)
{
    struct hdx_sessions *t;
    char tok[4][HDX_SESSION_TOKEN_LEN + 1];
    const struct hdx_session *s;
    assert_int_equal(hdx_sessions_new(600 * S, 3600 * S, 3, &t), HDX_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hdx_sessions_create(t, "u", "nurse", 1, "-", (i + 1) * S, tok[i], &s),
                         HDX_OK);
    assert_non_null(hdx_sessions_check(t, tok[0], HDX_SESSION_TOKEN_LEN, 10 * S)); /* used last */
    assert_int_equal(hdx_sessions_create(t, "u", "nurse", 1, "-", 11 * S, tok[3], &s), HDX_OK);
    assert_int_equal(hdx_sessions_count(t), 3);
    assert_null(hdx_sessions_check(t, tok[1], HDX_SESSION_TOKEN_LEN, 12 * S)); /* the LRU went */
    assert_non_null(hdx_sessions_check(t, tok[0], HDX_SESSION_TOKEN_LEN, 12 * S));
    assert_non_null(hdx_sessions_check(t, tok[2], HDX_SESSION_TOKEN_LEN, 12 * S));
    assert_non_null(hdx_sessions_check(t, tok[3], HDX_SESSION_TOKEN_LEN, 12 * S));
    char name[80];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    assert_int_equal(hdx_sessions_create(t, name, "nurse", 1, "-", 13 * S, tok[1], &s),
                     HDX_E_INVAL);
    struct hdx_sessions *none;
    assert_int_equal(hdx_sessions_new(600 * S, 3600 * S, 0, &none), HDX_E_INVAL);
    assert_null(none);
    hdx_sessions_free(t);
}

static struct hdx_throttle *throttle(void)
{
    struct hdx_throttle_conf c = {.max_failures = 5,
                                  .source_max_failures = 8,
                                  .spray_accounts = 4,
                                  .window_us = 900 * S,
                                  .lockout_us = 300 * S,
                                  .max_entries = 16};
    struct hdx_throttle *t;
    assert_int_equal(hdx_throttle_new(&c, &t), HDX_OK);
    return t;
}

static void test_throttle_account(void **state)
{
    struct hdx_throttle *t = throttle();
    const char *why;
    int64_t now = 1000 * S;
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 0);
    assert_int_equal(hdx_throttle_failure(t, "src1", "alice", now), 0);
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 0); /* one: no wait */
    assert_int_equal(hdx_throttle_failure(t, "src1", "alice", now), 0);
    assert_int_equal(hdx_throttle_check(t, "src2", "alice", now, &why), 1); /* any source */
    assert_string_equal(why, "account");
    assert_int_equal(hdx_throttle_check(t, "src1", "bob", now, &why), 0); /* other accounts */
    now += S;
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 0);
    assert_int_equal(hdx_throttle_failure(t, "src1", "alice", now), 0);
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 2); /* doubling */
    now += 2 * S;
    assert_int_equal(hdx_throttle_failure(t, "src1", "alice", now), 0);
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 4);
    now += 4 * S;
    assert_int_equal(hdx_throttle_failure(t, "src1", "alice", now),
                     HDX_THROTTLE_ACCOUNT_LOCKED); /* the fifth */
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now, &why), 300);
    assert_string_equal(why, "account");
    /* a success does not clear a lock; its end does */
    hdx_throttle_success(t, "alice");
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now + 299 * S, &why), 1);
    assert_int_equal(hdx_throttle_check(t, "src1", "alice", now + 300 * S, &why), 0);
    /* success clears the count */
    now += 400 * S;
    assert_int_equal(hdx_throttle_failure(t, "src3", "carol", now), 0);
    assert_int_equal(hdx_throttle_failure(t, "src3", "carol", now), 0);
    hdx_throttle_success(t, "carol");
    assert_int_equal(hdx_throttle_check(t, "src3", "carol", now, &why), 0);
    /* the window forgets old failures */
    assert_int_equal(hdx_throttle_failure(t, "src4", "dave", now), 0);
    assert_int_equal(hdx_throttle_failure(t, "src4", "dave", now), 0);
    assert_int_equal(hdx_throttle_check(t, "src4", "dave", now + 901 * S, &why), 0);
    assert_int_equal(hdx_throttle_failure(t, "src4", "dave", now + 901 * S), 0);
    assert_int_equal(hdx_throttle_check(t, "src4", "dave", now + 901 * S, &why), 0);
    hdx_throttle_free(t);
}

static void test_throttle_source(void **state)
{
    struct hdx_throttle *t = throttle();
    const char *why;
    int64_t now = 1000 * S;
    /* spraying: four accounts from one source */
    assert_int_equal(hdx_throttle_failure(t, "evil", "a1", now), 0);
    assert_int_equal(hdx_throttle_failure(t, "evil", "a2", now), 0);
    assert_int_equal(hdx_throttle_failure(t, "evil", "a2", now), 0); /* the same one again */
    assert_int_equal(hdx_throttle_failure(t, "evil", "a3", now), 0);
    assert_int_equal(hdx_throttle_failure(t, "evil", "a4", now),
                     HDX_THROTTLE_SPRAY | HDX_THROTTLE_SOURCE_LOCKED);
    assert_int_equal(hdx_throttle_check(t, "evil", "a9", now, &why), 300);
    assert_string_equal(why, "source");
    assert_int_equal(hdx_throttle_check(t, "good", "a1", now, &why), 0); /* others may */
    assert_int_equal(hdx_throttle_failure(t, "evil", "a5", now), 0);     /* raised once */
    /* many failures on one account from one source lock the account first; spread over
     * accounts under the spray count, the source's own limit */
    struct hdx_throttle_conf c = {.max_failures = 100,
                                  .source_max_failures = 3,
                                  .spray_accounts = 16,
                                  .window_us = 900 * S,
                                  .lockout_us = 60 * S,
                                  .max_entries = 2};
    struct hdx_throttle *t2;
    assert_int_equal(hdx_throttle_new(&c, &t2), HDX_OK);
    assert_int_equal(hdx_throttle_failure(t2, "s", "x", now), 0);
    assert_int_equal(hdx_throttle_failure(t2, "s", "y", now), 0);
    assert_int_equal(hdx_throttle_failure(t2, "s", "y", now), HDX_THROTTLE_SOURCE_LOCKED);
    assert_int_equal(hdx_throttle_check(t2, "s", "z", now, &why), 60);
    /* bounded: a third account takes the least recently used slot */
    assert_int_equal(hdx_throttle_failure(t2, "s2", "w", now + S), 0);
    assert_int_equal(hdx_throttle_check(t2, "s2", "w", now + S, &why), 0);
    hdx_throttle_free(t2);
    c.spray_accounts = 1;
    assert_int_equal(hdx_throttle_new(&c, &t2), HDX_E_INVAL);
    hdx_throttle_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_token),    cmocka_unit_test(test_session_expiry),
        cmocka_unit_test(test_session_revoke),   cmocka_unit_test(test_session_bound),
        cmocka_unit_test(test_throttle_account), cmocka_unit_test(test_throttle_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
