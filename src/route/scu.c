/* scu: a DICOM Storage SCU association (see scu.h for the contract).
 *
 * DESIGN: the acceptor's PDUs are read whole into one buffer (header first, then a body of at
 * most HDX_SCU_PDU_MAX) and handed to the pure parsers of dicom/ul.h and dicom/dimse.h, so
 * nothing here walks untrusted bytes by hand but the 4-byte A-ASSOCIATE-RJ. A data set goes
 * out as P-DATA-TF PDUs of one PDV each, built in one send buffer (one write, and one TLS
 * record, per PDU); the buffer held PHI and is wiped when the association is freed. */
#include "route/scu.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/dimse.h"
#include "dicom/sop.h"

#define FRAG_MAX (256u << 10) /* largest PDV hdx sends, whatever the acceptor allows */

struct hdx_scu {
    struct hdx_scu_io io;
    struct hdx_ul_assoc_rq rq;
    struct hdx_ul_assoc_ac ac;
    uint32_t frag; /* data bytes per PDV */
    uint16_t next_id;
    int usable;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *sbuf;
    size_t scap;
};

static void say(char *why, size_t cap, const char *text)
{
    if (why && cap) snprintf(why, cap, "%s", text);
}

/* Reads one whole PDU: HDX_OK with its type, body and length (valid until the next read);
 * an error when the peer closed, the deadline passed or the PDU is too long. */
static int read_pdu(struct hdx_scu *a, int64_t deadline, uint8_t *type, const uint8_t **body,
                    uint32_t *len, const char **why)
{
    uint32_t blen = 0;
    *why = NULL;
    for (;;) {
        if (hdx_ul_pdu_header(a->rbuf, a->rlen, type, &blen) == HDX_OK) {
            if (blen > HDX_SCU_PDU_MAX) {
                *why = "the destination sent a PDU over 1 MiB";
                return HDX_E_TOOBIG;
            }
            if (a->rlen >= HDX_UL_HEADER_LEN + (size_t)blen) break;
        }
        size_t need = a->rlen < HDX_UL_HEADER_LEN ? 4096 : HDX_UL_HEADER_LEN + (size_t)blen;
        if (need < a->rlen + 1024) need = a->rlen + 1024;
        if (need > a->rcap) {
            uint8_t *b = realloc(a->rbuf, need);
            if (!b) return HDX_E_NOMEM;
            a->rbuf = b;
            a->rcap = need;
        }
        /* never more than this PDU: what follows it stays with the peer for the next read */
        size_t want = a->rlen < HDX_UL_HEADER_LEN ? HDX_UL_HEADER_LEN - a->rlen
                                                  : HDX_UL_HEADER_LEN + (size_t)blen - a->rlen;
        int n = a->io.recv(a->io.ctx, a->rbuf + a->rlen, want, deadline);
        if (n <= 0) {
            *why = n == 0               ? "the destination closed the connection"
                   : n == HDX_E_TIMEOUT ? "no answer from the destination in time"
                                        : "reading from the destination failed";
            return n == 0 ? HDX_E_IO : n;
        }
        a->rlen += (size_t)n;
    }
    *body = a->rbuf + HDX_UL_HEADER_LEN;
    *len = blen;
    return HDX_OK;
}

static void pdu_consumed(struct hdx_scu *a)
{
    if (a->rbuf && a->rlen) sodium_memzero(a->rbuf, a->rlen);
    a->rlen = 0; /* read_pdu reads exactly one PDU, so nothing of the next one is here */
}

static int send_all(struct hdx_scu *a, const uint8_t *p, size_t n, int64_t deadline)
{
    return a->io.send(a->io.ctx, p, n, deadline);
}

void hdx_scu_abort(struct hdx_scu *a, int64_t deadline_us)
{
    uint8_t pdu[16];
    if (!a) return;
    size_t n = hdx_ul_build_abort(HDX_ABORT_SOURCE_USER, HDX_ABORT_NOT_SPECIFIED, pdu, sizeof(pdu));
    if (n) (void)send_all(a, pdu, n, deadline_us);
    a->usable = 0;
}

static const char *rj_text(uint8_t source, uint8_t reason)
{
    if (source == 1 && reason == 2) return "application context name not supported";
    if (source == 1 && reason == 3) return "calling AE title not recognized";
    if (source == 1 && reason == 7) return "called AE title not recognized";
    if (source == 2 && reason == 2) return "protocol version not supported";
    if (source == 3 && reason == 1) return "temporary congestion";
    if (source == 3 && reason == 2) return "local limit exceeded";
    return "no reason given";
}

