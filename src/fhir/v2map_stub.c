#include "fhir/v2map.h"
int hdx_v2map_observations(const uint8_t *msg, size_t len, const struct hdx_v2map_in *in,
                           json_t **out, char *why, size_t cap)
{
    (void)msg;
    (void)len;
    (void)in;
    (void)why;
    (void)cap;
    *out = json_array();
    return 0;
}
