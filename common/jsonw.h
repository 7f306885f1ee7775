/* jsonw: appends JSON to a growable buffer. Strings are escaped per RFC 8259
 * (control characters, quote, backslash; invalid UTF-8 replaced by U+FFFD)
 * so that nothing a client sent can break a JSON line in the audit log. */
#ifndef VIGIL_JSONW_H
#define VIGIL_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *buf;
	size_t len, cap;
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

#endif
