#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/mllp.h"

int cli_open(const char *dir, int rw, struct cli_ctx *ctx)
{
    char path[HDX_PATH_MAX], err[512];
    memset(ctx, 0, sizeof(*ctx));
    hdx_conf_defaults(&ctx->conf);
    if (hdx_path(path, sizeof(path), dir, "hdx.conf") != 0 ||
        hdx_conf_load(&ctx->conf, path, err, sizeof(err)) != HDX_OK) {
        fprintf(stderr, "hdx: %s is not an hdx data directory (%s)\n", dir, err);
        return 1;
    }
    int rc;
    snprintf(err, sizeof(err), "data directory path too long");
    if (hdx_conf_path(&ctx->conf, "kek.key", path, sizeof(path)) ||
        (rc = hdx_keyring_open(path, &ctx->kr, err, sizeof(err))) != HDX_OK) {
        fprintf(stderr, "hdx: cannot load the key-encryption key: %s\n", err);
        return 1;
    }
    if (hdx_conf_path(&ctx->conf, ctx->conf.store_path, path, sizeof(path)) ||
        hdx_store_open(path, rw ? 0 : HDX_STORE_RDONLY, &ctx->store) != HDX_OK) {
        fprintf(stderr, "hdx: cannot open the store %s\n", path);
        cli_close(ctx);
        return 1;
    }
    if ((rc = hdx_store_keys_load(ctx->store, ctx->kr)) != HDX_OK) {
        fprintf(stderr, "hdx: cannot unwrap the store's keys with kek.key: %s\n", hdx_strerror(rc));
        cli_close(ctx);
        return 1;
    }
    return 0;
}

int cli_client_conf(const char *cmd, const char *dir, struct hdx_conf *conf, const char **ca,
                    char *ca_buf, size_t ca_cap)
{
    char path[HDX_PATH_MAX], err[512] = "path too long";
    hdx_conf_defaults(conf);
    if (!dir) return 0;
    if (hdx_path(path, sizeof(path), dir, "hdx.conf") ||
        hdx_conf_load(conf, path, err, sizeof(err)) != HDX_OK) {
        fprintf(stderr, "hdx %s: %s\n", cmd, err);
        return 1;
    }
    if (!*ca && hdx_path(ca_buf, ca_cap, dir, "ca.pem") == 0) *ca = ca_buf;
    return 0;
}

void cli_close(struct cli_ctx *ctx)
{
    hdx_store_close(ctx->store);
    hdx_keyring_free(ctx->kr);
    ctx->store = NULL;
    ctx->kr = NULL;
}

const char *cli_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "hdx: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

int cli_client_opt(int argc, char **argv, int *i, struct cli_client_opts *o)
{
    static const char *const names[] = {"-d", "--cert", "--key", "--to", "--ca"};
    const char **slots[] = {&o->dir, &o->cert, &o->key, &o->to, &o->ca};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (!strcmp(argv[*i], names[k])) {
            *slots[k] = cli_arg(argc, argv, i);
            return 1;
        }
    return 0;
}

static int tcp_connect(const char *hostport, int timeout_ms, char *why, size_t cap)
{
    char host[256], portstr[8];
    int port;
    struct addrinfo hints = {0}, *res = NULL;
    if (hdx_split_hostport(hostport, host, sizeof(host), &port) != 0) {
        snprintf(why, cap, "'%s' is not HOST:PORT", hostport);
        return -1;
    }
    snprintf(portstr, sizeof(portstr), "%d", port);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, portstr, &hints, &res) != 0) {
        snprintf(why, cap, "cannot resolve %s", host);
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(why, cap, "cannot connect to %s: %s", hostport, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        int one = 1; /* every outgoing connection: a sender may pipeline (server.c) */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int tls_setup(struct cli_conn *c, const char *hostport, const char *ca, const char *cert,
                     const char *key, char *why, size_t cap)
{
    char host[256];
    int port;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
        SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1) {
        snprintf(why, cap, "cannot load CA %s", ca);
        return -1;
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(why, cap, "cannot load certificate %s and key %s", cert, key ? key : "-");
        return -1;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->ssl = SSL_new(c->ctx);
    hdx_split_hostport(hostport, host, sizeof(host), &port);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
        SSL_set1_host(c->ssl, host);
        SSL_set_tlsext_host_name(c->ssl, host);
    }
    return 0;
}

/* The context is made before the TCP connection: a connection that then sends nothing while
 * the client reads its key files looks like a flood connection and may be shed first. */
static int tls_go(struct cli_conn *c, const char *hostport, char *why, size_t cap)
{
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        const char *r = ERR_reason_error_string(ERR_peek_last_error());
        snprintf(why, cap, "TLS handshake with %s failed: %s", hostport,
                 r ? r : "connection closed by the server");
        return -1;
    }
    return 0;
}