enum hdx_scu_result hdx_scu_associate(const struct hdx_scu_io *io, const char *calling,
                                      const char *called, const struct hdx_scu_pair *pairs,
                                      size_t npairs, int64_t deadline_us, struct hdx_scu **out,
                                      char *why, size_t cap)
{
    struct hdx_scu *a = calloc(1, sizeof(*a));
    *out = a;
    if (!a) return HDX_SCU_NOMEM;
    a->io = *io;
    a->next_id = 1;
    struct hdx_ul_assoc_rq *rq = &a->rq;
    snprintf(rq->called, sizeof(rq->called), "%s", called);
    snprintf(rq->calling, sizeof(rq->calling), "%s", calling);
    snprintf(rq->impl_class, sizeof(rq->impl_class), "%s", HDX_UID_IMPLEMENTATION_CLASS);
    snprintf(rq->impl_version, sizeof(rq->impl_version), "%s", HDX_IMPLEMENTATION_VERSION);
    rq->max_pdu = HDX_SCU_MAX_PDU_RECEIVED;
    for (size_t i = 0; i < npairs && rq->npctx < HDX_UL_PCTX_MAX; i++) {
        if (strlen(pairs[i].sop_class) > HDX_UL_UID_MAX || strlen(pairs[i].ts) > HDX_UL_UID_MAX)
            continue;
        if (hdx_scu_context(a, pairs[i].sop_class, pairs[i].ts) != -1) continue; /* proposed */
        struct hdx_ul_pctx *pc = &rq->pctx[rq->npctx];
        pc->id = (uint8_t)(2 * rq->npctx + 1);
        snprintf(pc->abstract_syntax, sizeof(pc->abstract_syntax), "%s", pairs[i].sop_class);
        snprintf(pc->ts[0], sizeof(pc->ts[0]), "%s", pairs[i].ts);
        pc->nts = 1;
        rq->npctx++;
    }
    uint8_t *pdu = malloc(HDX_UL_RQ_MAX);
    if (!pdu) return HDX_SCU_NOMEM;
    size_t n = hdx_ul_build_assoc_rq(rq, pdu, HDX_UL_RQ_MAX);
    if (!n) {
        free(pdu);
        say(why, cap, "cannot build the A-ASSOCIATE-RQ");
        return HDX_SCU_BROKEN;
    }
    int rc = send_all(a, pdu, n, deadline_us);
    free(pdu);
    if (rc != HDX_OK) {
        say(why, cap, "sending the A-ASSOCIATE-RQ failed");
        return HDX_SCU_BROKEN;
    }
    uint8_t type;
    const uint8_t *body;
    uint32_t len;
    const char *w;
    if ((rc = read_pdu(a, deadline_us, &type, &body, &len, &w)) != HDX_OK) {
        if (rc == HDX_E_TOOBIG) hdx_scu_abort(a, deadline_us); /* PS3.8: an invalid PDU */
        say(why, cap, w ? w : "out of memory");
        return rc == HDX_E_NOMEM ? HDX_SCU_NOMEM : HDX_SCU_BROKEN;
    }
    if (type == HDX_PDU_ASSOC_RJ) {
        if (len != 4) {
            say(why, cap, "malformed A-ASSOCIATE-RJ");
            return HDX_SCU_BROKEN;
        }
        if (why && cap)
            snprintf(why, cap, "association rejected (%s, result %u source %u reason %u): %s",
                     body[1] == 1 ? "permanent" : "transient", body[1], body[2], body[3],
                     rj_text(body[2], body[3]));
        pdu_consumed(a);
        return HDX_SCU_REJECTED;
    }
    if (type != HDX_PDU_ASSOC_AC) {
        say(why, cap,
            type == HDX_PDU_ABORT ? "the destination aborted the association"
                                  : "the destination answered A-ASSOCIATE-RQ with another PDU");
        if (type != HDX_PDU_ABORT) hdx_scu_abort(a, deadline_us);
        return HDX_SCU_BROKEN;
    }
    uint32_t peer_max = 0;
    if (hdx_ul_parse_assoc_ac(body, len, rq, &a->ac, &peer_max, &w) != HDX_OK) {
        pdu_consumed(a);
        if (why && cap) snprintf(why, cap, "A-ASSOCIATE-AC: %s", w);
        hdx_scu_abort(a, deadline_us);
        return HDX_SCU_BROKEN;
    }
    pdu_consumed(a);
    if (peer_max != 0 && peer_max < HDX_UL_PDU_MIN) {
        say(why, cap, "the destination's maximum PDU length is under 4096");
        hdx_scu_abort(a, deadline_us);
        return HDX_SCU_BROKEN;
    }
    uint32_t m = peer_max == 0 || peer_max - 6 > FRAG_MAX ? FRAG_MAX : peer_max - 6;
    a->frag = m & ~1u; /* PS3.5 7.1: fragments of a data set are even */
    a->scap = (size_t)a->frag + HDX_UL_PDATA_OVERHEAD;
    if (!(a->sbuf = malloc(a->scap))) return HDX_SCU_NOMEM;
    a->usable = 1;
    return HDX_SCU_OK;
}

