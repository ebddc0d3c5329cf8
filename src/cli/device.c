/* hdx device add|revoke|signkey|scope|list: device identities (certificate CN), their roles
 * and the scopes of those that receive (policy/scope.h). */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "commit/admin.h"
#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/sth.h"
#include "pki/pki.h"
#include "policy/scope.h"

static const char device_usage[] =
    "usage: hdx device add NAME -d DIR [--role device|subscriber|gateway] [--days N]\n"
    "                      [--signing | --signing-pub PUB.pem] [--scope SCOPE]\n"
    "       hdx device revoke NAME -d DIR\n"
    "       hdx device signkey NAME -d DIR (--signing | --signing-pub PUB.pem | --remove)\n"
    "       hdx device scope NAME (SCOPE | --clear) -d DIR\n"
    "       hdx device list -d DIR\n"
    "\n"
    "add     issues a client certificate (CN=NAME, OU=ROLE) signed by DIR's CA and enrols\n"
    "        the device in the store; prints cert=PATH, key=PATH (mode 0600), ca=PATH.\n"
    "        Roles: device (default) may send HL7 over MLLP; subscriber may only receive\n"
    "        (hdx tail); gateway may do both. Validity: --days (default 825).\n"
    "revoke  adds the certificate to DIR/ca.crl.pem and marks the device revoked: a running\n"
    "        hdxd refuses its next handshake and closes its open connections within a second.\n"
    "signkey registers a new stream-signing key for an enrolled device (--signing makes\n"
    "        devices/NAME.sign.key, which must not exist yet) or removes it (--remove).\n"
    "scope   sets what a subscriber or gateway may receive on the subscription port, or\n"
    "        (--clear) removes its scope. SCOPE is space-separated KEY=VALUE[,VALUE...]\n"
    "        terms, each key at most once, at most 32 values each:\n"
    "          type=ORU^R01,ADT^A01   exact message types (MSH-9)\n"
    "          sender=monitor-*,lab   exact sender names, or a prefix ending in *\n"
    "          patient=ID,ID          patient identifiers (PID-3), stored only as their\n"
    "                                 blind tokens, never in clear\n"
    "        A record is delivered when it matches the SUB filter AND every key of the\n"
    "        scope (a record without a patient is outside a scope naming patients) AND the\n"
    "        policy permits it (a consent directive may withhold a patient), live and\n"
    "        replayed. A device with no scope receives every record its filter matches\n"
    "        (scope=all in the list). A running hdxd ends the device's open subscriptions\n"
    "        within tls.crl_check_ms of the change (BYE reason=scope-changed); they\n"
    "        subscribe again under the new scope. add --scope sets the scope before the\n"
    "        enrolment is committed, so the device never subscribes without it; a name\n"
    "        enrolled again keeps its scope. A bad scope exits 2 with nothing queued.\n"
    "list    one line per device: name, role, serial, state, and for subscribers and\n"
    "        gateways scope=all or scope=\"...\" (patients counted, not shown).\n"
    "\n"
    "Enrolment, revocation, signing keys and scopes are records of the log (kind admin, one\n"
    "per change; hdx verify replays them against the device tables). The change is queued in\n"
    "the store and committed by hdxd within tls.crl_check_ms when it runs (this command\n"
    "waits up to 10 s for it), or by this command itself when no hdxd holds DIR/hdxd.lock.\n";

static int usage(void)
{
    fputs(device_usage, stderr);
    return 2;
}

static int role_valid(const char *r)
{
    return !strcmp(r, "device") || !strcmp(r, "subscriber") || !strcmp(r, "gateway");
}

/* A revoked device's files are kept for the record under their serial, freeing the name. */
static void retire_files(const char *dir, const struct hdx_device *old)
{
    char from[HDX_PATH_MAX], to[HDX_PATH_MAX];
    const char *ext[] = {"pem", "key", "sign.key"};
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof(from), "%s/devices/%s.%s", dir, old->name, ext[i]);
        snprintf(to, sizeof(to), "%s/devices/%s.%s.revoked.%s", dir, old->name, old->serial,
                 ext[i]);
        (void)rename(from, to);
    }
}

/* The device's stream-signing key: made here (written to path, 0600) when pub_file is NULL,
 * else read from pub_file. Its raw public half goes to pub. */
