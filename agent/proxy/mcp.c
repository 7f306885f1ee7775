/* mcp: MCP semantics over one exchange (see mcp.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "proxy/mcp.h"
#include "config.h"
#include "proxy/exchange.h"
#include "content/inspect.h"
#include "policy/policy.h"
#include "proxy/sse.h"

/* The JSON-RPC error code for a call refused by the agent's policy (the
 * implementation-defined server error range of JSON-RPC 2.0, 5.1). */
#define MCP_ERR_REFUSED (-32001)

/* cfg->mcp_servers is read by every intercepted connection's thread and
 * swapped by a SIGHUP on the loop thread: the readers hold it shared for
 * the one lookup, the swap holds it alone (one agent per process). */
static pthread_rwlock_t servers_lock = PTHREAD_RWLOCK_INITIALIZER;

static bool is_mcp_server(const struct config *cfg, const char *sni)
{
	bool yes;
	pthread_rwlock_rdlock(&servers_lock);
	yes = cfg->n_mcp_servers && config_host_watched((const char *const *)cfg->mcp_servers, cfg->n_mcp_servers, sni);
	pthread_rwlock_unlock(&servers_lock);
	return yes;
}

void mcp_swap_servers(struct config *cur, struct config *next)
{
	pthread_rwlock_wrlock(&servers_lock);
	char **v = cur->mcp_servers;
	size_t n = cur->n_mcp_servers;
	cur->mcp_servers = next->mcp_servers;
	cur->n_mcp_servers = next->n_mcp_servers;
	next->mcp_servers = v;
	next->n_mcp_servers = n;
	pthread_rwlock_unlock(&servers_lock);
}

static void session_from(struct mcp_exchange *m, const struct http_header *h, unsigned n)
{
	const struct http_header *s = http_find_header(h, n, "mcp-session-id");
	if (s)
		jsonrpc_session_id(s->value, s->value_len, m->session);
}

void mcp_request(struct exchange *ex, const struct http_request *req)
{
	const struct config *cfg = ex->ag->cfg;
	struct mcp_exchange *m;

	if (!ex->info->sni[0] || !is_mcp_server(cfg, ex->info->sni))
		return;
	if (!(m = calloc(1, sizeof(*m))))
		return;   /* still inspected and decided as a plain request */
	m->resp.secret = true;
	snprintf(m->req.id, sizeof(m->req.id), "null");
	session_from(m, req->headers, req->nheaders);
	const struct http_header *acc = http_find_header(req->headers, req->nheaders, "accept");
	m->streamable = acc && memmem(acc->value, acc->value_len, "text/event-stream", 17);
	ex->mcp = m;
}

bool mcp_request_body(struct exchange *ex, const char *body, size_t len)
{
	struct mcp_exchange *m = ex->mcp;

	if (!m || !len)
		return true;
	m->jsonrpc = jsonrpc_parse_request(body, len, &m->req) == 0;
	if (!m->jsonrpc) {
		memset(&m->req, 0, sizeof(m->req));
		snprintf(m->req.id, sizeof(m->req.id), "null");
		return false;
	}
	if (m->req.name[0] && !strcmp(m->req.method, "tools/call"))
		snprintf(m->tool[0], sizeof(m->tool[0]), "%s", m->req.name);
	return true;
}

void mcp_policy_ctx(const struct exchange *ex, struct policy_ctx *c)
{
	const struct mcp_exchange *m = ex->mcp;
	if (!m)
		return;
	c->mcp_server = ex->info->sni;
	c->mcp_method = m->jsonrpc && m->req.method[0] ? m->req.method : NULL;
	if (m->tool[0][0]) {
		/* the tool called is what tool: names on an MCP server */
		c->tools = (const char (*)[PROVIDER_TOOL_NAME_MAX])m->tool;
		c->ntools = 1;
	}
}

int mcp_error_status(const struct exchange *ex, int status)
{
	return ex->mcp->jsonrpc && ex->mcp->req.has_id && ex->mcp->streamable ? 200 : status;
}

