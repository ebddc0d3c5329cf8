/* test_merkle: RFC 9162 (CT v2) 2.1 Merkle tree over stored perfect subtrees (DESIGN M5).
 * Proves, against a naive recursive reference written straight from RFC 9162 2.1.1 (MTH),
 * 2.1.3.1 (PATH) and 2.1.4.1 (PROOF/SUBPROOF) with its own SHA-256 calls:
 *  - roots for every size 0..300, and merkle_root_at for every older size;
 *  - known answers computed independently with Python hashlib (sizes 1, 2, 3, 7, 8; one
 *    inclusion path, two consistency proofs);
 *  - inclusion and consistency proofs equal the reference (exhaustive up to size 64,
 *    sampled up to 300) and verify (RFC 9162 2.1.3.2, 2.1.4.2);
 *  - rejection of every single-bit flip of a proof element, leaf or root, of wrong indexes
 *    and sizes, truncated and extended proofs, index >= size, old > new, old == 0;
 *  - reopening from the store at any size costs popcount(size) <= 64 gets and continuing to
 *    append gives identical roots and identical stored nodes (no rehashing on restart);
 *  - get/put counts: amortised puts, O(log n) gets per proof, no get for merkle_root;
 *  - store failures leave the tree unchanged and retrying works; argument checks;
 *  - overflow-safe arithmetic at sizes up to 2^64 - 1, on a tree of identical leaves
 *    whose perfect subtrees are known in closed form, including the 64- and 65-hash paths.
 * merkle.c is included rather than linked, so this test builds from tests/unit alone. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "merkle/merkle.h"

#define NMAX 300
#define HL MERKLE_HASH_LEN

/* ---------- an independent SHA-256 (streaming EVP, not the module's one-shot) ---------- */

static void sha3p(uint8_t out[32], const void *a, size_t alen, const void *b, size_t blen,
                  const void *c, size_t clen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    if (alen) assert_int_equal(EVP_DigestUpdate(ctx, a, alen), 1);
    if (blen) assert_int_equal(EVP_DigestUpdate(ctx, b, blen), 1);
    if (clen) assert_int_equal(EVP_DigestUpdate(ctx, c, clen), 1);
    assert_int_equal(EVP_DigestFinal_ex(ctx, out, &len), 1);
    assert_int_equal(len, 32);
    EVP_MD_CTX_free(ctx);
}

static void ref_node(uint8_t out[32], const uint8_t l[32], const uint8_t r[32])
{
    static const uint8_t one = 0x01;
    uint8_t t[HL];
    sha3p(t, &one, 1, l, HL, r, HL);
    memcpy(out, t, HL);
}

static void from_hex(const char *hex, uint8_t out[32])
{
    assert_int_equal(strlen(hex), 64);
    for (size_t i = 0; i < HL; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* ---------- fixtures: leaves, reference roots, the identical-leaf tree ---------- */

static uint8_t L[NMAX + 1][HL]; /* L[i] = SHA-256(0x00 || le64(i)) */
static uint8_t R[NMAX + 1][HL]; /* R[n] = reference MTH(D[0:n]) */
static uint8_t U[64][HL];       /* U[l] = MTH of 2^l copies of U[0] */
static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) /* xorshift64*, fixed seed: failures reproduce */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1du;
}

/* ---------- reference, straight from RFC 9162 2.1.1 - 2.1.4.1 (recursive) ----------
 * D[lo:lo+n] of either the L leaves or (uniform) the identical-leaf tree, where a perfect
 * subtree is taken from U so that sizes near 2^64 stay computable. */
struct ref {
    int uniform;
};

static uint64_t ref_k(uint64_t n) /* largest power of two smaller than n, n > 1 */
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

static void ref_mth(const struct ref *r, uint64_t lo, uint64_t n, uint8_t out[32])
{
    if (n == 0) {
        sha3p(out, NULL, 0, NULL, 0, NULL, 0);
    } else if (n == 1) {
        memcpy(out, r->uniform ? U[0] : L[lo], HL);
    } else if (r->uniform && (n & (n - 1)) == 0) {
        memcpy(out, U[__builtin_ctzll(n)], HL);
    } else {
        uint8_t a[HL], b[HL];
        uint64_t k = ref_k(n);
        ref_mth(r, lo, k, a);
        ref_mth(r, lo + k, n - k, b);
        ref_node(out, a, b);
    }
}

/* PATH(m, D[lo:lo+n]) appended to out. */
static void ref_path(const struct ref *r, uint64_t m, uint64_t lo, uint64_t n, uint8_t out[][32],
                     size_t *len)
{
    if (n <= 1) return;
    uint64_t k = ref_k(n);
    if (m < k) {
        ref_path(r, m, lo, k, out, len);
        ref_mth(r, lo + k, n - k, out[(*len)++]);
    } else {
        ref_path(r, m - k, lo + k, n - k, out, len);
        ref_mth(r, lo, k, out[(*len)++]);
    }
}

/* SUBPROOF(m, D[lo:lo+n], b) appended to out. */
static void ref_subproof(const struct ref *r, uint64_t m, uint64_t lo, uint64_t n, int b,
                         uint8_t out[][32], size_t *len)
{
    if (m == n) {
        if (!b) ref_mth(r, lo, n, out[(*len)++]);
        return;
    }
    uint64_t k = ref_k(n);
    if (m <= k) {
        ref_subproof(r, m, lo, k, b, out, len);
        ref_mth(r, lo + k, n - k, out[(*len)++]);
    } else {
        ref_subproof(r, m - k, lo + k, n - k, 0, out, len);
        ref_mth(r, lo, k, out[(*len)++]);
    }
}

