/* fuzz_dicom_dataset: libFuzzer entry point for the DICOM data-set walker, key extraction,
 * Part 10 header, inflate and DIMSE command sets (dicom/dataset.h, dicom/dimse.h).
 * Byte 0 picks the mode (% 8); the rest, on an exact-size heap copy, is the input:
 *   0-2 walk in Implicit LE / Explicit LE / Explicit BE, default and tight limits
 *   3   extract (byte 1 % 3 picks the syntax, the rest is the data set)
 *   4   file_parse, then inflate when deflated, then extract on the data set
 *   5   dimse_parse; an accepted request gets its response built and parsed back
 *   6   inflate under a small max_out, then walk what came out
 *   7   meta_build from NUL-separated fields, then file_parse of what it built
 * Beyond "no crash", it traps on broken promises: element values inside the input, offsets
 * strictly ascending, depth and element count within the limits, a refusal always with a
 * reason, tight limits never accepting what the defaults refuse, extracted keys terminated
 * and without trailing padding, and response and meta round trips keeping their ids. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/dataset.h"
#include "dicom/dimse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

struct watch {
    const uint8_t *p;
    size_t n, count, last_off;
    const struct hdx_ds_limits *lim;
};

static int watch_visit(void *arg, const struct hdx_ds_elem *e)
{
    struct watch *w = arg;

    CHECK(e->offset < w->n);
    CHECK(w->count == 0 || e->offset > w->last_off);
    w->last_off = e->offset;
    CHECK(++w->count <= w->lim->max_elements);
    CHECK(e->depth <= w->lim->max_depth);
    CHECK(e->vr[2] == '\0');
    if (e->value != NULL) {
        CHECK(e->value >= w->p && e->value_len <= w->n);
        CHECK((size_t)(e->value - w->p) <= w->n - e->value_len);
        CHECK(e->value_len == e->length && e->length <= w->lim->max_value);
    } else {
        CHECK(e->value_len == 0);
    }
    return 0;
}

static int walk_checked(const uint8_t *p, size_t n, enum hdx_ds_syntax syn,
                        const struct hdx_ds_limits *lim)
{
    struct watch w = {p, n, 0, 0, lim};
    struct hdx_ds_error err;
    int rc = hdx_ds_walk(p, n, syn, lim, watch_visit, &w, &err);

    CHECK(rc == HDX_OK || rc == HDX_E_INVAL);
    if (rc == HDX_OK)
        CHECK(err.why == NULL);
    else
        CHECK(err.why != NULL && err.offset <= n);
    return rc;
}

static void walk_both(const uint8_t *p, size_t n, enum hdx_ds_syntax syn)
{
    struct hdx_ds_limits def, tight = {2, 256, 64};

    hdx_ds_limits_default(&def);
    int rd = walk_checked(p, n, syn, &def);
    int rt = walk_checked(p, n, syn, &tight);
    CHECK(!(rt == HDX_OK && rd != HDX_OK));
}

static void check_str(const char *s, size_t size)
{
    size_t len = strnlen(s, size);
    CHECK(len < size);
    CHECK(len == 0 || (s[len - 1] != ' ' && s[len - 1] != '\0'));
}

#define CHECK_KEY(k, f) check_str((k)->f, sizeof(k)->f)

static void check_keys(const struct hdx_dcm_keys *k, int rc)
{
    CHECK_KEY(k, charset);
    CHECK_KEY(k, sop_class);
    CHECK_KEY(k, sop_instance);
    CHECK_KEY(k, study_date);
    CHECK_KEY(k, study_time);
    CHECK_KEY(k, series_date);
    CHECK_KEY(k, accession);
    CHECK_KEY(k, modality);
    CHECK_KEY(k, referring);
    CHECK_KEY(k, study_description);
    CHECK_KEY(k, patient_name);
    CHECK_KEY(k, patient_id);
    CHECK_KEY(k, birth_date);
    CHECK_KEY(k, sex);
    CHECK_KEY(k, study_uid);
    CHECK_KEY(k, series_uid);
    CHECK_KEY(k, study_id);
    CHECK_KEY(k, series_number);
    CHECK_KEY(k, instance_number);
    if (rc != HDX_OK) {
        static const struct hdx_dcm_keys zero;
        CHECK(memcmp(k, &zero, sizeof zero) == 0);
    }
}

static void extract_checked(const uint8_t *p, size_t n, enum hdx_ds_syntax syn)
{
    struct hdx_dcm_keys k;
    struct hdx_ds_error err;
    int rc = hdx_dcm_extract(p, n, syn, NULL, &k, &err);

    CHECK(rc == HDX_OK || rc == HDX_E_INVAL);
    CHECK(rc == HDX_OK ? err.why == NULL : err.why != NULL);
    check_keys(&k, rc);
    /* extract walks everything, so it agrees with a plain walk unless a key was refused. */
    if (rc == HDX_OK) CHECK(hdx_ds_walk(p, n, syn, NULL, NULL, NULL, &err) == HDX_OK);
}

