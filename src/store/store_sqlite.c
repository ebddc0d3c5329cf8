#include "store/store.h"

#include <libgen.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "store/segment.h"

#define STORE_SCHEMA_VERSION 9
/* row_to_record: the index fields are read but the body's frame is missing or damaged. */
#define HDX_E_BODY (-1000)
#define STORE_PAGE_SIZE "4096"

enum stmt_id {
    ST_INSERT,
    ST_DEDUP_LOG,
    ST_LAST,
    ST_GET,
    ST_COUNT,
    ST_TIME_AT,
    ST_COUNT_ALL,
    ST_NODE_GET,
    ST_NODE_PUT,
    ST_LEAF_GET,
    ST_LEAF_RANGE,
    ST_STH_PUT,
    ST_STH_LATEST,
    ST_STH_AT,
    ST_LEAF_AT,
};

static const char *const stmt_sql[] = {
    [ST_INSERT] = "INSERT INTO records(seq,time_us,kind,sender,type,patient,dedup,key_id,nonce,"
                  "ct,leaf,chain,seg,off) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [ST_DEDUP_LOG] = "INSERT OR REPLACE INTO dedup_log(seq,token,content,reused) VALUES(?,?,?,?)",
    [ST_LAST] = "SELECT seq,chain,time_us,seg,off FROM records ORDER BY seq DESC LIMIT 1",
    [ST_GET] = "SELECT seq,time_us,kind,sender,type,patient,dedup,key_id,nonce,ct,leaf,chain,seg,"
               "off FROM records WHERE seq=?",
    [ST_COUNT] = "SELECT count(*) FROM records",
    [ST_TIME_AT] = "SELECT time_us FROM records WHERE seq>=? ORDER BY seq LIMIT 1",
    [ST_COUNT_ALL] = "SELECT max(seq) FROM records",
    [ST_NODE_GET] = "SELECT hash FROM merkle_nodes WHERE level=? AND idx=?",
    [ST_NODE_PUT] = "INSERT INTO merkle_nodes(level,idx,hash) VALUES(?,?,?) "
                    "ON CONFLICT(level,idx) DO UPDATE SET hash=excluded.hash",
    [ST_LEAF_GET] = "SELECT leaf FROM records WHERE seq=?",
    [ST_LEAF_RANGE] = "SELECT leaf FROM records WHERE seq>=? AND seq<? ORDER BY seq",
    [ST_STH_PUT] = "INSERT INTO sth(tree_size,timestamp_ms,root,signature) VALUES(?,?,?,?) "
                   "ON CONFLICT(tree_size) DO NOTHING",
    [ST_STH_LATEST] = "SELECT tree_size,timestamp_ms,root,signature FROM sth "
                      "ORDER BY tree_size DESC LIMIT 1",
    [ST_STH_AT] = "SELECT tree_size,timestamp_ms,root,signature FROM sth WHERE tree_size=?",
    [ST_LEAF_AT] = "SELECT time_us,leaf FROM records WHERE seq=?",
};
#define NSTMT (sizeof(stmt_sql) / sizeof(stmt_sql[0]))

/* Lookups made per request or per connection (an API key's principal and scopes, a
 * certificate's device): prepared on first use and kept, because compiling them each time
 * was a sixth of a FHIR read's CPU. Lazily, because a reader may open a store whose writer
 * has not made these tables yet. */
enum lazy_id {
    LZ_USER_GET,
    LZ_DEVICE_SCOPE_GET,
    LZ_DEVICE_GET,
};
#define USER_COLS                                                                                  \
    "name,role,pw_hash,totp_sealed,recovery,recovery_used,totp_step,locked,created_us,"            \
    "pw_changed_us,mfa_us,sessions_revoked_us,training"
static const char *const lazy_sql[] = {
    [LZ_USER_GET] = "SELECT " USER_COLS " FROM users WHERE name=?",
    [LZ_DEVICE_SCOPE_GET] = "SELECT name,scope,set_us FROM device_scopes WHERE name=?",
    [LZ_DEVICE_GET] = "SELECT name,role,serial,created_us,revoked_us FROM devices WHERE name=?",
};
#define NLAZY (sizeof(lazy_sql) / sizeof(lazy_sql[0]))

/* WAL pages after which the background checkpointer is woken (SQLite's own default for
 * autocheckpoint is 1000). */
#define CHECKPOINT_PAGES 2000
#define WAL_RESTART_PAGES 32768 /* 128 MiB of 4 KiB pages */

/* Checkpoints run on their own thread and connection so that copying the WAL back into the
 * database (and its fsync) never stalls the commit thread between two group commits. */
struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int wanted, stopping;
    sqlite3 *db;
};

/* DESIGN (bodies in segments, the index in SQLite). A record's leaf encoding (header, nonce,
 * ciphertext) goes to the append-only segment files (store/segment.h); its index row (seq,
 * time, kind, sender, type, blind tokens, leaf and chain hash, and where the frame is) to
 * SQLite. The writer orders every batch so:
 *   1. the frames are written and fdatasync'd (hdx_seg_append returns only then);
 *   2. the index rows, tree nodes, head and derived rows are inserted and COMMITted, with
 *      synchronous=NORMAL: no flush of its own, so a batch costs ONE flush;
 *   3. only then may the caller acknowledge.
 * A kill after 1 leaves frames the index lacks; a power cut after 2 may lose the index
 * transaction (WAL not yet flushed) but never the frames. Either way the writer's start
 * (hdx_store_recover) finds the frames after the index's last record, hands each to the caller
 * to re-derive its index row, and cuts what follows the last whole frame (a torn write, never
 * acknowledged). An index row whose frame is missing or damaged cannot come from this order:
 * it is an integrity failure (hdx verify names the seq). */
struct hdx_store {
    sqlite3 *db;
    sqlite3_stmt *st[NSTMT];
    sqlite3_stmt *lazy[NLAZY];
    int failed; /* sticky: a write or commit failed */
    int in_txn;
    int writer, recovered, nosync;
    struct checkpointer *ckpt;
    char seg_dir[4096];
    struct hdx_seg *seg; /* NULL: not opened yet (readers open it on first use) */
    int seg_missing;     /* a reader found no segment directory */
    struct hdx_seg_frame *frames;
    struct hdx_seg_pos *pos;
    size_t frames_cap;
    void (*on_durable)(void *arg);
    void *on_durable_arg;
    size_t seg_size; /* 0: the default */
    /* The last scan's statement, kept for the next scan of the same shape (a route lane scans
     * after every commit batch: preparing each time was a visible share of its CPU); reset,
     * never left mid-step, so it holds no read snapshot between scans. */
    char scan_sql[512];
    sqlite3_stmt *scan_q;
    int scan_busy; /* a scan is running: one from its callback prepares its own */
};

/* users: the replay of the user_* admin records (commit/admin.h). totp_sealed and recovery are
 * NULL together (no second factor); recovery is the ten stored codes back to back. */
#define USERS_SQL                                                                                  \
    "CREATE TABLE IF NOT EXISTS users(name TEXT PRIMARY KEY, role TEXT NOT NULL,"                  \
    " pw_hash TEXT NOT NULL, totp_sealed BLOB, recovery BLOB, recovery_used INTEGER NOT NULL,"     \
    " totp_step INTEGER NOT NULL, locked INTEGER NOT NULL, created_us INTEGER NOT NULL,"           \
    " pw_changed_us INTEGER NOT NULL, mfa_us INTEGER NOT NULL,"                                    \
    " sessions_revoked_us INTEGER NOT NULL, training TEXT NOT NULL) STRICT;"

/* The policy data: the replay of the careteam_*, consent_* and break_glass* admin records.
 * The patient is its 16-byte blind token. A consent's empty purpose or role is '' (a NULL
 * would make the primary key non-unique in SQLite). */
#define POLICY_SQL                                                                                 \
    "CREATE TABLE IF NOT EXISTS careteams(name TEXT NOT NULL, patient BLOB NOT NULL,"              \
    " PRIMARY KEY(name, patient)) STRICT;"                                                         \
    "CREATE TABLE IF NOT EXISTS consents(patient BLOB NOT NULL, purpose TEXT NOT NULL,"            \
    " role TEXT NOT NULL, PRIMARY KEY(patient, purpose, role)) STRICT;"                            \
    "CREATE TABLE IF NOT EXISTS break_glass(name TEXT NOT NULL, patient BLOB NOT NULL,"            \
    " granted_us INTEGER NOT NULL, expires_us INTEGER NOT NULL, justification TEXT NOT NULL,"      \
    " reviewed_by TEXT NOT NULL, reviewed_us INTEGER NOT NULL,"                                    \
    " PRIMARY KEY(name, patient, granted_us)) STRICT;"

/* Subscribers' granted scopes: the replay of the device_scope admin records, keyed by device
 * name (a scope may be set before the device_add that enrols the name). scope is the
 * canonical text (policy/scope.h); set_us the time of the record that set it. */
#define SCOPES_SQL                                                                                 \
    "CREATE TABLE IF NOT EXISTS device_scopes(name TEXT PRIMARY KEY, scope TEXT NOT NULL,"         \
    " set_us INTEGER NOT NULL) STRICT;"

/* SMART Backend Services clients: the replay of the client_* admin records, keyed by client
 * id. jwks is the registered JWK Set document (public keys), scope the canonical SMART scope
 * text granted (auth/smart_scope.h), revoked_us 0 while active. */
#define CLIENTS_SQL                                                                                \
    "CREATE TABLE IF NOT EXISTS smart_clients(name TEXT PRIMARY KEY, jwks BLOB NOT NULL,"          \
    " scope TEXT NOT NULL, created_us INTEGER NOT NULL, revoked_us INTEGER NOT NULL) STRICT;"

/* DICOM AE titles bound to devices: the replay of the ae_* admin records, keyed by title. */
#define AES_SQL                                                                                    \
    "CREATE TABLE IF NOT EXISTS dicom_aes(title TEXT PRIMARY KEY, name TEXT NOT NULL,"             \
    " set_us INTEGER NOT NULL) STRICT;"

/* The admin records (users, devices, keys, route dead letters...: a few in a million) are
 * read whole at start and by every route that starts; without this index each of those reads
 * was a scan of every record. Partial, so a message or audit record costs no index write; a
 * scan uses it when its SQL names the kind as this literal (build_scan_sql). */
#define ADMIN_KIND_SQL "5"
_Static_assert(HDX_KIND_ADMIN == 5, "ADMIN_KIND_SQL is HDX_KIND_ADMIN");
#define ADMIN_INDEX_SQL                                                                            \
    "CREATE INDEX IF NOT EXISTS records_admin ON records(seq) WHERE kind=" ADMIN_KIND_SQL ";"
/* The same for audit records: `hdx audit`, GET /api/audit and the FHIR AuditEvent search read
 * only them, and without the index each read was a scan of every record, messages included.
 * An audit record costs one more index entry (appended: seq only grows); a message none. */
