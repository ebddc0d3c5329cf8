/* fhir/v2map: golden cases in tests/data/fhir-mapping/ (NAME.hl7 -> NAME.json, the Observations;
 * NAME.obs.json -> NAME.oru.hl7), the round trip Observation -> ORU^R01 -> Observation for every
 * golden Observation (code, value, unit and time survive), and refusals. HDX_GOLDEN_UPDATE=1
 * rewrites NAME.json and NAME.oru.hl7 from what the code does now: review the diff (and run the
 * validators of docs/FHIR-MAPPING.md) before committing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"
#include "core/util.h"
#include "fhir/v2map.h"
#include "proto/hl7.h"

#define CANON (JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(15))

static const struct hdx_v2map_in golden_in = {"bedside-3", 42, NULL, 0};
static const struct hdx_v2map_out golden_out = {"HDX000001", "MRN-4711", "HOSP", 1796239800123456LL,
                                                "HDX"};

static const char *data_dir(void)
{
    const char *d = getenv("HDX_TEST_DATA");
    return d != NULL ? d : "tests/data";
}

static int update(void)
{
    const char *u = getenv("HDX_GOLDEN_UPDATE");
    return u != NULL && strcmp(u, "1") == 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in the golden directory ending in suffix, without it. */
static size_t list(const char *suffix, char **names, size_t max)
{
    char root[512];
    size_t n = 0, sl = strlen(suffix);
    snprintf(root, sizeof root, "%s/fhir-mapping", data_dir());
    DIR *d = opendir(root);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= sl || strcmp(de->d_name + l - sl, suffix) != 0) continue;
        /* "x.obs.json" must not count as a ".json" case */
        if (strcmp(suffix, ".json") == 0 && l > 9 && strcmp(de->d_name + l - 9, ".obs.json") == 0)
            continue;
        assert_true(n < max);
        names[n] = strndup(de->d_name, l - sl);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], name_cmp);
    return n;
}

static void path_of(char *p, size_t cap, const char *name, const char *suffix)
{
    snprintf(p, cap, "%s/fhir-mapping/%s%s", data_dir(), name, suffix);
}

static void write_text(const char *path, const char *s, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(s, 1, len, f), len);
    fclose(f);
}

