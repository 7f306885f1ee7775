/* openai: the OpenAI API's shapes, which Azure OpenAI, Mistral and the
 * generic adapter (an unknown endpoint most often speaks OpenAI's dialect)
 * share. Only the adapters include this. Layer: providers/.
 */
#ifndef VIGIL_PROVIDERS_OPENAI_H
#define VIGIL_PROVIDERS_OPENAI_H

#include "providers/providers.h"

extern const char *const openai_request_text[];
extern const char *const openai_request_tools[];
extern const char *const openai_answer_text[];
extern const char *const openai_stream_text[];
extern const char *const openai_stream_json[];
extern const struct provider_usage_key openai_usage[];

void openai_error_body(struct jsonw *w, int status, const char *code, const char *msg);

/* The struct provider_ops members of an API that speaks OpenAI's JSON. */
#define OPENAI_SHAPES                                                                 \
	.request_text = openai_request_text, .request_tools = openai_request_tools,  \
	.answer_text = openai_answer_text, .stream_text = openai_stream_text,         \
	.stream_json = openai_stream_json, .usage = openai_usage, .error_body = openai_error_body

#endif
