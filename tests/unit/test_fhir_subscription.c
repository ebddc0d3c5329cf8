/* test_fhir_subscription: FHIR R4 Subscriptions as the R5 Backport IG defines them
 * (fhir/subscription.h). Proves: a websocket Subscription with patient and code filters,
 * heartbeat, max-count and full-resource payload, and a rest-hook with an https endpoint and
 * headers, parse into every field (and the defaults when the optional parts are left out, and
 * the bounds themselves are accepted); every refusal of hdx_sub_parse gives HDX_E_INVAL with the
 * exact path and a reason; hdx_sub_same_filter; and hdx_sub_bundle for every note type: Bundle
 * type, the status Parameters in order, event numbers, focus by content and for refused events,
 * full-resource entries and the error parameter.
 * Inputs are written with ' for " (see load). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/subscription.h"

/* JSON with ' for " (no test value needs a quote) */
static json_t *load(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'') *p = '"';
    json_error_t err;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &err);
    if (!j) fprintf(stderr, "bad test JSON: %s: %s\n", err.text, s);
    assert_non_null(j);
    free(s);
    return j;
}

#define EXT HDX_SUB_EXT
#define WS_FILTER "Observation?patient=Patient/pat-1&code=http://loinc.org|8867-4,|8310-5"

/* websocket, patient and two codes, full-resource, heartbeat 60, max-count 10 */
static const char ws_text[] =
    "{'resourceType':'Subscription','status':'requested','reason':'vitals',"
    "'criteria':'" HDX_SUB_TOPIC "',"
    "'_criteria':{'extension':[{'url':'" EXT "backport-filter-criteria',"
    "'valueString':'" WS_FILTER "'}]},"
    "'channel':{'type':'websocket','payload':'application/fhir+json',"
    "'_payload':{'extension':[{'url':'" EXT "backport-payload-content',"
    "'valueCode':'full-resource'}]},"
    "'extension':[{'url':'" EXT "backport-heartbeat-period','valueUnsignedInt':60},"
    "{'url':'" EXT "backport-max-count','valuePositiveInt':10}]}}";

/* rest-hook, no filter, two headers, id-only */
static const char rh_text[] =
    "{'resourceType':'Subscription','status':'active','criteria':'" HDX_SUB_TOPIC "',"
    "'channel':{'type':'rest-hook','endpoint':'https://receiver.example.org/hook?x=1',"
    "'header':['Authorization: Bearer abc123','X-Tenant: ward-3'],"
    "'payload':'application/fhir+json',"
    "'_payload':{'extension':[{'url':'" EXT "backport-payload-content','valueCode':'id-only'}]}}}";

static json_t *ws(void)
{
    return load(ws_text);
}

static json_t *rh(void)
{
    return load(rh_text);
}

static json_t *chan(json_t *sub)
{
    json_t *c = json_object_get(sub, "channel");
    assert_non_null(c);
    return c;
}

/* sets the one filter of sub to f */
static void set_filter(json_t *sub, const char *f)
{
    json_t *e = json_pack("{s:[{s:s+, s:s}]}", "extension", "url", EXT, "backport-filter-criteria",
                          "valueString", f);
    assert_non_null(e);
    assert_int_equal(json_object_set_new(sub, "_criteria", e), 0);
}

/* the channel extension named name gets value */
static void set_chan_ext(json_t *sub, const char *name, const char *vkey, json_t *value)
{
    json_t *exts = json_object_get(chan(sub), "extension");
    for (size_t i = 0; i < json_array_size(exts); i++) {
        json_t *e = json_array_get(exts, i);
        const char *u = json_string_value(json_object_get(e, "url"));
        if (u && strlen(u) > strlen(EXT) && !strcmp(u + strlen(EXT), name)) {
            assert_int_equal(json_object_set_new(e, vkey, value), 0);
            return;
        }
    }
    fail_msg("no channel extension %s", name);
}

static void expect_ok(const json_t *sub, struct hdx_sub_spec *spec)
{
    char path[128] = "x", why[128] = "x";
    int rc = hdx_sub_parse(sub, spec, path, sizeof(path), why, sizeof(why));
    if (rc != HDX_OK) fprintf(stderr, "refused: %s: %s\n", path, why);
    assert_int_equal(rc, HDX_OK);
}

