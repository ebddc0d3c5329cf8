/* fhir/subscription: see subscription.h. */
#include "fhir/subscription.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/search.h"

static int fail(char *path, size_t pcap, char *why, size_t wcap, const char *p, const char *w)
{
    if (pcap) snprintf(path, pcap, "%s", p);
    if (wcap) snprintf(why, wcap, "%s", w);
    return HDX_E_INVAL;
}

/* The extension of ext_array whose url is HDX_SUB_EXT name; its index into *at. */
static json_t *ext_find(const json_t *holder, const char *name, size_t from, size_t *at)
{
    json_t *exts = json_object_get(holder, "extension");
    char url[160];
    snprintf(url, sizeof(url), "%s%s", HDX_SUB_EXT, name);
    for (size_t i = from; i < json_array_size(exts); i++) {
        json_t *e = json_array_get(exts, i);
        const char *u = json_string_value(json_object_get(e, "url"));
        if (u && !strcmp(u, url)) {
            if (at) *at = i;
            return e;
        }
    }
    return NULL;
}

static int printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || n >= max) return 0;
    return n > 0;
}

static int filter_parse(const char *text, struct hdx_sub_spec *out, char *why, size_t wcap)
{
    static const char prefix[] = "Observation?";
    if (strncmp(text, prefix, sizeof(prefix) - 1) != 0) {
        snprintf(why, wcap, "a filter must read Observation?PARAM=VALUE");
        return HDX_E_INVAL;
    }
    struct hdx_fhir_qparam p[HDX_FHIR_QPARAMS_MAX];
    size_t n = 0;
    if (hdx_fhir_params_split(text + sizeof(prefix) - 1, p, HDX_FHIR_QPARAMS_MAX, &n) != 0 ||
        n == 0) {
        snprintf(why, wcap, "the filter's parameters are malformed");
        return HDX_E_INVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = p[i].value;
        if (!strcmp(p[i].name, "patient") || !strcmp(p[i].name, "subject")) {
            if (!strncmp(v, "Patient/", 8)) v += 8;
            if (!hdx_fhir_id_valid(v)) {
                snprintf(why, wcap, "patient must be Patient/ID");
                return HDX_E_INVAL;
            }
            if (out->patient_id[0] && strcmp(out->patient_id, v) != 0) {
                snprintf(why, wcap, "two different patients: no event could match");
                return HDX_E_INVAL;
            }
            snprintf(out->patient_id, sizeof(out->patient_id), "%s", v);
        } else if (!strcmp(p[i].name, "code")) {
            if (out->ncodes) {
                snprintf(why, wcap, "one code filter (list the codes with commas)");
                return HDX_E_INVAL;
            }
            const char *s = v;
            for (;;) {
                const char *comma = strchr(s, ',');
                size_t len = comma ? (size_t)(comma - s) : strlen(s);
                const char *bar = memchr(s, '|', len);
                if (!len || !bar || bar == s + len - 1 || len > HDX_SUB_CODE_MAX) {
                    snprintf(why, wcap, "a code must be SYSTEM|CODE or |CODE");
                    return HDX_E_INVAL;
                }
                if (out->ncodes == HDX_SUB_CODES_MAX) {
                    snprintf(why, wcap, "at most 16 codes");
                    return HDX_E_INVAL;
                }
                memcpy(out->codes[out->ncodes], s, len);
                out->codes[out->ncodes++][len] = 0;
                if (!comma) break;
                s = comma + 1;
            }
        } else {
            snprintf(why, wcap, "filter parameter %.39s is not supported (patient, code)",
                     p[i].name);
            return HDX_E_INVAL;
        }
    }
    return HDX_OK;
}

static int header_ok(const char *h)
{
    static const char *const refused[] = {
        "host", "content-length", "content-type", "connection", "transfer-encoding",
        "te",   "upgrade",        "expect"};
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || !printable(h, HDX_SUB_HEADER_MAX)) return 0;
    for (const char *s = h; s < colon; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-'))
            return 0;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strlen(refused[i]) == (size_t)(colon - h) && !strncasecmp(h, refused[i], colon - h))
            return 0;
    return 1;
}

