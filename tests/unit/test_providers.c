/* Unit tests for agent/providers/providers.c: identification, model/stream/tools
 * extraction and which strings are model-visible, per provider shape. */
#include "check.h"

#include "providers/providers.h"

struct vis {
	const char *body;
	char seen[16][48];
	bool visible[16];
	int n;
};

/* Whether the string at off (len bytes) of body is a member name: a ':'
 * follows its closing quote. */
static bool is_name(const char *body, size_t off, size_t len)
{
	const char *q = body + off + len + 1;
	while (*q == ' ' || *q == '\n')
		q++;
	return *q == ':';
}

/* Values only (member names are reported too: providers_member_names) */
static int vis_cb(void *ctx, size_t off, size_t len, bool visible)
{
	struct vis *v = ctx;
	if (is_name(v->body, off, len))
		return 0;
	if (v->n < 16) {
		size_t l = len < 47 ? len : 47;
		memcpy(v->seen[v->n], v->body + off, l);
		v->seen[v->n][l] = '\0';
		v->visible[v->n] = visible;
		v->n++;
	}
	return 0;
}

/* 1 visible, 0 reported but not visible, -1 not reported */
static int visibility(const struct vis *v, const char *s)
{
	for (int i = 0; i < v->n; i++)
		if (!strcmp(v->seen[i], s))
			return v->visible[i];
	return -1;
}

static int parse(const char *host, const char *path, const char *body, struct provider_info *info, struct vis *v)
{
	memset(v, 0, sizeof(*v));
	v->body = body;
	return provider_parse_request(host, path, body, strlen(body), info, vis_cb, v);
}

TEST(providers_identify)
{
	CHECK(provider_identify("api.openai.com:443", "/v1/chat/completions") == PROVIDER_OPENAI, "openai");
	CHECK(provider_identify("API.Anthropic.com", "/v1/messages") == PROVIDER_ANTHROPIC, "anthropic (case)");
	CHECK(provider_identify("generativelanguage.googleapis.com", "/") == PROVIDER_GEMINI, "gemini");
	CHECK(provider_identify("myco.openai.azure.com", "/") == PROVIDER_AZURE_OPENAI, "azure");
	CHECK(provider_identify("bedrock-runtime.us-east-1.amazonaws.com", "/") == PROVIDER_BEDROCK, "bedrock");
	CHECK(provider_identify("api.mistral.ai", "/v1/chat/completions") == PROVIDER_MISTRAL, "mistral");
	CHECK(provider_identify("evilapi.openai.com.attacker.net", "/v1/x") == PROVIDER_GENERIC, "suffix trick");
	CHECK(provider_identify("llm.local", "/openai/deployments/gpt4/chat/completions") == PROVIDER_AZURE_OPENAI,
	      "azure by path");
	CHECK(!strcmp(provider_name(PROVIDER_AZURE_OPENAI), "azure_openai"), "name");
}

static int names_cb(void *ctx, size_t off, size_t len, bool visible)
{
	struct vis *v = ctx;
	if (is_name(v->body, off, len) && v->n < 16) {
		snprintf(v->seen[v->n], sizeof(v->seen[0]), "%.*s", (int)len, v->body + off);
		v->visible[v->n++] = visible;
	}
	return 0;
}

/* Member names of 6 bytes or more leave the machine too (metadata keys,
 * a tool schema's property names): reported, never as visible text. */
TEST(providers_member_names)
{
	const char *b = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			"\"metadata\":{\"AKIAZ7QW3RT5YUP2MN8X\":\"x\",\"short\":\"y\"}}";
	struct provider_info info;
	struct vis v = { .body = b };
	CHECK(provider_parse_request("api.openai.com", "/v1/chat/completions", b, strlen(b), &info, names_cb, &v) == 0,
	      "parse failed");
	CHECK(v.n == 4 && !strcmp(v.seen[0], "messages") && !strcmp(v.seen[1], "content") &&
	      !strcmp(v.seen[2], "metadata") && !strcmp(v.seen[3], "AKIAZ7QW3RT5YUP2MN8X"), "names: %d", v.n);
	for (int i = 0; i < v.n; i++)
		CHECK(!v.visible[i], "name %s reported as visible text", v.seen[i]);
}

