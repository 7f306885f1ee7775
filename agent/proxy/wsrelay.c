/* wsrelay: the WebSocket (Realtime API) session through the agent; see
 * wsrelay.h. The framing is ws.c's, the decisions exchange.c's: this file
 * only maps Realtime events onto them and moves frames. The session's
 * handlers never do I/O: fed bytes, they append frames to one buffer per
 * direction; relay() is the only code that reads and writes (blocking
 * with deadlines, on the connection's thread), so the session moves to
 * the event loop by replacing relay() alone.
 *
 * Choices a reviewer should know:
 * - Every message is re-framed as one frame (RFC 6455 5.4 lets an
 *   intermediary change fragmentation when no extension is negotiated):
 *   a secret split across fragments is inspected whole, and a frame to
 *   the server gets a fresh mask. Payloads that pass untouched (audio,
 *   binary) keep every byte.
 * - A blocked client event is dropped and answered by a Realtime "error"
 *   event naming the rule; the session goes on (the client may send the
 *   next turn). A failure to inspect is a block too (fail closed).
 * - Ping, pong and close payloads from the client are inspected like
 *   events: a blocked one is dropped (a close keeps only its code).
 * - A protocol violation (unmasked client frame, a frame or message over
 *   ws_max_frame / ws_max_message: 1009) closes the session with the
 *   RFC's code to the offender and 1011 to the other side; the session
 *   event says why. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include "agent.h"
#include "audit/audit.h"
#include "config.h"
#include "content/decode.h"
#include "content/json.h"
#include "jsonw.h"
#include "loop.h"
#include "metrics.h"
#include "providers/providers.h"
#include "proxy/ws.h"
#include "proxy/wsrelay.h"

/* exchange.c reads server events as an event stream of at most 1 MiB an
 * event; a larger one cannot be restored or redacted. */
#define WSRELAY_EVENT_MAX ((1u << 20) - 64)
#define USAGE_MAX 512
#define WSRELAY_READ 16384

/* ---- the handshake ---- */

static bool header_has_token(const struct http_header *h, const char *tok)
{
	size_t tl = strlen(tok);
	for (size_t i = 0; i + tl <= h->value_len; i++)
		if (!strncasecmp(h->value + i, tok, tl) && (i == 0 || h->value[i - 1] == ' ' || h->value[i - 1] == ',') &&
		    (i + tl == h->value_len || h->value[i + tl] == ' ' || h->value[i + tl] == ','))
			return true;
	return false;
}

enum wsrelay_upgrade wsrelay_upgrade(struct exchange *ex, struct http_request *req)
{
	const struct http_header *up = http_find_header(req->headers, req->nheaders, "upgrade");
	if (!up || !header_has_token(up, "websocket"))
		return WSRELAY_NONE;
	unsigned k = 0;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (h->name_len == 24 && !strncasecmp(h->name, "sec-websocket-extensions", 24))
			continue;   /* permessage-deflate would hide the frames */
		req->headers[k++] = *h;
	}
	req->nheaders = k;
	if (ex->blocked)
		return WSRELAY_REFUSED;
	enum provider_id p = provider_identify(ex->info->sni, ex->path);
	/* a body would sit between the head and the first frame: refused */
	if (req->method_len != 3 || memcmp(req->method, "GET", 3) || req->body != HTTP_BODY_NONE ||
	    !provider_realtime_path(p, ex->path)) {
		ex->blocked = true;
		ex->block_status = 403;
		ex->block_code = "websocket_refused";
		ex->action = "block";
		ex->rule = "default:websocket";
		ex->reason = "websocket_unknown_endpoint";
		ex->kind = "websocket";
		snprintf(ex->block_message, sizeof(ex->block_message),
			 "WebSocket upgrade refused: %s is not a known Realtime endpoint of a watched provider, "
			 "and the agent does not relay what it cannot read; rule default:websocket", ex->path);
		return WSRELAY_REFUSED;
	}
	ex->provider = p;
	ex->kind = "websocket";
	ex->stream = true;
	return WSRELAY_ALLOWED;
}

