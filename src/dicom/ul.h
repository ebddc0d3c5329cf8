/* ul: the DICOM upper layer (PS3.8 section 9), pure (no I/O). Acceptor side: the PDU header,
 * the A-ASSOCIATE-RQ parser, presentation-context negotiation, the builders of the PDUs hdx
 * sends (A-ASSOCIATE-AC/RJ, P-DATA-TF, A-RELEASE-RP, A-ABORT), the P-DATA-TF PDV walker and
 * the state machine of PS3.8 Table 9-10 written out as a table. net/dicom_session.c feeds it
 * bytes and carries out the actions it names. Requestor side (a DICOM route, route/scu.h):
 * the A-ASSOCIATE-RQ and A-RELEASE-RQ builders and the A-ASSOCIATE-AC parser.
 * Untrusted input is read only through dicom/cursor.h; every limit is explicit (see the
 * HDX_UL_*_MAX constants) and a refusal names a fixed reason, never input bytes.
 * Thread: any; no state outside the caller's structs. */
#ifndef HDX_DICOM_UL_H
#define HDX_DICOM_UL_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/cursor.h"

#define HDX_UL_HEADER_LEN 6 /* type, reserved, u32 length (big-endian) */
#define HDX_UL_AE_LEN 16    /* an AE title field: 16 bytes, space padded */
#define HDX_UL_UID_MAX 64   /* PS3.5 9.1 */
#define HDX_UL_PCTX_MAX 128 /* odd IDs 1..255 */
#define HDX_UL_TS_MAX 32    /* transfer syntaxes proposed in one context */
#define HDX_UL_RQ_MAX 65536 /* largest A-ASSOCIATE-RQ body hdx reads */
#define HDX_UL_PDU_MIN 4096 /* smallest maximum PDU length hdx accepts from a peer */
#define HDX_UL_APP_CONTEXT "1.2.840.10008.3.1.1.1"

enum hdx_ul_pdu_type {
    HDX_PDU_ASSOC_RQ = 0x01,
    HDX_PDU_ASSOC_AC = 0x02,
    HDX_PDU_ASSOC_RJ = 0x03,
    HDX_PDU_P_DATA = 0x04,
    HDX_PDU_RELEASE_RQ = 0x05,
    HDX_PDU_RELEASE_RP = 0x06,
    HDX_PDU_ABORT = 0x07,
};

/* Reads a PDU header: HDX_OK with the type and body length once 6 bytes are there,
 * HDX_EAGAIN before. It judges nothing: the caller checks the type and the length. */
int hdx_ul_pdu_header(const uint8_t *p, size_t n, uint8_t *type, uint32_t *body_len);

struct hdx_ul_pctx {
    uint8_t id;
    char abstract_syntax[HDX_UL_UID_MAX + 1];
    uint8_t nts;
    char ts[HDX_UL_TS_MAX][HDX_UL_UID_MAX + 1];
};

struct hdx_ul_assoc_rq {
    uint16_t protocol_version;
    char called[HDX_UL_AE_LEN + 1], calling[HDX_UL_AE_LEN + 1]; /* spaces trimmed */
    char app_context[HDX_UL_UID_MAX + 1];
    size_t npctx;
    struct hdx_ul_pctx pctx[HDX_UL_PCTX_MAX];
    uint32_t max_pdu; /* the requestor's maximum length received, 0: unlimited */
    char impl_class[HDX_UL_UID_MAX + 1], impl_version[HDX_UL_AE_LEN + 1];
    int async; /* an Asynchronous Operations Window item was proposed */
};

/* A-ABORT source and reason (PS3.8 9.3.8). */
enum { HDX_ABORT_SOURCE_USER = 0, HDX_ABORT_SOURCE_PROVIDER = 2 };
enum {
    HDX_ABORT_NOT_SPECIFIED = 0,
    HDX_ABORT_UNRECOGNIZED_PDU = 1,
    HDX_ABORT_UNEXPECTED_PDU = 2,
    HDX_ABORT_UNRECOGNIZED_PARAM = 4,
    HDX_ABORT_UNEXPECTED_PARAM = 5,
    HDX_ABORT_INVALID_PARAM = 6,
};

/* Parses an A-ASSOCIATE-RQ body (the bytes after the 6-byte header). On HDX_E_INVAL *why is
 * a fixed text and *abort_reason the A-ABORT reason to send (PS3.8: an invalid PDU aborts).
 * Refused: a body over HDX_UL_RQ_MAX, an item that overruns its parent, no application
 * context, no user information, more than HDX_UL_PCTX_MAX contexts, an even, zero or repeated
 * context ID, a UID over 64 bytes, a context without an abstract syntax or transfer syntax.
 * Unknown item types inside user information are skipped (PS3.7 D.3.3 extensions). */
