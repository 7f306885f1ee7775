/* http: HTTP/1.1 framing (see http.h). Owns the decision of where a message
 * ends; must never allocate, do I/O, log, or accept a framing that another
 * implementation could read differently (RFC 9112 section 11.2: request
 * smuggling). Rules that matter for that, and why:
 *  - bare LF, bare CR, NUL and other controls in the head are rejected
 *    (some servers end lines at LF, some do not);
 *  - obs-fold and whitespace between a field name and ':' are rejected
 *    (RFC 9112 5.1/5.2: a proxy MUST reject the latter);
 *  - Content-Length with Transfer-Encoding is rejected, never "TE wins":
 *    we re-frame the body ourselves, and the server behind us may disagree;
 *  - Content-Length must be digits only; repeated values must be identical;
 *    a comma list ("5, 5") is rejected;
 *  - Transfer-Encoding must end in exactly one "chunked"; any other coding
 *    is 501 (we cannot inspect it and we drop the header when re-framing);
 *    HTTP/1.0 messages with Transfer-Encoding are rejected (RFC 9112 6.1);
 *  - more than one Host, or Host with characters outside RFC 3986
 *    authority syntax, is rejected (RFC 9112 3.2).
 * Every function is stateless apart from struct http_chunked, so a caller
 * re-parses a head from the start when more bytes arrive; the head is
 * bounded by max_head_bytes, which bounds that work. */
#include "http.h"

#include <errno.h>
#include <string.h>

/* Character classes, one table lookup per byte. */
#define C_TCHAR  0x01   /* RFC 9110 token */
#define C_FVAL   0x02   /* field-value byte: VCHAR, obs-text, SP, HTAB */
#define C_TARGET 0x04   /* request-target byte: VCHAR */
#define C_HOST   0x08   /* RFC 3986 authority without userinfo */
#define C_HEX    0x10

