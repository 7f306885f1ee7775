/* mcp: the Model Context Protocol on an intercepted connection to a host
 * listed under mcp_servers. The exchange driver (exchange.c, intercept.c)
 * calls these hooks; jsonrpc.c does the parsing.
 *
 * What it adds to an exchange: the JSON-RPC method, the tool / resource /
 * prompt named, the session id (policy conditions mcp_server, mcp_method,
 * tool; event fields mcp_method, tool, mcp_session; kind mcp for
 * tools/call, resources/read, prompts/get); a refused call answered as a
 * JSON-RPC error the MCP client shows; the answer of an audited call
 * buffered (bounded), inspected for secrets and scored for prompt
 * injection, and replaced by an error result when the policy (or, without
 * one, the default table) refuses it.
 * Must never: let an uninspected result of an audited call reach the
 * client, or log argument or result values. */
#ifndef VIGIL_MCP_H
#define VIGIL_MCP_H

#include <stdbool.h>
#include <stddef.h>
#include "content/findings.h"
#include "proxy/jsonrpc.h"
#include "proxy/sse.h"
#include "providers/providers.h"

struct exchange;
struct http_request;
struct http_response;
struct policy_ctx;
struct audit_event;

/* Bound on an audited call's answer held for inspection. */
#define MCP_RESULT_MAX (4u << 20)

struct mcp_exchange {
	struct jsonrpc_request req;
	bool jsonrpc;                    /* the body parsed as JSON-RPC */
	bool streamable;                 /* Streamable HTTP (the client accepts an event stream):
					  * answers come on this POST, not on a GET stream */
	char session[JSONRPC_SESSION_MAX];
	char tool[1][PROVIDER_TOOL_NAME_MAX];   /* policy's tool condition */
	/* answer of an audited call */
	bool hold;                       /* buffering it for inspection */
	bool sse;
	bool too_big;
	struct buf resp;            /* a JSON answer, held whole */
	struct sse_parser *sp;           /* an SSE answer, judged event by event */
	struct buf stage;           /* one event re-framed */
	bool replaced;
	char replaced_reason[96];
};

/* If the exchange's host is an MCP server, sets ex->mcp (owned by ex) from
 * the request head; otherwise leaves it NULL. */
void mcp_request(struct exchange *ex, const struct http_request *req);
/* The request body (its Content-Encoding undone) as JSON-RPC: method and
 * tool for the policy. Returns false when a body is there but is not
 * JSON-RPC the agent can read (NaN in it, which a lenient server parser
 * takes; not JSON at all): its tool would go unjudged, so it is refused. */
bool mcp_request_body(struct exchange *ex, const char *body, size_t len);
/* Adds the MCP call to a policy context (mcp_server, mcp_method, tool). */
void mcp_policy_ctx(const struct exchange *ex, struct policy_ctx *c);
/* The agent's own refusal as a whole HTTP response carrying a JSON-RPC
 * error (same id, code -32001); status 200 for a Streamable HTTP request
 * with an id, so the client library hands it to the caller; else the given
 * status (the HTTP+SSE transport expects answers on its GET stream and
 * reports a failed POST with its body).
 * Returns its length or -ENOSPC. */
int mcp_error_response(const struct exchange *ex, int status, const char *msg, char *out, size_t outlen);
/* The HTTP status of that response. */
int mcp_error_status(const struct exchange *ex, int status);
/* Decides whether the answer is held for inspection; sets ex->transform. */
void mcp_response_head(struct exchange *ex, const struct http_response *resp);
/* true if the data was taken (held) and the caller must not process it. */
bool mcp_response_data(struct exchange *ex, const char *data, size_t len);
/* true if the answer was held: inspects and decides it, and appends the
 * original or the replacement to ex->out. */
bool mcp_response_end(struct exchange *ex);
void mcp_fill_event(const struct exchange *ex, struct audit_event *ev);
/* SIGHUP: cur (the running configuration) takes next's mcp_servers and
 * next gets the old list (freed with it). Safe against the connection
 * threads' lookups. */
struct config;
void mcp_swap_servers(struct config *cur, struct config *next);
void mcp_free(struct mcp_exchange *m);   /* NULL ok */

#endif
