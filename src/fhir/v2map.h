/* v2map: HL7 v2 ORU^R01 vital signs <-> FHIR R4 Observation, both ways (docs/FHIR-MAPPING.md).
 * Pure functions: no I/O, no clock, no globals; the same input always gives the same output,
 * because hdx regenerates the FHIR view of a stored record on every read.
 * Input is untrusted: both directions check sizes (HDX_V2MAP_MAX_MSG, HDX_V2MAP_MAX_OBS) before
 * they allocate per element, and refuse what they cannot map faithfully instead of guessing.
 * Errors: why (may be NULL) receives one line naming the segment, field or element at fault and
 * never a value taken from the input, since values are PHI.
 * Ownership: *out belongs to the caller (json_decref, free); the inputs are only read.
 * Thread: any. */
#ifndef HDX_FHIR_V2MAP_H
#define HDX_FHIR_V2MAP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HDX_V2MAP_MAX_MSG (1u << 20) /* bytes of one ORU^R01 taken or made */
#define HDX_V2MAP_MAX_OBS 1000 /* OBX segments of one message, components of one Observation */

/* How Observations made here are serialized: jansson's default writes 17 significant digits, so
 * 36.8 would read back as 36.799999999999997; 15 gives the shortest text for any value that
 * came from a decimal of 15 digits or fewer. */
#define HDX_V2MAP_JSON_FLAGS (JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

/* The sender of the ORU^R01 records hdx makes from FHIR vital signs (for HL7 v2 subscribers
 * and routes): the FHIR index skips them, their Observation is already there. */
#define HDX_V2MAP_SENDER "hdx-fhir"

struct hdx_v2map_in {
    const char *sender;      /* the device/sender name hdx knows; Device when OBX-18 is empty */
    uint64_t seq;            /* the stored record's seq: ids are "v2-<seq>-<n>" */
    const char *patient_ref; /* "Patient/ID" when the caller knows the FHIR Patient, else NULL */
    uint32_t only; /* 0: every Observation; N: only the Nth (the array then holds it alone, or
                      nothing when there are fewer), built as it is in the whole array */
};

/* ORU^R01 -> FHIR Observations. *out = a new JSON array with one Observation per OBX, except
 * that a systolic and a diastolic pressure of the same OBR group (same OBX-4 channel, or
 * adjacent when neither has an OBX-4) become one 85354-9 blood-pressure panel. The array may be
 * empty (no OBX). n in "v2-<seq>-<n>" is the 1-based position in that array.
 * Returns HDX_OK; HDX_E_INVAL when the bytes are not a parsable ORU^R01 or a field cannot be
 * mapped (no PID and no patient_ref, OBX-3 empty, OBX-5 not a number for NM, a bad DTM, a value
 * that is not UTF-8); HDX_E_TOOBIG over the limits above; HDX_E_NOMEM. *out is NULL on error. */
int hdx_v2map_observations(const uint8_t *msg, size_t len, const struct hdx_v2map_in *in,
                           json_t **out, char *why, size_t cap);

struct hdx_v2map_out {
    const char *control_id;        /* MSH-10 */
    const char *patient_mrn;       /* PID-3.1 */
    const char *patient_authority; /* PID-3.4, may be NULL */
    int64_t now_us;                /* MSH-7, microseconds since the epoch (UTC) */
    const char *sending_app;       /* MSH-3 */
};

/* FHIR Observation -> HL7 v2.5.1 ORU^R01^ORU_R01 (MSH, PID, OBR, one OBX per value: a panel's
 * components each become an OBX). Every value goes through hl7_escape; segments end in CR; the
 * result parses with hl7_parse. *out is malloc'd and NUL-terminated, *len its length.
 * OBX-3 takes the first LOINC coding, else the first coding whose system has a v2 name (LN, MDC,
 * SCT, UCUM, none, or one of v2map's urn:hdx:v2-coding-system: names), else the text alone.
 * PID comes from o, never from Observation.subject. Returns HDX_OK; HDX_E_INVAL when the
 * Observation cannot be mapped (not an Observation, no usable code, no value and no
 * dataAbsentReason, a value type or number NM cannot hold, a bad dateTime, a status outside
 * observation-status, a missing control id or MRN); HDX_E_TOOBIG; HDX_E_NOMEM. *out is NULL and
 * *len 0 on error. */
int hdx_v2map_oru(const json_t *obs, const struct hdx_v2map_out *o, char **out, size_t *len,
                  char *why, size_t cap);

#endif
