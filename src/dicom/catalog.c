/* catalog: the C-FIND catalogue (see catalog.h for the contract).
 *
 * DESIGN: four arrays of entities (patients, studies, series, instances) that only grow, so an
 * id stays an entity for the catalogue's life and a C-FIND can hold ids while it answers; an
 * entity whose last instance moved away is kept with a count of zero and skipped. Each entity
 * holds its strings (UTF-8, malloc'd, wiped when replaced or freed) and its counts, which add
 * keeps right as instances move: a changed re-send may name another series, a series another
 * study, a study another patient. Everything add may need (strings, array room, hash slots) is
 * allocated before anything is changed, so HDX_E_NOMEM leaves the catalogue as it was.
 * A find is a scan of one array with every key compiled once (dicom/match.h): at 100,000
 * studies that is a few milliseconds, which is why there is no per-key index.
 * Character sets: a value is converted from its instance's Specific Character Set. A value in
 * the default repertoire that is not ASCII is read as ISO_IR 100, as DCMTK and Orthanc do by
 * default: old modalities write Latin-1 names without declaring it. */
#include "dicom/catalog.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/charset.h"

/* ---------- the attribute table ---------- */

enum field {
    /* patient */
    F_P_NAME,
    F_P_ID,
    F_P_BIRTH,
    F_P_SEX,
    F_P_NSTUDIES,
    /* study */
    F_S_DATE,
    F_S_TIME,
    F_S_ACCESSION,
    F_S_MODALITIES,
    F_S_REFERRING,
    F_S_DESC,
    F_S_UID,
    F_S_ID,
    F_S_NSERIES,
    F_S_NINST,
    /* series */
    F_R_DATE,
    F_R_MODALITY,
    F_R_UID,
    F_R_NUMBER,
    F_R_NINST,
    /* instance */
    F_I_CLASS,
    F_I_UID,
    F_I_NUMBER,
};

static const struct hdx_dcat_attr attrs[] = {
    {0x0008, 0x0016, "UI", HDX_DMATCH_UI, HDX_DCAT_IMAGE, "SOPClassUID", F_I_CLASS},
    {0x0008, 0x0018, "UI", HDX_DMATCH_UI, HDX_DCAT_IMAGE, "SOPInstanceUID", F_I_UID},
    {0x0008, 0x0020, "DA", HDX_DMATCH_DA, HDX_DCAT_STUDY, "StudyDate", F_S_DATE},
    {0x0008, 0x0021, "DA", HDX_DMATCH_DA, HDX_DCAT_SERIES, "SeriesDate", F_R_DATE},
    {0x0008, 0x0030, "TM", HDX_DMATCH_TM, HDX_DCAT_STUDY, "StudyTime", F_S_TIME},
    {0x0008, 0x0050, "SH", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "AccessionNumber", F_S_ACCESSION},
    {0x0008, 0x0060, "CS", HDX_DMATCH_TEXT, HDX_DCAT_SERIES, "Modality", F_R_MODALITY},
    {0x0008, 0x0061, "CS", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "ModalitiesInStudy", F_S_MODALITIES},
    {0x0008, 0x0090, "PN", HDX_DMATCH_PN, HDX_DCAT_STUDY, "ReferringPhysicianName", F_S_REFERRING},
    {0x0008, 0x1030, "LO", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "StudyDescription", F_S_DESC},
    {0x0010, 0x0010, "PN", HDX_DMATCH_PN, HDX_DCAT_PATIENT, "PatientName", F_P_NAME},
    {0x0010, 0x0020, "LO", HDX_DMATCH_TEXT, HDX_DCAT_PATIENT, "PatientID", F_P_ID},
    {0x0010, 0x0030, "DA", HDX_DMATCH_DA, HDX_DCAT_PATIENT, "PatientBirthDate", F_P_BIRTH},
    {0x0010, 0x0040, "CS", HDX_DMATCH_TEXT, HDX_DCAT_PATIENT, "PatientSex", F_P_SEX},
    {0x0020, 0x000D, "UI", HDX_DMATCH_UI, HDX_DCAT_STUDY, "StudyInstanceUID", F_S_UID},
    {0x0020, 0x000E, "UI", HDX_DMATCH_UI, HDX_DCAT_SERIES, "SeriesInstanceUID", F_R_UID},
    {0x0020, 0x0010, "SH", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "StudyID", F_S_ID},
    {0x0020, 0x0011, "IS", HDX_DMATCH_TEXT, HDX_DCAT_SERIES, "SeriesNumber", F_R_NUMBER},
    {0x0020, 0x0013, "IS", HDX_DMATCH_TEXT, HDX_DCAT_IMAGE, "InstanceNumber", F_I_NUMBER},
    {0x0020, 0x1200, "IS", HDX_DMATCH_TEXT, HDX_DCAT_PATIENT, "NumberOfPatientRelatedStudies",
     F_P_NSTUDIES},
    {0x0020, 0x1206, "IS", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "NumberOfStudyRelatedSeries",
     F_S_NSERIES},
    {0x0020, 0x1208, "IS", HDX_DMATCH_TEXT, HDX_DCAT_STUDY, "NumberOfStudyRelatedInstances",
     F_S_NINST},
    {0x0020, 0x1209, "IS", HDX_DMATCH_TEXT, HDX_DCAT_SERIES, "NumberOfSeriesRelatedInstances",
     F_R_NINST},
};
#define NATTRS (sizeof(attrs) / sizeof(attrs[0]))

