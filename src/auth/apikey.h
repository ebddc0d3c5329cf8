/* auth/apikey: API keys for services (users of role integration, DESIGN M8). A key is
 * "hdxk_" NAME "." SECRET, SECRET 256 random bits in unpadded base64url (43 characters), shown
 * once when made. The name in the key only says which row to look at; what is stored, in the
 * user's pw_hash column and so in the admin record that set it, is "$hdxk$sha256$" and the
 * SHA-256 of the whole key in lower-case hex: a 256-bit secret needs no slow hash, and a
 * password login can never match it (it is no Argon2id string). Verification compares in
 * constant time. */
#ifndef HDX_AUTH_APIKEY_H
#define HDX_AUTH_APIKEY_H

#include <stddef.h>

#define HDX_APIKEY_PREFIX "hdxk_"
#define HDX_APIKEY_MAX (5 + 64 + 1 + 43) /* prefix, a 64-character name, '.', secret */
#define HDX_APIKEY_HASH_LEN (13 + 64)    /* "$hdxk$sha256$" and 64 hex digits */

/* A new key for name into key (cap > HDX_APIKEY_MAX) and its stored form into hash
 * (cap > HDX_APIKEY_HASH_LEN). HDX_OK or HDX_E_INVAL (a name pki_name_valid refuses). */
int hdx_apikey_new(const char *name, char *key, size_t key_cap, char *hash, size_t hash_cap);
/* 1 when s is a stored API key hash (exactly the form above). */
int hdx_apikey_hash_valid(const char *s);
/* The name a presented key claims, into name (cap 65): HDX_OK, or HDX_E_INVAL for anything
 * that is not prefix, valid name, '.', 43 base64url characters. */
int hdx_apikey_name(const char *key, size_t len, char *name, size_t cap);
/* 1 when key hashes to stored (constant time in the key's bytes), else 0. */
int hdx_apikey_verify(const char *key, size_t len, const char *stored);

#endif
