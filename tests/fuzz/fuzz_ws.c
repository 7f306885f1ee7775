/* libFuzzer target: the WebSocket frame parser (agent/proxy/ws.c) on hostile
 * bytes from either peer. It must never read out of bounds or hand back a
 * message over its limit, a text message that is not UTF-8, or a control
 * payload over 125 bytes; and the same bytes split in two give the same
 * messages as whole (the parser resumes, it never re-reads). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proxy/ws.h"
#include "utf8.h"

#define MAX_FRAME 4096
#define MAX_MESSAGE 8192

struct sum { uint64_t h; unsigned n; };

static int check_fn(void *arg, enum ws_opcode op, const uint8_t *data, size_t len)
{
	struct sum *s = arg;
	if (len > MAX_MESSAGE)
		abort();
	if ((op & 0x8) && len > WS_CONTROL_MAX)
		abort();
	if (op == WS_TEXT && !utf8_valid(data, len))
		abort();
	if (op == WS_CONT)
		abort();
	s->h = s->h * 1000003u + op;
	for (size_t i = 0; i < len; i++)
		s->h = s->h * 31u + data[i];
	s->n++;
	return 0;
}

static int run(enum ws_peer from, const uint8_t *d, size_t n, size_t cut, struct sum *s, uint16_t *code)
{
	struct ws_parser p;
	int rc;
	memset(s, 0, sizeof(*s));
	ws_parser_init(&p, from, MAX_FRAME, MAX_MESSAGE);
	rc = ws_parser_feed(&p, d, cut, check_fn, s);
	if (!rc)
		rc = ws_parser_feed(&p, d + cut, n - cut, check_fn, s);
	*code = p.close_code;
	ws_parser_free(&p);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* first byte: direction and where to split the rest */
	enum ws_peer from = data[0] & 1 ? WS_FROM_CLIENT : WS_FROM_SERVER;
	const uint8_t *d = data + 1;
	size_t n = size - 1, cut = n ? (data[0] >> 1) % (n + 1) : 0;
	struct sum a, b;
	uint16_t ca, cb;
	int ra = run(from, d, n, n, &a, &ca), rb = run(from, d, n, cut, &b, &cb);
	if (ra != rb || ca != cb || a.h != b.h || a.n != b.n)
		abort();
	return 0;
}
