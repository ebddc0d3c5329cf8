#include "commit/commit.h"
#include "commit/admin.h"
#include "commit/dedup.h"
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
#include "core/util.h"

struct hdx_commit {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct hdx_intake_item *queue_head, *queue_tail;
    struct hdx_intake_item *done_head, *done_tail;
    int stopping;
    /* owned by the commit thread only */
    struct hdx_store *store;
    const struct hdx_keyring *kr;
    struct hdx_dedup *dedup;
    size_t batch_added; /* tokens added to the window by the current batch */
    int batch_max;
    uint64_t last_seq;
    int64_t last_time;
    uint8_t last_chain[HDX_HASH_LEN];
    struct merkle tree; /* leaf i = record seq i + 1; nodes committed with the batch */
    struct merkle_store tree_store;
    EVP_PKEY *log_key;                   /* signs tree heads; NULL: none are made */
    struct hdx_receipt_signer *receipts; /* signs one receipt batch per commit; NULL: off */
    struct hdx_receipt_entry *entries;   /* batch_max receipt entries */
    char head_file[4096];                /* newest head outside the store; "" = none */
    int read_only;     /* the store failed its signed heads: nothing more is written */
    uint64_t sth_size; /* size of the newest signed tree head */
    int64_t sth_us;    /* when it was made */
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

/* Prepares, seals and appends one item; returns HDX_OK, or an error that fails the batch. */
static int commit_one(struct hdx_commit *c, struct hdx_intake_item *it)
{
    struct hdx_record r;
    int rc;
    memset(&r, 0, sizeof(r));
    if (it->patient_id[0]) {
        rc = hdx_blind(c->kr, "patient", it->patient_id, strlen(it->patient_id), it->patient);
        sodium_memzero(it->patient_id, sizeof(it->patient_id));
        if (rc != HDX_OK) return rc;
    }
    if (it->control_id[0]) {
        rc = hdx_dedup_token(c->kr, it->sender, it->control_id, r.dedup);
        if (rc != HDX_OK) return rc;
        if (hdx_dedup_find(c->dedup, r.dedup, &it->seq)) {
            it->duplicate = 1;
            /* The resend usually means the first AA was lost: its receipt goes out again,
             * so the stored record's time and leaf hash are needed. */
            if (c->receipts) {
                rc = hdx_store_get(c->store, it->seq, &r);
                if (rc == HDX_OK) {
                    it->time_us = r.time_us;
                    memcpy(it->leaf_hash, r.leaf_hash, HDX_HASH_LEN);
                }
                hdx_record_clear(&r);
                return rc;
            }
            return HDX_OK;
        }
    }
    int64_t now = hdx_now_us();
    r.seq = c->last_seq + 1;
    r.time_us = now > c->last_time ? now : c->last_time; /* never backwards: --since bisects */
    r.kind = it->kind;
    memcpy(r.sender, it->sender, sizeof(r.sender));
    memcpy(r.type, it->type, sizeof(r.type));
    memcpy(r.patient, it->patient, HDX_BLIND_LEN);
    rc = hdx_record_seal(&r, c->kr, it->body, it->body_len);
    if (rc == HDX_OK) {
        hdx_record_leaf_hash(&r, r.leaf_hash);
        hdx_record_chain(c->last_chain, r.leaf_hash, r.chain);
        rc = hdx_store_append(c->store, &r);
    }
    if (rc == HDX_OK)
        rc = merkle_append(&c->tree, r.leaf_hash); /* its new nodes join the transaction */
    if (rc == HDX_OK && it->checkpoint && it->ncovers)
        rc = hdx_store_marks_put(c->store, it->covers, it->ncovers, r.seq, it->verified);
    if (rc == HDX_OK && it->kind == HDX_KIND_ADMIN) /* the registry changes with its record */
        rc = hdx_admin_commit(c->store, it->admin_id, it->body, it->body_len, r.time_us);
    if (rc == HDX_OK) {
        if (it->control_id[0]) {
            hdx_dedup_add(c->dedup, r.dedup, r.seq); /* also catches a repeat in this batch */
            c->batch_added++;
        }
        c->last_seq = r.seq;
        c->last_time = r.time_us;
        memcpy(c->last_chain, r.chain, HDX_HASH_LEN);
        it->seq = r.seq;
        it->time_us = r.time_us;
        memcpy(it->leaf_hash, r.leaf_hash, HDX_HASH_LEN);
    }
    hdx_record_clear(&r);
    return rc;
}

/* Signs and stores a tree head for the current tree inside the open transaction, when one is
 * due: the tree grew and the last head is a second old (or force). */
static int maybe_sth(struct hdx_commit *c, int force, struct hdx_sth *made)
{
    made->tree_size = 0;
    if (!c->log_key || merkle_size(&c->tree) <= c->sth_size) return HDX_OK;
    if (!force && hdx_monotonic_us() - c->sth_us < HDX_STH_INTERVAL_US) return HDX_OK;
    made->tree_size = merkle_size(&c->tree);
    made->timestamp_ms = (uint64_t)(hdx_now_us() / 1000);
    int rc = merkle_root(&c->tree, made->root);
    if (rc == HDX_OK) rc = hdx_sth_sign(made, c->log_key);
    if (rc == HDX_OK) rc = hdx_store_sth_put(c->store, made);
    if (rc != HDX_OK) made->tree_size = 0;
    return rc;
}

static void sth_committed(struct hdx_commit *c, const struct hdx_sth *made)
{
    if (!made->tree_size) return;
    /* After the commit: the file never names a head the store might not hold. */
    if (c->head_file[0] && hdx_sth_file_write(c->head_file, made) != HDX_OK)
        hdx_error("head_file_write_failed", "tree_size=%llu", (unsigned long long)made->tree_size);
    c->sth_size = made->tree_size;
    c->sth_us = hdx_monotonic_us();
}

/* One signature for the whole batch (merkle/receipt.h). A failure here costs the receipts,
 * never the records: they are already durable and their AA goes out without a ZRC. */
static void make_receipts(struct hdx_commit *c, struct hdx_intake_item *batch)
{
    size_t n = 0;
    for (struct hdx_intake_item *it = batch; it; it = it->next) {
        c->entries[n].seq = it->seq;
        c->entries[n].time_us = it->time_us;
        memcpy(c->entries[n].leaf_hash, it->leaf_hash, HDX_HASH_LEN);
        n++;
    }
    struct hdx_receipt_batch *rb;
    int rc = hdx_receipt_batch_new(c->entries, n, c->receipts, (unsigned)n, &rb);
    if (rc != HDX_OK) {
        hdx_error("receipt_failed", "err=%s records=%zu", hdx_strerror(rc), n);
        return;
    }
    uint32_t i = 0;
    for (struct hdx_intake_item *it = batch; it; it = it->next) {
        it->receipt_batch = rb;
        it->receipt_index = i++;
    }
}

static int commit_batch(struct hdx_commit *c, struct hdx_intake_item *batch)
{
    if (c->read_only) return HDX_E_INTEGRITY;
    struct hdx_sth sth = {0};
    uint64_t saved_seq = c->last_seq;
    int64_t saved_time = c->last_time;
    uint8_t saved_chain[HDX_HASH_LEN];
    memcpy(saved_chain, c->last_chain, HDX_HASH_LEN);
    c->batch_added = 0;
    int rc = hdx_store_begin(c->store);
    for (struct hdx_intake_item *it = batch; it && rc == HDX_OK; it = it->next)
        rc = commit_one(c, it);
    if (rc == HDX_OK) rc = maybe_sth(c, 0, &sth);
    if (rc == HDX_OK) rc = hdx_store_commit(c->store);
    if (rc == HDX_OK) sth_committed(c, &sth);
    if (rc == HDX_OK && c->receipts) make_receipts(c, batch);
    if (rc != HDX_OK) {
        hdx_store_rollback(c->store);
        c->last_seq = saved_seq;
        c->last_time = saved_time;
        memcpy(c->last_chain, saved_chain, HDX_HASH_LEN);
        hdx_dedup_forget_newest(c->dedup, c->batch_added); /* they were never stored */
        if (merkle_open(&c->tree, saved_seq, &c->tree_store) != HDX_OK)
            hdx_error("merkle_reopen_failed", "size=%llu", (unsigned long long)saved_seq);
        size_t refused = 0;
        for (struct hdx_intake_item *it = batch; it; it = it->next)
            refused++;
        hdx_error("commit_failed", "err=%s records_refused=%zu", hdx_strerror(rc), refused);
    }
    return rc;
}

static struct hdx_intake_item *take_batch(struct hdx_commit *c, int *stop)
{
    pthread_mutex_lock(&c->lock);
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
    }
    *stop = c->stopping && !c->queue_head && !head;
    pthread_mutex_unlock(&c->lock);
    return head;
}

