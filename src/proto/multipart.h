/* multipart: MIME multipart bodies (RFC 2046 5.1; multipart/related, RFC 2387) for DICOMweb:
 * STOW-RS requests are read, WADO-RS answers are written (PS3.18 8.6, 8.7). Pure: no I/O;
 * fuzzed by fuzz/multipart.
 * Reading. The body is untrusted and read in place: a part's body borrows the caller's buffer
 * (valid while it is), its two kept headers are bounded copies. hdx_mp_next returns one part
 * per call; the reader never reads outside [body, body + len), never allocates, and finds
 * each delimiter in time linear in the bytes it passes (a memchr to each LF, then at most
 * "--" boundary compared there, and transport padding scanned once: a boundary holds no LF,
 * so a near miss costs at most 72 byte compares, whatever the input). Its rules, where RFC 2046
 * leaves a choice or a peer could read the same bytes otherwise, are chosen to refuse rather than
 * guess:
 *   - a delimiter is CRLF "--" boundary, then transport padding (SP / HTAB, any amount),
 *     then CRLF; the close delimiter has "--" after the boundary, then padding, then CRLF or
 *     the end of the body (dicomweb-client ends its bodies without the CRLF). The CRLF
 *     before "--" belongs to the delimiter, never to the part body before it.
 *   - "--boundaryX" (X a byte other than SP, HTAB, CR, LF, or the "--" of a close
 *     delimiter) is not a delimiter: it is body bytes (as Go's mime/multipart and Python's
 *     email read it). "--boundary" followed by padding and then anything but CRLF, or
 *     "--boundary--" followed by anything but padding and CRLF or the end, is refused
 *     ("bytes after a delimiter"): no compliant sender writes it (the boundary must not
 *     occur in the parts) and readers disagree on it.
 *   - bare LF line ends are refused, with their own reason: a delimiter preceded or ended
 *     by a bare LF, and a bare LF or CR in a part header block. Every STOW-RS client we
 *     looked at (curl with --data-binary of a prepared body, dcm4che stowrs, the
 *     dicomweb-client Python package, Python's email with policy HTTP) writes CRLF, and a
 *     body split at bare LFs by one reader and not by another is a smuggling channel.
 *   - the opening delimiter is "--boundary" at offset 0 or CRLF "--boundary" after a
 *     preamble; the preamble and the epilogue (after the close delimiter's line) are
 *     ignored. A close delimiter before any part is refused (RFC 2046: at least one part).
 *   - a part's header block: lines ending in CRLF up to an empty line, at most
 *     max_part_header_bytes bytes (the empty line included) and max_part_headers lines;
 *     refused: obs-fold (a line starting with SP / HTAB), a line without ':', a name that
 *     is not a token (so no SP before the colon), NUL or another control byte but HTAB,
 *     bytes above 0x7f in a name (allowed in values: obs-text). The empty line's CRLF may
 *     also be the next delimiter's (RFC 2046 BNF: body-part := MIME-part-headers
 *     [CRLF *OCTET]): "Content-Type: x" CRLF CRLF "--b" is a part with an empty body. A
 *     part may have no headers at all (delimiter line, then CRLF).
 *   - part headers, names case-insensitive: Content-Type and Content-Location are kept
 *     (trimmed of SP / HTAB; over the field's size refused); Content-Transfer-Encoding
 *     must be binary, 8bit or 7bit (case-insensitive; others, base64 included, refused);
 *     Content-Length, when present, must be one decimal number equal to the body's length
 *     (a peer that trusts it must not read another body); each of these four given twice
 *     is refused; other headers (MIME-Version, Content-ID, ...) are ignored.
 *   - more than max_parts parts, a body that ends inside a part or its delimiter line
 *     (truncated), or no opening delimiter at all are refused.
 * A refusal is HDX_E_INVAL with *why one of the fixed texts below (never input bytes) and
 * *offset the body offset of the byte at fault; it is sticky (the reader returns it again).
 * Writing. hdx_mp_out is a growable buffer with a maximum; the boundary is the caller's (a
 * fresh random one per answer). Growth copies into a new block and wipes the old one (a
 * realloc could leave PHI in freed memory); hdx_mp_out_free wipes and frees. A write that
 * fails leaves the buffer as it was. The writer refuses (HDX_E_INVAL) an invalid boundary, a
 * header value with a control byte or SP / HTAB at either end or over the reader's field
 * size, and a body that holds "--" boundary at its start or after any LF, so that whatever it
 * writes any reader reads back as exactly these parts.
 * Thread: any (a reader and an out buffer are the caller's values). */
#ifndef HDX_PROTO_MULTIPART_H
#define HDX_PROTO_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define HDX_MP_BOUNDARY_MAX 70

