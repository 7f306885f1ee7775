/* pki: key generation, PEM files, CA and leaf issuance (see pki.h).
 *
 * Owns nothing long-lived: every function builds or reads one object and
 * hands it to the caller. Must never: create a key file with a mode wider
 * than 0600 even for an instant, overwrite an existing key unless asked,
 * let caller-supplied names reach OpenSSL's extension config parser (the
 * "DNS:a,DNS:b" syntax would let a comma inject a second name), or prompt
 * on a terminal for a passphrase (an agent has no terminal). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "osutil.h"
#include "pki.h"

/* The LLM provider endpoints a name-constrained interception CA may
 * certify, in one place. Bare names cover the host and its subdomains;
 * a leading dot covers subdomains only. ".amazonaws.com" is broad (all of
 * AWS) because Bedrock runtime hosts are per region
 * (bedrock-runtime.<region>.amazonaws.com) and dNSName constraints cannot
 * express a wildcard in the middle of a name. */
const char *const pki_llm_domains[] = {
	"api.openai.com", ".openai.com",
	"api.anthropic.com", ".anthropic.com",
	"generativelanguage.googleapis.com", "aiplatform.googleapis.com",
	".openai.azure.com", ".services.ai.azure.com",
	".amazonaws.com",
	"api.mistral.ai", "api.cohere.com", "api.cohere.ai", "api.groq.com",
	"api.together.xyz", "api.together.ai", "api.deepseek.com", "api.x.ai",
	"openrouter.ai", "api.perplexity.ai", "api.fireworks.ai",
	"api-inference.huggingface.co", "router.huggingface.co",
	NULL,
};

void pki_ssl_err(char *err, size_t errlen, const char *prefix)
{
	unsigned long e, last = 0;
	char buf[256];

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (!err || !errlen)
		return;
	if (last) {
		const char *r = ERR_reason_error_string(last);
		if (!r) {
			ERR_error_string_n(last, buf, sizeof(buf));
			r = buf;
		}
		snprintf(err, errlen, "%s: %s", prefix, r);
	} else {
		snprintf(err, errlen, "%s", prefix);
	}
}


/* ---- keys ---- */

int pki_key_generate(enum pki_key_type type, EVP_PKEY **out, char *err, size_t errlen)
{
	EVP_PKEY *k = NULL;

	*out = NULL;
	if (type == PKI_KEY_EC_P256)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else if (type == PKI_KEY_ED25519)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else {
		osutil_errf(err, errlen, "key generation: unknown key type %d", (int)type);
		return -EINVAL;
	}
	if (!k) {
		pki_ssl_err(err, errlen, "key generation");
		return -EIO;
	}
	*out = k;
	return 0;
}

static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return -ENAMETOOLONG;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Publishes data at path through a temporary sibling created with
 * O_EXCL and the final mode, so the file never exists with wider
 * permissions or partial content. */
static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			     bool replace, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	unsigned char rnd[6];
	const char *p = data;
	int fd = -1, rc, tries;

	for (tries = 0; tries < 16; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			osutil_errf(err, errlen, "%s: no randomness", path);
			return -EIO;
		}
		if (snprintf(tmp, sizeof(tmp), "%s.tmp-%02x%02x%02x%02x%02x%02x", path, rnd[0],
			     rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]) >= (int)sizeof(tmp)) {
			osutil_errf(err, errlen, "%s: path too long", path);
			return -ENAMETOOLONG;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = -errno;
		osutil_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		return rc;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			osutil_errf(err, errlen, "%s: %s", tmp, strerror(errno));
			goto err;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		osutil_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto err;
	}
	close(fd);
	fd = -1;
	if (replace) {
		if (rename(tmp, path) < 0) {
			rc = -errno;
			osutil_errf(err, errlen, "%s: %s", path, strerror(errno));
			goto err;
		}
	} else {
		/* link(2) fails if path exists: no check-then-create race. */
		if (link(tmp, path) < 0) {
			rc = -errno;
			osutil_errf(err, errlen, "%s: %s", path,
				errno == EEXIST ? "already exists" : strerror(errno));
			goto err;
		}
		unlink(tmp);
	}
	fsync_parent(path);
	return 0;
err:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

/* Drains a memory BIO into a file; the BIO's buffer is cleansed after use
 * because it may hold a private key. */
static int bio_to_file(BIO *mem, const char *path, mode_t mode, bool replace, char *err,
		       size_t errlen)
{
	BUF_MEM *bm = NULL;
	int rc;

	BIO_get_mem_ptr(mem, &bm);
	if (!bm) {
		osutil_errf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	rc = write_file_atomic(path, bm->data, bm->length, mode, replace, err, errlen);
	OPENSSL_cleanse(bm->data, bm->length);
	return rc;
}

int pki_key_save(const char *path, EVP_PKEY *key, bool replace, char *err, size_t errlen)
{
	BIO *mem = BIO_new(BIO_s_secmem());
	int rc;

	if (!mem)
		mem = BIO_new(BIO_s_mem());
	if (!mem) {
		osutil_errf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	if (!PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL)) {
		pki_ssl_err(err, errlen, path);
		BIO_free(mem);
		return -EIO;
	}
	rc = bio_to_file(mem, path, 0600, replace, err, errlen);
	BIO_free(mem);
	return rc;
}

/* Refuses encrypted keys instead of prompting on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

int pki_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	BIO *b;
	EVP_PKEY *k;

	*out = NULL;
	ERR_clear_error();
	b = BIO_new_file(path, "r");
	if (!b) {
		int e = errno ? errno : ENOENT;
		osutil_errf(err, errlen, "%s: %s", path, strerror(e));
		ERR_clear_error();
		return -e;
	}
	k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (!k) {
		pki_ssl_err(err, errlen, path);
		return -EINVAL;
	}
	*out = k;
	return 0;
}

int pki_certs_save(const char *path, X509 *const *certs, size_t n, bool replace, char *err,
		   size_t errlen)
{
	BIO *mem = BIO_new(BIO_s_mem());
	int rc;

	if (!mem) {
		osutil_errf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!PEM_write_bio_X509(mem, certs[i])) {
			pki_ssl_err(err, errlen, path);
			BIO_free(mem);
			return -EIO;
		}
	}
	rc = bio_to_file(mem, path, 0644, replace, err, errlen);
	BIO_free(mem);
	return rc;
}

int pki_certs_load(const char *path, STACK_OF(X509) **out, char *err, size_t errlen)
{
	STACK_OF(X509) *sk = NULL;
	BIO *b;
	X509 *x;
	int rc;

	*out = NULL;
	ERR_clear_error();
	b = BIO_new_file(path, "r");
	if (!b) {
		int e = errno ? errno : ENOENT;
		osutil_errf(err, errlen, "%s: %s", path, strerror(e));
		ERR_clear_error();
		return -e;
	}
	sk = sk_X509_new_null();
	if (!sk) {
		rc = -ENOMEM;
		osutil_errf(err, errlen, "%s: out of memory", path);
		goto err;
	}
	while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			rc = -ENOMEM;
			osutil_errf(err, errlen, "%s: out of memory", path);
			goto err;
		}
	}
	/* End of file shows up as a PEM "no start line" error: expected
	 * once at least one certificate was read. */
	if (sk_X509_num(sk) == 0) {
		pki_ssl_err(err, errlen, path);
		rc = -EINVAL;
		goto err;
	}
	{
		unsigned long e = ERR_peek_last_error();
		if (e && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
			pki_ssl_err(err, errlen, path);
			rc = -EINVAL;
			goto err;
		}
	}
	ERR_clear_error();
	BIO_free(b);
	*out = sk;
	return 0;
err:
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
	return rc;
}

int pki_cert_cn(X509 *x, char *out, size_t outlen)
{
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)outlen);
	if (n <= 0) {
		if (outlen)
			out[0] = 0;
		return -ENOENT;
	}
	if ((size_t)n >= outlen || strlen(out) != (size_t)n) {
		out[0] = 0;
		return -EINVAL;
	}
	return 0;
}

