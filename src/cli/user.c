/* hdx user add|passwd|mfa-reset|lock|unlock|revoke-sessions|list and hdx training set: people
 * (DESIGN M8). Every change is an admin statement committed as a record of the log (the users
 * table is its replay: commit/admin.h), queued like hdx device's (cli_admin_run). */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "auth/qr.h"
#include "auth/totp.h"
#include "auth/user.h"
#include "auth/apikey.h"
#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"
#include "policy/scope.h"

static const char user_usage[] =
    "usage: hdx user add NAME --role ROLE -d DIR --password-file F [--qr-png FILE] [--no-qr]\n"
    "                    [--enrol-at-login]\n"
    "       hdx user add NAME --role integration -d DIR --api-key\n"
    "       hdx user passwd NAME -d DIR --password-file F\n"
    "       hdx user apikey NAME -d DIR\n"
    "       hdx user scope NAME (SCOPE | --clear) -d DIR\n"
    "       hdx user mfa-reset NAME -d DIR [--qr-png FILE] [--no-qr]\n"
    "       hdx user lock|unlock|revoke-sessions NAME -d DIR\n"
    "       hdx user list -d DIR [--json]\n"
    "       hdx user check NAME -d DIR --password-file F --totp CODE\n"
    "       hdx training set USER YYYY-MM-DD -d DIR\n"
    "\n"
    "add      creates a person's account. ROLE: admin, security-officer, auditor, clinician,\n"
    "         nurse, researcher or integration. The password is the first line of F (one\n"
    "         trailing newline is dropped); it must have auth.password_min_length characters\n"
    "         (default 12) and at most 256, must not contain NAME and must not be on the\n"
    "         blocklist (auth.password_blocklist, DIR/password-blocklist.txt). No composition\n"
    "         rules (NIST SP 800-63B). Stored as an Argon2id hash, never in plaintext.\n"
    "         A second factor is enrolled at once: prints totp=otpauth://... (scan the QR\n"
    "         code printed below it with an authenticator app, or write it as a PNG with\n"
    "         --qr-png FILE, created mode 0600) and recovery=CODE ten times, each usable once\n"
    "         in place of a TOTP code. They are shown only now: hdx keeps the TOTP secret\n"
    "         sealed with the data directory's key and the codes as keyed hashes.\n"
    "         --enrol-at-login: no second factor now (prints mfa=enrol-at-login); the\n"
    "         user's first login with the password alone gets a session good only for\n"
    "         POST /auth/mfa/enrol (docs/HTTP.md), which shows the URI and codes to them.\n"
    "add --api-key  creates a service's account (role integration) with no password and\n"
    "         no second factor: prints api_key=hdxk_NAME.SECRET once. The service sends it\n"
    "         as 'Authorization: Bearer KEY' to /api/ (docs/HTTP.md); hdx keeps only its\n"
    "         SHA-256. The key is the service's credential: keep it in a 0600 file.\n"
    "passwd   sets a new password (same rules); sessions issued before it end.\n"
    "apikey   a new API key for a service; the old one stops working at once.\n"
    "scope    what a service may read through the API: SCOPE as for hdx device scope\n"
    "         (type=T[,T...] sender=S[,S*...] patient=ID[,ID...]); --clear: everything its\n"
    "         role may. Applied to every record of /api/records, /api/records/SEQ and\n"
    "         /api/stream; a change ends the service's open streams.\n"
    "mfa-reset  a new TOTP secret and ten new recovery codes (a lost phone); the old ones\n"
    "         stop working and sessions issued before it end.\n"
    "lock     the user cannot log in until unlock; unlock undoes it.\n"
    "revoke-sessions  every session of the user issued until now ends at once.\n"
    "list     one line per user: name, role, locked, mfa, created, training date (never a\n"
    "         hash or secret); --json: a JSON array of the same.\n"
    "check    checks a password and a second factor (CODE: the 6-digit TOTP code, or a\n"
    "         recovery code) exactly as a login does, to test an enrolment: prints auth=ok\n"
    "         factor=totp|recovery, or auth=denied (exit 1) whatever failed. Like a login it\n"
    "         consumes what it accepted: that TOTP step and that recovery code cannot be\n"
    "         used again (a user_totp_used or user_recovery_used admin record).\n"
    "training set  records the date of the user's last security-awareness training.\n"
    "\n"
    "Each change is an admin record of the log (hdx verify replays them against the users\n"
    "table). It is queued in the store and committed by hdxd within tls.crl_check_ms when it\n"
    "runs (this command waits up to 10 s for it), or by this command itself when no hdxd\n"
    "holds DIR/hdxd.lock.\n";

