/* Unit tests for agent/proxy/ws.c: RFC 6455 framing both ways. Every stream is
 * parsed whole, byte by byte and split at every point, and must give the
 * same messages (or the same violation) each way. */
#include "check.h"
#include "proxy/ws.h"
#include "utf8.h"

#include <errno.h>

/* Messages as "op:payload|" (payload bytes as they are). */
struct rec { char log[300000]; size_t len; int n; };

static int rec_fn(void *arg, enum ws_opcode op, const uint8_t *data, size_t len)
{
	struct rec *r = arg;
	if (len + 8 > sizeof(r->log) - r->len)
		return -ENOBUFS;
	r->len += (size_t)snprintf(r->log + r->len, 8, "%x:", op);
	memcpy(r->log + r->len, data, len);
	r->len += len;
	r->log[r->len++] = '|';
	r->log[r->len] = 0;
	r->n++;
	return 0;
}

static const uint8_t MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Appends one frame of payload s (n bytes) to buf, masked or not. */
static size_t frame(uint8_t *buf, size_t at, int op, bool fin, bool masked, const char *s, size_t n)
{
	at += ws_frame_head(buf + at, (enum ws_opcode)op, fin, masked ? MASK : NULL, n);
	memcpy(buf + at, s, n);
	if (masked)
		ws_mask(buf + at, n, MASK, 0);
	return at + n;
}

struct outcome { int rc; uint16_t code; struct rec r; };

/* Feeds buf in pieces cut at the given points (sorted, < n). */
static void run_cuts(enum ws_peer from, uint64_t mf, uint64_t mm, const uint8_t *buf, size_t n,
		     const size_t *cuts, size_t ncuts, struct outcome *o)
{
	struct ws_parser p;
	size_t prev = 0;
	ws_parser_init(&p, from, mf, mm);
	memset(o, 0, sizeof(*o));
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n;
		o->rc = ws_parser_feed(&p, buf + prev, end - prev, rec_fn, &o->r);
		prev = end;
		if (o->rc)
			break;
	}
	o->code = p.close_code;
	ws_parser_free(&p);
}

static struct outcome whole, piece;

/* The outcome of buf, checked to be the same at every split point and
 * byte by byte; returns false (and says where) if not. */
static bool same_every_split(enum ws_peer from, uint64_t mf, uint64_t mm, const uint8_t *buf, size_t n,
			     struct outcome *out)
{
	static size_t cuts[70000];
	run_cuts(from, mf, mm, buf, n, NULL, 0, &whole);
	for (size_t c = 1; c < n; c++) {
		run_cuts(from, mf, mm, buf, n, &c, 1, &piece);
		if (piece.rc != whole.rc || piece.code != whole.code || piece.r.len != whole.r.len ||
		    memcmp(piece.r.log, whole.r.log, whole.r.len)) {
			printf("  split at %zu differs: rc %d/%d code %u/%u\n", c, piece.rc, whole.rc, piece.code,
			       whole.code);
			return false;
		}
	}
	size_t nc = 0;
	for (size_t c = 1; c < n && nc < sizeof(cuts) / sizeof(cuts[0]); c++)
		cuts[nc++] = c;
	run_cuts(from, mf, mm, buf, n, cuts, nc, &piece);
	if (piece.rc != whole.rc || piece.code != whole.code || piece.r.len != whole.r.len ||
	    memcmp(piece.r.log, whole.r.log, whole.r.len)) {
		printf("  byte by byte differs\n");
		return false;
	}
	*out = whole;
	return true;
}

static uint8_t buf[200000];
static struct outcome o;

TEST(ws_masked_text_from_client)
{
	size_t n = frame(buf, 0, WS_TEXT, true, true, "{\"type\":\"session.update\"}", 25);
	CHECK(same_every_split(WS_FROM_CLIENT, 1 << 20, 1 << 20, buf, n, &o), "splits disagree");
	CHECK(o.rc == 0 && o.r.n == 1, "rc %d n %d", o.rc, o.r.n);
	CHECK(!strcmp(o.r.log, "1:{\"type\":\"session.update\"}|"), "got %s", o.r.log);
}

TEST(ws_fragments_with_interleaved_control)
{
	/* "sk-" in one fragment, the rest in the next, a ping between them */
	size_t n = frame(buf, 0, WS_TEXT, false, true, "key sk-proj", 11);
	n = frame(buf, n, WS_PING, true, true, "hb", 2);
	n = frame(buf, n, WS_CONT, false, true, "", 0);
	n = frame(buf, n, WS_CONT, true, true, "ABCDEF end", 10);
	n = frame(buf, n, WS_BINARY, true, true, "\x00\x01\xff", 3);
	CHECK(same_every_split(WS_FROM_CLIENT, 1 << 20, 1 << 20, buf, n, &o), "splits disagree");
	CHECK(o.rc == 0 && o.r.n == 3, "rc %d n %d", o.rc, o.r.n);
	CHECK(o.r.len == 35 && !memcmp(o.r.log, "9:hb|1:key sk-projABCDEF end|2:\x00\x01\xff|", 35),
	      "got %s", o.r.log);
}

