/* Unit tests for agent/content/decode.c: every content coding round-trips, hostile
 * inputs (truncated gzip, bombs, trailing garbage, unknown codings, bad
 * base64) are refused with the right error and leave the output as it
 * was; magic-byte sniffing and text media types. */
#include "check.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "content/decode.h"

static const char text[] = "{\"messages\":[{\"content\":\"write to jane.doe@example.com\"}]}";

/* windowbits as zlib's deflateInit2: 31 gzip, 15 zlib, -15 raw */
static size_t zpack(const char *in, size_t n, int wbits, unsigned char *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	int r = deflate(&z, Z_FINISH);
	size_t got = cap - z.avail_out;
	deflateEnd(&z);
	return r == Z_STREAM_END ? got : 0;
}

static size_t pack(const char *coding, const char *in, size_t n, unsigned char *out, size_t cap)
{
	if (!strcmp(coding, "gzip"))
		return zpack(in, n, 31, out, cap);
	if (!strcmp(coding, "deflate"))
		return zpack(in, n, 15, out, cap);
	if (!strcmp(coding, "deflate-raw"))
		return zpack(in, n, -15, out, cap);
	if (!strcmp(coding, "br")) {
		size_t o = cap;
		return BrotliEncoderCompress(5, 22, BROTLI_MODE_GENERIC, n, (const uint8_t *)in, &o, out) ? o : 0;
	}
	size_t r = ZSTD_compress(out, cap, in, n, 3);
	return ZSTD_isError(r) ? 0 : r;
}

TEST(decode_every_coding_round_trips)
{
	static const char *const codings[] = { "gzip", "deflate", "deflate-raw", "br", "zstd" };
	unsigned char z[4096];
	for (size_t i = 0; i < 5; i++) {
		size_t zn = pack(codings[i], text, sizeof(text) - 1, z, sizeof(z));
		const char *hdr = strcmp(codings[i], "deflate-raw") ? codings[i] : "deflate";
		struct buf out = { 0 };
		CHECK(zn > 0, "%s: pack failed", codings[i]);
		int rc = decode_content(hdr, strlen(hdr), (char *)z, zn, 1 << 20, &out);
		CHECK(rc == 0 && out.len == sizeof(text) - 1 && !memcmp(out.data, text, out.len),
		      "%s: rc %d len %zu", codings[i], rc, out.len);
		buf_free(&out);
	}
}

TEST(decode_stacked_codings_and_identity)
{
	unsigned char a[4096], b[4096];
	size_t an = pack("gzip", text, sizeof(text) - 1, a, sizeof(a));
	size_t bn = pack("br", (char *)a, an, b, sizeof(b));
	struct buf out = { 0 };
	const char *h = "gzip, identity, br";
	CHECK(decode_content(h, strlen(h), (char *)b, bn, 1 << 20, &out) == 0 &&
	      out.len == sizeof(text) - 1 && !memcmp(out.data, text, out.len), "gzip then br did not decode");
	out.len = 0;
	CHECK(decode_content("identity", 8, "abc", 3, 10, &out) == 0 && out.len == 3, "identity");
	buf_free(&out);
}

TEST(decode_refuses_hostile_input)
{
	unsigned char z[4096];
	struct buf out = { 0 };
	CHECK(buf_append(&out, "keep", 4) == 0, "oom");
	size_t zn = pack("gzip", text, sizeof(text) - 1, z, sizeof(z));
	CHECK(decode_content("gzip", 4, (char *)z, zn / 2, 1 << 20, &out) == -EINVAL && out.len == 4,
	      "truncated gzip accepted");
	memcpy(z + zn, "junk", 4);
	CHECK(decode_content("gzip", 4, (char *)z, zn + 4, 1 << 20, &out) == -EINVAL && out.len == 4,
	      "trailing garbage after gzip accepted");
	CHECK(decode_content("compress", 8, (char *)z, zn, 1 << 20, &out) == -ENOTSUP && out.len == 4,
	      "unknown coding not -ENOTSUP");
	CHECK(!decode_content_known("gzip, lzma", 10) && decode_content_known("GZIP,br", 7),
	      "decode_content_known");
	CHECK(decode_content("zstd", 4, "not zstd at all", 15, 1 << 20, &out) == -EINVAL, "bad zstd");
	CHECK(decode_content("br", 2, "\xff\xff\xff\xff", 4, 1 << 20, &out) == -EINVAL, "bad br");
	CHECK(decode_content("gzip", 4, "", 0, 1 << 20, &out) == -EINVAL, "empty gzip");
	CHECK(out.len == 4 && !memcmp(out.data, "keep", 4), "output changed on error");
	buf_free(&out);
}

