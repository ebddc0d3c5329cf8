/* util: small helpers shared by every module: time, hex, files written safely.
 * Files holding secrets are created with O_EXCL and mode 0600 and fsynced; the caller's
 * buffer is never logged. Thread: any. */
#ifndef HDX_UTIL_H
#define HDX_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HDX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

int64_t hdx_now_us(void);       /* CLOCK_REALTIME, microseconds since the epoch */
int64_t hdx_monotonic_us(void); /* CLOCK_MONOTONIC */

/* "2026-11-25T12:00:00.123456Z" into out (cap >= 28). */
void hdx_format_time(int64_t time_us, char *out, size_t cap);
/* Accepts "2026-11-25T12:00:00Z", "2026-11-25", epoch seconds, or a duration ago
 * ("90s", "15m", "2h", "7d"). Returns 0 and sets *out_us. */
int hdx_parse_time(const char *s, int64_t *out_us);

void hdx_hex(const uint8_t *in, size_t len, char *out); /* out: 2*len+1 */
/* SHA-256 of len bytes into out[32] with the algorithm fetched once per process: OpenSSL 3
 * looks EVP_sha256() up by name, under a lock, on every use, which costs as much as hashing
 * a short input. Returns 0, or -1 if OpenSSL failed. */
int hdx_sha256_once(const void *in, size_t len, uint8_t out[32]);
int hdx_unhex(const char *hex, uint8_t *out, size_t len); /* exactly 2*len hex digits */
/* A decimal number as untrusted text: digits only (no sign, space or leading zero) and
 * within 64 bits. hdx_parse_dec reads a prefix and sets *end past it; hdx_parse_u64 wants
 * the whole string. Return 0, or -1. */
int hdx_parse_dec(const char *s, uint64_t *out, const char **end);
int hdx_parse_u64(const char *s, uint64_t *out);

/* Creates path with O_CREAT|O_EXCL, writes all bytes, fsyncs. */
int hdx_write_new_file(const char *path, const void *data, size_t len, mode_t mode);
/* Replaces path atomically (temp file, fsync, rename, fsync of the directory). */
int hdx_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file of at most max bytes into a malloc'd buffer (NUL-terminated). */
int hdx_read_file(const char *path, size_t max, uint8_t **out, size_t *out_len);
/* Reads a private key (or other secret) of at most max bytes into a malloc'd buffer
 * (NUL-terminated) that the caller hands to hdx_secret_free. Refuses, with HDX_E_PERM, a
 * symbolic link, anything but a regular file, and a mode that gives group or others any
 * access: a key others could read is no secret, and one whose link or directory others control
 * could be swapped for theirs. The checks are made with fstat on the descriptor that is then
 * read, so the file checked is the file read. why (NULL for none) receives one line naming
 * the path, what is wrong and the fix ("... is mode 0644 ...: run chmod 600 PATH"). */
int hdx_secret_read(const char *path, size_t max, uint8_t **out, size_t *out_len, char *why,
                    size_t why_cap);
/* Wipes len bytes of a hdx_secret_read buffer and frees it; NULL is fine. */
void hdx_secret_free(uint8_t *buf, size_t len);
/* A new temporary directory (mode 0700) or file (0600; the open fd is returned), named prefix
 * followed by six random characters: under $TMPDIR (default /tmp) when prefix holds no '/',
 * else exactly there. The name goes to out. Return -1 on failure (errno set). */
int hdx_mkdtemp(const char *prefix, char *out, size_t cap);
int hdx_mkstemp(const char *prefix, char *out, size_t cap);
int hdx_fsync_dir(const char *dir);

/* snprintf into a fixed buffer; returns -1 when truncated. */
int hdx_path(char *out, size_t cap, const char *dir, const char *name)
    __attribute__((warn_unused_result));

/* Parses "HOST:PORT", "[V6]:PORT" into host (cap) and port. */
int hdx_split_hostport(const char *s, char *host, size_t cap, int *port);

/* The calling thread does housekeeping that may lag (the WAL checkpointer, the segment file
 * preparer): it gets HDX_BACKGROUND_NICE more niceness than the process, so on a machine with
 * few cores it yields to the threads a sender waits on. Names the thread too (top -H).
 * Returns the niceness now in effect, or -100 when it could not be changed. */
#define HDX_BACKGROUND_NICE 10
int hdx_thread_background(const char *name);

#endif