static const struct ref REF = {0}, REF_U = {1};

/* ---------- an in-memory store with counters and fault injection ---------- */

struct memstore {
    struct {
        uint8_t (*h)[HL];
        uint8_t *set;
        uint64_t cap;
    } lv[64];
    unsigned long gets, puts;
    unsigned long fail_get_in, fail_put_in; /* fail the n-th call from now; 0: never */
    int fail_rc;
};

static int ms_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct memstore *s = ctx;
    s->gets++;
    if (s->fail_get_in && --s->fail_get_in == 0) return s->fail_rc;
    assert_true(level < 64);
    if (index >= s->lv[level].cap || !s->lv[level].set[index]) return HDX_E_NOTFOUND;
    memcpy(out, s->lv[level].h[index], HL);
    return 0;
}

static int ms_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct memstore *s = ctx;
    s->puts++;
    if (s->fail_put_in && --s->fail_put_in == 0) return s->fail_rc;
    assert_true(level < 64);
    if (index >= s->lv[level].cap) {
        uint64_t cap = s->lv[level].cap ? s->lv[level].cap : 8;
        while (cap <= index)
            cap *= 2;
        s->lv[level].h = realloc(s->lv[level].h, cap * HL);
        s->lv[level].set = realloc(s->lv[level].set, cap);
        assert_non_null(s->lv[level].h);
        assert_non_null(s->lv[level].set);
        memset(s->lv[level].set + s->lv[level].cap, 0, cap - s->lv[level].cap);
        s->lv[level].cap = cap;
    }
    memcpy(s->lv[level].h[index], hash, HL);
    s->lv[level].set[index] = 1;
    return 0;
}

static void ms_free(struct memstore *s)
{
    for (unsigned l = 0; l < 64; l++) {
        free(s->lv[l].h);
        free(s->lv[l].set);
    }
    memset(s, 0, sizeof *s);
}

static struct merkle_store ms_iface(struct memstore *s)
{
    struct merkle_store st = {ms_get, ms_put, s};
    return st;
}

/* dst = the nodes of src that are complete in a tree of `size` leaves: what a store holds
 * after a clean shutdown at that size. */
static void ms_clone_prefix(struct memstore *dst, struct memstore *src, uint64_t size)
{
    memset(dst, 0, sizeof *dst);
    for (unsigned l = 0; l < 64; l++)
        for (uint64_t i = 0; i < (size >> l); i++) {
            assert_true(i < src->lv[l].cap && src->lv[l].set[i]);
            ms_put(dst, l, i, src->lv[l].h[i]);
        }
    dst->puts = 0;
}

static void ms_assert_equal(const struct memstore *a, const struct memstore *b)
{
    for (unsigned l = 0; l < 64; l++) {
        uint64_t cap = a->lv[l].cap > b->lv[l].cap ? a->lv[l].cap : b->lv[l].cap;
        for (uint64_t i = 0; i < cap; i++) {
            int sa = i < a->lv[l].cap && a->lv[l].set[i];
            int sb = i < b->lv[l].cap && b->lv[l].set[i];
            assert_int_equal(sa, sb);
            if (sa) assert_memory_equal(a->lv[l].h[i], b->lv[l].h[i], HL);
        }
    }
}

/* Builds the tree of n leaves L[0..n) in s. */
static void build(struct merkle *m, struct memstore *s, uint64_t n)
{
    struct merkle_store st = ms_iface(s);
    memset(s, 0, sizeof *s);
    assert_int_equal(merkle_open(m, 0, &st), 0);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(merkle_append(m, L[i]), 0);
}

static int popcount(uint64_t x)
{
    return __builtin_popcountll(x);
}

static int group_setup(void **state)
{
    (void)state;
    uint8_t zero = 0x00;
    for (uint64_t i = 0; i <= NMAX; i++) {
        uint8_t le[8];
        for (unsigned j = 0; j < 8; j++)
            le[j] = (uint8_t)(i >> (8 * j));
        sha3p(L[i], &zero, 1, le, 8, NULL, 0);
    }
    for (uint64_t n = 0; n <= NMAX; n++)
        ref_mth(&REF, 0, n, R[n]);
    uint8_t byte = 0x2a;
    sha3p(U[0], &zero, 1, &byte, 1, NULL, 0);
    for (unsigned l = 1; l < 64; l++)
        ref_node(U[l], U[l - 1], U[l - 1]);
    return 0;
}

/* ---------- known answers ----------
 * Leaf i's hash is SHA-256(0x00 || byte i). Computed once with /usr/bin/python3 and hashlib
 * by a separate recursive transcription of RFC 9162 2.1.1 - 2.1.4.1:
 *   H = lambda b: hashlib.sha256(b).digest()
 *   mth(d) = H(b'') if not d else d[0] if len(d) == 1 else H(b'\x01' + mth(d[:k]) + mth(d[k:]))
 * with k the largest power of two below len(d), and PATH / SUBPROOF likewise. */

