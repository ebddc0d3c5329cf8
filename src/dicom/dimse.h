/* dimse: DIMSE command sets (PS3.7 section 9 and annex E), pure: the parser of a received
 * command set (always Implicit VR Little Endian, group 0000) and the builders of the responses
 * hdx sends (C-ECHO-RSP, C-STORE-RSP, C-FIND-RSP), of C-FIND identifiers' framing, and of
 * the C-STORE-RQ a DICOM route sends (route/scu.h).
 * Untrusted input only through dicom/dataset.h's walker under its limits.
 * Thread: any. */
#ifndef HDX_DICOM_DIMSE_H
#define HDX_DICOM_DIMSE_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/dataset.h"

enum hdx_dimse_command {
    HDX_C_STORE_RQ = 0x0001,
    HDX_C_STORE_RSP = 0x8001,
    HDX_C_FIND_RQ = 0x0020,
    HDX_C_FIND_RSP = 0x8020,
    HDX_C_CANCEL_RQ = 0x0FFF,
    HDX_C_ECHO_RQ = 0x0030,
    HDX_C_ECHO_RSP = 0x8030,
};

#define HDX_DIMSE_NO_DATASET 0x0101
#define HDX_DIMSE_CMD_MAX 65536 /* largest command set hdx reads */

struct hdx_dimse_cmd {
    uint16_t command;       /* (0000,0100) */
    uint16_t message_id;    /* (0000,0110) */
    uint16_t responded_id;  /* (0000,0120) (C-CANCEL names the request here) */
    uint16_t priority;      /* (0000,0700) */
    uint16_t data_set_type; /* (0000,0800): HDX_DIMSE_NO_DATASET or another value */
    uint16_t status;        /* (0000,0900) */
    char affected_class[HDX_DS_UID_MAX + 1];            /* (0000,0002) */
    char requested_class[HDX_DS_UID_MAX + 1];           /* (0000,0003) */
    char affected_instance[HDX_DS_UID_MAX + 1];         /* (0000,1000) */
    int has_command, has_message_id, has_data_set_type; /* present in the set */
};

/* Parses a command set. HDX_E_INVAL (*why fixed) when it does not walk, holds an element
 * outside group 0000, has no Command Field or no Command Data Set Type, or a known field has
 * the wrong length; a request other than C-CANCEL without a Message ID is refused too. */
int hdx_dimse_parse(const uint8_t *p, size_t n, struct hdx_dimse_cmd *cmd, const char **why);

/* A response command set (group length first, elements in tag order): command is the
 * response's Command Field, responded_id the request's Message ID, affected_class and
 * affected_instance may be "" (left out), has_data_set says whether a data set follows,
 * error_comment (0000,0902) may be NULL (left out; at most 64 bytes, longer is cut).
 * Returns the length, or 0 when cap is too small. */
size_t hdx_dimse_build_rsp(uint16_t command, uint16_t responded_id, const char *affected_class,
                           const char *affected_instance, uint16_t status, int has_data_set,
                           const char *error_comment, uint8_t *out, size_t cap);

/* A C-STORE-RQ command set (priority medium, a data set follows). Returns the length, or 0
 * when cap is too small or a UID is empty or over 64 bytes. */
size_t hdx_dimse_build_store_rq(uint16_t message_id, const char *sop_class,
                                const char *sop_instance, uint8_t *out, size_t cap);

#endif