static int usage(void)
{
    fputs(user_usage, stderr);
    return 2;
}

static struct hdx_pw_cost conf_cost(const struct hdx_conf *c)
{
    struct hdx_pw_cost cost = {(unsigned long long)c->auth_argon2_opslimit,
                               (size_t)c->auth_argon2_memlimit_kib * 1024};
    return cost;
}

/* Reads, checks and hashes the new password of user name into hash. */
static int new_password(struct cli_ctx *ctx, const char *name, const char *file,
                        char hash[HDX_PW_HASH_MAX], char *why, size_t cap)
{
    char list[HDX_PATH_MAX], *pw = NULL;
    size_t len = 0;
    struct hdx_pw_policy p = {(size_t)ctx->conf.auth_password_min_length, NULL};
    if (ctx->conf.auth_password_blocklist[0]) {
        if (hdx_conf_path(&ctx->conf, ctx->conf.auth_password_blocklist, list, sizeof(list))) {
            snprintf(why, cap, "auth.password_blocklist: path too long");
            return HDX_E_CONFIG;
        }
        p.blocklist = list;
    }
    int rc = hdx_password_read_file(file, &pw, &len, why, cap);
    if (rc == HDX_OK) rc = hdx_password_policy(&p, name, pw, len, why, cap);
    if (rc == HDX_OK) {
        struct hdx_pw_cost cost = conf_cost(&ctx->conf);
        rc = hdx_password_hash(&cost, pw, len, hash);
        if (rc != HDX_OK) snprintf(why, cap, "cannot hash the password: %s", hdx_strerror(rc));
    }
    hdx_password_free(pw);
    return rc;
}

/* The enrolment shown once: the URI, its QR code, the recovery codes. */
static int show_enrolment(const struct hdx_enrolment *e, int qr, const char *png, char *why,
                          size_t cap)
{
    printf("totp=%s\n", e->uri);
    if (qr && hdx_qr_print(stdout, e->uri) != HDX_OK) {
        snprintf(why, cap, "cannot draw the QR code");
        return HDX_E_INVAL;
    }
    for (int i = 0; i < HDX_RECOVERY_CODES; i++)
        printf("recovery=%s\n", e->codes[i]);
    if (png) {
        int rc = hdx_qr_png(png, e->uri, why, cap);
        if (rc != HDX_OK) return rc;
        printf("qr_png=%s\n", png);
    }
    return fflush(stdout) == 0 ? HDX_OK : HDX_E_IO;
}

