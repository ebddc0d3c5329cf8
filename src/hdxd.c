/* hdxd: the hdx daemon. Foreground process, logs to stderr, SIGTERM/SIGINT stop it cleanly
 * (in-flight messages are committed and answered first). See `hdxd --help`. */
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commit/admin.h"
#include "core/conf.h"
#include "core/err.h"
#include "core/log.h"
#include "crypto/keys.h"
#include "merkle/sth.h"
#include "net/server.h"
#include "store/store.h"

static const char usage_text[] =
    "usage: hdxd -c DIR/hdx.conf [-o SECTION.KEY=VALUE ...]\n"
    "\n"
    "Runs the hdx exchange in the foreground: HL7 v2 over MLLP with mutual TLS (mllp.listen,\n"
    "default 127.0.0.1:2575), subscribers over mutual TLS (sub.listen, 127.0.0.1:2577) and,\n"
    "when legacy.listen is set, plaintext MLLP for allow-listed addresses. Every message is\n"
    "acknowledged (AA) only after it is encrypted and durably committed to DIR's store: its\n"
    "record flushed to an append-only segment file in DIR/segments, its index row committed\n"
    "in DIR/store.db. At start it re-indexes records a crash left unindexed and cuts a torn\n"
    "tail (event=store_recovered), and migrates a store of the first release in place.\n"
    "Device enrolment, revocation and signing keys queued by hdx device become records of\n"
    "the log; hdxd holds DIR/hdxd.lock while it runs (one hdxd per data directory).\n"
    "It refuses to start when kek.key, log.key or server.key is a symbolic link, is not a\n"
    "regular file or is open to group or others (0600 wanted), naming the chmod to run.\n"
    "It runs without core dumps (RLIMIT_CORE 0, not dumpable, so no ptrace either) unless\n"
    "debug.core_dumps=on, for debugging only: then it keeps the core limit and dumpable\n"
    "flag it was started with and logs event=core_dumps_enabled, as a core file may hold\n"
    "plaintext PHI and keys.\n"
    "Every record is a leaf of a Merkle tree whose heads hdxd signs with DIR/log.key at most\n"
    "once a second (hdx sth); on a store that does not match its signed heads it starts\n"
    "read-only (event=log_alarm, AR for every message) until an operator runs hdx verify.\n"
    "\n"
    "  -c FILE              configuration written by `hdx init DIR` (required)\n"
    "  -o SECTION.KEY=VALUE override one configuration key (repeatable), e.g.\n"
    "                       -o mllp.listen=127.0.0.1:12575 -o legacy.listen=127.0.0.1:2576\n"
    "  -h, --help           this text\n"
    "\n"
    "Logs are key=value lines on stderr and never contain message content or secrets.\n"
    "SIGTERM or SIGINT: stop accepting, answer what is in flight, exit 0.\n"
    "SIGHUP: read the [route NAME] sections of hdx.conf again (docs/ROUTES.md): new routes\n"
    "start, changed ones restart from their cursor, removed ones stop, a wrong one keeps its\n"
    "previous configuration (event=route_refused names file, line and key).\n"
    "Outbound routes deliver committed messages over MLLP/TLS, HTTPS or to spool directories,\n"
    "and (kind = dicom) stored DICOM instances by C-STORE over DICOM TLS, STOW-RS or to a\n"
    "spool directory, each from its own durable cursor in DIR/routes/NAME/ (hdx route list,\n"
    "hdx route status).\n"
    "The HTTPS port (http.listen) serves logins, the API, /metrics and FHIR R4 at /fhir,\n"
    "whose view of the log is DIR/fhir.db (rebuilt from the log when it is missing or stale),\n"
    "and FHIR Subscriptions: websocket clients at /fhir/ws, rest-hook endpoints POSTed by one\n"
    "thread each, their event numbers in DIR/subscriptions.db (docs/FHIR.md).\n"
    "DICOM (docs/DICOM-CONFORMANCE.md): C-ECHO, C-STORE and C-FIND over DICOM TLS\n"
    "(dicom.listen, 127.0.0.1:2762, a client certificate required, the calling AE title bound\n"
    "to its device with hdx ae add) and, when dicom.plain_listen is set, C-ECHO and C-STORE in\n"
    "plaintext for allow-listed addresses; each instance is a record, its C-STORE Success sent\n"
    "once it is durable. C-FIND (Patient and Study Root, roles subscriber and gateway without a\n"
    "scope) searches an in-memory catalogue read from the log at start: the instances are\n"
    "decrypted once then, and nothing of their keys is written to disk. DICOMweb on the HTTPS\n"
    "port (docs/DICOMWEB.md): STOW-RS, QIDO-RS and WADO-RS at /dicomweb, under the policy and\n"
    "audited; SUB kind=dicom on the subscription port announces each stored instance.\n"
    "Exit status: 0 clean stop, 1 runtime failure, 2 usage or configuration error.\n"
    "Keys and their defaults: docs/CONFIGURATION.md.\n";

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    hdx_info("signal", "sig=%d", (int)sig);
    hdx_server_shutdown(arg);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    hdx_info("signal", "sig=%d action=reload_routes", (int)sig);
    hdx_server_reload(arg);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int parse_args(int argc, char **argv, struct hdx_conf *conf)
{
    const char *conf_path = NULL;
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            i++; /* applied after the file, below */
        } else {
            fprintf(stderr, "hdxd: unknown argument '%s'\n%s", argv[i], usage_text);
            return 2;
        }
    }
    if (!conf_path) {
        fprintf(stderr, "hdxd: -c DIR/hdx.conf is required\n%s", usage_text);
        return 2;
    }
    hdx_conf_defaults(conf);
    if (hdx_conf_load(conf, conf_path, err, sizeof(err)) != HDX_OK) {
        fprintf(stderr, "hdxd: %s\n", err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && hdx_conf_set(conf, argv[++i], err, sizeof(err)) != HDX_OK) {
            fprintf(stderr, "hdxd: %s\n", err);
            return 2;
        }
    }
    return 0;
}

