/* proof_bench: inclusion proof time from the SQLite store at a large size (the log issue asks
 * under 100 us per proof at 10 M records). By hand, not in CI:
 *   proof_bench DIR [N [PROOFS [CT_BYTES]]]    defaults: 10000000 records, 10000 proofs, 64
 * DIR/store.db is created with N records through the real store code and schema
 * (hdx_store_append and merkle_append over hdx_store_merkle, in transactions of 100,000, with
 * sync off: durability is not what is measured), plus one signed tree head over all N under
 * a throwaway Ed25519 key. An existing DIR/store.db of N records is reused, so the build is
 * paid once. Records are synthetic: CT_BYTES of pseudo-random "ciphertext", real leaf and
 * chain hashes, no patient or duplicate token (proofs read neither index).
 * Then, on a read-only handle as `hdx proof` opens it, PROOFS random records each:
 *   tree:  merkle_inclusion_proof on a tree opened once (the proof's own store reads, in one
 *          read snapshot as hdx_log_inclusion_json takes),
 *   json:  hdx_log_inclusion_json, all that `hdx proof inclusion` does after opening the
 *          store: open the tree, read the newest head and the record, prove, format,
 *   fresh: the same on a store handle opened for that proof alone (cold SQLite cache, the
 *          OS page cache warm), i.e. one `hdx proof inclusion` less process start and keys.
 * Every tree proof is checked against the signed root. Prints mean, p50, p99 and max in us.
 * Build: cmake -DHDX_BENCH=ON (target proof_bench), or bench/run.sh. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"
#include "store/logproof.h"
#include "store/record.h"
#include "store/store.h"

#define TXN_RECORDS 100000

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static uint64_t sm_state = 1;

static uint64_t splitmix(void)
{
    uint64_t z = (sm_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = splitmix();
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "proof_bench: %s failed: %d (%s)\n", what, rc, hdx_strerror(rc));
    exit(1);
}

static int build(const char *path, uint64_t n, size_t ct_bytes)
{
    struct hdx_store *s = NULL;
    struct merkle m;
    struct merkle_store ms;
    struct hdx_record r;
    uint8_t *ct = malloc(ct_bytes ? ct_bytes : 1), chain[32] = {0};
    int rc;
    if (!ct) die("malloc", HDX_E_NOMEM);
    if ((rc = hdx_store_open(path, HDX_STORE_CREATE | HDX_STORE_WRITER | HDX_STORE_NOSYNC, &s)))
        die("store open", rc);
    hdx_store_merkle(s, &ms);
    if ((rc = merkle_open(&m, 0, &ms))) die("merkle open", rc);
    double t0 = now_us();
    memset(&r, 0, sizeof(r));
    r.kind = HDX_KIND_HL7V2;
    r.key_id = 1;
    snprintf(r.sender, sizeof(r.sender), "bench");
    snprintf(r.type, sizeof(r.type), "ORU^R01");
    r.ct = ct;
    r.ct_len = ct_bytes;
    for (uint64_t seq = 1; seq <= n; seq++) {
        if (seq % TXN_RECORDS == 1 && (rc = hdx_store_begin(s))) die("begin", rc);
        r.seq = seq;
        r.time_us = 1764000000000000 + (int64_t)seq;
        fill_random(r.nonce, sizeof(r.nonce));
        fill_random(ct, ct_bytes);
        hdx_record_leaf_hash(&r, r.leaf_hash);
        hdx_record_chain(chain, r.leaf_hash, r.chain);
        memcpy(chain, r.chain, 32);
        if ((rc = hdx_store_append(s, &r))) die("append", rc);
        if ((rc = merkle_append(&m, r.leaf_hash))) die("merkle append", rc);
        if ((seq % TXN_RECORDS == 0 || seq == n) && (rc = hdx_store_commit(s))) die("commit", rc);
        if (seq % 1000000 == 0)
            fprintf(stderr, "proof_bench: %llu records, %.0f s\n", (unsigned long long)seq,
                    (now_us() - t0) / 1e6);
    }
    struct hdx_sth sth = {.tree_size = n, .timestamp_ms = 1764000000000};
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key) die("keygen", HDX_E_CRYPTO);
    if ((rc = merkle_root(&m, sth.root)) || (rc = hdx_sth_sign(&sth, key)) ||
        (rc = hdx_store_sth_put(s, &sth)))
        die("signed head", rc);
    EVP_PKEY_free(key);
    hdx_store_close(s);
    free(ct);
    double secs = (now_us() - t0) / 1e6;
    struct stat st;
    printf("build:   %llu records of %zu ciphertext bytes in %.0f s (%.0f records/s), "
           "store.db %.2f GiB\n",
           (unsigned long long)n, ct_bytes, secs, (double)n / secs,
           stat(path, &st) == 0 ? (double)st.st_size / (1 << 30) : 0.0);
    return 0;
}

struct counting {
    struct merkle_store inner;
    unsigned long gets;
};

static int counting_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct counting *c = ctx;
    c->gets++;
    return c->inner.get(c->inner.ctx, level, index, out);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, double *t, int k, const char *extra)
{
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += t[i];
    qsort(t, (size_t)k, sizeof(*t), cmp_double);
    printf("%-6s mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us%s\n", name, sum / k, t[k / 2],
           t[(size_t)((double)k * 0.99)], t[k - 1], extra);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: proof_bench DIR [N [PROOFS [CT_BYTES]]]\n");
        return 2;
    }
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000u;
    int k = argc > 3 ? atoi(argv[3]) : 10000;
    size_t ct_bytes = argc > 4 ? strtoul(argv[4], NULL, 10) : 64;
    char path[4096];
    struct hdx_store *s = NULL;
    int rc;
    if (n < 2 || k < 1 || ct_bytes < HDX_TAG_LEN || ct_bytes > 65536) {
        fprintf(stderr, "proof_bench: N >= 2, PROOFS >= 1, 16 <= CT_BYTES <= 65536\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/store.db", argv[1]);
    mkdir(argv[1], 0700);
    struct stat st;
    if (stat(path, &st) == 0 && hdx_store_open(path, HDX_STORE_RDONLY, &s) == HDX_OK &&
        hdx_store_count(s) == n) {
        printf("build:   reusing %s (%llu records)\n", path, (unsigned long long)n);
    } else {
        hdx_store_close(s);
        s = NULL;
        remove(path);
        build(path, n, ct_bytes);
    }
    hdx_store_close(s);
    if ((rc = hdx_store_open(path, HDX_STORE_RDONLY, &s))) die("store open", rc);

    struct hdx_sth sth;
    struct counting cnt = {.gets = 0};
    struct merkle_store ms = {counting_get, NULL, &cnt};
    struct merkle m;
    uint8_t path_buf[MERKLE_MAX_PATH][32], leaf[32];
    size_t plen = 0;
    double *t = malloc(sizeof(double) * (size_t)k);
    uint64_t *seqs = malloc(sizeof(uint64_t) * (size_t)k);
    char *json = malloc(HDX_PROOF_JSON_MAX), why[256];
    if (!t || !seqs || !json) die("malloc", HDX_E_NOMEM);
    if ((rc = hdx_store_sth_latest(s, &sth)) || sth.tree_size != n) die("signed head", rc);
    hdx_store_merkle(s, &cnt.inner);
    ms.put = cnt.inner.put;
    if ((rc = merkle_open(&m, n, &ms))) die("merkle open", rc);
    sm_state = 12345;
    for (int i = 0; i < k; i++)
        seqs[i] = 1 + splitmix() % n;

    cnt.gets = 0;
    for (int i = 0; i < k; i++) {
        double t0 = now_us();
        if ((rc = hdx_store_read_begin(s))) die("read begin", rc);
        rc = merkle_inclusion_proof(&m, seqs[i] - 1, n, path_buf, MERKLE_MAX_PATH, &plen);
        hdx_store_read_end(s);
        t[i] = now_us() - t0;
        if (rc) die("inclusion proof", rc);
        if ((rc = cnt.inner.get(cnt.inner.ctx, 0, seqs[i] - 1, leaf)) ||
            (rc = merkle_verify_inclusion(leaf, seqs[i] - 1, n, (const uint8_t(*)[32])path_buf,
                                          plen, sth.root)))
            die("proof check", rc);
    }
    char extra[96];
    snprintf(extra, sizeof(extra), "; %.1f store reads per proof, path %zu", (double)cnt.gets / k,
             plen);
    report("tree:", t, k, extra);

    for (int i = 0; i < k; i++) {
        double t0 = now_us();
        rc = hdx_log_inclusion_json(s, seqs[i], json, HDX_PROOF_JSON_MAX, why, sizeof(why));
        t[i] = now_us() - t0;
        if (rc < 0) die(why, rc);
    }
    report("json:", t, k, "");
    hdx_store_close(s);

    int kf = k < 2000 ? k : 2000; /* each pays an open: fewer suffice */
    for (int i = 0; i < kf; i++) {
        double t0 = now_us();
        if ((rc = hdx_store_open(path, HDX_STORE_RDONLY, &s))) die("store open", rc);
        rc = hdx_log_inclusion_json(s, seqs[i], json, HDX_PROOF_JSON_MAX, why, sizeof(why));
        hdx_store_close(s);
        t[i] = now_us() - t0;
        if (rc < 0) die(why, rc);
    }
    report("fresh:", t, kf, " (store opened per proof)");
    free(t);
    free(seqs);
    free(json);
    return 0;
}