int hdx_ul_parse_assoc_rq(const uint8_t *body, size_t len, struct hdx_ul_assoc_rq *rq,
                          const char **why, uint8_t *abort_reason);

/* Presentation context results (PS3.8 9.3.3.2). */
enum {
    HDX_PCTX_ACCEPT = 0,
    HDX_PCTX_USER_REJECT = 1,
    HDX_PCTX_NO_REASON = 2,
    HDX_PCTX_ABSTRACT_UNSUPPORTED = 3,
    HDX_PCTX_TS_UNSUPPORTED = 4,
};

struct hdx_ul_pctx_result {
    uint8_t id, result;
    char ts[HDX_UL_UID_MAX + 1]; /* the accepted transfer syntax ("" when not accepted) */
    char abstract_syntax[HDX_UL_UID_MAX + 1];
};

struct hdx_ul_assoc_ac {
    size_t npctx;
    struct hdx_ul_pctx_result pctx[HDX_UL_PCTX_MAX];
    size_t accepted;
};

/* Negotiates every proposed context: its abstract syntax must pass abstract_ok, and the
 * first of ts_pref (hdx's order of preference) that the context proposes is chosen. */
void hdx_ul_negotiate(const struct hdx_ul_assoc_rq *rq, int (*abstract_ok)(const char *uid),
                      const char *const *ts_pref, size_t nts_pref, struct hdx_ul_assoc_ac *ac);

/* Builders: the whole PDU (header included) into out; they return its length, or 0 when cap
 * is too small. */
size_t hdx_ul_build_assoc_ac(const struct hdx_ul_assoc_rq *rq, const struct hdx_ul_assoc_ac *ac,
                             uint32_t max_pdu, const char *impl_class, const char *impl_version,
                             uint8_t *out, size_t cap);
/* A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent / 2 transient, source 1-3, reason. */
size_t hdx_ul_build_assoc_rj(uint8_t result, uint8_t source, uint8_t reason, uint8_t *out,
                             size_t cap);
size_t hdx_ul_build_release_rp(uint8_t *out, size_t cap);
size_t hdx_ul_build_abort(uint8_t source, uint8_t reason, uint8_t *out, size_t cap);
/* The 12 bytes that start a P-DATA-TF PDU holding one PDV of data_len bytes: PDU header,
 * item length, context ID, message control header (bit 0 command, bit 1 last fragment). */
#define HDX_UL_PDATA_OVERHEAD 12
void hdx_ul_pdata_header(uint8_t out[HDX_UL_PDATA_OVERHEAD], uint8_t pctx_id, uint8_t control,
                         uint32_t data_len);

/* ---- requestor side ---- */
/* A-ASSOCIATE-RQ from rq: called, calling, the contexts (odd IDs, each an abstract syntax and
 * 1..HDX_UL_TS_MAX transfer syntaxes), max_pdu (0: unlimited), impl_class and impl_version
 * ("" left out). Returns the length, or 0 when cap is too small or rq is not well formed (no
 * context, an even or repeated ID, an empty UID, no or too many transfer syntaxes). */
size_t hdx_ul_build_assoc_rq(const struct hdx_ul_assoc_rq *rq, uint8_t *out, size_t cap);
/* Parses an A-ASSOCIATE-AC body (after the 6-byte header) answering rq. Every result must
 * name a context rq proposed, once; an accepted one must carry a transfer syntax that context
 * proposed. ac gets the results (their abstract syntax copied from rq; ts "" when not
 * accepted), *max_pdu the acceptor's maximum length received (0: unlimited). HDX_E_INVAL with
 * *why a fixed text: the association cannot be used (abort it). */
int hdx_ul_parse_assoc_ac(const uint8_t *body, size_t len, const struct hdx_ul_assoc_rq *rq,
                          struct hdx_ul_assoc_ac *ac, uint32_t *max_pdu, const char **why);
size_t hdx_ul_build_release_rq(uint8_t *out, size_t cap);

/* One PDV of a P-DATA-TF body. */
struct hdx_ul_pdv {
    uint8_t pctx_id;
    uint8_t control; /* bit 0: command (else data set), bit 1: last fragment */
    const uint8_t *data;
    size_t len;
};
/* The next PDV of a P-DATA-TF body: HDX_OK, HDX_E_NOTFOUND when the body is used up, or
 * HDX_E_INVAL (*why fixed) when an item length is under 2 or overruns the body. A body with
 * no PDV at all is the caller's to refuse. */
