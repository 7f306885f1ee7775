/* agent: the state every part of the running agent shares. Owned by main.c;
 * modules borrow it. Fields that a reload replaces are swapped whole. */
#ifndef VIGIL_AGENT_H
#define VIGIL_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "identity.h"

struct loop;
struct capture;
struct audit;
struct targets;
struct certgen;
struct inspector;
struct policy_holder;
struct budget_store;
struct netns_set;
typedef struct ssl_ctx_st SSL_CTX;

struct agent_stats {
	atomic_ulong accepted, passthrough, intercepted, no_origin, upstream_fail, active;
	atomic_ulong requests[4];      /* by action: allow, alert, redact, block */
	atomic_ulong dns_answers;      /* DNS answers seen by the ingress program */
	atomic_ulong dns_learned;      /* target addresses first learned from one */
};

struct agent {
	struct config *cfg;
	struct loop *loop;
	struct capture *cap;
	struct audit *audit;
	struct targets *targets;
	struct certgen *certgen;       /* NULL: no CA configured, nothing is decrypted */
	SSL_CTX *upstream_ctx;         /* client side of intercepted connections */
	struct inspector *inspector;   /* current detector set; swapped whole on reload */
	pthread_mutex_t inspector_lock;
	unsigned char hash_key[32];    /* keys the "hash" redaction (per agent run) */
	struct policy_holder *policy;  /* NULL: no policy file, the default table decides */
	struct budget_store *budgets;  /* token and request budgets (with a policy) */
	struct netns_set *netns;       /* listeners in containers' namespaces (netns.c) */
	atomic_bool reloading;         /* a policy reload is under way */
	struct agent_stats stats;
};

/* What is known about a redirected connection when it is handed to a handler. */
struct conn_info {
	struct identity id;
	struct vigil_origin origin;
	bool have_origin;
	char sni[256];                 /* "" if none */
	uint64_t t_start_ms;           /* monotonic */
};

/* Opens a socket to the connection's original destination that the connect
 * hook will not redirect (the agent's own upstream). Non-blocking if
 * nonblock. Returns the fd (connect in progress or done) or -errno. */
int agent_connect_upstream(struct agent *ag, const struct vigil_origin *o, bool nonblock);

/* Loads the interception CA and the upstream TLS context (nothing if the
 * config has no ca_cert). Returns 0 or -errno with a reason in err. */
int intercept_init(struct agent *ag, char *err, size_t errlen);
void intercept_shutdown(struct agent *ag);

/* Takes ownership of cfd: decrypts and proxies HTTP on its own thread.
 * Returns 0, or -errno (cfd untouched: caller falls back). */
int intercept_start(struct agent *ag, int cfd, const struct conn_info *info);

#endif
