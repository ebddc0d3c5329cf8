/* fhir/index: the FHIR view of the log (docs/FHIR.md "How resources are kept"). A projection,
 * never the authority: DIR/fhir.db (SQLite, WAL) holds for every resource version its type,
 * id, version, where it is in the log (seq, and its entry in a transaction record or an
 * HL7 v2 message), its patient's blind token and what search needs (fhir/resource.h tokens,
 * time ranges); no plaintext value. Deleting the file loses nothing: it is rebuilt from the
 * log at the next start.
 * The indexer thread follows the log: woken by hdx_fhir_index_advance (after each committed
 * batch), it reads the new FHIR records and (when v2 is on) the new ORU^R01 messages, whose
 * vital signs become Observations "v2-SEQ-N" (fhir/v2map.h), and writes their rows and the
 * position it reached in one transaction, so a crash re-indexes from that position. After
 * each pass it calls notify (which only wakes the network thread); hdx_fhir_index_through
 * then tells how far the view is, so that a create is answered only once it is also
 * readable.
 * Queries run on the caller's own read connection (the network thread's).
 * Thread: the indexer is its own; the query functions belong to one thread (the opener). */
#ifndef HDX_FHIR_INDEX_H
#define HDX_FHIR_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keys.h"
#include "fhir/resource.h"

struct hdx_fhir_index;

struct hdx_fhir_index_env {
    const char *db_path;    /* DIR/fhir.db */
    const char *store_path; /* the record store, opened read-only by the indexer */
    const struct hdx_keyring *kr;
    int v2; /* index ORU^R01 vital signs as Observations */
    void (*notify)(void *arg);
    void *arg;
};

int hdx_fhir_index_open(const struct hdx_fhir_index_env *env, struct hdx_fhir_index **out,
                        char *why, size_t cap);
void hdx_fhir_index_close(struct hdx_fhir_index *ix);
/* The log holds records up to seq: index them. Any thread. */
void hdx_fhir_index_advance(struct hdx_fhir_index *ix, uint64_t seq);
/* Every record up to this seq is in the view. Any thread. */
uint64_t hdx_fhir_index_through(struct hdx_fhir_index *ix);

/* One indexed version. */
struct hdx_fhir_row {
    char type[HDX_FHIR_TYPE_MAX + 1];
    char id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    uint64_t seq;  /* its record */
    uint32_t part; /* 0: the record is the resource; N: entry N of a transaction, or the Nth
                      Observation of an HL7 v2 message */
    int deleted, current;
    int64_t updated_us;
    int has_patient;
    uint8_t patient[HDX_BLIND_LEN];
};

/* The current version (deleted ones too: the caller answers 410), or a given version.
 * HDX_OK, HDX_E_NOTFOUND, HDX_E_STORE. */
int hdx_fhir_index_get(struct hdx_fhir_index *ix, const char *type, const char *id,
                       uint32_t version, struct hdx_fhir_row *out); /* version 0: current */

/* A search: type, AND of the given conditions; each token group is an OR of tokens. */
#define HDX_FHIR_GROUPS_MAX 8
#define HDX_FHIR_GROUP_TOKENS_MAX 16
#define HDX_FHIR_RANGES_MAX 4
enum hdx_fhir_prefix {
    HDX_FHIR_EQ,
    HDX_FHIR_NE,
    HDX_FHIR_LT,
    HDX_FHIR_LE,
    HDX_FHIR_GT,
    HDX_FHIR_GE
};
struct hdx_fhir_range {
    int on_updated; /* 0: the date search parameter; 1: _lastUpdated */
    enum hdx_fhir_prefix prefix;
    int64_t lo, hi;
};
struct hdx_fhir_query {
    const char *type;
    const char *id;         /* _id, or NULL */
    const uint8_t *patient; /* NULL: any */
    size_t ngroups;
    struct {
        uint8_t param;
        size_t n;
        uint8_t tok[HDX_FHIR_GROUP_TOKENS_MAX][HDX_BLIND_LEN];
    } groups[HDX_FHIR_GROUPS_MAX];
    size_t nranges;
    struct hdx_fhir_range ranges[HDX_FHIR_RANGES_MAX];
    int sort_date_desc; /* _sort=-date; else date ascending when sort_date, else by position */
    int sort_date;
    /* history instead of current versions: every version of type (and id), newest first */
    int history;
    int64_t since_us; /* _since, history only */
};
/* Calls cb for each matching row in order until cb returns non-zero; at most limit rows (0: no
 * limit). Returns the number visited or a negative hdx_err. */
long hdx_fhir_index_query(struct hdx_fhir_index *ix, const struct hdx_fhir_query *q, size_t limit,
                          int (*cb)(void *ctx, const struct hdx_fhir_row *row), void *ctx);

/* Subscriptions (fhir/subscription.h): the indexer keeps each Subscription's filter and, in
 * the pass that indexes a vital-sign Observation version, records it as an event of every
 * live subscription it matches (a filter's patient is its Subscription record's patient), so
 * the events of every subscription are a deterministic function of the log. They are read in
 * log order, (seq, part) then subscription id, from after a position; cb gets each one's
 * subscription id and its Observation version's row; cb and limit as for
 * hdx_fhir_index_query. */
struct hdx_fhir_event_pos {
    uint64_t seq;
    uint32_t part;
    char sub[HDX_FHIR_ID_MAX + 1]; /* "" before any id */
};
long hdx_fhir_index_events(struct hdx_fhir_index *ix, const struct hdx_fhir_event_pos *after,
                           size_t limit,
                           int (*cb)(void *ctx, const char *sub, const struct hdx_fhir_row *row),
                           void *ctx);

/* Subscription events the indexer committed since it opened (any thread): unchanged, no
 * subscription has a new event. */
uint64_t hdx_fhir_index_events_added(struct hdx_fhir_index *ix);

/* Counters for /metrics and the logs. */
struct hdx_fhir_index_stats {
    uint64_t records, rows, skipped, passes;
};
void hdx_fhir_index_get_stats(struct hdx_fhir_index *ix, struct hdx_fhir_index_stats *out);

#endif
