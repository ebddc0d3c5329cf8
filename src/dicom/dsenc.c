#include "dicom/dsenc.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

void hdx_dsenc_init(struct hdx_dsenc *e, enum hdx_ds_syntax syntax, size_t max)
{
    memset(e, 0, sizeof(*e));
    e->syntax = syntax;
    e->max = max;
}

void hdx_dsenc_free(struct hdx_dsenc *e)
{
    if (e->buf) {
        sodium_memzero(e->buf, e->cap);
        free(e->buf);
    }
    memset(e, 0, sizeof(*e));
}

static int fail(struct hdx_dsenc *e, int rc)
{
    e->failed = 1;
    return rc;
}

static int reserve(struct hdx_dsenc *e, size_t more)
{
    if (more > e->max || e->len > e->max - more) return fail(e, HDX_E_TOOBIG);
    if (e->len + more <= e->cap) return HDX_OK;
    size_t cap = e->cap ? e->cap : 256;
    while (cap < e->len + more)
        cap *= 2;
    uint8_t *p = malloc(cap);
    if (!p) return fail(e, HDX_E_NOMEM);
    if (e->buf) {
        memcpy(p, e->buf, e->len);
        sodium_memzero(e->buf, e->cap); /* no stale copy of PHI left behind by a resize */
        free(e->buf);
    }
    e->buf = p;
    e->cap = cap;
    return HDX_OK;
}

static void put16(struct hdx_dsenc *e, uint16_t v)
{
    int be = e->syntax == HDX_DS_EXPLICIT_BE;
    e->buf[e->len++] = (uint8_t)(be ? v >> 8 : v);
    e->buf[e->len++] = (uint8_t)(be ? v : v >> 8);
}

static void put32(struct hdx_dsenc *e, uint32_t v)
{
    if (e->syntax == HDX_DS_EXPLICIT_BE) {
        put16(e, (uint16_t)(v >> 16));
        put16(e, (uint16_t)v);
    } else {
        put16(e, (uint16_t)v);
        put16(e, (uint16_t)(v >> 16));
    }
}

/* PS3.5 Table 7.1-1: the VRs with a reserved field and a 4-byte length. */
static int long_form(const char *vr)
{
    static const char *const longs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "SV", "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof(longs) / sizeof(longs[0]); i++)
        if (!memcmp(vr, longs[i], 2)) return 1;
    return 0;
}

int hdx_dsenc_add(struct hdx_dsenc *e, uint16_t group, uint16_t element, const char *vr,
                  const void *value, size_t len)
{
    uint32_t tag = (uint32_t)group << 16 | element;
    if (e->failed) return HDX_E_INVAL;
    if (!vr || strlen(vr) != 2 || vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' ||
        !strcmp(vr, "SQ") || (e->last && tag <= e->last) || (len && !value))
        return fail(e, HDX_E_INVAL);
    size_t padded = len + (len & 1);
    int lf = long_form(vr);
    if (padded > UINT32_MAX - 1 || (e->syntax != HDX_DS_IMPLICIT_LE && !lf && padded > 0xFFFE))
        return fail(e, HDX_E_INVAL);
    size_t head = e->syntax == HDX_DS_IMPLICIT_LE ? 8 : lf ? 12 : 8;
    int rc = reserve(e, head + padded);
    if (rc != HDX_OK) return rc;
    put16(e, group);
    put16(e, element);
    if (e->syntax == HDX_DS_IMPLICIT_LE) {
        put32(e, (uint32_t)padded);
    } else {
        e->buf[e->len++] = (uint8_t)vr[0];
        e->buf[e->len++] = (uint8_t)vr[1];
        if (lf) {
            put16(e, 0);
            put32(e, (uint32_t)padded);
        } else {
            put16(e, (uint16_t)padded);
        }
    }
    if (len) memcpy(e->buf + e->len, value, len);
    e->len += len;
    if (len & 1)
        e->buf[e->len++] = !strcmp(vr, "UI")                          ? 0
                           : (!strcmp(vr, "OB") || !strcmp(vr, "UN")) ? 0
                                                                      : ' ';
    e->last = tag;
    return HDX_OK;
}

int hdx_dsenc_str(struct hdx_dsenc *e, uint16_t group, uint16_t element, const char *vr,
                  const char *s)
{
    return hdx_dsenc_add(e, group, element, vr, s, s ? strlen(s) : 0);
}

int hdx_dsenc_us(struct hdx_dsenc *e, uint16_t group, uint16_t element, uint16_t v)
{
    uint8_t b[2];
    int be = e->syntax == HDX_DS_EXPLICIT_BE;
    b[0] = (uint8_t)(be ? v >> 8 : v);
    b[1] = (uint8_t)(be ? v : v >> 8);
    return hdx_dsenc_add(e, group, element, "US", b, 2);
}
