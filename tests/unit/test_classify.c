/* classify: the first flight of a redirected connection is either a
 * complete ClientHello with a valid name, a complete plain-HTTP head, more
 * to wait for, or a refusal with the right reason; never "unknown". */
#include <openssl/ssl.h>
#include "check.h"
#include "net/classify.h"

static size_t make_hello(const char *host, uint8_t *out, size_t outlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	if (host)
		SSL_set_tlsext_host_name(ssl, host);
	SSL_connect(ssl);
	int n = BIO_read(wb, out, (int)outlen);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return n > 0 ? (size_t)n : 0;
}

static void cls(const void *buf, size_t len, bool final, bool full, struct classify_result *r)
{
	classify_first_flight(buf, len, final, full, r);
}

TEST(hello_with_sni_is_tls_with_normalised_name)
{
	uint8_t buf[4096];
	struct classify_result r;
	size_t n = make_hello("API.OpenAI.com.", buf, sizeof(buf));
	cls(buf, n, false, false, &r);
	CHECK(r.kind == CLASSIFY_TLS && !strcmp(r.name, "api.openai.com"), "kind %d name '%s'", r.kind, r.name);
}

TEST(every_prefix_waits_then_times_out)
{
	uint8_t buf[4096];
	struct classify_result r;
	size_t n = make_hello("api.openai.com", buf, sizeof(buf));
	for (size_t i = 0; i < n; i++) {
		cls(buf, i, false, false, &r);
		CHECK(r.kind == CLASSIFY_NEED_MORE, "prefix %zu: kind %d", i, r.kind);
		cls(buf, i, true, false, &r);
		CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_CLIENTHELLO_TIMEOUT,
		      "prefix %zu at the deadline: kind %d reason %d", i, r.kind, r.reason);
		CHECK(r.tls == (i > 0) && !r.http, "prefix %zu: tls %d http %d", i, r.tls, r.http);
	}
}

TEST(hello_without_sni_refused)
{
	uint8_t buf[4096];
	struct classify_result r;
	size_t n = make_hello(NULL, buf, sizeof(buf));
	cls(buf, n, false, false, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_NO_SNI && r.tls, "kind %d reason %d", r.kind, r.reason);
}

TEST(malformed_or_oversized_hello_refused)
{
	uint8_t buf[4096];
	struct classify_result r;
	size_t n = make_hello("api.openai.com", buf, sizeof(buf));
	buf[5] = 2;                                /* a ServerHello, not a ClientHello */
	cls(buf, n, false, false, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_CLIENTHELLO_INVALID && r.tls, "reason %d", r.reason);
	n = make_hello("api.openai.com", buf, sizeof(buf));
	cls(buf, n / 2, false, true, &r);          /* the peek buffer filled before the hello ended */
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_CLIENTHELLO_INVALID, "full buffer: reason %d", r.reason);
}

TEST(garbage_is_not_tls)
{
	static const char *const junk[] = { "hello", "SSH-2.0-OpenSSH_9.2\r\n", "\x16\x01\x00", "\x00\x01\x02",
					     "get / HTTP/1.1\r\n", "GET\t/ HTTP/1.1\r\n", "AAAAAAAAAAAAAAAAAAAAAA" };
	struct classify_result r;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		cls(junk[i], strlen(junk[i]) ? strlen(junk[i]) : 1, false, false, &r);
		CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_NOT_TLS && !r.tls && !r.http,
		      "junk #%zu: kind %d reason %d tls %d http %d", i, r.kind, r.reason, r.tls, r.http);
	}
}

TEST(plain_http_head_read_without_query)
{
	const char *req = "POST /v1/chat/completions?key=sk-secret HTTP/1.1\r\nHost: API.OpenAI.com:80\r\n"
			  "Content-Length: 5\r\n\r\nhello";
	struct classify_result r;
	for (size_t i = 1; i < strlen(req) - 5; i++) {
		cls(req, i, false, false, &r);
		CHECK(r.kind == CLASSIFY_NEED_MORE, "prefix %zu of the head: kind %d reason %d", i, r.kind, r.reason);
	}
	cls(req, strlen(req), false, false, &r);
	CHECK(r.kind == CLASSIFY_HTTP, "kind %d reason %d", r.kind, r.reason);
	CHECK(!strcmp(r.name, "api.openai.com"), "host '%s'", r.name);
	CHECK(!strcmp(r.method, "POST") && !strcmp(r.path, "/v1/chat/completions"), "%s %s", r.method, r.path);
	CHECK(!strstr(r.path, "secret"), "query kept in the path");
}

TEST(plain_http_incomplete_or_bad_refused_as_http)
{
	struct classify_result r;
	const char *part = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n";
	cls(part, strlen(part), true, false, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_PLAIN_HTTP && r.http && r.http_status == 408,
	      "incomplete head at the deadline: kind %d reason %d status %d", r.kind, r.reason, r.http_status);
	cls(part, strlen(part), false, true, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.http_status == 431, "head over the peek buffer: status %d", r.http_status);
	const char *bad = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
	cls(bad, strlen(bad), false, false, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_PLAIN_HTTP && r.http_status == 400,
	      "two Hosts: kind %d status %d", r.kind, r.http_status);
	const char *nohost = "GET / HTTP/1.0\r\n\r\n";
	cls(nohost, strlen(nohost), false, false, &r);
	CHECK(r.kind == CLASSIFY_HTTP && r.name[0] == 0, "HTTP/1.0 without Host: kind %d name '%s'", r.kind, r.name);
}

TEST(silence_times_out)
{
	struct classify_result r;
	cls("", 0, false, false, &r);
	CHECK(r.kind == CLASSIFY_NEED_MORE, "nothing yet: kind %d", r.kind);
	cls("", 0, true, false, &r);
	CHECK(r.kind == CLASSIFY_REFUSE && r.reason == REASON_CLIENTHELLO_TIMEOUT && !r.tls && !r.http,
	      "silence at the deadline: kind %d reason %d", r.kind, r.reason);
}

TEST(reasons_have_names)
{
	CHECK(reason_name(REASON_NONE) == NULL, "REASON_NONE has a name");
	for (int i = REASON_NONE + 1; i < REASON__COUNT; i++)
		CHECK(reason_name((enum reason)i) && reason_text((enum reason)i), "reason %d unnamed", i);
	CHECK(!strcmp(reason_name(REASON_NO_SNI), "no_sni") && !strcmp(reason_name(REASON_PLAIN_HTTP), "plain_http"),
	      "audit names changed");
}