static char *canon(const json_t *j)
{
    char *s = json_dumps(j, CANON | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

/* ---- round trip ------------------------------------------------------------------------- */

static void same_member(const json_t *a, const json_t *b, const char *k, const char *what)
{
    char *x = json_dumps(json_object_get(a, k), CANON | JSON_ENCODE_ANY);
    char *y = json_dumps(json_object_get(b, k), CANON | JSON_ENCODE_ANY);
    if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
        fail_msg("%s: %s differs after the round trip: %s vs %s", what, k, x ? x : "(none)",
                 y ? y : "(none)");
    free(x);
    free(y);
}

/* The first LOINC code of a CodeableConcept ("" when none). */
static const char *loinc_of(const json_t *cc)
{
    size_t i;
    json_t *cd;
    json_array_foreach(json_object_get(cc, "coding"), i, cd)
    {
        const char *s = json_string_value(json_object_get(cd, "system"));
        if (s != NULL && strcmp(s, "http://loinc.org") == 0)
            return json_string_value(json_object_get(cd, "code"));
    }
    return "";
}

static void same_value(const json_t *a, const json_t *b, const char *what)
{
    assert_string_equal(loinc_of(json_object_get(a, "code")), loinc_of(json_object_get(b, "code")));
    same_member(a, b, "valueQuantity", what);
    same_member(a, b, "valueString", what);
    same_member(a, b, "valueDateTime", what);
    same_member(a, b, "interpretation", what);
    if (json_object_get(a, "valueCodeableConcept") != NULL)
        assert_string_equal(
            json_string_value(json_object_get(
                json_array_get(
                    json_object_get(json_object_get(a, "valueCodeableConcept"), "coding"), 0),
                "code")),
            json_string_value(json_object_get(
                json_array_get(
                    json_object_get(json_object_get(b, "valueCodeableConcept"), "coding"), 0),
                "code")));
}

/* obs -> ORU^R01 -> Observations: one Observation back, same status, time, code, value, unit. */
static void round_trip(const json_t *obs, const char *what)
{
    char *oru = NULL, why[256];
    size_t len = 0;
    json_t *back = NULL;
    struct hl7_msg m;
    struct hl7_error e;
    struct hdx_v2map_in in = {"bedside-3", 7, NULL, 0};

    if (hdx_v2map_oru(obs, &golden_out, &oru, &len, why, sizeof why) != HDX_OK)
        fail_msg("%s: to ORU: %s", what, why);
    assert_int_equal(strlen(oru), len);
    assert_int_equal(hl7_parse((const uint8_t *)oru, len, NULL, &m, &e), 0);
    hl7_msg_free(&m);
    if (hdx_v2map_observations((const uint8_t *)oru, len, &in, &back, why, sizeof why) != HDX_OK)
        fail_msg("%s: back from ORU: %s\n%s", what, why, oru);
    assert_int_equal(json_array_size(back), 1);
    const json_t *b = json_array_get(back, 0);
    const char *sa = json_string_value(json_object_get(obs, "status"));
    const char *sb = json_string_value(json_object_get(b, "status"));
    /* v2.5.1 has no "amended" (A came in v2.8): it goes out as a correction */
    assert_string_equal(strcmp(sa, "amended") == 0 ? "corrected" : sa, sb);
    same_member(obs, b, "effectiveDateTime", what);
    same_member(obs, b, "dataAbsentReason", what);
    same_value(obs, b, what);
    const json_t *ca = json_object_get(obs, "component"), *cb = json_object_get(b, "component");
    assert_int_equal(json_array_size(ca), json_array_size(cb));
    for (size_t i = 0; i < json_array_size(ca); i++)
        same_value(json_array_get(ca, i), json_array_get(cb, i), what);
    json_decref(back);
    free(oru);
}

/* ---- golden: v2 -> FHIR ----------------------------------------------------------------- */

static void test_golden_v2_to_fhir(void **state)
{
    char *names[64], p[1024], why[256];
    size_t n = list(".hl7", names, 64), cases = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > 4 && strcmp(names[i] + l - 4, ".oru") == 0) {
            free(names[i]);
            continue;
        }
        uint8_t *msg = NULL, *want = NULL;
        size_t len = 0, wlen = 0;
        json_t *obs = NULL;
        path_of(p, sizeof p, names[i], ".hl7");
        assert_int_equal(hdx_read_file(p, 1 << 20, &msg, &len), HDX_OK);
        if (hdx_v2map_observations(msg, len, &golden_in, &obs, why, sizeof why) != HDX_OK)
            fail_msg("%s: %s", names[i], why);
        path_of(p, sizeof p, names[i], ".json");
        if (update()) {
            char *s = json_dumps(obs, HDX_V2MAP_JSON_FLAGS | JSON_INDENT(2));
            assert_non_null(s);
            size_t sl = strlen(s);
            s = realloc(s, sl + 2);
            s[sl] = '\n';
            write_text(p, s, sl + 1);
            free(s);
        }
        assert_int_equal(hdx_read_file(p, 1 << 20, &want, &wlen), HDX_OK);
        json_error_t je;
        json_t *w = json_loads((const char *)want, 0, &je);
        if (w == NULL) fail_msg("%s.json: %s", names[i], je.text);
        char *a = canon(obs), *b = canon(w);
        if (strcmp(a, b) != 0) fail_msg("%s: got\n%s\nwant\n%s", names[i], a, b);
        /* the same bytes give the same view on every read */
        json_t *again = NULL;
        assert_int_equal(hdx_v2map_observations(msg, len, &golden_in, &again, why, sizeof why),
                         HDX_OK);
        char *c = canon(again);
        assert_string_equal(a, c);
        size_t k;
        json_t *o;
        json_array_foreach(obs, k, o)
        {
            char what[128];
            snprintf(what, sizeof what, "%s[%zu]", names[i], k);
            round_trip(o, what);
            /* built alone (a read of v2-SEQ-N), it is the same Observation */
            struct hdx_v2map_in one = golden_in;
            one.only = (uint32_t)k + 1;
            json_t *alone = NULL;
            assert_int_equal(hdx_v2map_observations(msg, len, &one, &alone, why, sizeof why),
                             HDX_OK);
            assert_int_equal(json_array_size(alone), 1);
            if (!json_equal(json_array_get(alone, 0), o)) fail_msg("%s built alone differs", what);
            json_decref(alone);
        }
        struct hdx_v2map_in past = golden_in;
        past.only = (uint32_t)json_array_size(obs) + 1;
        json_t *none = NULL;
        assert_int_equal(hdx_v2map_observations(msg, len, &past, &none, why, sizeof why), HDX_OK);
        assert_int_equal(json_array_size(none), 0);
        json_decref(none);
        free(a);
        free(b);
        free(c);
        json_decref(again);
        json_decref(w);
        json_decref(obs);
        free(msg);
        free(want);
        free(names[i]);
        cases++;
    }
    assert_true(cases >= 13);
    print_message("v2 -> FHIR: %zu golden cases\n", cases);
}