/* refused at want_path; why non-empty and, when want_why, contains it; takes sub */
static void expect_bad(json_t *sub, const char *want_path, const char *want_why)
{
    struct hdx_sub_spec spec;
    char path[128] = "", why[128] = "";
    int rc = hdx_sub_parse(sub, &spec, path, sizeof(path), why, sizeof(why));
    if (rc != HDX_E_INVAL || strcmp(path, want_path) != 0 || (want_why && !strstr(why, want_why)))
        fprintf(stderr, "want %s: %s, got rc %d %s: %s\n", want_path, want_why ? want_why : "*", rc,
                path, why);
    assert_int_equal(rc, HDX_E_INVAL);
    assert_string_equal(path, want_path);
    assert_true(why[0] != '\0');
    if (want_why) assert_non_null(strstr(why, want_why));
    json_decref(sub);
}

static void test_parse_websocket(void **state)
{
    struct hdx_sub_spec s;
    json_t *j = ws();
    memset(&s, 0xa5, sizeof(s));
    expect_ok(j, &s);
    assert_int_equal(s.channel, HDX_SUB_WEBSOCKET);
    assert_int_equal(s.content, HDX_SUB_FULL);
    assert_int_equal(s.off, 0);
    assert_string_equal(s.endpoint, "");
    assert_int_equal(s.nheaders, 0);
    assert_string_equal(s.patient_id, "pat-1");
    assert_int_equal(s.ncodes, 2);
    assert_string_equal(s.codes[0], "http://loinc.org|8867-4");
    assert_string_equal(s.codes[1], "|8310-5");
    assert_int_equal(s.heartbeat_s, 60);
    assert_int_equal(s.max_count, 10);
    json_decref(j);
}

static void test_parse_rest_hook(void **state)
{
    struct hdx_sub_spec s;
    json_t *j = rh();
    expect_ok(j, &s);
    assert_int_equal(s.channel, HDX_SUB_REST_HOOK);
    assert_int_equal(s.content, HDX_SUB_ID_ONLY);
    assert_int_equal(s.off, 0);
    assert_string_equal(s.endpoint, "https://receiver.example.org/hook?x=1");
    assert_int_equal(s.nheaders, 2);
    assert_string_equal(s.headers[0], "Authorization: Bearer abc123");
    assert_string_equal(s.headers[1], "X-Tenant: ward-3");
    assert_string_equal(s.patient_id, "");
    assert_int_equal(s.ncodes, 0);
    assert_int_equal(s.heartbeat_s, 0);
    assert_int_equal(s.max_count, 1); /* the default */
    json_decref(j);
}

static void test_parse_defaults_and_bounds(void **state)
{
    struct hdx_sub_spec s;
    /* status off; no payload: empty; subject= without Patient/ */
    json_t *j = rh();
    json_object_set_new(j, "status", json_string("off"));
    json_object_del(chan(j), "payload");
    json_object_del(chan(j), "_payload");
    set_filter(j, "Observation?subject=pat-2");
    expect_ok(j, &s);
    assert_int_equal(s.off, 1);
    assert_int_equal(s.content, HDX_SUB_EMPTY);
    assert_string_equal(s.patient_id, "pat-2");
    json_decref(j);

    /* payload without the content extension: id-only; application/json too */
    j = rh();
    json_object_del(chan(j), "_payload");
    json_object_set_new(chan(j), "payload", json_string("application/json"));
    expect_ok(j, &s);
    assert_int_equal(s.content, HDX_SUB_ID_ONLY);
    json_decref(j);

    /* the same patient twice is one patient */
    j = ws();
    set_filter(j, "Observation?patient=Patient/p&subject=p");
    expect_ok(j, &s);
    assert_string_equal(s.patient_id, "p");
    json_decref(j);

    /* 16 codes, 4 headers, heartbeat 3600, max-count 100 and 1 */
    char f[1024] = "Observation?code=";
    for (int i = 0; i < HDX_SUB_CODES_MAX; i++)
        snprintf(f + strlen(f), sizeof(f) - strlen(f), "%ss|c%d", i ? "," : "", i);
    j = ws();
    set_filter(j, f);
    set_chan_ext(j, "backport-heartbeat-period", "valueUnsignedInt", json_integer(3600));
    set_chan_ext(j, "backport-max-count", "valuePositiveInt", json_integer(100));
    expect_ok(j, &s);
    assert_int_equal(s.ncodes, 16);
    assert_string_equal(s.codes[15], "s|c15");
    assert_int_equal(s.heartbeat_s, 3600);
    assert_int_equal(s.max_count, 100);
    set_chan_ext(j, "backport-max-count", "valuePositiveInt", json_integer(1));
    set_chan_ext(j, "backport-heartbeat-period", "valueUnsignedInt", json_integer(0));
    expect_ok(j, &s);
    assert_int_equal(s.max_count, 1);
    assert_int_equal(s.heartbeat_s, 0);
    json_decref(j);

    j = rh();
    json_object_set_new(chan(j), "header",
                        json_pack("[s,s,s,s]", "A: 1", "B: 2", "C: 3", "D-E: 4"));
    expect_ok(j, &s);
    assert_int_equal(s.nheaders, 4);
    assert_string_equal(s.headers[3], "D-E: 4");
    json_decref(j);
}