#define AUDIT_KIND_SQL "4"
_Static_assert(HDX_KIND_AUDIT == 4, "AUDIT_KIND_SQL is HDX_KIND_AUDIT");
#define AUDIT_INDEX_SQL                                                                            \
    "CREATE INDEX IF NOT EXISTS records_audit ON records(seq) WHERE kind=" AUDIT_KIND_SQL ";"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v ANY) STRICT;"
    "CREATE TABLE IF NOT EXISTS keys(kind INTEGER NOT NULL, id INTEGER NOT NULL,"
    " wrapped BLOB NOT NULL, created_us INTEGER NOT NULL, PRIMARY KEY(kind,id)) STRICT;"
    "CREATE TABLE IF NOT EXISTS records(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, sender TEXT NOT NULL, type TEXT NOT NULL, patient BLOB,"
    " dedup BLOB, key_id INTEGER NOT NULL, nonce BLOB NOT NULL, ct BLOB NOT NULL,"
    " leaf BLOB NOT NULL, chain BLOB NOT NULL, seg INTEGER, off INTEGER) STRICT;"
    "CREATE TABLE IF NOT EXISTS dedup_log(seq INTEGER PRIMARY KEY, token BLOB NOT NULL,"
    " content BLOB, reused INTEGER) STRICT;"
    "CREATE TABLE IF NOT EXISTS merkle_nodes(level INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " hash BLOB NOT NULL, PRIMARY KEY(level,idx)) WITHOUT ROWID, STRICT;"
    "CREATE TABLE IF NOT EXISTS sth(tree_size INTEGER PRIMARY KEY, timestamp_ms INTEGER NOT NULL,"
    " root BLOB NOT NULL, signature BLOB NOT NULL) STRICT;"
    "CREATE INDEX IF NOT EXISTS records_patient ON records(patient) WHERE patient IS NOT "
    "NULL;" ADMIN_INDEX_SQL AUDIT_INDEX_SQL
    "CREATE TABLE IF NOT EXISTS devices(name TEXT PRIMARY KEY, role TEXT NOT NULL,"
    " serial TEXT NOT NULL, created_us INTEGER NOT NULL, revoked_us INTEGER NOT NULL DEFAULT 0)"
    " STRICT;"
    "CREATE TABLE IF NOT EXISTS device_keys(name TEXT PRIMARY KEY, sign_pub BLOB NOT NULL,"
    " created_us INTEGER NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS stream_marks(seq INTEGER PRIMARY KEY, checkpoint INTEGER NOT NULL,"
    " verified INTEGER NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS admin_queue(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " body BLOB NOT NULL, created_us INTEGER NOT NULL) STRICT;" USERS_SQL POLICY_SQL SCOPES_SQL
        CLIENTS_SQL AES_SQL "INSERT OR IGNORE INTO meta(k,v) VALUES('schema_version', 9);";

/* Version 1 (the first release) kept every ciphertext in records.ct and had no content
 * digests in the duplicate log. Its rows stay as they are and are read as they are (seg NULL:
 * the body is in ct); new records go to the segment files. Its duplicate-log rows keep NULL
 * digests and are compared by control id alone, as they were then. */
static const char migrate_1_to_2_sql[] = "ALTER TABLE records ADD COLUMN seg INTEGER;"
                                         "ALTER TABLE records ADD COLUMN off INTEGER;"
                                         "ALTER TABLE dedup_log ADD COLUMN content BLOB;"
                                         "ALTER TABLE dedup_log ADD COLUMN reused INTEGER;"
                                         "UPDATE meta SET v=2 WHERE k='schema_version';";
/* Version 2 had no users; nothing else changed. */
static const char migrate_2_to_3_sql[] = USERS_SQL "UPDATE meta SET v=3 WHERE k='schema_version';";
/* Version 3 had no policy data; nothing else changed. */
static const char migrate_3_to_4_sql[] = POLICY_SQL "UPDATE meta SET v=4 WHERE k='schema_version';";
/* Version 4 had no scopes (every subscriber received everything its filter matched, which an
 * absent row still means); nothing else changed. */
static const char migrate_4_to_5_sql[] = SCOPES_SQL "UPDATE meta SET v=5 WHERE k='schema_version';";
/* Version 5 had no SMART clients (no backend client could be registered); nothing else
 * changed. */
static const char migrate_5_to_6_sql[] =
    CLIENTS_SQL "UPDATE meta SET v=6 WHERE k='schema_version';";
/* Version 6 had no DICOM AE titles (no association could be bound); nothing else changed. */
static const char migrate_6_to_7_sql[] = AES_SQL "UPDATE meta SET v=7 WHERE k='schema_version';";
/* Version 7 had no index of admin records (built here once: one scan of the records);
 * nothing else changed. */
static const char migrate_7_to_8_sql[] =
    ADMIN_INDEX_SQL "UPDATE meta SET v=8 WHERE k='schema_version';";
/* Version 8 had no index of audit records (built here once: one scan of the records);
 * nothing else changed. */
static const char migrate_8_to_9_sql[] =
    AUDIT_INDEX_SQL "UPDATE meta SET v=9 WHERE k='schema_version';";

static int db_error(struct hdx_store *s, const char *what)
{
    hdx_error("store_error", "op=%s code=%d", what, sqlite3_extended_errcode(s->db));
    return HDX_E_STORE;
}

/* The kept statement, reset and unbound, or NULL (logged). The caller resets it again
 * before returning, so that no read snapshot stays open between requests. */
static sqlite3_stmt *lazy_stmt(struct hdx_store *s, enum lazy_id id)
{
    if (!s->lazy[id] && sqlite3_prepare_v3(s->db, lazy_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                           &s->lazy[id], NULL) != SQLITE_OK) {
        db_error(s, "prepare");
        return NULL;
    }
    sqlite3_reset(s->lazy[id]);
    sqlite3_clear_bindings(s->lazy[id]);
    return s->lazy[id];
}

static int exec(struct hdx_store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    sqlite3_free(msg);
    return rc == SQLITE_OK ? HDX_OK : db_error(s, "exec");
}

/* 0 for a new file (no meta table yet). */
static int schema_version(struct hdx_store *s)
{
    sqlite3_stmt *q = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k='schema_version'", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

static int configure(struct hdx_store *s, int flags)
{
    sqlite3_busy_timeout(s->db, 10000);
    if (flags & HDX_STORE_RDONLY) {
        int version = schema_version(s);
        if (version == STORE_SCHEMA_VERSION) return HDX_OK;
        hdx_error("store_schema_mismatch",
                  "schema_version=%d supported=%d action=\"start hdxd once: it migrates the "
                  "store\"",
                  version, STORE_SCHEMA_VERSION);
        return HDX_E_STORE;
    }
    /* Named, not left to the library's build default, so that every build makes the same
     * files. Every dirty page is written whole to the WAL and again at checkpoint, and each
     * record dirties one page of the patient index (the duplicate tokens are appended in
     * order). Only takes effect when the file is created. */
    if ((flags & HDX_STORE_CREATE) && exec(s, "PRAGMA page_size=" STORE_PAGE_SIZE) != HDX_OK)
        return HDX_E_STORE;
    if (exec(s, "PRAGMA journal_mode=WAL") != HDX_OK) return HDX_E_STORE;
    /* FULL: the WAL is fsynced at each commit, so a committed transaction survives power loss
     * (tools that change keys or devices). The writer of records uses NORMAL: its records are
     * durable in the segment files first, and the index is rebuilt from them after a power cut
     * (see DESIGN above), so its commits need no flush of their own. */
    const char *sync = (flags & HDX_STORE_NOSYNC)   ? "PRAGMA synchronous=OFF"
                       : (flags & HDX_STORE_WRITER) ? "PRAGMA synchronous=NORMAL"
                                                    : "PRAGMA synchronous=FULL";
    if (exec(s, sync) != HDX_OK) return HDX_E_STORE;
    if (exec(s, "BEGIN IMMEDIATE") != HDX_OK) return HDX_E_STORE;
    int version = schema_version(s);
    int rc = version == 1 ? exec(s, migrate_1_to_2_sql) : HDX_OK;
    if (rc == HDX_OK && (version == 1 || version == 2)) rc = exec(s, migrate_2_to_3_sql);
    if (rc == HDX_OK && version >= 1 && version <= 3) rc = exec(s, migrate_3_to_4_sql);
    if (rc == HDX_OK && version >= 1 && version <= 4) rc = exec(s, migrate_4_to_5_sql);
    if (rc == HDX_OK && version >= 1 && version <= 5) rc = exec(s, migrate_5_to_6_sql);
    if (rc == HDX_OK && version >= 1 && version <= 6) rc = exec(s, migrate_6_to_7_sql);
    if (rc == HDX_OK && version >= 1 && version <= 7) rc = exec(s, migrate_7_to_8_sql);
    if (rc == HDX_OK && version >= 1 && version <= 8) rc = exec(s, migrate_8_to_9_sql);
    if (rc == HDX_OK && version > STORE_SCHEMA_VERSION) {
        hdx_error("store_too_new", "schema_version=%d supported=%d", version, STORE_SCHEMA_VERSION);
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK) rc = exec(s, schema_sql);
    if (rc == HDX_OK && version >= 1 && version < STORE_SCHEMA_VERSION)
        hdx_info("store_migrated", "from_schema=%d to_schema=%d", version, STORE_SCHEMA_VERSION);
    (void)sqlite3_exec(s->db, rc == HDX_OK ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct checkpointer *c = arg;
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&c->lock);
        c->wanted = 1;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
    struct checkpointer *c = arg;
    /* A checkpoint that lags only lets the WAL grow until the RESTART bound below. */
    (void)hdx_thread_background("hdx-walckpt");
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->wanted && !c->stopping)
            pthread_cond_wait(&c->wake, &c->lock);
        int stop = c->stopping;
        c->wanted = 0;
        pthread_mutex_unlock(&c->lock);
        if (stop) break;
        int log_pages = 0, done = 0;
        int rc =
            sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &done);
        /* Under sustained load passive checkpoints never catch up, and the WAL only restarts
         * from its beginning once one has. Past a bound, a RESTART checkpoint makes the
         * writer wait for the little that is left, so the WAL stays bounded. */
        if (rc == SQLITE_OK && log_pages >= WAL_RESTART_PAGES)
            rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) hdx_warn("checkpoint_failed", "code=%d", rc);
    }
    return NULL;
}

static void checkpointer_stop(struct checkpointer *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
}

static int checkpointer_start(struct hdx_store *s, const char *path, int sync_full)
{
    struct checkpointer *c = calloc(1, sizeof(*c));
    if (!c) return HDX_E_NOMEM;
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(c->db);
        free(c);
        return HDX_E_STORE;
    }
    sqlite3_busy_timeout(c->db, 1000);
    sqlite3_exec(c->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF", NULL,
                 NULL, NULL);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
        sqlite3_close(c->db);
        free(c);
        return HDX_E_NOMEM;
    }
    s->ckpt = c;
    sqlite3_wal_hook(s->db, wal_hook, c); /* replaces SQLite's inline autocheckpoint */
    return HDX_OK;
}

int hdx_store_open(const char *path, int flags, struct hdx_store **out)
{
    *out = NULL;
    struct hdx_store *s = calloc(1, sizeof(*s));
    if (!s) return HDX_E_NOMEM;
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    snprintf(s->seg_dir, sizeof(s->seg_dir), "%s/segments", dirname(copy));
    s->writer = !(flags & HDX_STORE_RDONLY);
    s->nosync = (flags & HDX_STORE_NOSYNC) != 0;
    int oflags = (flags & HDX_STORE_RDONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (flags & HDX_STORE_CREATE) oflags |= SQLITE_OPEN_CREATE;
    oflags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, oflags, NULL) != SQLITE_OK) {
        hdx_error("store_open_failed", "code=%d", s->db ? sqlite3_errcode(s->db) : -1);
        hdx_store_close(s);
        return HDX_E_STORE;
    }
    if (configure(s, flags) != HDX_OK) {
        hdx_store_close(s);
        return HDX_E_STORE;
    }
    if ((flags & HDX_STORE_WRITER) &&
        (exec(s, "PRAGMA cache_size=-65536") != HDX_OK ||
         exec(s, "PRAGMA journal_size_limit=134217728") != HDX_OK ||
         checkpointer_start(s, path, !(flags & HDX_STORE_NOSYNC)) != HDX_OK)) {
        hdx_store_close(s);
        return HDX_E_STORE;
    }
    for (size_t i = 0; i < NSTMT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            db_error(s, "prepare");
            hdx_store_close(s);
            return HDX_E_STORE;
        }
    }
    *out = s;
    return HDX_OK;
}

void hdx_store_close(struct hdx_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < NSTMT; i++)
        sqlite3_finalize(s->st[i]);
    for (size_t i = 0; i < NLAZY; i++)
        sqlite3_finalize(s->lazy[i]);
    sqlite3_finalize(s->scan_q);
    checkpointer_stop(s->ckpt);
    /* Other (read-only) connections may outlive this one, and SQLite checkpoints at close
     * only on the last; the writer leaves the database whole and the WAL empty itself. */
    if (s->ckpt && !s->failed)
        (void)sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_close(s->db);
    hdx_seg_close(s->seg);
    free(s->frames);
    free(s->pos);
    free(s);
}

