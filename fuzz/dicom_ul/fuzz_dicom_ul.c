/* fuzz_dicom_ul: libFuzzer entry point for the DICOM upper layer (dicom/ul.h).
 * Input: one PDU as a peer sends it. The header goes to hdx_ul_pdu_header; everything after
 * its 6 bytes (whatever length the header claims, so that mutations which grow or shrink the
 * input still reach the parsers) is copied to an exact-size heap buffer and read as an
 * A-ASSOCIATE-RQ body and as a P-DATA-TF body. An accepted request is negotiated (the real
 * hdx_sop_abstract_ok, four transfer syntaxes), answered with an A-ASSOCIATE-AC that is
 * walked again item by item, and rebuilt as a request with hdx_ul_build_assoc_rq that must
 * parse back to itself. The same bytes are read as an A-ASSOCIATE-AC body answering a fixed
 * proposal of five contexts and, when they parsed as a request, answering that request.
 * The state table is driven with (state, event) pairs taken from the input bytes.
 * Properties: a refusal names a fixed reason and an A-ABORT reason and leaves the struct
 * zeroed; an accepted request is within every bound (AE titles trimmed, printable, at most
 * 16 bytes; UIDs digits and dots, 1 to 64 bytes; 1 to 128 contexts with odd, unique IDs and
 * 1 to 32 transfer syntaxes); parsing is deterministic; negotiation follows the preference
 * order; the AC fits the buffer the session gives it, its lengths add up and it says what
 * was negotiated; a rebuilt request parses back equal (protocol version 1, the standard
 * application context, no async window: what the builder always sends) and is exactly its
 * own length; an AC refusal is HDX_E_INVAL with a fixed reason, a zeroed ac and max_pdu 0,
 * an accepted AC answers only proposed contexts, each once, with a result 0..4, the accepted
 * ones (as many as it counts) in a transfer syntax that context proposed, the others with
 * ts "", and parsing it is deterministic; PDVs tile the body exactly up to a refusal, which
 * is sticky; every in-range cell has an in-range next state and Evt19 aborts wherever a PDU
 * can arrive. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/cursor.h"
#include "dicom/sop.h"
#include "dicom/ul.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

/* What net/dicom_session.c allocates for the A-ASSOCIATE-AC. */
#define AC_CAP (1024 + HDX_UL_PCTX_MAX * (12 + HDX_UL_UID_MAX))

static struct hdx_ul_assoc_rq rq, rq2;
static struct hdx_ul_assoc_ac ac;
/* the requestor side: the rebuilt request, what it must parse back to, the fixed proposal
 * an AC is read against, two parses of one AC */
static struct hdx_ul_assoc_rq rq_back, rq_want, proposal;
static struct hdx_ul_assoc_ac ac1, ac2;
static const struct hdx_ul_assoc_ac zero_ac;

static const char *const pref[] = {
    "1.2.840.10008.1.2.1",    /* explicit VR little endian */
    "1.2.840.10008.1.2",      /* implicit VR little endian */
    "1.2.840.10008.1.2.1.99", /* deflated */
    "1.2.840.10008.1.2.4.50", /* JPEG baseline */
};
#define NPREF (sizeof(pref) / sizeof(pref[0]))

static void check_ae(const char *s)
{
    size_t n = strnlen(s, HDX_UL_AE_LEN + 1);
    CHECK(n <= HDX_UL_AE_LEN);
    CHECK(n == 0 || (s[0] != ' ' && s[n - 1] != ' '));
    for (size_t i = 0; i < n; i++)
        CHECK(s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '\\');
}

static void check_uid(const char *s, int may_be_empty)
{
    size_t n = strnlen(s, HDX_UL_UID_MAX + 1);
    CHECK(n <= HDX_UL_UID_MAX);
    CHECK(may_be_empty || n > 0);
    for (size_t i = 0; i < n; i++)
        CHECK(s[i] == '.' || (s[i] >= '0' && s[i] <= '9'));
}

