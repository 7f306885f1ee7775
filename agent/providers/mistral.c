/* mistral: api.mistral.ai, whose chat API is OpenAI's shape.
 *
 * Data only. Layer: providers/.
 */
#include "providers/openai.h"

static bool host(const char *h, size_t hlen)
{
	return provider_host_is(h, hlen, "api.mistral.ai");
}

const struct provider_ops provider_mistral = {
	.id = PROVIDER_MISTRAL,
	.name = "mistral",
	.host = host,
	.request_text = openai_request_text,
	.request_tools = openai_request_tools,
	.answer_text = openai_answer_text,
	.stream_text = openai_stream_text,
	.stream_json = openai_stream_json,
	.usage = openai_usage,
	.error_body = openai_error_body,
};