static int user_add(const char *dir, const char *name, const char *role, const char *pwfile,
                    const char *png, int qr, int enrol_later, int api_key)
{
    char key[HDX_APIKEY_MAX + 1] = "";
    struct cli_ctx ctx;
    struct hdx_user old;
    struct hdx_enrolment e;
    struct hdx_admin a = {.op = HDX_ADMIN_USER_ADD};
    char why[512] = "";
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = hdx_store_user_get(ctx.store, name, &old);
    sodium_memzero(&old, sizeof(old));
    if (rc == HDX_OK) {
        fprintf(stderr, "hdx user add: user %s exists\n", name);
        cli_close(&ctx);
        return 1;
    }
    if (cli_is_client(&ctx, name)) { /* one principal per name: a token names its client */
        fprintf(stderr, "hdx user add: %s is a SMART client's name (hdx client): choose another\n",
                name);
        cli_close(&ctx);
        return 1;
    }
    struct hdx_device dev;
    if (api_key && hdx_store_device_get(ctx.store, name, &dev) == HDX_OK) {
        /* One scope per name (policy/scope.h): a service must not share a device's. */
        fprintf(stderr, "hdx user add: %s is a device's name: choose another for the service\n",
                name);
        cli_close(&ctx);
        return 1;
    }
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.role, sizeof(a.role), "%s", role);
    a.created_us = hdx_now_us();
    if (api_key)
        rc = hdx_apikey_new(name, key, sizeof(key), a.pw_hash, sizeof(a.pw_hash));
    else
        rc = new_password(&ctx, name, pwfile, a.pw_hash, why, sizeof(why));
    memset(&e, 0, sizeof(e));
    if (rc == HDX_OK && !enrol_later && !api_key) {
        rc = hdx_user_enrol(ctx.kr, name, &a, &e);
        if (rc != HDX_OK) snprintf(why, sizeof(why), "cannot enrol TOTP: %s", hdx_strerror(rc));
    }
    if (rc == HDX_OK) rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    struct hdx_user back;
    if (rc == HDX_OK && hdx_store_user_get(ctx.store, name, &back) != HDX_OK) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the user is not in the store after its record");
    }
    sodium_memzero(&back, sizeof(back));
    cli_close(&ctx);
    if (rc == HDX_OK) {
        printf("user=%s role=%s\n", name, role);
        if (api_key)
            printf("api_key=%s\n", key);
        else if (enrol_later)
            printf("mfa=enrol-at-login\n");
        else
            rc = show_enrolment(&e, qr, png, why, sizeof(why));
    }
    sodium_memzero(&e, sizeof(e));
    sodium_memzero(&a, sizeof(a));
    sodium_memzero(key, sizeof(key));
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx user add: %s\n", why);
        return 1;
    }
    return 0;
}

/* The user's row, or one line naming cmd and 1. */
static int existing(struct cli_ctx *ctx, const char *cmd, const char *name, struct hdx_user *u)
{
    int rc = hdx_store_user_get(ctx->store, name, u);
    if (rc == HDX_OK) return 0;
    fprintf(stderr, "hdx %s: %s\n", cmd,
            rc == HDX_E_NOTFOUND ? "no such user" : "cannot read the user from the store");
    return 1;
}

