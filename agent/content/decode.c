/* decode: content codings, base64 and magic-byte sniffing for inspection.
 *
 * Every decoder writes into a buf that it grows in steps and never
 * past cap + 1 byte: reaching the cap stops the decoder at once (-E2BIG),
 * so a 10 MB gzip of zeros that claims 10 GB costs at most cap bytes and
 * the CPU to produce them. Trailing garbage after a complete gzip/zlib/
 * zstd frame and truncated frames are -EINVAL: the agent must not forward
 * a body whose meaning it read differently from the provider.
 */
#include "content/decode.h"
#include "utf8.h"

#include <brotli/decode.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#define STEP 65536

/* Room for at most STEP more bytes, never past cap; *room gets it. */
static int out_room(struct buf *o, size_t base, size_t cap, size_t *room)
{
	size_t used = o->len - base;
	if (used >= cap)
		return -E2BIG;
	size_t want = cap - used < STEP ? cap - used : STEP;
	int rc = buf_reserve(o, want);
	if (rc)
		return rc;
	*room = o->cap - o->len < cap - used ? o->cap - o->len : cap - used;
	return 0;
}

/* windowbits: 15 + 16 gzip, 15 zlib, -15 raw deflate */
static int inflate_all(const char *in, size_t n, int wbits, size_t cap, struct buf *o)
{
	z_stream z;
	size_t base = o->len;
	int rc = 0, zr = Z_OK;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, wbits) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)in;
	while (n || zr != Z_STREAM_END) {
		size_t take = n > (1u << 30) ? (1u << 30) : n, room;
		z.avail_in = (uInt)take;
		if ((rc = out_room(o, base, cap, &room)))
			break;
		if (room > (1u << 30))
			room = 1u << 30;
		z.next_out = (Bytef *)o->data + o->len;
		z.avail_out = (uInt)room;
		zr = inflate(&z, Z_NO_FLUSH);
		o->len += room - z.avail_out;
		n -= take - z.avail_in;
		if (zr == Z_STREAM_END) {
			/* RFC 1952 allows gzip members back to back */
			if (n && wbits > 15 && inflateReset(&z) == Z_OK)
				continue;
			rc = n ? -EINVAL : 0;
			break;
		}
		if (zr == Z_BUF_ERROR && !n && z.avail_out) {
			rc = -EINVAL;     /* truncated */
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			rc = zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
	}
	inflateEnd(&z);
	if (rc)
		o->len = base;
	return rc;
}

/* RFC 9110 "deflate" is zlib; some clients send raw deflate. A zlib
 * header is two bytes whose big-endian value is a multiple of 31. */
static int inflate_deflate(const char *in, size_t n, size_t cap, struct buf *o)
{
	bool zlib = n >= 2 && (in[0] & 0x0f) == 8 &&
		    (((unsigned char)in[0] << 8) | (unsigned char)in[1]) % 31 == 0;
	return inflate_all(in, n, zlib ? 15 : -15, cap, o);
}

static int unbrotli(const char *in, size_t n, size_t cap, struct buf *o)
{
	BrotliDecoderState *st = BrotliDecoderCreateInstance(NULL, NULL, NULL);
	const uint8_t *next_in = (const uint8_t *)in;
	size_t avail_in = n, base = o->len;
	int rc = 0;
	if (!st)
		return -ENOMEM;
	for (;;) {
		size_t room;
		if ((rc = out_room(o, base, cap, &room)))
			break;
		uint8_t *next_out = (uint8_t *)o->data + o->len;
		size_t avail_out = room;
		BrotliDecoderResult r = BrotliDecoderDecompressStream(st, &avail_in, &next_in,
								     &avail_out, &next_out, NULL);
		o->len += room - avail_out;
		if (r == BROTLI_DECODER_RESULT_SUCCESS) {
			rc = avail_in ? -EINVAL : 0;
			break;
		}
		if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT)
			continue;
		rc = -EINVAL;          /* error, or needs more input: truncated */
		break;
	}
	BrotliDecoderDestroyInstance(st);
	if (rc)
		o->len = base;
	return rc;
}

