/* hdx verify: checks every record, on every core (each thread takes a contiguous range
 * and starts its chain from the stored chain hash before it; the thread before checks that
 * very hash, so the whole chain is covered). The Merkle tree is checked in the same pass:
 * each thread appends its range's leaves to a tree opened at the size before its range, from
 * the stored nodes the threads before it check (the same induction as the chain), so the
 * records are read once. Only when that finds anything wrong is the tree walked again from
 * the first leaf alone, to name exactly which stored nodes differ. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "commit/admin.h"
#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"
#include "policy/scope.h"
#include "proto/checkpoint.h"
#include "proto/hl7.h"

#define VERIFY_THREADS_MAX 8
#define BAD_REPORT_MAX 100000

static const char verify_usage[] =
    "usage: hdx verify -d DIR [--fast]\n"
    "Walks every record: sequence without gaps, leaf hash, hash chain, AES-GCM tag over the\n"
    "header (seq, time, sender, type, patient token), and the index against the decrypted\n"
    "message. Prints 'bad seq=N reason=...' for each failure; the last line is 'records=N ok'\n"
    "or 'records=N bad=M'. Before it, the newest signed tree head is checked: the log key's\n"
    "signature (DIR/log.pub.pem) and the Merkle root of the first tree_size records\n"
    "('sth tree_size=N root=ok signature=ok', or 'bad sth ...': a store cut short, rolled\n"
    "back or rewritten).\n"
    "Every other table that affects what hdx does is checked too, each failure one line\n"
    "naming the table and its key ('bad TABLE seq=N|tree_size=N|name=NAME reason=...'):\n"
    "  sth           every stored head: signature, root of the stored tree at its size,\n"
    "                timestamps non-decreasing as the tree grows\n"
    "  dedup_log     exactly one row per record with a duplicate token, with that token and\n"
    "                the keyed digest of the message's content (full check only)\n"
    "  stream_marks  exactly the marks the checkpoint records (ZCV verdict, ZCS seqs) imply\n"
    "  devices, device_keys  row by row the replay of the admin records in seq order\n"
    "  users         row by row, column by column, the replay of the user admin records\n"
    "  careteams, consents, break_glass  the same for the policy data's admin records\n"
    "  device_scopes the same for the device_scope admin records (subscribers' scopes)\n"
    "  dicom_aes     the same for the ae_add/ae_remove admin records (DICOM AE titles)\n"
    "  smart_clients the same for the client_* admin records (SMART backend clients: JWK\n"
    "                Set bytes, scope, created_us, revoked_us)\n"
    "  admin_queue   statements not yet committed as admin records: counted, not a failure\n"
    "--fast checks leaf hashes, the chain, the tree, the heads and dedup_log only (no\n"
    "decryption: stream_marks, devices, users, the policy tables, device_scopes and\n"
    "smart_clients are then 'skipped (needs decryption)'): several times faster, for\n"
    "frequent scans.\n"
    "Bodies live in DIR/segments: a record whose frame there is missing or damaged is\n"
    "'bad seq=N reason=\"body missing or damaged in the segment files\"'; frames after the\n"
    "index's last record (a crash between a flush and its index commit) are counted on a\n"
    "'segments unindexed=N' line: hdxd re-indexes them when it starts, so they are no failure.\n"
    "Exit status 0 only when everything is intact.\n";

struct bad {
    uint64_t seq;
    const char *reason;
    const char *table; /* NULL: the record itself ("bad seq=N"); else a derived table's row */
};

/* A stream mark the checkpoint records imply (stream_marks must hold exactly these). */
struct mark {
    uint64_t seq, checkpoint;
    int verified;
};

/* An admin record's statement, kept (as its body: one login's user_totp_used is 60 bytes,
 * its parsed form 700) for the replay of the registry after the walk. */
struct admin_rec {
    uint64_t seq;
    int64_t time_us;
    uint8_t *body;
    size_t len;
};

/* A signed head to hold the records against: the store's newest, and the copy hdxd keeps
 * outside the store (DIR/log.sth), which shows a store restored from an older copy. */
struct head {
    const char *name;
    int present;
    struct hdx_sth sth;
    int have_root;
    uint8_t root[32];
};
#define NHEADS 2

struct verify_job {
    const char *store_path;
    const struct hdx_keyring *kr;
    uint64_t lo, hi; /* inclusive */
    uint64_t checked;
    struct bad *bad;
    size_t nbad, cap;
    int fatal;
    int fast; /* hashes, chain and tree only: no decryption, no index check */
    struct hdx_keyctx *kc;
    uint8_t *pt; /* plaintext buffer, reused record to record; wiped at the end */
    size_t pt_cap;
    size_t pt_len; /* the current record's plaintext, when pt_ok */
    int pt_ok;
    /* The tree over this range (see the top). tree_ok stays 1 only while every leaf was
     * appended in order and every node completed equals the stored one. */
    struct merkle tree;
    struct merkle_store stored;
    int tree_ok;
    const struct head *heads; /* read only here; roots noted per job, merged after */
    int have_root[NHEADS];
    uint8_t root[NHEADS][32];
    /* dedup_log, walked beside the records (a merge in seq order, no per-record query) */
    struct hdx_store_iter *dit;
    int dit_have; /* a row is read and not yet matched */
    int64_t dseq;
    uint8_t dtok[HDX_BLIND_LEN];
    int dtok_ok;
    /* full mode: what the checkpoint and admin records say the derived tables hold */
    struct mark *marks;
    size_t nmarks, marks_cap;
    struct admin_rec *admins;
    size_t nadmins, admins_cap;
};

static void add_bad_in(struct verify_job *j, const char *table, uint64_t seq, const char *reason)
{
    if (j->nbad == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 64;
        struct bad *b = cap <= BAD_REPORT_MAX ? realloc(j->bad, cap * sizeof(*b)) : NULL;
        if (!b) {
            j->fatal = 1;
            return;
        }
        j->bad = b;
        j->cap = cap;
    }
    j->bad[j->nbad++] = (struct bad){seq, reason, table};
}

static void add_bad(struct verify_job *j, uint64_t seq, const char *reason)
{
    add_bad_in(j, NULL, seq, reason);
}

/* Grows *arr (of size elem) to hold one more; 0 on no memory (the job is then fatal). */
static int grow(struct verify_job *j, void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return 1;
    size_t c = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, c * elem);
    if (!p) {
        j->fatal = 1;
        return 0;
    }
    *arr = p;
    *cap = c;
    return 1;
}

/* The covered seqs of a checkpoint record (its ZCS segments, "a-b,c,...", written by hdxd
 * after the ZCV verdict) become the marks it implies. 0 when malformed. */
