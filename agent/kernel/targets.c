/* targets: a small table of addresses with the domain that produced them and
 * when they were last seen. Sizes are modest (a few hundred addresses), so
 * linear scans under one mutex are simpler and fast enough; the hot path
 * (the connect hook) never touches this table, only the BPF map. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "log.h"
#include "kernel/targets.h"

#define MAX_ADDRS_PER_NAME 32

#define MAX_LEARNED 4096   /* addresses learned from DNS answers at once */

struct entry {
	struct sockaddr_storage addr;
	uint64_t last_seen;   /* 0 = static, never expires */
	bool applied;
	bool learned;         /* first seen in a client's DNS answer */
	bool api;             /* static, or seen for a name that is not a web app */
};

struct domain {
	char *name;
	uint64_t due;
};

struct targets {
	struct targets_opts o;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool running, stop;
	struct domain *domains;
	size_t n_domains;
	char **patterns;      /* every watched domain, wildcards included */
	size_t n_patterns;
	size_t n_learned;
	bool learn_full_warned;
	struct entry *entries;
	size_t n_entries, cap_entries;
};

static uint64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static uint16_t sa_port(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_port;
	if (a->sa_family == AF_INET6)
		return ((const struct sockaddr_in6 *)a)->sin6_port;
	return 0;
}

static void sa_set_port(struct sockaddr *a, uint16_t port_be)
{
	if (a->sa_family == AF_INET)
		((struct sockaddr_in *)a)->sin_port = port_be;
	else if (a->sa_family == AF_INET6)
		((struct sockaddr_in6 *)a)->sin6_port = port_be;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
	return false;
}

bool targets_same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	return same_addr(a, b);
}

struct targets *targets_new(const struct targets_opts *o)
{
	struct targets *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->o = *o;
	if (!t->o.resolve)
		t->o.resolve = targets_resolve_system;
	if (!t->o.min_ttl_s)
		t->o.min_ttl_s = 30;
	if (t->o.max_ttl_s < t->o.min_ttl_s)
		t->o.max_ttl_s = t->o.min_ttl_s;
	if (!t->o.grace_s)
		t->o.grace_s = 600;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	return t;
}

static void free_domains(struct targets *t)
{
	for (size_t i = 0; i < t->n_domains; i++)
		free(t->domains[i].name);
	free(t->domains);
	t->domains = NULL;
	t->n_domains = 0;
	for (size_t i = 0; i < t->n_patterns; i++)
		free(t->patterns[i]);
	free(t->patterns);
	t->patterns = NULL;
	t->n_patterns = 0;
}

void targets_free(struct targets *t)
{
	if (!t)
		return;
	if (t->running) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->thread, NULL);
	}
	free_domains(t);
	free(t->entries);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int targets_set_domains(struct targets *t, const char *const *domains, size_t n)
{
	struct domain *d = calloc(n ? n : 1, sizeof(*d));
	char **pat = calloc(n ? n : 1, sizeof(*pat));
	size_t k = 0, np = 0;
	if (!d || !pat)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		if (!(pat[np] = strdup(domains[i])))
			goto nomem;
		np++;
		if (domains[i][0] == '*' || t->o.match_only)
			continue; /* wildcards cannot be resolved up front */
		if (!(d[k].name = strdup(domains[i])))
			goto nomem;
		d[k++].due = 0;
	}
	pthread_mutex_lock(&t->lock);
	free_domains(t);
	t->domains = d;
	t->n_domains = k;
	t->patterns = pat;
	t->n_patterns = np;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->lock);
	return 0;
nomem:
	while (k)
		free(d[--k].name);
	while (np)
		free(pat[--np]);
	free(d);
	free(pat);
	return -ENOMEM;
}

/* True if addr (with its port, 0 = all ports) is in the table; caller
 * holds the lock. */
static bool targets_has(const struct targets *t, const struct sockaddr *addr)
{
	for (size_t i = 0; i < t->n_entries; i++)
		if (same_addr((const struct sockaddr *)&t->entries[i].addr, addr) &&
		    sa_port((const struct sockaddr *)&t->entries[i].addr) == sa_port(addr))
			return true;
	return false;
}

/* Exact (case-insensitive) or "*.suffix" matching one or more labels, as
 * the SNI decision does (config_host_watched); caller holds the lock. */
static bool watched(const struct targets *t, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < t->n_patterns; i++) {
		const char *p = t->patterns[i];
		if (p[0] == '*' && p[1] == '.') {
			size_t sl = strlen(p + 1);
			if (nl > sl && !strcasecmp(name + nl - sl, p + 1))
				return true;
		} else if (!strcasecmp(p, name)) {
			return true;
		}
	}
	return false;
}

