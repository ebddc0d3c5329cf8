/* TEMPORARY STUB until the fhirval branch merges */
#ifndef HDX_FHIR_VALIDATE_H
#define HDX_FHIR_VALIDATE_H
#include <jansson.h>
#include <stddef.h>
int hdx_fhir_validate(const json_t *res, char *path, size_t path_cap, char *why, size_t why_cap);
int hdx_fhir_type_supported(const char *resource_type);
#endif
