/* webapp_chatgpt: chatgpt.com (and its old name chat.openai.com).
 *
 * Prompt: POST /backend-api/conversation (also /backend-api/f/conversation,
 * the current front end's path), JSON with messages[].content.parts[]
 * (strings; image parts are objects whose strings are scanned but not
 * "read"), model, conversation_id (absent on a new chat). The answer is
 * SSE: either the whole message so far on every event
 * (message.content.parts[]) or, with "delta_encoding", JSON-patch-like
 * events {"p":"/message/content/parts/0","o":"append","v":"text"}, a bare
 * {"v":"text"} continuing the last path, and {"o":"patch","v":[...]}
 * batches. Uploads: POST /backend-api/files returns an upload URL on
 * files.oaiusercontent.com that the page PUTs the raw file to; both hosts
 * are watched, the PUT body goes through the decoders like any body.
 * Data only (webapps.h).
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "chatgpt.com", "chat.openai.com", "files.oaiusercontent.com", NULL };

static const char *const prompt_text[] = {
	"messages[*].content.parts[*]", "messages[*].content.parts[*].text",
	"messages[*].content.text", NULL
};
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/backend-api/conversation", prompt_text, "model", "conversation_id", true, false },
	{ "/backend-api/f/conversation", prompt_text, "model", "conversation_id", true, false },
	{ "/backend-api/files", none, NULL, NULL, false, true },
	{ "/backend-api/files/**", none, NULL, NULL, false, true },
	{ "/file-*", none, NULL, NULL, false, true },    /* the PUT to files.oaiusercontent.com */
	{ 0 }
};

static const char *const answer_delta[] = { "v", "v[*].v", NULL };
static const char *const answer_conv[] = { "conversation_id", "v.conversation_id", NULL };
static const char *const answer_whole[] = {
	"message.content.parts[*]", "v.message.content.parts[*]", NULL
};

const struct webapp webapp_chatgpt = {
	.name = "chatgpt",
	.provider = "chatgpt_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = answer_delta,
	.answer_whole = answer_whole,
	.answer_conv = answer_conv,
	.refusal_stream =
		"data: {\"message\":{\"id\":\"vigil-refusal\",\"author\":{\"role\":\"assistant\"},"
		"\"content\":{\"content_type\":\"text\",\"parts\":[{MSG}]},\"status\":\"finished_successfully\","
		"\"end_turn\":true,\"metadata\":{}},\"conversation_id\":null,\"error\":null}\n\n"
		"data: [DONE]\n\n",
	.refusal_type = "text/event-stream; charset=utf-8",
	.error_json = "{\"detail\":{MSG}}",
	.notes = "prompt, model, conversation id, both answer encodings, file uploads (PUT)",
};
