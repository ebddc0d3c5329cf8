/* fhir/index: the FHIR view's SQLite index and the thread that keeps it (index.h). */
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "fhir/index.h"
#include "fhir/subscription.h"
#include "fhir/v2map.h"
#include "store/store.h"

#define PASS_MAX 2000    /* records per indexing transaction */
#define SCHEMA_VERSION 2 /* 2: tokens keyed with their patient (fhir_tok2) */

struct hdx_fhir_index {
    struct hdx_fhir_index_env env;
    sqlite3 *wdb, *rdb; /* the indexer's, the queries' */
    struct hdx_store *store;
    struct hdx_keyctx *kc;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t target; /* under mu */
    int stop;        /* under mu */
    _Atomic uint64_t through;
    _Atomic uint64_t st_records, st_rows, st_skipped, st_passes;
    _Atomic uint64_t events_added; /* committed fhir_sub_event rows since open */
    uint64_t pass_events;          /* the indexer's: in the pass under way */
    /* the indexer's statements */
    sqlite3_stmt *ins_res, *ins_tok, *supersede, *set_meta;
    sqlite3_stmt *get_cur, *get_ver; /* the queries' (rdb), prepared once */
    sqlite3_stmt *put_sub, *put_event, *get_events;
    /* the live subscriptions' filters, the indexer's (a copy of fhir_sub) */
    struct sub_filter *subs;
    size_t nsubs, subs_cap;
    uint8_t vital_tok[HDX_BLIND_LEN];
};

struct sub_filter {
    char id[HDX_FHIR_ID_MAX + 1];
    uint64_t since, until;
    int has_patient;
    uint8_t patient[HDX_BLIND_LEN];
    size_t ncodes;
    uint8_t codes[HDX_SUB_CODES_MAX][HDX_BLIND_LEN];
};

static const char *const schema =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS fhir_meta(k TEXT PRIMARY KEY, v BLOB);"
    "CREATE TABLE IF NOT EXISTS fhir_res(rid INTEGER PRIMARY KEY, type TEXT NOT NULL,"
    " id TEXT NOT NULL, version INTEGER NOT NULL, seq INTEGER NOT NULL, part INTEGER NOT NULL,"
    " current INTEGER NOT NULL, deleted INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " patient BLOB, date_lo INTEGER, date_hi INTEGER, UNIQUE(type, id, version));"
    "CREATE INDEX IF NOT EXISTS fhir_res_patient ON fhir_res(type, patient, date_lo)"
    " WHERE current = 1 AND deleted = 0;"
    "CREATE INDEX IF NOT EXISTS fhir_res_patient_rid ON fhir_res(type, patient)"
    " WHERE current = 1 AND deleted = 0;"
    "CREATE INDEX IF NOT EXISTS fhir_res_date ON fhir_res(type, date_lo)"
    " WHERE current = 1 AND deleted = 0;"
    "CREATE INDEX IF NOT EXISTS fhir_res_updated ON fhir_res(type, updated);"
    "CREATE TABLE IF NOT EXISTS fhir_tok2(param INTEGER NOT NULL, tok BLOB NOT NULL,"
    " patient BLOB NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY(param, tok, patient, rid))"
    " WITHOUT ROWID;"
    /* Subscriptions (fhir/subscription.h): each one's filter as tokens, live for records
     * since < seq < until, and the topic's events that matched it, in log order. */
    "CREATE TABLE IF NOT EXISTS fhir_sub(id TEXT PRIMARY KEY, since INTEGER NOT NULL,"
    " until INTEGER NOT NULL, patient BLOB, codes BLOB);"
    "CREATE TABLE IF NOT EXISTS fhir_sub_event(sub TEXT NOT NULL, seq INTEGER NOT NULL,"
    " part INTEGER NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY(sub, seq, part)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS fhir_sub_event_pos ON fhir_sub_event(seq, part, sub);";

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? HDX_OK : HDX_E_STORE;
}

