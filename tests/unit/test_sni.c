/* sni: ClientHellos made by OpenSSL itself are read correctly, every
 * truncation asks for more bytes, and malformed or hostile hellos are
 * refused without reading out of bounds (run under SAN=1 to prove it). */
#include <openssl/ssl.h>
#include "check.h"
#include "net/sni.h"

/* A real ClientHello from OpenSSL for host (NULL = no SNI). */
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

TEST(reads_sni_from_real_hello)
{
	uint8_t buf[4096];
	char name[256];
	size_t n = make_hello("API.OpenAI.com", buf, sizeof(buf));
	CHECK(n > 100, "no hello produced");
	CHECK(sni_parse(buf, n, name, sizeof(name)) == SNI_FOUND, "status");
	CHECK(!strcmp(name, "api.openai.com"), "name %s (expected lowercased)", name);
}

TEST(hello_without_sni)
{
	uint8_t buf[4096];
	char name[256];
	size_t n = make_hello(NULL, buf, sizeof(buf));
	CHECK(sni_parse(buf, n, name, sizeof(name)) == SNI_ABSENT, "hello without SNI not ABSENT");
}

TEST(every_truncation_needs_more)
{
	uint8_t buf[4096];
	char name[256];
	size_t n = make_hello("api.anthropic.com", buf, sizeof(buf));
	for (size_t i = 0; i < n; i++) {
		enum sni_status st = sni_parse(buf, i, name, sizeof(name));
		CHECK(st == SNI_NEED_MORE, "prefix of %zu/%zu bytes gave %d", i, n, st);
	}
}

TEST(hello_split_across_records)
{
	uint8_t buf[4096], two[4200];
	char name[256];
	size_t n = make_hello("api.openai.com", buf, sizeof(buf));
	size_t body = n - 5, first = body / 3;
	/* record 1: header + first bytes; record 2: the rest */
	memcpy(two, buf, 5);
	two[3] = (uint8_t)(first >> 8), two[4] = (uint8_t)first;
	memcpy(two + 5, buf + 5, first);
	memcpy(two + 5 + first, buf, 5);
	two[5 + first + 3] = (uint8_t)((body - first) >> 8);
	two[5 + first + 4] = (uint8_t)(body - first);
	memcpy(two + 10 + first, buf + 5 + first, body - first);
	CHECK(sni_parse(two, n + 5, name, sizeof(name)) == SNI_FOUND, "split hello not reassembled");
	CHECK(!strcmp(name, "api.openai.com"), "name %s", name);
	for (size_t i = 0; i < n + 5; i++)
		CHECK(sni_parse(two, i, name, sizeof(name)) == SNI_NEED_MORE, "split prefix %zu", i);
}

TEST(not_tls)
{
	char name[256];
	const char *http = "GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	CHECK(sni_parse((const uint8_t *)http, strlen(http), name, sizeof(name)) == SNI_NOT_TLS, "HTTP taken as TLS");
	const uint8_t ssh[] = "SSH-2.0-OpenSSH_9.2\r\n";
	CHECK(sni_parse(ssh, sizeof(ssh) - 1, name, sizeof(name)) == SNI_NOT_TLS, "SSH taken as TLS");
	const uint8_t alert[] = { 21, 3, 3, 0, 2, 2, 40 };
	CHECK(sni_parse(alert, sizeof(alert), name, sizeof(name)) == SNI_NOT_TLS, "alert record taken as hello");
}

TEST(malformed_lengths_refused)
{
	uint8_t buf[4096], bad[4096];
	char name[256];
	size_t n = make_hello("api.openai.com", buf, sizeof(buf));
	/* Flip every length-ish byte in turn: the parser must never claim a
	 * different valid name, never crash, and never read past n. */
	for (size_t i = 5; i < n; i++) {
		for (int delta = 1; delta < 256; delta += 127) {
			memcpy(bad, buf, n);
			bad[i] = (uint8_t)(bad[i] + delta);
			enum sni_status st = sni_parse(bad, n, name, sizeof(name));
			if (st == SNI_FOUND)
				CHECK(strlen(name) <= 253 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == strlen(name),
				      "corrupt hello at %zu yielded invalid name", i);
		}
	}
	/* Handshake type other than ClientHello */
	memcpy(bad, buf, n);
	bad[5] = 2;
	CHECK(sni_parse(bad, n, name, sizeof(name)) == SNI_MALFORMED, "ServerHello accepted");
	/* Zero-length record */
	const uint8_t empty[] = { 22, 3, 1, 0, 0 };
	CHECK(sni_parse(empty, sizeof(empty), name, sizeof(name)) == SNI_MALFORMED, "empty record");
	/* Declared handshake longer than the bound */
	const uint8_t huge[] = { 22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff };
	CHECK(sni_parse(huge, sizeof(huge), name, sizeof(name)) == SNI_MALFORMED, "oversized hello");
}

