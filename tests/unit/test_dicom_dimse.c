/* test_dicom_dimse: DIMSE command sets (dicom/dimse.h; PS3.7 section 9, annex E.1).
 * Proves: the command sets echoscu, storescu and findscu send (C-ECHO-RQ, C-STORE-RQ,
 * C-FIND-RQ, C-CANCEL-RQ, built here byte for byte as dcmtk writes them) parse to their
 * fields; each refusal in dimse.h gives its reason (no Command Field, no Data Set Type, a
 * request without Message ID, a US of the wrong length, an element outside group 0000,
 * truncation at every length, a wrong group length, tags out of order); a built C-STORE-RSP
 * parses back to what was built; a C-ECHO-RSP is exactly the bytes PS3.7 E.1 gives. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/dimse.h"

#define VERIFICATION "1.2.840.10008.1.1"
#define CT_STORAGE "1.2.840.10008.5.1.4.1.1.2"
#define STUDY_ROOT_FIND "1.2.840.10008.5.1.4.1.2.2.1"

struct cmd {
    uint8_t b[512];
    size_t n;
};

static void c_el(struct cmd *c, uint16_t element, const void *v, uint32_t len)
{
    uint8_t h[8] = {0,
                    0,
                    (uint8_t)element,
                    (uint8_t)(element >> 8),
                    (uint8_t)len,
                    (uint8_t)(len >> 8),
                    (uint8_t)(len >> 16),
                    (uint8_t)(len >> 24)};
    assert_true(c->n + 8 + len <= sizeof c->b);
    memcpy(c->b + c->n, h, 8);
    memcpy(c->b + c->n + 8, v, len);
    c->n += 8 + len;
}

static void c_us(struct cmd *c, uint16_t element, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    c_el(c, element, b, 2);
}

/* A UI padded with NUL to even length, as dcmtk writes it. */
static void c_ui(struct cmd *c, uint16_t element, const char *s)
{
    char b[66] = {0};
    size_t len = strlen(s);
    memcpy(b, s, len);
    c_el(c, element, b, (uint32_t)(len + (len & 1)));
}

/* Starts a command set with a group length to be fixed by c_done. */
static void c_start(struct cmd *c)
{
    memset(c, 0, sizeof *c);
    c_el(c, 0x0000, "\0\0\0\0", 4);
}

static void c_done(struct cmd *c)
{
    uint32_t gl = (uint32_t)(c->n - 12);
    for (int i = 0; i < 4; i++)
        c->b[8 + i] = (uint8_t)(gl >> (8 * i));
}

static int parse_copy(const struct cmd *c, size_t n, struct hdx_dimse_cmd *out, const char **why)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    assert_non_null(p);
    memcpy(p, c->b, n);
    int rc = hdx_dimse_parse(p, n, out, why);
    free(p);
    return rc;
}

