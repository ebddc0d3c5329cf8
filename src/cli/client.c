/* hdx client add|scope|revoke|list: the registry of SMART Backend Services clients (SMART App
 * Launch 2.x, client_credentials with private_key_jwt): each client's id, its JWK Set (the
 * public keys its assertions are checked with, auth/jwt.h) and the SMART scopes it is granted
 * (auth/smart_scope.h). Every change is an admin statement committed as a record of the log
 * (the smart_clients table is its replay: commit/admin.h), queued like hdx user's
 * (cli_admin_run). Input is checked before the store is opened: a bad JWK Set or scope exits 2
 * with one line and nothing queued. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "auth/smart_scope.h"
#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"

static const char client_usage[] =
    "usage: hdx client add NAME --jwks FILE --scope SCOPES -d DIR\n"
    "       hdx client scope NAME SCOPES -d DIR\n"
    "       hdx client revoke NAME -d DIR\n"
    "       hdx client list -d DIR\n"
    "       hdx client VERB --help     the manual page of one verb\n"
    "\n"
    "SMART Backend Services clients: systems that obtain access tokens with a signed JWT\n"
    "assertion (private_key_jwt) instead of a password. Each is registered with the public\n"
    "keys of its JWK Set and the SMART scopes it is granted. NAME is its client_id.\n";

static const char add_help[] =
    "NAME\n"
    "    hdx client add - register a SMART Backend Services client\n"
    "\n"
    "SYNOPSIS\n"
    "    hdx client add NAME --jwks FILE --scope SCOPES -d DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    Registers NAME as a client_id with the JWK Set in FILE and grants it SCOPES, as one\n"
    "    admin record of the log (op client_add). Prints exactly one line, client_id=NAME.\n"
    "\n"
    "    NAME: 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -), as a user name. Users,\n"
    "    devices and clients share one namespace: the name of a user or a device (revoked ones\n"
    "    too) is refused, and hdx user add / hdx device add refuse a client's name.\n"
    "\n"
    "    A revoked client's name may be registered again (new keys, new scope); an active\n"
    "    client's may not: revoke it first.\n"
    "\n"
    "OPTIONS\n"
    "    --jwks FILE\n"
    "        The client's JWK Set (RFC 7517 section 5, {\"keys\":[...]}), at most 8192 bytes,\n"
    "        stored as given. Public keys only: EC on P-384 (ES384) and RSA of 2048 to 8192\n"
    "        bits (RS384), at most 8, each with an optional unique kid, alg ES384/RS384, use\n"
    "        sig, key_ops [\"verify\"]. A set holding a private key (d, p, q, ..., or k) is\n"
    "        refused, not stripped: the private key was exposed, make a new one.\n"
    "    --scope SCOPES\n"
    "        Space-separated SMART scopes (SMART App Launch 2.x), CONTEXT/TYPE.PERMS with\n"
    "        CONTEXT patient, user or system, TYPE a FHIR resource type or *, PERMS a\n"
    "        subsequence of cruds (v1 read, write and * are taken as rs, cud, cruds); e.g.\n"
    "        \"system/Observation.rs system/Patient.r\". At least one; at most 32. Stored in\n"
    "        canonical form (merged per context and type, sorted, v2 letters): hdx client\n"
    "        list shows it.\n"
    "    -d DIR\n"
    "        The data directory.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 registered; 1 refused (the name is taken, an active client of that name exists)\n"
    "    or failed; 2 usage error, or a JWK Set or scope that cannot be registered (one line\n"
    "    on stderr says why; nothing is queued).\n"
    "\n"
    "EXAMPLE\n"
    "    hdx client add lab-feed --jwks lab-feed.jwks.json \\\n"
    "        --scope \"system/Observation.rs system/Patient.r\" -d /var/lib/hdx\n";

static const char scope_help[] =
    "NAME\n"
    "    hdx client scope - replace the scopes granted to a client\n"
    "\n"
    "SYNOPSIS\n"
    "    hdx client scope NAME SCOPES -d DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    Replaces the SMART scopes of the active client NAME with SCOPES (grammar as for hdx\n"
    "    client add --scope; stored in canonical form), as one admin record (op\n"
    "    client_scope). Tokens issued from then on carry at most the new scopes. Prints\n"
    "    client_id=NAME scope=\"CANONICAL\".\n"
    "\n"
    "EXIT STATUS\n"
    "    0 done; 1 no such client, the client is revoked, or failed; 2 usage or a bad scope.\n";

static const char revoke_help[] =
    "NAME\n"
    "    hdx client revoke - revoke a client\n"
    "\n"
    "SYNOPSIS\n"
    "    hdx client revoke NAME -d DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    Marks the active client NAME revoked, as one admin record (op client_revoke): no\n"
    "    token is issued to it from then on. Its row stays, so its name stays taken, until\n"
    "    hdx client add registers the name again. Prints client_id=NAME revoked=TIME.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 done; 1 no such client, already revoked, or failed; 2 usage.\n";

static const char list_help[] =
    "NAME\n"
    "    hdx client list - the registered clients\n"
    "\n"
    "SYNOPSIS\n"
    "    hdx client list -d DIR\n"
    "\n"
    "DESCRIPTION\n"
    "    One line per client in name order:\n"
    "        NAME state=active|revoked scope=\"SCOPES\" keys=N created=TIME [revoked=TIME]\n"
    "    keys: how many keys its JWK Set holds. The keys themselves are not printed.\n"
    "\n"
    "EXIT STATUS\n"
    "    0; 1 when the table cannot be read or holds a damaged row (run hdx verify).\n";

static const char trailer[] =
    "\n"
    "Every change is an admin record of the log (hdx verify replays them against the\n"
    "smart_clients table). It is queued in the store and committed by hdxd within\n"
    "tls.crl_check_ms when it runs (this command waits up to 10 s for it), or by this command\n"
    "itself when no hdxd holds DIR/hdxd.lock.\n";

static int usage(void)
{
    fputs(client_usage, stderr);
    return 2;
}

static int help(const char *verb)
{
    const char *page = !strcmp(verb, "add")      ? add_help
                       : !strcmp(verb, "scope")  ? scope_help
                       : !strcmp(verb, "revoke") ? revoke_help
                       : !strcmp(verb, "list")   ? list_help
                                                 : NULL;
    if (!page) {
        fputs(client_usage, stdout);
        fputs("\n", stdout);
        fputs(add_help, stdout);
        fputs("\n", stdout);
        fputs(scope_help, stdout);
        fputs("\n", stdout);
        fputs(revoke_help, stdout);
        fputs("\n", stdout);
        fputs(list_help, stdout);
    } else {
        fputs(page, stdout);
    }
    fputs(trailer, stdout);
    return 0;
}

int cli_is_client(struct cli_ctx *ctx, const char *name)
{
    struct hdx_smart_client c;
    int rc = hdx_store_client_get(ctx->store, name, &c);
    hdx_smart_client_clear(&c);
    return rc == HDX_OK || rc == HDX_E_INTEGRITY;
}

/* What each hdx_jwks_parse refusal means to the operator. */
static const char *jwks_words(const char *why)
{
    static const struct {
        const char *code, *words;
    } w[] = {
        {"malformed", "not a JWK Set: JSON {\"keys\":[...]} of objects, no duplicate members"},
        {"no_keys", "the JWK Set holds no key"},
        {"too_many_keys", "more than 8 keys"},
        {"kty_not_allowed", "a key that is neither EC (P-384) nor RSA"},
        {"crv_not_allowed", "an EC key on a curve other than P-384"},
        {"private_key", "it holds a private key: register only the public keys (and replace "
                        "the exposed key)"},
        {"key_alg_not_allowed", "a key whose alg is not ES384 (EC) or RS384 (RSA)"},
        {"use_not_sig", "a key whose use is not sig"},
        {"key_ops_not_verify", "a key whose key_ops lacks verify"},
        {"kid_invalid", "a kid that is not 1-255 printable ASCII characters"},
        {"kid_duplicate", "two keys with the same kid"},
        {"rsa_too_small", "an RSA key under 2048 bits"},
        {"rsa_too_large", "an RSA key over 8192 bits"},
        {"key_invalid", "a key whose x, y, n or e is not valid (canonical base64url, on the "
                        "curve, an odd exponent)"},
        {"too_long", "larger than 8192 bytes"},
    };
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
        if (!strcmp(why, w[i].code)) return w[i].words;
    return "not a usable JWK Set";
}

