/* h2: HTTP/2 toward the client (RFC 9113) with libnghttp2, driven sans-IO
 * (nghttp2_session_mem_recv / mem_send) over the connection the caller
 * owns. Each stream becomes one HTTP/1.1 exchange for the rest of the agent:
 * its pseudo-headers, headers and body are turned into an HTTP/1.1 request
 * (Content-Length framed) handed to h2_io.exchange, which runs the same
 * inspection, policy, redaction, upstream forwarding and audit as an
 * HTTP/1.1 request; the HTTP/1.1 response that code writes back goes
 * through h2_respond, which turns it into HEADERS and DATA frames as it
 * arrives (an SSE answer is streamed, never held). A gRPC stream
 * (content-type application/grpc...) is not turned into HTTP/1.1: it goes
 * whole to io->grpc, which answers with h2_send_head / h2_send_data /
 * h2_send_trailers (gRPC needs trailers end to end).
 *
 * Streams are served concurrently: the thread that calls h2_serve is the
 * only one that touches the nghttp2 session and the client (io->read,
 * io->write); each stream whose request is complete gets a worker thread
 * that runs io->exchange or io->grpc (at most
 * SETTINGS_MAX_CONCURRENT_STREAMS at once; a worker done with its stream
 * waits a little for the connection's next one before it ends). What a worker answers
 * (h2_respond, h2_send_*) goes into its stream's queue and wakes the
 * connection thread through an eventfd it polls with the client socket
 * (io->read's wake_fd), so a long SSE answer never holds back a quick
 * one. Flow control is honoured: at most H2_OUT_HIGH bytes of a response
 * wait for the client's window and H2_OUT_HIGH more in the queue; past
 * that the worker blocks (the upstream is not read) until the client
 * opens its window. A client's RST_STREAM, or the end of the connection,
 * cancels the stream's worker: its next h2_respond / h2_send_* returns
 * -EIO (the caller then closes its upstream, never pools it), and
 * h2_serve returns only once every worker it started has ended.
 *
 * A hostile client closes its own connection, never the agent: limits on
 * open streams, header list size, RST_STREAM rate, CONTINUATION frames and
 * the HPACK table; breaking one sends GOAWAY and h2_serve says which.
 *
 * Ownership: limits and io are borrowed for the call; the request bytes
 * given to io->exchange are borrowed for that call. Never logs. */
#ifndef VIGIL_H2_H
#define VIGIL_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Response bytes held for the client's flow-control window, per stream. */
#define H2_OUT_HIGH (64 * 1024)

struct h2_limits {
	uint32_t max_concurrent_streams;  /* SETTINGS_MAX_CONCURRENT_STREAMS */
	uint32_t max_header_list_bytes;   /* SETTINGS_MAX_HEADER_LIST_SIZE; above: 431 */
	uint32_t max_resets_per_sec;      /* RST_STREAM from the client per second; above: GOAWAY */
	uint32_t max_continuations;       /* CONTINUATION frames per header block; above: GOAWAY */
	uint32_t header_table_size;       /* SETTINGS_HEADER_TABLE_SIZE (HPACK decoder) */
	uint32_t max_head_bytes;          /* the HTTP/1.1 head made of a stream; above: 431 */
	uint32_t max_headers;             /* header fields per request; above: 431 */
	uint64_t max_body_bytes;          /* request body; above: 413 */
	uint32_t idle_timeout_ms;         /* client silent this long: GOAWAY, close */
};

/* One stream as its worker sees it: the handle io->exchange and io->grpc
 * answer through, valid until they return. */
struct h2_stream;

/* A gRPC call (request content-type application/grpc...), handed whole to
 * io->grpc instead of being turned into HTTP/1.1: gRPC needs HTTP/2 and
 * trailers end to end. Everything is borrowed for the call. */
struct h2_grpc_call {
	const char *path, *authority;       /* NUL-terminated */
	const char *hdrs;                   /* the other fields, "name: value\r\n" each
					     * (names lowercase, validated by nghttp2) */
	size_t hdrs_len;
	const uint8_t *body;                /* the DATA received (gRPC messages) */
	size_t body_len;
	/* io->grpc_streaming: the call started at its HEADERS, body is empty
	 * and the DATA is read as it arrives with h2_body_read */
	bool streamed;
};

/* One header field to send (h2_send_head / h2_send_trailers). */
struct h2_field {
	const char *name, *value;
	size_t name_len, value_len;
};
#define H2_MAX_TRAILERS 32

