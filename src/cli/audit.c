/* hdx audit: the audit trail (audit/audit.h records in the log), read from the store with the
 * data directory's key. Decrypted audit records go to stdout only. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"

static const char audit_usage[] =
    "usage: hdx audit query -d DIR [--user NAME] [--patient ID] [--event E] [--action A]\n"
    "                       [--outcome O] [--since T] [--json]\n"
    "       hdx audit disclosures -d DIR --patient ID [--json]\n"
    "Reads the audit records of the log (docs/AUDIT.md), oldest first, each matching every\n"
    "filter given: one line 'seq=N time=ISO event=E action=A outcome=O reason=R principal=P\n"
    "role=R source=ADDR cert=SHA256 patient=TOKEN seqs=A-B count=N detail=\"...\"', or with\n"
    "--json one JSON array of objects with those keys. --user is the principal (a user,\n"
    "device or subscriber name); --patient the patient's identifier (PID-3), matched through\n"
    "the blind index, so the identifier itself is in no record; --since as for hdx query.\n"
    "disclosures lists what went to whom about one patient (HIPAA 164.528 accounting of\n"
    "disclosures): the disclosure records of every subscription, with the subscriber, its\n"
    "filter, the first and last seq and the count, at least one per minute of delivery, and\n"
    "the access records of every HTTPS read or event stream that disclosed records of the\n"
    "patient (user, purpose, seqs, count; reason=permit_break_glass when by break-glass).\n"
    "--event admin lists the administrative changes instead (the admin records of the log:\n"
    "users, care teams, consent, grants, devices) in the same form: action=the change,\n"
    "principal=who made it (a user, or local:LOGIN for the hdx command line; '-' for records\n"
    "made before statements named their actor), patient=the token a care-team, consent or\n"
    "grant change is about, detail=\"name=SUBJECT\".\n";

/* What went out about the patient: a subscription's summary, or a read or stream of the API
 * that permitted at least one record. */
static int is_disclosure(const struct hdx_audit_view *v)
{
    return strcmp(v->event, "disclosure") == 0 ||
           (strcmp(v->event, "access") == 0 && strcmp(v->outcome, "permit") == 0 && v->count > 0);
}

struct audit_q {
    const char *user, *event, *action, *outcome;
    const uint8_t *patient;
    int json, disclosures_only, failed;
    json_t *out;
    struct cli_ctx *cli;
    unsigned long long n;
};

/* The record's plaintext, or NULL (said on stderr, and the command fails at the end). */
static uint8_t *open_record(struct audit_q *q, const struct hdx_record *r, size_t *len)
{
    uint8_t *pt = NULL;
    if (hdx_record_open(r, q->cli->kr, &pt, len) == HDX_OK) return pt;
    fprintf(stderr, "hdx audit: record %llu does not decrypt (run hdx verify)\n",
            (unsigned long long)r->seq);
    q->failed = 1;
    return NULL;
}

static int audit_one(void *arg, const struct hdx_record *r)
{
    struct audit_q *q = arg;
    size_t len = 0;
    struct hdx_audit_view v;
    char t[32];
    uint8_t *pt = open_record(q, r, &len);
    if (!pt) return 0;
    int rc = hdx_audit_parse(pt, len, &v);
    sodium_memzero(pt, len);
    free(pt);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx audit: record %llu is not an audit record hdx wrote\n",
                (unsigned long long)r->seq);
        q->failed = 1;
        return 0;
    }
    if ((q->user && strcmp(q->user, v.principal) != 0) ||
        (q->event && strcmp(q->event, v.event) != 0) ||
        (q->action && strcmp(q->action, v.action) != 0) ||
        (q->outcome && strcmp(q->outcome, v.outcome) != 0) ||
        (q->disclosures_only && !is_disclosure(&v)))
        return 0;
    q->n++;
    hdx_format_time(r->time_us, t, sizeof(t));
    if (q->json) {
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, "
            "s:I, s:s}",
            "seq", (json_int_t)r->seq, "time", t, "event", v.event, "action", v.action, "outcome",
            v.outcome, "reason", v.reason, "principal", v.principal, "role", v.role, "source",
            v.source, "cert", v.cert, "patient", v.patient, "first_seq", (json_int_t)v.first_seq,
            "last_seq", (json_int_t)v.last_seq, "count", (json_int_t)v.count, "detail", v.detail);
        if (!o || json_array_append_new(q->out, o) != 0) q->failed = 1;
        return 0;
    }
    char seqs[48] = "-";
    if (v.first_seq)
        snprintf(seqs, sizeof(seqs), "%llu-%llu", (unsigned long long)v.first_seq,
                 (unsigned long long)v.last_seq);
    printf("seq=%llu time=%s event=%s action=%s outcome=%s reason=%s principal=%s role=%s "
           "source=%s cert=%s patient=%s seqs=%s count=%llu detail=\"%s\"\n",
           (unsigned long long)r->seq, t, v.event, v.action, v.outcome, v.reason, v.principal,
           v.role, v.source, v.cert, v.patient, seqs, (unsigned long long)v.count, v.detail);
    return 0;
}

