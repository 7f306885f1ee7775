/* utf8: the one strict UTF-8 check (common/utf8.h) the JSON reader and
 * writer, the WebSocket parser, the protobuf walk and the gRPC texts
 * share. Checked against a reference built the other way round: a
 * sequence is valid when it is the encoding of the code point its bits
 * spell, that code point is not a surrogate and is at most U+10FFFF. */
#include "check.h"

#include <stdint.h>

#include "utf8.h"

static size_t encode(uint32_t cp, unsigned char *o)
{
	if (cp < 0x80)
		return o[0] = (unsigned char)cp, 1;
	if (cp < 0x800)
		return o[0] = (unsigned char)(0xc0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3f)), 2;
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | cp >> 18);
	o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The reference: the length p[0..n) would have if it were canonical. */
static size_t reference(const unsigned char *p, size_t n)
{
	size_t len = p[0] < 0x80 ? 1 : p[0] >> 5 == 6 ? 2 : p[0] >> 4 == 14 ? 3 : p[0] >> 3 == 30 ? 4 : 0;
	if (!len || n < len)
		return 0;
	uint32_t cp = len == 1 ? p[0] : p[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	unsigned char again[4];
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || encode(cp, again) != len || memcmp(again, p, len))
		return 0;
	return len;
}

TEST(every_code_point_encodes_to_a_valid_sequence_of_its_length_and_utf8_put_agrees)
{
	unsigned char s[4];
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		if (cp == 0xd800)
			cp = 0xe000;
		size_t n = encode(cp, s);
		char put[4];
		CHECK(utf8_len(s, n) == n, "U+%04X: %zu, not %zu", cp, utf8_len(s, n), n);
		CHECK(utf8_put(put, cp) == n && !memcmp(put, s, n), "utf8_put(U+%04X) differs from the reference", cp);
		CHECK(utf8_len(s, n - 1 ? n - 1 : 1) == (n == 1), "U+%04X cut short was taken", cp);
	}
}

TEST(every_one_to_three_byte_pattern_agrees_with_the_reference)
{
	unsigned char s[4] = { 0 };
	for (uint32_t v = 0; v < 1u << 24; v++) {
		s[0] = (unsigned char)(v >> 16), s[1] = (unsigned char)(v >> 8), s[2] = (unsigned char)v;
		for (size_t n = 1; n <= 3; n++)
			if (utf8_len(s, n) != reference(s, n))
				CHECK(0, "%02x %02x %02x (%zu bytes): %zu, reference %zu", s[0], s[1], s[2], n,
				      utf8_len(s, n), reference(s, n));
	}
}

TEST(four_byte_edges_surrogates_and_overlongs)
{
	struct { const char *s; size_t n, len; } cases[] = {
		{ "\xf0\x90\x80\x80", 4, 4 },      /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", 4, 4 },      /* U+10FFFF */
		{ "\xf4\x90\x80\x80", 4, 0 },      /* U+110000 */
		{ "\xf0\x8f\xbf\xbf", 4, 0 },      /* overlong U+FFFF */
		{ "\xf5\x80\x80\x80", 4, 0 },
		{ "\xed\xa0\x80", 3, 0 },          /* U+D800 */
		{ "\xed\x9f\xbf", 3, 3 },          /* U+D7FF */
		{ "\xc0\xaf", 2, 0 },              /* overlong '/' */
		{ "\xe0\x80\xaf", 3, 0 },
		{ "\xf0\x9f\x98", 3, 0 },          /* an emoji cut short */
		{ "\xf0\x9f\x98\x80", 4, 4 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const unsigned char *p = (const unsigned char *)cases[i].s;
		CHECK(utf8_len(p, cases[i].n) == cases[i].len && reference(p, cases[i].n) == cases[i].len,
		      "case %zu: %zu", i, utf8_len(p, cases[i].n));
	}
	CHECK(utf8_valid((const unsigned char *)"\xf0\x9f\x98\x80 \xe2\x82\xac", 8), "emoji and euro");
	CHECK(!utf8_valid((const unsigned char *)"ok \xe2\x82", 5), "a cut euro sign is not valid");
	CHECK(utf8_valid((const unsigned char *)"", 0), "nothing is valid");
}
