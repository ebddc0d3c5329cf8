/* hdx send: an MLLP sender over mutual TLS, one message at a time, as real devices do. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "merkle/receipt.h"
#include "merkle/sth.h"
#include "proto/checkpoint.h"
#include "proto/hl7.h"
#include "proto/mllp.h"

#define ACK_MAX (256 * 1024)

static const char send_usage[] =
    "usage: hdx send -d DIR --cert C --key K [--to HOST:PORT] [--ca CA] [--plain]\n"
    "                [--timeout MS] [--receipts FILE | --no-receipts] [--logkey PUB]\n"
    "                [--sign SIGNKEY [--checkpoint-every N] [--checkpoint-ms MS]] FILE...\n"
    "Sends every HL7 v2 message in each FILE ('-' = stdin) over one MLLP connection with\n"
    "mutual TLS, waits for each ACK and prints one line per ACK: MSA-1 and MSA-2, then for\n"
    "AE/AR the ERR code and text. A FILE holds MLLP frames, or plain messages (CR, LF or\n"
    "CRLF segments) each starting with MSH. --to defaults to DIR's mllp.listen and --ca to\n"
    "DIR/ca.pem; --plain sends without TLS (legacy listener).\n"
    "Receipts: the log's signed receipt in each AA (ZRC segment, docs/LOG-FORMAT.md) is\n"
    "appended as one JSON line to FILE (mode 0600), by default K with its .key suffix\n"
    "replaced by .receipts; check them later with `hdx receipt check`. With --logkey (or\n"
    "DIR/log.pub.pem when present) each receipt's signature is checked on arrival.\n"
    "Stream signatures: with --sign (the device's Ed25519 key from `hdx device add --signing`)\n"
    "a signed checkpoint (ZCK^Z01) covering the messages sent since the previous one follows\n"
    "every N messages (default 100), once MS milliseconds (default 1000) have passed since the\n"
    "last, and after the last message; hdxd verifies it (docs/STREAM-SIGNATURES.md) and\n"
    "answers AA, or AR with the reason. Its ACK line is printed like any other.\n"
    "Exit 0 only if every message was acknowledged AA, with a valid receipt when checked.\n";

struct sender {
    struct cli_conn conn;
    uint8_t buf[ACK_MAX];
    size_t have;
    int all_ok;
    unsigned long sent, receipts, bad_receipts;
    FILE *receipts_out; /* NULL: receipts are not kept */
    EVP_PKEY *log_pub;  /* NULL: receipts are not checked on arrival */
    EVP_PKEY *sign_key; /* NULL: no stream signatures */
    uint8_t binding[32];
    struct hdx_stream stream;
    uint64_t checkpoint_n;
    long every, every_ms;
    int64_t last_checkpoint_us;
};

/* Keeps the AA's receipt (ZRC-1..8) in the receipt file, checked first when the log key is
 * known. An AA without one (receipts off in hdxd) is not an error. */
static void keep_receipt(struct sender *s, const struct hl7_msg *m, const char *control_id)
{
    char vals[8][HDX_RECEIPT_PATH_MAX * 64 + 1], line[HDX_RECEIPT_JSON_MAX];
    const char *f[8];
    struct hdx_receipt r;
    struct hl7_view v;
    if (hl7_get(m, "ZRC", 1, 1, 1, 0, 0, &v) != 0) return;
    for (int i = 0; i < 8; i++) {
        f[i] = NULL;
        if (hl7_get(m, "ZRC", 1, i + 1, 1, 0, 0, &v) == 0 &&
            hl7_unescape(m, v, vals[i], sizeof(vals[i])) >= 0)
            f[i] = vals[i];
    }
    const char *bad = NULL;
    if (hdx_receipt_from_fields(f, &r) != HDX_OK)
        bad = "malformed";
    else if (s->log_pub && hdx_receipt_verify(&r, s->log_pub) != HDX_OK)
        bad = "signature invalid";
    if (bad) {
        fprintf(stderr, "hdx send: receipt of %s %s\n", control_id, bad);
        s->bad_receipts++;
        return;
    }
    s->receipts++;
    int n = hdx_receipt_json(&r, control_id, line, sizeof(line));
    if (s->receipts_out && n > 0) {
        fprintf(s->receipts_out, "%s\n", line);
        fflush(s->receipts_out);
    }
}