int hdx_store_begin(struct hdx_store *s)
{
    if (s->failed) return HDX_E_STORE;
    if (exec(s, "BEGIN IMMEDIATE") != HDX_OK) {
        s->failed = 1;
        return HDX_E_STORE;
    }
    s->in_txn = 1;
    return HDX_OK;
}

int hdx_store_commit(struct hdx_store *s)
{
    if (s->failed) return HDX_E_STORE;
    s->in_txn = 0;
    if (exec(s, "COMMIT") != HDX_OK) {
        s->failed = 1;
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return HDX_E_STORE;
    }
    return HDX_OK;
}

int hdx_store_read_begin(struct hdx_store *s)
{
    return s->in_txn ? HDX_E_INVAL : exec(s, "BEGIN DEFERRED");
}

void hdx_store_read_end(struct hdx_store *s)
{
    if (!s->in_txn) (void)sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
}

void hdx_store_rollback(struct hdx_store *s)
{
    if (s->in_txn) (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->in_txn = 0;
}

static sqlite3_stmt *stmt(struct hdx_store *s, enum stmt_id id)
{
    sqlite3_reset(s->st[id]);
    sqlite3_clear_bindings(s->st[id]);
    return s->st[id];
}

/* The newest record; *has_pos = 0 when there is none or its body is in the row (schema 1). */
static int last_row(struct hdx_store *s, uint64_t *seq, uint8_t chain[HDX_HASH_LEN],
                    int64_t *time_us, struct hdx_seg_pos *pos, int *has_pos)
{
    sqlite3_stmt *q = stmt(s, ST_LAST);
    *seq = 0;
    *has_pos = 0;
    memset(chain, 0, HDX_HASH_LEN);
    if (time_us) *time_us = 0;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) return HDX_OK;
    if (rc != SQLITE_ROW) return db_error(s, "last");
    *seq = (uint64_t)sqlite3_column_int64(q, 0);
    if (sqlite3_column_bytes(q, 1) != HDX_HASH_LEN) {
        sqlite3_reset(q);
        return HDX_E_INTEGRITY;
    }
    memcpy(chain, sqlite3_column_blob(q, 1), HDX_HASH_LEN);
    if (time_us) *time_us = sqlite3_column_int64(q, 2);
    if (sqlite3_column_type(q, 3) != SQLITE_NULL) {
        pos->base = (uint64_t)sqlite3_column_int64(q, 3);
        pos->off = (uint64_t)sqlite3_column_int64(q, 4);
        *has_pos = 1;
    }
    sqlite3_reset(q);
    return HDX_OK;
}

int hdx_store_last(struct hdx_store *s, uint64_t *seq, uint8_t chain[HDX_HASH_LEN],
                   int64_t *time_us)
{
    struct hdx_seg_pos pos;
    int has_pos;
    return last_row(s, seq, chain, time_us, &pos, &has_pos);
}

/* Segment files are opened on first use: a tool that opens the store to change keys or
 * devices never takes the segment writer's lock, and a reader of a store without segments
 * (schema 1, or nothing written yet) never needs them. */
static int seg_ensure(struct hdx_store *s)
{
    if (s->seg) return HDX_OK;
    if (s->seg_missing) return HDX_E_NOTFOUND;
    int flags = s->writer ? HDX_SEG_CREATE | (s->nosync ? HDX_SEG_NOSYNC : 0) : HDX_SEG_RDONLY;
    int rc = hdx_seg_open(s->seg_dir, flags, s->writer ? s->seg_size : 0, &s->seg);
    if (rc == HDX_E_NOTFOUND && !s->writer) s->seg_missing = 1;
    if (rc != HDX_OK && rc != HDX_E_NOTFOUND)
        hdx_error("segments_open_failed", "err=%s", hdx_strerror(rc));
    return rc;
}

int hdx_store_dedup_load(struct hdx_store *s, uint64_t after_seq,
                         void (*cb)(void *ctx, const uint8_t *token, const uint8_t *content,
                                    uint64_t seq),
                         void *ctx)
{
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seq,token,content FROM dedup_log WHERE seq>? ORDER BY seq", -1,
                           &q, NULL) != SQLITE_OK)
        return db_error(s, "dedup_prepare");
    sqlite3_bind_int64(q, 1, (sqlite3_int64)after_seq);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (sqlite3_column_bytes(q, 1) == HDX_BLIND_LEN)
            cb(ctx, sqlite3_column_blob(q, 1),
               sqlite3_column_bytes(q, 2) == HDX_BLIND_LEN ? sqlite3_column_blob(q, 2) : NULL,
               (uint64_t)sqlite3_column_int64(q, 0));
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? HDX_OK : db_error(s, "dedup_load");
}

static int has_dedup(const struct hdx_record *r)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    return memcmp(r->dedup, zero, HDX_BLIND_LEN) != 0;
}

static int append_one(struct hdx_store *s, const struct hdx_store_entry *e,
                      const struct hdx_seg_pos *pos)
{
    static const uint8_t empty[1];
    const struct hdx_record *r = e->r;
    sqlite3_stmt *q = stmt(s, ST_INSERT);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)r->seq);
    sqlite3_bind_int64(q, 2, r->time_us);
    sqlite3_bind_int(q, 3, r->kind);
    sqlite3_bind_text(q, 4, r->sender, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, r->type, -1, SQLITE_STATIC);
    if (hdx_record_has_patient(r))
        sqlite3_bind_blob(q, 6, r->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    if (has_dedup(r)) sqlite3_bind_blob(q, 7, r->dedup, HDX_BLIND_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(q, 8, r->key_id);
    sqlite3_bind_blob(q, 9, r->nonce, HDX_NONCE_LEN, SQLITE_STATIC);
    /* The body is in the frame at pos; the row keeps an empty ct. */
    sqlite3_bind_blob(q, 10, empty, 0, SQLITE_STATIC);
    sqlite3_bind_blob(q, 11, r->leaf_hash, HDX_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(q, 12, r->chain, HDX_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(q, 13, (sqlite3_int64)pos->base);
    sqlite3_bind_int64(q, 14, (sqlite3_int64)pos->off);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_DONE && has_dedup(r)) {
        q = stmt(s, ST_DEDUP_LOG);
        sqlite3_bind_int64(q, 1, (sqlite3_int64)r->seq);
        sqlite3_bind_blob(q, 2, r->dedup, HDX_BLIND_LEN, SQLITE_STATIC);
        if (e->content) sqlite3_bind_blob(q, 3, e->content, HDX_BLIND_LEN, SQLITE_STATIC);
        sqlite3_bind_int(q, 4, e->reused ? 1 : 0);
        rc = sqlite3_step(q);
        sqlite3_reset(q);
    }
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "append");
    }
    return HDX_OK;
}

static int frames_reserve(struct hdx_store *s, size_t n)
{
    if (n <= s->frames_cap) return HDX_OK;
    struct hdx_seg_frame *f = realloc(s->frames, n * sizeof(*f));
    if (f) s->frames = f;
    struct hdx_seg_pos *p = f ? realloc(s->pos, n * sizeof(*p)) : NULL;
    if (p) s->pos = p;
    if (!f || !p) return HDX_E_NOMEM;
    s->frames_cap = n;
    return HDX_OK;
}

/* Leaf encodings the caller did not bring (tools, tests) are built here into one buffer. */
static int build_leaves(const struct hdx_store_entry *e, size_t n, struct hdx_seg_frame *fr,
                        uint8_t **owned)
{
    size_t need = 0;
    *owned = NULL;
    for (size_t i = 0; i < n; i++)
        if (!e[i].leaf) need += HDX_HEADER_MAX + HDX_NONCE_LEN + 4 + e[i].r->ct_len;
    if (need && !(*owned = malloc(need))) return HDX_E_NOMEM;
    uint8_t *p = *owned;
    for (size_t i = 0; i < n; i++) {
        const struct hdx_record *r = e[i].r;
        fr[i] = (struct hdx_seg_frame){r->seq, e[i].leaf, e[i].leaf_len, r->leaf_hash};
        if (e[i].leaf) continue;
        size_t hlen = hdx_record_header(r, p, HDX_HEADER_MAX);
        if (!hlen) return HDX_E_INVAL;
        memcpy(p + hlen, r->nonce, HDX_NONCE_LEN);
        for (int k = 0; k < 4; k++)
            p[hlen + HDX_NONCE_LEN + (size_t)k] = (uint8_t)(r->ct_len >> (24 - 8 * k));
        memcpy(p + hlen + HDX_NONCE_LEN + 4, r->ct, r->ct_len);
        fr[i].leaf = p;
        fr[i].len = hlen + HDX_NONCE_LEN + 4 + r->ct_len;
        p += fr[i].len;
    }
    return HDX_OK;
}

#ifdef HDX_DEBUG_ASSERTIONS
/* Test builds only: HDX_CRASH_AT=POINT:N kills the process with SIGKILL the Nth time the
 * writer reaches POINT, so the crash tests can stop a batch at each step (tests/crash). */
static void crash_point(const char *point)
{
    static long count;
    const char *want = getenv("HDX_CRASH_AT");
    size_t plen = strlen(point);
    if (!want || strncmp(want, point, plen) != 0 || want[plen] != ':') return;
    if (++count == atol(want + plen + 1)) raise(SIGKILL);
}
#else
static void crash_point(const char *point)
{
    (void)point;
}
#endif

void hdx_store_set_segment_size(struct hdx_store *s, size_t bytes)
{
    s->seg_size = bytes;
}

void hdx_store_on_durable(struct hdx_store *s, void (*cb)(void *arg), void *arg)
{
    s->on_durable = cb;
    s->on_durable_arg = arg;
}

void hdx_store_crash_point(const char *point)
{
    crash_point(point);
}

int hdx_store_append_batch(struct hdx_store *s, const struct hdx_store_entry *e, size_t n)
{
    if (s->failed) return HDX_E_STORE;
    uint8_t *owned = NULL;
    int rc = seg_ensure(s);
    if (rc == HDX_OK && !s->recovered) rc = hdx_store_recover(s, NULL, NULL, NULL, NULL);
    if (rc == HDX_OK) rc = frames_reserve(s, n);
    if (rc == HDX_OK) rc = build_leaves(e, n, s->frames, &owned);
    crash_point("before_segment");
    /* 1. The frames, durable before any index row names them (DESIGN above). */
    if (rc == HDX_OK) rc = hdx_seg_append(s->seg, s->frames, n, s->pos);
    free(owned);
    crash_point("segment_flushed");
    if (rc == HDX_OK && s->on_durable) s->on_durable(s->on_durable_arg);
    for (size_t i = 0; i < n && rc == HDX_OK; i++)
        rc = append_one(s, &e[i], &s->pos[i]);
    if (rc != HDX_OK) {
        if (!s->failed) hdx_error("store_error", "op=append err=%s", hdx_strerror(rc));
        s->failed = 1;
        return HDX_E_STORE;
    }
    return HDX_OK;
}

int hdx_store_append(struct hdx_store *s, const struct hdx_record *r)
{
    struct hdx_store_entry e = {r, NULL, 0, NULL, 0};
    return hdx_store_append_batch(s, &e, 1);
}

struct tail_ctx {
    struct hdx_store *s;
    int (*cb)(void *ctx, const struct hdx_record *r, struct hdx_store_entry *e);
    void *ctx;
    uint8_t chain[HDX_HASH_LEN];
    int64_t time_us;
    uint64_t n;
    int rc;
};

static int reindex_one(void *arg, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                       size_t len)
{
    struct tail_ctx *t = arg;
    struct hdx_record r;
    /* A frame is whole (its hash matched) but its content is checked like any other. */
    if (hdx_record_from_leaf(leaf, len, &r) != HDX_OK || r.seq != seq || r.time_us < t->time_us) {
        hdx_warn("segment_tail_unusable", "seq=%llu reason=malformed_leaf",
                 (unsigned long long)seq);
        return 1;
    }
    hdx_record_leaf_hash(&r, r.leaf_hash);
    hdx_record_chain(t->chain, r.leaf_hash, r.chain);
    struct hdx_store_entry e = {&r, leaf, len, NULL, 0};
    if (t->cb && (t->rc = t->cb(t->ctx, &r, &e)) != HDX_OK) return 1;
    if ((t->rc = append_one(t->s, &e, &pos)) != HDX_OK) return 1;
    memcpy(t->chain, r.chain, HDX_HASH_LEN);
    t->time_us = r.time_us;
    t->n++;
    return 0;
}

