/* password: user passwords (DESIGN M8): Argon2id hashes (libsodium crypto_pwhash_str) and the
 * NIST SP 800-63B policy (length, a blocklist of common and breached passwords, not the
 * user's own name; no composition rules, no expiry).
 * Cost: auth.argon2_opslimit and auth.argon2_memlimit_kib (default 3 passes over 64 MiB:
 * 110-130 ms per hash or verify on this 2-core machine, docs/PERFORMANCE.md "Argon2id").
 * The hash string carries its own parameters, so a stored hash verifies after the
 * configuration changes; hdx_password_verify says when it should be rehashed.
 * A missing user costs what a real one does: hdx_password_verify(NULL, ...) verifies against a
 * dummy hash made once per process under the configured cost, so neither a message nor the
 * time taken tells whether an account exists.
 * Secrets: the caller owns the password buffer and wipes it (hdx_password_wipe); nothing here
 * keeps a copy, logs it or returns it. Thread: any (the dummy hash is made under a lock). */
#ifndef HDX_PASSWORD_H
#define HDX_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

/* crypto_pwhash_STRBYTES: the "$argon2id$v=19$m=...,t=...,p=1$SALT$HASH" string and NUL. */
#define HDX_PW_HASH_MAX 128
#define HDX_PW_MAX_CHARS 256 /* SP 800-63B: at least 64 must be allowed */
#define HDX_PW_FILE_MAX 4096 /* a password file: the password and one line end */

struct hdx_pw_cost {
    unsigned long long opslimit; /* Argon2id passes (t) */
    size_t memlimit;             /* bytes (m) */
};

/* The Argon2id hash of pw into out (NUL-terminated, < HDX_PW_HASH_MAX). HDX_E_NOMEM when the
 * memory limit cannot be had, HDX_E_INVAL for a cost libsodium refuses. */
int hdx_password_hash(const struct hdx_pw_cost *cost, const char *pw, size_t len,
                      char out[HDX_PW_HASH_MAX]);
/* 1 when pw matches hash, else 0 (also for a malformed hash). hash NULL: verifies against the
 * dummy hash for cost (same time as a real account) and returns 0. *rehash (may be NULL) is set
 * when the hash matched but was made under another cost. */
int hdx_password_verify(const struct hdx_pw_cost *cost, const char *hash, const char *pw,
                        size_t len, int *rehash);
/* Makes the dummy hash for cost now (hdxd at start), so the first login for a missing user
 * is not slower than the next. */
int hdx_password_dummy_init(const struct hdx_pw_cost *cost);
/* 1 when s has the shape crypto_pwhash_str writes for Argon2id: "$argon2id$v=19$m=M,t=T,p=P$"
 * then salt and hash in unpadded base64; admin records and the users table hold only these. */
int hdx_password_hash_valid(const char *s);

struct hdx_pw_policy {
    size_t min_chars;      /* auth.password_min_length */
    const char *blocklist; /* a file, one password a line; NULL: none */
};
/* The policy check for a new password for user name. HDX_OK, or HDX_E_PERM with one line in
 * why saying which rule (never the password): shorter than min_chars or longer than
 * HDX_PW_MAX_CHARS characters (UTF-8 code points), invalid UTF-8 or a control character, the
 * user's name inside it (ASCII case folded), or on the blocklist (ASCII case folded, whole
 * line; a '#' line is a comment). HDX_E_IO when the blocklist cannot be read (refused: a
 * policy that silently lost its list would accept "password123456"). */
int hdx_password_policy(const struct hdx_pw_policy *p, const char *name, const char *pw, size_t len,
                        char *why, size_t why_cap);

/* Reads a password file (--password-file): at most HDX_PW_FILE_MAX bytes, one trailing LF or
 * CRLF dropped, not empty, no NUL; read straight into guarded memory (sodium_malloc, no stdio
 * buffer holds a copy) that the caller frees with hdx_password_free, which wipes it. */
int hdx_password_read_file(const char *path, char **out, size_t *len, char *why, size_t why_cap);
void hdx_password_free(char *pw);

/* The default blocklist hdx init writes (DIR/password-blocklist.txt): common passwords,
 * one a line, lower case. */
const char *hdx_password_default_blocklist(void);

#endif
