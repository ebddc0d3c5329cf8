/* test_multipart: MIME multipart bodies for DICOMweb (proto/multipart.h hdx_mp_content_type,
 * hdx_mp_begin / hdx_mp_next, hdx_mp_write_part / hdx_mp_write_end).
 * Proves: Content-Type values parse (case, OWS, quoted-strings and quoted-pairs, empty and
 * unknown parameters) and each refusal gives its exact text and leaves the struct empty;
 * bodies read part by part with preamble and epilogue ignored, transport padding, a close
 * delimiter with or without its CRLF, empty bodies (with and without the empty line, with
 * and without headers), near-miss delimiters inside bodies ("--boundaryX", "\n--bX",
 * "x--b"), case-insensitive header names; every refusal of the contract in multipart.h gives
 * its exact text and offset, is sticky, never holds the input's bytes (each refused input
 * carries the marker "PHI"); limits are exact (at the limit accepted, one over refused);
 * what real clients send reads back as they meant it: curl's raw request (captured from
 * curl 7.88.1 posting a dicomweb-client style body with --data-binary) through
 * http_parse_request, a body made by Python's email library (policy HTTP) compared with
 * Python's own parse of it, and its default base64 refused; parts written by the writer read
 * back byte-identical, and the writer refuses what would not; the delimiter search is linear
 * (4 MiB of adversarial near misses in well under a second); truncations and bit flips of a
 * golden body keep every invariant. Every body is read from a heap copy of exactly its length,
 * so a read past it shows under ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "proto/http.h"
#include "proto/multipart.h"

/* ---------- real-client fixtures (made-up data; no patient) ----------
 * curl_request: curl 7.88.1, -H 'Content-Type: multipart/related; type="application/dicom";
 *   boundary=XYZ' --data-binary @body, the body built as dicomweb-client's
 *   _encode_multipart_message does (CRLF "--" b CRLF Content-Type CRLF CRLF payload ...
 *   CRLF "--" b "--", no final CRLF); payloads dcm1, dcm2 (dcm1 holds "\r\n--XYZ_not" and
 *   "\r\n--XY\r\n", dcm2 "\n--XYZZ": near misses).
 * email_body / email_ct: Python 3.11 email.mime MIMEMultipart("related",
 *   type="application/dicom") of dcm1 and dcm2 (MIMEApplication, encode_noop,
 *   Content-Transfer-Encoding: binary), as_bytes(policy=email.policy.HTTP), split at the
 *   top-level empty line. The generator rewrites bare CR and LF in binary payloads to CRLF,
 *   so the expected parts are Python's own re-parse (email.message_from_bytes): email_part0/1.
 * email_b64_body: the same library's default (base64) for dcm1. */
static const uint8_t curl_request[] = {
    0x50, 0x4f, 0x53, 0x54, 0x20, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x77, 0x65, 0x62, 0x2f, 0x73,
    0x74, 0x75, 0x64, 0x69, 0x65, 0x73, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x0d,
    0x0a, 0x48, 0x6f, 0x73, 0x74, 0x3a, 0x20, 0x31, 0x32, 0x37, 0x2e, 0x30, 0x2e, 0x30, 0x2e, 0x31,
    0x3a, 0x38, 0x30, 0x34, 0x32, 0x0d, 0x0a, 0x55, 0x73, 0x65, 0x72, 0x2d, 0x41, 0x67, 0x65, 0x6e,
    0x74, 0x3a, 0x20, 0x63, 0x75, 0x72, 0x6c, 0x2f, 0x37, 0x2e, 0x38, 0x38, 0x2e, 0x31, 0x0d, 0x0a,
    0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x6d, 0x75,
    0x6c, 0x74, 0x69, 0x70, 0x61, 0x72, 0x74, 0x2f, 0x72, 0x65, 0x6c, 0x61, 0x74, 0x65, 0x64, 0x3b,
    0x20, 0x74, 0x79, 0x70, 0x65, 0x3d, 0x22, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69,
    0x6f, 0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x22, 0x3b, 0x20, 0x62, 0x6f, 0x75, 0x6e, 0x64,
    0x61, 0x72, 0x79, 0x3d, 0x58, 0x59, 0x5a, 0x0d, 0x0a, 0x41, 0x63, 0x63, 0x65, 0x70, 0x74, 0x3a,
    0x20, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x64, 0x69, 0x63,
    0x6f, 0x6d, 0x2b, 0x6a, 0x73, 0x6f, 0x6e, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x4c, 0x65, 0x6e, 0x67, 0x74, 0x68, 0x3a, 0x20, 0x32, 0x32, 0x31, 0x0d, 0x0a, 0x0d, 0x0a,
    0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69,
    0x6f, 0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x10, 0x00, 0x55, 0x49, 0x14, 0x00,
    0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e,
    0x32, 0x2e, 0x31, 0x00, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x5f, 0x6e, 0x6f, 0x74, 0x0d,
    0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x0d, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
    0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x0d,
    0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d,
    0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f,
    0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x0d, 0x0a, 0x0d, 0x0a, 0x0a, 0x2d, 0x2d, 0x58, 0x59,
    0x5a, 0x5a, 0xff, 0xfe, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x2d, 0x2d,
};
static const uint8_t email_body[] = {
    0x2d, 0x2d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d,
    0x3d, 0x38, 0x39, 0x33, 0x39, 0x32, 0x38, 0x30, 0x31, 0x31, 0x30, 0x37, 0x31, 0x31, 0x38, 0x31,
    0x32, 0x36, 0x38, 0x31, 0x3d, 0x3d, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d,
    0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f,
    0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x0d, 0x0a, 0x4d, 0x49, 0x4d, 0x45, 0x2d, 0x56, 0x65,
    0x72, 0x73, 0x69, 0x6f, 0x6e, 0x3a, 0x20, 0x31, 0x2e, 0x30, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x54, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x45, 0x6e, 0x63,
    0x6f, 0x64, 0x69, 0x6e, 0x67, 0x3a, 0x20, 0x62, 0x69, 0x6e, 0x61, 0x72, 0x79, 0x0d, 0x0a, 0x0d,
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x10,
    0x00, 0x55, 0x49, 0x14, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30,
    0x30, 0x38, 0x2e, 0x31, 0x2e, 0x32, 0x2e, 0x31, 0x00, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a,
    0x5f, 0x6e, 0x6f, 0x74, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x0d, 0x0a, 0x00, 0x01, 0x02, 0x03,
    0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0d, 0x0a, 0x0b, 0x0c, 0x0d, 0x0a, 0x0e, 0x0f, 0x10, 0x11,
    0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
    0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x0d, 0x0a, 0x2d, 0x2d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d,
    0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x38, 0x39, 0x33, 0x39, 0x32, 0x38, 0x30,
    0x31, 0x31, 0x30, 0x37, 0x31, 0x31, 0x38, 0x31, 0x32, 0x36, 0x38, 0x31, 0x3d, 0x3d, 0x0d, 0x0a,
    0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x61, 0x70,
    0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x0d,
    0x0a, 0x4d, 0x49, 0x4d, 0x45, 0x2d, 0x56, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x3a, 0x20, 0x31,
    0x2e, 0x30, 0x0d, 0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x54, 0x72, 0x61, 0x6e,
    0x73, 0x66, 0x65, 0x72, 0x2d, 0x45, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x3a, 0x20, 0x62,
    0x69, 0x6e, 0x61, 0x72, 0x79, 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x44, 0x49, 0x43, 0x4d, 0x0d, 0x0a, 0x0d, 0x0a, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a,
    0x5a, 0xff, 0xfe, 0x0d, 0x0a, 0x2d, 0x2d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d,
    0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x38, 0x39, 0x33, 0x39, 0x32, 0x38, 0x30, 0x31, 0x31, 0x30,
    0x37, 0x31, 0x31, 0x38, 0x31, 0x32, 0x36, 0x38, 0x31, 0x3d, 0x3d, 0x2d, 0x2d, 0x0d, 0x0a,
};
static const char email_ct[] = "multipart/related; type=\"application/dicom\"; "
                               "boundary=\"===============8939280110711812681==\"";