static int note_marks(struct verify_job *j, const struct hl7_msg *msg, uint64_t ckpt)
{
    struct hl7_view v;
    char word[32];
    if (hl7_get(msg, "ZCV", 1, 2, 1, 0, 0, &v) != 0 || hl7_unescape(msg, v, word, sizeof(word)) < 0)
        return 0;
    int verified = !strcmp(word, "verified");
    for (int occ = 1; hl7_get(msg, "ZCS", occ, 1, 1, 0, 0, &v) == 0; occ++) {
        char *runs = malloc((size_t)v.len + 1);
        if (!runs || hl7_unescape(msg, v, runs, (size_t)v.len + 1) < 0) {
            free(runs);
            return 0;
        }
        const char *p = runs;
        int ok = 1;
        while (ok && *p) {
            uint64_t a, b;
            const char *end;
            ok = hdx_parse_dec(p, &a, &end) == 0;
            b = a;
            if (ok && *end == '-') ok = hdx_parse_dec(end + 1, &b, &end) == 0 && b >= a;
            if (ok && *end == ',')
                end++;
            else if (ok && *end)
                ok = 0;
            for (uint64_t x = a; ok && x <= b; x++) {
                if (!grow(j, (void **)&j->marks, &j->marks_cap, j->nmarks, sizeof(*j->marks))) {
                    ok = 0;
                    break;
                }
                j->marks[j->nmarks++] = (struct mark){x, ckpt, verified};
                if (x == UINT64_MAX) break;
            }
            p = end;
        }
        free(runs);
        if (!ok) return 0;
    }
    return 1;
}

/* An admin record's statement (commit/admin.h), kept for the registry replay. */
static const char *note_admin(struct verify_job *j, const struct hdx_record *r, const uint8_t *pt,
                              size_t len)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    struct hdx_admin a;
    if (hdx_admin_parse(pt, len, &a) != HDX_OK) return "admin statement malformed";
    if (strcmp(r->type, hdx_admin_type(a.op)) != 0 || strcmp(r->sender, HDX_ADMIN_SENDER) != 0)
        return "admin record type or sender differs from its statement";
    if (memcmp(r->patient, zero, HDX_BLIND_LEN) || memcmp(r->dedup, zero, HDX_BLIND_LEN))
        return "index token set on an admin record";
    uint8_t *copy = malloc(len);
    if (!copy || !grow(j, (void **)&j->admins, &j->admins_cap, j->nadmins, sizeof(*j->admins))) {
        free(copy);
        return "out of memory";
    }
    memcpy(copy, pt, len);
    j->admins[j->nadmins++] = (struct admin_rec){r->seq, r->time_us, copy, len};
    return NULL;
}

static const uint8_t zero_token[HDX_BLIND_LEN];

static void dedup_read(struct verify_job *j)
{
    int rc = hdx_store_iter_dedup_next(j->dit, &j->dseq, j->dtok, &j->dtok_ok);
    j->dit_have = rc == 1;
    if (rc < 0) j->fatal = 1;
}

/* dedup_log must hold exactly one row per record with a duplicate token, with that token:
 * rows before this record's seq have no record token to match. */
static void dedup_step(struct verify_job *j, const struct hdx_record *r)
{
    int has = memcmp(r->dedup, zero_token, HDX_BLIND_LEN) != 0;
    while (j->dit_have && j->dseq < (int64_t)r->seq) {
        add_bad_in(j, "dedup_log", (uint64_t)j->dseq, "row without a record token at its seq");
        dedup_read(j);
    }
    if (j->dit_have && j->dseq == (int64_t)r->seq) {
        uint8_t content[HDX_BLIND_LEN], digest[HDX_BLIND_LEN];
        int reused, kept = hdx_store_iter_dedup_content(j->dit, content, &reused);
        if (!has)
            add_bad_in(j, "dedup_log", r->seq, "row for a record without a duplicate token");
        else if (!j->dtok_ok || CRYPTO_memcmp(j->dtok, r->dedup, HDX_BLIND_LEN) != 0)
            add_bad_in(j, "dedup_log", r->seq, "token differs from the record's");
        else if (kept < 0 || (kept == 1 && reused != 0 && reused != 1) ||
                 (kept == 0 && reused == 1))
            add_bad_in(j, "dedup_log", r->seq, "content digest or reused flag malformed");
        else if (kept == 1 && j->pt_ok &&
                 (hdx_content_digest_kind(j->kc, r->kind, j->pt, j->pt_len, digest) != HDX_OK ||
                  CRYPTO_memcmp(digest, content, HDX_BLIND_LEN) != 0))
            add_bad_in(j, "dedup_log", r->seq, "content digest differs from the message's");
        dedup_read(j);
    } else if (has) {
        add_bad_in(j, "dedup_log", r->seq, "row missing for a record with a duplicate token");
    }
}

/* The index must say what the message says: type, patient token, duplicate token. */
static const char *check_index(struct verify_job *j, const struct hdx_record *r, const uint8_t *pt,
                               size_t len)
{
    struct hl7_msg msg;
    struct hl7_error err;
    struct hl7_limits lim;
    uint8_t tok[HDX_BLIND_LEN], zero[HDX_BLIND_LEN] = {0};
    const char *why = NULL;
    hl7_limits_default(&lim);
    memset(&msg, 0, sizeof(msg));
    if (hl7_parse(pt, len, &lim, &msg, &err) != 0) return "stored message does not parse";
    if (strncmp(r->type, msg.msg_type, HDX_TYPE_MAX) != 0) why = "index type differs from message";
    if (!why && msg.patient_id[0]) {
        hdx_keyctx_blind(j->kc, "patient", msg.patient_id, strlen(msg.patient_id), tok);
        if (CRYPTO_memcmp(tok, r->patient, HDX_BLIND_LEN) != 0)
            why = "index patient differs from message";
    } else if (!why && CRYPTO_memcmp(zero, r->patient, HDX_BLIND_LEN) != 0) {
        why = "index patient set but message has none";
    }
    /* Checkpoint records have no duplicate token: a replayed checkpoint must be judged and
     * recorded, never answered as a duplicate. Their type is bound by the GCM tag. */
    if (!why && msg.control_id[0] && hdx_is_checkpoint(&msg)) {
        if (CRYPTO_memcmp(zero, r->dedup, HDX_BLIND_LEN) != 0)
            why = "index duplicate token set on a checkpoint";
        else if (!note_marks(j, &msg, r->seq))
            why = "checkpoint record's ZCV/ZCS segments malformed";
    } else if (!why && msg.control_id[0]) {
        hdx_dedup_token_kc(j->kc, r->sender, msg.control_id, tok);
        if (CRYPTO_memcmp(tok, r->dedup, HDX_BLIND_LEN) != 0)
            why = "index duplicate token differs from message";
    }
    sodium_memzero(msg.patient_id, sizeof(msg.patient_id));
    hl7_msg_free(&msg);
    return why;
}

