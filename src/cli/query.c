/* hdx get, hdx query: as a user through hdxd's HTTPS API (--user: authorized by the policy
 * and audited by hdxd), or reading the store directly with the data directory's key
 * (--offline, for recovery; read-only, WAL readers never block hdxd). Decrypted messages go
 * to stdout only, never to a log. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "commit/commit.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"

static const char get_usage[] =
    "usage: hdx get SEQ -d DIR --user NAME [--password-file F] [--totp CODE] [--purpose P]\n"
    "                [--to HOST:PORT] [--ca CA] [--raw]\n"
    "       hdx get SEQ -d DIR [--offline] [--raw]\n"
    "Prints the message stored as record SEQ, decrypted. Segments end in LF unless --raw,\n"
    "which writes the exact bytes received (CR-terminated segments).\n"
    "--user signs in to hdxd's HTTPS API (http.listen of DIR/hdx.conf, or --to) with the\n"
    "user's password (--password-file, else a prompt) and TOTP code (--totp, else a prompt),\n"
    "reads the record as that user (the policy decides, hdxd audits the read; a record the\n"
    "user may not read is 'not found', like one that does not exist) and logs out. --purpose\n"
    "is the purpose of use: treatment (default), payment, operations or research.\n"
    "Without --user (or with --offline) the store is read directly with the data directory's\n"
    "key-encryption key, for recovery: no policy applies, and before the message is printed\n"
    "an audit record names the operating-system account, the record and its patient (event\n"
    "access, action offline_read; committed by hdxd when it runs, else by hdx itself). A\n"
    "store that cannot take it (damaged, read-only after a log alarm) is still read, with a\n"
    "warning on stderr.\n";

static const char query_usage[] =
    "usage: hdx query -d DIR --user NAME [--password-file F] [--totp CODE] [--purpose P]\n"
    "                 [--to HOST:PORT] [--ca CA] [--patient ID] [--type T] [--sender S]\n"
    "                 [--since T] [--count]\n"
    "       hdx query -d DIR [--offline] [--patient ID] [--type T] [--sender S] [--since T]\n"
    "                 [--unverified] [--reused-ids] [--kind hl7v2|admin|audit|any]\n"
    "                 [--count|--headers]\n"
    "--user: through hdxd's HTTPS API as that user, like hdx get --user: only the messages the\n"
    "policy lets the user read are listed, and hdxd audits what was disclosed. Without it,\n"
    "the store is read directly with the data directory's key (--offline, for recovery), and\n"
    "a read that prints messages is first recorded in the audit trail, one record per patient\n"
    "(see hdx get --help). --headers prints the header lines only, each with ' control_id='\n"
    "MSH-10: no message is shown, so nothing is recorded (for scripts that find a message).\n"
    "Lists stored clinical messages (HL7 v2; --kind admin: the registry's admin records,\n"
    "--kind audit: the audit records, better read with hdx audit query; --kind any: every\n"
    "record) matching every filter given, oldest first:\n"
    "a header line '# seq=N time=ISO sender=S type=T', the message (LF-terminated segments)\n"
    "and a blank line. --patient matches PID-3 (first identifier) through the blind index;\n"
    "--since takes 2026-11-25T10:00:00Z, 2026-11-25, epoch seconds or 15m/2h/7d ago.\n"
    "--count prints only the number of matches. Messages a device stream checkpoint covered\n"
    "carry ' stream=verified checkpoint=SEQ' (or stream=unverified) on their header line;\n"
    "--unverified lists only those a refused checkpoint covered (docs/STREAM-SIGNATURES.md).\n"
    "--reused-ids lists only messages stored although an earlier, different message from the\n"
    "same sender had used their control id (MSH-10), e.g. after a device reset its counter;\n"
    "they carry ' control_id_reused=yes' (docs/HL7.md, \"Duplicates\").\n";

static void print_message(const uint8_t *pt, size_t len, int raw)
{
    if (raw) {
        fwrite(pt, 1, len, stdout);
        return;
    }
    for (size_t i = 0; i < len; i++)
        putchar(pt[i] == '\r' ? '\n' : pt[i]);
    if (len && pt[len - 1] != '\r') putchar('\n');
}

/* ---------- through hdxd (--user) ---------- */

