/* decode: the layers a request body can be wrapped in, undone so the
 * inspector reads what the provider (and so the model) will read:
 * Content-Encoding (gzip, deflate as zlib or raw, br, zstd, stacked in any
 * order), base64, and the sniffing of binary content by its magic bytes.
 *
 * Owns: decompression with a hard cap on the decoded size (a bomb is
 * stopped at the cap, never inflated whole) and the media-type guess for
 * content the detectors cannot read. Never logs content; never writes to
 * its input. Output buffers are caller-owned struct buf (appended to).
 */
#ifndef VIGIL_DECODE_H
#define VIGIL_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/json.h"

/* Undo a Content-Encoding header value (a comma-separated list of
 * codings, applied in order, so decoded last to first) on in[0..n),
 * appending the result to out. "identity" is a no-op. Returns 0,
 * -ENOTSUP (a coding the agent cannot decode: answer 415), -E2BIG (the
 * decoded size would pass cap: a limit), -EINVAL (corrupt or truncated
 * data), -ENOMEM. On error out->len is unchanged. */
int decode_content(const char *coding, size_t coding_len, const char *in, size_t n,
		   size_t cap, struct buf *out);

/* Whether decode_content knows every coding in the list. */
bool decode_content_known(const char *coding, size_t coding_len);

/* Standard or URL-safe base64 (padding optional, ASCII whitespace
 * skipped) appended to out. Returns 0, -EINVAL (not base64), -E2BIG
 * (over cap), -ENOMEM. */
int decode_base64(const char *in, size_t n, size_t cap, struct buf *out);

/* Hexadecimal (an even number of 0-9 a-f A-F, nothing else), appended
 * to out. Returns 0, -EINVAL (not hex), -ENOMEM. */
int decode_hex(const char *in, size_t n, struct buf *out);

/* What binary content is, from its first bytes: a media type such as
 * "image/png", "application/pdf", "application/zip", or NULL when it
 * looks like text (valid UTF-8 without NULs in the sampled prefix).
 * Text in UTF-16 (see decode_utf16) is "text/plain; charset=utf-16": the
 * detectors read it, but it cannot be rewritten in place. Unknown
 * binaries are "application/octet-stream". Static strings. */
const char *decode_sniff(const char *p, size_t n);

/* Text in UTF-16, as Windows' Notepad ("Unicode"), PowerShell and
 * `iconv -t UTF-16` write it and OpenAI's file search accepts it: a byte
 * order mark (FF FE, FE FF), or without one, at least half the 16-bit
 * units of the first 4 KiB in one byte order being printable ASCII or
 * whitespace (quiet 16-bit audio, with its high bytes often 0, has about
 * a fifth), or failing that (text with little ASCII: Chinese, Russian, a
 * key padded with either), every unit of the first 4 KiB valid text in a
 * byte order: no control character but tab, LF, FF and CR, no lone
 * surrogate, no noncharacter (audio fails at its first quiet sample,
 * random bytes within a few dozen units). Such text (after the mark) is
 * appended to out as UTF-8: a lone surrogate becomes U+FFFD, NUL is
 * dropped (so UTF-32 is read as the text it encodes),
 * a last odd byte is dropped; when both byte orders are valid text, both
 * readings are appended, a newline between. Returns 1 (out holds it), 0
 * (not UTF-16; out unchanged) or -ENOMEM. */
int decode_utf16(const char *p, size_t n, struct buf *out);

/* Whether a media type (parameters ignored, case-insensitive) names text
 * the detectors can read: text/..., application/json, application/...+json,
 * application/xml, application/x-ndjson, application/jsonl,
 * application/x-www-form-urlencoded, application/javascript, application/yaml. */
bool decode_media_is_text(const char *mt, size_t n);



/* Normalise text the way a model reads it, before matching:
 *  - format characters (Cf: soft hyphen, zero-width space/joiners, bidi
 *    controls, word joiner, BOM, ...) are removed, and so are control
 *    characters (NUL, C0 but tab, LF, VT, FF and CR; DEL; C1);
 *  - every Unicode space (NBSP, U+2000..U+200A, narrow NBSP, ideographic
 *    space, ...) and the line/paragraph separators become ' ';
 *  - fullwidth ASCII (U+FF01..U+FF5E, so '＠' and fullwidth digits) and
 *    the mathematical alphanumerics (U+1D400..U+1D7FF) fold to ASCII as
 *    NFKC does; Unicode dashes (U+2010..U+2015, U+2212) become '-'; the
 *    invisible Unicode tags U+E0020..U+E007E ("ASCII smuggling", which
 *    models read) become the ASCII they mirror;
 *  - a soft line break inside a value, a backslash-newline with a value
 *    character ([A-Za-z0-9+/=_.@-]) on both sides, is removed (shell, C,
 *    Makefile and Python continuation: one token, never two values).
 *    Other line breaks stay: a newline between digit groups or words is
 *    ambiguous (a list of numbers, two lines of prose).
 * Returns 1 when t needs no change (ASCII text answers this in one
 * word-at-a-time pass and a memchr for backslashes), 0 when out holds the
 * normalised text and (*map)[i] the index in t of the character that
 * produced out byte i ((*map)[out->len] == n), or -ENOMEM / -E2BIG.
 * out is reset; *map is grown with realloc (caller frees). */
int decode_normalize(const char *t, size_t n, struct buf *out, uint32_t **map, size_t *mapcap);
/* ------------------------------------------------------------ multipart */

/* The boundary parameter of a multipart Content-Type (quotes removed,
 * 1..70 characters as RFC 2046 allows). Returns false if absent/invalid. */
bool decode_multipart_boundary(const char *ctype, size_t n, const char **b, size_t *blen);

/* One part of a multipart body: its header block and its content, as
 * offsets into the body. */
struct decode_part {
	size_t hdr_off, hdr_len;
	size_t off, len;
	bool unterminated;        /* no closing delimiter: content runs to the end */
};

/* The part after *pos (0 to start); advances *pos. Returns 1 with *part
 * filled, 0 at the end (after the close delimiter, or no delimiter at
 * all), -EINVAL if a part has no header/body separator. */
int decode_multipart_next(const char *body, size_t len, const char *b, size_t blen, size_t *pos,
			  struct decode_part *part);

/* Value of header name (case-insensitive) in a part's header block, OWS
 * trimmed; false if absent. */
bool decode_header_value(const char *hdr, size_t n, const char *name, const char **v, size_t *vlen);

/* One application/x-www-form-urlencoded piece (a "key=value" pair) with
 * '+' and %XX decoded; (*map)[i] is the index in in of the byte that
 * produced out byte i ((*map)[out->len] == n). out is reset. Malformed
 * escapes stay literal. Returns 0 or -ENOMEM / -E2BIG. */
int decode_form(const char *in, size_t n, struct buf *out, uint32_t **map, size_t *mapcap);

#endif