TEST(decode_bomb_stops_at_the_cap)
{
	static const char *const codings[] = { "gzip", "deflate", "br", "zstd" };
	size_t n = 8 << 20;
	char *zeros = calloc(1, n);
	unsigned char *z = malloc(1 << 20);
	CHECK(zeros && z, "oom");
	memset(zeros, '0', n);
	for (size_t i = 0; i < 4; i++) {
		size_t zn = pack(codings[i], zeros, n, z, 1 << 20);
		struct buf out = { 0 };
		CHECK(zn > 0 && zn < n / 100, "%s: pack %zu", codings[i], zn);
		int rc = decode_content(codings[i], strlen(codings[i]), (char *)z, zn, 1 << 20, &out);
		CHECK(rc == -E2BIG && out.len == 0, "%s: bomb rc %d len %zu", codings[i], rc, out.len);
		CHECK(out.cap <= (1 << 20) + 65536, "%s: allocated %zu past the cap", codings[i], out.cap);
		buf_free(&out);
	}
	free(zeros);
	free(z);
}

TEST(decode_base64_variants_and_errors)
{
	struct buf out = { 0 };
	CHECK(decode_base64("aGVsbG8gd29ybGQ=", 16, 100, &out) == 0 && out.len == 11 &&
	      !memcmp(out.data, "hello world", 11), "padded");
	out.len = 0;
	CHECK(decode_base64("aGVs\nbG8", 8, 100, &out) == 0 && out.len == 5, "unpadded with newline");
	out.len = 0;
	CHECK(decode_base64("-_-_", 4, 100, &out) == 0 && out.len == 3, "url-safe");
	out.len = 0;
	CHECK(decode_base64("aGVs*G8", 7, 100, &out) == -EINVAL && out.len == 0, "bad character accepted");
	CHECK(decode_base64("aGVsbA==bG8", 11, 100, &out) == -EINVAL, "data after padding accepted");
	CHECK(decode_base64("aGVsb", 5, 100, &out) == -EINVAL, "lone trailing character accepted");
	CHECK(decode_base64("aGVsbG8gd29ybGQ=", 16, 4, &out) == -E2BIG && out.len == 0, "cap ignored");
	buf_free(&out);
}

TEST(decode_hex_pairs)
{
	struct buf o = { 0 };
	CHECK(decode_hex("4b65790a", 8, &o) == 0 && o.len == 4 && !strcmp(o.data, "Key\n"), "hex: %s", o.data);
	CHECK(decode_hex("4B6", 3, &o) == -EINVAL && o.len == 4, "an odd count taken");
	CHECK(decode_hex("4g", 2, &o) == -EINVAL && o.len == 4, "a non-hex digit taken");
	buf_free(&o);
}

/* Text in UTF-16, as Notepad and iconv write it, is read as UTF-8; audio,
 * which also has many zero bytes, is not taken for it. */
