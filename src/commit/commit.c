#include "commit/commit.h"
#include "commit/admin.h"
#include "commit/dedup.h"
#include "proto/checkpoint.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"

/* DESIGN (the pipeline): two stages, each its own thread.
 *   sealer  (commit_main): takes what is queued, blinds, detects duplicates, assigns seq and
 *           time, seals, hashes into the chain and the Merkle tree, signs a tree head when
 *           one is due -- all in memory -- and hands the prepared batch to the flusher.
 *   flusher (flush_main):  writes the prepared batch (records, tree nodes, head) in one
 *           transaction and ONE flush, writes the head file, signs the receipts, and only
 *           then moves the items to the done list (invariant 1).
 * While batch N is being flushed, batch N+1 is prepared; at most one prepared batch waits,
 * so the sealer waits rather than run ahead, and what arrives meanwhile gathers in the queue
 * into the next (larger) batch. Batches are flushed strictly in seq order.
 * Failure: a batch that fails in the flusher fails every batch after it (they hold seqs that
 * continue it), the flag is sticky like the store's error, and nothing more is written or
 * acknowledged until a restart rebuilds the state from the store. */
struct node_put {
    unsigned level;
    uint64_t index;
    uint8_t hash[HDX_HASH_LEN];
};

struct prepared_rec {
    struct hdx_record r; /* r.ct borrows from leaf */
    uint8_t *leaf;       /* the leaf encoding, owned */
    size_t leaf_len;
    uint8_t content[HDX_BLIND_LEN]; /* content digest, when r.dedup is set */
    int reused;
    struct hdx_intake_item *it;
};

struct batch {
    struct hdx_intake_item *items; /* linked by next, in order */
    size_t nitems;
    struct prepared_rec *recs; /* the items that become records */
    size_t nrecs;
    struct node_put *nodes;
    size_t nnodes, nodes_cap;
    struct hdx_sth sth; /* tree_size 0: no head in this batch */
    int status;         /* HDX_OK, or why the sealer refused it */
    int64_t seal_ns;
};

struct hdx_commit {
    pthread_t thread, flusher;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* sealer: work queued, or the slot became free */
    pthread_cond_t flush_wake; /* flusher: a batch is ready */
    struct hdx_intake_item *queue_head, *queue_tail;
    struct hdx_intake_item *done_head, *done_tail;
    struct batch *ready; /* prepared, waiting for the flusher (at most one) */
    int stopping, flush_stop;
    int flushing; /* the flusher holds a batch (under lock) */
    int synced;   /* ... whose records are durable already: only its index commit is left */
    int failed;   /* sticky: a flush failed (under lock) */
    /* owned by the sealer */
    const struct hdx_keyring *kr;
    struct hdx_keyctx *kc;
    struct hdx_dedup *dedup;
    int batch_max;
    uint64_t last_seq;
    int64_t last_time;
    uint8_t last_chain[HDX_HASH_LEN];
    struct merkle tree; /* leaf i = record seq i + 1; nodes go out with the batch */
    struct batch *cur;  /* the batch being prepared: tree nodes are collected into it */
    EVP_PKEY *log_key;  /* signs tree heads; NULL: none are made */
    int read_only;      /* the store failed its signed heads: nothing more is written */
    uint64_t sth_size;  /* size of the newest signed tree head */
    int64_t sth_us;     /* when it was made */
    /* owned by the flusher */
    struct hdx_store *store;
    struct merkle_store tree_store;      /* the store's own node callbacks */
    struct hdx_receipt_signer *receipts; /* signs one receipt batch per commit; NULL: off */
    struct hdx_receipt_entry *entries;   /* batch_max receipt entries */
    struct hdx_store_entry *rows;        /* batch_max rows */
    char head_file[4096];                /* newest head outside the store; "" = none */
    void (*notify)(void *arg);
    void *notify_arg;
    struct hdx_commit_stats stats; /* under lock */
};

struct hdx_intake_item *hdx_intake_item_new(const uint8_t *body, size_t len)
{
    struct hdx_intake_item *it = calloc(1, sizeof(*it));
    if (!it) return NULL;
    it->body = malloc(len ? len : 1);
    if (!it->body) {
        free(it);
        return NULL;
    }
    memcpy(it->body, body, len);
    it->body_len = len;
    return it;
}

void hdx_intake_item_free(struct hdx_intake_item *item)
{
    if (!item) return;
    /* The body is PHI: wipe it before the allocator may hand the memory out again. */
    sodium_memzero(item->body, item->body_len);
    sodium_memzero(item->patient_id, sizeof(item->patient_id));
    free(item->body);
    free(item->reply);
    hdx_receipt_batch_release(item->receipt_batch);
    free(item->covers);
    free(item);
}

#define DEDUP_INPUT_MAX (HDX_SENDER_MAX + 1 + 200)