static const uint8_t email_part0[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x10,
    0x00, 0x55, 0x49, 0x14, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30,
    0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e, 0x32, 0x2e, 0x31, 0x00, 0x0d, 0x0a, 0x2d, 0x2d, 0x58,
    0x59, 0x5a, 0x5f, 0x6e, 0x6f, 0x74, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x0d, 0x0a, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0d, 0x0a, 0x0b, 0x0c, 0x0d, 0x0a,
    0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c,
    0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
};
static const uint8_t email_part1[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x0d,
    0x0a, 0x0d, 0x0a, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x5a, 0xff, 0xfe,
};
static const uint8_t email_b64_body[] = {
    0x2d, 0x2d, 0x62, 0x36, 0x34, 0x2d, 0x62, 0x6f, 0x75, 0x6e, 0x64, 0x0d, 0x0a, 0x43, 0x6f, 0x6e,
    0x74, 0x65, 0x6e, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65, 0x3a, 0x20, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x0d, 0x0a, 0x4d, 0x49,
    0x4d, 0x45, 0x2d, 0x56, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x3a, 0x20, 0x31, 0x2e, 0x30, 0x0d,
    0x0a, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x54, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65,
    0x72, 0x2d, 0x45, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x3a, 0x20, 0x62, 0x61, 0x73, 0x65,
    0x36, 0x34, 0x0d, 0x0a, 0x0d, 0x0a, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
    0x42, 0x45, 0x53, 0x55, 0x4e, 0x4e, 0x41, 0x67, 0x41, 0x51, 0x41, 0x46, 0x56, 0x4a, 0x46, 0x41,
    0x41, 0x78, 0x4c, 0x6a, 0x49, 0x75, 0x4f, 0x44, 0x51, 0x77, 0x4c, 0x6a, 0x45, 0x77, 0x4d, 0x44,
    0x41, 0x34, 0x4c, 0x6a, 0x45, 0x75, 0x4d, 0x69, 0x34, 0x78, 0x41, 0x41, 0x30, 0x4b, 0x4c, 0x53,
    0x31, 0x59, 0x57, 0x56, 0x70, 0x66, 0x62, 0x6d, 0x39, 0x30, 0x44, 0x51, 0x6f, 0x74, 0x4c, 0x56,
    0x68, 0x5a, 0x0d, 0x0a, 0x44, 0x51, 0x6f, 0x41, 0x41, 0x51, 0x49, 0x44, 0x42, 0x41, 0x55, 0x47,
    0x42, 0x77, 0x67, 0x4a, 0x43, 0x67, 0x73, 0x4d, 0x44, 0x51, 0x34, 0x50, 0x45, 0x42, 0x45, 0x53,
    0x45, 0x78, 0x51, 0x56, 0x46, 0x68, 0x63, 0x59, 0x47, 0x52, 0x6f, 0x62, 0x48, 0x42, 0x30, 0x65,
    0x48, 0x79, 0x41, 0x68, 0x49, 0x69, 0x4d, 0x6b, 0x4a, 0x53, 0x59, 0x6e, 0x0d, 0x0a, 0x0d, 0x0a,
    0x2d, 0x2d, 0x62, 0x36, 0x34, 0x2d, 0x62, 0x6f, 0x75, 0x6e, 0x64, 0x2d, 0x2d, 0x0d, 0x0a,
};
static const uint8_t dcm1[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x02, 0x00, 0x10,
    0x00, 0x55, 0x49, 0x14, 0x00, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30,
    0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e, 0x32, 0x2e, 0x31, 0x00, 0x0d, 0x0a, 0x2d, 0x2d, 0x58,
    0x59, 0x5a, 0x5f, 0x6e, 0x6f, 0x74, 0x0d, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x0d, 0x0a, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
    0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
};
static const uint8_t dcm2[] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x49, 0x43, 0x4d, 0x0d,
    0x0a, 0x0d, 0x0a, 0x0a, 0x2d, 0x2d, 0x58, 0x59, 0x5a, 0x5a, 0xff, 0xfe,
};

/* ---------- helpers ---------- */

static struct hdx_mp_limits lim;
static struct hdx_mp_reader rd;
static uint8_t *copy; /* the body being read: parts borrow it */

static int setup(void **state)
{
    hdx_mp_limits_default(&lim);
    return 0;
}

static int teardown(void **state)
{
    free(copy);
    copy = NULL;
    return 0;
}

static void begin_lim(const void *bytes, size_t len, const char *boundary,
                      const struct hdx_mp_limits *l)
{
    free(copy);
    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, len);
    hdx_mp_begin(&rd, copy, len, boundary, l);
}

#define BEGIN(lit, b) begin_lim((lit), sizeof(lit) - 1, (b), &lim)

static void expect_part(const char *ctype, const char *loc, const void *body, size_t len)
{
    struct hdx_mp_part p;
    const char *why = NULL;
    size_t off = 0;
    int rc = hdx_mp_next(&rd, &p, &why, &off);
    if (rc != 1) fail_msg("expected a part, got %d (%s at %zu)", rc, why ? why : "-", off);
    assert_string_equal(p.content_type, ctype);
    assert_string_equal(p.content_location, loc);
    assert_int_equal(p.len, len);
    assert_non_null(p.body);
    assert_true(p.body >= copy && p.body + p.len <= copy + rd.len);
    if (len) assert_memory_equal(p.body, body, len);
}

#define PART(ct, loc, lit) expect_part((ct), (loc), (lit), sizeof(lit) - 1)

static void expect_end(void)
{
    struct hdx_mp_part p;
    memset(&p, 0xa5, sizeof(p));
    assert_int_equal(hdx_mp_next(&rd, &p, NULL, NULL), 0);
    assert_null(p.body);
    assert_int_equal(p.len, 0);
    assert_int_equal(hdx_mp_next(&rd, &p, NULL, NULL), 0); /* stays done */
}