/* Prints the ACK line; returns 1 when MSA-1 is AA. */
static int print_ack(struct sender *s, const uint8_t *ack, size_t len)
{
    struct hl7_msg m;
    struct hl7_error e;
    struct hl7_limits lim;
    struct hl7_view v;
    char code[8] = "", id[200] = "", err[400] = "";
    hl7_limits_default(&lim);
    memset(&m, 0, sizeof(m));
    if (hl7_parse(ack, len, &lim, &m, &e) != 0) {
        printf("?? unparseable-ack\n");
        return 0;
    }
    if (hl7_get(&m, "MSA", 1, 1, 1, 0, 0, &v) == 0) hl7_unescape(&m, v, code, sizeof(code));
    if (hl7_get(&m, "MSA", 1, 2, 1, 0, 0, &v) == 0) hl7_unescape(&m, v, id, sizeof(id));
    char code_text[200] = "";
    if (hl7_get(&m, "ERR", 1, 3, 1, 1, 0, &v) == 0 && v.len) { /* ERR-3.1 code, 3.2 text */
        hl7_unescape(&m, v, err, sizeof(err));
        if (hl7_get(&m, "ERR", 1, 3, 1, 2, 0, &v) == 0)
            hl7_unescape(&m, v, code_text, sizeof(code_text));
        size_t n = strlen(err);
        snprintf(err + n, sizeof(err) - n, " %s", code_text);
    } else if (hl7_get(&m, "MSA", 1, 3, 1, 0, 0, &v) == 0) {
        hl7_unescape(&m, v, err, sizeof(err));
    }
    if (err[0] && strcmp(code, "AA") != 0)
        printf("%s %s %s\n", code, id, err);
    else
        printf("%s %s\n", code, id);
    if (!strcmp(code, "AA")) keep_receipt(s, &m, id);
    hl7_msg_free(&m);
    fflush(stdout);
    return strcmp(code, "AA") == 0;
}

static int read_ack(struct sender *s, int *aa)
{
    for (;;) {
        struct mllp_scan sc;
        size_t resume = 0;
        if (s->have && mllp_scan(s->buf, s->have, ACK_MAX - 3, &resume, &sc) == MLLP_FRAME) {
            const uint8_t *p = s->buf + sc.payload_off;
            *aa = print_ack(s, p, sc.payload_len);
            memmove(s->buf, s->buf + sc.consumed, s->have - sc.consumed);
            s->have -= sc.consumed;
            return 0;
        }
        if (s->have == ACK_MAX) return -1;
        long n = cli_read(&s->conn, s->buf + s->have, ACK_MAX - s->have);
        if (n <= 0) return -1;
        s->have += (size_t)n;
    }
}

static int send_frame(struct sender *s, const uint8_t *msg, size_t len)
{
    uint8_t *frame = malloc(len + 3);
    int aa = 0;
    if (!frame) return -1;
    size_t n = mllp_wrap(msg, len, frame, len + 3);
    int rc = cli_write(&s->conn, frame, n);
    free(frame);
    if (rc != 0 || read_ack(s, &aa) != 0) {
        fprintf(stderr, "hdx send: connection lost before the ACK of message %lu\n", s->sent + 1);
        s->all_ok = 0;
        return -1;
    }
    s->sent++;
    if (!aa) s->all_ok = 0;
    return 0;
}

