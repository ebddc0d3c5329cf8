/* pki: the data directory's private CA. Contract in pki.h.
 * Design notes:
 * - Every certificate and CRL is built in memory first; files are written only once the whole
 *   object is signed, so a failure never leaves a half-built certificate behind.
 * - New files are created with O_CREAT|O_EXCL: that is both the "refuse to overwrite" check and
 *   the guarantee that a key never lands in a pre-existing (possibly world-readable or
 *   symlinked) file. If a later file of a set fails, the ones created earlier are unlinked so a
 *   retry starts clean.
 * - Each public function brackets its OpenSSL calls with ERR_set_mark()/ERR_pop_to_mark():
 *   the error queue is per thread, and stale entries left there would confuse a later
 *   SSL_get_error() in the same thread (hdxd's event loop). */
#include "pki/pki.h"

#include "core/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_CERT "ca.pem"
#define CA_KEY "ca.key"
#define CA_CRL "ca.crl.pem"
#define CA_CRL_TMP "ca.crl.pem.tmp"
#define DEVICES "devices"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum {
    CA_DAYS = 3650,
    SERVER_DAYS = 730,
    CRL_DAYS = 30,
    SKEW_SECS = 300,  /* notBefore back-dating: peers' clocks may run a little behind ours */
    MAX_DAYS = 36500, /* bounds |days| so 2*days below cannot overflow */
    NAME_MAX_LEN = 64,
    SERIAL_BYTES = 16,  /* 128 random bits, top bit cleared */
    SERIAL_HEX_CAP = 41 /* RFC 5280 allows up to 20 octets: 40 hex digits + NUL */
};

struct ext_spec {
    int nid;
    const char *value;
};

struct validity {
    int nb_days; /* notBefore = now + nb_days days + nb_secs seconds */
    long nb_secs;
    int na_days; /* notAfter = now + na_days days */
};

struct leaf_spec {
    const char *cn;
    const char *ou; /* NULL: no OU */
    const struct ext_spec *exts;
    size_t n_exts;
    struct validity v;
};

struct ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* A file to create: path, mode and the PEM writer for obj. */
typedef int (*pem_emit_fn)(BIO *bio, const void *obj);
struct out_file {
    char path[PATH_MAX];
    mode_t mode;
    pem_emit_fn emit;
    const void *obj;
};

