/* Unit tests for agent/net/certgen.c (forged leaves, per-SNI server contexts,
 * the LRU) and agent/net/tls.c (upstream verification), with in-memory TLS
 * handshakes over socketpairs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "check.h"
#include "net/certgen.h"
#include "pki.h"
#include "net/tls.h"

static char dir[64];
static char ca_crt[128], ca_key[128];       /* the interception CA */
static char up_crt[128], up_key[128];       /* an unrelated "public" CA for upstream tests */
static X509 *ca_x, *up_x;
static EVP_PKEY *up_k;
static struct certgen *cg;

static void write_ca(const char *name, char *crt, char *key, X509 **xo, EVP_PKEY **ko)
{
	struct pki_ca_opts o = { .common_name = name, .days = 30, .pathlen = 0 };
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	char err[256];

	if (pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) < 0 ||
	    pki_ca_self_signed(k, &o, &x, err, sizeof(err)) < 0 ||
	    pki_key_save(key, k, false, err, sizeof(err)) < 0 ||
	    pki_certs_save(crt, &x, 1, false, err, sizeof(err)) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		abort();
	}
	*xo = x;
	if (ko)
		*ko = k;
	else
		EVP_PKEY_free(k);
}

__attribute__((constructor(101))) static void setup(void)
{
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/vigil-test-certgen-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(ca_crt, sizeof(ca_crt), "%s/intercept.crt", dir);
	snprintf(ca_key, sizeof(ca_key), "%s/intercept.key", dir);
	snprintf(up_crt, sizeof(up_crt), "%s/upstream-ca.crt", dir);
	snprintf(up_key, sizeof(up_key), "%s/upstream-ca.key", dir);
	write_ca("Test Interception CA", ca_crt, ca_key, &ca_x, NULL);
	write_ca("Test Public CA", up_crt, up_key, &up_x, &up_k);
	if (certgen_new(ca_crt, ca_key, 64, &cg, err, sizeof(err)) < 0) {
		fprintf(stderr, "setup: certgen_new: %s\n", err);
		abort();
	}
}

/* Drives both ends of an in-memory connection until both finish or one
 * fails: 0 ok, -1 client failed, -2 server failed. */
static int handshake(SSL *c, SSL *s)
{
	bool cdone = false, sdone = false;

	for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(c);
			if (r == 1)
				cdone = true;
			else {
				int e = SSL_get_error(c, r);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					return -1;
			}
		}
		if (!sdone) {
			int r = SSL_do_handshake(s);
			if (r == 1)
				sdone = true;
			else {
				int e = SSL_get_error(s, r);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					return -2;
			}
		}
	}
	ERR_clear_error();
	return cdone && sdone ? 0 : -3;
}

static int sp[2];

static void pair_open(void)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
		abort();
}

static void pair_close(void)
{
	close(sp[0]);
	close(sp[1]);
}

static SSL *server_on(SSL_CTX *sctx, int fd)
{
	SSL *s = SSL_new(sctx);
	SSL_set_fd(s, fd);
	SSL_set_accept_state(s);
	return s;
}

/* A client trusting only file cafile, checking host, offering alpn. */
static SSL_CTX *test_client_ctx(const char *cafile, int max_version)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	SSL_CTX_load_verify_file(c, cafile);
	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	if (max_version)
		SSL_CTX_set_max_proto_version(c, max_version);
	/* Let TLS 1.0/1.1 be offered at all (security level 0). */
	SSL_CTX_set_security_level(c, 0);
	return c;
}

static SSL *client_on(SSL_CTX *c, int fd, const char *host, const unsigned char *alpn,
		      unsigned int alpnlen)
{
	SSL *s = SSL_new(c);
	SSL_set_fd(s, fd);
	SSL_set_tlsext_host_name(s, host);
	SSL_set1_host(s, host);
	if (alpn)
		SSL_set_alpn_protos(s, alpn, alpnlen);
	SSL_set_connect_state(s);
	return s;
}

/* ---------------- SNI validation ---------------- */

