/* Unit tests for agent/proxy/h1x.c, the sans-IO HTTP/1.1 exchange engine,
 * with the real exchange (inspection, a policy that tokenizes e-mail
 * addresses, the vault, the audit log): no root, no sockets. Each scenario
 * is a client byte stream and the upstream's answers; the test plays the
 * driver (connects, writes, EOFs, the clock) and records what the engine
 * writes to each side. Every scenario runs fed whole, then with the client
 * bytes cut at every split point, one byte at a time, and the same for the
 * upstream's answers: what each side receives must be the same whatever
 * the split (for an answer the agent rewrites, its chunk framing follows
 * the upstream's pieces, so the decoded body is compared). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "agent.h"
#include "audit/audit.h"
#include "buf.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "proxy/exchange.h"
#include "proxy/h1x.h"

static struct agent ag;
static struct conn_info info;
static char audit_path[256];
static int inited;

static const char POLICY[] = "version: 1\n"
			     "default: allow\n"
			     "redaction:\n"
			     "  EMAIL: tokenize\n"
			     "rules:\n"
			     "  - name: pii\n"
			     "    when: { finding: [EMAIL] }\n"
			     "    action: redact\n";

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* A real agent: config, policy, inspector, vault and an audit log. */
static int setup(void)
{
	char dir[] = "/tmp/vigil-h1x-XXXXXX", cfgp[300], polp[300], cfgtext[700], err[512];
	if (inited)
		return inited > 0 ? 0 : -1;
	inited = -1;
	log_set_level(LOG_ERR);   /* the 421 test logs each refusal */
	if (!mkdtemp(dir))
		return -1;
	snprintf(polp, sizeof(polp), "%s/policy.yaml", dir);
	snprintf(cfgp, sizeof(cfgp), "%s/agent.yaml", dir);
	snprintf(audit_path, sizeof(audit_path), "%s/audit.log", dir);
	snprintf(cfgtext, sizeof(cfgtext), "policy: %s\nspool_dir: %s\n", polp, dir);
	if (write_file(polp, POLICY) || write_file(cfgp, cfgtext))
		return -1;
	if (config_load(cfgp, &ag.cfg, err, sizeof(err))) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	ag.cfg->max_head_bytes = 2048;
	ag.cfg->max_body_bytes = 4096;
	ag.cfg->header_timeout_ms = 5000;
	ag.cfg->idle_timeout_ms = 7000;
	ag.cfg->upstream_timeout_ms = 11000;
	struct audit_opts ao = { .agent_id = "h1x-test", .log_path = audit_path };
	if (audit_open(&ao, &ag.audit, err, sizeof(err)) || exchange_global_init(&ag, err, sizeof(err))) {
		fprintf(stderr, "agent: %s\n", err);
		return -1;
	}
	info.id.pid = 4242;
	info.id.uid = 1000;
	snprintf(info.id.exe, sizeof(info.id.exe), "/usr/bin/python3");
	snprintf(info.sni, sizeof(info.sni), "api.openai.com");
	info.tunnel_fd = -1;
	inited = 1;
	return 0;
}

/* ---- the simulated driver ---- */

struct answer {
	const char *bytes;
	size_t len;
};

enum up_end { UP_EOF, UP_TIMEOUT, UP_KEEP };
enum client_end { CLIENT_EOF, CLIENT_TIMEOUT };

struct scenario {
	const char *client;
	size_t client_len;
	const struct answer *answers;
	unsigned nanswers;
	enum up_end up_end;             /* after the last answer */
	enum client_end client_end;     /* when the client has nothing more to send */
	bool first_dies;                /* the first upstream is a pooled one the server closed */
	bool connect_fails;
	bool transformed;               /* compare the client's body de-chunked */
	const struct conn_info *who;    /* NULL: info (its vault stays empty) */
};

/* How the bytes are cut: at one offset (0 = fed whole) or one at a time. */
struct split {
	size_t client_cut, up_cut;
	bool client_bytes, up_bytes;
};

struct outcome {
	struct buf cout, uout;
	unsigned connects, closes;
	bool done;
};

static size_t piece(size_t pos, size_t len, size_t cut, bool bytes)
{
	if (bytes)
		return 1;
	if (cut && pos < cut && cut < len)
		return cut - pos;
	return len - pos;
}

static void collect(struct h1x *e, struct outcome *o, bool client)
{
	struct iovec iov[2];
	unsigned n = client ? h1x_client_out(e, iov) : h1x_upstream_out(e, iov);
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		buf_append(client ? &o->cout : &o->uout, iov[i].iov_base, iov[i].iov_len);
		total += iov[i].iov_len;
	}
	if (client)
		h1x_client_sent(e, total);
	else
		h1x_upstream_sent(e, total);
}