/* passwd, mfa-reset, lock, unlock, revoke-sessions, training set: one statement each. */
static int user_change(const char *cmd, const char *dir, const char *name, enum hdx_admin_op op,
                       const char *pwfile, const char *date, const char *png, int qr)
{
    struct cli_ctx ctx;
    struct hdx_user u;
    struct hdx_enrolment e;
    struct hdx_admin a = {.op = op};
    char why[512] = "", key[HDX_APIKEY_MAX + 1] = "";
    int rc = HDX_OK;
    memset(&e, 0, sizeof(e));
    if (cli_open(dir, 1, &ctx)) return 1;
    if (existing(&ctx, cmd, name, &u)) {
        cli_close(&ctx);
        return 1;
    }
    snprintf(a.name, sizeof(a.name), "%s", name);
    switch (op) {
    case HDX_ADMIN_USER_PASSWD:
        if (pwfile) {
            rc = new_password(&ctx, name, pwfile, a.pw_hash, why, sizeof(why));
        } else if (strcmp(u.role, "integration") != 0) {
            rc = HDX_E_INVAL;
            snprintf(why, sizeof(why),
                     "%s is a person (role %s): only a service (role "
                     "integration) has an API key",
                     name, u.role);
        } else {
            rc = hdx_apikey_new(name, key, sizeof(key), a.pw_hash, sizeof(a.pw_hash));
        }
        break;
    case HDX_ADMIN_USER_MFA:
        rc = hdx_user_enrol(ctx.kr, name, &a, &e);
        if (rc != HDX_OK) snprintf(why, sizeof(why), "cannot enrol TOTP: %s", hdx_strerror(rc));
        break;
    case HDX_ADMIN_USER_REVOKE_SESSIONS:
        a.at_us = hdx_now_us();
        break;
    case HDX_ADMIN_USER_TRAINING:
        snprintf(a.date, sizeof(a.date), "%s", date);
        break;
    default:
        break;
    }
    if (rc == HDX_OK) rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    sodium_memzero(&u, sizeof(u));
    cli_close(&ctx);
    if (rc == HDX_OK) {
        switch (op) {
        case HDX_ADMIN_USER_PASSWD:
            if (key[0])
                printf("user=%s api_key=%s\n", name, key);
            else
                printf("passwd=%s\n", name);
            break;
        case HDX_ADMIN_USER_MFA:
            printf("user=%s mfa=reset\n", name);
            rc = show_enrolment(&e, qr, png, why, sizeof(why));
            break;
        case HDX_ADMIN_USER_LOCK:
            printf("locked=%s\n", name);
            break;
        case HDX_ADMIN_USER_UNLOCK:
            printf("unlocked=%s\n", name);
            break;
        case HDX_ADMIN_USER_REVOKE_SESSIONS: {
            char t[40];
            hdx_format_time(a.at_us, t, sizeof(t));
            printf("sessions_revoked=%s at=%s\n", name, t);
            break;
        }
        case HDX_ADMIN_USER_TRAINING:
            printf("training=%s date=%s\n", name, date);
            break;
        default:
            break;
        }
    }
    sodium_memzero(key, sizeof(key));
    sodium_memzero(&e, sizeof(e));
    sodium_memzero(&a, sizeof(a));
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx %s: %s\n", cmd, why);
        return 1;
    }
    return 0;
}

/* A login without a session: the decision, and the record of what it consumed. */
static int user_check(const char *dir, const char *name, const char *pwfile, const char *code)
{
    struct cli_ctx ctx;
    struct hdx_auth_outcome o;
    struct hdx_admin used;
    char why[512] = "", *pw = NULL;
    size_t len = 0;
    int rc = hdx_password_read_file(pwfile, &pw, &len, why, sizeof(why));
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx user check: %s\n", why);
        return 1;
    }
    if (cli_open(dir, 1, &ctx)) {
        hdx_password_free(pw);
        return 1;
    }
    struct hdx_pw_cost cost = conf_cost(&ctx.conf);
    struct hdx_auth_input in = {name, pw, len, code, time(NULL), 0, 0};
    rc = hdx_user_authenticate(ctx.store, ctx.kr, &cost, &in, &o);
    hdx_password_free(pw);
    if (rc == HDX_OK && o.result == HDX_AUTH_OK && hdx_auth_consumed(&o, name, &used) == HDX_OK)
        rc = cli_admin_run(dir, &ctx, &used, why, sizeof(why));
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx user check: %s\n", why[0] ? why : hdx_strerror(rc));
        return 1;
    }
    if (o.result == HDX_AUTH_OK) {
        printf("auth=ok factor=%s role=%s\n", o.factor == HDX_FACTOR_TOTP ? "totp" : "recovery",
               o.role);
        return 0;
    }
    /* One answer for every failure, as the login gives (auth/user.h). */
    puts(o.result == HDX_AUTH_ENROL_ONLY ? "auth=enrol-only" : "auth=denied");
    return 1;
}

struct list_ctx {
    json_t *arr; /* --json */
};

static int list_one(void *arg, const struct hdx_user *u, int bad)
{
    struct list_ctx *l = arg;
    char created[40];
    hdx_format_time(u->created_us, created, sizeof(created));
    if (l->arr) {
        json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s?}", "name", u->name, "role", u->role,
                              "locked", u->locked, "mfa", u->has_mfa, "created", created,
                              "training", u->training[0] ? u->training : NULL);
        if (o) json_array_append_new(l->arr, o);
    } else {
        printf("%s role=%s locked=%s mfa=%s created=%s training=%s%s\n", u->name, u->role,
               u->locked ? "yes" : "no", u->has_mfa ? "yes" : "no", created,
               u->training[0] ? u->training : "none", bad ? " damaged=yes" : "");
    }
    return 0;
}

