/* Unit tests for agent/content/redact.c: every action, every provider's request
 * shape (output parsed back: replaced text as expected, every other byte
 * untouched), "unchanged" and invalid-JSON reporting, the vault. */
#include "check.h"

#include <errno.h>

#include "content/redact.h"

static struct inspector *ins;
static struct inspect_scratch *scr;

static void setup(void)
{
	if (!ins) {
		ins = inspector_new(NULL, 0, NULL, 0);
		scr = inspect_scratch_new(ins);
	}
}

#define MAXTOK 64
struct toks { size_t off[MAXTOK], len[MAXTOK]; int n; };

static int tok_cb(void *ctx, const char *doc, const struct json_string *s)
{
	struct toks *t = ctx;
	(void)doc;
	if (t->n < MAXTOK) {
		t->off[t->n] = s->off;
		t->len[t->n] = s->len;
		t->n++;
	}
	return 0;
}

/* Redact body with every type set to action; check structure. Writes the
 * decoded text of the string that changed into changed[] (first one). */
static const char *redact_check(const char *host, const char *path, const char *body,
				enum redact_action action, struct vault *v,
				char *changed, size_t cap, int *status)
{
	static char why[256];
	struct inspect_result r;
	struct redact_policy pol = { .hash_key = (const unsigned char *)"k3y", .hash_key_len = 3, .vault = v };
	struct buf out = { 0 };
	struct toks a = { 0 }, b = { 0 };
	const char *fail = NULL;
	for (int i = 0; i < FINDING__COUNT; i++)
		pol.action[i] = action;
	setup();
	inspect_result_init(&r);
	if (inspect_request(scr, host, path, body, strlen(body), &r))
		return "inspect_request failed";
	*status = redact_body(body, strlen(body), &r, &pol, &out, NULL);
	if (*status != REDACT_CHANGED) {
		fail = *status == REDACT_UNCHANGED && out.len == 0 ? NULL : "status/out mismatch";
		goto done;
	}
	if (json_scan(out.data, out.len, tok_cb, &b) != 0) {
		fail = "redacted body is not valid JSON";
		goto done;
	}
	json_scan(body, strlen(body), tok_cb, &a);
	if (a.n != b.n) {
		fail = "string count changed";
		goto done;
	}
	changed[0] = '\0';
	for (int i = 0; i <= a.n; i++) {
		/* gap before token i (or the tail) must be byte-identical */
		size_t ga = i ? a.off[i - 1] + a.len[i - 1] : 0, gb = i ? b.off[i - 1] + b.len[i - 1] : 0;
		size_t ea = i < a.n ? a.off[i] : strlen(body), eb = i < b.n ? b.off[i] : out.len;
		if (ea - ga != eb - gb || memcmp(body + ga, out.data + gb, ea - ga)) {
			snprintf(why, sizeof(why), "bytes between strings %d and %d changed", i - 1, i);
			fail = why;
			goto done;
		}
		if (i == a.n)
			break;
		bool same = a.len[i] == b.len[i] && !memcmp(body + a.off[i], out.data + b.off[i], a.len[i]);
		bool has = false;
		for (size_t k = 0; k < r.nspans; k++)
			has |= r.spans[k].str_off == a.off[i];
		if (!same && !has) {
			fail = "a string without findings changed";
			goto done;
		}
		if (!same && !changed[0]) {
			struct json_text t = { 0 };
			json_decode(out.data + b.off[i], b.len[i], &t);
			snprintf(changed, cap, "%.*s", (int)t.len, t.data);
			json_text_free(&t);
		}
	}
done:
	buf_free(&out);
	inspect_result_free(&r);
	return fail;
}

struct shape { const char *host, *path, *body, *expect; };

