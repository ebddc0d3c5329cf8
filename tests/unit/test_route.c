/* Routes: [route NAME] sections (route/rconf.h), lane cursors (route/cursor.h) and the route_*
 * admin statements that make dead letters records of the log (commit/admin.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commit/admin.h"
#include "core/conf.h"
#include "core/err.h"
#include "core/util.h"
#include "route/cursor.h"
#include "route/rconf.h"

static char dir[256], path[300];

static int setup(void **state)
{
    if (hdx_mkdtemp("hdx-route-", dir, sizeof(dir)) != 0) return -1;
    snprintf(path, sizeof(path), "%s/hdx.conf", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static void load(const char *text, struct hdx_routes_conf *rc, int want)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(hdx_routes_conf_load(path, dir, rc), want);
}

static const struct hdx_route_conf *route(const struct hdx_routes_conf *rc, const char *name)
{
    for (size_t i = 0; i < rc->n; i++)
        if (!strcmp(rc->r[i]->name, name)) return rc->r[i];
    fail_msg("no route %s", name);
    return NULL;
}

/* A route's error names the file, the line of the key and the key. */
static void assert_error(const struct hdx_route_conf *r, int line, const char *key,
                         const char *words)
{
    char want[400];
    assert_false(r->valid);
    snprintf(want, sizeof(want), "%s:%d: route %s: %s", path, line, r->name, key);
    if (strncmp(r->error, want, strlen(want)) != 0)
        fail_msg("error '%s', want '%s'", r->error, want);
    if (words && !strstr(r->error, words)) fail_msg("error '%s' lacks '%s'", r->error, words);
}

static void test_defaults_and_keys(void **state)
{
    struct hdx_routes_conf rc;
    load("[mllp]\nlisten = 127.0.0.1:2575\n"
         "[route ehr]\nto = mllps://ehr.example:7575   # the EHR\nca = ca.pem\n"
         "cert = c.pem\nkey = c.key\n"
         "[route lab]\nto = https://127.0.0.1:8443/hl7/in\nca = /etc/ca.pem\n"
         "content_type = application/hl7-v2\nack_timeout_ms = 2500\n"
         "[route drop]\nto = spool:out\norder = route\n"
         "[route icu]\nto = mllps://10.0.0.9:2575\nca = ca.pem\norder = patient\nlanes = 4\n"
         "max_inflight = 64\nmax_attempts = 3\nbackoff_ms = 100\nbackoff_max_ms = 1000\n",
         &rc, HDX_OK);
    assert_int_equal(rc.n, 4);
    const struct hdx_route_conf *r = route(&rc, "ehr");
    assert_true(r->valid);
    assert_int_equal(r->dest, HDX_DEST_MLLPS);
    assert_string_equal(r->host, "ehr.example");
    assert_int_equal(r->port, 7575);
    assert_string_equal(r->server_name, "ehr.example"); /* the host, unless said otherwise */
    assert_int_equal(r->max_inflight, 1);               /* strict order by default */
    assert_int_equal(r->order, HDX_ORDER_ROUTE);
    assert_int_equal(r->lanes, 1);
    assert_null(r->match); /* "*" */
    char want[400];
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(r->ca, want);
    r = route(&rc, "lab");
    assert_true(r->valid);
    assert_int_equal(r->dest, HDX_DEST_HTTPS);
    assert_string_equal(r->path, "/hl7/in");
    assert_string_equal(r->ca, "/etc/ca.pem");
    assert_string_equal(r->content_type, "application/hl7-v2");
    assert_int_equal(r->ack_timeout_ms, 2500);
    r = route(&rc, "drop");
    assert_true(r->valid);
    snprintf(want, sizeof(want), "%s/out", dir);
    assert_string_equal(r->path, want);
    r = route(&rc, "icu");
    assert_true(r->valid);
    assert_int_equal(r->order, HDX_ORDER_PATIENT);
    assert_int_equal(r->lanes, 4);
    assert_int_equal(r->max_inflight, 64);
    assert_int_equal(r->max_attempts, 3);
    hdx_routes_conf_free(&rc);
}