int hdx_scu_context(const struct hdx_scu *a, const char *sop_class, const char *ts)
{
    for (size_t i = 0; i < a->rq.npctx; i++) {
        const struct hdx_ul_pctx *pc = &a->rq.pctx[i];
        if (strcmp(pc->abstract_syntax, sop_class) != 0 || strcmp(pc->ts[0], ts) != 0) continue;
        for (size_t k = 0; k < a->ac.npctx; k++)
            if (a->ac.pctx[k].id == pc->id)
                return a->ac.pctx[k].result == HDX_PCTX_ACCEPT ? pc->id : 0;
        return 0; /* proposed and not answered: not accepted (PS3.8 9.3.3) */
    }
    return -1;
}

/* One P-DATA-TF PDU holding one PDV. */
static int send_pdv(struct hdx_scu *a, uint8_t ctx_id, uint8_t control, const uint8_t *p, size_t n,
                    int64_t deadline)
{
    hdx_ul_pdata_header(a->sbuf, ctx_id, control, (uint32_t)n);
    if (n) memcpy(a->sbuf + HDX_UL_PDATA_OVERHEAD, p, n);
    return send_all(a, a->sbuf, HDX_UL_PDATA_OVERHEAD + n, deadline);
}

enum hdx_scu_result hdx_scu_store(struct hdx_scu *a, int ctx_id, const char *sop_class,
                                  const char *sop_instance, const uint8_t *ds, size_t len,
                                  int64_t deadline_us, uint16_t *status, char *why, size_t cap)
{
    uint8_t cmd[512];
    const char *w;
    if (!a->usable || ctx_id <= 0 || ctx_id > 255) {
        say(why, cap, "no usable association");
        return HDX_SCU_BROKEN;
    }
    uint16_t id = a->next_id++;
    if (a->next_id == 0) a->next_id = 1;
    size_t cn = hdx_dimse_build_store_rq(id, sop_class, sop_instance, cmd, sizeof(cmd));
    if (!cn || cn > a->frag) {
        say(why, cap, "cannot build the C-STORE-RQ");
        return HDX_SCU_BROKEN;
    }
    if (send_pdv(a, (uint8_t)ctx_id, 0x03, cmd, cn, deadline_us) != HDX_OK) goto io;
    for (size_t off = 0; off < len || len == 0;) {
        size_t n = len - off > a->frag ? a->frag : len - off;
        uint8_t control = off + n == len ? 0x02 : 0x00;
        if (send_pdv(a, (uint8_t)ctx_id, control, ds + off, n, deadline_us) != HDX_OK) goto io;
        off += n;
        if (len == 0) break;
    }
    /* the response: command fragments of this context until the last one */
    uint8_t *rsp = NULL;
    size_t rlen = 0;
    int done = 0;
    while (!done) {
        uint8_t type;
        const uint8_t *body;
        uint32_t blen;
        int rc = read_pdu(a, deadline_us, &type, &body, &blen, &w);
        if (rc != HDX_OK) {
            free(rsp);
            if (rc == HDX_E_TOOBIG) hdx_scu_abort(a, deadline_us);
            say(why, cap, w ? w : "out of memory");
            a->usable = 0;
            return rc == HDX_E_NOMEM ? HDX_SCU_NOMEM : HDX_SCU_BROKEN;
        }
        if (type != HDX_PDU_P_DATA) {
            free(rsp);
            pdu_consumed(a);
            say(why, cap,
                type == HDX_PDU_ABORT ? "the destination aborted the association"
                                      : "the destination sent another PDU than the response");
            if (type != HDX_PDU_ABORT) hdx_scu_abort(a, deadline_us);
            a->usable = 0;
            return HDX_SCU_BROKEN;
        }
        struct hdx_dcur c = hdx_dcur_make(body, blen);
        struct hdx_ul_pdv pdv;
        int any = 0;
        while (!done && (rc = hdx_ul_pdv_next(&c, &pdv, &w)) == HDX_OK) {
            any = 1;
            if (!(pdv.control & 1) || pdv.pctx_id != ctx_id || rlen + pdv.len > HDX_DIMSE_CMD_MAX) {
                w = !(pdv.control & 1)      ? "the response came with a data set"
                    : pdv.pctx_id != ctx_id ? "the response names another presentation context"
                                            : "the response is over 64 KiB";
                rc = HDX_E_INVAL;
                break;
            }
            uint8_t *b = realloc(rsp, rlen + pdv.len + 1);
            if (!b) {
                rc = HDX_E_NOMEM;
                w = "out of memory";
                break;
            }
            rsp = b;
            memcpy(rsp + rlen, pdv.data, pdv.len);
            rlen += pdv.len;
            if (pdv.control & 2) done = 1;
        }
        if (rc == HDX_E_NOTFOUND && !any) {
            rc = HDX_E_INVAL;
            w = "a P-DATA-TF without a PDV";
        }
        pdu_consumed(a);
        if (rc != HDX_OK && rc != HDX_E_NOTFOUND) {
            free(rsp);
            say(why, cap, w ? w : "malformed P-DATA-TF");
            hdx_scu_abort(a, deadline_us);
            return HDX_SCU_BROKEN;
        }
        if (done && hdx_dcur_left(&c) > 0) {
            free(rsp);
            say(why, cap, "more PDVs after the response's last fragment");
            hdx_scu_abort(a, deadline_us);
            return HDX_SCU_BROKEN;
        }
    }
    struct hdx_dimse_cmd r;
    int prc = hdx_dimse_parse(rsp, rlen, &r, &w);
    free(rsp);
    if (prc != HDX_OK || r.command != HDX_C_STORE_RSP || r.responded_id != id ||
        (r.affected_instance[0] && strcmp(r.affected_instance, sop_instance) != 0)) {
        say(why, cap,
            prc != HDX_OK                  ? "the response does not parse"
            : r.command != HDX_C_STORE_RSP ? "the response is not a C-STORE-RSP"
            : r.responded_id != id         ? "the response answers another message"
                                           : "the response names another instance");
        hdx_scu_abort(a, deadline_us);
        return HDX_SCU_BROKEN;
    }
    *status = r.status;
    if (why && cap) why[0] = 0;
    return HDX_SCU_OK;
io:
    say(why, cap, "sending to the destination failed");
    a->usable = 0;
    return HDX_SCU_BROKEN;
}