static int get_api(const struct cli_api_opts *o, const char *purpose, unsigned long long seq,
                   int raw)
{
    struct cli_api api;
    int rc = cli_api_login("get", o, &api);
    if (rc) return rc;
    char target[128], why[512];
    snprintf(target, sizeof(target), "/api/records/%llu", seq);
    if (purpose && cli_api_param(target, sizeof(target), "purpose", purpose)) return 2;
    int status = 0;
    json_t *rec = NULL;
    rc = cli_api_get(&api, target, &status, &rec, why, sizeof(why));
    cli_api_logout(&api);
    if (rc != 0 || status != 200) {
        fprintf(stderr, "hdx get: record %llu: %s\n", seq,
                rc == 0 && status == 404 ? "not found, or not permitted to this user" : why);
        json_decref(rec);
        return 1;
    }
    rc = cli_api_record_print(rec, raw, 0);
    json_decref(rec);
    if (rc) fprintf(stderr, "hdx get: record %llu: hdxd's answer lacks a member\n", seq);
    return rc ? 1 : 0;
}

struct api_query {
    const char *patient, *type, *sender, *since, *purpose;
    int count_only;
};

/* Pages through /api/records (after=next_after) until hdxd says there is no more. */
static int query_api(const struct cli_api_opts *o, const struct api_query *q)
{
    struct cli_api api;
    int rc = cli_api_login("query", o, &api);
    if (rc) return rc;
    unsigned long long after = 0, n = 0;
    char why[512];
    for (;;) {
        char target[1024] = "/api/records", num[24];
        snprintf(num, sizeof(num), "%llu", after);
        if ((q->patient && cli_api_param(target, sizeof(target), "patient", q->patient)) ||
            (q->type && cli_api_param(target, sizeof(target), "type", q->type)) ||
            (q->sender && cli_api_param(target, sizeof(target), "sender", q->sender)) ||
            (q->since && cli_api_param(target, sizeof(target), "since", q->since)) ||
            (q->purpose && cli_api_param(target, sizeof(target), "purpose", q->purpose)) ||
            cli_api_param(target, sizeof(target), "after", num) ||
            cli_api_param(target, sizeof(target), "limit", "1000")) {
            fprintf(stderr, "hdx query: the filters are too long\n");
            rc = 2;
            break;
        }
        int status = 0;
        json_t *page = NULL;
        sodium_memzero(num, sizeof(num));
        if (cli_api_get(&api, target, &status, &page, why, sizeof(why)) != 0 || status != 200) {
            fprintf(stderr, "hdx query: %s\n", why);
            sodium_memzero(target, sizeof(target));
            rc = 1;
            break;
        }
        sodium_memzero(target, sizeof(target));
        json_t *recs = json_object_get(page, "records"), *r;
        size_t i;
        json_array_foreach(recs, i, r)
        {
            n++;
            if (!q->count_only && cli_api_record_print(r, 0, 1) != 0) rc = 1;
        }
        json_t *next = json_object_get(page, "next_after");
        after = json_is_integer(next) ? (unsigned long long)json_integer_value(next) : 0;
        json_decref(page);
        if (!after || rc) break;
    }
    cli_api_logout(&api);
    if (rc == 0 && q->count_only) printf("%llu\n", n);
    if (rc == 1) fprintf(stderr, "hdx query: stopped after %llu messages\n", n);
    return rc;
}

int cmd_get(int argc, char **argv)
{
    const char *dir = NULL, *seqs = NULL, *purpose = NULL;
    struct cli_api_opts o = {0};
    int raw = 0, offline = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--raw"))
            raw = 1;
        else if (!strcmp(argv[i], "--offline"))
            offline = 1;
        else if (!strcmp(argv[i], "--purpose"))
            purpose = cli_arg(argc, argv, &i);
        else if (cli_api_opt(argc, argv, &i, &o))
            continue;
        else if (!strcmp(argv[i], "--help")) {
            fputs(get_usage, stdout);
            return 0;
        } else if (!seqs && argv[i][0] != '-')
            seqs = argv[i];
        else {
            fputs(get_usage, stderr);
            return 2;
        }
    }
    char *end;
    unsigned long long seq = seqs ? strtoull(seqs, &end, 10) : 0;
    if (!dir || !seqs || *end || !seq || (offline && o.user) ||
        (!o.user && (o.password_file || o.totp || o.to || o.ca || purpose))) {
        fputs(get_usage, stderr);
        return 2;
    }
    o.dir = dir;
    if (o.user) return get_api(&o, purpose, seq, raw);
    struct cli_ctx ctx;
    struct hdx_record r;
    uint8_t *pt = NULL;
    size_t len = 0;
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = hdx_store_get(ctx.store, seq, &r);
    if (rc == HDX_OK) {
        rc = hdx_record_open(&r, ctx.kr, &pt, &len);
        if (rc == HDX_OK && r.kind == HDX_KIND_HL7V2) {
            static const uint8_t zero[HDX_BLIND_LEN];
            struct cli_read_tally t = {.has_patient = memcmp(r.patient, zero, HDX_BLIND_LEN) != 0,
                                       .first = seq,
                                       .last = seq,
                                       .count = 1};
            memcpy(t.patient, r.patient, HDX_BLIND_LEN);
            (void)cli_offline_audit(dir, "offline-get", &t, 1);
        }
        hdx_record_clear(&r);
    }
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx get: record %llu: %s\n", seq, hdx_strerror(rc));
        return 1;
    }
    print_message(pt, len, raw);
    sodium_memzero(pt, len);
    free(pt);
    return 0;
}

