/* test_fhir_validate: structural validation of FHIR R4 resources (fhir/validate.h).
 * Proves: real spec examples and hand-written resources of every supported type pass
 * (tests/data/fhir/valid); known-bad ones are refused where they are wrong
 * (tests/data/fhir/invalid); each fault kind gives HDX_E_INVAL with the exact path and reason:
 * unknown element, wrong JSON type, array for a single element and the reverse, missing required
 * element (top level and in a backbone), primitives by their R4 rules (date, dateTime, instant,
 * time, decimal, integer ranges, id, code, uri, oid, uuid, base64Binary, xhtml, strings),
 * choice suffixes, primitive extensions (_name, aligned arrays), resourceType rules, Bundle
 * entries, Bundle.type, ext-1, dom-2, the depth and element-count limits, and path truncation;
 * and, over golden resources, that any member or array item replaced by a bogus object is
 * refused exactly there.
 * Inputs are written with ' for " (see load). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/validate.h"

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

static void expect_ok_json(json_t *j)
{
    char path[HDX_FHIR_PATH_CAP], why[128];
    int rc = hdx_fhir_validate(j, path, sizeof(path), why, sizeof(why));
    if (rc != HDX_OK) fprintf(stderr, "refused: %s: %s\n", path, why);
    assert_int_equal(rc, HDX_OK);
    assert_string_equal(path, "");
    assert_string_equal(why, "");
}

static void expect_ok(const char *text)
{
    json_t *j = load(text);
    expect_ok_json(j);
    json_decref(j);
}

static void expect_bad_json(json_t *j, const char *want_path, const char *want_why)
{
    char path[HDX_FHIR_PATH_CAP], why[128];
    int rc = hdx_fhir_validate(j, path, sizeof(path), why, sizeof(why));
    if (rc != HDX_E_INVAL || strcmp(path, want_path) != 0 ||
        (want_why && strcmp(why, want_why) != 0))
        fprintf(stderr, "want %s: %s, got rc %d %s: %s\n", want_path, want_why ? want_why : "*", rc,
                path, why);
    assert_int_equal(rc, HDX_E_INVAL);
    assert_string_equal(path, want_path);
    if (want_why) assert_string_equal(why, want_why);
}

static void expect_bad(const char *text, const char *want_path, const char *want_why)
{
    json_t *j = load(text);
    expect_bad_json(j, want_path, want_why);
    json_decref(j);
}

#define OBS "'resourceType':'Observation','status':'final','code':{'text':'x'}"
#define PAT "'resourceType':'Patient'"

static json_t *load_file(const char *dir, const char *name)
{
    const char *data = getenv("HDX_TEST_DATA");
    assert_non_null(data);
    char p[1024];
    snprintf(p, sizeof(p), "%s/fhir/%s/%s", data, dir, name);
    json_error_t err;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &err);
    if (!j) fprintf(stderr, "%s: %s\n", p, err.text);
    assert_non_null(j);
    return j;
}

static void valid_files(void **state)
{
    const char *data = getenv("HDX_TEST_DATA");
    assert_non_null(data);
    char p[1024];
    snprintf(p, sizeof(p), "%s/fhir/valid", data);
    DIR *d = opendir(p);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) continue;
        json_t *j = load_file("valid", de->d_name);
        char path[HDX_FHIR_PATH_CAP], why[128];
        int rc = hdx_fhir_validate(j, path, sizeof(path), why, sizeof(why));
        if (rc != HDX_OK) fprintf(stderr, "%s refused: %s: %s\n", de->d_name, path, why);
        assert_int_equal(rc, HDX_OK);
        json_decref(j);
        n++;
    }
    closedir(d);
    assert_true(n >= 20);
}

static void invalid_files(void **state)
{
    static const struct {
        const char *file, *path, *why;
    } cases[] = {
        /* STU3 shapes: a ProcedureRequest contained, interpretation as a single concept */
        {"diagnosticReport-example1.json", "DiagnosticReport.contained[0].resourceType",
         "resource type not supported"},
        {"diagnosticReport-example2.json", "DiagnosticReport.contained[2].interpretation",
         "not an array for a repeating element"},
        /* a search-set Bundle of Conditions nested in a Bundle entry */
        {"bundle-example3.json", "Bundle.entry[1].resource.entry[0].resource.resourceType",
         "resource type not supported"},
        {"encounter-example2.json", "Encounter.contained[0].resourceType",
         "resource type not supported"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = load_file("invalid", cases[i].file);
        expect_bad_json(j, cases[i].path, cases[i].why);
        json_decref(j);
    }
}