const struct hdx_dcat_attr *hdx_dcat_attr_find(uint16_t group, uint16_t element)
{
    for (size_t i = 0; i < NATTRS; i++)
        if (attrs[i].group == group && attrs[i].element == element) return &attrs[i];
    return NULL;
}

const struct hdx_dcat_attr *hdx_dcat_attr_at(size_t i)
{
    return i < NATTRS ? &attrs[i] : NULL;
}

enum hdx_dcat_level hdx_dcat_level_parse(const char *s)
{
    static const char *const names[] = {"PATIENT", "STUDY", "SERIES", "IMAGE"};
    for (size_t i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) return (enum hdx_dcat_level)(HDX_DCAT_PATIENT + i);
    return 0;
}

/* ---------- entities ---------- */

/* Each entity's strings, by index. */
enum { PV_NAME, PV_ID, PV_BIRTH, PV_SEX, PV_N };
enum { SV_DATE, SV_TIME, SV_ACCESSION, SV_REFERRING, SV_DESC, SV_UID, SV_ID, SV_N };
enum { RV_DATE, RV_MODALITY, RV_UID, RV_NUMBER, RV_N };
enum { IV_CLASS, IV_UID, IV_NUMBER, IV_N };

struct patient {
    char *v[PV_N];
    uint8_t token[HDX_DCAT_TOKEN_LEN];
    int has_token;
    uint64_t seq; /* of the instance its strings are from */
    uint32_t nstudies;
};

struct study {
    char *v[SV_N];
    char *pv[PV_N]; /* its patient's attributes as the study has them */
    uint8_t token[HDX_DCAT_TOKEN_LEN];
    int has_token;
    uint64_t seq;
    uint32_t patient;
    uint32_t nseries, ninst;
    uint32_t *series; /* every series that was ever in it (some may be empty now) */
    size_t nser, capser;
};

struct series {
    char *v[RV_N];
    uint64_t seq;
    uint32_t study;
    uint32_t ninst;
};

struct instance {
    char *v[IV_N];
    uint64_t seq;
    uint32_t series;
};

/* An open-addressing table from a string (owned by an entity) to that entity's id. */
struct slot {
    const char *key;
    uint32_t id;
};

struct smap {
    struct slot *s;
    size_t cap, n; /* cap is a power of two; n <= cap / 2 */
};

/* Strings live in chunks filled in the order they are added, so a scan of studies in id order
 * reads their strings nearly in address order: with one malloc per string, every value a scan
 * touched was a cache miss of its own (measured: 68 % of a 100,000-study find was strlen
 * waiting on memory). A replaced string is wiped where it is; its bytes are not reused. */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};
#define CHUNK_SIZE (1u << 20)

struct hdx_dcat {
    struct chunk *chunks; /* the newest first */
    struct patient *pat;
    struct study *stu;
    struct series *ser;
    struct instance *ins;
    size_t npat, nstu, nser, nins;
    size_t cpat, cstu, cser, cins;
    struct smap mpat, mstu, mser, mins;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

static uint64_t hash(const struct hdx_dcat *c, const char *s)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)s, strlen(s), c->hkey);
    memcpy(&h, out, sizeof(h));
    return h;
}

