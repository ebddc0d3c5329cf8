/* The policy engine against its specification as data (tests/data/policy-rules.txt), for
 * every combination of the request's and the data's dimensions; plus the names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "policy/policy.h"

/* ---------- the specification ---------- */

enum dim {
    D_ROLE,
    D_ACTION,
    D_RESOURCE,
    D_PERM,
    D_MFA,
    D_TRAINING,
    D_PATIENT,
    D_TEAM,
    D_CONSENT,
    D_PURPOSE,
    D_GRANT,
    D_COUNT
};
static const char *const dim_names[D_COUNT] = {"role",    "action",   "resource", "perm",
                                               "mfa",     "training", "patient",  "team",
                                               "consent", "purpose",  "grant"};
static const char *const training_v[] = {"ok", "expired", "none"};
static const char *const yesno_v[] = {"no", "yes"};
static const char *const mfa_v[] = {"0", "1"};
static const char *const team_v[] = {"in", "out"};
static const char *const consent_v[] = {"none", "purpose", "role", "other"};
static const char *const grant_v[] = {"none", "active", "expired"};

#define RULES_MAX 64
#define VALS_MAX 12
struct cond {
    int dim, negate;
    char vals[VALS_MAX][24];
    int nvals;
};
struct rule {
    int permit;
    char reason[32];
    struct cond conds[D_COUNT];
    int nconds;
};
static struct rule rules[RULES_MAX];
static int nrules;
static unsigned perm[HDX_ROLE_COUNT][HDX_RES_COUNT];

static int dim_of(const char *k)
{
    for (int i = 0; i < D_COUNT; i++)
        if (strcmp(dim_names[i], k) == 0) return i;
    return -1;
}

static int action_of(const char *s)
{
    for (int a = 0; a < HDX_ACT_COUNT; a++)
        if (strcmp(hdx_action_name((enum hdx_action)a), s) == 0) return a;
    return -1;
}

static int resource_of(const char *s)
{
    for (int r = 0; r < HDX_RES_COUNT; r++)
        if (strcmp(hdx_resource_name((enum hdx_resource)r), s) == 0) return r;
    return -1;
}

static void load_rules(void)
{
    char path[4096], line[512];
    const char *dir = getenv("HDX_TEST_DATA");
    snprintf(path, sizeof(path), "%s/policy-rules.txt", dir ? dir : "tests/data");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        char *save = NULL, *tok = strtok_r(line, " \t\n", &save);
        if (!tok || tok[0] == '#') continue;
        if (strcmp(tok, "perm") == 0) {
            char *role = strtok_r(NULL, " \t\n", &save), *res = strtok_r(NULL, " \t\n", &save);
            char *acts = strtok_r(NULL, " \t\n", &save), *s2 = NULL;
            assert_non_null(acts);
            enum hdx_role r = hdx_role_parse(role);
            int rs = resource_of(res);
            assert_true(r != HDX_ROLE_NONE && rs >= 0);
            for (char *a = strtok_r(acts, ",", &s2); a; a = strtok_r(NULL, ",", &s2)) {
                int act = action_of(a);
                assert_true(act >= 0);
                perm[r][rs] |= 1u << act;
            }
            continue;
        }
        assert_string_equal(tok, "rule");
        assert_true(nrules < RULES_MAX);
        struct rule *ru = &rules[nrules++];
        char *eff = strtok_r(NULL, " \t\n", &save), *why = strtok_r(NULL, " \t\n", &save);
        assert_non_null(why);
        ru->permit = strcmp(eff, "permit") == 0;
        snprintf(ru->reason, sizeof(ru->reason), "%s", why);
        while ((tok = strtok_r(NULL, " \t\n", &save))) {
            struct cond *c = &ru->conds[ru->nconds++];
            char *eq = strchr(tok, '='), *s2 = NULL;
            assert_non_null(eq);
            c->negate = eq > tok && eq[-1] == '!';
            eq[c->negate ? -1 : 0] = 0;
            c->dim = dim_of(tok);
            assert_true(c->dim >= 0);
            for (char *v = strtok_r(eq + 1, ",", &s2); v; v = strtok_r(NULL, ",", &s2))
                snprintf(c->vals[c->nvals++], sizeof(c->vals[0]), "%s", v);
        }
    }
    fclose(f);
    assert_true(nrules > 0);
}

