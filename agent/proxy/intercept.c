/* intercept: the TLS man-in-the-middle for watched LLM hosts. Each
 * intercepted connection runs on its own thread with non-blocking sockets
 * and poll() deadlines: an HTTP exchange is a sequence (request head, body,
 * upstream, response head, streamed body), and sequential code makes every
 * limit and every error path visible. A workstation has tens of concurrent
 * LLM connections, so a thread each (small stack) costs little; pass-through
 * traffic, which can be plentiful, stays on the event loop (conn.c).
 *
 * What this file must never do: forward a request it could not frame
 * exactly as the server will (smuggling), hold a response whole, trust an
 * upstream certificate the system store (plus upstream_ca) does not, or
 * write a header value, body or query string into a log. */
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
#include "proxy/h2.h"
#include "log.h"
#include "loop.h"
#include "proxy/mcp.h"
#include "metrics.h"
#include "audit/reason.h"
#include "net/rejca.h"
#include "net/sni.h"
#include "net/tls.h"
#include "proxy/wsrelay.h"

#define IO_CHUNK (64 * 1024)
#define THREAD_STACK (256 * 1024)
#define POOL_MAX 32
#define POOL_PER_KEY 4
#define POOL_IDLE_MS 30000
#define COALESCE_MAX (64 * 1024)

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