ssize_t wsrelay_request_head(char *buf, size_t cap, size_t hl)
{
	static const char add[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	if (hl < 2 || hl - 2 + sizeof(add) - 1 > cap)
		return -ENOSPC;
	memcpy(buf + hl - 2, add, sizeof(add) - 1);
	return (ssize_t)(hl - 2 + sizeof(add) - 1);
}

bool wsrelay_response_ok(const struct http_response *resp)
{
	const struct http_header *up = http_find_header(resp->headers, resp->nheaders, "upgrade");
	return resp->status == 101 && up && header_has_token(up, "websocket") &&
	       !http_find_header(resp->headers, resp->nheaders, "sec-websocket-extensions");
}

/* ---- the session ---- */

struct session {
	struct exchange *hs;            /* the handshake's exchange: the session event */
	struct wsrelay_io *io;
	struct ws_parser pc, ps;        /* frames from the client, from the server */
	struct exchange *cur;           /* the last client event that passed: its answer rule
					 * and token restoration apply to what the server sends */
	bool cur_head;
	struct buf out[2];         /* frames to send: [0] to the client, [1] to the server */
	struct buf wrap;           /* a server event framed as an SSE event */
	struct buf audio;          /* an audio append's audio, decoded to be read */
	bool redacted, alerted;
	unsigned blocked;
	int64_t prompt_sum, completion_sum;
	char usage[USAGE_MAX];
	size_t usage_len;
	bool client_closed, server_closed;
	bool done;
	unsigned n_events;
	uint8_t rbuf[WSRELAY_READ];     /* bytes as read from either side */
};

/* A frame for one side, appended to what goes out after this feed: the
 * session decides, the relay loop writes (so the same session code can
 * later run on the event loop). */
static int send_frame(struct session *s, bool to_server, enum ws_opcode op, const void *data, size_t len)
{
	uint8_t head[WS_HEADER_MAX], mask[4];
	struct buf *out = &s->out[to_server];
	if (to_server && RAND_bytes(mask, 4) != 1)
		return -EIO;
	size_t hn = ws_frame_head(head, op, true, to_server ? mask : NULL, len);
	size_t at = out->len;
	if (buf_append(out, head, hn) || buf_append(out, data, len))
		return -ENOMEM;
	if (to_server)
		ws_mask((uint8_t *)out->data + at + hn, len, mask, 0);
	return 0;
}

static void send_close(struct session *s, bool to_server, uint16_t code, const char *why)
{
	uint8_t pl[WS_CONTROL_MAX];
	size_t n = ws_close_payload(pl, code, why);
	send_frame(s, to_server, WS_CLOSE, pl, n);
}

/* Both sides closed, the session over, with a reason in the event. */
static void end(struct session *s, uint16_t to_client, uint16_t to_server, const char *why, const char *error)
{
	if (!s->client_closed)
		send_close(s, false, to_client, why);
	if (!s->server_closed)
		send_close(s, true, to_server, why);
	s->client_closed = s->server_closed = true;
	s->done = true;
	if (error && !s->hs->error) {
		snprintf(s->hs->error_buf, sizeof(s->hs->error_buf), "%s", error);
		s->hs->error = s->hs->error_buf;
	}
}

/* The event's "type", "event_id" and "audio" (raw JSON string bytes). */
struct event_keys {
	const char *type, *id, *audio;
	size_t type_len, id_len, audio_len;
	bool other;                     /* a top-level member besides type, event_id, audio */
};

static int find_keys(void *ctx, const char *doc, const struct json_string *js)
{
	struct event_keys *k = ctx;
	if (js->is_key && js->path->depth == 0) {
		const char *kn = doc + js->off;
		if (!json_raw_equals(kn, js->len, "type") && !json_raw_equals(kn, js->len, "event_id") &&
		    !json_raw_equals(kn, js->len, "audio"))
			k->other = true;
		return 0;
	}
	if (js->kind != JSON_STRING || js->is_key || js->path->depth != 1)
		return 0;
	if (json_path_match(js->path, "type")) {
		k->type = doc + js->off;
		k->type_len = js->len;
	} else if (json_path_match(js->path, "event_id")) {
		k->id = doc + js->off;
		k->id_len = js->len;
	} else if (json_path_match(js->path, "audio")) {
		k->audio = doc + js->off;
		k->audio_len = js->len;
	}
	return 0;
}

static void event_keys(const uint8_t *data, size_t len, struct event_keys *k)
{
	memset(k, 0, sizeof(*k));
	if (json_scan((const char *)data, len, find_keys, k) < 0)
		memset(k, 0, sizeof(*k));   /* not JSON: no type, inspected as text */
}

static bool type_is(const struct event_keys *k, const char *t)
{
	return k->type && json_raw_equals(k->type, k->type_len, t);
}

/* A client event or control payload through the request engine, as a
 * JSON body POSTed to the session's path. NULL on ENOMEM. */
static struct exchange *judge(struct session *s, const uint8_t *data, size_t len)
{
	static const char ct[] = "application/json";
	struct exchange *ex = malloc(sizeof(*ex));
	struct http_request req;
	if (!ex)
		return NULL;
	exchange_init(ex, s->hs->ag, s->hs->info, s->hs->xc);
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.method_len = 4;
	req.target = s->hs->path;
	req.target_len = strlen(s->hs->path);
	req.minor = 1;
	req.headers[0] = (struct http_header){ .name = "content-type", .name_len = 12, .value = ct,
					       .value_len = sizeof(ct) - 1 };
	req.nheaders = 1;
	req.body = HTTP_BODY_LENGTH;
	req.content_length = len;
	exchange_request(ex, &req, (const char *)data, len);
	ex->provider = s->hs->provider;
	return ex;
}

static void merge_counts(uint32_t *to, const uint32_t *from)
{
	for (int t = 0; t < FINDING__COUNT; t++) {
		uint64_t sum = (uint64_t)to[t] + from[t];
		to[t] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
	}
}

static void drop_exchange(struct exchange *ex)
{
	if (!ex)
		return;
	exchange_free(ex);
	free(ex);
}

/* A blocked client message: its own event (never its content). */
static void audit_blocked(struct session *s, struct exchange *ex, const char *what)
{
	struct audit_event ev;
	audit_event_init(&ev, "websocket_message");
	conn_info_fill_event(s->hs->info, &ev);
	exchange_fill_event(ex, &ev);
	ev.kind = "websocket_message";
	ev.method = what;
	ev.status = 0;
	audit_emit(s->hs->ag->audit, &ev);
	metrics_count_action(s->hs->ag, ev.action);
}

/* The Realtime API's error event, naming the rule (as the server's own
 * errors, so SDKs surface it), for the client event that was dropped. */
static int send_error_event(struct session *s, const struct exchange *ex, const struct event_keys *k)
{
	struct jsonw w;
	char id[32];
	int rc;
	snprintf(id, sizeof(id), "event_vigil_%u", ++s->n_events);
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "type", "error");
	jsonw_str(&w, "event_id", id);
	jsonw_key(&w, "error");
	jsonw_obj_open(&w);
	jsonw_str(&w, "type", "invalid_request_error");
	jsonw_str(&w, "code", ex->block_code ? ex->block_code : "blocked");
	char msg[600];
	snprintf(msg, sizeof(msg), "Vigil: %s", ex->block_message);
	jsonw_str(&w, "message", msg);
	jsonw_null(&w, "param");
	if (k && k->id && k->id_len < 128 && !memchr(k->id, '\\', k->id_len))
		jsonw_strn(&w, "event_id", k->id, k->id_len);
	else
		jsonw_null(&w, "event_id");
	jsonw_str(&w, "rule", ex->rule);
	jsonw_obj_close(&w);
	jsonw_obj_close(&w);
	rc = w.oom ? -ENOMEM : send_frame(s, false, WS_TEXT, w.out.data, strlen(w.out.data));
	jsonw_free(&w);
	return rc;
}

