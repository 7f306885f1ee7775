/* pki: the small set of X.509 operations Vigil needs, shared by the agent
 * (interception CA, forged leaves), the `vigil ca` tool and the collector's
 * enrollment (agent client certificates). Built on OpenSSL 3 EVP/X509 only.
 *
 * Owns: key generation (EC P-256, Ed25519), PEM load/save, CA creation
 * (self-signed or issued by a parent, optionally name-constrained) and leaf
 * issuance. Must never: write a private key to a file that was ever readable
 * by anyone but the owner (keys are created O_EXCL with mode 0600 from the
 * first byte, never chmod-ed afterwards), log key material, or build an
 * extension from a string that contains caller data (SAN entries are built
 * as structures, so a name cannot inject "DNS:evil" through a comma).
 *
 * Every function that can fail returns 0 or -errno and, when err is not
 * NULL, writes a one-line reason ("path: reason") into err[errlen].
 * Objects returned through out parameters are new references owned by the
 * caller (EVP_PKEY_free, X509_free, sk_X509_pop_free(sk, X509_free)). Inputs are
 * borrowed. */
#ifndef VIGIL_PKI_H
#define VIGIL_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

enum pki_key_type { PKI_KEY_EC_P256 = 0, PKI_KEY_ED25519 = 1 };

/* A fresh private key. */
int pki_key_generate(enum pki_key_type type, EVP_PKEY **out, char *err, size_t errlen);

/* Writes key as unencrypted PKCS#8 PEM. The bytes go to a temporary file in
 * the same directory created with O_CREAT|O_EXCL and mode 0600, are fsynced,
 * then published at path: with replace == false by link(2), which fails with
 * -EEXIST if path exists (no window where an existing key is clobbered);
 * with replace == true by rename(2). */
int pki_key_save(const char *path, EVP_PKEY *key, bool replace, char *err, size_t errlen);
int pki_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen);

/* Writes certs[0..n) as PEM, mode 0644, atomically (temp file + rename);
 * replace == false refuses an existing path with -EEXIST. */
int pki_certs_save(const char *path, X509 *const *certs, size_t n, bool replace,
		   char *err, size_t errlen);
/* First certificate of a PEM file. */
int pki_cert_load(const char *path, X509 **out, char *err, size_t errlen);
/* The subject CN of x into out (NUL-terminated). -ENOENT if there is none,
 * -EINVAL if it holds a NUL or does not fit: an identity must be exactly
 * what the certificate says, never a truncation of it. */
int pki_cert_cn(X509 *x, char *out, size_t outlen);
/* Every certificate of a PEM file, in file order (at least one). */
int pki_certs_load(const char *path, STACK_OF(X509) **out, char *err, size_t errlen);

/* The DNS subtrees a name-constrained interception CA may certify: one
 * table (pki.c) used by `vigil ca init` and the tests. A leading dot means
 * "subdomains only"; a bare name means the name and its subdomains
 * (RFC 5280 4.2.1.10 as OpenSSL implements it). NULL-terminated. */
extern const char *const pki_llm_domains[];

struct pki_ca_opts {
	const char *common_name;   /* required */
	const char *organization;  /* optional */
	int days;                  /* validity from now (notBefore = now - 1h) */
	int pathlen;               /* basicConstraints pathlen; -1 = unlimited */
	/* If non-NULL: a critical nameConstraints extension permitting only
	 * these dNSName subtrees (NULL-terminated). */
	const char *const *permitted_dns;
};

/* Self-signed CA for key: CA:TRUE (critical), keyUsage keyCertSign+cRLSign
 * (critical), SKI (and AKI = SKI). */
int pki_ca_self_signed(EVP_PKEY *key, const struct pki_ca_opts *o, X509 **out,
		       char *err, size_t errlen);
/* Intermediate CA for the public half of key, signed by parent/parent_key.
 * notAfter is clamped to the parent's. Fails with -EINVAL if parent_key
 * does not match parent or parent is not a CA. */
int pki_ca_issue(X509 *parent, EVP_PKEY *parent_key, EVP_PKEY *key,
		 const struct pki_ca_opts *o, X509 **out, char *err, size_t errlen);

struct pki_leaf_opts {
	const char *common_name;   /* optional; subject CN */
	const char *const *dns;    /* optional NULL-terminated SAN dNSNames */
	size_t dns_count;          /* entries of dns to use (0 = until NULL) */
	bool server_auth;          /* EKU serverAuth */
	bool client_auth;          /* EKU clientAuth */
	/* Validity: both 0 = now - 1h .. now + days; otherwise these exact
	 * times (tests use this to make expired certificates). notAfter is
	 * always clamped to the issuer's notAfter. */
	time_t not_before, not_after;
	int days;
};

/* Leaf (end-entity) certificate for the public half of key: CA:FALSE
 * (critical), keyUsage digitalSignature (critical), the EKUs asked for,
 * SAN, SKI/AKI, random 128-bit serial, signed by issuer/issuer_key. Does not
 * check issuer_key against issuer (hot path: the caller did it once). */
int pki_leaf_issue(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		   const struct pki_leaf_opts *o, X509 **out, char *err, size_t errlen);

/* Same as pki_leaf_issue for the key, issuer and extensions of tmpl (a
 * leaf made by pki_leaf_issue with this issuer), with o's subject, SAN,
 * validity and a new serial; o's EKU flags are ignored (tmpl's are kept).
 * The hot path for certgen: ~15x cheaper than building from scratch. */
int pki_leaf_from_template(X509 *tmpl, X509 *issuer, EVP_PKEY *issuer_key,
			   const struct pki_leaf_opts *o, X509 **out, char *err, size_t errlen);

/* Fills err with the OpenSSL error queue's last reason (after prefix) and
 * clears the queue. Exposed for certgen/tls which share the convention. */
void pki_ssl_err(char *err, size_t errlen, const char *prefix);

#endif