TEST(invalid_sni_refused)
{
	char label64[80], long254[300], long253[300];
	struct { const char *s; size_t len; } bad[] = {
		{ "", 0 }, { "a", 1 }, { "-a.com", 6 }, { "a-.com", 6 }, { "a..com", 6 },
		{ "1.2.3.4", 7 }, { "127.1", 5 }, { "*.x.com", 7 }, { "x.com/evil", 10 },
		{ "x.com,DNS:evil.com", 18 }, { "x.com\0evil", 10 }, { "exa mple.com", 12 },
		{ "api.openai.com.", 15 }, { ".api.openai.com", 15 }, { "a_b.com", 7 },
		{ "[::1]", 5 }, { "x.com:443", 9 }, { "caf\xc3\xa9.com", 9 }, { "com", 3 },
		{ "a.-b.com", 8 }, { "x.com\n", 6 },
	};
	memset(label64, 'a', 64);
	memcpy(label64 + 64, ".com", 5);
	/* 254 chars: 63*4 labels + dots would be 255; build 254 exactly */
	memset(long254, 'a', 254);
	for (int i = 50; i < 254; i += 50)
		long254[i] = '.';
	long254[254] = '\0';
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(!certgen_valid_sni(bad[i].s, bad[i].len), "accepted invalid SNI #%zu \"%.*s\"",
		      i, (int)bad[i].len, bad[i].s);
		errno = 0;
		CHECK(certgen_ctx(cg, bad[i].s, bad[i].len) == NULL && errno == EINVAL,
		      "certgen_ctx did not refuse SNI #%zu with EINVAL", i);
	}
	CHECK(!certgen_valid_sni(label64, strlen(label64)), "64-char label accepted");
	CHECK(!certgen_valid_sni(long254, 254), "254-char name accepted");
	CHECK(!certgen_valid_sni(NULL, 0), "NULL accepted");

	/* and the boundaries just inside are accepted */
	memcpy(long253, long254, 253);
	long253[253] = '\0';
	CHECK(certgen_valid_sni(long253, 253), "253-char name refused");
	{
		char l63[80];
		memset(l63, 'b', 63);
		memcpy(l63 + 63, ".com", 5);
		CHECK(certgen_valid_sni(l63, strlen(l63)), "63-char label refused");
	}
	const char *good[] = { "api.openai.com", "API.OpenAI.com", "a.b", "xn--bcher-kva.example",
			       "bedrock-runtime.us-east-1.amazonaws.com", "x1.co", "1.2.3.com" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(certgen_valid_sni(good[i], strlen(good[i])), "refused valid SNI \"%s\"",
		      good[i]);
}

/* ---------------- the forged leaf ---------------- */

TEST(forged_leaf_fields)
{
	X509 *leaf = certgen_forge(cg, "API.OpenAI.com", 14);
	GENERAL_NAMES *san;
	BASIC_CONSTRAINTS *bc;
	ASN1_OCTET_STRING *ski;
	AUTHORITY_KEYID *aki;
	char cn[256] = "";
	time_t now = time(NULL);
	int crit, day;
	int sec;
	BIGNUM *serial;

	CHECK(leaf != NULL, "certgen_forge failed");
	san = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	CHECK(san && sk_GENERAL_NAME_num(san) == 1, "SAN must hold exactly one name, has %d",
	      san ? sk_GENERAL_NAME_num(san) : -1);
	{
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, 0);
		CHECK(gn->type == GEN_DNS, "SAN entry is not a dNSName");
		CHECK(ASN1_STRING_length(gn->d.dNSName) == 14 &&
		      memcmp(ASN1_STRING_get0_data(gn->d.dNSName), "api.openai.com", 14) == 0,
		      "SAN is \"%.*s\", want the lowercased SNI", ASN1_STRING_length(gn->d.dNSName),
		      ASN1_STRING_get0_data(gn->d.dNSName));
	}
	GENERAL_NAMES_free(san);
	X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
	CHECK(strcmp(cn, "api.openai.com") == 0, "CN is \"%s\"", cn);
	CHECK(X509_get_extended_key_usage(leaf) == XKU_SSL_SERVER, "EKU is %x, want serverAuth only",
	      X509_get_extended_key_usage(leaf));
	CHECK(X509_get_key_usage(leaf) == KU_DIGITAL_SIGNATURE, "keyUsage %x",
	      X509_get_key_usage(leaf));
	bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
	CHECK(bc && !bc->ca, "basicConstraints is not CA:FALSE");
	BASIC_CONSTRAINTS_free(bc);
	CHECK(X509_check_ca(leaf) == 0, "leaf usable as a CA");
	ski = X509_get_ext_d2i(leaf, NID_subject_key_identifier, NULL, NULL);
	aki = X509_get_ext_d2i(leaf, NID_authority_key_identifier, NULL, NULL);
	CHECK(ski != NULL, "no SKI");
	CHECK(aki && aki->keyid && ASN1_OCTET_STRING_cmp(aki->keyid, X509_get0_subject_key_id(ca_x)) == 0,
	      "AKI does not name the CA's key");
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(aki);

	/* notBefore = now - 1h, notAfter = now + 7 days (minutes of slack) */
	CHECK(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notBefore(leaf)), "notBefore unreadable");
	CHECK(day == 0 && sec <= -3600 + 120 && sec >= -3600 - 120,
	      "notBefore is %d days %d s from now, want -1h", day, sec);
	CHECK(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(leaf)), "notAfter unreadable");
	CHECK((long)day * 86400 + sec >= 7 * 86400 - 120 && (long)day * 86400 + sec <= 7 * 86400 + 120,
	      "notAfter is %d days %d s from now, want 7 days", day, sec);
	(void)now;
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
	CHECK(serial && BN_num_bits(serial) > 64 && BN_num_bits(serial) <= 128 &&
	      !BN_is_negative(serial), "serial is %d bits, want a positive ~128-bit random",
	      serial ? BN_num_bits(serial) : 0);
	BN_free(serial);
	{
		X509 *again = certgen_forge(cg, "api.openai.com", 14);
		CHECK(again && ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf),
						X509_get0_serialNumber(again)) != 0,
		      "two forged leaves share a serial");
		CHECK(EVP_PKEY_eq(X509_get0_pubkey(leaf), X509_get0_pubkey(again)) == 1,
		      "leaves do not share the one leaf key");
		X509_free(again);
	}
	X509_free(leaf);
}