/* What the duplicate token blinds; returns its length, or 0 when a part is too long. */
static size_t dedup_input(const char *sender, const char *control_id, char buf[DEDUP_INPUT_MAX])
{
    size_t slen = strlen(sender), clen = strlen(control_id);
    if (slen > HDX_SENDER_MAX || clen >= 200) return 0;
    memcpy(buf, sender, slen);
    buf[slen] = 0; /* NUL separates the parts: no sender/id pair can collide with another */
    memcpy(buf + slen + 1, control_id, clen);
    return slen + 1 + clen;
}

int hdx_dedup_token(const struct hdx_keyring *kr, const char *sender, const char *control_id,
                    uint8_t out[HDX_BLIND_LEN])
{
    char buf[DEDUP_INPUT_MAX];
    size_t len = dedup_input(sender, control_id, buf);
    return len ? hdx_blind(kr, "dedup", buf, len, out) : HDX_E_INVAL;
}

int hdx_dedup_token_kc(struct hdx_keyctx *kc, const char *sender, const char *control_id,
                       uint8_t out[HDX_BLIND_LEN])
{
    char buf[DEDUP_INPUT_MAX];
    size_t len = dedup_input(sender, control_id, buf);
    return len ? hdx_keyctx_blind(kc, "dedup", buf, len, out) : HDX_E_INVAL;
}

/* Segment terminators are normalised first (CR, LF and CRLF are one terminator; terminators
 * at the end do not count), as the HL7 parser reads them: the same message sent once by a
 * client that ends segments in LF and once by one that ends them in CR is one message. */
int hdx_content_digest_kc(struct hdx_keyctx *kc, const uint8_t *body, size_t len,
                          uint8_t out[HDX_BLIND_LEN])
{
    if (!memchr(body, '\n', len)) { /* CR only, as most senders write: already normal */
        while (len && body[len - 1] == '\r')
            len--;
        return hdx_keyctx_blind(kc, "content", body, len, out);
    }
    uint8_t small[4096], *buf = len <= sizeof(small) ? small : malloc(len);
    size_t n = 0;
    if (!buf) return HDX_E_NOMEM;
    for (size_t i = 0; i < len; i++) {
        if (body[i] == '\r' || body[i] == '\n') {
            if (body[i] == '\r' && i + 1 < len && body[i + 1] == '\n') i++;
            buf[n++] = '\r';
        } else {
            buf[n++] = body[i];
        }
    }
    while (n && buf[n - 1] == '\r')
        n--;
    int rc = hdx_keyctx_blind(kc, "content", buf, n, out);
    sodium_memzero(buf, n); /* the message is PHI */
    if (buf != small) free(buf);
    return rc;
}

int hdx_content_digest_kind(struct hdx_keyctx *kc, int kind, const uint8_t *body, size_t len,
                            uint8_t out[HDX_BLIND_LEN])
{
    /* A DICOM instance is binary: a CR byte is not a segment terminator there. */
    if (kind == HDX_KIND_DICOM) return hdx_keyctx_blind(kc, "content", body, len, out);
    return hdx_content_digest_kc(kc, body, len, out);
}

int hdx_intake_blind(struct hdx_intake_item *it, struct hdx_keyctx *kc)
{
    int rc = HDX_OK;
    if (it->blinded) return HDX_OK;
    if (it->patient_id[0]) {
        rc = hdx_keyctx_blind(kc, "patient", it->patient_id, strlen(it->patient_id), it->patient);
        sodium_memzero(it->patient_id, sizeof(it->patient_id));
    }
    if (rc == HDX_OK && it->control_id[0]) {
        rc = hdx_dedup_token_kc(kc, it->sender, it->control_id, it->dedup);
        if (rc == HDX_OK && !it->content_given)
            rc = hdx_content_digest_kind(kc, it->kind, it->body, it->body_len, it->content);
    }
    it->blinded = rc == HDX_OK;
    return rc;
}

/* ---------- the sealer ---------- */

static void batch_free(struct batch *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nrecs; i++)
        free(b->recs[i].leaf);
    free(b->recs);
    free(b->nodes);
    free(b);
}

/* The sealer's tree store: merkle_append only puts (merkle.h), and the nodes it puts go out
 * with the batch, in its transaction. Levels below the stored minimum are folded from the
 * leaves by the store and never written. */
static int sealer_node_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct hdx_commit *c = ctx;
    struct batch *b = c->cur;
    if (level < HDX_STORE_MERKLE_MIN_LEVEL) return HDX_OK;
    if (!b) return HDX_E_INVAL;
    if (b->nnodes == b->nodes_cap) {
        size_t cap = b->nodes_cap ? b->nodes_cap * 2 : 16;
        struct node_put *p = realloc(b->nodes, cap * sizeof(*p));
        if (!p) return HDX_E_NOMEM;
        b->nodes = p;
        b->nodes_cap = cap;
    }
    b->nodes[b->nnodes].level = level;
    b->nodes[b->nnodes].index = index;
    memcpy(b->nodes[b->nnodes].hash, hash, HDX_HASH_LEN);
    b->nnodes++;
    return HDX_OK;
}