static void echo_rq(struct cmd *c, uint16_t id)
{
    c_start(c);
    c_ui(c, 0x0002, VERIFICATION);
    c_us(c, 0x0100, HDX_C_ECHO_RQ);
    c_us(c, 0x0110, id);
    c_us(c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(c);
}

static void test_echo_rq(void **state)
{
    struct cmd c;
    struct hdx_dimse_cmd m;
    const char *why = "x";

    (void)state;
    echo_rq(&c, 1);
    assert_int_equal(c.n, 68); /* the 12 + 56 bytes echoscu sends */
    assert_int_equal(parse_copy(&c, c.n, &m, &why), HDX_OK);
    assert_null(why);
    assert_int_equal(m.command, HDX_C_ECHO_RQ);
    assert_int_equal(m.message_id, 1);
    assert_int_equal(m.data_set_type, HDX_DIMSE_NO_DATASET);
    assert_string_equal(m.affected_class, VERIFICATION);
    assert_string_equal(m.affected_instance, "");
    assert_true(m.has_command && m.has_message_id && m.has_data_set_type);

    /* Every shorter length is refused: truncated, or the group length no longer fits. */
    for (size_t k = 0; k < c.n; k++) {
        why = NULL;
        assert_int_equal(parse_copy(&c, k, &m, &why), HDX_E_INVAL);
        assert_non_null(why);
        assert_int_equal(m.command, 0);
    }
}

static void test_store_find_cancel(void **state)
{
    struct cmd c;
    struct hdx_dimse_cmd m;
    const char *why;

    (void)state;
    c_start(&c);
    c_ui(&c, 0x0002, CT_STORAGE);
    c_us(&c, 0x0100, HDX_C_STORE_RQ);
    c_us(&c, 0x0110, 0x1234);
    c_us(&c, 0x0700, 0x0002); /* LOW */
    c_us(&c, 0x0800, 0x0000);
    c_ui(&c, 0x1000, "1.2.826.0.1.3680043.8.498.1");
    c_el(&c, 0x1030, "STORESCU        ", 16); /* move originator: skipped */
    c_us(&c, 0x1031, 9);
    c_done(&c);
    assert_int_equal(parse_copy(&c, c.n, &m, &why), HDX_OK);
    assert_int_equal(m.command, HDX_C_STORE_RQ);
    assert_int_equal(m.message_id, 0x1234);
    assert_int_equal(m.priority, 2);
    assert_int_equal(m.data_set_type, 0);
    assert_string_equal(m.affected_class, CT_STORAGE);
    assert_string_equal(m.affected_instance, "1.2.826.0.1.3680043.8.498.1");

    c_start(&c);
    c_ui(&c, 0x0002, STUDY_ROOT_FIND);
    c_us(&c, 0x0100, HDX_C_FIND_RQ);
    c_us(&c, 0x0110, 3);
    c_us(&c, 0x0700, 0);
    c_us(&c, 0x0800, 0x0102);
    c_done(&c);
    assert_int_equal(parse_copy(&c, c.n, &m, &why), HDX_OK);
    assert_int_equal(m.command, HDX_C_FIND_RQ);
    assert_int_equal(m.message_id, 3);
    assert_int_equal(m.data_set_type, 0x0102);
    assert_string_equal(m.affected_class, STUDY_ROOT_FIND);

    /* C-CANCEL-RQ names the request in (0000,0120) and has no Message ID of its own. */
    c_start(&c);
    c_us(&c, 0x0100, HDX_C_CANCEL_RQ);
    c_us(&c, 0x0120, 3);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    assert_int_equal(parse_copy(&c, c.n, &m, &why), HDX_OK);
    assert_int_equal(m.command, HDX_C_CANCEL_RQ);
    assert_int_equal(m.responded_id, 3);
    assert_int_equal(m.has_message_id, 0);
}

static void expect_refused(const struct cmd *c, const char *want)
{
    struct hdx_dimse_cmd m;
    const char *why = NULL;
    assert_int_equal(parse_copy(c, c->n, &m, &why), HDX_E_INVAL);
    assert_non_null(why);
    assert_string_equal(why, want);
    assert_int_equal(m.command, 0);
    assert_string_equal(m.affected_class, "");
}

static void test_refusals(void **state)
{
    struct cmd c;
    char long_uid[70];

    (void)state;
    c_start(&c);
    c_ui(&c, 0x0002, VERIFICATION);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "no Command Field");

    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0110, 1);
    c_done(&c);
    expect_refused(&c, "no Command Data Set Type");

    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "request without a Message ID");

    c_start(&c);
    c_el(&c, 0x0100, "\x30\0\0", 3);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "US field of a length other than 2");

    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0110, 1);
    c_el(&c, 0x0800, "\x01", 1);
    c_done(&c);
    expect_refused(&c, "US field of a length other than 2");

    /* (0008,0016) after the command elements: a data set element in a command set. */
    echo_rq(&c, 1);
    c.b[c.n] = 0x08;
    c.b[c.n + 1] = 0x00;
    memcpy(c.b + c.n + 2,
           "\x16\0\x02\0\0\0"
           "1\0",
           8);
    c.n += 10;
    c_done(&c);
    expect_refused(&c, "element outside group 0000");

    echo_rq(&c, 1);
    c.b[8]++;
    expect_refused(&c, "command group length does not match");

    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_ui(&c, 0x0002, VERIFICATION);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "elements out of ascending order");

    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "elements out of ascending order");

    memset(long_uid, '1', 66);
    long_uid[66] = '\0';
    c_start(&c);
    c_ui(&c, 0x0002, long_uid);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "UID longer than 64 bytes");

    c_start(&c);
    c_el(&c, 0x0002, "1.2.840.10008.1.1\0\0", 18 + 2);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_us(&c, 0x0110, 1);
    c_us(&c, 0x0800, HDX_DIMSE_NO_DATASET);
    c_done(&c);
    expect_refused(&c, "UID with a byte other than a digit or '.'");

    /* A sequence (undefined length, so one in Implicit VR) in a command set. */
    c_start(&c);
    c_us(&c, 0x0100, HDX_C_ECHO_RQ);
    c_el(&c, 0x0101, "\xfe\xff\x00\xe0\0\0\0\0\xfe\xff\xdd\xe0\0\0\0\0", 16);
    c_done(&c);
    memcpy(c.b + 22 + 4, "\xff\xff\xff\xff", 4); /* (0000,0101) undefined length */
    expect_refused(&c, "command element is not a value");

    /* An element length running past the end. */
    echo_rq(&c, 1);
    c.b[c.n - 6] = 3;
    expect_refused(&c, "length overruns its parent");

    /* Over HDX_DIMSE_CMD_MAX, before any parsing. */
    uint8_t *big = calloc(1, HDX_DIMSE_CMD_MAX + 1);
    struct hdx_dimse_cmd m;
    const char *why;
    assert_non_null(big);
    assert_int_equal(hdx_dimse_parse(big, HDX_DIMSE_CMD_MAX + 1, &m, &why), HDX_E_INVAL);
    assert_string_equal(why, "command set over 64 KiB");
    free(big);
}

