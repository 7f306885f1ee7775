/* Unit tests for agent/content/toolcall.c: tool calls in each provider's answer
 * shape, JSON and streamed, names only, hostile names. */
#include "check.h"
#include "content/toolcall.h"

static int scan(const char *doc, struct toolcall_set *s)
{
	return toolcall_scan(doc, strlen(doc), s, NULL);
}

TEST(each_provider_shape)
{
	struct toolcall_set s;
	memset(&s, 0, sizeof(s));
	CHECK(scan("{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
		   "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"name\\\":\\\"x\\\"}\"}}]}}]}", &s) == 1,
	      "openai chat");
	CHECK(scan("{\"output\":[{\"type\":\"message\",\"content\":[]},{\"name\":\"lookup\",\"type\":\"function_call\","
		   "\"arguments\":\"{}\"}],\"tools\":[{\"type\":\"function\",\"name\":\"declared_only\"}]}", &s) == 1,
	      "responses");
	CHECK(scan("{\"content\":[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"Bash\","
		   "\"input\":{\"name\":\"not a tool\"}}]}", &s) == 1, "anthropic");
	CHECK(scan("{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\","
		   "\"args\":{}}}]}}]}", &s) == 1, "gemini");
	CHECK(!strcmp(toolcall_summary(&s), "get_weather:2,lookup:1,Bash:1"), "summary %s", s.summary);
}

TEST(stream_events_and_non_calls)
{
	struct toolcall_set s;
	memset(&s, 0, sizeof(s));
	CHECK(scan("{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
		   "\"id\":\"toolu\",\"name\":\"run_shell\",\"input\":{}}}", &s) == 1, "anthropic start");
	CHECK(scan("{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\","
		   "\"partial_json\":\"{\\\"name\\\":1}\"}}", &s) == 0, "delta");
	CHECK(scan("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\"}}]}}]}", &s) == 1,
	      "openai delta");
	CHECK(scan("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}", &s) == 0,
	      "arguments only");
	CHECK(scan("{\"user\":{\"name\":\"bob\"},\"type\":\"tool_use\"}", &s) == 0, "type on another object");
	CHECK(scan("not json \"name\"", &s) == 0, "not JSON");
	CHECK(s.n == 2, "names %u", s.n);
}

TEST(hostile_names_are_bounded_and_clean)
{
	struct toolcall_set s;
	char doc[1024];
	memset(&s, 0, sizeof(s));
	snprintf(doc, sizeof(doc), "{\"type\":\"tool_use\",\"name\":\"a:b,c\\nd%0200d\"}", 0);
	CHECK(scan(doc, &s) == 1, "scan");
	CHECK(strlen(s.names[0]) == PROVIDER_TOOL_NAME_MAX - 1, "length %zu", strlen(s.names[0]));
	CHECK(!strncmp(s.names[0], "a_b_c_d", 7), "name %.8s", s.names[0]);
	for (int i = 0; i < TOOLCALL_MAX + 4; i++) {
		snprintf(doc, sizeof(doc), "{\"type\":\"tool_use\",\"name\":\"t%d\"}", i);
		scan(doc, &s);
	}
	CHECK(s.n == TOOLCALL_MAX && s.truncated, "n %u truncated %d", s.n, s.truncated);
}
