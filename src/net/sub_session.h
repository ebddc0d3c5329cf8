/* sub_session: the subscription port (sub.listen, mutual TLS), net/conn.h doing admission
 * and lifetime. Before a subscription, witness requests (STH, CONSISTENCY, INCLUSION: hashes
 * only, for devices checking their receipts) are answered one line each; then one
 * "SUB [after=SEQ] [type=T] [sender=S] [patient=ID]" line (docs/SUBSCRIBE.md) makes the
 * connection a subscriber of the bus (bus/bus.h): it receives live records, or catches up
 * from the store first, and is dropped with "BYE reason=slow-consumer" when it stays behind.
 * Only principals with the registry role subscriber or gateway may SUB; a device may ask for
 * proofs. Lines are at most 1024 bytes; answers to a client that does not read them stop
 * its reading (conn.h, net.max_unsent).
 * Thread: the network thread. */
#ifndef HDX_SUB_SESSION_H
#define HDX_SUB_SESSION_H

#include "bus/bus.h"
#include "crypto/keys.h"
#include "net/conn.h"

struct hdx_sub_ctx {
    const struct hdx_keyring *kr;
    struct hdx_bus *bus; /* set once the bus exists (its sink is hdx_sub_sink) */
};

/* The listener's ctx is a struct hdx_sub_ctx. */
extern const struct hdx_session_ops hdx_sub_ops;
/* How the bus writes to a subscriber connection (the bus's conn handles are hdx_conn). */
extern const struct hdx_bus_sink hdx_sub_sink;

#endif
