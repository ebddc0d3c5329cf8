/* merkle_bench: cost of the RFC 9162 Merkle tree (src/merkle) with an in-memory store.
 * Appends N leaves (default 10,000,000; argv[1] overrides) into arrays per level, then
 * times reopening, roots, inclusion and consistency proofs and their verification, and
 * checks that every proof verifies. The store is memory, so the figures are the tree's own
 * cost (hashing and bookkeeping); a real store adds its get/put latency, about 2 puts per
 * append and up to popcount(size) + path length gets per proof.
 * Needs about 64 * N bytes of memory (640 MB at 10M).
 *
 * Build by hand from the repository root (not part of the CMake build):
 *   cc -std=c17 -O2 -D_GNU_SOURCE -Isrc bench/merkle_bench.c src/merkle/merkle.c \
 *      -lcrypto -o merkle_bench && ./merkle_bench
 * Targets: < 2 us per append amortised, < 100 us per inclusion proof at 10M leaves. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "merkle/merkle.h"

struct levels {
    uint8_t (*h[64])[32];
    uint64_t cap[64];
    unsigned long gets, puts;
};

static int mem_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct levels *s = ctx;
    s->gets++;
    if (level >= 64 || index >= s->cap[level]) return HDX_E_NOTFOUND;
    memcpy(out, s->h[level][index], 32);
    return 0;
}

static int mem_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct levels *s = ctx;
    s->puts++;
    if (level >= 64 || index >= s->cap[level]) return HDX_E_TOOBIG;
    memcpy(s->h[level][index], hash, 32);
    return 0;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static uint64_t sm_state = 1;

static uint64_t splitmix(void)
{
    uint64_t z = (sm_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Stand-in for SHA-256(0x00 || leaf): distinct pseudo-random 32-byte values. */
