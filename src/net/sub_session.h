/* sub_session: the subscription port (sub.listen, mutual TLS), net/conn.h doing admission
 * and lifetime. Before a subscription, witness requests (STH, CONSISTENCY, INCLUSION: hashes
 * only, for devices checking their receipts) are answered one line each; then one
 * "SUB [after=SEQ] [type=T] [sender=S] [patient=ID]" line (docs/SUBSCRIBE.md) makes the
 * connection a subscriber of the bus (bus/bus.h): it receives live records, or catches up
 * from the store first, and is dropped with "BYE reason=slow-consumer" when it stays behind.
 * A SUB is decided by the policy engine (policy/policy.h: a device reads nothing, so its SUB is
 * refused, reason role, audited) and delivers only what the request's filter AND the
 * principal's granted scope admit (policy/scope.h, read from the registry at SUB; none: every
 * record) AND the engine permits for that record's patient (a consent directive), checked
 * for every record, live and replayed; the refused ones are summarised as subscribe deny. A
 * committed change of that scope ends the subscription ("BYE reason=scope-changed"). A device may
 * still ask for proofs. Every subscription's start, refusal and end is an audit record (event
 * subscribe), and what it delivered is summarised per patient (event disclosure). Lines are at most
 * 1024 bytes; answers to a client that does not read them stop its reading (conn.h,
 * net.max_unsent). Thread: the network thread. */
#ifndef HDX_SUB_SESSION_H
#define HDX_SUB_SESSION_H

#include "bus/bus.h"
#include "commit/commit.h"
#include "crypto/keys.h"
#include "net/conn.h"
#include "policy/policy.h"

struct sub_conn;

struct hdx_sub_ctx {
    const struct hdx_keyring *kr;
    struct hdx_bus *bus;        /* set once the bus exists (its sink is hdx_sub_sink) */
    struct hdx_store *ro_store; /* the network thread's: scopes and the policy data */
    int training_period_days;   /* policy.training_period_days */
    struct hdx_policy *policy;  /* hdx_sub_policy_reload's; NULL: every SUB is refused */
    int policy_stale;           /* a reload failed: retried by hdx_sub_tick */
    int64_t policy_retry_us;
    struct sub_conn *active; /* the session's: connections with a subscription */
};

/* The listener's ctx is a struct hdx_sub_ctx. */
extern const struct hdx_session_ops hdx_sub_ops;
/* How the bus writes to a subscriber connection (the bus's conn handles are hdx_conn). */
extern const struct hdx_bus_sink hdx_sub_sink;
/* An admin record committed (any producer): a device_scope that changes the scope of open
 * subscriptions of its device ends them (see sub_session.c, "scope changes"); a consent
 * statement reloads the policy. */
void hdx_sub_admin_committed(struct hdx_sub_ctx *ctx, const struct hdx_intake_item *it);
/* Loads the policy data (policy/policy_load.h) from ro_store into ctx->policy: at start and
 * after a consent change; on failure the previous policy stays and hdx_sub_tick retries once
 * a second. */
int hdx_sub_policy_reload(struct hdx_sub_ctx *ctx);
void hdx_sub_tick(struct hdx_sub_ctx *ctx);
void hdx_sub_ctx_free(struct hdx_sub_ctx *ctx);

#endif
