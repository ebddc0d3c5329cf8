/* commit/admin: the admin statement parser (one test per kind of bad input), the canonical
 * format, the registry apply, the store apply in a transaction and the migration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"
#include "store/store.h"

#define PUB "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define ADD                                                                                        \
    "HDX-ADMIN 1\nop=device_add\nname=monitor-01\nrole=device\nserial=1a2b\ncreated_us=17\n"       \
    "sign_pub=" PUB "\n"

static int parse(const char *s)
{
    struct hdx_admin a;
    return hdx_admin_parse((const uint8_t *)s, strlen(s), &a);
}

static void test_valid_bodies(void **state)
{
    struct hdx_admin a;
    assert_int_equal(hdx_admin_parse((const uint8_t *)ADD, strlen(ADD), &a), HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_DEVICE_ADD);
    assert_string_equal(a.name, "monitor-01");
    assert_string_equal(a.role, "device");
    assert_string_equal(a.serial, "1a2b");
    assert_int_equal(a.created_us, 17);
    assert_true(a.has_pub);
    assert_int_equal(a.sign_pub[1], 0x11);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_add\nname=m\nrole=gateway\nserial=0\n"
                           "created_us=1\nsign_pub=\n"),
                     HDX_OK);
    assert_int_equal(
        parse("HDX-ADMIN 1\nop=device_revoke\nname=m\nserial=ff\nrevoked_us=123456789\n"), HDX_OK);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\n"), HDX_OK);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_import\nname=m\nrole=subscriber\nserial=1\n"
                           "created_us=5\nrevoked_us=0\nsign_pub=\n"),
                     HDX_OK);
}

static void test_format_roundtrip(void **state)
{
    struct hdx_admin a, b;
    char buf[HDX_ADMIN_BODY_MAX + 1];
    assert_int_equal(hdx_admin_parse((const uint8_t *)ADD, strlen(ADD), &a), HDX_OK);
    int n = hdx_admin_format(&a, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(ADD));
    assert_memory_equal(buf, ADD, strlen(ADD)); /* canonical: one body per statement */
    for (int op = HDX_ADMIN_DEVICE_ADD; op <= HDX_ADMIN_DEVICE_IMPORT; op++) { /* devices */
        memset(&a, 0, sizeof(a));
        a.op = (enum hdx_admin_op)op;
        strcpy(a.name, "x.y_z-9");
        strcpy(a.role, "gateway");
        strcpy(a.serial, "abcdef0123456789abcdef0123456789abcdef01");
        a.created_us = 1;
        a.revoked_us = 2;
        n = hdx_admin_format(&a, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(hdx_admin_parse((const uint8_t *)buf, (size_t)n, &b), HDX_OK);
        assert_int_equal(b.op, op);
        assert_string_equal(b.name, a.name);
        assert_non_null(hdx_admin_type(b.op));
    }
    assert_string_equal(hdx_admin_type(HDX_ADMIN_DEVICE_REVOKE), "admin/device_revoke");
    assert_null(hdx_admin_type((enum hdx_admin_op)0));
    /* an invalid statement is never written */
    strcpy(a.name, "bad name");
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) < 0);
    assert_true(hdx_admin_format(&b, buf, 20) < 0); /* too small */
}

/* The actor (by=) is optional, last, once, and of its grammar; it survives a round trip. */
static void test_actor(void **state)
{
    (void)state;
    struct hdx_admin a;
    char buf[HDX_ADMIN_BODY_MAX + 1];
    const char *sk = "HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\n";
    char body[256];
    snprintf(body, sizeof(body), "%sby=local:root/sudo:alice\n", sk);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_OK);
    assert_string_equal(a.by, "local:root/sudo:alice");
    int n = hdx_admin_format(&a, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(body));
    assert_memory_equal(buf, body, (size_t)n);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\nby=user:clin_1\n"),
                     HDX_OK);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\n"), HDX_OK);
    static const char *const bad[] = {"by=\n",
                                      "by=root\n",
                                      "by=local:\n",
                                      "by=user:\n",
                                      "by=device:m\n",
                                      "by=local:a b\n",
                                      "by=local:a\nby=local:b\n",
                                      "by=local:a\x01\n",
                                      "by=local:a",
                                      "by=local:a\ncomment=x\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "%s%s", sk, bad[i]);
        assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_E_INVAL);
    }
    char longest[128] = "by=local:";
    memset(longest + 9, 'a', 84); /* "local:" and 84 more: 90, the most */
    strcat(longest, "\n");
    snprintf(body, sizeof(body), "%s%s", sk, longest);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_OK);
    strcpy(longest + 93, "a\n");
    snprintf(body, sizeof(body), "%s%s", sk, longest);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_E_INVAL);
    /* Before the op's own keys it is an unknown key. */
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nby=local:a\nname=m\nsign_pub=\n"),
                     HDX_E_INVAL);
    assert_true(hdx_admin_by_valid("local:root"));
    assert_false(hdx_admin_by_valid("local:"));
    strcpy(a.by, "nobody");
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) < 0); /* only what parses is written */
}

static void test_reject_header(void **state)
{
    assert_int_equal(parse(""), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 2\nop=device_signkey\nname=m\nsign_pub=\n"), HDX_E_INVAL);
    assert_int_equal(parse("hdx-admin 1\nop=device_signkey\nname=m\nsign_pub=\n"), HDX_E_INVAL);
    assert_int_equal(parse(" HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\n"), HDX_E_INVAL);
}

static void test_reject_unknown_op_and_key(void **state)
{
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_delete\nname=m\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=\nname=m\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nrole=device\nsign_pub=\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\ncomment=x\n"),
                     HDX_E_INVAL);
}

static void test_reject_duplicate_reordered_missing(void **state)
{
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nname=m\nsign_pub=\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nsign_pub=\nname=m\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_revoke\nname=m\nrevoked_us=1\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nop=device_signkey\nname=m\n"
                           "sign_pub=\n"),
                     HDX_E_INVAL);
}

static void test_reject_trailing_and_framing(void **state)
{
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\n\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=\nx"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub="), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\r\nop=device_signkey\r\nname=m\r\nsign_pub=\r\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_signkey\nname =m\nsign_pub=\n"), HDX_E_INVAL);
    /* a NUL inside a value */
    static const char nul[] = "HDX-ADMIN 1\nop=device_signkey\nname=m\0x\nsign_pub=\n";
    struct hdx_admin a;
    assert_int_equal(hdx_admin_parse((const uint8_t *)nul, sizeof(nul) - 1, &a), HDX_E_INVAL);
    /* the length given is the length read: a prefix is not a body */
    assert_int_equal(hdx_admin_parse((const uint8_t *)ADD, strlen(ADD) - 1, &a), HDX_E_INVAL);
    assert_int_equal(hdx_admin_parse(NULL, 0, &a), HDX_E_INVAL);
    /* over the size limit */
    char big[HDX_ADMIN_BODY_MAX + 64];
    memset(big, 'a', sizeof(big));
    memcpy(big, ADD, strlen(ADD));
    assert_int_equal(hdx_admin_parse((const uint8_t *)big, sizeof(big), &a), HDX_E_INVAL);
}

