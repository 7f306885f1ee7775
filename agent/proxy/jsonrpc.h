/* jsonrpc: JSON-RPC 2.0 as the Model Context Protocol uses it over HTTP
 * (Streamable HTTP and the older HTTP+SSE transport): what a request body
 * asks (method, the tool/resource/prompt it names, its id), the text a
 * response carries back (JSON or an SSE stream of JSON-RPC messages), and
 * the replies the agent writes itself (a JSON-RPC error, or a tool result
 * replaced by an error result).
 *
 * Owns: the JSON-RPC message shapes (single or batch, requests,
 * notifications, responses). Pure functions over borrowed bytes: no I/O,
 * no logging, no policy. Every name copied out of the network is bounded
 * and stripped of control characters; ids are echoed only when they are a
 * valid JSON number or string of bounded length, else as null. */
#ifndef VIGIL_JSONRPC_H
#define VIGIL_JSONRPC_H

#include <stdbool.h>
#include <stddef.h>
#include "content/json.h"

#define JSONRPC_METHOD_MAX 64
#define JSONRPC_NAME_MAX 128
#define JSONRPC_ID_MAX 80
#define JSONRPC_SESSION_MAX 128

/* What a request body holds. For a batch, method/name/id describe the
 * first audited message (tools/call, resources/read, prompts/get), else
 * the first message. */
struct jsonrpc_request {
	unsigned messages;              /* JSON-RPC messages in the body */
	unsigned requests;              /* of which requests (with an id) */
	bool batch;
	bool audited;                   /* method is one the audit records as kind mcp */
	bool has_id;                    /* a request, not a notification */
	char method[JSONRPC_METHOD_MAX];
	char name[JSONRPC_NAME_MAX];    /* params.name (tools/call, prompts/get) or params.uri */
	char id[JSONRPC_ID_MAX];        /* the id as a JSON token ("null" if none or unusable) */
};

/* Parse body[0..len). Returns 0 if it is a JSON-RPC 2.0 message or batch
 * (at least one member with "jsonrpc": "2.0"), -EINVAL if not (not JSON,
 * or no JSON-RPC member), -E2BIG if nested too deep. out is always
 * initialised. */
int jsonrpc_parse_request(const char *body, size_t len, struct jsonrpc_request *out);

/* Whether method is one that gets its own audit event (kind mcp). */
bool jsonrpc_method_audited(const char *method);

/* What the responses in one body carry back. */
struct jsonrpc_result {
	unsigned responses;             /* JSON-RPC responses seen (result or error) */
	bool tool_error;                /* a result said isError: true */
	char id[JSONRPC_ID_MAX];        /* the first response's id as a JSON token ("null" if none) */
};

/* Appends the decoded text of every string value under "result" or
 * "error" of the JSON-RPC responses in body (a JSON document, or an SSE
 * stream of them when sse) to text, one value per line, for scanning.
 * Returns 0, -ENOMEM, or -EINVAL if a message is not valid JSON (the body
 * cannot be inspected). */
int jsonrpc_result_text(const char *body, size_t len, bool sse, struct buf *text,
			struct jsonrpc_result *res);

/* A JSON-RPC error response: {"jsonrpc":"2.0","id":ID,"error":{"code":C,
 * "message":MSG}}. id is a token from jsonrpc_request (NULL = null). */
int jsonrpc_write_error(struct buf *out, const char *id, int code, const char *msg);

/* A tools/call result replaced by an error result the client shows:
 * {"jsonrpc":"2.0","id":ID,"result":{"content":[{"type":"text","text":MSG}],
 * "isError":true}}; framed as one SSE "message" event when sse. */
int jsonrpc_write_error_result(struct buf *out, const char *id, const char *msg, bool sse);

/* Copies an Mcp-Session-Id header value (visible ASCII only, as the MCP
 * specification requires) into out; "" if it is not one. */
void jsonrpc_session_id(const char *v, size_t n, char out[JSONRPC_SESSION_MAX]);

#endif
