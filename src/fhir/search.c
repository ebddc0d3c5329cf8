/* fhir/search: FHIR search parameters into index queries (search.h). */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fhir/search.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            ch = h * 16 + l;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || o + 1 >= cap) return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (int)o;
}

int hdx_fhir_params_split(const char *query, struct hdx_fhir_qparam *p, size_t max, size_t *n)
{
    *n = 0;
    for (const char *s = query; *s;) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (len) {
            if (*n == max || !eq) return -1;
            struct hdx_fhir_qparam *q = &p[(*n)++];
            memset(q, 0, sizeof(*q));
            if (pct_decode(s, (size_t)(eq - s), q->name, sizeof(q->name)) <= 0 ||
                pct_decode(eq + 1, len - (size_t)(eq - s) - 1, q->value, sizeof(q->value)) < 0)
                return -1;
            /* a name is what FHIR spells names with (refusals quote it) */
            for (const char *c = q->name; *c; c++)
                if (!isalnum((unsigned char)*c) && !strchr("_-:.", *c)) return -1;
        }
        s += len + (amp ? 1 : 0);
    }
    return 0;
}

int hdx_fhir_prefix_parse(const char *v, enum hdx_fhir_prefix *p)
{
    static const struct {
        const char *s;
        enum hdx_fhir_prefix p;
    } pf[] = {{"eq", HDX_FHIR_EQ}, {"ne", HDX_FHIR_NE}, {"lt", HDX_FHIR_LT},
              {"le", HDX_FHIR_LE}, {"gt", HDX_FHIR_GT}, {"ge", HDX_FHIR_GE}};
    *p = HDX_FHIR_EQ;
    for (size_t i = 0; i < sizeof(pf) / sizeof(pf[0]); i++)
        if (!strncmp(v, pf[i].s, 2)) {
            *p = pf[i].p;
            return 2;
        }
    return 0;
}

/* A token group from "a,b,c" (each "system|code", "|code" or "code"; a name lower-cased and
 * cut as indexed, fhir/resource.c). */
static int token_group(struct hdx_keyctx *kc, struct hdx_fhir_query *q, enum hdx_fhir_param param,
                       const char *value)
{
    if (q->ngroups == HDX_FHIR_GROUPS_MAX) return -1;
    size_t g = q->ngroups;
    q->groups[g].param = (uint8_t)param;
    q->groups[g].n = 0;
    int rc = 0;
    for (const char *s = value; rc == 0;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char v[520];
        size_t vl = 0;
        if (!len || len + 2 > sizeof(v) || q->groups[g].n == HDX_FHIR_GROUP_TOKENS_MAX) return -1;
        if (param == HDX_FP_NAME) {
            /* starts-with: the prefix as indexed, at most 24 bytes on a character boundary */
            for (size_t i = 0; i < len && vl < 24;) {
                unsigned char ch = (unsigned char)s[i];
                size_t cl = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : 4;
                if (i + cl > len || vl + cl > 24) break;
                for (size_t k = 0; k < cl; k++)
                    v[vl++] = ch < 0x80 ? (char)tolower(ch) : s[i + k];
                i += cl;
            }
            if (!vl) return -1;
        } else if (param == HDX_FP_BIRTHDATE || memchr(s, '|', len)) {
            if (len == 1 && s[0] == '|') return -1;
            memcpy(v, s, len);
            vl = len;
        } else {
            v[0] = '|';
            memcpy(v + 1, s, len);
            vl = len + 1;
        }
        rc = hdx_fhir_token(kc, param, v, vl, q->groups[g].tok[q->groups[g].n]);
        sodium_memzero(v, sizeof(v));
        if (rc != HDX_OK) return rc;
        q->groups[g].n++;
        if (!comma) break;
        s = comma + 1;
    }
    q->ngroups++;
    return 0;
}

static int range_add(struct hdx_fhir_query *q, const char *value, int on_updated)
{
    if (q->nranges == HDX_FHIR_RANGES_MAX) return -1;
    struct hdx_fhir_range *r = &q->ranges[q->nranges];
    int skip = hdx_fhir_prefix_parse(value, &r->prefix);
    r->on_updated = on_updated;
    if (hdx_fhir_time_range(value + skip, &r->lo, &r->hi)) return -1;
    q->nranges++;
    return 0;
}

static int number(const char *v, unsigned long max, size_t *out)
{
    char *end;
    if (!*v || !isdigit((unsigned char)*v)) return -1;
    unsigned long k = strtoul(v, &end, 10);
    if (*end || k > max) return -1;
    *out = k;
    return 0;
}

