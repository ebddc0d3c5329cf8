/* test_dicom_catalog: the C-FIND catalogue (dicom/catalog.h).
 * Proves: instances group into series, studies and patients with the right counts; a key of
 * each level filters at every level below it; a changed re-send replaces the older keys, also
 * when it moves to another series, study or patient (counts follow, an emptied entity is no
 * longer found); an older record does not undo a newer one; Latin-1 and Cyrillic names
 * (ISO_IR 100, ISO_IR 144) and undeclared Latin-1 are found by UTF-8 keys; Modalities in
 * Study matches any of a multi-valued key; max and *more bound an answer; the admit filter
 * withholds a patient at every level; 100,000 studies
 * are held and found. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/catalog.h"

static struct hdx_dmatch ms[4];

static struct hdx_dcm_keys keys(const char *study, const char *series, const char *inst,
                                const char *pid, const char *name, const char *modality,
                                const char *date)
{
    struct hdx_dcm_keys k;
    memset(&k, 0, sizeof(k));
    snprintf(k.sop_class, sizeof(k.sop_class), "1.2.840.10008.5.1.4.1.1.2");
    snprintf(k.study_uid, sizeof(k.study_uid), "%s", study);
    snprintf(k.series_uid, sizeof(k.series_uid), "%s", series);
    snprintf(k.sop_instance, sizeof(k.sop_instance), "%s", inst);
    snprintf(k.patient_id, sizeof(k.patient_id), "%s", pid);
    snprintf(k.patient_name, sizeof(k.patient_name), "%s", name);
    snprintf(k.modality, sizeof(k.modality), "%s", modality);
    snprintf(k.study_date, sizeof(k.study_date), "%s", date);
    return k;
}

static void add(struct hdx_dcat *c, const struct hdx_dcm_keys *k, uint64_t seq)
{
    int lossy = 0;
    assert_int_equal(hdx_dcat_add(c, k, seq, NULL, &lossy), HDX_OK);
    assert_int_equal(lossy, 0);
}

/* A key on tag (g,e) with the text given, compiled into ms[slot]. */
static struct hdx_dcat_key key(uint16_t g, uint16_t e, const char *text, size_t slot)
{
    const struct hdx_dcat_attr *a = hdx_dcat_attr_find(g, e);
    const char *why = NULL;
    assert_non_null(a);
    if (hdx_dmatch_compile(a->match, text, strlen(text), &ms[slot], &why) != HDX_OK)
        fail_msg("key %s refused: %s", text, why);
    return (struct hdx_dcat_key){a, &ms[slot], 1};
}

static size_t count(struct hdx_dcat *c, enum hdx_dcat_level l, const struct hdx_dcat_key *k,
                    size_t nk)
{
    uint32_t *ids = NULL;
    size_t n = 99;
    int more = 1;
    assert_int_equal(hdx_dcat_find(c, l, k, nk, NULL, 0, &ids, &n, &more, NULL), HDX_OK);
    assert_int_equal(more, 0);
    free(ids);
    return n;
}

static const char *value1(struct hdx_dcat *c, enum hdx_dcat_level l, const struct hdx_dcat_key *k,
                          size_t nk, uint16_t g, uint16_t e)
{
    static char buf[256];
    uint32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(hdx_dcat_find(c, l, k, nk, NULL, 0, &ids, &n, NULL, NULL), HDX_OK);
    assert_int_equal(n, 1);
    const char *v = hdx_dcat_value(c, l, ids[0], hdx_dcat_attr_find(g, e), buf, sizeof(buf));
    static char out[256];
    snprintf(out, sizeof(out), "%s", v);
    free(ids);
    return out;
}

