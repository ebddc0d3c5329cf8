/* fuzz_admin: libFuzzer entry point for the admin statement parser (commit/admin.h), which
 * reads bodies from the store's admin_queue and from admin records (hdx verify). Beyond "no
 * crash": whatever parses is canonical, so formatting it gives back exactly the input bytes,
 * and the registry accepts it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "commit/admin.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hdx_admin a, b;
    char out[HDX_ADMIN_BODY_MAX + 1];
    /* a heap copy of exactly size bytes: ASan catches any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    if (hdx_admin_parse(copy, size, &a) == HDX_OK) {
        int n = hdx_admin_format(&a, out, sizeof(out));
        if (n < 0 || (size_t)n != size || memcmp(out, copy, size) != 0) abort();
        if (hdx_admin_parse((const uint8_t *)out, (size_t)n, &b) != HDX_OK || b.op != a.op ||
            strcmp(a.name, b.name) != 0)
            abort();
        if (!hdx_admin_type(a.op)) abort();
        struct hdx_registry r = {0};
        if (hdx_registry_apply(&r, &a, 1) != HDX_OK) abort();
        hdx_registry_free(&r);
    } else {
        /* a refusal leaves nothing behind */
        static const struct hdx_admin zero;
        if (memcmp(&a, &zero, sizeof(a)) != 0) abort();
    }
    free(copy);
    return 0;
}
