#include "route/rconf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <netdb.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "policy/policy.h"
#include "route/match.h"
#include "route/transform.h"

#define SECTION_PREFIX "route "
#define NKEYS 19 /* route_keys */

struct load {
    struct hdx_routes_conf *out;
    const char *path, *dir;
    FILE *f;
    int line;
    int new_section; /* a "[...]" line was read since the last key: libinih says nothing */
    struct hdx_route_conf *cur; /* the section being read, NULL outside a route section */
    char cur_section[128];
    EVP_MD_CTX *fp[HDX_ROUTES_MAX];      /* each route's fingerprint, keys as written */
    int have[HDX_ROUTES_MAX][NKEYS];     /* keys seen once per route (see key_index) */
    int key_line[HDX_ROUTES_MAX][NKEYS]; /* where each was (the last transform line) */
};

int hdx_route_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > HDX_ROUTE_NAME_MAX || name[0] == '.' || name[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i])) return 0;
    return 1;
}

const char *hdx_route_dest_name(enum hdx_route_dest d)
{
    switch (d) {
    case HDX_DEST_MLLPS:
        return "mllps";
    case HDX_DEST_MLLP:
        return "mllp";
    case HDX_DEST_HTTPS:
        return "https";
    case HDX_DEST_SPOOL:
        return "spool";
    case HDX_DEST_DICOMS:
        return "dicoms";
    case HDX_DEST_DICOM:
        return "dicom";
    }
    return "?";
}

static int cidr_match(const char *entry, const char *host)
{
    char addr[64];
    const char *slash = strchr(entry, '/');
    size_t alen = slash ? (size_t)(slash - entry) : strlen(entry);
    if (alen >= sizeof(addr)) return 0;
    memcpy(addr, entry, alen);
    addr[alen] = 0;
    uint8_t a[16], h[16];
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    int bits = fam == AF_INET6 ? 128 : 32;
    if (inet_pton(fam, addr, a) != 1 || inet_pton(fam, host, h) != 1) return 0;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || p < 0 || p > bits) return 0;
        bits = (int)p;
    }
    for (int i = 0; i < bits; i++)
        if (((a[i / 8] ^ h[i / 8]) >> (7 - i % 8)) & 1) return 0;
    return 1;
}

int hdx_route_plaintext_allowed(const char *allow, const char *host)
{
    char list[512], *save = NULL;
    snprintf(list, sizeof(list), "%s", allow);
    for (char *e = strtok_r(list, ", ", &save); e; e = strtok_r(NULL, ", ", &save))
        if (strcasecmp(e, host) == 0 || cidr_match(e, host)) return 1;
    return 0;
}

static int is_address(const char *host)
{
    uint8_t a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* Does the list hold an address or a network (not only names)? */
static int lists_addresses(const char *allow)
{
    char list[512], *save = NULL;
    snprintf(list, sizeof(list), "%s", allow);
    for (char *e = strtok_r(list, ", ", &save); e; e = strtok_r(NULL, ", ", &save)) {
        char *slash = strchr(e, '/');
        if (slash) *slash = 0;
        if (is_address(e)) return 1;
    }
    return 0;
}

int hdx_route_plaintext_may_list(const char *allow, const char *host)
{
    return hdx_route_plaintext_allowed(allow, host) ||
           (!is_address(host) && lists_addresses(allow));
}

const struct addrinfo *hdx_route_plaintext_pick(const char *allow, const char *host,
                                                const struct addrinfo *res, char *refused,
                                                size_t cap)
{
    int by_name = hdx_route_plaintext_allowed(allow, host);
    if (cap) refused[0] = 0;
    for (const struct addrinfo *a = res; a; a = a->ai_next) {
        char num[INET6_ADDRSTRLEN + 1] = "";
        if (getnameinfo(a->ai_addr, a->ai_addrlen, num, sizeof(num), NULL, 0, NI_NUMERICHOST))
            continue;
        if (by_name || hdx_route_plaintext_allowed(allow, num)) return a;
        if (cap && !refused[0]) snprintf(refused, cap, "%s", num);
    }
    return NULL;
}

void hdx_route_conf_free(struct hdx_route_conf *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->ntransforms; i++)
        free(r->transforms[i]);
    hdx_match_free(r->match);
    hdx_transform_free(r->transform);
    free(r);
}