/* The root and every member or array item below it, in turn replaced by an object with one
 * unknown element, must be refused at that place or below it (its own path is a prefix of the
 * reported one). Keys starting with '_' are reported under the element's own name: skipped. */
static int replaced_checked;

static void check_replaced(json_t *root, const char *where)
{
    char path[HDX_FHIR_PATH_CAP], why[128];
    int rc = hdx_fhir_validate(root, path, sizeof(path), why, sizeof(why));
    size_t n = strlen(where);
    int ok = rc == HDX_E_INVAL && strncmp(path, where, n) == 0 &&
             (path[n] == '\0' || path[n] == '.' || path[n] == '[');
    if (!ok) fprintf(stderr, "replaced %s: rc %d at %s: %s\n", where, rc, path, why);
    assert_true(ok);
    replaced_checked++;
}

static void replace_each(json_t *root, json_t *node, char *where, size_t cap)
{
    size_t len = strlen(where);
    if (json_is_object(node)) {
        const char *keys[256];
        size_t nk = 0;
        const char *k;
        json_t *v;
        json_object_foreach(node, k, v)
        {
            if (nk < 256) keys[nk++] = k;
        }
        for (size_t i = 0; i < nk; i++) {
            if (keys[i][0] == '_' || strcmp(keys[i], "resourceType") == 0) continue;
            json_t *orig = json_incref(json_object_get(node, keys[i]));
            snprintf(where + len, cap - len, ".%s", keys[i]);
            json_object_set_new(node, keys[i], json_pack("{s:i}", "zzBogus", 1));
            check_replaced(root, where);
            json_object_set_new(node, keys[i], orig);
            replace_each(root, orig, where, cap);
            where[len] = '\0';
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *orig = json_array_get(node, i);
            if (json_is_null(orig)) continue;
            json_incref(orig);
            snprintf(where + len, cap - len, "[%zu]", i);
            json_array_set_new(node, i, json_pack("{s:i}", "zzBogus", 1));
            check_replaced(root, where);
            json_array_set_new(node, i, orig);
            replace_each(root, orig, where, cap);
            where[len] = '\0';
        }
    }
}

static void every_member_replaced(void **state)
{
    static const char *const files[] = {"observation-bp-panel.json",
                                        "patient-example1.json",
                                        "patient-primitive-extensions.json",
                                        "bundle-transaction.json",
                                        "diagnosticreport-cbc.json",
                                        "consent-example.json",
                                        "auditevent-example.json"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        json_t *j = load_file("valid", files[f]);
        char where[HDX_FHIR_PATH_CAP];
        snprintf(where, sizeof(where), "%s", json_string_value(json_object_get(j, "resourceType")));
        replace_each(j, j, where, sizeof(where));
        expect_ok_json(j); /* everything restored */
        json_decref(j);
    }
    assert_true(replaced_checked > 300);
}

static void every_type_minimal(void **state)
{
    expect_ok("{" PAT "}");
    expect_ok("{" OBS "}");
    expect_ok("{'resourceType':'Device'}");
    expect_ok("{'resourceType':'DiagnosticReport','status':'final','code':{'text':'cbc'}}");
    expect_ok("{'resourceType':'Encounter','status':'finished','class':{'code':'AMB'}}");
    expect_ok("{'resourceType':'Provenance','target':[{'reference':'Patient/1'}],"
              "'recorded':'2024-01-01T00:00:00Z','agent':[{'who':{'display':'x'}}]}");
    expect_ok("{'resourceType':'Consent','status':'active','scope':{'text':'s'},"
              "'category':[{'text':'c'}]}");
    expect_ok("{'resourceType':'AuditEvent','type':{'code':'rest'},"
              "'recorded':'2024-01-01T00:00:00Z','agent':[{'requestor':false}],"
              "'source':{'observer':{'display':'hdx'}}}");
    expect_ok("{'resourceType':'Bundle','type':'collection'}");
    expect_ok(
        "{'resourceType':'OperationOutcome','issue':[{'severity':'error','code':'invalid'}]}");
}

