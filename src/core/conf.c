#include "core/conf.h"

#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

enum key_type { KEY_STR, KEY_INT, KEY_SIZE };

struct conf_key {
    const char *section, *name;
    enum key_type type;
    size_t offset, size;
    long long min, max;
    const char *def;
    const char *oneof; /* KEY_STR: the allowed values, '|'-separated; NULL for any */
};

#define STR(sec, key, field, d)                                                                    \
    {                                                                                              \
        sec, key, KEY_STR, offsetof(struct hdx_conf, field),                                       \
            sizeof(((struct hdx_conf *)0)->field), 0, 0, d, NULL                                   \
    }
/* A string key with a fixed set of values, checked where it is set so that a bad one is
 * reported with its file and line. */
#define ONEOF(sec, key, field, values, d)                                                          \
    {                                                                                              \
        sec, key, KEY_STR, offsetof(struct hdx_conf, field),                                       \
            sizeof(((struct hdx_conf *)0)->field), 0, 0, d, values                                 \
    }
#define INT(sec, key, field, lo, hi, d)                                                            \
    {                                                                                              \
        sec, key, KEY_INT, offsetof(struct hdx_conf, field), sizeof(int), lo, hi, d, NULL          \
    }
#define SIZE(sec, key, field, lo, hi, d)                                                           \
    {                                                                                              \
        sec, key, KEY_SIZE, offsetof(struct hdx_conf, field), sizeof(size_t), lo, hi, d, NULL      \
    }