/* ---- server events through the answer engine ---- */

/* The SSE events exchange.c wrote into ex->out, each back into a text
 * frame: "data: " lines joined by "\n", "event:" lines ignored (the
 * Realtime event carries its type inside). */
static int flush_out(struct session *s, struct exchange *ex)
{
	const char *p = ex->out.data, *end = p + ex->out.len;
	int rc = 0;
	s->wrap.len = 0;
	while (p && p < end && !rc) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (ll == 0) {
			if (s->wrap.len)
				rc = send_frame(s, false, WS_TEXT, s->wrap.data, s->wrap.len);
			s->wrap.len = 0;
		} else if (ll >= 6 && !memcmp(p, "data: ", 6)) {
			if (s->wrap.len)
				buf_append(&s->wrap, "\n", 1);
			buf_append(&s->wrap, p + 6, ll - 6);
		}
		p += ll + 1;
	}
	ex->out.len = 0;
	return rc;
}

static void finish_current(struct session *s)
{
	struct exchange *ex = s->cur;
	if (!ex)
		return;
	if (s->cur_head) {
		exchange_response_end(ex);
		if (ex->transform)
			flush_out(s, ex);
		merge_counts(s->hs->out_counts, ex->out_counts);
		merge_counts(s->hs->ans_counts, ex->ans_counts);
		ex->status = 200;
		exchange_done(ex);   /* budgets: this turn's tokens */
	}
	drop_exchange(ex);
	s->cur = NULL;
	s->cur_head = false;
}

