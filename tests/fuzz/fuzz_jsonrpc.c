/* libFuzzer target: the JSON-RPC / MCP parser on bodies from clients and
 * MCP servers: no crash, no leak, names always NUL-terminated, bounded and
 * free of control characters, ids either null or a valid JSON token, and
 * what the agent writes back is always valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "proxy/jsonrpc.h"

static void clean(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	if (n >= cap)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jsonrpc_request r;
	struct jsonrpc_result res;
	struct buf text = { 0 }, out = { 0 };
	const char *body = (const char *)data;

	jsonrpc_parse_request(body, size, &r);
	clean(r.method, sizeof(r.method));
	clean(r.name, sizeof(r.name));
	clean(r.id, sizeof(r.id));
	if (!json_valid(r.id, strlen(r.id)))
		abort();
	if (jsonrpc_write_error(&out, r.id, -32001, r.name) == 0 && !json_valid(out.data, out.len))
		abort();
	out.len = 0;
	if (jsonrpc_write_error_result(&out, r.id, r.name, false) == 0 && !json_valid(out.data, out.len))
		abort();
	jsonrpc_result_text(body, size, false, &text, &res);
	text.len = 0;
	jsonrpc_result_text(body, size, true, &text, &res);
	buf_free(&text);
	buf_free(&out);
	return 0;
}