static void run(const struct scenario *s, struct split sp, struct outcome *o)
{
	uint64_t now = 1000000;
	struct exchange_conn xc = { 0 };
	struct h1x *e = h1x_new(&ag, s->who ? s->who : &info, &xc, now);
	size_t cpos = 0, apos = 0;
	unsigned sent = 0, ai = 0;
	bool dying = s->first_dies;

	memset(o, 0, sizeof(*o));
	for (int guard = 0; e && guard < 1000000; guard++) {
		collect(e, o, true);
		unsigned act = h1x_actions(e);
		if (act & H1X_UP_CLOSE)
			o->closes++;
		if (act & H1X_CONNECT) {
			o->connects++;
			if (s->connect_fails)
				h1x_upstream_failed(e, "upstream_unreachable", "connect refused", now);
			else
				h1x_upstream_connected(e, dying, now);
			continue;
		}
		struct iovec iov[2];
		if (h1x_upstream_out(e, iov)) {
			collect(e, o, false);
			sent++;
			continue;
		}
		if (h1x_done(e))
			break;
		if (h1x_want_client(e) && cpos < s->client_len) {
			size_t k = piece(cpos, s->client_len, sp.client_cut, sp.client_bytes);
			cpos += h1x_client_data(e, s->client + cpos, k, now);
			continue;
		}
		if (h1x_want_upstream(e)) {
			if (dying) {
				/* closed by the server while pooled: EOF before any answer */
				dying = false;
				sent = 0;
				h1x_upstream_eof(e, 0, now);
				continue;
			}
			if (ai < s->nanswers && ai < sent) {
				const struct answer *a = &s->answers[ai];
				size_t k = piece(apos, a->len, sp.up_cut, sp.up_bytes);
				apos += h1x_upstream_data(e, a->bytes + apos, k, now);
				if (apos == a->len) {
					ai++;
					apos = 0;
				}
				continue;
			}
			if (ai >= s->nanswers && s->up_end == UP_EOF) {
				h1x_upstream_eof(e, 0, now);
				continue;
			}
			if (ai >= s->nanswers && s->up_end == UP_TIMEOUT) {
				now = h1x_deadline(e);
				h1x_tick(e, now);
				continue;
			}
		}
		if (h1x_want_client(e) && cpos >= s->client_len) {
			if (s->client_end == CLIENT_TIMEOUT) {
				now = h1x_deadline(e);
				h1x_tick(e, now);
			} else {
				h1x_client_eof(e, 0, now);
			}
			continue;
		}
		break;   /* stuck: the checks below say so */
	}
	o->done = e && h1x_done(e);
	h1x_free(e);
	exchange_conn_free(&xc);
}

static void outcome_free(struct outcome *o)
{
	buf_free(&o->cout);
	buf_free(&o->uout);
}

static int append_data(void *arg, const char *data, size_t len)
{
	return buf_append(arg, data, len);
}

/* The client's bytes with a chunked body decoded: the answer's meaning,
 * whatever its chunk framing. */
static void decoded(const struct buf *in, struct buf *out)
{
	const char *p = in->data ? in->data : "";
	const char *hend = memmem(p, in->len, "\r\n\r\n", 4);
	if (!hend || !memmem(p, (size_t)(hend - p), "chunked", 7)) {
		buf_append(out, p, in->len);
		return;
	}
	size_t hl = (size_t)(hend - p) + 4;
	struct http_chunked ch;
	buf_append(out, p, hl);
	http_chunked_init(&ch, UINT64_MAX, 65536);
	if (http_chunked_feed(&ch, p + hl, in->len - hl, append_data, out) < 0 || !http_chunked_done(&ch))
		buf_append(out, "<BAD CHUNKS>", 12);
}