static const char *check_record(struct verify_job *j, const struct hdx_record *r,
                                const uint8_t prev[HDX_HASH_LEN])
{
    uint8_t h[HDX_HASH_LEN];
    size_t len = 0;
    if (r->ct_len == 0) return "body missing or damaged in the segment files";
    hdx_record_leaf_hash(r, h);
    if (CRYPTO_memcmp(h, r->leaf_hash, HDX_HASH_LEN) != 0) return "leaf hash mismatch";
    hdx_record_chain(prev, h, h);
    if (CRYPTO_memcmp(h, r->chain, HDX_HASH_LEN) != 0) return "chain hash mismatch";
    if (j->fast) return NULL;
    if (r->ct_len >= j->pt_cap) {
        size_t cap = r->ct_len < 4096 ? 4096 : r->ct_len + 1;
        if (j->pt) sodium_memzero(j->pt, j->pt_cap);
        free(j->pt);
        j->pt_cap = 0;
        if (!(j->pt = malloc(cap))) {
            j->fatal = 1;
            return "out of memory";
        }
        j->pt_cap = cap;
    }
    if (hdx_record_open_into(r, j->kc, j->pt, j->pt_cap, &len) != HDX_OK)
        return "decryption failed (ciphertext or header altered)";
    j->pt_len = len;
    j->pt_ok = 1;
    if (r->kind == HDX_KIND_ADMIN) return note_admin(j, r, j->pt, len);
    return r->kind == HDX_KIND_HL7V2 ? check_index(j, r, j->pt, len) : NULL;
}

/* Heads whose size the tree has now: their root. */
static void job_note_roots(struct verify_job *j)
{
    for (size_t k = 0; k < NHEADS; k++)
        if (j->heads[k].present && !j->have_root[k] &&
            j->heads[k].sth.tree_size == merkle_size(&j->tree))
            j->have_root[k] = merkle_root(&j->tree, j->root[k]) == HDX_OK;
}

static int job_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct verify_job *j = ctx;
    return j->stored.get(j->stored.ctx, level, index, out);
}

/* Each node the walk completes must equal the stored one; any difference sends the check
 * to the single-threaded walk, which names them. */
static int job_put(void *ctx, unsigned level, uint64_t index, const uint8_t h[32])
{
    struct verify_job *j = ctx;
    uint8_t stored[32];
    if (level < HDX_STORE_MERKLE_MIN_LEVEL) return HDX_OK;
    if (j->stored.get(j->stored.ctx, level, index, stored) != HDX_OK ||
        CRYPTO_memcmp(stored, h, 32) != 0)
        j->tree_ok = 0;
    return HDX_OK;
}

static void job_tree_append(struct verify_job *j, const struct hdx_record *r)
{
    if (!j->tree_ok) return;
    job_note_roots(j);
    if (r->seq != merkle_size(&j->tree) + 1 || merkle_append(&j->tree, r->leaf_hash) != HDX_OK)
        j->tree_ok = 0;
}

struct walk {
    struct verify_job *job;
    uint64_t expect;
    int64_t last_time;
    uint8_t prev[HDX_HASH_LEN];
};

static int verify_one(void *arg, const struct hdx_record *r)
{
    struct walk *w = arg;
    struct verify_job *j = w->job;
    if (r->seq > j->hi) return 1;
    for (; w->expect < r->seq; w->expect++)
        add_bad(j, w->expect, "record missing");
    job_tree_append(j, r);
    j->pt_ok = 0;
    const char *why = check_record(j, r, w->prev);
    if (!why && r->time_us < w->last_time) why = "time goes backwards";
    if (why) add_bad(j, r->seq, why);
    if (j->dit) dedup_step(j, r);
    /* Continue from the stored chain so one bad record is reported once, not forever. */
    memcpy(w->prev, r->chain, HDX_HASH_LEN);
    w->last_time = r->time_us;
    w->expect = r->seq + 1;
    j->checked++;
    return 0;
}

static void *verify_range(void *arg)
{
    struct verify_job *j = arg;
    struct hdx_store *s = NULL;
    struct walk w = {j, j->lo, 0, {0}};
    if (hdx_store_open(j->store_path, HDX_STORE_RDONLY, &s) != HDX_OK ||
        (!j->fast && hdx_keyctx_new(j->kr, &j->kc) != HDX_OK)) {
        hdx_store_close(s);
        j->fatal = 1;
        return NULL;
    }
    hdx_store_merkle(s, &j->stored);
    struct merkle_store ms = {job_get, job_put, j};
    j->tree_ok = merkle_open(&j->tree, j->lo - 1, &ms) == HDX_OK;
    if (j->lo > 1) {
        struct hdx_record before;
        if (hdx_store_get(s, j->lo - 1, &before) == HDX_OK) {
            memcpy(w.prev, before.chain, HDX_HASH_LEN);
            w.last_time = before.time_us;
            hdx_record_clear(&before);
        }
    }
    /* The first range also owns dedup rows below seq 1; rows above the last range belong to
     * records committed after the walk began (hdxd may be running). */
    if (hdx_store_dedup_iter(s, j->lo == 1 ? INT64_MIN : (int64_t)j->lo, &j->dit) != HDX_OK)
        j->fatal = 1;
    else
        dedup_read(j);
    struct hdx_store_filter f = {.from_seq = j->lo, .damaged_too = 1};
    if (hdx_store_scan(s, &f, 0, verify_one, &w) < 0) j->fatal = 1;
    for (; j->dit_have && j->dseq <= (int64_t)j->hi; dedup_read(j))
        add_bad_in(j, "dedup_log", (uint64_t)j->dseq, "row without a record at its seq");
    hdx_store_iter_free(j->dit);
    j->dit = NULL;
    if (w.expect <= j->hi) j->tree_ok = 0;
    for (; w.expect <= j->hi; w.expect++)
        add_bad(j, w.expect, "record missing");
    if (j->tree_ok) job_note_roots(j);
    hdx_store_close(s);
    hdx_keyctx_free(j->kc);
    j->kc = NULL;
    if (j->pt) sodium_memzero(j->pt, j->pt_cap); /* the last plaintext */
    free(j->pt);
    j->pt = NULL;
    return NULL;
}

/* A frontier-only tree: the root needs no stored nodes, so puts are dropped. */
static int no_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    return HDX_E_NOTFOUND;
}

struct tree_walk {
    struct merkle tree;
    struct head *heads;
    size_t nheads;
    int failed;
    struct merkle_store stored; /* the nodes hdxd stored, to compare with */
    uint64_t bad_nodes;
};

/* Every perfect subtree the walk completes must equal the node hdxd stored for it: proofs
 * are built from those. */
static int compare_put(void *ctx, unsigned level, uint64_t index, const uint8_t h[32])
{
    struct tree_walk *w = ctx;
    uint8_t stored[32];
    if (level < HDX_STORE_MERKLE_MIN_LEVEL) return HDX_OK;
    if (w->stored.get(w->stored.ctx, level, index, stored) != HDX_OK ||
        CRYPTO_memcmp(stored, h, 32) != 0) {
        if (w->bad_nodes++ < 20)
            printf("bad node level=%u index=%llu reason=\"stored Merkle node differs\"\n", level,
                   (unsigned long long)index);
    }
    return HDX_OK;
}

static void note_roots(struct tree_walk *w)
{
    for (size_t k = 0; k < w->nheads; k++) {
        struct head *h = &w->heads[k];
        if (h->present && !h->have_root && h->sth.tree_size == merkle_size(&w->tree))
            h->have_root = merkle_root(&w->tree, h->root) == HDX_OK;
    }
}

