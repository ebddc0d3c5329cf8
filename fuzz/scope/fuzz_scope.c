/* fuzz_scope: libFuzzer entry point for granted scopes (policy/scope.h), the policy data a
 * front end reads from a store row (hdx_scope_parse: untrusted, the row may have been edited)
 * and from an operator (hdx_scope_from_operator). Beyond "no crash", it traps when a text the
 * parser accepts holds more values than allowed, or values that are not NUL-terminated
 * strings; when an accepted scope does not admit a record made of its own first values; when
 * hdx_scope_describe does not NUL-terminate within its buffer; and, for inputs naming no
 * patients (no key needed), when the operator form of an accepted canonical text is not that
 * same text (one spelling per scope), or the canonical text made from an operator text is not
 * itself accepted by the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "policy/scope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static void check_accepted(const struct hdx_scope *s)
{
    CHECK(s->ntypes <= HDX_SCOPE_VALUES_MAX && s->nsenders <= HDX_SCOPE_VALUES_MAX &&
          s->npatients <= HDX_SCOPE_VALUES_MAX);
    for (size_t i = 0; i < s->ntypes; i++)
        CHECK(memchr(s->types[i], 0, sizeof(s->types[i])) && s->types[i][0]);
    for (size_t i = 0; i < s->nsenders; i++)
        CHECK(memchr(s->senders[i], 0, sizeof(s->senders[i])) && s->senders[i][0]);
    /* A record made of its first values is in scope (a sender prefix "x*" admits "x"). */
    char sender[HDX_SENDER_MAX + 1] = "any", type[HDX_TYPE_MAX + 1] = "ANY^X";
    if (s->ntypes) memcpy(type, s->types[0], sizeof(type));
    if (s->nsenders) {
        memcpy(sender, s->senders[0], sizeof(sender));
        size_t n = strlen(sender);
        if (n && sender[n - 1] == '*') sender[n - 1] = 0;
    }
    if (!s->nsenders || sender[0])
        CHECK(hdx_scope_admits(s, sender, type, s->npatients ? s->patients[0] : NULL));
    if (s->npatients) CHECK(!hdx_scope_admits(s, sender, type, NULL)); /* fail closed */
    char small[8], big[4096];
    memset(small, 'x', sizeof(small));
    hdx_scope_describe(s, small, sizeof(small));
    CHECK(memchr(small, 0, sizeof(small)) != NULL);
    hdx_scope_describe(s, big, sizeof(big));
    CHECK(memchr(big, 0, sizeof(big)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct hdx_scope *s = malloc(sizeof(*s));
    char *canon = malloc(HDX_SCOPE_TEXT_MAX + 1), why[200];
    if (!s || !canon) abort();
    int named_patient = memmem(data, size, "patient", 7) != NULL;
    if (hdx_scope_parse(text, size, s) == HDX_OK) {
        CHECK(size <= HDX_SCOPE_TEXT_MAX);
        check_accepted(s);
        if (!named_patient) {
            CHECK(hdx_scope_from_operator(text, size, NULL, canon, HDX_SCOPE_TEXT_MAX + 1, why,
                                          sizeof(why)) == HDX_OK);
            CHECK(strlen(canon) == size && !memcmp(canon, text, size));
        }
    }
    if (!named_patient && hdx_scope_from_operator(text, size, NULL, canon, HDX_SCOPE_TEXT_MAX + 1,
                                                  why, sizeof(why)) == HDX_OK) {
        CHECK(hdx_scope_parse(canon, strlen(canon), s) == HDX_OK);
        check_accepted(s);
    }
    free(canon);
    free(s);
    return 0;
}
