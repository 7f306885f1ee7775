/* Unit tests for agent/content/vault.c: tokens stable per owner and distinct across
 * owners, bounded size (least recently used value evicted), expiry after
 * the ttl (lazy and by sweep), a vault outliving its store, and several
 * threads tokenizing and restoring in one vault at once. */
#include "check.h"

#include <pthread.h>

#include "content/vault.h"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static int lookup_str(struct vault *v, const char *tok, char *out, size_t outlen)
{
	struct buf b = { 0 };
	int rc = vault_lookup(v, tok, strlen(tok), &b);
	if (rc == 1)
		snprintf(out, outlen, "%.*s", (int)b.len, b.data);
	buf_free(&b);
	return rc;
}

TEST(vault_tokens_are_stable_and_distinct)
{
	struct vault *v = vault_new(NULL, 0, 0);
	char t1[VAULT_TOKEN_MAX + 1], t2[VAULT_TOKEN_MAX + 1], got[64];
	CHECK(v, "vault_new");
	CHECK(vault_tokenize(v, FINDING_EMAIL, "a@b.io", 6, t1) == 0, "tokenize 1");
	CHECK(vault_tokenize(v, FINDING_EMAIL, "a@b.io", 6, t2) == 0 && !strcmp(t1, t2), "same value, same token");
	CHECK(vault_tokenize(v, FINDING_EMAIL, "c@d.io", 6, t2) == 0 && strcmp(t1, t2), "different value, new token");
	CHECK(strlen(t1) <= VAULT_TOKEN_MAX && !strncmp(t1, VAULT_TOKEN_PREFIX, 6), "token format: %s", t1);
	CHECK(lookup_str(v, t1, got, sizeof(got)) == 1 && !strcmp(got, "a@b.io"), "restore: %s", got);
	CHECK(lookup_str(v, "[[VGL_EMAIL_000000]]", got, sizeof(got)) == 0, "unknown token must not resolve");
	vault_free(v);
}

TEST(vault_full_evicts_least_recently_used)
{
	struct vault_store *vs = vault_store_new(60000, 2, fake_clock);
	char ta[VAULT_TOKEN_MAX + 1], tb[VAULT_TOKEN_MAX + 1], tc[VAULT_TOKEN_MAX + 1], got[64];
	fake_now = 1000;
	struct vault *v = vault_store_get(vs, "u", 1);
	CHECK(v, "get");
	vault_tokenize(v, FINDING_EMAIL, "a@x.io", 6, ta);
	fake_now++;
	vault_tokenize(v, FINDING_EMAIL, "b@x.io", 6, tb);
	fake_now++;
	CHECK(lookup_str(v, ta, got, sizeof(got)) == 1, "a restorable");   /* a is now the recent one */
	fake_now++;
	CHECK(vault_tokenize(v, FINDING_EMAIL, "c@x.io", 6, tc) == 0, "a full vault still tokenizes");
	CHECK(vault_count(v) == 2, "bound: %zu entries", vault_count(v));
	CHECK(lookup_str(v, tb, got, sizeof(got)) == 0, "b (least recently used) should be evicted");
	CHECK(lookup_str(v, ta, got, sizeof(got)) == 1 && !strcmp(got, "a@x.io"), "a kept");
	CHECK(lookup_str(v, tc, got, sizeof(got)) == 1 && !strcmp(got, "c@x.io"), "c kept");
	vault_free(v);
	vault_store_free(vs);
}