static void check_rq(const struct hdx_ul_assoc_rq *r)
{
    uint8_t seen[32] = {0};

    check_ae(r->called);
    check_ae(r->calling);
    check_uid(r->app_context, 0);
    check_uid(r->impl_class, 1);
    size_t vn = strnlen(r->impl_version, HDX_UL_AE_LEN + 1);
    CHECK(vn <= HDX_UL_AE_LEN && (vn == 0 || r->impl_version[vn - 1] != ' '));
    for (size_t i = 0; i < vn; i++)
        CHECK(r->impl_version[i] >= 0x20 && r->impl_version[i] <= 0x7e);
    CHECK(r->async == 0 || r->async == 1);
    CHECK(r->npctx >= 1 && r->npctx <= HDX_UL_PCTX_MAX);
    for (size_t i = 0; i < r->npctx; i++) {
        const struct hdx_ul_pctx *pc = &r->pctx[i];
        CHECK(pc->id != 0 && (pc->id & 1) == 1);
        CHECK((seen[pc->id / 8] & (1u << (pc->id % 8))) == 0);
        seen[pc->id / 8] |= (uint8_t)(1u << (pc->id % 8));
        check_uid(pc->abstract_syntax, 0);
        CHECK(pc->nts >= 1 && pc->nts <= HDX_UL_TS_MAX);
        for (size_t k = 0; k < pc->nts; k++)
            check_uid(pc->ts[k], 0);
    }
}

static int proposes(const struct hdx_ul_pctx *pc, const char *ts)
{
    for (size_t k = 0; k < pc->nts; k++)
        if (strcmp(pc->ts[k], ts) == 0) return 1;
    return 0;
}

static void check_negotiation(const struct hdx_ul_assoc_rq *r, const struct hdx_ul_assoc_ac *a)
{
    size_t accepted = 0;

    CHECK(a->npctx == r->npctx);
    for (size_t i = 0; i < a->npctx; i++) {
        const struct hdx_ul_pctx *pc = &r->pctx[i];
        const struct hdx_ul_pctx_result *res = &a->pctx[i];
        size_t first = NPREF;
        for (size_t k = 0; k < NPREF && first == NPREF; k++)
            if (proposes(pc, pref[k])) first = k;
        CHECK(res->id == pc->id);
        CHECK(strcmp(res->abstract_syntax, pc->abstract_syntax) == 0);
        if (!hdx_sop_abstract_ok(pc->abstract_syntax)) {
            CHECK(res->result == HDX_PCTX_ABSTRACT_UNSUPPORTED && res->ts[0] == '\0');
        } else if (first == NPREF) {
            CHECK(res->result == HDX_PCTX_TS_UNSUPPORTED && res->ts[0] == '\0');
        } else {
            CHECK(res->result == HDX_PCTX_ACCEPT && strcmp(res->ts, pref[first]) == 0);
            accepted++;
        }
    }
    CHECK(a->accepted == accepted);
}

/* The next item of v, which must be there and of this type; its value as a cursor. */
static struct hdx_dcur item(struct hdx_dcur *v, uint8_t type)
{
    uint8_t t, reserved;
    uint16_t len;
    struct hdx_dcur sub;
    CHECK(hdx_dcur_u8(v, &t) == 0 && hdx_dcur_u8(v, &reserved) == 0);
    CHECK(hdx_dcur_u16be(v, &len) == 0 && hdx_dcur_sub(v, len, &sub) == 0);
    CHECK(t == type && reserved == 0);
    return sub;
}

static void check_value(struct hdx_dcur *v, const char *s)
{
    const uint8_t *b;
    size_t n = strlen(s);
    CHECK(hdx_dcur_left(v) == n && hdx_dcur_bytes(v, n, &b) == 0 && memcmp(b, s, n) == 0);
}

static void check_ae_field(struct hdx_dcur *c, const char *ae)
{
    const uint8_t *b;
    size_t n = strlen(ae);
    CHECK(hdx_dcur_bytes(c, HDX_UL_AE_LEN, &b) == 0 && memcmp(b, ae, n) == 0);
    for (size_t i = n; i < HDX_UL_AE_LEN; i++)
        CHECK(b[i] == ' ');
}

