/* fuzz_dicom_frames: libFuzzer entry point for the WADO-RS frame finder (dicom/frames.h).
 * Byte 0: the syntax (% 3) and whether the data set is taken as encapsulated (bit 2); byte 1:
 * the frame number asked for (0-255); the rest, on an exact-size heap copy, is the data set.
 * Then hdx_dcm_bulk for a top-level path or one inside a sequence item (byte 1 picks which).
 * Beyond "no crash", it traps on broken promises: a frame or a value is only handed out with
 * HDX_OK, its bytes lie within what the data set could hold, a refusal has a reason, and the
 * same input gives the same answer twice. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const enum hdx_ds_syntax syns[] = {HDX_DS_IMPLICIT_LE, HDX_DS_EXPLICIT_LE,
                                              HDX_DS_EXPLICIT_BE};
    enum hdx_ds_syntax syn = syns[data[0] % 3];
    int encapsulated = (data[0] >> 2) & 1;
    uint32_t k = data[1];
    size_t n = size - 2;
    uint8_t *p = malloc(n ? n : 1);
    if (!p) return 0;
    memcpy(p, data + 2, n);
    uint8_t *out = NULL, *out2 = NULL;
    size_t len = 0, len2 = 0;
    uint32_t nf = 0, nf2 = 0;
    const char *why = NULL, *why2 = NULL;
    int rc = hdx_dcm_frame(p, n, syn, encapsulated, k, &out, &len, &nf, &why);
    CHECK(why != NULL);
    if (rc == HDX_OK) {
        CHECK(out != NULL);
        CHECK(len <= n);
        CHECK(k >= 1 && k <= nf && nf <= HDX_FRAMES_MAX);
    } else {
        CHECK(out == NULL && len == 0);
        CHECK(rc == HDX_E_NOMEM || why[0] != 0);
    }
    /* the bulk data path of a top-level attribute or one in the first item of a sequence */
    struct hdx_bulk_path bp = {.depth = k & 1};
    bp.tags[0] = k & 1 ? 0x00081111 : 0x7FE00010;
    bp.tags[1] = 0x00080100 + (k >> 4);
    uint8_t *bulk = NULL;
    size_t blen = 0;
    const char *bwhy = NULL;
    int brc = hdx_dcm_bulk(p, n, syn, &bp, &bulk, &blen, &bwhy);
    CHECK(bwhy != NULL);
    CHECK(brc == HDX_OK ? bulk != NULL && blen <= n : bulk == NULL && blen == 0);
    free(bulk);
    int rc2 = hdx_dcm_frame(p, n, syn, encapsulated, k, &out2, &len2, &nf2, &why2);
    CHECK(rc2 == rc || rc == HDX_E_NOMEM || rc2 == HDX_E_NOMEM);
    if (rc == HDX_OK && rc2 == HDX_OK) CHECK(len == len2 && nf == nf2 && !memcmp(out, out2, len));
    free(out);
    free(out2);
    free(p);
    return 0;
}
