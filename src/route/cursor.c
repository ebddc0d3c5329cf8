#include "route/cursor.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/err.h"
#include "core/util.h"

#define SLOT 64
#define MAGIC "HDXRC001"

struct hdx_cursor {
    int fd;
    uint8_t *map; /* the two slots, MAP_SHARED: a write is a memcpy, no syscall, no inode update */
    uint64_t gen;
    struct hdx_cursor_pos pos;
    int64_t synced_us;
    int dirty;
};

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void encode(uint8_t s[SLOT], uint64_t gen, const struct hdx_cursor_pos *p)
{
    uint8_t h[32];
    memset(s, 0, SLOT);
    memcpy(s, MAGIC, 8);
    put64(s + 8, gen);
    put64(s + 16, p->delivered);
    put64(s + 24, p->audited);
    put64(s + 32, (uint64_t)p->lanes | (uint64_t)p->lane << 32);
    hdx_sha256_once(s, 48, h);
    memcpy(s + 48, h, 16);
}

static int decode(const uint8_t s[SLOT], uint64_t *gen, struct hdx_cursor_pos *p)
{
    uint8_t h[32];
    if (memcmp(s, MAGIC, 8) != 0) return -1;
    hdx_sha256_once(s, 48, h);
    if (memcmp(h, s + 48, 16) != 0) return -1;
    *gen = get64(s + 8);
    p->delivered = get64(s + 16);
    p->audited = get64(s + 24);
    uint64_t lanes = get64(s + 32);
    p->lanes = (uint32_t)lanes;
    p->lane = (uint32_t)(lanes >> 32);
    return 0;
}

/* The newest valid slot of fd's two: 1 found, 0 none (an empty or new file), -1 damaged. */
static int read_slots(int fd, uint64_t *gen, struct hdx_cursor_pos *p)
{
    uint8_t buf[2 * SLOT];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    if (n <= 0) return n == 0 ? 0 : -1;
    int found = 0;
    for (int i = 0; i < 2 && (i + 1) * SLOT <= n; i++) {
        uint64_t g;
        struct hdx_cursor_pos q;
        if (decode(buf + i * SLOT, &g, &q) == 0 && (!found || g > *gen)) {
            *gen = g;
            *p = q;
            found = 1;
        }
    }
    return found ? 1 : -1;
}

int hdx_cursor_read(const char *path, struct hdx_cursor_pos *out)
{
    uint64_t gen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? HDX_E_NOTFOUND : HDX_E_IO;
    int rc = read_slots(fd, &gen, out);
    close(fd);
    return rc == 1 ? HDX_OK : rc == 0 ? HDX_E_NOTFOUND : HDX_E_INTEGRITY;
}

int hdx_cursor_open(const char *path, const struct hdx_cursor_pos *start, struct hdx_cursor **out)
{
    struct hdx_cursor *c = calloc(1, sizeof(*c));
    char dir[HDX_PATH_MAX];
    if (!c) return HDX_E_NOMEM;
    int created = access(path, F_OK) != 0;
    c->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->fd < 0) {
        free(c);
        return HDX_E_IO;
    }
    int rc = read_slots(c->fd, &c->gen, &c->pos);
    if (rc < 0) { /* both slots bad: refuse rather than start over and resend everything */
        close(c->fd);
        free(c);
        return HDX_E_INTEGRITY;
    }
    struct stat st;
    if (fstat(c->fd, &st) != 0 ||
        (st.st_size < 2 * SLOT && (ftruncate(c->fd, 2 * SLOT) != 0 || fsync(c->fd) != 0)) ||
        (c->map = mmap(NULL, 2 * SLOT, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0)) ==
            MAP_FAILED) {
        c->map = NULL;
        close(c->fd);
        free(c);
        return HDX_E_IO;
    }
    if (rc == 0) {
        c->pos = *start;
        c->gen = 0;
        if (hdx_cursor_set(c, start, 1) != HDX_OK) {
            hdx_cursor_close(c);
            return HDX_E_IO;
        }
        if (created) {
            snprintf(dir, sizeof(dir), "%s", path);
            if (hdx_fsync_dir(dirname(dir)) != 0) {
                hdx_cursor_close(c);
                return HDX_E_IO;
            }
        }
    }
    *out = c;
    return HDX_OK;
}

