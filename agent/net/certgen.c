/* certgen: forged server certificates and per-host server SSL_CTXs
 * (see certgen.h).
 *
 * Owns the interception CA key in memory, the one leaf key every forged
 * certificate shares (HAProxy ssl_gencert does the same: one key, many
 * certs, so a new host costs one ECDSA signature and no key generation),
 * and an LRU of ready SSL_CTXs keyed by the lowercased SNI.
 *
 * Must never: sign a name that failed certgen_valid_sni (the SNI is
 * attacker-controlled bytes from a ClientHello: a comma, NUL or slash
 * could otherwise smuggle a second identity into the certificate), put
 * anything but that one name in the SAN, hold the cache lock while
 * signing, or hand out a cached context whose leaf is about to expire. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "net/certgen.h"
#include "pki.h"

#define CERTGEN_DEFAULT_CACHE 1024
#define CERTGEN_LEAF_DAYS 7
#define CERTGEN_MAX_NAME 253

struct cg_entry {
	char host[CERTGEN_MAX_NAME + 1];
	SSL_CTX *ctx;             /* one reference held by the cache */
	time_t refresh_at;        /* re-forge after this (leaf near expiry) */
	struct cg_entry *hnext;   /* hash chain */
	struct cg_entry *prev, *next; /* LRU list (head = most recent); free list uses next */
};

struct certgen {
	X509 *ca;                 /* issuing CA */
	STACK_OF(X509) *chain;    /* issuing CA first, then its parents: served after the leaf */
	EVP_PKEY *ca_key;
	EVP_PKEY *leaf_key;       /* shared by every forged leaf */
	X509 *leaf_tmpl;          /* leaf_key's certificate skeleton (see forge) */
	time_t ca_not_after;
	atomic_bool offer_h2;     /* ALPN: select h2 when the client offers it */

	pthread_mutex_t lock;     /* guards everything below */
	struct cg_entry *entries; /* cap entries, allocated once */
	struct cg_entry **buckets;
	size_t nbuckets;          /* power of two */
	size_t cap;
	struct cg_entry *head, *tail, *free_list;
	unsigned long signatures; /* atomic */
};

bool certgen_valid_sni(const char *name, size_t len)
{
	size_t label = 0, labels = 0, i;
	bool last_all_digits = true;

	if (!name || len == 0 || len > CERTGEN_MAX_NAME)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (c == '.') {
			/* empty label ("a..com", ".a.com", trailing dot) or '-' at its end */
			if (label == 0 || name[i - 1] == '-')
				return false;
			labels++;
			label = 0;
			last_all_digits = true;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return false;
		} else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9'))) {
			/* NUL, '*', ',', '/', ' ', '_', ':' and every non-ASCII byte */
			return false;
		}
		if (c < '0' || c > '9')
			last_all_digits = false;
		if (++label > 63)
			return false;
	}
	/* name ends inside a label: label > 0 always here unless trailing dot */
	if (label == 0 || name[len - 1] == '-')
		return false;
	labels++;
	/* No TLD is all digits: this refuses IPv4 literals ("1.2.3.4") and
	 * their shorthand forms ("127.1"), which belong in iPAddress SANs. */
	if (labels < 2 || last_all_digits)
		return false;
	return true;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

int certgen_new(const char *ca_cert_path, const char *ca_key_path, size_t cache_size,
		struct certgen **out, char *err, size_t errlen)
{
	struct certgen *cg;
	int rc;

