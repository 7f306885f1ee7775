/* targets: the domain list becomes an address set that follows DNS:
 * new answers are added, addresses no longer returned leave after the grace
 * period, static addresses never leave, and wildcards are not resolved. */
#include <arpa/inet.h>
#include <strings.h>
#include "check.h"
#include "kernel/targets.h"

static int applied_adds, applied_dels;
static char answer[4][64];   /* what the fake resolver returns for api.test.com */
static int resolve_calls;
static char last_resolved[256];

static int fake_apply(void *arg, const struct sockaddr *addr, bool add)
{
	(void)arg, (void)addr;
	if (add)
		applied_adds++;
	else
		applied_dels++;
	return 0;
}

static int fake_resolve(const char *name, struct sockaddr_storage *addrs, int max, uint32_t *ttl)
{
	int n = 0;
	resolve_calls++;
	snprintf(last_resolved, sizeof(last_resolved), "%s", name);
	*ttl = 60;
	if (strcmp(name, "api.test.com"))
		return -2;
	for (int i = 0; i < 4 && n < max; i++) {
		if (!answer[i][0])
			continue;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&addrs[n];
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs[n];
		memset(&addrs[n], 0, sizeof(addrs[n]));
		if (inet_pton(AF_INET, answer[i], &s4->sin_addr) == 1)
			s4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, answer[i], &s6->sin6_addr) == 1)
			s6->sin6_family = AF_INET6;
		n++;
	}
	return n;
}

static struct sockaddr_storage addr_of(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, s, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	return ss;
}

TEST(follows_dns_with_ttl_and_grace)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve,
				  .min_ttl_s = 30, .max_ttl_s = 300, .grace_s = 100 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "api.test.com", "*.wild.test.com" };
	applied_adds = applied_dels = resolve_calls = 0;
	strcpy(answer[0], "10.0.0.1");
	strcpy(answer[1], "2001:db8::1");
	answer[2][0] = answer[3][0] = 0;

	CHECK(targets_set_domains(t, domains, 2) == 0, "set_domains");
	uint64_t next = targets_refresh(t, 1000);
	CHECK(resolve_calls == 1, "wildcard must not be resolved (calls %d, last %s)", resolve_calls, last_resolved);
	CHECK(next == 1060, "next refresh at the TTL: %llu", (unsigned long long)next);
	CHECK(targets_count(t) == 2 && applied_adds == 2, "v4 and v6 added (%zu, %d)", targets_count(t), applied_adds);
	struct sockaddr_storage a = addr_of("2001:db8::1");
	CHECK(targets_contains(t, (struct sockaddr *)&a), "IPv6 answer in the set");

	/* Not due yet: no query. */
	targets_refresh(t, 1030);
	CHECK(resolve_calls == 1, "resolved before the TTL ran out");

	/* DNS moves to a new address: added at once, the old one kept for grace. */
	strcpy(answer[0], "10.0.0.2");
	answer[1][0] = 0;
	targets_refresh(t, 1060);
	CHECK(targets_count(t) == 3, "new address added, old kept during grace (%zu)", targets_count(t));
	CHECK(applied_dels == 0, "removed too early");
	targets_refresh(t, 1060 + 60 + 101);
	a = addr_of("10.0.0.1");
	CHECK(!targets_contains(t, (struct sockaddr *)&a), "stale address still present after grace");
	CHECK(applied_dels == 2, "stale v4 and v6 removed (%d)", applied_dels);
	a = addr_of("10.0.0.2");
	CHECK(targets_contains(t, (struct sockaddr *)&a), "current address lost");
	targets_free(t);
}

TEST(static_addresses_never_expire)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve, .grace_s = 1 };
	struct targets *t = targets_new(&o);
	struct sockaddr_storage a = addr_of("127.0.0.2");
	applied_adds = applied_dels = 0;
	CHECK(targets_add_static(t, (struct sockaddr *)&a) == 0, "add_static");
	CHECK(applied_adds == 1, "static address applied at once");
	targets_refresh(t, 1000000);
	CHECK(targets_contains(t, (struct sockaddr *)&a) && applied_dels == 0, "static address expired");
	CHECK(targets_add_static(t, (struct sockaddr *)&a) == 0 && targets_count(t) == 1, "duplicate static added twice");
	targets_free(t);
}

TEST(unresolvable_retried_at_min_ttl)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve, .min_ttl_s = 30, .max_ttl_s = 300 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "nx.test.com" };
	targets_set_domains(t, domains, 1);
	uint64_t next = targets_refresh(t, 500);
	CHECK(next == 530, "retry time %llu", (unsigned long long)next);
	CHECK(targets_count(t) == 0, "no address for an unresolvable name");
	targets_free(t);
}

TEST(system_resolver_reads_hosts_file)
{
	struct sockaddr_storage addrs[8];
	uint32_t ttl;
	int n = targets_resolve_system("localhost", addrs, 8, &ttl);
	CHECK(n >= 1, "localhost not resolved (%d)", n);
}