/* One SSL_read: > 0 bytes, 0 clean EOF, < 0 -errno. */
static ssize_t tls_read(SSL *ssl, int fd, void *buf, size_t len, uint64_t deadline)
{
	for (;;) {
		clear_errors();
		int n = SSL_read(ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
		if (n > 0)
			return n;
		int e = SSL_get_error(ssl, n), ret;
		if (e == SSL_ERROR_WANT_READ)
			ret = wait_fd(fd, POLLIN, deadline);
		else if (e == SSL_ERROR_WANT_WRITE)
			ret = wait_fd(fd, POLLOUT, deadline);
		else if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		else if (e == SSL_ERROR_SYSCALL && errno == 0)
			return 0;
		else
			return -EIO;
		if (ret)
			return ret;
	}
}

static int tls_write_all(SSL *ssl, int fd, const void *buf, size_t len, uint64_t deadline)
{
	const char *p = buf;
	while (len) {
		size_t w = 0;
		clear_errors();
		if (SSL_write_ex(ssl, p, len, &w) == 1) {
			p += w;
			len -= w;
			continue;
		}
		int e = SSL_get_error(ssl, 0), ret;
		if (e == SSL_ERROR_WANT_WRITE)
			ret = wait_fd(fd, POLLOUT, deadline);
		else if (e == SSL_ERROR_WANT_READ)
			ret = wait_fd(fd, POLLIN, deadline);
		else
			return -EIO;
		if (ret)
			return ret;
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
	bool up_reusable;
	char *in;                  /* client bytes: head + body + pipelined rest */
	size_t in_len, in_cap;
	char *body;                /* decoded request body (chunked) */
	size_t body_len, body_cap;
	const char *bodyp;         /* the request body: in ic->in (Content-Length) or ic->body */
	size_t charged;            /* bytes of in/body charged to the buffer budget */
	char *rbuf;                /* upstream response bytes */
	size_t rlen, rcap;
	char *fwd;                 /* head forwarded upstream */
	size_t fwd_cap;
	unsigned nreq;
	struct exchange_conn xc;   /* scan state and token vault of this conversation */
	struct h2_stream *h2;      /* HTTP/2: the stream answers go through (h2.h) */
	int h2_refuse;             /* HTTP/2: the stream broke a limit, answer this status */
	bool want_h2;              /* gRPC: the upstream must speak HTTP/2 (ALPN h2 only) */
	struct upstream gup;       /* gRPC: the HTTP/2 upstream, apart from up (HTTP/1.1) */
	struct grpccall_session *gsess;  /* its session, kept across the connection's calls */
};

/* The capacity grow() gives a buffer of cap bytes that must hold need. */
static size_t grown_cap(size_t cap, size_t need, size_t limit)
{
	size_t nc = cap ? cap : 16384;
	while (nc < need)
		nc *= 2;
	return nc > limit ? limit : nc;
}

static int grow(char **buf, size_t *cap, size_t need, size_t limit)
{
	if (need <= *cap)
		return 0;
	if (need > limit)
		return -E2BIG;
	size_t nc = grown_cap(*cap, need, limit);
	char *nb = realloc(*buf, nc);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = nc;
	return 0;
}

/* The buffer budget (limits.max_buffered_bytes): the capacity of every
 * connection's request buffers beyond BUDGET_FREE is charged to one global
 * count, so clients that announce big bodies and stall cannot take the
 * agent's memory (and with it, in fail_mode open, the audit): past the
 * budget a new body gets a 503 instead of memory. The free allowance keeps
 * heads and small requests working while the budget is spent. */
#define BUDGET_FREE (128 * 1024)
#define RELEASE_ABOVE (64 * 1024)

static size_t chargeable(size_t in_cap, size_t body_cap)
{
	return in_cap + body_cap > BUDGET_FREE ? in_cap + body_cap - BUDGET_FREE : 0;
}

/* Adjusts ic->charged to the buffers' capacities now. -ENOBUFS if that
 * would pass the budget (nothing charged then). */
static int charge(struct ic *ic, size_t in_cap, size_t body_cap)
{
	size_t want = chargeable(in_cap, body_cap);
	atomic_ulong *b = &ic->ag->stats.buffered;
	if (want > ic->charged) {
		size_t d = want - ic->charged;
		if (atomic_fetch_add(b, d) + d > ic->ag->cfg->max_buffered_bytes) {
			atomic_fetch_sub(b, d);
			return -ENOBUFS;
		}
	} else {
		atomic_fetch_sub(b, ic->charged - want);
	}
	ic->charged = want;
	return 0;
}

/* grow() for the request buffers (in, body), charged to the budget first. */
static int grow_charged(struct ic *ic, char **buf, size_t *cap, size_t need, size_t limit)
{
	int ret;
	if (need <= *cap)
		return 0;
	if (need > limit)
		return -E2BIG;
	size_t nc = grown_cap(*cap, need, limit);
	bool in = buf == &ic->in;
	if ((ret = charge(ic, in ? nc : ic->in_cap, in ? ic->body_cap : nc)))
		return ret;
	if ((ret = grow(buf, cap, need, limit)))
		charge(ic, ic->in_cap, ic->body_cap);   /* give back what was not taken */
	return ret;
}

/* Between requests: large buffers go back (keep bytes already read of a
 * pipelined request), and the budget with them. */
static void release_buffers(struct ic *ic)
{
	if (ic->in_cap > RELEASE_ABOVE && !ic->in_len) {
		free(ic->in);
		ic->in = NULL;
		ic->in_cap = 0;
	} else if (ic->in_cap > RELEASE_ABOVE && ic->in_len <= RELEASE_ABOVE / 2) {
		char *nb = realloc(ic->in, RELEASE_ABOVE);
		if (nb) {
			ic->in = nb;
			ic->in_cap = RELEASE_ABOVE;
		}
	}
	if (ic->body_cap > RELEASE_ABOVE) {
		free(ic->body);
		ic->body = NULL;
		ic->body_cap = 0;
	}
	if (ic->rcap > RELEASE_ABOVE && !ic->rlen) {
		free(ic->rbuf);
		ic->rbuf = NULL;
		ic->rcap = 0;
	}
	charge(ic, ic->in_cap, ic->body_cap);
}

/* Reads more client bytes into ic->in. > 0 read, 0 EOF, < 0 error. */
static ssize_t client_fill(struct ic *ic, size_t limit, uint64_t deadline)
{
	int ret = grow_charged(ic, &ic->in, &ic->in_cap, ic->in_len + IO_CHUNK, limit + IO_CHUNK);
	if (ret)
		return ret;
	return tls_read(ic->cssl, ic->cfd, ic->in + ic->in_len, ic->in_cap - ic->in_len, deadline);
}

static int send_client(struct ic *ic, const void *buf, size_t len)
{
	if (ic->h2)
		return h2_respond(ic->h2, buf, len);
	return tls_write_all(ic->cssl, ic->cfd, buf, len,
			     loop_now_ms() + ic->ag->cfg->idle_timeout_ms);
}

/* An error answered by the agent itself, in the provider's error shape. */
static void send_error(struct ic *ic, struct exchange *ex, int status, const char *code,
		       const char *msg)
{
	char resp[2048];
	int n = ex->mcp ? mcp_error_response(ex, status, msg, resp, sizeof(resp)) :
			  exchange_error_response(ex->provider, ex->path, ex->origin, status, code, msg, resp, sizeof(resp));
	if (n > 0 && send_client(ic, resp, (size_t)n) == 0)
		ex->bytes_down += (uint64_t)n;
	ex->status = ex->mcp ? mcp_error_status(ex, status) : status;
}

/* Whether the request's Host names the host the connection was opened
 * for. Checked on every intercepted request, watched SNI or not: the
 * connection goes to the address and certificate of the SNI, while a CDN
 * routes by Host, so a mismatch (domain fronting, in either direction)
 * would make the audit's sni, policy's host and the provider identified
 * describe one service while the request goes to another. 421 is the
 * status RFC 9110 15.5.20 gives a request sent on a connection not
 * authoritative for it; clients that coalesce connections retry on a new
 * one. */
static bool host_is_sni(const struct http_request *req, const char *sni)
{
	char host[256];
	return req->host && sni[0] && sni_authority_host(req->host, req->host_len, host, sizeof(host)) == 0 &&
	       !strcmp(host, sni);
}

static int chunk_to_body(void *arg, const char *data, size_t len)
{
	struct ic *ic = arg;
	int ret = grow_charged(ic, &ic->body, &ic->body_cap, ic->body_len + len,
			       ic->ag->cfg->max_body_bytes + 1);
	if (ret)
		return ret == -ENOBUFS ? 503 : 413;
	memcpy(ic->body + ic->body_len, data, len);
	ic->body_len += len;
	return 0;
}

/* Reads one request (head and whole body) from the client. Returns 1 with
 * the request parsed, 0 on a clean close between requests, or a negative
 * HTTP status / -errno. *consumed gets the bytes of ic->in it used. */
static int read_request(struct ic *ic, struct http_request *req, size_t *consumed)
{
	const struct config *cfg = ic->ag->cfg;
	struct http_limits lim = { .max_head_bytes = cfg->max_head_bytes,
				   .max_headers = cfg->max_headers,
				   .max_body_bytes = cfg->max_body_bytes };
	uint64_t deadline = loop_now_ms() + (ic->nreq ? cfg->idle_timeout_ms : cfg->header_timeout_ms);
	bool started = ic->in_len > 0;
	size_t checked = 0;
	int hl;

	if (ic->h2_refuse) {
		/* an HTTP/2 stream over a limit: its head says enough to refuse it */
		hl = http_parse_request(ic->in, ic->in_len, &lim, req);
		return hl > 0 ? -ic->h2_refuse : -400;
	}

	for (;;) {
		/* Parse only when the head can be complete: a client sending one
		 * byte per record must not make each head cost O(n^2). */
		hl = 0;
		if (ic->in_len && (http_head_may_be_complete(ic->in, ic->in_len, checked) ||
				   ic->in_len >= cfg->max_head_bytes))
			hl = http_parse_request(ic->in, ic->in_len, &lim, req);
		checked = ic->in_len;
		if (hl != 0)
			break;
		if (ic->in_len >= cfg->max_head_bytes)
			return -431;
		ssize_t n = client_fill(ic, cfg->max_head_bytes, deadline);
		/* Between requests, any end of the connection (close, reset, a
		 * missing close_notify, the idle timeout) is a normal close. */
		if (n <= 0 && !started)
			return 0;
		if (n == 0)
			return -400;
		if (n == -ETIMEDOUT)
			return -408;
		if (n < 0)
			return -400;
		ic->in_len += (size_t)n;
		if (!started) {
			/* The header timeout runs from the first byte of a request. */
			started = true;
			deadline = loop_now_ms() + cfg->header_timeout_ms;
		}
	}
	if (hl < 0)
		return hl;

	ic->body_len = 0;
	if (req->expect_continue && req->body != HTTP_BODY_NONE &&
	    !(req->body == HTTP_BODY_LENGTH && req->content_length == 0) && ic->in_len == (size_t)hl) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (send_client(ic, cont, sizeof(cont) - 1))
			return -EIO;
	}
	deadline = loop_now_ms() + cfg->idle_timeout_ms;
	size_t off = (size_t)hl;
	const char *head_at = ic->in;
	if (req->body == HTTP_BODY_LENGTH) {
		uint64_t need = req->content_length;
		/* The head must stay where it is (req points into it): grow around it. */
		while (ic->in_len - off < need) {
			ssize_t n;
			int g = grow_charged(ic, &ic->in, &ic->in_cap, off + need,
					     off + cfg->max_body_bytes + IO_CHUNK);
			if (g)
				return g == -ENOBUFS ? -503 : -413;
			n = tls_read(ic->cssl, ic->cfd, ic->in + ic->in_len, off + need - ic->in_len, deadline);
			if (n <= 0)
				return n == -ETIMEDOUT ? -408 : -400;
			ic->in_len += (size_t)n;
		}
		/* The body stays where it was read: no second copy of it. */
		ic->bodyp = ic->in + off;
		ic->body_len = need;
		off += need;
	} else if (req->body == HTTP_BODY_CHUNKED) {
		struct http_chunked ch;
		ic->bodyp = NULL;
		http_chunked_init(&ch, cfg->max_body_bytes, 8192);
		for (;;) {
			if (off < ic->in_len) {
				ssize_t used = http_chunked_feed(&ch, ic->in + off, ic->in_len - off,
								 chunk_to_body, ic);
				if (used < 0)
					return used == -413 ? -413 : used == -503 ? -503 : -400;
				off += (size_t)used;
				if (http_chunked_done(&ch))
					break;
			}
			/* Framing bytes are bounded by the body limit plus overhead. */
			if (ic->in_len > (size_t)hl + cfg->max_body_bytes * 2 + 65536)
				return -413;
			ssize_t n = client_fill(ic, (size_t)hl + cfg->max_body_bytes * 2 + 65536, deadline);
			if (n <= 0)
				return n == -ETIMEDOUT ? -408 : n == -ENOBUFS ? -503 : -400;
			ic->in_len += (size_t)n;
		}
	}
	if (req->body == HTTP_BODY_CHUNKED)
		ic->bodyp = ic->body;
	else if (req->body != HTTP_BODY_LENGTH)
		ic->bodyp = NULL;
	/* Reading the body may have moved the buffer the request points into. */
	if (ic->in != head_at && http_parse_request(ic->in, (size_t)hl, &lim, req) != hl)
		return -400;
	*consumed = off;
	return 1;
}

static int upstream_connect(struct ic *ic, struct exchange *ex)
{
	const struct config *cfg = ic->ag->cfg;
	uint64_t deadline = loop_now_ms() + cfg->upstream_timeout_ms;
	struct egress_route route;
	int fd, ret;

	if (!ic->want_h2 && pool_take(&ic->info.origin, ic->info.sni, ic->info.tunnel_port, &ic->up)) {
		ex->upstream_reused = true;
		return 0;
	}
	if (ic->info.have_tunnel_fd) {
		/* The client's own tunnel through its proxy, opened before the
		 * hand-over: the first upstream, used once. */
		fd = ic->info.tunnel_fd;
		ic->info.have_tunnel_fd = false;
	} else {
		if ((ret = egress_route_for(ic->ag, &ic->info, &route, ex->error_buf,
					    sizeof(ex->error_buf)))) {
			ex->error = ex->error_buf;
			ex->reason = "upstream_unreachable";
			return ret;
		}
		/* egress_open names a reason before it knows the outcome: only a
		 * failure's reason goes into the event. */
		const char *why = NULL;
		fd = egress_open(ic->ag, &route, deadline, &why, ex->error_buf, sizeof(ex->error_buf));
		if (fd < 0) {
			ex->reason = why;
			ex->error = ex->error_buf;
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
		ex->error = "upstream TLS setup failed";
		upstream_close(&ic->up);
		return -ENOMEM;
	}
	SSL_set_options(ic->up.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (ic->want_h2)
		SSL_set_alpn_protos(ic->up.ssl, (const unsigned char *)"\x02h2", 3);
	SSL_set_read_ahead(ic->up.ssl, 1);
	SSL_set_mode(ic->up.ssl, SSL_MODE_RELEASE_BUFFERS);
	if ((ret = tls_handshake(ic->up.ssl, fd, false, deadline))) {
		const char *why = tls_verify_reason(ic->up.ssl);
		if (SSL_get_verify_result(ic->up.ssl) != X509_V_OK && strcmp(why, "ok")) {
			snprintf(ex->error_buf, sizeof(ex->error_buf), "upstream certificate rejected: %s", why);
			ex->reason = "upstream_cert_invalid";
		} else {
			snprintf(ex->error_buf, sizeof(ex->error_buf), "upstream TLS handshake failed");
			ex->reason = "upstream_tls_failed";
		}
		ex->error = ex->error_buf;
		upstream_close(&ic->up);
		return -EPROTO;
	}
	tls_upstream_save_session(ic->up.ssl, ic->info.sni);
	return 0;
}

/* Reads from upstream into rbuf (appending). */
static ssize_t upstream_fill(struct ic *ic, size_t limit, uint64_t deadline)
{
	int ret = grow(&ic->rbuf, &ic->rcap, ic->rlen + IO_CHUNK, limit + IO_CHUNK);
	if (ret)
		return ret;
	return tls_read(ic->up.ssl, ic->up.fd, ic->rbuf + ic->rlen, ic->rcap - ic->rlen, deadline);
}

struct fwd_ctx {
	struct ic *ic;
	struct exchange *ex;
	bool chunked_out;          /* transformed output is framed as chunks */
	int err;
};

/* Sends what the exchange produced from the response (restored tokens) as
 * one chunk, or raw for an HTTP/1.0 client (close-delimited). */
static int flush_transformed(struct fwd_ctx *f)
{
	struct exchange *ex = f->ex;
	char hdr[24];
	int n;
	if (!ex->out.len)
		return 0;
	if (f->chunked_out) {
		n = snprintf(hdr, sizeof(hdr), "%zx\r\n", ex->out.len);
		if (send_client(f->ic, hdr, (size_t)n) || send_client(f->ic, ex->out.data, ex->out.len) ||
		    send_client(f->ic, "\r\n", 2))
			return -EIO;
		ex->bytes_down += (uint64_t)n + 2;
	} else if (send_client(f->ic, ex->out.data, ex->out.len)) {
		return -EIO;
	}
	ex->bytes_down += ex->out.len;
	ex->out.len = 0;
	return 0;
}

static int on_response_data(void *arg, const char *data, size_t len)
{
	struct fwd_ctx *f = arg;
	exchange_response_data(f->ex, data, len);
	if (f->ex->cut) {
		/* an answer that could not be redacted: the client sees a cut
		 * response, never the raw one; the upstream is mid-response */
		f->ic->up_reusable = false;
		f->err = -EIO;
		return EIO;
	}
	if (f->ex->transform && flush_transformed(f)) {
		f->err = -EIO;
		return EIO;
	}
	return 0;
}

/* The response head for a transformed body: the upstream's status line and
 * headers, its framing replaced by chunked (or close for HTTP/1.0). */
static int send_transformed_head(struct ic *ic, const struct http_response *resp, bool chunked)
{
	char *out = ic->fwd;
	size_t cap = ic->fwd_cap, len;
	const char *eol = memchr(ic->rbuf, '\n', ic->rlen);
	int n;

	if (!eol || (size_t)(eol - ic->rbuf + 1) + 64 > cap)
		return -ENOSPC;
	len = (size_t)(eol - ic->rbuf + 1);
	memcpy(out, ic->rbuf, len);
	for (unsigned i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];
		if ((h->name_len == 14 && !strncasecmp(h->name, "content-length", 14)) ||
		    (h->name_len == 17 && !strncasecmp(h->name, "transfer-encoding", 17)) ||
		    (h->name_len == 10 && !strncasecmp(h->name, "connection", 10)))
			continue;
		if (len + h->name_len + h->value_len + 4 + 64 > cap)
			return -ENOSPC;
		memcpy(out + len, h->name, h->name_len);
		len += h->name_len;
		memcpy(out + len, ": ", 2);
		len += 2;
		memcpy(out + len, h->value, h->value_len);
		len += h->value_len;
		memcpy(out + len, "\r\n", 2);
		len += 2;
	}
	n = snprintf(out + len, cap - len, "%s\r\n",
		     chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
	len += (size_t)n;
	return send_client(ic, out, len);
}

/* Accept-Encoding is dropped upstream: the agent must read the answer
 * (usage, output findings, token restoration), so it asks for identity.
 * The loopback-to-provider bandwidth this costs is the price of seeing.
 * A redacted body is forwarded decoded (exchange.c): its Content-Encoding
 * goes too, and http_format_request_head writes the new Content-Length. */
static void drop_accept_encoding(struct http_request *req, bool content_encoding)
{
	unsigned k = 0;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (h->name_len == 15 && !strncasecmp(h->name, "accept-encoding", 15))
			continue;
		if (content_encoding && h->name_len == 16 && !strncasecmp(h->name, "content-encoding", 16))
			continue;
		req->headers[k++] = *h;
	}
	req->nheaders = k;
}

/* A 101 to a WebSocket upgrade wsrelay allowed: the head goes to the
 * client, then the connection is a frame relay until the session ends;
 * the upstream is never pooled after it. */
static int relay_websocket(struct ic *ic, const struct http_request *req, struct exchange *ex, size_t phl)
{
	struct wsrelay_io io = {
		.cssl = ic->cssl, .ussl = ic->up.ssl, .cfd = ic->cfd, .ufd = ic->up.fd,
		.write_all = tls_write_all,
		.cpend = ic->in + req->head_len, .cpend_len = ic->in_len - req->head_len,
		.upend = ic->rbuf + phl, .upend_len = ic->rlen - phl,
	};
	ex->status = 101;
	if (send_client(ic, ic->rbuf, phl) == 0) {
		ex->bytes_down += phl;
		ex->t_first_byte_ms = loop_now_ms();
		wsrelay_run(ex, &io);
	}
	upstream_close(&ic->up);
	return 1;
}

/* Sends the request upstream and streams the response back. Returns 0 if
 * the client connection may carry another request, 1 if it must close,
 * < 0 on failure (client gets an error if nothing was sent yet). */
static int proxy_exchange(struct ic *ic, struct http_request *req, struct exchange *ex)
{
	const struct config *cfg = ic->ag->cfg;
	struct http_limits rlim = { .max_head_bytes = cfg->max_head_bytes, .max_headers = 128 };
	struct http_response resp;
	uint64_t deadline;
	ssize_t hl;
	int ret;
	bool retried = false;
	const char *body = exchange_body(ex, ic->bodyp, &ic->body_len);

	/* fwd also holds a rewritten response head: room for either. */
	/* a redacted head grows by at most 64 bytes per replaced finding */
	size_t fwd_need = (req->head_len > cfg->max_head_bytes ? req->head_len : cfg->max_head_bytes) + 256 +
			  64 * (size_t)ex->n_head_spans;
	if (grow(&ic->fwd, &ic->fwd_cap, fwd_need, fwd_need))
		return -ENOMEM;
	/* header indexes of the rewrite are those of the request as parsed */
	exchange_rewrite_head(ex, req);
	drop_accept_encoding(req, ex->drop_content_encoding);
again:
	if (!ic->up.ssl && (ret = upstream_connect(ic, ex))) {
		send_error(ic, ex, 502, ex->reason ? ex->reason : "upstream_unreachable", ex->error);
		return 1;
	}
	hl = http_format_request_head(req, ic->fwd, ic->fwd_cap, ic->body_len);
	if (hl > 0 && ex->kind)
		hl = wsrelay_request_head(ic->fwd, ic->fwd_cap, (size_t)hl);
	if (hl < 0)
		return -ENOSPC;
	deadline = loop_now_ms() + cfg->upstream_timeout_ms;
	/* A small body goes in the same TLS record as the head. */
	size_t together = 0;
	if (ic->body_len && ic->body_len <= COALESCE_MAX &&
	    !grow(&ic->fwd, &ic->fwd_cap, (size_t)hl + ic->body_len, (size_t)hl + COALESCE_MAX)) {
		memcpy(ic->fwd + hl, body, ic->body_len);
		together = ic->body_len;
	}
	if ((ret = tls_write_all(ic->up.ssl, ic->up.fd, ic->fwd, (size_t)hl + together, deadline)) ||
	    (ic->body_len && !together &&
	     (ret = tls_write_all(ic->up.ssl, ic->up.fd, body, ic->body_len, deadline)))) {
		upstream_close(&ic->up);
		/* A pooled connection may have been closed by the server just now:
		 * retry once on a fresh one (nothing reached the client yet). */
		if (ex->upstream_reused && !retried) {
			retried = true;
			ex->upstream_reused = false;
			goto again;
		}
		ex->error = "upstream write failed";
		send_error(ic, ex, 502, "upstream_write_failed", ex->error);
		return 1;
	}

	/* Response head(s): 1xx interim responses are forwarded, then the final one. */
	ic->rlen = 0;
	for (;;) {
		int phl;
		size_t rchecked = 0;
		for (;;) {
			phl = 0;
			if (ic->rlen && (http_head_may_be_complete(ic->rbuf, ic->rlen, rchecked) ||
					 ic->rlen >= cfg->max_head_bytes))
				phl = http_parse_response(ic->rbuf, ic->rlen, &rlim, req->method,
							  req->method_len, &resp);
			rchecked = ic->rlen;
			if (phl != 0)
				break;
			/* The request just left: its answer cannot be there yet, so
			 * wait first instead of paying a read that says EAGAIN. */
			ssize_t n = 0;
			if (ic->rlen == 0 && !SSL_has_pending(ic->up.ssl))
				n = wait_fd(ic->up.fd, POLLIN, deadline);
			if (n == 0)
				n = upstream_fill(ic, cfg->max_head_bytes, deadline);
			if (n <= 0) {
				upstream_close(&ic->up);
				if (n == 0 && ic->rlen == 0 && ex->upstream_reused && !retried) {
					retried = true;
					ex->upstream_reused = false;
					goto again;
				}
				ex->error = n == -ETIMEDOUT ? "upstream response timed out" :
					    "upstream closed before responding";
				send_error(ic, ex, n == -ETIMEDOUT ? 504 : 502, "upstream_no_response", ex->error);
				return 1;
			}
			ic->rlen += (size_t)n;
		}
		if (phl < 0) {
			upstream_close(&ic->up);
			ex->error = "malformed upstream response";
			send_error(ic, ex, 502, "upstream_malformed", ex->error);
			return 1;
		}
		if (resp.status >= 100 && resp.status < 200) {
			if (resp.status == 101 && ex->kind && wsrelay_response_ok(&resp))
				return relay_websocket(ic, req, ex, (size_t)phl);
			if (resp.status == 101) {
				upstream_close(&ic->up);
				ex->error = ex->kind ? "the server's WebSocket answer negotiated an extension (or no websocket upgrade): "
						       "the agent cannot read such frames" :
						       "protocol upgrade is not supported";
				send_error(ic, ex, 502, "upgrade_refused", ex->error);
				return 1;
			}
			if ((ret = send_client(ic, ic->rbuf, (size_t)phl)))
				return -EIO;
			memmove(ic->rbuf, ic->rbuf + phl, ic->rlen - (size_t)phl);
			ic->rlen -= (size_t)phl;
			continue;
		}
		hl = phl;
		break;
	}
	ex->status = resp.status;
	exchange_response_head(ex, &resp);
	if (ex->cut) {
		upstream_close(&ic->up);
		ex->error = "answer_redaction_failed";
		send_error(ic, ex, 502, "answer_redaction_failed", "the answer could not be redacted");
		return 1;
	}
	struct fwd_ctx fc = { ic, ex, req->minor == 1, 0 };
	if (ex->transform) {
		if ((ret = send_transformed_head(ic, &resp, fc.chunked_out)))
			return -EIO;
	}
	/* Untransformed, the head goes out with the first body bytes (one TLS
	 * record, one write): head_pending counts the head bytes still to send. */
	size_t head_pending = ex->transform ? 0 : (size_t)hl;
	ex->bytes_down += (uint64_t)hl;
	ex->t_first_byte_ms = loop_now_ms();

	/* Body: forwarded as it arrives, never held whole. */
	struct http_chunked ch;
	uint64_t left = resp.content_length;
	size_t have = ic->rlen - (size_t)hl;
	char *p = ic->rbuf + hl;
	bool done = resp.body == HTTP_BODY_NONE || (resp.body == HTTP_BODY_LENGTH && left == 0);
	if (done && head_pending && send_client(ic, ic->rbuf, head_pending))
		return -EIO;
	if (resp.body == HTTP_BODY_CHUNKED)
		http_chunked_init(&ch, UINT64_MAX, 65536);
	ic->up_reusable = resp.keep_alive;
	deadline = loop_now_ms() + cfg->idle_timeout_ms;
	while (!done) {
		size_t fwd = have;
		if (have) {
			if (resp.body == HTTP_BODY_LENGTH) {
				if (fwd > left) {
					fwd = (size_t)left;
					ic->up_reusable = false;   /* bytes beyond the response */
				}
				on_response_data(&fc, p, fwd);
				left -= fwd;
				done = left == 0;
			} else if (resp.body == HTTP_BODY_CHUNKED) {
				ssize_t used = http_chunked_feed(&ch, p, have, on_response_data, &fc);
				if (used < 0) {
					ex->error = "malformed chunked response";
					upstream_close(&ic->up);
					return 1;   /* head already sent: the client sees a cut */
				}
				fwd = (size_t)used;
				done = http_chunked_done(&ch);
				if (done && fwd < have)
					ic->up_reusable = false;
			} else {
				on_response_data(&fc, p, fwd);
			}
			if (fc.err)
				return -EIO;
			if (!ex->transform) {
				if ((fwd || head_pending) &&
				    send_client(ic, p - head_pending, fwd + head_pending))
					return -EIO;
				head_pending = 0;
				ex->bytes_down += fwd;
			}
			if (done)
				break;
		}
		if (head_pending) {
			/* The head arrived alone: send it now, the body may take a while. */
			if (send_client(ic, ic->rbuf, head_pending))
				return -EIO;
			head_pending = 0;
		}
		ssize_t n = tls_read(ic->up.ssl, ic->up.fd, ic->rbuf, ic->rcap, deadline);
		if (n == 0 && resp.body == HTTP_BODY_EOF)
			break;
		if (n <= 0) {
			ex->error = n == -ETIMEDOUT ? "upstream stalled mid-response" :
				    "upstream closed mid-response";
			upstream_close(&ic->up);
			return 1;
		}
		p = ic->rbuf;
		have = (size_t)n;
		deadline = loop_now_ms() + cfg->idle_timeout_ms;
	}
	exchange_response_end(ex);
	if (ex->cut)
		return -EIO;
	if (ex->transform) {
		if (flush_transformed(&fc) || (fc.chunked_out && send_client(ic, "0\r\n\r\n", 5)))
			return -EIO;
		if (!fc.chunked_out)
			return 1;
	}
	if (resp.body == HTTP_BODY_EOF || !ic->up_reusable)
		upstream_close(&ic->up);
	return resp.keep_alive && resp.body != HTTP_BODY_EOF ? 0 : 1;
}

/* ticket: from begin_request_event (0 = none). */
static void emit_request_event(struct ic *ic, struct exchange *ex, uint64_t ticket)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	conn_info_fill_event(&ic->info, &ev);
	exchange_fill_event(ex, &ev);
	audit_end(ic->ag->audit, ticket, &ev);
	metrics_count_action(ic->ag, ev.action);
}

/* Audit before forwarding: what is known before the first byte goes
 * upstream (identity, host, path, decision, findings) is journaled, so a
 * crash mid-exchange still leaves an event. */
static uint64_t begin_request_event(struct ic *ic, struct exchange *ex)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	conn_info_fill_event(&ic->info, &ev);
	exchange_fill_event(ex, &ev);
	return audit_begin(ic->ag->audit, &ev);
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

/* One request on the connection, from its head to its audit event.
 * 0: the connection may carry another; 1: it must close; < 0: the answer
 * was cut short. */
static int serve_request(struct ic *ic)
{
	struct http_request req;
	struct exchange ex;
	size_t consumed = 0;
	int ret;

	exchange_init(&ex, ic->ag, &ic->info, &ic->xc);
	ret = read_request(ic, &req, &consumed);
	if (ret == 0)
		return 1;
	ex.t_start_ms = loop_now_ms();
	if (ret < 0) {
		int status = ret <= -400 && ret >= -599 ? -ret : 400;
		ex.error = status == 408 ? "request timed out" :
			   status == 413 ? "request body too large" :
			   status == 431 ? "request head too large" :
			   status == 503 ? "the agent's buffer for request bodies is full; retry shortly" :
					   "malformed request";
		ex.reason = status == 503 ? "overloaded" : "bad_request";
		ex.action = "block";
		if (status == 503 || (ic->h2_refuse && status == ic->h2_refuse)) {
			if (status == 503)
				atomic_fetch_add(&ic->ag->stats.buffer_refusals, 1);
			/* the provider's own error shape, from what the head says */
			char path[256];
			size_t pl = req.target_len < sizeof(path) - 1 ? req.target_len : sizeof(path) - 1;
			memcpy(path, req.target, pl);
			path[pl] = 0;
			ex.provider = provider_identify(ic->info.sni, path);
		}
		send_error(ic, &ex, status, ex.reason, ex.error);
		emit_request_event(ic, &ex, 0);
		exchange_free(&ex);
		/* Only a refused body may still be in flight; a slow or
		 * malformed client gets no more of our time. */
		if ((status == 413 || status == 503) && !ic->h2)
			linger(ic);
		return 1;
	}
	ic->nreq++;
	ex.bytes_up = consumed;
	if (host_is_sni(&req, ic->info.sni)) {
		exchange_request(&ex, &req, ic->bodyp, ic->body_len);
		wsrelay_upgrade(&ex, &req);
	} else {
		exchange_refuse(&ex, &req, 421, REASON_HOST_MISMATCH,
				"request refused: its Host is not the server name this connection "
				"was opened for (421 Misdirected Request)");
		metrics_count_reason(ic->ag, REASON_HOST_MISMATCH);
		log_info("refused %s request of pid %lld: %s", ic->info.sni, (long long)ic->info.id.pid,
			 reason_text(REASON_HOST_MISMATCH));
	}
	if (ex.blocked) {
		send_error(ic, &ex, ex.block_status, ex.block_code, ex.block_message);
		emit_request_event(ic, &ex, 0);
		exchange_free(&ex);
		return 1;
	}
	uint64_t ticket = begin_request_event(ic, &ex);
	ret = proxy_exchange(ic, &req, &ex);
	/* Cut short (the client went away mid-answer): the upstream may be
	 * mid-response too, and must never be lent to the next request. */
	if (ret < 0)
		ic->up_reusable = false;
	ex.latency_ms = loop_now_ms() - ex.t_start_ms;
	exchange_done(&ex);
	emit_request_event(ic, &ex, ticket);
	exchange_free(&ex);
	if (ret != 0 || !req.keep_alive)
		return ret < 0 ? ret : 1;
	/* Keep pipelined bytes that followed this request. */
	memmove(ic->in, ic->in + consumed, ic->in_len - consumed);
	ic->in_len -= consumed;
	release_buffers(ic);
	return 0;
}

/* ---- HTTP/2 clients: agent/proxy/h2.c turns each stream into a request that
 * serve_request handles exactly as an HTTP/1.1 one ---- */

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
		sub->info = g->ic->info;   /* the same for every stream of the connection */
	}
	if (sub) {
		sub->info.have_tunnel_fd = g->ic->info.have_tunnel_fd;
		sub->info.tunnel_fd = g->ic->info.tunnel_fd;
		g->ic->info.have_tunnel_fd = false;
	}
	pthread_mutex_unlock(&g->mu);
	if (sub) {
		sub->h2 = st;
		sub->h2_refuse = 0;
		sub->in_len = sub->body_len = sub->rlen = 0;
	}
	return sub;
}