/* Reads until the refusal: its exact text and offset; sticky; no input bytes in it. */
static void expect_refusal(const char *reason, size_t offset)
{
    struct hdx_mp_part p;
    const char *why = NULL;
    size_t off = 0;
    int rc;
    while ((rc = hdx_mp_next(&rd, &p, &why, &off)) == 1)
        ;
    if (rc != HDX_E_INVAL) fail_msg("expected refusal [%s], got %d", reason, rc);
    if (strcmp(why, reason) != 0 || off != offset)
        fail_msg("expected [%s] at %zu, got [%s] at %zu", reason, offset, why, off);
    assert_null(strstr(why, "PHI"));
    assert_null(p.body);
    assert_int_equal(p.len, 0);
    assert_string_equal(p.content_type, "");
    const char *why2 = NULL;
    size_t off2 = 0;
    assert_int_equal(hdx_mp_next(&rd, &p, &why2, &off2), HDX_E_INVAL);
    assert_ptr_equal(why2, why);
    assert_int_equal(off2, off);
}

static void refused_lim(const char *bytes, size_t len, const char *boundary,
                        const struct hdx_mp_limits *l, const char *reason, size_t offset)
{
    begin_lim(bytes, len, boundary, l);
    expect_refusal(reason, offset);
}

#define REFUSED(lit, reason, offset)                                                               \
    refused_lim((lit), sizeof(lit) - 1, "b", &lim, (reason), (offset))

/* The offset of the first occurrence of needle in the literal (for readable expectations). */
static size_t at_mem(const void *hay, size_t n, const char *needle)
{
    const char *p = memmem(hay, n, needle, strlen(needle));
    assert_non_null(p);
    return (size_t)(p - (const char *)hay);
}

static size_t at(const char *hay, const char *needle)
{
    return at_mem(hay, strlen(hay), needle);
}

static struct hdx_mp_ctype ct;

static void ct_refused(const char *value, const char *reason)
{
    const char *why = NULL;
    memset(&ct, 0x5a, sizeof(ct));
    int rc = hdx_mp_content_type(value, &ct, &why);
    if (rc != HDX_E_INVAL) fail_msg("expected [%s] for [%s], got %d", reason, value, rc);
    if (strcmp(why, reason) != 0) fail_msg("expected [%s] for [%s], got [%s]", reason, value, why);
    assert_string_equal(ct.media, "");
    assert_string_equal(ct.boundary, "");
    assert_string_equal(ct.type, "");
    assert_string_equal(ct.start, "");
    assert_string_equal(ct.transfer_syntax, "");
}

static void ct_ok(const char *value)
{
    const char *why = NULL;
    int rc = hdx_mp_content_type(value, &ct, &why);
    if (rc != HDX_OK) fail_msg("[%s] refused: %s", value, why);
}

/* ---------- Content-Type ---------- */

static void test_ctype_good(void **state)
{
    ct_ok("multipart/related; type=\"application/dicom\"; boundary=XYZ");
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.type, "application/dicom");
    assert_string_equal(ct.boundary, "XYZ");
    assert_string_equal(ct.start, "");
    assert_string_equal(ct.transfer_syntax, "");

    /* Case, OWS, tabs, empty parameters, a trailing ';', quoted-pairs, values keep case
     * (boundary, start) or are lower-cased (media, type). */
    ct_ok(" \tMultipart/Related ;\tType=\"Application/DICOM+XML\" ;; BOUNDARY=\"a b:c=d?\" ;"
          " Start=\"<1\\\"@hdx>\"; transfer-syntax=1.2.840.10008.1.2.4.50; ");
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.type, "application/dicom+xml");
    assert_string_equal(ct.boundary, "a b:c=d?");
    assert_string_equal(ct.start, "<1\"@hdx>");
    assert_string_equal(ct.transfer_syntax, "1.2.840.10008.1.2.4.50");

    ct_ok("multipart/related;boundary=\"x\\y\"");
    assert_string_equal(ct.boundary, "xy");
    ct_ok(
        "multipart/related; boundary=b; charset=utf-8; x-foo=\"bar; baz\""); /* unknown: ignored */
    assert_string_equal(ct.boundary, "b");
    ct_ok("multipart/related; start=\"\"; boundary=b");
    assert_string_equal(ct.start, "");

    /* A 70-character boundary, and the bchars that are not tchars (quoted). */
    ct_ok("multipart/related; boundary="
          "\"0123456789012345678901234567890123456789012345678901234567890123456789\"");
    assert_int_equal(strlen(ct.boundary), 70);
    ct_ok("multipart/related; boundary=\"'()+_,-./:=? x\"");
    assert_string_equal(ct.boundary, "'()+_,-./:=? x");

    /* Not multipart: boundary= is ignored like any unknown parameter. */
    ct_ok("application/dicom; transfer-syntax=1.2.840.10008.1.2.1; boundary=\"!!\"");
    assert_string_equal(ct.media, "application/dicom");
    assert_string_equal(ct.boundary, "");
    assert_string_equal(ct.transfer_syntax, "1.2.840.10008.1.2.1");

    /* What Python's email library writes (quoted boundary of '=' and digits). */
    ct_ok(email_ct);
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.type, "application/dicom");
    assert_int_equal(strncmp(ct.boundary, "===============", 15), 0);
}