/* The exchange that reads the server's events, its "response head" given
 * when the first one arrives (then the vault holds this turn's tokens). */
static struct exchange *current(struct session *s)
{
	if (!s->cur) {
		if (!(s->cur = malloc(sizeof(*s->cur))))
			return NULL;
		exchange_init(s->cur, s->hs->ag, s->hs->info, s->hs->xc);
		s->cur->provider = s->hs->provider;
	}
	if (!s->cur_head) {
		struct http_response resp;
		memset(&resp, 0, sizeof(resp));
		resp.status = 200;
		resp.minor = 1;
		resp.body = HTTP_BODY_EOF;
		resp.event_stream = true;
		s->cur->status = 200;
		exchange_response_head(s->cur, &resp);
		s->cur_head = true;
	}
	return s->cur;
}

static void note_usage(struct session *s, const uint8_t *data, size_t len)
{
	int64_t in = -1, out = -1;
	exchange_scan_usage((const char *)data, len, &in, &out);
	if (in < 0 && out < 0)
		return;
	s->prompt_sum += in > 0 ? in : 0;
	s->completion_sum += out > 0 ? out : 0;
	int n = snprintf(s->usage + s->usage_len, sizeof(s->usage) - s->usage_len, "%s%lld/%lld",
			 s->usage_len ? "," : "", (long long)in, (long long)out);
	if (n > 0 && (size_t)n < sizeof(s->usage) - s->usage_len)
		s->usage_len += (size_t)n;
}

static int server_text(struct session *s, const uint8_t *data, size_t len)
{
	struct event_keys k;
	struct exchange *ex;
	event_keys(data, len, &k);
	if (type_is(&k, "response.done"))
		note_usage(s, data, len);
	if (type_is(&k, "response.audio.delta") || type_is(&k, "response.output_audio.delta"))
		return send_frame(s, false, WS_TEXT, data, len);   /* audio, base64: untouched */
	if (!(ex = current(s))) {
		end(s, WS_CLOSE_INTERNAL, WS_CLOSE_INTERNAL, "agent out of memory", "websocket: out of memory");
		return -ENOMEM;
	}
	if (len > WSRELAY_EVENT_MAX) {
		if (!ex->transform)
			return send_frame(s, false, WS_TEXT, data, len);
		end(s, WS_CLOSE_TOO_BIG, WS_CLOSE_TOO_BIG, "server event too large to restore",
		    "websocket: a server event over 1 MiB could not be restored or redacted; session closed");
		return -E2BIG;
	}
	s->wrap.len = 0;
	if (buf_append(&s->wrap, "data: ", 6) || buf_append(&s->wrap, data, len) ||
	    buf_append(&s->wrap, "\n\n", 2))
		return -ENOMEM;
	exchange_response_data(ex, s->wrap.data, s->wrap.len);
	if (ex->cut) {
		end(s, WS_CLOSE_POLICY, WS_CLOSE_NORMAL, "answer could not be redacted",
		    ex->error ? ex->error : "answer_redaction_failed");
		return -EIO;
	}
	if (ex->transform)
		return flush_out(s, ex);
	return send_frame(s, false, WS_TEXT, data, len);
}

