/* Unit tests for common/pki.c: key files, CA creation, name constraints,
 * leaf issuance. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/x509v3.h>
#include "check.h"
#include "pki.h"

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char buf[8][256];
	static int i;
	char *p = buf[i++ % 8];

	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/vigil-test-pki-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

/* Verifies leaf against root (trusted) with the given untrusted chain. */
static int verify_chain(X509 *root, X509 *inter, X509 *leaf, const char *host, int *err_out)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	int ok;

	X509_STORE_add_cert(store, root);
	if (inter)
		sk_X509_push(untrusted, inter);
	X509_STORE_CTX_init(ctx, store, leaf, untrusted);
	if (host)
		X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
	ok = X509_verify_cert(ctx);
	*err_out = X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	X509_STORE_free(store);
	return ok;
}

TEST(key_file_is_0600_and_not_overwritten)
{
	EVP_PKEY *k = NULL, *k2 = NULL, *back = NULL;
	const char *path = tmp_path("a.key");
	char err[256] = "";
	struct stat st;
	mode_t old = umask(0); /* mode must come from the code, not the umask */
	int rc;

	rc = pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err));
	CHECK(rc == 0, "P-256 keygen failed: %s", err);
	rc = pki_key_save(path, k, false, err, sizeof(err));
	umask(old);
	CHECK(rc == 0, "save failed: %s", err);
	CHECK(stat(path, &st) == 0, "key file missing");
	CHECK((st.st_mode & 07777) == 0600, "key mode is %o, want 0600", st.st_mode & 07777);

	CHECK(pki_key_generate(PKI_KEY_ED25519, &k2, err, sizeof(err)) == 0, "ed25519: %s", err);
	rc = pki_key_save(path, k2, false, err, sizeof(err));
	CHECK(rc == -EEXIST, "saving over an existing key without replace returned %d (%s)", rc, err);
	CHECK(pki_key_load(path, &back, err, sizeof(err)) == 0, "load: %s", err);
	CHECK(EVP_PKEY_eq(back, k) == 1, "existing key was clobbered");
	EVP_PKEY_free(back);
	back = NULL;

	rc = pki_key_save(path, k2, true, err, sizeof(err));
	CHECK(rc == 0, "replace failed: %s", err);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "replaced key mode %o",
	      st.st_mode & 07777);
	CHECK(pki_key_load(path, &back, err, sizeof(err)) == 0, "load: %s", err);
	CHECK(EVP_PKEY_eq(back, k2) == 1, "replace did not write the new key");
	/* no temp files left behind */
	{
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp-", tmpdir);
		CHECK(system(cmd) != 0, "temporary file left in %s", tmpdir);
	}
	EVP_PKEY_free(back);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
}

TEST(load_errors_name_the_path)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	char err[256] = "";
	const char *bad = tmp_path("garbage.pem");
	FILE *f;

	CHECK(pki_key_load("/nonexistent/x.key", &k, err, sizeof(err)) == -ENOENT,
	      "missing key file not -ENOENT");
	CHECK(strstr(err, "/nonexistent/x.key") != NULL, "error lacks path: %s", err);
	f = fopen(bad, "w");
	CHECK(f != NULL, "cannot create %s", bad);
	fputs("not a pem\n", f);
	fclose(f);
	CHECK(pki_cert_load(bad, &x, err, sizeof(err)) == -EINVAL, "garbage cert accepted");
	CHECK(strncmp(err, bad, strlen(bad)) == 0, "error does not start with path: %s", err);
	CHECK(pki_key_load(bad, &k, err, sizeof(err)) == -EINVAL, "garbage key accepted");
}

TEST(self_signed_ca_extensions)
{
	EVP_PKEY *k = NULL;
	X509 *ca = NULL;
	char err[256] = "";
	struct pki_ca_opts o = { .common_name = "Test Root", .days = 30, .pathlen = 0 };
	BASIC_CONSTRAINTS *bc;
	int crit;

	CHECK(pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(k, &o, &ca, err, sizeof(err)) == 0, "CA: %s", err);
	bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
	CHECK(bc && bc->ca && crit == 1, "basicConstraints not critical CA:TRUE");
	CHECK(bc->pathlen && ASN1_INTEGER_get(bc->pathlen) == 0, "pathlen is not 0");
	BASIC_CONSTRAINTS_free(bc);
	CHECK(X509_get_key_usage(ca) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN),
	      "keyUsage %x, want keyCertSign|cRLSign", X509_get_key_usage(ca));
	CHECK(X509_check_issued(ca, ca) == X509_V_OK, "not self-issued");
	CHECK(X509_verify(ca, k) == 1, "self-signature does not verify");
	CHECK(X509_get_ext_by_NID(ca, NID_name_constraints, -1) < 0,
	      "unconstrained root has nameConstraints");
	X509_free(ca);
	EVP_PKEY_free(k);
}

