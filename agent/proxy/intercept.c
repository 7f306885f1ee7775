/* intercept: the TLS man-in-the-middle for watched LLM hosts. The
 * client's TLS handshake, every wait for a next keep-alive request and the
 * HTTP/1.1 exchanges themselves run on the event loop (icpark.c and
 * loop_step below), so neither an idle nor a busy connection holds a
 * thread; only what would block the loop (opening a new upstream, a
 * WebSocket relay, the linger after a refusal, a large request's
 * inspection) and HTTP/2 connections go to a thread of their own, with
 * non-blocking sockets and poll() deadlines. The HTTP/1.1 logic (requests,
 * limits, the exchange, answers, pipelining) is the sans-IO engine in
 * h1x.c; this file is its driver and owns what the engine must not: the
 * TLS connections on both sides, the upstream pool, the clock. The driver
 * writes what the engine emits, carries out its actions (connect, close,
 * relay a WebSocket, linger), reads the side it wants and wakes it at its
 * deadline. HTTP/2 streams (h2.c) come back through the same engine.
 * Pass-through traffic stays on the event loop (conn.c).
 *
 * What this file must never do: trust an upstream certificate the system
 * store (plus upstream_ca) does not, lend a tunnel opened with a client's
 * proxy credentials to another client, or write a header value, body or
 * query string into a log. */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "agent.h"
#include "audit/audit.h"
#include "net/certgen.h"
#include "net/egress.h"
#include "proxy/exchange.h"
#include "http.h"
#include "proxy/grpccall.h"
#include "proxy/h1x.h"
#include "proxy/h2.h"
#include "proxy/icpark.h"
#include "zrle.h"
#include "log.h"
#include "loop.h"
#include "efd.h"
#include "proxy/mcp.h"
#include "metrics.h"
#include "audit/reason.h"
#include "net/rejca.h"
#include "net/sni.h"
#include "net/tls.h"
#include "proxy/wsrelay.h"

#define POOL_MAX 32
#define POOL_PER_KEY 4
#define POOL_IDLE_MS 30000
#define PARK_GRACE_MS 100          /* a keep-alive connection quiet this long leaves its thread */

/* ---- I/O with deadlines over non-blocking sockets ---- */

