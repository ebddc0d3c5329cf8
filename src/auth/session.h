/* session: the HTTPS sessions of people (DESIGN M8), in hdxd's memory only: a restart logs
 * everyone out, which is the safe direction.
 * A session is named by a random 256-bit token (libsodium), given to the client once as 43
 * characters of unpadded base64url and kept here only as its SHA-256: the table (or a core
 * file) does not hold a usable token. Looking a token up compares the full hash in constant
 * time. A session ends at the first of: its idle timeout (auth.session_idle_s since the last
 * request: automatic logoff), its absolute lifetime (auth.session_max_s), logout, or a
 * revocation of its user (user_revoke_sessions, a password or MFA change, a lock), which
 * takes effect at once: hdx_sessions_revoke_user ends every session of that user made before
 * the given time.
 * An enrol-only session (password right, no second factor yet) has mfa 0; the policy engine
 * denies it everything but enrolment.
 * Each session has a public id (the first 8 bytes of its hash, hex) for audit records and
 * log lines, from which the token cannot be recovered.
 * Thread: one (the network thread). */
#ifndef HDX_AUTH_SESSION_H
#define HDX_AUTH_SESSION_H

#include <stddef.h>
#include <stdint.h>

#define HDX_SESSION_TOKEN_BYTES 32
#define HDX_SESSION_TOKEN_LEN 43 /* base64url, no padding */
#define HDX_SESSION_ID_LEN 16    /* hex */

struct hdx_session {
    char user[65];
    char role[24];
    int mfa;
    char id[HDX_SESSION_ID_LEN + 1];
    uint64_t serial; /* unique within this run: open streams hold it, not a pointer */
    int64_t created_us, last_us;
    char source[64];
};

struct hdx_sessions;

/* max: sessions at most (a new one past it ends the least recently used). */
int hdx_sessions_new(int64_t idle_us, int64_t lifetime_us, size_t max, struct hdx_sessions **out);
void hdx_sessions_free(struct hdx_sessions *t);

/* A new session; token receives its NUL-terminated text, shown to the client once. */
int hdx_sessions_create(struct hdx_sessions *t, const char *user, const char *role, int mfa,
                        const char *source, int64_t now_us, char token[HDX_SESSION_TOKEN_LEN + 1],
                        const struct hdx_session **out);
/* The live session the token names (its idle clock restarted), or NULL: unknown, malformed,
 * idle too long or past its lifetime (then it is ended). */
const struct hdx_session *hdx_sessions_check(struct hdx_sessions *t, const char *token, size_t len,
                                             int64_t now_us);
/* The live session with this serial, without touching its idle clock; NULL when it ended. */
const struct hdx_session *hdx_sessions_by_serial(struct hdx_sessions *t, uint64_t serial,
                                                 int64_t now_us);
/* Ends the session with this serial; 1 if it was live. */
int hdx_sessions_end(struct hdx_sessions *t, uint64_t serial);
/* Ends every session of user created at or before before_us (INT64_MAX: all); how many. */
size_t hdx_sessions_revoke_user(struct hdx_sessions *t, const char *user, int64_t before_us);
/* Ends sessions past their idle timeout or lifetime; how many. */
size_t hdx_sessions_expire(struct hdx_sessions *t, int64_t now_us);
size_t hdx_sessions_count(const struct hdx_sessions *t);
/* Seconds the session has left before its lifetime ends (not counting idle). */
int64_t hdx_sessions_remaining_s(const struct hdx_sessions *t, const struct hdx_session *s,
                                 int64_t now_us);

#endif