static const struct ext_spec ca_exts[] = {
    {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
    {NID_key_usage, "critical,keyCertSign,cRLSign"},
    {NID_subject_key_identifier, "hash"},
};

static const struct ext_spec server_exts[] = {
    {NID_basic_constraints, "critical,CA:FALSE"},
    {NID_key_usage, "critical,digitalSignature"},
    {NID_ext_key_usage, "serverAuth"},
    {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1"},
    {NID_subject_key_identifier, "hash"},
    {NID_authority_key_identifier, "keyid:always"},
};

static const struct ext_spec client_exts[] = {
    {NID_basic_constraints, "critical,CA:FALSE"},
    {NID_key_usage, "critical,digitalSignature"},
    {NID_ext_key_usage, "clientAuth"},
    {NID_subject_key_identifier, "hash"},
    {NID_authority_key_identifier, "keyid:always"},
};

/* Writes a one-line reason and returns err. For crypto failures the OpenSSL reason string is
 * appended: it names the failing operation, never key material. */
__attribute__((format(printf, 4, 5))) static int fail(char *why, size_t cap, int err,
                                                      const char *fmt, ...)
{
    if (why == NULL || cap == 0) return err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    size_t n = strlen(why);
    if (err == HDX_E_CRYPTO && reason != NULL && n + 1 < cap)
        snprintf(why + n, cap - n, " (%s)", reason);
    return err;
}

static int errno_err(int e)
{
    if (e == EEXIST) return HDX_E_EXISTS;
    if (e == ENOENT) return HDX_E_NOTFOUND;
    return HDX_E_IO;
}

/* dir/sub+name+suffix into a PATH_MAX buffer; refuses to truncate. */
static int mkpath(char *out, const char *dir, const char *sub, const char *name, const char *suffix)
{
    int n = snprintf(out, PATH_MAX, "%s/%s%s%s", dir, sub, name, suffix);
    return n < 0 || n >= PATH_MAX ? HDX_E_TOOBIG : HDX_OK;
}

int pki_name_valid(const char *name)
{
    /* No leading '.' (hidden files, "..") or '-' (option injection in scripts); no '/'. */
    if (name == NULL || name[0] == '\0' || name[0] == '.' || name[0] == '-') return 0;
    for (size_t i = 0; name[i] != '\0'; i++) {
        unsigned char c = (unsigned char)name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || i >= NAME_MAX_LEN) return 0;
    }
    return 1;
}

/* ---- serials ---- */

static int random_serial(ASN1_INTEGER **out)
{
    unsigned char b[SERIAL_BYTES];
    BIGNUM *bn = NULL;
    *out = NULL;
    do {
        if (RAND_bytes(b, sizeof b) != 1) goto out;
        /* Top bit clear: the DER INTEGER is 16 octets and needs no 0x00 pad to stay positive
         * (RFC 5280 4.1.2.2; some verifiers mishandle padded or sign-confused serials). */
        b[0] &= 0x7f;
        BN_free(bn);
        if ((bn = BN_bin2bn(b, sizeof b, NULL)) == NULL) goto out;
    } while (BN_is_zero(bn)); /* zero is not a positive serial; 2^-127 odds */
    *out = BN_to_ASN1_INTEGER(bn, NULL);
out:
    BN_free(bn);
    return *out != NULL ? HDX_OK : HDX_E_CRYPTO;
}

/* Lower-case hex without leading zeros, the form pki.h promises. */
static int serial_to_hex(const ASN1_INTEGER *ai, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    const char *p = hex;
    int rc = HDX_E_CRYPTO;
    if (hex == NULL) goto out;
    rc = HDX_E_INVAL;
    if (p[0] == '-') /* only a foreign certificate can have one; no hex form is promised */
        goto out;
    while (p[0] == '0' && p[1] != '\0')
        p++;
    rc = HDX_E_TOOBIG;
    size_t n = strlen(p);
    if (n >= cap) goto out;
    for (size_t i = 0; i <= n; i++)
        out[i] = (p[i] >= 'A' && p[i] <= 'F') ? (char)(p[i] - 'A' + 'a') : p[i];
    rc = HDX_OK;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/* Strict parse: 1-40 hex digits, nothing else (BN_hex2bn alone would accept a '-' sign and
 * stop silently at the first non-hex byte). */
static int hex_to_serial(const char *hex, ASN1_INTEGER **out)
{
    size_t n = strnlen(hex, SERIAL_HEX_CAP);
    BIGNUM *bn = NULL;
    int rc = HDX_E_INVAL;
    *out = NULL;
    if (n == 0 || n >= SERIAL_HEX_CAP) return rc;
    for (size_t i = 0; i < n; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return rc;
    }
    if (BN_hex2bn(&bn, hex) != (int)n || BN_is_zero(bn)) goto out;
    rc = (*out = BN_to_ASN1_INTEGER(bn, NULL)) != NULL ? HDX_OK : HDX_E_CRYPTO;
out:
    BN_free(bn);
    return rc;
}

/* ---- building certificates ---- */

static EVP_PKEY *gen_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static X509_NAME *make_name(const char *cn, const char *ou)
{
    X509_NAME *n = X509_NAME_new();
    if (n == NULL) return NULL;
    if ((ou != NULL && X509_NAME_add_entry_by_NID(n, NID_organizationalUnitName, MBSTRING_UTF8,
                                                  (const unsigned char *)ou, -1, -1, 0) != 1) ||
        X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                   -1, 0) != 1) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

/* An unsigned v3 certificate with a fresh serial, names, validity and public key. */
static X509 *new_cert(EVP_PKEY *key, const X509_NAME *issuer, const X509_NAME *subject,
                      const struct validity *v)
{
    X509 *cert = X509_new();
    ASN1_INTEGER *serial = NULL;
    if (cert == NULL || random_serial(&serial) != HDX_OK ||
        X509_set_version(cert, X509_VERSION_3) != 1 || X509_set_serialNumber(cert, serial) != 1 ||
        X509_set_issuer_name(cert, issuer) != 1 || X509_set_subject_name(cert, subject) != 1 ||
        X509_time_adj_ex(X509_getm_notBefore(cert), v->nb_days, v->nb_secs, NULL) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), v->na_days, 0, NULL) == NULL ||
        X509_set_pubkey(cert, key) != 1) {
        X509_free(cert);
        cert = NULL;
    }
    ASN1_INTEGER_free(serial);
    return cert;
}

