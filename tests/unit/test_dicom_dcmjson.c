/* DICOM JSON (dicom/dcmjson.h): each VR class, PN groups, multi-values with empty components,
 * sequences of defined and undefined length, Big Endian, character sets, bulk data, refusals,
 * and the put helper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/err.h"
#include "dicom/dataset.h"
#include "dicom/dcmjson.h"
#include "dicom/dsenc.h"

/* A hand-built Explicit VR Little Endian data set, for what dsenc does not write. */
struct b {
    uint8_t p[2048];
    size_t n;
};

static void raw(struct b *b, const void *v, size_t len)
{
    assert_true(b->n + len <= sizeof b->p);
    memcpy(b->p + b->n, v, len);
    b->n += len;
}

static void u16(struct b *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    raw(b, x, 2);
}

static void u32(struct b *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    raw(b, x, 4);
}

/* short-form element (2-byte length) */
static void el(struct b *b, uint16_t g, uint16_t e, const char *vr, const char *v)
{
    size_t len = strlen(v);
    u16(b, g);
    u16(b, e);
    raw(b, vr, 2);
    u16(b, (uint16_t)(len + (len & 1)));
    raw(b, v, len);
    if (len & 1) raw(b, " ", 1);
}

static void sq(struct b *b, uint16_t g, uint16_t e, uint32_t len)
{
    u16(b, g);
    u16(b, e);
    raw(b, "SQ\0\0", 4);
    u32(b, len);
}

static void item(struct b *b, uint16_t e, uint32_t len)
{
    u16(b, 0xFFFE);
    u16(b, e);
    u32(b, len);
}

static json_t *conv(const uint8_t *p, size_t n, enum hdx_ds_syntax syn,
                    const struct hdx_dcmjson_opts *o)
{
    json_t *j = NULL;
    char why[128] = "x";
    int rc = hdx_dcmjson_dataset(p, n, syn, o, &j, why, sizeof why);
    if (rc != HDX_OK) print_error("refused: %s\n", why);
    assert_int_equal(rc, HDX_OK);
    assert_string_equal(why, "");
    assert_non_null(j);
    return j;
}

/* The attribute's JSON text, compact, for exact comparisons. */
static void expect(json_t *j, const char *key, const char *text)
{
    json_t *a = json_object_get(j, key);
    if (a == NULL) fail_msg("no %s", key);
    char *s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
    assert_non_null(s);
    if (strcmp(s, text) != 0) fail_msg("%s: got %s, want %s", key, s, text);
    free(s);
}

