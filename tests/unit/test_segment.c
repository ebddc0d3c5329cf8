/* Segment files (store/segment.h): round trip across files, torn tails, cuts, damage,
 * readers in parallel, sticky failure, scan order, and the pure parsers. DESIGN invariant 1
 * (nothing acknowledged is lost: recover keeps exactly the index's frames). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "store/segment.h"

#define SMALL (64u << 10)
#define MAXN 512

static char tmpdir[256], segdir[320];

static int setup(void **state)
{
    if (hdx_mkdtemp("hdx-seg-", tmpdir, sizeof(tmpdir)) != 0) return -1;
    snprintf(segdir, sizeof(segdir), "%s/segments", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd);
}

/* A leaf as record.h lays it out as far as segments care: "HDXR" 1 u64(seq), then filler
 * that depends on seq, len and gen (so rewritten records differ). */
static uint8_t *leaf_new(uint64_t seq, size_t len, int gen)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    memcpy(p, "HDXR", 4);
    p[4] = 1;
    for (int i = 0; i < 8; i++)
        p[5 + i] = (uint8_t)(seq >> (56 - 8 * i));
    for (size_t i = 13; i < len; i++)
        p[i] = (uint8_t)(seq * 31 + i * 7 + (size_t)gen * 101);
    return p;
}

struct book {
    uint64_t n; /* frames 1..n */
    size_t len[MAXN + 1];
    int gen[MAXN + 1];
    struct hdx_seg_pos pos[MAXN + 1];
};

/* Appends frames n+1 .. n+count in one batch, lengths from lenf. */
static int append(struct hdx_seg *s, struct book *b, size_t count, size_t (*lenf)(uint64_t),
                  int gen)
{
    struct hdx_seg_frame fr[64];
    assert_true(count <= 64 && b->n + count <= MAXN);
    for (size_t i = 0; i < count; i++) {
        uint64_t seq = b->n + 1 + i;
        size_t len = lenf(seq);
        fr[i] = (struct hdx_seg_frame){seq, leaf_new(seq, len, gen), len, NULL};
    }
    int rc = hdx_seg_append(s, fr, count, &b->pos[b->n + 1]);
    for (size_t i = 0; i < count; i++) {
        free((void *)(uintptr_t)fr[i].leaf);
        if (rc == HDX_OK) {
            b->len[b->n + 1 + i] = fr[i].len;
            b->gen[b->n + 1 + i] = gen;
        }
    }
    if (rc == HDX_OK) b->n += count;
    return rc;
}

static void check_one(struct hdx_seg *s, const struct book *b, uint64_t seq)
{
    const uint8_t *leaf;
    size_t len;
    assert_int_equal(hdx_seg_read(s, b->pos[seq], seq, 1, &leaf, &len), HDX_OK);
    assert_int_equal(len, b->len[seq]);
    uint8_t *want = leaf_new(seq, len, b->gen[seq]);
    assert_memory_equal(leaf, want, len);
    free(want);
}

static void check_all(struct hdx_seg *s, const struct book *b)
{
    for (uint64_t q = 1; q <= b->n; q++)
        check_one(s, b, q);
}

struct scan_ctx {
    const struct book *b;
    uint64_t next, stop_at;
};

static int scan_cb(void *arg, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf, size_t len)
{
    struct scan_ctx *c = arg;
    assert_int_equal(seq, c->next);
    assert_true(seq <= c->b->n);
    assert_int_equal(pos.base, c->b->pos[seq].base);
    assert_int_equal(pos.off, c->b->pos[seq].off);
    assert_int_equal(len, c->b->len[seq]);
    uint8_t *want = leaf_new(seq, len, c->b->gen[seq]);
    assert_memory_equal(leaf, want, len);
    free(want);
    c->next++;
    return c->stop_at != 0 && seq == c->stop_at;
}

/* Scan visits exactly 1..b->n, in order, at the recorded positions. */
static void check_scan(struct hdx_seg *s, const struct book *b)
{
    struct scan_ctx c = {b, 1, 0};
    assert_int_equal(hdx_seg_scan(s, scan_cb, &c), HDX_OK);
    assert_int_equal(c.next, b->n + 1);
}

static size_t len_small(uint64_t seq)
{
    return 100 + (size_t)(seq * 397 % 2900);
}

