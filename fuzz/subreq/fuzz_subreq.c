/* fuzz_subreq: libFuzzer entry point for the subscription request line that an authenticated
 * subscriber sends (bus/bus.h hdx_bus_parse_request). Beyond "no crash", it traps when an
 * accepted request yields a filter value with a byte that could break a header (space or
 * control byte) or a string that is not terminated inside its array. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static struct hdx_keyring *kr;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[] = "/tmp/hdx-fuzz-kek-XXXXXX";
    uint8_t wrapped[HDX_WRAPPED_LEN];
    int fd = mkstemp(path);
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
    if (hdx_bus_parse_request(line, kr, &f, &after, why, sizeof(why)) == HDX_OK) {
        check_token(f.type, sizeof(f.type));
        check_token(f.sender, sizeof(f.sender));
        CHECK(f.has_patient == 0 || f.has_patient == 1);
    } else {
        CHECK(memchr(why, 0, sizeof(why)) != NULL && why[0] != 0);
    }
    return 0;
}
