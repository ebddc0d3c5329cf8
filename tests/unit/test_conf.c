/* Configuration: key table, ranges, file:line errors, -o overrides, time parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/err.h"
#include "core/util.h"

static char path[256];

static void write_conf(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    int fd = hdx_mkstemp("hdx-conf-", path, sizeof(path));
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    return unlink(path);
}

static void test_defaults_and_template(void **state)
{
    struct hdx_conf c;
    char err[256];
    hdx_conf_defaults(&c);
    assert_string_equal(c.mllp_listen, "127.0.0.1:2575");
    assert_string_equal(c.legacy_listen, "");
    assert_int_equal(c.mllp_max_message, 1048576);
    assert_string_equal(c.tls_min_version, "1.3");
    /* The file hdx init writes loads cleanly and states the defaults. */
    write_conf(hdx_conf_template());
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_OK);
    assert_string_equal(c.mllp_listen, "127.0.0.1:2575");
    assert_string_equal(c.store_sync, "full");
    assert_string_equal(c.debug_core_dumps, "off");
}

/* debug.core_dumps takes off or on only; anything else names file, line and key, and an
 * override is checked the same way. */
static void test_core_dumps_key(void **state)
{
    struct hdx_conf c;
    char err[512], want[320];
    hdx_conf_defaults(&c);
    assert_string_equal(c.debug_core_dumps, "off");
    write_conf("[debug]\ncore_dumps = on\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_OK);
    assert_string_equal(c.debug_core_dumps, "on");
    write_conf("[debug]\ncore_dumps = off\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_OK);
    assert_string_equal(c.debug_core_dumps, "off");
    const char *bad[] = {"yes", "1", "ON", "of", "offf", "", "on off"};
    for (size_t i = 0; i < HDX_ARRAY_LEN(bad); i++) {
        char text[64];
        hdx_conf_defaults(&c);
        snprintf(text, sizeof(text), "[log]\nlevel = info\n[debug]\ncore_dumps = %s\n", bad[i]);
        write_conf(text);
        assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_E_CONFIG);
        snprintf(want, sizeof(want), "%s:4: debug.core_dumps: must be off or on", path);
        assert_string_equal(err, want);
        assert_string_equal(c.debug_core_dumps, "off"); /* a refused value is not kept */
    }
    hdx_conf_defaults(&c);
    assert_int_equal(hdx_conf_set(&c, "debug.core_dumps=on", err, sizeof(err)), HDX_OK);
    assert_string_equal(c.debug_core_dumps, "on");
    assert_int_equal(hdx_conf_set(&c, "debug.core_dumps=off", err, sizeof(err)), HDX_OK);
    assert_string_equal(c.debug_core_dumps, "off");
    assert_int_equal(hdx_conf_set(&c, "debug.core_dumps=maybe", err, sizeof(err)), HDX_E_CONFIG);
    assert_string_equal(err, "-o: debug.core_dumps: must be off or on");
    assert_string_equal(c.debug_core_dumps, "off");
}

static void test_errors_name_file_line_key(void **state)
{
    struct hdx_conf c;
    char err[512], want[320];
    hdx_conf_defaults(&c);
    write_conf("[mllp]\nlisten = 127.0.0.1:1\n\nmax_message = 12\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_E_CONFIG);
    snprintf(want, sizeof(want), "%s:4: mllp.max_message: out of range", path);
    assert_non_null(strstr(err, want));
    write_conf("[mllp]\nlisten = 127.0.0.1:1\n[bogus]\nkey = 1\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_E_CONFIG);
    snprintf(want, sizeof(want), "%s:4: bogus.key: unknown key", path);
    assert_string_equal(err, want);
    write_conf("[tls]\nmin_version = 1.1\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_E_CONFIG);
    assert_non_null(strstr(err, "tls.min_version"));
    write_conf("[mllp]\nmax_inflight = 12abc\n");
    assert_int_equal(hdx_conf_load(&c, path, err, sizeof(err)), HDX_E_CONFIG);
    assert_non_null(strstr(err, "not an integer"));
}

static void test_overrides(void **state)
{
    struct hdx_conf c;
    char err[256];
    hdx_conf_defaults(&c);
    assert_int_equal(hdx_conf_set(&c, "legacy.listen=127.0.0.1:2576", err, sizeof(err)), HDX_OK);
    assert_string_equal(c.legacy_listen, "127.0.0.1:2576");
    assert_int_equal(hdx_conf_set(&c, "mllp.read_timeout_ms=500", err, sizeof(err)), HDX_OK);
    assert_int_equal(c.mllp_read_timeout_ms, 500);
    assert_int_equal(hdx_conf_set(&c, "mllp.nope=1", err, sizeof(err)), HDX_E_CONFIG);
    assert_non_null(strstr(err, "unknown key"));
    assert_int_equal(hdx_conf_set(&c, "noequals", err, sizeof(err)), HDX_E_CONFIG);
    assert_int_equal(hdx_conf_set(&c, "store.sync=sometimes", err, sizeof(err)), HDX_E_CONFIG);
}

static void test_time_and_hostport(void **state)
{
    int64_t t;
    char host[64];
    int port;
    assert_int_equal(hdx_parse_time("2026-11-25T10:00:00Z", &t), 0);
    assert_true(t == INT64_C(1795600800) * 1000000);
    assert_int_equal(hdx_parse_time("2026-11-25", &t), 0);
    assert_true(t == INT64_C(1795564800) * 1000000);
    assert_int_equal(hdx_parse_time("1795564800", &t), 0);
    assert_true(t == INT64_C(1795564800) * 1000000);
    assert_int_equal(hdx_parse_time("15m", &t), 0);
    assert_true(hdx_now_us() - t >= 15 * 60 * INT64_C(1000000));
    assert_int_equal(hdx_parse_time("yesterday", &t), -1);
    assert_int_equal(hdx_parse_time("2026-13-45T99:00:00Z", &t), -1);
    assert_int_equal(hdx_split_hostport("[::1]:2575", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 2575);
    assert_int_equal(hdx_split_hostport("127.0.0.1:99999", host, sizeof(host), &port), -1);
    assert_int_equal(hdx_split_hostport("nohost", host, sizeof(host), &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_template),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_core_dumps_key),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_time_and_hostport),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