static size_t len_1k(uint64_t seq)
{
    return 1100;
}

static size_t len_huge(uint64_t seq)
{
    return 100u << 10; /* larger than a 64 KiB segment */
}

static struct hdx_seg *writer(size_t size)
{
    struct hdx_seg *s = NULL;
    assert_int_equal(hdx_seg_open(segdir, HDX_SEG_CREATE, size, &s), HDX_OK);
    return s;
}

static struct hdx_seg *recovered(struct book *b)
{
    struct hdx_seg *s = writer(SMALL);
    uint64_t cut = 99;
    assert_int_equal(
        hdx_seg_recover(s, b->n, b->n ? b->pos[b->n] : (struct hdx_seg_pos){0, 0}, &cut), HDX_OK);
    assert_int_equal(cut, 0);
    return s;
}

static void file_of(uint64_t base, char *out, size_t cap)
{
    snprintf(out, cap, "%s/seg-%016llx.hdx", segdir, (unsigned long long)base);
}

static void poke(uint64_t base, uint64_t off, const void *bytes, size_t n)
{
    char path[400];
    file_of(base, path, sizeof path);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void flip(uint64_t base, uint64_t off)
{
    char path[400];
    uint8_t c;
    file_of(base, path, sizeof path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

/* Every byte of file base from off to its end is zero. */
static void assert_zero_from(uint64_t base, uint64_t off)
{
    char path[400];
    uint8_t buf[4096];
    ssize_t r;
    file_of(base, path, sizeof path);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    while ((r = pread(fd, buf, sizeof buf, (off_t)off)) > 0) {
        for (ssize_t i = 0; i < r; i++)
            assert_int_equal(buf[i], 0);
        off += (uint64_t)r;
    }
    close(fd);
}

static uint64_t frame_end(const struct book *b, uint64_t seq)
{
    return b->pos[seq].off + b->len[seq] + HDX_SEG_FRAME_OVERHEAD;
}

static size_t count_files(const struct book *b)
{
    size_t n = 0;
    for (uint64_t q = 1; q <= b->n; q++)
        n += q == 1 || b->pos[q].base != b->pos[q - 1].base;
    return n;
}

static void test_roundtrip(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    for (int i = 0; i < 40; i++)
        assert_int_equal(append(s, &b, 1 + (size_t)i % 9, len_small, 0), HDX_OK);
    assert_true(count_files(&b) >= 3);
    check_all(s, &b);
    /* A frame larger than a segment gets its own file (named by its seq), then small ones. */
    uint64_t big = b.n + 1;
    assert_int_equal(append(s, &b, 1, len_huge, 0), HDX_OK);
    assert_int_equal(b.pos[big].base, big);
    assert_int_equal(b.pos[big].off, HDX_SEG_HEADER_LEN);
    assert_int_equal(append(s, &b, 5, len_small, 0), HDX_OK);
    assert_true(b.pos[big + 1].base > big);
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);

    struct hdx_seg *r = NULL;
    assert_int_equal(hdx_seg_open(segdir, HDX_SEG_RDONLY, 0, &r), HDX_OK);
    check_all(r, &b);
    check_scan(r, &b);
    /* scan stops when the callback says so */
    struct scan_ctx c = {&b, 1, 7};
    assert_int_equal(hdx_seg_scan(r, scan_cb, &c), HDX_OK);
    assert_int_equal(c.next, 8);
    hdx_seg_close(r);

    /* and the writer continues after a clean restart */
    s = recovered(&b);
    assert_int_equal(append(s, &b, 10, len_1k, 0), HDX_OK);
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);
}

static size_t len_256k(uint64_t seq)
{
    return (256u << 10) - HDX_SEG_FRAME_OVERHEAD - (size_t)(seq % 3) * 4096;
}

/* A writer of large frames overtakes the helper's paced zeros (16 chunks and pauses per 4 MiB
 * file against a few fdatasyncs): the rest of such a file is fallocated, and every file must
 * still be exactly the segment size, zero after its last frame, and read back and recover
 * like any other. */
static void test_fast_writer(void **state)
{
    static struct book b;
    const size_t size = 4u << 20;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = writer(size);
    assert_int_equal(hdx_seg_recover(s, 0, (struct hdx_seg_pos){0, 0}, NULL), HDX_OK);
    for (int i = 0; i < 60; i++)
        assert_int_equal(append(s, &b, 1 + (size_t)i % 2, len_256k, 0), HDX_OK);
    assert_true(count_files(&b) >= 5);
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);
    for (uint64_t q = 1; q <= b.n; q++) {
        if (q < b.n && b.pos[q + 1].base == b.pos[q].base) continue; /* not its file's last */
        char path[400];
        struct stat st;
        file_of(b.pos[q].base, path, sizeof path);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((size_t)st.st_size, size);
        assert_zero_from(b.pos[q].base, frame_end(&b, q));
    }
    s = writer(size);
    uint64_t cut = 99;
    assert_int_equal(hdx_seg_recover(s, b.n, b.pos[b.n], &cut), HDX_OK);
    assert_int_equal(cut, 0);
    assert_int_equal(append(s, &b, 2, len_256k, 1), HDX_OK);
    check_all(s, &b);
    hdx_seg_close(s);
}