/* Invariant 2: no plaintext PHI in crash dumps. Message bodies, the keys and the per-thread
 * key contexts the pipeline keeps (keys.h) are in this process's memory: no core file, and no
 * ptrace or /proc/PID/mem by other processes of the same user. Decided once the configuration
 * is read, which is safe because parse_args reads hdx.conf only: no key, no message, nothing
 * of the store is in memory yet. The hard limit goes to 0 too, so nothing later can raise it. */
static int limit_core_dumps(const struct hdx_conf *conf)
{
    const struct rlimit no_core = {0, 0};
    if (strcmp(conf->debug_core_dumps, "on") == 0) return 0; /* as the environment set them */
    if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        fprintf(stderr, "hdxd: cannot disable core dumps\n");
        return 1;
    }
    return 0;
}

/* Logged at every start, so a debugging setting left on in production shows. */
static void warn_core_dumps(void)
{
    struct rlimit rl;
    char limit[24], note[96];
    if (getrlimit(RLIMIT_CORE, &rl) != 0)
        snprintf(limit, sizeof(limit), "unknown");
    else if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(limit, sizeof(limit), "unlimited");
    else
        snprintf(limit, sizeof(limit), "%llu", (unsigned long long)rl.rlim_cur);
    hdx_warn("core_dumps_enabled", "core_limit=%s dumpable=%d note=%s", limit,
             prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
             hdx_log_str(note, sizeof(note),
                         "debug.core_dumps=on: a core file may hold plaintext PHI and keys"));
}

