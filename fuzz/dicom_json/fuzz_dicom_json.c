/* fuzz_dicom_json: libFuzzer entry point for hdx_dcmjson_dataset (dicom/dcmjson.h), the DICOM
 * JSON Model writer of WADO-RS metadata and QIDO-RS answers.
 * Input: byte 0 picks the syntax (% 3: Implicit VR LE, Explicit VR LE, Explicit VR BE), bit 2
 * a bulk data URI, bits 3-4 inline_max (0, 16, 4096, unbounded), bit 5 skip_group_lengths;
 * the rest is the data set, copied to an exact-size heap buffer.
 * Properties: a refusal is HDX_E_INVAL, HDX_E_TOOBIG or HDX_E_NOMEM with no object and a
 * non-empty printable reason; an acceptance has why "" and an object whose keys are 8
 * upper-case hex digits, each attribute an object with a two-letter upper-case "vr" and at
 * most one of Value (a non-empty array), InlineBinary, BulkDataURI (under the URI given); SQ
 * values are arrays of objects holding attributes of the same shape; the JSON dumps and
 * parses back equal; the conversion is deterministic; what tight walker limits (depth 2,
 * value 256, 64 elements) or a small max_bytes accept, the defaults accept with the same
 * text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"
#include "dicom/dataset.h"
#include "dicom/dcmjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

#define BULK "https://x/bulk"

static int is_key(const char *k)
{
    if (strlen(k) != 8) return 0;
    for (int i = 0; i < 8; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'A' && k[i] <= 'F'))) return 0;
    return 1;
}

static void check_dataset(json_t *ds, int bulk, unsigned depth)
{
    const char *k;
    json_t *a;

    CHECK(json_is_object(ds) && depth < 300);
    json_object_foreach(ds, k, a)
    {
        CHECK(is_key(k));
        CHECK(json_is_object(a));
        json_t *vr = json_object_get(a, "vr"), *v = json_object_get(a, "Value");
        json_t *ib = json_object_get(a, "InlineBinary"), *bu = json_object_get(a, "BulkDataURI");
        CHECK(json_is_string(vr) && json_string_length(vr) == 2);
        const char *s = json_string_value(vr);
        CHECK(s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z');
        CHECK((v != NULL) + (ib != NULL) + (bu != NULL) <= 1);
        CHECK(json_object_size(a) == 1u + (v != NULL) + (ib != NULL) + (bu != NULL));
        if (bu != NULL)
            CHECK(bulk && json_is_string(bu) &&
                  strncmp(json_string_value(bu), BULK "/", sizeof BULK) == 0);
        if (ib != NULL) CHECK(json_is_string(ib) && json_string_length(ib) % 4 == 0);
        if (v != NULL) {
            CHECK(json_is_array(v) && json_array_size(v) > 0);
            if (strcmp(s, "SQ") == 0) {
                size_t i;
                json_t *it;
                json_array_foreach(v, i, it) check_dataset(it, bulk, depth + 1);
            }
        }
    }
}

static int run(const uint8_t *p, size_t n, enum hdx_ds_syntax syn, const struct hdx_dcmjson_opts *o,
               char **text)
{
    json_t *j = (json_t *)&j; /* must be overwritten */
    char why[96];
    memset(why, 'x', sizeof why);
    int rc = hdx_dcmjson_dataset(p, n, syn, o, &j, why, sizeof why);
    *text = NULL;
    CHECK(memchr(why, '\0', sizeof why) != NULL);
    if (rc != HDX_OK) {
        CHECK(rc == HDX_E_INVAL || rc == HDX_E_TOOBIG || rc == HDX_E_NOMEM);
        CHECK(j == NULL && why[0] != '\0');
        for (const char *c = why; *c; c++)
            CHECK(*c >= 0x20 && *c < 0x7f);
        return rc;
    }
    CHECK(j != NULL && why[0] == '\0');
    check_dataset(j, o->bulk_uri != NULL, 0);
    *text = json_dumps(j, JSON_COMPACT);
    CHECK(*text != NULL);
    json_error_t err;
    json_t *back = json_loads(*text, 0, &err);
    CHECK(back != NULL && json_equal(back, j));
    json_decref(back);
    json_decref(j);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum hdx_ds_syntax syns[] = {HDX_DS_IMPLICIT_LE, HDX_DS_EXPLICIT_LE,
                                              HDX_DS_EXPLICIT_BE};
    static const size_t inl[] = {0, 16, 4096, SIZE_MAX};
    if (size < 1) return 0;
    enum hdx_ds_syntax syn = syns[data[0] % 3];
    struct hdx_dcmjson_opts o = {NULL, inl[(data[0] >> 3) & 3], (data[0] & 4) ? BULK : NULL,
                                 (data[0] >> 5) & 1, 0};
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    if (!p) return 0;
    if (n) memcpy(p, data + 1, n);

    char *t1, *t2, *t3;
    int rc = run(p, n, syn, &o, &t1);
    CHECK(run(p, n, syn, &o, &t2) == rc);
    CHECK((t1 == NULL) == (t2 == NULL) && (t1 == NULL || strcmp(t1, t2) == 0));
    free(t2);

    struct hdx_ds_limits tight = {2, 256, 64};
    struct hdx_dcmjson_opts ot = o;
    ot.lim = &tight;
    if (run(p, n, syn, &ot, &t3) == HDX_OK) {
        CHECK(rc == HDX_OK && strcmp(t1, t3) == 0);
    }
    free(t3);
    ot = o;
    ot.max_bytes = 2048;
    if (run(p, n, syn, &ot, &t3) == HDX_OK) CHECK(rc == HDX_OK && strcmp(t1, t3) == 0);
    free(t3);
    free(t1);
    free(p);
    return 0;
}