/* Extensions from their openssl.cnf spelling: the parser is OpenSSL's, not ours. issuer is
 * needed for authorityKeyIdentifier; the public key must already be set for "hash". */
static int add_exts(X509 *cert, X509 *issuer, const struct ext_spec *ext, size_t n)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, ext[i].nid, ext[i].value);
        int ok = e != NULL && X509_add_ext(cert, e, -1) == 1;
        X509_EXTENSION_free(e);
        if (!ok) return HDX_E_CRYPTO;
    }
    return HDX_OK;
}

static int make_ca(struct ca *ca, char *why, size_t cap)
{
    const struct validity v = {0, -SKEW_SECS, CA_DAYS};
    X509_NAME *name = make_name("hdx private CA", NULL);
    int rc = HDX_E_CRYPTO;
    ca->key = gen_key();
    ca->cert = NULL;
    if (name == NULL || ca->key == NULL) goto out;
    ca->cert = new_cert(ca->key, name, name, &v);
    if (ca->cert == NULL || add_exts(ca->cert, ca->cert, ca_exts, ARRAY_LEN(ca_exts)) != HDX_OK ||
        X509_sign(ca->cert, ca->key, EVP_sha256()) <= 0)
        goto out;
    rc = HDX_OK;
out:
    X509_NAME_free(name);
    return rc == HDX_OK ? rc : fail(why, cap, rc, "cannot build the CA certificate");
}

/* Key and certificate for an end entity, signed by ca. */
static int make_leaf(const struct ca *ca, const struct leaf_spec *spec, EVP_PKEY **key, X509 **cert,
                     char *why, size_t cap)
{
    X509_NAME *name = make_name(spec->cn, spec->ou);
    int rc = HDX_E_CRYPTO;
    *cert = NULL;
    *key = gen_key();
    if (name == NULL || *key == NULL) goto out;
    *cert = new_cert(*key, X509_get_subject_name(ca->cert), name, &spec->v);
    if (*cert == NULL || add_exts(*cert, ca->cert, spec->exts, spec->n_exts) != HDX_OK ||
        X509_sign(*cert, ca->key, EVP_sha256()) <= 0)
        goto out;
    rc = HDX_OK;
out:
    X509_NAME_free(name);
    if (rc != HDX_OK) {
        fail(why, cap, rc, "cannot build certificate for %s", spec->cn);
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
    return rc;
}

/* ---- CRL ---- */

/* The crlNumber after old's (RFC 5280 5.2.3: monotonically increasing); 1 for the first. */
static ASN1_INTEGER *next_crl_number(const X509_CRL *old)
{
    ASN1_INTEGER *cur = old != NULL ? X509_CRL_get_ext_d2i(old, NID_crl_number, NULL, NULL) : NULL;
    BIGNUM *bn = cur != NULL ? ASN1_INTEGER_to_BN(cur, NULL) : BN_new();
    ASN1_INTEGER *next = NULL;
    if (bn != NULL && BN_add_word(bn, 1) == 1) next = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    ASN1_INTEGER_free(cur);
    return next;
}

/* v2 CRL header: issuer, lastUpdate now, nextUpdate now+30d, crlNumber, AKI. No entries. */
static X509_CRL *new_crl(X509 *ca_cert, const X509_CRL *old, time_t now)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_adj(NULL, now, 0, 0);
    ASN1_TIME *next = ASN1_TIME_adj(NULL, now, CRL_DAYS, 0);
    ASN1_INTEGER *number = next_crl_number(old);
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    int ok = crl != NULL && last != NULL && next != NULL && number != NULL &&
             X509_CRL_set_version(crl, X509_CRL_VERSION_2) == 1 &&
             X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert)) == 1 &&
             X509_CRL_set1_lastUpdate(crl, last) == 1 && X509_CRL_set1_nextUpdate(crl, next) == 1 &&
             X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) == 1;
    if (ok) {
        X509V3_set_ctx(&ctx, ca_cert, NULL, NULL, crl, 0);
        aki = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) == 1;
    }
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(number);
    ASN1_TIME_free(next);
    ASN1_TIME_free(last);
    if (!ok) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}