/* Adds or refreshes addr. Its port (network order) is part of the key:
 * 0 stands for every configured target port (resolved, static and
 * DNS-learned addresses), another value for that port only (addresses the
 * first-flight guard saw a watched name go to); caller holds the lock. */
static int upsert(struct targets *t, const struct sockaddr *addr, uint64_t seen, bool api)
{
	for (size_t i = 0; i < t->n_entries; i++) {
		struct entry *e = &t->entries[i];
		if (same_addr((struct sockaddr *)&e->addr, addr) && sa_port((struct sockaddr *)&e->addr) == sa_port(addr)) {
			e->api |= api;
			if (e->last_seen && seen > e->last_seen)
				e->last_seen = seen;
			if (!seen)
				e->last_seen = 0;
			return 0;
		}
	}
	if (t->n_entries == t->cap_entries) {
		size_t cap = t->cap_entries ? t->cap_entries * 2 : 64;
		struct entry *ne = realloc(t->entries, cap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		t->entries = ne;
		t->cap_entries = cap;
	}
	struct entry *e = &t->entries[t->n_entries++];
	memset(e, 0, sizeof(*e));
	memcpy(&e->addr, addr, addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
							   sizeof(struct sockaddr_in6));
	e->last_seen = seen;
	e->api = api;
	return 1;
}

static bool api_name(const struct targets *t, const char *name)
{
	return !t->o.is_app || !t->o.is_app(name);
}

bool targets_app_only(struct targets *t, const struct sockaddr *addr)
{
	bool seen = false, api = false;
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_entries; i++)
		if (same_addr((const struct sockaddr *)&t->entries[i].addr, addr)) {
			seen = true;
			api |= t->entries[i].api;
		}
	pthread_mutex_unlock(&t->lock);
	return seen && !api;
}

/* Pushes pending adds and expired removals to the callback; caller holds the lock. */
static void apply_changes(struct targets *t, uint64_t now)
{
	for (size_t i = 0; i < t->n_entries;) {
		struct entry *e = &t->entries[i];
		if (e->last_seen && now > e->last_seen + t->o.grace_s) {
			if (e->applied && t->o.apply)
				t->o.apply(t->o.arg, (struct sockaddr *)&e->addr, false);
			if (e->learned)
				t->n_learned--;
			*e = t->entries[--t->n_entries];
			continue;
		}
		if (!e->applied && t->o.apply) {
			int ret = t->o.apply(t->o.arg, (struct sockaddr *)&e->addr, true);
			if (ret)
				log_warn("cannot add a target address: %s", strerror(-ret));
			else
				e->applied = true;
		}
		i++;
	}
}