#define FPATH "Subscription.criteria.extension.valueString"

static void test_parse_refusals(void **state)
{
    json_t *j;

    j = ws();
    json_object_del(j, "status");
    expect_bad(j, "Subscription.status", "required");
    j = ws();
    json_object_set_new(j, "status", json_string("error"));
    expect_bad(j, "Subscription.status", NULL);

    j = ws();
    json_object_set_new(j, "criteria", json_string("urn:hdx:SubscriptionTopic:labs"));
    expect_bad(j, "Subscription.criteria", NULL);
    j = ws();
    json_object_del(j, "criteria");
    expect_bad(j, "Subscription.criteria", NULL);

    j = ws();
    set_filter(j, "Patient?_id=pat-1");
    expect_bad(j, FPATH, "Observation?");
    j = ws();
    set_filter(j, "Observation?date=ge2024-01-01");
    expect_bad(j, FPATH, "not supported");
    j = ws();
    set_filter(j, "Observation?patient=Patient/a&patient=Patient/b");
    expect_bad(j, FPATH, "two different patients");
    j = ws();
    set_filter(j, "Observation?code=8867-4");
    expect_bad(j, FPATH, "SYSTEM|CODE");
    char f[1024] = "Observation?code=";
    for (int i = 0; i < HDX_SUB_CODES_MAX + 1; i++)
        snprintf(f + strlen(f), sizeof(f) - strlen(f), "%ss|c%d", i ? "," : "", i);
    j = ws();
    set_filter(j, f);
    expect_bad(j, FPATH, "at most 16 codes");

    j = ws();
    json_object_set_new(chan(j), "type", json_string("email"));
    expect_bad(j, "Subscription.channel.type", NULL);

    j = rh();
    json_object_del(chan(j), "endpoint");
    expect_bad(j, "Subscription.channel.endpoint", "https://");
    j = rh();
    json_object_set_new(chan(j), "endpoint", json_string("http://receiver.example.org/hook"));
    expect_bad(j, "Subscription.channel.endpoint", "https://");
    j = rh();
    json_object_set_new(chan(j), "endpoint", json_string("https://receiver.example.org/a b"));
    expect_bad(j, "Subscription.channel.endpoint", "https://");
    j = ws();
    json_object_set_new(chan(j), "endpoint", json_string("wss://receiver.example.org/ws"));
    expect_bad(j, "Subscription.channel.endpoint", "websocket");

    j = ws();
    json_object_set_new(chan(j), "header", json_pack("[s]", "X-A: 1"));
    expect_bad(j, "Subscription.channel.header", "rest-hook");
    j = rh();
    json_object_set_new(chan(j), "header",
                        json_pack("[s,s,s,s,s]", "A: 1", "B: 2", "C: 3", "D: 4", "E: 5"));
    expect_bad(j, "Subscription.channel.header", "at most 4");
    j = rh();
    json_object_set_new(chan(j), "header", json_pack("[s]", "Host: evil.example.org"));
    expect_bad(j, "Subscription.channel.header", "NAME: VALUE");
    j = rh();
    json_object_set_new(chan(j), "header", json_pack("[s]", "host: evil.example.org"));
    expect_bad(j, "Subscription.channel.header", NULL);
    j = rh();
    json_object_set_new(chan(j), "header", json_pack("[s]", "X-A: 1\r\nX-Injected: 2"));
    expect_bad(j, "Subscription.channel.header", NULL);

    j = rh();
    json_object_set_new(chan(j), "payload", json_string("text/plain"));
    expect_bad(j, "Subscription.channel.payload", NULL);
    j = ws();
    json_t *pc =
        json_array_get(json_object_get(json_object_get(chan(j), "_payload"), "extension"), 0);
    json_object_set_new(pc, "valueCode", json_string("bogus"));
    expect_bad(j, "Subscription.channel.payload.extension", NULL);

    j = ws();
    set_chan_ext(j, "backport-heartbeat-period", "valueUnsignedInt", json_integer(3601));
    expect_bad(j, "Subscription.channel.extension", "heartbeat");
    j = ws();
    set_chan_ext(j, "backport-max-count", "valuePositiveInt", json_integer(0));
    expect_bad(j, "Subscription.channel.extension", "max count");
    j = ws();
    set_chan_ext(j, "backport-max-count", "valuePositiveInt", json_integer(101));
    expect_bad(j, "Subscription.channel.extension", "max count");
}

