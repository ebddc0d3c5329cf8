/* throttle: what stops password guessing over HTTPS (DESIGN M8, NIST SP 800-63B 5.2.2).
 * Failed logins are counted per account name (whether or not the account exists: the answer
 * must not tell) and per source (an IPv4 address or an IPv6 /64), within a window:
 *   - an account with failures waits before its next try: 1 s after the second failure,
 *     doubling, at most 60 s; at max_failures it is locked for lockout_s;
 *   - a source at source_max_failures is locked for lockout_s;
 *   - a source that failed on spray_accounts different accounts within the window is a
 *     password sprayer: it is locked for lockout_s and the caller raises an alert.
 * A success clears the account's count (not the source's). A locked or waiting login is
 * refused before any password work, for existing and missing accounts alike.
 * Memory is bounded (max entries each for accounts and sources; the least recently used goes).
 * Thread: one (the network thread). */
#ifndef HDX_AUTH_THROTTLE_H
#define HDX_AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

struct hdx_throttle_conf {
    int max_failures;        /* per account, within the window */
    int source_max_failures; /* per source, within the window */
    int spray_accounts;      /* distinct accounts failed from one source, within the window */
    int64_t window_us, lockout_us;
    size_t max_entries;
};

enum {
    HDX_THROTTLE_ACCOUNT_LOCKED = 1, /* this failure locked the account */
    HDX_THROTTLE_SOURCE_LOCKED = 2,  /* this failure locked the source */
    HDX_THROTTLE_SPRAY = 4,          /* this failure showed the source spraying accounts */
};

struct hdx_throttle;

int hdx_throttle_new(const struct hdx_throttle_conf *conf, struct hdx_throttle **out);
void hdx_throttle_free(struct hdx_throttle *t);

/* 0 when a login for account from source may be tried now; else the seconds to wait (>= 1),
 * and *why "account" or "source". */
int64_t hdx_throttle_check(struct hdx_throttle *t, const char *source, const char *account,
                           int64_t now_us, const char **why);
/* Records a failed login; returns the HDX_THROTTLE_* flags it newly raised. */
int hdx_throttle_failure(struct hdx_throttle *t, const char *source, const char *account,
                         int64_t now_us);
void hdx_throttle_success(struct hdx_throttle *t, const char *account);

#endif
