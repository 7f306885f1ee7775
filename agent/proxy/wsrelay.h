/* wsrelay: a WebSocket session through the agent (the OpenAI / Azure
 * OpenAI Realtime API). The handshake passes with its Upgrade, Connection
 * and Sec-WebSocket-* headers, minus Sec-WebSocket-Extensions (so no
 * permessage-deflate: frames stay readable); after the 101 the connection
 * is a frame relay in both directions through ws.c. Realtime events (JSON
 * in text frames) go through the same exchange code as HTTP requests and
 * answers: a client event is inspected, decided, redacted or blocked by
 * exchange_request(); server events are read as an event stream by
 * exchange_response_*(), which restores vault tokens, scans and redacts
 * answer text and counts usage. Audio (input_audio_buffer.append,
 * response.audio.delta, binary frames) passes untouched.
 *
 * The h1x engine drives it (wsrelay_run through its driver, intercept.c):
 * wsrelay_upgrade() decides whether a request is a
 * WebSocket upgrade and whether it may pass; wsrelay_request_head() puts
 * the upgrade headers back into the forwarded head; after a 101 that
 * wsrelay_response_ok() accepts, wsrelay_run() relays until either side
 * ends and fills the handshake's exchange with the session's summary
 * (kind "websocket"). Each blocked client event is audited on its own
 * (kind "websocket_message").
 *
 * What this module must never do: relay a frame it did not parse, forward
 * a blocked event, or let a bad frame from one client end anything but
 * its own session. */
#ifndef VIGIL_WSRELAY_H
#define VIGIL_WSRELAY_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "proxy/exchange.h"
#include "http.h"

enum wsrelay_upgrade {
	WSRELAY_NONE,       /* not a WebSocket upgrade */
	WSRELAY_ALLOWED,    /* a watched provider's WebSocket endpoint */
	WSRELAY_REFUSED,    /* ex is blocked (403, audited by the caller) */
};

/* After exchange_request(ex, req): a GET with Upgrade: websocket is
 * allowed only to a known Realtime endpoint; anything else is refused
 * rather than relayed unread. Sets ex->kind for an allowed one. Removes
 * Sec-WebSocket-Extensions from req. */
enum wsrelay_upgrade wsrelay_upgrade(struct exchange *ex, struct http_request *req);

/* The forwarded head of hl bytes in buf (ending in the blank line) gets
 * "Upgrade: websocket" and "Connection: Upgrade" back (http.c drops them
 * as hop-by-hop). Returns the new length or -ENOSPC. */
ssize_t wsrelay_request_head(char *buf, size_t cap, size_t hl);

/* Whether a 101 may be relayed: it upgrades to websocket and negotiated
 * no extension (the agent removed them from the offer). */
bool wsrelay_response_ok(const struct http_response *resp);

/* The two TLS connections after the 101, and bytes already read past the
 * heads on each side (borrowed). write_all: the driver's TLS write with a
 * deadline (0 or -errno). */
struct wsrelay_io {
	SSL *cssl, *ussl;
	int cfd, ufd;
	int (*write_all)(SSL *ssl, int fd, const void *buf, size_t len, uint64_t deadline);
	const char *cpend, *upend;
	size_t cpend_len, upend_len;
};

/* Relays the session until it ends; ex (the handshake's exchange) gets
 * the session's summary for its event. */
void wsrelay_run(struct exchange *ex, struct wsrelay_io *io);

#endif
