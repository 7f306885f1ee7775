/* jsonrpc: JSON-RPC 2.0 message shapes for MCP over HTTP (see jsonrpc.h).
 * One json_scan pass per body; state lives on the stack. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "proxy/jsonrpc.h"
#include "proxy/sse.h"

/* One message of a body while it is scanned. */
struct msg {
	bool v2;                        /* "jsonrpc": "2.0" */
	bool has_id;
	char method[JSONRPC_METHOD_MAX];
	char name[JSONRPC_NAME_MAX];
	char id[JSONRPC_ID_MAX];
};

struct req_scan {
	struct jsonrpc_request *out;
	bool batch;
	bool have_cur;
	uint32_t cur_index;
	struct msg cur;
	struct json_text tmp;
};

bool jsonrpc_method_audited(const char *m)
{
	return !strcmp(m, "tools/call") || !strcmp(m, "resources/read") || !strcmp(m, "prompts/get");
}

static bool key_is(const struct json_path_elem *e, const char *lit)
{
	return e->key && json_raw_equals(e->key, e->key_len, lit);
}

/* Decoded string s into out (bounded, control characters as '?', never a
 * cut UTF-8 sequence at the end). Returns -ENOMEM or -EINVAL. */
static int copy_text(struct json_text *tmp, const char *doc, const struct json_string *s, char *out,
		     size_t cap)
{
	int ret = json_decode(doc + s->off, s->len, tmp);
	size_t n;
	if (ret)
		return ret;
	n = tmp->len < cap - 1 ? tmp->len : cap - 1;
	if (n < tmp->len)
		while (n > 0 && ((unsigned char)tmp->data[n] & 0xC0) == 0x80)
			n--;   /* do not keep the head of a cut sequence */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tmp->data[i];
		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = 0;
	return 0;
}

/* A method name is a short token: anything else is kept as "invalid", so a
 * hostile client cannot write arbitrary bytes into the audit trail. */
static void set_method(struct msg *m, const char *v)
{
	size_t n = strlen(v);
	bool ok = n > 0 && n < sizeof(m->method);
	for (size_t i = 0; ok && i < n; i++) {
		char c = v[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '/' || c == '_' || c == '-' || c == '.' || c == '$';
	}
	snprintf(m->method, sizeof(m->method), "%s", ok ? v : "invalid");
}

/* The id token as it appears (a number, or a string with its quotes and
 * escapes, already validated by json_scan); too long = null. */
static void set_id(struct msg *m, const char *doc, const struct json_string *s)
{
	bool str = s->kind == JSON_STRING;
	m->has_id = s->kind != JSON_NULL;
	if (s->kind != JSON_STRING && s->kind != JSON_NUMBER) {
		snprintf(m->id, sizeof(m->id), "null");
		return;
	}
	if (s->len + 3 > sizeof(m->id)) {
		snprintf(m->id, sizeof(m->id), "null");
		return;
	}
	snprintf(m->id, sizeof(m->id), "%s%.*s%s", str ? "\"" : "", (int)s->len, doc + s->off,
		 str ? "\"" : "");
}

static void commit(struct req_scan *rs)
{
	struct jsonrpc_request *o = rs->out;
	struct msg *m = &rs->cur;
	if (!rs->have_cur || !m->v2)
		goto reset;
	o->messages++;
	if (m->has_id)
		o->requests++;
	bool audited = m->method[0] && jsonrpc_method_audited(m->method);
	/* the first audited message wins; else the first message */
	if ((audited && !o->audited) || o->messages == 1) {
		o->audited = audited;
		o->has_id = m->has_id;
		memcpy(o->method, m->method, sizeof(o->method));
		memcpy(o->name, m->name, sizeof(o->name));
		memcpy(o->id, m->id, sizeof(o->id));
	}
reset:
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "null");
	rs->have_cur = false;
}

static int on_req(void *arg, const char *doc, const struct json_string *s)
{
	struct req_scan *rs = arg;
	const struct json_path *p = s->path;
	unsigned base = rs->batch ? 1 : 0;
	char buf[JSONRPC_NAME_MAX];
	int ret;

	if (s->is_key || p->depth <= base)
		return 0;
	if (rs->batch && (!rs->have_cur || p->elem[0].index != rs->cur_index)) {
		commit(rs);
		rs->cur_index = p->elem[0].index;
	}
	rs->have_cur = true;
	const struct json_path_elem *k = &p->elem[base];
	if (p->depth == base + 1) {
		if (key_is(k, "jsonrpc"))
			rs->cur.v2 = s->kind == JSON_STRING && json_raw_equals(doc + s->off, s->len, "2.0");
		else if (key_is(k, "method") && s->kind == JSON_STRING) {
			if ((ret = copy_text(&rs->tmp, doc, s, buf, sizeof(buf))))
				return ret;
			set_method(&rs->cur, buf);
		} else if (key_is(k, "id"))
			set_id(&rs->cur, doc, s);
	} else if (p->depth == base + 2 && key_is(k, "params") && s->kind == JSON_STRING &&
		   (key_is(&p->elem[base + 1], "name") || key_is(&p->elem[base + 1], "uri"))) {
		if ((ret = copy_text(&rs->tmp, doc, s, rs->cur.name, sizeof(rs->cur.name))))
			return ret;
	}
	return 0;
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

int jsonrpc_parse_request(const char *body, size_t len, struct jsonrpc_request *out)
{
	struct req_scan rs = { .out = out };
	const char *p = skip_ws(body, body + len);
	int ret;

	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "null");
	snprintf(rs.cur.id, sizeof(rs.cur.id), "null");
	rs.batch = p < body + len && *p == '[';
	ret = json_scan(body, len, on_req, &rs);
	if (ret == 0)
		commit(&rs);
	json_text_free(&rs.tmp);
	out->batch = rs.batch;
	if (ret)
		return ret == -E2BIG || ret == -ENOMEM ? ret : -EINVAL;
	return out->messages ? 0 : -EINVAL;
}

