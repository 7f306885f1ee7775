/* targets: turns the watched domain list into the set of (address, port)
 * pairs the connect hook redirects, and keeps it current: each domain is
 * re-resolved when its DNS TTL runs out (bounded by min/max TTL), and an
 * address stays in the set for a grace period after it was last seen, so
 * that clients holding a slightly older DNS answer are still captured.
 *
 * Resolution uses getaddrinfo (what applications use: /etc/hosts, then
 * DNS) and res_query for the TTL where DNS answers. Wildcard domains
 * (*.openai.azure.com) cannot be resolved up front; their addresses are
 * learned from the DNS answers the workstation's clients receive
 * (targets_learn, fed by the kernel's copy of UDP/53 responses), which also
 * catches CDN answers that differ from the agent's own. Resolution runs on
 * its own thread so the event loop never blocks on DNS. */
#ifndef VIGIL_TARGETS_H
#define VIGIL_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct targets;

/* Called (from the resolver thread, or from targets_* callers) to add or
 * remove one address. Its port (network order) 0 means every configured
 * target port (the callee applies them); another port means that
 * address:port only (targets_learn_endpoint). Returns 0 or -errno. */
typedef int (*targets_apply_fn)(void *arg, const struct sockaddr *addr, bool add);
/* Resolves one name: fills up to max addresses, returns the count or
 * -errno, sets *ttl_s (0 if unknown). Replaceable for tests. */
typedef int (*targets_resolve_fn)(const char *name, struct sockaddr_storage *addrs, int max,
				  uint32_t *ttl_s);

struct targets_opts {
	targets_apply_fn apply;
	void *arg;
	targets_resolve_fn resolve;   /* NULL = targets_resolve_system */
	uint32_t min_ttl_s, max_ttl_s;
	uint32_t grace_s;             /* keep an address this long after it was last seen */
	bool match_only;              /* the domains are only matched (targets_learn*), never
				       * resolved: a set of learned entries alone */
	/* names of chat web apps (NULL: none): an address only they brought
	 * into the set is told apart (targets_app_only) */
	bool (*is_app)(const char *name);
};

struct targets *targets_new(const struct targets_opts *o);
/* Stops the resolver thread (if started) and frees. Accepts NULL. */
void targets_free(struct targets *t);

/* Replaces the domain list (copied). Wildcards are kept for matching only. */
int targets_set_domains(struct targets *t, const char *const *domains, size_t n);
/* Addresses that are always targets (copied), e.g. from target_addresses:. */
int targets_add_static(struct targets *t, const struct sockaddr *addr);

/* A client received addr for name in a DNS answer: if name is watched
 * (exact or wildcard), addr joins the set until ttl_s (capped at max_ttl_s)
 * plus the grace period after now (monotonic seconds, the clock of
 * targets_refresh). At most 4096 learned addresses at once (a flood of
 * forged answers cannot fill the kernel map). Returns 1 if addr is new, 0
 * if it was known or name is not watched, -ENOSPC at the cap, -errno. */
int targets_learn(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s,
		  uint64_t now);

/* The first-flight guard refused name sent to addr (its port set, network
 * order): that address:port joins the set as targets_learn would add an
 * address (same TTL, grace and cap, name checked the same way), so the
 * client's retry is redirected. Returns as targets_learn; -EINVAL without
 * a port. */
int targets_learn_endpoint(struct targets *t, const char *name, const struct sockaddr *addr, uint32_t ttl_s,
			   uint64_t now);

/* Resolves every domain that is due at now (monotonic seconds), applies the
 * differences, and returns the next time something is due. Blocking. */
uint64_t targets_refresh(struct targets *t, uint64_t now);
/* Starts the resolver thread: targets_refresh at each due time. */
int targets_start(struct targets *t);

/* True if addr is in the set only for web app names (opts.is_app): no API
 * name resolved or was learned there and it is not static. Another server
 * name on such an address is a site the browser visits on the app's CDN,
 * not an API behind it. */
bool targets_app_only(struct targets *t, const struct sockaddr *addr);

/* Number of addresses currently in the set. */
size_t targets_count(struct targets *t);
/* True if addr is in the set now. */
bool targets_contains(struct targets *t, const struct sockaddr *addr);

/* Same family and address (ports ignored). */
bool targets_same_addr(const struct sockaddr *a, const struct sockaddr *b);

int targets_resolve_system(const char *name, struct sockaddr_storage *addrs, int max,
			   uint32_t *ttl_s);

#endif
