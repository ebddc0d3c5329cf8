/* fuzz_checkpoint: libFuzzer entry point for what hdxd does with a frame that may be a device
 * checkpoint (proto/checkpoint.h): HL7 parse, the checkpoint test, the ZCK reader and the
 * verdict. Beyond "no crash": a key made here signs nothing the input can carry, so the verdict
 * is never "verified", and a checkpoint that parses prints back to a segment that parses to
 * the same checkpoint. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"
#include "proto/checkpoint.h"
#include "proto/hl7.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t pub[32], binding[32];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    size_t len = 32;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k || EVP_PKEY_get_raw_public_key(k, pub, &len) != 1) abort();
    EVP_PKEY_free(k);
    memset(binding, 7, sizeof(binding));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hl7_msg m, m2;
    struct hl7_error e;
    struct hl7_limits lim;
    struct hdx_checkpoint c, back;
    struct hdx_stream s;
    hl7_limits_default(&lim);
    memset(&m, 0, sizeof(m));
    if (hl7_parse(data, size, &lim, &m, &e) != 0) {
        hl7_msg_free(&m);
        return 0;
    }
    (void)hdx_is_checkpoint(&m);
    if (hdx_checkpoint_parse(&m, &c) == HDX_OK) {
        hdx_stream_init(&s);
        (void)hdx_stream_add(&s, data, size);
        if (hdx_checkpoint_check(&s, &c, binding, pub) == HDX_CKPT_OK) __builtin_trap();
        char msg[512], seg[HDX_CKPT_SEGMENT_MAX];
        if (hdx_checkpoint_segment(&c, seg, sizeof(seg)) < 0) __builtin_trap();
        int n = snprintf(msg, sizeof(msg), "MSH|^~\\&|A|B|C|D|1||ZCK^Z01|1|P|2.5.1\r%s", seg);
        memset(&m2, 0, sizeof(m2));
        if (hl7_parse((const uint8_t *)msg, (size_t)n, &lim, &m2, &e) != 0 ||
            hdx_checkpoint_parse(&m2, &back) != HDX_OK || memcmp(&back, &c, sizeof(c)) != 0)
            __builtin_trap();
        hl7_msg_free(&m2);
    }
    /* A stored checkpoint record's marks (recovery and hdx verify read them back). */
    int verified;
    uint64_t *seqs;
    size_t n;
    if (hdx_checkpoint_marks(&m, &verified, &seqs, &n) == HDX_OK) {
        if (n > HDX_CKPT_MARKS_MAX) __builtin_trap();
        free(seqs);
    } else if (seqs || n) {
        __builtin_trap();
    }
    hl7_msg_free(&m);
    return 0;
}