struct h2_io {
	void *arg;
	/* Client bytes: > 0 read, 0 EOF, < 0 -errno (-ETIMEDOUT after
	 * timeout_ms). wake_fd (-1: none) is polled together with the
	 * client: readable while the client is not, read returns -EAGAIN
	 * without consuming it. */
	ssize_t (*read)(void *arg, void *buf, size_t len, uint32_t timeout_ms, int wake_fd);
	/* All of buf to the client, 0 or -errno. */
	int (*write)(void *arg, const void *buf, size_t len);
	uint64_t (*now_ms)(void);
	/* One stream's request as HTTP/1.1 (head, then a body of exactly
	 * Content-Length bytes). refuse 0: serve it, writing the response
	 * with h2_respond(st, ...); 400 (found malformed by nghttp2, already
	 * reset), 405 (a CONNECT tunnel), 413, 431 or 503:
	 * the stream is refused (the head holds the request line and Host
	 * only), answer with that error
	 * in the provider's shape (as the HTTP/1.1 path does, the callee may
	 * also refuse a stream it has no buffer for). Returns < 0 if the
	 * response is incomplete (the stream is then reset), else >= 0.
	 * Runs on the stream's worker thread, concurrently with other
	 * streams' exchanges (and io->grpc) of the same connection. */
	int (*exchange)(void *arg, struct h2_stream *st, const char *req, size_t len, int refuse);
	/* Optional: request body bytes the connection holds (delta > 0) or
	 * gave back (< 0), against a shared budget; -ENOBUFS refuses the
	 * stream with a 503. Called on the connection thread only. */
	int (*charge)(void *arg, int64_t delta);
	/* Optional: serves a gRPC stream, answering with h2_send_head,
	 * h2_send_data and h2_send_trailers. < 0 if the answer is incomplete
	 * (the stream is then reset). Without it gRPC streams go to exchange.
	 * Runs on the stream's worker thread, as exchange. */
	int (*grpc)(void *arg, struct h2_stream *st, const struct h2_grpc_call *call);
	/* Optional: on a worker thread about to end (thread-local cleanup). */
	void (*worker_end)(void *arg);
	/* Optional: on the connection thread, once no stream has been live
	 * for a moment (the connection is idle: give back what was kept for
	 * the next streams). */
	void (*idle)(void *arg);
	/* gRPC calls start at their request HEADERS and read the DATA as
	 * it arrives (h2_body_read): client-streaming and bidirectional
	 * calls. Off: io->grpc gets the whole request after END_STREAM. */
	bool grpc_streaming;
};

/* Serves the connection until the client closes it, goes idle, or breaks
 * a limit. Returns 0, -ENOMEM, or 1 when the client broke a limit or the
 * protocol: then *abuse (if not NULL) is true for a limit (rapid reset,
 * CONTINUATION flood, ...), false for a malformed stream of frames, and
 * why gets one line without any header or body content. */
int h2_serve(const struct h2_limits *lim, const struct h2_io *io, bool *abuse, char *why,
	     size_t whylen);

/* From io->exchange (its worker thread): the next bytes of the HTTP/1.1
 * response to the stream (head, 1xx heads dropped, body in any framing).
 * Queued for the connection thread; blocks while the stream holds
 * H2_OUT_HIGH bytes the client's window has not taken. 0, or -EIO when
 * the stream was reset or the connection is gone (stop sending). */
int h2_respond(struct h2_stream *st, const void *data, size_t len);

/* From io->exchange: fd (an eventfd the caller owns) is written to when
 * the stream is reset or the connection ends, so a worker waiting on its
 * upstream hears of it at once rather than at its next h2_respond; -1
 * stops it (before the exchange returns). -EIO if the stream is already
 * gone (fd written too), else 0. */
int h2_watch_cancel(struct h2_stream *st, int fd);

/* From io->grpc, in order: the response HEADERS (:status first;
 * end_stream: a trailers-only answer, nothing may follow), DATA as it
 * comes (flow control as h2_respond), then the trailers (at most
 * H2_MAX_TRAILERS fields, copied), which end the stream once the DATA
 * before them is out. Queued as h2_respond. 0, or -EIO when the stream
 * or connection is gone. */
int h2_send_head(struct h2_stream *st, const struct h2_field *f, size_t n, bool end_stream);
int h2_send_data(struct h2_stream *st, const void *data, size_t len);
int h2_send_trailers(struct h2_stream *st, const struct h2_field *f, size_t n);

/* From io->grpc for a streamed call (call->streamed): the request DATA
 * as it arrives. > 0 bytes, 0 after the client's END_STREAM, -EAGAIN
 * nothing yet (wait for h2_body_fd to be readable), -EIO the stream is
 * gone (reset by the client, its DATA past limits.max_body_bytes not yet
 * taken, or the connection ended). */
ssize_t h2_body_read(struct h2_stream *st, void *buf, size_t len);
int h2_body_fd(struct h2_stream *st);

#endif
