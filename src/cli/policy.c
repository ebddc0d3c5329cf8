/* hdx careteam, hdx consent, hdx break-glass: the policy engine's data (DESIGN M7,
 * docs/POLICY.md). Every change is an admin statement committed as a record of the log (the
 * careteams, consents and break_glass tables are its replay: commit/admin.h), queued like hdx
 * user's (cli_admin_run). A patient is named by its identifier (PID-3, what hdx query
 * --patient takes) and stored only as its blind token. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"
#include "policy/policy.h"

#define PATIENT_ID_MAX 199 /* proto/hl7.h: PID-3 as it is blinded at ingest */

static const char queued_text[] =
    "\n"
    "PATIENT_ID is the patient's identifier as in PID-3 (what hdx query --patient takes). The\n"
    "store keeps only its blind token (32 hex digits, an HMAC under the data directory's blind\n"
    "key), which the lists print: the identifier itself is never stored.\n"
    "Each change is an admin record of the log (hdx verify replays them against the\n"
    "careteams, consents and break_glass tables). It is queued in the store and committed by\n"
    "hdxd within tls.crl_check_ms when it runs (this command waits up to 10 s for it), or by\n"
    "this command itself when no hdxd holds DIR/hdxd.lock. Bad input (a user name, patient\n"
    "identifier, purpose or role hdx does not accept) exits 2 with nothing queued; a change\n"
    "the store refuses (no such user, already so) exits 1 with nothing queued.\n";

static const char careteam_usage[] =
    "usage: hdx careteam add|remove USER PATIENT_ID -d DIR\n"
    "       hdx careteam list [USER] -d DIR\n"
    "\n"
    "add     puts the patient on the care team of USER, a clinician or a nurse: they may then\n"
    "        read, write and subscribe to the patient's records (docs/POLICY.md, rule 6).\n"
    "remove  takes the patient off USER's care team.\n"
    "list    one line per member, USER patient=TOKEN: every one, or USER's.\n";

static const char consent_usage[] =
    "usage: hdx consent add PATIENT_ID --deny PURPOSE|ROLE -d DIR\n"
    "       hdx consent remove PATIENT_ID --deny PURPOSE|ROLE -d DIR\n"
    "       hdx consent list [PATIENT_ID] -d DIR\n"
    "\n"
    "add     records the patient's directive denying every disclosure of their records (read,\n"
    "        subscribe, export) for a purpose of use (treatment, payment, operations,\n"
    "        research) or to a recipient role (admin, security-officer, auditor, clinician,\n"
    "        nurse, researcher, integration, device, subscriber, gateway). Only a clinician\n"
    "        holding a break-glass grant for the patient still reads, for treatment\n"
    "        (docs/POLICY.md, rule 5).\n"
    "remove  withdraws that directive.\n"
    "list    one line per directive, patient=TOKEN deny_purpose=PURPOSE or deny_role=ROLE:\n"
    "        every one, or the patient's.\n";

static const char break_glass_usage[] =
    "usage: hdx break-glass list [--unreviewed] -d DIR\n"
    "       hdx break-glass review USER (PATIENT_ID | --token TOKEN) GRANTED_US --reviewer NAME\n"
    "                              -d DIR\n"
    "\n"
    "A break-glass grant is a clinician's time-limited emergency access to a patient outside\n"
    "their care teams, claimed through hdxd with a written justification; every decision that\n"
    "rests on one is flagged in the audit, and the grant itself awaits a review.\n"
    "list    one line per grant: USER patient=TOKEN granted_us=N granted=TIME expires=TIME\n"
    "        state=active|expired reviewed_by=NAME|none [reviewed=TIME] justification=\"...\"\n"
    "        (\\ and \" escaped with \\); --unreviewed: only those not reviewed yet.\n"
    "review  marks the grant of USER to the patient made at GRANTED_US (as list prints it)\n"
    "        reviewed by NAME, a security-officer or an auditor other than USER. --token\n"
    "        names the patient by the TOKEN list prints instead. A grant is reviewed once.\n";

static int usage(const char *text)
{
    fputs(text, stderr);
    fputs(queued_text, stderr);
    return 2;
}