static bool same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static const char *show(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* Compares one run with the reference; returns a description of the first
 * difference, or NULL. */
static const char *differs(const struct scenario *s, const struct outcome *ref, const struct outcome *o)
{
	static char why[256];
	bool cl;
	if (s->transformed) {
		struct buf a = { 0 }, b = { 0 };
		decoded(&ref->cout, &a);
		decoded(&o->cout, &b);
		cl = same(&a, &b);
		buf_free(&a);
		buf_free(&b);
	} else {
		cl = same(&ref->cout, &o->cout);
	}
	if (!cl)
		snprintf(why, sizeof(why), "client got %zu bytes, reference %zu: %.120s", o->cout.len, ref->cout.len,
			 show(&o->cout));
	else if (!same(&ref->uout, &o->uout))
		snprintf(why, sizeof(why), "upstream got %zu bytes, reference %zu", o->uout.len, ref->uout.len);
	else if (ref->done != o->done || ref->connects != o->connects)
		snprintf(why, sizeof(why), "done %d/%d connects %u/%u", o->done, ref->done, o->connects,
			 ref->connects);
	else
		return NULL;
	return why;
}

static size_t longest_answer(const struct scenario *s)
{
	size_t m = 0;
	for (unsigned i = 0; i < s->nanswers; i++)
		if (s->answers[i].len > m)
			m = s->answers[i].len;
	return m;
}

/* Runs s whole (into ref, which the caller checks and frees) and at every
 * split; returns the first split that changed what a side received. */
static const char *every_split(const struct scenario *s, struct outcome *ref)
{
	static char why[400];
	struct outcome o;
	const char *d;

	run(s, (struct split){ 0 }, ref);
	for (size_t k = 1; k < s->client_len; k++) {
		run(s, (struct split){ .client_cut = k }, &o);
		d = differs(s, ref, &o);
		outcome_free(&o);
		if (d) {
			snprintf(why, sizeof(why), "client cut at %zu: %s", k, d);
			return why;
		}
	}
	size_t al = longest_answer(s);
	for (size_t k = 1; k < al; k++) {
		run(s, (struct split){ .up_cut = k }, &o);
		d = differs(s, ref, &o);
		outcome_free(&o);
		if (d) {
			snprintf(why, sizeof(why), "answer cut at %zu: %s", k, d);
			return why;
		}
	}
	static const struct split bytewise[] = { { .client_bytes = true }, { .up_bytes = true },
						 { .client_bytes = true, .up_bytes = true } };
	for (unsigned i = 0; i < 3; i++) {
		run(s, bytewise[i], &o);
		d = differs(s, ref, &o);
		outcome_free(&o);
		if (d) {
			snprintf(why, sizeof(why), "byte by byte (%s): %s", i == 0 ? "client" : i == 1 ? "answer" : "both", d);
			return why;
		}
	}
	return NULL;
}

static bool starts(const struct buf *b, const char *prefix)
{
	return b->len >= strlen(prefix) && !memcmp(b->data, prefix, strlen(prefix));
}

static bool has(const struct buf *b, const char *needle)
{
	return b->len && memmem(b->data, b->len, needle, strlen(needle));
}

static size_t count(const struct buf *b, const char *needle)
{
	size_t n = 0, nl = strlen(needle);
	const char *p = b->data, *end = b->data + b->len;
	while (p && p < end && (p = memmem(p, (size_t)(end - p), needle, nl))) {
		n++;
		p += nl;
	}
	return n;
}

/* The last line of the audit log (the last event). */
static const char *last_event(void)
{
	static char line[16384];
	char cur[16384];
	FILE *f = fopen(audit_path, "r");
	line[0] = 0;
	if (!f)
		return line;
	while (fgets(cur, sizeof(cur), f))
		memcpy(line, cur, sizeof(line));
	fclose(f);
	return line;
}

#define A(s) { s, sizeof(s) - 1 }
#define REQ_HEAD_OPENAI "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
#define BODY1 "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
#define JSON_ANSWER "{\"choices\":[{\"message\":{\"content\":\"hello\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"
#define CL_ANSWER "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 95\r\n\r\n" JSON_ANSWER

static const struct answer cl_answer[] = { A(CL_ANSWER) };

#define SETUP() CHECK(setup() == 0, "cannot build the agent")

TEST(content_length_request_and_answer)
{
	SETUP();
	CHECK(strlen(JSON_ANSWER) == 95, "fixture length %zu", strlen(JSON_ANSWER));
	static const char req[] = REQ_HEAD_OPENAI "Content-Length: 67\r\n\r\n" BODY1;
	CHECK(strlen(BODY1) == 67, "fixture length %zu", strlen(BODY1));
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = cl_answer, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(same(&ref.cout, &(struct buf){ (char *)CL_ANSWER, sizeof(CL_ANSWER) - 1, 0, false }),
	      "the client did not get the answer byte for byte: %s", show(&ref.cout));
	CHECK(has(&ref.uout, "Content-Length: 67\r\n\r\n" BODY1), "the upstream did not get the body: %s", show(&ref.uout));
	CHECK(ref.connects == 1 && ref.done, "connects %u done %d", ref.connects, ref.done);
	outcome_free(&ref);
}

TEST(chunked_request_forwarded_with_a_length)
{
	SETUP();
	static const char req[] = REQ_HEAD_OPENAI "Transfer-Encoding: chunked\r\n\r\n"
				  "10\r\n{\"model\":\"gpt-4o\r\n"
				  "33;ext=1\r\n-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\r\n"
				  "0\r\n\r\n";
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = cl_answer, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(has(&ref.uout, "Content-Length: 67\r\n\r\n" BODY1) && !has(&ref.uout, "chunked"),
	      "the decoded body was not forwarded with a length: %s", show(&ref.uout));
	CHECK(starts(&ref.cout, "HTTP/1.1 200 OK"), "answer %s", show(&ref.cout));
	outcome_free(&ref);
}

TEST(pipelined_requests_answered_in_order)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"
				  "GET /v1/models/gpt-4o HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	static const struct answer two[] = {
		A("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"),
		A("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n"),
	};
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = two, .nanswers = 2, .up_end = UP_KEEP, .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(count(&ref.uout, "GET /v1/models") == 2 && ref.connects == 1,
	      "both requests on one upstream: %u connects, %s", ref.connects, show(&ref.uout));
	CHECK(same(&ref.cout, &(struct buf){ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
					    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n",
					    sizeof("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
						   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n") - 1, 0, false }),
	      "answers: %s", show(&ref.cout));
	outcome_free(&ref);
}

/* 100 Continue goes out only when the head came alone (the body not yet
 * sent): as the threaded code did, and as RFC 9110 10.1.1 allows. */
TEST(expect_100_continue)
{
	SETUP();
	static const char req[] = REQ_HEAD_OPENAI "Expect: 100-continue\r\nContent-Length: 67\r\n\r\n" BODY1;
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	size_t hl = sizeof(req) - 1 - 67;
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = cl_answer, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF };
	struct outcome whole, o;

	run(&s, (struct split){ 0 }, &whole);
	CHECK(!starts(&whole.cout, cont) && starts(&whole.cout, "HTTP/1.1 200"), "head and body together: %s",
	      show(&whole.cout));
	for (size_t k = 1; k < s.client_len; k++) {
		run(&s, (struct split){ .client_cut = k }, &o);
		bool cont_sent = starts(&o.cout, cont);
		bool rest_same = o.cout.len == whole.cout.len + (cont_sent ? sizeof(cont) - 1 : 0) &&
				 !memcmp(o.cout.data + (cont_sent ? sizeof(cont) - 1 : 0), whole.cout.data, whole.cout.len);
		bool uout_same = same(&o.uout, &whole.uout);
		outcome_free(&o);
		CHECK(cont_sent == (k == hl), "cut at %zu (head %zu): 100 Continue %s", k, hl, cont_sent ? "sent" : "missing");
		CHECK(rest_same && uout_same, "cut at %zu: the exchange differs", k);
	}
	run(&s, (struct split){ .client_bytes = true }, &o);
	CHECK(starts(&o.cout, cont) && has(&o.cout, "HTTP/1.1 200 OK"), "byte by byte: %s", show(&o.cout));
	outcome_free(&o);
	outcome_free(&whole);
}

TEST(close_delimited_answer)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	static const struct answer a[] = { A("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end") };
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = a, .nanswers = 1, .up_end = UP_EOF, .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(same(&ref.cout, &(struct buf){ (char *)a[0].bytes, a[0].len, 0, false }), "answer %s", show(&ref.cout));
	CHECK(ref.done && ref.closes == 1, "the client connection must close after it (done %d closes %u)", ref.done,
	      ref.closes);
	CHECK(strstr(last_event(), "\"status\":200"), "event %s", last_event());
	outcome_free(&ref);
}

