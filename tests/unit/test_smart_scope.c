/* auth/smart_scope: the SMART v2 scope grammar (and v1 forms), refusals naming the term, the
 * per-interaction check, the token's scopes as requested narrowed by granted, and the
 * canonical text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/smart_scope.h"
#include "core/err.h"

static char why[64];

static int parse(const char *text, struct hdx_smart_scopes *s)
{
    return hdx_smart_scope_parse(text, strlen(text), s, why, sizeof(why));
}

static void expect_canon(const char *text, const char *canon)
{
    struct hdx_smart_scopes s;
    char out[HDX_SMART_SCOPE_TEXT_MAX + 1];
    assert_int_equal(parse(text, &s), HDX_OK);
    assert_string_equal(why, "");
    assert_int_equal(hdx_smart_scope_format(&s, out, sizeof(out)), HDX_OK);
    assert_string_equal(out, canon);
    /* the canonical text parses to itself */
    struct hdx_smart_scopes s2;
    char out2[HDX_SMART_SCOPE_TEXT_MAX + 1];
    assert_int_equal(parse(out, &s2), HDX_OK);
    assert_int_equal(hdx_smart_scope_format(&s2, out2, sizeof(out2)), HDX_OK);
    assert_string_equal(out2, out);
}

static void expect_refused(const char *text, int rc, const char *code)
{
    struct hdx_smart_scopes s;
    assert_int_equal(parse(text, &s), rc);
    assert_string_equal(why, code);
    assert_int_equal(s.n, 0);
}

static void test_v2_and_canonical(void **state)
{
    expect_canon("system/Observation.rs system/Patient.r patient/*.cruds user/Observation.r",
                 "patient/*.cruds user/Observation.r system/Observation.rs system/Patient.r");
    expect_canon("system/Observation.c system/Observation.u system/Observation.r",
                 "system/Observation.cru"); /* merged */
    expect_canon("system/*.d system/Encounter.s", "system/*.d system/Encounter.s");
    expect_canon("", "");
    expect_canon("system/A.cd", "system/A.cd");
}

static void test_v1_forms(void **state)
{
    expect_canon("system/Observation.read", "system/Observation.rs");
    expect_canon("system/Observation.write", "system/Observation.cud");
    expect_canon("system/Observation.*", "system/Observation.cruds");
    expect_canon("user/*.read system/Patient.write system/Patient.read",
                 "user/*.rs system/Patient.cruds");
}

static void test_refusals(void **state)
{
    expect_refused("system/Observation.sr", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Observation.rr", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Observation.", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Observation.x", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Observation.READ", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Observation.rs?category=laboratory", HDX_E_INVAL,
                   "term 1: bad_permissions");
    expect_refused("system/Patient.r openid", HDX_E_INVAL, "term 2: bad_context");
    expect_refused("system/Patient.r launch/patient", HDX_E_INVAL, "term 2: bad_context");
    expect_refused("System/Patient.r", HDX_E_INVAL, "term 1: bad_context");
    expect_refused("/Patient.r", HDX_E_INVAL, "term 1: bad_context");
    expect_refused("system/patient.r", HDX_E_INVAL, "term 1: bad_resource");
    expect_refused("system/Pat1ent.r", HDX_E_INVAL, "term 1: bad_resource");
    expect_refused("system/.r", HDX_E_INVAL, "term 1: bad_resource");
    expect_refused("system/**.r", HDX_E_INVAL, "term 1: bad_resource");
    expect_refused("system/Patient", HDX_E_INVAL, "term 1: bad_resource");
    expect_refused("system/Patient.r.r", HDX_E_INVAL, "term 1: bad_permissions");
    expect_refused("system/Patient.r  system/A.r", HDX_E_INVAL, "term 2: empty_term");
    expect_refused(" system/Patient.r", HDX_E_INVAL, "term 1: empty_term");
    expect_refused("system/Patient.r ", HDX_E_INVAL, "term 2: empty_term");
    expect_refused("system/Patient.r\tsystem/A.r", HDX_E_INVAL, "term 1: bad_permissions");
    char t[128];
    memset(t, 'a', sizeof(t));
    memcpy(t, "system/A", 8);
    memcpy(t + 8 + 63, ".r", 3); /* "A" + 63 letters: 64 */
    expect_canon(t, t);
    memcpy(t + 8 + 64, ".r", 3); /* 65 */
    t[8 + 63] = 'a';
    expect_refused(t, HDX_E_INVAL, "term 1: bad_resource");
    /* an embedded NUL */
    struct hdx_smart_scopes s;
    assert_int_equal(hdx_smart_scope_parse("system/A.r\0", 11, &s, why, sizeof(why)), HDX_E_INVAL);
    assert_string_equal(why, "term 1: bad_permissions");
}

static void test_limits(void **state)
{
    char t[HDX_SMART_SCOPE_IN_MAX + 64];
    size_t o = 0;
    for (int i = 0; i < 32; i++)
        o += (size_t)snprintf(t + o, sizeof(t) - o, "%ssystem/T%c.r", i ? " " : "", 'A' + i % 26);
    struct hdx_smart_scopes s;
    assert_int_equal(parse(t, &s), HDX_OK);
    snprintf(t + o, sizeof(t) - o, " system/Z.r");
    expect_refused(t, HDX_E_TOOBIG, "too_many_terms");
    memset(t, 'a', sizeof(t) - 1);
    t[HDX_SMART_SCOPE_IN_MAX + 1] = 0;
    expect_refused(t, HDX_E_TOOBIG, "too_long");
    assert_int_equal(hdx_smart_scope_parse(NULL, 1, &s, why, sizeof(why)), HDX_E_INVAL);
    assert_int_equal(hdx_smart_scope_parse(NULL, 0, &s, why, sizeof(why)), HDX_OK);
}

