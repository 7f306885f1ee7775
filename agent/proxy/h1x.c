/* h1x: the sans-IO HTTP/1.1 exchange engine (see h1x.h). A connection's
 * state is its handler: reading a request head, its body, waiting for an
 * upstream, reading the answer's head, streaming its body. Each input
 * resumes the state it left; parsers resume from saved state (the chunked
 * decoders) or only re-parse a head when it may be complete, so bytes
 * arriving one at a time cost linear work.
 *
 * The limits and their answers are those the threaded intercept.c had,
 * kept exactly (the e2e tests and clients rely on them): the header
 * timeout runs from a request's first byte, the body must arrive within
 * idle_timeout of its head, the answer's head within upstream_timeout of
 * the request, and each piece of its body within idle_timeout of the last.
 *
 * What this file must never do: read a clock (the time comes in), touch a
 * socket, or log anything a request or answer carries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "proxy/h1x.h"
#include "audit/audit.h"
#include "audit/reason.h"
#include "buf.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "proxy/mcp.h"
#include "proxy/wsrelay.h"
#include "net/sni.h"

#define IO_CHUNK (64 * 1024)
#define COALESCE_MAX (64 * 1024)

/* The buffer budget (limits.max_buffered_bytes): the capacity of every
 * connection's request buffers beyond BUDGET_FREE is charged to one global
 * count, so clients that announce big bodies and stall cannot take the
 * agent's memory (and with it, in fail_mode open, the audit): past the
 * budget a new body gets a 503 instead of memory. The free allowance keeps
 * heads and small requests working while the budget is spent. */
#define BUDGET_FREE (128 * 1024)
#define RELEASE_ABOVE (64 * 1024)

enum h1x_state {
	ST_REQ_HEAD,      /* reading a request head (or idle between requests) */
	ST_REQ_BODY,      /* reading its body */
	ST_CONNECT,       /* H1X_CONNECT asked, waiting for the outcome */
	ST_UP_HEAD,       /* request sent, reading the answer's head(s) */
	ST_UP_BODY,       /* streaming the answer's body */
	ST_WS,            /* the WebSocket relay has the connection */
	ST_DONE,          /* close the client (HTTP/2: the stream is over) */
};

struct h1x {
	struct agent *ag;                 /* borrowed */
	const struct conn_info *info;     /* borrowed */
	struct exchange_conn *xc;         /* borrowed */
	enum h1x_state st;
	unsigned actions;
	uint64_t deadline;
	/* client input: head + body + pipelined rest */
	char *in;
	size_t in_len, in_cap;
	char *body;                       /* decoded request body (chunked) */
	size_t body_len, body_cap;
	const char *bodyp;                /* the request body: in `in` (Content-Length) or `body` */
	size_t charged;                   /* bytes of in/body charged to the buffer budget */
	unsigned nreq;
	/* the request being read */
	bool started;                     /* its first byte arrived */
	size_t checked;                   /* head bytes already scanned for its end */
	int hl;                           /* head length once parsed */
	size_t off;                       /* end of what the body reading consumed */
	const char *head_at;              /* where `in` was when req was parsed */
	struct http_chunked qch;
	struct http_request req;
	/* the exchange */
	struct exchange ex;
	bool ex_live;
	uint64_t ticket;                  /* from audit_begin, 0 = none */
	const char *fbody;                /* the body forwarded (borrowed from in/body/ex) */
	size_t fbody_len;
	size_t consumed;
	/* upstream */
	bool up_open, up_reusable, retried;
	char *fwd;                        /* request head forwarded, or a rewritten response head */
	size_t fwd_cap, fwd_len;          /* fwd_len: head (+ a coalesced body) to send */
	bool together;                    /* the body went into fwd */
	bool uout_live;
	size_t usent;
	char *rbuf;                       /* upstream bytes: [rpos, rlen) unconsumed */
	size_t rlen, rcap, rpos, rchecked;
	struct http_response resp;
	struct http_chunked rch;
	uint64_t left;
	bool chunked_out;                 /* transformed output is framed as chunks */
	int derr;                         /* set by the response data callback */
	/* client output: cout[csent..) then a span of rbuf passed untouched */
	struct buf cout;
	size_t csent;
	const char *pass;
	size_t pass_len;
	/* HTTP/2 stream */
	bool h2;
	int h2_refuse;
	int result;
};

/* ---- buffers and the budget ---- */

/* The capacity grow() gives a buffer of cap bytes that must hold need. */
static size_t grown_cap(size_t cap, size_t need, size_t limit)
{
	size_t nc = cap ? cap : 16384;
	while (nc < need)
		nc *= 2;
	return nc > limit ? limit : nc;
}

/* Every buffer here holds what a user sent or is answered: it grows by
 * copy-and-wipe and is wiped when freed (no stale copy in freed memory). */
static int grow(char **buf, size_t *cap, size_t need, size_t limit)
{
	if (need <= *cap)
		return 0;
	if (need > limit)
		return -E2BIG;
	size_t nc = grown_cap(*cap, need, limit);
	char *nb = secret_realloc(*buf, *cap, *cap, nc);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = nc;
	return 0;
}

static size_t chargeable(size_t in_cap, size_t body_cap)
{
	return in_cap + body_cap > BUDGET_FREE ? in_cap + body_cap - BUDGET_FREE : 0;
}

/* Adjusts e->charged to the buffers' capacities now. -ENOBUFS if that
 * would pass the budget (nothing charged then). */