TEST(forged_leaf_verifies_against_ca)
{
	X509 *leaf = certgen_forge(cg, "api.anthropic.com", 17);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char leaf_path[128], cmd[512];
	FILE *f;
	int ok, rc;

	CHECK(leaf != NULL, "forge failed");
	X509_STORE_add_cert(store, ca_x);
	X509_STORE_CTX_init(ctx, store, leaf, NULL);
	X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), "api.anthropic.com", 0);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	ok = X509_verify_cert(ctx);
	CHECK(ok == 1, "X509_verify_cert: %s",
	      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);

	snprintf(leaf_path, sizeof(leaf_path), "%s/leaf.pem", dir);
	f = fopen(leaf_path, "w");
	CHECK(f != NULL, "cannot write %s", leaf_path);
	PEM_write_X509(f, leaf);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile %s -purpose sslserver -verify_hostname api.anthropic.com "
		 "%s >/dev/null 2>&1", ca_crt, leaf_path);
	rc = system(cmd);
	CHECK(rc == 0, "`%s` failed (status %d)", cmd, rc);
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile %s -verify_hostname evil.com %s >/dev/null 2>&1", ca_crt,
		 leaf_path);
	CHECK(system(cmd) != 0, "openssl verify accepted the leaf for another hostname");
	snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s %s >/dev/null 2>&1", up_crt, leaf_path);
	CHECK(system(cmd) != 0, "openssl verify accepted the leaf against an unrelated CA");
	X509_free(leaf);
}

TEST(leaf_never_outlives_ca)
{
	struct pki_ca_opts o = { .common_name = "Short CA", .days = 2, .pathlen = 0 };
	char crt[160], key[160], err[256];
	struct certgen *c2 = NULL;
	EVP_PKEY *k = NULL;
	X509 *ca = NULL, *leaf;

	snprintf(crt, sizeof(crt), "%s/short.crt", dir);
	snprintf(key, sizeof(key), "%s/short.key", dir);
	CHECK(pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) == 0 &&
	      pki_ca_self_signed(k, &o, &ca, err, sizeof(err)) == 0 &&
	      pki_key_save(key, k, false, err, sizeof(err)) == 0 &&
	      pki_certs_save(crt, &ca, 1, false, err, sizeof(err)) == 0, "setup: %s", err);
	CHECK(certgen_new(crt, key, 4, &c2, err, sizeof(err)) == 0, "certgen_new: %s", err);
	leaf = certgen_forge(c2, "api.openai.com", 14);
	CHECK(leaf != NULL, "forge failed");
	CHECK(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)) == 0,
	      "leaf notAfter is not clamped to the CA's (2 days)");
	X509_free(leaf);
	certgen_free(c2);
	X509_free(ca);
	EVP_PKEY_free(k);
}

