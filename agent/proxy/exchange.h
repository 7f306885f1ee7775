/* exchange: what the agent knows and decides about one HTTP exchange on an
 * intercepted connection: provider, model, stream flag, the decision and
 * its rule, token usage read from the response (JSON or SSE, streamed usage
 * included), byte counts and timings; and the agent's own error replies in
 * each provider's error shape, so SDKs surface them readably.
 *
 * h1x.c (the HTTP/1.1 engine) drives it: exchange_request() when a whole request is in
 * hand, exchange_response_*() as the response streams through, then
 * exchange_fill_event() for the audit record. */
#ifndef VIGIL_EXCHANGE_H
#define VIGIL_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "agent.h"
#include "audit/audit.h"
#include "http.h"
#include "content/inspect.h"
#include "content/json.h"
#include "policy/policy.h"
#include "providers/providers.h"
#include "audit/reason.h"

struct sse_parser;
struct inspect_scratch;
struct inspect_stream;
struct vault;
struct detok;
struct answer;
struct mcp_exchange;
struct toolcall_set;

/* Per intercepted connection (one conversation): scan state and the vault
 * of reversible tokens. Owned by intercept.c, freed with exchange_conn_free. */
struct exchange_conn {
	struct inspect_scratch *scratch;  /* from the inspector current at connect */
	struct vault *vault;              /* a reference to the user's and program's
					   * vault (vault.h), taken on first use */
	struct inspect_result *res;       /* reused per request (with scratch: an */
	struct inspect_result *hres;      /* idle connection holds neither); hres: the head's pieces */
};
void exchange_conn_free(struct exchange_conn *xc);

/* Whether bytes passed on unread as a message (decoded audio, a binary
 * WebSocket frame) hold anything a detector finds, read as text: 1 yes,
 * 0 no, < 0 an error (treat as yes). Runs on the connection's thread. */
int exchange_bytes_hold_findings(struct exchange_conn *xc, struct agent *ag, const char *p, size_t n);
/* While the connection idles: frees what the next request rebuilds (the
 * scanning scratch, from the inspector current then), keeps the vault. */
void exchange_conn_idle(struct exchange_conn *xc);

struct exchange {
	struct agent *ag;                 /* borrowed */
	const struct conn_info *info;     /* borrowed */
	struct exchange_conn *xc;         /* borrowed */
	uint64_t t_start_ms, t_first_byte_ms, latency_ms;
	char method[16];
	char path[256];                   /* query string removed: it can carry API keys */
	enum provider_id provider;
	char model[PROVIDER_MODEL_MAX];
	char conversation[PROVIDER_CONV_MAX];  /* web apps: the conversation id, "" if none */
	char origin[128];                 /* the request's Origin header ("" if none or too long) */
	bool stream;
	int status;
	uint64_t bytes_up, bytes_down;    /* set by the driver: bytes as received/sent on the wire */
	struct provider_usage usage;      /* as the provider reported it (cached tokens too) */
	const char *action, *rule, *reason, *error;
	char error_buf[256];
	bool upstream_reused;
	/* decision */
	bool blocked;
	int block_status;
	const char *block_code;
	char block_message[512];
	/* request body replacement (redaction); owned */
	char *new_body;
	size_t new_body_len;
	/* the body with its Content-Encoding undone, when it had one; a
	 * rewritten body is sent decoded and Content-Encoding is then dropped */
	struct buf decoded;
	bool drop_content_encoding;
	char opaque_buf[96];              /* "opaque: image/png, 1234 bytes" */
	/* findings in the request head (path, query, header values): where
	 * they are, to name them in the event path and to rewrite them when
	 * the decision is to redact */
	struct head_span {
		int hdr;                  /* header index, -1 = the request target */
		uint32_t start, end;      /* raw offsets in the target or header value */
		enum finding_type type;
	} head_spans[32];
	unsigned n_head_spans;
	uint32_t head_counts[FINDING__COUNT];
	char *new_target;                 /* rewritten request target (owned) */
	size_t new_target_len;
	char *new_hdr[HTTP_MAX_HEADERS];  /* rewritten header values (owned), NULL = as sent */
	size_t new_hdr_len[HTTP_MAX_HEADERS];
	/* policy */
	struct policy *policy;            /* reference held for the exchange, NULL = default table */
	struct policy_ctx ctx;            /* what the policy saw (kept for budget_charge) */
	const char *policy_hash;          /* borrowed from policy */
	char reason_buf[160];
	/* findings for the event */
	struct audit_finding findings[AUDIT_MAX_FINDING_TYPES];
	unsigned n_findings;
	double injection_score;
	uint32_t counts[FINDING__COUNT];  /* request findings */
	uint32_t out_counts[FINDING__COUNT]; /* findings in the model's answer */
	size_t redacted;                  /* values replaced in the request */
	bool tokenized;                   /* the request carries vault tokens */
	/* response side */
	bool transform;                   /* response rewritten (tokens restored): re-chunked */
	struct detok *detok;              /* owned */
	struct buf tpl_pre, tpl_post;/* SSE: last content event around its text, to carry held-back text */
	char tpl_event[64];
	char tpl_chan[96];                /* text field and index of the last text event */
	bool have_tpl;
	struct inspect_stream *out_scan;  /* owned */
	struct buf text;             /* scratch: model text of one event */
	struct buf out;              /* transformed response bytes to send */
	bool event_stream;
	struct sse_parser *sse;           /* owned */
	char *resp_copy;                  /* bounded copy of a JSON response, for usage */
	size_t resp_len, resp_cap;
	bool resp_copy_full;
	/* answer redaction (a policy answer rule, see answer.h) */
	bool redact_answer;               /* the rule redacts some type */
	const char *answer_rule;          /* borrowed from the policy */
	struct redact_policy answer_rp;
	struct answer *ans;               /* SSE: the streaming redactor; owned */
	struct buf stage;            /* SSE: redacted text on its way to detok */
	bool resp_doc;                    /* whole answer buffered in resp_copy, redacted at the end */
	bool answer_cut;                  /* SSE: error event sent, later events dropped */
	bool cut;                         /* the client connection must be cut now */
	uint32_t ans_counts[FINDING__COUNT]; /* values replaced in the answer */
	char answer_reason[256];
	uint64_t answer_warn_types;       /* an answer rule with action warn: its types */
	char answer_warn_reason[320];
	/* MCP: set when the host is under mcp_servers (mcp.h); owned */
	struct mcp_exchange *mcp;
	/* tools the model asked to run (toolcall.h); owned, NULL until one is seen */
	struct toolcall_set *calls;
	bool hold_tools;                  /* answer held so a forbidden call can be refused */
	char tools_msg[224];
	/* a WebSocket session (wsrelay.h): its event kind and usage per
	 * response ("in/out,..."; owned); NULL for a plain request */
	const char *kind;
	char *ws_usage;
};

