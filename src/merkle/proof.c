/* proof: checking a proof file of `hdx proof` (docs/LOG-FORMAT.md), offline, with only the
 * log's public key. The input is untrusted: size, every hex length and the path length are
 * checked before use; duplicate keys are refused. */
#include "merkle/proof.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"

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

int hdx_proof_check(const char *json, size_t len, EVP_PKEY *pub, char *msg, size_t cap)
{
    const char *why;
    json_t *p = NULL;
    if (len > HDX_PROOF_MAX)
        why = "proof larger than 1 MiB";
    else if (!(p = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(p))
        why = "not a JSON object";
    else {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && !strcmp(type, "inclusion"))
            why = check_inclusion(p, pub, msg, cap);
        else if (type && !strcmp(type, "consistency"))
            why = check_consistency(p, pub, msg, cap);
        else
            why = "unknown proof type";
    }
    json_decref(p);
    if (why) {
        snprintf(msg, cap, "invalid: %s", why);
        return HDX_E_INTEGRITY;
    }
    return HDX_OK;
}

static int parse_sth_obj(json_t *obj, struct hdx_sth *sth)
{
    return json_is_object(obj) && !get_u64(obj, "tree_size", &sth->tree_size) &&
                   !get_u64(obj, "timestamp_ms", &sth->timestamp_ms) &&
                   !get_hex(obj, "root_hash", sth->root, 32) &&
                   !get_hex(obj, "signature", sth->signature, HDX_STH_SIG_LEN)
               ? HDX_OK
               : HDX_E_INVAL;
}

int hdx_sth_parse_json(const char *json, size_t len, struct hdx_sth *out)
{
    json_t *o = len <= HDX_PROOF_MAX ? json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    int rc = o ? parse_sth_obj(o, out) : HDX_E_INVAL;
    json_decref(o);
    return rc;
}

int hdx_proof_roots(const char *json, size_t len, uint8_t old_root[32], struct hdx_sth *head)
{
    json_t *o = len <= HDX_PROOF_MAX ? json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    int rc = o && !get_hex(o, "old_root", old_root, 32)
                 ? parse_sth_obj(json_object_get(o, "sth"), head)
                 : HDX_E_INVAL;
    json_decref(o);
    return rc;
}

int hdx_proof_leaf(const char *json, size_t len, uint64_t *leaf_index, uint8_t leaf_hash[32])
{
    json_t *o = len <= HDX_PROOF_MAX ? json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    int rc = o && !get_u64(o, "leaf_index", leaf_index) && !get_hex(o, "leaf_hash", leaf_hash, 32)
                 ? HDX_OK
                 : HDX_E_INVAL;
    json_decref(o);
    return rc;
}