static void file_mode(const uint8_t *p, size_t n)
{
    struct hdx_dcm_file f;
    struct hdx_ds_error err;
    int deflated;

    if (hdx_dcm_file_parse(p, n, &f, &err) != HDX_OK) {
        CHECK(err.why != NULL && f.ts[0] == '\0');
        return;
    }
    CHECK(f.ts[0] != '\0' && f.dataset_off >= 132 && f.dataset_off <= n);
    check_str(f.ts, sizeof f.ts);
    check_str(f.sop_class, sizeof f.sop_class);
    check_str(f.sop_instance, sizeof f.sop_instance);
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(f.ts, &deflated);
    if (!deflated) {
        extract_checked(p + f.dataset_off, n - f.dataset_off, syn);
        return;
    }
    uint8_t *out;
    size_t out_len;
    if (hdx_ds_inflate(p + f.dataset_off, n - f.dataset_off, 1u << 20, &out, &out_len) == HDX_OK) {
        CHECK(out_len <= 1u << 20);
        extract_checked(out, out_len, syn);
        free(out);
    }
}

static void dimse_mode(const uint8_t *p, size_t n)
{
    struct hdx_dimse_cmd c, back;
    const char *why;
    uint8_t rsp[512];

    if (hdx_dimse_parse(p, n, &c, &why) != HDX_OK) {
        CHECK(why != NULL && c.command == 0 && !c.has_command);
        return;
    }
    CHECK(why == NULL && c.has_command && c.has_data_set_type);
    check_str(c.affected_class, sizeof c.affected_class);
    check_str(c.affected_instance, sizeof c.affected_instance);
    if ((c.command & 0x8000) != 0) return;
    CHECK(c.has_message_id || c.command == HDX_C_CANCEL_RQ);
    uint16_t rsp_cmd = (uint16_t)(c.command | 0x8000);
    size_t len = hdx_dimse_build_rsp(rsp_cmd, c.message_id, c.affected_class, c.affected_instance,
                                     0x0000, 0, "fuzz", rsp, sizeof rsp);
    CHECK(len > 0);
    CHECK(hdx_dimse_parse(rsp, len, &back, &why) == HDX_OK);
    CHECK(back.command == rsp_cmd && back.responded_id == c.message_id);
    CHECK(back.data_set_type == HDX_DIMSE_NO_DATASET && back.status == 0);
    CHECK(strcmp(back.affected_class, c.affected_class) == 0);
    CHECK(strcmp(back.affected_instance, c.affected_instance) == 0);
}

static void inflate_mode(const uint8_t *p, size_t n)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = hdx_ds_inflate(p, n, 4096, &out, &out_len);

    CHECK(rc == HDX_OK || rc == HDX_E_INVAL || rc == HDX_E_TOOBIG);
    if (rc != HDX_OK) {
        CHECK(out == NULL);
        return;
    }
    CHECK(out_len <= 4096);
    walk_both(out, out_len, HDX_DS_EXPLICIT_LE);
    free(out);
}

/* Fields split at NUL: class, instance, ts, impl class, impl version, source AE. */
static void meta_mode(const uint8_t *p, size_t n)
{
    char buf[512], *field[6];
    size_t used = 0;
    uint8_t out[1024];
    struct hdx_dcm_file f;
    struct hdx_ds_error err;

    if (n >= sizeof buf) return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    for (int i = 0; i < 6; i++) {
        field[i] = buf + (used < n ? used : n);
        used += strlen(field[i]) + 1;
    }
    size_t len = hdx_dcm_meta_build(field[0], field[1], field[2], field[3], field[4], field[5], out,
                                    sizeof out);
    if (len == 0) return;
    uint8_t again[1024];
    CHECK(hdx_dcm_meta_build(field[0], field[1], field[2], field[3], field[4], field[5], again,
                             sizeof again) == len);
    CHECK(memcmp(out, again, len) == 0);
    CHECK(len % 2 == 0);
    int rc = hdx_dcm_file_parse(out, len, &f, &err);
    /* Padding is removed on the way back in: compare without trailing spaces. */
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(field[i]);
        while (l > 0 && field[i][l - 1] == ' ')
            l--;
        field[i][l] = '\0';
    }
    if (field[2][0] == '\0') {
        CHECK(rc == HDX_E_INVAL); /* a transfer syntax of spaces is none */
        return;
    }
    CHECK(rc == HDX_OK && f.dataset_off == len);
    CHECK(strcmp(f.sop_class, field[0]) == 0 && strcmp(f.sop_instance, field[1]) == 0);
    CHECK(strcmp(f.ts, field[2]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0] % 8;
    size_t n = size - 1;
    uint8_t *p = malloc(n > 0 ? n : 1);
    if (p == NULL) return 0;
    if (n > 0) memcpy(p, data + 1, n);

    switch (mode) {
    case 0:
    case 1:
    case 2:
        walk_both(p, n, (enum hdx_ds_syntax)(mode + 1));
        break;
    case 3:
        if (n > 0) extract_checked(p + 1, n - 1, (enum hdx_ds_syntax)(p[0] % 3 + 1));
        break;
    case 4:
        file_mode(p, n);
        break;
    case 5:
        dimse_mode(p, n);
        break;
    case 6:
        inflate_mode(p, n);
        break;
    default:
        meta_mode(p, n);
        break;
    }
    free(p);
    return 0;
}