int targets_add_static(struct targets *t, const struct sockaddr *addr)
{
	struct sockaddr_storage a;
	int ret;
	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	memcpy(&a, addr, addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	sa_set_port((struct sockaddr *)&a, 0);
	pthread_mutex_lock(&t->lock);
	ret = upsert(t, (struct sockaddr *)&a, 0, true);
	if (ret >= 0)
		apply_changes(t, mono_s());
	pthread_mutex_unlock(&t->lock);
	return ret < 0 ? ret : 0;
}

static int learn(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s, uint64_t now);

int targets_learn(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s,
		  uint64_t now)
{
	struct sockaddr_storage a;

	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	/* A DNS answer names an address, not a port: every target port. */
	memcpy(&a, addr, addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	sa_set_port((struct sockaddr *)&a, 0);
	return learn(t, name, (struct sockaddr *)&a, ttl_s, now);
}

int targets_learn_endpoint(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s,
			   uint64_t now)
{
	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	if (!sa_port(addr))
		return -EINVAL;
	return learn(t, name, addr, ttl_s, now);
}

/* Shared by both: the cap on learned entries bounds what a flood of forged
 * DNS answers or of refused connections can put in the kernel map. */
static int learn(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s, uint64_t now)
{
	int ret = 0;

	if (ttl_s > t->o.max_ttl_s)
		ttl_s = t->o.max_ttl_s;
	pthread_mutex_lock(&t->lock);
	if (!watched(t, name))
		goto out;
	if (!targets_has(t, addr) && t->n_learned >= MAX_LEARNED) {
		if (!t->learn_full_warned)
			log_warn("targets: %d addresses learned from DNS answers, ignoring more until some expire",
				 MAX_LEARNED);
		t->learn_full_warned = true;
		ret = -ENOSPC;
		goto out;
	}
	/* The client may use the answer for its TTL; the grace period runs
	 * from the end of it. */
	ret = upsert(t, addr, now + ttl_s, api_name(t, name));
	if (ret == 1) {
		t->entries[t->n_entries - 1].learned = true;
		t->n_learned++;
		t->learn_full_warned = false;
	}
	if (ret >= 0)
		apply_changes(t, now);
out:
	pthread_mutex_unlock(&t->lock);
	return ret;
}

uint64_t targets_refresh(struct targets *t, uint64_t now)
{
	uint64_t next = now + t->o.max_ttl_s;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n_domains; i++) {
		struct sockaddr_storage addrs[MAX_ADDRS_PER_NAME];
		uint32_t ttl = 0;
		char *name;
		int n;

		if (t->domains[i].due > now) {
			if (t->domains[i].due < next)
				next = t->domains[i].due;
			continue;
		}
		/* Resolve without the lock: DNS can take seconds. The domain list
		 * may be replaced meanwhile; then this answer is simply dropped. */
		name = strdup(t->domains[i].name);
		struct domain *gen = t->domains;
		pthread_mutex_unlock(&t->lock);
		n = name ? t->o.resolve(name, addrs, MAX_ADDRS_PER_NAME, &ttl) : -ENOMEM;
		pthread_mutex_lock(&t->lock);
		if (gen != t->domains || i >= t->n_domains) {
			free(name);
			break;
		}
		if (n < 0)
			log_debug("cannot resolve %s: %s", name, n < -1000 || n > 0 ? strerror(-n) : gai_strerror(n));
		for (int k = 0; k < n; k++) {
			sa_set_port((struct sockaddr *)&addrs[k], 0);
			upsert(t, (struct sockaddr *)&addrs[k], now, api_name(t, name));
		}
		if (ttl < t->o.min_ttl_s)
			ttl = t->o.min_ttl_s;
		if (ttl > t->o.max_ttl_s)
			ttl = t->o.max_ttl_s;
		/* An unresolvable name is retried at the minimum TTL. */
		t->domains[i].due = now + (n > 0 ? ttl : t->o.min_ttl_s);
		if (t->domains[i].due < next)
			next = t->domains[i].due;
		free(name);
	}
	apply_changes(t, now);
	pthread_mutex_unlock(&t->lock);
	return next;
}

static void *resolver_main(void *arg)
{
	struct targets *t = arg;
	for (;;) {
		uint64_t next = targets_refresh(t, mono_s());
		struct timespec ts;
		pthread_mutex_lock(&t->lock);
		if (t->stop) {
			pthread_mutex_unlock(&t->lock);
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec;
		ts.tv_sec += (time_t)(next > now ? next - now : 1);
		pthread_cond_timedwait(&t->wake, &t->lock, &ts);
		bool stop = t->stop;
		pthread_mutex_unlock(&t->lock);
		if (stop)
			break;
	}
	return NULL;
}

int targets_start(struct targets *t)
{
	pthread_condattr_t ca;
	int ret;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&t->wake);
	pthread_cond_init(&t->wake, &ca);
	pthread_condattr_destroy(&ca);
	ret = pthread_create(&t->thread, NULL, resolver_main, t);
	if (ret)
		return -ret;
	t->running = true;
	return 0;
}

size_t targets_count(struct targets *t)
{
	size_t n;
	pthread_mutex_lock(&t->lock);
	n = t->n_entries;
	pthread_mutex_unlock(&t->lock);
	return n;
}

bool targets_contains(struct targets *t, const struct sockaddr *addr)
{
	bool found;
	pthread_mutex_lock(&t->lock);
	found = targets_has(t, addr);
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* The smallest TTL of the A/AAAA records DNS returns for name, or 0. */
static uint32_t dns_ttl(const char *name, int type)
{
	unsigned char ans[4096];
	struct __res_state rs;
	ns_msg msg;
	ns_rr rr;
	uint32_t ttl = 0;
	int len;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) != 0)
		return 0;
	rs.retrans = 2;
	rs.retry = 1;
	len = res_nquery(&rs, name, ns_c_in, type, ans, sizeof(ans));
	if (len > 0 && ns_initparse(ans, len, &msg) == 0) {
		for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
			if (ns_parserr(&msg, ns_s_an, i, &rr) != 0)
				break;
			if ((int)ns_rr_type(rr) == type && (!ttl || ns_rr_ttl(rr) < ttl))
				ttl = ns_rr_ttl(rr);
		}
	}
	res_nclose(&rs);
	return ttl;
}

int targets_resolve_system(const char *name, struct sockaddr_storage *addrs, int max,
			   uint32_t *ttl_s)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res, *ai;
	int n = 0, ret;

	*ttl_s = 0;
	ret = getaddrinfo(name, NULL, &hints, &res);
	if (ret)
		return ret > 0 ? -ret : ret; /* EAI_* codes are negative already */
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		bool dup = false;
		for (int k = 0; k < n && !dup; k++)
			dup = same_addr((struct sockaddr *)&addrs[k], ai->ai_addr);
		if (!dup)
			memcpy(&addrs[n++], ai->ai_addr, ai->ai_addrlen);
	}
	freeaddrinfo(res);
	*ttl_s = dns_ttl(name, ns_t_a);
	return n;
}