static int unzstd(const char *in, size_t n, size_t cap, struct buf *o)
{
	ZSTD_DStream *z = ZSTD_createDStream();
	ZSTD_inBuffer ib = { in, n, 0 };
	size_t base = o->len, last = 1;
	int rc = 0;
	if (!z)
		return -ENOMEM;
	/* a frame header may ask for a huge window: refuse above 128 MiB */
	ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax, 27);
	while (ib.pos < ib.size) {
		size_t room;
		if ((rc = out_room(o, base, cap, &room)))
			break;
		ZSTD_outBuffer ob = { o->data + o->len, room, 0 };
		last = ZSTD_decompressStream(z, &ob, &ib);
		o->len += ob.pos;
		if (ZSTD_isError(last)) {
			rc = -EINVAL;
			break;
		}
		if (last && ib.pos == ib.size && ob.pos < room)
			break;     /* input ended inside a frame */
		if (!last && ib.pos == ib.size)
			break;
	}
	/* a frame may still hold output once the input is consumed */
	while (!rc && last) {
		size_t room;
		if ((rc = out_room(o, base, cap, &room)))
			break;
		ZSTD_outBuffer ob = { o->data + o->len, room, 0 };
		last = ZSTD_decompressStream(z, &ob, &ib);
		o->len += ob.pos;
		if (ZSTD_isError(last) || (last && ob.pos == 0))
			rc = -EINVAL;
	}
	ZSTD_freeDStream(z);
	if (rc)
		o->len = base;
	return rc;
}

enum coding { C_UNKNOWN, C_IDENTITY, C_GZIP, C_DEFLATE, C_BR, C_ZSTD };

static enum coding coding_of(const char *t, size_t n)
{
	static const struct { const char *name; enum coding c; } k[] = {
		{ "identity", C_IDENTITY }, { "gzip", C_GZIP }, { "x-gzip", C_GZIP },
		{ "deflate", C_DEFLATE }, { "br", C_BR }, { "zstd", C_ZSTD },
	};
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		if (strlen(k[i].name) == n && !strncasecmp(t, k[i].name, n))
			return k[i].c;
	return C_UNKNOWN;
}

#define MAX_CODINGS 4

/* Split a coding list; returns the number of codings or -ENOTSUP. */
static int parse_codings(const char *s, size_t n, enum coding *c)
{
	int k = 0;
	size_t i = 0;
	while (i < n) {
		while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
			i++;
		size_t st = i;
		while (i < n && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
			i++;
		if (i == st)
			break;
		enum coding x = coding_of(s + st, i - st);
		if (x == C_UNKNOWN || k >= MAX_CODINGS)
			return -ENOTSUP;
		if (x != C_IDENTITY)
			c[k++] = x;
	}
	return k;
}

bool decode_content_known(const char *coding, size_t coding_len)
{
	enum coding c[MAX_CODINGS];
	return parse_codings(coding, coding_len, c) >= 0;
}

static int decode_one(enum coding c, const char *in, size_t n, size_t cap, struct buf *o)
{
	switch (c) {
	case C_GZIP: return inflate_all(in, n, 15 + 16, cap, o);
	case C_DEFLATE: return inflate_deflate(in, n, cap, o);
	case C_BR: return unbrotli(in, n, cap, o);
	case C_ZSTD: return unzstd(in, n, cap, o);
	default: return buf_append(o, in, n);
	}
}

int decode_content(const char *coding, size_t coding_len, const char *in, size_t n,
		   size_t cap, struct buf *out)
{
	enum coding c[MAX_CODINGS];
	struct buf a = { 0 }, b = { 0 };
	int k = parse_codings(coding, coding_len, c), rc = 0;
	if (k < 0)
		return k;
	if (k == 0)
		return n > cap ? -E2BIG : buf_append(out, in, n);
	const char *src = in;
	size_t sn = n;
	for (int i = k - 1; i >= 0 && !rc; i--) {
		struct buf *dst = i == 0 ? out : ((k - 1 - i) % 2 ? &b : &a);
		size_t keep = dst->len;
		if (dst != out)
			dst->len = 0;
		rc = decode_one(c[i], src, sn, cap, dst);
		if (!rc) {
			src = dst->data + (dst == out ? keep : 0);
			sn = dst->len - (dst == out ? keep : 0);
		}
	}
	buf_free(&a);
	buf_free(&b);
	return rc;
}

/* ---------------------------------------------------------------- base64 */

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+' || c == '-') return 62;
	if (c == '/' || c == '_') return 63;
	return -1;
}

