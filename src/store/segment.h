/* segment: append-only, preallocated segment files holding the records' leaf encodings
 * (record.h), so a commit batch costs one sequential write and one fdatasync per file touched;
 * SQLite keeps only the index seq -> (segment base, offset). Format: docs/RECORD-FORMAT.md,
 * "Segment files".
 *   file  = "HDXSEG1\n" u32(version=1) u32(header_len=32) u64(base_seq) u64(created_us)
 *   frame = u32(0x48445846 "HDXF") u32(leaf_len) leaf leaf_hash(32)     (big-endian)
 * A file's name is seg-%016llx.hdx of its base: no record in it has a smaller seq, and every
 * record in a later file has a larger one. The bytes after the last frame are zero.
 *
 * Durability. Files are preallocated by writing zeros (and fdatasync'd) before their first
 * frame, so an fdatasync after an append flushes data blocks only: no size or extent change, no
 * journal commit. Measured on this ext4 disk, 64 frames of 1.1 KB per fdatasync into a 64 MiB
 * file: zero-filled 160 us per batch, fallocate()d 240-300 us (ext4 must still convert its
 * unwritten extents on first write, a journal commit), growing file 230-410 us. A new file is
 * made by a background thread as soon as the current one is in use: temp name, zeros (paced;
 * the rest fallocated once the writer is past half its file first), fdatasync, rename, fsync of
 * the directory; the writer never appends to a file whose name or size is not durable. Its
 * base is the next seq at the time it was asked for (hence "no smaller seq", not "first
 * seq"). If it is not ready in time the writer waits for it or makes one itself (hdx_warn).
 * Appends are written file by file, each followed by its fdatasync, so a later file never
 * holds durable frames while an earlier one may not.
 *
 * Errors: HDX_OK or a negative hdx_err (core/err.h). A failed write or sync makes the handle
 * sticky-failed: every later append returns HDX_E_IO and nothing may be acknowledged; reopen
 * (restart, then hdx_seg_recover) to continue. Leaf bytes are never logged.
 * Ownership: the handle owns its files and mappings; pointers from read and scan borrow a
 * read-only mmap of the file, valid until hdx_seg_close.
 * Threads: a handle belongs to one thread at a time (the writer's own helper thread touches
 * nothing the caller sees). One writer per directory (flock on it; a second gets HDX_E_EXISTS);
 * any number of RDONLY readers in any process, which find files created later on demand.
 * A reader that outlives a writer restart may hold a mapping of a file that restart removed:
 * callers compare the leaf hash with their index, as they should anyway. */
#ifndef HDX_SEGMENT_H
#define HDX_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

struct hdx_seg; /* the segment files of one store */
struct hdx_seg_pos {
    uint64_t base; /* the file: its base seq */
    uint64_t off;  /* the frame's offset in it */
};
/* leaf_hash: SHA-256(0x00 || leaf) as the caller computed it, or NULL to have it computed. */
struct hdx_seg_frame {
    uint64_t seq;
    const uint8_t *leaf;
    size_t len;
    const uint8_t *leaf_hash;
};

enum { HDX_SEG_RDONLY = 1, HDX_SEG_CREATE = 2, HDX_SEG_NOSYNC = 4 };

#define HDX_SEG_SIZE_DEFAULT (64u << 20)
#define HDX_SEG_SIZE_MIN (4u << 10)
#define HDX_SEG_FRAME_MAX (256u << 20) /* largest leaf_len */
#define HDX_SEG_LEAF_MIN 13            /* "HDXR" u8 version u64 seq */
#define HDX_SEG_HEADER_LEN 32
#define HDX_SEG_FRAME_OVERHEAD (8 + 32) /* magic, length, leaf hash */
#define HDX_SEG_VERSION 1

/* Opens the directory dir (CREATE: made 0700 if missing). seg_size: size of a new file
 * (0: HDX_SEG_SIZE_DEFAULT; at least HDX_SEG_SIZE_MIN); readers may pass 0. */
int hdx_seg_open(const char *dir, int flags, size_t seg_size, struct hdx_seg **out);
void hdx_seg_close(struct hdx_seg *s); /* NULL is fine; waits for the helper thread */

