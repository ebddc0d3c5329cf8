#include "auth/password.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"

static int sodium_ready(void)
{
    return sodium_init() >= 0; /* idempotent and thread-safe */
}

int hdx_password_hash(const struct hdx_pw_cost *cost, const char *pw, size_t len,
                      char out[HDX_PW_HASH_MAX])
{
    _Static_assert(HDX_PW_HASH_MAX == crypto_pwhash_STRBYTES, "hash string size");
    out[0] = 0;
    if (!sodium_ready()) return HDX_E_CRYPTO;
    if (cost->opslimit < crypto_pwhash_OPSLIMIT_MIN || cost->memlimit < crypto_pwhash_MEMLIMIT_MIN)
        return HDX_E_INVAL;
    if (crypto_pwhash_str_alg(out, pw, len, cost->opslimit, cost->memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return HDX_E_NOMEM; /* libsodium's only failure here: the memory could not be had */
    return HDX_OK;
}

/* One dummy hash per process, under the cost it was first asked for; a later call with another
 * cost (tests) makes a new one. */
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[HDX_PW_HASH_MAX];
static struct hdx_pw_cost dummy_cost;

static int dummy_get(const struct hdx_pw_cost *cost, char out[HDX_PW_HASH_MAX])
{
    int rc = HDX_OK;
    pthread_mutex_lock(&dummy_lock);
    if (!dummy_hash[0] || dummy_cost.opslimit != cost->opslimit ||
        dummy_cost.memlimit != cost->memlimit) {
        /* A random password nobody knows: the dummy never matches. */
        char pw[32];
        randombytes_buf(pw, sizeof(pw));
        rc = hdx_password_hash(cost, pw, sizeof(pw), dummy_hash);
        sodium_memzero(pw, sizeof(pw));
        if (rc == HDX_OK) dummy_cost = *cost;
    }
    if (rc == HDX_OK) memcpy(out, dummy_hash, HDX_PW_HASH_MAX);
    pthread_mutex_unlock(&dummy_lock);
    return rc;
}

int hdx_password_dummy_init(const struct hdx_pw_cost *cost)
{
    char h[HDX_PW_HASH_MAX];
    return dummy_get(cost, h);
}

int hdx_password_verify(const struct hdx_pw_cost *cost, const char *hash, const char *pw,
                        size_t len, int *rehash)
{
    char dummy[HDX_PW_HASH_MAX];
    if (rehash) *rehash = 0;
    if (!sodium_ready()) return 0;
    if (!hash || !hdx_password_hash_valid(hash)) {
        /* Same work as a real account: the caller's reply and timing must not tell. */
        if (dummy_get(cost, dummy) == HDX_OK && crypto_pwhash_str_verify(dummy, pw, len) == 0)
            abort(); /* a random 32-byte password was guessed: the library is broken */
        return 0;
    }
    if (crypto_pwhash_str_verify(hash, pw, len) != 0) return 0;
    if (rehash) *rehash = crypto_pwhash_str_needs_rehash(hash, cost->opslimit, cost->memlimit) != 0;
    return 1;
}

/* "$argon2id$v=19$m=D,t=D,p=D$" then two runs of unpadded base64 separated by '$'. */
int hdx_password_hash_valid(const char *s)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    size_t n = strnlen(s, HDX_PW_HASH_MAX);
    if (n >= HDX_PW_HASH_MAX || strncmp(s, prefix, sizeof(prefix) - 1) != 0) return 0;
    const char *p = s + sizeof(prefix) - 1;
    for (int i = 0; i < 3; i++) { /* m= t= p= */
        if (i > 0) {
            if (p[0] != ',' || p[1] != "tp"[i - 1] || p[2] != '=') return 0;
            p += 3;
        }
        if (*p < '1' || *p > '9') return 0;
        for (int d = 0; *p >= '0' && *p <= '9'; p++)
            if (++d > 10) return 0;
    }
    for (int part = 0; part < 2; part++) {
        if (*p++ != '$') return 0;
        size_t run = 0;
        for (; (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               *p == '+' || *p == '/';
             p++)
            run++;
        if (run < 11) return 0; /* >= 8 bytes of salt or hash */
    }
    return *p == 0;
}

/* ---------- policy ---------- */

/* Code points in s, or -1 on invalid UTF-8 (overlong, surrogate, > U+10FFFF) or a control
 * character (C0, DEL, C1): none can be typed into a login form the same way twice. */
static long utf8_chars(const unsigned char *s, size_t len)
{
    long n = 0;
    for (size_t i = 0; i < len; n++) {
        unsigned c = s[i], cp, need;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) return -1;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, cp = c & 0x07;
        else
            return -1;
        if (len - i - 1 < need) return -1;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return -1;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0x80 && cp <= 0x9f))
            return -1;
        i += need + 1;
    }
    return n;
}

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int contains_folded(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0 || nlen > hlen) return 0;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        size_t k = 0;
        while (k < nlen && fold((unsigned char)hay[i + k]) == fold((unsigned char)needle[k]))
            k++;
        if (k == nlen) return 1;
    }
    return 0;
}

