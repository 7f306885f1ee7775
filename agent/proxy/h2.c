/* h2: the HTTP/2 codec toward clients (see h2.h).
 *
 * Owns one nghttp2 server session per connection, the streams it holds
 * (request being received, queued, or being answered) and the translation
 * of each stream to and from HTTP/1.1 bytes (gRPC streams excepted: they
 * go whole to io->grpc and are answered with h2_send_*), so that the exchange code
 * (inspection, policy, redaction, restoration, audit) is the one HTTP/1.1
 * uses, not a second copy.
 *
 * Must never: forward a header field nghttp2 has not validated (RFC 9113
 * 8.2.1: no CR, LF or NUL, lowercase names, no connection-specific
 * fields), hold more than H2_OUT_HIGH bytes of an answer per stream, hold
 * request bodies beyond the limits, or let a client keep resetting,
 * continuing or compressing its way into the agent's CPU and memory. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <nghttp2/nghttp2.h>
#include "proxy/h2.h"
#include "http.h"
#include "content/json.h"
#include "efd.h"

/* Reads of this size keep an idle connection's resident stack small;
 * OpenSSL reads whole records (read-ahead) whatever the size asked. */
#define H2_READ_CHUNK 4096
#define H2_WRITE_BATCH (64 * 1024)
#define H2_METHOD_MAX 16
/* A refused stream's head keeps this much of its path (the event's path
 * and the provider come from it; the rest is not needed to refuse). */
#define H2_REFUSED_PATH_MAX 1024
/* A worker runs the same exchange code as an HTTP/1.1 connection's
 * thread (intercept.c gives those 256 KiB). */
#define H2_WORKER_STACK (256 * 1024)
/* After the client's EOF, how long to wait for the workers' answers
 * between two looks at the client (a half-closed client still reads). */
#define H2_EOF_WAIT_MS 1000
/* A worker with no stream to serve waits this long for the next one
 * (a thread per request would cost more than the request), then ends. */
#define H2_WORKER_IDLE_MS 2000
#define H2_TRIM_MS 100                /* no stream live this long: idle workers end, io->idle */

/* What a worker queues for the connection thread: a type byte, a u32
 * length, the payload. */
enum { R_H1 = 1, R_HEAD, R_DATA, R_TRL };
#define R_HDR 5

struct h2_stream {
	int32_t id;
	struct h2_conn *h;
	struct h2_stream *next_all;   /* every stream the connection holds */
	struct h2_stream *next_ready; /* requests complete, in completion order */
	bool queued, served, closed;
	int refuse;                   /* 0, 400 (malformed), 405 (CONNECT), 413, 431 or 503 */
	char method[H2_METHOD_MAX];
	struct buf path, authority, host, hdrs, cookie, body;
	size_t hlist;                 /* RFC 9113 6.5.2 size of the header list so far */
	unsigned nhdrs;
	bool expect_continue;
	/* response side: the HTTP/1.1 answer turned into HEADERS + DATA */
	struct buf rhead;        /* head bytes until it parses */
	bool head_done, submitted, ended, deferred;
	enum http_body framing;
	uint64_t left;                /* HTTP_BODY_LENGTH: bytes still to come */
	struct http_chunked chunked;
	struct buf out;          /* DATA payload waiting for the window */
	size_t out_off;
	/* gRPC (io->grpc): the call is served whole, answered with trailers */
	bool grpc;
	struct buf trl;          /* trailers to send after the DATA: name\0value\0 ... */
	size_t trl_n;
	/* the worker (connection thread's view) */
	bool worker;                  /* handed to a worker that has not said it is done */
	bool failed;                  /* its answer broke: reset, the rest dropped */
	bool eof_sent, rst_after;     /* refused: RST_STREAM(NO_ERROR) once the answer is out */
	bool rst_cut;                 /* cut short: RST_STREAM once what was answered is out */
	struct buf req;               /* the request handed to it */
	struct buf qc;                /* records taken from q, being applied */
	/* shared with the worker, under h->mu */
	struct buf q;                 /* records queued by the worker */
	bool w_done, cancel;
	int w_rc;
	/* the worker's own */
	bool w_head, w_ended;
	/* a gRPC request read as it arrives (io->grpc_streaming): the
	 * worker starts at the HEADERS; under h->mu */
	bool streaming;
	bool done;                    /* the worker is done with it: more DATA is dropped */
	struct buf rq;                /* DATA not yet taken by the worker */
	size_t rq_off, rq_taken;      /* taken: to give back to the budget */
	bool rq_end;                  /* END_STREAM came */
	int body_fd;                  /* eventfd: DATA, the end, or cancel; -1 */
	int cancel_fd;                /* the worker's eventfd, written at cancel (h2_watch_cancel); -1 */
};

struct h2_worker {
	struct h2_conn *h;
	pthread_cond_t cv;            /* a stream was handed to it, or quit */
	struct h2_stream *st;         /* under h->mu: the stream to serve */
	struct h2_worker *next_idle;  /* under h->mu */
};

struct h2_conn {
	nghttp2_session *s;
	const struct h2_limits *lim;
	const struct h2_io *io;
	struct h2_stream *all;
	struct h2_stream *ready, *ready_tail;
	unsigned live;                /* streams handed to workers, not done */
	pthread_mutex_t mu;           /* every stream's q, w_done, cancel; the workers */
	pthread_cond_t cv;            /* a queue was taken or a stream cancelled */
	/* worker threads, under mu: idle ones wait for a stream */
	struct h2_worker *idle;
	unsigned nthreads;
	bool quit;
	bool trim;                    /* under mu: idle workers end (the connection went quiet) */
	bool trimmed;                 /* since the last stream started (connection thread) */
	pthread_cond_t gone;          /* a worker thread ended */
	int wake_fd;                  /* eventfd: a worker queued or ended; -1 until the first */
	bool woken;                   /* under mu: wake_fd written since drain last looked */
	bool in_eof;
	uint64_t buffered;            /* request body bytes held by all streams */
	uint64_t reset_since;         /* start of the current one-second reset window */
	uint32_t resets;
	uint32_t continuations;       /* in the header block being received */
	bool broken, abuse, io_failed;
	char why[160];
	struct buf wbuf;
};

/* ---- streams ---- */

/* Request body bytes held, also counted in the caller's buffer budget. */
static void uncharge(struct h2_conn *h, size_t n)
{
	h->buffered -= n;
	if (n && h->io->charge)
		h->io->charge(h->io->arg, -(int64_t)n);
}

