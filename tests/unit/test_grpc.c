/* Unit tests for agent/proxy/grpc.c (gRPC message framing, per-message
 * compression, limits) and agent/content/protowalk.c (schema-less protobuf
 * walk and rewrite), fed byte by byte: messages split anywhere are
 * reassembled, a hostile length prefix is refused before anything is
 * allocated for it, a compressed bomb stops at the cap, the walker finds
 * Gemini's prompt text at its field path, and a rewrite re-encodes every
 * enclosing length (including a length whose varint grows a byte). */
#include "check.h"

#include <zlib.h>

#include "buf.h"
#include "proxy/grpc.h"
#include "content/protowalk.h"

/* ---- protobuf by hand ---- */

static void put_varint(struct buf *b, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		buf_append(b, &c, 1);
		v >>= 7;
	} while (v);
}

static void put_len(struct buf *b, uint32_t field, const void *p, size_t n)
{
	put_varint(b, field << 3 | 2);
	put_varint(b, n);
	buf_append(b, p, n);
}

static void put_int(struct buf *b, uint32_t field, uint64_t v)
{
	put_varint(b, field << 3);
	put_varint(b, v);
}

/* GenerateContentRequest { model = 1; contents = 2 { parts = 1 { text = 2 } role = 2 };
 * system_instruction = 8 { parts = 1 { text = 2 } } } plus an int and bytes */
static void gen_request(struct buf *out, const char *prompt, const char *sys)
{
	struct buf part = { 0 }, content = { 0 }, spart = { 0 }, scontent = { 0 };
	static const uint8_t blob[] = { 0x00, 0xff, 0xfe, 0x80 };

	put_len(&part, 2, prompt, strlen(prompt));
	put_len(&content, 1, part.data, part.len);
	put_len(&content, 2, "user", 4);
	put_len(&spart, 2, sys, strlen(sys));
	put_len(&scontent, 1, spart.data, spart.len);
	put_len(out, 1, "models/gemini-2.0-flash", 23);
	put_len(out, 2, content.data, content.len);
	put_len(out, 8, scontent.data, scontent.len);
	put_int(out, 4, 300);
	put_len(out, 9, blob, sizeof(blob));
	buf_free(&part);
	buf_free(&content);
	buf_free(&spart);
	buf_free(&scontent);
}

struct seen {
	char texts[8][256];
	uint32_t paths[8][PROTOWALK_MAX_DEPTH];
	unsigned depth[8];
	size_t off[8];
	unsigned ntext, nbytes, nvarint;
	uint64_t varint;
};

static int on_field(void *arg, const struct protowalk_field *f)
{
	struct seen *s = arg;
	if (f->kind == PROTOWALK_VARINT) {
		s->nvarint++;
		s->varint = f->value;
	} else if (f->kind == PROTOWALK_BYTES) {
		s->nbytes++;
	}
	return 0;
}

/* The walked message's bytes, for TEXT payloads. */
static const uint8_t *walked;

static int on_text(void *arg, const struct protowalk_field *f)
{
	struct seen *s = arg;
	on_field(arg, f);
	if (f->kind != PROTOWALK_TEXT || s->ntext >= 8)
		return 0;
	snprintf(s->texts[s->ntext], sizeof(s->texts[0]), "%.*s", (int)f->len, (const char *)walked + f->off);
	memcpy(s->paths[s->ntext], f->path, f->depth * sizeof(uint32_t));
	s->depth[s->ntext] = f->depth;
	s->off[s->ntext] = f->off;
	s->ntext++;
	return 0;
}

static int walk(const struct buf *m, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	walked = (const uint8_t *)m->data;
	return protowalk(walked, m->len, on_text, s);
}

/* ---- framing ---- */

struct got {
	unsigned n;
	bool compressed[4];
	struct buf msg[4];
};

static int on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
	struct got *g = arg;
	if (g->n == 4)
		return -E2BIG;
	g->compressed[g->n] = compressed;
	buf_append(&g->msg[g->n], msg, len);
	g->n++;
	return 0;
}

static void got_free(struct got *g)
{
	for (int i = 0; i < 4; i++)
		buf_free(&g->msg[i]);
}

static size_t gzip_pack(const void *in, size_t n, uint8_t *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t got = cap - z.avail_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? got : 0;
}