static int charge(struct h1x *e, size_t in_cap, size_t body_cap)
{
	size_t want = chargeable(in_cap, body_cap);
	atomic_ulong *b = &e->ag->stats.buffered;
	if (want > e->charged) {
		size_t d = want - e->charged;
		if (atomic_fetch_add(b, d) + d > e->ag->cfg->max_buffered_bytes) {
			atomic_fetch_sub(b, d);
			return -ENOBUFS;
		}
	} else {
		atomic_fetch_sub(b, e->charged - want);
	}
	e->charged = want;
	return 0;
}

/* grow() for the request buffers (in, body), charged to the budget first. */
static int grow_charged(struct h1x *e, char **buf, size_t *cap, size_t need, size_t limit)
{
	int ret;
	if (need <= *cap)
		return 0;
	if (need > limit)
		return -E2BIG;
	size_t nc = grown_cap(*cap, need, limit);
	bool in = buf == &e->in;
	if ((ret = charge(e, in ? nc : e->in_cap, in ? e->body_cap : nc)))
		return ret;
	if ((ret = grow(buf, cap, need, limit)))
		charge(e, e->in_cap, e->body_cap);   /* give back what was not taken */
	return ret;
}

/* The span passed untouched becomes a copy: its bytes in rbuf are about
 * to be reused (or an append must come after it). */
static int cout_settle(struct h1x *e)
{
	int ret = 0;
	if (e->pass_len)
		ret = buf_append(&e->cout, e->pass, e->pass_len);
	e->pass = NULL;
	e->pass_len = 0;
	return ret;
}

static int cout_append(struct h1x *e, const void *p, size_t n)
{
	int ret = cout_settle(e);
	return ret ? ret : buf_append(&e->cout, p, n);
}

/* Upstream bytes that go to the client as they are: no copy while the
 * driver writes them before feeding the engine again. */
static int cout_pass(struct h1x *e, const char *p, size_t n)
{
	if (!n)
		return 0;
	if (e->pass_len && e->pass + e->pass_len == p) {
		e->pass_len += n;
		return 0;
	}
	if (!e->pass_len) {
		e->pass = p;
		e->pass_len = n;
		return 0;
	}
	return cout_append(e, p, n);
}

static size_t cout_pending(const struct h1x *e)
{
	return e->cout.len - e->csent + e->pass_len;
}

/* Between requests: large buffers go back (keep bytes already read of a
 * pipelined request), and the budget with them. */
static void release_buffers(struct h1x *e)
{
	if (e->in_cap > RELEASE_ABOVE && !e->in_len) {
		secret_free(e->in, e->in_cap);
		e->in = NULL;
		e->in_cap = 0;
	} else if (e->in_cap > RELEASE_ABOVE && e->in_len <= RELEASE_ABOVE / 2) {
		char *nb = secret_realloc(e->in, e->in_len, e->in_cap, RELEASE_ABOVE);
		if (nb) {
			e->in = nb;
			e->in_cap = RELEASE_ABOVE;
		}
	}
	if (e->body_cap > RELEASE_ABOVE) {
		secret_free(e->body, e->body_cap);
		e->body = NULL;
		e->body_cap = 0;
	}
	if (e->rcap > RELEASE_ABOVE && e->rpos == e->rlen && !e->pass_len) {
		secret_free(e->rbuf, e->rcap);
		e->rbuf = NULL;
		e->rcap = e->rlen = e->rpos = 0;
	}
	charge(e, e->in_cap, e->body_cap);
}

/* ---- audit and answers of the agent's own ---- */

/* An error answered by the agent itself, in the provider's error shape. */
static void send_error(struct h1x *e, int status, const char *code, const char *msg)
{
	struct exchange *ex = &e->ex;
	char resp[2048];
	int n = ex->mcp ? mcp_error_response(ex, status, msg, resp, sizeof(resp)) :
			  exchange_error_response(ex->provider, ex->path, ex->origin, status, code, msg, resp,
						  sizeof(resp));
	if (n > 0 && cout_append(e, resp, (size_t)n) == 0)
		ex->bytes_down += (uint64_t)n;
	ex->status = ex->mcp ? mcp_error_status(ex, status) : status;
}

static void close_upstream(struct h1x *e)
{
	if (e->up_open)
		e->actions |= H1X_UP_CLOSE;
	e->up_open = false;
	e->uout_live = false;
}

static void start_request(struct h1x *e, uint64_t now);

/* The end of an exchange that was forwarded (or tried to be): ret 0 the
 * connection may carry another request, 1 it must close, < 0 the answer
 * was cut short. */
static void finish(struct h1x *e, int ret, uint64_t now)
{
	struct exchange *ex = &e->ex;
	/* Cut short (the client went away mid-answer): the upstream may be
	 * mid-response too, and must never be lent to the next request. */
	if (ret < 0)
		e->up_reusable = false;
	ex->latency_ms = now - ex->t_start_ms;
	exchange_done(ex);
	exchange_audit_end(&e->ex, e->ticket);
	exchange_free(ex);
	e->ex_live = false;
	e->uout_live = false;
	e->deadline = 0;
	if (e->h2) {
		e->result = ret;
		if (ret < 0)
			close_upstream(e);
		e->st = ST_DONE;
		return;
	}
	if (ret != 0 || !e->req.keep_alive) {
		e->st = ST_DONE;
		return;
	}
	/* Keep pipelined bytes that followed this request. */
	memmove(e->in, e->in + e->consumed, e->in_len - e->consumed);
	e->in_len -= e->consumed;
	release_buffers(e);
	start_request(e, now);
}

/* A request refused before it was forwarded (a limit, a malformed head):
 * answered, audited, and the connection closes. */
