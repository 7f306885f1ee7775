/* rejca: see rejca.h. A rejection is rare (a client that does not trust
 * the CA, a pinned app) and a lookup happens only when the mode is
 * passthrough, so a small array scanned under a mutex is enough; the
 * count lets the common case (nothing rejected) skip the scan and the
 * lock's cache line stays quiet. Never grows past cap: a client that
 * makes up host names cannot make the agent allocate. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/rejca.h"

struct rejca_entry {
	char exe[512];
	char sni[256];
	uint64_t at_ms;            /* last rejection */
};

struct rejca {
	pthread_mutex_t lock;
	atomic_size_t n;
	size_t cap;
	struct rejca_entry e[];
};

struct rejca *rejca_new(size_t cap)
{
	struct rejca *t = calloc(1, sizeof(*t) + cap * sizeof(t->e[0]));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->cap = cap;
	return t;
}

void rejca_free(struct rejca *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct rejca_entry *find(struct rejca *t, const char *exe, const char *sni)
{
	size_t n = atomic_load(&t->n);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(t->e[i].sni, sni) && !strcmp(t->e[i].exe, exe))
			return &t->e[i];
	return NULL;
}

void rejca_note(struct rejca *t, const char *exe, const char *sni, uint64_t now_ms)
{
	struct rejca_entry *e;
	size_t n;

	if (!t || !t->cap || !exe[0] || !sni[0] || strlen(exe) >= sizeof(e->exe) ||
	    strlen(sni) >= sizeof(e->sni))
		return;
	pthread_mutex_lock(&t->lock);
	e = find(t, exe, sni);
	n = atomic_load(&t->n);
	if (!e && n < t->cap) {
		e = &t->e[n];
		atomic_store(&t->n, n + 1);
	} else if (!e) {
		e = &t->e[0];             /* full: the oldest rejection goes */
		for (size_t i = 1; i < n; i++)
			if (t->e[i].at_ms < e->at_ms)
				e = &t->e[i];
	}
	snprintf(e->exe, sizeof(e->exe), "%s", exe);
	snprintf(e->sni, sizeof(e->sni), "%s", sni);
	e->at_ms = now_ms;
	pthread_mutex_unlock(&t->lock);
}

bool rejca_last(struct rejca *t, const char *exe, const char *sni, uint64_t *at_ms)
{
	struct rejca_entry *e;

	if (!t || !atomic_load(&t->n) || !exe[0])
		return false;
	pthread_mutex_lock(&t->lock);
	if ((e = find(t, exe, sni)))
		*at_ms = e->at_ms;
	pthread_mutex_unlock(&t->lock);
	return e != NULL;
}