int decode_base64(const char *in, size_t n, size_t cap, struct buf *out)
{
	size_t base = out->len;
	uint32_t acc = 0;
	int bits = 0, rc;
	bool pad = false;
	if ((rc = buf_reserve(out, (n / 4) * 3 + 3 < cap ? (n / 4) * 3 + 3 : cap)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad = true;
			continue;
		}
		int v = b64val(ch);
		if (v < 0 || pad)
			goto bad;          /* data after padding, or not base64 */
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char byte = (char)((acc >> bits) & 0xff);
			if (out->len - base >= cap) {
				out->len = base;
				return -E2BIG;
			}
			if ((rc = buf_append(out, &byte, 1))) {
				out->len = base;
				return rc;
			}
		}
	}
	if (bits >= 6)
		goto bad;                  /* a lone trailing character */
	return 0;
bad:
	out->len = base;
	return -EINVAL;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int decode_hex(const char *in, size_t n, struct buf *out)
{
	if (n % 2)
		return -EINVAL;
	if (buf_reserve(out, n / 2))
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval((unsigned char)in[i]), lo = hexval((unsigned char)in[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->data[out->len + i / 2] = (char)(hi << 4 | lo);
	}
	out->len += n / 2;
	out->data[out->len] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ sniff */

static bool utf8_text(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			/* control characters other than tab/CR/LF/FF/ESC mean binary */
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b)
				return false;
			i++;
			continue;
		}
		int k = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
		if (k < 0)
			return false;
		for (int j = 1; j <= k; j++)
			if (i + (size_t)j < n && (p[i + (size_t)j] & 0xc0) != 0x80)
				return false;
		i += (size_t)k + 1;        /* a sequence cut by the sample end is fine */
	}
	return true;
}

#define UTF16_SAMPLE 4096

static uint32_t utf16_unit(const unsigned char *p, int order)
{
	return order == 1 ? (uint32_t)(p[0] | p[1] << 8) : (uint32_t)(p[0] << 8 | p[1]);
}

/* Whether the units p[0..units) in one byte order are text as a reader
 * takes it: no C0 or C1 control other than tab, LF, FF and CR, no lone
 * surrogate, no noncharacter. Random bytes fail within a few dozen units
 * (about 3% of units fail), 16-bit audio at its first quiet sample. */
static bool utf16_valid_text(const unsigned char *p, size_t units, bool cut, int order)
{
	for (size_t i = 0; i < units; i++) {
		uint32_t u = utf16_unit(p + 2 * i, order);
		if ((u < 0x20 && u != '\t' && u != '\n' && u != '\f' && u != '\r') || (u >= 0x7f && u <= 0x9f) ||
		    (u >= 0xfdd0 && u <= 0xfdef) || u >= 0xfffe || (u >= 0xdc00 && u <= 0xdfff))
			return false;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (i + 1 == units)
				return cut;              /* its pair is past the sample */
			uint32_t v = utf16_unit(p + 2 * i + 2, order);
			if (v < 0xdc00 || v > 0xdfff)
				return false;
			i++;
		}
	}
	return true;
}

static bool ascii_text(unsigned char c)
{
	return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t';
}

/* A UTF-32 unit that is ASCII text, in one byte order */
static bool utf32_ascii(const unsigned char *q, int order)
{
	return order == 1 ? ascii_text(q[0]) && !q[1] && !q[2] && !q[3] : !q[0] && !q[1] && !q[2] && ascii_text(q[3]);
}

/* 1 little-endian, 2 big-endian, 3 either (both readings are valid text),
 * 0 not UTF-16; *bom: bytes of the mark. UTF-32 (a mark, or two ASCII
 * units first, as Python's json.loads(bytes) tells it) is UTF-16 of the
 * same order, its NUL units dropped by the reader. */
