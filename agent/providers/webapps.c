/* webapps: the table of chat web apps and what is common to them: host
 * lookup, route matching, ids, and the refusal a person sees in the app.
 *
 * Each app's knowledge is data in its own file (webapp_<name>.c); nothing
 * here knows one app from another. Never logs content; the only
 * allocation is the refusal's scratch buffer (never on a forwarded
 * request's path).
 */
#include "providers/webapps.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "content/json.h"

extern const struct webapp webapp_chatgpt, webapp_claude, webapp_gemini, webapp_copilot,
	webapp_perplexity, webapp_mistral, webapp_deepseek;

/* One line per app. Its index is part of its provider id (providers.c):
 * append, never reorder within a running agent. */
static const struct webapp *const table[] = {
	&webapp_chatgpt,
	&webapp_claude,
	&webapp_gemini,
	&webapp_copilot,
	&webapp_perplexity,
	&webapp_mistral,
	&webapp_deepseek,
};

const struct webapp *const *webapp_all(size_t *n)
{
	*n = sizeof(table) / sizeof(table[0]);
	return table;
}

const struct webapp *webapp_by_host(const char *host, size_t hlen, size_t *index)
{
	if (!host)
		return NULL;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		for (const char *const *h = table[i]->hosts; *h; h++)
			if (strlen(*h) == hlen && !strncasecmp(*h, host, hlen)) {
				if (index)
					*index = i;
				return table[i];
			}
	return NULL;
}

static bool id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '_' || c == '.' || c == ':';
}

void webapp_copy_id(char *dst, size_t cap, const char *src, size_t len)
{
	if (!cap)
		return;
	dst[0] = 0;
	if (!src || !len || len >= cap)
		return;
	for (size_t i = 0; i < len; i++)
		if (!id_char((unsigned char)src[i]))
			return;
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* One segment of the request path against one of the pattern. */
static bool seg_match(const char *pat, size_t pl, const char *seg, size_t sl)
{
	if ((pl == 1 && pat[0] == '*') || (pl == 6 && !memcmp(pat, "{conv}", 6)))
		return sl > 0;
	if (pl > 1 && pat[pl - 1] == '*')     /* "file-*": a prefix and at least one more byte */
		return sl >= pl && !memcmp(pat, seg, pl - 1);
	return pl == sl && !memcmp(pat, seg, sl);
}

static bool route_match(const char *pat, const char *path, size_t plen, char *conv, size_t cap)
{
	size_t pi = 0, si = 0;
	if (conv && cap)
		conv[0] = 0;
	while (pat[pi] == '/' && si < plen && path[si] == '/') {
		size_t pe = ++pi, se = ++si;
		while (pat[pe] && pat[pe] != '/')
			pe++;
		while (se < plen && path[se] != '/')
			se++;
		if (pe - pi == 2 && !memcmp(pat + pi, "**", 2))
			return true;
		if (!seg_match(pat + pi, pe - pi, path + si, se - si))
			return false;
		if (conv && pe - pi == 6 && !memcmp(pat + pi, "{conv}", 6))
			webapp_copy_id(conv, cap, path + si, se - si);
		pi = pe;
		si = se;
	}
	/* both ends reached; a trailing '/' on the request is the same path */
	return !pat[pi] && (si == plen || (si + 1 == plen && path[si] == '/'));
}

const struct webapp_route *webapp_route(const struct webapp *a, const char *path, char *conv,
					size_t cap)
{
	size_t plen = 0;
	if (!a || !path)
		return NULL;
	while (path[plen] && path[plen] != '?' && path[plen] != '#')
		plen++;
	for (const struct webapp_route *r = a->routes; r && r->path; r++)
		if (route_match(r->path, path, plen, conv, cap))
			return r;
	if (conv && cap)
		conv[0] = 0;
	return NULL;
}

/* tpl with every "{MSG}" replaced by "msg" as a JSON string. */
static int fill_template(const char *tpl, const char *msg, struct buf *out)
{
	const char *p = tpl, *m;
	int rc = 0;
	while (!rc && (m = strstr(p, "{MSG}"))) {
		if ((rc = buf_append(out, p, (size_t)(m - p))) || (rc = buf_append(out, "\"", 1)) ||
		    (rc = json_encode(msg, strlen(msg), out)) || (rc = buf_append(out, "\"", 1)))
			break;
		p = m + 5;
	}
	return rc ? rc : buf_append(out, p, strlen(p));
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 421: return "Misdirected Request";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	default: return status < 500 ? "Error" : "Server Error";
	}
}

/* origin is "https://<one of a's hosts>" (nothing else is echoed back). */
static bool own_origin(const struct webapp *a, const char *origin)
{
	if (!origin || strncmp(origin, "https://", 8))
		return false;
	for (const char *const *h = a->hosts; *h; h++)
		if (!strcasecmp(origin + 8, *h))
			return true;
	return false;
}

int webapp_refusal(const struct webapp *a, const char *path, const char *origin, int status,
		   const char *code, const char *msg, char *out, size_t outlen)
{
	char cors[160] = "";
	const struct webapp_route *r = webapp_route(a, path, NULL, 0);
	bool stream = r && r->prompt && a->refusal_stream;
	struct buf body = { 0 };
	char full[600];
	int n;

	snprintf(full, sizeof(full), "Vigil: %s", msg && msg[0] ? msg : status_text(status));
	if (fill_template(stream ? a->refusal_stream : a->error_json, full, &body)) {
		buf_free(&body);
		return -ENOMEM;
	}
	if (own_origin(a, origin))
		snprintf(cors, sizeof(cors), "Access-Control-Allow-Origin: %s\r\n"
			 "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n", origin);
	if (stream)
		status = 200;   /* the app shows a 200 stream as an answer; an error code as "something went wrong" */
	/* no-store: a refusal is never served again from a cache */
	n = snprintf(out, outlen,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
		     "Connection: close\r\nX-Vigil-Error: %s\r\n%s\r\n%.*s",
		     status, status_text(status), stream ? a->refusal_type : "application/json", body.len,
		     code ? code : "blocked", cors, (int)body.len, body.data ? body.data : "");
	buf_free(&body);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}
