/* tls: upstream (client-side) TLS contexts and connections (see tls.h).
 *
 * Owns, per upstream SSL_CTX, a bounded per-SNI session cache and the
 * optional list of distrusted (interception) CA certificates, both hung
 * off the context's ex_data so they live and die with it (a reload that
 * swaps the context also drops sessions verified under the old anchors).
 *
 * Must never: trust anything it was not given (no interception CA unless
 * an admin put it in the system store, and then tls_upstream_distrust
 * rejects it), skip hostname verification, resume a session for a
 * different host than the one it was verified for, or reuse a TLS 1.3
 * ticket twice (RFC 8446 C.4: tickets are single-use to avoid linkage). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "pki.h"
#include "net/tls.h"

#define TLS_SESSION_SLOTS 64
#define TLS_MAX_HOST 253

struct session_slot {
	char host[TLS_MAX_HOST + 1];
	SSL_SESSION *sess;   /* owned */
	unsigned long used;  /* LRU clock */
};

struct upstream_state {
	pthread_mutex_t lock;
	struct session_slot slots[TLS_SESSION_SLOTS];
	unsigned long clock;
	STACK_OF(X509) *distrust; /* owned; set before the context is shared */
};

static int ctx_idx = -1, ssl_host_idx = -1, ssl_flag_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

#define FLAG_INTERCEPT_CA ((void *)1)

static void state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
		       void *argp)
{
	struct upstream_state *st = ptr;

	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	if (!st)
		return;
	for (int i = 0; i < TLS_SESSION_SLOTS; i++)
		SSL_SESSION_free(st->slots[i].sess);
	sk_X509_pop_free(st->distrust, X509_free);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

static void host_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
		      void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

static void init_indexes(void)
{
	ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, state_free);
	ssl_host_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, host_free);
	ssl_flag_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct upstream_state *state_of(const SSL_CTX *ctx)
{
	return ctx_idx < 0 ? NULL : SSL_CTX_get_ex_data(ctx, ctx_idx);
}

/* Stores sess (takes ownership) for host, replacing what was there. */
static void cache_put(struct upstream_state *st, const char *host, SSL_SESSION *sess)
{
	struct session_slot *slot = NULL, *oldest = NULL;
	size_t n = strlen(host);

	if (n == 0 || n > TLS_MAX_HOST) {
		SSL_SESSION_free(sess);
		return;
	}
	/* A TLS 1.3 ticket stays valid however the connection that got it
	 * ends, but OpenSSL marks the connection's SSL_SESSION object not
	 * resumable when an SSL is freed without a close_notify: keep a
	 * private copy. TLS 1.2 sessions stay shared so that marking (a
	 * truncation defence) still applies to them. */
	if (SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION) {
		SSL_SESSION *copy = SSL_SESSION_dup(sess);
		SSL_SESSION_free(sess);
		if (!copy)
			return;
		sess = copy;
	}
	pthread_mutex_lock(&st->lock);
	/* Same host first, then an empty slot, then the least recently used. */
	for (int i = 0; i < TLS_SESSION_SLOTS && !slot; i++)
		if (st->slots[i].sess && strcmp(st->slots[i].host, host) == 0)
			slot = &st->slots[i];
	for (int i = 0; i < TLS_SESSION_SLOTS && !slot; i++)
		if (!st->slots[i].sess)
			slot = &st->slots[i];
	for (int i = 0; i < TLS_SESSION_SLOTS && !slot; i++)
		if (!oldest || st->slots[i].used < oldest->used)
			oldest = &st->slots[i];
	if (!slot)
		slot = oldest;
	SSL_SESSION_free(slot->sess);
	memcpy(slot->host, host, n + 1);
	slot->sess = sess;
	slot->used = ++st->clock;
	pthread_mutex_unlock(&st->lock);
}

/* A session for host (new reference) or NULL. TLS 1.3 sessions are taken
 * out of the cache: each ticket is used once. */
