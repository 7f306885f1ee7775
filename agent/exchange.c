/* exchange: per-request bookkeeping and decisions. Token usage is read from
 * the provider's own usage fields (OpenAI prompt_tokens/completion_tokens,
 * Anthropic input_tokens/output_tokens, Gemini promptTokenCount/
 * candidatesTokenCount, Bedrock inputTokens/outputTokens): in an SSE stream
 * every event is scanned and the last value wins (Anthropic sends
 * output_tokens cumulatively in message_delta; OpenAI sends one final usage
 * chunk). A non-streamed JSON response is scanned from a bounded copy; the
 * response itself is forwarded as it arrives. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "exchange.h"
#include "jsonw.h"
#include "sse.h"

#define RESP_COPY_MAX (1u << 20)
#define SSE_EVENT_MAX (1u << 20)

int exchange_global_init(struct agent *ag, char *err, size_t errlen)
{
	(void)ag, (void)err, (void)errlen;
	return 0;
}

void exchange_global_free(struct agent *ag)
{
	(void)ag;
}

void exchange_init(struct exchange *ex, struct agent *ag, const struct conn_info *info)
{
	memset(ex, 0, sizeof(*ex));
	ex->ag = ag;
	ex->info = info;
	ex->prompt_tokens = ex->completion_tokens = -1;
	ex->injection_score = -1;
	ex->action = "allow";
	ex->provider = PROVIDER_GENERIC;
}

void exchange_free(struct exchange *ex)
{
	sse_free(ex->sse);
	free(ex->resp_copy);
	free(ex->new_body);
	ex->sse = NULL;
	ex->resp_copy = NULL;
	ex->new_body = NULL;
}

void exchange_request(struct exchange *ex, const struct http_request *req, const char *body,
		      size_t len)
{
	struct provider_info pi;
	size_t ml = req->method_len < sizeof(ex->method) - 1 ? req->method_len : sizeof(ex->method) - 1;
	size_t pl = 0;

	memcpy(ex->method, req->method, ml);
	ex->method[ml] = 0;
	while (pl < req->target_len && pl < sizeof(ex->path) - 1 && req->target[pl] != '?' &&
	       req->target[pl] != '#')
		pl++;
	memcpy(ex->path, req->target, pl);
	ex->path[pl] = 0;

	memset(&pi, 0, sizeof(pi));
	provider_parse_request(ex->info->sni, ex->path, body, len, &pi, NULL, NULL);
	ex->provider = pi.provider;
	snprintf(ex->model, sizeof(ex->model), "%s", pi.model);
	ex->stream = pi.stream;
	ex->bytes_up += len;
}

const char *exchange_body(struct exchange *ex, const char *body, size_t *len)
{
	if (ex->new_body) {
		*len = ex->new_body_len;
		return ex->new_body;
	}
	return body;
}

static int on_sse_event(void *arg, const char *event, size_t event_len, const char *data,
			size_t data_len)
{
	struct exchange *ex = arg;
	(void)event, (void)event_len;
	exchange_scan_usage(data, data_len, &ex->prompt_tokens, &ex->completion_tokens);
	return 0;
}

void exchange_response_head(struct exchange *ex, const struct http_response *resp)
{
	ex->event_stream = resp->event_stream;
	if (ex->event_stream)
		ex->sse = sse_new(SSE_EVENT_MAX);
}

void exchange_response_data(struct exchange *ex, const char *data, size_t len)
{
	if (ex->event_stream) {
		if (ex->sse)
			sse_feed(ex->sse, data, len, on_sse_event, ex);
		return;
	}
	if (ex->resp_copy_full)
		return;
	if (ex->resp_len + len > RESP_COPY_MAX) {
		ex->resp_copy_full = true;   /* too large to be a usage-bearing answer we parse */
		return;
	}
	if (ex->resp_len + len > ex->resp_cap) {
		size_t cap = ex->resp_cap ? ex->resp_cap : 4096;
		while (cap < ex->resp_len + len)
			cap *= 2;
		char *nb = realloc(ex->resp_copy, cap);
		if (!nb) {
			ex->resp_copy_full = true;
			return;
		}
		ex->resp_copy = nb;
		ex->resp_cap = cap;
	}
	memcpy(ex->resp_copy + ex->resp_len, data, len);
	ex->resp_len += len;
}

void exchange_response_end(struct exchange *ex)
{
	if (!ex->event_stream && ex->resp_copy && !ex->resp_copy_full)
		exchange_scan_usage(ex->resp_copy, ex->resp_len, &ex->prompt_tokens,
				    &ex->completion_tokens);
}

