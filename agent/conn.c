/* conn: redirected connections on the event loop. Pass-through bytes move
 * kernel to kernel with splice(2) through one pipe per direction, so a
 * relayed connection never holds more than two pipe buffers and never
 * copies through user space. Half-close is propagated (shutdown(SHUT_WR)
 * once a direction's source hit EOF and its pipe is drained). A connection
 * whose origin the kernel did not record is refused: without it the agent
 * cannot know where it was going and must not guess.
 *
 * Connections are freed on the next tick, never inside an epoll callback,
 * because a later event of the same batch may still name them. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "audit.h"
#include "capture.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "sni.h"

#define PIPE_SIZE (64 * 1024)
#define PEEK_BUF (SNI_MAX_HELLO + 1024)

enum conn_state { ST_PEEK, ST_CONNECTING, ST_RELAY, ST_DEAD };

struct conn;

struct side_watch {
	struct loop_watch w;
	struct conn *c;
};

struct dir {
	int pipe[2];
	size_t in_pipe;
	bool src_eof, shut;
	uint64_t bytes;
};

struct conn {
	struct agent *ag;
	struct side_watch cw, uw;
	enum conn_state state;
	struct conn_info info;
	struct dir up, down;           /* up: client -> upstream */
	uint64_t deadline_ms;          /* peek/connect deadline, or idle deadline while relaying */
	const char *error;
	struct conn *next, *prev;
};

struct listener {
	struct loop_watch w;
	struct agent *ag;
	struct listener *next;
};

static struct listener *listeners;

static struct conn *all_conns;     /* live connections (loop thread only) */
static struct conn *dead_conns;

static void conn_unlink(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		all_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

static void emit_connection_event(struct conn *c)
{
	struct audit_event ev;
	const struct identity *id = &c->info.id;

	audit_event_init(&ev, "connection");
	ev.user = id->user[0] ? id->user : NULL;
	ev.uid = id->uid;
	ev.gid = id->gid;
	ev.pid = id->pid;
	ev.tid = id->tid;
	ev.comm = id->comm[0] ? id->comm : NULL;
	ev.exe = id->exe[0] ? id->exe : NULL;
	ev.cgroup = id->cgroup[0] ? id->cgroup : NULL;
	ev.container_id = id->container_id[0] ? id->container_id : NULL;
	ev.dst_ip = id->dst_ip[0] ? id->dst_ip : NULL;
	ev.dst_port = id->dst_port;
	ev.sni = c->info.sni[0] ? c->info.sni : NULL;
	ev.action = "passthrough";
	ev.reason = c->error ? "error" : NULL;
	ev.error = c->error;
	ev.bytes_up = c->up.bytes;
	ev.bytes_down = c->down.bytes;
	ev.latency_ms = loop_now_ms() - c->info.t_start_ms;
	audit_emit(c->ag->audit, &ev);
}

static void dir_close(struct dir *d)
{
	for (int i = 0; i < 2; i++)
		if (d->pipe[i] >= 0) {
			close(d->pipe[i]);
			d->pipe[i] = -1;
		}
}

static void conn_close(struct conn *c, const char *error)
{
	if (c->state == ST_DEAD)
		return;
	if (error && !c->error)
		c->error = error;
	emit_connection_event(c);
	loop_del(c->ag->loop, &c->cw.w);
	loop_del(c->ag->loop, &c->uw.w);
	if (c->cw.w.fd >= 0)
		close(c->cw.w.fd);
	if (c->uw.w.fd >= 0)
		close(c->uw.w.fd);
	c->cw.w.fd = c->uw.w.fd = -1;
	dir_close(&c->up);
	dir_close(&c->down);
	c->state = ST_DEAD;
	conn_unlink(c);
	c->next = dead_conns;
	dead_conns = c;
	atomic_fetch_sub(&c->ag->stats.active, 1);
}

/* Moves bytes src -> pipe -> dst until both would block. Returns 0, or -1
 * if the connection failed. */
static int pump(struct conn *c, struct dir *d, int src, int dst)
{
	for (;;) {
		bool progress = false;
		if (d->in_pipe) {
			ssize_t n = splice(d->pipe[0], NULL, dst, NULL, d->in_pipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->in_pipe -= (size_t)n;
				d->bytes += (uint64_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				c->error = errno == EPIPE || errno == ECONNRESET ? NULL : "write failed";
				return -1;
			}
		}
		if (!d->src_eof && d->in_pipe < PIPE_SIZE) {
			ssize_t n = splice(src, NULL, d->pipe[1], NULL, PIPE_SIZE - d->in_pipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->in_pipe += (size_t)n;
				progress = true;
			} else if (n == 0) {
				d->src_eof = true;
				progress = true;
			} else if (errno == ECONNRESET) {
				d->src_eof = true;
				progress = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				c->error = "read failed";
				return -1;
			}
		}
		if (d->src_eof && !d->in_pipe && !d->shut) {
			shutdown(dst, SHUT_WR);
			d->shut = true;
		}
		if (!progress)
			return 0;
	}
}

static void relay(struct conn *c)
{
	int cfd = c->cw.w.fd, ufd = c->uw.w.fd;
	if (pump(c, &c->up, cfd, ufd) || pump(c, &c->down, ufd, cfd)) {
		conn_close(c, c->error);
		return;
	}
	if (c->up.shut && c->down.shut) {
		conn_close(c, NULL);
		return;
	}
	c->deadline_ms = loop_now_ms() + c->ag->cfg->idle_timeout_ms;
}

static int make_pipe(struct dir *d)
{
	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
	return 0;
}

static void upstream_event(struct loop_watch *w, uint32_t events)
{
	struct conn *c = ((struct side_watch *)w)->c;
	if (c->state == ST_DEAD)
		return;
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			atomic_fetch_add(&c->ag->stats.upstream_fail, 1);
			log_info("upstream %s:%u: %s", c->info.id.dst_ip, c->info.id.dst_port, strerror(err));
			conn_close(c, "upstream connect failed");
			return;
		}
		if (make_pipe(&c->up) || make_pipe(&c->down)) {
			conn_close(c, "out of pipes");
			return;
		}
		c->state = ST_RELAY;
	}
	relay(c);
}

