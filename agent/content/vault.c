/* vault: per-owner token vaults with bounded lifetime and size.
 *
 * Entries are found by a keyed digest of (type, value) when tokenizing and
 * by token when restoring; both are linear scans over at most max_entries
 * (4096 by default: microseconds, and only for requests or answers that
 * carry a finding or a token). A vault's derivation key is random, so the
 * same value gets different tokens for different owners: a token copied
 * from one user's answer means nothing in another user's vault.
 *
 * Expiry is checked lazily on every use (an expired value is never
 * restored, even before a sweep) and eagerly by vault_store_sweep, so an
 * unused value does not outlive its ttl by more than one sweep period.
 */
#include "content/vault.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

struct vault_entry {
	char tok[VAULT_TOKEN_MAX + 1];
	unsigned char digest[32];   /* HMAC(key, type|value): finds the entry by value */
	char *value;
	size_t vlen;
	uint64_t used_ms;           /* last tokenize or restore */
};

struct vault {
	pthread_mutex_t lock;       /* entries, key */
	int refs;                   /* under lock; a listed vault holds one for its store */
	struct vault_store *store;  /* NULL: standalone (never expires) */
	unsigned char key[32];
	struct vault_entry *e;
	size_t n, cap, max;
	/* in a store */
	void *owner;
	size_t owner_len;
	uint64_t used_ms;
	struct vault *next;
};

