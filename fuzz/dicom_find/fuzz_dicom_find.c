/* fuzz_dicom_find: libFuzzer entry point for a C-FIND identifier (dicom/query.h) against a
 * small catalogue (dicom/catalog.h).
 * Input: byte 0 picks the syntax (% 3: Implicit VR LE, Explicit VR LE, Explicit VR BE) and the
 * model (bit 2: Study Root); the rest is the identifier, copied to an exact-size heap buffer.
 * The catalogue holds six instances in three studies, two patients, Latin-1, Cyrillic and
 * ASCII names, with patient tokens (one withheld by the admit filter).
 * Properties: a refusal is a negative error with a status of A700, A900 or C000 and a
 * non-empty reason; an accepted query has a level, at most 128 keys, answers in tag order for
 * every match (each re-walked by the data-set walker, its level element present), never more
 * matches than entities at the level, no withheld patient among them; max bounds the answer
 * and sets more; parsing is deterministic. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/catalog.h"
#include "dicom/dataset.h"
#include "dicom/dsenc.h"
#include "dicom/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static struct hdx_dcat *cat;
static const uint8_t token_hidden[16] = {'H', 'H', 'H', 'H', 'H', 'H', 'H', 'H',
                                         'H', 'H', 'H', 'H', 'H', 'H', 'H', 'H'};
static const uint8_t token_shown[16] = {'S'};

static void add(const char *study, const char *series, const char *inst, const char *pid,
                const char *name, const char *charset, const char *mod, const char *date,
                uint64_t seq, const uint8_t *token)
{
    struct hdx_dcm_keys k;
    memset(&k, 0, sizeof(k));
    snprintf(k.sop_class, sizeof(k.sop_class), "1.2.840.10008.5.1.4.1.1.7");
    snprintf(k.study_uid, sizeof(k.study_uid), "%s", study);
    snprintf(k.series_uid, sizeof(k.series_uid), "%s", series);
    snprintf(k.sop_instance, sizeof(k.sop_instance), "%s", inst);
    snprintf(k.patient_id, sizeof(k.patient_id), "%s", pid);
    snprintf(k.patient_name, sizeof(k.patient_name), "%s", name);
    snprintf(k.charset, sizeof(k.charset), "%s", charset);
    snprintf(k.modality, sizeof(k.modality), "%s", mod);
    snprintf(k.study_date, sizeof(k.study_date), "%s", date);
    snprintf(k.study_time, sizeof(k.study_time), "101500");
    snprintf(k.accession, sizeof(k.accession), "A%llu", (unsigned long long)seq);
    CHECK(hdx_dcat_add(cat, &k, seq, token, NULL) == HDX_OK);
}

static int admit(void *arg, const uint8_t *patient)
{
    (void)arg;
    return !(patient && memcmp(patient, token_hidden, 16) == 0);
}

static int seen_level;

static int visit(void *arg, const struct hdx_ds_elem *e)
{
    (void)arg;
    if (e->group == 0x0008 && e->element == 0x0052) seen_level = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cat) {
        CHECK(hdx_dcat_new(&cat) == HDX_OK);
        add("1.1", "1.1.1", "1.1.1.1", "P1", "M\xfcller^Hans", "ISO_IR 100", "CT", "20210110", 1,
            token_shown);
        add("1.1", "1.1.1", "1.1.1.2", "P1", "M\xfcller^Hans", "ISO_IR 100", "CT", "20210110", 2,
            token_shown);
        add("1.1", "1.1.2", "1.1.2.1", "P1", "M\xfcller^Hans", "ISO_IR 100", "SR", "20210110", 3,
            token_shown);
        add("2.1", "2.1.1", "2.1.1.1", "P2", "\xbb\xee\xda\x63\x65", "ISO_IR 144", "MR", "20200101",
            4, token_hidden);
        add("3.1", "3.1.1", "3.1.1.1", "P3", "DOE^JOHN", "", "US", "", 5, NULL);
        add("3.1", "3.1.1", "3.1.1.2", "P3", "DOE^JOHN", "", "US", "", 6, NULL);
    }
    if (size < 1) return 0;
    static const enum hdx_ds_syntax syns[] = {HDX_DS_IMPLICIT_LE, HDX_DS_EXPLICIT_LE,
                                              HDX_DS_EXPLICIT_BE};
    enum hdx_ds_syntax syn = syns[data[0] % 3];
    int study_root = (data[0] >> 2) & 1;
    size_t n = size - 1;
    uint8_t *id = malloc(n ? n : 1);
    if (!id) return 0;
    if (n) memcpy(id, data + 1, n);

    struct hdx_dquery q, q2;
    uint16_t status = 0, status2 = 0;
    char why[200] = "", why2[200] = "";
    int rc = hdx_dquery_parse(id, n, syn, study_root, &q, &status, why, sizeof(why));
    int rc2 = hdx_dquery_parse(id, n, syn, study_root, &q2, &status2, why2, sizeof(why2));
    CHECK(rc == rc2);
    if (rc != HDX_OK) {
        CHECK(rc < 0);
        CHECK(status == 0xA700 || status == 0xA900 || status == 0xC000);
        CHECK(status == status2 && strcmp(why, why2) == 0 && why[0]);
        hdx_dquery_free(&q);
        hdx_dquery_free(&q2);
        free(id);
        return 0;
    }
    CHECK(q.level >= HDX_DCAT_PATIENT && q.level <= HDX_DCAT_IMAGE);
    CHECK(!(study_root && q.level == HDX_DCAT_PATIENT));
    CHECK(q.nkeys <= HDX_DQUERY_KEYS_MAX && q.nkeys == q2.nkeys && q.nret == q2.nret);
    for (size_t i = 1; i < q.nret; i++)
        CHECK(((uint32_t)q.ret[i - 1].group << 16 | q.ret[i - 1].element) <
              ((uint32_t)q.ret[i].group << 16 | q.ret[i].element));
    for (size_t i = 0; i < q.nkeys; i++)
        CHECK(q.keys[i].attr->level <= q.level && q.keys[i].nm >= 1 &&
              q.keys[i].nm <= HDX_DQUERY_ALT_MAX);
    struct hdx_dcat_admit adm = {admit, NULL};
    uint32_t *ids = NULL;
    size_t nids = 0, withheld = 0;
    int more = 0;
    CHECK(hdx_dcat_find(cat, q.level, q.keys, q.nkeys, &adm, 0, &ids, &nids, &more, &withheld) ==
          HDX_OK);
    CHECK(!more && nids + withheld <= hdx_dcat_count(cat, q.level));
    /* max bounds it */
    uint32_t *ids1 = NULL;
    size_t n1 = 0;
    CHECK(hdx_dcat_find(cat, q.level, q.keys, q.nkeys, &adm, 1, &ids1, &n1, &more, NULL) == HDX_OK);
    CHECK(n1 == (nids ? 1 : 0) && more == (nids > 1));
    free(ids1);
    hdx_dquery_drop_keys(&q);
    for (size_t i = 0; i < nids; i++) {
        char buf[64];
        const char *pid = hdx_dcat_value(cat, q.level, ids[i], hdx_dcat_attr_find(0x0010, 0x0020),
                                         buf, sizeof(buf));
        CHECK(strcmp(pid, "P2") != 0); /* the withheld patient */
        struct hdx_dsenc e;
        CHECK(hdx_dquery_answer(&q, cat, ids[i], &e) == HDX_OK);
        struct hdx_ds_limits lim;
        struct hdx_ds_error err;
        hdx_ds_limits_default(&lim);
        seen_level = 0;
        CHECK(hdx_ds_walk(e.buf, e.len, syn, &lim, visit, NULL, &err) == HDX_OK);
        CHECK(seen_level);
        hdx_dsenc_free(&e);
    }
    free(ids);
    hdx_dquery_free(&q);
    hdx_dquery_free(&q2);
    free(id);
    return 0;
}
