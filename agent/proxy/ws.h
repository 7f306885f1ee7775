/* ws: a sans-IO RFC 6455 frame codec, one parser per direction.
 *
 * The parser is fed whatever bytes arrived (one at a time is fine: its
 * state resumes, it never re-reads) and calls back once per whole message:
 * a text or binary message reassembled from its fragments, or a control
 * frame (close, ping, pong), which may arrive between two fragments. It
 * checks what RFC 6455 section 5 requires of a peer: reserved bits clear
 * (no extension is ever negotiated through the agent), known opcodes,
 * control frames unfragmented and at most 125 bytes, the minimal length
 * encoding, masking present from a client and absent from a server,
 * continuation only inside a message, valid close codes, UTF-8 in text
 * messages and close reasons; and the agent's limits on frame and message
 * size (close code 1009). On the first violation it stops for good and
 * names the close code to send and why.
 *
 * What this file must never do: I/O, logging of payloads, or hand the
 * caller a message larger than its limit. */
#ifndef VIGIL_WS_H
#define VIGIL_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
	WS_CONT = 0x0,
	WS_TEXT = 0x1,
	WS_BINARY = 0x2,
	WS_CLOSE = 0x8,
	WS_PING = 0x9,
	WS_PONG = 0xa,
};

/* Close codes the agent sends (RFC 6455 7.4.1). */
enum ws_close {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_BAD_DATA = 1007,     /* text that is not UTF-8 */
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
};

#define WS_CONTROL_MAX 125
#define WS_HEADER_MAX 14

/* Which peer the bytes come from: a client must mask every frame, a
 * server must mask none (RFC 6455 5.1). */
enum ws_peer { WS_FROM_CLIENT, WS_FROM_SERVER };

/* One message (data unmasked, borrowed for the call). For a close frame,
 * data is its payload (code and reason as sent). A non-zero return stops
 * the feed and is returned by ws_parser_feed. */
typedef int (*ws_message_fn)(void *arg, enum ws_opcode op, const uint8_t *data, size_t len);

struct ws_parser {
	/* set by ws_parser_init */
	enum ws_peer from;
	uint64_t max_frame, max_message;
	/* the frame being read */
	uint8_t hdr[WS_HEADER_MAX];
	size_t hdr_have;
	bool fin;
	uint8_t op;
	uint8_t mask[4];
	bool masked;
	uint64_t frame_len, frame_have;
	/* the data message being reassembled (owned) */
	uint8_t msg_op;               /* 0 = none in progress */
	uint8_t *msg;
	size_t msg_len, msg_cap;
	/* a control frame's payload */
	uint8_t ctl[WS_CONTROL_MAX];
	/* the first violation: the code to close with and why (static text) */
	uint16_t close_code;
	const char *error;
};

void ws_parser_init(struct ws_parser *p, enum ws_peer from, uint64_t max_frame, uint64_t max_message);
/* Releases the reassembly buffer (its bytes wiped: they may be a prompt). */
void ws_parser_free(struct ws_parser *p);

/* Consumes all of in. Returns 0; -EPROTO after a violation (p->close_code
 * and p->error say which; every later call returns -EPROTO again);
 * -ENOMEM; or the callback's non-zero value. */
int ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t len, ws_message_fn fn, void *arg);

/* A frame head for a payload of len bytes into out (WS_HEADER_MAX bytes):
 * with mask non-NULL the frame is masked with it (the payload must then
 * be masked by ws_mask). Returns the head's length. */
size_t ws_frame_head(uint8_t *out, enum ws_opcode op, bool fin, const uint8_t *mask, uint64_t len);
/* XORs data with the mask, as at payload offset off. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t off);

/* A close payload: code in network order, then the reason (truncated to
 * fit a control frame). Returns its length. */
size_t ws_close_payload(uint8_t *out, uint16_t code, const char *reason);
/* The code of a close payload; 1005 (none given) for an empty one. */
uint16_t ws_close_code(const uint8_t *data, size_t len);

#endif
