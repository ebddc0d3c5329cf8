/* test_mllp: MLLP framing (HL7 v2 Appendix C, MLLP release 2; DESIGN invariant 5).
 * Proves: garbage before 0x0B is reported and never delivered; frames are found whatever
 * the read boundaries; 0x1C without 0x0D is payload; the end block is searched only within
 * max_frame; *resume makes repeated scans of a growing buffer linear. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/mllp.h"

#define SB "\x0b"
#define EB "\x1c"
#define CR "\x0d"

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

static void expect_frame(const char *buf, size_t len, size_t max, size_t garbage, size_t off,
                         size_t plen)
{
    struct mllp_scan sc;
    size_t resume = 0;

    assert_int_equal(mllp_scan(u8(buf), len, max, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.garbage, garbage);
    assert_int_equal(sc.payload_off, off);
    assert_int_equal(sc.payload_len, plen);
    assert_int_equal(sc.consumed, off + plen + 2);
    assert_int_equal(resume, 0);
}

static void test_single_frame(void **state)
{
    (void)state;
    expect_frame(SB "ABC" EB CR, 6, 100, 0, 1, 3);
    expect_frame(SB EB CR, 3, 100, 0, 1, 0); /* empty payload is a frame */
}

static void test_garbage_before_sb(void **state)
{
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    expect_frame("xyz" SB "AB" EB CR, 8, 100, 3, 4, 2);
    /* No start block at all: everything is garbage, nothing is delivered. */
    assert_int_equal(mllp_scan(u8("hello" EB CR), 7, 100, &resume, &sc), MLLP_NEED_MORE);
    assert_int_equal(sc.garbage, 7);
    assert_int_equal(sc.consumed, 0);
    /* Garbage then an unfinished frame. */
    assert_int_equal(mllp_scan(u8("ab" SB "MSH"), 6, 100, &resume, &sc), MLLP_NEED_MORE);
    assert_int_equal(sc.garbage, 2);
    assert_int_equal(sc.payload_off, 3);
    assert_int_equal(resume, 3);
}

static void test_empty_and_null(void **state)
{
    struct mllp_scan sc;
    size_t resume = 5;

    (void)state;
    assert_int_equal(mllp_scan(u8(""), 0, 100, &resume, &sc), MLLP_NEED_MORE);
    assert_int_equal(sc.garbage, 0);
    assert_int_equal(resume, 0);
    assert_int_equal(mllp_scan(NULL, 10, 100, NULL, NULL), MLLP_NEED_MORE);
    /* NULL resume and out are tolerated. */
    assert_int_equal(mllp_scan(u8(SB "A" EB CR), 4, 100, NULL, NULL), MLLP_FRAME);
}