/* Each wrong route is refused on its own, with file, line and key; the others stay valid. */
static void test_errors_per_route(void **state)
{
    struct hdx_routes_conf rc;
    load("[routes]\nplaintext_allow = 127.0.0.1, 10.1.0.0/16\n"            /* 1-2 */
         "[route ok]\nto = mllp://127.0.0.1:2600\n"                        /* 3-4 */
         "[route unknown]\nto = spool:x\ncolour = blue\n"                  /* 5-7 */
         "[route nodest]\nmatch = *\n"                                     /* 8-9 */
         "[route plain]\nto = mllp://192.168.1.5:2575\n"                   /* 10-11 */
         "[route http]\nto = http://h:80/\n"                               /* 12-13 */
         "[route lanes]\nto = spool:y\nlanes = 2\n"                        /* 14-16 */
         "[route inflight]\nto = https://h:1/\nca = c\nmax_inflight = 8\n" /* 17-20 */
         "[route half]\nto = mllps://h:1\nca = c\ncert = a.pem\n"          /* 21-24 */
         "[route twice]\nto = spool:z\nto = spool:w\n"                     /* 25-27 */
         "[route noca]\nto = mllps://h:1\n"                                /* 28-29 */
         "[route range]\nto = spool:q\nmax_inflight = 0\n"                 /* 30-32 */
         "[route -bad]\nto = spool:q\n"                                    /* 33-34 */
         "[route cidr]\nto = mllp://10.1.200.3:2575\n"                     /* 35-36 */
         "[route byname]\nto = mllp://legacy.example:2575\n",              /* 37-38 */
         &rc, HDX_OK);
    assert_true(route(&rc, "ok")->valid);
    assert_true(route(&rc, "cidr")->valid);
    /* a name: its addresses are checked at every connect, against the list it carries */
    assert_true(route(&rc, "byname")->valid);
    assert_string_equal(route(&rc, "byname")->plaintext_allow, "127.0.0.1, 10.1.0.0/16");
    assert_error(route(&rc, "unknown"), 7, "colour", "unknown key");
    assert_error(route(&rc, "nodest"), 9, "to", "missing");
    assert_error(route(&rc, "plain"), 11, "to", "plaintext_allow");
    assert_error(route(&rc, "http"), 13, "to", "https://");
    assert_error(route(&rc, "lanes"), 16, "lanes", "order = patient");
    assert_error(route(&rc, "inflight"), 20, "max_inflight", NULL);
    assert_error(route(&rc, "half"), 24, "key", "go together");
    assert_error(route(&rc, "twice"), 27, "to", "set twice");
    assert_error(route(&rc, "noca"), 29, "ca", "missing");
    assert_error(route(&rc, "range"), 32, "max_inflight", "1..1024");
    assert_false(route(&rc, "-bad")->valid);
    hdx_routes_conf_free(&rc);
}

/* kind = dicom: its destinations and AE titles, and what it refuses, each with file, line
 * and key; the HL7 v2 routes are untouched by the new keys. */