struct hdx_mp_ctype { /* a parsed Content-Type header value */
    char media[128];  /* type/subtype, lower-cased, e.g. "multipart/related" */
    char boundary[HDX_MP_BOUNDARY_MAX + 1]; /* multipart media only; "" otherwise */
    char type[128];           /* type= (multipart/related's root type), lower-cased, "" if absent */
    char start[256];          /* start= as sent (a Content-ID); "" if absent */
    char transfer_syntax[65]; /* transfer-syntax= (PS3.18 8.7.3.5), a UID; "" if absent */
};

/* Parses a Content-Type value (RFC 9110 8.3, 5.6.6; RFC 2045):
 *   OWS token "/" token *( OWS ";" OWS [ token "=" ( token / quoted-string ) ] ) OWS
 * Parameter names are case-insensitive; a quoted-string may hold quoted-pairs ("\x"); no
 * whitespace around "="; empty parameters (";;", a trailing ";") are allowed, as RFC 9110's
 * grammar allows them; unknown parameters are ignored, but any parameter given twice is
 * refused; at most 16 parameters, names up to 64 bytes, values up to 1024 (and each kept one
 * up to its field). type= must be a type/subtype; transfer-syntax= digits and dots. For a
 * "multipart/" media the boundary is required and must be 1-70 bchars not ending in SP
 * (RFC 2046 5.1.1); for other media boundary= is ignored like any unknown parameter.
 * Returns HDX_OK, or HDX_E_INVAL with *why a fixed text and *ct all empty strings. */
int hdx_mp_content_type(const char *value, struct hdx_mp_ctype *ct, const char **why);

/* 1 when b is a valid RFC 2046 boundary (1-70 bchars, not ending in SP), else 0. */
int hdx_mp_boundary_ok(const char *b);

struct hdx_mp_limits {
    size_t max_parts;             /* parts in one body */
    size_t max_part_header_bytes; /* one part's header block, its empty line included */
    size_t max_part_headers;      /* header lines in one part */
};
/* Defaults: 1000 parts, 8192 header bytes, 16 headers. */
void hdx_mp_limits_default(struct hdx_mp_limits *l);

struct hdx_mp_part {
    char content_type[256];     /* the part's Content-Type as sent, trimmed; "" if absent */
    char content_location[512]; /* trimmed; "" if absent */
    const uint8_t *body;        /* borrows the caller's buffer; never NULL after a 1 */
    size_t len;
};

struct hdx_mp_reader { /* the caller's; fields are private to multipart.c */
    const uint8_t *buf;
    size_t len;
    size_t pos; /* where the next part's delimiter line ends (after the opening one) */
    char boundary[HDX_MP_BOUNDARY_MAX + 1];
    size_t blen;
    struct hdx_mp_limits lim;
    size_t count; /* parts returned */
    int state;    /* 0 before the opening delimiter, 1 between parts, 2 done, 3 refused */
    const char *why;
    size_t err_off;
};

/* Starts reading body[0..len) with boundary (from hdx_mp_content_type; copied) under lim
 * (NULL: the defaults). Cannot fail: an invalid boundary makes the first hdx_mp_next refuse. */
void hdx_mp_begin(struct hdx_mp_reader *r, const uint8_t *body, size_t len, const char *boundary,
                  const struct hdx_mp_limits *lim);

/* The next part: 1 (*p filled), 0 (the close delimiter was reached: no more parts; *p
 * zeroed), or HDX_E_INVAL with *why and *offset (*p zeroed). why and offset may be NULL. */
int hdx_mp_next(struct hdx_mp_reader *r, struct hdx_mp_part *p, const char **why, size_t *offset);

/* The parts returned so far. */
size_t hdx_mp_count(const struct hdx_mp_reader *r);

/* ---------- writing ---------- */

struct hdx_mp_out {
    uint8_t *buf; /* owned; NULL until the first write */
    size_t len, cap;
    size_t max; /* len never exceeds it */
};

/* An empty buffer that may grow to max bytes. */
void hdx_mp_out_init(struct hdx_mp_out *o, size_t max);
/* Wipes (sodium_memzero) and frees the buffer; o is empty again (same max). NULL is fine. */
void hdx_mp_out_free(struct hdx_mp_out *o);

/* Appends one part: its delimiter line ("--" boundary CRLF for the first write into an empty
 * buffer, CRLF "--" boundary CRLF after), "Content-Type: " content_type CRLF (omitted when
 * content_type is NULL or ""), "Content-Location: " content_location CRLF (when not NULL or
 * ""), CRLF, then the body bytes. HDX_OK, HDX_E_INVAL (see the top), HDX_E_TOOBIG (over
 * max), HDX_E_NOMEM; on failure nothing is appended. */
int hdx_mp_write_part(struct hdx_mp_out *o, const char *boundary, const char *content_type,
                      const char *content_location, const uint8_t *body, size_t len);
/* Appends the close delimiter CRLF "--" boundary "--" CRLF. Same returns; HDX_E_INVAL too
 * when the buffer is empty (a multipart body has at least one part). */
int hdx_mp_write_end(struct hdx_mp_out *o, const char *boundary);

#endif
