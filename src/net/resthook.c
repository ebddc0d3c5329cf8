/* resthook: see resthook.h. */
#include "net/resthook.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"

struct hdx_hook {
    char name[80];
    char endpoint[512];
    char headers[HDX_HOOK_HEADERS_MAX][256];
    size_t nheaders;
    char ca_file[4096];
    int timeout_ms, backoff_ms, backoff_max_ms;
    void (*notify)(void *arg);
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int stop;
    char *body;
    size_t body_len;
    uint64_t tag, delivered;
    int failing;
    char why[64];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    return size * n; /* the answer's status is all that counts */
}

/* One attempt: 0 delivered, else why. */
static int post(struct hdx_hook *h, CURL *curl, const char *body, size_t len, char *why, size_t cap)
{
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/fhir+json");
    hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; i < h->nheaders; i++)
        hl = curl_slist_append(hl, h->headers[i]);
    curl_easy_setopt(curl, CURLOPT_URL, h->endpoint);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file[0]) curl_easy_setopt(curl, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "hdx");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    if (rc != CURLE_OK) {
        snprintf(why, cap, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (status < 200 || status > 299) {
        snprintf(why, cap, "HTTP %ld", status);
        return -1;
    }
    return 0;
}

static void *hook_main(void *arg)
{
    struct hdx_hook *h = arg;
    pthread_setname_np(pthread_self(), "hdx-resthook");
    CURL *curl = curl_easy_init();
    int delay = h->backoff_ms;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        if (!h->body) {
            pthread_cond_wait(&h->cv, &h->mu);
            continue;
        }
        char *body = h->body;
        size_t len = h->body_len;
        uint64_t tag = h->tag;
        pthread_mutex_unlock(&h->mu);
        char why[64] = "no curl handle";
        int ok = curl && post(h, curl, body, len, why, sizeof(why)) == 0;
        pthread_mutex_lock(&h->mu);
        if (ok) {
            h->delivered = tag;
            free(h->body);
            h->body = NULL;
            if (h->failing) hdx_info("resthook_recovered", "subscription=%s", h->name);
            h->failing = 0;
            delay = h->backoff_ms;
            pthread_mutex_unlock(&h->mu);
            h->notify(h->arg);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        if (!h->failing) hdx_warn("resthook_failing", "subscription=%s why=%s", h->name, why);
        h->failing = 1;
        snprintf(h->why, sizeof(h->why), "%s", why);
        pthread_mutex_unlock(&h->mu);
        h->notify(h->arg);
        pthread_mutex_lock(&h->mu);
        /* capped exponential backoff, jittered to 50-100 % so receivers are not hit in step */
        long wait = delay / 2 + (long)randombytes_uniform((uint32_t)(delay / 2 + 1));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &ts) == 0) {
        }
        delay = delay * 2 > h->backoff_max_ms ? h->backoff_max_ms : delay * 2;
    }
    pthread_mutex_unlock(&h->mu);
    curl_easy_cleanup(curl);
    return NULL;
}

int hdx_hook_start(const struct hdx_hook_conf *conf, struct hdx_hook **out)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    struct hdx_hook *h = calloc(1, sizeof(*h));
    if (!h) return HDX_E_NOMEM;
    snprintf(h->name, sizeof(h->name), "%s", conf->name);
    snprintf(h->endpoint, sizeof(h->endpoint), "%s", conf->endpoint);
    for (size_t i = 0; i < conf->nheaders && i < HDX_HOOK_HEADERS_MAX; i++)
        snprintf(h->headers[h->nheaders++], sizeof(h->headers[0]), "%s", conf->headers[i]);
    snprintf(h->ca_file, sizeof(h->ca_file), "%s", conf->ca_file ? conf->ca_file : "");
    h->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 10000;
    h->backoff_ms = conf->backoff_ms > 1 ? conf->backoff_ms : 500;
    h->backoff_max_ms = conf->backoff_max_ms >= h->backoff_ms ? conf->backoff_max_ms : 60000;
    h->notify = conf->notify;
    h->arg = conf->arg;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, hook_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        return HDX_E_NOMEM;
    }
    *out = h;
    return HDX_OK;
}

void hdx_hook_stop(struct hdx_hook *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    free(h->body);
    sodium_memzero(h->headers, sizeof(h->headers)); /* they may hold the receiver's secret */
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int hdx_hook_idle(struct hdx_hook *h)
{
    pthread_mutex_lock(&h->mu);
    int idle = h->body == NULL;
    pthread_mutex_unlock(&h->mu);
    return idle;
}

void hdx_hook_offer(struct hdx_hook *h, char *body, size_t len, uint64_t tag)
{
    pthread_mutex_lock(&h->mu);
    free(h->body);
    h->body = body;
    h->body_len = len;
    h->tag = tag;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

uint64_t hdx_hook_delivered(struct hdx_hook *h, int *failing, char *why, size_t cap)
{
    pthread_mutex_lock(&h->mu);
    uint64_t d = h->delivered;
    if (failing) *failing = h->failing;
    if (why && cap) snprintf(why, cap, "%s", h->failing ? h->why : "");
    pthread_mutex_unlock(&h->mu);
    return d;
}