TEST(providers_openai_chat)
{
	const char *b = "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"system\",\"content\":\"sys text\"},"
			"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"part text\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x\"}}]},"
			"{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"tool result\"}],"
			"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"desc\"}}]}";
	struct provider_info info;
	struct vis v;
	CHECK(parse("api.openai.com", "/v1/chat/completions", b, &info, &v) == 0, "parse failed");
	CHECK(info.provider == PROVIDER_OPENAI && !strcmp(info.model, "gpt-4o") && info.stream, "model/stream");
	CHECK(info.ntools == 1 && !strcmp(info.tools[0], "get_weather"), "tools: %u", info.ntools);
	CHECK(visibility(&v, "sys text") == 1 && visibility(&v, "part text") == 1 && visibility(&v, "tool result") == 1,
	      "message text must be visible");
	CHECK(visibility(&v, "desc") == 1, "tool description is model-visible");
	CHECK(visibility(&v, "gpt-4o") == 0 && visibility(&v, "call_1") == 0 && visibility(&v, "http://x") == 0,
	      "metadata reported but not visible");
}

TEST(providers_openai_responses_and_completions)
{
	struct provider_info info;
	struct vis v;
	CHECK(parse("api.openai.com", "/v1/responses", "{\"model\":\"o3\",\"input\":\"hello there\",\"instructions\":\"be brief\"}",
		    &info, &v) == 0, "parse");
	CHECK(visibility(&v, "hello there") == 1 && visibility(&v, "be brief") == 1, "responses input string");
	CHECK(parse("api.openai.com", "/v1/responses",
		    "{\"model\":\"o3\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"item text\"}]}]}",
		    &info, &v) == 0, "parse");
	CHECK(visibility(&v, "item text") == 1, "responses input items");
	CHECK(parse("api.openai.com", "/v1/completions", "{\"model\":\"davinci\",\"prompt\":\"legacy\"}", &info, &v) == 0, "parse");
	CHECK(visibility(&v, "legacy") == 1, "legacy prompt");
}

TEST(providers_anthropic)
{
	const char *b = "{\"model\":\"claude-sonnet-4\",\"system\":[{\"type\":\"text\",\"text\":\"sys block\"}],"
			"\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"tu_1\",\"content\":\"tr string\"},"
			"{\"type\":\"text\",\"text\":\"block text\"}]}],\"tools\":[{\"name\":\"search\",\"input_schema\":{}}],\"stream\":false}";
	struct provider_info info;
	struct vis v;
	CHECK(parse("api.anthropic.com", "/v1/messages", b, &info, &v) == 0, "parse");
	CHECK(info.provider == PROVIDER_ANTHROPIC && !strcmp(info.model, "claude-sonnet-4") && !info.stream, "info");
	CHECK(info.ntools == 1 && !strcmp(info.tools[0], "search"), "tools");
	CHECK(visibility(&v, "sys block") == 1 && visibility(&v, "tr string") == 1 && visibility(&v, "block text") == 1,
	      "anthropic text visibility");
	CHECK(visibility(&v, "tu_1") == 0, "tool_use_id is not text");
}

TEST(providers_gemini_azure_bedrock)
{
	struct provider_info info;
	struct vis v;
	CHECK(parse("generativelanguage.googleapis.com", "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse",
		    "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"gem text\"}]}],"
		    "\"systemInstruction\":{\"parts\":[{\"text\":\"gem sys\"}]},"
		    "\"tools\":[{\"functionDeclarations\":[{\"name\":\"lookup\"}]}]}", &info, &v) == 0, "gemini parse");
	CHECK(!strcmp(info.model, "gemini-1.5-pro") && info.stream, "gemini model/stream from path: %s", info.model);
	CHECK(visibility(&v, "gem text") == 1 && visibility(&v, "gem sys") == 1, "gemini visibility");
	CHECK(info.ntools == 1 && !strcmp(info.tools[0], "lookup"), "gemini tools");

	CHECK(parse("acme.openai.azure.com", "/openai/deployments/prod-gpt4/chat/completions?api-version=2024-02-01",
		    "{\"messages\":[{\"role\":\"user\",\"content\":\"az text\"}]}", &info, &v) == 0, "azure parse");
	CHECK(info.provider == PROVIDER_AZURE_OPENAI && !strcmp(info.model, "prod-gpt4"), "azure deployment: %s", info.model);
	CHECK(visibility(&v, "az text") == 1, "azure visibility");

	CHECK(parse("bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream",
		    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"br text\"}]}],\"system\":[{\"text\":\"br sys\"}]}",
		    &info, &v) == 0, "bedrock parse");
	CHECK(!strcmp(info.model, "anthropic.claude-3-sonnet-20240229-v1:0") && info.stream, "bedrock model: %s", info.model);
	CHECK(visibility(&v, "br text") == 1 && visibility(&v, "br sys") == 1, "bedrock visibility");
}

