/* v2map: HL7 v2 ORU^R01 vital signs <-> FHIR R4 Observation (v2map.h, docs/FHIR-MAPPING.md).
 *
 * DESIGN
 * - v2 -> FHIR runs in two passes: collect() reads every OBX of the message into a struct obx
 *   (unescaped, UTF-8 checked text), then build() walks them in message order, pairs a systolic
 *   with its diastolic into one blood-pressure panel and makes one Observation per remaining OBX.
 *   Nothing in the output depends on anything but the bytes and struct hdx_v2map_in, so the view
 *   is the same on every read.
 * - FHIR -> v2 writes into a growing buffer (struct sb) capped at HDX_V2MAP_MAX_MSG; every value
 *   passes through hl7_escape, and only this file's own delimiters are written raw.
 * - Tables (coding systems, vital signs, units, statuses, interpretations) are data at the top;
 *   the mapping document lists the same rows. */
#include "fhir/v2map.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "proto/hl7.h"
#include "proto/jsonw.h"

#define URI_LOINC "http://loinc.org"
#define URI_MDC "urn:iso:std:iso:11073:10101"
#define URI_SCT "http://snomed.info/sct"
#define URI_UCUM "http://unitsofmeasure.org"
#define URI_OBSCAT "http://terminology.hl7.org/CodeSystem/observation-category"
#define URI_INTERP "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#define URI_V2_0078 "http://terminology.hl7.org/CodeSystem/v2-0078"
#define URI_DAR "http://terminology.hl7.org/CodeSystem/data-absent-reason"
#define URI_LOCAL_SYS "urn:hdx:v2-coding-system:"
#define URI_LOCAL_AA "urn:hdx:v2-assigning-authority:"
#define URI_PROFILE "http://hl7.org/fhir/StructureDefinition/"

#define MAX_INTERP 8   /* OBX-8 repetitions carried */
#define NM_MAX 64      /* longest NM text read or written */
#define MAX_SYSNAME 64 /* longest coding system name (CWE.3): table 0396 names are short */

/* ---- tables ---------------------------------------------------------------------------- */

/* HL7 table 0396 names <-> FHIR code system URIs; any other name becomes URI_LOCAL_SYS+name. */
static const struct {
    const char *v2, *uri;
} systems[] = {
    {"LN", URI_LOINC},
    {"MDC", URI_MDC},
    {"SCT", URI_SCT},
    {"UCUM", URI_UCUM},
};

enum vkind { VK_NONE, VK_HR, VK_SPO2, VK_SAO2, VK_RR, VK_TEMP, VK_SYS, VK_DIA, VK_MEAN };

/* The R4 vital-signs profile for each kind: the LOINC codings it requires and the UCUM codes
 * its valueQuantity may carry. */
static const struct vital {
    const char *profile;
    const char *ucum[2];
    struct {
        const char *code, *display;
    } loinc[2];
} vitals[] = {
    [VK_NONE] = {NULL, {NULL, NULL}, {{NULL, NULL}, {NULL, NULL}}},
    [VK_HR] = {"heartrate", {"/min", NULL}, {{"8867-4", "Heart rate"}, {NULL, NULL}}},
    [VK_SPO2] = {"oxygensat",
                 {"%", NULL},
                 {{"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"},
                  {"2708-6", "Oxygen saturation in Arterial blood"}}},
    [VK_SAO2] = {"oxygensat",
                 {"%", NULL},
                 {{"2708-6", "Oxygen saturation in Arterial blood"}, {NULL, NULL}}},
    [VK_RR] = {"resprate", {"/min", NULL}, {{"9279-1", "Respiratory rate"}, {NULL, NULL}}},
    [VK_TEMP] = {"bodytemp", {"Cel", "[degF]"}, {{"8310-5", "Body temperature"}, {NULL, NULL}}},
    [VK_SYS] = {"vitalsigns",
                {"mm[Hg]", NULL},
                {{"8480-6", "Systolic blood pressure"}, {NULL, NULL}}},
    [VK_DIA] = {"vitalsigns",
                {"mm[Hg]", NULL},
                {{"8462-4", "Diastolic blood pressure"}, {NULL, NULL}}},
    [VK_MEAN] = {"vitalsigns", {"mm[Hg]", NULL}, {{"8478-0", "Mean blood pressure"}, {NULL, NULL}}},
};

#define BP_PANEL_CODE "85354-9"
#define BP_PANEL_DISPLAY "Blood pressure panel with all children optional"

/* OBX-3 codes recognised as vital signs: LOINC, and IEEE 11073-10101 (MDC) numeric codes as
 * IHE PCD-01 devices send them (partition 2, "SCADA": code = 65536 * 2 + term code). */
static const struct {
    const char *sys, *code;
    enum vkind kind;
} vcodes[] = {
    {"LN", "8867-4", VK_HR},    {"LN", "59408-5", VK_SPO2}, {"LN", "2708-6", VK_SAO2},
    {"LN", "9279-1", VK_RR},    {"LN", "8310-5", VK_TEMP},  {"LN", "8480-6", VK_SYS},
    {"LN", "8462-4", VK_DIA},   {"LN", "8478-0", VK_MEAN},  {"MDC", "147842", VK_HR},
    {"MDC", "149522", VK_HR},   {"MDC", "149530", VK_HR},   {"MDC", "149546", VK_HR},
    {"MDC", "150456", VK_SPO2}, {"MDC", "151562", VK_RR},   {"MDC", "151578", VK_RR},
    {"MDC", "150344", VK_TEMP}, {"MDC", "150364", VK_TEMP}, {"MDC", "188496", VK_TEMP},
    {"MDC", "150021", VK_SYS},  {"MDC", "150022", VK_DIA},  {"MDC", "150023", VK_MEAN},
    {"MDC", "150301", VK_SYS},  {"MDC", "150302", VK_DIA},  {"MDC", "150303", VK_MEAN},
};

/* Unit spellings taken as UCUM (the second column is the UCUM code written). */
static const struct {
    const char *in, *ucum;
} units[] = {
    {"/min", "/min"},
    {"1/min", "/min"},
    {"{beats}/min", "/min"},
    {"{breaths}/min", "/min"},
    {"bpm", "/min"},
    {"%", "%"},
    {"mm[Hg]", "mm[Hg]"},
    {"mmHg", "mm[Hg]"},
    {"Cel", "Cel"},
    {"degC", "Cel"},
    {"[degF]", "[degF]"},
    {"degF", "[degF]"},
    {"kg", "kg"},
    {"g", "g"},
    {"cm", "cm"},
    {"m", "m"},
    {"kg/m2", "kg/m2"},
    {"L/min", "L/min"},
    {"mmol/L", "mmol/L"},
    {"mg/dL", "mg/dL"},
    {"[lb_av]", "[lb_av]"},
    {"[in_i]", "[in_i]"},
    {"s", "s"},
    {"ms", "ms"},
};

/* MDC units (OBX-6 with OBX-6.3 = MDC), by numeric code or by mnemonic. */
static const struct {
    const char *code, *name, *ucum;
} mdc_units[] = {
    {"264864", "MDC_DIM_BEAT_PER_MIN", "/min"}, {"264928", "MDC_DIM_RESP_PER_MIN", "/min"},
    {"262688", "MDC_DIM_PERCENT", "%"},         {"266016", "MDC_DIM_MMHG", "mm[Hg]"},
    {"268192", "MDC_DIM_DEGC", "Cel"},          {NULL, "MDC_DIM_FAHR", "[degF]"},
};

/* HL7 table 0085 -> observation-status, as the HL7 v2-to-FHIR IG ConceptMap
 * table-hl70085-to-observation-status gives it; B and N, where the IG gives no target, are ours. */
static const struct {
    char v2;
    const char *fhir;
} statuses[] = {
    {'A', "amended"},     {'B', "amended"},
    {'C', "corrected"},   {'D', "entered-in-error"},
    {'F', "final"},       {'I', "registered"},
    {'N', "cancelled"},   {'O', "registered"},
    {'P', "preliminary"}, {'R', "preliminary"},
    {'S', "preliminary"}, {'U', "final"},
    {'V', "final"},       {'W', "entered-in-error"},
    {'X', "cancelled"},
};

/* Observation.status -> OBX-11 (v2.5.1 has no A: amended goes out as a correction). */
static const struct {
    const char *fhir, *v2;
} statuses_out[] = {
    {"registered", "I"},       {"preliminary", "P"}, {"final", "F"},
    {"amended", "C"},          {"corrected", "C"},   {"cancelled", "X"},
    {"entered-in-error", "W"}, {"unknown", ""},
};

/* HL7 table 0078 codes that v3-ObservationInterpretation defines with the same code. */
static const struct {
    const char *code, *display;
} interps[] = {
    {"L", "Low"},
    {"H", "High"},
    {"LL", "Critical low"},
    {"HH", "Critical high"},
    {"N", "Normal"},
    {"A", "Abnormal"},
    {"AA", "Critical abnormal"},
    {"LU", "Significantly low"},
    {"HU", "Significantly high"},
    {"<", "Off scale low"},
    {">", "Off scale high"},
    {"S", "Susceptible"},
    {"R", "Resistant"},
    {"I", "Intermediate"},
    {"POS", "Positive"},
    {"NEG", "Negative"},
    {"IND", "Indeterminate"},
    {"U", "Significant change up"},
    {"D", "Significant change down"},
    {"B", "Better"},
    {"W", "Worse"},
};

/* ---- small helpers --------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int fail(char *why, size_t cap, int rc,
                                                      const char *fmt, ...)
{
    if (why != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* FHIR id: [A-Za-z0-9\-\.]{1,64} */
static bool fhir_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!(is_digit(ch) || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '-' ||
              ch == '.'))
            return false;
    }
    return true;
}