/* The deployment shape: a name-constrained intermediate whose file holds
 * [intermediate, root]; the client trusts only the root. */
TEST(handshake_through_constrained_intermediate)
{
	struct pki_ca_opts ro = { .common_name = "Corp Root", .days = 30, .pathlen = 1 };
	struct pki_ca_opts io = { .common_name = "Vigil Sub", .days = 30, .pathlen = 0,
				  .permitted_dns = pki_llm_domains };
	char root_crt[160], sub_crt[160], sub_key[160], err[256];
	EVP_PKEY *rk = NULL, *ik = NULL;
	X509 *root = NULL, *inter = NULL, *both[2];
	struct certgen *c2 = NULL;
	SSL_CTX *sctx, *cctx;
	SSL *c, *s;
	int rc;

	snprintf(root_crt, sizeof(root_crt), "%s/corp-root.crt", dir);
	snprintf(sub_crt, sizeof(sub_crt), "%s/sub.crt", dir);
	snprintf(sub_key, sizeof(sub_key), "%s/sub.key", dir);
	CHECK(pki_key_generate(PKI_KEY_EC_P256, &rk, err, sizeof(err)) == 0 &&
	      pki_key_generate(PKI_KEY_EC_P256, &ik, err, sizeof(err)) == 0 &&
	      pki_ca_self_signed(rk, &ro, &root, err, sizeof(err)) == 0 &&
	      pki_ca_issue(root, rk, ik, &io, &inter, err, sizeof(err)) == 0, "setup: %s", err);
	both[0] = inter;
	both[1] = root;
	CHECK(pki_certs_save(root_crt, &root, 1, false, err, sizeof(err)) == 0 &&
	      pki_certs_save(sub_crt, both, 2, false, err, sizeof(err)) == 0 &&
	      pki_key_save(sub_key, ik, false, err, sizeof(err)) == 0, "files: %s", err);
	CHECK(certgen_new(sub_crt, sub_key, 4, &c2, err, sizeof(err)) == 0, "certgen_new: %s", err);

	cctx = test_client_ctx(root_crt, 0);
	sctx = certgen_ctx(c2, "api.anthropic.com", 17);
	pair_open();
	c = client_on(cctx, sp[0], "api.anthropic.com", NULL, 0);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc == 0, "handshake via intermediate failed: %s",
	      X509_verify_cert_error_string(SSL_get_verify_result(c)));
	CHECK(sk_X509_num(SSL_get_peer_cert_chain(c)) == 3, "chain has %d certs, want 3",
	      sk_X509_num(SSL_get_peer_cert_chain(c)));
	SSL_free(c); SSL_free(s);
	pair_close();
	SSL_CTX_free(sctx);

	/* a host outside the constraints is forged but no client accepts it */
	sctx = certgen_ctx(c2, "www.example.com", 15);
	CHECK(sctx != NULL, "certgen_ctx(www.example.com) failed");
	pair_open();
	c = client_on(cctx, sp[0], "www.example.com", NULL, 0);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc != 0, "client accepted a forged leaf outside the name constraints");
	CHECK(SSL_get_verify_result(c) == X509_V_ERR_PERMITTED_VIOLATION, "refused for: %s",
	      X509_verify_cert_error_string(SSL_get_verify_result(c)));
	SSL_free(c); SSL_free(s);
	pair_close();
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	certgen_free(c2);
	X509_free(root); X509_free(inter);
	EVP_PKEY_free(rk); EVP_PKEY_free(ik);
}

/* ---------------- the cache ---------------- */

