/* hdx get, hdx query, hdx verify: reading the store directly (read-only, WAL readers never
 * block hdxd). Decrypted messages go to stdout only, never to a log. */
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
    "usage: hdx get SEQ -d DIR [--raw]\n"
    "Prints the message stored as record SEQ, decrypted. Segments end in LF unless --raw,\n"
    "which writes the exact bytes received (CR-terminated segments).\n";

static const char query_usage[] =
    "usage: hdx query -d DIR [--patient ID] [--type T] [--sender S] [--since T]\n"
    "                 [--unverified] [--reused-ids] [--kind hl7v2|admin|audit|any] [--count]\n"
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

int cmd_get(int argc, char **argv)
{
    const char *dir = NULL, *seqs = NULL;
    int raw = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--raw"))
            raw = 1;
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
    if (!dir || !seqs || *end || !seq) {
        fputs(get_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    struct hdx_record r;
    uint8_t *pt = NULL;
    size_t len = 0;
    if (cli_open(dir, 0, &ctx)) return 1;
    int rc = hdx_store_get(ctx.store, seq, &r);
    if (rc == HDX_OK) {
        rc = hdx_record_open(&r, ctx.kr, &pt, &len);
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

struct query_ctx {
    struct cli_ctx *cli;
    int count_only, unverified_only, reused_only;
    unsigned long long n;
    int failed;
};

static int query_one(void *arg, const struct hdx_record *r)
{
    struct query_ctx *q = arg;
    char t[32];
    uint8_t *pt;
    size_t len;
    uint64_t ckpt = 0;
    int verified = 0, marked = hdx_store_mark_get(q->cli->store, r->seq, &ckpt, &verified) == 0;
    if (q->unverified_only && (!marked || verified)) return 0;
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
    putchar('\n');
    print_message(pt, len, 0);
    putchar('\n');
    sodium_memzero(pt, len);
    free(pt);
    return 0;
}

int cmd_query(int argc, char **argv)
{
    const char *dir = NULL, *patient = NULL;
    struct hdx_store_filter f = {.kind = HDX_KIND_HL7V2};
    struct query_ctx q = {0};
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
            const char *s = cli_arg(argc, argv, &i);
            if (hdx_parse_time(s, &f.since_us) != 0) {
                fprintf(stderr, "hdx query: --since '%s' is not a time\n", s);
                return 2;
            }
        } else if (!strcmp(argv[i], "--count"))
            q.count_only = 1;
        else if (!strcmp(argv[i], "--unverified"))
            q.unverified_only = 1;
        else if (!strcmp(argv[i], "--reused-ids"))
            q.reused_only = f.reused_only = 1;
        else if (!strcmp(argv[i], "--kind")) {
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
    if (!dir) {
        fputs(query_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 1;
    if (patient) {
        hdx_blind(ctx.kr, "patient", patient, strlen(patient), blind);
        f.patient = blind;
    }
    q.cli = &ctx;
    long rc = hdx_store_scan(ctx.store, &f, 0, query_one, &q);
    cli_close(&ctx);
    if (rc < 0) {
        fprintf(stderr, "hdx query: %s\n", hdx_strerror((int)rc));
        return 1;
    }
    if (q.count_only) printf("%llu\n", q.n);
    return q.failed;
}