/* The specification's answer for one combination, given as the dimension values. */
static void spec_decide(const char *v[D_COUNT], int *permit, const char **reason)
{
    for (int i = 0; i < nrules; i++) {
        const struct rule *ru = &rules[i];
        int match = 1;
        for (int k = 0; k < ru->nconds && match; k++) {
            const struct cond *c = &ru->conds[k];
            int in = 0;
            for (int j = 0; j < c->nvals; j++)
                in |= strcmp(c->vals[j], v[c->dim]) == 0;
            match = c->negate ? !in : in;
        }
        if (match) {
            *permit = ru->permit;
            *reason = ru->reason;
            return;
        }
    }
    *permit = 1;
    *reason = "permit";
}

/* ---------- the engine, set up for the same combination ---------- */

static const uint8_t patient[HDX_POLICY_TOKEN_LEN] = {0x11, 0x22, 0x33};
static const uint8_t other_patient[HDX_POLICY_TOKEN_LEN] = {0x44};

static void engine_decide(int role, int act, int res, int mfa, int training, int has_patient,
                          int team, int consent, int purpose, int grant, int *permit,
                          const char **reason)
{
    const int64_t now = 1800000000LL * 1000000LL, day = 86400LL * 1000000LL;
    struct hdx_policy *p = NULL;
    assert_int_equal(hdx_policy_new(365, &p), HDX_OK);
    if (training == 0) assert_int_equal(hdx_policy_training_set(p, "u1", now - day), HDX_OK);
    if (training == 1) assert_int_equal(hdx_policy_training_set(p, "u1", now - 400 * day), 0);
    assert_int_equal(hdx_policy_careteam_add(p, "u1", other_patient), HDX_OK);
    assert_int_equal(hdx_policy_careteam_add(p, "u2", patient), HDX_OK); /* someone else's */
    if (team == 0) assert_int_equal(hdx_policy_careteam_add(p, "u1", patient), HDX_OK);
    if (consent == 1) assert_int_equal(hdx_policy_consent_deny(p, patient, purpose, 0), HDX_OK);
    if (consent == 2)
        assert_int_equal(hdx_policy_consent_deny(p, patient, -1, (enum hdx_role)role), HDX_OK);
    if (consent == 3) {
        enum hdx_role other = role == HDX_ROLE_GATEWAY ? HDX_ROLE_ADMIN : HDX_ROLE_GATEWAY;
        assert_int_equal(
            hdx_policy_consent_deny(p, patient, (purpose + 1) % HDX_PURPOSE_COUNT, other), HDX_OK);
    }
    if (grant == 1) assert_int_equal(hdx_policy_break_glass_add(p, "u1", patient, now + day), 0);
    if (grant == 2) assert_int_equal(hdx_policy_break_glass_add(p, "u1", patient, now - 1), 0);
    struct hdx_policy_request q = {"u1",
                                   (enum hdx_role)role,
                                   mfa,
                                   (enum hdx_action)act,
                                   (enum hdx_resource)res,
                                   has_patient ? patient : NULL,
                                   (enum hdx_purpose)purpose,
                                   now};
    struct hdx_policy_decision d;
    hdx_policy_decide(p, &q, &d);
    hdx_policy_free(p);
    *permit = d.permit;
    *reason = hdx_policy_reason_name(d.reason);
}

static void test_matrix(void **state)
{
    load_rules();
    long n = 0, permits = 0, mismatches = 0;
    for (int role = 0; role < HDX_ROLE_COUNT; role++)
        for (int act = 0; act < HDX_ACT_COUNT; act++)
            for (int res = 0; res < HDX_RES_COUNT; res++)
                for (int mfa = 0; mfa < 2; mfa++)
                    for (int tr = 0; tr < 3; tr++)
                        for (int pt = 0; pt < 2; pt++)
                            for (int team = 0; team < 2; team++)
                                for (int cons = 0; cons < 4; cons++)
                                    for (int pur = 0; pur < HDX_PURPOSE_COUNT; pur++)
                                        for (int gr = 0; gr < 3; gr++) {
                                            const char *v[D_COUNT];
                                            v[D_ROLE] = hdx_role_name((enum hdx_role)role);
                                            v[D_ACTION] = hdx_action_name((enum hdx_action)act);
                                            v[D_RESOURCE] =
                                                hdx_resource_name((enum hdx_resource)res);
                                            v[D_PERM] =
                                                yesno_v[role && (perm[role][res] >> act) & 1];
                                            v[D_MFA] = mfa_v[mfa];
                                            v[D_TRAINING] = training_v[tr];
                                            v[D_PATIENT] = yesno_v[pt ? 0 : 1];
                                            v[D_TEAM] = team_v[team];
                                            v[D_CONSENT] = consent_v[cons];
                                            v[D_PURPOSE] = hdx_purpose_name((enum hdx_purpose)pur);
                                            v[D_GRANT] = grant_v[gr];
                                            int sp, ep;
                                            const char *sr, *er;
                                            spec_decide(v, &sp, &sr);
                                            engine_decide(role, act, res, mfa, tr, !pt, team, cons,
                                                          pur, gr, &ep, &er);
                                            n++;
                                            permits += ep;
                                            if (sp != ep || strcmp(sr, er) != 0) {
                                                if (mismatches++ < 20)
                                                    fprintf(stderr,
                                                            "role=%s action=%s resource=%s "
                                                            "mfa=%s training=%s patient=%s "
                                                            "team=%s consent=%s purpose=%s "
                                                            "grant=%s: spec %s/%s engine "
                                                            "%s/%s\n",
                                                            v[0], v[1], v[2], v[4], v[5], v[6],
                                                            v[7], v[8], v[9], v[10],
                                                            sp ? "permit" : "deny", sr,
                                                            ep ? "permit" : "deny", er);
                                            }
                                        }
    fprintf(stderr, "policy matrix: %ld combinations, %ld permitted, %ld mismatches\n", n, permits,
            mismatches);
    assert_int_equal(mismatches, 0);
    assert_true(permits > 1000 && permits < n / 2); /* neither all-deny nor all-permit */
}