/* FHIR code: [^\s]+( [^\s]+)* (no leading, trailing or doubled white space). */
static bool fhir_code_ok(const char *s)
{
    if (s[0] == '\0' || s[0] == ' ') return false;
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\t' || ch == '\r' || ch == '\n' || ch < 0x20) return false;
        if (ch == ' ' && (s[i + 1] == ' ' || s[i + 1] == '\0')) return false;
    }
    return true;
}

/* OID as FHIR's oid type wants it: [0-2](\.(0|[1-9][0-9]*))+ */
static bool oid_ok(const char *s)
{
    if (s[0] < '0' || s[0] > '2' || s[1] != '.') return false;
    const char *p = s + 1;
    while (*p == '.') {
        p++;
        if (!is_digit(*p)) return false;
        if (*p == '0' && is_digit(p[1])) return false;
        while (is_digit(*p))
            p++;
    }
    return *p == '\0';
}

/* URI_LOCAL_* + name with every byte outside [A-Za-z0-9._~-] percent-encoded. */
static json_t *local_uri(const char *prefix, const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t pl = strlen(prefix), n = strlen(name);
    char *u = malloc(pl + 3 * n + 1);
    if (u == NULL) return NULL;
    memcpy(u, prefix, pl);
    size_t k = pl;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (is_digit((char)ch) || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
            ch == '.' || ch == '_' || ch == '~' || ch == '-') {
            u[k++] = (char)ch;
        } else {
            u[k++] = '%';
            u[k++] = hex[ch >> 4];
            u[k++] = hex[ch & 15];
        }
    }
    u[k] = '\0';
    json_t *j = json_string(u);
    free(u);
    return j;
}

/* The v2 name back from a local URI; 0, or -1 when it is not one of ours or badly encoded. */
static int local_name(const char *uri, char *out, size_t cap)
{
    size_t pl = strlen(URI_LOCAL_SYS), k = 0;
    if (strncmp(uri, URI_LOCAL_SYS, pl) != 0) return -1;
    for (const char *p = uri + pl; *p != '\0'; p++) {
        char ch = *p;
        if (ch == '%') {
            unsigned v = 0;
            for (int i = 1; i <= 2; i++) {
                char h = p[i];
                int d = is_digit(h) ? h - '0' : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (d < 0) return -1;
                v = v * 16 + (unsigned)d;
            }
            if (v == 0) return -1;
            ch = (char)v;
            p += 2;
        }
        if (k + 1 >= cap) return -1;
        out[k++] = ch;
    }
    out[k] = '\0';
    return k > 0 ? 0 : -1;
}

static const char *sys_uri(const char *v2)
{
    for (size_t i = 0; i < sizeof systems / sizeof systems[0]; i++)
        if (strcmp(systems[i].v2, v2) == 0) return systems[i].uri;
    return NULL;
}

/* Sets o[k] = v (stealing v); returns -1 when v is NULL (no memory) or the set fails. */
static int put(json_t *o, const char *k, json_t *v)
{
    return v != NULL && json_object_set_new(o, k, v) == 0 ? 0 : -1;
}

static int put_str(json_t *o, const char *k, const char *s)
{
    return put(o, k, json_string(s));
}

static int push(json_t *a, json_t *v)
{
    return v != NULL && json_array_append_new(a, v) == 0 ? 0 : -1;
}

static json_t *coding(const char *system, const char *code, const char *display)
{
    json_t *c = json_object();
    if (c == NULL) return NULL;
    if ((system != NULL && put_str(c, "system", system) != 0) ||
        (code != NULL && code[0] != '\0' && put_str(c, "code", code) != 0) ||
        (display != NULL && display[0] != '\0' && put_str(c, "display", display) != 0)) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* {"coding": [coding(system, code, display)]} */
static json_t *concept1(const char *system, const char *code, const char *display)
{
    json_t *cc = json_object(), *a = json_array();
    /* a container joins its parent before it is filled: a failed put or push has already
     * released what it was given, so only the root is ever released here */
    if (cc == NULL || a == NULL) {
        json_decref(a);
        json_decref(cc);
        return NULL;
    }
    if (put(cc, "coding", a) != 0 || push(a, coding(system, code, display)) != 0) {
        json_decref(cc);
        return NULL;
    }
    return cc;
}

/* ---- time ------------------------------------------------------------------------------ */

static int days_in(int y, int mo)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return mo == 2 && leap ? 29 : d[mo - 1];
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* A point in time split into its parts: what both DTM and FHIR dateTime can hold. */
struct when {
    int prec; /* 4 (year), 6, 8 (day), 12 (minute), 14 (second) digits */
    int y, mo, d, h, mi, s;
    char frac[10]; /* fraction digits without the point, "" when none */
    bool has_off;
    int off_sign, off_h, off_m;
};

static bool when_ok(const struct when *w)
{
    if (w->y < 1) return false;
    if (w->prec >= 6 && (w->mo < 1 || w->mo > 12)) return false;
    if (w->prec >= 8 && (w->d < 1 || w->d > days_in(w->y, w->mo))) return false;
    if (w->prec >= 10 && w->h > 23) return false;
    if (w->prec >= 12 && w->mi > 59) return false;
    if (w->prec >= 14 && w->s > 59) return false;
    if (w->has_off && (w->off_m > 59 || w->off_h > 14 || (w->off_h == 14 && w->off_m != 0)))
        return false;
    return true;
}

/* v2 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. 0, or -1. */
static int dtm_parse(const char *s, struct when *w)
{
    size_t n = 0;
    memset(w, 0, sizeof *w);
    while (is_digit(s[n]))
        n++;
    if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) return -1;
    w->prec = (int)n;
    w->y = num(s, 4);
    if (n >= 6) w->mo = num(s + 4, 2);
    if (n >= 8) w->d = num(s + 6, 2);
    if (n >= 10) w->h = num(s + 8, 2);
    if (n >= 12) w->mi = num(s + 10, 2);
    if (n >= 14) w->s = num(s + 12, 2);
    const char *p = s + n;
    if (*p == '.') {
        if (n != 14) return -1;
        size_t f = 0;
        p++;
        while (is_digit(p[f]) && f < 4)
            f++;
        if (f == 0 || is_digit(p[f])) return -1;
        memcpy(w->frac, p, f);
        p += f;
    }
    if (*p == '+' || *p == '-') {
        for (int i = 1; i <= 4; i++)
            if (!is_digit(p[i])) return -1;
        w->has_off = true;
        w->off_sign = *p == '-' ? -1 : 1;
        w->off_h = num(p + 1, 2);
        w->off_m = num(p + 3, 2);
        p += 5;
    }
    return *p == '\0' && when_ok(w) ? 0 : -1;
}

/* FHIR dateTime (or instant): YYYY[-MM[-DD[Thh:mm:ss[.f+](Z|+hh:mm|-hh:mm)]]]. 0, or -1. */
static int fhir_time_parse(const char *s, struct when *w)
{
    memset(w, 0, sizeof *w);
    size_t n = strlen(s);
    if (n < 4 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) || !is_digit(s[3]))
        return -1;
    w->y = num(s, 4);
    w->prec = 4;
    const char *p = s + 4;
    if (*p == '-') {
        if (!is_digit(p[1]) || !is_digit(p[2])) return -1;
        w->mo = num(p + 1, 2);
        w->prec = 6;
        p += 3;
        if (*p == '-') {
            if (!is_digit(p[1]) || !is_digit(p[2])) return -1;
            w->d = num(p + 1, 2);
            w->prec = 8;
            p += 3;
            if (*p == 'T') {
                static const char pat[] = "dd:dd:dd";
                for (int i = 0; i < 8; i++)
                    if (pat[i] == 'd' ? !is_digit(p[1 + i]) : p[1 + i] != ':') return -1;
                w->h = num(p + 1, 2);
                w->mi = num(p + 4, 2);
                w->s = num(p + 7, 2);
                w->prec = 14;
                p += 9;
                if (*p == '.') {
                    size_t f = 0;
                    p++;
                    while (is_digit(p[f]))
                        f++;
                    if (f == 0) return -1;
                    /* v2.5.1 DTM holds four fraction digits: finer ones are cut, not rounded */
                    memcpy(w->frac, p, f < 4 ? f : 4);
                    p += f;
                }
                if (*p == 'Z') {
                    w->has_off = true;
                    w->off_sign = 1;
                    p++;
                } else if (*p == '+' || *p == '-') {
                    if (!is_digit(p[1]) || !is_digit(p[2]) || p[3] != ':' || !is_digit(p[4]) ||
                        !is_digit(p[5]))
                        return -1;
                    w->has_off = true;
                    w->off_sign = *p == '-' ? -1 : 1;
                    w->off_h = num(p + 1, 2);
                    w->off_m = num(p + 4, 2);
                    p += 6;
                } else {
                    return -1; /* FHIR requires a zone once a time is given */
                }
            }
        }
    }
    return *p == '\0' && when_ok(w) ? 0 : -1;
}

/* FHIR dateTime text. A time without zone gets def (the zone of MSH-7, else UTC); FHIR wants
 * seconds once there is a time, so HHMM gets ":00" (the value is the same instant). */
static void fhir_time_format(const struct when *w, const struct when *def, char *out, size_t cap)
{
    if (w->prec == 4) {
        snprintf(out, cap, "%04d", w->y);
        return;
    }
    if (w->prec == 6) {
        snprintf(out, cap, "%04d-%02d", w->y, w->mo);
        return;
    }
    if (w->prec == 8) {
        snprintf(out, cap, "%04d-%02d-%02d", w->y, w->mo, w->d);
        return;
    }
    const struct when *z = w->has_off ? w : def;
    char zone[8] = "Z"; /* no zone anywhere: UTC, as hdx's own senders write */
    if (z != NULL && z->has_off && (z->off_h != 0 || z->off_m != 0))
        snprintf(zone, sizeof zone, "%c%02d:%02d", z->off_sign < 0 ? '-' : '+', z->off_h, z->off_m);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d%s%s%s", w->y, w->mo, w->d, w->h, w->mi, w->s,
             w->frac[0] != '\0' ? "." : "", w->frac, zone);
}

