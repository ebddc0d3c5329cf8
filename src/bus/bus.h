/* bus: real-time fan-out of committed records to subscribers (DESIGN M2).
 * Each subscriber has a cursor (the next seq it should see) and a filter. Live records are
 * delivered only when their seq equals the cursor, so a subscriber never sees a gap or a
 * duplicate; a subscriber that asks for history, or falls behind, replays from the store
 * in chunks (REPLAY) until it reaches the newest published record, then goes LIVE.
 * Memory is bounded: replay reads only while the subscriber's queue is below half of
 * max_queue; a LIVE subscriber whose queue exceeds max_queue stops receiving live records
 * and catches up from the store as it drains, so a burst larger than the queue costs a fast
 * reader nothing. One that stays behind longer than max_lag_ms is dropped with a reason
 * (hdx_bus_tick); the publisher is never slowed.
 * The bus writes through a sink implemented by the network layer, so it knows nothing of
 * sockets. Wire format of each delivery (docs/SUBSCRIBE.md):
 *   "MSG seq=N time=ISO8601 sender=S type=T len=L[ durable=US]\n" L bytes "\n"
 * (durable: microseconds since the epoch when the batch was flushed; live deliveries only).
 * Thread: the network thread only. Owns nothing passed to publish. */
#ifndef HDX_BUS_H
#define HDX_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "store/record.h"
#include "store/store.h"

struct hdx_bus;
struct hdx_bus_sub;
struct hdx_bus_event;

struct hdx_bus_sink {
    void (*write)(void *conn, const void *data, size_t len);
    size_t (*queued)(void *conn);
    void (*drop)(void *conn, const char *reason); /* must not call back into the bus */
    /* A record went to conn (its patient token or NULL): the accounting of disclosures. */
    void (*disclosed)(void *conn, const uint8_t *patient, uint64_t seq);
    /* Optional: the sink writes the record itself, in its own format, after its own checks
     * (an HTTPS event stream, authorized per record); write and disclosed are then unused.
     * It must not call back into the bus. */
    void (*deliver)(void *conn, const struct hdx_bus_event *ev);
};

struct hdx_bus_filter {
    uint8_t kind;                    /* 0: HDX_KIND_HL7V2; or HDX_KIND_DICOM (announcements) */
    char type[HDX_TYPE_MAX + 1];     /* "" = any */
    char sender[HDX_SENDER_MAX + 1]; /* "" = any */
    int has_patient;
    uint8_t patient[HDX_BLIND_LEN];
    /* What the subscriber may receive at all (its granted scope, policy/scope.h), asked after
     * the fields above for every record, live and replayed: a replayed record it refuses is
     * not even decrypted. NULL: no further condition. admit_arg is the subscriber's and must
     * outlive the subscription (the hook may count what it refuses in it); the event's body
     * may be NULL when it is asked. The hook must not call back into the bus. */
    int (*admit)(void *arg, const struct hdx_bus_event *ev);
    void *admit_arg;
};

struct hdx_bus_event {
    uint64_t seq;
    int64_t time_us;
    uint8_t kind;
    const char *sender, *type;
    const uint8_t *patient; /* blind token or NULL */
    const uint8_t *body;
    size_t body_len;
    int64_t durable_us; /* when its batch was flushed; 0 for records replayed from the store */
};

/* The admit hook (hdx_bus_filter.admit) for a subscriber's granted scope: admit_arg is a
 * struct hdx_scope (policy/scope.h, e.g. from hdx_scope_load). */
int hdx_bus_admit_scope(void *scope, const struct hdx_bus_event *ev);

/* ro_store: a handle the bus may use for replay (owned by the caller). last_seq: the
 * newest committed seq at start. */
int hdx_bus_new(struct hdx_store *ro_store, const struct hdx_keyring *kr,
                const struct hdx_bus_sink *sink, size_t max_queue, int max_lag_ms,
                uint64_t last_seq, struct hdx_bus **out);
/* Drops subscribers that have been behind (after a queue overflow) for longer than
 * max_lag_ms; call a few times a second. */
void hdx_bus_tick(struct hdx_bus *bus, int64_t now_us);
void hdx_bus_free(struct hdx_bus *bus);

/* after_seq: deliver every record with seq > after_seq; UINT64_MAX = only new records. */
struct hdx_bus_sub *hdx_bus_subscribe(struct hdx_bus *bus, void *conn,
                                      const struct hdx_bus_filter *f, uint64_t after_seq);
/* The same with a sink of the subscriber's own (it must outlive the subscription); NULL: the
 * bus's. */
struct hdx_bus_sub *hdx_bus_subscribe_sink(struct hdx_bus *bus, void *conn,
                                           const struct hdx_bus_filter *f, uint64_t after_seq,
                                           const struct hdx_bus_sink *sink);
void hdx_bus_unsubscribe(struct hdx_bus *bus, struct hdx_bus_sub *sub);
void hdx_bus_publish(struct hdx_bus *bus, const struct hdx_bus_event *ev);
/* Continues a replay; call when the subscriber's queue has drained. */
void hdx_bus_pump(struct hdx_bus *bus, struct hdx_bus_sub *sub);
uint64_t hdx_bus_last_seq(const struct hdx_bus *bus);
size_t hdx_bus_count(const struct hdx_bus *bus);

/* Parses the client's request line "SUB [after=N] [kind=K] [type=T] [sender=S] [patient=ID]" (no
 * newline): exactly len bytes of line are read (none past them; NUL is just a refused byte).
 * The grammar is docs/SUBSCRIBE.md "Request": one space between tokens, each key at most
 * once, values non-empty and printable ASCII, N decimal digits only and below UINT64_MAX.
 * Patient ids are blinded with kr. Returns HDX_OK, or HDX_E_INVAL with why set to a fixed
 * text that quotes no client byte (it is sent back and logged); f and *after_seq are then
 * zero and UINT64_MAX. */
int hdx_bus_parse_request(const char *line, size_t len, const struct hdx_keyring *kr,
                          struct hdx_bus_filter *f, uint64_t *after_seq, char *why, size_t why_cap);

#endif