static int help(const char *text)
{
    fputs(text, stdout);
    fputs(queued_text, stdout);
    return 0;
}

/* 1-PATIENT_ID_MAX bytes, no control byte: what a PID-3 can carry here. */
static int patient_id_ok(const char *cmd, const char *id)
{
    size_t n = strlen(id);
    int ok = n >= 1 && n <= PATIENT_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)id[i] >= 0x20 && id[i] != 0x7f;
    if (!ok)
        fprintf(stderr, "hdx %s: invalid patient identifier (1-%d bytes, no control characters)\n",
                cmd, PATIENT_ID_MAX);
    return ok;
}

static int user_name_ok(const char *cmd, const char *what, const char *name)
{
    if (pki_name_valid(name) && strlen(name) <= 64) return 1;
    fprintf(stderr, "hdx %s: invalid %s '%s' (1-64 of A-Z a-z 0-9 . _ -)\n", cmd, what, name);
    return 0;
}

/* The patient's blind token, or one line naming cmd and 1. */
static int patient_token(struct cli_ctx *ctx, const char *cmd, const char *id,
                         uint8_t tok[HDX_BLIND_LEN])
{
    int rc = hdx_blind(ctx->kr, "patient", id, strlen(id), tok);
    if (rc == HDX_OK) return 0;
    fprintf(stderr, "hdx %s: cannot make the patient's token: %s\n", cmd, hdx_strerror(rc));
    return 1;
}

/* The user's role into role (cap bytes), or one line naming cmd and 1. */
static int user_role(struct cli_ctx *ctx, const char *cmd, const char *name, char *role, size_t cap)
{
    struct hdx_user u;
    int rc = hdx_store_user_get(ctx->store, name, &u);
    if (rc == HDX_OK) snprintf(role, cap, "%s", u.role);
    memset(&u, 0, sizeof(u));
    if (rc == HDX_OK) return 0;
    fprintf(stderr, "hdx %s: %s %s\n", cmd,
            rc == HDX_E_NOTFOUND ? "no such user" : "cannot read the user", name);
    return 1;
}

/* Commits the statement (cli_admin_run); one line naming cmd and 1 on failure. */
static int run(const char *cmd, const char *dir, struct cli_ctx *ctx, const struct hdx_admin *a)
{
    char why[512] = "";
    int rc = cli_admin_run(dir, ctx, a, why, sizeof(why));
    if (rc == HDX_OK) return 0;
    fprintf(stderr, "hdx %s: %s\n", cmd, why[0] ? why : hdx_strerror(rc));
    return 1;
}

/* ---------- hdx careteam ---------- */

struct ct_find {
    const uint8_t *patient;
    int found;
};

static int ct_match(void *arg, const struct hdx_careteam *c, int bad)
{
    struct ct_find *f = arg;
    f->found |= !bad && memcmp(c->patient, f->patient, HDX_BLIND_LEN) == 0;
    return f->found;
}

static int careteam_change(const char *dir, int add, const char *user, const char *patient_id)
{
    const char *cmd = add ? "careteam add" : "careteam remove";
    struct cli_ctx ctx;
    struct hdx_admin a = {.op = add ? HDX_ADMIN_CARETEAM_ADD : HDX_ADMIN_CARETEAM_REMOVE};
    char role[24], hex[2 * HDX_BLIND_LEN + 1];
    if (!user_name_ok(cmd, "user name", user) || !patient_id_ok(cmd, patient_id)) return 2;
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = user_role(&ctx, cmd, user, role, sizeof(role)) ||
             patient_token(&ctx, cmd, patient_id, a.patient);
    if (!rc && add && strcmp(role, "clinician") != 0 && strcmp(role, "nurse") != 0) {
        fprintf(stderr, "hdx %s: %s is a %s: care teams are for clinicians and nurses\n", cmd, user,
                role);
        rc = 1;
    }
    struct ct_find f = {a.patient, 0};
    if (!rc && hdx_store_careteams_list(ctx.store, user, ct_match, &f) != HDX_OK) {
        fprintf(stderr, "hdx %s: cannot read the careteams table\n", cmd);
        rc = 1;
    }
    if (!rc && f.found == add) {
        fprintf(stderr, "hdx %s: %s is %s the patient's care team\n", cmd, user,
                add ? "already on" : "not on");
        rc = 1;
    }
    snprintf(a.name, sizeof(a.name), "%s", user);
    if (!rc) rc = run(cmd, dir, &ctx, &a);
    cli_close(&ctx);
    if (rc) return rc;
    hdx_hex(a.patient, HDX_BLIND_LEN, hex);
    printf("careteam=%s user=%s patient=%s\n", add ? "added" : "removed", user, hex);
    return 0;
}

