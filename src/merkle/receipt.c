#include "merkle/receipt.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"

struct hdx_receipt_batch {
    atomic_uint refs;
    size_t n;
    struct merkle tree;
    uint8_t signature[64];
    struct hdx_receipt_entry *entries;
    uint8_t (*nodes)[32]; /* every complete node, level by level */
    size_t level_off[HDX_RECEIPT_PATH_MAX + 2];
};

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static int entry_hash(const struct hdx_receipt_entry *e, uint8_t out[32])
{
    uint8_t buf[1 + 8 + 8 + 32];
    buf[0] = 0x00;
    put_u64(buf + 1, e->seq);
    put_u64(buf + 9, (uint64_t)e->time_us);
    memcpy(buf + 17, e->leaf_hash, 32);
    return hdx_sha256_once(buf, sizeof(buf), out) == 0 ? HDX_OK : HDX_E_CRYPTO;
}

static void signed_bytes(uint64_t batch_size, const uint8_t root[32],
                         uint8_t out[HDX_RECEIPT_SIGNED_LEN])
{
    memcpy(out, "HDX-RCPT-v1", 11);
    put_u64(out + 11, batch_size);
    memcpy(out + 19, root, 32);
}

static int node_slot(const struct hdx_receipt_batch *b, unsigned level, uint64_t index)
{
    if (level > HDX_RECEIPT_PATH_MAX || index >= (b->n >> level)) return -1;
    return (int)(b->level_off[level] + index);
}

static int batch_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    const struct hdx_receipt_batch *b = ctx;
    int slot = node_slot(b, level, index);
    if (slot < 0) return HDX_E_INVAL;
    memcpy(out, b->nodes[slot], 32);
    return HDX_OK;
}

static int batch_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32])
{
    struct hdx_receipt_batch *b = ctx;
    int slot = node_slot(b, level, index);
    if (slot < 0) return HDX_E_INVAL;
    memcpy(b->nodes[slot], hash, 32);
    return HDX_OK;
}

static void batch_free(struct hdx_receipt_batch *b)
{
    free(b->nodes);
    free(b->entries);
    free(b);
}

struct hdx_receipt_signer {
    unsigned char *sk; /* crypto_sign_SECRETKEYBYTES, sodium_malloc'd */
};

int hdx_receipt_signer_new(EVP_PKEY *log_key, struct hdx_receipt_signer **out)
{
    unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    size_t len = sizeof(seed);
    *out = NULL;
    if (sodium_init() < 0) return HDX_E_CRYPTO;
    struct hdx_receipt_signer *s = calloc(1, sizeof(*s));
    if (!s) return HDX_E_NOMEM;
    int rc = HDX_OK;
    if (!(s->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES)))
        rc = HDX_E_NOMEM;
    else if (EVP_PKEY_get_raw_private_key(log_key, seed, &len) != 1 || len != sizeof(seed) ||
             crypto_sign_seed_keypair(pk, s->sk, seed) != 0)
        rc = HDX_E_CRYPTO;
    sodium_memzero(seed, sizeof(seed));
    if (rc != HDX_OK) {
        hdx_receipt_signer_free(s);
        return rc;
    }
    *out = s;
    return HDX_OK;
}

void hdx_receipt_signer_free(struct hdx_receipt_signer *s)
{
    if (!s) return;
    sodium_free(s->sk);
    free(s);
}

int hdx_receipt_batch_new(const struct hdx_receipt_entry *e, size_t n,
                          const struct hdx_receipt_signer *signer, unsigned refs,
                          struct hdx_receipt_batch **out)
{
    *out = NULL;
    if (!n || n > HDX_RECEIPT_BATCH_MAX || !signer) return HDX_E_INVAL;
    struct hdx_receipt_batch *b = calloc(1, sizeof(*b));
    if (!b) return HDX_E_NOMEM;
    size_t total = 0;
    for (unsigned l = 0; l <= HDX_RECEIPT_PATH_MAX + 1; l++) {
        b->level_off[l] = total;
        total += l <= HDX_RECEIPT_PATH_MAX ? n >> l : 0;
    }
    b->n = n;
    b->nodes = malloc(total * sizeof(*b->nodes));
    b->entries = malloc(n * sizeof(*e));
    if (!b->nodes || !b->entries) {
        batch_free(b);
        return HDX_E_NOMEM;
    }
    memcpy(b->entries, e, n * sizeof(*e));
    struct merkle_store st = {batch_get, batch_put, b};
    /* The tree starts empty; it only fills slots of complete nodes, which all fit. */
    b->n = 0;
    int rc = merkle_open(&b->tree, 0, &st);
    b->n = n;
    for (size_t i = 0; i < n && rc == HDX_OK; i++) {
        uint8_t h[32];
        rc = entry_hash(&e[i], h);
        if (rc == HDX_OK) rc = merkle_append(&b->tree, h);
    }
    uint8_t root[32], msg[HDX_RECEIPT_SIGNED_LEN];
    if (rc == HDX_OK) rc = merkle_root(&b->tree, root);
    if (rc == HDX_OK) {
        signed_bytes(n, root, msg);
        if (crypto_sign_detached(b->signature, NULL, msg, sizeof(msg), signer->sk) != 0)
            rc = HDX_E_CRYPTO;
    }
    if (rc != HDX_OK) {
        batch_free(b);
        return rc;
    }
    atomic_init(&b->refs, refs);
    *out = b;
    return HDX_OK;
}

