/* inspect: the detectors. One Hyperscan database (block mode, compiled
 * once per inspector) holds a trigger pattern for every detector, custom
 * rule and prompt-injection rule; strings are scanned DECODED (JSON escapes
 * resolved) so encoding tricks do not evade it. Exact spans are found only
 * for the detectors that fired, with a small per-detector start-of-match
 * database or a hand-written matcher, then validated (Luhn, mod-97, SSN
 * rules, JWT header, PEM framing, word boundaries) and mapped back to raw
 * body offsets for the redactor.
 *
 * Owns: detection. Never logs, stores or copies matched values beyond the
 * per-call result (which holds offsets, not values); never modifies input.
 *
 * Threads: an inspector is immutable after inspector_new and reference
 * counted (a reload builds a new one and swaps it); every thread uses its
 * own inspect_scratch, created from the inspector it will scan with.
 */
#ifndef VIGIL_INSPECT_H
#define VIGIL_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/findings.h"
#include "providers/providers.h"

/* PROMPT_INJECTION is counted when the request's score reaches this
 * (score is 0..1: 1 - prod(1 - w) over the distinct rules that fired in
 * model-visible text, each rule weighted 0.15..0.95). */
#define INSPECT_INJECTION_THRESHOLD 0.5f

/* At most this many spans are kept per request (counts stay exact up to
 * the limit too; spans_truncated says the request had more). */
#define INSPECT_MAX_SPANS 4096

/* One finding, as offsets into the inspected buffer (the raw body for
 * inspect_request). [start, end) covers the raw bytes of the value,
 * escapes included; [str_off, str_off + str_len) is the raw content of the
 * JSON string holding it (for text input: the whole buffer). */
struct inspect_span {
	enum finding_type type;
	uint16_t custom_id;            /* index of the custom rule when type == CUSTOM */
	bool in_json;                  /* inside a JSON string (escaping applies) */
	/* found inside a layer the redactor cannot rewrite in place (base64
	 * text in a data URI or a document block): [start, end) is then the
	 * whole encoded string, and a redaction must be refused, not skipped */
	bool sealed;
	size_t start, end;
	size_t str_off, str_len;
};

struct inspect_result {
	struct provider_info info;     /* provider, model, stream, tools */
	uint32_t counts[FINDING__COUNT];
	float injection_score;         /* 0..1, see INSPECT_INJECTION_THRESHOLD */
	bool spans_truncated;
	/* the largest OPAQUE_CONTENT item: media type (from magic bytes, or
	 * as declared) and decoded size; never its bytes */
	char opaque_type[64];
	size_t opaque_bytes;
	struct inspect_span *spans;    /* owned by the result, sorted by start */
	size_t nspans;
	size_t cap;
};

/* Zero a result before first use; inspect_* reset it on every call and
 * reuse its span array. inspect_result_free releases the array. */
void inspect_result_init(struct inspect_result *r);
void inspect_result_free(struct inspect_result *r);
/* Appends a copy of sp to r's spans, growing the array: 0 or -ENOMEM
 * (counts and the span limit are the caller's). */
int inspect_result_push(struct inspect_result *r, const struct inspect_span *sp);
/* Number of findings of every type (sum of counts). */
uint32_t inspect_result_total(const struct inspect_result *r);

/* A custom detector: name (for audit: "CUSTOM:<name>"), and either a regex
 * (Hyperscan syntax, case-sensitive unless written (?i)) or a keyword list
 * (matched case-insensitively at word boundaries). All strings borrowed
 * for the duration of inspector_new only. */
struct inspect_custom {
	const char *name;
	const char *regex;
	const char *const *keywords;
	size_t nkeywords;
};

struct inspector;
struct inspect_scratch;

/* Build an inspector (compiles every database). On failure returns NULL
 * and, if err != NULL, writes a one-line reason ("custom rule 'x': ...")
 * into err[errlen]. The returned inspector has one reference. */
struct inspector *inspector_new(const struct inspect_custom *custom, size_t ncustom,
				char *err, size_t errlen);
struct inspector *inspector_ref(struct inspector *ins);
void inspector_unref(struct inspector *ins);          /* NULL ok */
/* Name of custom rule id (borrowed from ins), NULL if out of range. */
const char *inspector_custom_name(const struct inspector *ins, unsigned id);

