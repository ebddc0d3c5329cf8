/* hdx tail: a subscriber (a certificate on the subscription port), or a user on hdxd's HTTPS
 * event stream (--user, /api/stream: the policy decides per record, hdxd audits what went).
 * Prints each committed message as hdxd delivers it. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"

#define TAIL_MAX_BODY (64u << 20)

static const char tail_usage[] =
    "usage: hdx tail -d DIR --cert C --key K [--to HOST:PORT] [--ca CA] [--from SEQ]\n"
    "                [--type T] [--sender S] [--patient ID] [--count N] [--vitals|--latency]\n"
    "       hdx tail -d DIR --user NAME [--password-file F] [--totp CODE] [--purpose P]\n"
    "                [--to HOST:PORT] [--ca CA] [--from SEQ] [--type T] [--sender S]\n"
    "                [--patient ID] [--count N] [--vitals]\n"
    "--user signs in to hdxd's HTTPS API (like hdx get --user) and follows /api/stream as\n"
    "that user: only records the policy lets the user read arrive, and the stream ends (exit\n"
    "1) when the session does (logout elsewhere, automatic logoff, revocation).\n"
    "Subscribes (certificate role subscriber or gateway) and prints every committed HL7\n"
    "message that matches the filters, in commit order, as it is committed:\n"
    "'# seq=N time=ISO sender=S type=T', the message, a blank line. --from SEQ first\n"
    "replays everything after SEQ (use the last seq you saw: no gap, no duplicate); without\n"
    "it only new messages arrive. --vitals prints one line of vital signs per ORU^R01.\n"
    "--count N exits after N messages. --latency prints nothing per message but, at the end,\n"
    "the delivery latency (arrival here minus the flush of the record's batch; minus the\n"
    "record time for replayed records) as 'delivery n=N p50_ms=..\n"
    "p99_ms=.. p999_ms=.. max_ms=..' (for benchmarks; same machine clock).\n"
    "Exit 1 if hdxd refuses or drops the subscription.\n";

static const char *field(const char *line, const char *key, char *out, size_t cap)
{
    char pat[32];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *p = strstr(line, pat);
    out[0] = 0;
    if (!p) return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, " ");
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

struct vital {
    const char *loinc, *label;
};

static const struct vital vitals[] = {
    {"8867-4", "HR"},  {"59408-5", "SpO2"}, {"2708-6", "SpO2"}, {"8480-6", "SYS"},
    {"8462-4", "DIA"}, {"9279-1", "RR"},    {"8310-5", "Temp"},
};

static void print_vitals(const char *head, const uint8_t *body, size_t len)
{
    struct hl7_msg m;
    struct hl7_error e;
    struct hl7_limits lim;
    char seq[24], sender[80], t[40], out[512];
    size_t o = 0;
    hl7_limits_default(&lim);
    memset(&m, 0, sizeof(m));
    field(head, "seq", seq, sizeof(seq));
    field(head, "sender", sender, sizeof(sender));
    field(head, "time", t, sizeof(t));
    if (hl7_parse(body, len, &lim, &m, &e) != 0) return;
    for (int occ = 1; occ < 64; occ++) {
        struct hl7_view v;
        char code[32], value[32], unit[32];
        if (hl7_get(&m, "OBX", occ, 3, 1, 1, 0, &v) != 0) break;
        hl7_unescape(&m, v, code, sizeof(code));
        value[0] = unit[0] = 0;
        if (hl7_get(&m, "OBX", occ, 5, 1, 0, 0, &v) == 0) hl7_unescape(&m, v, value, sizeof(value));
        if (hl7_get(&m, "OBX", occ, 6, 1, 1, 0, &v) == 0) hl7_unescape(&m, v, unit, sizeof(unit));
        for (size_t i = 0; i < sizeof(vitals) / sizeof(vitals[0]); i++)
            if (!strcmp(code, vitals[i].loinc) && o < sizeof(out) - 64)
                o += (size_t)snprintf(out + o, sizeof(out) - o, "  %s %s %s", vitals[i].label,
                                      value, unit);
    }
    out[o] = 0;
    printf("%.19s seq=%-7s %-12s%s\n", t, seq, sender, out);
    hl7_msg_free(&m);
}

enum tail_mode { TAIL_MESSAGES, TAIL_VITALS, TAIL_LATENCY };

#define LATENCY_MAX_SAMPLES (1u << 22)

struct latency {
    int64_t *us;
    size_t n;
};

/* "2026-11-25T12:00:00.123456Z" (as hdxd writes it) to microseconds. */
static int64_t parse_commit_time(const char *t)
{
    char whole[32];
    const char *dot = strchr(t, '.');
    if (!dot || (size_t)(dot - t) >= sizeof(whole) - 1) return 0;
    memcpy(whole, t, (size_t)(dot - t));
    whole[dot - t] = 0;
    strcat(whole, "Z");
    int64_t s_us;
    if (hdx_parse_time(whole, &s_us) != 0) return 0;
    return s_us + strtoll(dot + 1, NULL, 10);
}

