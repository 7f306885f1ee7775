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
#include "kernel/identity.h"
#include "audit/reason.h"

struct loop;
struct capture;
struct audit;
struct targets;
struct certgen;
struct inspector;
struct policy_holder;
struct budget_store;
struct vault_store;
struct proxyconn_set;
struct audit_event;
struct netns_set;
struct policy_ctx;
typedef struct ssl_ctx_st SSL_CTX;

struct agent_stats {
	atomic_ulong accepted, passthrough, intercepted, no_origin, upstream_fail, active;
	atomic_ulong requests[4];      /* by action: allow, alert, redact, block */
	atomic_ulong dns_answers;      /* DNS answers seen by the ingress program */
	atomic_ulong dns_learned;      /* target addresses first learned from one */
	atomic_ulong guard_destroyed;  /* refused sockets sent to the netns helper to destroy (SOCK_DESTROY) */
	atomic_ulong refused[REASON__COUNT]; /* connections and requests refused, by reason */
	atomic_ulong buffered;         /* request buffer bytes charged to limits.max_buffered_bytes */
	atomic_ulong buffer_refusals;  /* requests refused (503) because that budget was spent */
	atomic_ulong netns_listeners;  /* other network namespaces listened in now (net/netns.c) */
	atomic_ulong loop_handoffs;    /* intercepted connections the loop handed to a thread (intercept.c) */
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
	struct vault_store *vaults;    /* reversible tokens per user and program */
	struct justify *justify;       /* warn: warnings and exemptions (NULL: socket unavailable) */
	struct proxyconn_set *proxies; /* addresses of the proxies: (NULL = none) */
	struct netns_set *netns;       /* listeners in containers' namespaces (netns.c) */
	struct rejca *rejected_ca;     /* programs and hosts that refused the CA (with a CA) */
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
	/* A tunnel to a watched host that the client opened through its
	 * explicit proxy (proxies:): the CONNECT target, the client's
	 * Proxy-Authorization (never logged) to open another one through the
	 * same proxy (origin) if the upstream must reconnect, and the tunnel
	 * itself, already open: the interceptor's first upstream, which it
	 * owns (closes) once started. Port 0 = none. */
	char tunnel_host[256];
	uint16_t tunnel_port;
	char tunnel_auth[512];
	bool have_tunnel_fd;
	int tunnel_fd;
};

/* The identity and destination fields of an audit event (borrowed from info). */
void conn_info_fill_event(const struct conn_info *info, struct audit_event *ev);
/* The same of a process's identity alone (kernel events, launches). */
void conn_info_identity_event(const struct identity *id, struct audit_event *ev);

/* A policy context of the connection's identity and host, all else
 * unknown (x zeroed first; its strings borrowed from info). */
void conn_info_policy_ctx(const struct conn_info *info, struct policy_ctx *x);
/* The same of a process's identity alone (a launch: no host). */
void conn_info_identity_ctx(const struct identity *id, struct policy_ctx *x);
/* After a client of info refused the interception CA: whether it is relayed
 * undecrypted for *ttl_ms (the policy's first rejected_ca entry that
 * matches, else the agent's on_rejected_ca), and the name of what decided
 * (the entry, or "on_rejected_ca") in rule. */
bool conn_info_rejected_ca(struct agent *ag, const struct conn_info *info, uint64_t *ttl_ms, char *rule,
			   size_t rulelen);

/* Opens a socket to the connection's original destination that the connect
 * hook will not redirect (the agent's own upstream). Non-blocking if
 * nonblock. Returns the fd (connect in progress or done) or -errno. */
int agent_connect_upstream(struct agent *ag, const struct vigil_origin *o, bool nonblock);

/* Loads the interception CA and the upstream TLS context (nothing if the
 * config has no ca_cert). Returns 0 or -errno with a reason in err. */
int intercept_init(struct agent *ag, char *err, size_t errlen);
void intercept_shutdown(struct agent *ag);

/* Takes ownership of cfd (and of info->tunnel_fd if have_tunnel_fd):
 * decrypts and proxies HTTP on its own thread. Returns 0, or -errno (both
 * untouched: caller falls back). */
int intercept_start(struct agent *ag, int cfd, const struct conn_info *info);

#endif