static const struct shape shapes[] = {
	{ "api.openai.com", "/v1/chat/completions",
	  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"mail john\\u0040example.com \\\"now\\\" \\u00e9\"}],\"temperature\":0.2}",
	  "mail [EMAIL_1] \"now\" \xc3\xa9" },
	{ "api.openai.com", "/v1/chat/completions",
	  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"card 4111 1111 1111 1111\"}]}]}",
	  "card [CREDIT_CARD_1]" },
	{ "api.openai.com", "/v1/responses", "{\"model\":\"o3\",\"input\":\"key AKIA2OGYBAH6TQJ5V3XL\"}",
	  "key [AWS_ACCESS_KEY_1]" },
	{ "api.anthropic.com", "/v1/messages",
	  "{\"model\":\"claude\",\"system\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"ssn 078-05-1123\"}]}],\"max_tokens\":10}",
	  "ssn [US_SSN_1]" },
	{ "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.0-flash:generateContent",
	  "{\"contents\":[{\"parts\":[{\"text\":\"a@b.io and a@b.io and c@d.io\"}]}]}",
	  "[EMAIL_1] and [EMAIL_1] and [EMAIL_2]" },
	{ "x.openai.azure.com", "/openai/deployments/d1/chat/completions",
	  "{\"messages\":[{\"role\":\"user\",\"content\":\"iban DE89370400440532013000\"}]}", "iban [IBAN_1]" },
	{ "bedrock-runtime.eu-west-1.amazonaws.com", "/model/m/converse",
	  "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"ip 10.1.2.3\"}]}]}", "ip [IP_ADDRESS_1]" },
	{ "api.mistral.ai", "/v1/chat/completions",
	  "{\"model\":\"mistral-large\",\"messages\":[{\"role\":\"user\",\"content\":\"call (415) 555-0132\"}]}",
	  "call [PHONE_1]" },
	{ "llm.internal", "/generate", "{\"meta\":{\"owner\":\"x@y.org\"},\"n\":[1,2,3]}", "[EMAIL_1]" },
};

TEST(redact_every_provider_shape)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		char changed[256];
		int st;
		const char *f = redact_check(shapes[i].host, shapes[i].path, shapes[i].body, REDACT_PLACEHOLDER,
					     NULL, changed, sizeof(changed), &st);
		CHECK(!f, "shape %zu: %s", i, f);
		CHECK(st == REDACT_CHANGED, "shape %zu: status %d", i, st);
		CHECK(!strcmp(changed, shapes[i].expect), "shape %zu: got '%s', want '%s'", i, changed, shapes[i].expect);
	}
}

TEST(redact_mask_hash_tokenize)
{
	const char *b = "{\"messages\":[{\"role\":\"user\",\"content\":\"john@example.com 4012888888881881 078-05-1123\"}]}";
	char changed[256];
	int st;
	const char *f = redact_check("api.openai.com", "/v1/chat/completions", b, REDACT_MASK, NULL, changed, sizeof(changed), &st);
	CHECK(!f && st == REDACT_CHANGED, "mask: %s", f ? f : "status");
	CHECK(!strcmp(changed, "j***@example.com ************1881 ***-**-1123"), "mask output '%s'", changed);

	f = redact_check("api.openai.com", "/v1/chat/completions", b, REDACT_HASH, NULL, changed, sizeof(changed), &st);
	CHECK(!f && st == REDACT_CHANGED, "hash: %s", f ? f : "status");
	CHECK(!strncmp(changed, "[EMAIL:", 7) && strlen(changed) == strlen("[EMAIL:12345678] [CREDIT_CARD:12345678] [US_SSN:12345678]"),
	      "hash output '%s'", changed);
	char again[256];
	redact_check("api.openai.com", "/v1/chat/completions", b, REDACT_HASH, NULL, again, sizeof(again), &st);
	CHECK(!strcmp(changed, again), "keyed hash must be stable across calls");

	struct vault *v = vault_new((const unsigned char *)"conv-key", 8, 0);
	CHECK(v, "vault_new");
	f = redact_check("api.openai.com", "/v1/chat/completions", b, REDACT_TOKENIZE, v, changed, sizeof(changed), &st);
	CHECK(!f && st == REDACT_CHANGED, "tokenize: %s", f ? f : "status");
	CHECK(!strncmp(changed, "[[VGL_EMAIL_", 12) && vault_count(v) == 3, "tokenize output '%s' (%zu)", changed, vault_count(v));
	struct buf val = { 0 };
	CHECK(vault_lookup(v, changed, strlen("[[VGL_EMAIL_123456]]"), &val) == 1 && val.len == 16 &&
	      !memcmp(val.data, "john@example.com", 16), "vault does not restore the email");
	buf_free(&val);
	vault_free(v);
}

