#ifndef HDX_ROUTE_MATCH_H
#define HDX_ROUTE_MATCH_H
#include <stddef.h>
#include "proto/hl7.h"
struct hdx_match;
int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap);
void hdx_match_free(struct hdx_match *m);
int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender);
int hdx_match_index_only(const struct hdx_match *m);
int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap);
#endif
