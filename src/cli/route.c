/* hdx route: the outbound routes of a data directory (route/route.h, docs/ROUTES.md). list and
 * status read hdx.conf, the lanes' cursor and status files and the log's dead letters; retry
 * and skip are admin statements, so every operator action on a dead letter is a record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "route/cursor.h"
#include "route/match.h"
#include "route/rconf.h"
#include "route/route.h"

static const char route_usage[] =
    "usage: hdx route list -d DIR\n"
    "       hdx route status NAME -d DIR\n"
    "       hdx route retry NAME SEQ|--all -d DIR\n"
    "       hdx route skip NAME SEQ -d DIR\n"
    "\n"
    "Outbound routes are [route NAME] sections of DIR/hdx.conf (docs/ROUTES.md); hdxd reads\n"
    "them at start and on SIGHUP.\n"
    "  list     one line per declared route: name, destination, order, lanes, max_inflight,\n"
    "           its match expression, its kind (hl7v2: HL7 v2 messages; dicom: stored DICOM\n"
    "           instances), and whether the configuration is valid (else the error, with\n"
    "           file, line and key)\n"
    "  status   per lane: state (idle, delivering, connecting, backoff, stopped), the\n"
    "           cursor (every message up to it was acknowledged or is a dead letter), lag\n"
    "           in records and seconds, in flight, counters, the last error; then the\n"
    "           dead letters with their reasons. Exit 0; 1 when the route has dead letters\n"
    "           or its lanes are failing\n"
    "  retry    send dead letter SEQ (or every one: --all) again; it leaves the list once\n"
    "           the destination acknowledges it\n"
    "  skip     give up on dead letter SEQ: it leaves the list, nothing is sent\n"
    "retry and skip are admin records of the log (hdx audit query --event admin shows who);\n"
    "they reach a running hdxd within a second.\n";

static int usage(void)
{
    fputs(route_usage, stderr);
    return 2;
}

struct dead_print {
    int n;
    int64_t now;
};

static int print_dead(void *ctx, uint64_t seq, const char *reason, int64_t dead_us, int retry)
{
    struct dead_print *d = ctx;
    char t[40];
    hdx_format_time(dead_us, t, sizeof(t));
    if (!d->n++) printf("dead letters:\n");
    printf("  seq=%llu since=%s%s reason=\"%s\"\n", (unsigned long long)seq, t,
           retry ? " retry=pending" : "", reason);
    return 0;
}

static int route_list(const char *dir, struct cli_ctx *ctx)
{
    struct hdx_routes_conf rc;
    int rcode = hdx_routes_conf_load(ctx->conf.path, ctx->conf.dir, &rc);
    (void)dir;
    if (rcode != HDX_OK) {
        fprintf(stderr, "hdx route: %s\n", rc.error);
        hdx_routes_conf_free(&rc);
        return 1;
    }
    if (!rc.n) printf("no routes in %s\n", ctx->conf.path);
    for (size_t i = 0; i < rc.n; i++) {
        const struct hdx_route_conf *r = rc.r[i];
        char m[4200];
        if (r->match)
            hdx_match_describe(r->match, m, sizeof(m));
        else
            snprintf(m, sizeof(m), "%s", r->valid ? "*" : r->match_text);
        printf("%s to=%s order=%s lanes=%d max_inflight=%d transforms=%zu match=\"%s\" kind=%s "
               "%s%s\n",
               r->name, r->to[0] ? r->to : "-", r->order == HDX_ORDER_PATIENT ? "patient" : "route",
               r->lanes, r->max_inflight, r->ntransforms, m,
               r->kind == HDX_ROUTE_DICOM ? "dicom" : "hl7v2",
               r->valid ? "valid" : "invalid: ", r->valid ? "" : r->error);
    }
    hdx_routes_conf_free(&rc);
    return 0;
}

/* "key=value" lines of a lane's status file into vals (NULL: absent). */
static int status_get(const char *text, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            const char *v = p + kl + 1, *e = strchr(v, '\n');
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return 1;
        }
    snprintf(out, cap, "-");
    return 0;
}