static void test_strings_and_numbers(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 8192);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0008, "CS", "A\\\\ B \\"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0018, "UI", "1.2.3"), HDX_OK); /* NUL pad */
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0050, "SH", ""), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x1030, "LO", "  desc  "), HDX_OK);
    assert_int_equal(
        hdx_dsenc_str(&e, 0x0010, 0x0010, "PN", "Yamada^Tarou=YY^TT=ya^ta\\==P\\ A ^ B ^^\\^^"),
        HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x1001, "PN", "=="), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0018, 0x0050, "DS", " 1.5\\-2e3\\abc\\\\.5"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0018, 0x0088, "DS", "1e400"), HDX_OK);
    uint8_t us[6] = {1, 0, 0xFF, 0xFF, 0x10, 0x00};
    assert_int_equal(hdx_dsenc_add(&e, 0x0018, 0x1310, "US", us, 6), HDX_OK);
    int16_t ss = -2;
    assert_int_equal(hdx_dsenc_add(&e, 0x0018, 0x6024, "SS", &ss, 2), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0020, 0x0013, "IS", "+12\\-3\\x1"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0020, 0x4000, "LT", "  a\\b  "), HDX_OK);
    uint8_t at[8] = {0x18, 0x00, 0x63, 0x10, 0x20, 0x00, 0x13, 0x00};
    assert_int_equal(hdx_dsenc_add(&e, 0x0028, 0x0009, "AT", at, 8), HDX_OK);
    int32_t sl = -70000;
    assert_int_equal(hdx_dsenc_add(&e, 0x0028, 0x0010, "SL", &sl, 4), HDX_OK);
    float fl[2] = {1.5f, -0.25f};
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0078, "FL", fl, 8), HDX_OK);
    double fd = 3.25;
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0079, "FD", &fd, 8), HDX_OK);
    int64_t sv[2] = {-5, (int64_t)1 << 60};
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0082, "SV", sv, 16), HDX_OK);
    uint64_t uv = UINT64_MAX;
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0083, "UV", &uv, 8), HDX_OK);
    uint32_t ul = 4294967295u;
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0084, "UL", &ul, 4), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0072, 0x0085, "UT", "x\\y"), HDX_OK);

    json_t *j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00080008", "{\"vr\":\"CS\",\"Value\":[\"A\",null,\"B\",null]}");
    expect(j, "00080018", "{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]}");
    expect(j, "00080050", "{\"vr\":\"SH\"}");
    expect(j, "00081030", "{\"vr\":\"LO\",\"Value\":[\"desc\"]}");
    expect(j, "00100010",
           "{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Yamada^Tarou\",\"Ideographic\":\"YY^TT\","
           "\"Phonetic\":\"ya^ta\"},{\"Phonetic\":\"P\"},{\"Alphabetic\":\"A^B\"},null]}");
    expect(j, "00101001", "{\"vr\":\"PN\"}"); /* every value empty: no Value */
    expect(j, "00180050", "{\"vr\":\"DS\",\"Value\":[1.5,-2000.0,\"abc\",null,0.5]}");
    expect(j, "00180088", "{\"vr\":\"DS\",\"Value\":[\"1e400\"]}"); /* not finite: a string */
    expect(j, "00181310", "{\"vr\":\"US\",\"Value\":[1,65535,16]}");
    expect(j, "00186024", "{\"vr\":\"SS\",\"Value\":[-2]}");
    expect(j, "00200013", "{\"vr\":\"IS\",\"Value\":[12,-3,\"x1\"]}");
    expect(j, "00204000", "{\"vr\":\"LT\",\"Value\":[\"  a\\\\b\"]}");
    expect(j, "00280009", "{\"vr\":\"AT\",\"Value\":[\"00181063\",\"00200013\"]}");
    expect(j, "00280010", "{\"vr\":\"SL\",\"Value\":[-70000]}");
    expect(j, "00720078", "{\"vr\":\"FL\",\"Value\":[1.5,-0.25]}");
    expect(j, "00720079", "{\"vr\":\"FD\",\"Value\":[3.25]}");
    expect(j, "00720082", "{\"vr\":\"SV\",\"Value\":[-5,\"1152921504606846976\"]}");
    expect(j, "00720083", "{\"vr\":\"UV\",\"Value\":[\"18446744073709551615\"]}");
    expect(j, "00720084", "{\"vr\":\"UL\",\"Value\":[4294967295]}");
    expect(j, "00720085", "{\"vr\":\"UT\",\"Value\":[\"x\\\\y\"]}");
    json_decref(j);
    hdx_dsenc_free(&e);
}