static void test_reject_bad_hex(void **state)
{
    const char *bad[] = {
        "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",   /* upper case */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddee",     /* short */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", /* long */
        "0g112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",   /* not hex */
        " 0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    };
    char buf[300];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=device_signkey\nname=m\nsign_pub=%s\n", bad[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    const char *serial[] = {"", "AB", "0x1", "abcdef0123456789abcdef0123456789abcdef012", "1 "};
    for (size_t i = 0; i < sizeof(serial) / sizeof(serial[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=device_revoke\nname=m\nserial=%s\nrevoked_us=1\n", serial[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
}

static void test_reject_bad_name_role(void **state)
{
    const char *names[] = {
        "",          ".m",
        "-m",        "m n",
        "m/n",       "m:n",
        "m\xc3\xa9", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    char buf[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=device_signkey\nname=%s\nsign_pub=\n",
                 names[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    const char *roles[] = {"", "admin", "Device", "device "};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=device_add\nname=m\nrole=%s\nserial=1\ncreated_us=1\nsign_pub=\n",
                 roles[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
}

static void test_reject_bad_numbers(void **state)
{
    const char *nums[] = {
        "", "0", "01", "-1", "+1", "1 ", "1a", "9223372036854775808", "99999999999999999999"};
    char buf[300];
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=device_add\nname=m\nrole=device\nserial=1\ncreated_us=%s\n"
                 "sign_pub=\n",
                 nums[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* revoked_us 0 means active: only an import may say so */
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_revoke\nname=m\nserial=1\nrevoked_us=0\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_import\nname=m\nrole=device\nserial=1\n"
                           "created_us=1\nrevoked_us=01\nsign_pub=\n"),
                     HDX_E_INVAL);
}

static struct hdx_admin stmt(enum hdx_admin_op op, const char *name, const char *serial)
{
    struct hdx_admin a = {.op = op, .created_us = 10, .revoked_us = 20};
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.role, sizeof(a.role), "device");
    snprintf(a.serial, sizeof(a.serial), "%s", serial);
    return a;
}

static void test_registry_apply(void **state)
{
    struct hdx_registry r = {0};
    struct hdx_admin a = stmt(HDX_ADMIN_DEVICE_SIGNKEY, "ghost", "1");
    a.has_pub = 1;
    assert_int_equal(hdx_registry_apply(&r, &a, 5), HDX_OK);
    assert_int_equal(r.n, 0); /* no key for a device that does not exist */
    a = stmt(HDX_ADMIN_DEVICE_ADD, "b", "1");
    a.has_pub = 1;
    a.sign_pub[0] = 7;
    assert_int_equal(hdx_registry_apply(&r, &a, 100), HDX_OK);
    a = stmt(HDX_ADMIN_DEVICE_ADD, "a", "2");
    assert_int_equal(hdx_registry_apply(&r, &a, 101), HDX_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.e[0].dev.name, "a"); /* sorted */
    const struct hdx_registry_entry *b = hdx_registry_find(&r, "b");
    assert_non_null(b);
    assert_true(b->has_key);
    assert_int_equal(b->key_created_us, 100);
    assert_int_equal(b->dev.created_us, 10);
    /* revoke needs the serial of the enrolled certificate */
    a = stmt(HDX_ADMIN_DEVICE_REVOKE, "b", "9");
    assert_int_equal(hdx_registry_apply(&r, &a, 102), HDX_OK);
    assert_int_equal(hdx_registry_find(&r, "b")->dev.revoked_us, 0);
    a = stmt(HDX_ADMIN_DEVICE_REVOKE, "b", "1");
    assert_int_equal(hdx_registry_apply(&r, &a, 103), HDX_OK);
    assert_int_equal(hdx_registry_find(&r, "b")->dev.revoked_us, 20);
    a.revoked_us = 30; /* a second revocation changes nothing */
    assert_int_equal(hdx_registry_apply(&r, &a, 104), HDX_OK);
    assert_int_equal(hdx_registry_find(&r, "b")->dev.revoked_us, 20);
    /* signkey removal, then re-enrolment replaces the row */
    a = stmt(HDX_ADMIN_DEVICE_SIGNKEY, "b", "1");
    assert_int_equal(hdx_registry_apply(&r, &a, 105), HDX_OK);
    assert_false(hdx_registry_find(&r, "b")->has_key);
    a = stmt(HDX_ADMIN_DEVICE_IMPORT, "b", "3");
    assert_int_equal(hdx_registry_apply(&r, &a, 106), HDX_OK);
    assert_string_equal(hdx_registry_find(&r, "b")->dev.serial, "3");
    assert_int_equal(hdx_registry_find(&r, "b")->dev.revoked_us, 20); /* an import keeps it */
    assert_null(hdx_registry_find(&r, "c"));
    hdx_registry_free(&r);
}

static char tmpdir[256], dbpath[320];

static void enqueue_commit(struct hdx_store *s, const struct hdx_admin *a, int64_t t)
{
    char body[HDX_ADMIN_BODY_MAX + 1];
    int64_t id;
    int n = hdx_admin_format(a, body, sizeof(body));
    assert_true(n > 0);
    assert_int_equal(hdx_store_admin_enqueue(s, (uint8_t *)body, (size_t)n, t, &id), HDX_OK);
    assert_int_equal(hdx_store_admin_queued(s, id), 1);
    assert_int_equal(hdx_store_begin(s), HDX_OK);
    assert_int_equal(hdx_admin_commit(s, id, (uint8_t *)body, (size_t)n, t), HDX_OK);
    assert_int_equal(hdx_store_commit(s), HDX_OK);
    assert_int_equal(hdx_store_admin_queued(s, id), 0);
}

static void test_store_apply_and_migrate(void **state)
{
    struct hdx_store *s = NULL;
    struct hdx_device d;
    uint8_t pub[32];
    int64_t created;
    size_t queued = 9;
    char cmd[320];
    assert_int_equal(hdx_mkdtemp("hdx-admin-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    struct hdx_admin a = stmt(HDX_ADMIN_DEVICE_ADD, "mon", "ab");
    a.has_pub = 1;
    a.sign_pub[31] = 9;
    enqueue_commit(s, &a, 1000);
    assert_int_equal(hdx_store_device_get(s, "mon", &d), HDX_OK);
    assert_string_equal(d.serial, "ab");
    assert_int_equal(hdx_store_device_signkey_row(s, "mon", pub, &created), HDX_OK);
    assert_int_equal(created, 1000);
    assert_int_equal(pub[31], 9);
    a = stmt(HDX_ADMIN_DEVICE_REVOKE, "mon", "ab");
    enqueue_commit(s, &a, 2000);
    assert_int_equal(hdx_store_device_get(s, "mon", &d), HDX_OK);
    assert_int_equal(d.revoked_us, 20);
    /* a statement that does not parse fails its transaction */
    int64_t id;
    assert_int_equal(hdx_store_admin_enqueue(s, (const uint8_t *)"x", 1, 1, &id), HDX_OK);
    assert_int_equal(hdx_admin_commit(s, id, (const uint8_t *)"x", 1, 1), HDX_E_INVAL);
    assert_int_equal(hdx_store_admin_dequeue(s, id), HDX_OK);
    assert_int_equal(hdx_store_admin_count(s), 0);

    /* a store from before admin records: a device row without its record */
    struct hdx_device old = {
        .name = "legacy-1", .role = "gateway", .serial = "cd", .created_us = 5};
    assert_int_equal(hdx_store_device_put(s, &old), HDX_OK);
    assert_int_equal(hdx_admin_migrate(s, &queued), HDX_OK);
    assert_int_equal(queued, 2); /* mon and legacy-1 */
    assert_int_equal(hdx_store_admin_count(s), 2);
    assert_int_equal(hdx_admin_migrate(s, &queued), HDX_OK);
    assert_int_equal(queued, 0); /* once */
    hdx_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---------- user statements ---------- */

#define PWH                                                                                        \
    "$argon2id$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$"                                       \
    "TjQSOcD9Pxbt1ZLTflJAfYpbHrACQhzcM0ZcvwKIDpc"
#define TOTP                                                                                       \
    "0000000100112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677"     \
    "8899aabbccddeeff"
#define RC "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define RCS RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC

static const char *const user_bodies[] = {
    "HDX-ADMIN 1\nop=user_add\nname=alice\nrole=clinician\npw_hash=" PWH "\ntotp_sealed=" TOTP
    "\nrecovery=" RCS "\ncreated_us=17\n",
    "HDX-ADMIN 1\nop=user_add\nname=bob\nrole=security-officer\npw_hash=" PWH
    "\ntotp_sealed=\nrecovery=\ncreated_us=1\n",
    "HDX-ADMIN 1\nop=user_passwd\nname=alice\npw_hash=" PWH "\n",
    "HDX-ADMIN 1\nop=user_lock\nname=alice\n",
    "HDX-ADMIN 1\nop=user_unlock\nname=alice\n",
    "HDX-ADMIN 1\nop=user_revoke_sessions\nname=alice\nat_us=99\n",
    "HDX-ADMIN 1\nop=user_mfa\nname=alice\ntotp_sealed=" TOTP "\nrecovery=" RCS "\n",
    "HDX-ADMIN 1\nop=user_mfa\nname=alice\ntotp_sealed=\nrecovery=\n",
    "HDX-ADMIN 1\nop=user_training\nname=alice\ndate=2024-02-29\n",
    "HDX-ADMIN 1\nop=user_training\nname=alice\ndate=\n",
    "HDX-ADMIN 1\nop=user_totp_used\nname=alice\nstep=56666667\n",
    "HDX-ADMIN 1\nop=user_recovery_used\nname=alice\nindex=9\n",
};

static void test_user_bodies_roundtrip(void **state)
{
    struct hdx_admin a;
    char buf[HDX_ADMIN_BODY_MAX + 1];
    for (size_t i = 0; i < sizeof(user_bodies) / sizeof(user_bodies[0]); i++) {
        const char *b = user_bodies[i];
        assert_int_equal(hdx_admin_parse((const uint8_t *)b, strlen(b), &a), HDX_OK);
        assert_true(hdx_admin_is_user_op(a.op));
        int n = hdx_admin_format(&a, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(b));
        assert_memory_equal(buf, b, strlen(b)); /* canonical */
        assert_non_null(hdx_admin_type(a.op));
    }
    assert_int_equal(hdx_admin_parse((const uint8_t *)user_bodies[0], strlen(user_bodies[0]), &a),
                     HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_USER_ADD);
    assert_string_equal(a.role, "clinician");
    assert_true(a.has_mfa);
    assert_int_equal(a.totp_sealed[3], 1);
    assert_int_equal(a.recovery[9][31], 0xff);
    assert_string_equal(hdx_admin_type(HDX_ADMIN_USER_TOTP_USED), "admin/user_totp_used");
    assert_false(hdx_admin_is_user_op(HDX_ADMIN_DEVICE_IMPORT));
    /* the largest statement fits */
    memset(&a, 0, sizeof(a));
    a.op = HDX_ADMIN_USER_ADD;
    memset(a.name, 'n', 64);
    strcpy(a.role, "security-officer");
    strcpy(a.pw_hash, PWH);
    a.has_mfa = 1;
    a.created_us = INT64_MAX;
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) > 0);
}

/* A service's API key hash (auth/apikey.h) goes only to the integration role: a person's
 * account with one would log in without MFA. */
static void test_user_api_key(void **state)
{
    (void)state;
    char key[HDX_APIKEY_MAX + 1], hash[HDX_APIKEY_HASH_LEN + 1], body[512];
    struct hdx_admin a;
    assert_int_equal(hdx_apikey_new("svc", key, sizeof(key), hash, sizeof(hash)), HDX_OK);
    assert_int_equal(strlen(key), 5 + 3 + 1 + 43);
    assert_true(hdx_apikey_hash_valid(hash));
    assert_true(hdx_apikey_verify(key, strlen(key), hash));
    key[20] ^= 1;
    assert_false(hdx_apikey_verify(key, strlen(key), hash));
    key[20] ^= 1;
    char name[65];
    assert_int_equal(hdx_apikey_name(key, strlen(key), name, sizeof(name)), HDX_OK);
    assert_string_equal(name, "svc");
    assert_int_equal(hdx_apikey_name(key, strlen(key) - 1, name, sizeof(name)), HDX_E_INVAL);
    assert_int_equal(hdx_apikey_name("hdxk_.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 49, name,
                                     sizeof(name)),
                     HDX_E_INVAL);
    static const char nul_name[] = "hdxk_f\0x.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_int_equal(hdx_apikey_name(nul_name, sizeof(nul_name) - 1, name, sizeof(name)),
                     HDX_E_INVAL); /* found by fuzz_apikey: it named user "f" */
    assert_false(hdx_apikey_hash_valid(PWH));
    snprintf(body, sizeof(body),
             "HDX-ADMIN 1\nop=user_add\nname=svc\nrole=integration\npw_hash=%s\ntotp_sealed=\n"
             "recovery=\ncreated_us=1\n",
             hash);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_OK);
    snprintf(body, sizeof(body),
             "HDX-ADMIN 1\nop=user_add\nname=eve\nrole=clinician\npw_hash=%s\ntotp_sealed=\n"
             "recovery=\ncreated_us=1\n",
             hash);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_E_INVAL);
    /* user_passwd does not know the role: applying it to a person changes nothing. */
    snprintf(body, sizeof(body), "HDX-ADMIN 1\nop=user_passwd\nname=alice\npw_hash=%s\n", hash);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_OK);
    struct hdx_user u = {.name = "alice", .role = "clinician", .pw_hash = PWH};
    int present = 1;
    hdx_admin_user_apply(&u, &present, &a, 5);
    assert_string_equal(u.pw_hash, PWH);
    strcpy(u.role, "integration");
    hdx_admin_user_apply(&u, &present, &a, 5);
    assert_string_equal(u.pw_hash, hash);
}

static void test_user_refusals(void **state)
{
    char buf[HDX_ADMIN_BODY_MAX + 64];
    const char *roles[] = {"device", "subscriber", "Admin", "admin ", "security_officer", ""};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=user_add\nname=a\nrole=%s\npw_hash=" PWH
                 "\ntotp_sealed=\nrecovery=\ncreated_us=1\n",
                 roles[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* a user role is no device role */
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_add\nname=m\nrole=admin\nserial=1\n"
                           "created_us=1\nsign_pub=\n"),
                     HDX_E_INVAL);
    const char *hashes[] = {
        "", "plaintext-password",
        "$argon2i$v=19$m=65536,t=3,p=1$6PWpuL9JpaLXPJJm416Q8w$TjQSOcD9Pxbt1ZLTflJAfYpbHrA", PWH "=",
        PWH " "};
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=user_passwd\nname=a\npw_hash=%s\n", hashes[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* TOTP and recovery both or neither; exactly ten codes of 64 lower-case hex digits */
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_mfa\nname=a\ntotp_sealed=" TOTP "\nrecovery=\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_mfa\nname=a\ntotp_sealed=\nrecovery=" RCS "\n"),
                     HDX_E_INVAL);
    const char *recs[] = {
        RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC,        /* nine */
        RCS "," RC,                                                        /* eleven */
        RCS ",",                                                           /* trailing comma */
        RC ";" RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC, /* separator */
        "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff," RC "," RC "," RC "," RC
        "," RC "," RC "," RC "," RC "," RC, /* upper case */
        "0011," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC "," RC,
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=user_mfa\nname=a\ntotp_sealed=" TOTP "\nrecovery=%s\n", recs[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    assert_int_equal(
        parse("HDX-ADMIN 1\nop=user_mfa\nname=a\ntotp_sealed=00" TOTP "\nrecovery=" RCS "\n"),
        HDX_E_INVAL);
    const char *dates[] = {"2023-02-29", "1999-12-31", "2024-1-01",  "2024-13-01",  "2024-04-31",
                           "2024-00-10", "24-01-01",   "2024/01/01", "2024-01-01 ", "2100-02-29"};
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=user_training\nname=a\ndate=%s\n", dates[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_training\nname=a\ndate=2000-02-29\n"), HDX_OK);
    const char *steps[] = {"0", "01", "-1", "9223372036854775808", ""};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=user_totp_used\nname=a\nstep=%s\n", steps[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    const char *idx[] = {"10", "a", "-1", "", "01"};
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=user_recovery_used\nname=a\nindex=%s\n",
                 idx[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* order, repetition, extra keys, bad names */
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_revoke_sessions\nat_us=1\nname=a\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_lock\nname=a\nname=a\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_lock\nname=a\nat_us=1\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_lock\nname=a b\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_lock\nname=a:b\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_revoke_sessions\nname=a\nat_us=0\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=user_delete\nname=a\n"), HDX_E_INVAL);
    /* an invalid statement is never written */
    struct hdx_admin a = {.op = HDX_ADMIN_USER_PASSWD};
    strcpy(a.name, "a");
    strcpy(a.pw_hash, "not a hash");
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) < 0);
}