static void test_ctype_refused(void **state)
{
    ct_refused("", "not a type/subtype media type");
    ct_refused("multipart", "not a type/subtype media type");
    ct_refused("multipart/", "not a type/subtype media type");
    ct_refused("/related", "not a type/subtype media type");
    ct_refused("multi part/related", "not a type/subtype media type");
    ct_refused("; boundary=PHI", "not a type/subtype media type");
    char longmedia[200];
    memset(longmedia, 'a', sizeof(longmedia));
    memcpy(longmedia + 120, "/bcdefghij", 10); /* 130 bytes in all: over the field */
    longmedia[130] = 0;
    ct_refused(longmedia, "not a type/subtype media type");
    ct_refused("multipart/related boundary=PHI", "bytes that are not a parameter list");
    ct_refused("multipart/related; boundary=PHI x", "bytes that are not a parameter list");
    ct_refused("multipart/related; boundary = PHI",
               "a parameter without '=' (or with whitespace around it)");
    ct_refused("multipart/related; boundary",
               "a parameter without '=' (or with whitespace around it)");
    ct_refused("multipart/related; boundary= PHI",
               "a parameter value that is neither token nor quoted-string");
    ct_refused("multipart/related; boundary=",
               "a parameter value that is neither token nor quoted-string");
    ct_refused("multipart/related; =PHI", "a parameter name that is not a token");
    ct_refused("multipart/related; boundary=\"PHI", "an unterminated quoted-string");
    ct_refused("multipart/related; boundary=\"PHI\\", "a bad quoted-pair in a quoted-string");
    ct_refused("multipart/related; boundary=\"PHI\\\x01\"", "a bad quoted-pair in a quoted-string");
    ct_refused("multipart/related; boundary=\"PHI\x01\"", "a control byte in a quoted-string");
    ct_refused("multipart/related; boundary=\"PHI\x7f\"", "a control byte in a quoted-string");
    ct_refused("multipart/related; boundary=a; boundary=PHI", "a parameter given twice");
    ct_refused("multipart/related; BOUNDARY=a; Boundary=a", "a parameter given twice");
    ct_refused("multipart/related; boundary=a; x=1; X=\"1\"", "a parameter given twice");
    ct_refused("multipart/related; type=\"application/dicom\"",
               "a multipart media type without a boundary");
    ct_refused("multipart/related; boundary=\"\"", "the boundary is not 1-70 bchars (RFC 2046)");
    ct_refused("multipart/related; boundary=\"PHI \"",
               "the boundary is not 1-70 bchars (RFC 2046)");
    ct_refused("multipart/related; boundary=PHI!", "the boundary is not 1-70 bchars (RFC 2046)");
    ct_refused("multipart/related; boundary=\"PHI\xc3\xa9\"",
               "the boundary is not 1-70 bchars (RFC 2046)");
    ct_refused("multipart/related; boundary="
               "01234567890123456789012345678901234567890123456789012345678901234567890",
               "the boundary is not 1-70 bchars (RFC 2046)");
    ct_refused("multipart/related; boundary=b; type=dicom",
               "the type parameter is not a media type");
    ct_refused("multipart/related; boundary=b; type=\"a/b c\"",
               "the type parameter is not a media type");
    ct_refused("multipart/related; boundary=b; transfer-syntax=1.2.PHI",
               "the transfer-syntax parameter is not a UID");
    ct_refused("multipart/related; boundary=b; transfer-syntax=\"\"",
               "the transfer-syntax parameter is not a UID");
    char big[1200];
    snprintf(big, sizeof(big), "multipart/related; boundary=b; start=\"%0256d\"", 0);
    ct_refused(big, "the start parameter is too long");
    snprintf(big, sizeof(big), "multipart/related; boundary=b; x=%01025d", 0);
    ct_refused(big, "a parameter value too long");
    snprintf(big, sizeof(big), "multipart/related; boundary=b; x%064d=1", 0);
    ct_refused(big, "a parameter name too long");
    snprintf(big, sizeof(big), "multipart/related; boundary=b");
    for (int i = 0; i < 16; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "; p%d=1", i);
    ct_refused(big, "too many parameters"); /* 17 */
    big[strlen(big) - 6] = 0;               /* 16: accepted */
    ct_ok(big);
}

/* ---------- reading ---------- */

static void test_read_parts(void **state)
{
    BEGIN("--b\r\nContent-Type: application/dicom\r\n\r\nPHI-1\r\n"
          "--b\r\nContent-Type: application/dicom\r\nContent-Location: /x/1\r\n\r\nPHI\r\n2\r\n"
          "--b--\r\n",
          "b");
    PART("application/dicom", "", "PHI-1");
    PART("application/dicom", "/x/1", "PHI\r\n2"); /* CRLF inside a body is the body's */
    expect_end();
    assert_int_equal(hdx_mp_count(&rd), 2);

    /* A body ending in CRLF: the last CRLF is the delimiter's. */
    BEGIN("--b\r\n\r\nPHI\r\n\r\n--b--", "b");
    PART("", "", "PHI\r\n");
    expect_end();
}

static void test_preamble_epilogue(void **state)
{
    /* A preamble (with a near miss "--bX" and "--b" not at a line start) and an epilogue
     * that holds delimiters: both ignored. */
    BEGIN("This is a preamble.\r\n--bX\r\nx--b\r\n--b\r\nContent-Type: a/b\r\n\r\nPHI\r\n"
          "--b--\r\nepilogue\r\n--b\r\nContent-Type: c/d\r\n\r\nnot a part\r\n--b--\r\n",
          "b");
    PART("a/b", "", "PHI");
    expect_end();
    assert_int_equal(hdx_mp_count(&rd), 1);
    /* dicomweb-client and dcm4che start with CRLF (an empty preamble). */
    BEGIN("\r\n--b\r\nContent-Type: a/b\r\n\r\nPHI\r\n--b--", "b");
    PART("a/b", "", "PHI");
    expect_end();
}

static void test_transport_padding_and_close(void **state)
{
    BEGIN("--b \t \r\nContent-Type: a/b\r\n\r\nPHI\r\n--b\t\r\n\r\nx\r\n--b-- \t\r\n", "b");
    PART("a/b", "", "PHI");
    PART("", "", "x");
    expect_end();
    /* The close delimiter at the very end, bare or with padding. */
    BEGIN("--b\r\n\r\nPHI\r\n--b--", "b");
    PART("", "", "PHI");
    expect_end();
    BEGIN("--b\r\n\r\nPHI\r\n--b--  ", "b");
    PART("", "", "PHI");
    expect_end();
}

static void test_near_misses_are_body(void **state)
{
    /* "--b" followed by a bchar, a single '-', or not at a line start; bare "\n--bX";
     * partial boundaries: all body bytes. */
    static const char body[] =
        "a\r\n--bX\r\n--b-x\r\n--c\r\n--\r\n-\r\nx--b\r\n\n--bb\r\n--\x00--b";
    static const char msg[] = "--b\r\nContent-Type: a/b\r\n\r\n"
                              "a\r\n--bX\r\n--b-x\r\n--c\r\n--\r\n-\r\nx--b\r\n\n--bb\r\n--\x00--b"
                              "\r\n--b--\r\n";
    BEGIN(msg, "b");
    PART("a/b", "", body);
    expect_end();
    /* A boundary that is a prefix of another: "--bound" inside a "--boundary" body. */
    BEGIN("--boundary\r\n\r\n\r\n--bound\r\n--boundary--", "boundary");
    PART("", "", "\r\n--bound");
    expect_end();
    BEGIN("--bound\r\n\r\n\r\n--boundary\r\n--bound--", "bound");
    PART("", "", "\r\n--boundary");
    expect_end();
}

static void test_empty_bodies(void **state)
{
    /* With headers: the empty line then the delimiter's CRLF, or the empty line's CRLF is
     * the delimiter's (RFC 2046: body-part := MIME-part-headers [CRLF *OCTET]). */
    BEGIN("--b\r\nContent-Type: a/b\r\n\r\n\r\n--b\r\nContent-Type: c/d\r\n\r\n--b--", "b");
    PART("a/b", "", "");
    PART("c/d", "", "");
    expect_end();
    /* Without headers: delimiter line, then CRLF (the empty header block or the delimiter's
     * CRLF), with or without a body. */
    BEGIN("--b\r\n\r\n--b\r\n\r\n\r\n--b\r\n\r\nX\r\n--b\r\n\r\n\r\n\r\n--b--", "b");
    PART("", "", "");
    PART("", "", "");
    PART("", "", "X");
    PART("", "", "\r\n");
    expect_end();
    assert_int_equal(hdx_mp_count(&rd), 4);
}

