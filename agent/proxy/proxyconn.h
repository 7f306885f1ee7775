/* proxyconn: connections the clients open to an explicit HTTP proxy
 * (proxies:). The connect hook redirects them like target connections;
 * the agent then reads the client's first request to its proxy:
 *  - CONNECT: the head is replayed to the real proxy, whose answer goes
 *    back to the client (a 407 challenge included: the client may answer
 *    it on the same connection, whose next request is read again). Once
 *    the tunnel is up, the client's first flight is read before anything
 *    else happens: for a watched host it must be a ClientHello naming that
 *    host, and both sockets go to the interceptor (its upstream TLS runs
 *    over the tunnel); for another host, a ClientHello naming a watched
 *    one (fronting through a shared CDN) is refused, anything else is
 *    relayed like any pass-through, audited with the host;
 *  - a plain-HTTP request for an unwatched host: forwarded to the real
 *    proxy with "Connection: close", and only that one request (its
 *    Content-Length body) is relayed: the next one must come on a new
 *    connection, where it is read again;
 *  - plain HTTP to a watched host (credentials and prompts in clear):
 *    refused with a provider-shaped 403;
 *  - anything malformed, too large or too slow: refused with an HTTP error.
 * Every refusal is audited here with the client's identity. Runs on the
 * event loop (conn.c calls it); never blocks. */
#ifndef VIGIL_PROXYCONN_H
#define VIGIL_PROXYCONN_H

#include <stdbool.h>
#include "agent.h"

enum proxyconn_step {
	PROXYCONN_MORE,        /* wait for more bytes (or the deadline) */
	PROXYCONN_INTERCEPT,   /* ClientHello matches the tunnel: intercept (info->sni set) */
	PROXYCONN_FORWARD,     /* replay to the real proxy (the origin), then relay */
	PROXYCONN_REFUSED,     /* answered, audited: close without another event */
	PROXYCONN_GONE,        /* the client went away: close with *error */
};

/* Resolves the configured proxies (names through targets.c, like
 * endpoints; literals at once) into the capture's target set, each with its
 * own port, and (first-flight guard on) starts the learned proxies' set.
 * Call after capture_open. Returns 0 or -errno with err. */
int proxyconn_init(struct agent *ag, char *err, size_t errlen);
void proxyconn_free(struct agent *ag);

/* The first-flight guard refused "CONNECT name" sent to addr (its port
 * set, network order): an explicit proxy the config does not list. That
 * address:port joins the proxy set (and the kernel target set) with the
 * lifetime and cap of a learned target (targets_learn_endpoint), so the
 * client's retry is read as a proxy request: the watched host intercepted
 * through the real proxy, any other forwarded to it. Returns as
 * targets_learn_endpoint; -EOPNOTSUPP with the guard off. */
int proxyconn_learn(struct agent *ag, const char *name, const struct sockaddr *addr, uint32_t ttl_s, uint64_t now);
/* The watched names a learned proxy's CONNECT is checked against (copied;
 * the endpoints, also on reload). Returns 0 or -errno. */
int proxyconn_set_names(struct agent *ag, const char *const *names, size_t n);

/* True if o (a redirected connection's original destination) is one of
 * the configured or learned proxies. */
bool proxyconn_is_proxy(struct agent *ag, const struct vigil_origin *o);
/* True if o is a learned proxy only (proxyconn_learn), not a listed one:
 * what the guard saw was a CONNECT line sent there, which anyone can send
 * to any server, so its clients that speak TLS are classified as on a
 * target address rather than refused as bad proxy requests. */
bool proxyconn_is_learned(struct agent *ag, const struct vigil_origin *o);
/* True if addr:port (a target-set key; addr's own port ignored) belongs to
 * a configured or learned proxy. */
bool proxyconn_is_proxy_addr(struct agent *ag, const struct sockaddr *addr, uint16_t port);

/* What is replayed to the real proxy for a forwarded request. */
struct proxyconn_fwd {
	size_t head_len;       /* the client's head, still in its socket (peeked) */
	bool tunnel;           /* CONNECT: wait for the answer, then the first flight */
	uint64_t body_len;     /* plain HTTP: request body bytes after the head */
};

/* The client's request to its proxy, peeked from cfd. Fills info (sni =
 * the requested host; tunnel_* for a tunnel the agent answered), and fwd
 * on PROXYCONN_FORWARD. */
enum proxyconn_step proxyconn_head(struct agent *ag, int cfd, struct conn_info *info,
				   bool deadline_passed, struct proxyconn_fwd *fwd,
				   const char **error);

/* Moves the client's head from cfd to ufd once the real proxy is reached:
 * a CONNECT as it was, a plain-HTTP request with "Connection: close" added
 * (one request per connection: a second one on it would pass unread).
 * Returns the bytes sent, or -errno. */
int proxyconn_replay_head(int cfd, int ufd, const struct proxyconn_fwd *fwd);
/* Passes the real proxy's answer head from ufd to cfd once complete
 * (*passed = its length; *body_len = the body after it, -1 unknown).
 * Returns its status (> 0), 0 if incomplete, or -errno. */
int proxyconn_pass_reply(int ufd, int cfd, size_t *passed, int64_t *body_len);
/* The first flight inside a tunnel the real proxy opened: PROXYCONN_MORE,
 * then for a host to intercept (info->tunnel_port) PROXYCONN_INTERCEPT if
 * the ClientHello names it (info->sni set); for another host
 * PROXYCONN_FORWARD (relay: the server spoke first, or the client's first
 * bytes name no watched host); else PROXYCONN_REFUSED (audited, TLS alert
 * sent), or PROXYCONN_GONE. */
enum proxyconn_step proxyconn_tunnel_first(struct agent *ag, int cfd, int ufd,
					   struct conn_info *info, bool deadline_passed,
					   const char **error);

#endif
