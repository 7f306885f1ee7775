/* libFuzzer target for agent/proxy/h2.c: the HTTP/2 frames a client sends.
 * The target writes the connection preface and an empty SETTINGS frame
 * itself (random bytes would never find them), then feeds the input as
 * the client's frames, split at points the input chooses. Besides "no
 * crash / no sanitizer report / no leak" it checks, aborting otherwise:
 *  - h2_serve answers 0 or 1 (never another value);
 *  - every request handed to the exchange is complete for the agent's
 *    own HTTP/1.1 parser: refused by it (the agent answers 400), or with
 *    its head within max_head_bytes, its body exactly Content-Length
 *    bytes, a Host, and never CONNECT: what is inspected and forwarded is
 *    one unambiguous message (no smuggling through h2);
 *  - a refused stream's head parses too (the error goes out in the
 *    provider's shape) and carries no body.
 * Input: byte 0 = read size, byte 1 = which answer the exchange writes,
 * the rest = frames. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/h2.h"
#include "http.h"

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

struct fz {
	const uint8_t *d;
	size_t n, off, step;
	uint8_t answer;
	bool sent_preface;
};

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";

static uint64_t now_ms(void)
{
	return 0;
}

static ssize_t fz_read(void *arg, void *buf, size_t len, uint32_t timeout_ms, int wake_fd)
{
	struct fz *f = arg;
	(void)timeout_ms;
	(void)wake_fd;
	if (!f->sent_preface) {
		f->sent_preface = true;
		memcpy(buf, PREFACE, sizeof(PREFACE) - 1);
		return sizeof(PREFACE) - 1;
	}
	size_t k = f->n - f->off;
	if (!k)
		return 0;
	if (k > f->step)
		k = f->step;
	if (k > len)
		k = len;
	memcpy(buf, f->d + f->off, k);
	f->off += k;
	return (ssize_t)k;
}

static int fz_write(void *arg, const void *buf, size_t len)
{
	(void)arg; (void)buf; (void)len;
	return 0;
}

static const struct h2_limits LIM = {
	.max_concurrent_streams = 8, .max_header_list_bytes = 4096, .max_resets_per_sec = 20,
	.max_continuations = 4, .header_table_size = 4096, .max_head_bytes = 4096, .max_headers = 40,
	.max_body_bytes = 65536, .idle_timeout_ms = 1000,
};

/* On a stream's worker thread, concurrently with other streams'. */
static int fz_exchange(void *arg, struct h2_stream *h2, const char *req, size_t len, int refuse)
{
	struct http_request r;
	static const char *answers[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
		"7\r\ndata: x\r\n0\r\n\r\n",
		"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
	};
	struct fz *f = arg;
	struct http_limits lim = { .max_head_bytes = LIM.max_head_bytes, .max_headers = HTTP_MAX_HEADERS,
				   .max_body_bytes = LIM.max_body_bytes };
	int hl = http_parse_request(req, len, &lim, &r);

	/* 400: found malformed by nghttp2 (already reset), 405: a CONNECT */
	REQUIRE(refuse == 0 || refuse == 400 || refuse == 405 || refuse == 413 || refuse == 431 || refuse == 503);
	/* a target the HTTP/1.1 parser refuses gets a 400 from the agent:
	 * fine; what it accepts must be framed exactly */
	REQUIRE(hl != 0);
	if (hl < 0)
		goto answer;
	REQUIRE(r.host != NULL && r.minor == 1 &&
		(refuse == 405 || !(r.method_len == 7 && !memcmp(r.method, "CONNECT", 7))));
	if (refuse)
		REQUIRE((size_t)hl == len);
	else if (r.body == HTTP_BODY_LENGTH)
		REQUIRE((size_t)hl + r.content_length == len);
	else
		REQUIRE(r.body == HTTP_BODY_NONE && (size_t)hl == len);
answer:;
	const char *a = answers[f->answer % 4];
	size_t al = strlen(a), cut = f->answer / 4 % (al + 1);
	if (h2_respond(h2, a, cut) == 0)
		h2_respond(h2, a + cut, al - cut);
	return 0;
}

/* A small budget, so the 503 path is fuzzed too; all of it must come
 * back by the end of the connection. */
static int64_t charged;

static int fz_charge(void *arg, int64_t delta)
{
	(void)arg;
	if (delta > 0 && charged + delta > 3000)
		return -ENOBUFS;
	charged += delta;
	REQUIRE(charged >= 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct fz f = { .d = data + 2, .n = size - 2, .step = 1 + data[0] % 64, .answer = data[1] };
	struct h2_io io = { &f, fz_read, fz_write, now_ms, fz_exchange, fz_charge, NULL, NULL, NULL, false };
	bool abuse;
	char why[160];
	int rc = h2_serve(&LIM, &io, &abuse, why, sizeof(why));
	REQUIRE(rc == 0 || rc == 1);
	REQUIRE(charged == 0);
	return 0;
}