/* FILE into a->jwks (at most HDX_SMART_JWKS_MAX bytes, read by size, so a pipe works too),
 * checked as the statement will be. 0, or 2 with one line on stderr. */
static int read_jwks(const char *cmd, const char *path, struct hdx_admin *a)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: --jwks %s: %s\n", cmd, path, strerror(errno));
        return 2;
    }
    size_t n = fread(a->jwks, 1, sizeof(a->jwks), f);
    int more = fgetc(f) != EOF, err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: --jwks %s: cannot read it\n", cmd, path);
        return 2;
    }
    if (more) {
        fprintf(stderr, "%s: --jwks %s: larger than %d bytes\n", cmd, path, HDX_SMART_JWKS_MAX);
        return 2;
    }
    if (n == 0) {
        fprintf(stderr, "%s: --jwks %s: empty\n", cmd, path);
        return 2;
    }
    struct hdx_jwks *k = NULL;
    char why[64] = "";
    int rc = hdx_jwks_parse((const char *)a->jwks, n, &k, why, sizeof(why));
    hdx_jwks_free(k);
    if (rc != HDX_OK) {
        fprintf(stderr, "%s: --jwks %s: refused (%s): %s\n", cmd, path, why, jwks_words(why));
        return 2;
    }
    a->jwks_len = n;
    return 0;
}

