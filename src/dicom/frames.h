/* frames: the bulk data WADO-RS serves, pure: one frame of a data set's pixel data (PS3.18
 * 10.4.1.1.5), and one attribute's value by the path a BulkDataURI names (dicom/dcmjson.h).
 * The data set is walked once (dicom/dataset.h, its limits); the frame is found from Rows,
 * Columns, Samples per Pixel, Bits Allocated and Number of Frames (top-level):
 *  - native pixel data: frame k (from 1) is bytes (k-1)*size .. k*size of (7FE0,0010), size
 *    = Rows * Columns * Samples * Bits Allocated / 8, as stored (byte order of the syntax);
 *    Bits Allocated that is not a multiple of 8 (packed 1-bit frames) is refused;
 *  - encapsulated pixel data (PS3.5 A.4): with one frame, every fragment after the Basic
 *    Offset Table in order; with as many fragments as frames, fragment k; otherwise the
 *    fragments the Basic Offset Table places in frame k; without a usable table, refused.
 * Never decodes, never transcodes. Untrusted bytes are read only through the walker, every
 * product of the attributes is checked for overflow and against what is there.
 * Thread: any. */
#ifndef HDX_DICOM_FRAMES_H
#define HDX_DICOM_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/dataset.h"

#define HDX_FRAMES_MAX 100000 /* Number of Frames above this is refused */

/* Frame k (1-based) of p[0..n) in syn (encapsulated: the data set of a compressed transfer
 * syntax) into *out (malloc'd, the caller's; wipe it: pixel data is PHI), *nframes the data
 * set's frame count. HDX_OK; HDX_E_NOTFOUND (no pixel data, or k is 0 or past the last
 * frame); HDX_E_INVAL with *why a fixed text (the walker's refusal, attributes missing or out
 * of range, pixel data shorter than its frames, frames that cannot be told apart);
 * HDX_E_NOMEM. */
int hdx_dcm_frame(const uint8_t *p, size_t n, enum hdx_ds_syntax syn, int encapsulated, uint32_t k,
                  uint8_t **out, size_t *out_len, uint32_t *nframes, const char **why);

#define HDX_BULK_DEPTH_MAX 8 /* sequence levels in a bulk data path */

/* A bulk data path: tags[0], items[0], tags[1], items[1], ... tags[depth]: the attribute
 * tags[depth] inside item items[depth-1] (from 0) of sequence tags[depth-1] ... of the
 * top-level sequence tags[0]; depth 0 is a top-level attribute. */
struct hdx_bulk_path {
    uint32_t tags[HDX_BULK_DEPTH_MAX + 1];
    uint32_t items[HDX_BULK_DEPTH_MAX];
    size_t depth;
};

/* "7FE00010" or "00540016/0/00181078" (upper or lower case hex) into *bp. 0, or -1. */
int hdx_bulk_path_parse(const char *s, struct hdx_bulk_path *bp);

/* The value of the attribute at bp in p[0..n) into *out (malloc'd, the caller's; wipe it), in
 * little-endian byte order whatever the syntax (as InlineBinary would carry it). HDX_OK;
 * HDX_E_NOTFOUND (no such attribute, or one without a value: a sequence, encapsulated pixel
 * data, whose bulk data is its frames); HDX_E_INVAL with *why (the walker's refusal);
 * HDX_E_NOMEM. */
int hdx_dcm_bulk(const uint8_t *p, size_t n, enum hdx_ds_syntax syn, const struct hdx_bulk_path *bp,
                 uint8_t **out, size_t *out_len, const char **why);

#endif
