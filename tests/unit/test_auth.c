/* auth: Argon2id hashing and verification, the password policy (NIST SP 800-63B), TOTP
 * against the RFC 6238 Appendix B SHA-1 vectors (8 digits, as published) and at 6 digits as
 * used, the ±1 step window and replay refusal, the sealed secret, recovery codes used once, and
 * hdx_user_authenticate over a store with the statements it asks the caller to commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "auth/totp.h"
#include "auth/user.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "store/store.h"

/* Cheap cost for tests: libsodium's interactive minimum would be 64 MiB. */
static const struct hdx_pw_cost cheap = {1, 8u << 20};
static char tmpdir[256];
static struct hdx_keyring *kr;

static int setup(void **state)
{
    char path[400];
    uint8_t w[HDX_WRAPPED_LEN];
    if (hdx_mkdtemp("hdx-auth-", tmpdir, sizeof(tmpdir)) != 0) return -1;
    snprintf(path, sizeof(path), "%s/kek.key", tmpdir);
    if (hdx_kek_create(path) != HDX_OK || hdx_keyring_open(path, &kr, NULL, 0) != HDX_OK ||
        hdx_keyring_new_key(kr, HDX_KEY_DATA, 1, w) != HDX_OK ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, w) != HDX_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    hdx_keyring_free(kr);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_hash_verify(void **state)
{
    char h[HDX_PW_HASH_MAX], h2[HDX_PW_HASH_MAX];
    int rehash = 9;
    const char *pw = "correct horse battery staple";
    assert_int_equal(hdx_password_hash(&cheap, pw, strlen(pw), h), HDX_OK);
    assert_true(hdx_password_hash_valid(h));
    assert_non_null(strstr(h, "$argon2id$v=19$m=8192,t=1,p=1$"));
    assert_int_equal(hdx_password_verify(&cheap, h, pw, strlen(pw), &rehash), 1);
    assert_int_equal(rehash, 0);
    assert_int_equal(hdx_password_verify(&cheap, h, pw, strlen(pw) - 1, NULL), 0);
    assert_int_equal(hdx_password_verify(&cheap, h, "Correct horse battery staple", 28, NULL), 0);
    /* salted: the same password hashes differently */
    assert_int_equal(hdx_password_hash(&cheap, pw, strlen(pw), h2), HDX_OK);
    assert_string_not_equal(h, h2);
    /* a hash made under another cost still verifies, and asks to be rehashed */
    struct hdx_pw_cost more = {2, 8u << 20};
    assert_int_equal(hdx_password_verify(&more, h, pw, strlen(pw), &rehash), 1);
    assert_int_equal(rehash, 1);
    /* a missing user (NULL) or a malformed hash never verifies */
    assert_int_equal(hdx_password_verify(&cheap, NULL, pw, strlen(pw), &rehash), 0);
    assert_int_equal(hdx_password_verify(&cheap, "$argon2i$v=19$m=8192,t=1,p=1$x$y", pw, 1, NULL),
                     0);
    assert_int_equal(hdx_password_dummy_init(&cheap), HDX_OK);
    /* a cost libsodium refuses */
    struct hdx_pw_cost bad = {0, 8u << 20};
    assert_int_equal(hdx_password_hash(&bad, pw, strlen(pw), h2), HDX_E_INVAL);
}

static void test_hash_shape(void **state)
{
    const char *good = "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$"
                       "TjQSOcD9Pxbt1ZLTflJAfYpbHrACQhzcM0ZcvwKIDpc";
    assert_true(hdx_password_hash_valid(good));
    const char *bad[] = {
        "",
        "$argon2i$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA",
        "$argon2id$v=19$m=065536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA",
        "$argon2id$v=19$m=65536,t=3$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA",
        "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA=",
        "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA\n",
        "$argon2id$v=19$m=65536,t=3,p=1$short$TjQSOcD9Pxbt1ZLTflJAfYpbHrA",
        "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSO$extra",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(hdx_password_hash_valid(bad[i]));
}

static int policy(const char *list, const char *name, const char *pw)
{
    char why[200];
    struct hdx_pw_policy p = {12, list};
    return hdx_password_policy(&p, name, pw, strlen(pw), why, sizeof(why));
}

static void test_policy(void **state)
{
    char list[400], big[300];
    snprintf(list, sizeof(list), "%s/blocklist.txt", tmpdir);
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    fputs("# comment line\nPassword123456\n\nqwertyuiopasdf\r\n", f);
    fputs(hdx_password_default_blocklist(), f);
    fclose(f);
    assert_int_equal(policy(list, "alice", "a fine long passphrase"), HDX_OK);
    assert_int_equal(policy(list, "alice", "twelve chars"), HDX_OK); /* exactly 12 */
    assert_int_equal(policy(list, "alice", "eleven char"), HDX_E_PERM);
    assert_int_equal(policy(list, "alice", ""), HDX_E_PERM);
    /* characters, not bytes: 12 two-byte letters pass, 11 do not */
    assert_int_equal(policy(list, "alice",
                            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"),
                     HDX_OK);
    assert_int_equal(policy(list, "alice",
                            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                            "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"),
                     HDX_E_PERM);
    /* at most 256 */
    memset(big, 'x', 256);
    big[256] = 0;
    big[0] = 'Q';
    assert_int_equal(policy(NULL, "alice", big), HDX_OK);
    big[256] = 'y';
    big[257] = 0;
    assert_int_equal(policy(NULL, "alice", big), HDX_E_PERM);
    /* no composition rules: all lower case, all digits, spaces are fine */
    assert_int_equal(policy(list, "alice", "lowercaseonlypass"), HDX_OK);
    assert_int_equal(policy(list, "alice", "839201746512"), HDX_OK);
    /* invalid UTF-8, control characters */
    assert_int_equal(policy(list, "alice", "a fine long \xff passphrase"), HDX_E_PERM);
    assert_int_equal(policy(list, "alice", "a fine long \xc0\xaf passphrase"), HDX_E_PERM);
    assert_int_equal(policy(list, "alice", "a fine long\tpassphrase"), HDX_E_PERM);
    /* the user name inside, any case */
    assert_int_equal(policy(list, "alice", "my name is ALICE ok"), HDX_E_PERM);
    assert_int_equal(policy(list, "alice", "alice2026-hospital"), HDX_E_PERM);
    /* the blocklist: whole line, case folded, CRLF and comments handled */
    assert_int_equal(policy(list, "bob", "password123456"), HDX_E_PERM);
    assert_int_equal(policy(list, "bob", "PASSWORD123456"), HDX_E_PERM);
    assert_int_equal(policy(list, "bob", "QwertyuiopAsdf"), HDX_E_PERM);
    assert_int_equal(policy(list, "bob", "qwertyuiop123"), HDX_E_PERM); /* default list */
    assert_int_equal(policy(list, "bob", "# comment line"), HDX_OK);
    assert_int_equal(policy(list, "bob", "password1234567"), HDX_OK); /* not a whole line */
    /* a list that cannot be read refuses rather than accept */
    char missing[420];
    snprintf(missing, sizeof(missing), "%s/nope.txt", tmpdir);
    assert_int_equal(policy(missing, "bob", "a fine long passphrase"), HDX_E_IO);
}

static void test_password_file(void **state)
{
    char path[400], why[300], *pw = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/pw", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("a secret phrase\r\n", f);
    fclose(f);
    assert_int_equal(hdx_password_read_file(path, &pw, &len, why, sizeof(why)), HDX_OK);
    assert_int_equal(len, 15);
    assert_memory_equal(pw, "a secret phrase", 15);
    hdx_password_free(pw);
    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    assert_int_equal(hdx_password_read_file(path, &pw, &len, why, sizeof(why)), HDX_E_INVAL);
    assert_null(pw);
    f = fopen(path, "w");
    fwrite("ab\0cd", 1, 5, f);
    fclose(f);
    assert_int_equal(hdx_password_read_file(path, &pw, &len, why, sizeof(why)), HDX_E_INVAL);
    f = fopen(path, "w");
    for (int i = 0; i < HDX_PW_FILE_MAX + 1; i++)
        fputc('a', f);
    fclose(f);
    assert_int_equal(hdx_password_read_file(path, &pw, &len, why, sizeof(why)), HDX_E_TOOBIG);
}

/* RFC 6238 Appendix B, SHA-1 rows: the seed is the ASCII string "12345678901234567890". */
static const struct {
    time_t t;
    const char *code;
} rfc6238[] = {
    {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
    {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
};
static const uint8_t rfc_seed[] = "12345678901234567890";

static void test_totp_rfc6238(void **state)
{
    char code[9];
    uint64_t step;
    for (size_t i = 0; i < sizeof(rfc6238) / sizeof(rfc6238[0]); i++) {
        assert_int_equal(hdx_totp_code(rfc_seed, 20, rfc6238[i].t, 8, code), HDX_OK);
        assert_string_equal(code, rfc6238[i].code);
        /* the checking path, at the vector's 8 digits */
        assert_int_equal(hdx_totp_check(rfc_seed, 20, rfc6238[i].t, 8, rfc6238[i].code, 0, &step),
                         HDX_OK);
        assert_int_equal(step, (uint64_t)rfc6238[i].t / 30);
        /* 6 digits (in use) are the low six of the same truncation */
        assert_int_equal(hdx_totp_code(rfc_seed, 20, rfc6238[i].t, 6, code), HDX_OK);
        assert_string_equal(code, rfc6238[i].code + 2);
        assert_int_equal(
            hdx_totp_check(rfc_seed, 20, rfc6238[i].t, 6, rfc6238[i].code + 2, 0, &step), HDX_OK);
    }
    /* a 6-digit code is not accepted where 8 are expected, nor the reverse */
    assert_int_equal(hdx_totp_check(rfc_seed, 20, 59, 8, "287082", 0, &step), HDX_E_PERM);
    assert_int_equal(hdx_totp_check(rfc_seed, 20, 59, 6, "94287082", 0, &step), HDX_E_PERM);
    assert_int_equal(hdx_totp_check(rfc_seed, 20, 59, 6, "28708a", 0, &step), HDX_E_PERM);
    assert_int_equal(hdx_totp_check(rfc_seed, 20, 59, 6, "", 0, &step), HDX_E_PERM);
}

static void test_totp_window_and_replay(void **state)
{
    uint8_t secret[HDX_TOTP_SECRET_LEN];
    char code[7];
    uint64_t step, s2;
    time_t now = 1700000015; /* inside step 56666667 */
    hdx_totp_secret_new(secret);
    assert_int_equal(hdx_totp_code(secret, sizeof(secret), now, 6, code), HDX_OK);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now, 6, code, 0, &step), HDX_OK);
    assert_int_equal(step, (uint64_t)now / 30);
    /* the same code again: its step is used */
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now, 6, code, step, &s2), HDX_E_EXISTS);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now + 30, 6, code, step, &s2),
                     HDX_E_EXISTS);
    /* one step of skew either way is accepted, two are not */
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now - 30, 6, code, 0, &s2), HDX_OK);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now + 30, 6, code, 0, &s2), HDX_OK);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now + 60, 6, code, 0, &s2), HDX_E_PERM);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now - 60, 6, code, 0, &s2), HDX_E_PERM);
    /* the next step's code still works after this one was used */
    assert_int_equal(hdx_totp_code(secret, sizeof(secret), now + 30, 6, code), HDX_OK);
    assert_int_equal(hdx_totp_check(secret, sizeof(secret), now + 30, 6, code, step, &s2), HDX_OK);
    assert_int_equal(s2, step + 1);
}