static void test_hierarchy_and_counts(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    struct hdx_dcm_keys k[] = {
        keys("1.1", "1.1.1", "1.1.1.1", "P1", "DOE^JOHN", "CT", "20210110"),
        keys("1.1", "1.1.1", "1.1.1.2", "P1", "DOE^JOHN", "CT", "20210110"),
        keys("1.1", "1.1.2", "1.1.2.1", "P1", "DOE^JOHN", "SR", "20210110"),
        keys("1.2", "1.2.1", "1.2.1.1", "P1", "DOE^JOHN", "MR", "20210120"),
        keys("2.1", "2.1.1", "2.1.1.1", "P2", "ROE^JANE", "MR", "20200101"),
    };
    for (size_t i = 0; i < 5; i++)
        add(c, &k[i], i + 1);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_PATIENT), 2);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_STUDY), 3);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_SERIES), 4);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_IMAGE), 5);

    struct hdx_dcat_key q[3];
    q[0] = key(0x0010, 0x0010, "doe*", 0);
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 1), 2);
    assert_int_equal(count(c, HDX_DCAT_SERIES, q, 1), 3);
    assert_int_equal(count(c, HDX_DCAT_IMAGE, q, 1), 4);
    assert_int_equal(count(c, HDX_DCAT_PATIENT, q, 1), 1);
    assert_string_equal(value1(c, HDX_DCAT_PATIENT, q, 1, 0x0020, 0x1200), "2");
    /* an open-ended range: only the January 10 study is on or before the 15th */
    q[1] = key(0x0008, 0x0020, "-20210115", 1);
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 2), 1);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 2, 0x0020, 0x1206), "2");
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 2, 0x0020, 0x1208), "3");
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 2, 0x0008, 0x0061), "CT\\SR");
    /* a study key filters its series; a series key its instances */
    q[0] = key(0x0020, 0x000D, "1.1", 0);
    q[1] = key(0x0008, 0x0060, "CT", 1);
    assert_int_equal(count(c, HDX_DCAT_SERIES, q, 1), 2);
    assert_int_equal(count(c, HDX_DCAT_SERIES, q, 2), 1);
    assert_int_equal(count(c, HDX_DCAT_IMAGE, q, 2), 2);
    assert_string_equal(value1(c, HDX_DCAT_SERIES, q, 2, 0x0020, 0x1209), "2");
    /* a key of a lower level is not applied above it (the caller drops it) */
    assert_int_equal(count(c, HDX_DCAT_STUDY, &q[1], 1), 3);
    /* a UID list */
    q[0] = key(0x0020, 0x000D, "1.2\\2.1\\9.9", 0);
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 1), 2);
    /* Modalities in Study, multi-valued: any of the values */
    const struct hdx_dcat_attr *mis = hdx_dcat_attr_find(0x0008, 0x0061);
    const char *why;
    assert_int_equal(hdx_dmatch_compile(mis->match, "SR", 2, &ms[0], &why), HDX_OK);
    assert_int_equal(hdx_dmatch_compile(mis->match, "MR", 2, &ms[1], &why), HDX_OK);
    struct hdx_dcat_key mk = {mis, ms, 2};
    assert_int_equal(count(c, HDX_DCAT_STUDY, &mk, 1), 3);
    mk.nm = 1;
    assert_int_equal(count(c, HDX_DCAT_STUDY, &mk, 1), 1);
    /* max and more */
    uint32_t *ids = NULL;
    size_t n = 0;
    int more = 0;
    assert_int_equal(hdx_dcat_find(c, HDX_DCAT_IMAGE, NULL, 0, NULL, 2, &ids, &n, &more, NULL),
                     HDX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(more, 1);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    free(ids);
    /* a value of a level below the query's is empty */
    assert_string_equal(
        hdx_dcat_value(c, HDX_DCAT_STUDY, 0, hdx_dcat_attr_find(0x0008, 0x0018), NULL, 0), "");
    hdx_dcat_free(c);
}

