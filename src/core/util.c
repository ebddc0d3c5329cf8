#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

int64_t hdx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t hdx_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void hdx_format_time(int64_t time_us, char *out, size_t cap)
{
    time_t s = (time_t)(time_us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(time_us % 1000000));
}

static int parse_duration_ago(const char *s, int64_t *out_us)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || n < 0 || end[0] == 0 || end[1] != 0) return -1;
    int64_t unit;
    switch (*end) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return -1;
    }
    if (n > INT64_MAX / 1000000 / unit) return -1;
    *out_us = hdx_now_us() - (int64_t)n * unit * 1000000;
    return 0;
}

int hdx_parse_time(const char *s, int64_t *out_us)
{
    struct tm tm = {0};
    const char *end;
    if (!s || !*s) return -1;
    int all_digits = 1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) all_digits = 0;
    if (all_digits && strlen(s) <= 12) {
        *out_us = strtoll(s, NULL, 10) * 1000000;
        return 0;
    }
    if (parse_duration_ago(s, out_us) == 0) return 0;
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (!end || (*end && strcmp(end, "Z") != 0)) return -1;
    *out_us = (int64_t)timegm(&tm) * 1000000;
    return 0;
}

void hdx_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_alg;

static void sha256_fetch(void)
{
    sha256_alg = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

int hdx_sha256_once(const void *in, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_alg && EVP_Digest(in, len, out, &n, sha256_alg, NULL) == 1 && n == 32 ? 0 : -1;
}

/* mkdtemp and mkstemp want a template ending in six 'X'. */
static int temp_template(const char *prefix, char *out, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    int n = strchr(prefix, '/') ? snprintf(out, cap, "%s", prefix)
                                : snprintf(out, cap, "%s/%s", tmp && tmp[0] ? tmp : "/tmp", prefix);
    if (n < 0 || (size_t)n + 7 > cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(out + n, 'X', 6);
    out[n + 6] = 0;
    return 0;
}

int hdx_mkdtemp(const char *prefix, char *out, size_t cap)
{
    return temp_template(prefix, out, cap) == 0 && mkdtemp(out) ? 0 : -1;
}

int hdx_mkstemp(const char *prefix, char *out, size_t cap)
{
    return temp_template(prefix, out, cap) == 0 ? mkstemp(out) : -1;
}

int hdx_parse_dec(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    *end = p;
    return 0;
}

int hdx_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    return hdx_parse_dec(s, out, &end) == 0 && *end == 0 ? 0 : -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int hdx_unhex(const char *hex, uint8_t *out, size_t len)
{
    if (strlen(hex) != 2 * len) return -1;
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return HDX_E_IO;
        p += w;
        len -= (size_t)w;
    }
    return HDX_OK;
}

int hdx_write_new_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return errno == EEXIST ? HDX_E_EXISTS : HDX_E_IO;
    int rc = write_all(fd, data, len);
    if (rc == HDX_OK && fsync(fd) != 0) rc = HDX_E_IO;
    close(fd);
    if (rc != HDX_OK) unlink(path);
    return rc;
}

int hdx_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return HDX_E_IO;
    int rc = fsync(fd) == 0 ? HDX_OK : HDX_E_IO;
    close(fd);
    return rc;
}

int hdx_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return HDX_E_INVAL;
    unlink(tmp);
    int rc = hdx_write_new_file(tmp, data, len, mode);
    if (rc != HDX_OK) return rc;
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return HDX_E_IO;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    return hdx_fsync_dir(dirname(dir));
}

int hdx_read_file(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? HDX_E_NOTFOUND : HDX_E_IO;
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size > max) {
        close(fd);
        return HDX_E_TOOBIG;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return HDX_E_NOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *out_len = got;
    return HDX_OK;
}

/* why may be NULL: hdx init and the tests want the code only. */
__attribute__((format(printf, 4, 5))) static int secret_fail(int rc, char *why, size_t cap,
                                                             const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int hdx_secret_read(const char *path, size_t max, uint8_t **out, size_t *out_len, char *why,
                    size_t why_cap)
{
    *out = NULL;
    *out_len = 0;
    /* O_NONBLOCK: a FIFO planted in the key's place must not hang the start before fstat
     * can refuse it; it changes nothing for a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return secret_fail(HDX_E_NOTFOUND, why, why_cap, "%s does not exist", path);
        if (e == ELOOP)
            return secret_fail(HDX_E_PERM, why, why_cap,
                               "%s is a symbolic link: put the key file itself there (mode 0600)",
                               path);
        return secret_fail(HDX_E_IO, why, why_cap, "cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    int rc = HDX_OK;
    if (fstat(fd, &st) != 0)
        rc = secret_fail(HDX_E_IO, why, why_cap, "cannot stat %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = secret_fail(HDX_E_PERM, why, why_cap, "%s is not a regular file", path);
    else if (st.st_mode & 077)
        rc = secret_fail(HDX_E_PERM, why, why_cap,
                         "%s is mode %04o, open to group or others: run chmod 600 %s", path,
                         (unsigned)(st.st_mode & 07777), path);
    else if ((size_t)st.st_size > max)
        rc = secret_fail(HDX_E_TOOBIG, why, why_cap, "%s is larger than %zu bytes", path, max);
    uint8_t *buf = rc == HDX_OK ? malloc((size_t)st.st_size + 1) : NULL;
    if (rc == HDX_OK && !buf) rc = secret_fail(HDX_E_NOMEM, why, why_cap, "out of memory");
    size_t got = 0;
    while (rc == HDX_OK && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            rc = secret_fail(HDX_E_IO, why, why_cap, "cannot read %s", path);
        else
            got += (size_t)r;
    }
    close(fd);
    if (rc != HDX_OK) {
        hdx_secret_free(buf, got);
        return rc;
    }
    buf[got] = 0;
    *out = buf;
    *out_len = got;
    return HDX_OK;
}

void hdx_secret_free(uint8_t *buf, size_t len)
{
    if (!buf) return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

int hdx_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int hdx_split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -1;
        hlen = (size_t)(rb - s - 1);
        s++;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -1;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= cap) return -1;
    memcpy(host, s, hlen);
    host[hlen] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
    *port = (int)p;
    return 0;
}

/* Linux applies PRIO_PROCESS with a thread id to that thread alone (setpriority(2), BUGS). A
 * higher niceness needs no privilege, so this works for an unprivileged hdxd as well. */
int hdx_thread_background(const char *name)
{
    pthread_setname_np(pthread_self(), name);
    id_t tid = (id_t)gettid();
    errno = 0;
    int now = getpriority(PRIO_PROCESS, tid);
    if (now == -1 && errno) return -100;
    int want = now + HDX_BACKGROUND_NICE > 19 ? 19 : now + HDX_BACKGROUND_NICE;
    if (setpriority(PRIO_PROCESS, tid, want) != 0) return -100;
    return want;
}
