/* The hdx CLI as a client of hdxd's HTTPS API (cli.h "cli_api"): a user signs in with a
 * password and a second factor, the requests share one keep-alive TLS connection verified
 * against the data directory's CA, and the session is ended at the end. Answers are parsed
 * with http-parser (the library hdxd itself uses) under fixed limits; the password, the
 * token and every body are wiped when freed. */
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/password.h"
#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"

#define API_TIMEOUT_MS 30000     /* hdxd sends a keep-alive comment on streams every 15 s */
#define API_MAX_BODY (64u << 20) /* a page of 1,000 records of up to 64 KiB each, with room */
#define SSE_MAX_EVENT (16u << 20)

/* ---------- prompts ---------- */

/* One line from the terminal, echo off unless echo; never from a pipe (a script should
 * name a file). */
static int prompt_line(const char *what, int echo, char *out, size_t cap)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) return -1;
    struct termios old, quiet;
    int fd = fileno(tty), restore = 0;
    if (!echo && tcgetattr(fd, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    fprintf(tty, "%s: ", what);
    fflush(tty);
    int ok = fgets(out, (int)cap, tty) != NULL;
    if (restore) {
        tcsetattr(fd, TCSAFLUSH, &old);
        fputc('\n', tty);
    }
    fclose(tty);
    if (!ok) return -1;
    out[strcspn(out, "\r\n")] = 0;
    return 0;
}

/* ---------- one HTTP answer ---------- */

struct answer {
    int status;
    int complete;
    uint8_t *body;
    size_t len, cap;
    int too_big;
    /* Event streams: the body is cut into events as it comes (text/event-stream). */
    int (*on_event)(void *arg, const char *event, const char *data, size_t len);
    void *event_arg;
    int stopped;
    size_t scanned; /* bytes of body already searched for an event's end */
};

static int grow(struct answer *a, size_t need)
{
    if (need <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *b = malloc(cap + 1);
    if (!b) return -1;
    if (a->len) memcpy(b, a->body, a->len);
    if (a->body) {
        sodium_memzero(a->body, a->cap);
        free(a->body);
    }
    a->body = b;
    a->cap = cap;
    return 0;
}

/* Hands over every complete event (ended by a blank line) in the buffer. */
static void events_take(struct answer *a)
{
    size_t off = 0;
    for (;;) {
        uint8_t *end = NULL;
        for (size_t i = a->scanned > off ? a->scanned : off; i + 1 < a->len; i++)
            if (a->body[i] == '\n' && a->body[i + 1] == '\n') {
                end = a->body + i;
                break;
            }
        if (!end || a->stopped) {
            a->scanned = a->len ? a->len - 1 : 0; /* the next search starts where this one ended */
            break;
        }
        *end = 0;
        char *ev = (char *)a->body + off, event[32] = "message";
        const char *data = NULL;
        size_t dlen = 0;
        for (char *line = ev, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (!strncmp(line, "event: ", 7)) snprintf(event, sizeof(event), "%s", line + 7);
            if (!strncmp(line, "data: ", 6)) {
                data = line + 6;
                dlen = strlen(data);
            }
        }
        /* A block of comments only (hdxd's keep-alive) is no event. */
        if (data && a->on_event(a->event_arg, event, data, dlen)) a->stopped = 1;
        off = (size_t)(end - a->body) + 2;
    }
    memmove(a->body, a->body + off, a->len - off);
    sodium_memzero(a->body + (a->len - off), off);
    a->len -= off;
    a->scanned = a->scanned > off ? a->scanned - off : 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct answer *a = p->data;
    size_t limit = a->on_event ? SSE_MAX_EVENT : API_MAX_BODY;
    if (a->len + n > limit || grow(a, a->len + n)) {
        a->too_big = 1;
        return 1;
    }
    memcpy(a->body + a->len, at, n);
    a->len += n;
    if (a->on_event && p->status_code == 200) events_take(a);
    return a->stopped;
}

static int on_headers(http_parser *p)
{
    struct answer *a = p->data;
    a->status = (int)p->status_code;
    return 0;
}

static int on_complete(http_parser *p)
{
    struct answer *a = p->data;
    a->complete = 1;
    return 0;
}

static void answer_free(struct answer *a)
{
    if (a->body) {
        sodium_memzero(a->body, a->cap);
        free(a->body);
    }
    memset(a, 0, sizeof(*a));
}

/* Sends one request and reads its answer into a (whole, or as events). 0, or -1 with why. */
static int exchange(struct cli_api *api, const char *method, const char *target, const char *json,
                    struct answer *a, char *why, size_t cap)
{
    char head[4096];
    size_t blen = json ? strlen(json) : 0;
    int n =
        snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hdx\r\nAccept: %s\r\n"
                 "%s%s%s%s",
                 method, target, api->host, a->on_event ? "text/event-stream" : "application/json",
                 api->token[0] ? "Authorization: Bearer " : "", api->token,
                 api->token[0] ? "\r\n" : "", json ? "Content-Type: application/json\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head) - 64) {
        snprintf(why, cap, "request too long");
        return -1;
    }
    n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n\r\n", blen);
    int rc = cli_write(&api->conn, head, (size_t)n);
    if (rc == 0 && blen) rc = cli_write(&api->conn, json, blen);
    sodium_memzero(head, sizeof(head));
    if (rc != 0) {
        snprintf(why, cap, "cannot send to hdxd");
        return -1;
    }
    http_parser p;
    http_parser_settings s;
    http_parser_init(&p, HTTP_RESPONSE);
    http_parser_settings_init(&s);
    s.on_headers_complete = on_headers;
    s.on_body = on_body;
    s.on_message_complete = on_complete;
    p.data = a;
    char buf[16384];
    while (!a->complete && !a->stopped) {
        long got = cli_read(&api->conn, buf, sizeof(buf));
        if (got <= 0) {
            /* The end of a stream (hdxd closes it after its end event) is not an error. */
            if (a->on_event && a->status == 200 && got == 0) break;
            snprintf(why, cap, "%s",
                     got == 0 ? "hdxd closed the connection" : "no answer from hdxd in time");
            return -1;
        }
        size_t used = http_parser_execute(&p, &s, buf, (size_t)got);
        if (a->stopped) break;
        if (a->too_big) {
            snprintf(why, cap, "hdxd's answer is larger than %u bytes", API_MAX_BODY);
            return -1;
        }
        if (used != (size_t)got || HTTP_PARSER_ERRNO(&p) != HPE_OK) {
            snprintf(why, cap, "malformed answer from hdxd: %s",
                     http_errno_description(HTTP_PARSER_ERRNO(&p)));
            return -1;
        }
    }
    sodium_memzero(buf, sizeof(buf));
    if (a->body) a->body[a->len] = 0;
    return 0;
}

/* The error code and message of a JSON error answer, for one line on stderr. */
static void error_text(const struct answer *a, char *out, size_t cap)
{
    json_t *o = a->body ? json_loadb((const char *)a->body, a->len, 0, NULL) : NULL;
    const char *code = json_string_value(json_object_get(o, "error"));
    const char *msg = json_string_value(json_object_get(o, "message"));
    snprintf(out, cap, "%d %s%s%s", a->status, code ? code : "error", msg ? ": " : "",
             msg ? msg : "");
    json_decref(o);
}

/* ---------- the session ---------- */

int cli_api_login(const char *cmd, const struct cli_api_opts *o, struct cli_api *api)
{
    char why[512], ca_buf[HDX_PATH_MAX], secret[300] = "", code[32] = "";
    const char *ca = o->ca;
    struct hdx_conf conf;
    memset(api, 0, sizeof(*api));
    api->conn.fd = -1;
    if (cli_client_conf(cmd, o->dir, &conf, &ca, ca_buf, sizeof(ca_buf))) return 1;
    const char *to = o->to ? o->to : conf.http_listen;
    if (!to[0]) {
        fprintf(stderr, "hdx %s: hdxd's HTTPS port is off (http.listen in hdx.conf); use --to\n",
                cmd);
        return 1;
    }
    int port;
    if (hdx_split_hostport(to, api->host, sizeof(api->host), &port) != 0) {
        fprintf(stderr, "hdx %s: '%s' is not HOST:PORT\n", cmd, to);
        return 2;
    }
    snprintf(api->host + strlen(api->host), sizeof(api->host) - strlen(api->host), ":%d", port);
    if (snprintf(api->to, sizeof(api->to), "%s", to) >= (int)sizeof(api->to) ||
        snprintf(api->ca, sizeof(api->ca), "%s", ca) >= (int)sizeof(api->ca)) {
        fprintf(stderr, "hdx %s: the address or the CA path is too long\n", cmd);
        return 2;
    }
    char *pw = NULL;
    size_t pwlen = 0;
    if (o->password_file) {
        if (hdx_password_read_file(o->password_file, &pw, &pwlen, why, sizeof(why)) != HDX_OK) {
            fprintf(stderr, "hdx %s: %s\n", cmd, why);
            return 1;
        }
    } else if (prompt_line("password", 0, secret, sizeof(secret)) == 0) {
        pw = secret;
    } else {
        fprintf(stderr, "hdx %s: no terminal to ask for the password: give --password-file\n", cmd);
        return 2;
    }
    if (o->totp)
        snprintf(code, sizeof(code), "%s", o->totp);
    else if (prompt_line("TOTP code", 1, code, sizeof(code)) != 0) {
        fprintf(stderr, "hdx %s: no terminal to ask for the TOTP code: give --totp\n", cmd);
        if (pw != secret) hdx_password_free(pw);
        sodium_memzero(secret, sizeof(secret));
        return 2;
    }
    json_t *body = json_pack("{s:s, s:s, s:s}", "username", o->user, "password", pw, "totp", code);
    if (pw != secret) hdx_password_free(pw);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(code, sizeof(code));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        fprintf(stderr, "hdx %s: the user name or password is not valid UTF-8\n", cmd);
        return 2;
    }
    int rc = 1;
    struct answer a = {0};
    if (cli_connect(to, ca, NULL, NULL, 0, API_TIMEOUT_MS, &api->conn, why, sizeof(why)) != 0 ||
        exchange(api, "POST", "/auth/login", text, &a, why, sizeof(why)) != 0) {
        fprintf(stderr, "hdx %s: %s\n", cmd, why);
    } else if (a.status != 200) {
        error_text(&a, why, sizeof(why));
        fprintf(stderr, "hdx %s: login refused: %s\n", cmd, why);
    } else {
        json_t *ok = json_loadb((const char *)a.body, a.len, 0, NULL);
        const char *token = json_string_value(json_object_get(ok, "token"));
        if (token && strlen(token) < sizeof(api->token)) {
            snprintf(api->token, sizeof(api->token), "%s", token);
            rc = 0;
        } else {
            fprintf(stderr, "hdx %s: hdxd's login answer has no token\n", cmd);
        }
        json_decref(ok);
    }
    sodium_memzero(text, strlen(text));
    free(text);
    answer_free(&a);
    if (rc) cli_disconnect(&api->conn);
    return rc;
}

