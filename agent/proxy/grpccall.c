/* grpccall: one gRPC call, inspected end to end (see grpccall.h).
 *
 * Owns the call's decoded request messages, the provider-JSON form of
 * their text handed to exchange.c, the nghttp2 client session toward the
 * upstream and the rewriting of answer messages as they arrive.
 *
 * Must never: forward a request message it could not walk whole (a
 * schema-less reader that gives up would let text through unread), hold
 * an answer whole (each message leaves when it is complete), put a
 * finding's text in grpc-message or a log, or lend the upstream HTTP/2
 * connection to an HTTP/1.1 exchange. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <nghttp2/nghttp2.h>
#include "proxy/grpccall.h"
#include "proxy/grpc.h"
#include "content/answer.h"
#include "content/decode.h"
#include "content/detok.h"
#include "content/json.h"
#include "content/protowalk.h"
#include "net/sni.h"
#include "utf8.h"
#include "log.h"
#include "loop.h"

#define GRPC_MAX_MESSAGES 4096
#define GRPC_MAX_FIELDS 64            /* response header or trailer fields forwarded */
#define GRPC_MAX_FIELD_BYTES (16 * 1024)
#define GRPC_READ_CHUNK 16384

/* gRPC status codes (grpc/doc/statuscodes.md) */
enum { GS_OK = 0, GS_INVALID_ARGUMENT = 3, GS_PERMISSION_DENIED = 7, GS_RESOURCE_EXHAUSTED = 8,
       GS_UNIMPLEMENTED = 12, GS_INTERNAL = 13, GS_UNAVAILABLE = 14 };

/* Where a request text goes in the provider-JSON form. */
enum slot { SLOT_PROMPT, SLOT_SYSTEM, SLOT_OTHER, SLOT__COUNT };

/* Where the known methods keep their text and usage. The two APIs share
 * message names, not field numbers (checked against Google's published
 * generative_service / prediction_service and content protos). */
struct llm_schema {
	const char *service;          /* ".GenerativeService/" */
	uint32_t model;
	uint32_t prompt[3], system[3];            /* contents.parts.text, system_instruction.parts.text */
	uint32_t answer[4];                       /* candidates.content.parts.text */
	uint32_t usage_prompt[2], usage_out[2], usage_cached[2];
};

static const struct llm_schema schemas[] = {
	/* google.ai.generativelanguage.v1 / v1beta (Gemini API) */
	{ ".GenerativeService/", 1, { 2, 1, 2 }, { 8, 1, 2 }, { 1, 1, 1, 2 }, { 3, 1 }, { 3, 2 }, { 3, 4 } },
	/* google.cloud.aiplatform.v1 / v1beta1 (Vertex AI): model 5, Content.parts 2,
	 * Part.text 1, candidates 2, Candidate.content 2, usage_metadata 4 */
	{ ".PredictionService/", 5, { 2, 2, 1 }, { 8, 2, 1 }, { 2, 2, 2, 1 }, { 4, 1 }, { 4, 2 }, { 4, 5 } },
};

struct text_ref {
	uint32_t msg;                 /* request message index */
	size_t off, len;              /* the text in that decoded message */
	enum slot slot;
	size_t repl_off, repl_len;    /* its redacted form in g->repl (repl_len SIZE_MAX: unchanged) */
	bool opaque;                  /* a bytes field read as text: never rewritten */
};

struct grpccall {
	struct exchange *ex;
	struct h2_stream *h2;
	const struct h2_grpc_call *call;
	const struct grpccall_io *io;
	uint64_t max_msg;
	const struct llm_schema *known;  /* a GenerateContent method, or NULL */
	/* request */
	struct buf msgs;              /* decoded messages back to back */
	size_t *moff, *mlen;
	uint32_t nmsg, cap_msg;
	struct text_ref *refs;        /* in message order, then walk order */
	size_t nrefs, cap_refs;
	size_t *by_slot[SLOT__COUNT]; /* each slot's refs in order (indexes into refs) */
	size_t nslot[SLOT__COUNT];
	char model[PROVIDER_MODEL_MAX];
	struct buf json, repl, fwd;
	struct buf shown;             /* one bytes field as inspection sees it */
	uint32_t cur_msg;
	/* the call as an HTTP/1.1 head for exchange.c: Host, a JSON
	 * Content-Type, then the client's metadata (inspected like any
	 * request head, and forwarded from here, redacted if need be) */
	struct buf head;
	struct http_request req;
	/* response */
	struct grpccall_session *sess;
	int32_t sid;
	char resp_enc[32];
	struct grpc_reader rd;
	struct buf fields;            /* header block being received: name\0value\0 ... */
	size_t nfields;
	bool head_sent, trailers_sent, closed, failed;
	struct buf dec, edits_repl, out, wbuf, stage;
	/* the candidates' text is one stream across messages: a token split
	 * between two of them ("[[VGL_EM" | "AIL_1a2b3c]]") is restored whole */
	struct detok *ans_detok;
	int grpc_status;
	/* a request read as it arrives (call->streamed): each batch of whole
	 * messages decided as it comes (decide_more) and queued for the
	 * upstream stream */
	bool streaming;               /* more of the request may come */
	struct buf rin;               /* client bytes not yet cut into whole messages */
	bool rin_end;                 /* the client ended its side */
	struct buf first;             /* the first batch (g->call->body points here) */
	struct buf upq;               /* request bytes for the upstream, from upq_off */
	size_t upq_off;
	struct buf sent;              /* what left of upq before any answer: replayed on a
				       * kept connection found closed (bounded) */
	bool unreplayable;
	bool up_end, up_deferred;
	/* quiet: a batch's decision records its refusal instead of answering */
	bool quiet;
	int q_code;
	char q_msg[512], q_rule[128], q_reason[160];
};

struct grpccall_session {
	nghttp2_session *s;
	struct grpccall *g;           /* the call being served; NULL between calls */
};

void grpccall_session_free(struct grpccall_session *s)
{
	if (!s)
		return;
	nghttp2_session_del(s->s);
	free(s);
}

/* ---- small helpers ---- */

/* A header of the client's block ("name: value\r\n" lines). */
static bool find_field(const char *hdrs, size_t len, const char *name, const char **v, size_t *vl)
{
	size_t nl = strlen(name);
	for (const char *p = hdrs, *end = hdrs + len; p < end;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl + 2 && !strncasecmp(p, name, nl) && p[nl] == ':' && p[nl + 1] == ' ') {
			*v = p + nl + 2;
			*vl = (size_t)(eol - *v);
			return true;
		}
		p = eol + 2;
	}
	return false;
}

int grpccall_status_for(int http_status)
{
	switch (http_status) {
	case 400: return GS_INVALID_ARGUMENT;
	case 401:
	case 403: return GS_PERMISSION_DENIED;
	case 413:
	case 429: return GS_RESOURCE_EXHAUSTED;
	case 415: return GS_UNIMPLEMENTED;
	case 502:
	case 503:
	case 504: return GS_UNAVAILABLE;
	default: return http_status >= 500 ? GS_UNAVAILABLE : GS_PERMISSION_DENIED;
	}
}

/* grpc-message is percent-encoded (gRPC over HTTP/2: bytes outside
 * 0x20..0x7e and '%'). */
