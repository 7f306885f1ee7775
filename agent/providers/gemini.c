/* gemini: generativelanguage.googleapis.com and Vertex AI
 * (*aiplatform.googleapis.com): models/M:generateContent and
 * :streamGenerateContent, the model in the path, the API key possibly in
 * the query (?key=).
 *
 * Data and pure functions only. Layer: providers/.
 */
#include "providers/providers.h"

#include <string.h>

#include "jsonw.h"

static const char *const request_text[] = {
	"contents[*].parts[*].text", "systemInstruction.parts[*].text",
	"system_instruction.parts[*].text",
	"contents[*].parts[*].functionResponse.**", "contents[*].parts[*].function_response.**",
	"contents[*].parts[*].functionCall.args.**", "tools.**", NULL
};

static const char *const request_tools[] = {
	"tools[*].functionDeclarations[*].name", "tools[*].function_declarations[*].name", NULL
};

/* whole, SSE chunks (alt=sse), and the JSON-array stream without alt=sse */
static const char *const answer_text[] = {
	"candidates[*].content.parts[*].text", "[*].candidates[*].content.parts[*].text", NULL
};

static const char *const stream_text[] = { "candidates[*].content.parts[*].text", NULL };
static const char *const none[] = { NULL };

/* usageMetadata, repeated cumulatively in every chunk; cached tokens are a
 * part of promptTokenCount */
static const struct provider_usage_key usage[] = {
	{ "\"promptTokenCount\"", PROVIDER_USAGE_PROMPT },
	{ "\"candidatesTokenCount\"", PROVIDER_USAGE_COMPLETION },
	{ "\"cachedContentTokenCount\"", PROVIDER_USAGE_CACHED },
	{ NULL, 0 }
};

/* google.rpc.Status: {"error": {"code", "message", "status"}} */
static void error_body(struct jsonw *w, int status, const char *code, const char *msg)
{
	(void)code;
	const char *st = status == 403 ? "PERMISSION_DENIED" : status == 429 ? "RESOURCE_EXHAUSTED" :
			 status < 500 ? "INVALID_ARGUMENT" : "UNAVAILABLE";
	jsonw_key(w, "error");
	jsonw_obj_open(w);
	jsonw_i64(w, "code", status);
	jsonw_str(w, "message", msg);
	jsonw_str(w, "status", st);
	jsonw_obj_close(w);
}

static const char *const domains[] = { "generativelanguage.googleapis.com", NULL };
static const char *const suffixes[] = { "aiplatform.googleapis.com", NULL };   /* Vertex AI, per region */

static bool path(const char *p)
{
	return strstr(p, ":generateContent") || strstr(p, ":streamGenerateContent");
}

static void request_path(const char *p, struct provider_info *info)
{
	provider_model_from_path(info->model, sizeof(info->model), p, "/models/", ":/?#");
	info->stream = strstr(p, ":streamGenerateContent") != NULL;
}

const struct provider_ops provider_gemini = {
	.id = PROVIDER_GEMINI,
	.name = "gemini",
	.domains = domains,
	.suffixes = suffixes,
	.path = path,
	.request_path = request_path,
	.request_text = request_text,
	.request_tools = request_tools,
	.answer_text = answer_text,
	.stream_text = stream_text,
	.stream_json = none,
	.usage = usage,
	.query_key = "key",
	.error_body = error_body,
};