	*out = NULL;
	cg = calloc(1, sizeof(*cg));
	if (!cg) {
		snprintf(err, errlen, "certgen: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&cg->lock, NULL);
	rc = pki_certs_load(ca_cert_path, &cg->chain, err, errlen);
	if (rc < 0)
		goto err;
	cg->ca = sk_X509_value(cg->chain, 0);
	X509_up_ref(cg->ca);
	rc = pki_key_load(ca_key_path, &cg->ca_key, err, errlen);
	if (rc < 0)
		goto err;
	if (X509_check_private_key(cg->ca, cg->ca_key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "%s: key does not match the CA certificate %s", ca_key_path,
			 ca_cert_path);
		rc = -EINVAL;
		goto err;
	}
	if (X509_check_ca(cg->ca) == 0) {
		snprintf(err, errlen, "%s: not a CA certificate", ca_cert_path);
		rc = -EINVAL;
		goto err;
	}
	cg->ca_not_after = asn1_to_time(X509_get0_notAfter(cg->ca));
	if (cg->ca_not_after <= time(NULL)) {
		snprintf(err, errlen, "%s: CA certificate has expired", ca_cert_path);
		rc = -EINVAL;
		goto err;
	}
	rc = pki_key_generate(PKI_KEY_EC_P256, &cg->leaf_key, err, errlen);
	if (rc < 0)
		goto err;
	{
		/* Extensions, issuer and public key are the same for every
		 * leaf: build them once, personalize copies per host. */
		struct pki_leaf_opts o = { .server_auth = true, .days = CERTGEN_LEAF_DAYS };
		rc = pki_leaf_issue(cg->ca, cg->ca_key, cg->leaf_key, &o, &cg->leaf_tmpl, err, errlen);
		if (rc < 0)
			goto err;
	}

	cg->cap = cache_size ? cache_size : CERTGEN_DEFAULT_CACHE;
	cg->nbuckets = 16;
	while (cg->nbuckets < cg->cap * 2)
		cg->nbuckets <<= 1;
	cg->entries = calloc(cg->cap, sizeof(*cg->entries));
	cg->buckets = calloc(cg->nbuckets, sizeof(*cg->buckets));
	if (!cg->entries || !cg->buckets) {
		snprintf(err, errlen, "certgen: out of memory");
		rc = -ENOMEM;
		goto err;
	}
	for (size_t i = 0; i < cg->cap; i++) {
		cg->entries[i].next = cg->free_list;
		cg->free_list = &cg->entries[i];
	}
	*out = cg;
	return 0;
err:
	certgen_free(cg);
	return rc;
}

void certgen_free(struct certgen *cg)
{
	if (!cg)
		return;
	for (struct cg_entry *e = cg->head; e; e = e->next)
		SSL_CTX_free(e->ctx);
	free(cg->entries);
	free(cg->buckets);
	X509_free(cg->leaf_tmpl);
	EVP_PKEY_free(cg->leaf_key);
	EVP_PKEY_free(cg->ca_key);
	X509_free(cg->ca);
	sk_X509_pop_free(cg->chain, X509_free);
	pthread_mutex_destroy(&cg->lock);
	free(cg);
}

unsigned long certgen_signatures(const struct certgen *cg)
{
	return __atomic_load_n(&cg->signatures, __ATOMIC_RELAXED);
}

/* Validates and lowercases into buf (CERTGEN_MAX_NAME + 1 bytes). */
static int normalize(const char *sni, size_t len, char *buf)
{
	if (!certgen_valid_sni(sni, len))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = sni[i];
		buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	buf[len] = '\0';
	return 0;
}

/* Signs a leaf for an already validated, lowercased host. */
static X509 *forge(struct certgen *cg, const char *host, time_t now, time_t *not_after)
{
	const char *names[2] = { host, NULL };
	struct pki_leaf_opts o = {
		.common_name = host,
		.dns = names,
		.dns_count = 1,
		.server_auth = true,
		.not_before = now - 3600,
		.not_after = now + CERTGEN_LEAF_DAYS * 86400,
	};
	char err[256];
	X509 *x = NULL;

	if (o.not_after > cg->ca_not_after)
		o.not_after = cg->ca_not_after;
	if (pki_leaf_from_template(cg->leaf_tmpl, cg->ca, cg->ca_key, &o, &x, err, sizeof(err)) < 0) {
		errno = EIO;
		return NULL;
	}
	__atomic_add_fetch(&cg->signatures, 1, __ATOMIC_RELAXED);
	if (not_after)
		*not_after = o.not_after;
	return x;
}

X509 *certgen_forge(struct certgen *cg, const char *sni, size_t len)
{
	char host[CERTGEN_MAX_NAME + 1];

	if (normalize(sni, len, host) < 0) {
		errno = EINVAL;
		return NULL;
	}
	return forge(cg, host, time(NULL), NULL);
}

/* h2 when offered and enabled (agent/proxy/h2.c serves it), else HTTP/1.1 when
 * offered; a client offering neither gets no ALPN, which every h2 client
 * treats as HTTP/1.1 over TLS, rather than a fatal
 * no_application_protocol alert. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct certgen *cg = arg;
	const unsigned char *h1 = NULL;
	unsigned int i = 0;

	(void)ssl;
	while (i < inlen) {
		unsigned int n = in[i];
		if (n == 0 || n > inlen - i - 1)
			break; /* malformed list: OpenSSL validated it, but be safe */
		if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0 && atomic_load(&cg->offer_h2)) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0)
			h1 = in + i + 1;
		i += n + 1;
	}
	if (!h1)
		return SSL_TLSEXT_ERR_NOACK;
	*out = h1;
	*outlen = 8;
	return SSL_TLSEXT_ERR_OK;
}

void certgen_offer_h2(struct certgen *cg, bool on)
{
	atomic_store(&cg->offer_h2, on);
}

