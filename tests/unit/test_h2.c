/* Unit tests for agent/proxy/h2.c, driven by a real nghttp2 client session in
 * memory: the client's bytes reach h2_serve split at every point (and one
 * byte at a time), the server's bytes reach the client one byte at a time,
 * and the HTTP/1.1 side (what the exchange code sees and writes) is
 * checked exactly. Cases: a request with a body, an SSE answer streamed
 * before the exchange ends, an error answer, an answer cut short, a
 * refused oversized header list, flow control past the client's window,
 * gRPC streams handed whole to io->grpc and answered with trailers,
 * and a rapid-reset flood. */
#include "check.h"
#include "proxy/h2.h"
#include "content/json.h"

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <unistd.h>

struct pipe {
	nghttp2_session *cli;
	struct buf c2s;           /* client -> server, not yet read */
	size_t c2s_off;
	size_t first, step;            /* first read size, later read sizes */
	int reads;
	uint64_t clock;
	/* the exchange's side */
	struct buf req;           /* last request as HTTP/1.1 */
	int refuse, nexchanges;
	const char *resp;              /* HTTP/1.1 answer written by the exchange */
	size_t resp_len, resp_cut;     /* written in two h2_respond calls, cut here */
	size_t resp_trunc;             /* 0, or write only this much of resp */
	int ret;                       /* exchange's return */
	size_t data_seen_mid;          /* client body bytes seen between the two writes */
	size_t want_mid;               /* the worker waits (bounded) until the client saw this many */
	_Atomic size_t seen;           /* body bytes the client has (the worker reads it) */
	/* several streams */
	_Atomic unsigned ends;         /* bit id/2: the client saw END_STREAM on stream id */
	_Atomic unsigned resets;       /* bit id/2: RST_STREAM from the server */
	bool rst_slow_on_data;         /* the client resets stream 1 at its first DATA */
	bool quick_first;              /* stream 3 had ended when stream 1's worker looked */
	int slow_rc;                   /* what h2_respond said to stream 1's worker at the end */
	bool resets_wanted;            /* stream 1's worker writes until refused */
	/* the client's view */
	int status;
	struct buf body;
	bool end;
	uint32_t rst, goaway;
	bool got_goaway, bad_header;
	int64_t charged, budget;       /* budget 0: unlimited */
	/* idle: one quiet spell before the EOF */
	bool quiet_once;               /* out of bytes once the answer is in: -ETIMEDOUT once, then EOF */
	uint32_t quiet_timeout;        /* the timeout the server asked for then */
	int idles;                     /* io->idle calls */
	/* gRPC */
	struct buf grpc_body;          /* what io->grpc was given */
	char grpc_path[128];
	bool grpc_trailers_only;
	char grpc_status[8];           /* the client's view: grpc-status, from whichever block */
	bool trailer_block;            /* grpc-status came in a trailing HEADERS */
};

static uint64_t now_ms(void)
{
	static uint64_t t;
	return t;   /* frozen clock: a flood happens "within one second" */
}

/* Server bytes to the client one byte at a time (every split point). */
static int srv_write(void *arg, const void *buf, size_t len)
{
	struct pipe *p = arg;
	for (size_t i = 0; i < len; i++)
		if (nghttp2_session_mem_recv(p->cli, (const uint8_t *)buf + i, 1) != 1)
			return -EIO;
	return 0;
}

static ssize_t srv_read(void *arg, void *buf, size_t len, uint32_t timeout_ms, int wake_fd)
{
	struct pipe *p = arg;
	const uint8_t *d;
	ssize_t n;

	(void)timeout_ms;
	(void)wake_fd;
	while ((n = nghttp2_session_mem_send(p->cli, &d)) > 0)
		buf_append(&p->c2s, d, (size_t)n);
	size_t avail = p->c2s.len - p->c2s_off;
	if (!avail && p->quiet_once && !p->end) {
		usleep(1000);   /* the answer is still being made: a short wait, no quiet spell yet */
		return -ETIMEDOUT;
	}
	if (!avail && p->quiet_once) {
		p->quiet_once = false;
		p->quiet_timeout = timeout_ms;
		return -ETIMEDOUT;
	}
	if (!avail)
		return 0;   /* the client has nothing more to say: EOF */
	size_t want = p->reads++ == 0 && p->first ? p->first : p->step;
	if (want > avail || !want)
		want = avail;
	if (want > len)
		want = len;
	memcpy(buf, p->c2s.data + p->c2s_off, want);
	p->c2s_off += want;
	return (ssize_t)want;
}