static void test_resend_moves(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    struct hdx_dcm_keys a = keys("1.1", "1.1.1", "1.1.1.1", "P1", "DOE^JOHN", "CT", "20210110");
    struct hdx_dcm_keys b = keys("1.1", "1.1.1", "1.1.1.2", "P1", "DOE^JOHN", "CT", "20210110");
    add(c, &a, 1);
    add(c, &b, 2);
    /* the same bytes again: nothing changes */
    add(c, &a, 1);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_IMAGE), 2);
    /* a corrected re-send of instance 2 to another study, series and patient */
    struct hdx_dcm_keys b2 = keys("3.1", "3.1.1", "1.1.1.2", "P3", "POE^ANN", "MR", "20220202");
    add(c, &b2, 5);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_IMAGE), 2);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_STUDY), 2);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_PATIENT), 2);
    struct hdx_dcat_key q[1];
    q[0] = key(0x0010, 0x0020, "P1", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x1208), "1");
    q[0] = key(0x0008, 0x0018, "1.1.1.2", 0);
    assert_string_equal(value1(c, HDX_DCAT_IMAGE, q, 1, 0x0010, 0x0010), "POE^ANN");
    /* an older record of it (a replay out of order) does not undo the newer */
    add(c, &b, 2);
    assert_string_equal(value1(c, HDX_DCAT_IMAGE, q, 1, 0x0020, 0x000D), "3.1");
    /* the last instance of study 1.1 moves too: the study and patient P1 are gone */
    struct hdx_dcm_keys a2 = keys("3.1", "3.1.1", "1.1.1.1", "P3", "POE^ANN", "MR", "20220202");
    add(c, &a2, 6);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_STUDY), 1);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_SERIES), 1);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_PATIENT), 1);
    q[0] = key(0x0010, 0x0020, "P1", 0);
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 1), 0);
    assert_int_equal(count(c, HDX_DCAT_PATIENT, q, 1), 0);
    q[0] = key(0x0010, 0x0020, "P3", 0);
    assert_string_equal(value1(c, HDX_DCAT_PATIENT, q, 1, 0x0020, 0x1200), "1");
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x1208), "2");
    /* a series moving to another study takes its instances along */
    struct hdx_dcm_keys m = keys("4.1", "3.1.1", "9.9", "P3", "POE^ANN", "MR", "20220202");
    add(c, &m, 7);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_STUDY), 1);
    q[0] = key(0x0020, 0x000D, "4.1", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x1208), "3");
    /* no UIDs: refused */
    struct hdx_dcm_keys bad = keys("", "1", "2", "P", "", "", "");
    assert_int_equal(hdx_dcat_add(c, &bad, 8, NULL, NULL), HDX_E_INVAL);
    hdx_dcat_free(c);
}

static void test_charsets(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    /* ISO_IR 100: "Buc^Jérôme"; ISO_IR 144: "Люкceмбypг" (pydicom's chrFrenMulti, chrRuss) */
    struct hdx_dcm_keys fr = keys("1", "1.1", "1.1.1", "F", "Buc^J\xe9r\xf4me", "CT", "");
    snprintf(fr.charset, sizeof(fr.charset), "ISO_IR 100");
    struct hdx_dcm_keys ru =
        keys("2", "2.1", "2.1.1", "R", "\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3", "CT", "");
    snprintf(ru.charset, sizeof(ru.charset), "ISO_IR 144");
    /* undeclared Latin-1 (an old modality): read as ISO_IR 100 */
    struct hdx_dcm_keys old = keys("3", "3.1", "3.1.1", "O", "M\xfcller^Hans", "CT", "");
    /* an unknown set: the UIDs are kept, the names lost */
    struct hdx_dcm_keys unk = keys("4", "4.1", "4.1.1", "U", "X\xff", "CT", "");
    snprintf(unk.charset, sizeof(unk.charset), "ISO_IR 999");
    add(c, &fr, 1);
    add(c, &ru, 2);
    add(c, &old, 3);
    int lossy = 0;
    assert_int_equal(hdx_dcat_add(c, &unk, 4, NULL, &lossy), HDX_OK);
    assert_int_equal(lossy, 1);
    struct hdx_dcat_key q[1];
    q[0] = key(0x0010, 0x0010, "Buc^J\xc3\xa9r\xc3\xb4me", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x000D), "1");
    q[0] = key(0x0010, 0x0010, "\xd0\x9b\xd1\x8e\xd0\xba*", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x000D), "2");
    q[0] = key(0x0010, 0x0010, "M\xc3\xbcller*", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0020, 0x000D), "3");
    q[0] = key(0x0020, 0x000D, "4", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0010, 0x0010), "");
    hdx_dcat_free(c);
}

