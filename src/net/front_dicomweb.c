/* front_dicomweb: DICOMweb (PS3.18) on the HTTPS port, under /dicomweb (docs/DICOMWEB.md).
 *
 *   POST /dicomweb/studies[/{study}]                         STOW-RS (multipart/related)
 *   GET  /dicomweb/{studies|series|instances}                QIDO-RS, and below a study or a
 *        /dicomweb/studies/{study}/{series|instances}        series, with C-FIND's matching
 *        /dicomweb/studies/{study}/series/{series}/instances (dicom/query.h, the catalogue)
 *   GET  /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]][/metadata]
 *                                                            WADO-RS: the stored Part 10 files
 *                                                            (multipart/related), or their
 *                                                            DICOM JSON (dicom/dcmjson.h)
 *
 * DESIGN: QIDO-RS builds a C-FIND identifier (Study Root, ISO_IR 192) from the query's
 * parameters and runs it through dicom/query.h exactly as a C-FIND over DICOM TLS would, so
 * the two answer alike and refuse alike (a mangled date is a 400, never "everything"). Its
 * answers are encoded as a data set and turned into DICOM JSON by dicom/dcmjson.h, the same
 * converter WADO-RS metadata uses. STOW-RS reads the whole body first: a request whose
 * multipart framing or whose parts do not parse is refused with 400 and nothing of it is
 * stored; parts that parse but cannot be stored (class, study, policy) are each answered in
 * the Failed SOP Sequence while the others are stored (202), none stored is 409. Each stored
 * instance is one record, exactly the bytes of its part, answered only once durable.
 * Every access is decided by the policy engine for the record's patient and audited before
 * the answer goes (hdx_front_gate_*). Thread: the network thread. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "dicom/catalog.h"
#include "dicom/dataset.h"
#include "dicom/dcmjson.h"
#include "dicom/dsenc.h"
#include "dicom/frames.h"
#include "dicom/query.h"
#include "dicom/sop.h"
#include "net/dicom_session.h"
#include "net/front_internal.h"
#include "policy/scope.h"
#include "proto/multipart.h"
#include "store/record.h"
#include "store/store.h"

#define DW_JSON "application/dicom+json"
#define DW_ROUTE "dicomweb"
#define QIDO_LIMIT_DEFAULT 1000
#define STOW_PARTS_MAX 1000
#define META_INLINE_MAX 1024 /* binary values up to this are inlined in metadata */

/* ---------- paths ---------- */

enum dw_op { DW_STOW = 1, DW_QIDO, DW_WADO, DW_META, DW_FRAMES, DW_BULK };

#define DW_FRAMES_MAX 64 /* frame numbers in one request */

struct dw_path {
    enum dw_op op;
    enum hdx_dcat_level level; /* QIDO: what is searched */
    char study[HDX_DS_UID_MAX + 1], series[HDX_DS_UID_MAX + 1], instance[HDX_DS_UID_MAX + 1];
    uint32_t frames[DW_FRAMES_MAX]; /* DW_FRAMES: the frame numbers asked for, from 1 */
    size_t nframes;
    struct hdx_bulk_path bulk; /* DW_BULK: the attribute a BulkDataURI names */
};

/* "1,3,5": 0, or -1 for an empty list, a number that is not one, 0 or over the limit. */
static int frame_list(const char *s, size_t len, struct dw_path *p)
{
    size_t i = 0;
    while (i < len) {
        uint32_t v = 0;
        size_t d = 0;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, d++) {
            v = v * 10 + (uint32_t)(s[i] - '0');
            if (v > HDX_FRAMES_MAX) return -1;
        }
        if (!d || !v || p->nframes == DW_FRAMES_MAX) return -1;
        p->frames[p->nframes++] = v;
        if (i < len && s[i++] != ',') return -1;
        if (i == len && s[len - 1] == ',') return -1;
    }
    return p->nframes ? 0 : -1;
}

/* 0, 404 (no such DICOMweb path) or 400 (a UID segment that is not a UID). */
static int path_parse(const char *path, int post, struct dw_path *p)
{
    const char *seg[32];
    size_t len[32], n = 0;
    memset(p, 0, sizeof(*p));
    if (strncmp(path, "/dicomweb", 9) != 0) return 404;
    const char *s = path + 9;
    if (*s == '/') s++;
    while (*s) {
        if (n == 32) return 404;
        const char *e = strchr(s, '/');
        len[n] = e ? (size_t)(e - s) : strlen(s);
        seg[n++] = s;
        if (!e) break;
        s = e + 1;
    }
#define IS(i, w) (n > (i) && len[i] == strlen(w) && !memcmp(seg[i], w, len[i]))
    /* the UIDs at 1, 3 and 5 */
    char *uid[3] = {p->study, p->series, p->instance};
    for (size_t i = 1; i < n && i <= 5; i += 2) {
        if (!IS(0, "studies")) break;
        if ((i == 3 && !IS(2, "series")) || (i == 5 && !IS(4, "instances"))) break;
        if (len[i] > HDX_DS_UID_MAX) return 400;
        memcpy(uid[i / 2], seg[i], len[i]);
        uid[i / 2][len[i]] = 0;
        if (!hdx_uid_valid(uid[i / 2])) return 400;
    }
    if (post) {
        if (IS(0, "studies") && (n == 1 || n == 2)) {
            p->op = DW_STOW;
            return 0;
        }
        return 404;
    }
    if (n == 1 && (IS(0, "studies") || IS(0, "series") || IS(0, "instances"))) {
        p->op = DW_QIDO;
        p->level = IS(0, "studies")  ? HDX_DCAT_STUDY
                   : IS(0, "series") ? HDX_DCAT_SERIES
                                     : HDX_DCAT_IMAGE;
        return 0;
    }
    if (!IS(0, "studies") || n < 2) return 404;
    if (n >= 8 && IS(2, "series") && IS(4, "instances") && IS(6, "bulk")) {
        /* the rest of the path is the BulkDataURI's: TAG or TAG/ITEM/TAG... */
        const char *rest = seg[7];
        if (strlen(rest) > 8 * (HDX_BULK_DEPTH_MAX + 1) + 7 * HDX_BULK_DEPTH_MAX ||
            hdx_bulk_path_parse(rest, &p->bulk))
            return 400;
        p->op = DW_BULK;
        return 0;
    }
    if (n == 8 && IS(2, "series") && IS(4, "instances") && IS(6, "frames")) {
        if (frame_list(seg[7], len[7], p)) return 400;
        p->op = DW_FRAMES;
        return 0;
    }
    int meta = len[n - 1] == 8 && !memcmp(seg[n - 1], "metadata", 8);
    size_t m = n - (size_t)meta;
    if (m == 2 || (m == 4 && IS(2, "series")) ||
        (m == 6 && IS(2, "series") && IS(4, "instances"))) {
        p->op = meta ? DW_META : DW_WADO;
        return 0;
    }
    if (!meta && n == 3 && (IS(2, "series") || IS(2, "instances"))) {
        p->op = DW_QIDO;
        p->level = IS(2, "series") ? HDX_DCAT_SERIES : HDX_DCAT_IMAGE;
        return 0;
    }
    if (!meta && n == 5 && IS(2, "series") && IS(4, "instances")) {
        p->op = DW_QIDO;
        p->level = HDX_DCAT_IMAGE;
        return 0;
    }
#undef IS
    return 404;
}

