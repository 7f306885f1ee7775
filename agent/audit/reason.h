/* reason: why the agent refused a connection or a request before policy
 * saw it. One list, used alike by the audit event's `reason`, the log line
 * and the metrics label (the habit of Cilium's bpf/lib/drop.h): a reason
 * added here appears everywhere at once, and nowhere else may spell one. */
#ifndef VIGIL_REASON_H
#define VIGIL_REASON_H

/* X(ENUM, "audit name", "what happened, for logs and error messages") */
#define REASON_LIST(X)                                                                             \
	X(NO_SNI, "no_sni", "TLS ClientHello without a server name")                               \
	X(CLIENTHELLO_TIMEOUT, "clienthello_timeout", "no complete ClientHello within clienthello_timeout") \
	X(NOT_TLS, "not_tls", "first bytes are neither TLS nor HTTP")                              \
	X(CLIENTHELLO_INVALID, "clienthello_invalid", "malformed ClientHello or invalid server name") \
	X(UNWATCHED_SNI, "unwatched_sni", "unwatched server name on an LLM endpoint address")     \
	X(PLAIN_HTTP, "plain_http", "plain HTTP to an LLM endpoint address: HTTPS is required")   \
	X(HOST_MISMATCH, "host_mismatch", "HTTP Host is not the TLS server name")                  \
	X(INTERCEPT_UNAVAILABLE, "intercept_unavailable", "interception could not start (out of resources)") \
	X(H2_ABUSE, "h2_abuse", "HTTP/2 client broke a limit (rapid reset, CONTINUATION flood, ...)") \
	X(H2_PROTOCOL, "h2_protocol_error", "HTTP/2 client sent malformed frames")

enum reason {
	REASON_NONE = 0,
#define REASON_ENUM(e, name, text) REASON_##e,
	REASON_LIST(REASON_ENUM)
#undef REASON_ENUM
	REASON__COUNT
};

/* The audit/metrics name ("no_sni"), NULL for REASON_NONE. */
const char *reason_name(enum reason r);
/* One line for humans, NULL for REASON_NONE. */
const char *reason_text(enum reason r);

#endif