static void test_many_studies(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    char st[40], se[40], in[40], pid[20];
    for (unsigned i = 0; i < 100000; i++) {
        snprintf(st, sizeof(st), "1.2.3.%u", i);
        snprintf(se, sizeof(se), "1.2.3.%u.1", i);
        snprintf(in, sizeof(in), "1.2.3.%u.1.1", i);
        snprintf(pid, sizeof(pid), "P%u", i % 5000);
        struct hdx_dcm_keys k = keys(st, se, in, pid, i % 1000 ? "DOE^JOHN" : "SMITH^ANNA",
                                     i % 2 ? "CT" : "MR", i % 3 ? "20210101" : "20200101");
        add(c, &k, i + 1);
    }
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_STUDY), 100000);
    assert_int_equal(hdx_dcat_count(c, HDX_DCAT_PATIENT), 5000);
    struct hdx_dcat_key q[2];
    q[0] = key(0x0010, 0x0010, "SMITH*", 0);
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 1), 100);
    q[1] = key(0x0008, 0x0020, "20200101", 1);
    /* i % 1000 == 0 and i % 3 == 0: i a multiple of 3000, 34 of them below 100,000 */
    assert_int_equal(count(c, HDX_DCAT_STUDY, q, 2), 34);
    q[0] = key(0x0020, 0x000D, "1.2.3.77777", 0);
    assert_string_equal(value1(c, HDX_DCAT_STUDY, q, 1, 0x0010, 0x0020), "P2777");
    hdx_dcat_free(c);
}

static int deny_token_b(void *arg, const uint8_t *patient)
{
    (*(int *)arg)++;
    return !(patient && patient[0] == 'B');
}

static void test_admit(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    uint8_t ta[16], tb[16];
    memset(ta, 'A', sizeof(ta));
    memset(tb, 'B', sizeof(tb));
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    struct hdx_dcm_keys a = keys("1", "1.1", "1.1.1", "PA", "A^A", "CT", "");
    struct hdx_dcm_keys b = keys("2", "2.1", "2.1.1", "PB", "B^B", "CT", "");
    struct hdx_dcm_keys b2 = keys("2", "2.1", "2.1.2", "PB", "B^B", "CT", "");
    assert_int_equal(hdx_dcat_add(c, &a, 1, ta, NULL), HDX_OK);
    assert_int_equal(hdx_dcat_add(c, &b, 2, tb, NULL), HDX_OK);
    assert_int_equal(hdx_dcat_add(c, &b2, 3, tb, NULL), HDX_OK);
    int asked = 0;
    struct hdx_dcat_admit adm = {deny_token_b, &asked};
    uint32_t *ids = NULL;
    size_t n = 0, withheld = 0;
    static const enum hdx_dcat_level levels[] = {HDX_DCAT_PATIENT, HDX_DCAT_STUDY, HDX_DCAT_SERIES,
                                                 HDX_DCAT_IMAGE};
    static const size_t want_withheld[] = {1, 1, 1, 2};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(hdx_dcat_find(c, levels[i], NULL, 0, &adm, 0, &ids, &n, NULL, &withheld),
                         HDX_OK);
        assert_int_equal(n, 1);
        assert_int_equal(withheld, want_withheld[i]);
        assert_string_equal(
            hdx_dcat_value(c, levels[i], ids[0], hdx_dcat_attr_find(0x0010, 0x0020), NULL, 0),
            "PA");
        free(ids);
    }
    assert_int_equal(asked, 2 + 2 + 2 + 3);
    hdx_dcat_free(c);
}

/* WADO-RS's lookup: the records of a study, a series in it, an instance in that, and
 * nothing for a series or instance named under the wrong parent. */