static void refuse(struct h1x *e, int status, uint64_t now)
{
	struct exchange *ex = &e->ex;
	const struct config *cfg = e->ag->cfg;

	exchange_init(ex, e->ag, e->info, e->xc);
	ex->t_start_ms = now;
	ex->error = status == 408 ? "request timed out" :
		    status == 405 ? "CONNECT is refused: a tunnel through the agent could not be inspected" :
		    status == 413 ? "request body too large" :
		    status == 431 ? "request head too large" :
		    status == 503 ? "the agent's buffer for request bodies is full; retry shortly" :
				    "malformed request";
	ex->reason = status == 503 ? "overloaded" : status == 405 ? "tunnel_refused" : "bad_request";
	ex->action = "block";
	if (status == 503 || (e->h2_refuse && status == e->h2_refuse)) {
		if (status == 503)
			atomic_fetch_add(&e->ag->stats.buffer_refusals, 1);
		/* the provider's own error shape, from what the head says (the
		 * body's reading may have moved the buffer the head was in) */
		struct http_limits lim = { .max_head_bytes = cfg->max_head_bytes,
					   .max_headers = cfg->max_headers,
					   .max_body_bytes = cfg->max_body_bytes };
		if (e->hl > 0 && (e->in == e->head_at || http_parse_request(e->in, (size_t)e->hl, &lim, &e->req) == e->hl))
			exchange_name_refused(ex, &e->req);
		else
			ex->provider = provider_identify(e->info->sni, "");
	}
	if (status == 405 && !ex->method[0])
		snprintf(ex->method, sizeof(ex->method), "CONNECT");
	send_error(e, status, ex->reason, ex->error);
	exchange_audit_end(&e->ex, 0);
	exchange_free(ex);
	e->deadline = 0;
	e->st = ST_DONE;
	e->result = 1;
	/* Only a refused body may still be in flight; a slow or malformed
	 * client gets no more of our time. */
	if ((status == 413 || status == 503) && !e->h2)
		e->actions |= H1X_LINGER;
}

/* ---- the answer ---- */

/* Sends what the exchange produced from the response (restored tokens) as
 * one chunk, or raw for an HTTP/1.0 client (close-delimited). */
static int flush_transformed(struct h1x *e)
{
	struct exchange *ex = &e->ex;
	char hdr[24];
	int n;
	if (!ex->out.len)
		return 0;
	if (e->chunked_out) {
		n = snprintf(hdr, sizeof(hdr), "%zx\r\n", ex->out.len);
		if (cout_append(e, hdr, (size_t)n) || cout_append(e, ex->out.data, ex->out.len) ||
		    cout_append(e, "\r\n", 2))
			return -EIO;
		ex->bytes_down += (uint64_t)n + 2;
	} else if (cout_append(e, ex->out.data, ex->out.len)) {
		return -EIO;
	}
	ex->bytes_down += ex->out.len;
	ex->out.len = 0;
	return 0;
}

static int on_response_data(void *arg, const char *data, size_t len)
{
	struct h1x *e = arg;
	exchange_response_data(&e->ex, data, len);
	if (e->ex.cut) {
		/* an answer that could not be redacted: the client sees a cut
		 * response, never the raw one; the upstream is mid-response */
		e->up_reusable = false;
		e->derr = -EIO;
		return EIO;
	}
	if (e->ex.transform && flush_transformed(e)) {
		e->derr = -EIO;
		return EIO;
	}
	return 0;
}

/* The response head for a transformed body: the upstream's status line and
 * headers, its framing replaced by chunked (or close for HTTP/1.0). */
static int send_transformed_head(struct h1x *e, const char *head, size_t hlen)
{
	const struct http_response *resp = &e->resp;
	char *out = e->fwd;
	size_t cap = e->fwd_cap, len;
	const char *eol = memchr(head, '\n', hlen);
	int n;

	if (!eol || (size_t)(eol - head + 1) + 64 > cap)
		return -ENOSPC;
	len = (size_t)(eol - head + 1);
	memcpy(out, head, len);
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
		     e->chunked_out ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
	len += (size_t)n;
	return cout_append(e, out, len);
}

static void response_end(struct h1x *e, uint64_t now)
{
	struct exchange *ex = &e->ex;
	exchange_response_end(ex);
	if (ex->cut)
		return finish(e, -EIO, now);
	if (ex->transform) {
		if (flush_transformed(e) || (e->chunked_out && cout_append(e, "0\r\n\r\n", 5)))
			return finish(e, -EIO, now);
		if (!e->chunked_out)
			return finish(e, 1, now);
	}
	if (e->resp.body == HTTP_BODY_EOF || !e->up_reusable)
		close_upstream(e);
	finish(e, e->resp.keep_alive && e->resp.body != HTTP_BODY_EOF ? 0 : 1, now);
}

/* Body bytes of the answer in rbuf[rpos, rlen): forwarded as they arrive,
 * never held whole. */
static void response_body(struct h1x *e, uint64_t now)
{
	struct exchange *ex = &e->ex;
	const char *p = e->rbuf + e->rpos;
	size_t have = e->rlen - e->rpos, fwd = have;
	bool done = false;

	if (!have)
		return;
	e->derr = 0;
	if (e->resp.body == HTTP_BODY_LENGTH) {
		if (fwd > e->left) {
			fwd = (size_t)e->left;
			e->up_reusable = false;   /* bytes beyond the response */
		}
		on_response_data(e, p, fwd);
		e->left -= fwd;
		done = e->left == 0;
	} else if (e->resp.body == HTTP_BODY_CHUNKED) {
		ssize_t used = http_chunked_feed(&e->rch, p, have, on_response_data, e);
		if (used < 0) {
			ex->error = "malformed chunked response";
			close_upstream(e);
			return finish(e, 1, now);   /* head already sent: the client sees a cut */
		}
		fwd = (size_t)used;
		done = http_chunked_done(&e->rch);
		if (done && fwd < have)
			e->up_reusable = false;
	} else {
		on_response_data(e, p, fwd);
	}
	e->rpos = e->rlen;
	if (e->derr)
		return finish(e, -EIO, now);
	if (!ex->transform) {
		if (cout_pass(e, p, fwd))
			return finish(e, -EIO, now);
		ex->bytes_down += fwd;
	}
	if (done)
		response_end(e, now);
	else
		e->deadline = now + e->ag->cfg->idle_timeout_ms;
}

