/* libFuzzer target: answer redaction over arbitrary model output (the
 * provider's bytes are untrusted). Invariants: nothing crashes or leaks,
 * whatever the chunking (pieces of a size taken from the input); a
 * stream ends in 0 or ANSWER_OVERRUN, never another error; a valid JSON
 * answer stays valid JSON after its text fields are rewritten. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/answer.h"
#include "fuzz_inspector.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct redact_policy pol = { .hash_key = (const unsigned char *)"fuzz", .hash_key_len = 4 };
	struct buf out = { 0 };
	uint32_t counts[FINDING__COUNT] = { 0 };
	if (size < 2)
		return 0;
	/* byte 0: mode; byte 1: piece size; the rest is the answer */
	enum redact_action mode = (enum redact_action)(1 + data[0] % 3);   /* redact, mask, hash */
	size_t piece = 1 + data[1] % 64;
	const char *text = (const char *)data + 2;
	size_t len = size - 2;
	for (int t = 0; t < FINDING__COUNT; t++)
		pol.action[t] = mode;

	struct answer *a = answer_new(scr, &pol);
	if (!a)
		abort();
	size_t fed = 0;
	int rc = 0;
	while (fed < len && rc == 0) {
		size_t take = len - fed < piece ? len - fed : piece;
		rc = answer_feed(a, text + fed, take, &out);
		fed += take;
	}
	if (rc == 0)
		rc = answer_finish(a, &out);
	if (rc < 0 && rc != -ENOMEM)
		abort();
	answer_free(a);
	out.len = 0;

	rc = answer_redact_doc(scr, &pol, NULL, text, len, &out, counts);
	if (rc == REDACT_CHANGED && json_valid(text, len) && !json_valid(out.data, out.len))
		abort();   /* rewriting broke a valid JSON answer */
	buf_free(&out);
	return 0;
}
