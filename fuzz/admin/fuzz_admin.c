/* fuzz_admin: libFuzzer entry point for the admin statement parser (commit/admin.h), which
 * reads bodies from the store's admin_queue and from admin records (hdx verify). Beyond "no
 * crash": whatever parses is canonical, so formatting it gives back exactly the input bytes,
 * and the registry accepts it; a user statement lands in the users half of the registry only,
 * exactly when it adds the user, and the replay of a user_add followed by it keeps the name,
 * never lowers the used TOTP step, and keeps the secret and codes present together; a policy
 * statement (careteam_*, consent_*, break_glass*) touches only its own table, on an empty
 * registry only a consent directive makes a row, and with its user (and grant, and reviewer)
 * present it makes exactly the row commit/admin.h says; a device_scope touches only the scopes,
 * with no device needed: one row carrying exactly its (canonical) scope, or none when empty; a
 * client_* statement touches only the clients: on an empty registry only a client_add makes a
 * row, with exactly its JWK Set bytes, scope and created_us, active; a second client_add of
 * the active name changes nothing; after a client_revoke the same client_add registers it
 * again, and a scope or revoke of a revoked client changes nothing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "commit/admin.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add_user(struct hdx_registry *r, const char *name)
{
    struct hdx_admin u = {.op = HDX_ADMIN_USER_ADD, .created_us = 1};
    memcpy(u.name, name, sizeof(u.name));
    memcpy(u.role, "clinician", 10);
    if (hdx_registry_apply(r, &u, 1) != HDX_OK) abort();
}

/* The statement applied after what it needs: its user, its reviewer, the grant it reviews. */
static void policy_check(const struct hdx_admin *a)
{
    struct hdx_registry r = {0};
    add_user(&r, a->name);
    if (a->op == HDX_ADMIN_BREAK_GLASS_REVIEW) {
        add_user(&r, a->reviewer);
        struct hdx_admin g = *a;
        g.op = HDX_ADMIN_BREAK_GLASS;
        memcpy(g.justification, "x", 2);
        if (hdx_registry_apply(&r, &g, a->granted_us) != HDX_OK || r.nbg != 1) abort();
    }
    if (a->op == HDX_ADMIN_CARETEAM_REMOVE) {
        struct hdx_admin c = *a;
        c.op = HDX_ADMIN_CARETEAM_ADD;
        if (hdx_registry_apply(&r, &c, 2) != HDX_OK || r.nct != 1) abort();
    }
    if (hdx_registry_apply(&r, a, 7) != HDX_OK) abort();
    switch (a->op) {
    case HDX_ADMIN_CARETEAM_ADD:
        if (r.nct != 1 || strcmp(r.ct[0].user, a->name) != 0 ||
            memcmp(r.ct[0].patient, a->patient, sizeof(a->patient)) != 0)
            abort();
        break;
    case HDX_ADMIN_CARETEAM_REMOVE:
        if (r.nct != 0) abort();
        break;
    case HDX_ADMIN_BREAK_GLASS:
        if (r.nbg != 1 || r.bg[0].granted_us != 7 || r.bg[0].expires_us != a->expires_us ||
            strcmp(r.bg[0].justification, a->justification) != 0 || r.bg[0].reviewed_by[0])
            abort();
        break;
    case HDX_ADMIN_BREAK_GLASS_REVIEW:
        if (r.nbg != 1 || strcmp(r.bg[0].reviewed_by, a->reviewer) != 0 || r.bg[0].reviewed_us != 7)
            abort();
        /* reviewed once: a second review changes nothing */
        if (hdx_registry_apply(&r, a, 8) != HDX_OK || r.bg[0].reviewed_us != 7) abort();
        break;
    default: /* consents need no user */
        break;
    }
    if (r.ncs + r.nct + r.nbg > 1 + (a->op == HDX_ADMIN_CONSENT_DENY)) abort();
    hdx_registry_free(&r);
}

/* A client statement: applied after a client_add of its name (or as one), the apply at the top of
 * commit/admin.h. */