static void client_event(struct loop_watch *w, uint32_t events);

int agent_connect_upstream(struct agent *ag, const struct vigil_origin *o, bool nonblock)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, ret;

	memset(&ss, 0, sizeof(ss));
	if (!memcmp(o->orig_addr, mapped, 12)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, o->orig_addr + 12, 4);
		sin->sin_port = htons(o->orig_port);
		sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, o->orig_addr, 16);
		sin6->sin6_port = htons(o->orig_port);
		sslen = sizeof(*sin6);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	/* The agent's own socket must never be redirected back to itself. */
	if ((ret = capture_bypass_add(ag->cap, fd))) {
		close(fd);
		return ret;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = connect(fd, (struct sockaddr *)&ss, sslen);
	if (ret && errno != EINPROGRESS) {
		ret = -errno;
		capture_bypass_del(ag->cap, fd);
		close(fd);
		return ret;
	}
	capture_bypass_del(ag->cap, fd);
	return fd;
}

static void start_passthrough(struct conn *c)
{
	int fd;
	atomic_fetch_add(&c->ag->stats.passthrough, 1);
	fd = agent_connect_upstream(c->ag, &c->info.origin, true);
	if (fd < 0) {
		log_info("upstream %s:%u: %s", c->info.id.dst_ip, c->info.id.dst_port, strerror(-fd));
		atomic_fetch_add(&c->ag->stats.upstream_fail, 1);
		conn_close(c, "upstream connect failed");
		return;
	}
	c->uw.w.fd = fd;
	c->state = ST_CONNECTING;
	c->deadline_ms = loop_now_ms() + c->ag->cfg->upstream_timeout_ms;
	if (loop_add(c->ag->loop, &c->uw.w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)) {
		conn_close(c, "epoll failed");
		return;
	}
	/* From now on client readiness drives the relay. */
	loop_mod(c->ag->loop, &c->cw.w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

static void decide(struct conn *c, enum sni_status st)
{
	struct agent *ag = c->ag;
	const struct config *cfg = ag->cfg;

	if (st == SNI_FOUND && ag->certgen &&
	    config_host_watched((const char *const *)cfg->endpoints, cfg->n_endpoints, c->info.sni) &&
	    !config_host_watched((const char *const *)cfg->passthrough, cfg->n_passthrough, c->info.sni)) {
		int cfd = c->cw.w.fd;
		loop_del(ag->loop, &c->cw.w);
		if (intercept_start(ag, cfd, &c->info) == 0) {
			atomic_fetch_add(&ag->stats.intercepted, 1);
			/* The interceptor owns the socket and audits the exchange now. */
			c->cw.w.fd = -1;
			c->state = ST_DEAD;
			conn_unlink(c);
			c->next = dead_conns;
			dead_conns = c;
			atomic_fetch_sub(&ag->stats.active, 1);
			return;
		}
		loop_add(ag->loop, &c->cw.w, EPOLLIN | EPOLLRDHUP | EPOLLET);
		log_warn("cannot start interception for %s; passing through", c->info.sni);
	}
	start_passthrough(c);
}

static void try_peek(struct conn *c, bool deadline_passed)
{
	static uint8_t buf[PEEK_BUF];
	ssize_t n = recv(c->cw.w.fd, buf, sizeof(buf), MSG_PEEK);
	enum sni_status st;

	if (n == 0) {
		conn_close(c, "client closed before sending");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			conn_close(c, "client read failed");
			return;
		}
		if (deadline_passed)
			start_passthrough(c);   /* a protocol where the server speaks first */
		return;
	}
	st = sni_parse(buf, (size_t)n, c->info.sni, sizeof(c->info.sni));
	if (st == SNI_NEED_MORE && (size_t)n < sizeof(buf) && !deadline_passed)
		return;
	if (st != SNI_FOUND)
		c->info.sni[0] = 0;
	decide(c, st);
}

static void client_event(struct loop_watch *w, uint32_t events)
{
	struct conn *c = ((struct side_watch *)w)->c;
	if (c->state == ST_PEEK)
		try_peek(c, false);
	else if (c->state == ST_RELAY)
		relay(c);
	else if (c->state == ST_CONNECTING && (events & (EPOLLERR | EPOLLHUP)) &&
		 !(events & EPOLLIN))
		conn_close(c, "client reset while connecting upstream");
}

static void accept_one(struct agent *ag, int fd)
{
	struct sockaddr_storage peer, local;
	socklen_t plen = sizeof(peer), llen = sizeof(local);
	struct conn *c;

	atomic_fetch_add(&ag->stats.accepted, 1);
	if (atomic_load(&ag->stats.active) >= ag->cfg->max_connections) {
		log_warn("connection limit (%u) reached; refusing", ag->cfg->max_connections);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ag = ag;
	c->cw.c = c->uw.c = c;
	c->cw.w.fd = fd;
	c->cw.w.fn = client_event;
	c->uw.w.fd = -1;
	c->uw.w.fn = upstream_event;
	c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
	c->info.t_start_ms = loop_now_ms();
	c->next = all_conns;
	if (all_conns)
		all_conns->prev = c;
	all_conns = c;
	atomic_fetch_add(&ag->stats.active, 1);

	if (getpeername(fd, (struct sockaddr *)&peer, &plen) ||
	    getsockname(fd, (struct sockaddr *)&local, &llen) ||
	    capture_lookup_in(ag->cap, capture_sock_netns_cookie(fd), (struct sockaddr *)&peer,
			      (struct sockaddr *)&local, &c->info.origin)) {
		atomic_fetch_add(&ag->stats.no_origin, 1);
		identity_from_origin(&c->info.id, NULL);
		conn_close(c, "no origin recorded for this connection");
		return;
	}
	c->info.have_origin = true;
	identity_from_origin(&c->info.id, &c->info.origin);
	c->state = ST_PEEK;
	c->deadline_ms = c->info.t_start_ms + ag->cfg->header_timeout_ms;
	if (loop_add(ag->loop, &c->cw.w, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
		conn_close(c, "epoll failed");
		return;
	}
	try_peek(c, false);
}

static void listener_event(struct loop_watch *w, uint32_t events)
{
	struct listener *l = (struct listener *)w;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		accept_one(l->ag, fd);
	}
}

int conn_listen(struct agent *ag, int lfd)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->w.fd = lfd;
	l->w.fn = listener_event;
	l->ag = ag;
	l->next = listeners;
	listeners = l;
	return loop_add(ag->loop, &l->w, EPOLLIN);
}

int conn_unlisten(struct agent *ag, int lfd)
{
	for (struct listener **p = &listeners; *p; p = &(*p)->next) {
		struct listener *l = *p;

		if (l->w.fd != lfd)
			continue;
		*p = l->next;
		loop_del(ag->loop, &l->w);
		free(l);
		return 0;
	}
	return -ENOENT;
}

void conn_tick(struct agent *ag, uint64_t now)
{
	(void)ag;
	while (dead_conns) {
		struct conn *c = dead_conns;
		dead_conns = c->next;
		free(c);
	}
	for (struct conn *c = all_conns, *next; c; c = next) {
		next = c->next;
		if (now < c->deadline_ms)
			continue;
		switch (c->state) {
		case ST_PEEK:
			try_peek(c, true);
			break;
		case ST_CONNECTING:
			conn_close(c, "upstream connect timed out");
			break;
		case ST_RELAY:
			conn_close(c, "idle timeout");
			break;
		default:
			break;
		}
	}
}

void conn_close_all(struct agent *ag)
{
	while (listeners) {
		struct listener *l = listeners;
		listeners = l->next;
		loop_del(ag->loop, &l->w);
		free(l);
	}
	while (all_conns)
		conn_close(all_conns, "agent stopping");
	conn_tick(ag, 0);
}