TEST(interim_1xx_heads_forwarded)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	static const struct answer a[] = { A("HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
					     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") };
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = a, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(same(&ref.cout, &(struct buf){ (char *)a[0].bytes, a[0].len, 0, false }), "answer %s", show(&ref.cout));
	CHECK(ref.done && ref.closes == 0, "the answer did not end the exchange (done %d, upstream closes %u)", ref.done,
	      ref.closes);
	CHECK(strstr(last_event(), "\"status\":200"), "event %s", last_event());
	outcome_free(&ref);
}

/* The pieces of a vault token [[VGL_EMAIL_xxxxxx]] in what the upstream got. */
static bool find_token(const struct buf *b, char tok[24])
{
	const char *p = b->len && b->data ? memmem(b->data, b->len, "[[VGL_EMAIL_", 12) : NULL;
	if (!p || (size_t)(b->data + b->len - p) < 20 || memcmp(p + 18, "]]", 2))
		return false;
	memcpy(tok, p, 20);
	tok[20] = 0;
	return true;
}

/* An e-mail address leaves as a vault token; the model's streamed answer
 * carries it back, cut anywhere (inside the token too), and the client
 * reads the address: the transform path, re-framed as chunks. */
TEST(sse_answer_restores_a_token_across_any_split)
{
	SETUP();
	static const char body[] = "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\","
				   "\"content\":\"write to dana.r@example.com\"}]}";
	char req[512], tok[24], sse[1024], ans[1400];
	snprintf(req, sizeof(req), REQ_HEAD_OPENAI "Content-Length: %zu\r\n\r\n%s", sizeof(body) - 1, body);
	/* another program of the user: its own vault, so the answers of the
	 * other tests stay untransformed */
	static struct conn_info curl;
	curl = info;
	snprintf(curl.id.exe, sizeof(curl.id.exe), "/usr/bin/curl");
	struct scenario first = { .client = req, .client_len = strlen(req), .answers = cl_answer, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF, .who = &curl };
	struct outcome o;
	run(&first, (struct split){ 0 }, &o);
	CHECK(!has(&o.uout, "dana.r@example.com") && find_token(&o.uout, tok), "the address left untokenized: %s",
	      show(&o.uout));
	outcome_free(&o);

	int n = snprintf(sse, sizeof(sse),
			 "data: {\"choices\":[{\"delta\":{\"content\":\"Your address is \"}}]}\n\n"
			 "data: {\"choices\":[{\"delta\":{\"content\":\"%s.\"}}]}\n\n"
			 "data: [DONE]\n\n", tok);
	snprintf(ans, sizeof(ans), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
		 "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", n, sse);
	struct answer a[] = { { ans, strlen(ans) } };
	struct scenario s = { .client = req, .client_len = strlen(req), .answers = a, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF, .transformed = true, .who = &curl };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	struct buf dec = { 0 };
	decoded(&ref.cout, &dec);
	bool restored = has(&dec, "\"content\":\"dana.r@example.com.\"") && !has(&dec, "VGL_EMAIL");
	bool framed = has(&ref.cout, "Transfer-Encoding: chunked") && has(&dec, "data: [DONE]");
	buf_free(&dec);
	CHECK(restored, "the token was not restored: %s", show(&ref.cout));
	CHECK(framed, "the rewritten answer is not a chunked event stream: %s", show(&ref.cout));
	outcome_free(&ref);
}

/* ---- errors and limits ---- */

static void expect_refusal(const char *req, size_t len, enum client_end end, const char *status, const char *error)
{
	struct scenario s = { .client = req, .client_len = len, .answers = NULL, .nanswers = 0, .up_end = UP_KEEP, .client_end = end };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(starts(&ref.cout, status), "expected %s, got: %.200s", status, show(&ref.cout));
	CHECK(ref.done && ref.connects == 0 && !ref.uout.len, "refused request went upstream");
	CHECK(strstr(last_event(), error), "event lacks '%s': %s", error, last_event());
	outcome_free(&ref);
}

TEST(malformed_request_400)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nNo colon here\r\n\r\n";
	expect_refusal(req, sizeof(req) - 1, CLIENT_EOF, "HTTP/1.1 400", "\"error\":\"malformed request\"");
}

