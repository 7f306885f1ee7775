/* libFuzzer target: the first-flight classifier never reads out of bounds,
 * never answers "unknown" once the deadline passed, gives every refusal a
 * named reason, and only ever reports a valid normalised name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "net/classify.h"

static void check_name(const char *n)
{
	size_t len = strlen(n);
	if (len > 253 || strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != len ||
	    (len && n[len - 1] == '.'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct classify_result r;
	for (int mode = 0; mode < 3; mode++) {
		classify_first_flight(data, size, mode == 1, mode == 2, &r);
		if ((mode == 1 || mode == 2) && r.kind == CLASSIFY_NEED_MORE)
			abort();                       /* final: a verdict is due */
		if (r.kind == CLASSIFY_REFUSE && !reason_name(r.reason))
			abort();
		if (r.kind == CLASSIFY_TLS && !r.name[0])
			abort();
		if (r.kind == CLASSIFY_HTTP && (!r.method[0] || strchr(r.path, '?')))
			abort();
		check_name(r.name);
	}
	return 0;
}