TEST(grpc_messages_reassembled_byte_by_byte)
{
	struct buf wire = { 0 };
	struct grpc_reader r;
	struct got g = { 0 };

	grpc_frame(&wire, false, "hello", 5);
	grpc_frame(&wire, true, "\x1f\x8b", 2);
	grpc_frame(&wire, false, "", 0);
	grpc_reader_init(&r, 1024);
	for (size_t i = 0; i < wire.len; i++) {
		CHECK(grpc_reader_feed(&r, wire.data + i, 1, on_msg, &g) == 0, "feed failed at byte %zu", i);
		if (i == 6)
			CHECK(!grpc_reader_idle(&r), "idle in the middle of a message");
	}
	CHECK(grpc_reader_idle(&r), "not idle after the last message");
	CHECK(g.n == 3, "%u messages", g.n);
	CHECK(g.msg[0].len == 5 && !memcmp(g.msg[0].data, "hello", 5) && !g.compressed[0], "first message wrong");
	CHECK(g.compressed[1] && g.msg[1].len == 2, "compressed flag lost");
	CHECK(g.msg[2].len == 0, "empty message wrong");
	grpc_reader_free(&r);
	got_free(&g);
	buf_free(&wire);
}

TEST(grpc_hostile_prefix_refused_before_allocation)
{
	static const uint8_t huge[] = { 0, 0xff, 0xff, 0xff, 0xf0, 'x' };
	static const uint8_t flag[] = { 2, 0, 0, 0, 1, 'x' };
	struct grpc_reader r;
	struct got g = { 0 };
	int rc = 0;

	grpc_reader_init(&r, 65536);
	for (size_t i = 0; i < sizeof(huge) && !rc; i++)
		rc = grpc_reader_feed(&r, huge + i, 1, on_msg, &g);
	CHECK(rc == -EMSGSIZE, "a 4 GiB prefix gave %d", rc);
	CHECK(r.msg.cap == 0, "the reader allocated %zu bytes for the hostile prefix", r.msg.cap);
	grpc_reader_free(&r);
	grpc_reader_init(&r, 65536);
	CHECK(grpc_reader_feed(&r, flag, sizeof(flag), on_msg, &g) == -EPROTO, "compressed flag 2 accepted");
	grpc_reader_free(&r);
	/* exactly the limit passes, one more does not */
	struct buf w = { 0 };
	char big[100];
	memset(big, 'a', sizeof(big));
	grpc_frame(&w, false, big, 100);
	grpc_reader_init(&r, 100);
	CHECK(grpc_reader_feed(&r, w.data, w.len, on_msg, &g) == 0 && g.n == 1, "a message at the limit refused");
	grpc_reader_free(&r);
	grpc_reader_init(&r, 99);
	CHECK(grpc_reader_feed(&r, w.data, w.len, on_msg, &g) == -EMSGSIZE, "a message over the limit accepted");
	grpc_reader_free(&r);
	buf_free(&w);
	got_free(&g);
}

TEST(grpc_compression_decoded_and_capped)
{
	char text[4000];
	uint8_t z[8192];
	struct buf out = { 0 };

	memset(text, 'A', sizeof(text));
	memcpy(text, "write to jane@example.com", 25);
	size_t zn = gzip_pack(text, sizeof(text), z, sizeof(z));
	CHECK(zn > 0 && zn < 200, "gzip pack %zu", zn);
	CHECK(grpc_message_decode("gzip", 4, true, z, zn, 65536, &out) == 0 && out.len == sizeof(text) &&
	      !memcmp(out.data, text, sizeof(text)), "gzip message not decoded");
	out.len = 0;
	/* the decoded size is bounded, not the compressed one: a bomb stops */
	CHECK(grpc_message_decode("gzip", 4, true, z, zn, 1000, &out) == -E2BIG && out.len == 0, "bomb not capped");
	CHECK(grpc_message_decode("identity", 8, true, z, zn, 65536, &out) == -EINVAL, "compressed flag with identity accepted");
	CHECK(grpc_message_decode(NULL, 0, true, z, zn, 65536, &out) == -EINVAL, "compressed flag without encoding accepted");
	CHECK(grpc_message_decode("snappy", 6, true, z, zn, 65536, &out) == -ENOTSUP, "unknown encoding");
	CHECK(grpc_message_decode("gzip", 4, true, z, zn - 4, 65536, &out) == -EINVAL, "truncated gzip accepted");
	CHECK(grpc_message_decode("gzip", 4, false, (const uint8_t *)"plain", 5, 65536, &out) == 0 &&
	      out.len == 5, "uncompressed message with grpc-encoding gzip");
	buf_free(&out);
}

/* ---- walker ---- */

