/* jsonw: what it writes is valid JSON whatever the input bytes, so nothing
 * a client sends can split or forge an audit line. */
#include "check.h"
#include "jsonw.h"

TEST(nested_objects_and_arrays)
{
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "a", "x");
	jsonw_key(&w, "o");
	jsonw_obj_open(&w);
	jsonw_i64(&w, "n", -5);
	jsonw_obj_close(&w);
	jsonw_arr_open(&w, "l");
	jsonw_obj_open(&w);
	jsonw_u64(&w, "k", 1);
	jsonw_obj_close(&w);
	jsonw_obj_open(&w);
	jsonw_bool(&w, "b", true);
	jsonw_null(&w, "z");
	jsonw_obj_close(&w);
	jsonw_arr_close(&w);
	jsonw_double(&w, "d", 0.5);
	jsonw_obj_close(&w);
	CHECK(!strcmp(w.out.data, "{\"a\":\"x\",\"o\":{\"n\":-5},\"l\":[{\"k\":1},{\"b\":true,\"z\":null}],\"d\":0.5}"),
	      "got %s", w.out.data);
	jsonw_free(&w);
}

TEST(hostile_strings_escaped)
{
	struct jsonw w;
	const char evil[] = "a\"b\\c\nd\r\x01\x7f\xff\xc3\x28 \xe2\x82\xac \xed\xa0\x80";
	jsonw_init(&w);
	jsonw_strn(&w, NULL, evil, sizeof(evil) - 1);
	CHECK(!strcmp(w.out.data, "\"a\\\"b\\\\c\\nd\\r\\u0001\x7f\\ufffd\\ufffd( \xe2\x82\xac \\ufffd\\ufffd\\ufffd\""),
	      "got %s", w.out.data);
	CHECK(!strchr(w.out.data, '\n'), "raw newline in output");
	jsonw_free(&w);
}

/* The word-at-a-time run finder agrees with the byte rule for every byte
 * value at every lane, next to any other byte (borrows between lanes). */
TEST(plain_prefix_matches_the_byte_rule)
{
	unsigned char buf[24];
	for (int pos = 0; pos < 24; pos++)
		for (int b = 0; b < 256; b++)
			for (int nb = 0; nb < 256; nb += 17) {
				memset(buf, 'a', sizeof(buf));
				buf[pos] = (unsigned char)b;
				if (pos + 1 < 24)
					buf[pos + 1] = (unsigned char)nb;
				size_t want = 0;
				while (want < sizeof(buf) && buf[want] >= 0x20 && buf[want] < 0x80 &&
				       buf[want] != '"' && buf[want] != '\\')
					want++;
				size_t got = jsonw_plain_prefix(buf, sizeof(buf));
				CHECK(got == want, "byte 0x%02x at %d before 0x%02x: prefix %zu, want %zu", b, pos, nb,
				      got, want);
			}
}

TEST(integers_at_the_limits)
{
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_i64(&w, "a", INT64_MIN);
	jsonw_i64(&w, "b", INT64_MAX);
	jsonw_i64(&w, "c", 0);
	jsonw_u64(&w, "d", UINT64_MAX);
	jsonw_u64(&w, "e", 0);
	jsonw_i64(&w, "f", -1);
	jsonw_obj_close(&w);
	CHECK(!strcmp(w.out.data, "{\"a\":-9223372036854775808,\"b\":9223372036854775807,\"c\":0,"
			     "\"d\":18446744073709551615,\"e\":0,\"f\":-1}"), "%s", w.out.data);
	jsonw_free(&w);
}