static int tree_one(void *arg, uint64_t seq, const uint8_t *leaf)
{
    struct tree_walk *w = arg;
    note_roots(w);
    if (seq != merkle_size(&w->tree) + 1 || merkle_append(&w->tree, leaf) != HDX_OK) {
        w->failed = 1; /* a gap: already reported by seq above */
        return 1;
    }
    return 0;
}

static int judge_head(struct head *h, EVP_PKEY *pub, uint64_t last)
{
    unsigned long long size = (unsigned long long)h->sth.tree_size;
    if (!h->present) return 0;
    if (hdx_sth_verify(&h->sth, pub) != HDX_OK) {
        printf("bad %s tree_size=%llu reason=\"signature invalid\"\n", h->name, size);
        return 1;
    }
    if (h->sth.tree_size > last) {
        printf("bad %s tree_size=%llu reason=\"the store holds only %llu records\"\n", h->name,
               size, (unsigned long long)last);
        return 1;
    }
    if (!h->have_root || CRYPTO_memcmp(h->root, h->sth.root, 32) != 0) {
        printf("bad %s tree_size=%llu reason=\"records do not hash to the signed root\"\n", h->name,
               size);
        return 1;
    }
    printf("%s tree_size=%llu root=ok signature=ok\n", h->name, size);
    return 0;
}

/* The newest signed head in the store and in DIR/log.sth, read before the store's size so
 * that a head never names more records than the walk then sees (hdxd may be running).
 * Returns the number of problems (printed). */
static int load_heads(struct cli_ctx *ctx, const char *dir, struct head heads[NHEADS])
{
    char path[HDX_PATH_MAX];
    heads[0] = (struct head){.name = "sth"};
    heads[1] = (struct head){.name = "head_file"};
    heads[0].present = hdx_store_sth_latest(ctx->store, &heads[0].sth) == HDX_OK;
    if (hdx_path(path, sizeof(path), dir, "log.sth") == 0) {
        int rc = hdx_sth_file_read(path, &heads[1].sth);
        heads[1].present = rc == HDX_OK;
        if (rc != HDX_OK && rc != HDX_E_NOTFOUND) {
            printf("bad head_file reason=\"log.sth unreadable or malformed\"\n");
            return 1;
        }
    }
    return 0;
}

/* The heads must carry the log key's signature and be the Merkle root of the first
 * tree_size records, and every stored tree node must be what the records give: a store cut
 * short, rolled back, restored from an older copy or rewritten fails here. The roots come
 * from the record threads when their trees were whole; otherwise from one walk over the
 * leaves. Returns the number of problems (printed). */
static int check_sth(struct cli_ctx *ctx, const char *dir, uint64_t last, struct head *heads,
                     const struct verify_job *jobs, int njobs)
{
    char path[HDX_PATH_MAX];
    EVP_PKEY *pub = NULL;
    int bad = 0, trees_ok = 1;
    if (!heads[0].present && !heads[1].present) {
        printf("sth=none\n");
        return 0;
    }
    if (hdx_path(path, sizeof(path), dir, "log.pub.pem") ||
        hdx_logkey_load_public(path, &pub) != HDX_OK) {
        printf("bad sth reason=\"log.pub.pem unreadable\"\n");
        return 1;
    }
    for (int i = 0; i < njobs; i++)
        trees_ok &= jobs[i].tree_ok && !jobs[i].fatal;
    if (trees_ok) {
        for (int i = 0; i < njobs; i++)
            for (size_t k = 0; k < NHEADS; k++)
                if (jobs[i].have_root[k] && !heads[k].have_root) {
                    heads[k].have_root = 1;
                    memcpy(heads[k].root, jobs[i].root[k], 32);
                }
    } else {
        struct tree_walk w = {.heads = heads, .nheads = NHEADS};
        struct merkle_store ms = {no_get, compare_put, &w};
        hdx_store_merkle(ctx->store, &w.stored);
        if (merkle_open(&w.tree, 0, &ms) == HDX_OK &&
            hdx_store_leaves(ctx->store, tree_one, &w) >= 0 && !w.failed)
            note_roots(&w);
        if (w.bad_nodes) {
            printf("bad nodes=%llu\n", (unsigned long long)w.bad_nodes);
            bad++;
        }
    }
    bad += judge_head(&heads[0], pub, last) + judge_head(&heads[1], pub, last);
    EVP_PKEY_free(pub);
    return bad;
}

/* ---------- every table that affects what hdx does ---------- */

struct sth_list {
    struct hdx_sth *h;
    size_t n, cap;
    int nomem;
};

static int collect_sth(void *arg, const struct hdx_sth *sth)
{
    struct sth_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct hdx_sth *p = realloc(l->h, cap * sizeof(*p));
        if (!p) {
            l->nomem = 1;
            return 1;
        }
        l->h = p;
        l->cap = cap;
    }
    l->h[l->n++] = *sth;
    return 0;
}

/* Every stored head, not only the newest (judged above): the log key's signature, the root of
 * the stored tree at its size, and timestamps that never go back as the tree grows. */
static int check_all_sth(struct cli_ctx *ctx, const char *dir, uint64_t last,
                         const struct sth_list *l)
{
    char path[HDX_PATH_MAX];
    EVP_PKEY *pub = NULL;
    struct merkle tree;
    struct merkle_store ms;
    int bad = 0, tree_ok;
    if (l->nomem) {
        printf("bad sth reason=\"out of memory reading the heads\"\n");
        return 1;
    }
    if (!l->n) return 0;
    if (hdx_path(path, sizeof(path), dir, "log.pub.pem") ||
        hdx_logkey_load_public(path, &pub) != HDX_OK) {
        printf("bad sth reason=\"log.pub.pem unreadable\"\n");
        return 1;
    }
    hdx_store_merkle(ctx->store, &ms);
    tree_ok = merkle_open(&tree, last, &ms) == HDX_OK;
    uint64_t prev_ts = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct hdx_sth *h = &l->h[i];
        unsigned long long size = (unsigned long long)h->tree_size;
        uint8_t root[32];
        const char *why = NULL;
        if (hdx_sth_verify(h, pub) != HDX_OK)
            why = "signature invalid";
        else if (h->tree_size > last)
            why = "larger than the store";
        else if (!tree_ok || merkle_root_at(&tree, h->tree_size, root) != HDX_OK ||
                 CRYPTO_memcmp(root, h->root, 32) != 0)
            why = "root differs from the stored tree at that size";
        else if (h->timestamp_ms < prev_ts)
            why = "timestamp older than a smaller tree's";
        if (why) {
            printf("bad sth tree_size=%llu reason=\"%s\"\n", size, why);
            bad++;
        }
        if (h->timestamp_ms > prev_ts) prev_ts = h->timestamp_ms;
    }
    if (!bad) printf("sth heads=%zu ok\n", l->n);
    EVP_PKEY_free(pub);
    return bad;
}

