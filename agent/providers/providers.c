/* providers: request/response shapes of the LLM APIs Vigil understands.
 *
 * Shapes are expressed as json path patterns (see json_path_match) so a
 * new API field is one line here. Anything we do not recognise is still
 * reported (visible = false) so the inspector scans it for secrets and
 * PII: data leaves the machine whether or not the model "reads" it; only
 * the prompt-injection score is restricted to what the model reads.
 * Never allocates or logs content.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "providers/providers.h"
#include "providers/webapps.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const names[PROVIDER__COUNT] = {
	[PROVIDER_GENERIC] = "generic",
	[PROVIDER_OPENAI] = "openai",
	[PROVIDER_ANTHROPIC] = "anthropic",
	[PROVIDER_GEMINI] = "gemini",
	[PROVIDER_AZURE_OPENAI] = "azure_openai",
	[PROVIDER_BEDROCK] = "bedrock",
	[PROVIDER_MISTRAL] = "mistral",
};

const struct webapp *provider_webapp(enum provider_id p)
{
	size_t n;
	const struct webapp *const *all = webapp_all(&n);
	return p >= PROVIDER_WEBAPP && (size_t)(p - PROVIDER_WEBAPP) < n ? all[p - PROVIDER_WEBAPP] : NULL;
}

const char *provider_name(enum provider_id p)
{
	const struct webapp *a = provider_webapp(p);
	if (a)
		return a->provider;
	return (unsigned)p < PROVIDER__COUNT ? names[p] : "generic";
}

bool provider_known(const char *name)
{
	size_t n;
	const struct webapp *const *all = webapp_all(&n);
	for (int i = 0; i < PROVIDER__COUNT; i++)
		if (!strcmp(names[i], name))
			return true;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(all[i]->provider, name))
			return true;
	return false;
}

/* host equals dom or ends with "." dom (port stripped, case ignored) */
static bool host_is(const char *host, size_t hlen, const char *dom)
{
	size_t dl = strlen(dom);
	if (hlen == dl)
		return strncasecmp(host, dom, dl) == 0;
	return hlen > dl && host[hlen - dl - 1] == '.' && strncasecmp(host + hlen - dl, dom, dl) == 0;
}

static bool host_suffix(const char *host, size_t hlen, const char *suf)
{
	size_t sl = strlen(suf);
	return hlen >= sl && strncasecmp(host + hlen - sl, suf, sl) == 0;
}

enum provider_id provider_identify(const char *host, const char *path)
{
	size_t hlen = 0;
	if (host) {
		const char *colon = strrchr(host, ':');
		hlen = (colon && !strchr(colon, ']')) ? (size_t)(colon - host) : strlen(host);
		if (hlen && host[hlen - 1] == '.')
			hlen--;
		size_t app;
		if (webapp_by_host(host, hlen, &app))
			return (enum provider_id)(PROVIDER_WEBAPP + app);
		if (host_is(host, hlen, "api.openai.com"))
			return PROVIDER_OPENAI;
		if (host_is(host, hlen, "api.anthropic.com"))
			return PROVIDER_ANTHROPIC;
		if (host_is(host, hlen, "generativelanguage.googleapis.com") ||
		    host_suffix(host, hlen, "aiplatform.googleapis.com"))
			return PROVIDER_GEMINI;
		if (host_suffix(host, hlen, ".openai.azure.com") ||
		    host_suffix(host, hlen, ".cognitiveservices.azure.com"))
			return PROVIDER_AZURE_OPENAI;
		if (hlen > 16 && strncasecmp(host, "bedrock-runtime", 15) == 0 &&
		    host_suffix(host, hlen, ".amazonaws.com"))
			return PROVIDER_BEDROCK;
		if (host_is(host, hlen, "api.mistral.ai"))
			return PROVIDER_MISTRAL;
	}
	if (path) {
		if (strncmp(path, "/openai/deployments/", 20) == 0)
			return PROVIDER_AZURE_OPENAI;
		if (strstr(path, ":generateContent") || strstr(path, ":streamGenerateContent"))
			return PROVIDER_GEMINI;
		if (strncmp(path, "/model/", 7) == 0 &&
		    (strstr(path, "/invoke") || strstr(path, "/converse")))
			return PROVIDER_BEDROCK;
	}
	return PROVIDER_GENERIC;
}

