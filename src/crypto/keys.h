/* keys: envelope encryption (DESIGN M4) and keyed hashes, on OpenSSL and libsodium only.
 * A key-encryption key (KEK, 32 random bytes, hex in a 0600 file) wraps data keys (DEKs)
 * with AES-256-GCM; records are sealed with AES-256-GCM under a DEK, the caller's
 * associated data binding each ciphertext to its place in the log. A separate blind-index
 * key, also wrapped by the KEK, makes HMAC-SHA-256 tokens of patient ids so the index never
 * holds a plaintext id.
 * Key material lives in sodium_malloc'd (guarded, mlocked) memory and is wiped on free;
 * no function here logs or returns a plaintext key. The keyring is the seam where a
 * separate key-holder process (DESIGN "keys live apart") will later answer wrap/unwrap.
 * Thread: the keyring is safe for concurrent seal/open/blind after setup; adding keys
 * (hdx_keyring_add, hdx_keyring_new_key) must not race with use. */
#ifndef HDX_KEYS_H
#define HDX_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define HDX_KEY_LEN 32
#define HDX_NONCE_LEN 12
#define HDX_TAG_LEN 16
#define HDX_BLIND_LEN 16
#define HDX_WRAPPED_LEN (HDX_NONCE_LEN + HDX_KEY_LEN + HDX_TAG_LEN)
#define HDX_KEYRING_MAX 256

enum hdx_key_kind { HDX_KEY_DATA = 1, HDX_KEY_BLIND = 2 };

struct hdx_keyring;

/* Writes a new random KEK to path (0600, O_EXCL). */
int hdx_kek_create(const char *path);
/* Loads the KEK under the rule of every secret file (hdx_secret_read: a regular file, not a
 * link, mode 0600 or stricter). why (NULL for none) receives one line on failure. */
int hdx_keyring_open(const char *kek_path, struct hdx_keyring **out, char *why, size_t why_cap);
void hdx_keyring_free(struct hdx_keyring *kr);

/* Generates a fresh key of `kind` with identifier id, keeps it, and returns it wrapped for
 * storage. A new data key becomes the current one for sealing. */
int hdx_keyring_new_key(struct hdx_keyring *kr, enum hdx_key_kind kind, uint32_t id,
                        uint8_t wrapped[HDX_WRAPPED_LEN]);
/* Unwraps a stored key and keeps it; fails with HDX_E_CRYPTO under a wrong KEK or when the
 * blob was altered. The data key with the highest id becomes current. */
int hdx_keyring_add(struct hdx_keyring *kr, enum hdx_key_kind kind, uint32_t id,
                    const uint8_t *wrapped, size_t wrapped_len);
/* Current data key id, 0 when none. */
uint32_t hdx_keyring_current(const struct hdx_keyring *kr);
int hdx_keyring_has_blind(const struct hdx_keyring *kr);

/* AES-256-GCM: ct receives pt_len bytes followed by the 16-byte tag; nonce is random. */
int hdx_seal(const struct hdx_keyring *kr, uint32_t key_id, const uint8_t *aad, size_t aad_len,
             const uint8_t *pt, size_t pt_len, uint8_t nonce[HDX_NONCE_LEN], uint8_t *ct);
/* Opens ct (ct_len includes the tag) into pt (ct_len - 16 bytes); HDX_E_CRYPTO on any
 * alteration of key id, aad, nonce or ciphertext. */
int hdx_open(const struct hdx_keyring *kr, uint32_t key_id, const uint8_t *aad, size_t aad_len,
             const uint8_t nonce[HDX_NONCE_LEN], const uint8_t *ct, size_t ct_len, uint8_t *pt);

/* Blind index: HMAC-SHA-256(blind key, domain || 0x00 || value), truncated to 16 bytes.
 * domain separates uses ("patient", "dedup"). HDX_E_NOTFOUND without a blind key. */
int hdx_blind(const struct hdx_keyring *kr, const char *domain, const void *value, size_t len,
              uint8_t out[HDX_BLIND_LEN]);

/* Per-thread working state for bulk sealing, opening and blinding (the commit thread, hdx verify):
 * an AES-256-GCM context keyed with the last data key it used and the blind key's HMAC inner
 * and outer SHA-256 states, so a call costs the data's own cipher and hash work only, not a
 * key schedule, an HMAC key setup, an algorithm lookup and allocations each time.
 * Results are byte for byte those of hdx_open and hdx_blind (same errors too).
 * Key material: that derived state (key schedule, HMAC pad states) sits in OpenSSL's heap,
 * not in the keyring's guarded memory, for the context's life; hdx_keyctx_free cleanses it.
 * Keep a context for one job; hdxd keeps one per pipeline stage for its life (the network
 * thread's tokens, the sealer's seal and hash: 8.8 us a record without), and runs with core
 * dumps and ptrace off for that reason (hdxd.c).
 * Thread: one thread at a time per context; kr must outlive it and gain no keys meanwhile. */
struct hdx_keyctx;
int hdx_keyctx_new(const struct hdx_keyring *kr, struct hdx_keyctx **out);
void hdx_keyctx_free(struct hdx_keyctx *kc);
int hdx_keyctx_open(struct hdx_keyctx *kc, uint32_t key_id, const uint8_t *aad, size_t aad_len,
                    const uint8_t nonce[HDX_NONCE_LEN], const uint8_t *ct, size_t ct_len,
                    uint8_t *pt);
int hdx_keyctx_blind(struct hdx_keyctx *kc, const char *domain, const void *value, size_t len,
                     uint8_t out[HDX_BLIND_LEN]);
/* The same blind index over a value that arrives in pieces (a DICOM data set, PDV by PDV, so
 * the hashing happens while the rest is still on the wire): begin, any number of updates,
 * final give exactly what hdx_keyctx_blind gives for the pieces' concatenation. A stream
 * borrows kc's pad states (kc must outlive it) and holds its own SHA-256 state; begin resets a
 * stream for reuse. final leaves it to be begun again; free cleanses it. HDX_OK,
 * HDX_E_NOTFOUND (no blind key), HDX_E_CRYPTO, HDX_E_NOMEM. */
struct hdx_blind_stream;
int hdx_blind_stream_new(struct hdx_keyctx *kc, struct hdx_blind_stream **out);
int hdx_blind_stream_begin(struct hdx_blind_stream *s, const char *domain);
int hdx_blind_stream_update(struct hdx_blind_stream *s, const void *p, size_t n);
int hdx_blind_stream_final(struct hdx_blind_stream *s, uint8_t out[HDX_BLIND_LEN]);
void hdx_blind_stream_free(struct hdx_blind_stream *s); /* NULL is fine */
/* hdx_seal through the context (the commit thread seals every record). */
int hdx_keyctx_seal(struct hdx_keyctx *kc, uint32_t key_id, const uint8_t *aad, size_t aad_len,
                    const uint8_t *pt, size_t pt_len, uint8_t nonce[HDX_NONCE_LEN], uint8_t *ct);
/* hdx_sha256 on the context's kept digest context. */
void hdx_keyctx_sha256(struct hdx_keyctx *kc, uint8_t out[32], size_t n, const void *const *parts,
                       const size_t *lens);

/* SHA-256 over the concatenation of n (pointer, length) parts. */
void hdx_sha256(uint8_t out[32], size_t n, const void *const *parts, const size_t *lens);

#endif