static void test_headers(void **state)
{
    BEGIN("--b\r\nCONTENT-TYPE: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n"
          "content-location: \t /wado/x?y=\xc3\xa9 \t\r\n"
          "Content-Transfer-Encoding: BINARY\r\nMIME-Version: 1.0\r\nContent-ID: <1@x>\r\n"
          "Content-Length: 3\r\nX-Empty:\r\n\r\nPHI\r\n"
          "--b\r\ncontent-transfer-encoding: 8bit\r\ncontent-type:a/b\r\n\r\nx\r\n"
          "--b\r\nContent-Transfer-Encoding:7Bit\r\nContent-Length: 0\r\n\r\n\r\n--b--\r\n",
          "b");
    PART("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", "/wado/x?y=\xc3\xa9", "PHI");
    PART("a/b", "", "x");
    PART("", "", "");
    expect_end();

    /* Exactly at the limits: accepted. 16 header lines; a block of exactly 8192 bytes. */
    char *m = malloc(20000);
    assert_non_null(m);
    strcpy(m, "--b\r\n");
    for (int i = 0; i < 16; i++)
        sprintf(m + strlen(m), "X-%02d: v\r\n", i);
    strcat(m, "\r\nPHI\r\n--b--");
    begin_lim(m, strlen(m), "b", &lim);
    expect_part("", "", "PHI", 3);
    expect_end();
    strcpy(m, "--b\r\n");
    strcat(m, "X-Long: ");
    size_t fill = 8192 - 8 - 2 - 2; /* name, CRLF, empty line */
    memset(m + strlen(m), 'v', fill);
    m[5 + 8 + fill] = 0;
    strcat(m, "\r\n\r\nPHI\r\n--b--");
    begin_lim(m, strlen(m), "b", &lim);
    expect_part("", "", "PHI", 3);
    expect_end();
    /* One byte more: refused at the first byte over. */
    memmove(m + 6, m + 5, strlen(m + 5) + 1);
    m[5] = 'X';
    begin_lim(m, strlen(m), "b", &lim);
    expect_refusal("a part header block over max_part_header_bytes", 5 + 8192);
    /* 17 lines: refused at the 17th. */
    strcpy(m, "--b\r\n");
    for (int i = 0; i < 17; i++)
        sprintf(m + strlen(m), "X-%02d: v\r\n", i);
    strcat(m, "\r\nPHI\r\n--b--");
    begin_lim(m, strlen(m), "b", &lim);
    expect_refusal("more part header lines than max_part_headers", 5 + 16 * 9);
    /* A Content-Type of 255 bytes fits, 256 does not; Location 511 / 512. */
    strcpy(m, "--b\r\nContent-Type: ");
    memset(m + strlen(m), 't', 255);
    m[19 + 255] = 0;
    strcat(m, "\r\n\r\nPHI\r\n--b--");
    begin_lim(m, strlen(m), "b", &lim);
    struct hdx_mp_part p;
    assert_int_equal(hdx_mp_next(&rd, &p, NULL, NULL), 1);
    assert_int_equal(strlen(p.content_type), 255);
    memmove(m + 20, m + 19, strlen(m + 19) + 1);
    begin_lim(m, strlen(m), "b", &lim);
    expect_refusal("a part Content-Type over 255 bytes", 19);
    strcpy(m, "--b\r\nContent-Location: ");
    memset(m + strlen(m), 'l', 511);
    m[23 + 511] = 0;
    strcat(m, "\r\n\r\nPHI\r\n--b--");
    begin_lim(m, strlen(m), "b", &lim);
    assert_int_equal(hdx_mp_next(&rd, &p, NULL, NULL), 1);
    assert_int_equal(strlen(p.content_location), 511);
    memmove(m + 24, m + 23, strlen(m + 23) + 1);
    begin_lim(m, strlen(m), "b", &lim);
    expect_refusal("a part Content-Location over 511 bytes", 23);
    free(m);
}

static void test_refused_framing(void **state)
{
    /* No opening delimiter at all, an invalid boundary, an empty body, a near miss only. */
    REFUSED("PHI", "no opening delimiter", 0);
    REFUSED("", "no opening delimiter", 0);
    REFUSED("--bX\r\n\r\nPHI\r\n--bX--", "no opening delimiter", 0);
    REFUSED("x--b\r\n\r\nPHI", "no opening delimiter", 0);
    /* A missing CRLF after the opening delimiter. */
    { /* then "--bContent-Type..." is preamble, and the close delimiter comes first */
        static const char m[] = "--bContent-Type: a/b\r\n\r\nPHI\r\n--b--";
        REFUSED(m, "a close delimiter before any part", at(m, "\r\n--b--"));
    }
    REFUSED("--b Content-Type: a/b\r\n\r\nPHI\r\n--b--",
            "bytes after the boundary on a delimiter line", 4);
    refused_lim("--\r\n\r\nPHI", 9, "", &lim, "the boundary is not valid", 0);
    refused_lim("--a!\r\n\r\nPHI", 11, "a!", &lim, "the boundary is not valid", 0);
    refused_lim("--a \r\n\r\nPHI", 11, "a ", &lim, "the boundary is not valid", 0);
    /* A close delimiter before any part. */
    REFUSED("--b--\r\nPHI", "a close delimiter before any part", 0);
    REFUSED("PHI\r\n--b--\r\n", "a close delimiter before any part", 3);

    /* Bare LF line ends (an LF-only client), each place they can be. */
    REFUSED("--b\nContent-Type: a/b\n\nPHI\n--b--\n",
            "a bare LF at a delimiter line (lines must end in CRLF)", 3);
    REFUSED("PHI\n--b\r\n\r\nx\r\n--b--", "a bare LF at a delimiter line (lines must end in CRLF)",
            3);
    REFUSED("\n--b\r\n\r\nPHI\r\n--b--", "a bare LF at a delimiter line (lines must end in CRLF)",
            0);
    REFUSED("--b\r\n\r\nPHI\n--b--\r\n", "a bare LF at a delimiter line (lines must end in CRLF)",
            10);
    REFUSED("--b\r\n\r\nPHI\r\n--b--\n", "a bare LF at a delimiter line (lines must end in CRLF)",
            17);
    REFUSED("--b\r\n\r\nPHI\r\n--b \n", "a bare LF at a delimiter line (lines must end in CRLF)",
            16);
    REFUSED("--b\r\nContent-Type: a/b\n\r\nPHI\r\n--b--", "a bare LF in a part header block", 22);
    REFUSED("--b\r\nContent-Type: a/b\r\n\nPHI\r\n--b--", "a bare LF in a part header block", 24);
    /* Bare CR. */
    REFUSED("--b\rPHI\r\n--b--", "a bare CR on a delimiter line", 3);
    REFUSED("--b\r\n\r\nPHI\r\n--b--\rx", "a bare CR on a delimiter line", 17);
    REFUSED("--b\r\nContent-Type: a/b\rPHI\r\n\r\nx\r\n--b--", "a bare CR in a part header block",
            22);
    /* Bytes after the boundary on a delimiter line (after padding), after a close delimiter. */
    REFUSED("--b\r\n\r\nPHI\r\n--b x\r\n", "bytes after the boundary on a delimiter line", 16);
    REFUSED("--b\r\n\r\nPHI\r\n--b--PHI\r\n", "bytes after the boundary on a delimiter line", 17);
    REFUSED("--b\r\n\r\nPHI\r\n--b-- x", "bytes after the boundary on a delimiter line", 18);

    /* Truncated bodies: inside a part, inside a delimiter line, inside a header block. */
    REFUSED("--b\r\nContent-Type: a/b\r\n\r\nPHI",
            "a part with no closing delimiter (truncated body)", 26);
    REFUSED("--b\r\n\r\nPHI\r\n--", "a part with no closing delimiter (truncated body)", 7);
    REFUSED("--b\r\n\r\nPHI\r\n--b-", "a part with no closing delimiter (truncated body)", 7);
    REFUSED("--b\r\n\r\nPHI\r\n--b", "the body ends inside a delimiter line", 15);
    REFUSED("--b\r\n\r\nPHI\r\n--b \t", "the body ends inside a delimiter line", 17);
    REFUSED("--b\r\n\r\nPHI\r\n--b\r", "the body ends inside a delimiter line", 16);
    REFUSED("--b", "the body ends inside a delimiter line", 3);
    REFUSED("--b\r\n", "the body ends inside a part header block", 5);
    REFUSED("--b\r\nContent-Type: PHI\r\n", "the body ends inside a part header block", 24);
    REFUSED("--b\r\nContent-Type: PHI\r", "the body ends inside a part header block", 23);
    REFUSED("--b\r\n\r", "the body ends inside a part header block", 6);
}