static int meta_get(sqlite3 *db, const char *k, void *out, size_t len)
{
    sqlite3_stmt *st;
    int rc = HDX_E_NOTFOUND;
    if (sqlite3_prepare_v2(db, "SELECT v FROM fhir_meta WHERE k = ?", -1, &st, NULL) != SQLITE_OK)
        return HDX_E_STORE;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && (size_t)sqlite3_column_bytes(st, 0) == len) {
        memcpy(out, sqlite3_column_blob(st, 0), len);
        rc = HDX_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_put(struct hdx_fhir_index *ix, const char *k, const void *v, size_t len)
{
    sqlite3_reset(ix->set_meta);
    sqlite3_bind_text(ix->set_meta, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_blob(ix->set_meta, 2, v, (int)len, SQLITE_STATIC);
    return sqlite3_step(ix->set_meta) == SQLITE_DONE ? HDX_OK : HDX_E_STORE;
}

/* ---------- writing ---------- */

static int put_entry(struct hdx_fhir_index *ix, const struct hdx_fhir_entry *e, uint64_t seq,
                     uint32_t part, int deleted, const uint8_t *patient, int64_t time_us,
                     int64_t *rid_out)
{
    *rid_out = 0;
    sqlite3_reset(ix->supersede);
    sqlite3_bind_text(ix->supersede, 1, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(ix->supersede, 2, e->id, -1, SQLITE_STATIC);
    if (sqlite3_step(ix->supersede) != SQLITE_DONE) return HDX_E_STORE;
    sqlite3_stmt *st = ix->ins_res;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, e->version);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 5, part);
    sqlite3_bind_int(st, 6, deleted);
    sqlite3_bind_int64(st, 7, e->updated_us ? e->updated_us : time_us);
    if (patient)
        sqlite3_bind_blob(st, 8, patient, HDX_BLIND_LEN, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    if (e->has_date) {
        sqlite3_bind_int64(st, 9, e->date_lo);
        sqlite3_bind_int64(st, 10, e->date_hi);
    } else {
        sqlite3_bind_null(st, 9);
        sqlite3_bind_null(st, 10);
    }
    int src = sqlite3_step(st);
    if (src == SQLITE_CONSTRAINT) {
        /* the same version twice: only a log that says so twice (never written by hdxd) */
        atomic_fetch_add(&ix->st_skipped, 1);
        return HDX_OK;
    }
    if (src != SQLITE_DONE) return HDX_E_STORE;
    sqlite3_int64 rid = sqlite3_last_insert_rowid(ix->wdb);
    *rid_out = rid;
    for (size_t i = 0; i < e->ntok && !deleted; i++) {
        sqlite3_reset(ix->ins_tok);
        sqlite3_bind_int(ix->ins_tok, 1, e->tok[i].param);
        sqlite3_bind_blob(ix->ins_tok, 2, e->tok[i].tok, HDX_BLIND_LEN, SQLITE_STATIC);
        static const uint8_t none[HDX_BLIND_LEN];
        sqlite3_bind_blob(ix->ins_tok, 3, patient ? patient : none, HDX_BLIND_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(ix->ins_tok, 4, rid);
        if (sqlite3_step(ix->ins_tok) != SQLITE_DONE) return HDX_E_STORE;
    }
    atomic_fetch_add(&ix->st_rows, 1);
    return HDX_OK;
}

/* ---------- subscriptions ---------- */

#define SUB_LIVE INT64_MAX /* until: no end */

static struct sub_filter *sub_find(struct hdx_fhir_index *ix, const char *id)
{
    for (size_t i = 0; i < ix->nsubs; i++)
        if (!strcmp(ix->subs[i].id, id)) return &ix->subs[i];
    return NULL;
}

static int sub_write(struct hdx_fhir_index *ix, const struct sub_filter *f)
{
    sqlite3_stmt *st = ix->put_sub;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->since);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)f->until);
    if (f->has_patient)
        sqlite3_bind_blob(st, 4, f->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_blob(st, 5, f->codes, (int)(f->ncodes * HDX_BLIND_LEN), SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? HDX_OK : HDX_E_STORE;
}

/* fhir_sub into memory (at open, and after a pass that was rolled back). */
static int subs_load(struct hdx_fhir_index *ix)
{
    sqlite3_stmt *st;
    ix->nsubs = 0;
    if (sqlite3_prepare_v2(ix->wdb, "SELECT id, since, until, patient, codes FROM fhir_sub", -1,
                           &st, NULL) != SQLITE_OK)
        return HDX_E_STORE;
    int rc = HDX_OK, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (ix->nsubs == ix->subs_cap) {
            size_t cap = ix->subs_cap ? 2 * ix->subs_cap : 16;
            struct sub_filter *n = realloc(ix->subs, cap * sizeof(*n));
            if (!n) {
                rc = HDX_E_NOMEM;
                break;
            }
            ix->subs = n;
            ix->subs_cap = cap;
        }
        struct sub_filter *f = &ix->subs[ix->nsubs++];
        memset(f, 0, sizeof(*f));
        snprintf(f->id, sizeof(f->id), "%s", (const char *)sqlite3_column_text(st, 0));
        f->since = (uint64_t)sqlite3_column_int64(st, 1);
        f->until = (uint64_t)sqlite3_column_int64(st, 2);
        if (sqlite3_column_bytes(st, 3) == HDX_BLIND_LEN) {
            f->has_patient = 1;
            memcpy(f->patient, sqlite3_column_blob(st, 3), HDX_BLIND_LEN);
        }
        size_t nb = (size_t)sqlite3_column_bytes(st, 4);
        f->ncodes = nb / HDX_BLIND_LEN;
        if (f->ncodes > HDX_SUB_CODES_MAX) f->ncodes = HDX_SUB_CODES_MAX;
        if (f->ncodes) memcpy(f->codes, sqlite3_column_blob(st, 4), f->ncodes * HDX_BLIND_LEN);
    }
    if (rc == HDX_OK && s != SQLITE_DONE) rc = HDX_E_STORE;
    sqlite3_finalize(st);
    return rc;
}

/* A Subscription version: its filter from now on (an invalid, off or deleted one: none). The
 * patient is its record's, the token of the Patient its filter names. */
static int sub_put(struct hdx_fhir_index *ix, const json_t *res, const char *id, uint64_t seq,
                   int deleted, const uint8_t *patient)
{
    struct hdx_sub_spec *spec = malloc(sizeof(*spec));
    if (!spec) return HDX_E_NOMEM;
    char path[96], why[128];
    int live = !deleted &&
               hdx_sub_parse(res, spec, path, sizeof(path), why, sizeof(why)) == HDX_OK &&
               !spec->off;
    struct sub_filter *f = sub_find(ix, id);
    int rc = HDX_OK;
    if (!f && live) {
        if (ix->nsubs == ix->subs_cap) {
            size_t cap = ix->subs_cap ? 2 * ix->subs_cap : 16;
            struct sub_filter *n = realloc(ix->subs, cap * sizeof(*n));
            if (!n) {
                free(spec);
                return HDX_E_NOMEM;
            }
            ix->subs = n;
            ix->subs_cap = cap;
        }
        f = &ix->subs[ix->nsubs++];
        memset(f, 0, sizeof(*f));
        snprintf(f->id, sizeof(f->id), "%s", id);
        f->until = 0;
    }
    if (f && live) {
        if (f->until != (uint64_t)SUB_LIVE) f->since = seq; /* new, or on again */
        f->until = (uint64_t)SUB_LIVE;
        f->has_patient = patient != NULL;
        if (patient) memcpy(f->patient, patient, HDX_BLIND_LEN);
        f->ncodes = 0;
        for (size_t i = 0; i < spec->ncodes && rc == HDX_OK; i++)
            rc = hdx_fhir_token(ix->kc, HDX_FP_CODE, spec->codes[i], strlen(spec->codes[i]),
                                f->codes[f->ncodes++]);
    } else if (f && f->until == (uint64_t)SUB_LIVE) {
        f->until = seq;
    }
    if (rc == HDX_OK && f) rc = sub_write(ix, f);
    free(spec);
    return rc;
}

static int has_token(const struct hdx_fhir_entry *e, uint8_t param, const uint8_t *tok)
{
    for (size_t i = 0; i < e->ntok; i++)
        if (e->tok[i].param == param && !memcmp(e->tok[i].tok, tok, HDX_BLIND_LEN)) return 1;
    return 0;
}

/* A version indexed: is it the topic's event (a vital-sign Observation written), and for whom? */
static int sub_match(struct hdx_fhir_index *ix, const struct hdx_fhir_entry *e, uint64_t seq,
                     uint32_t part, int64_t rid, const uint8_t *patient)
{
    if (!ix->nsubs || !rid || e->deleted || strcmp(e->type, "Observation") != 0 ||
        !has_token(e, HDX_FP_CATEGORY, ix->vital_tok))
        return HDX_OK;
    for (size_t i = 0; i < ix->nsubs; i++) {
        const struct sub_filter *f = &ix->subs[i];
        if (seq <= f->since || seq >= f->until) continue;
        if (f->has_patient && (!patient || memcmp(f->patient, patient, HDX_BLIND_LEN) != 0))
            continue;
        size_t k = 0;
        while (k < f->ncodes && !has_token(e, HDX_FP_CODE, f->codes[k]))
            k++;
        if (f->ncodes && k == f->ncodes) continue;
        sqlite3_stmt *st = ix->put_event;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, f->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        sqlite3_bind_int64(st, 3, part);
        sqlite3_bind_int64(st, 4, rid);
        if (sqlite3_step(st) != SQLITE_DONE) return HDX_E_STORE;
        ix->pass_events++;
    }
    return HDX_OK;
}

static int put_resource(struct hdx_fhir_index *ix, const json_t *res, uint64_t seq, uint32_t part,
                        int deleted, const uint8_t *patient, int64_t time_us)
{
    struct hdx_fhir_entry *e = malloc(sizeof(*e));
    if (!e) return HDX_E_NOMEM;
    int rc = hdx_fhir_extract(res, ix->kc, e);
    if (rc == HDX_E_INVAL) { /* not a resource hdxd writes: the view leaves it out */
        atomic_fetch_add(&ix->st_skipped, 1);
        rc = HDX_OK;
    } else if (rc == HDX_OK) {
        int64_t rid = 0;
        e->deleted = deleted;
        rc = put_entry(ix, e, seq, part, deleted, patient, time_us, &rid);
        if (rc == HDX_OK && !strcmp(e->type, "Subscription"))
            rc = sub_put(ix, res, e->id, seq, deleted, patient);
        if (rc == HDX_OK) rc = sub_match(ix, e, seq, part, rid, patient);
    }
    sodium_memzero(e, sizeof(*e));
    free(e);
    return rc;
}

struct pass {
    struct hdx_fhir_index *ix;
    uint64_t upto, last;
    int rc;
    size_t n;
};

static int open_body(struct hdx_fhir_index *ix, const struct hdx_record *r, uint8_t **pt,
                     size_t *len)
{
    if (r->ct_len < HDX_TAG_LEN) return HDX_E_INTEGRITY;
    *pt = malloc(r->ct_len - HDX_TAG_LEN + 1);
    if (!*pt) return HDX_E_NOMEM;
    int rc = hdx_record_open_into(r, ix->kc, *pt, r->ct_len - HDX_TAG_LEN + 1, len);
    if (rc != HDX_OK) {
        free(*pt);
        *pt = NULL;
    }
    return rc;
}

static const uint8_t *patient_of(const struct hdx_record *r)
{
    return hdx_record_has_patient(r) ? r->patient : NULL;
}

static int index_fhir(void *ctx, const struct hdx_record *r)
{
    struct pass *p = ctx;
    if (r->seq > p->upto) return 1;
    uint8_t *pt = NULL;
    size_t len = 0;
    int rc = open_body(p->ix, r, &pt, &len);
    json_t *v = rc == HDX_OK ? json_loadb((const char *)pt, len, 0, NULL) : NULL;
    if (pt) {
        sodium_memzero(pt, len);
        free(pt);
    }
    if (rc == HDX_OK && !v) atomic_fetch_add(&p->ix->st_skipped, 1);
    size_t tl = strlen(r->type), sl = strlen(HDX_FHIR_TOMBSTONE);
    int deleted = tl > sl && !strcmp(r->type + tl - sl, HDX_FHIR_TOMBSTONE);
    if (v && !strcmp(r->type, HDX_FHIR_TXN_TYPE)) {
        /* A transaction's entries carry their own patients; the record's is the first. */
        size_t i;
        json_t *entry;
        json_array_foreach(json_object_get(v, "entry"), i, entry)
        {
            json_t *res = json_object_get(entry, "resource");
            const char *pat = json_string_value(json_object_get(entry, "hdxPatient"));
            uint8_t tok[HDX_BLIND_LEN];
            int has =
                pat && strlen(pat) == 2 * HDX_BLIND_LEN && hdx_unhex(pat, tok, HDX_BLIND_LEN) == 0;
            const char *method =
                json_string_value(json_object_get(json_object_get(entry, "request"), "method"));
            int del = method && !strcmp(method, "DELETE");
            if (rc == HDX_OK)
                rc = put_resource(p->ix, res, r->seq, (uint32_t)i + 1, del, has ? tok : NULL,
                                  r->time_us);
        }
    } else if (v) {
        rc = put_resource(p->ix, v, r->seq, 0, deleted, patient_of(r), r->time_us);
    }
    json_decref(v);
    if (rc == HDX_E_CRYPTO || rc == HDX_E_INTEGRITY) {
        hdx_error("fhir_index_unreadable", "seq=%llu err=%s", (unsigned long long)r->seq,
                  hdx_strerror(rc));
        atomic_fetch_add(&p->ix->st_skipped, 1);
        rc = HDX_OK;
    }
    atomic_fetch_add(&p->ix->st_records, 1);
    p->last = r->seq;
    p->n++;
    if (rc != HDX_OK) p->rc = rc;
    return rc != HDX_OK;
}

static int index_v2(void *ctx, const struct hdx_record *r)
{
    struct pass *p = ctx;
    if (r->seq > p->upto) return 1;
    if (!strcmp(r->sender, HDX_V2MAP_SENDER)) return 0; /* an ORU made from a FHIR write */
    uint8_t *pt = NULL;
    size_t len = 0;
    int rc = open_body(p->ix, r, &pt, &len);
    json_t *obs = NULL;
    char why[128];
    struct hdx_v2map_in in = {.sender = r->sender, .seq = r->seq, .patient_ref = NULL};
    if (rc == HDX_OK && hdx_v2map_observations(pt, len, &in, &obs, why, sizeof(why)) != HDX_OK)
        atomic_fetch_add(&p->ix->st_skipped, 1);
    if (pt) {
        sodium_memzero(pt, len);
        free(pt);
    }
    size_t i;
    json_t *o;
    json_array_foreach(obs, i, o)
    {
        if (rc == HDX_OK)
            rc = put_resource(p->ix, o, r->seq, (uint32_t)i + 1, 0, patient_of(r), r->time_us);
    }
    json_decref(obs);
    if (rc == HDX_E_CRYPTO || rc == HDX_E_INTEGRITY) {
        atomic_fetch_add(&p->ix->st_skipped, 1);
        rc = HDX_OK;
    }
    p->n++;
    if (rc != HDX_OK) p->rc = rc;
    return rc != HDX_OK;
}

/* One pass: FHIR records first (their order matters: versions), up to PASS_MAX of them, then
 * the ORU messages up to the same position; one transaction with the new position. */
static int index_pass(struct hdx_fhir_index *ix, uint64_t through, uint64_t target,
                      uint64_t *reached)
{
    struct pass p = {.ix = ix, .upto = target};
    struct hdx_store_filter f = {.from_seq = through + 1, .kind = HDX_KIND_FHIR};
    ix->pass_events = 0;
    if (exec(ix->wdb, "BEGIN") != HDX_OK) return HDX_E_STORE;
    long n = hdx_store_scan(ix->store, &f, PASS_MAX, index_fhir, &p);
    int rc = n < 0 ? (int)n : p.rc;
    /* the limit reached: the pass ends at the last FHIR record it indexed */
    if (rc == HDX_OK && p.n == PASS_MAX) p.upto = p.last;
    if (rc == HDX_OK && ix->env.v2) {
        struct pass q = {.ix = ix, .upto = p.upto};
        struct hdx_store_filter g = {
            .from_seq = through + 1, .kind = HDX_KIND_HL7V2, .type = "ORU^R01"};
        n = hdx_store_scan(ix->store, &g, 0, index_v2, &q);
        rc = n < 0 ? (int)n : q.rc;
    }
    uint8_t leaf[HDX_HASH_LEN];
    int64_t t;
    if (rc == HDX_OK) rc = hdx_store_leaf_at(ix->store, p.upto, &t, leaf);
    uint64_t be = p.upto;
    if (rc == HDX_OK) rc = meta_put(ix, "through", &be, sizeof(be));
    if (rc == HDX_OK) rc = meta_put(ix, "through_leaf", leaf, sizeof(leaf));
    if (rc == HDX_OK) rc = exec(ix->wdb, "COMMIT");
    if (rc != HDX_OK) {
        exec(ix->wdb, "ROLLBACK");
        subs_load(ix); /* the pass's changes to them are gone too */
        return rc;
    }
    *reached = p.upto;
    atomic_fetch_add(&ix->events_added, ix->pass_events);
    return HDX_OK;
}

static void *indexer_main(void *arg)
{
    struct hdx_fhir_index *ix = arg;
    pthread_setname_np(pthread_self(), "hdx-fhir-index");
    int failing = 0;
    for (;;) {
        pthread_mutex_lock(&ix->mu);
        while (!ix->stop && ix->target <= atomic_load(&ix->through))
            pthread_cond_wait(&ix->cv, &ix->mu);
        uint64_t target = ix->target;
        int stop = ix->stop;
        pthread_mutex_unlock(&ix->mu);
        if (stop) break;
        uint64_t reached = 0;
        int rc = index_pass(ix, atomic_load(&ix->through), target, &reached);
        if (rc != HDX_OK) {
            if (!failing) hdx_error("fhir_index_failed", "err=%s", hdx_strerror(rc));
            failing = 1;
            struct timespec ts = {0, 200 * 1000000};
            nanosleep(&ts, NULL); /* then again: a busy store, a full disk */
            continue;
        }
        failing = 0;
        atomic_store(&ix->through, reached);
        atomic_fetch_add(&ix->st_passes, 1);
        if (ix->env.notify) ix->env.notify(ix->env.arg);
    }
    return NULL;
}

/* ---------- opening ---------- */

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK
               ? HDX_OK
               : HDX_E_STORE;
}

