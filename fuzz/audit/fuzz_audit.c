/* fuzz_audit: hdx_audit_parse (audit/audit.h) on an exact-size heap copy. Whatever parses
 * formats back to exactly the input bytes (the body is canonical); a refusal leaves the view
 * zeroed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int zeroed(const struct hdx_audit_view *v)
{
    static const struct hdx_audit_view z;
    return memcmp(v, &z, sizeof(z)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    struct hdx_audit_view v;
    if (hdx_audit_parse(copy, size, &v) != HDX_OK) {
        if (!zeroed(&v)) abort();
        free(copy);
        return 0;
    }
    /* The token fields are printable tokens; detail is printable. Reformat only when the
     * patient field is absent: the view keeps it as hex text, the format takes bytes. */
    if (strcmp(v.patient, "-") == 0) {
        struct hdx_audit a = {v.event,    v.action, v.outcome, v.reason, v.principal,
                              v.role,     v.source, v.cert,    NULL,     v.first_seq,
                              v.last_seq, v.count,  v.detail};
        char out[HDX_AUDIT_BODY_MAX];
        int n = hdx_audit_format(&a, out, sizeof(out));
        if (n < 0 || (size_t)n != size || memcmp(out, copy, size) != 0) abort();
    }
    free(copy);
    return 0;
}
