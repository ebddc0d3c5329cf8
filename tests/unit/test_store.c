/* Store, commit thread (group commit, duplicates, chain) and bus (replay, live, filters,
 * slow consumers). DESIGN invariants 1 and 7; M2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus/bus.h"
#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "store/store.h"

static char tmpdir[256], dbpath[320];
static struct hdx_keyring *kr;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done_signals;

static void notify(void *arg)
{
    pthread_mutex_lock(&done_lock);
    done_signals++;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
}

static int setup(void **state)
{
    char kek[320];
    uint8_t w[HDX_WRAPPED_LEN];
    struct hdx_store *s = NULL;
    if (hdx_mkdtemp("hdx-store-", tmpdir, sizeof(tmpdir)) != 0) return -1;
    snprintf(kek, sizeof(kek), "%s/kek.key", tmpdir);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    if (hdx_kek_create(kek) || hdx_keyring_open(kek, &kr, NULL, 0) ||
        hdx_store_open(dbpath, HDX_STORE_CREATE, &s))
        return -1;
    if (hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, w) ||
        hdx_store_key_put(s, HDX_KEY_BLIND, 1, w, sizeof(w)) ||
        hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, w) ||
        hdx_store_key_put(s, HDX_KEY_DATA, 1, w, sizeof(w)))
        return -1;
    hdx_store_close(s);
    return 0;
}

static int teardown(void **state)
{
    char cmd[320];
    hdx_keyring_free(kr);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

static struct hdx_intake_item *item(const char *sender, const char *ctrl, const char *type,
                                    const char *patient)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "MSH|^~\\&|S|F|||20260101||%s|%s|P|2.5.1\rPID|1||%s", type,
                     ctrl, patient);
    struct hdx_intake_item *it = hdx_intake_item_new((const uint8_t *)body, (size_t)n);
    assert_non_null(it);
    it->kind = HDX_KIND_HL7V2;
    snprintf(it->sender, sizeof(it->sender), "%s", sender);
    snprintf(it->type, sizeof(it->type), "%s", type);
    snprintf(it->control_id, sizeof(it->control_id), "%s", ctrl);
    snprintf(it->patient_id, sizeof(it->patient_id), "%s", patient);
    return it;
}

/* Submits items and collects exactly n completions, in order. */
static struct hdx_intake_item *run_batch(struct hdx_commit *c, struct hdx_intake_item **items,
                                         int n)
{
    struct hdx_intake_item *head = NULL, **tail = &head;
    int got = 0;
    for (int i = 0; i < n; i++)
        hdx_commit_submit(c, items[i]);
    while (got < n) {
        pthread_mutex_lock(&done_lock);
        while (!done_signals)
            pthread_cond_wait(&done_cond, &done_lock);
        done_signals = 0;
        pthread_mutex_unlock(&done_lock);
        for (struct hdx_intake_item *it = hdx_commit_take_done(c); it; it = it->next) {
            *tail = it;
            tail = &it->next;
            got++;
        }
    }
    return head;
}

static void free_list(struct hdx_intake_item *it)
{
    while (it) {
        struct hdx_intake_item *next = it->next;
        hdx_intake_item_free(it);
        it = next;
    }
}

static struct hdx_commit *start(void)
{
    struct hdx_store *s = NULL;
    struct hdx_commit *c = NULL;
    assert_int_equal(hdx_store_open(dbpath, 0, &s), HDX_OK);
    assert_int_equal(hdx_commit_start(s, kr, 64, 1024, NULL, 0, NULL, notify, NULL, &c), HDX_OK);
    return c;
}

