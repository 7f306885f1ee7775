/* proxyhead: explicit-proxy heads (see proxyhead.h). The HTTP framing is
 * http.c's strict parser with proxy_forms; this file owns what that parser
 * leaves to the caller: the authority inside the target, its host syntax
 * and its port, and the rule that a tunnel request carries no body (bytes
 * after a CONNECT head are the tunnel, and a Content-Length there would let
 * the proxy and the agent disagree on where the tunnel starts). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "http.h"
#include "proxy/proxyhead.h"

static bool name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

/* A DNS name: labels of 1..63 name characters, 253 bytes at most. */
static bool valid_name(const char *s, size_t n)
{
	size_t label = 0;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (!name_char((unsigned char)s[i]) || ++label > 63) {
			return false;
		}
	}
	return label > 0;
}

int proxyhead_host(const char *h, size_t n, char *out, bool *is_ip)
{
	unsigned char bin[16];
	char tmp[PROXYHEAD_HOST_MAX];

	*is_ip = false;
	if (n >= 2 && h[0] == '[') {
		if (h[n - 1] != ']' || n - 2 >= INET6_ADDRSTRLEN)
			return -EINVAL;
		memcpy(tmp, h + 1, n - 2);
		tmp[n - 2] = 0;
		if (inet_pton(AF_INET6, tmp, bin) != 1)
			return -EINVAL;
		/* Canonical text, so "[::FFFF:1.2.3.4]" and "[::ffff:1.2.3.4]" compare equal. */
		inet_ntop(AF_INET6, bin, out, PROXYHEAD_HOST_MAX);
		*is_ip = true;
		return 0;
	}
	if (n && h[n - 1] == '.')
		n--;   /* one trailing dot: the same name, fully qualified */
	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		tmp[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
	}
	tmp[n] = 0;
	if (!valid_name(tmp, n))
		return -EINVAL;
	if (inet_pton(AF_INET, tmp, bin) == 1)
		*is_ip = true;
	else if (strspn(tmp, "0123456789.") == n)
		return -EINVAL;   /* "1.2.3", "0x7f.1": forms inet_aton would read as an address */
	memcpy(out, tmp, n + 1);
	return 0;
}

int proxyhead_authority(const char *a, size_t n, uint16_t default_port, char *host,
			uint16_t *port, bool *is_ip)
{
	size_t hl = n;
	const char *colon = NULL;

	/* The port follows the last ':' after any IPv6 literal's ']'. */
	for (size_t i = n; i-- > 0;) {
		if (a[i] == ']')
			break;
		if (a[i] == ':') {
			colon = a + i;
			break;
		}
	}
	if (colon) {
		unsigned long v = 0;
		size_t digits = n - (size_t)(colon + 1 - a);
		hl = (size_t)(colon - a);
		if (digits == 0 || digits > 5)
			return -EINVAL;
		for (size_t i = 0; i < digits; i++) {
			char c = colon[1 + i];
			if (c < '0' || c > '9')
				return -EINVAL;
			v = v * 10 + (unsigned long)(c - '0');
		}
		if (v == 0 || v > 65535)
			return -EINVAL;
		*port = (uint16_t)v;
	} else {
		if (!default_port)
			return -EINVAL;
		*port = default_port;
	}
	return proxyhead_host(a, hl, host, is_ip);
}

/* "scheme://authority[/path...]": the authority, and the scheme's port. */
static int absolute_authority(const char *t, size_t n, struct proxyhead *out)
{
	const char *sep = memchr(t, ':', n);
	size_t sl = (size_t)(sep - t), start = sl + 3, end;
	uint16_t defport;

	if (!sep || n < start || memcmp(sep, "://", 3))
		return -400;
	if (sl == 4 && !strncasecmp(t, "http", 4))
		defport = 80;
	else if (sl == 5 && !strncasecmp(t, "https", 5))
		defport = 443;
	else
		return -400;   /* ftp:// and friends: not an HTTP proxy's business here */
	for (end = start; end < n && t[end] != '/' && t[end] != '?' && t[end] != '#'; end++)
		if (t[end] == '@')
			return -400;   /* userinfo: credentials in a URL, and a confusion vector */
	if (proxyhead_authority(t + start, end - start, defport, out->host, &out->port,
				&out->host_is_ip))
		return -400;
	return 0;
}