/* ---- golden: FHIR -> v2 ----------------------------------------------------------------- */

static void test_golden_fhir_to_v2(void **state)
{
    char *names[64], p[1024], why[256];
    size_t n = list(".obs.json", names, 64);
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        uint8_t *want = NULL;
        size_t wlen = 0, len = 0;
        char *oru = NULL;
        path_of(p, sizeof p, names[i], ".obs.json");
        json_t *obs = json_load_file(p, 0, &je);
        if (obs == NULL) fail_msg("%s: %s", p, je.text);
        if (hdx_v2map_oru(obs, &golden_out, &oru, &len, why, sizeof why) != HDX_OK)
            fail_msg("%s: %s", names[i], why);
        path_of(p, sizeof p, names[i], ".oru.hl7");
        if (update()) write_text(p, oru, len);
        assert_int_equal(hdx_read_file(p, 1 << 20, &want, &wlen), HDX_OK);
        if (wlen != len || memcmp(want, oru, len) != 0)
            fail_msg("%s: got\n%s\nwant\n%s", names[i], oru, (char *)want);
        struct hl7_msg m;
        struct hl7_error e;
        assert_int_equal(hl7_parse((const uint8_t *)oru, len, NULL, &m, &e), 0);
        assert_string_equal(m.msg_type, "ORU^R01");
        assert_string_equal(m.control_id, "HDX000001");
        assert_string_equal(m.version, "2.5.1");
        assert_string_equal(m.patient_id, "MRN-4711");
        assert_null(memchr(oru, '\n', len));
        assert_int_equal(oru[len - 1], '\r');
        hl7_msg_free(&m);
        round_trip(obs, names[i]);
        free(oru);
        free(want);
        json_decref(obs);
        free(names[i]);
    }
    assert_true(n >= 7);
    print_message("FHIR -> v2: %zu golden cases\n", n);
}

/* ---- specific promises ------------------------------------------------------------------ */

static json_t *map_ok(const char *msg, const struct hdx_v2map_in *in)
{
    json_t *out = NULL;
    char why[256];
    if (hdx_v2map_observations((const uint8_t *)msg, strlen(msg), in, &out, why, sizeof why) !=
        HDX_OK)
        fail_msg("refused: %s", why);
    return out;
}

static void refused(const char *msg, size_t len, int want_rc, const char *want)
{
    json_t *out = (json_t *)1;
    char why[256];
    int rc = hdx_v2map_observations((const uint8_t *)msg, len, &golden_in, &out, why, sizeof why);
    if (rc != want_rc) fail_msg("want %d for \"%s\", got %d", want_rc, want, rc);
    assert_null(out);
    if (strstr(why, want) == NULL) fail_msg("why \"%s\", want \"%s\"", why, want);
}

#define MSH_ "MSH|^~\\&|A|B|C|D|20261202193000+0100||ORU^R01^ORU_R01|X1|P|2.5.1\r"
#define PID_ "PID|1||SECRET-MRN^^^HOSP^MR\r"

static void test_patient_ref_and_sender(void **state)
{
    struct hdx_v2map_in in = {"bed 4 (ICU)", 9, "Patient/p-1", 0};
    json_t *a = map_ok(MSH_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80|/min^^UCUM|||||F|||20261202\r", &in);
    const json_t *o = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(o, "id")), "v2-9-1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(o, "subject"), "reference")),
        "Patient/p-1");
    /* a sender name that is no FHIR id is a display, never a broken reference */
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "device"), "display")),
                        "bed 4 (ICU)");
    /* date precision is kept */
    assert_string_equal(json_string_value(json_object_get(o, "effectiveDateTime")), "2026-12-02");
    json_decref(a);
    /* a known patient needs no PID, but two PIDs cannot both be that patient */
    json_t *out = NULL;
    char why[256];
    const char *two =
        MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80\r" PID_ "OBX|1|NM|8867-4^HR^LN||81\r";
    assert_int_equal(
        hdx_v2map_observations((const uint8_t *)two, strlen(two), &in, &out, why, sizeof why),
        HDX_E_INVAL);
    assert_null(out);
}