static int signing_key(const char *path, const char *pub_file, uint8_t pub[32], char *why,
                       size_t cap)
{
    EVP_PKEY *k = NULL;
    size_t len = 32;
    int rc = HDX_OK;
    if (pub_file) {
        if (hdx_logkey_load_public(pub_file, &k) != HDX_OK) {
            snprintf(why, cap, "--signing-pub is not an Ed25519 public key (PEM)");
            return HDX_E_INVAL;
        }
    } else {
        BIO *b = BIO_new(BIO_s_mem());
        char *pem = NULL;
        long n = 0;
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        if (!k || !b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1 ||
            (n = BIO_get_mem_data(b, &pem)) <= 0)
            rc = HDX_E_CRYPTO;
        if (rc == HDX_OK) rc = hdx_write_new_file(path, pem, (size_t)n, 0600);
        if (n > 0) OPENSSL_cleanse(pem, (size_t)n);
        BIO_free(b);
        if (rc != HDX_OK) snprintf(why, cap, "cannot write the signing key: %s", hdx_strerror(rc));
    }
    if (rc == HDX_OK && EVP_PKEY_get_raw_public_key(k, pub, &len) != 1) rc = HDX_E_CRYPTO;
    EVP_PKEY_free(k);
    return rc;
}

/* The operator's scope into the device_scope statement *a (name set, scope canonical); 2 with
 * one line on stderr when it is refused (nothing is queued then). */
static int scope_statement(const char *cmd, struct cli_ctx *ctx, const char *name,
                           const char *scope, struct hdx_admin *a)
{
    char why[200];
    memset(a, 0, sizeof(*a));
    a->op = HDX_ADMIN_DEVICE_SCOPE;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (!scope) return 0; /* --clear */
    if (hdx_scope_from_operator(scope, strlen(scope), ctx->kr, a->scope, sizeof(a->scope), why,
                                sizeof(why)) != HDX_OK) {
        fprintf(stderr, "%s: --scope refused: %s\n", cmd, why);
        return 2;
    }
    a->has_scope = 1;
    return 0;
}

/* "scope=all" or scope="type=... sender=... patients=N" (no token: see policy/scope.h). */
static void scope_words(const struct hdx_device_scope *sc, char *out, size_t cap)
{
    struct hdx_scope parsed;
    char d[512];
    if (!sc)
        snprintf(out, cap, "scope=all");
    else if (hdx_scope_parse(sc->scope, strlen(sc->scope), &parsed) != HDX_OK)
        snprintf(out, cap, "scope=damaged");
    else {
        hdx_scope_describe(&parsed, d, sizeof(d));
        snprintf(out, cap, "scope=\"%s\"", d);
    }
}