static void test_commit_assigns_seq_and_dedups(void **state)
{
    struct hdx_commit *c = start();
    struct hdx_intake_item *items[5] = {
        item("mon1", "A1", "ORU^R01", "P1"), item("mon1", "A2", "ORU^R01", "P2"),
        item("mon2", "A1", "ADT^A01", "P1"), /* same id, other sender: a new message */
        item("mon1", "A1", "ORU^R01", "P1"), /* duplicate inside the batch */
        item("mon1", "A3", "ORU^R01", ""),
    };
    struct hdx_intake_item *done = run_batch(c, items, 5), *it = done;
    uint64_t want_seq[] = {1, 2, 3, 1, 4};
    int want_dup[] = {0, 0, 0, 1, 0};
    for (int i = 0; i < 5; i++, it = it->next) {
        assert_non_null(it);
        assert_int_equal(it->status, HDX_OK);
        assert_int_equal(it->seq, want_seq[i]);
        assert_int_equal(it->duplicate, want_dup[i]);
        assert_int_equal(it->patient_id[0], 0); /* plaintext id wiped once blinded */
    }
    free_list(done);
    hdx_commit_stop(c);
    /* After a restart the duplicate is still recognised and the sequence continues. */
    c = start();
    struct hdx_intake_item *again[2] = {item("mon1", "A2", "ORU^R01", "P2"),
                                        item("mon1", "A4", "ORU^R01", "P1")};
    done = run_batch(c, again, 2);
    assert_int_equal(done->duplicate, 1);
    assert_int_equal(done->seq, 2);
    assert_int_equal(done->next->seq, 5);
    free_list(done);
    hdx_commit_stop(c);
}

static void test_store_chain_and_scan(void **state)
{
    struct hdx_store *s = NULL;
    struct hdx_record r;
    uint8_t prev[32] = {0}, h[32];
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_RDONLY, &s), HDX_OK);
    assert_int_equal(hdx_store_count(s), 5);
    for (uint64_t seq = 1; seq <= 5; seq++) {
        assert_int_equal(hdx_store_get(s, seq, &r), HDX_OK);
        hdx_record_leaf_hash(&r, h);
        assert_memory_equal(h, r.leaf_hash, 32);
        hdx_record_chain(prev, h, h);
        assert_memory_equal(h, r.chain, 32);
        memcpy(prev, r.chain, 32);
        hdx_record_clear(&r);
    }
    assert_int_equal(hdx_store_get(s, 6, &r), HDX_E_NOTFOUND);
    hdx_store_close(s);
}

static int count_cb(void *ctx, const struct hdx_record *r)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_scan_filters(void **state)
{
    struct hdx_store *s = NULL;
    uint8_t tok[HDX_BLIND_LEN];
    int n;
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_blind(kr, "patient", "P1", 2, tok);
    struct hdx_store_filter by_patient = {.patient = tok};
    n = 0;
    assert_int_equal(hdx_store_scan(s, &by_patient, 0, count_cb, &n), 3);
    assert_int_equal(n, 3);
    struct hdx_store_filter by_type = {.type = "ADT^A01"};
    n = 0;
    assert_int_equal(hdx_store_scan(s, &by_type, 0, count_cb, &n), 1);
    struct hdx_store_filter by_sender = {.sender = "mon1", .from_seq = 2};
    n = 0;
    assert_int_equal(hdx_store_scan(s, &by_sender, 0, count_cb, &n), 3);
    struct hdx_store_filter admin = {.kind = HDX_KIND_ADMIN}, hl7 = {.kind = HDX_KIND_HL7V2};
    struct hdx_store_filter admin_type = {.kind = HDX_KIND_ADMIN, .type = "ADT^A01"};
    n = 0;
    assert_int_equal(hdx_store_scan(s, &admin, 0, count_cb, &n), 0);
    assert_int_equal(hdx_store_scan(s, &admin_type, 0, count_cb, &n), 0);
    assert_int_equal(hdx_store_scan(s, &hl7, 0, count_cb, &n), 5);
    struct hdx_store_filter future = {.since_us = hdx_now_us() + 1000000};
    n = 0;
    assert_int_equal(hdx_store_scan(s, &future, 0, count_cb, &n), 0);
    assert_int_equal(hdx_store_seq_at_time(s, 0), 1);
    assert_int_equal(hdx_store_seq_at_time(s, hdx_now_us() + 1000000), 6);
    hdx_store_close(s);
}