int cli_api_get(struct cli_api *api, const char *target, int *status, json_t **out, char *why,
                size_t cap)
{
    struct answer a = {0};
    *out = NULL;
    if (exchange(api, "GET", target, NULL, &a, why, cap) != 0) {
        answer_free(&a);
        return -1;
    }
    *status = a.status;
    if (a.status != 200) {
        error_text(&a, why, cap);
    } else if (!(*out = json_loadb((const char *)a.body, a.len, 0, NULL))) {
        snprintf(why, cap, "hdxd's answer is not JSON");
        answer_free(&a);
        return -1;
    }
    answer_free(&a);
    return 0;
}

int cli_api_stream(struct cli_api *api, const char *target,
                   int (*on_event)(void *arg, const char *event, const char *data, size_t len),
                   void *arg, int *status, char *why, size_t cap)
{
    struct answer a = {.on_event = on_event, .event_arg = arg};
    api->streamed = 1;
    int rc = exchange(api, "GET", target, NULL, &a, why, cap);
    *status = a.status;
    if (rc == 0 && a.status != 200) error_text(&a, why, cap);
    answer_free(&a);
    return rc;
}

void cli_api_logout(struct cli_api *api)
{
    char why[128];
    struct answer a = {0};
    if (api->streamed && api->token[0]) {
        /* hdxd reads no request behind an open stream: a new connection ends the session. */
        cli_disconnect(&api->conn);
        if (cli_connect(api->to, api->ca, NULL, NULL, 0, API_TIMEOUT_MS, &api->conn, why,
                        sizeof(why)) != 0)
            fprintf(stderr, "hdx: cannot log out (%s): the session ends by itself when idle\n",
                    why);
    }
    if (api->conn.ssl && api->token[0])
        (void)exchange(api, "POST", "/auth/logout", NULL, &a, why, sizeof(why));
    answer_free(&a);
    cli_disconnect(&api->conn);
    sodium_memzero(api, sizeof(*api));
    api->conn.fd = -1;
}

