/* providers: the table of the LLM APIs Vigil understands and what is
 * common to them: identification, the request walk, answer text, usage,
 * error bodies.
 *
 * Each API's shapes are data in its own file (agent/providers/<name>.c,
 * a struct provider_ops), expressed as json path patterns (see
 * json_path_match), so a new API field is one line there and a new API
 * one file and one table line here. Anything we do not recognise is still
 * reported (visible = false) so the inspector scans it for secrets and
 * PII: data leaves the machine whether or not the model "reads" it; only
 * the prompt-injection score is restricted to what the model reads.
 * Never allocates or logs content.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "providers/providers.h"
#include "providers/openai.h"
#include "providers/webapps.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jsonw.h"

extern const struct provider_ops provider_openai, provider_anthropic, provider_azure, provider_gemini,
	provider_bedrock, provider_mistral;

/* One line per API provider, in the order hosts and then paths are tried
 * (Azure's /openai/deployments/ path before Gemini's ":generateContent"). */
static const struct provider_ops *const table[] = {
	&provider_openai,
	&provider_anthropic,
	&provider_azure,
	&provider_gemini,
	&provider_bedrock,
	&provider_mistral,
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

static const char *const none[] = { NULL };

/* Any other endpoint: every string is what the model reads, and it most
 * often speaks OpenAI's dialect (tools, errors). */
static const struct provider_ops generic = {
	.id = PROVIDER_GENERIC,
	.name = "generic",
	.request_tools = openai_request_tools,
	.answer_text = none,
	.stream_text = none,
	.stream_json = none,
	.usage = (const struct provider_usage_key[]){ { NULL, 0 } },
	.error_body = openai_error_body,
};

const struct provider_ops *const *provider_api_all(size_t *n)
{
	*n = NTABLE;
	return table;
}

const struct provider_ops *provider_ops(enum provider_id p)
{
	for (size_t i = 0; i < NTABLE; i++)
		if (table[i]->id == p)
			return table[i];
	return &generic;
}

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
	return provider_ops(p)->name;
}

bool provider_known(const char *name)
{
	size_t n;
	const struct webapp *const *all = webapp_all(&n);
	if (!strcmp(generic.name, name))
		return true;
	for (size_t i = 0; i < NTABLE; i++)
		if (!strcmp(table[i]->name, name))
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

bool provider_host_suffix(const char *host, size_t hlen, const char *suf)
{
	size_t sl = strlen(suf);
	return hlen >= sl && strncasecmp(host + hlen - sl, suf, sl) == 0;
}

static bool api_host(const struct provider_ops *o, const char *host, size_t hlen)
{
	for (const char *const *d = o->domains; d && *d; d++)
		if (host_is(host, hlen, *d))
			return true;
	for (const char *const *s = o->suffixes; s && *s; s++)
		if (provider_host_suffix(host, hlen, *s))
			return true;
	return o->host && o->host(host, hlen);
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
		for (size_t i = 0; i < NTABLE; i++)
			if (api_host(table[i], host, hlen))
				return table[i]->id;
	}
	if (path)
		for (size_t i = 0; i < NTABLE; i++)
			if (table[i]->path && table[i]->path(path))
				return table[i]->id;
	return PROVIDER_GENERIC;
}

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
	/* a member's name goes up too (metadata keys are stored, a tool
	 * schema's property names are read by the model): inspected, never
	 * shown as prompt text; under 6 bytes it cannot hold a finding */
	if (s->kind == JSON_KEY)
		return c->fn && s->len >= 6 ? c->fn(c->ctx, s->off, s->len, false) : 0;
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
void provider_model_from_path(char *dst, size_t cap, const char *path, const char *prefix,
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
	} else {
		const struct provider_ops *ops = provider_ops(info->provider);
		c.text = ops->request_text;
		c.tools = ops->request_tools;
		if (ops->request_path)
			ops->request_path(path, info);
		c.model_from_body = info->model[0] == '\0';
	}

	/* past a byte order mark too: JSON after it that is not valid is
	 * still JSON that is not valid, never prose */
	size_t i = json_lead(body, len);
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