static void stream_free(struct h2_conn *h, struct h2_stream *st)
{
	struct h2_stream **pp;

	for (pp = &h->all; *pp; pp = &(*pp)->next_all)
		if (*pp == st) {
			*pp = st->next_all;
			break;
		}
	if (st->queued) {
		struct h2_stream *prev = NULL;
		for (struct h2_stream *q = h->ready; q; prev = q, q = q->next_ready)
			if (q == st) {
				if (prev)
					prev->next_ready = q->next_ready;
				else
					h->ready = q->next_ready;
				if (h->ready_tail == st)
					h->ready_tail = prev;
				break;
			}
	}
	uncharge(h, st->body.len);
	buf_free(&st->req);
	buf_free(&st->qc);
	buf_free(&st->q);
	uncharge(h, st->rq.len - st->rq_off + st->rq_taken);
	buf_free(&st->rq);
	if (st->body_fd >= 0)
		close(st->body_fd);
	buf_free(&st->path);
	buf_free(&st->authority);
	buf_free(&st->host);
	buf_free(&st->hdrs);
	buf_free(&st->cookie);
	buf_free(&st->body);
	buf_free(&st->rhead);
	buf_free(&st->out);
	buf_free(&st->trl);
	free(st);
}

static void stream_ready(struct h2_conn *h, struct h2_stream *st)
{
	if (st->queued || st->served)
		return;
	st->queued = true;
	st->next_ready = NULL;
	if (h->ready_tail)
		h->ready_tail->next_ready = st;
	else
		h->ready = st;
	h->ready_tail = st;
}

static struct h2_stream *stream_pop(struct h2_conn *h)
{
	struct h2_stream *st = h->ready;

	if (!st)
		return NULL;
	h->ready = st->next_ready;
	if (!h->ready)
		h->ready_tail = NULL;
	st->queued = false;
	st->served = true;
	return st;
}

/* The body bytes are no longer needed: give them back to the budget. */
static void stream_drop_body(struct h2_conn *h, struct h2_stream *st)
{
	uncharge(h, st->body.len);
	buf_free(&st->body);
}

/* The worker reading a streamed request body has more to read. */
static void body_wake(struct h2_stream *st)
{
	efd_signal(st->body_fd);
}

/* The worker's answers are no longer wanted: it gets -EIO from now on. */
static void stream_cancel(struct h2_conn *h, struct h2_stream *st)
{
	pthread_mutex_lock(&h->mu);
	st->cancel = true;
	pthread_cond_broadcast(&h->cv);
	efd_signal(st->cancel_fd);
	pthread_mutex_unlock(&h->mu);
	body_wake(st);
}

int h2_watch_cancel(struct h2_stream *st, int fd)
{
	struct h2_conn *h = st->h;
	int ret = 0;

	pthread_mutex_lock(&h->mu);
	st->cancel_fd = fd;
	if (st->cancel) {
		ret = -EIO;
		efd_signal(fd);
	}
	pthread_mutex_unlock(&h->mu);
	return ret;
}

static void broke(struct h2_conn *h, bool abuse, const char *why)
{
	if (h->broken)
		return;
	h->broken = true;
	h->abuse = abuse;
	snprintf(h->why, sizeof(h->why), "%s", why);
}