static int route_status(struct cli_ctx *ctx, const char *name)
{
    struct hdx_routes_conf rc;
    const struct hdx_route_conf *r = NULL;
    int rcode = hdx_routes_conf_load(ctx->conf.path, ctx->conf.dir, &rc), bad = 0;
    if (rcode == HDX_OK)
        for (size_t i = 0; i < rc.n; i++)
            if (!strcmp(rc.r[i]->name, name)) r = rc.r[i];
    if (!r) {
        fprintf(stderr, "hdx route: no route %s in %s\n", name, ctx->conf.path);
        hdx_routes_conf_free(&rc);
        return 1;
    }
    uint64_t last = 0;
    uint8_t chain[HDX_HASH_LEN];
    (void)hdx_store_last(ctx->store, &last, chain, NULL);
    printf("route %s to=%s order=%s lanes=%d max_inflight=%d kind=%s config=%s\n", r->name, r->to,
           r->order == HDX_ORDER_PATIENT ? "patient" : "route", r->lanes, r->max_inflight,
           r->kind == HDX_ROUTE_DICOM ? "dicom" : "hl7v2", r->valid ? "valid" : r->error);
    printf("log: last_seq=%llu\n", (unsigned long long)last);
    for (int k = 0; k < r->lanes; k++) {
        char path[HDX_PATH_MAX + 64], st[64], err[256], text_buf[4096] = "";
        struct hdx_cursor_pos pos = {0};
        if (snprintf(path, sizeof(path), "%s/routes/%s/lane-%d.cursor", ctx->conf.dir, r->name,
                     k) >= (int)sizeof(path))
            continue;
        int crc = hdx_cursor_read(path, &pos);
        if (snprintf(path, sizeof(path), "%s/routes/%s/lane-%d.%s", ctx->conf.dir, r->name, k,
                     HDX_ROUTE_STATUS_FILE) >= (int)sizeof(path))
            continue;
        uint8_t *text = NULL;
        size_t tlen = 0;
        if (hdx_read_file(path, sizeof(text_buf) - 1, &text, &tlen) == HDX_OK) {
            memcpy(text_buf, text, tlen);
            text_buf[tlen] = 0;
            free(text);
        }
        if (crc != HDX_OK) {
            printf("lane %d: %s\n", k,
                   crc == HDX_E_NOTFOUND ? "never started (no cursor yet)" : "cursor damaged");
            bad |= crc != HDX_E_NOTFOUND;
            continue;
        }
        status_get(text_buf, "state", st, sizeof(st));
        status_get(text_buf, "last_error", err, sizeof(err));
        char inflight[24], queued[24], sent[24], acked[24], dead[24], late[24], oldest[24],
            failures[24], written[24];
        status_get(text_buf, "inflight", inflight, sizeof(inflight));
        status_get(text_buf, "queued", queued, sizeof(queued));
        status_get(text_buf, "sent", sent, sizeof(sent));
        status_get(text_buf, "acked", acked, sizeof(acked));
        status_get(text_buf, "dead", dead, sizeof(dead));
        status_get(text_buf, "late_acks", late, sizeof(late));
        status_get(text_buf, "oldest_pending_us", oldest, sizeof(oldest));
        status_get(text_buf, "failures", failures, sizeof(failures));
        status_get(text_buf, "written_us", written, sizeof(written));
        char p50[16], p99[16];
        status_get(text_buf, "latency_p50_ms", p50, sizeof(p50));
        status_get(text_buf, "latency_p99_ms", p99, sizeof(p99));
        long long old_us = atoll(oldest), wr_us = atoll(written);
        double lag_s = old_us > 0 ? (double)(hdx_now_us() - old_us) / 1e6 : 0.0;
        double age_s = wr_us > 0 ? (double)(hdx_now_us() - wr_us) / 1e6 : -1.0;
        printf("lane %d: state=%s cursor=%llu behind=%llu lag_s=%.1f inflight=%s queued=%s "
               "sent=%s acked=%s dead=%s late_acks=%s failures=%s latency_p50_ms=%s "
               "latency_p99_ms=%s status_age_s=%.1f last_error=\"%s\"\n",
               k, age_s > 5 && strcmp(st, "stopped") ? "unknown (hdxd not running?)" : st,
               (unsigned long long)pos.delivered,
               (unsigned long long)(last > pos.delivered ? last - pos.delivered : 0), lag_s,
               inflight, queued, sent, acked, dead, late, failures, p50, p99, age_s, err);
        bad |= atoi(failures) > 0;
    }
    struct dead_print d = {0};
    rcode = hdx_route_dead_letters(ctx->store, ctx->kr, r->name, print_dead, &d);
    hdx_routes_conf_free(&rc);
    if (rcode != HDX_OK) {
        fprintf(stderr, "hdx route: cannot read the dead letters: %s\n", hdx_strerror(rcode));
        return 1;
    }
    if (!d.n) printf("dead letters: none\n");
    return bad || d.n ? 1 : 0;
}

