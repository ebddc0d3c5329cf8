/* query: a C-FIND identifier into a catalogue query and its answers (see query.h).
 *
 * DESIGN: everything about the untrusted identifier is judged here, before the catalogue is
 * looked at: a key that cannot be compiled refuses the whole query (never "match everything").
 * Keys of levels below the query's are neither matched nor returned (PS3.4 C.4.1.2.1 forbids
 * them in a hierarchical query; a relational SCU gets its own level's answer). A value is read
 * to its last non-space, non-NUL byte; a NUL inside it is refused (it would cut the C string).
 * Answers are written from the catalogue's UTF-8: converted to the query's set when it is not
 * UTF-8, and when one value has no encoding there the whole answer is written in ISO_IR 192
 * instead, so (0008,0005) always says the truth for every value in it. */
#include "dicom/query.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/charset.h"
#include "dicom/match.h"

#define VALUE_MAX 1024 /* bytes of one key as sent */

struct id_elem {
    uint16_t group, element;
    const uint8_t *value;
    size_t len;
};

struct id_walk {
    struct id_elem e[HDX_DQUERY_KEYS_MAX];
    size_t n;
    int too_many;
};

static int collect_top(void *arg, const struct hdx_ds_elem *e)
{
    struct id_walk *w = arg;
    if (e->depth != 0 || !e->vr[0]) return 0; /* inside a sequence, or an item tag */
    if (w->n == HDX_DQUERY_KEYS_MAX) {
        w->too_many = 1;
        return 1;
    }
    struct id_elem *x = &w->e[w->n++];
    x->group = e->group;
    x->element = e->element;
    x->value = e->value;
    x->len = e->value ? e->value_len : 0;
    return 0;
}

static int value_str(const struct id_elem *x, char *out, size_t cap)
{
    size_t n = x->len;
    while (n && (x->value[n - 1] == ' ' || x->value[n - 1] == '\0'))
        n--;
    if (n >= cap) return HDX_E_TOOBIG;
    if (n) memcpy(out, x->value, n);
    out[n] = '\0';
    return memchr(out, '\0', n) ? HDX_E_INVAL : HDX_OK;
}

static void ret_add(struct hdx_dquery *q, uint16_t g, uint16_t e, const struct hdx_dcat_attr *a)
{
    for (size_t i = 0; i < q->nret; i++)
        if (q->ret[i].group == g && q->ret[i].element == e) return;
    size_t i = q->nret++;
    uint32_t t = (uint32_t)g << 16 | e;
    while (i > 0 && ((uint32_t)q->ret[i - 1].group << 16 | q->ret[i - 1].element) > t) {
        q->ret[i] = q->ret[i - 1];
        i--;
    }
    q->ret[i] = (struct hdx_dquery_ret){g, e, a};
}

static int refuse(uint16_t *status, uint16_t code, char *why, size_t cap, const char *text,
                  const char *attr, int rc)
{
    *status = code;
    if (attr)
        snprintf(why, cap, "%s: %s", attr, text);
    else
        snprintf(why, cap, "%s", text);
    return rc;
}

/* One key's value (UTF-8, ul bytes) compiled into q->keys[q->nkeys]. */
static int compile_key(struct hdx_dquery *q, const struct hdx_dcat_attr *a, const char *u8,
                       size_t ul, size_t *nm, const char **w)
{
    /* Modalities in Study may list values: any of them matches. */
    int multi = a->group == 0x0008 && a->element == 0x0061;
    struct hdx_dcat_key *k = &q->keys[q->nkeys++];
    const char *s = u8, *end = u8 + ul;
    k->attr = a;
    k->m = &q->m[*nm];
    k->nm = 0;
    do {
        const char *bs = multi ? memchr(s, '\\', (size_t)(end - s)) : NULL;
        size_t len = bs ? (size_t)(bs - s) : (size_t)(end - s);
        if (k->nm == HDX_DQUERY_ALT_MAX || *nm == q->m_cap) {
            *w = "more than 16 values";
            return HDX_E_INVAL;
        }
        if (hdx_dmatch_compile(a->match, s, len, &q->m[*nm], w) != HDX_OK) return HDX_E_INVAL;
        ++*nm;
        k->nm++;
        s = bs ? bs + 1 : end;
    } while (s < end);
    return HDX_OK;
}

