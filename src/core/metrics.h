/* metrics: hdxd's counters, gauges and histograms, and their Prometheus text exposition
 * (format 0.0.4) for GET /metrics (docs/METRICS.md).
 * The registry is fixed at compile time: every family, its name, help, type and label values
 * are constants in metrics.c. A label's value is always one of a small enum of ours (a
 * protocol, an outcome, a FHIR interaction, a status class), never a name, an id or anything
 * a peer sent, so no PHI or principal can appear in a scrape and the number of series is
 * bounded (about 130).
 * Updates: one relaxed C11 atomic add on a static slot, from any thread, no lock, no
 * allocation (a histogram: a linear search of at most 16 integer bounds, then two adds).
 * An out-of-range enum value is ignored. Readers see each value exactly, but not a snapshot
 * of all of them at one instant (a histogram's _count is the sum of its buckets as read).
 * Thread: every function from any thread; hdx_metrics_render allocates its answer. */
#ifndef HDX_METRICS_H
#define HDX_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Where a connection or a message came in (label protocol). */
enum hdx_metric_proto {
    HDX_METRIC_MLLP = 0,    /* MLLP over TLS (mllp.listen) */
    HDX_METRIC_LEGACY,      /* plaintext MLLP (legacy.listen) */
    HDX_METRIC_HTTP,        /* HTTPS (http.listen) */
    HDX_METRIC_SUB,         /* the subscription port (sub.listen) */
    HDX_METRIC_DICOM,       /* DICOM TLS (dicom.listen) */
    HDX_METRIC_DICOM_PLAIN, /* plaintext DICOM (dicom.plain_listen) */
    HDX_METRIC_PROTO_COUNT
};

/* What became of a route's message (label outcome). */
enum hdx_metric_route_outcome {
    HDX_METRIC_ROUTE_DELIVERED = 0, /* acknowledged AA/CA (or 2xx, or spooled) */
    HDX_METRIC_ROUTE_RETRIED,       /* an attempt failed; the message is sent again later */
    HDX_METRIC_ROUTE_DEAD,          /* given up: a dead letter committed */
    HDX_METRIC_ROUTE_OUTCOME_COUNT
};

/* How a refused principal tried to authenticate (label mechanism). */
enum hdx_metric_auth {
    HDX_METRIC_AUTH_LOGIN = 0,   /* POST /auth/login refused (credentials, lock, throttle) */
    HDX_METRIC_AUTH_API_KEY,     /* a service's API key not accepted */
    HDX_METRIC_AUTH_CERTIFICATE, /* a client certificate refused, in or after the handshake */
    HDX_METRIC_AUTH_COUNT
};

/* Who asked the policy engine (label front). */
enum hdx_metric_front {
    HDX_METRIC_FRONT_HTTPS = 0, /* /api and /fhir */
    HDX_METRIC_FRONT_SUB,       /* the subscription port */
    HDX_METRIC_FRONT_ROUTE,     /* an outbound route's lane */
    HDX_METRIC_FRONT_DICOM,     /* C-FIND matches withheld */
    HDX_METRIC_FRONT_COUNT
};

/* A FHIR REST interaction (label interaction of hdx_fhir_requests_total). */
enum hdx_metric_fhir_interaction {
    HDX_METRIC_FHIR_READ = 0,
    HDX_METRIC_FHIR_VREAD,
    HDX_METRIC_FHIR_UPDATE,
    HDX_METRIC_FHIR_DELETE,
    HDX_METRIC_FHIR_CREATE,
    HDX_METRIC_FHIR_SEARCH,
    HDX_METRIC_FHIR_HISTORY,
    HDX_METRIC_FHIR_TRANSACTION,
    HDX_METRIC_FHIR_BATCH,
    HDX_METRIC_FHIR_CAPABILITIES,
    HDX_METRIC_FHIR_COUNT
};

/* Ingest: a message handed to the commit pipeline; one answered AE/AR on arrival. */
void hdx_metric_ingest(enum hdx_metric_proto p);
void hdx_metric_rejected(enum hdx_metric_proto p);
/* A message's answer written to its connection, us after its frame was received. */
void hdx_metric_ack_latency(int64_t us);

/* The commit pipeline: one finished batch of items (records stored, duplicates answered
 * from the store, items failed); one flush (fdatasync) of record frames; the intake queue's
 * depth moved by delta items. */
void hdx_metric_commit_batch(uint64_t items, uint64_t records, uint64_t duplicates,
                             uint64_t failed);
void hdx_metric_flush(void);
void hdx_metric_intake_queue(int64_t delta);

/* Connections admitted (TLS handshake done and peer checked) and not yet closing. */
void hdx_metric_connections(enum hdx_metric_proto p, int delta);
/* TLS handshakes that failed or timed out (scanners included). */
void hdx_metric_tls_handshake_failed(void);

/* Routes: an outcome; a delivery's latency from commit to the destination's ACK; the
 * messages the lanes hold (prefetched or in flight) moved by delta. */
void hdx_metric_route(enum hdx_metric_route_outcome o);
void hdx_metric_route_latency(int64_t us);
void hdx_metric_route_queued(int64_t delta);

void hdx_metric_auth_failure(enum hdx_metric_auth m);
void hdx_metric_policy_denial(enum hdx_metric_front f);
/* One FHIR interaction answered with an HTTP status (classed 2xx, 3xx, 4xx, 5xx; anything
 * outside 200..599 counts as 5xx). Called by net/front_fhir.c. */
void hdx_metric_fhir(enum hdx_metric_fhir_interaction i, int status);
/* One FHIR Subscription event sent, since_write_us after its version was written. */
void hdx_metric_fhir_notification(int64_t since_write_us);
/* One HTTPS answer written, by status class. */
void hdx_metric_http_status(int status);

/* The uptime gauge counts from here (hdxd calls it once at start; until then it is 0). */
void hdx_metrics_start(void);

/* The whole registry in the Prometheus text format 0.0.4 (the process gauges read from
 * /proc/self at this moment). *out is malloc'd and NUL-terminated, the caller frees it.
 * HDX_OK or HDX_E_NOMEM. */
#define HDX_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
int hdx_metrics_render(char **out, size_t *len);

/* Tests only: every counter, gauge and histogram back to zero. */
void hdx_metrics_reset(void);

#endif