static int device_add(const char *dir, const char *name, const char *role, int days, int signing,
                      const char *sign_pub, const char *scope)
{
    struct cli_ctx ctx;
    struct hdx_device d = {0}, old;
    struct hdx_admin sa;
    char why[256];
    if (!pki_name_valid(name)) {
        fprintf(stderr, "hdx device add: invalid name '%s' (1-64 of A-Z a-z 0-9 . _ -)\n", name);
        return 2;
    }
    if (cli_open(dir, 1, &ctx)) return 1;
    if (scope && scope_statement("hdx device add", &ctx, name, scope, &sa)) {
        cli_close(&ctx);
        return 2;
    }
    struct hdx_user svc;
    int is_service =
        hdx_store_user_get(ctx.store, name, &svc) == HDX_OK && !strcmp(svc.role, "integration");
    sodium_memzero(&svc, sizeof(svc));
    if (cli_is_client(&ctx, name)) { /* one principal per name (hdx client) */
        fprintf(stderr, "hdx device add: %s is a SMART client's name (hdx client)\n", name);
        cli_close(&ctx);
        return 1;
    }
    if (is_service) { /* one scope per name (policy/scope.h): a service's must stay its own */
        fprintf(stderr, "hdx device add: %s is a service's name (hdx user, role integration)\n",
                name);
        cli_close(&ctx);
        return 1;
    }
    int rc = hdx_store_device_get(ctx.store, name, &old);
    if (rc == HDX_OK && !old.revoked_us) {
        fprintf(stderr, "hdx device add: device %s exists (serial %s); revoke it first\n", name,
                old.serial);
        cli_close(&ctx);
        return 1;
    }
    if (rc == HDX_OK) retire_files(dir, &old);
    snprintf(d.name, sizeof(d.name), "%s", name);
    snprintf(d.role, sizeof(d.role), "%s", role);
    d.created_us = hdx_now_us();
    char sign_path[HDX_PATH_MAX];
    uint8_t pub[32];
    snprintf(sign_path, sizeof(sign_path), "%s/devices/%s.sign.key", dir, name);
    rc = pki_issue_client(dir, name, role, days, d.serial, sizeof(d.serial), why, sizeof(why));
    if (rc == HDX_OK && (signing || sign_pub))
        rc = signing_key(sign_path, sign_pub, pub, why, sizeof(why));
    /* The scope first: once the device_add commits the certificate is good on the
     * subscription port, and by then its scope is in the store (commit/admin.h). */
    if (rc == HDX_OK && scope) rc = cli_admin_run(dir, &ctx, &sa, why, sizeof(why));
    if (rc == HDX_OK) {
        struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_ADD, .created_us = d.created_us};
        snprintf(a.name, sizeof(a.name), "%s", d.name);
        snprintf(a.role, sizeof(a.role), "%s", d.role);
        snprintf(a.serial, sizeof(a.serial), "%s", d.serial);
        a.has_pub = signing || sign_pub;
        if (a.has_pub) memcpy(a.sign_pub, pub, 32);
        rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    }
    if (rc == HDX_OK && (hdx_store_device_get(ctx.store, name, &old) != HDX_OK ||
                         strcmp(old.serial, d.serial) != 0 || old.revoked_us)) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the device is not enrolled in the store after its record");
    }
    struct hdx_device_scope sc;
    int has_scope = rc == HDX_OK && hdx_store_device_scope_get(ctx.store, name, &sc) == HDX_OK;
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx device add: %s\n", why);
        return 1;
    }
    char real[HDX_PATH_MAX], words[600];
    if (!realpath(dir, real)) snprintf(real, sizeof(real), "%s", dir);
    printf("cert=%s/devices/%s.pem\nkey=%s/devices/%s.key\nca=%s/ca.pem\n", real, name, real, name,
           real);
    if (signing && !sign_pub) printf("signkey=%s/devices/%s.sign.key\n", real, name);
    scope_words(has_scope ? &sc : NULL, words, sizeof(words));
    if (has_scope) /* set now, or kept from an earlier enrolment of the name */
        printf("serial=%s role=%s %s\n", d.serial, d.role, words);
    else
        printf("serial=%s role=%s\n", d.serial, d.role);
    return 0;
}

static int device_scope(const char *dir, const char *name, const char *scope)
{
    struct cli_ctx ctx;
    struct hdx_device d;
    struct hdx_admin a;
    struct hdx_device_scope sc;
    char why[256], words[600];
    if (cli_open(dir, 1, &ctx)) return 1;
    if (scope_statement("hdx device scope", &ctx, name, scope, &a)) {
        cli_close(&ctx);
        return 2;
    }
    int rc = hdx_store_device_get(ctx.store, name, &d);
    if (rc != HDX_OK || d.revoked_us || !strcmp(d.role, "device")) {
        fprintf(stderr, "hdx device scope: %s\n",
                rc != HDX_OK   ? "no such device"
                : d.revoked_us ? "device is revoked"
                               : "a device of role device receives nothing: no scope to set");
        cli_close(&ctx);
        return 1;
    }
    rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    int got = rc == HDX_OK ? hdx_store_device_scope_get(ctx.store, name, &sc) : HDX_OK;
    if (rc == HDX_OK &&
        (a.has_scope ? got != HDX_OK || strcmp(sc.scope, a.scope) != 0 : got != HDX_E_NOTFOUND)) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the store does not hold the scope after its record");
    }
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx device scope: %s\n", why);
        return 1;
    }
    scope_words(a.has_scope ? &sc : NULL, words, sizeof(words));
    printf("device=%s %s\n", name, words);
    return 0;
}

static int device_revoke(const char *dir, const char *name)
{
    struct cli_ctx ctx;
    struct hdx_device d;
    char why[256];
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = hdx_store_device_get(ctx.store, name, &d);
    if (rc != HDX_OK || d.revoked_us) {
        fprintf(stderr, "hdx device revoke: %s\n",
                rc != HDX_OK ? "no such device" : "device already revoked");
        cli_close(&ctx);
        return 1;
    }
    /* The CRL first: handshakes are refused from now on, whatever the queue does. */
    rc = pki_revoke(dir, d.serial, why, sizeof(why));
    if (rc == HDX_OK) {
        struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_REVOKE, .revoked_us = hdx_now_us()};
        snprintf(a.name, sizeof(a.name), "%s", d.name);
        snprintf(a.serial, sizeof(a.serial), "%s", d.serial);
        rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    }
    struct hdx_device back;
    if (rc == HDX_OK &&
        (hdx_store_device_get(ctx.store, name, &back) != HDX_OK || !back.revoked_us)) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "cannot mark the device revoked in the store");
    }
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx device revoke: %s\n", why);
        return 1;
    }
    printf("revoked=%s serial=%s\n", name, d.serial);
    return 0;
}