/* The view matches the log when the record at its position is the one it indexed; anything
 * else (a restored or replaced store) and it is rebuilt from the start. */
static int check_position(struct hdx_fhir_index *ix, uint64_t *through)
{
    uint64_t pos = 0;
    uint8_t leaf[HDX_HASH_LEN], have[HDX_HASH_LEN];
    int64_t t;
    int32_t ver = 0;
    *through = 0;
    if (meta_get(ix->wdb, "schema", &ver, sizeof(ver)) == HDX_OK && ver == SCHEMA_VERSION &&
        meta_get(ix->wdb, "through", &pos, sizeof(pos)) == HDX_OK &&
        meta_get(ix->wdb, "through_leaf", leaf, sizeof(leaf)) == HDX_OK &&
        (pos == 0 || (hdx_store_leaf_at(ix->store, pos, &t, have) == HDX_OK &&
                      !memcmp(have, leaf, sizeof(leaf))))) {
        *through = pos;
        return HDX_OK;
    }
    hdx_info("fhir_index_rebuild", "from_seq=1");
    ver = SCHEMA_VERSION;
    if (exec(ix->wdb,
             "BEGIN; DROP TABLE IF EXISTS fhir_tok; DELETE FROM fhir_tok2; DELETE FROM fhir_res;"
             " DELETE FROM fhir_meta; DELETE FROM fhir_sub; DELETE FROM fhir_sub_event;") !=
            HDX_OK ||
        meta_put(ix, "schema", &ver, sizeof(ver)) != HDX_OK || exec(ix->wdb, "COMMIT") != HDX_OK) {
        exec(ix->wdb, "ROLLBACK");
        return HDX_E_STORE;
    }
    return HDX_OK;
}