static int open_state(const struct hdx_conf *conf, struct hdx_keyring **kr, EVP_PKEY **log_key,
                      struct hdx_store **rw, struct hdx_store **ro)
{
    char path[HDX_PATH_MAX], why[512] = "data directory path too long";
    int rc;
    if (hdx_conf_path(conf, "kek.key", path, sizeof(path)) ||
        (rc = hdx_keyring_open(path, kr, why, sizeof(why))) != HDX_OK) {
        fprintf(stderr, "hdxd: cannot load the key-encryption key: %s\n", why);
        return 1;
    }
    if (hdx_conf_path(conf, "log.key", path, sizeof(path)) ||
        hdx_logkey_load_private(path, log_key, why, sizeof(why)) != HDX_OK) {
        fprintf(stderr, "hdxd: cannot load the log signing key: %s\n", why);
        return 1;
    }
    int sync = strcmp(conf->store_sync, "off") == 0 ? HDX_STORE_NOSYNC : 0;
    if (hdx_conf_path(conf, conf->store_path, path, sizeof(path)) ||
        hdx_store_open(path, sync | HDX_STORE_WRITER, rw) != HDX_OK ||
        hdx_store_open(path, HDX_STORE_RDONLY, ro) != HDX_OK) {
        fprintf(stderr, "hdxd: cannot open the store %s (made by hdx init)\n", path);
        return 1;
    }
    hdx_store_set_segment_size(*rw, conf->store_segment_size);
    if ((rc = hdx_store_keys_load(*ro, *kr)) != HDX_OK || !hdx_keyring_current(*kr) ||
        !hdx_keyring_has_blind(*kr)) {
        fprintf(stderr, "hdxd: cannot unwrap the data keys in %s with kek.key (%s)\n", path,
                rc ? hdx_strerror(rc) : "no data key");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct hdx_conf conf;
    struct hdx_keyring *kr = NULL;
    EVP_PKEY *log_key = NULL;
    struct hdx_store *rw = NULL, *ro = NULL;
    struct hdx_server *srv = NULL;
    char why[512];
    int rc = parse_args(argc, argv, &conf);
    if (rc) return rc;
    if ((rc = limit_core_dumps(&conf)) != 0) return rc;
    enum hdx_log_level level = HDX_LOG_INFO;
    hdx_log_level_parse(conf.log_level, &level);
    hdx_log_set_level(level);
    if (strcmp(conf.debug_core_dumps, "on") == 0) warn_core_dumps();
    umask(077); /* everything hdxd creates (WAL, shm) is private */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* One hdxd per data directory; hdx device applies the admin queue itself only when it
     * can take this lock (commit/admin.h). Held until exit. */
    char lock_path[HDX_PATH_MAX];
    int lock_fd = -1;
    if (hdx_conf_path(&conf, "hdxd.lock", lock_path, sizeof(lock_path)) ||
        (rc = hdx_admin_lock(lock_path, &lock_fd)) != HDX_OK) {
        fprintf(stderr, "hdxd: %s\n",
                rc == HDX_E_EXISTS ? "another hdxd is running on this data directory "
                                     "(hdxd.lock is held)"
                                   : "cannot open the lock file hdxd.lock in the data directory");
        return 1;
    }
    size_t migrated = 0;
    if (open_state(&conf, &kr, &log_key, &rw, &ro) != 0 ||
        (rc = hdx_admin_migrate(rw, &migrated)) != HDX_OK) {
        if (rc) fprintf(stderr, "hdxd: cannot log the device registry: %s\n", hdx_strerror(rc));
        hdx_store_close(rw);
        hdx_store_close(ro);
        hdx_keyring_free(kr);
        EVP_PKEY_free(log_key);
        return 1;
    }
    /* The changelist folds the add/remove of a write event within one loop turn into a
     * single epoll_ctl: each ACK would otherwise cost two. */
    struct event_config *cfg = event_config_new();
    if (cfg) event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg) event_config_free(cfg);
    if (!base ||
        (rc = hdx_server_new(&conf, base, kr, log_key, ro, rw, &srv, why, sizeof(why))) != HDX_OK) {
        fprintf(stderr, "hdxd: %s\n", base ? why : "cannot create event loop");
        hdx_store_close(ro);
        hdx_keyring_free(kr);
        EVP_PKEY_free(log_key);
        if (base) event_base_free(base);
        return base && rc == HDX_E_CONFIG ? 2 : 1; /* a wrong [route NAME] section */
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, srv);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, srv);
    struct event *sighup = evsignal_new(base, SIGHUP, on_sighup, srv);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);
    hdx_info("started", "version=%s dir=%s pid=%d", HDX_VERSION, conf.dir, (int)getpid());
    if (migrated) hdx_info("registry_migration", "device_import_queued=%zu", migrated);
    event_base_dispatch(base);
    hdx_server_free(srv);
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    event_base_free(base);
    hdx_store_close(ro);
    hdx_keyring_free(kr);
    EVP_PKEY_free(log_key);
    hdx_info("stopped", "status=clean");
    close(lock_fd);
    return 0;
}
