/* Unit tests for agent/proxy/sse.c: WHATWG event-stream interpretation, line
 * endings split across feeds, the event bound, and a property test that
 * any split of a stream into 2 or 3 feeds yields the same events. */
#include "check.h"
#include "proxy/sse.h"

#include <errno.h>

/* Records events as "type|data\n" lines (data newlines shown as '~'). */
struct rec { char log[16384]; size_t len; int n; int abort_at; };

static int rec_fn(void *arg, const char *ev, size_t evl, const char *data, size_t dl)
{
	struct rec *r = arg;
	r->n++;
	if (r->abort_at && r->n >= r->abort_at)
		return 42;
	if (evl + dl + 2 > sizeof(r->log) - r->len)
		return -ENOBUFS;
	memcpy(r->log + r->len, ev, evl);
	r->len += evl;
	r->log[r->len++] = '|';
	for (size_t i = 0; i < dl; i++)
		r->log[r->len++] = data[i] == '\n' ? '~' : data[i];
	r->log[r->len++] = '\n';
	r->log[r->len] = 0;
	return 0;
}

/* Parse s whole with a fresh parser of bound cap; *e2big counts -E2BIG. */
static int run(const char *s, size_t n, size_t cap, struct rec *r, int *e2big)
{
	struct sse_parser *p = sse_new(cap);
	if (!p)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	int rc = sse_feed(p, s, n, rec_fn, r);
	if (e2big)
		*e2big = rc == -E2BIG;
	if (rc == -E2BIG)
		rc = 0;
	sse_free(p);
	return rc;
}

#define STRN(s) s, sizeof(s) - 1
#define RUN(lit, cap, r) run(lit, sizeof(lit) - 1, cap, r, NULL)

TEST(sse_basic_and_default_type)
{
	struct rec r;
	CHECK(RUN("data: hello\n\n", 1024, &r) == 0, "feed");
	CHECK(r.n == 1 && strcmp(r.log, "message|hello\n") == 0, "got [%s]", r.log);
	CHECK(RUN("event: delta\ndata: {\"x\":1}\n\n", 1024, &r) == 0, "feed");
	CHECK(strcmp(r.log, "delta|{\"x\":1}\n") == 0, "named event: [%s]", r.log);
	CHECK(RUN("event: a\nevent: b\ndata: 0\n\n", 1024, &r) == 0 && strcmp(r.log, "b|0\n") == 0,
	      "a second event: field replaces the type: [%s]", r.log);
	CHECK(RUN("event: a\ndata: 1\n\ndata: 2\n\n", 1024, &r) == 0, "feed");
	CHECK(strcmp(r.log, "a|1\nmessage|2\n") == 0, "event type does not carry over: [%s]", r.log);
}

TEST(sse_multiline_data_joined)
{
	struct rec r;
	CHECK(RUN("data: a\ndata: b\ndata:\ndata:  c\n\n", 1024, &r) == 0, "feed");
	CHECK(strcmp(r.log, "message|a~b~~ c\n") == 0, "lines joined with LF, one leading space removed: [%s]", r.log);
	CHECK(RUN("data\n\n", 1024, &r) == 0, "feed");
	CHECK(strcmp(r.log, "message|\n") == 0, "field without colon = empty value, still dispatched: [%s]", r.log);
	CHECK(RUN("data:x:y\n\n", 1024, &r) == 0, "feed");
	CHECK(strcmp(r.log, "message|x:y\n") == 0, "only the first colon splits: [%s]", r.log);
}

TEST(sse_line_endings)
{
	struct rec r;
	CHECK(RUN("data: a\r\ndata: b\r\n\r\n", 1024, &r) == 0 && strcmp(r.log, "message|a~b\n") == 0, "CRLF: [%s]", r.log);
	CHECK(RUN("data: a\rdata: b\r\r", 1024, &r) == 0 && strcmp(r.log, "message|a~b\n") == 0, "CR: [%s]", r.log);
	CHECK(RUN("data: a\ndata: b\r\n\r", 1024, &r) == 0 && strcmp(r.log, "message|a~b\n") == 0, "mixed: [%s]", r.log);
	CHECK(RUN("data: a\n\r\ndata: b\r\r\n", 1024, &r) == 0 && strcmp(r.log, "message|a\nmessage|b\n") == 0,
	      "CR LF pairs are one ending, LF CR two: [%s]", r.log);
	CHECK(RUN("data: a\n\n\n\ndata: b\n\n", 1024, &r) == 0 && r.n == 2, "extra blank lines dispatch nothing: %d", r.n);
}

