/* ul: the DICOM upper layer, acceptor side and the requestor's PDUs (see ul.h).
 *
 * DESIGN: every byte a peer sent is read through a cursor (dicom/cursor.h); an item's value
 * becomes a sub-cursor, so a sub-item can never read past its parent item, and an item
 * never past the PDU. Parsing fills the caller's struct in place and zeroes it again on a
 * refusal, so a refused request leaves nothing half-parsed behind.
 *
 * Choices where PS3.8 leaves room (all made so the strings hdx compares and logs are exactly
 * what the peer sent, never a silently shortened or cleaned-up copy):
 *  - Items of unknown type, at the top level, inside a presentation context and inside user
 *    information, are skipped, not refused: PS3.8 9.3.1 asks receivers to ignore what they do
 *    not recognise so that later editions can add items. An item whose length overruns its
 *    parent is still refused, since then nothing after it can be trusted to be an item.
 *  - A UID may end in one pad byte (NUL, PS3.8 Annex F; a space, as some old implementations
 *    send); any other byte than a digit or '.' is refused (PS3.5 9.1), so an embedded NUL
 *    cannot make "1.2.840.10008.1.1<NUL>junk" compare equal to Verification.
 *  - An AE title is trimmed of leading and trailing spaces only; a control byte or backslash
 *    in it is refused (PS3.5 6.2, VR AE) rather than kept or cut at.
 *  - The mandatory items (application context, one or more presentation contexts, user
 *    information; PS3.8 9.3.2) must be present; each singular item or sub-item may appear
 *    once (a second maximum length would leave two readings of one request).
 *  - The protocol version is stored, not judged: refusing it is an A-ASSOCIATE-RJ the session
 *    sends (PS3.8 9.3.4, reason 2), not an abort. Reserved fields are not tested (9.3.1).
 * Refusal reasons (PS3.8 9.3.8): a value or structure that is wrong is "invalid PDU parameter
 * value" (6); a singular item that appears twice is "unexpected PDU parameter" (5). */
#include "dicom/ul.h"

#include <string.h>

#include "core/err.h"

/* Item types (PS3.8 9.3.2, 9.3.3, Annex D). */
enum {
    ITEM_APP_CONTEXT = 0x10,
    ITEM_PCTX_RQ = 0x20,
    ITEM_PCTX_AC = 0x21,
    ITEM_ABSTRACT = 0x30,
    ITEM_TS = 0x40,
    ITEM_USER = 0x50,
    SUB_MAX_LEN = 0x51,
    SUB_IMPL_CLASS = 0x52,
    SUB_ASYNC = 0x53,
    SUB_IMPL_VERSION = 0x55,
};

#define RQ_FIXED_LEN 68 /* version, reserved, called, calling, 32 reserved */

int hdx_ul_pdu_header(const uint8_t *p, size_t n, uint8_t *type, uint32_t *body_len)
{
    struct hdx_dcur c = hdx_dcur_make(p, p != NULL ? n : 0);
    uint8_t t = 0;
    uint32_t len = 0;

    if (hdx_dcur_u8(&c, &t) != 0 || hdx_dcur_skip(&c, 1) != 0 || hdx_dcur_u32be(&c, &len) != 0)
        return HDX_EAGAIN;
    if (type != NULL) *type = t;
    if (body_len != NULL) *body_len = len;
    return HDX_OK;
}

/* ---------- A-ASSOCIATE-RQ ---------- */

struct rq_parse {
    struct hdx_ul_assoc_rq *rq;
    const char *why;
    uint8_t reason;
    uint8_t seen_id[256 / 8];
};

static int fail(struct rq_parse *ps, uint8_t reason, const char *why)
{
    ps->why = why;
    ps->reason = reason;
    return -1;
}

/* The next item of a variable field: its type and its value as a cursor of its own. */
static int next_item(struct hdx_dcur *c, uint8_t *type, struct hdx_dcur *val, struct rq_parse *ps)
{
    uint16_t len;

    if (hdx_dcur_u8(c, type) != 0 || hdx_dcur_skip(c, 1) != 0 || hdx_dcur_u16be(c, &len) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "item header truncated");
    if (hdx_dcur_sub(c, len, val) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "item overruns its parent");
    return 0;
}

static int get_uid(struct hdx_dcur *v, char out[HDX_UL_UID_MAX + 1], struct rq_parse *ps)
{
    size_t n = hdx_dcur_left(v);
    const uint8_t *b;

    if (n == 0 || hdx_dcur_bytes(v, n, &b) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "empty UID");
    if (b[n - 1] == '\0' || b[n - 1] == ' ') n--; /* one pad byte makes any length even */
    if (n == 0) return fail(ps, HDX_ABORT_INVALID_PARAM, "empty UID");
    if (n > HDX_UL_UID_MAX) return fail(ps, HDX_ABORT_INVALID_PARAM, "UID over 64 bytes");
    for (size_t i = 0; i < n; i++)
        if (b[i] != '.' && (b[i] < '0' || b[i] > '9'))
            return fail(ps, HDX_ABORT_INVALID_PARAM, "UID holds a byte other than a digit or '.'");
    memcpy(out, b, n);
    out[n] = '\0';
    return 0;
}

