/* anthropic: api.anthropic.com (the Messages API, streamed as typed SSE
 * events: message_start, content_block_delta, message_delta, ...).
 *
 * Data and pure functions only. Layer: providers/.
 */
#include "providers/providers.h"

#include "jsonw.h"

static const char *const request_text[] = {
	"system", "system[*].text",
	"messages[*].content", "messages[*].content[*].text",
	"messages[*].content[*].content", "messages[*].content[*].content[*].text",
	"messages[*].content[*].input.**", "tools.**", NULL
};

static const char *const request_tools[] = { "tools[*].name", NULL };

static const char *const answer_text[] = {
	"content[*].text", "delta.text", "delta.partial_json", "content_block.text", NULL
};

static const char *const stream_text[] = { "delta.text", NULL };           /* content_block_delta */
static const char *const stream_json[] = { "delta.partial_json", NULL };   /* input_json_delta */

/* usage comes in message_start and again, cumulative, in message_delta;
 * cache reads and writes are counted apart from input_tokens */
static const struct provider_usage_key usage[] = {
	{ "\"input_tokens\"", PROVIDER_USAGE_PROMPT },
	{ "\"output_tokens\"", PROVIDER_USAGE_COMPLETION },
	{ "\"cache_read_input_tokens\"", PROVIDER_USAGE_CACHED },
	{ "\"cache_read_input_tokens\"", PROVIDER_USAGE_UNCOUNTED_READ },
	{ "\"cache_creation_input_tokens\"", PROVIDER_USAGE_UNCOUNTED_WRITE },
	{ NULL, 0 }
};

/* {"type": "error", "error": {"type", "message"}}: the SDK maps the inner
 * type to its exception class */
static void error_body(struct jsonw *w, int status, const char *code, const char *msg)
{
	(void)code;
	const char *type = status == 403 ? "permission_error" : status == 429 ? "rate_limit_error" :
			   status == 413 ? "request_too_large" : status < 500 ? "invalid_request_error" :
			   "api_error";
	jsonw_str(w, "type", "error");
	jsonw_key(w, "error");
	jsonw_obj_open(w);
	jsonw_str(w, "type", type);
	jsonw_str(w, "message", msg);
	jsonw_obj_close(w);
}

static const char *const domains[] = { "api.anthropic.com", NULL };

const struct provider_ops provider_anthropic = {
	.id = PROVIDER_ANTHROPIC,
	.name = "anthropic",
	.domains = domains,
	.request_text = request_text,
	.request_tools = request_tools,
	.answer_text = answer_text,
	.stream_text = stream_text,
	.stream_json = stream_json,
	.usage = usage,
	.error_body = error_body,
};
