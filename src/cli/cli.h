/* cli: the `hdx` subcommands and what they share.
 * Every subcommand prints its usage and exits 2 on a usage error, prints one clear line
 * and exits 1 on failure, and never prints secrets. Commands that read the store open it
 * read-only with the data directory's KEK. Thread: single-threaded except bench and sim. */
#ifndef HDX_CLI_H
#define HDX_CLI_H

#include <jansson.h>
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

/* hdxd's HTTPS API as a signed-in user (api_client.c, docs/HTTP.md): the operator reads
 * (hdx query|get|tail --user) go through hdxd, so the policy decides and the audit records
 * them as for anyone. The password comes from password_file or a prompt on the terminal, the
 * TOTP code from totp or a prompt; the connection is verified against DIR/ca.pem (or ca). */
struct cli_api_opts {
    const char *dir, *to, *ca, *user, *password_file, *totp;
};
struct cli_api {
    struct cli_conn conn;
    char host[300], to[300], ca[4096];
    char token[64];
    int streamed; /* the connection carries an event stream: the logout needs another */
};
/* 0 signed in; else one line on stderr naming cmd, and 1 (refused, failed) or 2 (usage). */
int cli_api_login(const char *cmd, const struct cli_api_opts *o, struct cli_api *api);
/* GET target: 0 with *status and, for a 200, the JSON answer in *out (caller decrefs; other
 * statuses: the error's code and message in why); -1 and why when no answer came. */
int cli_api_get(struct cli_api *api, const char *target, int *status, json_t **out, char *why,
                size_t cap);
/* GET target as Server-Sent Events: on_event for each event until it returns non-zero or
 * hdxd ends the stream; 0 then, with *status (not 200: why holds hdxd's error). */
int cli_api_stream(struct cli_api *api, const char *target,
                   int (*on_event)(void *arg, const char *event, const char *data, size_t len),
                   void *arg, int *status, char *why, size_t cap);
/* Ends the session (POST /auth/logout) and the connection; wipes the token. */
void cli_api_logout(struct cli_api *api);
/* Appends ?key=value or &key=value to target, value percent-encoded; -1 if it does not fit. */
int cli_api_param(char *target, size_t cap, const char *key, const char *value);
/* A record of an /api answer: its message bytes ("body", or "body_base64" for a message that
 * is not UTF-8) into *body (caller wipes and frees); or printed as the offline commands print
 * it (with the '# seq=…' header line and a blank line when header). -1 when members lack. */
int cli_api_record_body(json_t *o, uint8_t **body, size_t *len);
int cli_api_record_print(json_t *o, int raw, int header);
/* Takes argv[*i] (and its value) when it is --user, --password-file, --totp, --to or --ca. */
int cli_api_opt(int argc, char **argv, int *i, struct cli_api_opts *o);

struct hdx_admin;
/* Queues the statement and waits until it is an admin record: applied here when no hdxd holds
 * DIR/hdxd.lock, else by hdxd (up to 10 s). HDX_OK, or an error with one line in why. */
int cli_admin_run(const char *dir, struct cli_ctx *ctx, const struct hdx_admin *a, char *why,
                  size_t cap);

/* What a read of the store file itself (hdx get|query without --user) disclosed about one
 * patient (has_patient 0: records without one). */
struct cli_read_tally {
    uint8_t patient[HDX_BLIND_LEN];
    int has_patient;
    uint64_t first, last, count;
};
/* Its audit records, one per tally entry: event access, action offline_read, principal
 * local:LOGIN, role operator, detail route=ROUTE; queued and committed like admin statements
 * (by hdxd when it runs, else here) before the command prints anything. HDX_OK, or a warning
 * on stderr: a store that cannot take them (damaged, hdxd's log alarm) must still be
 * readable for recovery. */
int cli_offline_audit(const char *dir, const char *route, const struct cli_read_tally *t, size_t n);

int cmd_init(int argc, char **argv);
int cmd_device(int argc, char **argv);
int cmd_ae(int argc, char **argv);
int cmd_dicom(int argc, char **argv);
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
int cmd_route(int argc, char **argv);
int cmd_client(int argc, char **argv);

/* 1 when name is a SMART client's (smart_clients: active, revoked, or a damaged row), else 0:
 * users, devices and clients share one namespace of principal names (client.c). */
int cli_is_client(struct cli_ctx *ctx, const char *name);

#endif
