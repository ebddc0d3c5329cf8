/* fuzz_fhir_validate: libFuzzer entry point for the FHIR R4 structural validator
 * (fhir/validate.h). The input is a posted resource body: parsed as the API does (jansson,
 * duplicate keys refused), then validated. Beyond "no crash" (and no stack overflow: the walk is
 * bounded by HDX_FHIR_DEPTH_MAX), it traps when the result is neither HDX_OK nor HDX_E_INVAL; when
 * an acceptance leaves path or why non-empty, or a refusal leaves either empty; when the path
 * holds anything but name characters, '.', '[', ']' and '?' (so no value, which may be PHI, can
 * reach it) or the reason anything but printable ASCII; when a second run or one with tight
 * buffers disagrees (the tight path must be a prefix of the full one); and when an accepted
 * resource, encoded by jansson and parsed again, is refused. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static int path_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '[' || ch == ']' || ch == '?';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *res = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (!res) return 0;
    char path[HDX_FHIR_PATH_CAP], why[128], path2[HDX_FHIR_PATH_CAP], why2[128], tp[9], tw[5];
    int rc = hdx_fhir_validate(res, path, sizeof(path), why, sizeof(why));
    CHECK(rc == HDX_OK || rc == HDX_E_INVAL);
    CHECK(memchr(path, '\0', sizeof(path)) && memchr(why, '\0', sizeof(why)));
    if (rc == HDX_OK) {
        CHECK(path[0] == '\0' && why[0] == '\0');
    } else {
        CHECK(path[0] != '\0' && why[0] != '\0');
        for (const char *p = path; *p; p++)
            CHECK(path_char(*p));
        for (const char *p = why; *p; p++)
            CHECK(*p >= 0x20 && *p < 0x7f);
    }
    CHECK(hdx_fhir_validate(res, path2, sizeof(path2), why2, sizeof(why2)) == rc);
    CHECK(strcmp(path, path2) == 0 && strcmp(why, why2) == 0);
    CHECK(hdx_fhir_validate(res, tp, sizeof(tp), tw, sizeof(tw)) == rc);
    CHECK(strncmp(path, tp, strlen(tp)) == 0 && strncmp(why, tw, strlen(tw)) == 0);
    CHECK(strlen(tp) == (strlen(path) < sizeof(tp) ? strlen(path) : sizeof(tp) - 1));
    CHECK(hdx_fhir_validate(res, NULL, 0, NULL, 0) == rc);
    if (rc == HDX_OK) {
        char *text = json_dumps(res, JSON_COMPACT);
        CHECK(text != NULL);
        json_t *again = json_loads(text, JSON_REJECT_DUPLICATES, &err);
        CHECK(again != NULL);
        CHECK(hdx_fhir_validate(again, NULL, 0, NULL, 0) == HDX_OK);
        json_decref(again);
        free(text);
    }
    json_decref(res);
    return 0;
}
