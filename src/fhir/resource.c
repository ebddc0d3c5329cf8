/* fhir/resource: reading, dating, tokenising and answering FHIR resources (resource.h). */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "fhir/resource.h"

/* ---------- reading ---------- */

/* Nesting is counted on the bytes, strings skipped, so that jansson's own recursion never
 * sees more than the limit. */
static int depth_ok(const uint8_t *b, size_t len)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = b[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        if (ch == '"')
            in_str = 1;
        else if (ch == '{' || ch == '[') {
            if (++depth > HDX_FHIR_NEST_MAX) return 0;
        } else if (ch == '}' || ch == ']')
            depth--;
    }
    return 1;
}

int hdx_fhir_parse(const uint8_t *body, size_t len, json_t **out, char *why, size_t cap)
{
    *out = NULL;
    if (len > HDX_FHIR_BODY_MAX) {
        snprintf(why, cap, "the resource is over %d bytes", HDX_FHIR_BODY_MAX);
        return HDX_E_TOOBIG;
    }
    if (!len) {
        snprintf(why, cap, "the body is empty");
        return HDX_E_INVAL;
    }
    if (!depth_ok(body, len)) {
        snprintf(why, cap, "nesting deeper than %d levels", HDX_FHIR_NEST_MAX);
        return HDX_E_INVAL;
    }
    json_error_t e;
    json_t *v = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        /* jansson's text names the problem and a position, never the bytes themselves, except
         * for a duplicate key, which it quotes: that key is said without its name. */
        if (strstr(e.text, "duplicate"))
            snprintf(why, cap, "malformed JSON: a duplicate object key (line %d)", e.line);
        else
            snprintf(why, cap, "malformed JSON at line %d column %d", e.line, e.column);
        return HDX_E_INVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(why, cap, "a resource is a JSON object");
        return HDX_E_INVAL;
    }
    *out = v;
    return HDX_OK;
}

/* ---------- time ---------- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

static int64_t epoch_us(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000000;
}

int hdx_fhir_time_range(const char *s, int64_t *lo, int64_t *hi)
{
    size_t n = strlen(s);
    int y, mo = 1, d = 1, h = 0, mi = 0, sec = 0;
    if (n < 4 || digits(s, 4, &y) || y < 1) return -1;
    if (n == 4) {
        *lo = epoch_us(y, 1, 1, 0, 0, 0);
        *hi = epoch_us(y + 1, 1, 1, 0, 0, 0);
        return 0;
    }
    if (n < 7 || s[4] != '-' || digits(s + 5, 2, &mo) || mo < 1 || mo > 12) return -1;
    if (n == 7) {
        *lo = epoch_us(y, mo, 1, 0, 0, 0);
        *hi = mo == 12 ? epoch_us(y + 1, 1, 1, 0, 0, 0) : epoch_us(y, mo + 1, 1, 0, 0, 0);
        return 0;
    }
    if (n < 10 || s[7] != '-' || digits(s + 8, 2, &d) || d < 1 || d > days_in(y, mo)) return -1;
    if (n == 10) {
        *lo = epoch_us(y, mo, d, 0, 0, 0);
        *hi = *lo + 86400LL * 1000000;
        return 0;
    }
    /* a time: hh:mm[:ss[.f+]] then Z or +hh:mm/-hh:mm (no zone: UTC, for search values) */
    const char *p = s + 10;
    if (*p != 'T' || digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi) || h > 23 ||
        mi > 59)
        return -1;
    p += 6;
    int64_t unit = 60LL * 1000000, frac = 0;
    if (*p == ':') {
        if (digits(p + 1, 2, &sec) || sec > 60) return -1;
        if (sec == 60) sec = 59; /* a leap second is dated inside its minute */
        p += 3;
        unit = 1000000;
        if (*p == '.') {
            p++;
            int nd = 0;
            int64_t scale = 100000;
            while (isdigit((unsigned char)*p)) {
                if (nd < 6) frac += (*p - '0') * scale;
                scale /= 10;
                nd++;
                p++;
            }
            if (!nd || nd > 9) return -1;
            unit = nd >= 6 ? 1 : (int64_t)(scale ? scale * 10 : 1);
        }
    }
    int64_t off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 14 || om > 59)
            return -1;
        off = ((int64_t)oh * 60 + om) * 60 * 1000000 * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p) return -1;
    *lo = epoch_us(y, mo, d, h, mi, sec) + frac - off;
    *hi = *lo + unit;
    return 0;
}

void hdx_fhir_instant(int64_t us, char *out, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

int hdx_fhir_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > HDX_FHIR_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return 0;
    return 1;
}

