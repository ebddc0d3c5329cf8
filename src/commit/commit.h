/* commit: the intake queue and the commit pipeline (DESIGN "commit pipeline").
 * Producers (protocol front-ends) submit items from any thread. The sealer thread takes
 * everything queued (up to batch_max), and for the batch: blinds the patient id and the
 * duplicate key (sender + control id), skips items already stored within the duplicate
 * window with the same content (answering with the stored seq; a different message under a
 * reused control id is stored, flagged and logged), assigns seq and time, encrypts, hashes
 * into the chain and the Merkle tree. The flusher thread then appends the batch and commits it
 * with ONE transaction and ONE flush, while the sealer already prepares the next batch. Only
 * then are the batch's items moved to the done list and `notify` called; the producer's
 * thread takes them with hdx_commit_take_done() and releases the ACKs. So nothing is
 * acknowledged before it is durable (invariant 1), and batches complete in seq order.
 * On any store failure the whole batch fails (status < 0), nothing of it is stored, and
 * every later batch fails too until a restart (sticky, like the store's error).
 * Ownership: submit moves the item to the commit thread; take_done moves it back. The
 * plaintext patient id is wiped by the commit thread once blinded.
 * Thread: submit and take_done from any thread; no lock is held across the flush. */
#ifndef HDX_COMMIT_H
#define HDX_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "crypto/keys.h"
#include "merkle/receipt.h"
#include "store/record.h"
#include "store/store.h"

struct hdx_intake_item {
    struct hdx_intake_item *next;
    /* filled by the producer */
    uint8_t kind;
    char sender[HDX_SENDER_MAX + 1];
    char type[HDX_TYPE_MAX + 1];
    char control_id[200]; /* "" : no duplicate detection */
    char patient_id[200]; /* plaintext; wiped after blinding */
    uint8_t *body;        /* malloc'd, owned by the item */
    size_t body_len;
    void *origin;   /* the producer's handle (e.g. its connection); opaque here */
    uint8_t *reply; /* the producer's prepared answer (e.g. the AA), malloc'd or NULL */
    size_t reply_len;
    int64_t received_us; /* monotonic: when its frame arrived (0: unknown); the ACK latency */
    /* filled by hdx_intake_blind (the producer's thread, or the sealer if it did not) */
    int blinded;
    int content_given; /* the producer already put the content digest in content (computed
                        * as hdx_content_digest_kind would: a DICOM data set as it arrived) */
    uint8_t dedup[HDX_BLIND_LEN];   /* all zero: no duplicate detection (no control id) */
    uint8_t content[HDX_BLIND_LEN]; /* content digest, with dedup */
    /* filled by the commit thread */
    int status;           /* HDX_OK or a negative hdx_err */
    int duplicate;        /* already stored: seq is the earlier record's */
    uint64_t reused_from; /* stored although its control id was: the earlier record's seq */
    uint64_t seq;
    int64_t time_us;
    uint8_t patient[HDX_BLIND_LEN];
    uint8_t leaf_hash[HDX_HASH_LEN];
    int64_t durable_us; /* when the batch's commit returned (0 on failure) */
    /* The signed receipt (merkle/receipt.h) of a stored item, duplicates included, when
     * receipts are on; NULL otherwise. One reference, released by hdx_intake_item_free. */
    struct hdx_receipt_batch *receipt_batch;
    uint32_t receipt_index;
    /* A device stream checkpoint (proto/checkpoint.h): the seqs of the messages it covers,
     * marked verified or not in the checkpoint's own transaction. covers is malloc'd, owned. */
    int checkpoint, verified;
    uint64_t *covers;
    size_t ncovers;
    /* kind HDX_KIND_ADMIN (commit/admin.h): the admin_queue row whose statement body is;
     * applied to the device registry and deleted in the record's own transaction. */
    int64_t admin_id;
    /* A producer without a connection (hdxd's own admin statements: a login's used code, an
     * enrolment) that must act on the outcome: called on the network thread once the record
     * is durable or has failed (status). NULL: nobody. */
    void (*on_done)(void *arg, const struct hdx_intake_item *it);
    void *done_arg;
};

