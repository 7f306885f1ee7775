/* libFuzzer target: tool calls read from model answers (JSON or one SSE
 * data payload): no crash, names bounded and free of control characters
 * and of the summary's separators. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "content/toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct toolcall_set s;
	if (s.n >= TOOLCALL_MAX)
		memset(&s, 0, sizeof(s));
	toolcall_scan((const char *)data, size, &s, NULL);
	for (unsigned i = 0; i < s.n; i++) {
		size_t n = strnlen(s.names[i], PROVIDER_TOOL_NAME_MAX);
		if (n >= PROVIDER_TOOL_NAME_MAX || strpbrk(s.names[i], ",:\n\r"))
			abort();
	}
	toolcall_summary(&s);
	return 0;
}
