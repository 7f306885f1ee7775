/* webapp_gemini: gemini.google.com.
 *
 * Prompt: POST /_/BardChatUi/data/assistant.lamda.BardFrontendService/
 * StreamGenerate, application/x-www-form-urlencoded with f.req, a JSON
 * array holding a JSON string that holds the prompt at [0][0] and the
 * conversation ids ("c_...") further on. The form decoder and the
 * JSON-in-string decoder read it (inspect.c), so findings, redaction and
 * blocking work; which of its strings is the prompt is not told apart (all
 * are scanned), and no conversation id or model is taken. The answer is a
 * length-prefixed ")]}'" stream of nested JSON strings: scanned as text
 * only, no token restoration in it. Uploads go to content-push.googleapis.com
 * (resumable upload, raw bytes). A refusal is the app's error (no stream
 * shape we can speak): the page shows its own "something went wrong".
 */
#include "providers/webapps.h"

static const char *const hosts[] = { "gemini.google.com", "content-push.googleapis.com", NULL };
static const char *const none[] = { NULL };

static const struct webapp_route routes[] = {
	{ "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate", none, NULL, NULL, true, false },
	{ "/upload", none, NULL, NULL, false, true },
	{ "/upload/**", none, NULL, NULL, false, true },
	{ 0 }
};

const struct webapp webapp_gemini = {
	.name = "gemini",
	.provider = "gemini_web",
	.hosts = hosts,
	.routes = routes,
	.answer_delta = none,
	.answer_whole = none,
	.error_json = "{\"error\":{\"code\":403,\"message\":{MSG},\"status\":\"PERMISSION_DENIED\"}}",
	.notes = "prompt inspected through the form and nested-JSON decoders; no model, no conversation id; "
		 "refusal as an error",
};