/* The operator's scopes, canonical, into a->smart_scope. 0, or 2 with one line on stderr. */
static int read_scope(const char *cmd, const char *text, struct hdx_admin *a)
{
    struct hdx_smart_scopes *sc = calloc(1, sizeof(*sc));
    char why[64] = "";
    int rc = sc ? hdx_smart_scope_parse(text, strlen(text), sc, why, sizeof(why)) : HDX_E_NOMEM;
    if (rc == HDX_OK && sc->n == 0) {
        fprintf(stderr, "%s: scope: empty: grant at least one scope (e.g. system/Patient.r)\n",
                cmd);
        rc = HDX_E_INVAL;
    } else if (rc == HDX_E_NOMEM) {
        fprintf(stderr, "%s: out of memory\n", cmd);
    } else if (rc != HDX_OK) {
        fprintf(stderr,
                "%s: scope: refused (%s): each scope is CONTEXT/TYPE.PERMS, CONTEXT patient, "
                "user or system, TYPE a resource type or *, PERMS a subsequence of cruds, one "
                "space apart, at most 32\n",
                cmd, why);
    } else if (hdx_smart_scope_format(sc, a->smart_scope, sizeof(a->smart_scope)) != HDX_OK) {
        fprintf(stderr, "%s: scope: too long\n", cmd);
        rc = HDX_E_TOOBIG;
    }
    free(sc);
    return rc == HDX_OK ? 0 : 2;
}

/* The row of an active client, or one line naming cmd and 1. */
static int active_client(struct cli_ctx *ctx, const char *cmd, const char *name)
{
    struct hdx_smart_client c;
    int rc = hdx_store_client_get(ctx->store, name, &c), revoked = c.revoked_us != 0;
    hdx_smart_client_clear(&c);
    if (rc == HDX_OK && !revoked) return 0;
    fprintf(stderr, "%s: %s\n", cmd,
            rc == HDX_E_NOTFOUND    ? "no such client"
            : rc == HDX_E_INTEGRITY ? "the client's row is damaged (run hdx verify)"
            : rc == HDX_OK          ? "the client is revoked"
                                    : "cannot read the client from the store");
    return 1;
}