static void test_echo_rsp_bytes(void **state)
{
    static const uint8_t want[] = {
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00, /* GL 66 */
        0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00, '1',  '.',  '2',  '.',  '8', '4',
        '0',  '.',  '1',  '0',  '0',  '0',  '8',  '.',  '1',  '.',  '1',  0x00, /* class, NUL-padded
                                                                                 */
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x80,             /* C-ECHO-RSP */
        0x00, 0x00, 0x20, 0x01, 0x02, 0x00, 0x00, 0x00, 0x07, 0x00, /* responding to 7 */
        0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, /* no data set */
        0x00, 0x00, 0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, /* Success */
    };
    uint8_t out[256];

    (void)state;
    size_t n =
        hdx_dimse_build_rsp(HDX_C_ECHO_RSP, 7, VERIFICATION, "", 0x0000, 0, NULL, out, sizeof out);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(out, want, sizeof want);
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(
            hdx_dimse_build_rsp(HDX_C_ECHO_RSP, 7, VERIFICATION, "", 0, 0, NULL, out, cap), 0);
}

static void test_store_rsp_round_trip(void **state)
{
    uint8_t out[512];
    struct hdx_dimse_cmd m;
    const char *why;
    struct cmd c;

    (void)state;
    size_t n =
        hdx_dimse_build_rsp(HDX_C_STORE_RSP, 0x1234, CT_STORAGE, "1.2.826.0.1.3680043.8.498.1",
                            0xA700, 0, "Out of resources", out, sizeof out);
    assert_true(n > 0);
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_int_equal(m.command, HDX_C_STORE_RSP);
    assert_int_equal(m.responded_id, 0x1234);
    assert_int_equal(m.status, 0xA700);
    assert_int_equal(m.data_set_type, HDX_DIMSE_NO_DATASET);
    assert_string_equal(m.affected_class, CT_STORAGE);
    assert_string_equal(m.affected_instance, "1.2.826.0.1.3680043.8.498.1");
    assert_int_equal(m.has_message_id, 0);
    /* (0000,0902) sits between (0000,0900) and (0000,1000); 16 bytes, no pad. */
    uint8_t *ec = memmem(out, n, "\x00\x00\x02\x09\x10\x00\x00\x00Out of resources", 24);
    assert_non_null(ec);
    assert_memory_equal(ec + 24, "\x00\x00\x00\x10", 4);

    /* A data set follows a C-FIND-RSP pending: 0x0102; an odd comment gets a space; one
     * over 64 bytes is cut at 64. */
    char longc[100];
    memset(longc, 'e', 99);
    longc[99] = '\0';
    n = hdx_dimse_build_rsp(HDX_C_FIND_RSP, 3, STUDY_ROOT_FIND, "", 0xFF00, 1, "odd", out,
                            sizeof out);
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_int_equal(m.data_set_type, 0x0102);
    assert_int_equal(m.status, 0xFF00);
    assert_memory_equal(out + n - 12, "\x00\x00\x02\x09\x04\x00\x00\x00odd ", 12);
    n = hdx_dimse_build_rsp(HDX_C_STORE_RSP, 1, "", "", 0xC000, 0, longc, out, sizeof out);
    assert_int_equal(n, 12 + 4 * 10 + 8 + 64);
    assert_memory_equal(out + n - 72, "\x00\x00\x02\x09\x40\x00\x00\x00", 8);
    /* A UID over 64 bytes cannot be sent. */
    longc[65] = '\0';
    assert_int_equal(
        hdx_dimse_build_rsp(HDX_C_STORE_RSP, 1, longc, "", 0, 0, NULL, out, sizeof out), 0);
}