int hdx_fhir_index_open(const struct hdx_fhir_index_env *env, struct hdx_fhir_index **out,
                        char *why, size_t cap)
{
    *out = NULL;
    struct hdx_fhir_index *ix = calloc(1, sizeof(*ix));
    if (!ix) return HDX_E_NOMEM;
    ix->env = *env;
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->cv, NULL);
    int rc = HDX_OK;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(env->db_path, &ix->wdb, flags, NULL) != SQLITE_OK ||
        exec(ix->wdb, schema) != HDX_OK ||
        exec(ix->wdb, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;") != HDX_OK) {
        snprintf(why, cap, "cannot open %s: %s", env->db_path,
                 ix->wdb ? sqlite3_errmsg(ix->wdb) : "no memory");
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK &&
        (prepare(ix->wdb,
                 "INSERT INTO fhir_res(type, id, version, seq, part, current,"
                 " deleted, updated, patient, date_lo, date_hi)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10)",
                 &ix->ins_res) != HDX_OK ||
         prepare(ix->wdb, "INSERT OR IGNORE INTO fhir_tok2 VALUES(?1, ?2, ?3, ?4)", &ix->ins_tok) !=
             HDX_OK ||
         prepare(ix->wdb,
                 "UPDATE fhir_res SET current = 0 WHERE type = ?1 AND id = ?2"
                 " AND current = 1",
                 &ix->supersede) != HDX_OK ||
         prepare(ix->wdb, "INSERT OR REPLACE INTO fhir_meta VALUES(?1, ?2)", &ix->set_meta) !=
             HDX_OK ||
         prepare(ix->wdb, "INSERT OR REPLACE INTO fhir_sub VALUES(?1, ?2, ?3, ?4, ?5)",
                 &ix->put_sub) != HDX_OK ||
         prepare(ix->wdb, "INSERT OR IGNORE INTO fhir_sub_event VALUES(?1, ?2, ?3, ?4)",
                 &ix->put_event) != HDX_OK)) {
        snprintf(why, cap, "cannot prepare the FHIR index: %s", sqlite3_errmsg(ix->wdb));
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK &&
        (rc = hdx_store_open(env->store_path, HDX_STORE_RDONLY, &ix->store)) != HDX_OK)
        snprintf(why, cap, "the FHIR indexer cannot open the store: %s", hdx_strerror(rc));
    if (rc == HDX_OK && (rc = hdx_keyctx_new(env->kr, &ix->kc)) != HDX_OK)
        snprintf(why, cap, "no key context for the FHIR indexer");
    uint64_t through = 0;
    if (rc == HDX_OK && (rc = check_position(ix, &through)) != HDX_OK)
        snprintf(why, cap, "cannot reset the FHIR index %s", env->db_path);
    if (rc == HDX_OK && (subs_load(ix) != HDX_OK ||
                         hdx_fhir_token(ix->kc, HDX_FP_CATEGORY, HDX_SUB_VITAL_CATEGORY,
                                        strlen(HDX_SUB_VITAL_CATEGORY), ix->vital_tok) != HDX_OK)) {
        snprintf(why, cap, "cannot read the subscriptions of %s", env->db_path);
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK &&
        sqlite3_open_v2(env->db_path, &ix->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK) {
        snprintf(why, cap, "cannot open %s for reading", env->db_path);
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK) {
        atomic_store(&ix->through, through);
        uint64_t last = 0;
        if (hdx_store_last(ix->store, &last, (uint8_t[HDX_HASH_LEN]){0}, NULL) == HDX_OK)
            ix->target = last; /* catch up with the log at once */
        if (pthread_create(&ix->thread, NULL, indexer_main, ix) != 0) {
            snprintf(why, cap, "cannot start the FHIR indexer");
            rc = HDX_E_NOMEM;
        } else {
            ix->started = 1;
        }
    }
    if (rc != HDX_OK) {
        hdx_fhir_index_close(ix);
        return rc;
    }
    *out = ix;
    return HDX_OK;
}

