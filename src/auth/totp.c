#include "auth/totp.h"

#include <liboath/oath.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "pki/pki.h"

static const char b32_upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";

static int b32_with(const char *alpha, const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = (len * 8 + 4) / 5, o = 0;
    if (n + 1 > cap) return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = alpha[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) out[o++] = alpha[(acc << (5 - bits)) & 31];
    out[o] = 0;
    acc = 0;
    return (int)o;
}

int hdx_base32(const uint8_t *in, size_t len, char *out, size_t cap)
{
    return b32_with(b32_upper, in, len, out, cap);
}

/* liboath's own initialisation (its gnulib crypto) once per process. */
static pthread_once_t oath_once = PTHREAD_ONCE_INIT;
static int oath_ok;
static void oath_start(void)
{
    oath_ok = oath_init() == OATH_OK;
}
static int oath_ready(void)
{
    pthread_once(&oath_once, oath_start);
    return oath_ok;
}

void hdx_totp_secret_new(uint8_t secret[HDX_TOTP_SECRET_LEN])
{
    if (sodium_init() < 0) abort(); /* no randomness: nothing is safe to do */
    randombytes_buf(secret, HDX_TOTP_SECRET_LEN);
}

int hdx_totp_uri(const char *name, const uint8_t *secret, size_t len, char *out, size_t cap)
{
    char b32[HDX_TOTP_B32_LEN + 1];
    if (!pki_name_valid(name) || len != HDX_TOTP_SECRET_LEN ||
        hdx_base32(secret, len, b32, sizeof(b32)) != HDX_TOTP_B32_LEN)
        return HDX_E_INVAL;
    int n = snprintf(out, cap,
                     "otpauth://totp/hdx:%s?secret=%s&issuer=hdx&algorithm=SHA1&digits=%d&"
                     "period=%d",
                     name, b32, HDX_TOTP_DIGITS, HDX_TOTP_STEP_S);
    sodium_memzero(b32, sizeof(b32));
    if (n < 0 || (size_t)n >= cap) {
        sodium_memzero(out, cap);
        return HDX_E_TOOBIG;
    }
    return HDX_OK;
}

int hdx_totp_code(const uint8_t *secret, size_t len, time_t t, unsigned digits, char *out)
{
    if (!oath_ready() || digits < 6 || digits > 8) return HDX_E_INVAL;
    return oath_totp_generate((const char *)secret, len, t, HDX_TOTP_STEP_S,
                              OATH_TOTP_DEFAULT_START_TIME, digits, out) == OATH_OK
               ? HDX_OK
               : HDX_E_CRYPTO;
}

/* liboath computes each candidate code and asks us whether it is the one given: compare in
 * constant time (liboath's own strcmp would stop at the first differing digit). */
struct cmp_ctx {
    const char *code;
    size_t len;
};
static int code_cmp(void *handle, const char *test_otp)
{
    const struct cmp_ctx *c = handle;
    if (strlen(test_otp) != c->len) return 1;
    return sodium_memcmp(test_otp, c->code, c->len) == 0 ? 0 : 1;
}

int hdx_totp_check(const uint8_t *secret, size_t len, time_t now, unsigned digits, const char *code,
                   uint64_t last_step, uint64_t *step)
{
    *step = 0;
    if (!oath_ready() || digits < 6 || digits > 8 || strlen(code) != digits) return HDX_E_PERM;
    for (unsigned i = 0; i < digits; i++)
        if (code[i] < '0' || code[i] > '9') return HDX_E_PERM;
    struct cmp_ctx c = {code, digits};
    int pos = 0;
    uint64_t counter = 0;
    int rc = oath_totp_validate3_callback((const char *)secret, len, now, HDX_TOTP_STEP_S,
                                          OATH_TOTP_DEFAULT_START_TIME, digits, HDX_TOTP_WINDOW,
                                          &pos, &counter, code_cmp, &c);
    if (rc < 0) return HDX_E_PERM;
    if (counter <= last_step) return HDX_E_EXISTS;
    *step = counter;
    return HDX_OK;
}

/* The associated data: what the sealed secret is and whose. */
static size_t totp_aad(const char *name, uint8_t *aad, size_t cap)
{
    static const char dom[] = "hdx-totp"; /* with its NUL: the separator */
    size_t n = strlen(name);
    if (sizeof(dom) + n > cap) return 0;
    memcpy(aad, dom, sizeof(dom));
    memcpy(aad + sizeof(dom), name, n);
    return sizeof(dom) + n;
}

int hdx_totp_seal(const struct hdx_keyring *kr, const char *name,
                  const uint8_t secret[HDX_TOTP_SECRET_LEN], uint8_t sealed[HDX_TOTP_SEALED_LEN])
{
    uint8_t aad[96];
    size_t alen = totp_aad(name, aad, sizeof(aad));
    uint32_t id = hdx_keyring_current(kr);
    if (!alen) return HDX_E_INVAL;
    if (!id) return HDX_E_NOTFOUND;
    sealed[0] = (uint8_t)(id >> 24);
    sealed[1] = (uint8_t)(id >> 16);
    sealed[2] = (uint8_t)(id >> 8);
    sealed[3] = (uint8_t)id;
    return hdx_seal(kr, id, aad, alen, secret, HDX_TOTP_SECRET_LEN, sealed + 4,
                    sealed + 4 + HDX_NONCE_LEN);
}

