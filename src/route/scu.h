/* scu: a DICOM Storage SCU association (PS3.8 requestor, PS3.7 C-STORE) over a connection the
 * caller owns: a DICOM route's lane (route/route.c, docs/ROUTES.md "DICOM routes") sends the
 * instances it forwards through one. Blocking within the caller's deadlines through its I/O
 * callbacks (a lane is a thread of its own). One operation at a time (no asynchronous
 * operations window is proposed), the data set in the transfer syntax it was stored in.
 * Everything the peer sends is read through dicom/ul.h and dicom/dimse.h under explicit
 * limits: a PDU body over HDX_SCU_PDU_MAX, a PDU of the wrong type, a malformed AC or
 * response are "the association cannot be trusted" (abort, and the caller closes). Reasons
 * are fixed texts or the peer's status codes, never data-set bytes.
 * Thread: one association belongs to one thread. */
#ifndef HDX_ROUTE_SCU_H
#define HDX_ROUTE_SCU_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/ul.h"

#define HDX_SCU_PDU_MAX (1u << 20)     /* largest PDU body read from the acceptor */
#define HDX_SCU_MAX_PDU_RECEIVED 65536 /* the maximum length hdx announces */

struct hdx_scu_io {
    void *ctx;
    /* all of p or an error (HDX_E_IO, HDX_E_TIMEOUT) */
    int (*send)(void *ctx, const uint8_t *p, size_t n, int64_t deadline_us);
    /* > 0 bytes read into p, 0 the peer closed, < 0 an error (HDX_E_TIMEOUT at the deadline) */
    int (*recv)(void *ctx, uint8_t *p, size_t cap, int64_t deadline_us);
};

/* What an instance to send needs. */
struct hdx_scu_pair {
    const char *sop_class, *ts;
};

struct hdx_scu;

/* The outcome of hdx_scu_associate and hdx_scu_store beyond HDX_OK. */
enum hdx_scu_result {
    HDX_SCU_OK = 0,
    HDX_SCU_REJECTED = 1, /* A-ASSOCIATE-RJ: why names result, source and reason */
    HDX_SCU_BROKEN = 2,   /* I/O failed, timed out, closed, aborted or sent garbage: close */
    HDX_SCU_NOMEM = 3,
};

/* Proposes one presentation context per distinct pair (at most HDX_UL_PCTX_MAX; more are left
 * out), each with the pair's transfer syntax alone, and reads the answer. *out is the
 * association (free it with hdx_scu_free whatever the result). why: a fixed text or the RJ's
 * codes. */
enum hdx_scu_result hdx_scu_associate(const struct hdx_scu_io *io, const char *calling,
                                      const char *called, const struct hdx_scu_pair *pairs,
                                      size_t npairs, int64_t deadline_us, struct hdx_scu **out,
                                      char *why, size_t cap);
/* The accepted context for (sop_class, ts): its ID > 0; 0 when it was proposed and refused
 * (the destination will not take such an instance); -1 when it was not proposed (associate
 * again with it among the pairs). */
int hdx_scu_context(const struct hdx_scu *a, const char *sop_class, const char *ts);
/* Sends a C-STORE-RQ and the data set ds (in the context's transfer syntax, fragmented to the
 * acceptor's maximum PDU length) and reads its C-STORE-RSP: HDX_SCU_OK with *status the
 * response's status (the caller judges it: hdx_scu_judge), or HDX_SCU_BROKEN with why. */
enum hdx_scu_result hdx_scu_store(struct hdx_scu *a, int ctx_id, const char *sop_class,
                                  const char *sop_instance, const uint8_t *ds, size_t len,
                                  int64_t deadline_us, uint16_t *status, char *why, size_t cap);
/* A-RELEASE-RQ and waits for the RP (P-DATA still arriving is read past, PS3.8 Sta7; a
 * release collision, an abort or anything else ends it): 0 released in order, -1 not. The
 * association is unusable afterwards either way. */
int hdx_scu_release(struct hdx_scu *a, int64_t deadline_us);
/* A-ABORT (source: service user), best effort. */
void hdx_scu_abort(struct hdx_scu *a, int64_t deadline_us);
void hdx_scu_free(struct hdx_scu *a);

/* How a C-STORE-RSP status is taken (PS3.7 C.4.2, 9.1.1.1): delivered (0000; the warnings
 * B000-BFFF, 0107, 0116), retried (A700-A7FF out of resources, 0110 processing failure, 0210
 * duplicate invocation: each may pass next time), refused for good (every other status: A900-A9FF
 * data set does not match the SOP class, C000-CFFF cannot understand, 0122 SOP class not supported,
 * 0124 not authorised, ...). */
enum hdx_scu_verdict { HDX_SCU_DELIVERED, HDX_SCU_RETRY, HDX_SCU_REFUSED };
enum hdx_scu_verdict hdx_scu_judge(uint16_t status);

#endif
