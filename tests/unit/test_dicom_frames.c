/* The WADO-RS frame finder (dicom/frames.h): native frames by size, encapsulated frames by
 * fragment, by the Basic Offset Table, or all fragments of a single frame; and each refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "dicom/frames.h"

struct buf {
    uint8_t b[4096];
    size_t n;
};

static void put16(struct buf *d, uint16_t v)
{
    d->b[d->n++] = (uint8_t)v;
    d->b[d->n++] = (uint8_t)(v >> 8);
}

static void put32(struct buf *d, uint32_t v)
{
    put16(d, (uint16_t)v);
    put16(d, (uint16_t)(v >> 16));
}

/* An Explicit VR Little Endian element of a short-form VR. */
static void el_short(struct buf *d, uint16_t g, uint16_t e, const char *vr, const void *v,
                     uint16_t len)
{
    put16(d, g);
    put16(d, e);
    d->b[d->n++] = (uint8_t)vr[0];
    d->b[d->n++] = (uint8_t)vr[1];
    put16(d, len);
    memcpy(d->b + d->n, v, len);
    d->n += len;
}

static void el_us(struct buf *d, uint16_t g, uint16_t e, uint16_t v)
{
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    el_short(d, g, e, "US", le, 2);
}

/* The image attributes: Samples 1, Rows r, Columns c, Bits Allocated bits, frames as IS. */
static void image(struct buf *d, uint16_t r, uint16_t c, uint16_t bits, const char *frames)
{
    el_us(d, 0x0028, 0x0002, 1);
    if (frames) el_short(d, 0x0028, 0x0008, "IS", frames, (uint16_t)strlen(frames));
    el_us(d, 0x0028, 0x0010, r);
    el_us(d, 0x0028, 0x0011, c);
    el_us(d, 0x0028, 0x0100, bits);
}

static void native_pixels(struct buf *d, size_t len)
{
    put16(d, 0x7FE0);
    put16(d, 0x0010);
    d->b[d->n++] = 'O';
    d->b[d->n++] = 'W';
    put16(d, 0);
    put32(d, (uint32_t)len);
    for (size_t i = 0; i < len; i++)
        d->b[d->n++] = (uint8_t)i;
}

static void frags_begin(struct buf *d)
{
    put16(d, 0x7FE0);
    put16(d, 0x0010);
    d->b[d->n++] = 'O';
    d->b[d->n++] = 'B';
    put16(d, 0);
    put32(d, 0xFFFFFFFFu);
}

static void item(struct buf *d, const void *v, uint32_t len)
{
    put16(d, 0xFFFE);
    put16(d, 0xE000);
    put32(d, len);
    memcpy(d->b + d->n, v, len);
    d->n += len;
}

static void frags_end(struct buf *d)
{
    put16(d, 0xFFFE);
    put16(d, 0xE0DD);
    put32(d, 0);
}

static int frame(const struct buf *d, int encapsulated, uint32_t k, uint8_t **out, size_t *len,
                 uint32_t *nf, const char **why)
{
    return hdx_dcm_frame(d->b, d->n, HDX_DS_EXPLICIT_LE, encapsulated, k, out, len, nf, why);
}

