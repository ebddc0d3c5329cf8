/* PLACEHOLDER until the route/match module lands (helper branch `match`): matches "*" or "type:X^Y"
 * only. */
#include "route/match.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
struct hdx_match {
    char t[64];
};
int hdx_match_compile(const char *text, struct hdx_match **out, char *err, size_t err_cap)
{
    struct hdx_match *m = calloc(1, sizeof(*m));
    if (!m) return HDX_E_NOMEM;
    if (strncmp(text, "type:", 5) == 0) snprintf(m->t, sizeof(m->t), "%s", text + 5);
    *out = m;
    (void)err;
    (void)err_cap;
    return HDX_OK;
}
void hdx_match_free(struct hdx_match *m)
{
    free(m);
}
int hdx_match_eval(const struct hdx_match *m, const struct hl7_msg *msg, const char *sender)
{
    (void)sender;
    return !m->t[0] || strcmp(m->t, msg->msg_type) == 0;
}
int hdx_match_index_only(const struct hdx_match *m)
{
    (void)m;
    return 1;
}
int hdx_match_describe(const struct hdx_match *m, char *out, size_t cap)
{
    return snprintf(out, cap, "type:%s", m->t);
}