/* CONNECT inside the intercepted session asks for a tunnel the agent
 * could not read: refused and audited as such, whatever follows it. */
TEST(connect_inside_the_session_is_a_refused_tunnel)
{
	SETUP();
	static const char req[] = "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n"
				  "\x16\x03\x01 tunnelled bytes";
	expect_refusal(req, sizeof(req) - 1, CLIENT_EOF, "HTTP/1.1 405", "\"reason\":\"tunnel_refused\"");
	CHECK(strstr(last_event(), "\"method\":\"CONNECT\"") && strstr(last_event(), "\"status\":405") &&
	      strstr(last_event(), "\"action\":\"block\""), "event %s", last_event());
}

TEST(head_too_large_431)
{
	SETUP();
	static char req[3000];
	int n = snprintf(req, sizeof(req), "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nX-Pad: ");
	memset(req + n, 'a', sizeof(req) - (size_t)n);
	expect_refusal(req, sizeof(req), CLIENT_EOF, "HTTP/1.1 431", "\"error\":\"request head too large\"");
}

TEST(body_too_large_413)
{
	SETUP();
	static const char declared[] = REQ_HEAD_OPENAI "Content-Length: 5000\r\n\r\n{}";
	expect_refusal(declared, sizeof(declared) - 1, CLIENT_EOF, "HTTP/1.1 413", "\"error\":\"request body too large\"");
	/* chunked: the limit is found while decoding */
	static char chunked[5200];
	int n = snprintf(chunked, sizeof(chunked), REQ_HEAD_OPENAI "Transfer-Encoding: chunked\r\n\r\n1000\r\n");
	memset(chunked + n, 'x', 4096);
	n += 4096;
	n += snprintf(chunked + n, sizeof(chunked) - (size_t)n, "\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n");
	expect_refusal(chunked, (size_t)n, CLIENT_EOF, "HTTP/1.1 413", "\"error\":\"request body too large\"");
}

