/* merkle: RFC 9162 2.1 tree hashing, proofs and verification over perfect-subtree storage.
 * See merkle.h for the storage model and invariants. Nothing here recurses: every RFC
 * recursion is unrolled into a walk down from the root, at most 64 levels deep. */
#include "merkle/merkle.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

/* SHA-256(""), the MTH of the empty tree (RFC 9162 2.1.1). */
static const uint8_t empty_root[MERKLE_HASH_LEN] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

/* out = SHA-256(0x01 || left || right). out may alias left or right. */
static int hash_node(uint8_t out[32], const uint8_t left[32], const uint8_t right[32])
{
    uint8_t buf[1 + 2 * MERKLE_HASH_LEN];

    buf[0] = 0x01;
    memcpy(buf + 1, left, MERKLE_HASH_LEN);
    memcpy(buf + 1 + MERKLE_HASH_LEN, right, MERKLE_HASH_LEN);
    if (hdx_sha256_once(buf, sizeof buf, out) != 0) return HDX_E_CRYPTO;
    return HDX_OK;
}

int merkle_hash_children(uint8_t out[32], const uint8_t left[32], const uint8_t right[32])
{
    return hash_node(out, left, right);
}

/* Store callbacks promise 0 or a negative hdx_err; anything else is a store failure. */
static int store_rc(int rc)
{
    return rc > 0 ? HDX_E_STORE : rc;
}

static int usable(const struct merkle *m)
{
    return m && m->st.get && m->st.put;
}

/* log2 of the largest power of two strictly below x (x >= 2): RFC 9162's split point k. */
static unsigned split_log2(uint64_t x)
{
    return 63u - (unsigned)__builtin_clzll((unsigned long long)(x - 1));
}

/* Reads complete node (level, index); frontier roots come from memory (invariant 2). */
static int node_get(const struct merkle *m, unsigned level, uint64_t index, uint8_t out[32])
{
    if (level >= 64) return HDX_E_INVAL;
    uint64_t complete = m->size >> level;
    if (index >= complete) return HDX_E_INVAL; /* invariant 1: never read a partial node */
    if ((complete & 1) && index == complete - 1) {
        memcpy(out, m->frontier[level], MERKLE_HASH_LEN);
        return HDX_OK;
    }
    int rc = m->st.get(m->st.ctx, level, index, out);
    return rc ? store_rc(rc) : HDX_OK;
}

/* MTH(D[lo:lo+len]), len >= 1, for a node of the RFC recursion: lo is a multiple of the
 * largest power of two <= len, so the range is the perfect subtrees of len's set bits, left
 * to right in decreasing size, folded from the right (RFC 9162 2.1.1 applied repeatedly).
 * One get per set bit of len. */
static int range_root(const struct merkle *m, uint64_t lo, uint64_t len, uint8_t out[32])
{
    uint8_t piece[MERKLE_HASH_LEN];
    int have = 0, rc;

    if (len == 0 || len > m->size || lo > m->size - len) return HDX_E_INVAL;
    for (unsigned l = 0; l < 64; l++) {
        if (!((len >> l) & 1)) continue;
        /* Leaves before this piece: lo plus the bits of len above l. At l = 63,
         * (uint64_t)2 << 63 wraps to 0 (defined for unsigned types), so the mask below
         * bit l + 1 is all ones and no bits remain above it, as wanted. */
        uint64_t start = lo + (len & ~(((uint64_t)2 << l) - 1));
        if (start & (((uint64_t)1 << l) - 1)) return HDX_E_INVAL;
        if (!have) {
            rc = node_get(m, l, start >> l, out);
            have = 1;
        } else {
            rc = node_get(m, l, start >> l, piece);
            if (rc == HDX_OK) rc = hash_node(out, piece, out);
        }
        if (rc) return rc;
    }
    return HDX_OK;
}

int merkle_open(struct merkle *m, uint64_t size, const struct merkle_store *st)
{
    if (!m) return HDX_E_INVAL;
    memset(m, 0, sizeof *m);
    if (!st || !st->get || !st->put) return HDX_E_INVAL;
    for (unsigned l = 0; l < 64; l++) {
        if (!((size >> l) & 1)) continue;
        int rc = st->get(st->ctx, l, (size >> l) - 1, m->frontier[l]);
        if (rc) {
            memset(m, 0, sizeof *m); /* invariant 3: unusable, every call gives HDX_E_INVAL */
            return store_rc(rc);
        }
    }
    m->st = *st;
    m->size = size;
    return HDX_OK;
}