static SSL_SESSION *cache_take(struct upstream_state *st, const char *host)
{
	SSL_SESSION *sess = NULL;

	pthread_mutex_lock(&st->lock);
	for (int i = 0; i < TLS_SESSION_SLOTS; i++) {
		struct session_slot *s = &st->slots[i];
		if (!s->sess || strcmp(s->host, host) != 0)
			continue;
		if (SSL_SESSION_get_protocol_version(s->sess) >= TLS1_3_VERSION) {
			sess = s->sess;
			s->sess = NULL;
		} else {
			sess = s->sess;
			SSL_SESSION_up_ref(sess);
			s->used = ++st->clock;
		}
		break;
	}
	pthread_mutex_unlock(&st->lock);
	return sess;
}

/* Called by OpenSSL whenever the server hands us a session (TLS 1.2 at
 * the end of the handshake, TLS 1.3 tickets after it). Returning 1 keeps
 * the reference. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct upstream_state *st = state_of(SSL_get_SSL_CTX(ssl));
	const char *host = SSL_get_ex_data(ssl, ssl_host_idx);

	if (!st || !host || SSL_get_verify_result(ssl) != X509_V_OK ||
	    !SSL_SESSION_is_resumable(sess))
		return 0;
	cache_put(st, host, sess);
	return 1;
}

/* True if x is a distrusted CA or was signed by one. */
static bool is_distrusted(const STACK_OF(X509) *distrust, X509 *x)
{
	EVP_PKEY *xk = X509_get0_pubkey(x);

	for (int i = 0; i < sk_X509_num(distrust); i++) {
		X509 *ca = sk_X509_value(distrust, i);
		EVP_PKEY *cak = X509_get0_pubkey(ca);
		if (!cak)
			continue;
		if (xk && EVP_PKEY_eq(xk, cak) == 1)
			return true;
		/* Cheap name/keyid match first, the signature check only then. */
		if (X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, cak) == 1)
			return true;
	}
	ERR_clear_error();
	return false;
}

