/* PLACEHOLDER until the route/transform module lands (helper branch `transform`): copies. */
#include "route/transform.h"
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
struct hdx_transform {
    size_t n;
};
int hdx_transform_compile(const char *const *lines, size_t n, const char *base_dir,
                          struct hdx_transform **out, char *err, size_t err_cap)
{
    (void)lines;
    (void)base_dir;
    (void)err;
    (void)err_cap;
    *out = calloc(1, sizeof(**out));
    if (!*out) return HDX_E_NOMEM;
    (*out)->n = n;
    return HDX_OK;
}
void hdx_transform_free(struct hdx_transform *t)
{
    free(t);
}
int hdx_transform_apply(const struct hdx_transform *t, const uint8_t *msg, size_t len,
                        uint8_t **out, size_t *out_len, char *err, size_t err_cap)
{
    (void)t;
    (void)err;
    (void)err_cap;
    *out = malloc(len + 1);
    if (!*out) return HDX_E_NOMEM;
    memcpy(*out, msg, len);
    *out_len = len;
    return HDX_OK;
}
int hdx_transform_count(const struct hdx_transform *t)
{
    return (int)t->n;
}