static void leaf_hash(uint8_t out[32])
{
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix();
        memcpy(out + 8 * i, &v, 8);
    }
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "merkle_bench: %s failed: %d\n", what, rc);
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000u;
    static struct levels s;
    struct merkle_store st = {mem_get, mem_put, &s};
    struct merkle m, m2;
    uint8_t leaf[32], root[32], r2[32], path[MERKLE_MAX_PATH][32];
    size_t plen;
    int rc;
    double t0, t;

    if (n < 2) n = 2;
    for (unsigned l = 0; l < 64; l++) {
        s.cap[l] = (n >> l) + 1;
        s.h[l] = malloc(s.cap[l] * 32);
        if (!s.h[l]) die("malloc", HDX_E_NOMEM);
    }

    /* appends */
    if ((rc = merkle_open(&m, 0, &st))) die("open", rc);
    double gen = now_ns();
    for (uint64_t i = 0; i < 1000000; i++)
        leaf_hash(leaf);
    gen = (now_ns() - gen) / 1e6; /* leaf generation cost, subtracted below */
    sm_state = 1;
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        leaf_hash(leaf);
        if ((rc = merkle_append(&m, leaf))) die("append", rc);
    }
    t = now_ns() - t0;
    printf("append:       %llu leaves in %.2f s: %.0f ns/append (%.0f ns less leaf generation), "
           "%.3f puts/append\n",
           (unsigned long long)n, t / 1e9, t / (double)n, t / (double)n - gen,
           (double)s.puts / (double)n);

    t0 = now_ns();
    if ((rc = merkle_root(&m, root))) die("root", rc);
    printf("root:         %.0f ns (frontier only)\n", now_ns() - t0);

    s.gets = 0;
    t0 = now_ns();
    if ((rc = merkle_open(&m2, n, &st))) die("reopen", rc);
    t = now_ns() - t0;
    if ((rc = merkle_root(&m2, r2)) || memcmp(root, r2, 32)) die("reopen root", rc ? rc : -99);
    printf("reopen:       %.0f ns, %lu gets\n", t, s.gets);

    const int iters = 100000;
    uint64_t *idx = malloc(sizeof(uint64_t) * (size_t)iters);
    uint64_t *sz = malloc(sizeof(uint64_t) * (size_t)iters);
    uint8_t(*roots)[32] = malloc(32 * (size_t)iters);
    if (!idx || !sz || !roots) die("malloc", HDX_E_NOMEM);

    /* root_at random sizes */
    for (int i = 0; i < iters; i++)
        sz[i] = 1 + splitmix() % n;
    s.gets = 0;
    t0 = now_ns();
    for (int i = 0; i < iters; i++)
        if ((rc = merkle_root_at(&m, sz[i], roots[i]))) die("root_at", rc);
    t = now_ns() - t0;
    printf("root_at:      %.0f ns/call, %.1f gets/call (random size <= n)\n", t / iters,
           (double)s.gets / iters);

    /* inclusion at the full size */
    for (int i = 0; i < iters; i++)
        idx[i] = splitmix() % n;
    s.gets = 0;
    double tv = 0;
    size_t maxlen = 0;
    t0 = now_ns();
    for (int i = 0; i < iters; i++)
        if ((rc = merkle_inclusion_proof(&m, idx[i], n, path, MERKLE_MAX_PATH, &plen)))
            die("inclusion", rc);
    t = now_ns() - t0;
    unsigned long gets = s.gets;
    for (int i = 0; i < iters; i++) {
        if ((rc = merkle_inclusion_proof(&m, idx[i], n, path, MERKLE_MAX_PATH, &plen)))
            die("inclusion", rc);
        if (plen > maxlen) maxlen = plen;
        double v0 = now_ns();
        rc = merkle_verify_inclusion(s.h[0][idx[i]], idx[i], n, (const uint8_t(*)[32])path, plen,
                                     root);
        tv += now_ns() - v0;
        if (rc) die("verify inclusion", rc);
    }
    printf("inclusion:    %.0f ns/proof at size %llu, %.1f gets/proof, path <= %zu; "
           "verify %.0f ns\n",
           t / iters, (unsigned long long)n, (double)gets / iters, maxlen, tv / iters);

    /* inclusion at random older sizes, verified against root_at */
    for (int i = 0; i < iters; i++)
        idx[i] = splitmix() % sz[i];
    s.gets = 0;
    t0 = now_ns();
    for (int i = 0; i < iters; i++) {
        if ((rc = merkle_inclusion_proof(&m, idx[i], sz[i], path, MERKLE_MAX_PATH, &plen)))
            die("inclusion", rc);
    }
    t = now_ns() - t0;
    gets = s.gets;
    for (int i = 0; i < iters; i++) {
        if ((rc = merkle_inclusion_proof(&m, idx[i], sz[i], path, MERKLE_MAX_PATH, &plen)) ||
            (rc = merkle_verify_inclusion(s.h[0][idx[i]], idx[i], sz[i], (const uint8_t(*)[32])path,
                                          plen, roots[i])))
            die("inclusion old size", rc);
    }
    printf("inclusion:    %.0f ns/proof at random sizes <= n, %.1f gets/proof\n", t / iters,
           (double)gets / iters);

    /* consistency: random old size to the full size */
    s.gets = 0;
    tv = 0;
    maxlen = 0;
    t0 = now_ns();
    for (int i = 0; i < iters; i++)
        if ((rc = merkle_consistency_proof(&m, sz[i], n, path, MERKLE_MAX_PATH, &plen)))
            die("consistency", rc);
    t = now_ns() - t0;
    gets = s.gets;
    for (int i = 0; i < iters; i++) {
        if ((rc = merkle_consistency_proof(&m, sz[i], n, path, MERKLE_MAX_PATH, &plen)))
            die("consistency", rc);
        if (plen > maxlen) maxlen = plen;
        double v0 = now_ns();
        rc = merkle_verify_consistency(sz[i], n, roots[i], root, (const uint8_t(*)[32])path, plen);
        tv += now_ns() - v0;
        if (rc) die("verify consistency", rc);
    }
    printf("consistency:  %.0f ns/proof (random old -> %llu), %.1f gets/proof, path <= %zu; "
           "verify %.0f ns\n",
           t / iters, (unsigned long long)n, (double)gets / iters, maxlen, tv / iters);

    /* consistency between two random older sizes */
    s.gets = 0;
    t0 = now_ns();
    for (int i = 0; i < iters; i++) {
        uint64_t o = 1 + splitmix() % sz[i];
        if ((rc = merkle_consistency_proof(&m, o, sz[i], path, MERKLE_MAX_PATH, &plen)))
            die("consistency", rc);
    }
    t = now_ns() - t0;
    printf("consistency:  %.0f ns/proof (random old -> random new), %.1f gets/proof\n", t / iters,
           (double)s.gets / iters);

    free(idx);
    free(sz);
    free(roots);
    for (unsigned l = 0; l < 64; l++)
        free(s.h[l]);
    return 0;
}
