/* sop: what hdx's DICOM SCP speaks (docs/DICOM-CONFORMANCE.md is the same table in prose):
 * the storage SOP classes it accepts for C-STORE (a table here, extended by dicom.storage_
 * classes), the query/retrieve information models for C-FIND, Verification, and the transfer
 * syntaxes it accepts, in its order of preference. Compressed syntaxes are accepted as
 * pass-through: stored as received, never decoded.
 * Thread: any (read-only tables; hdx_sop_add_storage only before the server starts). */
#ifndef HDX_DICOM_SOP_H
#define HDX_DICOM_SOP_H

#include <stddef.h>

#define HDX_UID_VERIFICATION "1.2.840.10008.1.1"
#define HDX_UID_FIND_PATIENT_ROOT "1.2.840.10008.5.1.4.1.2.1.1"
#define HDX_UID_FIND_STUDY_ROOT "1.2.840.10008.5.1.4.1.2.2.1"
/* A UUID-derived UID (PS3.5 B.2): no registered root is needed. */
#define HDX_UID_IMPLEMENTATION_CLASS "2.25.94508672605257325246982649192441012176"
#define HDX_IMPLEMENTATION_VERSION "HDX_0.1"

#define HDX_TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define HDX_TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define HDX_TS_DEFLATED_LE "1.2.840.10008.1.2.1.99"
#define HDX_TS_EXPLICIT_BE "1.2.840.10008.1.2.2"

/* The storage SOP class's keyword ("CTImageStorage"), NULL when uid is not one hdx stores. A
 * class added by configuration is "Storage". */
const char *hdx_sop_storage_name(const char *uid);
/* Adds the comma-separated UIDs of dicom.storage_classes; HDX_E_CONFIG (why set) for one that
 * is not a UID (PS3.5 9.1: digits and dots, at most 64, no empty or 0-led component). */
int hdx_sop_add_storage(const char *list, char *why, size_t cap);
/* 1 for a valid UID (as above). */
int hdx_uid_valid(const char *uid);

/* Abstract syntaxes an association may negotiate: storage, the two C-FIND models and
 * Verification. */
int hdx_sop_abstract_ok(const char *uid);

/* Transfer syntaxes, preference order; *n set. Uncompressed first. */
const char *const *hdx_ts_accepted(size_t *n);
/* 1 for a compressed (encapsulated) syntax hdx passes through. */
int hdx_ts_compressed(const char *uid);
/* Short name for log lines and the conformance statement ("ExplicitVRLittleEndian"), or "?". */
const char *hdx_ts_name(const char *uid);

#endif
