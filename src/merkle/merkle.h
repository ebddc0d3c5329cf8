/* merkle: the RFC 9162 (CT v2) section 2.1 Merkle tree over a log of 32-byte leaf hashes,
 * with proofs (DESIGN M5). Foundation of the transparency log; not wired into hdxd yet.
 *
 * Hashing: leaf hashes are given (callers compute SHA-256(0x00 || leaf)); an interior node
 * is SHA-256(0x01 || left || right); the empty tree's root is SHA-256(""). MTH of n leaves
 * splits at the largest power of two smaller than n (RFC 9162 2.1.1).
 *
 * DESIGN (storage, as in Trillian): the hash of every perfect subtree -- 2^level leaves
 * starting at leaf index * 2^level -- is put through the store once, when it becomes
 * complete; level 0 holds the leaf hashes. In memory there is only the tree size and the
 * frontier: the roots of the perfect subtrees that make up the size (one per set bit).
 * Any subtree a proof or an older root needs is a fold of at most 64 stored perfect
 * subtrees, so reopening is at most 64 gets and nothing is ever rehashed.
 *
 * Invariants:
 *  1. Node (level, index) is complete iff index < size >> level; only complete nodes are
 *     ever read, and each is put exactly once per append that completes it.
 *  2. Frontier entry `level` is valid iff bit `level` of size is set; it equals stored node
 *     (level, (size >> level) - 1), so reads of that node are served from memory.
 *  3. A failed call leaves *m unchanged (merkle_open: *m is zeroed and unusable).
 *
 * Store contract: get/put return 0 or a negative hdx_err, which is passed up unchanged
 * (a positive return becomes HDX_E_STORE). get of a complete node must succeed. put must
 * overwrite (upsert): after a crash between put and persisting the size, the same
 * (level, index) is put again, possibly with another hash. The caller persists the size
 * and the nodes of an append in one transaction, reopens with that size, and should check
 * merkle_root() against its last signed tree head, since the frontier comes from the store.
 *
 * Ownership: struct merkle is caller-allocated (about 2 KiB) and keeps a copy of the store
 * struct; st->ctx must outlive it. Nothing to free. The module allocates nothing; hashing is
 * OpenSSL EVP_Digest, which allocates and frees a transient digest context per hash; the
 * SHA-256 implementation is fetched once per process and kept.
 * Dependencies: libcrypto (EVP, CRYPTO_memcmp), pthread (once) and core/err.h (the enum only).
 * Thread: appends must be serialised against every other call on the same tree; the const
 * calls may run concurrently if the store's get is thread-safe. Verification functions are
 * pure and reentrant.
 * Returns HDX_OK or a negative hdx_err: HDX_E_INVAL (bad argument or size), HDX_E_TOOBIG
 * (tree full, or path capacity too small), HDX_E_CRYPTO (OpenSSL failed), store errors. */
#ifndef HDX_MERKLE_H
#define HDX_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
/* Longest possible path: a tree of fewer than 2^64 leaves is at most 64 levels deep, so an
 * inclusion path has at most 64 hashes and a consistency path at most 65. */
#define MERKLE_MAX_PATH 65

/* An interior node: out = SHA-256(0x01 || left || right); out may alias either input. For
 * stores that keep only higher levels and fold lower subtrees from the leaves on demand. */
int merkle_hash_children(uint8_t out[32], const uint8_t left[32], const uint8_t right[32]);

struct merkle_store {
    int (*get)(void *ctx, unsigned level, uint64_t index, uint8_t out[32]);
    int (*put)(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32]);
    void *ctx;
};

struct merkle {
    uint64_t size;
    struct merkle_store st;
    uint8_t frontier[64][MERKLE_HASH_LEN]; /* invariant 2 */
};

/* Loads the frontier of a tree of `size` leaves: one get per set bit of size (<= 64). */
int merkle_open(struct merkle *m, uint64_t size, const struct merkle_store *st);

/* Appends one leaf hash: puts (0, size) and every perfect subtree it completes (1 + the
 * number of trailing one bits of the old size; amortised 2 puts, 1 hash), no get.
 * HDX_E_TOOBIG at 2^64 - 1 leaves. On error the tree is unchanged and the append may be
 * retried (some puts may have happened; see the upsert rule above). */
int merkle_append(struct merkle *m, const uint8_t leaf_hash[32]);

uint64_t merkle_size(const struct merkle *m);

/* MTH of the current tree, from the frontier only (no get). */
int merkle_root(const struct merkle *m, uint8_t root[32]);

/* MTH of the first `size` leaves, size <= merkle_size(m): at most popcount(size) gets. */
int merkle_root_at(const struct merkle *m, uint64_t size, uint8_t root[32]);

/* RFC 9162 2.1.3.1 PATH(leaf_index, D[0:tree_size]), deepest sibling first, into path[0..*n).
 * Needs leaf_index < tree_size <= merkle_size(m). If the path is longer than cap, returns
 * HDX_E_TOOBIG with *n = the length needed and makes no get; on other errors *n = 0.
 * At most 2 * 64 gets. */
int merkle_inclusion_proof(const struct merkle *m, uint64_t leaf_index, uint64_t tree_size,
                           uint8_t path[][32], size_t cap, size_t *n);

/* RFC 9162 2.1.4.1 PROOF(old_size, D[0:new_size]). Needs 0 < old_size <= new_size <=
 * merkle_size(m); old_size == new_size gives the empty proof. *n and cap as above.
 * At most 2 * 64 + 1 gets. */
int merkle_consistency_proof(const struct merkle *m, uint64_t old_size, uint64_t new_size,
                             uint8_t path[][32], size_t cap, size_t *n);

/* RFC 9162 2.1.3.2, step by step. 0 only when the path proves leaf_hash at leaf_index in the
 * tree (tree_size, root). Any non-zero return is a rejection: HDX_E_INVAL for
 * leaf_index >= tree_size, HDX_E_INTEGRITY for a wrong root, index or path (too long, too
 * short, altered), HDX_E_CRYPTO if hashing failed. Root comparison is constant-time. */
int merkle_verify_inclusion(const uint8_t leaf_hash[32], uint64_t leaf_index, uint64_t tree_size,
                            const uint8_t path[][32], size_t n, const uint8_t root[32]);

/* RFC 9162 2.1.4.2, step by step, for 0 < old_size < new_size. Beyond the RFC (which defines
 * no proof for equal sizes): old_size == new_size is accepted only with an empty path and
 * equal roots, matching what merkle_consistency_proof produces. HDX_E_INVAL for
 * old_size == 0 or old_size > new_size; otherwise as merkle_verify_inclusion. */
int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const uint8_t old_root[32],
                              const uint8_t new_root[32], const uint8_t path[][32], size_t n);

#endif