static int sealer_node_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    return HDX_E_INVAL; /* the sealer never reads nodes after start (merkle_append has no get) */
}

/* Blinds, checks for a duplicate and seals one item into the batch. Returns HDX_OK, or an
 * error that fails the batch. */
static int seal_one(struct hdx_commit *c, struct batch *b, struct hdx_intake_item *it)
{
    struct prepared_rec *p = &b->recs[b->nrecs];
    struct hdx_record *r = &p->r;
    int rc;
    memset(p, 0, sizeof(*p));
    if (!it->blinded && (rc = hdx_intake_blind(it, c->kc)) != HDX_OK) return rc;
    if (it->control_id[0]) {
        memcpy(r->dedup, it->dedup, HDX_BLIND_LEN);
        memcpy(p->content, it->content, HDX_BLIND_LEN);
        uint64_t earlier = 0;
        int found = hdx_dedup_find(c->dedup, r->dedup, p->content, &earlier);
        if (found == HDX_DEDUP_SAME) {
            /* Stored once; the flusher finds the stored record's receipt fields. */
            it->duplicate = 1;
            it->seq = earlier;
            return HDX_OK;
        }
        if (found == HDX_DEDUP_REUSED) {
            p->reused = 1;
            it->reused_from = earlier;
        }
    }
    int64_t now = hdx_now_us();
    r->seq = c->last_seq + 1;
    r->time_us = now > c->last_time ? now : c->last_time; /* never backwards: --since bisects */
    r->kind = it->kind;
    memcpy(r->sender, it->sender, sizeof(r->sender));
    memcpy(r->type, it->type, sizeof(r->type));
    memcpy(r->patient, it->patient, HDX_BLIND_LEN);
    rc = hdx_record_seal_leaf(r, c->kr, c->kc, it->body, it->body_len, &p->leaf, &p->leaf_len);
    if (rc != HDX_OK) return rc;
    b->nrecs++; /* owned by the batch from here on */
    hdx_record_chain(c->last_chain, r->leaf_hash, r->chain);
    rc = merkle_append(&c->tree, r->leaf_hash); /* its nodes join the batch */
    if (rc != HDX_OK) return rc;
    if (it->control_id[0]) hdx_dedup_add(c->dedup, r->dedup, p->content, r->seq);
    c->last_seq = r->seq;
    c->last_time = r->time_us;
    memcpy(c->last_chain, r->chain, HDX_HASH_LEN);
    it->seq = r->seq;
    it->time_us = r->time_us;
    memcpy(it->leaf_hash, r->leaf_hash, HDX_HASH_LEN);
    p->it = it;
    return HDX_OK;
}

/* Signs a tree head for the current tree when one is due: the tree grew and the last head is
 * a second old (or force). It is stored in the batch's transaction. */
static int maybe_sth(struct hdx_commit *c, int force, struct hdx_sth *made)
{
    made->tree_size = 0;
    if (!c->log_key || merkle_size(&c->tree) <= c->sth_size) return HDX_OK;
    if (!force && hdx_monotonic_us() - c->sth_us < HDX_STH_INTERVAL_US) return HDX_OK;
    made->tree_size = merkle_size(&c->tree);
    made->timestamp_ms = (uint64_t)(hdx_now_us() / 1000);
    int rc = merkle_root(&c->tree, made->root); /* from the frontier: no get */
    if (rc == HDX_OK) rc = hdx_sth_sign(made, c->log_key);
    if (rc != HDX_OK) {
        made->tree_size = 0;
        return rc;
    }
    c->sth_size = made->tree_size;
    c->sth_us = hdx_monotonic_us();
    return HDX_OK;
}

/* Prepares a taken batch (items may be NULL: a head only). The sealer's state moves on at
 * once; if the flush fails, every later batch fails too (see DESIGN above). */
static struct batch *seal_batch(struct hdx_commit *c, struct hdx_intake_item *items, int force_sth)
{
    int64_t t0 = hdx_monotonic_us();
    struct batch *b = calloc(1, sizeof(*b));
    size_t n = 0;
    for (struct hdx_intake_item *it = items; it; it = it->next)
        n++;
    if (!b || !(b->recs = calloc(n ? n : 1, sizeof(*b->recs)))) {
        free(b);
        return NULL;
    }
    b->items = items;
    b->nitems = n;
    if (c->read_only) {
        b->status = HDX_E_INTEGRITY;
        return b;
    }
    c->cur = b;
    int rc = HDX_OK;
    for (struct hdx_intake_item *it = items; it && rc == HDX_OK; it = it->next)
        rc = seal_one(c, b, it);
    if (rc == HDX_OK) rc = maybe_sth(c, force_sth, &b->sth);
    c->cur = NULL;
    b->status = rc;
    if (rc != HDX_OK) {
        /* The tree or the window may hold part of this batch: nothing after it may be
         * written, as after a failed flush. */
        pthread_mutex_lock(&c->lock);
        c->failed = 1;
        pthread_mutex_unlock(&c->lock);
        hdx_error("seal_failed", "err=%s records_refused=%zu", hdx_strerror(rc), n);
    }
    b->seal_ns = (hdx_monotonic_us() - t0) * 1000;
    return b;
}