int exchange_global_init(struct agent *ag, char *err, size_t errlen);
void exchange_global_free(struct agent *ag);

void exchange_init(struct exchange *ex, struct agent *ag, const struct conn_info *info,
		   struct exchange_conn *xc);
void exchange_free(struct exchange *ex);

/* A whole request: identify provider and model, inspect, decide. Sets
 * ex->blocked (with status, code, message) if it must not be forwarded. */
void exchange_request(struct exchange *ex, const struct http_request *req, const char *body,
		      size_t len);
/* Apply a head rewrite (redacted target or header values) to req before
 * it is forwarded; the new strings are owned by ex. */
void exchange_rewrite_head(struct exchange *ex, struct http_request *req);

/* The body to forward: the original or its rewritten version; *len is
 * updated to the length to send. */
const char *exchange_body(struct exchange *ex, const char *body, size_t *len);

/* Sets ex->transform when the response body must be rewritten (vault
 * tokens to restore, or an answer rule redacts it); the caller then
 * re-frames it as chunked. */
void exchange_response_head(struct exchange *ex, const struct http_response *resp);
/* Decoded response payload as it passes (chunked framing removed). With
 * ex->transform, the bytes to send instead are appended to ex->out. If
 * ex->cut is set on return, the caller must close the client connection
 * without finishing the response (an answer that could not be redacted). */
void exchange_response_data(struct exchange *ex, const char *data, size_t len);
/* End of the response; with ex->transform, appends held-back bytes (or
 * the whole redacted answer) to ex->out; may set ex->cut, as above. */
void exchange_response_end(struct exchange *ex);

/* After the response (or the error): charge token budgets. */
void exchange_done(struct exchange *ex);

/* The request's audit event: begun before the first byte goes upstream
 * (what is known then is journaled, so a crash mid-exchange still leaves
 * an event; returns a ticket, 0 = none), ended once the exchange is done
 * (ticket 0: an event that was never begun). */
uint64_t exchange_audit_begin(struct exchange *ex);
void exchange_audit_end(struct exchange *ex, uint64_t ticket);
void exchange_fill_event(const struct exchange *ex, struct audit_event *ev);

/* Loads the policy file (if configured), the budgets and the inspector for
 * it. Used at start-up; exchange_reload_policy on SIGHUP keeps the running
 * policy when the new file has any mistake. errs: malloc'd list of
 * "file:line: reason" lines, caller frees. */
int exchange_reload_policy(struct agent *ag, char **errs);

/* The method, path (findings in it replaced) and provider of a request
 * refused unread, for its event. */
void exchange_name_refused(struct exchange *ex, const struct http_request *req);

/* A request refused before inspection (reason why, e.g. host_mismatch):
 * fills method, path and provider from req and sets ex->blocked. */
void exchange_refuse(struct exchange *ex, const struct http_request *req, int status, enum reason why,
		     const char *msg);

/* The JSON error body in the exchange's provider's shape. Returns its length. */
int exchange_error_body(const struct exchange *ex, int status, const char *code, const char *msg,
			char *out, size_t outlen);
/* The same for a provider named directly. */
int exchange_error_body_for(enum provider_id provider, int status, const char *code, const char *msg,
			    char *out, size_t outlen);
/* A whole error response (head, "Connection: close", body in the
 * provider's shape), as the agent sends it; for a web app, the refusal the
 * app displays (webapp_refusal: a prompt's refusal is a 200 reply stream).
 * path, origin: the request's (may be NULL). Returns its length or -ENOSPC. */
int exchange_error_response(enum provider_id provider, const char *path, const char *origin, int status,
			    const char *code, const char *msg, char *out, size_t outlen);
const char *exchange_status_text(int status);

/* Usage counters found in one JSON document (or SSE data payload): the
 * last value of each known key wins. Exposed for tests. */
void exchange_scan_usage(const char *doc, size_t len, int64_t *prompt, int64_t *completion);

#endif