static SSL_CTX *build_ctx(struct certgen *cg, const char *host, time_t now, time_t *not_after)
{
	SSL_CTX *ctx = NULL;
	X509 *leaf;

	leaf = forge(cg, host, now, not_after);
	if (!leaf)
		return NULL;
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		goto err;
	/* TLS 1.2 floor: the clients we intercept are modern SDKs, and
	 * offering less than the real provider would downgrade them. */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		goto err;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Our leaf is ECDSA: forward-secret AEAD suites only for TLS 1.2;
	 * the TLS 1.3 defaults are all AEAD already. */
	if (!SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:"
					  "ECDHE-ECDSA-AES256-GCM-SHA384:"
					  "ECDHE-ECDSA-CHACHA20-POLY1305") ||
	    !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384"))
		goto err;
	/* Idle intercepted connections are the common case (keep-alive
	 * SDK pools): give read/write buffers back between records. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (!SSL_CTX_use_certificate(ctx, leaf) || !SSL_CTX_use_PrivateKey(ctx, cg->leaf_key))
		goto err;
	for (int i = 0; i < sk_X509_num(cg->chain); i++)
		if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(cg->chain, i)))
			goto err;
	/* Session resumption (tickets are on by default: the per-context
	 * ticket key is random and lives as long as the cached context). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (!SSL_CTX_set_session_id_context(ctx, (const unsigned char *)host,
					    (unsigned int)(strlen(host) > SSL_MAX_SID_CTX_LENGTH
							   ? SSL_MAX_SID_CTX_LENGTH : strlen(host))))
		goto err;
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, cg);
	X509_free(leaf);
	return ctx;
err:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	X509_free(leaf);
	errno = EIO;
	return NULL;
}

static uint32_t hash_host(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

/* Locked helpers. */
static void lru_unlink(struct certgen *cg, struct cg_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		cg->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		cg->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct certgen *cg, struct cg_entry *e)
{
	e->prev = NULL;
	e->next = cg->head;
	if (cg->head)
		cg->head->prev = e;
	cg->head = e;
	if (!cg->tail)
		cg->tail = e;
}

static struct cg_entry **bucket_of(struct certgen *cg, const char *host)
{
	return &cg->buckets[hash_host(host) & (cg->nbuckets - 1)];
}

static struct cg_entry *lookup(struct certgen *cg, const char *host)
{
	for (struct cg_entry *e = *bucket_of(cg, host); e; e = e->hnext)
		if (strcmp(e->host, host) == 0)
			return e;
	return NULL;
}

/* Removes e from hash and LRU, drops its context, returns it to free list. */
static void evict(struct certgen *cg, struct cg_entry *e)
{
	struct cg_entry **pp = bucket_of(cg, e->host);

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(cg, e);
	SSL_CTX_free(e->ctx);
	memset(e, 0, sizeof(*e));
	e->next = cg->free_list;
	cg->free_list = e;
}

/* A cached certificate is used: most recent in the LRU, and a reference
 * for the caller. Called with the lock held. */
static SSL_CTX *hit_locked(struct certgen *cg, struct cg_entry *e)
{
	lru_unlink(cg, e);
	lru_push_head(cg, e);
	SSL_CTX_up_ref(e->ctx);
	return e->ctx;
}

SSL_CTX *certgen_ctx(struct certgen *cg, const char *sni, size_t len)
{
	char host[CERTGEN_MAX_NAME + 1];
	struct cg_entry *e, **b;
	time_t now = time(NULL), not_after = 0;
	SSL_CTX *ctx;

	if (normalize(sni, len, host) < 0) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&cg->lock);
	e = lookup(cg, host);
	if (e && now < e->refresh_at) {
		ctx = hit_locked(cg, e);
		pthread_mutex_unlock(&cg->lock);
		return ctx;
	}
	pthread_mutex_unlock(&cg->lock);

	/* Miss (or stale): sign without the lock so other hosts are not
	 * held up behind an ECDSA signature. */
	ctx = build_ctx(cg, host, now, &not_after);
	if (!ctx)
		return NULL;

	pthread_mutex_lock(&cg->lock);
	e = lookup(cg, host);
	if (e && now < e->refresh_at) {
		/* Another thread forged it meanwhile: keep theirs. */
		SSL_CTX_free(ctx);
		ctx = hit_locked(cg, e);
		pthread_mutex_unlock(&cg->lock);
		return ctx;
	}
	if (e)
		evict(cg, e);
	if (!cg->free_list)
		evict(cg, cg->tail);
	e = cg->free_list;
	cg->free_list = e->next;
	memcpy(e->host, host, strlen(host) + 1);
	e->ctx = ctx;
	SSL_CTX_up_ref(ctx); /* the cache's reference */
	/* Refresh a day before expiry, but never more often than hourly
	 * (a CA close to its own end would otherwise cost a signature per
	 * connection). */
	e->refresh_at = not_after - 86400;
	if (e->refresh_at < now + 3600)
		e->refresh_at = now + 3600;
	b = bucket_of(cg, host);
	e->hnext = *b;
	*b = e;
	lru_push_head(cg, e);
	pthread_mutex_unlock(&cg->lock);
	return ctx;
}
