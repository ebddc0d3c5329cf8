/* The admin queue from the command line (commit/admin.h): a statement is queued in the store
 * and committed as an admin record, by hdxd when it runs or by this process itself under
 * DIR/hdxd.lock, through the same commit pipeline (hdx device, hdx user, hdx training). */
#include <openssl/evp.h>
#include <pwd.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "commit/admin.h"
#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/sth.h"

/* ---------- the admin queue (commit/admin.h) ---------- */

static void notify_none(void *arg) {}

struct submit_ctx {
    struct hdx_commit *c;
    size_t n;
    int rc;
};

static int submit_one(void *arg, int64_t id, const uint8_t *body, size_t len)
{
    struct submit_ctx *sc = arg;
    int bad = 0;
    struct hdx_intake_item *it = hdx_admin_item_new(id, body, len, &bad);
    if (!it && bad) return 0; /* hdx verify reports it as pending; nothing applies it */
    if (!it) {
        sc->rc = HDX_E_NOMEM;
        return 1;
    }
    hdx_commit_submit(sc->c, it);
    sc->n++;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* No hdxd runs (we hold its lock): commits every queued statement as hdxd would, through the
 * commit pipeline with the data directory's keys, log key and head file. */
static int apply_queue_here(const char *dir, struct cli_ctx *ctx, char *why, size_t cap)
{
    char path[HDX_PATH_MAX], head[HDX_PATH_MAX], sub[512] = "data directory path too long";
    struct hdx_store *w = NULL;
    struct hdx_commit *c = NULL;
    EVP_PKEY *key = NULL;
    size_t migrated = 0;
    int rc = HDX_E_CONFIG;
    if (hdx_conf_path(&ctx->conf, ctx->conf.store_path, path, sizeof(path)) ||
        (rc = hdx_store_open(path, 0, &w)) != HDX_OK ||
        (rc = hdx_admin_migrate(w, &migrated)) != HDX_OK) {
        snprintf(why, cap, "cannot open the store for writing: %s", hdx_strerror(rc));
        hdx_store_close(w);
        return rc;
    }
    hdx_store_set_segment_size(w, ctx->conf.store_segment_size);
    if (hdx_path(path, sizeof(path), dir, "log.key") ||
        hdx_path(head, sizeof(head), dir, "log.sth") ||
        hdx_logkey_load_private(path, &key, sub, sizeof(sub)) != HDX_OK) {
        snprintf(why, cap, "cannot load the log signing key: %s", sub);
        hdx_store_close(w);
        return HDX_E_CONFIG;
    }
    /* Admin records carry no duplicate token: a one-entry window is enough. */
    rc = hdx_commit_start(w, ctx->kr, 64, 1, key, 0, head, notify_none, NULL, &c);
    if (rc != HDX_OK) {
        snprintf(why, cap, "cannot start the commit pipeline: %s", hdx_strerror(rc));
        EVP_PKEY_free(key);
        return rc;
    }
    struct submit_ctx sc = {c, 0, HDX_OK};
    if (hdx_commit_read_only(c)) {
        sc.rc = HDX_E_INTEGRITY;
        snprintf(why, cap,
                 "log integrity alarm: the store does not match its signed tree heads "
                 "(run hdx verify)");
    } else {
        rc = hdx_store_admin_pending(ctx->store, 0, submit_one, &sc);
        if (rc != HDX_OK && sc.rc == HDX_OK) sc.rc = rc;
    }
    for (size_t got = 0; got < sc.n;) {
        struct hdx_intake_item *it = hdx_commit_take_done(c), *next;
        for (; it; it = next) {
            next = it->next;
            if (it->status != HDX_OK && sc.rc == HDX_OK) {
                sc.rc = it->status;
                snprintf(why, cap, "cannot commit the admin record: %s", hdx_strerror(it->status));
            }
            hdx_intake_item_free(it);
            got++;
        }
        if (got < sc.n) sleep_ms(5);
    }
    hdx_commit_stop(c); /* signs a tree head over the new records */
    EVP_PKEY_free(key);
    return sc.rc;
}

/* The operating-system account running hdx (and, under sudo, who ran sudo), as an admin
 * statement's actor. Characters the actor grammar does not allow become '_'. */
static void local_actor(char *out, size_t cap)
{
    const struct passwd *pw = getpwuid(geteuid());
    const char *sudo = geteuid() == 0 ? getenv("SUDO_USER") : NULL;
    char uid[24];
    snprintf(uid, sizeof(uid), "uid%u", (unsigned)geteuid());
    int n = snprintf(out, cap, "local:%.40s%s%.32s", pw && pw->pw_name[0] ? pw->pw_name : uid,
                     sudo && sudo[0] ? "/sudo:" : "", sudo && sudo[0] ? sudo : "");
    for (int i = 6; n > 0 && i < n && (size_t)i < cap; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("._@:/+-_", ch)))
            out[i] = '_';
    }
}