void hdx_receipt_batch_release(struct hdx_receipt_batch *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) batch_free(b);
}

int hdx_receipt_get(const struct hdx_receipt_batch *b, size_t index, struct hdx_receipt *out)
{
    if (index >= b->n) return HDX_E_INVAL;
    memset(out, 0, sizeof(*out));
    out->seq = b->entries[index].seq;
    out->time_us = b->entries[index].time_us;
    memcpy(out->leaf_hash, b->entries[index].leaf_hash, 32);
    out->index = index;
    out->batch_size = b->n;
    memcpy(out->signature, b->signature, sizeof(out->signature));
    return merkle_inclusion_proof(&b->tree, index, b->n, out->path, HDX_RECEIPT_PATH_MAX,
                                  &out->path_len);
}

int hdx_receipt_verify(const struct hdx_receipt *r, EVP_PKEY *log_pub)
{
    struct hdx_receipt_entry e = {r->seq, r->time_us, {0}};
    uint8_t h[32], node[32], msg[HDX_RECEIPT_SIGNED_LEN];
    uint64_t idx = r->index, last = r->batch_size - 1;
    memcpy(e.leaf_hash, r->leaf_hash, 32);
    if (!r->batch_size || r->batch_size > HDX_RECEIPT_BATCH_MAX || r->index >= r->batch_size ||
        r->path_len > HDX_RECEIPT_PATH_MAX || entry_hash(&e, h) != HDX_OK)
        return HDX_E_INTEGRITY;
    /* The root the path leads to (RFC 9162 2.1.3.2 steps 3-5); the signature then decides. */
    memcpy(node, h, 32);
    for (size_t i = 0; i < r->path_len; i++) {
        if (last == 0) return HDX_E_INTEGRITY;
        if ((idx & 1) || idx == last) {
            if (merkle_hash_children(node, r->path[i], node) != HDX_OK) return HDX_E_INTEGRITY;
            if (!(idx & 1))
                while (idx && !(idx & 1)) {
                    idx >>= 1;
                    last >>= 1;
                }
        } else if (merkle_hash_children(node, node, r->path[i]) != HDX_OK) {
            return HDX_E_INTEGRITY;
        }
        idx >>= 1;
        last >>= 1;
    }
    if (last != 0) return HDX_E_INTEGRITY;
    signed_bytes(r->batch_size, node, msg);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, log_pub) == 1 &&
             EVP_DigestVerify(ctx, r->signature, sizeof(r->signature), msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? HDX_OK : HDX_E_INTEGRITY;
}

int hdx_receipt_segment(const struct hdx_receipt *r, char fs, char *out, size_t cap)
{
    char leaf[65], sig[129], path[HDX_RECEIPT_PATH_MAX * 64 + 1];
    if (r->path_len > HDX_RECEIPT_PATH_MAX) return HDX_E_INVAL;
    hdx_hex(r->leaf_hash, 32, leaf);
    hdx_hex(r->signature, 64, sig);
    path[0] = 0;
    for (size_t i = 0; i < r->path_len; i++)
        hdx_hex(r->path[i], 32, path + 64 * i);
    int n = snprintf(
        out, cap, "ZRC%c1%c%" PRIu64 "%c%" PRId64 "%c%s%c%" PRIu64 "%c%" PRIu64 "%c%s%c%s\r", fs,
        fs, r->seq, fs, r->time_us, fs, leaf, fs, r->index, fs, r->batch_size, fs, path, fs, sig);
    return n > 0 && (size_t)n < cap ? n : HDX_E_TOOBIG;
}

