/* certgen: forges the server certificates the agent presents to
 * intercepted clients, one per SNI, signed by the interception CA, and
 * keeps a ready SSL_CTX per host in a bounded LRU.
 *
 * Ownership: a struct certgen owns the CA certificate(s), the CA key, the
 * one shared leaf key and the cache. Returned SSL_CTX and X509 pointers
 * are new references owned by the caller. Strings are borrowed. All
 * functions but certgen_new/certgen_free are thread-safe. */
#ifndef VIGIL_CERTGEN_H
#define VIGIL_CERTGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct certgen;

/* Loads the interception CA (ca_cert_path: the issuing CA first, then
 * optionally its parents, all served as the chain; ca_key_path: the
 * issuing CA's key) and creates ONE shared P-256 leaf key. cache_size 0
 * means a default (1024). On failure returns -errno and err gets
 * "path: reason". */
int certgen_new(const char *ca_cert_path, const char *ca_key_path, size_t cache_size,
		struct certgen **out, char *err, size_t errlen);
void certgen_free(struct certgen *cg);

/* True if name[0..len) is a DNS hostname we will put in a certificate:
 * 1..253 chars, at least two labels of 1..63 [A-Za-z0-9-] chars that do
 * not start or end with '-', last label not all digits (no IP literals),
 * no wildcard, no NUL/comma/slash/space/underscore. A trailing dot is
 * REFUSED (RFC 6066 3: the SNI HostName carries no trailing dot, so a
 * client sending one is broken or probing). */
bool certgen_valid_sni(const char *name, size_t len);

/* A server SSL_CTX presenting a leaf forged for sni (SAN = sni only,
 * CN = sni, serverAuth, digitalSignature, CA:FALSE, AKI/SKI, random 128-bit
 * serial, now-1h .. min(now+7d, CA notAfter)), chain [leaf, CA(s)], TLS
 * 1.2..1.3, no compression, no renegotiation, AEAD ciphers only, ALPN
 * "h2" selected when offered and certgen_offer_h2 is on, else "http/1.1"
 * when offered (no ALPN otherwise), session tickets
 * on. Cached by lowercased SNI (LRU); an entry is re-forged one day before
 * its leaf expires. Returns a new reference, or NULL with errno EINVAL for
 * an invalid SNI (ENOMEM/EIO for other failures). */
SSL_CTX *certgen_ctx(struct certgen *cg, const char *sni, size_t len);

/* A freshly forged leaf for sni (new reference, not cached), or NULL with
 * errno set. For tests and diagnostics. */
X509 *certgen_forge(struct certgen *cg, const char *sni, size_t len);

/* Whether ALPN selects "h2" when a client offers it (default off). */
void certgen_offer_h2(struct certgen *cg, bool on);

/* Leaves signed so far (cache misses + certgen_forge calls). */
unsigned long certgen_signatures(const struct certgen *cg);

#endif