TEST(cache_hit_costs_no_signature)
{
	struct certgen *c2 = NULL;
	char err[256];
	SSL_CTX *a, *b, *x;
	unsigned long n;

	CHECK(certgen_new(ca_crt, ca_key, 2, &c2, err, sizeof(err)) == 0, "certgen_new: %s", err);
	n = certgen_signatures(c2);
	CHECK(n == 0, "fresh certgen has %lu signatures", n);
	a = certgen_ctx(c2, "api.openai.com", 14);
	CHECK(a != NULL && certgen_signatures(c2) == 1, "first ctx: %lu signatures",
	      certgen_signatures(c2));
	x = certgen_ctx(c2, "API.OPENAI.COM", 14);
	CHECK(x == a, "case-insensitive repeat is not the cached context");
	CHECK(certgen_signatures(c2) == 1, "cache hit cost a signature (%lu)", certgen_signatures(c2));
	SSL_CTX_free(x);
	b = certgen_ctx(c2, "api.anthropic.com", 17);
	CHECK(b && b != a && certgen_signatures(c2) == 2, "second host");
	SSL_CTX_free(b);
	/* LRU of 2: touch openai, add a third host: anthropic is evicted */
	x = certgen_ctx(c2, "api.openai.com", 14);
	SSL_CTX_free(x);
	x = certgen_ctx(c2, "api.mistral.ai", 14);
	CHECK(x && certgen_signatures(c2) == 3, "third host");
	SSL_CTX_free(x);
	x = certgen_ctx(c2, "api.openai.com", 14);
	CHECK(x == a && certgen_signatures(c2) == 3, "most recently used host was evicted");
	SSL_CTX_free(x);
	x = certgen_ctx(c2, "api.anthropic.com", 17);
	CHECK(x && certgen_signatures(c2) == 4, "least recently used host was not evicted (%lu)",
	      certgen_signatures(c2));
	SSL_CTX_free(x);
	/* certgen_forge never caches */
	x = (SSL_CTX *)certgen_forge(c2, "api.openai.com", 14);
	CHECK(x && certgen_signatures(c2) == 5, "forge did not count");
	X509_free((X509 *)x);
	certgen_free(c2);
	/* the caller's reference outlives the certgen */
	CHECK(SSL_CTX_get0_certificate(a) != NULL, "context lost its certificate");
	SSL_CTX_free(a);
}

struct thr_arg { struct certgen *c; int id; int bad; };

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	static const char *hosts[] = { "a.openai.com", "b.openai.com", "c.openai.com",
				       "d.openai.com", "e.openai.com", "f.openai.com" };

	for (int i = 0; i < 300; i++) {
		const char *h = hosts[(i * 7 + a->id) % 6];
		SSL_CTX *x = certgen_ctx(a->c, h, strlen(h));
		if (!x) {
			a->bad++;
			continue;
		}
		if (!SSL_CTX_get0_certificate(x))
			a->bad++;
		SSL_CTX_free(x);
	}
	return NULL;
}

TEST(cache_is_thread_safe)
{
	struct certgen *c2 = NULL;
	struct thr_arg args[4];
	pthread_t t[4];
	char err[256];

	CHECK(certgen_new(ca_crt, ca_key, 3, &c2, err, sizeof(err)) == 0, "%s", err);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thr_arg){ c2, i, 0 };
		pthread_create(&t[i], NULL, thr_main, &args[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECK(args[i].bad == 0, "thread %d got %d bad contexts", i, args[i].bad);
	certgen_free(c2);
}

TEST(certgen_new_errors)
{
	struct certgen *c2 = NULL;
	char err[256] = "";
	int rc;

	rc = certgen_new("/nonexistent/ca.crt", ca_key, 4, &c2, err, sizeof(err));
	CHECK(rc < 0 && c2 == NULL, "missing CA file accepted");
	CHECK(strstr(err, "/nonexistent/ca.crt") != NULL, "error lacks the path: %s", err);
	rc = certgen_new(ca_crt, up_key, 4, &c2, err, sizeof(err));
	CHECK(rc == -EINVAL && c2 == NULL, "mismatched CA key accepted");
	CHECK(strstr(err, up_key) != NULL, "error lacks the key path: %s", err);
}

/* ---------------- server handshakes ---------------- */

TEST(handshake_tls13_alpn_http11)
{
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	SSL_CTX *cctx = test_client_ctx(ca_crt, 0);
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;
	SSL *c, *s;
	int rc;

	CHECK(sctx != NULL, "certgen_ctx failed");
	pair_open();
	c = client_on(cctx, sp[0], "api.openai.com", alpn, sizeof(alpn) - 1);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc == 0, "handshake failed (%d): verify %s", rc,
	      X509_verify_cert_error_string(SSL_get_verify_result(c)));
	CHECK(SSL_version(c) == TLS1_3_VERSION, "negotiated %s, want TLSv1.3", SSL_get_version(c));
	SSL_get0_alpn_selected(c, &sel, &sel_len);
	CHECK(sel_len == 8 && memcmp(sel, "http/1.1", 8) == 0, "ALPN selected \"%.*s\"",
	      (int)sel_len, sel ? (const char *)sel : "");
	CHECK(SSL_get_verify_result(c) == X509_V_OK, "client verification failed");
	{
		STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c);
		CHECK(chain && sk_X509_num(chain) == 2, "served chain has %d certs, want leaf + CA",
		      chain ? sk_X509_num(chain) : 0);
	}
	SSL_free(c); SSL_free(s);
	pair_close();
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