static int device_signkey(const char *dir, const char *name, int signing, const char *sign_pub,
                          int remove)
{
    struct cli_ctx ctx;
    struct hdx_device d;
    char why[256], sign_path[HDX_PATH_MAX];
    struct hdx_admin a = {.op = HDX_ADMIN_DEVICE_SIGNKEY};
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = hdx_store_device_get(ctx.store, name, &d);
    if (rc != HDX_OK || d.revoked_us) {
        fprintf(stderr, "hdx device signkey: %s\n",
                rc != HDX_OK ? "no such device" : "device is revoked");
        cli_close(&ctx);
        return 1;
    }
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(sign_path, sizeof(sign_path), "%s/devices/%s.sign.key", dir, name);
    rc = HDX_OK;
    if (!remove) {
        rc = signing_key(sign_path, sign_pub, a.sign_pub, why, sizeof(why));
        a.has_pub = rc == HDX_OK;
    }
    if (rc == HDX_OK) rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx device signkey: %s\n", why);
        return 1;
    }
    char real[HDX_PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof(real), "%s", dir);
    if (remove)
        printf("signkey=none device=%s\n", name);
    else if (signing)
        printf("signkey=%s/devices/%s.sign.key\n", real, name);
    else
        printf("signkey=registered device=%s\n", name);
    return 0;
}

static int print_device(void *arg, const struct hdx_device *d, const struct hdx_device_scope *sc,
                        int bad)
{
    char words[600] = "";
    /* A device of role device reads nothing: a scope would say nothing about it. */
    if (bad)
        snprintf(words, sizeof(words), " scope=damaged");
    else if (strcmp(d->role, "device") != 0 || sc) {
        words[0] = ' ';
        scope_words(sc, words + 1, sizeof(words) - 1);
    }
    printf("%s role=%s serial=%s state=%s%s\n", d->name, d->role, d->serial,
           d->revoked_us ? "revoked" : "active", words);
    return 0;
}

int cmd_device(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *role = "device", *sign_pub = NULL, *scope = NULL;
    int days = 825, signing = 0, remove = 0, clear = 0;
    if (argc < 2) return usage();
    const char *verb = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--role"))
            role = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--days"))
            days = atoi(cli_arg(argc, argv, &i));
        else if (!strcmp(argv[i], "--signing"))
            signing = 1;
        else if (!strcmp(argv[i], "--signing-pub"))
            sign_pub = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--remove"))
            remove = 1;
        else if (!strcmp(argv[i], "--scope"))
            scope = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--clear"))
            clear = 1;
        else if (!strcmp(argv[i], "--help")) {
            fputs(device_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else if (argv[i][0] != '-' && !scope && !strcmp(verb, "scope"))
            scope = argv[i]; /* hdx device scope NAME SCOPE */
        else
            return usage();
    }
    if (!strcmp(verb, "--help")) {
        fputs(device_usage, stdout);
        return 0;
    }
    if (!dir) return usage();
    if (!strcmp(verb, "list")) {
        struct cli_ctx ctx;
        if (cli_open(dir, 0, &ctx)) return 1;
        hdx_store_device_scopes_list(ctx.store, print_device, NULL);
        cli_close(&ctx);
        return 0;
    }
    if (!name) return usage();
    if (!strcmp(verb, "add")) {
        if (!role_valid(role) || days == 0) {
            fprintf(stderr, "hdx device add: --role must be device, subscriber or gateway\n");
            return 2;
        }
        if ((signing && sign_pub) || clear) return usage();
        if (scope && !strcmp(role, "device")) {
            fprintf(stderr, "hdx device add: --scope is for subscriber and gateway: a device "
                            "receives nothing\n");
            return 2;
        }
        return device_add(dir, name, role, days, signing, sign_pub, scope);
    }
    if (!strcmp(verb, "scope")) {
        if (!!scope + clear != 1) return usage();
        return device_scope(dir, name, scope);
    }
    if (scope || clear) return usage();
    if (!strcmp(verb, "revoke")) return device_revoke(dir, name);
    if (!strcmp(verb, "signkey")) {
        if (signing + !!sign_pub + remove != 1) return usage();
        return device_signkey(dir, name, signing, sign_pub, remove);
    }
    return usage();
}
