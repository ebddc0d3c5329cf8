/* core/metrics: the text exposition (HELP, TYPE, _total, buckets, +Inf, _sum, _count),
 * histogram bucket edges (a value on a bound falls in that bucket), gauges going down,
 * out-of-range labels ignored, FHIR status classes, and exact totals from two threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/metrics.h"

static char *render(void)
{
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(hdx_metrics_render(&s, &len), HDX_OK);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

/* The value of the sample line that starts with "series " (exact series text). */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    fail_msg("no sample %s", series);
    return -1;
}

static int setup(void **state)
{
    hdx_metrics_reset();
    return 0;
}

static void test_render_format(void **state)
{
    hdx_metric_ingest(HDX_METRIC_MLLP);
    hdx_metric_ingest(HDX_METRIC_MLLP);
    hdx_metric_ingest(HDX_METRIC_HTTP);
    hdx_metric_connections(HDX_METRIC_SUB, 1);
    hdx_metric_auth_failure(HDX_METRIC_AUTH_API_KEY);
    char *s = render();
    assert_non_null(strstr(s, "# HELP hdx_messages_ingested_total "));
    assert_non_null(strstr(s, "# TYPE hdx_messages_ingested_total counter\n"));
    assert_non_null(strstr(s, "# TYPE hdx_ack_latency_seconds histogram\n"));
    assert_non_null(strstr(s, "# TYPE hdx_connections_open gauge\n"));
    assert_non_null(strstr(s, "# TYPE hdx_process_open_fds gauge\n"));
    assert_int_equal(sample(s, "hdx_messages_ingested_total{protocol=\"mllp\"}"), 2);
    assert_int_equal(sample(s, "hdx_messages_ingested_total{protocol=\"legacy\"}"), 0);
    assert_int_equal(sample(s, "hdx_messages_ingested_total{protocol=\"http\"}"), 1);
    /* ingest has no sub port: the series is not there */
    assert_null(strstr(s, "hdx_messages_ingested_total{protocol=\"sub\"}"));
    assert_int_equal(sample(s, "hdx_connections_open{protocol=\"sub\"}"), 1);
    assert_int_equal(sample(s, "hdx_auth_failures_total{mechanism=\"api_key\"}"), 1);
    assert_int_equal(sample(s, "hdx_auth_failures_total{mechanism=\"login\"}"), 0);
    assert_true(sample(s, "hdx_process_resident_memory_bytes") > 0);
    assert_true(sample(s, "hdx_process_open_fds") >= 3);
    assert_int_equal(sample(s, "hdx_uptime_seconds"), 0); /* not started */
    /* every line is a comment or a sample; the text ends in a newline */
    assert_int_equal(s[strlen(s) - 1], '\n');
    for (const char *p = s; *p; p = strchr(p, '\n') + 1)
        assert_true(*p == '#' || strncmp(p, "hdx_", 4) == 0);
    free(s);
}

static void test_bucket_edges(void **state)
{
    hdx_metric_ack_latency(0);        /* le 0.0005 */
    hdx_metric_ack_latency(500);      /* on the bound: le 0.0005 */
    hdx_metric_ack_latency(501);      /* le 0.001 */
    hdx_metric_ack_latency(-5);       /* a clock step: counted as 0 */
    hdx_metric_ack_latency(10000000); /* le 10 */
    hdx_metric_ack_latency(10000001); /* +Inf only */
    char *s = render();
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_bucket{le=\"0.0005\"}"), 3);
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_bucket{le=\"0.001\"}"), 4);
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_bucket{le=\"5\"}"), 4);
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_bucket{le=\"10\"}"), 5);
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_bucket{le=\"+Inf\"}"), 6);
    assert_int_equal(sample(s, "hdx_ack_latency_seconds_count"), 6);
    assert_true(sample(s, "hdx_ack_latency_seconds_sum") > 20.001001 &&
                sample(s, "hdx_ack_latency_seconds_sum") < 20.001003);
    free(s);

    hdx_metric_commit_batch(1, 1, 0, 0);
    hdx_metric_commit_batch(3, 2, 1, 0);
    hdx_metric_commit_batch(4, 0, 0, 4);
    hdx_metric_commit_batch(0, 0, 0, 0); /* no batch */
    hdx_metric_commit_batch(5000, 5000, 0, 0);
    s = render();
    assert_int_equal(sample(s, "hdx_commit_batches_total"), 4);
    assert_int_equal(sample(s, "hdx_commit_records_total"), 5003);
    assert_int_equal(sample(s, "hdx_commit_duplicates_total"), 1);
    assert_int_equal(sample(s, "hdx_commit_failed_total"), 4);
    assert_int_equal(sample(s, "hdx_commit_batch_items_bucket{le=\"1\"}"), 1);
    assert_int_equal(sample(s, "hdx_commit_batch_items_bucket{le=\"2\"}"), 1);
    assert_int_equal(sample(s, "hdx_commit_batch_items_bucket{le=\"4\"}"), 3);
    assert_int_equal(sample(s, "hdx_commit_batch_items_bucket{le=\"4096\"}"), 3);
    assert_int_equal(sample(s, "hdx_commit_batch_items_bucket{le=\"+Inf\"}"), 4);
    assert_int_equal(sample(s, "hdx_commit_batch_items_sum"), 5008);
    free(s);
}

