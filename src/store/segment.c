/* segment: append-only segment files (segment.h has the contract and the durability argument;
 * docs/RECORD-FORMAT.md "Segment files" the format). */
#include "store/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "crypto/keys.h"

#define FILE_MAGIC "HDXSEG1\n"
#define FRAME_MAGIC 0x48445846u /* "HDXF" */
#define NAME_LEN 24             /* seg-<16 hex>.hdx */
#define ZERO_CHUNK (1u << 20)

struct seg_file {
    uint64_t base;
    size_t size;        /* the file's size when it was mapped (files never change size) */
    const uint8_t *map; /* NULL until first used */
    int fd;             /* the writer's current file, else -1 */
    int hdr_ok;
};

struct retired {
    const uint8_t *map;
    size_t size;
};

/* The helper thread's one job: make the next file ahead of need. */
enum prep_state { PREP_IDLE, PREP_ASKED, PREP_BUSY, PREP_READY, PREP_FAILED };

struct hdx_seg {
    char dir[PATH_MAX];
    int dirfd;
    int flags;
    size_t seg_size;
    struct seg_file *files; /* sorted by base */
    size_t nfiles, cap;
    struct retired *retired; /* mappings of removed files, unmapped at close */
    size_t nretired;
    /* writer */
    int recovered, failed;
    uint64_t next_seq;
    size_t cur; /* index into files, or SIZE_MAX */
    uint64_t cur_off;
    uint64_t asked_for; /* base of the current file the next one was asked for */
    struct iovec *iov;
    uint8_t *scratch; /* frame headers and computed hashes of one batch */
    size_t scratch_n;
    /* helper thread */
    pthread_t thr;
    int thr_started, stop;
    pthread_mutex_t lk;
    pthread_cond_t cv;
    enum prep_state st;
    int hurry;         /* the writer waits for the file being made */
    int late;          /* the writer is past half its file and the next is not ready: no pauses */
    uint64_t late_for; /* writer's: base of the current file it has said "late" for */
    uint64_t pbase;
    size_t psize;
    int pfd;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static void leaf_hash(const uint8_t *leaf, size_t len, uint8_t out[32])
{
    static const uint8_t prefix = 0x00;
    const void *parts[] = {&prefix, leaf};
    const size_t lens[] = {1, len};
    hdx_sha256(out, 2, parts, lens);
}

/* ---- pure parsers ---------------------------------------------------------------------- */

uint64_t hdx_seg_leaf_seq(const uint8_t *leaf, size_t len)
{
    return len < HDX_SEG_LEAF_MIN ? 0 : be64(leaf + 5);
}

int hdx_seg_frame_parse(const uint8_t *buf, size_t avail, uint64_t expect_seq, int check_hash,
                        size_t *frame_len)
{
    uint8_t h[32];
    *frame_len = 0;
    if (avail < 8) return HDX_E_NOTFOUND;
    uint32_t magic = be32(buf), len = be32(buf + 4);
    if (magic == 0 && len == 0) return HDX_E_NOTFOUND;
    if (magic != FRAME_MAGIC || len < HDX_SEG_LEAF_MIN || len > HDX_SEG_FRAME_MAX)
        return HDX_E_INTEGRITY;
    /* avail >= 8 here; subtract, never add, so a huge len cannot wrap. */
    if (avail - 8 < 32 || len > avail - 8 - 32) return HDX_E_INTEGRITY;
    if (hdx_seg_leaf_seq(buf + 8, len) != expect_seq) return HDX_E_INTEGRITY;
    if (check_hash) {
        leaf_hash(buf + 8, len, h);
        if (memcmp(h, buf + 8 + len, 32) != 0) return HDX_E_INTEGRITY;
    }
    *frame_len = (size_t)len + HDX_SEG_FRAME_OVERHEAD;
    return HDX_OK;
}

int hdx_seg_header_parse(const uint8_t *buf, size_t avail, uint64_t *base, int64_t *created_us)
{
    *base = 0;
    *created_us = 0;
    if (avail < HDX_SEG_HEADER_LEN || memcmp(buf, FILE_MAGIC, 8) != 0 ||
        be32(buf + 8) != HDX_SEG_VERSION || be32(buf + 12) != HDX_SEG_HEADER_LEN ||
        be64(buf + 16) == 0)
        return HDX_E_INTEGRITY;
    *base = be64(buf + 16);
    *created_us = (int64_t)be64(buf + 24);
    return HDX_OK;
}

/* ---- names and the file table ---------------------------------------------------------- */

static void seg_name(char *out, size_t cap, uint64_t base, const char *ext)
{
    snprintf(out, cap, "seg-%016llx.%s", (unsigned long long)base, ext);
}

/* seg-<16 lowercase hex>.<ext>, exactly. */
static int parse_name(const char *name, const char *ext, uint64_t *base)
{
    uint64_t v = 0;
    if (strncmp(name, "seg-", 4) != 0 || name[20] != '.' || strcmp(name + 21, ext) != 0) return -1;
    for (int i = 4; i < 20; i++) {
        char c = name[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *base = v;
    return v == 0 ? -1 : 0;
}

/* Index of base in the table, or where it would go (*found 0). */
static size_t file_find(const struct hdx_seg *s, uint64_t base, int *found)
{
    size_t lo = 0, hi = s->nfiles;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->files[mid].base < base)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->nfiles && s->files[lo].base == base;
    return lo;
}

static int file_insert(struct hdx_seg *s, uint64_t base, size_t *idx)
{
    int found;
    size_t i = file_find(s, base, &found);
    if (!found) {
        if (s->nfiles == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            struct seg_file *f = realloc(s->files, cap * sizeof *f);
            if (f == NULL) return HDX_E_NOMEM;
            s->files = f;
            s->cap = cap;
        }
        memmove(s->files + i + 1, s->files + i, (s->nfiles - i) * sizeof *s->files);
        s->files[i] = (struct seg_file){.base = base, .fd = -1};
        s->nfiles++;
        if (s->cur != SIZE_MAX && s->cur >= i) s->cur++;
    }
    *idx = i;
    return HDX_OK;
}

/* Drops entry i; its mapping stays alive (borrowed pointers) until close. */
static int file_remove(struct hdx_seg *s, size_t i)
{
    struct seg_file *f = &s->files[i];
    if (f->map) {
        struct retired *r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
        if (r == NULL) return HDX_E_NOMEM;
        s->retired = r;
        r[s->nretired++] = (struct retired){f->map, f->size};
    }
    if (f->fd >= 0) close(f->fd);
    memmove(s->files + i, s->files + i + 1, (s->nfiles - i - 1) * sizeof *s->files);
    s->nfiles--;
    if (s->cur != SIZE_MAX && s->cur > i) s->cur--;
    return HDX_OK;
}

/* Maps file i on first use and checks its header against its name. */
static int file_map(struct hdx_seg *s, size_t i)
{
    struct seg_file *f = &s->files[i];
    char name[NAME_LEN + 8];
    struct stat st;
    uint64_t base;
    int64_t created;
    if (f->map) return f->hdr_ok ? HDX_OK : HDX_E_INTEGRITY;
    int fd = f->fd;
    if (fd < 0) {
        seg_name(name, sizeof name, f->base, "hdx");
        fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return errno == ENOENT ? HDX_E_NOTFOUND : HDX_E_IO;
    }
    int rc = fstat(fd, &st) != 0 ? HDX_E_IO : HDX_OK;
    if (rc == HDX_OK && (!S_ISREG(st.st_mode) || st.st_size < HDX_SEG_HEADER_LEN))
        rc = HDX_E_INTEGRITY;
    if (rc == HDX_OK && (uint64_t)st.st_size > SIZE_MAX) rc = HDX_E_TOOBIG;
    void *m = MAP_FAILED;
    if (rc == HDX_OK) {
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) rc = HDX_E_IO;
    }
    if (fd != f->fd) close(fd);
    if (rc != HDX_OK) return rc;
    f->map = m;
    f->size = (size_t)st.st_size;
    f->hdr_ok = hdx_seg_header_parse(f->map, f->size, &base, &created) == HDX_OK && base == f->base;
    return f->hdr_ok ? HDX_OK : HDX_E_INTEGRITY;
}

/* Adds every segment file in the directory to the table; removes temp files when asked. */
static int dir_refresh(struct hdx_seg *s, int remove_tmp, int *removed)
{
    int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    uint64_t base;
    size_t idx;
    int rc = HDX_OK;
    if (d == NULL) {
        if (fd >= 0) close(fd);
        return HDX_E_IO;
    }
    while (rc == HDX_OK && (e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != NAME_LEN) continue;
        if (parse_name(e->d_name, "hdx", &base) == 0)
            rc = file_insert(s, base, &idx);
        else if (remove_tmp && parse_name(e->d_name, "tmp", &base) == 0) {
            if (unlinkat(s->dirfd, e->d_name, 0) != 0) rc = HDX_E_IO;
            *removed = 1;
        }
    }
    closedir(d);
    return rc;
}

/* ---- making files ---------------------------------------------------------------------- */

static int do_sync(const struct hdx_seg *s, int fd)
{
    return (s->flags & HDX_SEG_NOSYNC) || fdatasync(fd) == 0 ? 0 : -1;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Temp name, header and zeros, sync, rename (never over an existing file), directory sync.
 * Returns the open O_RDWR fd in *out. Runs on the helper thread or the writer. */
/* paced (the helper thread making a file ahead): the zeros go to the disk 256 KiB at a time
 * with a 1 ms pause between. Written at once, 64 MiB of zeros and their fsync held the disk
 * for a tenth of a second every few seconds, and every batch's fdatasync queued behind them:
 * most of the p99 ACK latency at a steady rate. The pauses cap the helper near 150 MB/s,
 * below the rate large bodies fill a file at (512 KiB messages: 220 MB/s here), and zeros
 * cost as much to write as the data; so once the writer is past half its file (late) or waits
 * for it (hurry), the rest of the file is fallocated instead (zeros where fallocate fails). */
#define PACE_CHUNK (256u << 10)
static int make_file(struct hdx_seg *s, uint64_t base, size_t size, int *out, int paced)
{
    char tmp[NAME_LEN + 8], fin[NAME_LEN + 8];
    uint8_t *z = calloc(1, ZERO_CHUNK);
    int rc = HDX_E_IO;
    *out = -1;
    if (z == NULL) return HDX_E_NOMEM;
    seg_name(tmp, sizeof tmp, base, "tmp");
    seg_name(fin, sizeof fin, base, "hdx");
    (void)unlinkat(s->dirfd, tmp, 0); /* a leftover of a crash */
    int fd = openat(s->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) goto out;
    memcpy(z, FILE_MAGIC, 8);
    put32(z + 8, HDX_SEG_VERSION);
    put32(z + 12, HDX_SEG_HEADER_LEN);
    put64(z + 16, base);
    put64(z + 24, (uint64_t)hdx_now_us());
    size_t step = paced ? PACE_CHUNK : ZERO_CHUNK;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (pwrite_all(fd, z, n, (off_t)off) != 0) goto out;
        if (off == 0) memset(z, 0, HDX_SEG_HEADER_LEN);
        if (!paced || (s->flags & HDX_SEG_NOSYNC)) continue;
        pthread_mutex_lock(&s->lk);
        int hurry = s->hurry, late = s->late;
        pthread_mutex_unlock(&s->lk);
        /* Behind the writer: the rest as unwritten extents, which read as zeros. The batches
         * that land there pay ext4's extent conversion in their fdatasync (see segment.h),
         * which only writers fast enough to be late (large bodies) meet, and it is small
         * beside their own data; zeros would cost them a stall here instead. */
        if ((hurry || late) && off + n < size &&
            fallocate(fd, 0, (off_t)(off + n), (off_t)(size - off - n)) == 0)
            break;
        if (hurry) continue;
        (void)sync_file_range(fd, (off_t)off, (off_t)n,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
        if (!late) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (!(s->flags & HDX_SEG_NOSYNC) && fsync(fd) != 0) goto out;
    if (renameat2(s->dirfd, tmp, s->dirfd, fin, RENAME_NOREPLACE) != 0) {
        rc = errno == EEXIST ? HDX_E_EXISTS : HDX_E_IO;
        goto out;
    }
    if (!(s->flags & HDX_SEG_NOSYNC) && fsync(s->dirfd) != 0) goto out;
    *out = fd;
    fd = -1;
    rc = HDX_OK;
out:
    if (fd >= 0) {
        close(fd);
        (void)unlinkat(s->dirfd, tmp, 0);
    }
    free(z);
    return rc;
}

static void *prep_main(void *arg)
{
    /* Asked for when the current file is half full: a preparer that lags has time left. */
    (void)hdx_thread_background("hdx-segprep");
    struct hdx_seg *s = arg;
    pthread_mutex_lock(&s->lk);
    for (;;) {
        while (!s->stop && s->st != PREP_ASKED)
            pthread_cond_wait(&s->cv, &s->lk);
        if (s->stop) break;
        s->st = PREP_BUSY;
        s->late = 0;
        uint64_t base = s->pbase;
        size_t size = s->psize;
        pthread_mutex_unlock(&s->lk);
        int fd = -1, rc = make_file(s, base, size, &fd, 1);
        pthread_mutex_lock(&s->lk);
        s->pfd = fd;
        s->st = rc == HDX_OK ? PREP_READY : PREP_FAILED;
        if (rc != HDX_OK)
            hdx_warn("seg_prepare_failed", "base=%llu err=%s", (unsigned long long)base,
                     hdx_strerror(rc));
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->lk);
    return NULL;
}

/* Asks the helper for the file after the current one as soon as there is a current one: the
 * helper then has the whole file's filling time. Once the current file is half full and the
 * next is still being made, tells the helper it is late. */
static void maybe_ask(struct hdx_seg *s)
{
    const struct seg_file *f = s->cur == SIZE_MAX ? NULL : &s->files[s->cur];
    if (f && s->asked_for == f->base) {
        if (s->late_for == f->base || s->cur_off < f->size / 2) return;
        s->late_for = f->base;
        pthread_mutex_lock(&s->lk);
        if (s->st == PREP_ASKED || s->st == PREP_BUSY) s->late = 1;
        pthread_mutex_unlock(&s->lk);
        return;
    }
    pthread_mutex_lock(&s->lk);
    if (!s->thr_started) {
        if (pthread_create(&s->thr, NULL, prep_main, s) != 0) {
            pthread_mutex_unlock(&s->lk);
            return; /* the writer will make its files itself */
        }
        s->thr_started = 1;
    }
    if (s->st == PREP_IDLE) {
        s->st = PREP_ASKED;
        s->pbase = s->next_seq;
        s->psize = s->seg_size;
        s->asked_for = f ? f->base : 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->lk);
}

static void prep_discard(struct hdx_seg *s)
{
    char fin[NAME_LEN + 8];
    seg_name(fin, sizeof fin, s->pbase, "hdx");
    close(s->pfd);
    s->pfd = -1;
    (void)unlinkat(s->dirfd, fin, 0); /* empty: harmless if it survives a crash */
}

/* Makes the file that frame `seq` (needing `need` bytes with the header) goes to the current
 * one: the prepared file when it is there and fits, else one made here. */
static int next_file(struct hdx_seg *s, uint64_t seq, size_t need)
{
    int fd = -1, rc;
    uint64_t base = seq;
    size_t size = need > s->seg_size ? need : s->seg_size, idx;
    const char *why = "not_asked";
    pthread_mutex_lock(&s->lk);
    if (s->st == PREP_ASKED) {
        s->st = PREP_IDLE; /* not started: cancel, make it here */
        why = "not_started";
    }
    s->hurry = 1; /* the helper stops pacing its writes */
    int64_t wait_from = s->st == PREP_BUSY ? hdx_monotonic_us() : 0;
    while (s->st == PREP_BUSY) {
        why = "in_progress";
        pthread_cond_wait(&s->cv, &s->lk);
    }
    s->hurry = 0;
    long long waited_ms = wait_from ? (long long)(hdx_monotonic_us() - wait_from) / 1000 : 0;
    if (waited_ms >= 5 && s->cur != SIZE_MAX) /* every append waited with it: a stall */
        hdx_warn("seg_wait", "seq=%llu waited_ms=%lld", (unsigned long long)seq, waited_ms);
    if (s->st == PREP_READY) {
        if (s->pbase <= seq && s->psize >= need) {
            fd = s->pfd;
            base = s->pbase;
            size = s->psize;
            s->pfd = -1;
            why = NULL;
        } else {
            prep_discard(s); /* a frame too big for it, or an old one */
            why = "too_small";
        }
    } else if (s->st == PREP_FAILED) {
        why = "failed";
    }
    s->st = PREP_IDLE;
    pthread_mutex_unlock(&s->lk);
    if (fd < 0) {
        if (need > s->seg_size)
            hdx_info("seg_own_file", "seq=%llu size=%zu", (unsigned long long)seq, size);
        else if (s->cur == SIZE_MAX) /* the store's first file: nothing could be made ahead */
            hdx_info("seg_first_file", "seq=%llu size=%zu", (unsigned long long)seq, size);
        else
            hdx_warn("seg_not_ready", "seq=%llu why=%s", (unsigned long long)seq, why);
        rc = make_file(s, base, size, &fd, 0);
        if (rc != HDX_OK) return rc;
    }
    if (s->cur != SIZE_MAX && s->files[s->cur].fd >= 0) {
        close(s->files[s->cur].fd);
        s->files[s->cur].fd = -1;
    }
    rc = file_insert(s, base, &idx);
    if (rc != HDX_OK) {
        close(fd);
        return rc;
    }
    struct seg_file *f = &s->files[idx];
    if (f->map) { /* a reader's mapping of a file of this name that was removed since */
        struct retired *r = realloc(s->retired, (s->nretired + 1) * sizeof *r);
        if (r == NULL) {
            close(fd);
            return HDX_E_NOMEM;
        }
        s->retired = r;
        r[s->nretired++] = (struct retired){f->map, f->size};
        f->map = NULL;
    }
    f->fd = fd;
    f->size = size;
    s->cur = idx;
    s->cur_off = HDX_SEG_HEADER_LEN;
    return HDX_OK;
}

/* ---- open and close -------------------------------------------------------------------- */

static void fsync_parent(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    char *slash = strrchr(p, '/');
    if (slash == p)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(p, sizeof p, ".");
    (void)hdx_fsync_dir(p);
}

int hdx_seg_open(const char *dir, int flags, size_t seg_size, struct hdx_seg **out)
{
    *out = NULL;
    if (seg_size == 0) seg_size = HDX_SEG_SIZE_DEFAULT;
    if (seg_size < HDX_SEG_SIZE_MIN || strlen(dir) >= PATH_MAX) return HDX_E_INVAL;
    if ((flags & HDX_SEG_CREATE) && !(flags & HDX_SEG_RDONLY)) {
        if (mkdir(dir, 0700) == 0)
            fsync_parent(dir);
        else if (errno != EEXIST)
            return HDX_E_IO;
    }
    struct hdx_seg *s = calloc(1, sizeof *s);
    if (s == NULL) return HDX_E_NOMEM;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->flags = flags;
    s->seg_size = seg_size;
    s->cur = SIZE_MAX;
    s->pfd = -1;
    pthread_mutex_init(&s->lk, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        int e = errno;
        hdx_seg_close(s);
        return e == ENOENT ? HDX_E_NOTFOUND : HDX_E_IO;
    }
    if (!(flags & HDX_SEG_RDONLY) && flock(s->dirfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        hdx_seg_close(s);
        return e == EWOULDBLOCK ? HDX_E_EXISTS : HDX_E_IO;
    }
    *out = s;
    return HDX_OK;
}

void hdx_seg_close(struct hdx_seg *s)
{
    if (s == NULL) return;
    if (s->thr_started) {
        pthread_mutex_lock(&s->lk);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->lk);
        pthread_join(s->thr, NULL);
    }
    /* A prepared file stays: the next recover removes it or the next writer uses it. */
    if (s->pfd >= 0) close(s->pfd);
    for (size_t i = 0; i < s->nfiles; i++) {
        if (s->files[i].map) munmap((void *)(uintptr_t)s->files[i].map, s->files[i].size);
        if (s->files[i].fd >= 0) close(s->files[i].fd);
    }
    for (size_t i = 0; i < s->nretired; i++)
        munmap((void *)(uintptr_t)s->retired[i].map, s->retired[i].size);
    if (s->dirfd >= 0) close(s->dirfd); /* releases the flock */
    pthread_mutex_destroy(&s->lk);
    pthread_cond_destroy(&s->cv);
    free(s->files);
    free(s->retired);
    free(s->iov);
    free(s->scratch);
    free(s);
}

/* ---- reading --------------------------------------------------------------------------- */

/* The mapped file of base, looked up in the directory when not known yet. */
static int file_get(struct hdx_seg *s, uint64_t base, size_t *idx)
{
    int found, rc;
    size_t i = file_find(s, base, &found);
    if (!found) {
        rc = file_insert(s, base, &i);
        if (rc != HDX_OK) return rc;
    }
    rc = file_map(s, i);
    if (rc == HDX_E_NOTFOUND && !found) (void)file_remove(s, i);
    *idx = i;
    return rc;
}

int hdx_seg_read(struct hdx_seg *s, struct hdx_seg_pos pos, uint64_t seq, int check_hash,
                 const uint8_t **leaf, size_t *len)
{
    size_t i, fl;
    *leaf = NULL;
    *len = 0;
    int rc = file_get(s, pos.base, &i);
    if (rc != HDX_OK) return rc;
    const struct seg_file *f = &s->files[i];
    if (pos.off >= f->size) return HDX_E_NOTFOUND;
    if (pos.off < HDX_SEG_HEADER_LEN) return HDX_E_INTEGRITY;
    rc = hdx_seg_frame_parse(f->map + pos.off, f->size - pos.off, seq, check_hash, &fl);
    if (rc != HDX_OK) return rc;
    *leaf = f->map + pos.off + 8;
    *len = fl - HDX_SEG_FRAME_OVERHEAD;
    return HDX_OK;
}

/* The seq the frame at off claims, without checking it (0: none). */
static uint64_t peek_seq(const struct seg_file *f, uint64_t off)
{
    if (off > f->size || f->size - off < 8 + HDX_SEG_LEAF_MIN) return 0;
    return hdx_seg_leaf_seq(f->map + off + 8, HDX_SEG_LEAF_MIN);
}

/* Walks file i's frames from off with seqs from expect; cb as in scan (NULL: count only).
 * Returns the count; *end gets the end of the last frame, *stop whether cb stopped. */
static uint64_t walk(const struct seg_file *f, uint64_t off, uint64_t expect,
                     int (*cb)(void *, uint64_t, struct hdx_seg_pos, const uint8_t *, size_t),
                     void *ctx, uint64_t *end, int *stop)
{
    uint64_t n = 0;
    size_t fl;
    *stop = 0;
    while (off <= f->size &&
           hdx_seg_frame_parse(f->map + off, f->size - off, expect, 1, &fl) == HDX_OK) {
        if (cb && cb(ctx, expect, (struct hdx_seg_pos){f->base, off}, f->map + off + 8,
                     fl - HDX_SEG_FRAME_OVERHEAD) != 0) {
            *stop = 1;
            n++;
            break;
        }
        off += fl;
        expect++;
        n++;
    }
    *end = off;
    return n;
}

int hdx_seg_scan(struct hdx_seg *s,
                 int (*cb)(void *ctx, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                           size_t len),
                 void *ctx)
{
    int removed = 0, bad = 0, stop = 0;
    uint64_t last = 0, end;
    int rc = dir_refresh(s, 0, &removed);
    if (rc != HDX_OK) return rc;
    for (size_t i = 0; i < s->nfiles && !stop; i++) {
        rc = file_map(s, i);
        if (rc == HDX_E_NOTFOUND) continue; /* removed since */
        if (rc != HDX_OK) {
            bad = 1;
            continue;
        }
        const struct seg_file *f = &s->files[i];
        uint64_t first = peek_seq(f, HDX_SEG_HEADER_LEN);
        size_t fl;
        if (hdx_seg_frame_parse(f->map + HDX_SEG_HEADER_LEN, f->size - HDX_SEG_HEADER_LEN, first, 1,
                                &fl) != HDX_OK)
            continue; /* no frame: made ahead, or a torn first frame */
        if (first < f->base || (last != 0 && first != last + 1)) bad = 1;
        uint64_t n = walk(f, HDX_SEG_HEADER_LEN, first, cb, ctx, &end, &stop);
        last = first + n - 1;
    }
    return bad ? HDX_E_INTEGRITY : HDX_OK;
}

/* ---- the tail after the index ------------------------------------------------------- */

int hdx_seg_tail(struct hdx_seg *s, uint64_t last_seq, const struct hdx_seg_pos *last,
                 int (*cb)(void *ctx, uint64_t seq, struct hdx_seg_pos pos, const uint8_t *leaf,
                           size_t len),
                 void *ctx, uint64_t *walked)
{
    int removed = 0, stop = 0, rc;
    uint64_t expect = last_seq + 1, end = 0, n;
    size_t i = 0, fl;
    *walked = 0;
    rc = dir_refresh(s, 0, &removed);
    if (rc != HDX_OK) return rc;
    if (last) {
        rc = file_get(s, last->base, &i);
        if (rc != HDX_OK) return HDX_E_INTEGRITY;
        const struct seg_file *f = &s->files[i];
        if (last->off < HDX_SEG_HEADER_LEN || last->off >= f->size ||
            hdx_seg_frame_parse(f->map + last->off, f->size - last->off, last_seq, 1, &fl) !=
                HDX_OK)
            return HDX_E_INTEGRITY;
        n = walk(f, last->off + fl, expect, cb, ctx, &end, &stop);
        expect += n;
        *walked += n;
        i++;
    }
    /* Later files continue only with the very next seq in their first frame. */
    for (; i < s->nfiles && !stop; i++) {
        if (file_map(s, i) != HDX_OK) continue;
        const struct seg_file *f = &s->files[i];
        if (hdx_seg_frame_parse(f->map + HDX_SEG_HEADER_LEN, f->size - HDX_SEG_HEADER_LEN, expect,
                                1, &fl) != HDX_OK)
            break;
        n = walk(f, HDX_SEG_HEADER_LEN, expect, cb, ctx, &end, &stop);
        expect += n;
        *walked += n;
    }
    return HDX_OK;
}

/* ---- recovery -------------------------------------------------------------------------- */

/* Zeroes [off, size) of file f where it is not zero already, then syncs. */
static int zero_tail(struct hdx_seg *s, struct seg_file *f, uint64_t off)
{
    uint8_t *z = calloc(1, ZERO_CHUNK);
    int wrote = 0, rc = HDX_OK;
    if (z == NULL) return HDX_E_NOMEM;
    while (off < f->size && rc == HDX_OK) {
        size_t n = f->size - off < ZERO_CHUNK ? f->size - off : ZERO_CHUNK;
        if (memcmp(f->map + off, z, n) != 0) {
            if (pwrite_all(f->fd, z, n, (off_t)off) != 0) rc = HDX_E_IO;
            wrote = 1;
        }
        off += n;
    }
    if (rc == HDX_OK && wrote && do_sync(s, f->fd) != 0) rc = HDX_E_IO;
    free(z);
    return rc;
}

/* Removes file i (after counting its frames into *cut). */
static int cut_file(struct hdx_seg *s, size_t i, uint64_t *cut)
{
    char name[NAME_LEN + 8];
    uint64_t end;
    int stop;
    if (file_map(s, i) == HDX_OK) {
        const struct seg_file *f = &s->files[i];
        *cut +=
            walk(f, HDX_SEG_HEADER_LEN, peek_seq(f, HDX_SEG_HEADER_LEN), NULL, NULL, &end, &stop);
    }
    seg_name(name, sizeof name, s->files[i].base, "hdx");
    if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT) return HDX_E_IO;
    return file_remove(s, i);
}

int hdx_seg_recover(struct hdx_seg *s, uint64_t last_seq, struct hdx_seg_pos last, uint64_t *cut)
{
    char name[NAME_LEN + 8];
    uint64_t ncut = 0, end = HDX_SEG_HEADER_LEN;
    int removed = 0, stop, rc;
    size_t i = SIZE_MAX, fl;
    if (cut) *cut = 0;
    if (s->flags & HDX_SEG_RDONLY) return HDX_E_PERM;
    if (s->recovered || s->failed) return HDX_E_INVAL;
    rc = dir_refresh(s, 1, &removed);
    if (rc != HDX_OK) return rc;
    if (last_seq != 0 && (last.base != 0 || last.off != 0)) {
        rc = file_get(s, last.base, &i);
        if (rc != HDX_OK) return HDX_E_INTEGRITY;
        struct seg_file *f = &s->files[i];
        if (last.off < HDX_SEG_HEADER_LEN || last.off >= f->size ||
            hdx_seg_frame_parse(f->map + last.off, f->size - last.off, last_seq, 1, &fl) != HDX_OK)
            return HDX_E_INTEGRITY;
        end = last.off + fl;
        ncut += walk(f, end, last_seq + 1, NULL, NULL, &(uint64_t){0}, &stop);
        seg_name(name, sizeof name, f->base, "hdx");
        f->fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
        if (f->fd < 0) return HDX_E_IO;
        rc = zero_tail(s, f, end);
        if (rc != HDX_OK) return rc;
    }
    /* Every later file holds only records the index never had. */
    while (s->nfiles > (i == SIZE_MAX ? 0 : i + 1)) {
        rc = cut_file(s, s->nfiles - 1, &ncut);
        if (rc != HDX_OK) return rc;
        removed = 1;
    }
    if (removed && !(s->flags & HDX_SEG_NOSYNC) && fsync(s->dirfd) != 0) return HDX_E_IO;
    s->cur = i;
    s->cur_off = end;
    s->next_seq = last_seq + 1;
    s->recovered = 1;
    if (cut) *cut = ncut;
    maybe_ask(s);
    return HDX_OK;
}

/* ---- appending ------------------------------------------------------------------------- */

static int check_frames(const struct hdx_seg *s, const struct hdx_seg_frame *fr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fr[i].seq != s->next_seq + i || fr[i].leaf == NULL || fr[i].len < HDX_SEG_LEAF_MIN ||
            fr[i].len > HDX_SEG_FRAME_MAX || hdx_seg_leaf_seq(fr[i].leaf, fr[i].len) != fr[i].seq)
            return HDX_E_INVAL;
#ifdef HDX_DEBUG_ASSERTIONS
        uint8_t h[32];
        leaf_hash(fr[i].leaf, fr[i].len, h);
        if (fr[i].leaf_hash && memcmp(h, fr[i].leaf_hash, 32) != 0) return HDX_E_INVAL;
#endif
    }
    return HDX_OK;
}

