#include "bus/bus.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "dicom/dataset.h"
#include "dicom/sop.h"
#include "policy/scope.h"

#define REPLAY_CHUNK 256

enum sub_mode { SUB_REPLAY, SUB_LIVE };

struct hdx_bus_sub {
    struct hdx_bus_sub *prev, *next;
    void *conn;
    struct hdx_bus_filter filter;
    uint64_t cursor; /* next seq to consider */
    enum sub_mode mode;
    int dropped;
    int64_t behind_since_us;         /* when a live overflow sent it to catch up; 0 = not behind */
    const struct hdx_bus_sink *sink; /* the bus's, or the subscriber's own */
};

struct hdx_bus {
    struct hdx_store *store;
    const struct hdx_keyring *kr;
    struct hdx_bus_sink sink;
    size_t max_queue;
    int64_t max_lag_us;
    uint64_t last_published;
    struct hdx_bus_sub *subs;
    size_t nsubs;
};

int hdx_bus_new(struct hdx_store *ro_store, const struct hdx_keyring *kr,
                const struct hdx_bus_sink *sink, size_t max_queue, int max_lag_ms,
                uint64_t last_seq, struct hdx_bus **out)
{
    struct hdx_bus *bus = calloc(1, sizeof(*bus));
    if (!bus) return HDX_E_NOMEM;
    bus->store = ro_store;
    bus->kr = kr;
    bus->sink = *sink;
    bus->max_queue = max_queue;
    bus->max_lag_us = (int64_t)max_lag_ms * 1000;
    bus->last_published = last_seq;
    *out = bus;
    return HDX_OK;
}

void hdx_bus_free(struct hdx_bus *bus)
{
    if (!bus) return;
    while (bus->subs)
        hdx_bus_unsubscribe(bus, bus->subs);
    free(bus);
}

uint64_t hdx_bus_last_seq(const struct hdx_bus *bus)
{
    return bus->last_published;
}

size_t hdx_bus_count(const struct hdx_bus *bus)
{
    return bus->nsubs;
}

static int matches(const struct hdx_bus_filter *f, const struct hdx_bus_event *ev)
{
    if (ev->kind != (f->kind ? f->kind : HDX_KIND_HL7V2))
        return 0; /* subscribers get clinical messages; audit has its own access path */
    if (f->type[0] && strcmp(f->type, ev->type) != 0) return 0;
    if (f->sender[0] && strcmp(f->sender, ev->sender) != 0) return 0;
    if (f->has_patient &&
        (!ev->patient || sodium_memcmp(f->patient, ev->patient, HDX_BLIND_LEN) != 0))
        return 0;
    return !f->admit || f->admit(f->admit_arg, ev);
}

int hdx_bus_admit_scope(void *scope, const struct hdx_bus_event *ev)
{
    return hdx_scope_admits(scope, ev->sender, ev->type, ev->patient);
}

/* Header values are single tokens: a space, '=' or control byte would let a value forge
 * fields or whole lines of the stream, so such bytes are replaced (the parser and the CA
 * already refuse them; this is the last line of defence). */
static void header_token(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (in[i] > ' ' && in[i] < 0x7f && in[i] != '=') ? in[i] : '?';
    out[i] = 0;
}

/* A DICOM record's announcement: {"sop_class", "sop_instance", "study", "series",
 * "modality", "transfer_syntax", "wado"}, UIDs only (checked as UIDs, so nothing in it needs
 * escaping) and the modality reduced to its CS characters. Its length, or 0 when the record
 * does not parse (the Part 10 file was checked when it was stored). */
static size_t dicom_announcement(const uint8_t *p, size_t n, char *out, size_t cap)
{
    struct hdx_dcm_file f;
    struct hdx_ds_error err;
    struct hdx_ds_limits lim;
    struct hdx_dcm_keys k;
    int deflated = 0, rc;
    uint8_t *inflated = NULL;
    size_t len;
    if (hdx_dcm_file_parse(p, n, &f, &err) != HDX_OK) return 0;
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(f.ts, &deflated);
    const uint8_t *ds = p + f.dataset_off;
    len = n - f.dataset_off;
    if (deflated && hdx_ds_inflate(ds, len, (size_t)256 << 20, &inflated, &len) != HDX_OK) return 0;
    hdx_ds_limits_default(&lim);
    rc = hdx_dcm_extract(inflated ? inflated : ds, len, syn, &lim, &k, &err);
    if (inflated) {
        sodium_memzero(inflated, len);
        free(inflated);
    }
    char modality[17];
    size_t m = 0;
    for (size_t i = 0; rc == HDX_OK && k.modality[i] && m + 1 < sizeof(modality); i++)
        if ((k.modality[i] >= 'A' && k.modality[i] <= 'Z') ||
            (k.modality[i] >= '0' && k.modality[i] <= '9') || k.modality[i] == '_')
            modality[m++] = k.modality[i];
    modality[m] = 0;
    int w = -1;
    if (rc == HDX_OK && hdx_uid_valid(k.sop_class) && hdx_uid_valid(k.sop_instance) &&
        hdx_uid_valid(k.study_uid) && hdx_uid_valid(k.series_uid) && hdx_uid_valid(f.ts))
        w = snprintf(out, cap,
                     "{\"sop_class\":\"%s\",\"sop_instance\":\"%s\",\"study\":\"%s\","
                     "\"series\":\"%s\",\"modality\":\"%s\",\"transfer_syntax\":\"%s\","
                     "\"wado\":\"/dicomweb/studies/%s/series/%s/instances/%s\"}",
                     k.sop_class, k.sop_instance, k.study_uid, k.series_uid, modality, f.ts,
                     k.study_uid, k.series_uid, k.sop_instance);
    sodium_memzero(&k, sizeof(k)); /* the patient's name and id */
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}