/* Walks the A-ASSOCIATE-AC as a peer would: every length must add up exactly. */
static void check_ac(const uint8_t *pdu, size_t n, const struct hdx_ul_assoc_rq *r,
                     const struct hdx_ul_assoc_ac *a, uint32_t max_pdu)
{
    struct hdx_dcur c = hdx_dcur_make(pdu, n), v, s;
    uint8_t type;
    uint32_t len, u32;
    uint16_t u16;
    const uint8_t *b;

    CHECK(hdx_ul_pdu_header(pdu, n, &type, &len) == HDX_OK);
    CHECK(type == HDX_PDU_ASSOC_AC && len == n - HDX_UL_HEADER_LEN && pdu[1] == 0);
    CHECK(hdx_dcur_skip(&c, HDX_UL_HEADER_LEN) == 0);
    CHECK(hdx_dcur_u16be(&c, &u16) == 0 && u16 == 1);
    CHECK(hdx_dcur_u16be(&c, &u16) == 0 && u16 == 0);
    check_ae_field(&c, r->called);
    check_ae_field(&c, r->calling);
    CHECK(hdx_dcur_bytes(&c, 32, &b) == 0);
    for (size_t i = 0; i < 32; i++)
        CHECK(b[i] == 0);
    v = item(&c, 0x10);
    check_value(&v, HDX_UL_APP_CONTEXT);
    for (size_t i = 0; i < a->npctx; i++) {
        uint8_t id, r0, result, r1;
        v = item(&c, 0x21);
        CHECK(hdx_dcur_u8(&v, &id) == 0 && hdx_dcur_u8(&v, &r0) == 0);
        CHECK(hdx_dcur_u8(&v, &result) == 0 && hdx_dcur_u8(&v, &r1) == 0);
        CHECK(id == a->pctx[i].id && result == a->pctx[i].result && r0 == 0 && r1 == 0);
        s = item(&v, 0x40);
        /* rejected contexts carry the first proposed transfer syntax (PS3.8 9.3.3.2) */
        check_value(&s, result == HDX_PCTX_ACCEPT ? a->pctx[i].ts : r->pctx[i].ts[0]);
        CHECK(hdx_dcur_left(&v) == 0);
    }
    v = item(&c, 0x50);
    CHECK(hdx_dcur_left(&c) == 0);
    s = item(&v, 0x51);
    CHECK(hdx_dcur_u32be(&s, &u32) == 0 && u32 == max_pdu && hdx_dcur_left(&s) == 0);
    s = item(&v, 0x52);
    check_value(&s, HDX_UID_IMPLEMENTATION_CLASS);
    if (r->async) {
        s = item(&v, 0x53);
        CHECK(hdx_dcur_u16be(&s, &u16) == 0 && u16 == 1);
        CHECK(hdx_dcur_u16be(&s, &u16) == 0 && u16 == 1 && hdx_dcur_left(&s) == 0);
    }
    s = item(&v, 0x55);
    check_value(&s, HDX_IMPLEMENTATION_VERSION);
    CHECK(hdx_dcur_left(&v) == 0);
}

/* An accepted request rebuilt with hdx_ul_build_assoc_rq parses back to itself, but for
 * what the builder does not take from the struct: version 1, the standard application
 * context, no asynchronous operations window. */
static void round_trip_rq(const struct hdx_ul_assoc_rq *r)
{
    /* a parsed request may grow by a little (a 1-byte application context becomes the
     * standard one, a missing max length item is written): room for that */
    const size_t cap = HDX_UL_HEADER_LEN + HDX_UL_RQ_MAX + 1024;
    uint8_t *pdu = malloc(cap), type = 0, reason = 0;
    uint32_t blen = 0;
    const char *why = "unset";

    CHECK(pdu != NULL);
    size_t n = hdx_ul_build_assoc_rq(r, pdu, cap);
    CHECK(n > HDX_UL_HEADER_LEN);
    CHECK(hdx_ul_pdu_header(pdu, n, &type, &blen) == HDX_OK);
    CHECK(type == HDX_PDU_ASSOC_RQ && pdu[1] == 0 && blen == n - HDX_UL_HEADER_LEN);
    int rc = hdx_ul_parse_assoc_rq(pdu + HDX_UL_HEADER_LEN, blen, &rq_back, &why, &reason);
    if (blen > HDX_UL_RQ_MAX) {
        CHECK(rc == HDX_E_INVAL && why != NULL);
    } else {
        CHECK(rc == HDX_OK && why == NULL);
        memcpy(&rq_want, r, sizeof(rq_want));
        rq_want.protocol_version = 1;
        memset(rq_want.app_context, 0, sizeof(rq_want.app_context));
        memcpy(rq_want.app_context, HDX_UL_APP_CONTEXT, strlen(HDX_UL_APP_CONTEXT));
        rq_want.async = 0;
        CHECK(memcmp(&rq_back, &rq_want, sizeof(rq_want)) == 0);
    }
    free(pdu);
    /* exactly n bytes: one fewer builds nothing and writes nothing past them */
    pdu = malloc(n - 1);
    CHECK(pdu != NULL);
    CHECK(hdx_ul_build_assoc_rq(r, pdu, n - 1) == 0);
    free(pdu);
    pdu = malloc(n);
    CHECK(pdu != NULL);
    CHECK(hdx_ul_build_assoc_rq(r, pdu, n) == n);
    free(pdu);
}

