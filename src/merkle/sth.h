/* sth: signed tree heads (RFC 9162 section 4.10 in spirit; the byte format is hdx's own and
 * is specified in docs/LOG-FORMAT.md so anyone can check it with any Ed25519 library).
 * The log key is the Ed25519 key `hdx init` writes to DIR/log.key (public: log.pub.pem).
 *   signed bytes = "HDX-STH-v1" (10 bytes) || u64 tree_size || u64 timestamp_ms || root(32)
 * all integers big-endian; signature = Ed25519(log key, signed bytes), 64 bytes.
 * Thread: any; the EVP_PKEY is read-only after loading. */
#ifndef HDX_STH_H
#define HDX_STH_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define HDX_STH_SIG_LEN 64
#define HDX_STH_SIGNED_LEN (10 + 8 + 8 + 32)

struct hdx_sth {
    uint64_t tree_size;
    uint64_t timestamp_ms;
    uint8_t root[32];
    uint8_t signature[HDX_STH_SIG_LEN];
};

/* Loads a PEM Ed25519 private key (under the rule of every secret file, hdx_secret_read: a
 * regular file, not a link, mode 0600 or stricter; why, NULL for none, receives one line on
 * failure) or public key. The caller frees with EVP_PKEY_free. */
int hdx_logkey_load_private(const char *path, EVP_PKEY **out, char *why, size_t why_cap);
int hdx_logkey_load_public(const char *path, EVP_PKEY **out);

void hdx_sth_signed_bytes(const struct hdx_sth *sth, uint8_t out[HDX_STH_SIGNED_LEN]);
int hdx_sth_sign(struct hdx_sth *sth, EVP_PKEY *key);
/* HDX_OK when the signature is the log key's over the head, else HDX_E_INTEGRITY. */
int hdx_sth_verify(const struct hdx_sth *sth, EVP_PKEY *pub);
/* The newest head is also kept outside the store, in DIR/log.sth (signed bytes followed by
 * the signature, 122 bytes, replaced atomically), so that a store restored from an older
 * copy shows against it. */
#define HDX_STH_FILE_LEN (HDX_STH_SIGNED_LEN + HDX_STH_SIG_LEN)
int hdx_sth_file_write(const char *path, const struct hdx_sth *sth);
/* HDX_E_NOTFOUND when absent, HDX_E_INTEGRITY when malformed. */
int hdx_sth_file_read(const char *path, struct hdx_sth *sth);

/* One line of JSON: {"tree_size":N,"timestamp_ms":T,"root_hash":"hex","signature":"hex"}. */
int hdx_sth_json(const struct hdx_sth *sth, char *out, size_t cap);

#endif
