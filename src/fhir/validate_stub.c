#include <string.h>
#include "fhir/validate.h"
int hdx_fhir_validate(const json_t *res, char *path, size_t path_cap, char *why, size_t why_cap)
{
    (void)res;
    (void)path;
    (void)path_cap;
    (void)why;
    (void)why_cap;
    return 0;
}
int hdx_fhir_type_supported(const char *t)
{
    return t &&
           (!strcmp(t, "Patient") || !strcmp(t, "Observation") || !strcmp(t, "Device") ||
            !strcmp(t, "Encounter") || !strcmp(t, "DiagnosticReport") || !strcmp(t, "Provenance") ||
            !strcmp(t, "Consent") || !strcmp(t, "AuditEvent") || !strcmp(t, "Bundle"));
}
