#include <stdlib.h>

#include "core/err.h"
#include "net/front_internal.h"

int hdx_front_api_init(struct hdx_front *f, struct hdx_http *h)
{
    return HDX_OK;
}

void hdx_front_api_free(struct hdx_front *f) {}
void hdx_front_api_tick(struct hdx_front *f) {}
void hdx_front_streams_check(struct hdx_front *f) {}
void hdx_front_policy_changed(struct hdx_front *f, const struct hdx_admin *a) {}
