/* fhir/subscription: topic-based Subscriptions as the Subscriptions R5 Backport IG (STU 1.1)
 * defines them for R4 (docs/FHIR.md "Subscriptions"). Pure: no I/O, no clock, no globals.
 *
 * One topic, HDX_SUB_TOPIC: a vital-sign Observation (category vital-signs) is created or
 * updated, whether posted over FHIR or sent as an HL7 v2 ORU^R01. A Subscription names it in
 * criteria and narrows it with backport-filter-criteria of the form
 * "Observation?patient=Patient/ID&code=SYSTEM|CODE,SYSTEM|CODE" (every filter must hold; codes
 * are an OR). Channels: rest-hook (an https:// endpoint, POSTed) and websocket (bound with a
 * token from $get-ws-binding-token). Payload content empty, id-only or full-resource.
 *
 * hdx_sub_parse checks a Subscription a client sent; the Subscription is untrusted input and is
 * refused with the path of what is wrong. hdx_sub_bundle makes the notification Bundle (type
 * history) or the $status answer (type searchset), each opened by the R4 status Parameters
 * (backport-subscription-status-r4).
 * Ownership: *out of the builders belongs to the caller (json_decref). Thread: any. */
#ifndef HDX_FHIR_SUBSCRIPTION_H
#define HDX_FHIR_SUBSCRIPTION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/resource.h"

#define HDX_SUB_TOPIC "urn:hdx:SubscriptionTopic:vital-signs"
#define HDX_SUB_CODES_MAX 16
#define HDX_SUB_HEADERS_MAX 4
#define HDX_SUB_HEADER_MAX 255
#define HDX_SUB_ENDPOINT_MAX 511
#define HDX_SUB_CODE_MAX 199 /* "system|code" */
#define HDX_SUB_HEARTBEAT_MAX 3600
#define HDX_SUB_MAX_COUNT_MAX 100
#define HDX_SUB_EXT "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
#define HDX_SUB_VITAL_CATEGORY                                                                     \
    "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"

enum hdx_sub_channel { HDX_SUB_REST_HOOK = 1, HDX_SUB_WEBSOCKET };
enum hdx_sub_content { HDX_SUB_EMPTY = 0, HDX_SUB_ID_ONLY, HDX_SUB_FULL };

struct hdx_sub_spec {
    enum hdx_sub_channel channel;
    enum hdx_sub_content content;
    int off;                                 /* status "off": no events */
    char endpoint[HDX_SUB_ENDPOINT_MAX + 1]; /* rest-hook */
    size_t nheaders;
    char headers[HDX_SUB_HEADERS_MAX][HDX_SUB_HEADER_MAX + 1]; /* "Name: value", rest-hook */
    char patient_id[HDX_FHIR_ID_MAX + 1];                      /* "" : every patient */
    size_t ncodes;                                             /* 0: every vital sign */
    char codes[HDX_SUB_CODES_MAX][HDX_SUB_CODE_MAX + 1];       /* "system|code" or "|code" */
    uint32_t heartbeat_s;                                      /* 0: none */
    uint32_t max_count;                                        /* events per notification */
};

/* A Subscription as a client sent it: HDX_OK and *out, or HDX_E_INVAL with path (FHIRPath of
 * the element at fault) and why (fixed text; at most a filter parameter's name, which only
 * [A-Za-z0-9_:.-] can be, never a value). Endpoints and headers are printable ASCII. */
int hdx_sub_parse(const json_t *sub, struct hdx_sub_spec *out, char *path, size_t path_cap,
                  char *why, size_t why_cap);

/* 1 when two specs select the same events (a version may change the channel and the status,
 * not what it subscribes to). */
int hdx_sub_same_filter(const struct hdx_sub_spec *a, const struct hdx_sub_spec *b);

enum hdx_sub_note {
    HDX_SUB_HANDSHAKE,
    HDX_SUB_HEARTBEAT,
    HDX_SUB_EVENT,
    HDX_SUB_QUERY_STATUS,
    HDX_SUB_QUERY_EVENT
};

/* One event of a notification. */
struct hdx_sub_event {
    uint64_t number;
    int64_t time_us;
    char type[HDX_FHIR_TYPE_MAX + 1], id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    json_t *resource; /* full-resource: the version (borrowed); else NULL */
    /* type "": an event the receiver may not see: its number and time only */
};

struct hdx_sub_status {
    const char *base_url; /* the FHIR base: references and fullUrls */
    const char *sub_id;
    const char *status; /* requested | active | error | off */
    enum hdx_sub_note note;
    uint64_t events_since_start;
    enum hdx_sub_content content;
    const char *error; /* a text for Parameters.error, or NULL */
    int64_t now_us;    /* Bundle.timestamp */
};

/* The Bundle: type history (a notification, $events) or searchset ($status), the status
 * Parameters first, then (full-resource) each event's resource. NULL: out of memory. */
json_t *hdx_sub_bundle(const struct hdx_sub_status *st, const struct hdx_sub_event *ev, size_t n);

/* The same Bundle as compact JSON text written directly (plain malloc'd, *len set), for the
 * fan-out of one event to many subscriptions: content empty or id-only only (NULL for
 * full-resource, or without memory). */
char *hdx_sub_bundle_text(const struct hdx_sub_status *st, const struct hdx_sub_event *ev, size_t n,
                          size_t *len);

const char *hdx_sub_note_name(enum hdx_sub_note n);

#endif
