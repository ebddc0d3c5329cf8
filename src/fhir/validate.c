/* validate: FHIR R4 structural validation (fhir/validate.h) over the generated tables
 * (fhir/defs.h). One walk, depth-first, stopping at the first fault: the walker keeps the path
 * of where it is in a fixed buffer and, on a fault, leaves it there with a fixed reason. */
#include "fhir/validate.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "fhir/defs.h"

struct vctx {
    char path[HDX_FHIR_PATH_CAP];
    size_t plen;
    size_t nodes;
    int in_contained; /* > 0 while inside a contained resource (dom-2) */
    const char *why;  /* set on the first fault */
};

static int fail(struct vctx *c, const char *why)
{
    if (!c->why) c->why = why;
    return -1;
}

/* Appends text to the path; returns the length to restore. The buffer cannot fill (depth and
 * name lengths are bounded: 32 x (65 + 12) < HDX_FHIR_PATH_CAP) but is cut safely if it does. */
static size_t path_text(struct vctx *c, const char *pre, const char *s, const char *post)
{
    size_t old = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s%s", pre, s, post);
    if (n > 0)
        c->plen +=
            (size_t)n < sizeof(c->path) - c->plen ? (size_t)n : sizeof(c->path) - c->plen - 1;
    return old;
}

static size_t path_name(struct vctx *c, const char *name)
{
    return path_text(c, c->plen ? "." : "", name, "");
}

static size_t path_index(struct vctx *c, size_t i)
{
    char num[24];
    snprintf(num, sizeof(num), "%zu", i);
    return path_text(c, "[", num, "]");
}

static void path_set(struct vctx *c, size_t len)
{
    c->plen = len;
    c->path[len] = '\0';
}

/* An unknown name goes into the path only when it cannot carry anything but a name. */
static const char *safe_name(const char *key, size_t klen)
{
    if (klen == 0 || klen > 64) return "?";
    for (size_t i = 0; i < klen; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return "?";
    }
    return key;
}

/* ---- primitives ---- */

static int is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

/* n digits at s; value in *v */
static int digits(const char *s, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i])) return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

static int month_days(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

/* YYYY, YYYY-MM or YYYY-MM-DD at s; returns the characters used (4, 7, 10) or 0. Year 0001-9999
 * (the R4 regex refuses 0000). *full set when the day is there. */
static size_t parse_date(const char *s, size_t len, int *full)
{
    int y, m, d;
    *full = 0;
    if (len < 4 || !digits(s, 4, &y) || y == 0) return 0;
    if (len == 4 || s[4] != '-') return 4;
    if (len < 7 || !digits(s + 5, 2, &m) || m < 1 || m > 12) return 0;
    if (len == 7 || s[7] != '-') return 7;
    if (len < 10 || !digits(s + 8, 2, &d) || d < 1 || d > month_days(y, m)) return 0;
    *full = 1;
    return 10;
}

/* hh:mm:ss(.f+)? at s; returns the characters used or 0. Second 60 is a leap second. */
static size_t parse_time(const char *s, size_t len)
{
    int h, mi, se;
    if (len < 8 || !digits(s, 2, &h) || h > 23 || s[2] != ':' || !digits(s + 3, 2, &mi) ||
        mi > 59 || s[5] != ':' || !digits(s + 6, 2, &se) || se > 60)
        return 0;
    size_t i = 8;
    if (i < len && s[i] == '.') {
        size_t j = i + 1;
        while (j < len && is_digit((unsigned char)s[j]))
            j++;
        if (j == i + 1) return 0;
        i = j;
    }
    return i;
}

/* Z or (+|-)hh:mm with hh:mm at most 14:00, exactly the rest of the string */
static int parse_zone(const char *s, size_t len)
{
    int h, m;
    if (len == 1 && s[0] == 'Z') return 1;
    if (len != 6 || (s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &h) || s[3] != ':' ||
        !digits(s + 4, 2, &m) || m > 59)
        return 0;
    return h < 14 || (h == 14 && m == 0);
}

/* date, dateTime (need_full 0) or instant (need_full 1) */
static int check_datetime(const char *s, size_t len, int allow_time, int need_full)
{
    int full;
    size_t n = parse_date(s, len, &full);
    if (!n) return 0;
    if (n == len) return !need_full;
    if (!allow_time || !full || s[n] != 'T') return 0;
    size_t t = parse_time(s + n + 1, len - n - 1);
    if (!t) return 0;
    return parse_zone(s + n + 1 + t, len - n - 1 - t);
}

static int check_code(const char *s, size_t len)
{
    if (is_ws((unsigned char)s[0]) || is_ws((unsigned char)s[len - 1])) return 0;
    for (size_t i = 1; i < len; i++)
        if (is_ws((unsigned char)s[i]) && is_ws((unsigned char)s[i - 1])) return 0;
    return 1;
}

static int check_id(const char *s, size_t len)
{
    if (len > 64) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '-' ||
              ch == '.'))
            return 0;
    }
    return 1;
}