static int utf16_order(const unsigned char *p, size_t n, size_t *bom)
{
	*bom = 0;
	if (n >= 4 && !memcmp(p, "\xff\xfe\0\0", 4))
		return *bom = 4, 1;
	if (n >= 4 && !memcmp(p, "\0\0\xfe\xff", 4))
		return *bom = 4, 2;
	if (n >= 8 && utf32_ascii(p, 1) && utf32_ascii(p + 4, 1))
		return 1;
	if (n >= 8 && utf32_ascii(p, 2) && utf32_ascii(p + 4, 2))
		return 2;
	if (n >= 2 && p[0] == 0xff && p[1] == 0xfe)
		return *bom = 2, 1;
	if (n >= 2 && p[0] == 0xfe && p[1] == 0xff)
		return *bom = 2, 2;
	size_t units = (n < UTF16_SAMPLE ? n : UTF16_SAMPLE) / 2, le = 0, be = 0;
	for (size_t i = 0; i < units; i++) {
		unsigned char a = p[2 * i], b = p[2 * i + 1];
		le += !b && ascii_text(a);
		be += !a && ascii_text(b);
	}
	if (units < 2)
		return 0;
	if (le >= units / 2 || be >= units / 2)
		return le >= be ? 1 : 2;
	/* little ASCII (Chinese, Japanese, Korean, Cyrillic text; a key
	 * padded with it): text if every sampled unit is */
	if (units < 8)
		return 0;
	bool cut = n > UTF16_SAMPLE;
	return (utf16_valid_text(p, units, cut, 1) ? 1 : 0) | (utf16_valid_text(p, units, cut, 2) ? 2 : 0);
}

/* units of p in one byte order, appended as UTF-8 at out->data + *k */
static void utf16_append(const unsigned char *p, size_t units, int order, struct buf *out, size_t *k)
{
	for (size_t i = 0; i < units; i++) {
		uint32_t u = utf16_unit(p + 2 * i, order);
		if (u >= 0xd800 && u <= 0xdbff && i + 1 < units) {
			uint32_t v = utf16_unit(p + 2 * i + 2, order);
			if (v >= 0xdc00 && v <= 0xdfff) {
				*k += utf8_put(out->data + *k, 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00));
				i++;
				continue;
			}
		}
		/* a NUL is dropped, as the normaliser drops it: UTF-32 read as
		 * UTF-16 is then the text it encodes */
		if (u)
			*k += utf8_put(out->data + *k, u >= 0xd800 && u <= 0xdfff ? 0xfffd : u);
	}
}

int decode_utf16(const char *s, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t bom, k;
	int order = utf16_order(p, n, &bom);

	if (!order)
		return 0;
	size_t units = (n - bom) / 2;
	/* 3 bytes of UTF-8 at most per unit (a pair: 4 for 2); both readings
	 * and a newline between them when either order is text */
	if (units > (SIZE_MAX - 2) / 6 || buf_reserve(out, units * (order == 3 ? 6 : 3) + 1))
		return -ENOMEM;
	p += bom;
	k = out->len;
	if (order & 1)
		utf16_append(p, units, 1, out, &k);
	if (order == 3)
		out->data[k++] = '\n';
	if (order & 2)
		utf16_append(p, units, 2, out, &k);
	out->len = k;
	out->data[k] = '\0';
	return 1;
}