/* Copies every entry of old into crl (with its original revocation date) and sets *found if
 * serial is among them. */
static int copy_revoked(X509_CRL *crl, X509_CRL *old, const ASN1_INTEGER *serial, int *found)
{
    STACK_OF(X509_REVOKED) *sk = X509_CRL_get_REVOKED(old);
    *found = 0;
    for (int i = 0; i < sk_X509_REVOKED_num(sk); i++) {
        const X509_REVOKED *r = sk_X509_REVOKED_value(sk, i);
        if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(r), serial) == 0) *found = 1;
        X509_REVOKED *copy = X509_REVOKED_dup(r);
        if (copy == NULL || X509_CRL_add0_revoked(crl, copy) != 1) {
            X509_REVOKED_free(copy);
            return HDX_E_CRYPTO;
        }
    }
    return HDX_OK;
}

/* serial is not const only because X509_REVOKED_set_serialNumber's prototype is not; it
 * copies the value. */
static int add_revoked(X509_CRL *crl, ASN1_INTEGER *serial, time_t now)
{
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_TIME *when = ASN1_TIME_adj(NULL, now, 0, 0);
    int ok = r != NULL && when != NULL && X509_REVOKED_set_serialNumber(r, serial) == 1 &&
             X509_REVOKED_set_revocationDate(r, when) == 1 && X509_CRL_add0_revoked(crl, r) == 1;
    ASN1_TIME_free(when);
    if (!ok) X509_REVOKED_free(r);
    return ok ? HDX_OK : HDX_E_CRYPTO;
}

/* A signed CRL holding old's entries plus serial (either may be NULL). */
static int build_crl(const struct ca *ca, X509_CRL *old, ASN1_INTEGER *serial, X509_CRL **out,
                     char *why, size_t cap)
{
    time_t now = time(NULL);
    X509_CRL *crl = new_crl(ca->cert, old, now);
    int found = 0;
    int rc = crl != NULL ? HDX_OK : HDX_E_CRYPTO;
    if (rc == HDX_OK && old != NULL) rc = copy_revoked(crl, old, serial, &found);
    /* Already revoked: still reissue (fresh nextUpdate, next crlNumber) but no duplicate. */
    if (rc == HDX_OK && serial != NULL && !found) rc = add_revoked(crl, serial, now);
    if (rc == HDX_OK && (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, ca->key, EVP_sha256()) <= 0))
        rc = HDX_E_CRYPTO;
    if (rc != HDX_OK) {
        X509_CRL_free(crl);
        return fail(why, cap, rc, "cannot build the CRL");
    }
    *out = crl;
    return HDX_OK;
}

/* ---- files ---- */

static int emit_key(BIO *bio, const void *obj)
{
    return PEM_write_bio_PKCS8PrivateKey(bio, obj, NULL, NULL, 0, NULL, NULL);
}

static int emit_cert(BIO *bio, const void *obj)
{
    return PEM_write_bio_X509(bio, obj);
}

static int emit_crl(BIO *bio, const void *obj)
{
    return PEM_write_bio_X509_CRL(bio, obj);
}

/* Our keys are never encrypted; without this callback OpenSSL would prompt on the terminal
 * for an encrypted one, which would hang a daemon. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int fsync_dir(const char *dir, char *why, size_t cap)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = HDX_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = fail(why, cap, HDX_E_IO, "fsync %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
}

/* Creates f->path (O_EXCL, or truncating a temp file when excl is 0), writes the PEM through
 * an fd BIO (no stdio buffer of ours ever holds key text), and fsyncs. The mode is set with
 * fchmod as well because open()'s mode is filtered by the umask. On failure the file we
 * created is removed. */
