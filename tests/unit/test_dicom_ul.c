/* test_dicom_ul: the DICOM upper layer (PS3.8 section 9, Annex D; dicom/ul.h).
 * Proves: an A-ASSOCIATE-RQ parses field by field (hand-built and as dcmtk's echoscu sends
 * it), unknown sub-items are skipped, every refusal ul.h lists gives HDX_E_INVAL with a fixed
 * reason and an A-ABORT reason and leaves nothing parsed behind; negotiation follows hdx's
 * order of preference; the A-ASSOCIATE-AC, -RJ, A-ABORT, A-RELEASE-RP and P-DATA-TF headers
 * are byte-exact; the PDV walker refuses short and overrunning items; and the state table
 * equals PS3.8 Table 9-10 in all 247 cells, checked against a second, event-major
 * transcription of the standard. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/ul.h"

#define VERIFICATION "1.2.840.10008.1.1"
#define CT_STORAGE "1.2.840.10008.5.1.4.1.1.2"
#define TS_IMPLICIT "1.2.840.10008.1.2"
#define TS_EXPLICIT "1.2.840.10008.1.2.1"
#define TS_JPEG "1.2.840.10008.1.2.4.50"

/* The structs are large (an RQ holds 128 contexts of 32 UIDs): kept off the stack. */
static struct hdx_ul_assoc_rq rq;
static struct hdx_ul_assoc_ac ac;

/* ---------- a byte builder for requests ---------- */

struct b {
    uint8_t p[80000];
    size_t n;
};
static struct b bb;

