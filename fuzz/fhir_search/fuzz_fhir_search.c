/* fuzz_fhir_search: the FHIR request readers hdxd runs on untrusted bytes before any policy
 * decision. Byte 0 picks: bit 7 clear, a search (fhir/search.h) for the type byte0 % 8 names
 * over the rest as a query string; bit 7 set, a request body (fhir/resource.h hdx_fhir_parse,
 * then fhir/validate.h and the index extraction of what validates).
 * Checks: a refused search names why in printable ASCII and leaves nothing to use; an
 * accepted one is within every bound (groups, tokens, ranges, count) and its patient id, when
 * any, is a FHIR id; the same input gives the same tokens twice. A body over the limit or too
 * deep is refused before jansson sees it; what parses is an object; what validates has a
 * supported resourceType and extracts within HDX_FHIR_TOKENS_MAX. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "fhir/resource.h"
#include "fhir/search.h"
#include "fhir/validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static struct hdx_keyring *kr;
static struct hdx_keyctx *kc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[256];
    uint8_t wrapped[HDX_WRAPPED_LEN];
    int fd = hdx_mkstemp("hdx-fuzz-kek-", path, sizeof(path));
    (void)argc;
    (void)argv;
    if (fd < 0) abort();
    close(fd);
    unlink(path); /* hdx_kek_create wants to create it itself (O_EXCL) */
    if (hdx_kek_create(path) != HDX_OK || hdx_keyring_open(path, &kr, NULL, 0) != HDX_OK ||
        hdx_keyring_new_key(kr, HDX_KEY_BLIND, 1, wrapped) != HDX_OK ||
        hdx_keyctx_new(kr, &kc) != HDX_OK)
        abort();
    unlink(path);
    return 0;
}

static const char *const types[8] = {"Observation", "Patient",          "Device",  "Encounter",
                                     "Provenance",  "DiagnosticReport", "Consent", "Observation"};

static void printable(const char *s)
{
    CHECK(*s);
    for (; *s; s++)
        CHECK((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
}

static void search(uint8_t sel, const uint8_t *data, size_t size)
{
    char *query = malloc(size + 1);
    if (!query) return;
    memcpy(query, data, size);
    query[size] = '\0';
    static struct hdx_fhir_search a, b;
    char bad[128], bad2[128];
    int rc = hdx_fhir_search_parse(types[sel % 8], query, kc, &a, bad, sizeof(bad));
    int rc2 = hdx_fhir_search_parse(types[sel % 8], query, kc, &b, bad2, sizeof(bad2));
    CHECK(rc == rc2);
    if (rc != HDX_OK) {
        CHECK(rc == HDX_E_INVAL);
        printable(bad);
        CHECK(!strcmp(bad, bad2));
    } else {
        CHECK(a.q.ngroups <= HDX_FHIR_GROUPS_MAX && a.q.nranges <= HDX_FHIR_RANGES_MAX);
        CHECK(a.count <= HDX_FHIR_COUNT_MAX && a.nparams <= HDX_FHIR_QPARAMS_MAX);
        for (size_t g = 0; g < a.q.ngroups; g++) {
            CHECK(a.q.groups[g].n >= 1 && a.q.groups[g].n <= HDX_FHIR_GROUP_TOKENS_MAX);
            CHECK(a.q.groups[g].n == b.q.groups[g].n);
            CHECK(!memcmp(a.q.groups[g].tok, b.q.groups[g].tok, a.q.groups[g].n * HDX_BLIND_LEN));
        }
        for (size_t i = 0; i < a.q.nranges; i++)
            CHECK(a.q.ranges[i].lo < a.q.ranges[i].hi);
        CHECK(!a.patient_id[0] || hdx_fhir_id_valid(a.patient_id));
        CHECK(!a.q.id || hdx_fhir_id_valid(a.q.id));
        CHECK(!a.q.patient); /* the caller resolves it */
    }
    free(query);
}

static void body(const uint8_t *data, size_t size)
{
    json_t *res = NULL;
    char why[160], path[HDX_FHIR_PATH_CAP];
    int rc = hdx_fhir_parse(data, size, &res, why, sizeof(why));
    if (rc != HDX_OK) {
        CHECK(!res && (rc == HDX_E_INVAL || rc == HDX_E_TOOBIG));
        printable(why);
        return;
    }
    CHECK(json_is_object(res));
    if (hdx_fhir_validate(res, path, sizeof(path), why, sizeof(why)) == HDX_OK) {
        const char *t = json_string_value(json_object_get(res, "resourceType"));
        CHECK(t && hdx_fhir_type_supported(t));
        /* as the index sees a stored version: with an id and a version */
        json_object_set_new(res, "id", json_string("fuzz"));
        static struct hdx_fhir_entry e;
        if (hdx_fhir_extract(res, kc, &e) == HDX_OK) {
            CHECK(e.ntok <= HDX_FHIR_TOKENS_MAX);
            CHECK(!e.has_date || e.date_lo < e.date_hi);
        }
        char key[300], pid[HDX_FHIR_ID_MAX + 1];
        hdx_fhir_patient_key(res, key, sizeof(key));
        int ref = hdx_fhir_patient_ref(res, pid, sizeof(pid));
        CHECK(ref != 1 || hdx_fhir_id_valid(pid));
    }
    json_decref(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 0x80)
        body(data + 1, size - 1);
    else
        search(data[0], data + 1, size - 1);
    return 0;
}
