/* logproof: the log's proofs and heads as JSON (docs/LOG-FORMAT.md), built from a store.
 * Shared by `hdx proof` and hdxd (which serves them to witnesses on the subscription port).
 * Each returns the JSON length, or a negative hdx_err with a one-line reason in why.
 * out needs HDX_PROOF_JSON_MAX bytes. Thread: the store handle's thread. */
#ifndef HDX_LOGPROOF_H
#define HDX_LOGPROOF_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define HDX_PROOF_JSON_MAX 8192

/* Record seq against the newest signed tree head. */
int hdx_log_inclusion_json(struct hdx_store *s, uint64_t seq, char *out, size_t cap, char *why,
                           size_t why_cap);
/* Tree of old_size as a prefix of the tree of new_size, which must be a kept signed head. */
int hdx_log_consistency_json(struct hdx_store *s, uint64_t old_size, uint64_t new_size, char *out,
                             size_t cap, char *why, size_t why_cap);

#endif