static void test_dicom_routes(void **state)
{
    struct hdx_routes_conf rc;
    load("[routes]\nplaintext_allow = 127.0.0.1\n"                                       /* 1-2 */
         "[route pacs]\nkind = dicom\nto = dicoms://pacs.example:2762/PACS_1\n"          /* 3-5 */
         "ca = ca.pem\ncalling_ae = HDX EDGE\nmatch = type:CTImageStorage\n"             /* 6-8 */
         "[route legacy]\nkind = dicom\nto = dicom://127.0.0.1:11112/OLD\n"              /* 9-11 */
         "[route stow]\nkind = dicom\nto = https://a.example:443/dicomweb/studies\n"     /* 12-14 */
         "ca = ca.pem\n"                                                                 /* 15 */
         "[route files]\nkind = dicom\nto = spool:dcm\n"                                 /* 16-18 */
         "[route noae]\nkind = dicom\nto = dicoms://h:1\nca = c\n"                       /* 19-22 */
         "[route longae]\nkind = dicom\nto = dicom://127.0.0.1:1/ABCDEFGHIJKLMNOPQ\n"    /* 23-25 */
         "[route slash]\nkind = dicom\nto = dicom://127.0.0.1:1/A\\B\n"                  /* 26-28 */
         "[route notallowed]\nkind = dicom\nto = dicom://10.9.9.9:104/X\n"               /* 29-31 */
         "[route hl7]\nto = dicoms://h:1/X\nca = c\n"                                    /* 32-34 */
         "[route hl7ae]\nto = spool:a\ncalling_ae = X\n"                                 /* 35-37 */
         "[route xform]\nkind = dicom\nto = spool:b\ntransform = strip ZZZ\n"            /* 38-41 */
         "[route field]\nkind = dicom\nto = spool:c\nmatch = PID-3.1 = 7\n"              /* 42-45 */
         "[route window]\nkind = dicom\nto = dicom://127.0.0.1:1/X\nmax_inflight = 2\n"  /* 46-49 */
         "[route mllp]\nkind = dicom\nto = mllp://127.0.0.1:2575\n"                      /* 50-52 */
         "[route badkind]\nkind = fhir\nto = spool:d\n"                                  /* 53-55 */
         "[route ctype]\nkind = dicom\nto = https://h:1/x\nca = c\ncontent_type = a/b\n" /* 56-60 */
         "[route aespool]\nkind = dicom\nto = spool:e\ncalling_ae = X\n",                /* 61-64 */
         &rc, HDX_OK);
    const struct hdx_route_conf *r = route(&rc, "pacs");
    assert_true(r->valid);
    assert_int_equal(r->kind, HDX_ROUTE_DICOM);
    assert_int_equal(r->dest, HDX_DEST_DICOMS);
    assert_string_equal(r->host, "pacs.example");
    assert_int_equal(r->port, 2762);
    assert_string_equal(r->called_ae, "PACS_1");
    assert_string_equal(r->calling_ae, "HDX EDGE");
    assert_non_null(r->match);
    r = route(&rc, "legacy");
    assert_true(r->valid);
    assert_int_equal(r->dest, HDX_DEST_DICOM);
    assert_string_equal(r->called_ae, "OLD");
    assert_string_equal(r->calling_ae, "HDX"); /* the default */
    assert_true(route(&rc, "stow")->valid);
    assert_int_equal(route(&rc, "stow")->dest, HDX_DEST_HTTPS);
    assert_true(route(&rc, "files")->valid);
    assert_int_equal(route(&rc, "files")->kind, HDX_ROUTE_DICOM);
    assert_error(route(&rc, "noae"), 21, "to", "CALLED_AE_TITLE");
    assert_error(route(&rc, "longae"), 25, "to", "1-16");
    assert_error(route(&rc, "slash"), 28, "to", "backslash");
    assert_error(route(&rc, "notallowed"), 31, "to", "plaintext_allow");
    assert_error(route(&rc, "hl7"), 33, "to", "kind = dicom");
    assert_error(route(&rc, "hl7ae"), 37, "calling_ae", "kind = dicom");
    assert_error(route(&rc, "xform"), 41, "transform", "kind = dicom");
    assert_error(route(&rc, "field"), 45, "match", "type: (the SOP class) and sender:");
    assert_error(route(&rc, "window"), 49, "max_inflight", "one instance at a time");
    assert_error(route(&rc, "mllp"), 52, "to", "dicoms://");
    assert_error(route(&rc, "badkind"), 54, "kind", "hl7v2 or dicom");
    assert_error(route(&rc, "ctype"), 60, "content_type", "STOW-RS");
    assert_error(route(&rc, "aespool"), 64, "calling_ae", "dicoms://");
    hdx_routes_conf_free(&rc);
}

