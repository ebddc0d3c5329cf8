/* hdx send: an MLLP sender over mutual TLS, one message at a time, as real devices do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"
#include "proto/mllp.h"

#define ACK_MAX (256 * 1024)

static const char send_usage[] =
    "usage: hdx send -d DIR --cert C --key K [--to HOST:PORT] [--ca CA] [--plain]\n"
    "                [--timeout MS] FILE...\n"
    "Sends every HL7 v2 message in each FILE ('-' = stdin) over one MLLP connection with\n"
    "mutual TLS, waits for each ACK and prints one line per ACK: MSA-1 and MSA-2, then for\n"
    "AE/AR the ERR code and text. A FILE holds MLLP frames, or plain messages (CR, LF or\n"
    "CRLF segments) each starting with MSH. --to defaults to DIR's mllp.listen and --ca to\n"
    "DIR/ca.pem; --plain sends without TLS (legacy listener). Exit 0 only if every message\n"
    "was acknowledged AA.\n";

struct sender {
    struct cli_conn conn;
    uint8_t buf[ACK_MAX];
    size_t have;
    int all_ok;
    unsigned long sent;
};

/* Prints the ACK line; returns 1 when MSA-1 is AA. */
static int print_ack(const uint8_t *ack, size_t len)
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
            *aa = print_ack(p, sc.payload_len);
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

static int send_one(void *arg, const uint8_t *msg, size_t len)
{
    struct sender *s = arg;
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

int cmd_send(int argc, char **argv)
{
    const char *dir = NULL, *cert = NULL, *key = NULL, *to = NULL, *ca = NULL;
    int plain = 0, timeout = 30000, nfiles = 0;
    const char *files[256];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--cert"))
            cert = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--key"))
            key = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--to"))
            to = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--ca"))
            ca = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--timeout"))
            timeout = atoi(cli_arg(argc, argv, &i));
        else if (!strcmp(argv[i], "--plain"))
            plain = 1;
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
    struct hdx_conf conf;
    char ca_path[HDX_PATH_MAX], err[512];
    if (cli_client_conf("send", dir, &conf, &ca, ca_path, sizeof(ca_path))) return 1;
    if (!to) to = plain ? conf.legacy_listen : conf.mllp_listen;
    if (!nfiles || (!plain && (!cert || !key || !ca)) || !to[0] || timeout <= 0) {
        fputs(send_usage, stderr);
        return 2;
    }
    struct sender *s = calloc(1, sizeof(*s));
    if (!s) return 1;
    s->all_ok = 1;
    if (cli_connect(to, ca, cert, key, plain, timeout, &s->conn, err, sizeof(err)) != 0) {
        fprintf(stderr, "hdx send: %s\n", err);
        free(s);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < nfiles && rc == 0; i++)
        rc = send_file(s, files[i]);
    cli_disconnect(&s->conn);
    int ok = s->all_ok && rc == 0 && s->sent > 0;
    free(s);
    return ok ? 0 : 1;
}