void hdx_fhir_index_close(struct hdx_fhir_index *ix)
{
    if (!ix) return;
    if (ix->started) {
        pthread_mutex_lock(&ix->mu);
        ix->stop = 1;
        pthread_cond_signal(&ix->cv);
        pthread_mutex_unlock(&ix->mu);
        pthread_join(ix->thread, NULL);
    }
    sqlite3_finalize(ix->ins_res);
    sqlite3_finalize(ix->ins_tok);
    sqlite3_finalize(ix->supersede);
    sqlite3_finalize(ix->set_meta);
    sqlite3_finalize(ix->put_sub);
    sqlite3_finalize(ix->put_event);
    sqlite3_finalize(ix->get_events);
    free(ix->subs);
    sqlite3_finalize(ix->get_cur);
    sqlite3_finalize(ix->get_ver);
    sqlite3_close(ix->wdb);
    sqlite3_close(ix->rdb);
    hdx_store_close(ix->store);
    hdx_keyctx_free(ix->kc);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->cv);
    free(ix);
}

void hdx_fhir_index_advance(struct hdx_fhir_index *ix, uint64_t seq)
{
    pthread_mutex_lock(&ix->mu);
    if (seq > ix->target) {
        ix->target = seq;
        pthread_cond_signal(&ix->cv);
    }
    pthread_mutex_unlock(&ix->mu);
}