/* A signed checkpoint over what was sent since the last one (proto/checkpoint.h). */
static int send_checkpoint(struct sender *s)
{
    struct hdx_checkpoint cp;
    char msg[512], seg[HDX_CKPT_SEGMENT_MAX], ts[32];
    int64_t now = hdx_now_us();
    time_t t = (time_t)(now / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y%m%d%H%M%S+0000", &tm);
    if (hdx_checkpoint_make(&s->stream, ++s->checkpoint_n, s->binding, s->sign_key, &cp) !=
            HDX_OK ||
        hdx_checkpoint_segment(&cp, seg, sizeof(seg)) < 0) {
        fprintf(stderr, "hdx send: cannot sign a checkpoint\n");
        return -1;
    }
    int n = snprintf(msg, sizeof(msg),
                     "MSH|^~\\&|HDX-SEND||HDX||%s||ZCK^Z01^ZCK_Z01|CK%llx.%llu|P|2.5.1\r%s", ts,
                     (unsigned long long)now, (unsigned long long)s->checkpoint_n, seg);
    s->last_checkpoint_us = hdx_monotonic_us();
    return send_frame(s, (const uint8_t *)msg, (size_t)n);
}

static int send_one(void *arg, const uint8_t *msg, size_t len)
{
    struct sender *s = arg;
    if (s->sign_key && hdx_stream_add(&s->stream, msg, len) != HDX_OK) return -1;
    if (send_frame(s, msg, len) != 0) return -1;
    if (s->sign_key && ((long)s->stream.count >= s->every ||
                        hdx_monotonic_us() - s->last_checkpoint_us >= s->every_ms * 1000))
        return send_checkpoint(s);
    return 0;
}

static int send_file(struct sender *s, const char *file)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;
    if (!strcmp(file, "-")) {
        size_t cap = 0;
        for (;;) {
            if (len == cap) {
                cap = cap ? cap * 2 : 65536;
                uint8_t *p = realloc(data, cap);
                if (!p) {
                    free(data);
                    return -1;
                }
                data = p;
            }
            size_t r = fread(data + len, 1, cap - len, stdin);
            if (!r) break;
            len += r;
        }
        rc = data ? HDX_OK : HDX_E_IO;
    } else {
        rc = hdx_read_file(file, 256u << 20, &data, &len);
    }
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx send: cannot read %s\n", file);
        free(data);
        return -1;
    }
    rc = cli_split_messages(data, len, send_one, s);
    free(data);
    return rc;
}

/* The receipt file (explicit, or next to the key) and the log key to check receipts. */
static int open_receipts(struct sender *s, const char *dir, const char *key, const char *path,
                         int off, const char *logkey)
{
    char def[HDX_PATH_MAX], pub[HDX_PATH_MAX];
    size_t kl = key ? strlen(key) : 0;
    if (!path && !off && kl > 4 && !strcmp(key + kl - 4, ".key") && kl - 4 + 10 < sizeof(def)) {
        snprintf(def, sizeof(def), "%.*s.receipts", (int)(kl - 4), key);
        path = def;
    }
    if (path && !off) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || !(s->receipts_out = fdopen(fd, "a"))) {
            if (fd >= 0) close(fd);
            fprintf(stderr, "hdx send: cannot open the receipt file %s\n", path);
            return -1;
        }
    }
    if (!logkey && dir && hdx_path(pub, sizeof(pub), dir, "log.pub.pem") == 0 &&
        access(pub, R_OK) == 0)
        logkey = pub;
    if (logkey && hdx_logkey_load_public(logkey, &s->log_pub) != HDX_OK) {
        fprintf(stderr, "hdx send: cannot load the log's public key %s\n", logkey);
        if (s->receipts_out) fclose(s->receipts_out);
        return -1;
    }
    return 0;
}

