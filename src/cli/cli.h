/* cli: the `hdx` subcommands and what they share.
 * Every subcommand prints its usage and exits 2 on a usage error, prints one clear line
 * and exits 1 on failure, and never prints secrets. Commands that read the store open it
 * read-only with the data directory's KEK. Thread: single-threaded except bench and sim. */
#ifndef HDX_CLI_H
#define HDX_CLI_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"
#include "crypto/keys.h"
#include "store/store.h"

struct cli_ctx {
    struct hdx_conf conf;
    struct hdx_keyring *kr;
    struct hdx_store *store;
};

/* Loads DIR/hdx.conf, the KEK and (read-only, or read-write when rw) the store with its keys. */
int cli_open(const char *dir, int rw, struct cli_ctx *ctx);
void cli_close(struct cli_ctx *ctx);

/* A blocking TLS client connection (or plaintext when ctx is NULL). */
struct cli_conn {
    int fd;
    SSL *ssl;
    SSL_CTX *ctx;
};
/* ca may be NULL (then DIR/ca.pem must be given by the caller). */
int cli_connect(const char *hostport, const char *ca, const char *cert, const char *key, int plain,
                int timeout_ms, struct cli_conn *c, char *why, size_t cap);
int cli_write(struct cli_conn *c, const void *buf, size_t len);
/* Returns bytes read (>0), 0 on EOF, -1 on error or timeout. */
long cli_read(struct cli_conn *c, void *buf, size_t cap);
void cli_disconnect(struct cli_conn *c);

/* A buffered reader over a connection, for line protocols (subscription, witness). */
struct cli_reader {
    struct cli_conn conn;
    uint8_t buf[65536];
    size_t off, have;
};
/* The next LF-terminated line without LF into line (NUL-terminated); -1 on EOF, error or a
 * line of cap bytes or more. */
int cli_read_line(struct cli_reader *r, char *line, size_t cap);
int cli_read_exact(struct cli_reader *r, uint8_t *out, size_t len);

/* Splits a file into HL7 messages: MLLP frames if it contains 0x0B, else messages starting
 * at each "MSH" segment, with CRLF/LF turned into CR. Calls cb for each. */
int cli_split_messages(const uint8_t *data, size_t len,
                       int (*cb)(void *ctx, const uint8_t *msg, size_t len), void *ctx);

/* For client commands: loads DIR/hdx.conf into conf (defaults when dir is NULL) and, when
 * *ca is NULL and dir is given, points *ca at DIR/ca.pem (kept in ca_buf). Prints one line
 * naming cmd and returns 1 on failure. */
int cli_client_conf(const char *cmd, const char *dir, struct hdx_conf *conf, const char **ca,
                    char *ca_buf, size_t ca_cap);

/* Finds "-d DIR" etc: returns the value following flag at argv[*i], advancing *i. */
const char *cli_arg(int argc, char **argv, int *i);

/* The options every client command shares: -d DIR, --cert C, --key K, --to HOST:PORT, --ca CA. */
struct cli_client_opts {
    const char *dir, *cert, *key, *to, *ca;
};
/* Takes argv[*i] (and its value) when it is one of them and returns 1; else 0. */
int cli_client_opt(int argc, char **argv, int *i, struct cli_client_opts *o);

struct hdx_admin;
/* Queues the statement and waits until it is an admin record: applied here when no hdxd holds
 * DIR/hdxd.lock, else by hdxd (up to 10 s). HDX_OK, or an error with one line in why. */
int cli_admin_run(const char *dir, struct cli_ctx *ctx, const struct hdx_admin *a, char *why,
                  size_t cap);

int cmd_init(int argc, char **argv);
int cmd_device(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_training(int argc, char **argv);
int cmd_careteam(int argc, char **argv);
int cmd_consent(int argc, char **argv);
int cmd_break_glass(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_access_review(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_sth(int argc, char **argv);
int cmd_proof(int argc, char **argv);
int cmd_verify_proof(int argc, char **argv);
int cmd_witness(int argc, char **argv);
int cmd_receipt(int argc, char **argv);
int cmd_sim(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