/* Model-visible text per API family. */
static const char *const openai_text[] = {
	"messages[*].content", "messages[*].content[*].text",
	"messages[*].tool_calls[*].function.arguments",
	"messages[*].function_call.arguments",
	"prompt", "prompt[*]", "suffix", "instructions",
	"input", "input[*]", "input[*].content", "input[*].content[*].text",
	"input[*].output", "input[*].arguments",
	"tools.**", "functions.**", NULL
};
static const char *const anthropic_text[] = {
	"system", "system[*].text",
	"messages[*].content", "messages[*].content[*].text",
	"messages[*].content[*].content", "messages[*].content[*].content[*].text",
	"messages[*].content[*].input.**", "tools.**", NULL
};
static const char *const gemini_text[] = {
	"contents[*].parts[*].text", "systemInstruction.parts[*].text",
	"system_instruction.parts[*].text",
	"contents[*].parts[*].functionResponse.**", "contents[*].parts[*].function_response.**",
	"contents[*].parts[*].functionCall.args.**", "tools.**", NULL
};
static const char *const bedrock_text[] = {
	/* Converse */
	"messages[*].content[*].text", "system[*].text",
	"messages[*].content[*].toolResult.content[*].text",
	"messages[*].content[*].toolUse.input.**", "toolConfig.**",
	/* InvokeModel bodies: Anthropic, Titan, Llama, Mistral, Cohere */
	"system", "messages[*].content", "messages[*].content[*].content",
	"messages[*].content[*].content[*].text", "prompt", "inputText", "message",
	"tools.**", NULL
};

static const char *const openai_tools[] = {
	"tools[*].function.name", "tools[*].name", "functions[*].name", NULL
};
static const char *const anthropic_tools[] = { "tools[*].name", NULL };
static const char *const gemini_tools[] = {
	"tools[*].functionDeclarations[*].name", "tools[*].function_declarations[*].name", NULL
};
static const char *const bedrock_tools[] = {
	"toolConfig.tools[*].toolSpec.name", "tools[*].name", NULL
};

struct parse_ctx {
	const char *const *text;
	const char *const *tools;
	bool model_from_body;
	const char *model_path;   /* web apps: where the model is (NULL: top-level "model") */
	const char *conv_path;    /* web apps: where the conversation id is */
	struct provider_info *info;
	provider_string_fn fn;
	void *ctx;
};

static bool any_match(const struct json_path *p, const char *const *pats)
{
	for (; pats && *pats; pats++)
		if (json_path_match(p, *pats))
			return true;
	return false;
}

static void copy_decoded(char *dst, size_t cap, const char *raw, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		/* escapes in names are rare; keep printable ASCII, drop the rest */
		unsigned char c = (unsigned char)raw[i];
		if (c == '\\' || c < 0x20 || c >= 0x7f)
			continue;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
}

static int parse_cb(void *vctx, const char *doc, const struct json_string *s)
{
	struct parse_ctx *c = vctx;
	const struct json_path *p = s->path;

	if (s->kind == JSON_TRUE && p->depth == 1 && json_path_match(p, "stream"))
		c->info->stream = true;
	if (s->kind != JSON_STRING)
		return 0;
	if (c->model_from_body && (c->model_path ? json_path_match(p, c->model_path) :
				   p->depth == 1 && json_path_match(p, "model")))
		copy_decoded(c->info->model, sizeof(c->info->model), doc + s->off, s->len);
	if (c->conv_path && json_path_match(p, c->conv_path))
		webapp_copy_id(c->info->conversation, sizeof(c->info->conversation), doc + s->off, s->len);
	if (c->tools && any_match(p, c->tools)) {
		if (c->info->ntools < PROVIDER_MAX_TOOLS)
			copy_decoded(c->info->tools[c->info->ntools++], PROVIDER_TOOL_NAME_MAX,
				     doc + s->off, s->len);
		else
			c->info->tools_truncated = true;
	}
	if (!c->fn)
		return 0;
	bool visible = c->text ? any_match(p, c->text) : true;
	return c->fn(c->ctx, s->off, s->len, visible);
}

/* Copy path segment after prefix up to one of the stop characters,
 * percent-decoding (Bedrock model ids arrive URL-encoded: %3A). */
static void model_from_path(char *dst, size_t cap, const char *path, const char *prefix,
			    const char *stops)
{
	const char *p = strstr(path, prefix);
	size_t o = 0;
	if (!p)
		return;
	p += strlen(prefix);
	while (*p && !strchr(stops, *p) && o + 1 < cap) {
		if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hx[3] = { p[1], p[2], 0 };
			char ch = (char)strtol(hx, NULL, 16);
			if ((unsigned char)ch >= 0x20 && ch != 0x7f)
				dst[o++] = ch;
			p += 3;
			continue;
		}
		dst[o++] = *p++;
	}
	dst[o] = '\0';
}

