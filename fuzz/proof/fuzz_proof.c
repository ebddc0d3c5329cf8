/* fuzz_proof: libFuzzer entry point for the proof-file checker (merkle/proof.h) and the
 * head/proof parsers the witness applies to hdxd's answers: hdx's JSON readers. A random Ed25519
 * key is made once; beyond "no crash", it traps if the checker ever calls a proof valid (no input
 * can carry a signature of this key) or leaves its message unterminated or empty. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"
#include "merkle/proof.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[256];
    memset(msg, 'x', sizeof(msg));
    int rc = hdx_proof_check((const char *)data, size, key, msg, sizeof(msg));
    struct hdx_sth sth;
    uint8_t old_root[32];
    /* The witness parses hdxd's answers with these two. */
    (void)hdx_sth_parse_json((const char *)data, size, &sth);
    (void)hdx_proof_roots((const char *)data, size, old_root, &sth);
    if (rc == HDX_OK || memchr(msg, 0, sizeof(msg)) == NULL || msg[0] == 0) __builtin_trap();
    return 0;
}
