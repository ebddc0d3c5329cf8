/* catalog: what C-FIND searches: every stored DICOM instance's query keys, in UTF-8, grouped
 * patient > study > series > instance, and the matching of a C-FIND identifier's keys
 * (dicom/match.h) at one query level. Pure (no I/O): net/dicom_session.c fills it from the
 * log when hdxd starts and from each C-STORE once it is durable. A newer record of the same
 * SOP Instance UID (a changed re-send) replaces the older one's keys, also when its study or
 * series changed; an entity with no instance left is not found.
 * Keys of the query level and above are matched (those above against the entity's parent:
 * a SERIES query's Study Instance UID against the series' study); the caller drops keys of
 * levels below the query's. PATIENT-level attributes of a study, series or instance are the
 * ones its study was stored with; at PATIENT level they are the patient's newest instance's.
 * A patient is its Patient ID (0010,0020).
 * The values are PHI: they live in memory only, and hdx_dcat_free wipes them. Lookups by UID
 * go through hash tables keyed with a random SipHash key (libsodium), so no sender can pick
 * UIDs that collide. Thread: one at a time. */
#ifndef HDX_DICOM_CATALOG_H
#define HDX_DICOM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/dataset.h"
#include "dicom/match.h"

enum hdx_dcat_level {
    HDX_DCAT_PATIENT = 1,
    HDX_DCAT_STUDY,
    HDX_DCAT_SERIES,
    HDX_DCAT_IMAGE,
};

/* An attribute C-FIND can match or return. */
struct hdx_dcat_attr {
    uint16_t group, element;
    const char *vr; /* for answers in an explicit-VR syntax */
    enum hdx_dmatch_vr match;
    enum hdx_dcat_level level;
    const char *keyword;
    int field; /* catalog.c's own index */
};

/* The attribute of a tag, or NULL when hdx neither matches nor returns it. */
const struct hdx_dcat_attr *hdx_dcat_attr_find(uint16_t group, uint16_t element);
/* The i-th of the table, in tag order (NULL past its end): for the conformance statement's
 * list and for tests. */
const struct hdx_dcat_attr *hdx_dcat_attr_at(size_t i);
/* "PATIENT", "STUDY", "SERIES", "IMAGE" to a level (0 when it is none of them). */
enum hdx_dcat_level hdx_dcat_level_parse(const char *s);

struct hdx_dcat;

int hdx_dcat_new(struct hdx_dcat **out); /* HDX_OK or HDX_E_NOMEM */
void hdx_dcat_free(struct hdx_dcat *c);  /* NULL is fine */

#define HDX_DCAT_TOKEN_LEN 16 /* a patient's blind token (crypto/keys.h HDX_BLIND_LEN) */

/* Adds (or replaces, by SOP Instance UID) the instance of record seq, whose patient's blind
 * token (the record header's) is patient (NULL: none), for the policy's consent directives at
 * find time. k's values are as
 * hdx_dcm_extract gives them, in k->charset; they are converted to UTF-8 here, and a value
 * that does not convert is kept as "" (*lossy set; may be NULL). A record older than the one
 * already held for the UID changes nothing. HDX_OK, HDX_E_INVAL (no SOP Instance, Study or
 * Series Instance UID), HDX_E_NOMEM (the catalogue is unchanged). */
int hdx_dcat_add(struct hdx_dcat *c, const struct hdx_dcm_keys *k, uint64_t seq,
                 const uint8_t *patient, int *lossy);

/* Entities with at least one instance, at a level. */
size_t hdx_dcat_count(const struct hdx_dcat *c, enum hdx_dcat_level level);

/* One query key: the attribute and its compiled key; nm > 1 for a multi-valued key, which
 * matches when any of its values does (hdx accepts one only for ModalitiesInStudy). */
struct hdx_dcat_key {
    const struct hdx_dcat_attr *attr;
    const struct hdx_dmatch *m;
    size_t nm;
};

/* Who may see a match: admit(arg, token) is asked for each entity every key matched, with
 * its patient's blind token (the study's newest instance's; the patient's at PATIENT level;
 * NULL when it has none), and returns 1 to keep it; 0 withholds it (counted in *withheld). */
struct hdx_dcat_admit {
    int (*admit)(void *arg, const uint8_t *patient);
    void *arg;
};

/* The ids of the entities at level that every key matches and admit (NULL: everyone) keeps,
 * oldest first, into *ids (malloc'd, the caller's; NULL when *n is 0). At most max (0: no
 * limit) are collected; *more is set when there were more. withheld may be NULL. HDX_OK or
 * HDX_E_NOMEM. */
int hdx_dcat_find(const struct hdx_dcat *c, enum hdx_dcat_level level,
                  const struct hdx_dcat_key *keys, size_t nkeys, const struct hdx_dcat_admit *admit,
                  size_t max, uint32_t **ids, size_t *n, int *more, size_t *withheld);

/* The value of a for the entity id at level (from the entity's study or patient for a
 * higher level's attribute), UTF-8: a stored string, or written into buf for the counts and
 * Modalities in Study (backslash-separated). "" when absent, when a is of a level below
 * level, or when id is not an entity. The pointer is valid until the next add. */
const char *hdx_dcat_value(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id,
                           const struct hdx_dcat_attr *a, char *buf, size_t cap);

/* The patient token that decides whether entity id at level may be shown (as find's admit is
 * asked with it; NULL when none), and the seq of the record its values are from (0 when id is
 * not an entity). */
const uint8_t *hdx_dcat_token(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id);
uint64_t hdx_dcat_seq(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id);

/* The records (seqs, oldest first) of the instances under study, under series within it when
 * series is not NULL, and only instance within that when instance is not NULL; *seqs is
 * malloc'd, the caller's (NULL when *n is 0). A series or instance that exists but not under
 * the given study (or series) is not found. At most max (0: no limit); *more set past it.
 * HDX_OK or HDX_E_NOMEM. */
int hdx_dcat_instances(const struct hdx_dcat *c, const char *study, const char *series,
                       const char *instance, size_t max, uint64_t **seqs, size_t *n, int *more);

#endif