void hdx_routes_conf_free(struct hdx_routes_conf *rc)
{
    for (size_t i = 0; i < rc->n; i++)
        hdx_route_conf_free(rc->r[i]);
    memset(rc, 0, sizeof(*rc));
}

struct hdx_route_conf *hdx_routes_conf_take(struct hdx_routes_conf *rc, size_t i)
{
    struct hdx_route_conf *r = rc->r[i];
    rc->r[i] = NULL;
    return r;
}

static void route_defaults(struct hdx_route_conf *r)
{
    snprintf(r->match_text, sizeof(r->match_text), "*");
    snprintf(r->content_type, sizeof(r->content_type), "x-application/hl7-v2+er7");
    r->max_inflight = 1;
    r->order = HDX_ORDER_ROUTE;
    r->lanes = 1;
    r->connect_timeout_ms = 5000;
    r->ack_timeout_ms = 10000;
    r->max_attempts = 10;
    r->backoff_ms = 500;
    r->backoff_max_ms = 60000;
    r->purpose = HDX_PURPOSE_TREATMENT;
    r->kind = HDX_ROUTE_HL7V2;
    snprintf(r->calling_ae, sizeof(r->calling_ae), "HDX");
}

/* "FILE:LINE: route NAME: KEY: reason"; the route is then not valid (the first error stays). */
static void route_fail(struct load *l, struct hdx_route_conf *r, int line, const char *key,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void route_fail(struct load *l, struct hdx_route_conf *r, int line, const char *key,
                       const char *fmt, ...)
{
    char why[384];
    va_list ap;
    if (!r->valid) return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(r->error, sizeof(r->error), "%s:%d: route %s: %s%s%s", l->path, line, r->name,
             key ? key : "", key ? ": " : "", why);
    r->valid = 0;
}

static int parse_int(const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

/* The keys of a route section; the index is for "set once" checks. */
static const char *const route_keys[] = {
    "match",
    "to",
    "cert",
    "key",
    "ca",
    "server_name",
    "max_inflight",
    "order",
    "lanes",
    "connect_timeout_ms",
    "ack_timeout_ms",
    "max_attempts",
    "backoff_ms",
    "backoff_max_ms",
    "content_type",
    "transform",
    "purpose",
    "kind",
    "calling_ae",
};

_Static_assert(sizeof(route_keys) / sizeof(route_keys[0]) == NKEYS, "struct load's key arrays");

static int key_index(const char *name)
{
    for (size_t i = 0; i < sizeof(route_keys) / sizeof(route_keys[0]); i++)
        if (strcmp(route_keys[i], name) == 0) return (int)i;
    return -1;
}

/* An inline "# comment" after whitespace ends the value (libinih takes only ';'); a value that
 * needs " #" is written in quotes inside a match expression. */
static void strip_comment(const char *in, char *out, size_t cap)
{
    snprintf(out, cap, "%s", in);
    int quoted = 0;
    for (char *p = out; *p; p++) {
        if (*p == '"') quoted = !quoted;
        if (!quoted && *p == '#' && p > out && isspace((unsigned char)p[-1])) {
            *p = 0;
            break;
        }
    }
    size_t n = strlen(out);
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = 0;
}

static void abs_path(const char *dir, const char *v, char *out, size_t cap)
{
    if (v[0] == '/')
        snprintf(out, cap, "%s", v);
    else
        snprintf(out, cap, "%s/%s", dir, v);
}

/* PS3.5 VR AE: 1-16 printable ASCII characters, no backslash, not starting with a space */
static int ae_title_ok(const char *ae)
{
    size_t n = strlen(ae);
    int ok = n > 0 && n <= 16 && ae[0] != ' ';
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)ae[i] >= 0x20 && (unsigned char)ae[i] < 0x7f && ae[i] != '\\';
    return ok;
}

static int parse_to(struct load *l, struct hdx_route_conf *r, int line, const char *v)
{
    const char *rest;
    if (strncmp(v, "mllps://", 8) == 0) {
        r->dest = HDX_DEST_MLLPS;
        rest = v + 8;
    } else if (strncmp(v, "mllp://", 7) == 0) {
        r->dest = HDX_DEST_MLLP;
        rest = v + 7;
    } else if (strncmp(v, "https://", 8) == 0) {
        r->dest = HDX_DEST_HTTPS;
        rest = v + 8;
    } else if (strncmp(v, "dicoms://", 9) == 0) {
        r->dest = HDX_DEST_DICOMS;
        rest = v + 9;
    } else if (strncmp(v, "dicom://", 8) == 0) {
        r->dest = HDX_DEST_DICOM;
        rest = v + 8;
    } else if (strncmp(v, "spool:", 6) == 0) {
        r->dest = HDX_DEST_SPOOL;
        if (!v[6]) {
            route_fail(l, r, line, "to", "spool: needs a directory");
            return -1;
        }
        abs_path(l->dir, v + 6, r->path, sizeof(r->path));
        return 0;
    } else if (strncmp(v, "http://", 7) == 0) {
        route_fail(l, r, line, "to", "plain http is not offered: use https://");
        return -1;
    } else {
        route_fail(l, r, line, "to",
                   "'%s' is not mllps://, mllp://, https://, dicoms://, dicom:// or spool:", v);
        return -1;
    }
    char hostport[512];
    const char *slash = strchr(rest, '/');
    size_t hl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hl >= sizeof(hostport)) hl = sizeof(hostport) - 1;
    memcpy(hostport, rest, hl);
    hostport[hl] = 0;
    if (r->dest == HDX_DEST_HTTPS) {
        snprintf(r->path, sizeof(r->path), "%s", slash ? slash : "/");
        for (const char *p = r->path; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
                route_fail(l, r, line, "to", "the path has a space or control byte");
                return -1;
            }
    } else if (r->dest == HDX_DEST_DICOMS || r->dest == HDX_DEST_DICOM) {
        /* the called AE title: PS3.5 VR AE, 1-16 characters, no backslash or control byte */
        const char *ae = slash ? slash + 1 : "";
        if (!ae_title_ok(ae)) {
            route_fail(l, r, line, "to",
                       "a DICOM destination is dicoms://HOST:PORT/CALLED_AE_TITLE (1-16 "
                       "characters, no backslash)");
            return -1;
        }
        snprintf(r->called_ae, sizeof(r->called_ae), "%s", ae);
    } else if (slash && slash[1]) {
        route_fail(l, r, line, "to", "an MLLP destination has no path");
        return -1;
    }
    if (hdx_split_hostport(hostport, r->host, sizeof(r->host), &r->port) != 0 || !r->host[0] ||
        r->port <= 0) {
        route_fail(l, r, line, "to", "'%s' is not HOST:PORT", hostport);
        return -1;
    }
    return 0;
}