static int on_server(void *arg, enum ws_opcode op, const uint8_t *data, size_t len)
{
	struct session *s = arg;
	switch (op) {
	case WS_TEXT:
		return server_text(s, data, len);
	case WS_CLOSE:
		s->server_closed = true;
		if (s->client_closed)
			s->done = true;
		return send_frame(s, false, WS_CLOSE, data, len);
	default:
		return send_frame(s, false, op, data, len);
	}
}

/* ---- client events through the request engine ---- */

static void note_decision(struct session *s, const struct exchange *ex)
{
	merge_counts(s->hs->counts, ex->counts);
	if (ex->injection_score > s->hs->injection_score)
		s->hs->injection_score = ex->injection_score;
	if (!s->hs->policy_hash)
		s->hs->policy_hash = ex->policy_hash;
	if (!strcmp(ex->action, "redact"))
		s->redacted = true;
	else if (!strcmp(ex->action, "alert"))
		s->alerted = true;
	/* a blocked message has its own event: the session's rule is the
	 * last one that redacted or alerted on what passed */
	if (!ex->blocked && strcmp(ex->action, "allow") && ex->rule) {
		/* the rule's name belongs to the policy snapshot ex holds, which a
		 * reload may free before the session ends: copied into a buffer
		 * of hs that an allowed handshake does not use */
		snprintf(s->hs->block_message, sizeof(s->hs->block_message), "%s", ex->rule);
		s->hs->rule = s->hs->block_message;
	}
}

/* Bytes that pass unread as a message (audio, a binary frame) unless a
 * detector finds something in them read as text: a secret or an address
 * written as "audio" (base64 of text, or text after a few bytes of real
 * audio) is then judged like any message. Cheap next to the audio rate:
 * one Hyperscan pass over the decoded bytes. */
static bool opaque_ok(struct session *s, const char *p, size_t n)
{
	return exchange_bytes_hold_findings(s->hs->xc, s->hs->ag, p, n) == 0;
}

static bool audio_ok(struct session *s, const struct event_keys *k)
{
	s->audio.len = 0;
	/* not base64 (JSON escapes included): read as the text it is */
	return k->audio && decode_base64(k->audio, k->audio_len, k->audio_len, &s->audio) == 0 &&
	       opaque_ok(s, s->audio.data ? s->audio.data : "", s->audio.len);
}

/* A text event, a binary frame that holds text, or a control payload from
 * the client. Returns 0 or a write error. */
static int client_text(struct session *s, enum ws_opcode op, const uint8_t *data, size_t len)
{
	struct event_keys k;
	struct exchange *ex;
	int rc;

	if (op == WS_TEXT) {
		event_keys(data, len, &k);
		/* audio, base64: untouched when nothing is found in it; an
		 * append that carries anything else is read whole (no side
		 * channel next to the audio) */
		if (type_is(&k, "input_audio_buffer.append") && !k.other && audio_ok(s, &k))
			return send_frame(s, true, WS_TEXT, data, len);
	} else {
		memset(&k, 0, sizeof(k));
	}
	if (!(ex = judge(s, data, len))) {
		end(s, WS_CLOSE_INTERNAL, WS_CLOSE_INTERNAL, "agent out of memory", "websocket: out of memory");
		return -ENOMEM;
	}
	note_decision(s, ex);
	if (ex->blocked) {
		s->blocked++;
		audit_blocked(s, ex, op == WS_TEXT ? "event" : op == WS_BINARY ? "binary" : op == WS_PING ? "ping" :
				     op == WS_PONG ? "pong" : "close");
		rc = op == WS_TEXT || op == WS_BINARY ? send_error_event(s, ex, &k) : 0;
		if (op == WS_CLOSE) {
			uint8_t pl[2];
			ws_close_payload(pl, ws_close_code(data, len), NULL);
			rc = send_frame(s, true, WS_CLOSE, pl, len >= 2 ? 2 : 0);
		}
		drop_exchange(ex);
		return rc;
	}
	size_t blen = len;
	const char *body = exchange_body(ex, (const char *)data, &blen);
	if (op != WS_TEXT && op != WS_BINARY && blen > WS_CONTROL_MAX) {
		drop_exchange(ex);   /* redacted past what a control frame holds: dropped */
		return 0;
	}
	rc = send_frame(s, true, op, body, blen);
	if (op == WS_TEXT) {
		/* this turn's answer rule and tokens apply to what comes back */
		finish_current(s);
		s->cur = ex;
		return rc;
	}
	drop_exchange(ex);
	return rc;
}

