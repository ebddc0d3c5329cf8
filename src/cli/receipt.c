/* hdx receipt check: holds the log to the receipts it signed. Each receipt (a line of the
 * file `hdx send` keeps) must carry the log key's signature; then the record must be in the
 * log: an inclusion proof of exactly that leaf hash at exactly that position, against a
 * signed tree head. Proofs come from a running hdxd (subscription port, INCLUSION request,
 * any enrolled role) or, for an operator, straight from the data directory's store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/proof.h"
#include "merkle/receipt.h"
#include "merkle/sth.h"
#include "store/logproof.h"

static const char receipt_usage[] =
    "usage: hdx receipt check [-d DIR] [--cert C --key K [--to HOST:PORT] [--ca CA]]\n"
    "                         [--pubkey FILE] [--wait SECONDS] RECEIPTS...\n"
    "Checks every receipt in each RECEIPTS file (JSON lines, as `hdx send` keeps them):\n"
    "  1. its signature, with the log's public key (--pubkey, default DIR/log.pub.pem);\n"
    "  2. that the log holds the record: an inclusion proof of the receipt's leaf hash at its\n"
    "     sequence number, against the newest signed tree head.\n"
    "With --cert/--key the proofs come from hdxd's subscription port (--to, default DIR's\n"
    "sub.listen; any enrolled role); without them from the store in DIR (operators).\n"
    "Prints per receipt 'ok seq=N tree_size=M', 'pending seq=N ...' (not yet under a signed\n"
    "head; retry in a second) or 'FAIL seq=N REASON'. A record missing from a head signed more\n"
    "than a second after its receipt is a FAIL: the log broke its promise. --wait keeps\n"
    "asking, up to SECONDS, until pending receipts are under a signed head (one is made\n"
    "within a second of a commit), so it can run right after `hdx send`.\n"
    "Exit 0 when every receipt is proven, 3 on any FAIL, 4 when some are only pending,\n"
    "1 on a setup or connection failure, 2 on a usage error.\n";

#define RECEIPT_FILE_MAX (1u << 30)

struct checker {
    EVP_PKEY *pub;
    int remote;
    struct cli_ctx ctx;
    struct cli_reader rd;
    struct hdx_sth head; /* the newest head when the check (or this retry) started */
    int have_head;
    unsigned long ok, pending, failed;
    int64_t wait_until_us; /* --wait: pending receipts are kept in `later` until then */
    struct later {
        struct hdx_receipt r;
        char cid[200];
    } * later;
    size_t nlater, later_cap;
};

/* One request line, one answer line: "WANT json" gives 0, "NO reason" gives 1 with the
 * reason in line, anything else -1. */
static int ask(struct checker *k, const char *req, const char *want, char *line, size_t cap)
{
    size_t wl = strlen(want);
    if (cli_write(&k->rd.conn, req, strlen(req)) != 0 || cli_read_line(&k->rd, line, cap) != 0)
        return -1;
    int no = !strncmp(line, "NO ", 3);
    if (!no && (strncmp(line, want, wl) != 0 || line[wl] != ' ')) return -1;
    size_t skip = no ? 3 : wl + 1;
    memmove(line, line + skip, strlen(line + skip) + 1);
    return no;
}

static int fetch_head(struct checker *k)
{
    char line[1024];
    if (!k->remote) {
        int rc = hdx_store_sth_latest(k->ctx.store, &k->head);
        k->have_head = rc == HDX_OK;
        return rc == HDX_OK || rc == HDX_E_NOTFOUND ? 0 : -1;
    }
    int rc = ask(k, "STH\n", "STH", line, sizeof(line));
    if (rc < 0) return -1;
    k->have_head = rc == 0 && hdx_sth_parse_json(line, strlen(line), &k->head) == HDX_OK &&
                   hdx_sth_verify(&k->head, k->pub) == HDX_OK;
    return 0;
}

/* 0 with the proof in json, 1 with hdxd's reason in json, -1 when the source failed. */
static int fetch_proof(struct checker *k, uint64_t seq, char *json, size_t cap)
{
    char req[64], why[200];
    if (!k->remote) {
        int n = hdx_log_inclusion_json(k->ctx.store, seq, json, cap, why, sizeof(why));
        if (n < 0) snprintf(json, cap, "%s", why);
        return n < 0 ? 1 : 0;
    }
    snprintf(req, sizeof(req), "INCLUSION %llu\n", (unsigned long long)seq);
    return ask(k, req, "PROOF", json, cap);
}