TEST(vault_owners_are_separate)
{
	struct vault_store *vs = vault_store_new(0, 0, fake_clock);
	char t[VAULT_TOKEN_MAX + 1], t2[VAULT_TOKEN_MAX + 1], got[64];
	struct vault *alice = vault_store_get(vs, "1000\0/usr/bin/python3\0", 22);
	struct vault *bob = vault_store_get(vs, "1001\0/usr/bin/python3\0", 22);
	struct vault *tool = vault_store_get(vs, "1000\0/usr/bin/curl\0", 19);
	CHECK(alice && bob && tool && alice != bob && alice != tool, "three owners, three vaults");
	CHECK(vault_store_owners(vs) == 3, "owners %zu", vault_store_owners(vs));
	vault_tokenize(alice, FINDING_EMAIL, "alice@corp.example", 18, t);
	CHECK(lookup_str(bob, t, got, sizeof(got)) == 0, "another user must not restore alice's token");
	CHECK(lookup_str(tool, t, got, sizeof(got)) == 0, "another program must not restore it");
	vault_tokenize(bob, FINDING_EMAIL, "alice@corp.example", 18, t2);
	CHECK(strcmp(t, t2) != 0 || lookup_str(bob, t, got, sizeof(got)) == 1,
	      "same value: tokens are keyed per owner");
	/* the same owner, a new connection: the same vault */
	struct vault *again = vault_store_get(vs, "1000\0/usr/bin/python3\0", 22);
	CHECK(again == alice, "a reconnecting owner gets its vault back");
	CHECK(lookup_str(again, t, got, sizeof(got)) == 1 && !strcmp(got, "alice@corp.example"), "restore after reconnect");
	vault_free(again);
	vault_free(alice);
	vault_free(bob);
	vault_free(tool);
	vault_store_free(vs);
}

TEST(vault_values_expire_after_ttl)
{
	struct vault_store *vs = vault_store_new(5000, 0, fake_clock);
	char t[VAULT_TOKEN_MAX + 1], t2[VAULT_TOKEN_MAX + 1], got[64];
	fake_now = 100000;
	struct vault *v = vault_store_get(vs, "o", 1);
	vault_tokenize(v, FINDING_EMAIL, "a@x.io", 6, t);
	vault_tokenize(v, FINDING_PHONE, "+1 415 555 0100", 15, t2);
	fake_now += 4000;
	CHECK(lookup_str(v, t, got, sizeof(got)) == 1, "restorable before the ttl");   /* use renews a */
	fake_now += 2000;
	/* t2 unused for 6 s: gone even before a sweep */
	CHECK(lookup_str(v, t2, got, sizeof(got)) == 0, "expired value must not be restored");
	CHECK(lookup_str(v, t, got, sizeof(got)) == 1, "a value in use stays");
	fake_now += 5000;
	CHECK(vault_store_sweep(vs) == 1, "sweep wipes the expired value");
	CHECK(vault_count(v) == 0, "%zu values left", vault_count(v));
	CHECK(vault_store_owners(vs) == 1, "a vault in use stays listed");
	vault_free(v);
	fake_now += 5000;
	vault_store_sweep(vs);
	CHECK(vault_store_owners(vs) == 0, "an empty idle vault is dropped (%zu)", vault_store_owners(vs));
	vault_store_free(vs);
}

TEST(vault_outlives_its_store_empty)
{
	struct vault_store *vs = vault_store_new(0, 0, NULL);
	char t[VAULT_TOKEN_MAX + 1], got[64];
	struct vault *v = vault_store_get(vs, "o", 1);
	vault_tokenize(v, FINDING_EMAIL, "a@x.io", 6, t);
	vault_store_free(vs);   /* agent exit: values wiped now */
	CHECK(vault_count(v) == 0, "values must be wiped with the store");
	CHECK(lookup_str(v, t, got, sizeof(got)) == 0, "nothing restorable after exit");
	vault_free(v);          /* ASan: no leak, no use after free */
}

struct worker {
	struct vault_store *vs;
	int id;
	int bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char val[32], tok[VAULT_TOKEN_MAX + 1], got[64];
	for (int i = 0; i < 2000; i++) {
		struct vault *v = vault_store_get(w->vs, "shared", 6);
		int n = snprintf(val, sizeof(val), "u%d.%d@x.io", w->id, i % 50);
		if (!v || vault_tokenize(v, FINDING_EMAIL, val, (size_t)n, tok) ||
		    lookup_str(v, tok, got, sizeof(got)) != 1 || strcmp(got, val))
			w->bad++;
		vault_free(v);
		if (i % 100 == 0)
			vault_store_sweep(w->vs);
	}
	return NULL;
}

TEST(vault_threads_share_one_vault)
{
	struct vault_store *vs = vault_store_new(0, 0, NULL);
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ vs, i, 0 };
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	int bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		bad += w[i].bad;
	}
	CHECK(bad == 0, "%d round trips failed under concurrency", bad);
	struct vault *v = vault_store_get(vs, "shared", 6);
	CHECK(vault_count(v) == 200, "%zu distinct values", vault_count(v));
	vault_free(v);
	vault_store_free(vs);
}