/* A few decisions spelled out, so that a reader sees the rules at work. */
static void test_examples(void **state)
{
    const int64_t now = 1800000000LL * 1000000LL;
    struct hdx_policy *p = NULL;
    struct hdx_policy_decision d;
    assert_int_equal(hdx_policy_new(365, &p), HDX_OK);
    assert_int_equal(hdx_policy_training_set(p, "dr-a", now - 1000000), HDX_OK);
    assert_int_equal(hdx_policy_careteam_add(p, "dr-a", patient), HDX_OK);
    struct hdx_policy_request q = {"dr-a",  HDX_ROLE_CLINICIAN,    1,  HDX_ACT_READ, HDX_RES_RECORD,
                                   patient, HDX_PURPOSE_TREATMENT, now};
    hdx_policy_decide(p, &q, &d);
    assert_true(d.permit);
    q.patient = other_patient; /* not on dr-a's care team */
    hdx_policy_decide(p, &q, &d);
    assert_false(d.permit);
    assert_int_equal(d.reason, HDX_PR_NOT_ON_CARE_TEAM);
    q.action = HDX_ACT_BREAK_GLASS;
    hdx_policy_decide(p, &q, &d);
    assert_true(d.permit); /* the claim itself */
    assert_int_equal(hdx_policy_break_glass_add(p, "dr-a", other_patient, now + 3600000000LL), 0);
    q.action = HDX_ACT_READ;
    hdx_policy_decide(p, &q, &d);
    assert_true(d.permit);
    assert_int_equal(d.reason, HDX_PR_PERMIT_BREAK_GLASS);
    q.now_us = now + 2 * 3600000000LL; /* the grant has expired */
    hdx_policy_decide(p, &q, &d);
    assert_false(d.permit);
    q = (struct hdx_policy_request){
        "mon-1", HDX_ROLE_DEVICE,       0,  HDX_ACT_READ, HDX_RES_RECORD,
        patient, HDX_PURPOSE_TREATMENT, now};
    hdx_policy_decide(p, &q, &d);
    assert_false(d.permit); /* a device reads nothing */
    assert_int_equal(d.reason, HDX_PR_ROLE);
    hdx_policy_free(p);
}

static void test_names(void **state)
{
    for (int r = 1; r < HDX_ROLE_COUNT; r++)
        assert_int_equal(hdx_role_parse(hdx_role_name((enum hdx_role)r)), r);
    assert_int_equal(hdx_role_parse("root"), HDX_ROLE_NONE);
    assert_int_equal(hdx_role_parse(""), HDX_ROLE_NONE);
    for (int i = 0; i < HDX_PURPOSE_COUNT; i++)
        assert_int_equal(hdx_purpose_parse(hdx_purpose_name((enum hdx_purpose)i)), i);
    assert_int_equal(hdx_purpose_parse("marketing"), -1);
    assert_false(hdx_policy_role_has(HDX_ROLE_COUNT, HDX_RES_RECORD, HDX_ACT_READ));
    assert_false(hdx_policy_role_has(HDX_ROLE_ADMIN, HDX_RES_RECORD, HDX_ACT_READ));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