static void test_refused_headers(void **state)
{
    REFUSED("--b\r\nContent-Type: a/b\r\n PHI\r\n\r\nx\r\n--b--",
            "obs-fold (a folded part header line) is refused", 24);
    REFUSED("--b\r\n\tPHI: x\r\n\r\nx\r\n--b--", "obs-fold (a folded part header line) is refused",
            5);
    REFUSED("--b\r\nPHI\r\n\r\nx\r\n--b--", "a part header line without a colon", 5);
    REFUSED("--b\r\n--b\r\n\r\nPHI\r\n--b--", "a part header line without a colon", 5);
    REFUSED("--b\r\nContent Type: PHI\r\n\r\nx\r\n--b--", "a part header name that is not a token",
            12);
    REFUSED("--b\r\nContent-Type : PHI\r\n\r\nx\r\n--b--", "a part header name that is not a token",
            17);
    REFUSED("--b\r\n: PHI\r\n\r\nx\r\n--b--", "a part header name that is not a token", 5);
    REFUSED("--b\r\nX\xc3\xa9: PHI\r\n\r\nx\r\n--b--", "a part header name that is not a token", 6);
    REFUSED("--b\r\nX: P\x01HI\r\n\r\nx\r\n--b--", "a control byte in a part header block", 9);
    REFUSED("--b\r\nX: P\x00HI\r\n\r\nx\r\n--b--", "a control byte in a part header block", 9);
    REFUSED("--b\r\nX: PHI\x7f\r\n\r\nx\r\n--b--", "a control byte in a part header block", 11);
    REFUSED("--b\r\nContent-Type: a/b\r\ncontent-type: PHI\r\n\r\nx\r\n--b--",
            "Content-Type given twice in a part", 24);
    REFUSED("--b\r\nContent-Location: a\r\nContent-Location: PHI\r\n\r\nx\r\n--b--",
            "Content-Location given twice in a part", 26);
    REFUSED("--b\r\nContent-Transfer-Encoding: binary\r\nContent-Transfer-Encoding: binary\r\n"
            "\r\nPHI\r\n--b--",
            "Content-Transfer-Encoding given twice in a part", 40);
    REFUSED("--b\r\nContent-Transfer-Encoding: base64\r\n\r\nPHI\r\n--b--",
            "a Content-Transfer-Encoding other than binary, 8bit or 7bit", 32);
    REFUSED("--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nPHI\r\n--b--",
            "a Content-Transfer-Encoding other than binary, 8bit or 7bit", 32);
    REFUSED("--b\r\nContent-Transfer-Encoding: binary, 8bit\r\n\r\nPHI\r\n--b--",
            "a Content-Transfer-Encoding other than binary, 8bit or 7bit", 32);
    REFUSED("--b\r\nContent-Transfer-Encoding:\r\n\r\nPHI\r\n--b--",
            "a Content-Transfer-Encoding other than binary, 8bit or 7bit", 31);
    REFUSED("--b\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nPHI\r\n--b--",
            "Content-Length given twice in a part", 24);
    REFUSED("--b\r\nContent-Length: 4\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that does not match its body", 26);
    REFUSED("--b\r\nContent-Length: 0\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that does not match its body", 26);
    REFUSED("--b\r\nContent-Length: 3x\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that is not one decimal number", 21);
    REFUSED("--b\r\nContent-Length: -3\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that is not one decimal number", 21);
    REFUSED("--b\r\nContent-Length:\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that is not one decimal number", 20);
    REFUSED("--b\r\nContent-Length: 00000000000000000003\r\n\r\nPHI\r\n--b--",
            "a part Content-Length that is not one decimal number", 21);
    /* The refusal is in the second part: the first was returned. */
    BEGIN("--b\r\n\r\nok\r\n--b\r\nPHI\r\n\r\nx\r\n--b--", "b");
    PART("", "", "ok");
    expect_refusal("a part header line without a colon", 16);
}

static void test_limits(void **state)
{
    struct hdx_mp_limits l = lim;
    l.max_parts = 2;
    static const char two[] = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b--";
    begin_lim(two, sizeof(two) - 1, "b", &l);
    PART("", "", "1");
    PART("", "", "2");
    expect_end();
    static const char three[] = "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\nPHI\r\n--b--";
    begin_lim(three, sizeof(three) - 1, "b", &l);
    PART("", "", "1");
    PART("", "", "2");
    expect_refusal("more parts than max_parts", at(three, "\r\nPHI")); /* the part's start */
    l = lim;
    l.max_part_header_bytes = 16;
    static const char hb[] = "--b\r\nX: 12345678\r\n\r\nPHI\r\n--b--"; /* a block of 14 */
    begin_lim(hb, sizeof(hb) - 1, "b", &l);
    PART("", "", "PHI");
    l.max_part_header_bytes = 13;
    refused_lim(hb, sizeof(hb) - 1, "b", &l, "a part header block over max_part_header_bytes", 18);
    l.max_part_header_bytes = 12; /* over on the LF of the first line */
    refused_lim(hb, sizeof(hb) - 1, "b", &l, "a part header block over max_part_header_bytes", 17);
    l = lim;
    l.max_part_headers = 0;
    refused_lim(hb, sizeof(hb) - 1, "b", &l, "more part header lines than max_part_headers", 5);
    static const char nohdr[] = "--b\r\n\r\nPHI\r\n--b--";
    begin_lim(nohdr, sizeof(nohdr) - 1, "b", &l);
    PART("", "", "PHI");
    /* NULL limits: the defaults. */
    hdx_mp_begin(&rd, (const uint8_t *)nohdr, sizeof(nohdr) - 1, "b", NULL);
    assert_int_equal(rd.lim.max_parts, 1000);
    assert_int_equal(rd.lim.max_part_header_bytes, 8192);
    assert_int_equal(rd.lim.max_part_headers, 16);
}