static void test_known_answers(void **state)
{
    (void)state;
    static const struct {
        uint64_t n;
        const char *root;
    } kat[] = {
        {1, "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"},
        {2, "a20bf9a7cc2dc8a08f5f415a71b19f6ac427bab54d24eec868b5d3103449953a"},
        {3, "3b6cccd7e3e023ff393006f030315ee7ad9eb111b022b41fba7e5b7a3973f688"},
        {7, "3560191803028444b232018ac047fdb561c09c23a7a6876c85e08b5e4d48e9f3"},
        {8, "ef7f49b620f6c7ea9b963a214da34b5021c6ded8ed57734380a311ab726aa907"},
    };
    static const char *path_2_in_7[] = {
        "583c7dfb7b3055d99465544032a571e10a134b1b6f769422bbb71fd7fa167a5d",
        "a20bf9a7cc2dc8a08f5f415a71b19f6ac427bab54d24eec868b5d3103449953a",
        "89c929834ed1459b07f65b5e1a2143a8cf5d8efdf30f49ffffa328bb1d9133bb",
    };
    static const char *proof_3_7[] = {
        "fcf0a6c700dd13e274b6fba8deea8dd9b26e4eedde3495717cac8408c9c5177f",
        "583c7dfb7b3055d99465544032a571e10a134b1b6f769422bbb71fd7fa167a5d",
        "a20bf9a7cc2dc8a08f5f415a71b19f6ac427bab54d24eec868b5d3103449953a",
        "89c929834ed1459b07f65b5e1a2143a8cf5d8efdf30f49ffffa328bb1d9133bb",
    };
    static const char *proof_4_7[] = {
        "89c929834ed1459b07f65b5e1a2143a8cf5d8efdf30f49ffffa328bb1d9133bb",
    };
    struct memstore s;
    struct merkle_store st = ms_iface(&s);
    struct merkle m;
    uint8_t leaf[8][HL], want[HL], got[HL], path[MERKLE_MAX_PATH][HL], roots[9][HL];
    size_t n;

    memset(&s, 0, sizeof s);
    assert_int_equal(merkle_open(&m, 0, &st), 0);
    from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    assert_int_equal(merkle_root(&m, got), 0);
    assert_memory_equal(got, want, HL);
    for (uint8_t i = 0; i < 8; i++) {
        uint8_t in[2] = {0x00, i};
        sha3p(leaf[i], in, 2, NULL, 0, NULL, 0);
        assert_int_equal(merkle_append(&m, leaf[i]), 0);
        assert_int_equal(merkle_root(&m, roots[i + 1]), 0);
    }
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        from_hex(kat[i].root, want);
        assert_memory_equal(roots[kat[i].n], want, HL);
        assert_int_equal(merkle_root_at(&m, kat[i].n, got), 0);
        assert_memory_equal(got, want, HL);
    }
    assert_int_equal(merkle_inclusion_proof(&m, 2, 7, path, MERKLE_MAX_PATH, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        from_hex(path_2_in_7[i], want);
        assert_memory_equal(path[i], want, HL);
    }
    assert_int_equal(
        merkle_verify_inclusion(leaf[2], 2, 7, (const uint8_t(*)[32])path, n, roots[7]), 0);
    assert_int_equal(merkle_consistency_proof(&m, 3, 7, path, MERKLE_MAX_PATH, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        from_hex(proof_3_7[i], want);
        assert_memory_equal(path[i], want, HL);
    }
    assert_int_equal(
        merkle_verify_consistency(3, 7, roots[3], roots[7], (const uint8_t(*)[32])path, n), 0);
    assert_int_equal(merkle_consistency_proof(&m, 4, 7, path, MERKLE_MAX_PATH, &n), 0);
    assert_int_equal(n, 1);
    from_hex(proof_4_7[0], want);
    assert_memory_equal(path[0], want, HL);
    assert_int_equal(
        merkle_verify_consistency(4, 7, roots[4], roots[7], (const uint8_t(*)[32])path, n), 0);
    ms_free(&s);
}

/* ---------- roots ---------- */

static void test_roots_every_size(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle_store st = ms_iface(&s);
    struct merkle m;
    uint8_t got[HL];

    memset(&s, 0, sizeof s);
    assert_int_equal(merkle_open(&m, 0, &st), 0);
    for (uint64_t n = 0; n <= NMAX; n++) {
        assert_int_equal(merkle_size(&m), n);
        s.gets = 0;
        assert_int_equal(merkle_root(&m, got), 0);
        assert_memory_equal(got, R[n], HL);
        assert_int_equal(merkle_root_at(&m, n, got), 0); /* all frontier: no get */
        assert_memory_equal(got, R[n], HL);
        assert_int_equal(s.gets, 0);
        if (n > 0) {
            uint64_t o = rnd() % n;
            s.gets = 0;
            assert_int_equal(merkle_root_at(&m, o, got), 0);
            assert_memory_equal(got, R[o], HL);
            assert_true(s.gets <= (unsigned long)popcount(o));
        }
        if (n == NMAX) break;
        unsigned long before = s.puts;
        s.gets = 0;
        assert_int_equal(merkle_append(&m, L[n]), 0);
        /* 1 + trailing ones of the old size, and never a get */
        assert_int_equal(s.puts - before, 1 + (unsigned long)__builtin_ctzll(~n));
        assert_int_equal(s.gets, 0);
    }
    /* every perfect subtree stored exactly once: sum over levels of floor(n / 2^l) */
    unsigned long nodes = 0;
    for (unsigned l = 0; l < 64; l++)
        nodes += (unsigned long)((uint64_t)NMAX >> l);
    assert_int_equal(s.puts, nodes);
    assert_true(s.puts < 2 * NMAX);
    for (uint64_t o = 0; o <= NMAX; o++) {
        assert_int_equal(merkle_root_at(&m, o, got), 0);
        assert_memory_equal(got, R[o], HL);
    }
    assert_int_equal(merkle_root_at(&m, NMAX + 1, got), HDX_E_INVAL);
    ms_free(&s);
}

/* ---------- inclusion ---------- */

static int same_path(const uint8_t a[][32], size_t an, const uint8_t b[][32], size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an * HL) == 0);
}