static void deliver(struct hdx_bus *bus, struct hdx_bus_sub *sub, const struct hdx_bus_event *ev)
{
    char note[768];
    struct hdx_bus_event announced;
    if (ev->kind == HDX_KIND_DICOM) {
        announced = *ev;
        announced.body_len = dicom_announcement(ev->body, ev->body_len, note, sizeof(note));
        if (!announced.body_len) {
            hdx_error("dicom_announce_failed", "seq=%llu reason=\"the record does not parse\"",
                      (unsigned long long)ev->seq);
            return;
        }
        announced.body = (const uint8_t *)note;
        ev = &announced;
    }
    if (sub->sink->deliver) {
        sub->sink->deliver(sub->conn, ev);
        return;
    }
    char head[256], t[32], sender[HDX_SENDER_MAX + 1], type[HDX_TYPE_MAX + 1];
    hdx_format_time(ev->time_us, t, sizeof(t));
    header_token(ev->sender, sender, sizeof(sender));
    header_token(ev->type, type, sizeof(type));
    int n = ev->durable_us
                ? snprintf(head, sizeof(head),
                           "MSG seq=%llu time=%s sender=%s type=%s len=%zu durable=%lld\n",
                           (unsigned long long)ev->seq, t, sender, type, ev->body_len,
                           (long long)ev->durable_us)
                : snprintf(head, sizeof(head), "MSG seq=%llu time=%s sender=%s type=%s len=%zu\n",
                           (unsigned long long)ev->seq, t, sender, type, ev->body_len);
    if (n < 0 || (size_t)n >= sizeof(head)) return;
    sub->sink->write(sub->conn, head, (size_t)n);
    sub->sink->write(sub->conn, ev->body, ev->body_len);
    sub->sink->write(sub->conn, "\n", 1);
    if (sub->sink->disclosed) sub->sink->disclosed(sub->conn, ev->patient, ev->seq);
}

struct hdx_bus_sub *hdx_bus_subscribe(struct hdx_bus *bus, void *conn,
                                      const struct hdx_bus_filter *f, uint64_t after_seq)
{
    return hdx_bus_subscribe_sink(bus, conn, f, after_seq, NULL);
}

struct hdx_bus_sub *hdx_bus_subscribe_sink(struct hdx_bus *bus, void *conn,
                                           const struct hdx_bus_filter *f, uint64_t after_seq,
                                           const struct hdx_bus_sink *sink)
{
    struct hdx_bus_sub *sub = calloc(1, sizeof(*sub));
    if (!sub) return NULL;
    sub->sink = sink ? sink : &bus->sink;
    sub->conn = conn;
    sub->filter = *f;
    if (after_seq == UINT64_MAX) {
        sub->cursor = bus->last_published + 1;
        sub->mode = SUB_LIVE;
    } else {
        sub->cursor = after_seq + 1;
        sub->mode = SUB_REPLAY;
    }
    sub->next = bus->subs;
    if (bus->subs) bus->subs->prev = sub;
    bus->subs = sub;
    bus->nsubs++;
    return sub;
}

void hdx_bus_unsubscribe(struct hdx_bus *bus, struct hdx_bus_sub *sub)
{
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        bus->subs = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    bus->nsubs--;
    sodium_memzero(&sub->filter, sizeof(sub->filter));
    free(sub);
}

static void drop(struct hdx_bus *bus, struct hdx_bus_sub *sub, const char *reason)
{
    if (sub->dropped) return;
    sub->dropped = 1;
    sub->sink->drop(sub->conn, reason);
}

