/* fuzz_decode: libFuzzer target for agent/decode.c on untrusted bytes.
 * The first byte picks a coding list (gzip, deflate, br, zstd, stacked,
 * unknown) or base64 / sniffing; the rest is the body.
 * Invariants: nothing crashes or leaks; the output never grows past the
 * cap; on error the output buffer is left as it was; a success of
 * decode_content implies decode_content_known.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const codings[] = {
		"gzip", "deflate", "br", "zstd", "gzip, br", "zstd,deflate", "identity", "x-gzip",
		"compress", "gzip, gzip, gzip, gzip, gzip",
	};
	const size_t cap = 1 << 16;
	struct json_buf out = { 0 };
	if (size < 1)
		return 0;
	unsigned sel = data[0] % 12;
	const char *body = (const char *)data + 1;
	size_t n = size - 1;
	if (json_buf_append(&out, "pre", 3))
		return 0;
	int rc;
	if (sel < 10) {
		const char *c = codings[sel];
		rc = decode_content(c, strlen(c), body, n, cap, &out);
		if (!rc && !decode_content_known(c, strlen(c)))
			abort();
	} else if (sel == 10) {
		rc = decode_base64(body, n, cap, &out);
	} else {
		(void)decode_sniff(body, n);
		(void)decode_media_is_text(body, n);
		rc = 0;
	}
	if (out.len < 3 || memcmp(out.data, "pre", 3))
		abort();
	if (rc && out.len != 3)
		abort();                 /* an error must leave the output as it was */
	if (out.len - 3 > cap)
		abort();                 /* the cap holds */
	json_buf_free(&out);
	return 0;
}