/* Errors outside one route: nothing of the file applies. */
static void test_file_errors(void **state)
{
    struct hdx_routes_conf rc;
    load("[routes]\nretry = 3\n", &rc, HDX_E_CONFIG);
    assert_non_null(strstr(rc.error, ":2: routes.retry: unknown key"));
    hdx_routes_conf_free(&rc);
    load("[route a]\nto = spool:x\n[route a]\nto = spool:y\n", &rc, HDX_E_CONFIG);
    assert_non_null(strstr(rc.error, "route a: a second section"));
    hdx_routes_conf_free(&rc);
    assert_int_equal(hdx_routes_conf_load("/nonexistent/hdx.conf", dir, &rc), HDX_E_CONFIG);
    hdx_routes_conf_free(&rc);
}

/* The fingerprint changes with any key and only then (a reload restarts only changed routes). */
static void test_fingerprint(void **state)
{
    struct hdx_routes_conf a, b, c;
    load("[route r]\nto = spool:x\n[route s]\nto = spool:y\n", &a, HDX_OK);
    load("[mllp]\nlisten = 127.0.0.1:1\n[route r]\nto = spool:x\n[route s]\nto = spool:y\n"
         "max_attempts = 4\n",
         &b, HDX_OK);
    load("[route r]\nto = spool:x\n[route s]\nto = spool:y\n", &c, HDX_OK);
    assert_memory_equal(route(&a, "r")->fingerprint, route(&b, "r")->fingerprint, 32);
    assert_memory_not_equal(route(&a, "s")->fingerprint, route(&b, "s")->fingerprint, 32);
    assert_memory_equal(route(&a, "s")->fingerprint, route(&c, "s")->fingerprint, 32);
    hdx_routes_conf_free(&a);
    hdx_routes_conf_free(&b);
    hdx_routes_conf_free(&c);
}

static void test_plaintext_allow(void **state)
{
    assert_true(hdx_route_plaintext_allowed("127.0.0.1,::1", "127.0.0.1"));
    assert_true(hdx_route_plaintext_allowed("127.0.0.1,::1", "::1"));
    assert_false(hdx_route_plaintext_allowed("127.0.0.1,::1", "127.0.0.2"));
    assert_true(hdx_route_plaintext_allowed("10.0.0.0/8", "10.200.1.1"));
    assert_false(hdx_route_plaintext_allowed("10.0.0.0/8", "11.0.0.1"));
    assert_true(hdx_route_plaintext_allowed("fd00::/8", "fd12::1"));
    assert_false(hdx_route_plaintext_allowed("fd00::/8", "fe80::1"));
    assert_true(hdx_route_plaintext_allowed("lab-old.local", "LAB-OLD.local"));
    assert_false(hdx_route_plaintext_allowed("", "127.0.0.1"));
    assert_false(hdx_route_plaintext_allowed("10.0.0.0/33", "10.0.0.1"));
    /* at load: a name needs a listed name, or addresses it may resolve into */
    assert_true(hdx_route_plaintext_may_list("10.0.0.0/8", "legacy.example"));
    assert_true(hdx_route_plaintext_may_list("lab-old.local", "lab-old.local"));
    assert_false(hdx_route_plaintext_may_list("lab-old.local", "legacy.example"));
    assert_false(hdx_route_plaintext_may_list("", "legacy.example"));
    assert_false(hdx_route_plaintext_may_list("10.0.0.0/8", "11.0.0.1"));
}