/* ---------- shared ---------- */

static void gate_fail(struct hdx_http_reply *r)
{
    hdx_http_error(r, 503, "unavailable", "the access could not be audited; nothing is disclosed");
}

static void retrieve_url(struct hdx_front *f, char *out, size_t cap, const char *study,
                         const char *series, const char *instance)
{
    int n = snprintf(out, cap, "%s/studies/%s", f->dicomweb_base, study);
    if (series && series[0] && n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - (size_t)n, "/series/%s", series);
    if (instance && instance[0] && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, "/instances/%s", instance);
}

/* May who read DICOM at all (before any patient is looked at)? 0, or the 403 in r. */
static int may_read_any(struct hdx_front *f, struct hdx_conn *c, const struct asker *who,
                        const char *action, struct hdx_http_reply *r)
{
    struct hdx_policy_decision d;
    hdx_front_decide(f->api, who, HDX_ACT_READ, HDX_RES_RECORD, NULL, &d);
    if (hdx_policy_role_has(who->role, HDX_RES_RECORD, HDX_ACT_READ) &&
        d.reason != HDX_PR_MFA_REQUIRED && d.reason != HDX_PR_TRAINING &&
        d.reason != HDX_PR_PURPOSE && d.reason != HDX_PR_UNKNOWN_ROLE)
        return 0;
    enum hdx_policy_reason why = d.reason == HDX_PR_NO_PATIENT ? HDX_PR_ROLE : d.reason;
    hdx_front_audit_access(f->api, c, who, action, "deny", hdx_policy_reason_name(why), NULL, 0, 0,
                           0, DW_ROUTE);
    char msg[96];
    snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(why));
    hdx_http_error(r, 403, "forbidden", msg);
    return -1;
}

/* A search or retrieve that fails sends nothing: what it had counted is not a disclosure, but what
 * the policy withheld is still audited. */
static void fail_flush(struct hdx_front *f, struct hdx_conn *c, const struct asker *who,
                       struct tally *t)
{
    sodium_memzero(t->e, sizeof(t->e));
    t->n = 0;
    hdx_front_tally_flush(f->api, c, who, t, "read", DW_ROUTE);
}

static void answer_json(struct hdx_http_reply *r, int status, json_t *v)
{
    hdx_http_json_value(r, status, v);
    if (r->status == status) r->content_type = DW_JSON;
}

/* ---------- QIDO-RS ---------- */

struct qkey {
    const struct hdx_dcat_attr *attr;
    char value[HDX_DQUERY_ID_MAX / 16];
    int matching; /* a key with a value the client gave (or the path's UID) */
};

struct qido {
    struct qkey keys[HDX_DQUERY_KEYS_MAX];
    size_t n;
    char unsupported[256];
    size_t limit, offset;
    int fuzzy;
};

static const struct hdx_dcat_attr *attr_named(const char *name)
{
    size_t n = strlen(name);
    if (n == 8 && strspn(name, "0123456789abcdefABCDEF") == 8) {
        unsigned long t = strtoul(name, NULL, 16);
        return hdx_dcat_attr_find((uint16_t)(t >> 16), (uint16_t)(t & 0xFFFF));
    }
    const struct hdx_dcat_attr *a;
    for (size_t i = 0; (a = hdx_dcat_attr_at(i)) != NULL; i++)
        if (!strcmp(a->keyword, name)) return a;
    return NULL;
}

static struct qkey *qkey_get(struct qido *q, const struct hdx_dcat_attr *a)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->keys[i].attr == a) return &q->keys[i];
    if (q->n == HDX_DQUERY_KEYS_MAX) return NULL;
    struct qkey *k = &q->keys[q->n++];
    memset(k, 0, sizeof(*k));
    k->attr = a;
    return k;
}

static void note_unsupported(struct qido *q, const char *name)
{
    /* named only when it is an attribute name's shape: never arbitrary client bytes */
    size_t n = strlen(name), used = strlen(q->unsupported);
    int shaped = n && n <= 64 &&
                 strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                              "0123456789") == n;
    if (used + n + 3 >= sizeof(q->unsupported)) return;
    snprintf(q->unsupported + used, sizeof(q->unsupported) - used, "%s%s", used ? ", " : "",
             shaped ? name : "(a key that is not an attribute)");
}

/* The default return attributes of PS3.18 Table 10.6.3-3 to -5 that hdx holds. */
static void defaults(struct qido *q, enum hdx_dcat_level level)
{
    static const uint32_t study[] = {0x00080020, 0x00080030, 0x00080050, 0x00080061, 0x00080090,
                                     0x00081030, 0x00100010, 0x00100020, 0x00100030, 0x00100040,
                                     0x0020000D, 0x00200010, 0x00201206, 0x00201208};
    static const uint32_t series[] = {0x00080060, 0x0020000E, 0x00200011, 0x00201209, 0x0020000D};
    static const uint32_t image[] = {0x00080016, 0x00080018, 0x00200013, 0x0020000D, 0x0020000E};
    const uint32_t *t = level == HDX_DCAT_STUDY ? study : level == HDX_DCAT_SERIES ? series : image;
    size_t n = level == HDX_DCAT_STUDY    ? sizeof(study) / 4
               : level == HDX_DCAT_SERIES ? sizeof(series) / 4
                                          : sizeof(image) / 4;
    for (size_t i = 0; i < n; i++)
        (void)qkey_get(q, hdx_dcat_attr_find((uint16_t)(t[i] >> 16), (uint16_t)t[i]));
}

static int include_all(struct qido *q, enum hdx_dcat_level level)
{
    const struct hdx_dcat_attr *a;
    for (size_t i = 0; (a = hdx_dcat_attr_at(i)) != NULL; i++)
        if (a->level <= level && !qkey_get(q, a)) return -1;
    return 0;
}

