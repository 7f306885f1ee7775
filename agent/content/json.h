/* json: a strict, allocation-free JSON validator and string enumerator, a
 * string decoder (escapes, \uXXXX, surrogate pairs -> UTF-8 with a map back
 * to raw bytes) and an encoder for writing replacement strings.
 *
 * Owns: the JSON grammar (RFC 8259, strict: no comments, no trailing
 * commas, UTF-8 validated, nesting limited to JSON_MAX_DEPTH). Never
 * allocates while scanning, never copies the document, never logs content.
 */
#ifndef VIGIL_JSON_H
#define VIGIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define JSON_MAX_DEPTH 64

/* One step of the path to a value: an object member (key != NULL, raw key
 * bytes as they appear between the quotes, borrowed from the document) or
 * an array element (key == NULL, index). */
struct json_path_elem {
	const char *key;
	uint32_t key_len;
	uint32_t index;
};

struct json_path {
	unsigned depth;
	struct json_path_elem elem[JSON_MAX_DEPTH];
};

enum json_kind { JSON_STRING, JSON_KEY, JSON_NUMBER, JSON_TRUE, JSON_FALSE, JSON_NULL };

/* A scalar token. For strings and keys off/len are the raw bytes between
 * the quotes; for numbers and literals the token itself; offsets into the
 * scanned document. For a key, path is the path of the object holding it;
 * for a value, path ends with the value's own key or index. */
struct json_string {
	size_t off;
	size_t len;
	enum json_kind kind;
	bool is_key;
	bool has_escapes;
	const struct json_path *path;   /* borrowed, valid during the callback */
};

/* Called for every scalar (strings, keys, numbers, literals) in document
 * order; most callers look only at kind == JSON_STRING. Return 0 to
 * continue, anything else stops the scan and json_scan returns it. */
typedef int (*json_string_fn)(void *ctx, const char *doc, const struct json_string *s);

/* Validate doc[0..len) as one JSON value (surrounding whitespace allowed)
 * and call fn (may be NULL) for each string. Returns 0 if valid, -EINVAL if
 * not (strings already reported stay reported: callers must discard them),
 * -E2BIG if nested deeper than JSON_MAX_DEPTH, or fn's non-zero result. */
int json_scan(const char *doc, size_t len, json_string_fn fn, void *ctx);

/* Offset of the first byte a JSON parser reads in doc[0..len): past a
 * UTF-8 byte order mark (some parsers, Python's json.loads of bytes, skip
 * it) and JSON's white space. len if there is nothing else. */
size_t json_lead(const char *doc, size_t len);

static inline bool json_valid(const char *doc, size_t len)
{
	return json_scan(doc, len, NULL, NULL) == 0;
}

/* Format a path as "messages[2].content" into buf (always NUL-terminated
 * when n > 0). Keys appear raw. Returns the length it wanted (snprintf). */
int json_path_format(const struct json_path *p, char *buf, size_t n);

/* Match a path against a pattern: dot-separated keys, "[*]" any index,
 * "[N]" one index, "*" any key, and a final "**" for any descendants
 * (zero or more steps). Example: "messages[*].content[*].text".
 * Keys written with escapes in the document are decoded before comparing,
 * so "cont\u0065nt" matches "content". */
bool json_path_match(const struct json_path *p, const char *pattern);

/* Compare a raw (possibly escaped) JSON string with a literal. */
bool json_raw_equals(const char *raw, size_t raw_len, const char *lit);

/* Decoded text of one string. data is UTF-8 (NUL-terminated for
 * convenience, may contain NULs from \u0000); map[i] (i in 0..len) is the
 * raw offset (relative to the start of the raw string) of the escape or
 * character that produced decoded byte i; map[len] == raw_len. The struct
 * owns both arrays and reuses them across calls; zero-initialise it and
 * release with json_text_free. */
struct json_text {
	char *data;
	uint32_t *map;
	size_t len;
	size_t cap;
};

/* Decode raw string content (already validated by json_scan). Lone
 * surrogates decode to U+FFFD. Returns 0, -ENOMEM, -EINVAL (bad escape) or
 * -E2BIG (raw_len over 4 GiB). */
int json_decode(const char *raw, size_t raw_len, struct json_text *out);
void json_text_free(struct json_text *t);

/* Append s[0..n) to out as JSON string content (without the quotes):
 * '"', '\\' and control characters escaped, other bytes copied (valid
 * UTF-8 in, valid JSON out). Returns 0 or -ENOMEM. */
int json_encode(const char *s, size_t n, struct buf *out);

#endif
