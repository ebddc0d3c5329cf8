/* dicom_session: a DICOM association on the DICOM TLS port (dicom.listen) or the allow-listed
 * plaintext port (dicom.plain_listen); net/conn.h does admission, the TLS handshake and
 * lifetime. The upper layer is dicom/ul.h's state machine (PS3.8 Table 9-10): every PDU is an
 * event, every action the table names is carried out here, an invalid PDU in any state
 * aborts (A-ABORT with a reason) and one log line says why.
 * Association: the called AE title must be dicom.ae_title; the calling AE title must be bound
 * (hdx ae add) to the device whose certificate the TLS connection presented (on the plaintext
 * port: to any device); otherwise A-ASSOCIATE-RJ with the PS3.8 reason. Presentation contexts:
 * storage SOP classes (dicom/sop.h) and Verification, in the transfer syntaxes of dicom/sop.h.
 * DIMSE: C-ECHO; C-STORE, whose data set becomes one record (kind dicom: a Part 10 file of
 * hdx's meta header and the data set exactly as received), answered Success only once the
 * commit pipeline reports it durable (hdx_dicom_done); refusals get their DIMSE status (A700
 * too large or not stored, A900 the data set does not match its SOP class or the command,
 * C000 it cannot be parsed) and nothing is stored.
 * Limits: a PDU over dicom.max_pdu aborts; a data set over dicom.max_instance is read to its
 * end without being kept and answered A700; the A-ASSOCIATE-RQ must come within dicom.artim_ms
 * of the connection, a started PDU must complete within it, and after a release or abort the
 * peer must close within it (ARTIM); no PDU for dicom.idle_timeout_s aborts. One DIMSE
 * operation at a time (no asynchronous window is granted): reading pauses while a C-STORE is
 * being committed. Thread: the network thread. */
#ifndef HDX_DICOM_SESSION_H
#define HDX_DICOM_SESSION_H

#include "commit/commit.h"
#include "net/conn.h"

struct hdx_dicom;

/* submit takes ownership of an item; it is answered through hdx_dicom_done later. */
int hdx_dicom_new(const struct hdx_conf *conf,
                  void (*submit)(void *arg, struct hdx_intake_item *it), void *submit_arg,
                  struct hdx_dicom **out, char *why, size_t cap);
void hdx_dicom_free(struct hdx_dicom *d);

/* Listener ops; the listener's ctx is the struct hdx_dicom. */
extern const struct hdx_session_ops hdx_dicom_tls_ops, hdx_dicom_plain_ops;

/* A committed (or failed) C-STORE of c: writes its response, settles it, resumes reading. The
 * item stays the caller's. */
void hdx_dicom_done(struct hdx_conn *c, const struct hdx_intake_item *it);

#endif