const char *decode_sniff(const char *s, size_t n)
{
	static const struct { const char *magic; unsigned char len; unsigned short off; const char *type; } m[] = {
		{ "\x89PNG\r\n\x1a\n", 8, 0, "image/png" },
		{ "\xff\xd8\xff", 3, 0, "image/jpeg" },
		{ "GIF87a", 6, 0, "image/gif" }, { "GIF89a", 6, 0, "image/gif" },
		{ "WEBP", 4, 8, "image/webp" }, { "WAVE", 4, 8, "audio/wav" },
		{ "AVI ", 4, 8, "video/x-msvideo" },
		{ "BM", 2, 0, "image/bmp" },
		{ "II*\0", 4, 0, "image/tiff" }, { "MM\0*", 4, 0, "image/tiff" },
		{ "ftyp", 4, 4, "video/mp4" },
		{ "%PDF-", 5, 0, "application/pdf" },
		{ "PK\x03\x04", 4, 0, "application/zip" }, { "PK\x05\x06", 4, 0, "application/zip" },
		{ "\x1f\x8b", 2, 0, "application/gzip" },
		{ "\x28\xb5\x2f\xfd", 4, 0, "application/zstd" },
		{ "7z\xbc\xaf\x27\x1c", 6, 0, "application/x-7z-compressed" },
		{ "Rar!\x1a\x07", 6, 0, "application/vnd.rar" },
		{ "BZh", 3, 0, "application/x-bzip2" },
		{ "\xfd" "7zXZ\0", 6, 0, "application/x-xz" },
		{ "ustar", 5, 257, "application/x-tar" },
		{ "ID3", 3, 0, "audio/mpeg" }, { "\xff\xfb", 2, 0, "audio/mpeg" },
		{ "OggS", 4, 0, "audio/ogg" }, { "fLaC", 4, 0, "audio/flac" },
		{ "\x1a\x45\xdf\xa3", 4, 0, "video/webm" },
		{ "\x7f" "ELF", 4, 0, "application/x-executable" },
		{ "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, 0, "application/x-ole-storage" },
	};
	const unsigned char *p = (const unsigned char *)s;
	size_t bom;
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (n >= (size_t)m[i].off + m[i].len && !memcmp(p + m[i].off, m[i].magic, m[i].len))
			return m[i].type;
	if (utf8_text(p, n < 4096 ? n : 4096))
		return NULL;
	return utf16_order(p, n, &bom) ? "text/plain; charset=utf-16" : "application/octet-stream";
}

bool decode_media_is_text(const char *mt, size_t n)
{
	static const char *const text[] = {
		"application/json", "application/xml", "application/x-ndjson", "application/jsonl",
		"application/x-jsonlines", "application/x-www-form-urlencoded",
		"application/javascript", "application/yaml", "application/x-yaml",
		"application/sql", "application/csv",
	};
	size_t e = 0;
	while (e < n && mt[e] != ';' && mt[e] != ' ')
		e++;
	if (e >= 5 && !strncasecmp(mt, "text/", 5))
		return true;
	if (e >= 5 && !strncasecmp(mt + e - 5, "+json", 5))
		return true;
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		if (strlen(text[i]) == e && !strncasecmp(mt, text[i], e))
			return true;
	return false;
}

/* -------------------------------------------------------------- normalise */

/* UTF-8 sequence at p[0..n): code point and length, or -1 if invalid */
static int32_t utf8_next(const unsigned char *p, size_t n, size_t *len)
{
	unsigned char c = p[0];
	int k = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
	if (k < 0 || (size_t)k >= n)
		return -1;
	int32_t cp = c & (0x3f >> k);
	for (int j = 1; j <= k; j++) {
		if ((p[j] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (p[j] & 0x3f);
	}
	*len = (size_t)k + 1;
	return cp;
}

/* What a non-ASCII code point becomes: -1 removed, 0 unchanged, else the
 * ASCII character. */
static int fold(int32_t cp)
{
	if ((cp >= 0x80 && cp <= 0x9f) ||          /* C1 controls */
	    cp == 0xad || cp == 0x61c || cp == 0x180e || (cp >= 0x200b && cp <= 0x200f) ||
	    (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
	    (cp >= 0x2066 && cp <= 0x206f) || cp == 0xfeff)
		return -1;
	if (cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
	    cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
		return ' ';
	if ((cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212)
		return '-';
	if (cp >= 0xff01 && cp <= 0xff5e)
		return (int)(cp - 0xfee0);
	if (cp >= 0x1d400 && cp <= 0x1d6a3) {     /* bold, italic, script, ... A-Z a-z */
		int k = (int)((cp - 0x1d400) % 52);
		return k < 26 ? 'A' + k : 'a' + (k - 26);
	}
	if (cp >= 0x1d7ce && cp <= 0x1d7ff)       /* bold, double-struck, ... digits */
		return '0' + (int)((cp - 0x1d7ce) % 10);
	/* Unicode tags ("ASCII smuggling"): invisible, but models read
	 * U+E0020..U+E007E as the ASCII they mirror; the language tag and the
	 * cancel tag are format characters */
	if (cp >= 0xe0020 && cp <= 0xe007e)
		return (int)(cp - 0xe0000);
	if (cp == 0xe0001 || cp == 0xe007f)
		return -1;
	return 0;
}

/* An ASCII control character a reader passes over: NUL, C0 but tab, LF,
 * VT, FF and CR, and DEL ("A\0K\0I\0A..." is read as the key it spells) */
static bool ctl_removed(unsigned char c)
{
	return (c < 0x20 && (c < '\t' || c > '\r')) || c == 0x7f;
}

/* ASCII with no control character to remove, a word at a time: a byte
 * b < 0x80 is below 0x20 when b + 0x60 has its top bit clear, and DEL
 * when b ^ 0x7f is zero; a word with either is looked at byte by byte. */
static bool plain_ascii(const char *t, size_t n)
{
	const uint64_t hi = 0x8080808080808080ull, ones = 0x0101010101010101ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w, d;
		memcpy(&w, t + i, 8);
		if (w & hi)
			return false;
		d = w ^ (0x7f * ones);
		if ((~(w + 0x60 * ones) & hi) || ((d - ones) & ~d & hi))
			for (size_t j = 0; j < 8; j++)
				if (ctl_removed((unsigned char)t[i + j]))
					return false;
	}
	for (; i < n; i++)
		if (((unsigned char)t[i] & 0x80) || ctl_removed((unsigned char)t[i]))
			return false;
	return true;
}

static bool value_char(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-' || c == '.' || c == '@';
}

/* Length of a soft line break at t[i]: a backslash-newline (LF or CRLF)
 * with a value character right before and right after it. In shells,
 * Makefiles, C and Python it joins the two halves of one token, so
 * "AKIA2OGYBA\<newline>H6TQJ5V3XL" is the key; nowhere is it two values. */
static size_t soft_break(const char *t, size_t n, size_t i)
{
	size_t k = i + 1;
	if (t[i] != '\\' || i == 0 || !value_char((unsigned char)t[i - 1]))
		return 0;
	if (k < n && t[k] == '\r')
		k++;
	if (k >= n || t[k] != '\n' || k + 1 >= n || !value_char((unsigned char)t[k + 1]))
		return 0;
	return k + 1 - i;
}

static bool has_soft_break(const char *t, size_t n)
{
	if (!n)
		return false;         /* t may be NULL (an empty body) */
	for (const char *b = memchr(t, '\\', n); b; b = memchr(b + 1, '\\', n - (size_t)(b + 1 - t)))
		if (soft_break(t, n, (size_t)(b - t)))
			return true;
	return false;
}

/* out emptied with room for n decoded bytes and map for n + 1 offsets
 * (decoding only shrinks): 0 or -ENOMEM. */
static int out_and_map(struct buf *out, size_t n, uint32_t **map, size_t *mapcap)
{
	out->len = 0;
	if (buf_reserve(out, n + 1))
		return -ENOMEM;
	if (*mapcap < n + 1) {
		uint32_t *m = realloc(*map, (n + 1) * sizeof(*m));
		if (!m)
			return -ENOMEM;
		*map = m;
		*mapcap = n + 1;
	}
	return 0;
}

int decode_normalize(const char *t, size_t n, struct buf *out, uint32_t **map, size_t *mapcap)
{
	const unsigned char *p = (const unsigned char *)t;
	size_t i = 0, l;
	bool change = false;
	if (n >= UINT32_MAX)
		return -E2BIG;
	if (plain_ascii(t, n)) {
		if (!has_soft_break(t, n))
			return 1;
		change = true;
	}
	while (i < n && !change) {
		int32_t cp = p[i] < 0x80 ? -1 : utf8_next(p + i, n - i, &l);
		change = (cp >= 0 && fold(cp) != 0) || (p[i] == '\\' && soft_break(t, n, i)) || ctl_removed(p[i]);
		i += cp >= 0 ? l : 1;
	}
	if (!change)
		return 1;
	if (out_and_map(out, n, map, mapcap))
		return -ENOMEM;
	for (i = 0; i < n;) {
		size_t sb = p[i] == '\\' ? soft_break(t, n, i) : 0;
		if (sb) {
			i += sb;
			continue;
		}
		int32_t cp = p[i] < 0x80 ? -1 : utf8_next(p + i, n - i, &l);
		int f = cp >= 0 ? fold(cp) : ctl_removed(p[i]) ? -1 : 0;
		size_t step = cp >= 0 ? l : 1;
		if (f < 0) {
			i += step;
			continue;
		}
		if (f > 0) {
			(*map)[out->len] = (uint32_t)i;
			out->data[out->len++] = (char)f;
		} else {
			for (size_t j = 0; j < step; j++) {
				(*map)[out->len] = (uint32_t)(i + j);
				out->data[out->len++] = t[i + j];
			}
		}
		i += step;
	}
	(*map)[out->len] = (uint32_t)n;
	out->data[out->len] = 0;
	return 0;
}

/* ------------------------------------------------------------ multipart */

static bool is_bchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("'()+_,-./:=? ", c));
}

bool decode_multipart_boundary(const char *ct, size_t n, const char **b, size_t *blen)
{
	for (size_t i = 0; i + 9 <= n; i++) {
		if (strncasecmp(ct + i, "boundary=", 9) || (i && ct[i - 1] != ';' && ct[i - 1] != ' '))
			continue;
		size_t s = i + 9, e;
		if (s < n && ct[s] == '"') {
			s++;
			for (e = s; e < n && ct[e] != '"'; e++)
				;
			if (e >= n)
				return false;
		} else {
			for (e = s; e < n && ct[e] != ';' && ct[e] != ' '; e++)
				;
		}
		if (e == s || e - s > 70)
			return false;
		for (size_t k = s; k < e; k++)
			if (!is_bchar((unsigned char)ct[k]))
				return false;
		*b = ct + s;
		*blen = e - s;
		return true;
	}
	return false;
}

/* Offset of the next delimiter line "--boundary" at a line start, at or
 * after from; len if none. */
static size_t find_delim(const char *body, size_t len, const char *b, size_t blen, size_t from)
{
	size_t i = from;
	while (i + 2 + blen <= len) {
		const char *d = memmem(body + i, len - i, "--", 2);
		if (!d)
			break;
		size_t k = (size_t)(d - body);
		if ((k == 0 || body[k - 1] == '\n') && k + 2 + blen <= len && !memcmp(body + k + 2, b, blen))
			return k;
		i = k + 1;
	}
	return len;
}

int decode_multipart_next(const char *body, size_t len, const char *b, size_t blen, size_t *pos,
			  struct decode_part *part)
{
	size_t d = find_delim(body, len, b, blen, *pos);
	if (d >= len)
		return 0;
	size_t after = d + 2 + blen;
	if (after + 2 <= len && body[after] == '-' && body[after + 1] == '-')
		return 0;                       /* close delimiter */
	const char *nl = memchr(body + after, '\n', len - after);
	if (!nl)
		return 0;
	size_t h = (size_t)(nl - body) + 1;
	const char *sep;
	size_t hs = 4;
	if (len - h >= 2 && body[h] == '\r' && body[h + 1] == '\n') {
		sep = body + h - 2;             /* no headers at all */
	} else {
		sep = memmem(body + h, len - h, "\r\n\r\n", 4);
		const char *sep2 = memmem(body + h, len - h, "\n\n", 2);
		if (!sep || (sep2 && sep2 < sep)) {
			sep = sep2;
			hs = 2;
		}
	}
	if (!sep)
		return -EINVAL;
	part->hdr_off = h;
	part->hdr_len = (size_t)(sep - body) >= h ? (size_t)(sep - body) - h : 0;
	part->off = (size_t)(sep - body) + hs;
	size_t next = find_delim(body, len, b, blen, part->off);
	part->unterminated = next >= len;
	size_t end = next;
	/* the line break before the delimiter belongs to it (RFC 2046) */
	if (!part->unterminated && end > part->off && body[end - 1] == '\n')
		end -= (end - 1 > part->off && body[end - 2] == '\r') ? 2 : 1;
	part->len = end - part->off;
	*pos = next;
	return 1;
}

bool decode_header_value(const char *hdr, size_t n, const char *name, const char **v, size_t *vlen)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < n;) {
		const char *eol = memchr(hdr + i, '\n', n - i);
		size_t e = eol ? (size_t)(eol - hdr) : n;
		if (e - i > nl && !strncasecmp(hdr + i, name, nl) && hdr[i + nl] == ':') {
			size_t s = i + nl + 1;
			while (s < e && (hdr[s] == ' ' || hdr[s] == '\t'))
				s++;
			size_t t = e;
			while (t > s && (hdr[t - 1] == '\r' || hdr[t - 1] == ' ' || hdr[t - 1] == '\t'))
				t--;
			*v = hdr + s;
			*vlen = t - s;
			return true;
		}
		i = e + 1;
	}
	return false;
}

/* ----------------------------------------------------------------- forms */

int decode_form(const char *in, size_t n, struct buf *out, uint32_t **map, size_t *mapcap)
{
	if (n >= UINT32_MAX)
		return -E2BIG;
	if (out_and_map(out, n, map, mapcap))
		return -ENOMEM;
	for (size_t i = 0; i < n;) {
		char c = in[i];
		size_t step = 1;
		if (c == '+') {
			c = ' ';
		} else if (c == '%' && i + 2 < n && hexval((unsigned char)in[i + 1]) >= 0 &&
			   hexval((unsigned char)in[i + 2]) >= 0) {
			c = (char)(hexval((unsigned char)in[i + 1]) * 16 + hexval((unsigned char)in[i + 2]));
			step = 3;
		}
		(*map)[out->len] = (uint32_t)i;
		out->data[out->len++] = c;
		i += step;
	}
	(*map)[out->len] = (uint32_t)n;
	out->data[out->len] = 0;
	return 0;
}
