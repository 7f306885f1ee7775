/* toolcall: the tools a model asks to run, read from its answers: OpenAI
 * chat `tool_calls[].function.name`, Responses `function_call` items,
 * Anthropic `tool_use` blocks, Gemini `functionCall.name`, in whole JSON
 * answers and in each streamed event.
 *
 * Owns: recognising a tool call in one JSON document and counting calls
 * per name. Names only, never arguments. Must never allocate per document
 * beyond the decoder's reused buffer, or keep argument bytes. */
#ifndef VIGIL_TOOLCALL_H
#define VIGIL_TOOLCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "providers/providers.h"

#define TOOLCALL_MAX 16

struct toolcall_set {
	char names[TOOLCALL_MAX][PROVIDER_TOOL_NAME_MAX];   /* bounded, no control chars, ',' or ':' */
	uint32_t counts[TOOLCALL_MAX];
	unsigned n;
	bool truncated;                 /* more distinct names than TOOLCALL_MAX */
	char summary[TOOLCALL_MAX * (PROVIDER_TOOL_NAME_MAX + 12)];   /* "name:count,..." */
};

/* Adds the tool calls found in doc[0..len) (one JSON answer or one SSE
 * data payload) to set. Returns the number of calls found (0 if none or
 * not JSON). first_new, if not NULL, gets the index in set->names of the
 * first name this document added or counted (-1 if none). */
int toolcall_scan(const char *doc, size_t len, struct toolcall_set *set, int *first_new);

/* set->summary refreshed and returned ("" if no call). */
const char *toolcall_summary(struct toolcall_set *set);

#endif