struct vault_store {
	pthread_mutex_t lock;       /* the list and each vault's owner, used_ms, next */
	struct vault *head;
	size_t owners;
	uint64_t ttl_ms;
	size_t max_entries;
	vault_clock_fn clock;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void entry_wipe(struct vault_entry *e)
{
	OPENSSL_cleanse(e->value, e->vlen);
	free(e->value);
	OPENSSL_cleanse(e, sizeof(*e));
}

/* Removes entry i (wiped); the last entry takes its place. */
static void entry_drop(struct vault *v, size_t i)
{
	entry_wipe(&v->e[i]);
	if (i != v->n - 1)
		v->e[i] = v->e[v->n - 1];
	v->n--;
}

static void vault_wipe_all(struct vault *v)
{
	while (v->n)
		entry_drop(v, v->n - 1);
	free(v->e);
	v->e = NULL;
	v->cap = 0;
}

static void vault_destroy(struct vault *v)
{
	vault_wipe_all(v);
	pthread_mutex_destroy(&v->lock);
	free(v->owner);
	OPENSSL_cleanse(v, sizeof(*v));
	free(v);
}

static struct vault *vault_alloc(const unsigned char *key, size_t keylen, size_t max_entries)
{
	struct vault *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	if (key) {
		unsigned int l = 0;
		/* normalise any key length to 32 bytes */
		if (!EVP_Digest(key, keylen, v->key, &l, EVP_sha256(), NULL))
			goto err;
	} else if (RAND_bytes(v->key, sizeof(v->key)) != 1) {
		goto err;
	}
	v->max = max_entries ? max_entries : VAULT_DEFAULT_MAX_ENTRIES;
	v->refs = 1;
	pthread_mutex_init(&v->lock, NULL);
	return v;
err:
	free(v);
	return NULL;
}

struct vault *vault_new(const unsigned char *key, size_t keylen, size_t max_entries)
{
	return vault_alloc(key, keylen, max_entries);
}

void vault_free(struct vault *v)
{
	if (!v)
		return;
	/* a vault in a store also holds the store's reference, so only a
	 * standalone one (or one its store let go) reaches zero here */
	pthread_mutex_lock(&v->lock);
	int left = --v->refs;
	pthread_mutex_unlock(&v->lock);
	if (!left)
		vault_destroy(v);
}

static uint64_t vault_now(const struct vault *v)
{
	return v->store ? v->store->clock() : 0;
}

/* now may be older than a use another thread recorded after now was read
 * (sweep and get read the clock before taking their locks): that value is
 * fresh, not 2^64 milliseconds old. */
static bool idle_for(uint64_t now, uint64_t used_ms, uint64_t ttl_ms)
{
	return now > used_ms && now - used_ms >= ttl_ms;
}

static bool expired(const struct vault *v, const struct vault_entry *e, uint64_t now)
{
	return v->store && idle_for(now, e->used_ms, v->store->ttl_ms);
}

size_t vault_count(struct vault *v)
{
	if (!v)
		return 0;
	pthread_mutex_lock(&v->lock);
	size_t n = v->n;
	pthread_mutex_unlock(&v->lock);
	return n;
}

int vault_keyed_digest(const unsigned char *key, size_t keylen, enum finding_type type,
		       uint32_t salt, const char *value, size_t n, unsigned char out[32])
{
	const char *name = finding_name(type);
	size_t nl = strlen(name);
	size_t tot = nl + 1 + 4 + n;
	unsigned char *buf = malloc(tot ? tot : 1);
	unsigned int ol = 0;
	if (!buf)
		return -ENOMEM;
	memcpy(buf, name, nl);
	buf[nl] = 0;
	memcpy(buf + nl + 1, &salt, 4);
	memcpy(buf + nl + 5, value, n);
	unsigned char *r = HMAC(EVP_sha256(), key, (int)keylen, buf, tot, out, &ol);
	OPENSSL_cleanse(buf, tot);
	free(buf);
	return r ? 0 : -EIO;
}

/* Index of the least recently used entry (n > 0). */
static size_t lru_index(const struct vault *v)
{
	size_t k = 0;
	for (size_t i = 1; i < v->n; i++)
		if (v->e[i].used_ms < v->e[k].used_ms)
			k = i;
	return k;
}

/* 24 bits of the keyed digest name the value; on a clash with another
 * value, derive again with a salt so a token always names one value. */
static int derive_token(struct vault *v, enum finding_type type, const char *value, size_t n,
			const unsigned char d[32], char tok[VAULT_TOKEN_MAX + 1])
{
	unsigned char td[32];
	int rc;
	memcpy(td, d, 32);
	for (uint32_t salt = 1;; salt++) {
		snprintf(tok, VAULT_TOKEN_MAX + 1, VAULT_TOKEN_PREFIX "%s_%02x%02x%02x]]",
			 finding_name(type), td[0], td[1], td[2]);
		bool clash = false;
		for (size_t i = 0; i < v->n && !clash; i++)
			clash = strcmp(v->e[i].tok, tok) == 0;
		if (!clash)
			return 0;
		if (salt > 64)
			return -ENOSPC;
		if ((rc = vault_keyed_digest(v->key, sizeof(v->key), type, salt, value, n, td)))
			return rc;
	}
}

static int tokenize_locked(struct vault *v, enum finding_type type, const char *value, size_t n,
			   char tok[VAULT_TOKEN_MAX + 1])
{
	unsigned char d[32];
	uint64_t now = vault_now(v);
	int rc = vault_keyed_digest(v->key, sizeof(v->key), type, 0, value, n, d);
	if (rc)
		return rc;
	for (size_t i = 0; i < v->n; i++)
		if (!memcmp(v->e[i].digest, d, 32) && v->e[i].vlen == n &&
		    !memcmp(v->e[i].value, value, n)) {
			if (expired(v, &v->e[i], now)) {
				entry_drop(v, i);   /* a fresh token, as if never seen */
				break;
			}
			v->e[i].used_ms = now;
			memcpy(tok, v->e[i].tok, VAULT_TOKEN_MAX + 1);
			return 0;
		}
	if (v->n >= v->max)
		entry_drop(v, lru_index(v));
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 16;
		struct vault_entry *p = realloc(v->e, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->e = p;
		v->cap = nc;
	}
	if ((rc = derive_token(v, type, value, n, d, tok)))
		return rc;
	struct vault_entry *e = &v->e[v->n];
	memset(e, 0, sizeof(*e));
	if (!(e->value = malloc(n ? n : 1)))
		return -ENOMEM;
	memcpy(e->value, value, n);
	e->vlen = n;
	e->used_ms = now;
	memcpy(e->digest, d, 32);
	memcpy(e->tok, tok, VAULT_TOKEN_MAX + 1);
	v->n++;
	return 0;
}

int vault_tokenize(struct vault *v, enum finding_type type, const char *value, size_t n,
		   char tok[VAULT_TOKEN_MAX + 1])
{
	pthread_mutex_lock(&v->lock);
	int rc = tokenize_locked(v, type, value, n, tok);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int vault_lookup(struct vault *v, const char *tok, size_t toklen, struct buf *out)
{
	int rc = 0;
	if (!v || toklen > VAULT_TOKEN_MAX)
		return 0;
	pthread_mutex_lock(&v->lock);
	uint64_t now = vault_now(v);
	for (size_t i = 0; i < v->n; i++) {
		struct vault_entry *e = &v->e[i];
		if (strlen(e->tok) != toklen || memcmp(e->tok, tok, toklen))
			continue;
		if (expired(v, e, now)) {
			entry_drop(v, i);
			break;
		}
		e->used_ms = now;
		rc = buf_append(out, e->value, e->vlen);
		rc = rc ? rc : 1;
		break;
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

/* ------------------------------------------------------------ store */

struct vault_store *vault_store_new(uint64_t ttl_ms, size_t max_entries, vault_clock_fn clock)
{
	struct vault_store *vs = calloc(1, sizeof(*vs));
	if (!vs)
		return NULL;
	pthread_mutex_init(&vs->lock, NULL);
	vs->ttl_ms = ttl_ms ? ttl_ms : VAULT_DEFAULT_TTL_MS;
	vs->max_entries = max_entries ? max_entries : VAULT_DEFAULT_MAX_ENTRIES;
	vs->clock = clock ? clock : mono_ms;
	return vs;
}

/* Unlinks v (store lock held). A vault a caller still holds is emptied
 * now and becomes standalone, destroyed with its last reference. */
static void store_drop(struct vault_store *vs, struct vault **link)
{
	struct vault *v = *link;
	*link = v->next;
	vs->owners--;
	pthread_mutex_lock(&v->lock);
	vault_wipe_all(v);
	v->store = NULL;
	int left = --v->refs;   /* the store's reference */
	pthread_mutex_unlock(&v->lock);
	if (!left)
		vault_destroy(v);
}

void vault_store_free(struct vault_store *vs)
{
	if (!vs)
		return;
	pthread_mutex_lock(&vs->lock);
	while (vs->head)
		store_drop(vs, &vs->head);
	pthread_mutex_unlock(&vs->lock);
	pthread_mutex_destroy(&vs->lock);
	free(vs);
}

/* The listed vault unused for longest with no other holder (lock held). */
static struct vault **store_lru_idle(struct vault_store *vs)
{
	struct vault **best = NULL;
	for (struct vault **l = &vs->head; *l; l = &(*l)->next) {
		pthread_mutex_lock(&(*l)->lock);
		bool idle = (*l)->refs == 1;
		pthread_mutex_unlock(&(*l)->lock);
		if (idle && (!best || (*l)->used_ms < (*best)->used_ms))
			best = l;
	}
	return best;
}

struct vault *vault_store_get(struct vault_store *vs, const void *owner, size_t owner_len)
{
	struct vault *v;
	uint64_t now = vs->clock();

	pthread_mutex_lock(&vs->lock);
	for (v = vs->head; v; v = v->next)
		if (v->owner_len == owner_len && !memcmp(v->owner, owner, owner_len))
			break;
	if (!v) {
		struct vault **old;
		if (vs->owners >= VAULT_STORE_MAX_OWNERS && (old = store_lru_idle(vs)))
			store_drop(vs, old);
		if (!(v = vault_alloc(NULL, 0, vs->max_entries)) || !(v->owner = malloc(owner_len ? owner_len : 1))) {
			if (v)
				vault_destroy(v);
			pthread_mutex_unlock(&vs->lock);
			return NULL;
		}
		memcpy(v->owner, owner, owner_len);
		v->owner_len = owner_len;
		v->store = vs;
		v->next = vs->head;
		vs->head = v;
		vs->owners++;
	}
	pthread_mutex_lock(&v->lock);
	v->refs++;
	pthread_mutex_unlock(&v->lock);
	v->used_ms = now;
	pthread_mutex_unlock(&vs->lock);
	return v;
}

size_t vault_store_sweep(struct vault_store *vs)
{
	size_t wiped = 0;
	uint64_t now = vs->clock();

	pthread_mutex_lock(&vs->lock);
	for (struct vault **l = &vs->head; *l;) {
		struct vault *v = *l;
		pthread_mutex_lock(&v->lock);
		for (size_t i = v->n; i-- > 0;)
			if (expired(v, &v->e[i], now)) {
				entry_drop(v, i);
				wiped++;
			}
		bool idle = v->n == 0 && v->refs == 1 && idle_for(now, v->used_ms, vs->ttl_ms);
		pthread_mutex_unlock(&v->lock);
		if (idle)
			store_drop(vs, l);
		else
			l = &v->next;
	}
	pthread_mutex_unlock(&vs->lock);
	return wiped;
}

size_t vault_store_owners(struct vault_store *vs)
{
	pthread_mutex_lock(&vs->lock);
	size_t n = vs->owners;
	pthread_mutex_unlock(&vs->lock);
	return n;
}