/* The final head, phl bytes at rbuf + rpos, parsed into e->resp. */
static void response_head(struct h1x *e, size_t phl, uint64_t now)
{
	struct exchange *ex = &e->ex;
	const char *head = e->rbuf + e->rpos;

	ex->status = e->resp.status;
	exchange_response_head(ex, &e->resp);
	if (ex->cut) {
		close_upstream(e);
		ex->error = "answer_redaction_failed";
		send_error(e, 502, "answer_redaction_failed", "the answer could not be redacted");
		return finish(e, 1, now);
	}
	e->chunked_out = e->req.minor == 1;
	/* Untransformed, the head goes out with the first body bytes (one
	 * TLS record, one write): both are passed from rbuf untouched. */
	if (ex->transform ? send_transformed_head(e, head, phl) != 0 : cout_pass(e, head, phl) != 0)
		return finish(e, -EIO, now);
	ex->bytes_down += (uint64_t)phl;
	ex->t_first_byte_ms = now;
	e->rpos += phl;
	e->left = e->resp.content_length;
	e->up_reusable = e->resp.keep_alive;
	e->st = ST_UP_BODY;
	e->deadline = now + e->ag->cfg->idle_timeout_ms;
	if (e->resp.body == HTTP_BODY_NONE || (e->resp.body == HTTP_BODY_LENGTH && e->left == 0))
		return response_end(e, now);
	if (e->resp.body == HTTP_BODY_CHUNKED)
		http_chunked_init(&e->rch, UINT64_MAX, 65536);
	response_body(e, now);
}

/* A 101 to a WebSocket upgrade wsrelay allowed: the head goes to the
 * client, then the driver relays frames until the session ends; the
 * upstream is never pooled after it. */
static void start_websocket(struct h1x *e, size_t phl, uint64_t now)
{
	struct exchange *ex = &e->ex;
	ex->status = 101;
	if (cout_append(e, e->rbuf + e->rpos, phl)) {
		close_upstream(e);
		return finish(e, 1, now);
	}
	ex->bytes_down += phl;
	ex->t_first_byte_ms = now;
	e->rpos += phl;
	e->st = ST_WS;
	e->deadline = 0;
	e->actions |= H1X_WEBSOCKET;
}

/* What went wrong before the answer's head: the upstream is closed and the
 * client gets an error in its provider's shape. */
static void upstream_error(struct h1x *e, int status, const char *code, const char *error, uint64_t now)
{
	close_upstream(e);
	e->ex.error = error;
	send_error(e, status, code, error);
	finish(e, 1, now);
}

/* Head(s) of the answer: 1xx interim heads are forwarded, then the final one. */
static void response_heads(struct h1x *e, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	struct http_limits rlim = { .max_head_bytes = cfg->max_head_bytes, .max_headers = 128 };
	struct exchange *ex = &e->ex;

	while (e->st == ST_UP_HEAD) {
		const char *p = e->rbuf + e->rpos;
		size_t avail = e->rlen - e->rpos;
		int phl = 0;
		if (avail && (http_head_may_be_complete(p, avail, e->rchecked) || avail >= cfg->max_head_bytes))
			phl = http_parse_response(p, avail, &rlim, e->req.method, e->req.method_len, &e->resp);
		e->rchecked = avail;
		if (phl == 0)
			return;
		if (phl < 0)
			return upstream_error(e, 502, "upstream_malformed", "malformed upstream response", now);
		if (e->resp.status >= 200 || e->resp.status < 100)
			return response_head(e, (size_t)phl, now);
		if (e->resp.status == 101 && ex->kind && wsrelay_response_ok(&e->resp))
			return start_websocket(e, (size_t)phl, now);
		if (e->resp.status == 101) {
			/* refused by the agent, whatever the policy allowed:
			 * a SOC filter on blocks must find it */
			ex->action = "block";
			ex->reason = "upgrade_refused";
			return upstream_error(e, 502, "upgrade_refused",
					      ex->kind ? "the server's WebSocket answer negotiated an extension (or no websocket upgrade): "
							 "the agent cannot read such frames" :
							 "protocol upgrade is not supported",
					      now);
		}
		if (cout_append(e, p, (size_t)phl))
			return finish(e, -EIO, now);
		e->rpos += (size_t)phl;
		e->rchecked = 0;
	}
}

/* The request goes upstream: its head (with a small body in the same TLS
 * record) and the body. */
static void send_request(struct h1x *e, uint64_t now)
{
	e->usent = 0;
	e->uout_live = true;
	e->rlen = e->rpos = e->rchecked = 0;
	e->deadline = now + e->ag->cfg->upstream_timeout_ms;
	e->st = ST_UP_HEAD;
}

static void connect_upstream(struct h1x *e)
{
	e->st = ST_CONNECT;
	e->deadline = 0;
	e->actions |= H1X_CONNECT;
}

/* A pooled connection may have been closed by the server just now: retry
 * once on a fresh one (nothing reached the client yet). */