TEST(providers_generic_and_non_json)
{
	struct provider_info info;
	struct vis v;
	CHECK(parse("llm.example", "/api", "{\"q\":\"anything\",\"meta\":{\"k\":\"v\"}}", &info, &v) == 0, "parse");
	CHECK(info.provider == PROVIDER_GENERIC && visibility(&v, "anything") == 1 && visibility(&v, "v") == 1,
	      "generic: every string visible");
	CHECK(parse("api.openai.com", "/v1/x", "plain text body", &info, &v) == 0 && !info.is_json && !info.invalid_json &&
	      v.n == 0, "non-JSON body is text");
	CHECK(parse("api.openai.com", "/v1/x", "{\"a\":\"b\",}", &info, &v) == 0 && info.invalid_json && v.n == 0,
	      "invalid JSON reports no strings");
	CHECK(parse("api.openai.com", "/v1/x", "\xef\xbb\xbf{\"a\":\"b\"}", &info, &v) == 0 && info.invalid_json && v.n == 0,
	      "JSON after a UTF-8 byte order mark is invalid JSON, not text");
	/* two "model" members: the provider's parser (Python, JavaScript, Go)
	 * keeps the last, so the policy must judge the last */
	CHECK(parse("api.openai.com", "/v1/chat/completions",
		    "{\"model\":\"gpt-4o-mini\",\"messages\":[],\"model\":\"o1-preview\"}", &info, &v) == 0 &&
	      !strcmp(info.model, "o1-preview"), "duplicate model: judged %s", info.model);
}

TEST(providers_response_text)
{
	struct buf out = { 0 };
	const char *ev1 = "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}";
	const char *ev2 = "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"lo \\u00e9\"}}";
	const char *ev3 = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}]}}]}";
	CHECK(provider_response_text(PROVIDER_OPENAI, ev1, strlen(ev1), &out) == 0, "openai delta");
	CHECK(provider_response_text(PROVIDER_ANTHROPIC, ev2, strlen(ev2), &out) == 0, "anthropic delta");
	CHECK(provider_response_text(PROVIDER_GEMINI, ev3, strlen(ev3), &out) == 0, "gemini chunk");
	CHECK(out.len == 9 && !memcmp(out.data, "Hello \xc3\xa9!", 9), "response text: %.*s", (int)out.len, out.data);
	CHECK(provider_response_text(PROVIDER_OPENAI, "[DONE]", 6, &out) == -EINVAL, "non-JSON payload");
	buf_free(&out);
}

/* Usage of a response given as SSE payloads (or one whole document). */
static struct provider_usage usage_of(const char *const *docs)
{
	struct provider_usage u;
	provider_usage_init(&u);
	for (; *docs; docs++)
		provider_usage_scan(&u, *docs, strlen(*docs));
	return u;
}

/* Cached prompt tokens of each provider's shapes, streamed or not; the
 * prompt count is every prompt token (Anthropic's and Bedrock's cache
 * reads and writes are outside their input count, OpenAI's and Gemini's
 * inside), so cached is always a part of it. */