static void test_big_endian(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_BE, 4096);
    uint8_t fl[4] = {0x3F, 0xC0, 0x00, 0x00}; /* 1.5f, big endian */
    uint8_t ow[4] = {0x01, 0x02, 0x03, 0x04}; /* two OW words, big endian */
    uint8_t at[4] = {0x00, 0x10, 0x00, 0x20}; /* (0010,0020) */
    uint8_t sl[4] = {0xFF, 0xFF, 0xFF, 0xFE}; /* -2 */
    assert_int_equal(hdx_dsenc_add(&e, 0x0028, 0x0009, "AT", at, 4), HDX_OK);
    assert_int_equal(hdx_dsenc_us(&e, 0x0028, 0x0010, 512), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x0028, 0x0011, "SL", sl, 4), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x0072, 0x0078, "FL", fl, 4), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x7FE0, 0x0010, "OW", ow, 4), HDX_OK);
    struct hdx_dcmjson_opts o = {NULL, 64, NULL, 0, 0};
    json_t *j = conv(e.buf, e.len, HDX_DS_EXPLICIT_BE, &o);
    expect(j, "00280010", "{\"vr\":\"US\",\"Value\":[512]}");
    expect(j, "00280009", "{\"vr\":\"AT\",\"Value\":[\"00100020\"]}");
    expect(j, "00280011", "{\"vr\":\"SL\",\"Value\":[-2]}");
    expect(j, "00720078", "{\"vr\":\"FL\",\"Value\":[1.5]}");
    /* base64 of the little-endian bytes 02 01 04 03 */
    expect(j, "7FE00010", "{\"vr\":\"OW\",\"InlineBinary\":\"AgEEAw==\"}");
    json_decref(j);
    hdx_dsenc_free(&e);
}

static void test_binary_inline_bulk(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 4096);
    assert_int_equal(hdx_dsenc_add(&e, 0x0009, 0x1010, "OB", "abc", 3), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x0009, 0x1011, "UN", "", 0), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x7FE0, 0x0010, "OB", "0123456789", 10), HDX_OK);
    struct hdx_dcmjson_opts o = {NULL, 4, NULL, 0, 0};
    json_t *j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, &o);
    expect(j, "00091010", "{\"vr\":\"OB\",\"InlineBinary\":\"YWJjAA==\"}"); /* NUL-padded */
    expect(j, "00091011", "{\"vr\":\"UN\"}");
    expect(j, "7FE00010", "{\"vr\":\"OB\"}"); /* over inline_max, no bulk_uri */
    json_decref(j);
    o.bulk_uri = "https://h/studies/1/series/2/instances/3/bulk";
    j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, &o);
    expect(j, "7FE00010",
           "{\"vr\":\"OB\",\"BulkDataURI\":\"https://h/studies/1/series/2/instances/3/bulk/"
           "7FE00010\"}");
    json_decref(j);
    hdx_dsenc_free(&e);
}

/* (0008,1110) undefined length: an undefined-length item holding a defined-length sequence
 * (0040,A730) with one defined-length item and an empty item; an empty defined-length
 * sequence (0008,1111); then (0010,0020) at the top; encapsulated pixel data last. */
static void build_nested(struct b *b)
{
    memset(b, 0, sizeof *b);
    sq(b, 0x0008, 0x1110, HDX_DS_UNDEFINED);
    item(b, 0xE000, HDX_DS_UNDEFINED);
    el(b, 0x0008, 0x1150, "UI", "1.2");
    /* inner: item 1 (8 + 24 bytes) and an empty item (8) */
    sq(b, 0x0040, 0xA730, 8 + 24 + 8);
    item(b, 0xE000, 24); /* two empty OB elements of 12 bytes each */
    u16(b, 0x0040);
    u16(b, 0xA010);
    raw(b, "OB", 2); /* binary in a nested item: OB has the long form */
    raw(b, "\0\0", 2);
    u32(b, 0);
    u16(b, 0x0040);
    u16(b, 0xA011);
    raw(b, "OB\0\0", 4);
    u32(b, 0);
    item(b, 0xE000, 0);
    item(b, 0xE00D, 0);
    item(b, 0xE0DD, 0);
    sq(b, 0x0008, 0x1111, 0);
    el(b, 0x0010, 0x0020, "LO", "P1");
    u16(b, 0x7FE0);
    u16(b, 0x0010);
    raw(b, "OB\0\0", 4);
    u32(b, HDX_DS_UNDEFINED);
    item(b, 0xE000, 0); /* offset table */
    item(b, 0xE000, 4);
    raw(b, "\xff\xd8\xff\xd9", 4);
    item(b, 0xE0DD, 0);
}