static void unknown_elements(void **state)
{
    expect_bad("{" PAT ",'foo':1}", "Patient.foo", "unknown element");
    expect_bad("{" PAT ",'name':[{'family':'x','nickname':'y'}]}", "Patient.name[0].nickname",
               "unknown element");
    expect_bad("{" OBS ",'component':[{'code':{'text':'a'},'foo':true}]}",
               "Observation.component[0].foo", "unknown element");
    /* names that are not plain are not quoted */
    expect_bad("{" PAT ",'Jane Doe 1970':1}", "Patient.?", "unknown element");
    /* resourceType only at a resource root */
    expect_bad("{" PAT ",'name':[{'resourceType':'Patient'}]}", "Patient.name[0].resourceType",
               "unknown element");
    /* an element of another resource */
    expect_bad("{" PAT ",'status':'final'}", "Patient.status", "unknown element");
    /* a JSON key with a NUL inside */
    json_t *j = load("{" PAT "}");
    json_object_setn_new_nocheck(j, "given\0x", 7, json_string("x"));
    expect_bad_json(j, "Patient.?", "unknown element");
    json_decref(j);
}

static void wrong_json_types(void **state)
{
    expect_bad("{" PAT ",'active':'yes'}", "Patient.active", "not a boolean");
    expect_bad("{" PAT ",'gender':1}", "Patient.gender", "not a string");
    expect_bad("{" PAT ",'maritalStatus':'M'}", "Patient.maritalStatus", "not an object");
    expect_bad("{" PAT ",'gender':null}", "Patient.gender", "null value");
    expect_bad("{" PAT ",'multipleBirthInteger':1.5}", "Patient.multipleBirthInteger",
               "not an integer");
    expect_bad("{" OBS ",'valueQuantity':{'value':'12.5'}}", "Observation.valueQuantity.value",
               "not a decimal");
    expect_bad("{" OBS ",'valueQuantity':{'value':true}}", "Observation.valueQuantity.value",
               "not a decimal");
    /* Reference.reference is a string */
    expect_bad("{" OBS ",'subject':{'reference':{'id':'p'}}}", "Observation.subject.reference",
               "not a string");
}

static void cardinality(void **state)
{
    expect_bad("{" PAT ",'gender':['male']}", "Patient.gender", "an array for a single element");
    expect_bad("{" PAT ",'name':{'family':'x'}}", "Patient.name",
               "not an array for a repeating element");
    expect_bad("{" PAT ",'name':[{'given':'Jo'}]}", "Patient.name[0].given",
               "not an array for a repeating element");
    expect_bad("{" PAT ",'name':[]}", "Patient.name", "empty array");
    expect_bad("{" PAT ",'name':[{'family':'x'},null]}", "Patient.name[1]", "null value");
    expect_bad("{" PAT ",'name':[{}]}", "Patient.name[0]", "empty object");
    expect_bad("{'resourceType':'Observation','code':{'text':'x'}}", "Observation.status",
               "required element missing");
    expect_bad("{'resourceType':'Observation','status':'final'}", "Observation.code",
               "required element missing");
    expect_bad("{" PAT ",'communication':[{'preferred':true}]}",
               "Patient.communication[0].language", "required element missing");
    expect_bad("{" OBS ",'component':[{'valueString':'x'}]}", "Observation.component[0].code",
               "required element missing");
    expect_bad("{'resourceType':'OperationOutcome'}", "OperationOutcome.issue",
               "required element missing");
    expect_bad("{" PAT ",'extension':[{'valueString':'x'}]}", "Patient.extension[0].url",
               "required element missing");
}

