/* classify: TLS ClientHello (sni.c) or plain-HTTP request head (http.c,
 * the proxy's own strict parser) from the first bytes of a connection.
 * What this file must never do: answer "relay" for bytes it could not
 * read, or keep any byte of a request beyond its method, path and host. */
#include <string.h>
#include "net/classify.h"
#include "http.h"
#include "net/sni.h"

/* Whether buf starts like an HTTP/1.x request line: a method token of
 * upper-case letters, a space, then an origin-form or asterisk target.
 * 1 yes, 0 too short to say, -1 no. Deliberately narrower than the RFC's
 * token: this decides only the shape of the refusal and whether the head is
 * worth parsing, never whether a request is forwarded. */
static int looks_like_http(const uint8_t *buf, size_t len)
{
	size_t i = 0;
	while (i < len && i < 16 && buf[i] >= 'A' && buf[i] <= 'Z')
		i++;
	if (i == len)
		return i < 16 ? 0 : -1;
	if (i == 0 || buf[i] != ' ')
		return -1;
	if (i + 1 == len)
		return 0;
	return buf[i + 1] == '/' || buf[i + 1] == '*' ? 1 : -1;
}

static void refuse(struct classify_result *r, enum reason why)
{
	r->kind = CLASSIFY_REFUSE;
	r->reason = why;
}

static void classify_tls(const uint8_t *buf, size_t len, bool final, bool full,
			 struct classify_result *r)
{
	switch (sni_parse(buf, len, r->name, sizeof(r->name))) {
	case SNI_FOUND:
		r->kind = CLASSIFY_TLS;
		return;
	case SNI_NEED_MORE:
		r->name[0] = 0;
		if (full)
			refuse(r, REASON_CLIENTHELLO_INVALID);   /* a hello bigger than any real one */
		else if (final)
			refuse(r, REASON_CLIENTHELLO_TIMEOUT);
		return;
	case SNI_ABSENT:
		r->name[0] = 0;
		refuse(r, REASON_NO_SNI);
		return;
	case SNI_NOT_TLS:                 /* 22 then not 3: no TLS peer to alert */
		r->name[0] = 0;
		r->tls = false;
		refuse(r, REASON_NOT_TLS);
		return;
	default:
		r->name[0] = 0;
		refuse(r, REASON_CLIENTHELLO_INVALID);
		return;
	}
}

static void copy_path(const struct http_request *req, char *out, size_t outlen)
{
	size_t n = 0;
	while (n < req->target_len && n < outlen - 1 && req->target[n] != '?' && req->target[n] != '#')
		n++;
	memcpy(out, req->target, n);
	out[n] = 0;
}

static void classify_http(const uint8_t *buf, size_t len, bool final, bool full,
			  struct classify_result *r)
{
	struct http_request req;
	struct http_limits lim = { .max_head_bytes = len + 1 };
	int hl;

	r->http = true;
	/* The peek buffer bounds the head: a head that does not fit is refused
	 * (431) rather than relayed. The body is never looked at: the request
	 * is refused or relayed whole, never forwarded in part. */
	hl = http_parse_request((const char *)buf, len, &lim, &req);
	if (hl == 0 && !final && !full)
		return;
	if (hl <= 0) {
		refuse(r, REASON_PLAIN_HTTP);
		r->http_status = hl == 0 ? (full ? 431 : 408) : hl == -431 ? 431 : 400;
		return;
	}
	r->kind = CLASSIFY_HTTP;
	if (!req.host || sni_authority_host(req.host, req.host_len, r->name, sizeof(r->name)))
		r->name[0] = 0;
	size_t ml = req.method_len < sizeof(r->method) - 1 ? req.method_len : sizeof(r->method) - 1;
	memcpy(r->method, req.method, ml);
	r->method[ml] = 0;
	copy_path(&req, r->path, sizeof(r->path));
}

void classify_first_flight(const uint8_t *buf, size_t len, bool final, bool full,
			   struct classify_result *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = CLASSIFY_NEED_MORE;
	final = final || full;             /* nothing more will fit: decide now */
	if (len == 0) {
		if (final)
			refuse(r, REASON_CLIENTHELLO_TIMEOUT);
		return;
	}
	if (buf[0] == 22) {                       /* TLS handshake record */
		r->tls = true;
		classify_tls(buf, len, final, full, r);
		return;
	}
	switch (looks_like_http(buf, len)) {
	case 1:
		classify_http(buf, len, final, full, r);
		return;
	case 0:
		if (final)
			refuse(r, REASON_CLIENTHELLO_TIMEOUT);
		return;
	default:
		refuse(r, REASON_NOT_TLS);
		return;
	}
}