static void test_sequences(void **state)
{
    (void)state;
    struct b b;
    build_nested(&b);
    json_t *j = conv(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00081110",
           "{\"vr\":\"SQ\",\"Value\":[{\"00081150\":{\"vr\":\"UI\",\"Value\":[\"1.2\"]},"
           "\"0040A730\":{\"vr\":\"SQ\",\"Value\":[{\"0040A010\":{\"vr\":\"OB\"},"
           "\"0040A011\":{\"vr\":\"OB\"}},{}]}}]}");
    expect(j, "00081111", "{\"vr\":\"SQ\"}");
    expect(j, "00100020", "{\"vr\":\"LO\",\"Value\":[\"P1\"]}");
    expect(j, "7FE00010", "{\"vr\":\"OB\"}"); /* encapsulated: never inline */
    assert_int_equal(json_object_size(j), 4);
    json_decref(j);

    /* a nested binary value over inline_max gets its path */
    struct b c;
    memset(&c, 0, sizeof c);
    sq(&c, 0x0008, 0x1110, HDX_DS_UNDEFINED);
    item(&c, 0xE000, 0);
    item(&c, 0xE000, HDX_DS_UNDEFINED);
    u16(&c, 0x0009);
    u16(&c, 0x1001);
    raw(&c, "OB\0\0", 4);
    u32(&c, 4);
    raw(&c, "wxyz", 4);
    item(&c, 0xE00D, 0);
    item(&c, 0xE0DD, 0);
    u16(&c, 0x7FE0);
    u16(&c, 0x0010);
    raw(&c, "OB\0\0", 4);
    u32(&c, HDX_DS_UNDEFINED);
    item(&c, 0xE000, 0);
    item(&c, 0xE0DD, 0);
    struct hdx_dcmjson_opts o = {NULL, 2, "u", 0, 0};
    j = conv(c.p, c.n, HDX_DS_EXPLICIT_LE, &o);
    expect(j, "00081110",
           "{\"vr\":\"SQ\",\"Value\":[{},{\"00091001\":{\"vr\":\"OB\",\"BulkDataURI\":"
           "\"u/00081110/1/00091001\"}}]}");
    expect(j, "7FE00010", "{\"vr\":\"OB\",\"BulkDataURI\":\"u/7FE00010\"}");
    json_decref(j);
}

static void test_implicit_dictionary(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_IMPLICIT_LE, 4096);
    assert_int_equal(hdx_dsenc_str(&e, 0x0018, 0x0050, "DS", "2.5"), HDX_OK);
    assert_int_equal(hdx_dsenc_us(&e, 0x0028, 0x0103, 1), HDX_OK);
    int16_t v = -7;
    assert_int_equal(hdx_dsenc_add(&e, 0x0028, 0x0106, "SS", &v, 2), HDX_OK); /* US or SS */
    assert_int_equal(hdx_dsenc_str(&e, 0x0029, 0x0010, "LO", "ACME"), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x0029, 0x1010, "OB", "ab", 2), HDX_OK);
    struct hdx_dcmjson_opts o = {NULL, SIZE_MAX, NULL, 0, 0};
    json_t *j = conv(e.buf, e.len, HDX_DS_IMPLICIT_LE, &o);
    expect(j, "00180050", "{\"vr\":\"DS\",\"Value\":[2.5]}");
    expect(j, "00280106", "{\"vr\":\"SS\",\"Value\":[-7]}");
    expect(j, "00290010", "{\"vr\":\"LO\",\"Value\":[\"ACME\"]}");
    expect(j, "00291010", "{\"vr\":\"UN\",\"InlineBinary\":\"YWI=\"}");
    json_decref(j);
    hdx_dsenc_free(&e);
}