int pki_cert_load(const char *path, X509 **out, char *err, size_t errlen)
{
	STACK_OF(X509) *sk;
	int rc;

	*out = NULL;
	rc = pki_certs_load(path, &sk, err, errlen);
	if (rc < 0)
		return rc;
	*out = sk_X509_shift(sk);
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

/* ---- certificates ---- */

/* A dNSName for a SAN or a constraint: only hostname characters (and a
 * leading dot for constraints), so nothing unexpected ends up signed. */
static bool dns_chars_ok(const char *s, bool allow_leading_dot)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.')
			continue;
		return false;
	}
	if (s[0] == '.' && !allow_leading_dot)
		return false;
	return true;
}

static GENERAL_NAME *dns_name(const char *s)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

	if (!gn || !ia5 || !ASN1_STRING_set(ia5, s, (int)strlen(s))) {
		GENERAL_NAME_free(gn);
		ASN1_IA5STRING_free(ia5);
		return NULL;
	}
	GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
	return gn;
}

static int set_random_serial(X509 *x)
{
	unsigned char buf[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return 0;
	buf[0] &= 0x7f;  /* positive, at most 16 bytes in DER */
	buf[0] |= 0x40;  /* and never zero / never short */
	bn = BN_bin2bn(buf, sizeof(buf), NULL);
	if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		ok = 1;
	BN_free(bn);
	return ok;
}

static int add_ext_conf(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (!ext)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

static int set_name(X509_NAME *n, const char *cn, const char *org)
{
	if (org && !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org,
					       -1, -1, 0))
		return 0;
	if (cn && !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					      -1, -1, 0))
		return 0;
	return 1;
}

/* Ed25519 signs the message itself: no separate digest. */
static const EVP_MD *sign_md(EVP_PKEY *k)
{
	if (EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448"))
		return NULL;
	return EVP_sha256();
}

static int set_validity(X509 *x, X509 *issuer, time_t nb, time_t na)
{
	if (!ASN1_TIME_set(X509_getm_notBefore(x), nb) || !ASN1_TIME_set(X509_getm_notAfter(x), na))
		return 0;
	/* A child must not outlive its issuer: clients reject that chain
	 * once the issuer expires anyway, and some reject it at once. */
	if (issuer && X509_cmp_time(X509_get0_notAfter(issuer), &na) < 0)
		return X509_set1_notAfter(x, X509_get0_notAfter(issuer));
	return 1;
}

static int add_name_constraints(X509 *x, const char *const *permitted)
{
	NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
	int ok = 0;

	if (!nc)
		return 0;
	nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null();
	if (!nc->permittedSubtrees)
		goto out;
	for (size_t i = 0; permitted[i]; i++) {
		GENERAL_SUBTREE *st = GENERAL_SUBTREE_new();
		if (!st)
			goto out;
		GENERAL_NAME_free(st->base);
		st->base = dns_name(permitted[i]);
		if (!st->base || !sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st)) {
			GENERAL_SUBTREE_free(st);
			goto out;
		}
	}
	/* RFC 5280: conforming CAs MUST mark this extension critical. */
	ok = X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT) == 1;
out:
	NAME_CONSTRAINTS_free(nc);
	return ok;
}

