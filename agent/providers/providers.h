/* providers: provider adapters. Given the SNI/Host, the request path and
 * the body, say which provider this is, which model, whether it streams,
 * which tools it declares, and which JSON strings the model will read.
 *
 * Owns: the knowledge of each provider's request and response shapes.
 * Never allocates on the request path (fixed-size info), never logs
 * content, never modifies the body.
 */
#ifndef VIGIL_PROVIDERS_H
#define VIGIL_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>

#include "content/json.h"

enum provider_id {
	PROVIDER_GENERIC = 0,
	PROVIDER_OPENAI,
	PROVIDER_ANTHROPIC,
	PROVIDER_GEMINI,
	PROVIDER_AZURE_OPENAI,
	PROVIDER_BEDROCK,
	PROVIDER_MISTRAL,
	PROVIDER__COUNT,
	/* the chat web apps (webapps.h) follow: PROVIDER_WEBAPP + their table
	 * index, up to PROVIDER_WEBAPP + PROVIDER_MAX_WEBAPPS - 1 */
	PROVIDER_WEBAPP = 64
};
#define PROVIDER_MAX_WEBAPPS 32

#define PROVIDER_MODEL_MAX 128
#define PROVIDER_MAX_TOOLS 32
#define PROVIDER_TOOL_NAME_MAX 64
#define PROVIDER_CONV_MAX 80

struct provider_info {
	enum provider_id provider;
	char model[PROVIDER_MODEL_MAX];        /* "" if unknown; truncated if longer */
	bool stream;
	bool is_json;                          /* body parsed as valid JSON */
	bool invalid_json;                     /* body looked like JSON but is not */
	unsigned ntools;
	bool tools_truncated;                  /* more than PROVIDER_MAX_TOOLS */
	char tools[PROVIDER_MAX_TOOLS][PROVIDER_TOOL_NAME_MAX];
	/* web apps: the conversation id ("" if the app does not expose one
	 * here) and what kind of request this is */
	char conversation[PROVIDER_CONV_MAX];
	bool prompt;                           /* a prompt whose answer is the reply */
	bool upload;                           /* a file the user attached */
};

/* "openai", "anthropic", "gemini", "azure_openai", "bedrock", "mistral",
 * "generic", or a web app's provider ("chatgpt_web", ...) (static strings). */
const char *provider_name(enum provider_id p);
/* Whether name is one of the names provider_name gives. */
bool provider_known(const char *name);

struct webapp;
/* The web app of p, or NULL for an API provider. */
const struct webapp *provider_webapp(enum provider_id p);

/* A web app's answer document (one SSE data payload) naming the
 * conversation: its id into conv (cap bytes) when conv is still "".
 * Nothing for API providers. */
void provider_answer_conversation(enum provider_id p, const char *doc, size_t len, char *conv, size_t cap);

/* Fields of an answer stream's event that carry a piece of the reply, for
 * p (a web app's own, then the API ones); NULL-terminated. */
const char *const *provider_stream_delta_paths(enum provider_id p);

/* Provider from host (port and case ignored) and path. host/path may be
 * NULL. Unknown hosts fall back on well-known path shapes, then GENERIC. */
enum provider_id provider_identify(const char *host, const char *path);

/* One string the model may read (visible) or that otherwise leaves the
 * machine (!visible: ids, model names, metadata values). Keys are not
 * reported. off/len: raw bytes between the quotes in body. */
typedef int (*provider_string_fn)(void *ctx, size_t off, size_t len, bool visible);

/* Parse a request: fill *info and call fn (may be NULL) for every string
 * value of a valid JSON body (any JSON value), in order. A body that is
 * not JSON sets is_json = false and reports nothing: inspect it as text;
 * if it starts like JSON ('{' or '[') but fails validation, invalid_json
 * is set too. Returns 0, or fn's non-zero result. host, path, body
 * are borrowed. */
int provider_parse_request(const char *host, const char *path,
			   const char *body, size_t len,
			   struct provider_info *info,
			   provider_string_fn fn, void *ctx);

/* Append the model-generated text carried by one response JSON document
 * (a whole non-streamed response, or one SSE `data:` payload) to out,
 * decoded to UTF-8: OpenAI chat/completions/Responses deltas, Anthropic
 * content blocks and deltas, Gemini candidates, Bedrock Converse. Returns
 * 0, -EINVAL if the payload is not JSON, -ENOMEM. */
int provider_response_text(enum provider_id p, const char *doc, size_t len,
			   struct buf *out);

/* Whether a string at path p of a response document is text the model
 * produced (the fields provider_response_text collects). */
bool provider_response_text_path(const struct json_path *p);

/* Token usage as the providers report it, gathered over a response (one
 * whole JSON document, or every SSE data payload in turn: the last value
 * of each field wins, as Anthropic and Gemini repeat theirs cumulatively).
 * All -1 until seen. */
struct provider_usage {
	int64_t prompt;       /* OpenAI prompt_tokens / input_tokens, Anthropic input_tokens,
			       * Gemini promptTokenCount, Bedrock inputTokens */
	int64_t completion;
	int64_t cached;       /* prompt tokens read from the provider's prompt cache: OpenAI
			       * *_tokens_details.cached_tokens, Anthropic cache_read_input_tokens,
			       * Gemini cachedContentTokenCount, Bedrock cacheReadInputTokens */
	/* Anthropic and Bedrock count cache reads and cache writes apart from
	 * their input tokens (OpenAI and Gemini include them). */
	int64_t uncounted_read, uncounted_write;
};

void provider_usage_init(struct provider_usage *u);
/* Adds what doc (len bytes, not NUL-terminated, any provider) reports. */
void provider_usage_scan(struct provider_usage *u, const char *doc, size_t len);
/* Every prompt token the model read, cached or not, written to the cache
 * or not (-1 when none was reported): cached is a part of it. */
int64_t provider_usage_prompt(const struct provider_usage *u);

#endif