/* ------------------------------------------------------------ responses */

struct res_scan {
	struct buf *text;
	struct jsonrpc_result *res;
	bool batch;
	bool have_id;
	struct json_text tmp;
};

static int on_res(void *arg, const char *doc, const struct json_string *s)
{
	struct res_scan *rs = arg;
	const struct json_path *p = s->path;
	unsigned base = rs->batch ? 1 : 0;
	int ret;

	if (s->is_key) {
		/* a key of the message object itself: the path is the object's */
		if (p->depth == base && (json_raw_equals(doc + s->off, s->len, "result") ||
					 json_raw_equals(doc + s->off, s->len, "error")))
			rs->res->responses++;
		return 0;
	}
	if (p->depth == base + 1 && key_is(&p->elem[base], "id") && !rs->have_id) {
		struct msg m;
		set_id(&m, doc, s);
		memcpy(rs->res->id, m.id, sizeof(m.id));
		rs->have_id = true;
		return 0;
	}
	if (p->depth <= base + 1 || !(key_is(&p->elem[base], "result") || key_is(&p->elem[base], "error")))
		return 0;
	if (p->depth == base + 2 && key_is(&p->elem[base + 1], "isError") && s->kind == JSON_TRUE)
		rs->res->tool_error = true;
	if (s->kind != JSON_STRING)
		return 0;
	if ((ret = json_decode(doc + s->off, s->len, &rs->tmp)))
		return ret;
	if (buf_append(rs->text, rs->tmp.data, rs->tmp.len) || buf_append(rs->text, "\n", 1))
		return -ENOMEM;
	return 0;
}

static int scan_doc(struct res_scan *rs, const char *doc, size_t len)
{
	const char *p = skip_ws(doc, doc + len);
	int ret;
	if (p == doc + len)
		return 0;   /* an empty answer (202 Accepted, keep-alive comment) */
	rs->batch = *p == '[';
	ret = json_scan(doc, len, on_res, rs);
	return ret == -ENOMEM ? ret : ret ? -EINVAL : 0;
}

static int on_sse(void *arg, const char *event, size_t event_len, const char *data, size_t data_len)
{
	(void)event;
	(void)event_len;
	return scan_doc(arg, data, data_len);
}

int jsonrpc_result_text(const char *body, size_t len, bool sse, struct buf *text,
			struct jsonrpc_result *res)
{
	struct res_scan rs = { .text = text, .res = res };
	int ret;

	memset(res, 0, sizeof(*res));
	snprintf(res->id, sizeof(res->id), "null");
	if (!sse) {
		ret = scan_doc(&rs, body, len);
	} else {
		/* each event is bounded by the whole body, which the caller bounds */
		struct sse_parser *sp = sse_new(len ? len : 1);
		if (!sp)
			return -ENOMEM;
		ret = sse_feed(sp, body, len, on_sse, &rs);
		/* a last event without its blank line still reaches the client */
		if (!ret)
			ret = sse_feed(sp, "\n\n", 2, on_sse, &rs);
		sse_free(sp);
		if (ret == -E2BIG)
			ret = -EINVAL;
	}
	json_text_free(&rs.tmp);
	return ret;
}

/* ------------------------------------------------------------ replies */

static const char *id_or_null(const char *id)
{
	return id && id[0] ? id : "null";
}

int jsonrpc_write_error(struct buf *out, const char *id, int code, const char *msg)
{
	char head[160];
	int n = snprintf(head, sizeof(head), "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":%d,\"message\":\"",
			 id_or_null(id), code);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EINVAL;
	if (buf_append(out, head, (size_t)n) || json_encode(msg, strlen(msg), out) ||
	    buf_append(out, "\"}}", 3))
		return -ENOMEM;
	return 0;
}

int jsonrpc_write_error_result(struct buf *out, const char *id, const char *msg, bool sse)
{
	char head[200];
	int n = snprintf(head, sizeof(head),
			 "%s{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"",
			 sse ? "event: message\ndata: " : "", id_or_null(id));
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EINVAL;
	if (buf_append(out, head, (size_t)n) || json_encode(msg, strlen(msg), out))
		return -ENOMEM;
	const char *tail = sse ? "\"}],\"isError\":true}}\n\n" : "\"}],\"isError\":true}}";
	return buf_append(out, tail, strlen(tail)) ? -ENOMEM : 0;
}

void jsonrpc_session_id(const char *v, size_t n, char out[JSONRPC_SESSION_MAX])
{
	out[0] = 0;
	if (!n || n >= JSONRPC_SESSION_MAX)
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e)
			return;
	memcpy(out, v, n);
	out[n] = 0;
}
