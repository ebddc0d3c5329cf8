/* Log requests on the subscription port (store/logproof.h hdx_logreq_parse): the three
 * requests in their one accepted form, and everything sscanf would have let through refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/logproof.h"

static void test_accepted(void **state)
{
    struct hdx_logreq r;
    assert_int_equal(hdx_logreq_parse("STH", &r), HDX_LOGREQ_STH);
    assert_int_equal(hdx_logreq_parse("INCLUSION 42", &r), HDX_LOGREQ_INCLUSION);
    assert_int_equal(r.a, 42);
    assert_int_equal(hdx_logreq_parse("INCLUSION 0", &r), HDX_LOGREQ_INCLUSION);
    assert_int_equal(r.a, 0);
    assert_int_equal(hdx_logreq_parse("CONSISTENCY 7 18446744073709551615", &r),
                     HDX_LOGREQ_CONSISTENCY);
    assert_int_equal(r.a, 7);
    assert_true(r.b == UINT64_MAX);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "STH ",
        " STH",
        "sth",
        "INCLUSION",
        "INCLUSION ",
        "INCLUSION -1",
        "INCLUSION +1",
        "INCLUSION  1",
        "INCLUSION 01",
        "INCLUSION 1 ",
        "INCLUSION 1x",
        "INCLUSION 18446744073709551616",
        "CONSISTENCY 1",
        "CONSISTENCY 1  2",
        "CONSISTENCY 1 2 3",
        "CONSISTENCY 1 -2",
        "CONSISTENCY 99999999999999999999 1",
        "SUB after=0",
    };
    struct hdx_logreq r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.kind = HDX_LOGREQ_STH;
        assert_int_equal(hdx_logreq_parse(bad[i], &r), HDX_LOGREQ_NONE);
        assert_int_equal(r.kind, HDX_LOGREQ_NONE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
