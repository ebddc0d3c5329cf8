/* diskflush: the flush rate of a data directory's file system for the write patterns hdx
 * has, measured by bench/run.sh in the same run as hdxd so that hdx's figures can be given as a
 * ratio to it.
 *   diskflush DIR [SECONDS_PER_STEP [PREALLOC_MIB]]      defaults 1 s, 256 MiB
 * In DIR it creates a file without a name (O_TMPFILE, so nothing is left behind) of PREALLOC_MIB
 * written with zeros and flushed (fdatasync), so the steps below overwrite allocated blocks and
 * no fdatasync has to commit file growth to the file system journal. Then:
 *   - for B in 1, 16, 64, 256: records of 1,100 bytes (a ~1 KB HL7 message sealed with its
 *     record header) appended B at a time, one pwrite of the B records then one fdatasync,
 *     for SECONDS_PER_STEP: records/s, fdatasync/s and the p50/p99 of the fdatasync alone;
 *   - sequential: 512 KiB pwrites (a DICOM-sized body), one fdatasync per 8 MiB, for
 *     SECONDS_PER_STEP: MB/s (10^6 bytes);
 *   - instance: one 512 KiB pwrite then one fdatasync, again and again (a DICOM instance made
 *     durable before its Success, one association), for SECONDS_PER_STEP: per second and the
 *     p50/p99 of the pair.
 * Writes wrap to the start of the file when they reach its end. Output: one key=value line per
 * step, prefixed "diskflush ". Every loop is bounded by time. Exit 1 on an I/O error. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REC_LEN 1100
#define SEQ_BLOCK (512u << 10)
#define SEQ_SYNC (8u << 20)
#define MAX_SYNCS 2000000

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double quantile_ms(int64_t *v, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n, len -= (size_t)n, off += n;
    }
    return 0;
}

/* B records per fdatasync for `secs`; prints one line. */
static int batch_step(int fd, off_t size, unsigned b, double secs, int64_t *lat)
{
    size_t len = (size_t)b * REC_LEN;
    char *buf = malloc(len);
    if (!buf) return -1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + i % 26);
    off_t off = 0;
    size_t nsync = 0;
    uint64_t recs = 0;
    int64_t t0 = now_ns(), t = t0, end = t0 + (int64_t)(secs * 1e9);
    while (t < end && nsync < MAX_SYNCS) {
        if (off + (off_t)len > size) off = 0;
        if (write_all(fd, buf, len, off) != 0) goto fail;
        int64_t s0 = now_ns();
        if (fdatasync(fd) != 0) goto fail;
        t = now_ns();
        lat[nsync++] = t - s0;
        off += (off_t)len;
        recs += b;
    }
    free(buf);
    qsort(lat, nsync, sizeof(*lat), cmp_i64);
    double el = (double)(t - t0) / 1e9;
    printf("diskflush batch=%u records_per_s=%.0f fdatasync_per_s=%.0f fdatasync_p50_ms=%.3f "
           "fdatasync_p99_ms=%.3f mb_per_s=%.1f\n",
           b, (double)recs / el, (double)nsync / el, quantile_ms(lat, nsync, 0.5),
           quantile_ms(lat, nsync, 0.99), (double)recs * REC_LEN / el / 1e6);
    fflush(stdout);
    return 0;
fail:
    fprintf(stderr, "diskflush: write or fdatasync failed: %s\n", strerror(errno));
    free(buf);
    return -1;
}

