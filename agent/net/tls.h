/* tls: the agent's client side of an intercepted connection, i.e. TLS to
 * the real provider, verified as strictly as the application itself
 * would have (or more).
 *
 * Ownership: tls_upstream_ctx_new returns a new SSL_CTX (caller frees with
 * SSL_CTX_free); it owns a small per-SNI session cache freed with it.
 * tls_upstream_new returns a new SSL (caller frees with SSL_free); the fd
 * stays owned by the caller (BIO_NOCLOSE). Strings are borrowed. */
#ifndef VIGIL_TLS_H
#define VIGIL_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>

/* A client SSL_CTX verifying upstream servers against the system trust
 * store (upstream_ca NULL or "system") or against the system store plus
 * the anchors in the PEM file upstream_ca. TLS 1.2+, ALPN "http/1.1",
 * client session resumption on, SSL_VERIFY_PEER. The interception CA is
 * never loaded by this function; if `vigil ca trust` put it into the
 * system store, call tls_upstream_distrust() so the agent still refuses
 * certificates it could have forged itself. NULL + err on failure. */
SSL_CTX *tls_upstream_ctx_new(const char *upstream_ca, char *err, size_t errlen);

/* Refuses any upstream chain containing a certificate with the same
 * public key as a certificate in ca_cert_path (the interception CA chain):
 * a redirect loop or a local attacker holding our CA key must not look
 * like a trusted provider. Drops sessions cached so far (they were
 * verified without this check). Call before the context is shared between
 * threads. 0 or -errno (err filled). */
int tls_upstream_distrust(SSL_CTX *ctx, const char *ca_cert_path, char *err, size_t errlen);

/* An SSL in client mode on fd: SNI = sni, hostname verification against
 * sni (SSL_set1_host, no partial wildcards), a cached session for sni set
 * for resumption if one exists. NULL on error. */
SSL *tls_upstream_new(SSL_CTX *ctx, int fd, const char *sni);

/* After a successful handshake: keeps the session for resumption with
 * sni (bounded cache, thread-safe). TLS 1.3 tickets that arrive later are
 * stored automatically by a new-session callback. */
void tls_upstream_save_session(SSL *ssl, const char *sni);

/* Why verification failed, for the client's error body and the audit
 * event: "certificate has expired", "hostname mismatch", "unable to get
 * local issuer certificate", "certificate issued by the interception CA",
 * ...; "ok" if verification succeeded. Static string. */
const char *tls_verify_reason(SSL *ssl);

#endif
