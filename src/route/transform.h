#ifndef HDX_ROUTE_TRANSFORM_H
#define HDX_ROUTE_TRANSFORM_H
#include <stddef.h>
#include <stdint.h>
struct hdx_transform;
int hdx_transform_compile(const char *const *lines, size_t n, const char *base_dir,
                          struct hdx_transform **out, char *err, size_t err_cap);
void hdx_transform_free(struct hdx_transform *t);
int hdx_transform_apply(const struct hdx_transform *t, const uint8_t *msg, size_t len,
                        uint8_t **out, size_t *out_len, char *err, size_t err_cap);
int hdx_transform_count(const struct hdx_transform *t);
#endif
