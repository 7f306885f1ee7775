/* Unit tests for common/zrle.c: every image comes back byte for byte
 * (random mixes of zero runs and literals of every length around the cut
 * threshold, all zeros, no zeros, empty), the packed size never passes
 * zrle_bound, a struct of mostly empty strings shrinks to a fraction, and
 * a packed form that was cut, extended or aimed at the wrong size is
 * refused instead of written past the output. */
#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zrle.h"

static unsigned char in[9000], packed[9100], out[9000];

static uint32_t rnd(void)
{
	static uint32_t s = 2463534242u;
	s ^= s << 13;
	s ^= s >> 17;
	s ^= s << 5;
	return s;
}

/* n bytes of runs: zeros or random non-zero bytes, run lengths 0..maxrun */
static void fill(size_t n, unsigned maxrun)
{
	size_t i = 0;
	while (i < n) {
		size_t run = rnd() % (maxrun + 1);
		bool zero = rnd() & 1;
		for (size_t k = 0; k < run && i < n; k++, i++)
			in[i] = zero ? 0 : (unsigned char)(1 + rnd() % 255);
	}
}

static void roundtrip(size_t n, const char *what)
{
	size_t len = zrle_pack(in, n, packed);
	CHECK(len <= zrle_bound(n), "%s: %zu bytes packed to %zu, bound %zu", what, n, len, zrle_bound(n));
	memset(out, 0xa5, sizeof(out));
	CHECK(zrle_unpack(packed, len, out, n) == 0, "%s: %zu bytes did not unpack", what, n);
	CHECK(!memcmp(in, out, n), "%s: %zu bytes came back different", what, n);
}

TEST(random_images_round_trip)
{
	for (int t = 0; t < 3000; t++) {
		size_t n = rnd() % 4500;
		fill(n, t % 3 == 0 ? 3 : t % 3 == 1 ? 9 : 300);
		roundtrip(n, "random");
	}
}

TEST(edge_images_round_trip)
{
	memset(in, 0, sizeof(in));
	roundtrip(0, "empty");
	roundtrip(1, "one zero");
	roundtrip(sizeof(in), "all zeros");
	CHECK(zrle_pack(in, sizeof(in), packed) <= 4, "9000 zeros packed to %zu bytes",
	      zrle_pack(in, sizeof(in), packed));
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(1 + i % 250);
	roundtrip(sizeof(in), "no zeros");
	/* zero runs of every length up to past the threshold, at both ends */
	for (size_t z = 0; z < 8; z++)
		for (size_t lit = 0; lit < 8; lit++) {
			memset(in, 0, 64);
			memset(in + z, 7, lit);
			roundtrip(z + lit, "leading zeros");
			roundtrip(z + lit + z, "both ends");
		}
}

struct sample {
	void *ptr;
	char name[256];
	char path[512];
	int64_t id;
	char more[2048];
};

TEST(mostly_empty_struct_shrinks)
{
	struct sample s;
	memset(&s, 0, sizeof(s));
	s.ptr = &s;
	strcpy(s.name, "api.openai.com");
	strcpy(s.path, "/usr/bin/curl");
	s.id = 12345;
	memcpy(in, &s, sizeof(s));
	size_t len = zrle_pack(in, sizeof(s), packed);
	CHECK(len < 80, "a %zu-byte struct of short strings packed to %zu bytes", sizeof(s), len);
	roundtrip(sizeof(s), "struct");
}

TEST(bad_packed_forms_refused)
{
	fill(2000, 40);
	size_t len = zrle_pack(in, 2000, packed);
	CHECK(zrle_unpack(packed, len, out, 1999) == -EINVAL, "unpacked into one byte too few");
	CHECK(zrle_unpack(packed, len, out, 2001) == -EINVAL, "unpacked into one byte too many");
	for (size_t cut = 0; cut < len; cut += 7)
		CHECK(zrle_unpack(packed, cut, out, 2000) == -EINVAL, "a form cut at %zu of %zu accepted", cut, len);
	packed[len] = 3;
	packed[len + 1] = 0;
	CHECK(zrle_unpack(packed, len + 2, out, 2000) == -EINVAL, "trailing zeros past the size accepted");
	/* a count with no end, and a count larger than the output */
	memset(packed, 0xff, 16);
	CHECK(zrle_unpack(packed, 16, out, 2000) == -EINVAL, "an endless count accepted");
	packed[0] = 0x80;
	packed[1] = 0x80;
	packed[2] = 0x01;   /* 16384 zeros */
	packed[3] = 0;
	CHECK(zrle_unpack(packed, 4, out, 2000) == -EINVAL, "a zero run past the output accepted");
}