static void dtm_format(const struct when *w, char *out, size_t cap)
{
    char base[32];
    int n = w->prec;
    snprintf(base, sizeof base, "%04d%02d%02d%02d%02d%02d", w->y, w->mo, w->d, w->h, w->mi, w->s);
    base[n] = '\0';
    if (n < 14 || !w->has_off) {
        snprintf(out, cap, "%s", base);
        return;
    }
    snprintf(out, cap, "%s%s%s%c%02d%02d", base, w->frac[0] != '\0' ? "." : "", w->frac,
             w->off_sign < 0 ? '-' : '+', w->off_h, w->off_m);
}

/* ---- numbers --------------------------------------------------------------------------- */

/* A JSON number as v2 NM text: no exponent (NM has none), 15 significant digits for a real (what
 * survives a double from any decimal of 15 digits), ".0" kept on an integral real so that it
 * reads back as a real. -1 when that takes more than NM_MAX characters. */
static int nm_text(const json_t *v, char *out, size_t cap)
{
    if (json_is_integer(v)) {
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    double d = json_real_value(v);
    char e[48], dig[20];
    int nd = 0, k = 0;
    if (!isfinite(d) || cap < NM_MAX + 1) return -1;
    snprintf(e, sizeof e, "%.14e", d); /* [-]d.dddddddddddddde[+-]x */
    const char *p = e;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p != '\0' && *p != 'e'; p++)
        if (is_digit(*p)) dig[nd++] = *p;
    int point = atoi(p + 1) + 1; /* digits before the decimal point */
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (nd == 1 && dig[0] == '0') {
        snprintf(out, cap, "0.0");
        return 0;
    }
    char t[400];
    if (neg) t[k++] = '-';
    if (point <= 0) {
        if (2 - point + nd > NM_MAX) return -1;
        t[k++] = '0';
        t[k++] = '.';
        for (int i = 0; i < -point; i++)
            t[k++] = '0';
        for (int i = 0; i < nd; i++)
            t[k++] = dig[i];
    } else {
        if (point + nd + 3 > NM_MAX) return -1;
        for (int i = 0; i < point; i++)
            t[k++] = i < nd ? dig[i] : '0';
        t[k++] = '.';
        if (point >= nd) t[k++] = '0';
        for (int i = point; i < nd; i++)
            t[k++] = dig[i];
    }
    t[k] = '\0';
    if ((size_t)k > NM_MAX) return -1;
    snprintf(out, cap, "%s", t);
    return 0;
}

/* v2 NM: [+-]digits[.digits] (at most NM_MAX characters). A JSON integer when there is no point
 * and it fits, else a real. NULL when it is not a number. */
static json_t *nm_value(const char *s)
{
    size_t n = strlen(s), i = 0, digits = 0;
    bool point = false;
    if (n == 0 || n > NM_MAX) return NULL;
    if (s[0] == '+' || s[0] == '-') i++;
    for (; i < n; i++) {
        if (is_digit(s[i]))
            digits++;
        else if (s[i] == '.' && !point)
            point = true;
        else
            return NULL;
    }
    if (digits == 0) return NULL;
    const char *t = s[0] == '+' ? s + 1 : s;
    if (!point && digits <= 18) return json_integer(strtoll(t, NULL, 10));
    double v = strtod(t, NULL);
    if (!isfinite(v)) return NULL;
    json_t *j = json_real(v == 0 ? 0.0 : v); /* no "-0.0" */
    char back[NM_MAX + 1];
    if (j != NULL && nm_text(j, back, sizeof back) != 0) { /* what is read can be written */
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Prefix number of s for OBX-7 ranges: [+-]?digits[.digits]; sets *end. */
static json_t *range_num(const char *s, const char **end)
{
    char buf[40];
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+') i++;
    while (is_digit(s[i]) || s[i] == '.')
        i++;
    if (i == 0 || i >= sizeof buf) return NULL;
    memcpy(buf, s, i);
    buf[i] = '\0';
    *end = s + i;
    return nm_value(buf);
}

/* ---- v2 -> FHIR: reading the message --------------------------------------------------- */

struct cwe {
    const char *id, *text, *sys, *alt_id, *alt_text, *alt_sys;
};

struct obx {
    int occ;   /* OBX occurrence (1-based), named in errors */
    int group; /* OBR occurrence before it, 0 when none */
    int pid;   /* PID occurrence before it, 0 when none */
    const char *vt, *subid, *range, *status, *time, *dev;
    struct cwe code, unit;
    const char *interp[MAX_INTERP];
    int ninterp;
    size_t seg; /* index into hl7_msg.segs */
    enum vkind kind;
    bool used; /* taken into a blood-pressure panel */
};

struct v2ctx {
    struct hl7_msg m;
    const struct hdx_v2map_in *in;
    char *why;
    size_t cap;
    char **pool; /* every string handed out by text(), freed at the end */
    size_t npool, cpool;
    struct obx *obx;
    size_t nobx;
    size_t *obr_seg; /* segment index of each OBR */
    size_t nobr;
    size_t *pid_seg;
    size_t npid;
    struct when msh_time;
    bool msh_time_ok;
    bool latin1; /* MSH-18 is 8859/1: values are transcoded to UTF-8 */
};

static int nomem(struct v2ctx *c)
{
    return fail(c->why, c->cap, HDX_E_NOMEM, "out of memory");
}

/* Unescaped text of one position of segment index seg ("" when absent or `""`, the v2 null).
 * Refuses bad escapes, NUL bytes and anything that is not UTF-8 (JSON strings must be). */
static int text_of(struct v2ctx *c, size_t seg, const char *id, int field, int rep, int comp,
                   int sub, const char **out)
{
    struct hl7_msg one = c->m;
    struct hl7_view v;
    *out = "";
    one.segs = &c->m.segs[seg];
    one.nsegs = 1;
    if (hl7_get(&one, id, 1, field, rep, comp, sub, &v) != 0 || v.len == 0) return HDX_OK;
    if (v.len == 2 && memcmp(c->m.data + v.off, "\"\"", 2) == 0) return HDX_OK;
    if (c->npool == c->cpool) {
        size_t nc = c->cpool ? c->cpool * 2 : 64;
        char **np = realloc(c->pool, nc * sizeof *np);
        if (np == NULL) return nomem(c);
        c->pool = np;
        c->cpool = nc;
    }
    char *s = malloc((size_t)v.len + 1); /* unescaping never lengthens */
    if (s == NULL) return nomem(c);
    int n = hl7_unescape(&c->m, v, s, (size_t)v.len + 1);
    if (n > 0 && c->latin1) { /* ISO 8859-1 is the first 256 code points: two bytes at most */
        char *u = malloc(2 * (size_t)n + 1);
        size_t k = 0;
        if (u == NULL) {
            free(s);
            return nomem(c);
        }
        for (int i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch < 0x80) {
                u[k++] = (char)ch;
            } else {
                u[k++] = (char)(0xC0 | ch >> 6);
                u[k++] = (char)(0x80 | (ch & 0x3F));
            }
        }
        u[k] = '\0';
        free(s);
        s = u;
        n = (int)k;
    }
    if (n < 0 || strlen(s) != (size_t)n || !hdx_utf8_valid((const uint8_t *)s, (size_t)n)) {
        free(s);
        return fail(c->why, c->cap, HDX_E_INVAL,
                    "%s-%d: badly escaped, holds a NUL or is not UTF-8", id, field);
    }
    c->pool[c->npool++] = s;
    *out = s;
    return HDX_OK;
}

static int cwe_of(struct v2ctx *c, size_t seg, const char *id, int field, struct cwe *w)
{
    int rc;
    if ((rc = text_of(c, seg, id, field, 1, 1, 0, &w->id)) != HDX_OK ||
        (rc = text_of(c, seg, id, field, 1, 2, 0, &w->text)) != HDX_OK ||
        (rc = text_of(c, seg, id, field, 1, 3, 0, &w->sys)) != HDX_OK ||
        (rc = text_of(c, seg, id, field, 1, 4, 0, &w->alt_id)) != HDX_OK ||
        (rc = text_of(c, seg, id, field, 1, 5, 0, &w->alt_text)) != HDX_OK ||
        (rc = text_of(c, seg, id, field, 1, 6, 0, &w->alt_sys)) != HDX_OK)
        return rc;
    return HDX_OK;
}

static enum vkind vital_of(const char *sys, const char *code)
{
    for (size_t i = 0; i < sizeof vcodes / sizeof vcodes[0]; i++)
        if (strcmp(vcodes[i].sys, sys) == 0 && strcmp(vcodes[i].code, code) == 0)
            return vcodes[i].kind;
    return VK_NONE;
}

static int read_obx(struct v2ctx *c, size_t seg, struct obx *x)
{
    int rc;
    if ((rc = text_of(c, seg, "OBX", 2, 1, 1, 0, &x->vt)) != HDX_OK ||
        (rc = cwe_of(c, seg, "OBX", 3, &x->code)) != HDX_OK ||
        (rc = text_of(c, seg, "OBX", 4, 1, 0, 0, &x->subid)) != HDX_OK ||
        (rc = cwe_of(c, seg, "OBX", 6, &x->unit)) != HDX_OK ||
        (rc = text_of(c, seg, "OBX", 7, 1, 0, 0, &x->range)) != HDX_OK ||
        (rc = text_of(c, seg, "OBX", 11, 1, 1, 0, &x->status)) != HDX_OK ||
        (rc = text_of(c, seg, "OBX", 14, 1, 1, 0, &x->time)) != HDX_OK ||
        (rc = text_of(c, seg, "OBX", 18, 1, 1, 0, &x->dev)) != HDX_OK)
        return rc;
    for (int r = 1; r <= MAX_INTERP; r++) {
        const char *s;
        if ((rc = text_of(c, seg, "OBX", 8, r, 1, 0, &s)) != HDX_OK) return rc;
        if (s[0] != '\0') x->interp[x->ninterp++] = s;
    }
    x->seg = seg;
    x->kind = vital_of(x->code.sys, x->code.id);
    if (x->kind == VK_NONE) x->kind = vital_of(x->code.alt_sys, x->code.alt_id);
    if (x->code.id[0] == '\0' && x->code.text[0] == '\0')
        return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: OBX-3 (the observation code) is empty",
                    x->occ);
    return HDX_OK;
}