static void dates(void **state)
{
    static const char *const good[] = {"2024",       "2024-02",    "2024-02-29",
                                       "2000-02-29", "0001-01-01", "1999-12-31"};
    static const char *const bad[] = {
        "2024-02-30", "2023-02-29",  "1900-02-29", "2024-13",   "2024-00",
        "2024-04-31", "0000",        "24",         "2024-1-01", "2024-01-01T10:00:00Z",
        "2024/01/01", "2024-01-01 ", "20240101"};
    char buf[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(buf, sizeof(buf), "{" PAT ",'birthDate':'%s'}", good[i]);
        expect_ok(buf);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{" PAT ",'birthDate':'%s'}", bad[i]);
        expect_bad(buf, "Patient.birthDate", "not a valid date");
    }
}

static void date_times(void **state)
{
    static const char *const good[] = {
        "2024",
        "2024-03",
        "2024-03-01",
        "2024-03-01T10:00:00Z",
        "2024-03-01T23:59:60+01:00",
        "2024-03-01T10:00:00.123456-05:00",
        "2024-03-01T00:00:00+14:00",
        "2024-03-01T00:00:00-13:59",
    };
    static const char *const bad[] = {
        "2024-03-01T10:00:00",       /* time without a zone */
        "2024-03-01T10:00Z",         /* no seconds */
        "2024-03-01T24:00:00Z",      /* hour 24 */
        "2024-03-01T10:60:00Z",      /* minute 60 */
        "2024-03-01T10:00:61Z",      /* second 61 */
        "2024-03-01T10:00:00.Z",     /* empty fraction */
        "2024-03-01T10:00:00+14:01", /* zone beyond 14:00 */
        "2024-03-01T10:00:00+0100",  /* zone without colon */
        "2024-02-30T10:00:00Z",      /* Feb 30 */
        "2024-03T10:00:00Z",         /* time on a partial date */
        "2024-03-01T",
        "2024-03-01t10:00:00Z",
    };
    char buf[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(buf, sizeof(buf), "{" OBS ",'effectiveDateTime':'%s'}", good[i]);
        expect_ok(buf);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{" OBS ",'effectiveDateTime':'%s'}", bad[i]);
        expect_bad(buf, "Observation.effectiveDateTime", "not a valid dateTime");
    }
    /* instant: full, with zone */
    expect_ok("{" OBS ",'issued':'2024-03-01T10:00:00.5Z'}");
    expect_bad("{" OBS ",'issued':'2024-03-01'}", "Observation.issued", "not a valid instant");
    expect_bad("{" OBS ",'issued':'2024-03-01T10:00:00'}", "Observation.issued",
               "not a valid instant");
    /* time */
    expect_ok("{" OBS ",'valueTime':'23:59:59.25'}");
    expect_bad("{" OBS ",'valueTime':'23:59'}", "Observation.valueTime", "not a valid time");
    expect_bad("{" OBS ",'valueTime':'10:00:00Z'}", "Observation.valueTime", "not a valid time");
    /* period start in a backbone of a datatype */
    expect_bad("{" PAT ",'name':[{'family':'x','period':{'start':'2024-02-30'}}]}",
               "Patient.name[0].period.start", "not a valid dateTime");
}

static void numbers(void **state)
{
    expect_ok("{" OBS ",'valueQuantity':{'value':-0.0001}}");
    expect_ok("{" OBS ",'valueQuantity':{'value':1e300}}");
    expect_ok("{" OBS ",'valueQuantity':{'value':12}}");
    expect_ok("{" OBS ",'valueInteger':-2147483648}");
    expect_bad("{" OBS ",'valueInteger':2147483648}", "Observation.valueInteger",
               "integer out of range");
    expect_bad("{" OBS ",'valueInteger':'5'}", "Observation.valueInteger", "not an integer");
    /* unsignedInt, positiveInt */
    expect_ok("{" PAT ",'photo':[{'size':0}]}");
    expect_bad("{" PAT ",'photo':[{'size':-1}]}", "Patient.photo[0].size", "integer out of range");
    expect_ok("{" OBS ",'valueSampledData':{'origin':{'value':0},'period':1,'dimensions':1}}");
    expect_bad("{" OBS ",'valueSampledData':{'origin':{'value':0},'period':1,'dimensions':0}}",
               "Observation.valueSampledData.dimensions", "integer out of range");
    /* 1e400 never reaches the validator: jansson refuses the overflow when parsing */
    json_error_t err;
    assert_null(json_loads("{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":1e400}}",
                           JSON_REJECT_DUPLICATES, &err));
    /* nor does NaN or an infinity: not JSON, and json_real refuses them */
    assert_null(json_real(HUGE_VAL));
}

