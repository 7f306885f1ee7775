/* proxyhead: what a client says to its proxy is read exactly (host
 * normalised, port and head length right), every hostile variant is
 * refused with the status the client gets, and the agent's own CONNECT
 * and the proxy's answer are framed so not one tunnel byte is taken. */
#include "check.h"
#include "http.h"
#include "proxy/proxyhead.h"

static int parse(const char *s, struct proxyhead *ph)
{
	return proxyhead_parse(s, strlen(s), 16384, ph);
}

TEST(connect_is_read_and_normalised)
{
	struct proxyhead ph;
	const char *s = "CONNECT API.OpenAI.com.:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
			"Proxy-Authorization: Basic dTpw\r\n\r\n\x16\x03\x01";
	int hl = parse(s, &ph);
	CHECK(hl > 0 && (size_t)hl == strlen(s) - 3, "head length %d", hl);
	CHECK(ph.kind == PROXYHEAD_CONNECT && ph.port == 443 && !ph.host_is_ip, "kind/port");
	CHECK(!strcmp(ph.host, "api.openai.com"), "host %s (want lower-case, no trailing dot)", ph.host);
	CHECK(ph.auth && ph.auth_len == 10 && !memcmp(ph.auth, "Basic dTpw", 10), "auth");
	CHECK(ph.head_len == (size_t)hl, "head_len");
}

TEST(connect_http10_without_host)
{
	struct proxyhead ph;
	/* Python's http.client tunnels with HTTP/1.0 and no Host. */
	CHECK(parse("CONNECT api.openai.com:443 HTTP/1.0\r\n\r\n", &ph) > 0, "1.0 CONNECT refused");
	CHECK(!ph.auth, "auth without header");
}

TEST(connect_ip_literals)
{
	struct proxyhead ph;
	CHECK(parse("CONNECT 10.1.2.3:8443 HTTP/1.1\r\nHost: x\r\n\r\n", &ph) > 0 && ph.host_is_ip &&
	      ph.port == 8443 && !strcmp(ph.host, "10.1.2.3"), "IPv4 %s", ph.host);
	CHECK(parse("CONNECT [2001:DB8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n", &ph) > 0 && ph.host_is_ip &&
	      !strcmp(ph.host, "2001:db8::1"), "IPv6 %s", ph.host);
}

TEST(incomplete_heads_ask_for_more)
{
	struct proxyhead ph;
	const char *s = "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n";
	for (size_t i = 0; i < strlen(s); i++)
		CHECK(proxyhead_parse(s, i, 16384, &ph) == 0, "prefix of %zu bytes not 'more'", i);
}

TEST(hostile_requests_refused)
{
	static const char *const bad[] = {
		"CONNECT api.open!ai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com: HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:99999 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:0 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:000443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:+443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:44a3 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT a..b:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT .:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT 1.2.3:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT [zz::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT u@api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT /api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"CONNECT api.openai.com:443 HTTP/1.1\nHost: x\n\n",
		"CONNECT  api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n",
		"GET http://u:p@api.openai.com/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET ftp://api.openai.com/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http:/api.openai.com/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://api.openai.com:http/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET 1http://api.openai.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
	};
	struct proxyhead ph;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i], &ph);
		CHECK(r == -400, "case %zu accepted or wrong status %d: %s", i, r, bad[i]);
	}
	/* A label of 64 bytes, a name of 254. */
	char name[400];
	snprintf(name, sizeof(name), "CONNECT %064d.example:443 HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	CHECK(parse(name, &ph) == -400, "64-byte label accepted");
}

TEST(overlong_head_is_431)
{
	static char big[20000];
	struct proxyhead ph;
	memcpy(big, "CONNECT ", 8);
	memset(big + 8, 'a', sizeof(big) - 8);
	CHECK(proxyhead_parse(big, sizeof(big), 16384, &ph) == -431, "overlong not 431");
}

