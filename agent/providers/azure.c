/* azure: Azure OpenAI (*.openai.azure.com, *.cognitiveservices.azure.com):
 * OpenAI's JSON under /openai/deployments/DEPLOYMENT/..., the deployment
 * standing for the model; Realtime under /openai/realtime.
 *
 * Data and pure functions only. Layer: providers/.
 */
#include "providers/openai.h"

#include <string.h>

static const char *const realtime[] = { "/openai/realtime", "/openai/v1/realtime", NULL };

static const char *const suffixes[] = { ".openai.azure.com", ".cognitiveservices.azure.com", NULL };

static bool path(const char *p)
{
	return strncmp(p, "/openai/deployments/", 20) == 0;
}

static void request_path(const char *p, struct provider_info *info)
{
	provider_model_from_path(info->model, sizeof(info->model), p, "/deployments/", "/?#");
}

const struct provider_ops provider_azure = {
	.id = PROVIDER_AZURE_OPENAI,
	.name = "azure_openai",
	.suffixes = suffixes,
	.path = path,
	.request_path = request_path,
	.realtime = realtime,
	OPENAI_SHAPES,
};