static void b_put(struct b *b, const void *s, size_t n)
{
    assert_true(n <= sizeof(b->p) - b->n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void b_u8(struct b *b, uint8_t v)
{
    b_put(b, &v, 1);
}

static void b_u16(struct b *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    b_put(b, x, 2);
}

static void b_u32(struct b *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    b_put(b, x, 4);
}

static size_t b_open(struct b *b, uint8_t type)
{
    size_t at = b->n;
    b_u8(b, type);
    b_u8(b, 0);
    b_u16(b, 0);
    return at;
}

static void b_close(struct b *b, size_t at)
{
    size_t len = b->n - at - 4;
    assert_true(len <= 0xFFFF);
    b->p[at + 2] = (uint8_t)(len >> 8);
    b->p[at + 3] = (uint8_t)len;
}

static void b_item(struct b *b, uint8_t type, const void *v, size_t n)
{
    size_t at = b_open(b, type);
    b_put(b, v, n);
    b_close(b, at);
}

static void b_str(struct b *b, uint8_t type, const char *s)
{
    b_item(b, type, s, strlen(s));
}

static void b_ae(struct b *b, const char *ae)
{
    char f[16];
    memset(f, ' ', sizeof(f));
    memcpy(f, ae, strlen(ae));
    b_put(b, f, sizeof(f));
}

static void b_fixed(struct b *b, const char *called, const char *calling)
{
    static const uint8_t zeros[32];
    b->n = 0;
    b_u16(b, 1);
    b_u16(b, 0);
    b_ae(b, called);
    b_ae(b, calling);
    b_put(b, zeros, sizeof(zeros));
}

/* A presentation context with an abstract syntax and up to four transfer syntaxes. */
static void b_pctx(struct b *b, uint8_t id, const char *as, const char *ts0, const char *ts1,
                   const char *ts2)
{
    size_t at = b_open(b, 0x20);
    b_u8(b, id);
    b_u8(b, 0);
    b_u8(b, 0);
    b_u8(b, 0);
    if (as) b_str(b, 0x30, as);
    if (ts0) b_str(b, 0x40, ts0);
    if (ts1) b_str(b, 0x40, ts1);
    if (ts2) b_str(b, 0x40, ts2);
    b_close(b, at);
}

static void b_user_min(struct b *b, uint32_t max)
{
    size_t at = b_open(b, 0x50);
    size_t m = b_open(b, 0x51);
    b_u32(b, max);
    b_close(b, m);
    b_str(b, 0x52, "1.2.3.4");
    b_close(b, at);
}

/* The minimal valid request: one Verification context. */
static void b_minimal(struct b *b)
{
    b_fixed(b, "HDX", "MODALITY");
    b_str(b, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(b, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_user_min(b, 16384);
}

/* The request of test_parse_handbuilt: two contexts, every user sub-item kind. */
static void b_full(struct b *b)
{
    b_fixed(b, " HDX", "MODALITY1");
    b_str(b, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(b, 1, VERIFICATION, TS_IMPLICIT, TS_EXPLICIT, NULL);
    b_pctx(b, 3, CT_STORAGE, TS_JPEG, TS_EXPLICIT, TS_IMPLICIT);
    size_t at = b_open(b, 0x50);
    size_t m = b_open(b, 0x51);
    b_u32(b, 16384);
    b_close(b, m);
    b_item(b, 0x52, "1.2.826.0.1.3680043.9.1\0", 24); /* odd UID, padded to even with NUL */
    m = b_open(b, 0x53);
    b_u16(b, 2);
    b_u16(b, 3);
    b_close(b, m);
    m = b_open(b, 0x54); /* SCP/SCU role selection (PS3.7 D.3.3.4) */
    b_u16(b, (uint16_t)strlen(CT_STORAGE));
    b_put(b, CT_STORAGE, strlen(CT_STORAGE));
    b_u8(b, 1);
    b_u8(b, 0);
    b_close(b, m);
    b_item(b, 0x5f, "\x01\x02\x03", 3); /* unknown sub-item: skipped */
    b_str(b, 0x55, "HDX_TEST_1");
    b_close(b, at);
}

static int parse(const struct b *b, const char **why, uint8_t *reason)
{
    return hdx_ul_parse_assoc_rq(b->p, b->n, &rq, why, reason);
}

/* ---------- A-ASSOCIATE-RQ ---------- */

static void test_pdu_header(void **state)
{
    const uint8_t h[] = {0x04, 0x00, 0x00, 0x01, 0x02, 0x03, 0xaa};
    uint8_t type = 9;
    uint32_t len = 9;

    (void)state;
    for (size_t n = 0; n < HDX_UL_HEADER_LEN; n++)
        assert_int_equal(hdx_ul_pdu_header(h, n, &type, &len), HDX_EAGAIN);
    assert_int_equal(hdx_ul_pdu_header(h, 6, &type, &len), HDX_OK);
    assert_int_equal(type, 4);
    assert_int_equal(len, 0x010203);
    assert_int_equal(hdx_ul_pdu_header(h, sizeof(h), &type, &len), HDX_OK);
    assert_int_equal(hdx_ul_pdu_header(NULL, 6, &type, &len), HDX_EAGAIN);
}

static void test_parse_handbuilt(void **state)
{
    const char *why = "unset";
    uint8_t reason = 99;

    (void)state;
    b_full(&bb);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_null(why);
    assert_int_equal(rq.protocol_version, 1);
    assert_string_equal(rq.called, "HDX"); /* leading and trailing spaces trimmed */
    assert_string_equal(rq.calling, "MODALITY1");
    assert_string_equal(rq.app_context, HDX_UL_APP_CONTEXT);
    assert_int_equal(rq.npctx, 2);
    assert_int_equal(rq.pctx[0].id, 1);
    assert_string_equal(rq.pctx[0].abstract_syntax, VERIFICATION);
    assert_int_equal(rq.pctx[0].nts, 2);
    assert_string_equal(rq.pctx[0].ts[0], TS_IMPLICIT);
    assert_string_equal(rq.pctx[0].ts[1], TS_EXPLICIT);
    assert_int_equal(rq.pctx[1].id, 3);
    assert_string_equal(rq.pctx[1].abstract_syntax, CT_STORAGE);
    assert_int_equal(rq.pctx[1].nts, 3);
    assert_string_equal(rq.pctx[1].ts[0], TS_JPEG);
    assert_string_equal(rq.pctx[1].ts[2], TS_IMPLICIT);
    assert_int_equal(rq.max_pdu, 16384);
    assert_string_equal(rq.impl_class, "1.2.826.0.1.3680043.9.1"); /* NUL pad stripped */
    assert_string_equal(rq.impl_version, "HDX_TEST_1");
    assert_int_equal(rq.async, 1);
}

static void test_parse_boundaries(void **state)
{
    char uid64[HDX_UL_UID_MAX + 2];
    const char *why;
    uint8_t reason;

    (void)state;
    /* A 64-byte UID with its NUL pad (65 bytes) is the longest accepted. */
    memset(uid64, '1', HDX_UL_UID_MAX);
    uid64[HDX_UL_UID_MAX] = '\0';
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    size_t at = b_open(&bb, 0x20);
    b_u8(&bb, 255); /* the highest ID */
    b_u8(&bb, 0);
    b_u16(&bb, 0);
    b_item(&bb, 0x30, uid64, HDX_UL_UID_MAX + 1);
    for (int i = 0; i < HDX_UL_TS_MAX; i++)
        b_str(&bb, 0x40, TS_IMPLICIT);
    b_close(&bb, at);
    b_item(&bb, 0x99, "", 0); /* unknown top-level item: skipped */
    b_user_min(&bb, 0);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_int_equal(strlen(rq.pctx[0].abstract_syntax), HDX_UL_UID_MAX);
    assert_int_equal(rq.pctx[0].id, 255);
    assert_int_equal(rq.pctx[0].nts, HDX_UL_TS_MAX);
    assert_int_equal(rq.max_pdu, 0);
    assert_int_equal(rq.async, 0);
    assert_string_equal(rq.impl_version, "");
    assert_string_equal(rq.calling, "M");

    /* A 16-character AE title fills its field; an all-space one is empty (the session
     * rejects it, the parser does not). */
    b_fixed(&bb, "ABCDEFGHIJKLMNOP", "");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 1);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_string_equal(rq.called, "ABCDEFGHIJKLMNOP");
    assert_string_equal(rq.calling, "");

    /* The protocol version is stored, not judged (the session answers with an RJ). */
    b_minimal(&bb);
    bb.p[0] = 0x00;
    bb.p[1] = 0x02;
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_int_equal(rq.protocol_version, 2);
}

/* A body exactly HDX_UL_RQ_MAX long parses; one byte more is refused. */
static void test_parse_rq_max(void **state)
{
    static uint8_t fill[0xFFFF];
    const char *why;
    uint8_t reason;

    (void)state;
    b_minimal(&bb);
    size_t pad = HDX_UL_RQ_MAX - bb.n;
    while (pad > 0) {
        size_t v = pad - 4 > 0xFFFF ? 0xFFFF : pad - 4;
        if (pad - 4 - v > 0 && pad - 4 - v < 4) v -= 4; /* leave room for a last item */
        b_item(&bb, 0x77, fill, v);
        pad -= v + 4;
    }
    assert_int_equal(bb.n, HDX_UL_RQ_MAX);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_int_equal(rq.npctx, 1);
    b_u8(&bb, 0);
    assert_int_equal(parse(&bb, &why, &reason), HDX_E_INVAL);
    assert_string_equal(why, "A-ASSOCIATE-RQ over 64 KiB");
    assert_int_equal(reason, HDX_ABORT_INVALID_PARAM);
}

static void expect_refused(const char *expect_why, uint8_t expect_reason)
{
    const char *why = NULL;
    uint8_t reason = 99;

    assert_int_equal(parse(&bb, &why, &reason), HDX_E_INVAL);
    assert_non_null(why);
    assert_string_equal(why, expect_why);
    assert_int_equal(reason, expect_reason);
    /* nothing half-parsed is left behind */
    assert_int_equal(rq.npctx, 0);
    assert_string_equal(rq.calling, "");
    assert_string_equal(rq.called, "");
    assert_int_equal(rq.max_pdu, 0);
}

static void test_refuse_truncated(void **state)
{
    static const size_t cuts[] = {0, 1, 2, 4, 20, 36, 67};

    (void)state;
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        b_minimal(&bb);
        bb.n = cuts[i];
        expect_refused("A-ASSOCIATE-RQ fixed fields truncated", HDX_ABORT_INVALID_PARAM);
    }
    /* Trailing bytes too few for an item header. */
    b_minimal(&bb);
    b_u16(&bb, 0x1000);
    expect_refused("item header truncated", HDX_ABORT_INVALID_PARAM);
    /* A top-level item whose length runs past the body. */
    b_minimal(&bb);
    b_u8(&bb, 0x77);
    b_u8(&bb, 0);
    b_u16(&bb, 10);
    b_u32(&bb, 0);
    expect_refused("item overruns its parent", HDX_ABORT_INVALID_PARAM);
    /* A sub-item that runs past its presentation context (though not past the body). */
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    size_t at = b_open(&bb, 0x20);
    b_u32(&bb, 0x01000000);
    b_str(&bb, 0x30, VERIFICATION);
    b_u8(&bb, 0x40);
    b_u8(&bb, 0);
    b_u16(&bb, 200);
    b_close(&bb, at);
    b_user_min(&bb, 0);
    expect_refused("item overruns its parent", HDX_ABORT_INVALID_PARAM);
    /* A presentation context item shorter than its 4 fixed bytes. */
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_item(&bb, 0x20, "\x01\x00", 2);
    b_user_min(&bb, 0);
    expect_refused("presentation context item truncated", HDX_ABORT_INVALID_PARAM);
    /* Every proper prefix of a valid request is refused: the user information item comes
     * last, so a cut either splits an item or leaves it out. */
    b_full(&bb);
    size_t full = bb.n;
    for (size_t n = 0; n < full; n++) {
        const char *why = NULL;
        uint8_t reason = 0;
        assert_int_equal(hdx_ul_parse_assoc_rq(bb.p, n, &rq, &why, &reason), HDX_E_INVAL);
        assert_non_null(why);
        assert_true(reason == HDX_ABORT_INVALID_PARAM);
    }
}

static void test_refuse_ids(void **state)
{
    (void)state;
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 2, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("even presentation context ID", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 0, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("presentation context ID 0", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 5, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_pctx(&bb, 3, CT_STORAGE, TS_IMPLICIT, NULL, NULL);
    b_pctx(&bb, 5, CT_STORAGE, TS_EXPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("repeated presentation context ID", HDX_ABORT_INVALID_PARAM);
}

static void many_contexts(size_t n)
{
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    for (size_t i = 0; i < n; i++)
        b_pctx(&bb, (uint8_t)(2 * (i % 128) + 1), CT_STORAGE, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
}

static void test_refuse_context_count(void **state)
{
    const char *why;
    uint8_t reason;

    (void)state;
    many_contexts(HDX_UL_PCTX_MAX); /* every odd ID once: the most there can be */
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    assert_int_equal(rq.npctx, HDX_UL_PCTX_MAX);
    assert_int_equal(rq.pctx[127].id, 255);
    many_contexts(HDX_UL_PCTX_MAX + 1);
    expect_refused("too many presentation contexts", HDX_ABORT_INVALID_PARAM);
    many_contexts(200);
    expect_refused("too many presentation contexts", HDX_ABORT_INVALID_PARAM);
}

static void test_refuse_values(void **state)
{
    char uid65[HDX_UL_UID_MAX + 2];

    (void)state;
    memset(uid65, '2', HDX_UL_UID_MAX + 1);
    uid65[HDX_UL_UID_MAX + 1] = '\0';
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, uid65, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("UID over 64 bytes", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, uid65, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("UID over 64 bytes", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, NULL, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("presentation context without transfer syntax", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, NULL, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("presentation context without abstract syntax", HDX_ABORT_INVALID_PARAM);

    /* An embedded NUL would otherwise make this compare equal to Verification. */
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    size_t at = b_open(&bb, 0x20);
    b_u32(&bb, 0x01000000);
    b_item(&bb, 0x30,
           VERIFICATION "\0"
                        "9",
           strlen(VERIFICATION) + 2);
    b_str(&bb, 0x40, TS_IMPLICIT);
    b_close(&bb, at);
    b_user_min(&bb, 0);
    expect_refused("UID holds a byte other than a digit or '.'", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_item(&bb, 0x10, "", 0);
    expect_refused("empty UID", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "BAD\tAE");
    expect_refused("AE title holds a control character, backslash or non-ASCII byte",
                   HDX_ABORT_INVALID_PARAM);
    b_fixed(&bb, "HD\\X", "M");
    expect_refused("AE title holds a control character, backslash or non-ASCII byte",
                   HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    at = b_open(&bb, 0x20);
    b_u32(&bb, 0x01000000);
    b_str(&bb, 0x30, VERIFICATION);
    for (int i = 0; i <= HDX_UL_TS_MAX; i++)
        b_str(&bb, 0x40, TS_IMPLICIT);
    b_close(&bb, at);
    b_user_min(&bb, 0);
    expect_refused("too many transfer syntaxes", HDX_ABORT_INVALID_PARAM);
}

static void test_refuse_structure(void **state)
{
    (void)state;
    b_fixed(&bb, "HDX", "M");
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_user_min(&bb, 0);
    expect_refused("no application context", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    expect_refused("no user information", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_user_min(&bb, 0);
    expect_refused("no presentation context", HDX_ABORT_INVALID_PARAM);

    b_minimal(&bb);
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    expect_refused("repeated application context", HDX_ABORT_UNEXPECTED_PARAM);

    b_minimal(&bb);
    b_user_min(&bb, 0);
    expect_refused("repeated user information", HDX_ABORT_UNEXPECTED_PARAM);

    /* Two maximum lengths would leave two readings of one request. */
    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    size_t at = b_open(&bb, 0x50);
    b_item(&bb, 0x51, "\0\0\x40\0", 4);
    b_item(&bb, 0x51, "\0\x01\0\0", 4);
    b_close(&bb, at);
    expect_refused("repeated user information sub-item", HDX_ABORT_UNEXPECTED_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    at = b_open(&bb, 0x50);
    b_item(&bb, 0x51, "\0\x40\0", 3);
    b_close(&bb, at);
    expect_refused("maximum length item is not 4 bytes", HDX_ABORT_INVALID_PARAM);

    b_fixed(&bb, "HDX", "M");
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(&bb, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    at = b_open(&bb, 0x50);
    b_str(&bb, 0x55, "SEVENTEEN_CHARS_X");
    b_close(&bb, at);
    expect_refused("implementation version name over 16 bytes", HDX_ABORT_INVALID_PARAM);

    /* NULL arguments are refused, not dereferenced. */
    const char *why = NULL;
    uint8_t reason = 99;
    assert_int_equal(hdx_ul_parse_assoc_rq(NULL, 10, &rq, &why, &reason), HDX_E_INVAL);
    assert_non_null(why);
    assert_int_equal(hdx_ul_parse_assoc_rq(bb.p, bb.n, NULL, NULL, NULL), HDX_E_INVAL);
}

/* Deterministic single-byte corruption of a valid request: whatever parses is within bounds,
 * whatever is refused says why. Run under ASan this also proves no read leaves the body. */
static void test_corruption_loop(void **state)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    uint8_t *copy;

    (void)state;
    b_full(&bb);
    copy = malloc(bb.n);
    assert_non_null(copy);
    for (size_t i = 0; i < bb.n; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            const char *why = NULL;
            uint8_t reason = 0;
            memcpy(copy, bb.p, bb.n);
            copy[i] ^= masks[m];
            if (hdx_ul_parse_assoc_rq(copy, bb.n, &rq, &why, &reason) == HDX_OK) {
                assert_null(why);
                assert_true(rq.npctx >= 1 && rq.npctx <= HDX_UL_PCTX_MAX);
                for (size_t k = 0; k < rq.npctx; k++) {
                    assert_true(rq.pctx[k].id & 1);
                    assert_true(rq.pctx[k].nts >= 1 && rq.pctx[k].nts <= HDX_UL_TS_MAX);
                }
            } else {
                assert_non_null(why);
                assert_true(reason == HDX_ABORT_INVALID_PARAM ||
                            reason == HDX_ABORT_UNEXPECTED_PARAM);
            }
        }
    }
    free(copy);
}

/* ---------- negotiation and the A-ASSOCIATE-AC ---------- */

static int abstract_ok(const char *uid)
{
    return strcmp(uid, VERIFICATION) == 0 || strcmp(uid, CT_STORAGE) == 0;
}

static const char *const ts_pref[] = {TS_EXPLICIT, TS_IMPLICIT};

static void b_negotiable(struct b *b)
{
    b_fixed(b, "HDX", "MODALITY1");
    b_str(b, 0x10, HDX_UL_APP_CONTEXT);
    b_pctx(b, 1, VERIFICATION, TS_IMPLICIT, NULL, NULL);
    b_pctx(b, 3, CT_STORAGE, TS_JPEG, TS_IMPLICIT, TS_EXPLICIT);
    b_pctx(b, 5, "1.2.3.4.5", TS_EXPLICIT, NULL, NULL);
    b_pctx(b, 7, CT_STORAGE, TS_JPEG, NULL, NULL);
    size_t at = b_open(b, 0x50);
    b_item(b, 0x51, "\0\0\x80\0", 4);
    b_item(b, 0x53, "\0\x02\0\x02", 4);
    b_close(b, at);
}

static void test_negotiate(void **state)
{
    const char *why;
    uint8_t reason;

    (void)state;
    b_negotiable(&bb);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    hdx_ul_negotiate(&rq, abstract_ok, ts_pref, 2, &ac);
    assert_int_equal(ac.npctx, 4);
    assert_int_equal(ac.accepted, 2);
    assert_int_equal(ac.pctx[0].id, 1);
    assert_int_equal(ac.pctx[0].result, HDX_PCTX_ACCEPT);
    assert_string_equal(ac.pctx[0].ts, TS_IMPLICIT);
    assert_string_equal(ac.pctx[0].abstract_syntax, VERIFICATION);
    /* hdx's order wins over the proposal's: explicit before implicit */
    assert_int_equal(ac.pctx[1].id, 3);
    assert_int_equal(ac.pctx[1].result, HDX_PCTX_ACCEPT);
    assert_string_equal(ac.pctx[1].ts, TS_EXPLICIT);
    assert_string_equal(ac.pctx[1].abstract_syntax, CT_STORAGE);
    assert_int_equal(ac.pctx[2].id, 5);
    assert_int_equal(ac.pctx[2].result, HDX_PCTX_ABSTRACT_UNSUPPORTED);
    assert_string_equal(ac.pctx[2].ts, "");
    assert_string_equal(ac.pctx[2].abstract_syntax, "1.2.3.4.5");
    assert_int_equal(ac.pctx[3].id, 7);
    assert_int_equal(ac.pctx[3].result, HDX_PCTX_TS_UNSUPPORTED);
    assert_string_equal(ac.pctx[3].ts, "");
    assert_string_equal(ac.pctx[3].abstract_syntax, CT_STORAGE);

    /* No judge: nothing is acceptable. No preferences: no transfer syntax is. */
    hdx_ul_negotiate(&rq, NULL, ts_pref, 2, &ac);
    assert_int_equal(ac.accepted, 0);
    assert_int_equal(ac.pctx[0].result, HDX_PCTX_ABSTRACT_UNSUPPORTED);
    hdx_ul_negotiate(&rq, abstract_ok, NULL, 0, &ac);
    assert_int_equal(ac.accepted, 0);
    assert_int_equal(ac.pctx[0].result, HDX_PCTX_TS_UNSUPPORTED);
    assert_int_equal(ac.pctx[2].result, HDX_PCTX_ABSTRACT_UNSUPPORTED);
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks one item at *off: type, value, and moves past it. */
static const uint8_t *expect_item(const uint8_t *pdu, size_t end, size_t *off, uint8_t type,
                                  size_t len)
{
    assert_true(*off + 4 <= end);
    assert_int_equal(pdu[*off], type);
    assert_int_equal(pdu[*off + 1], 0);
    assert_int_equal(be16(pdu + *off + 2), len);
    assert_true(*off + 4 + len <= end);
    const uint8_t *v = pdu + *off + 4;
    *off += 4 + len;
    return v;
}

static void test_build_ac(void **state)
{
    static uint8_t pdu[4096];
    const char *why;
    uint8_t reason;
    const char *impl = "1.2.826.0.1.3680043.10.999";

    (void)state;
    b_negotiable(&bb);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    hdx_ul_negotiate(&rq, abstract_ok, ts_pref, 2, &ac);
    size_t n = hdx_ul_build_assoc_ac(&rq, &ac, 65536, impl, "HDX_1_0", pdu, sizeof(pdu));
    assert_true(n > 0);
    assert_int_equal(pdu[0], HDX_PDU_ASSOC_AC);
    assert_int_equal(pdu[1], 0);
    assert_int_equal(be32(pdu + 2), n - 6);
    assert_int_equal(be16(pdu + 6), 1);
    assert_int_equal(be16(pdu + 8), 0);
    assert_memory_equal(pdu + 10, "HDX             ", 16);
    assert_memory_equal(pdu + 26, "MODALITY1       ", 16);
    for (size_t i = 42; i < 74; i++)
        assert_int_equal(pdu[i], 0);
    size_t off = 74;
    const uint8_t *v = expect_item(pdu, n, &off, 0x10, strlen(HDX_UL_APP_CONTEXT));
    assert_memory_equal(v, HDX_UL_APP_CONTEXT, strlen(HDX_UL_APP_CONTEXT));
    /* one 0x21 per context, in order, each with one transfer syntax sub-item */
    static const struct {
        uint8_t id, result;
        const char *ts;
    } want[] = {
        {1, 0, TS_IMPLICIT},
        {3, 0, TS_EXPLICIT},
        {5, 3, TS_EXPLICIT}, /* rejected: the first proposed, value not tested */
        {7, 4, TS_JPEG},
    };
    for (size_t i = 0; i < 4; i++) {
        size_t tl = strlen(want[i].ts);
        v = expect_item(pdu, n, &off, 0x21, 4 + 4 + tl);
        assert_int_equal(v[0], want[i].id);
        assert_int_equal(v[1], 0);
        assert_int_equal(v[2], want[i].result);
        assert_int_equal(v[3], 0);
        size_t sub = (size_t)(v + 4 - pdu);
        const uint8_t *t = expect_item(pdu, n, &sub, 0x40, tl);
        assert_memory_equal(t, want[i].ts, tl);
        assert_int_equal(sub, off);
    }
    size_t ul = strlen(impl);
    size_t user_len = 8 + (4 + ul) + 8 + (4 + 7);
    expect_item(pdu, n, &off, 0x50, user_len);
    assert_int_equal(off, n); /* the user information item is the last */
    size_t u = off - user_len;
    v = expect_item(pdu, n, &u, 0x51, 4);
    assert_int_equal(be32(v), 65536);
    v = expect_item(pdu, n, &u, 0x52, ul);
    assert_memory_equal(v, impl, ul);
    v = expect_item(pdu, n, &u, 0x53, 4); /* proposed, so answered (1, 1) */
    assert_int_equal(be16(v), 1);
    assert_int_equal(be16(v + 2), 1);
    v = expect_item(pdu, n, &u, 0x55, 7);
    assert_memory_equal(v, "HDX_1_0", 7);
    assert_int_equal(u, n);

    /* One byte short: nothing. Without an async window proposed: no 0x53. */
    assert_int_equal(hdx_ul_build_assoc_ac(&rq, &ac, 65536, impl, "HDX_1_0", pdu, n - 1), 0);
    assert_int_equal(hdx_ul_build_assoc_ac(&rq, &ac, 65536, impl, "HDX_1_0", NULL, 0), 0);
    rq.async = 0;
    assert_int_equal(hdx_ul_build_assoc_ac(&rq, &ac, 65536, impl, "HDX_1_0", pdu, sizeof(pdu)),
                     n - 8);
    assert_int_equal(be32(pdu + 2), n - 8 - 6);
    /* An implementation version over 16 bytes is not sent truncated: nothing is built. */
    assert_int_equal(hdx_ul_build_assoc_ac(&rq, &ac, 0, impl, "SEVENTEEN_CHARS_X", pdu, 4096), 0);
}

/* The AC hdx builds for what dcmtk's echoscu proposes has the layout storescp's has
 * (captured: one accepted context, implicit little endian). */
static void test_build_ac_for_echoscu(void **state)
{
    static uint8_t pdu[1024];
    const char *why;
    uint8_t reason;

    (void)state;
    b_minimal(&bb);
    assert_int_equal(parse(&bb, &why, &reason), HDX_OK);
    hdx_ul_negotiate(&rq, abstract_ok, ts_pref, 2, &ac);
    size_t n = hdx_ul_build_assoc_ac(&rq, &ac, 16384, "1.2.3", "", pdu, sizeof(pdu));
    /* 6 + 68 + (4+21) + (4+4+4+17) + (4 + 8 + (4+5)) */
    assert_int_equal(n, 6 + 68 + 25 + 29 + 21);
    static const uint8_t pctx[] = {0x21, 0, 0, 25, 1, 0, 0, 0, 0x40, 0, 0, 17};
    assert_memory_equal(pdu + 99, pctx, sizeof(pctx));
    assert_memory_equal(pdu + 111, TS_IMPLICIT, 17);
    static const uint8_t user[] = {0x50, 0, 0, 17, 0x51, 0, 0, 4, 0, 0, 0x40, 0, 0x52, 0, 0, 5};
    assert_memory_equal(pdu + 128, user, sizeof(user));
}

/* ---------- the short PDUs ---------- */

static void test_build_short(void **state)
{
    uint8_t out[16];

    (void)state;
    static const uint8_t rj[] = {0x03, 0, 0, 0, 0, 4, 0, 1, 1, 7};
    memset(out, 0xee, sizeof(out));
    assert_int_equal(hdx_ul_build_assoc_rj(1, 1, 7, out, sizeof(out)), 10);
    assert_memory_equal(out, rj, 10);
    assert_int_equal(out[10], 0xee);
    assert_int_equal(hdx_ul_build_assoc_rj(1, 1, 7, out, 9), 0);

    static const uint8_t ab[] = {0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6};
    assert_int_equal(
        hdx_ul_build_abort(HDX_ABORT_SOURCE_PROVIDER, HDX_ABORT_INVALID_PARAM, out, sizeof(out)),
        10);
    assert_memory_equal(out, ab, 10);
    assert_int_equal(hdx_ul_build_abort(0, 0, out, 0), 0);
    assert_int_equal(hdx_ul_build_abort(0, 0, NULL, 16), 0);

    static const uint8_t rp[] = {0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0};
    memset(out, 0xee, sizeof(out));
    assert_int_equal(hdx_ul_build_release_rp(out, 10), 10);
    assert_memory_equal(out, rp, 10);
    assert_int_equal(hdx_ul_build_release_rp(out, 9), 0);

    uint8_t h[HDX_UL_PDATA_OVERHEAD];
    static const uint8_t pd[] = {0x04, 0, 0, 0, 0x01, 0x06, 0, 0, 0x01, 0x02, 3, 0x03};
    hdx_ul_pdata_header(h, 3, 0x03, 0x100);
    assert_memory_equal(h, pd, sizeof(pd));
}

/* ---------- P-DATA-TF ---------- */

static void test_pdv_walk(void **state)
{
    static const uint8_t two[] = {
        0, 0, 0, 5, 1, 0x03, 'a',  'b',  'c', /* command, last fragment */
        0, 0, 0, 2, 3, 0x00,                  /* an empty data fragment */
        0, 0, 0, 4, 3, 0x02, 0xde, 0xad,      /* last data fragment */
    };
    struct hdx_dcur c = hdx_dcur_make(two, sizeof(two));
    struct hdx_ul_pdv pdv;
    const char *why = "unset";

    (void)state;
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_OK);
    assert_null(why);
    assert_int_equal(pdv.pctx_id, 1);
    assert_int_equal(pdv.control, 3);
    assert_int_equal(pdv.len, 3);
    assert_ptr_equal(pdv.data, two + 6);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_OK);
    assert_int_equal(pdv.pctx_id, 3);
    assert_int_equal(pdv.control, 0);
    assert_int_equal(pdv.len, 0);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_OK);
    assert_int_equal(pdv.control, 2);
    assert_int_equal(pdv.len, 2);
    assert_ptr_equal(pdv.data, two + 21);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_NOTFOUND);
    assert_int_equal(hdx_dcur_left(&c), 0);

    /* An empty body has no PDV: NOTFOUND, for the caller to refuse. */
    c = hdx_dcur_make(two, 0);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_NOTFOUND);

    /* Item lengths 0 and 1 are refused; the cursor does not move and stays refused. */
    static const uint8_t zero[] = {0, 0, 0, 0, 0, 0, 0, 2, 1, 0};
    c = hdx_dcur_make(zero, sizeof(zero));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "PDV item length under 2");
    assert_int_equal(hdx_dcur_left(&c), sizeof(zero));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "P-DATA-TF body already refused");
    static const uint8_t one[] = {0, 0, 0, 1, 1};
    c = hdx_dcur_make(one, sizeof(one));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "PDV item length under 2");

    /* A second PDV that claims one byte more than is left. */
    static const uint8_t over[] = {0, 0, 0, 3, 1, 0, 'x', 0, 0, 0, 4, 1, 2, 'y'};
    c = hdx_dcur_make(over, sizeof(over));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_OK);
    assert_int_equal(pdv.len, 1);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "PDV item overruns the P-DATA-TF");
    assert_null(pdv.data);
    assert_int_equal(pdv.len, 0);
    /* A huge length does not wrap. */
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1, 0};
    c = hdx_dcur_make(huge, sizeof(huge));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "PDV item overruns the P-DATA-TF");
    /* Fewer than 4 bytes left for the length. */
    static const uint8_t truncated_tail[] = {0, 0, 0, 2, 1, 0, 0, 0};
    c = hdx_dcur_make(truncated_tail, sizeof(truncated_tail));
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_OK);
    assert_int_equal(hdx_ul_pdv_next(&c, &pdv, &why), HDX_E_INVAL);
    assert_string_equal(why, "PDV item length truncated");
}

/* ---------- the state machine ---------- */

static void expect_cell(int sta, int evt, enum hdx_ul_action act, int next)
{
    enum hdx_ul_state n = (enum hdx_ul_state)0;
    assert_int_equal(hdx_ul_transition((enum hdx_ul_state)sta, (enum hdx_ul_event)evt, &n), act);
    assert_int_equal(n, next);
}

static void test_transition_spot(void **state)
{
    (void)state;
    /* the cells hdx's acceptor lives by */
    expect_cell(1, 5, HDX_AE5, 2);
    expect_cell(2, 6, HDX_AE6, 3); /* Sta3 or Sta13: the session decides */
    expect_cell(2, 18, HDX_AA2, 1);
    expect_cell(2, 17, HDX_AA5, 1);
    expect_cell(2, 16, HDX_AA2, 1);
    expect_cell(2, 10, HDX_AA1, 13);
    expect_cell(3, 7, HDX_AE7, 6);
    expect_cell(3, 8, HDX_AE8, 13);
    expect_cell(6, 10, HDX_DT2, 6);
    expect_cell(6, 9, HDX_DT1, 6);
    expect_cell(6, 12, HDX_AR2, 8);
    expect_cell(6, 16, HDX_AA3, 1);
    expect_cell(6, 17, HDX_AA4, 1);
    expect_cell(6, 6, HDX_AA8, 13);
    expect_cell(7, 12, HDX_AR8, 10); /* release collision, acceptor side */
    expect_cell(7, 13, HDX_AR3, 1);
    expect_cell(8, 14, HDX_AR4, 13);
    expect_cell(8, 9, HDX_AR7, 8);
    expect_cell(10, 13, HDX_AR10, 12);
    expect_cell(13, 18, HDX_AA2, 1);
    expect_cell(13, 17, HDX_AR5, 1);
    expect_cell(13, 6, HDX_AA7, 13);
    expect_cell(13, 10, HDX_AA6, 13);
    expect_cell(13, 16, HDX_AA2, 1);
    expect_cell(4, 2, HDX_AE2, 5);
    /* Evt19 (an unrecognized or invalid PDU) aborts in every state where a PDU can arrive */
    expect_cell(2, 19, HDX_AA1, 13);
    for (int s = 3; s <= 12; s++)
        if (s != 4) expect_cell(s, 19, HDX_AA8, 13);
    expect_cell(4, 19, HDX_ACT_NONE, 4); /* no transport connection yet: no PDU */
    expect_cell(13, 19, HDX_AA7, 13);
    /* empty cells and out-of-range arguments */
    expect_cell(1, 19, HDX_ACT_NONE, 1);
    expect_cell(6, 7, HDX_ACT_NONE, 6);
    expect_cell(13, 15, HDX_ACT_NONE, 13);
    expect_cell(0, 1, HDX_ACT_NONE, 0);
    expect_cell(14, 1, HDX_ACT_NONE, 14);
    expect_cell(2, 0, HDX_ACT_NONE, 2);
    expect_cell(2, 20, HDX_ACT_NONE, 2);
    assert_int_equal(hdx_ul_transition(HDX_STA6, HDX_EVT10, NULL), HDX_DT2);
}

/* PS3.8 Table 9-10 again, as the standard prints it (one row per event, "state:action"),
 * and the next state of each action from Tables 9-6 to 9-9 (AE-6: Sta3 as ul.h says; AR-8:
 * Sta10, the acceptor's). Every one of the 247 cells must agree with ul.c's table. */
static const char *const table_by_event[HDX_UL_NEVENTS] = {
    "1:AE-1",
    "4:AE-2",
    "2:AA-1 3:AA-8 5:AE-3 6:AA-8 7:AA-8 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-6",
    "2:AA-1 3:AA-8 5:AE-4 6:AA-8 7:AA-8 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-6",
    "1:AE-5",
    "2:AE-6 3:AA-8 5:AA-8 6:AA-8 7:AA-8 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-7",
    "3:AE-7",
    "3:AE-8",
    "6:DT-1 8:AR-7",
    "2:AA-1 3:AA-8 5:AA-8 6:DT-2 7:AR-6 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-6",
    "6:AR-1",
    "2:AA-1 3:AA-8 5:AA-8 6:AR-2 7:AR-8 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-6",
    "2:AA-1 3:AA-8 5:AA-8 6:AA-8 7:AR-3 8:AA-8 9:AA-8 10:AR-10 11:AR-3 12:AA-8 13:AA-6",
    "8:AR-4 9:AR-9 12:AR-4",
    "3:AA-1 4:AA-2 5:AA-1 6:AA-1 7:AA-1 8:AA-1 9:AA-1 10:AA-1 11:AA-1 12:AA-1",
    "2:AA-2 3:AA-3 5:AA-3 6:AA-3 7:AA-3 8:AA-3 9:AA-3 10:AA-3 11:AA-3 12:AA-3 13:AA-2",
    "2:AA-5 3:AA-4 4:AA-4 5:AA-4 6:AA-4 7:AA-4 8:AA-4 9:AA-4 10:AA-4 11:AA-4 12:AA-4 13:AR-5",
    "2:AA-2 13:AA-2",
    "2:AA-1 3:AA-8 5:AA-8 6:AA-8 7:AA-8 8:AA-8 9:AA-8 10:AA-8 11:AA-8 12:AA-8 13:AA-7",
};

static const struct {
    const char *name;
    int next;
} next_of[] = {
    {"AE-1", 4},  {"AE-2", 5}, {"AE-3", 6}, {"AE-4", 1},  {"AE-5", 2},  {"AE-6", 3},   {"AE-7", 6},
    {"AE-8", 13}, {"DT-1", 6}, {"DT-2", 6}, {"AR-1", 7},  {"AR-2", 8},  {"AR-3", 1},   {"AR-4", 13},
    {"AR-5", 1},  {"AR-6", 7}, {"AR-7", 8}, {"AR-8", 10}, {"AR-9", 11}, {"AR-10", 12}, {"AA-1", 13},
    {"AA-2", 1},  {"AA-3", 1}, {"AA-4", 1}, {"AA-5", 1},  {"AA-6", 13}, {"AA-7", 13},  {"AA-8", 13},
};

static void test_transition_full(void **state)
{
    int cells = 0;

    (void)state;
    assert_int_equal(sizeof(next_of) / sizeof(next_of[0]), HDX_AA8);
    for (int e = 1; e <= HDX_UL_NEVENTS; e++) {
        char want[HDX_UL_NSTATES + 1][8];
        memset(want, 0, sizeof(want));
        const char *p = table_by_event[e - 1];
        int s, used;
        char act[8];
        while (sscanf(p, "%d:%7s%n", &s, act, &used) == 2) {
            assert_true(s >= 1 && s <= HDX_UL_NSTATES);
            memcpy(want[s], act, sizeof(act));
            p += used;
        }
        for (s = 1; s <= HDX_UL_NSTATES; s++) {
            enum hdx_ul_state n;
            enum hdx_ul_action a =
                hdx_ul_transition((enum hdx_ul_state)s, (enum hdx_ul_event)e, &n);
            if (want[s][0] == '\0') {
                assert_int_equal(a, HDX_ACT_NONE);
                assert_int_equal(n, s);
                continue;
            }
            assert_string_equal(hdx_ul_action_name(a), want[s]);
            int next = -1;
            for (size_t k = 0; k < sizeof(next_of) / sizeof(next_of[0]); k++)
                if (strcmp(next_of[k].name, want[s]) == 0) next = next_of[k].next;
            assert_int_equal(n, next);
            cells++;
        }
    }
    assert_int_equal(cells, 123); /* the non-empty cells of Table 9-10 */
}

static void test_events_and_names(void **state)
{
    (void)state;
    assert_int_equal(hdx_ul_pdu_event(1), HDX_EVT6);
    assert_int_equal(hdx_ul_pdu_event(2), HDX_EVT3);
    assert_int_equal(hdx_ul_pdu_event(3), HDX_EVT4);
    assert_int_equal(hdx_ul_pdu_event(4), HDX_EVT10);
    assert_int_equal(hdx_ul_pdu_event(5), HDX_EVT12);
    assert_int_equal(hdx_ul_pdu_event(6), HDX_EVT13);
    assert_int_equal(hdx_ul_pdu_event(7), HDX_EVT16);
    assert_int_equal(hdx_ul_pdu_event(0), HDX_EVT19);
    assert_int_equal(hdx_ul_pdu_event(8), HDX_EVT19);
    assert_int_equal(hdx_ul_pdu_event(0xff), HDX_EVT19);
    assert_string_equal(hdx_ul_action_name(HDX_AE6), "AE-6");
    assert_string_equal(hdx_ul_action_name(HDX_AR10), "AR-10");
    assert_string_equal(hdx_ul_action_name(HDX_AA8), "AA-8");
    assert_string_equal(hdx_ul_action_name(HDX_ACT_NONE), "none");
    assert_string_equal(hdx_ul_action_name((enum hdx_ul_action)99), "?");
    assert_string_equal(hdx_ul_state_name(HDX_STA1), "Sta1");
    assert_string_equal(hdx_ul_state_name(HDX_STA13), "Sta13");
    assert_string_equal(hdx_ul_state_name((enum hdx_ul_state)0), "Sta?");
    assert_string_equal(hdx_ul_state_name((enum hdx_ul_state)14), "Sta?");
}

/* ---------- a real peer ---------- */

/* The A-ASSOCIATE-RQ dcmtk 3.6.7 sends for
 * `echoscu -aet HDXTEST -aec HDX 127.0.0.1 PORT`, captured on loopback (whole PDU). */
static void test_echoscu_capture(void **state)
{
    static uint8_t pdu[4096];
    const char *dir = getenv("HDX_TEST_DATA");
    char path[1024];
    uint8_t type;
    uint32_t len;
    const char *why;
    uint8_t reason;

    (void)state;
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/dicom/echoscu-assoc-rq.bin", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(pdu, 1, sizeof(pdu), f);
    fclose(f);
    assert_int_equal(hdx_ul_pdu_header(pdu, n, &type, &len), HDX_OK);
    assert_int_equal(type, HDX_PDU_ASSOC_RQ);
    assert_int_equal(len, n - HDX_UL_HEADER_LEN);
    assert_int_equal(hdx_ul_pdu_event(type), HDX_EVT6);
    assert_int_equal(hdx_ul_parse_assoc_rq(pdu + 6, len, &rq, &why, &reason), HDX_OK);
    assert_int_equal(rq.protocol_version, 1);
    assert_string_equal(rq.calling, "HDXTEST");
    assert_string_equal(rq.called, "HDX");
    assert_string_equal(rq.app_context, HDX_UL_APP_CONTEXT);
    assert_int_equal(rq.npctx, 1);
    assert_int_equal(rq.pctx[0].id, 1);
    assert_string_equal(rq.pctx[0].abstract_syntax, VERIFICATION);
    assert_int_equal(rq.pctx[0].nts, 1);
    assert_string_equal(rq.pctx[0].ts[0], TS_IMPLICIT);
    assert_int_equal(rq.max_pdu, 16384);
    assert_string_equal(rq.impl_class, "1.2.276.0.7230010.3.0.3.6.7");
    assert_string_equal(rq.impl_version, "OFFIS_DCMTK_367");
    assert_int_equal(rq.async, 0);
    hdx_ul_negotiate(&rq, abstract_ok, ts_pref, 2, &ac);
    assert_int_equal(ac.accepted, 1);
    assert_string_equal(ac.pctx[0].ts, TS_IMPLICIT);
}

/* ---------- requestor side: A-ASSOCIATE-RQ builder ---------- */

#define MR_STORAGE "1.2.840.10008.5.1.4.1.1.4"
#define TS_RLE "1.2.840.10008.1.2.5"

static struct hdx_ul_assoc_rq src, back;

static void set_str(char *dst, size_t cap, const char *s)
{
    assert_true(strlen(s) < cap);
    memset(dst, 0, cap);
    memcpy(dst, s, strlen(s));
}

static void add_pctx(struct hdx_ul_assoc_rq *r, uint8_t id, const char *as, size_t nts,
                     const char *const *ts)
{
    struct hdx_ul_pctx *pc = &r->pctx[r->npctx++];
    pc->id = id;
    set_str(pc->abstract_syntax, sizeof(pc->abstract_syntax), as);
    pc->nts = (uint8_t)nts;
    for (size_t k = 0; k < nts; k++)
        set_str(pc->ts[k], sizeof(pc->ts[k]), ts[k]);
}

/* A request as a route would build it, with several contexts and TS lists of 1, 3 and 32,
 * a 16-character AE title and a 64-byte UID. The fields the builder does not take from the
 * struct (protocol version 1, the standard application context, no async window) are set
 * to what a parse gives back, so the whole struct can be compared. */
static void src_request(struct hdx_ul_assoc_rq *r)
{
    static const char *const one[] = {TS_IMPLICIT};
    static const char *const three[] = {TS_JPEG, TS_EXPLICIT, TS_IMPLICIT};
    const char *many[HDX_UL_TS_MAX];
    static char uid64[HDX_UL_UID_MAX + 1];

    memset(r, 0, sizeof(*r));
    r->protocol_version = 1;
    set_str(r->called, sizeof(r->called), "ABCDEFGHIJKLMNOP");
    set_str(r->calling, sizeof(r->calling), "HDX_ROUTE");
    set_str(r->app_context, sizeof(r->app_context), HDX_UL_APP_CONTEXT);
    memset(uid64, '7', HDX_UL_UID_MAX);
    uid64[0] = '1';
    uid64[1] = '.';
    uid64[HDX_UL_UID_MAX] = '\0';
    add_pctx(r, 1, VERIFICATION, 1, one);
    add_pctx(r, 3, CT_STORAGE, 3, three);
    for (size_t k = 0; k < HDX_UL_TS_MAX; k++)
        many[k] = k % 2 ? TS_EXPLICIT : uid64;
    add_pctx(r, 5, MR_STORAGE, HDX_UL_TS_MAX, many);
    add_pctx(r, 255, uid64, 1, one);
    r->max_pdu = 16384;
    set_str(r->impl_class, sizeof(r->impl_class), "1.2.826.0.1.3680043.9.1"); /* odd length */
    set_str(r->impl_version, sizeof(r->impl_version), "HDX_TEST_1");
}

static void expect_rq_equal(const struct hdx_ul_assoc_rq *a, const struct hdx_ul_assoc_rq *b)
{
    assert_int_equal(a->protocol_version, b->protocol_version);
    assert_string_equal(a->called, b->called);
    assert_string_equal(a->calling, b->calling);
    assert_string_equal(a->app_context, b->app_context);
    assert_int_equal(a->npctx, b->npctx);
    for (size_t i = 0; i < a->npctx; i++) {
        assert_int_equal(a->pctx[i].id, b->pctx[i].id);
        assert_string_equal(a->pctx[i].abstract_syntax, b->pctx[i].abstract_syntax);
        assert_int_equal(a->pctx[i].nts, b->pctx[i].nts);
        for (size_t k = 0; k < a->pctx[i].nts; k++)
            assert_string_equal(a->pctx[i].ts[k], b->pctx[i].ts[k]);
    }
    assert_int_equal(a->max_pdu, b->max_pdu);
    assert_string_equal(a->impl_class, b->impl_class);
    assert_string_equal(a->impl_version, b->impl_version);
    assert_int_equal(a->async, b->async);
    assert_memory_equal(a, b, sizeof(*a)); /* and nothing else differs */
}

/* Builds src into pdu, checks the header, parses the body back into back. */
static size_t build_and_parse(const struct hdx_ul_assoc_rq *r, uint8_t *pdu, size_t cap)
{
    const char *why = "unset";
    uint8_t reason = 99, type = 0;
    uint32_t len = 0;
    size_t n = hdx_ul_build_assoc_rq(r, pdu, cap);

    assert_true(n > HDX_UL_HEADER_LEN);
    assert_int_equal(hdx_ul_pdu_header(pdu, n, &type, &len), HDX_OK);
    assert_int_equal(type, HDX_PDU_ASSOC_RQ);
    assert_int_equal(pdu[1], 0);
    assert_int_equal(len, n - HDX_UL_HEADER_LEN);
    assert_int_equal(hdx_ul_parse_assoc_rq(pdu + HDX_UL_HEADER_LEN, len, &back, &why, &reason),
                     HDX_OK);
    assert_null(why);
    return n;
}

static void test_build_rq_round_trip(void **state)
{
    static uint8_t pdu[HDX_UL_HEADER_LEN + HDX_UL_RQ_MAX];

    (void)state;
    src_request(&src);
    size_t n = build_and_parse(&src, pdu, sizeof(pdu));
    expect_rq_equal(&back, &src);
    /* the fixed fields as PS3.8 9.3.2 lays them out */
    assert_int_equal(be16(pdu + 6), 1);
    assert_int_equal(be16(pdu + 8), 0);
    assert_memory_equal(pdu + 10, "ABCDEFGHIJKLMNOP", 16);
    assert_memory_equal(pdu + 26, "HDX_ROUTE       ", 16);
    for (size_t i = 42; i < 74; i++)
        assert_int_equal(pdu[i], 0);

    /* Unlimited max PDU, no implementation class or version: left out, read back empty. */
    src.max_pdu = 0;
    memset(src.impl_class, 0, sizeof(src.impl_class));
    memset(src.impl_version, 0, sizeof(src.impl_version));
    size_t n2 = build_and_parse(&src, pdu, sizeof(pdu));
    expect_rq_equal(&back, &src);
    assert_int_equal(n2, n - (4 + strlen("1.2.826.0.1.3680043.9.1")) - (4 + strlen("HDX_TEST_1")));
    /* the user information item holds exactly the max length sub-item */
    static const uint8_t user[] = {0x50, 0, 0, 8, 0x51, 0, 0, 4, 0, 0, 0, 0};
    assert_memory_equal(pdu + n2 - sizeof(user), user, sizeof(user));

    /* The most there can be: 128 contexts. */
    memset(&src, 0, sizeof(src));
    src.protocol_version = 1;
    set_str(src.called, sizeof(src.called), "HDX");
    set_str(src.calling, sizeof(src.calling), "M");
    set_str(src.app_context, sizeof(src.app_context), HDX_UL_APP_CONTEXT);
    for (size_t i = 0; i < HDX_UL_PCTX_MAX; i++) {
        static const char *const ts[] = {TS_EXPLICIT, TS_IMPLICIT};
        add_pctx(&src, (uint8_t)(2 * i + 1), i % 2 ? CT_STORAGE : MR_STORAGE, 1 + i % 2, ts);
    }
    build_and_parse(&src, pdu, sizeof(pdu));
    expect_rq_equal(&back, &src);
}

static void test_build_rq_cap(void **state)
{
    static uint8_t pdu[8192];

    (void)state;
    src_request(&src);
    size_t n = hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu));
    assert_true(n > 0);
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, n), n); /* exactly n is enough */
    /* every smaller cap builds nothing and writes nothing past the cap */
    for (size_t cap = 0; cap < n; cap++) {
        memset(pdu, 0xee, n + 16);
        assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, cap), 0);
        for (size_t i = cap; i < n + 16; i++)
            assert_int_equal(pdu[i], 0xee);
    }
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, n - 1), 0);
    assert_int_equal(hdx_ul_build_assoc_rq(&src, NULL, 0), 0);
    assert_int_equal(hdx_ul_build_assoc_rq(&src, NULL, sizeof(pdu)), 0);
    assert_int_equal(hdx_ul_build_assoc_rq(NULL, pdu, sizeof(pdu)), 0);
}