/* Hand-built minimal hello whose server_name is exactly name. */
static size_t hand_hello(const char *nm, uint8_t *h)
{
	size_t nl = strlen(nm), p = 0;
	size_t ext_len = 4 + 2 + 1 + 2 + nl;
	size_t body = 2 + 32 + 1 + 2 + 2 + 1 + 1 + 2 + ext_len;
	h[p++] = 22; h[p++] = 3; h[p++] = 1;
	h[p++] = (uint8_t)((body + 4) >> 8); h[p++] = (uint8_t)(body + 4);
	h[p++] = 1; h[p++] = 0; h[p++] = (uint8_t)(body >> 8); h[p++] = (uint8_t)body;
	h[p++] = 3; h[p++] = 3; memset(h + p, 0, 32); p += 32;
	h[p++] = 0;                              /* session id */
	h[p++] = 0; h[p++] = 2; h[p++] = 0x13; h[p++] = 0x01; /* one suite */
	h[p++] = 1; h[p++] = 0;                  /* compression */
	h[p++] = (uint8_t)(ext_len >> 8); h[p++] = (uint8_t)ext_len;
	h[p++] = 0; h[p++] = 0;                  /* server_name */
	h[p++] = (uint8_t)((ext_len - 4) >> 8); h[p++] = (uint8_t)(ext_len - 4);
	h[p++] = (uint8_t)((nl + 3) >> 8); h[p++] = (uint8_t)(nl + 3);
	h[p++] = 0; h[p++] = (uint8_t)(nl >> 8); h[p++] = (uint8_t)nl;
	memcpy(h + p, nm, nl); p += nl;
	return p;
}

TEST(hostile_names_are_bad_names)
{
	/* Refused as clienthello_invalid by the agent, never taken as "no SNI". */
	const char *names[] = { "a b.com", "x.com\nHost:", "a..com", ".a.com", "\x01\x02", "", ".",
				"api.openai.com.." };
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		uint8_t h[512];
		char name[256];
		size_t p = hand_hello(names[k], h);
		enum sni_status st = sni_parse(h, p, name, sizeof(name));
		CHECK(st == SNI_BAD_NAME, "hostile name #%zu gave status %d", k, st);
	}
}

TEST(trailing_dot_and_case_normalised)
{
	uint8_t h[512], buf[4096];
	char name[256];
	size_t p = hand_hello("API.OpenAI.COM.", h);
	CHECK(sni_parse(h, p, name, sizeof(name)) == SNI_FOUND, "absolute name refused");
	CHECK(!strcmp(name, "api.openai.com"), "absolute name read as '%s'", name);
	/* What OpenSSL itself sends for an absolute name (Python's ssl does the same). */
	size_t n = make_hello("api.openai.com.", buf, sizeof(buf));
	CHECK(sni_parse(buf, n, name, sizeof(name)) == SNI_FOUND && !strcmp(name, "api.openai.com"),
	      "real hello for api.openai.com. read as '%s'", name);
}

TEST(host_normalisation)
{
	char out[256];
	CHECK(sni_host_normalise("Api.OpenAI.com.", 15, out, sizeof(out)) == 0 && !strcmp(out, "api.openai.com"),
	      "normalise gave '%s'", out);
	CHECK(sni_host_normalise("a.com..", 7, out, sizeof(out)) == -1, "two trailing dots accepted");
	CHECK(sni_host_normalise(".", 1, out, sizeof(out)) == -1, "root name accepted");
	CHECK(sni_host_normalise("a.com", 5, out, 5) == -1, "name longer than the output accepted");
	CHECK(sni_authority_host("API.openai.com:443", 18, out, sizeof(out)) == 0 && !strcmp(out, "api.openai.com"),
	      "authority with port gave '%s'", out);
	CHECK(sni_authority_host("api.openai.com.:8443", 20, out, sizeof(out)) == 0 && !strcmp(out, "api.openai.com"),
	      "absolute authority with port gave '%s'", out);
	CHECK(sni_authority_host("api.openai.com:", 15, out, sizeof(out)) == -1, "empty port accepted");
	CHECK(sni_authority_host("[::1]:443", 9, out, sizeof(out)) == -1, "IPv6 literal taken as a name");
	CHECK(sni_authority_host("a.com:x", 7, out, sizeof(out)) == -1, "non-numeric port accepted");
}
