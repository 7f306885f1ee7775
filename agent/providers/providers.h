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
 * machine (!visible: ids, model names, metadata values, and member names
 * of 6 bytes or more). off/len: raw bytes between the quotes in body. */
typedef int (*provider_string_fn)(void *ctx, size_t off, size_t len, bool visible);

/* Parse a request: fill *info and call fn (may be NULL) for every string
 * value (and long member name) of a valid JSON body (any JSON value), in
 * order. A body that is
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

/* ---- the API providers' adapters ----
 * Each API provider is one file (agent/providers/<name>.c) holding one
 * struct provider_ops, listed in the table in providers.c: adding a
 * provider is that file, its enum value and one table line. An adapter is
 * data and pure functions: it never allocates, logs or keeps state. The
 * web apps have their own table (webapps.h). */

enum provider_usage_field {
	PROVIDER_USAGE_PROMPT,
	PROVIDER_USAGE_COMPLETION,
	PROVIDER_USAGE_CACHED,
	PROVIDER_USAGE_UNCOUNTED_READ,
	PROVIDER_USAGE_UNCOUNTED_WRITE,
};

/* A quoted JSON key ("\"prompt_tokens\"") whose number counts for field. */
struct provider_usage_key {
	const char *key;
	enum provider_usage_field field;
};

struct jsonw;

struct provider_ops {
	enum provider_id id;
	const char *name;                       /* the event's and policy's provider */
	/* Its API's hosts (port, trailing dot and case ignored): these names
	 * and their subdomains, names ending in one of the suffixes, or what
	 * host says (a rule the lists cannot state; may be NULL). */
	const char *const *domains;
	const char *const *suffixes;
	bool (*host)(const char *host, size_t hlen);
	/* Whether a path of an unknown host has a shape only this API uses
	 * (self-hosted gateways); may be NULL. */
	bool (*path)(const char *path);
	/* What the request path says (the model, streaming) into *info; may be
	 * NULL. The body's top-level "model" is read when this leaves it "". */
	void (*request_path)(const char *path, struct provider_info *info);
	const char *const *request_text;        /* JSON paths the model reads; NULL: every string */
	const char *const *request_tools;       /* where the declared tools' names are */
	const char *const *answer_text;         /* answer fields the model produced (whole and streamed) */
	/* stream event fields carrying one piece of the reply, restored piece
	 * by piece: plain text, and JSON text (tool-call arguments) */
	const char *const *stream_text;
	const char *const *stream_json;
	const struct provider_usage_key *usage; /* terminated by a NULL key */
	const char *const *realtime;            /* WebSocket Realtime endpoint paths, or NULL */
	const char *query_key;                  /* query parameter carrying the API key, or NULL */
	/* The members of the error object clients of this API parse (the
	 * object itself is open): status, a short code, msg (never NULL). */
	void (*error_body)(struct jsonw *w, int status, const char *code, const char *msg);
};

/* The API providers, in identification order; n is set to its size. */
const struct provider_ops *const *provider_api_all(size_t *n);
/* The adapter of p; the generic one for web apps and unknown ids. */
const struct provider_ops *provider_ops(enum provider_id p);

/* For host: whether host[0..hlen) ends with suf (case ignored). */
bool provider_host_suffix(const char *host, size_t hlen, const char *suf);

/* Copies the path segment after prefix up to one of stops into dst (cap
 * bytes), percent-decoded (Bedrock's model ids arrive as %3A): for
 * request_path. Leaves dst alone without prefix. */
void provider_model_from_path(char *dst, size_t cap, const char *path, const char *prefix,
			      const char *stops);

/* Whether s is the name of a piece of an answer stream event that any API
 * provider restores piece by piece; *json: it is JSON text. Returns an id
 * that tells the fields apart (>= 0), or -1. */
int provider_stream_field(const struct json_path *s, bool *json);

/* Whether name (len bytes) is the query parameter p puts its API key in. */
bool provider_query_key(enum provider_id p, const char *name, size_t len);

/* Whether path (query removed) is a WebSocket Realtime endpoint of p. */
bool provider_realtime_path(enum provider_id p, const char *path);

/* p's JSON error body naming code and "Vigil: msg" (msg never NULL) into out
 * (outlen bytes, NUL-terminated). Returns its length (0 out of memory). */
int provider_error_body(enum provider_id p, int status, const char *code, const char *msg, char *out,
			size_t outlen);

#endif