static int queue_wait(const char *dir, struct cli_ctx *ctx, const char *lock, int64_t id, char *why,
                      size_t cap);

/* Queues body and waits until it is a record: applied here when no hdxd holds DIR/hdxd.lock,
 * else by hdxd (up to 10 s, 50 ms steps; the lock is tried again meanwhile, in case hdxd
 * stops). */
static int queue_run(const char *dir, struct cli_ctx *ctx, const char *body, int n, char *why,
                     size_t cap)
{
    char lock[HDX_PATH_MAX];
    int64_t id;
    int rc;
    if (hdx_path(lock, sizeof(lock), dir, "hdxd.lock")) return HDX_E_CONFIG;
    if ((rc = hdx_store_admin_enqueue(ctx->store, (const uint8_t *)body, (size_t)n, hdx_now_us(),
                                      &id)) != HDX_OK) {
        snprintf(why, cap, "cannot queue the change in the store: %s", hdx_strerror(rc));
        return rc;
    }
    return queue_wait(dir, ctx, lock, id, why, cap);
}

/* Waits until queue row id is a record (see queue_run). */
static int queue_wait(const char *dir, struct cli_ctx *ctx, const char *lock, int64_t id, char *why,
                      size_t cap)
{
    int rc;
    for (int step = 0; step <= 200; step++) {
        int fd = -1, q = hdx_store_admin_queued(ctx->store, id);
        if (q == 0) return HDX_OK;
        if (q < 0) {
            snprintf(why, cap, "cannot read the admin queue: %s", hdx_strerror(q));
            return q;
        }
        if (hdx_admin_lock(lock, &fd) == HDX_OK) {
            rc = apply_queue_here(dir, ctx, why, cap);
            close(fd);
            if (rc != HDX_OK) return rc;
            continue;
        }
        sleep_ms(50);
    }
    snprintf(why, cap,
             "hdxd did not commit the change within 10 s (it stays queued and is "
             "committed when hdxd next polls its queue)");
    return HDX_E_TIMEOUT;
}

int cli_admin_run(const char *dir, struct cli_ctx *ctx, const struct hdx_admin *stmt, char *why,
                  size_t cap)
{
    char body[HDX_ADMIN_BODY_MAX + 1];
    struct hdx_admin signed_by = *stmt;
    if (!signed_by.by[0]) local_actor(signed_by.by, sizeof(signed_by.by));
    int n = hdx_admin_format(&signed_by, body, sizeof(body));
    sodium_memzero(&signed_by, sizeof(signed_by));
    if (n < 0) {
        snprintf(why, cap, "invalid statement: %s", hdx_strerror(n));
        return n;
    }
    int rc = queue_run(dir, ctx, body, n, why, cap);
    sodium_memzero(body, sizeof(body));
    return rc;
}

int cli_offline_audit(const char *dir, const char *route, const struct cli_read_tally *t, size_t n)
{
    char actor[HDX_ADMIN_BY_MAX + 1], detail[64], body[HDX_AUDIT_BODY_MAX], why[512] = "";
    char lock[HDX_PATH_MAX];
    struct cli_ctx rw;
    int64_t id = 0;
    int rc = HDX_OK;
    local_actor(actor, sizeof(actor));
    snprintf(detail, sizeof(detail), "route=%s", route);
    if (hdx_path(lock, sizeof(lock), dir, "hdxd.lock") || cli_open(dir, 1, &rw) != 0) {
        fprintf(stderr, "hdx: warning: this read is not in the audit trail (the store cannot "
                        "be opened for writing)\n");
        return HDX_E_STORE;
    }
    /* Every patient's record queued first, then one wait: hdxd commits them in queue order. */
    for (size_t i = 0; i < n && rc == HDX_OK; i++) {
        struct hdx_audit a = {.event = "access",
                              .action = "offline_read",
                              .outcome = "permit",
                              .reason = "-",
                              .principal = actor,
                              .role = "operator",
                              .source = "local",
                              .cert = "-",
                              .patient = t[i].has_patient ? t[i].patient : NULL,
                              .first_seq = t[i].first,
                              .last_seq = t[i].last,
                              .count = t[i].count,
                              .detail = detail};
        int len = hdx_audit_format(&a, body, sizeof(body));
        rc = len < 0 ? HDX_E_INVAL
                     : hdx_store_admin_enqueue(rw.store, (const uint8_t *)body, (size_t)len,
                                               hdx_now_us(), &id);
    }
    if (rc == HDX_OK && n) rc = queue_wait(dir, &rw, lock, id, why, sizeof(why));
    cli_close(&rw);
    if (rc != HDX_OK)
        fprintf(stderr,
                "hdx: warning: this read is not in the audit trail yet: %s (it stays queued "
                "when it could be queued)\n",
                why[0] ? why : hdx_strerror(rc));
    return rc;
}
