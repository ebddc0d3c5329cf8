/* fuzz_jsonw: libFuzzer entry point for hdx's own JSON string writer (proto/jsonw.h), the hot
 * path of the record answers. The input is a string value as a record body would be. Beyond
 * "no crash", it traps when a value the writer accepts does not come back, through jansson
 * (the reference parser), as exactly the input bytes in a one-member object; when the text
 * holds a raw control byte (an SSE data line must stay one line); when the writer refuses a
 * value jansson's own encoder takes (our UTF-8 check is never stricter); and when
 * hdx_utf8_valid disagrees with walking hdx_utf8_seq_len. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hdx_jsonw w = {0};
    hdx_jsonw_raw(&w, "{\"v\":", 5);
    int rc = hdx_jsonw_string(&w, data, size);
    hdx_jsonw_raw(&w, "}", 1);
    size_t len = 0;
    char *text = hdx_jsonw_take(&w, &len);
    CHECK(text != NULL);
    int walked = 1;
    for (size_t i = 0; i < size && walked;) {
        size_t k = hdx_utf8_seq_len(data + i, size - i);
        if (!k) walked = 0;
        i += k ? k : 1;
    }
    CHECK(walked == hdx_utf8_valid(data, size));
    CHECK((rc == 0) == walked);
    json_t *ref = json_stringn((const char *)data, size);
    if (ref) CHECK(rc == 0); /* jansson takes it: so must we */
    json_decref(ref);
    if (rc == 0) {
        for (size_t i = 0; i < len; i++)
            CHECK((unsigned char)text[i] >= 0x20);
        json_error_t err;
        json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
        CHECK(o != NULL);
        json_t *v = json_object_get(o, "v");
        CHECK(json_is_string(v) && json_string_length(v) == size &&
              memcmp(json_string_value(v), data, size) == 0);
        json_decref(o);
    } else {
        CHECK(len == 6 && !memcmp(text, "{\"v\":}", 6)); /* nothing written for a refusal */
    }
    free(text);
    return 0;
}
