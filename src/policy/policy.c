#include "policy/policy.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define A(x) (1u << HDX_ACT_##x)

/* Rule 1: what each role may do to each kind of resource. Least privilege: those who
 * administer (admin, security-officer) and those who audit read no clinical record. */
static const unsigned perms[HDX_ROLE_COUNT][HDX_RES_COUNT] = {
    [HDX_ROLE_ADMIN] =
        {
            [HDX_RES_USER] = A(READ) | A(ADMIN),
            [HDX_RES_DEVICE] = A(READ) | A(ADMIN),
            [HDX_RES_CARETEAM] = A(READ) | A(ADMIN),
            [HDX_RES_CONSENT] = A(READ) | A(ADMIN),
            [HDX_RES_CONFIG] = A(READ) | A(ADMIN),
        },
    [HDX_ROLE_SECURITY_OFFICER] =
        {
            [HDX_RES_AUDIT] = A(READ) | A(EXPORT),
            [HDX_RES_USER] = A(READ) | A(ADMIN),
            [HDX_RES_DEVICE] = A(READ) | A(ADMIN),
            [HDX_RES_CONFIG] = A(READ),
        },
    [HDX_ROLE_AUDITOR] =
        {
            [HDX_RES_AUDIT] = A(READ) | A(EXPORT),
            [HDX_RES_USER] = A(READ),
            [HDX_RES_DEVICE] = A(READ),
        },
    [HDX_ROLE_CLINICIAN] =
        {
            [HDX_RES_RECORD] = A(READ) | A(WRITE) | A(SUBSCRIBE) | A(BREAK_GLASS),
            [HDX_RES_CARETEAM] = A(READ),
        },
    [HDX_ROLE_NURSE] =
        {
            [HDX_RES_RECORD] = A(READ) | A(WRITE) | A(SUBSCRIBE),
            [HDX_RES_CARETEAM] = A(READ),
        },
    [HDX_ROLE_RESEARCHER] = {[HDX_RES_RECORD] = A(READ) | A(EXPORT)},
    [HDX_ROLE_INTEGRATION] = {[HDX_RES_RECORD] = A(READ) | A(WRITE) | A(SUBSCRIBE) | A(EXPORT)},
    [HDX_ROLE_DEVICE] = {[HDX_RES_STREAM] = A(WRITE)},
    [HDX_ROLE_SUBSCRIBER] = {[HDX_RES_RECORD] = A(SUBSCRIBE)},
    [HDX_ROLE_GATEWAY] = {[HDX_RES_STREAM] = A(WRITE), [HDX_RES_RECORD] = A(SUBSCRIBE)},
};

/* ---------- a keyed hash set of (kind, name, patient) -> value ----------
 * A key is held as its 128-bit SipHash under a random per-policy key, inline in the table:
 * one cache line per lookup, 32 bytes per entry. Two distinct keys share a hash with
 * probability 2^-128, and nobody outside knows the hash key to aim for one. */

enum key_kind { K_CARETEAM = 1, K_CONSENT, K_TRAINING, K_GRANT };

struct slot {
    uint8_t key[crypto_shorthash_siphashx24_BYTES];
    int64_t value;
    uint64_t used;
};

struct hdx_policy {
    int64_t training_period_us;
    uint8_t hash_key[crypto_shorthash_siphashx24_KEYBYTES];
    struct slot *slots;
    size_t cap, n; /* cap a power of two, n <= cap / 2 */
};

static void key_of(const struct hdx_policy *p, uint8_t kind, const char *name,
                   const uint8_t *patient, uint8_t out[crypto_shorthash_siphashx24_BYTES])
{
    uint8_t buf[1 + 65 + HDX_POLICY_TOKEN_LEN];
    size_t n = 0, nl = name ? strnlen(name, 64) : 0;
    buf[n++] = kind;
    memcpy(buf + n, name ? name : "", nl);
    n += nl;
    buf[n++] = 0; /* names hold no NUL: no (name, patient) pair reads as another */
    if (patient) {
        memcpy(buf + n, patient, HDX_POLICY_TOKEN_LEN);
        n += HDX_POLICY_TOKEN_LEN;
    }
    crypto_shorthash_siphashx24(out, buf, n, p->hash_key);
}

static size_t home(const struct hdx_policy *p, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)h & (p->cap - 1);
}

static const struct slot *find(const struct hdx_policy *p, uint8_t kind, const char *name,
                               const uint8_t *patient)
{
    uint8_t key[crypto_shorthash_siphashx24_BYTES];
    if (!p->n) return NULL;
    key_of(p, kind, name, patient, key);
    for (size_t i = home(p, key);; i = (i + 1) & (p->cap - 1)) {
        const struct slot *e = &p->slots[i];
        if (!e->used) return NULL;
        if (memcmp(e->key, key, sizeof(key)) == 0) return e;
    }
}