/* The device's signing key, and this connection's binding (proto/checkpoint.h). */
static int start_signing(struct sender *s, const char *path, long every, long every_ms)
{
    char why[512];
    if (hdx_logkey_load_private(path, &s->sign_key, why, sizeof(why)) != HDX_OK) {
        fprintf(stderr, "hdx send: cannot load the signing key: %s\n", why);
        return -1;
    }
    if (SSL_export_keying_material(s->conn.ssl, s->binding, sizeof(s->binding), HDX_CKPT_LABEL,
                                   strlen(HDX_CKPT_LABEL), NULL, 0, 0) != 1) {
        fprintf(stderr, "hdx send: cannot derive the stream-signature binding\n");
        return -1;
    }
    hdx_stream_init(&s->stream);
    s->every = every;
    s->every_ms = every_ms;
    s->last_checkpoint_us = hdx_monotonic_us();
    return 0;
}

int cmd_send(int argc, char **argv)
{
    struct cli_client_opts o = {0};
    const char *receipts = NULL, *logkey = NULL, *sign = NULL;
    int plain = 0, timeout = 30000, nfiles = 0, no_receipts = 0;
    long every = 100, every_ms = 1000;
    const char *files[256];
    for (int i = 1; i < argc; i++) {
        if (cli_client_opt(argc, argv, &i, &o))
            continue;
        else if (!strcmp(argv[i], "--timeout"))
            timeout = atoi(cli_arg(argc, argv, &i));
        else if (!strcmp(argv[i], "--plain"))
            plain = 1;
        else if (!strcmp(argv[i], "--receipts"))
            receipts = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--no-receipts"))
            no_receipts = 1;
        else if (!strcmp(argv[i], "--logkey"))
            logkey = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--sign"))
            sign = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--checkpoint-every"))
            every = atol(cli_arg(argc, argv, &i));
        else if (!strcmp(argv[i], "--checkpoint-ms"))
            every_ms = atol(cli_arg(argc, argv, &i));
        else if (!strcmp(argv[i], "--help")) {
            fputs(send_usage, stdout);
            return 0;
        } else if ((argv[i][0] != '-' || !strcmp(argv[i], "-")) && nfiles < 256)
            files[nfiles++] = argv[i];
        else {
            fputs(send_usage, stderr);
            return 2;
        }
    }
    const char *dir = o.dir, *cert = o.cert, *key = o.key, *to = o.to, *ca = o.ca;
    struct hdx_conf conf;
    char ca_path[HDX_PATH_MAX], err[512];
    if (cli_client_conf("send", dir, &conf, &ca, ca_path, sizeof(ca_path))) return 1;
    if (!to) to = plain ? conf.legacy_listen : conf.mllp_listen;
    if (!nfiles || (!plain && (!cert || !key || !ca)) || !to[0] || timeout <= 0 ||
        (sign && plain) || every < 1 || every_ms < 1) {
        fputs(send_usage, stderr);
        return 2;
    }
    struct sender *s = calloc(1, sizeof(*s));
    if (!s) return 1;
    s->all_ok = 1;
    if (open_receipts(s, dir, key, receipts, no_receipts, logkey) != 0) {
        free(s);
        return 1;
    }
    int rc = 0;
    if (cli_connect(to, ca, cert, key, plain, timeout, &s->conn, err, sizeof(err)) != 0) {
        fprintf(stderr, "hdx send: %s\n", err);
        rc = -1;
    } else {
        if (sign && start_signing(s, sign, every, every_ms) != 0) rc = -1;
        for (int i = 0; i < nfiles && rc == 0; i++)
            rc = send_file(s, files[i]);
        if (rc == 0 && s->sign_key && s->stream.count) rc = send_checkpoint(s);
        cli_disconnect(&s->conn);
    }
    EVP_PKEY_free(s->sign_key);
    if (s->receipts_out && (fflush(s->receipts_out) || fsync(fileno(s->receipts_out)))) {
        fprintf(stderr, "hdx send: cannot write the receipt file\n");
        rc = -1;
    }
    if (s->receipts_out) fclose(s->receipts_out);
    EVP_PKEY_free(s->log_pub);
    int ok = s->all_ok && rc == 0 && s->sent > 0 && s->bad_receipts == 0;
    free(s);
    return ok ? 0 : 1;
}
