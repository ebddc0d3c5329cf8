/* frames: see frames.h for the contract. */
#include "dicom/frames.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define FRAGS_MAX (1u << 20)

struct frag {
    size_t off; /* of its item tag, from the start of the data set */
    const uint8_t *p;
    size_t len;
};

struct scan {
    const uint8_t *base;
    enum hdx_ds_syntax syn;
    uint32_t rows, cols, spp, bits;
    int have_rows, have_cols, have_spp, have_bits;
    char nframes[13];
    int in_frags, have_pixels, encapsulated;
    const uint8_t *native;
    size_t native_len;
    struct frag *frags;
    size_t nfrags, cap;
    int nomem, too_many;
};

static uint16_t us_value(const struct scan *s, const uint8_t *v)
{
    return s->syn == HDX_DS_EXPLICIT_BE ? (uint16_t)(v[0] << 8 | v[1])
                                        : (uint16_t)(v[1] << 8 | v[0]);
}

static int visit(void *arg, const struct hdx_ds_elem *e)
{
    struct scan *s = arg;
    if (s->in_frags) {
        if (e->group == 0xFFFE && e->element == 0xE0DD) { /* the fragments end */
            s->in_frags = 0;
            return 1; /* nothing after the pixel data is needed */
        }
        if (e->group == 0xFFFE && e->element == 0xE000 && e->depth == 1) {
            if (s->nfrags == FRAGS_MAX) {
                s->too_many = 1;
                return 1;
            }
            if (s->nfrags == s->cap) {
                size_t nc = s->cap ? s->cap * 2 : 64;
                struct frag *f = realloc(s->frags, nc * sizeof(*f));
                if (!f) {
                    s->nomem = 1;
                    return 1;
                }
                s->frags = f;
                s->cap = nc;
            }
            s->frags[s->nfrags++] = (struct frag){e->offset, s->base + e->offset + 8, e->length};
        }
        return 0;
    }
    if (e->depth != 0) return 0;
    uint32_t tag = (uint32_t)e->group << 16 | e->element;
    if (tag == 0x7FE00010) {
        s->have_pixels = 1;
        if (e->length == HDX_DS_UNDEFINED) {
            s->encapsulated = 1;
            s->in_frags = 1;
            return 0;
        }
        s->native = e->value;
        s->native_len = e->value_len;
        return 1;
    }
    if (tag == 0x00280008 && e->value && e->value_len < sizeof(s->nframes)) {
        memcpy(s->nframes, e->value, e->value_len);
        s->nframes[e->value_len] = 0;
        return 0;
    }
    if (!e->value || e->value_len != 2) return 0;
    uint16_t v = us_value(s, e->value);
    switch (tag) {
    case 0x00280002:
        s->spp = v, s->have_spp = 1;
        break;
    case 0x00280010:
        s->rows = v, s->have_rows = 1;
        break;
    case 0x00280011:
        s->cols = v, s->have_cols = 1;
        break;
    case 0x00280100:
        s->bits = v, s->have_bits = 1;
        break;
    }
    return 0;
}

/* Number of Frames (IS): absent is 1. 0 when malformed or out of range. */
static uint32_t frame_count(const char *is)
{
    const char *p = is;
    while (*p == ' ')
        p++;
    if (!*p) return 1;
    if (*p == '+') p++;
    uint64_t v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > HDX_FRAMES_MAX) return 0;
    }
    while (*p == ' ')
        p++;
    return digits && !*p && v >= 1 ? (uint32_t)v : 0;
}

static int copy_out(const uint8_t *p, size_t len, uint8_t **out, size_t *out_len)
{
    *out = malloc(len ? len : 1);
    if (!*out) return HDX_E_NOMEM;
    if (len) memcpy(*out, p, len);
    *out_len = len;
    return HDX_OK;
}

/* Fragments [a, b) of s concatenated. */
static int concat(const struct scan *s, size_t a, size_t b, uint8_t **out, size_t *out_len)
{
    size_t total = 0;
    for (size_t i = a; i < b; i++)
        total += s->frags[i].len; /* bounded by the data set's size */
    uint8_t *buf = malloc(total ? total : 1);
    if (!buf) return HDX_E_NOMEM;
    size_t o = 0;
    for (size_t i = a; i < b; i++) {
        memcpy(buf + o, s->frags[i].p, s->frags[i].len);
        o += s->frags[i].len;
    }
    *out = buf;
    *out_len = total;
    return HDX_OK;
}