#define TALLY_SLOTS 8192 /* patients counted one by one per read; then one record for the rest */

struct query_ctx {
    struct cli_ctx *cli;
    int count_only, unverified_only, reused_only, headers_only;
    unsigned long long n;
    int failed;
    /* The first pass of a read that prints messages: what it will disclose, per patient. */
    struct cli_read_tally *slots;
};

static void tally_note(struct query_ctx *q, const struct hdx_record *r)
{
    static const uint8_t zero[HDX_BLIND_LEN];
    size_t i = 0; /* slot 0: records without a patient, and patients past a full table */
    if (memcmp(r->patient, zero, HDX_BLIND_LEN) != 0) {
        uint64_t h; /* the token is already a keyed hash */
        memcpy(&h, r->patient, sizeof(h));
        for (size_t probe = 0; probe < TALLY_SLOTS / 2; probe++) {
            size_t j = 1 + (size_t)((h + probe) % (TALLY_SLOTS - 1));
            struct cli_read_tally *t = &q->slots[j];
            if (!t->count || !memcmp(t->patient, r->patient, HDX_BLIND_LEN)) {
                i = j;
                break;
            }
        }
    }
    struct cli_read_tally *t = &q->slots[i];
    if (!t->count) {
        t->has_patient = i != 0;
        if (i) memcpy(t->patient, r->patient, HDX_BLIND_LEN);
        t->first = r->seq;
    }
    t->last = r->seq;
    t->count++;
}

/* The read's audit records (cli_offline_audit), from the tally, before anything is printed. */
static void audit_read(const char *dir, const char *route, struct query_ctx *q)
{
    size_t n = 0;
    for (size_t i = 0; i < TALLY_SLOTS; i++)
        if (q->slots[i].count) q->slots[n++] = q->slots[i];
    if (n) (void)cli_offline_audit(dir, route, q->slots, n);
    sodium_memzero(q->slots, TALLY_SLOTS * sizeof(*q->slots));
}

static int query_one(void *arg, const struct hdx_record *r)
{
    struct query_ctx *q = arg;
    char t[32];
    uint8_t *pt;
    size_t len;
    uint64_t ckpt = 0;
    int verified = 0, marked = hdx_store_mark_get(q->cli->store, r->seq, &ckpt, &verified) == 0;
    if (q->unverified_only && (!marked || verified)) return 0;
    if (q->slots) {
        tally_note(q, r);
        return 0;
    }
    q->n++;
    if (q->count_only) return 0;
    if (hdx_record_open(r, q->cli->kr, &pt, &len) != HDX_OK) {
        fprintf(stderr, "hdx query: record %llu does not decrypt (run hdx verify)\n",
                (unsigned long long)r->seq);
        q->failed = 1;
        return 0;
    }
    hdx_format_time(r->time_us, t, sizeof(t));
    printf("# seq=%llu time=%s sender=%s type=%s", (unsigned long long)r->seq, t, r->sender,
           r->type);
    if (marked)
        printf(" stream=%s checkpoint=%llu", verified ? "verified" : "unverified",
               (unsigned long long)ckpt);
    if (q->reused_only) printf(" control_id_reused=yes");
    if (q->headers_only) {
        /* MSH-10 identifies the message, not the patient: tooling finds a message by it. */
        struct hl7_msg m;
        struct hl7_error e;
        struct hl7_limits lim;
        hl7_limits_default(&lim);
        memset(&m, 0, sizeof(m));
        if (r->kind == HDX_KIND_HL7V2 && hl7_parse(pt, len, &lim, &m, &e) == 0) {
            printf(" control_id=");
            for (const char *c = m.control_id; *c; c++)
                putchar(*c > ' ' && *c < 0x7f ? *c : '?');
        }
        hl7_msg_free(&m);
        putchar('\n');
    } else {
        putchar('\n');
        print_message(pt, len, 0);
        putchar('\n');
    }
    sodium_memzero(pt, len);
    free(pt);
    return 0;
}