static void inclusion_negatives(uint64_t i, uint64_t s, const uint8_t path[][32], size_t n)
{
    uint8_t p[MERKLE_MAX_PATH + 1][HL], x[HL], ref[MERKLE_MAX_PATH][HL];
    const uint8_t(*cp)[32] = (const uint8_t(*)[32])p;

    /* every single-bit flip of every proof element, of the leaf and of the root */
    for (size_t e = 0; e < n; e++)
        for (unsigned bit = 0; bit < 256; bit++) {
            memcpy(p, path, n * HL);
            p[e][bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(merkle_verify_inclusion(L[i], i, s, cp, n, R[s]), HDX_E_INTEGRITY);
        }
    for (unsigned bit = 0; bit < 256; bit++) {
        memcpy(x, L[i], HL);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(merkle_verify_inclusion(x, i, s, path, n, R[s]), HDX_E_INTEGRITY);
        memcpy(x, R[s], HL);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(merkle_verify_inclusion(L[i], i, s, path, n, x), HDX_E_INTEGRITY);
    }
    /* wrong index, with this leaf or with the leaf really at that index */
    for (uint64_t j = 0; j < s; j++) {
        if (j == i) continue;
        assert_int_equal(merkle_verify_inclusion(L[i], j, s, path, n, R[s]), HDX_E_INTEGRITY);
        assert_int_equal(merkle_verify_inclusion(L[j], j, s, path, n, R[s]), HDX_E_INTEGRITY);
    }
    /* index >= size, empty tree */
    assert_int_equal(merkle_verify_inclusion(L[i], s, s, path, n, R[s]), HDX_E_INVAL);
    assert_int_equal(merkle_verify_inclusion(L[i], UINT64_MAX, s, path, n, R[s]), HDX_E_INVAL);
    assert_int_equal(merkle_verify_inclusion(L[i], 0, 0, path, n, R[0]), HDX_E_INVAL);
    /* wrong size (with the signed root of that size): accepted only where the genuine
     * proof for that size is byte-for-byte this one */
    for (uint64_t s2 = i + 1; s2 <= NMAX && s2 <= 2 * s + 4; s2++) {
        if (s2 == s) continue;
        size_t rn = 0;
        ref_path(&REF, i, 0, s2, ref, &rn);
        int want = same_path(path, n, (const uint8_t(*)[32])ref, rn) ? 0 : HDX_E_INTEGRITY;
        assert_int_equal(merkle_verify_inclusion(L[i], i, s2, path, n, R[s2]), want);
    }
    /* truncated at either end, extended at either end */
    if (n > 0) {
        assert_int_equal(merkle_verify_inclusion(L[i], i, s, path, n - 1, R[s]), HDX_E_INTEGRITY);
        assert_int_equal(merkle_verify_inclusion(L[i], i, s, path + 1, n - 1, R[s]),
                         HDX_E_INTEGRITY);
    }
    memcpy(p, path, n * HL);
    memset(p[n], 0, HL);
    assert_int_equal(merkle_verify_inclusion(L[i], i, s, cp, n + 1, R[s]), HDX_E_INTEGRITY);
    if (n > 0) {
        memcpy(p[n], path[n - 1], HL);
        assert_int_equal(merkle_verify_inclusion(L[i], i, s, cp, n + 1, R[s]), HDX_E_INTEGRITY);
    }
    memcpy(p[0], L[i], HL);
    memcpy(p + 1, path, n * HL);
    assert_int_equal(merkle_verify_inclusion(L[i], i, s, cp, n + 1, R[s]), HDX_E_INTEGRITY);
}

static void check_inclusion(const struct merkle *m, struct memstore *st, uint64_t i, uint64_t s,
                            int negatives)
{
    uint8_t path[MERKLE_MAX_PATH][HL], ref[MERKLE_MAX_PATH][HL];
    size_t n = 99, rn = 0;

    st->gets = 0;
    assert_int_equal(merkle_inclusion_proof(m, i, s, path, MERKLE_MAX_PATH, &n), 0);
    ref_path(&REF, i, 0, s, ref, &rn);
    assert_int_equal(n, rn);
    if (n) assert_memory_equal(path, ref, n * HL);
    /* one get per perfect sibling; the one partial sibling at the right edge, D[lo+k:s] with
     * lo + k a multiple of k, costs popcount(s mod k) <= popcount(s) */
    assert_true(st->gets <= n + (unsigned long)popcount(s));
    const uint8_t(*cp)[32] = (const uint8_t(*)[32])path;
    assert_int_equal(merkle_verify_inclusion(L[i], i, s, cp, n, R[s]), 0);
    if (negatives) inclusion_negatives(i, s, cp, n);
}

static void test_inclusion(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle m;

    build(&m, &s, NMAX);
    for (uint64_t size = 1; size <= 64; size++)
        for (uint64_t i = 0; i < size; i++)
            check_inclusion(&m, &s, i, size, size <= 16);
    for (int t = 0; t < 3000; t++) {
        uint64_t size = 65 + rnd() % (NMAX - 64);
        uint64_t i = rnd() % size;
        check_inclusion(&m, &s, i, size, t % 60 == 0);
    }
    static const uint64_t edge[] = {127, 128, 129, 255, 256, 257, 299, 300};
    for (size_t e = 0; e < sizeof edge / sizeof edge[0]; e++) {
        check_inclusion(&m, &s, 0, edge[e], 1);
        check_inclusion(&m, &s, edge[e] - 1, edge[e], 1);
        check_inclusion(&m, &s, edge[e] / 2, edge[e], 0);
    }
    ms_free(&s);
}

/* ---------- consistency ---------- */

static int ref_consistency(uint64_t o, uint64_t s, uint8_t out[][32], size_t *n)
{
    *n = 0;
    ref_subproof(&REF, o, 0, s, 1, out, n);
    return 0;
}

static void consistency_negatives(uint64_t o, uint64_t s, const uint8_t path[][32], size_t n)
{
    uint8_t p[MERKLE_MAX_PATH + 1][HL], x[HL], ref[MERKLE_MAX_PATH + 1][HL];
    const uint8_t(*cp)[32] = (const uint8_t(*)[32])p;
    size_t rn;

    for (size_t e = 0; e < n; e++)
        for (unsigned bit = 0; bit < 256; bit++) {
            memcpy(p, path, n * HL);
            p[e][bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], cp, n), HDX_E_INTEGRITY);
        }
    for (unsigned bit = 0; bit < 256; bit++) {
        memcpy(x, R[o], HL);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(merkle_verify_consistency(o, s, x, R[s], path, n), HDX_E_INTEGRITY);
        memcpy(x, R[s], HL);
        x[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(merkle_verify_consistency(o, s, R[o], x, path, n), HDX_E_INTEGRITY);
    }
    /* swapped roots, old > new, old == 0 */
    assert_int_equal(merkle_verify_consistency(o, s, R[s], R[o], path, n), HDX_E_INTEGRITY);
    assert_int_equal(merkle_verify_consistency(s, o, R[s], R[o], path, n), HDX_E_INVAL);
    assert_int_equal(merkle_verify_consistency(0, s, R[0], R[s], path, n), HDX_E_INVAL);
    assert_int_equal(merkle_verify_consistency(0, s, R[0], R[s], NULL, 0), HDX_E_INVAL);
    /* wrong sizes (with the genuine roots of those sizes): accepted only where the genuine
     * proof for those sizes is byte-for-byte this one */
    uint64_t lo = o > 9 ? o - 8 : 1, hi = s + 8 > NMAX ? NMAX : s + 8;
    for (uint64_t o2 = lo; o2 <= o + 8 && o2 <= s; o2++) {
        if (o2 == o) continue;
        ref_consistency(o2, s, ref, &rn);
        int want = same_path(path, n, (const uint8_t(*)[32])ref, rn) ? 0 : HDX_E_INTEGRITY;
        assert_int_equal(merkle_verify_consistency(o2, s, R[o2], R[s], path, n), want);
    }
    for (uint64_t s2 = s > o + 8 ? s - 8 : o; s2 <= hi; s2++) {
        if (s2 == s) continue;
        ref_consistency(o, s2, ref, &rn);
        int want = same_path(path, n, (const uint8_t(*)[32])ref, rn) ? 0 : HDX_E_INTEGRITY;
        assert_int_equal(merkle_verify_consistency(o, s2, R[o], R[s2], path, n), want);
    }
    /* truncated at either end, extended at either end */
    if (n > 0) {
        assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], path, n - 1), HDX_E_INTEGRITY);
        assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], path + 1, n - 1),
                         HDX_E_INTEGRITY);
    }
    memcpy(p, path, n * HL);
    memset(p[n], 0, HL);
    assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], cp, n + 1), HDX_E_INTEGRITY);
    if (n > 0) {
        memcpy(p[n], path[n - 1], HL);
        assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], cp, n + 1), HDX_E_INTEGRITY);
    }
    memcpy(p[0], R[o], HL); /* a client prepending first_hash itself */
    memcpy(p + 1, path, n * HL);
    assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], cp, n + 1), HDX_E_INTEGRITY);
}