int hdx_scu_release(struct hdx_scu *a, int64_t deadline_us)
{
    uint8_t pdu[16];
    if (!a || !a->usable) return -1;
    a->usable = 0;
    size_t n = hdx_ul_build_release_rq(pdu, sizeof(pdu));
    if (!n || send_all(a, pdu, n, deadline_us) != HDX_OK) return -1;
    for (;;) {
        uint8_t type;
        const uint8_t *body;
        uint32_t len;
        const char *w;
        if (read_pdu(a, deadline_us, &type, &body, &len, &w) != HDX_OK) return -1;
        pdu_consumed(a);
        if (type == HDX_PDU_RELEASE_RP) return 0;
        if (type != HDX_PDU_P_DATA) return -1; /* a collision or an abort: over either way */
    }
}

void hdx_scu_free(struct hdx_scu *a)
{
    if (!a) return;
    if (a->rbuf) sodium_memzero(a->rbuf, a->rcap);
    if (a->sbuf) sodium_memzero(a->sbuf, a->scap);
    free(a->rbuf);
    free(a->sbuf);
    free(a);
}

enum hdx_scu_verdict hdx_scu_judge(uint16_t status)
{
    if (status == 0x0000 || (status & 0xF000) == 0xB000 || status == 0x0107 || status == 0x0116)
        return HDX_SCU_DELIVERED;
    if ((status & 0xFF00) == 0xA700 || status == 0x0110 || status == 0x0210) return HDX_SCU_RETRY;
    return HDX_SCU_REFUSED;
}