uint64_t hdx_fhir_index_events_added(struct hdx_fhir_index *ix)
{
    return atomic_load(&ix->events_added);
}

uint64_t hdx_fhir_index_through(struct hdx_fhir_index *ix)
{
    return atomic_load(&ix->through);
}

void hdx_fhir_index_get_stats(struct hdx_fhir_index *ix, struct hdx_fhir_index_stats *out)
{
    out->records = atomic_load(&ix->st_records);
    out->rows = atomic_load(&ix->st_rows);
    out->skipped = atomic_load(&ix->st_skipped);
    out->passes = atomic_load(&ix->st_passes);
}

/* ---------- queries ---------- */

#define ROW_COLS "type, id, version, seq, part, deleted, current, updated, patient"

static void row_read(sqlite3_stmt *st, struct hdx_fhir_row *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->type, sizeof(r->type), "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(st, 1));
    r->version = (uint32_t)sqlite3_column_int64(st, 2);
    r->seq = (uint64_t)sqlite3_column_int64(st, 3);
    r->part = (uint32_t)sqlite3_column_int64(st, 4);
    r->deleted = sqlite3_column_int(st, 5);
    r->current = sqlite3_column_int(st, 6);
    r->updated_us = sqlite3_column_int64(st, 7);
    if (sqlite3_column_bytes(st, 8) == HDX_BLIND_LEN) {
        r->has_patient = 1;
        memcpy(r->patient, sqlite3_column_blob(st, 8), HDX_BLIND_LEN);
    }
}