static struct hdx_admin ustmt(enum hdx_admin_op op, const char *name)
{
    struct hdx_admin a = {.op = op, .created_us = 10, .at_us = 50};
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.role, sizeof(a.role), "nurse");
    snprintf(a.pw_hash, sizeof(a.pw_hash), "%s", PWH);
    return a;
}

static void test_user_registry_and_store(void **state)
{
    struct hdx_registry r = {0};
    struct hdx_store *s = NULL;
    struct hdx_user u;
    char cmd[320];
    assert_int_equal(hdx_mkdtemp("hdx-admin-u-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    struct hdx_admin seq[12];
    int64_t t[12];
    size_t n = 0;
    seq[n] = ustmt(HDX_ADMIN_USER_LOCK, "ghost"); /* no such user: nothing */
    t[n++] = 100;
    seq[n] = ustmt(HDX_ADMIN_USER_ADD, "erin");
    seq[n].has_mfa = 1;
    seq[n].totp_sealed[0] = 7;
    seq[n].recovery[4][0] = 9;
    t[n++] = 101;
    seq[n] = ustmt(HDX_ADMIN_USER_TOTP_USED, "erin");
    seq[n].step = 40;
    t[n++] = 102;
    seq[n] = ustmt(HDX_ADMIN_USER_TOTP_USED, "erin"); /* a lower step never lowers it */
    seq[n].step = 39;
    t[n++] = 103;
    seq[n] = ustmt(HDX_ADMIN_USER_RECOVERY_USED, "erin");
    seq[n].index = 4;
    t[n++] = 104;
    seq[n] = ustmt(HDX_ADMIN_USER_LOCK, "erin");
    t[n++] = 105;
    seq[n] = ustmt(HDX_ADMIN_USER_TRAINING, "erin");
    strcpy(seq[n].date, "2026-01-15");
    t[n++] = 106;
    seq[n] = ustmt(HDX_ADMIN_USER_PASSWD, "erin");
    t[n++] = 107;
    seq[n] = ustmt(HDX_ADMIN_USER_REVOKE_SESSIONS, "erin"); /* older than the passwd: kept */
    t[n++] = 108;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hdx_registry_apply(&r, &seq[i], t[i]), HDX_OK);
        enqueue_commit(s, &seq[i], t[i]);
    }
    assert_null(hdx_registry_user(&r, "ghost"));
    assert_int_equal(hdx_store_user_get(s, "ghost", &u), HDX_E_NOTFOUND);
    const struct hdx_user *e = hdx_registry_user(&r, "erin");
    assert_non_null(e);
    assert_int_equal(e->totp_step, 40);
    assert_int_equal(e->recovery_used, 1u << 4);
    assert_true(e->locked);
    assert_string_equal(e->training, "2026-01-15");
    assert_int_equal(e->created_us, 10);
    assert_int_equal(e->pw_changed_us, 107);
    assert_int_equal(e->sessions_revoked_us, 107);
    assert_int_equal(e->mfa_us, 101);
    /* the table is the same replay, column for column */
    assert_int_equal(hdx_store_user_get(s, "erin", &u), HDX_OK);
    assert_string_equal(u.role, e->role);
    assert_string_equal(u.pw_hash, e->pw_hash);
    assert_int_equal(u.has_mfa, 1);
    assert_memory_equal(u.totp_sealed, e->totp_sealed, sizeof(u.totp_sealed));
    assert_memory_equal(u.recovery, e->recovery, sizeof(u.recovery));
    assert_int_equal(u.totp_step, e->totp_step);
    assert_int_equal(u.recovery_used, e->recovery_used);
    assert_int_equal(u.locked, e->locked);
    assert_int_equal(u.sessions_revoked_us, e->sessions_revoked_us);
    assert_int_equal(u.pw_changed_us, e->pw_changed_us);
    assert_string_equal(u.training, e->training);
    /* a new second factor clears the used step and codes; no MFA at all clears the secret */
    struct hdx_admin m = ustmt(HDX_ADMIN_USER_MFA, "erin");
    assert_int_equal(hdx_registry_apply(&r, &m, 200), HDX_OK);
    enqueue_commit(s, &m, 200);
    e = hdx_registry_user(&r, "erin");
    assert_false(e->has_mfa);
    assert_int_equal(e->totp_step, 0);
    assert_int_equal(e->recovery_used, 0);
    assert_int_equal(e->sessions_revoked_us, 200);
    assert_int_equal(hdx_store_user_get(s, "erin", &u), HDX_OK);
    assert_false(u.has_mfa);
    /* without a second factor, a consumed step or code changes nothing */
    m = ustmt(HDX_ADMIN_USER_TOTP_USED, "erin");
    m.step = 99;
    assert_int_equal(hdx_registry_apply(&r, &m, 201), HDX_OK);
    assert_int_equal(hdx_registry_user(&r, "erin")->totp_step, 0);
    hdx_registry_free(&r);
    hdx_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---------- policy statements: care teams, consent, break-glass ---------- */

#define TOK "00112233445566778899aabbccddeeff"
#define TOK2 "ffeeddccbbaa99887766554433221100"

static const char *const policy_bodies[] = {
    "HDX-ADMIN 1\nop=careteam_add\nname=alice\npatient=" TOK "\n",
    "HDX-ADMIN 1\nop=careteam_remove\nname=alice\npatient=" TOK "\n",
    "HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\npurpose=research\nrole=\n",
    "HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\npurpose=\nrole=researcher\n",
    "HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\npurpose=\nrole=integration\n",
    "HDX-ADMIN 1\nop=consent_remove\npatient=" TOK "\npurpose=payment\nrole=\n",
    "HDX-ADMIN 1\nop=break_glass\nname=alice\npatient=" TOK
    "\nexpires_us=1796161812661593\njustification=unconscious in the ED, no proxy reachable\n",
    "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK "\nexpires_us=1\njustification=x\n",
    "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK
    "\nexpires_us=9\njustification= !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\n",
    "HDX-ADMIN 1\nop=break_glass_review\nname=alice\npatient=" TOK
    "\ngranted_us=1796161812661593\nreviewer=bob\n",
};

static void test_policy_bodies_roundtrip(void **state)
{
    struct hdx_admin a;
    char buf[HDX_ADMIN_BODY_MAX + 1];
    for (size_t i = 0; i < sizeof(policy_bodies) / sizeof(policy_bodies[0]); i++) {
        const char *b = policy_bodies[i];
        assert_int_equal(hdx_admin_parse((const uint8_t *)b, strlen(b), &a), HDX_OK);
        assert_true(hdx_admin_is_policy_op(a.op));
        assert_false(hdx_admin_is_user_op(a.op));
        int n = hdx_admin_format(&a, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(b));
        assert_memory_equal(buf, b, strlen(b)); /* canonical */
        assert_non_null(hdx_admin_type(a.op));
    }
    assert_int_equal(
        hdx_admin_parse((const uint8_t *)policy_bodies[3], strlen(policy_bodies[3]), &a), HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_CONSENT_DENY);
    assert_string_equal(a.purpose, "");
    assert_string_equal(a.role, "researcher");
    assert_int_equal(a.patient[0], 0x00);
    assert_int_equal(a.patient[15], 0xff);
    assert_int_equal(
        hdx_admin_parse((const uint8_t *)policy_bodies[9], strlen(policy_bodies[9]), &a), HDX_OK);
    assert_int_equal(a.granted_us, 1796161812661593LL);
    assert_string_equal(a.reviewer, "bob");
    assert_string_equal(hdx_admin_type(HDX_ADMIN_CARETEAM_ADD), "admin/careteam_add");
    assert_string_equal(hdx_admin_type(HDX_ADMIN_BREAK_GLASS_REVIEW), "admin/break_glass_review");
    assert_false(hdx_admin_is_policy_op(HDX_ADMIN_USER_RECOVERY_USED));
    assert_true(hdx_admin_is_user_op(HDX_ADMIN_USER_RECOVERY_USED));
    /* the longest justification, with the longest name, fits */
    memset(&a, 0, sizeof(a));
    a.op = HDX_ADMIN_BREAK_GLASS;
    memset(a.name, 'n', 64);
    a.expires_us = INT64_MAX;
    memset(a.justification, '~', HDX_JUSTIFICATION_MAX);
    int n = hdx_admin_format(&a, buf, sizeof(buf));
    assert_true(n > HDX_JUSTIFICATION_MAX);
    struct hdx_admin b;
    assert_int_equal(hdx_admin_parse((const uint8_t *)buf, (size_t)n, &b), HDX_OK);
    assert_int_equal(strlen(b.justification), HDX_JUSTIFICATION_MAX);
}

static void test_policy_refusals(void **state)
{
    char buf[HDX_ADMIN_BODY_MAX + 64];
    /* the patient token: exactly 32 lower-case hex digits */
    const char *toks[] = {"",
                          "0011223344556677",
                          TOK "0",
                          "0011223344556677889900aabbccddeef",
                          "00112233445566778899AABBCCDDEEFF",
                          "0011223344556677889900aabbccddeg",
                          " 0112233445566778899aabbccddeeff",
                          "patient-1234"};
    for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=careteam_add\nname=alice\npatient=%s\n",
                 toks[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=consent_deny\npatient=%s\npurpose=research\nrole=\n", toks[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* names */
    const char *names[] = {
        "",   "a b", "a:b",
        ".a", "-a",  "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(buf, sizeof(buf), "HDX-ADMIN 1\nop=careteam_remove\nname=%s\npatient=" TOK "\n",
                 names[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* consent: exactly one of purpose and role, each a known name */
    const char *pr[][2] = {
        {"", ""},          {"research", "researcher"}, {"Research", ""},
        {"research ", ""}, {"marketing", ""},          {"", "none"},
        {"", "doctor"},    {"", "Researcher"},         {"treatment,payment", ""},
    };
    for (size_t i = 0; i < sizeof(pr) / sizeof(pr[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\npurpose=%s\nrole=%s\n", pr[i][0],
                 pr[i][1]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=consent_remove\npatient=" TOK "\npurpose=%s\nrole=%s\n", pr[i][0],
                 pr[i][1]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* order, missing and extra keys */
    assert_int_equal(
        parse("HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\nrole=\npurpose=research\n"),
        HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=consent_deny\npatient=" TOK "\npurpose=research\n"),
                     HDX_E_INVAL);
    assert_int_equal(
        parse("HDX-ADMIN 1\nop=consent_deny\nname=a\npatient=" TOK "\npurpose=research\nrole=\n"),
        HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=careteam_add\npatient=" TOK "\nname=alice\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=careteam_add\nname=alice\n"), HDX_E_INVAL);
    assert_int_equal(
        parse("HDX-ADMIN 1\nop=careteam_add\nname=alice\npatient=" TOK "\npatient=" TOK "\n"),
        HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=careteam_add\nname=alice\npatient=" TOK "\n\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=careteam_delete\nname=alice\npatient=" TOK "\n"),
                     HDX_E_INVAL);
    /* break_glass: expires_us >= 1, canonical decimal */
    const char *times[] = {"0", "01", "-5", "+5", "1e6", "9223372036854775808", ""};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK
                 "\nexpires_us=%s\njustification=x\n",
                 times[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=break_glass_review\nname=a\npatient=" TOK
                 "\ngranted_us=%s\nreviewer=b\n",
                 times[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* the justification: 1-500 bytes of printable ASCII */
    const char *just[] = {"",          "tab\there", "cr\rhere", "del\x7fhere", "utf8 \xc3\xa9",
                          "high \xff", "bell\a"};
    for (size_t i = 0; i < sizeof(just) / sizeof(just[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK
                 "\nexpires_us=5\njustification=%s\n",
                 just[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    char longj[HDX_JUSTIFICATION_MAX + 2];
    memset(longj, 'j', sizeof(longj) - 1);
    longj[sizeof(longj) - 1] = 0; /* 501 */
    snprintf(buf, sizeof(buf),
             "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK
             "\nexpires_us=5\njustification=%s\n",
             longj);
    assert_int_equal(parse(buf), HDX_E_INVAL);
    longj[HDX_JUSTIFICATION_MAX] = 0; /* 500 */
    snprintf(buf, sizeof(buf),
             "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK
             "\nexpires_us=5\njustification=%s\n",
             longj);
    assert_int_equal(parse(buf), HDX_OK);
    /* a NUL inside the justification */
    static const char nul[] =
        "HDX-ADMIN 1\nop=break_glass\nname=a\npatient=" TOK "\nexpires_us=5\njustification=a\0b\n";
    struct hdx_admin a;
    assert_int_equal(hdx_admin_parse((const uint8_t *)nul, sizeof(nul) - 1, &a), HDX_E_INVAL);
    /* the review: a reviewer name, never the grant's holder */
    const char *revs[] = {"alice", "", "b c", "b:c"};
    for (size_t i = 0; i < sizeof(revs) / sizeof(revs[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "HDX-ADMIN 1\nop=break_glass_review\nname=alice\npatient=" TOK
                 "\ngranted_us=5\nreviewer=%s\n",
                 revs[i]);
        assert_int_equal(parse(buf), HDX_E_INVAL);
    }
    /* an invalid statement is never written */
    memset(&a, 0, sizeof(a));
    a.op = HDX_ADMIN_CONSENT_DENY; /* neither purpose nor role */
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) < 0);
    strcpy(a.purpose, "research");
    strcpy(a.role, "nurse"); /* both */
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) < 0);
    a.role[0] = 0;
    assert_true(hdx_admin_format(&a, buf, sizeof(buf)) > 0);
    /* the helper hdxd uses for a grant */
    uint8_t tok[HDX_BLIND_LEN] = {1, 2, 3};
    assert_int_equal(hdx_admin_break_glass("alice", tok, 99, "chest pain, unresponsive", &a),
                     HDX_OK);
    int n = hdx_admin_format(&a, buf, sizeof(buf));
    assert_true(n > 0);
    assert_string_equal(buf, "HDX-ADMIN 1\nop=break_glass\nname=alice\npatient="
                             "01020300000000000000000000000000\nexpires_us=99\n"
                             "justification=chest pain, unresponsive\n");
    assert_int_equal(hdx_admin_break_glass("alice", tok, 0, "x", &a), HDX_E_INVAL);
    assert_int_equal(a.op, 0); /* zeroed */
    assert_int_equal(hdx_admin_break_glass("alice", tok, 5, "", &a), HDX_E_INVAL);
    assert_int_equal(hdx_admin_break_glass("alice", tok, 5, "line\nbreak", &a), HDX_E_INVAL);
    assert_int_equal(hdx_admin_break_glass("a b", tok, 5, "x", &a), HDX_E_INVAL);
    assert_int_equal(hdx_admin_break_glass(names[5], tok, 5, "x", &a), HDX_E_INVAL);
    longj[HDX_JUSTIFICATION_MAX] = 'j'; /* 501 */
    assert_int_equal(hdx_admin_break_glass("alice", tok, 5, longj, &a), HDX_E_INVAL);
}

/* The policy statement op for (name, patient token TOK or TOK2), its other fields set. */
static struct hdx_admin pstmt(enum hdx_admin_op op, const char *name, int second)
{
    struct hdx_admin a = {.op = op, .expires_us = 5000, .granted_us = 300};
    snprintf(a.name, sizeof(a.name), "%s", name);
    assert_int_equal(hdx_unhex(second ? TOK2 : TOK, a.patient, HDX_BLIND_LEN), 0);
    snprintf(a.justification, sizeof(a.justification), "why %s", name);
    snprintf(a.reviewer, sizeof(a.reviewer), "bob");
    return a;
}

struct collected {
    struct hdx_careteam ct[8];
    struct hdx_consent cs[8];
    struct hdx_break_glass bg[8];
    size_t nct, ncs, nbg;
};

static int got_ct(void *arg, const struct hdx_careteam *c, int bad)
{
    struct collected *k = arg;
    assert_false(bad);
    assert_true(k->nct < 8);
    k->ct[k->nct++] = *c;
    return 0;
}

static int got_cs(void *arg, const struct hdx_consent *c, int bad)
{
    struct collected *k = arg;
    assert_false(bad);
    assert_true(k->ncs < 8);
    k->cs[k->ncs++] = *c;
    return 0;
}

static int got_bg(void *arg, const struct hdx_break_glass *g, int bad)
{
    struct collected *k = arg;
    assert_false(bad);
    assert_true(k->nbg < 8);
    k->bg[k->nbg++] = *g;
    return 0;
}

static void test_policy_registry_and_store(void **state)
{
    struct hdx_registry r = {0};
    struct hdx_store *s = NULL;
    char cmd[320];
    assert_int_equal(hdx_mkdtemp("hdx-admin-p-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    struct hdx_admin seq[24];
    int64_t t[24];
    size_t n = 0;
#define PUSH(stmt_, time_) (seq[n] = (stmt_), t[n++] = (time_))
    PUSH(pstmt(HDX_ADMIN_CARETEAM_ADD, "alice", 0), 100); /* no such user yet: nothing */
    PUSH(pstmt(HDX_ADMIN_BREAK_GLASS, "alice", 0), 101);  /* nor a grant */
    PUSH(ustmt(HDX_ADMIN_USER_ADD, "alice"), 102);
    PUSH(ustmt(HDX_ADMIN_USER_ADD, "bob"), 103);
    PUSH(pstmt(HDX_ADMIN_CARETEAM_ADD, "alice", 0), 110);
    PUSH(pstmt(HDX_ADMIN_CARETEAM_ADD, "alice", 1), 111);
    PUSH(pstmt(HDX_ADMIN_CARETEAM_ADD, "alice", 0), 112); /* again: one row */
    PUSH(pstmt(HDX_ADMIN_CARETEAM_ADD, "bob", 1), 113);
    PUSH(pstmt(HDX_ADMIN_CARETEAM_REMOVE, "alice", 1), 114);
    PUSH(pstmt(HDX_ADMIN_CARETEAM_REMOVE, "carol", 1), 115); /* absent: nothing */
    struct hdx_admin c = pstmt(HDX_ADMIN_CONSENT_DENY, "", 0);
    strcpy(c.purpose, "research");
    PUSH(c, 120);
    c.purpose[0] = 0;
    strcpy(c.role, "nurse");
    PUSH(c, 121);
    PUSH(c, 122); /* again: one row */
    c = pstmt(HDX_ADMIN_CONSENT_DENY, "", 1);
    strcpy(c.purpose, "payment");
    PUSH(c, 123);
    c = pstmt(HDX_ADMIN_CONSENT_REMOVE, "", 0);
    strcpy(c.purpose, "research");
    PUSH(c, 124);
    PUSH(pstmt(HDX_ADMIN_BREAK_GLASS, "alice", 0), 300);
    PUSH(pstmt(HDX_ADMIN_BREAK_GLASS, "alice", 1), 301);
    struct hdx_admin rv = pstmt(HDX_ADMIN_BREAK_GLASS_REVIEW, "alice", 0);
    strcpy(rv.reviewer, "carol"); /* no such reviewer: nothing */
    PUSH(rv, 400);
    rv.granted_us = 299; /* no such grant: nothing */
    strcpy(rv.reviewer, "bob");
    PUSH(rv, 401);
    rv.granted_us = 300;
    PUSH(rv, 402); /* reviewed */
    strcpy(rv.name, "bob");
    strcpy(rv.reviewer, "alice"); /* bob holds no grant at 300 */
    PUSH(rv, 403);
    rv = pstmt(HDX_ADMIN_BREAK_GLASS_REVIEW, "alice", 0);
    PUSH(rv, 404); /* reviewed once: the first review stands */
#undef PUSH
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hdx_registry_apply(&r, &seq[i], t[i]), HDX_OK);
        enqueue_commit(s, &seq[i], t[i]);
    }
    /* the replay */
    assert_int_equal(r.nct, 2);
    assert_string_equal(r.ct[0].user, "alice");
    assert_string_equal(r.ct[1].user, "bob");
    assert_int_equal(r.ct[1].patient[0], 0xff);
    assert_int_equal(r.ncs, 2);
    assert_int_equal(r.cs[0].patient[0], 0x00); /* sorted by patient */
    assert_string_equal(r.cs[0].role, "nurse");
    assert_string_equal(r.cs[1].purpose, "payment");
    assert_int_equal(r.nbg, 2);
    assert_int_equal(r.bg[0].granted_us, 300);
    assert_int_equal(r.bg[0].expires_us, 5000);
    assert_string_equal(r.bg[0].justification, "why alice");
    assert_string_equal(r.bg[0].reviewed_by, "bob");
    assert_int_equal(r.bg[0].reviewed_us, 402);
    assert_int_equal(r.bg[1].granted_us, 301);
    assert_string_equal(r.bg[1].reviewed_by, "");
    struct hdx_careteam key = {.user = "alice"};
    assert_int_equal(hdx_unhex(TOK, key.patient, HDX_BLIND_LEN), 0);
    assert_non_null(hdx_registry_careteam(&r, &key));
    strcpy(key.user, "bob");
    assert_null(hdx_registry_careteam(&r, &key));
    struct hdx_break_glass gk = r.bg[1];
    assert_ptr_equal(hdx_registry_break_glass(&r, &gk), &r.bg[1]);
    gk.granted_us++;
    assert_null(hdx_registry_break_glass(&r, &gk));
    /* the tables are the same replay, row for row, in the same order */
    struct collected k = {0};
    assert_int_equal(hdx_store_careteams_list(s, NULL, got_ct, &k), HDX_OK);
    assert_int_equal(hdx_store_consents_list(s, NULL, got_cs, &k), HDX_OK);
    assert_int_equal(hdx_store_break_glass_list(s, got_bg, &k), HDX_OK);
    assert_int_equal(k.nct, r.nct);
    assert_int_equal(k.ncs, r.ncs);
    assert_int_equal(k.nbg, r.nbg);
    for (size_t i = 0; i < r.nct; i++)
        assert_non_null(hdx_registry_careteam(&r, &k.ct[i]));
    for (size_t i = 0; i < r.ncs; i++)
        assert_ptr_equal(hdx_registry_consent(&r, &k.cs[i]), &r.cs[i]);
    for (size_t i = 0; i < r.nbg; i++) {
        const struct hdx_break_glass *g = hdx_registry_break_glass(&r, &k.bg[i]);
        assert_ptr_equal(g, &r.bg[i]);
        assert_int_equal(k.bg[i].expires_us, g->expires_us);
        assert_string_equal(k.bg[i].justification, g->justification);
        assert_string_equal(k.bg[i].reviewed_by, g->reviewed_by);
        assert_int_equal(k.bg[i].reviewed_us, g->reviewed_us);
    }
    /* the filtered lists and the one-grant read */
    memset(&k, 0, sizeof(k));
    assert_int_equal(hdx_store_careteams_list(s, "bob", got_ct, &k), HDX_OK);
    assert_int_equal(k.nct, 1);
    assert_int_equal(hdx_store_consents_list(s, r.cs[1].patient, got_cs, &k), HDX_OK);
    assert_int_equal(k.ncs, 1);
    assert_string_equal(k.cs[0].purpose, "payment");
    struct hdx_break_glass got;
    assert_int_equal(hdx_store_break_glass_get(s, &r.bg[0], &got), HDX_OK);
    assert_string_equal(got.reviewed_by, "bob");
    assert_int_equal(hdx_store_break_glass_get(s, &gk, &got), HDX_E_NOTFOUND);
    assert_int_equal(hdx_store_user_exists(s, "alice"), 1);
    assert_int_equal(hdx_store_user_exists(s, "carol"), 0);
    hdx_registry_free(&r);
    hdx_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---- device_scope ---- */

#define SCOPE_TOK "00112233445566778899aabbccddeeff"

static int scope_rows(void *arg, const struct hdx_device_scope *d, int bad)
{
    struct hdx_registry *want = arg;
    const struct hdx_device_scope *w = hdx_registry_scope(want, d->name);
    assert_false(bad);
    assert_non_null(w);
    assert_string_equal(w->scope, d->scope);
    assert_int_equal(w->set_us, d->set_us);
    want->n++; /* counts the rows seen (n is the devices half, unused here) */
    return 0;
}

static int listed_devices(void *arg, const struct hdx_device *d, const struct hdx_device_scope *sc,
                          int bad)
{
    char *out = arg;
    size_t off = strlen(out);
    snprintf(out + off, 256 - off, "%s:%s;", d->name, sc ? sc->scope : "-");
    return bad;
}

static void test_scope_bodies_registry_and_store(void **state)
{
    const char *body = "HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=type=ORU^R01 "
                       "sender=ward3-*\n";
    struct hdx_admin a;
    char out[HDX_ADMIN_BODY_MAX + 1], cmd[320];
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), &a), HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_DEVICE_SCOPE);
    assert_true(a.has_scope);
    assert_string_equal(a.scope, "type=ORU^R01 sender=ward3-*");
    assert_false(hdx_admin_is_policy_op(a.op));
    assert_false(hdx_admin_is_user_op(a.op));
    assert_string_equal(hdx_admin_type(a.op), "admin/device_scope");
    assert_int_equal(hdx_admin_format(&a, out, sizeof(out)), (int)strlen(body));
    assert_string_equal(out, body);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=\n"), HDX_OK);
    /* only the canonical text: unsorted, unknown key, operator patient, double space */
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=type=B,A\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=ward=3\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=patient=P-1\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\nscope=type=A  "
                           "sender=b\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=sub-1\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=device_scope\nname=bad name\nscope=\n"), HDX_E_INVAL);
    /* the longest scope (HDX_DEVICE_SCOPE_MAX bytes) with the longest name fits a body */
    struct hdx_admin big = {.op = HDX_ADMIN_DEVICE_SCOPE, .has_scope = 1};
    memset(big.name, 'n', 64);
    size_t off = (size_t)snprintf(big.scope, sizeof(big.scope), "type=%029d sender=", 0);
    for (int i = 0; i < 23; i++)
        off += (size_t)snprintf(big.scope + off, sizeof(big.scope) - off, "%ss%02d%061d",
                                i ? "," : "", i, 0);
    assert_int_equal(off, HDX_DEVICE_SCOPE_MAX);
    int blen = hdx_admin_format(&big, out, sizeof(out));
    assert_true(blen > 0 && blen <= HDX_ADMIN_BODY_MAX);
    assert_int_equal(hdx_admin_parse((const uint8_t *)out, (size_t)blen, &a), HDX_OK);
    assert_string_equal(a.scope, big.scope);

    /* registry and store: set, replace, remove, for a name with or without a device */
    struct hdx_registry r = {0};
    struct hdx_store *s = NULL;
    assert_int_equal(hdx_mkdtemp("hdx-admin-s-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    struct hdx_admin seq[8];
    int64_t t[8];
    size_t n = 0;
    struct hdx_admin sc = {.op = HDX_ADMIN_DEVICE_SCOPE, .has_scope = 1};
    strcpy(sc.name, "sub-1");
    strcpy(sc.scope, "type=ORU^R01");
    seq[n] = sc; /* before its device_add */
    t[n++] = 10;
    seq[n] = stmt(HDX_ADMIN_DEVICE_ADD, "sub-1", "ab");
    strcpy(seq[n].role, "subscriber");
    t[n++] = 11;
    strcpy(sc.name, "sub-2");
    strcpy(sc.scope, "patient=" SCOPE_TOK);
    seq[n] = sc;
    t[n++] = 12;
    strcpy(sc.scope, "sender=ward3-*"); /* replaced */
    seq[n] = sc;
    t[n++] = 13;
    strcpy(sc.name, "sub-3");
    seq[n] = sc;
    t[n++] = 14;
    sc.has_scope = 0; /* removed */
    sc.scope[0] = 0;
    seq[n] = sc;
    t[n++] = 15;
    strcpy(sc.name, "sub-4"); /* removing what is not there */
    seq[n] = sc;
    t[n++] = 16;
    seq[n] = stmt(HDX_ADMIN_DEVICE_ADD, "sub-3", "cd");
    t[n++] = 17;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hdx_registry_apply(&r, &seq[i], t[i]), HDX_OK);
        enqueue_commit(s, &seq[i], t[i]);
    }
    assert_int_equal(r.nsc, 2);
    assert_string_equal(r.sc[0].name, "sub-1");
    assert_string_equal(r.sc[0].scope, "type=ORU^R01");
    assert_int_equal(r.sc[0].set_us, 10);
    assert_string_equal(r.sc[1].name, "sub-2");
    assert_string_equal(r.sc[1].scope, "sender=ward3-*");
    assert_int_equal(r.sc[1].set_us, 13);
    assert_null(hdx_registry_scope(&r, "sub-3"));
    assert_int_equal(r.n, 2); /* the devices: the scope statements made none */
    struct hdx_device_scope got;
    assert_int_equal(hdx_store_device_scope_get(s, "sub-2", &got), HDX_OK);
    assert_string_equal(got.scope, "sender=ward3-*");
    assert_int_equal(hdx_store_device_scope_get(s, "sub-3", &got), HDX_E_NOTFOUND);
    struct hdx_registry seen = r;
    seen.n = 0;
    assert_int_equal(hdx_store_scope_rows_list(s, scope_rows, &seen), HDX_OK);
    assert_int_equal(seen.n, 2);
    char listed[256] = "";
    assert_int_equal(hdx_store_device_scopes_list(s, listed_devices, listed), HDX_OK);
    assert_string_equal(listed, "sub-1:type=ORU^R01;sub-3:-;"); /* sub-2 has no device */
    hdx_registry_free(&r);
    hdx_store_close(s);
    /* a row nobody could have written is damaged, not "no scope" */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE device_scopes SET scope='type=A'||char(0) WHERE name='sub-1'",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_RDONLY, &s), HDX_OK);
    assert_int_equal(hdx_store_device_scope_get(s, "sub-1", &got), HDX_E_INTEGRITY);
    hdx_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---- SMART Backend Services clients ---- */

/* tests/data/jwt/ec-jwks.json: one public P-384 key (PyJWT made it) */
#define EC_JWKS                                                                                    \
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":"                                          \
    "\"ruRlAPzn6TS4HUgZApcTHdXcMw1Kl4DCAuWF8SsG"                                                   \
    "m0LZTIEbMDVF6qY6B62RWuaZ\",\"y\":\"GXtI5CkdOqsds--"                                           \
    "yjjc11iN4a7T5xZbPEVsBpjvrHKbLebZ0DAV1873NPR"                                                  \
    "jyr1js\",\"kid\":\"interop-ec\"}]}"
#define EC_KEY_BODY                                                                                \
    "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":"                                                     \
    "\"ruRlAPzn6TS4HUgZApcTHdXcMw1Kl4DCAuWF8SsGm0LZTIEbMDV"                                        \
    "F6qY6B62RWuaZ\",\"y\":\"GXtI5CkdOqsds--yjjc11iN4a7T5xZbPEVsBpjvrHKbLebZ0DAV1873NPRjyr1js\""
#define CSCOPE "system/Observation.rs system/Patient.r"

/* The unpadded base64url of n bytes of doc (malloc'd). */
static char *b64u(const void *doc, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    assert_non_null(out);
    sodium_bin2base64(out, cap, doc, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* "HDX-ADMIN 1\nop=client_add\nname=NAME\njwks=B64\nscope=SCOPE\ncreated_us=17\n" with the
 * JWK Set's base64url replaced by b64 when it is not NULL (malloc'd). */
static char *client_add_body(const char *name, const char *doc, const char *b64, const char *scope)
{
    char *enc = b64 ? NULL : b64u(doc, strlen(doc));
    size_t cap = strlen(b64 ? b64 : enc) + strlen(scope) + 256;
    char *body = malloc(cap);
    assert_non_null(body);
    snprintf(body, cap, "HDX-ADMIN 1\nop=client_add\nname=%s\njwks=%s\nscope=%s\ncreated_us=17\n",
             name, b64 ? b64 : enc, scope);
    free(enc);
    return body;
}

static int parse_free(char *body)
{
    int rc = parse(body);
    free(body);
    return rc;
}

/* {"keys":[an RSA public key of bits bits]} (malloc'd). */
static char *rsa_jwks(unsigned bits)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    BIGNUM *n = NULL, *e = NULL;
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    uint8_t nb[1024], eb[16];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char *ns = b64u(nb, (size_t)nl), *es = b64u(eb, (size_t)el), *out = malloc(4096);
    snprintf(out, 4096, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}]}", ns, es);
    free(ns);
    free(es);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(k);
    return out;
}

static void test_client_bodies_roundtrip(void **state)
{
    struct hdx_admin *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    char *out = malloc(HDX_ADMIN_BODY_MAX + 1),
         *body = client_add_body("lab-feed", EC_JWKS, NULL, CSCOPE);
    assert_int_equal(hdx_admin_parse((const uint8_t *)body, strlen(body), a), HDX_OK);
    assert_int_equal(a->op, HDX_ADMIN_CLIENT_ADD);
    assert_true(hdx_admin_is_client_op(a->op));
    assert_false(hdx_admin_is_user_op(a->op) || hdx_admin_is_policy_op(a->op) ||
                 hdx_admin_is_route_op(a->op));
    assert_string_equal(a->name, "lab-feed");
    assert_int_equal(a->jwks_len, strlen(EC_JWKS));
    assert_memory_equal(a->jwks, EC_JWKS, strlen(EC_JWKS)); /* the document's bytes */
    assert_string_equal(a->smart_scope, CSCOPE);
    assert_int_equal(a->created_us, 17);
    assert_string_equal(hdx_admin_type(a->op), "admin/client_add");
    assert_int_equal(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1), (int)strlen(body));
    assert_string_equal(out, body);                          /* canonical */
    assert_true(hdx_admin_format(a, out, strlen(body)) < 0); /* one byte short of its NUL */
    free(body);
    static const char *const others[] = {
        "HDX-ADMIN 1\nop=client_scope\nname=lab-feed\nscope=system/*.rs\n",
        ("HDX-ADMIN 1\nop=client_scope\nname=lab-feed\nscope=patient/Observation.cruds "
         "user/Patient.r system/Encounter.s\nby=local:root\n"),
        "HDX-ADMIN 1\nop=client_revoke\nname=lab-feed\nrevoked_us=99\n",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_int_equal(hdx_admin_parse((const uint8_t *)others[i], strlen(others[i]), b), HDX_OK);
        assert_true(hdx_admin_is_client_op(b->op));
        assert_int_equal(hdx_admin_format(b, out, HDX_ADMIN_BODY_MAX + 1), (int)strlen(others[i]));
        assert_string_equal(out, others[i]);
    }
    assert_string_equal(hdx_admin_type(HDX_ADMIN_CLIENT_SCOPE), "admin/client_scope");
    assert_string_equal(hdx_admin_type(HDX_ADMIN_CLIENT_REVOKE), "admin/client_revoke");
    assert_int_equal(b->revoked_us, 99);
    /* the RSA interop key (3072 bits, key_ops) too */
    char rsa[1024];
    FILE *f = NULL;
    const char *data = getenv("HDX_TEST_DATA");
    if (data) {
        snprintf(rsa, sizeof(rsa), "%s/jwt/rsa-jwks.json", data);
        f = fopen(rsa, "r");
    }
    if (f) {
        size_t n = fread(rsa, 1, sizeof(rsa) - 1, f);
        fclose(f);
        rsa[n] = 0;
        assert_int_equal(parse_free(client_add_body("rsa", rsa, NULL, "system/Patient.r")), HDX_OK);
    }
    /* the largest statement: a 64-character name, an 8,192-byte JWK Set, the longest canonical
     * scope (32 terms of a 64-letter type and cruds) and the longest actor fit a body */
    memset(a, 0, sizeof(*a));
    a->op = HDX_ADMIN_CLIENT_ADD;
    memset(a->name, 'n', 64);
    a->created_us = INT64_MAX;
    memset(a->jwks, ' ', HDX_SMART_JWKS_MAX); /* JSON allows the whitespace */
    memcpy(a->jwks, EC_JWKS, strlen(EC_JWKS));
    a->jwks_len = HDX_SMART_JWKS_MAX;
    size_t off = 0;
    for (int i = 0; i < 32; i++) {
        char type[65];
        memset(type, 'a', 64);
        type[0] = 'A';
        type[62] = (char)('a' + i / 26);
        type[63] = (char)('a' + i % 26);
        type[64] = 0;
        off += (size_t)snprintf(a->smart_scope + off, sizeof(a->smart_scope) - off,
                                "%spatient/%s.cruds", i ? " " : "", type);
    }
    assert_int_equal(off, 32 * 78 + 31);
    memcpy(a->by, "local:", 6);
    memset(a->by + 6, 'b', 84);
    int n = hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1);
    assert_true(n > 13000 && n <= HDX_ADMIN_BODY_MAX);
    assert_int_equal(hdx_admin_parse((const uint8_t *)out, (size_t)n, b), HDX_OK);
    assert_int_equal(b->jwks_len, HDX_SMART_JWKS_MAX);
    assert_string_equal(b->smart_scope, a->smart_scope);
    /* one byte more is no statement */
    a->jwks_len = HDX_SMART_JWKS_MAX + 1;
    assert_true(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1) < 0);
    char *big = malloc(HDX_SMART_JWKS_MAX + 2);
    memset(big, ' ', HDX_SMART_JWKS_MAX + 1);
    memcpy(big, EC_JWKS, strlen(EC_JWKS));
    big[HDX_SMART_JWKS_MAX + 1] = 0;
    assert_int_equal(parse_free(client_add_body("m", big, NULL, CSCOPE)), HDX_E_INVAL);
    free(big);
    free(out);
    free(a);
    free(b);
}

/* Every way a client statement is refused. */
static void test_client_refusals(void **state)
{
    char *enc = b64u(EC_JWKS, strlen(EC_JWKS)), bad[2048];
    size_t n = strlen(enc);
    assert_true(n < sizeof(bad) - 8);
    assert_int_equal(parse_free(client_add_body("m", EC_JWKS, NULL, CSCOPE)), HDX_OK);
    /* bad base64url: padding, the base64 alphabet, a space, a cut, trailing bits, empty */
    snprintf(bad, sizeof(bad), "%s=", enc);
    assert_int_equal(parse_free(client_add_body("m", NULL, bad, CSCOPE)), HDX_E_INVAL);
    for (const char *c = "+/"; *c; c++) { /* the base64 alphabet's two others */
        snprintf(bad, sizeof(bad), "%s", enc);
        bad[10] = *c;
        assert_int_equal(parse_free(client_add_body("m", NULL, bad, CSCOPE)), HDX_E_INVAL);
    }
    snprintf(bad, sizeof(bad), "%.20s %s", enc, enc + 20);
    assert_int_equal(parse_free(client_add_body("m", NULL, bad, CSCOPE)), HDX_E_INVAL);
    snprintf(bad, sizeof(bad), "%.*s", (int)(n - 1), enc); /* not the same document */
    assert_int_equal(parse_free(client_add_body("m", NULL, bad, CSCOPE)), HDX_E_INVAL);
    /* 199 bytes (with a newline): the last character carries 4 bits that must be zero */
    static const char nl[] = EC_JWKS "\n";
    assert_int_equal((sizeof(nl) - 1) % 3, 1);
    assert_int_equal(parse_free(client_add_body("m", nl, NULL, CSCOPE)), HDX_OK);
    char *enc2 = b64u(nl, sizeof(nl) - 1);
    size_t n2 = strlen(enc2);
    enc2[n2 - 1] = (char)(enc2[n2 - 1] + 1); /* 'A', 'Q', 'g' or 'w' before: one bit set */
    assert_int_equal(parse_free(client_add_body("m", NULL, enc2, CSCOPE)), HDX_E_INVAL);
    free(enc2);
    assert_int_equal(parse_free(client_add_body("m", NULL, "", CSCOPE)), HDX_E_INVAL);
    assert_int_equal(parse_free(client_add_body("m", NULL, "A", CSCOPE)), HDX_E_INVAL);
    /* a JWK Set hdx_jwks_parse refuses: not JSON, no keys, a private key, RSA 1024, P-256 */
    assert_int_equal(parse_free(client_add_body("m", "not json", NULL, CSCOPE)), HDX_E_INVAL);
    assert_int_equal(parse_free(client_add_body("m", "{\"keys\":[]}", NULL, CSCOPE)), HDX_E_INVAL);
    assert_int_equal(parse_free(client_add_body("m", "{\"keys\":[" EC_KEY_BODY ",\"d\":\"AAAA\"}]}",
                                                NULL, CSCOPE)),
                     HDX_E_INVAL);
    assert_int_equal(
        parse_free(client_add_body("m", "{\"keys\":[" EC_KEY_BODY "}]}", NULL, CSCOPE)),
        HDX_OK); /* the same key without d */
    char *small = rsa_jwks(1024), *ok = rsa_jwks(2048);
    assert_int_equal(parse_free(client_add_body("m", small, NULL, CSCOPE)), HDX_E_INVAL);
    assert_int_equal(parse_free(client_add_body("m", ok, NULL, CSCOPE)), HDX_OK);
    free(small);
    free(ok);
    /* bad scopes: empty, out of the grammar, letters out of order, two spaces */
    static const char *const scopes[] = {
        "", "openid", "system/Observation.xx", "system/Observation.rs?category=vital-signs",
        "system/Observation.sr", "system/Observation.rs  system/Patient.r", " system/Patient.r",
        "launch/patient",
        /* non-canonical: each parses, none is its own format */
        "system/Patient.r system/Observation.rs", "system/Patient.read", "system/Patient.*",
        "system/Patient.r system/Patient.s", "system/Observation.rs patient/Observation.r"};
    for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
        assert_int_equal(parse_free(client_add_body("m", EC_JWKS, NULL, scopes[i])), HDX_E_INVAL);
        snprintf(bad, sizeof(bad), "HDX-ADMIN 1\nop=client_scope\nname=m\nscope=%s\n", scopes[i]);
        assert_int_equal(parse(bad), HDX_E_INVAL);
    }
    /* bad names; unknown, missing, reordered and repeated keys; times */
    assert_int_equal(parse_free(client_add_body("bad name", EC_JWKS, NULL, CSCOPE)), HDX_E_INVAL);
    assert_int_equal(parse_free(client_add_body("-m", EC_JWKS, NULL, CSCOPE)), HDX_E_INVAL);
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\nkid=a\njwks=%s\nscope=" CSCOPE
             "\ncreated_us=17\n",
             enc);
    assert_int_equal(parse(bad), HDX_E_INVAL);
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\njwks=%s\nscope=" CSCOPE
             "\ncreated_us=17\nrevoked_us=0\n",
             enc);
    assert_int_equal(parse(bad), HDX_E_INVAL);
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\nscope=" CSCOPE "\njwks=%s\ncreated_us=17\n", enc);
    assert_int_equal(parse(bad), HDX_E_INVAL); /* reordered */
    snprintf(bad, sizeof(bad), "HDX-ADMIN 1\nop=client_add\nname=m\njwks=%s\ncreated_us=17\n", enc);
    assert_int_equal(parse(bad), HDX_E_INVAL); /* no scope */
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\njwks=%s\njwks=%s\nscope=" CSCOPE
             "\ncreated_us=17\n",
             enc, enc);
    assert_int_equal(parse(bad), HDX_E_INVAL);
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\njwks=%s\nscope=" CSCOPE "\ncreated_us=0\n", enc);
    assert_int_equal(parse(bad), HDX_E_INVAL);
    snprintf(bad, sizeof(bad),
             "HDX-ADMIN 1\nop=client_add\nname=m\njwks=%s\r\nscope=" CSCOPE "\ncreated_us=17\n",
             enc);
    assert_int_equal(parse(bad), HDX_E_INVAL); /* CR */
    assert_int_equal(parse("HDX-ADMIN 1\nop=client_scope\nname=m\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=client_scope\nscope=system/Patient.r\nname=m\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=client_revoke\nname=m\nrevoked_us=0\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=client_revoke\nname=m\nrevoked_us=1\nscope=\n"),
                     HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=client_revoke\nname=m\n"), HDX_E_INVAL);
    /* only what parses is written */
    struct hdx_admin *a = calloc(1, sizeof(*a));
    char *out = malloc(HDX_ADMIN_BODY_MAX + 1);
    a->op = HDX_ADMIN_CLIENT_ADD;
    strcpy(a->name, "m");
    a->created_us = 1;
    strcpy(a->smart_scope, CSCOPE);
    assert_true(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1) < 0); /* no JWK Set */
    memcpy(a->jwks, "{\"keys\":[]}", 11);
    a->jwks_len = 11;
    assert_true(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1) < 0);
    memcpy(a->jwks, EC_JWKS, strlen(EC_JWKS));
    a->jwks_len = strlen(EC_JWKS);
    assert_true(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1) > 0);
    strcpy(a->smart_scope, "system/Patient.read");
    assert_true(hdx_admin_format(a, out, HDX_ADMIN_BODY_MAX + 1) < 0);
    free(out);
    free(a);
    free(enc);
}