static void test_build_rq_refused(void **state)
{
    static uint8_t pdu[8192];

    (void)state;
    src_request(&src);
    assert_true(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)) > 0);

    /* an even context ID, 0 among them */
    static const uint8_t even[] = {0, 2, 4, 128, 254};
    for (size_t i = 0; i < sizeof(even); i++) {
        src_request(&src);
        src.pctx[2].id = even[i];
        assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    }
    /* nts 0 (first, middle and last context) and nts over HDX_UL_TS_MAX */
    for (size_t i = 0; i < 4; i++) {
        src_request(&src);
        src.pctx[i].nts = 0;
        assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    }
    src_request(&src);
    src.pctx[1].nts = HDX_UL_TS_MAX + 1;
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    /* no context, more than HDX_UL_PCTX_MAX */
    src_request(&src);
    src.npctx = 0;
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    src.npctx = HDX_UL_PCTX_MAX + 1;
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    /* a UID field filled to its end (65 bytes, no NUL): over 64, not sent cut */
    src_request(&src);
    memset(src.pctx[1].abstract_syntax, '1', sizeof(src.pctx[1].abstract_syntax));
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    src_request(&src);
    memset(src.pctx[1].ts[2], '1', sizeof(src.pctx[1].ts[2]));
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    src_request(&src);
    memset(src.impl_class, '1', sizeof(src.impl_class));
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
    src_request(&src);
    memset(src.impl_version, 'V', sizeof(src.impl_version));
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
}

