/* libFuzzer target for common/http.c and agent/proxy/sse.c: every parser of
 * untrusted bytes in the HTTP path. Besides "no crash / no sanitizer
 * report" it checks properties, aborting on a violation:
 *  - request/response heads: every prefix answers 0 or the final answer;
 *    parsed pointers stay inside the head; the forwarded head re-parses
 *    to the same method, target, Host and framing;
 *  - chunked: whole, byte-by-byte and a 2-way split decode identically;
 *  - SSE: whole and a 3-way split dispatch identical events.
 * Input: byte 0 selects the target, bytes 1-2 choose split points.
 * Build: clang -fsanitize=fuzzer,address -Iagent -Icommon
 *        tests/fuzz/fuzz_http.c common/http.c agent/proxy/sse.c -o fuzz_http */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "proxy/sse.h"

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static bool inside(const char *p, size_t n, const char *base, size_t len)
{
	return n == 0 || (p >= base && p + n <= base + len);
}

static void fuzz_request(const char *d, size_t n, uint8_t sel)
{
	static struct http_request r, r2;
	struct http_limits lim = { .max_head_bytes = 64 + sel * 16, .max_headers = 1 + sel % 40,
				   .max_body_bytes = sel & 1 ? 1000 : 0 };
	int whole = http_parse_request(d, n, &lim, &r);
	REQUIRE(whole == 0 || whole > 0 || whole == -400 || whole == -431 || whole == -413 ||
		whole == -501 || whole == -505);
	/* Prefixes answer 0 or the final answer (checked at a few lengths). */
	size_t probes[] = { n / 2, n ? n - 1 : 0, whole > 0 ? (size_t)whole - 1 : 0, n / 3 };
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		int rc = http_parse_request(d, probes[i], &lim, &r2);
		if (whole > 0 && probes[i] >= (size_t)whole)
			REQUIRE(rc == whole);
		else
			REQUIRE(rc == 0 || rc == whole);
	}
	if (whole <= 0)
		return;
	/* The cheap pre-check never hides a complete head. */
	REQUIRE(http_head_may_be_complete(d, (size_t)whole, 0));
	REQUIRE(http_head_may_be_complete(d, (size_t)whole, (size_t)whole - 1));
	http_parse_request(d, n, &lim, &r);
	REQUIRE((size_t)whole <= n && (size_t)whole <= lim.max_head_bytes && r.head_len == (size_t)whole);
	REQUIRE(r.nheaders <= lim.max_headers && (r.minor == 0 || r.minor == 1));
	REQUIRE(inside(r.method, r.method_len, d, (size_t)whole) && r.method_len > 0);
	REQUIRE(inside(r.target, r.target_len, d, (size_t)whole) && r.target_len > 0);
	REQUIRE(r.minor == 0 || r.host != NULL);
	for (unsigned i = 0; i < r.nheaders; i++) {
		REQUIRE(inside(r.headers[i].name, r.headers[i].name_len, d, (size_t)whole));
		REQUIRE(inside(r.headers[i].value, r.headers[i].value_len, d, (size_t)whole));
		REQUIRE(r.headers[i].name_len > 0);
	}
	/* What we forward must parse, and mean the same request. */
	static char out[70000];
	uint64_t new_len = sel & 2 ? 0 : 12345;
	ssize_t m = http_format_request_head(&r, out, sizeof(out), new_len);
	REQUIRE(m > 0);
	struct http_limits big = { .max_head_bytes = sizeof(out), .max_headers = HTTP_MAX_HEADERS };
	int rc = http_parse_request(out, (size_t)m, &big, &r2);
	REQUIRE(rc == m);
	REQUIRE(r2.method_len == r.method_len && memcmp(r2.method, r.method, r.method_len) == 0);
	REQUIRE(r2.target_len == r.target_len && memcmp(r2.target, r.target, r.target_len) == 0);
	REQUIRE((r.host == NULL) == (r2.host == NULL));
	REQUIRE(!r.host || (r2.host_len == r.host_len && memcmp(r2.host, r.host, r.host_len) == 0));
	if (r.body != HTTP_BODY_NONE || new_len)
		REQUIRE(r2.body == HTTP_BODY_LENGTH && r2.content_length == new_len);
	else
		REQUIRE(r2.body == HTTP_BODY_NONE);
	/* The output is bounded; a short buffer never overflows. */
	if (m > 1)
		REQUIRE(http_format_request_head(&r, out, (size_t)m - 1, new_len) == -ENOSPC);
}

static void fuzz_response(const char *d, size_t n, uint8_t sel)
{
	static struct http_response r, r2;
	static const char *methods[] = { "GET", "HEAD", "POST", "OPTIONS" };
	const char *m = methods[sel % 4];
	int whole = http_parse_response(d, n, NULL, m, strlen(m), &r);
	REQUIRE(whole >= 0 || whole == -502);
	for (size_t k = 0; k < n && k < 300; k += 1 + k / 8) {
		int rc = http_parse_response(d, k, NULL, m, strlen(m), &r2);
		if (whole > 0 && k >= (size_t)whole)
			REQUIRE(rc == whole);
		else
			REQUIRE(rc == 0 || rc == whole);
	}
	if (whole > 0) {
		http_parse_response(d, n, NULL, m, strlen(m), &r);
		REQUIRE(r.status >= 100 && r.status <= 599 && r.head_len == (size_t)whole);
		if (r.body == HTTP_BODY_EOF)
			REQUIRE(!r.keep_alive);
		for (unsigned i = 0; i < r.nheaders; i++)
			REQUIRE(inside(r.headers[i].value, r.headers[i].value_len, d, (size_t)whole));
	}
}