void hdx_cursor_get(const struct hdx_cursor *c, struct hdx_cursor_pos *out)
{
    *out = c->pos;
}

int hdx_cursor_set(struct hdx_cursor *c, const struct hdx_cursor_pos *p, int force)
{
    uint8_t s[SLOT];
    uint64_t gen = c->gen + 1;
    encode(s, gen, p);
    /* the page cache holds it at once, so a killed process loses nothing written here */
    memcpy(c->map + (gen % 2) * SLOT, s, SLOT);
    c->gen = gen;
    c->pos = *p;
    c->dirty = 1;
    int64_t now = hdx_monotonic_us();
    if (force || now - c->synced_us >= HDX_CURSOR_SYNC_US) {
        if (msync(c->map, 2 * SLOT, MS_SYNC) != 0) return HDX_E_IO;
        c->synced_us = now;
        c->dirty = 0;
    }
    return HDX_OK;
}

void hdx_cursor_close(struct hdx_cursor *c)
{
    if (!c) return;
    if (c->map) {
        if (c->dirty) (void)msync(c->map, 2 * SLOT, MS_SYNC);
        munmap(c->map, 2 * SLOT);
    }
    close(c->fd);
    free(c);
}

static void lane_file(const char *dir, uint32_t k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/lane-%u.cursor", dir, k);
}

int hdx_cursor_repartition(const char *dir, uint32_t lanes, uint32_t max_files,
                           uint32_t *moved_from, uint64_t *resume)
{
    char path[HDX_PATH_MAX];
    struct hdx_cursor_pos first;
    *moved_from = 0;
    *resume = 0;
    lane_file(dir, 0, path, sizeof(path));
    int rc0 = hdx_cursor_read(path, &first);
    if (rc0 != HDX_OK && rc0 != HDX_E_NOTFOUND) return rc0;
    /* the partition that wrote lane 0 last, or (no lane 0 file) every file there is */
    uint32_t part = rc0 == HDX_OK ? first.lanes : 0;
    int any = rc0 == HDX_OK, consistent = rc0 == HDX_OK && first.lanes == lanes;
    uint64_t low = UINT64_MAX, alow = UINT64_MAX;
    for (uint32_t k = 0; k < max_files; k++) {
        struct hdx_cursor_pos q;
        lane_file(dir, k, path, sizeof(path));
        int rc = hdx_cursor_read(path, &q);
        if (rc == HDX_E_NOTFOUND) {
            if (k < lanes) consistent = 0;
            continue;
        }
        int member = part ? (k < part && q.lanes == part) : 1;
        if (rc != HDX_OK) {
            if (member || k < lanes) return rc;
            continue; /* a damaged file no partition in question owns: removed below */
        }
        any = 1;
        if (k < lanes && q.lanes != lanes) consistent = 0;
        if (!member) continue;
        if (q.delivered < low) low = q.delivered;
        if (q.audited < alow) alow = q.audited;
    }
    if (!any) return HDX_OK;
    if (!consistent) {
        if (alow > low) alow = low;
        for (uint32_t k = 0; k < lanes; k++) { /* lane 0 first: it names the new partition */
            struct hdx_cursor *c;
            struct hdx_cursor_pos p = {
                .delivered = low, .audited = alow, .lanes = lanes, .lane = k};
            lane_file(dir, k, path, sizeof(path));
            int rc = hdx_cursor_open(path, &p, &c);
            if (rc != HDX_OK) return rc;
            rc = hdx_cursor_set(c, &p, 1);
            hdx_cursor_close(c);
            if (rc != HDX_OK) return rc;
        }
        *moved_from = part ? part : lanes;
        *resume = low;
    }
    int removed = 0;
    for (uint32_t k = lanes; k < max_files; k++) {
        lane_file(dir, k, path, sizeof(path));
        if (unlink(path) == 0)
            removed = 1;
        else if (errno != ENOENT)
            return HDX_E_IO;
    }
    if (removed && hdx_fsync_dir(dir) != 0) return HDX_E_IO;
    return HDX_OK;
}