TEST(handshake_h2_only_gets_no_alpn)
{
	static const unsigned char alpn[] = "\x02h2";
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	SSL_CTX *cctx = test_client_ctx(ca_crt, 0);
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;
	SSL *c, *s;
	int rc;

	pair_open();
	c = client_on(cctx, sp[0], "api.openai.com", alpn, sizeof(alpn) - 1);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc == 0, "h2-only client handshake failed (%d)", rc);
	SSL_get0_alpn_selected(c, &sel, &sel_len);
	CHECK(sel_len == 0, "ALPN \"%.*s\" selected for an h2-only client", (int)sel_len, sel);
	SSL_free(c); SSL_free(s);
	pair_close();
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

/* With HTTP/2 on (agent/proxy/h2.c serves it): h2 is chosen whenever offered,
 * http/1.1 still for clients offering only that. */
TEST(handshake_alpn_prefers_h2_when_offered)
{
	static const struct { const char *offer; unsigned len; const char *want; } cases[] = {
		{ "\x08http/1.1\x02h2", 12, "h2" },
		{ "\x02h2", 3, "h2" },
		{ "\x08http/1.1", 9, "http/1.1" },
	};
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	SSL_CTX *cctx = test_client_ctx(ca_crt, 0);

	certgen_offer_h2(cg, true);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const unsigned char *sel = NULL;
		unsigned int sel_len = 0;
		pair_open();
		SSL *c = client_on(cctx, sp[0], "api.openai.com", (const unsigned char *)cases[i].offer, cases[i].len);
		SSL *s = server_on(sctx, sp[1]);
		int rc = handshake(c, s);
		SSL_get0_alpn_selected(c, &sel, &sel_len);
		bool ok = rc == 0 && sel_len == strlen(cases[i].want) && !memcmp(sel, cases[i].want, sel_len);
		SSL_free(c); SSL_free(s);
		pair_close();
		if (!ok)
			certgen_offer_h2(cg, false);
		CHECK(ok, "case %zu: rc %d, ALPN \"%.*s\", want %s", i, rc, (int)sel_len, sel ? (const char *)sel : "",
		      cases[i].want);
	}
	certgen_offer_h2(cg, false);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

TEST(handshake_tls12_ok_tls11_refused)
{
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	SSL_CTX *c12 = test_client_ctx(ca_crt, TLS1_2_VERSION);
	SSL_CTX *c11 = test_client_ctx(ca_crt, TLS1_1_VERSION);
	SSL_CTX *weak = test_client_ctx(ca_crt, TLS1_2_VERSION);
	SSL *c, *s;
	int rc;

	pair_open();
	c = client_on(c12, sp[0], "api.openai.com", NULL, 0);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc == 0 && SSL_version(c) == TLS1_2_VERSION, "TLS 1.2 client refused (%d)", rc);
	CHECK(strstr(SSL_get_cipher_name(c), "GCM") || strstr(SSL_get_cipher_name(c), "CHACHA"),
	      "TLS 1.2 cipher %s is not AEAD", SSL_get_cipher_name(c));
	SSL_free(c); SSL_free(s);
	pair_close();

	pair_open();
	c = client_on(c11, sp[0], "api.openai.com", NULL, 0);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc != 0, "a TLS 1.1-max client completed a handshake (%s)", SSL_get_version(c));
	SSL_free(c); SSL_free(s);
	pair_close();

	/* a TLS 1.2 client offering only CBC suites is refused */
	SSL_CTX_set_cipher_list(weak, "ECDHE-ECDSA-AES128-SHA:AES128-SHA");
	pair_open();
	c = client_on(weak, sp[0], "api.openai.com", NULL, 0);
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	CHECK(rc != 0, "CBC-only TLS 1.2 client accepted with %s", SSL_get_cipher_name(c));
	SSL_free(c); SSL_free(s);
	pair_close();

	SSL_CTX_free(c12);
	SSL_CTX_free(c11);
	SSL_CTX_free(weak);
	SSL_CTX_free(sctx);
}