int cli_connect(const char *hostport, const char *ca, const char *cert, const char *key, int plain,
                int timeout_ms, struct cli_conn *c, char *why, size_t cap)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (!plain && tls_setup(c, hostport, ca, cert, key, why, cap) != 0) {
        cli_disconnect(c);
        return -1;
    }
    c->fd = tcp_connect(hostport, timeout_ms, why, cap);
    if (c->fd < 0) {
        cli_disconnect(c);
        return -1;
    }
    if (!plain && tls_go(c, hostport, why, cap) != 0) {
        cli_disconnect(c);
        return -1;
    }
    return 0;
}

int cli_write(struct cli_conn *c, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        long n = c->ssl ? SSL_write(c->ssl, p, (int)len) : write(c->fd, p, len);
        if (n < 0 && !c->ssl && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

long cli_read(struct cli_conn *c, void *buf, size_t cap)
{
    for (;;) {
        long n = c->ssl ? SSL_read(c->ssl, buf, (int)cap) : read(c->fd, buf, cap);
        if (n > 0) return n;
        if (c->ssl) {
            int e = SSL_get_error(c->ssl, (int)n);
            return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
        if (n < 0 && errno == EINTR) continue;
        return n == 0 ? 0 : -1;
    }
}

void cli_disconnect(struct cli_conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static int reader_fill(struct cli_reader *r)
{
    if (r->off == r->have) r->off = r->have = 0;
    if (r->have == sizeof(r->buf)) {
        memmove(r->buf, r->buf + r->off, r->have - r->off);
        r->have -= r->off;
        r->off = 0;
    }
    long n = cli_read(&r->conn, r->buf + r->have, sizeof(r->buf) - r->have);
    if (n <= 0) return -1;
    r->have += (size_t)n;
    return 0;
}

int cli_read_line(struct cli_reader *r, char *line, size_t cap)
{
    for (;;) {
        uint8_t *nl = memchr(r->buf + r->off, '\n', r->have - r->off);
        if (nl) {
            size_t len = (size_t)(nl - (r->buf + r->off));
            if (len >= cap) return -1;
            memcpy(line, r->buf + r->off, len);
            line[len] = 0;
            r->off += len + 1;
            return 0;
        }
        if (r->have - r->off >= cap || reader_fill(r) != 0) return -1;
    }
}

int cli_read_exact(struct cli_reader *r, uint8_t *out, size_t len)
{
    while (len) {
        if (r->off == r->have && reader_fill(r) != 0) return -1;
        size_t n = r->have - r->off < len ? r->have - r->off : len;
        memcpy(out, r->buf + r->off, n);
        r->off += n;
        out += n;
        len -= n;
    }
    return 0;
}

static int split_framed(const uint8_t *data, size_t len,
                        int (*cb)(void *ctx, const uint8_t *msg, size_t len), void *ctx)
{
    size_t off = 0;
    while (off < len) {
        struct mllp_scan s;
        size_t resume = 0;
        if (mllp_scan(data + off, len - off, 64u << 20, &resume, &s) != MLLP_FRAME) break;
        int rc = cb(ctx, data + off + s.payload_off, s.payload_len);
        if (rc) return rc;
        off += s.consumed;
    }
    return 0;
}

int cli_split_messages(const uint8_t *data, size_t len,
                       int (*cb)(void *ctx, const uint8_t *msg, size_t len), void *ctx)
{
    if (memchr(data, MLLP_SB, len)) return split_framed(data, len, cb, ctx);
    uint8_t *buf = malloc(len + 1);
    size_t n = 0, start = 0;
    int rc = 0;
    if (!buf) return -1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') continue; /* CRLF -> CR */
        uint8_t ch = data[i] == '\n' ? '\r' : data[i];
        int seg_start = n == 0 || buf[n - 1] == '\r';
        if (seg_start && ch == 'M' && len - i >= 4 && memcmp(data + i, "MSH", 3) == 0 &&
            n > start) {
            while (n > start && buf[n - 1] == '\r')
                n--;
            if ((rc = cb(ctx, buf + start, n - start)) != 0) break;
            start = n;
        }
        buf[n++] = ch;
    }
    while (!rc && n > start && buf[n - 1] == '\r')
        n--;
    if (!rc && n > start) rc = cb(ctx, buf + start, n - start);
    free(buf);
    return rc;
}