static int cmp_mark(const void *a, const void *b)
{
    const struct mark *x = a, *y = b;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return x->checkpoint < y->checkpoint ? -1 : x->checkpoint > y->checkpoint;
}

struct marks_walk {
    const struct mark *m;
    size_t n, i;
    int bad;
};

static void mark_bad(struct marks_walk *w, int64_t seq, const char *why)
{
    if (w->bad++ < BAD_REPORT_MAX)
        printf("bad stream_marks seq=%lld reason=\"%s\"\n", (long long)seq, why);
}

static int marks_one(void *arg, int64_t seq, int64_t checkpoint, int64_t verified)
{
    struct marks_walk *w = arg;
    for (; w->i < w->n && (int64_t)w->m[w->i].seq < seq; w->i++)
        mark_bad(w, (int64_t)w->m[w->i].seq, "missing: a checkpoint record covers it");
    if (w->i < w->n && (int64_t)w->m[w->i].seq == seq) {
        const struct mark *m = &w->m[w->i++];
        if ((int64_t)m->checkpoint != checkpoint)
            mark_bad(w, seq, "checkpoint differs from the record that covers it");
        else if (verified != m->verified)
            mark_bad(w, seq, "verified flag differs from the checkpoint's verdict");
    } else {
        mark_bad(w, seq, "no checkpoint record covers it");
    }
    return 0;
}

/* stream_marks must equal what the checkpoint records' ZCS segments and verdicts give (a mark
 * is written once: the first checkpoint to cover a seq keeps it). Marks past last belong to
 * checkpoints committed after the walk began. */
static int check_marks(struct cli_ctx *ctx, struct verify_job *jobs, int njobs, uint64_t last)
{
    size_t total = 0, k = 0;
    for (int i = 0; i < njobs; i++)
        total += jobs[i].nmarks;
    struct mark *all = malloc((total ? total : 1) * sizeof(*all));
    if (!all) {
        printf("bad stream_marks reason=\"out of memory\"\n");
        return 1;
    }
    for (int i = 0; i < njobs; i++)
        for (size_t m = 0; m < jobs[i].nmarks; m++)
            all[k++] = jobs[i].marks[m];
    qsort(all, total, sizeof(*all), cmp_mark);
    size_t u = 0;
    for (size_t i = 0; i < total; i++)
        if (!u || all[u - 1].seq != all[i].seq) all[u++] = all[i];
    struct marks_walk w = {all, u, 0, 0};
    int rc = hdx_store_marks_list(ctx->store, marks_one, &w);
    for (; w.i < w.n; w.i++)
        if (all[w.i].checkpoint <= last)
            mark_bad(&w, (int64_t)all[w.i].seq, "missing: a checkpoint record covers it");
    free(all);
    if (rc != HDX_OK) {
        printf("bad stream_marks reason=\"unreadable\"\n");
        return 1;
    }
    if (!w.bad) printf("stream_marks rows=%zu ok\n", u);
    return w.bad;
}

struct reg_walk {
    const struct hdx_registry *reg;
    uint8_t *seen; /* per registry entry: 1 devices row, 2 device_keys row */
    int bad;
};

static void reg_bad(struct reg_walk *w, const char *table, const char *name, const char *why)
{
    if (w->bad++ < BAD_REPORT_MAX) printf("bad %s name=%s reason=\"%s\"\n", table, name, why);
}

static int device_row(void *arg, const struct hdx_device *d)
{
    struct reg_walk *w = arg;
    const struct hdx_registry_entry *e = hdx_registry_find(w->reg, d->name);
    if (!e) {
        reg_bad(w, "devices", d->name, "no admin record enrols it");
        return 0;
    }
    w->seen[e - w->reg->e] |= 1;
    if (strcmp(e->dev.role, d->role) != 0)
        reg_bad(w, "devices", d->name, "role differs from the admin records");
    else if (strcmp(e->dev.serial, d->serial) != 0)
        reg_bad(w, "devices", d->name, "serial differs from the admin records");
    else if (e->dev.created_us != d->created_us)
        reg_bad(w, "devices", d->name, "created_us differs from the admin records");
    else if (e->dev.revoked_us != d->revoked_us)
        reg_bad(w, "devices", d->name, "revoked_us differs from the admin records");
    return 0;
}

static int key_row(void *arg, const char *name, const uint8_t *pub, size_t len, int64_t created)
{
    struct reg_walk *w = arg;
    const struct hdx_registry_entry *e = hdx_registry_find(w->reg, name);
    if (!e || !e->has_key) {
        reg_bad(w, "device_keys", name, "no admin record registers this key");
        return 0;
    }
    w->seen[e - w->reg->e] |= 2;
    if (len != 32 || memcmp(pub, e->sign_pub, 32) != 0)
        reg_bad(w, "device_keys", name, "sign_pub differs from the admin records");
    else if (created != e->key_created_us)
        reg_bad(w, "device_keys", name, "created_us differs from the admin records");
    return 0;
}

/* The registry the admin records make, applied in seq order (commit/admin.h); *nusers and
 * *npolicy count the user and the policy statements. Every body parsed when the walk kept it. */
static int replay(struct verify_job *jobs, int njobs, struct hdx_registry *reg, size_t *n,
                  size_t *nusers, size_t *npolicy, size_t *nscopes, size_t *nclients, size_t *naes)
{
    int rc = HDX_OK;
    struct hdx_admin a;
    *n = *nusers = *npolicy = *nscopes = *nclients = *naes = 0;
    for (int i = 0; i < njobs && rc == HDX_OK; i++) /* ranges ascend: already in seq order */
        for (size_t k = 0; k < jobs[i].nadmins && rc == HDX_OK; k++, (*n)++) {
            const struct admin_rec *ar = &jobs[i].admins[k];
            rc = hdx_admin_parse(ar->body, ar->len, &a);
            if (rc == HDX_OK) rc = hdx_registry_apply(reg, &a, ar->time_us);
            *nusers += hdx_admin_is_user_op(a.op);
            *npolicy += hdx_admin_is_policy_op(a.op);
            *nscopes += a.op == HDX_ADMIN_DEVICE_SCOPE;
            *nclients += (size_t)hdx_admin_is_client_op(a.op);
            *naes += a.op == HDX_ADMIN_AE_ADD || a.op == HDX_ADMIN_AE_REMOVE;
        }
    sodium_memzero(&a, sizeof(a));
    return rc;
}

/* devices and device_keys must be, row by row, the replay of the admin records in seq order
 * (commit/admin.h). */