static int smap_get(const struct hdx_dcat *c, const struct smap *m, const char *key, uint32_t *id)
{
    if (!m->cap) return 0;
    for (size_t i = hash(c, key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->s[i].key) return 0;
        if (strcmp(m->s[i].key, key) == 0) {
            *id = m->s[i].id;
            return 1;
        }
    }
}

static void smap_put_slot(const struct hdx_dcat *c, struct slot *s, size_t cap, const char *key,
                          uint32_t id)
{
    size_t i = hash(c, key) & (cap - 1);
    while (s[i].key)
        i = (i + 1) & (cap - 1);
    s[i].key = key;
    s[i].id = id;
}

/* Room for one more key, so that the put after it cannot fail. */
static int smap_reserve(const struct hdx_dcat *c, struct smap *m)
{
    if ((m->n + 1) * 2 <= m->cap) return HDX_OK;
    size_t cap = m->cap ? m->cap * 2 : 1024;
    struct slot *s = calloc(cap, sizeof(*s));
    if (!s) return HDX_E_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->s[i].key) smap_put_slot(c, s, cap, m->s[i].key, m->s[i].id);
    free(m->s);
    m->s = s;
    m->cap = cap;
    return HDX_OK;
}

static void smap_put(const struct hdx_dcat *c, struct smap *m, const char *key, uint32_t id)
{
    smap_put_slot(c, m->s, m->cap, key, id);
    m->n++;
}

static char *arena_dup(struct hdx_dcat *c, const char *s, size_t n)
{
    struct chunk *k = c->chunks;
    if (!k || k->cap - k->used < n + 1) {
        size_t cap = n + 1 > CHUNK_SIZE ? n + 1 : CHUNK_SIZE;
        if (!(k = malloc(sizeof(*k) + cap))) return NULL;
        k->used = 0;
        k->cap = cap;
        k->next = c->chunks;
        c->chunks = k;
    }
    char *p = k->data + k->used;
    memcpy(p, s, n);
    p[n] = '\0';
    k->used += n + 1;
    return p;
}

static void str_free(char *s)
{
    if (s) sodium_memzero(s, strlen(s)); /* the chunk is freed with the catalogue */
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        str_free(v[i]);
        v[i] = NULL;
    }
}

/* The new strings replace the old ones; *fresh is left all NULL (the entity owns them). The
 * string at index keep, when set, is the entity's hash key: equal to the new one by the
 * lookup that found the entity, and kept, since the table points at it. */
static void strs_take(char **dst, char **fresh, size_t n, int keep)
{
    for (size_t i = 0; i < n; i++) {
        if ((int)i == keep && dst[i]) continue; /* fresh[i] goes with fresh_free */
        str_free(dst[i]);
        dst[i] = fresh[i];
        fresh[i] = NULL;
    }
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return HDX_OK;
    size_t nc = *cap ? *cap * 2 : 256;
    void *q = realloc(*p, nc * size);
    if (!q) return HDX_E_NOMEM;
    memset((char *)q + *cap * size, 0, (nc - *cap) * size);
    *p = q;
    *cap = nc;
    return HDX_OK;
}

int hdx_dcat_new(struct hdx_dcat **out)
{
    if (sodium_init() < 0) return HDX_E_CRYPTO;
    struct hdx_dcat *c = calloc(1, sizeof(*c));
    if (!c) return HDX_E_NOMEM;
    randombytes_buf(c->hkey, sizeof(c->hkey));
    *out = c;
    return HDX_OK;
}

void hdx_dcat_free(struct hdx_dcat *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nstu; i++)
        free(c->stu[i].series);
    for (struct chunk *k = c->chunks, *next; k; k = next) {
        next = k->next;
        sodium_memzero(k->data, k->used);
        free(k);
    }
    free(c->pat);
    free(c->stu);
    free(c->ser);
    free(c->ins);
    free(c->mpat.s);
    free(c->mstu.s);
    free(c->mser.s);
    free(c->mins.s);
    sodium_memzero(c, sizeof(*c));
    free(c);
}

/* ---------- add ---------- */

/* A value in UTF-8, malloc'd; NULL only when out of memory. A value that does not convert is
 * "" and sets *lossy. */