static int check_shape(const struct hdx_receipt *r)
{
    return r->seq && r->time_us >= 0 && r->batch_size && r->batch_size <= HDX_RECEIPT_BATCH_MAX &&
                   r->index < r->batch_size
               ? HDX_OK
               : HDX_E_INVAL;
}

int hdx_receipt_from_fields(const char *const fields[8], struct hdx_receipt *out)
{
    uint64_t t;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 8; i++)
        if (!fields[i]) return HDX_E_INVAL;
    size_t plen = strlen(fields[6]);
    if (strcmp(fields[0], "1") != 0 || hdx_parse_u64(fields[1], &out->seq) ||
        hdx_parse_u64(fields[2], &t) || t > INT64_MAX || strlen(fields[3]) != 64 ||
        hdx_unhex(fields[3], out->leaf_hash, 32) || hdx_parse_u64(fields[4], &out->index) ||
        hdx_parse_u64(fields[5], &out->batch_size) || plen % 64 ||
        plen / 64 > HDX_RECEIPT_PATH_MAX || strlen(fields[7]) != 128 ||
        hdx_unhex(fields[7], out->signature, 64))
        return HDX_E_INVAL;
    out->time_us = (int64_t)t;
    out->path_len = plen / 64;
    for (size_t i = 0; i < out->path_len; i++) {
        char h[65];
        memcpy(h, fields[6] + 64 * i, 64);
        h[64] = 0;
        if (hdx_unhex(h, out->path[i], 32)) return HDX_E_INVAL;
    }
    return check_shape(out);
}

int hdx_receipt_json(const struct hdx_receipt *r, const char *control_id, char *out, size_t cap)
{
    char hex[129];
    json_t *o = json_object(), *path = json_array();
    int rc = HDX_E_NOMEM;
    if (!o || !path || r->path_len > HDX_RECEIPT_PATH_MAX) goto done;
    json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
    json_object_set_new(o, "time_us", json_integer((json_int_t)r->time_us));
    hdx_hex(r->leaf_hash, 32, hex);
    json_object_set_new(o, "leaf_hash", json_string(hex));
    json_object_set_new(o, "index", json_integer((json_int_t)r->index));
    json_object_set_new(o, "batch_size", json_integer((json_int_t)r->batch_size));
    for (size_t i = 0; i < r->path_len; i++) {
        hdx_hex(r->path[i], 32, hex);
        json_array_append_new(path, json_string(hex));
    }
    json_object_set(o, "path", path);
    hdx_hex(r->signature, 64, hex);
    json_object_set_new(o, "signature", json_string(hex));
    if (control_id) json_object_set_new(o, "control_id", json_string(control_id));
    size_t n = json_dumpb(o, out, cap, JSON_COMPACT | JSON_PRESERVE_ORDER);
    rc = n > 0 && n < cap ? (int)n : HDX_E_TOOBIG;
    if (rc > 0) out[n] = 0;
done:
    json_decref(path);
    json_decref(o);
    return rc;
}

static int get_int(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hex(json_t *o, const char *key, uint8_t *out, size_t len)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && strlen(s) == 2 * len && hdx_unhex(s, out, len) == 0 ? 0 : -1;
}

int hdx_receipt_parse_json(const char *json, size_t len, struct hdx_receipt *out, char *control_id,
                           size_t control_cap)
{
    uint64_t t;
    memset(out, 0, sizeof(*out));
    if (control_id && control_cap) control_id[0] = 0;
    if (len > HDX_RECEIPT_JSON_MAX) return HDX_E_TOOBIG;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *path = o ? json_object_get(o, "path") : NULL;
    int rc = HDX_E_INVAL;
    if (!json_is_object(o) || get_int(o, "seq", &out->seq) || get_int(o, "time_us", &t) ||
        get_hex(o, "leaf_hash", out->leaf_hash, 32) || get_int(o, "index", &out->index) ||
        get_int(o, "batch_size", &out->batch_size) || get_hex(o, "signature", out->signature, 64) ||
        !json_is_array(path) || json_array_size(path) > HDX_RECEIPT_PATH_MAX)
        goto done;
    out->time_us = (int64_t)t;
    out->path_len = json_array_size(path);
    for (size_t i = 0; i < out->path_len; i++) {
        const char *s = json_string_value(json_array_get(path, i));
        if (!s || strlen(s) != 64 || hdx_unhex(s, out->path[i], 32)) goto done;
    }
    json_t *cid = json_object_get(o, "control_id");
    if (cid && !json_is_string(cid)) goto done;
    if (cid && control_id && control_cap)
        snprintf(control_id, control_cap, "%s", json_string_value(cid));
    rc = check_shape(out);
done:
    json_decref(o);
    return rc;
}