/* The query's parameters into q. 0, or 400 with the reason in why. */
static int qido_params(const struct http_req *req, enum hdx_dcat_level level, struct qido *q,
                       char *why, size_t cap)
{
    const char *cur = req->query;
    char key[80], val[sizeof(q->keys[0].value)];
    int rc, have_limit = 0, have_offset = 0;
    q->limit = QIDO_LIMIT_DEFAULT;
    while ((rc = http_query_next(&cur, key, sizeof(key), val, sizeof(val))) != 0) {
        if (rc < 0) {
            snprintf(why, cap, "a query parameter is malformed or too long");
            return 400;
        }
        if (!strcmp(key, "purpose")) continue; /* the policy's, read by hdx_front_asks */
        if (!strcmp(key, "limit") || !strcmp(key, "offset")) {
            char *end;
            unsigned long long v = strtoull(val, &end, 10);
            int *have = key[0] == 'l' ? &have_limit : &have_offset;
            if (*have || !val[0] || *end || val[0] == '-' || v > 1000000 ||
                (key[0] == 'l' && v == 0)) {
                snprintf(why, cap, "%s must be given once, a decimal number (limit 1 to 1000000)",
                         key);
                return 400;
            }
            *have = 1;
            if (key[0] == 'l')
                q->limit = (size_t)v;
            else
                q->offset = (size_t)v;
            continue;
        }
        if (!strcmp(key, "fuzzymatching")) {
            if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0) {
                snprintf(why, cap, "fuzzymatching must be true or false");
                return 400;
            }
            q->fuzzy = val[0] == 't';
            continue;
        }
        if (!strcmp(key, "includefield")) {
            for (char *save = NULL, *t = strtok_r(val, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                if (!strcmp(t, "all")) {
                    if (include_all(q, level)) goto too_many;
                    continue;
                }
                const struct hdx_dcat_attr *a = attr_named(t);
                if (!a || a->level > level)
                    note_unsupported(q, t);
                else if (!qkey_get(q, a))
                    goto too_many;
            }
            continue;
        }
        const struct hdx_dcat_attr *a = attr_named(key);
        if (!a) {
            note_unsupported(q, key);
            continue;
        }
        struct qkey *k = qkey_get(q, a);
        if (!k) goto too_many;
        if (k->matching) {
            snprintf(why, cap, "attribute %s is given twice", a->keyword);
            return 400;
        }
        /* a list of UIDs or of modalities: PS3.18 8.3.4.1 separates them with commas */
        if (!strcmp(a->vr, "UI") || a->element == 0x0061)
            for (char *s = val; *s; s++)
                if (*s == ',') *s = '\\';
        snprintf(k->value, sizeof(k->value), "%s", val);
        k->matching = 1;
    }
    sodium_memzero(val, sizeof(val));
    return 0;
too_many:
    sodium_memzero(val, sizeof(val));
    snprintf(why, cap, "too many attributes");
    return 400;
}

static int qkey_cmp(const void *a, const void *b)
{
    const struct qkey *x = a, *y = b;
    uint32_t tx = (uint32_t)x->attr->group << 16 | x->attr->element,
             ty = (uint32_t)y->attr->group << 16 | y->attr->element;
    return tx < ty ? -1 : tx > ty;
}

/* The path's Study or Series Instance UID (0020,eeee) as a matching key: 0, or -1 with the
 * 400 in r when the query gives the same attribute another value. */
static int path_key(struct qido *q, uint16_t element, const char *uid, struct hdx_http_reply *r)
{
    const struct hdx_dcat_attr *a = hdx_dcat_attr_find(0x0020, element);
    struct qkey *k = uid[0] ? qkey_get(q, a) : NULL;
    if (!k) return 0;
    if (k->matching && strcmp(k->value, uid) != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s is given in the path and differently in the query",
                 a->keyword);
        hdx_http_error(r, 400, "bad_request", msg);
        return -1;
    }
    snprintf(k->value, sizeof(k->value), "%s", uid);
    k->matching = 1;
    return 0;
}

struct qido_admit {
    struct hdx_front *f;
    const struct asker *who;
    struct tally *tally;
};

static int qido_admit(void *arg, const uint8_t *patient)
{
    struct qido_admit *a = arg;
    struct hdx_policy_decision d;
    hdx_front_decide(a->f->api, a->who, HDX_ACT_READ, HDX_RES_RECORD, patient, &d);
    if (!d.permit) hdx_front_tally_deny(a->tally, d.reason);
    return d.permit;
}

static void do_qido(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                    const struct asker *who, const struct dw_path *p, struct hdx_http_reply *r)
{
    struct hdx_dcat *cat = f->env.dicom ? hdx_dicom_catalog(f->env.dicom) : NULL;
    struct qido *q = calloc(1, sizeof(*q));
    struct tally *tally = calloc(1, sizeof(*tally));
    struct hdx_dquery *dq = calloc(1, sizeof(*dq));
    struct hdx_dsenc enc;
    uint32_t *ids = NULL;
    size_t n = 0, withheld = 0;
    int more = 0, parsed = 0;
    char why[200];
    hdx_dsenc_init(&enc, HDX_DS_EXPLICIT_LE, HDX_DQUERY_ID_MAX);
    if (!q || !tally || !dq || !cat) {
        hdx_http_error(r, 503, "unavailable", cat ? "out of memory" : "DICOM is not set up");
        goto out;
    }
    if (may_read_any(f, c, who, "search", r)) goto out;
    int st = qido_params(req, p->level, q, why, sizeof(why));
    if (st) {
        hdx_http_error(r, st, "bad_request", why);
        goto out;
    }
    defaults(q, p->level);
    if (path_key(q, 0x000D, p->study, r) || path_key(q, 0x000E, p->series, r)) goto out;
    /* the identifier a C-FIND SCU would send, in UTF-8 */
    static const char *const level_names[] = {"", "PATIENT", "STUDY", "SERIES", "IMAGE"};
    qsort(q->keys, q->n, sizeof(q->keys[0]), qkey_cmp);
    int erc = hdx_dsenc_str(&enc, 0x0008, 0x0005, "CS", "ISO_IR 192");
    size_t i = 0;
    for (; erc == HDX_OK && i < q->n && q->keys[i].attr->group == 0x0008 &&
           q->keys[i].attr->element < 0x0052;
         i++)
        erc = hdx_dsenc_str(&enc, q->keys[i].attr->group, q->keys[i].attr->element,
                            q->keys[i].attr->vr, q->keys[i].value);
    if (erc == HDX_OK) erc = hdx_dsenc_str(&enc, 0x0008, 0x0052, "CS", level_names[p->level]);
    for (; erc == HDX_OK && i < q->n; i++)
        erc = hdx_dsenc_str(&enc, q->keys[i].attr->group, q->keys[i].attr->element,
                            q->keys[i].attr->vr, q->keys[i].value);
    if (erc != HDX_OK) {
        hdx_http_error(r, 400, "bad_request", "a query value is too long for its attribute");
        goto out;
    }
    uint16_t status = 0;
    int qrc =
        hdx_dquery_parse(enc.buf, enc.len, HDX_DS_EXPLICIT_LE, 1, dq, &status, why, sizeof(why));
    parsed = 1;
    if (qrc != HDX_OK) {
        if (status == 0xA700)
            hdx_http_error(r, 503, "unavailable", "out of memory");
        else
            hdx_http_error(r, 400, "bad_request", why);
        goto out;
    }
    struct qido_admit adm = {f, who, tally};
    struct hdx_dcat_admit admit = {qido_admit, &adm};
    size_t max = q->offset + q->limit;
    if (hdx_dcat_find(cat, dq->level, dq->keys, dq->nkeys, &admit, max, &ids, &n, &more,
                      &withheld) != HDX_OK) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    hdx_dquery_drop_keys(dq);
    json_t *arr = json_array();
    int failed = !arr;
    for (size_t j = q->offset; !failed && j < n; j++) {
        struct hdx_dsenc ans;
        json_t *o = NULL;
        failed = hdx_dquery_answer(dq, cat, ids[j], &ans) != HDX_OK;
        struct hdx_dcmjson_opts jo = {.skip_group_lengths = 1};
        if (!failed)
            failed = hdx_dcmjson_dataset(ans.buf, ans.len, ans.syntax, &jo, &o, why, sizeof(why)) !=
                     HDX_OK;
        hdx_dsenc_free(&ans);
        if (failed) break;
        json_object_del(o, "00080052");
        json_object_del(o, "00080005"); /* JSON is UTF-8: the set says nothing more */
        char url[512], b1[16], b2[16], b3[16];
        const struct hdx_dcat_attr *su = hdx_dcat_attr_find(0x0020, 0x000D),
                                   *se = hdx_dcat_attr_find(0x0020, 0x000E),
                                   *si = hdx_dcat_attr_find(0x0008, 0x0018);
        const char *vs = hdx_dcat_value(cat, dq->level, ids[j], su, b1, sizeof(b1));
        const char *vr = dq->level >= HDX_DCAT_SERIES
                             ? hdx_dcat_value(cat, dq->level, ids[j], se, b2, sizeof(b2))
                             : NULL;
        const char *vi = dq->level == HDX_DCAT_IMAGE
                             ? hdx_dcat_value(cat, dq->level, ids[j], si, b3, sizeof(b3))
                             : NULL;
        retrieve_url(f, url, sizeof(url), vs, vr, vi);
        hdx_dcmjson_put(o, 0x0008, 0x1190, "UR", url);
        json_array_append_new(arr, o);
        const uint8_t *tok = hdx_dcat_token(cat, dq->level, ids[j]);
        struct hdx_policy_decision d;
        hdx_front_decide(f->api, who, HDX_ACT_READ, HDX_RES_RECORD, tok, &d);
        if (hdx_front_tally_add(tally, tok, hdx_dcat_seq(cat, dq->level, ids[j]),
                                d.reason == HDX_PR_PERMIT_BREAK_GLASS)) {
            hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
            hdx_front_tally_add(tally, tok, hdx_dcat_seq(cat, dq->level, ids[j]),
                                d.reason == HDX_PR_PERMIT_BREAK_GLASS);
        }
    }
    if (failed) {
        fail_flush(f, c, who, tally);
        json_decref(arr);
        hdx_http_error(r, 503, "unavailable", "the search cannot be answered now");
        goto out;
    }
    hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
    answer_json(r, 200, arr);
    size_t xl = 0;
    if (more)
        xl += (size_t)snprintf(r->extra + xl, sizeof(r->extra) - xl,
                               "Warning: 299 hdx \"There are additional results that can be "
                               "requested\"\r\n");
    if (q->unsupported[0] && xl < sizeof(r->extra))
        snprintf(r->extra + xl, sizeof(r->extra) - xl,
                 "Warning: 299 hdx \"ignored, not supported: %.140s\"\r\n", q->unsupported);
    else if (q->fuzzy && xl < sizeof(r->extra))
        snprintf(r->extra + xl, sizeof(r->extra) - xl,
                 "Warning: 299 hdx \"fuzzymatching is not supported: matching is exact\"\r\n");
out:
    free(ids);
    hdx_dsenc_free(&enc);
    if (dq) {
        if (parsed) hdx_dquery_free(dq);
        free(dq);
    }
    if (q) sodium_memzero(q, sizeof(*q));
    free(q);
    free(tally);
}