int hdx_sub_parse(const json_t *sub, struct hdx_sub_spec *out, char *path, size_t pcap, char *why,
                  size_t wcap)
{
    memset(out, 0, sizeof(*out));
    const char *status = json_string_value(json_object_get(sub, "status"));
    if (!status) return fail(path, pcap, why, wcap, "Subscription.status", "status is required");
    if (!strcmp(status, "off"))
        out->off = 1;
    else if (strcmp(status, "requested") != 0 && strcmp(status, "active") != 0)
        return fail(path, pcap, why, wcap, "Subscription.status",
                    "a client sets status requested, active or off");
    const char *criteria = json_string_value(json_object_get(sub, "criteria"));
    if (!criteria || strcmp(criteria, HDX_SUB_TOPIC) != 0)
        return fail(path, pcap, why, wcap, "Subscription.criteria",
                    "criteria must be the topic " HDX_SUB_TOPIC);
    json_t *crit_ext = json_object_get(sub, "_criteria");
    size_t at = 0;
    for (json_t *e = ext_find(crit_ext, "backport-filter-criteria", 0, &at); e;
         e = ext_find(crit_ext, "backport-filter-criteria", at + 1, &at)) {
        const char *f = json_string_value(json_object_get(e, "valueString"));
        char w[128];
        if (!f || filter_parse(f, out, w, sizeof(w)) != HDX_OK)
            return fail(path, pcap, why, wcap, "Subscription.criteria.extension.valueString",
                        f ? w : "a filter is a valueString");
    }
    json_t *ch = json_object_get(sub, "channel");
    const char *type = json_string_value(json_object_get(ch, "type"));
    if (type && !strcmp(type, "rest-hook"))
        out->channel = HDX_SUB_REST_HOOK;
    else if (type && !strcmp(type, "websocket"))
        out->channel = HDX_SUB_WEBSOCKET;
    else
        return fail(path, pcap, why, wcap, "Subscription.channel.type",
                    "channel type must be rest-hook or websocket");
    const char *endpoint = json_string_value(json_object_get(ch, "endpoint"));
    if (out->channel == HDX_SUB_REST_HOOK) {
        if (!endpoint || strncmp(endpoint, "https://", 8) != 0 || strlen(endpoint) < 9 ||
            !printable(endpoint, HDX_SUB_ENDPOINT_MAX) || strpbrk(endpoint, " \"<>\\^`{|}"))
            return fail(path, pcap, why, wcap, "Subscription.channel.endpoint",
                        "a rest-hook endpoint is an https:// URL");
        snprintf(out->endpoint, sizeof(out->endpoint), "%s", endpoint);
    } else if (endpoint) {
        return fail(path, pcap, why, wcap, "Subscription.channel.endpoint",
                    "a websocket channel has no endpoint: bind with $get-ws-binding-token");
    }
    json_t *hdrs = json_object_get(ch, "header");
    if (hdrs && !json_is_array(hdrs))
        return fail(path, pcap, why, wcap, "Subscription.channel.header", "header is a list");
    if (json_array_size(hdrs) > 0 && out->channel != HDX_SUB_REST_HOOK)
        return fail(path, pcap, why, wcap, "Subscription.channel.header",
                    "headers are for a rest-hook");
    if (json_array_size(hdrs) > HDX_SUB_HEADERS_MAX)
        return fail(path, pcap, why, wcap, "Subscription.channel.header", "at most 4 headers");
    for (size_t i = 0; i < json_array_size(hdrs); i++) {
        const char *h = json_string_value(json_array_get(hdrs, i));
        if (!h || !header_ok(h))
            return fail(path, pcap, why, wcap, "Subscription.channel.header",
                        "a header is NAME: VALUE, printable, and not one hdx sets itself");
        snprintf(out->headers[out->nheaders++], HDX_SUB_HEADER_MAX + 1, "%s", h);
    }
    const char *payload = json_string_value(json_object_get(ch, "payload"));
    out->content = HDX_SUB_EMPTY;
    if (payload) {
        if (strcmp(payload, "application/fhir+json") != 0 && strcmp(payload, "application/json"))
            return fail(path, pcap, why, wcap, "Subscription.channel.payload",
                        "payload must be application/fhir+json");
        out->content = HDX_SUB_ID_ONLY;
        json_t *e = ext_find(json_object_get(ch, "_payload"), "backport-payload-content", 0, NULL);
        if (e) {
            const char *c = json_string_value(json_object_get(e, "valueCode"));
            if (c && !strcmp(c, "empty"))
                out->content = HDX_SUB_EMPTY;
            else if (c && !strcmp(c, "id-only"))
                out->content = HDX_SUB_ID_ONLY;
            else if (c && !strcmp(c, "full-resource"))
                out->content = HDX_SUB_FULL;
            else
                return fail(path, pcap, why, wcap, "Subscription.channel.payload.extension",
                            "payload content must be empty, id-only or full-resource");
        }
    }
    json_t *e = ext_find(ch, "backport-heartbeat-period", 0, NULL);
    if (e) {
        json_t *v = json_object_get(e, "valueUnsignedInt");
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > HDX_SUB_HEARTBEAT_MAX)
            return fail(path, pcap, why, wcap, "Subscription.channel.extension",
                        "heartbeat period is 0 to 3600 seconds");
        out->heartbeat_s = (uint32_t)json_integer_value(v);
    }
    out->max_count = 1;
    e = ext_find(ch, "backport-max-count", 0, NULL);
    if (e) {
        json_t *v = json_object_get(e, "valuePositiveInt");
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > HDX_SUB_MAX_COUNT_MAX)
            return fail(path, pcap, why, wcap, "Subscription.channel.extension",
                        "max count is 1 to 100");
        out->max_count = (uint32_t)json_integer_value(v);
    }
    return HDX_OK;
}