static bool seg_is(const struct hl7_msg *m, size_t i, const char *id)
{
    return m->segs[i].len >= 3 && memcmp(m->data + m->segs[i].off, id, 3) == 0;
}

/* Indexes OBR, PID and OBX segments in order and reads every OBX. */
static int collect(struct v2ctx *c)
{
    size_t nobx = 0, nobr = 0, npid = 0;
    for (size_t i = 0; i < c->m.nsegs; i++) {
        nobx += seg_is(&c->m, i, "OBX");
        nobr += seg_is(&c->m, i, "OBR");
        npid += seg_is(&c->m, i, "PID");
    }
    if (nobx > HDX_V2MAP_MAX_OBS)
        return fail(c->why, c->cap, HDX_E_TOOBIG, "more than %d OBX segments", HDX_V2MAP_MAX_OBS);
    c->obx = calloc(nobx ? nobx : 1, sizeof *c->obx);
    c->obr_seg = calloc(nobr ? nobr : 1, sizeof *c->obr_seg);
    c->pid_seg = calloc(npid ? npid : 1, sizeof *c->pid_seg);
    if (c->obx == NULL || c->obr_seg == NULL || c->pid_seg == NULL) return nomem(c);
    for (size_t i = 0; i < c->m.nsegs; i++) {
        if (seg_is(&c->m, i, "OBR")) c->obr_seg[c->nobr++] = i;
        if (seg_is(&c->m, i, "PID")) c->pid_seg[c->npid++] = i;
        if (!seg_is(&c->m, i, "OBX")) continue;
        struct obx *x = &c->obx[c->nobx];
        x->occ = (int)++c->nobx;
        x->group = (int)c->nobr;
        x->pid = (int)c->npid;
        int rc = read_obx(c, i, x);
        if (rc != HDX_OK) return rc;
    }
    return HDX_OK;
}

/* ---- v2 -> FHIR: building Observations ------------------------------------------------- */

/* The effective time of x: OBX-14, else OBR-7 of its group; *s = "" when neither. */
static int effective_of(struct v2ctx *c, const struct obx *x, char *out, size_t cap)
{
    const char *s = x->time;
    const char *field = "OBX-14";
    struct when w;
    int rc;
    out[0] = '\0';
    if (s[0] == '\0' && x->group > 0) {
        if ((rc = text_of(c, c->obr_seg[x->group - 1], "OBR", 7, 1, 1, 0, &s)) != HDX_OK) return rc;
        field = "OBR-7";
    }
    if (s[0] == '\0') return HDX_OK;
    if (dtm_parse(s, &w) != 0)
        return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: %s is not a valid DTM", x->occ, field);
    fhir_time_format(&w, c->msh_time_ok ? &c->msh_time : NULL, out, cap);
    return HDX_OK;
}

/* Reference(Patient): the caller's, else PID-3 (first repetition) as a logical reference. */
static int subject_of(struct v2ctx *c, const struct obx *x, json_t **out)
{
    json_t *r = json_object();
    *out = r;
    if (r == NULL) return nomem(c);
    if (c->in->patient_ref != NULL)
        return put_str(r, "reference", c->in->patient_ref) == 0 ? HDX_OK : nomem(c);
    if (x->pid == 0)
        return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: no PID segment before it", x->occ);
    size_t seg = c->pid_seg[x->pid - 1];
    const char *id, *ns, *uid;
    int rc;
    if ((rc = text_of(c, seg, "PID", 3, 1, 1, 0, &id)) != HDX_OK ||
        (rc = text_of(c, seg, "PID", 3, 1, 4, 1, &ns)) != HDX_OK ||
        (rc = text_of(c, seg, "PID", 3, 1, 4, 2, &uid)) != HDX_OK)
        return rc;
    if (id[0] == '\0')
        return fail(c->why, c->cap, HDX_E_INVAL, "PID %d: PID-3.1 (the patient id) is empty",
                    x->pid);
    json_t *ident = json_object();
    if (put(r, "identifier", ident) != 0 || put_str(r, "type", "Patient") != 0) return nomem(c);
    json_t *sys = NULL;
    if (oid_ok(uid)) {
        char u[300];
        snprintf(u, sizeof u, "urn:oid:%s", uid);
        sys = json_string(u);
    } else if (oid_ok(ns)) {
        char u[300];
        snprintf(u, sizeof u, "urn:oid:%s", ns);
        sys = json_string(u);
    } else if (ns[0] != '\0') {
        sys = local_uri(URI_LOCAL_AA, ns);
    } else if (uid[0] != '\0') {
        sys = local_uri(URI_LOCAL_AA, uid);
    }
    if ((sys != NULL && put(ident, "system", sys) != 0) || put_str(ident, "value", id) != 0)
        return nomem(c);
    return HDX_OK;
}

/* Reference(Device) from OBX-18 (EI.1), else the sender: a reference when the name is a valid
 * FHIR id, a display otherwise; *out = NULL when there is neither. */
static int device_of(struct v2ctx *c, const struct obx *x, json_t **out)
{
    const char *name = x->dev[0] != '\0' ? x->dev : c->in->sender;
    *out = NULL;
    if (name == NULL || name[0] == '\0') return HDX_OK;
    if (!hdx_utf8_valid((const uint8_t *)name, strlen(name)))
        return fail(c->why, c->cap, HDX_E_INVAL, "the sender name is not UTF-8");
    json_t *r = json_object();
    *out = r;
    if (r == NULL) return nomem(c);
    if (fhir_id_ok(name)) {
        char ref[80];
        snprintf(ref, sizeof ref, "Device/%s", name);
        return put_str(r, "reference", ref) == 0 ? HDX_OK : nomem(c);
    }
    return put_str(r, "display", name) == 0 ? HDX_OK : nomem(c);
}

static const char *status_of(const char *s)
{
    if (s[0] != '\0' && s[1] == '\0')
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
            if (statuses[i].v2 == s[0]) return statuses[i].fhir;
    return "unknown";
}

/* One coding from a CWE triplet; *out = NULL when the identifier is empty. */
static int coding_of(struct v2ctx *c, const struct obx *x, const char *field, const char *id,
                     const char *text, const char *sys, json_t **out)
{
    *out = NULL;
    if (id[0] == '\0') return HDX_OK;
    if (!fhir_code_ok(id))
        return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: %s is not a valid code", x->occ, field);
    json_t *uri = NULL;
    if (strlen(sys) > MAX_SYSNAME)
        return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: %s names a coding system over %d bytes",
                    x->occ, field, MAX_SYSNAME);
    if (sys[0] != '\0') {
        const char *known = sys_uri(sys);
        uri = known != NULL ? json_string(known) : local_uri(URI_LOCAL_SYS, sys);
        if (uri == NULL) return nomem(c);
    }
    json_t *cd = coding(NULL, id, text);
    if (cd == NULL) {
        json_decref(uri);
        return nomem(c);
    }
    if (uri != NULL && put(cd, "system", uri) != 0) {
        json_decref(cd);
        return nomem(c);
    }
    *out = cd;
    return HDX_OK;
}

static bool has_coding(const json_t *codings, const char *system, const char *code)
{
    size_t i;
    json_t *cd;
    json_array_foreach(codings, i, cd)
    {
        const char *s = json_string_value(json_object_get(cd, "system"));
        const char *k = json_string_value(json_object_get(cd, "code"));
        if (s != NULL && k != NULL && strcmp(s, system) == 0 && strcmp(k, code) == 0) return true;
    }
    return false;
}

/* CodeableConcept of a CWE (both triplets), plus the profile's LOINC codings for kind. */
static int concept_of(struct v2ctx *c, const struct obx *x, const char *field, const struct cwe *w,
                      enum vkind kind, json_t **out)
{
    json_t *cc = json_object(), *a = json_array(), *cd;
    int rc;
    *out = cc; /* the caller releases it, on error too */
    if (cc == NULL || a == NULL) {
        json_decref(a);
        return nomem(c);
    }
    if (put(cc, "coding", a) != 0) return nomem(c);
    if ((rc = coding_of(c, x, field, w->id, w->text, w->sys, &cd)) != HDX_OK) return rc;
    if (cd != NULL && push(a, cd) != 0) return nomem(c);
    if ((rc = coding_of(c, x, field, w->alt_id, w->alt_text, w->alt_sys, &cd)) != HDX_OK) return rc;
    if (cd != NULL && push(a, cd) != 0) return nomem(c);
    for (int i = 0; i < 2 && vitals[kind].loinc[i].code != NULL; i++) {
        if (has_coding(a, URI_LOINC, vitals[kind].loinc[i].code)) continue;
        if (push(a, coding(URI_LOINC, vitals[kind].loinc[i].code, vitals[kind].loinc[i].display)) !=
            0)
            return nomem(c);
    }
    if (json_array_size(a) == 0) {
        json_object_del(cc, "coding");
        if (w->text[0] != '\0' && put_str(cc, "text", w->text) != 0) return nomem(c);
    }
    return HDX_OK;
}