/* Live deliveries carry durable= (the batch's flush); replayed ones only the record time. */
static void note_latency(struct latency *lat, const char *line)
{
    char t[40], d[24];
    int64_t now = hdx_now_us();
    if (lat->n >= LATENCY_MAX_SAMPLES) return;
    if (!lat->us && !(lat->us = malloc(LATENCY_MAX_SAMPLES * sizeof(*lat->us)))) return;
    if (field(line, "durable", d, sizeof(d)))
        lat->us[lat->n++] = now - strtoll(d, NULL, 10);
    else if (field(line, "time", t, sizeof(t)))
        lat->us[lat->n++] = now - parse_commit_time(t);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void report_latency(struct latency *lat)
{
    if (!lat->n) {
        fprintf(stderr, "delivery n=0\n");
        return;
    }
    qsort(lat->us, lat->n, sizeof(*lat->us), cmp_i64);
#define PCT(p) (lat->us[(size_t)((double)(lat->n - 1) * (p))] / 1000.0)
    fprintf(stderr, "delivery n=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n", lat->n,
            PCT(0.5), PCT(0.99), PCT(0.999), lat->us[lat->n - 1] / 1000.0);
#undef PCT
    free(lat->us);
}

/* Reads one delivery; returns 1 for a message, 0 for a line to skip, -1 to stop (error). */
static int read_one(struct cli_reader *r, enum tail_mode mode, struct latency *lat)
{
    char line[512], lens[24], type[80];
    if (cli_read_line(r, line, sizeof(line)) != 0) {
        fprintf(stderr, "hdx tail: connection closed by hdxd\n");
        return -1;
    }
    if (!strncmp(line, "BYE", 3) || !strncmp(line, "ERR", 3)) {
        fprintf(stderr, "hdx tail: %s\n", line);
        return -1;
    }
    if (strncmp(line, "MSG ", 4) != 0 || !field(line, "len", lens, sizeof(lens))) return 0;
    if (mode == TAIL_LATENCY) note_latency(lat, line);
    size_t len = strtoull(lens, NULL, 10);
    uint8_t *body = len <= TAIL_MAX_BODY ? malloc(len + 2) : NULL;
    if (!body || cli_read_exact(r, body, len + 1) != 0) {
        free(body);
        return -1;
    }
    field(line, "type", type, sizeof(type));
    if (mode == TAIL_VITALS && !strncmp(type, "ORU^R01", 7)) {
        print_vitals(line, body, len);
    } else if (mode == TAIL_MESSAGES) {
        char *dur = strstr(line, " durable="); /* a measurement aid, not part of the record */
        if (dur) *dur = 0;
        printf("# %s\n", line + 4);
        for (size_t i = 0; i < len; i++)
            putchar(body[i] == '\r' ? '\n' : body[i]);
        printf(len && body[len - 1] == '\r' ? "\n" : "\n\n");
    }
    fflush(stdout);
    sodium_memzero(body, len);
    free(body);
    return 1;
}

static int stream(struct cli_reader *r, enum tail_mode mode, long count)
{
    struct latency lat = {0};
    long seen = 0;
    int rc = 0;
    while (count <= 0 || seen < count) {
        int got = read_one(r, mode, &lat);
        if (got < 0) {
            rc = 1;
            break;
        }
        seen += got;
    }
    if (mode == TAIL_LATENCY) report_latency(&lat);
    return rc;
}

static int build_request(char *req, size_t cap, const char *from, const char *type,
                         const char *sender, const char *patient)
{
    int n = snprintf(req, cap, "SUB%s%s%s%s%s%s%s%s\n", from ? " after=" : "", from ? from : "",
                     type ? " type=" : "", type ? type : "", sender ? " sender=" : "",
                     sender ? sender : "", patient ? " patient=" : "", patient ? patient : "");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---------- as a user, on the HTTPS event stream ---------- */

struct user_tail {
    enum tail_mode mode;
    long count, seen;
    int ended;
};

static int on_event(void *arg, const char *event, const char *data, size_t len)
{
    struct user_tail *t = arg;
    if (!strcmp(event, "end")) {
        fprintf(stderr, "hdx tail: hdxd ended the stream: %.*s\n", (int)len, data);
        t->ended = 1;
        return 1;
    }
    if (strcmp(event, "record") != 0) return 0;
    json_t *o = json_loadb(data, len, 0, NULL);
    uint8_t *body = NULL;
    size_t blen = 0;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!o || !type || cli_api_record_body(o, &body, &blen) != 0) {
        fprintf(stderr, "hdx tail: an event that is not a record\n");
        json_decref(o);
        t->ended = 1;
        return 1;
    }
    if (t->mode == TAIL_VITALS) {
        char head[256];
        snprintf(head, sizeof(head), "MSG seq=%lld time=%s sender=%s",
                 (long long)json_integer_value(json_object_get(o, "seq")),
                 json_string_value(json_object_get(o, "time")),
                 json_string_value(json_object_get(o, "sender")));
        if (!strncmp(type, "ORU^R01", 7)) print_vitals(head, body, blen);
    } else {
        (void)cli_api_record_print(o, 0, 1);
    }
    fflush(stdout);
    sodium_memzero(body, blen);
    free(body);
    json_decref(o);
    return t->count > 0 && ++t->seen >= t->count;
}

static int tail_user(struct cli_api_opts *ao, const char *purpose, const char *from,
                     const char *type, const char *sender, const char *patient, enum tail_mode mode,
                     long count)
{
    char target[1024] = "/api/stream", why[512];
    if ((from && cli_api_param(target, sizeof(target), "after", from)) ||
        (type && cli_api_param(target, sizeof(target), "type", type)) ||
        (sender && cli_api_param(target, sizeof(target), "sender", sender)) ||
        (patient && cli_api_param(target, sizeof(target), "patient", patient)) ||
        (purpose && cli_api_param(target, sizeof(target), "purpose", purpose))) {
        fprintf(stderr, "hdx tail: the filters are too long\n");
        return 2;
    }
    struct cli_api api;
    int rc = cli_api_login("tail", ao, &api);
    if (rc) return rc;
    struct user_tail t = {mode, count, 0, 0};
    int status = 0;
    rc = cli_api_stream(&api, target, on_event, &t, &status, why, sizeof(why));
    sodium_memzero(target, sizeof(target));
    if (rc != 0 || status != 200) {
        fprintf(stderr, "hdx tail: %s\n", why);
        rc = 1;
    } else {
        if (!t.ended && (count <= 0 || t.seen < count))
            fprintf(stderr, "hdx tail: connection closed by hdxd\n");
        rc = count > 0 && t.seen >= count ? 0 : 1;
    }
    cli_api_logout(&api);
    return rc;
}

int cmd_tail(int argc, char **argv)
{
    struct cli_client_opts o = {0};
    struct cli_api_opts ao = {0};
    const char *from = NULL, *type = NULL, *sender = NULL, *patient = NULL, *purpose = NULL;
    enum tail_mode mode = TAIL_MESSAGES;
    long count = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_client_opt(argc, argv, &i, &o) || cli_api_opt(argc, argv, &i, &ao))
            continue;
        else if (!strcmp(a, "--purpose"))
            purpose = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--from"))
            from = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--type"))
            type = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--sender"))
            sender = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--patient"))
            patient = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--count"))
            count = atol(cli_arg(argc, argv, &i));
        else if (!strcmp(a, "--vitals"))
            mode = TAIL_VITALS;
        else if (!strcmp(a, "--latency"))
            mode = TAIL_LATENCY;
        else if (!strcmp(a, "--help")) {
            fputs(tail_usage, stdout);
            return 0;
        } else {
            fputs(tail_usage, stderr);
            return 2;
        }
    }
    if (ao.user) {
        if (!o.dir || o.cert || o.key || mode == TAIL_LATENCY) {
            fputs(tail_usage, stderr);
            return 2;
        }
        ao.dir = o.dir;
        ao.to = o.to;
        ao.ca = o.ca;
        return tail_user(&ao, purpose, from, type, sender, patient, mode, count);
    }
    if (ao.password_file || ao.totp || purpose) {
        fputs(tail_usage, stderr);
        return 2;
    }
    const char *dir = o.dir, *cert = o.cert, *key = o.key, *to = o.to, *ca = o.ca;
    struct hdx_conf conf;
    char ca_path[HDX_PATH_MAX], err[512], req[1100];
    if (cli_client_conf("tail", dir, &conf, &ca, ca_path, sizeof(ca_path))) return 1;
    if (!to) to = conf.sub_listen;
    int n = build_request(req, sizeof(req), from, type, sender, patient);
    if (!cert || !key || !ca || !to[0] || n < 0) {
        fputs(tail_usage, stderr);
        return 2;
    }
    struct cli_reader *r = calloc(1, sizeof(*r));
    if (!r || cli_connect(to, ca, cert, key, 0, 0, &r->conn, err, sizeof(err)) != 0) {
        fprintf(stderr, "hdx tail: %s\n", r ? err : "out of memory");
        free(r);
        return 1;
    }
    int rc = 1;
    if (cli_write(&r->conn, req, (size_t)n) == 0 && cli_read_line(r, err, sizeof(err)) == 0) {
        if (!strncmp(err, "OK", 2)) {
            fprintf(stderr, "hdx tail: subscribed (%s)\n", err);
            rc = stream(r, mode, count);
        } else {
            fprintf(stderr, "hdx tail: %s\n", err);
        }
    } else {
        fprintf(stderr, "hdx tail: hdxd closed the connection (certificate refused?)\n");
    }
    cli_disconnect(&r->conn);
    free(r);
    return rc;
}