TEST(redact_action_without_key_or_vault_fails)
{
	const char *b = "{\"messages\":[{\"role\":\"user\",\"content\":\"john@example.com\"}]}";
	struct inspect_result r;
	struct redact_policy pol = { 0 };
	struct buf out = { 0 };
	setup();
	inspect_result_init(&r);
	CHECK(inspect_request(scr, "api.openai.com", "/v1/chat/completions", b, strlen(b), &r) == 0, "inspect");
	pol.action[FINDING_EMAIL] = REDACT_TOKENIZE;
	CHECK(redact_body(b, strlen(b), &r, &pol, &out, NULL) == -EINVAL && out.len == 0, "tokenize without vault");
	pol.action[FINDING_EMAIL] = REDACT_HASH;
	CHECK(redact_body(b, strlen(b), &r, &pol, &out, NULL) == -EINVAL && out.len == 0, "hash without key");
	inspect_result_free(&r);
}

TEST(redact_reports_unchanged_and_invalid)
{
	struct inspect_result r;
	struct redact_policy pol = { 0 };
	struct buf out = { 0 };
	size_t n = 99;
	setup();
	inspect_result_init(&r);
	for (int i = 0; i < FINDING__COUNT; i++)
		pol.action[i] = REDACT_PLACEHOLDER;
	const char *clean = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
	CHECK(inspect_request(scr, "api.openai.com", "/v1/chat/completions", clean, strlen(clean), &r) == 0, "inspect");
	CHECK(redact_body(clean, strlen(clean), &r, &pol, &out, &n) == REDACT_UNCHANGED && out.len == 0 && n == 0,
	      "clean body must be reported unchanged");
	const char *bad = "{\"messages\":[{\"content\":\"john@example.com\"}],}";
	CHECK(inspect_request(scr, "api.openai.com", "/v1/chat/completions", bad, strlen(bad), &r) == 0, "inspect");
	CHECK(r.counts[FINDING_INVALID_JSON] == 1, "invalid JSON must be a finding");
	CHECK(redact_body(bad, strlen(bad), &r, &pol, &out, &n) == REDACT_INVALID_JSON && out.len == 0,
	      "invalid JSON must be left untouched");
	pol.action[FINDING_EMAIL] = REDACT_KEEP;
	const char *em = "{\"messages\":[{\"content\":\"john@example.com\"}]}";
	CHECK(inspect_request(scr, "api.openai.com", "/v1/chat/completions", em, strlen(em), &r) == 0, "inspect");
	CHECK(redact_body(em, strlen(em), &r, &pol, &out, &n) == REDACT_UNCHANGED, "keep action changes nothing");
	inspect_result_free(&r);
}

TEST(redact_plain_text_body)
{
	struct inspect_result r;
	struct redact_policy pol = { 0 };
	struct buf out = { 0 };
	const char *body = "contact john@example.com today";
	setup();
	inspect_result_init(&r);
	pol.action[FINDING_EMAIL] = REDACT_PLACEHOLDER;
	CHECK(inspect_request(scr, "api.openai.com", "/v1/x", body, strlen(body), &r) == 0, "inspect");
	CHECK(redact_body(body, strlen(body), &r, &pol, &out, NULL) == REDACT_CHANGED, "text body");
	CHECK(out.len == strlen("contact [EMAIL_1] today") && !memcmp(out.data, "contact [EMAIL_1] today", out.len),
	      "text redaction: %.*s", (int)out.len, out.data);
	buf_free(&out);
	inspect_result_free(&r);
}

TEST(redact_secret_inside_escaped_pem)
{
	const char *b = "{\"messages\":[{\"role\":\"user\",\"content\":\"fix -----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oAanuN7TdBbBoAoGCCqGSM49\\n-----END EC PRIVATE KEY-----\\n thanks\"}]}";
	char changed[256];
	int st;
	const char *f = redact_check("api.openai.com", "/v1/chat/completions", b, REDACT_PLACEHOLDER, NULL, changed, sizeof(changed), &st);
	CHECK(!f && st == REDACT_CHANGED, "pem: %s", f ? f : "status");
	CHECK(!strcmp(changed, "fix [PRIVATE_KEY_1]\n thanks"), "pem output '%s'", changed);
}