/* Whether table[i]'s list at byte offset off of struct provider_ops is
 * one an earlier provider has (Azure and Mistral share OpenAI's shapes):
 * the unions below look at each list once. */
static bool shared_earlier(size_t i, size_t off)
{
	const void *mine = *(const void *const *)((const char *)table[i] + off);
	for (size_t k = 0; k < i; k++)
		if (*(const void *const *)((const char *)table[k] + off) == mine)
			return true;
	return false;
}

/* A response is read with every API's answer fields, whichever provider
 * was identified: an unknown host, or a gateway, may speak any of them. */
bool provider_response_text_path(const struct json_path *p)
{
	for (size_t i = 0; i < NTABLE; i++)
		if (!shared_earlier(i, offsetof(struct provider_ops, answer_text)) &&
		    any_match(p, table[i]->answer_text))
			return true;
	return false;
}

int provider_stream_field(const struct json_path *s, bool *json)
{
	int id = 0;
	for (size_t i = 0; i < NTABLE; i++) {
		const char *const *lists[2] = { table[i]->stream_text, table[i]->stream_json };
		if (shared_earlier(i, offsetof(struct provider_ops, stream_text)))
			continue;
		for (int l = 0; l < 2; l++)
			for (const char *const *pat = lists[l]; pat && *pat; pat++, id++)
				if (json_path_match(s, *pat)) {
					*json = l == 1;
					return id;
				}
	}
	return -1;
}

bool provider_query_key(enum provider_id p, const char *name, size_t len)
{
	const char *k = provider_ops(p)->query_key;
	return k && strlen(k) == len && !memcmp(k, name, len);
}

bool provider_realtime_path(enum provider_id p, const char *path)
{
	for (const char *const *r = provider_ops(p)->realtime; r && *r; r++)
		if (!strcmp(*r, path))
			return true;
	return false;
}

int provider_error_body(enum provider_id p, int status, const char *code, const char *msg, char *out,
			size_t outlen)
{
	struct jsonw w;
	char full[512];
	int n;

	snprintf(full, sizeof(full), "Vigil: %s", msg);
	jsonw_init(&w);
	jsonw_obj_open(&w);
	provider_ops(p)->error_body(&w, status, code, full);
	jsonw_obj_close(&w);
	n = w.oom ? 0 : snprintf(out, outlen, "%s", w.out.data);
	jsonw_free(&w);
	if (n >= (int)outlen)
		n = (int)outlen - 1;
	return n;
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
	    !(provider_response_text_path(s->path) ||
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
	int64_t *field[] = {
		[PROVIDER_USAGE_PROMPT] = &u->prompt,
		[PROVIDER_USAGE_COMPLETION] = &u->completion,
		[PROVIDER_USAGE_CACHED] = &u->cached,
		[PROVIDER_USAGE_UNCOUNTED_READ] = &u->uncounted_read,
		[PROVIDER_USAGE_UNCOUNTED_WRITE] = &u->uncounted_write,
	};
	/* every provider's keys: the caller does not always know who answers
	 * (a WebSocket turn, a gateway), and the keys do not collide */
	for (size_t i = 0; i < NTABLE; i++) {
		if (shared_earlier(i, offsetof(struct provider_ops, usage)))
			continue;
		for (const struct provider_usage_key *k = table[i]->usage; k->key; k++)
			scan_key(doc, len, k->key, field[k->field]);
	}
}

int64_t provider_usage_prompt(const struct provider_usage *u)
{
	if (u->prompt < 0 && u->uncounted_read < 0 && u->uncounted_write < 0)
		return -1;
	return (u->prompt > 0 ? u->prompt : 0) + (u->uncounted_read > 0 ? u->uncounted_read : 0) +
	       (u->uncounted_write > 0 ? u->uncounted_write : 0);
}
