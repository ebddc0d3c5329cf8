/* conf: hdx.conf (INI, read with libinih) through one key table.
 * Each key has a type, range and default (conf.c: conf_keys[]); an unknown section or key,
 * a bad value or an out-of-range number fails with "FILE:LINE: SECTION.KEY: reason".
 * -o SECTION.KEY=VALUE overrides are checked by the same table (reported as "-o").
 * Paths are relative to the directory holding hdx.conf (the data directory).
 * Thread: load once at startup; the struct is read-only afterwards. */
#ifndef HDX_CONF_H
#define HDX_CONF_H

#include <stddef.h>

#define HDX_PATH_MAX 4096

struct hdx_conf {
    char dir[HDX_PATH_MAX];  /* data directory = dirname of the conf file */
    char path[HDX_PATH_MAX]; /* the conf file itself ("" before hdx_conf_load) */
    /* [mllp] */
    char mllp_listen[128];
    size_t mllp_max_message;
    int mllp_read_timeout_ms; /* a started frame must complete within this */
    int mllp_idle_timeout_s;  /* a connection with no traffic is closed after this */
    int mllp_max_inflight;    /* unacknowledged messages per connection before reads pause */
    int mllp_max_connections; /* this port's connection budget */
    /* [legacy] */
    char legacy_listen[128];
    char legacy_allow[512]; /* comma-separated addresses or CIDRs */
    int legacy_max_connections;
    /* [sub] */
    char sub_listen[128];
    size_t sub_max_queue; /* bytes queued for one subscriber; beyond it, it catches up */
    int sub_max_lag_ms;   /* a subscriber behind for longer than this is dropped */
    int sub_max_connections;
    /* [http] */
    char http_listen[128]; /* "" = off */
    int http_max_connections;
    size_t http_max_body;
    int http_header_timeout_ms;  /* the request line and headers must arrive within this */
    int http_request_timeout_ms; /* the whole request, body included */
    int http_idle_timeout_s;     /* a keep-alive connection with no request */
    /* [dicom] (docs/DICOM-CONFORMANCE.md) */
    char dicom_listen[128];       /* DICOM TLS; "" = off */
    char dicom_plain_listen[128]; /* plaintext DICOM, allow-listed; "" = off (default) */
    char dicom_plain_allow[512];
    char dicom_ae_title[17];   /* the called AE title hdxd answers to */
    int dicom_max_pdu;         /* the maximum PDU length hdxd receives (A-ASSOCIATE-AC) */
    size_t dicom_max_instance; /* the largest data set one C-STORE may carry */
    int dicom_artim_ms;        /* ARTIM: awaiting the A-ASSOCIATE-RQ, and the close */
    int dicom_idle_timeout_s;  /* an association with no PDU for this long is aborted */
    int dicom_max_connections;
    int dicom_max_find_results;       /* a C-FIND with more matches is refused, not cut short */
    char dicom_storage_classes[2048]; /* more storage SOP class UIDs, comma-separated */
    size_t dicom_max_retrieve;        /* the most bytes of one WADO-RS answer */
    /* [tls] */
    int tls_handshake_timeout_ms;
    char tls_min_version[8]; /* "1.3" (default) or "1.2" */
    int tls_crl_check_ms;    /* how often the CRL file is checked for changes */
    /* [net] */
    int net_max_connections;   /* in total (net/conn.h: admission) */
    int net_max_handshakes;    /* not yet authenticated, all ports */
    int net_max_per_source;    /* not yet authenticated, from one address (IPv6: one /64) */
    int net_max_per_principal; /* authenticated, one principal, all ports */
    size_t net_max_unsent;     /* unsent bytes after which a connection is not read */
    /* [fhir] (docs/FHIR.md) */
    char fhir_base[160]; /* the base clients reach the HTTPS port at; "": https://http.listen */
    int fhir_v2;         /* ORU^R01 vital signs readable as Observations */
    char fhir_sub_ca[HDX_PATH_MAX]; /* CAs for rest-hook endpoints; "": the system's */
    int fhir_sub_max;               /* live Subscriptions */
    int fhir_sub_timeout_ms, fhir_sub_backoff_max_ms;
    /* [store] */
    char store_path[HDX_PATH_MAX];
    int store_batch_max;
    int store_receipts;        /* sign a receipt for every AA (ZRC segment) */
    size_t store_dedup_window; /* newest messages among which resends are recognised */
    size_t store_segment_size; /* bytes of each preallocated segment file */
    char store_sync[8]; /* "full" (durable, default) or "off" (benchmarks of the ceiling only) */
    /* [auth] (auth/password.h) */
    int auth_argon2_opslimit;                   /* Argon2id passes */
    int auth_argon2_memlimit_kib;               /* Argon2id memory, KiB */
    int auth_password_min_length;               /* characters (SP 800-63B: at least 8) */
    char auth_password_blocklist[HDX_PATH_MAX]; /* relative to the data directory; "": none */
    int auth_session_idle_s;      /* automatic logoff after this long without a request */
    int auth_session_max_s;       /* a session's absolute lifetime */
    int auth_max_sessions;        /* live sessions at most (the least recently used goes) */
    int auth_max_failures;        /* failed logins of one account in the window: locked */
    int auth_source_max_failures; /* failed logins from one source in the window: locked */
    int auth_spray_accounts;      /* accounts failed from one source in the window: spraying */
    int auth_failure_window_s;
    int auth_lockout_s;
    /* [policy] (policy/policy.h) */
    int policy_training_period_days; /* training older than this: no PHI until renewed */
    int policy_break_glass_minutes;  /* how long an emergency access grant lasts */
    /* [log] */
    char log_level[8];
    /* [debug] */
    char debug_core_dumps[8]; /* "off" (default) or "on": hdxd leaves core dumps as it found them */
};

void hdx_conf_defaults(struct hdx_conf *c);
/* Loads path (after defaults). err receives one line on failure. */
int hdx_conf_load(struct hdx_conf *c, const char *path, char *err, size_t err_cap);
/* Applies "section.key=value". */
int hdx_conf_set(struct hdx_conf *c, const char *assignment, char *err, size_t err_cap);
/* Resolves a path relative to c->dir. */
int hdx_conf_path(const struct hdx_conf *c, const char *name, char *out, size_t cap);
/* The commented default file written by hdx init. */
const char *hdx_conf_template(void);

#endif