/* ---------- the C-STORE-RQ a DICOM route sends ---------- */

#define INSTANCE_ODD "1.2.826.0.1.3680043.8.498.12345" /* 31 bytes */
#define INSTANCE_EVEN "1.2.826.0.1.3680043.8.498.1234" /* 30 bytes */

/* The value of element (0000,el) in a command set: its offset and length, or -1. */
static long find_el(const uint8_t *p, size_t n, uint16_t el, uint32_t *len)
{
    size_t off = 0;
    while (off + 8 <= n) {
        uint16_t g = (uint16_t)(p[off] | p[off + 1] << 8);
        uint16_t e = (uint16_t)(p[off + 2] | p[off + 3] << 8);
        uint32_t l = (uint32_t)p[off + 4] | (uint32_t)p[off + 5] << 8 | (uint32_t)p[off + 6] << 16 |
                     (uint32_t)p[off + 7] << 24;
        assert_int_equal(g, 0);
        assert_true(l <= n - off - 8);
        if (e == el) {
            *len = l;
            return (long)(off + 8);
        }
        off += 8 + l;
    }
    return -1;
}

static void test_build_store_rq(void **state)
{
    uint8_t out[512];
    struct hdx_dimse_cmd m;
    const char *why = "unset";
    struct cmd c;
    uint32_t l;

    (void)state;
    /* CT_STORAGE is 25 bytes (odd), INSTANCE_ODD 31 (odd) */
    size_t n = hdx_dimse_build_store_rq(0x4321, CT_STORAGE, INSTANCE_ODD, out, sizeof out);
    assert_true(n > 12);
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_null(why);
    assert_int_equal(m.command, HDX_C_STORE_RQ);
    assert_int_equal(m.message_id, 0x4321);
    assert_true(m.has_message_id && m.has_command && m.has_data_set_type);
    assert_string_equal(m.affected_class, CT_STORAGE);
    assert_string_equal(m.affected_instance, INSTANCE_ODD);
    assert_true(m.data_set_type != HDX_DIMSE_NO_DATASET); /* a data set follows */
    assert_int_equal(m.priority, 0x0000);                 /* medium */
    assert_string_equal(m.requested_class, "");
    /* (0000,0000) first: UL 4, the bytes after it */
    assert_memory_equal(out, "\x00\x00\x00\x00\x04\x00\x00\x00", 8);
    uint32_t gl = (uint32_t)out[8] | (uint32_t)out[9] << 8 | (uint32_t)out[10] << 16 |
                  (uint32_t)out[11] << 24;
    assert_int_equal(gl, n - 12);
    /* 12 + class (8+26) + 4 US (4*10) + instance (8+32) */
    assert_int_equal(n, 12 + 8 + 26 + 40 + 8 + 32);
    /* odd UIDs are padded to even with one NUL */
    long v = find_el(out, n, 0x0002, &l);
    assert_true(v > 0);
    assert_int_equal(l, 26);
    assert_memory_equal(out + v, CT_STORAGE "\0", 26);
    v = find_el(out, n, 0x1000, &l);
    assert_true(v > 0);
    assert_int_equal(l, 32);
    assert_memory_equal(out + v, INSTANCE_ODD "\0", 32);
    /* tags in ascending order, each present once: the parser would have refused otherwise;
     * the element list itself */
    static const uint16_t els[] = {0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000};
    size_t off = 0;
    for (size_t i = 0; i < sizeof(els) / sizeof(els[0]); i++) {
        assert_true(off + 8 <= n);
        assert_int_equal(out[off + 2] | out[off + 3] << 8, els[i]);
        off += 8 + ((size_t)out[off + 4] | (size_t)out[off + 5] << 8);
    }
    assert_int_equal(off, n);

    /* an even UID is not padded */
    n = hdx_dimse_build_store_rq(1, VERIFICATION "0", INSTANCE_EVEN, out, sizeof out);
    assert_true(n > 0);
    v = find_el(out, n, 0x1000, &l);
    assert_int_equal(l, 30);
    assert_memory_equal(out + v, INSTANCE_EVEN, 30);
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_int_equal(m.message_id, 1);
    assert_string_equal(m.affected_instance, INSTANCE_EVEN);

    /* message IDs 0 and 0xFFFF go out as given */
    n = hdx_dimse_build_store_rq(0xFFFF, CT_STORAGE, INSTANCE_ODD, out, sizeof out);
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_int_equal(m.message_id, 0xFFFF);
}