int provider_parse_request(const char *host, const char *path,
			   const char *body, size_t len,
			   struct provider_info *info,
			   provider_string_fn fn, void *ctx)
{
	struct parse_ctx c = { 0 };
	memset(info, 0, sizeof(*info));
	info->provider = provider_identify(host, path);
	c.info = info;
	c.fn = fn;
	c.ctx = ctx;
	c.model_from_body = true;
	if (!path)
		path = "";

	const struct webapp *app = provider_webapp(info->provider);
	if (app) {
		static const char *const none[] = { NULL };
		const struct webapp_route *r = webapp_route(app, path, info->conversation,
							    sizeof(info->conversation));
		/* a request that is not a prompt still carries what the user
		 * typed or pasted (titles, feedback, search): every string is
		 * scanned, none is taken as what the model reads */
		c.text = r ? r->text : none;
		c.tools = NULL;
		c.model_path = r ? r->model : NULL;
		c.model_from_body = r && r->model;
		c.conv_path = r && !info->conversation[0] ? r->conv : NULL;
		info->stream = info->prompt = r && r->prompt;
		info->upload = r && r->upload;
	} else switch (info->provider) {
	case PROVIDER_OPENAI:
	case PROVIDER_MISTRAL:
		c.text = openai_text;
		c.tools = openai_tools;
		break;
	case PROVIDER_AZURE_OPENAI:
		c.text = openai_text;
		c.tools = openai_tools;
		model_from_path(info->model, sizeof(info->model), path, "/deployments/", "/?#");
		c.model_from_body = info->model[0] == '\0';
		break;
	case PROVIDER_ANTHROPIC:
		c.text = anthropic_text;
		c.tools = anthropic_tools;
		break;
	case PROVIDER_GEMINI:
		c.text = gemini_text;
		c.tools = gemini_tools;
		model_from_path(info->model, sizeof(info->model), path, "/models/", ":/?#");
		c.model_from_body = info->model[0] == '\0';
		info->stream = strstr(path, ":streamGenerateContent") != NULL;
		break;
	case PROVIDER_BEDROCK:
		c.text = bedrock_text;
		c.tools = bedrock_tools;
		model_from_path(info->model, sizeof(info->model), path, "/model/", "/?#");
		c.model_from_body = info->model[0] == '\0';
		info->stream = strstr(path, "/invoke-with-response-stream") ||
			       strstr(path, "/converse-stream");
		break;
	default:
		c.text = NULL;     /* generic: every string is visible */
		c.tools = openai_tools;
		break;
	}

	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len)
		return 0;                                /* empty: nothing to inspect */
	/* Validate first so the callback never sees strings of a body that
	 * turns out to be invalid (the redactor must not touch it). Any valid
	 * JSON (even a bare number) is JSON: rewriting it as text could make
	 * it invalid. */
	int rc = json_scan(body, len, NULL, NULL);
	if (rc == -EINVAL || rc == -E2BIG) {
		if (i < len && (body[i] == '{' || body[i] == '['))
			info->invalid_json = true;
		return 0;                                /* else: not JSON, text */
	}
	info->is_json = true;
	return json_scan(body, len, parse_cb, &c);
}

static const char *const response_text[] = {
	/* OpenAI chat / completions, streamed and whole */
	"choices[*].delta.content", "choices[*].message.content", "choices[*].text",
	"choices[*].delta.tool_calls[*].function.arguments",
	"choices[*].message.tool_calls[*].function.arguments",
	/* OpenAI Responses API */
	"delta", "output[*].content[*].text", "output_text",
	/* Anthropic */
	"content[*].text", "delta.text", "delta.partial_json", "content_block.text",
	/* Gemini (whole, SSE chunks, and the JSON-array stream without alt=sse) */
	"candidates[*].content.parts[*].text", "[*].candidates[*].content.parts[*].text",
	/* Bedrock Converse */
	"output.message.content[*].text", "contentBlockDelta.delta.text",
	"completion", "outputText", "generation", "results[*].outputText", NULL
};

bool provider_response_text_path(const struct json_path *p)
{
	return any_match(p, response_text);
}

struct resp_ctx {
	struct buf *out;
	struct json_text t;
	const struct webapp *app;     /* its answer fields count too */
};

static int resp_cb(void *vctx, const char *doc, const struct json_string *s)
{
	struct resp_ctx *c = vctx;
	int rc;
	if (s->kind != JSON_STRING ||
	    !(any_match(s->path, response_text) ||
	      (c->app && (any_match(s->path, c->app->answer_delta) || any_match(s->path, c->app->answer_whole)))))
		return 0;
	if ((rc = json_decode(doc + s->off, s->len, &c->t)))
		return rc;
	return buf_append(c->out, c->t.data, c->t.len);
}