int hdx_dquery_parse(const uint8_t *id, size_t len, enum hdx_ds_syntax syn, int study_root,
                     struct hdx_dquery *q, uint16_t *status, char *why, size_t cap)
{
    char val[VALUE_MAX + 1], u8[VALUE_MAX * 4 + 1];
    const char *w = NULL;
    struct hdx_ds_limits lim;
    struct hdx_ds_error err = {0};
    struct id_walk *iw = NULL;
    int rc = HDX_OK;
    memset(q, 0, sizeof(*q));
    q->syn = syn;
    if (len > HDX_DQUERY_ID_MAX)
        return refuse(status, 0xC000, why, cap, "identifier over 64 KiB", NULL, HDX_E_TOOBIG);
    if (!(iw = calloc(1, sizeof(*iw))))
        return refuse(status, 0xA700, why, cap, "server out of memory", NULL, HDX_E_NOMEM);
    hdx_ds_limits_default(&lim);
    lim.max_depth = 8;
    if (hdx_ds_walk(id, len, syn, &lim, collect_top, iw, &err) != HDX_OK || iw->too_many) {
        rc = refuse(status, 0xC000, why, cap,
                    iw->too_many ? "more than 128 keys"
                    : err.why    ? err.why
                                 : "malformed",
                    "cannot understand the identifier", HDX_E_INVAL);
        goto out;
    }
    /* A compiled key is large (a UID list holds 128 UIDs): room for what was sent, plus the
     * values of one multi-valued key. */
    q->m_cap = iw->n + HDX_DQUERY_ALT_MAX;
    if (!(q->m = calloc(q->m_cap, sizeof(*q->m)))) {
        rc = refuse(status, 0xA700, why, cap, "server out of memory", NULL, HDX_E_NOMEM);
        goto out;
    }
    /* The level and the character set come first: every key depends on them. */
    for (size_t i = 0; i < iw->n; i++) {
        const struct id_elem *x = &iw->e[i];
        if (x->group != 0x0008 || (x->element != 0x0052 && x->element != 0x0005)) continue;
        if (value_str(x, val, sizeof(val)) != HDX_OK) {
            rc = refuse(status, 0xA900, why, cap,
                        "Query/Retrieve Level or Specific Character Set malformed", NULL,
                        HDX_E_INVAL);
            goto out;
        }
        if (x->element == 0x0052) {
            q->level = hdx_dcat_level_parse(val);
        } else if (strlen(val) >= sizeof(q->charset)) {
            rc = refuse(status, 0xC000, why, cap, "not supported: too long",
                        "Specific Character Set", HDX_E_INVAL);
            goto out;
        } else {
            memcpy(q->charset, val, strlen(val) + 1);
        }
    }
    if (!q->level || (q->level == HDX_DCAT_PATIENT && study_root)) {
        rc = refuse(status, 0xA900, why, cap,
                    q->level ? "PATIENT level is not in the Study Root model"
                             : "Query/Retrieve Level (0008,0052) missing or not PATIENT, STUDY, "
                               "SERIES or IMAGE",
                    NULL, HDX_E_INVAL);
        goto out;
    }
    if (hdx_charset_open(q->charset, &q->cs, &w) != HDX_OK) {
        q->cs = NULL;
        rc = refuse(status, 0xC000, why, cap, w ? w : "not supported",
                    "Specific Character Set not supported", HDX_E_INVAL);
        goto out;
    }
    q->cs_utf8 = hdx_charset_is_utf8(q->cs);
    ret_add(q, 0x0008, 0x0005, NULL);
    ret_add(q, 0x0008, 0x0052, NULL);
    size_t klen = 0, nm = 0;
    for (size_t i = 0; i < iw->n; i++) {
        const struct id_elem *x = &iw->e[i];
        if (x->group == 0x0008 && (x->element == 0x0052 || x->element == 0x0005)) continue;
        if (x->element == 0x0000 || x->group < 0x0008) continue; /* group lengths, meta */
        const struct hdx_dcat_attr *a = hdx_dcat_attr_find(x->group, x->element);
        if (!a) { /* an optional key hdx neither matches nor returns */
            q->unsupported = 1;
            continue;
        }
        if (a->level > q->level) continue;
        ret_add(q, x->group, x->element, a);
        int n =
            snprintf(q->names + klen, sizeof(q->names) - klen, "%s%s", klen ? "," : "", a->keyword);
        if (n > 0 && (size_t)n < sizeof(q->names) - klen) klen += (size_t)n;
        size_t ul = 0;
        int vr = value_str(x, val, sizeof(val));
        if (vr == HDX_OK && (a->match == HDX_DMATCH_TEXT || a->match == HDX_DMATCH_PN))
            vr = hdx_charset_to_utf8(q->cs, val, strlen(val), u8, sizeof(u8), &ul);
        else if (vr == HDX_OK)
            ul = (size_t)snprintf(u8, sizeof(u8), "%s", val);
        if (vr != HDX_OK) {
            rc = refuse(status, 0xA900, why, cap,
                        vr == HDX_E_TOOBIG ? "key too long"
                                           : "bytes not valid in the Specific Character Set",
                        a->keyword, HDX_E_INVAL);
            goto out;
        }
        if (compile_key(q, a, u8, ul, &nm, &w) != HDX_OK) {
            rc = refuse(status, 0xA900, why, cap, w ? w : "malformed key", a->keyword, HDX_E_INVAL);
            goto out;
        }
    }
out:
    sodium_memzero(val, sizeof(val));
    sodium_memzero(u8, sizeof(u8));
    free(iw);
    return rc;
}

