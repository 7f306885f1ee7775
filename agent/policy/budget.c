/* budget: counters for the policy's budgets (see budget.h for windows and
 * persistence). A small chained hash table keyed by "budget\x1fkey"; each
 * entry remembers its window start and length so an expired window resets
 * on first use and is dropped at save.
 *
 * State file (mode 0600): a header line "vigil-budgets 1", then one line
 * per counter: start<TAB>window_s<TAB>used<TAB>budget<TAB>key, with '%',
 * TAB, CR and LF in names percent-encoded. Must never: write it in place
 * or keep a counter across a window boundary. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/budget.h"
#include "pricing.h"

#define NBUCKETS 1024
#define KEY_MAX 600

struct entry {
	struct entry *next;
	int64_t start;
	uint32_t window_s;
	uint64_t used;
	char key[];          /* budget \x1f key */
};

struct budget_store {
	pthread_mutex_t lock;
	char *path;
	bool dirty;
	struct entry *b[NBUCKETS];
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int64_t budget_window_start(int64_t now, uint32_t w, bool utc)
{
	int64_t off = 0;

	if (w == 0)
		return now;
	if (w >= 86400 && !utc) {
		time_t t = (time_t)now;
		struct tm tm;
		localtime_r(&t, &tm);
		off = tm.tm_gmtoff;
	}
	int64_t x = now + off;
	int64_t q = x / w;
	if (x < 0 && x % w)
		q--;
	return q * w - off;
}

static struct entry *lookup(struct budget_store *s, const char *k, bool create)
{
	uint64_t h = hash(k) % NBUCKETS;
	struct entry *e;
	size_t n;

