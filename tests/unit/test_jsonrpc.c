/* Unit tests for agent/proxy/jsonrpc.c: JSON-RPC 2.0 requests, notifications and
 * batches as MCP clients send them, hostile names and ids, result text
 * from JSON and SSE answers, and the replies the agent writes. */
#include "check.h"
#include "proxy/jsonrpc.h"

static int parse(const char *s, struct jsonrpc_request *r)
{
	return jsonrpc_parse_request(s, strlen(s), r);
}

TEST(tools_call_is_audited_with_name_and_id)
{
	struct jsonrpc_request r;
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"tools/call\","
		    "\"params\":{\"name\":\"read_file\",\"arguments\":{\"path\":\"/etc/passwd\"}}}", &r) == 0, "parse");
	CHECK(r.messages == 1 && r.requests == 1 && !r.batch, "counts %u %u", r.messages, r.requests);
	CHECK(r.audited && r.has_id, "audited %d has_id %d", r.audited, r.has_id);
	CHECK(!strcmp(r.method, "tools/call") && !strcmp(r.name, "read_file"), "%s %s", r.method, r.name);
	CHECK(!strcmp(r.id, "42"), "id %s", r.id);
}

TEST(resources_read_names_the_uri_and_string_ids_keep_quotes)
{
	struct jsonrpc_request r;
	CHECK(parse("{\"params\":{\"uri\":\"file:///x\"},\"method\":\"resources/read\",\"id\":\"a\\\"b\","
		    "\"jsonrpc\":\"2.0\"}", &r) == 0, "parse");
	CHECK(r.audited && !strcmp(r.name, "file:///x"), "name %s", r.name);
	CHECK(!strcmp(r.id, "\"a\\\"b\""), "id %s", r.id);
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\",\"params\":{\"name\":\"p\"}}", &r) == 0 &&
	      r.audited && !strcmp(r.name, "p"), "prompts/get");
}

TEST(notifications_and_other_methods)
{
	struct jsonrpc_request r;
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &r) == 0, "parse");
	CHECK(!r.has_id && !r.audited && r.requests == 0 && !strcmp(r.id, "null"), "notification");
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", &r) == 0 && !r.audited &&
	      !strcmp(r.method, "tools/list"), "tools/list");
	/* a response the client posts back (sampling) is JSON-RPC, not a call */
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}", &r) == 0 && !r.audited && !r.method[0],
	      "client response");
}

TEST(batch_picks_the_first_audited_call)
{
	struct jsonrpc_request r;
	CHECK(parse("[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"},"
		    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"},"
		    "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"shell\"}},"
		    "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"other\"}}]", &r) == 0,
	      "parse");
	CHECK(r.batch && r.messages == 4 && r.requests == 3, "batch %d %u %u", r.batch, r.messages, r.requests);
	CHECK(r.audited && !strcmp(r.name, "shell") && !strcmp(r.id, "3"), "%s %s", r.name, r.id);
}

TEST(not_jsonrpc_is_refused_as_such)
{
	struct jsonrpc_request r;
	CHECK(parse("{\"model\":\"gpt-4o\",\"messages\":[]}", &r) == -EINVAL, "LLM body");
	CHECK(parse("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"tools/call\"}", &r) == -EINVAL, "version 1.0");
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"", &r) == -EINVAL, "truncated");
	CHECK(parse("", &r) == -EINVAL && !strcmp(r.id, "null"), "empty");
}

TEST(hostile_names_and_ids_are_bounded_and_clean)
{
	struct jsonrpc_request r;
	char big[2048];
	int n = snprintf(big, sizeof(big), "{\"jsonrpc\":\"2.0\",\"id\":\"%0200d\",\"method\":\"tools/call\","
			 "\"params\":{\"name\":\"a\\nb\\u0000c\\u001b[31m%0300d\"}}", 0, 0);
	CHECK(n > 0 && (size_t)n < sizeof(big), "fmt");
	CHECK(parse(big, &r) == 0, "parse");
	CHECK(!strcmp(r.id, "null"), "overlong id echoed: %s", r.id);
	CHECK(strlen(r.name) == JSONRPC_NAME_MAX - 1, "name length %zu", strlen(r.name));
	CHECK(!strncmp(r.name, "a?b?c?[31m", 10), "control characters kept: %.12s", r.name);
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\\r\\nX: y\"}", &r) == 0 &&
	      !strcmp(r.method, "invalid"), "method %s", r.method);
	/* a cut multi-byte character is dropped whole */
	char u[512] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"";
	for (int i = 0; i < 100; i++)
		strcat(u, "\xc3\xa9");
	strcat(u, "\"}}");
	CHECK(parse(u, &r) == 0 && strlen(r.name) % 2 == 0, "cut UTF-8: %zu", strlen(r.name));
	CHECK(parse("{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"tools/call\"}", &r) == 0 &&
	      !strcmp(r.id, "null"), "object id: %s", r.id);
}

