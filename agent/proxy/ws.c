/* ws: RFC 6455 framing, sans-IO (see ws.h). The relay (wsrelay.c) does the
 * I/O; this file only turns bytes into checked messages and messages into
 * frame heads, so it moves to the event loop unchanged and is fed byte by
 * byte by its tests and its fuzz target. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "proxy/ws.h"
#include "buf.h"
#include "utf8.h"

/* A reassembly buffer over this is given back after its message, so an
 * idle session holds no large buffer. */
#define WS_KEEP_CAP (64 * 1024)

void ws_parser_init(struct ws_parser *p, enum ws_peer from, uint64_t max_frame, uint64_t max_message)
{
	memset(p, 0, sizeof(*p));
	p->from = from;
	p->max_frame = max_frame;
	p->max_message = max_message;
}

static void drop_msg(struct ws_parser *p)
{
	secret_free(p->msg, p->msg_cap);
	p->msg = NULL;
	p->msg_cap = 0;
}

void ws_parser_free(struct ws_parser *p)
{
	drop_msg(p);
	explicit_bzero(p->ctl, sizeof(p->ctl));
	p->msg_len = 0;
}

static int fail(struct ws_parser *p, uint16_t code, const char *why)
{
	p->close_code = code;
	p->error = why;
	return -EPROTO;
}

/* Bytes of the head: 2, the extended length, the mask. */
static size_t head_need(const struct ws_parser *p)
{
	if (p->hdr_have < 2)
		return 2;
	uint8_t l7 = p->hdr[1] & 0x7f;
	return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((p->hdr[1] & 0x80) ? 4 : 0);
}

static bool is_control(uint8_t op)
{
	return op & 0x8;
}

/* The head is complete: decode and check it. */
static int head_done(struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0], l7 = p->hdr[1] & 0x7f;
	size_t i = 2;
	uint64_t len = l7;

	p->fin = b0 & 0x80;
	p->op = b0 & 0x0f;
	p->masked = p->hdr[1] & 0x80;
	if (b0 & 0x70)
		return fail(p, WS_CLOSE_PROTOCOL, "reserved bit set (no extension was negotiated)");
	if (p->op != WS_CONT && p->op != WS_TEXT && p->op != WS_BINARY && p->op != WS_CLOSE &&
	    p->op != WS_PING && p->op != WS_PONG)
		return fail(p, WS_CLOSE_PROTOCOL, "unknown opcode");
	if (p->from == WS_FROM_CLIENT && !p->masked)
		return fail(p, WS_CLOSE_PROTOCOL, "unmasked frame from the client");
	if (p->from == WS_FROM_SERVER && p->masked)
		return fail(p, WS_CLOSE_PROTOCOL, "masked frame from the server");
	if (l7 == 126) {
		len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
		i = 4;
		if (len < 126)
			return fail(p, WS_CLOSE_PROTOCOL, "length not minimally encoded");
	} else if (l7 == 127) {
		len = 0;
		for (i = 2; i < 10; i++)
			len = len << 8 | p->hdr[i];
		if (len >> 63)
			return fail(p, WS_CLOSE_PROTOCOL, "length with its top bit set");
		if (len < 65536)
			return fail(p, WS_CLOSE_PROTOCOL, "length not minimally encoded");
	}
	if (p->masked)
		memcpy(p->mask, p->hdr + i, 4);
	p->frame_len = len;
	p->frame_have = 0;
	if (is_control(p->op)) {
		if (!p->fin)
			return fail(p, WS_CLOSE_PROTOCOL, "fragmented control frame");
		if (len > WS_CONTROL_MAX)
			return fail(p, WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
		return 0;
	}
	if (p->op == WS_CONT && !p->msg_op)
		return fail(p, WS_CLOSE_PROTOCOL, "continuation outside a message");
	if (p->op != WS_CONT && p->msg_op)
		return fail(p, WS_CLOSE_PROTOCOL, "new message before the last one ended");
	if (len > p->max_frame)
		return fail(p, WS_CLOSE_TOO_BIG, "frame over the agent's ws_max_frame");
	if (len > p->max_message || p->msg_len + len > p->max_message)
		return fail(p, WS_CLOSE_TOO_BIG, "message over the agent's ws_max_message");
	if (p->op != WS_CONT)
		p->msg_op = p->op;
	if (p->msg_len + len > p->msg_cap) {
		/* the whole frame's room at once: a frame is copied, never grown per byte */
		size_t cap = p->msg_cap ? p->msg_cap : 4096;
		while (cap < p->msg_len + len)
			cap *= 2;
		if (cap > p->max_message)
			cap = (size_t)p->max_message;
		uint8_t *nb = secret_realloc(p->msg, p->msg_len, p->msg_cap, cap);
		if (!nb)
			return -ENOMEM;
		p->msg = nb;
		p->msg_cap = cap;
	}
	return 0;
}