static void test_devices(void **state)
{
    struct hdx_store *s = NULL;
    struct hdx_device d = {"mon1", "device", "abc", 1, 0}, got;
    assert_int_equal(hdx_store_open(dbpath, 0, &s), HDX_OK);
    assert_int_equal(hdx_store_device_add(s, &d), HDX_OK);
    assert_int_equal(hdx_store_device_add(s, &d), HDX_E_EXISTS);
    assert_int_equal(hdx_store_device_get(s, "mon1", &got), HDX_OK);
    assert_string_equal(got.serial, "abc");
    assert_int_equal(got.revoked_us, 0);
    assert_int_equal(hdx_store_device_revoke(s, "mon1", 99), HDX_OK);
    assert_int_equal(hdx_store_device_revoke(s, "mon1", 100), HDX_E_NOTFOUND);
    assert_int_equal(hdx_store_device_get(s, "mon1", &got), HDX_OK);
    assert_int_equal(got.revoked_us, 99);
    snprintf(d.serial, sizeof(d.serial), "def"); /* re-enrolment after revocation */
    assert_int_equal(hdx_store_device_add(s, &d), HDX_OK);
    assert_int_equal(hdx_store_device_get(s, "mon1", &got), HDX_OK);
    assert_string_equal(got.serial, "def");
    assert_int_equal(got.revoked_us, 0);
    assert_int_equal(hdx_store_device_get(s, "nobody", &got), HDX_E_NOTFOUND);
    hdx_store_close(s);
}

static int count_rows(void *arg, const struct hdx_careteam *c, int bad)
{
    (*(int *)arg)++;
    return 0;
}

/* What every migration test asks of a store left at an older schema: a reader refuses it
 * ("start hdxd once"), a writer migrates it all the way to the newest version. */
static struct hdx_store *open_migrated(const char *path)
{
    struct hdx_store *s = NULL;
    int64_t v = 0;
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_E_STORE);
    assert_int_equal(hdx_store_open(path, 0, &s), HDX_OK);
    assert_int_equal(hdx_store_meta_get(s, "schema_version", &v), HDX_OK);
    assert_int_equal(v, 9);
    return s;
}

/* A schema-3 store (no policy tables) is migrated when a writer opens it, and only then:
 * a reader refuses it until then. */
static void test_migrate_3_to_4(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/v3.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &s), HDX_OK);
    hdx_store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "DROP TABLE careteams; DROP TABLE consents; DROP TABLE break_glass;"
                     "UPDATE meta SET v=3 WHERE k='schema_version';",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    s = open_migrated(path);
    struct hdx_careteam c = {.user = "alice"};
    int n = 0;
    assert_int_equal(hdx_store_careteam_set(s, &c, 1), HDX_OK);
    assert_int_equal(hdx_store_careteams_list(s, NULL, count_rows, &n), HDX_OK);
    assert_int_equal(n, 1);
    hdx_store_close(s);
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_store_close(s);
}

/* A schema-4 store (no device_scopes) is migrated in place when a writer opens it: the table
 * appears empty (no subscriber scoped, as before), a reader refuses the store until then. */