/* At connect: the resolved addresses, not the name, decide (unless the name is listed). */
static void test_plaintext_pick(void **state)
{
    (void)state;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    struct addrinfo *v6 = NULL, *v4 = NULL;
    assert_int_equal(getaddrinfo("::1", "2575", &hints, &v6), 0);
    assert_int_equal(getaddrinfo("127.0.0.1", "2575", &hints, &v4), 0);
    assert_null(v6->ai_next);
    v6->ai_next = v4; /* "legacy.example" resolving to ::1, then 127.0.0.1 */
    char refused[64];
    const struct addrinfo *a =
        hdx_route_plaintext_pick("127.0.0.0/8", "legacy.example", v6, refused, sizeof(refused));
    assert_ptr_equal(a, v4);
    a = hdx_route_plaintext_pick("10.0.0.0/8, fd00::/8", "legacy.example", v6, refused,
                                 sizeof(refused));
    assert_null(a);
    assert_string_equal(refused, "::1");
    a = hdx_route_plaintext_pick("LEGACY.example", "legacy.example", v6, refused, sizeof(refused));
    assert_ptr_equal(a, v6);
    a = hdx_route_plaintext_pick("::1", "legacy.example", v6, refused, sizeof(refused));
    assert_ptr_equal(a, v6);
    v6->ai_next = NULL;
    freeaddrinfo(v6);
    freeaddrinfo(v4);
}

static void test_cursor(void **state)
{
    char cpath[400];
    struct hdx_cursor *c;
    struct hdx_cursor_pos start = {.delivered = 7, .audited = 7, .lanes = 1, .lane = 0}, p;
    snprintf(cpath, sizeof(cpath), "%s/lane-0.cursor", dir);
    assert_int_equal(hdx_cursor_read(cpath, &p), HDX_E_NOTFOUND);
    assert_int_equal(hdx_cursor_open(cpath, &start, &c), HDX_OK);
    hdx_cursor_get(c, &p);
    assert_int_equal(p.delivered, 7);
    for (uint64_t s = 8; s <= 20; s++) {
        struct hdx_cursor_pos q = {.delivered = s, .audited = s - 2, .lanes = 4, .lane = 3};
        assert_int_equal(hdx_cursor_set(c, &q, 0), HDX_OK);
    }
    /* written at once (a kill -9 loses nothing): another reader sees it before any close */
    assert_int_equal(hdx_cursor_read(cpath, &p), HDX_OK);
    assert_int_equal(p.delivered, 20);
    assert_int_equal(p.audited, 18);
    assert_int_equal(p.lanes, 4);
    assert_int_equal(p.lane, 3);
    hdx_cursor_close(c);
    /* a start position is only for a new file */
    assert_int_equal(hdx_cursor_open(cpath, &start, &c), HDX_OK);
    hdx_cursor_get(c, &p);
    assert_int_equal(p.delivered, 20);
    hdx_cursor_close(c);
    /* a torn newest slot: the other one (one step older) wins */
    int fd = open(cpath, O_RDWR);
    assert_true(fd >= 0);
    uint8_t junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    /* generation 14 (from 1 at creation, 13 sets) is in slot 0 */
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 16), 8);
    assert_int_equal(hdx_cursor_read(cpath, &p), HDX_OK);
    assert_int_equal(p.delivered, 19);
    /* both damaged: refused, never silently restarted from zero */
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 64 + 16), 8);
    close(fd);
    assert_int_equal(hdx_cursor_read(cpath, &p), HDX_E_INTEGRITY);
    assert_int_equal(hdx_cursor_open(cpath, &start, &c), HDX_E_INTEGRITY);
}

static void put_cursor(uint32_t k, uint64_t delivered, uint64_t audited, uint32_t lanes)
{
    char cpath[400];
    struct hdx_cursor *c;
    struct hdx_cursor_pos p = {
        .delivered = delivered, .audited = audited, .lanes = lanes, .lane = k};
    snprintf(cpath, sizeof(cpath), "%s/lane-%u.cursor", dir, k);
    assert_int_equal(hdx_cursor_open(cpath, &p, &c), HDX_OK);
    assert_int_equal(hdx_cursor_set(c, &p, 1), HDX_OK);
    hdx_cursor_close(c);
}