static char *utf8_dup(struct hdx_dcat *c, struct hdx_charset *cs, struct hdx_charset *latin1,
                      const char *v, int *lossy)
{
    char buf[1024];
    size_t n = 0;
    int ascii = 1;
    for (const unsigned char *p = (const unsigned char *)v; *p && ascii; p++)
        ascii = *p < 0x80 && *p != 0x1B; /* ESC starts an ISO 2022 switch */
    if (ascii)
        return arena_dup(c, v, strlen(v)); /* the same in every set hdx reads, known or not */
    int rc = cs ? hdx_charset_to_utf8(cs, v, strlen(v), buf, sizeof(buf), &n) : HDX_E_INVAL;
    if (rc != HDX_OK && latin1)
        rc = hdx_charset_to_utf8(latin1, v, strlen(v), buf, sizeof(buf), &n);
    if (rc != HDX_OK) {
        *lossy = 1;
        return arena_dup(c, "", 0);
    }
    char *s = arena_dup(c, buf, n);
    sodium_memzero(buf, sizeof(buf));
    return s;
}

struct fresh {
    char *pat[PV_N], *spat[PV_N], *stu[SV_N], *ser[RV_N], *ins[IV_N];
};

static void fresh_free(struct fresh *f)
{
    strs_free(f->pat, PV_N);
    strs_free(f->spat, PV_N);
    strs_free(f->stu, SV_N);
    strs_free(f->ser, RV_N);
    strs_free(f->ins, IV_N);
}

static int fresh_make(struct hdx_dcat *c, struct fresh *f, const struct hdx_dcm_keys *k, int *lossy)
{
    struct hdx_charset *cs = NULL, *latin1 = NULL;
    const char *why;
    int rc = HDX_OK;
    memset(f, 0, sizeof(*f));
    if (hdx_charset_open(k->charset, &cs, &why) != HDX_OK) {
        cs = NULL; /* an unknown set: every non-ASCII value is lost, the UIDs still count */
        *lossy = 1;
    }
    if ((!cs || hdx_charset_is_utf8(cs)) && !k->charset[0] &&
        hdx_charset_open("ISO_IR 100", &latin1, &why) != HDX_OK)
        latin1 = NULL;
    const char *pv[PV_N] = {k->patient_name, k->patient_id, k->birth_date, k->sex};
    const char *sv[SV_N] = {k->study_date,        k->study_time, k->accession, k->referring,
                            k->study_description, k->study_uid,  k->study_id};
    const char *rv[RV_N] = {k->series_date, k->modality, k->series_uid, k->series_number};
    const char *iv[IV_N] = {k->sop_class, k->sop_instance, k->instance_number};
    for (size_t i = 0; i < PV_N; i++)
        if (!(f->pat[i] = utf8_dup(c, cs, latin1, pv[i], lossy)) ||
            !(f->spat[i] = arena_dup(c, f->pat[i], strlen(f->pat[i]))))
            rc = HDX_E_NOMEM;
    for (size_t i = 0; i < SV_N; i++)
        if (!(f->stu[i] = utf8_dup(c, cs, latin1, sv[i], lossy))) rc = HDX_E_NOMEM;
    for (size_t i = 0; i < RV_N; i++)
        if (!(f->ser[i] = utf8_dup(c, cs, latin1, rv[i], lossy))) rc = HDX_E_NOMEM;
    for (size_t i = 0; i < IV_N; i++)
        if (!(f->ins[i] = utf8_dup(c, cs, latin1, iv[i], lossy))) rc = HDX_E_NOMEM;
    hdx_charset_close(cs);
    hdx_charset_close(latin1);
    if (rc != HDX_OK) fresh_free(f);
    return rc;
}

static int study_has_series(const struct study *s, uint32_t id)
{
    for (size_t i = 0; i < s->nser; i++)
        if (s->series[i] == id) return 1;
    return 0;
}

/* Counts as an instance leaves its series (and maybe its study, and the study its patient). */
static void instance_detach(struct hdx_dcat *c, const struct instance *in)
{
    struct series *r = &c->ser[in->series];
    struct study *s = &c->stu[r->study];
    if (--r->ninst == 0) s->nseries--;
    if (--s->ninst == 0) c->pat[s->patient].nstudies--;
}