static void add_proposed(struct hdx_ul_assoc_rq *r, uint8_t id, const char *as, const char *ts0,
                         const char *ts1, const char *ts2)
{
    struct hdx_ul_pctx *pc = &r->pctx[r->npctx++];
    const char *ts[3] = {ts0, ts1, ts2};
    pc->id = id;
    memcpy(pc->abstract_syntax, as, strlen(as) + 1);
    for (size_t k = 0; k < 3 && ts[k] != NULL; k++)
        memcpy(pc->ts[pc->nts++], ts[k], strlen(ts[k]) + 1);
}

/* What the seeds' answers answer: storescp_assoc_ac.bin (context 1, implicit) among them. */
static void make_proposal(void)
{
    if (proposal.npctx != 0) return;
    proposal.protocol_version = 1;
    memcpy(proposal.called, "HDX", 4);
    memcpy(proposal.calling, "HDXTEST", 8);
    memcpy(proposal.app_context, HDX_UL_APP_CONTEXT, strlen(HDX_UL_APP_CONTEXT) + 1);
    add_proposed(&proposal, 1, "1.2.840.10008.1.1", pref[1], NULL, NULL);
    add_proposed(&proposal, 3, "1.2.840.10008.5.1.4.1.1.2", pref[0], pref[1], pref[3]);
    add_proposed(&proposal, 5, "1.2.840.10008.5.1.4.1.1.4", pref[0], NULL, NULL);
    add_proposed(&proposal, 7, "1.2.3.4.5", pref[1], pref[0], NULL);
    add_proposed(&proposal, 255, "1.2.840.10008.5.1.4.1.1.2", pref[3], NULL, NULL);
    proposal.max_pdu = 65536;
}

static const struct hdx_ul_pctx *proposed_ctx(const struct hdx_ul_assoc_rq *r, uint8_t id)
{
    for (size_t i = 0; i < r->npctx; i++)
        if (r->pctx[i].id == id) return &r->pctx[i];
    return NULL;
}