static void check_consistency(const struct merkle *m, struct memstore *st, uint64_t o, uint64_t s,
                              int negatives)
{
    uint8_t path[MERKLE_MAX_PATH][HL], ref[MERKLE_MAX_PATH][HL];
    size_t n = 99, rn = 0;

    st->gets = 0;
    assert_int_equal(merkle_consistency_proof(m, o, s, path, MERKLE_MAX_PATH, &n), 0);
    ref_consistency(o, s, ref, &rn);
    assert_int_equal(n, rn);
    if (n) assert_memory_equal(path, ref, n * HL);
    assert_true(st->gets <= n + (unsigned long)popcount(s)); /* as for inclusion */
    const uint8_t(*cp)[32] = (const uint8_t(*)[32])path;
    assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], cp, n), 0);
    if (o == s) {
        assert_int_equal(n, 0);
        assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], NULL, 0), 0);
        if (s > 1)
            assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s - 1], NULL, 0),
                             HDX_E_INTEGRITY);
        assert_int_equal(merkle_verify_consistency(o, s, R[o], R[s], (const uint8_t(*)[32])R, 1),
                         HDX_E_INTEGRITY);
        return;
    }
    if (negatives) consistency_negatives(o, s, cp, n);
}

static void test_consistency(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle m;

    build(&m, &s, NMAX);
    for (uint64_t size = 1; size <= 64; size++)
        for (uint64_t o = 1; o <= size; o++)
            check_consistency(&m, &s, o, size, size <= 16);
    for (int t = 0; t < 3000; t++) {
        uint64_t size = 65 + rnd() % (NMAX - 64);
        uint64_t o = 1 + rnd() % size;
        check_consistency(&m, &s, o, size, t % 60 == 0);
    }
    static const uint64_t edge[][2] = {{1, 300},   {128, 300}, {129, 300}, {255, 256},
                                       {256, 257}, {299, 300}, {64, 128},  {127, 129}};
    for (size_t e = 0; e < sizeof edge / sizeof edge[0]; e++)
        check_consistency(&m, &s, edge[e][0], edge[e][1], 1);
    ms_free(&s);
}

