/* webapp_deepseek: chat.deepseek.com.
 *
 * Prompt: POST /api/v0/chat/completion, JSON {"chat_session_id": ...,
 * "prompt": ..., "ref_file_ids": [...], "thinking_enabled": ...}; the
 * answer is SSE of patches much like ChatGPT's delta encoding ({"v":
 * "text"}, {"p":"response/content","o":"APPEND","v":"text"}). Uploads:
 * POST /api/v0/file/upload_file (multipart). The model is chosen by flags,
 * not named. The refusal stream is best effort from public descriptions.
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "chat.deepseek.com", NULL };
static const char *const prompt_text[] = { "prompt", NULL };
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/api/v0/chat/completion", prompt_text, NULL, "chat_session_id", true, false },
	{ "/api/v0/chat/regenerate", prompt_text, NULL, "chat_session_id", true, false },
	{ "/api/v0/file/upload_file", none, NULL, NULL, false, true },
	{ 0 }
};

static const char *const answer_delta[] = { "v", NULL };

const struct webapp webapp_deepseek = {
	.name = "deepseek",
	.provider = "deepseek_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = answer_delta,
	.answer_whole = none,
	.refusal_stream = "data: {\"v\":{\"response\":{\"content\":{MSG},\"status\":\"FINISHED\"}}}\n\n"
			  "event: close\ndata: {}\n\n",
	.refusal_type = "text/event-stream; charset=utf-8",
	.error_json = "{\"code\":403,\"msg\":{MSG},\"data\":null}",
	.notes = "prompt, chat session id, answer deltas; no model name",
};
