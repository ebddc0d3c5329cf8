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
#include "store/logproof.h"

static const char proof_usage[] =
    "usage: hdx proof inclusion SEQ -d DIR\n"
    "       hdx proof consistency OLD_SIZE NEW_SIZE -d DIR\n"
    "inclusion: proves record SEQ (leaf index SEQ-1) is in the tree of the newest signed tree\n"
    "  head; fails if that head does not cover SEQ yet (retry after a second).\n"
    "consistency: proves the tree of size OLD_SIZE is a prefix of the tree of size NEW_SIZE;\n"
    "  NEW_SIZE must be the size of a signed tree head (hdx sth -d DIR --all lists them); the\n"
    "  head of OLD_SIZE is included when there is one.\n"
    "Output: one JSON object (docs/LOG-FORMAT.md); check it with hdx verify-proof.\n";

static int emit(int n, const char *json, const char *why)
{
    if (n < 0) {
        fprintf(stderr, "hdx proof: %s\n", why);
        return 1;
    }
    printf("%s\n", json);
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
    char json[HDX_PROOF_JSON_MAX], why[160];
    int n = incl ? hdx_log_inclusion_json(ctx.store, a, json, sizeof(json), why, sizeof(why))
                 : hdx_log_consistency_json(ctx.store, a, b, json, sizeof(json), why, sizeof(why));
    int rc = emit(n, json, why);
    cli_close(&ctx);
    return rc;
}