static int write_file(const struct out_file *f, int excl, char *why, size_t cap)
{
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC);
    int fd = open(f->path, flags, f->mode);
    if (fd < 0) {
        int e = errno;
        return fail(why, cap, errno_err(e), "create %s: %s", f->path, strerror(e));
    }
    BIO *bio = BIO_new_fd(fd, BIO_NOCLOSE);
    int rc = HDX_OK;
    errno = 0; /* lets a write failure tell an I/O error from an encoding one */
    if (fchmod(fd, f->mode) != 0)
        rc = fail(why, cap, HDX_E_IO, "chmod %s: %s", f->path, strerror(errno));
    else if (bio == NULL || f->emit(bio, f->obj) != 1 || BIO_flush(bio) != 1)
        rc = fail(why, cap, HDX_E_IO, "write %s: %s", f->path,
                  errno != 0 ? strerror(errno) : "encoding failed");
    else if (fsync(fd) != 0)
        rc = fail(why, cap, HDX_E_IO, "fsync %s: %s", f->path, strerror(errno));
    BIO_free(bio);
    if (close(fd) != 0 && rc == HDX_OK)
        rc = fail(why, cap, HDX_E_IO, "close %s: %s", f->path, strerror(errno));
    if (rc != HDX_OK) unlink(f->path);
    return rc;
}

/* Creates all n files or none of them (a partial set is unlinked), then fsyncs dir so the
 * new names are durable. */
static int write_set(const struct out_file *f, size_t n, const char *dir, char *why, size_t cap)
{
    size_t done = 0;
    int rc = HDX_OK;
    while (done < n && (rc = write_file(&f[done], 1, why, cap)) == HDX_OK)
        done++;
    if (rc == HDX_OK) rc = fsync_dir(dir, why, cap);
    if (rc != HDX_OK) {
        while (done > 0)
            unlink(f[--done].path);
    }
    return rc;
}

static FILE *open_pem(const char *path, int *rc, char *why, size_t cap)
{
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        int e = errno;
        *rc = fail(why, cap, errno_err(e), "open %s: %s", path, strerror(e));
    }
    return fp;
}

static int read_cert(const char *path, X509 **out, char *why, size_t cap)
{
    int rc = HDX_OK;
    FILE *fp = open_pem(path, &rc, why, cap);
    if (fp == NULL) return rc;
    *out = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return *out != NULL ? HDX_OK : fail(why, cap, HDX_E_CRYPTO, "%s: no certificate", path);
}

static int read_crl(const char *path, X509_CRL **out, char *why, size_t cap)
{
    int rc = HDX_OK;
    FILE *fp = open_pem(path, &rc, why, cap);
    if (fp == NULL) return rc;
    *out = PEM_read_X509_CRL(fp, NULL, NULL, NULL);
    fclose(fp);
    return *out != NULL ? HDX_OK : fail(why, cap, HDX_E_CRYPTO, "%s: no CRL", path);
}

static int read_key(const char *path, EVP_PKEY **out, char *why, size_t cap)
{
    int rc = HDX_OK;
    FILE *fp = open_pem(path, &rc, why, cap);
    if (fp == NULL) return rc;
    *out = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    return *out != NULL ? HDX_OK : fail(why, cap, HDX_E_CRYPTO, "%s: no private key", path);
}

static void ca_free(struct ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ca->cert = NULL;
    ca->key = NULL;
}

static int load_ca(const char *dir, struct ca *ca, char *why, size_t cap)
{
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    int rc = HDX_E_TOOBIG;
    ca->cert = NULL;
    ca->key = NULL;
    if (mkpath(cert_path, dir, "", CA_CERT, "") != HDX_OK ||
        mkpath(key_path, dir, "", CA_KEY, "") != HDX_OK) {
        fail(why, cap, rc, "data directory path too long");
        goto out;
    }
    if ((rc = read_cert(cert_path, &ca->cert, why, cap)) != HDX_OK ||
        (rc = read_key(key_path, &ca->key, why, cap)) != HDX_OK)
        goto out;
    /* A mismatched pair would sign certificates that never verify. */
    if (X509_check_private_key(ca->cert, ca->key) != 1)
        rc = fail(why, cap, HDX_E_INTEGRITY, "%s does not match %s", CA_KEY, CA_CERT);
out:
    if (rc != HDX_OK) ca_free(ca);
    return rc;
}

/* Serializes CRL read-modify-write cycles (two concurrent revocations must not lose one) with
 * an advisory lock on ca.key, which every writer must open anyway. */
