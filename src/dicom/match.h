/* match: C-FIND attribute matching (PS3.4 C.2.2.2), pure: one query key against one stored
 * value, both already converted to UTF-8 (dicom/charset.h). Kinds of matching: universal
 * (empty key), single value, wildcard (`*`, `?`; not for DA, TM, DT, UI), list of UIDs
 * (backslash-separated, UI only), range (DA, TM, DT: "A-B", "-B", "A-"; a single value is a
 * range of one), and the case-insensitive PN rule hdx applies (ASCII letters fold; other
 * characters compare exactly; each of the three PN component groups (=) is matched on its
 * own when the key has them). A key that is not well formed for its VR (a mangled date such as
 * "2021-13-45" or "20210115-2021", a range on a UI, a wildcard in a date) is refused at compile
 * time with a fixed reason: the SCP answers the query with an error, never with everything.
 * Thread: any. */
#ifndef HDX_DICOM_MATCH_H
#define HDX_DICOM_MATCH_H

#include <stddef.h>
#include <stdint.h>

enum hdx_dmatch_vr {
    HDX_DMATCH_TEXT = 1, /* AE, CS, LO, SH, LT, ST, UT, UC, IS, DS: single value or wildcard */
    HDX_DMATCH_PN,       /* person name: wildcard, case-insensitive on ASCII letters */
    HDX_DMATCH_UI,       /* UID: single value or list */
    HDX_DMATCH_DA,       /* date YYYYMMDD: single or range */
    HDX_DMATCH_TM,       /* time HHMMSS.FFFFFF (any prefix): single or range */
    HDX_DMATCH_DT,       /* date-time YYYYMMDDHHMMSS.FFFFFF&ZZXX (prefixes): single or range */
};

#define HDX_DMATCH_KEY_MAX 1024 /* bytes of one TEXT or PN key (a UI list: HDX_DMATCH_UIDS_MAX) */
#define HDX_DMATCH_UIDS_MAX 128 /* UIDs in one list */

struct hdx_dmatch {
    enum hdx_dmatch_vr vr;
    int universal; /* empty key: everything matches (the attribute is returned) */
    char key[HDX_DMATCH_KEY_MAX + 1]; /* TEXT, PN: the key, trailing spaces removed */
    int wildcard;                     /* TEXT, PN: holds * or ? */
    /* UI: the list */
    size_t nuids;
    char uids[HDX_DMATCH_UIDS_MAX][65];
    /* DA, TM, DT: inclusive bounds, normalised to comparable strings ("" = open) */
    char lo[32], hi[32];
};

/* Compiles a query key (UTF-8, as received after character-set conversion, trailing spaces
 * removed by the caller or here). HDX_OK, or HDX_E_INVAL with *why a fixed text. */
int hdx_dmatch_compile(enum hdx_dmatch_vr vr, const char *key, size_t len, struct hdx_dmatch *m,
                       const char **why);
/* 1 when value (UTF-8, trailing spaces removed; "" when the instance has no such attribute)
 * matches. An empty stored value matches only a universal key (PS3.4 C.2.2.2.1: a single
 * value or wildcard key does not match an empty value, except "*" which matches anything). */
int hdx_dmatch_eval(const struct hdx_dmatch *m, const char *value, size_t len);

#endif