/* BUG (reported, dicom/ul.c hdx_ul_build_assoc_rq): ul.h promises 0 when "rq is not well
 * formed", and its contexts are "odd IDs, each an abstract syntax and 1..HDX_UL_TS_MAX
 * transfer syntaxes". Two contexts with one ID, or a context whose abstract syntax or
 * transfer syntax is "", are built anyway, into a request hdx_ul_parse_assoc_rq (any
 * acceptor) refuses ("repeated presentation context ID", "empty UID"). */
static void test_build_rq_repeated_id(void **state)
{
    static uint8_t pdu[8192];

    (void)state;
    src_request(&src);
    src.pctx[3].id = src.pctx[1].id;
    assert_int_equal(hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu)), 0);
}

static void test_build_rq_empty_uid(void **state)
{
    static uint8_t pdu[8192];
    size_t n_abstract, n_ts;

    (void)state;
    src_request(&src);
    memset(src.pctx[1].abstract_syntax, 0, sizeof(src.pctx[1].abstract_syntax));
    n_abstract = hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu));
    src_request(&src);
    memset(src.pctx[1].ts[1], 0, sizeof(src.pctx[1].ts[1]));
    n_ts = hdx_ul_build_assoc_rq(&src, pdu, sizeof(pdu));
    assert_int_equal(n_abstract, 0);
    assert_int_equal(n_ts, 0);
}