static int srv_charge(void *arg, int64_t delta)
{
	struct pipe *p = arg;
	if (delta > 0 && p->budget && p->charged + delta > p->budget)
		return -ENOBUFS;
	p->charged += delta;
	return 0;
}

/* The exchange runs on a worker thread, its answer goes out on the
 * connection's: wait (bounded) until the client has what was written. */
static size_t seen_mid(struct pipe *p)
{
	for (int i = 0; i < 2000 && p->seen < p->want_mid; i++)
		usleep(1000);
	return p->seen;
}

static int srv_exchange(void *arg, struct h2_stream *h2, const char *req, size_t len, int refuse)
{
	struct pipe *p = arg;
	size_t n = p->resp_trunc ? p->resp_trunc : p->resp_len;
	size_t cut = p->resp_cut < n ? p->resp_cut : n;

	p->nexchanges++;
	p->refuse = refuse;
	p->req.len = 0;
	buf_append(&p->req, req, len);
	if (cut && h2_respond(h2, p->resp, cut))
		return -EIO;
	p->data_seen_mid = seen_mid(p);
	if (n > cut && h2_respond(h2, p->resp + cut, n - cut))
		return -EIO;
	return p->ret;
}

static int cli_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		      const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct pipe *p = user;
	(void)s; (void)f; (void)flags;
	if (nl == 7 && !memcmp(name, ":status", 7))
		p->status = atoi((const char *)value);
	if (nl == 17 && !memcmp(name, "transfer-encoding", 17))
		p->bad_header = true;
	if (nl == 11 && !memcmp(name, "grpc-status", 11) && vl < sizeof(p->grpc_status)) {
		memcpy(p->grpc_status, value, vl);
		p->grpc_status[vl] = 0;
		p->trailer_block = f->headers.cat == NGHTTP2_HCAT_HEADERS;
	}
	(void)vl;
	return 0;
}

static int cli_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
	struct pipe *p = user;
	(void)flags;
	buf_append(&p->body, data, len);
	p->seen = p->body.len;
	if (id == 1 && p->rst_slow_on_data) {
		p->rst_slow_on_data = false;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL);
	}
	return 0;
}

static int cli_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct pipe *p = user;
	(void)s;
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    f->hd.stream_id == 1)
		p->end = true;
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    f->hd.stream_id < 64)
		p->ends |= 1u << (f->hd.stream_id / 2);
	if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id < 64)
		p->resets |= 1u << (f->hd.stream_id / 2);
	if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id == 1)
		p->rst = f->rst_stream.error_code;
	if (f->hd.type == NGHTTP2_GOAWAY) {
		p->got_goaway = true;
		p->goaway = f->goaway.error_code;
	}
	return 0;
}

static const struct h2_limits LIM = {
	.max_concurrent_streams = 8, .max_header_list_bytes = 4096, .max_resets_per_sec = 5,
	.max_continuations = 4, .header_table_size = 4096, .max_head_bytes = 8192, .max_headers = 50,
	.max_body_bytes = 1 << 20, .idle_timeout_ms = 1000,
};

static void pipe_init(struct pipe *p)
{
	nghttp2_session_callbacks *cb;
	memset(p, 0, sizeof(*p));
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cli_frame);
	nghttp2_session_client_new(&p->cli, cb, p);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(p->cli, NGHTTP2_FLAG_NONE, NULL, 0);
	p->ret = 0;
}

static void pipe_free(struct pipe *p)
{
	nghttp2_session_del(p->cli);
	buf_free(&p->c2s);
	buf_free(&p->req);
	buf_free(&p->body);
	buf_free(&p->grpc_body);
}