static int wait_fd(int fd, short events, uint64_t deadline)
{
	uint64_t now = loop_now_ms();
	struct pollfd p = { .fd = fd, .events = events };
	if (now >= deadline)
		return -ETIMEDOUT;
	int n = poll(&p, 1, (int)(deadline - now));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

/* SSL_get_error needs an empty error queue before each I/O call; clearing
 * it unconditionally walks all sixteen slots every time (it showed in the
 * proxy profile), so only when something is there. */
static void clear_errors(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

/* One SSL_read that never waits: > 0 bytes, 0 clean EOF, -EAGAIN (*ev:
 * what the socket must become first, POLLIN or POLLOUT), < 0 -errno. */
static ssize_t tls_read_nb(SSL *ssl, void *buf, size_t len, short *ev)
{
	clear_errors();
	int n = SSL_read(ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
	if (n > 0)
		return n;
	int e = SSL_get_error(ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		return -EAGAIN;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	return -EIO;
}

/* One SSL_write_ex that never waits: bytes written (> 0; partial writes
 * are on), -EAGAIN (*ev as above) or -EIO. */
static ssize_t tls_write_nb(SSL *ssl, const void *buf, size_t len, short *ev)
{
	size_t w = 0;
	clear_errors();
	if (SSL_write_ex(ssl, buf, len, &w) == 1)
		return (ssize_t)w;
	int e = SSL_get_error(ssl, 0);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		return -EAGAIN;
	}
	return -EIO;
}

/* Partial writes (the loop's driver counts what went out) from a buffer
 * that may have moved since the write that had to wait. */
static void tls_nb_modes(SSL *ssl)
{
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* One SSL_read: > 0 bytes, 0 clean EOF, < 0 -errno. */
static ssize_t tls_read(SSL *ssl, int fd, void *buf, size_t len, uint64_t deadline)
{
	for (;;) {
		short ev = 0;
		ssize_t n = tls_read_nb(ssl, buf, len, &ev);
		int ret;
		if (n != -EAGAIN)
			return n;
		if ((ret = wait_fd(fd, ev, deadline)))
			return ret;
	}
}

static int tls_write_all(SSL *ssl, int fd, const void *buf, size_t len, uint64_t deadline)
{
	const char *p = buf;
	while (len) {
		short ev = 0;
		ssize_t w = tls_write_nb(ssl, p, len, &ev);
		int ret;
		if (w > 0) {
			p += w;
			len -= (size_t)w;
		} else if (w != -EAGAIN) {
			return -EIO;
		} else if ((ret = wait_fd(fd, ev, deadline))) {
			return ret;
		}
	}
	return 0;
}

static int tls_handshake(SSL *ssl, int fd, bool server, uint64_t deadline)
{
	for (;;) {
		clear_errors();
		int n = server ? SSL_accept(ssl) : SSL_connect(ssl);
		if (n == 1)
			return 0;
		int e = SSL_get_error(ssl, n), ret;
		if (e == SSL_ERROR_WANT_READ)
			ret = wait_fd(fd, POLLIN, deadline);
		else if (e == SSL_ERROR_WANT_WRITE)
			ret = wait_fd(fd, POLLOUT, deadline);
		else
			return -EPROTO;
		if (ret)
			return ret;
	}
}

/* ---- upstream pool: idle, verified TLS connections per (destination, SNI) ---- */

struct upstream {
	int fd;
	SSL *ssl;
	uint8_t addr[16];
	uint16_t port;
	uint16_t tunnel_port;      /* CONNECT port through the client's proxy (0 = none) */
	char sni[256];
	uint64_t idle_since;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upstream pool[POOL_MAX];
static int pool_n;

static void upstream_close(struct upstream *u)
{
	if (u->ssl) {
		SSL_shutdown(u->ssl);
		SSL_free(u->ssl);
	}
	if (u->fd >= 0)
		close(u->fd);
	u->ssl = NULL;
	u->fd = -1;
}

/* An idle upstream that has become readable was closed by the server (or
 * sent bytes nobody asked for): either way it is not reusable. */
static bool upstream_alive(const struct upstream *u)
{
	struct pollfd p = { .fd = u->fd, .events = POLLIN };
	return poll(&p, 1, 0) == 0;
}

static bool pool_take(const struct vigil_origin *o, const char *sni, uint16_t tunnel_port,
		      struct upstream *out)
{
	bool found = false;
	uint64_t now = loop_now_ms();
	pthread_mutex_lock(&pool_lock);
	for (int i = pool_n - 1; i >= 0; i--) {
		struct upstream *u = &pool[i];
		bool match = !memcmp(u->addr, o->orig_addr, 16) && u->port == o->orig_port &&
			     u->tunnel_port == tunnel_port && !strcmp(u->sni, sni);
		bool stale = now - u->idle_since > POOL_IDLE_MS;
		if (!match && !stale)
			continue;
		struct upstream tmp = *u;
		pool[i] = pool[--pool_n];
		if (match && !stale && !found && upstream_alive(&tmp)) {
			*out = tmp;
			found = true;
		} else {
			upstream_close(&tmp);
		}
	}
	pthread_mutex_unlock(&pool_lock);
	return found;
}

static void pool_put(struct upstream *u)
{
	int same = 0;
	pthread_mutex_lock(&pool_lock);
	for (int i = 0; i < pool_n; i++)
		if (!memcmp(pool[i].addr, u->addr, 16) && pool[i].port == u->port &&
		    pool[i].tunnel_port == u->tunnel_port && !strcmp(pool[i].sni, u->sni))
			same++;
	if (pool_n < POOL_MAX && same < POOL_PER_KEY) {
		u->idle_since = loop_now_ms();
		pool[pool_n++] = *u;
		u->ssl = NULL;
		u->fd = -1;
	}
	pthread_mutex_unlock(&pool_lock);
	upstream_close(u);
}

/* ---- one intercepted client connection ---- */

struct ic {
	struct agent *ag;
	struct conn_info info;
	int cfd;
	SSL *cssl;
	struct upstream up;
	struct h1x *hx;            /* the HTTP/1.1 exchange engine (h1x.h) */
	struct exchange_conn xc;   /* scan state and token vault of this conversation */
	struct h2_stream *h2;      /* HTTP/2: the stream answers go through (h2.h) */
	int cancel_fd;             /* HTTP/2: an eventfd the stream's reset writes (h2_watch_cancel); -1 */
	bool want_h2;              /* gRPC: the upstream must speak HTTP/2 (ALPN h2 only) */
	struct upstream gup;       /* gRPC: the HTTP/2 upstream, apart from up (HTTP/1.1) */
	struct grpccall_session *gsess;  /* its session, kept across the connection's calls */
	struct icpark park;        /* handshake and idle waits on the loop (icpark.h) */
	/* served on the loop (loop_step) */
	struct loop_watch upw;     /* the upstream socket */
	uint32_t upev;             /* what upw waits for (0: not on the loop) */
	uint8_t lop;               /* a LOP_* the loop's timer carries out next */
	unsigned pend_act;         /* H1X_* actions the loop left to a thread */
	uint64_t idle_at;          /* the engine idle since (0: busy) */
	uint64_t cstall, ustall;   /* writes to the client / upstream waiting since (0: not) */
	size_t req_rx;             /* client bytes fed since the engine was last idle */
};

/* An HTTP/1.1 upstream at hand without waiting: the client's own tunnel,
 * kept while it was parked, or a pooled one (either reused: one retry if
 * it turns out closed). */
static bool upstream_ready(struct ic *ic)
{
	if (ic->want_h2)
		return false;
	return ic->up.ssl || pool_take(&ic->info.origin, ic->info.sni, ic->info.tunnel_port, &ic->up);
}

/* Opens the upstream the engine asked for: from the pool (*reused), the
 * client's own tunnel, or a new verified TLS connection. On failure
 * *reason (may stay NULL) and err say why. */
static int upstream_connect(struct ic *ic, bool *reused, const char **reason, char *err, size_t errlen)
{
	const struct config *cfg = ic->ag->cfg;
	uint64_t deadline = loop_now_ms() + cfg->upstream_timeout_ms;
	struct egress_route route;
	int fd, ret;

	*reused = upstream_ready(ic);
	if (*reused)
		return 0;
	if (ic->info.have_tunnel_fd) {
		/* The client's own tunnel through its proxy, opened before the
		 * hand-over: the first upstream, used once. */
		fd = ic->info.tunnel_fd;
		ic->info.have_tunnel_fd = false;
	} else {
		if ((ret = egress_route_for(ic->ag, &ic->info, &route, err, errlen))) {
			*reason = "upstream_unreachable";
			return ret;
		}
		/* egress_open names a reason before it knows the outcome: only a
		 * failure's reason goes into the event. */
		const char *why = NULL;
		fd = egress_open(ic->ag, &route, deadline, &why, err, errlen);
		if (fd < 0) {
			*reason = why;
			return fd;
		}
	}
	ic->up.fd = fd;
	memcpy(ic->up.addr, ic->info.origin.orig_addr, 16);
	ic->up.port = ic->info.origin.orig_port;
	ic->up.tunnel_port = ic->info.tunnel_port;
	snprintf(ic->up.sni, sizeof(ic->up.sni), "%s", ic->info.sni);
	ic->up.ssl = tls_upstream_new(ic->ag->upstream_ctx, fd, ic->info.sni);
	if (!ic->up.ssl) {
		snprintf(err, errlen, "upstream TLS setup failed");
		upstream_close(&ic->up);
		return -ENOMEM;
	}
	SSL_set_options(ic->up.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	tls_nb_modes(ic->up.ssl);
	if (ic->want_h2)
		SSL_set_alpn_protos(ic->up.ssl, (const unsigned char *)"\x02h2", 3);
	SSL_set_read_ahead(ic->up.ssl, 1);
	SSL_set_mode(ic->up.ssl, SSL_MODE_RELEASE_BUFFERS);
	if ((ret = tls_handshake(ic->up.ssl, fd, false, deadline))) {
		const char *why = tls_verify_reason(ic->up.ssl);
		if (SSL_get_verify_result(ic->up.ssl) != X509_V_OK && strcmp(why, "ok")) {
			snprintf(err, errlen, "upstream certificate rejected: %s", why);
			*reason = "upstream_cert_invalid";
		} else {
			snprintf(err, errlen, "upstream TLS handshake failed");
			*reason = "upstream_tls_failed";
		}
		upstream_close(&ic->up);
		return -EPROTO;
	}
	tls_upstream_save_session(ic->up.ssl, ic->info.sni);
	return 0;
}

/* After refusing a request the client may still be sending its body:
 * closing at once would make the kernel answer with a reset that can
 * destroy our error response before the client reads it. Say we are done
 * (close_notify, FIN), then read and discard for a bounded time. */
static void linger(struct ic *ic)
{
	char buf[16384];
	uint64_t deadline = loop_now_ms() + 2000;
	size_t drained = 0;

	SSL_shutdown(ic->cssl);
	shutdown(ic->cfd, SHUT_WR);
	while (drained < (8u << 20)) {
		ssize_t n = tls_read(ic->cssl, ic->cfd, buf, sizeof(buf), deadline);
		if (n <= 0)
			break;
		drained += (size_t)n;
	}
}

/* Writes what the engine has for the client (through the HTTP/2 codec for
 * a stream). 0 or -errno. */
static int flush_client(struct ic *ic)
{
	struct iovec iov[2];
	unsigned n = h1x_client_out(ic->hx, iov);
	for (unsigned i = 0; i < n; i++) {
		int ret = ic->h2 ? h2_respond(ic->h2, iov[i].iov_base, iov[i].iov_len) :
				   tls_write_all(ic->cssl, ic->cfd, iov[i].iov_base, iov[i].iov_len,
						 loop_now_ms() + ic->ag->cfg->idle_timeout_ms);
		if (ret)
			return ret;
		h1x_client_sent(ic->hx, iov[i].iov_len);
	}
	return 0;
}

static int flush_upstream(struct ic *ic)
{
	struct iovec iov[2];
	unsigned n = h1x_upstream_out(ic->hx, iov);
	uint64_t deadline = loop_now_ms() + ic->ag->cfg->upstream_timeout_ms;
	for (unsigned i = 0; i < n; i++) {
		if (tls_write_all(ic->up.ssl, ic->up.fd, iov[i].iov_base, iov[i].iov_len, deadline))
			return -EIO;
		h1x_upstream_sent(ic->hx, iov[i].iov_len);
	}
	return 0;
}

/* One SSL_read that does not wait for input: > 0 bytes, 0 EOF, -EAGAIN
 * nothing yet, < 0 error. A TLS write it needs (a key update) waits for
 * the socket. */
static ssize_t tls_read_now(SSL *ssl, int fd, void *buf, size_t len, uint64_t deadline)
{
	for (;;) {
		short ev = 0;
		ssize_t n = tls_read_nb(ssl, buf, len, &ev);
		int ret;
		if (n != -EAGAIN || ev == POLLIN)
			return n;
		if ((ret = wait_fd(fd, POLLOUT, deadline)))
			return ret;
	}
}

/* Reads what one side has into the engine. */
static void feed(struct ic *ic, bool client)
{
	struct h1x *hx = ic->hx;
	uint64_t now = loop_now_ms();
	size_t room;
	char *p = client ? h1x_client_space(hx, &room, now) : h1x_upstream_space(hx, &room, now);
	if (!p)
		return;
	ssize_t n = client ? tls_read_now(ic->cssl, ic->cfd, p, room, now + ic->ag->cfg->idle_timeout_ms) :
			     tls_read_now(ic->up.ssl, ic->up.fd, p, room, now + ic->ag->cfg->idle_timeout_ms);
	now = loop_now_ms();
	if (n > 0)
		client ? h1x_client_input(hx, (size_t)n, now) : h1x_upstream_input(hx, (size_t)n, now);
	else if (n != -EAGAIN)
		client ? h1x_client_eof(hx, (int)n, now) : h1x_upstream_eof(hx, (int)n, now);
}

/* Waits for the side(s) the engine wants, up to its deadline, and feeds
 * it. Bytes TLS already decrypted are read without waiting. */
static void wait_and_feed(struct ic *ic)
{
	struct h1x *hx = ic->hx;
	bool wc = h1x_want_client(hx), wu = h1x_want_upstream(hx) && ic->up.ssl;
	int np = 0;

	if (wc && SSL_has_pending(ic->cssl))
		return feed(ic, true);
	if (wu && SSL_has_pending(ic->up.ssl))
		return feed(ic, false);
	struct pollfd p[4];
	if (wc)
		p[np++] = (struct pollfd){ .fd = ic->cfd, .events = POLLIN };
	if (wu)
		p[np++] = (struct pollfd){ .fd = ic->up.fd, .events = POLLIN };
	/* an HTTP/2 stream's reset ends its wait on the upstream at once:
	 * the provider's answer (and its meter) is not waited out */
	int cancel = ic->h2 && ic->cancel_fd >= 0 && np ? np : -1;
	if (cancel >= 0)
		p[np++] = (struct pollfd){ .fd = ic->cancel_fd, .events = POLLIN };
	/* an HTTP/1.1 client that hangs up while its answer is awaited ends it */
	int gone = !wc && ic->cfd >= 0 && np && h1x_awaits_answer(hx) ? np : -1;
	if (gone >= 0)
		p[np++] = (struct pollfd){ .fd = ic->cfd, .events = POLLRDHUP };
	uint64_t now = loop_now_ms(), dl = h1x_deadline(hx);
	int timeout = !dl ? -1 : dl > now ? (int)(dl - now) : 0;
	int n = np || timeout >= 0 ? poll(p, (nfds_t)np, timeout) : 0;
	if (n < 0 && errno != EINTR)
		n = 0;
	if (n == 0) {
		h1x_tick(hx, loop_now_ms());
		return;
	}
	if (cancel >= 0 && p[cancel].revents) {
		h1x_client_write_failed(hx, loop_now_ms());
		return;
	}
	if (gone >= 0 && p[gone].revents) {
		h1x_client_gone(hx, loop_now_ms());
		return;
	}
	for (int i = 0; i < np && n > 0; i++)
		if (p[i].revents)
			return feed(ic, p[i].fd == ic->cfd && wc);
}

/* The relay after a 101 the engine accepted. */
static void relay_websocket(struct ic *ic)
{
	struct wsrelay_io io = {
		.cssl = ic->cssl, .ussl = ic->up.ssl, .cfd = ic->cfd, .ufd = ic->up.fd,
		.write_all = tls_write_all,
	};
	struct exchange *ex = h1x_ws(ic->hx, &io.cpend, &io.cpend_len, &io.upend, &io.upend_len);
	wsrelay_run(ex, &io);
	h1x_ws_done(ic->hx, loop_now_ms());
}

/* Serves the engine on this thread until it is done: writes what it
 * emits, carries out its actions (and those the loop left, pend_act),
 * feeds it what it wants, honours its deadline. to_loop: between
 * requests, it returns true instead (the loop serves the connection on,
 * loop_step). */
static bool drive(struct ic *ic, bool to_loop)
{
	struct h1x *hx = ic->hx;
	for (;;) {
		if (flush_client(ic))
			h1x_client_write_failed(hx, loop_now_ms());
		unsigned act = h1x_actions(hx) | ic->pend_act;
		ic->pend_act = 0;
		if (act & H1X_UP_CLOSE)
			upstream_close(&ic->up);
		if (act & H1X_WEBSOCKET) {
			relay_websocket(ic);
			continue;
		}
		if (act & H1X_CONNECT) {
			const char *reason = NULL;
			char err[256] = "";
			bool reused;
			if (upstream_connect(ic, &reused, &reason, err, sizeof(err)))
				h1x_upstream_failed(hx, reason, err, loop_now_ms());
			else
				h1x_upstream_connected(hx, reused, loop_now_ms());
			continue;
		}
		if (flush_upstream(ic)) {
			h1x_upstream_write_failed(hx, loop_now_ms());
			continue;
		}
		if (act & H1X_LINGER)
			linger(ic);
		if (h1x_done(hx))
			return false;
		if (!h1x_want_client(hx) && !h1x_want_upstream(hx) && !h1x_deadline(hx))
			return false;   /* nothing can move it: never spin */
		if (to_loop && h1x_idle(hx))
			return true;
		wait_and_feed(ic);
	}
}

/* ---- HTTP/2 clients: agent/proxy/h2.c turns each stream into a request that
 * the HTTP/1.1 engine (h1x) serves exactly as an HTTP/1.1 one ---- */

static bool h2_negotiated(SSL *ssl)
{
	const unsigned char *p;
	unsigned int n;
	SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 2 && !memcmp(p, "h2", 2);
}

/* The streams of one HTTP/2 connection run concurrently, each on its own
 * worker thread (h2.h) and its own struct ic (request and response
 * buffers, upstream, scan scratch): nothing of an exchange is shared
 * between streams but what is here, under mu. The connection's ic keeps
 * the client socket (its thread alone reads and writes it) and the gRPC
 * upstream, lent to one call at a time (gmu). */
#define H2_SPARE_IC 8
struct h2_glue {
	struct ic *ic;
	pthread_mutex_t mu;        /* spare, nspare, ic->info's tunnel fd */
	/* stream ics done with, kept for the next streams with their scan
	 * scratch, buffers and upstream (HTTP/1.1, kept as an HTTP/1.1
	 * connection keeps ic->up: the shared pool holds only POOL_PER_KEY
	 * per origin, too few for concurrent streams; measured with h2load
	 * -m8, 2 spares closed most upstreams and cost a TLS handshake
	 * upstream per request) */
	struct ic *spare[H2_SPARE_IC];
	unsigned nspare;
	pthread_mutex_t gmu;       /* held by the call using ic->gup and ic->gsess */
};

static void stream_ic_free(struct h2_glue *g, struct ic *sub);

/* A stream's own ic: a spare one, or a new one with the connection's
 * identity; the client's tunnel to its proxy if still unused (used once). */
static struct ic *stream_ic_new(struct h2_glue *g, struct h2_stream *st)
{
	struct ic *sub;

	pthread_mutex_lock(&g->mu);
	sub = g->nspare ? g->spare[--g->nspare] : calloc(1, sizeof(*sub));
	if (sub && !sub->ag) {
		sub->ag = g->ic->ag;
		sub->cfd = -1;
		sub->up.fd = -1;
		sub->gup.fd = -1;
		sub->cancel_fd = -1;
		sub->info = g->ic->info;   /* the same for every stream of the connection */
	}
	if (sub) {
		sub->info.have_tunnel_fd = g->ic->info.have_tunnel_fd;
		sub->info.tunnel_fd = g->ic->info.tunnel_fd;
		g->ic->info.have_tunnel_fd = false;
	}
	pthread_mutex_unlock(&g->mu);
	if (sub && !sub->hx && !(sub->hx = h1x_new(sub->ag, &sub->info, &sub->xc, loop_now_ms()))) {
		stream_ic_free(g, sub);
		return NULL;
	}
	if (sub)
		sub->h2 = st;
	return sub;
}

/* Everything a stream ic holds; the upstream as serve() leaves it at the
 * end of a connection. */
static void stream_ic_drop(struct ic *sub)
{
	if (sub->up.ssl && sub->hx && h1x_upstream_reusable(sub->hx) && !sub->info.tunnel_auth[0])
		pool_put(&sub->up);
	else
		upstream_close(&sub->up);
	h1x_free(sub->hx);
	exchange_conn_free(&sub->xc);
	if (sub->cancel_fd >= 0)
		close(sub->cancel_fd);
	explicit_bzero(sub->info.tunnel_auth, sizeof(sub->info.tunnel_auth));
	free(sub);
}

/* On the stream's worker thread, once its exchange is over: kept for the
 * next stream (large buffers given back), or dropped. */
static void stream_ic_free(struct h2_glue *g, struct ic *sub)
{
	bool kept = false;

	if (!sub->up.ssl || !sub->hx || !h1x_upstream_reusable(sub->hx))
		upstream_close(&sub->up);
	sub->h2 = NULL;
	pthread_mutex_lock(&g->mu);
	if (sub->info.have_tunnel_fd && !g->ic->info.have_tunnel_fd) {
		g->ic->info.have_tunnel_fd = true;     /* unused: the next stream's */
		g->ic->info.tunnel_fd = sub->info.tunnel_fd;
	} else if (sub->info.have_tunnel_fd) {
		close(sub->info.tunnel_fd);
	}
	sub->info.have_tunnel_fd = false;
	if (g->nspare < H2_SPARE_IC) {
		g->spare[g->nspare++] = sub;
		kept = true;
	}
	pthread_mutex_unlock(&g->mu);
	if (!kept)
		stream_ic_drop(sub);
}

/* A stream worker thread ends: OpenSSL's per-thread state goes with it. */
static void h2_io_worker_end(void *arg)
{
	(void)arg;
	OPENSSL_thread_stop();
}

/* The connection went idle: the spare stream ics go (their upstreams to
 * the pool), as an idle HTTP/1.1 connection gives back its own. */
static void h2_io_idle(void *arg)
{
	struct h2_glue *g = arg;
	struct ic *spare[H2_SPARE_IC];
	unsigned n;

	pthread_mutex_lock(&g->mu);
	n = g->nspare;
	memcpy(spare, g->spare, n * sizeof(spare[0]));
	g->nspare = 0;
	pthread_mutex_unlock(&g->mu);
	while (n)
		stream_ic_drop(spare[--n]);
}

/* The client socket, or -EAGAIN when a worker wakes the connection
 * thread (wake_fd) before the client says anything. */
static ssize_t h2_io_read(void *arg, void *buf, size_t len, uint32_t timeout_ms, int wake_fd)
{
	struct ic *ic = ((struct h2_glue *)arg)->ic;
	uint64_t deadline = loop_now_ms() + timeout_ms;

	if (wake_fd >= 0 && !SSL_has_pending(ic->cssl)) {
		struct pollfd p[2] = { { ic->cfd, POLLIN, 0 }, { wake_fd, POLLIN, 0 } };
		int n = poll(p, 2, (int)timeout_ms);
		if (n == 0)
			return -ETIMEDOUT;
		/* the client first: its WINDOW_UPDATEs are what answers wait for */
		if (n < 0 || !p[0].revents)
			return -EAGAIN;
	}
	return tls_read(ic->cssl, ic->cfd, buf, len, deadline);
}

static int h2_io_write(void *arg, const void *buf, size_t len)
{
	struct ic *ic = ((struct h2_glue *)arg)->ic;
	return tls_write_all(ic->cssl, ic->cfd, buf, len, loop_now_ms() + ic->ag->cfg->idle_timeout_ms);
}

/* On the stream's worker thread. */
static int h2_io_exchange(void *arg, struct h2_stream *st, const char *req, size_t len, int refuse)
{
	struct h2_glue *g = arg;
	struct ic *ic = stream_ic_new(g, st);
	if (!ic)
		return -ENOMEM;
	int ret = h1x_h2_begin(ic->hx, req, len, refuse, loop_now_ms());
	if (!ret) {
		if (ic->cancel_fd < 0)
			ic->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (ic->cancel_fd >= 0)
			h2_watch_cancel(st, ic->cancel_fd);
		drive(ic, false);
		if (ic->cancel_fd >= 0) {
			h2_watch_cancel(st, -1);
			efd_drain(ic->cancel_fd);   /* for the stream's next use */
		}
		/* cut short mid-answer (or reset by the client): the engine
		 * had the upstream closed too, never pooled */
		ret = h1x_h2_end(ic->hx);
	}
	stream_ic_free(g, ic);
	return ret;
}

/* Request bodies an HTTP/2 connection holds count against
 * limits.max_buffered_bytes like HTTP/1.1 ones (there is no free
 * allowance: every queued stream may hold one). */
static int h2_io_charge(void *arg, int64_t delta)
{
	struct ic *ic = ((struct h2_glue *)arg)->ic;
	atomic_ulong *b = &ic->ag->stats.buffered;
	if (delta > 0 && atomic_fetch_add(b, (unsigned long)delta) + (uint64_t)delta > ic->ag->cfg->max_buffered_bytes) {
		atomic_fetch_sub(b, (unsigned long)delta);
		return -ENOBUFS;
	}
	if (delta < 0)
		atomic_fetch_sub(b, (unsigned long)-delta);
	return 0;
}

/* gRPC streams (agent/proxy/grpccall.c): the upstream is an HTTP/2
 * connection of their own (ic->gup), kept for the client connection's
 * next calls, never pooled and never used for HTTP/1.1. ic is the
 * stream's own. */
struct grpc_glue {
	struct ic *ic;
	uint64_t ticket;           /* begin_request_event's, 0 = none yet */
};

static int grpc_up_connect(void *arg, struct exchange *ex)
{
	struct ic *ic = ((struct grpc_glue *)arg)->ic;
	struct upstream h1 = ic->up;   /* kept for this connection's HTTP/1.1 streams */
	const char *reason = NULL;
	bool reused;
	int ret;

	upstream_close(&ic->gup);
	ic->up = (struct upstream){ .fd = -1 };
	ic->want_h2 = true;
	ret = upstream_connect(ic, &reused, &reason, ex->error_buf, sizeof(ex->error_buf));
	ic->want_h2 = false;
	ic->gup = ic->up;
	ic->up = h1;
	if (ret) {
		ex->reason = reason;
		ex->error = ex->error_buf;
		return ret;
	}
	if (!h2_negotiated(ic->gup.ssl)) {
		upstream_close(&ic->gup);
		ex->reason = "upstream_no_h2";
		ex->error = "the upstream does not speak HTTP/2, which gRPC needs";
		return -EPROTO;
	}
	return 0;
}

static ssize_t grpc_up_read(void *arg, void *buf, size_t len, uint64_t deadline)
{
	struct ic *ic = ((struct grpc_glue *)arg)->ic;
	return tls_read(ic->gup.ssl, ic->gup.fd, buf, len, deadline);
}

static int grpc_up_write(void *arg, const void *buf, size_t len, uint64_t deadline)
{
	struct ic *ic = ((struct grpc_glue *)arg)->ic;
	return tls_write_all(ic->gup.ssl, ic->gup.fd, buf, len, deadline);
}

static void grpc_up_close(void *arg)
{
	upstream_close(&((struct grpc_glue *)arg)->ic->gup);
}

/* The upstream (1) or the client's next DATA (2, fd) readable. */
static int grpc_up_wait(void *arg, int fd, uint64_t deadline)
{
	struct ic *ic = ((struct grpc_glue *)arg)->ic;
	struct pollfd p[2] = { { ic->gup.fd, POLLIN, 0 }, { fd, POLLIN, 0 } };
	uint64_t now = loop_now_ms();

	if (SSL_has_pending(ic->gup.ssl))
		return 1;
	int n = poll(p, 2, deadline > now ? (int)(deadline - now) : 0);
	if (n < 0)
		return errno == EINTR ? 2 : -errno;
	return (p[0].revents ? 1 : 0) | (p[1].revents ? 2 : 0);
}

static void grpc_begin(void *arg, struct exchange *ex)
{
	struct grpc_glue *g = arg;
	g->ticket = exchange_audit_begin(ex);
}

/* The connection's gRPC upstream, when the call before has done with it
 * (a client's next call often comes before that worker has given it
 * back: it waits a little); false: busy with a concurrent call. */
#define H2_GRPC_UP_WAIT_MS 50
static bool grpc_up_borrow(struct h2_glue *g)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += H2_GRPC_UP_WAIT_MS * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_mutex_timedlock(&g->gmu, &ts) == 0;
}

/* On the stream's worker thread. The connection's gRPC upstream serves
 * one call at a time: a call made while it is busy gets an upstream of
 * its own, closed after it. */
static int h2_io_grpc(void *arg, struct h2_stream *st, const struct h2_grpc_call *call)
{
	struct h2_glue *g = arg;
	struct grpc_glue glue = { stream_ic_new(g, st), 0 };
	struct ic *ic = glue.ic;
	struct exchange ex;

	if (!ic)
		return -ENOMEM;
	bool shared = grpc_up_borrow(g);
	if (shared) {
		ic->gup = g->ic->gup;
		ic->gsess = g->ic->gsess;
	}
	struct grpccall_io io = { &glue, grpc_up_connect, grpc_up_read, grpc_up_write, grpc_up_close,
				  &ic->gsess, grpc_begin, grpc_up_wait };
	exchange_init(&ex, ic->ag, &ic->info, &ic->xc);
	ex.t_start_ms = loop_now_ms();
	int ret = grpccall_serve(&ex, st, call, &io);
	/* given back before the audit: the client's next call may be on
	 * its way already */
	if (shared) {
		g->ic->gup = ic->gup;
		g->ic->gsess = ic->gsess;
		pthread_mutex_unlock(&g->gmu);
	} else {
		grpccall_session_free(ic->gsess);
		upstream_close(&ic->gup);
	}
	ic->gup = (struct upstream){ .fd = -1 };
	ic->gsess = NULL;
	ex.latency_ms = loop_now_ms() - ex.t_start_ms;
	exchange_done(&ex);
	exchange_audit_end(&ex, glue.ticket);
	exchange_free(&ex);
	stream_ic_free(g, ic);
	return ret;
}

static void serve_h2(struct ic *ic)
{
	const struct config *cfg = ic->ag->cfg;
	struct h2_limits lim = {
		.max_concurrent_streams = cfg->h2.max_concurrent_streams,
		.max_header_list_bytes = cfg->h2.max_header_list_bytes,
		.max_resets_per_sec = cfg->h2.max_resets_per_second,
		.max_continuations = cfg->h2.max_continuations,
		.header_table_size = cfg->h2.header_table_size,
		.max_head_bytes = cfg->max_head_bytes,
		.max_headers = cfg->max_headers,
		.max_body_bytes = cfg->max_body_bytes,
		.idle_timeout_ms = cfg->idle_timeout_ms,
	};
	struct h2_glue g = { .ic = ic };
	struct h2_io io = { &g, h2_io_read, h2_io_write, loop_now_ms, h2_io_exchange, h2_io_charge, h2_io_grpc,
			    h2_io_worker_end, h2_io_idle, true };
	char why[160];
	bool abuse;
	int rc;

	pthread_mutex_init(&g.mu, NULL);
	pthread_mutex_init(&g.gmu, NULL);
	/* returns once every stream's worker has ended */
	rc = h2_serve(&lim, &io, &abuse, why, sizeof(why));
	while (g.nspare)
		stream_ic_drop(g.spare[--g.nspare]);
	pthread_mutex_destroy(&g.gmu);
	pthread_mutex_destroy(&g.mu);
	if (rc != 1)
		return;
	/* the client broke a limit or the protocol: GOAWAY was sent; audited
	 * so a flood is visible, with which limit (never frame content) */
	enum reason r = abuse ? REASON_H2_ABUSE : REASON_H2_PROTOCOL;
	struct audit_event ev;
	audit_event_init(&ev, "connection");
	conn_info_fill_event(&ic->info, &ev);
	ev.action = "block";
	ev.reason = reason_name(r);
	ev.error = why;
	ev.latency_ms = loop_now_ms() - ic->info.t_start_ms;
	audit_emit(ic->ag->audit, &ev);
	metrics_count_reason(ic->ag, r);
	log_info("closed HTTP/2 connection of pid %lld to %s: %s", (long long)ic->info.id.pid,
		 ic->info.sni, why);
}

static struct ic *ic_of(struct icpark *p)
{
	return (struct ic *)((char *)p - offsetof(struct ic, park));
}

/* Loop thread: the client's TLS handshake failed or timed out. Usually a
 * client that does not trust the interception CA (or pins its provider's
 * key): audit it so IT can add a passthrough entry. */
static void ic_handshake_failed(struct icpark *p, bool timed_out)
{
	struct ic *ic = ic_of(p);
	struct audit_event ev;
	audit_event_init(&ev, "connection");
	conn_info_fill_event(&ic->info, &ev);
	ev.action = "intercept";
	ev.reason = timed_out ? "client_handshake_timeout" : "client_rejected_interception";
	ev.error = timed_out ? "client TLS handshake timed out" :
			       "client TLS handshake failed (CA not trusted or pinned client?)";
	ev.latency_ms = loop_now_ms() - ic->info.t_start_ms;
	/* Remembered whatever the mode (the loop thread reads the
	 * mode, so a reload to passthrough applies to past refusals),
	 * before the audit write so a quick retry finds it. */
	char rule[128];
	uint64_t ttl;
	if (!timed_out) {
		rejca_note(ic->ag->rejected_ca, ic->info.id.exe, ic->info.sni, loop_now_ms());
		/* names what decides the next attempt: a rejected_ca
		 * entry, or the agent's on_rejected_ca */
		conn_info_rejected_ca(ic->ag, &ic->info, &ttl, rule, sizeof(rule));
		ev.rule = rule;
	}
	audit_emit(ic->ag->audit, &ev);
}

/* The upstream goes back to the pool when the client is done with it. A
 * tunnel opened with this client's proxy credentials is not lent to
 * another client: the proxy would log its requests under this user. */
static void release_upstream(struct ic *ic, bool reusable)
{
	if (ic->up.ssl && reusable && !ic->info.tunnel_auth[0])
		pool_put(&ic->up);
	else
		upstream_close(&ic->up);
}

/* Before parking: an idle connection keeps its conversation (vault, its
 * own tunnel) and gives back everything a request rebuilds: buffers, the
 * inspection scratch, and a pooled upstream (the pool checks it is still
 * alive when the next request takes one). */
static void ic_idle(struct ic *ic)
{
	bool reusable = h1x_upstream_reusable(ic->hx);
	/* a tunnel with this client's credentials stays with it: the next
	 * engine takes it as a reused upstream (upstream_connect) */
	if (!ic->info.tunnel_auth[0] || !reusable)
		release_upstream(ic, reusable);
	h1x_free(ic->hx);
	ic->hx = NULL;
	exchange_conn_idle(&ic->xc);
}

/* Closes the connection and frees what it holds (ic itself: the caller's). */
static void ic_close(struct ic *ic)
{
	if (ic->upev)
		loop_del(ic->ag->loop, &ic->upw);
	SSL_free(ic->cssl);
	upstream_close(&ic->up);
	grpccall_session_free(ic->gsess);
	upstream_close(&ic->gup);
	close(ic->cfd);
	h1x_free(ic->hx);
	exchange_conn_free(&ic->xc);
	explicit_bzero(ic->info.tunnel_auth, sizeof(ic->info.tunnel_auth));
	if (ic->info.have_tunnel_fd)
		close(ic->info.tunnel_fd);
	atomic_fetch_sub(&ic->ag->stats.active, 1);
}

/* An idle connection, packed: its struct ic with the zero runs squeezed
 * out (most of it is fixed-size identity strings, mostly empty, and
 * pointers ic_idle cleared), a small fraction of its size. The icpark
 * heads it so the loop holds it like any other. */
struct ic_packed {
	struct icpark park;
	size_t len;
	unsigned char img[];
};

static struct icpark *ic_pack(struct icpark *p)
{
	struct ic *ic = ic_of(p);
	unsigned char img[zrle_bound(sizeof(*ic))];
	size_t len = zrle_pack(ic, sizeof(*ic), img);
	struct ic_packed *pk = malloc(sizeof(*pk) + len);
	if (!pk)
		return p;   /* stays whole: it still works, it only costs more */
	pk->park = ic->park;
	pk->park.packed = true;
	pk->len = len;
	memcpy(pk->img, img, len);
	explicit_bzero(ic->info.tunnel_auth, sizeof(ic->info.tunnel_auth));
	free(ic);
	return &pk->park;
}

/* The packed connection back into dst (its icpark as the loop left it). */
static int ic_unpack_into(struct icpark *p, struct ic *dst)
{
	struct ic_packed *pk = (struct ic_packed *)p;
	if (zrle_unpack(pk->img, pk->len, dst, sizeof(*dst)))
		return -EINVAL;
	dst->park = pk->park;
	dst->park.packed = false;
	return 0;
}

static void ic_free(struct icpark *p)
{
	if (p->packed) {
		struct ic_packed *pk = (struct ic_packed *)p;
		struct ic tmp;
		/* our own bytes: unpacking fails only on a broken invariant */
		if (ic_unpack_into(p, &tmp))
			abort();
		ic_close(&tmp);
		explicit_bzero(pk->img, pk->len);   /* it held the proxy credentials */
		free(pk);
		return;
	}
	struct ic *ic = ic_of(p);
	ic_close(ic);
	free(ic);
}

/* A packed connection made whole again (p itself when not packed). */
static struct icpark *ic_unpack(struct icpark *p)
{
	struct ic *ic;
	if (!p->packed)
		return p;
	if (!(ic = malloc(sizeof(*ic))) || ic_unpack_into(p, ic)) {
		free(ic);
		log_warn("intercepted connection closed: out of memory");
		ic_free(p);
		return NULL;
	}
	explicit_bzero(((struct ic_packed *)p)->img, ((struct ic_packed *)p)->len);
	free(p);
	return &ic->park;
}

/* A thread of its own: serves what the loop handed over (an HTTP/2
 * connection to its end; an HTTP/1.1 exchange that has to wait, to the
 * next request). */
static struct icpark *ic_serve(struct icpark *p)
{
	struct ic *ic;

	if (!(p = ic_unpack(p)))
		return NULL;
	ic = ic_of(p);
	if (h2_negotiated(ic->cssl)) {
		/* each stream has its own ic and engine (stream_ic_new) */
		serve_h2(ic);
	} else if (!ic->hx && !(ic->hx = h1x_new(ic->ag, &ic->info, &ic->xc, loop_now_ms()))) {
		/* a new engine after each park: nothing of the next request was read */
		log_warn("intercepted connection closed: out of memory");
	} else if (drive(ic, true)) {
		/* between requests: the loop serves the next ones (it parks
		 * and packs the connection once quiet, in its own heap) */
		ic->park.resume = true;
		return &ic->park;
	}
	release_upstream(ic, ic->hx && h1x_upstream_reusable(ic->hx));
	SSL_shutdown(ic->cssl);
	ic_free(&ic->park);
	return NULL;
}

/* ---- HTTP/1.1 on the event loop: the engine driven by epoll events ----
 *
 * A connection whose client sends a request is served here, on the loop
 * thread, for as long as nothing has to wait: reads and writes never
 * block (each side's watch asks for what TLS needs next), the engine's
 * deadline and the quiet spell before parking are the connection's timer.
 * What would block the loop goes to a thread of its own, with the engine
 * as it stands (drive() picks it up, pend_act the actions left over):
 * opening a new upstream (DNS-free, but a TCP and TLS handshake), the
 * WebSocket relay, the linger after a refusal, and a request past
 * LOOP_INLINE_MAX (its inspection is the CPU-heavy step); the thread hands
 * the connection back at the end of that exchange. HTTP/2 connections keep
 * their thread.
 *
 * A connection has two watches here, so it is never freed or moved from a
 * watch's callback (a later event of the same epoll batch may name the
 * other one): those transitions (LOP_*) run from its timer, due at once. */
#define LOOP_INLINE_MAX (256 * 1024)
#define LOOP_ROUNDS 64             /* engine rounds per turn before yielding to other connections */

enum { LOP_NONE, LOP_STEP, LOP_THREAD, LOP_PARK, LOP_CLOSE };

static void loop_step(struct ic *ic);

static void up_watch(struct ic *ic, uint32_t ev)
{
	struct loop *l = ic->ag->loop;
	int ret = 0;
	if (ev == ic->upev)
		return;
	if (!ev)
		loop_del(l, &ic->upw);
	else if (ic->upev)
		ret = loop_mod(l, &ic->upw, ev);
	else {
		ic->upw.fd = ic->up.fd;
		ret = loop_add(l, &ic->upw, ev);
	}
	if (ret) {
		/* unwatched, the engine's deadline still ends the exchange */
		log_warn("intercepted connection: epoll: %s", strerror(-ret));
		ev = 0;
	}
	ic->upev = ev;
}

/* Before the upstream is closed, pooled or handed to a thread. */
static void up_unwatch(struct ic *ic)
{
	up_watch(ic, 0);
}

/* A transition for the timer to carry out (see above). */
static void loop_defer(struct ic *ic, uint8_t op)
{
	ic->lop = op;
	if (op != LOP_STEP) {
		icpark_watch(&ic->park, 0);
		up_unwatch(ic);
	}
	if (icpark_timer(&ic->park, loop_now_ms()))
		log_warn("intercepted connection: out of memory for a timer");
}

static void loop_run_op(struct ic *ic)
{
	uint8_t op = ic->lop;
	ic->lop = LOP_NONE;
	if (op == LOP_STEP) {
		loop_step(ic);
		return;
	}
	icpark_timer(&ic->park, 0);
	icpark_watch(&ic->park, 0);
	up_unwatch(ic);
	switch (op) {
	case LOP_THREAD:
		atomic_fetch_add(&ic->ag->stats.loop_handoffs, 1);
		icpark_to_thread(&ic->park);
		break;
	case LOP_PARK:
		ic_idle(ic);
		icpark_idle(&ic->park);
		break;
	default:
		release_upstream(ic, ic->hx && h1x_upstream_reusable(ic->hx));
		clear_errors();
		SSL_shutdown(ic->cssl);
		icpark_close(&ic->park);
		break;
	}
}

/* Writes what the engine has for one side until the socket is full:
 * 0 all written, -EAGAIN (*ev: what to wait for), -EIO. A side that
 * takes nothing for idle_timeout (the client) or upstream_timeout (the
 * upstream) fails as a blocking write would (loop_stalled). */
static int flush_nb(struct ic *ic, bool client, short *ev)
{
	struct iovec iov[2];
	SSL *ssl = client ? ic->cssl : ic->up.ssl;
	uint64_t *stall = client ? &ic->cstall : &ic->ustall;
	while ((client ? h1x_client_out(ic->hx, iov) : h1x_upstream_out(ic->hx, iov)) && iov[0].iov_len) {
		ssize_t w = tls_write_nb(ssl, iov[0].iov_base, iov[0].iov_len, ev);
		if (w == -EAGAIN && !*stall)
			*stall = loop_now_ms();
		if (w < 0)
			return (int)w;
		*stall = 0;
		if (client)
			h1x_client_sent(ic->hx, (size_t)w);
		else
			h1x_upstream_sent(ic->hx, (size_t)w);
	}
	*stall = 0;
	return 0;
}

/* The write deadline of a side whose writes wait (0: none). */
static uint64_t stall_due(const struct ic *ic, bool client)
{
	const struct config *cfg = ic->ag->cfg;
	if (client)
		return ic->cstall ? ic->cstall + cfg->idle_timeout_ms : 0;
	return ic->ustall ? ic->ustall + cfg->upstream_timeout_ms : 0;
}

static uint64_t earliest(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

/* Timer: a side that took nothing for its timeout is gone. */
static void loop_stalled(struct ic *ic, uint64_t now)
{
	uint64_t c = stall_due(ic, true), u = stall_due(ic, false);
	if (c && now >= c) {
		ic->cstall = 0;
		h1x_client_write_failed(ic->hx, now);
	}
	if (u && now >= u) {
		ic->ustall = 0;
		h1x_upstream_write_failed(ic->hx, now);
	}
}

/* Reads what one side has into the engine without waiting: true if the
 * engine got bytes or an end, false with *ev what to wait for. */
static bool feed_nb(struct ic *ic, bool client, short *ev)
{
	struct h1x *hx = ic->hx;
	uint64_t now = loop_now_ms();
	size_t room;
	char *p = client ? h1x_client_space(hx, &room, now) : h1x_upstream_space(hx, &room, now);
	if (!p)
		return true;   /* the engine answered something (an error): see its outputs */
	ssize_t n = tls_read_nb(client ? ic->cssl : ic->up.ssl, p, room, ev);
	now = loop_now_ms();
	if (n == -EAGAIN)
		return false;
	if (n > 0 && client) {
		ic->req_rx += (size_t)n;
		h1x_client_input(hx, (size_t)n, now);
	} else if (n > 0) {
		h1x_upstream_input(hx, (size_t)n, now);
	} else if (client) {
		h1x_client_eof(hx, (int)n, now);
	} else {
		h1x_upstream_eof(hx, (int)n, now);
	}
	return true;
}

/* Moves the engine as far as it goes without waiting, then sets the
 * watches and the timer for what it waits for. */
static void loop_step(struct ic *ic)
{
	struct h1x *hx = ic->hx;

	if (ic->lop)
		return;   /* a transition is due: nothing more on this turn */
	for (unsigned round = 0;; round++) {
		short cev = 0, uev = 0, ev = 0;
		bool moved = false;
		uint64_t now = loop_now_ms();

		if (round == LOOP_ROUNDS) {
			loop_defer(ic, LOP_STEP);   /* the others' turn; on at once after them */
			return;
		}
		int crc = flush_nb(ic, true, &ev);
		if (crc == -EAGAIN)
			cev |= ev;
		else if (crc)
			h1x_client_write_failed(hx, now);
		unsigned act = h1x_actions(hx);
		if (act & H1X_UP_CLOSE) {
			up_unwatch(ic);
			upstream_close(&ic->up);
		}
		act &= ~H1X_UP_CLOSE;
		if ((act & H1X_CONNECT) && !(act & ~H1X_CONNECT) && upstream_ready(ic)) {
			h1x_upstream_connected(hx, true, loop_now_ms());
			continue;
		}
		if (act) {
			/* a new upstream, the WebSocket relay or the linger: they wait */
			ic->pend_act = act;
			loop_defer(ic, LOP_THREAD);
			return;
		}
		int urc = ic->up.ssl ? flush_nb(ic, false, &ev) : 0;
		if (urc == -EAGAIN) {
			uev |= ev;
		} else if (urc) {
			h1x_upstream_write_failed(hx, loop_now_ms());
			continue;
		}
		if (h1x_done(hx) && !cev) {
			loop_defer(ic, LOP_CLOSE);
			return;
		}
		bool wc = h1x_want_client(hx), wu = h1x_want_upstream(hx) && ic->up.ssl;
		if (!wc && !wu && !h1x_deadline(hx) && !cev && !uev) {
			loop_defer(ic, LOP_CLOSE);   /* nothing can move it: never spin */
			return;
		}
		bool idle = h1x_idle(hx);
		if (idle && !ic->idle_at) {
			ic->idle_at = now;
			ic->req_rx = 0;
		} else if (!idle) {
			ic->idle_at = 0;
		}
		if (wc && ic->req_rx > LOOP_INLINE_MAX) {
			loop_defer(ic, LOP_THREAD);   /* a large request: its inspection is heavy */
			return;
		}
		if (wc && !cev) {
			if (feed_nb(ic, true, &ev))
				moved = true;
			else
				cev |= ev;
		}
		if (wu && !uev && !moved) {
			if (feed_nb(ic, false, &ev))
				moved = true;
			else
				uev |= ev;
		}
		if (moved)
			continue;
		/* a client that hangs up while its answer is awaited ends
		 * the exchange (ic_loop_event) */
		if (h1x_awaits_answer(hx))
			cev |= POLLRDHUP;
		/* waits: for the sockets, the engine's deadline, the quiet
		 * spell, a side that takes no bytes */
		uint64_t due = earliest(h1x_deadline(hx), ic->idle_at ? ic->idle_at + PARK_GRACE_MS : 0);
		due = earliest(due, earliest(stall_due(ic, true), stall_due(ic, false)));
		if (icpark_watch(&ic->park, (uint32_t)cev) || (icpark_timer(&ic->park, due), false)) {
			loop_defer(ic, LOP_CLOSE);
			return;
		}
		up_watch(ic, (uint32_t)uev);
		return;
	}
}

/* epoll and poll share the event bits (POLLRDHUP == EPOLLRDHUP) */
static void ic_loop_event(struct icpark *p, uint32_t events)
{
	struct ic *ic = ic_of(p);
	if ((events & (POLLRDHUP | POLLHUP | POLLERR)) && ic->hx && !ic->lop)
		h1x_client_gone(ic->hx, loop_now_ms());
	loop_step(ic);
}

static void ic_up_event(struct loop_watch *w, uint32_t events)
{
	(void)events;
	loop_step((struct ic *)((char *)w - offsetof(struct ic, upw)));
}

static void ic_loop_timer(struct icpark *p, uint64_t now)
{
	struct ic *ic = ic_of(p);
	if (ic->lop) {
		loop_run_op(ic);
		return;
	}
	if (ic->idle_at && h1x_idle(ic->hx) && now >= ic->idle_at + PARK_GRACE_MS) {
		ic->lop = LOP_PARK;
		loop_run_op(ic);
		return;
	}
	uint64_t dl = h1x_deadline(ic->hx);
	if (dl && now >= dl)
		h1x_tick(ic->hx, now);
	loop_stalled(ic, now);
	loop_step(ic);
}

/* Loop thread: the client sent data, or a thread handed the connection
 * back between requests. */
static void ic_loop_begin(struct icpark *p)
{
	struct ic *ic = ic_of(p);
	ic->upw.fn = ic_up_event;
	ic->upev = 0;
	ic->lop = LOP_NONE;
	ic->pend_act = 0;
	ic->idle_at = 0;
	ic->req_rx = 0;
	ic->cstall = ic->ustall = 0;
	if (h2_negotiated(ic->cssl)) {
		atomic_fetch_add(&ic->ag->stats.loop_handoffs, 1);
		icpark_to_thread(p);   /* its streams run on workers (serve_h2) */
		return;
	}
	if (!ic->hx && !(ic->hx = h1x_new(ic->ag, &ic->info, &ic->xc, loop_now_ms()))) {
		log_warn("intercepted connection closed: out of memory");
		loop_defer(ic, LOP_CLOSE);
		return;
	}
	loop_step(ic);
}

static const struct icpark_ops ic_park_ops = { ic_handshake_failed, ic_pack, ic_serve, ic_free, ic_loop_begin,
						ic_loop_event, ic_loop_timer, ic_unpack };

/* Loop thread: the handshake and every idle wait run on the loop
 * (icpark.c); a thread serves only while requests are under way. */
int intercept_start(struct agent *ag, int cfd, const struct conn_info *info)
{
	struct ic *ic;
	SSL_CTX *ctx;

	if (!ag->certgen)
		return -ENOSYS;
	if (!(ic = calloc(1, sizeof(*ic))))
		return -ENOMEM;
	ic->ag = ag;
	ic->info = *info;
	ic->cfd = cfd;
	ic->up.fd = -1;
	ic->gup.fd = -1;
	atomic_fetch_add(&ag->stats.active, 1);
	ctx = certgen_ctx(ag->certgen, info->sni, strlen(info->sni));
	if (!ctx || !(ic->cssl = SSL_new(ctx)) || !SSL_set_fd(ic->cssl, cfd)) {
		/* taken and closed, as a failed handshake would be */
		SSL_CTX_free(ctx);
		ic_free(&ic->park);
		return 0;
	}
	SSL_CTX_free(ctx);
	SSL_set_accept_state(ic->cssl);
	SSL_set_options(ic->cssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Read whole records in one syscall; give buffers back while idle. */
	SSL_set_read_ahead(ic->cssl, 1);
	SSL_set_mode(ic->cssl, SSL_MODE_RELEASE_BUFFERS);
	tls_nb_modes(ic->cssl);
	icpark_start(&ic->park, ag, cfd, ic->cssl, &ic_park_ops);
	return 0;
}

int intercept_init(struct agent *ag, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	int ret;

	if (!cfg->ca_cert)
		return 0;
	if ((ret = icpark_init(ag))) {
		snprintf(err, errlen, "cannot set up the intercepted connections' hand-back: %s", strerror(-ret));
		return ret;
	}
	if ((ret = certgen_new(cfg->ca_cert, cfg->ca_key, 1024, &ag->certgen, err, errlen)))
		return ret;
	certgen_offer_h2(ag->certgen, cfg->h2.enabled);
	if (!(ag->rejected_ca = rejca_new(1024))) {
		snprintf(err, errlen, "cannot allocate the rejected-CA table");
		return -ENOMEM;
	}
	if (!(ag->upstream_ctx = tls_upstream_ctx_new(cfg->upstream_ca, err, errlen)))
		return -EINVAL;
	if ((ret = tls_upstream_distrust(ag->upstream_ctx, cfg->ca_cert, err, errlen)))
		return ret;
	return exchange_global_init(ag, err, errlen);
}

void intercept_shutdown(struct agent *ag)
{
	icpark_shutdown(ag);
	pthread_mutex_lock(&pool_lock);
	while (pool_n)
		upstream_close(&pool[--pool_n]);
	pthread_mutex_unlock(&pool_lock);
	exchange_global_free(ag);
	SSL_CTX_free(ag->upstream_ctx);
	ag->upstream_ctx = NULL;
	certgen_free(ag->certgen);
	ag->certgen = NULL;
	rejca_free(ag->rejected_ca);
	ag->rejected_ca = NULL;
}