void hdx_fhir_new_id(char out[33])
{
    uint8_t r[16];
    randombytes_buf(r, sizeof(r));
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

/* ---------- tokens ---------- */

int hdx_fhir_token(struct hdx_keyctx *kc, enum hdx_fhir_param p, const char *value, size_t len,
                   uint8_t out[HDX_BLIND_LEN])
{
    uint8_t buf[1 + 1024];
    if (len > sizeof(buf) - 1) len = sizeof(buf) - 1; /* a longer value is its prefix */
    buf[0] = (uint8_t)p;
    memcpy(buf + 1, value, len);
    int rc = hdx_keyctx_blind(kc, HDX_FHIR_TOKEN_DOMAIN, buf, len + 1, out);
    sodium_memzero(buf, len + 1);
    return rc;
}

static int add_token(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, enum hdx_fhir_param p,
                     const char *v, size_t len)
{
    if (e->ntok == HDX_FHIR_TOKENS_MAX) return HDX_OK;
    struct hdx_fhir_token *t = &e->tok[e->ntok];
    int rc = hdx_fhir_token(kc, p, v, len, t->tok);
    if (rc != HDX_OK) return rc;
    t->param = (uint8_t)p;
    for (size_t i = 0; i < e->ntok; i++) /* a repeat is indexed once */
        if (e->tok[i].param == t->param && !memcmp(e->tok[i].tok, t->tok, HDX_BLIND_LEN))
            return HDX_OK;
    e->ntok++;
    return HDX_OK;
}

/* "system|code" and "|code" of a system/code (or system/value) pair. */
static int add_pair(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, enum hdx_fhir_param p,
                    const char *system, const char *code)
{
    char buf[600];
    if (!code || !*code) return HDX_OK;
    int n = snprintf(buf, sizeof(buf), "|%s", code);
    int rc = n > 0 && (size_t)n < sizeof(buf) ? add_token(e, kc, p, buf, (size_t)n) : HDX_OK;
    if (rc == HDX_OK && system) {
        n = snprintf(buf, sizeof(buf), "%s|%s", system, code);
        if (n > 0 && (size_t)n < sizeof(buf)) rc = add_token(e, kc, p, buf, (size_t)n);
    }
    sodium_memzero(buf, sizeof(buf));
    return rc;
}

static int add_codings(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, enum hdx_fhir_param p,
                       const json_t *cc)
{
    size_t i;
    json_t *coding;
    json_array_foreach(json_object_get(cc, "coding"), i, coding)
    {
        int rc = add_pair(e, kc, p, json_string_value(json_object_get(coding, "system")),
                          json_string_value(json_object_get(coding, "code")));
        if (rc != HDX_OK) return rc;
    }
    return HDX_OK;
}

static int add_identifiers(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, const json_t *res)
{
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(res, "identifier"), i, id)
    {
        int rc =
            add_pair(e, kc, HDX_FP_IDENTIFIER, json_string_value(json_object_get(id, "system")),
                     json_string_value(json_object_get(id, "value")));
        if (rc != HDX_OK) return rc;
    }
    return HDX_OK;
}

/* Every prefix of a name part, lower-cased (ASCII) and cut on character boundaries, so that
 * name=Kes finds Kestrel ("starts with", case-insensitive: FHIR string search). */
#define NAME_PREFIX_MAX 24
static int add_name_part(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, const char *part)
{
    char low[NAME_PREFIX_MAX + 4];
    size_t n = 0;
    int rc = HDX_OK;
    for (const unsigned char *p = (const unsigned char *)part; *p && rc == HDX_OK;) {
        size_t clen = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : 4;
        if (n + clen > NAME_PREFIX_MAX) break;
        size_t k = 0;
        for (; k < clen && p[k]; k++)
            low[n++] = p[k] < 0x80 ? (char)tolower(p[k]) : (char)p[k];
        if (k < clen) break; /* a character cut short by the end: not a prefix of anything */
        p += clen;
        rc = add_token(e, kc, HDX_FP_NAME, low, n);
    }
    sodium_memzero(low, sizeof(low));
    return rc;
}

static int add_names(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, const json_t *res)
{
    size_t i, j;
    json_t *name, *given;
    json_array_foreach(json_object_get(res, "name"), i, name)
    {
        const char *family = json_string_value(json_object_get(name, "family"));
        int rc = family ? add_name_part(e, kc, family) : HDX_OK;
        json_array_foreach(json_object_get(name, "given"), j, given)
        {
            if (rc == HDX_OK && json_is_string(given))
                rc = add_name_part(e, kc, json_string_value(given));
        }
        if (rc != HDX_OK) return rc;
    }
    return HDX_OK;
}

static int add_birthdate(struct hdx_fhir_entry *e, struct hdx_keyctx *kc, const char *bd)
{
    size_t n = strlen(bd);
    int rc = HDX_OK;
    /* each precision the value has: 1970, 1970-05, 1970-05-12 */
    if (n >= 4) rc = add_token(e, kc, HDX_FP_BIRTHDATE, bd, 4);
    if (rc == HDX_OK && n >= 7) rc = add_token(e, kc, HDX_FP_BIRTHDATE, bd, 7);
    if (rc == HDX_OK && n >= 10) rc = add_token(e, kc, HDX_FP_BIRTHDATE, bd, 10);
    return rc;
}

