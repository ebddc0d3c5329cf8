/* test_pki: the private CA (src/pki). Every test gets a fresh mkdtemp data directory with a
 * CA and a server certificate; verification is done by OpenSSL's own X509_verify_cert with
 * CRL checking, the same path hdxd's TLS handshake takes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/err.h"
#include "pki/pki.h"
#include "core/util.h"

struct fixture {
    char dir[256];
};

static void path_in(char *out, const struct fixture *fx, const char *rel)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", fx->dir, rel);
    assert_true(n > 0 && n < PATH_MAX);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_dir(struct fixture *fx)
{
    assert_int_equal(hdx_mkdtemp("hdx_test_pki_", fx->dir, sizeof(fx->dir)), 0);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char why[256];
    assert_non_null(fx);
    make_dir(fx);
    assert_int_equal(pki_create_ca(fx->dir, why, sizeof why), HDX_OK);
    assert_int_equal(pki_create_server(fx->dir, why, sizeof why), HDX_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static X509 *load_cert(const struct fixture *fx, const char *rel)
{
    char p[PATH_MAX];
    path_in(p, fx, rel);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(c);
    return c;
}

static X509_CRL *load_crl(const struct fixture *fx)
{
    char p[PATH_MAX];
    path_in(p, fx, "ca.crl.pem");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    X509_CRL *c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(c);
    return c;
}

/* Returns X509_V_OK or the verification error for rel under purpose, with CRL checking. */
static int verify(const struct fixture *fx, const char *rel, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509 *ca = load_cert(fx, "ca.pem");
    X509 *leaf = load_cert(fx, rel);
    X509_CRL *crl = load_crl(fx);
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_add_crl(store, crl), 1);
    assert_int_equal(X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK), 1);
    assert_int_equal(X509_STORE_set_purpose(store, purpose), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    int err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_CRL_free(crl);
    X509_free(leaf);
    X509_free(ca);
    return err;
}

static void do_issue(const struct fixture *fx, const char *name, int days, char *serial)
{
    char why[256];
    int rc = pki_issue_client(fx->dir, name, "monitor", days, serial, 41, why, sizeof why);
    if (rc != HDX_OK) fail_msg("issue %s: %s", name, why);
}

static void do_revoke(const struct fixture *fx, const char *serial)
{
    char why[256];
    int rc = pki_revoke(fx->dir, serial, why, sizeof why);
    if (rc != HDX_OK) fail_msg("revoke %s: %s", serial, why);
}

static void assert_mode(const struct fixture *fx, const char *rel, mode_t mode)
{
    char p[PATH_MAX];
    struct stat st;
    path_in(p, fx, rel);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, mode);
}

static int exists(const struct fixture *fx, const char *rel)
{
    char p[PATH_MAX];
    path_in(p, fx, rel);
    return access(p, F_OK) == 0;
}

static long slurp(const struct fixture *fx, const char *rel, char *buf, size_t cap)
{
    char p[PATH_MAX];
    path_in(p, fx, rel);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    assert_true(n < cap);
    return (long)n;
}

static void test_files_and_modes(void **state)
{
    struct fixture *fx = *state;
    char serial[41];
    char pem[8192];
    assert_mode(fx, "ca.key", 0600);
    assert_mode(fx, "ca.pem", 0644);
    assert_mode(fx, "ca.crl.pem", 0644);
    assert_mode(fx, "server.key", 0600);
    assert_mode(fx, "server.pem", 0644);
    do_issue(fx, "pump-7", 30, serial);
    assert_mode(fx, "devices", 0700);
    assert_mode(fx, "devices/pump-7.key", 0600);
    assert_mode(fx, "devices/pump-7.pem", 0644);
    /* Keys are unencrypted PKCS#8. */
    long n = slurp(fx, "devices/pump-7.key", pem, sizeof pem);
    pem[n] = '\0';
    assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
}

static void test_ca_refuses_overwrite(void **state)
{
    struct fixture *fx = *state;
    char before[8192], after[8192], why[256];
    long n1 = slurp(fx, "ca.pem", before, sizeof before);
    assert_int_equal(pki_create_ca(fx->dir, why, sizeof why), HDX_E_EXISTS);
    long n2 = slurp(fx, "ca.pem", after, sizeof after);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, (size_t)n1);
    assert_true(exists(fx, "ca.key"));
    assert_true(exists(fx, "ca.crl.pem"));
}

