/* grpc: message framing of gRPC calls (see grpc.h).
 *
 * Must never: allocate from a length before it is checked against the
 * limit, or hand on a message that was cut short. Re-encoding always sends
 * messages uncompressed (flag 0), which every gRPC peer accepts whatever
 * grpc-encoding says: the agent never has to compress. */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include "proxy/grpc.h"
#include "content/decode.h"

void grpc_reader_init(struct grpc_reader *r, size_t max_msg)
{
	memset(r, 0, sizeof(*r));
	r->max_msg = max_msg;
	r->msg.secret = true;
}

void grpc_reader_free(struct grpc_reader *r)
{
	if (!r)
		return;
	buf_free(&r->msg);
}

bool grpc_reader_idle(const struct grpc_reader *r)
{
	return r->have_prefix == 0;
}

/* The prefix is whole: check it, then expect the body. */
static int prefix_done(struct grpc_reader *r)
{
	uint32_t n = (uint32_t)r->prefix[1] << 24 | (uint32_t)r->prefix[2] << 16 |
		     (uint32_t)r->prefix[3] << 8 | r->prefix[4];

	if (r->prefix[0] > 1)
		return -EPROTO;
	if (n > r->max_msg)
		return -EMSGSIZE;
	r->compressed = r->prefix[0] == 1;
	r->need = n;
	r->msg.len = 0;
	return buf_reserve(&r->msg, n) ? -ENOMEM : 0;
}

int grpc_reader_feed(struct grpc_reader *r, const void *data, size_t len, grpc_msg_fn fn, void *arg)
{
	const uint8_t *p = data;
	int rc;

	while (len) {
		if (r->have_prefix < GRPC_PREFIX) {
			size_t take = GRPC_PREFIX - r->have_prefix;
			if (take > len)
				take = len;
			memcpy(r->prefix + r->have_prefix, p, take);
			r->have_prefix += take;
			p += take;
			len -= take;
			if (r->have_prefix < GRPC_PREFIX)
				return 0;
			if ((rc = prefix_done(r)))
				return rc;
		}
		size_t take = r->need < len ? r->need : len;
		if (take && buf_append(&r->msg, p, take))
			return -ENOMEM;
		r->need -= (uint32_t)take;
		p += take;
		len -= take;
		if (r->need)
			return 0;
		r->have_prefix = 0;
		rc = fn(arg, r->compressed, (const uint8_t *)r->msg.data, r->msg.len);
		r->msg.len = 0;
		/* one large message does not pin its buffer for the whole call */
		if (r->msg.cap > 65536) {
			buf_free(&r->msg);
			memset(&r->msg, 0, sizeof(r->msg));
		}
		if (rc)
			return rc;
	}
	return 0;
}

int grpc_message_decode(const char *encoding, size_t enc_len, bool compressed, const uint8_t *msg,
			size_t len, size_t cap, struct buf *out)
{
	if (!compressed) {
		if (len > cap)
			return -E2BIG;
		return buf_append(out, msg, len) ? -ENOMEM : 0;
	}
	/* gRPC's "deflate" is zlib-wrapped; decode_content also takes raw */
	if (!encoding || !enc_len || (enc_len == 8 && !strncasecmp(encoding, "identity", 8)))
		return -EINVAL;
	if (!((enc_len == 4 && !strncasecmp(encoding, "gzip", 4)) ||
	      (enc_len == 7 && !strncasecmp(encoding, "deflate", 7))))
		return -ENOTSUP;
	return decode_content(encoding, enc_len, (const char *)msg, len, cap, out);
}

int grpc_frame(struct buf *out, bool compressed, const void *msg, size_t len)
{
	uint8_t pre[GRPC_PREFIX] = { compressed, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
				     (uint8_t)len };
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	if (buf_reserve(out, len + GRPC_PREFIX))
		return -ENOMEM;
	buf_append(out, pre, GRPC_PREFIX);
	buf_append(out, msg, len);
	return 0;
}