/* ---------- real clients ---------- */

static void test_curl_dicomweb_client_body(void **state)
{
    struct http_limits hl;
    struct http_req req;
    struct http_error err;
    size_t used = 0;
    http_limits_default(&hl);
    assert_int_equal(http_parse_request(curl_request, sizeof(curl_request), &hl, &req, &used, &err),
                     HTTP_OK);
    assert_int_equal(used, sizeof(curl_request));
    const char *v = http_header_get(&req, "content-type");
    assert_non_null(v);
    ct_ok(v);
    assert_string_equal(ct.media, "multipart/related");
    assert_string_equal(ct.type, "application/dicom");
    assert_string_equal(ct.boundary, "XYZ");
    begin_lim(req.body, req.body_len, ct.boundary, &lim);
    expect_part("application/dicom", "", dcm1, sizeof(dcm1));
    expect_part("application/dicom", "", dcm2, sizeof(dcm2));
    expect_end();
    http_req_free(&req);
}

static void test_python_email_body(void **state)
{
    ct_ok(email_ct);
    begin_lim(email_body, sizeof(email_body), ct.boundary, &lim);
    expect_part("application/dicom", "", email_part0, sizeof(email_part0));
    expect_part("application/dicom", "", email_part1, sizeof(email_part1));
    expect_end();
    /* The library's default transfer encoding is base64: refused, not decoded. */
    begin_lim(email_b64_body, sizeof(email_b64_body), "b64-bound", &lim);
    expect_refusal("a Content-Transfer-Encoding other than binary, 8bit or 7bit",
                   at_mem(email_b64_body, sizeof(email_b64_body), "base64"));
}

/* ---------- writing ---------- */

static void test_round_trip(void **state)
{
    uint8_t all[256 + 6];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    memcpy(all + 256, "\r\n--b\r", 6); /* ends like a near miss; no "\n--" + boundary */
    struct {
        const char *ct, *loc;
        const uint8_t *body;
        size_t len;
    } parts[] = {
        {"application/dicom", "/studies/1.2.3/series/4/instances/5", dcm1, sizeof(dcm1)},
        {"application/octet-stream", NULL, (const uint8_t *)"", 0},
        {"application/dicom; transfer-syntax=1.2.840.10008.1.2.1", "", dcm2, sizeof(dcm2)},
        {NULL, "/bulk/\xc3\xa9\tx", all, sizeof(all)},
        {"a/b", NULL, (const uint8_t *)"\r\n", 2},
    };
    const char *boundary = "hdx-7f3a9c2e 0b41'()+_,-./:=?Z";
    struct hdx_mp_out o;
    hdx_mp_out_init(&o, 1 << 20);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(
            hdx_mp_write_part(&o, boundary, parts[i].ct, parts[i].loc, parts[i].body, parts[i].len),
            HDX_OK);
    assert_int_equal(hdx_mp_write_end(&o, boundary), HDX_OK);
    assert_memory_equal(o.buf, "--hdx-7f3a9c2e", 14); /* no CRLF before the first */
    assert_memory_equal(o.buf + o.len - 4, "--\r\n", 4);
    begin_lim(o.buf, o.len, boundary, &lim);
    for (size_t i = 0; i < 5; i++)
        expect_part(parts[i].ct ? parts[i].ct : "", parts[i].loc ? parts[i].loc : "", parts[i].body,
                    parts[i].len);
    expect_end();
    /* The exact bytes of a one-part body. */
    hdx_mp_out_free(&o);
    assert_null(o.buf);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", "/l", (const uint8_t *)"PHI", 3), HDX_OK);
    assert_int_equal(hdx_mp_write_end(&o, "b"), HDX_OK);
    static const char exact[] =
        "--b\r\nContent-Type: a/b\r\nContent-Location: /l\r\n\r\nPHI\r\n--b--\r\n";
    assert_int_equal(o.len, sizeof(exact) - 1);
    assert_memory_equal(o.buf, exact, o.len);
    hdx_mp_out_free(&o);
    hdx_mp_out_free(NULL);

    /* Growth across many parts (each growth copies and wipes), then read back. */
    hdx_mp_out_init(&o, 64 << 20);
    uint8_t chunk[3000];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 900; i++)
        assert_int_equal(hdx_mp_write_part(&o, "bb", "application/dicom", NULL, chunk,
                                           (size_t)i % sizeof(chunk)),
                         HDX_OK);
    assert_int_equal(hdx_mp_write_end(&o, "bb"), HDX_OK);
    begin_lim(o.buf, o.len, "bb", &lim);
    for (int i = 0; i < 900; i++)
        expect_part("application/dicom", "", chunk, (size_t)i % sizeof(chunk));
    expect_end();
    hdx_mp_out_free(&o);
}

static void test_writer_refuses(void **state)
{
    struct hdx_mp_out o;
    hdx_mp_out_init(&o, 1 << 16);
    const uint8_t *B = (const uint8_t *)"x";
    assert_int_equal(hdx_mp_write_end(&o, "b"), HDX_E_INVAL); /* no part yet */
    assert_int_equal(hdx_mp_write_part(&o, "", "a/b", NULL, B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "a!", "a/b", NULL, B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "a ", "a/b", NULL, B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, NULL, "a/b", NULL, B, 1), HDX_E_INVAL);
    /* Header injection and values the reader would not give back. */
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b\r\nX: y", NULL, B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", "/l\n", B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", " a/b", NULL, B, 1), HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", "/l\t", B, 1), HDX_E_INVAL);
    char longv[600];
    memset(longv, 'v', sizeof(longv));
    longv[256] = 0;
    assert_int_equal(hdx_mp_write_part(&o, "b", longv, NULL, B, 1), HDX_E_INVAL);
    longv[255] = 0;
    assert_int_equal(hdx_mp_write_part(&o, "b", longv, NULL, B, 1), HDX_OK);
    size_t kept = o.len;
    /* A body holding the boundary: at its start, after CRLF, after a bare LF, at its end. */
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, (const uint8_t *)"--b", 3),
                     HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, (const uint8_t *)"x\r\n--bX", 7),
                     HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, (const uint8_t *)"x\n--b", 5),
                     HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, (const uint8_t *)"x-\n--b", 6),
                     HDX_E_INVAL);
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, NULL, 1), HDX_E_INVAL);
    /* Over max: nothing appended. */
    uint8_t big[1 << 16];
    memset(big, 'x', sizeof(big));
    assert_int_equal(hdx_mp_write_part(&o, "b", "a/b", NULL, big, sizeof(big)), HDX_E_TOOBIG);
    assert_int_equal(o.len, kept);
    assert_int_equal(hdx_mp_write_part(&o, "b", NULL, NULL, NULL, 0), HDX_OK); /* empty body */
    hdx_mp_out_free(&o);
    /* max reached exactly by the end, and one byte short. */
    hdx_mp_out_init(&o, 5 + 2 + 3 + 9);
    assert_int_equal(hdx_mp_write_part(&o, "b", NULL, NULL, (const uint8_t *)"PHI", 3), HDX_OK);
    assert_int_equal(hdx_mp_write_end(&o, "b"), HDX_OK);
    assert_int_equal(o.len, o.max);
    hdx_mp_out_free(&o);
    hdx_mp_out_init(&o, 5 + 2 + 3 + 8);
    assert_int_equal(hdx_mp_write_part(&o, "b", NULL, NULL, (const uint8_t *)"PHI", 3), HDX_OK);
    assert_int_equal(hdx_mp_write_end(&o, "b"), HDX_E_TOOBIG);
    assert_int_equal(o.len, 10);
    hdx_mp_out_free(&o);
}