static struct hdx_admin *cstmt(enum hdx_admin_op op, const char *name, const char *doc,
                               const char *scope, int64_t t)
{
    struct hdx_admin *a = calloc(1, sizeof(*a));
    a->op = op;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (doc) {
        a->jwks_len = strlen(doc);
        memcpy(a->jwks, doc, a->jwks_len);
    }
    if (scope) snprintf(a->smart_scope, sizeof(a->smart_scope), "%s", scope);
    a->created_us = a->revoked_us = t;
    return a;
}

static int client_rows(void *arg, const struct hdx_smart_client *c, int bad)
{
    struct hdx_registry *want = arg;
    const struct hdx_smart_client *w = hdx_registry_client(want, c->name);
    assert_false(bad);
    assert_non_null(w);
    assert_int_equal(w->jwks_len, c->jwks_len);
    assert_memory_equal(w->jwks, c->jwks, c->jwks_len);
    assert_string_equal(w->scope, c->scope);
    assert_int_equal(w->created_us, c->created_us);
    assert_int_equal(w->revoked_us, c->revoked_us);
    want->n++; /* counts the rows seen */
    return 0;
}

static int count_clients(void *arg, const struct hdx_smart_client *c)
{
    (*(int *)arg)++;
    return 0;
}

/* The apply: add, scope and revoke only an active client; add again only after a revoke. */
static void test_client_registry_and_store(void **state)
{
    char *rsa = rsa_jwks(2048), cmd[320];
    struct hdx_registry r = {0};
    struct hdx_store *s = NULL;
    struct hdx_admin *seq[16];
    size_t n = 0;
    assert_int_equal(hdx_mkdtemp("hdx-admin-c-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_SCOPE, "ghost", NULL, "system/Patient.r", 0); /* nothing */
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_REVOKE, "ghost", NULL, NULL, 5);              /* nothing */
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_ADD, "lab", EC_JWKS, CSCOPE, 10);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_ADD, "lab", rsa, "system/*.cruds", 11); /* active: kept */
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_SCOPE, "lab", NULL, "system/Observation.r", 0);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_ADD, "feed", rsa, "system/Patient.rs", 12);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_REVOKE, "feed", NULL, NULL, 20);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_REVOKE, "feed", NULL, NULL, 21); /* the first time stays */
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_SCOPE, "feed", NULL, "system/*.cruds", 0); /* revoked */
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_ADD, "old", rsa, "system/Patient.r", 13);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_REVOKE, "old", NULL, NULL, 22);
    seq[n++] = cstmt(HDX_ADMIN_CLIENT_ADD, "old", EC_JWKS, "user/Patient.r", 30); /* again */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hdx_registry_apply(&r, seq[i], 1000 + (int64_t)i), HDX_OK);
        enqueue_commit(s, seq[i], 1000 + (int64_t)i);
    }
    assert_int_equal(r.ncl, 3);
    assert_string_equal(r.cl[0].name, "feed"); /* sorted */
    const struct hdx_smart_client *lab = hdx_registry_client(&r, "lab");
    assert_non_null(lab);
    assert_int_equal(lab->jwks_len, strlen(EC_JWKS));
    assert_memory_equal(lab->jwks, EC_JWKS, lab->jwks_len);
    assert_string_equal(lab->scope, "system/Observation.r");
    assert_int_equal(lab->created_us, 10);
    assert_int_equal(lab->revoked_us, 0);
    const struct hdx_smart_client *feed = hdx_registry_client(&r, "feed");
    assert_int_equal(feed->revoked_us, 20);
    assert_string_equal(feed->scope, "system/Patient.rs");
    const struct hdx_smart_client *old = hdx_registry_client(&r, "old");
    assert_int_equal(old->revoked_us, 0);
    assert_int_equal(old->created_us, 30);
    assert_string_equal(old->scope, "user/Patient.r");
    assert_memory_equal(old->jwks, EC_JWKS, old->jwks_len);
    assert_null(hdx_registry_client(&r, "ghost"));
    assert_int_equal(r.n + r.nu + r.nsc + r.nct + r.ncs + r.nbg, 0); /* nothing else */
    /* the table is the same replay */
    struct hdx_smart_client got;
    assert_int_equal(hdx_store_client_get(s, "lab", &got), HDX_OK);
    assert_string_equal(got.scope, "system/Observation.r");
    assert_memory_equal(got.jwks, EC_JWKS, got.jwks_len);
    hdx_smart_client_clear(&got);
    assert_null(got.jwks);
    assert_int_equal(hdx_store_client_get(s, "ghost", &got), HDX_E_NOTFOUND);
    struct hdx_registry seen = r;
    seen.n = 0;
    assert_int_equal(hdx_store_client_rows_list(s, client_rows, &seen), HDX_OK);
    assert_int_equal(seen.n, 3);
    int count = 0;
    assert_int_equal(hdx_store_clients_list(s, count_clients, &count), HDX_OK);
    assert_int_equal(count, 3);
    hdx_registry_free(&r);
    hdx_store_close(s);
    for (size_t i = 0; i < n; i++)
        free(seq[i]);
    free(rsa);
    /* rows no statement could have made are damaged, not "no client" */
    static const char *const damage[] = {
        "UPDATE smart_clients SET jwks=x'' WHERE name='lab'",
        "UPDATE smart_clients SET jwks='text' WHERE name='lab'",
        "UPDATE smart_clients SET scope='' WHERE name='lab'",
        "UPDATE smart_clients SET scope='system/Patient.r'||char(0) WHERE name='lab'",
        "UPDATE smart_clients SET jwks=zeroblob(8193) WHERE name='lab'",
        "UPDATE smart_clients SET created_us=0 WHERE name='lab'",
    };
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
        int rc = sqlite3_exec(db, damage[i], NULL, NULL, NULL);
        sqlite3_close(db);
        if (rc != SQLITE_OK) continue; /* STRICT refused the type: nobody can store it */
        assert_int_equal(hdx_store_open(dbpath, 0, &s), HDX_OK);
        assert_int_equal(hdx_store_client_get(s, "lab", &got), HDX_E_INTEGRITY);
        assert_null(got.jwks);
        count = 0;
        assert_int_equal(hdx_store_clients_list(s, count_clients, &count), HDX_E_INTEGRITY);
        assert_int_equal(count, 2); /* the others still */
        hdx_store_close(s);
        /* put the row back for the next case */
        assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
        char fix[256];
        snprintf(fix, sizeof(fix),
                 "UPDATE smart_clients SET jwks=(SELECT jwks FROM smart_clients WHERE "
                 "name='old'), scope='system/Observation.r', created_us=10 WHERE name='lab'");
        assert_int_equal(sqlite3_exec(db, fix, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ae_add / ae_remove: canonical bodies, refusals, and the same apply for the registry (verify's
 * replay) and the store's dicom_aes table (hdx_admin_commit). */
static void test_ae_bodies_registry_and_store(void **state)
{
    const char *add = "HDX-ADMIN 1\nop=ae_add\nname=ct-scanner\ntitle=CT 1\n";
    const char *rm = "HDX-ADMIN 1\nop=ae_remove\ntitle=CT 1\nby=local:root\n";
    struct hdx_admin a;
    char out[HDX_ADMIN_BODY_MAX + 1], cmd[320];
    assert_int_equal(hdx_admin_parse((const uint8_t *)add, strlen(add), &a), HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_AE_ADD);
    assert_string_equal(a.name, "ct-scanner");
    assert_string_equal(a.title, "CT 1");
    assert_string_equal(hdx_admin_type(a.op), "admin/ae_add");
    assert_int_equal(hdx_admin_format(&a, out, sizeof(out)), (int)strlen(add));
    assert_string_equal(out, add);
    assert_int_equal(hdx_admin_parse((const uint8_t *)rm, strlen(rm), &a), HDX_OK);
    assert_int_equal(a.op, HDX_ADMIN_AE_REMOVE);
    assert_int_equal(hdx_admin_format(&a, out, sizeof(out)), (int)strlen(rm));
    assert_string_equal(out, rm);
    /* refused titles: empty, 17 bytes, padding spaces, a backslash, a control byte */
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=ABCDEFGHIJKLMNOPQ\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=ABCDEFGHIJKLMNOP\n"), HDX_OK);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle= CT\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=CT \n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=C\\T\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_remove\ntitle=C\tT\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_add\ntitle=CT\nname=x\n"), HDX_E_INVAL); /* order */
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_add\nname=x\n"), HDX_E_INVAL);
    assert_int_equal(parse("HDX-ADMIN 1\nop=ae_add\nname=bad name\ntitle=CT\n"), HDX_E_INVAL);

    struct hdx_registry r = {0};
    struct hdx_store *s = NULL;
    struct hdx_dicom_ae row;
    assert_int_equal(hdx_mkdtemp("hdx-admin-ae-", tmpdir, sizeof(tmpdir)), 0);
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", tmpdir);
    assert_int_equal(hdx_store_open(dbpath, HDX_STORE_CREATE, &s), HDX_OK);
    const char *bodies[] = {
        "HDX-ADMIN 1\nop=ae_add\nname=ct-scanner\ntitle=CT1\n",
        "HDX-ADMIN 1\nop=ae_add\nname=mri\ntitle=MR1\n",
        "HDX-ADMIN 1\nop=ae_add\nname=mri\ntitle=CT1\n", /* replaces */
        "HDX-ADMIN 1\nop=ae_remove\ntitle=MR1\n",
        "HDX-ADMIN 1\nop=ae_remove\ntitle=NONE\n", /* nothing to remove: no change */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        const uint8_t *b = (const uint8_t *)bodies[i];
        assert_int_equal(hdx_admin_parse(b, strlen(bodies[i]), &a), HDX_OK);
        assert_int_equal(hdx_registry_apply(&r, &a, (int64_t)(100 + i)), HDX_OK);
        assert_int_equal(hdx_admin_commit(s, 0, b, strlen(bodies[i]), (int64_t)(100 + i)), HDX_OK);
    }
    assert_int_equal(r.nae, 1);
    const struct hdx_dicom_ae *want = hdx_registry_ae(&r, "CT1");
    assert_non_null(want);
    assert_string_equal(want->name, "mri");
    assert_int_equal(want->set_us, 102);
    assert_null(hdx_registry_ae(&r, "MR1"));
    assert_int_equal(hdx_store_dicom_ae_get(s, "CT1", &row), HDX_OK);
    assert_string_equal(row.name, want->name);
    assert_int_equal(row.set_us, want->set_us);
    assert_int_equal(hdx_store_dicom_ae_get(s, "MR1", &row), HDX_E_NOTFOUND);
    hdx_registry_free(&r);
    hdx_store_close(s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_bodies),
        cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_actor),
        cmocka_unit_test(test_reject_header),
        cmocka_unit_test(test_reject_unknown_op_and_key),
        cmocka_unit_test(test_reject_duplicate_reordered_missing),
        cmocka_unit_test(test_reject_trailing_and_framing),
        cmocka_unit_test(test_reject_bad_hex),
        cmocka_unit_test(test_reject_bad_name_role),
        cmocka_unit_test(test_reject_bad_numbers),
        cmocka_unit_test(test_registry_apply),
        cmocka_unit_test(test_store_apply_and_migrate),
        cmocka_unit_test(test_user_bodies_roundtrip),
        cmocka_unit_test(test_user_api_key),
        cmocka_unit_test(test_user_refusals),
        cmocka_unit_test(test_user_registry_and_store),
        cmocka_unit_test(test_policy_bodies_roundtrip),
        cmocka_unit_test(test_policy_refusals),
        cmocka_unit_test(test_policy_registry_and_store),
        cmocka_unit_test(test_scope_bodies_registry_and_store),
        cmocka_unit_test(test_client_bodies_roundtrip),
        cmocka_unit_test(test_client_refusals),
        cmocka_unit_test(test_client_registry_and_store),
        cmocka_unit_test(test_ae_bodies_registry_and_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