static int scratch_reserve(struct hdx_seg *s, size_t n)
{
    if (n <= s->scratch_n) return HDX_OK;
    if (n > SIZE_MAX / (3 * sizeof(struct iovec) + 40)) return HDX_E_NOMEM;
    struct iovec *iov = realloc(s->iov, 3 * n * sizeof *iov);
    if (iov == NULL) return HDX_E_NOMEM;
    s->iov = iov;
    uint8_t *sc = realloc(s->scratch, 40 * n);
    if (sc == NULL) return HDX_E_NOMEM;
    s->scratch = sc;
    s->scratch_n = n;
    return HDX_OK;
}

static int pwritev_all(int fd, struct iovec *iov, size_t cnt, off_t off)
{
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : (int)cnt, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += w;
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int hdx_seg_append(struct hdx_seg *s, const struct hdx_seg_frame *frames, size_t n,
                   struct hdx_seg_pos *pos)
{
    if (s->flags & HDX_SEG_RDONLY) return HDX_E_PERM;
    if (s->failed) return HDX_E_IO;
    if (!s->recovered) return HDX_E_INVAL;
    if (n == 0) return HDX_OK;
    int rc = check_frames(s, frames, n);
    if (rc == HDX_OK) rc = scratch_reserve(s, n);
    if (rc != HDX_OK) return rc;
    size_t i = 0;
    while (i < n) {
        size_t fsz = frames[i].len + HDX_SEG_FRAME_OVERHEAD;
        if (s->cur == SIZE_MAX || fsz > s->files[s->cur].size - s->cur_off) {
            rc = next_file(s, frames[i].seq, fsz + HDX_SEG_HEADER_LEN);
            if (rc != HDX_OK) goto fail;
        }
        struct seg_file *f = &s->files[s->cur];
        uint64_t off = s->cur_off;
        size_t j = i, k = 0;
        while (j < n && frames[j].len + HDX_SEG_FRAME_OVERHEAD <= f->size - off) {
            const struct hdx_seg_frame *fr = &frames[j];
            uint8_t *hdr = s->scratch + 40 * j, *h = hdr + 8;
            put32(hdr, FRAME_MAGIC);
            put32(hdr + 4, (uint32_t)fr->len);
            if (fr->leaf_hash)
                memcpy(h, fr->leaf_hash, 32);
            else
                leaf_hash(fr->leaf, fr->len, h);
            s->iov[k++] = (struct iovec){hdr, 8};
            s->iov[k++] = (struct iovec){(void *)(uintptr_t)fr->leaf, fr->len};
            s->iov[k++] = (struct iovec){h, 32};
            pos[j] = (struct hdx_seg_pos){f->base, off};
            off += fr->len + HDX_SEG_FRAME_OVERHEAD;
            j++;
        }
        /* Written and synced file by file: a later file never holds durable frames while an
         * earlier one may not. */
        if (pwritev_all(f->fd, s->iov, k, (off_t)s->cur_off) != 0 || do_sync(s, f->fd) != 0) {
            rc = HDX_E_IO;
            goto fail;
        }
        if (!(s->flags & HDX_SEG_NOSYNC)) hdx_metric_flush();
        s->cur_off = off;
        s->next_seq = frames[j - 1].seq + 1;
        i = j;
        maybe_ask(s);
    }
    return HDX_OK;
fail:
    s->failed = 1;
    hdx_error("seg_append_failed", "seq=%llu err=%s errno=%d", (unsigned long long)frames[i].seq,
              hdx_strerror(rc), errno);
    return rc;
}