static void report(struct checker *k, const char *state, const struct hdx_receipt *r,
                   const char *control_id, const char *detail)
{
    printf("%s seq=%llu", state, (unsigned long long)r->seq);
    if (control_id[0]) printf(" control_id=%s", control_id);
    printf(" %s\n", detail);
    fflush(stdout);
}

static int keep_for_later(struct checker *k, const struct hdx_receipt *r, const char *cid)
{
    if (k->nlater == k->later_cap) {
        size_t cap = k->later_cap ? k->later_cap * 2 : 64;
        struct later *p = realloc(k->later, cap * sizeof(*p));
        if (!p) return -1;
        k->later = p;
        k->later_cap = cap;
    }
    k->later[k->nlater].r = *r;
    snprintf(k->later[k->nlater].cid, sizeof(k->later[0].cid), "%s", cid);
    k->nlater++;
    return 0;
}

/* Returns -1 only when the proof source failed. */
static int check_one(struct checker *k, const struct hdx_receipt *r, const char *control_id)
{
    static char json[2 * HDX_PROOF_JSON_MAX];
    char msg[256], detail[300];
    uint8_t leaf[32];
    uint64_t index;
    if (hdx_receipt_verify(r, k->pub) != HDX_OK) {
        report(k, "FAIL", r, control_id, "receipt signature invalid (not signed by this log)");
        k->failed++;
        return 0;
    }
    int rc = fetch_proof(k, r->seq, json, sizeof(json));
    if (rc < 0) return -1;
    if (rc == 1) {
        /* No proof: fine while no head signed a second after the receipt exists yet. */
        if (k->have_head && r->seq > k->head.tree_size &&
            (int64_t)k->head.timestamp_ms * 1000 > r->time_us + 1000000) {
            snprintf(detail, sizeof(detail),
                     "not in the tree head signed %lld ms after the receipt (tree_size=%llu)",
                     (long long)((int64_t)k->head.timestamp_ms - r->time_us / 1000),
                     (unsigned long long)k->head.tree_size);
            report(k, "FAIL", r, control_id, detail);
            k->failed++;
        } else if (r->seq > (k->have_head ? k->head.tree_size : 0)) {
            if (k->wait_until_us && keep_for_later(k, r, control_id) == 0) return 0;
            snprintf(detail, sizeof(detail), "%.200s", json);
            report(k, "pending", r, control_id, detail);
            k->pending++;
        } else {
            snprintf(detail, sizeof(detail), "no inclusion proof: %.200s", json);
            report(k, "FAIL", r, control_id, detail);
            k->failed++;
        }
        return 0;
    }
    const char *why = NULL;
    if (hdx_proof_check(json, strlen(json), k->pub, msg, sizeof(msg)) != HDX_OK)
        why = msg;
    else if (hdx_proof_leaf(json, strlen(json), &index, leaf) != HDX_OK || index != r->seq - 1)
        why = "the proof is for another position";
    else if (CRYPTO_memcmp(leaf, r->leaf_hash, 32) != 0)
        why = "the log holds another record at this sequence number";
    if (why) {
        report(k, "FAIL", r, control_id, why);
        k->failed++;
        return 0;
    }
    const char *ts = strstr(msg, "tree_size=");
    snprintf(detail, sizeof(detail), "%s", ts ? ts : "included");
    report(k, "ok", r, control_id, detail);
    k->ok++;
    return 0;
}

static int check_file(struct checker *k, const char *file)
{
    uint8_t *data;
    size_t len;
    if (hdx_read_file(file, RECEIPT_FILE_MAX, &data, &len) != HDX_OK) {
        fprintf(stderr, "hdx receipt: cannot read %s\n", file);
        return -1;
    }
    int rc = 0;
    unsigned long lineno = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        const uint8_t *nl = memchr(data + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (data + off)) : len - off;
        struct hdx_receipt r;
        char cid[200];
        lineno++;
        if (n &&
            hdx_receipt_parse_json((const char *)data + off, n, &r, cid, sizeof(cid)) != HDX_OK) {
            printf("FAIL %s:%lu malformed receipt\n", file, lineno);
            k->failed++;
        } else if (n) {
            rc = check_one(k, &r, cid);
        }
        off += n + 1;
    }
    free(data);
    return rc;
}