/* ---- nghttp2 callbacks: the request side ---- */

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *user)
{
	struct h2_conn *h = user;
	(void)s;
	if (hd->type == NGHTTP2_HEADERS) {
		h->continuations = 0;
	} else if (hd->type == NGHTTP2_CONTINUATION && ++h->continuations > h->lim->max_continuations) {
		/* CVE-2024-27316 class: endless CONTINUATION frames, each cheap,
		 * never ending the block, cost HPACK work and memory forever. */
		broke(h, true, "CONTINUATION flood: more CONTINUATION frames in one header block than http2.max_continuations");
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct h2_conn *h = user;
	unsigned n = 0;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	for (struct h2_stream *st = h->all; st; st = st->next_all)
		n++;
	if (n >= h->lim->max_concurrent_streams) {
		/* nghttp2 enforces the setting once acknowledged; before that
		 * (and for streams we still hold after their close) we do. */
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	struct h2_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->id = f->hd.stream_id;
	st->h = h;
	/* what the user sent or is answered: no stale copy in freed memory */
	st->path.secret = st->hdrs.secret = st->cookie.secret = st->body.secret = st->req.secret = st->rq.secret = true;
	st->rhead.secret = st->out.secret = st->q.secret = st->qc.secret = true;
	st->body_fd = -1;
	st->cancel_fd = -1;
	st->next_all = h->all;
	h->all = st;
	if (nghttp2_session_set_stream_user_data(s, st->id, st)) {
		stream_free(h, st);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len == n && !memcmp(name, lit, n);
}

static int append_field(struct buf *b, const uint8_t *name, size_t nl, const uint8_t *v, size_t vl)
{
	if (buf_reserve(b, nl + vl + 4))
		return -ENOMEM;
	buf_append(b, name, nl);
	buf_append(b, ": ", 2);
	buf_append(b, v, vl);
	buf_append(b, "\r\n", 2);
	return 0;
}

/* One field of a request header block. Values were validated by nghttp2
 * (RFC 9113 8.2.1); sizes are ours to bound. */
static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct h2_conn *h = user;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	int rc = 0;

	(void)flags;
	/* Trailers of a request are not forwarded (the upstream is HTTP/1.1
	 * with a Content-Length body). */
	if (!st || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST || st->refuse)
		return 0;
	st->hlist += nl + vl + 32;
	if (st->hlist > h->lim->max_header_list_bytes) {
		st->refuse = 431;
		return 0;
	}
	if (nl && name[0] == ':') {
		if (name_is(name, nl, ":method")) {
			if (vl == 0 || vl >= H2_METHOD_MAX) {
				st->refuse = 431;
				return 0;
			}
			memcpy(st->method, value, vl);
			st->method[vl] = 0;
		} else if (name_is(name, nl, ":path")) {
			st->path.len = 0;
			rc = buf_append(&st->path, value, vl);
		} else if (name_is(name, nl, ":authority")) {
			st->authority.len = 0;
			rc = buf_append(&st->authority, value, vl);
		}
		/* :scheme was checked by nghttp2; :protocol is refused by it */
	} else if (name_is(name, nl, "host")) {
		st->host.len = 0;
		rc = buf_append(&st->host, value, vl);
	} else if (name_is(name, nl, "content-length") || name_is(name, nl, "te")) {
		/* framing is ours to write; nghttp2 checked it against the DATA */
	} else if (name_is(name, nl, "expect")) {
		st->expect_continue = vl == 12 && !strncasecmp((const char *)value, "100-continue", 12);
	} else if (name_is(name, nl, "cookie")) {
		/* RFC 9113 8.2.3: crumbs are joined with "; " for HTTP/1.1 */
		if (st->cookie.len)
			rc = buf_append(&st->cookie, "; ", 2);
		if (!rc)
			rc = buf_append(&st->cookie, value, vl);
	} else if (++st->nhdrs > h->lim->max_headers) {
		st->refuse = 431;
	} else {
		/* gRPC (application/grpc, application/grpc+proto, ...) is
		 * served by io->grpc, trailers and all */
		if (name_is(name, nl, "content-type") && vl >= 16 &&
		    !strncasecmp((const char *)value, "application/grpc", 16))
			st->grpc = true;
		rc = append_field(&st->hdrs, name, nl, value, vl);
	}
	return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* A refused stream is answered as soon as it is refused: the client's
 * remaining DATA is discarded, then RST_STREAM(NO_ERROR) after the answer
 * (RFC 9113 8.1) tells it to stop sending. */
static void stream_refuse(struct h2_conn *h, struct h2_stream *st, int status)
{
	if (!st->refuse)
		st->refuse = status;
	stream_drop_body(h, st);
	stream_ready(h, st);
}

static void stream_fail(struct h2_conn *h, struct h2_stream *st);

/* DATA of a gRPC request being read as it arrives: to the worker. What
 * it has not taken yet is bounded by the body limit (a client sending
 * faster than the upstream takes gets its stream reset). */
static int stream_data(struct h2_conn *h, struct h2_stream *st, const uint8_t *data, size_t len)
{
	int rc = 0;

	if (st->failed || st->closed || st->done)
		return 0;
	pthread_mutex_lock(&h->mu);
	size_t held = st->rq.len - st->rq_off;
	if (held + len > h->lim->max_body_bytes)
		rc = -E2BIG;
	else if (h->io->charge && h->io->charge(h->io->arg, (int64_t)len))
		rc = -ENOBUFS;
	else if (buf_append(&st->rq, data, len)) {
		if (h->io->charge)
			h->io->charge(h->io->arg, -(int64_t)len);
		rc = -ENOMEM;
	} else {
		h->buffered += len;
	}
	pthread_mutex_unlock(&h->mu);
	if (rc)
		stream_fail(h, st);
	else
		body_wake(st);
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
			 void *user)
{
	struct h2_conn *h = user;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	if (st && st->streaming)
		return stream_data(h, st, data, len);
	if (!st || st->refuse || st->served)
		return 0;
	if (st->body.len + len > h->lim->max_body_bytes) {
		stream_refuse(h, st, 413);
		return 0;
	}
	/* All streams of a connection together hold one body's worth plus
	 * a margin: a client queueing large bodies on many streams gets
	 * REFUSED_STREAM (retry later), not the agent's memory. */
	if (h->buffered + len > h->lim->max_body_bytes + H2_OUT_HIGH * 16) {
		stream_drop_body(h, st);
		st->served = true;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	/* the agent-wide budget (limits.max_buffered_bytes): past it, the
	 * 503 an HTTP/1.1 client gets */
	if (h->io->charge && h->io->charge(h->io->arg, (int64_t)len)) {
		stream_refuse(h, st, 503);
		return 0;
	}
	if (buf_append(&st->body, data, len)) {
		if (h->io->charge)
			h->io->charge(h->io->arg, -(int64_t)len);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	h->buffered += len;
	return 0;
}

/* Counts RST_STREAM per one-second window (CVE-2023-44487, "rapid
 * reset": open, cancel, repeat costs the client nothing and the server a
 * stream setup each time). */
static bool reset_flood(struct h2_conn *h)
{
	uint64_t now = h->io->now_ms();
	if (now - h->reset_since >= 1000) {
		h->reset_since = now;
		h->resets = 0;
	}
	return ++h->resets > h->lim->max_resets_per_sec;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct h2_conn *h = user;
	struct h2_stream *st;

	if (f->hd.type == NGHTTP2_RST_STREAM) {
		if (reset_flood(h)) {
			broke(h, true, "rapid reset: more RST_STREAM frames in one second than http2.max_resets_per_second");
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
		return 0;
	}
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (st && st->streaming) {
		if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			pthread_mutex_lock(&h->mu);
			st->rq_end = true;
			pthread_mutex_unlock(&h->mu);
			body_wake(st);
		}
		return 0;
	}
	if (!st || st->served)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		if (!strcmp(st->method, "CONNECT") && !st->refuse)
			/* a tunnel through the agent would escape inspection:
			 * a 405 on its stream, audited; its DATA is discarded */
			st->refuse = 405;
		if (st->refuse) {
			stream_refuse(h, st, st->refuse);
			return 0;
		}
		if (st->expect_continue && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			static const nghttp2_nv cont[] = { { (uint8_t *)":status", (uint8_t *)"100", 7, 3,
							     NGHTTP2_NV_FLAG_NONE } };
			nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, st->id, NULL, cont, 1, NULL);
		}
	}
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		stream_ready(h, st);
	} else if (f->hd.type == NGHTTP2_HEADERS && st->grpc && h->io->grpc && h->io->grpc_streaming &&
		   !st->refuse) {
		/* a gRPC request is read as it arrives: client-streaming and
		 * bidirectional calls send messages for as long as they last */
		st->streaming = true;
		stream_ready(h, st);
	}
	return 0;
}

/* nghttp2 resets a stream it finds malformed itself with PROTOCOL_ERROR
 * (an extended CONNECT's :protocol, which the agent never enables; a
 * forbidden header; DATA that does not add up to its content-length); the
 * agent never sends that code. Such a stream not yet handed to a worker
 * still goes to one as refused, so the attempt is audited (a CONNECT as
 * tunnel_refused, anything else as bad_request); its answer finds the
 * stream closed and is dropped. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct h2_conn *h = user;
	struct h2_stream *st;

	if (f->hd.type != NGHTTP2_RST_STREAM || f->rst_stream.error_code != NGHTTP2_PROTOCOL_ERROR ||
	    !(st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) || st->served || st->queued)
		return 0;
	stream_refuse(h, st, st->refuse ? st->refuse : !strcmp(st->method, "CONNECT") ? 405 : 400);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
	struct h2_conn *h = user;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)error_code;
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	if (st->queued && st->refuse) {
		/* refused, not yet audited: the worker still writes its event */
		st->closed = true;
	} else if (st->worker) {
		/* reset by the client (or over): the worker stops at its next
		 * answer; the stream is freed once it is joined */
		st->closed = true;
		stream_cancel(h, st);
	} else {
		stream_free(h, st);
	}
	return 0;
}