static int user_list(const char *dir, int as_json)
{
    struct cli_ctx ctx;
    struct list_ctx l = {as_json ? json_array() : NULL};
    if (as_json && !l.arr) return 1;
    if (cli_open(dir, 0, &ctx)) {
        json_decref(l.arr);
        return 1;
    }
    int rc = hdx_store_users_list(ctx.store, list_one, &l);
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx user list: cannot read the users table: %s\n", hdx_strerror(rc));
        json_decref(l.arr);
        return 1;
    }
    if (l.arr) {
        char *s = json_dumps(l.arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(l.arr);
    }
    return 0;
}

/* A service's scope (policy/scope.h): the same device_scope statement a receiving device's
 * scope is, keyed by name, so a name that is also a device's is refused (one scope per name). */
static int user_scope(const char *dir, const char *name, const char *scope)
{
    struct cli_ctx ctx;
    struct hdx_user u;
    struct hdx_device d;
    struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_SCOPE};
    char why[256] = "", words[600];
    if (cli_open(dir, 1, &ctx)) return 1;
    snprintf(a.name, sizeof(a.name), "%s", name);
    if (scope && hdx_scope_from_operator(scope, strlen(scope), ctx.kr, a.scope, sizeof(a.scope),
                                         why, sizeof(why)) != HDX_OK) {
        fprintf(stderr, "hdx user scope: refused: %s\n", why);
        cli_close(&ctx);
        return 2;
    }
    a.has_scope = scope != NULL;
    int rc = existing(&ctx, "user scope", name, &u) ? HDX_E_NOTFOUND : HDX_OK;
    if (rc == HDX_OK && strcmp(u.role, "integration") != 0) {
        fprintf(stderr,
                "hdx user scope: %s is a person (role %s): people are scoped by their "
                "role, care teams and consent\n",
                name, u.role);
        rc = HDX_E_INVAL;
    } else if (rc == HDX_OK && hdx_store_device_get(ctx.store, name, &d) == HDX_OK) {
        fprintf(stderr,
                "hdx user scope: %s is also a device's name, and a scope belongs to a "
                "name: rename the service\n",
                name);
        rc = HDX_E_EXISTS;
    }
    sodium_memzero(&u, sizeof(u));
    if (rc == HDX_OK) {
        rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
        if (rc != HDX_OK) fprintf(stderr, "hdx user scope: %s\n", why);
    }
    cli_close(&ctx);
    if (rc != HDX_OK) return 1;
    struct hdx_scope parsed;
    if (a.has_scope && hdx_scope_parse(a.scope, strlen(a.scope), &parsed) == HDX_OK) {
        hdx_scope_describe(&parsed, words, sizeof(words));
        printf("user=%s scope=\"%s\"\n", name, words);
    } else {
        printf("user=%s scope=all\n", name);
    }
    return 0;
}

