/* bedrock: Amazon Bedrock runtime (bedrock-runtime*.amazonaws.com):
 * /model/ID/converse[-stream] and /model/ID/invoke[-with-response-stream],
 * the model id in the path (URL-encoded), InvokeModel bodies in the model
 * family's own shape. Its streams are AWS event-stream frames, not SSE:
 * nothing is restored in them piece by piece.
 *
 * Data and pure functions only. Layer: providers/.
 */
#include "providers/providers.h"

#include <string.h>
#include <strings.h>

#include "jsonw.h"

static const char *const request_text[] = {
	/* Converse */
	"messages[*].content[*].text", "system[*].text",
	"messages[*].content[*].toolResult.content[*].text",
	"messages[*].content[*].toolUse.input.**", "toolConfig.**",
	/* InvokeModel bodies: Anthropic, Titan, Llama, Mistral, Cohere */
	"system", "messages[*].content", "messages[*].content[*].content",
	"messages[*].content[*].content[*].text", "prompt", "inputText", "message",
	"tools.**", NULL
};

static const char *const request_tools[] = { "toolConfig.tools[*].toolSpec.name", "tools[*].name", NULL };

static const char *const answer_text[] = {
	/* Converse */
	"output.message.content[*].text", "contentBlockDelta.delta.text",
	/* InvokeModel: Anthropic legacy, Titan, Llama */
	"completion", "outputText", "generation", "results[*].outputText", NULL
};

static const char *const none[] = { NULL };

/* Converse usage; cache reads and writes counted apart from inputTokens */
static const struct provider_usage_key usage[] = {
	{ "\"inputTokens\"", PROVIDER_USAGE_PROMPT },
	{ "\"outputTokens\"", PROVIDER_USAGE_COMPLETION },
	{ "\"cacheReadInputTokens\"", PROVIDER_USAGE_CACHED },
	{ "\"cacheReadInputTokens\"", PROVIDER_USAGE_UNCOUNTED_READ },
	{ "\"cacheWriteInputTokens\"", PROVIDER_USAGE_UNCOUNTED_WRITE },
	{ NULL, 0 }
};

/* {"message"}: the AWS SDKs read the error type from a header, the text
 * from here */
static void error_body(struct jsonw *w, int status, const char *code, const char *msg)
{
	(void)status, (void)code;
	jsonw_str(w, "message", msg);
}

static bool host(const char *h, size_t hlen)
{
	return hlen > 16 && strncasecmp(h, "bedrock-runtime", 15) == 0 &&
	       provider_host_suffix(h, hlen, ".amazonaws.com");
}

static bool path(const char *p)
{
	return strncmp(p, "/model/", 7) == 0 && (strstr(p, "/invoke") || strstr(p, "/converse"));
}

static void request_path(const char *p, struct provider_info *info)
{
	provider_model_from_path(info->model, sizeof(info->model), p, "/model/", "/?#");
	info->stream = strstr(p, "/invoke-with-response-stream") || strstr(p, "/converse-stream");
}

const struct provider_ops provider_bedrock = {
	.id = PROVIDER_BEDROCK,
	.name = "bedrock",
	.host = host,
	.path = path,
	.request_path = request_path,
	.request_text = request_text,
	.request_tools = request_tools,
	.answer_text = answer_text,
	.stream_text = none,
	.stream_json = none,
	.usage = usage,
	.error_body = error_body,
};