static const struct conf_key conf_keys[] = {
    STR("mllp", "listen", mllp_listen, "127.0.0.1:2575"),
    SIZE("mllp", "max_message", mllp_max_message, 1024, 64 << 20, "1048576"),
    INT("mllp", "read_timeout_ms", mllp_read_timeout_ms, 100, 3600000, "30000"),
    INT("mllp", "idle_timeout_s", mllp_idle_timeout_s, 1, 86400, "600"),
    INT("mllp", "max_inflight", mllp_max_inflight, 1, 1024, "64"),
    INT("mllp", "max_connections", mllp_max_connections, 1, 1000000, "8000"),
    STR("legacy", "listen", legacy_listen, ""),
    STR("legacy", "allow", legacy_allow, "127.0.0.1,::1"),
    INT("legacy", "max_connections", legacy_max_connections, 1, 1000000, "256"),
    STR("sub", "listen", sub_listen, "127.0.0.1:2577"),
    SIZE("sub", "max_queue", sub_max_queue, 65536, 1LL << 30, "4194304"),
    INT("sub", "max_lag_ms", sub_max_lag_ms, 100, 3600000, "5000"),
    INT("sub", "max_connections", sub_max_connections, 1, 1000000, "2000"),
    STR("http", "listen", http_listen, "127.0.0.1:8443"),
    INT("http", "max_connections", http_max_connections, 1, 1000000, "2000"),
    SIZE("http", "max_body", http_max_body, 1024, 64 << 20, "1048576"),
    INT("http", "header_timeout_ms", http_header_timeout_ms, 100, 600000, "10000"),
    INT("http", "request_timeout_ms", http_request_timeout_ms, 100, 3600000, "30000"),
    INT("http", "idle_timeout_s", http_idle_timeout_s, 1, 86400, "60"),
    STR("dicom", "listen", dicom_listen, "127.0.0.1:2762"),
    STR("dicom", "plain_listen", dicom_plain_listen, ""),
    STR("dicom", "plain_allow", dicom_plain_allow, "127.0.0.1,::1"),
    STR("dicom", "ae_title", dicom_ae_title, "HDX"),
    INT("dicom", "max_pdu", dicom_max_pdu, 4096, 16777216, "262144"),
    SIZE("dicom", "max_instance", dicom_max_instance, 1 << 20, 200 << 20, "67108864"),
    INT("dicom", "artim_ms", dicom_artim_ms, 100, 600000, "30000"),
    INT("dicom", "idle_timeout_s", dicom_idle_timeout_s, 1, 86400, "600"),
    INT("dicom", "max_connections", dicom_max_connections, 1, 1000000, "512"),
    INT("dicom", "max_find_results", dicom_max_find_results, 1, 1000000, "10000"),
    STR("dicom", "storage_classes", dicom_storage_classes, ""),
    SIZE("dicom", "max_retrieve", dicom_max_retrieve, 1 << 20, 1 << 30, "268435456"),
    INT("tls", "handshake_timeout_ms", tls_handshake_timeout_ms, 100, 600000, "10000"),
    STR("tls", "min_version", tls_min_version, "1.3"),
    INT("tls", "crl_check_ms", tls_crl_check_ms, 50, 60000, "250"),
    INT("net", "max_connections", net_max_connections, 16, 1000000, "10000"),
    INT("net", "max_handshakes", net_max_handshakes, 1, 1000000, "256"),
    INT("net", "max_per_source", net_max_per_source, 1, 1000000, "64"),
    INT("net", "max_per_principal", net_max_per_principal, 1, 1000000, "256"),
    SIZE("net", "max_unsent", net_max_unsent, 4096, 64 << 20, "262144"),
    STR("fhir", "base_url", fhir_base, ""),
    INT("fhir", "v2_observations", fhir_v2, 0, 1, "1"),
    STR("fhir", "subscription_ca", fhir_sub_ca, ""),
    INT("fhir", "subscriptions_max", fhir_sub_max, 1, 100000, "1000"),
    INT("fhir", "subscription_timeout_ms", fhir_sub_timeout_ms, 100, 600000, "10000"),
    INT("fhir", "subscription_backoff_max_ms", fhir_sub_backoff_max_ms, 100, 3600000, "60000"),
    STR("store", "path", store_path, "store.db"),
    INT("store", "batch_max", store_batch_max, 1, 65536, "2048"),
    SIZE("store", "dedup_window", store_dedup_window, 1024, 1LL << 28, "1048576"),
    SIZE("store", "segment_size", store_segment_size, 1LL << 20, 1LL << 30, "67108864"),
    STR("store", "sync", store_sync, "full"),
    INT("store", "receipts", store_receipts, 0, 1, "1"),
    INT("auth", "argon2_opslimit", auth_argon2_opslimit, 1, 16, "3"),
    INT("auth", "argon2_memlimit_kib", auth_argon2_memlimit_kib, 8192, 1048576, "65536"),
    INT("auth", "password_min_length", auth_password_min_length, 8, 256, "12"),
    STR("auth", "password_blocklist", auth_password_blocklist, "password-blocklist.txt"),
    INT("auth", "session_idle_s", auth_session_idle_s, 2, 86400, "900"),
    INT("auth", "session_max_s", auth_session_max_s, 5, 604800, "28800"),
    INT("auth", "max_sessions", auth_max_sessions, 1, 1000000, "10000"),
    INT("auth", "max_failures", auth_max_failures, 1, 1000, "5"),
    INT("auth", "source_max_failures", auth_source_max_failures, 1, 100000, "20"),
    INT("auth", "spray_accounts", auth_spray_accounts, 2, 16, "5"),
    INT("auth", "failure_window_s", auth_failure_window_s, 1, 86400, "900"),
    INT("auth", "lockout_s", auth_lockout_s, 1, 86400, "300"),
    INT("policy", "training_period_days", policy_training_period_days, 1, 3660, "365"),
    INT("policy", "break_glass_minutes", policy_break_glass_minutes, 1, 1440, "60"),
    STR("log", "level", log_level, "info"),
    ONEOF("debug", "core_dumps", debug_core_dumps, "off|on", "off"),
};

