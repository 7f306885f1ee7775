/* zrle: packs a byte image whose bulk is zero runs (a fixed-size struct of
 * mostly empty char arrays) into a small copy, and back. The format is a
 * sequence of (zero count, literal count, literals), counts as LEB128. It
 * keeps every byte, pointers included: the image is only ever unpacked by
 * the process that packed it. Must never: write past out, or accept a
 * packed form that does not decode to exactly the expected size. */
#ifndef VIGIL_ZRLE_H
#define VIGIL_ZRLE_H

#include <stddef.h>

/* The most bytes zrle_pack writes for n input bytes. */
static inline size_t zrle_bound(size_t n) { return n + 24; }
/* Packs in[0..n) into out (zrle_bound(n) bytes); returns the packed length. */
size_t zrle_pack(const void *in, size_t n, void *out);
/* Unpacks in[0..len) into out[0..n). 0, or -EINVAL if it does not decode
 * to exactly n bytes (out is then undefined). */
int zrle_unpack(const void *in, size_t len, void *out, size_t n);

#endif
