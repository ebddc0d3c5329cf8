/* fuzz_subreq: libFuzzer entry point for the lines an authenticated client sends on the
 * subscription port: the SUB request (bus/bus.h hdx_bus_parse_request) and the log requests
 * before it (store/logproof.h hdx_logreq_parse). The SUB parser gets the raw input and its
 * length, embedded NULs included, exactly as sub_read passes what evbuffer_readln returned;
 * libFuzzer's buffer is exactly that long, so a read past it shows under ASan. Beyond "no
 * crash", it traps when an accepted request holds a byte outside printable ASCII, a run of
 * spaces, a filter value with a space or control byte, a string not terminated inside its
 * array, a filter value that is not in the line, or after= that maps to the "live" sentinel;
 * a kind other than hl7 or dicom; when a refusal gives no reason, one outside the fixed list (a
 * reason must never echo client bytes: it is logged), or leaves a filter behind; or when an
 * accepted log request is not exactly the canonical text of what was parsed. */
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
    if (hdx_kek_create(path) != HDX_OK || hdx_keyring_open(path, &kr, NULL, 0) != HDX_OK ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, wrapped) != HDX_OK)
        abort();
    unlink(path);
    return 0;
}

static void check_token(const char *s, size_t cap)
{
    CHECK(memchr(s, 0, cap) != NULL);
    for (; *s; s++)
        CHECK((unsigned char)*s > ' ' && (unsigned char)*s < 0x7f);
}

/* An accepted filter value must be one of the line's tokens, "<key>=<value>" whole. */
static void check_in_line(const uint8_t *data, size_t size, const char *key, const char *val)
{
    char tok[128];
    if (!val[0]) return;
    int n = snprintf(tok, sizeof(tok), " %s=%s", key, val);
    CHECK(n > 0 && (size_t)n < sizeof(tok));
    const uint8_t *at = memmem(data, size, tok, (size_t)n);
    CHECK(at != NULL);
    size_t end = (size_t)(at - data) + (size_t)n;
    CHECK(end == size || data[end] == ' ');
}

static void check_accepted(const uint8_t *data, size_t size, const struct hdx_bus_filter *f,
                           uint64_t after)
{
    CHECK(size >= 3 && memcmp(data, "SUB", 3) == 0);
    for (size_t i = 0; i < size; i++)
        CHECK(data[i] >= 0x20 && data[i] < 0x7f);
    CHECK(memmem(data, size, "  ", 2) == NULL);
    CHECK(data[size - 1] != ' ');
    check_token(f->type, sizeof(f->type));
    check_token(f->sender, sizeof(f->sender));
    check_in_line(data, size, "type", f->type);
    check_in_line(data, size, "sender", f->sender);
    CHECK(f->has_patient == 0 || f->has_patient == 1);
    CHECK(f->has_patient == (memmem(data, size, " patient=", 9) != NULL));
    /* kind= was given exactly when the filter names one, and it is one of the two */
    CHECK(f->kind == 0 || f->kind == HDX_KIND_HL7V2 || f->kind == HDX_KIND_DICOM);
    CHECK((f->kind != 0) == (memmem(data, size, " kind=", 6) != NULL));
    /* after= was given exactly when the cursor is not the live sentinel. */
    CHECK((after == UINT64_MAX) == (memmem(data, size, " after=", 7) == NULL));
}

static void check_refused(const char *why, size_t cap, const struct hdx_bus_filter *f,
                          uint64_t after)
{
    static const char *const reasons[] = {
        "request too long",
        "control character in request",
        "expected SUB",
        "parameters must be separated by one space",
        "parameters must be printable ASCII",
        "unknown parameter",
        "duplicate parameter after",
        "duplicate parameter type",
        "duplicate parameter sender",
        "duplicate parameter patient",
        "duplicate parameter kind",
        "kind must be hl7 or dicom",
        "after must be a decimal sequence number",
        "parameter value empty or too long",
    };
    static const struct hdx_bus_filter zero;
    int known = 0;
    CHECK(memchr(why, 0, cap) != NULL && why[0] != 0);
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        known |= strcmp(why, reasons[i]) == 0;
    CHECK(known);
    CHECK(memcmp(f, &zero, sizeof(zero)) == 0);
    CHECK(after == UINT64_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[2048], why[128];
    struct hdx_bus_filter f;
    uint64_t after;
    if (size >= sizeof(line)) return 0;
    /* hdx_logreq_parse takes a C string (sub_read hands it the line as one). */
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
    why[0] = 0;
    if (hdx_bus_parse_request((const char *)data, size, kr, &f, &after, why, sizeof(why)) == HDX_OK)
        check_accepted(data, size, &f, after);
    else
        check_refused(why, sizeof(why), &f, after);
    return 0;
}
