/* webapp_mistral: chat.mistral.ai (Le Chat).
 *
 * Prompt: POST /api/chat, JSON {"chatId": ..., "messageInput": ...,
 * "model": ..., "mode": "append"|"start"}; the answer streams as chunked
 * lines of a Next.js data stream (0:"text"), scanned as text, no token
 * restoration in it. Uploads: POST /api/upload (multipart). Best effort
 * from public descriptions; the page shows a refusal as its error.
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "chat.mistral.ai", NULL };
static const char *const prompt_text[] = { "messageInput", "messageInput[*].text", NULL };
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/api/chat", prompt_text, "model", "chatId", true, false },
	{ "/api/upload", none, NULL, NULL, false, true },
	{ 0 }
};

const struct webapp webapp_mistral = {
	.name = "mistral",
	.provider = "mistral_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = none,
	.answer_whole = none,
	.error_json = "{\"error\":{\"message\":{MSG}}}",
	.notes = "prompt, model, chat id; answer scanned only; refusal as an error",
};
