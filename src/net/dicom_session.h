/* dicom_session: a DICOM association on the DICOM TLS port (dicom.listen) or the allow-listed
 * plaintext port (dicom.plain_listen); net/conn.h does admission, the TLS handshake and
 * lifetime. The upper layer is dicom/ul.h's state machine (PS3.8 Table 9-10): every PDU is an
 * event, every action the table names is carried out here, an invalid PDU in any state
 * aborts (A-ABORT with a reason) and one log line says why.
 * Association: the called AE title must be dicom.ae_title; the calling AE title must be bound
 * (hdx ae add) to the device whose certificate the TLS connection presented (on the plaintext
 * port: to any device); otherwise A-ASSOCIATE-RJ with the PS3.8 reason. Presentation contexts:
 * storage SOP classes (dicom/sop.h) and Verification, in the transfer syntaxes of dicom/sop.h.
 * DIMSE: C-ECHO; C-FIND (Patient Root and Study Root, every level; PS3.4 C.4.1) answered from
 * the in-memory catalogue, one pending response per match, streamed as the peer reads, ended
 * by C-CANCEL (FE00); a malformed key is refused (A900), never answered with everything; more
 * than dicom.max_find_results matches is refused (A700); each query is an audit record
 * (event access action dicom_find: level, key names and count, never values). Policy at
 * negotiation: the C-FIND models need a TLS principal whose role may read records, the
 * storage classes one whose role may write a stream (on the plaintext port: legacy senders
 * store, nobody finds); a context refused so gets result 1 (user rejection).
 * C-STORE, whose data set becomes one record (kind dicom: a Part 10 file of
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

/* Fills the C-FIND catalogue (dicom/catalog.h) from every DICOM record of the log: each is
 * decrypted once, its keys extracted, its plaintext wiped; one log line says how many and how
 * long. Called once, before the listeners open; afterwards each C-STORE adds its own instance
 * once it is durable. HDX_OK, or the store's error (a record that does not decrypt or parse is
 * counted, logged and skipped: hdx verify is the tool that judges the log). */
int hdx_dicom_load(struct hdx_dicom *d, struct hdx_store *s, const struct hdx_keyring *kr);

struct hdx_policy;
/* Where the current policy is (the subscription port's pointer, which its reloads replace):
 * C-FIND withholds the matches whose patient a consent directive keeps from the querying
 * principal's role, as a subscription would. Unset or NULL: every match is withheld. */
void hdx_dicom_set_policy(struct hdx_dicom *d, struct hdx_policy *const *policy);

struct hdx_dcat;
struct hdx_dcm_keys;
/* The C-FIND catalogue, which DICOMweb (net/front_dicomweb.c) searches too. */
struct hdx_dcat *hdx_dicom_catalog(struct hdx_dicom *d);
/* An instance that came another way (STOW-RS) is durable (it->status HDX_OK): findable from now
 * on, as a C-STORE's is in hdx_dicom_done. */
void hdx_dicom_stored(struct hdx_dicom *d, const struct hdx_dcm_keys *k,
                      const struct hdx_intake_item *it);
/* Checks a Part 10 file as hdx would store it (STOW-RS): its meta header parses and names a
 * transfer syntax hdx accepts (dicom/sop.h), its data set (inflated when deflated, within
 * dicom.max_instance) parses within the walker's limits, its SOP Class and Instance UIDs are
 * present and equal the meta header's, and the class is one hdx stores. HDX_OK with *k filled
 * (the caller wipes it), or the DIMSE-style status in *status (0xC000 cannot understand,
 * 0xA900 does not match, 0x0122 class not supported, 0xA700 too large) and a fixed-shape
 * reason in why that never quotes a value. */
int hdx_dicom_file_check(const struct hdx_dicom *d, const uint8_t *p, size_t n,
                         struct hdx_dcm_keys *k, char *ts, size_t ts_cap, uint16_t *status,
                         char *why, size_t cap);

struct hdx_keyctx;
/* The network thread's key context (crypto/keys.h): with it, a C-STORE's content digest
 * (commit/commit.h, duplicate detection) is computed as its PDVs arrive; without, the
 * pipeline computes it once the data set is whole. */
void hdx_dicom_set_keyctx(struct hdx_dicom *d, struct hdx_keyctx *kc);

/* Listener ops; the listener's ctx is the struct hdx_dicom. */
extern const struct hdx_session_ops hdx_dicom_tls_ops, hdx_dicom_plain_ops;

/* A committed (or failed) C-STORE of c: writes its response, settles it, resumes reading. The
 * item stays the caller's. */
void hdx_dicom_done(struct hdx_conn *c, const struct hdx_intake_item *it);

#endif