static void route_key(struct load *l, struct hdx_route_conf *r, const char *name, const char *raw)
{
    int line = l->line, ki = key_index(name);
    char v[4097];
    if (ki < 0) {
        route_fail(l, r, line, name, "unknown key");
        return;
    }
    size_t idx = (size_t)(l->out->n - 1);
    if (strcmp(name, "transform") != 0 && l->have[idx][ki]++) {
        route_fail(l, r, line, name, "set twice");
        return;
    }
    l->key_line[idx][ki] = line;
    strip_comment(raw, v, sizeof(v));
    if (strlen(raw) >= sizeof(v) - 1) {
        route_fail(l, r, line, name, "value longer than %zu bytes", sizeof(v) - 2);
        return;
    }
    EVP_DigestUpdate(l->fp[idx], name, strlen(name) + 1);
    EVP_DigestUpdate(l->fp[idx], v, strlen(v) + 1);
    if (!strcmp(name, "match")) {
        snprintf(r->match_text, sizeof(r->match_text), "%s", v);
    } else if (!strcmp(name, "to")) {
        snprintf(r->to, sizeof(r->to), "%s", v);
        (void)parse_to(l, r, line, v);
    } else if (!strcmp(name, "cert")) {
        abs_path(l->dir, v, r->cert, sizeof(r->cert));
    } else if (!strcmp(name, "key")) {
        abs_path(l->dir, v, r->key, sizeof(r->key));
    } else if (!strcmp(name, "ca")) {
        abs_path(l->dir, v, r->ca, sizeof(r->ca));
    } else if (!strcmp(name, "server_name")) {
        if (!v[0] || strlen(v) >= sizeof(r->server_name))
            route_fail(l, r, line, name, "empty or too long");
        else
            snprintf(r->server_name, sizeof(r->server_name), "%s", v);
    } else if (!strcmp(name, "content_type")) {
        int ok = v[0] && strlen(v) < sizeof(r->content_type);
        for (const char *p = v; ok && *p; p++)
            ok = (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
        if (!ok)
            route_fail(l, r, line, name, "not a media type");
        else
            snprintf(r->content_type, sizeof(r->content_type), "%s", v);
    } else if (!strcmp(name, "purpose")) {
        int pu = hdx_purpose_parse(v);
        if (pu < 0)
            route_fail(l, r, line, name, "must be treatment, payment, operations or research");
        else
            r->purpose = pu;
    } else if (!strcmp(name, "kind")) {
        if (!strcmp(v, "hl7v2"))
            r->kind = HDX_ROUTE_HL7V2;
        else if (!strcmp(v, "dicom"))
            r->kind = HDX_ROUTE_DICOM;
        else
            route_fail(l, r, line, name, "must be hl7v2 or dicom");
    } else if (!strcmp(name, "calling_ae")) {
        if (!ae_title_ok(v))
            route_fail(l, r, line, name, "an AE title: 1-16 characters, no backslash");
        else
            snprintf(r->calling_ae, sizeof(r->calling_ae), "%s", v);
    } else if (!strcmp(name, "order")) {
        if (!strcmp(v, "route"))
            r->order = HDX_ORDER_ROUTE;
        else if (!strcmp(v, "patient"))
            r->order = HDX_ORDER_PATIENT;
        else
            route_fail(l, r, line, name, "must be route or patient");
    } else if (!strcmp(name, "transform")) {
        if (r->ntransforms == HDX_ROUTE_TRANSFORMS_MAX) {
            route_fail(l, r, line, name, "more than %d transforms", HDX_ROUTE_TRANSFORMS_MAX);
            return;
        }
        if (!(r->transforms[r->ntransforms] = strdup(v))) {
            route_fail(l, r, line, name, "out of memory");
            return;
        }
        r->ntransforms++;
    } else {
        static const struct {
            const char *name;
            long lo, hi;
            size_t off;
        } ints[] = {
            {"max_inflight", 1, 1024, offsetof(struct hdx_route_conf, max_inflight)},
            {"lanes", 1, HDX_ROUTE_LANES_MAX, offsetof(struct hdx_route_conf, lanes)},
            {"connect_timeout_ms", 100, 600000,
             offsetof(struct hdx_route_conf, connect_timeout_ms)},
            {"ack_timeout_ms", 100, 3600000, offsetof(struct hdx_route_conf, ack_timeout_ms)},
            {"max_attempts", 1, 1000000, offsetof(struct hdx_route_conf, max_attempts)},
            {"backoff_ms", 10, 3600000, offsetof(struct hdx_route_conf, backoff_ms)},
            {"backoff_max_ms", 10, 86400000, offsetof(struct hdx_route_conf, backoff_max_ms)},
        };
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
            if (!strcmp(name, ints[i].name)) {
                if (parse_int(v, ints[i].lo, ints[i].hi,
                              (int *)(void *)((char *)r + ints[i].off)) != 0)
                    route_fail(l, r, line, name, "must be an integer in %ld..%ld", ints[i].lo,
                               ints[i].hi);
                return;
            }
    }
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct load *l = user;
    struct hdx_routes_conf *out = l->out;
    if (out->error[0]) return 0;
    if (strncmp(section, SECTION_PREFIX, strlen(SECTION_PREFIX)) != 0) l->new_section = 0;
    if (strcmp(section, "routes") == 0) {
        if (strcmp(name, "plaintext_allow") != 0) {
            snprintf(out->error, sizeof(out->error), "%s:%d: routes.%s: unknown key", l->path,
                     l->line, name);
            return 0;
        }
        if (strlen(value) >= sizeof(out->plaintext_allow)) {
            snprintf(out->error, sizeof(out->error), "%s:%d: routes.%s: longer than %zu bytes",
                     l->path, l->line, name, sizeof(out->plaintext_allow) - 1);
            return 0;
        }
        snprintf(out->plaintext_allow, sizeof(out->plaintext_allow), "%s", value);
        return 1;
    }
    if (strncmp(section, SECTION_PREFIX, strlen(SECTION_PREFIX)) != 0) {
        l->cur = NULL;
        return 1; /* core/conf's */
    }
    int fresh = l->new_section;
    l->new_section = 0;
    if (!l->cur || fresh || strcmp(section, l->cur_section) != 0) {
        const char *rname = section + strlen(SECTION_PREFIX);
        for (size_t i = 0; i < out->n; i++)
            if (strcmp(out->r[i]->name, rname) == 0) {
                snprintf(out->error, sizeof(out->error),
                         "%s:%d: route %s: a second section of that name", l->path, l->line, rname);
                return 0;
            }
        if (out->n == HDX_ROUTES_MAX) {
            snprintf(out->error, sizeof(out->error), "%s:%d: more than %d routes", l->path, l->line,
                     HDX_ROUTES_MAX);
            return 0;
        }
        struct hdx_route_conf *r = calloc(1, sizeof(*r));
        if (!r || !(l->fp[out->n] = EVP_MD_CTX_new()) ||
            EVP_DigestInit_ex(l->fp[out->n], EVP_sha256(), NULL) != 1) {
            free(r);
            snprintf(out->error, sizeof(out->error), "%s: out of memory", l->path);
            return 0;
        }
        route_defaults(r);
        r->valid = 1;
        r->line = l->line; /* the section's first key: libinih does not report headers */
        snprintf(r->name, sizeof(r->name), "%.*s", HDX_ROUTE_NAME_MAX, rname);
        out->r[out->n++] = r;
        l->cur = r;
        snprintf(l->cur_section, sizeof(l->cur_section), "%s", section);
        if (!hdx_route_name_valid(rname))
            route_fail(l, r, l->line, NULL,
                       "the name must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -)");
    }
    route_key(l, l->cur, name, value);
    return 1;
}

static char *read_line(char *str, int num, void *stream)
{
    struct load *l = stream;
    char *r = fgets(str, num, l->f);
    if (r) {
        l->line++;
        const char *p = r;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '[') l->new_section = 1;
    }
    return r;
}