int hdx_ul_pdv_next(struct hdx_dcur *body, struct hdx_ul_pdv *pdv, const char **why);

/* ---- the state machine (PS3.8 9.2, Tables 9-1 to 9-10) ---- */
enum hdx_ul_state {
    HDX_STA1 = 1, /* idle */
    HDX_STA2,     /* transport open, awaiting A-ASSOCIATE-RQ PDU */
    HDX_STA3,     /* awaiting local A-ASSOCIATE response primitive */
    HDX_STA4,     /* awaiting transport connection opening to complete */
    HDX_STA5,     /* awaiting A-ASSOCIATE-AC or -RJ PDU */
    HDX_STA6,     /* association established, ready for data transfer */
    HDX_STA7,     /* awaiting A-RELEASE-RP PDU */
    HDX_STA8,     /* awaiting local A-RELEASE response primitive */
    HDX_STA9,     /* release collision requestor side; awaiting A-RELEASE response */
    HDX_STA10,    /* release collision acceptor side; awaiting A-RELEASE-RP PDU */
    HDX_STA11,    /* release collision requestor side; awaiting A-RELEASE-RP PDU */
    HDX_STA12,    /* release collision acceptor side; awaiting A-RELEASE response */
    HDX_STA13,    /* awaiting transport connection close indication */
};
#define HDX_UL_NSTATES 13

enum hdx_ul_event {
    HDX_EVT1 = 1, /* A-ASSOCIATE request (local user) */
    HDX_EVT2,     /* transport connect confirmation */
    HDX_EVT3,     /* A-ASSOCIATE-AC PDU received */
    HDX_EVT4,     /* A-ASSOCIATE-RJ PDU received */
    HDX_EVT5,     /* transport connection indication */
    HDX_EVT6,     /* A-ASSOCIATE-RQ PDU received */
    HDX_EVT7,     /* A-ASSOCIATE response primitive (accept) */
    HDX_EVT8,     /* A-ASSOCIATE response primitive (reject) */
    HDX_EVT9,     /* P-DATA request primitive */
    HDX_EVT10,    /* P-DATA-TF PDU received */
    HDX_EVT11,    /* A-RELEASE request primitive */
    HDX_EVT12,    /* A-RELEASE-RQ PDU received */
    HDX_EVT13,    /* A-RELEASE-RP PDU received */
    HDX_EVT14,    /* A-RELEASE response primitive */
    HDX_EVT15,    /* A-ABORT request primitive */
    HDX_EVT16,    /* A-ABORT PDU received */
    HDX_EVT17,    /* transport connection closed indication */
    HDX_EVT18,    /* ARTIM timer expired */
    HDX_EVT19,    /* unrecognized or invalid PDU received */
};
#define HDX_UL_NEVENTS 19

enum hdx_ul_action {
    HDX_ACT_NONE = 0, /* a cell Table 9-10 leaves empty: cannot happen in that state */
    HDX_AE1,
    HDX_AE2,
    HDX_AE3,
    HDX_AE4,
    HDX_AE5,
    HDX_AE6,
    HDX_AE7,
    HDX_AE8,
    HDX_DT1,
    HDX_DT2,
    HDX_AR1,
    HDX_AR2,
    HDX_AR3,
    HDX_AR4,
    HDX_AR5,
    HDX_AR6,
    HDX_AR7,
    HDX_AR8,
    HDX_AR9,
    HDX_AR10,
    HDX_AA1,
    HDX_AA2,
    HDX_AA3,
    HDX_AA4,
    HDX_AA5,
    HDX_AA6,
    HDX_AA7,
    HDX_AA8,
};

/* The cell of Table 9-10 for (state, event): the action and the state after it. AE-6 (a
 * received A-ASSOCIATE-RQ) goes to Sta3 when the request is acceptable and Sta13 (after
 * sending A-ASSOCIATE-RJ) when not: *next is Sta3 and the caller decides. An empty cell
 * gives HDX_ACT_NONE and *next = state. Out-of-range arguments give HDX_ACT_NONE. */
enum hdx_ul_action hdx_ul_transition(enum hdx_ul_state state, enum hdx_ul_event event,
                                     enum hdx_ul_state *next);
/* The event a received PDU of this type raises (an unknown type: Evt19). */
enum hdx_ul_event hdx_ul_pdu_event(uint8_t pdu_type);
/* "AE-6", "Sta13", "Evt19": for log lines. */
const char *hdx_ul_action_name(enum hdx_ul_action a);
const char *hdx_ul_state_name(enum hdx_ul_state s);

#endif