static void strings_and_codes(void **state)
{
    expect_bad("{" PAT ",'id':'a b'}", "Patient.id", "not a valid id");
    expect_bad("{" PAT ",'id':'a_b'}", "Patient.id", "not a valid id");
    expect_ok("{" PAT ",'id':'A-1.b'}");
    char buf[256];
    snprintf(buf, sizeof(buf), "{" PAT ",'id':'%065d'}", 0);
    expect_bad(buf, "Patient.id", "not a valid id");
    snprintf(buf, sizeof(buf), "{" PAT ",'id':'%064d'}", 0);
    expect_ok(buf);
    expect_bad("{" PAT ",'gender':'fe  male'}", "Patient.gender", "not a valid code");
    expect_bad("{" PAT ",'gender':' female'}", "Patient.gender", "not a valid code");
    expect_bad("{" PAT ",'gender':''}", "Patient.gender", "empty string");
    expect_bad("{" PAT ",'name':[{'family':'   '}]}", "Patient.name[0].family",
               "whitespace-only string");
    expect_bad("{" PAT ",'name':[{'family':'a\\u0001b'}]}", "Patient.name[0].family",
               "control character in string");
    expect_ok("{" PAT ",'name':[{'text':'line1\\nline2\\ttab'}]}");
    expect_bad("{" PAT ",'implicitRules':'http://x y'}", "Patient.implicitRules",
               "not a valid uri");
    expect_ok("{" PAT ",'identifier':[{'system':'urn:oid:2.16.840.1.113883.4.1','value':'1'}]}");
    expect_ok("{'resourceType':'Device','udiCarrier':[{'deviceIdentifier':'1',"
              "'carrierAIDC':'aGVsbG8gd29ybGQ='}]}");
    expect_bad("{'resourceType':'Device','udiCarrier':[{'carrierAIDC':'aGVsbG8=x'}]}",
               "Device.udiCarrier[0].carrierAIDC", "not valid base64");
    expect_bad("{'resourceType':'Device','udiCarrier':[{'carrierAIDC':'a*b='}]}",
               "Device.udiCarrier[0].carrierAIDC", "not valid base64");
    /* oid and uuid by their R4 patterns (Extension.valueOid / valueUuid) */
    expect_ok("{" PAT ",'extension':[{'url':'http://e','valueOid':'urn:oid:1.2.3'}]}");
    expect_bad("{" PAT ",'extension':[{'url':'http://e','valueOid':'urn:oid:1.02'}]}",
               "Patient.extension[0].valueOid", "not a valid oid");
    expect_bad("{" PAT ",'extension':[{'url':'http://e','valueOid':'1.2.3'}]}",
               "Patient.extension[0].valueOid", "not a valid oid");
    expect_ok("{" PAT ",'extension':[{'url':'http://e',"
              "'valueUuid':'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a'}]}");
    expect_bad("{" PAT ",'extension':[{'url':'http://e',"
               "'valueUuid':'urn:uuid:61EBE359-bfdc-4613-8bf2-c5e300945f0a'}]}",
               "Patient.extension[0].valueUuid", "not a valid uuid");
    /* the narrative's div */
    expect_bad("{" PAT ",'text':{'status':'generated','div':'<p>x</p>'}}", "Patient.text.div",
               "not a div element");
    expect_bad("{" PAT ",'text':{'status':'generated'}}", "Patient.text.div",
               "required element missing");
    /* an embedded NUL (the caller's parser may allow it) */
    json_t *j = load("{" PAT "}");
    json_object_set_new(j, "gender", json_stringn("fe\0male", 7));
    expect_bad_json(j, "Patient.gender", "NUL in string");
    json_decref(j);
}