/* 1 when value is one of the '|'-separated choices; else why gets "must be a, b or c". */
static int one_of(const char *choices, const char *value, char *why, size_t why_cap)
{
    size_t len = strlen(value), off;
    const char *p, *bar;
    for (p = choices; p; p = (bar = strchr(p, '|')) ? bar + 1 : NULL)
        if (strncmp(p, value, len) == 0 && (p[len] == '|' || p[len] == 0)) return 1;
    off = (size_t)snprintf(why, why_cap, "must be ");
    for (p = choices; p && off < why_cap; p = bar ? bar + 1 : NULL) {
        bar = strchr(p, '|');
        int n = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = !bar ? "" : strchr(bar + 1, '|') ? ", " : " or ";
        off += (size_t)snprintf(why + off, why_cap - off, "%.*s%s", n, p, sep);
    }
    return 0;
}

static int set_key(struct hdx_conf *c, const struct conf_key *k, const char *value, char *why,
                   size_t why_cap)
{
    char *dst = (char *)c + k->offset;
    if (k->type == KEY_STR) {
        if (k->oneof && !one_of(k->oneof, value, why, why_cap)) return -1;
        if (strlen(value) >= k->size) {
            snprintf(why, why_cap, "value longer than %zu bytes", k->size - 1);
            return -1;
        }
        memcpy(dst, value, strlen(value) + 1);
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end) {
        snprintf(why, why_cap, "not an integer");
        return -1;
    }
    if (v < k->min || v > k->max) {
        snprintf(why, why_cap, "out of range %lld..%lld", k->min, k->max);
        return -1;
    }
    if (k->type == KEY_INT)
        *(int *)(void *)dst = (int)v;
    else
        *(size_t *)(void *)dst = (size_t)v;
    return 0;
}

static const struct conf_key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++)
        if (strcmp(conf_keys[i].section, section) == 0 && strcmp(conf_keys[i].name, name) == 0)
            return &conf_keys[i];
    return NULL;
}

static int check_values(const struct hdx_conf *c, char *why, size_t cap, const char **key)
{
    if (strcmp(c->tls_min_version, "1.3") != 0 && strcmp(c->tls_min_version, "1.2") != 0) {
        *key = "tls.min_version";
        snprintf(why, cap, "must be 1.3 or 1.2");
        return -1;
    }
    if (strcmp(c->store_sync, "full") != 0 && strcmp(c->store_sync, "off") != 0) {
        *key = "store.sync";
        snprintf(why, cap, "must be full or off");
        return -1;
    }
    if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
        strcmp(c->log_level, "warn") && strcmp(c->log_level, "error")) {
        *key = "log.level";
        snprintf(why, cap, "must be debug, info, warn or error");
        return -1;
    }
    return 0;
}

void hdx_conf_defaults(struct hdx_conf *c)
{
    char why[64];
    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), ".");
    for (size_t i = 0; i < sizeof(conf_keys) / sizeof(conf_keys[0]); i++)
        (void)set_key(c, &conf_keys[i], conf_keys[i].def, why, sizeof(why));
}

struct load_ctx {
    struct hdx_conf *c;
    const char *path;
    char *err;
    size_t err_cap;
    int failed;
    int line; /* Debian's libinih reports no line to handlers: the reader counts them */
    FILE *f;
};

/* inih calls the handler right after reading the line that holds the key, so the count of
 * lines read so far is that key's line. */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *lc = stream;
    char *r = fgets(str, num, lc->f);
    if (r) lc->line++;
    return r;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *lc = user;
    int line = lc->line;
    char why[128];
    if (lc->failed) return 0;
    /* [routes] and [route NAME] are route/rconf's, read by hdxd on its own pass */
    if (strcmp(section, "routes") == 0 || strncmp(section, "route ", 6) == 0) return 1;
    const struct conf_key *k = find_key(section, name);
    if (!k) {
        snprintf(lc->err, lc->err_cap, "%s:%d: %s.%s: unknown key", lc->path, line, section, name);
        lc->failed = 1;
        return 0;
    }
    if (set_key(lc->c, k, value, why, sizeof(why)) != 0) {
        snprintf(lc->err, lc->err_cap, "%s:%d: %s.%s: %s", lc->path, line, section, name, why);
        lc->failed = 1;
        return 0;
    }
    return 1;
}

