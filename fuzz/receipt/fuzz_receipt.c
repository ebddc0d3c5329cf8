/* fuzz_receipt: libFuzzer entry point for the receipt parsers (merkle/receipt.h): the JSON line
 * of a receipt file (`hdx receipt check`) and the ZRC fields of an ACK (`hdx send`); the input
 * is also split at '|' into ZRC-1..8. Beyond "no crash": a parsed receipt must print and parse
 * back to the same receipt, and must never verify under a key made here (no input can carry
 * its signature). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"
#include "merkle/receipt.h"

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

static void check_parsed(const struct hdx_receipt *r)
{
    char seg[HDX_RECEIPT_SEGMENT_MAX], js[HDX_RECEIPT_JSON_MAX];
    struct hdx_receipt back;
    if (hdx_receipt_verify(r, key) == HDX_OK) __builtin_trap();
    int n = hdx_receipt_json(r, NULL, js, sizeof(js));
    if (n <= 0 || hdx_receipt_parse_json(js, (size_t)n, &back, NULL, 0) != HDX_OK ||
        memcmp(&back, r, sizeof(back)) != 0)
        __builtin_trap();
    if (hdx_receipt_segment(r, '|', seg, sizeof(seg)) <= 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hdx_receipt r;
    char cid[64];
    if (hdx_receipt_parse_json((const char *)data, size, &r, cid, sizeof(cid)) == HDX_OK) {
        if (!memchr(cid, 0, sizeof(cid))) __builtin_trap();
        check_parsed(&r);
    }
    if (size > 4096) return 0;
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    const char *f[8] = {0};
    char *p = copy;
    for (int i = 0; i < 8 && p; i++) {
        f[i] = p;
        p = strchr(p, '|');
        if (p) *p++ = 0;
    }
    if (hdx_receipt_from_fields(f, &r) == HDX_OK) check_parsed(&r);
    free(copy);
    return 0;
}