static int count_frame(void *ctx, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                       size_t len)
{
    return 0;
}

int hdx_store_unindexed(struct hdx_store *s, uint64_t *n)
{
    uint64_t last;
    uint8_t chain[HDX_HASH_LEN];
    struct hdx_seg_pos pos;
    int has_pos;
    *n = 0;
    int rc = last_row(s, &last, chain, NULL, &pos, &has_pos);
    if (rc == HDX_OK) rc = seg_ensure(s);
    if (rc == HDX_E_NOTFOUND) return HDX_OK; /* no segment files at all */
    if (rc == HDX_OK) rc = hdx_seg_tail(s->seg, last, has_pos ? &pos : NULL, count_frame, NULL, n);
    return rc;
}

int hdx_store_recover(struct hdx_store *s,
                      int (*cb)(void *ctx, const struct hdx_record *r, struct hdx_store_entry *e),
                      void *ctx, uint64_t *reindexed, uint64_t *cut)
{
    uint64_t last = 0, tail = 0, ncut = 0, walked = 0;
    struct hdx_seg_pos pos = {0, 0}, tail_pos = {0, 0};
    int has_pos = 0;
    if (reindexed) *reindexed = 0;
    if (cut) *cut = 0;
    if (!s->writer) return HDX_E_PERM;
    if (s->recovered) return HDX_OK;
    struct tail_ctx t = {s, cb, ctx, {0}, 0, 0, HDX_OK};
    int rc = seg_ensure(s);
    if (rc == HDX_OK) rc = last_row(s, &last, t.chain, &t.time_us, &pos, &has_pos);
    if (rc == HDX_OK)
        rc = hdx_seg_tail(s->seg, last, has_pos ? &pos : NULL, reindex_one, &t, &walked);
    if (rc == HDX_OK) rc = t.rc;
    /* What follows the last whole frame was never acknowledged: cut. The position of the
     * newest indexed frame is read back from the index (the walk may have stopped early);
     * {0, 0}: no frame holds any record yet (empty, or every body is in its row). */
    if (rc == HDX_OK) {
        tail = last + t.n;
        tail_pos = has_pos ? pos : (struct hdx_seg_pos){0, 0};
        if (t.n) rc = last_row(s, &tail, t.chain, NULL, &tail_pos, &has_pos);
    }
    if (rc == HDX_OK) rc = hdx_seg_recover(s->seg, tail, tail_pos, &ncut);
    if (rc != HDX_OK) {
        hdx_error("store_recover_failed", "err=%s last_seq=%llu", hdx_strerror(rc),
                  (unsigned long long)last);
        s->failed = 1;
        return rc;
    }
    s->recovered = 1;
    if (t.n || ncut)
        hdx_warn("store_recovered", "reindexed=%llu cut=%llu last_seq=%llu",
                 (unsigned long long)t.n, (unsigned long long)ncut, (unsigned long long)tail);
    if (reindexed) *reindexed = t.n;
    if (cut) *cut = ncut;
    return HDX_OK;
}

int hdx_store_leaf_at(struct hdx_store *s, uint64_t seq, int64_t *time_us,
                      uint8_t leaf[HDX_HASH_LEN])
{
    sqlite3_stmt *q = stmt(s, ST_LEAF_AT);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(q), err = HDX_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 1) == HDX_HASH_LEN) {
        *time_us = sqlite3_column_int64(q, 0);
        memcpy(leaf, sqlite3_column_blob(q, 1), HDX_HASH_LEN);
    } else {
        err = rc == SQLITE_ROW ? HDX_E_INTEGRITY : rc == SQLITE_DONE ? HDX_E_NOTFOUND : HDX_E_STORE;
    }
    sqlite3_reset(q);
    return err;
}

static int copy_blob(sqlite3_stmt *q, int col, uint8_t *dst, size_t len)
{
    int n = sqlite3_column_bytes(q, col);
    if (sqlite3_column_type(q, col) == SQLITE_NULL) {
        memset(dst, 0, len);
        return HDX_OK;
    }
    if (n != (int)len) return HDX_E_INTEGRITY;
    memcpy(dst, sqlite3_column_blob(q, col), len);
    return HDX_OK;
}

/* Reads a row of the record column list (see ST_GET) into r. With borrow, r->ct points at
 * SQLite's copy of the column, valid until the statement is stepped, reset or finalized
 * (sqlite3_column_blob); otherwise r->ct is malloc'd. */
/* The body of a row whose record is in a segment frame: the frame's leaf must be the row's
 * record (every header field, the nonce), so neither can be swapped under the other; the
 * ciphertext itself is under the leaf hash, which hdx verify recomputes. */
static int frame_body(struct hdx_store *s, sqlite3_stmt *q, const struct hdx_record *idx,
                      const uint8_t **ct, size_t *ct_len)
{
    struct hdx_seg_pos pos = {(uint64_t)sqlite3_column_int64(q, 12),
                              (uint64_t)sqlite3_column_int64(q, 13)};
    const uint8_t *leaf;
    size_t len;
    struct hdx_record fr;
    int rc = seg_ensure(s);
    if (rc == HDX_E_NOTFOUND) return HDX_E_INTEGRITY; /* the row names a frame; no files */
    if (rc == HDX_OK) rc = hdx_seg_read(s->seg, pos, idx->seq, 0, &leaf, &len);
    if (rc == HDX_E_NOTFOUND) rc = HDX_E_INTEGRITY;
    /* The frame's own hash (it follows the leaf) should be the index's leaf hash. When it is
     * not, hash the leaf (only then): a leaf that matches its frame hash is a whole frame and
     * the index row is what changed (the caller's leaf check names that); otherwise the frame
     * is damaged. */
    if (rc == HDX_OK && CRYPTO_memcmp(leaf + len, idx->leaf_hash, HDX_HASH_LEN) != 0) {
        static const uint8_t prefix = 0x00;
        uint8_t h[HDX_HASH_LEN];
        const void *parts[] = {&prefix, leaf};
        const size_t lens[] = {1, len};
        hdx_sha256(h, 2, parts, lens);
        if (CRYPTO_memcmp(h, leaf + len, HDX_HASH_LEN) != 0) rc = HDX_E_INTEGRITY;
    }
    if (rc == HDX_OK) rc = hdx_record_from_leaf(leaf, len, &fr);
    if (rc != HDX_OK) return rc;
    if (fr.seq != idx->seq || fr.time_us != idx->time_us || fr.kind != idx->kind ||
        fr.key_id != idx->key_id || strcmp(fr.sender, idx->sender) != 0 ||
        strcmp(fr.type, idx->type) != 0 || memcmp(fr.patient, idx->patient, HDX_BLIND_LEN) != 0 ||
        memcmp(fr.dedup, idx->dedup, HDX_BLIND_LEN) != 0 ||
        memcmp(fr.nonce, idx->nonce, HDX_NONCE_LEN) != 0)
        return HDX_E_INTEGRITY;
    *ct = fr.ct;
    *ct_len = fr.ct_len;
    return HDX_OK;
}

static int row_to_record(struct hdx_store *s, sqlite3_stmt *q, struct hdx_record *r, int borrow)
{
    memset(r, 0, sizeof(*r));
    r->seq = (uint64_t)sqlite3_column_int64(q, 0);
    r->time_us = sqlite3_column_int64(q, 1);
    r->kind = (uint8_t)sqlite3_column_int(q, 2);
    const char *sender = (const char *)sqlite3_column_text(q, 3);
    const char *type = (const char *)sqlite3_column_text(q, 4);
    if (!sender || !type || strlen(sender) > HDX_SENDER_MAX || strlen(type) > HDX_TYPE_MAX)
        return HDX_E_INTEGRITY;
    memcpy(r->sender, sender, strlen(sender) + 1);
    memcpy(r->type, type, strlen(type) + 1);
    r->key_id = (uint32_t)sqlite3_column_int64(q, 7);
    if (copy_blob(q, 5, r->patient, HDX_BLIND_LEN) || copy_blob(q, 6, r->dedup, HDX_BLIND_LEN) ||
        copy_blob(q, 8, r->nonce, HDX_NONCE_LEN) || copy_blob(q, 10, r->leaf_hash, HDX_HASH_LEN) ||
        copy_blob(q, 11, r->chain, HDX_HASH_LEN))
        return HDX_E_INTEGRITY;
    const uint8_t *ct;
    size_t n;
    if (sqlite3_column_type(q, 12) != SQLITE_NULL) {
        /* Borrowed from the segment file's read-only mapping: valid while the handle is. */
        int rc = frame_body(s, q, r, &ct, &n);
        if (rc == HDX_E_INTEGRITY) return HDX_E_BODY; /* the index fields are filled */
        if (rc != HDX_OK) return rc;
    } else {
        /* Schema 1: the ciphertext is in the row. Blob before bytes: the order SQLite
         * documents as free of conversions, so the pointer stays valid for the row. */
        ct = sqlite3_column_blob(q, 9);
        int len = sqlite3_column_bytes(q, 9);
        if (len > 0 && !ct) return HDX_E_NOMEM;
        n = (size_t)(len > 0 ? len : 0);
    }
    r->ct_len = n;
    if (borrow) {
        static const uint8_t empty[1];
        r->ct = ct ? ct : empty;
        return HDX_OK;
    }
    uint8_t *copy = malloc(n > 0 ? n : 1);
    if (!copy) return HDX_E_NOMEM;
    if (n > 0) memcpy(copy, ct, n);
    r->ct = copy;
    return HDX_OK;
}

int hdx_store_get(struct hdx_store *s, uint64_t seq, struct hdx_record *out)
{
    sqlite3_stmt *q = stmt(s, ST_GET);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return HDX_E_NOTFOUND;
    }
    if (rc != SQLITE_ROW) return db_error(s, "get");
    rc = row_to_record(s, q, out, 0);
    if (rc == HDX_E_BODY) rc = HDX_E_INTEGRITY;
    sqlite3_reset(q);
    if (rc != HDX_OK) hdx_record_clear(out);
    return rc;
}

uint64_t hdx_store_count(struct hdx_store *s)
{
    sqlite3_stmt *q = stmt(s, ST_COUNT);
    uint64_t n = 0;
    if (sqlite3_step(q) == SQLITE_ROW) n = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return n;
}

static int64_t time_at(struct hdx_store *s, uint64_t seq)
{
    sqlite3_stmt *q = stmt(s, ST_TIME_AT);
    int64_t t = INT64_MAX;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    if (sqlite3_step(q) == SQLITE_ROW) t = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return t;
}

