/* fuzz_fhir_subscription: libFuzzer entry point for FHIR Subscriptions (fhir/subscription.h).
 * The input is a posted Subscription body: parsed as the API does (jansson, duplicate keys
 * refused); when it is an object, hdx_sub_parse runs on it. Beyond "no crash", it traps when the
 * result is neither HDX_OK nor HDX_E_INVAL; when a refusal leaves path or why empty, the path
 * holds anything but [A-Za-z0-9._] or the reason anything but printable ASCII; when a second run
 * disagrees; when an accepted spec breaks a bound of the header (at most 16 codes, each with a
 * '|', at most 4 headers, an https:// endpoint for a rest-hook and none for a websocket,
 * heartbeat at most 3600 s, max-count 1 to 100); and, for an accepted spec, when
 * hdx_sub_same_filter disagrees with a reference (set equality of the codes, either order) on the
 * spec against itself, its codes reversed, its first code replaced by its last and another
 * patient, or hdx_sub_bundle (and, for content empty and id-only, hdx_sub_bundle_text, which
 * must write the same Bundle but for its random ids) with its content and two events (one visible,
 * one refused) gives no Bundle, the wrong number of entries, a fullUrl other than
 * base/Observation/id, or one jansson cannot dump. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/subscription.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static int path_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.';
}

static void check_spec(const struct hdx_sub_spec *s)
{
    CHECK(s->channel == HDX_SUB_REST_HOOK || s->channel == HDX_SUB_WEBSOCKET);
    CHECK(s->content == HDX_SUB_EMPTY || s->content == HDX_SUB_ID_ONLY ||
          s->content == HDX_SUB_FULL);
    CHECK(s->ncodes <= HDX_SUB_CODES_MAX && s->nheaders <= HDX_SUB_HEADERS_MAX);
    CHECK(memchr(s->endpoint, '\0', sizeof(s->endpoint)) != NULL);
    if (s->channel == HDX_SUB_REST_HOOK)
        CHECK(strncmp(s->endpoint, "https://", 8) == 0 && strlen(s->endpoint) > 8);
    else
        CHECK(s->endpoint[0] == '\0' && s->nheaders == 0);
    for (size_t i = 0; i < s->nheaders; i++) {
        CHECK(memchr(s->headers[i], '\0', sizeof(s->headers[i])) != NULL);
        CHECK(strchr(s->headers[i], ':') != NULL);
        CHECK(!strchr(s->headers[i], '\r') && !strchr(s->headers[i], '\n'));
    }
    for (size_t i = 0; i < s->ncodes; i++) {
        CHECK(memchr(s->codes[i], '\0', sizeof(s->codes[i])) != NULL);
        CHECK(strchr(s->codes[i], '|') != NULL);
    }
    CHECK(memchr(s->patient_id, '\0', sizeof(s->patient_id)) != NULL);
    CHECK(s->heartbeat_s <= HDX_SUB_HEARTBEAT_MAX);
    CHECK(s->max_count >= 1 && s->max_count <= HDX_SUB_MAX_COUNT_MAX);
    CHECK(s->off == 0 || s->off == 1);
}

/* the reference: the same patient, as many codes, and every code of each among the other's */
static int within(const struct hdx_sub_spec *a, const struct hdx_sub_spec *b)
{
    for (size_t i = 0; i < a->ncodes; i++) {
        int found = 0;
        for (size_t j = 0; j < b->ncodes; j++)
            found |= !strcmp(a->codes[i], b->codes[j]);
        if (!found) return 0;
    }
    return 1;
}

static void check_same_filter(const struct hdx_sub_spec *s)
{
    struct hdx_sub_spec t = *s;
    CHECK(hdx_sub_same_filter(s, &t) == 1);
    /* reversed: the same codes */
    for (size_t i = 0; i < t.ncodes; i++)
        memcpy(t.codes[i], s->codes[t.ncodes - 1 - i], sizeof(t.codes[i]));
    CHECK(hdx_sub_same_filter(s, &t) == 1 && hdx_sub_same_filter(&t, s) == 1);
    /* the first code replaced by the last: the same filter exactly when the sets agree */
    if (t.ncodes >= 2) {
        t = *s;
        memcpy(t.codes[0], s->codes[s->ncodes - 1], sizeof(t.codes[0]));
        int want = within(s, &t) && within(&t, s);
        CHECK(hdx_sub_same_filter(s, &t) == want && hdx_sub_same_filter(&t, s) == want);
    }
    t = *s;
    t.patient_id[0] = t.patient_id[0] ? 0 : 'p';
    CHECK(hdx_sub_same_filter(s, &t) == 0);
}