static int client_add(const char *dir, const char *name, const char *jwks, const char *scope)
{
    const char *cmd = "hdx client add";
    struct hdx_admin *a = calloc(1, sizeof(*a));
    struct cli_ctx ctx;
    struct hdx_device d;
    struct hdx_smart_client old = {0};
    char why[512] = "";
    int rc, ret = 1;
    if (!a) return 1;
    a->op = HDX_ADMIN_CLIENT_ADD;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (read_jwks(cmd, jwks, a) || read_scope(cmd, scope, a)) {
        free(a);
        return 2;
    }
    if (cli_open(dir, 1, &ctx)) {
        free(a);
        return 1;
    }
    int user = hdx_store_user_exists(ctx.store, name);
    if (user != 0) {
        fprintf(stderr, "%s: %s\n", cmd,
                user > 0 ? "the name is a user's (hdx user): users, devices and clients share "
                           "one namespace"
                         : "cannot read the users table");
        goto out;
    }
    if ((rc = hdx_store_device_get(ctx.store, name, &d)) != HDX_E_NOTFOUND) {
        fprintf(stderr, "%s: %s\n", cmd,
                rc == HDX_OK ? "the name is a device's (hdx device): users, devices and "
                               "clients share one namespace"
                             : "cannot read the devices table");
        goto out;
    }
    rc = hdx_store_client_get(ctx.store, name, &old);
    if (rc == HDX_OK && !old.revoked_us) {
        fprintf(stderr,
                "%s: client %s is registered and active: revoke it first (hdx client "
                "revoke) to register it again\n",
                cmd, name);
        goto out;
    }
    if (rc != HDX_OK && rc != HDX_E_NOTFOUND) {
        fprintf(stderr, "%s: %s\n", cmd,
                rc == HDX_E_INTEGRITY ? "the client's row is damaged (run hdx verify)"
                                      : "cannot read the client from the store");
        goto out;
    }
    hdx_smart_client_clear(&old);
    a->created_us = hdx_now_us();
    rc = cli_admin_run(dir, &ctx, a, why, sizeof(why));
    if (rc == HDX_OK &&
        (hdx_store_client_get(ctx.store, name, &old) != HDX_OK || old.revoked_us ||
         old.created_us != a->created_us || old.jwks_len != a->jwks_len ||
         memcmp(old.jwks, a->jwks, a->jwks_len) != 0 || strcmp(old.scope, a->smart_scope) != 0)) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the client is not registered in the store after its record");
    }
    if (rc != HDX_OK) {
        fprintf(stderr, "%s: %s\n", cmd, why);
        goto out;
    }
    printf("client_id=%s\n", name);
    ret = 0;
out:
    hdx_smart_client_clear(&old);
    cli_close(&ctx);
    free(a);
    return ret;
}

/* scope and revoke: one statement for an active client. */
static int client_change(const char *dir, const char *name, enum hdx_admin_op op, const char *scope)
{
    const char *cmd = op == HDX_ADMIN_CLIENT_SCOPE ? "hdx client scope" : "hdx client revoke";
    struct hdx_admin *a = calloc(1, sizeof(*a));
    struct cli_ctx ctx;
    struct hdx_smart_client back = {0};
    char why[512] = "", t[40];
    int ret = 1;
    if (!a) return 1;
    a->op = op;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (op == HDX_ADMIN_CLIENT_SCOPE && read_scope(cmd, scope, a)) {
        free(a);
        return 2;
    }
    if (cli_open(dir, 1, &ctx)) {
        free(a);
        return 1;
    }
    if (active_client(&ctx, cmd, name)) goto out;
    a->revoked_us = op == HDX_ADMIN_CLIENT_REVOKE ? hdx_now_us() : 0;
    int rc = cli_admin_run(dir, &ctx, a, why, sizeof(why));
    if (rc == HDX_OK &&
        (hdx_store_client_get(ctx.store, name, &back) != HDX_OK ||
         (op == HDX_ADMIN_CLIENT_SCOPE ? back.revoked_us || strcmp(back.scope, a->smart_scope)
                                       : back.revoked_us != a->revoked_us))) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the store does not hold the change after its record");
    }
    if (rc != HDX_OK) {
        fprintf(stderr, "%s: %s\n", cmd, why);
        goto out;
    }
    if (op == HDX_ADMIN_CLIENT_SCOPE) {
        printf("client_id=%s scope=\"%s\"\n", name, a->smart_scope);
    } else {
        hdx_format_time(a->revoked_us, t, sizeof(t));
        printf("client_id=%s revoked=%s\n", name, t);
    }
    ret = 0;