/* ---- the response side ---- */

/* The stored trailers as HEADERS ending the stream (nghttp2 allows this
 * from the data source callback, RFC 9113 8.1). */
static int submit_trailers(nghttp2_session *s, struct h2_stream *st)
{
	nghttp2_nv nv[H2_MAX_TRAILERS];
	const char *p = st->trl.data;
	size_t n = 0;

	for (; n < st->trl_n && n < H2_MAX_TRAILERS; n++) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);
		nv[n] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE };
		p += nl + vl + 2;
	}
	return nghttp2_submit_trailer(s, st->id, nv, n);
}

static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct h2_stream *st = src->ptr;
	size_t avail = st->out.len - st->out_off;
	size_t n = avail < length ? avail : length;

	(void)s; (void)id; (void)user;
	if (n)
		memcpy(buf, st->out.data + st->out_off, n);
	st->out_off += n;
	if (st->out_off == st->out.len)
		st->out.len = st->out_off = 0;
	if (st->out.len == 0 && st->ended) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		st->eof_sent = true;
		if (st->trl_n && submit_trailers(s, st) == 0)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		return (ssize_t)n;
	}
	if (n == 0) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* Everything nghttp2 has to send, written in batches (one TLS record
 * for many small frames). */
static int flush(struct h2_conn *h)
{
	const uint8_t *p;
	ssize_t n;

	if (h->io_failed)
		return -EIO;
	h->wbuf.len = 0;
	for (;;) {
		n = nghttp2_session_mem_send(h->s, &p);
		if (n < 0) {
			broke(h, false, "HTTP/2 session failed while sending");
			return -EPROTO;
		}
		if (n > 0 && buf_append(&h->wbuf, p, (size_t)n))
			return -ENOMEM;
		if ((n == 0 && h->wbuf.len) || h->wbuf.len >= H2_WRITE_BATCH) {
			if (h->io->write(h->io->arg, h->wbuf.data, h->wbuf.len)) {
				h->io_failed = true;
				return -EIO;
			}
			h->wbuf.len = 0;
		}
		if (n == 0) {
			/* a big answer's batch is not kept for an idle connection */
			if (h->wbuf.cap > H2_WRITE_BATCH / 4)
				buf_free(&h->wbuf);
			return 0;
		}
	}
}

static const char *mem_recv_why(int rv)
{
	switch (rv) {
	case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
		return "CONTINUATION flood: more CONTINUATION frames in one header block than http2.max_continuations";
	case NGHTTP2_ERR_FLOODED:
		return "control frame flood: the client does not read the agent's SETTINGS/PING acknowledgements";
	case NGHTTP2_ERR_HEADER_COMP:
		return "HPACK decoding failed (or the client's table passed http2.header_table_size)";
	case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
		return "no HTTP/2 connection preface after ALPN h2";
	default:
		return "HTTP/2 protocol error";
	}
}

/* Reads once from the client (or until a worker wakes us: -EAGAIN) and
 * runs what arrived through the session. 0, or < 0: -ECONNRESET at EOF
 * (h->in_eof: the answers may still go out), -ETIMEDOUT, or the
 * connection is over (error, abuse). */
static int pump_in(struct h2_conn *h, uint32_t timeout_ms)
{
	uint8_t buf[H2_READ_CHUNK];
	ssize_t n = h->io->read(h->io->arg, buf, sizeof(buf), timeout_ms, h->wake_fd);

	if (n == -EAGAIN)
		return -EAGAIN;
	if (n == 0) {
		h->in_eof = true;
		return -ECONNRESET;
	}
	if (n < 0) {
		h->io_failed = n != -ETIMEDOUT;
		return (int)n;
	}
	ssize_t rv = nghttp2_session_mem_recv(h->s, buf, (size_t)n);
	if (rv < 0) {
		bool flood = rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS || rv == NGHTTP2_ERR_FLOODED;
		broke(h, flood, mem_recv_why((int)rv));
		return -EPROTO;
	}
	return flush(h);
}

/* The lowercase field name nghttp2 wants, in place in our copy of the head. */
static void lower(const char *p, size_t n)
{
	char *w = (char *)p;
	for (size_t i = 0; i < n; i++)
		if (w[i] >= 'A' && w[i] <= 'Z')
			w[i] = (char)(w[i] - 'A' + 'a');
}

static bool hop_by_hop(const struct http_header *hd)
{
	static const char *const drop[] = { "connection", "keep-alive", "proxy-connection",
					    "transfer-encoding", "upgrade", "te", "trailer" };
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (hd->name_len == strlen(drop[i]) && !strncasecmp(hd->name, drop[i], hd->name_len))
			return true;
	return false;
}

static int submit_head(struct h2_conn *h, struct h2_stream *st, const struct http_response *r)
{
	nghttp2_nv nv[HTTP_MAX_HEADERS + 1];
	char status[4];
	size_t n = 0;

	snprintf(status, sizeof(status), "%03d", r->status);
	nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE };
	for (unsigned i = 0; i < r->nheaders; i++) {
		const struct http_header *hd = &r->headers[i];
		if (hop_by_hop(hd))
			continue;
		lower(hd->name, hd->name_len);
		nv[n++] = (nghttp2_nv){ (uint8_t *)hd->name, (uint8_t *)hd->value, hd->name_len, hd->value_len,
					NGHTTP2_NV_FLAG_NONE };
	}
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = data_read };
	if (nghttp2_submit_response(h->s, st->id, nv, n, &prd))
		return -EIO;
	st->submitted = true;
	return 0;
}

static int out_append(void *arg, const char *data, size_t len)
{
	struct h2_stream *st = arg;
	return buf_append(&st->out, data, len) ? -ENOMEM : 0;
}