struct body_src { const char *d; size_t len, off; };

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct body_src *b = src->ptr;
	size_t n = b->len - b->off < length ? b->len - b->off : length;
	(void)s; (void)id; (void)user;
	/* two DATA frames at least: the body is cut in the middle */
	if (b->off == 0 && n > b->len / 2)
		n = b->len / 2;
	memcpy(buf, b->d + b->off, n);
	b->off += n;
	if (b->off == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static const char BODY[] = "{\"model\":\"gpt-4o\",\"messages\":[]}";
static const char WANT_REQ[] =
	"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
	"content-type: application/json\r\nauthorization: Bearer sk-x\r\n"
	"cookie: a=1; b=2\r\ncontent-length: 32\r\n\r\n{\"model\":\"gpt-4o\",\"messages\":[]}";

static int run(struct pipe *p, struct body_src *b, bool *abuse, char *why, size_t whylen)
{
	static const nghttp2_nv hdrs[] = {
		NV(":method", "POST"), NV(":scheme", "https"), NV(":path", "/v1/chat/completions"),
		NV(":authority", "api.openai.com"), NV("content-type", "application/json"),
		NV("authorization", "Bearer sk-x"), NV("cookie", "a=1"), NV("cookie", "b=2"),
	};
	nghttp2_data_provider prd = { .source.ptr = b, .read_callback = body_read };
	nghttp2_submit_request(p->cli, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), b ? &prd : NULL, NULL);
	struct h2_io io = { p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, NULL, NULL, NULL, false };
	return h2_serve(&LIM, &io, abuse, why, whylen);
}

static void srv_idle(void *arg)
{
	((struct pipe *)arg)->idles++;
}

/* A connection whose streams are done and whose client is quiet for a
 * moment gives back its idle workers and its caller's spares (io->idle)
 * long before the idle timeout, and then serves on. */
TEST(quiet_connection_trims_before_its_idle_timeout)
{
	static const nghttp2_nv hdrs[] = {
		NV(":method", "POST"), NV(":scheme", "https"), NV(":path", "/v1/chat/completions"),
		NV(":authority", "api.openai.com"), NV("content-type", "application/json"),
	};
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct pipe p;
	struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
	nghttp2_data_provider prd = { .source.ptr = &b, .read_callback = body_read };
	bool abuse;
	char why[160];

	pipe_init(&p);
	p.resp = resp;
	p.resp_len = sizeof(resp) - 1;
	p.resp_cut = 5;
	p.quiet_once = true;
	nghttp2_submit_request(p.cli, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &prd, NULL);
	struct h2_io io = { &p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, NULL, NULL, srv_idle, false };
	int rc = h2_serve(&LIM, &io, &abuse, why, sizeof(why));
	CHECK(rc == 0 && p.status == 200 && p.end, "h2_serve %d status %d end %d", rc, p.status, p.end);
	CHECK(!p.quiet_once && p.quiet_timeout < LIM.idle_timeout_ms,
	      "the quiet wait asked for %u ms (idle timeout %u)", p.quiet_timeout, LIM.idle_timeout_ms);
	CHECK(p.idles == 1, "io->idle called %d times", p.idles);
	pipe_free(&p);
}

static const char RESP_JSON[] =
	"HTTP/1.1 100 Continue\r\n\r\n"
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
	"Content-Length: 11\r\n\r\n{\"ok\":true}";

TEST(request_with_body_every_split_point)
{
	size_t total = 0;
	for (size_t k = 1;; k++) {
		struct pipe p;
		struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
		bool abuse;
		char why[160];
		pipe_init(&p);
		p.first = k;
		p.step = k % 3 == 0 ? 1 : 0;   /* every third run: the rest byte by byte too */
		p.resp = RESP_JSON;
		p.resp_len = sizeof(RESP_JSON) - 1;
		p.resp_cut = k % p.resp_len;
		int rc = run(&p, &b, &abuse, why, sizeof(why));
		if (k == 1)
			total = p.c2s.len;
		CHECK(rc == 0, "split %zu: h2_serve %d (%s)", k, rc, why);
		CHECK(p.nexchanges == 1 && p.refuse == 0, "split %zu: %d exchanges", k, p.nexchanges);
		CHECK(p.req.len == sizeof(WANT_REQ) - 1 && !memcmp(p.req.data, WANT_REQ, p.req.len),
		      "split %zu: request as HTTP/1.1:\n%.*s", k, (int)p.req.len, p.req.data);
		CHECK(p.status == 200 && p.end && !p.rst, "split %zu: status %d end %d rst %u", k, p.status, p.end, p.rst);
		CHECK(p.body.len == 11 && !memcmp(p.body.data, "{\"ok\":true}", 11), "split %zu: body %.*s", k,
		      (int)p.body.len, p.body.data);
		pipe_free(&p);
		if (k >= total)
			break;
	}
	CHECK(total > 100, "client bytes %zu", total);
}