int merkle_append(struct merkle *m, const uint8_t leaf_hash[32])
{
    uint8_t cur[MERKLE_HASH_LEN];
    unsigned l;
    int rc;

    if (!usable(m) || !leaf_hash) return HDX_E_INVAL;
    uint64_t n = m->size;
    if (n == UINT64_MAX) return HDX_E_TOOBIG;
    memcpy(cur, leaf_hash, MERKLE_HASH_LEN);
    if ((rc = m->st.put(m->st.ctx, 0, n, cur))) return store_rc(rc);
    /* Each trailing one bit of n is a frontier root that the new leaf's subtree now
     * completes: carry upwards like binary addition. n != UINT64_MAX, so l + 1 <= 63. */
    for (l = 0; (n >> l) & 1; l++) {
        if ((rc = hash_node(cur, m->frontier[l], cur))) return rc;
        if ((rc = m->st.put(m->st.ctx, l + 1, n >> (l + 1), cur))) return store_rc(rc);
    }
    /* Commit only now, so that any failure above leaves the tree unchanged (invariant 3). */
    memcpy(m->frontier[l], cur, MERKLE_HASH_LEN);
    m->size = n + 1;
    return HDX_OK;
}

uint64_t merkle_size(const struct merkle *m)
{
    return m ? m->size : 0;
}

int merkle_root(const struct merkle *m, uint8_t root[32])
{
    int have = 0, rc;

    if (!usable(m) || !root) return HDX_E_INVAL;
    memcpy(root, empty_root, MERKLE_HASH_LEN);
    for (unsigned l = 0; l < 64; l++) {
        if (!((m->size >> l) & 1)) continue;
        if (!have) {
            memcpy(root, m->frontier[l], MERKLE_HASH_LEN);
            have = 1;
        } else if ((rc = hash_node(root, m->frontier[l], root))) {
            return rc;
        }
    }
    return HDX_OK;
}

int merkle_root_at(const struct merkle *m, uint64_t size, uint8_t root[32])
{
    if (!usable(m) || !root || size > m->size) return HDX_E_INVAL;
    if (size == 0) {
        memcpy(root, empty_root, MERKLE_HASH_LEN);
        return HDX_OK;
    }
    return range_root(m, 0, size, root);
}

/* Length of PATH(index, D[0:size]): the depth of the leaf. */
static size_t inclusion_len(uint64_t index, uint64_t size)
{
    uint64_t lo = 0, hi = size;
    size_t len = 0;

    while (hi - lo > 1) {
        uint64_t k = (uint64_t)1 << split_log2(hi - lo);
        if (index - lo < k)
            hi = lo + k;
        else
            lo += k;
        len++;
    }
    return len;
}

int merkle_inclusion_proof(const struct merkle *m, uint64_t leaf_index, uint64_t tree_size,
                           uint8_t path[][32], size_t cap, size_t *n)
{
    if (!n) return HDX_E_INVAL;
    *n = 0;
    if (!usable(m) || leaf_index >= tree_size || tree_size > m->size) return HDX_E_INVAL;
    size_t len = inclusion_len(leaf_index, tree_size);
    if (len > cap) {
        *n = len;
        return HDX_E_TOOBIG;
    }
    if (len && !path) return HDX_E_INVAL;

    /* PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) or PATH(m - k, D[k:n]) : MTH(D[0:k]).
     * Walking down from the root meets the siblings shallowest first; the RFC lists them
     * deepest first, so fill the array from its end. */
    uint64_t lo = 0, hi = tree_size;
    size_t i = len;
    while (hi - lo > 1) {
        uint64_t k = (uint64_t)1 << split_log2(hi - lo);
        int rc;
        i--;
        if (leaf_index - lo < k) {
            rc = range_root(m, lo + k, hi - lo - k, path[i]);
            hi = lo + k;
        } else {
            rc = range_root(m, lo, k, path[i]);
            lo += k;
        }
        if (rc) return rc;
    }
    *n = len;
    return HDX_OK;
}

/* Length of PROOF(old, D[0:new]), 0 < old <= new. */
static size_t consistency_len(uint64_t old_size, uint64_t new_size)
{
    uint64_t lo = 0, hi = new_size, mm = old_size;
    size_t len = 0;
    int whole = 1; /* the RFC's b: still on the left edge, where the old root is known */

    while (mm != hi - lo) {
        uint64_t k = (uint64_t)1 << split_log2(hi - lo);
        if (mm <= k) {
            hi = lo + k;
        } else {
            lo += k;
            mm -= k;
            whole = 0;
        }
        len++;
    }
    return len + (size_t)!whole;
}