/* Body bytes in the upstream's framing: payload to st->out. */
static int body_in(struct h2_stream *st, const char *p, size_t n)
{
	if (!n)
		return 0;
	switch (st->framing) {
	case HTTP_BODY_NONE:
		return 0;
	case HTTP_BODY_LENGTH:
		if (n > st->left)
			n = (size_t)st->left;
		st->left -= n;
		return out_append(st, p, n);
	case HTTP_BODY_CHUNKED:
		if (http_chunked_done(&st->chunked))
			return 0;
		return http_chunked_feed(&st->chunked, p, n, out_append, st) < 0 ? -EIO : 0;
	default:
		return out_append(st, p, n);
	}
}

/* Head bytes: parse when complete; 1xx heads are dropped (the client sent
 * its whole body already); the final head becomes HEADERS. */
static int head_in(struct h2_conn *h, struct h2_stream *st, const char *p, size_t n)
{
	struct http_limits rl = { .max_head_bytes = (size_t)h->lim->max_head_bytes * 2 + 4096,
				  .max_headers = HTTP_MAX_HEADERS };
	struct http_response r;

	if (buf_append(&st->rhead, p, n))
		return -ENOMEM;
	for (;;) {
		int hl = http_parse_response(st->rhead.data, st->rhead.len, &rl, st->method, strlen(st->method), &r);
		if (hl == 0)
			return st->rhead.len > rl.max_head_bytes ? -EIO : 0;
		if (hl < 0)
			return -EIO;
		if (r.status < 200) {
			memmove(st->rhead.data, st->rhead.data + hl, st->rhead.len - (size_t)hl);
			st->rhead.len -= (size_t)hl;
			if (!st->rhead.len)
				return 0;
			continue;
		}
		st->head_done = true;
		st->framing = r.body;
		st->left = r.content_length;
		if (r.body == HTTP_BODY_CHUNKED)
			http_chunked_init(&st->chunked, UINT64_MAX, 65536);
		if (submit_head(h, st, &r))
			return -EIO;
		int rc = body_in(st, st->rhead.data + hl, st->rhead.len - (size_t)hl);
		buf_free(&st->rhead);
		return rc;
	}
}

static void resume(struct h2_conn *h, struct h2_stream *st)
{
	if (st->deferred && (st->out.len > st->out_off || st->ended)) {
		st->deferred = false;
		nghttp2_session_resume_data(h->s, st->id);
	}
}

static size_t pending(const struct h2_stream *st)
{
	return st->out.len - st->out_off;
}

/* ---- the worker's side: answers queued for the connection thread ---- */

static void wake(struct h2_conn *h)
{
	efd_signal(h->wake_fd);
}

/* Under h->mu: whether the caller must wake the connection thread (once
 * until it looks again: a head, a body and the end queued together cost
 * one wake-up, not three). */
static bool wake_needed(struct h2_conn *h)
{
	bool w = !h->woken;
	h->woken = true;
	return w;
}

/* One record to the stream's queue; blocks while the queue holds more
 * than H2_OUT_HIGH (the connection thread takes it only once the stream's
 * own backlog fits the window). */
static int enqueue(struct h2_stream *st, uint8_t type, const void *a, size_t al, const void *b, size_t bl)
{
	struct h2_conn *h = st->h;
	uint8_t hdr[R_HDR];
	int rc = 0;
	bool w = false;

	if (al + bl > UINT32_MAX)
		return -EIO;
	hdr[0] = type;
	hdr[1] = (uint8_t)((al + bl) >> 24);
	hdr[2] = (uint8_t)((al + bl) >> 16);
	hdr[3] = (uint8_t)((al + bl) >> 8);
	hdr[4] = (uint8_t)(al + bl);
	pthread_mutex_lock(&h->mu);
	while (!st->cancel && st->q.len > H2_OUT_HIGH)
		pthread_cond_wait(&h->cv, &h->mu);
	if (st->cancel)
		rc = -EIO;
	else if (buf_reserve(&st->q, R_HDR + al + bl))
		rc = -EIO;
	else {
		buf_append(&st->q, hdr, R_HDR);
		if (al)
			buf_append(&st->q, a, al);
		if (bl)
			buf_append(&st->q, b, bl);
		w = wake_needed(h);
	}
	pthread_mutex_unlock(&h->mu);
	if (w)
		wake(h);
	return rc;
}

int h2_respond(struct h2_stream *st, const void *data, size_t len)
{
	return len ? enqueue(st, R_H1, data, len, NULL, 0) : 0;
}

/* Fields as name\0value\0 ... (the form st->trl keeps). */
static int fields_pack(struct buf *b, const struct h2_field *f, size_t n)
{
	if (n > H2_MAX_TRAILERS)
		return -EIO;
	for (size_t i = 0; i < n; i++)
		if (memchr(f[i].name, 0, f[i].name_len) || memchr(f[i].value, 0, f[i].value_len) ||
		    buf_append(b, f[i].name, f[i].name_len) || buf_append(b, "", 1) ||
		    buf_append(b, f[i].value, f[i].value_len) || buf_append(b, "", 1))
			return -EIO;
	return 0;
}

int h2_send_head(struct h2_stream *st, const struct h2_field *f, size_t n, bool end_stream)
{
	struct buf b = { 0 };
	uint8_t end = end_stream;
	int rc;

	if (!st->grpc || st->w_head)
		return -EIO;
	rc = fields_pack(&b, f, n);
	if (!rc)
		rc = enqueue(st, R_HEAD, &end, 1, b.data, b.len);
	buf_free(&b);
	if (!rc) {
		st->w_head = true;
		st->w_ended = end_stream;
	}
	return rc;
}

int h2_send_data(struct h2_stream *st, const void *data, size_t len)
{
	if (!st->grpc || !st->w_head || st->w_ended)
		return -EIO;
	return len ? enqueue(st, R_DATA, data, len, NULL, 0) : 0;
}

int h2_send_trailers(struct h2_stream *st, const struct h2_field *f, size_t n)
{
	struct buf b = { 0 };
	int rc;

	if (!st->grpc || !st->w_head || st->w_ended || n == 0)
		return -EIO;
	rc = fields_pack(&b, f, n);
	if (!rc)
		rc = enqueue(st, R_TRL, b.data, b.len, NULL, 0);
	buf_free(&b);
	if (!rc)
		st->w_ended = true;
	return rc;
}

/* ---- the worker's side: a gRPC request read as it arrives ---- */

int h2_body_fd(struct h2_stream *st)
{
	return st->body_fd;
}

