/* json: strict validation and string enumeration over a borrowed buffer.
 *
 * The scanner is iterative (an explicit container stack, bounded by
 * JSON_MAX_DEPTH) so a hostile body cannot exhaust the C stack, and it
 * never allocates: the agent calls it on every request body. Strictness
 * matters because the provider's parser, not ours, decides what the model
 * reads: anything we would parse differently (lenient UTF-8, duplicate
 * escapes) is rejected and treated as opaque by the caller.
 * Never logs or copies content.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "content/json.h"
#include "jsonw.h"
#include "utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scanner {
	const unsigned char *p;
	size_t len;
	size_t i;
	json_string_fn fn;
	void *ctx;
	const char *doc;
	struct json_path path;
	bool in_obj[JSON_MAX_DEPTH];
};

static void skip_ws(struct scanner *s)
{
	while (s->i < s->len) {
		unsigned char c = s->p[s->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		s->i++;
	}
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* s->i is at the opening quote. On success s->i is after the closing one. */
static int scan_string(struct scanner *s, size_t *off, size_t *len, bool *esc)
{
	size_t i = s->i + 1;
	*esc = false;
	*off = i;
	while (i < s->len) {
		i += jsonw_plain_prefix(s->p + i, s->len - i);
		if (i >= s->len)
			break;
		unsigned char c = s->p[i];
		if (c == '"') {
			*len = i - *off;
			s->i = i + 1;
			return 0;
		}
		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			*esc = true;
			if (i + 1 >= s->len) return -EINVAL;
			c = s->p[i + 1];
			if (c == 'u') {
				if (i + 6 > s->len) return -EINVAL;
				for (int k = 2; k < 6; k++)
					if (hexval(s->p[i + k]) < 0) return -EINVAL;
				i += 6;
			} else if (strchr("\"\\/bfnrt", c) && c) {
				i += 2;
			} else {
				return -EINVAL;
			}
			continue;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_len(s->p + i, s->len - i);
		if (!l) return -EINVAL;
		i += l;
	}
	return -EINVAL;
}

static int scan_number(struct scanner *s)
{
	size_t i = s->i;
	if (i < s->len && s->p[i] == '-') i++;
	if (i >= s->len) return -EINVAL;
	if (s->p[i] == '0') {
		i++;
	} else if (s->p[i] >= '1' && s->p[i] <= '9') {
		while (i < s->len && s->p[i] >= '0' && s->p[i] <= '9') i++;
	} else {
		return -EINVAL;
	}
	if (i < s->len && s->p[i] == '.') {
		i++;
		size_t st = i;
		while (i < s->len && s->p[i] >= '0' && s->p[i] <= '9') i++;
		if (i == st) return -EINVAL;
	}
	if (i < s->len && (s->p[i] == 'e' || s->p[i] == 'E')) {
		i++;
		if (i < s->len && (s->p[i] == '+' || s->p[i] == '-')) i++;
		size_t st = i;
		while (i < s->len && s->p[i] >= '0' && s->p[i] <= '9') i++;
		if (i == st) return -EINVAL;
	}
	s->i = i;
	return 0;
}

static int scan_literal(struct scanner *s, const char *lit)
{
	size_t n = strlen(lit);
	if (s->len - s->i < n || memcmp(s->p + s->i, lit, n) != 0)
		return -EINVAL;
	s->i += n;
	return 0;
}

static int emit(struct scanner *s, size_t off, size_t len, bool esc, enum json_kind kind)
{
	if (!s->fn)
		return 0;
	struct json_string js = { off, len, kind, kind == JSON_KEY, esc, &s->path };
	return s->fn(s->ctx, s->doc, &js);
}

/* The grammar as a loop: after each value, either close containers or
 * expect ',' then the next member/element. */
