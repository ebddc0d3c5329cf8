/* mllp_session: the HL7 v2 sender's session over MLLP, on the TLS port (mllp.listen) and the
 * allow-listed plaintext port (legacy.listen); net/conn.h does admission and lifetime.
 * Each frame is parsed; a bad one is answered AE/AR with ERR and one log line naming the
 * cause; a good one goes to the commit pipeline through the submit callback, and its AA
 * (prepared at once) is written only when the pipeline reports the record durable
 * (hdx_mllp_done). A ZCK^Z01 checkpoint of a device with a stream-signing key is judged
 * against the payloads before it (proto/checkpoint.h) and stored with the verdict.
 * Limits: mllp.max_message (AR 207 and close), a started frame must end within
 * mllp.read_timeout_ms, at most mllp.max_inflight unanswered messages (reading pauses),
 * bytes outside frames up to mllp.max_message between two frames. Idle means no complete
 * frame for mllp.idle_timeout_s while nothing is owed: bytes outside frames do not count.
 * Thread: the network thread. */
#ifndef HDX_MLLP_SESSION_H
#define HDX_MLLP_SESSION_H

#include "commit/commit.h"
#include "crypto/keys.h"
#include "net/conn.h"

struct hdx_mllp;

/* submit takes ownership of an item; it is answered through hdx_mllp_done later. */
int hdx_mllp_new(const struct hdx_conf *conf, void (*submit)(void *arg, struct hdx_intake_item *it),
                 void *submit_arg, struct hdx_mllp **out);
void hdx_mllp_free(struct hdx_mllp *m);

/* Listener ops; the listener's ctx is the struct hdx_mllp. */
extern const struct hdx_session_ops hdx_mllp_tls_ops, hdx_mllp_plain_ops;

/* A committed (or failed) item of c: writes its answer, settles it, resumes reading. The item
 * stays the caller's. */
void hdx_mllp_done(struct hdx_conn *c, const struct hdx_intake_item *it);

#endif