TEST(header_timeout_408)
{
	SETUP();
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";
	expect_refusal(req, sizeof(req) - 1, CLIENT_TIMEOUT, "HTTP/1.1 408", "\"error\":\"request timed out\"");
	/* a body that stops coming */
	static const char part[] = REQ_HEAD_OPENAI "Content-Length: 67\r\n\r\n{\"model\"";
	expect_refusal(part, sizeof(part) - 1, CLIENT_TIMEOUT, "HTTP/1.1 408", "\"error\":\"request timed out\"");
}

TEST(idle_connection_closed_silently)
{
	SETUP();
	struct scenario s = { .client = "", .client_len = 0, .answers = NULL, .nanswers = 0, .up_end = UP_KEEP, .client_end = CLIENT_TIMEOUT };
	struct outcome o;
	run(&s, (struct split){ 0 }, &o);
	CHECK(o.done && !o.cout.len, "an idle client got %zu bytes", o.cout.len);
	outcome_free(&o);
}

static void expect_upstream_error(const struct answer *a, unsigned na, enum up_end end, bool first_dies,
				  const char *status, const char *error, unsigned connects)
{
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = a, .nanswers = na, .up_end = end, .client_end = CLIENT_EOF, .first_dies = first_dies };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(starts(&ref.cout, status), "expected %s, got: %.300s", status, show(&ref.cout));
	CHECK(ref.connects == connects, "%u connects, expected %u", ref.connects, connects);
	CHECK(strstr(last_event(), error), "event lacks '%s': %s", error, last_event());
	outcome_free(&ref);
}

TEST(upstream_malformed_502)
{
	SETUP();
	static const struct answer a[] = { A("HTTP/1.1 2xx Nope\r\nContent-Length: 0\r\n\r\n") };
	expect_upstream_error(a, 1, UP_KEEP, false, "HTTP/1.1 502", "\"error\":\"malformed upstream response\"", 1);
}

TEST(upstream_closed_before_responding_502)
{
	SETUP();
	expect_upstream_error(NULL, 0, UP_EOF, false, "HTTP/1.1 502", "\"error\":\"upstream closed before responding\"", 1);
}

/* A pooled upstream the server closed while idle: the request is sent
 * again once on a fresh connection, and the client never sees the EOF. */
TEST(one_retry_on_a_reused_upstream)
{
	SETUP();
	expect_upstream_error(cl_answer, 1, UP_KEEP, true, "HTTP/1.1 200 OK", "\"status\":200", 2);
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = cl_answer, .nanswers = 1, .up_end = UP_KEEP, .client_end = CLIENT_EOF, .first_dies = true };
	struct outcome o;
	run(&s, (struct split){ 0 }, &o);
	CHECK(count(&o.uout, "GET /v1/models") == 2 && o.closes >= 1, "the request was not sent again: %s",
	      show(&o.uout));
	outcome_free(&o);
}

TEST(upstream_timeout_504)
{
	SETUP();
	expect_upstream_error(NULL, 0, UP_TIMEOUT, false, "HTTP/1.1 504", "\"error\":\"upstream response timed out\"", 1);
}

TEST(upstream_cut_mid_answer)
{
	SETUP();
	static const struct answer a[] = { A("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf") };
	expect_upstream_error(a, 1, UP_EOF, false, "HTTP/1.1 200 OK", "\"error\":\"upstream closed mid-response\"", 1);
}

TEST(upstream_connect_failure_502)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = NULL, .nanswers = 0, .up_end = UP_KEEP, .client_end = CLIENT_EOF, .first_dies = false, .connect_fails = true };
	struct outcome o;
	run(&s, (struct split){ 0 }, &o);
	CHECK(starts(&o.cout, "HTTP/1.1 502") && has(&o.cout, "connect refused") && o.done, "answer %s", show(&o.cout));
	CHECK(strstr(last_event(), "\"reason\":\"upstream_unreachable\""), "event %s", last_event());
	outcome_free(&o);
}

TEST(host_mismatch_421)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: evil.example\r\n\r\n";
	expect_refusal(req, sizeof(req) - 1, CLIENT_EOF, "HTTP/1.1 421", "host_mismatch");
}

/* Back-pressure: answer bytes the client has not taken stop the reading
 * of the upstream until they are written (the span passed untouched
 * lives in the engine's upstream buffer). */