/* HDX_E_NOTFOUND, or delivered of lane k (its lanes and audited into *out) */
static int get_cursor(uint32_t k, struct hdx_cursor_pos *out)
{
    char cpath[400];
    snprintf(cpath, sizeof(cpath), "%s/lane-%u.cursor", dir, k);
    return hdx_cursor_read(cpath, out);
}

static void assert_partition(uint32_t lanes, uint64_t delivered, uint64_t audited)
{
    struct hdx_cursor_pos p;
    for (uint32_t k = 0; k < lanes; k++) {
        assert_int_equal(get_cursor(k, &p), HDX_OK);
        assert_int_equal(p.lanes, lanes);
        assert_int_equal(p.lane, k);
        assert_int_equal(p.delivered, delivered);
        assert_int_equal(p.audited, audited);
    }
    for (uint32_t k = lanes; k < 64; k++)
        assert_int_equal(get_cursor(k, &p), HDX_E_NOTFOUND);
}

/* repartitions dir to lanes; it must report moving from `from` at resume */
static void repartition_to(uint32_t lanes, uint32_t from, uint64_t resume)
{
    uint32_t f;
    uint64_t r;
    assert_int_equal(hdx_cursor_repartition(dir, lanes, 64, &f, &r), HDX_OK);
    assert_int_equal(f, from);
    if (from) assert_int_equal(r, resume);
}