struct dead_list {
    uint64_t *seq;
    size_t n, cap;
};

static int collect_dead(void *ctx, uint64_t seq, const char *reason, int64_t dead_us, int retry)
{
    struct dead_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint64_t *p = realloc(l->seq, cap * sizeof(*p));
        if (!p) return 1;
        l->seq = p;
        l->cap = cap;
    }
    l->seq[l->n++] = seq;
    return 0;
}

static int route_act(const char *dir, struct cli_ctx *ctx, enum hdx_admin_op op, const char *name,
                     const char *seqtext)
{
    struct dead_list dl = {0};
    struct cli_ctx ro; /* records are read through a reader: hdxd may hold the segments */
    if (cli_open(dir, 0, &ro) != 0) return 1;
    int rcode = hdx_route_dead_letters(ro.store, ro.kr, name, collect_dead, &dl);
    cli_close(&ro);
    if (rcode != HDX_OK) {
        fprintf(stderr, "hdx route: cannot read the dead letters: %s\n", hdx_strerror(rcode));
        free(dl.seq);
        return 1;
    }
    uint64_t one = 0;
    int all = !strcmp(seqtext, "--all");
    if (!all && hdx_parse_u64(seqtext, &one) != 0) {
        free(dl.seq);
        return usage();
    }
    if (all && op != HDX_ADMIN_ROUTE_RETRY) {
        free(dl.seq);
        return usage();
    }
    size_t done = 0;
    for (size_t i = 0; i < dl.n; i++) {
        if (!all && dl.seq[i] != one) continue;
        struct hdx_admin a = {.op = op, .seq = dl.seq[i]};
        char why[256];
        snprintf(a.name, sizeof(a.name), "%s", name);
        if (cli_admin_run(dir, ctx, &a, why, sizeof(why)) != HDX_OK) {
            fprintf(stderr, "hdx route: %s\n", why);
            free(dl.seq);
            return 1;
        }
        printf("%s seq=%llu route=%s\n", op == HDX_ADMIN_ROUTE_RETRY ? "retry" : "skipped",
               (unsigned long long)dl.seq[i], name);
        done++;
    }
    free(dl.seq);
    if (!done) {
        if (all) {
            printf("no dead letters on route %s\n", name);
            return 0;
        }
        fprintf(stderr, "hdx route: seq %s is not a dead letter of route %s\n", seqtext, name);
        return 1;
    }
    return 0;
}

int cmd_route(int argc, char **argv)
{
    const char *dir = NULL, *pos[3] = {0};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(route_usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            dir = argv[++i];
        } else if (npos < 3 && (argv[i][0] != '-' || !strcmp(argv[i], "--all"))) {
            pos[npos++] = argv[i];
        } else {
            return usage();
        }
    }
    if (!dir || !npos) return usage();
    const char *sub = pos[0];
    int want = !strcmp(sub, "list") ? 1 : !strcmp(sub, "status") ? 2 : 3;
    int rw = want == 3; /* retry and skip queue an admin statement */
    if ((want == 1 && npos != 1) || (want == 2 && npos != 2) ||
        (want == 3 && (npos != 3 || (strcmp(sub, "retry") && strcmp(sub, "skip")))))
        return usage();
    if (want > 1 && !hdx_route_name_valid(pos[1])) {
        fprintf(stderr, "hdx route: '%s' is not a route name\n", pos[1]);
        return 2;
    }
    struct cli_ctx ctx;
    if (cli_open(dir, rw, &ctx) != 0) return 1;
    int rc = want == 1 ? route_list(dir, &ctx)
             : want == 2
                 ? route_status(&ctx, pos[1])
                 : route_act(dir, &ctx,
                             !strcmp(sub, "retry") ? HDX_ADMIN_ROUTE_RETRY : HDX_ADMIN_ROUTE_SKIP,
                             pos[1], pos[2]);
    cli_close(&ctx);
    return rc;
}
