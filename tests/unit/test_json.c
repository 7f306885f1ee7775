/* Unit tests for agent/content/json.c: strict validation, string enumeration with
 * paths, decoding with offset maps, encoding. */
#include "check.h"

#include <errno.h>

#include "content/json.h"

struct collect {
	int n;
	char paths[32][96];
	size_t off[32], len[32];
	bool key[32];
	int ntrue;
};

static int collect_cb(void *ctx, const char *doc, const struct json_string *s)
{
	struct collect *c = ctx;
	(void)doc;
	if (s->kind == JSON_TRUE)
		c->ntrue++;
	if (s->kind != JSON_STRING && s->kind != JSON_KEY)
		return 0;
	if (c->n < 32) {
		json_path_format(s->path, c->paths[c->n], sizeof(c->paths[0]));
		c->off[c->n] = s->off;
		c->len[c->n] = s->len;
		c->key[c->n] = s->is_key;
		c->n++;
	}
	return 0;
}

TEST(json_accepts_valid_documents)
{
	const char *ok[] = {
		"{}", "[]", " {\"a\":1} ", "\"x\"", "0", "-0.5e+10", "true", "null",
		"{\"a\":[1,2,{\"b\":\"\\u00e9\\n\"}],\"c\":false}", "[\"\\ud83d\\ude00\"]",
		"{\"k\":\"caf\xc3\xa9\"}", "[[[[]]]]",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		CHECK(json_valid(ok[i], strlen(ok[i])), "valid document rejected: %s", ok[i]);
}

TEST(json_rejects_invalid_documents)
{
	const char *bad[] = {
		"", "{", "{\"a\":}", "{\"a\" 1}", "[1,]", "{\"a\":1,}", "01", "1.", "-",
		"\"abc", "\"\\x\"", "\"\\u12g4\"", "{'a':1}", "[1] [2]", "nul", "{\"a\":1}}",
		"\"\x01\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", "/* c */ {}", "{a:1}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!json_valid(bad[i], strlen(bad[i])), "invalid document accepted: case %zu", i);
}

TEST(json_depth_limit)
{
	char buf[200];
	memset(buf, '[', 100);
	memset(buf + 100, ']', 100);
	CHECK(json_scan(buf, 200, NULL, NULL) == -E2BIG, "100 nested arrays should exceed JSON_MAX_DEPTH");
	CHECK(json_scan(buf + 40, 120, NULL, NULL) == 0, "60 nested arrays should be fine");
}

TEST(json_enumerates_strings_with_paths)
{
	const char *doc = "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
			  "{\"role\":\"tool\",\"content\":[{\"type\":\"text\",\"text\":\"yo\"}]}],\"stream\":true}";
	struct collect c = { 0 };
	CHECK(json_scan(doc, strlen(doc), collect_cb, &c) == 0, "scan failed");
	CHECK(c.ntrue == 1, "true literal reported %d times", c.ntrue);
	int found = 0;
	for (int i = 0; i < c.n; i++) {
		if (!c.key[i] && !strcmp(c.paths[i], "messages[0].content")) {
			CHECK(c.len[i] == 2 && !memcmp(doc + c.off[i], "hi", 2), "span of messages[0].content wrong");
			found |= 1;
		}
		if (!c.key[i] && !strcmp(c.paths[i], "messages[1].content[0].text")) {
			CHECK(!memcmp(doc + c.off[i], "yo", 2), "span of nested text wrong");
			found |= 2;
		}
		if (c.key[i] && !strcmp(c.paths[i], "messages[1].content[0]") &&
		    !memcmp(doc + c.off[i], "text", 4))
			found |= 4;
	}
	CHECK(found == 7, "missing expected strings/keys (mask %d)", found);
}

static int match_cb(void *ctx, const char *doc, const struct json_string *s)
{
	int *hits = ctx;
	(void)doc;
	if (s->kind == JSON_STRING && json_path_match(s->path, "messages[*].content[*].text"))
		(*hits)++;
	if (s->kind == JSON_STRING && json_path_match(s->path, "tools.**"))
		(*hits) += 100;
	return 0;
}

TEST(json_path_patterns_and_escaped_keys)
{
	const char *doc = "{\"messages\":[{\"content\":[{\"te\\u0078t\":\"a\"},{\"text\":\"b\"},{\"other\":\"c\"}]}],"
			  "\"tools\":[{\"function\":{\"name\":\"f\"}}]}";
	int hits = 0;
	CHECK(json_scan(doc, strlen(doc), match_cb, &hits) == 0, "scan failed");
	CHECK(hits == 102, "expected 2 text matches (one with an escaped key) + 1 tools match, got %d", hits);
}

TEST(json_decode_maps_offsets)
{
	const char *raw = "a\\u0040b\\n\\ud83d\\ude00c\\\"";
	struct json_text t = { 0 };
	CHECK(json_decode(raw, strlen(raw), &t) == 0, "decode failed");
	CHECK(t.len == 10 && !memcmp(t.data, "a@b\n\xf0\x9f\x98\x80" "c\"", 10), "decoded text wrong (len %zu)", t.len);
	CHECK(t.map[0] == 0 && t.map[1] == 1 && t.map[2] == 7 && t.map[3] == 8, "map of @ escape wrong");
	CHECK(t.map[4] == 10 && t.map[7] == 10 && t.map[8] == 22, "map of surrogate pair wrong (%u %u)", t.map[4], t.map[8]);
	CHECK(t.map[t.len] == strlen(raw), "map[len] must be raw_len");
	json_text_free(&t);
}

TEST(json_decode_lone_surrogate_is_replacement_char)
{
	struct json_text t = { 0 };
	CHECK(json_decode("x\\ud800y", 8, &t) == 0, "decode failed");
	CHECK(t.len == 5 && !memcmp(t.data, "x\xef\xbf\xbdy", 5), "lone surrogate should be U+FFFD");
	json_text_free(&t);
}

TEST(json_encode_round_trips)
{
	const char in[] = "q\"b\\s\n\t\x01 caf\xc3\xa9 </script>";
	struct buf b = { 0 };
	struct json_text t = { 0 };
	CHECK(json_encode(in, sizeof(in) - 1, &b) == 0, "encode failed");
	CHECK(buf_append(&b, "", 0) == 0, "append failed");
	char doc[256];
	snprintf(doc, sizeof(doc), "\"%s\"", b.data);
	CHECK(json_valid(doc, strlen(doc)), "encoded string is not valid JSON: %s", doc);
	CHECK(json_decode(b.data, b.len, &t) == 0, "decode failed");
	CHECK(t.len == sizeof(in) - 1 && !memcmp(t.data, in, t.len), "round trip changed the text");
	buf_free(&b);
	json_text_free(&t);
}