static const char *ucum_alias(const char *s)
{
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(units[i].in, s) == 0) return units[i].ucum;
    return NULL;
}

/* UCUM code and display text of OBX-6; code NULL when it is not UCUM. */
static void unit_of(const struct cwe *u, const char **code, const char **text)
{
    *code = NULL;
    *text = u->text[0] != '\0' ? u->text : u->id;
    if (strcmp(u->sys, "UCUM") == 0 && u->id[0] != '\0') {
        const char *a = ucum_alias(u->id);
        *code = a != NULL ? a : u->id;
    } else if (strcmp(u->sys, "MDC") == 0) {
        for (size_t i = 0; i < sizeof mdc_units / sizeof mdc_units[0]; i++)
            if ((mdc_units[i].code != NULL && strcmp(mdc_units[i].code, u->id) == 0) ||
                strcmp(mdc_units[i].name, u->text) == 0 || strcmp(mdc_units[i].name, u->id) == 0) {
                *code = mdc_units[i].ucum;
                *text = mdc_units[i].ucum; /* "MDC_DIM_PERCENT" reads worse than "%" */
            }
    } else if (u->sys[0] == '\0') {
        *code = ucum_alias(u->id);
    }
    if (*code != NULL && !fhir_code_ok(*code)) *code = NULL;
}

/* Quantity {value, unit, system, code}; steals v. */
static json_t *quantity(json_t *v, const struct cwe *u)
{
    const char *code, *text;
    json_t *q = json_object();
    if (q == NULL) {
        json_decref(v);
        return NULL;
    }
    if (put(q, "value", v) != 0) {
        json_decref(q);
        return NULL;
    }
    unit_of(u, &code, &text);
    if ((text[0] != '\0' && put_str(q, "unit", text) != 0) ||
        (code != NULL && (put_str(q, "system", URI_UCUM) != 0 || put_str(q, "code", code) != 0))) {
        json_decref(q);
        return NULL;
    }
    return q;
}

/* referenceRange from OBX-7: "lo-hi", ">lo", "<hi", else the text. */
static int range_of(struct v2ctx *c, const struct obx *x, json_t *o)
{
    const char *s = x->range, *e = NULL;
    json_t *rr, *arr;
    if (s[0] == '\0') return HDX_OK;
    if ((arr = json_array()) == NULL || put(o, "referenceRange", arr) != 0) return nomem(c);
    if (push(arr, rr = json_object()) != 0) return nomem(c);
    json_t *lo = NULL, *hi = NULL;
    if (s[0] == '>' || s[0] == '<') {
        const char *p = s + 1 + (s[1] == '=');
        json_t *v = range_num(p, &e);
        if (v != NULL && *e == '\0')
            *(s[0] == '>' ? &lo : &hi) = v;
        else
            json_decref(v);
    } else {
        json_t *a = range_num(s, &e);
        if (a != NULL && *e == '-') {
            json_t *b = range_num(e + 1, &e);
            if (b != NULL && *e == '\0') {
                lo = a;
                hi = b;
                a = NULL;
            } else {
                json_decref(b);
            }
        }
        json_decref(a);
    }
    if (lo == NULL && hi == NULL) return put_str(rr, "text", s) == 0 ? HDX_OK : nomem(c);
    int bad = lo != NULL && put(rr, "low", quantity(lo, &x->unit)) != 0;
    bad |= hi != NULL && put(rr, "high", quantity(hi, &x->unit)) != 0; /* steals hi either way */
    if (bad) return nomem(c);
    return HDX_OK;
}

static int interp_of(struct v2ctx *c, const struct obx *x, json_t *o)
{
    if (x->ninterp == 0) return HDX_OK;
    json_t *a = json_array();
    if (put(o, "interpretation", a) != 0) return nomem(c);
    for (int i = 0; i < x->ninterp; i++) {
        const char *code = x->interp[i], *sys = URI_V2_0078, *disp = NULL;
        if (!fhir_code_ok(code))
            return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: OBX-8 is not a valid code", x->occ);
        for (size_t k = 0; k < sizeof interps / sizeof interps[0]; k++)
            if (strcmp(interps[k].code, code) == 0) {
                sys = URI_INTERP;
                disp = interps[k].display;
            }
        if (push(a, concept1(sys, code, disp)) != 0) return nomem(c);
    }
    return HDX_OK;
}

static const char *absent_reason(const char *status)
{
    if (strcmp(status, "X") == 0) return "not-performed";
    if (strcmp(status, "N") == 0) return "not-asked";
    return "unknown";
}

static json_t *absent(const char *status)
{
    static const struct {
        const char *code, *display;
    } d[] = {
        {"not-performed", "Not Performed"}, {"not-asked", "Not Asked"}, {"unknown", "Unknown"}};
    const char *code = absent_reason(status);
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (strcmp(d[i].code, code) == 0) return concept1(URI_DAR, code, d[i].display);
    return NULL;
}

/* Joined text of every repetition of OBX-5 (TX and FT hold one line per repetition). */
static int text_value(struct v2ctx *c, const struct obx *x, bool all_reps, const char **out)
{
    const char *s;
    int rc;
    *out = "";
    if (!all_reps) return text_of(c, x->seg, "OBX", 5, 1, 0, 0, out);
    size_t total = 0;
    char *buf = NULL;
    for (int r = 1; r <= 64; r++) {
        struct hl7_msg one = c->m;
        struct hl7_view v;
        one.segs = &c->m.segs[x->seg];
        one.nsegs = 1;
        if (hl7_get(&one, "OBX", 1, 5, r, 0, 0, &v) != 0) break;
        if ((rc = text_of(c, x->seg, "OBX", 5, r, 0, 0, &s)) != HDX_OK) {
            free(buf);
            return rc;
        }
        size_t n = strlen(s);
        char *nb = realloc(buf, total + n + 2);
        if (nb == NULL) {
            free(buf);
            return nomem(c);
        }
        buf = nb;
        if (r > 1) buf[total++] = '\n';
        memcpy(buf + total, s, n);
        total += n;
        buf[total] = '\0';
    }
    if (buf == NULL) return HDX_OK;
    if (c->npool == c->cpool) { /* text_of left room only for its own string */
        char **np = realloc(c->pool, (c->cpool * 2 + 1) * sizeof *np);
        if (np == NULL) {
            free(buf);
            return nomem(c);
        }
        c->pool = np;
        c->cpool = c->cpool * 2 + 1;
    }
    c->pool[c->npool++] = buf;
    *out = buf;
    return HDX_OK;
}

/* value[x] (or dataAbsentReason) of x into o; *numeric says whether it is a valueQuantity
 * with a UCUM code the vital-signs profile of x->kind allows. */
static int value_of(struct v2ctx *c, const struct obx *x, json_t *o, bool *conform)
{
    const char *vt = x->vt, *s;
    int rc;
    *conform = false;
    if ((rc = text_of(c, x->seg, "OBX", 5, 1, 0, 0, &s)) != HDX_OK) return rc;
    if (s[0] == '\0') {
        *conform = true; /* vs-2: a data absent reason stands in for the value */
        return put(o, "dataAbsentReason", absent(x->status)) == 0 ? HDX_OK : nomem(c);
    }
    if (strcmp(vt, "NM") == 0) {
        json_t *v = nm_value(s);
        if (v == NULL)
            return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: OBX-5 is not a number (NM)", x->occ);
        json_t *q = quantity(v, &x->unit);
        if (q == NULL) return nomem(c);
        const char *code = json_string_value(json_object_get(q, "code"));
        for (int i = 0; i < 2 && code != NULL && vitals[x->kind].ucum[i] != NULL; i++)
            if (strcmp(code, vitals[x->kind].ucum[i]) == 0) *conform = true;
        return put(o, "valueQuantity", q) == 0 ? HDX_OK : nomem(c);
    }
    if (strcmp(vt, "CWE") == 0 || strcmp(vt, "CE") == 0 || strcmp(vt, "CNE") == 0) {
        struct cwe w;
        json_t *cc = NULL;
        if ((rc = cwe_of(c, x->seg, "OBX", 5, &w)) != HDX_OK ||
            (rc = concept_of(c, x, "OBX-5", &w, VK_NONE, &cc)) != HDX_OK) {
            json_decref(cc);
            return rc;
        }
        if (json_object_size(cc) == 0) {
            json_decref(cc);
            return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: OBX-5 holds no code", x->occ);
        }
        return put(o, "valueCodeableConcept", cc) == 0 ? HDX_OK : nomem(c);
    }
    if (strcmp(vt, "DTM") == 0 || strcmp(vt, "TS") == 0 || strcmp(vt, "DT") == 0) {
        struct when w;
        char t[64];
        if ((rc = text_of(c, x->seg, "OBX", 5, 1, 1, 0, &s)) != HDX_OK) return rc;
        if (dtm_parse(s, &w) != 0)
            return fail(c->why, c->cap, HDX_E_INVAL, "OBX %d: OBX-5 is not a valid DTM", x->occ);
        fhir_time_format(&w, c->msh_time_ok ? &c->msh_time : NULL, t, sizeof t);
        return put_str(o, "valueDateTime", t) == 0 ? HDX_OK : nomem(c);
    }
    /* ST, TX, FT and every other type: carried as text, never dropped */
    bool lines = strcmp(vt, "TX") == 0 || strcmp(vt, "FT") == 0;
    if ((rc = text_value(c, x, lines, &s)) != HDX_OK) return rc;
    return put_str(o, "valueString", s) == 0 ? HDX_OK : nomem(c);
}