static void instance_attach(struct hdx_dcat *c, struct instance *in, uint32_t series)
{
    struct series *r = &c->ser[series];
    struct study *s = &c->stu[r->study];
    in->series = series;
    if (r->ninst++ == 0) s->nseries++;
    if (s->ninst++ == 0) c->pat[s->patient].nstudies++;
}

static void token_set(uint8_t *dst, int *has, const uint8_t *patient)
{
    *has = patient != NULL;
    if (patient)
        memcpy(dst, patient, HDX_DCAT_TOKEN_LEN);
    else
        memset(dst, 0, HDX_DCAT_TOKEN_LEN);
}

int hdx_dcat_add(struct hdx_dcat *c, const struct hdx_dcm_keys *k, uint64_t seq,
                 const uint8_t *patient, int *lossy)
{
    int dummy = 0;
    if (!lossy) lossy = &dummy;
    if (!k->sop_instance[0] || !k->study_uid[0] || !k->series_uid[0]) return HDX_E_INVAL;
    uint32_t iid = 0, sid = 0, rid = 0, pid = 0;
    int have_i = smap_get(c, &c->mins, k->sop_instance, &iid);
    if (have_i && c->ins[iid].seq >= seq) return HDX_OK;
    struct fresh f;
    int rc = fresh_make(c, &f, k, lossy);
    if (rc != HDX_OK) return rc;
    int have_p = smap_get(c, &c->mpat, f.pat[PV_ID], &pid);
    int have_s = smap_get(c, &c->mstu, f.stu[SV_UID], &sid);
    int have_r = smap_get(c, &c->mser, f.ser[RV_UID], &rid);
    /* Room first: after this nothing fails. */
    if ((!have_p && (grow((void **)&c->pat, &c->cpat, c->npat, sizeof(*c->pat)) ||
                     smap_reserve(c, &c->mpat))) ||
        (!have_s && (grow((void **)&c->stu, &c->cstu, c->nstu, sizeof(*c->stu)) ||
                     smap_reserve(c, &c->mstu))) ||
        (!have_r && (grow((void **)&c->ser, &c->cser, c->nser, sizeof(*c->ser)) ||
                     smap_reserve(c, &c->mser))) ||
        (!have_i && (grow((void **)&c->ins, &c->cins, c->nins, sizeof(*c->ins)) ||
                     smap_reserve(c, &c->mins)))) {
        fresh_free(&f);
        return HDX_E_NOMEM;
    }
    if (!have_s) sid = (uint32_t)c->nstu;
    struct study *room = have_s ? &c->stu[sid] : &c->stu[c->nstu];
    uint32_t rid_next = have_r ? rid : (uint32_t)c->nser;
    if (!study_has_series(room, rid_next) &&
        grow((void **)&room->series, &room->capser, room->nser, sizeof(*room->series))) {
        fresh_free(&f);
        return HDX_E_NOMEM;
    }

    if (have_i) instance_detach(c, &c->ins[iid]);
    if (!have_p) {
        pid = (uint32_t)c->npat++;
        strs_take(c->pat[pid].v, f.pat, PV_N, PV_ID);
        c->pat[pid].seq = seq;
        token_set(c->pat[pid].token, &c->pat[pid].has_token, patient);
        smap_put(c, &c->mpat, c->pat[pid].v[PV_ID], pid);
    } else if (seq >= c->pat[pid].seq) {
        strs_take(c->pat[pid].v, f.pat, PV_N, PV_ID);
        c->pat[pid].seq = seq;
        token_set(c->pat[pid].token, &c->pat[pid].has_token, patient);
    }
    struct study *s = &c->stu[sid];
    if (!have_s) {
        c->nstu++;
        strs_take(s->v, f.stu, SV_N, SV_UID);
        strs_take(s->pv, f.spat, PV_N, -1);
        s->seq = seq;
        s->patient = pid;
        token_set(s->token, &s->has_token, patient);
        smap_put(c, &c->mstu, s->v[SV_UID], sid);
    } else if (seq >= s->seq) {
        strs_take(s->v, f.stu, SV_N, SV_UID);
        strs_take(s->pv, f.spat, PV_N, -1);
        s->seq = seq;
        token_set(s->token, &s->has_token, patient);
        if (s->patient != pid) { /* the study now names another patient */
            if (s->ninst) {
                c->pat[s->patient].nstudies--;
                c->pat[pid].nstudies++;
            }
            s->patient = pid;
        }
    }
    struct series *r;
    if (!have_r) {
        rid = (uint32_t)c->nser++;
        r = &c->ser[rid];
        strs_take(r->v, f.ser, RV_N, RV_UID);
        r->seq = seq;
        r->study = sid;
        smap_put(c, &c->mser, r->v[RV_UID], rid);
    } else {
        r = &c->ser[rid];
        if (seq >= r->seq) {
            strs_take(r->v, f.ser, RV_N, RV_UID);
            r->seq = seq;
        }
        if (r->study != sid) { /* the series moved to another study with its instances */
            struct study *old = &c->stu[r->study];
            if (r->ninst) {
                old->nseries--;
                old->ninst -= r->ninst;
                if (old->ninst == 0) c->pat[old->patient].nstudies--;
                if (s->ninst == 0) c->pat[s->patient].nstudies++;
                s->nseries++;
                s->ninst += r->ninst;
            }
            r->study = sid;
        }
    }
    if (!study_has_series(s, rid)) s->series[s->nser++] = rid;
    struct instance *in;
    if (!have_i) {
        iid = (uint32_t)c->nins++;
        in = &c->ins[iid];
        strs_take(in->v, f.ins, IV_N, IV_UID);
        smap_put(c, &c->mins, in->v[IV_UID], iid);
    } else {
        in = &c->ins[iid];
        strs_take(in->v, f.ins, IV_N, IV_UID);
    }
    in->seq = seq;
    instance_attach(c, in, rid);
    fresh_free(&f); /* what an older entity did not take */
    return HDX_OK;
}