struct acc { unsigned char out[8192]; size_t len; uint64_t total; };

static int acc_fn(void *arg, const char *p, size_t n)
{
	struct acc *a = arg;
	REQUIRE(n > 0);
	for (size_t i = 0; i < n; i++) {
		if (a->len < sizeof(a->out))
			a->out[a->len++] = (unsigned char)p[i];
	}
	a->total += n;
	return 0;
}

/* Feed in pieces; returns final rc (total consumed or error). */
static ssize_t chunk_feed(const char *d, size_t n, size_t step, size_t first, struct acc *a, bool *done)
{
	struct http_chunked c;
	http_chunked_init(&c, 100000, 256);
	size_t off = 0;
	while (off < n && !http_chunked_done(&c)) {
		size_t k = n - off;
		if (off == 0 && first)
			k = first < n ? first : n;
		else if (step && step < k)
			k = step;
		ssize_t rc = http_chunked_feed(&c, d + off, k, acc_fn, a);
		if (rc < 0)
			return rc;
		REQUIRE((size_t)rc <= k);
		if ((size_t)rc < k)
			REQUIRE(http_chunked_done(&c));
		off += (size_t)rc;
	}
	*done = http_chunked_done(&c);
	return (ssize_t)off;
}

static void fuzz_chunked(const char *d, size_t n, uint8_t sel)
{
	static struct acc a, b, c;
	bool da = false, db = false, dc = false;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	ssize_t ra = chunk_feed(d, n, 0, 0, &a, &da);
	ssize_t rb = chunk_feed(d, n, 1, 0, &b, &db);
	ssize_t rc = chunk_feed(d, n, 0, sel, &c, &dc);
	REQUIRE(ra == rb && ra == rc);
	if (ra >= 0) {
		REQUIRE(da == db && da == dc);
		REQUIRE(a.total == b.total && a.total == c.total && a.total <= 100000);
		REQUIRE(a.len == b.len && memcmp(a.out, b.out, a.len) == 0 && memcmp(a.out, c.out, a.len) == 0);
	} else {
		REQUIRE(ra == -400 || ra == -413);
		/* Before the error, the same payload prefix was delivered. */
		REQUIRE(a.total == b.total && a.total == c.total);
	}
}

struct evlog { char buf[16384]; size_t len; unsigned n; };

static int ev_fn(void *arg, const char *ev, size_t evl, const char *data, size_t dl)
{
	struct evlog *l = arg;
	REQUIRE(evl > 0 && evl <= SSE_MAX_EVENT_NAME && dl <= 200);
	l->n++;
	/* Hash-free but order-sensitive record: lengths and a digest. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < evl; i++)
		h = (h ^ (unsigned char)ev[i]) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (size_t i = 0; i < dl; i++)
		h = (h ^ (unsigned char)data[i]) * 16777619u;
	if (l->len + 12 <= sizeof(l->buf)) {
		memcpy(l->buf + l->len, &h, 4);
		memcpy(l->buf + l->len + 4, &dl, 8);
		l->len += 12;
	}
	return 0;
}

static void sse_run(const char *d, size_t n, size_t a, size_t b, struct evlog *l, int *e2big)
{
	struct sse_parser *p = sse_new(200);
	REQUIRE(p);
	size_t cuts[3] = { a, b, n };
	size_t prev = 0;
	for (int i = 0; i < 3; i++) {
		int rc = sse_feed(p, d + prev, cuts[i] - prev, ev_fn, l);
		REQUIRE(rc == 0 || rc == -E2BIG);
		*e2big += rc == -E2BIG;
		prev = cuts[i];
	}
	sse_free(p);
}

static void fuzz_sse(const char *d, size_t n, uint8_t s1, uint8_t s2)
{
	static struct evlog w, s;
	int ew = 0, es = 0;
	memset(&w, 0, sizeof(w));
	memset(&s, 0, sizeof(s));
	sse_run(d, n, 0, 0, &w, &ew);
	size_t a = n ? s1 % (n + 1) : 0, b = n ? s2 % (n + 1) : 0;
	if (a > b) {
		size_t t = a;
		a = b;
		b = t;
	}
	sse_run(d, n, a, b, &s, &es);
	REQUIRE(w.n == s.n && w.len == s.len && memcmp(w.buf, s.buf, w.len) == 0);
	/* Byte by byte, each byte can push at most one event over the bound,
	 * so that run counts oversized events exactly; any other split reports
	 * each at most once, and something iff there was one. */
	static struct evlog bw;
	int cnt = 0;
	memset(&bw, 0, sizeof(bw));
	struct sse_parser *p = sse_new(200);
	REQUIRE(p);
	for (size_t i = 0; i < n; i++) {
		int rc = sse_feed(p, d + i, 1, ev_fn, &bw);
		REQUIRE(rc == 0 || rc == -E2BIG);
		cnt += rc == -E2BIG;
	}
	sse_free(p);
	REQUIRE(bw.n == w.n && bw.len == w.len && memcmp(bw.buf, w.buf, w.len) == 0);
	REQUIRE(ew == (cnt > 0));
	REQUIRE((es > 0) == (cnt > 0) && es <= cnt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	const char *d = (const char *)data + 3;
	size_t n = size - 3;
	switch (data[0] % 4) {
	case 0: fuzz_request(d, n, data[1]); break;
	case 1: fuzz_response(d, n, data[1]); break;
	case 2: fuzz_chunked(d, n, data[1]); break;
	default: fuzz_sse(d, n, data[1], data[2]); break;
	}
	return 0;
}