static void test_charsets(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 4096);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0005, "CS", "ISO_IR 100"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0010, "PN", "Buc^J\xe9r\xf4me"), HDX_OK);
    json_t *j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00080005", "{\"vr\":\"CS\",\"Value\":[\"ISO_IR 192\"]}");
    expect(j, "00100010",
           "{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Buc^J\xc3\xa9r\xc3\xb4me\"}]}");
    json_decref(j);
    hdx_dsenc_free(&e);

    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 4096);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0005, "CS", "ISO_IR 192"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0010, "PN",
                                   "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1"),
                     HDX_OK);
    j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00100010",
           "{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Wang^XiaoDong\",\"Ideographic\":"
           "\"\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1\"}]}");
    json_decref(j);
    hdx_dsenc_free(&e);

    /* an item's own set: ISO_IR 100 inside, the default repertoire outside */
    struct b b;
    memset(&b, 0, sizeof b);
    sq(&b, 0x0008, 0x1110, HDX_DS_UNDEFINED);
    item(&b, 0xE000, HDX_DS_UNDEFINED);
    el(&b, 0x0008, 0x0005, "CS", "ISO_IR 100");
    el(&b, 0x0010, 0x0010, "PN", "M\xfcller");
    item(&b, 0xE00D, 0);
    item(&b, 0xE0DD, 0);
    el(&b, 0x0010, 0x0020, "LO", "P1");
    j = conv(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00081110",
           "{\"vr\":\"SQ\",\"Value\":[{\"00080005\":{\"vr\":\"CS\",\"Value\":[\"ISO_IR 192\"]},"
           "\"00100010\":{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"M\xc3\xbcller\"}]}}]}");
    json_decref(j);
    /* ... and outside the item the byte is not ASCII: refused */
    memset(&b, 0, sizeof b);
    el(&b, 0x0010, 0x0010, "PN", "M\xfcller");
    json_t *out = (json_t *)1;
    char why[80];
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    assert_null(out);
    assert_string_equal(why, "value not valid in its Specific Character Set");
    /* invalid UTF-8 under ISO_IR 192, an unknown set */
    memset(&b, 0, sizeof b);
    el(&b, 0x0008, 0x0005, "CS", "ISO_IR 192");
    el(&b, 0x0010, 0x0010, "PN", "\xc3(");
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    memset(&b, 0, sizeof b);
    el(&b, 0x0008, 0x0005, "CS", "KLINGON");
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    assert_string_equal(why, "Specific Character Set not supported");
}

static void test_refusals(void **state)
{
    (void)state;
    struct b b;
    json_t *out = (json_t *)1;
    char why[80];
    build_nested(&b);
    /* truncated: the walker's reason */
    assert_int_equal(
        hdx_dcmjson_dataset(b.p, b.n - 3, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
        HDX_E_INVAL);
    assert_null(out);
    assert_true(why[0] != '\0');
    /* a US of odd length */
    memset(&b, 0, sizeof b);
    u16(&b, 0x0028);
    u16(&b, 0x0010);
    raw(&b, "US", 2);
    u16(&b, 3);
    raw(&b, "abc", 3);
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    assert_string_equal(why, "binary value length not a multiple of its VR's size");
    /* a NaN FD */
    memset(&b, 0, sizeof b);
    u16(&b, 0x0072);
    u16(&b, 0x0079);
    raw(&b, "FD", 2);
    u16(&b, 8);
    raw(&b, "\x00\x00\x00\x00\x00\x00\xf8\x7f", 8);
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    /* a NUL inside a text value (found by fuzz_dicom_json: jansson's own reader refuses the
     * \u0000 it would become) */
    memset(&b, 0, sizeof b);
    u16(&b, 0x0010);
    u16(&b, 0x0010);
    raw(&b, "PN", 2);
    u16(&b, 4);
    raw(&b, "A\0B ", 4);
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_E_INVAL);
    assert_string_equal(why, "NUL inside a text value");
    memset(&b, 0, sizeof b);
    el(&b, 0x0008, 0x0018, "UI", "1.2.3"); /* NUL padding is fine */
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, &out, why, sizeof why),
                     HDX_OK);
    json_decref(out);
    /* max_bytes */
    build_nested(&b);
    struct hdx_dcmjson_opts o = {NULL, 0, NULL, 0, 40};
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, &o, &out, why, sizeof why),
                     HDX_E_TOOBIG);
    assert_null(out);
    assert_string_equal(why, "JSON over max_bytes");
    /* tight walker limits */
    struct hdx_ds_limits lim = {1, 1024, 100};
    o = (struct hdx_dcmjson_opts){&lim, 0, NULL, 0, 0};
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, &o, &out, why, sizeof why),
                     HDX_E_INVAL);
    assert_string_equal(why, "nesting past max_depth");
    assert_int_equal(hdx_dcmjson_dataset(b.p, b.n, HDX_DS_EXPLICIT_LE, NULL, NULL, why, sizeof why),
                     HDX_E_INVAL);
}

