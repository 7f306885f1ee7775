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
	OPENAI_SHAPES,
};
