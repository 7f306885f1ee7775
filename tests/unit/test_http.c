/* Unit tests for common/http.c: request/response head parsing, chunked
 * decoding and the forwarded head. Every hostile case names the attack or
 * the RFC rule it checks; every framing case checks the exact length. */
#include "check.h"
#include "http.h"

#include <errno.h>
#include <stdint.h>

static struct http_request rq;
static struct http_response rs;

static int preq(const char *s)
{
	return http_parse_request(s, strlen(s), NULL, &rq);
}

static int presp(const char *s, const char *method)
{
	return http_parse_response(s, strlen(s), NULL, method, strlen(method), &rs);
}

static bool eqn(const char *a, size_t an, const char *b)
{
	return an == strlen(b) && memcmp(a, b, an) == 0;
}

/* Feeding every prefix must give 0 or the final answer, never something
 * else, and the full buffer the final answer. Returns the first bad prefix
 * length, or -1. */
static long req_prefix_mismatch(const char *s, const struct http_limits *lim)
{
	size_t n = strlen(s);
	struct http_request r2;
	int whole = http_parse_request(s, n, lim, &r2);
	for (size_t k = 0; k < n; k++) {
		int rc = http_parse_request(s, k, lim, &rq);
		if (whole > 0 && (size_t)whole <= k) {
			if (rc != whole)
				return (long)k;
		} else if (rc != 0 && rc != whole) {
			return (long)k;
		}
	}
	return http_parse_request(s, n, lim, &rq) == whole ? -1 : (long)n;
}

/* ---- requests: the happy paths -------------------------------------- */

TEST(req_simple_get)
{
	const char *s = "GET /v1/models?x=1 HTTP/1.1\r\nHost: api.openai.com\r\nAccept: */*\r\n\r\n";
	int rc = preq(s);
	CHECK(rc == (int)strlen(s), "head length %d, want %zu", rc, strlen(s));
	CHECK(rq.head_len == strlen(s), "head_len %zu", rq.head_len);
	CHECK(eqn(rq.method, rq.method_len, "GET"), "method wrong");
	CHECK(eqn(rq.target, rq.target_len, "/v1/models?x=1"), "target wrong");
	CHECK(rq.minor == 1, "minor %d", rq.minor);
	CHECK(rq.nheaders == 2, "nheaders %u", rq.nheaders);
	CHECK(eqn(rq.headers[1].name, rq.headers[1].name_len, "Accept"), "header name");
	CHECK(eqn(rq.headers[1].value, rq.headers[1].value_len, "*/*"), "header value");
	CHECK(rq.host && eqn(rq.host, rq.host_len, "api.openai.com"), "host wrong");
	CHECK(rq.body == HTTP_BODY_NONE, "GET without CL/TE must have no body, got %d", rq.body);
	CHECK(rq.keep_alive, "HTTP/1.1 defaults to keep-alive");
	CHECK(!rq.expect_continue, "no Expect header");
	CHECK(rq.host >= s && rq.host < s + strlen(s), "host must point into the caller's buffer");
}

TEST(req_content_length_body_not_in_head)
{
	const char *s = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":\"b\"}\r\n";
	int rc = preq(s);
	int want = (int)(strstr(s, "\r\n\r\n") - s) + 4;
	CHECK(rc == want, "head length %d, want %d (body must not be counted)", rc, want);
	CHECK(rq.body == HTTP_BODY_LENGTH, "body kind %d", rq.body);
	CHECK(rq.content_length == 11, "content_length %llu", (unsigned long long)rq.content_length);
}

TEST(req_chunked_framing)
{
	int rc = preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
	CHECK(rc == 56, "head length %d, want 56 (the chunked body is not head)", rc);
	CHECK(rq.body == HTTP_BODY_CHUNKED, "body kind %d", rq.body);
	CHECK(rq.content_length == 0, "no CL with chunked");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n") > 0, "coding names are case-insensitive");
	CHECK(rq.body == HTTP_BODY_CHUNKED, "Chunked");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \t chunked \t\r\n\r\n") > 0, "OWS around the value is fine");
	CHECK(rq.body == HTTP_BODY_CHUNKED, "OWS chunked");
}

TEST(req_content_length_edge_values)
{
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") > 0, "CL 0 is valid");
	CHECK(rq.body == HTTP_BODY_LENGTH && rq.content_length == 0, "CL 0 -> LENGTH 0");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n") > 0, "leading zeros are digits");
	CHECK(rq.content_length == 7, "007 = %llu", (unsigned long long)rq.content_length);
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n") > 0,
	      "UINT64_MAX fits when no body limit is set");
	CHECK(rq.content_length == UINT64_MAX, "max value");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n") > 0,
	      "identical duplicate Content-Length is accepted (RFC 9110 8.6)");
	CHECK(rq.content_length == 5, "dup same value");
}

TEST(req_keep_alive_rules)
{
	static const struct { const char *req; bool ka; } cases[] = {
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,close , bar\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nX-Connection: keep-alive\r\n\r\n", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = preq(cases[i].req);
		CHECK(rc > 0, "case %zu rejected: %d", i, rc);
		CHECK(rq.keep_alive == cases[i].ka, "case %zu: keep_alive %d, want %d", i, rq.keep_alive, cases[i].ka);
	}
}

TEST(req_expect_continue)
{
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n") > 0, "parse");
	CHECK(rq.expect_continue, "100-continue must be flagged");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nexpect: 100-Continue\r\nContent-Length: 3\r\n\r\n") > 0, "parse");
	CHECK(rq.expect_continue, "the expectation is case-insensitive");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue-now\r\n\r\n") > 0, "parse");
	CHECK(!rq.expect_continue, "only the exact expectation counts");
	CHECK(preq("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n") > 0, "parse");
	CHECK(!rq.expect_continue, "HTTP/1.0 clients cannot use 100-continue (RFC 9110 10.1.1)");
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n") > 0, "parse");
	CHECK(!rq.expect_continue, "stale expect_continue from a previous parse");
}