/* The damage a crash can leave after the last committed frame, and recovery from it. */
enum torn { TORN_HASH, TORN_GARBLE, TORN_GARBAGE_AFTER, TORN_PARTIAL_HEADER, TORN_HALF_FRAME };

static void torn_case(enum torn how)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    teardown(NULL);
    setup(NULL);
    struct hdx_seg *s = recovered(&b);
    assert_int_equal(append(s, &b, 10, len_1k, 0), HDX_OK);
    hdx_seg_close(s);
    uint64_t last = b.n, expect_cut = 1;
    const uint8_t junk[] = {0x48, 0x44, 0x58, 0x46, 0x00, 0x01};
    switch (how) {
    case TORN_HASH: /* the last frame's tail never reached the disk */
        poke(b.pos[10].base, frame_end(&b, 10) - 20, (uint8_t[20]){0}, 20);
        last = 9;
        break;
    case TORN_GARBLE:
        flip(b.pos[10].base, b.pos[10].off + 500);
        last = 9;
        break;
    case TORN_GARBAGE_AFTER:
        poke(b.pos[10].base, frame_end(&b, 10), "garbage!", 8);
        expect_cut = 0;
        break;
    case TORN_PARTIAL_HEADER:
        poke(b.pos[10].base, frame_end(&b, 10), junk, 4);
        expect_cut = 0;
        break;
    case TORN_HALF_FRAME: /* a whole frame header and half a leaf of seq 11 */
        poke(b.pos[10].base, frame_end(&b, 10), junk, sizeof junk);
        poke(b.pos[10].base, frame_end(&b, 10) + 8, "HDXR\x01\0\0\0\0\0\0\0\x0b", 13);
        expect_cut = 0;
        break;
    }
    uint64_t cut = 99;
    s = writer(SMALL);
    assert_int_equal(hdx_seg_recover(s, last, b.pos[last], &cut), HDX_OK);
    if (how == TORN_HASH || how == TORN_GARBLE) expect_cut = 0; /* invalid frames are not counted */
    assert_int_equal(cut, expect_cut);
    b.n = last;
    assert_zero_from(b.pos[last].base, frame_end(&b, last));
    assert_int_equal(append(s, &b, 3, len_small, 1), HDX_OK);
    assert_int_equal(b.pos[last + 1].off, frame_end(&b, last));
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);
}

static void test_torn_tail(void **state)
{
    torn_case(TORN_HASH);
    torn_case(TORN_GARBLE);
    torn_case(TORN_GARBAGE_AFTER);
    torn_case(TORN_PARTIAL_HEADER);
    torn_case(TORN_HALF_FRAME);
}