static void choices(void **state)
{
    expect_bad("{" OBS ",'valueFoo':1}", "Observation.valueFoo", "unknown element");
    expect_bad("{" OBS ",'valuequantity':{'value':1}}", "Observation.valuequantity",
               "unknown element");
    expect_bad("{" OBS ",'value':1}", "Observation.value", "unknown element");
    /* Age is not among Observation.value[x]'s types */
    expect_bad("{" OBS ",'valueAge':{'value':1}}", "Observation.valueAge", "unknown element");
    expect_bad("{" OBS ",'valueString':'a','valueBoolean':true}", "Observation.valueBoolean",
               "more than one type for a choice element");
    expect_ok("{" OBS ",'valueCodeableConcept':{'text':'pos'}}");
    expect_ok("{" OBS ",'effectivePeriod':{'start':'2024'}}");
    expect_bad("{" OBS ",'effectiveDateTime':'2024-01-01T10:00:00'}",
               "Observation.effectiveDateTime", "not a valid dateTime");
    /* SimpleQuantity has no comparator */
    expect_bad("{" OBS ",'referenceRange':[{'low':{'value':1,'comparator':'<'}}]}",
               "Observation.referenceRange[0].low.comparator", "unknown element");
    /* component.referenceRange is the contentReference of Observation.referenceRange */
    expect_bad("{" OBS ",'component':[{'code':{'text':'a'},'referenceRange':[{'foo':1}]}]}",
               "Observation.component[0].referenceRange[0].foo", "unknown element");
}

static void primitive_extensions(void **state)
{
    expect_ok("{" PAT ",'_birthDate':{'extension':[{'url':'http://e','valueCode':'unknown'}]}}");
    expect_ok("{" PAT ",'name':[{'given':['a',null],'_given':[null,{'id':'x'}]}]}");
    expect_ok("{" PAT ",'name':[{'_given':[{'id':'x'}]}]}");
    expect_bad("{" PAT ",'name':[{'given':['a',null]}]}", "Patient.name[0].given[1]", "null value");
    expect_bad("{" PAT ",'name':[{'given':['a',null],'_given':[null,null]}]}",
               "Patient.name[0].given[1]", "null value");
    expect_bad("{" PAT ",'name':[{'given':['a','b'],'_given':[{'id':'x'}]}]}",
               "Patient.name[0].given", "primitive and extension arrays differ in length");
    expect_bad("{" PAT ",'name':[{'_given':[{'id':'x'},null]}]}", "Patient.name[0].given[1]",
               "null value");
    expect_bad("{" PAT ",'_birthDate':{'foo':1}}", "Patient.birthDate.foo", "unknown element");
    expect_bad("{" PAT ",'_birthDate':{'extension':[{'valueCode':'x'}]}}",
               "Patient.birthDate.extension[0].url", "required element missing");
    expect_bad("{" PAT ",'_birthDate':'x'}", "Patient.birthDate", "not an object");
    expect_bad("{" PAT ",'_birthDate':{}}", "Patient.birthDate", "empty object");
    /* not beside a complex element, nor Resource.id / Element.id / Extension.url */
    expect_bad("{" PAT ",'_name':[{'id':'x'}]}", "Patient._name", "unknown element");
    expect_bad("{" PAT ",'_id':{'id':'x'}}", "Patient._id", "unknown element");
    expect_bad("{" PAT ",'extension':[{'url':'http://e','_url':{'id':'x'},'valueString':'v'}]}",
               "Patient.extension[0]._url", "unknown element");
    /* the choice of _valueX counts as the choice */
    expect_ok("{" OBS ",'_valueString':{'id':'x'}}");
    expect_bad("{" OBS ",'valueBoolean':true,'_valueString':{'id':'x'}}",
               "Observation._valueString", "more than one type for a choice element");
    /* a required primitive given only by its extension */
    expect_ok("{'resourceType':'Observation','_status':{'extension':[{'url':'http://e',"
              "'valueCode':'unknown'}]},'code':{'text':'x'}}");
}

