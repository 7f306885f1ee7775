/* Unit tests for agent/content/answer.c: a streamed answer redacted the same
 * whatever its chunking (every split point of the value, one-byte
 * pieces), numbering stable across the stream, bounded hold-back, a value
 * too long to hold cut (never sent past the point it was seen), and whole
 * JSON answers of each provider rewritten in place, still valid JSON. */
#include "check.h"

#include "content/answer.h"

static struct inspector *ins;
static struct inspect_scratch *scr;

static void setup(void)
{
	if (!ins) {
		ins = inspector_new(NULL, 0, NULL, 0);
		scr = inspect_scratch_new(ins);
	}
}

static void policy_all(struct redact_policy *pol, enum redact_action a)
{
	memset(pol, 0, sizeof(*pol));
	for (int t = 0; t < FINDING__COUNT; t++)
		pol->action[t] = a;
}

/* Feeds text cut at the given points (plus every piece of size piece if
 * piece > 0); out gets everything released. Returns the last status. */
static int stream(const struct redact_policy *pol, const char *text, const size_t *cuts, int ncuts,
		  size_t piece, struct buf *out, uint32_t *counts, size_t *max_held)
{
	struct answer *a = answer_new(scr, pol);
	size_t n = strlen(text), pos = 0;
	int rc = 0;
	out->len = 0;
	if (max_held)
		*max_held = 0;
	for (int i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		while (pos < end && rc == 0) {
			size_t take = piece && end - pos > piece ? piece : end - pos;
			rc = answer_feed(a, text + pos, take, out);
			pos += take;
			if (max_held && pos - out->len > *max_held)
				*max_held = pos - out->len;   /* exact for same-length replacements only */
		}
	}
	if (rc == 0)
		rc = answer_finish(a, out);
	if (counts)
		memcpy(counts, answer_counts(a), FINDING__COUNT * sizeof(uint32_t));
	answer_free(a);
	return rc;
}

TEST(answer_stream_redacts_a_value_at_every_split_point)
{
	char text[2048], want[2048];
	struct redact_policy pol;
	struct buf out = { 0 };
	uint32_t counts[FINDING__COUNT];
	const char *email = "jane.doe@example.com";
	setup();
	policy_all(&pol, REDACT_KEEP);
	pol.action[FINDING_EMAIL] = REDACT_PLACEHOLDER;
	/* the value after 300 bytes of filler, so it crosses the hold-back line too */
	memset(text, 'x', 300);
	text[300] = ' ';
	snprintf(text + 301, sizeof(text) - 301, "write to %s today, thanks", email);
	snprintf(want, sizeof(want), "%.301swrite to [EMAIL_1] today, thanks", text);
	size_t at = 301 + strlen("write to ");
	for (size_t k = 0; k <= strlen(email); k++) {
		size_t cut = at + k;
		CHECK(stream(&pol, text, &cut, 1, 0, &out, counts, NULL) == 0, "split %zu failed", k);
		CHECK(out.len == strlen(want) && !memcmp(out.data, want, out.len),
		      "split at %zu of the value: got %.*s", k, (int)(out.len > 80 ? 80 : out.len),
		      out.len > 300 ? out.data + 290 : out.data);
		CHECK(counts[FINDING_EMAIL] == 1, "split %zu: %u e-mails counted", k, counts[FINDING_EMAIL]);
	}
	/* every byte its own event */
	CHECK(stream(&pol, text, NULL, 0, 1, &out, counts, NULL) == 0, "one-byte pieces failed");
	CHECK(out.len == strlen(want) && !memcmp(out.data, want, out.len), "one-byte pieces: wrong output");
	CHECK(!memmem(out.data, out.len, email, strlen(email)), "raw value released");
	buf_free(&out);
}

TEST(answer_stream_numbers_values_across_the_stream)
{
	struct redact_policy pol;
	struct buf out = { 0 };
	char text[4096];
	size_t n = 0;
	setup();
	policy_all(&pol, REDACT_PLACEHOLDER);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "first a.one@example.com then ");
	while (n < 1500)
		text[n++] = 'y';
	n += (size_t)snprintf(text + n, sizeof(text) - n, " b.two@example.com and again a.one@example.com.");
	CHECK(stream(&pol, text, NULL, 0, 7, &out, NULL, NULL) == 0, "stream failed");
	buf_append(&out, "", 1);
	CHECK(strstr(out.data, "first [EMAIL_1] then") && strstr(out.data, " [EMAIL_2] and again [EMAIL_1]."),
	      "numbering not stable across releases: %s", out.data + 1400);
	buf_free(&out);
}

TEST(answer_stream_holds_back_a_bounded_amount)
{
	struct redact_policy pol;
	struct buf out = { 0 };
	char text[8192];
	size_t held = 0;
	setup();
	policy_all(&pol, REDACT_PLACEHOLDER);
	memset(text, 'w', sizeof(text) - 1);
	for (size_t i = 5; i < sizeof(text) - 1; i += 6)
		text[i] = ' ';
	text[sizeof(text) - 1] = 0;
	CHECK(stream(&pol, text, NULL, 0, 3, &out, NULL, &held) == 0, "stream failed");
	CHECK(out.len == sizeof(text) - 1, "text altered");
	CHECK(held <= 2 * ANSWER_HOLD_BYTES + 3, "held back %zu bytes of plain text", held);
	buf_free(&out);
}

