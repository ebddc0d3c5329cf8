/* worker: the thread that checks logins (auth/user.h), so that Argon2id (about 0.1 s and
 * 64 MiB each) never runs on the event loop. One thread, jobs in order, on its own read-only
 * store handle. A job carries the login's input (the password in a buffer the worker wipes
 * and frees) and comes back with its outcome; the caller is told through notify (any thread:
 * it only wakes the loop) and takes finished jobs with hdx_auth_worker_take_done.
 * A TOTP step or recovery code the worker accepted stays refused by it for this run, whether
 * or not the caller's user_totp_used record has committed yet (auth/user.h's pending rule):
 * being the only thread that checks logins, it is where a code can be made to work once.
 * The queue is bounded: a full one refuses the job (the caller answers 503).
 * Thread: submit/take_done/stop from one thread (the network thread). */
#ifndef HDX_AUTH_WORKER_H
#define HDX_AUTH_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "auth/password.h"
#include "auth/user.h"
#include "crypto/keys.h"

struct hdx_login_job {
    struct hdx_login_job *next;
    char name[65];
    char *password; /* malloc'd; wiped and freed by the worker */
    size_t password_len;
    char second[32]; /* TOTP or recovery code; "" none (wiped too) */
    time_t now;
    void *arg; /* the caller's */
    struct hdx_auth_outcome out;
};

struct hdx_auth_worker;

int hdx_auth_worker_start(const char *store_path, const struct hdx_keyring *kr,
                          const struct hdx_pw_cost *cost, size_t max_queue,
                          void (*notify)(void *arg), void *notify_arg,
                          struct hdx_auth_worker **out);
/* HDX_OK: the worker owns job until take_done returns it; HDX_E_TOOBIG: the queue is full. */
int hdx_auth_worker_submit(struct hdx_auth_worker *w, struct hdx_login_job *job);
/* Finished jobs, oldest first (a list through next), or NULL. */
struct hdx_login_job *hdx_auth_worker_take_done(struct hdx_auth_worker *w);
/* Stops the thread after the job at hand and frees every job, queued or done, after passing
 * its arg to drop (may be NULL) (shutdown: nobody is left to answer). */
void hdx_auth_worker_stop(struct hdx_auth_worker *w, void (*drop)(void *arg));
void hdx_login_job_free(struct hdx_login_job *job);

#endif
