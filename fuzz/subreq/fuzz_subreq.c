/* fuzz_subreq: libFuzzer entry point for the lines an authenticated client sends on the
 * subscription port: the SUB request (bus/bus.h hdx_bus_parse_request) and the log requests
 * before it (store/logproof.h hdx_logreq_parse). Beyond "no crash", it traps when an accepted
 * request yields a filter value with a byte that could break a header (space or control
 * byte) or a string that is not terminated inside its array, or when an accepted log request
 * is not exactly the canonical text of what was parsed. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/err.h"
#include "store/logproof.h"
#include "core/util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static struct hdx_keyring *kr;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[256];
    uint8_t wrapped[HDX_WRAPPED_LEN];
    int fd = hdx_mkstemp("hdx-fuzz-kek-", path, sizeof(path));
    (void)argc;
    (void)argv;
    if (fd < 0) abort();
    close(fd);
    unlink(path); /* hdx_kek_create wants to create it itself (O_EXCL) */
    if (hdx_kek_create(path) != HDX_OK || hdx_keyring_open(path, &kr) != HDX_OK ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, wrapped) != HDX_OK)
        abort();
    unlink(path);
    return 0;
}

static void check_token(const char *s, size_t cap)
{
    CHECK(memchr(s, 0, cap) != NULL);
    for (; *s; s++)
        CHECK((unsigned char)*s > ' ');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[2048], why[128];
    struct hdx_bus_filter f;
    uint64_t after;
    if (size >= sizeof(line)) return 0;
    memcpy(line, data, size);
    line[size] = 0;
    struct hdx_logreq req;
    char canon[80];
    switch (hdx_logreq_parse(line, &req)) {
    case HDX_LOGREQ_STH:
        CHECK(!strcmp(line, "STH"));
        break;
    case HDX_LOGREQ_INCLUSION:
        snprintf(canon, sizeof(canon), "INCLUSION %llu", (unsigned long long)req.a);
        CHECK(!strcmp(line, canon));
        break;
    case HDX_LOGREQ_CONSISTENCY:
        snprintf(canon, sizeof(canon), "CONSISTENCY %llu %llu", (unsigned long long)req.a,
                 (unsigned long long)req.b);
        CHECK(!strcmp(line, canon));
        break;
    default:
        CHECK(req.kind == HDX_LOGREQ_NONE);
    }
    if (hdx_bus_parse_request(line, size, kr, &f, &after, why, sizeof(why)) == HDX_OK) {
        check_token(f.type, sizeof(f.type));
        check_token(f.sender, sizeof(f.sender));
        CHECK(f.has_patient == 0 || f.has_patient == 1);
    } else {
        CHECK(memchr(why, 0, sizeof(why)) != NULL && why[0] != 0);
    }
    return 0;
}