int hdx_totp_open(const struct hdx_keyring *kr, const char *name,
                  const uint8_t sealed[HDX_TOTP_SEALED_LEN], uint8_t secret[HDX_TOTP_SECRET_LEN])
{
    uint8_t aad[96];
    size_t alen = totp_aad(name, aad, sizeof(aad));
    uint32_t id = (uint32_t)sealed[0] << 24 | (uint32_t)sealed[1] << 16 | (uint32_t)sealed[2] << 8 |
                  sealed[3];
    if (!alen) return HDX_E_INVAL;
    int rc = hdx_open(kr, id, aad, alen, sealed + 4, sealed + 4 + HDX_NONCE_LEN,
                      HDX_TOTP_SECRET_LEN + HDX_TAG_LEN, secret);
    if (rc != HDX_OK) sodium_memzero(secret, HDX_TOTP_SECRET_LEN);
    return rc == HDX_OK ? HDX_OK : HDX_E_CRYPTO;
}

/* ---------- recovery codes ---------- */

/* The keyed hash of one code: HMAC(blind key, "recovery" 0 salt name 0 code). */
static int recovery_hash(const struct hdx_keyring *kr, const char *name, const uint8_t *salt,
                         const char code[HDX_RECOVERY_CHARS], uint8_t out[HDX_RECOVERY_HASH_LEN])
{
    uint8_t msg[HDX_RECOVERY_SALT_LEN + 65 + 1 + HDX_RECOVERY_CHARS];
    size_t n = strlen(name), off = 0;
    if (n > 64) return HDX_E_INVAL;
    memcpy(msg, salt, HDX_RECOVERY_SALT_LEN);
    off += HDX_RECOVERY_SALT_LEN;
    memcpy(msg + off, name, n + 1); /* with its NUL */
    off += n + 1;
    memcpy(msg + off, code, HDX_RECOVERY_CHARS);
    off += HDX_RECOVERY_CHARS;
    int rc = hdx_blind(kr, "recovery", msg, off, out);
    sodium_memzero(msg, sizeof(msg));
    return rc;
}

int hdx_recovery_new(const struct hdx_keyring *kr, const char *name,
                     char shown[HDX_RECOVERY_CODES][HDX_RECOVERY_SHOWN_LEN + 1],
                     uint8_t stored[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN])
{
    if (sodium_init() < 0) return HDX_E_CRYPTO;
    int rc = HDX_OK;
    for (int i = 0; i < HDX_RECOVERY_CODES && rc == HDX_OK; i++) {
        char code[HDX_RECOVERY_CHARS];
        for (int k = 0; k < HDX_RECOVERY_CHARS; k++)
            code[k] = b32_lower[randombytes_uniform(32)];
        randombytes_buf(stored[i], HDX_RECOVERY_SALT_LEN);
        rc = recovery_hash(kr, name, stored[i], code, stored[i] + HDX_RECOVERY_SALT_LEN);
        memcpy(shown[i], code, 5);
        shown[i][5] = '-';
        memcpy(shown[i] + 6, code + 5, 5);
        shown[i][11] = 0;
        sodium_memzero(code, sizeof(code));
    }
    if (rc != HDX_OK) {
        sodium_memzero(shown, sizeof(char[HDX_RECOVERY_CODES][HDX_RECOVERY_SHOWN_LEN + 1]));
        sodium_memzero(stored, sizeof(uint8_t[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN]));
    }
    return rc;
}

int hdx_recovery_match(const struct hdx_keyring *kr, const char *name, const char *input,
                       const uint8_t stored[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN],
                       uint32_t used)
{
    char code[HDX_RECOVERY_CHARS];
    size_t n = 0;
    int bad = 0, found = -1;
    for (const char *p = input; *p; p++) {
        char c = *p >= 'A' && *p <= 'Z' ? (char)(*p + 32) : *p;
        if (c == '-' || c == ' ') continue;
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) || n == HDX_RECOVERY_CHARS) {
            bad = 1;
            break;
        }
        code[n++] = c;
    }
    if (bad || n != HDX_RECOVERY_CHARS) {
        sodium_memzero(code, sizeof(code));
        return -1;
    }
    /* Every code is hashed and compared, used or not: the time does not say which matched. */
    for (int i = 0; i < HDX_RECOVERY_CODES; i++) {
        uint8_t h[HDX_RECOVERY_HASH_LEN];
        if (recovery_hash(kr, name, stored[i], code, h) != HDX_OK) {
            found = -1;
            break;
        }
        int eq = sodium_memcmp(h, stored[i] + HDX_RECOVERY_SALT_LEN, HDX_RECOVERY_HASH_LEN) == 0;
        if (eq && !(used & (1u << i)) && found < 0) found = i;
        sodium_memzero(h, sizeof(h));
    }
    sodium_memzero(code, sizeof(code));
    return found;
}