/* ---------- WADO-RS ---------- */

/* One media range's parameter (name lower-case) into out, unquoted: 1, or 0 when absent. */
static int range_param(const char *range, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(range, ';'); p; p = strchr(p + 1, ';')) {
        const char *k = p + 1;
        while (*k == ' ' || *k == '\t')
            k++;
        if (strncasecmp(k, name, nl) != 0 || k[nl] != '=') continue;
        const char *v = k + nl + 1;
        size_t n = strcspn(v, ";");
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v++;
            n -= 2;
        }
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
        return 1;
    }
    return 0;
}

/* What the Accept header allows: 1 (with *ts the transfer syntax asked for, "" for any), or 0
 * when it names nothing hdx can send (406). hdx sends instances as they were stored. */
static int accept_ok(const struct http_req *req, int meta, char *ts, size_t ts_cap);

/* Frames are sent in their stored encoding: multipart/related of any type (application/
 * octet-stream for native pixel data, the compressed syntax's image type otherwise). */
static int accept_frames(const struct http_req *req)
{
    const char *acc = http_header_get(req, "accept");
    if (!acc || !acc[0]) return 1;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", acc);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t ml = strcspn(t, "; \t");
        if ((ml == 3 && !strncmp(t, "*/*", 3)) ||
            (ml == 17 && !strncasecmp(t, "multipart/related", 17)) ||
            (ml == 11 && !strncasecmp(t, "multipart/*", 11)))
            return 1;
    }
    return 0;
}

/* The media type of a frame in transfer syntax ts (PS3.18 Table 8.7.3-2). */
static const char *frame_media(const char *ts)
{
    static const struct {
        const char *prefix, *media;
    } map[] = {
        {"1.2.840.10008.1.2.4.50", "image/jpeg"},    {"1.2.840.10008.1.2.4.51", "image/jpeg"},
        {"1.2.840.10008.1.2.4.57", "image/jpeg"},    {"1.2.840.10008.1.2.4.70", "image/jpeg"},
        {"1.2.840.10008.1.2.4.80", "image/jls"},     {"1.2.840.10008.1.2.4.81", "image/jls"},
        {"1.2.840.10008.1.2.4.90", "image/jp2"},     {"1.2.840.10008.1.2.4.91", "image/jp2"},
        {"1.2.840.10008.1.2.5", "image/x-dicom-rle"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(ts, map[i].prefix)) return map[i].media;
    return "application/octet-stream";
}

static int accept_ok(const struct http_req *req, int meta, char *ts, size_t ts_cap)
{
    const char *acc = http_header_get(req, "accept");
    ts[0] = 0;
    if (!acc || !acc[0]) return 1;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", acc);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t')
            t++;
        size_t ml = strcspn(t, ";");
        while (ml && (t[ml - 1] == ' ' || t[ml - 1] == '\t'))
            ml--;
        char media[128], type[128], q[16];
        snprintf(media, sizeof(media), "%.*s", (int)(ml < sizeof(media) ? ml : 0), t);
        if (range_param(t, "q", q, sizeof(q)) && strtod(q, NULL) <= 0) continue;
        if (!strcmp(media, "*/*")) return 1;
        if (meta) {
            if (!strcasecmp(media, DW_JSON) || !strcasecmp(media, "application/json") ||
                !strcasecmp(media, "application/*"))
                return 1;
            continue;
        }
        if (strcasecmp(media, "multipart/related") != 0 && strcasecmp(media, "multipart/*") != 0)
            continue;
        if (range_param(t, "type", type, sizeof(type)) && strcasecmp(type, "application/dicom"))
            continue;
        char want[HDX_DS_UID_MAX + 1] = "";
        if (range_param(t, "transfer-syntax", want, sizeof(want)) && strcmp(want, "*") != 0) {
            if (!hdx_uid_valid(want)) continue;
            snprintf(ts, ts_cap, "%s", want);
        }
        return 1;
    }
    return 0;
}