static const char RESP_SSE[] =
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	"13\r\ndata: {\"a\":\"one\"}\n\n\r\n"
	"13\r\ndata: {\"a\":\"two\"}\n\n\r\n"
	"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";

TEST(sse_answer_streams_before_the_exchange_ends)
{
	static const char want[] = "data: {\"a\":\"one\"}\n\ndata: {\"a\":\"two\"}\n\ndata: [DONE]\n\n";
	const char *first_event_end = strstr(RESP_SSE, "\n\n\r\n") + 4;
	for (size_t cut = 1; cut < sizeof(RESP_SSE) - 1; cut++) {
		struct pipe p;
		struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
		pipe_init(&p);
		p.step = 1;
		p.resp = RESP_SSE;
		p.resp_len = sizeof(RESP_SSE) - 1;
		p.resp_cut = cut;
		p.want_mid = RESP_SSE + cut >= first_event_end ? 19 : 0;
		CHECK(run(&p, &b, NULL, NULL, 0) == 0, "cut %zu", cut);
		CHECK(p.status == 200 && p.end && !p.bad_header, "cut %zu: status %d end %d te %d", cut, p.status,
		      p.end, p.bad_header);
		CHECK(p.body.len == sizeof(want) - 1 && !memcmp(p.body.data, want, p.body.len), "cut %zu: body %.*s",
		      cut, (int)p.body.len, p.body.data);
		/* once the first event is written, the client has it: not held */
		if (RESP_SSE + cut >= first_event_end)
			CHECK(p.data_seen_mid >= 19, "cut %zu: the first event was held back (%zu bytes seen)", cut,
			      p.data_seen_mid);
		pipe_free(&p);
	}
}