ssize_t h2_body_read(struct h2_stream *st, void *buf, size_t len)
{
	struct h2_conn *h = st->h;
	ssize_t n;

	if (!st->streaming)
		return -EIO;
	/* drained before looking: a wake after this is not lost */
	efd_drain(st->body_fd);
	pthread_mutex_lock(&h->mu);
	size_t avail = st->rq.len - st->rq_off;
	if (st->cancel) {
		n = -EIO;
	} else if (avail) {
		n = (ssize_t)(avail < len ? avail : len);
		memcpy(buf, st->rq.data + st->rq_off, (size_t)n);
		st->rq_off += (size_t)n;
		st->rq_taken += (size_t)n;
		if (st->rq_off == st->rq.len) {
			st->rq.len = st->rq_off = 0;
		} else if (st->rq_off > st->rq.len / 2) {
			memmove(st->rq.data, st->rq.data + st->rq_off, st->rq.len - st->rq_off);
			st->rq.len -= st->rq_off;
			st->rq_off = 0;
		}
	} else {
		n = st->rq_end ? 0 : -EAGAIN;
	}
	pthread_mutex_unlock(&h->mu);
	/* the bytes taken go back to the budget at the connection thread's
	 * next look (no wake-up needed for that) */
	return n;
}

/* ---- the connection thread's side: records applied to the session ---- */

/* Packed fields (fields_pack) as nghttp2 name/value pairs; the count. */
static size_t fields_nv(const char *p, size_t len, nghttp2_nv *nv)
{
	const char *end = p + len;
	size_t n = 0;

	while (p < end && n < H2_MAX_TRAILERS) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);
		nv[n++] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)p + nl + 1, nl, vl, NGHTTP2_NV_FLAG_NONE };
		p += nl + vl + 2;
	}
	return n;
}

static int apply_head(struct h2_conn *h, struct h2_stream *st, const char *p, size_t n)
{
	nghttp2_nv nv[H2_MAX_TRAILERS];
	bool end = n && p[0];
	size_t k = fields_nv(p + 1, n ? n - 1 : 0, nv);

	if (!n || st->head_done)
		return -EIO;
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = data_read };
	if (nghttp2_submit_response(h->s, st->id, nv, k, end ? NULL : &prd))
		return -EIO;
	st->head_done = st->submitted = true;
	st->framing = HTTP_BODY_EOF;      /* complete when io->grpc says so */
	st->ended = end;
	return 0;
}

static int apply(struct h2_conn *h, struct h2_stream *st, uint8_t type, const char *p, size_t n)
{
	switch (type) {
	case R_H1:
		return st->head_done ? body_in(st, p, n) : head_in(h, st, p, n);
	case R_HEAD:
		return apply_head(h, st, p, n);
	case R_DATA:
		return st->head_done && !st->ended ? out_append(st, p, n) : -EIO;
	case R_TRL:
		if (!st->head_done || st->ended || buf_append(&st->trl, p, n))
			return -EIO;
		st->trl_n = fields_nv(p, n, (nghttp2_nv[H2_MAX_TRAILERS]){ 0 });
		st->ended = true;
		return 0;
	default:
		return -EIO;
	}
}

/* The stream's answer broke (or its client is gone): reset, the worker
 * stops at its next answer. */
static void stream_fail(struct h2_conn *h, struct h2_stream *st)
{
	st->failed = true;
	if (!st->closed)
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
	stream_cancel(h, st);
}

static void apply_all(struct h2_conn *h, struct h2_stream *st)
{
	size_t off = 0;

	while (!st->failed && !st->closed && off + R_HDR <= st->qc.len) {
		const uint8_t *r = (const uint8_t *)st->qc.data + off;
		size_t n = (size_t)r[1] << 24 | (size_t)r[2] << 16 | (size_t)r[3] << 8 | r[4];
		if (apply(h, st, r[0], (const char *)r + R_HDR, n))
			stream_fail(h, st);
		off += R_HDR + n;
	}
	st->qc.len = 0;
	resume(h, st);
}
static int build_request(struct h2_conn *h, struct h2_stream *st, struct buf *b)
{
	const struct buf *auth = st->authority.len ? &st->authority : &st->host;
	size_t pl = st->path.len;
	bool body = st->body.len || !strcmp(st->method, "POST") || !strcmp(st->method, "PUT") ||
		    !strcmp(st->method, "PATCH");
	char cl[48];
	int rc = 0;

	b->len = 0;
	if (st->refuse && pl > H2_REFUSED_PATH_MAX)
		pl = H2_REFUSED_PATH_MAX;
	rc |= buf_append(b, st->method[0] ? st->method : "GET", st->method[0] ? strlen(st->method) : 3);
	rc |= buf_append(b, " ", 1);
	rc |= buf_append(b, pl ? st->path.data : "/", pl ? pl : 1);
	rc |= buf_append(b, " HTTP/1.1\r\nHost: ", 17);
	rc |= buf_append(b, auth->data ? auth->data : "", auth->len);
	rc |= buf_append(b, "\r\n", 2);
	if (!st->refuse) {
		rc |= buf_append(b, st->hdrs.data ? st->hdrs.data : "", st->hdrs.len);
		if (st->cookie.len)
			rc |= append_field(b, (const uint8_t *)"cookie", 6, (const uint8_t *)st->cookie.data,
					   st->cookie.len);
		if (body) {
			int n = snprintf(cl, sizeof(cl), "content-length: %zu\r\n", st->body.len);
			rc |= buf_append(b, cl, (size_t)n);
		}
	}
	rc |= buf_append(b, "\r\n", 2);
	if (rc)
		return -ENOMEM;
	if (b->len > h->lim->max_head_bytes) {
		st->refuse = 431;
		return build_request(h, st, b);
	}
	if (!st->refuse && st->body.len && buf_append(b, st->body.data, st->body.len))
		return -ENOMEM;
	return 0;
}

/* Whether the upstream's framing says the answer is whole. */
static bool answer_complete(const struct h2_stream *st, bool caller_ok)
{
	switch (st->framing) {
	case HTTP_BODY_NONE:
		return true;
	case HTTP_BODY_LENGTH:
		return st->left == 0;
	case HTTP_BODY_CHUNKED:
		return http_chunked_done(&st->chunked);
	default:
		return caller_ok;
	}
}

/* The worker is joined: the answer leaves whole (complete), or the
 * stream is reset so the client sees an error, never a clean end. */