static void test_refusal_leaves_no_client_bytes(void **state)
{
    /* the reason is fixed text: a bad patient value does not reach it */
    json_t *j = ws();
    set_filter(j, "Observation?patient=Patient/Smith%20John");
    struct hdx_sub_spec s;
    char path[128], why[128];
    assert_int_equal(hdx_sub_parse(j, &s, path, sizeof(path), why, sizeof(why)), HDX_E_INVAL);
    assert_string_equal(path, FPATH);
    assert_null(strstr(why, "Smith"));
    json_decref(j);
}

static void spec_with(struct hdx_sub_spec *s, const char *patient, size_t n, const char **codes)
{
    memset(s, 0, sizeof(*s));
    s->channel = HDX_SUB_WEBSOCKET;
    snprintf(s->patient_id, sizeof(s->patient_id), "%s", patient);
    s->ncodes = n;
    for (size_t i = 0; i < n; i++)
        snprintf(s->codes[i], sizeof(s->codes[i]), "%s", codes[i]);
}

static void test_same_filter(void **state)
{
    const char *ab[] = {"l|a", "l|b"}, *ba[] = {"l|b", "l|a"}, *abc[] = {"l|a", "l|b", "l|c"};
    struct hdx_sub_spec x, y;
    spec_with(&x, "p1", 2, ab);
    spec_with(&y, "p1", 2, ba);
    y.channel = HDX_SUB_REST_HOOK; /* the channel may change */
    y.max_count = 7;
    assert_int_equal(hdx_sub_same_filter(&x, &y), 1);
    assert_int_equal(hdx_sub_same_filter(&y, &x), 1);
    spec_with(&y, "p2", 2, ba);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    spec_with(&y, "", 2, ba);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    spec_with(&y, "p1", 3, abc);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    assert_int_equal(hdx_sub_same_filter(&y, &x), 0);
    spec_with(&y, "p1", 0, NULL);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    spec_with(&x, "", 0, NULL);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    spec_with(&y, "", 0, NULL);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 1);
    /* same count, different code */
    const char *ac[] = {"l|a", "l|c"};
    spec_with(&x, "p1", 2, ab);
    spec_with(&y, "p1", 2, ac);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    /* regression: a code listed twice; a version could change x|a,x|a into x|a,x|b, which was
     * taken for the same filter (only a's codes were looked for in b's) */
    const char *aa[] = {"l|a", "l|a"};
    spec_with(&x, "p1", 2, aa);
    spec_with(&y, "p1", 2, ab);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 0);
    assert_int_equal(hdx_sub_same_filter(&y, &x), 0);
    const char *aab[] = {"l|a", "l|a", "l|b"}, *abb[] = {"l|a", "l|b", "l|b"};
    spec_with(&x, "p1", 3, aab);
    spec_with(&y, "p1", 3, abb);
    assert_int_equal(hdx_sub_same_filter(&x, &y), 1); /* the same codes: the same events */
}

/* ---- hdx_sub_bundle ---- */

#define BASE "https://hdx.example.org/fhir"

static json_t *obs;

static void events(struct hdx_sub_event ev[2])
{
    memset(ev, 0, 2 * sizeof(*ev));
    ev[0].number = 7;
    ev[0].time_us = 1714558830123456LL;
    snprintf(ev[0].type, sizeof(ev[0].type), "Observation");
    snprintf(ev[0].id, sizeof(ev[0].id), "obs-1");
    ev[0].version = 2;
    ev[0].resource = obs;
    ev[1].number = 8; /* refused: number and time only */
    ev[1].time_us = 1714558831000000LL;
}