struct hdx_commit;

#define HDX_COMMIT_HIST 16 /* batch sizes 1, 2-3, 4-7, ... 2^15 and more */
struct hdx_commit_stats {
    uint64_t batches, records, duplicates, failures;
    uint64_t last_seq;
    uint64_t batch_hist[HDX_COMMIT_HIST]; /* batches by number of items, powers of two */
    uint64_t seal_ns, flush_ns;           /* time the two stages spent working */
};

/* Takes ownership of store (opened read-write) but not of kr. notify is called from the
 * commit thread after each batch; it must only wake the consumer (e.g. write an eventfd). */
/* dedup_window: how many of the newest duplicate tokens are kept for duplicate detection
 * (commit/dedup.h); they are read back from the store at start. */
/* log_key (Ed25519, may be NULL in tests) signs a tree head at most every
 * HDX_STH_INTERVAL_US while records arrive, and once more when traffic stops; the head is
 * stored in the same transaction as the records it covers, then written to head_file (may
 * be NULL). At start the store's tree must match its newest signed head and the head file;
 * if not, the pipeline starts read-only (log_alarm line): every batch then fails with
 * HDX_E_INTEGRITY and nothing is written. */
#define HDX_STH_INTERVAL_US 1000000
/* receipts (needs log_key): after each committed batch, one signature over the batch's
 * receipt tree; every item of the batch gets its receipt. */
int hdx_commit_start(struct hdx_store *store, const struct hdx_keyring *kr, int batch_max,
                     size_t dedup_window, EVP_PKEY *log_key, int receipts, const char *head_file,
                     void (*notify)(void *arg), void *arg, struct hdx_commit **out);
void hdx_commit_submit(struct hdx_commit *c, struct hdx_intake_item *item);
/* The same for a list linked by next (in order), with one wake-up. */
void hdx_commit_submit_list(struct hdx_commit *c, struct hdx_intake_item *head);
/* Returns the completed items in commit order (a list linked by next), or NULL. */
struct hdx_intake_item *hdx_commit_take_done(struct hdx_commit *c);
/* Commits what is queued, stops the thread, closes the store. Items still in the done list
 * are freed. */
void hdx_commit_stop(struct hdx_commit *c);
int hdx_commit_read_only(const struct hdx_commit *c);
void hdx_commit_get_stats(struct hdx_commit *c, struct hdx_commit_stats *out);

struct hdx_intake_item *hdx_intake_item_new(const uint8_t *body, size_t len);
void hdx_intake_item_free(struct hdx_intake_item *item);

/* The keyed tokens of an item, which need no seq: its patient token (the plaintext patient id
 * is wiped), its duplicate token and its content digest. Producers call it on their own
 * thread with their own key context, so this work leaves the serial stage; the sealer does it
 * for an item that arrives without. */
int hdx_intake_blind(struct hdx_intake_item *it, struct hdx_keyctx *kc);

/* The duplicate token of (sender, control id), also used by tools. */
int hdx_dedup_token(const struct hdx_keyring *kr, const char *sender, const char *control_id,
                    uint8_t out[HDX_BLIND_LEN]);
/* The same through a per-thread key context (keys.h), for bulk checks (hdx verify). */
int hdx_dedup_token_kc(struct hdx_keyctx *kc, const char *sender, const char *control_id,
                       uint8_t out[HDX_BLIND_LEN]);
/* What makes a resend identical: the keyed digest (blind index, domain "content") of the
 * message's bytes as received with segment terminators normalised (CR, LF, CRLF alike; none
 * counted at the end), kept with its duplicate token (docs/HL7.md, "Duplicates"). */
int hdx_content_digest_kc(struct hdx_keyctx *kc, const uint8_t *body, size_t len,
                          uint8_t out[HDX_BLIND_LEN]);
/* The content digest of a record of this kind: the above for HL7 v2 (and the other text
 * kinds), the keyed digest of the bytes exactly as they are for a DICOM instance. */
int hdx_content_digest_kind(struct hdx_keyctx *kc, int kind, const uint8_t *body, size_t len,
                            uint8_t out[HDX_BLIND_LEN]);

#endif
