/* cursor: a route lane's durable position, DIR/routes/NAME/lane-K.cursor (docs/ROUTES.md).
 * delivered: every message of the lane with seq <= it was acknowledged by the destination or
 * is a durable dead letter; audited: the disclosures up to there are audit records of the
 * log. Two 64-byte slots written in turn, each with a generation and a SHA-256 check, so a
 * torn write leaves the other slot; the newest valid slot wins at open.
 * Durability: every hdx_cursor_set is written at once into a shared mapping of the file (the
 * page cache: a crash of hdxd, kill -9, never loses an acknowledged position; a write costs no
 * syscall and no inode update, which at thousands of ACKs a second was most of a lane's
 * kernel time); it is flushed (msync) at most every HDX_CURSOR_SYNC_US, so a power cut may take
 * back up to that much: those messages are sent again with the same MSH-10 (receivers
 * de-duplicate on it).
 * Thread: one lane thread per cursor; hdx_cursor_read from any process. */
#ifndef HDX_ROUTE_CURSOR_H
#define HDX_ROUTE_CURSOR_H

#include <stdint.h>

#define HDX_CURSOR_SYNC_US 100000

struct hdx_cursor_pos {
    uint64_t delivered, audited;
    uint32_t lanes, lane; /* the partition it was written under */
};

struct hdx_cursor;

/* Opens (creates: 0600, directory fsync'd) the cursor file. A new file starts at *start. */
int hdx_cursor_open(const char *path, const struct hdx_cursor_pos *start, struct hdx_cursor **out);
void hdx_cursor_get(const struct hdx_cursor *c, struct hdx_cursor_pos *out);
/* Writes the position; flushes when the last flush is older than HDX_CURSOR_SYNC_US or
 * force is set. HDX_E_IO on failure (the lane then stops: it cannot promise a position). */
int hdx_cursor_set(struct hdx_cursor *c, const struct hdx_cursor_pos *p, int force);
/* Flushes and closes. */
void hdx_cursor_close(struct hdx_cursor *c);
/* Reads a cursor file without opening it for writing: HDX_OK, HDX_E_NOTFOUND (no file) or
 * HDX_E_INTEGRITY (no valid slot). */
int hdx_cursor_read(const char *path, struct hdx_cursor_pos *out);

/* Makes dir's lane-K.cursor files (K < max_files) one partition of lanes files before any lane
 * opens them. No file: nothing (a new route). Files 0..lanes-1 all written under `lanes`:
 * only the files of higher lanes, left by a partition with more, are removed. Otherwise (lanes
 * changed, a lane file missing, or a crash in the middle of this): every lane 0..lanes-1 is
 * written at the lowest position of the partition lane 0's file was written under (the one
 * that delivered last), lane 0 first, each flushed, and then higher files are removed; run
 * again after a crash it finds the same lowest position. Nothing is skipped, messages past
 * it on some old lane are sent again. *moved_from: that partition's lane count when files were
 * rewritten, else 0; *resume: the position written. HDX_E_INTEGRITY when a file of it has no
 * valid slot (the route is refused rather than restarted from a guess), HDX_E_IO. */
int hdx_cursor_repartition(const char *dir, uint32_t lanes, uint32_t max_files,
                           uint32_t *moved_from, uint64_t *resume);

#endif