TEST(req_pipelined_heads)
{
	const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
	int rc = preq(s);
	CHECK(rc == 28, "first head length %d, want exactly 28", rc);
	CHECK(eqn(rq.target, rq.target_len, "/a") && rq.keep_alive, "first request");
	int rc2 = http_parse_request(s + rc, strlen(s) - (size_t)rc, NULL, &rq);
	CHECK(rc2 == (int)strlen(s) - rc, "second head length %d", rc2);
	CHECK(eqn(rq.target, rq.target_len, "/b") && !rq.keep_alive, "second request");
	CHECK(eqn(rq.host, rq.host_len, "b"), "second host");
	/* A body between the heads. */
	const char *t = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcdGET /y HTTP/1.1\r\nHost: a\r\n\r\n";
	rc = preq(t);
	CHECK(rc > 0 && rq.content_length == 4, "post head");
	rc2 = http_parse_request(t + rc + 4, strlen(t) - (size_t)rc - 4, NULL, &rq);
	CHECK(rc2 > 0 && eqn(rq.target, rq.target_len, "/y"), "request after the body: %d", rc2);
}

TEST(req_leading_empty_lines_skipped)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK(preq(s) == (int)strlen(s), "leading CRLFs are counted in the head length");
	CHECK(eqn(rq.method, rq.method_len, "GET"), "method after empty lines");
	CHECK(preq("\r\n") == 0, "only CRLF: need more");
	CHECK(preq("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") == -400, "leading bare LF is refused");
	CHECK(preq("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n") == -400, "leading bare CR is refused");
}

TEST(req_options_star_and_methods)
{
	CHECK(preq("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") > 0, "asterisk-form");
	CHECK(eqn(rq.target, rq.target_len, "*"), "target *");
	CHECK(preq("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n") > 0, "any token is a method");
	CHECK(preq("get / HTTP/1.1\r\nHost: a\r\n\r\n") > 0, "lowercase method is a valid token");
	CHECK(eqn(rq.method, rq.method_len, "get"), "method kept verbatim");
}

TEST(req_header_values_trimmed_and_obs_text)
{
	const char *s = "GET / HTTP/1.1\r\nHost:a\r\nX-A:   v  a l \t \r\nX-B:\r\nX-U: caf\xc3\xa9\r\n\r\n";
	CHECK(preq(s) == (int)strlen(s), "parse");
	CHECK(eqn(rq.host, rq.host_len, "a"), "no space after colon is fine");
	CHECK(eqn(rq.headers[1].value, rq.headers[1].value_len, "v  a l"), "OWS trimmed, inner kept");
	CHECK(rq.headers[2].value_len == 0, "empty value");
	CHECK(eqn(rq.headers[3].value, rq.headers[3].value_len, "caf\xc3\xa9"), "obs-text (UTF-8) allowed in values");
}

TEST(req_host_rules)
{
	CHECK(preq("GET / HTTP/1.1\r\n\r\n") == -400, "HTTP/1.1 without Host is 400 (RFC 9112 3.2)");
	CHECK(preq("GET / HTTP/1.0\r\n\r\n") > 0 && rq.host == NULL, "HTTP/1.0 may omit Host");
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n") == -400, "two Host fields are 400");
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == -400, "two differing Host fields");
	CHECK(preq("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n") > 0, "IPv6 literal with port");
	CHECK(eqn(rq.host, rq.host_len, "[::1]:8443"), "host value");
	CHECK(preq("GET / HTTP/1.1\r\nHost:\r\n\r\n") > 0 && rq.host && rq.host_len == 0, "empty Host is valid syntax");
	CHECK(preq("GET / HTTP/1.1\r\nHost: a b\r\n\r\n") == -400, "space inside Host");
	CHECK(preq("GET / HTTP/1.1\r\nHost: evil.com/x\r\n\r\n") == -400, "path in Host");
	CHECK(preq("GET / HTTP/1.1\r\nHost: user@evil.com\r\n\r\n") == -400, "userinfo in Host");
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\xc3\xa9\r\n\r\n") == -400, "raw UTF-8 in Host");
}