static int check_uri(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (is_ws((unsigned char)s[i])) return 0;
    return 1;
}

/* urn:oid:[0-2](\.(0|[1-9][0-9]*))+ */
static int check_oid(const char *s, size_t len)
{
    if (len < 10 || memcmp(s, "urn:oid:", 8) != 0 || s[8] < '0' || s[8] > '2') return 0;
    size_t i = 9;
    int arcs = 0;
    while (i < len) {
        if (s[i] != '.' || i + 1 >= len || !is_digit((unsigned char)s[i + 1])) return 0;
        i++;
        if (s[i] == '0' && i + 1 < len && is_digit((unsigned char)s[i + 1])) return 0;
        while (i < len && is_digit((unsigned char)s[i]))
            i++;
        arcs++;
    }
    return arcs > 0;
}

/* urn:uuid: then lower-case 8-4-4-4-12 hex */
static int check_uuid(const char *s, size_t len)
{
    if (len != 45 || memcmp(s, "urn:uuid:", 9) != 0) return 0;
    for (size_t i = 9; i < len; i++) {
        size_t k = i - 9;
        unsigned char ch = (unsigned char)s[i];
        if (k == 8 || k == 13 || k == 18 || k == 23) {
            if (ch != '-') return 0;
        } else if (!is_digit(ch) && !(ch >= 'a' && ch <= 'f')) {
            return 0;
        }
    }
    return 1;
}

/* groups of 4 of [A-Za-z0-9+/=] with whitespace between; '=' only as the last one or two */
static int check_base64(const char *s, size_t len)
{
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (is_ws(ch)) continue;
        if (ch == '=') {
            pad++;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
                   ch == '+' || ch == '/') {
            if (pad) return 0;
        } else {
            return 0;
        }
        n++;
    }
    return n > 0 && n % 4 == 0 && pad <= 2;
}

/* R4 (datatypes.html#string): no character below 32 but TAB, CR, LF; and not only whitespace */
static int check_string_chars(struct vctx *c, const char *s, size_t len)
{
    int content = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 && !is_ws(ch)) return fail(c, "control character in string");
        if (!is_ws(ch)) content = 1;
    }
    if (!content) return fail(c, "whitespace-only string");
    return 0;
}

static int check_int(struct vctx *c, const json_t *v, json_int_t lo)
{
    if (!json_is_integer(v)) return fail(c, "not an integer");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > INT32_MAX) return fail(c, "integer out of range");
    return 0;
}