void hdx_bus_publish(struct hdx_bus *bus, const struct hdx_bus_event *ev)
{
    if (ev->seq > bus->last_published) bus->last_published = ev->seq;
    for (struct hdx_bus_sub *sub = bus->subs; sub; sub = sub->next) {
        if (sub->dropped || ev->seq < sub->cursor) continue;
        if (sub->mode == SUB_REPLAY) {
            hdx_bus_pump(bus, sub); /* bounded by the subscriber's queue */
            continue;
        }
        if (ev->seq > sub->cursor) {
            sub->mode = SUB_REPLAY; /* a gap: the store has what we missed */
            hdx_bus_pump(bus, sub);
            continue;
        }
        if (!matches(&sub->filter, ev)) {
            sub->cursor = ev->seq + 1;
            continue;
        }
        if (sub->sink->queued(sub->conn) > bus->max_queue) {
            /* Queue full: stop queueing and let it catch up from the store as it drains.
             * Memory stays bounded; only a reader that stays behind is dropped (tick). */
            sub->mode = SUB_REPLAY;
            if (!sub->behind_since_us) sub->behind_since_us = hdx_monotonic_us();
            continue;
        }
        sub->cursor = ev->seq + 1;
        deliver(bus, sub, ev);
    }
}

struct replay_ctx {
    struct hdx_bus *bus;
    struct hdx_bus_sub *sub;
    int error;
};

static int replay_one(void *arg, const struct hdx_record *r)
{
    struct replay_ctx *rc = arg;
    struct hdx_bus_sub *sub = rc->sub;
    struct hdx_bus_event ev = {r->seq,    r->time_us, r->kind,
                               r->sender, r->type,    hdx_record_has_patient(r) ? r->patient : NULL,
                               NULL,      0,          0};
    sub->cursor = r->seq + 1;
    if (!matches(&sub->filter, &ev)) return 0;
    uint8_t *pt = NULL;
    size_t len = 0;
    if (hdx_record_open(r, rc->bus->kr, &pt, &len) != HDX_OK) {
        hdx_error("replay_open_failed", "seq=%llu", (unsigned long long)r->seq);
        rc->error = 1;
        return 1;
    }
    ev.body = pt;
    ev.body_len = len;
    deliver(rc->bus, sub, &ev);
    sodium_memzero(pt, len);
    free(pt);
    return 0;
}

void hdx_bus_pump(struct hdx_bus *bus, struct hdx_bus_sub *sub)
{
    while (!sub->dropped && sub->mode == SUB_REPLAY) {
        if (sub->sink->queued(sub->conn) > bus->max_queue / 2)
            return; /* resume when the socket drains */
        struct hdx_store_filter f = {.from_seq = sub->cursor};
        struct replay_ctx ctx = {bus, sub, 0};
        long n = hdx_store_scan(bus->store, &f, REPLAY_CHUNK, replay_one, &ctx);
        if (n < 0 || ctx.error) {
            drop(bus, sub, "store-error");
            return;
        }
        if (n < REPLAY_CHUNK && sub->cursor > bus->last_published) {
            sub->mode = SUB_LIVE; /* caught up; the next publication continues the stream */
            sub->behind_since_us = 0;
        }
        if (n == REPLAY_CHUNK) return; /* yield to the event loop; the write callback pumps again */
        if (n < REPLAY_CHUNK && sub->mode == SUB_REPLAY)
            return; /* committed records not yet published: the next publish catches up */
    }
}

void hdx_bus_tick(struct hdx_bus *bus, int64_t now_us)
{
    for (struct hdx_bus_sub *sub = bus->subs; sub; sub = sub->next)
        if (!sub->dropped && sub->behind_since_us &&
            now_us - sub->behind_since_us > bus->max_lag_us)
            drop(bus, sub, "slow-consumer");
}

/* The request grammar is docs/SUBSCRIBE.md "Request". The line is parsed in place as
 * (pointer, length) spans, never as a C string: a NUL inside it must be refused, not silently
 * end it. Refusals name no client byte (why is logged, and a value may be a patient id). */
#define REQ_MAX 1023 /* bytes before the LF; longer lines never reach a filter */
#define PATIENT_MAX 199
#define AFTER_MAX (UINT64_MAX - 1) /* UINT64_MAX is the "live" sentinel (hdx_bus_subscribe) */

static const char *const req_keys[] = {"after", "type", "sender", "patient", "kind"};
enum req_key { KEY_AFTER, KEY_TYPE, KEY_SENDER, KEY_PATIENT, KEY_KIND, KEY_NONE };

static enum req_key req_key(const char *tok, size_t len, const char **val, size_t *vlen)
{
    for (int k = 0; k < KEY_NONE; k++) {
        size_t kl = strlen(req_keys[k]);
        if (len > kl && memcmp(tok, req_keys[k], kl) == 0 && tok[kl] == '=') {
            *val = tok + kl + 1;
            *vlen = len - kl - 1;
            return (enum req_key)k;
        }
    }
    return KEY_NONE;
}