static void pct_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		unsigned char c = (unsigned char)*in;
		if (c < 0x20 || c > 0x7e || c == '%') {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
}

#define FIELD(n, v) { n, v, sizeof(n) - 1, strlen(v) }

/* The agent's own answer: trailers-only (RFC: HEADERS with END_STREAM
 * holding :status 200 and the gRPC status), so every gRPC client shows
 * the code and the message. */
static int answer_error(struct grpccall *g, int code, const char *msg)
{
	char status[12], enc[600];
	if (g->quiet) {
		/* a later batch of a streamed request: the caller ends the call */
		g->q_code = code;
		snprintf(g->q_msg, sizeof(g->q_msg), "%s", msg);
		return 0;
	}
	snprintf(status, sizeof(status), "%d", code);
	pct_encode(msg, enc, sizeof(enc));
	struct h2_field f[] = { FIELD(":status", "200"), FIELD("content-type", "application/grpc"),
				FIELD("grpc-status", status), FIELD("grpc-message", enc) };
	g->grpc_status = code;
	return h2_send_head(g->h2, f, sizeof(f) / sizeof(f[0]), true);
}

/* A call refused before inspection (framing, limits, coding). */
static int refuse(struct grpccall *g, int http_status, int code, const char *why)
{
	struct exchange *ex = g->ex;
	size_t pl = strcspn(g->call->path, "?#");

	snprintf(ex->method, sizeof(ex->method), "POST");
	snprintf(ex->path, sizeof(ex->path), "%.*s", (int)pl, g->call->path);
	ex->provider = provider_identify(ex->info->sni, ex->path);
	ex->blocked = true;
	ex->action = "block";
	ex->reason = "bad_request";
	ex->error = why;
	ex->status = http_status;
	return answer_error(g, code, why);
}

/* ---- the request: messages, text, the provider-JSON form ---- */

static int on_req_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
	struct grpccall *g = arg;
	const char *enc = NULL;
	size_t el = 0;

	if (g->nmsg == GRPC_MAX_MESSAGES)
		return -E2BIG;
	if (g->nmsg == g->cap_msg) {
		uint32_t cap = g->cap_msg ? g->cap_msg * 2 : 4;
		size_t *o = realloc(g->moff, cap * sizeof(*o)), *l;
		if (!o)
			return -ENOMEM;
		g->moff = o;
		if (!(l = realloc(g->mlen, cap * sizeof(*l))))
			return -ENOMEM;
		g->mlen = l;
		g->cap_msg = cap;
	}
	find_field(g->call->hdrs, g->call->hdrs_len, "grpc-encoding", &enc, &el);
	size_t before = g->msgs.len;
	/* all messages of the request together within the body limit, and
	 * so a compressed one's decoded size too */
	int rc = grpc_message_decode(enc, el, compressed, msg, len, g->max_msg - before, &g->msgs);
	if (rc)
		return rc;
	g->moff[g->nmsg] = before;
	g->mlen[g->nmsg++] = g->msgs.len - before;
	return 0;
}


/* A bytes field as inspection sees it, p[0..n) to out, as many bytes:
 * valid UTF-8 and line breaks kept (a fullwidth key is still a key, as it
 * was to the gate), every other byte a space (the JSON stays valid).
 * Returns how many bytes it took, a whole character. */
static size_t shown(const unsigned char *p, size_t n, char *out)
{
	size_t l = utf8_len(p, n);

	if (l > 1 || (l == 1 && ((p[0] >= 0x20 && p[0] < 0x7f) || p[0] == '\n' || p[0] == '\t'))) {
		memcpy(out, p, l);
		return l;
	}
	out[0] = ' ';
	return 1;
}

/* A bytes field p[0..n) as inspection sees it, to g->shown: its reading
 * as UTF-16 where it is that (decode_utf16), a line break, then the bytes
 * shown one by one, as inspect_bytes read them at the gate. */
static int show_bytes(struct grpccall *g, const char *p, size_t n)
{
	struct buf *o = &g->shown;
	o->len = 0;
	int rc = decode_utf16(p, n, o);
	if (rc < 0 || (rc == 1 && buf_append(o, "\n", 1)) || buf_reserve(o, n))
		return -ENOMEM;
	for (size_t i = 0; i < n;) {
		size_t l = shown((const unsigned char *)p + i, n - i, o->data + o->len);
		o->len += l, i += l;
	}
	return 0;
}

