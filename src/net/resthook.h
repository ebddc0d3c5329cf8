/* resthook: the rest-hook channel of FHIR Subscriptions (docs/FHIR.md "Subscriptions"): one
 * thread per subscription POSTs its notifications, one at a time and in order, with libcurl
 * (the Debian library): https only, the server certificate verified (against the CA file when
 * one is set, else the system's), TLS 1.2 or later, no redirects, connect and answer
 * timeouts. A 2xx answer is delivery. Anything else is retried with capped, jittered
 * exponential backoff, for ever: the subscription's status says error meanwhile, and the
 * receiver gets every notification once it is back. Nothing here reads the log or blocks the
 * network thread: the network thread offers one body at a time and polls the outcome when
 * notify (which only wakes it) has run.
 * Thread: hdx_hook_* on the network thread; the worker is its own. */
#ifndef HDX_NET_RESTHOOK_H
#define HDX_NET_RESTHOOK_H

#include <stddef.h>
#include <stdint.h>

#define HDX_HOOK_HEADERS_MAX 4

struct hdx_hook;

struct hdx_hook_conf {
    const char *name; /* for the logs: the subscription id */
    const char *endpoint;
    const char *headers[HDX_HOOK_HEADERS_MAX];
    size_t nheaders;
    const char *ca_file; /* NULL or "": the system's CAs */
    int timeout_ms, backoff_ms, backoff_max_ms;
    void (*notify)(void *arg); /* any thread: an offer completed or began failing */
    void *arg;
};

int hdx_hook_start(const struct hdx_hook_conf *conf, struct hdx_hook **out);
/* Stops the worker (an attempt in progress is cut at its timeout) and frees h. */
void hdx_hook_stop(struct hdx_hook *h);
/* 1 when nothing is on offer (the last offer was delivered). */
int hdx_hook_idle(struct hdx_hook *h);
/* Offers body (taken over: malloc'd), tagged. Only when idle. */
void hdx_hook_offer(struct hdx_hook *h, char *body, size_t len, uint64_t tag);
/* The tag of the newest delivered offer (0: none yet), and whether the current one is failing,
 * with a short reason (no PHI: a status code or a curl error name). */
uint64_t hdx_hook_delivered(struct hdx_hook *h, int *failing, char *why, size_t cap);

#endif