	for (e = s->b[h]; e; e = e->next)
		if (!strcmp(e->key, k))
			return e;
	if (!create)
		return NULL;
	n = strlen(k);
	if (!(e = calloc(1, sizeof(*e) + n + 1)))
		return NULL;
	memcpy(e->key, k, n + 1);
	e->next = s->b[h];
	s->b[h] = e;
	return e;
}

static void make_key(char *out, size_t n, const char *budget, const char *key)
{
	snprintf(out, n, "%s\x1f%s", budget, key);
}

/* The entry for (budget, key), reset if its window is not the current one. */
static struct entry *current(struct budget_store *s, const char *budget, const char *key,
			     uint32_t w, bool utc, int64_t now, bool create)
{
	char k[KEY_MAX];
	struct entry *e;
	int64_t start = budget_window_start(now, w, utc);

	make_key(k, sizeof(k), budget, key);
	if (!(e = lookup(s, k, create)))
		return NULL;
	if (e->start != start || e->window_s != w) {
		e->start = start;
		e->window_s = w;
		e->used = 0;
	}
	return e;
}

static const char *per_name(enum policy_budget_per p)
{
	switch (p) {
	case BUDGET_PER_USER: return "user";
	case BUDGET_PER_GROUP: return "group";
	case BUDGET_PER_EXE: return "executable";
	case BUDGET_PER_ALL: return "workstation";
	}
	return "?";
}

static const char *window_name(uint32_t w)
{
	return w == 60 ? "minute" : w == 3600 ? "hour" : w == 86400 ? "day" : "window";
}

int budget_check(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
		 int64_t now, struct budget_verdict *v)
{
	size_t n = policy_budget_count(p);
	struct entry *hit[64];
	size_t nhit = 0;
	bool utc = policy_utc(p), gmon = policy_global_monitor(p);
	int ret = 0;

	memset(v, 0, sizeof(*v));
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		const struct policy_budget *b = policy_budget_get(p, i);
		char key[512];
		struct entry *e;
		bool over;

		if (!policy_budget_applies(p, i, ctx, key, sizeof(key)))
			continue;
		e = current(s, b->name, key, b->window_s, utc, now, b->kind == BUDGET_REQUESTS);
		if (!e && b->kind == BUDGET_REQUESTS)
			continue;    /* ENOMEM: fail open on counting, never on policy */
		over = e && (b->kind != BUDGET_REQUESTS ? e->used >= b->limit : e->used + 1 > b->limit);
		if (over && (!v->exhausted || (v->monitor && !(b->monitor || gmon)))) {
			v->exhausted = true;
			v->monitor = b->monitor || gmon;
			v->budget = b->name;
			v->limit = b->limit;
			v->used = e->used;
			v->retry_after = e->start + b->window_s - now;
			if (b->kind == BUDGET_COST)
				snprintf(v->message, sizeof(v->message), "cost budget '%s' exhausted: %.2f %s per %s per %s%s",
					 b->name, (double)b->limit / 1e6, policy_pricing(p)->currency[0] ?
					 policy_pricing(p)->currency : "USD", per_name(b->per), window_name(b->window_s),
					 v->monitor ? " (monitor mode)" : "");
			else
				snprintf(v->message, sizeof(v->message),
					 "%s budget '%s' exhausted: %" PRIu64 " %s per %s per %s%s",
					 b->kind == BUDGET_TOKENS ? "token" : "request", b->name, b->limit,
					 b->kind == BUDGET_TOKENS ? "tokens" : "requests", per_name(b->per),
					 window_name(b->window_s), v->monitor ? " (monitor mode)" : "");
		}
		if (b->kind == BUDGET_REQUESTS && nhit < 64)
			hit[nhit++] = e;
	}
	if (v->exhausted && !v->monitor) {
		v->status = 429;
		ret = 1;
	} else {
		for (size_t i = 0; i < nhit; i++)
			hit[i]->used++;
		if (nhit)
			s->dirty = true;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Adds amount to every budget of that kind that applies to ctx. */
static void charge(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
		   enum policy_budget_kind kind, uint64_t amount, int64_t now)
{
	size_t n = policy_budget_count(p);
	bool utc = policy_utc(p);

	if (!amount)
		return;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		const struct policy_budget *b = policy_budget_get(p, i);
		char key[512];
		struct entry *e;

		if (b->kind != kind || !policy_budget_applies(p, i, ctx, key, sizeof(key)))
			continue;
		if ((e = current(s, b->name, key, b->window_s, utc, now, true))) {
			e->used = e->used + amount < e->used ? UINT64_MAX : e->used + amount;
			s->dirty = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

void budget_charge(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
		   uint64_t tokens, int64_t now)
{
	charge(s, p, ctx, BUDGET_TOKENS, tokens, now);
}

void budget_charge_cost(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
			uint64_t micro, int64_t now)
{
	charge(s, p, ctx, BUDGET_COST, micro, now);
}

uint64_t budget_used(struct budget_store *s, const char *name, const char *key, uint32_t w,
		     bool utc, int64_t now)
{
	char k[KEY_MAX];
	struct entry *e;
	uint64_t used = 0;

	make_key(k, sizeof(k), name, key);
	pthread_mutex_lock(&s->lock);
	e = lookup(s, k, false);
	if (e && e->window_s == w && e->start == budget_window_start(now, w, utc))
		used = e->used;
	pthread_mutex_unlock(&s->lock);
	return used;
}

bool budget_dirty(struct budget_store *s)
{
	bool d;

	pthread_mutex_lock(&s->lock);
	d = s->dirty;
	pthread_mutex_unlock(&s->lock);
	return d;
}

/* ---------------------------------------------------------- persistence */

static void put_escaped(FILE *f, const char *s, const char *end)
{
	for (; s < end; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '%' || c == '\t' || c == '\n' || c == '\r' || c == 0x1f)
			fprintf(f, "%%%02X", c);
		else
			fputc(c, f);
	}
}

static int unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '%') {
			unsigned v;
			if (sscanf(s + 1, "%2X", &v) != 1 || !s[1] || !s[2])
				return -1;
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
	return 0;
}

int budget_save(struct budget_store *s, int64_t now)
{
	char tmp[4200], *dir = NULL;
	FILE *f = NULL;
	int fd = -1, ret = 0, dfd;

	if (!s->path)
		return 0;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", s->path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&s->lock);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		ret = -errno;
		goto err;
	}
	if (!(f = fdopen(fd, "w"))) {
		ret = -errno;
		close(fd);
		goto err;
	}
	fprintf(f, "vigil-budgets 1\n");
	for (size_t i = 0; i < NBUCKETS; i++)
		for (struct entry *e = s->b[i]; e; e = e->next) {
			char *sep = strchr(e->key, '\x1f');
			if (!sep || !e->used || e->start + e->window_s <= now)
				continue;
			fprintf(f, "%" PRId64 "\t%" PRIu32 "\t%" PRIu64 "\t", e->start, e->window_s, e->used);
			put_escaped(f, e->key, sep);
			fputc('\t', f);
			put_escaped(f, sep + 1, sep + strlen(sep));
			fputc('\n', f);
		}
	if (fflush(f) || fsync(fileno(f))) {
		ret = -errno;
		fclose(f);
		unlink(tmp);
		goto err;
	}
	if (fclose(f)) {
		ret = -errno;
		unlink(tmp);
		goto err;
	}
	if (rename(tmp, s->path)) {
		ret = -errno;
		unlink(tmp);
		goto err;
	}
	/* the rename itself must survive a crash */
	if ((dir = strdup(s->path)) && (dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dir);
	s->dirty = false;
err:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int load_state(struct budget_store *s)
{
	FILE *f = fopen(s->path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool first = true;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while ((n = getline(&line, &cap, f)) > 0) {
		char *fld[5], *save = NULL, *p = line;
		char k[KEY_MAX];
		long long start;
		unsigned long w;
		unsigned long long used;
		struct entry *e;
		int i;

		if (line[n - 1] == '\n')
			line[n - 1] = 0;
		if (first) {
			first = false;
			if (strcmp(line, "vigil-budgets 1"))
				break;    /* unknown format: start empty rather than misread */
			continue;
		}
		for (i = 0; i < 5 && (fld[i] = strtok_r(p, "\t", &save)); i++)
			p = NULL;
		if (i != 5 || sscanf(fld[0], "%lld", &start) != 1 || sscanf(fld[1], "%lu", &w) != 1 ||
		    sscanf(fld[2], "%llu", &used) != 1 || unescape(fld[3]) || unescape(fld[4]) ||
		    (w != 60 && w != 3600 && w != 86400))
			continue;
		make_key(k, sizeof(k), fld[3], fld[4]);
		if (!(e = lookup(s, k, true))) {
			free(line);
			fclose(f);
			return -ENOMEM;
		}
		e->start = start;
		e->window_s = (uint32_t)w;
		e->used = used;
	}
	free(line);
	fclose(f);
	return 0;
}

int budget_store_open(const char *state_path, struct budget_store **out)
{
	struct budget_store *s = calloc(1, sizeof(*s));
	int ret;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	if (state_path) {
		if (!(s->path = strdup(state_path))) {
			ret = -ENOMEM;
			goto err;
		}
		if ((ret = load_state(s)))
			goto err;
	}
	*out = s;
	return 0;
err:
	budget_store_free(s);
	return ret;
}

void budget_store_free(struct budget_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < NBUCKETS; i++)
		while (s->b[i]) {
			struct entry *e = s->b[i];
			s->b[i] = e->next;
			free(e);
		}
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}