static int verify_cb(int preverify_ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct upstream_state *st;
	X509 *cur;

	if (!ssl)
		return preverify_ok;
	st = state_of(SSL_get_SSL_CTX(ssl));
	cur = X509_STORE_CTX_get_current_cert(sctx);
	if (st && st->distrust && cur && is_distrusted(st->distrust, cur)) {
		SSL_set_ex_data(ssl, ssl_flag_idx, FLAG_INTERCEPT_CA);
		X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	return preverify_ok;
}

SSL_CTX *tls_upstream_ctx_new(const char *upstream_ca, char *err, size_t errlen)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	struct upstream_state *st = NULL;
	SSL_CTX *ctx = NULL;

	pthread_once(&idx_once, init_indexes);
	if (ctx_idx < 0 || ssl_host_idx < 0 || ssl_flag_idx < 0) {
		snprintf(err, errlen, "upstream TLS: no ex_data index");
		return NULL;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	st = calloc(1, sizeof(*st));
	if (!ctx || !st) {
		snprintf(err, errlen, "upstream TLS: out of memory");
		goto err;
	}
	pthread_mutex_init(&st->lock, NULL);
	if (!SSL_CTX_set_ex_data(ctx, ctx_idx, st)) {
		pthread_mutex_destroy(&st->lock);
		free(st);
		st = NULL;
		snprintf(err, errlen, "upstream TLS: out of memory");
		goto err;
	}
	st = NULL; /* owned by ctx now */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL") ||
	    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0) {
		pki_ssl_err(err, errlen, "upstream TLS");
		goto err;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (!SSL_CTX_set_default_verify_paths(ctx)) {
		pki_ssl_err(err, errlen, "upstream TLS: system trust store");
		goto err;
	}
	if (upstream_ca && strcmp(upstream_ca, "system") != 0) {
		STACK_OF(X509) *anchors = NULL;
		X509_STORE *store = SSL_CTX_get_cert_store(ctx);
		/* Load by hand for a "path: reason" error on a bad file. */
		if (pki_certs_load(upstream_ca, &anchors, err, errlen) < 0)
			goto err;
		for (int i = 0; i < sk_X509_num(anchors); i++) {
			if (!X509_STORE_add_cert(store, sk_X509_value(anchors, i))) {
				sk_X509_pop_free(anchors, X509_free);
				pki_ssl_err(err, errlen, upstream_ca);
				goto err;
			}
		}
		sk_X509_pop_free(anchors, X509_free);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	/* Resumption with our own per-host cache: OpenSSL's internal client
	 * cache is not keyed by host, so sessions are stored only here. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_upstream_distrust(SSL_CTX *ctx, const char *ca_cert_path, char *err, size_t errlen)
{
	struct upstream_state *st = state_of(ctx);
	STACK_OF(X509) *certs = NULL;
	int rc;

	if (!st) {
		snprintf(err, errlen, "upstream TLS: not an upstream context");
		return -EINVAL;
	}
	rc = pki_certs_load(ca_cert_path, &certs, err, errlen);
	if (rc < 0)
		return rc;
	/* Sessions verified before this call skipped the check: drop them,
	 * or a resumption would bypass it. */
	pthread_mutex_lock(&st->lock);
	for (int i = 0; i < TLS_SESSION_SLOTS; i++) {
		SSL_SESSION_free(st->slots[i].sess);
		st->slots[i].sess = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (!st->distrust) {
		st->distrust = certs;
		return 0;
	}
	while (sk_X509_num(certs) > 0) {
		X509 *x = sk_X509_shift(certs);
		if (!sk_X509_push(st->distrust, x)) {
			X509_free(x);
			sk_X509_pop_free(certs, X509_free);
			snprintf(err, errlen, "upstream TLS: out of memory");
			return -ENOMEM;
		}
	}
	sk_X509_free(certs);
	return 0;
}

SSL *tls_upstream_new(SSL_CTX *ctx, int fd, const char *sni)
{
	struct upstream_state *st = state_of(ctx);
	SSL_SESSION *sess;
	char *host = NULL;
	SSL *ssl;

	if (!st || !sni || !*sni || strlen(sni) > TLS_MAX_HOST)
		return NULL;
	ssl = SSL_new(ctx);
	if (!ssl)
		goto err;
	host = strdup(sni);
	if (!host || !SSL_set_ex_data(ssl, ssl_host_idx, host)) {
		free(host);
		goto err;
	}
	if (!SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, sni) ||
	    !SSL_set1_host(ssl, sni))
		goto err;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	SSL_set_connect_state(ssl);
	sess = cache_take(st, sni);
	if (sess) {
		SSL_set_session(ssl, sess); /* failure just means a full handshake */
		SSL_SESSION_free(sess);
	}
	ERR_clear_error();
	return ssl;
err:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

void tls_upstream_save_session(SSL *ssl, const char *sni)
{
	struct upstream_state *st;
	SSL_SESSION *sess;

	if (!ssl || !sni || !SSL_is_init_finished(ssl) ||
	    SSL_get_verify_result(ssl) != X509_V_OK)
		return;
	st = state_of(SSL_get_SSL_CTX(ssl));
	if (!st)
		return;
	sess = SSL_get1_session(ssl);
	if (!sess)
		return;
	if (!SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_free(sess);
		return;
	}
	cache_put(st, sni, sess);
}

const char *tls_verify_reason(SSL *ssl)
{
	long v;

	if (!ssl)
		return "no connection";
	if (ssl_flag_idx >= 0 && SSL_get_ex_data(ssl, ssl_flag_idx) == FLAG_INTERCEPT_CA)
		return "certificate issued by the interception CA";
	v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK)
		return X509_verify_cert_error_string(v);
	if (!SSL_is_init_finished(ssl))
		return "TLS handshake failed";
	return "ok";
}
