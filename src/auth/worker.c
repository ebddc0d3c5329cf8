#include "auth/worker.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"

/* What this run accepted per user (auth/user.h: pending_step, pending_recovery). */
struct accepted {
    char name[65];
    uint64_t step;
    uint32_t recovery;
};

struct hdx_auth_worker {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hdx_login_job *head, *tail; /* queued */
    struct hdx_login_job *done_head, *done_tail;
    size_t queued, max_queue;
    int stop;
    struct hdx_store *store;
    const struct hdx_keyring *kr;
    struct hdx_pw_cost cost;
    void (*notify)(void *);
    void *notify_arg;
    struct accepted *acc; /* the worker thread's only */
    size_t nacc, acc_cap;
};

static struct accepted *accepted_for(struct hdx_auth_worker *w, const char *name, int make)
{
    for (size_t i = 0; i < w->nacc; i++)
        if (strcmp(w->acc[i].name, name) == 0) return &w->acc[i];
    if (!make) return NULL;
    if (w->nacc == w->acc_cap) {
        size_t cap = w->acc_cap ? w->acc_cap * 2 : 16;
        struct accepted *n = realloc(w->acc, cap * sizeof(*n));
        if (!n) return NULL;
        w->acc = n;
        w->acc_cap = cap;
    }
    struct accepted *a = &w->acc[w->nacc++];
    memset(a, 0, sizeof(*a));
    memcpy(a->name, name, strnlen(name, sizeof(a->name) - 1));
    return a;
}

static void wipe_input(struct hdx_login_job *job)
{
    if (job->password) {
        sodium_memzero(job->password, job->password_len);
        free(job->password);
        job->password = NULL;
    }
    job->password_len = 0;
    sodium_memzero(job->second, sizeof(job->second));
}

static void run_job(struct hdx_auth_worker *w, struct hdx_login_job *job)
{
    const struct accepted *prev = accepted_for(w, job->name, 0);
    struct hdx_auth_input in = {.name = job->name,
                                .password = job->password ? job->password : "",
                                .password_len = job->password_len,
                                .second = job->second,
                                .now = job->now,
                                .pending_step = prev ? prev->step : 0,
                                .pending_recovery = prev ? prev->recovery : 0};
    if (hdx_user_authenticate(w->store, w->kr, &w->cost, &in, &job->out) != HDX_OK)
        job->out = (struct hdx_auth_outcome){.result = HDX_AUTH_DENIED, .reason = HDX_AUTH_R_ERROR};
    wipe_input(job);
    if (job->out.result != HDX_AUTH_OK || job->out.factor == HDX_FACTOR_NONE) return;
    struct accepted *a = accepted_for(w, job->name, 1);
    if (!a) { /* cannot remember it: refuse rather than let the code work twice */
        job->out = (struct hdx_auth_outcome){.result = HDX_AUTH_DENIED, .reason = HDX_AUTH_R_ERROR};
        return;
    }
    if (job->out.factor == HDX_FACTOR_TOTP && job->out.step > a->step) a->step = job->out.step;
    if (job->out.factor == HDX_FACTOR_RECOVERY)
        a->recovery |= 1u << (unsigned)job->out.recovery_index;
}

static void finish(struct hdx_auth_worker *w, struct hdx_login_job *job)
{
    job->next = NULL;
    if (w->done_tail)
        w->done_tail->next = job;
    else
        w->done_head = job;
    w->done_tail = job;
}

static void *worker_main(void *arg)
{
    struct hdx_auth_worker *w = arg;
    pthread_setname_np(pthread_self(), "hdx-auth");
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) break;
        struct hdx_login_job *job = w->head;
        w->head = job->next;
        if (!w->head) w->tail = NULL;
        w->queued--;
        pthread_mutex_unlock(&w->mu);
        run_job(w, job);
        pthread_mutex_lock(&w->mu);
        finish(w, job);
        pthread_mutex_unlock(&w->mu);
        w->notify(w->notify_arg);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int hdx_auth_worker_start(const char *store_path, const struct hdx_keyring *kr,
                          const struct hdx_pw_cost *cost, size_t max_queue,
                          void (*notify)(void *arg), void *notify_arg, struct hdx_auth_worker **out)
{
    *out = NULL;
    struct hdx_auth_worker *w = calloc(1, sizeof(*w));
    if (!w) return HDX_E_NOMEM;
    w->kr = kr;
    w->cost = *cost;
    w->max_queue = max_queue ? max_queue : 1;
    w->notify = notify;
    w->notify_arg = notify_arg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    int rc = hdx_store_open(store_path, HDX_STORE_RDONLY, &w->store);
    if (rc == HDX_OK) rc = hdx_password_dummy_init(cost);
    if (rc == HDX_OK && pthread_create(&w->thread, NULL, worker_main, w) != 0) rc = HDX_E_IO;
    if (rc != HDX_OK) {
        hdx_auth_worker_stop(w, NULL);
        return rc;
    }
    w->started = 1;
    *out = w;
    return HDX_OK;
}

int hdx_auth_worker_submit(struct hdx_auth_worker *w, struct hdx_login_job *job)
{
    pthread_mutex_lock(&w->mu);
    if (w->queued >= w->max_queue || w->stop) {
        pthread_mutex_unlock(&w->mu);
        return HDX_E_TOOBIG;
    }
    job->next = NULL;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return HDX_OK;
}

struct hdx_login_job *hdx_auth_worker_take_done(struct hdx_auth_worker *w)
{
    pthread_mutex_lock(&w->mu);
    struct hdx_login_job *d = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    return d;
}

void hdx_auth_worker_stop(struct hdx_auth_worker *w, void (*drop)(void *arg))
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->started) pthread_join(w->thread, NULL);
    struct hdx_login_job *lists[2] = {w->head, w->done_head};
    for (int k = 0; k < 2; k++)
        for (struct hdx_login_job *j = lists[k], *next; j; j = next) {
            next = j->next;
            if (drop) drop(j->arg);
            hdx_login_job_free(j);
        }
    hdx_store_close(w->store);
    if (w->acc) sodium_memzero(w->acc, w->acc_cap * sizeof(*w->acc));
    free(w->acc);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void hdx_login_job_free(struct hdx_login_job *job)
{
    if (!job) return;
    wipe_input(job);
    sodium_memzero(&job->out, sizeof(job->out));
    free(job);
}