/* ---------- query strings ---------- */

int cli_api_param(char *target, size_t cap, const char *key, const char *value)
{
    size_t n = strlen(target);
    int w = snprintf(target + n, cap - n, "%c%s=", strchr(target, '?') ? '&' : '?', key);
    if (w < 0 || (size_t)w >= cap - n) return -1;
    n += (size_t)w;
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (n + 4 >= cap) return -1;
        if (plain) {
            target[n++] = (char)*p;
        } else {
            target[n++] = '%';
            target[n++] = hex[*p >> 4];
            target[n++] = hex[*p & 15];
        }
    }
    target[n] = 0;
    return 0;
}

int cli_api_opt(int argc, char **argv, int *i, struct cli_api_opts *o)
{
    static const char *const names[] = {"--user", "--password-file", "--totp", "--to", "--ca"};
    const char **slots[] = {&o->user, &o->password_file, &o->totp, &o->to, &o->ca};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (!strcmp(argv[*i], names[k])) {
            *slots[k] = cli_arg(argc, argv, i);
            return 1;
        }
    return 0;
}

/* ---------- records in answers ---------- */

int cli_api_record_body(json_t *o, uint8_t **body, size_t *len)
{
    json_t *text = json_object_get(o, "body"), *b64 = json_object_get(o, "body_base64");
    *body = NULL;
    *len = 0;
    if (json_is_string(text)) {
        size_t n = json_string_length(text);
        if (!(*body = malloc(n + 1))) return -1;
        memcpy(*body, json_string_value(text), n);
        *len = n;
        return 0;
    }
    if (!json_is_string(b64)) return -1;
    size_t cap = json_string_length(b64);
    /* libsodium 1.0.18's decoder lets some bytes above 0x7f through as base64 digits: the
     * alphabet is checked first, so a body has one spelling */
    const char *v = json_string_value(b64);
    for (size_t i = 0; i < cap; i++)
        if (!((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') ||
              (v[i] >= '0' && v[i] <= '9') || v[i] == '+' || v[i] == '/' || v[i] == '='))
            return -1;
    if (!(*body = malloc(cap + 1)) ||
        sodium_base642bin(*body, cap, json_string_value(b64), cap, NULL, len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(*body);
        *body = NULL;
        return -1;
    }
    return 0;
}

int cli_api_record_print(json_t *o, int raw, int header)
{
    json_int_t seq = json_integer_value(json_object_get(o, "seq"));
    const char *t = json_string_value(json_object_get(o, "time"));
    const char *sender = json_string_value(json_object_get(o, "sender"));
    const char *type = json_string_value(json_object_get(o, "type"));
    uint8_t *body;
    size_t len;
    if (!seq || !t || !sender || !type || cli_api_record_body(o, &body, &len) != 0) return -1;
    if (header) printf("# seq=%lld time=%s sender=%s type=%s\n", (long long)seq, t, sender, type);
    if (raw) {
        fwrite(body, 1, len, stdout);
    } else {
        for (size_t i = 0; i < len; i++)
            putchar(body[i] == '\r' ? '\n' : body[i]);
        if (len && body[len - 1] != '\r') putchar('\n');
    }
    if (header) putchar('\n');
    sodium_memzero(body, len);
    free(body);
    return 0;
}