/* ---------- restart: reopen from the store ---------- */

static void reopen_and_continue(struct memstore *full, uint64_t k, int prefix_only)
{
    struct memstore part, *s = full;
    struct merkle m;
    uint8_t got[HL];

    if (prefix_only) {
        ms_clone_prefix(&part, full, k);
        s = &part;
    }
    struct merkle_store st = ms_iface(s);
    s->gets = 0;
    assert_int_equal(merkle_open(&m, k, &st), 0);
    assert_int_equal(s->gets, (unsigned long)popcount(k));
    assert_true(s->gets <= 64);
    assert_int_equal(merkle_root(&m, got), 0);
    assert_memory_equal(got, R[k], HL);
    for (uint64_t i = k; i < NMAX; i++) {
        assert_int_equal(merkle_append(&m, L[i]), 0);
        assert_int_equal(merkle_root(&m, got), 0);
        assert_memory_equal(got, R[i + 1], HL);
    }
    assert_int_equal(s->gets, (unsigned long)popcount(k)); /* appending never reads */
    if (prefix_only) {
        ms_assert_equal(&part, full); /* the rebuilt store holds exactly the same nodes */
        check_inclusion(&m, &part, k / 3, NMAX, 0);
        check_consistency(&m, &part, k ? k : 1, NMAX, 0);
        ms_free(&part);
    }
}

static void test_reopen(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle m;

    build(&m, &s, NMAX);
    for (uint64_t k = 0; k <= 40; k++)
        reopen_and_continue(&s, k, 1);
    for (int t = 0; t < 40; t++)
        reopen_and_continue(&s, rnd() % (NMAX + 1), 1);
    /* a store that also holds nodes beyond k (written but size not persisted): the
     * re-appends overwrite them with identical values */
    for (int t = 0; t < 20; t++)
        reopen_and_continue(&s, rnd() % (NMAX + 1), 0);
    reopen_and_continue(&s, NMAX, 1);
    ms_free(&s);
}

/* ---------- failures and argument checks ---------- */