static void test_cursor_repartition(void **state)
{
    (void)state;
    uint32_t from;
    uint64_t resume;
    struct hdx_cursor_pos p;
    /* a new route: nothing written, its lanes start where the route says */
    assert_int_equal(hdx_cursor_repartition(dir, 3, 64, &from, &resume), HDX_OK);
    assert_int_equal(from, 0);
    assert_int_equal(get_cursor(0, &p), HDX_E_NOTFOUND);
    /* one partition of 3 lanes, unchanged: untouched */
    put_cursor(0, 30, 28, 3);
    put_cursor(1, 10, 9, 3);
    put_cursor(2, 20, 20, 3);
    assert_int_equal(hdx_cursor_repartition(dir, 3, 64, &from, &resume), HDX_OK);
    assert_int_equal(from, 0);
    assert_int_equal(get_cursor(1, &p), HDX_OK);
    assert_int_equal(p.delivered, 10);
    assert_int_equal(get_cursor(0, &p), HDX_OK);
    assert_int_equal(p.delivered, 30);
    /* growing to 4: the new lane too starts at the lowest old position (its patients came
     * from lanes that had not delivered past it), not at the newest commit */
    repartition_to(4, 3, 10);
    assert_partition(4, 10, 9);
    /* shrinking to 2 after the lanes moved on: the higher lanes' files go */
    put_cursor(0, 40, 40, 4);
    put_cursor(1, 55, 50, 4);
    put_cursor(2, 35, 33, 4);
    put_cursor(3, 60, 60, 4);
    repartition_to(2, 4, 35);
    assert_partition(2, 35, 33);
    /* a crash in the middle of a change from 2 to 3 lanes: lane 0 was rewritten (35), lane 1
     * not yet (70 under 2 lanes), and a file of an older partition (lane 5 of 8, at 1) left
     * by an earlier version: the rerun finds 35 again, neither 1 nor 70 */
    put_cursor(0, 35, 33, 3);
    put_cursor(1, 70, 70, 2);
    put_cursor(5, 1, 1, 8);
    repartition_to(3, 3, 35);
    assert_partition(3, 35, 33);
    /* one partition, and a stale higher file: only that file goes */
    put_cursor(7, 2, 2, 8);
    put_cursor(2, 90, 90, 3);
    assert_int_equal(hdx_cursor_repartition(dir, 3, 64, &from, &resume), HDX_OK);
    assert_int_equal(from, 0);
    assert_int_equal(get_cursor(7, &p), HDX_E_NOTFOUND);
    assert_int_equal(get_cursor(2, &p), HDX_OK);
    assert_int_equal(p.delivered, 90);
    /* lane 0's file gone: every file there is counts */
    char cpath[400];
    snprintf(cpath, sizeof(cpath), "%s/lane-0.cursor", dir);
    assert_int_equal(unlink(cpath), 0);
    repartition_to(3, 3, 35);
    assert_partition(3, 35, 33);
    /* a lane file of the partition with no valid slot: refused, nothing rewritten */
    int fd = open(cpath, O_RDWR);
    assert_true(fd >= 0);
    uint8_t junk[128];
    memset(junk, 0xee, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    close(fd);
    put_cursor(1, 99, 99, 3);
    assert_int_equal(hdx_cursor_repartition(dir, 2, 64, &from, &resume), HDX_E_INTEGRITY);
    assert_int_equal(get_cursor(1, &p), HDX_OK);
    assert_int_equal(p.delivered, 99);
    assert_int_equal(p.lanes, 3);
}

static void test_admin_route_ops(void **state)
{
    struct hdx_admin a = {.op = HDX_ADMIN_ROUTE_DEAD, .seq = 42}, b;
    char body[HDX_ADMIN_BODY_MAX];
    snprintf(a.name, sizeof(a.name), "ehr");
    snprintf(a.reason, sizeof(a.reason), "rejected by the destination (AR)");
    snprintf(a.by, sizeof(a.by), "route:ehr");
    int n = hdx_admin_format(&a, body, sizeof(body));
    assert_true(n > 0);
    assert_non_null(strstr(body, "op=route_dead\nname=ehr\nseq=42\nreason=rejected by the "
                                 "destination (AR)\nby=route:ehr\n"));
    assert_int_equal(hdx_admin_parse((uint8_t *)body, (size_t)n, &b), HDX_OK);
    assert_int_equal(b.op, HDX_ADMIN_ROUTE_DEAD);
    assert_int_equal(b.seq, 42);
    assert_string_equal(b.reason, "rejected by the destination (AR)");
    assert_true(hdx_admin_is_route_op(b.op));
    assert_string_equal(hdx_admin_type(HDX_ADMIN_ROUTE_RETRY), "admin/route_retry");
    /* seq 0, a leading zero, an empty reason and a control byte in it are refused */
    const char *bad[] = {
        "HDX-ADMIN 1\nop=route_retry\nname=ehr\nseq=0\nby=local:root\n",
        "HDX-ADMIN 1\nop=route_retry\nname=ehr\nseq=042\nby=local:root\n",
        "HDX-ADMIN 1\nop=route_dead\nname=ehr\nseq=4\nreason=\nby=route:ehr\n",
        "HDX-ADMIN 1\nop=route_dead\nname=ehr\nseq=4\nreason=a\tb\nby=route:ehr\n",
        "HDX-ADMIN 1\nop=route_skip\nname=../x\nseq=4\nby=local:root\n",
        "HDX-ADMIN 1\nop=route_skip\nname=ehr\nseq=4\nby=route:\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(hdx_admin_parse((const uint8_t *)bad[i], strlen(bad[i]), &b), HDX_E_INVAL);
    /* they change no table of the registry */
    struct hdx_registry reg = {0};
    assert_int_equal(hdx_registry_apply(&reg, &a, 1), HDX_OK);
    assert_int_equal(reg.n + reg.nu + reg.nct + reg.ncs + reg.nbg + reg.nsc, 0);
    hdx_registry_free(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_per_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dicom_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fingerprint, setup, teardown),
        cmocka_unit_test(test_plaintext_allow),
        cmocka_unit_test(test_plaintext_pick),
        cmocka_unit_test_setup_teardown(test_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_repartition, setup, teardown),
        cmocka_unit_test(test_admin_route_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
