#include "store/record.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/err.h"

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

size_t hdx_record_header(const struct hdx_record *r, uint8_t *out, size_t cap)
{
    size_t slen = strlen(r->sender), tlen = strlen(r->type);
    if (slen > HDX_SENDER_MAX || tlen > HDX_TYPE_MAX || cap < HDX_HEADER_MAX) return 0;
    uint8_t *p = out;
    memcpy(p, "HDXR", 4);
    p += 4;
    *p++ = HDX_RECORD_VERSION;
    p = put_be(p, r->seq, 8);
    p = put_be(p, (uint64_t)r->time_us, 8);
    *p++ = r->kind;
    p = put_be(p, r->key_id, 4);
    p = put_be(p, slen, 2);
    memcpy(p, r->sender, slen);
    p += slen;
    p = put_be(p, tlen, 2);
    memcpy(p, r->type, tlen);
    p += tlen;
    memcpy(p, r->patient, HDX_BLIND_LEN);
    p += HDX_BLIND_LEN;
    memcpy(p, r->dedup, HDX_BLIND_LEN);
    p += HDX_BLIND_LEN;
    return (size_t)(p - out);
}

void hdx_record_leaf_hash(const struct hdx_record *r, uint8_t out[HDX_HASH_LEN])
{
    static const uint8_t leaf_prefix = 0x00;
    uint8_t header[HDX_HEADER_MAX], ctlen[4];
    size_t hlen = hdx_record_header(r, header, sizeof(header));
    put_be(ctlen, r->ct_len, 4);
    const void *parts[] = {&leaf_prefix, header, r->nonce, ctlen, r->ct};
    const size_t lens[] = {1, hlen, HDX_NONCE_LEN, 4, r->ct_len};
    hdx_sha256(out, 5, parts, lens);
}

void hdx_record_chain(const uint8_t prev[HDX_HASH_LEN], const uint8_t leaf[HDX_HASH_LEN],
                      uint8_t out[HDX_HASH_LEN])
{
    const void *parts[] = {prev, leaf};
    const size_t lens[] = {HDX_HASH_LEN, HDX_HASH_LEN};
    hdx_sha256(out, 2, parts, lens);
}

int hdx_record_has_patient(const struct hdx_record *r)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    return memcmp(r->patient, zero, HDX_BLIND_LEN) != 0;
}

const char *hdx_kind_name(int kind)
{
    switch (kind) {
    case HDX_KIND_HL7V2:
        return "hl7v2";
    case HDX_KIND_FHIR:
        return "fhir";
    case HDX_KIND_DICOM:
        return "dicom";
    case HDX_KIND_AUDIT:
        return "audit";
    case HDX_KIND_ADMIN:
        return "admin";
    }
    return "unknown";
}

void hdx_record_clear(struct hdx_record *r)
{
    free((void *)(uintptr_t)r->ct); /* owned here (record.h): const only against rewriting */
    r->ct = NULL;
    r->ct_len = 0;
}

int hdx_record_seal(struct hdx_record *r, const struct hdx_keyring *kr, const uint8_t *pt,
                    size_t pt_len)
{
    uint8_t header[HDX_HEADER_MAX];
    r->key_id = hdx_keyring_current(kr);
    size_t hlen = hdx_record_header(r, header, sizeof(header));
    if (!hlen) return HDX_E_INVAL;
    hdx_record_clear(r);
    uint8_t *ct = malloc(pt_len + HDX_TAG_LEN);
    if (!ct) return HDX_E_NOMEM;
    r->ct = ct;
    r->ct_len = pt_len + HDX_TAG_LEN;
    return hdx_seal(kr, r->key_id, header, hlen, pt, pt_len, r->nonce, ct);
}