int mcp_error_response(const struct exchange *ex, int status, const char *msg, char *out, size_t outlen)
{
	const struct mcp_exchange *m = ex->mcp;
	struct buf body = { 0 };
	int n;

	status = mcp_error_status(ex, status);
	if (jsonrpc_write_error(&body, m->req.id, MCP_ERR_REFUSED, msg)) {
		buf_free(&body);
		return -ENOSPC;
	}
	n = snprintf(out, outlen,
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%.*s",
		     status, exchange_status_text(status), body.len, (int)body.len, body.data);
	buf_free(&body);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

void mcp_response_head(struct exchange *ex, const struct http_response *resp)
{
	struct mcp_exchange *m = ex->mcp;
	if (!m)
		return;
	session_from(m, resp->headers, resp->nheaders);
	/* Only the answer of an audited call is held: a GET event stream of
	 * server notifications may stay open for hours. */
	if (resp->body == HTTP_BODY_NONE || resp->status != 200)
		return;   /* 202 Accepted (answer on the GET stream), or an error (401
			   * with its challenge, ...): to the client as it is */
	/* An audited call's answer; or any event stream (the HTTP+SSE
	 * transport answers calls on its long-lived GET stream): judged event
	 * by event, never held whole. */
	if (!(m->jsonrpc && m->req.audited && m->req.has_id) && !(resp->event_stream && !m->jsonrpc))
		return;
	m->hold = true;
	m->sse = resp->event_stream;
	ex->transform = true;
	if (m->sse && !(m->sp = sse_new(MCP_RESULT_MAX)))
		ex->cut = true;   /* cannot judge the stream: send nothing of it */
}

/* The result's verdict: the policy on the call's context with the
 * result's findings and injection score, or the default table (no secret
 * and no injection reaches the model). Returns what to do (BLOCK: replace
 * it; WARN or ALERT: pass it, the event says so; else pass) and the
 * rule in *rule. */
static enum policy_action judge_result(struct exchange *ex, const struct inspect_result *r, const char **rule)
{
	*rule = NULL;
	if (ex->policy) {
		struct policy_ctx c = ex->ctx;
		struct policy_decision d;
		c.counts = r->counts;
		c.injection_score = r->injection_score;
		c.custom_hits = 0;
		policy_eval(ex->policy, &c, &d);
		*rule = d.rule;
		return d.enforce;
	}
	for (int t = 0; t < FINDING__COUNT; t++)
		if (r->counts[t] && finding_table[t].cls == FINDING_CLASS_SECRET)
			*rule = "default:secrets";
	if (!*rule && r->injection_score >= INSPECT_INJECTION_THRESHOLD)
		*rule = "default:injection";
	return *rule ? POLICY_BLOCK : POLICY_ALLOW;
}

/* A result a warn (or alert) rule matched went to the client as it was:
 * the call's event says so, unless the call itself was refused or
 * flagged, another result of it was replaced, or the rule is the one the
 * call already answered to (a warn the user justified: the exemption
 * covers the call and its result). */
static void note_result(struct exchange *ex, enum policy_action a, const char *rule, const char *why)
{
	struct mcp_exchange *m = ex->mcp;
	if (m->replaced || !ex->action || strcmp(ex->action, "allow") || (rule && ex->rule && !strcmp(rule, ex->rule)))
		return;
	ex->action = a == POLICY_WARN ? "warn" : "alert";
	ex->rule = rule;
	snprintf(m->replaced_reason, sizeof(m->replaced_reason), "mcp_result_%s: %s",
		 a == POLICY_WARN ? "warned" : "alerted", why);
	ex->reason = m->replaced_reason;
}

/* id: the response's own (a GET stream of the HTTP+SSE transport carries
 * answers to calls posted elsewhere), else the call's. */
static void replace_result_id(struct exchange *ex, const char *id, const char *rule, const char *why)
{
	struct mcp_exchange *m = ex->mcp;
	char msg[256];
	snprintf(msg, sizeof(msg), "tool result withheld by Vigil: %s; rule %s", why, rule);
	if (jsonrpc_write_error_result(&ex->out, id, msg, m->sse)) {
		ex->cut = true;   /* nothing of the result may go out instead */
		return;
	}
	m->replaced = true;
	ex->action = "block";
	ex->rule = rule;
	snprintf(m->replaced_reason, sizeof(m->replaced_reason), "mcp_result_replaced: %s", why);
	ex->reason = m->replaced_reason;
}

static void replace_result(struct exchange *ex, const char *rule, const char *why)
{
	replace_result_id(ex, ex->mcp->req.id, rule, why);
}

/* One answer document (a JSON body, or one SSE event's data): inspected,
 * then the original (orig) or its replacement appended to ex->out. A
 * message that is no response (a notification or a request of the
 * server's, in an SSE stream) passes as it is. */
static void judge_doc(struct exchange *ex, const char *doc, size_t len, const char *orig, size_t orig_len)
{
	struct buf text = { .secret = true };
	struct jsonrpc_result jr;
	struct inspect_result r;
	const char *rule, *why;
	enum policy_action verdict;

	inspect_result_init(&r);
	if (jsonrpc_result_text(doc, len, false, &text, &jr) || !ex->xc->scratch ||
	    (jr.responses && inspect_text(ex->xc->scratch, text.data ? text.data : "", text.len, &r))) {
		replace_result(ex, "default:fail_closed", "the result could not be inspected");
		goto out;
	}
	if (!jr.responses) {
		buf_append(&ex->out, orig, orig_len);
		goto out;
	}
	for (int t = 0; t < FINDING__COUNT; t++)
		ex->out_counts[t] += r.counts[t];
	if (r.injection_score > ex->injection_score)
		ex->injection_score = r.injection_score;
	why = r.injection_score >= INSPECT_INJECTION_THRESHOLD ? "it looks like a prompt injection" :
	      "it contains sensitive data";
	verdict = judge_result(ex, &r, &rule);
	if (verdict == POLICY_BLOCK) {
		replace_result_id(ex, strcmp(jr.id, "null") ? jr.id : ex->mcp->req.id, rule, why);
	} else {
		if (verdict == POLICY_WARN || verdict == POLICY_ALERT)
			note_result(ex, verdict, rule, why);
		buf_append(&ex->out, orig, orig_len);
	}
out:
	inspect_result_free(&r);
	buf_free(&text);
}

/* An SSE event as it came (type, id, data lines). */
static void frame_event(struct buf *out, const char *event, size_t event_len, const char *id, size_t id_len,
			const char *data, size_t len)
{
	if (event_len && !(event_len == 7 && !memcmp(event, "message", 7))) {
		buf_append(out, "event: ", 7);
		buf_append(out, event, event_len);
		buf_append(out, "\n", 1);
	}
	if (id_len) {
		buf_append(out, "id: ", 4);
		buf_append(out, id, id_len);
		buf_append(out, "\n", 1);
	}
	buf_append(out, "data: ", 6);
	for (size_t i = 0; i < len; i++) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (data + i)) : len - i;
		buf_append(out, data + i, n);
		i += n;
		if (nl)
			buf_append(out, "\ndata: ", 7);
	}
	buf_append(out, "\n\n", 2);
}