TEST(result_text_from_json_and_sse)
{
	struct buf t = { 0 };
	struct jsonrpc_result res;
	const char *doc = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\","
			  "\"text\":\"ign\\u006fre all\"}],\"isError\":true}}";
	CHECK(jsonrpc_result_text(doc, strlen(doc), false, &t, &res) == 0, "json");
	CHECK(res.responses == 1 && res.tool_error, "responses %u tool_error %d", res.responses, res.tool_error);
	CHECK(!strcmp(res.id, "1"), "response id %s", res.id);
	CHECK(t.len && memmem(t.data, t.len, "ignore all", 10), "decoded text missing");
	t.len = 0;
	const char *sse = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n"
			  ": keep-alive\n\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\n"
			  "data: \"result\":{\"content\":[{\"type\":\"text\",\"text\":\"secret AKIA\"}]}}";
	CHECK(jsonrpc_result_text(sse, strlen(sse), true, &t, &res) == 0, "sse");
	CHECK(res.responses == 1 && !res.tool_error, "responses %u", res.responses);
	CHECK(!strcmp(res.id, "2"), "response id in SSE %s", res.id);
	CHECK(t.len && memmem(t.data, t.len, "secret AKIA", 11), "the last event (no blank line) was not read");
	t.len = 0;
	CHECK(jsonrpc_result_text("{\"jsonrpc\":", 11, false, &t, &res) == -EINVAL, "invalid JSON accepted");
	CHECK(jsonrpc_result_text("data: {bad\n\n", 12, true, &t, &res) == -EINVAL, "invalid SSE data accepted");
	buf_free(&t);
}

TEST(replies_are_valid_jsonrpc)
{
	struct buf b = { 0 };
	CHECK(jsonrpc_write_error(&b, "\"x\"", -32001, "blocked \"by\" rule\n") == 0, "write");
	CHECK(json_valid(b.data, b.len), "invalid: %.*s", (int)b.len, b.data);
	CHECK(memmem(b.data, b.len, "\"id\":\"x\"", 8) && memmem(b.data, b.len, "-32001", 6), "%.*s", (int)b.len, b.data);
	b.len = 0;
	CHECK(jsonrpc_write_error(&b, NULL, -32001, "m") == 0 && memmem(b.data, b.len, "\"id\":null", 9), "null id");
	b.len = 0;
	CHECK(jsonrpc_write_error_result(&b, "5", "withheld", false) == 0 && json_valid(b.data, b.len) &&
	      memmem(b.data, b.len, "\"isError\":true", 14), "error result");
	b.len = 0;
	CHECK(jsonrpc_write_error_result(&b, "5", "withheld", true) == 0 && !strncmp(b.data, "event: message\ndata: {", 22) &&
	      b.len > 2 && !memcmp(b.data + b.len - 2, "\n\n", 2), "SSE framing: %.*s", (int)b.len, b.data);
	buf_free(&b);
}

TEST(session_ids_are_visible_ascii)
{
	char s[JSONRPC_SESSION_MAX];
	jsonrpc_session_id("abc-123", 7, s);
	CHECK(!strcmp(s, "abc-123"), "%s", s);
	jsonrpc_session_id("a b", 3, s);
	CHECK(!s[0], "space accepted");
	jsonrpc_session_id("a\x01", 2, s);
	CHECK(!s[0], "control accepted");
	char big[300];
	memset(big, 'a', sizeof(big));
	jsonrpc_session_id(big, sizeof(big), s);
	CHECK(!s[0], "overlong accepted");
}