static bool retry(struct h1x *e)
{
	if (!e->ex.upstream_reused || e->retried)
		return false;
	e->retried = true;
	e->ex.upstream_reused = false;
	connect_upstream(e);
	return true;
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

/* The head (and a small body) to send upstream, in fwd. */
static int format_request(struct h1x *e)
{
	const struct config *cfg = e->ag->cfg;
	struct http_request *req = &e->req;
	struct exchange *ex = &e->ex;

	e->fbody_len = e->body_len;
	e->fbody = exchange_body(ex, e->bodyp, &e->fbody_len);
	/* fwd also holds a rewritten response head: room for either. */
	/* a redacted head grows by at most 64 bytes per replaced finding */
	size_t fwd_need = (req->head_len > cfg->max_head_bytes ? req->head_len : cfg->max_head_bytes) + 256 +
			  64 * (size_t)ex->n_head_spans;
	if (grow(&e->fwd, &e->fwd_cap, fwd_need, fwd_need))
		return -ENOMEM;
	/* header indexes of the rewrite are those of the request as parsed */
	exchange_rewrite_head(ex, req);
	drop_accept_encoding(req, ex->drop_content_encoding);
	ssize_t hl = http_format_request_head(req, e->fwd, e->fwd_cap, e->fbody_len);
	if (hl > 0 && ex->kind)
		hl = wsrelay_request_head(e->fwd, e->fwd_cap, (size_t)hl);
	if (hl < 0)
		return -ENOSPC;
	e->fwd_len = (size_t)hl;
	e->together = false;
	if (e->fbody_len && e->fbody_len <= COALESCE_MAX &&
	    !grow(&e->fwd, &e->fwd_cap, (size_t)hl + e->fbody_len, (size_t)hl + COALESCE_MAX)) {
		memcpy(e->fwd + hl, e->fbody, e->fbody_len);
		e->fwd_len += e->fbody_len;
		e->together = true;
	}
	return 0;
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

/* A whole request is in hand: inspect, decide, and forward or refuse. */
static void start_exchange(struct h1x *e, uint64_t now)
{
	struct exchange *ex = &e->ex;
	struct http_request *req = &e->req;

	exchange_init(ex, e->ag, e->info, e->xc);
	ex->t_start_ms = now;
	e->ex_live = true;
	e->nreq++;
	ex->bytes_up = e->consumed;
	if (host_is_sni(req, e->info->sni)) {
		exchange_request(ex, req, e->bodyp, e->body_len);
		wsrelay_upgrade(ex, req);
	} else {
		exchange_refuse(ex, req, 421, REASON_HOST_MISMATCH,
				"request refused: its Host is not the server name this connection "
				"was opened for (421 Misdirected Request)");
		metrics_count_reason(e->ag, REASON_HOST_MISMATCH);
		log_info("refused %s request of pid %lld: %s", e->info->sni, (long long)e->info->id.pid,
			 reason_text(REASON_HOST_MISMATCH));
	}
	if (ex->blocked) {
		send_error(e, ex->block_status, ex->block_code, ex->block_message);
		exchange_audit_end(&e->ex, 0);
		exchange_free(ex);
		e->ex_live = false;
		e->deadline = 0;
		e->st = ST_DONE;
		e->result = 1;
		return;
	}
	e->ticket = exchange_audit_begin(&e->ex);
	e->retried = false;
	int ret = format_request(e);
	if (ret)
		return finish(e, ret, now);
	if (e->up_open)
		send_request(e, now);
	else
		connect_upstream(e);
}

/* ---- the request ---- */

static int chunk_to_body(void *arg, const char *data, size_t len)
{
	struct h1x *e = arg;
	int ret = grow_charged(e, &e->body, &e->body_cap, e->body_len + len, e->ag->cfg->max_body_bytes + 1);
	if (ret)
		return ret == -ENOBUFS ? 503 : 413;
	memcpy(e->body + e->body_len, data, len);
	e->body_len += len;
	return 0;
}

static void request_complete(struct h1x *e, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	struct http_limits lim = { .max_head_bytes = cfg->max_head_bytes,
				   .max_headers = cfg->max_headers,
				   .max_body_bytes = cfg->max_body_bytes };
	if (e->req.body == HTTP_BODY_CHUNKED)
		e->bodyp = e->body;
	else if (e->req.body != HTTP_BODY_LENGTH)
		e->bodyp = NULL;
	/* Reading the body may have moved the buffer the request points into. */
	if (e->in != e->head_at && http_parse_request(e->in, (size_t)e->hl, &lim, &e->req) != e->hl)
		return refuse(e, 400, now);
	e->consumed = e->off;
	start_exchange(e, now);
}

/* Body bytes in in[off, in_len). */
static void request_body(struct h1x *e, uint64_t now)
{
	if (e->req.body == HTTP_BODY_LENGTH) {
		uint64_t need = e->req.content_length;
		if (e->in_len - e->off < need)
			return;
		/* The body stays where it was read: no second copy of it. */
		e->bodyp = e->in + e->off;
		e->body_len = need;
		e->off += need;
		return request_complete(e, now);
	}
	if (e->req.body == HTTP_BODY_CHUNKED) {
		if (e->off >= e->in_len)
			return;
		ssize_t used = http_chunked_feed(&e->qch, e->in + e->off, e->in_len - e->off, chunk_to_body, e);
		if (used < 0)
			return refuse(e, used == -413 ? 413 : used == -503 ? 503 : 400, now);
		e->off += (size_t)used;
		if (http_chunked_done(&e->qch))
			request_complete(e, now);
		return;
	}
	request_complete(e, now);
}

static void request_head(struct h1x *e, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	struct http_limits lim = { .max_head_bytes = cfg->max_head_bytes,
				   .max_headers = cfg->max_headers,
				   .max_body_bytes = cfg->max_body_bytes };
	int hl = 0;

	/* Parse only when the head can be complete: a client sending one
	 * byte per record must not make each head cost O(n^2). */
	if (e->in_len && (http_head_may_be_complete(e->in, e->in_len, e->checked) || e->in_len >= cfg->max_head_bytes))
		hl = http_parse_request(e->in, e->in_len, &lim, &e->req);
	e->checked = e->in_len;
	if (hl == 0) {
		if (e->in_len >= cfg->max_head_bytes)
			refuse(e, 431, now);
		return;
	}
	if (hl < 0) {
		int status = hl <= -400 && hl >= -599 ? -hl : 400;
		/* a tunnel asked of the provider's own server: named as such */
		if (status == 400 && e->in_len >= 8 && !memcmp(e->in, "CONNECT ", 8))
			status = 405;
		return refuse(e, status, now);
	}
	e->hl = hl;
	e->head_at = e->in;
	e->body_len = 0;
	e->off = (size_t)hl;
	if (e->req.expect_continue && e->req.body != HTTP_BODY_NONE &&
	    !(e->req.body == HTTP_BODY_LENGTH && e->req.content_length == 0) && e->in_len == (size_t)hl) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (cout_append(e, cont, sizeof(cont) - 1))
			return refuse(e, 400, now);
	}
	if (e->req.body == HTTP_BODY_CHUNKED) {
		e->bodyp = NULL;
		http_chunked_init(&e->qch, cfg->max_body_bytes, 8192);
	}
	e->st = ST_REQ_BODY;
	e->deadline = now + cfg->idle_timeout_ms;
	request_body(e, now);
}

/* Waiting for the next request: bytes of it already read (pipelined) are
 * parsed at once. */
static void start_request(struct h1x *e, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	e->st = ST_REQ_HEAD;
	e->hl = 0;
	e->checked = 0;
	e->started = e->in_len > 0;
	e->deadline = now + (e->nreq ? cfg->idle_timeout_ms : cfg->header_timeout_ms);
	if (e->in_len)
		request_head(e, now);
}

/* ---- inputs ---- */

struct h1x *h1x_new(struct agent *ag, const struct conn_info *info, struct exchange_conn *xc, uint64_t now)
{
	struct h1x *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->ag = ag;
	e->info = info;
	e->xc = xc;
	e->cout.secret = true;    /* restored answers */
	start_request(e, now);
	return e;
}

void h1x_free(struct h1x *e)
{
	if (!e)
		return;
	if (e->ex_live)
		exchange_free(&e->ex);
	charge(e, 0, 0);
	secret_free(e->in, e->in_cap);
	secret_free(e->body, e->body_cap);
	secret_free(e->rbuf, e->rcap);
	secret_free(e->fwd, e->fwd_cap);
	buf_free(&e->cout);
	free(e);
}

/* Reading the client failed (err < 0), it closed (0) or a limit on its
 * buffers was hit: the answer today's limits give. */
static void client_end(struct h1x *e, int err, uint64_t now)
{
	if (e->st == ST_REQ_HEAD) {
		/* Between requests, any end of the connection (close, reset, a
		 * missing close_notify, the idle timeout) is a normal close. */
		if (!e->started) {
			e->st = ST_DONE;
			e->deadline = 0;
			e->result = 1;
			return;
		}
		return refuse(e, err == -ETIMEDOUT ? 408 : 400, now);
	}
	if (e->st == ST_REQ_BODY)
		refuse(e, err == -ETIMEDOUT ? 408 : err == -ENOBUFS ? 503 : err == -E2BIG ? 413 : 400, now);
}

char *h1x_client_space(struct h1x *e, size_t *len, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	size_t need, limit;
	int ret;

	if (!h1x_want_client(e))
		return NULL;
	if (e->st == ST_REQ_HEAD) {
		need = e->in_len + IO_CHUNK;
		limit = cfg->max_head_bytes + IO_CHUNK;
	} else if (e->req.body == HTTP_BODY_LENGTH) {
		/* read no further than the body: what follows stays with TLS */
		need = (size_t)e->hl + e->req.content_length;
		limit = (size_t)e->hl + cfg->max_body_bytes + IO_CHUNK;
	} else {
		/* Framing bytes are bounded by the body limit plus overhead. */
		limit = (size_t)e->hl + cfg->max_body_bytes * 2 + 65536;
		if (e->in_len > limit) {
			refuse(e, 413, now);
			return NULL;
		}
		need = e->in_len + IO_CHUNK;
		limit += IO_CHUNK;
	}
	if ((ret = grow_charged(e, &e->in, &e->in_cap, need, limit))) {
		client_end(e, ret, now);
		return NULL;
	}
	*len = (e->st == ST_REQ_BODY && e->req.body == HTTP_BODY_LENGTH ? need : e->in_cap) - e->in_len;
	return e->in + e->in_len;
}

void h1x_client_input(struct h1x *e, size_t n, uint64_t now)
{
	if (!n || (e->st != ST_REQ_HEAD && e->st != ST_REQ_BODY))
		return;
	e->in_len += n;
	if (e->st == ST_REQ_BODY)
		return request_body(e, now);
	if (!e->started) {
		/* The header timeout runs from the first byte of a request. */
		e->started = true;
		e->deadline = now + e->ag->cfg->header_timeout_ms;
	}
	request_head(e, now);
}

/* Copies data in through one side's space and input calls. */
static size_t copy_in(struct h1x *e, const void *data, size_t len, uint64_t now,
		      char *(*space)(struct h1x *, size_t *, uint64_t), void (*input)(struct h1x *, size_t, uint64_t))
{
	size_t done = 0;
	while (done < len) {
		size_t room;
		char *p = space(e, &room, now);
		if (!p || !room)
			break;
		size_t n = len - done < room ? len - done : room;
		memcpy(p, (const char *)data + done, n);
		done += n;
		input(e, n, now);
	}
	return done;
}

size_t h1x_client_data(struct h1x *e, const void *data, size_t len, uint64_t now)
{
	return copy_in(e, data, len, now, h1x_client_space, h1x_client_input);
}

void h1x_client_eof(struct h1x *e, int err, uint64_t now)
{
	client_end(e, err, now);
}

void h1x_client_write_failed(struct h1x *e, uint64_t now)
{
	buf_free(&e->cout);
	e->csent = 0;
	e->pass = NULL;
	e->pass_len = 0;
	e->up_reusable = false;
	e->actions &= ~(unsigned)H1X_WEBSOCKET;
	switch (e->st) {
	case ST_REQ_HEAD:
	case ST_REQ_BODY:
		/* the 100 Continue could not go out */
		refuse(e, 400, now);
		buf_free(&e->cout);
		e->st = ST_DONE;
		break;
	case ST_CONNECT:
	case ST_UP_HEAD:
	case ST_UP_BODY:
		if (!e->ex.error)
			e->ex.error = e->h2 ? "client reset the stream" : "client connection lost mid-answer";
		finish(e, -EIO, now);
		e->st = ST_DONE;
		break;
	case ST_WS:
		close_upstream(e);
		finish(e, 1, now);
		break;
	case ST_DONE:
		/* an HTTP/2 answer whose last bytes could not go out is cut */
		if (e->h2 && e->result >= 0) {
			e->result = -EIO;
			close_upstream(e);
		}
		break;
	}
}

char *h1x_upstream_space(struct h1x *e, size_t *len, uint64_t now)
{
	const struct config *cfg = e->ag->cfg;
	int ret;

	if (!h1x_want_upstream(e))
		return NULL;
	if (e->rpos == e->rlen) {
		if (cout_settle(e))
			return NULL;
		e->rpos = e->rlen = e->rchecked = 0;
	}
	if (e->st == ST_UP_HEAD) {
		if (e->rpos) {
			if (cout_settle(e))
				return NULL;
			memmove(e->rbuf, e->rbuf + e->rpos, e->rlen - e->rpos);
			e->rlen -= e->rpos;
			e->rpos = 0;
		}
		ret = grow(&e->rbuf, &e->rcap, e->rlen + IO_CHUNK, cfg->max_head_bytes + IO_CHUNK);
	} else {
		ret = grow(&e->rbuf, &e->rcap, e->rlen + IO_CHUNK, e->rlen + IO_CHUNK);
	}
	if (ret) {
		h1x_upstream_eof(e, ret, now);
		return NULL;
	}
	*len = e->rcap - e->rlen;
	return e->rbuf + e->rlen;
}

void h1x_upstream_input(struct h1x *e, size_t n, uint64_t now)
{
	if (!n)
		return;
	e->rlen += n;
	if (e->st == ST_UP_HEAD)
		response_heads(e, now);
	else if (e->st == ST_UP_BODY)
		response_body(e, now);
}

size_t h1x_upstream_data(struct h1x *e, const void *data, size_t len, uint64_t now)
{
	return copy_in(e, data, len, now, h1x_upstream_space, h1x_upstream_input);
}

void h1x_upstream_eof(struct h1x *e, int err, uint64_t now)
{
	if (e->st == ST_UP_HEAD) {
		close_upstream(e);
		if (err == 0 && e->rlen == e->rpos && retry(e))
			return;
		return upstream_error(e, err == -ETIMEDOUT ? 504 : 502, "upstream_no_response",
				      err == -ETIMEDOUT ? "upstream response timed out" :
							  "upstream closed before responding",
				      now);
	}
	if (e->st != ST_UP_BODY)
		return;
	if (err == 0 && e->resp.body == HTTP_BODY_EOF)
		return response_end(e, now);
	e->ex.error = err == -ETIMEDOUT ? "upstream stalled mid-response" : "upstream closed mid-response";
	close_upstream(e);
	finish(e, 1, now);
}

void h1x_upstream_write_failed(struct h1x *e, uint64_t now)
{
	if (e->st != ST_UP_HEAD)
		return;
	close_upstream(e);
	if (retry(e))
		return;
	upstream_error(e, 502, "upstream_write_failed", "upstream write failed", now);
}

void h1x_upstream_connected(struct h1x *e, bool reused, uint64_t now)
{
	if (e->st != ST_CONNECT)
		return;
	e->up_open = true;
	e->ex.upstream_reused = reused;
	send_request(e, now);
}

void h1x_upstream_failed(struct h1x *e, const char *reason, const char *error, uint64_t now)
{
	struct exchange *ex = &e->ex;
	if (e->st != ST_CONNECT)
		return;
	if (reason)
		ex->reason = reason;
	if (error != ex->error_buf)
		snprintf(ex->error_buf, sizeof(ex->error_buf), "%s", error ? error : "");
	ex->error = ex->error_buf;
	send_error(e, 502, ex->reason ? ex->reason : "upstream_unreachable", ex->error);
	finish(e, 1, now);
}

void h1x_tick(struct h1x *e, uint64_t now)
{
	if (!e->deadline || now < e->deadline)
		return;
	if (e->st == ST_REQ_HEAD || e->st == ST_REQ_BODY)
		client_end(e, -ETIMEDOUT, now);
	else if (e->st == ST_UP_HEAD || e->st == ST_UP_BODY)
		h1x_upstream_eof(e, -ETIMEDOUT, now);
}

/* ---- outputs ---- */

unsigned h1x_client_out(const struct h1x *e, struct iovec iov[2])
{
	unsigned n = 0;
	if (e->cout.len > e->csent)
		iov[n++] = (struct iovec){ e->cout.data + e->csent, e->cout.len - e->csent };
	if (e->pass_len)
		iov[n++] = (struct iovec){ (void *)e->pass, e->pass_len };
	return n;
}

void h1x_client_sent(struct h1x *e, size_t n)
{
	size_t c = e->cout.len - e->csent;
	if (n >= c) {
		e->cout.len = e->csent = 0;
		n -= c;
		if (n >= e->pass_len) {
			e->pass = NULL;
			e->pass_len = 0;
		} else {
			e->pass += n;
			e->pass_len -= n;
		}
	} else {
		e->csent += n;
	}
}

unsigned h1x_upstream_out(const struct h1x *e, struct iovec iov[2])
{
	unsigned n = 0;
	if (!e->uout_live)
		return 0;
	if (e->usent < e->fwd_len)
		iov[n++] = (struct iovec){ e->fwd + e->usent, e->fwd_len - e->usent };
	if (!e->together && e->fbody_len) {
		size_t s = e->usent > e->fwd_len ? e->usent - e->fwd_len : 0;
		if (s < e->fbody_len)
			iov[n++] = (struct iovec){ (void *)(e->fbody + s), e->fbody_len - s };
	}
	return n;
}

void h1x_upstream_sent(struct h1x *e, size_t n)
{
	e->usent += n;
}

static size_t uout_pending(const struct h1x *e)
{
	if (!e->uout_live)
		return 0;
	size_t total = e->fwd_len + (e->together ? 0 : e->fbody_len);
	return total > e->usent ? total - e->usent : 0;
}

unsigned h1x_actions(struct h1x *e)
{
	unsigned a = e->actions;
	e->actions = 0;
	return a;
}

bool h1x_want_client(const struct h1x *e)
{
	return !e->h2 && (e->st == ST_REQ_HEAD || e->st == ST_REQ_BODY) && cout_pending(e) < H1X_HIGH_WATER;
}

/* Upstream bytes are read once the request is out, and while the client
 * keeps up (a span passed untouched must be written before rbuf is
 * reused). */
bool h1x_want_upstream(const struct h1x *e)
{
	return (e->st == ST_UP_HEAD || e->st == ST_UP_BODY) && !uout_pending(e) && !e->pass_len &&
	       cout_pending(e) < H1X_HIGH_WATER;
}

uint64_t h1x_deadline(const struct h1x *e)
{
	return e->deadline;
}

bool h1x_done(const struct h1x *e)
{
	return e->st == ST_DONE;
}

bool h1x_idle(const struct h1x *e)
{
	struct iovec iov[2];
	return e->st == ST_REQ_HEAD && !e->in_len && !e->actions && !h1x_client_out(e, iov);
}

bool h1x_awaits_answer(const struct h1x *e)
{
	return !e->h2 && (e->st == ST_CONNECT || e->st == ST_UP_HEAD || e->st == ST_UP_BODY) &&
	       !h1x_want_client(e);
}

void h1x_client_gone(struct h1x *e, uint64_t now)
{
	if (!h1x_awaits_answer(e))
		return;
	if (!e->ex.error)
		e->ex.error = e->st == ST_UP_BODY ? "client connection lost mid-answer"
						  : "client closed the connection before the answer";
	h1x_client_write_failed(e, now);
}

bool h1x_upstream_reusable(const struct h1x *e)
{
	return e->up_open && e->up_reusable;
}

struct exchange *h1x_ws(struct h1x *e, const char **cpend, size_t *cpend_len, const char **upend,
			size_t *upend_len)
{
	*cpend = e->in + e->req.head_len;
	*cpend_len = e->in_len - e->req.head_len;
	*upend = e->rbuf + e->rpos;
	*upend_len = e->rlen - e->rpos;
	return &e->ex;
}

void h1x_ws_done(struct h1x *e, uint64_t now)
{
	if (e->st != ST_WS)
		return;
	close_upstream(e);
	finish(e, 1, now);
}

/* ---- HTTP/2 ---- */

int h1x_h2_begin(struct h1x *e, const char *req, size_t len, int refuse_status, uint64_t now)
{
	int ret = grow_charged(e, &e->in, &e->in_cap, len, len);
	if (ret == -ENOBUFS) {
		/* the buffer budget is spent: refuse with the 503 HTTP/1.1
		 * clients get, from the head alone (it fits the free allowance) */
		const char *end = memmem(req, len, "\r\n\r\n", 4);
		len = end ? (size_t)(end - req) + 4 : 0;
		ret = len ? grow_charged(e, &e->in, &e->in_cap, len, len) : -EINVAL;
		refuse_status = 503;
	}
	if (ret)
		return ret;
	memcpy(e->in, req, len);
	e->in_len = len;
	e->h2 = true;
	e->h2_refuse = refuse_status;
	e->result = 0;
	e->st = ST_REQ_HEAD;
	e->started = true;
	e->checked = 0;
	e->hl = 0;
	if (refuse_status) {
		/* an HTTP/2 stream over a limit: its head says enough to refuse it */
		const struct config *cfg = e->ag->cfg;
		struct http_limits lim = { .max_head_bytes = cfg->max_head_bytes,
					   .max_headers = cfg->max_headers,
					   .max_body_bytes = cfg->max_body_bytes };
		int hl = http_parse_request(e->in, e->in_len, &lim, &e->req);
		if (hl > 0) {
			e->hl = hl;
			e->head_at = e->in;
		}
		refuse(e, hl > 0 ? refuse_status : 400, now);
		return 0;
	}
	request_head(e, now);
	/* the stream's request is whole: a head or body still missing is malformed */
	if (e->st == ST_REQ_HEAD || e->st == ST_REQ_BODY)
		client_end(e, 0, now);
	return 0;
}

int h1x_h2_end(struct h1x *e)
{
	int ret = e->result;
	e->h2 = false;
	e->h2_refuse = 0;
	e->in_len = 0;
	release_buffers(e);
	e->st = ST_DONE;
	return ret;
}