static void set_date(struct hdx_fhir_entry *e, const char *lo_s, const char *hi_s)
{
    int64_t lo, hi, lo2, hi2;
    if (!lo_s || hdx_fhir_time_range(lo_s, &lo, &hi)) return;
    if (hi_s && !hdx_fhir_time_range(hi_s, &lo2, &hi2) && hi2 > hi) hi = hi2;
    e->has_date = 1;
    e->date_lo = lo;
    e->date_hi = hi;
}

int hdx_fhir_extract(const json_t *res, struct hdx_keyctx *kc, struct hdx_fhir_entry *out)
{
    memset(out, 0, sizeof(*out));
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    json_t *meta = json_object_get(res, "meta");
    const char *vid = json_string_value(json_object_get(meta, "versionId"));
    const char *upd = json_string_value(json_object_get(meta, "lastUpdated"));
    if (!type || !id || strlen(type) > HDX_FHIR_TYPE_MAX || !hdx_fhir_id_valid(id))
        return HDX_E_INVAL;
    snprintf(out->type, sizeof(out->type), "%s", type);
    snprintf(out->id, sizeof(out->id), "%s", id);
    out->version = vid ? (uint32_t)strtoul(vid, NULL, 10) : 1;
    int64_t lo, hi;
    if (upd && !hdx_fhir_time_range(upd, &lo, &hi)) out->updated_us = lo;
    int rc = HDX_OK;
    if (!strcmp(type, "Observation")) {
        size_t i;
        json_t *cat;
        rc = add_codings(out, kc, HDX_FP_CODE, json_object_get(res, "code"));
        json_array_foreach(json_object_get(res, "category"), i, cat)
        {
            if (rc == HDX_OK) rc = add_codings(out, kc, HDX_FP_CATEGORY, cat);
        }
        /* components' codes too: code=8480-6 finds the blood-pressure panel */
        json_t *comp;
        json_array_foreach(json_object_get(res, "component"), i, comp)
        {
            if (rc == HDX_OK) rc = add_codings(out, kc, HDX_FP_CODE, json_object_get(comp, "code"));
        }
        json_t *period = json_object_get(res, "effectivePeriod");
        const char *eff = json_string_value(json_object_get(res, "effectiveDateTime"));
        if (!eff) eff = json_string_value(json_object_get(res, "effectiveInstant"));
        if (eff)
            set_date(out, eff, NULL);
        else if (period)
            set_date(out, json_string_value(json_object_get(period, "start")),
                     json_string_value(json_object_get(period, "end")));
        else
            set_date(out, json_string_value(json_object_get(res, "issued")), NULL);
    } else if (!strcmp(type, "Patient")) {
        rc = add_identifiers(out, kc, res);
        if (rc == HDX_OK) rc = add_names(out, kc, res);
        const char *bd = json_string_value(json_object_get(res, "birthDate"));
        if (rc == HDX_OK && bd) rc = add_birthdate(out, kc, bd);
    } else if (!strcmp(type, "Device") || !strcmp(type, "Encounter")) {
        rc = add_identifiers(out, kc, res);
    }
    return rc;
}

/* ---------- patients ---------- */

void hdx_fhir_patient_key(const json_t *patient, char *out, size_t cap)
{
    out[0] = '\0';
    const char *type = json_string_value(json_object_get(patient, "resourceType"));
    if (!type || strcmp(type, "Patient")) return;
    json_t *first = json_array_get(json_object_get(patient, "identifier"), 0);
    const char *value = json_string_value(json_object_get(first, "value"));
    if (value && *value)
        snprintf(out, cap, "%s", value);
    else
        snprintf(out, cap, "urn:hdx:fhir:Patient/%s",
                 json_string_value(json_object_get(patient, "id")) ?: "");
}

static int ref_patient(const json_t *ref, char *id, size_t cap)
{
    const char *r = json_string_value(json_object_get(ref, "reference"));
    if (!r) return ref ? -1 : 0;
    if (strncmp(r, "Patient/", 8) || !hdx_fhir_id_valid(r + 8)) return -1;
    snprintf(id, cap, "%s", r + 8);
    return 1;
}

int hdx_fhir_patient_ref(const json_t *res, char *id, size_t cap)
{
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    id[0] = '\0';
    if (!type) return 0;
    if (!strcmp(type, "Observation") || !strcmp(type, "Encounter") ||
        !strcmp(type, "DiagnosticReport"))
        return ref_patient(json_object_get(res, "subject"), id, cap);
    if (!strcmp(type, "Consent") || !strcmp(type, "Device"))
        return ref_patient(json_object_get(res, "patient"), id, cap);
    return 0;
}

/* ---------- answers ---------- */

json_t *hdx_fhir_outcome(const char *code, const char *diagnostics, const char *expression)
{
    json_t *issue =
        json_pack("{s:s, s:s, s:s}", "severity", "error", "code", code, "diagnostics", diagnostics);
    if (issue && expression) json_object_set_new(issue, "expression", json_pack("[s]", expression));
    return json_pack("{s:s, s:[o]}", "resourceType", "OperationOutcome", "issue", issue);
}