int merkle_consistency_proof(const struct merkle *m, uint64_t old_size, uint64_t new_size,
                             uint8_t path[][32], size_t cap, size_t *n)
{
    if (!n) return HDX_E_INVAL;
    *n = 0;
    if (!usable(m) || old_size == 0 || old_size > new_size || new_size > m->size)
        return HDX_E_INVAL;
    size_t len = consistency_len(old_size, new_size);
    if (len > cap) {
        *n = len;
        return HDX_E_TOOBIG;
    }
    if (len && !path) return HDX_E_INVAL;

    /* SUBPROOF(m, D[n], b): {} if m == n and b; {MTH(D[n])} if m == n and not b; else
     * SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) when m <= k, or SUBPROOF(m - k, D[k:n], false) :
     * MTH(D[0:k]). The walk down yields the appended hashes outermost first, so they fill
     * the array from its end; the terminal MTH(D[n]), if any, lands in path[0]. mm stays in
     * 1..hi-lo, so the loop ends at the latest on a single leaf. */
    uint64_t lo = 0, hi = new_size, mm = old_size;
    size_t i = len;
    int whole = 1, rc;
    while (mm != hi - lo) {
        uint64_t k = (uint64_t)1 << split_log2(hi - lo);
        i--;
        if (mm <= k) {
            rc = range_root(m, lo + k, hi - lo - k, path[i]);
            hi = lo + k;
        } else {
            rc = range_root(m, lo, k, path[i]);
            lo += k;
            mm -= k;
            whole = 0;
        }
        if (rc) return rc;
    }
    if (!whole && (rc = range_root(m, lo, hi - lo, path[--i]))) return rc;
    *n = len;
    return HDX_OK;
}

int merkle_verify_inclusion(const uint8_t leaf_hash[32], uint64_t leaf_index, uint64_t tree_size,
                            const uint8_t path[][32], size_t n, const uint8_t root[32])
{
    uint8_t r[MERKLE_HASH_LEN];
    int rc;

    if (!leaf_hash || !root || (n && !path)) return HDX_E_INVAL;
    /* 1. leaf_index >= tree_size fails. */
    if (leaf_index >= tree_size) return HDX_E_INVAL;
    /* 2, 3. */
    uint64_t fn = leaf_index, sn = tree_size - 1;
    memcpy(r, leaf_hash, MERKLE_HASH_LEN);
    /* 4. sn reaches 0 after at most 64 shifts, which bounds the work on a long path. */
    for (size_t i = 0; i < n; i++) {
        if (sn == 0) return HDX_E_INTEGRITY; /* a: path too long */
        if ((fn & 1) || fn == sn) {          /* b */
            if ((rc = hash_node(r, path[i], r))) return rc;
            if (!(fn & 1))
                while (!((fn & 1) || fn == 0)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else if ((rc = hash_node(r, r, path[i]))) {
            return rc;
        }
        fn >>= 1; /* c */
        sn >>= 1;
    }
    /* 5. sn == 0 (else the path was too short) and r == root, compared in constant time. */
    int bad = CRYPTO_memcmp(r, root, MERKLE_HASH_LEN);
    return bad || sn != 0 ? HDX_E_INTEGRITY : HDX_OK;
}

int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const uint8_t old_root[32],
                              const uint8_t new_root[32], const uint8_t path[][32], size_t n)
{
    uint8_t fr[MERKLE_HASH_LEN], sr[MERKLE_HASH_LEN];
    int rc, bad;

    if (!old_root || !new_root || (n && !path)) return HDX_E_INVAL;
    if (old_size == 0 || old_size > new_size) return HDX_E_INVAL;
    if (old_size == new_size) { /* not in the RFC: see merkle.h */
        bad = CRYPTO_memcmp(old_root, new_root, MERKLE_HASH_LEN);
        return bad || n != 0 ? HDX_E_INTEGRITY : HDX_OK;
    }
    /* 1. An empty path fails. */
    if (n == 0) return HDX_E_INTEGRITY;
    /* 2. If first is an exact power of 2, old_root is prepended: element 0 of the walk is
     * old_root and path[j] is element j + 1; otherwise path[j] is element j. */
    size_t pre = (old_size & (old_size - 1)) == 0;
    const uint8_t *first = pre ? old_root : path[0];
    /* 3. */
    uint64_t fn = old_size - 1, sn = new_size - 1;
    /* 4. */
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    memcpy(fr, first, MERKLE_HASH_LEN);
    memcpy(sr, first, MERKLE_HASH_LEN);
    /* 6. For each subsequent element c. */
    for (size_t j = 1 - pre; j < n; j++) {
        const uint8_t *c = path[j];
        if (sn == 0) return HDX_E_INTEGRITY; /* a: path too long */
        if ((fn & 1) || fn == sn) {          /* b */
            if ((rc = hash_node(fr, c, fr)) || (rc = hash_node(sr, c, sr))) return rc;
            if (!(fn & 1))
                while (!((fn & 1) || fn == 0)) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else if ((rc = hash_node(sr, sr, c))) {
            return rc;
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 7. fr == old_root, sr == new_root and sn == 0; constant-time comparisons. */
    bad = CRYPTO_memcmp(fr, old_root, MERKLE_HASH_LEN);
    bad |= CRYPTO_memcmp(sr, new_root, MERKLE_HASH_LEN); /* both compared, no early exit */
    return bad || sn != 0 ? HDX_E_INTEGRITY : HDX_OK;
}
