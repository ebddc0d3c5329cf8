/* pki: the data directory's private certificate authority (OpenSSL 3 only; no hand-written
 * crypto). ECDSA P-256 keys, SHA-256 signatures, random 128-bit serials.
 * Files (all under the data directory given as `dir`):
 *   ca.pem / ca.key           CA certificate (10 years) and key (0600)
 *   ca.crl.pem                CRL signed by the CA, reissued on every revocation (next update
 *                             in 30 days; hdxd reloads it when it changes)
 *   server.pem / server.key   server certificate: SAN DNS:localhost, IP:127.0.0.1, IP:::1,
 *                             serverAuth; key 0600
 *   devices/NAME.pem / .key   client certificates: subject CN=NAME, OU=ROLE, clientAuth; key 0600
 * Private keys are written with O_CREAT|O_EXCL and mode 0600, never world-readable even
 * briefly. Functions return HDX_OK or a negative hdx_err and set a one-line reason in
 * why[0..why_cap) (no secrets in it). Thread: any (no global state). */
#ifndef HDX_PKI_H
#define HDX_PKI_H

#include <stddef.h>

/* Device names: 1-64 characters of [A-Za-z0-9._-], not starting with '.' or '-'.
 * Returns 1 if valid, 0 if not (NULL is not). Roles passed to pki_issue_client follow the
 * same rule. */
int pki_name_valid(const char *name);

/* Creates ca.pem, ca.key and an empty ca.crl.pem. Fails with HDX_E_EXISTS if any exists. */
int pki_create_ca(const char *dir, char *why, size_t why_cap);

/* Creates server.pem/server.key signed by the CA (2 years). */
int pki_create_server(const char *dir, char *why, size_t why_cap);

/* Issues devices/NAME.pem and devices/NAME.key (creating devices/ 0700 if needed) with
 * CN=name, OU=role, valid `days` days. Writes the serial as lower-case hex (no leading
 * zeros, as OpenSSL prints it) into serial_hex (cap >= 41). HDX_E_EXISTS if the files
 * exist. days may be negative in tests to make an already-expired certificate. */
int pki_issue_client(const char *dir, const char *name, const char *role, int days,
                     char *serial_hex, size_t serial_cap, char *why, size_t why_cap);

/* Adds serial_hex to the CRL and reissues ca.crl.pem atomically (write temp, fsync, rename),
 * keeping every serial revoked before. Revoking an already revoked serial is HDX_OK (the CRL
 * is still reissued: new crlNumber and nextUpdate, no duplicate entry). serial_hex is 1-40
 * hex digits in either case, leading zeros allowed (so `openssl x509 -serial` output works).
 * HDX_E_INTEGRITY if the current CRL is not signed by ca.pem; HDX_E_NOTFOUND if it is
 * missing (never silently restarted empty). Concurrent callers are serialized by a flock on
 * ca.key. */
int pki_revoke(const char *dir, const char *serial_hex, char *why, size_t why_cap);

/* Reads the serial (hex) and CN/OU of a certificate file. */
int pki_cert_info(const char *path, char *serial_hex, size_t serial_cap, char *cn, size_t cn_cap,
                  char *ou, size_t ou_cap);

#endif
