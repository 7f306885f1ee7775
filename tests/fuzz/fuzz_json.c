/* fuzz_json: libFuzzer target for the request path on untrusted bytes:
 * json_scan, provider adapters, inspection and redaction.
 * With the first byte's bits 7 and 1 set, the body is read as multipart or
 * a form instead (inspect_request_typed).
 * Invariants: nothing crashes or leaks; spans lie inside the body; a body that is valid JSON stays
 * valid JSON after redaction (placeholder, mask and tokenize actions); a
 * body that is invalid JSON (and not JSON lines) is never rewritten.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iagent -Icommon \
 *       tests/fuzz/fuzz_json.c agent/content/json.c agent/providers/providers.c agent/content/inspect.c agent/content/validators.c agent/content/detectors.c agent/content/redact.c \
 *       -o build/fuzz_json $(pkg-config --cflags --libs libhs libcrypto) -lstdc++ -lm
 *   build/fuzz_json -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/inspect.h"
#include "content/json.h"
#include "content/redact.h"
#include "fuzz_inspector.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "api.openai.com", "api.anthropic.com", "llm.example" };
	struct inspect_result r;
	struct redact_policy pol = { .hash_key = (const unsigned char *)"fuzz", .hash_key_len = 4 };
	struct buf out = { 0 };
	if (size < 1)
		return 0;
	/* first byte picks host and action, the rest is the body */
	unsigned sel = data[0];
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	bool valid = json_valid(body, len);
	pol.vault = vault_new((const unsigned char *)"k", 1, 64);
	for (int i = 0; i < FINDING__COUNT; i++)
		pol.action[i] = (enum redact_action)(1 + (sel >> 2) % 4);
	inspect_result_init(&r);
	/* bit 7 with bit 1: the body as multipart (boundary "b") or a form */
	static const char *const ctypes[] = { "multipart/form-data; boundary=b",
					       "application/x-www-form-urlencoded" };
	if ((sel & 0x82) == 0x82) {
		const char *ct = ctypes[(sel >> 2) & 1];
		if (inspect_request_typed(scr, hosts[sel % 3], "/v1/files", ct, strlen(ct), body, len, &r) == 0) {
			for (size_t i = 0; i < r.nspans; i++)
				if (r.spans[i].end > len || r.spans[i].start > r.spans[i].end)
					abort();       /* spans inside the body */
			(void)redact_body(body, len, &r, &pol, &out, NULL);
		}
	} else if (inspect_request(scr, hosts[sel % 3], "/v1/chat/completions", body, len, &r) == 0) {
		int st = redact_body(body, len, &r, &pol, &out, NULL);
		if (st == REDACT_CHANGED && valid && !json_valid(out.data, out.len)) {
			fprintf(stderr, "redaction produced invalid JSON from valid input\n");
			abort();
		}
		if (st == REDACT_CHANGED && !valid && r.info.invalid_json)
			abort();                       /* invalid JSON must stay untouched */
		if (st != REDACT_CHANGED && out.len != 0)
			abort();                       /* out only written when changed */
	}
	buf_free(&out);
	inspect_result_free(&r);
	vault_free(pol.vault);
	return 0;
}