static void test_native(void **state)
{
    (void)state;
    struct buf d = {.n = 0};
    image(&d, 2, 3, 16, "4"); /* 12 bytes a frame */
    native_pixels(&d, 48);
    uint8_t *out;
    size_t len;
    uint32_t nf;
    const char *why;
    for (uint32_t k = 1; k <= 4; k++) {
        assert_int_equal(frame(&d, 0, k, &out, &len, &nf, &why), HDX_OK);
        assert_int_equal(len, 12);
        assert_int_equal(nf, 4);
        assert_int_equal(out[0], (uint8_t)((k - 1) * 12));
        assert_int_equal(out[11], (uint8_t)((k - 1) * 12 + 11));
        free(out);
    }
    assert_int_equal(frame(&d, 0, 5, &out, &len, &nf, &why), HDX_E_NOTFOUND);
    assert_null(out);
    assert_string_equal(why, "no such frame");
    assert_int_equal(frame(&d, 0, 0, &out, &len, &nf, &why), HDX_E_NOTFOUND);
    /* the syntax says encapsulated, the data set is not */
    assert_int_equal(frame(&d, 1, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    /* no Number of Frames: one frame */
    struct buf one = {.n = 0};
    image(&one, 2, 2, 8, NULL);
    native_pixels(&one, 4);
    assert_int_equal(frame(&one, 0, 1, &out, &len, &nf, &why), HDX_OK);
    assert_int_equal(len, 4);
    assert_int_equal(nf, 1);
    free(out);
}

static void test_native_refusals(void **state)
{
    (void)state;
    uint8_t *out;
    size_t len;
    uint32_t nf;
    const char *why;
    struct buf d = {.n = 0};
    image(&d, 2, 3, 16, "5"); /* 60 bytes needed, 48 there */
    native_pixels(&d, 48);
    assert_int_equal(frame(&d, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_string_equal(why, "the pixel data is shorter than its frames");
    struct buf packed = {.n = 0};
    image(&packed, 8, 8, 1, NULL);
    native_pixels(&packed, 8);
    assert_int_equal(frame(&packed, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_non_null(strstr(why, "Bits Allocated"));
    struct buf bad = {.n = 0};
    image(&bad, 2, 2, 8, "x1");
    native_pixels(&bad, 4);
    assert_int_equal(frame(&bad, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_non_null(strstr(why, "Number of Frames"));
    struct buf huge = {.n = 0};
    image(&huge, 2, 2, 8, "100001");
    native_pixels(&huge, 4);
    assert_int_equal(frame(&huge, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    struct buf none = {.n = 0};
    image(&none, 2, 2, 8, NULL);
    assert_int_equal(frame(&none, 0, 1, &out, &len, &nf, &why), HDX_E_NOTFOUND);
    assert_string_equal(why, "the instance has no pixel data");
    /* a data set the walker refuses */
    struct buf cut = {.n = 0};
    image(&cut, 2, 2, 8, NULL);
    native_pixels(&cut, 4);
    cut.n -= 2;
    assert_int_equal(frame(&cut, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_true(why[0] != 0);
}

static void test_encapsulated(void **state)
{
    (void)state;
    uint8_t *out;
    size_t len;
    uint32_t nf;
    const char *why;
    /* as many fragments as frames, an empty offset table */
    struct buf d = {.n = 0};
    image(&d, 2, 2, 8, "2");
    frags_begin(&d);
    item(&d, "", 0);
    item(&d, "AAAA", 4);
    item(&d, "BBBBBB", 6);
    frags_end(&d);
    assert_int_equal(frame(&d, 1, 2, &out, &len, &nf, &why), HDX_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "BBBBBB", 6);
    free(out);
    /* one frame in three fragments */
    struct buf one = {.n = 0};
    image(&one, 2, 2, 8, "1");
    frags_begin(&one);
    item(&one, "", 0);
    item(&one, "ab", 2);
    item(&one, "cd", 2);
    item(&one, "ef", 2);
    frags_end(&one);
    assert_int_equal(frame(&one, 1, 1, &out, &len, &nf, &why), HDX_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "abcdef", 6);
    free(out);
    /* two frames in three fragments: the offset table says where the second starts (the
     * first fragment's item is 8 + 2 bytes, the second's 8 + 2: frame 2 at 20) */
    struct buf bot = {.n = 0};
    image(&bot, 2, 2, 8, "2");
    frags_begin(&bot);
    uint8_t table[8] = {0, 0, 0, 0, 20, 0, 0, 0};
    item(&bot, table, 8);
    item(&bot, "ab", 2);
    item(&bot, "cd", 2);
    item(&bot, "ef", 2);
    frags_end(&bot);
    assert_int_equal(frame(&bot, 1, 1, &out, &len, &nf, &why), HDX_OK);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(len, 4);
    free(out);
    assert_int_equal(frame(&bot, 1, 2, &out, &len, &nf, &why), HDX_OK);
    assert_memory_equal(out, "ef", 2);
    assert_int_equal(len, 2);
    free(out);
    /* a table that points between fragments, and none at all */
    struct buf off = {.n = 0};
    image(&off, 2, 2, 8, "2");
    frags_begin(&off);
    uint8_t between[8] = {0, 0, 0, 0, 19, 0, 0, 0};
    item(&off, between, 8);
    item(&off, "ab", 2);
    item(&off, "cd", 2);
    item(&off, "ef", 2);
    frags_end(&off);
    assert_int_equal(frame(&off, 1, 2, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_non_null(strstr(why, "does not point at a fragment"));
    struct buf notable = {.n = 0};
    image(&notable, 2, 2, 8, "2");
    frags_begin(&notable);
    item(&notable, "", 0);
    item(&notable, "ab", 2);
    item(&notable, "cd", 2);
    item(&notable, "ef", 2);
    frags_end(&notable);
    assert_int_equal(frame(&notable, 1, 1, &out, &len, &nf, &why), HDX_E_INVAL);
    assert_non_null(strstr(why, "Basic Offset Table"));
    assert_int_equal(frame(&notable, 1, 3, &out, &len, &nf, &why), HDX_E_NOTFOUND);
    /* the data set says native but the syntax compressed */
    assert_int_equal(frame(&notable, 0, 1, &out, &len, &nf, &why), HDX_E_INVAL);
}

/* A defined-length sequence of two items, each with one short-form attribute. */
static void seq2(struct buf *d, uint16_t g, uint16_t e, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b); /* even lengths */
    put16(d, g);
    put16(d, e);
    d->b[d->n++] = 'S';
    d->b[d->n++] = 'Q';
    put16(d, 0);
    put32(d, (uint32_t)(2 * (8 + 8) + la + lb));
    const char *v[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        put16(d, 0xFFFE);
        put16(d, 0xE000);
        put32(d, (uint32_t)(8 + strlen(v[i])));
        el_short(d, 0x0008, 0x0100, "SH", v[i], (uint16_t)strlen(v[i]));
    }
}

static void test_bulk(void **state)
{
    (void)state;
    struct hdx_bulk_path bp;
    assert_int_equal(hdx_bulk_path_parse("7FE00010", &bp), 0);
    assert_int_equal(bp.depth, 0);
    assert_int_equal(bp.tags[0], 0x7FE00010);
    assert_int_equal(hdx_bulk_path_parse("00081111/12/0008100a", &bp), 0);
    assert_int_equal(bp.depth, 1);
    assert_int_equal(bp.tags[0], 0x00081111);
    assert_int_equal(bp.items[0], 12);
    assert_int_equal(bp.tags[1], 0x0008100A);
    static const char *const bad[] = {"",
                                      "7FE0001",
                                      "7FE000100",
                                      "7FE0001G",
                                      "00081111/",
                                      "00081111/x/00080100",
                                      "00081111/1",
                                      "00081111//00080100",
                                      "00081111/1234567/00080100"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hdx_bulk_path_parse(bad[i], &bp), -1);

    struct buf d = {.n = 0};
    el_short(&d, 0x0008, 0x0060, "CS", "CT", 2);
    seq2(&d, 0x0008, 0x1111, "AAAA", "BBBBBB");
    image(&d, 2, 2, 8, NULL);
    native_pixels(&d, 4);
    uint8_t *out;
    size_t len;
    const char *why;
    assert_int_equal(hdx_bulk_path_parse("00081111/1/00080100", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why), HDX_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "BBBBBB", 6);
    free(out);
    assert_int_equal(hdx_bulk_path_parse("00081111/0/00080100", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why), HDX_OK);
    assert_memory_equal(out, "AAAA", 4);
    free(out);
    assert_int_equal(hdx_bulk_path_parse("7FE00010", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why), HDX_OK);
    assert_int_equal(len, 4);
    free(out);
    /* the same tag at the top level is not the nested one; no item 2; a sequence has no value */
    assert_int_equal(hdx_bulk_path_parse("00080100", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why),
                     HDX_E_NOTFOUND);
    assert_int_equal(hdx_bulk_path_parse("00081111/2/00080100", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why),
                     HDX_E_NOTFOUND);
    assert_int_equal(hdx_bulk_path_parse("00081111", &bp), 0);
    assert_int_equal(hdx_dcm_bulk(d.b, d.n, HDX_DS_EXPLICIT_LE, &bp, &out, &len, &why),
                     HDX_E_NOTFOUND);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native),
        cmocka_unit_test(test_native_refusals),
        cmocka_unit_test(test_encapsulated),
        cmocka_unit_test(test_bulk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