uint64_t hdx_store_seq_at_time(struct hdx_store *s, int64_t t)
{
    sqlite3_stmt *q = stmt(s, ST_COUNT_ALL);
    uint64_t hi = 0;
    if (sqlite3_step(q) == SQLITE_ROW) hi = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    uint64_t lo = 1;
    hi += 1; /* answer in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (time_at(s, mid) >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The kind goes into the SQL as a literal, never as a parameter: SQLite uses a partial index
 * (records_admin, records_audit) only when the query's own text implies the index's WHERE.
 * It is an integer of ours, not input text. */
static int build_scan_sql(const struct hdx_store_filter *f, char *sql, size_t cap)
{
    char kind[24] = "";
    if (f->kind) snprintf(kind, sizeof(kind), " AND kind=%d", (int)f->kind);
    int n =
        snprintf(sql, cap,
                 "SELECT seq,time_us,kind,sender,type,patient,dedup,key_id,nonce,ct,leaf,"
                 "chain,seg,off FROM records WHERE seq>=?1%s%s%s%s%s%s ORDER BY seq",
                 f->since_us ? " AND time_us>=?2" : "", kind, f->type ? " AND type=?4" : "",
                 f->sender ? " AND sender=?5" : "", f->patient ? " AND patient=?6" : "",
                 f->reused_only ? " AND seq IN (SELECT seq FROM dedup_log WHERE reused=1)" : "");
    return n < 0 || (size_t)n >= cap ? HDX_E_INVAL : HDX_OK;
}

/* The end of a scan: the cached statement is reset (its read snapshot ends), another one
 * finalized. */
static void scan_done(struct hdx_store *s, sqlite3_stmt *q, int cached)
{
    if (cached) {
        sqlite3_reset(q);
        s->scan_busy--;
    } else {
        sqlite3_finalize(q);
    }
}

long hdx_store_scan(struct hdx_store *s, const struct hdx_store_filter *f, size_t limit,
                    int (*cb)(void *ctx, const struct hdx_record *r), void *ctx)
{
    char sql[512];
    sqlite3_stmt *q = NULL;
    long visited = 0;
    if (build_scan_sql(f, sql, sizeof(sql)) != HDX_OK) return HDX_E_INVAL;
    int cached = !s->scan_busy && s->scan_q && strcmp(sql, s->scan_sql) == 0;
    if (cached) {
        q = s->scan_q;
        sqlite3_clear_bindings(q);
    } else if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        return db_error(s, "scan_prepare");
    } else if (!s->scan_busy) { /* this shape is cached from now on */
        sqlite3_finalize(s->scan_q);
        s->scan_q = q;
        snprintf(s->scan_sql, sizeof(s->scan_sql), "%s", sql);
        cached = 1;
    }
    s->scan_busy += cached;
    uint64_t from = f->from_seq ? f->from_seq : 1;
    if (f->since_us) {
        uint64_t t_seq = hdx_store_seq_at_time(s, f->since_us);
        if (t_seq > from) from = t_seq;
    }
    sqlite3_bind_int64(q, 1, (sqlite3_int64)from);
    if (f->since_us) sqlite3_bind_int64(q, 2, f->since_us);
    if (f->type) sqlite3_bind_text(q, 4, f->type, -1, SQLITE_STATIC);
    if (f->sender) sqlite3_bind_text(q, 5, f->sender, -1, SQLITE_STATIC);
    if (f->patient) sqlite3_bind_blob(q, 6, f->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct hdx_record r;
        /* Borrowed, not copied: a scan reads every ciphertext once, and copying each out of
         * SQLite was a malloc and a memcpy per record (hdx verify, replay). */
        int err = row_to_record(s, q, &r, 1);
        if (err == HDX_E_BODY && f->damaged_too) {
            static const uint8_t empty[1];
            r.ct = empty; /* the index row, with no body: the caller names the seq */
            r.ct_len = 0;
        } else if (err != HDX_OK) {
            scan_done(s, q, cached);
            return err == HDX_E_BODY ? HDX_E_INTEGRITY : err;
        }
        visited++;
        int stop = cb(ctx, &r);
        if (stop || (limit && (size_t)visited >= limit)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        scan_done(s, q, cached);
        return db_error(s, "scan");
    }
    scan_done(s, q, cached);
    return visited;
}

int hdx_store_key_put(struct hdx_store *s, enum hdx_key_kind kind, uint32_t id,
                      const uint8_t *wrapped, size_t len)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO keys(kind,id,wrapped,created_us) VALUES(?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "key_put_prepare");
    sqlite3_bind_int(q, 1, (int)kind);
    sqlite3_bind_int64(q, 2, id);
    sqlite3_bind_blob(q, 3, wrapped, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, hdx_now_us());
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? HDX_OK : db_error(s, "key_put");
}

int hdx_store_keys_load(struct hdx_store *s, struct hdx_keyring *kr)
{
    sqlite3_stmt *q = NULL;
    int rc, err = HDX_OK;
    if (sqlite3_prepare_v2(s->db, "SELECT kind,id,wrapped FROM keys ORDER BY kind,id", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "keys_prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW && err == HDX_OK)
        err = hdx_keyring_add(kr, (enum hdx_key_kind)sqlite3_column_int(q, 0),
                              (uint32_t)sqlite3_column_int64(q, 1), sqlite3_column_blob(q, 2),
                              (size_t)sqlite3_column_bytes(q, 2));
    sqlite3_finalize(q);
    return err;
}

uint32_t hdx_store_key_max_id(struct hdx_store *s, enum hdx_key_kind kind)
{
    sqlite3_stmt *q = NULL;
    uint32_t id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(id) FROM keys WHERE kind=?", -1, &q, NULL) !=
        SQLITE_OK)
        return 0;
    sqlite3_bind_int(q, 1, (int)kind);
    if (sqlite3_step(q) == SQLITE_ROW) id = (uint32_t)sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return id;
}

int hdx_store_device_add(struct hdx_store *s, const struct hdx_device *d)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO devices(name,role,serial,created_us,revoked_us) "
                           "VALUES(?,?,?,?,0) ON CONFLICT(name) DO UPDATE SET role=excluded.role,"
                           " serial=excluded.serial, created_us=excluded.created_us,"
                           " revoked_us=0 WHERE devices.revoked_us<>0",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_add_prepare");
    sqlite3_bind_text(q, 1, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, d->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, d->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, d->created_us);
    int rc = sqlite3_step(q);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_error(s, "device_add");
    return changed ? HDX_OK : HDX_E_EXISTS;
}

static void row_to_device(sqlite3_stmt *q, struct hdx_device *d)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", (const char *)sqlite3_column_text(q, 0));
    snprintf(d->role, sizeof(d->role), "%s", (const char *)sqlite3_column_text(q, 1));
    snprintf(d->serial, sizeof(d->serial), "%s", (const char *)sqlite3_column_text(q, 2));
    d->created_us = sqlite3_column_int64(q, 3);
    d->revoked_us = sqlite3_column_int64(q, 4);
}

int hdx_store_device_get(struct hdx_store *s, const char *name, struct hdx_device *out)
{
    sqlite3_stmt *q = lazy_stmt(s, LZ_DEVICE_GET);
    if (!q) return HDX_E_STORE;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) row_to_device(q, out);
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? HDX_OK : rc == SQLITE_DONE ? HDX_E_NOTFOUND : HDX_E_STORE;
}

int hdx_store_device_revoke(struct hdx_store *s, const char *name, int64_t when_us)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "UPDATE devices SET revoked_us=? WHERE name=? AND revoked_us=0",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_revoke_prepare");
    sqlite3_bind_int64(q, 1, when_us);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_error(s, "device_revoke");
    return changed ? HDX_OK : HDX_E_NOTFOUND;
}

int hdx_store_devices_list(struct hdx_store *s, int (*cb)(void *ctx, const struct hdx_device *d),
                           void *ctx)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT name,role,serial,created_us,revoked_us FROM devices ORDER BY "
                           "name",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "devices_prepare");
    while (sqlite3_step(q) == SQLITE_ROW) {
        struct hdx_device d;
        row_to_device(q, &d);
        if (cb(ctx, &d)) break;
    }
    sqlite3_finalize(q);
    return HDX_OK;
}

/* Merkle nodes: level 0 is the records' own leaf hash (leaf index i = seq i + 1); levels
 * below MERKLE_STORED_LEVEL are folded from at most 2^(MERKLE_STORED_LEVEL-1) leaves when a
 * proof asks for them; only higher perfect subtrees are stored in merkle_nodes. A row per
 * record cost 20% of ingest; one per 16 records costs little, and a proof reads a few more
 * leaves. */
#define MERKLE_STORED_LEVEL HDX_STORE_MERKLE_MIN_LEVEL

static int fold_leaves(struct hdx_store *s, unsigned level, uint64_t index, uint8_t out[32])
{
    uint8_t h[1u << (MERKLE_STORED_LEVEL - 1)][32];
    uint64_t n = (uint64_t)1 << level, first = index * n + 1;
    size_t got = 0;
    sqlite3_stmt *q = stmt(s, ST_LEAF_RANGE);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)first);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)(first + n));
    while (got < n && sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32)
        memcpy(h[got++], sqlite3_column_blob(q, 0), 32);
    sqlite3_reset(q);
    if (got != n) return HDX_E_NOTFOUND;
    for (; n > 1; n /= 2) /* pairwise, level by level: a perfect subtree */
        for (uint64_t i = 0; i < n / 2; i++)
            if (merkle_hash_children(h[i], h[2 * i], h[2 * i + 1]) != HDX_OK) return HDX_E_CRYPTO;
    memcpy(out, h[0], 32);
    return HDX_OK;
}
static int node_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct hdx_store *s = ctx;
    if (level >= 63 || index >= (uint64_t)(INT64_MAX >> level)) return HDX_E_INVAL;
    if (level > 0 && level < MERKLE_STORED_LEVEL) return fold_leaves(s, level, index, out);
    sqlite3_stmt *q = stmt(s, level == 0 ? ST_LEAF_GET : ST_NODE_GET);
    if (level == 0) {
        sqlite3_bind_int64(q, 1, (sqlite3_int64)index + 1);
    } else {
        sqlite3_bind_int(q, 1, (int)level);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)index);
    }
    int rc = sqlite3_step(q), err = HDX_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32)
        memcpy(out, sqlite3_column_blob(q, 0), 32);
    else
        err = rc == SQLITE_ROW ? HDX_E_INTEGRITY : rc == SQLITE_DONE ? HDX_E_NOTFOUND : HDX_E_STORE;
    sqlite3_reset(q);
    return err;
}

static int node_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct hdx_store *s = ctx;
    if (level < MERKLE_STORED_LEVEL) return HDX_OK; /* leaf in its record; low levels folded */
    if (s->failed || index >= INT64_MAX) return HDX_E_STORE;
    sqlite3_stmt *q = stmt(s, ST_NODE_PUT);
    sqlite3_bind_int(q, 1, (int)level);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)index);
    sqlite3_bind_blob(q, 3, hash, 32, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "node_put");
    }
    return HDX_OK;
}

void hdx_store_merkle(struct hdx_store *s, struct merkle_store *out)
{
    out->get = node_get;
    out->put = node_put;
    out->ctx = s;
}

int hdx_store_sth_put(struct hdx_store *s, const struct hdx_sth *sth)
{
    if (s->failed) return HDX_E_STORE;
    sqlite3_stmt *q = stmt(s, ST_STH_PUT);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)sth->tree_size);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)sth->timestamp_ms);
    sqlite3_bind_blob(q, 3, sth->root, 32, SQLITE_STATIC);
    sqlite3_bind_blob(q, 4, sth->signature, HDX_STH_SIG_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "sth_put");
    }
    return HDX_OK;
}

static int sth_row(struct hdx_store *s, sqlite3_stmt *q, struct hdx_sth *out)
{
    int rc = sqlite3_step(q), err = HDX_OK;
    memset(out, 0, sizeof(*out));
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 2) == 32 &&
        sqlite3_column_bytes(q, 3) == HDX_STH_SIG_LEN) {
        out->tree_size = (uint64_t)sqlite3_column_int64(q, 0);
        out->timestamp_ms = (uint64_t)sqlite3_column_int64(q, 1);
        memcpy(out->root, sqlite3_column_blob(q, 2), 32);
        memcpy(out->signature, sqlite3_column_blob(q, 3), HDX_STH_SIG_LEN);
    } else {
        err = rc == SQLITE_DONE ? HDX_E_NOTFOUND : rc == SQLITE_ROW ? HDX_E_INTEGRITY : HDX_E_STORE;
    }
    sqlite3_reset(q);
    (void)s;
    return err;
}

int hdx_store_sth_latest(struct hdx_store *s, struct hdx_sth *out)
{
    return sth_row(s, stmt(s, ST_STH_LATEST), out);
}

int hdx_store_sth_at(struct hdx_store *s, uint64_t tree_size, struct hdx_sth *out)
{
    sqlite3_stmt *q = stmt(s, ST_STH_AT);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)tree_size);
    return sth_row(s, q, out);
}

int hdx_store_sth_list(struct hdx_store *s, int (*cb)(void *ctx, const struct hdx_sth *sth),
                       void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct hdx_sth sth;
    int rc;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT tree_size,timestamp_ms,root,signature FROM sth ORDER BY "
                           "tree_size",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "sth_list_prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(q, 2) != 32 || sqlite3_column_bytes(q, 3) != HDX_STH_SIG_LEN)
            continue;
        sth.tree_size = (uint64_t)sqlite3_column_int64(q, 0);
        sth.timestamp_ms = (uint64_t)sqlite3_column_int64(q, 1);
        memcpy(sth.root, sqlite3_column_blob(q, 2), 32);
        memcpy(sth.signature, sqlite3_column_blob(q, 3), HDX_STH_SIG_LEN);
        if (cb(ctx, &sth)) break;
    }
    sqlite3_finalize(q);
    return HDX_OK;
}