static void test_allows(void **state)
{
    struct hdx_smart_scopes s;
    assert_int_equal(parse("system/Observation.rs system/Patient.r patient/*.cruds", &s), HDX_OK);
    assert_true(hdx_smart_scope_allows(&s, "system", "Observation", 'r'));
    assert_true(hdx_smart_scope_allows(&s, "system", "Observation", 's'));
    assert_false(hdx_smart_scope_allows(&s, "system", "Observation", 'c'));
    assert_true(hdx_smart_scope_allows(&s, "system", "Patient", 'r'));
    assert_false(hdx_smart_scope_allows(&s, "system", "Patient", 's'));
    assert_false(hdx_smart_scope_allows(&s, "system", "Encounter", 'r'));
    assert_true(hdx_smart_scope_allows(&s, "patient", "Encounter", 'd'));
    assert_false(hdx_smart_scope_allows(&s, "user", "Observation", 'r'));
    assert_false(hdx_smart_scope_allows(&s, "System", "Observation", 'r'));
    assert_false(hdx_smart_scope_allows(&s, "system", "Observation", 'x'));
    assert_false(hdx_smart_scope_allows(&s, "system", "Observation", 0));
    assert_false(hdx_smart_scope_allows(&s, "system", "Observationx", 'r'));
    assert_false(hdx_smart_scope_allows(&s, "system", "*", 'r')); /* no system wildcard */
    assert_true(hdx_smart_scope_allows(&s, "patient", "*", 'r'));
    assert_false(hdx_smart_scope_allows(NULL, "system", "Patient", 'r'));
}

static void intersect(const char *req, const char *granted, const char *want)
{
    struct hdx_smart_scopes r, g, o;
    char out[HDX_SMART_SCOPE_TEXT_MAX + 1];
    assert_int_equal(parse(req, &r), HDX_OK);
    assert_int_equal(parse(granted, &g), HDX_OK);
    assert_int_equal(hdx_smart_scope_intersect(&r, &g, &o), HDX_OK);
    assert_int_equal(hdx_smart_scope_format(&o, out, sizeof(out)), HDX_OK);
    assert_string_equal(out, want);
}

static void test_intersect(void **state)
{
    const char *g = "system/Observation.rs system/Patient.r";
    intersect("", g, "system/Observation.rs system/Patient.r");
    intersect("system/Observation.r", g, "system/Observation.r");
    intersect("system/Observation.cruds", g, "system/Observation.rs");
    intersect("system/Observation.c", g, "");
    intersect("system/Encounter.r", g, "");
    intersect("patient/Observation.r", g, ""); /* other context */
    intersect("system/*.rs", g, "system/Observation.rs system/Patient.r");
    intersect("system/Observation.read", "system/*.r", "system/Observation.r");
    intersect("system/*.cruds", "system/*.rs", "system/*.rs");
    intersect("system/*.r system/Patient.rs", "system/*.rs", "system/*.r system/Patient.rs");
    struct hdx_smart_scopes a, b;
    assert_int_equal(parse(g, &a), HDX_OK);
    assert_int_equal(hdx_smart_scope_intersect(&a, &b, &a), HDX_E_INVAL);
    /* the most terms two parsed sets can give fit */
    char rq[HDX_SMART_SCOPE_IN_MAX], gr[HDX_SMART_SCOPE_IN_MAX];
    size_t ro = 0, go = 0;
    for (int i = 0; i < 32; i++) {
        ro += (size_t)snprintf(rq + ro, sizeof(rq) - ro, "%ssystem/R%c%c.r", i ? " " : "",
                               'a' + i / 26, 'a' + i % 26);
        go += (size_t)snprintf(gr + go, sizeof(gr) - go, "%ssystem/G%c%c.r", i ? " " : "",
                               'a' + i / 26, 'a' + i % 26);
    }
    memcpy(rq + ro - 12, "system/*.r", 11); /* the last requested term: a wildcard */
    memcpy(gr + go - 12, "system/*.r", 11);
    struct hdx_smart_scopes r, gg, o;
    assert_int_equal(parse(rq, &r), HDX_OK);
    assert_int_equal(parse(gr, &gg), HDX_OK);
    assert_int_equal(hdx_smart_scope_intersect(&r, &gg, &o), HDX_OK);
    assert_int_equal(o.n, 63); /* 31 + 31 named types, and the wildcard */
}

static void test_format_short(void **state)
{
    struct hdx_smart_scopes s;
    char out[8];
    assert_int_equal(parse("system/Observation.rs", &s), HDX_OK);
    assert_int_equal(hdx_smart_scope_format(&s, out, sizeof(out)), HDX_E_TOOBIG);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_and_canonical), cmocka_unit_test(test_v1_forms),
        cmocka_unit_test(test_refusals),         cmocka_unit_test(test_limits),
        cmocka_unit_test(test_allows),           cmocka_unit_test(test_intersect),
        cmocka_unit_test(test_format_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