int json_scan(const char *doc, size_t len, json_string_fn fn, void *ctx)
{
	struct scanner *s, local;
	int rc;

	s = &local;
	s->p = (const unsigned char *)doc;
	s->len = len;
	s->i = 0;
	s->fn = fn;
	s->ctx = ctx;
	s->doc = doc;
	s->path.depth = 0;
	/* depth counts open containers; path.depth == depth, and the top path
	 * element is the current member/element of the innermost container. */
	unsigned depth = 0;
	size_t tok;
	enum json_kind kind;

	skip_ws(s);
value:
	if (s->i >= s->len)
		return -EINVAL;
	tok = s->i;
	switch (s->p[s->i]) {
	case '{':
	case '[': {
		bool obj = s->p[s->i] == '{';
		if (depth >= JSON_MAX_DEPTH)
			return -E2BIG;
		s->in_obj[depth] = obj;
		s->path.elem[depth] = (struct json_path_elem){ NULL, 0, 0 };
		depth++;
		s->path.depth = depth;
		s->i++;
		skip_ws(s);
		if (s->i < s->len && s->p[s->i] == (obj ? '}' : ']')) {
			s->i++;
			depth--;
			s->path.depth = depth;
			goto after_value;
		}
		if (obj)
			goto member;
		goto value;
	}
	case '"': {
		size_t off, l;
		bool esc;
		if ((rc = scan_string(s, &off, &l, &esc)))
			return rc;
		if ((rc = emit(s, off, l, esc, JSON_STRING)))
			return rc;
		goto after_value;
	}
	case 't': if ((rc = scan_literal(s, "true"))) return rc; kind = JSON_TRUE; break;
	case 'f': if ((rc = scan_literal(s, "false"))) return rc; kind = JSON_FALSE; break;
	case 'n': if ((rc = scan_literal(s, "null"))) return rc; kind = JSON_NULL; break;
	default:
		if ((rc = scan_number(s)))
			return rc;
		kind = JSON_NUMBER;
		break;
	}
	if ((rc = emit(s, tok, s->i - tok, false, kind)))
		return rc;
	goto after_value;

member:
	/* at a key inside the object at depth-1 */
	if (s->i >= s->len || s->p[s->i] != '"')
		return -EINVAL;
	{
		size_t off, l;
		bool esc;
		if ((rc = scan_string(s, &off, &l, &esc)))
			return rc;
		s->path.depth = depth - 1;
		rc = emit(s, off, l, esc, JSON_KEY);
		s->path.depth = depth;
		if (rc)
			return rc;
		if (l > UINT32_MAX)
			return -E2BIG;
		s->path.elem[depth - 1].key = doc + off;
		s->path.elem[depth - 1].key_len = (uint32_t)l;
		skip_ws(s);
		if (s->i >= s->len || s->p[s->i] != ':')
			return -EINVAL;
		s->i++;
		skip_ws(s);
		goto value;
	}

after_value:
	skip_ws(s);
	if (depth == 0) {
		return s->i == s->len ? 0 : -EINVAL;
	}
	if (s->i >= s->len)
		return -EINVAL;
	{
		bool obj = s->in_obj[depth - 1];
		unsigned char c = s->p[s->i];
		if (c == ',') {
			s->i++;
			skip_ws(s);
			if (obj)
				goto member;
			s->path.elem[depth - 1].index++;
			goto value;
		}
		if (c == (obj ? '}' : ']')) {
			s->i++;
			depth--;
			s->path.depth = depth;
			goto after_value;
		}
		return -EINVAL;
	}
}

int json_path_format(const struct json_path *p, char *buf, size_t n)
{
	size_t used = 0;
	for (unsigned d = 0; d < p->depth; d++) {
		const struct json_path_elem *e = &p->elem[d];
		char tmp[32];
		const char *piece;
		int plen;
		if (e->key) {
			if (d > 0 && used < n)
				buf[used] = '.';
			if (d > 0)
				used++;
			piece = e->key;
			plen = (int)e->key_len;
		} else {
			plen = snprintf(tmp, sizeof(tmp), "[%u]", e->index);
			piece = tmp;
		}
		for (int k = 0; k < plen; k++, used++)
			if (used < n)
				buf[used] = piece[k];
	}
	if (n)
		buf[used < n ? used : n - 1] = '\0';
	return (int)used;
}

bool json_raw_equals(const char *raw, size_t raw_len, const char *lit)
{
	size_t ll = strlen(lit);
	if (!memchr(raw, '\\', raw_len))
		return raw_len == ll && memcmp(raw, lit, ll) == 0;
	if (raw_len > 4096)
		return false;
	struct json_text t = { 0 };
	bool eq = false;
	if (json_decode(raw, raw_len, &t) == 0)
		eq = t.len == ll && memcmp(t.data, lit, ll) == 0;
	json_text_free(&t);
	return eq;
}

static bool match_from(const struct json_path *p, unsigned d, const char *pat)
{
	for (;;) {
		if (*pat == '.')
			pat++;
		if (*pat == '\0')
			return d == p->depth;
		if (pat[0] == '*' && pat[1] == '*')
			return true;
		if (d >= p->depth)
			return false;
		const struct json_path_elem *e = &p->elem[d];
		if (*pat == '[') {
			if (e->key)
				return false;
			const char *close = strchr(pat, ']');
			if (!close)
				return false;
			if (pat[1] != '*') {
				char *end;
				unsigned long v = strtoul(pat + 1, &end, 10);
				if (end != close || v != e->index)
					return false;
			}
			pat = close + 1;
			d++;
			continue;
		}
		size_t klen = strcspn(pat, ".[");
		if (!e->key)
			return false;
		if (!(klen == 1 && pat[0] == '*')) {
			char lit[128];
			if (klen >= sizeof(lit))
				return false;
			memcpy(lit, pat, klen);
			lit[klen] = '\0';
			if (!json_raw_equals(e->key, e->key_len, lit))
				return false;
		}
		pat += klen;
		d++;
	}
}