static void resource_types(void **state)
{
    expect_bad("{'resourceType':'Condition'}", "Resource.resourceType",
               "resource type not supported");
    expect_bad("{'resourceType':'patient'}", "Resource.resourceType",
               "resource type not supported");
    expect_bad("{'id':'x'}", "Resource.resourceType", "resourceType missing");
    expect_bad("{'resourceType':7}", "Resource.resourceType", "resourceType is not a string");
    expect_bad("[]", "Resource", "not a JSON object");
    char path[16], why[16];
    assert_int_equal(hdx_fhir_validate(NULL, path, sizeof(path), why, sizeof(why)), HDX_E_INVAL);
    assert_string_equal(path, "Resource");
    assert_int_equal(hdx_fhir_type_supported("Patient"), 1);
    assert_int_equal(hdx_fhir_type_supported("Bundle"), 1);
    assert_int_equal(hdx_fhir_type_supported("AuditEvent"), 1);
    assert_int_equal(hdx_fhir_type_supported("Condition"), 0);
    assert_int_equal(hdx_fhir_type_supported("Resource"), 0);
    assert_int_equal(hdx_fhir_type_supported("Observation.component"), 0);
    assert_int_equal(hdx_fhir_type_supported("Extension"), 0);
    assert_int_equal(hdx_fhir_type_supported(""), 0);
    assert_int_equal(hdx_fhir_type_supported(NULL), 0);
}

static void bundles(void **state)
{
    expect_bad("{'resourceType':'Bundle','type':'collection','entry':[{'resource':{" PAT "}},"
               "{'resource':{'resourceType':'Observation','code':{'text':'x'}}}]}",
               "Bundle.entry[1].resource.status", "required element missing");
    expect_bad("{'resourceType':'Bundle','type':'collection','entry':[{'resource':{" PAT "}},"
               "{'resource':{" OBS ",'valueQuantity':{'value':'1'}}}]}",
               "Bundle.entry[1].resource.valueQuantity.value", "not a decimal");
    expect_bad("{'resourceType':'Bundle','type':'collection','entry':[{'resource':"
               "{'resourceType':'Condition'}}]}",
               "Bundle.entry[0].resource.resourceType", "resource type not supported");
    expect_bad("{'resourceType':'Bundle','type':'collection','entry':[{'resource':{'id':'x'}}]}",
               "Bundle.entry[0].resource.resourceType", "resourceType missing");
    expect_bad("{'resourceType':'Bundle'}", "Bundle.type", "required element missing");
    expect_bad("{'resourceType':'Bundle','type':'bag'}", "Bundle.type", "not a Bundle.type code");
    expect_bad("{'resourceType':'Bundle','type':'collection','total':'4'}", "Bundle.total",
               "not an integer");
    expect_bad("{'resourceType':'Bundle','type':'batch','entry':[{'request':{'method':'GET'}}]}",
               "Bundle.entry[0].request.url", "required element missing");
    expect_ok("{'resourceType':'Bundle','type':'batch-response','entry':[{'response':"
              "{'status':'201','outcome':{'resourceType':'OperationOutcome','issue':"
              "[{'severity':'information','code':'informational'}]}}}]}");
    /* a Bundle in a Bundle */
    expect_ok("{'resourceType':'Bundle','type':'collection','entry':[{'resource':"
              "{'resourceType':'Bundle','type':'searchset','entry':[{'resource':{" PAT "}}]}}]}");
}

