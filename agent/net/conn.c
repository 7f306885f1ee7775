/* conn: redirected connections on the event loop. The first flight is
 * classified (classify.c) before anything is decided: a watched server name
 * is intercepted, an unwatched one follows unwatched_sni, and everything
 * that is not a complete ClientHello with a valid server name (or a plain-
 * HTTP head) within clienthello_timeout is refused and audited, never
 * relayed. A refused client gets a prompt answer it understands: a fatal
 * TLS alert where it spoke TLS, an HTTP error in its provider's shape where
 * it spoke HTTP, otherwise the connection is closed.
 *
 * Pass-through bytes move
 * kernel to kernel with splice(2) through one pipe per direction, so a
 * relayed connection never holds more than two pipe buffers and never
 * copies through user space. Half-close is propagated (shutdown(SHUT_WR)
 * once a direction's source hit EOF and its pipe is drained). A connection
 * whose origin the kernel did not record is refused: without it the agent
 * cannot know where it was going and must not guess.
 *
 * Connections are freed by a timer that runs after the epoll batch, never
 * inside a callback, because a later event of the same batch may still
 * name them. */
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
#include "audit/audit.h"
#include "kernel/capture.h"
#include "net/certgen.h"
#include "net/classify.h"
#include "net/conn.h"
#include "net/egress.h"
#include "proxy/exchange.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "providers/providers.h"
#include "proxy/proxyconn.h"
#include "net/rejca.h"
#include "net/sni.h"
#include "policy/policy.h"
#include "kernel/targets.h"

#define PIPE_SIZE (64 * 1024)
#define PEEK_BUF (SNI_MAX_HELLO + 1024)
#define LINGER_MS 2000             /* a refused client's last bytes are read this long */
#define LINGER_MAX (1u << 20)      /* ... and at most this much */

/* ST_LINGER: refused, answer sent and write side shut; reading and
 * discarding what the client still sends, so that closing does not reset
 * the connection before the client has read the answer.
 * A connection to an explicit proxy (proxyconn.c): ST_PROXY_HEAD, the
 * client's request; ST_TUNNEL_REPLY, the real proxy's answer to the
 * replayed CONNECT; ST_REFUSAL_BODY, the body of a refusal on its way
 * back, before the next request; ST_TUNNEL_FIRST, the first flight in an
 * open tunnel. ST_UPSTREAM_CONNECT: our CONNECT to upstream_proxy is sent
 * (egress.c). */
enum conn_state { ST_PEEK, ST_PROXY_HEAD, ST_CONNECTING, ST_UPSTREAM_CONNECT, ST_TUNNEL_REPLY,
		  ST_REFUSAL_BODY, ST_TUNNEL_FIRST, ST_RELAY, ST_LINGER, ST_DEAD };

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
	/* A direction that carries only `left` more bytes (one request or one
	 * refusal forwarded for an explicit proxy's client); no_shut: at its
	 * end, stop reading without a FIN (a proxy may take a half-close for
	 * an abort). */
	bool limited, no_shut;
	uint64_t left;
};