/* resourceType, id, status, category, subject, device, effectiveDateTime; *has_time. */
static int base_of(struct v2ctx *c, const struct obx *x, size_t n, enum vkind kind, json_t *o,
                   bool *has_time)
{
    char id[64], t[64];
    json_t *subj, *dev;
    int rc;
    snprintf(id, sizeof id, "v2-%llu-%zu", (unsigned long long)c->in->seq, n);
    if (put_str(o, "resourceType", "Observation") != 0 || put_str(o, "id", id) != 0 ||
        put_str(o, "status", status_of(x->status)) != 0)
        return nomem(c);
    if (kind != VK_NONE) {
        json_t *cat = json_array();
        if (put(o, "category", cat) != 0 ||
            push(cat, concept1(URI_OBSCAT, "vital-signs", "Vital Signs")) != 0)
            return nomem(c);
    }
    rc = subject_of(c, x, &subj);
    if (subj != NULL && put(o, "subject", subj) != 0) return nomem(c);
    if (rc != HDX_OK) return rc;
    rc = device_of(c, x, &dev);
    if (dev != NULL && put(o, "device", dev) != 0) return nomem(c);
    if (rc != HDX_OK) return rc;
    if ((rc = effective_of(c, x, t, sizeof t)) != HDX_OK) return rc;
    *has_time = t[0] != '\0';
    if (*has_time && put_str(o, "effectiveDateTime", t) != 0) return nomem(c);
    return HDX_OK;
}

static int profile_of(struct v2ctx *c, json_t *o, const char *name)
{
    char u[128];
    json_t *meta = json_object(), *p = json_array();
    snprintf(u, sizeof u, "%s%s", URI_PROFILE, name);
    if (put(o, "meta", meta) != 0 || put(meta, "profile", p) != 0 || push(p, json_string(u)) != 0)
        return nomem(c);
    return HDX_OK;
}

static int one_obs(struct v2ctx *c, const struct obx *x, size_t n, json_t **out)
{
    json_t *o = json_object(), *code = NULL;
    bool has_time = false, conform = false;
    int rc;
    *out = o;
    if (o == NULL) return nomem(c);
    if ((rc = base_of(c, x, n, x->kind, o, &has_time)) != HDX_OK) return rc;
    rc = concept_of(c, x, "OBX-3", &x->code, x->kind, &code);
    if (code != NULL && put(o, "code", code) != 0) return nomem(c);
    if (rc != HDX_OK) return rc;
    if ((rc = value_of(c, x, o, &conform)) != HDX_OK || (rc = interp_of(c, x, o)) != HDX_OK ||
        (rc = range_of(c, x, o)) != HDX_OK)
        return rc;
    if (x->kind != VK_NONE && has_time && conform) return profile_of(c, o, vitals[x->kind].profile);
    return HDX_OK;
}

/* A blood-pressure component: code (original codings + LOINC), valueQuantity, interpretation,
 * referenceRange. */
static int component_of(struct v2ctx *c, const struct obx *x, json_t *comps, bool *conform)
{
    json_t *k = json_object(), *code = NULL;
    int rc;
    if (push(comps, k) != 0) return nomem(c);
    rc = concept_of(c, x, "OBX-3", &x->code, x->kind, &code);
    if (code != NULL && put(k, "code", code) != 0) return nomem(c);
    if (rc != HDX_OK) return rc;
    if ((rc = value_of(c, x, k, conform)) != HDX_OK || (rc = interp_of(c, x, k)) != HDX_OK ||
        (rc = range_of(c, x, k)) != HDX_OK)
        return rc;
    return HDX_OK;
}

static int panel_obs(struct v2ctx *c, const struct obx *sys, const struct obx *dia, size_t n,
                     json_t **out)
{
    json_t *o = json_object(), *comps;
    bool has_time = false, ok1 = false, ok2 = false;
    int rc;
    *out = o;
    if (o == NULL) return nomem(c);
    if ((rc = base_of(c, sys, n, VK_SYS, o, &has_time)) != HDX_OK) return rc;
    if (put(o, "code", concept1(URI_LOINC, BP_PANEL_CODE, BP_PANEL_DISPLAY)) != 0 ||
        put(o, "component", comps = json_array()) != 0)
        return nomem(c);
    if ((rc = component_of(c, sys, comps, &ok1)) != HDX_OK ||
        (rc = component_of(c, dia, comps, &ok2)) != HDX_OK)
        return rc;
    if (has_time && ok1 && ok2) return profile_of(c, o, "bp");
    return HDX_OK;
}

/* The channel of an OBX-4: IHE PCD-01 numbers a metric MDS.VMD.CHAN.METRIC, so a systolic and a
 * diastolic of one measurement differ in the last part only; other sub-ids are taken whole. */
static size_t channel_len(const char *subid)
{
    const char *dot = strrchr(subid, '.');
    return dot != NULL ? (size_t)(dot - subid) : strlen(subid);
}

static bool same_channel(const struct obx *a, const struct obx *b)
{
    size_t la = channel_len(a->subid), lb = channel_len(b->subid);
    return la == lb && memcmp(a->subid, b->subid, la) == 0;
}

/* Components share the panel's status, time and device, so only OBX that agree on those (and
 * both carry a number) are paired. */
static bool pairable(struct v2ctx *c, const struct obx *a, const struct obx *b)
{
    struct hl7_view va, vb;
    struct hl7_msg one = c->m;
    if (strcmp(a->vt, "NM") != 0 || strcmp(b->vt, "NM") != 0) return false;
    if (strcmp(a->status, b->status) != 0 || strcmp(a->time, b->time) != 0 ||
        strcmp(a->dev, b->dev) != 0)
        return false;
    one.nsegs = 1;
    one.segs = &c->m.segs[a->seg];
    if (hl7_get(&one, "OBX", 1, 5, 1, 0, 0, &va) != 0 || va.len == 0) return false;
    one.segs = &c->m.segs[b->seg];
    if (hl7_get(&one, "OBX", 1, 5, 1, 0, 0, &vb) != 0 || vb.len == 0) return false;
    return true;
}

static struct obx *partner_of(struct v2ctx *c, size_t i)
{
    struct obx *a = &c->obx[i];
    enum vkind want = a->kind == VK_SYS ? VK_DIA : VK_SYS;
    for (size_t j = i + 1; j < c->nobx && c->obx[j].group == a->group; j++) {
        struct obx *b = &c->obx[j];
        if (b->used || b->kind != want) continue;
        bool match = a->subid[0] == '\0' && b->subid[0] == '\0'
                         ? j == i + 1
                         : a->subid[0] != '\0' && b->subid[0] != '\0' && same_channel(a, b);
        if (match && pairable(c, a, b)) return b;
        if (a->subid[0] == '\0') break; /* adjacency only */
    }
    return NULL;
}

static int build(struct v2ctx *c, json_t *arr)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nobx; i++) {
        struct obx *x = &c->obx[i];
        json_t *o = NULL;
        int rc;
        if (x->used) continue;
        struct obx *p = x->kind == VK_SYS || x->kind == VK_DIA ? partner_of(c, i) : NULL;
        if (p != NULL) p->used = true;
        n++;
        /* one of them only (a read or a search row): the others are numbered, not built */
        if (c->in->only && n != c->in->only) continue;
        if (p != NULL)
            rc = x->kind == VK_SYS ? panel_obs(c, x, p, n, &o) : panel_obs(c, p, x, n, &o);
        else
            rc = one_obs(c, x, n, &o);
        if (o != NULL && push(arr, o) != 0 && rc == HDX_OK) rc = nomem(c);
        if (rc != HDX_OK) return rc;
        if (c->in->only) break;
    }
    return HDX_OK;
}

static void v2ctx_free(struct v2ctx *c)
{
    for (size_t i = 0; i < c->npool; i++)
        free(c->pool[i]);
    free(c->pool);
    free(c->obx);
    free(c->obr_seg);
    free(c->pid_seg);
    hl7_msg_free(&c->m);
}

int hdx_v2map_observations(const uint8_t *msg, size_t len, const struct hdx_v2map_in *in,
                           json_t **out, char *why, size_t cap)
{
    struct v2ctx c;
    struct hl7_error e;
    int rc;

    if (out != NULL) *out = NULL;
    if (why != NULL && cap > 0) why[0] = '\0';
    if (msg == NULL || in == NULL || out == NULL)
        return fail(why, cap, HDX_E_INVAL, "bad arguments");
    if (len > HDX_V2MAP_MAX_MSG)
        return fail(why, cap, HDX_E_TOOBIG, "message over %u bytes", HDX_V2MAP_MAX_MSG);
    memset(&c, 0, sizeof c);
    c.in = in;
    c.why = why;
    c.cap = cap;
    if (hl7_parse(msg, len, NULL, &c.m, &e) != 0)
        return fail(why, cap, HDX_E_INVAL, "not a parsable HL7 v2 message (%s)", e.text);
    if (strcmp(c.m.msg_type, "ORU^R01") != 0) {
        hl7_msg_free(&c.m);
        return fail(why, cap, HDX_E_INVAL, "not an ORU^R01 message");
    }
    const char *mt;
    c.latin1 = strcmp(c.m.charset, "8859/1") == 0;
    if ((rc = text_of(&c, 0, "MSH", 7, 1, 1, 0, &mt)) != HDX_OK) goto out;
    c.msh_time_ok = mt[0] != '\0' && dtm_parse(mt, &c.msh_time) == 0 && c.msh_time.has_off;
    if ((rc = collect(&c)) != HDX_OK) goto out;
    if (in->patient_ref != NULL && c.npid > 1) {
        rc = fail(why, cap, HDX_E_INVAL, "%zu PID segments: one patient_ref cannot name them all",
                  c.npid);
        goto out;
    }
    if (in->patient_ref != NULL &&
        (strncmp(in->patient_ref, "Patient/", 8) != 0 || !fhir_id_ok(in->patient_ref + 8))) {
        rc = fail(why, cap, HDX_E_INVAL, "patient_ref is not Patient/<id>");
        goto out;
    }
    if (in->patient_ref == NULL && c.npid == 0) {
        rc = fail(why, cap, HDX_E_INVAL, "no PID segment and no patient reference");
        goto out;
    }
    json_t *arr = json_array();
    if (arr == NULL) {
        rc = nomem(&c);
        goto out;
    }
    if ((rc = build(&c, arr)) != HDX_OK) {
        json_decref(arr);
        goto out;
    }
    *out = arr;
out:
    v2ctx_free(&c);
    return rc;
}

