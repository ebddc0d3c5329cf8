/* tls: the server's OpenSSL context and the certificate revocation list.
 * TLS 1.3 by default; with tls.min_version=1.2 only ECDHE with AEAD ciphers. Every client
 * must present a certificate that chains to the data directory's CA and is not on its CRL.
 * Session resumption is off: a resumed session would skip the certificate check, and so
 * let a revoked device back in. The CRL file is watched (hdx_tls_crl_changed) and swapped in
 * without a restart; open connections are then checked with hdx_tls_is_revoked().
 * server.key is refused unless it is a regular file only its owner can access (mode 0600).
 * Thread: the network thread only. */
#ifndef HDX_TLS_H
#define HDX_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "core/conf.h"

struct hdx_tls;

int hdx_tls_new(const struct hdx_conf *conf, struct hdx_tls **out, char *why, size_t why_cap);
void hdx_tls_free(struct hdx_tls *t);
SSL_CTX *hdx_tls_ctx(struct hdx_tls *t);

/* Reloads the CRL if its file changed since the last call; returns 1 when it did. */
int hdx_tls_crl_changed(struct hdx_tls *t);
/* 1 when the certificate's serial is on the current CRL. */
int hdx_tls_is_revoked(struct hdx_tls *t, X509 *cert);

/* The peer's identity after a completed handshake: CN, OU (role) and serial (hex). */
int hdx_tls_peer_identity(SSL *ssl, char *cn, size_t cn_cap, char *role, size_t role_cap,
                          char *serial, size_t serial_cap);
/* A short reason for a failed handshake, for one log line. */
const char *hdx_tls_failure_reason(SSL *ssl, unsigned long err, char *buf, size_t cap);

#endif
