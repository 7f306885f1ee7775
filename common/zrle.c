/* zrle: zero-run packing (see zrle.h). A zero run shorter than MIN_RUN
 * stays among the literals: a record costs at least two count bytes, so
 * cutting a shorter run would not save anything. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include "zrle.h"

#define MIN_RUN 4

static size_t put_count(unsigned char *o, size_t v)
{
	size_t k = 0;
	do {
		o[k++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return k;
}

static int get_count(const unsigned char *in, size_t len, size_t *pos, size_t *v)
{
	size_t r = 0;
	for (unsigned shift = 0; shift < 8 * sizeof(size_t); shift += 7) {
		if (*pos >= len)
			return -EINVAL;
		unsigned char b = in[(*pos)++];
		r |= (size_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -EINVAL;
}

/* Zero bytes at p[0..n) from its start. */
static size_t zeros_at(const unsigned char *p, size_t n)
{
	size_t z = 0;
	while (z < n && !p[z])
		z++;
	return z;
}

size_t zrle_pack(const void *in, size_t n, void *out)
{
	const unsigned char *p = in;
	unsigned char *o = out;
	size_t i = 0, w = 0;

	while (i < n) {
		size_t z = zeros_at(p + i, n - i), lit = i + z, end = lit;
		/* literals run until a zero run worth cutting (or the end) */
		while (end < n) {
			size_t zr = p[end] ? 0 : zeros_at(p + end, n - end);
			if (zr >= MIN_RUN || end + zr == n)
				break;
			end += zr ? zr : 1;
		}
		w += put_count(o + w, z);
		w += put_count(o + w, end - lit);
		memcpy(o + w, p + lit, end - lit);
		w += end - lit;
		i = end;
	}
	return w;
}

int zrle_unpack(const void *in, size_t len, void *out, size_t n)
{
	const unsigned char *p = in;
	unsigned char *o = out;
	size_t pos = 0, w = 0, z, lit;

	while (pos < len) {
		if (get_count(p, len, &pos, &z) || get_count(p, len, &pos, &lit))
			return -EINVAL;
		if (z > n - w || lit > n - w - z || lit > len - pos)
			return -EINVAL;
		memset(o + w, 0, z);
		w += z;
		memcpy(o + w, p + pos, lit);
		w += lit;
		pos += lit;
	}
	return w == n ? 0 : -EINVAL;
}