TEST(ws_extended_lengths)
{
	static char big[70000];
	memset(big, 'a', sizeof(big));
	size_t n = frame(buf, 0, WS_TEXT, true, false, big, 300);      /* 16-bit length */
	n = frame(buf, n, WS_BINARY, true, false, big, 66000);         /* 64-bit length */
	struct outcome w;
	run_cuts(WS_FROM_SERVER, 1 << 20, 1 << 20, buf, n, NULL, 0, &w);
	CHECK(w.rc == 0 && w.r.n == 2 && w.r.len == 2 + 300 + 1 + 2 + 66000 + 1, "rc %d n %d len %zu", w.rc,
	      w.r.n, w.r.len);
	/* byte by byte too (every split of 66 KB is too slow for a unit test) */
	static size_t cuts[70000];
	size_t nc = 0;
	for (size_t c = 1; c < n; c++)
		cuts[nc++] = c;
	run_cuts(WS_FROM_SERVER, 1 << 20, 1 << 20, buf, n, cuts, nc, &piece);
	CHECK(piece.rc == 0 && piece.r.len == w.r.len && !memcmp(piece.r.log, w.r.log, w.r.len),
	      "byte by byte differs");
}

TEST(ws_unmasked_client_frame_is_refused)
{
	size_t n = frame(buf, 0, WS_TEXT, true, false, "hello", 5);
	CHECK(same_every_split(WS_FROM_CLIENT, 1 << 20, 1 << 20, buf, n, &o), "splits disagree");
	CHECK(o.rc == -EPROTO && o.code == WS_CLOSE_PROTOCOL && o.r.n == 0, "rc %d code %u", o.rc, o.code);
}

TEST(ws_masked_server_frame_is_refused)
{
	size_t n = frame(buf, 0, WS_TEXT, true, true, "hello", 5);
	CHECK(same_every_split(WS_FROM_SERVER, 1 << 20, 1 << 20, buf, n, &o), "splits disagree");
	CHECK(o.rc == -EPROTO && o.code == WS_CLOSE_PROTOCOL, "rc %d code %u", o.rc, o.code);
}

TEST(ws_frame_and_message_limits_close_1009)
{
	char s[200];
	memset(s, 'x', sizeof(s));
	size_t n = frame(buf, 0, WS_TEXT, true, true, s, 101);
	CHECK(same_every_split(WS_FROM_CLIENT, 100, 1000, buf, n, &o), "splits disagree");
	CHECK(o.rc == -EPROTO && o.code == WS_CLOSE_TOO_BIG && o.r.n == 0, "frame: rc %d code %u", o.rc, o.code);
	/* each fragment under the frame limit, the message over its own */
	n = frame(buf, 0, WS_TEXT, false, true, s, 90);
	n = frame(buf, n, WS_CONT, false, true, s, 90);
	n = frame(buf, n, WS_CONT, true, true, s, 90);
	CHECK(same_every_split(WS_FROM_CLIENT, 100, 200, buf, n, &o), "splits disagree");
	CHECK(o.rc == -EPROTO && o.code == WS_CLOSE_TOO_BIG && o.r.n == 0, "message: rc %d code %u", o.rc,
	      o.code);
	/* exactly at both limits passes */
	n = frame(buf, 0, WS_TEXT, false, true, s, 100);
	n = frame(buf, n, WS_CONT, true, true, s, 100);
	CHECK(same_every_split(WS_FROM_CLIENT, 100, 200, buf, n, &o), "splits disagree");
	CHECK(o.rc == 0 && o.r.n == 1, "at the limits: rc %d", o.rc);
}

TEST(ws_sequence_violations)
{
	size_t n = frame(buf, 0, WS_CONT, true, true, "x", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "lone continuation: code %u", o.code);
	n = frame(buf, 0, WS_TEXT, false, true, "x", 1);
	n = frame(buf, n, WS_TEXT, true, true, "y", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "text inside text: code %u", o.code);
	n = frame(buf, 0, WS_PING, false, true, "x", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "fragmented ping: code %u", o.code);
	char s[126];
	memset(s, 'p', sizeof(s));
	n = frame(buf, 0, WS_PING, true, true, s, 126);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "126-byte ping: code %u", o.code);
	n = frame(buf, 0, 0x3, true, true, "x", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "opcode 3: code %u", o.code);
	n = frame(buf, 0, WS_TEXT, true, true, "x", 1);
	buf[0] |= 0x40;   /* RSV1: permessage-deflate, never negotiated */
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "RSV1: code %u", o.code);
	/* 5 bytes said in 16 bits */
	const uint8_t nonmin[] = { 0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e' };
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, nonmin, sizeof(nonmin), &o) &&
	      o.code == WS_CLOSE_PROTOCOL, "non-minimal length: code %u", o.code);
	const uint8_t top[] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0 };
	CHECK(same_every_split(WS_FROM_SERVER, 1000, 1000, top, sizeof(top), &o) && o.code == WS_CLOSE_PROTOCOL,
	      "63-bit length: code %u", o.code);
}