int hdx_fhir_index_get(struct hdx_fhir_index *ix, const char *type, const char *id,
                       uint32_t version, struct hdx_fhir_row *out)
{
    sqlite3_stmt **slot = version ? &ix->get_ver : &ix->get_cur;
    const char *sql = version ? "SELECT " ROW_COLS " FROM fhir_res WHERE type = ?1 AND id = ?2"
                                " AND version = ?3"
                              : "SELECT " ROW_COLS " FROM fhir_res WHERE type = ?1 AND id = ?2"
                                " AND current = 1";
    if (!*slot && prepare(ix->rdb, sql, slot) != HDX_OK) return HDX_E_STORE;
    sqlite3_stmt *st = *slot;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (version) sqlite3_bind_int64(st, 3, version);
    int src = sqlite3_step(st), rc;
    if (src == SQLITE_ROW) {
        row_read(st, out);
        rc = HDX_OK;
    } else {
        rc = src == SQLITE_DONE ? HDX_E_NOTFOUND : HDX_E_STORE;
    }
    sqlite3_reset(st); /* no read snapshot is kept open between requests */
    return rc;
}

long hdx_fhir_index_events(struct hdx_fhir_index *ix, const struct hdx_fhir_event_pos *after,
                           size_t limit,
                           int (*cb)(void *ctx, const char *sub, const struct hdx_fhir_row *row),
                           void *ctx)
{
    if (!ix->get_events &&
        prepare(ix->rdb,
                "SELECT r.type, r.id, r.version, r.seq, r.part, r.deleted, r.current, r.updated,"
                " r.patient, e.sub FROM fhir_sub_event e JOIN fhir_res r ON r.rid = e.rid"
                " WHERE (e.seq, e.part, e.sub) > (?1, ?2, ?3) ORDER BY e.seq, e.part, e.sub"
                " LIMIT ?4",
                &ix->get_events) != HDX_OK)
        return HDX_E_STORE;
    sqlite3_stmt *st = ix->get_events;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after->seq);
    sqlite3_bind_int64(st, 2, after->part);
    sqlite3_bind_text(st, 3, after->sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, limit ? (sqlite3_int64)limit : -1);
    long n = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        struct hdx_fhir_row row;
        row_read(st, &row);
        n++;
        if (cb(ctx, (const char *)sqlite3_column_text(st, 9), &row)) break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) n = HDX_E_STORE;
    sqlite3_reset(st);
    return n;
}

struct sqlbuf {
    char s[4096];
    size_t n;
    int over;
};

static void sql_add(struct sqlbuf *b, const char *text)
{
    size_t l = strlen(text);
    if (b->n + l + 1 > sizeof(b->s)) {
        b->over = 1;
        return;
    }
    memcpy(b->s + b->n, text, l + 1);
    b->n += l;
}

/* A range condition and its values (FHIR R4 search, "date" prefixes): the resource's range
 * is [date_lo, date_hi), a lastUpdated is a point; the value's range is [lo, hi). */