TEST(sse_crlf_split_across_feeds_counts_once)
{
	struct sse_parser *p = sse_new(64);
	struct rec r = { .len = 0 };
	CHECK(p, "sse_new");
	CHECK(sse_feed(p, "data: a\r", 8, rec_fn, &r) == 0, "feed 1");
	CHECK(sse_feed(p, "\ndata: b\r", 9, rec_fn, &r) == 0, "feed 2");
	CHECK(r.n == 0, "the LF after a CR must not be a blank line (dispatched %d)", r.n);
	CHECK(sse_feed(p, "\n", 1, rec_fn, &r) == 0 && r.n == 0, "still one line ending");
	CHECK(sse_feed(p, "\r", 1, rec_fn, &r) == 0, "feed 4");
	CHECK(r.n == 1 && strcmp(r.log, "message|a~b\n") == 0, "dispatch at CR blank line: [%s]", r.log);
	sse_free(p);
}

TEST(sse_comments_unknown_fields_and_retry)
{
	struct rec r;
	CHECK(RUN(": keep-alive\n\n:ping\ndata: x\n: mid comment\nretry: 100\nfoo: bar\ndatas: no\nData: no\n\n", 1024, &r) == 0, "feed");
	CHECK(r.n == 1 && strcmp(r.log, "message|x\n") == 0, "only the data field counts (case-sensitive): [%s]", r.log);
	CHECK(RUN(": only a comment\n\nevent: lonely\n\n", 1024, &r) == 0 && r.n == 0,
	      "no data = no dispatch, also for an event with only a type (%d)", r.n);
	CHECK(RUN("event: lonely\n\ndata: z\n\n", 1024, &r) == 0 && strcmp(r.log, "message|z\n") == 0,
	      "a type without data is forgotten at the blank line: [%s]", r.log);
}

TEST(sse_last_event_id_tracking)
{
	struct sse_parser *p = sse_new(64);
	struct rec r = { .len = 0 };
	size_t n;
	CHECK(p, "sse_new");
	CHECK(sse_last_event_id(p, &n) && n == 0, "no id initially");
	CHECK(sse_feed(p, "id: 7\ndata: a\n\n", 15, rec_fn, &r) == 0, "feed");
	const char *id = sse_last_event_id(p, &n);
	CHECK(n == 1 && id[0] == '7', "id 7 (len %zu)", n);
	CHECK(sse_feed(p, "id: x\0y\ndata: b\n\n", 17, rec_fn, &r) == 0, "feed");
	id = sse_last_event_id(p, &n);
	CHECK(n == 1 && id[0] == '7', "an id with NUL is ignored (spec)");
	CHECK(sse_feed(p, "id\n\n", 4, rec_fn, &r) == 0, "feed");
	sse_last_event_id(p, &n);
	CHECK(n == 0, "empty id resets it (len %zu)", n);
	sse_free(p);
}

TEST(sse_bom_handling)
{
	struct rec r;
	CHECK(RUN("\xef\xbb\xbf" "data: a\n\n", 64, &r) == 0 && strcmp(r.log, "message|a\n") == 0, "leading BOM stripped: [%s]", r.log);
	CHECK(RUN("\xef\xbb\xbf" "\xef\xbb\xbf" "data: a\n\n", 64, &r) == 0 && r.n == 0,
	      "only one BOM is stripped; a second makes the field name unknown (%d)", r.n);
	/* Split BOM across feeds, and a false start that must be replayed. */
	struct sse_parser *p = sse_new(64);
	CHECK(p, "sse_new");
	memset(&r, 0, sizeof(r));
	CHECK(sse_feed(p, "\xef", 1, rec_fn, &r) == 0 && sse_feed(p, "\xbb", 1, rec_fn, &r) == 0, "feed");
	CHECK(sse_feed(p, "\xbf" "data: b\n\n", 10, rec_fn, &r) == 0, "feed");
	CHECK(strcmp(r.log, "message|b\n") == 0, "split BOM: [%s]", r.log);
	/* A partial BOM is not a BOM: its bytes are replayed as the start of
	 * the field name, which then is not "data". */
	sse_reset(p);
	memset(&r, 0, sizeof(r));
	CHECK(sse_feed(p, "\xef", 1, rec_fn, &r) == 0 && sse_feed(p, "data: c\n\n", 9, rec_fn, &r) == 0, "feed");
	CHECK(r.n == 0, "\\xef before data must stay part of the name (%d events: [%s])", r.n, r.log);
	CHECK(RUN("\xef\xbb" "data: c\n\ndata: d\n\n", 64, &r) == 0 && strcmp(r.log, "message|d\n") == 0,
	      "two BOM bytes replayed: [%s]", r.log);
	sse_reset(p);
	memset(&r, 0, sizeof(r));
	CHECK(sse_feed(p, "data: \xef", 7, rec_fn, &r) == 0, "a BOM byte inside data is data");
	CHECK(sse_feed(p, "\xbb\n\n", 3, rec_fn, &r) == 0 && strcmp(r.log, "message|\xef\xbb\n") == 0, "[%s]", r.log);
	sse_free(p);
}