static int on_req_field(void *arg, const struct protowalk_field *f)
{
	struct grpccall *g = arg;
	const char *m = g->msgs.data + g->moff[g->cur_msg];
	bool opaque = f->kind == PROTOWALK_BYTES;

	if (f->kind != PROTOWALK_TEXT && !opaque)
		return 0;
	/* Bytes (images, audio) pass unread unless a detector finds text in
	 * them: a key after a NUL is not a way around inspection. They are
	 * then inspected with the texts, and cannot be redacted in place. */
	if (opaque && !exchange_bytes_hold_findings(g->ex->xc, g->ex->ag, m + f->off, f->len))
		return 0;
	if (!opaque && g->known && protowalk_path_is(f, &g->known->model, 1)) {
		/* "models/gemini-2.0-flash" or Vertex's
		 * "projects/P/locations/L/publishers/google/models/gemini-2.0-flash":
		 * the name after the last "models/", as the REST path gives it */
		size_t skip = 0;
		for (size_t i = 0; i + 7 <= f->len; i++)
			if (!memcmp(m + f->off + i, "models/", 7) && (i == 0 || m[f->off + i - 1] == '/'))
				skip = i + 7;
		size_t n = f->len - skip < sizeof(g->model) - 1 ? f->len - skip : sizeof(g->model) - 1;
		memcpy(g->model, m + f->off + skip, n);
		g->model[n] = 0;
	}
	if (g->nrefs == g->cap_refs) {
		size_t cap = g->cap_refs ? g->cap_refs * 2 : 16;
		struct text_ref *r = realloc(g->refs, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		g->refs = r;
		g->cap_refs = cap;
	}
	enum slot s = SLOT_OTHER;
	if (!opaque && g->known && protowalk_path_is(f, g->known->prompt, 3))
		s = SLOT_PROMPT;
	else if (!opaque && g->known && protowalk_path_is(f, g->known->system, 3))
		s = SLOT_SYSTEM;
	g->refs[g->nrefs++] = (struct text_ref){ g->cur_msg, f->off, f->len, s, 0, SIZE_MAX, opaque };
	return 0;
}

/* One slot's texts as JSON: a Gemini parts list, or a list of strings. */
static int json_slot(struct grpccall *g, enum slot s)
{
	struct buf *j = &g->json;
	bool first = true;
	int rc = 0;

	for (size_t i = 0; i < g->nrefs && !rc; i++) {
		const struct text_ref *r = &g->refs[i];
		if (r->slot != s)
			continue;
		rc |= buf_append(j, first ? "" : ",", first ? 0 : 1);
		rc |= s == SLOT_OTHER ? buf_append(j, "\"", 1) : buf_append(j, "{\"text\":\"", 9);
		const char *t = g->msgs.data + g->moff[r->msg] + r->off;
		if (r->opaque && !(rc |= show_bytes(g, t, r->len)))
			rc |= json_encode(g->shown.data, g->shown.len, j);
		if (!r->opaque)
			rc |= json_encode(t, r->len, j);
		rc |= s == SLOT_OTHER ? buf_append(j, "\"", 1) : buf_append(j, "\"}", 2);
		first = false;
	}
	return rc ? -ENOMEM : 0;
}

static int build_json(struct grpccall *g)
{
	struct buf *j = &g->json;
	int rc = buf_append(j, "{", 1);

	if (g->model[0]) {
		rc |= buf_append(j, "\"model\":\"", 9);
		rc |= json_encode(g->model, strlen(g->model), j);
		rc |= buf_append(j, "\",", 2);
	}
	rc |= buf_append(j, "\"contents\":[{\"parts\":[", 22);
	rc |= json_slot(g, SLOT_PROMPT);
	rc |= buf_append(j, "]}],\"systemInstruction\":{\"parts\":[", 34);
	rc |= json_slot(g, SLOT_SYSTEM);
	rc |= buf_append(j, "]},\"strings\":[", 14);
	rc |= json_slot(g, SLOT_OTHER);
	rc |= buf_append(j, "]}", 2);
	return rc ? -ENOMEM : 0;
}

/* Each slot's refs in order: the JSON's n-th string of a slot is found
 * in constant time (a call may carry hundreds of thousands of texts). */
static int index_slots(struct grpccall *g)
{
	for (int s = 0; s < SLOT__COUNT; s++)
		if (!(g->by_slot[s] = malloc((g->nrefs ? g->nrefs : 1) * sizeof(size_t))))
			return -ENOMEM;
	for (size_t i = 0; i < g->nrefs; i++)
		g->by_slot[g->refs[i].slot][g->nslot[g->refs[i].slot]++] = i;
	return 0;
}

/* The n-th text of slot s. */
static struct text_ref *slot_ref(struct grpccall *g, enum slot s, uint32_t n)
{
	return n < g->nslot[s] ? &g->refs[g->by_slot[s][n]] : NULL;
}

struct readback {
	struct grpccall *g;
	struct json_text t;
};

/* Each string of the redacted JSON back to the text it came from. */
static int on_redacted(void *arg, const char *doc, const struct json_string *s)
{
	struct readback *rb = arg;
	struct grpccall *g = rb->g;
	const struct json_path *p = s->path;
	struct text_ref *r = NULL;

	if (s->kind != JSON_STRING || s->is_key)
		return 0;
	if (json_path_match(p, "contents[0].parts[*].text"))
		r = slot_ref(g, SLOT_PROMPT, p->elem[3].index);
	else if (json_path_match(p, "systemInstruction.parts[*].text"))
		r = slot_ref(g, SLOT_SYSTEM, p->elem[2].index);
	else if (json_path_match(p, "strings[*]"))
		r = slot_ref(g, SLOT_OTHER, p->elem[1].index);
	if (!r)
		return 0;
	int rc = json_decode(doc + s->off, s->len, &rb->t);
	if (rc)
		return rc;
	const char *orig = g->msgs.data + g->moff[r->msg] + r->off;
	if (r->opaque) {
		/* unchanged, or a redaction the bytes cannot take */
		if ((rc = show_bytes(g, orig, r->len)))
			return rc;
		return rb->t.len == g->shown.len && !memcmp(rb->t.data, g->shown.data, g->shown.len) ? 0 : -EPERM;
	}
	if (rb->t.len == r->len && !memcmp(rb->t.data, orig, r->len))
		return 0;
	r->repl_off = g->repl.len;
	r->repl_len = rb->t.len;
	return buf_append(&g->repl, rb->t.data, rb->t.len) ? -ENOMEM : 0;
}

/* The request body with the redacted texts, every message re-framed
 * uncompressed (enclosing lengths re-encoded by protowalk_rewrite). */
static int rewrite_request(struct grpccall *g, const char *body, size_t len)
{
	struct readback rb = { g, { 0 } };
	struct protowalk_edit *e = calloc(g->nrefs ? g->nrefs : 1, sizeof(*e));
	struct buf m = { .secret = true };
	int rc = !e ? -ENOMEM : index_slots(g);
	size_t k = 0;

	if (!rc)
		rc = json_scan(body, len, on_redacted, &rb);
	json_text_free(&rb.t);
	for (uint32_t i = 0; i < g->nmsg && !rc; i++) {
		size_t n = 0;
		/* refs are in message order: one pass over them for all messages */
		for (; k < g->nrefs && g->refs[k].msg == i; k++)
			if (g->refs[k].repl_len != SIZE_MAX)
				e[n++] = (struct protowalk_edit){ g->refs[k].off, g->repl.data + g->refs[k].repl_off,
								  g->refs[k].repl_len };
		const uint8_t *msg = (const uint8_t *)g->msgs.data + g->moff[i];
		m.len = 0;
		rc = protowalk_rewrite(msg, g->mlen[i], e, n, &m);
		if (!rc)
			rc = grpc_frame(&g->fwd, false, m.data ? m.data : "", m.len);
	}
	buf_free(&m);
	free(e);
	return rc;
}

static int build_head(struct grpccall *g)
{
	const struct config *cfg = g->ex->ag->cfg;
	const struct h2_grpc_call *c = g->call;
	struct http_limits lim = { .max_head_bytes = (size_t)cfg->max_head_bytes * 2 + 4096,
				   .max_headers = HTTP_MAX_HEADERS };
	struct buf *h = &g->head;
	int rc = 0;

#define LIT(s) buf_append(h, s, sizeof(s) - 1)
	rc |= LIT("POST ");
	rc |= buf_append(h, c->path, strlen(c->path));
	rc |= LIT(" HTTP/1.1\r\nHost: ");
	rc |= buf_append(h, c->authority, strlen(c->authority));
	rc |= LIT("\r\nContent-Type: application/json\r\n");
	/* the client's own content-type (application/grpc...) is forwarded
	 * from the call, not inspected as a second Content-Type */
	for (const char *p = c->hdrs, *end = c->hdrs + c->hdrs_len; p < end;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		size_t n = eol ? (size_t)(eol - p) + 2 : (size_t)(end - p);
		if (!(n > 13 && !strncasecmp(p, "content-type:", 13)))
			rc |= buf_append(h, p, n);
		p += n;
	}
	rc |= LIT("\r\n");
#undef LIT
	if (rc)
		return -ENOMEM;
	rc = http_parse_request(h->data, h->len, &lim, &g->req);
	if (rc != (int)h->len)
		log_debug("gRPC call to %s: metadata not parsable as a head (%d)", g->ex->info->sni, rc);
	return rc == (int)h->len ? 0 : -EINVAL;
}

/* The request's messages, unframed, decoded and walked. 0, 1 when the
 * client was answered already (refused), < 0 on failure. */
static int read_messages(struct grpccall *g)
{
	struct exchange *ex = g->ex;
	const struct h2_grpc_call *c = g->call;
	int rc;

	grpc_reader_init(&g->rd, g->max_msg);
	rc = grpc_reader_feed(&g->rd, c->body, c->body_len, on_req_msg, g);
	if (!rc && !grpc_reader_idle(&g->rd))
		rc = -EPROTO;
	grpc_reader_free(&g->rd);
	if (rc == -EMSGSIZE || rc == -E2BIG)
		return refuse(g, 413, GS_RESOURCE_EXHAUSTED, "gRPC message larger than limits.max_body_bytes") ?: 1;
	if (rc == -ENOTSUP)
		return refuse(g, 415, GS_UNIMPLEMENTED, "grpc-encoding the agent cannot read") ?: 1;
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		return refuse(g, 400, GS_INTERNAL, "malformed gRPC message framing or compression") ?: 1;
	for (g->cur_msg = 0; g->cur_msg < g->nmsg; g->cur_msg++) {
		rc = protowalk((const uint8_t *)g->msgs.data + g->moff[g->cur_msg], g->mlen[g->cur_msg],
			       on_req_field, g);
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			/* unread text must not leave: fail closed, as INSPECTION_LIMIT */
			ex->counts[FINDING_INSPECTION_LIMIT] = 1;
			ex->rule = "default:inspection_limit";
			rc = refuse(g, 403, GS_PERMISSION_DENIED,
				    "request blocked: a gRPC message could not be read as protobuf (INSPECTION_LIMIT)");
			ex->reason = "inspection_limit";
			return rc ?: 1;
		}
	}
	return 0;
}