/* 1 when every code of a is one of b's */
static int codes_within(const struct hdx_sub_spec *a, const struct hdx_sub_spec *b)
{
    for (size_t i = 0; i < a->ncodes; i++) {
        size_t j = 0;
        while (j < b->ncodes && strcmp(a->codes[i], b->codes[j]) != 0)
            j++;
        if (j == b->ncodes) return 0;
    }
    return 1;
}

int hdx_sub_same_filter(const struct hdx_sub_spec *a, const struct hdx_sub_spec *b)
{
    if (strcmp(a->patient_id, b->patient_id) != 0 || a->ncodes != b->ncodes) return 0;
    /* both ways: a code may be listed twice, so equal counts do not make one way enough */
    return codes_within(a, b) && codes_within(b, a);
}

const char *hdx_sub_note_name(enum hdx_sub_note n)
{
    switch (n) {
    case HDX_SUB_HANDSHAKE:
        return "handshake";
    case HDX_SUB_HEARTBEAT:
        return "heartbeat";
    case HDX_SUB_EVENT:
        return "event-notification";
    case HDX_SUB_QUERY_STATUS:
        return "query-status";
    case HDX_SUB_QUERY_EVENT:
        return "query-event";
    }
    return "heartbeat";
}

static json_t *param(const char *name, const char *vkey, json_t *value)
{
    return json_pack("{s:s, s:o}", "name", name, vkey, value);
}