static void finish_batch(struct hdx_commit *c, struct hdx_intake_item *batch, int rc)
{
    struct hdx_intake_item *tail = batch;
    uint64_t n = 0, dups = 0;
    int64_t durable = rc == HDX_OK ? hdx_now_us() : 0;
    for (struct hdx_intake_item *it = batch; it; it = it->next) {
        if (rc != HDX_OK) {
            it->status = rc;
            it->duplicate = 0;
            it->seq = 0;
        }
        it->durable_us = durable;
        n++;
        dups += (uint64_t)it->duplicate;
        tail = it;
    }
    pthread_mutex_lock(&c->lock);
    if (c->done_tail)
        c->done_tail->next = batch;
    else
        c->done_head = batch;
    c->done_tail = tail;
    c->stats.batches++;
    if (rc == HDX_OK) {
        c->stats.records += n - dups;
        c->stats.duplicates += dups;
    } else {
        c->stats.failures += n;
    }
    c->stats.last_seq = c->last_seq;
    pthread_mutex_unlock(&c->lock);
    c->notify(c->notify_arg);
}

/* A tree head for records that arrived less than a second before traffic stopped. */
static void idle_sth(struct hdx_commit *c)
{
    struct hdx_sth sth;
    if (c->read_only || !c->log_key || merkle_size(&c->tree) <= c->sth_size ||
        hdx_monotonic_us() - c->sth_us < HDX_STH_INTERVAL_US || hdx_store_begin(c->store) != HDX_OK)
        return;
    if (maybe_sth(c, 1, &sth) == HDX_OK && hdx_store_commit(c->store) == HDX_OK)
        sth_committed(c, &sth);
    else
        hdx_store_rollback(c->store);
}

