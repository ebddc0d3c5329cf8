/* fuzz_fhir_v2map: libFuzzer entry point for fhir/v2map, both directions. The input is an HL7
 * v2 message as a device sends it. Beyond "no crash", it traps when a refusal leaves output
 * behind or gives no reason (or a reason with bytes other than printable ASCII: the reason is
 * logged, the values are PHI); when the same bytes map to a different view the second time
 * (hdx regenerates the view on every read); when an Observation's id is not "v2-<seq>-<n>" in
 * order; and when an Observation made here cannot be mapped back to an ORU^R01 (every one must,
 * barring size), when that ORU^R01 does not parse with hl7_parse, or when it does not map to
 * Observations again. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/v2map.h"
#include "proto/hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static void check_why(const char *why)
{
    CHECK(why[0] != '\0');
    for (const char *p = why; *p != '\0'; p++)
        CHECK(*p >= 0x20 && *p < 0x7f);
}

static void back_to_v2(const json_t *obs)
{
    static const struct hdx_v2map_out o = {"FUZZ0001", "MRN-1", "HOSP", 1796239800123456LL, "HDX"};
    struct hdx_v2map_in in = {"fuzz-dev", 2, "Patient/p1", 0};
    char *oru = NULL, why[256];
    size_t len = 0;
    int rc = hdx_v2map_oru(obs, &o, &oru, &len, why, sizeof why);
    if (rc == HDX_E_TOOBIG) {
        CHECK(oru == NULL);
        return;
    }
    CHECK(rc == HDX_OK && oru != NULL && len == strlen(oru) && len > 0 && oru[len - 1] == '\r');
    struct hl7_msg m;
    struct hl7_error e;
    CHECK(hl7_parse((const uint8_t *)oru, len, NULL, &m, &e) == 0);
    CHECK(strcmp(m.msg_type, "ORU^R01") == 0 && strcmp(m.control_id, "FUZZ0001") == 0);
    hl7_msg_free(&m);
    json_t *again = NULL;
    rc = hdx_v2map_observations((const uint8_t *)oru, len, &in, &again, why, sizeof why);
    CHECK(rc == HDX_OK && json_array_size(again) >= 1);
    json_decref(again);
    free(oru);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hdx_v2map_in in = {"fuzz-dev", 1, NULL, 0};
    json_t *out = (json_t *)1, *twice = NULL;
    char why[256];

    int rc = hdx_v2map_observations(data, size, &in, &out, why, sizeof why);
    if (rc != HDX_OK) {
        CHECK(out == NULL);
        CHECK(rc == HDX_E_INVAL || rc == HDX_E_TOOBIG || rc == HDX_E_NOMEM);
        check_why(why);
        return 0;
    }
    CHECK(json_is_array(out));
    CHECK(hdx_v2map_observations(data, size, &in, &twice, why, sizeof why) == HDX_OK);
    char *a = json_dumps(out, HDX_V2MAP_JSON_FLAGS | JSON_COMPACT);
    char *b = json_dumps(twice, HDX_V2MAP_JSON_FLAGS | JSON_COMPACT);
    CHECK(a != NULL && b != NULL && strcmp(a, b) == 0);
    free(a);
    free(b);
    json_decref(twice);
    size_t i;
    json_t *o;
    json_array_foreach(out, i, o)
    {
        char id[64];
        snprintf(id, sizeof id, "v2-1-%zu", i + 1);
        CHECK(strcmp(json_string_value(json_object_get(o, "id")), id) == 0);
        CHECK(json_object_get(o, "subject") != NULL && json_object_get(o, "status") != NULL);
        /* built alone (a read of that one Observation), the same */
        struct hdx_v2map_in one = in;
        one.only = (uint32_t)i + 1;
        json_t *alone = NULL;
        CHECK(hdx_v2map_observations(data, size, &one, &alone, why, sizeof why) == HDX_OK);
        CHECK(json_array_size(alone) == 1 && json_equal(json_array_get(alone, 0), o));
        json_decref(alone);
        back_to_v2(o);
    }
    json_decref(out);
    return 0;
}
