/* route: the outbound route engine (DESIGN M2, docs/ROUTES.md). hdxd pushes committed HL7 v2
 * messages to the systems declared in [route NAME] sections (route/rconf.h), in commit order,
 * never lost and, to a receiver that de-duplicates on MSH-10, never twice.
 *
 * Each route runs one thread per lane (order = route: one lane; order = patient: `lanes`, a
 * patient's messages always on the same lane). A lane reads the log through its own read-only
 * store handle from its durable cursor (route/cursor.h): the queue is the store, so a
 * destination down for hours costs no memory and never slows ingest. It sends up to
 * max_inflight messages, matches every ACK by MSA-2 = MSH-10 (a late ACK for an earlier
 * message is discarded and logged, never credited to another), and advances the cursor over
 * the oldest messages once each is acknowledged (AA/CA) or is a durable dead letter. AE/CE and
 * a message sent but not answered (timeout, close, garbage) are retried with capped,
 * jittered exponential backoff; AR/CR, a transform that fails, or max_attempts failures make
 * the message a dead letter (an admin record, commit/admin.h route_dead, committed before
 * the cursor passes it) and the route goes on. A connection or TLS failure blames no message:
 * the route backs off and says route_failing once, and route_recovered once it delivers again.
 * Before anything leaves, the policy engine decides (policy/policy.h: role integration, action
 * export, the route's purpose): a message a patient's directive refuses is not sent, and is
 * counted in a deny summary. Every delivery is a disclosure: per patient token, audit records
 * (event disclosure, action route, principal route:NAME) every 10 s, when a lane's table fills, and
 * when it stops; the cursor remembers up to where they are durable, and a restart writes the
 * missing ones again from the log. Thread: hdx_routes_* on the network thread (they never block on
 * a destination); the lanes are their own threads and talk to the rest only through the commit
 * pipeline (submit) and the routes object's lock. */
#ifndef HDX_ROUTE_H
#define HDX_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "commit/commit.h"
#include "crypto/keys.h"
#include "route/rconf.h"

struct hdx_routes;

struct hdx_routes_env {
    const char *dir;        /* data directory: cursors under DIR/routes/NAME/ */
    const char *store_path; /* lanes open it read-only */
    const struct hdx_keyring *kr;
    struct hdx_commit *commit;
    const char *tls_min_version; /* "1.3" or "1.2" (tls.min_version) */
    size_t max_ack;              /* largest answer frame accepted (mllp.max_message) */
    uint64_t last_seq;           /* newest committed record at start */
    int training_period_days;    /* policy.training_period_days (policy_load.h) */
};

int hdx_routes_new(const struct hdx_routes_env *env, struct hdx_routes **out);
/* Applies a configuration: starts new routes, restarts changed ones (fingerprint), stops the
 * ones no longer declared. A route that is not valid in rc keeps running as it was, if it
 * was, and its error is logged (route_refused). Takes the valid routes out of rc. A changed
 * or removed route drains first (what it has in flight is answered, nothing new is sent) and
 * hdx_routes_tick replaces it once it has: a reload neither drops nor repeats a message.
 * Never blocks on a destination. */
void hdx_routes_apply(struct hdx_routes *rs, struct hdx_routes_conf *rc);
/* From the network thread's housekeeping timer: finishes reloads whose routes drained. */
void hdx_routes_tick(struct hdx_routes *rs);
/* Records up to last_seq are committed and visible to readers: wakes the lanes. head is the
 * done list they came in (still the caller's): its clinical messages are kept in memory for
 * the lanes that are caught up (the live feed), so they need not decrypt them again. */
void hdx_routes_committed(struct hdx_routes *rs, const struct hdx_intake_item *head,
                          uint64_t last_seq);
/* A committed admin record: route_retry statements reach their lane. */
void hdx_routes_admin_committed(struct hdx_routes *rs, const struct hdx_intake_item *it);
/* hdxd is stopping: every lane stops sending, writes its pending disclosures and waits for
 * them (the event loop must keep running: it delivers their completion); drained is 1 once
 * every lane is done. */
void hdx_routes_drain(struct hdx_routes *rs);
int hdx_routes_drained(struct hdx_routes *rs);
/* Stops every lane (in-flight messages are not waited for: their cursor stays before them,
 * so they are sent again after the restart) and flushes the cursors. Call it once the event
 * loop has ended and before the commit pipeline stops. */
void hdx_routes_free(struct hdx_routes *rs);

/* Status of a route for `hdx route status`, written by the lanes every second to
 * DIR/routes/NAME/status (key=value lines). */
#define HDX_ROUTE_STATUS_FILE "status"

/* The dead letters of a route, replayed from the log's route_* admin records (read handle):
 * cb per seq still dead (or marked for retry), in seq order, with the reason, the time it
 * died and whether a retry is pending. */
struct hdx_store;
int hdx_route_dead_letters(struct hdx_store *s, const struct hdx_keyring *kr, const char *route,
                           int (*cb)(void *ctx, uint64_t seq, const char *reason, int64_t dead_us,
                                     int retry),
                           void *ctx);

#endif