/* Everything a stream ic holds; the upstream as serve() leaves it at the
 * end of a connection. */
static void stream_ic_drop(struct ic *sub)
{
	if (sub->up.ssl && sub->up_reusable && !sub->info.tunnel_auth[0])
		pool_put(&sub->up);
	else
		upstream_close(&sub->up);
	charge(sub, 0, 0);
	free(sub->in);
	free(sub->body);
	free(sub->rbuf);
	free(sub->fwd);
	exchange_conn_free(&sub->xc);
	explicit_bzero(sub->info.tunnel_auth, sizeof(sub->info.tunnel_auth));
	free(sub);
}

/* On the stream's worker thread, once its exchange is over: kept for the
 * next stream (large buffers given back), or dropped. */
static void stream_ic_free(struct h2_glue *g, struct ic *sub)
{
	bool kept = false;

	if (!sub->up.ssl || !sub->up_reusable)
		upstream_close(&sub->up);
	sub->in_len = sub->rlen = 0;
	release_buffers(sub);
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
	int ret = grow_charged(ic, &ic->in, &ic->in_cap, len, len);
	if (ret == -ENOBUFS) {
		/* the buffer budget is spent: refuse with the 503 HTTP/1.1
		 * clients get, from the head alone (it fits the free allowance) */
		const char *end = memmem(req, len, "\r\n\r\n", 4);
		len = end ? (size_t)(end - req) + 4 : 0;
		ret = len ? grow_charged(ic, &ic->in, &ic->in_cap, len, len) : -EINVAL;
		refuse = 503;
	}
	if (!ret) {
		memcpy(ic->in, req, len);
		ic->in_len = len;
		ic->h2_refuse = refuse;
		ret = serve_request(ic);
		/* cut short mid-answer (or reset by the client): the upstream
		 * is mid-response too, never pooled */
		if (ret < 0)
			upstream_close(&ic->up);
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
	int ret;

	upstream_close(&ic->gup);
	ic->up = (struct upstream){ .fd = -1 };
	ic->want_h2 = true;
	ret = upstream_connect(ic, ex);
	ic->want_h2 = false;
	ic->gup = ic->up;
	ic->up = h1;
	if (ret)
		return ret;
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
	g->ticket = begin_request_event(g->ic, ex);
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
	ic->nreq++;
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
	emit_request_event(ic, &ex, glue.ticket);
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
			    h2_io_worker_end, true };
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

static void serve(struct ic *ic)
{
	const struct config *cfg = ic->ag->cfg;
	SSL_CTX *ctx = certgen_ctx(ic->ag->certgen, ic->info.sni, strlen(ic->info.sni));
	int ret;

	if (!ctx || !(ic->cssl = SSL_new(ctx)) || !SSL_set_fd(ic->cssl, ic->cfd)) {
		SSL_CTX_free(ctx);
		return;
	}
	SSL_CTX_free(ctx);
	SSL_set_options(ic->cssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Read whole records in one syscall; give buffers back while idle. */
	SSL_set_read_ahead(ic->cssl, 1);
	SSL_set_mode(ic->cssl, SSL_MODE_RELEASE_BUFFERS);
	if ((ret = tls_handshake(ic->cssl, ic->cfd, true, loop_now_ms() + cfg->header_timeout_ms))) {
		/* Usually a client that does not trust the interception CA (or pins
		 * its provider's key): audit it so IT can add a passthrough entry. */
		struct audit_event ev;
		audit_event_init(&ev, "connection");
		conn_info_fill_event(&ic->info, &ev);
		ev.action = "intercept";
		ev.reason = ret == -ETIMEDOUT ? "client_handshake_timeout" : "client_rejected_interception";
		ev.error = ret == -ETIMEDOUT ? "client TLS handshake timed out" :
					       "client TLS handshake failed (CA not trusted or pinned client?)";
		ev.latency_ms = loop_now_ms() - ic->info.t_start_ms;
		/* Remembered whatever the mode (the loop thread reads the
		 * mode, so a reload to passthrough applies to past refusals),
		 * before the audit write so a quick retry finds it. */
		char rule[128];
		uint64_t ttl;
		if (ret != -ETIMEDOUT) {
			rejca_note(ic->ag->rejected_ca, ic->info.id.exe, ic->info.sni, loop_now_ms());
			/* names what decides the next attempt: a rejected_ca
			 * entry, or the agent's on_rejected_ca */
			conn_info_rejected_ca(ic->ag, &ic->info, &ttl, rule, sizeof(rule));
			ev.rule = rule;
		}
		audit_emit(ic->ag->audit, &ev);
		return;
	}

	if (h2_negotiated(ic->cssl))
		serve_h2(ic);
	else
		while (serve_request(ic) == 0)
			;
	/* A tunnel opened with this client's proxy credentials is not lent to
	 * another client: the proxy would log its requests under this user. */
	if (ic->up.ssl && ic->up_reusable && !ic->info.tunnel_auth[0])
		pool_put(&ic->up);
	else
		upstream_close(&ic->up);
	SSL_shutdown(ic->cssl);
}

static void *ic_main(void *arg)
{
	struct ic *ic = arg;
	serve(ic);
	SSL_free(ic->cssl);
	upstream_close(&ic->up);
	grpccall_session_free(ic->gsess);
	upstream_close(&ic->gup);
	close(ic->cfd);
	charge(ic, 0, 0);
	free(ic->in);
	free(ic->body);
	free(ic->rbuf);
	free(ic->fwd);
	exchange_conn_free(&ic->xc);
	explicit_bzero(ic->info.tunnel_auth, sizeof(ic->info.tunnel_auth));
	if (ic->info.have_tunnel_fd)
		close(ic->info.tunnel_fd);
	atomic_fetch_sub(&ic->ag->stats.active, 1);
	free(ic);
	OPENSSL_thread_stop();
	return NULL;
}

int intercept_start(struct agent *ag, int cfd, const struct conn_info *info)
{
	pthread_attr_t attr;
	pthread_t tid;
	struct ic *ic;
	int ret;

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
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&tid, &attr, ic_main, ic);
	pthread_attr_destroy(&attr);
	if (ret) {
		atomic_fetch_sub(&ag->stats.active, 1);
		free(ic);
		return -ret;
	}
	return 0;
}

int intercept_init(struct agent *ag, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	int ret;

	if (!cfg->ca_cert)
		return 0;
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