/* The number after "key": at every occurrence; the last one is kept. */
static void scan_key(const char *doc, size_t len, const char *key, int64_t *out)
{
	size_t kl = strlen(key);
	const char *p = doc, *end = doc + len;
	while ((p = memmem(p, (size_t)(end - p), key, kl))) {
		const char *q = p + kl;
		p = q;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != ':')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		int64_t v = 0;
		int digits = 0;
		while (q < end && *q >= '0' && *q <= '9' && digits < 15) {
			v = v * 10 + (*q - '0');
			q++, digits++;
		}
		if (digits)
			*out = v;
	}
}

void exchange_scan_usage(const char *doc, size_t len, int64_t *prompt, int64_t *completion)
{
	scan_key(doc, len, "\"prompt_tokens\"", prompt);
	scan_key(doc, len, "\"input_tokens\"", prompt);
	scan_key(doc, len, "\"promptTokenCount\"", prompt);
	scan_key(doc, len, "\"inputTokens\"", prompt);
	scan_key(doc, len, "\"completion_tokens\"", completion);
	scan_key(doc, len, "\"output_tokens\"", completion);
	scan_key(doc, len, "\"candidatesTokenCount\"", completion);
	scan_key(doc, len, "\"outputTokens\"", completion);
}

void exchange_fill_event(const struct exchange *ex, struct audit_event *ev)
{
	ev->provider = provider_name(ex->provider);
	ev->method = ex->method[0] ? ex->method : NULL;
	ev->path = ex->path[0] ? ex->path : NULL;
	ev->model = ex->model[0] ? ex->model : NULL;
	ev->stream = ex->stream;
	ev->action = ex->action;
	ev->rule = ex->rule;
	ev->reason = ex->reason;
	ev->error = ex->error;
	ev->status = ex->status;
	ev->bytes_up = ex->bytes_up;
	ev->bytes_down = ex->bytes_down;
	ev->prompt_tokens = ex->prompt_tokens;
	ev->completion_tokens = ex->completion_tokens;
	ev->latency_ms = ex->latency_ms;
	ev->injection_score = ex->injection_score;
	ev->n_findings = ex->n_findings;
	memcpy(ev->findings, ex->findings, sizeof(ex->findings[0]) * ex->n_findings);
}

const char *exchange_status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

int exchange_error_body(const struct exchange *ex, int status, const char *code, const char *msg,
			char *out, size_t outlen)
{
	struct jsonw w;
	char full[512];
	int n;

	snprintf(full, sizeof(full), "Vigil: %s", msg ? msg : exchange_status_text(status));
	jsonw_init(&w);
	jsonw_obj_open(&w);
	switch (ex->provider) {
	case PROVIDER_ANTHROPIC: {
		const char *type = status == 403 ? "permission_error" : status == 429 ? "rate_limit_error" :
				   status == 413 ? "request_too_large" : status < 500 ? "invalid_request_error" :
				   "api_error";
		jsonw_str(&w, "type", "error");
		jsonw_key(&w, "error");
		jsonw_obj_open(&w);
		jsonw_str(&w, "type", type);
		jsonw_str(&w, "message", full);
		jsonw_obj_close(&w);
		break;
	}
	case PROVIDER_GEMINI: {
		const char *st = status == 403 ? "PERMISSION_DENIED" : status == 429 ? "RESOURCE_EXHAUSTED" :
				 status < 500 ? "INVALID_ARGUMENT" : "UNAVAILABLE";
		jsonw_key(&w, "error");
		jsonw_obj_open(&w);
		jsonw_i64(&w, "code", status);
		jsonw_str(&w, "message", full);
		jsonw_str(&w, "status", st);
		jsonw_obj_close(&w);
		break;
	}
	case PROVIDER_BEDROCK:
		jsonw_str(&w, "message", full);
		break;
	default:
		jsonw_key(&w, "error");
		jsonw_obj_open(&w);
		jsonw_str(&w, "message", full);
		jsonw_str(&w, "type", status == 429 ? "rate_limit_exceeded" : status == 403 ? "vigil_policy" :
				       "vigil_error");
		jsonw_null(&w, "param");
		jsonw_str(&w, "code", code);
		jsonw_obj_close(&w);
		break;
	}
	jsonw_obj_close(&w);
	n = w.oom ? 0 : snprintf(out, outlen, "%s", w.buf);
	jsonw_free(&w);
	if (n >= (int)outlen)
		n = (int)outlen - 1;
	return n;
}