static void test_group_lengths(void **state)
{
    (void)state;
    struct hdx_dsenc e;
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 4096);
    uint32_t gl = 10;
    assert_int_equal(hdx_dsenc_add(&e, 0x0010, 0x0000, "UL", &gl, 4), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0020, "LO", "P1"), HDX_OK);
    json_t *j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, NULL);
    expect(j, "00100000", "{\"vr\":\"UL\",\"Value\":[10]}");
    json_decref(j);
    struct hdx_dcmjson_opts o = {NULL, 0, NULL, 1, 0};
    j = conv(e.buf, e.len, HDX_DS_EXPLICIT_LE, &o);
    assert_null(json_object_get(j, "00100000"));
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
    hdx_dsenc_free(&e);
}

static void test_put(void **state)
{
    (void)state;
    json_t *j = json_object();
    assert_int_equal(hdx_dcmjson_put(j, 0x0010, 0x0010, "PN", "Doe^John=\xe5\xb1\xb1^=x"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0008, 0x0061, "CS", "CT\\\\MR"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0020, 0x1206, "IS", "12"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0020, 0x1208, "DS", "0.5"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0028, 0x0010, "US", "512"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0008, 0x0050, "SH", NULL), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0008, 0x1030, "LO", "first"), HDX_OK);
    assert_int_equal(hdx_dcmjson_put(j, 0x0008, 0x1030, "LO", "second"), HDX_OK); /* replaces */
    expect(
        j, "00100010",
        "{\"vr\":\"PN\",\"Value\":[{\"Alphabetic\":\"Doe^John\",\"Ideographic\":\"\xe5\xb1\xb1\","
        "\"Phonetic\":\"x\"}]}");
    expect(j, "00080061", "{\"vr\":\"CS\",\"Value\":[\"CT\",null,\"MR\"]}");
    expect(j, "00201206", "{\"vr\":\"IS\",\"Value\":[12]}");
    expect(j, "00201208", "{\"vr\":\"DS\",\"Value\":[0.5]}");
    expect(j, "00280010", "{\"vr\":\"US\",\"Value\":[512]}");
    expect(j, "00080050", "{\"vr\":\"SH\"}");
    expect(j, "00081030", "{\"vr\":\"LO\",\"Value\":[\"second\"]}");
    assert_int_equal(hdx_dcmjson_put(j, 0x0028, 0x0010, "US", "70000"), HDX_E_INVAL);
    assert_int_equal(hdx_dcmjson_put(j, 0x0028, 0x0010, "US", "x"), HDX_E_INVAL);
    assert_int_equal(hdx_dcmjson_put(j, 0x0010, 0x0010, "PN", "\xff"), HDX_E_INVAL);
    assert_int_equal(hdx_dcmjson_put(j, 0x0008, 0x1110, "SQ", ""), HDX_E_INVAL);
    assert_int_equal(hdx_dcmjson_put(j, 0x7FE0, 0x0010, "OB", "x"), HDX_E_INVAL);
    assert_int_equal(hdx_dcmjson_put(NULL, 0x0010, 0x0010, "PN", "x"), HDX_E_INVAL);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_and_numbers),
        cmocka_unit_test(test_big_endian),
        cmocka_unit_test(test_binary_inline_bulk),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_implicit_dictionary),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_group_lengths),
        cmocka_unit_test(test_put),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