/* Per-thread scan state for one inspector (takes a reference on ins,
 * dropped by inspect_scratch_free). NULL on ENOMEM. */
struct inspect_scratch *inspect_scratch_new(struct inspector *ins);
void inspect_scratch_free(struct inspect_scratch *s);  /* NULL ok */
struct inspector *inspect_scratch_inspector(const struct inspect_scratch *s);

/* Layers decoded inside one JSON string value before it is scanned: JSON
 * nested in the string (tool-call arguments, tool results) and base64
 * text (data: URIs, "data" members of document/image/audio blocks). Past
 * this depth the rest is scanned as text and INSPECTION_LIMIT is counted. */
#define INSPECT_MAX_LAYERS 6
#define INSPECT_RUN_DEPTH 2      /* base64 in text in base64 in text */

/* Inspect one request: identify the provider (providers.h), scan every
 * JSON string value decoded (prompt-injection scoring only on model-visible
 * text), or the whole body as text if it is not JSON. A string that is
 * itself JSON is decoded again (its string values scanned, spans mapped to
 * the raw body); a data: URI or a base64 "data" member is decoded: text is
 * scanned (its spans sealed), anything else counts OPAQUE_CONTENT. A body
 * of JSON lines (Batch API files) is scanned line by line as JSON. A body that starts
 * like JSON but is invalid counts one INVALID_JSON finding and is scanned
 * as text (its spans have in_json = false; the redactor leaves it alone).
 * host, path, body borrowed. Returns 0, -ENOMEM, or -EIO on a Hyperscan
 * error (treat the request as failed inspection). */
int inspect_request(struct inspect_scratch *s, const char *host, const char *path,
		    const char *body, size_t len, struct inspect_result *out);

/* As inspect_request, for a body of Content-Type ctype (borrowed, not
 * NUL-terminated): multipart/form-data is read part by part (binary parts
 * are OPAQUE_CONTENT, JSON and JSON-lines parts walked as JSON, a part
 * with its own Content-Encoding decoded and its spans sealed) and
 * application/x-www-form-urlencoded pair by pair, decoded; any other type
 * is inspect_request. */
int inspect_request_typed(struct inspect_scratch *s, const char *host, const char *path,
			  const char *ctype, size_t ctlen, const char *body, size_t len,
			  struct inspect_result *out);

/* Inspect plain text (spans are offsets into text; injection scored over
 * all of it). info is left zeroed (provider GENERIC). */
int inspect_text(struct inspect_scratch *s, const char *text, size_t len,
		 struct inspect_result *out);

/* Inspect bytes that are not known to be text (a binary WebSocket frame,
 * a protobuf bytes field, decoded audio): read as text, and as UTF-16
 * where they are that (decode_utf16). Every span is sealed: none can be
 * rewritten in place. */
int inspect_bytes(struct inspect_scratch *s, const char *p, size_t len,
		  struct inspect_result *out);

/* Response-side scanning with bounded state: feed model output text (e.g.
 * provider_response_text of each SSE event) in any chunking; counts
 * accumulate in counts[] (no spans, no values kept beyond a window of
 * INSPECT_STREAM_WINDOW bytes). A value split across chunks is counted
 * once. The stream borrows s (same thread, s must outlive it). */
#define INSPECT_STREAM_WINDOW 2048
struct inspect_stream;
struct inspect_stream *inspect_stream_new(struct inspect_scratch *s);
int inspect_stream_feed(struct inspect_stream *st, const char *text, size_t len);
/* Flush findings held back at the end of the stream; then counts are final. */
int inspect_stream_finish(struct inspect_stream *st);
const uint32_t *inspect_stream_counts(const struct inspect_stream *st); /* [FINDING__COUNT] */
void inspect_stream_free(struct inspect_stream *st);   /* NULL ok */

/* The built-in patterns in Hyperscan syntax (span patterns, triggers of
 * hand-written matchers, injection rules), for benchmarks and docs: the
 * i-th one, or NULL past the end. *caseless (may be NULL) gets its flag. */
const char *inspect_builtin_pattern(unsigned i, bool *caseless);

/* Validators, exposed for tests and the eval. digits may contain spaces
 * and dashes. */
bool inspect_luhn_ok(const char *digits, size_t n);
bool inspect_iban_ok(const char *s, size_t n);        /* spaces allowed */
bool inspect_ssn_ok(const char *s, size_t n);         /* 9 digits, separators allowed */

#endif
