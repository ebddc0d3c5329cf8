/* The data-set writer: what it writes, dicom/dataset.h's walker reads back, in every syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "dicom/dataset.h"
#include "dicom/dsenc.h"

struct seen {
    int n;
    struct {
        uint16_t g, e;
        char vr[3];
        char value[80];
    } el[16];
};

static int collect(void *arg, const struct hdx_ds_elem *e)
{
    struct seen *s = arg;
    assert_true(s->n < 16);
    s->el[s->n].g = e->group;
    s->el[s->n].e = e->element;
    memcpy(s->el[s->n].vr, e->vr, 3);
    assert_true(e->value_len < sizeof(s->el[s->n].value));
    if (e->value_len) memcpy(s->el[s->n].value, e->value, e->value_len);
    s->el[s->n].value[e->value_len] = 0;
    s->n++;
    return 0;
}

static void roundtrip(enum hdx_ds_syntax syn)
{
    struct hdx_dsenc e;
    struct hdx_ds_limits lim;
    struct hdx_ds_error err = {0};
    struct seen s = {0};
    hdx_dsenc_init(&e, syn, 4096);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0005, "CS", "ISO_IR 192"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0020, "DA", "20210115"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0052, "CS", "STUDY"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0010, "PN", "Buc^J\xc3\xa9r\xc3\xb4me"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0020, "LO", ""), HDX_OK);      /* zero length */
    assert_int_equal(hdx_dsenc_str(&e, 0x0020, 0x000D, "UI", "1.2.3"), HDX_OK); /* odd: NUL */
    assert_int_equal(hdx_dsenc_us(&e, 0x0028, 0x0010, 512), HDX_OK);
    assert_int_equal(hdx_dsenc_add(&e, 0x0029, 0x1010, "UT", "abc", 3), HDX_OK); /* long form */
    assert_int_equal(e.len % 2, 0);
    hdx_ds_limits_default(&lim);
    assert_int_equal(hdx_ds_walk(e.buf, e.len, syn, &lim, collect, &s, &err), HDX_OK);
    assert_int_equal(s.n, 8);
    assert_int_equal(s.el[0].g, 0x0008);
    assert_int_equal(s.el[0].e, 0x0005);
    assert_string_equal(s.el[0].value, "ISO_IR 192");
    assert_string_equal(s.el[2].value, "STUDY ");                   /* padded with a space */
    assert_string_equal(s.el[3].value, "Buc^J\xc3\xa9r\xc3\xb4me"); /* 12 bytes: no pad */
    assert_string_equal(s.el[4].value, "");
    assert_memory_equal(s.el[5].value, "1.2.3\0", 6); /* UI padded with NUL */
    if (syn != HDX_DS_IMPLICIT_LE) {
        assert_string_equal(s.el[3].vr, "PN");
        assert_string_equal(s.el[7].vr, "UT");
    }
    uint16_t us = syn == HDX_DS_EXPLICIT_BE
                      ? (uint16_t)((uint8_t)s.el[6].value[0] << 8 | (uint8_t)s.el[6].value[1])
                      : (uint16_t)((uint8_t)s.el[6].value[1] << 8 | (uint8_t)s.el[6].value[0]);
    assert_int_equal(us, 512);
    hdx_dsenc_free(&e);
}

static void test_roundtrip_implicit(void **state)
{
    roundtrip(HDX_DS_IMPLICIT_LE);
}

static void test_roundtrip_explicit(void **state)
{
    roundtrip(HDX_DS_EXPLICIT_LE);
}

static void test_roundtrip_big_endian(void **state)
{
    roundtrip(HDX_DS_EXPLICIT_BE);
}

/* Exact bytes of one explicit-LE element: tag, VR, 2-byte length, padded value. */
static void test_exact_bytes(void **state)
{
    struct hdx_dsenc e;
    static const uint8_t want[] = {0x08, 0x00, 0x52, 0x00, 'C', 'S', 0x06,
                                   0x00, 'S',  'T',  'U',  'D', 'Y', ' '};
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 64);
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0052, "CS", "STUDY"), HDX_OK);
    assert_int_equal(e.len, sizeof(want));
    assert_memory_equal(e.buf, want, sizeof(want));
    hdx_dsenc_free(&e);
}

static void test_refusals(void **state)
{
    struct hdx_dsenc e;
    char big[70000];
    memset(big, 'a', sizeof(big));
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 1 << 20);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0020, "LO", "x"), HDX_OK);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0010, "PN", "y"), HDX_E_INVAL);        /* order */
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0030, "DA", "20200101"), HDX_E_INVAL); /* failed */
    hdx_dsenc_free(&e);
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 1 << 20);
    assert_int_equal(hdx_dsenc_str(&e, 0x0010, 0x0020, "lo", "x"), HDX_E_INVAL); /* bad VR */
    hdx_dsenc_free(&e);
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 1 << 20);
    assert_int_equal(hdx_dsenc_add(&e, 0x0010, 0x0020, "LO", big, sizeof(big)), HDX_E_INVAL);
    hdx_dsenc_free(&e);
    hdx_dsenc_init(&e, HDX_DS_IMPLICIT_LE, 1 << 20); /* implicit: a 4-byte length for all */
    assert_int_equal(hdx_dsenc_add(&e, 0x0010, 0x0020, "LO", big, sizeof(big)), HDX_OK);
    hdx_dsenc_free(&e);
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 16);                                 /* max */
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0052, "CS", "STUDY"), HDX_OK); /* 14 bytes */
    assert_int_equal(hdx_dsenc_str(&e, 0x0008, 0x0053, "CS", "X"), HDX_E_TOOBIG);
    hdx_dsenc_free(&e);
    hdx_dsenc_init(&e, HDX_DS_EXPLICIT_LE, 64);
    assert_int_equal(hdx_dsenc_add(&e, 0x0008, 0x1110, "SQ", NULL, 0), HDX_E_INVAL);
    hdx_dsenc_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_implicit),
        cmocka_unit_test(test_roundtrip_explicit),
        cmocka_unit_test(test_roundtrip_big_endian),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
