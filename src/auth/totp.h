/* totp: the second factor (DESIGN M8): RFC 6238 TOTP with HMAC-SHA-1, 6 digits, 30 s steps
 * from the Unix epoch (what every authenticator app does by default), computed and checked by
 * liboath; the enrolment URI; the secret sealed for storage; one-time recovery codes.
 * Validation accepts the current step and one on either side (clock skew) and refuses a step at
 * or below the last one used: a code works once (RFC 6238 5.2). The step that matched is
 * returned so the caller stores it (the user_totp_used admin record, commit/admin.h).
 * Codes are compared in constant time.
 * At rest the secret is never plaintext: hdx_totp_seal seals it with AES-256-GCM under the
 * data directory's current data key (crypto/keys.h), the associated data naming its user, so a
 * sealed secret moved to another user's row does not open. Recovery codes are stored as keyed
 * hashes (the blind-index key, HMAC-SHA-256, a per-code salt): they carry 50 random bits, so
 * a fast keyed hash suffices (no offline guessing without the key; online guessing meets the
 * login's backoff), where Argon2id would make a login with a code cost ten password hashes.
 * Secrets: every buffer holding a secret or a code is wiped before it is released.
 * Thread: any. */
#ifndef HDX_TOTP_H
#define HDX_TOTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "crypto/keys.h"

#define HDX_TOTP_SECRET_LEN 20 /* RFC 4226 4 R6: 160 bits, the HMAC-SHA-1 block it feeds */
#define HDX_TOTP_STEP_S 30
#define HDX_TOTP_DIGITS 6
#define HDX_TOTP_WINDOW 1 /* steps accepted on either side of now */
/* key id (4, big-endian) || nonce (12) || ciphertext (20) || tag (16) */
#define HDX_TOTP_SEALED_LEN (4 + HDX_NONCE_LEN + HDX_TOTP_SECRET_LEN + HDX_TAG_LEN)
#define HDX_TOTP_B32_LEN 32 /* 20 bytes in base32: no padding */
#define HDX_TOTP_URI_MAX 256

#define HDX_RECOVERY_CODES 10
#define HDX_RECOVERY_CHARS 10 /* base32: 50 bits */
#define HDX_RECOVERY_SALT_LEN 16
#define HDX_RECOVERY_HASH_LEN HDX_BLIND_LEN
/* a stored code: salt || keyed hash */
#define HDX_RECOVERY_STORED_LEN (HDX_RECOVERY_SALT_LEN + HDX_RECOVERY_HASH_LEN)
#define HDX_RECOVERY_SHOWN_LEN (HDX_RECOVERY_CHARS + 1) /* "abcde-fghij" */

/* RFC 4648 base32 of len bytes (upper case, no padding) into out (NUL-terminated); returns
 * the length or -1 when cap is small. */
int hdx_base32(const uint8_t *in, size_t len, char *out, size_t cap);

/* 20 random bytes. */
void hdx_totp_secret_new(uint8_t secret[HDX_TOTP_SECRET_LEN]);
/* otpauth://totp/hdx:NAME?secret=B32&issuer=hdx&algorithm=SHA1&digits=6&period=30 (the Key
 * Uri Format authenticator apps read); name must be a valid principal name (no escaping is
 * needed then). Wipe out after use: it holds the secret. */
int hdx_totp_uri(const char *name, const uint8_t *secret, size_t len, char *out, size_t cap);

/* The code for time t with digits digits (6 in use; 8 for RFC 6238's test vectors) into out
 * (digits + 1 bytes). */
int hdx_totp_code(const uint8_t *secret, size_t len, time_t t, unsigned digits, char *out);
/* Checks code (exactly digits decimal digits) at time now within HDX_TOTP_WINDOW steps.
 * HDX_OK and *step (the matching step, > last_step); HDX_E_PERM when no step in the window
 * matches; HDX_E_EXISTS when the code matches a step <= last_step (a replay). */
int hdx_totp_check(const uint8_t *secret, size_t len, time_t now, unsigned digits, const char *code,
                   uint64_t last_step, uint64_t *step);

/* Seals the secret for user name under kr's current data key; HDX_E_NOTFOUND without one. */
int hdx_totp_seal(const struct hdx_keyring *kr, const char *name,
                  const uint8_t secret[HDX_TOTP_SECRET_LEN], uint8_t sealed[HDX_TOTP_SEALED_LEN]);
/* HDX_E_CRYPTO when it was sealed for another user, altered, or under a key kr lacks. */
int hdx_totp_open(const struct hdx_keyring *kr, const char *name,
                  const uint8_t sealed[HDX_TOTP_SEALED_LEN], uint8_t secret[HDX_TOTP_SECRET_LEN]);

/* Ten new recovery codes for user name: shown[i] is what the user is given once
 * ("abcde-fghij", lower-case RFC 4648 base32), stored[i] what is kept. Needs kr's blind key. */
int hdx_recovery_new(const struct hdx_keyring *kr, const char *name,
                     char shown[HDX_RECOVERY_CODES][HDX_RECOVERY_SHOWN_LEN + 1],
                     uint8_t stored[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN]);
/* The index of the unused stored code (bit i of used set: code i was used) that input matches
 * (case and '-' or ' ' ignored), after computing and comparing every one in constant time;
 * -1 when none (or input is no code). */
int hdx_recovery_match(const struct hdx_keyring *kr, const char *name, const char *input,
                       const uint8_t stored[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN],
                       uint32_t used);

#endif