struct conv_ctx {
	const char *const *paths;
	char *conv;
	size_t cap;
};

static int conv_cb(void *vctx, const char *doc, const struct json_string *s)
{
	struct conv_ctx *c = vctx;
	if (s->kind != JSON_STRING || s->is_key || !any_match(s->path, c->paths))
		return 0;
	webapp_copy_id(c->conv, c->cap, doc + s->off, s->len);
	return c->conv[0] ? 1 : 0;
}

void provider_answer_conversation(enum provider_id p, const char *doc, size_t len, char *conv, size_t cap)
{
	const struct webapp *a = provider_webapp(p);
	struct conv_ctx c = { a ? a->answer_conv : NULL, conv, cap };
	/* the id comes once, early: later events cost nothing */
	if (!c.paths || !cap || conv[0])
		return;
	json_scan(doc, len, conv_cb, &c);
}

const char *const *provider_stream_delta_paths(enum provider_id p)
{
	const struct webapp *a = provider_webapp(p);
	return a ? a->answer_delta : NULL;
}

int provider_response_text(enum provider_id p, const char *doc, size_t len,
			   struct buf *out)
{
	struct resp_ctx c = { out, { 0 }, provider_webapp(p) };
	int rc = json_scan(doc, len, NULL, NULL);
	if (rc == 0)
		rc = json_scan(doc, len, resp_cb, &c);
	else
		rc = -EINVAL;
	json_text_free(&c.t);
	return rc;
}

/* ---- usage ----
 * A key scan, not a parse: usage sits at different depths in every shape
 * (and in every SSE event type), the keys are distinct across providers,
 * and a quoted key cannot match inside another key ("cache_read_input_tokens"
 * does not contain "\"input_tokens\""). */

/* The number after "key": at every occurrence; the last one is kept. */
static void scan_key(const char *doc, size_t len, const char *key, int64_t *out)
{
	size_t kl = strlen(key);
	const char *p = doc, *end = doc + len;
	while ((p = memmem(p, (size_t)(end - p), key, kl))) {
		const char *q = p + kl;
		p = q;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		int64_t v = 0;
		int digits = 0;
		while (q < end && *q >= '0' && *q <= '9' && digits < 15) {
			v = v * 10 + (*q - '0');
			q++, digits++;
		}
		if (digits)
			*out = v;
	}
}

void provider_usage_init(struct provider_usage *u)
{
	u->prompt = u->completion = u->cached = u->uncounted_read = u->uncounted_write = -1;
}

void provider_usage_scan(struct provider_usage *u, const char *doc, size_t len)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "\"prompt_tokens\"", offsetof(struct provider_usage, prompt) },
		{ "\"input_tokens\"", offsetof(struct provider_usage, prompt) },
		{ "\"promptTokenCount\"", offsetof(struct provider_usage, prompt) },
		{ "\"inputTokens\"", offsetof(struct provider_usage, prompt) },
		{ "\"completion_tokens\"", offsetof(struct provider_usage, completion) },
		{ "\"output_tokens\"", offsetof(struct provider_usage, completion) },
		{ "\"candidatesTokenCount\"", offsetof(struct provider_usage, completion) },
		{ "\"outputTokens\"", offsetof(struct provider_usage, completion) },
		{ "\"cached_tokens\"", offsetof(struct provider_usage, cached) },
		{ "\"cachedContentTokenCount\"", offsetof(struct provider_usage, cached) },
		{ "\"cache_read_input_tokens\"", offsetof(struct provider_usage, cached) },
		{ "\"cacheReadInputTokens\"", offsetof(struct provider_usage, cached) },
		{ "\"cache_read_input_tokens\"", offsetof(struct provider_usage, uncounted_read) },
		{ "\"cacheReadInputTokens\"", offsetof(struct provider_usage, uncounted_read) },
		{ "\"cache_creation_input_tokens\"", offsetof(struct provider_usage, uncounted_write) },
		{ "\"cacheWriteInputTokens\"", offsetof(struct provider_usage, uncounted_write) },
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		scan_key(doc, len, keys[i].key, (int64_t *)((char *)u + keys[i].off));
}

int64_t provider_usage_prompt(const struct provider_usage *u)
{
	if (u->prompt < 0 && u->uncounted_read < 0 && u->uncounted_write < 0)
		return -1;
	return (u->prompt > 0 ? u->prompt : 0) + (u->uncounted_read > 0 ? u->uncounted_read : 0) +
	       (u->uncounted_write > 0 ? u->uncounted_write : 0);
}