static void test_gauges_labels_fhir(void **state)
{
    hdx_metric_intake_queue(5);
    hdx_metric_intake_queue(-7); /* a gauge may go below zero only by a caller's mistake */
    hdx_metric_connections(HDX_METRIC_HTTP, 1);
    hdx_metric_connections(HDX_METRIC_HTTP, 1);
    hdx_metric_connections(HDX_METRIC_HTTP, -1);
    hdx_metric_connections((enum hdx_metric_proto)99, 1); /* ignored */
    hdx_metric_fhir(HDX_METRIC_FHIR_READ, 200);
    hdx_metric_fhir(HDX_METRIC_FHIR_READ, 404);
    hdx_metric_fhir(HDX_METRIC_FHIR_CAPABILITIES, 200);
    hdx_metric_fhir(HDX_METRIC_FHIR_TRANSACTION, 503);
    hdx_metric_fhir(HDX_METRIC_FHIR_SEARCH, 304);
    hdx_metric_fhir(HDX_METRIC_FHIR_CREATE, 0);  /* nonsense status: 5xx */
    hdx_metric_fhir(HDX_METRIC_FHIR_COUNT, 200); /* ignored */
    hdx_metric_route(HDX_METRIC_ROUTE_DEAD);
    hdx_metric_policy_denial(HDX_METRIC_FRONT_ROUTE);
    char *s = render();
    assert_int_equal(sample(s, "hdx_intake_queue_items"), -2);
    assert_int_equal(sample(s, "hdx_connections_open{protocol=\"http\"}"), 1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"read\",code=\"2xx\"}"), 1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"read\",code=\"4xx\"}"), 1);
    assert_int_equal(
        sample(s, "hdx_fhir_requests_total{interaction=\"capabilities\",code=\"2xx\"}"), 1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"transaction\",code=\"5xx\"}"),
                     1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"search\",code=\"3xx\"}"), 1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"create\",code=\"5xx\"}"), 1);
    assert_int_equal(sample(s, "hdx_fhir_requests_total{interaction=\"batch\",code=\"2xx\"}"), 0);
    assert_int_equal(sample(s, "hdx_route_deliveries_total{outcome=\"dead\"}"), 1);
    assert_int_equal(sample(s, "hdx_policy_denials_total{front=\"route\"}"), 1);
    free(s);
    hdx_metrics_start();
    s = render();
    assert_true(sample(s, "hdx_uptime_seconds") >= 0);
    free(s);
}

#define ADDS 200000

static void *adder(void *arg)
{
    for (int i = 0; i < ADDS; i++) {
        hdx_metric_ingest(HDX_METRIC_LEGACY);
        hdx_metric_route_latency(i % 3 ? 700 : 70000);
        hdx_metric_intake_queue(1);
        hdx_metric_intake_queue(-1);
        hdx_metric_flush();
    }
    return arg;
}

static void test_two_threads(void **state)
{
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, adder, NULL), 0);
    assert_int_equal(pthread_create(&b, NULL, adder, NULL), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    char *s = render();
    assert_int_equal(sample(s, "hdx_messages_ingested_total{protocol=\"legacy\"}"), 2 * ADDS);
    assert_int_equal(sample(s, "hdx_commit_flushes_total"), 2 * ADDS);
    assert_int_equal(sample(s, "hdx_intake_queue_items"), 0);
    assert_int_equal(sample(s, "hdx_route_delivery_latency_seconds_count"), 2 * ADDS);
    /* i % 3 != 0 for 2/3 of i in [0, ADDS): 133333 per thread at 0.0007 s */
    uint64_t slow = (ADDS + 2) / 3, fast = ADDS - slow;
    assert_int_equal(sample(s, "hdx_route_delivery_latency_seconds_bucket{le=\"0.001\"}"),
                     2 * fast);
    assert_int_equal(sample(s, "hdx_route_delivery_latency_seconds_bucket{le=\"0.1\"}"), 2 * ADDS);
    double sum = sample(s, "hdx_route_delivery_latency_seconds_sum");
    double want = 2.0 * ((double)fast * 0.0007 + (double)slow * 0.07);
    assert_true(sum > want - 1e-6 && sum < want + 1e-6);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_render_format, setup),
        cmocka_unit_test_setup(test_bucket_edges, setup),
        cmocka_unit_test_setup(test_gauges_labels_fhir, setup),
        cmocka_unit_test_setup(test_two_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