/* ---- FHIR -> v2 ------------------------------------------------------------------------ */

static const struct hl7_delims dl = {'|', '^', '~', '\\', '&', 0};

struct sb {
    char *p;
    size_t len, cap;
    int err; /* HDX_OK, HDX_E_NOMEM or HDX_E_TOOBIG */
};

static void sb_raw(struct sb *b, const char *s, size_t n)
{
    if (b->err != HDX_OK) return;
    if (n > HDX_V2MAP_MAX_MSG - b->len) {
        b->err = HDX_E_TOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL) {
            b->err = HDX_E_NOMEM;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_raw(b, s, strlen(s));
}

/* s escaped for the delimiters above (every value from the Observation goes through here). */
static void sb_esc(struct sb *b, const char *s)
{
    size_t n = strlen(s);
    if (b->err != HDX_OK || n == 0) return;
    if (n > HDX_V2MAP_MAX_MSG) {
        b->err = HDX_E_TOOBIG;
        return;
    }
    char *t = malloc(5 * n + 1); /* worst case: every byte a \Xhh\ */
    if (t == NULL) {
        b->err = HDX_E_NOMEM;
        return;
    }
    int k = hl7_escape(&dl, s, t, 5 * n + 1);
    if (k < 0)
        b->err = HDX_E_NOMEM;
    else
        sb_raw(b, t, (size_t)k);
    free(t);
}

/* Drops trailing field separators, then ends the segment. */
static void sb_end_seg(struct sb *b)
{
    while (b->err == HDX_OK && b->len > 0 && b->p[b->len - 1] == '|')
        b->p[--b->len] = '\0';
    sb_raw(b, "\r", 1);
}

struct fctx {
    char *why;
    size_t cap;
    struct sb b;
    int set_id;
};

/* A string member, NULL when absent; *bad set when it is there but not a clean string. */
static const char *jstr(const json_t *o, const char *k, bool *bad)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL) return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* The v2 name of a coding's system: "" for none, NULL when it has no v2 name. */
static const char *v2_sys(const char *uri, char *buf, size_t cap)
{
    if (uri == NULL) return "";
    for (size_t i = 0; i < sizeof systems / sizeof systems[0]; i++)
        if (strcmp(systems[i].uri, uri) == 0) return systems[i].v2;
    return local_name(uri, buf, cap) == 0 ? buf : NULL;
}

struct v2code {
    const char *code, *display, *sys;
    char sysbuf[MAX_SYSNAME + 1];
};

/* Picks the codings of a CodeableConcept for a CWE: the first LOINC coding (else the first
 * coding whose system has a v2 name) as the primary, the first other coding with a v2 system
 * name as the alternate. 0, or -1 when no coding qualifies (*text may still give CWE.2). */
static int pick_codes(const json_t *cc, struct v2code *pri, struct v2code *alt, const char **text,
                      bool *bad)
{
    const json_t *a = json_object_get(cc, "coding"), *cd;
    size_t i, pi = (size_t)-1;
    memset(pri, 0, sizeof *pri);
    memset(alt, 0, sizeof *alt);
    *text = jstr(cc, "text", bad);
    if (a != NULL && !json_is_array(a)) *bad = true;
    for (int pass = 0; pass < 3; pass++) {
        json_array_foreach(a, i, cd)
        {
            struct v2code *t = pass < 2 ? pri : alt;
            if (t->code != NULL) break;
            if (pass == 2 && i == pi) continue;
            const char *sys = jstr(cd, "system", bad), *code = jstr(cd, "code", bad);
            const char *disp = jstr(cd, "display", bad);
            if (code == NULL || code[0] == '\0') continue;
            if (pass == 0 && (sys == NULL || strcmp(sys, URI_LOINC) != 0)) continue;
            const char *name = v2_sys(sys, t->sysbuf, sizeof t->sysbuf);
            if (name == NULL) continue;
            if (name != t->sysbuf) snprintf(t->sysbuf, sizeof t->sysbuf, "%s", name);
            t->code = code;
            t->display = disp != NULL ? disp : "";
            t->sys = t->sysbuf;
            if (t == pri) pi = i;
        }
    }
    return pri->code != NULL ? 0 : -1;
}

/* CWE text: id^text^sys[^alt id^alt text^alt sys] (trailing empties dropped). */
static void put_cwe(struct sb *b, const struct v2code *p, const struct v2code *a,
                    const char *text_only)
{
    if (p->code == NULL) {
        sb_raw(b, "^", 1);
        sb_esc(b, text_only);
        return;
    }
    sb_esc(b, p->code);
    if (p->display[0] == '\0' && p->sys[0] == '\0' && a->code == NULL) return;
    sb_raw(b, "^", 1);
    sb_esc(b, p->display);
    if (p->sys[0] == '\0' && a->code == NULL) return;
    sb_raw(b, "^", 1);
    sb_esc(b, p->sys);
    if (a->code == NULL) return;
    sb_raw(b, "^", 1);
    sb_esc(b, a->code);
    sb_raw(b, "^", 1);
    sb_esc(b, a->display);
    sb_raw(b, "^", 1);
    sb_esc(b, a->sys);
}

/* OBX-3 (or OBR-4) of a CodeableConcept; -1 when it has no usable coding and no text. */
static int put_code(struct fctx *f, const json_t *cc, bool *bad)
{
    struct v2code p, a;
    const char *text;
    if (!json_is_object(cc)) return -1;
    if (pick_codes(cc, &p, &a, &text, bad) != 0 && (text == NULL || text[0] == '\0')) return -1;
    put_cwe(&f->b, &p, &a, text != NULL ? text : "");
    return 0;
}

static int put_num(struct fctx *f, const json_t *v)
{
    char t[NM_MAX + 1];
    if (nm_text(v, t, sizeof t) != 0)
        return fail(f->why, f->cap, HDX_E_INVAL, "a number does not fit a v2 NM (%d characters)",
                    NM_MAX);
    sb_str(&f->b, t);
    return HDX_OK;
}

static int fhir_to_dtm(const char *s, char *out, size_t cap)
{
    struct when w;
    if (s == NULL || fhir_time_parse(s, &w) != 0) return -1;
    dtm_format(&w, out, cap);
    return 0;
}

