/* validate: structural validation of one FHIR R4 (4.0.1) resource in JSON, before it is stored.
 * Walks the resource (already parsed by jansson; duplicate keys refused by the caller) against
 * the element tables generated from the R4 StructureDefinitions (fhir/defs.h) and refuses the
 * first thing that is wrong, naming where with a FHIRPath-like path built from the JSON names:
 * "Observation.valueQuantity.value", "Patient.name[1].given[0]",
 * "Bundle.entry[2].resource.status". Pure: no I/O, no logging, no allocation, no global state.
 *
 * Checked:
 *  - resourceType: present, a string, one of the supported types (hdx_fhir_type_supported), at
 *    the root and in every Bundle.entry.resource, entry.response.outcome and contained resource;
 *    anywhere else it is an unknown element.
 *  - every property is an element of its type at that path (backbone elements such as
 *    Observation.component and Bundle.entry, and contentReference ones, included); a choice
 *    element name[x] only as name + one of its R4 type names (valueQuantity, valueString...),
 *    and only one of them per object; `_name` only beside a primitive element (not beside
 *    Element.id nor Extension.url), as an object (id, extension) or, for a repeating one, an
 *    array of such or null aligned with the primitive array (same length, never null at the
 *    same index in both).
 *  - cardinality: max 1 is never an array; max * is always a non-empty array whose items are not
 *    null (but where the `_name` array has the item); min 1 elements are present (the value or
 *    its `_name`). Objects are never empty.
 *  - primitives by their R4 regular expressions and JSON types: boolean, integer, positiveInt,
 *    unsignedInt (JSON integers in 32-bit range), decimal (a finite JSON number, never a
 *    string), string and markdown (non-empty, not only whitespace, no control character but TAB
 *    CR LF, at most HDX_FHIR_STRING_MAX bytes, no NUL), code, id, uri, url, canonical, oid,
 *    uuid, date and dateTime (real month lengths, leap years; a time needs seconds and a zone),
 *    instant, time, base64Binary, xhtml (a string starting "<div", not parsed).
 *  - invariants: Bundle.type is one of the R4 bundle-type codes; Extension holds exactly one
 *    of value[x] and extension (ext-1); a contained resource holds no resources (dom-2).
 *    Reference.reference a string and Quantity.value a decimal follow from the tables.
 * Not checked: other FHIRPath invariants, terminology bindings, profiles, reference targets,
 * the XHTML of the narrative.
 *
 * Limits (hostile input): objects nest at most HDX_FHIR_DEPTH_MAX deep (the resource is
 * depth 1) and at most HDX_FHIR_NODES_MAX JSON values are visited; beyond either the resource
 * is refused. Recursion is bounded by the depth limit; the stack used is a few hundred bytes a
 * level.
 *
 * Reasons are fixed English text and never quote a value (values may be PHI). The path quotes
 * JSON property names: an unknown name is quoted only when it is 1-64 of [A-Za-z0-9_] (else
 * "?"). Thread: any. */
#ifndef HDX_FHIR_VALIDATE_H
#define HDX_FHIR_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

#define HDX_FHIR_DEPTH_MAX 32       /* object nesting, the resource itself is 1 */
#define HDX_FHIR_NODES_MAX 100000   /* JSON values visited in one resource */
#define HDX_FHIR_STRING_MAX 1048576 /* bytes in one string value (R4: 1 MB) */
#define HDX_FHIR_PATH_CAP 4096      /* always enough for any path reported */

/* Validates res. Returns HDX_OK (0; path and why set to "" when their caps are > 0), or
 * HDX_E_INVAL with path (FHIRPath-like, NUL-terminated, cut to fit path_cap) and why (short fixed
 * text, cut to fit why_cap). res NULL or not an object: HDX_E_INVAL, path "Resource". A root
 * without a valid resourceType gives the path "Resource.resourceType". */
int hdx_fhir_validate(const json_t *res, char *path, size_t path_cap, char *why, size_t why_cap);

/* 1 if resource_type (NUL-terminated, case-sensitive) is one hdx supports, else 0 (NULL: 0) */
int hdx_fhir_type_supported(const char *resource_type);

#endif