/* ---------- requestor side: A-ASSOCIATE-AC parser ---------- */

static struct hdx_ul_assoc_ac got;
static const struct hdx_ul_assoc_ac zero_ac;

/* The proposal the hand-built answers below answer: 1 Verification (implicit), 3 CT (JPEG,
 * explicit, implicit), 5 MR (explicit), 7 an unknown class (explicit). */
static void ac_proposal(struct hdx_ul_assoc_rq *r)
{
    static const char *const imp[] = {TS_IMPLICIT};
    static const char *const three[] = {TS_JPEG, TS_EXPLICIT, TS_IMPLICIT};
    static const char *const exp[] = {TS_EXPLICIT};

    memset(r, 0, sizeof(*r));
    r->protocol_version = 1;
    set_str(r->called, sizeof(r->called), "PACS");
    set_str(r->calling, sizeof(r->calling), "HDX");
    set_str(r->app_context, sizeof(r->app_context), HDX_UL_APP_CONTEXT);
    add_pctx(r, 1, VERIFICATION, 1, imp);
    add_pctx(r, 3, CT_STORAGE, 3, three);
    add_pctx(r, 5, MR_STORAGE, 1, exp);
    add_pctx(r, 7, "1.2.3.4.5", 1, exp);
    r->max_pdu = 65536;
}

