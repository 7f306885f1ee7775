/* libFuzzer target: gRPC framing (agent/proxy/grpc.c) and the schema-less
 * protobuf walker and rewriter (agent/content/protowalk.c) on hostile
 * bytes. Never a read out of bounds or a message over the limit; the same
 * bytes split in two give the same messages; every message the walker
 * accepts rewrites to itself with no edits, and with every text replaced
 * by "[X]" rewrites to a message that walks again with those texts in the
 * same order. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proxy/grpc.h"
#include "content/protowalk.h"

#define MAX_MSG 8192
#define MAX_EDITS 256

struct sum { uint64_t h; unsigned n; };

struct texts {
	struct protowalk_edit e[MAX_EDITS];
	size_t n;
	unsigned seen;
	const uint8_t *base;
};

static int collect(void *arg, const struct protowalk_field *f)
{
	struct texts *t = arg;
	if (f->depth == 0 || f->depth > PROTOWALK_MAX_DEPTH)
		abort();
	if (f->kind == PROTOWALK_TEXT && t->n < MAX_EDITS)
		t->e[t->n++] = (struct protowalk_edit){ f->off, "[X]", 3 };
	return 0;
}

static int count_x(void *arg, const struct protowalk_field *f)
{
	struct texts *t = arg;
	if (f->kind == PROTOWALK_TEXT && f->len == 3 && !memcmp(t->base + f->off, "[X]", 3))
		t->seen++;
	return 0;
}

static void walk_and_rewrite(const uint8_t *m, size_t len)
{
	struct texts t = { .base = m };
	struct buf out = { 0 };

	if (protowalk(m, len, collect, &t))
		return;
	if (protowalk_rewrite(m, len, NULL, 0, &out) || out.len != len || (len && memcmp(out.data, m, len)))
		abort();
	out.len = 0;
	if (t.n < MAX_EDITS && protowalk_rewrite(m, len, t.e, t.n, &out) == 0) {
		struct texts again = { .base = (const uint8_t *)out.data };
		/* the walk of the result may classify differently only where a
		 * replaced text changed what its parent looks like; it must
		 * never fail to parse */
		if (protowalk((const uint8_t *)out.data, out.len, count_x, &again) == -EINVAL)
			abort();
	}
	buf_free(&out);
}

static int on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
	struct sum *s = arg;
	struct buf dec = { 0 };
	if (len > MAX_MSG)
		abort();
	s->h = s->h * 1000003u + compressed;
	for (size_t i = 0; i < len; i++)
		s->h = s->h * 31u + msg[i];
	s->n++;
	if (grpc_message_decode("gzip", 4, compressed, msg, len, MAX_MSG, &dec) == 0) {
		if (dec.len > MAX_MSG)
			abort();
		walk_and_rewrite((const uint8_t *)dec.data, dec.len);
	}
	buf_free(&dec);
	return 0;
}

static int run(const uint8_t *d, size_t n, size_t cut, struct sum *s)
{
	struct grpc_reader r;
	memset(s, 0, sizeof(*s));
	grpc_reader_init(&r, MAX_MSG);
	int rc = grpc_reader_feed(&r, d, cut, on_msg, s);
	if (!rc)
		rc = grpc_reader_feed(&r, d + cut, n - cut, on_msg, s);
	grpc_reader_free(&r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sum a, b;
	if (size < 1)
		return 0;
	/* the raw input is also a protobuf message candidate */
	walk_and_rewrite(data + 1, size - 1);
	int ra = run(data + 1, size - 1, 0, &a);
	int rb = run(data + 1, size - 1, (size - 1) * data[0] / 255, &b);
	if (ra != rb || a.n != b.n || a.h != b.h)
		abort();
	return 0;
}
