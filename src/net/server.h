/* server: hdxd's network front (DESIGN "net" and the hl7 front-end).
 * Listeners: MLLP over mutual TLS (mllp.listen), legacy plaintext MLLP (legacy.listen, off
 * by default, allow-listed addresses only, every connection logged as insecure) and
 * subscribers over mutual TLS (sub.listen). One connection type on libevent bufferevents
 * over OpenSSL; per connection a handshake timeout, an idle timeout, a frame timeout and a
 * cap on unacknowledged messages (reads pause at the cap: memory stays bounded).
 * Each received frame is parsed; a bad one is answered AE/AR with ERR and one log line
 * naming the cause; a good one goes to the commit pipeline, and its AA is written only
 * when the commit thread reports it durable. Committed records are then published on the
 * bus. A connection is never freed inside its own callback: closing ones are reaped from
 * the loop once their in-flight messages are answered.
 * Thread: everything here runs on the network thread; only the commit thread's completion
 * wakeup crosses threads (an eventfd). */
#ifndef HDX_SERVER_H
#define HDX_SERVER_H

#include <event2/event.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "commit/commit.h"
#include "core/conf.h"
#include "crypto/keys.h"
#include "store/store.h"

struct hdx_server;

/* ro_store: the network thread's read-only store handle (devices, replay); not owned.
 * commit_store: opened read-write; ownership passes to the commit thread. */
int hdx_server_new(const struct hdx_conf *conf, struct event_base *base,
                   const struct hdx_keyring *kr, EVP_PKEY *log_key, struct hdx_store *ro_store,
                   struct hdx_store *commit_store, struct hdx_server **out, char *why,
                   size_t why_cap);
/* Stops accepting and reading, waits (up to a few seconds) until every in-flight message
 * is answered, then breaks the event loop. Safe to call from a signal event. */
void hdx_server_shutdown(struct hdx_server *srv);
void hdx_server_free(struct hdx_server *srv);
/* SIGHUP: reads the [route NAME] sections of hdx.conf again and applies them (route/route.h:
 * unchanged routes keep running, a wrong one keeps its previous configuration). Other
 * sections are read at start only. */
void hdx_server_reload(struct hdx_server *srv);

#endif