/* body as an A-ASSOCIATE-AC answering r. */
static void drive_ac(const uint8_t *body, size_t len, const struct hdx_ul_assoc_rq *r)
{
    const char *why = "unset", *why2 = "unset";
    uint32_t max = 0xdeadbeef, max2 = 0xfeedface;
    uint8_t seen[32] = {0};
    size_t accepted = 0;

    memset(&ac1, 0xa5, sizeof(ac1)); /* whatever was there is overwritten or zeroed */
    int rc = hdx_ul_parse_assoc_ac(body, len, r, &ac1, &max, &why);
    int rc2 = hdx_ul_parse_assoc_ac(body, len, r, &ac2, &max2, &why2);
    CHECK(rc == rc2 && why == why2 && max == max2);
    CHECK(memcmp(&ac1, &ac2, sizeof(ac1)) == 0);
    if (rc != HDX_OK) {
        CHECK(rc == HDX_E_INVAL);
        CHECK(why != NULL && why[0] != '\0');
        CHECK((uintptr_t)why < (uintptr_t)body || (uintptr_t)why >= (uintptr_t)(body + len));
        CHECK(memcmp(&ac1, &zero_ac, sizeof(ac1)) == 0);
        CHECK(max == 0);
        return;
    }
    CHECK(why == NULL && len <= HDX_UL_RQ_MAX);
    CHECK(ac1.npctx <= HDX_UL_PCTX_MAX && ac1.npctx <= r->npctx);
    for (size_t i = 0; i < ac1.npctx; i++) {
        const struct hdx_ul_pctx_result *res = &ac1.pctx[i];
        const struct hdx_ul_pctx *pc = proposed_ctx(r, res->id);
        CHECK(pc != NULL);
        CHECK((seen[res->id / 8] & (1u << (res->id % 8))) == 0);
        seen[res->id / 8] |= (uint8_t)(1u << (res->id % 8));
        CHECK(res->result <= HDX_PCTX_TS_UNSUPPORTED);
        CHECK(strcmp(res->abstract_syntax, pc->abstract_syntax) == 0);
        if (res->result == HDX_PCTX_ACCEPT) {
            check_uid(res->ts, 0);
            CHECK(proposes(pc, res->ts));
            accepted++;
        } else {
            CHECK(res->ts[0] == '\0');
        }
    }
    CHECK(ac1.accepted == accepted);
    /* the same answer without the out-parameters reads the same */
    CHECK(hdx_ul_parse_assoc_ac(body, len, r, &ac2, NULL, NULL) == HDX_OK);
    CHECK(memcmp(&ac1, &ac2, sizeof(ac1)) == 0);
}

static int drive_rq(const uint8_t *body, size_t len, uint32_t max_pdu)
{
    const char *why = NULL, *why2 = NULL;
    uint8_t reason = 0xee, reason2 = 0xee;
    int rc = hdx_ul_parse_assoc_rq(body, len, &rq, &why, &reason);
    int rc2 = hdx_ul_parse_assoc_rq(body, len, &rq2, &why2, &reason2);

    CHECK(rc == rc2 && why == why2 && reason == reason2);
    if (rc != HDX_OK) {
        static const struct hdx_ul_assoc_rq zero;
        CHECK(rc == HDX_E_INVAL);
        CHECK(why != NULL && why[0] != '\0');
        /* a fixed text, never a pointer into the peer's bytes */
        CHECK((uintptr_t)why < (uintptr_t)body || (uintptr_t)why >= (uintptr_t)(body + len));
        CHECK(reason == HDX_ABORT_INVALID_PARAM || reason == HDX_ABORT_UNEXPECTED_PARAM);
        CHECK(memcmp(&rq, &zero, sizeof(rq)) == 0);
        return rc;
    }
    CHECK(why == NULL && len <= HDX_UL_RQ_MAX);
    CHECK(memcmp(&rq, &rq2, sizeof(rq)) == 0);
    check_rq(&rq);

    hdx_ul_negotiate(&rq, hdx_sop_abstract_ok, pref, NPREF, &ac);
    check_negotiation(&rq, &ac);
    uint8_t *pdu = malloc(AC_CAP);
    CHECK(pdu != NULL);
    size_t n = hdx_ul_build_assoc_ac(&rq, &ac, max_pdu, HDX_UID_IMPLEMENTATION_CLASS,
                                     HDX_IMPLEMENTATION_VERSION, pdu, AC_CAP);
    CHECK(n > HDX_UL_HEADER_LEN); /* the session's buffer always suffices */
    check_ac(pdu, n, &rq, &ac, max_pdu);
    free(pdu);
    /* exactly n bytes, and one fewer is refused without writing past them */
    pdu = malloc(n);
    CHECK(pdu != NULL);
    CHECK(hdx_ul_build_assoc_ac(&rq, &ac, max_pdu, HDX_UID_IMPLEMENTATION_CLASS,
                                HDX_IMPLEMENTATION_VERSION, pdu, n - 1) == 0);
    CHECK(hdx_ul_build_assoc_ac(&rq, &ac, max_pdu, HDX_UID_IMPLEMENTATION_CLASS,
                                HDX_IMPLEMENTATION_VERSION, pdu, n) == n);
    free(pdu);
    round_trip_rq(&rq);
    return HDX_OK;
}