int cmd_query(int argc, char **argv)
{
    const char *dir = NULL, *patient = NULL, *since = NULL, *purpose = NULL;
    struct hdx_store_filter f = {.kind = HDX_KIND_HL7V2};
    struct query_ctx q = {0};
    struct cli_api_opts o = {0};
    int offline = 0, offline_only = 0;
    uint8_t blind[HDX_BLIND_LEN];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--patient"))
            patient = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--type"))
            f.type = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--sender"))
            f.sender = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--since")) {
            since = cli_arg(argc, argv, &i);
            if (hdx_parse_time(since, &f.since_us) != 0) {
                fprintf(stderr, "hdx query: --since '%s' is not a time\n", since);
                return 2;
            }
        } else if (!strcmp(argv[i], "--count"))
            q.count_only = 1;
        else if (!strcmp(argv[i], "--headers"))
            q.headers_only = offline_only = 1;
        else if (!strcmp(argv[i], "--offline"))
            offline = 1;
        else if (!strcmp(argv[i], "--purpose"))
            purpose = cli_arg(argc, argv, &i);
        else if (cli_api_opt(argc, argv, &i, &o))
            continue;
        else if (!strcmp(argv[i], "--unverified"))
            q.unverified_only = offline_only = 1;
        else if (!strcmp(argv[i], "--reused-ids"))
            q.reused_only = f.reused_only = offline_only = 1;
        else if (!strcmp(argv[i], "--kind")) {
            offline_only = 1;
            const char *k = cli_arg(argc, argv, &i);
            f.kind = -1;
            if (!strcmp(k, "any")) f.kind = 0;
            for (int kind = HDX_KIND_HL7V2; kind <= HDX_KIND_ADMIN; kind++)
                if (!strcmp(k, hdx_kind_name(kind))) f.kind = kind;
            if (f.kind < 0) {
                fprintf(stderr,
                        "hdx query: --kind '%s' is not hl7v2, fhir, dicom, audit, admin "
                        "or any\n",
                        k);
                return 2;
            }
        } else if (!strcmp(argv[i], "--help")) {
            fputs(query_usage, stdout);
            return 0;
        } else {
            fputs(query_usage, stderr);
            return 2;
        }
    }
    if (!dir || (offline && o.user) ||
        (!o.user && (o.password_file || o.totp || o.to || o.ca || purpose))) {
        fputs(query_usage, stderr);
        return 2;
    }
    if (o.user && offline_only) {
        fprintf(stderr, "hdx query: --kind, --unverified and --reused-ids read the store "
                        "directly: use --offline\n");
        return 2;
    }
    o.dir = dir;
    if (o.user) {
        struct api_query aq = {patient, f.type, f.sender, since, purpose, q.count_only};
        return query_api(&o, &aq);
    }
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 1;
    if (patient) {
        hdx_blind(ctx.kr, "patient", patient, strlen(patient), blind);
        f.patient = blind;
    }
    q.cli = &ctx;
    long rc = 0;
    /* Messages printed from the store file: recorded in the audit trail first (a count, or
     * the registry's and the audit trail's own records, disclose no message). */
    if (!q.count_only && !q.headers_only && (f.kind == HDX_KIND_HL7V2 || f.kind == 0)) {
        q.slots = calloc(TALLY_SLOTS, sizeof(*q.slots));
        rc = q.slots ? hdx_store_scan(ctx.store, &f, 0, query_one, &q) : HDX_E_NOMEM;
        if (rc >= 0) audit_read(dir, "offline-query", &q);
        free(q.slots);
        q.slots = NULL;
    }
    if (rc >= 0) rc = hdx_store_scan(ctx.store, &f, 0, query_one, &q);
    cli_close(&ctx);
    if (rc < 0) {
        fprintf(stderr, "hdx query: %s\n", hdx_strerror((int)rc));
        return 1;
    }
    if (q.count_only) printf("%llu\n", q.n);
    return q.failed;
}