TEST(name_constrained_intermediate)
{
	EVP_PKEY *rk = NULL, *ik = NULL, *lk = NULL;
	X509 *root = NULL, *inter = NULL, *good = NULL, *evil = NULL, *azure = NULL;
	char err[256] = "";
	struct pki_ca_opts ro = { .common_name = "Corp Root", .days = 365, .pathlen = 1 };
	struct pki_ca_opts io = { .common_name = "Vigil Sub", .days = 30, .pathlen = 0,
				  .permitted_dns = pki_llm_domains };
	const char *good_names[] = { "api.openai.com", NULL };
	const char *evil_names[] = { "evil.com", NULL };
	const char *azure_names[] = { "myco.openai.azure.com", NULL };
	struct pki_leaf_opts lo = { .common_name = "x", .server_auth = true, .days = 1 };
	int e, crit;
	NAME_CONSTRAINTS *nc;

	CHECK(pki_key_generate(PKI_KEY_EC_P256, &rk, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_key_generate(PKI_KEY_EC_P256, &ik, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_key_generate(PKI_KEY_EC_P256, &lk, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(rk, &ro, &root, err, sizeof(err)) == 0, "root: %s", err);
	CHECK(pki_ca_issue(root, rk, ik, &io, &inter, err, sizeof(err)) == 0, "inter: %s", err);
	nc = X509_get_ext_d2i(inter, NID_name_constraints, &crit, NULL);
	CHECK(nc && crit == 1, "intermediate lacks a critical nameConstraints");
	NAME_CONSTRAINTS_free(nc);
	CHECK(X509_cmp_time(X509_get0_notAfter(inter), NULL) > 0, "intermediate already expired");

	lo.dns = good_names;
	CHECK(pki_leaf_issue(inter, ik, lk, &lo, &good, err, sizeof(err)) == 0, "leaf: %s", err);
	lo.dns = evil_names;
	CHECK(pki_leaf_issue(inter, ik, lk, &lo, &evil, err, sizeof(err)) == 0, "leaf: %s", err);
	lo.dns = azure_names;
	CHECK(pki_leaf_issue(inter, ik, lk, &lo, &azure, err, sizeof(err)) == 0, "leaf: %s", err);

	CHECK(verify_chain(root, inter, good, "api.openai.com", &e) == 1,
	      "api.openai.com leaf rejected: %s", X509_verify_cert_error_string(e));
	CHECK(verify_chain(root, inter, azure, "myco.openai.azure.com", &e) == 1,
	      "azure leaf rejected: %s", X509_verify_cert_error_string(e));
	CHECK(verify_chain(root, inter, evil, NULL, &e) != 1,
	      "evil.com leaf ACCEPTED under a name-constrained intermediate");
	CHECK(e == X509_V_ERR_PERMITTED_VIOLATION, "evil.com refused for the wrong reason: %s",
	      X509_verify_cert_error_string(e));

	/* a parent key that does not match the parent certificate is refused */
	{
		X509 *bad = NULL;
		CHECK(pki_ca_issue(root, ik, lk, &io, &bad, err, sizeof(err)) == -EINVAL,
		      "mismatched parent key accepted");
		CHECK(bad == NULL, "output set on failure");
	}
	/* a parent with pathlen:0 cannot have an intermediate below it */
	{
		X509 *p0 = NULL, *bad = NULL;
		struct pki_ca_opts o0 = { .common_name = "Leaf-only Root", .days = 3, .pathlen = 0 };
		CHECK(pki_ca_self_signed(rk, &o0, &p0, err, sizeof(err)) == 0, "%s", err);
		CHECK(pki_ca_issue(p0, rk, lk, &io, &bad, err, sizeof(err)) == -EINVAL,
		      "intermediate under a pathlen:0 parent accepted");
		X509_free(p0);
	}
	/* an intermediate named like its parent is refused */
	{
		X509 *bad = NULL;
		struct pki_ca_opts same = io;
		same.common_name = "Corp Root";
		CHECK(pki_ca_issue(root, rk, lk, &same, &bad, err, sizeof(err)) == -EINVAL,
		      "intermediate with the parent's subject accepted");
	}
	X509_free(good); X509_free(evil); X509_free(azure);
	X509_free(inter); X509_free(root);
	EVP_PKEY_free(rk); EVP_PKEY_free(ik); EVP_PKEY_free(lk);
}

TEST(intermediate_never_outlives_parent)
{
	EVP_PKEY *rk = NULL, *ik = NULL;
	X509 *root = NULL, *inter = NULL;
	char err[256] = "";
	struct pki_ca_opts ro = { .common_name = "Short Root", .days = 10, .pathlen = 1 };
	struct pki_ca_opts io = { .common_name = "Long Sub", .days = 1000, .pathlen = 0 };

	CHECK(pki_key_generate(PKI_KEY_EC_P256, &rk, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_key_generate(PKI_KEY_EC_P256, &ik, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(rk, &ro, &root, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_issue(root, rk, ik, &io, &inter, err, sizeof(err)) == 0, "%s", err);
	CHECK(ASN1_TIME_compare(X509_get0_notAfter(inter), X509_get0_notAfter(root)) == 0,
	      "intermediate notAfter not clamped to the parent's");
	X509_free(inter); X509_free(root);
	EVP_PKEY_free(rk); EVP_PKEY_free(ik);
}

TEST(leaf_rejects_injected_names)
{
	EVP_PKEY *k = NULL;
	X509 *ca = NULL, *leaf = NULL;
	char err[256] = "";
	struct pki_ca_opts o = { .common_name = "R", .days = 3, .pathlen = 0 };
	const char *bad[] = { "a.com,DNS:evil.com", NULL };
	const char *bad2[] = { "*.evil.com", NULL };
	struct pki_leaf_opts lo = { .dns = bad, .server_auth = true, .days = 1 };

	CHECK(pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(k, &o, &ca, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_leaf_issue(ca, k, k, &lo, &leaf, err, sizeof(err)) == -EINVAL,
	      "comma-injected SAN accepted");
	lo.dns = bad2;
	CHECK(pki_leaf_issue(ca, k, k, &lo, &leaf, err, sizeof(err)) == -EINVAL,
	      "wildcard SAN accepted");
	CHECK(leaf == NULL, "output set on failure");
	X509_free(ca);
	EVP_PKEY_free(k);
}

TEST(ed25519_ca_and_leaf)
{
	EVP_PKEY *k = NULL, *lk = NULL;
	X509 *ca = NULL, *leaf = NULL;
	char err[256] = "";
	struct pki_ca_opts o = { .common_name = "Ed Root", .days = 3, .pathlen = 0 };
	const char *names[] = { "agent-1.vigil.internal", NULL };
	struct pki_leaf_opts lo = { .common_name = "agent-1", .dns = names, .client_auth = true,
				    .days = 1 };
	int e;

	CHECK(pki_key_generate(PKI_KEY_ED25519, &k, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_key_generate(PKI_KEY_ED25519, &lk, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(k, &o, &ca, err, sizeof(err)) == 0, "ed25519 CA: %s", err);
	CHECK(pki_leaf_issue(ca, k, lk, &lo, &leaf, err, sizeof(err)) == 0, "leaf: %s", err);
	CHECK(verify_chain(ca, NULL, leaf, NULL, &e) == 1, "ed25519 chain: %s",
	      X509_verify_cert_error_string(e));
	CHECK(X509_get_extended_key_usage(leaf) == XKU_SSL_CLIENT, "EKU is not clientAuth only");
	X509_free(leaf); X509_free(ca);
	EVP_PKEY_free(k); EVP_PKEY_free(lk);
}

TEST(certs_roundtrip_chain_file)
{
	EVP_PKEY *k = NULL;
	X509 *a = NULL, *b = NULL;
	STACK_OF(X509) *sk = NULL;
	char err[256] = "";
	struct pki_ca_opts o1 = { .common_name = "A", .days = 3, .pathlen = 0 };
	struct pki_ca_opts o2 = { .common_name = "B", .days = 3, .pathlen = 0 };
	const char *path = tmp_path("chain.crt");
	X509 *both[2];
	struct stat st;

	CHECK(pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(k, &o1, &a, err, sizeof(err)) == 0, "%s", err);
	CHECK(pki_ca_self_signed(k, &o2, &b, err, sizeof(err)) == 0, "%s", err);
	both[0] = a;
	both[1] = b;
	CHECK(pki_certs_save(path, both, 2, false, err, sizeof(err)) == 0, "save: %s", err);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) != 0 && !(st.st_mode & 0022),
	      "cert file mode %o", st.st_mode & 0777);
	CHECK(pki_certs_load(path, &sk, err, sizeof(err)) == 0, "load: %s", err);
	CHECK(sk_X509_num(sk) == 2, "read %d certs, want 2", sk_X509_num(sk));
	CHECK(X509_cmp(sk_X509_value(sk, 0), a) == 0 && X509_cmp(sk_X509_value(sk, 1), b) == 0,
	      "chain order not preserved");
	sk_X509_pop_free(sk, X509_free);
	X509_free(a); X509_free(b);
	EVP_PKEY_free(k);
}

__attribute__((destructor)) static void teardown(void)
{
	char cmd[128];

	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}