TEST(unsent_answer_stops_upstream_reads)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
	static char part[40000];
	struct exchange_conn xc = { 0 };
	struct iovec iov[2];
	uint64_t now = 1000;
	struct h1x *e = h1x_new(&ag, &info, &xc, now);
	CHECK(e && h1x_want_client(e) && !h1x_want_upstream(e), "a new connection waits for a request");
	CHECK(h1x_client_data(e, req, sizeof(req) - 1, now) == sizeof(req) - 1, "request not taken");
	CHECK(h1x_actions(e) == H1X_CONNECT && !h1x_want_client(e), "no connect asked");
	h1x_upstream_connected(e, false, now);
	CHECK(!h1x_want_upstream(e), "the upstream is read before the request is out");
	unsigned n = h1x_upstream_out(e, iov);
	h1x_upstream_sent(e, n == 1 ? iov[0].iov_len : 0);
	CHECK(h1x_want_upstream(e), "the request is out: the answer is awaited");
	memset(part, 'x', sizeof(part));
	CHECK(h1x_upstream_data(e, head, sizeof(head) - 1, now) == sizeof(head) - 1, "head not taken");
	CHECK(!h1x_want_upstream(e) && h1x_upstream_data(e, part, sizeof(part), now) == 0,
	      "upstream bytes taken while the client has not been written to");
	n = h1x_client_out(e, iov);
	CHECK(n == 1 && iov[0].iov_len == sizeof(head) - 1, "%u pieces for the client", n);
	h1x_client_sent(e, 10);
	CHECK(!h1x_want_upstream(e), "a partial write reopened the upstream");
	h1x_client_sent(e, sizeof(head) - 1 - 10);
	CHECK(h1x_want_upstream(e) && h1x_upstream_data(e, part, sizeof(part), now) == sizeof(part),
	      "the upstream stays stopped once the client took everything");
	CHECK(h1x_deadline(e) == now + ag.cfg->idle_timeout_ms, "no idle deadline mid-answer");
	h1x_free(e);
	exchange_conn_free(&xc);
	CHECK(atomic_load(&ag.stats.buffered) == 0, "buffer budget not given back");
}

/* A 101 to an allowed WebSocket upgrade: the head goes to the client, the
 * driver is told to relay, with the bytes each side sent past its head. */
