/* fuzz_decode: libFuzzer target for agent/content/decode.c on untrusted bytes.
 * The first byte picks a coding list (gzip, deflate, br, zstd, stacked,
 * unknown), base64, sniffing, the normaliser, the multipart parser or the
 * form decoder; the rest is the input.
 * Invariants: nothing crashes or leaks; the output never grows past the
 * cap; on error the output buffer is left as it was; a success of
 * decode_content implies decode_content_known; normaliser and form maps
 * are non-decreasing and inside the input; multipart parts lie inside the
 * body and the parser always advances.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "content/decode.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const codings[] = {
		"gzip", "deflate", "br", "zstd", "gzip, br", "zstd,deflate", "identity", "x-gzip",
		"compress", "gzip, gzip, gzip, gzip, gzip",
	};
	const size_t cap = 1 << 16;
	struct buf out = { 0 };
	if (size < 1)
		return 0;
	unsigned sel = data[0] % 15;
	const char *body = (const char *)data + 1;
	size_t n = size - 1;
	if (buf_append(&out, "pre", 3))
		return 0;
	int rc;
	if (sel < 10) {
		const char *c = codings[sel];
		rc = decode_content(c, strlen(c), body, n, cap, &out);
		if (!rc && !decode_content_known(c, strlen(c)))
			abort();
	} else if (sel == 10) {
		rc = decode_base64(body, n, cap, &out);
	} else if (sel == 11) {
		const char *type = decode_sniff(body, n);
		(void)decode_media_is_text(body, n);
		/* UTF-16 text becomes valid UTF-8 of at most 3 bytes a unit
		 * in each reading, and is what the sniffer names it */
		struct buf t = { .secret = true };
		rc = decode_utf16(body, n, &t);
		if (rc == 1 && (!utf8_valid((const unsigned char *)t.data, t.len) || t.len > n / 2 * 6 + 1 ||
				(type && !strcmp(type, "application/octet-stream"))))
			abort();
		if (rc == 0 && t.len)
			abort();
		buf_free(&t);
		rc = 0;
	} else if (sel == 12 || sel == 13) {
		struct buf t = { 0 };
		uint32_t *map = NULL;
		size_t cap2 = 0;
		rc = sel == 12 ? decode_normalize(body, n, &t, &map, &cap2) : decode_form(body, n, &t, &map, &cap2);
		if (rc == 0) {
			if (map[t.len] != n)
				abort();
			for (size_t i = 0; i < t.len; i++)
				if (map[i] > map[i + 1] || map[i] >= n)
					abort();
		}
		free(map);
		buf_free(&t);
		rc = 0;
	} else {
		/* boundary from the first line, then every part */
		const char *nl = memchr(body, '\n', n);
		size_t bl = nl ? (size_t)(nl - body) : 0, pos = 0, prev = 0;
		struct decode_part p;
		int k = 0;
		if (bl && bl <= 70) {
			while ((rc = decode_multipart_next(body, n, body, bl, &pos, &p)) == 1) {
				if (p.off > n || p.len > n - p.off || p.hdr_off > n || p.hdr_len > n - p.hdr_off)
					abort();
				if (k++ && pos <= prev)
					abort();      /* no progress: would loop forever */
				prev = pos;
				if (k > 100000)
					abort();
				const char *v;
				size_t vl;
				(void)decode_header_value(body + p.hdr_off, p.hdr_len, "content-type", &v, &vl);
			}
		}
		(void)decode_multipart_boundary(body, n, &nl, &bl);
		rc = 0;
	}
	if (out.len < 3 || memcmp(out.data, "pre", 3))
		abort();
	if (rc && out.len != 3)
		abort();                 /* an error must leave the output as it was */
	if (out.len - 3 > cap)
		abort();                 /* the cap holds */
	buf_free(&out);
	return 0;
}
