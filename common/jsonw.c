/* jsonw: JSON appended to a struct buf; an allocation failure sets oom and
 * turns further writes into no-ops, so callers check once at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jsonw.h"
#include "utf8.h"

void jsonw_init(struct jsonw *w) { memset(w, 0, sizeof(*w)); }
void jsonw_free(struct jsonw *w) { buf_free(&w->out); memset(w, 0, sizeof(*w)); }
void jsonw_reset(struct jsonw *w)
{
	w->out.len = 0;
	if (w->out.data)
		w->out.data[0] = 0;
	w->need_comma = false;
	w->oom = false;
}

void jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
	if (!w->oom && buf_append(&w->out, s, n))
		w->oom = true;
}

static void put(struct jsonw *w, const char *s) { jsonw_raw(w, s, strlen(s)); }

static void put1(struct jsonw *w, char c) { jsonw_raw(w, &c, 1); }

/* Decimal digits of v, right-aligned at the end of b[0..24); returns the
 * first. snprintf("%llu") costs a format parse and a FILE set-up per call:
 * an audit event has a dozen numbers. */
static char *fmt_u64(char b[24], uint64_t v)
{
	char *p = b + 24;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

void jsonw_escape(struct jsonw *w, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;
	while (i < n) {
		size_t plain = jsonw_plain_prefix(s + i, n - i);
		run += plain;
		i += plain;
		if (i == n)
			break;
		unsigned char c = s[i];
		size_t l;
		if (run)
			jsonw_raw(w, (const char *)s + i - run, run);
		run = 0;
		if (c == '"')
			put(w, "\\\"");
		else if (c == '\\')
			put(w, "\\\\");
		else if (c == '\n')
			put(w, "\\n");
		else if (c == '\r')
			put(w, "\\r");
		else if (c == '\t')
			put(w, "\\t");
		else if (c < 0x20) {
			char esc[8];
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(w, esc);
		} else if ((l = utf8_len(s + i, n - i))) {
			jsonw_raw(w, (const char *)s + i, l);
			i += l;
			continue;
		} else {
			put(w, "\\ufffd");
		}
		i++;
	}
	if (run)
		jsonw_raw(w, (const char *)s + n - run, run);
}

/* need_comma is true after a complete value; a key resets it, so the value
 * that follows a key (scalar, object or array) never gets a comma. */
void jsonw_key(struct jsonw *w, const char *key)
{
	if (w->need_comma)
		put1(w, ',');
	w->need_comma = false;
	if (key) {
		size_t n = strlen(key);
		put1(w, '"');
		if (jsonw_plain_prefix((const unsigned char *)key, n) == n)
			jsonw_raw(w, key, n);     /* the usual case: a literal name */
		else
			jsonw_escape(w, key, n);
		jsonw_raw(w, "\":", 2);
	}
}

void jsonw_obj_open(struct jsonw *w)
{
	if (w->need_comma)
		put(w, ",");
	put(w, "{");
	w->need_comma = false;
}

void jsonw_obj_close(struct jsonw *w) { put(w, "}"); w->need_comma = true; }

void jsonw_arr_open(struct jsonw *w, const char *key)
{
	jsonw_key(w, key);
	put(w, "[");
	w->need_comma = false;
}

void jsonw_arr_close(struct jsonw *w) { put(w, "]"); w->need_comma = true; }

void jsonw_strn(struct jsonw *w, const char *key, const char *val, size_t n)
{
	jsonw_key(w, key);
	put1(w, '"');
	jsonw_escape(w, val, n);
	put1(w, '"');
	w->need_comma = true;
}

void jsonw_str(struct jsonw *w, const char *key, const char *val)
{
	if (!val) {
		jsonw_null(w, key);
		return;
	}
	jsonw_strn(w, key, val, strlen(val));
}

void jsonw_u64(struct jsonw *w, const char *key, uint64_t v)
{
	char b[24], *p = fmt_u64(b, v);
	jsonw_key(w, key);
	jsonw_raw(w, p, (size_t)(b + sizeof(b) - p));
	w->need_comma = true;
}

void jsonw_i64(struct jsonw *w, const char *key, int64_t v)
{
	char b[24], *p = fmt_u64(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	if (v < 0)
		*--p = '-';
	jsonw_key(w, key);
	jsonw_raw(w, p, (size_t)(b + sizeof(b) - p));
	w->need_comma = true;
}

void jsonw_double(struct jsonw *w, const char *key, double v)
{
	char b[64];
	jsonw_key(w, key);
	snprintf(b, sizeof(b), "%.4g", v);
	put(w, b);
	w->need_comma = true;
}

void jsonw_bool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	put(w, v ? "true" : "false");
	w->need_comma = true;
}

void jsonw_null(struct jsonw *w, const char *key)
{
	jsonw_key(w, key);
	put(w, "null");
	w->need_comma = true;
}