int proxyhead_parse(const char *buf, size_t len, size_t max_head, struct proxyhead *out)
{
	struct http_request req;
	struct http_limits lim = { .max_head_bytes = max_head, .max_headers = 64,
				   .proxy_forms = true };
	const struct http_header *h;
	int hl;

	if (!http_head_may_be_complete(buf, len, 0) && len < max_head)
		return 0;
	hl = http_parse_request(buf, len, &lim, &req);
	if (hl <= 0)
		return hl == -413 || hl == -501 ? -400 : hl;
	memset(out, 0, sizeof(*out));
	out->head_len = (size_t)hl;
	if (req.method_len == 7 && !memcmp(req.method, "CONNECT", 7)) {
		out->kind = PROXYHEAD_CONNECT;
		if (req.body != HTTP_BODY_NONE && !(req.body == HTTP_BODY_LENGTH && !req.content_length))
			return -400;
		if (proxyhead_authority(req.target, req.target_len, 0, out->host, &out->port,
					&out->host_is_ip))
			return -400;
	} else {
		out->kind = PROXYHEAD_FORWARD;
		if (req.target[0] == '/' || req.target[0] == '*')
			return -400;   /* origin-form: not a request a proxy can route */
		if (absolute_authority(req.target, req.target_len, out))
			return -400;
		/* The agent forwards exactly one request per connection and must
		 * know where it ends. */
		if (req.body == HTTP_BODY_CHUNKED)
			return -411;
		out->body_len = req.body == HTTP_BODY_LENGTH ? req.content_length : 0;
	}
	if ((h = http_find_header(req.headers, req.nheaders, "proxy-authorization"))) {
		out->auth = h->value;
		out->auth_len = h->value_len;
	}
	return hl;
}

int proxyhead_connect_request(char *out, size_t cap, const char *host, uint16_t port,
			      const char *auth, size_t auth_len)
{
	bool v6 = strchr(host, ':') != NULL;
	int n = snprintf(out, cap, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n",
			 v6 ? "[" : "", host, v6 ? "]" : "", port, v6 ? "[" : "", host, v6 ? "]" : "",
			 port);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	if (auth) {
		static const char name[] = "Proxy-Authorization: ";
		if ((size_t)n + sizeof(name) - 1 + auth_len + 2 >= cap)
			return -ENOSPC;
		memcpy(out + n, name, sizeof(name) - 1);
		n += (int)sizeof(name) - 1;
		memcpy(out + n, auth, auth_len);
		n += (int)auth_len;
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	if ((size_t)n + 3 > cap)
		return -ENOSPC;
	memcpy(out + n, "\r\n", 3);
	return n + 2;
}

int proxyhead_connect_reply(const char *buf, size_t len, size_t max, int *status,
			    int64_t *body_len)
{
	struct http_response resp;
	struct http_limits lim = { .max_head_bytes = max, .max_headers = 64 };
	int hl;

	if (!http_head_may_be_complete(buf, len, 0) && len < max)
		return 0;
	hl = http_parse_response(buf, len, &lim, "CONNECT", 7, &resp);
	if (hl < 0)
		return -EPROTO;
	if (hl > 0) {
		*status = resp.status;
		if (body_len)
			*body_len = resp.body == HTTP_BODY_NONE ? 0 :
				    resp.body == HTTP_BODY_LENGTH ? (int64_t)resp.content_length : -1;
	}
	return hl;
}

int proxyhead_close_after(const char *buf, size_t head_len, char *out, size_t cap)
{
	static const char conn[] = "Connection: close\r\n\r\n";

	if (head_len < 2 || head_len - 2 + sizeof(conn) > cap)
		return -ENOSPC;
	memcpy(out, buf, head_len - 2);   /* all but the final CRLF */
	memcpy(out + head_len - 2, conn, sizeof(conn) - 1);
	return (int)(head_len - 2 + sizeof(conn) - 1);
}
