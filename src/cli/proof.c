/* hdx proof: inclusion and consistency proofs of the log as JSON (docs/LOG-FORMAT.md). Each
 * proof carries the signed tree head(s) it is relative to, so `hdx verify-proof` (or any
 * third party) needs only the log's public key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"

static const char proof_usage[] =
    "usage: hdx proof inclusion SEQ -d DIR\n"
    "       hdx proof consistency OLD_SIZE NEW_SIZE -d DIR\n"
    "inclusion: proves record SEQ (leaf index SEQ-1) is in the tree of the newest signed tree\n"
    "  head; fails if that head does not cover SEQ yet (retry after a second).\n"
    "consistency: proves the tree of size OLD_SIZE is a prefix of the tree of size NEW_SIZE;\n"
    "  NEW_SIZE must be the size of a signed tree head (hdx sth -d DIR --all lists them); the\n"
    "  head of OLD_SIZE is included when there is one.\n"
    "Output: one JSON object (docs/LOG-FORMAT.md); check it with hdx verify-proof.\n";

static void put_path(const uint8_t path[][32], size_t n)
{
    char hex[65];
    fputs("\"path\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        hdx_hex(path[i], 32, hex);
        printf("%s\"%s\"", i ? "," : "", hex);
    }
    fputs("]", stdout);
}

static int open_tree(struct cli_ctx *ctx, struct merkle *m, struct merkle_store *ms)
{
    uint64_t last = 0;
    uint8_t chain[32];
    hdx_store_merkle(ctx->store, ms);
    if (hdx_store_last(ctx->store, &last, chain, NULL) != HDX_OK) return HDX_E_STORE;
    return merkle_open(m, last, ms);
}

static int inclusion(struct cli_ctx *ctx, uint64_t seq)
{
    struct merkle m;
    struct merkle_store ms;
    struct hdx_sth sth;
    struct hdx_record r;
    uint8_t path[MERKLE_MAX_PATH][32];
    size_t n = 0;
    char json[512], leaf[65];
    int rc = open_tree(ctx, &m, &ms);
    if (rc == HDX_OK) rc = hdx_store_sth_latest(ctx->store, &sth);
    if (rc == HDX_OK && (seq == 0 || seq > sth.tree_size)) {
        fprintf(stderr, "hdx proof: record %llu is not covered by a signed tree head yet\n",
                (unsigned long long)seq);
        return 1;
    }
    if (rc == HDX_OK) rc = hdx_store_get(ctx->store, seq, &r);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx proof: %s\n", hdx_strerror(rc));
        return 1;
    }
    hdx_hex(r.leaf_hash, 32, leaf);
    hdx_record_clear(&r);
    rc = merkle_inclusion_proof(&m, seq - 1, sth.tree_size, path, MERKLE_MAX_PATH, &n);
    if (rc != HDX_OK || hdx_sth_json(&sth, json, sizeof(json)) < 0) {
        fprintf(stderr, "hdx proof: %s\n", hdx_strerror(rc));
        return 1;
    }
    printf("{\"type\":\"inclusion\",\"seq\":%llu,\"leaf_index\":%llu,\"leaf_hash\":\"%s\","
           "\"tree_size\":%llu,",
           (unsigned long long)seq, (unsigned long long)(seq - 1), leaf,
           (unsigned long long)sth.tree_size);
    put_path(path, n);
    printf(",\"sth\":%s}\n", json);
    return 0;
}

static int consistency(struct cli_ctx *ctx, uint64_t old_size, uint64_t new_size)
{
    struct merkle m;
    struct merkle_store ms;
    struct hdx_sth new_sth, old_sth;
    uint8_t path[MERKLE_MAX_PATH][32], old_root[32];
    size_t n = 0;
    char json[512], old_json[512] = "null", hex[65];
    int rc = open_tree(ctx, &m, &ms);
    if (rc == HDX_OK && hdx_store_sth_at(ctx->store, new_size, &new_sth) != HDX_OK) {
        fprintf(stderr, "hdx proof: no signed tree head of size %llu (hdx sth --all)\n",
                (unsigned long long)new_size);
        return 1;
    }
    if (rc == HDX_OK && hdx_store_sth_at(ctx->store, old_size, &old_sth) == HDX_OK &&
        hdx_sth_json(&old_sth, old_json, sizeof(old_json)) < 0)
        rc = HDX_E_TOOBIG;
    if (rc == HDX_OK) rc = merkle_root_at(&m, old_size, old_root);
    if (rc == HDX_OK)
        rc = merkle_consistency_proof(&m, old_size, new_size, path, MERKLE_MAX_PATH, &n);
    if (rc != HDX_OK || hdx_sth_json(&new_sth, json, sizeof(json)) < 0) {
        fprintf(stderr, "hdx proof: %s\n", hdx_strerror(rc));
        return 1;
    }
    hdx_hex(old_root, 32, hex);
    printf("{\"type\":\"consistency\",\"old_size\":%llu,\"new_size\":%llu,\"old_root\":\"%s\",",
           (unsigned long long)old_size, (unsigned long long)new_size, hex);
    put_path(path, n);
    printf(",\"old_sth\":%s,\"sth\":%s}\n", old_json, json);
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-') return -1;
    *out = strtoull(s, &end, 10);
    return *end ? -1 : 0;
}

int cmd_proof(int argc, char **argv)
{
    const char *dir = NULL, *nums[2] = {NULL, NULL};
    int nn = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (argv[i][0] != '-' && nn < 2)
            nums[nn++] = argv[i];
        else {
            fputs(proof_usage, stderr);
            return 2;
        }
    }
    int incl = argc > 1 && !strcmp(argv[1], "inclusion");
    int cons = argc > 1 && !strcmp(argv[1], "consistency");
    uint64_t a = 0, b = 0;
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        fputs(proof_usage, stdout);
        return 0;
    }
    if (!dir || (!incl && !cons) || parse_u64(nums[0], &a) ||
        (cons && (parse_u64(nums[1], &b) || a == 0 || a > b)) || (incl && (nn != 1 || a == 0))) {
        fputs(proof_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = incl ? inclusion(&ctx, a) : consistency(&ctx, a, b);
    cli_close(&ctx);
    return rc;
}
