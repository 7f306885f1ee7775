/* egress: how the agent's own upstream connections leave the machine.
 * Direct to the original destination, through the proxy the client itself
 * used (a CONNECT tunnel the agent answered, see proxyconn.c), or through
 * the configured upstream_proxy (networks where only the egress proxy may
 * reach the internet). One helper opens all three: TCP (never redirected
 * back to the agent), then, for a proxy, CONNECT with a deadline and a
 * bounded answer; anything but 2xx is an upstream error with a reason.
 *
 * Never logs a Proxy-Authorization value. */
#ifndef VIGIL_EGRESS_H
#define VIGIL_EGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include "agent.h"
#include "proxy/proxyhead.h"

struct egress_route {
	struct sockaddr_storage addr;   /* TCP peer: the destination, or a proxy */
	socklen_t addrlen;
	bool via_proxy;                 /* send CONNECT host:port first */
	char host[PROXYHEAD_HOST_MAX];  /* CONNECT target */
	uint16_t port;
	const char *auth;               /* Proxy-Authorization value, borrowed; NULL = none */
};

/* Resolves upstream_proxy (a name through targets.c, refreshed at its
 * TTL; a literal at once) before the agent says ready. Returns 0 or -errno
 * with err. egress_free stops the resolver. */
/* The address and port the application dialled, as a socket address
 * (v4-mapped as AF_INET). */
void egress_origin_sockaddr(const struct vigil_origin *o, struct sockaddr_storage *ss, socklen_t *len);

int egress_init(struct agent *ag, char *err, size_t errlen);
void egress_free(void);

/* Opens a TCP socket to sa that the connect hook will not redirect (the
 * agent's own), non-blocking if nonblock. Returns the fd (connect in
 * progress or done) or -errno. */
int egress_socket(struct agent *ag, const struct sockaddr *sa, socklen_t len, bool nonblock);

/* The route of an intercepted connection's upstream: the client's own
 * proxy for a tunnel, else upstream_proxy if configured (CONNECT to the
 * original address:port, where the client's connection was going), else
 * direct. Resolves upstream_proxy's name (blocking: call it off the loop).
 * Returns 0 or -errno with a reason in err. Borrows from info and ag. */
int egress_route_for(struct agent *ag, const struct conn_info *info, struct egress_route *r,
		     char *err, size_t errlen);

/* Connects along r, blocking until deadline (monotonic ms). Returns a
 * connected non-blocking fd, ready for TLS, or -errno with *reason (a
 * static code for the audit event: upstream_unreachable,
 * upstream_proxy_refused, upstream_proxy_failed) and a message in err. */
int egress_open(struct agent *ag, const struct egress_route *r, uint64_t deadline,
		const char **reason, char *err, size_t errlen);

/* Pass-through on the event loop (never blocks). Opens the upstream of a
 * relayed connection: to its origin, or with upstream_proxy (and unless
 * to_client_proxy: a client's own proxy is reached directly) to that
 * proxy, with *via_proxy set. Returns a non-blocking fd, or -errno. */
int egress_passthrough_open(struct agent *ag, const struct conn_info *info, bool to_client_proxy,
			    bool *via_proxy);
/* Once that socket is connected: sends CONNECT to the original
 * address:port (fits the socket buffer; a short write is an error). */
int egress_passthrough_connect(struct agent *ag, int fd, const struct conn_info *info);
/* Reads the proxy's answer (peeked, then exactly its head consumed).
 * Returns the status (> 0), 0 if incomplete, or -errno. */
int egress_passthrough_reply(int fd);

#endif
