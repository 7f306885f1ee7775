/* proxyhead: the two HTTP heads of an explicit proxy, as bytes. What a
 * client sends to its HTTP proxy (CONNECT host:port, or an absolute-form
 * request such as "GET http://host/path"), and the CONNECT the agent sends
 * itself, with the proxy's answer to it. Pure: no I/O, no allocation, no
 * logging; every host, port and length from the network is validated here
 * so the callers (proxyconn.c, egress.c) only see clean values.
 *
 * Host names are normalised the way SNI is compared: lower-case, one
 * trailing dot removed. An IPv6 literal is kept without its brackets. */
#ifndef VIGIL_PROXYHEAD_H
#define VIGIL_PROXYHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXYHEAD_HOST_MAX 256     /* buffer size for a normalised host (253 + NUL, with room) */

enum proxyhead_kind {
	PROXYHEAD_CONNECT,         /* CONNECT host:port: a tunnel */
	PROXYHEAD_FORWARD,         /* absolute-form request the proxy forwards (plain HTTP) */
};

struct proxyhead {
	enum proxyhead_kind kind;
	char host[PROXYHEAD_HOST_MAX];
	uint16_t port;
	bool host_is_ip;
	const char *auth;          /* Proxy-Authorization value, BORROWED from the buffer; NULL if none */
	size_t auth_len;
	size_t head_len;           /* bytes of the head (the tunnel starts after them) */
	uint64_t body_len;         /* PROXYHEAD_FORWARD: Content-Length of the request body */
};

/* Parses the client's first request to its proxy from buf[0..len), at most
 * max_head bytes of head. Returns the head length (> 0), 0 if more bytes
 * are needed, or a negative HTTP status to refuse with: -400 malformed
 * (bad host characters, missing or out-of-range port, userinfo, a CONNECT
 * with a body, origin-form), -411 a chunked request body (only
 * Content-Length framing is forwarded), -431 head too large, -505 bad
 * version. */
int proxyhead_parse(const char *buf, size_t len, size_t max_head, struct proxyhead *out);

/* Validates and normalises one host (a DNS name, an IPv4 literal, or an
 * IPv6 literal in brackets) of n bytes into out (PROXYHEAD_HOST_MAX).
 * Returns 0, or -EINVAL. */
int proxyhead_host(const char *h, size_t n, char *out, bool *is_ip);

/* Splits an authority "host:port" (port mandatory if default_port is 0).
 * Returns 0 or -EINVAL. */
int proxyhead_authority(const char *a, size_t n, uint16_t default_port, char *host,
			uint16_t *port, bool *is_ip);

/* Writes the agent's own CONNECT for host:port (IPv6 literals bracketed),
 * with "Proxy-Authorization: <auth>" if auth is not NULL (auth_len bytes,
 * already validated as a field value). Returns the length, or -ENOSPC. */
int proxyhead_connect_request(char *out, size_t cap, const char *host, uint16_t port,
			      const char *auth, size_t auth_len);

/* Parses a proxy's answer to CONNECT in buf[0..len), at most max bytes.
 * Returns the head length (> 0) with *status set, 0 if more bytes are
 * needed, or -EPROTO (malformed or larger than max). body_len (may be
 * NULL) gets the length of the body after a refusal's head: its
 * Content-Length, 0 for none, -1 if it is chunked or runs to the close. */
int proxyhead_connect_reply(const char *buf, size_t len, size_t max, int *status,
			    int64_t *body_len);

/* The head of a forwarded plain-HTTP request (head_len bytes of buf, as
 * parsed) rewritten to end the proxy connection after its answer
 * ("Connection: close" added before the final CRLF), so that a second
 * request on the same connection cannot pass unread. Returns the length
 * or -ENOSPC. */
int proxyhead_close_after(const char *buf, size_t head_len, char *out, size_t cap);

#endif