static struct hdx_sub_status status(enum hdx_sub_note note, enum hdx_sub_content c)
{
    struct hdx_sub_status st = {.base_url = BASE,
                                .sub_id = "sub-1",
                                .status = "active",
                                .note = note,
                                .events_since_start = 12345678901ULL,
                                .content = c,
                                .error = NULL,
                                .now_us = 1714558832000000LL};
    return st;
}

static json_t *params_of(const json_t *b)
{
    json_t *p = json_object_get(json_array_get(json_object_get(b, "entry"), 0), "resource");
    assert_string_equal(json_string_value(json_object_get(p, "resourceType")), "Parameters");
    json_t *a = json_object_get(p, "parameter");
    assert_true(json_is_array(a));
    return a;
}

static const char *pstr(const json_t *params, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(params, i), key));
}

/* the part of a notification-event named name, or NULL */
static json_t *part(const json_t *ne, const char *name)
{
    json_t *parts = json_object_get(ne, "part");
    for (size_t i = 0; i < json_array_size(parts); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(parts, i), "name")), name))
            return json_array_get(parts, i);
    return NULL;
}

/* the common head: Bundle type, profile, first entry, the five leading parameters */
static json_t *check_head(const json_t *b, const char *type, const char *note_name)
{
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "resourceType")), "Bundle");
    assert_string_equal(json_string_value(json_object_get(b, "type")), type);
    assert_int_equal(strlen(json_string_value(json_object_get(b, "id"))), 32);
    assert_string_equal(json_string_value(json_object_get(b, "timestamp")),
                        "2024-05-01T10:20:32.000000Z");
    json_t *first = json_array_get(json_object_get(b, "entry"), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(first, "fullUrl")), "urn:uuid:", 9),
                     0);
    assert_int_equal(strlen(json_string_value(json_object_get(first, "fullUrl"))), 9 + 36);
    if (!strcmp(type, "searchset")) {
        assert_int_equal(json_integer_value(json_object_get(b, "total")), 1);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(first, "search"), "mode")), "match");
        assert_null(json_object_get(first, "request"));
    } else {
        assert_null(json_object_get(b, "total"));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(first, "request"), "url")),
            "Subscription/sub-1/$status");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(first, "request"), "method")), "GET");
    }
    json_t *p = params_of(b);
    static const char *const names[] = {"subscription", "topic", "status", "type",
                                        "events-since-subscription-start"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(pstr(p, i, "name"), names[i]);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(p, 0), "valueReference"), "reference")),
                        "Subscription/sub-1");
    assert_string_equal(pstr(p, 1, "valueCanonical"), HDX_SUB_TOPIC);
    assert_string_equal(pstr(p, 2, "valueCode"), "active");
    assert_string_equal(pstr(p, 3, "valueCode"), note_name);
    assert_string_equal(pstr(p, 4, "valueString"), "12345678901");
    return p;
}

static void test_bundle_no_events(void **state)
{
    static const struct {
        enum hdx_sub_note note;
        const char *type, *name;
    } cases[] = {{HDX_SUB_HANDSHAKE, "history", "handshake"},
                 {HDX_SUB_HEARTBEAT, "history", "heartbeat"},
                 {HDX_SUB_QUERY_STATUS, "searchset", "query-status"}};
    struct hdx_sub_event ev[2];
    events(ev);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hdx_sub_status st = status(cases[i].note, HDX_SUB_FULL);
        /* events handed in are not listed for these notes */
        json_t *b = hdx_sub_bundle(&st, ev, 2);
        json_t *p = check_head(b, cases[i].type, cases[i].name);
        assert_int_equal(json_array_size(p), 5);
        assert_int_equal(json_array_size(json_object_get(b, "entry")), 1);
        json_decref(b);
    }
    assert_string_equal(hdx_sub_note_name(HDX_SUB_EVENT), "event-notification");
    assert_string_equal(hdx_sub_note_name(HDX_SUB_QUERY_EVENT), "query-event");
}