TEST(protowalk_finds_gemini_fields_at_their_paths)
{
	struct buf m = { 0 };
	struct seen s;

	gen_request(&m, "hello jane@example.com", "be brief");
	CHECK(walk(&m, &s) == 0, "walk failed");
	CHECK(s.ntext == 4, "%u texts", s.ntext);
	CHECK(!strcmp(s.texts[0], "models/gemini-2.0-flash") && s.depth[0] == 1 && s.paths[0][0] == 1, "model");
	CHECK(!strcmp(s.texts[1], "hello jane@example.com") && s.depth[1] == 3 && s.paths[1][0] == 2 &&
	      s.paths[1][1] == 1 && s.paths[1][2] == 2, "prompt text path");
	CHECK(!strcmp(s.texts[2], "user") && s.depth[2] == 2, "role");
	CHECK(!strcmp(s.texts[3], "be brief") && s.depth[3] == 3 && s.paths[3][0] == 8, "system instruction");
	CHECK(s.nvarint == 1 && s.varint == 300 && s.nbytes == 1, "varint %u/%llu bytes %u", s.nvarint,
	      (unsigned long long)s.varint, s.nbytes);
	buf_free(&m);
}

TEST(protowalk_rewrite_reencodes_enclosing_lengths)
{
	struct buf m = { 0 }, out = { 0 }, want = { 0 };
	struct seen s;
	char longer[300];

	gen_request(&m, "mail jane@example.com", "be brief");
	CHECK(walk(&m, &s) == 0, "walk");
	/* 200 bytes: the part's, the content's and the text's length varints all grow */
	memset(longer, 'x', 200);
	longer[200] = 0;
	struct protowalk_edit e[] = { { s.off[1], longer, 200 }, { s.off[3], "", 0 } };
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, e, 2, &out) == 0, "rewrite failed");
	gen_request(&want, longer, "");
	CHECK(out.len == want.len && !memcmp(out.data, want.data, want.len),
	      "rewrite is not the message built with the new texts (%zu vs %zu bytes)", out.len, want.len);
	CHECK(walk(&out, &s) == 0 && !strcmp(s.texts[1], longer) && s.nvarint == 1 && s.nbytes == 1,
	      "the rewritten message does not walk back");
	/* an edit that names no text field is refused, output untouched */
	struct protowalk_edit bad[] = { { s.off[1] + 1, "y", 1 } };
	size_t before = out.len;
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, bad, 1, &out) == -EINVAL && out.len == before,
	      "an edit inside a text accepted");
	struct protowalk_edit unsorted[] = { { 20, "a", 1 }, { 10, "b", 1 } };
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, unsorted, 2, &out) == -EINVAL, "unsorted edits");
	buf_free(&m);
	buf_free(&out);
	buf_free(&want);
}

/* A nested message { 4: 40 printable bytes } starts '"' '(' : printable as
 * a whole, so it is read (and inspected) as text; a redaction that would
 * change its length is refused, never forwarded with a stale inner
 * length. */
TEST(protowalk_printable_nested_message_is_not_rewritten_out_of_shape)
{
	struct buf inner = { 0 }, m = { 0 }, out = { 0 };
	struct seen s;
	const char *text = "write to jane.doe@example.com right away";   /* 40 bytes */

	put_len(&inner, 4, text, strlen(text));
	CHECK(inner.len == 42 && inner.data[0] == '"' && inner.data[1] == '(', "inner form");
	put_len(&m, 1, inner.data, inner.len);
	CHECK(walk(&m, &s) == 0 && s.ntext == 1 && strstr(s.texts[0], "jane.doe@example.com"),
	      "the nested text was not reported for inspection");
	struct protowalk_edit shorter[] = { { s.off[0], "[EMAIL]", 7 } };
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, shorter, 1, &out) == -EPROTO && out.len == 0,
	      "a length-changing rewrite of a printable nested message was accepted");
	/* the same length keeps every inner length right: allowed */
	char same[64];
	memcpy(same, inner.data, inner.len);
	memcpy(same + 2 + 9, "XXXXXXXXXXXXXXXXXXXX", 20);
	struct protowalk_edit keep[] = { { s.off[0], same, inner.len } };
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, keep, 1, &out) == 0 && out.len == m.len,
	      "a same-length rewrite refused");
	/* plain printable text is rewritten to any length as before */
	m.len = 0;
	put_len(&m, 1, text, strlen(text));
	CHECK(walk(&m, &s) == 0 && s.ntext == 1, "plain text walk");
	out.len = 0;
	CHECK(protowalk_rewrite((const uint8_t *)m.data, m.len, shorter, 1, &out) == 0 && out.len == 9,
	      "plain text rewrite");
	buf_free(&inner);
	buf_free(&m);
	buf_free(&out);
}

TEST(protowalk_rewrite_fed_every_prefix_is_safe)
{
	struct buf m = { 0 }, out = { 0 };
	struct seen s;

	gen_request(&m, "hello", "sys");
	/* every truncation of a valid message: no crash, a clean error or a
	 * shorter valid walk (ASan watches the reads) */
	for (size_t n = 0; n < m.len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, m.data, n);
		struct buf t = { .data = (char *)copy, .len = n, .cap = n };
		int rc = walk(&t, &s);
		CHECK(rc == 0 || rc == -EINVAL, "prefix %zu gave %d", n, rc);
		out.len = 0;
		CHECK(protowalk_rewrite(copy, n, NULL, 0, &out) == rc, "rewrite and walk disagree at %zu", n);
		CHECK(rc || (out.len == n && (!n || !memcmp(out.data, copy, n))), "identity rewrite changed bytes at %zu", n);
		free(copy);
	}
	buf_free(&m);
	buf_free(&out);
}

