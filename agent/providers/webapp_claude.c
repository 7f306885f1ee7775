/* webapp_claude: claude.ai.
 *
 * Prompt: POST /api/organizations/{org}/chat_conversations/{conv}/completion
 * (also .../retry_completion), JSON with prompt, attachments[] whose
 * extracted_content is the text of a file the page already read, model
 * (optional). The conversation id is the path segment. The answer is SSE:
 * the Messages-API shape (content_block_delta with delta.text, handled as
 * for api.anthropic.com) or the older event completion with a
 * "completion" delta. Uploads: POST /api/{org}/upload and
 * /api/organizations/{org}/upload (multipart), and convert_document;
 * the multipart decoder reads them. Data only (webapps.h).
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "claude.ai", NULL };

static const char *const prompt_text[] = {
	"prompt", "attachments[*].extracted_content", "attachments[*].file_name", NULL
};
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/api/organizations/*/chat_conversations/{conv}/completion", prompt_text, "model", NULL, true, false },
	{ "/api/organizations/*/chat_conversations/{conv}/retry_completion", prompt_text, "model", NULL, true,
	  false },
	{ "/api/organizations/*/upload", none, NULL, NULL, false, true },
	{ "/api/*/upload", none, NULL, NULL, false, true },
	{ "/api/*/convert_document", none, NULL, NULL, false, true },
	{ "/api/organizations/*/convert_document", none, NULL, NULL, false, true },
	{ 0 }
};

static const char *const answer_delta[] = { "completion", NULL };
static const char *const answer_whole[] = { NULL };

const struct webapp webapp_claude = {
	.name = "claude",
	.provider = "claude_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = answer_delta,
	.answer_whole = answer_whole,
	.refusal_stream =
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"vigil-refusal\","
		"\"type\":\"message\",\"role\":\"assistant\",\"model\":\"\",\"content\":[]}}\n\n"
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
		"\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
		"\"delta\":{\"type\":\"text_delta\",\"text\":{MSG}}}\n\n"
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n"
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	.refusal_type = "text/event-stream; charset=utf-8",
	.error_json = "{\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":{MSG}}}",
	.notes = "prompt, attachments' extracted text, model, conversation id, both answer shapes, uploads",
};