struct part {
    uint8_t *pt;
    size_t len;
    char ct[128]; /* a frame's Content-Type ("": an instance's, from ts) */
    char ts[HDX_DS_UID_MAX + 1];
    char study[HDX_DS_UID_MAX + 1], series[HDX_DS_UID_MAX + 1], instance[HDX_DS_UID_MAX + 1];
};

static void parts_free(struct part *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].pt) {
            sodium_memzero(v[i].pt, v[i].len);
            free(v[i].pt);
        }
    free(v);
}

static int meta_of(struct hdx_front *f, const struct part *pa, json_t **out, char *why, size_t cap)
{
    struct hdx_dcm_file file;
    struct hdx_ds_error err;
    if (hdx_dcm_file_parse(pa->pt, pa->len, &file, &err) != HDX_OK) {
        snprintf(why, cap, "a stored instance does not parse");
        return HDX_E_INTEGRITY;
    }
    int deflated = 0;
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(file.ts, &deflated);
    const uint8_t *ds = pa->pt + file.dataset_off;
    size_t len = pa->len - file.dataset_off;
    uint8_t *inflated = NULL;
    if (deflated) {
        int rc = hdx_ds_inflate(ds, len, f->env.conf->dicom_max_instance, &inflated, &len);
        if (rc != HDX_OK) {
            snprintf(why, cap, "a stored instance does not inflate");
            return rc;
        }
        ds = inflated;
    }
    /* large binary values are named by the bulk data URI this route serves (below the
     * instance); without a series UID (a deflated instance) they are given by their VR only */
    char bulk[560];
    retrieve_url(f, bulk, sizeof(bulk), pa->study, pa->series, pa->instance);
    strncat(bulk, "/bulk", sizeof(bulk) - strlen(bulk) - 1);
    struct hdx_dcmjson_opts o = {.inline_max = META_INLINE_MAX,
                                 .bulk_uri = pa->series[0] ? bulk : NULL,
                                 .skip_group_lengths = 1};
    int rc = hdx_dcmjson_dataset(ds, len, syn, &o, out, why, cap);
    if (inflated) {
        sodium_memzero(inflated, len);
        free(inflated);
    }
    return rc;
}