/* MSH-18 8859/1: values reach JSON as UTF-8; another non-UTF-8 character set is refused. */
static void test_latin1(void **state)
{
    const char *l1 = "MSH|^~\\&|A|B|C|D|20261202193000+0100||ORU^R01|X1|P|2.5.1||||||8859/1\r" PID_
                     "OBR|1\rOBX|1|ST|C^C^99X||caf\xe9 \\XE9\\||||||F\r";
    json_t *a = map_ok(l1, &golden_in);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "valueString")),
                        "caf\xc3\xa9 \xc3\xa9");
    json_decref(a);
    const char *l2 = "MSH|^~\\&|A|B|C|D|20261202193000+0100||ORU^R01|X1|P|2.5.1||||||8859/2\r" PID_
                     "OBR|1\rOBX|1|ST|C^C^99X||caf\xe9||||||F\r";
    refused(l2, strlen(l2), HDX_E_INVAL, "not UTF-8");
}

static void test_no_obx_is_empty(void **state)
{
    json_t *a = map_ok(MSH_ PID_ "OBR|1\r", &golden_in);
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 0);
    json_decref(a);
}

static void test_unpaired_bp_stays_separate(void **state)
{
    /* different sub-ids: two measurements, not one panel */
    json_t *a = map_ok(MSH_ PID_ "OBR|1\r"
                                 "OBX|1|NM|8480-6^S^LN|1|120|mm[Hg]^^UCUM|||||F|||20261202193000\r"
                                 "OBX|2|NM|8462-4^D^LN|2|80|mm[Hg]^^UCUM|||||F|||20261202193000\r",
                       &golden_in);
    assert_int_equal(json_array_size(a), 2);
    assert_null(json_object_get(json_array_get(a, 0), "component"));
    json_decref(a);
    /* no sub-ids and not adjacent */
    a = map_ok(MSH_ PID_ "OBR|1\r"
                         "OBX|1|NM|8480-6^S^LN||120|mm[Hg]^^UCUM|||||F\r"
                         "OBX|2|NM|8867-4^HR^LN||70|/min^^UCUM|||||F\r"
                         "OBX|3|NM|8462-4^D^LN||80|mm[Hg]^^UCUM|||||F\r",
               &golden_in);
    assert_int_equal(json_array_size(a), 3);
    json_decref(a);
    /* adjacent, but in different OBR groups */
    a = map_ok(MSH_ PID_ "OBR|1\rOBX|1|NM|8480-6^S^LN||120|mm[Hg]^^UCUM|||||F\r"
                         "OBR|2\rOBX|1|NM|8462-4^D^LN||80|mm[Hg]^^UCUM|||||F\r",
               &golden_in);
    assert_int_equal(json_array_size(a), 2);
    json_decref(a);
    /* adjacent, diastolic first: still one panel, systolic first among its components */
    a = map_ok(MSH_ PID_ "OBR|1\rOBX|1|NM|8462-4^D^LN||80|mm[Hg]^^UCUM|||||F\r"
                         "OBX|2|NM|8480-6^S^LN||120|mm[Hg]^^UCUM|||||F\r",
               &golden_in);
    assert_int_equal(json_array_size(a), 1);
    const json_t *c0 = json_array_get(json_object_get(json_array_get(a, 0), "component"), 0);
    assert_string_equal(loinc_of(json_object_get(c0, "code")), "8480-6");
    json_decref(a);
}

static void test_time_zone_rules(void **state)
{
    /* no offset in OBX-14: the offset of MSH-7 (the sender's clock) */
    json_t *a =
        map_ok(MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80|||||||||202612021930\r", &golden_in);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(a, 0), "effectiveDateTime")),
        "2026-12-02T19:30:00+01:00");
    json_decref(a);
    /* neither has one: UTC */
    a = map_ok("MSH|^~\\&|A|B|C|D|20261202193000||ORU^R01|X1|P|2.5.1\r" PID_
               "OBR|1\rOBX|1|NM|8867-4^HR^LN||80|||||||||20261202193059.5\r",
               &golden_in);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(a, 0), "effectiveDateTime")),
        "2026-12-02T19:30:59.5Z");
    json_decref(a);
}