static int ct_print(void *arg, const struct hdx_careteam *c, int bad)
{
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(c->patient, HDX_BLIND_LEN, hex);
    printf("%s patient=%s%s\n", c->user, hex, bad ? " damaged=yes" : "");
    return 0;
}

int cmd_careteam(int argc, char **argv)
{
    const char *dir = NULL, *args[3] = {NULL, NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help"))
            return help(careteam_usage);
        else if (argv[i][0] != '-' && n < 3)
            args[n++] = argv[i];
        else
            return usage(careteam_usage);
    }
    if (!dir || !n) return usage(careteam_usage);
    if (!strcmp(args[0], "list") && n <= 2) {
        struct cli_ctx ctx;
        if (args[1] && !user_name_ok("careteam list", "user name", args[1])) return 2;
        if (cli_open(dir, 0, &ctx)) return 1;
        int rc = hdx_store_careteams_list(ctx.store, args[1], ct_print, NULL);
        cli_close(&ctx);
        if (rc == HDX_OK) return 0;
        fprintf(stderr, "hdx careteam list: cannot read the careteams table: %s\n",
                hdx_strerror(rc));
        return 1;
    }
    if (n == 3 && (!strcmp(args[0], "add") || !strcmp(args[0], "remove")))
        return careteam_change(dir, !strcmp(args[0], "add"), args[1], args[2]);
    return usage(careteam_usage);
}

/* ---------- hdx consent ---------- */

/* --deny's value into a's purpose or role; 0 (one line) when it is neither. */
static int deny_value(const char *cmd, const char *v, struct hdx_admin *a)
{
    if (hdx_purpose_parse(v) >= 0) {
        snprintf(a->purpose, sizeof(a->purpose), "%s", v);
        return 1;
    }
    if (hdx_role_parse(v) != HDX_ROLE_NONE) {
        snprintf(a->role, sizeof(a->role), "%s", v);
        return 1;
    }
    fprintf(stderr,
            "hdx %s: --deny must be a purpose of use (treatment, payment, operations, research) "
            "or a recipient role (admin, security-officer, auditor, clinician, nurse, researcher, "
            "integration, device, subscriber, gateway), not '%s'\n",
            cmd, v);
    return 0;
}

struct cs_find {
    const struct hdx_admin *a;
    int found;
};

static int cs_match(void *arg, const struct hdx_consent *c, int bad)
{
    struct cs_find *f = arg;
    f->found |= !bad && !strcmp(c->purpose, f->a->purpose) && !strcmp(c->role, f->a->role);
    return f->found;
}

static int consent_change(const char *dir, int add, const char *patient_id, const char *deny)
{
    const char *cmd = add ? "consent add" : "consent remove";
    struct cli_ctx ctx;
    struct hdx_admin a = {.op = add ? HDX_ADMIN_CONSENT_DENY : HDX_ADMIN_CONSENT_REMOVE};
    char hex[2 * HDX_BLIND_LEN + 1];
    if (!patient_id_ok(cmd, patient_id) || !deny_value(cmd, deny, &a)) return 2;
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = patient_token(&ctx, cmd, patient_id, a.patient);
    struct cs_find f = {&a, 0};
    if (!rc && hdx_store_consents_list(ctx.store, a.patient, cs_match, &f) != HDX_OK) {
        fprintf(stderr, "hdx %s: cannot read the consents table\n", cmd);
        rc = 1;
    }
    if (!rc && f.found == add) {
        fprintf(stderr, "hdx %s: the patient %s %s\n", cmd,
                add ? "already denies" : "does not deny", deny);
        rc = 1;
    }
    if (!rc) rc = run(cmd, dir, &ctx, &a);
    cli_close(&ctx);
    if (rc) return rc;
    hdx_hex(a.patient, HDX_BLIND_LEN, hex);
    printf("consent=%s patient=%s deny_%s=%s\n", add ? "added" : "removed", hex,
           a.purpose[0] ? "purpose" : "role", deny);
    return 0;
}

