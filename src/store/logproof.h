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

/* The log requests a client may send on the subscription port before SUB (docs/
 * LOG-FORMAT.md, "Witnesses"): "STH", "CONSISTENCY OLD NEW", "INCLUSION SEQ". Strict: one
 * space between parts, decimal numbers without sign or leading zeros that fit in 64 bits.
 * Pure; the line is untrusted. Returns the kind, HDX_LOGREQ_NONE when the line is not one of
 * them (it may be a SUB request). */
enum hdx_logreq_kind {
    HDX_LOGREQ_NONE,
    HDX_LOGREQ_STH,
    HDX_LOGREQ_CONSISTENCY,
    HDX_LOGREQ_INCLUSION
};
struct hdx_logreq {
    enum hdx_logreq_kind kind;
    uint64_t a, b; /* CONSISTENCY: a = OLD, b = NEW; INCLUSION: a = SEQ */
};
enum hdx_logreq_kind hdx_logreq_parse(const char *line, struct hdx_logreq *out);

#endif