/* Reads the call's messages and decides it with exchange.c. 0 to
 * forward (g->fwd holds a rewritten body, or is empty for the original),
 * 1 when the client was answered already, < 0 on failure. */
static int decide(struct grpccall *g)
{
	struct exchange *ex = g->ex;
	const struct h2_grpc_call *c = g->call;
	char host[256];
	int rc;

	if ((rc = read_messages(g)))
		return rc;
	if ((rc = build_json(g)))
		return rc;
	if ((rc = build_head(g)) == -ENOMEM)
		return rc;
	if (rc)
		return refuse(g, 400, GS_INVALID_ARGUMENT, "gRPC path or metadata the agent cannot read") ?: 1;
	if (sni_authority_host(c->authority, strlen(c->authority), host, sizeof(host)) || strcmp(host, ex->info->sni))
		exchange_refuse(ex, &g->req, 421, REASON_HOST_MISMATCH,
				"request refused: its authority is not the server name this connection was opened for");
	else
		exchange_request(ex, &g->req, g->json.data, g->json.len);
	if (!ex->blocked) {
		/* metadata values with findings, redacted like header values */
		exchange_rewrite_head(ex, &g->req);
		if (ex->new_target && (ex->new_target_len != strlen(c->path) ||
				       memcmp(ex->new_target, c->path, ex->new_target_len))) {
			ex->blocked = true;
			ex->action = "block";
			ex->block_status = 403;
			snprintf(ex->block_message, sizeof(ex->block_message),
				 "request blocked: a value to redact is in the gRPC method path; rule %s",
				 ex->rule ? ex->rule : "default:pii");
		}
	}
	ex->stream = strstr(c->path, "/StreamGenerateContent") != NULL;
	if (ex->blocked) {
		ex->status = ex->block_status;
		return answer_error(g, grpccall_status_for(ex->block_status), ex->block_message) ?: 1;
	}
	if (ex->new_body && (rc = rewrite_request(g, ex->new_body, ex->new_body_len))) {
		if (rc == -ENOMEM)
			return rc;
		ex->blocked = true;
		ex->action = "block";
		ex->status = 403;
		ex->error = "redaction_failed";
		return answer_error(g, GS_PERMISSION_DENIED, "request blocked: its sensitive values could not be redacted") ?: 1;
	}
	return 0;
}

/* ---- the answer ---- */


struct answer_walk {
	struct grpccall *g;
	const uint8_t *msg;
	struct protowalk_edit *e;
	size_t n, cap;
	size_t *repl_off;
};

static int add_edit(struct answer_walk *w, size_t off, size_t repl_off, size_t repl_len)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 8;
		struct protowalk_edit *e = realloc(w->e, cap * sizeof(*e));
		size_t *o = e ? realloc(w->repl_off, cap * sizeof(*o)) : NULL;
		if (e)
			w->e = e;
		if (!o)
			return -ENOMEM;
		w->repl_off = o;
		w->cap = cap;
	}
	w->repl_off[w->n] = repl_off;
	w->e[w->n++] = (struct protowalk_edit){ off, NULL, repl_len };
	return 0;
}

/* An answer rule (policy `output_finding:`) on one text that is not part
 * of the candidates' stream: redacted whole, counted in the event. */
static int redact_whole(struct grpccall *g, const char *t, size_t n)
{
	struct exchange *ex = g->ex;
	struct answer *a = answer_new(ex->xc->scratch, &ex->answer_rp);
	int rc;

	if (!a)
		return -ENOMEM;
	rc = answer_feed(a, t, n, &g->stage);
	if (rc == 0)
		rc = answer_finish(a, &g->stage);
	for (int k = 0; k < FINDING__COUNT && rc == 0; k++)
		ex->ans_counts[k] += answer_counts(a)[k];
	answer_free(a);
	return rc;
}

/* One text of the answer, in the order the HTTP path uses: scanned if it
 * is model text, then the answer rule's redaction, then vault tokens
 * restored. A streamed answer's candidate text is one stream across
 * messages (the call's redactor and restorer hold back what may still
 * grow, released in later messages or a last one before the trailers);
 * any other text is handled whole. */
static int answer_text(struct answer_walk *w, const struct protowalk_field *f)
{
	struct grpccall *g = w->g;
	struct exchange *ex = g->ex;
	const char *t = (const char *)w->msg + f->off;
	size_t tl = f->len;
	bool model_text = !g->known || protowalk_path_is(f, g->known->answer, 4);
	/* StreamGenerateContent: one text across messages; a unary answer's
	 * text is whole in its one message */
	bool stream = g->known && model_text && ex->stream;
	struct detok *d;
	int rc = 0;

	if (ex->out_scan && model_text)
		inspect_stream_feed(ex->out_scan, t, f->len);
	g->stage.len = 0;
	if (ex->redact_answer && model_text) {
		if (stream && !ex->ans && !(ex->ans = answer_new(ex->xc->scratch, &ex->answer_rp)))
			return -ENOMEM;
		rc = stream ? answer_feed(ex->ans, t, tl, &g->stage) : redact_whole(g, t, tl);
		if (rc == ANSWER_OVERRUN) {
			ex->error = "answer_redaction_limit: a value in the answer was longer than the redaction hold-back; call cut";
			return -EPIPE;
		}
		if (rc)
			return rc;
		t = g->stage.data ? g->stage.data : "";
		tl = g->stage.len;
	}
	size_t before = g->edits_repl.len;
	if (ex->xc->vault && (stream || memmem(t, tl, "[[", 2))) {
		if (stream && !g->ans_detok && !(g->ans_detok = detok_new(ex->xc->vault, false)))
			return -ENOMEM;
		if (!(d = stream ? g->ans_detok : detok_new(ex->xc->vault, false)))
			return -ENOMEM;
		rc = detok_feed(d, t, tl, &g->edits_repl);
		if (!rc && !stream)
			rc = detok_finish(d, &g->edits_repl);
		if (!stream)
			detok_free(d);
	} else {
		rc = buf_append(&g->edits_repl, t, tl) ? -ENOMEM : 0;
	}
	if (rc)
		return rc;
	size_t n = g->edits_repl.len - before;
	if (n == f->len && !memcmp(g->edits_repl.data + before, w->msg + f->off, n)) {
		g->edits_repl.len = before;
		return 0;
	}
	return add_edit(w, f->off, before, n);
}