TEST(websocket_handover_with_pending_bytes)
{
	SETUP();
	static const char req[] = "GET /v1/realtime?model=gpt-4o-realtime-preview HTTP/1.1\r\nHost: api.openai.com\r\n"
				  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				  "Sec-WebSocket-Version: 13\r\n\r\nCLIENTFRAME";
	static const char ans[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nSERVERFRAME";
	struct exchange_conn xc = { 0 };
	struct iovec iov[2];
	uint64_t now = 1000;
	struct h1x *e = h1x_new(&ag, &info, &xc, now);
	CHECK(h1x_client_data(e, req, sizeof(req) - 1, now) == sizeof(req) - 1, "request not taken");
	CHECK(h1x_actions(e) == H1X_CONNECT, "no connect asked");
	h1x_upstream_connected(e, false, now);
	unsigned n = h1x_upstream_out(e, iov);
	CHECK(n == 1 && memmem(iov[0].iov_base, iov[0].iov_len, "Upgrade: websocket\r\n", 20) &&
	      !memmem(iov[0].iov_base, iov[0].iov_len, "CLIENTFRAME", 11),
	      "the upgrade head was not forwarded alone");
	h1x_upstream_sent(e, iov[0].iov_len);
	CHECK(h1x_upstream_data(e, ans, sizeof(ans) - 1, now) == sizeof(ans) - 1, "answer not taken");
	n = h1x_client_out(e, iov);
	CHECK(n == 1 && iov[0].iov_len == sizeof(ans) - 1 - 11, "the 101 head was not sent alone (%u pieces)", n);
	h1x_client_sent(e, iov[0].iov_len);
	CHECK(h1x_actions(e) == H1X_WEBSOCKET && !h1x_want_client(e) && !h1x_want_upstream(e), "no hand-over");
	const char *cp, *up;
	size_t cl, ul;
	struct exchange *ex = h1x_ws(e, &cp, &cl, &up, &ul);
	CHECK(ex && ex->status == 101 && cl == 11 && !memcmp(cp, "CLIENTFRAME", 11) && ul == 11 &&
	      !memcmp(up, "SERVERFRAME", 11), "pending bytes %zu/%zu", cl, ul);
	h1x_ws_done(e, now + 5);
	CHECK(h1x_done(e) && h1x_actions(e) == H1X_UP_CLOSE && !h1x_upstream_reusable(e),
	      "the session's end must close both sides");
	CHECK(strstr(last_event(), "\"status\":101"), "event %s", last_event());
	h1x_free(e);
	exchange_conn_free(&xc);
}

/* A client asks for h2c (or any protocol but WebSocket) inside the TLS
 * session and the upstream agrees: the bytes after the 101 would be a
 * protocol the agent does not read, so none of them reach the client. It
 * gets a 502, the upstream is closed, and the event says why. */
TEST(upgrade_to_another_protocol_is_refused_whatever_the_upstream_says)
{
	SETUP();
	static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
				  "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
	static const struct answer a[] = { A("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
					     "\x00\x00\x00\x04\x00\x00\x00\x00\x00RAWFRAMES") };
	struct scenario s = { .client = req, .client_len = sizeof(req) - 1, .answers = a, .nanswers = 1, .up_end = UP_KEEP,
			      .client_end = CLIENT_EOF };
	struct outcome ref;
	const char *why = every_split(&s, &ref);
	CHECK(!why, "%s", why);
	CHECK(starts(&ref.cout, "HTTP/1.1 502") && !memmem(ref.cout.data, ref.cout.len, "RAWFRAMES", 9) &&
	      !memmem(ref.cout.data, ref.cout.len, " 101 ", 5), "the client got: %s", show(&ref.cout));
	CHECK(ref.connects == 1 && ref.closes == 1,
	      "the upstream that switched protocols was not closed (connects %u closes %u)", ref.connects, ref.closes);
	CHECK(strstr(last_event(), "\"error\":\"protocol upgrade is not supported\"") &&
	      strstr(last_event(), "\"status\":502") && strstr(last_event(), "\"action\":\"block\"") &&
	      strstr(last_event(), "\"reason\":\"upgrade_refused\""),
	      "event %s", last_event());
	outcome_free(&ref);
}

/* An HTTP/2 stream comes through the same engine: served, refused over a
 * limit from its head alone, or malformed when its request is cut. */
TEST(http2_stream_through_the_engine)
{
	SETUP();
	static const char req[] = REQ_HEAD_OPENAI "Content-Length: 67\r\n\r\n" BODY1;
	struct exchange_conn xc = { 0 };
	struct iovec iov[2];
	uint64_t now = 1000;
	struct h1x *e = h1x_new(&ag, &info, &xc, now);

	CHECK(h1x_h2_begin(e, req, sizeof(req) - 1, 0, now) == 0, "stream refused");
	CHECK(!h1x_want_client(e) && h1x_actions(e) == H1X_CONNECT, "the stream's request did not start an exchange");
	h1x_upstream_connected(e, false, now);
	unsigned n = h1x_upstream_out(e, iov);
	h1x_upstream_sent(e, n ? iov[0].iov_len : 0);
	CHECK(h1x_upstream_data(e, CL_ANSWER, sizeof(CL_ANSWER) - 1, now) == sizeof(CL_ANSWER) - 1, "answer not taken");
	n = h1x_client_out(e, iov);
	CHECK(n == 1 && iov[0].iov_len == sizeof(CL_ANSWER) - 1, "the answer is for h2_respond as HTTP/1.1");
	h1x_client_sent(e, iov[0].iov_len);
	CHECK(h1x_done(e) && h1x_h2_end(e) == 0, "the stream did not end whole");

	/* over a limit: the head says enough for the provider's shape */
	CHECK(h1x_h2_begin(e, req, sizeof(req) - 1 - 67, 413, now) == 0, "stream not taken");
	n = h1x_client_out(e, iov);
	CHECK(n == 1 && !memcmp(iov[0].iov_base, "HTTP/1.1 413", 12) && h1x_actions(e) == 0,
	      "no 413 (or a linger on an HTTP/2 connection)");
	h1x_client_sent(e, iov[0].iov_len);
	CHECK(h1x_done(e) && h1x_h2_end(e) == 1, "a refused stream's result");

	/* a body shorter than its Content-Length */
	CHECK(h1x_h2_begin(e, req, sizeof(req) - 10, 0, now) == 0, "stream not taken");
	n = h1x_client_out(e, iov);
	CHECK(n == 1 && !memcmp(iov[0].iov_base, "HTTP/1.1 400", 12), "a cut stream was not refused");
	h1x_client_sent(e, iov[0].iov_len);
	CHECK(h1x_done(e) && h1x_h2_end(e) == 1, "a malformed stream's result");
	h1x_free(e);
	exchange_conn_free(&xc);
	CHECK(atomic_load(&ag.stats.buffered) == 0, "buffer budget not given back");
}