/* Shared body of the two CA builders: issuer == NULL means self-signed. */
static int build_ca(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		    const struct pki_ca_opts *o, X509 **out, char *err, size_t errlen)
{
	X509 *x = NULL;
	X509V3_CTX v3;
	char bc[64];
	time_t now = time(NULL);
	int rc = -EIO;

	*out = NULL;
	if (!o || !o->common_name || !*o->common_name || o->days <= 0 || o->days > 36500) {
		osutil_errf(err, errlen, "CA: common name and 1..36500 days required");
		return -EINVAL;
	}
	if (o->permitted_dns) {
		for (size_t i = 0; o->permitted_dns[i]; i++) {
			if (!dns_chars_ok(o->permitted_dns[i], true)) {
				osutil_errf(err, errlen, "CA: invalid name constraint \"%s\"",
					o->permitted_dns[i]);
				return -EINVAL;
			}
		}
	}
	ERR_clear_error();
	x = X509_new();
	if (!x || !X509_set_version(x, X509_VERSION_3) || !set_random_serial(x))
		goto ssl_err;
	if (!set_name(X509_get_subject_name(x), o->common_name, o->organization))
		goto ssl_err;
	if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
					    : X509_get_subject_name(x)))
		goto ssl_err;
	/* An intermediate named like its parent looks self-issued: chain
	 * building and name-constraint processing would treat it as such. */
	if (issuer && X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(issuer)) == 0) {
		osutil_errf(err, errlen, "CA: subject name equals the parent's; choose another name");
		X509_free(x);
		return -EINVAL;
	}
	if (!set_validity(x, issuer, now - 3600, now + (time_t)o->days * 86400))
		goto ssl_err;
	if (!X509_set_pubkey(x, key))
		goto ssl_err;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (o->pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", o->pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:TRUE");
	if (!add_ext_conf(x, &v3, NID_basic_constraints, bc) ||
	    !add_ext_conf(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    !add_ext_conf(x, &v3, NID_subject_key_identifier, "hash") ||
	    !add_ext_conf(x, &v3, NID_authority_key_identifier, "keyid:always"))
		goto ssl_err;
	if (o->permitted_dns && !add_name_constraints(x, o->permitted_dns))
		goto ssl_err;
	if (X509_sign(x, issuer_key, sign_md(issuer_key)) <= 0)
		goto ssl_err;
	*out = x;
	return 0;
ssl_err:
	pki_ssl_err(err, errlen, "CA");
	X509_free(x);
	return rc;
}

int pki_ca_self_signed(EVP_PKEY *key, const struct pki_ca_opts *o, X509 **out, char *err,
		       size_t errlen)
{
	return build_ca(NULL, key, key, o, out, err, errlen);
}

int pki_ca_issue(X509 *parent, EVP_PKEY *parent_key, EVP_PKEY *key,
		 const struct pki_ca_opts *o, X509 **out, char *err, size_t errlen)
{
	*out = NULL;
	if (X509_check_private_key(parent, parent_key) != 1) {
		ERR_clear_error();
		osutil_errf(err, errlen, "parent key does not match the parent certificate");
		return -EINVAL;
	}
	if (X509_check_ca(parent) == 0) {
		osutil_errf(err, errlen, "parent certificate is not a CA");
		return -EINVAL;
	}
	/* pathlen:0 (what `vigil ca init` gives a root) forbids any CA
	 * below it: the chain would be rejected by every client. */
	if (X509_get_pathlen(parent) == 0) {
		osutil_errf(err, errlen, "parent CA has pathlen:0 and cannot issue an intermediate");
		return -EINVAL;
	}
	return build_ca(parent, parent_key, key, o, out, err, errlen);
}

/* Checks o and works out the SAN count and validity window. */
static int leaf_opts_check(const struct pki_leaf_opts *o, size_t *ndns, time_t *nb, time_t *na,
			   char *err, size_t errlen)
{
	time_t now = time(NULL);

	*ndns = 0;
	if (!o) {
		osutil_errf(err, errlen, "leaf: no options");
		return -EINVAL;
	}
	if (o->dns) {
		size_t n = o->dns_count;
		if (!n)
			while (o->dns[n])
				n++;
		for (size_t i = 0; i < n; i++) {
			if (!o->dns[i] || !dns_chars_ok(o->dns[i], false)) {
				osutil_errf(err, errlen, "leaf: invalid DNS name");
				return -EINVAL;
			}
		}
		*ndns = n;
	}
	if (o->not_before || o->not_after) {
		*nb = o->not_before;
		*na = o->not_after;
	} else {
		if (o->days <= 0 || o->days > 36500) {
			osutil_errf(err, errlen, "leaf: 1..36500 days required");
			return -EINVAL;
		}
		*nb = now - 3600;
		*na = now + (time_t)o->days * 86400;
	}
	return 0;
}

