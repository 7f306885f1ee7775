/* webapp_perplexity: perplexity.ai.
 *
 * Prompt: POST /rest/sse/perplexity_ask, JSON {"query_str": ...,
 * "params": {"model_preference": ..., "last_backend_uuid": ...}}; the
 * answer is SSE whose events carry the answer text in "text" (the whole
 * answer so far, sometimes itself JSON in a string): scanned, restored
 * whole. Uploads: a presigned S3 URL (a host shared with all of AWS, so
 * not in the catalog): not covered. A refusal is an SSE event the page
 * shows as the answer (its "text" field), best effort from public
 * descriptions of the format.
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "perplexity.ai", "www.perplexity.ai", NULL };
static const char *const prompt_text[] = { "query_str", NULL };
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/rest/sse/perplexity_ask", prompt_text, "params.model_preference", "params.last_backend_uuid", true,
	  false },
	{ "/rest/uploads/**", none, NULL, NULL, false, true },
	{ 0 }
};

static const char *const answer_whole[] = { "text", NULL };

const struct webapp webapp_perplexity = {
	.name = "perplexity",
	.provider = "perplexity_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = none,
	.answer_whole = answer_whole,
	.refusal_stream = "event: message\ndata: {\"status\":\"COMPLETED\",\"final\":true,\"text\":{MSG}}\n\n"
			  "event: end_of_stream\ndata: {}\n\n",
	.refusal_type = "text/event-stream; charset=utf-8",
	.error_json = "{\"detail\":{MSG}}",
	.notes = "prompt, model, thread id; answer scanned and restored whole; S3 uploads not covered",
};
