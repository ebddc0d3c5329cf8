/* policy: the one decision point every front end asks (DESIGN M8). Pure: it decides and never
 * writes; the caller turns the decision into an audit record. Default deny.
 *
 * A request is (principal, role, action, resource kind, patient token, purpose of use, time,
 * whether the principal's session passed MFA). People are the roles admin, security-officer,
 * auditor, clinician, nurse and researcher; integration is a service; device, subscriber and
 * gateway are machines. The decision, in this order (docs/POLICY.md has the table, and
 * tests/data/policy-rules.txt the same rules as data, against which the engine is checked
 * for every combination):
 *   1. the role must hold the permission (resource kind x action), one table in policy.c
 *   2. a person needs an MFA session for anything; for records, a training date within the
 *      period
 *   3. purpose of use: a researcher reads only for research, and only a researcher does;
 *      break-glass is for treatment
 *   4. the patient's consent: a directive denying this purpose or this recipient role
 *      denies a disclosure (read, subscribe, export), unless the reader holds a break-glass
 *      grant for the patient and the purpose is treatment
 *   5. the patient compartment: clinicians and nurses reach only patients on their care
 *      teams; a clinician may instead hold an active grant (time-limited). A decision that
 *      rests on a grant says HDX_PR_PERMIT_BREAK_GLASS, which the audit flags for review
 *   6. services and subscribers see only their granted scope: the caller applies the scope
 *      (a subscription's filter) to each record before it asks
 * The data (care teams, consent, training dates, grants) is held in hash sets built by the
 * caller from the store; a decision is a few lookups (docs/PERFORMANCE.md: p99 well under 2 µs
 * with 10,000 users and 100,000 care-team entries).
 * Thread: a struct hdx_policy is read-only once built; build a new one and swap to change it. */
#ifndef HDX_POLICY_H
#define HDX_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define HDX_POLICY_TOKEN_LEN 16 /* a patient's blind token: crypto/keys.h HDX_BLIND_LEN */

enum hdx_role {
    HDX_ROLE_NONE = 0,
    HDX_ROLE_ADMIN,
    HDX_ROLE_SECURITY_OFFICER,
    HDX_ROLE_AUDITOR,
    HDX_ROLE_CLINICIAN,
    HDX_ROLE_NURSE,
    HDX_ROLE_RESEARCHER,
    HDX_ROLE_INTEGRATION,
    HDX_ROLE_DEVICE,
    HDX_ROLE_SUBSCRIBER,
    HDX_ROLE_GATEWAY,
    HDX_ROLE_COUNT
};

enum hdx_resource {
    HDX_RES_RECORD = 0, /* clinical records: PHI */
    HDX_RES_STREAM,     /* a device's own stream (write) */
    HDX_RES_AUDIT,
    HDX_RES_USER,
    HDX_RES_DEVICE,
    HDX_RES_CARETEAM,
    HDX_RES_CONSENT,
    HDX_RES_CONFIG,
    HDX_RES_COUNT
};

enum hdx_action {
    HDX_ACT_READ = 0,
    HDX_ACT_WRITE,
    HDX_ACT_SUBSCRIBE,
    HDX_ACT_EXPORT,
    HDX_ACT_ADMIN, /* create, change, remove */
    HDX_ACT_BREAK_GLASS,
    HDX_ACT_COUNT
};

enum hdx_purpose {
    HDX_PURPOSE_TREATMENT = 0,
    HDX_PURPOSE_PAYMENT,
    HDX_PURPOSE_OPERATIONS,
    HDX_PURPOSE_RESEARCH,
    HDX_PURPOSE_COUNT
};

enum hdx_policy_reason {
    HDX_PR_PERMIT = 0,
    HDX_PR_PERMIT_BREAK_GLASS,
    HDX_PR_UNKNOWN_ROLE,
    HDX_PR_ROLE, /* the role lacks the permission */
    HDX_PR_MFA_REQUIRED,
    HDX_PR_TRAINING, /* training missing or expired */
    HDX_PR_PURPOSE,  /* purpose not allowed for the role */
    HDX_PR_CONSENT,
    HDX_PR_NOT_ON_CARE_TEAM,
    HDX_PR_NO_PATIENT, /* a per-patient decision without a patient */
    HDX_PR_COUNT
};

struct hdx_policy;

struct hdx_policy_request {
    const char *principal; /* user or device name */
    enum hdx_role role;
    int mfa; /* the session passed its second factor */
    enum hdx_action action;
    enum hdx_resource resource;
    const uint8_t *patient; /* HDX_POLICY_TOKEN_LEN bytes, or NULL: not patient-specific */
    enum hdx_purpose purpose;
    int64_t now_us;
};

struct hdx_policy_decision {
    int permit;
    enum hdx_policy_reason reason;
};

int hdx_policy_new(int64_t training_period_days, struct hdx_policy **out);
void hdx_policy_free(struct hdx_policy *p);

/* Policy data; each returns HDX_OK or HDX_E_NOMEM. */
int hdx_policy_careteam_add(struct hdx_policy *p, const char *user, const uint8_t *patient);
/* Denies purpose (purpose >= 0) or a recipient role (role != NONE) for the patient. */
int hdx_policy_consent_deny(struct hdx_policy *p, const uint8_t *patient, int purpose,
                            enum hdx_role role);
/* Training completed at this time (0: never). */
int hdx_policy_training_set(struct hdx_policy *p, const char *user, int64_t completed_us);
/* An active emergency access of user to patient until expires_us. */
int hdx_policy_break_glass_add(struct hdx_policy *p, const char *user, const uint8_t *patient,
                               int64_t expires_us);

void hdx_policy_decide(const struct hdx_policy *p, const struct hdx_policy_request *req,
                       struct hdx_policy_decision *out);

/* Names, as in the store, the rules table and the audit records. */
const char *hdx_role_name(enum hdx_role r);
enum hdx_role hdx_role_parse(const char *name); /* HDX_ROLE_NONE if unknown */
const char *hdx_action_name(enum hdx_action a);
const char *hdx_resource_name(enum hdx_resource r);
const char *hdx_purpose_name(enum hdx_purpose p);
int hdx_purpose_parse(const char *name); /* -1 if unknown */
const char *hdx_policy_reason_name(enum hdx_policy_reason r);

/* 1 when the role has the permission at all (rule 1 only). */
int hdx_policy_role_has(enum hdx_role role, enum hdx_resource res, enum hdx_action act);

#endif