static int check_registry(struct cli_ctx *ctx, const struct hdx_registry *regp, size_t n)
{
    const struct hdx_registry reg = *regp;
    struct reg_walk w = {regp, calloc(reg.n ? reg.n : 1, 1), 0};
    if (!w.seen) {
        printf("bad devices reason=\"out of memory\"\n");
        return 1;
    }
    if (hdx_store_devices_list(ctx->store, device_row, &w) != HDX_OK ||
        hdx_store_device_keys_list(ctx->store, key_row, &w) != HDX_OK) {
        printf("bad devices reason=\"unreadable\"\n");
        w.bad++;
    }
    for (size_t i = 0; i < reg.n; i++) {
        if (!(w.seen[i] & 1))
            reg_bad(&w, "devices", reg.e[i].dev.name, "missing: the admin records enrol it");
        if (reg.e[i].has_key && !(w.seen[i] & 2))
            reg_bad(&w, "device_keys", reg.e[i].dev.name,
                    "missing: the admin records register a key");
    }
    if (!w.bad) printf("devices rows=%zu ok admin_records=%zu\n", reg.n, n);
    free(w.seen);
    return w.bad;
}

struct users_walk {
    const struct hdx_registry *reg;
    uint8_t *seen;
    int bad;
};

/* The first column of row that differs from the replay, or NULL. */
static const char *user_diff(const struct hdx_user *want, const struct hdx_user *row)
{
    if (strcmp(want->role, row->role) != 0) return "role differs from the admin records";
    if (strcmp(want->pw_hash, row->pw_hash) != 0) return "pw_hash differs from the admin records";
    if (want->has_mfa != row->has_mfa ||
        sodium_memcmp(want->totp_sealed, row->totp_sealed, sizeof(want->totp_sealed)) != 0)
        return "totp_sealed differs from the admin records";
    if (sodium_memcmp(want->recovery, row->recovery, sizeof(want->recovery)) != 0)
        return "recovery differs from the admin records";
    if (want->recovery_used != row->recovery_used)
        return "recovery_used differs from the admin records";
    if (want->totp_step != row->totp_step) return "totp_step differs from the admin records";
    if (want->locked != row->locked) return "locked differs from the admin records";
    if (want->created_us != row->created_us) return "created_us differs from the admin records";
    if (want->pw_changed_us != row->pw_changed_us)
        return "pw_changed_us differs from the admin records";
    if (want->mfa_us != row->mfa_us) return "mfa_us differs from the admin records";
    if (want->sessions_revoked_us != row->sessions_revoked_us)
        return "sessions_revoked_us differs from the admin records";
    if (strcmp(want->training, row->training) != 0)
        return "training differs from the admin records";
    return NULL;
}

static int user_row(void *arg, const struct hdx_user *u, int damaged)
{
    struct users_walk *w = arg;
    const struct hdx_user *want = hdx_registry_user(w->reg, u->name);
    const char *why = NULL;
    if (!want) {
        why = "no admin record adds this user";
    } else {
        w->seen[want - w->reg->u] = 1;
        why =
            damaged ? "totp_sealed or recovery has a size no statement writes" : user_diff(want, u);
    }
    if (why && w->bad++ < BAD_REPORT_MAX) printf("bad users name=%s reason=\"%s\"\n", u->name, why);
    return 0;
}

/* users must be, row by row and column by column, the replay of the user admin records. */
static int check_users(struct cli_ctx *ctx, const struct hdx_registry *regp, size_t n)
{
    const struct hdx_registry reg = *regp;
    struct users_walk w = {regp, calloc(reg.nu ? reg.nu : 1, 1), 0};
    if (!w.seen) {
        printf("bad users reason=\"out of memory\"\n");
        return 1;
    }
    if (hdx_store_users_list(ctx->store, user_row, &w) != HDX_OK) {
        printf("bad users reason=\"unreadable\"\n");
        w.bad++;
    }
    for (size_t i = 0; i < reg.nu; i++)
        if (!w.seen[i] && w.bad++ < BAD_REPORT_MAX)
            printf("bad users name=%s reason=\"missing: the admin records add this user\"\n",
                   reg.u[i].name);
    if (!w.bad) printf("users rows=%zu ok admin_records=%zu\n", reg.nu, n);
    free(w.seen);
    return w.bad;
}

/* ---------- careteams, consents, break_glass: the replay of the policy statements ---------- */

struct policy_walk {
    const struct hdx_registry *reg;
    const char *table;
    uint8_t *seen; /* per registry row of this table: the table has it */
    int bad;
};

/* One failure: "bad TABLE KEY reason=..." (KEY: name=U patient=HEX ..., or none). */
static void policy_bad(struct policy_walk *w, const char *key, const char *why)
{
    if (w->bad++ < BAD_REPORT_MAX)
        printf("bad %s%s%s reason=\"%s\"\n", w->table, key ? " " : "", key ? key : "", why);
}

/* The row's key as "name=U patient=HEX ..." (row: that table's struct). */
static void careteam_key(const void *row, char *out, size_t cap)
{
    const struct hdx_careteam *c = row;
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(c->patient, HDX_BLIND_LEN, hex);
    snprintf(out, cap, "name=%s patient=%s", c->user, hex);
}

static void consent_key(const void *row, char *out, size_t cap)
{
    const struct hdx_consent *c = row;
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(c->patient, HDX_BLIND_LEN, hex);
    snprintf(out, cap, "patient=%s purpose=%s role=%s", hex, c->purpose[0] ? c->purpose : "-",
             c->role[0] ? c->role : "-");
}

static void grant_key(const void *row, char *out, size_t cap)
{
    const struct hdx_break_glass *g = row;
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(g->patient, HDX_BLIND_LEN, hex);
    snprintf(out, cap, "name=%s patient=%s granted_us=%lld", g->user, hex,
             (long long)g->granted_us);
}

#define DAMAGED "a patient token or a text no statement writes"

static int careteam_row(void *arg, const struct hdx_careteam *c, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_careteam *want = hdx_registry_careteam(w->reg, c);
    char key[160];
    careteam_key(c, key, sizeof(key));
    if (damaged)
        policy_bad(w, key, DAMAGED);
    else if (!want)
        policy_bad(w, key, "no admin record adds this member");
    else
        w->seen[want - w->reg->ct] = 1;
    return 0;
}

static int consent_row(void *arg, const struct hdx_consent *c, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_consent *want = hdx_registry_consent(w->reg, c);
    char key[160];
    consent_key(c, key, sizeof(key));
    if (damaged)
        policy_bad(w, key, DAMAGED);
    else if (!want)
        policy_bad(w, key, "no admin record makes this directive");
    else
        w->seen[want - w->reg->cs] = 1;
    return 0;
}

static int grant_row(void *arg, const struct hdx_break_glass *g, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_break_glass *want = hdx_registry_break_glass(w->reg, g);
    char key[200];
    grant_key(g, key, sizeof(key));
    if (damaged) {
        policy_bad(w, key, DAMAGED);
        return 0;
    }
    if (!want) {
        policy_bad(w, key, "no admin record makes this grant");
        return 0;
    }
    w->seen[want - w->reg->bg] = 1;
    if (want->expires_us != g->expires_us)
        policy_bad(w, key, "expires_us differs from the admin records");
    else if (strcmp(want->justification, g->justification) != 0)
        policy_bad(w, key, "justification differs from the admin records");
    else if (strcmp(want->reviewed_by, g->reviewed_by) != 0)
        policy_bad(w, key, "reviewed_by differs from the admin records");
    else if (want->reviewed_us != g->reviewed_us)
        policy_bad(w, key, "reviewed_us differs from the admin records");
    return 0;
}