static int ac_abstract_ok(const char *uid)
{
    return strcmp(uid, VERIFICATION) == 0 || strcmp(uid, CT_STORAGE) == 0 ||
           strcmp(uid, MR_STORAGE) == 0;
}

static void test_parse_ac_round_trip(void **state)
{
    static uint8_t pdu[4096];
    static const char *const pref[] = {TS_EXPLICIT, TS_IMPLICIT};
    uint32_t max = 1;
    const char *why = "unset";

    (void)state;
    ac_proposal(&src);
    /* MR explicit is accepted, CT gets explicit (hdx's order), 7 is not a known class */
    hdx_ul_negotiate(&src, ac_abstract_ok, pref, 2, &ac);
    assert_int_equal(ac.accepted, 3);
    size_t n = hdx_ul_build_assoc_ac(&src, &ac, 32768, "1.2.3", "PEER_1", pdu, sizeof(pdu));
    assert_true(n > 0);
    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(hdx_ul_parse_assoc_ac(pdu + 6, n - 6, &src, &got, &max, &why), HDX_OK);
    assert_null(why);
    assert_int_equal(max, 32768);
    assert_int_equal(got.npctx, ac.npctx);
    assert_int_equal(got.accepted, ac.accepted);
    for (size_t i = 0; i < ac.npctx; i++) {
        assert_int_equal(got.pctx[i].id, ac.pctx[i].id);
        assert_int_equal(got.pctx[i].result, ac.pctx[i].result);
        assert_string_equal(got.pctx[i].ts, ac.pctx[i].ts);
        assert_string_equal(got.pctx[i].abstract_syntax, src.pctx[i].abstract_syntax);
    }
    assert_int_equal(got.pctx[3].result, HDX_PCTX_ABSTRACT_UNSUPPORTED);
    assert_string_equal(got.pctx[3].ts, ""); /* the AC carries TS_EXPLICIT there: ignored */
    assert_memory_equal(&got, &ac, sizeof(got));

    /* Nothing acceptable: every context rejected, max 0 (unlimited), NULL max_pdu allowed. */
    hdx_ul_negotiate(&src, ac_abstract_ok, NULL, 0, &ac);
    n = hdx_ul_build_assoc_ac(&src, &ac, 0, "", "", pdu, sizeof(pdu));
    max = 7;
    assert_int_equal(hdx_ul_parse_assoc_ac(pdu + 6, n - 6, &src, &got, &max, &why), HDX_OK);
    assert_int_equal(max, 0);
    assert_int_equal(got.accepted, 0);
    assert_int_equal(got.npctx, 4);
    assert_memory_equal(&got, &ac, sizeof(got));
    assert_int_equal(hdx_ul_parse_assoc_ac(pdu + 6, n - 6, &src, &got, NULL, NULL), HDX_OK);

    /* An answer for the echoscu request, as storescp sends it (dcmtk capture, the fuzz
     * seed storescp_assoc_ac.bin): one context, implicit VR LE, max 16384. */
    static const uint8_t storescp[] = {
        0x00, 0x01, 0x00, 0x00, 'H',  'D',  'X',  ' ',  ' ',  ' ',  ' ',  ' ',  ' ',  ' ',  ' ',
        ' ',  ' ',  ' ',  ' ',  ' ',  'H',  'D',  'X',  'T',  'E',  'S',  'T',  ' ',  ' ',  ' ',
        ' ',  ' ',  ' ',  ' ',  ' ',  ' ',  0,    0,    0,    0,    0,    0,    0,    0,    0,
        0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
        0,    0,    0,    0,    0,    0,    0,    0,    0x10, 0x00, 0x00, 0x15, '1',  '.',  '2',
        '.',  '8',  '4',  '0',  '.',  '1',  '0',  '0',  '0',  '8',  '.',  '3',  '.',  '1',  '.',
        '1',  '.',  '1',  0x21, 0x00, 0x00, 0x19, 0x01, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x11,
        '1',  '.',  '2',  '.',  '8',  '4',  '0',  '.',  '1',  '0',  '0',  '0',  '8',  '.',  '1',
        '.',  '2',  0x50, 0x00, 0x00, 0x3a, 0x51, 0x00, 0x00, 0x04, 0x00, 0x00, 0x40, 0x00, 0x52,
        0x00, 0x00, 0x1b, '1',  '.',  '2',  '.',  '2',  '7',  '6',  '.',  '0',  '.',  '7',  '2',
        '3',  '0',  '0',  '1',  '0',  '.',  '3',  '.',  '0',  '.',  '3',  '.',  '6',  '.',  '7',
        0x55, 0x00, 0x00, 0x0f, 'O',  'F',  'F',  'I',  'S',  '_',  'D',  'C',  'M',  'T',  'K',
        '_',  '3',  '6',  '7',
    };
    b_minimal(&bb);
    const char *w2;
    uint8_t reason;
    assert_int_equal(parse(&bb, &w2, &reason), HDX_OK);
    assert_int_equal(sizeof(storescp), 0xb8);
    assert_int_equal(hdx_ul_parse_assoc_ac(storescp, sizeof(storescp), &rq, &got, &max, &why),
                     HDX_OK);
    assert_int_equal(max, 16384);
    assert_int_equal(got.npctx, 1);
    assert_int_equal(got.accepted, 1);
    assert_int_equal(got.pctx[0].id, 1);
    assert_int_equal(got.pctx[0].result, HDX_PCTX_ACCEPT);
    assert_string_equal(got.pctx[0].ts, TS_IMPLICIT);
    assert_string_equal(got.pctx[0].abstract_syntax, VERIFICATION);
}