static void invariants(void **state)
{
    /* ext-1: value[x] or extension, exactly one */
    expect_bad("{" PAT ",'extension':[{'url':'http://e'}]}", "Patient.extension[0]",
               "extension needs value[x] or extension, not both");
    expect_bad("{" PAT ",'extension':[{'url':'http://e','valueString':'a','extension':"
               "[{'url':'b','valueString':'c'}]}]}",
               "Patient.extension[0]", "extension needs value[x] or extension, not both");
    expect_ok("{" PAT
              ",'extension':[{'url':'http://e','extension':[{'url':'b','valueString':'c'}]}]}");
    /* dom-2: a contained resource holds no resources */
    expect_ok("{" OBS ",'contained':[{" PAT ",'id':'p'}],'subject':{'reference':'#p'}}");
    expect_bad("{" OBS ",'contained':[{" PAT ",'contained':[{" PAT "}]}]}",
               "Observation.contained[0].contained[0]",
               "a contained resource holds no resources (dom-2)");
    expect_bad("{" OBS ",'contained':[{'resourceType':'Bundle','type':'collection','entry':"
               "[{'resource':{" PAT "}}]}]}",
               "Observation.contained[0].entry[0].resource",
               "a contained resource holds no resources (dom-2)");
    expect_bad("{" OBS ",'contained':[{'resourceType':'Condition'}]}",
               "Observation.contained[0].resourceType", "resource type not supported");
}

/* Patient + n nested extensions: the n-th sits at depth n + 1 */
static json_t *nested_extensions(int n)
{
    json_t *inner = json_pack("{s:s, s:s}", "url", "http://e", "valueString", "v");
    for (int i = 1; i < n; i++)
        inner = json_pack("{s:s, s:[o]}", "url", "http://e", "extension", inner);
    json_t *res = json_pack("{s:s, s:[o]}", "resourceType", "Patient", "extension", inner);
    assert_non_null(res);
    return res;
}

static void limits(void **state)
{
    json_t *j = nested_extensions(HDX_FHIR_DEPTH_MAX - 1); /* deepest object at depth 32 */
    expect_ok_json(j);
    json_decref(j);
    j = nested_extensions(HDX_FHIR_DEPTH_MAX);
    char want[HDX_FHIR_PATH_CAP] = "Patient";
    for (int i = 0; i < HDX_FHIR_DEPTH_MAX; i++)
        strcat(want, ".extension[0]");
    expect_bad_json(j, want, "nesting too deep");
    json_decref(j);
    /* far deeper than the limit: refused, no stack blown */
    j = nested_extensions(1500);
    char path[64], why[64];
    assert_int_equal(hdx_fhir_validate(j, path, sizeof(path), why, sizeof(why)), HDX_E_INVAL);
    assert_string_equal(why, "nesting too deep");
    assert_int_equal(strlen(path), sizeof(path) - 1); /* cut to fit, terminated */
    json_decref(j);

    /* element count: resourceType 1, identifier 2, each item 2 more */
    j = json_pack("{s:s}", "resourceType", "Patient");
    json_t *ids = json_array();
    for (int i = 0; i < HDX_FHIR_NODES_MAX / 2; i++)
        json_array_append_new(ids, json_pack("{s:s}", "value", "x"));
    json_object_set_new(j, "identifier", ids);
    expect_bad_json(j, "Patient.identifier[49999]", "too many elements");
    json_array_remove(ids, 0);
    expect_ok_json(j);
    json_decref(j);

    /* a long path into a tiny buffer */
    j = load("{" PAT ",'name':[{'family':'x','nickname':'y'}]}");
    assert_int_equal(hdx_fhir_validate(j, path, 8, why, 4), HDX_E_INVAL);
    assert_string_equal(path, "Patient");
    assert_string_equal(why, "unk");
    assert_int_equal(hdx_fhir_validate(j, NULL, 0, NULL, 0), HDX_E_INVAL);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_files),
        cmocka_unit_test(invalid_files),
        cmocka_unit_test(every_type_minimal),
        cmocka_unit_test(unknown_elements),
        cmocka_unit_test(wrong_json_types),
        cmocka_unit_test(cardinality),
        cmocka_unit_test(dates),
        cmocka_unit_test(date_times),
        cmocka_unit_test(numbers),
        cmocka_unit_test(strings_and_codes),
        cmocka_unit_test(choices),
        cmocka_unit_test(primitive_extensions),
        cmocka_unit_test(resource_types),
        cmocka_unit_test(bundles),
        cmocka_unit_test(invariants),
        cmocka_unit_test(limits),
        cmocka_unit_test(every_member_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