static int cs_print(void *arg, const struct hdx_consent *c, int bad)
{
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(c->patient, HDX_BLIND_LEN, hex);
    printf("patient=%s deny_%s=%s%s\n", hex, c->purpose[0] ? "purpose" : "role",
           c->purpose[0] ? c->purpose : c->role, bad ? " damaged=yes" : "");
    return 0;
}

static int consent_list(const char *dir, const char *patient_id)
{
    struct cli_ctx ctx;
    uint8_t tok[HDX_BLIND_LEN];
    if (patient_id && !patient_id_ok("consent list", patient_id)) return 2;
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = patient_id && patient_token(&ctx, "consent list", patient_id, tok);
    if (!rc &&
        hdx_store_consents_list(ctx.store, patient_id ? tok : NULL, cs_print, NULL) != HDX_OK) {
        fprintf(stderr, "hdx consent list: cannot read the consents table\n");
        rc = 1;
    }
    cli_close(&ctx);
    return rc;
}

int cmd_consent(int argc, char **argv)
{
    const char *dir = NULL, *deny = NULL, *args[2] = {NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--deny") && !deny)
            deny = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help"))
            return help(consent_usage);
        else if (argv[i][0] != '-' && n < 2)
            args[n++] = argv[i];
        else
            return usage(consent_usage);
    }
    if (!dir || !n) return usage(consent_usage);
    if (!strcmp(args[0], "list") && !deny) return consent_list(dir, args[1]);
    if (n == 2 && deny && (!strcmp(args[0], "add") || !strcmp(args[0], "remove")))
        return consent_change(dir, !strcmp(args[0], "add"), args[1], deny);
    return usage(consent_usage);
}

/* ---------- hdx break-glass ---------- */

struct bg_list {
    int64_t now_us;
    int unreviewed;
};

static int bg_print(void *arg, const struct hdx_break_glass *g, int bad)
{
    const struct bg_list *l = arg;
    char hex[2 * HDX_BLIND_LEN + 1], granted[40], expires[40], reviewed[48] = "";
    char just[2 * HDX_JUSTIFICATION_MAX + 1], *j = just;
    if (l->unreviewed && g->reviewed_by[0]) return 0;
    hdx_hex(g->patient, HDX_BLIND_LEN, hex);
    hdx_format_time(g->granted_us, granted, sizeof(granted));
    hdx_format_time(g->expires_us, expires, sizeof(expires));
    if (g->reviewed_by[0]) {
        memcpy(reviewed, " reviewed=", 10);
        hdx_format_time(g->reviewed_us, reviewed + 10, sizeof(reviewed) - 10);
    }
    for (const char *p = g->justification; *p; p++) {
        if (*p == '"' || *p == '\\') *j++ = '\\';
        *j++ = *p;
    }
    *j = 0;
    printf("%s patient=%s granted_us=%lld granted=%s expires=%s state=%s reviewed_by=%s%s "
           "justification=\"%s\"%s\n",
           g->user, hex, (long long)g->granted_us, granted, expires,
           g->expires_us > l->now_us ? "active" : "expired",
           g->reviewed_by[0] ? g->reviewed_by : "none", reviewed, just, bad ? " damaged=yes" : "");
    return 0;
}

static int break_glass_list(const char *dir, int unreviewed)
{
    struct cli_ctx ctx;
    struct bg_list l = {hdx_now_us(), unreviewed};
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = hdx_store_break_glass_list(ctx.store, bg_print, &l);
    cli_close(&ctx);
    if (rc == HDX_OK) return 0;
    fprintf(stderr, "hdx break-glass list: cannot read the break_glass table: %s\n",
            hdx_strerror(rc));
    return 1;
}