static int check_prim(struct vctx *c, int prim, const json_t *v)
{
    switch (prim) {
    case HDX_FHIR_P_BOOLEAN:
        return json_is_boolean(v) ? 0 : fail(c, "not a boolean");
    case HDX_FHIR_P_INTEGER:
        return check_int(c, v, INT32_MIN);
    case HDX_FHIR_P_POSITIVEINT:
        return check_int(c, v, 1);
    case HDX_FHIR_P_UNSIGNEDINT:
        return check_int(c, v, 0);
    case HDX_FHIR_P_DECIMAL:
        if (json_is_integer(v)) return 0;
        if (json_is_real(v) && isfinite(json_real_value(v))) return 0;
        return fail(c, "not a decimal");
    default:
        break;
    }
    if (!json_is_string(v)) return fail(c, "not a string");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0) return fail(c, "empty string");
    if (strlen(s) != len) return fail(c, "NUL in string");
    if (len > HDX_FHIR_STRING_MAX) return fail(c, "string too long");
    if (check_string_chars(c, s, len) != 0) return -1;
    switch (prim) {
    case HDX_FHIR_P_STRING:
    case HDX_FHIR_P_MARKDOWN:
        return 0;
    case HDX_FHIR_P_CODE:
        return check_code(s, len) ? 0 : fail(c, "not a valid code");
    case HDX_FHIR_P_ID:
        return check_id(s, len) ? 0 : fail(c, "not a valid id");
    case HDX_FHIR_P_URI:
    case HDX_FHIR_P_URL:
    case HDX_FHIR_P_CANONICAL:
        return check_uri(s, len) ? 0 : fail(c, "not a valid uri");
    case HDX_FHIR_P_OID:
        return check_oid(s, len) ? 0 : fail(c, "not a valid oid");
    case HDX_FHIR_P_UUID:
        return check_uuid(s, len) ? 0 : fail(c, "not a valid uuid");
    case HDX_FHIR_P_DATE:
        return check_datetime(s, len, 0, 0) ? 0 : fail(c, "not a valid date");
    case HDX_FHIR_P_DATETIME:
        return check_datetime(s, len, 1, 0) ? 0 : fail(c, "not a valid dateTime");
    case HDX_FHIR_P_INSTANT:
        return check_datetime(s, len, 1, 1) ? 0 : fail(c, "not a valid instant");
    case HDX_FHIR_P_TIME:
        return parse_time(s, len) == len ? 0 : fail(c, "not a valid time");
    case HDX_FHIR_P_BASE64BINARY:
        return check_base64(s, len) ? 0 : fail(c, "not valid base64");
    case HDX_FHIR_P_XHTML:
        return len >= 4 && memcmp(s, "<div", 4) == 0 ? 0 : fail(c, "not a div element");
    default:
        return fail(c, "unknown primitive type");
    }
}

/* ---- the walk ---- */

static int walk_object(struct vctx *c, json_t *obj, unsigned tid, int depth);
static int walk_resource(struct vctx *c, json_t *obj, int depth);

static int count_node(struct vctx *c)
{
    if (++c->nodes > HDX_FHIR_NODES_MAX) return fail(c, "too many elements");
    return 0;
}

/* The element of type tid that JSON name `name` stands for: its index in hdx_fhir_elems and
 * the type it holds (for a choice, the one the suffix names). 0 found, -1 not. */
static int resolve(unsigned tid, const char *name, size_t *ei, unsigned *vt)
{
    const struct hdx_fhir_type *t = &hdx_fhir_types[tid];
    for (size_t i = t->first; i < (size_t)t->first + t->count; i++) {
        const struct hdx_fhir_elem *e = &hdx_fhir_elems[i];
        if (!(e->flags & HDX_FHIR_E_CHOICE)) {
            if (strcmp(e->name, name) == 0) {
                *ei = i;
                *vt = hdx_fhir_elem_types[e->types];
                return 0;
            }
            continue;
        }
        size_t n = strlen(e->name);
        if (strncmp(name, e->name, n) != 0 || name[n] == '\0') continue;
        for (unsigned k = 0; k < e->ntypes; k++) {
            unsigned x = hdx_fhir_elem_types[e->types + k];
            const char *tn = hdx_fhir_types[x].name;
            char up = (tn[0] >= 'a' && tn[0] <= 'z') ? (char)(tn[0] - 'a' + 'A') : tn[0];
            if (name[n] == up && strcmp(name + n + 1, tn + 1) == 0) {
                *ei = i;
                *vt = x;
                return 0;
            }
        }
    }
    return -1;
}

/* One (non-array) value of type vt. */
static int walk_single(struct vctx *c, const struct hdx_fhir_elem *e, json_t *v, unsigned vt,
                       int depth)
{
    const struct hdx_fhir_type *t = &hdx_fhir_types[vt];
    if (t->kind == HDX_FHIR_K_PRIMITIVE) return check_prim(c, (int)vt, v);
    if (!json_is_object(v)) return fail(c, "not an object");
    if (t->kind == HDX_FHIR_K_ANYRESOURCE) {
        if (c->in_contained) return fail(c, "a contained resource holds no resources (dom-2)");
        int contained = strcmp(e->name, "contained") == 0;
        c->in_contained += contained;
        int rc = walk_resource(c, v, depth + 1);
        c->in_contained -= contained;
        return rc;
    }
    return walk_object(c, v, vt, depth + 1);
}

/* Whether the primitive array sibling (x or _x) has a non-null item at i. */
static int has_item(json_t *arr, size_t i)
{
    return json_is_array(arr) && i < json_array_size(arr) && !json_is_null(json_array_get(arr, i));
}