TEST(learns_watched_names_from_dns_answers)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve,
				  .min_ttl_s = 30, .max_ttl_s = 300, .grace_s = 100 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "api.test.com", "*.wild.test.com" };
	struct sockaddr_storage a = addr_of("10.9.0.1"), b = addr_of("2001:db8::9"), c = addr_of("10.9.0.3");
	applied_adds = applied_dels = 0;
	targets_set_domains(t, domains, 2);

	CHECK(targets_learn(t, "API.test.com", (struct sockaddr *)&a, 60, 1000) == 1, "exact name (any case) not learned");
	CHECK(targets_learn(t, "x.y.wild.test.com", (struct sockaddr *)&b, 60, 1000) == 1, "wildcard name not learned");
	CHECK(applied_adds == 2, "learned addresses not applied to the map at once (%d)", applied_adds);
	CHECK(targets_learn(t, "wild.test.com", (struct sockaddr *)&c, 60, 1000) == 0, "*.wild.test.com matched its apex");
	CHECK(targets_learn(t, "evilapi.test.com", (struct sockaddr *)&c, 60, 1000) == 0, "unwatched name learned");
	CHECK(targets_learn(t, "api.test.com.evil", (struct sockaddr *)&c, 60, 1000) == 0, "suffixed name learned");
	CHECK(!targets_contains(t, (struct sockaddr *)&c), "an unwatched name's address joined the set");
	CHECK(targets_learn(t, "api.test.com", (struct sockaddr *)&a, 60, 1000) == 0, "known address counted as new");

	/* Kept for the answer's TTL plus the grace period, then dropped. */
	targets_refresh(t, 1000 + 60 + 100);
	CHECK(targets_contains(t, (struct sockaddr *)&a), "learned address dropped before TTL + grace");
	targets_refresh(t, 1000 + 60 + 101);
	CHECK(!targets_contains(t, (struct sockaddr *)&a) && !targets_contains(t, (struct sockaddr *)&b),
	      "learned addresses kept after TTL + grace");
	CHECK(applied_dels == 2, "expired learned addresses not removed from the map (%d)", applied_dels);

	/* A forged TTL cannot pin an address for days. */
	targets_learn(t, "api.test.com", (struct sockaddr *)&a, 86400 * 30, 2000);
	targets_refresh(t, 2000 + 300 + 101);
	CHECK(!targets_contains(t, (struct sockaddr *)&a), "TTL not capped at max_ttl");
	targets_free(t);
}

static uint16_t last_port;

static int port_apply(void *arg, const struct sockaddr *addr, bool add)
{
	(void)arg;
	if (add)
		last_port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	return fake_apply(arg, addr, add);
}

/* The first-flight guard caught a watched name sent to an address:port the
 * agent did not capture: that pair (and only that port) joins the set,
 * with the learned-address TTL, apart from the same address on all ports. */
TEST(guard_learns_one_address_port)
{
	struct targets_opts o = { .apply = port_apply, .resolve = fake_resolve,
				  .min_ttl_s = 30, .max_ttl_s = 300, .grace_s = 100 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "api.test.com" };
	struct sockaddr_storage a = addr_of("10.9.1.1"), any = addr_of("10.9.1.1");
	targets_set_domains(t, domains, 1);
	((struct sockaddr_in *)&a)->sin_port = htons(8443);

	CHECK(targets_learn_endpoint(t, "unwatched.test", (struct sockaddr *)&a, 60, 1000) == 0,
	      "an unwatched name's address:port joined the set");
	CHECK(targets_learn_endpoint(t, "api.test.com", (struct sockaddr *)&any, 60, 1000) == -EINVAL,
	      "an endpoint without a port was accepted");
	CHECK(targets_learn_endpoint(t, "api.test.com", (struct sockaddr *)&a, 60, 1000) == 1, "endpoint not learned");
	CHECK(last_port == 8443, "applied for port %u, not the one the guard saw", last_port);
	CHECK(targets_contains(t, (struct sockaddr *)&a), "address:port not in the set");
	CHECK(!targets_contains(t, (struct sockaddr *)&any), "the guard's port widened to every target port");
	CHECK(targets_learn(t, "api.test.com", (struct sockaddr *)&any, 60, 1000) == 1,
	      "the same address from DNS (all ports) is a separate entry");
	CHECK(targets_learn_endpoint(t, "api.test.com", (struct sockaddr *)&a, 60, 1000) == 0,
	      "a known endpoint counted as new");
	targets_refresh(t, 1000 + 60 + 101);
	CHECK(!targets_contains(t, (struct sockaddr *)&a), "a guard-learned endpoint outlived its TTL + grace");
	targets_free(t);
}

/* The learned proxies' set (proxyconn): its names are matched, never
 * resolved (their addresses are the providers', not proxies), and its
 * entries expire like any learned endpoint. */
