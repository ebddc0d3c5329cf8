/* record: the Record, the one unit of the log (DESIGN "Everything that enters becomes a
 * Record"), and its canonical byte encoding.
 * The encoding is the contract with `hdx verify` and with the Merkle log: docs/LOG-FORMAT.md
 * documents it byte for byte. The header (everything but nonce and ciphertext) is also the
 * AES-GCM associated data, so a ciphertext cannot be moved to another seq, sender, time,
 * kind, type or patient without the tag failing.
 *   header = "HDXR" u8(version=1) u64(seq) i64(time_us) u8(kind) u32(key_id)
 *            u16(len) sender  u16(len) type  16 patient  16 dedup        (big-endian)
 *   leaf   = header nonce(12) u32(ct_len) ct           leaf_hash = SHA-256(0x00 || leaf)
 *   chain  = SHA-256(prev_chain || leaf_hash), prev_chain of seq 1 = 32 zero bytes
 * leaf_hash uses the RFC 9162 leaf prefix so the same hash becomes the Merkle leaf.
 * Ownership: a record filled by hdx_record_seal or hdx_store_get owns `ct` (malloc'd) and
 * hdx_record_clear frees it; a record handed to a hdx_store_scan callback only borrows `ct`
 * (store.h) and must not be cleared. `ct` is const either way: nothing rewrites a sealed
 * ciphertext in place. Thread: any. */
#ifndef HDX_RECORD_H
#define HDX_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"

#define HDX_RECORD_VERSION 1
#define HDX_SENDER_MAX 64
#define HDX_TYPE_MAX 63
#define HDX_HASH_LEN 32
#define HDX_HEADER_MAX (4 + 1 + 8 + 8 + 1 + 4 + 2 + HDX_SENDER_MAX + 2 + HDX_TYPE_MAX + 32)

enum hdx_record_kind {
    HDX_KIND_HL7V2 = 1,
    HDX_KIND_FHIR = 2,
    HDX_KIND_DICOM = 3,
    HDX_KIND_AUDIT = 4,
    HDX_KIND_ADMIN = 5,
};

struct hdx_record {
    uint64_t seq;
    int64_t time_us;
    uint8_t kind;
    uint32_t key_id;
    char sender[HDX_SENDER_MAX + 1];
    char type[HDX_TYPE_MAX + 1];
    uint8_t patient[HDX_BLIND_LEN]; /* all zero: no patient */
    uint8_t dedup[HDX_BLIND_LEN];   /* all zero: no duplicate detection */
    uint8_t nonce[HDX_NONCE_LEN];
    const uint8_t *ct; /* ciphertext followed by the GCM tag; owned or borrowed, see above */
    size_t ct_len;
    uint8_t leaf_hash[HDX_HASH_LEN];
    uint8_t chain[HDX_HASH_LEN];
};

/* Encodes the header; returns its length (<= HDX_HEADER_MAX), or 0 if a field is too long. */
size_t hdx_record_header(const struct hdx_record *r, uint8_t *out, size_t cap);
void hdx_record_leaf_hash(const struct hdx_record *r, uint8_t out[HDX_HASH_LEN]);
void hdx_record_chain(const uint8_t prev[HDX_HASH_LEN], const uint8_t leaf[HDX_HASH_LEN],
                      uint8_t out[HDX_HASH_LEN]);
int hdx_record_has_patient(const struct hdx_record *r);
const char *hdx_kind_name(int kind);
void hdx_record_clear(struct hdx_record *r);

/* Seals plaintext into r->ct (allocated) under the keyring's current data key, with the
 * header as associated data; r's other fields must be set. */
int hdx_record_seal(struct hdx_record *r, const struct hdx_keyring *kr, const uint8_t *pt,
                    size_t pt_len);
/* Seals pt and builds the record's whole leaf encoding (header nonce u32(ct_len) ct, the bytes
 * under the leaf hash and the payload of a segment frame) in one malloc'd buffer: *leaf is the
 * caller's to free; r->ct points into it (borrowed: never hdx_record_clear such a record) and
 * r->key_id, r->nonce, r->ct_len and r->leaf_hash are set. Through a per-thread key context. */
int hdx_record_seal_leaf(struct hdx_record *r, const struct hdx_keyring *kr, struct hdx_keyctx *kc,
                         const uint8_t *pt, size_t pt_len, uint8_t **leaf, size_t *leaf_len);
/* Parses a leaf encoding (untrusted: every length is checked) into r; r->ct borrows from leaf.
 * HDX_E_INTEGRITY when it is not exactly one well-formed leaf. leaf_hash and chain are not set. */
int hdx_record_from_leaf(const uint8_t *leaf, size_t len, struct hdx_record *r);
/* Opens r->ct into a malloc'd buffer (NUL-terminated for convenience). */
int hdx_record_open(const struct hdx_record *r, const struct hdx_keyring *kr, uint8_t **pt,
                    size_t *pt_len);
/* The same through a per-thread key context (keys.h), into the caller's buffer, for bulk
 * reads: pt needs r->ct_len - HDX_TAG_LEN + 1 bytes (HDX_E_TOOBIG otherwise; nothing
 * written). On failure pt holds no unauthenticated byte. */
int hdx_record_open_into(const struct hdx_record *r, struct hdx_keyctx *kc, uint8_t *pt, size_t cap,
                         size_t *pt_len);

#endif