/* The value of element e (JSON name key, holding type vt) in obj. */
static int walk_value(struct vctx *c, json_t *obj, const char *key, const struct hdx_fhir_elem *e,
                      unsigned vt, json_t *v, int depth)
{
    if (!(e->flags & HDX_FHIR_E_MANY)) {
        if (json_is_array(v)) return fail(c, "an array for a single element");
        if (json_is_null(v)) return fail(c, "null value");
        return walk_single(c, e, v, vt, depth);
    }
    if (!json_is_array(v)) return fail(c, "not an array for a repeating element");
    size_t n = json_array_size(v);
    if (n == 0) return fail(c, "empty array");
    json_t *ext = NULL;
    if (hdx_fhir_types[vt].kind == HDX_FHIR_K_PRIMITIVE) {
        char sib[80];
        if (snprintf(sib, sizeof(sib), "_%s", key) < (int)sizeof(sib))
            ext = json_object_get(obj, sib);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        size_t mark = path_index(c, i);
        if (count_node(c) != 0) return -1;
        if (json_is_null(item)) {
            if (!has_item(ext, i)) return fail(c, "null value");
        } else if (walk_single(c, e, item, vt, depth) != 0) {
            return -1;
        }
        path_set(c, mark);
    }
    return 0;
}

/* `_name`: the extension part of primitive element e, value v, beside the value x (or NULL). */
static int walk_primext(struct vctx *c, const struct hdx_fhir_elem *e, json_t *x, json_t *v,
                        int depth)
{
    if (!(e->flags & HDX_FHIR_E_MANY)) {
        if (!json_is_object(v)) return fail(c, "not an object");
        return walk_object(c, v, HDX_FHIR_T_ELEMENT, depth + 1);
    }
    if (!json_is_array(v)) return fail(c, "not an array for a repeating element");
    size_t n = json_array_size(v);
    if (n == 0) return fail(c, "empty array");
    if (x && json_is_array(x) && json_array_size(x) != n)
        return fail(c, "primitive and extension arrays differ in length");
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(v, i);
        size_t mark = path_index(c, i);
        if (count_node(c) != 0) return -1;
        if (json_is_null(item)) {
            if (!has_item(x, i)) return fail(c, "null value");
        } else if (!json_is_object(item)) {
            return fail(c, "not an object");
        } else if (walk_object(c, item, HDX_FHIR_T_ELEMENT, depth + 1) != 0) {
            return -1;
        }
        path_set(c, mark);
    }
    return 0;
}

/* R4 value set bundle-type (required binding of Bundle.type) */
static int bundle_type_ok(const json_t *v)
{
    static const char *const codes[] = {
        "document", "message",   "transaction", "transaction-response", "batch", "batch-response",
        "history",  "searchset", "collection"};
    const char *s = json_string_value(v);
    if (!s) return 0;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(s, codes[i]) == 0) return 1;
    return 0;
}

/* The invariants checked once an object's own elements passed. */
static int object_invariants(struct vctx *c, json_t *obj, unsigned tid, const uint16_t *seen)
{
    if (tid == HDX_FHIR_T_BUNDLE) {
        json_t *bt = json_object_get(obj, "type");
        if (!bundle_type_ok(bt)) {
            path_name(c, "type");
            return fail(c, bt ? "not a Bundle.type code" : "required element missing");
        }
    }
    if (tid == HDX_FHIR_T_EXTENSION) {
        int has_value = 0, has_ext = json_object_get(obj, "extension") != NULL;
        const struct hdx_fhir_type *t = &hdx_fhir_types[tid];
        for (size_t i = 0; i < t->count; i++)
            if ((hdx_fhir_elems[t->first + i].flags & HDX_FHIR_E_CHOICE) && seen[i]) has_value = 1;
        if (has_value == has_ext) return fail(c, "extension needs value[x] or extension, not both");
    }
    return 0;
}

