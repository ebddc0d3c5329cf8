/* smart_token: the access tokens of SMART Backend Services clients (docs/FHIR.md "SMART
 * Backend Services"), issued by POST /auth/token once a client assertion checks out
 * (auth/jwt.h). A token is "hdxs_" and 43 base64url characters (256 random bits); hdx keeps
 * only its SHA-256, with the client it was issued to, the scopes it carries (the request
 * narrowed to the registration, auth/smart_scope.h) and its expiry. Tokens live in memory
 * only: a restart ends them all (clients ask again; an assertion costs a signature), and a
 * revoked or re-scoped client's tokens end at once (hdx_smart_tokens_revoke).
 * Thread: the network thread. */
#ifndef HDX_SMART_TOKEN_H
#define HDX_SMART_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "auth/smart_scope.h"

#define HDX_SMART_TOKEN_PREFIX "hdxs_"
#define HDX_SMART_TOKEN_LEN (5 + 43)
#define HDX_SMART_TOKEN_TTL_S 300

struct hdx_smart_token {
    char client[65];
    struct hdx_smart_scopes scopes;
    int64_t expires_s, issued_s;
};

struct hdx_smart_tokens;

int hdx_smart_tokens_new(size_t max, struct hdx_smart_tokens **out);
void hdx_smart_tokens_free(struct hdx_smart_tokens *t);
/* A new token for client into out (HDX_SMART_TOKEN_LEN + 1 bytes). HDX_OK, HDX_E_TOOBIG (the
 * table is full of live tokens), HDX_E_NOMEM. */
int hdx_smart_tokens_issue(struct hdx_smart_tokens *t, const char *client,
                           const struct hdx_smart_scopes *scopes, int64_t now_s, int64_t ttl_s,
                           char *out);
/* The live token named by text (len bytes), or NULL. Valid until the next call that changes
 * the table. */
const struct hdx_smart_token *hdx_smart_tokens_find(struct hdx_smart_tokens *t, const char *text,
                                                    size_t len, int64_t now_s);
/* Ends every token of client; returns how many. */
size_t hdx_smart_tokens_revoke(struct hdx_smart_tokens *t, const char *client);
/* Drops expired tokens. */
void hdx_smart_tokens_sweep(struct hdx_smart_tokens *t, int64_t now_s);
size_t hdx_smart_tokens_live(const struct hdx_smart_tokens *t);

#endif