TEST(match_only_learns_without_resolving)
{
	struct targets_opts o = { .apply = port_apply, .resolve = fake_resolve, .match_only = true,
				  .min_ttl_s = 30, .max_ttl_s = 300, .grace_s = 100 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "api.test.com", "*.wild.test" };
	struct sockaddr_storage a = addr_of("10.9.2.1");
	int calls = resolve_calls;

	strcpy(answer[0], "10.1.1.1");
	targets_set_domains(t, domains, 2);
	((struct sockaddr_in *)&a)->sin_port = htons(3128);
	targets_refresh(t, 1000);
	CHECK(resolve_calls == calls && targets_count(t) == 0, "a match-only set resolved its names (%d calls, %zu entries)",
	      resolve_calls - calls, targets_count(t));
	CHECK(targets_learn_endpoint(t, "other.test", (struct sockaddr *)&a, 60, 1000) == 0, "an unwatched name learned");
	CHECK(targets_learn_endpoint(t, "x.wild.test", (struct sockaddr *)&a, 60, 1000) == 1, "a watched name not learned");
	CHECK(last_port == 3128 && targets_contains(t, (struct sockaddr *)&a), "address:port not in the set");
	targets_refresh(t, 1000 + 60 + 101);
	CHECK(!targets_contains(t, (struct sockaddr *)&a), "a learned entry outlived its TTL + grace");
	answer[0][0] = 0;
	targets_free(t);
}

TEST(learned_addresses_are_capped)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "*.flood.test" };
	int added = 0, refused = 0;
	targets_set_domains(t, domains, 1);
	for (int i = 0; i < 5000; i++) {
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)i) };
		int r = targets_learn(t, "a.flood.test", (struct sockaddr *)&s4, 60, 10);
		added += r == 1;
		refused += r == -ENOSPC;
	}
	CHECK(added == 4096 && refused == 5000 - 4096, "cap not enforced: %d added, %d refused", added, refused);
	/* A static address is still accepted at the cap. */
	struct sockaddr_storage s = addr_of("192.0.2.1");
	CHECK(targets_add_static(t, (struct sockaddr *)&s) == 0 && targets_contains(t, (struct sockaddr *)&s),
	      "static address refused when the learned set is full");
	targets_free(t);
}

static bool app_name(const char *name)
{
	return !strcasecmp(name, "chat.test.com");
}

/* An address only a chat web app's name brought in is told apart: another
 * name there is a site the browser visits on the app's CDN. An API name
 * (resolved or learned), the guard for an API name, or a static address
 * makes it an API address for as long as it stays. */
TEST(app_only_addresses_are_told_apart)
{
	struct targets_opts o = { .apply = fake_apply, .resolve = fake_resolve, .is_app = app_name,
				  .min_ttl_s = 30, .max_ttl_s = 300, .grace_s = 100 };
	struct targets *t = targets_new(&o);
	const char *domains[] = { "api.test.com", "chat.test.com" };
	struct sockaddr_storage a = addr_of("10.9.1.1"), b = addr_of("10.9.1.2"), s = addr_of("10.9.1.3"),
				g = addr_of("10.9.1.4"), n = addr_of("10.9.1.9");
	targets_set_domains(t, domains, 2);
	CHECK(targets_learn(t, "CHAT.test.com", (struct sockaddr *)&a, 60, 1000) == 1, "app name not learned");
	CHECK(targets_app_only(t, (struct sockaddr *)&a), "an app's address is not app-only");
	CHECK(!targets_app_only(t, (struct sockaddr *)&n), "an address outside the set is app-only");
	CHECK(targets_learn(t, "chat.test.com", (struct sockaddr *)&b, 60, 1000) == 1 &&
	      targets_learn(t, "api.test.com", (struct sockaddr *)&b, 60, 1000) == 0, "learn b");
	CHECK(!targets_app_only(t, (struct sockaddr *)&b), "an address an API also uses is app-only");
	CHECK(targets_add_static(t, (struct sockaddr *)&s) == 0 && !targets_app_only(t, (struct sockaddr *)&s),
	      "a static address is app-only");
	/* the guard's address:port for the app; then an API name on another port of it */
	((struct sockaddr_in *)&g)->sin_port = htons(443);
	CHECK(targets_learn_endpoint(t, "chat.test.com", (struct sockaddr *)&g, 60, 1000) == 1 &&
	      targets_app_only(t, (struct sockaddr *)&g), "guard entry for the app");
	((struct sockaddr_in *)&g)->sin_port = htons(8443);
	CHECK(targets_learn_endpoint(t, "api.test.com", (struct sockaddr *)&g, 60, 1000) == 1 &&
	      !targets_app_only(t, (struct sockaddr *)&g), "an API on another port of the address");
	targets_free(t);
	/* without is_app every address is an API address, as before */
	o.is_app = NULL;
	t = targets_new(&o);
	targets_set_domains(t, domains, 2);
	CHECK(targets_learn(t, "chat.test.com", (struct sockaddr *)&a, 60, 1000) == 1 &&
	      !targets_app_only(t, (struct sockaddr *)&a), "no is_app: app-only");
	targets_free(t);
}