static int list_careteams(struct hdx_store *s, struct policy_walk *w)
{
    return hdx_store_careteams_list(s, NULL, careteam_row, w);
}

static int list_consents(struct hdx_store *s, struct policy_walk *w)
{
    return hdx_store_consents_list(s, NULL, consent_row, w);
}

static int list_grants(struct hdx_store *s, struct policy_walk *w)
{
    return hdx_store_break_glass_list(s, grant_row, w);
}

/* careteams, consents and break_glass must be, row by row and column by column, the replay of
 * the n policy admin records (commit/admin.h). */
static int check_policy(struct cli_ctx *ctx, const struct hdx_registry *reg, size_t n)
{
    const struct {
        const char *table;
        const void *base;
        size_t n, size;
        int (*list)(struct hdx_store *s, struct policy_walk *w);
        void (*key)(const void *row, char *out, size_t cap);
    } t[] = {
        {"careteams", reg->ct, reg->nct, sizeof(*reg->ct), list_careteams, careteam_key},
        {"consents", reg->cs, reg->ncs, sizeof(*reg->cs), list_consents, consent_key},
        {"break_glass", reg->bg, reg->nbg, sizeof(*reg->bg), list_grants, grant_key},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct policy_walk w = {reg, t[i].table, calloc(t[i].n ? t[i].n : 1, 1), 0};
        if (!w.seen) {
            printf("bad %s reason=\"out of memory\"\n", t[i].table);
            bad++;
            continue;
        }
        if (t[i].list(ctx->store, &w) != HDX_OK) policy_bad(&w, NULL, "unreadable");
        for (size_t k = 0; k < t[i].n; k++) {
            char key[200];
            if (w.seen[k]) continue;
            t[i].key((const char *)t[i].base + k * t[i].size, key, sizeof(key));
            policy_bad(&w, key, "missing: the admin records make this row");
        }
        if (!w.bad) printf("%s rows=%zu ok admin_records=%zu\n", t[i].table, t[i].n, n);
        bad += w.bad;
        free(w.seen);
    }
    return bad;
}

/* ---------- device_scopes: the replay of the device_scope statements ---------- */

static int scope_row(void *arg, const struct hdx_device_scope *d, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_device_scope *want = hdx_registry_scope(w->reg, d->name);
    struct hdx_scope sc;
    char key[80];
    snprintf(key, sizeof(key), "name=%s", d->name);
    if (damaged)
        policy_bad(w, key, "a text no statement writes");
    else if (!want)
        policy_bad(w, key, "no admin record sets this scope");
    else if ((w->seen[want - w->reg->sc] = 1, strcmp(want->scope, d->scope) != 0))
        policy_bad(w, key, "scope differs from the admin records");
    else if (want->set_us != d->set_us)
        policy_bad(w, key, "set_us differs from the admin records");
    else if (hdx_scope_parse(d->scope, strlen(d->scope), &sc) != HDX_OK)
        policy_bad(w, key, "not a canonical scope"); /* cannot be: the records' parse it */
    return 0;
}

/* device_scopes must be, row by row and column by column, the replay of the n device_scope
 * admin records: a hand-widened (or removed) scope would let a subscriber receive what no
 * admin record granted. */
static int check_scopes(struct cli_ctx *ctx, const struct hdx_registry *reg, size_t n)
{
    struct policy_walk w = {reg, "device_scopes", calloc(reg->nsc ? reg->nsc : 1, 1), 0};
    if (!w.seen) {
        printf("bad device_scopes reason=\"out of memory\"\n");
        return 1;
    }
    if (hdx_store_scope_rows_list(ctx->store, scope_row, &w) != HDX_OK)
        policy_bad(&w, NULL, "unreadable");
    for (size_t k = 0; k < reg->nsc; k++) {
        char key[80];
        if (w.seen[k]) continue;
        snprintf(key, sizeof(key), "name=%s", reg->sc[k].name);
        policy_bad(&w, key, "missing: the admin records set this scope");
    }
    if (!w.bad) printf("device_scopes rows=%zu ok admin_records=%zu\n", reg->nsc, n);
    free(w.seen);
    return w.bad;
}

/* ---------- dicom_aes: the replay of the ae_* statements ---------- */

static int ae_row(void *arg, const struct hdx_dicom_ae *d, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_dicom_ae *want = hdx_registry_ae(w->reg, d->title);
    char key[80];
    snprintf(key, sizeof(key), "title=%s", d->title);
    if (damaged)
        policy_bad(w, key, "a text no statement writes");
    else if (!want)
        policy_bad(w, key, "no admin record binds this AE title");
    else if ((w->seen[want - w->reg->ae] = 1, strcmp(want->name, d->name) != 0))
        policy_bad(w, key, "device differs from the admin records");
    else if (want->set_us != d->set_us)
        policy_bad(w, key, "set_us differs from the admin records");
    return 0;
}

/* dicom_aes must be the replay of the n ae_* admin records: a hand-added binding would let a
 * certificate speak for an AE title no admin record gave it. */
static int check_aes(struct cli_ctx *ctx, const struct hdx_registry *reg, size_t n)
{
    struct policy_walk w = {reg, "dicom_aes", calloc(reg->nae ? reg->nae : 1, 1), 0};
    if (!w.seen) {
        printf("bad dicom_aes reason=\"out of memory\"\n");
        return 1;
    }
    if (hdx_store_dicom_aes_list(ctx->store, ae_row, &w) != HDX_OK)
        policy_bad(&w, NULL, "unreadable");
    for (size_t k = 0; k < reg->nae; k++) {
        char key[80];
        if (w.seen[k]) continue;
        snprintf(key, sizeof(key), "title=%s", reg->ae[k].title);
        policy_bad(&w, key, "missing: the admin records bind this AE title");
    }
    if (!w.bad) printf("dicom_aes rows=%zu ok admin_records=%zu\n", reg->nae, n);
    free(w.seen);
    return w.bad;
}

/* ---------- smart_clients: the replay of the client_* statements ---------- */

static int client_row(void *arg, const struct hdx_smart_client *c, int damaged)
{
    struct policy_walk *w = arg;
    const struct hdx_smart_client *want = hdx_registry_client(w->reg, c->name);
    char key[80];
    snprintf(key, sizeof(key), "name=%s", c->name);
    if (want) w->seen[want - w->reg->cl] = 1;
    if (damaged)
        policy_bad(w, key, "a JWK Set, scope or time no statement writes");
    else if (!want)
        policy_bad(w, key, "no admin record registers this client");
    else if (want->jwks_len != c->jwks_len || memcmp(want->jwks, c->jwks, c->jwks_len) != 0)
        policy_bad(w, key, "jwks differs from the admin records");
    else if (strcmp(want->scope, c->scope) != 0)
        policy_bad(w, key, "scope differs from the admin records");
    else if (want->created_us != c->created_us)
        policy_bad(w, key, "created_us differs from the admin records");
    else if (want->revoked_us != c->revoked_us)
        policy_bad(w, key, "revoked_us differs from the admin records");
    return 0;
}

