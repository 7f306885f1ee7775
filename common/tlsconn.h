/* tlsconn: a server-side TLS connection on the event loop. OpenSSL's
 * want-read / want-write (a read that must write first during a handshake
 * or key update, a write that must read) is handled here, once, and turned
 * into the epoll interest of the socket; the owner only sees "ready",
 * "readable", "written" and "closed" (Redis's connection.h does the same).
 *
 * Owns: the SSL object, the socket and its watch, and the pending output.
 * Borrows: the SSL_CTX and the loop. Must never: block, or call the owner
 * back after tlsconn_close. */
#ifndef VIGIL_TLSCONN_H
#define VIGIL_TLSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>
#include "loop.h"

enum tlsconn_event {
	TLSCONN_READY,       /* handshake done */
	TLSCONN_READABLE,    /* call tlsconn_read until it returns 0 */
	TLSCONN_WRITTEN,     /* every byte given to tlsconn_write is out */
	TLSCONN_CLOSED,      /* peer gone or TLS error: call tlsconn_close */
};

struct tlsconn {
	struct loop_watch w;            /* w.fd: the socket */
	struct loop *l;
	SSL *ssl;
	void (*on_event)(struct tlsconn *c, enum tlsconn_event ev);
	char *out;                      /* pending output (owned) */
	size_t out_len, out_off;
	uint32_t armed;                 /* epoll interest now */
	unsigned long ssl_err;          /* OpenSSL's reason for the last failure, 0: clean close */
	bool handshaken, reading, read_wants_write, write_wants_read, closed;
};

/* Takes ownership of fd (non-blocking, accepted): on error it is closed. */
int tlsconn_accept(struct tlsconn *c, struct loop *l, SSL_CTX *ctx, int fd,
		   void (*on_event)(struct tlsconn *c, enum tlsconn_event ev));
/* > 0 bytes read, 0 nothing more now (the loop will call back), -EPIPE
 * when the peer closed or TLS failed. */
ssize_t tlsconn_read(struct tlsconn *c, void *buf, size_t len);
/* Queues buf (takes ownership of the malloc'ed block; appended to output
 * still pending) and starts sending; TLSCONN_WRITTEN follows when all is
 * out, possibly before this returns. */
int tlsconn_write(struct tlsconn *c, char *buf, size_t len);
/* Whether the loop should tell the owner about input (backpressure: off
 * while a request is being answered). */
void tlsconn_set_reading(struct tlsconn *c, bool on);
/* Bytes OpenSSL already decrypted and holds (no epoll event will come). */
bool tlsconn_has_buffered(const struct tlsconn *c);
/* Closes the socket and frees the SSL object and pending output; the
 * struct's memory stays the owner's (free it outside the loop's dispatch:
 * see loop.h). Idempotent. */
void tlsconn_close(struct tlsconn *c);

#endif