size_t hdx_dcat_count(const struct hdx_dcat *c, enum hdx_dcat_level level)
{
    size_t n = 0;
    switch (level) {
    case HDX_DCAT_PATIENT:
        for (size_t i = 0; i < c->npat; i++)
            n += c->pat[i].nstudies > 0;
        return n;
    case HDX_DCAT_STUDY:
        for (size_t i = 0; i < c->nstu; i++)
            n += c->stu[i].ninst > 0;
        return n;
    case HDX_DCAT_SERIES:
        for (size_t i = 0; i < c->nser; i++)
            n += c->ser[i].ninst > 0;
        return n;
    case HDX_DCAT_IMAGE:
        return c->nins; /* an instance is never empty: a newer version replaces it in place */
    }
    return 0;
}

/* ---------- find ---------- */

static const char *count_str(uint32_t n, char *buf, size_t cap)
{
    snprintf(buf, cap, "%u", (unsigned)n);
    return buf;
}

/* Modalities in Study: each distinct modality of the study's non-empty series. */
static const char *modalities(const struct hdx_dcat *c, const struct study *s, char *buf,
                              size_t cap)
{
    size_t len = 0;
    if (!cap) return "";
    buf[0] = '\0';
    for (size_t i = 0; i < s->nser; i++) {
        const struct series *r = &c->ser[s->series[i]];
        const char *m = r->v[RV_MODALITY];
        size_t ml = strlen(m);
        if (!r->ninst || !ml) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) {
            const struct series *q = &c->ser[s->series[j]];
            seen = q->ninst && strcmp(q->v[RV_MODALITY], m) == 0;
        }
        if (seen || len + ml + 2 > cap) continue;
        if (len) buf[len++] = '\\';
        memcpy(buf + len, m, ml + 1);
        len += ml;
    }
    return buf;
}