TEST(sse_oversized_event_skipped_next_delivered)
{
	struct rec r;
	int e2big = 0;
	static const char s[] = "data: 0123456789\n\ndata: 0123456789ABCDEF\ndata: more\n\nevent: e\ndata: ok\n\n";
	CHECK(run(s, sizeof(s) - 1, 10, &r, &e2big) == 0, "feed");
	CHECK(e2big, "the oversized event is reported as -E2BIG");
	CHECK(r.n == 2 && strcmp(r.log, "message|0123456789\ne|ok\n") == 0,
	      "exactly-at-bound event kept, oversized dropped, next delivered: [%s]", r.log);
	/* The join newline counts toward the bound. */
	CHECK(run(STRN("data: 01234\ndata: 5678\n\n"), 10, &r, &e2big) == 0 && r.n == 1 && !e2big, "10 bytes incl. LF");
	CHECK(run(STRN("data: 01234\ndata: 56789\n\n"), 10, &r, &e2big) == 0 && r.n == 0 && e2big, "11 bytes incl. LF");
}

TEST(sse_oversize_reported_once_per_event)
{
	struct sse_parser *p = sse_new(8);
	struct rec r = { .len = 0 };
	CHECK(p, "sse_new");
	CHECK(sse_feed(p, STRN("data: 0123456789"), rec_fn, &r) == -E2BIG, "overflow reported in the feed where it happens");
	CHECK(sse_feed(p, STRN("more data\ndata: x\n"), rec_fn, &r) == 0, "the same event is not reported again");
	CHECK(sse_feed(p, STRN("\ndata: fits\n\n"), rec_fn, &r) == 0, "next event fine");
	CHECK(r.n == 1 && strcmp(r.log, "message|fits\n") == 0, "[%s]", r.log);
	CHECK(sse_feed(p, STRN("data: 123456789\n\ndata: abcdefghi\n\ndata: ok\n\n"), rec_fn, &r) == -E2BIG,
	      "two oversized events in one feed: still -E2BIG");
	CHECK(r.n == 2 && strstr(r.log, "message|ok\n"), "later events in the same feed delivered: [%s]", r.log);
	sse_free(p);
}

TEST(sse_event_type_too_long)
{
	char s[SSE_MAX_EVENT_NAME + 64];
	struct rec r;
	int e2big = 0;
	size_t o = 0;
	memcpy(s, "event: ", 7);
	o = 7;
	memset(s + o, 't', SSE_MAX_EVENT_NAME);
	o += SSE_MAX_EVENT_NAME;
	memcpy(s + o, "\ndata: a\n\n", 10);
	o += 10;
	CHECK(run(s, o, 64, &r, &e2big) == 0 && r.n == 1 && !e2big, "type of exactly SSE_MAX_EVENT_NAME is kept");
	memmove(s + 7 + 1, s + 7, o - 7);
	o++;
	CHECK(run(s, o, 64, &r, &e2big) == 0 && r.n == 0 && e2big, "one byte longer makes the event oversized");
}