static int grow(struct hdx_policy *p)
{
    size_t cap = p->cap ? p->cap * 2 : 1024;
    struct slot *s = calloc(cap, sizeof(*s));
    if (!s) return HDX_E_NOMEM;
    struct slot *old = p->slots;
    size_t old_cap = p->cap;
    p->slots = s;
    p->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used) continue;
        size_t j = home(p, old[i].key);
        while (s[j].used)
            j = (j + 1) & (cap - 1);
        s[j] = old[i];
    }
    free(old);
    return HDX_OK;
}

/* The entry for the key, made (value 0) if absent. */
static struct slot *upsert(struct hdx_policy *p, uint8_t kind, const char *name,
                           const uint8_t *patient)
{
    uint8_t key[crypto_shorthash_siphashx24_BYTES];
    if ((p->n + 1) * 2 > p->cap && grow(p) != HDX_OK) return NULL;
    key_of(p, kind, name, patient, key);
    size_t i = home(p, key);
    for (; p->slots[i].used; i = (i + 1) & (p->cap - 1))
        if (memcmp(p->slots[i].key, key, sizeof(key)) == 0) return &p->slots[i];
    memcpy(p->slots[i].key, key, sizeof(key));
    p->slots[i].used = 1;
    p->slots[i].value = 0;
    p->n++;
    return &p->slots[i];
}

int hdx_policy_new(int64_t training_period_days, struct hdx_policy **out)
{
    struct hdx_policy *p = calloc(1, sizeof(*p));
    if (!p || sodium_init() < 0) {
        free(p);
        return HDX_E_NOMEM;
    }
    p->training_period_us = training_period_days * 86400LL * 1000000LL;
    randombytes_buf(p->hash_key, sizeof(p->hash_key));
    *out = p;
    return HDX_OK;
}

void hdx_policy_free(struct hdx_policy *p)
{
    if (!p) return;
    free(p->slots);
    sodium_memzero(p->hash_key, sizeof(p->hash_key));
    free(p);
}

int hdx_policy_careteam_add(struct hdx_policy *p, const char *user, const uint8_t *patient)
{
    struct slot *e = upsert(p, K_CARETEAM, user, patient);
    if (!e) return HDX_E_NOMEM;
    e->value = 1;
    return HDX_OK;
}

/* Consent value: bits 0..15 denied purposes, bits 16.. denied recipient roles. */
int hdx_policy_consent_deny(struct hdx_policy *p, const uint8_t *patient, int purpose,
                            enum hdx_role role)
{
    struct slot *e = upsert(p, K_CONSENT, NULL, patient);
    if (!e) return HDX_E_NOMEM;
    if (purpose >= 0 && purpose < HDX_PURPOSE_COUNT) e->value |= 1LL << purpose;
    if (role > HDX_ROLE_NONE && role < HDX_ROLE_COUNT) e->value |= 1LL << (16 + role);
    return HDX_OK;
}

int hdx_policy_training_set(struct hdx_policy *p, const char *user, int64_t completed_us)
{
    struct slot *e = upsert(p, K_TRAINING, user, NULL);
    if (!e) return HDX_E_NOMEM;
    e->value = completed_us;
    return HDX_OK;
}

int hdx_policy_break_glass_add(struct hdx_policy *p, const char *user, const uint8_t *patient,
                               int64_t expires_us)
{
    struct slot *e = upsert(p, K_GRANT, user, patient);
    if (!e) return HDX_E_NOMEM;
    if (expires_us > e->value) e->value = expires_us;
    return HDX_OK;
}

/* ---------- the decision ---------- */

int hdx_policy_role_has(enum hdx_role role, enum hdx_resource res, enum hdx_action act)
{
    if (role <= HDX_ROLE_NONE || role >= HDX_ROLE_COUNT || res < 0 || res >= HDX_RES_COUNT ||
        act < 0 || act >= HDX_ACT_COUNT)
        return 0;
    return (perms[role][res] & (1u << act)) != 0;
}

static int is_person(enum hdx_role r)
{
    return r >= HDX_ROLE_ADMIN && r <= HDX_ROLE_RESEARCHER;
}

static void decide(struct hdx_policy_decision *out, int permit, enum hdx_policy_reason why)
{
    out->permit = permit;
    out->reason = why;
}

