/* fuzz_segment: libFuzzer entry point for segment files (store/segment.h), which hdx query and
 * hdx verify read as untrusted bytes. Input: byte 0 holds flags (bit 0: check hashes; bit 1:
 * also drive the file-level code), the rest is a segment file image.
 * Pure part: hdx_seg_header_parse, then hdx_seg_frame_parse walked from the header as scan
 * does; every accepted frame must lie inside the input, carry the expected seq, and (when
 * hashes are checked) hash to its stored leaf hash.
 * File part: the image becomes seg-0000000000000001.hdx in a scratch directory; a reader scans
 * it (each leaf must lie inside the mapping: ASan checks the reads) and reads the first frame,
 * then a writer recovers to the first frame, cuts the rest, appends one frame and reads it
 * back. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "store/record.h"
#include "store/segment.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static char dir[256], path[320];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (hdx_mkdtemp("hdx-fuzz-seg-", dir, sizeof dir) != 0) abort();
    snprintf(path, sizeof path, "%s/seg-0000000000000001.hdx", dir);
    return 0;
}

static void pure(const uint8_t *img, size_t n, int check_hash)
{
    uint64_t base;
    int64_t created;
    size_t off = 0, fl;
    if (hdx_seg_header_parse(img, n, &base, &created) == HDX_OK) {
        CHECK(base != 0 && n >= HDX_SEG_HEADER_LEN);
        off = HDX_SEG_HEADER_LEN;
    }
    uint64_t expect = n - off >= 8 ? hdx_seg_leaf_seq(img + off + 8, n - off - 8) : 0;
    while (hdx_seg_frame_parse(img + off, n - off, expect, check_hash, &fl) == HDX_OK) {
        CHECK(fl >= HDX_SEG_LEAF_MIN + HDX_SEG_FRAME_OVERHEAD && fl <= n - off);
        const uint8_t *leaf = img + off + 8;
        size_t len = fl - HDX_SEG_FRAME_OVERHEAD;
        CHECK(hdx_seg_leaf_seq(leaf, len) == expect);
        if (check_hash) {
            uint8_t h[32];
            const uint8_t zero = 0;
            const void *parts[] = {&zero, leaf};
            const size_t lens[] = {1, len};
            hdx_sha256(h, 2, parts, lens);
            CHECK(memcmp(h, leaf + len, 32) == 0);
        }
        /* The store parses every leaf it reads (frame_body, recovery) as untrusted too. */
        struct hdx_record r;
        if (hdx_record_from_leaf(leaf, len, &r) == HDX_OK) {
            CHECK(r.seq == expect && r.ct_len >= HDX_TAG_LEN && r.ct + r.ct_len == leaf + len);
            CHECK(strlen(r.sender) <= HDX_SENDER_MAX && strlen(r.type) <= HDX_TYPE_MAX);
        }
        off += fl;
        expect++;
    }
}

struct scan_ctx {
    const uint8_t *first;
    size_t first_len;
    uint64_t first_seq, prev, n;
};

static int scan_cb(void *arg, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf, size_t len)
{
    struct scan_ctx *c = arg;
    CHECK(pos.base == 1 && pos.off >= HDX_SEG_HEADER_LEN && len >= HDX_SEG_LEAF_MIN);
    CHECK(c->n == 0 || seq == c->prev + 1);
    CHECK(hdx_seg_leaf_seq(leaf, len) == seq);
    volatile uint8_t sink = leaf[0] ^ leaf[len - 1]; /* the whole leaf is mapped */
    (void)sink;
    if (c->n == 0) {
        c->first = leaf;
        c->first_len = len;
        c->first_seq = seq;
    }
    c->prev = seq;
    c->n++;
    return c->n >= 1000;
}

static void files(const uint8_t *img, size_t n)
{
    struct hdx_seg *s = NULL;
    struct scan_ctx c = {0};
    const uint8_t *leaf;
    size_t len;
    uint64_t cut;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, img, n) == (ssize_t)n);
    close(fd);
    CHECK(hdx_seg_open(dir, HDX_SEG_RDONLY, 0, &s) == HDX_OK);
    int rc = hdx_seg_scan(s, scan_cb, &c);
    CHECK(rc == HDX_OK || rc == HDX_E_INTEGRITY);
    if (c.n > 0) {
        CHECK(hdx_seg_read(s, (struct hdx_seg_pos){1, HDX_SEG_HEADER_LEN}, c.first_seq, 1, &leaf,
                           &len) == HDX_OK);
        CHECK(leaf == c.first && len == c.first_len);
    }
    hdx_seg_close(s);
    if (c.n == 0 || c.first_seq == 0 || c.first_seq == UINT64_MAX) return; /* 0: "empty store" */
    /* A writer trusts the first frame as the index's last, cuts after it, appends one. */
    CHECK(hdx_seg_open(dir, HDX_SEG_NOSYNC, HDX_SEG_SIZE_MIN, &s) == HDX_OK);
    CHECK(hdx_seg_recover(s, c.first_seq, (struct hdx_seg_pos){1, HDX_SEG_HEADER_LEN}, &cut) ==
          HDX_OK);
    CHECK(cut == c.n - 1);
    uint8_t nl[HDX_SEG_LEAF_MIN + 3] = {'H', 'D', 'X', 'R', 1};
    uint64_t seq = c.first_seq + 1;
    for (int i = 0; i < 8; i++)
        nl[5 + i] = (uint8_t)(seq >> (56 - 8 * i));
    struct hdx_seg_frame fr = {seq, nl, sizeof nl, NULL};
    struct hdx_seg_pos p;
    rc = hdx_seg_append(s, &fr, 1, &p);
    CHECK(rc == HDX_OK);
    CHECK(hdx_seg_read(s, p, seq, 1, &leaf, &len) == HDX_OK && len == sizeof nl &&
          memcmp(leaf, nl, len) == 0);
    hdx_seg_close(s);
    /* the writer may have made files ahead: start the next input from an empty directory */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -f %s/seg-*", dir);
    CHECK(system(cmd) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    pure(data + 1, size - 1, data[0] & 1);
    if (data[0] & 2) files(data + 1, size - 1);
    return 0;
}
