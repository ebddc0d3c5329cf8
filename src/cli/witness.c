/* hdx witness: an external auditor in one command. Polls a running hdxd's signed tree heads
 * over the subscription port, checks each head's signature with the log's public key and that
 * each new tree extends the last one it saw (RFC 9162 consistency proof), and raises an
 * alert on a fork (same size, another root), a rollback (smaller tree) or an inconsistent
 * proof. With --state the last verified head survives restarts of the witness. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/proof.h"
#include "merkle/sth.h"
#include "store/logproof.h"

static const char witness_usage[] =
    "usage: hdx witness -d DIR --cert C --key K [--to HOST:PORT] [--pubkey FILE]\n"
    "                   [--state FILE] [--interval MS] [--count N]\n"
    "Polls hdxd's newest signed tree head every MS milliseconds (default 1000), N times\n"
    "(default 0: until interrupted), with a certificate of role subscriber or gateway.\n"
    "Each head must carry the log key's signature (--pubkey, default DIR/log.pub.pem) and\n"
    "extend the previous one: a larger tree needs a valid consistency proof from the old root\n"
    "the witness holds. Prints 'ok tree_size=N ...' per poll, or 'ALERT fork|rollback|\n"
    "inconsistent|bad-signature ...' and exits 3. --state FILE keeps the last verified head\n"
    "(the 122-byte head file format) across runs. Exit 0 when every poll was consistent,\n"
    "1 on a connection or setup failure, 2 on a usage error, 3 on an alert.\n";

struct witness {
    struct cli_reader rd;
    EVP_PKEY *pub;
    int have_prev;
    struct hdx_sth prev;
};

static int ask(struct witness *w, const char *req, const char *want, char *line, size_t cap)
{
    size_t wl = strlen(want);
    if (cli_write(&w->rd.conn, req, strlen(req)) != 0 || cli_read_line(&w->rd, line, cap) != 0)
        return -1;
    if (strncmp(line, want, wl) != 0 || line[wl] != ' ') {
        fprintf(stderr, "hdx witness: hdxd answered: %.200s\n", line);
        return -2;
    }
    memmove(line, line + wl + 1, strlen(line + wl + 1) + 1);
    return 0;
}

/* Checks that `head` extends w->prev; returns NULL or the alert text. */
static const char *check_extension(struct witness *w, const struct hdx_sth *head)
{
    char req[96], line[2 * HDX_PROOF_JSON_MAX], msg[256];
    uint8_t old_root[32];
    struct hdx_sth proof_head;
    if (!w->have_prev) return NULL;
    if (head->tree_size < w->prev.tree_size) return "rollback: the tree is smaller than before";
    if (head->tree_size == w->prev.tree_size)
        return CRYPTO_memcmp(head->root, w->prev.root, 32) ? "fork: same size, another root" : NULL;
    snprintf(req, sizeof(req), "CONSISTENCY %llu %llu\n", (unsigned long long)w->prev.tree_size,
             (unsigned long long)head->tree_size);
    if (ask(w, req, "PROOF", line, sizeof(line)) != 0) return "inconsistent: no consistency proof";
    if (hdx_proof_check(line, strlen(line), w->pub, msg, sizeof(msg)) != HDX_OK ||
        hdx_proof_roots(line, strlen(line), old_root, &proof_head) != HDX_OK)
        return "inconsistent: the consistency proof does not verify";
    if (CRYPTO_memcmp(old_root, w->prev.root, 32) != 0)
        return "fork: the log's history differs from the root this witness holds";
    if (CRYPTO_memcmp(proof_head.root, head->root, 32) != 0)
        return "inconsistent: proof and head disagree";
    return NULL;
}

static int poll_once(struct witness *w, const char *state)
{
    char line[1024], hex[65];
    struct hdx_sth head;
    int rc = ask(w, "STH\n", "STH", line, sizeof(line));
    if (rc == -2) return 0; /* no head yet: nothing to check */
    if (rc != 0 || hdx_sth_parse_json(line, strlen(line), &head) != HDX_OK) return -1;
    const char *alert = hdx_sth_verify(&head, w->pub) != HDX_OK
                            ? "bad-signature: the head is not signed by the log key"
                            : check_extension(w, &head);
    hdx_hex(head.root, 32, hex);
    if (alert) {
        printf("ALERT %s tree_size=%llu root=%s\n", alert, (unsigned long long)head.tree_size, hex);
        fflush(stdout);
        return 3;
    }
    printf("ok tree_size=%llu root=%s\n", (unsigned long long)head.tree_size, hex);
    fflush(stdout);
    w->prev = head;
    w->have_prev = 1;
    if (state && hdx_sth_file_write(state, &head) != HDX_OK)
        fprintf(stderr, "hdx witness: cannot write %s\n", state);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int cmd_witness(int argc, char **argv)
{
    struct cli_client_opts o = {0};
    const char *pubkey = NULL, *state = NULL;
    long interval = 1000, count = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_client_opt(argc, argv, &i, &o))
            continue;
        else if (!strcmp(a, "--pubkey"))
            pubkey = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--state"))
            state = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--interval"))
            interval = atol(cli_arg(argc, argv, &i));
        else if (!strcmp(a, "--count"))
            count = atol(cli_arg(argc, argv, &i));
        else {
            int help = !strcmp(a, "--help");
            fputs(witness_usage, help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    const char *dir = o.dir, *cert = o.cert, *key = o.key, *to = o.to, *ca = o.ca;
    struct hdx_conf conf;
    char ca_path[HDX_PATH_MAX], pub_path[HDX_PATH_MAX], err[512];
    if (!dir || !cert || !key || interval < 10 || count < 0) {
        fputs(witness_usage, stderr);
        return 2;
    }
    if (cli_client_conf("witness", dir, &conf, &ca, ca_path, sizeof(ca_path))) return 1;
    if (!to) to = conf.sub_listen;
    if (!pubkey && hdx_path(pub_path, sizeof(pub_path), dir, "log.pub.pem") == 0) pubkey = pub_path;
    struct witness *w = calloc(1, sizeof(*w));
    if (!w || hdx_logkey_load_public(pubkey, &w->pub) != HDX_OK) {
        fprintf(stderr, "hdx witness: cannot read the log's public key %s\n", pubkey);
        free(w);
        return 1;
    }
    if (state && hdx_sth_file_read(state, &w->prev) == HDX_OK) w->have_prev = 1;
    int rc = cli_connect(to, ca, cert, key, 0, 10000, &w->rd.conn, err, sizeof(err)) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "hdx witness: %s\n", err);
    for (long n = 0; rc == 0 && (count == 0 || n < count); n++) {
        rc = poll_once(w, state);
        if (rc < 0) {
            fprintf(stderr, "hdx witness: connection to %s lost\n", to);
            rc = 1;
        }
        if (rc == 0 && (count == 0 || n + 1 < count)) sleep_ms(interval);
    }
    cli_disconnect(&w->rd.conn);
    EVP_PKEY_free(w->pub);
    free(w);
    return rc;
}