size_t json_lead(const char *doc, size_t len)
{
	size_t i = len >= 3 && !memcmp(doc, "\xef\xbb\xbf", 3) ? 3 : 0;
	while (i < len && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\r' || doc[i] == '\n'))
		i++;
	return i;
}

bool json_path_match(const struct json_path *p, const char *pattern)
{
	return match_from(p, 0, pattern);
}

void json_text_free(struct json_text *t)
{
	if (!t)
		return;
	secret_free(t->data, t->cap);   /* a decoded string is what the user sent */
	free(t->map);
	t->data = NULL;
	t->map = NULL;
	t->len = t->cap = 0;
}

static int hex4(const char *p, uint32_t *v)
{
	uint32_t x = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval((unsigned char)p[k]);
		if (h < 0)
			return -EINVAL;
		x = (x << 4) | (uint32_t)h;
	}
	*v = x;
	return 0;
}

int json_decode(const char *raw, size_t raw_len, struct json_text *out)
{
	if (raw_len >= UINT32_MAX)
		return -E2BIG;
	/* decoded is never longer than raw (worst case: "\u00e9" 6 -> 2) */
	if (out->cap < raw_len + 1) {
		size_t cap = raw_len + 1 < 64 ? 64 : raw_len + 1;
		char *d = secret_realloc(out->data, 0, out->cap, cap);   /* overwritten below */
		if (!d)
			return -ENOMEM;
		out->data = d;
		uint32_t *m = realloc(out->map, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		out->map = m;
		out->cap = cap;
	}
	size_t i = 0, o = 0;
	while (i < raw_len) {
		char c = raw[i];
		size_t start = i;
		char tmp[4];
		unsigned n;
		if (c != '\\') {
			out->data[o] = c;
			out->map[o] = (uint32_t)i;
			o++;
			i++;
			continue;
		}
		if (i + 1 >= raw_len)
			return -EINVAL;
		c = raw[i + 1];
		if (c == 'u') {
			uint32_t cp, lo;
			if (i + 6 > raw_len || hex4(raw + i + 2, &cp))
				return -EINVAL;
			i += 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (i + 6 <= raw_len && raw[i] == '\\' && raw[i + 1] == 'u' &&
				    hex4(raw + i + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					i += 6;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				cp = 0xFFFD;
			}
			n = (unsigned)utf8_put(tmp, cp);
		} else {
			switch (c) {
			case '"': tmp[0] = '"'; break;
			case '\\': tmp[0] = '\\'; break;
			case '/': tmp[0] = '/'; break;
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'n': tmp[0] = '\n'; break;
			case 'r': tmp[0] = '\r'; break;
			case 't': tmp[0] = '\t'; break;
			default: return -EINVAL;
			}
			n = 1;
			i += 2;
		}
		for (unsigned k = 0; k < n; k++) {
			out->data[o] = tmp[k];
			out->map[o] = (uint32_t)start;
			o++;
		}
	}
	out->data[o] = '\0';
	out->map[o] = (uint32_t)raw_len;
	out->len = o;
	return 0;
}

int json_encode(const char *s, size_t n, struct buf *out)
{
	static const char hex[] = "0123456789abcdef";
	int rc = buf_reserve(out, n + 2);
	if (rc)
		return rc;
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];
		size_t elen = 0;
		if (c == '"' || c == '\\') {
			esc[0] = '\\'; esc[1] = (char)c; elen = 2;
		} else if (c < 0x20) {
			esc[0] = '\\';
			switch (c) {
			case '\n': esc[1] = 'n'; elen = 2; break;
			case '\r': esc[1] = 'r'; elen = 2; break;
			case '\t': esc[1] = 't'; elen = 2; break;
			case '\b': esc[1] = 'b'; elen = 2; break;
			case '\f': esc[1] = 'f'; elen = 2; break;
			default:
				esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
				esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; elen = 6;
			}
		} else {
			continue;
		}
		if ((rc = buf_append(out, s + run, i - run)))
			return rc;
		if ((rc = buf_append(out, esc, elen)))
			return rc;
		run = i + 1;
	}
	return buf_append(out, s + run, n - run);
}