static void client_check(const struct hdx_admin *a)
{
    struct hdx_registry r = {0};
    struct hdx_admin *add = calloc(1, sizeof(*add)), *rv = calloc(1, sizeof(*rv));
    if (!add || !rv) abort();
    if (a->op == HDX_ADMIN_CLIENT_ADD) {
        *add = *a;
    } else { /* a JWK Set the parser accepts is not needed: apply does not look */
        add->op = HDX_ADMIN_CLIENT_ADD;
        memcpy(add->name, a->name, sizeof(add->name));
        memcpy(add->jwks, "{}", 2);
        add->jwks_len = 2;
        memcpy(add->smart_scope, "system/Patient.r", 17);
        add->created_us = 3;
    }
    if (hdx_registry_apply(&r, add, 1) != HDX_OK || r.ncl != 1) abort();
    if (hdx_registry_apply(&r, a, 2) != HDX_OK || r.ncl != 1) abort();
    const struct hdx_smart_client *c = hdx_registry_client(&r, a->name);
    if (!c || c->jwks_len != add->jwks_len || memcmp(c->jwks, add->jwks, c->jwks_len) != 0 ||
        c->created_us != add->created_us)
        abort();
    switch (a->op) {
    case HDX_ADMIN_CLIENT_ADD: /* active: the second add changed nothing */
    case HDX_ADMIN_CLIENT_SCOPE:
        if (c->revoked_us || strcmp(c->scope, a->smart_scope) != 0) abort();
        break;
    case HDX_ADMIN_CLIENT_REVOKE:
        if (c->revoked_us != a->revoked_us || strcmp(c->scope, add->smart_scope) != 0) abort();
        break;
    default:
        abort();
    }
    /* revoked: scope and revoke change nothing, an add registers it again */
    rv->op = HDX_ADMIN_CLIENT_REVOKE;
    memcpy(rv->name, a->name, sizeof(rv->name));
    rv->revoked_us = 9;
    if (hdx_registry_apply(&r, rv, 3) != HDX_OK) abort();
    int64_t revoked = hdx_registry_client(&r, a->name)->revoked_us;
    if (!revoked) abort();
    if (a->op != HDX_ADMIN_CLIENT_ADD) {
        if (hdx_registry_apply(&r, a, 4) != HDX_OK) abort();
        if (hdx_registry_client(&r, a->name)->revoked_us != revoked) abort();
    }
    if (hdx_registry_apply(&r, add, 5) != HDX_OK || hdx_registry_client(&r, a->name)->revoked_us)
        abort();
    if (r.ncl != 1 || r.n + r.nu + r.nsc + r.nct + r.ncs + r.nbg != 0) abort();
    hdx_registry_free(&r);
    free(add);
    free(rv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hdx_admin a, b; /* 15 KB each: off the fuzzer's stack */
    char out[HDX_ADMIN_BODY_MAX + 1];
    /* a heap copy of exactly size bytes: ASan catches any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    if (hdx_admin_parse(copy, size, &a) == HDX_OK) {
        int n = hdx_admin_format(&a, out, sizeof(out));
        if (n < 0 || (size_t)n != size || memcmp(out, copy, size) != 0) abort();
        if (hdx_admin_parse((const uint8_t *)out, (size_t)n, &b) != HDX_OK || b.op != a.op ||
            strcmp(a.name, b.name) != 0)
            abort();
        if (!hdx_admin_type(a.op)) abort();
        struct hdx_registry r = {0};
        if (hdx_registry_apply(&r, &a, 1) != HDX_OK) abort();
        if (hdx_admin_is_user_op(a.op)) {
            if (r.n != 0 || r.nu != (a.op == HDX_ADMIN_USER_ADD)) abort();
            /* on an existing row with a second factor and a used step */
            struct hdx_user u = {.has_mfa = 1, .totp_step = 5, .recovery_used = 1};
            int present = 1;
            memcpy(u.name, a.name, sizeof(u.name));
            hdx_admin_user_apply(&u, &present, &a, 2);
            if (!present || strcmp(u.name, a.name) != 0) abort();
            if (a.op != HDX_ADMIN_USER_ADD && a.op != HDX_ADMIN_USER_MFA && u.totp_step < 5)
                abort();
            if (a.op == HDX_ADMIN_USER_MFA && (u.totp_step || u.recovery_used)) abort();
            if (u.has_mfa !=
                (a.op == HDX_ADMIN_USER_ADD || a.op == HDX_ADMIN_USER_MFA ? a.has_mfa : 1))
                abort();
        } else if (hdx_admin_is_policy_op(a.op)) {
            if (r.n != 0 || r.nu != 0 || r.nct + r.nbg != 0 ||
                r.ncs != (a.op == HDX_ADMIN_CONSENT_DENY))
                abort();
            policy_check(&a);
        } else if (a.op == HDX_ADMIN_DEVICE_SCOPE) {
            if (r.n != 0 || r.nu != 0 || r.nct + r.ncs + r.nbg != 0 || r.nsc != (size_t)a.has_scope)
                abort();
            if (a.has_scope && (strcmp(r.sc[0].name, a.name) != 0 ||
                                strcmp(r.sc[0].scope, a.scope) != 0 || r.sc[0].set_us != 1))
                abort();
        } else if (a.op == HDX_ADMIN_AE_ADD || a.op == HDX_ADMIN_AE_REMOVE) {
            /* an AE title touches only its own table; an add makes exactly its row */
            if (r.n + r.nu + r.nsc + r.nct + r.ncs + r.nbg + r.ncl != 0 ||
                r.nae != (a.op == HDX_ADMIN_AE_ADD))
                abort();
            if (r.nae && (strcmp(r.ae[0].title, a.title) != 0 ||
                          strcmp(r.ae[0].name, a.name) != 0 || !hdx_admin_ae_title_valid(a.title)))
                abort();
            struct hdx_admin rm = {.op = HDX_ADMIN_AE_REMOVE};
            memcpy(rm.title, a.title, sizeof(rm.title));
            if (hdx_registry_apply(&r, &rm, 2) != HDX_OK || r.nae != 0) abort();
        } else if (hdx_admin_is_client_op(a.op)) {
            if (r.n + r.nu + r.nsc + r.nct + r.ncs + r.nbg + r.nae != 0 ||
                r.ncl != (a.op == HDX_ADMIN_CLIENT_ADD))
                abort();
            client_check(&a);
        } else if (r.nu != 0 || r.nct + r.ncs + r.nbg + r.nsc + r.ncl + r.nae != 0) {
            abort();
        }
        hdx_registry_free(&r);
    } else {
        /* a refusal leaves nothing behind */
        static const struct hdx_admin zero;
        if (memcmp(&a, &zero, sizeof(a)) != 0) abort();
    }
    free(copy);
    return 0;
}