void hdx_policy_decide(const struct hdx_policy *p, const struct hdx_policy_request *q,
                       struct hdx_policy_decision *out)
{
    enum hdx_role role = q->role;
    if (role <= HDX_ROLE_NONE || role >= HDX_ROLE_COUNT) {
        decide(out, 0, HDX_PR_UNKNOWN_ROLE);
        return;
    }
    if (!hdx_policy_role_has(role, q->resource, q->action)) {
        decide(out, 0, HDX_PR_ROLE);
        return;
    }
    int person = is_person(role);
    if (person && !q->mfa) {
        decide(out, 0, HDX_PR_MFA_REQUIRED);
        return;
    }
    if (q->resource != HDX_RES_RECORD) {
        decide(out, 1, HDX_PR_PERMIT);
        return;
    }
    if (person) {
        const struct slot *t = find(p, K_TRAINING, q->principal, NULL);
        if (!t || !t->value || q->now_us - t->value > p->training_period_us) {
            decide(out, 0, HDX_PR_TRAINING);
            return;
        }
    }
    int research = q->purpose == HDX_PURPOSE_RESEARCH;
    if ((role == HDX_ROLE_RESEARCHER) != research ||
        (q->action == HDX_ACT_BREAK_GLASS && q->purpose != HDX_PURPOSE_TREATMENT)) {
        decide(out, 0, HDX_PR_PURPOSE);
        return;
    }
    int compartment = role == HDX_ROLE_CLINICIAN || role == HDX_ROLE_NURSE;
    if (!q->patient) {
        /* Claims and compartment decisions are per patient; a subscription without one is
         * decided again for each record it would deliver. */
        if (q->action == HDX_ACT_BREAK_GLASS || (compartment && q->action != HDX_ACT_SUBSCRIBE))
            decide(out, 0, HDX_PR_NO_PATIENT);
        else
            decide(out, 1, HDX_PR_PERMIT);
        return;
    }
    if (q->action == HDX_ACT_BREAK_GLASS) {
        decide(out, 1, HDX_PR_PERMIT); /* the caller records the grant and raises the alert */
        return;
    }
    const struct slot *g = find(p, K_GRANT, q->principal, q->patient);
    int grant = role == HDX_ROLE_CLINICIAN && g && g->value > q->now_us;
    int disclosure =
        q->action == HDX_ACT_READ || q->action == HDX_ACT_SUBSCRIBE || q->action == HDX_ACT_EXPORT;
    const struct slot *c = disclosure ? find(p, K_CONSENT, NULL, q->patient) : NULL;
    int refused = c && ((c->value >> q->purpose) & 1 || (c->value >> (16 + role)) & 1);
    if (refused) {
        if (!grant || q->purpose != HDX_PURPOSE_TREATMENT) {
            decide(out, 0, HDX_PR_CONSENT);
            return;
        }
        decide(out, 1, HDX_PR_PERMIT_BREAK_GLASS);
        return;
    }
    if (compartment && !find(p, K_CARETEAM, q->principal, q->patient)) {
        if (grant)
            decide(out, 1, HDX_PR_PERMIT_BREAK_GLASS);
        else
            decide(out, 0, HDX_PR_NOT_ON_CARE_TEAM);
        return;
    }
    decide(out, 1, HDX_PR_PERMIT);
}

/* ---------- names ---------- */

static const char *const role_names[HDX_ROLE_COUNT] = {
    "none",       "admin",       "security-officer", "auditor",    "clinician", "nurse",
    "researcher", "integration", "device",           "subscriber", "gateway"};
static const char *const action_names[HDX_ACT_COUNT] = {"read",   "write", "subscribe",
                                                        "export", "admin", "break_glass"};
static const char *const resource_names[HDX_RES_COUNT] = {
    "record", "stream", "audit", "user", "device", "careteam", "consent", "config"};
static const char *const purpose_names[HDX_PURPOSE_COUNT] = {"treatment", "payment", "operations",
                                                             "research"};
static const char *const reason_names[HDX_PR_COUNT] = {
    "permit",  "permit_break_glass", "unknown_role", "role", "mfa_required", "training", "purpose",
    "consent", "not_on_care_team",   "no_patient"};

const char *hdx_role_name(enum hdx_role r)
{
    return r >= 0 && r < HDX_ROLE_COUNT ? role_names[r] : "none";
}

enum hdx_role hdx_role_parse(const char *name)
{
    for (int i = 1; i < HDX_ROLE_COUNT; i++)
        if (strcmp(role_names[i], name) == 0) return (enum hdx_role)i;
    return HDX_ROLE_NONE;
}

const char *hdx_action_name(enum hdx_action a)
{
    return a >= 0 && a < HDX_ACT_COUNT ? action_names[a] : "?";
}

const char *hdx_resource_name(enum hdx_resource r)
{
    return r >= 0 && r < HDX_RES_COUNT ? resource_names[r] : "?";
}

const char *hdx_purpose_name(enum hdx_purpose p)
{
    return p >= 0 && p < HDX_PURPOSE_COUNT ? purpose_names[p] : "?";
}

int hdx_purpose_parse(const char *name)
{
    for (int i = 0; i < HDX_PURPOSE_COUNT; i++)
        if (strcmp(purpose_names[i], name) == 0) return i;
    return -1;
}

const char *hdx_policy_reason_name(enum hdx_policy_reason r)
{
    return r >= 0 && r < HDX_PR_COUNT ? reason_names[r] : "?";
}