TEST(decode_utf16_text_with_and_without_a_mark)
{
	struct buf o = { 0 };
	/* "key =" little-endian with a mark; then a pair (U+1F600), a lone
	 * surrogate and a NUL; a last odd byte is dropped */
	static const char le[] = "\xff\xfek\0e\0y\0 \0=\0\x3d\xd8\x00\xde\x00\xd8!\0\0\0x";
	CHECK(decode_utf16(le, sizeof(le) - 1, &o) == 1, "LE with a mark not taken");
	CHECK(o.len == 13 && !strcmp(o.data, "key =\xf0\x9f\x98\x80\xef\xbf\xbd!"), "LE decoded to %s (%zu)",
	      o.data, o.len);
	o.len = 0;
	static const char be[] = "\0A\0K\0I\0A\0 \0k\0e\0y\0\n";
	CHECK(decode_utf16(be, sizeof(be) - 1, &o) == 1 && !strcmp(o.data, "AKIA key\n"), "BE without a mark: %s",
	      o.data);
	o.len = 0;
	static const char be_cjk[] = "\xfe\xff\x4e\x2d\x65\x87";       /* a mark, then two CJK characters */
	CHECK(decode_utf16(be_cjk, 6, &o) == 1 && !strcmp(o.data, "\xe4\xb8\xad\xe6\x96\x87"), "BE CJK: %s", o.data);
	o.len = 0;
	/* 16-bit PCM: low bytes all over the place, high bytes 0 or FF */
	char pcm[4096];
	for (size_t i = 0; i < sizeof(pcm); i += 2) {
		pcm[i] = (char)(i * 37 % 251);
		pcm[i + 1] = (char)(i % 6 < 3 ? 0 : 0xff);
	}
	CHECK(decode_utf16(pcm, sizeof(pcm), &o) == 0 && o.len == 0, "PCM audio taken for UTF-16");
	CHECK(!strcmp(decode_sniff(pcm, sizeof(pcm)), "application/octet-stream"), "PCM named %s",
	      decode_sniff(pcm, sizeof(pcm)));
	CHECK(decode_utf16("plain ascii", 11, &o) == 0, "ASCII taken for UTF-16");
	/* UTF-32 (with its mark, and big-endian without) reads as its text */
	static const char u32le[] = "\xff\xfe\0\0{\0\0\0\"\0\0\0k\0\0\0\"\0\0\0}\0\0\0";
	static const char u32be[] = "\0\0\0{\0\0\0\"\0\0\0k\0\0\0\"\0\0\0}";
	o.len = 0;
	CHECK(decode_utf16(u32le, sizeof(u32le) - 1, &o) == 1 && !strcmp(o.data, "{\"k\"}"),
	      "UTF-32LE read as %s", o.data);
	o.len = 0;
	CHECK(decode_utf16(u32be, sizeof(u32be) - 1, &o) == 1 && !strcmp(o.data, "{\"k\"}"), "UTF-32BE read as %s",
	      o.data);
	CHECK(!strcmp(decode_sniff(le, sizeof(le) - 1), "text/plain; charset=utf-16") &&
	      !strcmp(decode_sniff(be, sizeof(be) - 1), "text/plain; charset=utf-16"), "UTF-16 not named as text");
	buf_free(&o);
}

/* UTF-16 with little ASCII and no mark (Chinese prose with a key in it,
 * which a reader still decodes) is read; random bytes, audio and text
 * with a control character are not taken for it. */
TEST(decode_utf16_with_little_ascii)
{
	struct buf o = { 0 };
	/* 40 CJK characters, then the key, little-endian, no mark: under a
	 * third of the units are ASCII */
	char le[2 * (40 + 20)];
	size_t n = 0;
	for (int i = 0; i < 40; i++) {
		le[n++] = (char)(0x00 + i);        /* U+4E00 + i */
		le[n++] = 0x4e;
	}
	for (const char *k = "AKIAZ7QW3RT5YX2LMN4P"; *k; k++) {
		le[n++] = *k;
		le[n++] = 0;
	}
	CHECK(decode_utf16(le, n, &o) == 1, "CJK with a key, LE, not taken");
	CHECK(strstr(o.data, "AKIAZ7QW3RT5YX2LMN4P") && !strncmp(o.data, "\xe4\xb8\x80", 3), "LE read as %s", o.data);
	CHECK(!strcmp(decode_sniff(le, n), "text/plain; charset=utf-16"), "named %s", decode_sniff(le, n));
	o.len = 0;
	/* Cyrillic, big-endian: its byte swap is CJK, so both readings */
	static const char be[] = "\x04\x3f\x04\x40\x04\x38\x04\x32\x04\x35\x04\x42\x00\x20\x04\x3c\x04\x38\x04\x40"
				 "\x00\x20\x04\x3f\x04\x40\x04\x38\x04\x32\x04\x35\x04\x42";
	CHECK(decode_utf16(be, sizeof(be) - 1, &o) == 1 && strstr(o.data, "\nпривет мир привет"), "BE Cyrillic: %s",
	      o.data);
	o.len = 0;
	/* CJK whose byte swap is CJK too: both readings, a newline between */
	static const char both[] = "\x4e\x4e\x4f\x4f\x50\x50\x51\x51\x52\x52\x53\x53\x54\x54\x55\x55";
	CHECK(decode_utf16(both, 16, &o) == 1 && o.len == 8 * 3 * 2 + 1 && o.data[24] == '\n' &&
	      !memcmp(o.data, o.data + 25, 24), "both orders: %zu", o.len);
	o.len = 0;
	/* random bytes, at every length from 256 to 4096 (a shorter random
	 * string may pass for text: it is then read, which costs nothing) */
	char rnd[4096];
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		rnd[i] = (char)(x >> 24);
	}
	unsigned taken = 0;
	for (size_t len = 256; len <= sizeof(rnd); len += 16)
		taken += decode_utf16(rnd, len, &o) == 1, o.len = 0;
	CHECK(taken == 0, "random bytes taken for UTF-16 %u times", taken);
	CHECK(decode_utf16(rnd, sizeof(rnd), &o) == 0 && !strcmp(decode_sniff(rnd, sizeof(rnd)),
	      "application/octet-stream"), "4 KiB of random bytes read as UTF-16");
	/* a NUL among the CJK (a control in either order): not text */
	le[10] = 0, le[11] = 0;
	CHECK(decode_utf16(le, n, &o) == 0 && o.len == 0, "a control character taken for text");
	/* under 8 units: too short to tell */
	CHECK(decode_utf16(both, 14, &o) == 0, "7 units taken for UTF-16");
	buf_free(&o);
}