static const unsigned char cls[256] = {
	['\t'] = C_FVAL,
	[' '] = C_FVAL,
	['!'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['"'] = C_FVAL | C_TARGET,
	['#'] = C_TCHAR | C_FVAL | C_TARGET,
	['$'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['%'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['&'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['\''] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['('] = C_FVAL | C_TARGET | C_HOST,
	[')'] = C_FVAL | C_TARGET | C_HOST,
	['*'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['+'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	[','] = C_FVAL | C_TARGET | C_HOST,
	['-'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['.'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['/'] = C_FVAL | C_TARGET,
	['0' ... '9'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST | C_HEX,
	[':'] = C_FVAL | C_TARGET | C_HOST,
	[';'] = C_FVAL | C_TARGET | C_HOST,
	['<'] = C_FVAL | C_TARGET,
	['='] = C_FVAL | C_TARGET | C_HOST,
	['>'] = C_FVAL | C_TARGET,
	['?'] = C_FVAL | C_TARGET,
	['@'] = C_FVAL | C_TARGET,
	['A' ... 'F'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST | C_HEX,
	['G' ... 'Z'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['['] = C_FVAL | C_TARGET | C_HOST,
	['\\'] = C_FVAL | C_TARGET,
	[']'] = C_FVAL | C_TARGET | C_HOST,
	['^'] = C_TCHAR | C_FVAL | C_TARGET,
	['_'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['`'] = C_TCHAR | C_FVAL | C_TARGET,
	['a' ... 'f'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST | C_HEX,
	['g' ... 'z'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	['{'] = C_FVAL | C_TARGET,
	['|'] = C_TCHAR | C_FVAL | C_TARGET,
	['}'] = C_FVAL | C_TARGET,
	['~'] = C_TCHAR | C_FVAL | C_TARGET | C_HOST,
	[0x80 ... 0xff] = C_FVAL,
};

/* Word-at-a-time scanning (SWAR, portable C): values and targets are most
 * of a head's bytes, and one table lookup per byte was the hot spot.
 * ONES * n broadcasts a byte; the tests are exact as booleans. */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* Any byte < n (n <= 128): the lowest such byte always wraps to >= 0x80. */
#define HAS_LESS(w, n) (((w) - ONES * (n)) & ~(w) & HIGHS)
#define HAS_BYTE(w, b) HAS_LESS((w) ^ (ONES * (b)), 1)

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* Advance over field-value bytes (C_FVAL): stop at the first other byte or e. */
static const unsigned char *scan_fval(const unsigned char *p, const unsigned char *e)
{
	for (;;) {
		/* Fast path: no control byte and no DEL in 8 bytes. HTAB is
		 * valid but takes the byte loop for those 8 bytes. */
		while (e - p >= 8) {
			uint64_t w = load64(p);
			if (HAS_LESS(w, 0x20) | HAS_BYTE(w, 0x7f))
				break;
			p += 8;
		}
		const unsigned char *lim = e - p > 8 ? p + 8 : e;
		while (p < lim && (cls[*p] & C_FVAL))
			p++;
		if (p < lim || p == e)
			return p;
	}
}

/* Advance over request-target bytes (VCHAR: 0x21..0x7e). */
static const unsigned char *scan_target(const unsigned char *p, const unsigned char *e)
{
	while (e - p >= 8) {
		uint64_t w = load64(p);
		/* b >= 0x7f: b or b+1 has the high bit (carries only leave
		 * 0xff bytes, which are caught themselves). */
		if (HAS_LESS(w, 0x21) | ((w | (w + ONES)) & HIGHS))
			break;
		p += 8;
	}
	while (p < e && (cls[*p] & C_TARGET))
		p++;
	return p;
}

static inline unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* a[0..n) equals the lowercase constant b (n == strlen(b)), ignoring case. */
static bool ci_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != (unsigned char)b[i])
			return false;
	return true;
}

/* Both sides untrusted: fold both. */
static bool ci_eq2(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

static bool name_is(const struct http_header *h, const char *lc, size_t n)
{
	return h->name_len == n && ci_eq(h->name, lc, n);
}
#define NAME_IS(h, lit) name_is((h), lit, sizeof(lit) - 1)

static bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Iterate the elements of a comma-separated list, OWS trimmed. Empty
 * elements are reported too (len 0), so callers can refuse them. */
struct list_iter { const char *p, *end; };

static bool list_next(struct list_iter *it, const char **el, size_t *el_len)
{
	if (it->p == NULL)
		return false;
	const char *s = it->p, *comma = memchr(s, ',', (size_t)(it->end - s));
	const char *e = comma ? comma : it->end;
	it->p = comma ? comma + 1 : NULL;
	while (s < e && is_ows((unsigned char)*s))
		s++;
	while (e > s && is_ows((unsigned char)e[-1]))
		e--;
	*el = s;
	*el_len = (size_t)(e - s);
	return true;
}

static bool list_has(const char *v, size_t n, const char *tok, size_t tok_len)
{
	struct list_iter it = { v, v + n };
	const char *el;
	size_t el_len;
	while (list_next(&it, &el, &el_len))
		if (el_len == tok_len && ci_eq(el, tok, tok_len))
			return true;
	return false;
}

const struct http_header *http_find_header(const struct http_header *h, unsigned n,
					   const char *name)
{
	size_t len = strlen(name);   /* trusted constant from our own code */
	for (unsigned i = 0; i < n; i++) {
		if (h[i].name_len != len)
			continue;
		if (ci_eq2(h[i].name, name, len))
			return &h[i];
	}
	return NULL;
}

bool http_header_has_token(const struct http_header *h, const char *token)
{
	if (h == NULL)
		return false;
	size_t tl = strlen(token);
	struct list_iter it = { h->value, h->value + h->value_len };
	const char *el;
	size_t el_len;
	while (list_next(&it, &el, &el_len)) {
		if (el_len == tl && ci_eq2(el, token, tl))
			return true;
	}
	return false;
}

/* ---- shared head machinery ------------------------------------------- */

/* Framing facts collected while scanning header lines. */
struct framing {
	bool cl_seen, te_seen, te_last_chunked, te_other, close, keep_alive;
	unsigned te_chunked;
	uint64_t cl;
};

/* Errors from helpers are reported as these and mapped per message kind. */
#define E_BAD      (-400)
#define E_TOOBIG   (-431)
#define E_CODING   (-501)
#define E_VERSION  (-505)

static void limits_get(const struct http_limits *lim, size_t *head, unsigned *nhdr, uint64_t *body)
{
	*head = HTTP_DEFAULT_MAX_HEAD_BYTES;
	*nhdr = HTTP_DEFAULT_MAX_HEADERS;
	*body = UINT64_MAX;
	if (lim) {
		if (lim->max_head_bytes)
			*head = lim->max_head_bytes;
		if (lim->max_headers)
			*nhdr = lim->max_headers;
		if (lim->max_body_bytes)
			*body = lim->max_body_bytes;
	}
	if (*nhdr > HTTP_MAX_HEADERS)
		*nhdr = HTTP_MAX_HEADERS;
}

/* Content-Length value: 1*DIGIT, no sign, no list, no overflow; a repeat
 * must carry the same number (RFC 9110 8.6 allows rejecting otherwise). */
static int parse_cl(struct framing *f, const char *v, size_t n)
{
	uint64_t x = 0;
	if (n == 0)
		return E_BAD;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)v[i] - '0';
		if (d > 9)
			return E_BAD;
		if (x > (UINT64_MAX - d) / 10)
			return E_BAD;
		x = x * 10 + d;
	}
	if (f->cl_seen && f->cl != x)
		return E_BAD;
	f->cl_seen = true;
	f->cl = x;
	return 0;
}

/* Transfer-Encoding lines form one list across repeated fields. Each element
 * must be a bare token (no parameters: chunked takes none, and we support
 * no other coding). Final verdict in framing_finish(). */
static int parse_te(struct framing *f, const char *v, size_t n)
{
	struct list_iter it = { v, v + n };
	const char *el;
	size_t el_len;
	f->te_seen = true;
	while (list_next(&it, &el, &el_len)) {
		if (el_len == 0)
			return E_BAD;
		for (size_t i = 0; i < el_len; i++)
			if (!(cls[(unsigned char)el[i]] & C_TCHAR))
				return E_BAD;
		if (el_len == 7 && ci_eq(el, "chunked", 7)) {
			f->te_chunked++;
			f->te_last_chunked = true;
		} else {
			f->te_other = true;
			f->te_last_chunked = false;
		}
	}
	return 0;
}

static void parse_connection(struct framing *f, const char *v, size_t n)
{
	if (list_has(v, n, "close", 5))
		f->close = true;
	if (list_has(v, n, "keep-alive", 10))
		f->keep_alive = true;
}

/* Resolve body framing. minor is the HTTP minor version. */
static int framing_finish(const struct framing *f, int minor, enum http_body *body)
{
	if (f->te_seen) {
		if (f->cl_seen || minor == 0)
			return E_BAD;
		if (f->te_chunked != 1 || !f->te_last_chunked)
			return E_BAD;
		if (f->te_other)
			return E_CODING;
		*body = HTTP_BODY_CHUNKED;
		return 0;
	}
	*body = f->cl_seen ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	return 0;
}

static bool keep_alive_of(const struct framing *f, int minor)
{
	if (f->close)
		return false;
	return minor == 1 || f->keep_alive;
}

/* "HTTP/1.x" at *pp. Returns 1 parsed, 0 need more, or an error. */
static int parse_version(const unsigned char **pp, const unsigned char *e, int *minor)
{
	static const char pfx[] = "HTTP/";
	const unsigned char *p = *pp;
	for (int i = 0; i < 5; i++, p++) {
		if (p == e)
			return 0;
		if (*p != (unsigned char)pfx[i])
			return E_BAD;
	}
	if (p == e)
		return 0;
	if (*p < '0' || *p > '9')
		return E_BAD;
	int major = *p++ - '0';
	if (p == e)
		return 0;
	if (*p++ != '.')
		return E_BAD;
	if (p == e)
		return 0;
	if (*p < '0' || *p > '9')
		return E_BAD;
	int mi = *p++ - '0';
	/* A second digit would make "HTTP/1.10": malformed, caught by the
	 * caller, which expects SP or CR next. Check syntax before version so a
	 * garbage line is 400, a well-formed HTTP/2.0 is 505. */
	if (p == e)
		return 0;
	if (*p >= '0' && *p <= '9')
		return E_BAD;
	if (major != 1 || mi > 1)
		return E_VERSION;
	*minor = mi;
	*pp = p;
	return 1;
}

/* CRLF at *pp. Returns 1, 0 need more, or E_BAD (bare CR / anything else). */
static int expect_crlf(const unsigned char **pp, const unsigned char *e)
{
	const unsigned char *p = *pp;
	if (p == e)
		return 0;
	if (*p != '\r')
		return E_BAD;
	if (p + 1 == e)
		return 0;
	if (p[1] != '\n')
		return E_BAD;
	*pp = p + 2;
	return 1;
}

/* Which header a name is, for the ones framing depends on. */
enum hkind { H_OTHER, H_HOST, H_CL, H_TE, H_CONN, H_EXPECT, H_CTYPE };

static enum hkind header_kind(const char *n, size_t len)
{
	switch (len) {
	case 4:  return ci_eq(n, "host", 4) ? H_HOST : H_OTHER;
	case 6:  return ci_eq(n, "expect", 6) ? H_EXPECT : H_OTHER;
	case 10: return ci_eq(n, "connection", 10) ? H_CONN : H_OTHER;
	case 12: return ci_eq(n, "content-type", 12) ? H_CTYPE : H_OTHER;
	case 14: return ci_eq(n, "content-length", 14) ? H_CL : H_OTHER;
	case 17: return ci_eq(n, "transfer-encoding", 17) ? H_TE : H_OTHER;
	default: return H_OTHER;
	}
}

/* Scan one header line at *pp into *h. Returns 1 line parsed, 2 end of head
 * (the empty line, consumed), 0 need more, or E_BAD. */
static int parse_header_line(const unsigned char **pp, const unsigned char *e,
			     struct http_header *h)
{
	const unsigned char *p = *pp;
	if (p == e)
		return 0;
	if (*p == '\r') {
		int rc = expect_crlf(&p, e);
		if (rc <= 0)
			return rc;
		*pp = p;
		return 2;
	}
	/* Leading SP/HTAB is obs-fold (or, on the first line, a smuggling
	 * attempt that some servers read as part of the request line). */
	const unsigned char *name = p;
	while (p < e && (cls[*p] & C_TCHAR))
		p++;
	if (p == e)
		return 0;
	if (*p != ':' || p == name)
		return E_BAD;   /* also "Name :" - whitespace before the colon */
	const unsigned char *name_end = p++;
	while (p < e && is_ows(*p))
		p++;
	const unsigned char *val = p;
	p = scan_fval(p, e);
	if (p == e)
		return 0;
	const unsigned char *val_end = p;
	int rc = expect_crlf(&p, e);   /* NUL, LF, bare CR, CTLs land here */
	if (rc <= 0)
		return rc;
	while (val_end > val && is_ows(val_end[-1]))
		val_end--;
	h->name = (const char *)name;
	h->name_len = (size_t)(name_end - name);
	h->value = (const char *)val;
	h->value_len = (size_t)(val_end - val);
	*pp = p;
	return 1;
}

static bool host_valid(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(cls[(unsigned char)v[i]] & C_HOST))
			return false;
	return true;
}

bool http_head_may_be_complete(const char *buf, size_t len, size_t from)
{
	/* A head ends in "\n\r\n"; a bare-LF head ("\n\n") is worth a parse
	 * too, to reject it now. Back up 2 bytes for a marker split across reads. */
	size_t i = from > 2 ? from - 2 : 0;
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		if (!nl)
			return false;
		i = (size_t)(nl - buf) + 1;
		if (i < len && buf[i] == '\n')
			return true;
		if (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
			return true;
	}
	return false;
}

/* ---- requests -------------------------------------------------------- */

/* A target only a forward proxy accepts: authority-form (host chars only)
 * for CONNECT and for nothing else; absolute-form ("scheme://", scheme =
 * ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) for every other method. The
 * caller extracts and validates the authority itself. */
static bool proxy_target_ok(const char *m, size_t mlen, const unsigned char *t,
			    const unsigned char *e)
{
	if (mlen == 7 && !memcmp(m, "CONNECT", 7)) {
		for (const unsigned char *q = t; q < e; q++)
			if (!(cls[*q] & C_HOST))
				return false;
		return true;
	}
	if (!((*t | 0x20) >= 'a' && (*t | 0x20) <= 'z'))
		return false;
	for (const unsigned char *q = t + 1; q + 2 < e; q++) {
		if (*q == ':')
			return q[1] == '/' && q[2] == '/';
		bool alpha = (*q | 0x20) >= 'a' && (*q | 0x20) <= 'z';
		if (!alpha && !(*q >= '0' && *q <= '9') && *q != '+' && *q != '-' && *q != '.')
			return false;
	}
	return false;
}

static int parse_request(const char *buf, size_t len, const struct http_limits *lim,
			 struct http_request *req)
{
	size_t max_head;
	unsigned max_hdr;
	uint64_t max_body;
	limits_get(lim, &max_head, &max_hdr, &max_body);

	const unsigned char *start = (const unsigned char *)buf;
	const unsigned char *p = start, *e = start + (len < max_head ? len : max_head);
	struct framing f = { 0 };
	int rc;

	req->nheaders = 0;
	req->host = NULL;
	req->host_len = 0;
	req->expect_continue = false;
	req->content_length = 0;

	/* RFC 9112 2.2: a server SHOULD ignore empty lines before the request
	 * line (left over after a body by some clients). */
	while (p < e && *p == '\r')
		if ((rc = expect_crlf(&p, e)) <= 0)
			goto out;

	/* request-line = method SP request-target SP HTTP-version CRLF, with
	 * exactly one SP each: lenient whitespace is a desync vector. */
	const unsigned char *m = p;
	while (p < e && (cls[*p] & C_TCHAR))
		p++;
	if (p == e) {
		rc = 0;
		goto out;
	}
	if (*p != ' ' || p == m)
		return E_BAD;
	req->method = (const char *)m;
	req->method_len = (size_t)(p - m);
	const unsigned char *t = ++p;
	p = scan_target(p, e);
	if (p == e) {
		rc = 0;
		goto out;
	}
	if (*p != ' ' || p == t)
		return E_BAD;
	/* Origin-form or "*" only: an absolute-form URI could name another
	 * authority than Host, and we route and audit by Host/SNI. A forward
	 * proxy's client (proxy_forms) names the authority in the target. */
	if (!(*t == '/' || (p - t == 1 && *t == '*')) &&
	    !(lim->proxy_forms && proxy_target_ok(req->method, req->method_len, t, p)))
		return E_BAD;
	req->target = (const char *)t;
	req->target_len = (size_t)(p - t);
	p++;
	if ((rc = parse_version(&p, e, &req->minor)) <= 0)
		goto out;
	if ((rc = expect_crlf(&p, e)) <= 0)
		goto out;

	for (;;) {
		struct http_header h;
		rc = parse_header_line(&p, e, &h);
		if (rc <= 0)
			goto out;
		if (rc == 2)
			break;
		if (req->nheaders >= max_hdr)
			return E_TOOBIG;
		req->headers[req->nheaders++] = h;
		switch (header_kind(h.name, h.name_len)) {
		case H_HOST:
			if (req->host || !host_valid(h.value, h.value_len))
				return E_BAD;
			req->host = h.value;
			req->host_len = h.value_len;
			break;
		case H_CL:
			if ((rc = parse_cl(&f, h.value, h.value_len)) < 0)
				return rc;
			break;
		case H_TE:
			if ((rc = parse_te(&f, h.value, h.value_len)) < 0)
				return rc;
			break;
		case H_CONN:
			parse_connection(&f, h.value, h.value_len);
			break;
		case H_EXPECT:
			if (h.value_len == 12 && ci_eq(h.value, "100-continue", 12))
				req->expect_continue = true;
			break;
		default:
			break;
		}
	}

	if ((rc = framing_finish(&f, req->minor, &req->body)) < 0)
		return rc;
	if (req->minor == 1 && req->host == NULL)
		return E_BAD;
	if (f.cl_seen && f.cl > max_body)
		return -413;
	req->content_length = f.cl_seen ? f.cl : 0;
	/* RFC 9110 10.1.1: a 1.0 client cannot send 100-continue. */
	if (req->minor == 0)
		req->expect_continue = false;
	req->keep_alive = keep_alive_of(&f, req->minor);
	req->head_len = (size_t)(p - start);
	return (int)req->head_len;

out:
	if (rc < 0)
		return rc;
	return len >= max_head ? E_TOOBIG : 0;
}

int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
		       struct http_request *req)
{
	/* A head length is returned as int: keep the bound representable. */
	struct http_limits l = lim ? *lim : (struct http_limits){ 0 };
	if (l.max_head_bytes > INT32_MAX)
		l.max_head_bytes = INT32_MAX;
	return parse_request(buf, len, &l, req);
}

/* ---- responses ------------------------------------------------------- */

static bool is_event_stream(const char *v, size_t n)
{
	static const char mt[] = "text/event-stream";
	size_t ml = sizeof(mt) - 1;
	if (n < ml || !ci_eq(v, mt, ml))
		return false;
	return n == ml || v[ml] == ';' || is_ows((unsigned char)v[ml]);
}

static int parse_response(const char *buf, size_t len, const struct http_limits *lim,
			  const char *req_method, size_t req_method_len,
			  struct http_response *resp)
{
	size_t max_head;
	unsigned max_hdr;
	uint64_t max_body;
	limits_get(lim, &max_head, &max_hdr, &max_body);

	const unsigned char *start = (const unsigned char *)buf;
	const unsigned char *p = start, *e = start + (len < max_head ? len : max_head);
	struct framing f = { 0 };
	int rc;

	resp->nheaders = 0;
	resp->event_stream = false;
	resp->content_length = 0;

	/* status-line = HTTP-version SP 3DIGIT SP [reason-phrase] CRLF; the
	 * SP before an empty reason is often omitted, so it is optional. */
	if ((rc = parse_version(&p, e, &resp->minor)) <= 0)
		goto out;
	if (p == e)
		goto more;
	if (*p++ != ' ')
		return E_BAD;
	int status = 0;
	for (int i = 0; i < 3; i++, p++) {
		if (p == e)
			goto more;
		if (*p < '0' || *p > '9')
			return E_BAD;
		status = status * 10 + (*p - '0');
	}
	if (status < 100 || status > 599)
		return E_BAD;
	resp->status = status;
	if (p == e)
		goto more;
	if (*p == ' ') {
		p = scan_fval(p + 1, e);
	}
	if ((rc = expect_crlf(&p, e)) <= 0)
		goto out;

	for (;;) {
		struct http_header h;
		rc = parse_header_line(&p, e, &h);
		if (rc <= 0)
			goto out;
		if (rc == 2)
			break;
		if (resp->nheaders >= max_hdr)
			return E_TOOBIG;
		resp->headers[resp->nheaders++] = h;
		switch (header_kind(h.name, h.name_len)) {
		case H_CL:
			if ((rc = parse_cl(&f, h.value, h.value_len)) < 0)
				return rc;
			break;
		case H_TE:
			if ((rc = parse_te(&f, h.value, h.value_len)) < 0)
				return rc;
			break;
		case H_CONN:
			parse_connection(&f, h.value, h.value_len);
			break;
		case H_CTYPE:
			resp->event_stream = is_event_stream(h.value, h.value_len);
			break;
		default:
			break;
		}
	}

	/* Framing is validated even when the status says "no body", so a
	 * hostile upstream cannot hide a desync in a 304. */
	if ((rc = framing_finish(&f, resp->minor, &resp->body)) < 0)
		return rc;
	if (f.cl_seen && f.cl > max_body)
		return E_TOOBIG;
	resp->content_length = f.cl_seen ? f.cl : 0;
	resp->keep_alive = keep_alive_of(&f, resp->minor);
	bool head = req_method_len == 4 && memcmp(req_method, "HEAD", 4) == 0;
	if (head || status < 200 || status == 204 || status == 304) {
		resp->body = HTTP_BODY_NONE;
		if (status == 101)   /* the connection is no longer HTTP */
			resp->keep_alive = false;
	} else if (resp->body == HTTP_BODY_NONE) {
		resp->body = HTTP_BODY_EOF;
		resp->keep_alive = false;
	}
	resp->head_len = (size_t)(p - start);
	return (int)resp->head_len;

more:
	rc = 0;
out:
	if (rc < 0)
		return rc;
	return len >= max_head ? E_TOOBIG : 0;
}

int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
			const char *req_method, size_t req_method_len,
			struct http_response *resp)
{
	struct http_limits l = lim ? *lim : (struct http_limits){ 0 };
	if (l.max_head_bytes > INT32_MAX)
		l.max_head_bytes = INT32_MAX;
	int rc = parse_response(buf, len, &l, req_method, req_method_len, resp);
	return rc < 0 ? -502 : rc;
}

/* ---- chunked --------------------------------------------------------- */

enum {
	CH_SIZE_START, CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
	CH_TR_START, CH_TR_NAME, CH_TR_VALUE, CH_TR_LF, CH_END_LF, CH_DONE
};

void http_chunked_init(struct http_chunked *c, uint64_t max_body, size_t max_trailer_bytes)
{
	memset(c, 0, sizeof(*c));
	c->max_body = max_body;
	c->max_trailer = max_trailer_bytes;
	c->state = CH_SIZE_START;
}

bool http_chunked_done(const struct http_chunked *c)
{
	return c->done;
}

static unsigned hexval(unsigned char ch)
{
	if (ch <= '9')
		return ch - '0';
	return (unsigned)(lower(ch) - 'a' + 10);
}

ssize_t http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
			  http_data_fn fn, void *arg)
{
	const unsigned char *p = (const unsigned char *)in, *e = p + len;

	while (p < e) {
		unsigned char ch = *p;
		switch (c->state) {
		case CH_SIZE_START:
			/* chunk-size = 1*HEXDIG: no sign, no "0x", no space. */
			if (!(cls[ch] & C_HEX))
				return -400;
			c->size = hexval(ch);
			c->line_bytes = 1;
			c->state = CH_SIZE;
			p++;
			break;
		case CH_SIZE:
			if (cls[ch] & C_HEX) {
				/* 16 digits hold any uint64; more is overflow or
				 * padding nobody legitimate sends. */
				if (++c->line_bytes > 16)
					return -400;
				c->size = (c->size << 4) | hexval(ch);
			} else if (ch == ';') {
				c->line_bytes = 1;   /* the ';' counts toward the bound */
				c->state = CH_EXT;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				return -400;
			}
			p++;
			break;
		case CH_EXT:
			/* Extensions are dropped when we re-frame; only bound
			 * them and refuse controls (bare CR/LF desync). */
			if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else if (!(cls[ch] & C_FVAL) || ++c->line_bytes > HTTP_CHUNK_EXT_MAX) {
				return -400;
			}
			p++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -400;
			p++;
			if (c->size == 0) {
				c->state = CH_TR_START;
			} else {
				if (c->size > c->max_body - c->total)
					return -413;
				c->remaining = c->size;
				c->state = CH_DATA;
			}
			break;
		case CH_DATA: {
			size_t avail = (size_t)(e - p);
			size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
			if (fn) {
				int rc = fn(arg, (const char *)p, n);
				if (rc)
					return rc > 0 ? -rc : rc;
			}
			p += n;
			c->remaining -= n;
			c->total += n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return -400;
			c->state = CH_DATA_LF;
			p++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -400;
			c->state = CH_SIZE_START;
			p++;
			break;
		case CH_TR_START:
			if (ch == '\r') {
				c->state = CH_END_LF;
				p++;
				break;
			}
			if (!(cls[ch] & C_TCHAR))   /* obs-fold, bare LF, ':' first */
				return -400;
			c->state = CH_TR_NAME;
			goto trailer_byte;
		case CH_TR_NAME:
			if (ch == ':')
				c->state = CH_TR_VALUE;
			else if (!(cls[ch] & C_TCHAR))
				return -400;
			goto trailer_byte;
		case CH_TR_VALUE:
			if (ch == '\r')
				c->state = CH_TR_LF;
			else if (!(cls[ch] & C_FVAL))
				return -400;
			goto trailer_byte;
		case CH_TR_LF:
			if (ch != '\n')
				return -400;
			c->state = CH_TR_START;
		trailer_byte:
			if (++c->trailer_bytes > c->max_trailer)
				return -400;
			p++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return -400;
			p++;
			c->state = CH_DONE;
			c->done = true;
			return (ssize_t)(p - (const unsigned char *)in);
		case CH_DONE:
		default:
			return (ssize_t)(p - (const unsigned char *)in);
		}
	}
	return (ssize_t)(p - (const unsigned char *)in);
}

/* ---- forwarding ------------------------------------------------------ */

/* Tokens of every Connection field, collected once per forwarded head so
 * the hop-by-hop test is not a scan of all headers per header. */
#define CONN_TOKENS_MAX 32
struct conn_tokens {
	const char *p[CONN_TOKENS_MAX];
	size_t len[CONN_TOKENS_MAX];
	unsigned n;
	bool overflow;   /* more tokens than fit: fall back to rescanning */
};

static void conn_tokens_collect(const struct http_request *req, struct conn_tokens *t)
{
	t->n = 0;
	t->overflow = false;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *c = &req->headers[i];
		if (!NAME_IS(c, "connection"))
			continue;
		struct list_iter it = { c->value, c->value + c->value_len };
		const char *el;
		size_t el_len;
		while (list_next(&it, &el, &el_len)) {
			if (el_len == 0)
				continue;
			if (t->n == CONN_TOKENS_MAX) {
				t->overflow = true;
				return;
			}
			t->p[t->n] = el;
			t->len[t->n++] = el_len;
		}
	}
}

static bool named_in_connection(const struct http_request *req, const struct conn_tokens *t,
				const struct http_header *h)
{
	if (!t->overflow) {
		for (unsigned i = 0; i < t->n; i++)
			if (t->len[i] == h->name_len && ci_eq2(t->p[i], h->name, h->name_len))
				return true;
		return false;
	}
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *c = &req->headers[i];
		if (!NAME_IS(c, "connection"))
			continue;
		struct list_iter it = { c->value, c->value + c->value_len };
		const char *el;
		size_t el_len;
		while (list_next(&it, &el, &el_len))
			if (el_len == h->name_len && ci_eq2(el, h->name, el_len))
				return true;
	}
	return false;
}

static bool hop_by_hop(const struct http_request *req, const struct conn_tokens *t,
		       const struct http_header *h)
{
	switch (h->name_len) {
	case 2:  if (NAME_IS(h, "te")) return true; break;
	/* "Connection: host" must not strip the authority (the forwarded
	 * HTTP/1.1 request would be invalid, or routed by default). */
	case 4:  if (NAME_IS(h, "host")) return false; break;
	case 6:  if (NAME_IS(h, "expect")) return true; break;
	case 7:  if (NAME_IS(h, "upgrade") || NAME_IS(h, "trailer")) return true; break;
	case 10: if (NAME_IS(h, "connection") || NAME_IS(h, "keep-alive")) return true; break;
	case 14: if (NAME_IS(h, "content-length")) return true; break;
	case 16: if (NAME_IS(h, "proxy-connection")) return true; break;
	case 17: if (NAME_IS(h, "transfer-encoding")) return true; break;
	default: break;
	}
	/* RFC 9110 7.6.1: fields named in Connection are for this hop only. */
	return named_in_connection(req, t, h);
}

struct out { char *p; size_t left; bool full; };

static void put(struct out *o, const void *s, size_t n)
{
	if (o->full || n > o->left) {
		o->full = true;
		return;
	}
	memcpy(o->p, s, n);
	o->p += n;
	o->left -= n;
}
#define PUT_LIT(o, lit) put((o), lit, sizeof(lit) - 1)

ssize_t http_format_request_head(const struct http_request *req, char *out, size_t outlen,
				 uint64_t new_len)
{
	struct out o = { out, outlen, false };
	struct conn_tokens ct;

	conn_tokens_collect(req, &ct);

	put(&o, req->method, req->method_len);
	PUT_LIT(&o, " ");
	put(&o, req->target, req->target_len);
	if (req->minor == 1)
		PUT_LIT(&o, " HTTP/1.1\r\n");
	else
		PUT_LIT(&o, " HTTP/1.0\r\n");
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (hop_by_hop(req, &ct, h))
			continue;
		put(&o, h->name, h->name_len);
		PUT_LIT(&o, ": ");
		put(&o, h->value, h->value_len);
		PUT_LIT(&o, "\r\n");
	}
	if (req->body != HTTP_BODY_NONE || new_len > 0) {
		char num[24];
		size_t i = sizeof(num);
		uint64_t v = new_len;
		do {
			num[--i] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		PUT_LIT(&o, "Content-Length: ");
		put(&o, num + i, sizeof(num) - i);
		PUT_LIT(&o, "\r\n");
	}
	PUT_LIT(&o, "\r\n");
	if (o.full)
		return -ENOSPC;
	return (ssize_t)(outlen - o.left);
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 421: return "Misdirected Request";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}
