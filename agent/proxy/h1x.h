/* h1x: the HTTP/1.1 exchange engine of one intercepted client connection,
 * sans-IO. It owns the HTTP/1.1 logic that used to be interleaved with
 * blocking reads and writes: reading a request (head, Content-Length or
 * chunked body, 100-continue, the limits that answer 400/408/413/431/503),
 * the exchange (inspection, policy and audit through exchange.c, the
 * request head and body sent upstream, 1xx heads, the final head, the body
 * framed by length, chunks or close, the transform path re-framed as
 * chunks, the WebSocket hand-over, the one retry on a reused upstream) and
 * pipelining. HTTP/2 streams (h2.c) come through the same engine as one
 * request each.
 *
 * The engine never touches a socket, an SSL object or the clock: the
 * driver (intercept.c) feeds it bytes and events with the time, and after
 * each input reads what it must do: bytes to write to each side, one-shot
 * actions (connect upstream, close it, hand the connection to the
 * WebSocket relay, linger), whether it wants bytes from each side
 * (back-pressure) and the deadline to wake it at. Every error status,
 * reason and audit field is the one the threaded code gave.
 *
 * Ownership: ag, info and xc are borrowed for the engine's life. Pointers
 * returned by the *_space, *_out and h1x_ws functions point into the
 * engine's buffers, valid until the next call that feeds the engine.
 * What it must never do: forward a request it could not frame exactly as
 * the server will, hold a response whole, or log a header value, body or
 * query string. */
#ifndef VIGIL_H1X_H
#define VIGIL_H1X_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "agent.h"
#include "proxy/exchange.h"

/* Unsent output toward one side above which the engine stops wanting
 * bytes from the other side. */
#define H1X_HIGH_WATER (64 * 1024)

/* One-shot actions, in the order the driver must carry them out (after
 * writing the client bytes it has). */
enum {
	H1X_UP_CLOSE  = 1u << 0,  /* close the upstream now (never pool it) */
	H1X_WEBSOCKET = 1u << 1,  /* relay frames (h1x_ws), then h1x_ws_done */
	H1X_CONNECT   = 1u << 2,  /* open an upstream: h1x_upstream_connected / _failed */
	H1X_LINGER    = 1u << 3,  /* half-close the client and drain it before closing */
};

struct h1x;

struct h1x *h1x_new(struct agent *ag, const struct conn_info *info, struct exchange_conn *xc,
		    uint64_t now);
/* Gives back the buffer budget; NULL ok. An exchange in progress is
 * dropped unaudited (the driver finishes it first). */
void h1x_free(struct h1x *e);

/* ---- inputs (now: the monotonic time in ms) ---- */

/* Where to read client bytes into, and how many fit (*len). NULL: read
 * nothing now (the engine may have answered an error: check the outputs). */
char *h1x_client_space(struct h1x *e, size_t *len, uint64_t now);
/* n bytes were read into the space. */
void h1x_client_input(struct h1x *e, size_t n, uint64_t now);
/* Copies data in through the two calls above; returns the bytes taken
 * (fewer than len when the engine stops wanting client bytes). */
size_t h1x_client_data(struct h1x *e, const void *data, size_t len, uint64_t now);
/* The client closed (err 0) or its connection failed (-errno). */
void h1x_client_eof(struct h1x *e, int err, uint64_t now);
/* Writing the client bytes failed: the connection is gone. */
void h1x_client_write_failed(struct h1x *e, uint64_t now);
/* The client hung up (FIN, RST) while its answer was awaited: the
 * exchange ends at once, its upstream closed and the event says so
 * (as nginx ends a request whose client closed, 499). */
void h1x_client_gone(struct h1x *e, uint64_t now);

char *h1x_upstream_space(struct h1x *e, size_t *len, uint64_t now);
void h1x_upstream_input(struct h1x *e, size_t n, uint64_t now);
size_t h1x_upstream_data(struct h1x *e, const void *data, size_t len, uint64_t now);
/* The upstream closed (err 0) or failed (-errno) while being read. */
void h1x_upstream_eof(struct h1x *e, int err, uint64_t now);
void h1x_upstream_write_failed(struct h1x *e, uint64_t now);
/* After H1X_CONNECT. reused: taken from the pool (one retry if it turns
 * out closed). reason (may be NULL) and error describe a failure. */
void h1x_upstream_connected(struct h1x *e, bool reused, uint64_t now);
void h1x_upstream_failed(struct h1x *e, const char *reason, const char *error, uint64_t now);

/* Time passed: past h1x_deadline, a limit fires (408, 504, a stall). */
void h1x_tick(struct h1x *e, uint64_t now);

/* ---- outputs ---- */

/* Bytes to write to the client, in order, in up to two pieces; returns
 * how many pieces. h1x_client_sent tells how many bytes left. */
unsigned h1x_client_out(const struct h1x *e, struct iovec iov[2]);
void h1x_client_sent(struct h1x *e, size_t n);
unsigned h1x_upstream_out(const struct h1x *e, struct iovec iov[2]);
void h1x_upstream_sent(struct h1x *e, size_t n);
/* The pending H1X_* actions, cleared by the call. */
unsigned h1x_actions(struct h1x *e);
bool h1x_want_client(const struct h1x *e);
bool h1x_want_upstream(const struct h1x *e);
/* When to call h1x_tick; 0 = no deadline. */
uint64_t h1x_deadline(const struct h1x *e);
/* Nothing more to do: close the client once its bytes are written (for an
 * HTTP/2 stream: the stream's exchange is over). */
bool h1x_done(const struct h1x *e);
/* Between requests with nothing of the next one read and nothing to
 * write: the driver may park the connection (free the engine, wait on the
 * loop) and start a new engine when the client sends again. */
bool h1x_idle(const struct h1x *e);
/* An HTTP/1.1 request is with the upstream (connecting, waiting for
 * or relaying its answer) and the client is not read meanwhile: the
 * driver watches the client for a hang-up only (h1x_client_gone). */
bool h1x_awaits_answer(const struct h1x *e);
/* Whether the upstream the driver holds may serve another request. */
bool h1x_upstream_reusable(const struct h1x *e);

/* After H1X_WEBSOCKET: the handshake's exchange (for wsrelay_run) and the
 * bytes each side sent past its head (borrowed). */
struct exchange *h1x_ws(struct h1x *e, const char **cpend, size_t *cpend_len, const char **upend,
			size_t *upend_len);
/* The relay ended (the driver closes the upstream): audits the session. */
void h1x_ws_done(struct h1x *e, uint64_t now);

/* ---- HTTP/2: one stream's request as HTTP/1.1 (h2.h, io->exchange) ---- */

/* Takes a copy of the request (charged to the buffer budget; past it the
 * stream is refused with a 503 from its head) and starts its exchange.
 * refuse: 0, or the status the stream must be refused with. 0 or -errno.
 * The driver then serves the engine until h1x_done, the client bytes going
 * to h2_respond. */
int h1x_h2_begin(struct h1x *e, const char *req, size_t len, int refuse, uint64_t now);
/* Ends the stream's turn: 0 the response was whole, 1 the connection's
 * HTTP/1.1 view would close, < 0 it was cut short (the upstream too). */
int h1x_h2_end(struct h1x *e);

#endif