/* Under c->lock: 1 while take_batch must not take the queue yet. */
static int sealer_held(const struct hdx_commit *c)
{
    return c->ready || (c->flushing && !c->synced && !c->stopping);
}

/* Waits until the flusher's slot is free and the flusher is idle or past its flush (or a
 * stop), then takes everything queued, up to batch_max. Why that late: senders that wait for
 * their ACK (the usual MLLP sender) send again only after a flush, so a batch taken while a
 * flush is still under way is small, and every message in it waits one more whole flush in
 * the slot. Taken once the records of the batch in flight are durable, the next batch is
 * sealed while the flusher finishes the index (sealing costs a fraction of that), and holds
 * everything that arrived during the flush. */
static struct hdx_intake_item *take_batch(struct hdx_commit *c, int *stop)
{
    pthread_mutex_lock(&c->lock);
    while (sealer_held(c))
        pthread_cond_wait(&c->wake, &c->lock);
    if (!c->queue_head && !c->stopping) {
        /* Wake at least once a second so the last records get a signed head when
         * traffic stops. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&c->wake, &c->lock, &until);
    }
    struct hdx_intake_item *head = c->queue_head, *last = head;
    int n = 1;
    while (last && last->next && n < c->batch_max) {
        last = last->next;
        n++;
    }
    if (last) {
        c->queue_head = last->next;
        if (!c->queue_head) c->queue_tail = NULL;
        last->next = NULL;
        hdx_metric_intake_queue(-(int64_t)n);
    }
    *stop = c->stopping && !c->queue_head && !head;
    pthread_mutex_unlock(&c->lock);
    return head;
}

static void hand_over(struct hdx_commit *c, struct batch *b)
{
    pthread_mutex_lock(&c->lock);
    while (c->ready)
        pthread_cond_wait(&c->wake, &c->lock);
    c->ready = b;
    pthread_cond_signal(&c->flush_wake);
    pthread_mutex_unlock(&c->lock);
}

static int sealer_failed(struct hdx_commit *c)
{
    pthread_mutex_lock(&c->lock);
    int f = c->failed;
    pthread_mutex_unlock(&c->lock);
    return f;
}

static void *commit_main(void *arg)
{
    struct hdx_commit *c = arg;
    pthread_setname_np(pthread_self(), "hdx-seal"); /* per-thread CPU in bench/run.sh, top -H */
    int stop = 0;
    while (!stop) {
        struct hdx_intake_item *items = take_batch(c, &stop);
        if (!items) {
            /* A head for records that arrived less than a second before traffic stopped. */
            if (!stop && !c->read_only && c->log_key && merkle_size(&c->tree) > c->sth_size &&
                hdx_monotonic_us() - c->sth_us >= HDX_STH_INTERVAL_US && !sealer_failed(c)) {
                struct batch *b = seal_batch(c, NULL, 1);
                if (b) hand_over(c, b);
            }
            continue;
        }
        struct batch *b = seal_batch(c, items, 0);
        if (!b) {
            /* Out of memory for the batch itself: refuse its items, keep going. */
            for (struct hdx_intake_item *it = items; it; it = it->next)
                it->status = HDX_E_NOMEM;
            b = calloc(1, sizeof(*b));
            if (!b) abort(); /* no way left to answer the senders */
            b->items = items;
            b->status = HDX_E_NOMEM;
        }
        hand_over(c, b);
    }
    /* The final head covers everything committed before the stop. */
    if (!c->read_only && c->log_key && merkle_size(&c->tree) > c->sth_size && !sealer_failed(c)) {
        struct batch *b = seal_batch(c, NULL, 1);
        if (b) hand_over(c, b);
    }
    pthread_mutex_lock(&c->lock);
    while (c->ready)
        pthread_cond_wait(&c->wake, &c->lock);
    c->flush_stop = 1;
    pthread_cond_signal(&c->flush_wake);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---------- the flusher ---------- */

static void sth_committed(struct hdx_commit *c, const struct hdx_sth *made)
{
    if (!made->tree_size) return;
    /* After the commit: the file never names a head the store might not hold. */
    if (c->head_file[0] && hdx_sth_file_write(c->head_file, made) != HDX_OK)
        hdx_error("head_file_write_failed", "tree_size=%llu", (unsigned long long)made->tree_size);
}

/* One signature for the whole batch (merkle/receipt.h). A failure here costs the receipts,
 * never the records: they are already durable and their AA goes out without a ZRC. */
static void make_receipts(struct hdx_commit *c, struct batch *b)
{
    size_t n = 0;
    for (struct hdx_intake_item *it = b->items; it; it = it->next) {
        if (it->duplicate &&
            hdx_store_leaf_at(c->store, it->seq, &it->time_us, it->leaf_hash) != HDX_OK) {
            hdx_error("receipt_failed", "reason=duplicate_lookup seq=%llu",
                      (unsigned long long)it->seq);
            return;
        }
        c->entries[n].seq = it->seq;
        c->entries[n].time_us = it->time_us;
        memcpy(c->entries[n].leaf_hash, it->leaf_hash, HDX_HASH_LEN);
        n++;
    }
    if (!n) return;
    struct hdx_receipt_batch *rb;
    int rc = hdx_receipt_batch_new(c->entries, n, c->receipts, (unsigned)n, &rb);
    if (rc != HDX_OK) {
        hdx_error("receipt_failed", "err=%s records=%zu", hdx_strerror(rc), n);
        return;
    }
    uint32_t i = 0;
    for (struct hdx_intake_item *it = b->items; it; it = it->next) {
        it->receipt_batch = rb;
        it->receipt_index = i++;
    }
}

/* Called by the store once the batch's records are durable (before the index commit). */
static void records_durable(void *arg)
{
    struct hdx_commit *c = arg;
    pthread_mutex_lock(&c->lock);
    c->synced = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

/* Each batch's index rows are committed before its ACKs go out, so whatever a sender was
 * acknowledged, any reader (hdx query, a FHIR read, a subscriber catching up, a proof) finds
 * at once. The commit is synchronous=NORMAL: no flush of its own, since the records are
 * durable in their frames already (store.h). Keeping the transaction open across batches for
 * up to 25 ms was measured too (about 8% more msgs/s at 64 connections): not worth breaking
 * read-after-acknowledge. */
/* A batch's index transaction: records (their frames flushed first, inside
 * hdx_store_append_batch), duplicate log, stream marks, registry changes, tree nodes, head. */
static int write_batch(struct hdx_commit *c, struct batch *b)
{
    int rc = hdx_store_begin(c->store);
    if (rc != HDX_OK) return rc;
    for (size_t i = 0; i < b->nrecs; i++) {
        struct prepared_rec *p = &b->recs[i];
        c->rows[i] = (struct hdx_store_entry){&p->r, p->leaf, p->leaf_len,
                                              p->it->control_id[0] ? p->content : NULL, p->reused};
    }
    if (b->nrecs) rc = hdx_store_append_batch(c->store, c->rows, b->nrecs);
    for (size_t i = 0; i < b->nrecs && rc == HDX_OK; i++) {
        struct hdx_intake_item *it = b->recs[i].it;
        if (it->checkpoint && it->ncovers)
            rc = hdx_store_marks_put(c->store, it->covers, it->ncovers, it->seq, it->verified);
        if (rc == HDX_OK && it->kind == HDX_KIND_ADMIN) /* the registry changes with its record */
            rc = hdx_admin_commit(c->store, it->admin_id, it->body, it->body_len, it->time_us);
        else if (rc == HDX_OK && it->admin_id && /* a queued audit record leaves the queue */
                 (rc = hdx_store_admin_dequeue(c->store, it->admin_id)) == HDX_E_NOTFOUND)
            rc = HDX_OK;
    }
    for (size_t i = 0; i < b->nnodes && rc == HDX_OK; i++)
        rc = c->tree_store.put(c->tree_store.ctx, b->nodes[i].level, b->nodes[i].index,
                               b->nodes[i].hash);
    if (rc == HDX_OK && b->sth.tree_size) rc = hdx_store_sth_put(c->store, &b->sth);
    if (rc == HDX_OK && b->nrecs) hdx_store_crash_point("rows_written");
    if (rc == HDX_OK) rc = hdx_store_commit(c->store);
    if (rc != HDX_OK) {
        hdx_store_rollback(c->store);
        return rc;
    }
    hdx_store_crash_point("index_committed");
    return HDX_OK;
}

static unsigned hist_bucket(size_t n)
{
    unsigned k = 0;
    while (n > 1 && k < HDX_COMMIT_HIST - 1) {
        n >>= 1;
        k++;
    }
    return k;
}

static void finish_batch(struct hdx_commit *c, struct batch *b, int rc, int64_t flush_ns)
{
    struct hdx_intake_item *tail = NULL;
    uint64_t dups = 0;
    int64_t durable = rc == HDX_OK ? hdx_now_us() : 0;
    for (struct hdx_intake_item *it = b->items; it; it = it->next) {
        if (rc != HDX_OK) {
            it->status = rc;
            it->duplicate = 0;
            it->seq = 0;
        } else if (it->reused_from) {
            hdx_warn("control_id_reused", "sender=%s seq=%llu earlier_seq=%llu", it->sender,
                     (unsigned long long)it->seq, (unsigned long long)it->reused_from);
        }
        it->durable_us = durable;
        dups += (uint64_t)it->duplicate;
        tail = it;
    }
    pthread_mutex_lock(&c->lock);
    if (tail) {
        if (c->done_tail)
            c->done_tail->next = b->items;
        else
            c->done_head = b->items;
        c->done_tail = tail;
    }
    if (b->nitems) {
        c->stats.batches++;
        c->stats.batch_hist[hist_bucket(b->nitems)]++;
    }
    c->stats.seal_ns += (uint64_t)b->seal_ns;
    c->stats.flush_ns += (uint64_t)flush_ns;
    if (rc == HDX_OK) {
        c->stats.records += b->nitems - dups;
        c->stats.duplicates += dups;
        if (b->nrecs) c->stats.last_seq = b->recs[b->nrecs - 1].r.seq;
    } else {
        c->stats.failures += b->nitems;
    }
    pthread_mutex_unlock(&c->lock);
    hdx_metric_commit_batch(b->nitems, rc == HDX_OK ? b->nitems - dups : 0, dups,
                            rc == HDX_OK ? 0 : b->nitems);
    b->items = NULL;
    if (tail) c->notify(c->notify_arg);
}

static void *flush_main(void *arg)
{
    struct hdx_commit *c = arg;
    pthread_setname_np(pthread_self(), "hdx-flush");
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->ready && !c->flush_stop)
            pthread_cond_wait(&c->flush_wake, &c->lock);
        struct batch *b = c->ready;
        c->ready = NULL;
        c->flushing = b != NULL;
        c->synced = 0;
        int failed = c->failed;
        pthread_cond_signal(&c->wake); /* the slot is free */
        pthread_mutex_unlock(&c->lock);
        if (!b) break;
        int64_t t0 = hdx_monotonic_us();
        int rc = b->status;
        if (rc == HDX_OK && failed) rc = HDX_E_STORE; /* seqs that continue a failed batch */
        if (rc == HDX_OK) rc = write_batch(c, b);
        if (rc == HDX_OK) sth_committed(c, &b->sth);
        if (rc == HDX_OK && b->sth.tree_size) hdx_store_crash_point("head_file_written");
        if (rc == HDX_OK && c->receipts && b->nitems) make_receipts(c, b);
        if (rc != HDX_OK && b->status == HDX_OK) {
            if (!failed)
                hdx_error("commit_failed", "err=%s records_refused=%zu", hdx_strerror(rc),
                          b->nitems);
            pthread_mutex_lock(&c->lock);
            c->failed = 1;
            pthread_mutex_unlock(&c->lock);
        }
        finish_batch(c, b, rc, (hdx_monotonic_us() - t0) * 1000);
        batch_free(b);
        pthread_mutex_lock(&c->lock);
        c->flushing = 0;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

/* ---------- start ---------- */

static void load_token(void *ctx, const uint8_t *token, const uint8_t *content, uint64_t seq)
{
    hdx_dedup_add(ctx, token, content, seq);
}

static int head_matches(struct hdx_commit *c, const struct hdx_sth *sth, const char *what)
{
    uint8_t root[32];
    if (c->log_key && hdx_sth_verify(sth, c->log_key) != HDX_OK) {
        hdx_error("log_alarm", "reason=\"%s: signature invalid\" tree_size=%llu", what,
                  (unsigned long long)sth->tree_size);
        return 0;
    }
    if (sth->tree_size > merkle_size(&c->tree) ||
        merkle_root_at(&c->tree, sth->tree_size, root) != HDX_OK ||
        CRYPTO_memcmp(root, sth->root, 32) != 0) {
        hdx_error("log_alarm",
                  "reason=\"store does not match the %s\" tree_size=%llu store_size=%llu", what,
                  (unsigned long long)sth->tree_size, (unsigned long long)merkle_size(&c->tree));
        return 0;
    }
    return 1;
}

/* The store must hold the tree its newest signed head describes, and the one in the head
 * file: a store cut short, rolled back to an older copy, or with a changed leaf or node,
 * shows here before any write. */
static int check_tree(struct hdx_commit *c)
{
    struct hdx_sth sth, file;
    int rc = hdx_store_sth_latest(c->store, &sth);
    if (rc != HDX_OK && rc != HDX_E_NOTFOUND) return rc;
    if (rc == HDX_OK && !head_matches(c, &sth, "last signed tree head")) return HDX_E_INTEGRITY;
    if (rc == HDX_OK) {
        c->sth_size = sth.tree_size;
        c->sth_us = hdx_monotonic_us();
    }
    int frc = c->head_file[0] ? hdx_sth_file_read(c->head_file, &file) : HDX_E_NOTFOUND;
    if (frc == HDX_E_NOTFOUND) return HDX_OK;
    if (frc != HDX_OK || !head_matches(c, &file, "head file log.sth")) return HDX_E_INTEGRITY;
    return HDX_OK;
}

static int recover_marks(struct hdx_commit *c, const struct hdx_record *r, const uint8_t *pt,
                         size_t len)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    int verified = 0;
    if (strcmp(r->type, HDX_CKPT_TYPE) != 0) return HDX_OK;
    int rc = hdx_checkpoint_record_marks(pt, len, &verified, &seqs, &n);
    if (rc == HDX_OK && n) rc = hdx_store_marks_put(c->store, seqs, n, r->seq, verified);
    free(seqs);
    return rc == HDX_E_INVAL ? HDX_OK : rc; /* not a checkpoint record hdxd wrote: no marks */
}

/* A record found in the segment files whose index row was lost (hdx_store_recover): what the
 * index derives from it is derived again, as the sealer and flusher did for it: its Merkle
 * leaf, its content digest and whether it reused a control id; the stream marks of a
 * checkpoint record (from its ZCV/ZCS segments); the registry change of an admin record (and
 * its queue row goes, so the statement is not sealed twice). */
struct recover_ctx {
    struct hdx_commit *c;
    uint8_t *pt;
    size_t cap;
    uint8_t content[HDX_BLIND_LEN];
};

static int recover_one(void *arg, const struct hdx_record *r, struct hdx_store_entry *e)
{
    struct recover_ctx *x = arg;
    struct hdx_commit *c = x->c;
    static const uint8_t zero[HDX_BLIND_LEN];
    size_t len;
    if (r->seq != merkle_size(&c->tree) + 1) return HDX_E_INTEGRITY;
    if (r->ct_len + 1 > x->cap) {
        uint8_t *p = realloc(x->pt, r->ct_len + 1);
        if (!p) return HDX_E_NOMEM;
        x->pt = p;
        x->cap = r->ct_len + 1;
    }
    int rc = hdx_record_open_into(r, c->kc, x->pt, x->cap, &len);
    if (rc == HDX_OK && memcmp(r->dedup, zero, HDX_BLIND_LEN) != 0) {
        uint64_t earlier;
        rc = hdx_content_digest_kind(c->kc, r->kind, x->pt, len, x->content);
        if (rc == HDX_OK) {
            e->content = x->content;
            e->reused =
                hdx_dedup_find(c->dedup, r->dedup, x->content, &earlier) == HDX_DEDUP_REUSED;
            hdx_dedup_add(c->dedup, r->dedup, x->content, r->seq);
        }
    }
    if (rc == HDX_OK) rc = recover_marks(c, r, x->pt, len);
    if (rc == HDX_OK && r->kind == HDX_KIND_ADMIN)
        rc = hdx_admin_commit(c->store, hdx_store_admin_find(c->store, x->pt, len), x->pt, len,
                              r->time_us);
    if (len) sodium_memzero(x->pt, len);
    if (rc == HDX_OK) rc = merkle_append(&c->tree, r->leaf_hash); /* nodes: same transaction */
    return rc;
}

/* The store's tail first (records durable in segment files but missing from the index), in
 * one transaction with their tree nodes and derived rows. */
static int recover_store(struct hdx_commit *c)
{
    struct recover_ctx x = {c, NULL, 0, {0}};
    uint64_t reindexed = 0, cut = 0;
    int rc = hdx_store_begin(c->store);
    if (rc == HDX_OK) rc = hdx_store_recover(c->store, recover_one, &x, &reindexed, &cut);
    if (rc == HDX_OK) rc = hdx_store_commit(c->store);
    if (rc != HDX_OK) hdx_store_rollback(c->store);
    free(x.pt);
    return rc;
}

static void commit_free(struct hdx_commit *c)
{
    hdx_dedup_free(c->dedup);
    hdx_receipt_signer_free(c->receipts);
    hdx_keyctx_free(c->kc);
    free(c->entries);
    free(c->rows);
    free(c);
}

int hdx_commit_start(struct hdx_store *store, const struct hdx_keyring *kr, int batch_max,
                     size_t dedup_window, EVP_PKEY *log_key, int receipts, const char *head_file,
                     void (*notify)(void *arg), void *arg, struct hdx_commit **out)
{
    *out = NULL;
    struct hdx_commit *c = calloc(1, sizeof(*c));
    int bmax = batch_max > 0 ? batch_max : 1;
    if (!c) return HDX_E_NOMEM;
    if (!(c->dedup = hdx_dedup_new(dedup_window)) ||
        !(c->entries = calloc((size_t)bmax, sizeof(*c->entries))) ||
        !(c->rows = calloc((size_t)bmax, sizeof(*c->rows)))) {
        commit_free(c);
        return HDX_E_NOMEM;
    }
    if (hdx_keyctx_new(kr, &c->kc) != HDX_OK ||
        (receipts && log_key && hdx_receipt_signer_new(log_key, &c->receipts) != HDX_OK)) {
        commit_free(c);
        return HDX_E_CRYPTO;
    }
    c->store = store;
    c->kr = kr;
    c->batch_max = bmax;
    c->notify = notify;
    c->notify_arg = arg;
    c->log_key = log_key;
    snprintf(c->head_file, sizeof(c->head_file), "%s", head_file ? head_file : "");
    hdx_store_merkle(store, &c->tree_store);
    int rc = hdx_store_last(store, &c->last_seq, c->last_chain, &c->last_time);
    if (rc == HDX_OK) rc = merkle_open(&c->tree, c->last_seq, &c->tree_store);
    if (rc == HDX_OK)
        rc =
            hdx_store_dedup_load(store, c->last_seq > dedup_window ? c->last_seq - dedup_window : 0,
                                 load_token, c->dedup);
    if (rc == HDX_OK) {
        rc = recover_store(c);
        if (rc == HDX_E_INTEGRITY) {
            /* The newest index row's frame is missing or damaged: never write on, but stay up
             * for operators (read-only, as for a store that fails its signed heads). */
            c->read_only = 1;
            hdx_error("log_alarm", "state=read_only reason=\"the newest record's segment frame "
                                   "is missing or damaged\" action=\"run hdx verify\"");
            rc = HDX_OK;
        }
    }
    if (rc == HDX_OK) rc = hdx_store_last(store, &c->last_seq, c->last_chain, &c->last_time);
    if (rc == HDX_OK && c->last_seq != merkle_size(&c->tree)) rc = HDX_E_INTEGRITY;
    if (rc == HDX_OK && check_tree(c) != HDX_OK) {
        /* Never write on a tampered log, but stay up: senders get AR and operators can read
         * the alarm, query and verify. */
        c->read_only = 1;
        hdx_error("log_alarm", "state=read_only reason=\"store does not match its signed tree "
                               "heads\" action=\"run hdx verify\"");
    }
    if (rc != HDX_OK) {
        commit_free(c);
        return rc;
    }
    hdx_store_on_durable(store, records_durable, c);
    /* From here the tree's nodes go out with each batch (the flusher writes them). */
    c->tree.st = (struct merkle_store){sealer_node_get, sealer_node_put, c};
    c->stats.last_seq = c->last_seq;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->flush_wake, NULL);
    if (pthread_create(&c->flusher, NULL, flush_main, c) != 0) goto fail;
    if (pthread_create(&c->thread, NULL, commit_main, c) != 0) {
        pthread_mutex_lock(&c->lock);
        c->flush_stop = 1;
        pthread_cond_signal(&c->flush_wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->flusher, NULL);
        goto fail;
    }
    *out = c;
    return HDX_OK;
fail:
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->flush_wake);
    commit_free(c);
    return HDX_E_NOMEM;
}
void hdx_commit_submit(struct hdx_commit *c, struct hdx_intake_item *item)
{
    item->next = NULL;
    hdx_commit_submit_list(c, item);
}