static void route_finish(struct load *l, struct hdx_route_conf *r, size_t idx)
{
    char err[400];
    unsigned int fplen = 0;
    if (r->dest == HDX_DEST_MLLP || r->dest == HDX_DEST_DICOM) {
        /* checked again at every connect: a changed list restarts the route */
        snprintf(r->plaintext_allow, sizeof(r->plaintext_allow), "%s", l->out->plaintext_allow);
        EVP_DigestUpdate(l->fp[idx], "[routes] plaintext_allow", 25);
        EVP_DigestUpdate(l->fp[idx], r->plaintext_allow, strlen(r->plaintext_allow) + 1);
    }
    EVP_DigestFinal_ex(l->fp[idx], r->fingerprint, &fplen);
    int line = r->line;
#define AT(key) (l->key_line[idx][key_index(key)] ? l->key_line[idx][key_index(key)] : line)
    if (!r->valid) return;
    if (!r->to[0]) {
        route_fail(l, r, AT("to"), "to", "missing (every route has one destination)");
        return;
    }
    if (r->dest == HDX_DEST_MLLPS || r->dest == HDX_DEST_HTTPS || r->dest == HDX_DEST_DICOMS) {
        if (!r->ca[0])
            route_fail(l, r, AT("ca"), "ca", "missing (the server's certificate is verified)");
        if (!r->cert[0] != !r->key[0])
            route_fail(l, r, AT("cert"), r->cert[0] ? "key" : "cert", "cert and key go together");
        if (!r->server_name[0]) snprintf(r->server_name, sizeof(r->server_name), "%s", r->host);
    } else if (r->cert[0] || r->key[0] || r->ca[0]) {
        route_fail(l, r, AT("to"),
                   r->cert[0]  ? "cert"
                   : r->key[0] ? "key"
                               : "ca",
                   "only for mllps://, https:// and dicoms://");
    }
    if (r->dest == HDX_DEST_MLLP && !hdx_route_plaintext_may_list(l->out->plaintext_allow, r->host))
        route_fail(l, r, AT("to"), "to",
                   "plaintext MLLP to %s: not in [routes] plaintext_allow (use mllps://)", r->host);
    if (r->dest == HDX_DEST_DICOM &&
        !hdx_route_plaintext_may_list(l->out->plaintext_allow, r->host))
        route_fail(l, r, AT("to"), "to",
                   "plaintext DICOM to %s: not in [routes] plaintext_allow (use dicoms://)",
                   r->host);
    int dicom_dest = r->dest == HDX_DEST_DICOMS || r->dest == HDX_DEST_DICOM;
    if (r->kind == HDX_ROUTE_HL7V2) {
        if (dicom_dest) route_fail(l, r, AT("to"), "to", "a DICOM destination needs kind = dicom");
        if (l->have[idx][key_index("calling_ae")])
            route_fail(l, r, AT("calling_ae"), "calling_ae", "only with kind = dicom");
    } else {
        if (r->dest == HDX_DEST_MLLPS || r->dest == HDX_DEST_MLLP)
            route_fail(l, r, AT("to"), "to",
                       "kind = dicom goes to dicoms://, dicom://, https:// (STOW-RS) or spool:");
        if (r->ntransforms)
            route_fail(l, r, AT("transform"), "transform",
                       "HL7 v2 transforms, not for kind = dicom");
        if (l->have[idx][key_index("content_type")])
            route_fail(
                l, r, AT("content_type"), "content_type",
                "kind = dicom posts multipart/related; type=\"application/dicom\" (STOW-RS)");
        if (l->have[idx][key_index("calling_ae")] && !dicom_dest)
            route_fail(l, r, AT("calling_ae"), "calling_ae", "only for dicoms:// and dicom://");
        if (r->max_inflight != 1)
            route_fail(l, r, AT("max_inflight"), "max_inflight",
                       "kind = dicom sends one instance at a time: 1");
    }
    if (r->order == HDX_ORDER_ROUTE && r->lanes != 1)
        route_fail(l, r, AT("lanes"), "lanes", "needs order = patient");
    if ((r->dest == HDX_DEST_HTTPS || r->dest == HDX_DEST_SPOOL) && r->max_inflight != 1)
        route_fail(l, r, AT("max_inflight"), "max_inflight",
                   "only MLLP pipelines (https and spool: 1)");
    if (r->backoff_max_ms < r->backoff_ms)
        route_fail(l, r, AT("backoff_max_ms"), "backoff_max_ms", "smaller than backoff_ms");
    if (!r->valid) return;
    if (strcmp(r->match_text, "*") != 0 &&
        hdx_match_compile(r->match_text, &r->match, err, sizeof(err)) != HDX_OK) {
        route_fail(l, r, AT("match"), "match", "%s", err);
        return;
    }
    /* a DICOM record's index has its SOP class (as type) and its sender, and the instance is
     * not an HL7 message: only what the index answers can be asked */
    if (r->kind == HDX_ROUTE_DICOM && r->match && !hdx_match_index_only(r->match)) {
        route_fail(l, r, AT("match"), "match",
                   "kind = dicom matches on type: (the SOP class) and sender: only");
        return;
    }
    if (r->ntransforms && hdx_transform_compile((const char *const *)r->transforms, r->ntransforms,
                                                l->dir, &r->transform, err, sizeof(err)) != HDX_OK)
        route_fail(l, r, AT("transform"), "transform", "%s", err);
#undef AT
}

int hdx_routes_conf_load(const char *path, const char *dir, struct hdx_routes_conf *out)
{
    struct load l = {.out = out, .path = path, .dir = dir};
    memset(out, 0, sizeof(*out));
    if (!(l.f = fopen(path, "r"))) {
        snprintf(out->error, sizeof(out->error), "%s: cannot open: %s", path, strerror(errno));
        return HDX_E_CONFIG;
    }
    int rc = ini_parse_stream(read_line, &l, on_ini, &l);
    fclose(l.f);
    if (rc > 0 && !out->error[0])
        snprintf(out->error, sizeof(out->error), "%s:%d: syntax error", path, rc);
    for (size_t i = 0; i < out->n; i++) {
        route_finish(&l, out->r[i], i);
        EVP_MD_CTX_free(l.fp[i]);
    }
    return out->error[0] ? HDX_E_CONFIG : HDX_OK;
}