/* Hand-built answers. */
static void b_ac_start(struct b *b)
{
    b_fixed(b, "PACS", "HDX");
    b_str(b, 0x10, HDX_UL_APP_CONTEXT);
}

static void b_ac_pctx(struct b *b, uint8_t id, uint8_t result, const char *ts)
{
    size_t at = b_open(b, 0x21);
    b_u8(b, id);
    b_u8(b, 0);
    b_u8(b, result);
    b_u8(b, 0);
    if (ts) b_str(b, 0x40, ts);
    b_close(b, at);
}

static void b_ac_user(struct b *b, uint32_t max)
{
    size_t at = b_open(b, 0x50);
    size_t m = b_open(b, 0x51);
    b_u32(b, max);
    b_close(b, m);
    b_str(b, 0x52, "1.2.3.4");
    b_close(b, at);
}

/* User information first (so max_pdu is set before the refusal), then a good context (so
 * ac holds something before it), then what the caller adds. */
static void b_ac_prefix(struct b *b)
{
    b_ac_start(b);
    b_ac_user(b, 16384);
    b_ac_pctx(b, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
}

static void expect_ac_refused(const uint8_t *body, size_t len, const char *expect_why)
{
    const char *why = NULL;
    uint32_t max = 0xdeadbeef;

    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(hdx_ul_parse_assoc_ac(body, len, &src, &got, &max, &why), HDX_E_INVAL);
    assert_non_null(why);
    assert_true((uintptr_t)why < (uintptr_t)body || (uintptr_t)why >= (uintptr_t)(body + len));
    if (expect_why) assert_string_equal(why, expect_why);
    assert_memory_equal(&got, &zero_ac, sizeof(got));
    assert_int_equal(max, 0);
}

static void ac_refused(const char *expect_why)
{
    /* parsed from an exact-size heap copy, so ASan sees any read past the body */
    uint8_t *p = malloc(bb.n ? bb.n : 1);
    assert_non_null(p);
    memcpy(p, bb.p, bb.n);
    expect_ac_refused(p, bb.n, expect_why);
    free(p);
}

static void ac_accepted(void)
{
    const char *why = "unset";
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, &src, &got, NULL, &why), HDX_OK);
    assert_null(why);
}