static void test_recover_earlier(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    for (int i = 0; i < 5; i++)
        assert_int_equal(append(s, &b, 10, len_small, 0), HDX_OK);
    hdx_seg_close(s);
    assert_true(b.pos[50].base > b.pos[12].base); /* the cut spans files */
    uint64_t old_end = frame_end(&b, 50), old_base = b.pos[50].base;

    /* The index committed only up to 12: the rest was never acknowledged. */
    uint64_t cut = 0;
    s = writer(SMALL);
    assert_int_equal(hdx_seg_recover(s, 12, b.pos[12], &cut), HDX_OK);
    assert_int_equal(cut, 38);
    b.n = 12;
    assert_zero_from(b.pos[12].base, frame_end(&b, 12));
    const uint8_t *leaf;
    size_t len;
    assert_int_equal(hdx_seg_read(s, b.pos[13], 13, 0, &leaf, &len), HDX_E_NOTFOUND);
    /* New records at the same seqs and places read back as themselves; old bytes are gone. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(append(s, &b, 10, len_1k, 2), HDX_OK);
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);
    s = recovered(&b);
    check_scan(s, &b);
    struct hdx_seg_pos stale = {old_base, old_end};
    assert_int_not_equal(hdx_seg_read(s, stale, 51, 0, &leaf, &len), HDX_OK);
    hdx_seg_close(s);
}

/* The frames after the index's last record (a crash between the flush and the index
 * commit) are walked in order across files, from a frame in the middle and from the first
 * file (an index with no frame), and the walk ends at the first frame that is not whole. */
static void test_tail(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    for (int i = 0; i < 5; i++)
        assert_int_equal(append(s, &b, 10, len_small, 3), HDX_OK);
    hdx_seg_close(s);
    assert_true(b.pos[50].base > b.pos[12].base); /* the tail spans files */
    uint64_t walked = 0;
    s = writer(SMALL);
    struct scan_ctx c = {&b, 13, 0};
    assert_int_equal(hdx_seg_tail(s, 12, &b.pos[12], scan_cb, &c, &walked), HDX_OK);
    assert_int_equal(walked, 38);
    assert_int_equal(c.next, 51);
    c = (struct scan_ctx){&b, 1, 0};
    assert_int_equal(hdx_seg_tail(s, 0, NULL, scan_cb, &c, &walked), HDX_OK);
    assert_int_equal(walked, 50);
    /* The callback may stop the walk; the stopping frame counts. */
    c = (struct scan_ctx){&b, 21, 30};
    assert_int_equal(hdx_seg_tail(s, 20, &b.pos[20], scan_cb, &c, &walked), HDX_OK);
    assert_int_equal(walked, 10);
    hdx_seg_close(s);
    /* A torn frame 40: the walk from 30 ends at 39. */
    flip(b.pos[40].base, b.pos[40].off + 20);
    s = writer(SMALL);
    c = (struct scan_ctx){&b, 31, 0};
    assert_int_equal(hdx_seg_tail(s, 30, &b.pos[30], scan_cb, &c, &walked), HDX_OK);
    assert_int_equal(walked, 9);
    /* The index's own last frame damaged: an integrity failure, nothing walked. */
    assert_int_equal(hdx_seg_tail(s, 40, &b.pos[40], scan_cb, &c, &walked), HDX_E_INTEGRITY);
    assert_int_equal(walked, 0);
    /* Nothing after the newest frame. */
    c = (struct scan_ctx){&b, 51, 0};
    assert_int_equal(hdx_seg_tail(s, 50, &b.pos[50], scan_cb, &c, &walked), HDX_OK);
    assert_int_equal(walked, 0);
    hdx_seg_close(s);
}

static void test_recover_integrity(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    assert_int_equal(append(s, &b, 20, len_1k, 0), HDX_OK);
    hdx_seg_close(s);
    uint64_t cut;
    s = writer(SMALL);
    /* no file there, frame past the data, another seq's frame, mid-frame offset */
    assert_int_equal(hdx_seg_recover(s, 20, (struct hdx_seg_pos){999, 32}, &cut), HDX_E_INTEGRITY);
    assert_int_equal(
        hdx_seg_recover(s, 21, (struct hdx_seg_pos){b.pos[20].base, frame_end(&b, 20)}, &cut),
        HDX_E_INTEGRITY);
    assert_int_equal(hdx_seg_recover(s, 20, b.pos[19], &cut), HDX_E_INTEGRITY);
    assert_int_equal(
        hdx_seg_recover(s, 20, (struct hdx_seg_pos){b.pos[20].base, b.pos[20].off + 1}, &cut),
        HDX_E_INTEGRITY);
    /* a flipped bit in the index's last frame */
    flip(b.pos[20].base, b.pos[20].off + 40);
    assert_int_equal(hdx_seg_recover(s, 20, b.pos[20], &cut), HDX_E_INTEGRITY);
    flip(b.pos[20].base, b.pos[20].off + 40);
    assert_int_equal(hdx_seg_recover(s, 20, b.pos[20], &cut), HDX_OK);
    assert_int_equal(cut, 0);
    b.n = 20;
    check_all(s, &b);
    hdx_seg_close(s);
}

static void test_read_damage(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    assert_int_equal(append(s, &b, 8, len_1k, 0), HDX_OK);
    const uint8_t *leaf;
    size_t len;
    struct hdx_seg_pos p = b.pos[4];
    /* a byte of the leaf (not its seq): only the hash notices */
    flip(p.base, p.off + 8 + 100);
    assert_int_equal(hdx_seg_read(s, p, 4, 1, &leaf, &len), HDX_E_INTEGRITY);
    assert_int_equal(hdx_seg_read(s, p, 4, 0, &leaf, &len), HDX_OK);
    flip(p.base, p.off + 8 + 100);
    assert_int_equal(hdx_seg_read(s, p, 4, 1, &leaf, &len), HDX_OK);
    /* a byte of the stored hash */
    flip(p.base, frame_end(&b, 4) - 1);
    assert_int_equal(hdx_seg_read(s, p, 4, 1, &leaf, &len), HDX_E_INTEGRITY);
    flip(p.base, frame_end(&b, 4) - 1);
    /* the length, the magic, the seq */
    flip(p.base, p.off + 4);
    assert_int_equal(hdx_seg_read(s, p, 4, 0, &leaf, &len), HDX_E_INTEGRITY);
    flip(p.base, p.off + 4);
    flip(p.base, p.off);
    assert_int_equal(hdx_seg_read(s, p, 4, 0, &leaf, &len), HDX_E_INTEGRITY);
    flip(p.base, p.off);
    assert_int_equal(hdx_seg_read(s, p, 5, 0, &leaf, &len), HDX_E_INTEGRITY);
    /* no frame there */
    assert_int_equal(
        hdx_seg_read(s, (struct hdx_seg_pos){p.base, frame_end(&b, 8)}, 9, 1, &leaf, &len),
        HDX_E_NOTFOUND);
    assert_int_equal(hdx_seg_read(s, (struct hdx_seg_pos){p.base, UINT64_MAX}, 4, 1, &leaf, &len),
                     HDX_E_NOTFOUND);
    assert_int_equal(hdx_seg_read(s, (struct hdx_seg_pos){12345, 32}, 4, 1, &leaf, &len),
                     HDX_E_NOTFOUND);
    check_all(s, &b);
    hdx_seg_close(s);
}

static void test_reader_follows(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b), *r = NULL;
    assert_int_equal(append(s, &b, 5, len_1k, 0), HDX_OK);
    assert_int_equal(hdx_seg_open(segdir, HDX_SEG_RDONLY, 0, &r), HDX_OK);
    check_all(r, &b);
    uint64_t first_base = b.pos[1].base;
    while (b.pos[b.n].base == first_base)
        assert_int_equal(append(s, &b, 7, len_1k, 0), HDX_OK);
    assert_int_equal(append(s, &b, 3, len_1k, 0), HDX_OK);
    check_all(r, &b); /* including the frames in a file made after r mapped the first */
    check_scan(r, &b);
    /* a reader cannot write */
    uint64_t cut;
    assert_int_equal(hdx_seg_recover(r, 0, (struct hdx_seg_pos){0, 0}, &cut), HDX_E_PERM);
    hdx_seg_close(r);
    /* one writer per directory */
    struct hdx_seg *w2 = NULL;
    assert_int_equal(hdx_seg_open(segdir, 0, SMALL, &w2), HDX_E_EXISTS);
    assert_null(w2);
    hdx_seg_close(s);
}