TEST(decode_sniff_and_media_types)
{
	CHECK(!strcmp(decode_sniff("\x89PNG\r\n\x1a\n....", 12), "image/png"), "png");
	CHECK(!strcmp(decode_sniff("%PDF-1.7\n", 9), "application/pdf"), "pdf");
	CHECK(!strcmp(decode_sniff("PK\x03\x04zz", 6), "application/zip"), "zip");
	CHECK(!strcmp(decode_sniff("RIFF\x10\0\0\0WAVEfmt ", 16), "audio/wav"), "wav");
	CHECK(!strcmp(decode_sniff("\x01\x02\x03\xfe", 4), "application/octet-stream"), "binary");
	CHECK(decode_sniff("plain text, caf\xc3\xa9\n", 17) == NULL, "utf-8 text taken as binary");
	CHECK(decode_media_is_text("text/plain; charset=utf-8", 25) && decode_media_is_text("application/json", 16) &&
	      decode_media_is_text("application/vnd.api+json", 24) && !decode_media_is_text("image/png", 9) &&
	      !decode_media_is_text("application/pdf", 15), "media types");
}

TEST(decode_normalize_folds_and_maps)
{
	struct buf out = { 0 };
	uint32_t *map = NULL;
	size_t cap = 0;
	CHECK(decode_normalize("plain ascii", 11, &out, &map, &cap) == 1, "ASCII must need no change");
	CHECK(decode_normalize("caf\xc3\xa9", 5, &out, &map, &cap) == 1, "accents are not folded");
	/* control characters are removed (every byte value at every place
	 * of a word: the word-at-a-time check agrees with the byte rule) */
	for (int c = 0; c < 0x80; c++)
		for (int at = 0; at < 10; at++) {
			char w[10];
			memset(w, 'a', sizeof(w));
			w[at] = (char)c;
			bool removed = (c < 0x20 && (c < '\t' || c > '\r')) || c == 0x7f;
			int rc = decode_normalize(w, sizeof(w), &out, &map, &cap);
			CHECK(rc == (removed ? 0 : 1) && (!removed || (out.len == 9 && map[at] == (uint32_t)at + 1)),
			      "byte %#x at %d: rc %d", c, at, rc);
		}
	CHECK(decode_normalize("A\0K\0I\x7f" "A\xc2\x85Z", 10, &out, &map, &cap) == 0 && out.len == 5 &&
	      !memcmp(out.data, "AKIAZ", 5) && map[4] == 9, "controls not removed: %.*s", (int)out.len, out.data);
	/* a<ZWSP>b<NBSP>c<FULLWIDTH @>d<IDEOGRAPHIC SPACE> */
	const char *t = "a\xe2\x80\x8b" "b\xc2\xa0" "c\xef\xbc\xa0" "d\xe3\x80\x80";
	size_t n = strlen(t);
	CHECK(decode_normalize(t, n, &out, &map, &cap) == 0, "nothing folded");
	CHECK(out.len == 7 && !memcmp(out.data, "ab c@d ", 7), "folded to %.*s", (int)out.len, out.data);
	static const uint32_t want[] = { 0, 4, 5, 7, 8, 11, 12, 15 };
	for (size_t i = 0; i <= out.len; i++)
		CHECK(map[i] == want[i], "map[%zu] = %u, want %u", i, map[i], want[i]);
	/* invalid UTF-8 is copied byte for byte */
	CHECK(decode_normalize("\xff\xe2\x80\x8b", 4, &out, &map, &cap) == 0 && out.len == 1 &&
	      (unsigned char)out.data[0] == 0xff, "invalid byte not kept");
	/* Unicode tags: a language tag, then "Ak" and a cancel tag, invisible */
	const char *tags = "x\xf3\xa0\x80\x81\xf3\xa0\x81\x81\xf3\xa0\x81\xab\xf3\xa0\x81\xbfy";
	CHECK(decode_normalize(tags, strlen(tags), &out, &map, &cap) == 0 && out.len == 4 &&
	      !memcmp(out.data, "xAky", 4) && map[1] == 5 && map[2] == 9 && map[3] == 17,
	      "tags folded to %.*s", (int)out.len, out.data);
	buf_free(&out);
	free(map);
}