out:
    hdx_smart_client_clear(&back);
    cli_close(&ctx);
    free(a);
    return ret;
}

static int list_one(void *arg, const struct hdx_smart_client *c)
{
    struct hdx_jwks *k = NULL;
    char why[64], created[40], revoked[40] = "", keys[24];
    if (hdx_jwks_parse((const char *)c->jwks, c->jwks_len, &k, why, sizeof(why)) == HDX_OK)
        snprintf(keys, sizeof(keys), "%zu", hdx_jwks_count(k));
    else
        snprintf(keys, sizeof(keys), "unusable"); /* no statement writes it: hdx verify says */
    hdx_jwks_free(k);
    hdx_format_time(c->created_us, created, sizeof(created));
    if (c->revoked_us) {
        memcpy(revoked, " revoked=", 10);
        hdx_format_time(c->revoked_us, revoked + 9, sizeof(revoked) - 9);
    }
    printf("%s state=%s scope=\"%s\" keys=%s created=%s%s\n", c->name,
           c->revoked_us ? "revoked" : "active", c->scope, keys, created, revoked);
    return 0;
}

static int client_list(const char *dir)
{
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = hdx_store_clients_list(ctx.store, list_one, NULL);
    cli_close(&ctx);
    if (rc == HDX_E_INTEGRITY) {
        fprintf(stderr, "hdx client list: a row of smart_clients is damaged and not shown (run "
                        "hdx verify)\n");
        return 1;
    }
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx client list: cannot read the smart_clients table: %s\n",
                hdx_strerror(rc));
        return 1;
    }
    return 0;
}

int cmd_client(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *jwks = NULL, *scope = NULL, *words = NULL;
    if (argc < 2) return usage();
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "help")) return help("");
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return help(verb);
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--jwks") && !strcmp(verb, "add"))
            jwks = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--scope") && !strcmp(verb, "add"))
            scope = cli_arg(argc, argv, &i);
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else if (argv[i][0] != '-' && !words && !strcmp(verb, "scope"))
            words = argv[i];
        else
            return usage();
    }
    if (!dir) return usage();
    if (!strcmp(verb, "list")) return name ? usage() : client_list(dir);
    if (!name) return usage();
    int known = !strcmp(verb, "add") || !strcmp(verb, "scope") || !strcmp(verb, "revoke");
    if (!known) return usage();
    if (!pki_name_valid(name) || strlen(name) > 64) {
        fprintf(stderr, "hdx client %s: invalid name '%s' (1-64 of A-Z a-z 0-9 . _ -)\n", verb,
                name);
        return 2;
    }
    if (!strcmp(verb, "add")) {
        if (!jwks || !scope) {
            fprintf(stderr, "hdx client add: --jwks FILE and --scope SCOPES are required\n");
            return 2;
        }
        return client_add(dir, name, jwks, scope);
    }
    if (!strcmp(verb, "scope"))
        return words ? client_change(dir, name, HDX_ADMIN_CLIENT_SCOPE, words) : usage();
    return client_change(dir, name, HDX_ADMIN_CLIENT_REVOKE, NULL);
}