static void drive_pdv(const uint8_t *body, size_t len)
{
    struct hdx_dcur c = hdx_dcur_make(body, len);
    struct hdx_ul_pdv pdv;
    const char *why;
    size_t used = 0;
    int rc;

    while ((rc = hdx_ul_pdv_next(&c, &pdv, &why)) == HDX_OK) {
        CHECK(why == NULL);
        CHECK(pdv.data == body + used + 6 && pdv.len <= len - used - 6);
        used += 6 + pdv.len;
        CHECK(hdx_dcur_left(&c) == len - used);
    }
    if (rc == HDX_E_NOTFOUND) {
        CHECK(used == len && why == NULL);
        return;
    }
    CHECK(rc == HDX_E_INVAL && why != NULL && pdv.data == NULL && pdv.len == 0);
    CHECK(hdx_dcur_left(&c) == len - used); /* a refused PDV is not consumed */
    CHECK(hdx_ul_pdv_next(&c, &pdv, &why) == HDX_E_INVAL && why != NULL);
}

static void drive_fsm(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i + 1 < n && i < 128; i += 2) {
        int s = d[i] % (HDX_UL_NSTATES + 2), e = d[i + 1] % (HDX_UL_NEVENTS + 2);
        enum hdx_ul_state next;
        enum hdx_ul_action a = hdx_ul_transition((enum hdx_ul_state)s, (enum hdx_ul_event)e, &next);
        CHECK(hdx_ul_action_name(a) != NULL && hdx_ul_state_name(next) != NULL);
        if (s < HDX_STA1 || s > HDX_STA13 || e < HDX_EVT1 || e > HDX_EVT19) {
            CHECK(a == HDX_ACT_NONE && (int)next == s);
            continue;
        }
        CHECK((int)a >= HDX_ACT_NONE && (int)a <= HDX_AA8);
        CHECK(next >= HDX_STA1 && next <= HDX_STA13);
        if (a == HDX_ACT_NONE) CHECK((int)next == s);
        /* wherever a PDU can arrive, a bad one is answered by an abort path */
        if (e == HDX_EVT19 && s != HDX_STA1 && s != HDX_STA4) CHECK(a != HDX_ACT_NONE);
        enum hdx_ul_event pe = hdx_ul_pdu_event(d[i]);
        CHECK(pe >= HDX_EVT1 && pe <= HDX_EVT19);
        CHECK((pe == HDX_EVT19) == (d[i] == 0 || d[i] > HDX_PDU_ABORT));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t type = 0;
    uint32_t declared = 0;
    uint8_t *copy = malloc(size ? size : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, size);

    int rc = hdx_ul_pdu_header(copy, size, &type, &declared);
    CHECK(rc == (size < HDX_UL_HEADER_LEN ? HDX_EAGAIN : HDX_OK));
    if (rc == HDX_OK)
        CHECK(type == data[0] && declared == ((uint32_t)data[2] << 24 | (uint32_t)data[3] << 16 |
                                              (uint32_t)data[4] << 8 | data[5]));
    size_t off = size < HDX_UL_HEADER_LEN ? size : HDX_UL_HEADER_LEN;
    size_t len = size - off;
    uint8_t *body = malloc(len ? len : 1);
    CHECK(body != NULL);
    memcpy(body, copy + off, len);

    make_proposal();
    if (drive_rq(body, len, declared) == HDX_OK) drive_ac(body, len, &rq);
    drive_ac(body, len, &proposal);
    drive_pdv(body, len);
    drive_fsm(copy, size);

    uint8_t small[16];
    size_t cap = size ? data[0] % sizeof(small) : 0;
    size_t want = cap >= 10 ? 10 : 0;
    CHECK(hdx_ul_build_assoc_rj(1, 1, 1, small, cap) == want);
    CHECK(hdx_ul_build_abort(2, 6, small, cap) == want);
    CHECK(hdx_ul_build_release_rp(small, cap) == want);
    CHECK(hdx_ul_build_release_rq(small, cap) == want);
    if (want) CHECK(memcmp(small, "\x05\0\0\0\0\x04\0\0\0\0", 10) == 0);
    free(body);
    free(copy);
    return 0;
}