int cmd_user(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *role = NULL, *pwfile = NULL, *png = NULL, *code = NULL;
    int as_json = 0, qr = 1, enrol_later = 0, api_key = 0, clear = 0;
    const char *scope_arg = NULL;
    if (argc < 2) return usage();
    const char *verb = argv[1];
    if (!strcmp(verb, "--help")) {
        fputs(user_usage, stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--role"))
            role = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--password-file"))
            pwfile = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--qr-png"))
            png = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--totp"))
            code = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--no-qr"))
            qr = 0;
        else if (!strcmp(argv[i], "--enrol-at-login") && !strcmp(verb, "add"))
            enrol_later = 1;
        else if (!strcmp(argv[i], "--api-key") && !strcmp(verb, "add"))
            api_key = 1;
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--help")) {
            fputs(user_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else if (!strcmp(verb, "scope") && !strcmp(argv[i], "--clear"))
            clear = 1;
        else if (!strcmp(verb, "scope") && argv[i][0] != '-' && !scope_arg)
            scope_arg = argv[i];
        else
            return usage();
    }
    if (!dir) return usage();
    if (!strcmp(verb, "list"))
        return name || role || pwfile || png ? usage() : user_list(dir, as_json);
    if (!name || as_json) return usage();
    if (!pki_name_valid(name)) {
        fprintf(stderr, "hdx user %s: invalid name '%s' (1-64 of A-Z a-z 0-9 . _ -)\n", verb, name);
        return 2;
    }
    if (!strcmp(verb, "check"))
        return !pwfile || !code || role || png || !qr ? usage()
                                                      : user_check(dir, name, pwfile, code);
    if (code) return usage();
    if (!strcmp(verb, "scope"))
        return role || pwfile || png || !qr || clear == !!scope_arg
                   ? usage()
                   : user_scope(dir, name, scope_arg);
    if (clear || scope_arg) return usage();
    if (!strcmp(verb, "apikey"))
        return role || pwfile || png || !qr
                   ? usage()
                   : user_change("user apikey", dir, name, HDX_ADMIN_USER_PASSWD, NULL, NULL, NULL,
                                 1);
    int wants_pw = (!strcmp(verb, "add") && !api_key) || !strcmp(verb, "passwd");
    if (wants_pw != !!pwfile || ((png || !qr) && strcmp(verb, "add") && strcmp(verb, "mfa-reset")))
        return usage();
    if (!strcmp(verb, "add")) {
        if (!role || !hdx_admin_user_role_valid(role)) {
            fprintf(stderr, "hdx user add: --role must be admin, security-officer, auditor, "
                            "clinician, nurse, researcher or integration\n");
            return 2;
        }
        if ((enrol_later && (png || !qr)) || (api_key && (enrol_later || png || !qr)))
            return usage();
        if (api_key && strcmp(role, "integration") != 0) {
            fprintf(stderr, "hdx user add: --api-key is for services: --role integration\n");
            return 2;
        }
        return user_add(dir, name, role, pwfile, png, qr, enrol_later, api_key);
    }
    if (role) return usage();
    static const struct {
        const char *verb;
        enum hdx_admin_op op;
    } verbs[] = {
        {"passwd", HDX_ADMIN_USER_PASSWD},
        {"mfa-reset", HDX_ADMIN_USER_MFA},
        {"lock", HDX_ADMIN_USER_LOCK},
        {"unlock", HDX_ADMIN_USER_UNLOCK},
        {"revoke-sessions", HDX_ADMIN_USER_REVOKE_SESSIONS},
    };
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strcmp(verb, verbs[i].verb)) continue;
        char cmd[40];
        snprintf(cmd, sizeof(cmd), "user %s", verb);
        return user_change(cmd, dir, name, verbs[i].op, pwfile, NULL, png, qr);
    }
    return usage();
}

int cmd_training(int argc, char **argv)
{
    const char *dir = NULL, *args[3] = {NULL, NULL, NULL};
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help")) {
            fputs(user_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && n < 3)
            args[n++] = argv[i];
        else
            return usage();
    }
    if (!dir || n != 3 || strcmp(args[0], "set")) return usage();
    struct hdx_admin probe = {.op = HDX_ADMIN_USER_TRAINING};
    char body[HDX_ADMIN_BODY_MAX + 1];
    if (!pki_name_valid(args[1])) {
        fprintf(stderr, "hdx training set: invalid user name '%s'\n", args[1]);
        return 2;
    }
    snprintf(probe.name, sizeof(probe.name), "%s", args[1]);
    snprintf(probe.date, sizeof(probe.date), "%.10s", args[2]);
    if (strlen(args[2]) != 10 || hdx_admin_format(&probe, body, sizeof(body)) < 0) {
        fprintf(stderr, "hdx training set: '%s' is not a date YYYY-MM-DD (2000 or later)\n",
                args[2]);
        return 2;
    }
    return user_change("training set", dir, args[1], HDX_ADMIN_USER_TRAINING, NULL, args[2], NULL,
                       0);
}