TEST(providers_usage_cached_tokens)
{
	static const char *const oa_chat[] = {
		"{\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":300,\"total_tokens\":2306,"
		"\"prompt_tokens_details\":{\"cached_tokens\":1920,\"audio_tokens\":0},"
		"\"completion_tokens_details\":{\"reasoning_tokens\":0}}}", NULL };
	static const char *const oa_stream[] = {
		"{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}",
		"{\"choices\":[],\"usage\":{\"prompt_tokens\":1500,\"completion_tokens\":7,"
		"\"prompt_tokens_details\":{\"cached_tokens\":1024}}}", NULL };
	static const char *const oa_responses[] = {
		"{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3000,"
		"\"input_tokens_details\":{\"cached_tokens\":2048},\"output_tokens\":12}}}", NULL };
	static const char *const an_stream[] = {
		"{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":21,"
		"\"cache_creation_input_tokens\":188,\"cache_read_input_tokens\":4000,\"output_tokens\":1}}}",
		"{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}",
		"{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":55}}", NULL };
	static const char *const gm_stream[] = {
		"{\"usageMetadata\":{\"promptTokenCount\":5000,\"cachedContentTokenCount\":4096,"
		"\"candidatesTokenCount\":3}}",
		"{\"usageMetadata\":{\"promptTokenCount\":5000,\"cachedContentTokenCount\":4096,"
		"\"candidatesTokenCount\":40}}", NULL };
	static const char *const br[] = {
		"{\"usage\":{\"inputTokens\":10,\"outputTokens\":5,\"cacheReadInputTokens\":900,"
		"\"cacheWriteInputTokens\":90}}", NULL };
	static const char *const none[] = { "{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}", NULL };
	static const struct {
		const char *name;
		const char *const *docs;
		int64_t prompt, completion, cached;
	} cases[] = {
		{ "openai chat", oa_chat, 2006, 300, 1920 },
		{ "openai chat stream (include_usage)", oa_stream, 1500, 7, 1024 },
		{ "openai responses", oa_responses, 3000, 12, 2048 },
		{ "anthropic stream", an_stream, 21 + 188 + 4000, 55, 4000 },
		{ "gemini stream", gm_stream, 5000, 40, 4096 },
		{ "bedrock converse", br, 10 + 900 + 90, 5, 900 },
		{ "no cache reported", none, 10, 2, -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct provider_usage u = usage_of(cases[i].docs);
		CHECK(provider_usage_prompt(&u) == cases[i].prompt && u.completion == cases[i].completion &&
			      u.cached == cases[i].cached,
		      "%s: prompt %lld completion %lld cached %lld, want %lld %lld %lld", cases[i].name,
		      (long long)provider_usage_prompt(&u), (long long)u.completion, (long long)u.cached,
		      (long long)cases[i].prompt, (long long)cases[i].completion, (long long)cases[i].cached);
	}
	struct provider_usage u;
	provider_usage_init(&u);
	CHECK(provider_usage_prompt(&u) == -1 && u.cached == -1, "nothing reported is unknown, not 0");
	/* A hostile answer: a huge number is cut at 15 digits, a key without a
	 * number changes nothing. */
	const char *big = "{\"cached_tokens\":99999999999999999999999,\"prompt_tokens\":\"x\"}";
	provider_usage_scan(&u, big, strlen(big));
	CHECK(u.cached == 999999999999999LL && u.prompt == -1, "hostile usage: cached %lld prompt %lld",
	      (long long)u.cached, (long long)u.prompt);
}

/* One sample per API provider of the table: a new provider without one
 * fails providers_table_walk, so its adapter gets tested. */
struct sample {
	const char *name, *host, *path, *request, *answer;
	long long prompt, completion, cached;   /* what the answer's usage says */
};

static const struct sample samples[] = {
	{ "openai", "api.openai.com", "/v1/chat/completions",
	  "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}",
	  "{\"choices\":[{\"message\":{\"content\":\"hello\"}}],\"usage\":{\"prompt_tokens\":11,"
	  "\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":5}}}", 11, 7, 5 },
	{ "anthropic", "api.anthropic.com", "/v1/messages",
	  "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}",
	  "{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"usage\":{\"input_tokens\":11,"
	  "\"output_tokens\":7,\"cache_read_input_tokens\":5}}", 16, 7, 5 },
	{ "azure_openai", "myres.openai.azure.com", "/openai/deployments/gpt4o/chat/completions",
	  "{\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}",
	  "{\"choices\":[{\"message\":{\"content\":\"hello\"}}],\"usage\":{\"prompt_tokens\":11,"
	  "\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":5}}}", 11, 7, 5 },
	{ "gemini", "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.0-flash:generateContent",
	  "{\"contents\":[{\"parts\":[{\"text\":\"hi there\"}]}]}",
	  "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hello\"}]}}],\"usageMetadata\":"
	  "{\"promptTokenCount\":11,\"candidatesTokenCount\":7,\"cachedContentTokenCount\":5}}", 11, 7, 5 },
	{ "bedrock", "bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-v2/converse",
	  "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi there\"}]}]}",
	  "{\"output\":{\"message\":{\"content\":[{\"text\":\"hello\"}]}},\"usage\":{\"inputTokens\":11,"
	  "\"outputTokens\":7,\"cacheReadInputTokens\":5}}", 16, 7, 5 },
	{ "mistral", "api.mistral.ai", "/v1/chat/completions",
	  "{\"model\":\"mistral-large\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}",
	  "{\"choices\":[{\"message\":{\"content\":\"hello\"}}],\"usage\":{\"prompt_tokens\":11,"
	  "\"completion_tokens\":7}}", 11, 7, -1 },
};