TEST(req_version_rules)
{
	CHECK(preq("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == -505, "HTTP/2.0 -> 505");
	CHECK(preq("GET / HTTP/1.2\r\nHost: a\r\n\r\n") == -505, "HTTP/1.2 -> 505");
	CHECK(preq("GET / HTTP/0.9\r\nHost: a\r\n\r\n") == -505, "HTTP/0.9 -> 505");
	CHECK(preq("GET / http/1.1\r\nHost: a\r\n\r\n") == -400, "version is case-sensitive");
	CHECK(preq("GET / HTTP/1.10\r\nHost: a\r\n\r\n") == -400, "two-digit minor");
	CHECK(preq("GET / HTTP/11\r\nHost: a\r\n\r\n") == -400, "missing dot");
	CHECK(preq("GET / HTTP/2.00\r\nHost: a\r\n\r\n") == -400, "malformed version is 400, not 505");
	CHECK(preq("GET / HTTP/1.1 \r\nHost: a\r\n\r\n") == -400, "trailing space after version");
	CHECK(preq("GET /\r\nHost: a\r\n\r\n") == -400, "HTTP/0.9-style request line");
	CHECK(preq("GET / HTTP/1.0\r\n\r\n") > 0 && rq.minor == 0, "1.0 minor");
}

/* ---- requests: hostile input ----------------------------------------- */

TEST(req_malformed_table)
{
	static const struct { const char *why; const char *req; size_t len; int want; } cases[] = {
#define C(why, s, want) { why, s, sizeof(s) - 1, want }
		C("double space in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("tab as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("non-token method", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("empty target", "GET  HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("absolute-form target", "GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("authority-form target", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("control char in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("obs-text in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", -400),
		C("bare LF after header", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", -400),
		C("bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", -400),
		C("LF-only head", "GET / HTTP/1.1\nHost: a\n\n", -400),
		C("bare CR inside value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", -400),
		C("CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", -400),
		C("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", -400),
		C("NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\0Y: b\r\n\r\n", -400),
		C("NUL in request line", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
		C("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", -400),
		C("escape in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", -400),
		C("obs-fold continuation", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", -400),
		C("obs-fold with tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", -400),
		C("whitespace before first header", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", -400),
		C("space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", -400),
		C("tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n", -400),
		C("empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", -400),
		C("header without colon", "GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", -400),
		C("non-token in name", "GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n", -400),
		C("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", -400),
		C("CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", -400),
		C("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", -400),
		C("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", -400),
		C("CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", -400),
		C("CL list of same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", -400),
		C("CL list differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,6\r\n\r\n", -400),
		C("CL duplicate differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400),
		C("CL overflow by one", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", -400),
		C("CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n", -400),
		C("CL decimal point", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", -400),
		C("CL then TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
		C("TE then CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400),
		C("TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", -400),
		C("TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", -400),
		C("TE gzip alone", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -400),
		C("TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400),
		C("TE chunked twice over lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
		C("TE chunked then other line", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", -400),
		C("TE with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", -400),
		C("TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", -400),
		C("TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", -400),
		C("TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", -400),
		C("TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", -400),
		C("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
		C("TE parameter on an earlier coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;l=1, chunked\r\n\r\n", -400),
		C("TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501),
		C("TE over two lines", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", -501),
		C("TE unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", -501),
#undef C
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = http_parse_request(cases[i].req, cases[i].len, NULL, &rq);
		CHECK(rc == cases[i].want, "%s: got %d, want %d", cases[i].why, rc, cases[i].want);
	}
}

TEST(req_incomplete_needs_more)
{
	static const char *partial[] = {
		"", "G", "GET", "GET ", "GET /", "GET / ", "GET / HTTP", "GET / HTTP/1", "GET / HTTP/1.",
		"GET / HTTP/1.1", "GET / HTTP/1.1\r", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost",
		"GET / HTTP/1.1\r\nHost:", "GET / HTTP/1.1\r\nHost: a", "GET / HTTP/1.1\r\nHost: a\r",
		"GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r",
	};
	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
		CHECK(preq(partial[i]) == 0, "partial head %zu (\"%s\") must need more, got %d", i, partial[i], preq(partial[i]));
}

TEST(req_bytewise_equals_whole)
{
	static const char *fixtures[] = {
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		long bad = req_prefix_mismatch(fixtures[i], NULL);
		CHECK(bad < 0, "fixture %zu: prefix of %ld bytes gives a different answer", i, bad);
	}
	struct http_limits lim = { .max_head_bytes = 40, .max_headers = 2, .max_body_bytes = 10 };
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		long bad = req_prefix_mismatch(fixtures[i], &lim);
		CHECK(bad < 0, "fixture %zu with tight limits: prefix %ld differs", i, bad);
	}
}

TEST(req_limits_head_size)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";   /* 27 bytes */
	size_t n = strlen(s);
	struct http_limits lim = { .max_head_bytes = n };
	CHECK(http_parse_request(s, n, &lim, &rq) == (int)n, "a head of exactly max_head_bytes fits");
	lim.max_head_bytes = n - 1;
	CHECK(http_parse_request(s, n, &lim, &rq) == -431, "one byte over is 431");
	CHECK(http_parse_request(s, n - 2, &lim, &rq) == 0, "below the limit, incomplete: need more");
	CHECK(http_parse_request(s, n - 1, &lim, &rq) == -431, "incomplete at the limit: 431, not wait forever");
	/* Default limit: 32768. */
	static char big[40000];
	memcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
	memset(big + 28, 'x', sizeof(big) - 28);
	CHECK(http_parse_request(big, 32767, NULL, &rq) == 0, "default: under 32768 still waits");
	CHECK(http_parse_request(big, sizeof(big), NULL, &rq) == -431, "default limit 32768 enforced");
	memcpy(big + 32764, "\r\n\r\n", 4);
	CHECK(http_parse_request(big, sizeof(big), NULL, &rq) == 32768, "head of 32768 bytes fits the default");
	/* An error inside the limit wins over 431. */
	lim.max_head_bytes = 20;
	CHECK(http_parse_request("GET / HTTP/9.9\r\nHost: aaaaaaaa\r\n", 31, &lim, &rq) == -505,
	      "errors before the limit are reported as such");
}

TEST(req_limits_header_count)
{
	char buf[8192];
	struct http_limits lim = { .max_headers = 5 };
	for (unsigned nh = 4; nh <= 7; nh++) {
		size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
		for (unsigned i = 1; i < nh; i++)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-%u: v\r\n", i);
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\r\n");
		int rc = http_parse_request(buf, o, &lim, &rq);
		if (nh <= 5)
			CHECK(rc == (int)o && rq.nheaders == nh, "%u headers within limit 5: rc %d", nh, rc);
		else
			CHECK(rc == -431, "%u headers over limit 5: rc %d", nh, rc);
	}
	/* Default 100, hard cap HTTP_MAX_HEADERS even if asked for more. */
	lim.max_headers = 1000;
	size_t o = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (unsigned i = 1; i < HTTP_MAX_HEADERS + 1; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "X-%u: v\r\n", i);
	o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\r\n");
	CHECK(http_parse_request(buf, o, &lim, &rq) == -431, "129 headers overflow the fixed array: 431");
	CHECK(http_parse_request(buf, o, NULL, &rq) == -431, "129 headers over the default 100");
}

TEST(req_limits_body)
{
	struct http_limits lim = { .max_body_bytes = 100 };
	const char *ok = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n";
	const char *big = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n";
	CHECK(http_parse_request(ok, strlen(ok), &lim, &rq) > 0, "CL equal to the limit is fine");
	CHECK(http_parse_request(big, strlen(big), &lim, &rq) == -413, "CL above the limit is 413");
	const char *both = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK(http_parse_request(both, strlen(both), &lim, &rq) == -400, "CL+TE is 400 even when CL is too big");
	const char *ch = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK(http_parse_request(ch, strlen(ch), &lim, &rq) > 0, "chunked bodies are bounded by the decoder, not here");
}

TEST(req_reparse_resets_state)
{
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n") > 0, "first");
	CHECK(preq("GET / HTTP/1.0\r\n\r\n") > 0, "second");
	CHECK(rq.host == NULL && rq.nheaders == 0, "host/headers from the previous parse leaked");
	CHECK(rq.body == HTTP_BODY_NONE && rq.content_length == 0 && !rq.expect_continue, "framing leaked");
}

/* ---- header helpers --------------------------------------------------- */

TEST(find_header_and_tokens)
{
	CHECK(preq("GET / HTTP/1.1\r\nHost: a\r\nCONNECTION: Keep-Alive , X-Foo\r\nx-foo: 1\r\nX-Fo: 2\r\n\r\n") > 0, "parse");
	const struct http_header *h = http_find_header(rq.headers, rq.nheaders, "connection");
	CHECK(h && h == &rq.headers[1], "case-insensitive lookup");
	CHECK(http_header_has_token(h, "keep-alive"), "token with different case");
	CHECK(http_header_has_token(h, "x-foo"), "last token with OWS");
	CHECK(!http_header_has_token(h, "x-fo"), "prefix of a token is not the token");
	CHECK(!http_header_has_token(h, "alive"), "suffix of a token is not the token");
	CHECK(!http_header_has_token(NULL, "close"), "NULL header has no tokens");
	const struct http_header *f = http_find_header(rq.headers, rq.nheaders, "X-FOO");
	CHECK(f && eqn(f->value, f->value_len, "1"), "find X-FOO");
	CHECK(http_find_header(rq.headers, rq.nheaders, "x-f") == NULL, "prefix name must not match");
	CHECK(http_find_header(rq.headers, 0, "host") == NULL, "n=0 finds nothing");
}

/* ---- responses -------------------------------------------------------- */

TEST(resp_content_length)
{
	const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
	int rc = presp(s, "POST");
	CHECK(rc == (int)strlen(s) - 2, "head length %d", rc);
	CHECK(rs.status == 200 && rs.minor == 1, "status %d minor %d", rs.status, rs.minor);
	CHECK(rs.body == HTTP_BODY_LENGTH && rs.content_length == 2, "body %d cl %llu", rs.body, (unsigned long long)rs.content_length);
	CHECK(rs.keep_alive && !rs.event_stream, "flags");
	CHECK(rs.nheaders == 2, "nheaders %u", rs.nheaders);
}

TEST(resp_chunked_and_event_stream)
{
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n", "POST") > 0, "parse");
	CHECK(rs.body == HTTP_BODY_CHUNKED, "chunked");
	CHECK(rs.event_stream, "text/event-stream with parameter");
	CHECK(presp("HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream\r\nContent-Length: 0\r\n\r\n", "GET") > 0 && rs.event_stream,
	      "media type is case-insensitive");
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Type: text/event-streams\r\nContent-Length: 0\r\n\r\n", "GET") > 0 && !rs.event_stream,
	      "text/event-streams is a different type");
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", "GET") > 0 && !rs.event_stream,
	      "text/plain");
}

TEST(resp_no_body_cases)
{
	static const struct { const char *resp; const char *method; } cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD" },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD" },
		{ "HTTP/1.1 200 OK\r\n\r\n", "HEAD" },
		{ "HTTP/1.1 204 No Content\r\n\r\n", "DELETE" },
		{ "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", "GET" },
		{ "HTTP/1.1 100 Continue\r\n\r\n", "POST" },
		{ "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = presp(cases[i].resp, cases[i].method);
		CHECK(rc == (int)strlen(cases[i].resp), "case %zu: rc %d", i, rc);
		CHECK(rs.body == HTTP_BODY_NONE, "case %zu: body %d, want NONE", i, rs.body);
		CHECK(rs.keep_alive, "case %zu: bodiless response must not close", i);
	}
	CHECK(presp("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", "GET") > 0 && rs.content_length == 99,
	      "declared CL is still reported for 304");
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEADX") > 0 && rs.body == HTTP_BODY_LENGTH,
	      "only HEAD exactly suppresses the body");
	CHECK(presp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "GET") > 0, "101 parses");
	CHECK(rs.body == HTTP_BODY_NONE && !rs.keep_alive, "after 101 the connection is not HTTP any more");
}

TEST(resp_close_delimited)
{
	CHECK(presp("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", "GET") > 0, "parse");
	CHECK(rs.body == HTTP_BODY_EOF, "no CL/TE: read until close, got %d", rs.body);
	CHECK(!rs.keep_alive, "close-delimited cannot keep the connection");
	CHECK(presp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", "GET") > 0 && rs.body == HTTP_BODY_EOF && !rs.keep_alive,
	      "keep-alive token cannot rescue a close-delimited body");
	CHECK(presp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n", "GET") > 0 && rs.keep_alive,
	      "1.0 keep-alive with CL");
	CHECK(presp("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", "GET") > 0 && !rs.keep_alive, "1.0 default close");
	CHECK(presp("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", "GET") > 0 && !rs.keep_alive,
	      "1.1 Connection: close");
}

TEST(resp_status_line_variants)
{
	CHECK(presp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET") > 0 && rs.status == 200, "no reason, no SP");
	CHECK(presp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET") > 0, "empty reason");
	CHECK(presp("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n", "GET") > 0 && rs.status == 429, "429");
	CHECK(presp("HTTP/1.1 599 x\r\nContent-Length: 0\r\n\r\n", "GET") > 0, "599 allowed");
	static const char *bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n", "HTTP/1.1 600 x\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/2 200\r\n\r\n", "HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1 200 O\x01K\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(presp(bad[i], "GET") == -502, "bad response %zu must be 502, got %d", i, presp(bad[i], "GET"));
}

TEST(resp_limits_and_incremental)
{
	struct http_limits lim = { .max_head_bytes = 30, .max_body_bytes = 10 };
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	CHECK(http_parse_response(s, strlen(s), &lim, "GET", 3, &rs) == -502, "head over limit is 502");
	lim.max_head_bytes = 100;
	const char *b = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
	CHECK(http_parse_response(b, strlen(b), &lim, "GET", 3, &rs) == -502, "CL over max_body is 502");
	int whole = http_parse_response(s, strlen(s), NULL, "GET", 3, &rs);
	CHECK(whole == (int)strlen(s), "whole %d", whole);
	for (size_t k = 0; k < strlen(s); k++)
		CHECK(http_parse_response(s, k, NULL, "GET", 3, &rs) == 0, "prefix %zu must need more", k);
	/* Two responses back to back (keep-alive). */
	const char *two = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	int r1 = presp(two, "POST");
	CHECK(r1 == 25 && rs.status == 100, "interim response first: %d", r1);
	int r2 = http_parse_response(two + r1, strlen(two) - (size_t)r1, NULL, "POST", 4, &rs);
	CHECK(r2 > 0 && rs.status == 200 && rs.body == HTTP_BODY_LENGTH, "then the final response: %d", r2);
}

/* ---- chunked decoder -------------------------------------------------- */

struct sink { char buf[4096]; size_t len; int calls; int abort_after; };

static int sink_fn(void *arg, const char *d, size_t n)
{
	struct sink *s = arg;
	s->calls++;
	if (s->abort_after && s->calls >= s->abort_after)
		return -ECANCELED;
	if (n > sizeof(s->buf) - s->len)
		return -ENOBUFS;
	memcpy(s->buf + s->len, d, n);
	s->len += n;
	return 0;
}

/* Feed in pieces of `step` bytes (0 = whole). Returns the total consumed or
 * the first error. */
static ssize_t chunk_run(const char *in, size_t n, size_t step, uint64_t max_body, size_t max_tr,
			 struct sink *s, bool *done)
{
	struct http_chunked c;
	http_chunked_init(&c, max_body, max_tr);
	size_t off = 0;
	memset(s, 0, offsetof(struct sink, abort_after));
	while (off < n && !http_chunked_done(&c)) {
		size_t k = step ? (n - off < step ? n - off : step) : n - off;
		ssize_t rc = http_chunked_feed(&c, in + off, k, sink_fn, s);
		if (rc < 0)
			return rc;
		if ((size_t)rc != k && !http_chunked_done(&c))
			return -9999;   /* must consume everything until done */
		off += (size_t)rc;
	}
	*done = http_chunked_done(&c);
	return (ssize_t)off;
}

#define STRN(s) s, sizeof(s) - 1

TEST(chunked_basic_and_stops_at_end)
{
	static const char in[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	struct sink s;
	bool done = false;
	ssize_t rc = chunk_run(STRN(in), 0, UINT64_MAX, 0, &s, &done);
	CHECK(rc == 26, "consumed %zd, want 26 (stop at the end of the message)", rc);
	CHECK(done, "done after the last chunk");
	CHECK(s.len == 11 && memcmp(s.buf, "hello world", 11) == 0, "payload \"%.*s\"", (int)s.len, s.buf);
	struct http_chunked c;
	http_chunked_init(&c, UINT64_MAX, 0);
	CHECK(http_chunked_feed(&c, STRN(in), sink_fn, &s) == 26, "single feed stops at 26");
	CHECK(http_chunked_feed(&c, "x", 1, sink_fn, &s) == 0, "after done nothing more is consumed");
}

TEST(chunked_extensions_and_trailers)
{
	static const char in[] = "a;name=val;q=\"x y\"\r\n0123456789\r\n0;last\r\nX-Checksum: abc\r\nX-Other:\r\n\r\nNEXT";
	struct sink s;
	bool done = false;
	ssize_t rc = chunk_run(STRN(in), 0, UINT64_MAX, 1024, &s, &done);
	CHECK(rc == (ssize_t)(sizeof(in) - 1 - 4), "consumed %zd", rc);
	CHECK(done && s.len == 10 && memcmp(s.buf, "0123456789", 10) == 0, "payload");
	CHECK(chunk_run(STRN(in), 0, UINT64_MAX, 10, &s, &done) == -400, "trailers over max_trailer_bytes are refused");
	CHECK(chunk_run(STRN(in), 0, UINT64_MAX, 0, &s, &done) == -400, "max_trailer 0 refuses trailers");
	CHECK(chunk_run(STRN("0\r\n\r\n"), 0, UINT64_MAX, 0, &s, &done) == 5 && done, "empty body with no trailers and limit 0");
	CHECK(chunk_run(STRN("A\r\n0123456789\r\nF\r\n0123456789abcde\r\n0\r\n\r\n"), 0, UINT64_MAX, 0, &s, &done) > 0 && s.len == 25,
	      "uppercase hex sizes");
	CHECK(chunk_run(STRN("000a\r\n0123456789\r\n0000\r\n\r\n"), 0, UINT64_MAX, 0, &s, &done) > 0 && s.len == 10, "leading zeros");
}

TEST(chunked_every_step_same_result)
{
	static const char in[] = "4;x=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
	struct sink whole, piece;
	bool done = false;
	ssize_t rw = chunk_run(STRN(in), 0, UINT64_MAX, 64, &whole, &done);
	CHECK(rw == (ssize_t)sizeof(in) - 1 && done, "whole: %zd", rw);
	CHECK(whole.len == 23 && memcmp(whole.buf, "Wikipedia in\r\n\r\nchunks.", 23) == 0, "payload");
	for (size_t step = 1; step < sizeof(in); step++) {
		ssize_t r = chunk_run(STRN(in), step, UINT64_MAX, 64, &piece, &done);
		CHECK(r == rw && done, "step %zu: consumed %zd", step, r);
		CHECK(piece.len == whole.len && memcmp(piece.buf, whole.buf, whole.len) == 0, "step %zu: payload differs", step);
	}
	/* Split at every point into two feeds. */
	for (size_t cut = 0; cut <= sizeof(in) - 1; cut++) {
		struct http_chunked c;
		struct sink s = { .len = 0 };
		http_chunked_init(&c, UINT64_MAX, 64);
		ssize_t a = http_chunked_feed(&c, in, cut, sink_fn, &s);
		ssize_t b = http_chunked_feed(&c, in + cut, sizeof(in) - 1 - cut, sink_fn, &s);
		CHECK(a == (ssize_t)cut && a + b == rw && http_chunked_done(&c), "cut %zu: %zd + %zd", cut, a, b);
		CHECK(s.len == whole.len && memcmp(s.buf, whole.buf, s.len) == 0, "cut %zu: payload differs", cut);
	}
}

TEST(chunked_malformed)
{
	static const struct { const char *why; const char *in; size_t len; int want; } cases[] = {
#define C(why, s, w) { why, s, sizeof(s) - 1, w }
		C("0x prefix", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n", -400),
		C("negative size", "-1\r\nx\r\n0\r\n\r\n", -400),
		C("plus sign", "+1\r\nx\r\n0\r\n\r\n", -400),
		C("17 hex digits", "10000000000000000\r\n", -400),
		C("17 digits with leading zeros", "00000000000000001\r\nx\r\n0\r\n\r\n", -400),
		C("empty size line", "\r\nx\r\n0\r\n\r\n", -400),
		C("space before size", " 1\r\nx\r\n0\r\n\r\n", -400),
		C("space after size", "1 \r\nx\r\n0\r\n\r\n", -400),
		C("non-hex size", "g\r\n", -400),
		C("bare LF after size", "1\nx\r\n0\r\n\r\n", -400),
		C("bare CR after size", "1\rx\r\n0\r\n\r\n", -400),
		C("data longer than size", "1\r\nxy\r\n0\r\n\r\n", -400),
		C("data without CRLF", "1\r\nx0\r\n\r\n", -400),
		C("bare LF after data", "1\r\nx\n0\r\n\r\n", -400),
		C("LF-only last chunk", "1\r\nx\r\n0\n\n", -400),
		C("control in extension", "1;a\x01\r\nx\r\n0\r\n\r\n", -400),
		C("bare LF in extension", "1;a\nx\r\n0\r\n\r\n", -400),
		C("NUL in extension", "1;a\0\r\nx\r\n0\r\n\r\n", -400),
		C("trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n", -400),
		C("trailer without name", "0\r\n: b\r\n\r\n", -400),
		C("trailer space before colon", "0\r\nA : b\r\n\r\n", -400),
		C("trailer bare LF", "0\r\nA: b\n\r\n", -400),
		C("trailer NUL", "0\r\nA: \0\r\n\r\n", -400),
		C("trailer starting with space", "0\r\n X: y\r\n\r\n", -400),
		C("trailer starting with bare LF", "0\r\n\nX: y\r\n\r\n", -400),
		C("LF LF after data", "1\r\nx\n\n0\r\n\r\n", -400),
		C("junk then LF after data", "1\r\nxy\n0\r\n\r\n", -400),
		C("final CR not LF", "0\r\n\r\r", -400),
#undef C
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sink s;
		bool done = false;
		ssize_t rc = chunk_run(cases[i].in, cases[i].len, 0, UINT64_MAX, 256, &s, &done);
		CHECK(rc == cases[i].want, "%s: got %zd, want %d", cases[i].why, rc, cases[i].want);
		rc = chunk_run(cases[i].in, cases[i].len, 1, UINT64_MAX, 256, &s, &done);
		CHECK(rc == cases[i].want, "%s (bytewise): got %zd, want %d", cases[i].why, rc, cases[i].want);
	}
}

TEST(chunked_extension_length_bound)
{
	char in[HTTP_CHUNK_EXT_MAX + 64];
	struct sink s;
	bool done = false;
	size_t o = 0;
	in[o++] = '1';
	in[o++] = ';';
	memset(in + o, 'e', HTTP_CHUNK_EXT_MAX - 1);
	o += HTTP_CHUNK_EXT_MAX - 1;
	memcpy(in + o, "\r\nx\r\n0\r\n\r\n", 10);
	CHECK(chunk_run(in, o + 10, 0, UINT64_MAX, 0, &s, &done) == (ssize_t)(o + 10) && done,
	      "extension of exactly HTTP_CHUNK_EXT_MAX bytes (';' included) accepted");
	memmove(in + o + 1, in + o, 10);
	in[o] = 'e';
	CHECK(chunk_run(in, o + 11, 0, UINT64_MAX, 0, &s, &done) == -400, "one byte longer is refused");
}

TEST(chunked_body_limit)
{
	struct sink s;
	bool done = false;
	CHECK(chunk_run(STRN("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), 0, 10, 0, &s, &done) > 0 && done, "exactly max_body");
	CHECK(chunk_run(STRN("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n"), 0, 10, 0, &s, &done) == -413, "sum over max_body");
	CHECK(s.len == 5, "the chunk over the limit is refused before any of it is delivered (%zu)", s.len);
	CHECK(chunk_run(STRN("FFFFFFFFFFFFFFFF\r\n"), 0, UINT64_MAX - 1, 0, &s, &done) == -413, "huge size vs limit");
	CHECK(chunk_run(STRN("1\r\nx\r\n"), 0, 0, 0, &s, &done) == -413, "max_body 0 allows only an empty body");
}

TEST(chunked_callback_abort)
{
	struct http_chunked c;
	struct sink s = { .len = 0, .abort_after = 2 };
	http_chunked_init(&c, UINT64_MAX, 0);
	ssize_t rc = http_chunked_feed(&c, STRN("1\r\na\r\n1\r\nb\r\n0\r\n\r\n"), sink_fn, &s);
	CHECK(rc == -ECANCELED, "callback error returned as is: %zd", rc);
	CHECK(s.len == 1 && !http_chunked_done(&c), "first piece delivered, not done");
	http_chunked_init(&c, UINT64_MAX, 0);
	CHECK(http_chunked_feed(&c, STRN("3\r\nabc\r\n0\r\n\r\n"), NULL, NULL) == 13 && http_chunked_done(&c),
	      "NULL callback just skips payload");
}

static int positive_abort(void *arg, const char *d, size_t n)
{
	return 7;
}

TEST(chunked_callback_positive_value_negated)
{
	struct http_chunked c;
	http_chunked_init(&c, UINT64_MAX, 0);
	CHECK(http_chunked_feed(&c, STRN("1\r\na\r\n0\r\n\r\n"), positive_abort, NULL) == -7, "positive abort value negated");
}

/* ---- forwarded head --------------------------------------------------- */

TEST(format_strips_hop_by_hop)
{
	const char *s = "POST /v1/x HTTP/1.1\r\nHost: api.example\r\nConnection: keep-alive, X-Secret-Hop\r\n"
			"Keep-Alive: timeout=5\r\nX-Secret-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n"
			"Proxy-Connection: keep-alive\r\nExpect: 100-continue\r\nTrailer: X-Sum\r\n"
			"Transfer-Encoding: chunked\r\nAuthorization: Bearer k\r\nX-Keep: yes\r\n\r\n";
	CHECK(preq(s) > 0, "parse");
	char out[512];
	ssize_t n = http_format_request_head(&rq, out, sizeof(out), 42);
	const char *want = "POST /v1/x HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer k\r\nX-Keep: yes\r\n"
			   "Content-Length: 42\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want), "length %zd, want %zu: %.*s", n, strlen(want), (int)(n > 0 ? n : 0), out);
	CHECK(memcmp(out, want, strlen(want)) == 0, "forwarded head: %.*s", (int)n, out);
	/* The forwarded head must itself parse to the same request. */
	struct http_request r2;
	CHECK(http_parse_request(out, (size_t)n, NULL, &r2) == n, "forwarded head parses");
	CHECK(r2.body == HTTP_BODY_LENGTH && r2.content_length == 42 && r2.keep_alive, "re-framed as CL 42");
}

TEST(format_content_length_rules)
{
	char out[256];
	CHECK(preq("GET /a HTTP/1.1\r\nHost: h\r\n\r\n") > 0, "parse");
	ssize_t n = http_format_request_head(&rq, out, sizeof(out), 0);
	CHECK(n == 28 && memcmp(out, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 28) == 0, "GET without body: no CL: %.*s", (int)n, out);
	n = http_format_request_head(&rq, out, sizeof(out), 5);
	CHECK(n > 0 && strstr(out, "Content-Length: 5\r\n\r\n"), "new_len > 0 adds CL");
	CHECK(preq("POST /a HTTP/1.0\r\nContent-Length: 9\r\n\r\n") > 0, "parse");
	n = http_format_request_head(&rq, out, sizeof(out), 0);
	CHECK(n == 39 && memcmp(out, "POST /a HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 39) == 0,
	      "body emptied by redaction keeps CL 0 and the 1.0 version: %.*s", (int)n, out);
	n = http_format_request_head(&rq, out, sizeof(out), UINT64_MAX);
	CHECK(n > 0 && memmem(out, (size_t)n, "Content-Length: 18446744073709551615\r\n", 38), "largest new_len");
}

TEST(format_enospc_exact_boundary)
{
	char out[128];
	CHECK(preq("GET /a HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n") > 0, "parse");
	ssize_t need = http_format_request_head(&rq, out, sizeof(out), 7);
	CHECK(need > 0, "fits in 128");
	memset(out, '#', sizeof(out));
	CHECK(http_format_request_head(&rq, out, (size_t)need, 7) == need, "exact size fits");
	CHECK(out[need] == '#', "no byte written past the end");
	for (ssize_t k = 0; k < need; k++) {
		memset(out, '#', sizeof(out));
		CHECK(http_format_request_head(&rq, out, (size_t)k, 7) == -ENOSPC, "outlen %zd must be -ENOSPC", k);
		CHECK(out[k] == '#', "outlen %zd: wrote past the end", k);
	}
}

TEST(format_connection_cannot_strip_host)
{
	CHECK(preq("GET / HTTP/1.1\r\nHost: h\r\nConnection: Host, X-A\r\nX-A: 1\r\nX-B: 2\r\n\r\n") > 0, "parse");
	char out[256];
	ssize_t n = http_format_request_head(&rq, out, sizeof(out), 0);
	const char *want = "GET / HTTP/1.1\r\nHost: h\r\nX-B: 2\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, (size_t)n) == 0, "Host kept, X-A dropped: %.*s", (int)n, out);
}

TEST(head_may_be_complete_precheck)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s);
	CHECK(http_head_may_be_complete(s, n, 0), "complete head");
	CHECK(!http_head_may_be_complete(s, n - 1, 0), "missing final LF");
	CHECK(!http_head_may_be_complete(s, 17, 0), "only the request line");
	/* Byte by byte with `from` = previous length: true exactly once, at the end. */
	int hits = 0;
	for (size_t k = 1; k <= n; k++) {
		bool r = http_head_may_be_complete(s, k, k - 1);
		hits += r;
		CHECK(!r || k == n, "false alarm at %zu", k);
	}
	CHECK(hits == 1, "the end of head must be seen when it arrives byte by byte (%d)", hits);
	CHECK(http_head_may_be_complete(s, n, n - 1), "marker split across reads is found");
	CHECK(http_head_may_be_complete("GET / HTTP/1.1\nHost: a\n\n", 25, 0), "bare-LF head triggers a parse (to reject it)");
	CHECK(!http_head_may_be_complete("", 0, 0), "empty");
}

TEST(format_many_connection_tokens)
{
	/* More Connection tokens than the fast path holds: same result. */
	char in[2048], out[2048];
	size_t o = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: h\r\nConnection: ");
	for (int i = 0; i < 40; i++)
		o += (size_t)snprintf(in + o, sizeof(in) - o, "%sx-%d", i ? ", " : "", i);
	o += (size_t)snprintf(in + o, sizeof(in) - o, "\r\nX-39: drop\r\nX-0: drop\r\nX-40: keep\r\n\r\n");
	CHECK(http_parse_request(in, o, NULL, &rq) == (int)o, "parse");
	ssize_t n = http_format_request_head(&rq, out, sizeof(out), 0);
	const char *want = "GET / HTTP/1.1\r\nHost: h\r\nX-40: keep\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, (size_t)n) == 0, "40 tokens: %.*s", (int)(n > 0 ? n : 0), out);
	CHECK(preq("GET / HTTP/1.1\r\nHost: h\r\nConnection: x-a,, ,X-B\r\nx-a: 1\r\nX-b: 2\r\nX-c: 3\r\n\r\n") > 0, "parse");
	n = http_format_request_head(&rq, out, sizeof(out), 0);
	want = "GET / HTTP/1.1\r\nHost: h\r\nX-c: 3\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, (size_t)n) == 0, "empty list elements: %.*s", (int)(n > 0 ? n : 0), out);
}

TEST(value_scanner_every_byte_every_position)
{
	/* The word-at-a-time scan must agree with the byte rule for every
	 * byte value at every offset within and across 8-byte words. */
	char buf[128];
	for (int pos = 0; pos < 20; pos++) {
		for (int b = 0; b < 256; b++) {
			size_t o = (size_t)snprintf(buf, sizeof(buf), "GET /p HTTP/1.1\r\nHost: a\r\nX: ");
			memset(buf + o, 'v', 20);
			buf[o + (size_t)pos] = (char)b;
			o += 20;
			memcpy(buf + o, "\r\n\r\n", 4);
			o += 4;
			bool valid = b == '\t' || (b >= 0x20 && b != 0x7f);
			if (b == ' ' || b == '\t')
				valid = true;
			int rc = http_parse_request(buf, o, NULL, &rq);
			CHECK(valid ? rc == (int)o : rc == -400, "value byte 0x%02x at %d: rc %d", b, pos, rc);
			/* Same for the request target. */
			o = (size_t)snprintf(buf, sizeof(buf), "GET /");
			memset(buf + o, 't', 20);
			buf[o + (size_t)pos] = (char)b;
			o += 20;
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, " HTTP/1.1\r\nHost: a\r\n\r\n");
			rc = http_parse_request(buf, o, NULL, &rq);
			bool tvalid = b > 0x20 && b < 0x7f;
			CHECK(tvalid ? rc == (int)o : rc == -400, "target byte 0x%02x at %d: rc %d", b, pos, rc);
		}
	}
}

TEST(req_te_obfuscation_variants)
{
	/* Classic TE.TE / CL.TE desync payloads (PortSwigger's list and
	 * friends), each with a Content-Length too: none may parse. */
	static const char *te[] = {
		"Transfer-Encoding: xchunked", "Transfer-Encoding : chunked", "Transfer-Encoding:\x0b" "chunked",
		"Transfer-Encoding: chunked\x0b", "Transfer-Encoding: \x0c" "chunked", " Transfer-Encoding: chunked",
		"X: X\nTransfer-Encoding: chunked", "Transfer-Encoding\r\n : chunked", "Transfer-Encoding: chunk",
		"Transfer-Encoding: chunked\r\nTransfer-encoding: x",
		"Transfer-Encoding: chunked\x00", "Transfer-Encoding: \"chunked\"", "Transfer-Encoding: chunked, cow",
		"Transfer-Encoding: cow, chunked", "Transfer-Encoding: chunked\r", "Transfer-Encoding: identity, chunked",
	};
	char buf[512];
	for (size_t i = 0; i < sizeof(te) / sizeof(te[0]); i++) {
		size_t tl = strlen(te[i]);
		if (i == 10)
			tl++;   /* include the NUL */
		size_t o = (size_t)snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n");
		memcpy(buf + o, te[i], tl);
		o += tl;
		memcpy(buf + o, "\r\n\r\n", 4);
		o += 4;
		int rc = http_parse_request(buf, o, NULL, &rq);
		CHECK(rc == -400 || rc == -501, "variant %zu must be refused, got %d", i, rc);
	}
	/* Transfer_Encoding is just another field name (forwarded as is): it
	 * must never set the framing. */
	CHECK(preq("POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n") > 0 && rq.body == HTTP_BODY_NONE,
	      "an unknown header never sets the framing");
}