static void test_totp_uri_seal(void **state)
{
    char b32[64], uri[HDX_TOTP_URI_MAX];
    uint8_t secret[HDX_TOTP_SECRET_LEN], back[HDX_TOTP_SECRET_LEN], sealed[HDX_TOTP_SEALED_LEN];
    /* RFC 4648 section 10 */
    assert_int_equal(hdx_base32((const uint8_t *)"foobar", 6, b32, sizeof(b32)), 10);
    assert_string_equal(b32, "MZXW6YTBOI");
    assert_int_equal(hdx_base32((const uint8_t *)"f", 1, b32, sizeof(b32)), 2);
    assert_string_equal(b32, "MY");
    assert_int_equal(hdx_base32(rfc_seed, 20, b32, sizeof(b32)), 32);
    assert_string_equal(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_int_equal(hdx_totp_uri("alice", rfc_seed, 20, uri, sizeof(uri)), HDX_OK);
    assert_string_equal(uri, "otpauth://totp/hdx:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                             "&issuer=hdx&algorithm=SHA1&digits=6&period=30");
    assert_int_equal(hdx_totp_uri("bad name", rfc_seed, 20, uri, sizeof(uri)), HDX_E_INVAL);

    hdx_totp_secret_new(secret);
    assert_int_equal(hdx_totp_seal(kr, "alice", secret, sealed), HDX_OK);
    assert_null(memmem(sealed, sizeof(sealed), secret, sizeof(secret))); /* not in the clear */
    assert_int_equal(hdx_totp_open(kr, "alice", sealed, back), HDX_OK);
    assert_memory_equal(back, secret, sizeof(secret));
    /* bound to its user: another name, or any altered byte, does not open */
    assert_int_equal(hdx_totp_open(kr, "alicf", sealed, back), HDX_E_CRYPTO);
    for (size_t i = 0; i < sizeof(sealed); i++) {
        sealed[i] ^= 1;
        assert_int_equal(hdx_totp_open(kr, "alice", sealed, back), HDX_E_CRYPTO);
        sealed[i] ^= 1;
    }
}

static void test_recovery_codes(void **state)
{
    char shown[HDX_RECOVERY_CODES][HDX_RECOVERY_SHOWN_LEN + 1];
    uint8_t stored[HDX_RECOVERY_CODES][HDX_RECOVERY_STORED_LEN];
    char alt[32];
    assert_int_equal(hdx_recovery_new(kr, "bob", shown, stored), HDX_OK);
    for (int i = 0; i < HDX_RECOVERY_CODES; i++) {
        assert_int_equal(strlen(shown[i]), 11);
        assert_int_equal(shown[i][5], '-');
        assert_int_equal(hdx_recovery_match(kr, "bob", shown[i], stored, 0), i);
        /* typed without the dash, in upper case, with a space */
        snprintf(alt, sizeof(alt), "%.5s %.5s", shown[i], shown[i] + 6);
        for (char *p = alt; *p; p++)
            if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
        assert_int_equal(hdx_recovery_match(kr, "bob", alt, stored, 0), i);
        /* the stored form holds no code */
        assert_null(memmem(stored, sizeof(stored), shown[i], 5));
    }
    /* once used (its bit set), a code no longer matches; the others still do */
    assert_int_equal(hdx_recovery_match(kr, "bob", shown[3], stored, 1u << 3), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", shown[4], stored, 1u << 3), 4);
    /* bound to the user; junk and near misses refused */
    assert_int_equal(hdx_recovery_match(kr, "bobby", shown[0], stored, 0), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", "aaaaa-aaaaa", stored, 0), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", "abcd", stored, 0), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", "abcde-fghij-k", stored, 0), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", "abcde-fgh1j", stored, 0), -1);
    assert_int_equal(hdx_recovery_match(kr, "bob", "", stored, 0), -1);
}

/* ---------- hdx_user_authenticate over a store ---------- */

static struct hdx_store *st;
static int64_t clock_us = 1000;

static void commit(const struct hdx_admin *a)
{
    char body[HDX_ADMIN_BODY_MAX + 1];
    int n = hdx_admin_format(a, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(hdx_store_begin(st), HDX_OK);
    assert_int_equal(hdx_admin_commit(st, 0, (uint8_t *)body, (size_t)n, ++clock_us), HDX_OK);
    assert_int_equal(hdx_store_commit(st), HDX_OK);
}

static struct hdx_auth_outcome login(const char *name, const char *pw, const char *second,
                                     time_t now)
{
    struct hdx_auth_input in = {name, pw, strlen(pw), second, now, 0, 0};
    struct hdx_auth_outcome o;
    assert_int_equal(hdx_user_authenticate(st, kr, &cheap, &in, &o), HDX_OK);
    return o;
}

static double elapsed_ms(const char *name, const char *pw)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    (void)login(name, pw, "000000", 1700000000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_authenticate(void **state)
{
    char path[400], code[7];
    struct hdx_enrolment e;
    struct hdx_admin a = {.op = HDX_ADMIN_USER_ADD, .created_us = 5};
    const char *pw = "a long clinical passphrase";
    time_t now = 1700000015;
    snprintf(path, sizeof(path), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(path, HDX_STORE_CREATE, &st), HDX_OK);
    snprintf(a.name, sizeof(a.name), "carol");
    snprintf(a.role, sizeof(a.role), "clinician");
    assert_int_equal(hdx_password_hash(&cheap, pw, strlen(pw), a.pw_hash), HDX_OK);
    assert_int_equal(hdx_user_enrol(kr, "carol", &a, &e), HDX_OK);
    commit(&a);

    /* the secret as the user's app has it: from the URI */
    const char *b32 = strstr(e.uri, "secret=") + 7;
    char secret_b32[HDX_TOTP_B32_LEN + 1];
    memcpy(secret_b32, b32, HDX_TOTP_B32_LEN);
    secret_b32[HDX_TOTP_B32_LEN] = 0;
    struct hdx_user u;
    uint8_t secret[HDX_TOTP_SECRET_LEN];
    char again[HDX_TOTP_B32_LEN + 1];
    assert_int_equal(hdx_store_user_get(st, "carol", &u), HDX_OK);
    assert_int_equal(hdx_totp_open(kr, "carol", u.totp_sealed, secret), HDX_OK);
    assert_int_equal(hdx_base32(secret, sizeof(secret), again, sizeof(again)), HDX_TOTP_B32_LEN);
    assert_string_equal(again, secret_b32);

    /* password and TOTP: ok, and the outcome names the step to record */
    assert_int_equal(hdx_totp_code(secret, sizeof(secret), now, 6, code), HDX_OK);
    struct hdx_auth_outcome o = login("carol", pw, code, now);
    assert_int_equal(o.result, HDX_AUTH_OK);
    assert_int_equal(o.factor, HDX_FACTOR_TOTP);
    assert_int_equal(o.step, (uint64_t)now / 30);
    assert_string_equal(o.role, "clinician");
    /* before the record is committed, the caller's pending step refuses the same code */
    struct hdx_auth_input in = {"carol", pw, strlen(pw), code, now, o.step, 0};
    struct hdx_auth_outcome o2;
    assert_int_equal(hdx_user_authenticate(st, kr, &cheap, &in, &o2), HDX_OK);
    assert_int_equal(o2.result, HDX_AUTH_DENIED);
    assert_int_equal(o2.reason, HDX_AUTH_R_REPLAY);
    struct hdx_admin used;
    assert_int_equal(hdx_auth_consumed(&o, "carol", &used), HDX_OK);
    assert_int_equal(used.op, HDX_ADMIN_USER_TOTP_USED);
    commit(&used);
    /* after it, the store refuses it */
    o = login("carol", pw, code, now);
    assert_int_equal(o.result, HDX_AUTH_DENIED);
    assert_int_equal(o.reason, HDX_AUTH_R_REPLAY);
    assert_int_equal(hdx_auth_consumed(&o, "carol", &used), HDX_E_INVAL);

    /* each failure is DENIED, with its reason for the log only */
    o = login("carol", "a long clinical passphrasE", code, now + 30);
    assert_int_equal(o.result, HDX_AUTH_DENIED);
    assert_int_equal(o.reason, HDX_AUTH_R_PASSWORD);
    assert_string_equal(o.role, ""); /* nothing about the account */
    o = login("nobody", pw, code, now);
    assert_int_equal(o.reason, HDX_AUTH_R_NO_USER);
    o = login("bad name!", pw, code, now);
    assert_int_equal(o.reason, HDX_AUTH_R_NO_USER);
    o = login("carol", pw, "123456", now);
    assert_true(o.reason == HDX_AUTH_R_SECOND || o.reason == HDX_AUTH_R_REPLAY);
    o = login("carol", pw, NULL, now);
    assert_int_equal(o.reason, HDX_AUTH_R_NO_SECOND);
    o = login("carol", pw, "", now);
    assert_int_equal(o.reason, HDX_AUTH_R_NO_SECOND);

    /* a recovery code works once */
    o = login("carol", pw, e.codes[2], now);
    assert_int_equal(o.result, HDX_AUTH_OK);
    assert_int_equal(o.factor, HDX_FACTOR_RECOVERY);
    assert_int_equal(o.recovery_index, 2);
    in = (struct hdx_auth_input){"carol", pw, strlen(pw), e.codes[2], now, 0, 1u << 2};
    assert_int_equal(hdx_user_authenticate(st, kr, &cheap, &in, &o2), HDX_OK);
    assert_int_equal(o2.result, HDX_AUTH_DENIED); /* pending, not yet committed */
    assert_int_equal(hdx_auth_consumed(&o, "carol", &used), HDX_OK);
    assert_int_equal(used.op, HDX_ADMIN_USER_RECOVERY_USED);
    assert_int_equal(used.index, 2);
    commit(&used);
    o = login("carol", pw, e.codes[2], now);
    assert_int_equal(o.result, HDX_AUTH_DENIED);
    assert_int_equal(o.reason, HDX_AUTH_R_SECOND);
    o = login("carol", pw, e.codes[3], now);
    assert_int_equal(o.result, HDX_AUTH_OK);

    /* the next step's code after the used one */
    assert_int_equal(hdx_totp_code(secret, sizeof(secret), now + 30, 6, code), HDX_OK);
    o = login("carol", pw, code, now + 30);
    assert_int_equal(o.result, HDX_AUTH_OK);

    /* locked: denied even with every factor right; unlocked: works */
    struct hdx_admin lock = {.op = HDX_ADMIN_USER_LOCK};
    snprintf(lock.name, sizeof(lock.name), "carol");
    commit(&lock);
    o = login("carol", pw, code, now + 30);
    assert_int_equal(o.reason, HDX_AUTH_R_LOCKED);
    lock.op = HDX_ADMIN_USER_UNLOCK;
    commit(&lock);
    o = login("carol", pw, code, now + 30);
    assert_int_equal(o.result, HDX_AUTH_OK);

    /* a user without a second factor may only enrol */
    struct hdx_admin b = {.op = HDX_ADMIN_USER_ADD, .created_us = 6};
    snprintf(b.name, sizeof(b.name), "dave");
    snprintf(b.role, sizeof(b.role), "auditor");
    assert_int_equal(hdx_password_hash(&cheap, pw, strlen(pw), b.pw_hash), HDX_OK);
    commit(&b);
    o = login("dave", pw, NULL, now);
    assert_int_equal(o.result, HDX_AUTH_ENROL_ONLY);
    assert_int_equal(hdx_auth_consumed(&o, "dave", &used), HDX_E_INVAL);

    /* a missing user costs what a real one does (median of 5, generous bounds: shared cores) */
    double real[5], missing[5];
    for (int i = 0; i < 5; i++) {
        real[i] = elapsed_ms("carol", "wrong password here");
        missing[i] = elapsed_ms("nobody-at-all", "wrong password here");
    }
    qsort(real, 5, sizeof(double), cmp_double);
    qsort(missing, 5, sizeof(double), cmp_double);
    assert_true(missing[2] > real[2] * 0.5 && missing[2] < real[2] * 2.0);

    sodium_memzero(&e, sizeof(e));
    hdx_store_close(st);
    st = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),   cmocka_unit_test(test_hash_shape),
        cmocka_unit_test(test_policy),        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_totp_rfc6238),  cmocka_unit_test(test_totp_window_and_replay),
        cmocka_unit_test(test_totp_uri_seal), cmocka_unit_test(test_recovery_codes),
        cmocka_unit_test(test_authenticate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