/* Text the call's restorer still holds at the end (a "[[" that never
 * became a token) goes out in a last message of the same shape. */
static int answer_flush(struct grpccall *g)
{
	struct buf t = { .secret = true }, m = { .secret = true }, l1 = { 0 }, l2 = { 0 };
	int rc;

	struct exchange *ex = g->ex;

	if (!g->known || !ex->stream)
		return 0;
	/* the redactor's held text, through the restorer, then the restorer's */
	g->stage.len = 0;
	rc = ex->ans ? answer_finish(ex->ans, &g->stage) : 0;
	if (!rc && g->stage.len)
		rc = g->ans_detok ? detok_feed(g->ans_detok, g->stage.data, g->stage.len, &t) :
				    buf_append(&t, g->stage.data, g->stage.len) ? -ENOMEM : 0;
	if (!rc && g->ans_detok)
		rc = detok_finish(g->ans_detok, &t);
	detok_free(g->ans_detok);
	g->ans_detok = NULL;
	if (!rc && t.len) {
		/* candidates { content { parts { text } } }, built inside out */
		struct buf *in = &t, *o = &l1;
		for (int level = 3; level >= 0 && !rc; level--) {
			uint8_t tag = (uint8_t)(g->known->answer[level] << 3 | 2);
			uint8_t v[10];
			size_t k = 0;
			for (uint64_t x = in->len; ; x >>= 7) {
				v[k++] = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
				if (x <= 0x7f)
					break;
			}
			o->len = 0;
			rc = buf_append(o, &tag, 1) || buf_append(o, v, k) || buf_append(o, in->data, in->len) ? -ENOMEM : 0;
			in = o;
			o = o == &l1 ? &l2 : &l1;
		}
		if (!rc)
			rc = grpc_frame(&m, false, in->data, in->len);
		if (!rc) {
			g->ex->bytes_down += m.len;
			rc = h2_send_data(g->h2, m.data, m.len);
		}
	}
	buf_free(&t);
	buf_free(&m);
	buf_free(&l1);
	buf_free(&l2);
	return rc;
}

static int on_answer_field(void *arg, const struct protowalk_field *f)
{
	struct answer_walk *w = arg;
	struct provider_usage *u = &w->g->ex->usage;
	const struct llm_schema *k = w->g->known;

	if (f->kind == PROTOWALK_TEXT)
		return answer_text(w, f);
	if (f->kind != PROTOWALK_VARINT || !w->g->known || f->value > INT32_MAX)
		return 0;
	if (protowalk_path_is(f, k->usage_prompt, 2))
		u->prompt = (int64_t)f->value;
	else if (protowalk_path_is(f, k->usage_out, 2))
		u->completion = (int64_t)f->value;
	else if (protowalk_path_is(f, k->usage_cached, 2))
		u->cached = (int64_t)f->value;
	return 0;
}

/* One whole answer message: restored and sent on at once. A message the
 * walker cannot read goes on as it came (the answer is the provider's;
 * nothing of the user's can be in it unrestored). */
static int on_resp_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
	struct grpccall *g = arg;
	struct answer_walk w = { .g = g };
	int rc;

	g->dec.len = 0;
	g->edits_repl.len = 0;
	g->out.len = 0;
	rc = grpc_message_decode(g->resp_enc, strlen(g->resp_enc), compressed, msg, len, g->max_msg, &g->dec);
	if (rc == 0) {
		w.msg = (const uint8_t *)g->dec.data;
		rc = protowalk(w.msg, g->dec.len, on_answer_field, &w);
		if (rc == -ENOMEM)
			goto out;
		if (rc == 0 && w.n) {
			for (size_t i = 0; i < w.n; i++)
				w.e[i].repl = g->edits_repl.data + w.repl_off[i];
			struct buf m = { .secret = true };
			rc = protowalk_rewrite(w.msg, g->dec.len, w.e, w.n, &m);
			if (!rc)
				rc = grpc_frame(&g->out, false, m.data ? m.data : "", m.len);
			buf_free(&m);
			if (rc)
				goto out;
		}
	}
	if (!g->out.len && (rc = grpc_frame(&g->out, compressed, msg, len)))
		goto out;
	g->ex->bytes_down += g->out.len;
	rc = h2_send_data(g->h2, g->out.data, g->out.len);
out:
	free(w.e);
	free(w.repl_off);
	return rc;
}

/* ---- the upstream HTTP/2 session ---- */

static int field_add(struct grpccall *g, const uint8_t *name, size_t nl, const uint8_t *v, size_t vl)
{
	if (g->nfields >= GRPC_MAX_FIELDS || g->fields.len + nl + vl + 2 > GRPC_MAX_FIELD_BYTES)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (buf_append(&g->fields, name, nl) || buf_append(&g->fields, "", 1) ||
	    buf_append(&g->fields, v, vl) || buf_append(&g->fields, "", 1))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	g->nfields++;
	return 0;
}

static int up_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
			const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
	struct grpccall *g = ((struct grpccall_session *)user)->g;
	(void)s; (void)flags;
	if (!g || f->hd.stream_id != g->sid)
		return 0;
	/* framing is the agent's own on the client side */
	if ((nl == 14 && !memcmp(name, "content-length", 14)))
		return 0;
	if (nl == 13 && !memcmp(name, "grpc-encoding", 13)) {
		size_t n = vl < sizeof(g->resp_enc) - 1 ? vl : sizeof(g->resp_enc) - 1;
		memcpy(g->resp_enc, value, n);
		g->resp_enc[n] = 0;
	}
	if (nl == 11 && !memcmp(name, "grpc-status", 11) && vl && vl < 4)
		g->grpc_status = atoi((const char *)value);
	return field_add(g, name, nl, value, vl);
}

/* The received block as fields for h2.c (pointers into g->fields). */
static size_t fields_out(struct grpccall *g, struct h2_field *out)
{
	const char *p = g->fields.data;
	for (size_t i = 0; i < g->nfields; i++) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);
		out[i] = (struct h2_field){ p, p + nl + 1, nl, vl };
		p += nl + vl + 2;
	}
	return g->nfields;
}

