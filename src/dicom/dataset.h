/* dataset: the DICOM data-set walker (PS3.5 section 7), pure (no I/O): it walks the elements
 * of a data set in Implicit VR Little Endian, Explicit VR Little Endian or Explicit VR Big
 * Endian, defined and undefined lengths, sequences and items (nested up to a limit), odd
 * lengths and padding; extracts the keys hdx indexes; reads and writes the Part 10 file
 * header (preamble, "DICM", group 0002); inflates a Deflated Explicit VR Little Endian data
 * set into a bounded buffer (zlib).
 * Untrusted input is read only through dicom/cursor.h, under explicit limits
 * (struct hdx_ds_limits). A refusal names a fixed reason and the offset, never input bytes.
 * Encapsulated pixel data (undefined-length (7FE0,0010) with items) is walked as items and
 * never decoded. Thread: any. */
#ifndef HDX_DICOM_DATASET_H
#define HDX_DICOM_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define HDX_DS_UNDEFINED 0xFFFFFFFFu
#define HDX_DS_UID_MAX 64

enum hdx_ds_syntax {
    HDX_DS_IMPLICIT_LE = 1,
    HDX_DS_EXPLICIT_LE = 2,
    HDX_DS_EXPLICIT_BE = 3,
};

struct hdx_ds_limits {
    unsigned max_depth;  /* sequence nesting (a top-level element is depth 0) */
    uint32_t max_value;  /* the largest defined element length */
    size_t max_elements; /* elements in the whole data set, nested ones included */
};
/* Defaults: depth 32, value 1 GiB, 1,000,000 elements (the instance size limit is the
 * caller's: the walker never reads more than it is given). */
void hdx_ds_limits_default(struct hdx_ds_limits *l);

struct hdx_ds_elem {
    uint16_t group, element;
    char vr[3];           /* explicit: as found; implicit: from the built-in dictionary, "UN"
                           * for a tag it does not know; "" for item and delimiter tags */
    uint32_t length;      /* as encoded; HDX_DS_UNDEFINED for undefined */
    const uint8_t *value; /* the value bytes (NULL for SQ, items and undefined lengths) */
    size_t value_len;
    unsigned depth; /* 0 at top level; +1 inside each sequence item */
    size_t offset;  /* of the tag, from the start of the walked bytes */
};

struct hdx_ds_error {
    const char *why; /* fixed text */
    size_t offset;
};

/* The visitor: return 0 to go on, 1 to stop the walk early (hdx_ds_walk then returns
 * HDX_OK), a negative hdx_err to fail it (returned as is). */
typedef int (*hdx_ds_visit)(void *arg, const struct hdx_ds_elem *e);

/* Walks p[0..n) from its first element to its end. HDX_E_INVAL (err set) for a truncated
 * element, a length that overruns its parent or the limits, a bad VR in explicit syntax, an
 * item tag outside a sequence, a delimiter that closes nothing, nesting past max_depth, more
 * than max_elements elements. Explicit VR: an unknown VR of two upper-case letters is read
 * with the 2-byte length form; anything else is refused. */
int hdx_ds_walk(const uint8_t *p, size_t n, enum hdx_ds_syntax syntax,
                const struct hdx_ds_limits *lim, hdx_ds_visit visit, void *arg,
                struct hdx_ds_error *err);

/* The keys hdx indexes, from top-level elements only. Values are the bytes as encoded with
 * trailing spaces and NULs removed (so PN and LO bytes stay in the data set's character set);
 * a value longer than its field is refused (HDX_E_INVAL "value too long"), except a date in
 * the retired ACR-NEMA form YYYY.MM.DD, which becomes YYYYMMDD. "" when absent. */
struct hdx_dcm_keys {
    char charset[65];                      /* (0008,0005), raw, backslash-separated */
    char sop_class[HDX_DS_UID_MAX + 1];    /* (0008,0016) */
    char sop_instance[HDX_DS_UID_MAX + 1]; /* (0008,0018) */
    char study_date[9], study_time[17];    /* (0008,0020), (0008,0030) */
    char series_date[9];                   /* (0008,0021) */
    char accession[17];                    /* (0008,0050) */
    char modality[17];                     /* (0008,0060) */
    char referring[325];                   /* (0008,0090) PN */
    char study_description[65];            /* (0008,1030) */
    char patient_name[325];                /* (0010,0010) PN: up to 3 groups of 64 chars */
    char patient_id[65];                   /* (0010,0020) */
    char birth_date[9];                    /* (0010,0030) */
    char sex[17];                          /* (0010,0040) */
    char study_uid[HDX_DS_UID_MAX + 1];    /* (0020,000D) */
    char series_uid[HDX_DS_UID_MAX + 1];   /* (0020,000E) */
    char study_id[17];                     /* (0020,0010) */
    char series_number[13];                /* (0020,0011) IS */
    char instance_number[13];              /* (0020,0013) IS */
};
int hdx_dcm_extract(const uint8_t *p, size_t n, enum hdx_ds_syntax syntax,
                    const struct hdx_ds_limits *lim, struct hdx_dcm_keys *k,
                    struct hdx_ds_error *err);

/* A Part 10 file: 128-byte preamble, "DICM", the group 0002 elements (Explicit VR LE). */
struct hdx_dcm_file {
    char ts[HDX_DS_UID_MAX + 1];           /* (0002,0010) */
    char sop_class[HDX_DS_UID_MAX + 1];    /* (0002,0002) */
    char sop_instance[HDX_DS_UID_MAX + 1]; /* (0002,0003) */
    size_t dataset_off;                    /* where the data set starts */
};
/* HDX_E_INVAL (err set) when there is no "DICM" at 128, the meta group is truncated or
 * malformed, or it has no transfer syntax. */
int hdx_dcm_file_parse(const uint8_t *p, size_t n, struct hdx_dcm_file *f,
                       struct hdx_ds_error *err);
/* Writes preamble (zeros), "DICM" and group 0002 (group length, version 00 01, media storage
 * SOP class and instance, transfer syntax, implementation class UID and version name, source
 * AE title when not "") for a data set received over the network. Deterministic: the same
 * arguments give the same bytes. Returns the length, or 0 when cap is too small or an
 * argument is too long. */
size_t hdx_dcm_meta_build(const char *sop_class, const char *sop_instance, const char *ts,
                          const char *impl_class, const char *impl_version, const char *source_ae,
                          uint8_t *out, size_t cap);

/* Inflates a Deflated Explicit VR Little Endian data set (raw deflate, RFC 1951) into a
 * malloc'd buffer of at most max_out bytes: HDX_E_TOOBIG past it, HDX_E_INVAL for a bad
 * stream. *out is the caller's to free. */
int hdx_ds_inflate(const uint8_t *in, size_t len, size_t max_out, uint8_t **out, size_t *out_len);

/* The syntax of a transfer syntax UID's data set encoding, for the walker: Implicit VR LE
 * for 1.2.840.10008.1.2, Explicit VR BE for 1.2.840.10008.1.2.2, Explicit VR LE for every
 * other (the encapsulated ones included, and the deflated one once inflated). *deflated is set
 * for 1.2.840.10008.1.2.1.99. */
enum hdx_ds_syntax hdx_ds_syntax_of(const char *ts_uid, int *deflated);

#endif
