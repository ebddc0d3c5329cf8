/* checkpoint: device stream signatures (docs/STREAM-SIGNATURES.md). A device enrolled with an
 * Ed25519 signing key sends, every N messages or T ms, a checkpoint message (MSH-9 ZCK^Z01)
 * whose ZCK segment signs the running hash of every MLLP payload it sent on this connection
 * since its previous checkpoint. One signature per batch, not per message.
 *   running hash  H0 = 32 zero bytes; Hi = SHA-256(H(i-1) || SHA-256(payload i))
 *   signed bytes  = "HDX-CKPT-v1" (11) || binding(32) || u64 n || u64 count || H(32)
 *   ZCK           = ZCK|1|n|count|H hex|signature hex
 * binding is the connection's TLS exporter value (RFC 8446 7.5, label HDX_CKPT_LABEL, no
 * context, 32 bytes): a checkpoint verifies on its own connection only, so one replayed on
 * another connection fails its signature; n must grow on the connection, so one replayed on
 * its own connection is refused as such. After every checkpoint, accepted or not, both sides
 * start a new running hash.
 * Thread: any; no global state. Input (the ZCK fields) is untrusted and length-checked. */
#ifndef HDX_CHECKPOINT_H
#define HDX_CHECKPOINT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/hl7.h"

#define HDX_CKPT_TYPE "ZCK^Z01"
#define HDX_CKPT_LABEL "EXPORTER-hdx-checkpoint"
#define HDX_CKPT_SIGNED_LEN (11 + 32 + 8 + 8 + 32)
#define HDX_CKPT_SEGMENT_MAX 256

struct hdx_stream {
    uint8_t hash[32];
    uint64_t count;  /* payloads since the last checkpoint */
    uint64_t last_n; /* the highest checkpoint number accepted on this connection */
};

struct hdx_checkpoint {
    uint64_t n, count;
    uint8_t hash[32];
    uint8_t signature[64];
};

enum hdx_ckpt_verdict {
    HDX_CKPT_OK = 0,
    HDX_CKPT_MALFORMED,
    HDX_CKPT_BAD_SIGNATURE,
    HDX_CKPT_REPLAYED,
    HDX_CKPT_MISMATCH,
};

void hdx_stream_init(struct hdx_stream *s);
/* Adds one payload to the running hash. */
int hdx_stream_add(struct hdx_stream *s, const uint8_t *payload, size_t len);

/* 1 when the parsed message is a checkpoint (MSH-9 ZCK^Z01). */
int hdx_is_checkpoint(const struct hl7_msg *m);
/* Reads ZCK-1..5. HDX_E_INVAL when absent or malformed. */
int hdx_checkpoint_parse(const struct hl7_msg *m, struct hdx_checkpoint *out);

void hdx_checkpoint_signed_bytes(const struct hdx_checkpoint *c, const uint8_t binding[32],
                                 uint8_t out[HDX_CKPT_SIGNED_LEN]);
/* Device side: fills c->n from the caller, c->count and c->hash from s, signs, and starts a
 * new running hash in s. */
int hdx_checkpoint_make(struct hdx_stream *s, uint64_t n, const uint8_t binding[32], EVP_PKEY *key,
                        struct hdx_checkpoint *c);
/* "ZCK|1|n|count|hash|signature\r" (default delimiters). Returns the length or a negative
 * hdx_err. */
int hdx_checkpoint_segment(const struct hdx_checkpoint *c, char *out, size_t cap);

/* hdxd side, in this order: signature with the device's raw Ed25519 public key over this
 * connection's binding; n greater than every n accepted before (else REPLAYED); count and
 * hash equal to the running hash of what arrived (else MISMATCH). A valid signature with a
 * fresh n raises last_n even on a mismatch. Always starts a new running hash in s. */
enum hdx_ckpt_verdict hdx_checkpoint_check(struct hdx_stream *s, const struct hdx_checkpoint *c,
                                           const uint8_t binding[32], const uint8_t pub[32]);
const char *hdx_ckpt_verdict_text(enum hdx_ckpt_verdict v);

/* The most messages one checkpoint record marks (hdxd keeps at most this many per connection). */
#define HDX_CKPT_MARKS_MAX 16384
/* A checkpoint record as hdxd stores it (the checkpoint, then "ZCV|1|verdict|..." and
 * "ZCS|a-b,c,..." segments): *verified (ZCV-2 is "verified") and the covered seqs in *seqs
 * (malloc'd, the caller frees), the stream marks the record implies. Untrusted input:
 * HDX_E_INVAL when malformed or over HDX_CKPT_MARKS_MAX seqs (nothing returned). */
int hdx_checkpoint_marks(const struct hl7_msg *msg, int *verified, uint64_t **seqs, size_t *n);
/* The same from the record's body (parsed with the default limits). */
int hdx_checkpoint_record_marks(const uint8_t *body, size_t len, int *verified, uint64_t **seqs,
                                size_t *n);

#endif