long hdx_store_leaves(struct hdx_store *s, int (*cb)(void *ctx, uint64_t seq, const uint8_t *leaf),
                      void *ctx)
{
    sqlite3_stmt *q = NULL;
    long n = 0;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT seq,leaf FROM records ORDER BY seq", -1, &q, NULL) !=
        SQLITE_OK)
        return db_error(s, "leaves_prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(q, 1) != HDX_HASH_LEN) {
            sqlite3_finalize(q);
            return HDX_E_INTEGRITY;
        }
        n++;
        if (cb(ctx, (uint64_t)sqlite3_column_int64(q, 0), sqlite3_column_blob(q, 1))) break;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : db_error(s, "leaves");
}

int hdx_store_device_signkey_put(struct hdx_store *s, const char *name, const uint8_t pub[32])
{
    sqlite3_stmt *q = NULL;
    if (!pub) {
        if (sqlite3_prepare_v2(s->db, "DELETE FROM device_keys WHERE name=?", -1, &q, NULL) !=
            SQLITE_OK)
            return db_error(s, "signkey_del_prepare");
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        sqlite3_finalize(q);
        return rc == SQLITE_DONE ? HDX_OK : db_error(s, "signkey_del");
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO device_keys(name,sign_pub,created_us) "
                           "VALUES(?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "signkey_put_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, pub, 32, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, hdx_now_us());
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? HDX_OK : db_error(s, "signkey_put");
}

int hdx_store_device_signkey_get(struct hdx_store *s, const char *name, uint8_t pub[32])
{
    int64_t created_us;
    return hdx_store_device_signkey_row(s, name, pub, &created_us);
}

int hdx_store_marks_put(struct hdx_store *s, const uint64_t *seqs, size_t n, uint64_t checkpoint,
                        int verified)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO stream_marks(seq,checkpoint,verified) "
                           "VALUES(?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "marks_prepare");
    int rc = SQLITE_DONE;
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_bind_int64(q, 1, (sqlite3_int64)seqs[i]);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)checkpoint);
        sqlite3_bind_int(q, 3, verified ? 1 : 0);
        rc = sqlite3_step(q);
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "marks_put");
    }
    return HDX_OK;
}

int hdx_store_mark_get(struct hdx_store *s, uint64_t seq, uint64_t *checkpoint, int *verified)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT checkpoint,verified FROM stream_marks WHERE seq=?", -1,
                           &q, NULL) != SQLITE_OK)
        return HDX_E_NOTFOUND; /* a store older than stream signatures, opened read-only */
    sqlite3_bind_int64(q, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(q), out = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW) {
        *checkpoint = (uint64_t)sqlite3_column_int64(q, 0);
        *verified = sqlite3_column_int(q, 1);
        out = HDX_OK;
    } else if (rc != SQLITE_DONE) {
        out = db_error(s, "mark_get");
    }
    sqlite3_finalize(q);
    return out;
}

int hdx_store_device_put(struct hdx_store *s, const struct hdx_device *d)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO devices(name,role,serial,created_us,revoked_us) "
                           "VALUES(?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_put_prepare");
    sqlite3_bind_text(q, 1, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, d->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, d->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, d->created_us);
    sqlite3_bind_int64(q, 5, d->revoked_us);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "device_put");
    }
    return HDX_OK;
}

int hdx_store_device_signkey_set(struct hdx_store *s, const char *name, const uint8_t pub[32],
                                 int64_t created_us)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           pub ? "INSERT OR REPLACE INTO device_keys(name,sign_pub,created_us) "
                                 "VALUES(?1,?2,?3)"
                               : "DELETE FROM device_keys WHERE name=?1",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "signkey_set_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (pub) {
        sqlite3_bind_blob(q, 2, pub, 32, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, created_us);
    }
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "signkey_set");
    }
    return HDX_OK;
}

int hdx_store_device_signkey_row(struct hdx_store *s, const char *name, uint8_t pub[32],
                                 int64_t *created_us)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT sign_pub,created_us FROM device_keys WHERE name=?", -1,
                           &q, NULL) != SQLITE_OK)
        return db_error(s, "signkey_row_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q), out = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32) {
        memcpy(pub, sqlite3_column_blob(q, 0), 32);
        *created_us = sqlite3_column_int64(q, 1);
        out = HDX_OK;
    } else if (rc == SQLITE_ROW) {
        out = HDX_E_INTEGRITY;
    } else if (rc != SQLITE_DONE) {
        out = db_error(s, "signkey_row");
    }
    sqlite3_finalize(q);
    return out;
}

int hdx_store_device_keys_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const char *name, const uint8_t *pub,
                                         size_t pub_len, int64_t created_us),
                               void *ctx)
{
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT name,sign_pub,created_us FROM device_keys ORDER BY name",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_keys_prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const uint8_t *pub = sqlite3_column_blob(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1);
        if (cb(ctx, name ? name : "", pub, pub ? len : 0, sqlite3_column_int64(q, 2))) break;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, "device_keys");
}

int hdx_store_admin_enqueue(struct hdx_store *s, const uint8_t *body, size_t len,
                            int64_t created_us, int64_t *id)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO admin_queue(body,created_us) VALUES(?,?)", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "admin_enqueue_prepare");
    sqlite3_bind_blob(q, 1, body, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, created_us);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_error(s, "admin_enqueue");
    *id = sqlite3_last_insert_rowid(s->db);
    return HDX_OK;
}

int hdx_store_admin_pending(struct hdx_store *s, int64_t after_id,
                            int (*cb)(void *ctx, int64_t id, const uint8_t *body, size_t len),
                            void *ctx)
{
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT id,body FROM admin_queue WHERE id>? ORDER BY id", -1, &q,
                           NULL) != SQLITE_OK)
        return HDX_E_NOTFOUND; /* a store older than the queue, opened read-only */
    sqlite3_bind_int64(q, 1, after_id);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(q, 1);
        size_t n = (size_t)sqlite3_column_bytes(q, 1);
        static const uint8_t empty[1];
        if (cb(ctx, sqlite3_column_int64(q, 0), b ? b : empty, b ? n : 0)) break;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, "admin_pending");
}

int64_t hdx_store_admin_find(struct hdx_store *s, const uint8_t *body, size_t len)
{
    sqlite3_stmt *q = NULL;
    int64_t id = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM admin_queue WHERE body=? ORDER BY id LIMIT 1", -1,
                           &q, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_blob(q, 1, body, (int)len, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) id = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return id;
}

int hdx_store_admin_dequeue(struct hdx_store *s, int64_t id)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM admin_queue WHERE id=?", -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "admin_dequeue_prepare");
    sqlite3_bind_int64(q, 1, id);
    int rc = sqlite3_step(q);
    int changed = sqlite3_changes(s->db);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "admin_dequeue");
    }
    return changed ? HDX_OK : HDX_E_NOTFOUND;
}

int hdx_store_admin_queued(struct hdx_store *s, int64_t id)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM admin_queue WHERE id=?", -1, &q, NULL) !=
        SQLITE_OK)
        return db_error(s, "admin_queued_prepare");
    sqlite3_bind_int64(q, 1, id);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_error(s, "admin_queued");
}

long hdx_store_admin_count(struct hdx_store *s)
{
    sqlite3_stmt *q = NULL;
    long n = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM admin_queue", -1, &q, NULL) != SQLITE_OK)
        return 0; /* a store older than the queue */
    if (sqlite3_step(q) == SQLITE_ROW) n = (long)sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

int hdx_store_meta_get(struct hdx_store *s, const char *key, int64_t *v)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k=?", -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "meta_get_prepare");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q), out = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(q, 0);
        out = HDX_OK;
    } else if (rc != SQLITE_DONE) {
        out = db_error(s, "meta_get");
    }
    sqlite3_finalize(q);
    return out;
}

int hdx_store_meta_set(struct hdx_store *s, const char *key, int64_t v)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(k,v) VALUES(?,?)", -1, &q, NULL) !=
        SQLITE_OK)
        return db_error(s, "meta_set_prepare");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, v);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? HDX_OK : db_error(s, "meta_set");
}

struct hdx_store_iter {
    struct hdx_store *s;
    sqlite3_stmt *q;
};

int hdx_store_dedup_iter(struct hdx_store *s, int64_t from_seq, struct hdx_store_iter **out)
{
    struct hdx_store_iter *it = calloc(1, sizeof(*it));
    *out = NULL;
    if (!it) return HDX_E_NOMEM;
    if (sqlite3_prepare_v2(
            s->db, "SELECT seq,token,content,reused FROM dedup_log WHERE seq>=? ORDER BY seq", -1,
            &it->q, NULL) != SQLITE_OK) {
        free(it);
        return db_error(s, "dedup_iter_prepare");
    }
    sqlite3_bind_int64(it->q, 1, from_seq);
    it->s = s;
    *out = it;
    return HDX_OK;
}

int hdx_store_iter_dedup_next(struct hdx_store_iter *it, int64_t *seq, uint8_t tok[HDX_BLIND_LEN],
                              int *tok_ok)
{
    int rc = sqlite3_step(it->q);
    if (rc == SQLITE_DONE) return 0;
    if (rc != SQLITE_ROW) return db_error(it->s, "dedup_iter");
    *seq = sqlite3_column_int64(it->q, 0);
    const uint8_t *b = sqlite3_column_blob(it->q, 1);
    *tok_ok = b && sqlite3_column_bytes(it->q, 1) == HDX_BLIND_LEN;
    if (*tok_ok)
        memcpy(tok, b, HDX_BLIND_LEN);
    else
        memset(tok, 0, HDX_BLIND_LEN);
    return 1;
}

int hdx_store_iter_dedup_content(struct hdx_store_iter *it, uint8_t content[HDX_BLIND_LEN],
                                 int *reused)
{
    int type = sqlite3_column_type(it->q, 2);
    *reused = sqlite3_column_type(it->q, 3) == SQLITE_NULL ? -1 : sqlite3_column_int(it->q, 3);
    if (type == SQLITE_NULL) return 0;
    if (sqlite3_column_bytes(it->q, 2) != HDX_BLIND_LEN) return -1;
    memcpy(content, sqlite3_column_blob(it->q, 2), HDX_BLIND_LEN);
    return 1;
}

void hdx_store_iter_free(struct hdx_store_iter *it)
{
    if (!it) return;
    sqlite3_finalize(it->q);
    free(it);
}

int hdx_store_marks_list(struct hdx_store *s,
                         int (*cb)(void *ctx, int64_t seq, int64_t checkpoint, int64_t verified),
                         void *ctx)
{
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT seq,checkpoint,verified FROM stream_marks ORDER BY seq",
                           -1, &q, NULL) != SQLITE_OK)
        return HDX_OK; /* a store older than stream signatures: no marks */
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (cb(ctx, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1),
               sqlite3_column_int64(q, 2)))
            break;
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, "marks_list");
}

/* ---------- users (commit/admin.h is their only writer) ---------- */

