/* fuzz_apikey: libFuzzer entry point for the bearer API keys a client sends (auth/apikey.h):
 * hdx_apikey_name on the raw bytes, and hdx_apikey_hash_valid / hdx_apikey_verify with the
 * input as a stored hash. Beyond "no crash", it traps when a key is accepted whose name is
 * not a valid principal name or does not sit between the prefix and the last '.', whose
 * secret is not 43 base64url characters; when a key verifies against the hash of a key made
 * for another secret; when a fresh key for the parsed name does not parse back to it or does
 * not verify against its own hash; and when a stored hash is accepted that is not
 * "$hdxk$sha256$" and 64 lower-case hex digits. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/apikey.h"
#include "core/err.h"
#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static int b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *key = (const char *)data;
    char name[65], fresh[HDX_APIKEY_MAX + 1], hash[HDX_APIKEY_HASH_LEN + 1], back[65];
    if (hdx_apikey_name(key, size, name, sizeof(name)) == HDX_OK) {
        size_t n = strlen(name);
        CHECK(pki_name_valid(name));
        CHECK(size == 5 + n + 1 + 43 && !memcmp(key, "hdxk_", 5) && !memcmp(key + 5, name, n));
        CHECK(key[5 + n] == '.');
        for (size_t i = 6 + n; i < size; i++)
            CHECK(b64url(key[i]));
        CHECK(hdx_apikey_new(name, fresh, sizeof(fresh), hash, sizeof(hash)) == HDX_OK);
        CHECK(hdx_apikey_hash_valid(hash));
        CHECK(hdx_apikey_name(fresh, strlen(fresh), back, sizeof(back)) == HDX_OK);
        CHECK(!strcmp(back, name));
        CHECK(hdx_apikey_verify(fresh, strlen(fresh), hash));
        /* 256 fresh random bits: the fuzzer's key is not the fresh one. */
        CHECK(!hdx_apikey_verify(key, size, hash));
    }
    /* The input as a stored hash (a row of the users table is untrusted too). */
    char stored[HDX_APIKEY_HASH_LEN + 2];
    size_t n = size < sizeof(stored) - 1 ? size : sizeof(stored) - 1;
    memcpy(stored, data, n);
    stored[n] = 0;
    if (hdx_apikey_hash_valid(stored)) {
        CHECK(strlen(stored) == HDX_APIKEY_HASH_LEN && !strncmp(stored, "$hdxk$sha256$", 13));
        for (const char *c = stored + 13; *c; c++)
            CHECK((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
    }
    (void)hdx_apikey_verify(key, size, stored);
    return 0;
}
