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
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "kernel/capture.h"
#include "net/egress.h"
#include "log.h"
#include "loop.h"
#include "kernel/targets.h"

#define REPLY_MAX 8192   /* a proxy's answer head; more is a broken or hostile proxy */

/* upstream_proxy's current addresses, kept by a targets.c resolver. */
#define UP_ADDRS 8
static struct {
	pthread_mutex_t lock;
	struct targets *targets;
	uint16_t port;
	struct sockaddr_storage addrs[UP_ADDRS];
	size_t n;
} up = { .lock = PTHREAD_MUTEX_INITIALIZER };

static socklen_t sa_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static int up_apply(void *arg, const struct sockaddr *addr, bool add)
{
	(void)arg;
	pthread_mutex_lock(&up.lock);
	for (size_t i = 0; i < up.n; i++)
		if (targets_same_addr((struct sockaddr *)&up.addrs[i], addr)) {
			if (!add)
				up.addrs[i] = up.addrs[--up.n];
			pthread_mutex_unlock(&up.lock);
			return 0;
		}
	if (add && up.n < UP_ADDRS) {
		memset(&up.addrs[up.n], 0, sizeof(up.addrs[0]));
		memcpy(&up.addrs[up.n], addr, sa_len(addr));
		/* targets.c hands out addresses without a port */
		if (addr->sa_family == AF_INET)
			((struct sockaddr_in *)&up.addrs[up.n])->sin_port = htons(up.port);
		else
			((struct sockaddr_in6 *)&up.addrs[up.n])->sin6_port = htons(up.port);
		up.n++;
	}
	pthread_mutex_unlock(&up.lock);
	return 0;
}

/* The first current address of upstream_proxy. */
static int up_addr(struct sockaddr_storage *ss, socklen_t *len)
{
	int ret = -EHOSTUNREACH;
	pthread_mutex_lock(&up.lock);
	if (up.n) {
		*ss = up.addrs[0];
		*len = sa_len((struct sockaddr *)ss);
		ret = 0;
	}
	pthread_mutex_unlock(&up.lock);
	return ret;
}

int egress_init(struct agent *ag, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	struct targets_opts to = { .apply = up_apply, .min_ttl_s = cfg->dns_min_ttl_s,
				   .max_ttl_s = cfg->dns_max_ttl_s };
	struct sockaddr_storage ss;
	const char *name = cfg->upstream_proxy.host;
	int ret;

	if (!name)
		return 0;
	up.port = cfg->upstream_proxy.port;
	if (!(up.targets = targets_new(&to)))
		return -ENOMEM;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, name, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		return targets_add_static(up.targets, (struct sockaddr *)&ss);
	}
	if (inet_pton(AF_INET6, name, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		return targets_add_static(up.targets, (struct sockaddr *)&ss);
	}
	if ((ret = targets_set_domains(up.targets, &name, 1)))
		return ret;
	targets_refresh(up.targets, loop_now_ms() / 1000);
	if (!up.n)
		log_warn("upstream_proxy %s does not resolve yet; upstream connections fail until it does",
			 name);
	if ((ret = targets_start(up.targets)))
		snprintf(err, errlen, "upstream_proxy: cannot start the resolver: %s", strerror(-ret));
	return ret;
}

void egress_free(void)
{
	targets_free(up.targets);
	up.targets = NULL;
	up.n = 0;
}

int egress_socket(struct agent *ag, const struct sockaddr *sa, socklen_t len, bool nonblock)
{
	int fd, ret, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	/* The agent's own socket must never be redirected back to itself,
	 * even when its peer is a proxy the clients' connections are taken
	 * from. (No capture: a tool or a unit test, nothing is redirected.) */
	if (ag->cap && (ret = capture_bypass_add(ag->cap, fd))) {
		close(fd);
		return ret;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = connect(fd, sa, len);
	if (ret)
		ret = errno == EINPROGRESS ? 0 : -errno;
	if (ag->cap)
		capture_bypass_del(ag->cap, fd);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

void egress_origin_sockaddr(const struct vigil_origin *o, struct sockaddr_storage *ss, socklen_t *len)
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
	egress_origin_sockaddr(o, &ss, &len);
	return egress_socket(ag, (struct sockaddr *)&ss, len, nonblock);
}

int egress_route_for(struct agent *ag, const struct conn_info *info, struct egress_route *r,
		     char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;

	memset(r, 0, sizeof(*r));
	if (info->tunnel_port) {
		egress_origin_sockaddr(&info->origin, &r->addr, &r->addrlen);
		r->via_proxy = true;
		snprintf(r->host, sizeof(r->host), "%s", info->tunnel_host);
		r->port = info->tunnel_port;
		r->auth = info->tunnel_auth[0] ? info->tunnel_auth : NULL;
		return 0;
	}
	if (!cfg->upstream_proxy.host) {
		egress_origin_sockaddr(&info->origin, &r->addr, &r->addrlen);
		return 0;
	}
	if (up_addr(&r->addr, &r->addrlen)) {
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
		int hl = proxyhead_connect_reply(reply, have, sizeof(reply), &status, NULL);
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

/* ---- pass-through on the event loop ---- */

int egress_passthrough_open(struct agent *ag, const struct conn_info *info, bool to_client_proxy,
			    bool *via_proxy)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int ret;

	*via_proxy = false;
	if (!ag->cfg->upstream_proxy.host || to_client_proxy)
		return agent_connect_upstream(ag, &info->origin, true);
	if ((ret = up_addr(&ss, &len)))
		return ret;
	*via_proxy = true;
	return egress_socket(ag, (struct sockaddr *)&ss, len, true);
}

int egress_passthrough_connect(struct agent *ag, int fd, const struct conn_info *info)
{
	const char *auth = ag->cfg->upstream_proxy_auth;
	char req[1024];
	int n = proxyhead_connect_request(req, sizeof(req), info->id.dst_ip, info->id.dst_port, auth,
					  auth ? strlen(auth) : 0);
	ssize_t w;

	if (n < 0)
		return n;
	w = send(fd, req, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	explicit_bzero(req, sizeof(req));
	return w == n ? 0 : w < 0 ? -errno : -EAGAIN;
}

int egress_passthrough_reply(int fd)
{
	char reply[REPLY_MAX];
	int status = 0;
	ssize_t got = recv(fd, reply, sizeof(reply), MSG_PEEK | MSG_DONTWAIT);
	int hl;

	if (got == 0)
		return -ECONNRESET;
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	hl = proxyhead_connect_reply(reply, (size_t)got, sizeof(reply), &status, NULL);
	if (hl < 0 || (hl == 0 && (size_t)got == sizeof(reply)))
		return -EPROTO;
	if (hl == 0)
		return 0;
	/* Exactly the head: the relay carries everything after it. */
	if (recv(fd, reply, (size_t)hl, MSG_DONTWAIT) != hl)
		return -EIO;
	return status;
}