/* An admin record as an audit line: who changed what (the statement's by= and op). */
static int admin_one(void *arg, const struct hdx_record *r)
{
    struct audit_q *q = arg;
    size_t len = 0;
    struct hdx_admin a;
    uint8_t *pt = open_record(q, r, &len);
    if (!pt) return 0;
    int rc = hdx_admin_parse(pt, len, &a);
    sodium_memzero(pt, len);
    free(pt);
    if (rc != HDX_OK) return 0; /* hdx verify names statements it cannot read */
    static const uint8_t zero[HDX_BLIND_LEN];
    const char *op = hdx_admin_type(a.op) + strlen("admin/");
    const char *who = !a.by[0] ? "-" : !strncmp(a.by, "user:", 5) ? a.by + 5 : a.by;
    char patient[2 * HDX_BLIND_LEN + 1] = "-", t[32], detail[96];
    if (memcmp(a.patient, zero, HDX_BLIND_LEN)) hdx_hex(a.patient, HDX_BLIND_LEN, patient);
    if ((q->user && strcmp(q->user, who) != 0) || (q->action && strcmp(q->action, op) != 0) ||
        (q->outcome && strcmp(q->outcome, "success") != 0) ||
        (q->patient && memcmp(q->patient, a.patient, HDX_BLIND_LEN) != 0)) {
        sodium_memzero(&a, sizeof(a));
        return 0;
    }
    q->n++;
    hdx_format_time(r->time_us, t, sizeof(t));
    snprintf(detail, sizeof(detail), "name=%s", a.name[0] ? a.name : "-");
    const char *source = !a.by[0] ? "-" : !strncmp(a.by, "user:", 5) ? "https" : "local";
    if (q->json) {
        json_t *o =
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, "
                      "s:I, s:s}",
                      "seq", (json_int_t)r->seq, "time", t, "event", "admin", "action", op,
                      "outcome", "success", "reason", "-", "principal", who, "role", "-", "source",
                      source, "cert", "-", "patient", patient, "first_seq", (json_int_t)0,
                      "last_seq", (json_int_t)0, "count", (json_int_t)0, "detail", detail);
        if (!o || json_array_append_new(q->out, o) != 0) q->failed = 1;
    } else {
        printf("seq=%llu time=%s event=admin action=%s outcome=success reason=- principal=%s "
               "role=- source=%s cert=- patient=%s seqs=- count=0 detail=\"%s\"\n",
               (unsigned long long)r->seq, t, op, who, source, patient, detail);
    }
    sodium_memzero(&a, sizeof(a));
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    const char *dir = NULL, *patient = NULL;
    struct audit_q q = {0};
    struct hdx_store_filter f = {.kind = HDX_KIND_AUDIT};
    uint8_t blind[HDX_BLIND_LEN];
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fputs(audit_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "disclosures"))
        q.disclosures_only = 1;
    else if (strcmp(argv[1], "query") != 0) {
        fputs(audit_usage, stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--patient"))
            patient = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--user") && !q.disclosures_only)
            q.user = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--event") && !q.disclosures_only)
            q.event = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--action") && !q.disclosures_only)
            q.action = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--outcome") && !q.disclosures_only)
            q.outcome = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--since") && !q.disclosures_only) {
            const char *s = cli_arg(argc, argv, &i);
            if (hdx_parse_time(s, &f.since_us) != 0) {
                fprintf(stderr, "hdx audit: --since '%s' is not a time\n", s);
                return 2;
            }
        } else if (!strcmp(a, "--json"))
            q.json = 1;
        else if (!strcmp(a, "--help")) {
            fputs(audit_usage, stdout);
            return 0;
        } else {
            fputs(audit_usage, stderr);
            return 2;
        }
    }
    if (!dir || (q.disclosures_only && !patient)) {
        fputs(audit_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    if (cli_open(dir, 0, &ctx)) return 1;
    if (patient) {
        hdx_blind(ctx.kr, "patient", patient, strlen(patient), blind);
        f.patient = blind;
    }
    q.cli = &ctx;
    if (q.json) q.out = json_array();
    int admin = q.event && !strcmp(q.event, "admin");
    if (admin) {
        /* Admin records carry no patient token in their header: matched by their body. */
        q.patient = f.patient;
        f.patient = NULL;
        f.kind = HDX_KIND_ADMIN;
    }
    long rc = hdx_store_scan(ctx.store, &f, 0, admin ? admin_one : audit_one, &q);
    cli_close(&ctx);
    if (rc < 0) {
        fprintf(stderr, "hdx audit: %s\n", hdx_strerror((int)rc));
        json_decref(q.out);
        return 1;
    }
    if (q.json) {
        char *s = json_dumps(q.out, JSON_INDENT(1));
        if (s) puts(s);
        free(s);
        json_decref(q.out);
    }
    return q.failed;
}