static void test_store_failures(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle m, m2;
    uint8_t got[HL], path[MERKLE_MAX_PATH][HL];
    size_t n;

    /* an append at size 7 puts 4 nodes; fail each one in turn */
    for (unsigned long f = 1; f <= 4; f++) {
        build(&m, &s, 7);
        s.fail_put_in = f;
        s.fail_rc = HDX_E_IO;
        assert_int_equal(merkle_append(&m, L[7]), HDX_E_IO);
        assert_int_equal(merkle_size(&m), 7);
        assert_int_equal(merkle_root(&m, got), 0);
        assert_memory_equal(got, R[7], HL);
        assert_int_equal(merkle_append(&m, L[7]), 0); /* retry */
        assert_int_equal(merkle_root(&m, got), 0);
        assert_memory_equal(got, R[8], HL);
        ms_free(&s);
    }
    /* a positive callback return is a store error */
    build(&m, &s, 5);
    s.fail_put_in = 1;
    s.fail_rc = 1;
    assert_int_equal(merkle_append(&m, L[5]), HDX_E_STORE);
    assert_int_equal(merkle_size(&m), 5);

    /* failed open: the tree is unusable, not silently empty */
    struct merkle_store st = ms_iface(&s);
    s.fail_get_in = 2;
    s.fail_rc = HDX_E_IO;
    assert_int_equal(merkle_open(&m2, 5, &st), HDX_E_IO); /* 5 = 101b: two gets */
    assert_int_equal(merkle_size(&m2), 0);
    assert_int_equal(merkle_append(&m2, L[0]), HDX_E_INVAL);
    assert_int_equal(merkle_root(&m2, got), HDX_E_INVAL);
    assert_int_equal(merkle_inclusion_proof(&m2, 0, 1, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    /* a missing node surfaces as the store's error */
    assert_int_equal(merkle_open(&m2, 6, &st), HDX_E_NOTFOUND);

    /* get failure inside proofs */
    ms_free(&s);
    build(&m, &s, 100);
    s.fail_get_in = 1;
    s.fail_rc = HDX_E_IO;
    assert_int_equal(merkle_inclusion_proof(&m, 3, 77, path, MERKLE_MAX_PATH, &n), HDX_E_IO);
    assert_int_equal(n, 0);
    s.fail_get_in = 2;
    assert_int_equal(merkle_consistency_proof(&m, 3, 77, path, MERKLE_MAX_PATH, &n), HDX_E_IO);
    assert_int_equal(n, 0);
    s.fail_get_in = 1;
    assert_int_equal(merkle_root_at(&m, 77, got), HDX_E_IO);
    s.fail_get_in = 0;
    ms_free(&s);
}

static void test_arguments(void **state)
{
    (void)state;
    struct memstore s;
    struct merkle m;
    uint8_t got[HL], path[MERKLE_MAX_PATH][HL];
    size_t n;

    build(&m, &s, 100);
    struct merkle_store st = ms_iface(&s), half = {ms_get, NULL, &s};
    assert_int_equal(merkle_open(NULL, 0, &st), HDX_E_INVAL);
    assert_int_equal(merkle_open(&m, 0, NULL), HDX_E_INVAL);
    assert_int_equal(merkle_open(&m, 0, &half), HDX_E_INVAL);
    assert_int_equal(merkle_open(&m, 100, &st), 0);
    assert_int_equal(merkle_append(&m, NULL), HDX_E_INVAL);
    assert_int_equal(merkle_root(&m, NULL), HDX_E_INVAL);
    assert_int_equal(merkle_size(NULL), 0);

    /* proof generation: index >= size, size > current, old == 0, old > new */
    assert_int_equal(merkle_inclusion_proof(&m, 5, 5, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    assert_int_equal(merkle_inclusion_proof(&m, 0, 101, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    assert_int_equal(merkle_inclusion_proof(&m, 0, 0, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    assert_int_equal(merkle_inclusion_proof(&m, 0, 1, path, MERKLE_MAX_PATH, NULL), HDX_E_INVAL);
    assert_int_equal(merkle_consistency_proof(&m, 0, 5, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    assert_int_equal(merkle_consistency_proof(&m, 6, 5, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    assert_int_equal(merkle_consistency_proof(&m, 5, 101, path, MERKLE_MAX_PATH, &n), HDX_E_INVAL);
    /* a single-leaf tree has an empty inclusion path and needs no buffer */
    assert_int_equal(merkle_inclusion_proof(&m, 0, 1, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(merkle_verify_inclusion(L[0], 0, 1, NULL, 0, R[1]), 0);

    /* capacity: HDX_E_TOOBIG with the needed length, and no store read */
    s.gets = 0;
    assert_int_equal(merkle_inclusion_proof(&m, 3, 100, path, 2, &n), HDX_E_TOOBIG);
    assert_int_equal(n, 7);
    assert_int_equal(merkle_consistency_proof(&m, 3, 100, path, 1, &n), HDX_E_TOOBIG);
    assert_true(n > 1);
    assert_int_equal(s.gets, 0);
    assert_int_equal(merkle_inclusion_proof(&m, 3, 100, path, 6, &n), HDX_E_TOOBIG);
    assert_int_equal(n, 7);
    assert_int_equal(s.gets, 0);
    assert_int_equal(merkle_inclusion_proof(&m, 3, 100, path, 7, &n), 0);
    assert_int_equal(n, 7);
    size_t need = 0;
    assert_int_equal(merkle_consistency_proof(&m, 3, 100, path, 0, &need), HDX_E_TOOBIG);
    assert_int_equal(merkle_consistency_proof(&m, 3, 100, path, need - 1, &n), HDX_E_TOOBIG);
    assert_int_equal(n, need);
    assert_int_equal(merkle_consistency_proof(&m, 3, 100, path, need, &n), 0);
    assert_int_equal(n, need);

    /* verification argument checks */
    assert_int_equal(merkle_verify_inclusion(NULL, 0, 1, NULL, 0, R[1]), HDX_E_INVAL);
    assert_int_equal(merkle_verify_inclusion(L[0], 0, 1, NULL, 0, NULL), HDX_E_INVAL);
    assert_int_equal(merkle_verify_inclusion(L[0], 0, 2, NULL, 1, R[2]), HDX_E_INVAL);
    assert_int_equal(merkle_verify_consistency(1, 2, NULL, R[2], path, 1), HDX_E_INVAL);
    /* 2.1.4.2 step 1: an empty path fails, whether or not old_size is a power of two */
    assert_int_equal(merkle_verify_consistency(1, 2, R[1], R[2], NULL, 0), HDX_E_INTEGRITY);
    assert_int_equal(merkle_verify_consistency(3, 7, R[3], R[7], NULL, 0), HDX_E_INTEGRITY);
    assert_int_equal(merkle_verify_consistency(4, 7, R[4], R[7], (const uint8_t(*)[32])path, 0),
                     HDX_E_INTEGRITY);
    /* a huge claimed path is refused after at most 64 steps, not walked */
    static uint8_t big[1000][HL];
    assert_int_equal(merkle_verify_inclusion(L[0], 0, 100, (const uint8_t(*)[32])big, 1000, R[100]),
                     HDX_E_INTEGRITY);
    assert_int_equal(
        merkle_verify_consistency(3, 100, R[3], R[100], (const uint8_t(*)[32])big, 1000),
        HDX_E_INTEGRITY);
    (void)got;
    ms_free(&s);
}

/* ---------- sizes up to 2^64 - 1, on the identical-leaf tree ---------- */

struct ustore {
    unsigned long gets, puts;
};

static int us_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct ustore *u = ctx;
    (void)index;
    u->gets++;
    assert_true(level < 64);
    memcpy(out, U[level], HL);
    return 0;
}

static int us_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct ustore *u = ctx;
    (void)index;
    u->puts++;
    assert_true(level < 64);
    assert_memory_equal(hash, U[level], HL); /* appends compute the true subtree roots */
    return 0;
}

static void huge_inclusion(const struct merkle *m, struct ustore *u, uint64_t i, uint64_t s,
                           uint8_t root[32])
{
    uint8_t path[MERKLE_MAX_PATH][HL], ref[MERKLE_MAX_PATH][HL];
    size_t n, rn = 0;

    u->gets = 0;
    assert_int_equal(merkle_inclusion_proof(m, i, s, path, MERKLE_MAX_PATH, &n), 0);
    assert_true(u->gets <= 2 * 64);
    assert_true(n <= 64);
    ref_path(&REF_U, i, 0, s, ref, &rn);
    assert_int_equal(n, rn);
    if (n) assert_memory_equal(path, ref, n * HL);
    assert_int_equal(merkle_verify_inclusion(U[0], i, s, (const uint8_t(*)[32])path, n, root), 0);
    assert_int_equal(
        merkle_verify_inclusion(U[0], i, s, (const uint8_t(*)[32])path, n ? n - 1 : 1, root),
        n ? HDX_E_INTEGRITY : HDX_E_INVAL);
}

static size_t huge_consistency(const struct merkle *m, struct ustore *u, uint64_t o, uint64_t s)
{
    uint8_t path[MERKLE_MAX_PATH][HL], ref[MERKLE_MAX_PATH][HL], ro[HL], rs[HL];
    size_t n, rn = 0;

    assert_int_equal(merkle_root_at(m, o, ro), 0);
    assert_int_equal(merkle_root_at(m, s, rs), 0);
    u->gets = 0;
    assert_int_equal(merkle_consistency_proof(m, o, s, path, MERKLE_MAX_PATH, &n), 0);
    assert_true(u->gets <= 2 * 64 + 1);
    assert_true(n <= MERKLE_MAX_PATH);
    ref_subproof(&REF_U, o, 0, s, 1, ref, &rn);
    assert_int_equal(n, rn);
    if (n) assert_memory_equal(path, ref, n * HL);
    assert_int_equal(merkle_verify_consistency(o, s, ro, rs, (const uint8_t(*)[32])path, n), 0);
    if (n)
        assert_int_equal(merkle_verify_consistency(o, s, ro, rs, (const uint8_t(*)[32])path, n - 1),
                         HDX_E_INTEGRITY);
    return n;
}

static void test_huge_sizes(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {UINT64_MAX,
                                     UINT64_MAX - 1,
                                     UINT64_MAX - 2,
                                     (uint64_t)1 << 63,
                                     ((uint64_t)1 << 63) + 1,
                                     ((uint64_t)1 << 63) - 1,
                                     ((uint64_t)1 << 32) + 3,
                                     0x0123456789abcdefu,
                                     0xfedcba9876543210u};
    struct ustore u = {0, 0};
    struct merkle_store st = {us_get, us_put, &u};
    struct merkle m;
    uint8_t root[HL], want[HL];

    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint64_t size = sizes[z];
        u.gets = 0;
        assert_int_equal(merkle_open(&m, size, &st), 0);
        assert_int_equal(u.gets, (unsigned long)popcount(size));
        assert_int_equal(merkle_root(&m, root), 0);
        ref_mth(&REF_U, 0, size, want);
        assert_memory_equal(root, want, HL);

        huge_inclusion(&m, &u, 0, size, root);
        huge_inclusion(&m, &u, size - 1, size, root);
        huge_inclusion(&m, &u, size / 2, size, root);
        huge_inclusion(&m, &u, rnd() % size, size, root);
        for (int t = 0; t < 4; t++) {
            uint64_t s2 = 1 + rnd() % size, i = rnd() % s2;
            uint8_t r2[HL];
            assert_int_equal(merkle_root_at(&m, s2, r2), 0);
            ref_mth(&REF_U, 0, s2, want);
            assert_memory_equal(r2, want, HL);
            huge_inclusion(&m, &u, i, s2, r2);
            huge_consistency(&m, &u, 1 + rnd() % s2, s2);
        }
        huge_consistency(&m, &u, 1, size);
        huge_consistency(&m, &u, size - 1 ? size - 1 : 1, size);
        huge_consistency(&m, &u, size, size);

        if (size == UINT64_MAX) {
            assert_int_equal(merkle_append(&m, U[0]), HDX_E_TOOBIG);
            assert_int_equal(merkle_size(&m), UINT64_MAX);
        } else {
            u.puts = 0;
            assert_int_equal(merkle_append(&m, U[0]), 0);
            assert_int_equal(u.puts, 1 + (unsigned long)__builtin_ctzll(~size));
            assert_int_equal(merkle_root(&m, root), 0);
            ref_mth(&REF_U, 0, size + 1, want);
            assert_memory_equal(root, want, HL);
        }
    }
    /* the longest paths: 64 hashes for leaf 0 of a 2^64 - 1 tree; 65 for the consistency
     * of 2^63 + 1 with 2^64 - 1 (a depth-64 leaf as terminal node plus 64 siblings) */
    assert_int_equal(merkle_open(&m, UINT64_MAX, &st), 0);
    uint8_t path[MERKLE_MAX_PATH][HL];
    size_t n;
    assert_int_equal(merkle_inclusion_proof(&m, 0, UINT64_MAX, path, MERKLE_MAX_PATH, &n), 0);
    assert_int_equal(n, 64);
    assert_int_equal(huge_consistency(&m, &u, ((uint64_t)1 << 63) + 1, UINT64_MAX), 65);
    /* the 2.1.4.2 walk with a power-of-two old size (first_hash prepended) */
    assert_int_equal(huge_consistency(&m, &u, (uint64_t)1 << 62, UINT64_MAX), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers), cmocka_unit_test(test_roots_every_size),
        cmocka_unit_test(test_inclusion),     cmocka_unit_test(test_consistency),
        cmocka_unit_test(test_reopen),        cmocka_unit_test(test_store_failures),
        cmocka_unit_test(test_arguments),     cmocka_unit_test(test_huge_sizes),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