static const char *range_sql(const struct hdx_fhir_range *r, int64_t v[2], int *nv)
{
    *nv = 1;
    v[0] = r->lo;
    v[1] = r->hi;
    switch (r->prefix) {
    case HDX_FHIR_EQ:
        *nv = 2;
        return r->on_updated ? " AND updated >= ? AND updated < ?"
                             : " AND date_lo >= ? AND date_hi <= ?";
    case HDX_FHIR_NE:
        *nv = 2;
        return r->on_updated ? " AND NOT (updated >= ? AND updated < ?)"
                             : " AND date_lo IS NOT NULL AND NOT (date_lo >= ? AND date_hi <= ?)";
    case HDX_FHIR_LT:
        return r->on_updated ? " AND updated < ?" : " AND date_lo < ?";
    case HDX_FHIR_LE:
        v[0] = r->hi;
        return r->on_updated ? " AND updated < ?" : " AND date_lo < ?";
    case HDX_FHIR_GT:
        v[0] = r->hi;
        return r->on_updated ? " AND updated >= ?" : " AND date_hi > ?";
    case HDX_FHIR_GE:
        return r->on_updated ? " AND updated >= ?" : " AND date_hi > ?";
    }
    return "";
}

long hdx_fhir_index_query(struct hdx_fhir_index *ix, const struct hdx_fhir_query *q, size_t limit,
                          int (*cb)(void *ctx, const struct hdx_fhir_row *row), void *ctx)
{
    struct sqlbuf b = {.n = 0};
    sql_add(&b, "SELECT " ROW_COLS " FROM fhir_res WHERE type = ?");
    if (q->history)
        sql_add(&b, q->since_us ? " AND updated >= ?" : "");
    else
        sql_add(&b, " AND current = 1 AND deleted = 0");
    if (q->id) sql_add(&b, " AND id = ?");
    if (q->patient) sql_add(&b, " AND patient = ?");
    for (size_t g = 0; g < q->ngroups; g++) {
        if (g == 0 && q->patient) {
            /* one patient: its rows holding the token, straight from the token's key */
            sql_add(&b, " AND rid IN (SELECT rid FROM fhir_tok2 WHERE param = ? AND tok IN (");
            for (size_t k = 0; k < q->groups[g].n; k++)
                sql_add(&b, k ? ", ?" : "?");
            sql_add(&b, ") AND patient = ?)");
            continue;
        }
        /* correlated: one primary-key probe per candidate row and token; "rid IN (SELECT ...)"
         * without a patient made SQLite copy every row holding the token first
         * (bench/fhir_search_sql.py) */
        sql_add(&b, " AND EXISTS (SELECT 1 FROM fhir_tok2 t WHERE t.param = ? AND t.tok IN (");
        for (size_t k = 0; k < q->groups[g].n; k++)
            sql_add(&b, k ? ", ?" : "?");
        sql_add(&b, ") AND t.patient = coalesce(fhir_res.patient, zeroblob(16))"
                    " AND t.rid = fhir_res.rid)");
    }
    int64_t vals[HDX_FHIR_RANGES_MAX][2];
    int nvals[HDX_FHIR_RANGES_MAX];
    for (size_t i = 0; i < q->nranges; i++)
        sql_add(&b, range_sql(&q->ranges[i], vals[i], &nvals[i]));
    if (q->history)
        sql_add(&b, " ORDER BY updated DESC, rid DESC");
    else if (q->sort_date_desc)
        sql_add(&b, " ORDER BY date_lo DESC, rid DESC");
    else if (q->sort_date)
        sql_add(&b, " ORDER BY date_lo ASC, rid ASC");
    else
        sql_add(&b, " ORDER BY rid ASC");
    if (b.over) return HDX_E_INVAL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(ix->rdb, b.s, -1, &st, NULL) != SQLITE_OK) return HDX_E_STORE;
    int k = 1;
    sqlite3_bind_text(st, k++, q->type, -1, SQLITE_STATIC);
    if (q->history && q->since_us) sqlite3_bind_int64(st, k++, q->since_us);
    if (q->id) sqlite3_bind_text(st, k++, q->id, -1, SQLITE_STATIC);
    if (q->patient) sqlite3_bind_blob(st, k++, q->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    for (size_t g = 0; g < q->ngroups; g++) {
        sqlite3_bind_int(st, k++, q->groups[g].param);
        for (size_t t = 0; t < q->groups[g].n; t++)
            sqlite3_bind_blob(st, k++, q->groups[g].tok[t], HDX_BLIND_LEN, SQLITE_STATIC);
        if (g == 0 && q->patient)
            sqlite3_bind_blob(st, k++, q->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    }
    for (size_t i = 0; i < q->nranges; i++)
        for (int j = 0; j < nvals[i]; j++)
            sqlite3_bind_int64(st, k++, vals[i][j]);
    long n = 0;
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        struct hdx_fhir_row row;
        row_read(st, &row);
        n++;
        if (cb(ctx, &row) || (limit && (size_t)n >= limit)) break;
    }
    if (src != SQLITE_ROW && src != SQLITE_DONE) n = HDX_E_STORE;
    sqlite3_finalize(st);
    return n;
}