static void test_sticky_failure(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    assert_int_equal(append(s, &b, 5, len_1k, 0), HDX_OK);
    /* Bad frames are refused without harm. */
    uint8_t *l = leaf_new(7, 100, 0);
    struct hdx_seg_frame gap = {7, l, 100, NULL};
    struct hdx_seg_pos p;
    assert_int_equal(hdx_seg_append(s, &gap, 1, &p), HDX_E_INVAL);
    gap.seq = 6; /* leaf says 7 */
    assert_int_equal(hdx_seg_append(s, &gap, 1, &p), HDX_E_INVAL);
    free(l);
    assert_int_equal(append(s, &b, 1, len_1k, 0), HDX_OK);
    /* An I/O fault: a file size limit below the append position (root obeys it too). */
    struct rlimit old, tiny = {16, 16};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    tiny.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    int rc = append(s, &b, 2, len_1k, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, HDX_E_IO);
    /* sticky: the disk is fine again, the handle still refuses */
    assert_int_equal(append(s, &b, 2, len_1k, 0), HDX_E_IO);
    check_all(s, &b);
    hdx_seg_close(s);
    /* a restart recovers to the index and goes on */
    s = recovered(&b);
    assert_int_equal(append(s, &b, 2, len_1k, 0), HDX_OK);
    check_all(s, &b);
    check_scan(s, &b);
    hdx_seg_close(s);
}

