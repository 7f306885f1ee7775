/* mistral: api.mistral.ai, whose chat API is OpenAI's shape.
 *
 * Data only. Layer: providers/.
 */
#include "providers/openai.h"

static const char *const domains[] = { "api.mistral.ai", NULL };

const struct provider_ops provider_mistral = {
	.id = PROVIDER_MISTRAL,
	.name = "mistral",
	.domains = domains,
	OPENAI_SHAPES,
};
