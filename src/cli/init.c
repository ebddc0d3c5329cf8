/* hdx init DIR: a working data directory in about a second. */
#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/password.h"
#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"

static const char init_usage[] =
    "usage: hdx init DIR\n"
    "\n"
    "Creates a data directory for hdxd: hdx.conf (commented defaults), a private CA\n"
    "(ca.pem, ca.key, ca.crl.pem), a server certificate for localhost/127.0.0.1/::1, the\n"
    "key-encryption key kek.key, the log-signing key log.key with log.pub.pem, an\n"
    "empty encrypted store, and password-blocklist.txt (common passwords that hdx user\n"
    "refuses; replace it with a larger breached-password list, one a line). Every secret\n"
    "is mode 0600. Refuses a DIR that is not empty.\n"
    "Prints dir=, conf=, ca= and logkey= lines.\n";

static int dir_prepare(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        int used = 0;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) used = 1;
        closedir(d);
        if (used) {
            fprintf(stderr, "hdx init: %s is not empty; refusing to overwrite what is there\n",
                    dir);
            return 1;
        }
        return chmod(dir, 0700) == 0 ? 0 : 1;
    }
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "hdx init: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    return 0;
}

/* The Ed25519 key that signs tree heads (DESIGN M5); kept beside the CA, 0600. */
static int create_log_key(const char *dir)
{
    char path[HDX_PATH_MAX];
    int rc = 1;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
    char *p1, *p2;
    if (!pk || !priv || !pub || !PEM_write_bio_PrivateKey(priv, pk, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_PUBKEY(pub, pk))
        goto out;
    long n1 = BIO_get_mem_data(priv, &p1), n2 = BIO_get_mem_data(pub, &p2);
    if (hdx_path(path, sizeof(path), dir, "log.key") ||
        hdx_write_new_file(path, p1, (size_t)n1, 0600) != HDX_OK)
        goto out;
    if (hdx_path(path, sizeof(path), dir, "log.pub.pem") ||
        hdx_write_new_file(path, p2, (size_t)n2, 0644) != HDX_OK)
        goto out;
    rc = 0;
out:
    BIO_free_all(priv); /* BIO_s_mem frees (but does not wipe) its buffer */
    BIO_free_all(pub);
    EVP_PKEY_free(pk);
    return rc;
}

static int create_store(const char *dir)
{
    char path[HDX_PATH_MAX];
    struct hdx_keyring *kr = NULL;
    struct hdx_store *s = NULL;
    uint8_t wrapped[HDX_WRAPPED_LEN];
    int rc = HDX_E_IO;
    if (hdx_path(path, sizeof(path), dir, "kek.key") || (rc = hdx_kek_create(path)) != HDX_OK ||
        (rc = hdx_keyring_open(path, &kr, NULL, 0)) != HDX_OK)
        goto out;
    if (hdx_path(path, sizeof(path), dir, "store.db") ||
        (rc = hdx_store_open(path, HDX_STORE_CREATE, &s)) != HDX_OK)
        goto out;
    if ((rc = hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, wrapped)) != HDX_OK ||
        (rc = hdx_store_key_put(s, HDX_KEY_BLIND, 1, wrapped, sizeof(wrapped))) != HDX_OK ||
        (rc = hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, wrapped)) != HDX_OK ||
        (rc = hdx_store_key_put(s, HDX_KEY_DATA, 1, wrapped, sizeof(wrapped))) != HDX_OK)
        goto out;
out:
    hdx_store_close(s);
    hdx_keyring_free(kr);
    return rc;
}

int cmd_init(int argc, char **argv)
{
    char path[HDX_PATH_MAX], why[256];
    if (argc != 2 || argv[1][0] == '-') {
        fputs(init_usage, argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    const char *dir = argv[1];
    umask(077);
    if (dir_prepare(dir)) return 1;
    if (hdx_path(path, sizeof(path), dir, "hdx.conf") ||
        hdx_write_new_file(path, hdx_conf_template(), strlen(hdx_conf_template()), 0600) !=
            HDX_OK) {
        fprintf(stderr, "hdx init: cannot write %s\n", path);
        return 1;
    }
    const char *list = hdx_password_default_blocklist();
    if (hdx_path(path, sizeof(path), dir, "password-blocklist.txt") ||
        hdx_write_new_file(path, list, strlen(list), 0600) != HDX_OK) {
        fprintf(stderr, "hdx init: cannot write %s\n", path);
        return 1;
    }
    if (pki_create_ca(dir, why, sizeof(why)) != HDX_OK ||
        pki_create_server(dir, why, sizeof(why)) != HDX_OK) {
        fprintf(stderr, "hdx init: %s\n", why);
        return 1;
    }
    if (create_log_key(dir) != 0 || create_store(dir) != HDX_OK) {
        fprintf(stderr, "hdx init: cannot create keys and store in %s\n", dir);
        return 1;
    }
    char real[HDX_PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof(real), "%s", dir);
    printf("dir=%s\nconf=%s/hdx.conf\nca=%s/ca.pem\nlogkey=%s/log.pub.pem\n", real, real, real,
           real);
    printf("next: hdx device add NAME -d %s   then: hdxd -c %s/hdx.conf\n", dir, dir);
    return 0;
}