int hdx_fhir_search_parse(const char *type, const char *query, struct hdx_keyctx *kc,
                          struct hdx_fhir_search *out, char *bad, size_t cap)
{
    memset(out, 0, sizeof(*out));
    bad[0] = '\0';
    out->count = HDX_FHIR_COUNT_DEFAULT;
    struct hdx_fhir_query *q = &out->q;
    q->type = type;
    if (hdx_fhir_params_split(query, out->params, HDX_FHIR_QPARAMS_MAX, &out->nparams)) {
        snprintf(bad, cap, "the query string is malformed");
        return HDX_E_INVAL;
    }
    int is_obs = !strcmp(type, "Observation"), is_pat = !strcmp(type, "Patient");
    int has_ident = is_pat || !strcmp(type, "Device") || !strcmp(type, "Encounter");
    for (size_t i = 0; i < out->nparams; i++) {
        const char *n = out->params[i].name, *v = out->params[i].value;
        int rc = 0;
        if (!strcmp(n, "_count")) {
            rc = number(v, HDX_FHIR_COUNT_MAX, &out->count);
            if (!rc && !out->count) out->summary_count = 1; /* R4: _count=0 is the total */
        } else if (!strcmp(n, "_offset")) {
            rc = number(v, 1000000, &out->offset);
        } else if (!strcmp(n, "_summary")) {
            if (strcmp(v, "count") && strcmp(v, "false")) rc = -1;
            out->summary_count |= !strcmp(v, "count");
        } else if (!strcmp(n, "_id")) {
            if (!hdx_fhir_id_valid(v) || q->id) rc = -1;
            q->id = v;
        } else if (!strcmp(n, "_lastUpdated")) {
            rc = range_add(q, v, 1);
        } else if (!strcmp(n, "_sort") && is_obs) {
            if (!strcmp(v, "-date"))
                q->sort_date_desc = 1;
            else if (!strcmp(v, "date"))
                q->sort_date = 1;
            else
                rc = -1;
        } else if (!strcmp(n, "_include") && is_obs) {
            if (strcmp(v, "Observation:subject") && strcmp(v, "Observation:patient")) rc = -1;
            out->include_subject = 1;
        } else if (!strcmp(n, "_format")) {
            if (strcmp(v, "json") && strcmp(v, "application/json") &&
                strcmp(v, "application/fhir+json"))
                rc = -1; /* JSON is all hdx speaks */
        } else if (!strcmp(n, "_pretty")) {
            if (strcmp(v, "true") && strcmp(v, "false")) rc = -1;
        } else if (!strcmp(n, "purpose")) {
            /* hdx's own: the purpose of use, read where the principal is */
        } else if (is_obs && (!strcmp(n, "patient") || !strcmp(n, "subject"))) {
            const char *id = !strncmp(v, "Patient/", 8) ? v + 8 : v;
            if (out->patient_id[0] || !hdx_fhir_id_valid(id))
                rc = -1;
            else
                memcpy(out->patient_id, id, strlen(id) + 1);
        } else if (is_obs && !strcmp(n, "code")) {
            rc = token_group(kc, q, HDX_FP_CODE, v);
        } else if (is_obs && !strcmp(n, "category")) {
            rc = token_group(kc, q, HDX_FP_CATEGORY, v);
        } else if (is_obs && !strcmp(n, "date")) {
            rc = range_add(q, v, 0);
        } else if (has_ident && !strcmp(n, "identifier")) {
            rc = token_group(kc, q, HDX_FP_IDENTIFIER, v);
        } else if (is_pat && !strcmp(n, "name")) {
            rc = token_group(kc, q, HDX_FP_NAME, v);
        } else if (is_pat && !strcmp(n, "birthdate")) {
            /* a birth date is only matched exactly, at the precision given (docs/FHIR.md) */
            enum hdx_fhir_prefix pf;
            int64_t lo, hi;
            if (hdx_fhir_prefix_parse(v, &pf) || strlen(v) > 10 || hdx_fhir_time_range(v, &lo, &hi))
                rc = -1;
            else
                rc = token_group(kc, q, HDX_FP_BIRTHDATE, v);
        } else {
            snprintf(bad, cap, "search parameter %.39s is not supported for %.31s", n, type);
            return HDX_E_INVAL;
        }
        if (rc > 0 || rc < -1) return rc; /* the key context's error */
        if (rc < 0) {
            snprintf(bad, cap, "the value of %.39s is not valid", n);
            return HDX_E_INVAL;
        }
    }
    return HDX_OK;
}