static void *commit_main(void *arg)
{
    struct hdx_commit *c = arg;
    int stop = 0;
    while (!stop) {
        struct hdx_intake_item *batch = take_batch(c, &stop);
        if (!batch) {
            idle_sth(c);
            continue;
        }
        finish_batch(c, batch, commit_batch(c, batch));
    }
    c->sth_us = 0; /* the final head covers everything committed before the stop */
    idle_sth(c);
    return NULL;
}

static void load_token(void *ctx, const uint8_t *token, uint64_t seq)
{
    hdx_dedup_add(ctx, token, seq);
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

int hdx_commit_start(struct hdx_store *store, const struct hdx_keyring *kr, int batch_max,
                     size_t dedup_window, EVP_PKEY *log_key, int receipts, const char *head_file,
                     void (*notify)(void *arg), void *arg, struct hdx_commit **out)
{
    *out = NULL;
    struct hdx_commit *c = calloc(1, sizeof(*c));
    int bmax = batch_max > 0 ? batch_max : 1;
    if (!c || !(c->dedup = hdx_dedup_new(dedup_window)) ||
        !(c->entries = calloc((size_t)bmax, sizeof(*c->entries)))) {
        if (c) hdx_dedup_free(c->dedup);
        free(c);
        return HDX_E_NOMEM;
    }
    if (receipts && log_key && hdx_receipt_signer_new(log_key, &c->receipts) != HDX_OK) {
        hdx_dedup_free(c->dedup);
        free(c->entries);
        free(c);
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
    if (rc == HDX_OK && check_tree(c) != HDX_OK) {
        /* Never write on a tampered log, but stay up: senders get AR and operators can read
         * the alarm, query and verify. */
        c->read_only = 1;
        hdx_error("log_alarm", "state=read_only reason=\"store does not match its signed tree "
                               "heads\" action=\"run hdx verify\"");
    }
    if (rc == HDX_OK)
        rc =
            hdx_store_dedup_load(store, c->last_seq > dedup_window ? c->last_seq - dedup_window : 0,
                                 load_token, c->dedup);
    if (rc != HDX_OK) {
        hdx_dedup_free(c->dedup);
        hdx_receipt_signer_free(c->receipts);
        free(c->entries);
        free(c);
        return rc;
    }
    c->stats.last_seq = c->last_seq;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (pthread_create(&c->thread, NULL, commit_main, c) != 0) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        hdx_dedup_free(c->dedup);
        hdx_receipt_signer_free(c->receipts);
        free(c->entries);
        free(c);
        return HDX_E_NOMEM;
    }
    *out = c;
    return HDX_OK;
}

void hdx_commit_submit(struct hdx_commit *c, struct hdx_intake_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->queue_tail)
        c->queue_tail->next = item;
    else
        c->queue_head = item;
    c->queue_tail = item;
    pthread_cond_signal(&c->wake);
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
    pthread_join(c->thread, NULL);
    for (struct hdx_intake_item *it = c->done_head, *next; it; it = next) {
        next = it->next;
        hdx_intake_item_free(it);
    }
    hdx_store_close(c->store);
    hdx_dedup_free(c->dedup);
    hdx_receipt_signer_free(c->receipts);
    free(c->entries);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
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