static bool close_code_valid(uint16_t c)
{
	/* 1004-1006 and 1015 are reserved for reporting, never sent */
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The frame's payload is all here. */
static int frame_done(struct ws_parser *p, ws_message_fn fn, void *arg)
{
	size_t n = (size_t)p->frame_len;
	p->hdr_have = 0;
	if (is_control(p->op)) {
		if (p->op == WS_CLOSE) {
			if (n == 1)
				return fail(p, WS_CLOSE_PROTOCOL, "close payload of one byte");
			if (n >= 2 && !close_code_valid(ws_close_code(p->ctl, n)))
				return fail(p, WS_CLOSE_PROTOCOL, "invalid close code");
			if (n > 2 && !utf8_valid(p->ctl + 2, n - 2))
				return fail(p, WS_CLOSE_BAD_DATA, "close reason is not UTF-8");
		}
		return fn(arg, (enum ws_opcode)p->op, p->ctl, n);
	}
	p->msg_len += n;
	if (!p->fin)
		return 0;
	enum ws_opcode op = (enum ws_opcode)p->msg_op;
	size_t len = p->msg_len;
	p->msg_op = 0;
	p->msg_len = 0;
	if (op == WS_TEXT && !utf8_valid(p->msg, len))
		return fail(p, WS_CLOSE_BAD_DATA, "text message is not UTF-8");
	int rc = fn(arg, op, p->msg ? p->msg : (const uint8_t *)"", len);
	if (p->msg_cap > WS_KEEP_CAP)
		drop_msg(p);
	return rc;
}

int ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t len, ws_message_fn fn, void *arg)
{
	size_t i = 0;
	int rc;
	if (p->close_code)
		return -EPROTO;
	for (;;) {
		size_t need = head_need(p);
		if (p->hdr_have < need) {
			while (p->hdr_have < need && i < len) {
				p->hdr[p->hdr_have++] = in[i++];
				need = head_need(p);   /* grows once the second byte is in */
			}
			if (p->hdr_have < need)
				return 0;
			if ((rc = head_done(p)))
				return rc;
		}
		uint64_t want = p->frame_len - p->frame_have;
		size_t take = len - i < want ? len - i : (size_t)want;
		if (take) {
			uint8_t *dst = is_control(p->op) ? p->ctl + p->frame_have : p->msg + p->msg_len + p->frame_have;
			memcpy(dst, in + i, take);
			if (p->masked)
				ws_mask(dst, take, p->mask, p->frame_have);
			p->frame_have += take;
			i += take;
		}
		if (p->frame_have < p->frame_len)
			return 0;
		if ((rc = frame_done(p, fn, arg)))
			return rc;
		if (i == len)
			return 0;
	}
}

size_t ws_frame_head(uint8_t *out, enum ws_opcode op, bool fin, const uint8_t *mask, uint64_t len)
{
	size_t n = 2;
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 127;
		for (int k = 0; k < 8; k++)
			out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
		n = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t off)
{
	for (size_t k = 0; k < len; k++)
		data[k] ^= mask[(off + k) & 3];
}

size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
	size_t rl = reason ? strlen(reason) : 0;
	if (rl > WS_CONTROL_MAX - 2)
		rl = WS_CONTROL_MAX - 2;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	memcpy(out + 2, reason ? reason : "", rl);
	return 2 + rl;
}

uint16_t ws_close_code(const uint8_t *data, size_t len)
{
	return len >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 1005;
}