static void check_events(const json_t *p, int focus0)
{
    assert_int_equal(json_array_size(p), 7);
    for (size_t i = 5; i < 7; i++) {
        json_t *ne = json_array_get(p, i);
        assert_string_equal(pstr(p, i, "name"), "notification-event");
        assert_string_equal(
            json_string_value(json_object_get(part(ne, "event-number"), "valueString")),
            i == 5 ? "7" : "8");
        assert_string_equal(
            json_string_value(json_object_get(part(ne, "timestamp"), "valueInstant")),
            i == 5 ? "2024-05-01T10:20:30.123456Z" : "2024-05-01T10:20:31.000000Z");
    }
    json_t *f0 = part(json_array_get(p, 5), "focus");
    if (focus0) {
        assert_non_null(f0);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(f0, "valueReference"), "reference")),
            "Observation/obs-1/_history/2");
    } else {
        assert_null(f0);
    }
    /* the refused event never has a focus */
    assert_null(part(json_array_get(p, 6), "focus"));
    assert_int_equal(json_array_size(json_object_get(json_array_get(p, 6), "part")), 2);
}

static void test_bundle_event_contents(void **state)
{
    static const enum hdx_sub_note notes[] = {HDX_SUB_EVENT, HDX_SUB_QUERY_EVENT};
    struct hdx_sub_event ev[2];
    events(ev);
    for (size_t k = 0; k < 2; k++) {
        const char *nn = hdx_sub_note_name(notes[k]);
        /* empty: no focus, no resource */
        struct hdx_sub_status st = status(notes[k], HDX_SUB_EMPTY);
        json_t *b = hdx_sub_bundle(&st, ev, 2);
        check_events(check_head(b, "history", nn), 0);
        assert_int_equal(json_array_size(json_object_get(b, "entry")), 1);
        json_decref(b);

        /* id-only: focus for the visible event, no resource */
        st = status(notes[k], HDX_SUB_ID_ONLY);
        b = hdx_sub_bundle(&st, ev, 2);
        check_events(check_head(b, "history", nn), 1);
        assert_int_equal(json_array_size(json_object_get(b, "entry")), 1);
        json_decref(b);

        /* full-resource: one entry per visible event with a resource */
        st = status(notes[k], HDX_SUB_FULL);
        b = hdx_sub_bundle(&st, ev, 2);
        check_events(check_head(b, "history", nn), 1);
        json_t *entries = json_object_get(b, "entry");
        assert_int_equal(json_array_size(entries), 2);
        json_t *e = json_array_get(entries, 1);
        assert_string_equal(json_string_value(json_object_get(e, "fullUrl")),
                            BASE "/Observation/obs-1");
        assert_true(json_equal(json_object_get(e, "resource"), obs));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(e, "request"), "method")), "PUT");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(e, "request"), "url")),
            "Observation/obs-1");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(e, "response"), "status")), "200");
        json_decref(b);
    }
    /* a first version was created: 201; two visible events, two entries */
    ev[0].version = 1;
    ev[1] = ev[0];
    ev[1].number = 8;
    snprintf(ev[1].id, sizeof(ev[1].id), "obs-2");
    struct hdx_sub_status st = status(HDX_SUB_EVENT, HDX_SUB_FULL);
    json_t *b = hdx_sub_bundle(&st, ev, 2);
    assert_non_null(b);
    json_t *entries = json_object_get(b, "entry");
    assert_int_equal(json_array_size(entries), 3);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(entries, 1), "response"), "status")),
                        "201");
    assert_string_equal(json_string_value(json_object_get(json_array_get(entries, 2), "fullUrl")),
                        BASE "/Observation/obs-2");
    json_decref(b);
    /* the resource is borrowed */
    assert_int_equal(obs->refcount, 1);
}

/* regression: fullUrl was made in a buffer of 96 bytes whatever the base: with a base of the
 * configured length and a 64-character id it lost the id's end */
static void test_bundle_long_full_url(void **state)
{
    char base[160], id[HDX_FHIR_ID_MAX + 1], want[400];
    memset(base, 0, sizeof(base));
    snprintf(base, sizeof(base), "https://hdx.example.org/");
    while (strlen(base) < sizeof(base) - 6)
        strcat(base, "a");
    strcat(base, "/fhir");
    memset(id, 'x', HDX_FHIR_ID_MAX);
    id[HDX_FHIR_ID_MAX] = 0;
    struct hdx_sub_event ev[2];
    events(ev);
    snprintf(ev[0].id, sizeof(ev[0].id), "%s", id);
    struct hdx_sub_status st = status(HDX_SUB_EVENT, HDX_SUB_FULL);
    st.base_url = base;
    json_t *b = hdx_sub_bundle(&st, ev, 1);
    assert_non_null(b);
    snprintf(want, sizeof(want), "%s/Observation/%s", base, id);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(b, "entry"), 1), "fullUrl")),
                        want);
    json_decref(b);
}