static void test_bad_inputs(void **state)
{
    refused("garbage", 7, HDX_E_INVAL, "not a parsable HL7 v2 message");
    refused("", 0, HDX_E_INVAL, "not a parsable");
    const char *adt = "MSH|^~\\&|A|B|C|D|20261202||ADT^A01|X1|P|2.5.1\r" PID_;
    refused(adt, strlen(adt), HDX_E_INVAL, "not an ORU^R01 message");
    const char *nopid = MSH_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80\r";
    refused(nopid, strlen(nopid), HDX_E_INVAL, "no PID segment");
    const char *nomrn = MSH_ "PID|1||^^^HOSP\rOBR|1\rOBX|1|NM|8867-4^HR^LN||80\r";
    refused(nomrn, strlen(nomrn), HDX_E_INVAL, "PID-3.1");
    const char *nm = MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||SECRET-VALUE\r";
    refused(nm, strlen(nm), HDX_E_INVAL, "OBX 1: OBX-5 is not a number (NM)");
    const char *nm2 = MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||1e5\r";
    refused(nm2, strlen(nm2), HDX_E_INVAL, "not a number");
    const char *nocode = MSH_ PID_ "OBR|1\rOBX|1|NM|||80\r";
    refused(nocode, strlen(nocode), HDX_E_INVAL, "OBX-3");
    const char *dtm = MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80||||||F|||20261302\r";
    refused(dtm, strlen(dtm), HDX_E_INVAL, "OBX-14 is not a valid DTM");
    const char *obr7 = MSH_ PID_ "OBR|1||||||20261202196\rOBX|1|NM|8867-4^HR^LN||80\r";
    refused(obr7, strlen(obr7), HDX_E_INVAL, "OBR-7");
    const char *esc = MSH_ PID_ "OBR|1\rOBX|1|ST|8867-4^HR^LN||a\\X00\\b\r";
    refused(esc, strlen(esc), HDX_E_INVAL, "OBX-5: badly escaped");
    const char *code = MSH_ PID_ "OBR|1\rOBX|1|NM|88 67-4 ^HR^LN||80\r";
    refused(code, strlen(code), HDX_E_INVAL, "not a valid code");
    /* no refusal ever quotes the message */
    char why[256];
    json_t *out = NULL;
    assert_int_equal(
        hdx_v2map_observations((const uint8_t *)nm, strlen(nm), &golden_in, &out, why, sizeof why),
        HDX_E_INVAL);
    assert_null(strstr(why, "SECRET"));
    /* oversize: the message, and the OBX count */
    size_t big = HDX_V2MAP_MAX_MSG + 1;
    char *b = malloc(big);
    assert_non_null(b);
    memset(b, 'A', big);
    memcpy(b, MSH_, strlen(MSH_));
    refused(b, big, HDX_E_TOOBIG, "message over");
    size_t off = 0;
    off += (size_t)sprintf(b + off, "%s%sOBR|1\r", MSH_, PID_);
    for (int i = 0; i <= HDX_V2MAP_MAX_OBS; i++)
        off += (size_t)sprintf(b + off, "OBX|%d|NM|8867-4^HR^LN||80\r", i + 1);
    refused(b, off, HDX_E_TOOBIG, "OBX segments");
    free(b);
}

static int oru_rc(const char *json, char *why, size_t cap)
{
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    char *out = (char *)1;
    size_t len = 1;
    assert_non_null(o);
    int rc = hdx_v2map_oru(o, &golden_out, &out, &len, why, cap);
    if (rc != HDX_OK) {
        assert_null(out);
        assert_int_equal(len, 0);
    }
    free(rc == HDX_OK ? out : NULL);
    json_decref(o);
    return rc;
}