static void test_two_frames_one_buffer(void **state)
{
    static const char buf[] = SB "ONE" EB CR "zz" SB "TWO!" EB CR;
    size_t len = sizeof buf - 1;
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    assert_int_equal(mllp_scan(u8(buf), len, 100, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, 3);
    assert_memory_equal(buf + sc.payload_off, "ONE", 3);
    assert_int_equal(sc.consumed, 6);
    size_t base = sc.consumed;
    assert_int_equal(mllp_scan(u8(buf) + base, len - base, 100, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.garbage, 2);
    assert_int_equal(sc.payload_len, 4);
    assert_memory_equal(buf + base + sc.payload_off, "TWO!", 4);
    assert_int_equal(base + sc.consumed, len);
}

static void test_eb_without_cr_is_payload(void **state)
{
    struct mllp_scan sc;
    size_t resume = 0;
    uint8_t buf[16];

    (void)state;
    expect_frame(SB "A" EB "B" EB CR, 6, 100, 0, 1, 3);
    expect_frame(SB EB EB EB CR, 5, 100, 0, 1, 2);
    /* A 0x1C as the last byte must be re-examined when its successor arrives. */
    memcpy(buf, SB "A" EB, 3);
    assert_int_equal(mllp_scan(buf, 3, 100, &resume, &sc), MLLP_NEED_MORE);
    assert_int_equal(resume, 1);
    buf[3] = MLLP_CR;
    assert_int_equal(mllp_scan(buf, 4, 100, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, 1);
    assert_int_equal(resume, 0); /* reset for the next frame */
    /* ... or turns out to be payload. */
    resume = 0;
    memcpy(buf, SB "A" EB, 3);
    assert_int_equal(mllp_scan(buf, 3, 100, &resume, &sc), MLLP_NEED_MORE);
    memcpy(buf + 3, "B" EB CR, 3);
    assert_int_equal(mllp_scan(buf, 6, 100, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, 3);
    assert_memory_equal(buf + 1, "A" EB "B", 3);
}

static void test_too_big(void **state)
{
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    /* max_frame 4: a 4-byte payload fits exactly. */
    expect_frame(SB "1234" EB CR, 7, 4, 0, 1, 4);
    assert_int_equal(mllp_scan(u8(SB "1234"), 5, 4, &resume, &sc), MLLP_NEED_MORE);
    resume = 0;
    assert_int_equal(mllp_scan(u8(SB "1234" EB), 6, 4, &resume, &sc), MLLP_NEED_MORE);
    resume = 0;
    assert_int_equal(mllp_scan(u8(SB "12345"), 6, 4, &resume, &sc), MLLP_TOO_BIG);
    assert_int_equal(sc.consumed, 0);
    assert_int_equal(sc.payload_off, 1);
    resume = 0;
    assert_int_equal(mllp_scan(u8(SB "1234" EB "x"), 7, 4, &resume, &sc), MLLP_TOO_BIG);
    resume = 0;
    /* The end block beyond max_frame is never looked at. */
    assert_int_equal(mllp_scan(u8("g" SB "12345" EB CR), 9, 4, &resume, &sc), MLLP_TOO_BIG);
    assert_int_equal(sc.garbage, 1);
    resume = 0;
    expect_frame(SB EB CR, 3, 0, 0, 1, 0);
    assert_int_equal(mllp_scan(u8(SB "A"), 2, 0, &resume, &sc), MLLP_TOO_BIG);
}

/* Feeds `stream` into a growing receive buffer in the chunks given by cuts[], draining as
 * the contract says, and records the delivered payloads ("|"-joined) into got. */
static void feed(const char *stream, size_t len, const size_t *cuts, size_t ncuts, char *got,
                 size_t gotcap)
{
    uint8_t *rx = malloc(len + 1);
    size_t have = 0, fed = 0, resume = 0, glen = 0;
    struct mllp_scan sc;

    assert_non_null(rx);
    got[0] = '\0';
    for (size_t c = 0; c <= ncuts; c++) {
        size_t upto = c < ncuts ? cuts[c] : len;
        memcpy(rx + have, stream + fed, upto - fed);
        have += upto - fed;
        fed = upto;
        for (;;) {
            enum mllp_status st = mllp_scan(rx, have, 64, &resume, &sc);
            assert_int_not_equal(st, MLLP_TOO_BIG);
            if (st == MLLP_NEED_MORE) {
                memmove(rx, rx + sc.garbage, have - sc.garbage);
                have -= sc.garbage;
                break;
            }
            assert_true(glen + sc.payload_len + 2 < gotcap);
            memcpy(got + glen, rx + sc.payload_off, sc.payload_len);
            glen += sc.payload_len;
            got[glen++] = '|';
            got[glen] = '\0';
            memmove(rx, rx + sc.consumed, have - sc.consumed);
            have -= sc.consumed;
            resume = 0;
        }
    }
    free(rx);
}

static void test_split_reads_every_boundary(void **state)
{
    static const char stream[] = "junk" SB "MSH|A" EB "x" EB CR "\r\n" SB "B" EB CR SB EB CR;
    static const char want[] = "MSH|A\x1cx|B||";
    size_t len = sizeof stream - 1;
    char got[128];
    size_t cuts[2];

    (void)state;
    feed(stream, len, NULL, 0, got, sizeof got);
    assert_string_equal(got, want);
    for (size_t i = 0; i <= len; i++) {
        cuts[0] = i;
        feed(stream, len, cuts, 1, got, sizeof got);
        assert_string_equal(got, want);
        for (size_t j = i; j <= len; j++) {
            cuts[1] = j;
            feed(stream, len, cuts, 2, got, sizeof got);
            assert_string_equal(got, want);
        }
    }
    /* One byte at a time. */
    size_t every[sizeof stream];
    for (size_t i = 0; i < len; i++)
        every[i] = i + 1;
    feed(stream, len, every, len, got, sizeof got);
    assert_string_equal(got, want);
}

static void test_resume_linear(void **state)
{
    enum { N = 100000 };
    uint8_t *buf = malloc(N + 3);
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    assert_non_null(buf);
    buf[0] = MLLP_SB;
    for (size_t i = 1; i <= N; i++)
        buf[i] = (i % 97 == 0) ? MLLP_EB : 'a'; /* lone 0x1C bytes are payload */
    /* Byte by byte: each call must resume exactly where the previous one stopped, which is
     * what keeps the total work linear instead of quadratic. */
    for (size_t len = 2; len <= N + 1; len++) {
        assert_int_equal(mllp_scan(buf, len, N, &resume, &sc), MLLP_NEED_MORE);
        size_t seen = len - 1;
        assert_int_equal(resume, buf[len - 1] == MLLP_EB ? seen - 1 : seen);
    }
    buf[N + 1] = MLLP_EB;
    buf[N + 2] = MLLP_CR;
    assert_int_equal(mllp_scan(buf, N + 3, N, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, N);
    /* A stale resume beyond the data is treated as 0, never as a skip. */
    resume = 1000000;
    assert_int_equal(mllp_scan(buf, N + 3, N, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, N);
    free(buf);
}

static void test_resume_survives_garbage_drain(void **state)
{
    uint8_t buf[32];
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    memcpy(buf, "gg" SB "ABCD", 7);
    assert_int_equal(mllp_scan(buf, 7, 100, &resume, &sc), MLLP_NEED_MORE);
    assert_int_equal(sc.garbage, 2);
    assert_int_equal(resume, 4);
    memmove(buf, buf + 2, 5); /* drain garbage but keep resume: still correct */
    memcpy(buf + 5, EB CR, 2);
    assert_int_equal(mllp_scan(buf, 7, 100, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_off, 1);
    assert_int_equal(sc.payload_len, 4);
}

static void test_wrap(void **state)
{
    uint8_t out[16];
    struct mllp_scan sc;
    size_t resume = 0;

    (void)state;
    assert_int_equal(mllp_wrap(u8("MSH|x"), 5, out, sizeof out), 8);
    assert_memory_equal(out, SB "MSH|x" EB CR, 8);
    assert_int_equal(mllp_scan(out, 8, 5, &resume, &sc), MLLP_FRAME);
    assert_int_equal(sc.payload_len, 5);
    assert_int_equal(mllp_wrap(u8("MSH|x"), 5, out, 7), 0);
    assert_int_equal(mllp_wrap(u8("MSH|x"), 5, out, 8), 8);
    assert_int_equal(mllp_wrap(NULL, 0, out, 3), 3);
    assert_memory_equal(out, SB EB CR, 3);
    assert_int_equal(mllp_wrap(NULL, 1, out, 16), 0);
    assert_int_equal(mllp_wrap(u8("a"), 1, NULL, 16), 0);
    assert_int_equal(mllp_wrap(u8("a"), SIZE_MAX, out, 16), 0);
}

/* Checks the structural promises of one scan result against the buffer. */
static void check_sane(const uint8_t *b, size_t len, size_t max, enum mllp_status st,
                       const struct mllp_scan *sc)
{
    assert_true(sc->garbage <= len);
    assert_null(memchr(b, MLLP_SB, sc->garbage));
    if (st == MLLP_FRAME) {
        assert_int_equal(sc->payload_off, sc->garbage + 1);
        assert_int_equal(b[sc->garbage], MLLP_SB);
        assert_true(sc->payload_len <= max);
        assert_int_equal(sc->consumed, sc->payload_off + sc->payload_len + 2);
        assert_true(sc->consumed <= len);
        assert_int_equal(b[sc->payload_off + sc->payload_len], MLLP_EB);
        assert_int_equal(b[sc->payload_off + sc->payload_len + 1], MLLP_CR);
    } else {
        assert_int_equal(sc->consumed, 0);
    }
}

/* STYLE 6.8: deterministic bit-flip and truncation loop over golden frames. */
static void test_bitflip_truncation(void **state)
{
    static const char *golden[] = {
        SB "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rPID|1||42\r" EB CR,
        "xx" SB "A" EB "B" EB CR SB "C" EB CR,
    };
    uint8_t b[128];
    struct mllp_scan sc;

    (void)state;
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        size_t len = strlen(golden[g]);
        for (size_t max = 0; max < len; max += 7) {
            for (size_t cut = 0; cut <= len; cut++) {
                size_t resume = 0;
                memcpy(b, golden[g], len);
                check_sane(b, cut, max, mllp_scan(b, cut, max, &resume, &sc), &sc);
            }
            for (size_t bit = 0; bit < len * 8; bit++) {
                size_t resume = 0;
                memcpy(b, golden[g], len);
                b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                check_sane(b, len, max, mllp_scan(b, len, max, &resume, &sc), &sc);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_frame),
        cmocka_unit_test(test_garbage_before_sb),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_two_frames_one_buffer),
        cmocka_unit_test(test_eb_without_cr_is_payload),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_split_reads_every_boundary),
        cmocka_unit_test(test_resume_linear),
        cmocka_unit_test(test_resume_survives_garbage_drain),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_bitflip_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