/* The per-certificate part shared by both leaf builders: serial, subject,
 * validity, SAN (replacing any the template had), signature. */
static int leaf_personalize(X509 *x, X509 *issuer, EVP_PKEY *issuer_key,
			    const struct pki_leaf_opts *o, size_t ndns, time_t nb, time_t na)
{
	GENERAL_NAMES *gens = NULL;
	X509_NAME *subj = X509_NAME_new();
	int pos, ok = 0;

	if (!subj || !set_random_serial(x) ||
	    (o->common_name && !set_name(subj, o->common_name, NULL)) ||
	    !X509_set_subject_name(x, subj) || !set_validity(x, issuer, nb, na))
		goto out;
	while ((pos = X509_get_ext_by_NID(x, NID_subject_alt_name, -1)) >= 0)
		X509_EXTENSION_free(X509_delete_ext(x, pos));
	if (ndns) {
		gens = GENERAL_NAMES_new();
		if (!gens)
			goto out;
		for (size_t i = 0; i < ndns; i++) {
			GENERAL_NAME *gn = dns_name(o->dns[i]);
			if (!gn || !sk_GENERAL_NAME_push(gens, gn)) {
				GENERAL_NAME_free(gn);
				goto out;
			}
		}
		if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
			goto out;
	}
	ok = X509_sign(x, issuer_key, sign_md(issuer_key)) > 0;
out:
	GENERAL_NAMES_free(gens);
	X509_NAME_free(subj);
	return ok;
}

int pki_leaf_issue(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *key,
		   const struct pki_leaf_opts *o, X509 **out, char *err, size_t errlen)
{
	X509 *x = NULL;
	X509V3_CTX v3;
	time_t nb, na;
	size_t ndns;
	int rc;

	*out = NULL;
	rc = leaf_opts_check(o, &ndns, &nb, &na, err, errlen);
	if (rc < 0)
		return rc;
	ERR_clear_error();
	x = X509_new();
	if (!x || !X509_set_version(x, X509_VERSION_3) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(issuer)) || !X509_set_pubkey(x, key))
		goto ssl_err;
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	if (!add_ext_conf(x, &v3, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext_conf(x, &v3, NID_key_usage, "critical,digitalSignature") ||
	    !add_ext_conf(x, &v3, NID_subject_key_identifier, "hash") ||
	    !add_ext_conf(x, &v3, NID_authority_key_identifier, "keyid:always"))
		goto ssl_err;
	if (o->server_auth || o->client_auth) {
		const char *eku = o->server_auth && o->client_auth ? "serverAuth,clientAuth"
				  : o->server_auth		  ? "serverAuth"
								  : "clientAuth";
		if (!add_ext_conf(x, &v3, NID_ext_key_usage, eku))
			goto ssl_err;
	}
	if (!leaf_personalize(x, issuer, issuer_key, o, ndns, nb, na))
		goto ssl_err;
	*out = x;
	return 0;
ssl_err:
	pki_ssl_err(err, errlen, "leaf");
	X509_free(x);
	return -EIO;
}

int pki_leaf_from_template(X509 *tmpl, X509 *issuer, EVP_PKEY *issuer_key,
			   const struct pki_leaf_opts *o, X509 **out, char *err, size_t errlen)
{
	X509 *x;
	time_t nb, na;
	size_t ndns;
	int rc;

	*out = NULL;
	rc = leaf_opts_check(o, &ndns, &nb, &na, err, errlen);
	if (rc < 0)
		return rc;
	ERR_clear_error();
	/* X509_dup decodes the public key once (~10 us); X509_set_pubkey
	 * would re-encode it through OpenSSL 3.0's encoder lookup (~0.8 ms
	 * measured here), which dominated the cost of a forged leaf. */
	x = X509_dup(tmpl);
	if (!x || !leaf_personalize(x, issuer, issuer_key, o, ndns, nb, na)) {
		pki_ssl_err(err, errlen, "leaf");
		X509_free(x);
		return -EIO;
	}
	*out = x;
	return 0;
}
