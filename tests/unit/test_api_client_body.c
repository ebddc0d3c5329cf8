/* test_api_client_body: cli_api_record_body (cli/api_client.c), the CLI's reading of a record
 * body out of an API answer: text as is, base64 decoded, and base64 that is not strictly the
 * RFC 4648 alphabet refused (libsodium 1.0.18 would decode some bytes above 0x7f). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli/cli.h"

static void test_text_and_base64(void **state)
{
    uint8_t *body;
    size_t len;
    json_t *o = json_pack("{s:s}", "body", "MSH|^~\\&|");
    assert_int_equal(cli_api_record_body(o, &body, &len), 0);
    assert_int_equal(len, 9);
    assert_memory_equal(body, "MSH|^~\\&|", 9);
    free(body);
    json_decref(o);
    o = json_pack("{s:s}", "body_base64", "AAEC/w==");
    assert_int_equal(cli_api_record_body(o, &body, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(body, "\x00\x01\x02\xff", 4);
    free(body);
    json_decref(o);
}

static void test_refused(void **state)
{
    /* "AA\xc3\xa9" and "AAAAAA\xc3\xa9" (valid UTF-8, so a JSON string) are what libsodium
     * 1.0.18 alone decodes, to 3 and 6 bytes */
    static const char *const bad[] = {"AA\xc3\xa9", "AAAAAA\xc3\xa9", "AA-C",
                                      "AA_C",       "AA C",           "AAE"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *body = (uint8_t *)"untouched";
        size_t len = 7;
        json_t *o = json_pack("{s:s}", "body_base64", bad[i]);
        assert_non_null(o);
        assert_int_equal(cli_api_record_body(o, &body, &len), -1);
        assert_null(body);
        json_decref(o);
    }
    uint8_t *body;
    size_t len;
    json_t *o = json_pack("{s:i}", "body_base64", 5);
    assert_int_equal(cli_api_record_body(o, &body, &len), -1);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_base64),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
