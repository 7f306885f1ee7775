/* sni: a ClientHello reader written for hostile input. Every length field is
 * checked against what encloses it before it is used; the handshake message
 * may be split across several TLS records (large post-quantum key shares do
 * that) and is reassembled into a bounded stack buffer. RFC 8446 4.1.2,
 * RFC 6066 3. */
#include <string.h>
#include "net/sni.h"

#define REC_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0

struct rd {
	const uint8_t *p;
	size_t left;
};

static int rd_u8(struct rd *r, unsigned *v)
{
	if (r->left < 1)
		return -1;
	*v = r->p[0];
	r->p++, r->left--;
	return 0;
}

static int rd_u16(struct rd *r, unsigned *v)
{
	if (r->left < 2)
		return -1;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2, r->left -= 2;
	return 0;
}

static int rd_skip(struct rd *r, size_t n)
{
	if (r->left < n)
		return -1;
	r->p += n, r->left -= n;
	return 0;
}

/* A sub-reader of n bytes; the parent advances past them. */
static int rd_sub(struct rd *r, size_t n, struct rd *sub)
{
	if (r->left < n)
		return -1;
	sub->p = r->p;
	sub->left = n;
	r->p += n, r->left -= n;
	return 0;
}

int sni_host_normalise(const char *host, size_t len, char *out, size_t outlen)
{
	const uint8_t *s = (const uint8_t *)host;
	size_t label = 0;

	/* One trailing dot is the same name (absolute form, RFC 1034 3.1):
	 * "api.openai.com." must match, be forged for and sent upstream as
	 * "api.openai.com", or a client could choose "not watched" by adding it. */
	if (len > 1 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || len + 1 > outlen)
		return -1;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (uint8_t)(c + 32);
			label++;
		} else {
			return -1;
		}
		if (label > 63)
			return -1;
		out[i] = (char)c;
	}
	if (label == 0)
		return -1;
	out[len] = 0;
	return 0;
}

int sni_authority_host(const char *auth, size_t len, char *out, size_t outlen)
{
	/* host ":" port (RFC 9110 7.2); a bracketed IPv6 literal has colons
	 * of its own and is not a name, so it fails normalisation anyway. */
	for (size_t i = len; i > 0; i--) {
		char c = auth[i - 1];
		if (c == ':') {
			if (i == len)
				return -1;        /* "host:" with an empty port */
			len = i - 1;
			break;
		}
		if (c < '0' || c > '9')
			break;
	}
	return sni_host_normalise(auth, len, out, outlen);
}

static enum sni_status parse_hello(const uint8_t *msg, size_t len, char *name, size_t namelen)
{
	struct rd r = { msg, len }, sess, ext, e;
	unsigned n;

	/* legacy_version, random */
	if (rd_skip(&r, 2 + 32))
		return SNI_MALFORMED;
	if (rd_u8(&r, &n) || n > 32 || rd_skip(&r, n))              /* legacy_session_id */
		return SNI_MALFORMED;
	if (rd_u16(&r, &n) || n < 2 || (n & 1) || rd_skip(&r, n))   /* cipher_suites */
		return SNI_MALFORMED;
	if (rd_u8(&r, &n) || n < 1 || rd_skip(&r, n))               /* compression_methods */
		return SNI_MALFORMED;
	if (r.left == 0)
		return SNI_ABSENT;                                  /* no extensions at all */
	if (rd_u16(&r, &n) || rd_sub(&r, n, &ext))
		return SNI_MALFORMED;
	while (ext.left) {
		unsigned type;
		if (rd_u16(&ext, &type) || rd_u16(&ext, &n) || rd_sub(&ext, n, &e))
			return SNI_MALFORMED;
		if (type != EXT_SERVER_NAME)
			continue;
		/* ServerNameList: the first host_name entry counts. */
		if (rd_u16(&e, &n) || rd_sub(&e, n, &sess) || e.left)
			return SNI_MALFORMED;
		while (sess.left) {
			unsigned nt, nl;
			if (rd_u8(&sess, &nt) || rd_u16(&sess, &nl) || sess.left < nl)
				return SNI_MALFORMED;
			if (nt == 0)
				return sni_host_normalise((const char *)sess.p, nl, name, namelen) ?
					       SNI_BAD_NAME : SNI_FOUND;
			rd_skip(&sess, nl);
		}
		return SNI_ABSENT;
	}
	return SNI_ABSENT;
}

enum sni_status sni_parse(const uint8_t *buf, size_t len, char *name, size_t namelen)
{
	uint8_t hs[SNI_MAX_HELLO + 4];
	size_t have = 0, need = 0, off = 0;

	if (len >= 1 && buf[0] != REC_HANDSHAKE)
		return SNI_NOT_TLS;
	if (len >= 2 && buf[1] != 3)
		return SNI_NOT_TLS;
	/* Walk handshake records, gathering their payload until the whole
	 * ClientHello (4-byte header + body) is in hs[]. */
	while (1) {
		size_t rlen, take;
		if (len - off < 5)
			return SNI_NEED_MORE;
		if (buf[off] != REC_HANDSHAKE || buf[off + 1] != 3)
			return off ? SNI_MALFORMED : SNI_NOT_TLS;
		rlen = (size_t)buf[off + 3] << 8 | buf[off + 4];
		if (rlen == 0 || rlen > 16384 + 2048)
			return SNI_MALFORMED;
		if (len - off - 5 < rlen)
			take = len - off - 5;        /* partial record: use what we have */
		else
			take = rlen;
		if (have + take > sizeof(hs))
			return SNI_MALFORMED;
		memcpy(hs + have, buf + off + 5, take);
		have += take;
		if (!need && have >= 4) {
			if (hs[0] != HS_CLIENT_HELLO)
				return SNI_MALFORMED;
			need = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
			if (need > sizeof(hs))
				return SNI_MALFORMED;
		}
		if (need && have >= need)
			return parse_hello(hs + 4, need - 4, name, namelen);
		if (take < rlen)
			return SNI_NEED_MORE;
		off += 5 + rlen;
	}
}