TEST(error_answer_and_cut_answer)
{
	static const char err[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
				  "Content-Length: 26\r\n\r\n{\"error\":{\"code\":\"block\"}}";
	struct pipe p;
	struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
	pipe_init(&p);
	p.step = 1;
	p.resp = err;
	p.resp_len = sizeof(err) - 1;
	p.resp_cut = 40;
	p.ret = 1;   /* "close the connection" means nothing to a stream */
	CHECK(run(&p, &b, NULL, NULL, 0) == 0, "serve");
	CHECK(p.status == 403 && p.end && !p.rst, "status %d end %d rst %u", p.status, p.end, p.rst);
	CHECK(p.body.len == 26, "body %.*s", (int)p.body.len, p.body.data);
	pipe_free(&p);

	/* the upstream went away after 10 of 100 bytes: RST, never END_STREAM */
	static const char cut[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
	struct body_src b2 = { BODY, sizeof(BODY) - 1, 0 };
	pipe_init(&p);
	p.resp = cut;
	p.resp_len = sizeof(cut) - 1;
	p.resp_cut = 5;
	p.ret = 1;
	CHECK(run(&p, &b2, NULL, NULL, 0) == 0, "serve");
	CHECK(p.status == 200 && !p.end && p.rst == NGHTTP2_INTERNAL_ERROR, "cut answer: end %d rst %u", p.end, p.rst);
	pipe_free(&p);
}

TEST(oversized_header_list_is_refused_with_431_on_its_stream)
{
	static char big[6000];
	memset(big, 'a', sizeof(big) - 1);
	struct pipe p;
	pipe_init(&p);
	p.step = 7;
	static const char r431[] = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 2\r\n\r\n{}";
	p.resp = r431;
	p.resp_len = sizeof(r431) - 1;
	nghttp2_nv hdrs[] = {
		NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/v1/models"), NV(":authority", "h.example"),
		{ (uint8_t *)"x-big", (uint8_t *)big, 5, sizeof(big) - 1, NGHTTP2_NV_FLAG_NONE },
	};
	nghttp2_submit_request(p.cli, NULL, hdrs, 5, NULL, NULL);
	struct h2_io io = { &p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, NULL, NULL, NULL, false };
	CHECK(h2_serve(&LIM, &io, NULL, NULL, 0) == 0, "serve");
	CHECK(p.refuse == 431, "refuse %d", p.refuse);
	static const char want[] = "GET /v1/models HTTP/1.1\r\nHost: h.example\r\n\r\n";
	CHECK(p.req.len == sizeof(want) - 1 && !memcmp(p.req.data, want, p.req.len), "head %.*s", (int)p.req.len,
	      p.req.data);
	CHECK(p.status == 431 && p.end && !p.got_goaway, "status %d end %d goaway %d", p.status, p.end, p.got_goaway);
	pipe_free(&p);
}

TEST(flow_control_is_honoured_past_the_window)
{
	size_t n = 300 * 1024;
	char *resp = malloc(n + 100);
	int hl = snprintf(resp, 100, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
	for (size_t i = 0; i < n; i++)
		resp[hl + (int)i] = (char)('a' + i % 26);
	struct pipe p;
	struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
	pipe_init(&p);
	p.resp = resp;
	p.resp_len = (size_t)hl + n;
	p.resp_cut = (size_t)hl + 1000;
	CHECK(run(&p, &b, NULL, NULL, 0) == 0, "serve");
	/* the client's window is 64 KiB: the rest needed its WINDOW_UPDATEs */
	CHECK(p.end && p.body.len == n && !memcmp(p.body.data, resp + hl, n), "got %zu of %zu, end %d", p.body.len, n,
	      p.end);
	pipe_free(&p);
	free(resp);
}

TEST(rapid_reset_flood_is_a_goaway_and_says_so)
{
	static const nghttp2_nv hdrs[] = { NV(":method", "GET"), NV(":scheme", "https"), NV(":path", "/"),
					   NV(":authority", "h.example") };
	struct pipe p;
	bool abuse = false;
	char why[160] = "";
	pipe_init(&p);
	int32_t ids[20];
	const uint8_t *d;
	ssize_t n;
	for (int i = 0; i < 20; i++)
		ids[i] = nghttp2_submit_headers(p.cli, 0, -1, NULL, hdrs, 4, NULL);
	/* HEADERS on the wire first, so the resets are of open streams */
	while ((n = nghttp2_session_mem_send(p.cli, &d)) > 0)
		buf_append(&p.c2s, d, (size_t)n);
	for (int i = 0; i < 20; i++)
		nghttp2_submit_rst_stream(p.cli, 0, ids[i], NGHTTP2_CANCEL);
	struct h2_io io = { &p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, NULL, NULL, NULL, false };
	int rc = h2_serve(&LIM, &io, &abuse, why, sizeof(why));
	CHECK(rc == 1 && abuse && strstr(why, "rapid reset"), "rc %d abuse %d why %s", rc, abuse, why);
	CHECK(p.got_goaway && p.goaway == NGHTTP2_ENHANCE_YOUR_CALM, "goaway %d code %u", p.got_goaway, p.goaway);
	CHECK(p.nexchanges == 0, "a cancelled stream was served");
	pipe_free(&p);
}

TEST(garbage_instead_of_a_preface_is_a_protocol_error)
{
	struct pipe p;
	bool abuse = true;
	char why[160] = "";
	pipe_init(&p);
	buf_append(&p.c2s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	nghttp2_session_del(p.cli);
	nghttp2_session_callbacks *cb;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_client_new(&p.cli, cb, &p);   /* a client that sends nothing itself */
	nghttp2_session_callbacks_del(cb);
	p.step = 1;
	struct h2_io io = { &p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, NULL, NULL, NULL, false };
	int rc = h2_serve(&LIM, &io, &abuse, why, sizeof(why));
	CHECK(rc == 1 && !abuse && why[0], "rc %d abuse %d why %s", rc, abuse, why);
	pipe_free(&p);
}

TEST(buffer_budget_refuses_with_503_and_is_given_back)
{
	struct pipe p;
	struct body_src b = { BODY, sizeof(BODY) - 1, 0 };
	static const char r503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
	pipe_init(&p);
	p.budget = 20;   /* the 32-byte body does not fit */
	p.resp = r503;
	p.resp_len = sizeof(r503) - 1;
	CHECK(run(&p, &b, NULL, NULL, 0) == 0, "serve");
	CHECK(p.refuse == 503 && p.status == 503 && p.end, "refuse %d status %d end %d", p.refuse, p.status, p.end);
	CHECK(p.charged == 0, "%lld bytes still charged after the connection", (long long)p.charged);
	pipe_free(&p);

	struct body_src b2 = { BODY, sizeof(BODY) - 1, 0 };
	pipe_init(&p);
	p.budget = 1000;
	p.resp = RESP_JSON;
	p.resp_len = sizeof(RESP_JSON) - 1;
	CHECK(run(&p, &b2, NULL, NULL, 0) == 0, "serve");
	CHECK(p.refuse == 0 && p.status == 200 && p.charged == 0, "refuse %d status %d charged %lld", p.refuse,
	      p.status, (long long)p.charged);
	pipe_free(&p);
}

/* ---- gRPC streams: handed whole to io->grpc, answered with trailers ---- */

static int srv_grpc(void *arg, struct h2_stream *h2, const struct h2_grpc_call *c)
{
	struct pipe *p = arg;
	static const struct h2_field head[] = { { ":status", "200", 7, 3 }, { "content-type", "application/grpc", 12, 16 } };
	static const struct h2_field trl[] = { { "grpc-status", "0", 11, 1 }, { "grpc-message", "", 12, 0 } };
	static const struct h2_field only[] = { { ":status", "200", 7, 3 }, { "grpc-status", "7", 11, 1 } };

	p->nexchanges++;
	snprintf(p->grpc_path, sizeof(p->grpc_path), "%s", c->path);
	buf_append(&p->grpc_body, c->body, c->body_len);
	if (p->grpc_trailers_only)
		return h2_send_head(h2, only, 2, true);
	if (h2_send_head(h2, head, 2, false) || h2_send_data(h2, "\0\0\0\0\2", 5) || h2_send_data(h2, "hi", 2))
		return -EIO;
	p->data_seen_mid = seen_mid(p);
	return h2_send_trailers(h2, trl, 2);
}

static int run_grpc(struct pipe *p, struct body_src *b)
{
	static const nghttp2_nv hdrs[] = {
		NV(":method", "POST"), NV(":scheme", "https"),
		NV(":path", "/google.ai.generativelanguage.v1beta.GenerativeService/GenerateContent"),
		NV(":authority", "generativelanguage.googleapis.com"), NV("content-type", "application/grpc+proto"),
		NV("te", "trailers"),
	};
	nghttp2_data_provider prd = { .source.ptr = b, .read_callback = body_read };
	nghttp2_submit_request(p->cli, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &prd, NULL);
	struct h2_io io = { p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, srv_grpc, NULL, NULL, false };
	return h2_serve(&LIM, &io, NULL, NULL, 0);
}

TEST(grpc_stream_goes_whole_to_io_grpc_and_gets_trailers)
{
	static const char msg[] = "\0\0\0\0\3abc";
	for (size_t step = 0; step < 3; step++) {
		struct pipe p;
		struct body_src b = { msg, sizeof(msg) - 1, 0 };
		pipe_init(&p);
		p.step = step;   /* 0: whole reads; else that many bytes at a time */
		p.want_mid = 7;
		CHECK(run_grpc(&p, &b) == 0, "serve");
		CHECK(p.nexchanges == 1 && p.req.len == 0, "not served as gRPC: %d exchanges, %zu HTTP/1.1 bytes",
		      p.nexchanges, p.req.len);
		CHECK(!strcmp(p.grpc_path, "/google.ai.generativelanguage.v1beta.GenerativeService/GenerateContent"),
		      "path %s", p.grpc_path);
		CHECK(p.grpc_body.len == sizeof(msg) - 1 && !memcmp(p.grpc_body.data, msg, p.grpc_body.len),
		      "body given to io->grpc (%zu bytes)", p.grpc_body.len);
		CHECK(p.status == 200 && p.body.len == 7 && !memcmp(p.body.data, "\0\0\0\0\2hi", 7), "answer %d %zu",
		      p.status, p.body.len);
		CHECK(p.data_seen_mid == 7, "DATA held back until the trailers (%zu bytes seen before them)", p.data_seen_mid);
		CHECK(!strcmp(p.grpc_status, "0") && p.trailer_block && p.end && !p.rst,
		      "trailers: status '%s' in trailers %d end %d rst %u", p.grpc_status, p.trailer_block, p.end, p.rst);
		pipe_free(&p);
	}
}

TEST(grpc_trailers_only_answer)
{
	static const char msg[] = "\0\0\0\0\1x";
	struct pipe p;
	struct body_src b = { msg, sizeof(msg) - 1, 0 };
	pipe_init(&p);
	p.grpc_trailers_only = true;
	CHECK(run_grpc(&p, &b) == 0, "serve");
	CHECK(p.status == 200 && !strcmp(p.grpc_status, "7") && !p.trailer_block && p.end && p.body.len == 0 && !p.rst,
	      "trailers-only: status %d grpc-status '%s' end %d body %zu rst %u", p.status, p.grpc_status, p.end,
	      p.body.len, p.rst);
	pipe_free(&p);
}

/* ---- several streams on one connection, served concurrently ---- */

static const char SSE_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "13\r\ndata: {\"a\":\"one\"}\n\n\r\n";
static const char SSE_TAIL[] = "0\r\n\r\n";
static const char QUICK[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* Stream 1 (/slow) answers its first event, then waits (bounded) for
 * stream 3 (/quick) to have ended at the client before ending itself; with
 * rst_slow_on_data it keeps writing until h2_respond refuses. */
static int mux_exchange(void *arg, struct h2_stream *st, const char *req, size_t len, int refuse)
{
	struct pipe *p = arg;
	(void)refuse;
	if (len < 10 || memcmp(req, "GET /slow ", 10))
		return h2_respond(st, QUICK, sizeof(QUICK) - 1);
	if (h2_respond(st, SSE_HEAD, sizeof(SSE_HEAD) - 1))
		return -EIO;
	for (int i = 0; i < 2000 && !(p->ends & (1u << 1)); i++)
		usleep(1000);
	p->quick_first = p->ends & (1u << 1);
	int rc = 0;
	for (int i = 0; i < 2000 && !rc; i++) {
		if (!p->resets_wanted)
			break;
		rc = h2_respond(st, "13\r\ndata: {\"a\":\"two\"}\n\n\r\n", 25);
		usleep(1000);
	}
	p->slow_rc = rc;
	if (rc)
		return rc;
	return h2_respond(st, SSE_TAIL, sizeof(SSE_TAIL) - 1);
}

static void submit_get(struct pipe *p, const char *path)
{
	nghttp2_nv hdrs[] = { NV(":method", "GET"), NV(":scheme", "https"),
			      { (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE },
			      NV(":authority", "api.openai.com") };
	nghttp2_submit_request(p->cli, NULL, hdrs, 4, NULL, NULL);
}

TEST(a_slow_stream_does_not_hold_back_a_quick_one)
{
	for (size_t step = 0; step < 2; step++) {
		struct pipe p;
		pipe_init(&p);
		p.step = step;
		submit_get(&p, "/slow");    /* stream 1 */
		submit_get(&p, "/quick");   /* stream 3 */
		struct h2_io io = { &p, srv_read, srv_write, now_ms, mux_exchange, srv_charge, NULL, NULL, NULL, false };
		CHECK(h2_serve(&LIM, &io, NULL, NULL, 0) == 0, "serve");
		CHECK(p.quick_first, "step %zu: stream 3 ended only after stream 1's answer (head-of-line blocking)", step);
		CHECK(p.ends == ((1u << 0) | (1u << 1)) && !p.resets, "step %zu: ends %#x resets %#x", step, p.ends,
		      p.resets);
		CHECK(p.body.len == 19 + 2 && memmem(p.body.data, p.body.len, "ok", 2), "step %zu: bodies %.*s", step,
		      (int)p.body.len, p.body.data);
		pipe_free(&p);
	}
}

TEST(a_reset_stream_cancels_only_its_worker)
{
	struct pipe p;
	pipe_init(&p);
	p.rst_slow_on_data = true;
	p.resets_wanted = true;
	submit_get(&p, "/slow");
	submit_get(&p, "/quick");
	struct h2_io io = { &p, srv_read, srv_write, now_ms, mux_exchange, srv_charge, NULL, NULL, NULL, false };
	CHECK(h2_serve(&LIM, &io, NULL, NULL, 0) == 0, "serve");
	CHECK(p.slow_rc == -EIO, "the reset stream's worker was not told to stop (%d)", p.slow_rc);
	CHECK(p.ends == (1u << 1), "the other stream did not end cleanly: ends %#x", p.ends);
	CHECK(!p.got_goaway || p.goaway == NGHTTP2_NO_ERROR, "the connection was broken: goaway %u", p.goaway);
	pipe_free(&p);
}

TEST(more_streams_than_a_handful_all_answered)
{
	struct pipe p;
	pipe_init(&p);
	for (int i = 0; i < 8; i++)
		submit_get(&p, "/quick");
	struct h2_io io = { &p, srv_read, srv_write, now_ms, mux_exchange, srv_charge, NULL, NULL, NULL, false };
	CHECK(h2_serve(&LIM, &io, NULL, NULL, 0) == 0, "serve");
	CHECK(p.ends == 0xff && !p.resets, "ends %#x resets %#x", p.ends, p.resets);
	CHECK(p.body.len == 16, "bodies %zu bytes", p.body.len);
	pipe_free(&p);
}

/* ---- a gRPC request read as it arrives (io->grpc_streaming) ---- */

static int srv_grpc_streamed(void *arg, struct h2_stream *h2, const struct h2_grpc_call *c)
{
	struct pipe *p = arg;
	static const struct h2_field head[] = { { ":status", "200", 7, 3 }, { "content-type", "application/grpc", 12, 16 } };
	static const struct h2_field trl[] = { { "grpc-status", "0", 11, 1 } };
	uint8_t buf[7];
	ssize_t n;

	p->nexchanges++;
	if (!c->streamed || c->body_len)
		return -EIO;
	/* the answer's head goes before the request has ended */
	if (h2_send_head(h2, head, 2, false))
		return -EIO;
	for (int i = 0; i < 4000; i++) {
		n = h2_body_read(h2, buf, sizeof(buf));   /* small reads: the rest stays queued */
		if (n == 0)
			return h2_send_data(h2, p->grpc_body.data, p->grpc_body.len) ?: h2_send_trailers(h2, trl, 1);
		if (n > 0) {
			buf_append(&p->grpc_body, buf, (size_t)n);
			continue;
		}
		if (n != -EAGAIN)
			return (int)n;
		struct pollfd pf = { .fd = h2_body_fd(h2), .events = POLLIN };
		poll(&pf, 1, 1);
	}
	return -ETIMEDOUT;
}

TEST(grpc_request_read_as_it_arrives_when_streaming)
{
	static const char msg[] = "\0\0\0\0\3abc\0\0\0\0\2de";
	for (size_t step = 0; step < 3; step++) {
		struct pipe p;
		struct body_src b = { msg, sizeof(msg) - 1, 0 };
		static const nghttp2_nv hdrs[] = {
			NV(":method", "POST"), NV(":scheme", "https"), NV(":path", "/vigil.test.Notes/Collect"),
			NV(":authority", "h.example"), NV("content-type", "application/grpc"), NV("te", "trailers"),
		};
		pipe_init(&p);
		p.step = step;
		nghttp2_data_provider prd = { .source.ptr = &b, .read_callback = body_read };
		nghttp2_submit_request(p.cli, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &prd, NULL);
		struct h2_io io = { &p, srv_read, srv_write, now_ms, srv_exchange, srv_charge, srv_grpc_streamed, NULL, NULL, true };
		CHECK(h2_serve(&LIM, &io, NULL, NULL, 0) == 0, "serve");
		CHECK(p.nexchanges == 1, "step %zu: %d calls", step, p.nexchanges);
		CHECK(p.grpc_body.len == sizeof(msg) - 1 && !memcmp(p.grpc_body.data, msg, p.grpc_body.len),
		      "step %zu: the worker read %zu of %zu request bytes", step, p.grpc_body.len, sizeof(msg) - 1);
		CHECK(p.status == 200 && p.body.len == sizeof(msg) - 1 && !strcmp(p.grpc_status, "0") && p.end && !p.rst,
		      "step %zu: answer %d %zu bytes status '%s' end %d rst %u", step, p.status, p.body.len, p.grpc_status,
		      p.end, p.rst);
		CHECK(p.charged == 0, "step %zu: %lld bytes still charged", step, (long long)p.charged);
		pipe_free(&p);
	}
}