static const struct sample *sample_of(const char *name)
{
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		if (!strcmp(samples[i].name, name))
			return &samples[i];
	return NULL;
}

TEST(providers_table_walk)
{
	size_t n;
	const struct provider_ops *const *all = provider_api_all(&n);
	CHECK(n >= 6, "the table lists %zu API providers", n);
	for (size_t i = 0; i < n; i++) {
		const struct provider_ops *ops = all[i];
		const struct sample *s = sample_of(ops->name);
		CHECK(s, "provider %s has no sample in this test", ops->name);
		for (size_t k = 0; k < i; k++)
			CHECK(all[k]->id != ops->id && strcmp(all[k]->name, ops->name), "%s listed twice", ops->name);
		CHECK(provider_ops(ops->id) == ops && !strcmp(provider_name(ops->id), ops->name) &&
		      provider_known(ops->name), "%s: not found by its id or name", ops->name);
		CHECK(ops->domains || ops->suffixes || ops->host, "%s: no host to be identified by", ops->name);
		CHECK(provider_identify(s->host, NULL) == ops->id, "%s: %s identified as %s", ops->name, s->host,
		      provider_name(provider_identify(s->host, NULL)));
		CHECK(!ops->path || provider_identify("gateway.internal", s->path) == ops->id,
		      "%s: its path shape %s is not recognised on an unknown host", ops->name, s->path);

		struct provider_info info;
		struct vis v;
		CHECK(parse(s->host, s->path, s->request, &info, &v) == 0 && info.is_json && info.model[0] &&
		      visibility(&v, "hi there") == 1, "%s: request: model '%s', prompt visible %d", ops->name,
		      info.model, visibility(&v, "hi there"));

		char body[512];
		int bl = provider_error_body(ops->id, 403, "blocked_by_rule", "rule r", body, sizeof(body));
		CHECK(ops->error_body && bl > 0 && json_scan(body, (size_t)bl, NULL, NULL) == 0 &&
		      strstr(body, "\"Vigil: rule r\""), "%s: error body %s", ops->name, bl > 0 ? body : "(none)");

		struct buf text = { 0 };
		int rc = provider_response_text(ops->id, s->answer, strlen(s->answer), &text);
		bool hello = rc == 0 && text.len == 5 && !memcmp(text.data, "hello", 5);
		buf_free(&text);
		CHECK(hello, "%s: answer text not read (rc %d)", ops->name, rc);

		CHECK(ops->usage && ops->usage[0].key, "%s: no usage keys", ops->name);
		struct provider_usage u;
		provider_usage_init(&u);
		provider_usage_scan(&u, s->answer, strlen(s->answer));
		CHECK(provider_usage_prompt(&u) == s->prompt && u.completion == s->completion && u.cached == s->cached,
		      "%s: usage %lld/%lld cached %lld, want %lld/%lld cached %lld", ops->name,
		      (long long)provider_usage_prompt(&u), (long long)u.completion, (long long)u.cached,
		      s->prompt, s->completion, s->cached);
		for (const char *const *r = ops->realtime; r && *r; r++)
			CHECK(provider_realtime_path(ops->id, *r), "%s: realtime %s", ops->name, *r);
	}
	/* the generic fallback answers in OpenAI's error shape */
	char body[512];
	CHECK(provider_error_body(PROVIDER_GENERIC, 502, "upstream", "down", body, sizeof(body)) > 0 &&
	      strstr(body, "\"code\":\"upstream\""), "generic error body %s", body);
	CHECK(!provider_realtime_path(PROVIDER_ANTHROPIC, "/v1/realtime") &&
	      provider_query_key(PROVIDER_GEMINI, "key", 3) && !provider_query_key(PROVIDER_OPENAI, "key", 3),
	      "realtime and query keys belong to their provider only");
}
