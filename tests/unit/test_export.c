/* export: what a SIEM receives. Each format is one line per event, carries
 * the identity, action and finding types, and no field can break the line
 * or the format's own framing (newlines, CEF '|' and '=', RFC 5424 ']'). */
#include "check.h"
#include "export.h"

static struct store_finding fd[2] = { { "EMAIL", 2 }, { "AWS_ACCESS_KEY", 1 } };

static struct store_event sample(void)
{
	struct store_event e = {
		.time_us = 1700000000123456LL, .event_id = "e-1", .agent_id = "ws-1", .boot_id = "b", .seq = 7,
		.host = "ws-1", .kind = "request", .user = "alice", .uid = 1000, .pid = 42, .exe = "/usr/bin/curl",
		.sni = "api.openai.com", .dst_ip = "1.2.3.4", .dst_port = 443, .provider = "openai", .model = "gpt-4o",
		.action = "block", .rule = "no-secrets", .findings = fd, .nfindings = 2, .injection_score = -1,
		.prompt_tokens = -1, .completion_tokens = -1,
	};
	return e;
}

static char *render(enum export_format f, const struct store_event *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	export_line(f, e, "collector-1", m);
	fclose(m);
	return buf;
}

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

TEST(jsonl_is_the_contract_event)
{
	struct store_event e = sample();
	char *s = render(EXPORT_JSONL, &e);
	CHECK(lines(s) == 1, "not one line: %s", s);
	CHECK(strstr(s, "\"time\":\"2023-11-14T22:13:20.123456Z\"") && strstr(s, "\"user\":\"alice\"") &&
		      strstr(s, "\"findings\":[{\"type\":\"EMAIL\",\"count\":2},{\"type\":\"AWS_ACCESS_KEY\",\"count\":1}]") &&
		      strstr(s, "\"action\":\"block\"") && strstr(s, "\"seq\":7"),
	      "fields missing: %s", s);
	free(s);
}

TEST(cef_escapes_its_delimiters)
{
	struct store_event e = sample();
	e.user = "mal|ory=x\nfoo";
	e.kind = "req|uest";
	char *s = render(EXPORT_CEF, &e);
	CHECK(lines(s) == 1, "a newline in a field split the CEF line: %s", s);
	CHECK(!strncmp(s, "CEF:0|Vigil|vigil-collector|1|req\\|uest|", 40), "header: %s", s);
	CHECK(strstr(s, " suser=mal|ory\\=x\\nfoo ") && strstr(s, " act=block") && strstr(s, "cs3=EMAIL:2,AWS_ACCESS_KEY:1"),
	      "extension escaping or fields: %s", s);
	CHECK(strstr(s, "|7|"), "a block is not severity 7: %s", s);
	free(s);
}

TEST(syslog_is_rfc5424_with_escaped_structured_data)
{
	struct store_event e = sample();
	e.user = "a\"b]c\\d";
	char *s = render(EXPORT_SYSLOG, &e);
	CHECK(lines(s) == 1, "not one line: %s", s);
	CHECK(!strncmp(s, "<108>1 2023-11-14T22:13:20.123456Z collector-1 vigil-collector - request [vigil@32473 ", 86),
	      "header: %s", s);
	CHECK(strstr(s, " user=\"a\\\"b\\]c\\\\d\""), "PARAM-VALUE escaping: %s", s);
	free(s);
}

TEST(format_names)
{
	enum export_format f;
	CHECK(export_format_parse("cef", &f) == 0 && f == EXPORT_CEF, "cef");
	CHECK(export_format_parse("syslog", &f) == 0 && f == EXPORT_SYSLOG, "syslog");
	CHECK(export_format_parse("jsonl", &f) == 0 && f == EXPORT_JSONL, "jsonl");
	CHECK(export_format_parse("xml", &f) == -EINVAL, "xml accepted");
}

/* The MCP columns (server, method, tool, session) in every export format;
 * tool_calls, which has no column, from the signed event. */
TEST(every_format_carries_the_mcp_fields)
{
	struct store_event e = sample();
	struct vigil_event v;
	uint8_t raw[2048];
	vigil_event_init(&v, "mcp");
	v.agent_id = "ws-1";
	v.tool_calls = "Bash:2";
	size_t n = evcodec_event_encode(&v, true, raw, sizeof(raw));
	CHECK(n > 0 && n <= sizeof(raw), "encode %zu", n);
	e.kind = "mcp";
	e.raw = raw;
	e.raw_len = n;
	e.mcp_server = "mcp.corp.example";
	e.mcp_method = "tools/call";
	e.tool = "read_file";
	e.mcp_session = "s-1";
	char *s = render(EXPORT_JSONL, &e);
	CHECK(strstr(s, "\"mcp_server\":\"mcp.corp.example\"") && strstr(s, "\"mcp_method\":\"tools/call\"") &&
	      strstr(s, "\"tool\":\"read_file\"") && strstr(s, "\"mcp_session\":\"s-1\"") &&
	      strstr(s, "\"tool_calls\":\"Bash:2\""), "jsonl: MCP fields missing: %s", s);
	free(s);
	s = render(EXPORT_CEF, &e);
	CHECK(strstr(s, " cs6Label=tool cs6=read_file") && strstr(s, " flexString1=mcp.corp.example") &&
	      strstr(s, " flexString2=tools/call"), "cef: MCP fields missing: %s", s);
	free(s);
	s = render(EXPORT_SYSLOG, &e);
	CHECK(strstr(s, " mcp_server=\"mcp.corp.example\"") && strstr(s, " tool=\"read_file\"") &&
	      strstr(s, " mcp_method=\"tools/call\"") && strstr(s, " mcp_session=\"s-1\""), "syslog: MCP fields missing: %s", s);
	free(s);
	s = render(EXPORT_OTLP, &e);
	CHECK(strstr(s, "\"gen_ai.tool.name\"") && strstr(s, "\"mcp.method.name\"") && strstr(s, "\"mcp.session.id\"") &&
	      strstr(s, "mcp.corp.example"), "otlp: MCP fields missing: %s", s);
	free(s);
	s = render(EXPORT_OCSF, &e);
	CHECK(strstr(s, "\"vigil.tool\":\"read_file\"") && strstr(s, "\"vigil.mcp_server\":\"mcp.corp.example\""),
	      "ocsf: MCP fields missing: %s", s);
	free(s);
	/* An LLM request has none of them: no empty labels in CEF. */
	e = sample();
	s = render(EXPORT_CEF, &e);
	CHECK(!strstr(s, "cs6Label") && !strstr(s, "flexString1Label"), "cef: empty MCP labels: %s", s);
	free(s);
}

TEST(otlp_and_ocsf_carry_cached_tokens)
{
	struct store_event e = sample();
	e.prompt_tokens = 120;
	e.cached_tokens = 100;
	char *s = render(EXPORT_OTLP, &e);
	CHECK(strstr(s, "\"gen_ai.usage.cache_read.input_tokens\""), "otlp: cached tokens missing: %s", s);
	free(s);
	s = render(EXPORT_OCSF, &e);
	CHECK(strstr(s, "\"vigil.cached_tokens\":100"), "ocsf: cached tokens missing: %s", s);
	free(s);
	/* unknown (-1): not written as a count */
	e.cached_tokens = -1;
	s = render(EXPORT_OTLP, &e);
	CHECK(!strstr(s, "cache_read"), "otlp: an unknown cached count was written: %s", s);
	free(s);
}
