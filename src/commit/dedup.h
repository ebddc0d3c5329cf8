/* dedup: the window of recent duplicate tokens, in memory.
 * A sender that lost an ACK resends the same message (same sender, same MSH-10); hdx must
 * answer AA again with the stored seq and store nothing. Looking tokens up in an SQLite
 * index dirtied one random page per message, which halved ingest; instead the commit thread
 * keeps the newest `capacity` tokens here (FIFO) and the store keeps them in an append-only
 * table from which the window is rebuilt at start. Duplicates older than the window are
 * stored again: the window (store.dedup_window) is sized for resends after lost ACKs.
 * Tokens are HMAC outputs, so their first bytes are already uniformly distributed and serve
 * as the hash. Thread: the commit thread only. */
#ifndef HDX_DEDUP_H
#define HDX_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"

struct hdx_dedup;

struct hdx_dedup *hdx_dedup_new(size_t capacity);
void hdx_dedup_free(struct hdx_dedup *d);
/* A resend is a duplicate only when its bytes are the same: each token carries the content
 * digest of the message that used it (hdx_content_digest in commit.h), compared here. */
enum { HDX_DEDUP_NONE = 0, HDX_DEDUP_SAME = 1, HDX_DEDUP_REUSED = 2 };
/* Looks the token up: NONE, or *seq of the newest message with it and SAME (its content digest
 * equals content, or either is unknown: NULL) or REUSED (another message reused the id). */
int hdx_dedup_find(const struct hdx_dedup *d, const uint8_t token[HDX_BLIND_LEN],
                   const uint8_t content[HDX_BLIND_LEN], uint64_t *seq);
/* Adds a token with its message's content digest (NULL: unknown), evicting the oldest when
 * full. */
void hdx_dedup_add(struct hdx_dedup *d, const uint8_t token[HDX_BLIND_LEN],
                   const uint8_t content[HDX_BLIND_LEN], uint64_t seq);
/* Removes the n most recently added tokens (a batch that was rolled back). */
void hdx_dedup_forget_newest(struct hdx_dedup *d, size_t n);
size_t hdx_dedup_count(const struct hdx_dedup *d);

#endif
