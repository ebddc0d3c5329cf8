/* TEMPORARY STUB until the v2map branch merges */
#ifndef HDX_FHIR_V2MAP_H
#define HDX_FHIR_V2MAP_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#define HDX_V2MAP_SENDER "hdx-fhir"
struct hdx_v2map_in {
    const char *sender;
    uint64_t seq;
    const char *patient_ref;
};
int hdx_v2map_observations(const uint8_t *msg, size_t len, const struct hdx_v2map_in *in,
                           json_t **out, char *why, size_t cap);
#endif