json_t *hdx_sub_bundle(const struct hdx_sub_status *st, const struct hdx_sub_event *ev, size_t n)
{
    char ref[HDX_FHIR_ID_MAX + 16], num[24], now[40], uuid[33];
    snprintf(ref, sizeof(ref), "Subscription/%s", st->sub_id);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)st->events_since_start);
    hdx_fhir_instant(st->now_us, now, sizeof(now));
    json_t *params = json_array();
    json_array_append_new(
        params, param("subscription", "valueReference", json_pack("{s:s}", "reference", ref)));
    json_array_append_new(params, param("topic", "valueCanonical", json_string(HDX_SUB_TOPIC)));
    json_array_append_new(params, param("status", "valueCode", json_string(st->status)));
    json_array_append_new(params,
                          param("type", "valueCode", json_string(hdx_sub_note_name(st->note))));
    json_array_append_new(
        params, param("events-since-subscription-start", "valueString", json_string(num)));
    json_t *entries = json_array();
    for (size_t i = 0; i < n && (st->note == HDX_SUB_EVENT || st->note == HDX_SUB_QUERY_EVENT);
         i++) {
        char en[24], ts[40], focus[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 24];
        snprintf(en, sizeof(en), "%llu", (unsigned long long)ev[i].number);
        hdx_fhir_instant(ev[i].time_us, ts, sizeof(ts));
        json_t *parts = json_pack("[{s:s, s:s}, {s:s, s:s}]", "name", "event-number", "valueString",
                                  en, "name", "timestamp", "valueInstant", ts);
        snprintf(focus, sizeof(focus), "%s/%s/_history/%u", ev[i].type, ev[i].id, ev[i].version);
        if (st->content != HDX_SUB_EMPTY && ev[i].type[0])
            json_array_append_new(
                parts, param("focus", "valueReference", json_pack("{s:s}", "reference", focus)));
        json_array_append_new(params,
                              json_pack("{s:s, s:o}", "name", "notification-event", "part", parts));
        if (st->content == HDX_SUB_FULL && ev[i].type[0] && ev[i].resource) {
            /* the base is the caller's, of any length: a fixed buffer would cut the id off */
            size_t ul = strlen(st->base_url) + strlen(ev[i].type) + strlen(ev[i].id) + 3;
            char *url = malloc(ul);
            if (!url) {
                json_decref(params);
                json_decref(entries);
                return NULL;
            }
            snprintf(url, ul, "%s/%s/%s", st->base_url, ev[i].type, ev[i].id);
            char rurl[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 2];
            snprintf(rurl, sizeof(rurl), "%s/%s", ev[i].type, ev[i].id);
            json_array_append_new(entries, json_pack("{s:s, s:O, s:{s:s, s:s}, s:{s:s}}", "fullUrl",
                                                     url, "resource", ev[i].resource, "request",
                                                     "method", "PUT", "url", rurl, "response",
                                                     "status", ev[i].version > 1 ? "200" : "201"));
            free(url);
        }
    }
    if (st->error)
        json_array_append_new(
            params, param("error", "valueCodeableConcept", json_pack("{s:s}", "text", st->error)));
    json_t *status =
        json_pack("{s:s, s:{s:[s]}, s:o}", "resourceType", "Parameters", "meta", "profile",
                  "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                  "backport-subscription-status-r4",
                  "parameter", params);
    hdx_fhir_new_id(uuid);
    char full[48];
    snprintf(full, sizeof(full), "urn:uuid:%.8s-%.4s-%.4s-%.4s-%.12s", uuid, uuid + 8, uuid + 12,
             uuid + 16, uuid + 20);
    char surl[HDX_FHIR_ID_MAX + 32];
    snprintf(surl, sizeof(surl), "%s/$status", ref);
    int search = st->note == HDX_SUB_QUERY_STATUS;
    json_t *first =
        search ? json_pack("{s:s, s:o, s:{s:s}}", "fullUrl", full, "resource", status, "search",
                           "mode", "match")
               : json_pack("{s:s, s:o, s:{s:s, s:s}, s:{s:s}}", "fullUrl", full, "resource", status,
                           "request", "method", "GET", "url", surl, "response", "status", "200");
    if (!first || json_array_insert_new(entries, 0, first) != 0) {
        json_decref(entries);
        return NULL;
    }
    hdx_fhir_new_id(uuid);
    json_t *b =
        json_pack("{s:s, s:s, s:{s:[s]}, s:s, s:s, s:o}", "resourceType", "Bundle", "id", uuid,
                  "meta", "profile",
                  search ? "http://hl7.org/fhir/StructureDefinition/Bundle"
                         : "http://hl7.org/fhir/uv/subscriptions-backport/"
                           "StructureDefinition/backport-subscription-notification-r4",
                  "type", search ? "searchset" : "history", "timestamp", now, "entry", entries);
    if (b && search) json_object_set_new(b, "total", json_integer(1));
    return b;
}

/* ---------- the same Bundle as text, for the fan-out ---------- */

struct text {
    char *p;
    size_t len, cap;
    int failed;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->failed = 1;
            return;
        }
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