static void test_oru_refusals(void **state)
{
    char why[256];
    assert_int_equal(oru_rc("{\"resourceType\":\"Patient\"}", why, sizeof why), HDX_E_INVAL);
    assert_non_null(strstr(why, "not an Observation"));
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"valueQuantity\":{\"value\":1}}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_non_null(strstr(why, "code"));
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\","
                            "\"code\":\"8867-4\"}]}}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_non_null(strstr(why, "value is missing"));
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"coding\":[{\"system\":\"http://example.org/x\","
                            "\"code\":\"8867-4\"}]},\"valueString\":\"x\"}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"text\":\"HR\"},\"valueString\":\"x\","
                            "\"effectiveDateTime\":\"2026-12-02T19:30\"}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_non_null(strstr(why, "effective"));
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"bogus\","
                            "\"code\":{\"text\":\"HR\"},\"valueString\":\"x\"}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"text\":\"HR\"},\"valueQuantity\":{\"value\":\"72\"}}",
                            why, sizeof why),
                     HDX_E_INVAL);
    /* delimiters in values are escaped: the result still parses and reads back the same */
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"text\":\"a|b^c~d\\\\e&f\\r\"},\"valueString\":\"x|y\"}",
                            why, sizeof why),
                     HDX_OK);
}

/* NM has no exponent: large and small values are written out in full and read back the same;
 * what cannot be written in 64 characters is refused, never sent as 1e+300. */
static void test_numbers(void **state)
{
    static const char *const nm[] = {
        "12345678901234567890.5",           "0.00000015", "-0.5", "+7", "36.0",
        "0.000000000000000000000000000001", "007"};
    char msg[512];
    for (size_t i = 0; i < sizeof nm / sizeof nm[0]; i++) {
        snprintf(msg, sizeof msg, MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||%s|/min^^UCUM\r", nm[i]);
        json_t *a = map_ok(msg, &golden_in);
        round_trip(json_array_get(a, 0), nm[i]);
        json_decref(a);
    }
    char why[256];
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"text\":\"HR\"},\"valueQuantity\":{\"value\":1e300}}",
                            why, sizeof why),
                     HDX_E_INVAL);
    assert_non_null(strstr(why, "NM"));
    assert_int_equal(oru_rc("{\"resourceType\":\"Observation\",\"status\":\"final\","
                            "\"code\":{\"text\":\"HR\"},\"valueQuantity\":{\"value\":1.5e-7}}",
                            why, sizeof why),
                     HDX_OK);
    /* a caller's patient_ref must be a Patient reference */
    struct hdx_v2map_in bad = {"x", 1, "Patient/has space", 0};
    json_t *out = NULL;
    const char *m = MSH_ PID_ "OBR|1\rOBX|1|NM|8867-4^HR^LN||80\r";
    assert_int_equal(
        hdx_v2map_observations((const uint8_t *)m, strlen(m), &bad, &out, why, sizeof why),
        HDX_E_INVAL);
}

/* Every truncation and a byte flip at every position of every golden input (STYLE.md 6.8): each
 * gives Observations or a clean refusal, never a crash, a leak or output left behind. */
static void test_truncate_and_flip(void **state)
{
    char *names[64], p[1024], why[256];
    size_t n = list(".hl7", names, 64), calls = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *msg = NULL;
        size_t len = 0;
        path_of(p, sizeof p, names[i], ".hl7");
        assert_int_equal(hdx_read_file(p, 1 << 20, &msg, &len), HDX_OK);
        for (size_t k = 0; k <= len; k++) {
            for (int flip = 0; flip < 2; flip++) {
                json_t *out = (json_t *)1;
                uint8_t saved = k < len ? msg[k] : 0;
                if (flip && k < len) msg[k] ^= 0x5a;
                int rc =
                    hdx_v2map_observations(msg, flip ? len : k, &golden_in, &out, why, sizeof why);
                if (k < len) msg[k] = saved;
                if (rc == HDX_OK) {
                    assert_true(json_is_array(out));
                    json_decref(out);
                } else {
                    assert_true(rc == HDX_E_INVAL || rc == HDX_E_TOOBIG);
                    assert_null(out);
                    assert_true(why[0] != '\0');
                }
                calls++;
            }
        }
        free(msg);
        free(names[i]);
    }
    print_message("truncate and flip: %zu calls\n", calls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_v2_to_fhir),
        cmocka_unit_test(test_golden_fhir_to_v2),
        cmocka_unit_test(test_patient_ref_and_sender),
        cmocka_unit_test(test_no_obx_is_empty),
        cmocka_unit_test(test_latin1),
        cmocka_unit_test(test_unpaired_bp_stays_separate),
        cmocka_unit_test(test_time_zone_rules),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_oru_refusals),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_truncate_and_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
