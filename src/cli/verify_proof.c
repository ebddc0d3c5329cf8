/* hdx verify-proof: checks a proof printed by `hdx proof` offline, with only the log's public
 * key: the signed tree head's Ed25519 signature, then the RFC 9162 proof against the signed
 * root. The file is untrusted input: its size, every hex length and the path length are
 * checked before use. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"

#define PROOF_FILE_MAX (1u << 20)

static const char verify_proof_usage[] =
    "usage: hdx verify-proof --pubkey FILE PROOF.json\n"
    "Checks a proof from `hdx proof` with only the log's public key (DIR/log.pub.pem): the\n"
    "Ed25519 signature of the tree head(s) it carries, and the RFC 9162 inclusion or\n"
    "consistency proof against the signed root(s). Prints 'valid ...' and exits 0, or\n"
    "'invalid: REASON' and exits 1. Format: docs/LOG-FORMAT.md.\n";

static int get_hex(json_t *obj, const char *key, uint8_t *out, size_t len)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && strlen(s) == 2 * len && hdx_unhex(s, out, len) == 0 ? 0 : -1;
}

static int get_u64(json_t *obj, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Reads and checks a signed tree head object; NULL or JSON null gives 1 (absent). */
static int read_sth(json_t *obj, EVP_PKEY *pub, struct hdx_sth *sth, const char **why)
{
    if (!obj || json_is_null(obj)) return 1;
    if (!json_is_object(obj) || get_u64(obj, "tree_size", &sth->tree_size) ||
        get_u64(obj, "timestamp_ms", &sth->timestamp_ms) ||
        get_hex(obj, "root_hash", sth->root, 32) ||
        get_hex(obj, "signature", sth->signature, HDX_STH_SIG_LEN)) {
        *why = "malformed signed tree head";
        return -1;
    }
    if (hdx_sth_verify(sth, pub) != HDX_OK) {
        *why = "tree head signature invalid";
        return -1;
    }
    return 0;
}

static int read_path(json_t *proof, uint8_t path[][32], size_t *n)
{
    json_t *arr = json_object_get(proof, "path");
    if (!json_is_array(arr) || json_array_size(arr) > MERKLE_MAX_PATH) return -1;
    *n = json_array_size(arr);
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || strlen(s) != 64 || hdx_unhex(s, path[i], 32) != 0) return -1;
    }
    return 0;
}

static const char *check_inclusion(json_t *p, EVP_PKEY *pub, char *ok, size_t cap)
{
    struct hdx_sth sth;
    uint8_t leaf[32], path[MERKLE_MAX_PATH][32];
    uint64_t index, size;
    size_t n;
    const char *why = NULL;
    if (get_u64(p, "leaf_index", &index) || get_u64(p, "tree_size", &size) ||
        get_hex(p, "leaf_hash", leaf, 32) || read_path(p, path, &n))
        return "malformed inclusion proof";
    if (read_sth(json_object_get(p, "sth"), pub, &sth, &why) != 0)
        return why ? why : "no signed tree head";
    if (sth.tree_size != size) return "proof and tree head disagree on the tree size";
    if (merkle_verify_inclusion(leaf, index, size, (const uint8_t(*)[32])path, n, sth.root) !=
        HDX_OK)
        return "inclusion proof does not lead to the signed root";
    snprintf(ok, cap, "valid inclusion leaf_index=%llu tree_size=%llu", (unsigned long long)index,
             (unsigned long long)size);
    return NULL;
}

static const char *check_consistency(json_t *p, EVP_PKEY *pub, char *ok, size_t cap)
{
    struct hdx_sth sth, old_sth;
    uint8_t old_root[32], path[MERKLE_MAX_PATH][32];
    uint64_t old_size, new_size;
    size_t n;
    const char *why = NULL;
    if (get_u64(p, "old_size", &old_size) || get_u64(p, "new_size", &new_size) ||
        get_hex(p, "old_root", old_root, 32) || read_path(p, path, &n))
        return "malformed consistency proof";
    if (read_sth(json_object_get(p, "sth"), pub, &sth, &why) != 0)
        return why ? why : "no signed tree head";
    if (sth.tree_size != new_size) return "proof and tree head disagree on the tree size";
    int old_signed = read_sth(json_object_get(p, "old_sth"), pub, &old_sth, &why);
    if (old_signed < 0) return why;
    if (old_signed == 0 &&
        (old_sth.tree_size != old_size || CRYPTO_memcmp(old_sth.root, old_root, 32) != 0))
        return "old tree head does not match the old root";
    if (merkle_verify_consistency(old_size, new_size, old_root, sth.root,
                                  (const uint8_t(*)[32])path, n) != HDX_OK)
        return "consistency proof does not join the two roots";
    char hex[65];
    hdx_hex(old_root, 32, hex);
    snprintf(ok, cap, "valid consistency old_size=%llu new_size=%llu old_root=%s old_signed=%s",
             (unsigned long long)old_size, (unsigned long long)new_size, hex,
             old_signed == 0 ? "yes" : "no");
    return NULL;
}

int cmd_verify_proof(int argc, char **argv)
{
    const char *pubkey = NULL, *file = NULL, *why = NULL;
    char ok[256];
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
    json_t *p = NULL;
    if (hdx_logkey_load_public(pubkey, &pub) != HDX_OK)
        why = "cannot read the Ed25519 public key";
    else if (hdx_read_file(file, PROOF_FILE_MAX, &data, &len) != HDX_OK)
        why = "cannot read the proof";
    else if (!(p = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL)) ||
             !json_is_object(p))
        why = "not a JSON object";
    else {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && !strcmp(type, "inclusion"))
            why = check_inclusion(p, pub, ok, sizeof(ok));
        else if (type && !strcmp(type, "consistency"))
            why = check_consistency(p, pub, ok, sizeof(ok));
        else
            why = "unknown proof type";
    }
    json_decref(p);
    free(data);
    EVP_PKEY_free(pub);
    if (why) {
        printf("invalid: %s\n", why);
        return 1;
    }
    printf("%s\n", ok);
    return 0;
}