/* Each event is judged as it completes: a server's own requests and
 * notifications (sampling, elicitation, progress) reach the client at
 * once, as the call may wait for the client's answer to them. */
static int on_event(void *arg, const char *event, size_t event_len, const char *data, size_t len)
{
	struct exchange *ex = arg;
	struct mcp_exchange *m = ex->mcp;
	size_t id_len;
	const char *id = sse_last_event_id(m->sp, &id_len);

	m->stage.len = 0;
	frame_event(&m->stage, event, event_len, id, id_len, data, len);
	if (event_len == 7 && !memcmp(event, "message", 7))
		judge_doc(ex, data, len, m->stage.data, m->stage.len);
	else   /* not a JSON-RPC message: the HTTP+SSE transport's "endpoint" event */
		buf_append(&ex->out, m->stage.data, m->stage.len);
	return ex->cut ? -EIO : 0;
}

bool mcp_response_data(struct exchange *ex, const char *data, size_t len)
{
	struct mcp_exchange *m = ex->mcp;
	if (!m || !m->hold)
		return false;
	if (m->too_big)
		return true;
	if (m->sp) {
		if (sse_feed(m->sp, data, len, on_event, ex) == -E2BIG) {
			/* an event over the bound was dropped: say so in its place */
			replace_result(ex, "default:inspection_limit", "the result is too large to inspect");
		}
		return true;
	}
	if (m->resp.len + len > MCP_RESULT_MAX || buf_append(&m->resp, data, len))
		m->too_big = true;   /* decided at the end: it cannot be inspected */
	return true;
}

bool mcp_response_end(struct exchange *ex)
{
	struct mcp_exchange *m = ex->mcp;

	if (!m || !m->hold)
		return false;
	if (m->sp)
		return true;   /* every complete event went out as it came */
	if (m->too_big)
		replace_result(ex, "default:inspection_limit", "the result is too large to inspect");
	else
		judge_doc(ex, m->resp.data ? m->resp.data : "", m->resp.len, m->resp.data, m->resp.len);
	return true;
}

void mcp_fill_event(const struct exchange *ex, struct audit_event *ev)
{
	const struct mcp_exchange *m = ex->mcp;
	if (!m)
		return;
	if (m->jsonrpc && m->req.audited)
		ev->kind = "mcp";
	ev->mcp_server = ex->info->sni[0] ? ex->info->sni : NULL;
	ev->mcp_method = m->jsonrpc && m->req.method[0] ? m->req.method : NULL;
	ev->tool = m->jsonrpc && m->req.name[0] ? m->req.name : NULL;
	ev->mcp_session = m->session[0] ? m->session : NULL;
}

void mcp_free(struct mcp_exchange *m)
{
	if (!m)
		return;
	buf_free(&m->resp);
	buf_free(&m->stage);
	sse_free(m->sp);
	free(m);
}