TEST(server_ctx_options)
{
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	uint64_t op = SSL_CTX_get_options(sctx);

	CHECK(op & SSL_OP_NO_RENEGOTIATION, "renegotiation not disabled");
	CHECK(op & SSL_OP_NO_COMPRESSION, "compression not disabled");
	CHECK(!(op & SSL_OP_NO_TICKET), "session tickets are off");
	CHECK(SSL_CTX_get_min_proto_version(sctx) == TLS1_2_VERSION, "min version not TLS 1.2");
	SSL_CTX_free(sctx);
}

/* ---------------- upstream (client side) ---------------- */

/* A server context presenting a leaf from the "public" test CA. */
static SSL_CTX *upstream_server(const char *host, time_t nb, time_t na)
{
	const char *names[] = { host, NULL };
	struct pki_leaf_opts o = { .common_name = host, .dns = names, .server_auth = true,
				   .not_before = nb, .not_after = na, .days = 1 };
	EVP_PKEY *k = NULL;
	X509 *leaf = NULL;
	SSL_CTX *s;
	char err[256];

	if (pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) < 0 ||
	    pki_leaf_issue(up_x, up_k, k, &o, &leaf, err, sizeof(err)) < 0)
		return NULL;
	s = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(s, leaf);
	SSL_CTX_use_PrivateKey(s, k);
	X509_free(leaf);
	EVP_PKEY_free(k);
	return s;
}

/* Connects an upstream SSL for sni to sctx; returns the handshake result
 * and leaves the client SSL in *out (caller frees). */
static int upstream_try(SSL_CTX *uctx, SSL_CTX *sctx, const char *sni, SSL **out)
{
	SSL *c, *s;
	int rc;

	pair_open();
	c = tls_upstream_new(uctx, sp[0], sni);
	if (!c) {
		pair_close();
		*out = NULL;
		return -9;
	}
	s = server_on(sctx, sp[1]);
	rc = handshake(c, s);
	if (rc == 0) {
		/* let TLS 1.3 NewSessionTicket messages reach the client */
		char b;
		SSL_read(c, &b, 1);
		ERR_clear_error();
	}
	SSL_free(s);
	pair_close();
	*out = c;
	return rc;
}

TEST(upstream_accepts_valid_and_resumes)
{
	char err[256] = "";
	SSL_CTX *uctx = tls_upstream_ctx_new(up_crt, err, sizeof(err));
	SSL_CTX *sctx = upstream_server("api.openai.com", 0, 0);
	SSL *c = NULL;
	int rc;

	CHECK(uctx != NULL, "tls_upstream_ctx_new: %s", err);
	CHECK(sctx != NULL, "test server setup failed");
	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc == 0, "valid upstream refused: %s", tls_verify_reason(c));
	CHECK(strcmp(tls_verify_reason(c), "ok") == 0, "reason \"%s\" after success",
	      tls_verify_reason(c));
	CHECK(!SSL_session_reused(c), "first connection claims resumption");
	tls_upstream_save_session(c, "api.openai.com");
	SSL_free(c);

	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc == 0, "second connection failed: %s", tls_verify_reason(c));
	CHECK(SSL_session_reused(c), "second connection to the same host was not resumed");
	SSL_free(c);
	/* a session is never offered to a different host */
	{
		SSL_CTX *s2 = upstream_server("api.anthropic.com", 0, 0);
		rc = upstream_try(uctx, s2, "api.anthropic.com", &c);
		CHECK(rc == 0 && !SSL_session_reused(c), "other host resumed a session");
		SSL_free(c);
		SSL_CTX_free(s2);
	}
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
}

/* Forged contexts resume sessions (tickets): a repeat client to a cached
 * host costs neither a signature nor a full handshake. */
TEST(forged_ctx_resumes_sessions)
{
	char err[256] = "";
	SSL_CTX *uctx = tls_upstream_ctx_new(ca_crt, err, sizeof(err));
	SSL_CTX *sctx = certgen_ctx(cg, "api.groq.com", 12);
	unsigned long sigs;
	SSL *c = NULL;
	int rc;

	CHECK(uctx && sctx, "setup: %s", err);
	rc = upstream_try(uctx, sctx, "api.groq.com", &c);
	CHECK(rc == 0, "first handshake: %s", tls_verify_reason(c));
	SSL_free(c);
	SSL_CTX_free(sctx);
	sigs = certgen_signatures(cg);
	sctx = certgen_ctx(cg, "api.groq.com", 12);
	CHECK(certgen_signatures(cg) == sigs, "cached host signed again");
	rc = upstream_try(uctx, sctx, "api.groq.com", &c);
	CHECK(rc == 0, "second handshake: %s", tls_verify_reason(c));
	CHECK(SSL_session_reused(c), "forged context did not resume the session");
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
}

