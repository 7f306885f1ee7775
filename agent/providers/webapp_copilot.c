/* webapp_copilot: copilot.microsoft.com.
 *
 * The chat itself runs over a WebSocket (wss://copilot.microsoft.com/c/api/
 * chat, messages {"event":"send","conversationId":...,"content":[{"type":
 * "text","text":...}]}): until the agent's WebSocket engine hands messages
 * to adapters, the upgrade request is intercepted and audited, not the
 * messages. HTTP routes: POST /c/api/conversations (new conversation) and
 * POST /c/api/attachments (uploads, inspected like any body).
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "copilot.microsoft.com", NULL };
static const char *const none[] = { NULL };
static const char *const ws_text[] = { "content[*].text", NULL };

static const struct webapp_route routes[] = {
	{ "/c/api/chat", ws_text, "model", "conversationId", true, false },
	{ "/c/api/attachments", none, NULL, NULL, false, true },
	{ "/c/api/attachments/**", none, NULL, NULL, false, true },
	{ 0 }
};

const struct webapp webapp_copilot = {
	.name = "copilot",
	.provider = "copilot_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = none,
	.answer_whole = none,
	.error_json = "{\"error\":{\"code\":\"Forbidden\",\"message\":{MSG}}}",
	.notes = "uploads and HTTP requests only; chat messages travel in a WebSocket (not yet inspected)",
};