static int seq_step(int fd, off_t size, double secs)
{
    char *buf = malloc(SEQ_BLOCK);
    if (!buf) return -1;
    memset(buf, 'd', SEQ_BLOCK);
    off_t off = 0;
    uint64_t bytes = 0, since = 0, syncs = 0;
    int64_t t0 = now_ns(), t = t0, end = t0 + (int64_t)(secs * 1e9);
    while (t < end) {
        if (off + (off_t)SEQ_BLOCK > size) off = 0;
        if (write_all(fd, buf, SEQ_BLOCK, off) != 0) goto fail;
        off += SEQ_BLOCK;
        bytes += SEQ_BLOCK;
        since += SEQ_BLOCK;
        if (since >= SEQ_SYNC) {
            if (fdatasync(fd) != 0) goto fail;
            since = 0;
            syncs++;
        }
        t = now_ns();
    }
    if (since && fdatasync(fd) != 0) goto fail;
    t = now_ns();
    free(buf);
    double el = (double)(t - t0) / 1e9;
    printf("diskflush seq_block_kib=%u sync_every_mib=%u seq_mb_per_s=%.1f syncs=%llu "
           "seconds=%.2f\n",
           SEQ_BLOCK >> 10, SEQ_SYNC >> 20, (double)bytes / el / 1e6, (unsigned long long)syncs,
           el);
    return 0;
fail:
    fprintf(stderr, "diskflush: sequential write failed: %s\n", strerror(errno));
    free(buf);
    return -1;
}

static int instance_step(int fd, off_t size, double secs, int64_t *lat)
{
    char *buf = malloc(SEQ_BLOCK);
    if (!buf) return -1;
    memset(buf, 'i', SEQ_BLOCK);
    off_t off = 0;
    size_t n = 0;
    int64_t t0 = now_ns(), t = t0, end = t0 + (int64_t)(secs * 1e9);
    while (t < end && n < MAX_SYNCS) {
        if (off + (off_t)SEQ_BLOCK > size) off = 0;
        if (write_all(fd, buf, SEQ_BLOCK, off) != 0 || fdatasync(fd) != 0) {
            fprintf(stderr, "diskflush: instance write failed: %s\n", strerror(errno));
            free(buf);
            return -1;
        }
        off += SEQ_BLOCK;
        int64_t t1 = now_ns();
        lat[n++] = t1 - t;
        t = t1;
    }
    free(buf);
    qsort(lat, n, sizeof(*lat), cmp_i64);
    double el = (double)(t - t0) / 1e9;
    printf("diskflush instance_kib=%u instances_per_s=%.0f write_sync_p50_ms=%.3f "
           "write_sync_p99_ms=%.3f\n",
           SEQ_BLOCK >> 10, (double)n / el, quantile_ms(lat, n, 0.50), quantile_ms(lat, n, 0.99));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fputs("usage: diskflush DIR [SECONDS_PER_STEP [PREALLOC_MIB]]\n", stderr);
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    long mib = argc > 3 ? atol(argv[3]) : 256;
    if (!(secs > 0 && secs <= 600) || mib < 16 || mib > 65536) {
        fputs("diskflush: SECONDS_PER_STEP in (0, 600], PREALLOC_MIB in [16, 65536]\n", stderr);
        return 2;
    }
    /* A file without a name in DIR's file system (O_TMPFILE): measured like the unlinked
     * file it replaces, and nothing is left behind even if this is killed. */
    int fd = open(argv[1], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "diskflush: cannot create a file in %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    off_t size = (off_t)mib << 20;
    char *zero = calloc(1, SEQ_SYNC);
    int64_t *lat = malloc(MAX_SYNCS * sizeof(*lat));
    if (!zero || !lat) return 1;
    int64_t t0 = now_ns();
    for (off_t off = 0; off < size; off += SEQ_SYNC)
        if (write_all(fd, zero, SEQ_SYNC, off) != 0) {
            fprintf(stderr, "diskflush: preallocation failed: %s\n", strerror(errno));
            return 1;
        }
    if (fdatasync(fd) != 0) return 1;
    double el = (double)(now_ns() - t0) / 1e9;
    printf("diskflush prealloc_mib=%ld prealloc_s=%.2f prealloc_mb_per_s=%.1f\n", mib, el,
           (double)size / el / 1e6);
    free(zero);
    static const unsigned batches[] = {1, 16, 64, 256};
    int rc = 0;
    for (size_t i = 0; i < sizeof(batches) / sizeof(*batches) && !rc; i++)
        rc = batch_step(fd, size, batches[i], secs, lat);
    if (!rc) rc = seq_step(fd, size, secs);
    if (!rc) rc = instance_step(fd, size, secs, lat);
    free(lat);
    close(fd);
    return rc ? 1 : 0;
}