/* Digit by digit, so that overflow is caught exactly and no sign, space or base prefix that
 * strtoull would take slips through. */
static int parse_after(const char *v, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    if (len == 0) return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (n > (AFTER_MAX - d) / 10) return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

static int copy_value(char *dst, size_t cap, const char *v, size_t len)
{
    if (len == 0 || len >= cap) return -1;
    memcpy(dst, v, len);
    dst[len] = 0;
    return 0;
}

static int apply_token(const char *tok, size_t len, const struct hdx_keyring *kr,
                       struct hdx_bus_filter *f, uint64_t *after, unsigned *seen, char *why,
                       size_t cap)
{
    const char *v = NULL;
    size_t vlen = 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)tok[i] >= 0x7f) {
            snprintf(why, cap, "parameters must be printable ASCII");
            return HDX_E_INVAL;
        }
    enum req_key k = req_key(tok, len, &v, &vlen);
    if (k == KEY_NONE) {
        snprintf(why, cap, "unknown parameter");
        return HDX_E_INVAL;
    }
    /* One value per key: with "last one wins", a client (or a proxy that appends) could not
     * tell which filter it got. */
    if (*seen & (1u << k)) {
        snprintf(why, cap, "duplicate parameter %s", req_keys[k]);
        return HDX_E_INVAL;
    }
    *seen |= 1u << k;
    switch (k) {
    case KEY_AFTER:
        if (parse_after(v, vlen, after) == 0) return HDX_OK;
        snprintf(why, cap, "after must be a decimal sequence number");
        return HDX_E_INVAL;
    case KEY_TYPE:
        if (copy_value(f->type, sizeof(f->type), v, vlen) == 0) return HDX_OK;
        break;
    case KEY_SENDER:
        if (copy_value(f->sender, sizeof(f->sender), v, vlen) == 0) return HDX_OK;
        break;
    case KEY_KIND:
        if (vlen == 3 && !memcmp(v, "hl7", 3)) {
            f->kind = HDX_KIND_HL7V2;
            return HDX_OK;
        }
        if (vlen == 5 && !memcmp(v, "dicom", 5)) {
            f->kind = HDX_KIND_DICOM;
            return HDX_OK;
        }
        snprintf(why, cap, "kind must be hl7 or dicom");
        return HDX_E_INVAL;
    case KEY_PATIENT:
        if (vlen == 0 || vlen > PATIENT_MAX || hdx_blind(kr, "patient", v, vlen, f->patient)) break;
        f->has_patient = 1;
        return HDX_OK;
    default:
        break;
    }
    snprintf(why, cap, "parameter value empty or too long");
    return HDX_E_INVAL;
}

static int parse_request(const char *line, size_t len, const struct hdx_keyring *kr,
                         struct hdx_bus_filter *f, uint64_t *after_seq, char *why, size_t why_cap)
{
    if (len > REQ_MAX) {
        snprintf(why, why_cap, "request too long");
        return HDX_E_INVAL;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] == 0x7f) {
            snprintf(why, why_cap, "control character in request");
            return HDX_E_INVAL;
        }
    if (len < 3 || memcmp(line, "SUB", 3) != 0 || (len > 3 && line[3] != ' ')) {
        snprintf(why, why_cap, "expected SUB");
        return HDX_E_INVAL;
    }
    unsigned seen = 0;
    size_t pos = 3;
    while (pos < len) {
        /* line[pos] is the space before a token. One space exactly: a run of spaces or a
         * trailing one is refused rather than guessed at, so the grammar has one spelling. */
        const char *tok = line + pos + 1;
        size_t rest = len - pos - 1;
        const char *sp = rest ? memchr(tok, ' ', rest) : NULL;
        size_t tl = sp ? (size_t)(sp - tok) : rest;
        if (tl == 0) {
            snprintf(why, why_cap, "parameters must be separated by one space");
            return HDX_E_INVAL;
        }
        int rc = apply_token(tok, tl, kr, f, after_seq, &seen, why, why_cap);
        if (rc != HDX_OK) return rc;
        pos += 1 + tl;
    }
    return HDX_OK;
}

int hdx_bus_parse_request(const char *line, size_t len, const struct hdx_keyring *kr,
                          struct hdx_bus_filter *f, uint64_t *after_seq, char *why, size_t why_cap)
{
    memset(f, 0, sizeof(*f));
    *after_seq = UINT64_MAX;
    int rc = parse_request(line, len, kr, f, after_seq, why, why_cap);
    if (rc != HDX_OK) {
        /* A refused request leaves no half-filled filter (nor a patient token) behind. */
        sodium_memzero(f, sizeof(*f));
        *after_seq = UINT64_MAX;
    }
    return rc;
}