/* 0 when a blob has a size no statement writes (the row is then reported, not trusted). */
static int row_to_user(sqlite3_stmt *q, struct hdx_user *u)
{
    int ok = 1;
    memset(u, 0, sizeof(*u));
    const char *t = (const char *)sqlite3_column_text(q, 0);
    snprintf(u->name, sizeof(u->name), "%s", t ? t : "");
    t = (const char *)sqlite3_column_text(q, 1);
    snprintf(u->role, sizeof(u->role), "%s", t ? t : "");
    t = (const char *)sqlite3_column_text(q, 2);
    snprintf(u->pw_hash, sizeof(u->pw_hash), "%s", t ? t : "");
    int tl = sqlite3_column_type(q, 3) == SQLITE_NULL ? -1 : sqlite3_column_bytes(q, 3);
    int rl = sqlite3_column_type(q, 4) == SQLITE_NULL ? -1 : sqlite3_column_bytes(q, 4);
    if (tl == HDX_USER_TOTP_SEALED_LEN && rl == (int)sizeof(u->recovery)) {
        u->has_mfa = 1;
        memcpy(u->totp_sealed, sqlite3_column_blob(q, 3), sizeof(u->totp_sealed));
        memcpy(u->recovery, sqlite3_column_blob(q, 4), sizeof(u->recovery));
    } else if (tl != -1 || rl != -1) {
        ok = 0;
    }
    u->recovery_used = (uint32_t)sqlite3_column_int64(q, 5);
    u->totp_step = (uint64_t)sqlite3_column_int64(q, 6);
    u->locked = sqlite3_column_int(q, 7);
    u->created_us = sqlite3_column_int64(q, 8);
    u->pw_changed_us = sqlite3_column_int64(q, 9);
    u->mfa_us = sqlite3_column_int64(q, 10);
    u->sessions_revoked_us = sqlite3_column_int64(q, 11);
    t = (const char *)sqlite3_column_text(q, 12);
    snprintf(u->training, sizeof(u->training), "%s", t ? t : "");
    return ok;
}

int hdx_store_user_get(struct hdx_store *s, const char *name, struct hdx_user *out)
{
    sqlite3_stmt *q = lazy_stmt(s, LZ_USER_GET);
    if (!q) return HDX_E_STORE;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q), out_rc;
    if (rc == SQLITE_ROW)
        out_rc = row_to_user(q, out) ? HDX_OK : HDX_E_INTEGRITY;
    else
        out_rc = rc == SQLITE_DONE ? HDX_E_NOTFOUND : db_error(s, "user_get");
    sqlite3_reset(q);
    return out_rc;
}

int hdx_store_user_put(struct hdx_store *s, const struct hdx_user *u)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(
            s->db, "INSERT OR REPLACE INTO users(" USER_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
            -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "user_put_prepare");
    sqlite3_bind_text(q, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, u->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, u->pw_hash, -1, SQLITE_STATIC);
    if (u->has_mfa) {
        sqlite3_bind_blob(q, 4, u->totp_sealed, sizeof(u->totp_sealed), SQLITE_STATIC);
        sqlite3_bind_blob(q, 5, u->recovery, sizeof(u->recovery), SQLITE_STATIC);
    }
    sqlite3_bind_int64(q, 6, u->recovery_used);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)u->totp_step);
    sqlite3_bind_int(q, 8, u->locked);
    sqlite3_bind_int64(q, 9, u->created_us);
    sqlite3_bind_int64(q, 10, u->pw_changed_us);
    sqlite3_bind_int64(q, 11, u->mfa_us);
    sqlite3_bind_int64(q, 12, u->sessions_revoked_us);
    sqlite3_bind_text(q, 13, u->training, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, "user_put");
    }
    return HDX_OK;
}

int hdx_store_users_list(struct hdx_store *s,
                         int (*cb)(void *ctx, const struct hdx_user *u, int bad), void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct hdx_user u;
    int rc;
    if (sqlite3_prepare_v2(s->db, "SELECT " USER_COLS " FROM users ORDER BY name", -1, &q, NULL) !=
        SQLITE_OK)
        return db_error(s, "users_prepare");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int ok = row_to_user(q, &u);
        if (cb(ctx, &u, !ok)) break;
    }
    sqlite3_finalize(q);
    memset(&u, 0, sizeof(u));
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, "users");
}

int hdx_store_user_exists(struct hdx_store *s, const char *name)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM users WHERE name=?", -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "user_exists_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_error(s, "user_exists");
}

/* ---------- policy data (commit/admin.h is their only writer) ---------- */

/* Steps and finalizes a prepared write; a failure is sticky (see the top). */
static int write_step(struct hdx_store *s, sqlite3_stmt *q, const char *what)
{
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        s->failed = 1;
        return db_error(s, what);
    }
    return HDX_OK;
}

/* A text column into out (cap bytes with its NUL); 0 when it does not fit or holds a NUL. */
static int text_col(sqlite3_stmt *q, int col, char *out, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(q, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(q, col) : 0;
    out[0] = 0;
    if (!t || n >= cap || strlen(t) != n) return 0;
    memcpy(out, t, n + 1);
    return 1;
}

/* A patient token column; 0 when it is not a blob of HDX_BLIND_LEN bytes. */
static int token_col(sqlite3_stmt *q, int col, uint8_t out[HDX_BLIND_LEN])
{
    memset(out, 0, HDX_BLIND_LEN);
    if (sqlite3_column_type(q, col) != SQLITE_BLOB || sqlite3_column_bytes(q, col) != HDX_BLIND_LEN)
        return 0;
    memcpy(out, sqlite3_column_blob(q, col), HDX_BLIND_LEN);
    return 1;
}

static int row_to_careteam(sqlite3_stmt *q, struct hdx_careteam *c)
{
    memset(c, 0, sizeof(*c));
    int ok = text_col(q, 0, c->user, sizeof(c->user));
    return token_col(q, 1, c->patient) && ok;
}

static int row_to_consent(sqlite3_stmt *q, struct hdx_consent *c)
{
    memset(c, 0, sizeof(*c));
    int ok = token_col(q, 0, c->patient);
    ok &= text_col(q, 1, c->purpose, sizeof(c->purpose));
    return text_col(q, 2, c->role, sizeof(c->role)) && ok;
}

#define GRANT_COLS "name,patient,granted_us,expires_us,justification,reviewed_by,reviewed_us"

static int row_to_grant(sqlite3_stmt *q, struct hdx_break_glass *g)
{
    memset(g, 0, sizeof(*g));
    int ok = text_col(q, 0, g->user, sizeof(g->user));
    ok &= token_col(q, 1, g->patient);
    g->granted_us = sqlite3_column_int64(q, 2);
    g->expires_us = sqlite3_column_int64(q, 3);
    ok &= text_col(q, 4, g->justification, sizeof(g->justification));
    ok &= text_col(q, 5, g->reviewed_by, sizeof(g->reviewed_by));
    g->reviewed_us = sqlite3_column_int64(q, 6);
    return ok;
}

int hdx_store_careteam_set(struct hdx_store *s, const struct hdx_careteam *c, int present)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           present ? "INSERT OR IGNORE INTO careteams(name,patient) VALUES(?1,?2)"
                                   : "DELETE FROM careteams WHERE name=?1 AND patient=?2",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "careteam_set_prepare");
    sqlite3_bind_text(q, 1, c->user, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, c->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    return write_step(s, q, "careteam_set");
}

int hdx_store_consent_set(struct hdx_store *s, const struct hdx_consent *c, int present)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(
            s->db,
            present ? "INSERT OR IGNORE INTO consents(patient,purpose,role) VALUES(?1,?2,?3)"
                    : "DELETE FROM consents WHERE patient=?1 AND purpose=?2 AND role=?3",
            -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "consent_set_prepare");
    sqlite3_bind_blob(q, 1, c->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, c->purpose, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, c->role, -1, SQLITE_STATIC);
    return write_step(s, q, "consent_set");
}

int hdx_store_break_glass_put(struct hdx_store *s, const struct hdx_break_glass *g)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(
            s->db, "INSERT OR REPLACE INTO break_glass(" GRANT_COLS ") VALUES(?,?,?,?,?,?,?)", -1,
            &q, NULL) != SQLITE_OK)
        return db_error(s, "break_glass_put_prepare");
    sqlite3_bind_text(q, 1, g->user, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, g->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, g->granted_us);
    sqlite3_bind_int64(q, 4, g->expires_us);
    sqlite3_bind_text(q, 5, g->justification, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, g->reviewed_by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, g->reviewed_us);
    return write_step(s, q, "break_glass_put");
}

int hdx_store_break_glass_get(struct hdx_store *s, const struct hdx_break_glass *key,
                              struct hdx_break_glass *out)
{
    sqlite3_stmt *q = NULL;
    struct hdx_break_glass g;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " GRANT_COLS
                           " FROM break_glass WHERE name=? AND patient=? AND granted_us=?",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "break_glass_get_prepare");
    sqlite3_bind_text(q, 1, key->user, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(q, 2, key->patient, HDX_BLIND_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, key->granted_us);
    int rc = sqlite3_step(q), out_rc = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW)
        out_rc = row_to_grant(q, &g) ? HDX_OK : HDX_E_INTEGRITY;
    else if (rc != SQLITE_DONE)
        out_rc = db_error(s, "break_glass_get");
    sqlite3_finalize(q);
    if (out_rc == HDX_OK) *out = g;
    return out_rc;
}

/* Steps a prepared read to its end, calling row for each row until it returns non-zero. */
static int each_row(struct hdx_store *s, sqlite3_stmt *q, int (*row)(void *w, sqlite3_stmt *q),
                    void *w, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (row(w, q)) break;
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, what);
}

struct careteam_walk {
    int (*cb)(void *ctx, const struct hdx_careteam *c, int bad);
    void *ctx;
};

static int careteam_row(void *w, sqlite3_stmt *q)
{
    struct careteam_walk *cw = w;
    struct hdx_careteam c;
    int ok = row_to_careteam(q, &c);
    return cw->cb(cw->ctx, &c, !ok);
}

int hdx_store_careteams_list(struct hdx_store *s, const char *user,
                             int (*cb)(void *ctx, const struct hdx_careteam *c, int bad), void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct careteam_walk w = {cb, ctx};
    if (sqlite3_prepare_v2(s->db,
                           user ? "SELECT name,patient FROM careteams WHERE name=? ORDER BY patient"
                                : "SELECT name,patient FROM careteams ORDER BY name,patient",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "careteams_prepare");
    if (user) sqlite3_bind_text(q, 1, user, -1, SQLITE_TRANSIENT);
    return each_row(s, q, careteam_row, &w, "careteams");
}

struct consent_walk {
    int (*cb)(void *ctx, const struct hdx_consent *c, int bad);
    void *ctx;
};

static int consent_row(void *w, sqlite3_stmt *q)
{
    struct consent_walk *cw = w;
    struct hdx_consent c;
    int ok = row_to_consent(q, &c);
    return cw->cb(cw->ctx, &c, !ok);
}

int hdx_store_consents_list(struct hdx_store *s, const uint8_t *patient,
                            int (*cb)(void *ctx, const struct hdx_consent *c, int bad), void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct consent_walk w = {cb, ctx};
    if (sqlite3_prepare_v2(s->db,
                           patient ? "SELECT patient,purpose,role FROM consents WHERE patient=?"
                                     " ORDER BY purpose,role"
                                   : "SELECT patient,purpose,role FROM consents"
                                     " ORDER BY patient,purpose,role",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "consents_prepare");
    if (patient) sqlite3_bind_blob(q, 1, patient, HDX_BLIND_LEN, SQLITE_TRANSIENT);
    return each_row(s, q, consent_row, &w, "consents");
}

struct grant_walk {
    int (*cb)(void *ctx, const struct hdx_break_glass *g, int bad);
    void *ctx;
};

static int grant_row(void *w, sqlite3_stmt *q)
{
    struct grant_walk *gw = w;
    struct hdx_break_glass g;
    int ok = row_to_grant(q, &g);
    return gw->cb(gw->ctx, &g, !ok);
}

int hdx_store_break_glass_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const struct hdx_break_glass *g, int bad),
                               void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct grant_walk w = {cb, ctx};
    if (sqlite3_prepare_v2(
            s->db, "SELECT " GRANT_COLS " FROM break_glass ORDER BY name,patient,granted_us", -1,
            &q, NULL) != SQLITE_OK)
        return db_error(s, "break_glass_prepare");
    return each_row(s, q, grant_row, &w, "break_glass");
}

/* ---------- DICOM AE titles (commit/admin.h is their only writer) ---------- */

int hdx_store_dicom_ae_set(struct hdx_store *s, const char *title, const char *name, int64_t set_us)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           name ? "INSERT OR REPLACE INTO dicom_aes(title,name,set_us)"
                                  " VALUES(?1,?2,?3)"
                                : "DELETE FROM dicom_aes WHERE title=?1",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "dicom_ae_set_prepare");
    sqlite3_bind_text(q, 1, title, -1, SQLITE_STATIC);
    if (name) {
        sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, set_us);
    }
    return write_step(s, q, "dicom_ae_set");
}

