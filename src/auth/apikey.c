#include "auth/apikey.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "pki/pki.h"

#define HASH_PREFIX "$hdxk$sha256$"
#define SECRET_LEN 43

static void stored_form(const char *key, size_t len, char *out)
{
    uint8_t d[32];
    hdx_sha256_once(key, len, d);
    memcpy(out, HASH_PREFIX, sizeof(HASH_PREFIX) - 1);
    hdx_hex(d, sizeof(d), out + sizeof(HASH_PREFIX) - 1);
    sodium_memzero(d, sizeof(d));
}

int hdx_apikey_new(const char *name, char *key, size_t key_cap, char *hash, size_t hash_cap)
{
    uint8_t secret[32];
    if (!pki_name_valid(name) || strlen(name) > 64 || key_cap <= HDX_APIKEY_MAX ||
        hash_cap <= HDX_APIKEY_HASH_LEN)
        return HDX_E_INVAL;
    randombytes_buf(secret, sizeof(secret));
    int n = snprintf(key, key_cap, HDX_APIKEY_PREFIX "%s.", name);
    sodium_bin2base64(key + n, key_cap - (size_t)n, secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret, sizeof(secret));
    stored_form(key, strlen(key), hash);
    return HDX_OK;
}

int hdx_apikey_hash_valid(const char *s)
{
    size_t p = sizeof(HASH_PREFIX) - 1;
    if (strnlen(s, HDX_APIKEY_HASH_LEN + 1) != HDX_APIKEY_HASH_LEN || strncmp(s, HASH_PREFIX, p))
        return 0;
    for (const char *c = s + p; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return 0;
    return 1;
}

int hdx_apikey_name(const char *key, size_t len, char *name, size_t cap)
{
    size_t p = sizeof(HDX_APIKEY_PREFIX) - 1;
    if (len > HDX_APIKEY_MAX || len < p + 2 + SECRET_LEN || memcmp(key, HDX_APIKEY_PREFIX, p) ||
        key[len - SECRET_LEN - 1] != '.')
        return HDX_E_INVAL;
    size_t n = len - SECRET_LEN - 1 - p;
    if (n >= cap) return HDX_E_INVAL;
    for (size_t i = len - SECRET_LEN; i < len; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return HDX_E_INVAL;
    }
    memcpy(name, key + p, n);
    name[n] = 0;
    return pki_name_valid(name) ? HDX_OK : HDX_E_INVAL;
}

int hdx_apikey_verify(const char *key, size_t len, const char *stored)
{
    char mine[HDX_APIKEY_HASH_LEN + 1];
    if (!hdx_apikey_hash_valid(stored)) return 0;
    stored_form(key, len, mine);
    mine[HDX_APIKEY_HASH_LEN] = 0;
    int ok = sodium_memcmp(mine, stored, HDX_APIKEY_HASH_LEN) == 0;
    sodium_memzero(mine, sizeof(mine));
    return ok;
}