/* --wait: asks again for the receipts still pending, every 250 ms, with a fresh head; those
 * still pending at the deadline are reported as such. */
static int retry_pending(struct checker *k)
{
    while (k->nlater) {
        int last = hdx_monotonic_us() >= k->wait_until_us;
        struct later *batch = k->later;
        size_t n = k->nlater;
        struct timespec pause = {0, 250000000};
        if (!last) nanosleep(&pause, NULL);
        k->later = NULL;
        k->nlater = k->later_cap = 0;
        if (last) k->wait_until_us = 0; /* report, do not keep */
        int rc = fetch_head(k);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = check_one(k, &batch[i].r, batch[i].cid);
        free(batch);
        if (rc != 0) return rc;
    }
    return 0;
}

static int receipt_check(int argc, char **argv)
{
    struct cli_client_opts o = {0};
    const char *pubkey = NULL;
    const char *files[256];
    long wait_s = 0;
    int nfiles = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (cli_client_opt(argc, argv, &i, &o))
            continue;
        else if (!strcmp(a, "--pubkey"))
            pubkey = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--wait"))
            wait_s = atol(cli_arg(argc, argv, &i));
        else if (a[0] != '-' && nfiles < 256)
            files[nfiles++] = a;
        else {
            int help = !strcmp(a, "--help");
            fputs(receipt_usage, help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    const char *dir = o.dir, *cert = o.cert, *key = o.key, *to = o.to, *ca = o.ca;
    char pub_path[HDX_PATH_MAX], ca_path[HDX_PATH_MAX], err[512];
    int remote = cert || key;
    if (!nfiles || (remote && (!cert || !key)) || (!remote && !dir) || (!pubkey && !dir) ||
        wait_s < 0 || wait_s > 86400) {
        fputs(receipt_usage, stderr);
        return 2;
    }
    if (!pubkey && hdx_path(pub_path, sizeof(pub_path), dir, "log.pub.pem") == 0) pubkey = pub_path;
    struct checker *k = calloc(1, sizeof(*k));
    if (!k) return 1;
    k->remote = remote;
    if (wait_s) k->wait_until_us = hdx_monotonic_us() + wait_s * 1000000;
    int rc = 0;
    if (!pubkey || hdx_logkey_load_public(pubkey, &k->pub) != HDX_OK) {
        fprintf(stderr, "hdx receipt: cannot read the log's public key %s\n",
                pubkey ? pubkey : "(none)");
        rc = 1;
    } else if (remote) {
        struct hdx_conf conf;
        if (cli_client_conf("receipt", dir, &conf, &ca, ca_path, sizeof(ca_path)))
            rc = 1;
        else if (!to && !(to = conf.sub_listen)[0])
            rc = 1;
        else if (!ca)
            rc = 1, fprintf(stderr, "hdx receipt: --ca or -d DIR is needed\n");
        else if (cli_connect(to, ca, cert, key, 0, 10000, &k->rd.conn, err, sizeof(err)) != 0)
            rc = 1, fprintf(stderr, "hdx receipt: %s\n", err);
    } else if (cli_open(dir, 0, &k->ctx) != 0) {
        rc = 1;
    }
    if (rc == 0 && fetch_head(k) != 0) rc = -1;
    for (int i = 0; i < nfiles && rc == 0; i++)
        rc = check_file(k, files[i]);
    if (rc == 0) rc = retry_pending(k);
    if (rc < 0) {
        fprintf(stderr, "hdx receipt: the proof source failed (%s)\n",
                remote ? "connection lost" : "store error");
        rc = 1;
    }
    if (rc == 0) {
        fprintf(stderr, "hdx receipt: %lu proven, %lu pending, %lu failed\n", k->ok, k->pending,
                k->failed);
        rc = k->failed ? 3 : k->pending ? 4 : 0;
    }
    if (remote)
        cli_disconnect(&k->rd.conn);
    else if (k->ctx.store)
        cli_close(&k->ctx);
    EVP_PKEY_free(k->pub);
    free(k->later);
    free(k);
    return rc;
}

int cmd_receipt(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "check")) return receipt_check(argc, argv);
    int help = argc >= 2 && !strcmp(argv[1], "--help");
    fputs(receipt_usage, help ? stdout : stderr);
    return help ? 0 : 2;
}
