/* argon2_bench: the cost of one Argon2id password hash and one verify (auth/password.h) under
 * a given cost, as a login pays it: N of each, one at a time, median and p90 in ms.
 * usage: argon2_bench [OPSLIMIT [MEMLIMIT_KIB [N]]]   (defaults: hdx.conf's, 3 65536 20) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "core/err.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct hdx_pw_cost cost = {argc > 1 ? strtoull(argv[1], NULL, 10) : 3,
                               (argc > 2 ? strtoull(argv[2], NULL, 10) : 65536) * 1024};
    int n = argc > 3 ? atoi(argv[3]) : 20;
    if (n < 1 || n > 1000) return 2;
    double *h = calloc((size_t)n, sizeof(double)), *v = calloc((size_t)n, sizeof(double));
    char hash[HDX_PW_HASH_MAX];
    const char *pw = "a benchmark passphrase";
    if (!h || !v) return 1;
    for (int i = 0; i < n; i++) {
        double t = now_ms();
        if (hdx_password_hash(&cost, pw, strlen(pw), hash) != HDX_OK) return 1;
        h[i] = now_ms() - t;
        t = now_ms();
        if (!hdx_password_verify(&cost, hash, pw, strlen(pw), NULL)) return 1;
        v[i] = now_ms() - t;
    }
    qsort(h, (size_t)n, sizeof(double), cmp);
    qsort(v, (size_t)n, sizeof(double), cmp);
    printf("opslimit=%llu memlimit_kib=%zu n=%d hash_p50_ms=%.1f hash_p90_ms=%.1f "
           "verify_p50_ms=%.1f verify_p90_ms=%.1f\n",
           cost.opslimit, cost.memlimit / 1024, n, h[n / 2], h[n * 9 / 10], v[n / 2],
           v[n * 9 / 10]);
    free(h);
    free(v);
    return 0;
}
