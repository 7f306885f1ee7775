/* jsonw: appends JSON to a growable buffer. Strings are escaped per RFC 8259
 * (control characters, quote, backslash; invalid UTF-8 replaced by U+FFFD)
 * so that nothing a client sent can break a JSON line in the audit log. */
#ifndef VIGIL_JSONW_H
#define VIGIL_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

struct jsonw {
	struct buf out;                /* the JSON so far, NUL-terminated */
	bool need_comma;
	bool oom;
};

void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
void jsonw_reset(struct jsonw *w);
void jsonw_obj_open(struct jsonw *w);
void jsonw_obj_close(struct jsonw *w);
void jsonw_arr_open(struct jsonw *w, const char *key);   /* key NULL inside arrays */
void jsonw_arr_close(struct jsonw *w);
void jsonw_key(struct jsonw *w, const char *key);
void jsonw_str(struct jsonw *w, const char *key, const char *val);           /* NULL -> null */
void jsonw_strn(struct jsonw *w, const char *key, const char *val, size_t n);
void jsonw_u64(struct jsonw *w, const char *key, uint64_t v);
void jsonw_i64(struct jsonw *w, const char *key, int64_t v);
void jsonw_double(struct jsonw *w, const char *key, double v);
void jsonw_bool(struct jsonw *w, const char *key, bool v);
void jsonw_null(struct jsonw *w, const char *key);
/* Appends raw bytes (already valid JSON). */
void jsonw_raw(struct jsonw *w, const char *s, size_t n);
/* Escapes s[0..n) as a JSON string body (no quotes) into w. */
void jsonw_escape(struct jsonw *w, const char *s, size_t n);

/* Length of the longest prefix of p[0..n) made of bytes a JSON string can
 * hold as they are: 0x20..0x7f except '"' and '\\'. Eight bytes at a time
 * (a word whose lanes are all plain is skipped whole); the JSON scanner and
 * writer spend most of their time in such runs. */
static inline size_t jsonw_plain_prefix(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	size_t i = 0;
	while (i + 8 <= n) {
		uint64_t w, q, b;
		__builtin_memcpy(&w, p + i, 8);
		q = w ^ (ones * '"');
		b = w ^ (ones * '\\');
		/* High bit of a lane set: that byte is >= 0x80, < 0x20 (the
		 * subtraction wraps), '"' or '\\' (zero lane of q or b). A
		 * borrow only ever flags lanes above a byte that is itself
		 * special, so a word with no flag is all plain. */
		if ((w | (w - ones * 0x20) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs)
			break;
		i += 8;
	}
	while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
		i++;
	return i;
}

#endif