static int count_cb(void *arg, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                    size_t len)
{
    (*(uint64_t *)arg)++;
    return 0;
}

static void test_scan_chain(void **state)
{
    static struct book b;
    memset(&b, 0, sizeof b);
    struct hdx_seg *s = recovered(&b);
    for (int i = 0; i < 16; i++)
        assert_int_equal(append(s, &b, 10, len_1k, 0), HDX_OK);
    check_scan(s, &b);
    hdx_seg_close(s);
    /* remove a middle file: the files no longer chain; every remaining frame is still seen */
    uint64_t mid = b.pos[80].base, in_mid = 0, seen = 0;
    assert_true(mid != b.pos[1].base && mid != b.pos[160].base);
    for (uint64_t q = 1; q <= b.n; q++)
        in_mid += b.pos[q].base == mid;
    char path[400];
    file_of(mid, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    struct hdx_seg *r = NULL;
    assert_int_equal(hdx_seg_open(segdir, HDX_SEG_RDONLY, 0, &r), HDX_OK);
    assert_int_equal(hdx_seg_scan(r, count_cb, &seen), HDX_E_INTEGRITY);
    assert_int_equal(seen, b.n - in_mid);
    hdx_seg_close(r);
}

static void test_parsers(void **state)
{
    uint8_t buf[256] = {0};
    size_t fl = 1;
    uint64_t base;
    int64_t created;
    assert_int_equal(hdx_seg_frame_parse(buf, sizeof buf, 1, 1, &fl), HDX_E_NOTFOUND);
    assert_int_equal(fl, 0);
    assert_int_equal(hdx_seg_frame_parse(buf, 7, 1, 1, &fl), HDX_E_NOTFOUND);
    memcpy(buf, "HDXF\xff\xff\xff\xff", 8); /* a length that would wrap an addition */
    assert_int_equal(hdx_seg_frame_parse(buf, sizeof buf, 1, 0, &fl), HDX_E_INTEGRITY);
    memcpy(buf, "HDXF\0\0\0\x0c", 8); /* under the minimum */
    assert_int_equal(hdx_seg_frame_parse(buf, sizeof buf, 1, 0, &fl), HDX_E_INTEGRITY);
    memcpy(buf, "HDXF\0\0\0\x0d", 8);
    memcpy(buf + 8, "HDXR\x01\0\0\0\0\0\0\0\x01", 13);
    assert_int_equal(hdx_seg_frame_parse(buf, sizeof buf, 1, 0, &fl), HDX_OK);
    assert_int_equal(fl, 13 + HDX_SEG_FRAME_OVERHEAD);
    assert_int_equal(hdx_seg_frame_parse(buf, fl - 1, 1, 0, &fl), HDX_E_INTEGRITY);
    assert_int_equal(hdx_seg_frame_parse(buf, sizeof buf, 1, 1, &fl), HDX_E_INTEGRITY); /* hash */
    assert_int_equal(hdx_seg_header_parse(buf, sizeof buf, &base, &created), HDX_E_INTEGRITY);
    memcpy(buf, "HDXSEG1\n\0\0\0\x01\0\0\0\x20\0\0\0\0\0\0\0\x05", 24);
    assert_int_equal(hdx_seg_header_parse(buf, 32, &base, &created), HDX_OK);
    assert_int_equal(base, 5);
    assert_int_equal(hdx_seg_header_parse(buf, 31, &base, &created), HDX_E_INTEGRITY);
    buf[11] = 2;
    assert_int_equal(hdx_seg_header_parse(buf, 32, &base, &created), HDX_E_INTEGRITY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parsers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fast_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_earlier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_integrity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_follows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sticky_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