/* Only ca.crl.pem is present: the call fails and leaves no ca.key/ca.pem behind. */
static void test_ca_partial_rolls_back(void **state)
{
    (void)state;
    struct fixture fx;
    char p[PATH_MAX], why[256];
    make_dir(&fx);
    path_in(p, &fx, "ca.crl.pem");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pki_create_ca(fx.dir, why, sizeof why), HDX_E_EXISTS);
    assert_false(exists(&fx, "ca.key"));
    assert_false(exists(&fx, "ca.pem"));
    assert_true(exists(&fx, "ca.crl.pem"));
    nftw(fx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_ca_fields(void **state)
{
    struct fixture *fx = *state;
    X509 *ca = load_cert(fx, "ca.pem");
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    assert_int_equal(X509_get_pathlen(ca), 0);
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(ca, NID_key_usage, &crit, NULL);
    assert_non_null(ku);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(ku);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);
    /* notBefore back-dated by ~5 minutes; notAfter ~10 years out. */
    time_t lo = time(NULL) - 290;
    assert_true(X509_cmp_time(X509_get0_notBefore(ca), &lo) < 0);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca)), 1);
    assert_in_range(days, 3649, 3650);
    X509_free(ca);
}

static void test_client_verifies_then_revoked(void **state)
{
    struct fixture *fx = *state;
    char serial[41];
    do_issue(fx, "monitor-1", 365, serial);
    assert_int_equal(verify(fx, "devices/monitor-1.pem", X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    /* clientAuth only: the device certificate cannot serve TLS. */
    assert_int_equal(verify(fx, "devices/monitor-1.pem", X509_PURPOSE_SSL_SERVER),
                     X509_V_ERR_INVALID_PURPOSE);
    do_revoke(fx, serial);
    assert_int_equal(verify(fx, "devices/monitor-1.pem", X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_REVOKED);
    /* The server certificate is unaffected. */
    assert_int_equal(verify(fx, "server.pem", X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(verify(fx, "server.pem", X509_PURPOSE_SSL_CLIENT), X509_V_ERR_INVALID_PURPOSE);
}

static int crl_has(X509_CRL *crl, const char *hex)
{
    BIGNUM *bn = NULL;
    X509_REVOKED *r = NULL;
    assert_true(BN_hex2bn(&bn, hex) > 0);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    int found = X509_CRL_get0_by_serial(crl, &r, ai) == 1;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return found;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(n);
    long v = ASN1_INTEGER_get(n);
    ASN1_INTEGER_free(n);
    return v;
}

static void test_revoke_two_keeps_both(void **state)
{
    struct fixture *fx = *state;
    char s1[41], s2[41];
    do_issue(fx, "a", 30, s1);
    do_issue(fx, "b", 30, s2);
    X509_CRL *crl = load_crl(fx);
    assert_int_equal(crl_number(crl), 1);
    X509_CRL_free(crl);
    do_revoke(fx, s1);
    do_revoke(fx, s2);
    do_revoke(fx, s1); /* again: HDX_OK, no duplicate entry */
    /* The same serial as `openssl x509 -serial` prints it (upper case, zero-padded). */
    char padded[43] = "00";
    for (size_t i = 0; s2[i] != '\0'; i++)
        padded[i + 2] = (char)(s2[i] >= 'a' ? s2[i] - 'a' + 'A' : s2[i]);
    do_revoke(fx, padded);
    crl = load_crl(fx);
    assert_int_equal(crl_number(crl), 5);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
    assert_true(crl_has(crl, s1));
    assert_true(crl_has(crl, s2));
    X509_CRL_free(crl);
    assert_int_equal(verify(fx, "devices/a.pem", X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify(fx, "devices/b.pem", X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_REVOKED);
    assert_false(exists(fx, "ca.crl.pem.tmp"));
    assert_mode(fx, "ca.crl.pem", 0644);
}

static void test_crl_fields(void **state)
{
    struct fixture *fx = *state;
    X509 *ca = load_cert(fx, "ca.pem");
    X509_CRL *crl = load_crl(fx);
    int days = 0, secs = 0;
    assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_CRL_get_signature_nid(crl), NID_ecdsa_with_SHA256);
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_CRL_get0_nextUpdate(crl)), 1);
    assert_in_range(days, 29, 30);
    assert_true(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) >= 0);
    X509_CRL_free(crl);
    X509_free(ca);
}

static void test_expired(void **state)
{
    struct fixture *fx = *state;
    char serial[41];
    do_issue(fx, "old", -1, serial);
    assert_int_equal(verify(fx, "devices/old.pem", X509_PURPOSE_SSL_CLIENT),
                     X509_V_ERR_CERT_HAS_EXPIRED);
}

static void test_server_sans(void **state)
{
    struct fixture *fx = *state;
    X509 *cert = load_cert(fx, "server.pem");
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_non_null(sans);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 3);
    GENERAL_NAMES_free(sans);
    assert_int_equal(X509_check_host(cert, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert, "::1", 0), 1);
    assert_int_equal(X509_check_host(cert, "example.org", 0, 0, NULL), 0);
    assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(cert), 0);
    X509_free(cert);
}

static void test_cert_info(void **state)
{
    struct fixture *fx = *state;
    char serial[41], got[41], cn[65], ou[65], p[PATH_MAX];
    do_issue(fx, "icu-bed_3.vent", 30, serial);
    path_in(p, fx, "devices/icu-bed_3.vent.pem");
    assert_int_equal(pki_cert_info(p, got, sizeof got, cn, sizeof cn, ou, sizeof ou), HDX_OK);
    assert_string_equal(got, serial);
    assert_string_equal(cn, "icu-bed_3.vent");
    assert_string_equal(ou, "monitor");
    /* Lower-case hex, no leading zero, at most 128 bits. */
    assert_true(strlen(serial) >= 1 && strlen(serial) <= 32);
    assert_true(serial[0] != '0');
    assert_int_equal(strspn(serial, "0123456789abcdef"), strlen(serial));
    /* Same value as OpenSSL's own reading of the certificate. */
    X509 *cert = load_cert(fx, "devices/icu-bed_3.vent.pem");
    BIGNUM *a = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL), *b = NULL;
    assert_true(BN_hex2bn(&b, serial) > 0);
    assert_int_equal(BN_cmp(a, b), 0);
    assert_false(BN_is_negative(a));
    assert_true(BN_num_bits(a) <= 127); /* top bit cleared: 16 DER octets, no pad */
    BN_free(a);
    BN_free(b);
    X509_free(cert);
    path_in(p, fx, "server.pem");
    assert_int_equal(pki_cert_info(p, got, sizeof got, cn, sizeof cn, ou, sizeof ou), HDX_OK);
    assert_string_equal(cn, "localhost");
    assert_string_equal(ou, "");
    path_in(p, fx, "devices/none.pem");
    assert_int_equal(pki_cert_info(p, got, sizeof got, cn, sizeof cn, ou, sizeof ou),
                     HDX_E_NOTFOUND);
    assert_int_equal(pki_cert_info(p, got, sizeof got, cn, 3, ou, sizeof ou), HDX_E_NOTFOUND);
    path_in(p, fx, "devices/icu-bed_3.vent.pem");
    assert_int_equal(pki_cert_info(p, got, sizeof got, cn, 3, ou, sizeof ou), HDX_E_TOOBIG);
    assert_string_equal(got, "");
}