TEST(absolute_form_forward)
{
	struct proxyhead ph;
	CHECK(parse("POST http://API.openai.com/v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
		    "Content-Length: 2\r\n\r\n{}", &ph) > 0, "absolute-form refused");
	CHECK(ph.kind == PROXYHEAD_FORWARD && ph.port == 80 && !strcmp(ph.host, "api.openai.com"), "%s:%u",
	      ph.host, ph.port);
	CHECK(parse("GET HTTPS://example.org:8443?x HTTP/1.1\r\nHost: x\r\n\r\n", &ph) > 0 && ph.port == 8443 &&
	      !strcmp(ph.host, "example.org"), "https with port: %s:%u", ph.host, ph.port);
}

TEST(plain_parser_still_refuses_proxy_forms)
{
	struct http_request req;
	const char *s = "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK(http_parse_request(s, strlen(s), NULL, &req) == -400, "origin server parser took CONNECT");
	s = "GET http://api.openai.com/ HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK(http_parse_request(s, strlen(s), NULL, &req) == -400, "origin server parser took absolute-form");
}

TEST(connect_request_is_framed)
{
	char out[512];
	int n = proxyhead_connect_request(out, sizeof(out), "api.openai.com", 443, "Basic dTpw", 10);
	CHECK(n > 0 && (size_t)n == strlen(out), "length %d", n);
	CHECK(!strcmp(out, "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
			   "Proxy-Authorization: Basic dTpw\r\n\r\n"), "request %s", out);
	n = proxyhead_connect_request(out, sizeof(out), "2001:db8::1", 443, NULL, 0);
	CHECK(n > 0 && !strncmp(out, "CONNECT [2001:db8::1]:443 HTTP/1.1\r\n", 36), "IPv6 %s", out);
	CHECK(proxyhead_connect_request(out, 40, "api.openai.com", 443, NULL, 0) == -ENOSPC, "no ENOSPC");
	/* And what the agent sends, a client-side parse reads back the same. */
	struct proxyhead ph;
	n = proxyhead_connect_request(out, sizeof(out), "api.openai.com", 8443, NULL, 0);
	CHECK(proxyhead_parse(out, (size_t)n, 16384, &ph) == n && ph.port == 8443, "round trip");
}

TEST(connect_reply_status_and_length)
{
	int status = 0;
	const char *ok = "HTTP/1.1 200 Connection established\r\n\r\n";
	CHECK(proxyhead_connect_reply(ok, strlen(ok), 8192, &status, NULL) == (int)strlen(ok) && status == 200,
	      "200 reply");
	CHECK(proxyhead_connect_reply(ok, 10, 8192, &status, NULL) == 0, "prefix not 'more'");
	const char *deny = "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n";
	CHECK(proxyhead_connect_reply(deny, strlen(deny), 8192, &status, NULL) > 0 && status == 407, "407");
	CHECK(proxyhead_connect_reply("SSH-2.0-x\r\n\r\n", 13, 8192, &status, NULL) == -EPROTO, "garbage");
	static char big[9000];
	memset(big, 'a', sizeof(big));
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	CHECK(proxyhead_connect_reply(big, sizeof(big), 8192, &status, NULL) == -EPROTO, "endless head");
}

TEST(forwarded_request_framing)
{
	struct proxyhead ph;
	char out[512];
	const char *s = "POST http://example.org/x HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5\r\n\r\nhello";
	int hl = parse(s, &ph);
	CHECK(hl > 0 && ph.body_len == 5, "body_len %llu", (unsigned long long)ph.body_len);
	int n = proxyhead_close_after(s, (size_t)hl, out, sizeof(out));
	CHECK(n == hl + 19, "rewritten length %d", n);
	out[n] = 0;
	CHECK(!strcmp(out, "POST http://example.org/x HTTP/1.1\r\nHost: example.org\r\nContent-Length: 5\r\n"
			   "Connection: close\r\n\r\n"), "rewritten %s", out);
	CHECK(parse("POST http://example.org/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &ph) ==
	      -411, "chunked body to forward not refused");
	int64_t body = 7;
	int status;
	const char *r = "HTTP/1.1 407 No\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK(proxyhead_connect_reply(r, strlen(r), 8192, &status, &body) > 0 && body == -1, "chunked refusal");
	r = "HTTP/1.1 403 No\r\nContent-Length: 12\r\n\r\n";
	CHECK(proxyhead_connect_reply(r, strlen(r), 8192, &status, &body) > 0 && body == 12, "CL refusal");
}