static void check_bundle(const struct hdx_sub_spec *s, json_t *resource)
{
    static const enum hdx_sub_note notes[] = {HDX_SUB_HANDSHAKE, HDX_SUB_HEARTBEAT, HDX_SUB_EVENT,
                                              HDX_SUB_QUERY_STATUS, HDX_SUB_QUERY_EVENT};
    struct hdx_sub_event ev[2];
    memset(ev, 0, sizeof(ev));
    ev[0].number = 1;
    ev[0].time_us = 1714558830123456LL;
    strcpy(ev[0].type, "Observation");
    strcpy(ev[0].id, s->patient_id[0] ? s->patient_id : "obs-1");
    ev[0].version = 3;
    ev[0].resource = resource;
    ev[1].number = 2; /* refused: type "" */
    ev[1].time_us = 1714558831000000LL;
    for (size_t k = 0; k < sizeof(notes) / sizeof(notes[0]); k++) {
        struct hdx_sub_status st = {.base_url = "https://hdx.example.org/fhir",
                                    .sub_id = "sub-1",
                                    .status = s->off ? "off" : "active",
                                    .note = notes[k],
                                    .events_since_start = 2,
                                    .content = s->content,
                                    .error = s->heartbeat_s & 1 ? "failing" : NULL,
                                    .now_us = 1714558832000000LL};
        json_t *b = hdx_sub_bundle(&st, ev, 2);
        CHECK(b != NULL);
        json_t *entries = json_object_get(b, "entry");
        size_t want = 1 + (s->content == HDX_SUB_FULL &&
                           (notes[k] == HDX_SUB_EVENT || notes[k] == HDX_SUB_QUERY_EVENT));
        CHECK(json_array_size(entries) == want);
        if (want == 2) { /* the visible event's entry names it in full */
            char url[160];
            snprintf(url, sizeof(url), "%s/Observation/%s", st.base_url, ev[0].id);
            const char *full =
                json_string_value(json_object_get(json_array_get(entries, 1), "fullUrl"));
            CHECK(full && !strcmp(full, url));
        }
        char *text = json_dumps(b, JSON_COMPACT);
        CHECK(text != NULL);
        free(text);
        /* the fan-out's direct text is the same Bundle, but for its two random ids */
        size_t len = 0;
        char *direct = hdx_sub_bundle_text(&st, ev, 2, &len);
        CHECK((direct != NULL) == (s->content != HDX_SUB_FULL));
        if (direct) {
            json_t *t = json_loadb(direct, len, JSON_REJECT_DUPLICATES, NULL);
            CHECK(t != NULL && strlen(direct) == len);
            json_object_set(t, "id", json_object_get(b, "id"));
            json_object_set(
                json_array_get(json_object_get(t, "entry"), 0), "fullUrl",
                json_object_get(json_array_get(json_object_get(b, "entry"), 0), "fullUrl"));
            CHECK(json_equal(t, b));
            json_decref(t);
            free(direct);
        }
        json_decref(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *sub = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (!sub) return 0;
    if (!json_is_object(sub)) {
        json_decref(sub);
        return 0;
    }
    struct hdx_sub_spec spec, again;
    char path[128], why[128], path2[128], why2[128];
    memset(path, 0, sizeof(path));
    memset(why, 0, sizeof(why));
    int rc = hdx_sub_parse(sub, &spec, path, sizeof(path), why, sizeof(why));
    CHECK(rc == HDX_OK || rc == HDX_E_INVAL);
    CHECK(memchr(path, '\0', sizeof(path)) && memchr(why, '\0', sizeof(why)));
    if (rc == HDX_E_INVAL) {
        CHECK(path[0] != '\0' && why[0] != '\0');
        for (const char *p = path; *p; p++)
            CHECK(path_char(*p));
        for (const char *p = why; *p; p++)
            CHECK(*p >= 0x20 && *p < 0x7f);
    }
    memset(path2, 0, sizeof(path2));
    memset(why2, 0, sizeof(why2));
    CHECK(hdx_sub_parse(sub, &again, path2, sizeof(path2), why2, sizeof(why2)) == rc);
    CHECK(hdx_sub_parse(sub, &again, NULL, 0, NULL, 0) == rc);
    if (rc == HDX_E_INVAL) {
        CHECK(strcmp(path, path2) == 0 && strcmp(why, why2) == 0);
    } else {
        CHECK(memcmp(&spec, &again, sizeof(spec)) == 0);
        check_spec(&spec);
        check_same_filter(&spec);
        check_bundle(&spec, sub);
    }
    json_decref(sub);
    return 0;
}
