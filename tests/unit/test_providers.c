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

static int vis_cb(void *ctx, size_t off, size_t len, bool visible)
{
	struct vis *v = ctx;
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
