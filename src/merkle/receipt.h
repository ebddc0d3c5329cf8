/* receipt: the log's signed promise in every AA (docs/LOG-FORMAT.md, "Receipts").
 * A receipt says: record `seq`, committed at `time_us` with leaf hash `leaf_hash`, is in the
 * log. Signing each record would cost an Ed25519 signature per message (about 0.65 of a core
 * at 29,000 msgs/s here), so the commit thread signs once per commit batch: the batch's
 * receipt entries are the leaves of a small RFC 9162 Merkle tree, the log key signs its
 * root, and each receipt carries its index, the batch size and its audit path. Anyone can
 * check one receipt alone with the log's public key.
 *   entry hash  = SHA-256(0x00 || u64 seq || i64 time_us || leaf_hash(32))
 *   signed      = "HDX-RCPT-v1" (11 bytes) || u64 batch_size || batch_root(32)
 * Integers big-endian; interior nodes as merkle.h. `hdx receipt check` then proves the
 * record is in the log with an inclusion proof against a signed tree head.
 * Receipt text: the ZRC segment of the AA, and one JSON object per line in a sender's
 * receipt file. Both parsers take untrusted input: every length is checked.
 * Thread: a batch is immutable once made; hdx_receipt_get may run on any thread while the
 * batch is referenced; the last release frees it. */
#ifndef HDX_RECEIPT_H
#define HDX_RECEIPT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

/* A batch holds at most 2^20 entries, so a path has at most 20 hashes. */
#define HDX_RECEIPT_BATCH_MAX (1u << 20)
#define HDX_RECEIPT_PATH_MAX 20
#define HDX_RECEIPT_SIGNED_LEN (11 + 8 + 32)
/* Longest ZRC segment text (with its CR) and receipt JSON line. */
#define HDX_RECEIPT_SEGMENT_MAX 1600
#define HDX_RECEIPT_JSON_MAX 2048

struct hdx_receipt_entry {
    uint64_t seq;
    int64_t time_us;
    uint8_t leaf_hash[32];
};

struct hdx_receipt {
    uint64_t seq;
    int64_t time_us;
    uint8_t leaf_hash[32];
    uint64_t index, batch_size;
    size_t path_len;
    uint8_t path[HDX_RECEIPT_PATH_MAX][32];
    uint8_t signature[64];
};

struct hdx_receipt_batch;

/* The log key as libsodium holds it (in guarded memory): its Ed25519 signs in about 13 us
 * here, OpenSSL's in about 23, and a signature is made per commit batch on the commit
 * thread. Ed25519 is deterministic: the bytes are the same either way. */
struct hdx_receipt_signer;
int hdx_receipt_signer_new(EVP_PKEY *log_key, struct hdx_receipt_signer **out);
void hdx_receipt_signer_free(struct hdx_receipt_signer *s);

/* Builds the batch tree over e[0..n) (1 <= n <= HDX_RECEIPT_BATCH_MAX), signs its root and
 * returns the batch holding `refs` references (one per receipt that will be taken). */
int hdx_receipt_batch_new(const struct hdx_receipt_entry *e, size_t n,
                          const struct hdx_receipt_signer *signer, unsigned refs,
                          struct hdx_receipt_batch **out);
/* Drops one reference; the last frees the batch. NULL is ignored. */
void hdx_receipt_batch_release(struct hdx_receipt_batch *b);
/* The receipt of entry `index`. */
int hdx_receipt_get(const struct hdx_receipt_batch *b, size_t index, struct hdx_receipt *out);

/* HDX_OK when the receipt's path leads to a root the log key signed; HDX_E_INTEGRITY else. */
int hdx_receipt_verify(const struct hdx_receipt *r, EVP_PKEY *log_pub);

/* The ZRC segment, ending in CR, with field separator fs:
 *   ZRC|1|seq|time_us|leaf_hash|index|batch_size|path|signature
 * hex in lower case; path = the hashes concatenated, deepest first (no repetition separator,
 * so any sender's delimiters work). Returns the length, or a negative hdx_err. */
int hdx_receipt_segment(const struct hdx_receipt *r, char fs, char *out, size_t cap);
/* From the eight field values ZRC-1..ZRC-8 (already unescaped). HDX_E_INVAL when any is
 * malformed. */
int hdx_receipt_from_fields(const char *const fields[8], struct hdx_receipt *out);

/* One line of JSON (no newline): {"seq":..,"time_us":..,"leaf_hash":"..","index":..,
 * "batch_size":..,"path":["..",..],"signature":"..","control_id":".."}. control_id (the
 * message's MSH-10, may be NULL) lets the sender match receipts to messages. */
int hdx_receipt_json(const struct hdx_receipt *r, const char *control_id, char *out, size_t cap);
/* Parses such a line (at most HDX_RECEIPT_JSON_MAX bytes); control_id may be NULL. */
int hdx_receipt_parse_json(const char *json, size_t len, struct hdx_receipt *out, char *control_id,
                           size_t control_cap);

#endif
