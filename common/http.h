/* http: HTTP/1.1 message framing (RFC 9112), shared by the intercepting proxy
 * (agent/proxy) and the collector's API (collector/api.c).
 * Parses request and response heads, decodes chunked bodies incrementally,
 * and writes the head that is forwarded upstream. Pure code: no I/O, no
 * allocation, no logging, one pass over the bytes, never strlen() on
 * network data. The parser is deliberately strict (reject, never guess)
 * because a proxy that frames a message differently from the server behind
 * it is a request-smuggling hole.
 *
 * Ownership: every pointer a parse stores in a struct (method, target,
 * header names and values, host) is BORROWED from the caller's buffer and
 * valid only while that buffer is unchanged. Names passed in by the caller
 * (http_find_header, http_header_has_token) are trusted NUL-terminated
 * constants. */
#ifndef VIGIL_HTTP_H
#define VIGIL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEADERS 128

/* Defaults used for a NULL limits pointer or a field left at 0. */
#define HTTP_DEFAULT_MAX_HEAD_BYTES 32768
#define HTTP_DEFAULT_MAX_HEADERS    100
/* max_body_bytes 0 means "no limit" (UINT64_MAX). */
/* Longest chunk extension accepted on one chunk-size line. */
#define HTTP_CHUNK_EXT_MAX          1024

struct http_limits {
	size_t max_head_bytes;     /* whole head incl. final CRLF; 0 = 32768 */
	unsigned max_headers;      /* header lines; 0 = 100, capped at HTTP_MAX_HEADERS */
	uint64_t max_body_bytes;   /* declared Content-Length bound; 0 = unlimited */
	bool proxy_forms;          /* also accept what a forward proxy receives (RFC 9112
	                            * 3.2.2-3): authority-form for CONNECT, absolute-form
	                            * ("scheme://...") otherwise; origin-form still parses */
};

/* Points into the caller's buffer (borrowed). Value has OWS trimmed. */
struct http_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

enum http_body {
	HTTP_BODY_NONE,
	HTTP_BODY_LENGTH,
	HTTP_BODY_CHUNKED,
	HTTP_BODY_EOF          /* responses only: delimited by connection close */
};

struct http_request {
	const char *method;
	size_t method_len;
	const char *target;        /* origin-form ("/...") or "*"; with proxy_forms also
	                            * authority-form (CONNECT) or absolute-form */
	size_t target_len;
	int minor;                 /* HTTP/1.<minor>: 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	unsigned nheaders;
	const char *host;          /* Host value, NULL if none */
	size_t host_len;
	enum http_body body;
	uint64_t content_length;   /* valid when body == HTTP_BODY_LENGTH */
	bool keep_alive;
	bool expect_continue;      /* HTTP/1.1 and Expect: 100-continue */
	size_t head_len;           /* == the parse return value */
};

struct http_response {
	int status;
	int minor;
	struct http_header headers[HTTP_MAX_HEADERS];
	unsigned nheaders;
	enum http_body body;
	uint64_t content_length;   /* declared value (also set for HEAD/304), 0 if none */
	bool keep_alive;
	bool event_stream;         /* Content-Type: text/event-stream */
	size_t head_len;
};

/* Parse a request head at buf[0..len). Returns the head length (> 0) when
 * complete and valid (bytes after it belong to the body or the next request),
 * 0 if more bytes are needed, or a negative HTTP status to answer with:
 * -400 malformed, -431 head too large / too many headers, -413 declared
 * Content-Length above max_body_bytes, -501 unsupported transfer coding,
 * -505 version other than 1.0/1.1. lim may be NULL (defaults). Leading
 * empty lines (CRLF) before the request line are skipped and counted in
 * the returned length. Only origin-form targets and "*" are accepted,
 * unless lim->proxy_forms. */
int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
		       struct http_request *req);

/* Parse the head of a response to a request whose method was req_method.
 * Same return convention; every error is -502. No body for HEAD, 1xx, 204
 * and 304; no Content-Length / Transfer-Encoding -> HTTP_BODY_EOF with
 * keep_alive false. A 1xx head is returned like any other: the caller
 * forwards it and parses the next head. */
int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
			const char *req_method, size_t req_method_len,
			struct http_response *resp);

/* Cheap pre-check for a head arriving in pieces: whether buf[0..len) may
 * hold a complete head, looking only at bytes from offset `from` (the
 * length already checked; pass 0 the first time). Each parse starts over,
 * so a peer sending one byte per segment would cost O(head^2) if the caller
 * parsed on every read; calling http_parse_* only when this returns true,
 * or when len >= max_head_bytes (to get the 431), keeps the work linear.
 * False positives are harmless (the parse returns 0). */
bool http_head_may_be_complete(const char *buf, size_t len, size_t from);

/* First header named name (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_header *h, unsigned n,
					   const char *name);
/* Whether h's value, as a comma-separated list, holds token
 * (case-insensitive, OWS around elements ignored). */
bool http_header_has_token(const struct http_header *h, const char *token);

/* Incremental chunked-body decoder. Fields are private to http.c; the struct
 * is public only so callers can embed it without allocating. */
struct http_chunked {
	uint64_t remaining;        /* data bytes left in the current chunk */
	uint64_t size;             /* chunk size being parsed */
	uint64_t total;            /* payload bytes delivered so far */
	uint64_t max_body;
	size_t trailer_bytes;
	size_t max_trailer;
	unsigned line_bytes;       /* hex digits or extension bytes on this line */
	uint8_t state;
	bool done;
};

/* max_body: payload bound (-413 above it). max_trailer_bytes: bound on the
 * trailer section (0 = trailers refused). */
void http_chunked_init(struct http_chunked *c, uint64_t max_body, size_t max_trailer_bytes);

/* Receives decoded payload (borrowed, valid during the call). A non-zero
 * return aborts the feed; use a negative errno-style value. */
typedef int (*http_data_fn)(void *arg, const char *data, size_t len);

/* Consume up to len bytes of chunked framing; fn gets each payload piece.
 * Returns bytes consumed (stops exactly after the final CRLF: later bytes
 * are the next message; 0 once done), -400 bad framing, -413 payload over
 * max_body, or the callback's value if it aborts (a positive value v is
 * returned as -v). After an error the decoder must not be fed again. */
ssize_t http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
			  http_data_fn fn, void *arg);
bool http_chunked_done(const struct http_chunked *c);

/* Write the request head to forward upstream: request line and headers of
 * req (whose pointers still reference the original bytes) minus
 * Content-Length, Transfer-Encoding, Expect, Trailer, Connection, Keep-Alive,
 * Proxy-Connection, TE, Upgrade and every header named in Connection; then
 * "Content-Length: <new_len>" if the request has a body or new_len > 0;
 * then the final CRLF. Returns bytes written or -ENOSPC. */
ssize_t http_format_request_head(const struct http_request *req, char *out, size_t outlen,
				 uint64_t new_len);

/* The reason phrase of an HTTP status (RFC 9110 15), "Error" if unknown. */
const char *http_status_text(int status);

#endif