int hdx_conf_load(struct hdx_conf *c, const char *path, char *err, size_t err_cap)
{
    char tmp[HDX_PATH_MAX], why[128];
    const char *key = NULL;
    struct load_ctx lc = {c, path, err, err_cap, 0, 0, NULL};
    if (strlen(path) >= sizeof(tmp)) {
        snprintf(err, err_cap, "%s: path too long", path);
        return HDX_E_CONFIG;
    }
    snprintf(tmp, sizeof(tmp), "%s", path);
    snprintf(c->dir, sizeof(c->dir), "%s", dirname(tmp));
    snprintf(c->path, sizeof(c->path), "%s", path);
    lc.f = fopen(path, "r");
    if (!lc.f) {
        snprintf(err, err_cap, "%s: cannot open: %s", path, strerror(errno));
        return HDX_E_CONFIG;
    }
    int rc = ini_parse_stream(read_line, &lc, on_ini, &lc);
    fclose(lc.f);
    if (lc.failed) return HDX_E_CONFIG;
    if (rc > 0) {
        snprintf(err, err_cap, "%s:%d: syntax error", path, rc);
        return HDX_E_CONFIG;
    }
    if (check_values(c, why, sizeof(why), &key) != 0) {
        snprintf(err, err_cap, "%s: %s: %s", path, key, why);
        return HDX_E_CONFIG;
    }
    return HDX_OK;
}

int hdx_conf_set(struct hdx_conf *c, const char *assignment, char *err, size_t err_cap)
{
    char section[64], why[128];
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    const char *key = NULL;
    if (!dot || !eq || dot > eq || (size_t)(dot - assignment) >= sizeof(section)) {
        snprintf(err, err_cap, "-o %s: expected SECTION.KEY=VALUE", assignment);
        return HDX_E_CONFIG;
    }
    memcpy(section, assignment, (size_t)(dot - assignment));
    section[dot - assignment] = 0;
    char name[64];
    size_t nlen = (size_t)(eq - dot - 1);
    if (nlen >= sizeof(name)) {
        snprintf(err, err_cap, "-o %s: key too long", assignment);
        return HDX_E_CONFIG;
    }
    memcpy(name, dot + 1, nlen);
    name[nlen] = 0;
    const struct conf_key *k = find_key(section, name);
    if (!k) {
        snprintf(err, err_cap, "-o: %s.%s: unknown key", section, name);
        return HDX_E_CONFIG;
    }
    if (set_key(c, k, eq + 1, why, sizeof(why)) != 0 ||
        check_values(c, why, sizeof(why), &key) != 0) {
        snprintf(err, err_cap, "-o: %s.%s: %s", section, name, why);
        return HDX_E_CONFIG;
    }
    return HDX_OK;
}

int hdx_conf_path(const struct hdx_conf *c, const char *name, char *out, size_t cap)
{
    int n =
        name[0] == '/' ? snprintf(out, cap, "%s", name) : snprintf(out, cap, "%s/%s", c->dir, name);
    return n < 0 || (size_t)n >= cap ? HDX_E_INVAL : HDX_OK;
}

