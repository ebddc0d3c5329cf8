/* proof: verification of the JSON proofs `hdx proof` prints (docs/LOG-FORMAT.md): the signed
 * tree head(s) they carry must verify with the log's public key, then the RFC 9162 inclusion
 * or consistency proof against the signed root(s). Input is untrusted and bounded
 * (HDX_PROOF_MAX bytes, 65 path hashes). Writes "valid ..." or "invalid: REASON" into msg.
 * Thread: any. */
#ifndef HDX_PROOF_H
#define HDX_PROOF_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "merkle/sth.h"

#define HDX_PROOF_MAX (1u << 20)

/* Parses one signed tree head object (JSON text) without checking its signature. */
int hdx_sth_parse_json(const char *json, size_t len, struct hdx_sth *out);
/* Reads the old_root and the head of a consistency proof (no verification). */
int hdx_proof_roots(const char *json, size_t len, uint8_t old_root[32], struct hdx_sth *head);

/* Reads the leaf of an inclusion proof (no verification: use hdx_proof_check first). */
int hdx_proof_leaf(const char *json, size_t len, uint64_t *leaf_index, uint8_t leaf_hash[32]);

/* HDX_OK when valid, HDX_E_INTEGRITY otherwise. */
int hdx_proof_check(const char *json, size_t len, EVP_PKEY *pub, char *msg, size_t cap);

#endif