TEST(upstream_refuses_expired)
{
	char err[256] = "";
	time_t now = time(NULL);
	SSL_CTX *uctx = tls_upstream_ctx_new(up_crt, err, sizeof(err));
	SSL_CTX *sctx = upstream_server("api.openai.com", now - 10 * 86400, now - 86400);
	SSL *c = NULL;
	int rc;

	CHECK(uctx && sctx, "setup: %s", err);
	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc != 0, "expired certificate accepted");
	CHECK(strcmp(tls_verify_reason(c), "certificate has expired") == 0, "reason \"%s\"",
	      tls_verify_reason(c));
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
}

TEST(upstream_refuses_wrong_hostname)
{
	char err[256] = "";
	SSL_CTX *uctx = tls_upstream_ctx_new(up_crt, err, sizeof(err));
	SSL_CTX *sctx = upstream_server("api.openai.com", 0, 0);
	SSL *c = NULL;
	int rc;

	CHECK(uctx && sctx, "setup: %s", err);
	rc = upstream_try(uctx, sctx, "api.anthropic.com", &c);
	CHECK(rc != 0, "certificate for another host accepted");
	CHECK(strcmp(tls_verify_reason(c), "hostname mismatch") == 0, "reason \"%s\"",
	      tls_verify_reason(c));
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
}

TEST(upstream_refuses_interception_ca)
{
	char err[256] = "";
	SSL_CTX *uctx = tls_upstream_ctx_new(up_crt, err, sizeof(err));
	SSL_CTX *sctx = certgen_ctx(cg, "api.openai.com", 14);
	SSL *c = NULL;
	const char *why;
	int rc;

	CHECK(uctx && sctx, "setup: %s", err);
	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc != 0, "a leaf forged by the interception CA was accepted upstream");
	why = tls_verify_reason(c);
	CHECK(strstr(why, "issuer") || strstr(why, "self-signed"), "reason \"%s\"", why);
	SSL_free(c);
	SSL_CTX_free(uctx);

	/* Even when the interception CA is an upstream anchor (as after
	 * `vigil ca trust` puts it in the system store), distrust wins. */
	uctx = tls_upstream_ctx_new(ca_crt, err, sizeof(err));
	CHECK(uctx != NULL, "%s", err);
	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc == 0, "control: CA given as anchor should verify (%s)", tls_verify_reason(c));
	SSL_free(c);
	CHECK(tls_upstream_distrust(uctx, ca_crt, err, sizeof(err)) == 0, "distrust: %s", err);
	rc = upstream_try(uctx, sctx, "api.openai.com", &c);
	CHECK(rc != 0, "distrusted interception CA accepted");
	CHECK(strcmp(tls_verify_reason(c), "certificate issued by the interception CA") == 0,
	      "reason \"%s\"", tls_verify_reason(c));
	SSL_free(c);
	SSL_CTX_free(uctx);
	SSL_CTX_free(sctx);
}

TEST(upstream_ctx_errors)
{
	char err[256] = "";
	SSL_CTX *u = tls_upstream_ctx_new("/nonexistent/anchors.pem", err, sizeof(err));

	CHECK(u == NULL, "missing upstream_ca file accepted");
	CHECK(strstr(err, "/nonexistent/anchors.pem") != NULL, "error lacks the path: %s", err);
	u = tls_upstream_ctx_new("system", err, sizeof(err));
	CHECK(u != NULL, "system store context failed: %s", err);
	CHECK(SSL_CTX_get_verify_mode(u) & SSL_VERIFY_PEER, "upstream does not verify the peer");
	CHECK(SSL_CTX_get_min_proto_version(u) == TLS1_2_VERSION, "upstream min not TLS 1.2");
	SSL_CTX_free(u);
}

/* Runs after every test, also when a single test is selected by name. */
__attribute__((destructor)) static void teardown(void)
{
	char cmd[128];

	certgen_free(cg);
	cg = NULL;
	X509_free(ca_x);
	X509_free(up_x);
	EVP_PKEY_free(up_k);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}