TEST(protowalk_hostile_lengths_depth_and_counts)
{
	struct buf m = { 0 }, inner = { 0 }, outer = { 0 };
	struct seen s;
	/* a length past the end, an 11-byte varint, a group, field number 0 */
	static const uint8_t past[] = { 0x0a, 0x7f, 'a' };
	static const uint8_t longv[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	static const uint8_t group[] = { 0x0b, 0x0c };
	static const uint8_t zero[] = { 0x02, 0x01, 'a' };
	static const uint8_t huge_len[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f };

	CHECK(protowalk(past, sizeof(past), on_text, &s) == -EINVAL, "length past the end");
	CHECK(protowalk(longv, sizeof(longv), on_text, &s) == -EINVAL, "11-byte varint");
	CHECK(protowalk(group, sizeof(group), on_text, &s) == -EINVAL, "group accepted");
	CHECK(protowalk(zero, sizeof(zero), on_text, &s) == -EINVAL, "field 0 accepted");
	CHECK(protowalk(huge_len, sizeof(huge_len), on_text, &s) == -EINVAL, "4 GiB length");
	/* nesting past the limit: refused, never read as text */
	put_len(&inner, 1, "secret text", 11);
	for (int i = 0; i < 100; i++) {
		outer.len = 0;
		put_len(&outer, 1, inner.data, inner.len);
		inner.len = 0;
		buf_append(&inner, outer.data, outer.len);
	}
	CHECK(walk(&inner, &s) == -E2BIG, "100 nested messages walked");
	/* more fields than the limit */
	for (int i = 0; i < PROTOWALK_MAX_FIELDS + 1; i++)
		put_int(&m, 1, 1);
	CHECK(walk(&m, &s) == -E2BIG, "field count limit not enforced");
	/* printable text is text even when it would parse as fields */
	buf_free(&outer);
	buf_free(&inner);
	struct buf t = { 0 };
	put_len(&t, 2, "hi", 2);       /* 'h' = field 13 varint, 'i' its value: parses as a message */
	CHECK(walk(&t, &s) == 0 && s.ntext == 1 && !strcmp(s.texts[0], "hi"), "printable text taken for a message");
	/* invalid UTF-8 that is not a message: bytes, not inspected as text */
	t.len = 0;
	put_len(&t, 2, "\xff\xfe\xfd", 3);
	CHECK(walk(&t, &s) == 0 && s.ntext == 0 && s.nbytes == 1, "binary taken for text");
	buf_free(&t);
	buf_free(&m);
}

TEST(protowalk_utf8_strictness)
{
	struct buf t = { 0 };
	struct seen s;
	/* overlong '/' and a UTF-16 surrogate are not UTF-8; é and 😀 are */
	put_len(&t, 2, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10);
	CHECK(walk(&t, &s) == 0 && s.ntext == 1, "valid UTF-8 not text");
	t.len = 0;
	put_len(&t, 2, "\xc0\xaf", 2);
	CHECK(walk(&t, &s) == 0 && s.ntext == 0, "overlong accepted as text");
	t.len = 0;
	put_len(&t, 2, "\xed\xa0\x80", 3);
	CHECK(walk(&t, &s) == 0 && s.ntext == 0, "surrogate accepted as text");
	buf_free(&t);
}

TEST(protowalk_vertex_part_that_looks_printable_is_a_message)
{
	struct buf part = { 0 }, content = { 0 };
	struct seen s;

	/* Vertex AI's Part { text = 1 } of 10 bytes is "\n\n0123456789":
	 * printable, yet a message */
	put_len(&part, 1, "0123456789", 10);
	put_len(&content, 2, part.data, part.len);
	CHECK(walk(&content, &s) == 0 && s.ntext == 1 && !strcmp(s.texts[0], "0123456789") && s.depth[0] == 2 &&
	      s.paths[0][0] == 2 && s.paths[0][1] == 1, "the part was read as text: %u texts, first %s", s.ntext,
	      s.texts[0]);
	/* text that starts with a newline but is no message stays text */
	content.len = 0;
	put_len(&content, 2, "\nhello world", 12);
	CHECK(walk(&content, &s) == 0 && s.ntext == 1 && s.depth[0] == 1, "newline text not text");
	buf_free(&part);
	buf_free(&content);
}
