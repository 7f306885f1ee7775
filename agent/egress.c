/* egress: the agent's own upstream connections (see egress.h). Blocking
 * with poll() deadlines: it runs on the intercepting threads, whose code
 * is sequential by design (intercept.c). The proxy's answer is read with
 * MSG_PEEK and consumed only up to the end of its head, so not one byte of
 * the tunnel that follows is taken from the TLS layer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "capture.h"
#include "egress.h"
#include "loop.h"

#define REPLY_MAX 8192   /* a proxy's answer head; more is a broken or hostile proxy */

int egress_socket(struct agent *ag, const struct sockaddr *sa, socklen_t len, bool nonblock)
{
	int fd, ret, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	/* The agent's own socket must never be redirected back to itself,
	 * even when its peer is a proxy the clients' connections are taken from. */
	if ((ret = capture_bypass_add(ag->cap, fd))) {
		close(fd);
		return ret;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = connect(fd, sa, len);
	if (ret && errno != EINPROGRESS) {
		ret = -errno;
		capture_bypass_del(ag->cap, fd);
		close(fd);
		return ret;
	}
	capture_bypass_del(ag->cap, fd);
	return fd;
}

static void origin_sockaddr(const struct vigil_origin *o, struct sockaddr_storage *ss, socklen_t *len)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	memset(ss, 0, sizeof(*ss));
	if (!memcmp(o->orig_addr, mapped, 12)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, o->orig_addr + 12, 4);
		sin->sin_port = htons(o->orig_port);
		*len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, o->orig_addr, 16);
		sin6->sin6_port = htons(o->orig_port);
		*len = sizeof(*sin6);
	}
}

int agent_connect_upstream(struct agent *ag, const struct vigil_origin *o, bool nonblock)
{
	struct sockaddr_storage ss;
	socklen_t len;
	origin_sockaddr(o, &ss, &len);
	return egress_socket(ag, (struct sockaddr *)&ss, len, nonblock);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *res;
	char serv[8];
	int ret;

	snprintf(serv, sizeof(serv), "%u", port);
	if ((ret = getaddrinfo(host, serv, &hints, &res)))
		return -EHOSTUNREACH;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int egress_route_for(struct agent *ag, const struct conn_info *info, struct egress_route *r,
		     char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;

	memset(r, 0, sizeof(*r));
	if (info->tunnel_port) {
		origin_sockaddr(&info->origin, &r->addr, &r->addrlen);
		r->via_proxy = true;
		snprintf(r->host, sizeof(r->host), "%s", info->tunnel_host);
		r->port = info->tunnel_port;
		r->auth = info->tunnel_auth[0] ? info->tunnel_auth : NULL;
		return 0;
	}
	if (!cfg->upstream_proxy.host) {
		origin_sockaddr(&info->origin, &r->addr, &r->addrlen);
		return 0;
	}
	if (resolve(cfg->upstream_proxy.host, cfg->upstream_proxy.port, &r->addr, &r->addrlen)) {
		snprintf(err, errlen, "cannot resolve upstream_proxy %s", cfg->upstream_proxy.host);
		return -EHOSTUNREACH;
	}
	r->via_proxy = true;
	/* Where the client's connection was going: its address, which the
	 * connect hook recorded; the name is checked by TLS afterwards. */
	snprintf(r->host, sizeof(r->host), "%s", info->id.dst_ip);
	r->port = info->id.dst_port;
	r->auth = cfg->upstream_proxy_auth;
	return 0;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = loop_now_ms();
		struct pollfd p = { .fd = fd, .events = events };
		if (now >= deadline)
			return -ETIMEDOUT;
		int n = poll(&p, 1, (int)(deadline - now));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const char *p, size_t len, uint64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int ret = wait_fd(fd, POLLOUT, deadline);
			if (ret)
				return ret;
		} else {
			return n < 0 ? -errno : -EPIPE;
		}
	}
	return 0;
}

/* Sends CONNECT and reads the proxy's answer head. Returns the status
 * (> 0) or -errno. The tunnel carries TLS, whose server never speaks
 * first, so a byte after the answer's head is a broken or hostile proxy. */
static int connect_handshake(int fd, const struct egress_route *r, uint64_t deadline)
{
	char req[1024], reply[REPLY_MAX];
	int n = proxyhead_connect_request(req, sizeof(req), r->host, r->port, r->auth,
					  r->auth ? strlen(r->auth) : 0);
	size_t have = 0;
	int ret, status = 0;

	if (n < 0)
		return n;
	ret = send_all(fd, req, (size_t)n, deadline);
	explicit_bzero(req, sizeof(req));   /* it may hold the credentials */
	if (ret)
		return ret;
	for (;;) {
		ssize_t got = recv(fd, reply + have, sizeof(reply) - have, 0);
		if (got == 0)
			return -ECONNRESET;
		if (got < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			if ((ret = wait_fd(fd, POLLIN, deadline)))
				return ret;
			continue;
		}
		have += (size_t)got;
		int hl = proxyhead_connect_reply(reply, have, sizeof(reply), &status);
		if (hl < 0 || (hl == 0 && have == sizeof(reply)))
			return -EPROTO;
		if (hl > 0)   /* a refusal may carry a body: only its status matters */
			return status >= 200 && status < 300 && (size_t)hl != have ? -EPROTO : status;
	}
}

int egress_open(struct agent *ag, const struct egress_route *r, uint64_t deadline,
		const char **reason, char *err, size_t errlen)
{
	int fd, ret, soerr = 0;
	socklen_t elen = sizeof(soerr);

	*reason = "upstream_unreachable";
	fd = egress_socket(ag, (const struct sockaddr *)&r->addr, r->addrlen, true);
	if (fd < 0) {
		snprintf(err, errlen, "upstream%s connect failed", r->via_proxy ? " proxy" : "");
		return fd;
	}
	if ((ret = wait_fd(fd, POLLOUT, deadline)) ||
	    (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen), soerr)) {
		snprintf(err, errlen, "upstream%s connect %s", r->via_proxy ? " proxy" : "",
			 ret == -ETIMEDOUT ? "timed out" : "refused");
		close(fd);
		return ret ? ret : -soerr;
	}
	if (!r->via_proxy)
		return fd;
	ret = connect_handshake(fd, r, deadline);
	if (ret >= 200 && ret < 300)
		return fd;
	close(fd);
	if (ret > 0) {
		*reason = "upstream_proxy_refused";
		snprintf(err, errlen, "upstream proxy answered %d to CONNECT %s:%u", ret, r->host, r->port);
		return -ECONNREFUSED;
	}
	*reason = "upstream_proxy_failed";
	snprintf(err, errlen, "upstream proxy CONNECT %s:%u failed: %s", r->host, r->port,
		 ret == -ETIMEDOUT ? "timed out" : ret == -EPROTO ? "malformed answer" : strerror(-ret));
	return ret;
}