TEST(ws_text_must_be_utf8)
{
	/* a valid 2-byte character split across fragments passes */
	size_t n = frame(buf, 0, WS_TEXT, false, true, "caf\xc3", 4);
	n = frame(buf, n, WS_CONT, true, true, "\xa9", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.rc == 0 && o.r.n == 1,
	      "split character: rc %d", o.rc);
	const char *bad[] = { "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xff", "a\x80" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		n = frame(buf, 0, WS_TEXT, true, false, bad[k], strlen(bad[k]));
		CHECK(same_every_split(WS_FROM_SERVER, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_BAD_DATA &&
		      o.r.n == 0, "bad utf-8 %zu: code %u", k, o.code);
	}
	/* binary is not checked */
	n = frame(buf, 0, WS_BINARY, true, false, "\xff\xfe", 2);
	CHECK(same_every_split(WS_FROM_SERVER, 1000, 1000, buf, n, &o) && o.rc == 0, "binary: rc %d", o.rc);
	CHECK(utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80 \xe2\x82\xac", 8), "emoji and euro");
}

TEST(ws_close_frames)
{
	uint8_t pl[WS_CONTROL_MAX];
	size_t pn = ws_close_payload(pl, 1000, "bye");
	size_t n = frame(buf, 0, WS_CLOSE, true, true, (const char *)pl, pn);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.rc == 0 && o.r.n == 1,
	      "normal close: rc %d", o.rc);
	CHECK(ws_close_code(pl, pn) == 1000 && ws_close_code(pl, 0) == 1005, "codes");
	n = frame(buf, 0, WS_CLOSE, true, true, "", 0);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.rc == 0, "empty close");
	n = frame(buf, 0, WS_CLOSE, true, true, "\x03", 1);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "one-byte close: code %u", o.code);
	pn = ws_close_payload(pl, 1005, NULL);
	n = frame(buf, 0, WS_CLOSE, true, true, (const char *)pl, pn);
	CHECK(same_every_split(WS_FROM_CLIENT, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_PROTOCOL,
	      "reserved 1005 sent: code %u", o.code);
	pn = ws_close_payload(pl, 4000, "\xc3");
	n = frame(buf, 0, WS_CLOSE, true, false, (const char *)pl, pn);
	CHECK(same_every_split(WS_FROM_SERVER, 1000, 1000, buf, n, &o) && o.code == WS_CLOSE_BAD_DATA,
	      "bad reason: code %u", o.code);
	char longr[200];
	memset(longr, 'r', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = 0;
	CHECK(ws_close_payload(pl, 1000, longr) == WS_CONTROL_MAX, "reason truncated to fit");
}

TEST(ws_stops_after_violation_and_callback_abort)
{
	struct ws_parser p;
	struct rec r = { 0 };
	size_t n = frame(buf, 0, WS_TEXT, true, false, "x", 1);
	ws_parser_init(&p, WS_FROM_CLIENT, 1000, 1000);
	CHECK(ws_parser_feed(&p, buf, n, rec_fn, &r) == -EPROTO, "first");
	n = frame(buf, 0, WS_TEXT, true, true, "x", 1);
	CHECK(ws_parser_feed(&p, buf, n, rec_fn, &r) == -EPROTO && r.n == 0, "stays failed");
	ws_parser_free(&p);
	ws_parser_init(&p, WS_FROM_CLIENT, 1000, 1000);
	memset(&r, 0, sizeof(r));
	r.len = sizeof(r.log) - 4;   /* the recorder refuses: its value comes back */
	CHECK(ws_parser_feed(&p, buf, n, rec_fn, &r) == -ENOBUFS, "callback value");
	ws_parser_free(&p);
}

TEST(ws_frame_head_roundtrip)
{
	uint64_t lens[] = { 0, 125, 126, 65535, 65536 };
	for (size_t k = 0; k < 5; k++) {
		uint8_t h[WS_HEADER_MAX];
		size_t hn = ws_frame_head(h, WS_BINARY, true, MASK, lens[k]);
		CHECK(hn == (lens[k] < 126 ? 6u : lens[k] < 65536 ? 8u : 14u), "len %llu: head %zu",
		      (unsigned long long)lens[k], hn);
		struct ws_parser p;
		ws_parser_init(&p, WS_FROM_CLIENT, 1 << 20, 1 << 20);
		CHECK(ws_parser_feed(&p, h, hn, rec_fn, &piece.r) == 0 && p.frame_len == lens[k] && p.masked,
		      "parsed back %llu", (unsigned long long)lens[k]);
		ws_parser_free(&p);
	}
}