static int lock_ca(const char *dir, int *fd, char *why, size_t cap)
{
    char path[PATH_MAX];
    if (mkpath(path, dir, "", CA_KEY, "") != HDX_OK)
        return fail(why, cap, HDX_E_TOOBIG, "data directory path too long");
    if ((*fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        int e = errno;
        return fail(why, cap, errno_err(e), "open %s: %s", path, strerror(e));
    }
    if (flock(*fd, LOCK_EX) != 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        return fail(why, cap, HDX_E_IO, "lock %s: %s", path, strerror(e));
    }
    return HDX_OK;
}

/* Write temp, fsync, rename over ca.crl.pem, fsync the directory: readers (hdxd's reload)
 * see either the old or the new CRL, never a partial one, and a crash cannot lose the
 * rename. */
static int replace_crl(const char *dir, X509_CRL *crl, char *why, size_t cap)
{
    struct out_file tmp = {.mode = 0644, .emit = emit_crl, .obj = crl};
    char final[PATH_MAX];
    int rc;
    if (mkpath(tmp.path, dir, "", CA_CRL_TMP, "") != HDX_OK ||
        mkpath(final, dir, "", CA_CRL, "") != HDX_OK)
        return fail(why, cap, HDX_E_TOOBIG, "data directory path too long");
    if ((rc = write_file(&tmp, 0, why, cap)) != HDX_OK) return rc;
    if (rename(tmp.path, final) != 0) {
        rc = fail(why, cap, HDX_E_IO, "rename %s: %s", tmp.path, strerror(errno));
        unlink(tmp.path);
        return rc;
    }
    return fsync_dir(dir, why, cap);
}

/* The current CRL, checked against the CA before we trust its entry list: re-signing a
 * substituted CRL would silently un-revoke certificates. A missing CRL is an error for the
 * same reason; we never start over with an empty one. */
static int load_crl(const char *dir, const struct ca *ca, X509_CRL **out, char *why, size_t cap)
{
    char path[PATH_MAX];
    int rc;
    if (mkpath(path, dir, "", CA_CRL, "") != HDX_OK)
        return fail(why, cap, HDX_E_TOOBIG, "data directory path too long");
    if ((rc = read_crl(path, out, why, cap)) != HDX_OK) return rc;
    EVP_PKEY *pub = X509_get0_pubkey(ca->cert);
    if (X509_NAME_cmp(X509_CRL_get_issuer(*out), X509_get_subject_name(ca->cert)) != 0 ||
        pub == NULL || X509_CRL_verify(*out, pub) != 1) {
        X509_CRL_free(*out);
        *out = NULL;
        return fail(why, cap, HDX_E_INTEGRITY, "%s is not signed by this CA", CA_CRL);
    }
    return HDX_OK;
}

/* ---- public functions ---- */

int pki_create_ca(const char *dir, char *why, size_t why_cap)
{
    struct ca ca = {NULL, NULL};
    X509_CRL *crl = NULL;
    struct out_file f[3] = {
        {.mode = 0600, .emit = emit_key},
        {.mode = 0644, .emit = emit_cert},
        {.mode = 0644, .emit = emit_crl},
    };
    int rc = HDX_E_INVAL;
    ERR_set_mark();
    if (dir == NULL) {
        fail(why, why_cap, rc, "no data directory");
        goto out;
    }
    if (mkpath(f[0].path, dir, "", CA_KEY, "") != HDX_OK ||
        mkpath(f[1].path, dir, "", CA_CERT, "") != HDX_OK ||
        mkpath(f[2].path, dir, "", CA_CRL, "") != HDX_OK) {
        rc = fail(why, why_cap, HDX_E_TOOBIG, "data directory path too long");
        goto out;
    }
    if ((rc = make_ca(&ca, why, why_cap)) != HDX_OK ||
        (rc = build_crl(&ca, NULL, NULL, &crl, why, why_cap)) != HDX_OK)
        goto out;
    f[0].obj = ca.key;
    f[1].obj = ca.cert;
    f[2].obj = crl;
    /* Key first: if it already exists we stop before touching anything else. */
    rc = write_set(f, ARRAY_LEN(f), dir, why, why_cap);
out:
    X509_CRL_free(crl);
    ca_free(&ca);
    ERR_pop_to_mark();
    return rc;
}

/* Signs a leaf and writes dir/sub+name .key (0600) and .pem (0644); optionally reports the
 * serial. */
static int issue_leaf(const char *dir, const char *sub, const char *name,
                      const struct leaf_spec *spec, char *serial_hex, size_t serial_cap, char *why,
                      size_t cap)
{
    struct ca ca = {NULL, NULL};
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    struct out_file f[2] = {{.mode = 0600, .emit = emit_key}, {.mode = 0644, .emit = emit_cert}};
    char fdir[PATH_MAX];
    int rc;
    if (mkpath(f[0].path, dir, sub, name, ".key") != HDX_OK ||
        mkpath(f[1].path, dir, sub, name, ".pem") != HDX_OK ||
        mkpath(fdir, dir, sub, "", "") != HDX_OK) {
        rc = fail(why, cap, HDX_E_TOOBIG, "path too long");
        goto out;
    }
    if ((rc = load_ca(dir, &ca, why, cap)) != HDX_OK ||
        (rc = make_leaf(&ca, spec, &key, &cert, why, cap)) != HDX_OK)
        goto out;
    if (serial_hex != NULL &&
        (rc = serial_to_hex(X509_get0_serialNumber(cert), serial_hex, serial_cap)) != HDX_OK) {
        fail(why, cap, rc, "cannot format the serial");
        goto out;
    }
    f[0].obj = key;
    f[1].obj = cert;
    rc = write_set(f, ARRAY_LEN(f), fdir, why, cap);
out:
    if (rc != HDX_OK && serial_hex != NULL)
        serial_hex[0] = '\0'; /* no serial for a certificate that was not stored */
    X509_free(cert);
    EVP_PKEY_free(key);
    ca_free(&ca);
    return rc;
}

int pki_create_server(const char *dir, char *why, size_t why_cap)
{
    const struct leaf_spec spec = {
        "localhost", NULL, server_exts, ARRAY_LEN(server_exts), {0, -SKEW_SECS, SERVER_DAYS}};
    int rc;
    ERR_set_mark();
    if (dir == NULL)
        rc = fail(why, why_cap, HDX_E_INVAL, "no data directory");
    else
        rc = issue_leaf(dir, "", "server", &spec, NULL, 0, why, why_cap);
    ERR_pop_to_mark();
    return rc;
}

/* devices/ is 0700: it holds private keys. An existing non-directory (or a symlink, which
 * could point keys elsewhere) is refused. */
static int ensure_devices_dir(const char *dir, char *why, size_t cap)
{
    char path[PATH_MAX];
    struct stat st;
    if (mkpath(path, dir, "", DEVICES, "") != HDX_OK)
        return fail(why, cap, HDX_E_TOOBIG, "data directory path too long");
    if (mkdir(path, 0700) == 0)
        return fsync_dir(dir, why, cap); /* make the new directory's name durable */
    if (errno != EEXIST) {
        int e = errno;
        return fail(why, cap, errno_err(e), "mkdir %s: %s", path, strerror(e));
    }
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(why, cap, HDX_E_IO, "%s is not a directory", path);
    return HDX_OK;
}

static int check_issue_args(const char *dir, const char *name, const char *role, int days,
                            const char *serial_hex, size_t serial_cap, char *why, size_t cap)
{
    if (dir == NULL) return fail(why, cap, HDX_E_INVAL, "no data directory");
    if (!pki_name_valid(name)) return fail(why, cap, HDX_E_INVAL, "invalid device name");
    /* The role goes into the subject DN and into policy; hold it to the same alphabet. */
    if (!pki_name_valid(role)) return fail(why, cap, HDX_E_INVAL, "invalid role");
    if (days == 0 || days > MAX_DAYS || days < -MAX_DAYS)
        return fail(why, cap, HDX_E_INVAL, "validity must be 1..%d days", MAX_DAYS);
    if (serial_hex == NULL || serial_cap < SERIAL_HEX_CAP)
        return fail(why, cap, HDX_E_INVAL, "serial buffer under %d bytes", SERIAL_HEX_CAP);
    return HDX_OK;
}

int pki_issue_client(const char *dir, const char *name, const char *role, int days,
                     char *serial_hex, size_t serial_cap, char *why, size_t why_cap)
{
    struct leaf_spec spec = {
        name, role, client_exts, ARRAY_LEN(client_exts), {0, -SKEW_SECS, days}};
    int rc;
    ERR_set_mark();
    if (serial_hex != NULL && serial_cap > 0) serial_hex[0] = '\0';
    rc = check_issue_args(dir, name, role, days, serial_hex, serial_cap, why, why_cap);
    if (rc != HDX_OK) goto out;
    if (days < 0) {
        /* Test-only shape: valid from now-2|days| to now-|days|, i.e. already expired. */
        spec.v.nb_days = 2 * days;
        spec.v.nb_secs = 0;
    }
    if ((rc = ensure_devices_dir(dir, why, why_cap)) == HDX_OK)
        rc = issue_leaf(dir, DEVICES "/", name, &spec, serial_hex, serial_cap, why, why_cap);
out:
    ERR_pop_to_mark();
    return rc;
}

int pki_revoke(const char *dir, const char *serial_hex, char *why, size_t why_cap)
{
    struct ca ca = {NULL, NULL};
    ASN1_INTEGER *serial = NULL;
    X509_CRL *old = NULL, *crl = NULL;
    int lock_fd = -1;
    int rc = HDX_E_INVAL;
    ERR_set_mark();
    if (dir == NULL || serial_hex == NULL || (rc = hex_to_serial(serial_hex, &serial)) != HDX_OK) {
        rc = fail(why, why_cap, rc == HDX_E_CRYPTO ? rc : HDX_E_INVAL,
                  "serial must be 1-40 hex digits, not zero");
        goto out;
    }
    if ((rc = lock_ca(dir, &lock_fd, why, why_cap)) != HDX_OK ||
        (rc = load_ca(dir, &ca, why, why_cap)) != HDX_OK ||
        (rc = load_crl(dir, &ca, &old, why, why_cap)) != HDX_OK ||
        (rc = build_crl(&ca, old, serial, &crl, why, why_cap)) != HDX_OK)
        goto out;
    rc = replace_crl(dir, crl, why, why_cap);
out:
    if (lock_fd >= 0) close(lock_fd); /* releases the flock */
    X509_CRL_free(crl);
    X509_CRL_free(old);
    ca_free(&ca);
    ASN1_INTEGER_free(serial);
    ERR_pop_to_mark();
    return rc;
}

/* The single value of nid in name as UTF-8; "" if absent. Two values are refused rather than
 * picking one: CN and OU are identities that policy decisions rest on. */
static int name_field(const X509_NAME *name, int nid, char *out, size_t cap)
{
    unsigned char *utf8 = NULL;
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    int rc = HDX_OK;
    if (out == NULL || i < 0) return HDX_OK;
    if (X509_NAME_get_index_by_NID(name, nid, i) >= 0) return HDX_E_INVAL;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0)
        rc = HDX_E_CRYPTO;
    else if (memchr(utf8, 0, (size_t)n) != NULL) /* an embedded NUL would truncate the name */
        rc = HDX_E_INVAL;
    else if ((size_t)n >= cap)
        rc = HDX_E_TOOBIG;
    else {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return rc;
}

static void clear_info(char *serial_hex, char *cn, char *ou)
{
    if (serial_hex != NULL) serial_hex[0] = '\0';
    if (cn != NULL) cn[0] = '\0';
    if (ou != NULL) ou[0] = '\0';
}

int pki_cert_info(const char *path, char *serial_hex, size_t serial_cap, char *cn, size_t cn_cap,
                  char *ou, size_t ou_cap)
{
    X509 *cert = NULL;
    int rc = HDX_E_INVAL;
    ERR_set_mark();
    /* A NULL output is skipped; outputs stay "" unless the whole call succeeds. */
    if (path == NULL || (serial_hex != NULL && serial_cap == 0) || (cn != NULL && cn_cap == 0) ||
        (ou != NULL && ou_cap == 0))
        goto out;
    clear_info(serial_hex, cn, ou);
    if ((rc = read_cert(path, &cert, NULL, 0)) != HDX_OK) goto out;
    if (serial_hex != NULL)
        rc = serial_to_hex(X509_get0_serialNumber(cert), serial_hex, serial_cap);
    if (rc == HDX_OK) rc = name_field(X509_get_subject_name(cert), NID_commonName, cn, cn_cap);
    if (rc == HDX_OK)
        rc = name_field(X509_get_subject_name(cert), NID_organizationalUnitName, ou, ou_cap);
    if (rc != HDX_OK) clear_info(serial_hex, cn, ou);
out:
    X509_free(cert);
    ERR_pop_to_mark();
    return rc;
}