static void puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* A JSON string: quotes, backslashes and control bytes escaped (the rest is ASCII or the
 * caller's UTF-8, as jansson would write it). */
static void put_str(struct text *t, const char *s)
{
    put(t, "\"", 1);
    for (const char *r = s; *r; r++) {
        unsigned char ch = (unsigned char)*r;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            put(t, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            put(t, esc, 6);
        } else {
            put(t, r, 1);
        }
    }
    put(t, "\"", 1);
}

static void put_param(struct text *t, const char *name, const char *vkey, const char *value)
{
    puts_(t, ",{\"name\":");
    put_str(t, name);
    puts_(t, ",\"");
    puts_(t, vkey);
    puts_(t, "\":");
    put_str(t, value);
    puts_(t, "}");
}

char *hdx_sub_bundle_text(const struct hdx_sub_status *st, const struct hdx_sub_event *ev, size_t n,
                          size_t *len)
{
    if (st->content == HDX_SUB_FULL) return NULL;
    struct text t = {0};
    char ref[HDX_FHIR_ID_MAX + 16], num[24], now[40], uuid[33], full[48];
    snprintf(ref, sizeof(ref), "Subscription/%s", st->sub_id);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)st->events_since_start);
    hdx_fhir_instant(st->now_us, now, sizeof(now));
    int search = st->note == HDX_SUB_QUERY_STATUS;
    hdx_fhir_new_id(uuid);
    puts_(&t, "{\"resourceType\":\"Bundle\",\"id\":");
    put_str(&t, uuid);
    puts_(&t, search
                  ? ",\"meta\":{\"profile\":[\"http://hl7.org/fhir/StructureDefinition/Bundle\"]},"
                    "\"type\":\"searchset\""
                  : ",\"meta\":{\"profile\":[\"" HDX_SUB_EXT
                    "backport-subscription-notification-r4\"]},\"type\":\"history\"");
    puts_(&t, ",\"timestamp\":");
    put_str(&t, now);
    hdx_fhir_new_id(uuid);
    snprintf(full, sizeof(full), "urn:uuid:%.8s-%.4s-%.4s-%.4s-%.12s", uuid, uuid + 8, uuid + 12,
             uuid + 16, uuid + 20);
    puts_(&t, ",\"entry\":[{\"fullUrl\":");
    put_str(&t, full);
    puts_(&t, ",\"resource\":{\"resourceType\":\"Parameters\",\"meta\":{\"profile\":[\"" HDX_SUB_EXT
              "backport-subscription-status-r4\"]},\"parameter\":[{\"name\":\"subscription\","
              "\"valueReference\":{\"reference\":");
    put_str(&t, ref);
    puts_(&t, "}}");
    put_param(&t, "topic", "valueCanonical", HDX_SUB_TOPIC);
    put_param(&t, "status", "valueCode", st->status);
    put_param(&t, "type", "valueCode", hdx_sub_note_name(st->note));
    put_param(&t, "events-since-subscription-start", "valueString", num);
    for (size_t i = 0; i < n && (st->note == HDX_SUB_EVENT || st->note == HDX_SUB_QUERY_EVENT);
         i++) {
        char en[24], ts[40], focus[HDX_FHIR_TYPE_MAX + HDX_FHIR_ID_MAX + 24];
        snprintf(en, sizeof(en), "%llu", (unsigned long long)ev[i].number);
        hdx_fhir_instant(ev[i].time_us, ts, sizeof(ts));
        puts_(&t, ",{\"name\":\"notification-event\",\"part\":[{\"name\":\"event-number\","
                  "\"valueString\":");
        put_str(&t, en);
        puts_(&t, "},{\"name\":\"timestamp\",\"valueInstant\":");
        put_str(&t, ts);
        puts_(&t, "}");
        if (st->content != HDX_SUB_EMPTY && ev[i].type[0]) {
            snprintf(focus, sizeof(focus), "%s/%s/_history/%u", ev[i].type, ev[i].id,
                     ev[i].version);
            puts_(&t, ",{\"name\":\"focus\",\"valueReference\":{\"reference\":");
            put_str(&t, focus);
            puts_(&t, "}}");
        }
        puts_(&t, "]}");
    }
    if (st->error) {
        puts_(&t, ",{\"name\":\"error\",\"valueCodeableConcept\":{\"text\":");
        put_str(&t, st->error);
        puts_(&t, "}}");
    }
    puts_(&t, "]}");
    if (search) {
        puts_(&t, ",\"search\":{\"mode\":\"match\"}}],\"total\":1}");
    } else {
        puts_(&t, ",\"request\":{\"method\":\"GET\",\"url\":");
        char surl[HDX_FHIR_ID_MAX + 32];
        snprintf(surl, sizeof(surl), "%s/$status", ref);
        put_str(&t, surl);
        puts_(&t, "},\"response\":{\"status\":\"200\"}}]}");
    }
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
