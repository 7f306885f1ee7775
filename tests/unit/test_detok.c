/* Unit tests for agent/content/detok.c: tokens restored across every possible
 * chunk split, bounded hold-back, JSON escaping, unknown tokens. */
#include "check.h"

#include "content/detok.h"

static struct vault *v;
static char tok_email[VAULT_TOKEN_MAX + 1], tok_quote[VAULT_TOKEN_MAX + 1];

static void setup(void)
{
	if (v)
		return;
	v = vault_new((const unsigned char *)"k", 1, 0);
	vault_tokenize(v, FINDING_EMAIL, "john@example.com", 16, tok_email);
	vault_tokenize(v, FINDING_PASSWORD_ASSIGNMENT, "p\"w\\d", 5, tok_quote);
}

/* run in through a restorer split at the given points */
static int run(const char *in, size_t n, const size_t *cuts, int ncuts, bool json, struct buf *out)
{
	struct detok *d = detok_new(v, json);
	size_t pos = 0;
	int rc = 0;
	out->len = 0;
	for (int i = 0; i <= ncuts && !rc; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		rc = detok_feed(d, in + pos, end - pos, out);
		pos = end;
	}
	if (!rc)
		rc = detok_finish(d, out);
	detok_free(d);
	return rc;
}

TEST(detok_restores_across_every_split)
{
	char in[512], want[512];
	struct buf out = { 0 };
	setup();
	snprintf(in, sizeof(in), "data: {\"delta\":\"Mail %s, cc %s. [[VGL_x [not a token] [[VGL_EMAIL_zz]] [%s\"}\n\n",
		 tok_email, tok_email, tok_email);
	snprintf(want, sizeof(want), "data: {\"delta\":\"Mail john@example.com, cc john@example.com. [[VGL_x [not a token] [[VGL_EMAIL_zz]] [john@example.com\"}\n\n");
	size_t n = strlen(in);
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b += 3) {
			size_t cuts[2] = { a, b };
			CHECK(run(in, n, cuts, 2, true, &out) == 0, "feed failed");
			CHECK(out.len == strlen(want) && !memcmp(out.data, want, out.len),
			      "split at %zu/%zu: got '%.*s'", a, b, (int)out.len, out.data);
		}
	}
	buf_free(&out);
}

TEST(detok_byte_at_a_time)
{
	char in[256];
	struct buf out = { 0 };
	setup();
	snprintf(in, sizeof(in), "x%sy%s", tok_email, tok_email);
	size_t n = strlen(in), cuts[256];
	for (size_t i = 0; i < n; i++)
		cuts[i] = i;
	CHECK(run(in, n, cuts, (int)n, false, &out) == 0, "feed failed");
	CHECK(out.len == 34 && !memcmp(out.data, "xjohn@example.comyjohn@example.com", 34), "got '%.*s'", (int)out.len, out.data);
	buf_free(&out);
}

TEST(detok_json_escapes_restored_values)
{
	struct buf out = { 0 };
	setup();
	CHECK(run(tok_quote, strlen(tok_quote), NULL, 0, true, &out) == 0, "feed failed");
	CHECK(out.len == 7 && !memcmp(out.data, "p\\\"w\\\\d", 7), "json mode must escape: '%.*s'", (int)out.len, out.data);
	CHECK(run(tok_quote, strlen(tok_quote), NULL, 0, false, &out) == 0, "feed failed");
	CHECK(out.len == 5 && !memcmp(out.data, "p\"w\\d", 5), "text mode is raw: '%.*s'", (int)out.len, out.data);
	buf_free(&out);
}

TEST(detok_holds_back_only_a_bounded_prefix)
{
	struct buf out = { 0 };
	struct detok *d;
	setup();
	d = detok_new(v, false);
	CHECK(detok_feed(d, "abc[[VGL_EMA", 12, &out) == 0, "feed");
	CHECK(out.len == 3 && !memcmp(out.data, "abc", 3), "only the token prefix may be held: '%.*s'", (int)out.len, out.data);
	/* a long run of token characters can never exceed VAULT_TOKEN_MAX */
	char longrun[200];
	memset(longrun, 'A', sizeof(longrun));
	CHECK(detok_feed(d, longrun, sizeof(longrun), &out) == 0, "feed");
	CHECK(out.len >= 12 + sizeof(longrun) - VAULT_TOKEN_MAX, "held back more than a token: %zu", out.len);
	CHECK(detok_finish(d, &out) == 0 && out.len == 12 + sizeof(longrun), "finish must flush everything");
	CHECK(detok_restored(d) == 0, "nothing restored");
	detok_free(d);
	buf_free(&out);
}