/* Writes a self-signed certificate with a chosen serial and subject entries to rel: lets
 * pki_cert_info be tested on inputs pki never produces itself. */
static void write_foreign(const struct fixture *fx, const char *rel, const char *serial_hex,
                          const char *const *cns, size_t n_cns)
{
    char p[PATH_MAX];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = X509_new();
    BIGNUM *bn = NULL;
    assert_non_null(key);
    assert_non_null(cert);
    assert_true(BN_hex2bn(&bn, serial_hex) > 0);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)));
    X509_NAME *name = X509_get_subject_name(cert);
    for (size_t i = 0; i < n_cns; i++)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                                    (const unsigned char *)cns[i], -1, -1, 0),
                         1);
    assert_int_equal(X509_set_issuer_name(cert, name), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    path_in(p, fx, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
    BN_free(bn);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* Leading zero nibbles/bytes are stripped and hex is lower-cased (deterministically, unlike
 * the random serials above); a repeated CN is refused rather than one being picked. */
static void test_cert_info_foreign(void **state)
{
    struct fixture *fx = *state;
    static const char *const one[] = {"Dev"};
    static const char *const two[] = {"a", "b"};
    char serial[41], cn[65], ou[65], p[PATH_MAX];
    write_foreign(fx, "f1.pem", "000A0BFF", one, 1);
    path_in(p, fx, "f1.pem");
    assert_int_equal(pki_cert_info(p, serial, sizeof serial, cn, sizeof cn, ou, sizeof ou), HDX_OK);
    assert_string_equal(serial, "a0bff");
    assert_string_equal(cn, "Dev");
    assert_string_equal(ou, "");
    assert_int_equal(pki_cert_info(p, serial, 5, cn, sizeof cn, ou, sizeof ou), HDX_E_TOOBIG);
    write_foreign(fx, "f2.pem", "01", two, 2);
    path_in(p, fx, "f2.pem");
    assert_int_equal(pki_cert_info(p, serial, sizeof serial, cn, sizeof cn, ou, sizeof ou),
                     HDX_E_INVAL);
    assert_string_equal(serial, "");
    assert_string_equal(cn, "");
}

static void test_names(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {"", "../x", ".a", "-a", "a b", "a/b", "a\n", "caf\xc3\xa9"};
    char long_name[66], serial[41], why[256];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(pki_name_valid(bad[i]));
        assert_int_equal(pki_issue_client(fx->dir, bad[i], "monitor", 30, serial, sizeof serial,
                                          why, sizeof why),
                         HDX_E_INVAL);
    }
    assert_false(pki_name_valid(NULL));
    assert_false(pki_name_valid(long_name));
    long_name[64] = '\0';
    assert_true(pki_name_valid(long_name));
    assert_true(pki_name_valid("a"));
    assert_true(pki_name_valid("Dev_01.icu-b"));
    assert_int_equal(
        pki_issue_client(fx->dir, "ok", "../r", 30, serial, sizeof serial, why, sizeof why),
        HDX_E_INVAL);
    assert_int_equal(
        pki_issue_client(fx->dir, "ok", "monitor", 0, serial, sizeof serial, why, sizeof why),
        HDX_E_INVAL);
    assert_int_equal(pki_issue_client(fx->dir, "ok", "monitor", 30, serial, 40, why, sizeof why),
                     HDX_E_INVAL);
    assert_false(exists(fx, "devices"));
}

static void test_issue_twice(void **state)
{
    struct fixture *fx = *state;
    char s1[41], s2[41], why[256], got[41], p[PATH_MAX];
    do_issue(fx, "twice", 30, s1);
    assert_int_equal(
        pki_issue_client(fx->dir, "twice", "monitor", 30, s2, sizeof s2, why, sizeof why),
        HDX_E_EXISTS);
    assert_string_equal(s2, "");
    path_in(p, fx, "devices/twice.pem");
    assert_int_equal(pki_cert_info(p, got, sizeof got, NULL, 0, NULL, 0), HDX_OK);
    assert_string_equal(got, s1);
    assert_int_equal(pki_create_server(fx->dir, why, sizeof why), HDX_E_EXISTS);
}

static void test_revoke_bad_serial(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {"",     "xyz", "-1",
                                      "0",    "00",  "12 34",
                                      "0x12", "1g",  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    char why[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pki_revoke(fx->dir, bad[i], why, sizeof why), HDX_E_INVAL);
    X509_CRL *crl = load_crl(fx);
    assert_int_equal(crl_number(crl), 1);
    X509_CRL_free(crl);
}

/* A CRL signed by another CA is not re-signed (that would launder a forged entry list). */
static void test_revoke_refuses_foreign_crl(void **state)
{
    struct fixture *fx = *state;
    struct fixture other;
    char why[256], from[PATH_MAX], to[PATH_MAX];
    make_dir(&other);
    assert_int_equal(pki_create_ca(other.dir, why, sizeof why), HDX_OK);
    path_in(from, &other, "ca.crl.pem");
    path_in(to, fx, "ca.crl.pem");
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(pki_revoke(fx->dir, "1234", why, sizeof why), HDX_E_INTEGRITY);
    assert_non_null(strstr(why, "ca.crl.pem"));
    nftw(other.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_no_ca(void **state)
{
    (void)state;
    struct fixture fx;
    char serial[41], why[256];
    make_dir(&fx);
    assert_int_equal(pki_revoke(fx.dir, "1234", why, sizeof why), HDX_E_NOTFOUND);
    assert_int_equal(pki_create_server(fx.dir, why, sizeof why), HDX_E_NOTFOUND);
    assert_int_equal(
        pki_issue_client(fx.dir, "x", "monitor", 30, serial, sizeof serial, why, sizeof why),
        HDX_E_NOTFOUND);
    assert_false(exists(&fx, "server.key"));
    nftw(fx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_refuses_overwrite, setup, teardown),
        cmocka_unit_test(test_ca_partial_rolls_back),
        cmocka_unit_test_setup_teardown(test_ca_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_verifies_then_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_two_keeps_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_sans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_info_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_bad_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_refuses_foreign_crl, setup, teardown),
        cmocka_unit_test(test_no_ca),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