const char *hdx_conf_template(void)
{
    return "; hdx.conf: configuration of hdxd for this data directory.\n"
           "; Every key is optional; the values below are the defaults. Override one at start\n"
           "; with: hdxd -c hdx.conf -o section.key=value. docs/CONFIGURATION.md explains each.\n"
           "\n"
           "[mllp]\n"
           "; HL7 v2 over MLLP with mutual TLS. Devices need a certificate: hdx device add NAME\n"
           "listen = 127.0.0.1:2575\n"
           "; largest accepted message in bytes; larger frames get AR and the connection closes\n"
           "max_message = 1048576\n"
           "; a frame that has started must end within this many milliseconds\n"
           "read_timeout_ms = 30000\n"
           "; a connection that sends nothing for this many seconds is closed\n"
           "idle_timeout_s = 600\n"
           "; unacknowledged messages per connection before hdxd stops reading from it\n"
           "max_inflight = 64\n"
           "\n"
           "[legacy]\n"
           "; plaintext MLLP for senders that cannot do TLS: off when empty. Insecure: every\n"
           "; connection is logged as such, and only addresses in allow may connect.\n"
           "listen =\n"
           "allow = 127.0.0.1,::1\n"
           "\n"
           "[sub]\n"
           "; subscribers (hdx tail) over mutual TLS; role subscriber or gateway required\n"
           "listen = 127.0.0.1:2577\n"
           "; bytes queued for one subscriber; past it the subscriber catches up from the\n"
           "; store as it reads, and one that stays behind longer than max_lag_ms is dropped\n"
           "max_queue = 4194304\n"
           "max_lag_ms = 5000\n"
           "\n"
           "[http]\n"
           "; HTTPS (the API and FHIR R4 at /fhir): TLS, a client certificate\n"
           "; optional; empty = off\n"
           "listen = 127.0.0.1:8443\n"
           "max_connections = 2000\n"
           "; largest request body; a larger one gets 413 and the connection closes\n"
           "max_body = 1048576\n"
           "; a request's line and headers must arrive within header_timeout_ms, the whole\n"
           "; request within request_timeout_ms (slow clients are closed with 408)\n"
           "header_timeout_ms = 10000\n"
           "request_timeout_ms = 30000\n"
           "idle_timeout_s = 60\n"
           "\n"
           "[fhir]\n"
           "; the base URL clients reach the HTTPS port at (links, Location, the\n"
           "; CapabilityStatement); empty: https:// and http.listen\n"
           "base_url =\n"
           "; 1: the vital signs of every ORU^R01 are readable and searchable as Observations\n"
           "v2_observations = 1\n"
           "; rest-hook Subscriptions: the CA file their https:// endpoints are checked\n"
           "; against (empty: the system's CAs), each attempt's timeout, the longest wait\n"
           "; between retries (they never stop), and how many Subscriptions may be live\n"
           "subscription_ca =\n"
           "subscription_timeout_ms = 10000\n"
           "subscription_backoff_max_ms = 60000\n"
           "subscriptions_max = 1000\n"
           "\n"
           "[dicom]\n"
           "; DICOM TLS (PS3.15 BCP 195): a client certificate is required, and the calling\n"
           "; AE title must be bound to its device (hdx ae add TITLE --device NAME); empty = off\n"
           "listen = 127.0.0.1:2762\n"
           "; the called AE title hdxd answers to; any other is rejected\n"
           "ae_title = HDX\n"
           "; plaintext DICOM for modalities that cannot do TLS: off when empty (port 11112\n"
           "; is usual). Insecure: logged as such, and only addresses in plain_allow may connect\n"
           "plain_listen =\n"
           "plain_allow = 127.0.0.1,::1\n"
           "; the largest PDU hdxd receives, and the largest data set one C-STORE may carry\n"
           "max_pdu = 262144\n"
           "max_instance = 67108864\n"
           "; ARTIM (ms): the A-ASSOCIATE-RQ must arrive, and a peer close after a release or\n"
           "; abort, within this; an association without a PDU for idle_timeout_s is aborted\n"
           "artim_ms = 30000\n"
           "idle_timeout_s = 600\n"
           "max_connections = 512\n"
           "; storage SOP class UIDs accepted besides the built-in table, comma-separated\n"
           "storage_classes =\n"
           "; DICOMweb (/dicomweb on the HTTPS port): the most bytes one WADO-RS answer holds\n"
           "; (a larger study is refused with 400: retrieve its series or instances); a\n"
           "; STOW-RS request is bounded by http.max_body\n"
           "max_retrieve = 268435456\n"
           "\n"
           "[tls]\n"
           "; 1.3 (default) or 1.2 (then only ECDHE with AES-GCM or ChaCha20-Poly1305)\n"
           "min_version = 1.3\n"
           "handshake_timeout_ms = 10000\n"
           "; how often ca.crl.pem is checked for a new revocation\n"
           "crl_check_ms = 250\n"
           "\n"
           "[net]\n"
           "; admission budgets (docs/CONFIGURATION.md): connections still in the TLS\n"
           "; handshake, all ports and per source address (the oldest are shed first, so a\n"
           "; flood that never authenticates cannot keep enrolled devices out); in total;\n"
           "; authenticated ones per principal; per port: [mllp] [sub] [legacy]\n"
           "; max_connections\n"
           "max_connections = 10000\n"
           "max_handshakes = 256\n"
           "max_per_source = 64\n"
           "max_per_principal = 256\n"
           "; a connection with more unsent bytes than this is not read until they drain\n"
           "max_unsent = 262144\n"
           "\n"
           "[store]\n"
           "path = store.db\n"
           "; records committed in one transaction and one flush at most\n"
           "batch_max = 2048\n"
           "; a resend (same sender, same MSH-10) among this many newest messages is\n"
           "; acknowledged again and not stored twice (about 32 bytes of memory each)\n"
           "dedup_window = 1048576\n"
           "; size of each preallocated segment file holding record bodies (1 MiB - 1 GiB)\n"
           "segment_size = 67108864\n"
           "; full: every acknowledged message is on disk. off: only for measuring the\n"
           "; ceiling without durability; never in production.\n"
           "sync = full\n"
           "; 1: every AA carries the log's signed receipt (ZRC segment, docs/LOG-FORMAT.md)\n"
           "receipts = 1\n"
           "\n"
           "[auth]\n"
           "; Argon2id cost of each password hash and login: passes and memory in KiB\n"
           "; (3 and 65536: about 120 ms on 2 cores; docs/PERFORMANCE.md)\n"
           "argon2_opslimit = 3\n"
           "argon2_memlimit_kib = 65536\n"
           "; new passwords: at least this many characters, none on the blocklist (one a\n"
           "; line, compared case-insensitively; empty: no list) and not the user's name\n"
           "password_min_length = 12\n"
           "password_blocklist = password-blocklist.txt\n"
           "; HTTPS sessions: automatic logoff after session_idle_s without a request, an\n"
           "; absolute lifetime of session_max_s, at most max_sessions live ones\n"
           "session_idle_s = 900\n"
           "session_max_s = 28800\n"
           "max_sessions = 10000\n"
           "; guessing: within failure_window_s, an account with max_failures failed logins\n"
           "; or a source with source_max_failures, or a source that failed on\n"
           "; spray_accounts different accounts (password spraying: an alert), is locked\n"
           "; for lockout_s; an account also waits 1, 2, 4 ... 60 s between failures\n"
           "max_failures = 5\n"
           "source_max_failures = 20\n"
           "spray_accounts = 5\n"
           "failure_window_s = 900\n"
           "lockout_s = 300\n"
           "\n"
           "[policy]\n"
           "; security-awareness training older than this many days: no access to PHI until\n"
           "; it is renewed (hdx training set)\n"
           "training_period_days = 365\n"
           "; an emergency (break-glass) access grant lasts this many minutes\n"
           "break_glass_minutes = 60\n"
           "\n"
           "[log]\n"
           "level = info\n"
           "\n"
           "[debug]\n"
           "; on: hdxd keeps the core-dump limit and ptrace setting it was started with, so a\n"
           "; crash may leave a core file holding plaintext PHI and keys. Never in production.\n"
           "core_dumps = off\n";
}
