/* hdx device add|revoke|list: device identities (certificate CN) and their roles. */
#include <openssl/evp.h>
#include <openssl/pem.h>
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

static const char device_usage[] =
    "usage: hdx device add NAME -d DIR [--role device|subscriber|gateway] [--days N]\n"
    "                      [--signing | --signing-pub PUB.pem]\n"
    "       hdx device revoke NAME -d DIR\n"
    "       hdx device signkey NAME -d DIR (--signing | --signing-pub PUB.pem | --remove)\n"
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
    "list    one line per device: name, role, serial, state.\n"
    "\n"
    "Enrolment, revocation and signing keys are records of the log (kind admin, one per\n"
    "change; hdx verify replays them against the device tables). The change is queued in the\n"
    "store and committed by hdxd within tls.crl_check_ms when it runs (this command waits up\n"
    "to 10 s for it), or by this command itself when no hdxd holds DIR/hdxd.lock.\n";

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

static int device_add(const char *dir, const char *name, const char *role, int days, int signing,
                      const char *sign_pub)
{
    struct cli_ctx ctx;
    struct hdx_device d = {0}, old;
    char why[256];
    if (!pki_name_valid(name)) {
        fprintf(stderr, "hdx device add: invalid name '%s' (1-64 of A-Z a-z 0-9 . _ -)\n", name);
        return 2;
    }
    if (cli_open(dir, 1, &ctx)) return 1;
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
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx device add: %s\n", why);
        return 1;
    }
    char real[HDX_PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof(real), "%s", dir);
    printf("cert=%s/devices/%s.pem\nkey=%s/devices/%s.key\nca=%s/ca.pem\n", real, name, real, name,
           real);
    if (signing && !sign_pub) printf("signkey=%s/devices/%s.sign.key\n", real, name);
    printf("serial=%s role=%s\n", d.serial, d.role);
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

static int print_device(void *arg, const struct hdx_device *d)
{
    printf("%s role=%s serial=%s state=%s\n", d->name, d->role, d->serial,
           d->revoked_us ? "revoked" : "active");
    return 0;
}

int cmd_device(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL, *role = "device", *sign_pub = NULL;
    int days = 825, signing = 0, remove = 0;
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
        else if (!strcmp(argv[i], "--help")) {
            fputs(device_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !name)
            name = argv[i];
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
        hdx_store_devices_list(ctx.store, print_device, NULL);
        cli_close(&ctx);
        return 0;
    }
    if (!name) return usage();
    if (!strcmp(verb, "add")) {
        if (!role_valid(role) || days == 0) {
            fprintf(stderr, "hdx device add: --role must be device, subscriber or gateway\n");
            return 2;
        }
        if (signing && sign_pub) return usage();
        return device_add(dir, name, role, days, signing, sign_pub);
    }
    if (!strcmp(verb, "revoke")) return device_revoke(dir, name);
    if (!strcmp(verb, "signkey")) {
        if (signing + !!sign_pub + remove != 1) return usage();
        return device_signkey(dir, name, signing, sign_pub, remove);
    }
    return usage();
}