struct conn {
	struct agent *ag;
	struct side_watch cw, uw;
	enum conn_state state;
	struct conn_info info;
	struct dir up, down;           /* up: client -> upstream */
	uint64_t deadline_ms;          /* peek/connect deadline, or idle deadline while relaying */
	struct loop_timer timer;       /* due at deadline_ms or before (see set_deadline) */
	const char *error;
	enum reason reason;            /* refused: why (audit, log, metrics) */
	const char *exception;         /* relayed by exception (static string), else NULL */
	char exception_rule[128];      /* the rejected_ca entry (or on_rejected_ca) behind it */
	bool audited;                  /* the connection event is written already */
	int status;                    /* HTTP status answered to a refused plain-HTTP client */
	char method[16], path[256];    /* plain HTTP: the request line, query removed */
	size_t lingered;
	bool via_proxy;                /* upstream through upstream_proxy (egress.c) */
	bool forward;                  /* replay fwd's head to the client's real proxy */
	bool learned_proxy;            /* to a learned proxy, first byte not seen yet */
	struct proxyconn_fwd fwd;
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

static struct loop_timer reaper;   /* frees dead_conns after the loop's event batch */
static void reap(struct loop_timer *t, uint64_t now);
static void conn_timeout(struct loop_timer *t, uint64_t now);

/* Moves the deadline. Relaying moves it on every read, so the timer is
 * moved only when the deadline comes earlier; a timer that fires before the
 * deadline sets itself again (conn_timeout). */
static void set_deadline(struct conn *c, uint64_t ms)
{
	c->deadline_ms = ms;
	if (!loop_timer_is_set(&c->timer) || ms < c->timer.due_ms)
		loop_timer_set(c->ag->loop, &c->timer, ms);
}

static void bury(struct conn *c)
{
	loop_timer_cancel(c->ag->loop, &c->timer);
	conn_unlink(c);
	c->next = dead_conns;
	dead_conns = c;
	reaper.fn = reap;
	loop_timer_set(c->ag->loop, &reaper, 0);
}

static void emit_connection_event(struct conn *c)
{
	struct audit_event ev;

	audit_event_init(&ev, "connection");
	conn_info_fill_event(&c->info, &ev);
	ev.method = c->method[0] ? c->method : NULL;
	ev.path = c->method[0] ? c->path : NULL;
	ev.status = c->status;
	ev.action = c->reason ? "block" : "passthrough";
	ev.reason = c->reason ? reason_name(c->reason) : c->exception ? c->exception : c->error ? "error" : NULL;
	ev.error = c->error;
	ev.rule = c->exception_rule[0] ? c->exception_rule : NULL;
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
	if (!c->audited)
		emit_connection_event(c);
	explicit_bzero(c->info.tunnel_auth, sizeof(c->info.tunnel_auth));
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
	bury(c);
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
		if (d->limited && !d->left && !d->src_eof) {
			d->src_eof = true;
			progress = true;
		}
		if (!d->src_eof && d->in_pipe < PIPE_SIZE) {
			size_t want = PIPE_SIZE - d->in_pipe;
			if (d->limited && want > d->left)
				want = (size_t)d->left;
			ssize_t n = splice(src, NULL, d->pipe[1], NULL, want,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->in_pipe += (size_t)n;
				if (d->limited)
					d->left -= (uint64_t)n;
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
			if (!d->no_shut)
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
	set_deadline(c, loop_now_ms() + c->ag->cfg->idle_timeout_ms);
}

static int make_pipe(struct dir *d)
{
	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
	return 0;
}

/* Returns 0, or -1 with the connection closed. */
static int start_relay(struct conn *c)
{
	if ((c->up.pipe[0] < 0 && make_pipe(&c->up)) || (c->down.pipe[0] < 0 && make_pipe(&c->down))) {
		conn_close(c, "out of pipes");
		return -1;
	}
	c->state = ST_RELAY;
	return 0;
}

static bool hand_to_interceptor(struct conn *c);
static void proxy_step(struct conn *c, bool deadline_passed);

/* The first flight in a tunnel the real proxy opened (proxyconn.c). */
static void tunnel_first(struct conn *c, bool deadline_passed)
{
	const char *error = NULL;
	switch (proxyconn_tunnel_first(c->ag, c->cw.w.fd, c->uw.w.fd, &c->info, deadline_passed, &error)) {
	case PROXYCONN_MORE:
		return;
	case PROXYCONN_INTERCEPT: {
		/* The tunnel becomes the interceptor's first upstream. */
		int ufd = c->uw.w.fd;
		loop_del(c->ag->loop, &c->uw.w);
		c->uw.w.fd = -1;
		c->info.tunnel_fd = ufd;
		c->info.have_tunnel_fd = true;
		if (!hand_to_interceptor(c)) {
			close(ufd);
			c->info.have_tunnel_fd = false;
			conn_close(c, "cannot start interception for a proxy tunnel");
		}
		return;
	}
	case PROXYCONN_REFUSED:
		c->audited = true;
		conn_close(c, NULL);
		return;
	case PROXYCONN_GONE:
		conn_close(c, error);
		return;
	default:
		if (!start_relay(c))
			relay(c);
		return;
	}
}

/* The client's head goes to its real proxy, connected now (or still
 * connected after a refusal). */
static void replay_to_proxy(struct conn *c)
{
	int sent = proxyconn_replay_head(c->cw.w.fd, c->uw.w.fd, &c->fwd);

	if (sent < 0) {
		conn_close(c, "cannot replay the request to the proxy");
		return;
	}
	c->up.bytes += (uint64_t)sent;
	if (c->fwd.tunnel) {
		c->state = ST_TUNNEL_REPLY;
		set_deadline(c, loop_now_ms() + c->ag->cfg->upstream_timeout_ms);
		return;
	}
	/* One plain-HTTP request: its body, then nothing more from the
	 * client; the proxy closes after its answer (Connection: close). */
	c->up.limited = c->up.no_shut = true;
	c->up.left = c->fwd.body_len;
	if (!start_relay(c))
		relay(c);
}

/* A refusal's body on its way to the client; then the client may answer
 * it (a 407 challenge) with a new request on this same connection, which
 * is read and decided like the first: auth handshakes such as NTLM need
 * the connection, and nothing on it passes unread. */
static void refusal_body(struct conn *c)
{
	if (pump(c, &c->down, c->uw.w.fd, c->cw.w.fd)) {
		conn_close(c, c->error);
		return;
	}
	if (c->down.left || c->down.in_pipe)
		return;
	c->down.src_eof = c->down.shut = c->down.limited = c->down.no_shut = false;
	c->forward = false;
	c->state = ST_PROXY_HEAD;
	set_deadline(c, loop_now_ms() + c->ag->cfg->header_timeout_ms);
	proxy_step(c, false);
}

/* The real proxy's answer to a replayed CONNECT, passed to the client. */
static void tunnel_reply(struct conn *c)
{
	size_t passed = 0;
	int64_t body = -1;
	int status = proxyconn_pass_reply(c->uw.w.fd, c->cw.w.fd, &passed, &body);

	if (status == 0)
		return;
	c->down.bytes += passed;
	if (status < 0) {
		conn_close(c, "the proxy's answer to CONNECT is malformed");
		return;
	}
	if (status >= 200 && status < 300) {
		c->state = ST_TUNNEL_FIRST;
		set_deadline(c, loop_now_ms() + c->ag->cfg->header_timeout_ms);
		tunnel_first(c, false);
		return;
	}
	if (body < 0) {
		/* No length: the rest of the answer until the proxy closes,
		 * and nothing more from the client. */
		c->up.limited = c->up.no_shut = true;
		c->up.left = 0;
		if (!start_relay(c))
			relay(c);
		return;
	}
	c->down.limited = c->down.no_shut = true;
	c->down.left = (uint64_t)body;
	if (start_relay(c))
		return;
	c->state = ST_REFUSAL_BODY;
	set_deadline(c, loop_now_ms() + c->ag->cfg->idle_timeout_ms);
	refusal_body(c);
}

/* Returns true once the upstream connect finished (false: wait, or closed). */
static bool upstream_connected(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return false;
	getsockopt(c->uw.w.fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		atomic_fetch_add(&c->ag->stats.upstream_fail, 1);
		log_info("upstream %s:%u: %s", c->info.id.dst_ip, c->info.id.dst_port, strerror(err));
		conn_close(c, "upstream connect failed");
		return false;
	}
	return true;
}

static void upstream_event(struct loop_watch *w, uint32_t events)
{
	struct conn *c = ((struct side_watch *)w)->c;

	switch (c->state) {
	case ST_CONNECTING:
		if (!upstream_connected(c, events))
			return;
		if (c->forward) {
			replay_to_proxy(c);
		} else if (c->via_proxy) {
			if (egress_passthrough_connect(c->ag, w->fd, &c->info)) {
				conn_close(c, "upstream proxy CONNECT failed");
				return;
			}
			c->state = ST_UPSTREAM_CONNECT;
		} else if (!start_relay(c)) {
			relay(c);
		}
		return;
	case ST_TUNNEL_REPLY:
		tunnel_reply(c);
		return;
	case ST_REFUSAL_BODY:
		refusal_body(c);
		return;
	case ST_TUNNEL_FIRST:
		tunnel_first(c, false);
		return;
	case ST_UPSTREAM_CONNECT: {
		int status = egress_passthrough_reply(w->fd);
		if (status == 0)
			return;
		if (status < 200 || status > 299) {
			atomic_fetch_add(&c->ag->stats.upstream_fail, 1);
			log_info("upstream proxy CONNECT %s:%u: %s %d", c->info.id.dst_ip, c->info.id.dst_port,
				 status < 0 ? "failed" : "answered", status < 0 ? -status : status);
			conn_close(c, status < 0 ? "upstream proxy CONNECT failed" :
						   "upstream proxy refused CONNECT");
			return;
		}
		if (!start_relay(c))
			relay(c);
		return;
	}
	case ST_RELAY:
		relay(c);
		return;
	default:
		return;   /* ST_PROXY_HEAD after a refusal: the client's turn */
	}
}

static void client_event(struct loop_watch *w, uint32_t events);

static void start_passthrough(struct conn *c)
{
	int fd;
	atomic_fetch_add(&c->ag->stats.passthrough, 1);
	fd = egress_passthrough_open(c->ag, &c->info, c->state == ST_PROXY_HEAD, &c->via_proxy);
	if (fd < 0) {
		log_info("upstream %s:%u: %s", c->info.id.dst_ip, c->info.id.dst_port, strerror(-fd));
		atomic_fetch_add(&c->ag->stats.upstream_fail, 1);
		conn_close(c, "upstream connect failed");
		return;
	}
	c->uw.w.fd = fd;
	c->state = ST_CONNECTING;
	set_deadline(c, loop_now_ms() + c->ag->cfg->upstream_timeout_ms);
	if (loop_add(c->ag->loop, &c->uw.w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)) {
		conn_close(c, "epoll failed");
		return;
	}
	/* From now on client readiness drives the relay. */
	loop_mod(c->ag->loop, &c->cw.w, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

/* Hands the client socket to the interceptor. Returns false (socket still
 * ours, back on the loop) if it could not start. */
static bool hand_to_interceptor(struct conn *c)
{
	struct agent *ag = c->ag;
	int cfd = c->cw.w.fd;

	loop_del(ag->loop, &c->cw.w);
	if (intercept_start(ag, cfd, &c->info) == 0) {
		atomic_fetch_add(&ag->stats.intercepted, 1);
		/* The interceptor owns the socket and audits the exchange now. */
		c->cw.w.fd = -1;
		c->state = ST_DEAD;
		dir_close(&c->up);
		dir_close(&c->down);
		explicit_bzero(c->info.tunnel_auth, sizeof(c->info.tunnel_auth));
		bury(c);
		atomic_fetch_sub(&ag->stats.active, 1);
		return true;
	}
	loop_add(ag->loop, &c->cw.w, EPOLLIN | EPOLLRDHUP | EPOLLET);
	return false;
}

/* Reads and drops what the client sent. Returns true at EOF or error. */
static bool discard_input(struct conn *c)
{
	static char sink[16384];
	while (c->lingered < LINGER_MAX) {
		ssize_t n = recv(c->cw.w.fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n > 0) {
			c->lingered += (size_t)n;
			continue;
		}
		return n == 0 || (errno != EAGAIN && errno != EINTR);
	}
	return true;
}

/* The fatal alert a refused TLS client gets (RFC 8446 6.2): it is sent
 * before any key exists, so in the clear, and the client reports it at once
 * instead of waiting for a ServerHello. */
static void send_alert(int fd, enum reason why)
{
	uint8_t desc = why == REASON_NO_SNI || why == REASON_UNWATCHED_SNI ? 112 :   /* unrecognized_name */
		       why == REASON_CLIENTHELLO_INVALID ? 50 :                       /* decode_error */
		       why == REASON_INTERCEPT_UNAVAILABLE ? 80 :                     /* internal_error */
		       40;                                                            /* handshake_failure */
	const uint8_t rec[7] = { 21, 3, 3, 0, 2, 2, desc };
	(void)!send(fd, rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* A plain-HTTP client's answer, in the shape of the provider its Host
 * names (an SDK shows it), saying that HTTPS is required. */
static void send_http_refusal(struct conn *c, int status)
{
	char msg[320], resp[2048];
	int n;

	if (status == 403)
		snprintf(msg, sizeof(msg), "plain HTTP to %s is refused: HTTPS is required",
			 c->info.sni[0] ? c->info.sni : "this address");
	else
		snprintf(msg, sizeof(msg), "%s plain-HTTP request refused: HTTPS is required",
			 status == 408 ? "incomplete" : status == 431 ? "oversized" : "malformed");
	n = exchange_error_response(provider_identify(c->info.sni[0] ? c->info.sni : NULL, c->path), c->path, NULL,
				    status, reason_name(REASON_PLAIN_HTTP), msg, resp, sizeof(resp));
	if (n > 0)
		(void)!send(c->cw.w.fd, resp, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Refuses the connection: audit, count, answer in the client's protocol,
 * then linger (or close at once when the client spoke neither TLS nor
 * HTTP: there is nothing it could read). */
static void refuse(struct conn *c, enum reason why, bool tls, int http_status)
{
	struct agent *ag = c->ag;

	c->reason = why;
	c->status = http_status;
	metrics_count_reason(ag, why);
	log_info("refused connection of pid %lld (%s) to %s:%u%s%s: %s", (long long)c->info.id.pid,
		 c->info.id.comm, c->info.id.dst_ip, c->info.id.dst_port, c->info.sni[0] ? " for " : "",
		 c->info.sni, reason_text(why));
	/* Audit first: the refusal is on record even if the answer is lost. */
	emit_connection_event(c);
	c->audited = true;
	/* Read what is queued first: closing with unread bytes would reset
	 * the connection and could destroy the answer before it is read. */
	bool eof = discard_input(c);
	if (http_status)
		send_http_refusal(c, http_status);
	else if (tls)
		send_alert(c->cw.w.fd, why);
	if (eof || (!tls && !http_status)) {
		conn_close(c, NULL);
		return;
	}
	shutdown(c->cw.w.fd, SHUT_WR);
	c->state = ST_LINGER;
	set_deadline(c, loop_now_ms() + LINGER_MS);
}

/* This program refused the CA for this host a moment ago: relay it
 * undecrypted for a while rather than break it, when the policy's
 * rejected_ca entry for it (else on_rejected_ca) says passthrough, on
 * record as an exception naming the entry that the SOC can list. The
 * policy is consulted only once a refusal is remembered. */
static bool rejected_ca_exception(struct conn *c)
{
	uint64_t ttl, at, now = loop_now_ms();
	bool pass;

	if (!rejca_last(c->ag->rejected_ca, c->info.id.exe, c->info.sni, &at))
		return false;
	pass = conn_info_rejected_ca(c->ag, &c->info, &ttl, c->exception_rule, sizeof(c->exception_rule));
	if (!pass || !rejca_within(at, now, ttl)) {
		c->exception_rule[0] = 0;
		return false;
	}
	c->exception = "rejected_ca_exception";
	log_info("relaying %s for %s undecrypted: it refused the interception CA (rejected_ca: %s)", c->info.sni,
		 c->info.id.exe, c->exception_rule);
	return true;
}

/* Hands a watched (or, with unwatched_sni: intercept, an unwatched)
 * connection to the interceptor. Without a CA nothing is decrypted (an
 * audit-only agent) and the connection is relayed as before. */
static void intercept(struct conn *c)
{
	if (!c->ag->certgen) {
		start_passthrough(c);
		return;
	}
	if (rejected_ca_exception(c)) {
		start_passthrough(c);
		return;
	}
	/* A name the agent will not put in a certificate (an IP literal, one
	 * label, '_'; see certgen_valid_sni) cannot be intercepted, and must
	 * not be relayed either: refuse it here, on record, rather than let
	 * the interceptor fail without an event. */
	if (!certgen_valid_sni(c->info.sni, strlen(c->info.sni))) {
		refuse(c, REASON_CLIENTHELLO_INVALID, true, 0);
		return;
	}
	if (hand_to_interceptor(c))
		return;
	/* Relaying a watched connection uninspected is what this agent exists
	 * to prevent: refuse it, the client retries. */
	refuse(c, REASON_INTERCEPT_UNAVAILABLE, true, 0);
}

/* Only the chat web apps brought this connection's address into the
 * target set: another name there is a site the browser visits on the
 * app's CDN (chatgpt.com shares its addresses with much of the web), and
 * only app hosts are decrypted, whatever unwatched_sni says for API
 * addresses. */
static bool app_only_address(struct conn *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!c->info.have_origin || !c->ag->targets)
		return false;
	egress_origin_sockaddr(&c->info.origin, &ss, &len);
	return targets_app_only(c->ag->targets, (struct sockaddr *)&ss);
}

/* What a classified first flight gets: intercept, relay or refusal. */
static void decide(struct conn *c, const struct classify_result *r)
{
	const struct config *cfg = c->ag->cfg;
	const char *const *endpoints = (const char *const *)cfg->endpoints;
	bool watched;

	snprintf(c->info.sni, sizeof(c->info.sni), "%s", r->name);
	watched = r->name[0] && config_host_watched(endpoints, cfg->n_endpoints, r->name);
	if (r->kind == CLASSIFY_REFUSE) {
		refuse(c, r->reason, r->tls, r->http ? r->http_status : 0);
		return;
	}
	if (r->kind == CLASSIFY_HTTP) {
		snprintf(c->method, sizeof(c->method), "%s", r->method);
		snprintf(c->path, sizeof(c->path), "%s", r->path);
		/* Plain HTTP cannot be intercepted and a watched API must not get
		 * it in the clear. Another site's Host is relayed only where the
		 * site accepts fronting (passthrough); intercept and block cannot
		 * look inside a plain-HTTP relay, so they refuse it too. */
		if (watched || (cfg->unwatched_sni != CONFIG_UNWATCHED_PASSTHROUGH && !app_only_address(c)))
			refuse(c, REASON_PLAIN_HTTP, false, 403);
		else
			start_passthrough(c);
		return;
	}
	if (watched) {
		if (config_host_watched((const char *const *)cfg->passthrough, cfg->n_passthrough, r->name))
			start_passthrough(c);
		else
			intercept(c);
		return;
	}
	if (app_only_address(c)) {
		start_passthrough(c);
		return;
	}
	switch (cfg->unwatched_sni) {
	case CONFIG_UNWATCHED_PASSTHROUGH:
		start_passthrough(c);
		break;
	case CONFIG_UNWATCHED_BLOCK:
		refuse(c, REASON_UNWATCHED_SNI, true, 0);
		break;
	default:
		intercept(c);
		break;
	}
}

static void try_peek(struct conn *c, bool deadline_passed);

/* A proxy the guard learned from a CONNECT line may be any server that
 * was sent one (by anyone in the cgroup): a client of it whose first byte
 * starts a TLS handshake record is classified as on a target address
 * (SNI decides), not refused as a bad proxy request. */
static bool learned_proxy_speaks_tls(struct conn *c, bool deadline_passed)
{
	uint8_t b;

	if (!c->learned_proxy || recv(c->cw.w.fd, &b, 1, MSG_PEEK) != 1)
		return false;
	c->learned_proxy = false;
	if (b != 22)                            /* TLS handshake record */
		return false;
	c->state = ST_PEEK;
	set_deadline(c, c->info.t_start_ms + c->ag->cfg->clienthello_timeout_ms);
	try_peek(c, deadline_passed || loop_now_ms() >= c->deadline_ms);
	return true;
}

/* A connection to an explicit proxy: the client's request to it. */
static void proxy_step(struct conn *c, bool deadline_passed)
{
	const char *error = NULL;

	if (learned_proxy_speaks_tls(c, deadline_passed))
		return;
	switch (proxyconn_head(c->ag, c->cw.w.fd, &c->info, deadline_passed, &c->fwd, &error)) {
	case PROXYCONN_MORE:
		return;
	case PROXYCONN_FORWARD:
		c->forward = true;
		if (c->uw.w.fd >= 0)
			replay_to_proxy(c);   /* the same proxy connection, after a refusal */
		else
			start_passthrough(c);
		return;
	case PROXYCONN_REFUSED:
		c->audited = true;
		conn_close(c, NULL);
		return;
	default:
		conn_close(c, error);
		return;
	}
}

static void try_peek(struct conn *c, bool deadline_passed)
{
	static uint8_t buf[PEEK_BUF];
	struct classify_result r;
	ssize_t n = recv(c->cw.w.fd, buf, sizeof(buf), MSG_PEEK);

	if (n == 0) {
		conn_close(c, "client closed before sending");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			conn_close(c, "client read failed");
			return;
		}
		n = 0;
	}
	classify_first_flight(buf, (size_t)n, deadline_passed, (size_t)n == sizeof(buf), &r);
	if (r.kind != CLASSIFY_NEED_MORE)
		decide(c, &r);
}

static void linger_read(struct conn *c)
{
	if (discard_input(c))
		conn_close(c, NULL);
}

static void client_event(struct loop_watch *w, uint32_t events)
{
	struct conn *c = ((struct side_watch *)w)->c;
	if (c->state == ST_PEEK)
		try_peek(c, false);
	else if (c->state == ST_LINGER)
		linger_read(c);
	else if (c->state == ST_PROXY_HEAD)
		proxy_step(c, false);
	else if (c->state == ST_TUNNEL_FIRST)
		tunnel_first(c, false);
	else if (c->state == ST_REFUSAL_BODY)
		refusal_body(c);
	else if (c->state == ST_RELAY)
		relay(c);
	else if ((c->state == ST_CONNECTING || c->state == ST_UPSTREAM_CONNECT ||
		  c->state == ST_TUNNEL_REPLY) &&
		 (events & (EPOLLERR | EPOLLHUP)) &&
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
	c->timer.fn = conn_timeout;
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
	c->state = proxyconn_is_proxy(ag, &c->info.origin) ? ST_PROXY_HEAD : ST_PEEK;
	c->learned_proxy = c->state == ST_PROXY_HEAD && proxyconn_is_learned(ag, &c->info.origin);
	set_deadline(c, c->info.t_start_ms + (c->state == ST_PEEK ? ag->cfg->clienthello_timeout_ms
								     : ag->cfg->header_timeout_ms));
	if (loop_add(ag->loop, &c->cw.w, EPOLLIN | EPOLLRDHUP | EPOLLET)) {
		conn_close(c, "epoll failed");
		return;
	}
	if (c->state == ST_PROXY_HEAD)
		proxy_step(c, false);
	else
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

static void reap(struct loop_timer *t, uint64_t now)
{
	(void)t;
	(void)now;
	while (dead_conns) {
		struct conn *c = dead_conns;
		dead_conns = c->next;
		free(c);
	}
}

static void conn_timeout(struct loop_timer *t, uint64_t now)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
	if (now < c->deadline_ms) {   /* moved later since the timer was set */
		loop_timer_set(c->ag->loop, &c->timer, c->deadline_ms);
		return;
	}
	switch (c->state) {
	case ST_PEEK:
		try_peek(c, true);
		break;
	case ST_PROXY_HEAD:
		proxy_step(c, true);
		break;
	case ST_CONNECTING:
		conn_close(c, "upstream connect timed out");
		break;
	case ST_UPSTREAM_CONNECT:
	case ST_TUNNEL_REPLY:
		conn_close(c, "upstream proxy CONNECT timed out");
		break;
	case ST_REFUSAL_BODY:
		conn_close(c, "idle timeout");
		break;
	case ST_TUNNEL_FIRST:
		tunnel_first(c, true);
		break;
	case ST_RELAY:
		conn_close(c, "idle timeout");
		break;
	case ST_LINGER:
		conn_close(c, NULL);
		break;
	default:
		break;
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
	reap(&reaper, 0);
	loop_timer_cancel(ag->loop, &reaper);
}