static void do_wado(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                    const struct asker *who, const struct dw_path *p, struct hdx_http_reply *r)
{
    struct hdx_dcat *cat = f->env.dicom ? hdx_dicom_catalog(f->env.dicom) : NULL;
    int meta = p->op == DW_META;
    uint64_t *seqs = NULL;
    size_t n = 0, np = 0, total = 0;
    struct part *parts = NULL;
    struct tally *tally = calloc(1, sizeof(*tally));
    int more = 0;
    char want_ts[HDX_DS_UID_MAX + 1];
    if (!cat || !tally) {
        hdx_http_error(r, 503, "unavailable", cat ? "out of memory" : "DICOM is not set up");
        goto out;
    }
    int frames = p->op == DW_FRAMES || p->op == DW_BULK;
    want_ts[0] = 0;
    if (frames ? !accept_frames(req) : !accept_ok(req, meta, want_ts, sizeof(want_ts))) {
        hdx_http_error(r, 406, "not_acceptable",
                       frames ? "frames are sent as multipart/related in their stored encoding"
                       : meta
                           ? "metadata is sent as application/dicom+json"
                           : "instances are sent as multipart/related; type=\"application/dicom\" "
                             "in the transfer syntax they were stored in (no transcoding)");
        goto out;
    }
    if (may_read_any(f, c, who, "read", r)) goto out;
    if (hdx_dcat_instances(cat, p->study, p->series[0] ? p->series : NULL,
                           p->instance[0] ? p->instance : NULL, 0, &seqs, &n, &more) != HDX_OK ||
        (n && !(parts = calloc(n, sizeof(*parts))))) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct hdx_record rec;
        memset(&rec, 0, sizeof(rec));
        int rc = hdx_store_get(f->env.ro_store, seqs[i], &rec);
        if (rc != HDX_OK || rec.kind != HDX_KIND_DICOM) {
            hdx_record_clear(&rec);
            hdx_error("dicomweb_read_failed", "seq=%llu err=%s", (unsigned long long)seqs[i],
                      hdx_strerror(rc != HDX_OK ? rc : HDX_E_INTEGRITY));
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 503, "unavailable", "an instance cannot be read now");
            goto out;
        }
        const uint8_t *tok = hdx_record_has_patient(&rec) ? rec.patient : NULL;
        struct hdx_policy_decision d;
        hdx_front_decide(f->api, who, HDX_ACT_READ, HDX_RES_RECORD, tok, &d);
        if (!d.permit) {
            hdx_front_tally_deny(tally, d.reason);
            hdx_record_clear(&rec);
            continue;
        }
        struct part *pa = &parts[np];
        rc = hdx_record_open(&rec, f->env.kr, &pa->pt, &pa->len);
        struct hdx_dcm_file file;
        struct hdx_ds_error err;
        struct hdx_dcm_keys k;
        if (rc == HDX_OK && hdx_dcm_file_parse(pa->pt, pa->len, &file, &err) != HDX_OK)
            rc = HDX_E_INTEGRITY;
        if (rc == HDX_OK) {
            /* the URLs the metadata's bulk data and the parts' locations name */
            int deflated = 0;
            enum hdx_ds_syntax syn = hdx_ds_syntax_of(file.ts, &deflated);
            struct hdx_ds_limits lim;
            hdx_ds_limits_default(&lim);
            memset(&k, 0, sizeof(k));
            snprintf(pa->ts, sizeof(pa->ts), "%s", file.ts);
            snprintf(pa->study, sizeof(pa->study), "%s", p->study);
            snprintf(pa->instance, sizeof(pa->instance), "%s", file.sop_instance);
            if (!deflated && hdx_dcm_extract(pa->pt + file.dataset_off, pa->len - file.dataset_off,
                                             syn, &lim, &k, &err) == HDX_OK)
                snprintf(pa->series, sizeof(pa->series), "%s", k.series_uid);
            sodium_memzero(&k, sizeof(k));
        }
        if (rc == HDX_OK && want_ts[0] && strcmp(want_ts, pa->ts) != 0) {
            np++; /* freed with the others */
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 406, "not_acceptable",
                           "an instance is stored in another transfer syntax, and hdx does not "
                           "transcode: ask for transfer-syntax=* or leave it out");
            goto out;
        }
        int bg = d.reason == HDX_PR_PERMIT_BREAK_GLASS;
        if (rc == HDX_OK && hdx_front_tally_add(tally, tok, rec.seq, bg)) {
            hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
            hdx_front_tally_add(tally, tok, rec.seq, bg);
        }
        hdx_record_clear(&rec);
        if (rc != HDX_OK) {
            hdx_error("dicomweb_read_failed", "seq=%llu err=%s", (unsigned long long)seqs[i],
                      hdx_strerror(rc));
            np++; /* freed with the others */
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 503, "unavailable", "an instance cannot be read now");
            goto out;
        }
        total += pa->len;
        np++;
        if (total > f->env.conf->dicom_max_retrieve) {
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 400, "too_large",
                           "the answer would exceed dicom.max_retrieve: retrieve the series or "
                           "instances one by one");
            goto out;
        }
    }
    if (!np) {
        /* none, or none this asker may see: the same answer */
        hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
        hdx_http_error(r, 404, "not_found", "no such study, series or instance");
        goto out;
    }
    char why[160];
    if (meta) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < np; i++) {
            json_t *o = NULL;
            if (meta_of(f, &parts[i], &o, why, sizeof(why)) != HDX_OK) {
                hdx_error("dicomweb_metadata_failed", "reason=\"%s\"", why);
                json_decref(arr);
                arr = NULL;
                break;
            }
            json_array_append_new(arr, o);
        }
        if (!arr) {
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 503, "unavailable", "the metadata cannot be made now");
            goto out;
        }
        hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
        answer_json(r, 200, arr);
        goto out;
    }
    const char *root_type = "application/dicom";
    if (frames) {
        /* the instance's frames (or one attribute's value) replace it as the answer's parts */
        const struct part *in = &parts[0];
        struct hdx_dcm_file file;
        struct hdx_ds_error err;
        struct part *fr = NULL;
        uint8_t *inflated = NULL;
        size_t dlen = 0, want = p->op == DW_FRAMES ? p->nframes : 1;
        int deflated = 0, frc = HDX_OK, compressed = hdx_ts_compressed(in->ts);
        /* encapsulated pixel data's bulk data is its frames, every one */
        int all_frames =
            p->op == DW_BULK && p->bulk.depth == 0 && p->bulk.tags[0] == 0x7FE00010 && compressed;
        const char *fwhy = "";
        if (hdx_dcm_file_parse(in->pt, in->len, &file, &err) != HDX_OK) frc = HDX_E_INTEGRITY;
        enum hdx_ds_syntax syn = hdx_ds_syntax_of(in->ts, &deflated);
        const uint8_t *ds = frc == HDX_OK ? in->pt + file.dataset_off : NULL;
        dlen = frc == HDX_OK ? in->len - file.dataset_off : 0;
        if (frc == HDX_OK && deflated &&
            (frc = hdx_ds_inflate(ds, dlen, f->env.conf->dicom_max_instance, &inflated, &dlen)) ==
                HDX_OK)
            ds = inflated;
        if (frc == HDX_OK && all_frames) {
            uint8_t *first = NULL;
            size_t flen = 0;
            uint32_t nf = 0;
            frc = hdx_dcm_frame(ds, dlen, syn, 1, 1, &first, &flen, &nf, &fwhy);
            if (first) {
                sodium_memzero(first, flen);
                free(first);
            }
            want = nf;
        }
        if (frc == HDX_OK && !(fr = calloc(want, sizeof(*fr)))) frc = HDX_E_NOMEM;
        for (size_t i = 0; frc == HDX_OK && i < want; i++) {
            uint32_t nf_total;
            if (p->op == DW_BULK && !all_frames) {
                frc = hdx_dcm_bulk(ds, dlen, syn, &p->bulk, &fr[i].pt, &fr[i].len, &fwhy);
                snprintf(fr[i].ct, sizeof(fr[i].ct), "application/octet-stream");
                continue;
            }
            frc = hdx_dcm_frame(ds, dlen, syn, compressed,
                                all_frames ? (uint32_t)i + 1 : p->frames[i], &fr[i].pt, &fr[i].len,
                                &nf_total, &fwhy);
            snprintf(fr[i].ct, sizeof(fr[i].ct), "%s; transfer-syntax=%s", frame_media(in->ts),
                     in->ts);
        }
        if (inflated) {
            sodium_memzero(inflated, dlen);
            free(inflated);
        }
        if (frc != HDX_OK) {
            if (fr) parts_free(fr, want);
            fail_flush(f, c, who, tally);
            if (frc == HDX_E_NOTFOUND)
                hdx_http_error(r, 404, "not_found", fwhy[0] ? fwhy : "no such frame");
            else if (frc == HDX_E_INVAL)
                hdx_http_error(r, 400, "bad_request", fwhy[0] ? fwhy : "the frames cannot be read");
            else
                hdx_http_error(r, 503, "unavailable", "the frames cannot be read now");
            goto out;
        }
        root_type =
            p->op == DW_BULK && !all_frames ? "application/octet-stream" : frame_media(in->ts);
        parts_free(parts, np);
        parts = fr;
        np = want;
    }
    /* a boundary that none of the parts holds */
    char boundary[40];
    for (int tries = 0;; tries++) {
        uint8_t rnd[16];
        randombytes_buf(rnd, sizeof(rnd));
        memcpy(boundary, "hdx-", 4);
        sodium_bin2hex(boundary + 4, sizeof(boundary) - 4, rnd, sizeof(rnd));
        size_t bl = strlen(boundary), i = 0;
        while (i < np && !memmem(parts[i].pt, parts[i].len, boundary, bl))
            i++;
        if (i == np) break;
        if (tries == 8) {
            fail_flush(f, c, who, tally);
            hdx_http_error(r, 503, "unavailable", "no boundary could be chosen");
            goto out;
        }
    }
    struct hdx_mp_out mo;
    hdx_mp_out_init(&mo, f->env.conf->dicom_max_retrieve + np * 1024 + 256);
    int wrc = HDX_OK;
    for (size_t i = 0; wrc == HDX_OK && i < np; i++) {
        char ct[128], loc[512];
        snprintf(ct, sizeof(ct), "application/dicom; transfer-syntax=%s", parts[i].ts);
        retrieve_url(f, loc, sizeof(loc), parts[i].study, parts[i].series[0] ? parts[i].series : "",
                     parts[i].series[0] ? parts[i].instance : "");
        wrc = hdx_mp_write_part(&mo, boundary, parts[i].ct[0] ? parts[i].ct : ct,
                                parts[i].series[0] && !frames ? loc : NULL, parts[i].pt,
                                parts[i].len);
    }
    if (wrc == HDX_OK) wrc = hdx_mp_write_end(&mo, boundary);
    if (wrc != HDX_OK) {
        hdx_mp_out_free(&mo);
        fail_flush(f, c, who, tally);
        hdx_http_error(r, 503, "unavailable", "the answer cannot be made now");
        goto out;
    }
    hdx_front_tally_flush(f->api, c, who, tally, "read", DW_ROUTE);
    r->status = 200;
    r->body = (char *)mo.buf; /* the reply frees it */
    r->body_len = mo.len;
    snprintf(r->content_type_own, sizeof(r->content_type_own),
             "multipart/related; type=\"%s\"; boundary=%s", root_type, boundary);
out:
    parts_free(parts, np);
    free(seqs);
    free(tally);
}

/* ---------- STOW-RS ---------- */

struct stow;
struct stow_inst {
    struct stow *s;
    struct hdx_dcm_keys k;
    uint16_t failure; /* 0: submitted */
    char why[160];
    uint64_t seq;
};