int hdx_record_seal_leaf(struct hdx_record *r, const struct hdx_keyring *kr, struct hdx_keyctx *kc,
                         const uint8_t *pt, size_t pt_len, uint8_t **leaf, size_t *leaf_len)
{
    static const uint8_t leaf_prefix = 0x00;
    *leaf = NULL;
    *leaf_len = 0;
    r->key_id = hdx_keyring_current(kr);
    if (pt_len > UINT32_MAX - HDX_TAG_LEN) return HDX_E_TOOBIG;
    uint8_t *buf = malloc(HDX_HEADER_MAX + HDX_NONCE_LEN + 4 + pt_len + HDX_TAG_LEN);
    if (!buf) return HDX_E_NOMEM;
    size_t hlen = hdx_record_header(r, buf, HDX_HEADER_MAX);
    if (!hlen) {
        free(buf);
        return HDX_E_INVAL;
    }
    uint8_t *nonce = buf + hlen, *ct = nonce + HDX_NONCE_LEN + 4;
    r->ct_len = pt_len + HDX_TAG_LEN;
    put_be(nonce + HDX_NONCE_LEN, r->ct_len, 4);
    int rc = hdx_keyctx_seal(kc, r->key_id, buf, hlen, pt, pt_len, nonce, ct);
    if (rc != HDX_OK) {
        free(buf);
        r->ct_len = 0;
        return rc;
    }
    memcpy(r->nonce, nonce, HDX_NONCE_LEN);
    r->ct = ct;
    size_t len = (size_t)(ct - buf) + r->ct_len;
    const void *parts[] = {&leaf_prefix, buf};
    const size_t lens[] = {1, len};
    hdx_keyctx_sha256(kc, r->leaf_hash, 2, parts, lens);
    *leaf = buf;
    *leaf_len = len;
    return HDX_OK;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

int hdx_record_from_leaf(const uint8_t *leaf, size_t len, struct hdx_record *r)
{
    memset(r, 0, sizeof(*r));
    /* Every length is checked against what is left, by subtraction. */
    size_t fixed = 4 + 1 + 8 + 8 + 1 + 4 + 2;
    if (len < fixed || memcmp(leaf, "HDXR", 4) != 0 || leaf[4] != HDX_RECORD_VERSION)
        return HDX_E_INTEGRITY;
    const uint8_t *p = leaf + 5, *end = leaf + len;
    r->seq = get_be(p, 8);
    r->time_us = (int64_t)get_be(p + 8, 8);
    r->kind = p[16];
    r->key_id = (uint32_t)get_be(p + 17, 4);
    size_t slen = (size_t)get_be(p + 21, 2);
    p += 23;
    if (slen > HDX_SENDER_MAX || (size_t)(end - p) < slen + 2) return HDX_E_INTEGRITY;
    memcpy(r->sender, p, slen);
    p += slen;
    size_t tlen = (size_t)get_be(p, 2);
    p += 2;
    if (tlen > HDX_TYPE_MAX || (size_t)(end - p) < tlen) return HDX_E_INTEGRITY;
    memcpy(r->type, p, tlen);
    p += tlen;
    if (memchr(r->sender, 0, slen) || memchr(r->type, 0, tlen)) return HDX_E_INTEGRITY;
    if ((size_t)(end - p) < 2 * HDX_BLIND_LEN + HDX_NONCE_LEN + 4) return HDX_E_INTEGRITY;
    memcpy(r->patient, p, HDX_BLIND_LEN);
    memcpy(r->dedup, p + HDX_BLIND_LEN, HDX_BLIND_LEN);
    p += 2 * HDX_BLIND_LEN;
    memcpy(r->nonce, p, HDX_NONCE_LEN);
    p += HDX_NONCE_LEN;
    size_t ct_len = (size_t)get_be(p, 4);
    p += 4;
    if ((size_t)(end - p) != ct_len || ct_len < HDX_TAG_LEN) return HDX_E_INTEGRITY;
    r->ct = p;
    r->ct_len = ct_len;
    return HDX_OK;
}

int hdx_record_open(const struct hdx_record *r, const struct hdx_keyring *kr, uint8_t **pt,
                    size_t *pt_len)
{
    uint8_t header[HDX_HEADER_MAX];
    *pt = NULL;
    *pt_len = 0;
    size_t hlen = hdx_record_header(r, header, sizeof(header));
    if (!hlen || r->ct_len < HDX_TAG_LEN) return HDX_E_INTEGRITY;
    uint8_t *buf = malloc(r->ct_len - HDX_TAG_LEN + 1);
    if (!buf) return HDX_E_NOMEM;
    int rc = hdx_open(kr, r->key_id, header, hlen, r->nonce, r->ct, r->ct_len, buf);
    if (rc != HDX_OK) {
        free(buf);
        return rc;
    }
    buf[r->ct_len - HDX_TAG_LEN] = 0;
    *pt = buf;
    *pt_len = r->ct_len - HDX_TAG_LEN;
    return HDX_OK;
}

int hdx_record_open_into(const struct hdx_record *r, struct hdx_keyctx *kc, uint8_t *pt, size_t cap,
                         size_t *pt_len)
{
    uint8_t header[HDX_HEADER_MAX];
    *pt_len = 0;
    size_t hlen = hdx_record_header(r, header, sizeof(header));
    if (!hlen || r->ct_len < HDX_TAG_LEN) return HDX_E_INTEGRITY;
    size_t n = r->ct_len - HDX_TAG_LEN;
    if (cap < n + 1) return HDX_E_TOOBIG;
    int rc = hdx_keyctx_open(kc, r->key_id, header, hlen, r->nonce, r->ct, r->ct_len, pt);
    if (rc != HDX_OK) return rc;
    pt[n] = 0;
    *pt_len = n;
    return HDX_OK;
}