static int walk_object(struct vctx *c, json_t *obj, unsigned tid, int depth)
{
    const struct hdx_fhir_type *t = &hdx_fhir_types[tid];
    uint16_t seen[HDX_FHIR_MAX_ELEMS]; /* per element: 1 + the type it was given as */
    int is_resource = t->kind == HDX_FHIR_K_RESOURCE;

    if (depth > HDX_FHIR_DEPTH_MAX) return fail(c, "nesting too deep");
    if (json_object_size(obj) == 0) return fail(c, "empty object");
    memset(seen, 0, sizeof(seen));
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        json_t *v = json_object_iter_value(it);
        if (count_node(c) != 0) return -1;
        if (is_resource && strcmp(key, "resourceType") == 0) continue; /* checked by caller */
        int ext = key[0] == '_';
        const char *name = key + ext;
        size_t ei;
        unsigned vt;
        size_t mark;
        if (strlen(key) != klen || resolve(tid, name, &ei, &vt) != 0) {
            path_name(c, safe_name(key, klen));
            return fail(c, "unknown element");
        }
        const struct hdx_fhir_elem *e = &hdx_fhir_elems[ei];
        size_t slot = ei - t->first;
        if (seen[slot] && seen[slot] != vt + 1) {
            path_name(c, key);
            return fail(c, "more than one type for a choice element");
        }
        seen[slot] = (uint16_t)(vt + 1);
        if (ext) {
            /* reported on the element's own name: Patient.birthDate.extension[0].url */
            mark = path_name(c, name);
            if (hdx_fhir_types[vt].kind != HDX_FHIR_K_PRIMITIVE || (e->flags & HDX_FHIR_E_NOEXT)) {
                path_set(c, mark);
                path_name(c, key);
                return fail(c, "unknown element");
            }
            if (walk_primext(c, e, json_object_get(obj, name), v, depth) != 0) return -1;
        } else {
            mark = path_name(c, key);
            if (walk_value(c, obj, key, e, vt, v, depth) != 0) return -1;
        }
        path_set(c, mark);
    }
    for (size_t i = 0; i < t->count; i++) {
        const struct hdx_fhir_elem *e = &hdx_fhir_elems[t->first + i];
        if ((e->flags & HDX_FHIR_E_MIN1) && !seen[i]) {
            path_name(c, e->name);
            if (e->flags & HDX_FHIR_E_CHOICE) path_text(c, "", "[x]", "");
            return fail(c, "required element missing");
        }
    }
    return object_invariants(c, obj, tid, seen);
}

static int lookup_resource(const char *name)
{
    if (!name) return -1;
    for (size_t i = 0; i < HDX_FHIR_NRESOURCES; i++)
        if (strcmp(hdx_fhir_types[hdx_fhir_resources[i]].name, name) == 0)
            return hdx_fhir_resources[i];
    return -1;
}

/* A resource: obj is an object; the path so far names where it sits. */
static int walk_resource(struct vctx *c, json_t *obj, int depth)
{
    json_t *rt = json_object_get(obj, "resourceType");
    if (!rt || !json_is_string(rt)) {
        path_name(c, "resourceType");
        return fail(c, rt ? "resourceType is not a string" : "resourceType missing");
    }
    int tid = lookup_resource(json_string_value(rt));
    if (tid < 0 || strlen(json_string_value(rt)) != json_string_length(rt)) {
        path_name(c, "resourceType");
        return fail(c, "resource type not supported");
    }
    return walk_object(c, obj, (unsigned)tid, depth);
}

static void put(char *dst, size_t cap, const char *s)
{
    if (!dst || cap == 0) return;
    size_t n = strlen(s);
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int hdx_fhir_validate(const json_t *res, char *path, size_t path_cap, char *why, size_t why_cap)
{
    struct vctx c;
    /* jansson's iterators take non-const objects; the walk never modifies anything. */
    json_t *obj = (json_t *)(uintptr_t)res;
    int rc;

    c.plen = 0;
    c.path[0] = '\0';
    c.nodes = 0;
    c.in_contained = 0;
    c.why = NULL;
    path_name(&c, "Resource");
    if (!obj || !json_is_object(obj)) {
        rc = fail(&c, "not a JSON object");
    } else {
        json_t *rt = json_object_get(obj, "resourceType");
        int tid = json_is_string(rt) ? lookup_resource(json_string_value(rt)) : -1;
        if (tid >= 0) {
            path_set(&c, 0);
            path_name(&c, hdx_fhir_types[tid].name);
        }
        rc = walk_resource(&c, obj, 1);
    }
    if (rc == 0) {
        put(path, path_cap, "");
        put(why, why_cap, "");
        return HDX_OK;
    }
    put(path, path_cap, c.path);
    put(why, why_cap, c.why ? c.why : "invalid");
    return HDX_E_INVAL;
}

int hdx_fhir_type_supported(const char *resource_type)
{
    return lookup_resource(resource_type) >= 0;
}