TEST(decode_multipart_parser)
{
	const char *b;
	size_t bl, pos = 0;
	struct decode_part p;
	CHECK(decode_multipart_boundary("multipart/form-data; boundary=abc", 33, &b, &bl) && bl == 3, "plain");
	CHECK(decode_multipart_boundary("multipart/form-data; boundary=\"a b\"", 35, &b, &bl) && bl == 3, "quoted");
	CHECK(!decode_multipart_boundary("multipart/form-data", 19, &b, &bl), "missing");
	CHECK(!decode_multipart_boundary("multipart/form-data; boundary=\"abc", 34, &b, &bl), "open quote");
	const char *body = "pre\r\n--abc\r\nA: 1\r\n\r\none\r\n--abc\r\n\r\ntwo\r\n--abc--\r\n";
	size_t n = strlen(body);
	CHECK(decode_multipart_next(body, n, "abc", 3, &pos, &p) == 1 && p.len == 3 && !memcmp(body + p.off, "one", 3),
	      "first part");
	const char *v;
	size_t vl;
	CHECK(decode_header_value(body + p.hdr_off, p.hdr_len, "a", &v, &vl) && vl == 1 && *v == '1', "header");
	CHECK(decode_multipart_next(body, n, "abc", 3, &pos, &p) == 1 && p.len == 3 && !memcmp(body + p.off, "two", 3),
	      "second part without headers");
	CHECK(decode_multipart_next(body, n, "abc", 3, &pos, &p) == 0, "close delimiter");
	pos = 0;
	body = "--abc\r\nA: 1\r\n\r\nunterminated";
	CHECK(decode_multipart_next(body, strlen(body), "abc", 3, &pos, &p) == 1 && p.unterminated &&
	      p.off + p.len == strlen(body), "unterminated part");
	pos = 0;
	body = "--abc\r\nA: 1 and no separator";
	CHECK(decode_multipart_next(body, strlen(body), "abc", 3, &pos, &p) == -EINVAL, "no separator");
}

TEST(decode_form_pairs)
{
	struct buf out = { 0 };
	uint32_t *map = NULL;
	size_t cap = 0;
	CHECK(decode_form("a%40b+c%2", 9, &out, &map, &cap) == 0 && out.len == 7 && !memcmp(out.data, "a@b c%2", 7),
	      "decoded %.*s", (int)out.len, out.data);
	CHECK(map[1] == 1 && map[2] == 4 && map[7] == 9, "map");
	buf_free(&out);
	free(map);
}

TEST(decode_normalize_soft_line_breaks)
{
	struct buf out = { 0 };
	uint32_t *map = NULL;
	size_t cap = 0;
	const char *t = "k=AKIA2OGYBA\\\nH6TQJ5V3XL and AKIA\\\r\nX";
	CHECK(decode_normalize(t, strlen(t), &out, &map, &cap) == 0, "soft breaks not joined");
	CHECK(out.len == strlen("k=AKIA2OGYBAH6TQJ5V3XL and AKIAX") &&
	      !memcmp(out.data, "k=AKIA2OGYBAH6TQJ5V3XL and AKIAX", out.len), "joined %.*s", (int)out.len, out.data);
	CHECK(map[12] == 14, "map after the break: %u", map[12]);
	/* not inside a value: before a space, at the start, at the end, a plain newline */
	static const char *const keep[] = { "end of line \\\n next", "\\\nabc", "abc\\\n", "abc\\\n def", "4111\n1111", "a\\b" };
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		CHECK(decode_normalize(keep[i], strlen(keep[i]), &out, &map, &cap) == 1, "changed: %s", keep[i]);
	buf_free(&out);
	free(map);
}

TEST(decode_empty_inputs)
{
	struct buf out = { 0 };
	uint32_t *map = NULL;
	size_t cap = 0;
	CHECK(decode_normalize(NULL, 0, &out, &map, &cap) == 1, "empty text");
	CHECK(decode_form("", 0, &out, &map, &cap) == 0 && out.len == 0 && map[0] == 0, "empty form pair");
	CHECK(decode_sniff("", 0) == NULL, "empty sniff");
	buf_free(&out);
	free(map);
}