static void stream_finish(struct h2_conn *h, struct h2_stream *st, int rc)
{
	bool complete = st->grpc && h->io->grpc && !st->refuse ?
				rc >= 0 && st->head_done && st->ended :
				st->head_done && answer_complete(st, rc >= 0);

	stream_drop_body(h, st);
	buf_free(&st->req);
	if (h->broken || h->io_failed || st->closed || st->failed)
		return;
	if (complete && st->submitted) {
		st->ended = true;
		resume(h, st);
		/* Answered before the request was whole (refused): the rest of
		 * it is not wanted. After the answer: RST_STREAM would overtake
		 * the queued DATA. */
		st->rst_after = st->refuse != 0;
		return;
	}
	/* Cut short (upstream gone mid-answer, an answer that could not be
	 * redacted): reset after the next flush, so the client sees the head
	 * and the bytes that came, then the error (never a clean end) */
	st->rst_cut = true;
}

static int worker_serve(struct h2_conn *h, struct h2_stream *st)
{
	if (st->grpc && h->io->grpc && !st->refuse) {
		/* a gRPC stream goes to io->grpc whole: path, authority, fields, DATA */
		const struct buf *auth = st->authority.len ? &st->authority : &st->host;
		struct h2_grpc_call c = {
			.path = st->path.data ? st->path.data : "/",
			.authority = auth->data ? auth->data : "",
			.hdrs = st->hdrs.data ? st->hdrs.data : "",
			.hdrs_len = st->hdrs.len,
			.body = (const uint8_t *)(st->body.data ? st->body.data : ""),
			.body_len = st->body.len,
			.streamed = st->streaming,
		};
		return h->io->grpc(h->io->arg, st, &c);
	}
	return h->io->exchange(h->io->arg, st, st->req.data, st->req.len, st->refuse);
}

/* Idle, under h->mu: the next stream, or NULL to end (quit, or idle past
 * H2_WORKER_IDLE_MS: then it is off the idle list). */
static struct h2_stream *worker_next(struct h2_worker *w)
{
	struct h2_conn *h = w->h;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += H2_WORKER_IDLE_MS / 1000;
	while (!w->st && !h->quit && !h->trim)
		if (pthread_cond_timedwait(&w->cv, &h->mu, &ts) == ETIMEDOUT)
			break;
	if (w->st)
		return w->st;
	for (struct h2_worker **pp = &h->idle; *pp; pp = &(*pp)->next_idle)
		if (*pp == w) {
			*pp = w->next_idle;
			break;
		}
	return NULL;
}

static void *worker_main(void *arg)
{
	struct h2_worker *w = arg;
	struct h2_conn *h = w->h;
	struct h2_stream *st;

	pthread_mutex_lock(&h->mu);
	while ((st = worker_next(w))) {
		pthread_mutex_unlock(&h->mu);
		int rc = worker_serve(h, st);
		pthread_mutex_lock(&h->mu);
		st->w_done = true;
		st->w_rc = rc;
		w->st = NULL;
		w->next_idle = h->idle;
		h->idle = w;
		if (wake_needed(h))
			wake(h);
	}
	pthread_mutex_unlock(&h->mu);
	if (h->io->worker_end)
		h->io->worker_end(h->io->arg);
	pthread_cond_destroy(&w->cv);
	free(w);
	/* the last touch of h: h2_serve returns once nthreads is 0 */
	pthread_mutex_lock(&h->mu);
	h->nthreads--;
	pthread_cond_signal(&h->gone);
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* A new worker thread, serving st first. */
static int worker_new(struct h2_conn *h, struct h2_stream *st)
{
	struct h2_worker *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!w)
		return -ENOMEM;
	w->h = h;
	w->st = st;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, H2_WORKER_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&h->mu);
	h->nthreads++;
	rc = pthread_create(&t, &attr, worker_main, w);
	if (rc)
		h->nthreads--;
	pthread_mutex_unlock(&h->mu);
	pthread_attr_destroy(&attr);
	if (rc) {
		pthread_cond_destroy(&w->cv);
		free(w);
		return -rc;
	}
	return 0;
}

/* Hands a stream whose request is complete to a worker: an idle one of
 * the connection, else a new thread. */