static void test_build_store_rq_refused(void **state)
{
    uint8_t out[512];
    char uid64[66], uid65[66];
    struct hdx_dimse_cmd m;
    const char *why;
    struct cmd c;

    (void)state;
    memset(uid64, '1', 64);
    uid64[64] = '\0';
    memset(uid65, '1', 65);
    uid65[65] = '\0';
    /* 64 bytes is the longest UID */
    size_t n = hdx_dimse_build_store_rq(7, uid64, uid64, out, sizeof out);
    assert_int_equal(n, 12 + (8 + 64) + 40 + (8 + 64));
    memcpy(c.b, out, n);
    c.n = n;
    assert_int_equal(parse_copy(&c, n, &m, &why), HDX_OK);
    assert_string_equal(m.affected_class, uid64);
    assert_string_equal(m.affected_instance, uid64);
    /* empty or 65 bytes: nothing */
    assert_int_equal(hdx_dimse_build_store_rq(7, "", INSTANCE_ODD, out, sizeof out), 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, "", out, sizeof out), 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, uid65, INSTANCE_ODD, out, sizeof out), 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, uid65, out, sizeof out), 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, NULL, INSTANCE_ODD, out, sizeof out), 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, NULL, out, sizeof out), 0);
    /* every cap under the length builds nothing and writes nothing past the cap */
    n = hdx_dimse_build_store_rq(7, CT_STORAGE, INSTANCE_ODD, out, sizeof out);
    assert_true(n > 0);
    assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, INSTANCE_ODD, out, n), n);
    for (size_t cap = 0; cap < n; cap++) {
        memset(out, 0xee, sizeof out);
        assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, INSTANCE_ODD, out, cap), 0);
        for (size_t i = cap; i < sizeof out; i++)
            assert_int_equal(out[i], 0xee);
    }
    assert_int_equal(hdx_dimse_build_store_rq(7, CT_STORAGE, INSTANCE_ODD, NULL, 512), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_rq),
        cmocka_unit_test(test_store_find_cancel),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_echo_rsp_bytes),
        cmocka_unit_test(test_store_rsp_round_trip),
        cmocka_unit_test(test_build_store_rq),
        cmocka_unit_test(test_build_store_rq_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
