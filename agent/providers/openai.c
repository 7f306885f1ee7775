/* openai: api.openai.com (Chat Completions, legacy Completions, the
 * Responses API, Realtime over WebSocket).
 *
 * Its shapes are exported (openai.h) because Azure OpenAI and Mistral
 * speak the same JSON. Data and pure functions only. Layer: providers/.
 */
#include "providers/openai.h"

#include "jsonw.h"

const char *const openai_request_text[] = {
	"messages[*].content", "messages[*].content[*].text",
	"messages[*].tool_calls[*].function.arguments",
	"messages[*].function_call.arguments",
	"prompt", "prompt[*]", "suffix", "instructions",
	"input", "input[*]", "input[*].content", "input[*].content[*].text",
	"input[*].output", "input[*].arguments",
	"tools.**", "functions.**", NULL
};

const char *const openai_request_tools[] = {
	"tools[*].function.name", "tools[*].name", "functions[*].name", NULL
};

const char *const openai_answer_text[] = {
	/* chat / completions, streamed and whole */
	"choices[*].delta.content", "choices[*].message.content", "choices[*].text",
	"choices[*].delta.tool_calls[*].function.arguments",
	"choices[*].message.tool_calls[*].function.arguments",
	/* Responses API */
	"delta", "output[*].content[*].text", "output_text", NULL
};

const char *const openai_stream_text[] = {
	"choices[*].delta.content",   /* chat */
	"choices[*].text",            /* legacy completions */
	"delta",                      /* Responses output_text.delta */
	NULL
};

const char *const openai_stream_json[] = { "choices[*].delta.tool_calls[*].function.arguments", NULL };

/* chat reports prompt/completion_tokens, Responses input/output_tokens;
 * cached tokens are a part of the prompt's */
const struct provider_usage_key openai_usage[] = {
	{ "\"prompt_tokens\"", PROVIDER_USAGE_PROMPT },
	{ "\"input_tokens\"", PROVIDER_USAGE_PROMPT },
	{ "\"completion_tokens\"", PROVIDER_USAGE_COMPLETION },
	{ "\"output_tokens\"", PROVIDER_USAGE_COMPLETION },
	{ "\"cached_tokens\"", PROVIDER_USAGE_CACHED },
	{ NULL, 0 }
};

static const char *const realtime[] = { "/v1/realtime", NULL };

/* {"error": {"message", "type", "param", "code"}}: the SDKs raise on type
 * and show message */
void openai_error_body(struct jsonw *w, int status, const char *code, const char *msg)
{
	jsonw_key(w, "error");
	jsonw_obj_open(w);
	jsonw_str(w, "message", msg);
	jsonw_str(w, "type", status == 429 ? "rate_limit_exceeded" : status == 403 ? "vigil_policy" : "vigil_error");
	jsonw_null(w, "param");
	jsonw_str(w, "code", code);
	jsonw_obj_close(w);
}

static const char *const domains[] = { "api.openai.com", NULL };

const struct provider_ops provider_openai = {
	.id = PROVIDER_OPENAI,
	.name = "openai",
	.domains = domains,
	.realtime = realtime,
	OPENAI_SHAPES,
};