static int up_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct grpccall *g = ((struct grpccall_session *)user)->g;
	struct h2_field fl[GRPC_MAX_FIELDS];
	int rc = 0;
	(void)s;

	if (!g || f->hd.stream_id != g->sid || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	size_t n = fields_out(g, fl);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (!g->head_sent) {
		if (f->headers.cat != NGHTTP2_HCAT_RESPONSE)
			return 0;          /* 1xx: not forwarded */
		g->ex->status = 200;
		for (size_t i = 0; i < n; i++)
			if (!strcmp(fl[i].name, ":status"))
				g->ex->status = atoi(fl[i].value);
		rc = h2_send_head(g->h2, fl, n, end);
		g->head_sent = true;
		g->trailers_sent = end;
	} else if (end && !g->trailers_sent) {
		/* a message cut short by the trailers is an error the client must see */
		rc = grpc_reader_idle(&g->rd) ? answer_flush(g) : -EPROTO;
		if (!rc)
			rc = h2_send_trailers(g->h2, fl, n);
		g->trailers_sent = true;
	}
	g->fields.len = 0;
	g->nfields = 0;
	if (rc)
		g->failed = true;
	return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int up_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
	struct grpccall *g = ((struct grpccall_session *)user)->g;
	(void)s; (void)flags;
	if (!g || id != g->sid || !g->head_sent)
		return 0;
	if (grpc_reader_feed(&g->rd, data, len, on_resp_msg, g)) {
		g->failed = true;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int up_on_close(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
	struct grpccall *g = ((struct grpccall_session *)user)->g;
	(void)s;
	if (g && id == g->sid) {
		g->closed = true;
		if (err != NGHTTP2_NO_ERROR)
			g->failed = true;
	}
	return 0;
}

/* A streamed request: what was decided so far; deferred until more is
 * (the relay resumes it), EOF once the client ended and all is out. */
static ssize_t up_body_queued(struct grpccall *g, uint8_t *buf, size_t length, uint32_t *flags)
{
	size_t avail = g->upq.len - g->upq_off;
	size_t n = avail < length ? avail : length;

	if (!n && !g->up_end) {
		g->up_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	memcpy(buf, g->upq.data + g->upq_off, n);
	if (!g->head_sent && !g->unreplayable &&
	    (g->sent.len + n > g->max_msg || buf_append(&g->sent, buf, n)))
		g->unreplayable = true;
	g->upq_off += n;
	if (g->upq_off == g->upq.len)
		g->upq.len = g->upq_off = 0;
	if (!g->upq.len && g->up_end)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static ssize_t up_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
		       nghttp2_data_source *src, void *user)
{
	struct grpccall *g = ((struct grpccall_session *)user)->g;
	if (g->streaming || g->upq.len || g->up_end)
		return up_body_queued(g, buf, length, flags);
	const uint8_t *body = g->fwd.len ? (const uint8_t *)g->fwd.data : g->call->body;
	size_t total = g->fwd.len ? g->fwd.len : g->call->body_len;
	size_t *off = src->ptr;
	size_t n = total - *off < length ? total - *off : length;
	(void)s; (void)id;
	memcpy(buf, body + *off, n);
	*off += n;
	if (*off == total)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int up_flush(struct grpccall *g, uint64_t deadline)
{
	const uint8_t *p;
	ssize_t n;

	g->wbuf.len = 0;
	while ((n = nghttp2_session_mem_send(g->sess->s, &p)) > 0)
		if (buf_append(&g->wbuf, p, (size_t)n))
			return -ENOMEM;
	if (n < 0)
		return -EPROTO;
	return g->wbuf.len ? g->io->write(g->io->arg, g->wbuf.data, g->wbuf.len, deadline) : 0;
}

static int up_session(struct grpccall_session **out)
{
	nghttp2_session_callbacks *cb;
	struct grpccall_session *sess = calloc(1, sizeof(*sess));
	int rc;

	if (!sess || nghttp2_session_callbacks_new(&cb)) {
		free(sess);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_header_callback(cb, up_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, up_on_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, up_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, up_on_close);
	rc = nghttp2_session_client_new(&sess->s, cb, sess);
	nghttp2_session_callbacks_del(cb);
	if (rc || nghttp2_submit_settings(sess->s, NGHTTP2_FLAG_NONE, NULL, 0)) {
		grpccall_session_free(sess);
		return -ENOMEM;
	}
	*out = sess;
	return 0;
}

/* The client's fields, as they came, after the pseudo-headers ours. */
static int submit_call(struct grpccall *g, size_t *body_off)
{
	const struct h2_grpc_call *c = g->call;
	nghttp2_nv nv[HTTP_MAX_HEADERS + 8];
	const char *ct;
	size_t n = 0, ctl;

#define NV(nm, v, vl) (nghttp2_nv){ (uint8_t *)(nm), (uint8_t *)(v), strlen(nm), (vl), NGHTTP2_NV_FLAG_NONE }
	nv[n++] = NV(":method", "POST", 4);
	nv[n++] = NV(":scheme", "https", 5);
	nv[n++] = NV(":path", c->path, strlen(c->path));
	nv[n++] = NV(":authority", c->authority, strlen(c->authority));
	nv[n++] = NV("te", "trailers", 8);
	if (find_field(c->hdrs, c->hdrs_len, "content-type", &ct, &ctl))
		nv[n++] = NV("content-type", ct, ctl);
#undef NV
	/* headers 0 and 1 are the Host and Content-Type build_head put first */
	for (unsigned i = 2; i < g->req.nheaders && n < sizeof(nv) / sizeof(nv[0]); i++) {
		const struct http_header *hd = &g->req.headers[i];
		nv[n++] = (nghttp2_nv){ (uint8_t *)hd->name, (uint8_t *)hd->value, hd->name_len, hd->value_len,
					NGHTTP2_NV_FLAG_NONE };
	}
	nghttp2_data_provider prd = { .source.ptr = body_off, .read_callback = up_body };
	g->sid = nghttp2_submit_request(g->sess->s, NULL, nv, n, &prd, NULL);
	return g->sid < 0 ? -EPROTO : 0;
}

/* ---- a request read as it arrives (call->streamed) ---- */

static void grpccall_free(struct grpccall *g);

/* The bytes of the whole messages at the start of b; -EMSGSIZE when a
 * prefix announces more than max (checked before anything is held). */
static ssize_t whole_messages(const struct buf *b, size_t max)
{
	size_t off = 0;

	while (b->len - off >= GRPC_PREFIX) {
		const uint8_t *p = (const uint8_t *)b->data + off;
		size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
		if (n > max)
			return -EMSGSIZE;
		if (b->len - off - GRPC_PREFIX < n)
			break;
		off += GRPC_PREFIX + n;
	}
	return (ssize_t)off;
}

/* Takes what the client sent so far (at most about one message more
 * than a whole one: the rest waits in h2.c, within its limit). 0, or
 * -EIO when the client's stream is gone. */
static int body_take(struct grpccall *g)
{
	uint8_t buf[GRPC_READ_CHUNK];

	while (!g->rin_end && g->rin.len < g->max_msg + GRPC_PREFIX) {
		ssize_t n = h2_body_read(g->h2, buf, sizeof(buf));
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return -EIO;
		if (n == 0)
			g->rin_end = true;
		else if (buf_append(&g->rin, buf, (size_t)n))
			return -ENOMEM;
	}
	return 0;
}

/* Waits for the client's first whole message, or the end of its side. */
static int body_first(struct grpccall *g)
{
	uint64_t deadline = loop_now_ms() + g->ex->ag->cfg->idle_timeout_ms;
	int rc;

	for (;;) {
		if ((rc = body_take(g)))
			return rc;
		if (g->rin_end || whole_messages(&g->rin, g->max_msg) != 0)
			return 0;
		struct pollfd p = { .fd = h2_body_fd(g->h2), .events = POLLIN };
		uint64_t now = loop_now_ms();
		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
			g->ex->error = "the client sent no gRPC message";
			return -ETIMEDOUT;
		}
	}
}

static int action_rank(const char *a)
{
	return !a ? 0 : !strcmp(a, "block") ? 4 : !strcmp(a, "redact") ? 3 : !strcmp(a, "warn") ? 2 :
			!strcmp(a, "alert") ? 1 : 0;
}

/* A later batch's decision folded into the call's: findings add up, the
 * strongest action wins (its rule and reason copied: mx goes away). */
static void merge(struct grpccall *g, const struct exchange *mx)
{
	struct exchange *ex = g->ex;

	for (int i = 0; i < FINDING__COUNT; i++)
		ex->counts[i] += mx->counts[i];
	ex->redacted += mx->redacted;
	ex->tokenized |= mx->tokenized;
	if (action_rank(mx->action) <= action_rank(ex->action))
		return;
	ex->action = mx->action;
	snprintf(g->q_rule, sizeof(g->q_rule), "%s", mx->rule ? mx->rule : "");
	snprintf(g->q_reason, sizeof(g->q_reason), "%s", mx->reason ? mx->reason : "");
	ex->rule = mx->rule ? g->q_rule : NULL;
	ex->reason = mx->reason ? g->q_reason : NULL;
}

/* The agent ends a streamed call (a later message refused): the
 * upstream stream is cancelled (its session not kept), the client gets
 * the status in the answer's trailers, or trailers-only. 1. */
static int end_call(struct grpccall *g, int code, const char *msg)
{
	struct exchange *ex = g->ex;
	char status[12], enc[600];
	int rc;

	nghttp2_submit_rst_stream(g->sess->s, NGHTTP2_FLAG_NONE, g->sid, NGHTTP2_CANCEL);
	up_flush(g, loop_now_ms() + 1000);
	g->failed = true;
	ex->blocked = true;
	ex->status = ex->status && ex->status != 200 ? ex->status : 403;
	if (!g->head_sent) {
		g->quiet = false;
		rc = answer_error(g, code, msg);
	} else {
		snprintf(status, sizeof(status), "%d", code);
		pct_encode(msg, enc, sizeof(enc));
		struct h2_field f[] = { FIELD("grpc-status", status), FIELD("grpc-message", enc) };
		g->grpc_status = code;
		rc = answer_flush(g) ?: h2_send_trailers(g->h2, f, 2);
	}
	g->head_sent = g->trailers_sent = true;
	return rc ?: 1;
}

/* One batch of whole messages after the first: decided on its own (the
 * same inspection, policy, redaction and vault as a whole call), then
 * queued for the upstream. 0, 1 when the call was ended, < 0. */
static int decide_more(struct grpccall *g, const char *batch, size_t len)
{
	struct exchange *ex = g->ex, mx;
	struct h2_grpc_call c = *g->call;
	int rc;

	c.body = (const uint8_t *)batch;
	c.body_len = len;
	c.streamed = false;
	exchange_init(&mx, ex->ag, ex->info, ex->xc);
	struct grpccall m = { .ex = &mx, .h2 = g->h2, .call = &c, .io = g->io, .max_msg = g->max_msg,
			      .known = g->known, .quiet = true };
	rc = decide(&m);
	/* the call's metadata was counted with its first batch */
	for (int i = 0; i < FINDING__COUNT; i++)
		if (i != FINDING_INSPECTION_LIMIT)
			mx.counts[i] -= mx.counts[i] < mx.head_counts[i] ? mx.counts[i] : mx.head_counts[i];
	merge(g, &mx);
	ex->bytes_up += len;
	if (rc == 0) {
		const struct buf *f = m.fwd.len ? &m.fwd : NULL;
		rc = buf_append(&g->upq, f ? f->data : batch, f ? f->len : len) ? -ENOMEM : 0;
	} else if (rc > 0) {
		if (mx.blocked) {
			ex->block_status = mx.block_status;
			ex->status = mx.status;
		}
		rc = end_call(g, m.q_code ? m.q_code : GS_PERMISSION_DENIED, m.q_msg[0] ? m.q_msg : "request blocked");
	}
	grpccall_free(&m);
	exchange_free(&mx);
	return rc;
}

/* The client's body fd woke: its whole messages decided and queued, the
 * upstream's DATA resumed. 0, 1 when the call was ended, < 0. */
static int body_more(struct grpccall *g)
{
	int rc = body_take(g);
	ssize_t w;

	if (rc)
		return rc;
	while ((w = whole_messages(&g->rin, g->max_msg)) != 0) {
		if (w < 0)
			return end_call(g, GS_RESOURCE_EXHAUSTED, "gRPC message larger than limits.max_body_bytes");
		rc = decide_more(g, g->rin.data, (size_t)w);
		memmove(g->rin.data, g->rin.data + w, g->rin.len - (size_t)w);
		g->rin.len -= (size_t)w;
		if (rc)
			return rc;
		if ((rc = body_take(g)))
			return rc;
	}
	if (g->rin_end) {
		if (g->rin.len)
			return end_call(g, GS_INTERNAL, "the client ended its side mid-message");
		g->streaming = false;
		g->up_end = true;
	}
	if (g->up_deferred && (g->upq.len > g->upq_off || g->up_end)) {
		g->up_deferred = false;
		nghttp2_session_resume_data(g->sess->s, g->sid);
	}
	return 0;
}

/* Request out, answer back, until the upstream closes the stream. */
static int relay(struct grpccall *g)
{
	const struct config *cfg = g->ex->ag->cfg;
	uint8_t buf[GRPC_READ_CHUNK];
	size_t body_off = 0;
	uint64_t deadline = loop_now_ms() + cfg->upstream_timeout_ms;
	int rc;

	if ((rc = submit_call(g, &body_off)))
		return rc;
	grpc_reader_init(&g->rd, g->max_msg);
	for (;;) {
		if ((rc = up_flush(g, deadline)))
			return rc;
		if (g->closed || g->failed)
			return g->failed ? -EPROTO : 0;
		if (g->streaming) {
			/* the client's next messages and the answer, whichever first */
			int w = g->io->wait(g->io->arg, h2_body_fd(g->h2), deadline);
			if (w < 0)
				return w;
			if (w & 2) {
				if ((rc = body_more(g)))
					return rc > 0 ? 0 : rc;
				deadline = loop_now_ms() + cfg->idle_timeout_ms;
			}
			if (!(w & 1)) {
				if (w == 0) {
					g->ex->error = "upstream stalled";
					return -ETIMEDOUT;
				}
				continue;
			}
		}
		ssize_t n = g->io->read(g->io->arg, buf, sizeof(buf), deadline);
		if (n <= 0) {
			g->ex->error = n == -ETIMEDOUT ? "upstream stalled" : "upstream closed mid-call";
			return n == 0 ? -ECONNRESET : (int)n;
		}
		if (nghttp2_session_mem_recv(g->sess->s, buf, (size_t)n) < 0)
			return -EPROTO;
		/* after the answer's head, a stream may be quiet between messages */
		deadline = loop_now_ms() + (g->head_sent ? cfg->idle_timeout_ms : cfg->upstream_timeout_ms);
	}
}

/* The session kept from an earlier call, if the upstream still takes
 * new streams; else a fresh connection and session. */
static int session_ready(struct grpccall *g, bool *fresh)
{
	const struct grpccall_io *io = g->io;
	struct grpccall_session **sp = io->session;

	*fresh = false;
	if (*sp && nghttp2_session_check_request_allowed((*sp)->s))
		return 0;
	grpccall_session_free(*sp);
	*sp = NULL;
	io->close(io->arg);
	*fresh = true;
	if (io->connect(io->arg, g->ex))
		return -EHOSTUNREACH;
	return up_session(sp);
}

/* A queued request starts over: what left already goes again first. */
static void replay(struct grpccall *g)
{
	size_t rest = g->upq.len - g->upq_off;
	if (!g->sent.len)
		return;
	if (buf_append(&g->sent, g->upq.data + g->upq_off, rest)) {
		g->unreplayable = true;
		return;
	}
	struct buf t = g->upq;
	g->upq = g->sent;
	g->sent = t;
	g->sent.len = 0;
	g->upq_off = 0;
	g->up_deferred = false;
}

/* Forgets what one attempt of the call received. */
static void attempt_reset(struct grpccall *g)
{
	grpc_reader_free(&g->rd);
	g->fields.len = 0;
	g->nfields = 0;
	g->closed = g->failed = g->trailers_sent = false;
	g->resp_enc[0] = 0;
	g->grpc_status = 0;
	g->ex->error = NULL;
}

/* The call over the kept session; a kept connection the server has
 * closed meanwhile (idle timeout) fails before any answer: then once more
 * on a fresh one, as HTTP/1.1 requests are retried on a stale pooled
 * connection. The session survives only a clean call. */
static int upstream_call(struct grpccall *g)
{
	const struct grpccall_io *io = g->io;
	bool fresh;
	int rc;

	for (int attempt = 0;; attempt++) {
		if ((rc = session_ready(g, &fresh)))
			return rc;
		g->ex->upstream_reused = !fresh;
		g->ex->t_first_byte_ms = loop_now_ms();
		g->sess = *io->session;
		g->sess->g = g;
		rc = relay(g);
		g->sess->g = NULL;
		if (rc || g->failed) {
			grpccall_session_free(*io->session);
			*io->session = NULL;
			io->close(io->arg);
			if (!fresh && !g->head_sent && attempt == 0 && !g->unreplayable) {
				replay(g);
				attempt_reset(g);
				continue;
			}
		}
		return rc;
	}
}

static void grpccall_free(struct grpccall *g)
{
	detok_free(g->ans_detok);
	grpc_reader_free(&g->rd);
	buf_free(&g->msgs);
	buf_free(&g->json);
	buf_free(&g->head);
	buf_free(&g->repl);
	buf_free(&g->fwd);
	buf_free(&g->shown);
	buf_free(&g->fields);
	buf_free(&g->dec);
	buf_free(&g->edits_repl);
	buf_free(&g->out);
	buf_free(&g->wbuf);
	buf_free(&g->stage);
	buf_free(&g->rin);
	buf_free(&g->first);
	buf_free(&g->upq);
	buf_free(&g->sent);
	free(g->moff);
	free(g->mlen);
	free(g->refs);
	for (int s = 0; s < SLOT__COUNT; s++)
		free(g->by_slot[s]);
}

static const struct llm_schema *known_method(const char *path)
{
	const char *m = strrchr(path, '/');
	if (!m || (strcmp(m, "/GenerateContent") && strcmp(m, "/StreamGenerateContent")))
		return NULL;
	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
		if (strstr(path, schemas[i].service))
			return &schemas[i];
	return NULL;
}

/* A streamed call: the first whole message(s) become the call decide()
 * sees (a unary call whose client already ended is the whole call, as
 * without streaming); more may follow. */
static int streamed_start(struct grpccall *g, struct h2_grpc_call *whole)
{
	int rc = body_first(g);
	ssize_t w;

	if (rc)
		return rc;
	w = whole_messages(&g->rin, g->max_msg);
	/* all of it when the client ended, or a prefix past the limit
	 * (decide refuses it as for a whole call) */
	size_t n = g->rin_end || w < 0 ? g->rin.len : (size_t)w;
	if (buf_append(&g->first, g->rin.data ? g->rin.data : "", n))
		return -ENOMEM;
	memmove(g->rin.data, g->rin.data + n, g->rin.len - n);
	g->rin.len -= n;
	*whole = *g->call;
	whole->body = (const uint8_t *)(g->first.data ? g->first.data : "");
	whole->body_len = n;
	whole->streamed = false;
	g->call = whole;
	g->streaming = !g->rin_end || g->rin.len;
	if (g->streaming && !g->io->wait)
		return -ENOTSUP;
	return 0;
}

int grpccall_serve(struct exchange *ex, struct h2_stream *h2, const struct h2_grpc_call *call,
		   const struct grpccall_io *io)
{
	struct grpccall g = { .ex = ex, .h2 = h2, .call = call, .io = io, .max_msg = ex->ag->cfg->max_body_bytes,
			      .known = known_method(call->path) };
	struct h2_grpc_call whole;
	int rc;

	/* what the user sent or is answered: no stale copy in freed memory */
	struct buf *held[] = { &g.msgs, &g.json, &g.repl, &g.fwd, &g.shown, &g.head, &g.fields, &g.dec, &g.edits_repl,
			       &g.out, &g.wbuf, &g.stage, &g.rin, &g.first, &g.upq, &g.sent };
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		held[i]->secret = true;
	if (call->streamed && (rc = streamed_start(&g, &whole))) {
		grpccall_free(&g);
		return rc;
	}
	ex->bytes_up = g.call->body_len;
	rc = decide(&g);
	if (!rc && g.streaming) {
		/* the first batch leaves as decided; the rest as it comes */
		const struct buf *f = g.fwd.len ? &g.fwd : &g.first;
		if (buf_append(&g.upq, f->data ? f->data : "", f->len))
			rc = -ENOMEM;
		g.fwd.len = 0;
	}
	if (rc) {
		grpccall_free(&g);
		return rc > 0 ? 0 : rc;
	}
	if (io->begin)
		io->begin(io->arg, ex);
	if (!ex->out_scan && ex->xc->scratch)
		ex->out_scan = inspect_stream_new(ex->xc->scratch);
	rc = upstream_call(&g);
	if (rc == -EHOSTUNREACH) {
		ex->status = 502;
		rc = answer_error(&g, GS_UNAVAILABLE, ex->error ? ex->error : "upstream unreachable");
		grpccall_free(&g);
		return rc;
	}
	/* output findings, answer-rule counts and reason, as for HTTP answers */
	exchange_response_end(ex);
	if (!rc && !g.head_sent) {
		ex->status = 502;
		rc = answer_error(&g, GS_UNAVAILABLE, "upstream ended the call without an answer");
	} else if (!rc && !g.trailers_sent) {
		struct h2_field f[] = { FIELD("grpc-status", "13"),
					FIELD("grpc-message", "upstream ended the call without trailers") };
		rc = h2_send_trailers(h2, f, 2);
	}
	if (g.grpc_status && !ex->reason) {
		snprintf(ex->reason_buf, sizeof(ex->reason_buf), "grpc-status %d", g.grpc_status);
		ex->reason = ex->reason_buf;
	}
	if (rc && !ex->error)
		ex->error = "gRPC call cut short";
	if (rc)
		log_debug("gRPC call to %s cut short: %s", ex->info->sni, strerror(-rc > 0 ? -rc : EIO));
	grpccall_free(&g);
	return rc;
}