const char *hdx_dcat_value(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id,
                           const struct hdx_dcat_attr *a, char *buf, size_t cap)
{
    if (!a || a->level > level) return "";
    const struct instance *in = NULL;
    const struct series *r = NULL;
    const struct study *s = NULL;
    const struct patient *p = NULL;
    switch (level) {
    case HDX_DCAT_IMAGE:
        if (id >= c->nins) return "";
        in = &c->ins[id];
        id = in->series;
        /* fall through */
    case HDX_DCAT_SERIES:
        if (id >= c->nser) return "";
        r = &c->ser[id];
        id = r->study;
        /* fall through */
    case HDX_DCAT_STUDY:
        if (id >= c->nstu) return "";
        s = &c->stu[id];
        break;
    case HDX_DCAT_PATIENT:
        if (id >= c->npat) return "";
        p = &c->pat[id];
        break;
    }
    switch ((enum field)a->field) {
    case F_P_NAME:
    case F_P_ID:
    case F_P_BIRTH:
    case F_P_SEX:
        return p ? p->v[a->field - F_P_NAME] : s->pv[a->field - F_P_NAME];
    case F_P_NSTUDIES:
        return count_str(p ? p->nstudies : c->pat[s->patient].nstudies, buf, cap);
    case F_S_DATE:
        return s->v[SV_DATE];
    case F_S_TIME:
        return s->v[SV_TIME];
    case F_S_ACCESSION:
        return s->v[SV_ACCESSION];
    case F_S_MODALITIES:
        return modalities(c, s, buf, cap);
    case F_S_REFERRING:
        return s->v[SV_REFERRING];
    case F_S_DESC:
        return s->v[SV_DESC];
    case F_S_UID:
        return s->v[SV_UID];
    case F_S_ID:
        return s->v[SV_ID];
    case F_S_NSERIES:
        return count_str(s->nseries, buf, cap);
    case F_S_NINST:
        return count_str(s->ninst, buf, cap);
    case F_R_DATE:
        return r->v[RV_DATE];
    case F_R_MODALITY:
        return r->v[RV_MODALITY];
    case F_R_UID:
        return r->v[RV_UID];
    case F_R_NUMBER:
        return r->v[RV_NUMBER];
    case F_R_NINST:
        return count_str(r->ninst, buf, cap);
    case F_I_CLASS:
        return in->v[IV_CLASS];
    case F_I_UID:
        return in->v[IV_UID];
    case F_I_NUMBER:
        return in->v[IV_NUMBER];
    }
    return "";
}

/* One key against Modalities in Study: any of the study's modalities against any key value. */
static int modalities_match(const struct hdx_dcat *c, const struct study *s,
                            const struct hdx_dcat_key *k)
{
    for (size_t i = 0; i < s->nser; i++) {
        const struct series *r = &c->ser[s->series[i]];
        if (!r->ninst) continue;
        for (size_t j = 0; j < k->nm; j++)
            if (hdx_dmatch_eval(&k->m[j], r->v[RV_MODALITY], strlen(r->v[RV_MODALITY]))) return 1;
    }
    return 0;
}

static int entity_alive(const struct hdx_dcat *c, enum hdx_dcat_level level, size_t i)
{
    switch (level) {
    case HDX_DCAT_PATIENT:
        return c->pat[i].nstudies > 0;
    case HDX_DCAT_STUDY:
        return c->stu[i].ninst > 0;
    case HDX_DCAT_SERIES:
        return c->ser[i].ninst > 0;
    case HDX_DCAT_IMAGE:
        return 1;
    }
    return 0;
}

static int entity_matches(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id,
                          const struct hdx_dcat_key *keys, size_t nkeys)
{
    char buf[256];
    for (size_t k = 0; k < nkeys; k++) {
        const struct hdx_dcat_key *key = &keys[k];
        if (key->attr->level > level || !key->nm) continue;
        if (key->nm == 1 && key->m[0].universal) continue;
        if (key->attr->field == F_S_MODALITIES) {
            uint32_t sid = level == HDX_DCAT_STUDY    ? id
                           : level == HDX_DCAT_SERIES ? c->ser[id].study
                           : level == HDX_DCAT_IMAGE  ? c->ser[c->ins[id].series].study
                                                      : UINT32_MAX;
            if (sid == UINT32_MAX || !modalities_match(c, &c->stu[sid], key)) return 0;
            continue;
        }
        const char *v = hdx_dcat_value(c, level, id, key->attr, buf, sizeof(buf));
        int any = 0;
        for (size_t j = 0; j < key->nm && !any; j++)
            any = hdx_dmatch_eval(&key->m[j], v, strlen(v));
        if (!any) return 0;
    }
    return 1;
}

/* The patient token that decides whether the entity may be shown. */
static const uint8_t *entity_token(const struct hdx_dcat *c, enum hdx_dcat_level level, size_t i)
{
    const struct study *s;
    switch (level) {
    case HDX_DCAT_PATIENT:
        return c->pat[i].has_token ? c->pat[i].token : NULL;
    case HDX_DCAT_STUDY:
        s = &c->stu[i];
        break;
    case HDX_DCAT_SERIES:
        s = &c->stu[c->ser[i].study];
        break;
    default:
        s = &c->stu[c->ser[c->ins[i].series].study];
        break;
    }
    return s->has_token ? s->token : NULL;
}