void hdx_commit_submit_list(struct hdx_commit *c, struct hdx_intake_item *head)
{
    struct hdx_intake_item *tail = head;
    int64_t n = 1;
    for (; tail->next; n++)
        tail = tail->next;
    hdx_metric_intake_queue(n); /* before the sealer can take them: the gauge never dips */
    pthread_mutex_lock(&c->lock);
    if (c->queue_tail)
        c->queue_tail->next = head;
    else
        c->queue_head = head;
    c->queue_tail = tail;
    /* A sealer that waits for the flush in flight would only wake to wait again (a context
     * switch per pass of the network loop): the flusher wakes it when it may take a batch. */
    if (!sealer_held(c)) pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

struct hdx_intake_item *hdx_commit_take_done(struct hdx_commit *c)
{
    pthread_mutex_lock(&c->lock);
    struct hdx_intake_item *head = c->done_head;
    c->done_head = c->done_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    return head;
}

void hdx_commit_stop(struct hdx_commit *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL); /* it drains the queue, then stops the flusher */
    pthread_join(c->flusher, NULL);
    for (struct hdx_intake_item *it = c->done_head, *next; it; it = next) {
        next = it->next;
        hdx_intake_item_free(it);
    }
    hdx_store_close(c->store);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->flush_wake);
    commit_free(c);
}

int hdx_commit_read_only(const struct hdx_commit *c)
{
    return c->read_only;
}

void hdx_commit_get_stats(struct hdx_commit *c, struct hdx_commit_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}