static int get_ae(struct hdx_dcur *c, char out[HDX_UL_AE_LEN + 1], struct rq_parse *ps)
{
    const uint8_t *b;
    size_t lo = 0, hi = HDX_UL_AE_LEN;

    if (hdx_dcur_bytes(c, HDX_UL_AE_LEN, &b) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "A-ASSOCIATE-RQ fixed fields truncated");
    while (lo < hi && b[lo] == ' ')
        lo++;
    while (hi > lo && b[hi - 1] == ' ')
        hi--;
    for (size_t i = lo; i < hi; i++)
        if (b[i] < 0x20 || b[i] > 0x7e || b[i] == '\\')
            return fail(ps, HDX_ABORT_INVALID_PARAM,
                        "AE title holds a control character, backslash or non-ASCII byte");
    memcpy(out, b + lo, hi - lo);
    out[hi - lo] = '\0';
    return 0;
}

static int parse_fixed(struct hdx_dcur *c, struct rq_parse *ps)
{
    if (hdx_dcur_left(c) < RQ_FIXED_LEN)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "A-ASSOCIATE-RQ fixed fields truncated");
    (void)hdx_dcur_u16be(c, &ps->rq->protocol_version);
    (void)hdx_dcur_skip(c, 2);
    if (get_ae(c, ps->rq->called, ps) != 0 || get_ae(c, ps->rq->calling, ps) != 0) return -1;
    return hdx_dcur_skip(c, 32);
}

