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

#endif