static void test_instances(void **state)
{
    (void)state;
    struct hdx_dcat *c;
    uint64_t *seqs;
    size_t n;
    int more;
    assert_int_equal(hdx_dcat_new(&c), HDX_OK);
    struct hdx_dcm_keys a = keys("1.1", "1.1.1", "1.1.1.1", "PA", "A^A", "CT", "20240101");
    struct hdx_dcm_keys b = keys("1.1", "1.1.2", "1.1.2.1", "PA", "A^A", "MR", "20240101");
    struct hdx_dcm_keys b2 = keys("1.1", "1.1.2", "1.1.2.2", "PA", "A^A", "MR", "20240101");
    struct hdx_dcm_keys o = keys("2.2", "2.2.1", "2.2.1.1", "PB", "B^B", "CT", "20240102");
    uint8_t tok[HDX_DCAT_TOKEN_LEN];
    memset(tok, 7, sizeof(tok));
    add(c, &b2, 30); /* stored out of order: answers come oldest first */
    add(c, &a, 10);
    add(c, &b, 20);
    assert_int_equal(hdx_dcat_add(c, &o, 40, tok, NULL), HDX_OK);
    assert_int_equal(hdx_dcat_instances(c, "1.1", NULL, NULL, 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 3);
    assert_true(seqs[0] == 10 && seqs[1] == 20 && seqs[2] == 30);
    assert_int_equal(more, 0);
    free(seqs);
    assert_int_equal(hdx_dcat_instances(c, "1.1", NULL, NULL, 2, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(more, 1);
    free(seqs);
    assert_int_equal(hdx_dcat_instances(c, "1.1", "1.1.2", NULL, 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 2);
    assert_true(seqs[0] == 20 && seqs[1] == 30);
    free(seqs);
    assert_int_equal(hdx_dcat_instances(c, "1.1", "1.1.2", "1.1.2.2", 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 1);
    assert_true(seqs[0] == 30);
    free(seqs);
    /* wrong parents, unknown UIDs */
    assert_int_equal(hdx_dcat_instances(c, "2.2", "1.1.2", NULL, 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 0);
    assert_null(seqs);
    assert_int_equal(hdx_dcat_instances(c, "1.1", "1.1.1", "1.1.2.1", 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hdx_dcat_instances(c, "2.2", NULL, "1.1.1.1", 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hdx_dcat_instances(c, "9.9", NULL, NULL, 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 0);
    /* an instance re-sent into another series moves */
    struct hdx_dcm_keys moved = keys("1.1", "1.1.1", "1.1.2.2", "PA", "A^A", "CT", "20240101");
    add(c, &moved, 50);
    assert_int_equal(hdx_dcat_instances(c, "1.1", "1.1.1", NULL, 0, &seqs, &n, &more), HDX_OK);
    assert_int_equal(n, 2);
    assert_true(seqs[0] == 10 && seqs[1] == 50);
    free(seqs);
    /* the token and seq an entity is shown by */
    uint32_t *ids;
    size_t nid;
    assert_int_equal(hdx_dcat_find(c, HDX_DCAT_STUDY, NULL, 0, NULL, 0, &ids, &nid, NULL, NULL),
                     HDX_OK);
    assert_int_equal(nid, 2);
    assert_null(hdx_dcat_token(c, HDX_DCAT_STUDY, ids[0]));
    assert_memory_equal(hdx_dcat_token(c, HDX_DCAT_STUDY, ids[1]), tok, sizeof(tok));
    assert_true(hdx_dcat_seq(c, HDX_DCAT_STUDY, ids[1]) == 40);
    assert_true(hdx_dcat_seq(c, HDX_DCAT_STUDY, 99) == 0);
    assert_null(hdx_dcat_token(c, HDX_DCAT_STUDY, 99));
    free(ids);
    hdx_dcat_free(c);
}

static void test_table(void **state)
{
    (void)state;
    const struct hdx_dcat_attr *prev = NULL, *a;
    for (size_t i = 0; (a = hdx_dcat_attr_at(i)) != NULL; i++) {
        if (prev)
            assert_true(((uint32_t)prev->group << 16 | prev->element) <
                        ((uint32_t)a->group << 16 | a->element));
        assert_ptr_equal(hdx_dcat_attr_find(a->group, a->element), a);
        prev = a;
    }
    assert_null(hdx_dcat_attr_find(0x0010, 0x1000));
    assert_int_equal(hdx_dcat_level_parse("SERIES"), HDX_DCAT_SERIES);
    assert_int_equal(hdx_dcat_level_parse("series"), 0);
    assert_int_equal(hdx_dcat_level_parse("FRAME"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hierarchy_and_counts),
        cmocka_unit_test(test_resend_moves),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_many_studies),
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