static void stream_start(struct h2_conn *h, struct h2_stream *st)
{
	struct h2_worker *w;

	if (!(st->grpc && h->io->grpc && !st->refuse)) {
		/* the worker gets the request as HTTP/1.1; the body's copy goes */
		if (build_request(h, st, &st->req)) {
			broke(h, false, "out of memory");
			return;
		}
		stream_drop_body(h, st);
	}
	if ((h->wake_fd < 0 && (h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) ||
	    (st->streaming && (st->body_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)) {
		st->streaming = false;
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
		return;
	}
	st->worker = true;
	h->trimmed = false;
	pthread_mutex_lock(&h->mu);
	h->trim = false;
	if ((w = h->idle)) {
		h->idle = w->next_idle;
		w->st = st;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&h->mu);
	if (!w && worker_new(h, st)) {
		/* no thread now: the client may retry the stream */
		st->worker = false;
		nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
		return;
	}
	h->live++;
}

static void stream_done(struct h2_conn *h, struct h2_stream *st, int rc)
{
	st->worker = false;
	st->done = true;
	h->live--;
	stream_finish(h, st, rc);
}

/* Takes what the workers queued into the session, joins the workers that
 * ended, frees their streams when closed. Whether anything moved. */
static bool drain(struct h2_conn *h)
{
	bool moved = false;

	if (h->wake_fd < 0)
		return false;
	efd_drain(h->wake_fd);   /* not signalled: the streams are looked at anyway */
	/* cleared after the fd is read and before the streams are looked
	 * at: what is queued from now on writes the fd again (cleared
	 * first, a write between the two would be read here and a record
	 * queued after the look would wake nobody) */
	pthread_mutex_lock(&h->mu);
	h->woken = false;
	pthread_mutex_unlock(&h->mu);
	for (struct h2_stream *st = h->all, *next; st; st = next) {
		bool done, took = false;
		int rc;
		next = st->next_all;
		if (!st->worker)
			continue;
		pthread_mutex_lock(&h->mu);
		if (st->q.len && (pending(st) <= H2_OUT_HIGH || st->failed || st->closed)) {
			struct buf t = st->qc;
			st->qc = st->q;
			st->q = t;
			took = true;
			pthread_cond_broadcast(&h->cv);
		}
		done = st->w_done && !st->q.len;
		rc = st->w_rc;
		size_t taken = st->rq_taken;
		st->rq_taken = 0;
		pthread_mutex_unlock(&h->mu);
		uncharge(h, taken);
		if (took) {
			apply_all(h, st);
			moved = true;
		}
		if (done) {
			stream_done(h, st, rc);
			moved = true;
			if (st->closed)
				stream_free(h, st);
		}
	}
	return moved;
}

/* After a flush: answers cut short are reset; refused streams whose
 * answer is out get RST_STREAM(NO_ERROR). */
static void reset_answered(struct h2_conn *h)
{
	for (struct h2_stream *st = h->all; st; st = st->next_all)
		if (st->rst_cut && !st->closed) {
			st->rst_cut = false;
			nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		} else if (st->rst_after && st->eof_sent && !st->closed) {
			st->rst_after = false;
			nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
		}
}

/* Whether a stream's answer waits for the client's window. */
static bool window_bound(const struct h2_conn *h)
{
	for (const struct h2_stream *st = h->all; st; st = st->next_all)
		if (st->submitted && !st->closed && pending(st))
			return true;
	return false;
}

/* The connection is over: every stream's worker is cancelled, then
 * every worker thread waited for (what they queued is dropped). */
static void stop_workers(struct h2_conn *h)
{
	for (struct h2_stream *st = h->all; st; st = st->next_all)
		if (st->worker)
			stream_cancel(h, st);
	pthread_mutex_lock(&h->mu);
	h->quit = true;
	for (struct h2_worker *w = h->idle; w; w = w->next_idle)
		pthread_cond_signal(&w->cv);
	while (h->nthreads)
		pthread_cond_wait(&h->gone, &h->mu);
	pthread_mutex_unlock(&h->mu);
	for (struct h2_stream *st = h->all; st; st = st->next_all)
		if (st->worker) {
			st->worker = false;
			h->live--;
		}
}

/* ---- the connection ---- */

static int session_new(struct h2_conn *h)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	int rc;

	if (nghttp2_session_callbacks_new(&cb))
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	if (nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cb);
		return -ENOMEM;
	}
	/* nghttp2's own guards, set from the same limits (ours trip first
	 * and say which limit was broken). */
	nghttp2_option_set_max_continuations(opt, h->lim->max_continuations + 1);
	nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)h->lim->max_resets_per_sec * 4 + 16,
						   h->lim->max_resets_per_sec);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	rc = nghttp2_session_server_new2(&h->s, cb, h, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (rc)
		return -ENOMEM;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->lim->max_concurrent_streams },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h->lim->max_header_list_bytes },
		{ NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, h->lim->header_table_size },
	};
	return nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ? -ENOMEM : 0;
}

/* After the client's EOF: wait for a worker's answer (bounded), then the
 * caller looks at the client once more (a half-closed client reads). */
static void wait_workers(struct h2_conn *h)
{
	struct pollfd p = { .fd = h->wake_fd, .events = POLLIN };
	poll(&p, 1, H2_EOF_WAIT_MS);
}

/* The connection went quiet (no stream for H2_TRIM_MS): its idle worker
 * threads end and the caller gives back what it kept for the next
 * streams (io->idle), so an idle connection holds one thread and its
 * session, not a pool. */
static void trim(struct h2_conn *h)
{
	h->trimmed = true;
	pthread_mutex_lock(&h->mu);
	h->trim = true;
	for (struct h2_worker *w = h->idle; w; w = w->next_idle)
		pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&h->mu);
	if (h->io->idle)
		h->io->idle(h->io->arg);
}

/* One turn of the connection thread: start the complete requests, take
 * the workers' answers, send, read the client. 1: go on, 0: over. */
static int turn(struct h2_conn *h)
{
	struct h2_stream *st;
	int rc;

	while ((st = stream_pop(h)) && !h->broken)
		stream_start(h, st);
	bool moved = drain(h);
	if (flush(h))
		return 0;
	reset_answered(h);
	if (flush(h) || h->broken || h->io_failed)
		return 0;
	if (!h->live && !h->ready && !nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
		return 0;
	/* after the client's EOF: on while workers answer, or while its
	 * reads still bring WINDOW_UPDATEs for what waits */
	bool eof_before = h->in_eof;
	if (eof_before && !h->live && !window_bound(h))
		return 0;
	if (eof_before && h->live && !moved)
		wait_workers(h);
	bool may_trim = !h->trimmed && !eof_before && !h->live && !h->ready && !window_bound(h);
	rc = pump_in(h, may_trim ? H2_TRIM_MS : h->lim->idle_timeout_ms);
	if (rc == -ETIMEDOUT && may_trim) {
		trim(h);
		return 1;
	}
	if (rc == -ECONNRESET && eof_before && !h->live)
		return 0;
	if (rc == -ETIMEDOUT && (!h->live || window_bound(h))) {
		/* idle, or an answer the client does not take: a graceful end
		 * the client can retry after */
		nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
		flush(h);
		return 0;
	}
	if (rc == -EPROTO || (rc < 0 && h->io_failed))
		return 0;
	return 1;
}

int h2_serve(const struct h2_limits *lim, const struct h2_io *io, bool *abuse, char *why, size_t whylen)
{
	struct h2_conn h = { .lim = lim, .io = io, .wake_fd = -1, .wbuf.secret = true };
	int rc;

	if (abuse)
		*abuse = false;
	if (whylen)
		why[0] = 0;
	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	pthread_cond_init(&h.gone, NULL);
	h.reset_since = io->now_ms();
	if ((rc = session_new(&h)))
		goto out;
	if (flush(&h))
		goto out;
	while (turn(&h))
		;
	rc = 0;
	if (h.broken) {
		/* GOAWAY with the reason class; the connection then closes. */
		nghttp2_session_terminate_session(h.s, h.abuse ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
		flush(&h);
		if (abuse)
			*abuse = h.abuse;
		snprintf(why, whylen, "%s", h.why);
		rc = 1;
	}
out:
	stop_workers(&h);
	while (h.all)
		stream_free(&h, h.all);
	nghttp2_session_del(h.s);
	buf_free(&h.wbuf);
	if (h.wake_fd >= 0)
		close(h.wake_fd);
	pthread_cond_destroy(&h.gone);
	pthread_cond_destroy(&h.cv);
	pthread_mutex_destroy(&h.mu);
	return rc;
}