static void test_parse_ac_refused(void **state)
{
    (void)state;
    ac_proposal(&src);
    /* the prefix alone is a good answer: only what follows is refused */
    b_ac_prefix(&bb);
    ac_accepted();
    assert_int_equal(got.npctx, 1);
    assert_int_equal(got.accepted, 1);

    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 9, HDX_PCTX_ACCEPT, TS_EXPLICIT);
    ac_refused("answer for a presentation context not proposed");
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 2, HDX_PCTX_USER_REJECT, TS_EXPLICIT); /* even, never proposed */
    ac_refused("answer for a presentation context not proposed");

    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 3, HDX_PCTX_ACCEPT, TS_EXPLICIT);
    b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
    ac_refused("repeated presentation context ID");
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 1, HDX_PCTX_NO_REASON, TS_IMPLICIT); /* also when the second is a reject */
    ac_refused("repeated presentation context ID");

    /* accepted in a syntax proposed, but for another context (CT proposed JPEG, MR not) */
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 5, HDX_PCTX_ACCEPT, TS_JPEG);
    ac_refused("accepted transfer syntax was not proposed for that context");
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 3, HDX_PCTX_ACCEPT, TS_RLE); /* proposed nowhere */
    ac_refused("accepted transfer syntax was not proposed for that context");
    /* accepted without a transfer syntax, or with two */
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 3, HDX_PCTX_ACCEPT, NULL);
    ac_refused("accepted context without transfer syntax");
    b_ac_prefix(&bb);
    size_t at = b_open(&bb, 0x21);
    b_u32(&bb, 0x03000000);
    b_str(&bb, 0x40, TS_EXPLICIT);
    b_str(&bb, 0x40, TS_EXPLICIT);
    b_close(&bb, at);
    ac_refused("repeated transfer syntax");
    /* an accepted transfer syntax that is not a UID */
    b_ac_prefix(&bb);
    b_ac_pctx(&bb, 3, HDX_PCTX_ACCEPT, "1.2.840.10008.1.2.1x");
    ac_refused(NULL);

    /* results 0..4 are PS3.8's; 5 and up are refused */
    for (unsigned r = 5; r <= 255; r += 25) {
        b_ac_prefix(&bb);
        b_ac_pctx(&bb, 3, (uint8_t)r, TS_EXPLICIT);
        ac_refused("presentation context result out of range");
    }
    for (uint8_t r = 1; r <= 4; r++) {
        b_ac_prefix(&bb);
        b_ac_pctx(&bb, 3, r, TS_EXPLICIT);
        ac_accepted();
        assert_int_equal(got.pctx[1].result, r);
    }

    /* truncated fixed fields: every length under 68 */
    b_ac_prefix(&bb);
    for (size_t n = 0; n < 68; n++) {
        uint8_t *p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, bb.p, n);
        expect_ac_refused(p, n, "A-ASSOCIATE-AC fixed fields truncated");
        free(p);
    }
    /* a presentation context item shorter than its 4 fixed bytes */
    b_ac_prefix(&bb);
    b_item(&bb, 0x21, "\x03\x00\x00", 3);
    ac_refused("presentation context item truncated");

    /* items overrunning: a top-level one past the body, a sub-item past its context, a
     * sub-item past the user information, a header cut short */
    b_ac_prefix(&bb);
    b_u8(&bb, 0x21);
    b_u8(&bb, 0);
    b_u16(&bb, 40);
    b_u32(&bb, 0x03000000);
    ac_refused("item overruns its parent");
    b_ac_prefix(&bb);
    at = b_open(&bb, 0x21);
    b_u32(&bb, 0x03000000);
    b_u8(&bb, 0x40);
    b_u8(&bb, 0);
    b_u16(&bb, 30);
    b_close(&bb, at);
    b_ac_pctx(&bb, 5, 0, TS_EXPLICIT); /* 30 more bytes there are, but not in the item */
    ac_refused("item overruns its parent");
    b_ac_start(&bb);
    b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
    at = b_open(&bb, 0x50);
    b_u8(&bb, 0x51);
    b_u8(&bb, 0);
    b_u16(&bb, 8);
    b_u32(&bb, 16384);
    b_close(&bb, at);
    b_ac_pctx(&bb, 3, 0, TS_EXPLICIT);
    ac_refused("item overruns its parent");
    b_ac_prefix(&bb);
    b_u16(&bb, 0x2100);
    ac_refused("item header truncated");

    /* no application context, or two */
    b_fixed(&bb, "PACS", "HDX");
    b_ac_user(&bb, 16384);
    b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
    ac_refused("no application context");
    b_ac_prefix(&bb);
    b_str(&bb, 0x10, HDX_UL_APP_CONTEXT);
    ac_refused("repeated application context");
    /* no user information, or two */
    b_ac_start(&bb);
    b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
    ac_refused("no user information");
    b_ac_prefix(&bb);
    b_ac_user(&bb, 16384);
    ac_refused("repeated user information");

    /* a maximum length sub-item of 3 or 5 bytes, or two of them */
    static const struct {
        const char *v;
        size_t n;
    } badmax[] = {{"\0\x40\0", 3}, {"\0\0\x40\0\0", 5}, {"", 0}};
    for (size_t i = 0; i < sizeof(badmax) / sizeof(badmax[0]); i++) {
        b_ac_start(&bb);
        b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
        at = b_open(&bb, 0x50);
        b_item(&bb, 0x51, badmax[i].v, badmax[i].n);
        b_close(&bb, at);
        ac_refused("bad maximum length item");
    }
    b_ac_start(&bb);
    b_ac_pctx(&bb, 1, HDX_PCTX_ACCEPT, TS_IMPLICIT);
    at = b_open(&bb, 0x50);
    b_item(&bb, 0x51, "\0\0\x40\0", 4);
    b_item(&bb, 0x51, "\0\0\x40\0", 4);
    b_close(&bb, at);
    ac_refused("bad maximum length item");

    /* NULL arguments */
    const char *why = NULL;
    memset(&got, 0xa5, sizeof(got));
    assert_int_equal(hdx_ul_parse_assoc_ac(NULL, 10, &src, &got, NULL, &why), HDX_E_INVAL);
    assert_non_null(why);
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, NULL, &got, NULL, &why), HDX_E_INVAL);
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, &src, NULL, NULL, NULL), HDX_E_INVAL);
}

/* A body exactly HDX_UL_RQ_MAX long parses; one byte more is refused. */
static void test_parse_ac_max(void **state)
{
    static uint8_t fill[0xFFFF];
    uint32_t max = 0;
    const char *why;

    (void)state;
    ac_proposal(&src);
    b_ac_prefix(&bb);
    size_t pad = HDX_UL_RQ_MAX - bb.n;
    while (pad > 0) {
        size_t v = pad - 4 > 0xFFFF ? 0xFFFF : pad - 4;
        if (pad - 4 - v > 0 && pad - 4 - v < 4) v -= 4;
        b_item(&bb, 0x77, fill, v); /* unknown items: skipped */
        pad -= v + 4;
    }
    assert_int_equal(bb.n, HDX_UL_RQ_MAX);
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, &src, &got, &max, &why), HDX_OK);
    assert_int_equal(got.npctx, 1);
    assert_int_equal(max, 16384);
    b_u8(&bb, 0);
    ac_refused("A-ASSOCIATE-AC over 64 KiB");
}

/* A rejected context's transfer syntax is not tested (PS3.8 9.3.3.2): any value, an empty
 * one or none at all, and ts reads "". Unknown items and sub-items are skipped. */
static void test_parse_ac_rejected_ts(void **state)
{
    uint32_t max = 0;
    const char *why;

    (void)state;
    ac_proposal(&src);
    b_ac_start(&bb);
    b_item(&bb, 0x99, "xyz", 3);
    b_ac_pctx(&bb, 7, HDX_PCTX_ABSTRACT_UNSUPPORTED, "not a UID at all!");
    b_ac_pctx(&bb, 5, HDX_PCTX_TS_UNSUPPORTED, "");
    b_ac_pctx(&bb, 3, HDX_PCTX_USER_REJECT, NULL);
    size_t at = b_open(&bb, 0x21);
    b_u32(&bb, 0x01000000);
    b_item(&bb, 0x5f, "\x01\x02", 2); /* unknown sub-item in a context */
    b_item(&bb, 0x40, TS_IMPLICIT "\0", strlen(TS_IMPLICIT) + 1); /* NUL pad */
    b_close(&bb, at);
    at = b_open(&bb, 0x50);
    b_item(&bb, 0x58, "\x00\x01", 2);
    b_item(&bb, 0x51, "\0\x01\0\0", 4);
    b_close(&bb, at);
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, &src, &got, &max, &why), HDX_OK);
    assert_int_equal(max, 65536);
    assert_int_equal(got.npctx, 4);
    assert_int_equal(got.accepted, 1);
    static const struct {
        uint8_t id, result;
        const char *as;
    } want[] = {{7, 3, "1.2.3.4.5"}, {5, 4, MR_STORAGE}, {3, 1, CT_STORAGE}, {1, 0, VERIFICATION}};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(got.pctx[i].id, want[i].id);
        assert_int_equal(got.pctx[i].result, want[i].result);
        assert_string_equal(got.pctx[i].abstract_syntax, want[i].as);
        assert_string_equal(got.pctx[i].ts, i == 3 ? TS_IMPLICIT : "");
    }
    /* An AC with no presentation context at all parses (the caller finds nothing usable);
     * without a max length sub-item the maximum is 0. */
    b_ac_start(&bb);
    at = b_open(&bb, 0x50);
    b_close(&bb, at);
    max = 99;
    assert_int_equal(hdx_ul_parse_assoc_ac(bb.p, bb.n, &src, &got, &max, &why), HDX_OK);
    assert_int_equal(got.npctx, 0);
    assert_int_equal(got.accepted, 0);
    assert_int_equal(max, 0);
}

static void test_build_release_rq(void **state)
{
    static const uint8_t want[] = {0x05, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00};
    uint8_t out[16];

    (void)state;
    memset(out, 0xee, sizeof(out));
    assert_int_equal(hdx_ul_build_release_rq(out, sizeof(out)), 10);
    assert_memory_equal(out, want, 10);
    assert_int_equal(out[10], 0xee);
    assert_int_equal(hdx_ul_build_release_rq(out, 10), 10);
    for (size_t cap = 0; cap < 10; cap++)
        assert_int_equal(hdx_ul_build_release_rq(out, cap), 0);
    assert_int_equal(hdx_ul_build_release_rq(NULL, 16), 0);
    assert_int_equal(hdx_ul_pdu_event(out[0]), HDX_EVT12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pdu_header),
        cmocka_unit_test(test_parse_handbuilt),
        cmocka_unit_test(test_parse_boundaries),
        cmocka_unit_test(test_parse_rq_max),
        cmocka_unit_test(test_refuse_truncated),
        cmocka_unit_test(test_refuse_ids),
        cmocka_unit_test(test_refuse_context_count),
        cmocka_unit_test(test_refuse_values),
        cmocka_unit_test(test_refuse_structure),
        cmocka_unit_test(test_corruption_loop),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_build_ac),
        cmocka_unit_test(test_build_ac_for_echoscu),
        cmocka_unit_test(test_build_short),
        cmocka_unit_test(test_pdv_walk),
        cmocka_unit_test(test_transition_spot),
        cmocka_unit_test(test_transition_full),
        cmocka_unit_test(test_events_and_names),
        cmocka_unit_test(test_echoscu_capture),
        cmocka_unit_test(test_build_rq_round_trip),
        cmocka_unit_test(test_build_rq_cap),
        cmocka_unit_test(test_build_rq_refused),
        cmocka_unit_test(test_build_rq_repeated_id),
        cmocka_unit_test(test_build_rq_empty_uid),
        cmocka_unit_test(test_parse_ac_round_trip),
        cmocka_unit_test(test_parse_ac_refused),
        cmocka_unit_test(test_parse_ac_max),
        cmocka_unit_test(test_parse_ac_rejected_ts),
        cmocka_unit_test(test_build_release_rq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