/* smart_clients must be, row by row and column by column, the replay of the n client_* admin
 * records: a key or scope added by hand would let a client obtain tokens no admin record
 * granted. */
static int check_clients(struct cli_ctx *ctx, const struct hdx_registry *reg, size_t n)
{
    struct policy_walk w = {reg, "smart_clients", calloc(reg->ncl ? reg->ncl : 1, 1), 0};
    if (!w.seen) {
        printf("bad smart_clients reason=\"out of memory\"\n");
        return 1;
    }
    if (hdx_store_client_rows_list(ctx->store, client_row, &w) != HDX_OK)
        policy_bad(&w, NULL, "unreadable");
    for (size_t k = 0; k < reg->ncl; k++) {
        char key[80];
        if (w.seen[k]) continue;
        snprintf(key, sizeof(key), "name=%s", reg->cl[k].name);
        policy_bad(&w, key, "missing: the admin records register this client");
    }
    if (!w.bad) printf("smart_clients rows=%zu ok admin_records=%zu\n", reg->ncl, n);
    free(w.seen);
    return w.bad;
}

static int cmp_bad(const void *a, const void *b)
{
    const struct bad *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int report(struct verify_job *jobs, int n, uint64_t last, int sth_bad)
{
    size_t total = 0, k = 0;
    int fatal = 0;
    for (int i = 0; i < n; i++) {
        total += jobs[i].nbad;
        fatal |= jobs[i].fatal;
    }
    struct bad *all = calloc(total ? total : 1, sizeof(*all));
    for (int i = 0; i < n && all; i++)
        for (size_t b = 0; b < jobs[i].nbad; b++)
            all[k++] = jobs[i].bad[b];
    if (all) qsort(all, total, sizeof(*all), cmp_bad);
    for (size_t i = 0; all && i < total; i++) {
        if (all[i].table)
            printf("bad %s seq=%llu reason=\"%s\"\n", all[i].table, (unsigned long long)all[i].seq,
                   all[i].reason);
        else
            printf("bad seq=%llu reason=\"%s\"\n", (unsigned long long)all[i].seq, all[i].reason);
    }
    free(all);
    if (fatal) {
        printf("records=%llu error=\"store unreadable\"\n", (unsigned long long)last);
        return 1;
    }
    if (total + (size_t)sth_bad) {
        printf("records=%llu bad=%zu\n", (unsigned long long)last, total + (size_t)sth_bad);
        return 1;
    }
    printf("records=%llu ok\n", (unsigned long long)last);
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    const char *dir = NULL;
    int fast = 0;
    char path[HDX_PATH_MAX];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--fast"))
            fast = 1;
        else {
            int help = !strcmp(argv[i], "--help");
            fputs(verify_usage, help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    if (!dir) {
        fputs(verify_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    struct head heads[NHEADS];
    uint64_t last = 0;
    uint8_t chain[HDX_HASH_LEN];
    if (cli_open(dir, 0, &ctx)) return 1;
    int head_bad = load_heads(&ctx, dir, heads);
    struct sth_list all_sth = {0};
    if (hdx_store_sth_list(ctx.store, collect_sth, &all_sth) != HDX_OK) all_sth.nomem = 1;
    if (hdx_store_last(ctx.store, &last, chain, NULL) != HDX_OK ||
        hdx_conf_path(&ctx.conf, ctx.conf.store_path, path, sizeof(path))) {
        printf("records=0 error=\"store unreadable\"\n");
        cli_close(&ctx);
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 1 ? 1 : cpus > VERIFY_THREADS_MAX ? VERIFY_THREADS_MAX : (int)cpus;
    if ((uint64_t)n > last / 1024 + 1) n = (int)(last / 1024 + 1);
    struct verify_job jobs[VERIFY_THREADS_MAX] = {0};
    pthread_t th[VERIFY_THREADS_MAX];
    uint64_t per = last / (uint64_t)n + 1;
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct verify_job){.store_path = path,
                                      .kr = ctx.kr,
                                      .lo = 1 + per * (uint64_t)i,
                                      .hi = i == n - 1 ? last : per * (uint64_t)(i + 1),
                                      .fast = fast,
                                      .heads = heads};
        pthread_create(&th[i], NULL, verify_range, &jobs[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    int table_bad = check_all_sth(&ctx, dir, last, &all_sth);
    size_t dedup_bad = 0;
    int fatal = 0;
    for (int i = 0; i < n; i++) {
        fatal |= jobs[i].fatal;
        for (size_t b = 0; b < jobs[i].nbad; b++)
            dedup_bad += jobs[i].bad[b].table != NULL;
    }
    if (!dedup_bad && !fatal) printf("dedup_log ok\n");
    if (fast || fatal) {
        printf("stream_marks skipped (needs decryption)\n");
        printf("devices skipped (needs decryption)\n");
        printf("users skipped (needs decryption)\n");
        printf("careteams skipped (needs decryption)\n");
        printf("consents skipped (needs decryption)\n");
        printf("break_glass skipped (needs decryption)\n");
        printf("device_scopes skipped (needs decryption)\n");
        printf("smart_clients skipped (needs decryption)\n");
        printf("dicom_aes skipped (needs decryption)\n");
    } else {
        table_bad += check_marks(&ctx, jobs, n, last);
        struct hdx_registry reg = {0};
        size_t nadmin = 0, nuser = 0, npolicy = 0, nscope = 0, nclient = 0, nae = 0;
        if (replay(jobs, n, &reg, &nadmin, &nuser, &npolicy, &nscope, &nclient, &nae) != HDX_OK) {
            printf("bad devices reason=\"out of memory\"\n");
            table_bad++;
        } else {
            table_bad += check_registry(&ctx, &reg, nadmin);
            table_bad += check_users(&ctx, &reg, nuser);
            table_bad += check_policy(&ctx, &reg, npolicy);
            table_bad += check_scopes(&ctx, &reg, nscope);
            table_bad += check_clients(&ctx, &reg, nclient);
            table_bad += check_aes(&ctx, &reg, nae);
        }
        hdx_registry_free(&reg);
    }
    printf("admin_queue pending=%ld\n", hdx_store_admin_count(ctx.store));
    uint64_t unindexed = 0;
    if (hdx_store_unindexed(ctx.store, &unindexed) == HDX_OK && unindexed)
        printf("segments unindexed=%llu (hdxd re-indexes them at start)\n",
               (unsigned long long)unindexed);
    int rc =
        report(jobs, n, last, head_bad + table_bad + check_sth(&ctx, dir, last, heads, jobs, n));
    for (int i = 0; i < n; i++) {
        free(jobs[i].bad);
        free(jobs[i].marks);
        for (size_t k = 0; k < jobs[i].nadmins; k++)
            free(jobs[i].admins[k].body);
        free(jobs[i].admins);
    }
    free(all_sth.h);
    cli_close(&ctx);
    return rc;
}