TEST(sse_partial_event_not_dispatched_and_reset)
{
	struct sse_parser *p = sse_new(64);
	struct rec r = { .len = 0 };
	CHECK(p, "sse_new");
	CHECK(sse_feed(p, STRN("event: x\ndata: half"), rec_fn, &r) == 0 && r.n == 0, "no blank line, no event");
	sse_reset(p);
	CHECK(sse_feed(p, STRN("\n"), rec_fn, &r) == 0 && r.n == 0, "reset dropped the partial event");
	CHECK(sse_feed(p, STRN("data: y\n\n"), rec_fn, &r) == 0 && strcmp(r.log, "message|y\n") == 0,
	      "type from before reset is gone: [%s]", r.log);
	sse_free(p);
}

TEST(sse_callback_abort_and_lifecycle)
{
	struct sse_parser *p = sse_new(64);
	struct rec r = { .len = 0, .abort_at = 2 };
	CHECK(p, "sse_new");
	CHECK(sse_feed(p, STRN("data: 1\n\ndata: 2\n\ndata: 3\n\n"), rec_fn, &r) == 42, "abort value returned");
	CHECK(r.n == 2, "no event after the abort (%d callbacks)", r.n);
	sse_free(p);
	sse_free(NULL);
	CHECK(sse_new(0) == NULL, "bound 0 is refused");
	p = sse_new(16);
	CHECK(p && sse_feed(p, STRN("data: x\n\n"), NULL, NULL) == 0, "NULL callback allowed");
	sse_free(p);
}

/* A stream with every feature; its event list must not depend on how it
 * is split into feeds. Bound 24 makes one event oversized. */
static const char stream[] =
	"\xef\xbb\xbf: comment\r\n"
	"event: content_block_delta\r\n"
	"data: {\"type\":\"text\",\"t\":\"hi\"}\r\n"
	"\r\n"
	"data: one\rdata:two\r\r"
	"id: 5\n"
	"data: x\n"
	"data\n"
	"\n"
	"data: this event is much longer than the bound\n"
	"\n"
	"retry: 10\n"
	"event: e\r\n"
	"data: last\r\n"
	"\r\n"
	"data: unterminated";

struct split_result { struct rec r; int e2big; int rc; };

static void feed_pieces(const size_t *cuts, int ncuts, struct split_result *out)
{
	struct sse_parser *p = sse_new(24);
	memset(out, 0, sizeof(*out));
	size_t prev = 0;
	for (int i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : sizeof(stream) - 1;
		int rc = sse_feed(p, stream + prev, end - prev, rec_fn, &out->r);
		if (rc == -E2BIG)
			out->e2big++;
		else if (rc)
			out->rc = rc;
		prev = end;
	}
	sse_free(p);
}

TEST(sse_split_property)
{
	const size_t n = sizeof(stream) - 1;
	static struct split_result whole, part;
	feed_pieces(NULL, 0, &whole);
	CHECK(whole.rc == 0 && whole.e2big == 1, "whole: rc %d e2big %d", whole.rc, whole.e2big);
	CHECK(strcmp(whole.r.log, "content_block_delta|{\"type\":\"text\",\"t\":\"hi\"}\n"
			"message|one~two\nmessage|x~\ne|last\n") == 0, "whole stream events: [%s]", whole.r.log);
	for (size_t a = 0; a <= n; a++) {
		size_t cuts[1] = { a };
		feed_pieces(cuts, 1, &part);
		CHECK(part.rc == 0 && strcmp(part.r.log, whole.r.log) == 0, "split at %zu: [%s]", a, part.r.log);
		CHECK(part.e2big == 1, "split at %zu: oversize reported %d times", a, part.e2big);
	}
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			size_t cuts[2] = { a, b };
			feed_pieces(cuts, 2, &part);
			CHECK(part.rc == 0 && strcmp(part.r.log, whole.r.log) == 0, "split at %zu,%zu: [%s]", a, b, part.r.log);
			CHECK(part.e2big == 1, "split at %zu,%zu: oversize reported %d times", a, b, part.e2big);
		}
	}
}

TEST(sse_bytewise_equals_whole)
{
	static struct split_result whole, part;
	size_t cuts[sizeof(stream)];
	feed_pieces(NULL, 0, &whole);
	for (size_t i = 0; i < sizeof(stream) - 1; i++)
		cuts[i] = i + 1;
	feed_pieces(cuts, (int)(sizeof(stream) - 2), &part);
	CHECK(strcmp(part.r.log, whole.r.log) == 0 && part.e2big == 1, "one byte at a time: [%s]", part.r.log);
}