static int row_to_ae(sqlite3_stmt *q, struct hdx_dicom_ae *a)
{
    memset(a, 0, sizeof(*a));
    int ok = text_col(q, 0, a->title, sizeof(a->title));
    ok &= text_col(q, 1, a->name, sizeof(a->name));
    a->set_us = sqlite3_column_int64(q, 2);
    return ok;
}

int hdx_store_dicom_ae_get(struct hdx_store *s, const char *title, struct hdx_dicom_ae *out)
{
    sqlite3_stmt *q = NULL;
    struct hdx_dicom_ae a;
    if (sqlite3_prepare_v2(s->db, "SELECT title,name,set_us FROM dicom_aes WHERE title=?", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "dicom_ae_get_prepare");
    sqlite3_bind_text(q, 1, title, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q), out_rc = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW)
        out_rc = row_to_ae(q, &a) ? HDX_OK : HDX_E_INTEGRITY;
    else if (rc != SQLITE_DONE)
        out_rc = db_error(s, "dicom_ae_get");
    sqlite3_finalize(q);
    if (out_rc == HDX_OK) *out = a;
    return out_rc;
}

struct ae_walk {
    int (*cb)(void *ctx, const struct hdx_dicom_ae *a, int bad);
    void *ctx;
};

static int ae_row(void *w, sqlite3_stmt *q)
{
    struct ae_walk *aw = w;
    struct hdx_dicom_ae a;
    int ok = row_to_ae(q, &a);
    return aw->cb(aw->ctx, &a, !ok);
}

int hdx_store_dicom_aes_list(struct hdx_store *s,
                             int (*cb)(void *ctx, const struct hdx_dicom_ae *a, int bad), void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct ae_walk w = {cb, ctx};
    if (sqlite3_prepare_v2(s->db, "SELECT title,name,set_us FROM dicom_aes ORDER BY title", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "dicom_aes_prepare");
    return each_row(s, q, ae_row, &w, "dicom_aes");
}

/* ---------- subscribers' scopes (commit/admin.h is their only writer) ---------- */

int hdx_store_device_scope_set(struct hdx_store *s, const char *name, const char *scope,
                               int64_t set_us)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (sqlite3_prepare_v2(s->db,
                           scope ? "INSERT OR REPLACE INTO device_scopes(name,scope,set_us)"
                                   " VALUES(?1,?2,?3)"
                                 : "DELETE FROM device_scopes WHERE name=?1",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_scope_set_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    if (scope) {
        sqlite3_bind_text(q, 2, scope, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, set_us);
    }
    return write_step(s, q, "device_scope_set");
}

/* A device_scopes row (columns from col) into d; 0 when a text does not fit or holds a NUL
 * (the row is then passed as bad). */
static int row_to_scope(sqlite3_stmt *q, int col, struct hdx_device_scope *d)
{
    memset(d, 0, sizeof(*d));
    int ok = text_col(q, col, d->name, sizeof(d->name));
    ok &= sqlite3_column_type(q, col + 1) == SQLITE_TEXT &&
          text_col(q, col + 1, d->scope, sizeof(d->scope));
    d->set_us = sqlite3_column_int64(q, col + 2);
    return ok;
}

int hdx_store_device_scope_get(struct hdx_store *s, const char *name, struct hdx_device_scope *out)
{
    struct hdx_device_scope d;
    sqlite3_stmt *q = lazy_stmt(s, LZ_DEVICE_SCOPE_GET);
    if (!q) return HDX_E_STORE;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q), out_rc = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW)
        out_rc = row_to_scope(q, 0, &d) ? HDX_OK : HDX_E_INTEGRITY;
    else if (rc != SQLITE_DONE)
        out_rc = db_error(s, "device_scope_get");
    sqlite3_reset(q);
    if (out_rc == HDX_OK) *out = d;
    return out_rc;
}

struct scope_walk {
    int (*rows)(void *ctx, const struct hdx_device_scope *d, int bad);
    int (*devices)(void *ctx, const struct hdx_device *d, const struct hdx_device_scope *sc,
                   int bad);
    void *ctx;
};

static int scope_row(void *w, sqlite3_stmt *q)
{
    struct scope_walk *sw = w;
    struct hdx_device_scope d;
    int ok = row_to_scope(q, 0, &d);
    return sw->rows(sw->ctx, &d, !ok);
}

int hdx_store_scope_rows_list(struct hdx_store *s,
                              int (*cb)(void *ctx, const struct hdx_device_scope *d, int bad),
                              void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct scope_walk w = {.rows = cb, .ctx = ctx};
    if (sqlite3_prepare_v2(s->db, "SELECT name,scope,set_us FROM device_scopes ORDER BY name", -1,
                           &q, NULL) != SQLITE_OK)
        return db_error(s, "device_scopes_prepare");
    return each_row(s, q, scope_row, &w, "device_scopes");
}

static int device_scope_row(void *w, sqlite3_stmt *q)
{
    struct scope_walk *sw = w;
    struct hdx_device d = {0};
    struct hdx_device_scope sc;
    int ok = text_col(q, 0, d.name, sizeof(d.name));
    ok &= text_col(q, 1, d.role, sizeof(d.role));
    ok &= text_col(q, 2, d.serial, sizeof(d.serial));
    d.created_us = sqlite3_column_int64(q, 3);
    d.revoked_us = sqlite3_column_int64(q, 4);
    int has = sqlite3_column_type(q, 5) != SQLITE_NULL;
    if (has) ok &= row_to_scope(q, 5, &sc);
    return sw->devices(sw->ctx, &d, has ? &sc : NULL, !ok);
}

int hdx_store_device_scopes_list(struct hdx_store *s,
                                 int (*cb)(void *ctx, const struct hdx_device *d,
                                           const struct hdx_device_scope *scope, int bad),
                                 void *ctx)
{
    sqlite3_stmt *q = NULL;
    struct scope_walk w = {.devices = cb, .ctx = ctx};
    if (sqlite3_prepare_v2(s->db,
                           "SELECT d.name,d.role,d.serial,d.created_us,d.revoked_us,"
                           "s.name,s.scope,s.set_us FROM devices d"
                           " LEFT JOIN device_scopes s ON s.name=d.name ORDER BY d.name",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "device_scopes_list_prepare");
    return each_row(s, q, device_scope_row, &w, "device_scopes_list");
}

/* ---------- SMART clients (commit/admin.h is their only writer) ---------- */

void hdx_smart_client_clear(struct hdx_smart_client *c)
{
    if (!c) return;
    free(c->jwks);
    memset(c, 0, sizeof(*c));
}

int hdx_store_client_put(struct hdx_store *s, const struct hdx_smart_client *c)
{
    sqlite3_stmt *q = NULL;
    if (s->failed) return HDX_E_STORE;
    if (!c->jwks || c->jwks_len < 1 || c->jwks_len > HDX_SMART_JWKS_MAX) return HDX_E_INVAL;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO smart_clients(name,jwks,scope,created_us,"
                           "revoked_us) VALUES(?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "client_put_prepare");
    sqlite3_bind_text(q, 1, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, c->jwks, (int)c->jwks_len, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, c->scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, c->created_us);
    sqlite3_bind_int64(q, 5, c->revoked_us);
    return write_step(s, q, "client_put");
}

#define CLIENT_COLS "name,jwks,scope,created_us,revoked_us"

/* A smart_clients row into *c (zeroed first; jwks malloc'd when it is a blob of a size a
 * statement writes). 1 well-formed, 0 damaged (c holds what could be read), -1 no memory. */
static int row_to_client(sqlite3_stmt *q, struct hdx_smart_client *c)
{
    memset(c, 0, sizeof(*c));
    int ok = text_col(q, 0, c->name, sizeof(c->name));
    int n = sqlite3_column_bytes(q, 1);
    if (sqlite3_column_type(q, 1) == SQLITE_BLOB && n >= 1 && n <= HDX_SMART_JWKS_MAX) {
        c->jwks = malloc((size_t)n);
        if (!c->jwks) return -1;
        memcpy(c->jwks, sqlite3_column_blob(q, 1), (size_t)n);
        c->jwks_len = (size_t)n;
    } else {
        ok = 0;
    }
    ok &= sqlite3_column_type(q, 2) == SQLITE_TEXT && text_col(q, 2, c->scope, sizeof(c->scope)) &&
          c->scope[0] != 0;
    c->created_us = sqlite3_column_int64(q, 3);
    c->revoked_us = sqlite3_column_int64(q, 4);
    ok &= c->created_us >= 1 && c->revoked_us >= 0;
    return ok;
}

int hdx_store_client_get(struct hdx_store *s, const char *name, struct hdx_smart_client *out)
{
    sqlite3_stmt *q = NULL;
    memset(out, 0, sizeof(*out));
    if (sqlite3_prepare_v2(s->db, "SELECT " CLIENT_COLS " FROM smart_clients WHERE name=?", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "client_get_prepare");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q), out_rc = HDX_E_NOTFOUND;
    if (rc == SQLITE_ROW) {
        int ok = row_to_client(q, out);
        out_rc = ok > 0 ? HDX_OK : ok < 0 ? HDX_E_NOMEM : HDX_E_INTEGRITY;
    } else if (rc != SQLITE_DONE) {
        out_rc = db_error(s, "client_get");
    }
    sqlite3_finalize(q);
    if (out_rc != HDX_OK) hdx_smart_client_clear(out);
    return out_rc;
}

struct client_walk {
    int (*cb)(void *ctx, const struct hdx_smart_client *c);
    int (*rows)(void *ctx, const struct hdx_smart_client *c, int bad);
    void *ctx;
    int damaged, nomem;
};

static int client_row(void *w, sqlite3_stmt *q)
{
    struct client_walk *cw = w;
    struct hdx_smart_client c;
    int ok = row_to_client(q, &c), stop = 0;
    if (ok < 0) {
        cw->nomem = 1;
        stop = 1;
    } else if (cw->rows) {
        stop = cw->rows(cw->ctx, &c, !ok);
    } else if (ok) {
        stop = cw->cb(cw->ctx, &c);
    } else {
        cw->damaged = 1;
    }
    hdx_smart_client_clear(&c);
    return stop;
}

static int clients_walk(struct hdx_store *s, struct client_walk *w)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT " CLIENT_COLS " FROM smart_clients ORDER BY name", -1, &q,
                           NULL) != SQLITE_OK)
        return db_error(s, "clients_prepare");
    int rc = each_row(s, q, client_row, w, "clients");
    if (rc == HDX_OK && w->nomem) rc = HDX_E_NOMEM;
    if (rc == HDX_OK && w->damaged) rc = HDX_E_INTEGRITY;
    return rc;
}

int hdx_store_clients_list(struct hdx_store *s,
                           int (*cb)(void *ctx, const struct hdx_smart_client *c), void *ctx)
{
    struct client_walk w = {.cb = cb, .ctx = ctx};
    return clients_walk(s, &w);
}

int hdx_store_client_rows_list(struct hdx_store *s,
                               int (*cb)(void *ctx, const struct hdx_smart_client *c, int bad),
                               void *ctx)
{
    struct client_walk w = {.rows = cb, .ctx = ctx};
    return clients_walk(s, &w);
}

int hdx_store_senders_since(struct hdx_store *s, int64_t since_us,
                            int (*cb)(void *ctx, const char *sender, int64_t last_us), void *ctx)
{
    sqlite3_stmt *q = NULL;
    int rc;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT sender,max(time_us) FROM records WHERE seq>=?1 AND time_us>=?2"
                           " GROUP BY sender ORDER BY sender",
                           -1, &q, NULL) != SQLITE_OK)
        return db_error(s, "senders_prepare");
    sqlite3_bind_int64(q, 1, (sqlite3_int64)hdx_store_seq_at_time(s, since_us));
    sqlite3_bind_int64(q, 2, since_us);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *sender = (const char *)sqlite3_column_text(q, 0);
        if (sender && cb(ctx, sender, sqlite3_column_int64(q, 1))) break;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? HDX_OK : db_error(s, "senders");
}