TEST(answer_stream_masks_and_keeps_other_types)
{
	struct redact_policy pol;
	struct buf out = { 0 };
	setup();
	policy_all(&pol, REDACT_KEEP);
	pol.action[FINDING_CREDIT_CARD] = REDACT_MASK;
	CHECK(stream(&pol, "card 4111 1111 1111 1111, mail x.y@example.com", NULL, 0, 2, &out, NULL, NULL) == 0,
	      "stream");
	buf_append(&out, "", 1);
	CHECK(!strcmp(out.data, "card **** **** **** 1111, mail x.y@example.com"), "got %s", out.data);
	buf_free(&out);
}

/* A PEM block whose -----BEGIN line the detectors already recognise is
 * held whole while it grows (up to ANSWER_MAX_HELD); a longer one is
 * never released and the redactor says so. */
static size_t pem(char *text, size_t cap, size_t body)
{
	size_t n = (size_t)snprintf(text, cap, "here:\n-----BEGIN RSA PRIVATE KEY-----\n");
	while (n < body) {
		memcpy(text + n, "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8dKMDvs3QyZhFa7xS2Zk5uQpv\n", 65);
		n += 65;
	}
	return n + (size_t)snprintf(text + n, cap - n, "-----END RSA PRIVATE KEY-----\nbye");
}

TEST(answer_stream_holds_a_growing_value_whole_or_cuts_it)
{
	struct redact_policy pol;
	struct buf out = { 0 };
	static char text[16384];
	setup();
	policy_all(&pol, REDACT_PLACEHOLDER);
	pem(text, sizeof(text), 2000);
	int rc = stream(&pol, text, NULL, 0, 16, &out, NULL, NULL);
	buf_append(&out, "", 1);
	CHECK(rc == 0 && !strcmp(out.data, "here:\n[PRIVATE_KEY_1]\nbye"), "2 KB key: rc %d, %.60s", rc, out.data);
	pem(text, sizeof(text), ANSWER_MAX_HELD + 1000);
	rc = stream(&pol, text, NULL, 0, 16, &out, NULL, NULL);
	CHECK(rc == ANSWER_OVERRUN, "a key longer than the hold-back bound must be reported (rc %d)", rc);
	CHECK(!memmem(out.data, out.len, "MIIE", 4) && !memmem(out.data, out.len, "BEGIN", 5),
	      "part of the key was released: %.*s", (int)(out.len > 60 ? 60 : out.len), out.data);
	buf_free(&out);
}

static const char *doc_redact(const char *doc, enum redact_action a, int *rc, uint32_t *counts)
{
	static char buf[4096];
	struct redact_policy pol;
	struct buf out = { 0 };
	policy_all(&pol, REDACT_KEEP);
	pol.action[FINDING_EMAIL] = a;
	pol.action[FINDING_PHONE] = a;
	memset(counts, 0, FINDING__COUNT * sizeof(uint32_t));
	*rc = answer_redact_doc(scr, &pol, NULL, doc, strlen(doc), &out, counts);
	snprintf(buf, sizeof(buf), "%.*s", (int)out.len, out.data ? out.data : "");
	buf_free(&out);
	return buf;
}

TEST(answer_doc_rewrites_model_text_of_each_provider)
{
	static const struct { const char *name, *in, *want; } cases[] = {
		{ "openai chat",
		  "{\"id\":\"x@example.com\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		  "\"content\":\"mail bob\\u0040example.com now\",\"tool_calls\":[{\"type\":\"function\","
		  "\"function\":{\"name\":\"send\",\"arguments\":\"{\\\"to\\\":\\\"bob@example.com\\\"}\"}}]}}]}",
		  "{\"id\":\"x@example.com\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		  "\"content\":\"mail [EMAIL_1] now\",\"tool_calls\":[{\"type\":\"function\","
		  "\"function\":{\"name\":\"send\",\"arguments\":\"{\\\"to\\\":\\\"[EMAIL_1]\\\"}\"}}]}}]}" },
		{ "anthropic",
		  "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"call ann@example.org\"}]}",
		  "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"call [EMAIL_1]\"}]}" },
		{ "gemini",
		  "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi ann@example.org\"}],\"role\":\"model\"}}]}",
		  "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi [EMAIL_1]\"}],\"role\":\"model\"}}]}" },
		{ "responses",
		  "{\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"ann@example.org\"}]}]}",
		  "{\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"[EMAIL_1]\"}]}]}" },
	};
	uint32_t counts[FINDING__COUNT];
	int rc;
	setup();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = doc_redact(cases[i].in, REDACT_PLACEHOLDER, &rc, counts);
		CHECK(rc == REDACT_CHANGED, "%s: status %d", cases[i].name, rc);
		CHECK(!strcmp(got, cases[i].want), "%s: got %s", cases[i].name, got);
		CHECK(json_valid(got, strlen(got)), "%s: not JSON", cases[i].name);
		CHECK(counts[FINDING_EMAIL] == (i == 0 ? 2u : 1u), "%s: %u counted", cases[i].name,
		      counts[FINDING_EMAIL]);
	}
	/* nothing to do: unchanged, nothing written */
	const char *got = doc_redact("{\"choices\":[{\"message\":{\"content\":\"hello\"}}]}", REDACT_PLACEHOLDER,
				     &rc, counts);
	CHECK(rc == REDACT_UNCHANGED && !*got, "clean answer: status %d out %s", rc, got);
	/* a plain-text answer is text */
	got = doc_redact("reach me at ann@example.org", REDACT_MASK, &rc, counts);
	CHECK(rc == REDACT_CHANGED && !strcmp(got, "reach me at a***@example.org"), "text: %d %s", rc, got);
}