static int on_client(void *arg, enum ws_opcode op, const uint8_t *data, size_t len)
{
	struct session *s = arg;
	switch (op) {
	case WS_BINARY:
		if (!len || opaque_ok(s, (const char *)data, len))
			return send_frame(s, true, op, data, len);
		return client_text(s, op, data, len);
	case WS_CLOSE:
		s->client_closed = true;
		if (s->server_closed)
			s->done = true;
		if (len <= 2)
			return send_frame(s, true, op, data, len);
		return client_text(s, op, data, len);
	case WS_PING:
	case WS_PONG:
		if (!len)
			return send_frame(s, true, op, data, len);
		return client_text(s, op, data, len);
	default:
		return client_text(s, op, data, len);
	}
}

/* ---- I/O ---- */

/* One non-blocking read: > 0 bytes, 0 nothing yet, -1 end or error. */
static ssize_t try_read(SSL *ssl, void *buf, size_t cap)
{
	ERR_clear_error();
	int n = SSL_read(ssl, buf, (int)cap);
	if (n > 0)
		return n;
	int e = SSL_get_error(ssl, n);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Writes what the session produced, both ways; a failed write ends it. */
static void flush(struct session *s)
{
	struct wsrelay_io *io = s->io;
	uint64_t deadline = loop_now_ms() + s->hs->ag->cfg->idle_timeout_ms;
	for (int to_server = 0; to_server < 2; to_server++) {
		struct buf *b = &s->out[to_server];
		if (!b->len)
			continue;
		int rc = to_server ? io->write_all(io->ussl, io->ufd, b->data, b->len, deadline) :
				     io->write_all(io->cssl, io->cfd, b->data, b->len, deadline);
		if (rc) {
			s->client_closed = s->server_closed = s->done = true;
			if (!s->hs->error)
				s->hs->error = to_server ? "websocket: write to the server failed" :
							   "websocket: write to the client failed";
		} else if (to_server) {
			s->hs->bytes_up += b->len;
		} else {
			s->hs->bytes_down += b->len;
		}
		explicit_bzero(b->data, b->len);   /* may be a prompt or an answer */
		b->len = 0;
		if (b->cap > 64 * 1024)
			buf_free(b);
	}
}

/* Feeds bytes from one side; a violation ends the session. */
static int feed(struct session *s, bool from_client, const uint8_t *buf, size_t n)
{
	struct ws_parser *p = from_client ? &s->pc : &s->ps;
	int rc = ws_parser_feed(p, buf, n, from_client ? on_client : on_server, s);
	if (rc == -EPROTO) {
		char why[160];
		snprintf(why, sizeof(why), "websocket: %s %s (close %u)", from_client ? "client" : "server", p->error,
			 p->close_code);
		if (p->close_code == WS_CLOSE_TOO_BIG)
			s->hs->reason = "websocket_limit";
		end(s, from_client ? p->close_code : WS_CLOSE_INTERNAL, from_client ? WS_CLOSE_INTERNAL : p->close_code,
		    p->error, why);
	} else if (rc && !s->done) {
		end(s, WS_CLOSE_INTERNAL, WS_CLOSE_INTERNAL, "relay failed", "websocket: out of memory");
	}
	flush(s);
	return rc;
}

/* RFC 6455 7.1.1: after a close each side waits for the other's, but not
 * forever: a peer that never answers our forwarded close is left. */
#define CLOSE_WAIT_MS 5000

static void relay(struct session *s, struct wsrelay_io *io)
{
	uint8_t *buf = s->rbuf;
	uint64_t idle = s->hs->ag->cfg->ws_idle_timeout_ms;

	if (io->upend_len)
		feed(s, false, (const uint8_t *)io->upend, io->upend_len);
	if (!s->done && io->cpend_len)
		feed(s, true, (const uint8_t *)io->cpend, io->cpend_len);
	while (!s->done) {
		bool any = false;
		for (int side = 0; side < 2 && !s->done; side++) {
			SSL *ssl = side ? io->ussl : io->cssl;
			ssize_t n;
			while (!s->done && (n = try_read(ssl, buf, WSRELAY_READ)) != 0) {
				if (n < 0) {
					/* that side is gone: the other hears 1001, going away */
					*(side ? &s->server_closed : &s->client_closed) = true;
					end(s, WS_CLOSE_GOING_AWAY, WS_CLOSE_GOING_AWAY, "peer went away", NULL);
					break;
				}
				any = true;
				feed(s, side == 0, buf, (size_t)n);
			}
		}
		if (s->done || any)
			continue;
		struct pollfd pf[2] = { { .fd = io->cfd, .events = POLLIN }, { .fd = io->ufd, .events = POLLIN } };
		bool closing = s->client_closed || s->server_closed;
		int r = poll(pf, 2, (int)(closing && idle > CLOSE_WAIT_MS ? CLOSE_WAIT_MS : idle));
		if (r == 0 && closing)
			end(s, WS_CLOSE_NORMAL, WS_CLOSE_NORMAL, "close not answered", NULL);
		else if (r == 0)
			end(s, WS_CLOSE_NORMAL, WS_CLOSE_NORMAL, "idle", "websocket: idle timeout");
		else if (r < 0 && errno != EINTR)
			end(s, WS_CLOSE_INTERNAL, WS_CLOSE_INTERNAL, "poll failed", "websocket: poll failed");
	}
	flush(s);
}

/* After our close frame the client may still be sending (the rest of an
 * oversized frame): closing at once would make the kernel answer with a
 * reset that destroys the close frame before the client reads it. Say we
 * are done, then read and discard for a bounded time (as intercept.c does
 * after refusing a request). */
static void linger_client(struct session *s, struct wsrelay_io *io)
{
	uint8_t *buf = s->rbuf;
	uint64_t until = loop_now_ms() + 2000;
	size_t drained = 0;
	SSL_shutdown(io->cssl);
	shutdown(io->cfd, SHUT_WR);
	while (drained < (8u << 20)) {
		ssize_t n = try_read(io->cssl, buf, WSRELAY_READ);
		if (n < 0)
			break;
		if (n > 0) {
			drained += (size_t)n;
			continue;
		}
		uint64_t now = loop_now_ms();
		struct pollfd pf = { .fd = io->cfd, .events = POLLIN };
		if (now >= until || poll(&pf, 1, (int)(until - now)) <= 0)
			break;
	}
}

void wsrelay_run(struct exchange *hs, struct wsrelay_io *io)
{
	const struct config *cfg = hs->ag->cfg;
	struct session *s = calloc(1, sizeof(*s));
	if (!s) {
		hs->error = "websocket: out of memory";
		return;
	}
	s->hs = hs;
	s->io = io;
	s->wrap.secret = true;
	s->audio.secret = true;
	ws_parser_init(&s->pc, WS_FROM_CLIENT, cfg->ws_max_frame, cfg->ws_max_message);
	ws_parser_init(&s->ps, WS_FROM_SERVER, cfg->ws_max_frame, cfg->ws_max_message);
	relay(s, io);
	finish_current(s);
	linger_client(s, io);
	if (s->usage_len) {
		hs->usage.prompt = s->prompt_sum;
		hs->usage.completion = s->completion_sum;
		hs->ws_usage = strdup(s->usage);
	}
	if (s->redacted)
		hs->action = "redact";
	else if (s->alerted)
		hs->action = "alert";
	if (s->blocked && !hs->reason) {
		snprintf(hs->reason_buf, sizeof(hs->reason_buf), "websocket: %u client message%s blocked", s->blocked,
			 s->blocked == 1 ? "" : "s");
		hs->reason = hs->reason_buf;
	}
	ws_parser_free(&s->pc);
	ws_parser_free(&s->ps);
	explicit_bzero(s->rbuf, sizeof(s->rbuf));
	buf_free(&s->out[0]);
	buf_free(&s->out[1]);
	buf_free(&s->wrap);
	buf_free(&s->audio);
	free(s);
}
