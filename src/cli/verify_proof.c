/* hdx verify-proof: checks a proof printed by `hdx proof` offline, with only the log's public
 * key (merkle/proof.h does the checking). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/proof.h"
#include "merkle/sth.h"

static const char verify_proof_usage[] =
    "usage: hdx verify-proof --pubkey FILE PROOF.json\n"
    "Checks a proof from `hdx proof` with only the log's public key (DIR/log.pub.pem): the\n"
    "Ed25519 signature of the tree head(s) it carries, and the RFC 9162 inclusion or\n"
    "consistency proof against the signed root(s). Prints 'valid ...' and exits 0, or\n"
    "'invalid: REASON' and exits 1. Format: docs/LOG-FORMAT.md.\n";

int cmd_verify_proof(int argc, char **argv)
{
    const char *pubkey = NULL, *file = NULL;
    char msg[256] = "invalid: cannot read the proof";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pubkey"))
            pubkey = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help")) {
            fputs(verify_proof_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fputs(verify_proof_usage, stderr);
            return 2;
        }
    }
    if (!pubkey || !file) {
        fputs(verify_proof_usage, stderr);
        return 2;
    }
    EVP_PKEY *pub = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = HDX_E_INTEGRITY;
    if (hdx_logkey_load_public(pubkey, &pub) != HDX_OK)
        snprintf(msg, sizeof(msg), "invalid: cannot read the Ed25519 public key");
    else if (hdx_read_file(file, HDX_PROOF_MAX, &data, &len) == HDX_E_TOOBIG)
        snprintf(msg, sizeof(msg), "invalid: proof larger than 1 MiB");
    else if (data)
        rc = hdx_proof_check((const char *)data, len, pub, msg, sizeof(msg));
    free(data);
    EVP_PKEY_free(pub);
    printf("%s\n", msg);
    return rc == HDX_OK ? 0 : 1;
}