static void test_bundle_error(void **state)
{
    struct hdx_sub_event ev[2];
    events(ev);
    struct hdx_sub_status st = status(HDX_SUB_EVENT, HDX_SUB_ID_ONLY);
    st.status = "error";
    st.error = "the endpoint answered 503";
    json_t *b = hdx_sub_bundle(&st, ev, 1);
    assert_non_null(b);
    json_t *p = params_of(b);
    assert_string_equal(pstr(p, 2, "valueCode"), "error");
    assert_int_equal(json_array_size(p), 7);
    assert_string_equal(pstr(p, 5, "name"), "notification-event");
    assert_string_equal(pstr(p, 6, "name"), "error");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(p, 6), "valueCodeableConcept"), "text")),
                        "the endpoint answered 503");
    json_decref(b);

    /* a heartbeat while failing */
    st = status(HDX_SUB_HEARTBEAT, HDX_SUB_EMPTY);
    st.error = "timeout";
    st.events_since_start = 0;
    b = hdx_sub_bundle(&st, NULL, 0);
    p = params_of(b);
    assert_int_equal(json_array_size(p), 6);
    assert_string_equal(pstr(p, 4, "valueString"), "0");
    assert_string_equal(pstr(p, 5, "name"), "error");
    json_decref(b);
}

/* hdx_sub_bundle_text writes the same Bundle as hdx_sub_bundle (but its two random ids): for
 * every note, content empty and id-only, with a refused event and with an error. */
static void test_bundle_text_same(void **state)
{
    static const enum hdx_sub_note notes[] = {HDX_SUB_HANDSHAKE, HDX_SUB_HEARTBEAT, HDX_SUB_EVENT,
                                              HDX_SUB_QUERY_STATUS, HDX_SUB_QUERY_EVENT};
    struct hdx_sub_event ev[2];
    events(ev);
    for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++)
        for (int content = HDX_SUB_EMPTY; content <= HDX_SUB_ID_ONLY; content++)
            for (int err = 0; err < 2; err++) {
                struct hdx_sub_status st = status(notes[i], (enum hdx_sub_content)content);
                st.error = err ? "HTTP 503 \"quoted\" \\ and\ta tab" : NULL;
                size_t len = 0;
                char *text = hdx_sub_bundle_text(&st, ev, 2, &len);
                assert_non_null(text);
                assert_int_equal(strlen(text), len);
                json_error_t je;
                json_t *t = json_loads(text, JSON_REJECT_DUPLICATES, &je);
                assert_non_null(t);
                json_t *b = hdx_sub_bundle(&st, ev, 2);
                assert_non_null(b);
                json_object_set(t, "id", json_object_get(b, "id"));
                json_object_set(
                    json_array_get(json_object_get(t, "entry"), 0), "fullUrl",
                    json_object_get(json_array_get(json_object_get(b, "entry"), 0), "fullUrl"));
                assert_true(json_equal(t, b));
                json_decref(t);
                json_decref(b);
                free(text);
            }
    struct hdx_sub_status st = status(HDX_SUB_EVENT, HDX_SUB_FULL);
    size_t len = 0;
    assert_null(hdx_sub_bundle_text(&st, ev, 2, &len)); /* full-resource: the JSON builder's */
}

static int setup(void **state)
{
    obs = json_pack("{s:s, s:s, s:s, s:{s:s}}", "resourceType", "Observation", "id", "obs-1",
                    "status", "final", "code", "text", "heart rate");
    return obs ? 0 : -1;
}

static int teardown(void **state)
{
    json_decref(obs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_websocket),
        cmocka_unit_test(test_parse_rest_hook),
        cmocka_unit_test(test_parse_defaults_and_bounds),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_refusal_leaves_no_client_bytes),
        cmocka_unit_test(test_same_filter),
        cmocka_unit_test(test_bundle_no_events),
        cmocka_unit_test(test_bundle_event_contents),
        cmocka_unit_test(test_bundle_long_full_url),
        cmocka_unit_test(test_bundle_error),
        cmocka_unit_test(test_bundle_text_same),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