static void test_migrate_4_to_5(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    sqlite3 *db = NULL;
    struct hdx_device_scope got;
    snprintf(path, sizeof(path), "%s/v4.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &s), HDX_OK);
    hdx_store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE device_scopes;"
                                  "UPDATE meta SET v=4 WHERE k='schema_version';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    s = open_migrated(path);
    assert_int_equal(hdx_store_device_scope_get(s, "sub", &got), HDX_E_NOTFOUND);
    assert_int_equal(hdx_store_device_scope_set(s, "sub", "type=A", 7), HDX_OK);
    assert_int_equal(hdx_store_device_scope_get(s, "sub", &got), HDX_OK);
    assert_string_equal(got.scope, "type=A");
    assert_int_equal(got.set_us, 7);
    assert_int_equal(hdx_store_device_scope_set(s, "sub", NULL, 0), HDX_OK);
    assert_int_equal(hdx_store_device_scope_get(s, "sub", &got), HDX_E_NOTFOUND);
    hdx_store_close(s);
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_store_close(s);
}

static int count_clients(void *arg, const struct hdx_smart_client *c)
{
    (*(int *)arg)++;
    return 0;
}

/* A schema-5 store (no smart_clients) is migrated in place when a writer opens it: the table
 * appears empty (no client registered, as before), a reader refuses the store until then. */
static void test_migrate_5_to_6(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    sqlite3 *db = NULL;
    struct hdx_smart_client got;
    snprintf(path, sizeof(path), "%s/v5.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &s), HDX_OK);
    hdx_store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE smart_clients;"
                                  "UPDATE meta SET v=5 WHERE k='schema_version';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    s = open_migrated(path);
    assert_int_equal(hdx_store_client_get(s, "lab", &got), HDX_E_NOTFOUND);
    uint8_t doc[] = "{\"keys\":[]}";
    struct hdx_smart_client c = {.name = "lab",
                                 .jwks = doc,
                                 .jwks_len = sizeof(doc) - 1,
                                 .scope = "system/Patient.r",
                                 .created_us = 7};
    assert_int_equal(hdx_store_client_put(s, &c), HDX_OK);
    assert_int_equal(hdx_store_client_get(s, "lab", &got), HDX_OK);
    assert_int_equal(got.jwks_len, sizeof(doc) - 1);
    assert_memory_equal(got.jwks, doc, got.jwks_len);
    assert_string_equal(got.scope, "system/Patient.r");
    assert_int_equal(got.created_us, 7);
    assert_int_equal(got.revoked_us, 0);
    hdx_smart_client_clear(&got);
    c.revoked_us = 9; /* a put replaces the whole row */
    assert_int_equal(hdx_store_client_put(s, &c), HDX_OK);
    int n = 0;
    assert_int_equal(hdx_store_clients_list(s, count_clients, &n), HDX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hdx_store_client_get(s, "lab", &got), HDX_OK);
    assert_int_equal(got.revoked_us, 9);
    hdx_smart_client_clear(&got);
    c.jwks_len = 0; /* no statement writes an empty JWK Set */
    assert_int_equal(hdx_store_client_put(s, &c), HDX_E_INVAL);
    hdx_store_close(s);
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_store_close(s);
}

static int count_aes(void *arg, const struct hdx_dicom_ae *a, int bad)
{
    assert_false(bad);
    (*(int *)arg)++;
    return 0;
}

/* A schema-6 store (no dicom_aes) is migrated in place when a writer opens it: the table
 * appears empty (no AE title bound: every association is rejected, as none was accepted
 * before), a reader refuses the store until then. */
static void test_migrate_6_to_7(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    sqlite3 *db = NULL;
    struct hdx_dicom_ae got;
    snprintf(path, sizeof(path), "%s/v6.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &s), HDX_OK);
    hdx_store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE dicom_aes;"
                                  "UPDATE meta SET v=6 WHERE k='schema_version';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    s = open_migrated(path);
    assert_int_equal(hdx_store_dicom_ae_get(s, "CT1", &got), HDX_E_NOTFOUND);
    assert_int_equal(hdx_store_dicom_ae_set(s, "CT1", "scanner", 5), HDX_OK);
    assert_int_equal(hdx_store_dicom_ae_set(s, "MR 2", "mri", 6), HDX_OK);
    assert_int_equal(hdx_store_dicom_ae_get(s, "CT1", &got), HDX_OK);
    assert_string_equal(got.name, "scanner");
    assert_int_equal(got.set_us, 5);
    assert_int_equal(hdx_store_dicom_ae_set(s, "CT1", "other", 8), HDX_OK); /* replaced */
    assert_int_equal(hdx_store_dicom_ae_get(s, "CT1", &got), HDX_OK);
    assert_string_equal(got.name, "other");
    int n = 0;
    assert_int_equal(hdx_store_dicom_aes_list(s, count_aes, &n), HDX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hdx_store_dicom_ae_set(s, "CT1", NULL, 0), HDX_OK);
    assert_int_equal(hdx_store_dicom_ae_get(s, "CT1", &got), HDX_E_NOTFOUND);
    hdx_store_close(s);
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_store_close(s);
}

struct plan_seen {
    const char *index;
    int uses;
};

static int plan_detail(void *arg, int ncol, char **val, char **col)
{
    struct plan_seen *p = arg;
    for (int i = 0; i < ncol; i++)
        if (strcmp(col[i], "detail") == 0 && val[i] && strstr(val[i], p->index)) p->uses++;
    return 0;
}

/* 1 when SQLite plans a scan of records of this kind, in the shape build_scan_sql gives it,
 * through the named index; 0 when it does not. */
static int plan_uses(const char *path, int kind, const char *index)
{
    char plan[160];
    sqlite3 *db = NULL;
    struct plan_seen seen = {index, 0};
    snprintf(plan, sizeof(plan),
             "EXPLAIN QUERY PLAN SELECT seq,ct FROM records WHERE seq>=1 AND kind=%d ORDER BY seq",
             kind);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, plan, plan_detail, &seen, NULL), SQLITE_OK);
    sqlite3_close(db);
    return seen.uses > 0;
}

/* Leaves the store at path as an older schema had it: sql drops what that schema lacked. */
static void downgrade(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A schema-7 store (no index of admin records) gets it when a writer opens it, and a scan of
 * admin records reads that index, not every record; a reader refuses the store until then. */
static void test_migrate_7_to_8(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    snprintf(path, sizeof(path), "%s/v7.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &s), HDX_OK);
    hdx_store_close(s);
    downgrade(path, "DROP INDEX records_admin; UPDATE meta SET v=7 WHERE k='schema_version';");
    assert_int_equal(plan_uses(path, HDX_KIND_ADMIN, "records_admin"), 0);
    s = open_migrated(path);
    struct hdx_store_filter admin = {.kind = HDX_KIND_ADMIN, .type = "user"};
    int n = 0;
    assert_int_equal(hdx_store_scan(s, &admin, 0, count_cb, &n), 0);
    hdx_store_close(s);
    assert_int_equal(hdx_store_open(path, HDX_STORE_RDONLY, &s), HDX_OK);
    hdx_store_close(s);
    assert_int_equal(plan_uses(path, HDX_KIND_ADMIN, "records_admin"), 1);
}

/* A schema-8 store (no index of audit records) gets it when a writer opens it; an audit scan
 * (hdx audit, GET /api/audit, the AuditEvent search) then reads that index, finds exactly the
 * audit records, and a message costs no entry in it. */
static void test_migrate_8_to_9(void **state)
{
    char path[400];
    struct hdx_store *s = NULL;
    sqlite3 *db = NULL;
    uint8_t ct[32] = {0}, chain[HDX_HASH_LEN] = {0};
    /* its own directory: the segment files live beside the database */
    snprintf(path, sizeof(path), "%s/v8", tmpdir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/v8/store.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE | HDX_STORE_NOSYNC, &s), HDX_OK);
    assert_int_equal(hdx_store_begin(s), HDX_OK);
    for (uint64_t seq = 1; seq <= 6; seq++) {
        struct hdx_record r = {.seq = seq,
                               .time_us = (int64_t)seq * 100,
                               .kind = seq % 3 == 0 ? HDX_KIND_AUDIT : HDX_KIND_HL7V2,
                               .key_id = 1,
                               .ct = ct,
                               .ct_len = sizeof(ct)};
        snprintf(r.sender, sizeof(r.sender), "%s", seq % 3 == 0 ? "hdx:audit" : "mon1");
        snprintf(r.type, sizeof(r.type), "%s", seq % 3 == 0 ? "read" : "ORU^R01");
        hdx_record_leaf_hash(&r, r.leaf_hash);
        hdx_record_chain(chain, r.leaf_hash, r.chain);
        memcpy(chain, r.chain, sizeof(chain));
        assert_int_equal(hdx_store_append(s, &r), HDX_OK);
    }
    assert_int_equal(hdx_store_commit(s), HDX_OK);
    hdx_store_close(s);
    downgrade(path, "DROP INDEX records_audit; UPDATE meta SET v=8 WHERE k='schema_version';");
    assert_int_equal(plan_uses(path, HDX_KIND_AUDIT, "records_audit"), 0);
    s = open_migrated(path);
    struct hdx_store_filter audit = {.kind = HDX_KIND_AUDIT};
    int n = 0;
    assert_int_equal(hdx_store_scan(s, &audit, 0, count_cb, &n), 2);
    assert_int_equal(n, 2); /* seqs 3 and 6 */
    hdx_store_close(s);
    assert_int_equal(plan_uses(path, HDX_KIND_AUDIT, "records_audit"), 1);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM records INDEXED BY records_audit"
                                        " WHERE kind=4",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* ---- bus ---- */

struct fake_conn {
    char out[8192];
    size_t len;
    size_t pretend_queued;
    int dropped;
    char reason[32];
};

static void fake_write(void *conn, const void *data, size_t len)
{
    struct fake_conn *c = conn;
    assert_true(c->len + len < sizeof(c->out));
    memcpy(c->out + c->len, data, len);
    c->len += len;
    c->out[c->len] = 0;
}

static size_t fake_queued(void *conn)
{
    struct fake_conn *c = conn;
    return c->pretend_queued;
}

static void fake_drop(void *conn, const char *reason)
{
    struct fake_conn *c = conn;
    c->dropped = 1;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static const struct hdx_bus_sink fake_sink = {
    .write = fake_write, .queued = fake_queued, .drop = fake_drop};

static int count_msgs(const char *out, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(out, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_bus_replay_then_live(void **state)
{
    struct hdx_store *s = NULL;
    struct hdx_bus *bus = NULL;
    struct fake_conn all = {0}, live = {0}, adt = {0}, after3 = {0};
    struct hdx_bus_filter any = {0}, f_adt = {0};
    snprintf(f_adt.type, sizeof(f_adt.type), "ADT^A01");
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_RDONLY, &s), HDX_OK);
    assert_int_equal(hdx_bus_new(s, kr, &fake_sink, 65536, 1000, 5, &bus), HDX_OK);
    struct hdx_bus_sub *s1 = hdx_bus_subscribe(bus, &all, &any, 0);
    struct hdx_bus_sub *s2 = hdx_bus_subscribe(bus, &live, &any, UINT64_MAX);
    struct hdx_bus_sub *s3 = hdx_bus_subscribe(bus, &adt, &f_adt, 0);
    struct hdx_bus_sub *s4 = hdx_bus_subscribe(bus, &after3, &any, 3);
    hdx_bus_pump(bus, s1);
    hdx_bus_pump(bus, s2);
    hdx_bus_pump(bus, s3);
    hdx_bus_pump(bus, s4);
    assert_int_equal(count_msgs(all.out, "MSG seq="), 5);
    assert_non_null(strstr(all.out, "MSG seq=1 "));
    assert_true(strstr(all.out, "MSG seq=1 ") < strstr(all.out, "MSG seq=5 "));
    assert_int_equal(live.len, 0);
    assert_int_equal(count_msgs(adt.out, "MSG seq="), 1);
    assert_non_null(strstr(adt.out, "MSG seq=3 "));
    assert_int_equal(count_msgs(after3.out, "MSG seq="), 2);
    assert_null(strstr(after3.out, "MSG seq=3 "));
    /* A live record: everyone caught up gets it exactly once. */
    const char *body = "MSH|^~\\&|X";
    struct hdx_bus_event ev = {6,    hdx_now_us(),          HDX_KIND_HL7V2, "mon9",      "ORU^R01",
                               NULL, (const uint8_t *)body, strlen(body),   hdx_now_us()};
    hdx_bus_publish(bus, &ev);
    hdx_bus_publish(bus, &ev); /* a repeat is never delivered twice */
    assert_int_equal(count_msgs(all.out, "MSG seq=6 "), 1);
    assert_int_equal(count_msgs(live.out, "MSG seq=6 "), 1);
    assert_int_equal(count_msgs(adt.out, "MSG seq=6 "), 0);
    /* A full queue: the live record is not queued; the subscriber catches up from the store
     * once it drains, and is dropped only if it stays behind longer than max_lag_ms. */
    live.pretend_queued = 70000;
    ev.seq = 7;
    hdx_bus_publish(bus, &ev);
    assert_int_equal(live.dropped, 0);
    assert_int_equal(count_msgs(live.out, "MSG seq=7 "), 0);
    assert_int_equal(count_msgs(all.out, "MSG seq=7 "), 1);
    hdx_bus_tick(bus, hdx_monotonic_us() + 500000);
    assert_int_equal(live.dropped, 0);
    hdx_bus_tick(bus, hdx_monotonic_us() + 2000000);
    assert_int_equal(live.dropped, 1);
    assert_string_equal(live.reason, "slow-consumer");
    hdx_bus_unsubscribe(bus, s1);
    hdx_bus_unsubscribe(bus, s2);
    hdx_bus_unsubscribe(bus, s3);
    hdx_bus_unsubscribe(bus, s4);
    hdx_bus_free(bus);
    hdx_store_close(s);
}

/* The admit hook (a subscriber's scope): asked for every record the filter matched, replayed
 * (before its body is decrypted: body NULL) and live, and what it refuses is not delivered. */
struct admit_log {
    int calls, replay_calls_without_body;
};
static int admit_odd(void *arg, const struct hdx_bus_event *ev)
{
    struct admit_log *l = arg;
    l->calls++;
    if (!ev->body) l->replay_calls_without_body++;
    return ev->seq % 2 == 1;
}

static void test_bus_admit_hook(void **state)
{
    struct hdx_store *s = NULL;
    struct hdx_bus *bus = NULL;
    struct fake_conn c = {0};
    struct admit_log logs[2] = {{0}}, *log = &logs[0], *log2 = &logs[1];
    struct hdx_bus_filter f = {.admit = admit_odd, .admit_arg = log};
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_RDONLY, &s), HDX_OK);
    assert_int_equal(hdx_bus_new(s, kr, &fake_sink, 65536, 1000, 5, &bus), HDX_OK);
    struct hdx_bus_sub *sub = hdx_bus_subscribe(bus, &c, &f, 0);
    hdx_bus_pump(bus, sub);
    assert_int_equal(count_msgs(c.out, "MSG seq="), 3);
    assert_non_null(strstr(c.out, "MSG seq=1 "));
    assert_null(strstr(c.out, "MSG seq=2 "));
    assert_non_null(strstr(c.out, "MSG seq=5 "));
    assert_int_equal(log->calls, 5);
    assert_int_equal(log->replay_calls_without_body, 5);
    const char *body = "MSH|^~\\&|X";
    struct hdx_bus_event ev = {6,    hdx_now_us(),          HDX_KIND_HL7V2, "mon9",      "ORU^R01",
                               NULL, (const uint8_t *)body, strlen(body),   hdx_now_us()};
    hdx_bus_publish(bus, &ev);
    ev.seq = 7;
    hdx_bus_publish(bus, &ev);
    assert_int_equal(count_msgs(c.out, "MSG seq=6 "), 0);
    assert_int_equal(count_msgs(c.out, "MSG seq=7 "), 1);
    assert_int_equal(log->calls, 7);
    /* a record the filter refuses never reaches the hook */
    snprintf(f.type, sizeof(f.type), "ADT^A01");
    struct fake_conn c2 = {0};
    f.admit_arg = log2;
    struct hdx_bus_sub *sub2 = hdx_bus_subscribe(bus, &c2, &f, 0);
    hdx_bus_pump(bus, sub2);
    assert_int_equal(log2->calls, 1); /* the one ADT^A01 of the store (seq 3) */
    assert_int_equal(count_msgs(c2.out, "MSG seq=3 "), 1);
    hdx_bus_unsubscribe(bus, sub);
    hdx_bus_unsubscribe(bus, sub2);
    hdx_bus_free(bus);
    hdx_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_assigns_seq_and_dedups),
        cmocka_unit_test(test_store_chain_and_scan),
        cmocka_unit_test(test_scan_filters),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_migrate_3_to_4),
        cmocka_unit_test(test_migrate_4_to_5),
        cmocka_unit_test(test_migrate_5_to_6),
        cmocka_unit_test(test_migrate_6_to_7),
        cmocka_unit_test(test_migrate_7_to_8),
        cmocka_unit_test(test_migrate_8_to_9),
        cmocka_unit_test(test_bus_replay_then_live),
        cmocka_unit_test(test_bus_admit_hook),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