/* One OBX for an Observation or one of its components (x). */
static int put_obx(struct fctx *f, const json_t *x, const char *subid, const char *status,
                   const char *time, const char *device)
{
    bool bad = false;
    struct sb *b = &f->b;
    const json_t *q = json_object_get(x, "valueQuantity");
    const json_t *cc = json_object_get(x, "valueCodeableConcept");
    const char *vs = jstr(x, "valueString", &bad), *vdt = jstr(x, "valueDateTime", &bad);
    const json_t *vi = json_object_get(x, "valueInteger");
    const json_t *dar = json_object_get(x, "dataAbsentReason");
    char t[64], set[16];

    if (q == NULL && cc == NULL && vs == NULL && vdt == NULL && vi == NULL && dar == NULL)
        return fail(f->why, f->cap, HDX_E_INVAL,
                    "an Observation value is missing (no value[x] "
                    "and no dataAbsentReason)");
    snprintf(set, sizeof set, "%d", ++f->set_id);
    sb_str(b, "OBX|");
    sb_str(b, set);
    sb_str(b, "|");
    const char *vt = q != NULL || vi != NULL ? "NM"
                     : cc != NULL            ? "CWE"
                     : vdt != NULL           ? "DTM"
                     : vs != NULL ? (strlen(vs) > 199 || strchr(vs, '\n') != NULL ? "TX" : "ST")
                                  : "";
    sb_str(b, vt);
    sb_str(b, "|");
    if (put_code(f, json_object_get(x, "code"), &bad) != 0)
        return fail(f->why, f->cap, HDX_E_INVAL,
                    "code has no LOINC, MDC or SNOMED coding and no text");
    sb_str(b, "|");
    sb_esc(b, subid);
    sb_str(b, "|");
    const char *ucode = NULL, *unit = NULL;
    if (q != NULL) {
        const json_t *v = json_object_get(q, "value");
        if (!json_is_object(q) || !json_is_number(v))
            return fail(f->why, f->cap, HDX_E_INVAL, "valueQuantity.value is not a number");
        if (put_num(f, v) != HDX_OK) return HDX_E_INVAL;
        const char *sys = jstr(q, "system", &bad);
        ucode = sys != NULL && strcmp(sys, URI_UCUM) == 0 ? jstr(q, "code", &bad) : NULL;
        unit = jstr(q, "unit", &bad);
    } else if (vi != NULL) {
        if (!json_is_integer(vi))
            return fail(f->why, f->cap, HDX_E_INVAL, "valueInteger is not an integer");
        if (put_num(f, vi) != HDX_OK) return HDX_E_INVAL;
    } else if (cc != NULL) {
        if (put_code(f, cc, &bad) != 0)
            return fail(f->why, f->cap, HDX_E_INVAL,
                        "valueCodeableConcept has no coding of a known system and no text");
    } else if (vdt != NULL) {
        if (fhir_to_dtm(vdt, t, sizeof t) != 0)
            return fail(f->why, f->cap, HDX_E_INVAL, "valueDateTime is not a valid dateTime");
        sb_str(b, t);
    } else if (vs != NULL) {
        sb_esc(b, vs);
    }
    sb_str(b, "|");
    if (ucode != NULL && ucode[0] != '\0') { /* OBX-6: code^text^UCUM */
        sb_esc(b, ucode);
        sb_str(b, "^");
        sb_esc(b, unit != NULL && unit[0] != '\0' ? unit : ucode);
        sb_str(b, "^UCUM");
    } else if (unit != NULL && unit[0] != '\0') {
        sb_esc(b, unit);
        sb_str(b, "^");
        sb_esc(b, unit);
    }
    sb_str(b, "|");
    const json_t *rr = json_array_get(json_object_get(x, "referenceRange"), 0);
    if (rr != NULL) { /* OBX-7 */
        const json_t *lo = json_object_get(json_object_get(rr, "low"), "value");
        const json_t *hi = json_object_get(json_object_get(rr, "high"), "value");
        const char *txt = jstr(rr, "text", &bad);
        if (json_is_number(lo) && json_is_number(hi)) {
            if (put_num(f, lo) != HDX_OK) return HDX_E_INVAL;
            sb_str(b, "-");
            if (put_num(f, hi) != HDX_OK) return HDX_E_INVAL;
        } else if (json_is_number(lo)) {
            sb_str(b, ">");
            if (put_num(f, lo) != HDX_OK) return HDX_E_INVAL;
        } else if (json_is_number(hi)) {
            sb_str(b, "<");
            if (put_num(f, hi) != HDX_OK) return HDX_E_INVAL;
        } else if (txt != NULL) {
            sb_esc(b, txt);
        }
    }
    sb_str(b, "|");
    const json_t *ic;
    size_t i;
    int nint = 0;
    json_array_foreach(json_object_get(x, "interpretation"), i, ic)
    { /* OBX-8, repeating */
        const json_t *cd = json_array_get(json_object_get(ic, "coding"), 0);
        const char *sys = jstr(cd, "system", &bad), *code = jstr(cd, "code", &bad);
        if (code == NULL || sys == NULL ||
            (strcmp(sys, URI_INTERP) != 0 && strcmp(sys, URI_V2_0078) != 0))
            continue;
        if (nint++ > 0) sb_str(b, "~");
        sb_esc(b, code);
    }
    sb_str(b, "|||");
    sb_str(b, status);
    sb_str(b, "|||");
    sb_str(b, time);
    sb_str(b, "||||");
    sb_esc(b, device);
    sb_end_seg(b);
    if (bad) return fail(f->why, f->cap, HDX_E_INVAL, "an Observation element has the wrong type");
    return HDX_OK;
}

static int obs_time(struct fctx *f, const json_t *obs, char *out, size_t cap)
{
    bool bad = false;
    const char *s = jstr(obs, "effectiveDateTime", &bad);
    if (s == NULL) s = jstr(obs, "effectiveInstant", &bad);
    if (s == NULL) s = jstr(json_object_get(obs, "effectivePeriod"), "start", &bad);
    out[0] = '\0';
    if (bad || (s != NULL && fhir_to_dtm(s, out, cap) != 0))
        return fail(f->why, f->cap, HDX_E_INVAL, "effective[x] is not a valid dateTime");
    return HDX_OK;
}

static const char *obs_device(const json_t *obs, bool *bad)
{
    const json_t *d = json_object_get(obs, "device");
    const char *ref = jstr(d, "reference", bad);
    if (ref != NULL && strncmp(ref, "Device/", 7) == 0 && fhir_id_ok(ref + 7)) return ref + 7;
    const char *disp = jstr(d, "display", bad);
    return disp != NULL ? disp : "";
}

static void put_msh(struct fctx *f, const struct hdx_v2map_out *o)
{
    char t[64];
    time_t s = (time_t)(o->now_us / 1000000);
    struct tm tm;
    if (o->now_us < 0 || gmtime_r(&s, &tm) == NULL) memset(&tm, 0, sizeof tm);
    snprintf(t, sizeof t, "%04d%02d%02d%02d%02d%02d.%03d+0000", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(o->now_us < 0 ? 0 : o->now_us / 1000 % 1000));
    sb_str(&f->b, "MSH|^~\\&|");
    sb_esc(&f->b, o->sending_app != NULL ? o->sending_app : "");
    sb_str(&f->b, "||||");
    sb_str(&f->b, t);
    sb_str(&f->b, "||ORU^R01^ORU_R01|");
    sb_esc(&f->b, o->control_id);
    sb_str(&f->b, "|P|2.5.1||||||UNICODE UTF-8");
    sb_end_seg(&f->b);
    sb_str(&f->b, "PID|1||");
    sb_esc(&f->b, o->patient_mrn);
    sb_str(&f->b, "^^^");
    sb_esc(&f->b, o->patient_authority != NULL ? o->patient_authority : "");
    sb_str(&f->b, "^MR");
    sb_end_seg(&f->b);
}

static int oru_body(struct fctx *f, const json_t *obs)
{
    bool bad = false;
    char t[64];
    int rc;
    const char *rt = jstr(obs, "resourceType", &bad);
    const char *st = jstr(obs, "status", &bad);
    const char *status = NULL;
    if (rt == NULL || strcmp(rt, "Observation") != 0)
        return fail(f->why, f->cap, HDX_E_INVAL, "not an Observation");
    for (size_t i = 0; st != NULL && i < sizeof statuses_out / sizeof statuses_out[0]; i++)
        if (strcmp(statuses_out[i].fhir, st) == 0) status = statuses_out[i].v2;
    if (status == NULL)
        return fail(f->why, f->cap, HDX_E_INVAL, "status is missing or not an observation-status");
    if ((rc = obs_time(f, obs, t, sizeof t)) != HDX_OK) return rc;
    const char *dev = obs_device(obs, &bad);
    sb_str(&f->b, "OBR|1|||");
    if (put_code(f, json_object_get(obs, "code"), &bad) != 0)
        return fail(f->why, f->cap, HDX_E_INVAL,
                    "code has no LOINC, MDC or SNOMED coding and no text");
    sb_str(&f->b, "|||");
    sb_str(&f->b, t);
    sb_end_seg(&f->b);
    const json_t *comps = json_object_get(obs, "component");
    if (comps != NULL && !json_is_array(comps))
        return fail(f->why, f->cap, HDX_E_INVAL, "component is not an array");
    if (json_array_size(comps) > HDX_V2MAP_MAX_OBS)
        return fail(f->why, f->cap, HDX_E_TOOBIG, "more than %d components", HDX_V2MAP_MAX_OBS);
    bool own = json_object_get(obs, "valueQuantity") || json_object_get(obs, "valueString") ||
               json_object_get(obs, "valueCodeableConcept") ||
               json_object_get(obs, "valueDateTime") || json_object_get(obs, "valueInteger") ||
               json_object_get(obs, "dataAbsentReason") || json_array_size(comps) == 0;
    if (own && (rc = put_obx(f, obs, "", status, t, dev)) != HDX_OK) return rc;
    size_t i;
    const json_t *k;
    json_array_foreach(comps, i, k)
    {
        if (!json_is_object(k))
            return fail(f->why, f->cap, HDX_E_INVAL, "component %zu is not an object", i + 1);
        if ((rc = put_obx(f, k, "1", status, t, dev)) != HDX_OK) return rc;
    }
    if (bad) return fail(f->why, f->cap, HDX_E_INVAL, "an Observation element has the wrong type");
    return f->b.err == HDX_OK         ? HDX_OK
           : f->b.err == HDX_E_TOOBIG ? fail(f->why, f->cap, HDX_E_TOOBIG,
                                             "message would exceed %u bytes", HDX_V2MAP_MAX_MSG)
                                      : fail(f->why, f->cap, HDX_E_NOMEM, "out of memory");
}

int hdx_v2map_oru(const json_t *obs, const struct hdx_v2map_out *o, char **out, size_t *len,
                  char *why, size_t cap)
{
    struct fctx f;
    int rc;

    if (out != NULL) *out = NULL;
    if (len != NULL) *len = 0;
    if (why != NULL && cap > 0) why[0] = '\0';
    if (obs == NULL || o == NULL || out == NULL || len == NULL)
        return fail(why, cap, HDX_E_INVAL, "bad arguments");
    if (!json_is_object(obs)) return fail(why, cap, HDX_E_INVAL, "not an Observation");
    if (o->control_id == NULL || o->control_id[0] == '\0')
        return fail(why, cap, HDX_E_INVAL, "no control id (MSH-10)");
    if (o->patient_mrn == NULL || o->patient_mrn[0] == '\0')
        return fail(why, cap, HDX_E_INVAL, "no patient MRN (PID-3.1)");
    if (o->now_us < 0) return fail(why, cap, HDX_E_INVAL, "now_us is before 1970");
    memset(&f, 0, sizeof f);
    f.why = why;
    f.cap = cap;
    put_msh(&f, o);
    rc = oru_body(&f, obs);
    if (rc == HDX_OK && f.b.err != HDX_OK)
        rc = fail(why, cap, f.b.err, f.b.err == HDX_E_TOOBIG ? "message too big" : "out of memory");
    if (rc != HDX_OK) {
        free(f.b.p);
        return rc;
    }
    *out = f.b.p;
    *len = f.b.len;
    return HDX_OK;
}
