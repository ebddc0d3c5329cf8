/* policy_bench: the cost of one policy decision (src/policy/policy.h) with U users, each on
 * the care teams of C/U patients (defaults 10,000 users, 100,000 care-team entries, as issue
 * 11 asks), one consent directive per 10 patients, one break-glass grant per 100 users.
 * Decisions are a random mix: clinician reads inside and outside their teams, researcher
 * reads, subscriber deliveries. Each is timed alone (clock_gettime around it; the clock's own
 * cost is measured and printed so that it can be subtracted).
 *   policy_bench [USERS] [CARETEAM_ENTRIES] [DECISIONS]
 * Prints one key=value line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void token(uint32_t patient, uint8_t out[HDX_POLICY_TOKEN_LEN])
{
    memset(out, 0, HDX_POLICY_TOKEN_LEN);
    memcpy(out, &patient, sizeof(patient));
    out[HDX_POLICY_TOKEN_LEN - 1] = 0x5a;
}

int main(int argc, char **argv)
{
    long users = argc > 1 ? atol(argv[1]) : 10000, entries = argc > 2 ? atol(argv[2]) : 100000;
    long n = argc > 3 ? atol(argv[3]) : 1000000;
    long patients = entries; /* every entry a distinct (user, patient) pair */
    const int64_t now = 1800000000LL * 1000000LL;
    struct hdx_policy *p = NULL;
    uint8_t tok[HDX_POLICY_TOKEN_LEN];
    char name[32];
    if (users < 1 || entries < users || n < 100 || hdx_policy_new(365, &p) != 0) return 2;
    srand(42);
    int64_t t0 = now_ns();
    for (long e = 0; e < entries; e++) {
        snprintf(name, sizeof(name), "user-%ld", e % users);
        token((uint32_t)e, tok);
        if (hdx_policy_careteam_add(p, name, tok) != 0) return 1;
    }
    for (long u = 0; u < users; u++) {
        snprintf(name, sizeof(name), "user-%ld", u);
        if (hdx_policy_training_set(p, name, now - 86400000000LL) != 0) return 1;
        if (u % 100 == 0) {
            token((uint32_t)(u + 7), tok);
            if (hdx_policy_break_glass_add(p, name, tok, now + 3600000000LL) != 0) return 1;
        }
    }
    for (long pt = 0; pt < patients; pt += 10) {
        token((uint32_t)pt, tok);
        if (hdx_policy_consent_deny(p, tok, HDX_PURPOSE_RESEARCH, HDX_ROLE_NONE) != 0) return 1;
    }
    int64_t build_ns = now_ns() - t0;
    int64_t *lat = malloc((size_t)n * sizeof(*lat));
    if (!lat) return 1;
    long permits = 0;
    int64_t clock_ns = now_ns();
    for (int i = 0; i < 1000; i++)
        (void)now_ns();
    clock_ns = (now_ns() - clock_ns) / 1000;
    for (long i = 0; i < n; i++) {
        long u = rand() % users, kind = rand() % 4;
        snprintf(name, sizeof(name), "user-%ld", u);
        /* inside the team half the time: entry e belongs to user e % users */
        long pt = (rand() & 1) ? u + users * (rand() % (entries / users)) : rand() % patients;
        token((uint32_t)pt, tok);
        struct hdx_policy_request q = {name,
                                       kind == 2   ? HDX_ROLE_RESEARCHER
                                       : kind == 3 ? HDX_ROLE_SUBSCRIBER
                                                   : HDX_ROLE_CLINICIAN,
                                       1,
                                       kind == 3 ? HDX_ACT_SUBSCRIBE : HDX_ACT_READ,
                                       HDX_RES_RECORD,
                                       tok,
                                       kind == 2 ? HDX_PURPOSE_RESEARCH : HDX_PURPOSE_TREATMENT,
                                       now};
        struct hdx_policy_decision d;
        int64_t a = now_ns();
        hdx_policy_decide(p, &q, &d);
        lat[i] = now_ns() - a;
        permits += d.permit;
    }
    qsort(lat, (size_t)n, sizeof(*lat), cmp64);
    printf("policy_bench users=%ld careteam_entries=%ld decisions=%ld permitted=%ld build_ms=%.1f "
           "clock_ns=%lld p50_ns=%lld p99_ns=%lld p999_ns=%lld max_ns=%lld\n",
           users, entries, n, permits, build_ns / 1e6, (long long)clock_ns, (long long)lat[n / 2],
           (long long)lat[n * 99 / 100], (long long)lat[n * 999 / 1000], (long long)lat[n - 1]);
    free(lat);
    hdx_policy_free(p);
    return 0;
}
