/* review_bench: a store to time hdx access-review on (docs/ACCESS-REVIEW.md, "Cost").
 *
 *   review_bench DIR RECORDS [AUDIT_PERCENT]
 *
 * DIR is a data directory fresh from hdx init. Appends RECORDS records spread evenly over the
 * last 100 days: AUDIT_PERCENT % (default 5) audit records (a successful login or a permitted
 * read of one patient, by one of 1,000 users, over 10,000 patients), the rest HL7 messages
 * (random bytes, never opened by the review) from 200 devices; and puts 1,000 users (created
 * 200 days ago), 20,000 care-team rows and 200 devices straight into their tables, not
 * through admin records: hdx verify fails on such a store. It is for timing only:
 *
 *   time hdx access-review -d DIR                # the audit scan covers 90 days
 *   time hdx access-review -d DIR --dormant-days 7 --unused-days 7
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "store/record.h"
#include "store/store.h"

#define USERS 1000
#define PATIENTS 10000
#define DEVICES 200
#define CARETEAM_ROWS 20000
#define TXN_RECORDS 50000
#define DAY_US (86400LL * 1000000)

static void die(const char *what, int rc)
{
    fprintf(stderr, "review_bench: %s failed: %d (%s)\n", what, rc, hdx_strerror(rc));
    exit(1);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    char path[4096];
    struct hdx_keyring *kr = NULL;
    struct hdx_store *s = NULL;
    static uint8_t tok[PATIENTS][HDX_BLIND_LEN];
    uint8_t ct[200], chain[HDX_HASH_LEN] = {0};
    int rc;
    if (argc < 3) {
        fprintf(stderr, "usage: review_bench DIR RECORDS [AUDIT_PERCENT]\n");
        return 2;
    }
    uint64_t n = strtoull(argv[2], NULL, 10);
    unsigned pct = argc > 3 ? (unsigned)atoi(argv[3]) : 5;
    snprintf(path, sizeof(path), "%s/kek.key", argv[1]);
    if ((rc = hdx_keyring_open(path, &kr, NULL, 0))) die("kek", rc);
    snprintf(path, sizeof(path), "%s/store.db", argv[1]);
    if ((rc = hdx_store_open(path, HDX_STORE_WRITER | HDX_STORE_NOSYNC, &s))) die("store", rc);
    if ((rc = hdx_store_keys_load(s, kr))) die("keys", rc);
    int64_t now = hdx_now_us(), t0 = now - 100 * DAY_US;
    for (int i = 0; i < PATIENTS; i++) {
        char id[32];
        snprintf(id, sizeof(id), "PAT%06d", i);
        hdx_blind(kr, "patient", id, strlen(id), tok[i]);
    }
    if ((rc = hdx_store_begin(s))) die("begin", rc);
    for (int i = 0; i < USERS; i++) {
        struct hdx_user u = {.has_mfa = 1, .created_us = now - 200 * DAY_US};
        snprintf(u.name, sizeof(u.name), "user-%04d", i);
        snprintf(u.role, sizeof(u.role), "%s", i % 10 == 0 ? "auditor" : "clinician");
        snprintf(u.pw_hash, sizeof(u.pw_hash), "x");
        snprintf(u.training, sizeof(u.training), "%s", i % 7 ? "2026-11-01" : "2020-01-01");
        u.pw_changed_us = u.mfa_us = u.created_us;
        if ((rc = hdx_store_user_put(s, &u))) die("user", rc);
    }
    for (int i = 0; i < CARETEAM_ROWS; i++) {
        struct hdx_careteam c;
        snprintf(c.user, sizeof(c.user), "user-%04d", (int)(next() % USERS));
        memcpy(c.patient, tok[next() % PATIENTS], HDX_BLIND_LEN);
        if ((rc = hdx_store_careteam_set(s, &c, 1))) die("careteam", rc);
    }
    for (int i = 0; i < DEVICES; i++) {
        struct hdx_device d = {.created_us = now - 200 * DAY_US};
        snprintf(d.name, sizeof(d.name), "mon-%03d", i);
        snprintf(d.role, sizeof(d.role), "device");
        snprintf(d.serial, sizeof(d.serial), "%x", i + 1);
        if ((rc = hdx_store_device_put(s, &d))) die("device", rc);
    }
    if ((rc = hdx_store_commit(s))) die("commit", rc);
    for (uint64_t seq = 1; seq <= n; seq++) {
        struct hdx_record r = {
            .seq = seq,
            .time_us = t0 + (int64_t)((100 * DAY_US - 60000000) / (int64_t)n * (int64_t)seq)};
        if (seq % TXN_RECORDS == 1 && (rc = hdx_store_begin(s))) die("begin", rc);
        if (next() % 100 < pct) {
            char user[16], hex[2 * HDX_BLIND_LEN + 1], body[HDX_AUDIT_BODY_MAX];
            int login = next() % 4 == 0;
            const uint8_t *p = tok[next() % PATIENTS];
            snprintf(user, sizeof(user), "user-%04d", (int)(next() % USERS));
            hdx_hex(p, HDX_BLIND_LEN, hex);
            struct hdx_audit a = {.event = login ? "auth" : "access",
                                  .action = login ? "login" : "read",
                                  .outcome = login ? "success" : "permit",
                                  .principal = user,
                                  .role = "clinician",
                                  .source = "127.0.0.1",
                                  .patient = login ? NULL : p,
                                  .first_seq = 1,
                                  .last_seq = 1,
                                  .count = 1,
                                  .detail = "session=0123456789abcdef purpose=treatment"};
            int len = hdx_audit_format(&a, body, sizeof(body));
            if (len < 0) die("audit format", HDX_E_INVAL);
            r.kind = HDX_KIND_AUDIT;
            snprintf(r.sender, sizeof(r.sender), "%s", HDX_AUDIT_SENDER);
            snprintf(r.type, sizeof(r.type), "audit/%s", a.event);
            if (!login) memcpy(r.patient, p, HDX_BLIND_LEN);
            if ((rc = hdx_record_seal(&r, kr, (const uint8_t *)body, (size_t)len))) die("seal", rc);
        } else {
            r.kind = HDX_KIND_HL7V2;
            r.key_id = 1;
            snprintf(r.sender, sizeof(r.sender), "mon-%03d", (int)(next() % DEVICES));
            snprintf(r.type, sizeof(r.type), "ORU^R01");
            memcpy(r.patient, tok[next() % PATIENTS], HDX_BLIND_LEN);
            for (size_t i = 0; i < sizeof(ct); i += 8) {
                uint64_t x = next();
                memcpy(ct + i, &x, 8);
            }
            r.ct = ct;
            r.ct_len = sizeof(ct);
        }
        hdx_record_leaf_hash(&r, r.leaf_hash);
        hdx_record_chain(chain, r.leaf_hash, r.chain);
        memcpy(chain, r.chain, HDX_HASH_LEN);
        if ((rc = hdx_store_append(s, &r))) die("append", rc);
        if (r.kind == HDX_KIND_AUDIT) hdx_record_clear(&r);
        if ((seq % TXN_RECORDS == 0 || seq == n) && (rc = hdx_store_commit(s))) die("commit", rc);
    }
    hdx_store_close(s);
    hdx_keyring_free(kr);
    printf("records=%llu users=%d careteams=%d devices=%d\n", (unsigned long long)n, USERS,
           CARETEAM_ROWS, DEVICES);
    return 0;
}