/* The grant under review must exist and wait for its review; one line and 1 otherwise. */
static int grant_pending(struct cli_ctx *ctx, const struct hdx_admin *a)
{
    struct hdx_break_glass g = {.granted_us = a->granted_us};
    snprintf(g.user, sizeof(g.user), "%s", a->name);
    memcpy(g.patient, a->patient, HDX_BLIND_LEN);
    int rc = hdx_store_break_glass_get(ctx->store, &g, &g);
    if (rc == HDX_OK && !g.reviewed_by[0]) return 0;
    if (rc == HDX_OK)
        fprintf(stderr, "hdx break-glass review: the grant was reviewed by %s already\n",
                g.reviewed_by);
    else
        fprintf(stderr, "hdx break-glass review: %s\n",
                rc == HDX_E_NOTFOUND ? "no such grant (see hdx break-glass list)"
                                     : "cannot read the break_glass table");
    return 1;
}

static int break_glass_review(const char *dir, const char *user, const char *patient_id,
                              const char *token, const char *granted, const char *reviewer)
{
    const char *cmd = "break-glass review";
    struct cli_ctx ctx;
    struct hdx_admin a = {.op = HDX_ADMIN_BREAK_GLASS_REVIEW};
    uint64_t t;
    char role[24];
    if (!user_name_ok(cmd, "user name", user) || !user_name_ok(cmd, "reviewer", reviewer) ||
        (patient_id && !patient_id_ok(cmd, patient_id)))
        return 2;
    if (token &&
        (strlen(token) != 2 * HDX_BLIND_LEN || hdx_unhex(token, a.patient, HDX_BLIND_LEN))) {
        fprintf(stderr, "hdx %s: --token must be 32 hex digits (as hdx break-glass list prints)\n",
                cmd);
        return 2;
    }
    if (hdx_parse_u64(granted, &t) != 0 || t < 1 || t > INT64_MAX) {
        fprintf(stderr, "hdx %s: GRANTED_US must be the grant's granted_us (a decimal number)\n",
                cmd);
        return 2;
    }
    if (!strcmp(user, reviewer)) {
        fprintf(stderr, "hdx %s: nobody reviews their own grant\n", cmd);
        return 2;
    }
    snprintf(a.name, sizeof(a.name), "%s", user);
    snprintf(a.reviewer, sizeof(a.reviewer), "%s", reviewer);
    a.granted_us = (int64_t)t;
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = (patient_id && patient_token(&ctx, cmd, patient_id, a.patient)) ||
             user_role(&ctx, cmd, reviewer, role, sizeof(role));
    if (!rc && strcmp(role, "security-officer") != 0 && strcmp(role, "auditor") != 0) {
        fprintf(stderr,
                "hdx %s: %s is a %s: grants are reviewed by a security-officer or an "
                "auditor\n",
                cmd, reviewer, role);
        rc = 1;
    }
    if (!rc) rc = grant_pending(&ctx, &a) || run(cmd, dir, &ctx, &a);
    cli_close(&ctx);
    if (rc) return rc;
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(a.patient, HDX_BLIND_LEN, hex);
    printf("reviewed=%s patient=%s granted_us=%lld reviewer=%s\n", user, hex,
           (long long)a.granted_us, reviewer);
    return 0;
}

int cmd_break_glass(int argc, char **argv)
{
    const char *dir = NULL, *reviewer = NULL, *token = NULL, *args[4] = {NULL, NULL, NULL, NULL};
    int n = 0, unreviewed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--reviewer") && !reviewer)
            reviewer = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--token") && !token)
            token = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--unreviewed"))
            unreviewed = 1;
        else if (!strcmp(argv[i], "--help"))
            return help(break_glass_usage);
        else if (argv[i][0] != '-' && n < 4)
            args[n++] = argv[i];
        else
            return usage(break_glass_usage);
    }
    if (!dir || !n) return usage(break_glass_usage);
    if (!strcmp(args[0], "list") && n == 1 && !reviewer && !token)
        return break_glass_list(dir, unreviewed);
    if (!strcmp(args[0], "review") && reviewer && !unreviewed && n == (token ? 3 : 4))
        return break_glass_review(dir, args[1], token ? NULL : args[2], token, args[n - 1],
                                  reviewer);
    return usage(break_glass_usage);
}
