/* libFuzzer target: request inspection over arbitrary bodies (the client's
 * bytes are untrusted): plain text, bytes (inspect_bytes: UTF-16 and
 * UTF-32 readings), typed bodies (JSON, forms, multipart, JSON in UTF-16)
 * and the base64 and hexadecimal runs read inside any text. Invariants:
 * nothing crashes or leaks; a call returns 0 or -ENOMEM; every span lies
 * in the body, start before end, and a JSON span inside its string. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/inspect.h"
#include "fuzz_inspector.h"

static struct inspect_result res;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const ctypes[] = {
		"application/json", "text/plain", "multipart/form-data; boundary=b",
		"application/x-www-form-urlencoded", "application/octet-stream",
	};
	if (size < 1)
		return 0;
	/* byte 0: which entry point (and content type); the rest is the body */
	unsigned sel = data[0] % 8;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	int rc;
	if (sel == 0)
		rc = inspect_text(scr, body, len, &res);
	else if (sel == 1)
		rc = inspect_bytes(scr, body, len, &res);
	else if (sel == 2)
		rc = inspect_request(scr, "api.openai.com", "/v1/chat/completions", body, len, &res);
	else {
		const char *ct = ctypes[sel - 3];
		rc = inspect_request_typed(scr, "api.openai.com", "/v1/files", ct, strlen(ct), body, len, &res);
	}
	if (rc == -ENOMEM)
		return 0;
	if (rc)
		abort();
	for (size_t i = 0; i < res.nspans; i++) {
		const struct inspect_span *sp = &res.spans[i];
		if (sp->start >= sp->end || sp->end > len || sp->type >= FINDING__COUNT)
			abort();
		if (sp->in_json && !sp->sealed &&
		    (sp->str_off + sp->str_len > len || sp->start < sp->str_off || sp->end > sp->str_off + sp->str_len))
			abort();
	}
	return 0;
}
