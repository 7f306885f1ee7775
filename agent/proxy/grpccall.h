/* grpccall: one gRPC call through the agent. The client's stream (h2.c,
 * served whole) is read message by message (grpc.h), each protobuf walked
 * without a schema (protowalk.h); its text goes through the same
 * inspection, policy, redaction and vault as a REST request, by way of the
 * provider's own JSON form of the call (the Gemini REST API is the JSON
 * mapping of the same protobuf), so exchange.c decides once for both. The
 * call then leaves over an HTTP/2 client session (libnghttp2) on the
 * upstream TLS connection, and the answer comes back message by message:
 * tokens restored, answer text scanned, usage read, trailers forwarded.
 *
 * Known methods: google.ai.generativelanguage.*.GenerativeService and
 * google.cloud.aiplatform.*.PredictionService GenerateContent and
 * StreamGenerateContent (prompt, system instruction, model, usage,
 * candidates' text). Any other method: every text field inspected, the
 * call audited under its path.
 *
 * Ownership: ex, h2, call and io are borrowed for the call. Never logs
 * message content. */
#ifndef VIGIL_GRPCCALL_H
#define VIGIL_GRPCCALL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "proxy/exchange.h"
#include "proxy/h2.h"

/* The HTTP/2 client session on one upstream connection, kept between
 * the calls of one client connection (a gRPC client sends many calls on
 * one connection; a TLS handshake upstream per call would double their
 * latency). Owned by the caller; NULL until the first call. */
struct grpccall_session;
void grpccall_session_free(struct grpccall_session *s);   /* NULL ok */

/* The upstream connection, owned by the caller (intercept.c). */
struct grpccall_io {
	void *arg;
	/* TLS to the origin with ALPN h2 negotiated. 0, or -errno with
	 * ex->error / ex->reason set. */
	int (*connect)(void *arg, struct exchange *ex);
	/* > 0 bytes, 0 EOF, < 0 -errno (-ETIMEDOUT past deadline, ms). */
	ssize_t (*read)(void *arg, void *buf, size_t len, uint64_t deadline);
	int (*write)(void *arg, const void *buf, size_t len, uint64_t deadline);
	/* The connection is spent: closed (never pooled for HTTP/1.1). */
	void (*close)(void *arg);
	/* The session on the connection connect opened, kept across calls
	 * (the caller frees it with grpccall_session_free when its client
	 * connection ends, then calls close). */
	struct grpccall_session **session;
	/* Optional: the decision is made and the call is about to leave:
	 * journal what is known (a crash mid-call still leaves an event). */
	void (*begin)(void *arg, struct exchange *ex);
	/* For a streamed request (call->streamed): waits until the upstream
	 * (1) or fd (2, the client's next DATA) is readable, or deadline
	 * (0); the bits or'ed, < 0 -errno. */
	int (*wait)(void *arg, int fd, uint64_t deadline);
};

/* Serves the call and fills ex for its audit event (method, path,
 * provider, model, decision, findings, usage, status). Returns 0 when the
 * client got a complete answer (trailers included), < 0 when the stream
 * must be reset. */
int grpccall_serve(struct exchange *ex, struct h2_stream *h2, const struct h2_grpc_call *call,
		   const struct grpccall_io *io);

/* The grpc-status for an HTTP status the agent would have answered. */
int grpccall_status_for(int http_status);

#endif
