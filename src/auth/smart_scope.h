/* smart_scope: SMART on FHIR clinical scopes (SMART App Launch 2.x, 3.0.0 "Scopes and Launch
 * Context"), as a backend client requests them at the token endpoint and as its registration
 * grants them; what an access token then carries and what each FHIR interaction is checked
 * against.
 *
 *   SCOPES = "" | TERM *(" " TERM)    one space between terms (RFC 6749 3.3), none around
 *   TERM   = CONTEXT "/" TYPE "." PERMS
 *   CONTEXT = "patient" | "user" | "system"
 *   TYPE   = "*" | [A-Z][A-Za-z]{0,63}   any FHIR resource type name; not checked against R4
 *   PERMS  = v2: a non-empty subsequence of "cruds" in that order ("rs", "cud", "cruds")
 *          | v1: "read" (taken as rs), "write" (cud), "*" (cruds)
 * At most HDX_SMART_SCOPE_TERMS_MAX terms and HDX_SMART_SCOPE_IN_MAX bytes. Anything else is
 * refused, including v2 query-parameter scopes ("patient/Observation.rs?category=..."), scopes
 * outside the grammar (openid, fhirUser, launch, offline_access) and letters out of order
 * ("sr"): a grant is never widened or narrowed by a guess. A refusal's why is "term N: CODE"
 * (N counts from 1; CODE one of empty_term, bad_context, bad_resource, bad_permissions) or
 * "too_many_terms" / "too_long" / "bad_argument"; scopes are not PHI but values are not quoted.
 *
 * Parsed form: one term per (context, type), permissions merged (a bit set), terms ordered by
 * context (patient, user, system) then type (bytewise, so "*" first). The canonical text
 * (hdx_smart_scope_format) is that order with v2 letters: equal sets have equal texts, which
 * is what audit records and logs carry.
 * A request for type T with interaction i in context C is allowed when a term of context C
 * with type T or "*" holds i. Contexts never imply each other (system/ grants nothing to
 * patient/ requests).
 * Thread: any; pure. */
#ifndef HDX_SMART_SCOPE_H
#define HDX_SMART_SCOPE_H

#include <stddef.h>

#define HDX_SMART_SCOPE_TERMS_MAX 32 /* terms in a parsed text */
#define HDX_SMART_SCOPE_IN_MAX 4096  /* bytes of a parsed text */
#define HDX_SMART_SCOPE_TYPE_MAX 64  /* bytes of a resource type name */
/* an intersection can name each type of either side: up to twice the terms */
#define HDX_SMART_SCOPE_CAP (2 * HDX_SMART_SCOPE_TERMS_MAX)
/* "patient/" + type + "." + "cruds", a space between terms */
#define HDX_SMART_SCOPE_TEXT_MAX (HDX_SMART_SCOPE_CAP * (8 + HDX_SMART_SCOPE_TYPE_MAX + 1 + 5 + 1))

enum hdx_smart_context { HDX_SMART_PATIENT = 0, HDX_SMART_USER = 1, HDX_SMART_SYSTEM = 2 };

/* permission bits, in "cruds" order */
#define HDX_SMART_C 0x01u
#define HDX_SMART_R 0x02u
#define HDX_SMART_U 0x04u
#define HDX_SMART_D 0x08u
#define HDX_SMART_S 0x10u
#define HDX_SMART_ALL 0x1fu

struct hdx_smart_term {
    enum hdx_smart_context context;
    char type[HDX_SMART_SCOPE_TYPE_MAX + 1]; /* "*" or a type name */
    unsigned perms;                          /* HDX_SMART_* bits, never 0 */
};

struct hdx_smart_scopes {
    size_t n;
    struct hdx_smart_term t[HDX_SMART_SCOPE_CAP];
};

/* text (len bytes, no NUL needed) into *out (zeroed first; n 0 for ""). HDX_OK, or
 * HDX_E_INVAL / HDX_E_TOOBIG with why set as above and out->n 0. */
int hdx_smart_scope_parse(const char *text, size_t len, struct hdx_smart_scopes *out, char *why,
                          size_t cap);

/* 1 when s allows interaction ('c', 'r', 'u', 'd', 's') on resource_type in context ("patient",
 * "user", "system"); 0 otherwise, also for an unknown context or interaction. */
int hdx_smart_scope_allows(const struct hdx_smart_scopes *s, const char *context,
                           const char *resource_type, char interaction);

/* What a token gets: each requested term narrowed to what granted allows (per context; the
 * type is the more specific of the two, "*" meeting a type gives that type; permissions the
 * common bits; nothing when none are common). An empty request gets all of granted. out may
 * not alias either input. HDX_OK, HDX_E_INVAL (NULL, aliasing), or HDX_E_TOOBIG when more than
 * HDX_SMART_SCOPE_CAP terms would result (impossible for two parsed sets; possible when an
 * intersection is intersected again). */
int hdx_smart_scope_intersect(const struct hdx_smart_scopes *requested,
                              const struct hdx_smart_scopes *granted, struct hdx_smart_scopes *out);

/* The canonical text of s into out (cap bytes; HDX_SMART_SCOPE_TEXT_MAX + 1 always suffices).
 * HDX_OK, or HDX_E_TOOBIG with out "" when cap is short. */
int hdx_smart_scope_format(const struct hdx_smart_scopes *s, char *out, size_t cap);

#endif