/* Writer start-up, once, before any append: the index says the last committed record is
 * last_seq at position last (last_seq 0: empty store, last ignored). Verifies that frame
 * (hash included), sets the append position after it, and cuts everything later: zeroes the
 * rest of that file (fdatasync) and removes the later files and leftover temp files (then
 * fsyncs the directory). *cut (may be NULL) gets how many valid frames were cut.
 * HDX_E_INTEGRITY if frame last_seq is missing or invalid (an index row with no segment
 * record). last = {0, 0} with last_seq > 0: no file holds any record up to last_seq (their
 * bodies are elsewhere); everything is cut and appends continue at last_seq + 1. */
int hdx_seg_recover(struct hdx_seg *s, uint64_t last_seq, struct hdx_seg_pos last, uint64_t *cut);

/* Writer start-up, before hdx_seg_recover: walks the valid frames that follow frame last_seq
 * (at *last; last NULL: from the first file, e.g. an empty index or one whose newest record
 * predates segments), in this file and then in later files whose first frame continues the
 * seqs, calling cb for each (non-zero stops; that frame counts as walked). *walked gets
 * the count. These are frames whose index rows were lost (written and flushed, then a crash
 * or power cut before the index transaction was durable).
 * HDX_E_INTEGRITY when frame last_seq is missing or damaged. */
int hdx_seg_tail(struct hdx_seg *s, uint64_t last_seq, const struct hdx_seg_pos *last,
                 int (*cb)(void *ctx, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                           size_t len),
                 void *ctx, uint64_t *walked);

/* Appends n frames (consecutive seqs, continuing the last one; leaf_len within limits, the
 * leaf's own seq equal to frame.seq) durably; pos[i] receives frame i's position. Returns only
 * after the data is on disk (unless NOSYNC). HDX_E_INVAL for bad frames (nothing written, the
 * handle stays usable); on an I/O failure the handle becomes sticky-failed. */
int hdx_seg_append(struct hdx_seg *s, const struct hdx_seg_frame *frames, size_t n,
                   struct hdx_seg_pos *pos);

/* Reads and checks frame `seq` at pos: framing, limits, seq; the hash too when check_hash.
 * *leaf borrows the bytes (a read-only mmap): valid until hdx_seg_close. HDX_E_NOTFOUND when
 * there is no frame there (no such file, past its end, or zeros), HDX_E_INTEGRITY when it is
 * damaged or holds another seq. The file must never shrink under a reader (the writer never
 * truncates): a mapping past a file's end would fault. */
int hdx_seg_read(struct hdx_seg *s, struct hdx_seg_pos pos, uint64_t seq, int check_hash,
                 const uint8_t **leaf, size_t *len);

/* Walks every valid frame (hash checked) of every file in base order; cb returns non-zero to
 * stop. A file's frames run from its header up to the first position that is not a valid frame
 * with the next seq; the first one must have seq >= base. Files with no frame (made ahead, or
 * cut) are skipped. Returns HDX_OK, or HDX_E_INTEGRITY after the walk when a file's header is
 * bad or its first seq does not continue the previous file's last (the callback has still
 * seen every valid frame, so a verifier can tell where). */
int hdx_seg_scan(struct hdx_seg *s,
                 int (*cb)(void *ctx, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                           size_t len),
                 void *ctx);

/* Pure parsers of untrusted bytes, used by read, scan and recover (and fuzzed).
 * Frame at buf[0..avail): HDX_OK and *frame_len (header, leaf and hash) when it is a valid
 * frame with seq expect_seq; HDX_E_NOTFOUND when fewer than 8 bytes remain or they are all
 * zero; HDX_E_INTEGRITY otherwise. The leaf is buf + 8, its length *frame_len - 40. */
int hdx_seg_frame_parse(const uint8_t *buf, size_t avail, uint64_t expect_seq, int check_hash,
                        size_t *frame_len);
/* The seq a leaf claims (big-endian at offset 5), or 0 when len < HDX_SEG_LEAF_MIN. */
uint64_t hdx_seg_leaf_seq(const uint8_t *leaf, size_t len);
/* File header: HDX_OK and its base and creation time, or HDX_E_INTEGRITY. */
int hdx_seg_header_parse(const uint8_t *buf, size_t avail, uint64_t *base, int64_t *created_us);

#endif