struct stow {
    struct hdx_front *f;
    struct hdx_conn *c;
    char study[HDX_DS_UID_MAX + 1];
    struct stow_inst *v;
    size_t n, pending;
};

static void stow_free(struct stow *s)
{
    if (!s) return;
    if (s->v) {
        sodium_memzero(s->v, s->n * sizeof(*s->v));
        free(s->v);
    }
    free(s);
}

static json_t *sop_item(struct hdx_front *f, const struct stow_inst *in, int failed)
{
    json_t *o = json_object();
    if (!o) return NULL;
    if (in->k.sop_class[0]) hdx_dcmjson_put(o, 0x0008, 0x1150, "UI", in->k.sop_class);
    if (in->k.sop_instance[0]) hdx_dcmjson_put(o, 0x0008, 0x1155, "UI", in->k.sop_instance);
    if (failed) {
        json_object_set_new(o, "00081197",
                            json_pack("{s:s, s:[i]}", "vr", "US", "Value", (int)in->failure));
    } else {
        char url[512];
        retrieve_url(f, url, sizeof(url), in->k.study_uid, in->k.series_uid, in->k.sop_instance);
        hdx_dcmjson_put(o, 0x0008, 0x1190, "UR", url);
    }
    return o;
}

/* The answer, once every submitted instance is durable or failed (PS3.18 10.5.3). */
static void stow_answer(struct stow *s, struct hdx_http_reply *r)
{
    json_t *ok = json_array(), *bad = json_array(), *o = json_object();
    size_t nok = 0, nbad = 0;
    char url[512];
    for (size_t i = 0; i < s->n; i++) {
        const struct stow_inst *in = &s->v[i];
        json_t *item = sop_item(s->f, in, in->failure != 0);
        if (item) json_array_append_new(in->failure ? bad : ok, item);
        in->failure ? nbad++ : nok++;
    }
    if (s->study[0]) {
        retrieve_url(s->f, url, sizeof(url), s->study, NULL, NULL);
        hdx_dcmjson_put(o, 0x0008, 0x1190, "UR", url);
    }
    if (nbad) json_object_set_new(o, "00081198", json_pack("{s:s, s:O}", "vr", "SQ", "Value", bad));
    if (nok) json_object_set_new(o, "00081199", json_pack("{s:s, s:O}", "vr", "SQ", "Value", ok));
    json_decref(ok);
    json_decref(bad);
    answer_json(r, !nbad ? 200 : nok ? 202 : 409, o);
    if (nbad && r->status >= 200 && r->status < 300)
        snprintf(r->extra, sizeof(r->extra),
                 "Warning: 299 hdx \"%zu of %zu instances were not stored: see the Failed SOP "
                 "Sequence\"\r\n",
                 nbad, s->n);
}

static void stow_item_done(void *arg, const struct hdx_intake_item *it)
{
    struct stow_inst *in = arg;
    struct stow *s = in->s;
    if (it->status == HDX_OK) {
        in->seq = it->seq;
        hdx_dicom_stored(s->f->env.dicom, &in->k, it);
    } else {
        in->failure = 0x0110;
        hdx_warn("dicomweb_store_failed", "peer=%s sender=%s err=%s", s->c->peer, it->sender,
                 hdx_strerror(it->status));
    }
    if (--s->pending) return;
    struct hdx_http_reply r = {0};
    stow_answer(s, &r);
    hdx_http_finish(s->c, &r);
    free(r.body);
    stow_free(s);
}

