/* enroll: key and certificate issuance on top of common/pki.h. Server
 * certificates get IP SANs too (agents often dial the collector by address),
 * which pki.h does not build: the SAN extension is replaced and the
 * certificate re-signed by the same CA key. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "enroll.h"
#include "pki.h"

bool enroll_agent_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n < 1 || n > 64 || !strcmp(id, "collector") || id[0] == '.' || id[0] == '-')
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}

static int set_sans(X509 *x, const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
		    EVP_PKEY *ca_key)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int rc = -EIO;
	if (!gens)
		return -ENOMEM;
	for (size_t i = 0; i < ndns; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();
		if (!g || !s || !ASN1_STRING_set(s, dns[i], -1)) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		sk_GENERAL_NAME_push(gens, g);
	}
	for (size_t i = 0; i < nips; i++) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(ips[i]);
		GENERAL_NAME *g = ip ? GENERAL_NAME_new() : NULL;
		if (!g) {
			ASN1_OCTET_STRING_free(ip);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
		sk_GENERAL_NAME_push(gens, g);
	}
	int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
	if (idx >= 0)
		X509_EXTENSION_free(X509_delete_ext(x, idx));
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) != 1)
		goto out;
	if (!X509_sign(x, ca_key, EVP_PKEY_id(ca_key) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()))
		goto out;
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

static bool is_ip(const char *s)
{
	unsigned char b[16];
	return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

int enroll_pki_init(const char *dir, const char *const *names, size_t nnames, char *err, size_t errlen)
{
	EVP_PKEY *cak = NULL, *sk = NULL;
	X509 *ca = NULL, *srv = NULL;
	char p[4096], host[256] = "localhost";
	const char *dns[40], *ips[40];
	size_t nd = 0, ni = 0;
	int rc;
	if (mkdir(dir, 0755) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	if (access(p, F_OK) == 0) {
		snprintf(err, errlen, "%s exists: refusing to replace the enrollment CA", p);
		return -EEXIST;
	}
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "localhost");
	dns[nd++] = "localhost";
	if (strcmp(host, "localhost"))
		dns[nd++] = host;
	ips[ni++] = "127.0.0.1";
	ips[ni++] = "::1";
	for (size_t i = 0; i < nnames && nd < 38 && ni < 38; i++) {
		if (is_ip(names[i]))
			ips[ni++] = names[i];
		else
			dns[nd++] = names[i];
	}
	dns[nd] = NULL;
	struct pki_ca_opts co = { .common_name = "Vigil collector enrollment CA", .organization = "Vigil",
				  .days = 3650, .pathlen = 0 };
	struct pki_leaf_opts lo = { .common_name = dns[nd > 1 ? 1 : 0], .dns = dns, .dns_count = nd,
				    .server_auth = true, .days = 825 };
	if ((rc = pki_key_generate(PKI_KEY_EC_P256, &cak, err, errlen)) ||
	    (rc = pki_ca_self_signed(cak, &co, &ca, err, errlen)) ||
	    (rc = pki_key_generate(PKI_KEY_EC_P256, &sk, err, errlen)) ||
	    (rc = pki_leaf_issue(ca, cak, sk, &lo, &srv, err, errlen)))
		goto out;
	if ((rc = set_sans(srv, dns, nd, ips, ni, cak))) {
		snprintf(err, errlen, "server certificate: cannot set subjectAltName");
		goto out;
	}
	snprintf(p, sizeof(p), "%s/ca.key", dir);
	if ((rc = pki_key_save(p, cak, false, err, errlen)))
		goto out;
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	if ((rc = pki_certs_save(p, &ca, 1, true, err, errlen)))
		goto out;
	snprintf(p, sizeof(p), "%s/server.key", dir);
	if ((rc = pki_key_save(p, sk, true, err, errlen)))
		goto out;
	snprintf(p, sizeof(p), "%s/server.crt", dir);
	rc = pki_certs_save(p, &srv, 1, true, err, errlen);
out:
	X509_free(srv);
	X509_free(ca);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(cak);
	return rc;
}

static char *pem_of(int (*w)(BIO *, void *), void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	if (b && w(b, obj) == 1) {
		long n = BIO_get_mem_data(b, &data);
		if (n > 0 && (out = malloc((size_t)n + 1))) {
			memcpy(out, data, (size_t)n);
			out[n] = 0;
		}
	}
	BIO_free(b);
	return out;
}

static int w_key(BIO *b, void *k) { return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); }
static int w_cert(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }

int enroll_issue(const char *ca_cert, const char *ca_key, struct store *store, const char *agent_id, int days,
		 char **key_pem, char **cert_pem, char *err, size_t errlen)
{
	EVP_PKEY *cak = NULL, *k = NULL;
	X509 *ca = NULL, *x = NULL;
	struct store_agent a;
	int rc;
	*key_pem = *cert_pem = NULL;
	if (!enroll_agent_id_ok(agent_id)) {
		snprintf(err, errlen, "'%.80s' is not a valid agent id ([A-Za-z0-9._-], 1 to 64, not 'collector')",
			 agent_id ? agent_id : "");
		return -EINVAL;
	}
	if (store && store_agent_get(store, agent_id, &a) == 0 && a.revoked) {
		snprintf(err, errlen, "agent id '%s' is revoked", agent_id);
		return -EPERM;
	}
	struct pki_leaf_opts lo = { .common_name = agent_id, .client_auth = true, .days = days > 0 ? days : 30 };
	if ((rc = pki_cert_load(ca_cert, &ca, err, errlen)) || (rc = pki_key_load(ca_key, &cak, err, errlen)))
		goto out;
	if (X509_check_private_key(ca, cak) != 1) {
		snprintf(err, errlen, "%s does not match %s", ca_key, ca_cert);
		rc = -EINVAL;
		goto out;
	}
	if ((rc = pki_key_generate(PKI_KEY_EC_P256, &k, err, errlen)) ||
	    (rc = pki_leaf_issue(ca, cak, k, &lo, &x, err, errlen)))
		goto out;
	*key_pem = pem_of(w_key, k);
	*cert_pem = pem_of(w_cert, x);
	if (!*key_pem || !*cert_pem) {
		free(*key_pem);
		free(*cert_pem);
		*key_pem = *cert_pem = NULL;
		rc = -ENOMEM;
	}
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(k);
	EVP_PKEY_free(cak);
	return rc;
}

static int write_new(const char *path, const char *data, mode_t mode, char *err, size_t errlen)
{
	/* O_EXCL + the final mode at creation: a key is never readable by others,
	 * not even for an instant, and an existing file is never clobbered. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	size_t len = strlen(data);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (write(fd, data, len) != (ssize_t)len || fsync(fd)) {
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return rc ? rc : -EIO;
	}
	close(fd);
	return 0;
}

int enroll_write(const char *dir, const char *ca_cert, const char *key_pem, const char *cert_pem, char *err,
		 size_t errlen)
{
	char p[4096], *ca = NULL;
	size_t n = 0;
	int rc;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	FILE *f = fopen(ca_cert, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", ca_cert, strerror(errno));
		return -ENOENT;
	}
	ca = malloc(65536);
	if (ca)
		n = fread(ca, 1, 65535, f);
	fclose(f);
	if (!ca)
		return -ENOMEM;
	ca[n] = 0;
	snprintf(p, sizeof(p), "%s/agent.key", dir);
	if ((rc = write_new(p, key_pem, 0600, err, errlen)))
		goto out;
	snprintf(p, sizeof(p), "%s/agent.crt", dir);
	if ((rc = write_new(p, cert_pem, 0644, err, errlen)))
		goto out;
	snprintf(p, sizeof(p), "%s/ca.crt", dir);
	unlink(p);
	rc = write_new(p, ca, 0644, err, errlen);
out:
	free(ca);
	return rc;
}