/* ---------- linear time ---------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One part of 4 MiB of the unit repeated (or the preamble, when in_preamble), read in well
 * under a second (a search that restarts from the part start per candidate, or compares a
 * whole boundary at every byte with no skip, takes minutes here). */
static void adversarial(const char *unit, const char *boundary, int in_preamble)
{
    size_t ul = strlen(unit), bl = strlen(boundary), n = (4u << 20) / ul * ul;
    size_t total = 2 + bl + 4 + n + 4 + bl + 4 + 2;
    uint8_t *m = malloc(total);
    assert_non_null(m);
    size_t k = 0;
    if (in_preamble) {
        for (size_t i = 0; i < n; i += ul)
            memcpy(m + k + i, unit, ul);
        k += n;
        memcpy(m + k, "\r\n", 2), k += 2;
    }
    memcpy(m + k, "--", 2), k += 2;
    memcpy(m + k, boundary, bl), k += bl;
    memcpy(m + k, "\r\n\r\n", 4), k += 4;
    size_t body = k;
    if (!in_preamble) {
        for (size_t i = 0; i < n; i += ul)
            memcpy(m + k + i, unit, ul);
        k += n;
    }
    memcpy(m + k, "\r\n--", 4), k += 4;
    memcpy(m + k, boundary, bl), k += bl;
    memcpy(m + k, "--\r\n", 4), k += 4;
    double t0 = now_s();
    hdx_mp_begin(&rd, m, k, boundary, &lim);
    struct hdx_mp_part p;
    const char *why = "";
    size_t off = 0;
    int rc = hdx_mp_next(&rd, &p, &why, &off);
    if (rc != 1) fail_msg("refused: %s at %zu", why, off);
    double dt = now_s() - t0;
    assert_ptr_equal(p.body, m + body);
    assert_int_equal(p.len, in_preamble ? 0 : n);
    assert_int_equal(hdx_mp_next(&rd, &p, NULL, NULL), 0);
    if (dt > 1.0) fail_msg("%.2f s for 4 MiB of [%.20s]: not linear", dt, unit);
    free(m);
}

static void test_linear_time(void **state)
{
    static const char b70[] =
        "0123456789012345678901234567890123456789012345678901234567890123456789";
    char unit[100];
    /* A near miss at the boundary's last byte after every CRLF "--". */
    snprintf(unit, sizeof(unit), "\r\n--%.69sx", b70);
    adversarial(unit, b70, 0);
    adversarial(unit, b70, 1);
    /* The whole boundary, then a bchar: "--boundaryX", body bytes. */
    snprintf(unit, sizeof(unit), "\r\n--%sX", b70);
    adversarial(unit, b70, 0);
    /* "--boundary-x": one '-' only. */
    snprintf(unit, sizeof(unit), "\r\n--%s-x", b70);
    adversarial(unit, b70, 0);
    /* Every byte an LF or a CRLF "--" (the smallest near misses), a boundary of dashes. */
    adversarial("\n", "-", 0);
    adversarial("\r\n--", "-----", 0);
    adversarial("\r\n---x", "--", 0);
    adversarial("\r\n--b\r\n-", "bb", 0);
}

/* ---------- invariants under corruption ---------- */

static const char golden[] = "preamble\r\n--b\r\nContent-Type: application/dicom\r\n"
                             "Content-Location: /x\r\nContent-Length: 5\r\n\r\nPHI-1\r\n"
                             "--b \r\n\r\n\r\n--b\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                             "x\r\n--bX\r\n--b--\r\nepilogue";

static void read_sane(const uint8_t *b, size_t n, const struct hdx_mp_limits *l, int *last)
{
    struct hdx_mp_part p;
    const char *why = NULL;
    size_t off = 0, parts = 0;
    int rc;
    hdx_mp_begin(&rd, b, n, "b", l);
    while ((rc = hdx_mp_next(&rd, &p, &why, &off)) == 1) {
        assert_true(p.body >= b && p.body + p.len <= b + n);
        assert_non_null(memchr(p.content_type, 0, sizeof(p.content_type)));
        assert_non_null(memchr(p.content_location, 0, sizeof(p.content_location)));
        assert_true(++parts <= l->max_parts);
    }
    assert_true(rc == 0 || rc == HDX_E_INVAL);
    if (rc == HDX_E_INVAL) {
        assert_non_null(why);
        assert_true(off <= n);
    }
    assert_int_equal(hdx_mp_count(&rd), parts);
    *last = rc;
}

static void test_bitflip_truncation(void **state)
{
    size_t len = sizeof(golden) - 1;
    size_t close_end = at(golden, "--b--") + 5;
    struct hdx_mp_limits tight = {
        .max_parts = 2, .max_part_header_bytes = 64, .max_part_headers = 2};
    uint8_t *b = malloc(len);
    assert_non_null(b);
    int rc;
    /* Every truncation: a cut before the end of "--b--" is never a clean end; after it (the
     * CRLF, the epilogue) always is, but for a cut between CR and LF. */
    for (size_t cut = 0; cut <= len; cut++) {
        memcpy(b, golden, cut);
        read_sane(b, cut, &lim, &rc);
        if (cut < close_end || cut == close_end + 1) /* "--b--\r": a cut delimiter line */
            assert_int_equal(rc, HDX_E_INVAL);
        else
            assert_int_equal(rc, 0);
        read_sane(b, cut, &tight, &rc);
    }
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(b, golden, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        read_sane(b, len, &lim, &rc);
        read_sane(b, len, &tight, &rc);
    }
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctype_good),
        cmocka_unit_test(test_ctype_refused),
        cmocka_unit_test(test_read_parts),
        cmocka_unit_test(test_preamble_epilogue),
        cmocka_unit_test(test_transport_padding_and_close),
        cmocka_unit_test(test_near_misses_are_body),
        cmocka_unit_test(test_empty_bodies),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_refused_framing),
        cmocka_unit_test(test_refused_headers),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_curl_dicomweb_client_body),
        cmocka_unit_test(test_python_email_body),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_refuses),
        cmocka_unit_test(test_linear_time),
        cmocka_unit_test(test_bitflip_truncation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