static int parse_pctx(struct hdx_dcur *v, struct rq_parse *ps)
{
    struct hdx_ul_assoc_rq *rq = ps->rq;
    struct hdx_ul_pctx *pc;
    uint8_t id, type;
    struct hdx_dcur sub;
    int have_abstract = 0;

    if (rq->npctx == HDX_UL_PCTX_MAX)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "too many presentation contexts");
    if (hdx_dcur_u8(v, &id) != 0 || hdx_dcur_skip(v, 3) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context item truncated");
    if (id == 0) return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context ID 0");
    if ((id & 1) == 0) return fail(ps, HDX_ABORT_INVALID_PARAM, "even presentation context ID");
    if (ps->seen_id[id / 8] & (1u << (id % 8)))
        return fail(ps, HDX_ABORT_INVALID_PARAM, "repeated presentation context ID");
    ps->seen_id[id / 8] |= (uint8_t)(1u << (id % 8));
    pc = &rq->pctx[rq->npctx];
    pc->id = id;
    while (hdx_dcur_left(v) > 0) {
        if (next_item(v, &type, &sub, ps) != 0) return -1;
        if (type == ITEM_ABSTRACT) {
            if (have_abstract++)
                return fail(ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated abstract syntax");
            if (get_uid(&sub, pc->abstract_syntax, ps) != 0) return -1;
        } else if (type == ITEM_TS) {
            if (pc->nts == HDX_UL_TS_MAX)
                return fail(ps, HDX_ABORT_INVALID_PARAM, "too many transfer syntaxes");
            if (get_uid(&sub, pc->ts[pc->nts], ps) != 0) return -1;
            pc->nts++;
        } /* else: an unknown sub-item, skipped (see DESIGN) */
    }
    if (!have_abstract)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context without abstract syntax");
    if (pc->nts == 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context without transfer syntax");
    rq->npctx++;
    return 0;
}

/* Implementation Version Name (PS3.7 D.3.3.2): up to 16 printable ASCII characters; trailing
 * pad bytes (space or NUL) are dropped as for an AE title. */
static int get_version_name(struct hdx_dcur *v, char out[HDX_UL_AE_LEN + 1], struct rq_parse *ps)
{
    size_t n = hdx_dcur_left(v);
    const uint8_t *b;

    if (hdx_dcur_bytes(v, n, &b) != 0) return fail(ps, HDX_ABORT_INVALID_PARAM, "item truncated");
    while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\0'))
        n--;
    if (n > HDX_UL_AE_LEN)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "implementation version name over 16 bytes");
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return fail(ps, HDX_ABORT_INVALID_PARAM,
                        "implementation version name holds a non-printable byte");
    memcpy(out, b, n);
    out[n] = '\0';
    return 0;
}

static int parse_user(struct hdx_dcur *v, struct rq_parse *ps)
{
    struct hdx_ul_assoc_rq *rq = ps->rq;
    unsigned seen = 0;
    uint8_t type;
    struct hdx_dcur sub;

    while (hdx_dcur_left(v) > 0) {
        if (next_item(v, &type, &sub, ps) != 0) return -1;
        if (type < SUB_MAX_LEN || type > SUB_IMPL_VERSION || type == 0x54) continue;
        if (seen & (1u << (type - SUB_MAX_LEN)))
            return fail(ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated user information sub-item");
        seen |= 1u << (type - SUB_MAX_LEN);
        switch (type) {
        case SUB_MAX_LEN:
            if (hdx_dcur_left(&sub) != 4)
                return fail(ps, HDX_ABORT_INVALID_PARAM, "maximum length item is not 4 bytes");
            (void)hdx_dcur_u32be(&sub, &rq->max_pdu);
            break;
        case SUB_IMPL_CLASS:
            if (get_uid(&sub, rq->impl_class, ps) != 0) return -1;
            break;
        case SUB_ASYNC:
            if (hdx_dcur_left(&sub) != 4)
                return fail(ps, HDX_ABORT_INVALID_PARAM,
                            "asynchronous operations window item is not 4 bytes");
            rq->async = 1;
            break;
        case SUB_IMPL_VERSION:
            if (get_version_name(&sub, rq->impl_version, ps) != 0) return -1;
            break;
        }
    }
    return 0;
}

static int parse_items(struct hdx_dcur *c, struct rq_parse *ps)
{
    int have_app = 0, have_user = 0;
    uint8_t type;
    struct hdx_dcur v;

    while (hdx_dcur_left(c) > 0) {
        if (next_item(c, &type, &v, ps) != 0) return -1;
        switch (type) {
        case ITEM_APP_CONTEXT:
            if (have_app++)
                return fail(ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated application context");
            if (get_uid(&v, ps->rq->app_context, ps) != 0) return -1;
            break;
        case ITEM_PCTX_RQ:
            if (parse_pctx(&v, ps) != 0) return -1;
            break;
        case ITEM_USER:
            if (have_user++)
                return fail(ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated user information");
            if (parse_user(&v, ps) != 0) return -1;
            break;
        default: /* unknown, skipped (see DESIGN) */
            break;
        }
    }
    if (!have_app) return fail(ps, HDX_ABORT_INVALID_PARAM, "no application context");
    if (ps->rq->npctx == 0) return fail(ps, HDX_ABORT_INVALID_PARAM, "no presentation context");
    if (!have_user) return fail(ps, HDX_ABORT_INVALID_PARAM, "no user information");
    return 0;
}

int hdx_ul_parse_assoc_rq(const uint8_t *body, size_t len, struct hdx_ul_assoc_rq *rq,
                          const char **why, uint8_t *abort_reason)
{
    struct rq_parse ps;
    int rc = 0;

    memset(&ps, 0, sizeof(ps));
    ps.rq = rq;
    if (rq == NULL || (body == NULL && len != 0)) {
        rc = fail(&ps, HDX_ABORT_NOT_SPECIFIED, "no A-ASSOCIATE-RQ");
    } else {
        memset(rq, 0, sizeof(*rq));
        if (len > HDX_UL_RQ_MAX) {
            rc = fail(&ps, HDX_ABORT_INVALID_PARAM, "A-ASSOCIATE-RQ over 64 KiB");
        } else {
            struct hdx_dcur c = hdx_dcur_make(body, len);
            rc = parse_fixed(&c, &ps) != 0 || parse_items(&c, &ps) != 0 ? -1 : 0;
        }
    }
    if (rc == 0) {
        if (why != NULL) *why = NULL;
        if (abort_reason != NULL) *abort_reason = HDX_ABORT_NOT_SPECIFIED;
        return HDX_OK;
    }
    if (rq != NULL) memset(rq, 0, sizeof(*rq));
    if (why != NULL) *why = ps.why;
    if (abort_reason != NULL) *abort_reason = ps.reason;
    return HDX_E_INVAL;
}

/* ---------- negotiation ---------- */

static int proposes(const struct hdx_ul_pctx *pc, const char *ts)
{
    for (size_t i = 0; i < pc->nts && i < HDX_UL_TS_MAX; i++)
        if (strcmp(pc->ts[i], ts) == 0) return 1;
    return 0;
}

void hdx_ul_negotiate(const struct hdx_ul_assoc_rq *rq, int (*abstract_ok)(const char *uid),
                      const char *const *ts_pref, size_t nts_pref, struct hdx_ul_assoc_ac *ac)
{
    if (ac == NULL) return;
    memset(ac, 0, sizeof(*ac));
    if (rq == NULL) return;
    for (size_t i = 0; i < rq->npctx && i < HDX_UL_PCTX_MAX; i++) {
        const struct hdx_ul_pctx *pc = &rq->pctx[i];
        struct hdx_ul_pctx_result *r = &ac->pctx[ac->npctx++];

        r->id = pc->id;
        memcpy(r->abstract_syntax, pc->abstract_syntax, sizeof(r->abstract_syntax));
        /* Without a judge nothing is acceptable: a missing callback must not open every
         * SOP class. */
        if (abstract_ok == NULL || !abstract_ok(pc->abstract_syntax)) {
            r->result = HDX_PCTX_ABSTRACT_UNSUPPORTED;
            continue;
        }
        r->result = HDX_PCTX_TS_UNSUPPORTED;
        for (size_t k = 0; ts_pref != NULL && k < nts_pref; k++) {
            if (ts_pref[k] == NULL || strlen(ts_pref[k]) > HDX_UL_UID_MAX) continue;
            if (proposes(pc, ts_pref[k])) {
                r->result = HDX_PCTX_ACCEPT;
                memcpy(r->ts, ts_pref[k], strlen(ts_pref[k]) + 1);
                ac->accepted++;
                break;
            }
        }
    }
}

/* ---------- builders ---------- */

/* Writes into memory hdx sized itself: a write that does not fit marks the writer bad, and
 * the builder then returns 0 having promised nothing about out. */
struct wr {
    uint8_t *p;
    size_t cap, n;
    int bad;
};

static void put(struct wr *w, const void *b, size_t n)
{
    if (w->bad || n > w->cap - w->n) {
        w->bad = 1;
        return;
    }
    if (n != 0) memcpy(w->p + w->n, b, n);
    w->n += n;
}

static void put_u8(struct wr *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

/* An item header with its length left to item_close, which knows it. */
static size_t item_open(struct wr *w, uint8_t type)
{
    size_t at = w->n;
    put_u8(w, type);
    put_u8(w, 0);
    put_u16(w, 0);
    return at;
}

static void item_close(struct wr *w, size_t at)
{
    if (w->bad) return;
    size_t len = w->n - at - 4;
    if (len > 0xFFFF) {
        w->bad = 1;
        return;
    }
    w->p[at + 2] = (uint8_t)(len >> 8);
    w->p[at + 3] = (uint8_t)len;
}

/* A string item; a value longer than max (or unterminated within it) spoils the PDU. */
static void put_str_item(struct wr *w, uint8_t type, const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        w->bad = 1;
        return;
    }
    size_t at = item_open(w, type);
    put(w, s, n);
    item_close(w, at);
}

static void put_ae(struct wr *w, const char *ae)
{
    uint8_t f[HDX_UL_AE_LEN];
    size_t n = strnlen(ae, HDX_UL_AE_LEN);
    memset(f, ' ', sizeof(f));
    memcpy(f, ae, n);
    put(w, f, sizeof(f));
}

/* PS3.8 9.3.3.2: a rejected context still carries a transfer syntax sub-item whose value is
 * not tested; hdx sends the first one proposed, which every peer can at least parse. */
static const char *reply_ts(const struct hdx_ul_assoc_rq *rq, const struct hdx_ul_pctx_result *r)
{
    if (r->result == HDX_PCTX_ACCEPT) return r->ts;
    for (size_t i = 0; i < rq->npctx && i < HDX_UL_PCTX_MAX; i++)
        if (rq->pctx[i].id == r->id && rq->pctx[i].nts > 0) return rq->pctx[i].ts[0];
    return "";
}

size_t hdx_ul_build_assoc_ac(const struct hdx_ul_assoc_rq *rq, const struct hdx_ul_assoc_ac *ac,
                             uint32_t max_pdu, const char *impl_class, const char *impl_version,
                             uint8_t *out, size_t cap)
{
    struct wr w = {out, out != NULL ? cap : 0, 0, 0};
    static const uint8_t zeros[32];

    if (rq == NULL || ac == NULL || ac->npctx > HDX_UL_PCTX_MAX) return 0;
    put_u8(&w, HDX_PDU_ASSOC_AC);
    put_u8(&w, 0);
    put_u32(&w, 0); /* patched below */
    put_u16(&w, 1); /* protocol version 1, the only one there is (PS3.8 9.3.3) */
    put_u16(&w, 0);
    /* Called and calling echo the request (9.3.3: sent as received, not tested); ul keeps
     * them trimmed, so they go back re-padded, and the 32 reserved bytes as zeros. */
    put_ae(&w, rq->called);
    put_ae(&w, rq->calling);
    put(&w, zeros, sizeof(zeros));
    put_str_item(&w, ITEM_APP_CONTEXT, HDX_UL_APP_CONTEXT, HDX_UL_UID_MAX);
    for (size_t i = 0; i < ac->npctx; i++) {
        const struct hdx_ul_pctx_result *r = &ac->pctx[i];
        size_t at = item_open(&w, ITEM_PCTX_AC);
        put_u8(&w, r->id);
        put_u8(&w, 0);
        put_u8(&w, r->result);
        put_u8(&w, 0);
        put_str_item(&w, ITEM_TS, reply_ts(rq, r), HDX_UL_UID_MAX);
        item_close(&w, at);
    }
    size_t user = item_open(&w, ITEM_USER);
    size_t at = item_open(&w, SUB_MAX_LEN);
    put_u32(&w, max_pdu);
    item_close(&w, at);
    if (impl_class != NULL && impl_class[0] != '\0')
        put_str_item(&w, SUB_IMPL_CLASS, impl_class, HDX_UL_UID_MAX);
    /* Offered only when asked for: hdx performs one operation at a time (1, 1). */
    if (rq->async) {
        at = item_open(&w, SUB_ASYNC);
        put_u16(&w, 1);
        put_u16(&w, 1);
        item_close(&w, at);
    }
    if (impl_version != NULL && impl_version[0] != '\0')
        put_str_item(&w, SUB_IMPL_VERSION, impl_version, HDX_UL_AE_LEN);
    item_close(&w, user);
    if (w.bad) return 0;
    size_t body = w.n - HDX_UL_HEADER_LEN;
    out[2] = (uint8_t)(body >> 24);
    out[3] = (uint8_t)(body >> 16);
    out[4] = (uint8_t)(body >> 8);
    out[5] = (uint8_t)body;
    return w.n;
}

/* The three fixed 10-byte PDUs: header with length 4, then four bytes. */
static size_t build_short(uint8_t type, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3,
                          uint8_t *out, size_t cap)
{
    struct wr w = {out, out != NULL ? cap : 0, 0, 0};
    const uint8_t tail[4] = {b0, b1, b2, b3};

    put_u8(&w, type);
    put_u8(&w, 0);
    put_u32(&w, 4);
    put(&w, tail, sizeof(tail));
    return w.bad ? 0 : w.n;
}

size_t hdx_ul_build_assoc_rj(uint8_t result, uint8_t source, uint8_t reason, uint8_t *out,
                             size_t cap)
{
    return build_short(HDX_PDU_ASSOC_RJ, 0, result, source, reason, out, cap);
}

size_t hdx_ul_build_release_rp(uint8_t *out, size_t cap)
{
    return build_short(HDX_PDU_RELEASE_RP, 0, 0, 0, 0, out, cap);
}

size_t hdx_ul_build_abort(uint8_t source, uint8_t reason, uint8_t *out, size_t cap)
{
    return build_short(HDX_PDU_ABORT, 0, 0, source, reason, out, cap);
}

void hdx_ul_pdata_header(uint8_t out[HDX_UL_PDATA_OVERHEAD], uint8_t pctx_id, uint8_t control,
                         uint32_t data_len)
{
    struct wr w = {out, HDX_UL_PDATA_OVERHEAD, 0, 0};

    put_u8(&w, HDX_PDU_P_DATA);
    put_u8(&w, 0);
    put_u32(&w, data_len + 6); /* item length field + id + control + data */
    put_u32(&w, data_len + 2);
    put_u8(&w, pctx_id);
    put_u8(&w, control);
}

/* ---------- requestor side ---------- */

size_t hdx_ul_build_assoc_rq(const struct hdx_ul_assoc_rq *rq, uint8_t *out, size_t cap)
{
    struct wr w = {out, out != NULL ? cap : 0, 0, 0};
    static const uint8_t zeros[32];

    uint8_t seen[256 / 8] = {0};

    if (rq == NULL || rq->npctx == 0 || rq->npctx > HDX_UL_PCTX_MAX) return 0;
    /* what hdx_ul_parse_assoc_rq would refuse is not built: odd, unique IDs, non-empty UIDs */
    for (size_t i = 0; i < rq->npctx; i++) {
        const struct hdx_ul_pctx *pc = &rq->pctx[i];
        if (pc->nts == 0 || pc->nts > HDX_UL_TS_MAX || (pc->id & 1) == 0 ||
            (seen[pc->id / 8] & (1u << (pc->id % 8))) || pc->abstract_syntax[0] == '\0')
            return 0;
        seen[pc->id / 8] |= (uint8_t)(1u << (pc->id % 8));
        for (size_t k = 0; k < pc->nts; k++)
            if (pc->ts[k][0] == '\0') return 0;
    }
    put_u8(&w, HDX_PDU_ASSOC_RQ);
    put_u8(&w, 0);
    put_u32(&w, 0); /* patched below */
    put_u16(&w, 1);
    put_u16(&w, 0);
    put_ae(&w, rq->called);
    put_ae(&w, rq->calling);
    put(&w, zeros, sizeof(zeros));
    put_str_item(&w, ITEM_APP_CONTEXT, HDX_UL_APP_CONTEXT, HDX_UL_UID_MAX);
    for (size_t i = 0; i < rq->npctx; i++) {
        const struct hdx_ul_pctx *pc = &rq->pctx[i];
        size_t at = item_open(&w, ITEM_PCTX_RQ);
        put_u8(&w, pc->id);
        put_u8(&w, 0);
        put_u8(&w, 0);
        put_u8(&w, 0);
        put_str_item(&w, ITEM_ABSTRACT, pc->abstract_syntax, HDX_UL_UID_MAX);
        for (size_t k = 0; k < pc->nts; k++)
            put_str_item(&w, ITEM_TS, pc->ts[k], HDX_UL_UID_MAX);
        item_close(&w, at);
    }
    size_t user = item_open(&w, ITEM_USER);
    size_t at = item_open(&w, SUB_MAX_LEN);
    put_u32(&w, rq->max_pdu);
    item_close(&w, at);
    if (rq->impl_class[0] != '\0') put_str_item(&w, SUB_IMPL_CLASS, rq->impl_class, HDX_UL_UID_MAX);
    if (rq->impl_version[0] != '\0')
        put_str_item(&w, SUB_IMPL_VERSION, rq->impl_version, HDX_UL_AE_LEN);
    item_close(&w, user);
    if (w.bad) return 0;
    size_t body = w.n - HDX_UL_HEADER_LEN;
    out[2] = (uint8_t)(body >> 24);
    out[3] = (uint8_t)(body >> 16);
    out[4] = (uint8_t)(body >> 8);
    out[5] = (uint8_t)body;
    return w.n;
}

static const struct hdx_ul_pctx *proposed(const struct hdx_ul_assoc_rq *rq, uint8_t id)
{
    for (size_t i = 0; i < rq->npctx && i < HDX_UL_PCTX_MAX; i++)
        if (rq->pctx[i].id == id) return &rq->pctx[i];
    return NULL;
}

static int parse_ac_pctx(struct hdx_dcur *v, const struct hdx_ul_assoc_rq *rq,
                         struct hdx_ul_assoc_ac *ac, struct rq_parse *ps)
{
    uint8_t id, result, type;
    struct hdx_dcur sub;
    int have_ts = 0;

    if (hdx_dcur_u8(v, &id) != 0 || hdx_dcur_skip(v, 1) != 0 || hdx_dcur_u8(v, &result) != 0 ||
        hdx_dcur_skip(v, 1) != 0)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context item truncated");
    const struct hdx_ul_pctx *pc = proposed(rq, id);
    if (pc == NULL)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "answer for a presentation context not proposed");
    if (ps->seen_id[id / 8] & (1u << (id % 8)))
        return fail(ps, HDX_ABORT_INVALID_PARAM, "repeated presentation context ID");
    ps->seen_id[id / 8] |= (uint8_t)(1u << (id % 8));
    if (result > HDX_PCTX_TS_UNSUPPORTED)
        return fail(ps, HDX_ABORT_INVALID_PARAM, "presentation context result out of range");
    struct hdx_ul_pctx_result *r = &ac->pctx[ac->npctx];
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->result = result;
    memcpy(r->abstract_syntax, pc->abstract_syntax, sizeof(r->abstract_syntax));
    while (hdx_dcur_left(v) > 0) {
        if (next_item(v, &type, &sub, ps) != 0) return -1;
        if (type != ITEM_TS) continue;
        if (have_ts++) return fail(ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated transfer syntax");
        /* PS3.8 9.3.3.2: the value is not tested when the context is not accepted */
        if (result == HDX_PCTX_ACCEPT && get_uid(&sub, r->ts, ps) != 0) return -1;
    }
    if (result == HDX_PCTX_ACCEPT) {
        if (!have_ts)
            return fail(ps, HDX_ABORT_INVALID_PARAM, "accepted context without transfer syntax");
        if (!proposes(pc, r->ts))
            return fail(ps, HDX_ABORT_INVALID_PARAM,
                        "accepted transfer syntax was not proposed for that context");
        ac->accepted++;
    } else {
        r->ts[0] = '\0';
    }
    ac->npctx++;
    return 0;
}

int hdx_ul_parse_assoc_ac(const uint8_t *body, size_t len, const struct hdx_ul_assoc_rq *rq,
                          struct hdx_ul_assoc_ac *ac, uint32_t *max_pdu, const char **why)
{
    struct rq_parse ps;
    int have_app = 0, have_user = 0, have_max = 0;
    uint8_t type;
    struct hdx_dcur c, v, sub;

    memset(&ps, 0, sizeof(ps));
    if (ac == NULL || rq == NULL || (body == NULL && len != 0)) {
        if (ac != NULL) memset(ac, 0, sizeof(*ac));
        if (max_pdu != NULL) *max_pdu = 0;
        if (why != NULL) *why = "no A-ASSOCIATE-AC";
        return HDX_E_INVAL;
    }
    memset(ac, 0, sizeof(*ac));
    if (max_pdu != NULL) *max_pdu = 0;
    c = hdx_dcur_make(body, len);
    if (len > HDX_UL_RQ_MAX) {
        fail(&ps, HDX_ABORT_INVALID_PARAM, "A-ASSOCIATE-AC over 64 KiB");
        goto bad;
    }
    /* version, reserved, the echoed AE titles and the reserved 32 bytes: not tested (9.3.3) */
    if (hdx_dcur_skip(&c, RQ_FIXED_LEN) != 0) {
        fail(&ps, HDX_ABORT_INVALID_PARAM, "A-ASSOCIATE-AC fixed fields truncated");
        goto bad;
    }
    while (hdx_dcur_left(&c) > 0) {
        if (next_item(&c, &type, &v, &ps) != 0) goto bad;
        if (type == ITEM_APP_CONTEXT) {
            char app[HDX_UL_UID_MAX + 1];
            if (have_app++) {
                fail(&ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated application context");
                goto bad;
            }
            if (get_uid(&v, app, &ps) != 0) goto bad;
        } else if (type == ITEM_PCTX_AC) {
            if (ac->npctx == HDX_UL_PCTX_MAX) {
                fail(&ps, HDX_ABORT_INVALID_PARAM, "too many presentation contexts");
                goto bad;
            }
            if (parse_ac_pctx(&v, rq, ac, &ps) != 0) goto bad;
        } else if (type == ITEM_USER) {
            if (have_user++) {
                fail(&ps, HDX_ABORT_UNEXPECTED_PARAM, "repeated user information");
                goto bad;
            }
            while (hdx_dcur_left(&v) > 0) {
                if (next_item(&v, &type, &sub, &ps) != 0) goto bad;
                if (type != SUB_MAX_LEN) continue;
                uint32_t m = 0;
                if (have_max++ || hdx_dcur_left(&sub) != 4) {
                    fail(&ps, HDX_ABORT_INVALID_PARAM, "bad maximum length item");
                    goto bad;
                }
                (void)hdx_dcur_u32be(&sub, &m);
                if (max_pdu != NULL) *max_pdu = m;
            }
        } /* else: unknown, skipped as in a request */
    }
    if (!have_app) {
        fail(&ps, HDX_ABORT_INVALID_PARAM, "no application context");
        goto bad;
    }
    if (!have_user) {
        fail(&ps, HDX_ABORT_INVALID_PARAM, "no user information");
        goto bad;
    }
    if (why != NULL) *why = NULL;
    return HDX_OK;
bad:
    memset(ac, 0, sizeof(*ac));
    if (max_pdu != NULL) *max_pdu = 0;
    if (why != NULL) *why = ps.why;
    return HDX_E_INVAL;
}

size_t hdx_ul_build_release_rq(uint8_t *out, size_t cap)
{
    return build_short(HDX_PDU_RELEASE_RQ, 0, 0, 0, 0, out, cap);
}

/* ---------- P-DATA-TF ---------- */

int hdx_ul_pdv_next(struct hdx_dcur *body, struct hdx_ul_pdv *pdv, const char **why)
{
    struct hdx_dcur c;
    uint32_t len;
    const char *bad;

    if (why != NULL) *why = NULL;
    if (pdv != NULL) memset(pdv, 0, sizeof(*pdv));
    if (body == NULL || pdv == NULL) {
        bad = "no P-DATA-TF body";
        goto refuse;
    }
    if (body->bad) {
        bad = "P-DATA-TF body already refused";
        goto refuse;
    }
    if (hdx_dcur_left(body) == 0) return HDX_E_NOTFOUND;
    /* Work on a copy: the caller's cursor moves only past a whole, valid PDV. */
    c = *body;
    if (hdx_dcur_u32be(&c, &len) != 0) {
        bad = "PDV item length truncated";
        goto refuse;
    }
    if (len < 2) {
        bad = "PDV item length under 2";
        goto refuse;
    }
    if (len > hdx_dcur_left(&c)) {
        bad = "PDV item overruns the P-DATA-TF";
        goto refuse;
    }
    (void)hdx_dcur_u8(&c, &pdv->pctx_id);
    (void)hdx_dcur_u8(&c, &pdv->control);
    pdv->len = len - 2;
    (void)hdx_dcur_bytes(&c, pdv->len, &pdv->data);
    *body = c;
    return HDX_OK;
refuse:
    if (body != NULL) body->bad = 1; /* sticky: a walk cannot resume inside a broken body */
    if (why != NULL) *why = bad;
    return HDX_E_INVAL;
}

/* ---------- the state machine ---------- */

struct cell {
    uint8_t action, next;
};

#define C(a, s)                                                                                    \
    {                                                                                              \
        HDX_##a, HDX_STA##s                                                                        \
    }
#define S(n) [HDX_STA##n - 1]
#define E(n) [HDX_EVT##n - 1]

/* PS3.8 Table 9-10, one row per state, cells by event; the next states are those of Tables
 * 9-6 to 9-9. A cell left out is one the table leaves empty (the event cannot happen in that
 * state); hdx_ul_transition answers it with HDX_ACT_NONE and the state unchanged.
 * Two actions choose their next state at run time; the cell holds one of the two:
 *  - AE-6 goes to Sta3 if the request is acceptable, else Sta13 (after A-ASSOCIATE-RJ):
 *    the cell says Sta3 and the session decides (ul.h).
 *  - AR-8 (release collision) goes to Sta9 for the association-requestor and Sta10 for the
 *    acceptor: ul is the acceptor side, so Sta10. */
static const struct cell table[HDX_UL_NSTATES][HDX_UL_NEVENTS] =
    {
        S(1) = {E(1) = C(AE1, 4), E(5) = C(AE5, 2)},
        S(2) =
            {
                E(3) = C(AA1, 13),
                E(4) = C(AA1, 13),
                E(6) = C(AE6, 3),
                E(10) = C(AA1, 13),
                E(12) = C(AA1, 13),
                E(13) = C(AA1, 13),
                E(16) = C(AA2, 1),
                E(17) = C(AA5, 1),
                E(18) = C(AA2, 1),
                E(19) = C(AA1, 13),
            },
        S(3) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(7) = C(AE7, 6),
                E(8) = C(AE8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AA8, 13),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(4) = {E(2) = C(AE2, 5), E(15) = C(AA2, 1), E(17) = C(AA4, 1)},
        S(5) =
            {
                E(3) = C(AE3, 6),
                E(4) = C(AE4, 1),
                E(6) = C(AA8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AA8, 13),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(6) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(9) = C(DT1, 6),
                E(10) = C(DT2, 6),
                E(11) = C(AR1, 7),
                E(12) = C(AR2, 8),
                E(13) = C(AA8, 13),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(7) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(10) = C(AR6, 7),
                E(12) = C(AR8, 10),
                E(13) = C(AR3, 1),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(8) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(9) = C(AR7, 8),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AA8, 13),
                E(14) = C(AR4, 13),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(9) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AA8, 13),
                E(14) = C(AR9, 11),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(10) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AR10, 12),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(11) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AR3, 1),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(12) =
            {
                E(3) = C(AA8, 13),
                E(4) = C(AA8, 13),
                E(6) = C(AA8, 13),
                E(10) = C(AA8, 13),
                E(12) = C(AA8, 13),
                E(13) = C(AA8, 13),
                E(14) = C(AR4, 13),
                E(15) = C(AA1, 13),
                E(16) = C(AA3, 1),
                E(17) = C(AA4, 1),
                E(19) = C(AA8, 13),
            },
        S(13) =
            {
                E(3) = C(AA6, 13),
                E(4) = C(AA6, 13),
                E(6) = C(AA7, 13),
                E(10) = C(AA6, 13),
                E(12) = C(AA6, 13),
                E(13) = C(AA6, 13),
                E(16) = C(AA2, 1),
                E(17) = C(AR5, 1),
                E(18) = C(AA2, 1),
                E(19) = C(AA7, 13),
            },
};

#undef C
#undef S
#undef E

enum hdx_ul_action hdx_ul_transition(enum hdx_ul_state state, enum hdx_ul_event event,
                                     enum hdx_ul_state *next)
{
    if (next != NULL) *next = state;
    if ((int)state < HDX_STA1 || (int)state > HDX_STA13 || (int)event < HDX_EVT1 ||
        (int)event > HDX_EVT19)
        return HDX_ACT_NONE;
    const struct cell *c = &table[state - 1][event - 1];
    if (c->action == HDX_ACT_NONE) return HDX_ACT_NONE;
    if (next != NULL) *next = (enum hdx_ul_state)c->next;
    return (enum hdx_ul_action)c->action;
}

enum hdx_ul_event hdx_ul_pdu_event(uint8_t pdu_type)
{
    switch (pdu_type) {
    case HDX_PDU_ASSOC_RQ:
        return HDX_EVT6;
    case HDX_PDU_ASSOC_AC:
        return HDX_EVT3;
    case HDX_PDU_ASSOC_RJ:
        return HDX_EVT4;
    case HDX_PDU_P_DATA:
        return HDX_EVT10;
    case HDX_PDU_RELEASE_RQ:
        return HDX_EVT12;
    case HDX_PDU_RELEASE_RP:
        return HDX_EVT13;
    case HDX_PDU_ABORT:
        return HDX_EVT16;
    default:
        return HDX_EVT19;
    }
}

const char *hdx_ul_action_name(enum hdx_ul_action a)
{
    static const char *const names[] = {
        "none",  "AE-1", "AE-2", "AE-3", "AE-4", "AE-5", "AE-6", "AE-7", "AE-8", "DT-1",
        "DT-2",  "AR-1", "AR-2", "AR-3", "AR-4", "AR-5", "AR-6", "AR-7", "AR-8", "AR-9",
        "AR-10", "AA-1", "AA-2", "AA-3", "AA-4", "AA-5", "AA-6", "AA-7", "AA-8",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == HDX_AA8 + 1, "one name per action");
    if ((int)a < 0 || (int)a > HDX_AA8) return "?";
    return names[a];
}

const char *hdx_ul_state_name(enum hdx_ul_state s)
{
    static const char *const names[HDX_UL_NSTATES] = {
        "Sta1", "Sta2", "Sta3",  "Sta4",  "Sta5",  "Sta6",  "Sta7",
        "Sta8", "Sta9", "Sta10", "Sta11", "Sta12", "Sta13",
    };
    if ((int)s < HDX_STA1 || (int)s > HDX_STA13) return "Sta?";
    return names[s - 1];
}