static int equal_folded(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && contains_folded(a, alen, b, blen);
}

/* 1 listed, 0 not, -1 unreadable. Line by line: a breached-password list may be large. */
static int blocklisted(const char *path, const char *pw, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        size_t n = strlen(line);
        int whole = n > 0 && line[n - 1] == '\n';
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (!whole && !feof(f)) { /* longer than any password we accept: skip the rest */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n') {
            }
            continue;
        }
        if (n == 0 || line[0] == '#') continue;
        found = equal_folded(line, n, pw, len);
    }
    int err = ferror(f);
    sodium_memzero(line, sizeof(line));
    fclose(f);
    return err ? -1 : found;
}

int hdx_password_policy(const struct hdx_pw_policy *p, const char *name, const char *pw, size_t len,
                        char *why, size_t why_cap)
{
    long chars = utf8_chars((const unsigned char *)pw, len);
    if (chars < 0) {
        snprintf(why, why_cap, "the password holds a control character or invalid UTF-8");
        return HDX_E_PERM;
    }
    if ((size_t)chars < p->min_chars) {
        snprintf(why, why_cap, "the password is shorter than %zu characters (%ld)", p->min_chars,
                 chars);
        return HDX_E_PERM;
    }
    if (chars > HDX_PW_MAX_CHARS) {
        snprintf(why, why_cap, "the password is longer than %d characters", HDX_PW_MAX_CHARS);
        return HDX_E_PERM;
    }
    if (name && contains_folded(pw, len, name, strlen(name))) {
        snprintf(why, why_cap, "the password contains the user name");
        return HDX_E_PERM;
    }
    if (p->blocklist) {
        int b = blocklisted(p->blocklist, pw, len);
        if (b < 0) {
            snprintf(why, why_cap, "cannot read the password blocklist %s: %s", p->blocklist,
                     strerror(errno ? errno : EIO));
            return HDX_E_IO;
        }
        if (b) {
            snprintf(why, why_cap, "the password is on the list of common or breached passwords");
            return HDX_E_PERM;
        }
    }
    return HDX_OK;
}

/* ---------- password files ---------- */

int hdx_password_read_file(const char *path, char **out, size_t *len, char *why, size_t why_cap)
{
    *out = NULL;
    *len = 0;
    if (!sodium_ready()) return HDX_E_CRYPTO;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_cap, "cannot open the password file %s: %s", path, strerror(errno));
        return HDX_E_IO;
    }
    char *buf = sodium_malloc(HDX_PW_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return HDX_E_NOMEM;
    }
    size_t n = 0;
    ssize_t r = 0;
    while (n <= HDX_PW_FILE_MAX && (r = read(fd, buf + n, HDX_PW_FILE_MAX + 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    int rc = HDX_OK;
    if (r < 0) {
        snprintf(why, why_cap, "cannot read the password file %s: %s", path, strerror(errno));
        rc = HDX_E_IO;
    } else if (n > HDX_PW_FILE_MAX) {
        snprintf(why, why_cap, "the password file %s is longer than %d bytes", path,
                 HDX_PW_FILE_MAX);
        rc = HDX_E_TOOBIG;
    }
    if (rc == HDX_OK) {
        if (n > 0 && buf[n - 1] == '\n') n--;
        if (n > 0 && buf[n - 1] == '\r') n--;
        if (n == 0 || memchr(buf, 0, n)) {
            snprintf(why, why_cap, "the password file %s is empty or holds a NUL byte", path);
            rc = HDX_E_INVAL;
        }
    }
    if (rc != HDX_OK) {
        sodium_free(buf); /* wipes */
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return HDX_OK;
}

void hdx_password_free(char *pw)
{
    if (pw) sodium_free(pw); /* zeroes the whole allocation before unmapping it */
}