int hdx_dcat_find(const struct hdx_dcat *c, enum hdx_dcat_level level,
                  const struct hdx_dcat_key *keys, size_t nkeys, const struct hdx_dcat_admit *admit,
                  size_t max, uint32_t **ids, size_t *n, int *more, size_t *withheld)
{
    size_t total = level == HDX_DCAT_PATIENT  ? c->npat
                   : level == HDX_DCAT_STUDY  ? c->nstu
                   : level == HDX_DCAT_SERIES ? c->nser
                   : level == HDX_DCAT_IMAGE  ? c->nins
                                              : 0;
    uint32_t *out = NULL;
    size_t cnt = 0, cap = 0;
    *ids = NULL;
    *n = 0;
    if (more) *more = 0;
    if (withheld) *withheld = 0;
    for (size_t i = 0; i < total; i++) {
        if (!entity_alive(c, level, i) || !entity_matches(c, level, (uint32_t)i, keys, nkeys))
            continue;
        if (admit && admit->admit && !admit->admit(admit->arg, entity_token(c, level, i))) {
            if (withheld) ++*withheld;
            continue;
        }
        if (max && cnt == max) {
            if (more) *more = 1;
            break;
        }
        if (grow((void **)&out, &cap, cnt, sizeof(*out)) != HDX_OK) {
            free(out);
            return HDX_E_NOMEM;
        }
        out[cnt++] = (uint32_t)i;
    }
    *ids = out;
    *n = cnt;
    return HDX_OK;
}

const uint8_t *hdx_dcat_token(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id)
{
    size_t total = level == HDX_DCAT_PATIENT  ? c->npat
                   : level == HDX_DCAT_STUDY  ? c->nstu
                   : level == HDX_DCAT_SERIES ? c->nser
                   : level == HDX_DCAT_IMAGE  ? c->nins
                                              : 0;
    return id < total ? entity_token(c, level, id) : NULL;
}

uint64_t hdx_dcat_seq(const struct hdx_dcat *c, enum hdx_dcat_level level, uint32_t id)
{
    switch (level) {
    case HDX_DCAT_PATIENT:
        return id < c->npat ? c->pat[id].seq : 0;
    case HDX_DCAT_STUDY:
        return id < c->nstu ? c->stu[id].seq : 0;
    case HDX_DCAT_SERIES:
        return id < c->nser ? c->ser[id].seq : 0;
    case HDX_DCAT_IMAGE:
        return id < c->nins ? c->ins[id].seq : 0;
    }
    return 0;
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int hdx_dcat_instances(const struct hdx_dcat *c, const char *study, const char *series,
                       const char *instance, size_t max, uint64_t **seqs, size_t *n, int *more)
{
    uint32_t sid, rid = UINT32_MAX, iid;
    uint64_t *out = NULL;
    size_t cnt = 0, cap = 0;
    *seqs = NULL;
    *n = 0;
    if (more) *more = 0;
    if (!study || !smap_get(c, &c->mstu, study, &sid)) return HDX_OK;
    if (series && (!smap_get(c, &c->mser, series, &rid) || c->ser[rid].study != sid)) return HDX_OK;
    if (instance) {
        if (!smap_get(c, &c->mins, instance, &iid)) return HDX_OK;
        const struct series *r = &c->ser[c->ins[iid].series];
        if (r->study != sid || (series && c->ins[iid].series != rid)) return HDX_OK;
        if (!(out = malloc(sizeof(*out)))) return HDX_E_NOMEM;
        out[0] = c->ins[iid].seq;
        *seqs = out;
        *n = 1;
        return HDX_OK;
    }
    for (size_t i = 0; i < c->nins; i++) {
        const struct instance *in = &c->ins[i];
        if (series ? in->series != rid : c->ser[in->series].study != sid) continue;
        if (max && cnt == max) {
            if (more) *more = 1;
            break;
        }
        if (grow((void **)&out, &cap, cnt, sizeof(*out)) != HDX_OK) {
            free(out);
            return HDX_E_NOMEM;
        }
        out[cnt++] = in->seq;
    }
    if (cnt > 1) qsort(out, cnt, sizeof(*out), seq_cmp);
    *seqs = out;
    *n = cnt;
    return HDX_OK;
}