static void do_stow(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                    const struct asker *who, const struct dw_path *p, struct hdx_http_reply *r)
{
    struct hdx_mp_ctype ct;
    const char *why = NULL;
    char msg[240];
    const char *cth = http_header_get(req, "content-type");
    if (!f->env.dicom) {
        hdx_http_error(r, 503, "unavailable", "DICOM is not set up");
        return;
    }
    if (!cth || hdx_mp_content_type(cth, &ct, &why) != HDX_OK ||
        strcmp(ct.media, "multipart/related") != 0 ||
        (ct.type[0] && strcmp(ct.type, "application/dicom") != 0)) {
        snprintf(msg, sizeof(msg),
                 "STOW-RS takes multipart/related; type=\"application/dicom\" with a boundary%s%s",
                 why ? ": " : "", why ? why : "");
        hdx_http_error(r, 415, "unsupported_media_type", msg);
        return;
    }
    /* records of any patient (an integration, a clinician), or a device's own stream (a
     * modality that stores over HTTPS, as over DICOM TLS) */
    enum hdx_resource res = hdx_policy_role_has(who->role, HDX_RES_RECORD, HDX_ACT_WRITE)
                                ? HDX_RES_RECORD
                                : HDX_RES_STREAM;
    if (!hdx_policy_role_has(who->role, res, HDX_ACT_WRITE)) {
        hdx_front_audit_access(f->api, c, who, "write", "deny", hdx_policy_reason_name(HDX_PR_ROLE),
                               NULL, 0, 0, 0, DW_ROUTE);
        hdx_http_error(r, 403, "forbidden", "not permitted: role");
        return;
    }
    /* every part first: a request that does not parse stores nothing */
    struct hdx_mp_limits lim;
    struct hdx_mp_reader rd;
    struct hdx_mp_part part;
    size_t off = 0, count = 0;
    hdx_mp_limits_default(&lim);
    if (lim.max_parts > STOW_PARTS_MAX) lim.max_parts = STOW_PARTS_MAX;
    hdx_mp_begin(&rd, req->body, req->body_len, ct.boundary, &lim);
    int rc;
    while ((rc = hdx_mp_next(&rd, &part, &why, &off)) == 1)
        count++;
    if (rc < 0 || !count) {
        snprintf(msg, sizeof(msg), "the multipart body is malformed: %s (at byte %zu)",
                 rc < 0 && why ? why : "it has no part", off);
        hdx_http_error(r, 400, "bad_request", msg);
        return;
    }
    struct stow *s = calloc(1, sizeof(*s));
    if (!s || !(s->v = calloc(count, sizeof(*s->v)))) {
        stow_free(s);
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    s->f = f;
    s->c = c;
    s->n = count;
    snprintf(s->study, sizeof(s->study), "%s", p->study);
    hdx_mp_begin(&rd, req->body, req->body_len, ct.boundary, &lim);
    for (size_t i = 0; i < count && hdx_mp_next(&rd, &part, &why, &off) == 1; i++) {
        struct stow_inst *in = &s->v[i];
        char pct[sizeof(part.content_type)];
        snprintf(pct, sizeof(pct), "%s", part.content_type);
        char *semi = strchr(pct, ';');
        if (semi) *semi = 0;
        for (char *e = pct + strlen(pct); e > pct && e[-1] == ' '; e--)
            e[-1] = 0;
        if (pct[0] && strcasecmp(pct, "application/dicom") != 0) {
            snprintf(msg, sizeof(msg), "part %zu: its Content-Type must be application/dicom",
                     i + 1);
            hdx_http_error(r, 400, "bad_request", msg);
            stow_free(s);
            return;
        }
        char ts[HDX_DS_UID_MAX + 1], reason[160];
        uint16_t status = 0;
        int crc = hdx_dicom_file_check(f->env.dicom, part.body, part.len, &in->k, ts, sizeof(ts),
                                       &status, reason, sizeof(reason));
        if (crc != HDX_OK && status == 0xC000) {
            snprintf(msg, sizeof(msg), "part %zu: %s", i + 1, reason);
            hdx_http_error(r, 400, "bad_request", msg);
            hdx_info("dicomweb_stow_refused", "peer=%s sender=%s part=%zu reason=\"%s\"", c->peer,
                     who->user, i + 1, reason);
            stow_free(s);
            return;
        }
        if (crc != HDX_OK) {
            in->failure = status;
            snprintf(in->why, sizeof(in->why), "%s", reason);
        } else if (s->study[0] && strcmp(in->k.study_uid, s->study) != 0) {
            in->failure = 0xA900;
            snprintf(in->why, sizeof(in->why), "its Study Instance UID is not the one in the URL");
        }
    }
    /* then each instance the policy lets this asker write goes to the pipeline */
    for (size_t i = 0; i < count; i++) {
        struct stow_inst *in = &s->v[i];
        if (in->failure) continue;
        uint8_t tok[HDX_BLIND_LEN];
        int has = in->k.patient_id[0] && hdx_blind(f->env.kr, "patient", in->k.patient_id,
                                                   strlen(in->k.patient_id), tok) == HDX_OK;
        struct hdx_policy_decision d;
        hdx_front_decide(f->api, who, HDX_ACT_WRITE, res, res == HDX_RES_RECORD && has ? tok : NULL,
                         &d);
        if (!d.permit) {
            hdx_front_audit_access(f->api, c, who, "write", "deny",
                                   hdx_policy_reason_name(d.reason), has ? tok : NULL, 0, 0, 1,
                                   DW_ROUTE);
            in->failure = 0x0124;
            snprintf(in->why, sizeof(in->why), "not permitted: %s",
                     hdx_policy_reason_name(d.reason));
        }
        sodium_memzero(tok, sizeof(tok));
    }
    hdx_mp_begin(&rd, req->body, req->body_len, ct.boundary, &lim);
    for (size_t i = 0; i < count && hdx_mp_next(&rd, &part, &why, &off) == 1; i++) {
        struct stow_inst *in = &s->v[i];
        if (in->failure) {
            hdx_info("dicomweb_stow_failed",
                     "peer=%s sender=%s part=%zu status=0x%04x "
                     "reason=\"%s\"",
                     c->peer, who->user, i + 1, in->failure, in->why);
            continue;
        }
        struct hdx_intake_item *it = calloc(1, sizeof(*it));
        if (it && !(it->body = malloc(part.len ? part.len : 1))) {
            free(it);
            it = NULL;
        }
        if (!it) {
            in->failure = 0xA700;
            continue;
        }
        memcpy(it->body, part.body, part.len);
        it->body_len = part.len;
        it->kind = HDX_KIND_DICOM;
        snprintf(it->sender, sizeof(it->sender), "%s", who->user);
        snprintf(it->type, sizeof(it->type), "%s", hdx_sop_storage_name(in->k.sop_class));
        snprintf(it->control_id, sizeof(it->control_id), "%s", in->k.sop_instance);
        snprintf(it->patient_id, sizeof(it->patient_id), "%s", in->k.patient_id);
        it->received_us = hdx_monotonic_us();
        in->s = s;
        it->on_done = stow_item_done;
        it->done_arg = in;
        s->pending++;
        hdx_metric_ingest(HDX_METRIC_HTTP);
        f->env.submit(f->env.arg, it);
    }
    if (!s->pending) { /* nothing to wait for */
        stow_answer(s, r);
        stow_free(s);
        return;
    }
    r->deferred = 1;
}

/* ---------- the route ---------- */

static void route_inner(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                        struct hdx_http_reply *r)
{
    struct dw_path p;
    int get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    int post = !strcmp(req->method, "POST");
    if (!get && !post) {
        hdx_http_error(r, 405, "method_not_allowed", "DICOMweb here is GET and POST");
        return;
    }
    int st = path_parse(req->path, post, &p);
    if (st == 400) {
        hdx_http_error(r, 400, "bad_request",
                       "a UID in the path is not a valid UID, or the frame list is not 1 to 64 "
                       "frame numbers separated by commas");
        return;
    }
    if (st) {
        hdx_http_error(r, 404, "not_found", "no such DICOMweb resource (docs/DICOMWEB.md)");
        return;
    }
    struct asker who;
    if (hdx_front_asks(f, c, req, r, &who)) return;
    if (hdx_front_is_machine(&who)) {
        /* a machine's granted scope (policy/scope.h) is written for HL7 v2 records: a scoped
         * one is refused rather than given more */
        struct hdx_scope *scope = NULL;
        int src = hdx_scope_load(f->env.ro_store, who.user, &scope, NULL), scoped = scope != NULL;
        free(scope);
        if (src != HDX_OK || scoped) {
            hdx_front_audit_access(f->api, c, &who, post ? "write" : "read", "deny",
                                   "scoped_principal", NULL, 0, 0, 0, DW_ROUTE);
            hdx_http_error(r, 403, "forbidden",
                           "a principal with a granted scope cannot use DICOMweb yet");
            return;
        }
    }
    switch (p.op) {
    case DW_STOW:
        do_stow(f, c, req, &who, &p, r);
        break;
    case DW_QIDO:
        do_qido(f, c, req, &who, &p, r);
        break;
    case DW_WADO:
    case DW_META:
    case DW_FRAMES:
    case DW_BULK:
        do_wado(f, c, req, &who, &p, r);
        break;
    }
}

static void route_dicomweb(void *arg, struct hdx_conn *c, const struct http_req *req,
                           struct hdx_http_reply *r)
{
    struct hdx_front *f = arg;
    struct hdx_audit_gate *g = hdx_front_gate_begin(f, c, gate_fail);
    if (!g) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    route_inner(f, c, req, r);
    hdx_front_gate_end(g, r);
}

int hdx_front_dicomweb_init(struct hdx_front *f, struct hdx_http *h)
{
    /* beside /fhir: fhir.base_url's origin, or https://HTTP_LISTEN */
    const char *fb = hdx_front_fhir_base(f);
    snprintf(f->dicomweb_base, sizeof(f->dicomweb_base), "%.*s/dicomweb",
             (int)(strlen(fb) - strlen("/fhir")), fb);
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
    int rc = HDX_OK;
    for (size_t i = 0; rc == HDX_OK && i < sizeof(methods) / sizeof(methods[0]); i++) {
        struct hdx_http_route a = {methods[i], "/dicomweb/", route_dicomweb, f};
        struct hdx_http_route b = {methods[i], "/dicomweb", route_dicomweb, f};
        rc = hdx_http_route_add(h, &a);
        if (rc == HDX_OK) rc = hdx_http_route_add(h, &b);
    }
    return rc;
}
