/* The in-memory duplicate window: lookups, FIFO eviction, rollback of a batch, and a
 * randomized comparison with a plain array as reference (deletion keeps probe chains). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "commit/dedup.h"

static void token(uint8_t t[HDX_BLIND_LEN], uint64_t n)
{
    /* Few distinct hash bits on purpose: forces long probe chains and wrap-around. */
    memset(t, 0, HDX_BLIND_LEN);
    uint64_t h = n % 7;
    memcpy(t, &h, sizeof(h));
    memcpy(t + 8, &n, sizeof(n));
}

static void test_find_add_evict(void **state)
{
    struct hdx_dedup *d = hdx_dedup_new(4);
    uint8_t t[HDX_BLIND_LEN];
    uint64_t seq = 0;
    assert_non_null(d);
    for (uint64_t i = 1; i <= 4; i++) {
        token(t, i);
        hdx_dedup_add(d, t, NULL, i * 10);
    }
    token(t, 3);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 1);
    assert_int_equal(seq, 30);
    token(t, 5);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 0);
    hdx_dedup_add(d, t, NULL, 50); /* evicts token 1 */
    token(t, 1);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 0);
    token(t, 2);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 1);
    assert_int_equal(hdx_dedup_count(d), 4);
    hdx_dedup_forget_newest(d, 2); /* 5 and 4 were in a batch that rolled back */
    token(t, 5);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 0);
    token(t, 4);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 0);
    token(t, 3);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), 1);
    assert_int_equal(hdx_dedup_count(d), 2);
    hdx_dedup_free(d);
    assert_null(hdx_dedup_new(0));
}

static void test_random_against_reference(void **state)
{
    enum { CAP = 64, OPS = 20000 };
    struct hdx_dedup *d = hdx_dedup_new(CAP);
    uint64_t ref[CAP]; /* the window as a plain FIFO of token numbers */
    size_t n = 0;
    uint8_t t[HDX_BLIND_LEN];
    uint64_t seq;
    srand(7);
    for (uint64_t op = 1; op <= OPS; op++) {
        uint64_t k = (uint64_t)rand() % 500;
        token(t, k);
        int in_ref = 0;
        for (size_t i = 0; i < n; i++)
            in_ref |= ref[i] == k;
        assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), in_ref);
        if (in_ref) assert_int_equal(seq, k + 1000);
        if (!in_ref) {
            hdx_dedup_add(d, t, NULL, k + 1000);
            if (n == CAP) {
                memmove(ref, ref + 1, (CAP - 1) * sizeof(ref[0]));
                n--;
            }
            ref[n++] = k;
        }
        if (op % 97 == 0 && n > 3) { /* a rolled-back batch */
            hdx_dedup_forget_newest(d, 3);
            n -= 3;
        }
        assert_int_equal(hdx_dedup_count(d), n);
    }
    hdx_dedup_free(d);
}

/* A resend is a duplicate only with the same content digest; unknown digests (records from
 * before digests, or a caller that has none) compare by token alone. */
static void test_content_digest(void **state)
{
    struct hdx_dedup *d = hdx_dedup_new(8);
    uint8_t t[HDX_BLIND_LEN], a[HDX_BLIND_LEN], b[HDX_BLIND_LEN];
    uint64_t seq = 0;
    memset(a, 0xaa, sizeof(a));
    memcpy(b, a, sizeof(b));
    b[3] ^= 1; /* differs within the 8 bytes kept */
    token(t, 1);
    hdx_dedup_add(d, t, a, 10);
    assert_int_equal(hdx_dedup_find(d, t, a, &seq), HDX_DEDUP_SAME);
    assert_int_equal(seq, 10);
    assert_int_equal(hdx_dedup_find(d, t, b, &seq), HDX_DEDUP_REUSED);
    assert_int_equal(seq, 10);
    assert_int_equal(hdx_dedup_find(d, t, NULL, &seq), HDX_DEDUP_SAME);
    hdx_dedup_add(d, t, b, 11); /* the reuse is stored: the newest wins */
    assert_int_equal(hdx_dedup_find(d, t, b, &seq), HDX_DEDUP_SAME);
    assert_int_equal(seq, 11);
    assert_int_equal(hdx_dedup_find(d, t, a, &seq), HDX_DEDUP_REUSED);
    token(t, 2);
    hdx_dedup_add(d, t, NULL, 12);
    assert_int_equal(hdx_dedup_find(d, t, b, &seq), HDX_DEDUP_SAME);
    token(t, 3);
    assert_int_equal(hdx_dedup_find(d, t, a, &seq), HDX_DEDUP_NONE);
    hdx_dedup_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_add_evict),
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_content_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