static uint32_t u32_at(const struct scan *s, const uint8_t *p)
{
    return s->syn == HDX_DS_EXPLICIT_BE
               ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
               : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static int encapsulated_frame(const struct scan *s, uint32_t nframes, uint32_t k, uint8_t **out,
                              size_t *out_len, const char **why)
{
    if (s->nfrags < 2) {
        *why = "encapsulated pixel data without a fragment";
        return HDX_E_INVAL;
    }
    size_t ndata = s->nfrags - 1; /* the first item is the Basic Offset Table */
    if (nframes == 1) return concat(s, 1, s->nfrags, out, out_len);
    if (ndata == nframes) return concat(s, k, k + 1, out, out_len);
    const struct frag *bot = &s->frags[0];
    if (bot->len != 4 * (size_t)nframes) {
        *why = "the frames cannot be told apart: no Basic Offset Table";
        return HDX_E_INVAL;
    }
    /* offsets from the first fragment's item tag, ascending (PS3.5 A.4) */
    uint32_t start = u32_at(s, bot->p + 4 * (size_t)(k - 1));
    uint64_t end = k < nframes ? u32_at(s, bot->p + 4 * (size_t)k) : UINT64_MAX;
    if (end != UINT64_MAX && end < start) {
        *why = "the Basic Offset Table is not ascending";
        return HDX_E_INVAL;
    }
    size_t first = s->frags[1].off, a = 0, b = 0;
    for (size_t i = 1; i < s->nfrags; i++) {
        uint64_t rel = s->frags[i].off - first;
        if (rel < start) continue;
        if (rel >= end) break;
        if (!a) a = i;
        b = i + 1;
    }
    if (!a || (uint64_t)(s->frags[a].off - first) != start) {
        *why = "the Basic Offset Table does not point at a fragment";
        return HDX_E_INVAL;
    }
    return concat(s, a, b, out, out_len);
}

int hdx_dcm_frame(const uint8_t *p, size_t n, enum hdx_ds_syntax syn, int encapsulated, uint32_t k,
                  uint8_t **out, size_t *out_len, uint32_t *nframes, const char **why)
{
    struct scan s;
    struct hdx_ds_limits lim;
    struct hdx_ds_error err = {0};
    memset(&s, 0, sizeof(s));
    s.base = p;
    s.syn = syn;
    *out = NULL;
    *out_len = 0;
    *nframes = 0;
    *why = "";
    hdx_ds_limits_default(&lim);
    int rc = hdx_ds_walk(p, n, syn, &lim, visit, &s, &err);
    if (rc == HDX_OK && s.nomem) rc = HDX_E_NOMEM;
    if (rc != HDX_OK) {
        *why = rc == HDX_E_INVAL && err.why ? err.why : "";
        free(s.frags);
        return rc;
    }
    rc = HDX_E_INVAL;
    uint32_t nf = frame_count(s.nframes);
    if (!s.have_pixels) {
        rc = HDX_E_NOTFOUND;
        *why = "the instance has no pixel data";
    } else if (s.too_many) {
        *why = "too many pixel data fragments";
    } else if (!nf) {
        *why = "Number of Frames is malformed or out of range";
    } else if (s.encapsulated != (encapsulated != 0)) {
        *why = "the pixel data's encoding does not match its transfer syntax";
    } else if (k == 0 || k > nf) {
        *nframes = nf;
        rc = HDX_E_NOTFOUND;
        *why = "no such frame";
    } else if (s.encapsulated) {
        *nframes = nf;
        rc = encapsulated_frame(&s, nf, k, out, out_len, why);
    } else if (!s.have_rows || !s.have_cols || !s.have_bits || !s.rows || !s.cols) {
        *why = "Rows, Columns or Bits Allocated is missing";
    } else if (s.bits % 8 != 0 || s.bits > 64) {
        *why = "Bits Allocated is not a multiple of 8 (packed frames are not served)";
    } else {
        uint64_t size =
            (uint64_t)s.rows * s.cols * (s.have_spp && s.spp ? s.spp : 1) * (s.bits / 8);
        *nframes = nf;
        if (size * nf > s.native_len) {
            *why = "the pixel data is shorter than its frames";
        } else {
            rc = copy_out(s.native + size * (k - 1), (size_t)size, out, out_len);
        }
    }
    free(s.frags);
    return rc;
}

/* ---------- bulk data by path ---------- */

int hdx_bulk_path_parse(const char *s, struct hdx_bulk_path *bp)
{
    memset(bp, 0, sizeof(*bp));
    size_t level = 0;
    for (;;) {
        uint32_t t = 0;
        for (int i = 0; i < 8; i++, s++) {
            int c = *s, v = c >= '0' && c <= '9'   ? c - '0'
                            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                   : -1;
            if (v < 0) return -1;
            t = t << 4 | (uint32_t)v;
        }
        bp->tags[level] = t;
        if (!*s) {
            bp->depth = level;
            return 0;
        }
        if (*s++ != '/' || level == HDX_BULK_DEPTH_MAX) return -1;
        uint32_t idx = 0;
        int digits = 0;
        for (; *s >= '0' && *s <= '9'; s++, digits++) {
            if (digits == 6) return -1;
            idx = idx * 10 + (uint32_t)(*s - '0');
        }
        if (!digits || *s++ != '/') return -1;
        bp->items[level++] = idx;
    }
}

struct bulk {
    const struct hdx_bulk_path *bp;
    /* where the walk is: the sequence and item index at each depth above 0 */
    uint32_t seq[HDX_BULK_DEPTH_MAX + 2];
    int64_t item[HDX_BULK_DEPTH_MAX + 2];
    const struct hdx_ds_elem *found;
    struct hdx_ds_elem hit;
};

static int on_path(const struct bulk *b, unsigned depth)
{
    for (unsigned d = 1; d <= depth; d++)
        if (b->seq[d] != b->bp->tags[d - 1] || b->item[d] != (int64_t)b->bp->items[d - 1]) return 0;
    return 1;
}

static int bulk_visit(void *arg, const struct hdx_ds_elem *e)
{
    struct bulk *b = arg;
    unsigned d = e->depth;
    if (d > HDX_BULK_DEPTH_MAX) return 0;
    if (e->group == 0xFFFE) {
        if (e->element == 0xE000 && d >= 1) b->item[d]++;
        return 0;
    }
    uint32_t tag = (uint32_t)e->group << 16 | e->element;
    /* what follows at depth d + 1 belongs to this attribute, if it is a sequence */
    b->seq[d + 1] = tag;
    b->item[d + 1] = -1;
    if (d == b->bp->depth && tag == b->bp->tags[d] && on_path(b, d)) {
        b->hit = *e;
        b->found = &b->hit;
        return 1;
    }
    return 0;
}

static size_t swap_unit(const char *vr)
{
    if (!strcmp(vr, "OW") || !strcmp(vr, "US") || !strcmp(vr, "SS")) return 2;
    if (!strcmp(vr, "OF") || !strcmp(vr, "OL") || !strcmp(vr, "FL") || !strcmp(vr, "UL") ||
        !strcmp(vr, "SL"))
        return 4;
    if (!strcmp(vr, "OD") || !strcmp(vr, "OV") || !strcmp(vr, "FD") || !strcmp(vr, "SV") ||
        !strcmp(vr, "UV"))
        return 8;
    return 1;
}

int hdx_dcm_bulk(const uint8_t *p, size_t n, enum hdx_ds_syntax syn, const struct hdx_bulk_path *bp,
                 uint8_t **out, size_t *out_len, const char **why)
{
    struct bulk b;
    struct hdx_ds_limits lim;
    struct hdx_ds_error err = {0};
    memset(&b, 0, sizeof(b));
    b.bp = bp;
    *out = NULL;
    *out_len = 0;
    *why = "";
    hdx_ds_limits_default(&lim);
    int rc = hdx_ds_walk(p, n, syn, &lim, bulk_visit, &b, &err);
    if (rc != HDX_OK) {
        *why = rc == HDX_E_INVAL && err.why ? err.why : "";
        return rc;
    }
    if (!b.found || !b.found->value) {
        *why = b.found ? "the attribute has no value of its own (a sequence, or encapsulated "
                         "pixel data: its frames are its bulk data)"
                       : "no such attribute";
        return HDX_E_NOTFOUND;
    }
    rc = copy_out(b.found->value, b.found->value_len, out, out_len);
    size_t unit = swap_unit(b.found->vr);
    if (rc == HDX_OK && syn == HDX_DS_EXPLICIT_BE && unit > 1)
        for (size_t i = 0; i + unit <= *out_len; i += unit)
            for (size_t j = 0; j < unit / 2; j++) {
                uint8_t t = (*out)[i + j];
                (*out)[i + j] = (*out)[i + unit - 1 - j];
                (*out)[i + unit - 1 - j] = t;
            }
    return rc;
}