void hdx_dquery_drop_keys(struct hdx_dquery *q)
{
    if (q->m) {
        sodium_memzero(q->m, q->m_cap * sizeof(*q->m));
        free(q->m);
    }
    q->m = NULL;
    q->m_cap = 0;
    q->nkeys = 0;
}

void hdx_dquery_free(struct hdx_dquery *q)
{
    if (!q) return;
    hdx_dquery_drop_keys(q);
    hdx_charset_close(q->cs);
    q->cs = NULL;
}

static int answer_in(const struct hdx_dquery *q, const struct hdx_dcat *cat, uint32_t id, int utf8,
                     struct hdx_dsenc *e)
{
    static const char *const levels[] = {"", "PATIENT", "STUDY", "SERIES", "IMAGE"};
    char buf[256], conv[VALUE_MAX * 4];
    int non_ascii = 0;
    for (size_t i = 0; i < q->nret && !non_ascii; i++) {
        if (!q->ret[i].attr) continue;
        const char *v = hdx_dcat_value(cat, q->level, id, q->ret[i].attr, buf, sizeof(buf));
        for (const unsigned char *p = (const unsigned char *)v; *p && !non_ascii; p++)
            non_ascii = *p >= 0x80;
    }
    const char *charset = !non_ascii ? (q->charset[0] ? q->charset : NULL)
                          : utf8     ? "ISO_IR 192"
                                     : q->charset;
    hdx_dsenc_init(e, q->syn, HDX_DQUERY_ID_MAX);
    for (size_t i = 0; i < q->nret; i++) {
        const struct hdx_dquery_ret *r = &q->ret[i];
        int rc;
        if (!r->attr && r->element == 0x0005) {
            if (!charset) continue;
            rc = hdx_dsenc_str(e, r->group, r->element, "CS", charset);
        } else if (!r->attr) {
            rc = hdx_dsenc_str(e, r->group, r->element, "CS", levels[q->level]);
        } else {
            const char *v = hdx_dcat_value(cat, q->level, id, r->attr, buf, sizeof(buf));
            size_t vl = strlen(v), n = 0;
            if (non_ascii && !utf8 && vl) {
                rc = hdx_charset_from_utf8(q->cs, v, vl, conv, sizeof(conv), &n);
                if (rc == HDX_OK) rc = hdx_dsenc_add(e, r->group, r->element, r->attr->vr, conv, n);
                sodium_memzero(conv, n);
                if (rc != HDX_OK) return HDX_E_INVAL;
            } else {
                rc = hdx_dsenc_add(e, r->group, r->element, r->attr->vr, v, vl);
            }
        }
        if (rc != HDX_OK) return rc;
    }
    return HDX_OK;
}

int hdx_dquery_answer(const struct hdx_dquery *q, const struct hdx_dcat *cat, uint32_t id,
                      struct hdx_dsenc *e)
{
    int rc = answer_in(q, cat, id, q->cs_utf8 || !q->cs, e);
    if (rc == HDX_E_INVAL && !q->cs_utf8 && q->cs) { /* not in the query's set: all in UTF-8 */
        hdx_dsenc_free(e);
        rc = answer_in(q, cat, id, 1, e);
    }
    return rc;
}
