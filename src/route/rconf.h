/* rconf: outbound routes as declared in hdx.conf, one [route NAME] section each, and the
 * [routes] section (docs/ROUTES.md). Read with libinih like the rest of hdx.conf (core/conf
 * leaves these sections to this module); every key is checked here, and a wrong one is
 * reported as "FILE:LINE: route NAME: KEY: reason".
 * Each route is judged on its own: hdx_routes_conf_load returns every route it found, the bad
 * ones with their error and valid 0, so that a reload can refuse one route and apply the
 * others; hdxd refuses to start on any bad route.
 * A route's fingerprint is the SHA-256 of its keys as written (in order): a reload restarts a
 * route only when it changed. Match expressions and transforms are compiled here
 * (route/match.h, route/transform.h) and owned by the route conf.
 * Thread: load anywhere; the result is read-only afterwards. */
#ifndef HDX_ROUTE_RCONF_H
#define HDX_ROUTE_RCONF_H

#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

#define HDX_ROUTE_NAME_MAX 64
#define HDX_ROUTES_MAX 64
#define HDX_ROUTE_TRANSFORMS_MAX 64
#define HDX_ROUTE_LANES_MAX 64

enum hdx_route_dest {
    HDX_DEST_MLLPS = 1, /* mllps://HOST:PORT: MLLP over TLS, server verified, client cert */
    HDX_DEST_MLLP,      /* mllp://HOST:PORT: plaintext, only to [routes] plaintext_allow */
    HDX_DEST_HTTPS,     /* https://HOST:PORT/PATH: POST, a 2xx answer is the acknowledgement */
    HDX_DEST_SPOOL,     /* spool:/DIR: one file per message, fsync'd, renamed into place */
    HDX_DEST_DICOMS,    /* dicoms://HOST:PORT/AE: C-STORE over DICOM TLS (route/scu.h) */
    HDX_DEST_DICOM,     /* dicom://HOST:PORT/AE: plaintext, only to [routes] plaintext_allow */
};

enum hdx_route_kind {
    HDX_ROUTE_HL7V2 = 1, /* committed HL7 v2 messages (the default) */
    HDX_ROUTE_DICOM,     /* stored DICOM instances (Part 10 files) */
};

enum hdx_route_order {
    HDX_ORDER_ROUTE = 1, /* strict commit order over one connection */
    HDX_ORDER_PATIENT,   /* per patient, over `lanes` connections */
};

struct hdx_match;
struct hdx_transform;

struct hdx_route_conf {
    char name[HDX_ROUTE_NAME_MAX + 1];
    int line; /* of the section header */
    enum hdx_route_kind kind;
    int valid;
    char error[512]; /* when !valid */
    char match_text[4097];
    struct hdx_match *match; /* NULL: match = "*" */
    char to[1024];
    enum hdx_route_dest dest;
    char host[256]; /* mllp, mllps, https */
    int port;
    char path[HDX_PATH_MAX]; /* https: the request target; spool: the directory (absolute) */
    char cert[HDX_PATH_MAX], key[HDX_PATH_MAX], ca[HDX_PATH_MAX]; /* absolute */
    char server_name[256]; /* the name the server certificate must carry; default host */
    char called_ae[17], calling_ae[17]; /* dicom(s)://: the AE titles of the association */
    char content_type[128];
    int max_inflight;
    enum hdx_route_order order;
    int lanes;
    int connect_timeout_ms, ack_timeout_ms;
    int max_attempts; /* a message answered AE (or not at all) this often: dead letter */
    int backoff_ms, backoff_max_ms;
    int purpose; /* enum hdx_purpose: what the disclosure is for (policy/policy.h) */
    size_t ntransforms;
    char *transforms[HDX_ROUTE_TRANSFORMS_MAX]; /* the lines as written */
    struct hdx_transform *transform;            /* NULL: none */
    char plaintext_allow[512]; /* mllp://, dicom://: [routes] plaintext_allow as loaded */
    uint8_t fingerprint[32];
};

struct hdx_routes_conf {
    char plaintext_allow[512]; /* [routes] plaintext_allow: hosts or CIDRs, comma-separated */
    size_t n;
    struct hdx_route_conf *r[HDX_ROUTES_MAX];
    /* an error outside any one route (syntax, [routes] keys, too many routes): nothing of
     * the file is then applied */
    char error[512];
};

/* Reads the route sections of path (relative paths against dir). HDX_OK: out holds every
 * route (check each one's valid); HDX_E_CONFIG: out->error says why no route could be read.
 * Either way free out with hdx_routes_conf_free. */
int hdx_routes_conf_load(const char *path, const char *dir, struct hdx_routes_conf *out);
void hdx_routes_conf_free(struct hdx_routes_conf *rc);
/* Moves route i out of rc (rc->r[i] becomes NULL); free it with hdx_route_conf_free. */
struct hdx_route_conf *hdx_routes_conf_take(struct hdx_routes_conf *rc, size_t i);
void hdx_route_conf_free(struct hdx_route_conf *r);
/* 1 when name is a valid route name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
int hdx_route_name_valid(const char *name);
/* 1 when host (a literal address or a name) is allowed plaintext by allow (comma-separated
 * addresses, CIDRs or host names). */
/* plaintext_allow (docs/ROUTES.md): entries are addresses, CIDRs or host names.
 * allowed: host (a name or an address) is listed, or is an address inside a listed network.
 * may_list: what a route's `to` must pass at load: allowed, or a host name while the list has
 * addresses or networks (its addresses are then checked at every connect).
 * pick: the first of res (getaddrinfo's answer for host) that a plaintext connection may go
 * to: any when host is listed by name, else one that is allowed; NULL when none is (refused
 * then names the first address refused). */
int hdx_route_plaintext_allowed(const char *allow, const char *host);
int hdx_route_plaintext_may_list(const char *allow, const char *host);
struct addrinfo;
const struct addrinfo *hdx_route_plaintext_pick(const char *allow, const char *host,
                                                const struct addrinfo *res, char *refused,
                                                size_t cap);
const char *hdx_route_dest_name(enum hdx_route_dest d);

#endif
