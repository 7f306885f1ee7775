/* tlsconn: see tlsconn.h. The interest is recomputed after every step from
 * four facts: whether the handshake is done, whether the owner reads,
 * whether output is pending, and what OpenSSL last asked for; a mismatch
 * between them is how TLS servers hang, so nothing else sets it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <openssl/err.h>
#include "tlsconn.h"

static void rearm(struct tlsconn *c)
{
	if (c->closed)
		return;
	uint32_t ev = 0;
	if (!c->handshaken) {
		ev = c->read_wants_write ? EPOLLOUT : EPOLLIN;
	} else {
		if ((c->reading && !c->read_wants_write) || c->write_wants_read)
			ev |= EPOLLIN;
		if (c->read_wants_write || (c->out_len > c->out_off && !c->write_wants_read))
			ev |= EPOLLOUT;
	}
	/* RDHUP only with input wanted: level-triggered, it would otherwise
	 * wake the loop again and again while a request is being answered */
	if (ev & EPOLLIN)
		ev |= EPOLLRDHUP;
	if (ev != c->armed && loop_mod(c->l, &c->w, ev) == 0)
		c->armed = ev;
}

/* Sends what is pending: 1 all out, 0 try later, -EPIPE failed. */
static int flush_out(struct tlsconn *c)
{
	c->write_wants_read = false;
	while (c->out_off < c->out_len) {
		size_t left = c->out_len - c->out_off;
		int n = SSL_write(c->ssl, c->out + c->out_off, left > (1u << 30) ? 1 << 30 : (int)left);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_WANT_READ) {
			c->write_wants_read = true;
			return 0;
		}
		ERR_clear_error();
		return -EPIPE;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return 1;
}

static void on_io(struct loop_watch *w, uint32_t events)
{
	struct tlsconn *c = (struct tlsconn *)((char *)w - offsetof(struct tlsconn, w));
	if (c->closed)
		return;
	if (!c->handshaken) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
				rearm(c);
				return;
			}
			c->ssl_err = ERR_peek_last_error();
			ERR_clear_error();
			c->on_event(c, TLSCONN_CLOSED);
			return;
		}
		c->handshaken = true;
		c->read_wants_write = false;
		c->on_event(c, TLSCONN_READY);
		if (!c->closed)
			rearm(c);
		return;
	}
	if (c->out_len) {
		int r = flush_out(c);
		if (r < 0) {
			c->on_event(c, TLSCONN_CLOSED);
			return;
		}
		if (r == 1)
			c->on_event(c, TLSCONN_WRITTEN);
		if (c->closed)
			return;
	}
	if (c->reading && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP) || c->read_wants_write))
		c->on_event(c, TLSCONN_READABLE);
	else if (!c->reading && !c->out_len && (events & (EPOLLHUP | EPOLLERR)))
		c->on_event(c, TLSCONN_CLOSED);
	if (!c->closed)
		rearm(c);
}

int tlsconn_accept(struct tlsconn *c, struct loop *l, SSL_CTX *ctx, int fd,
		   void (*on_event)(struct tlsconn *c, enum tlsconn_event ev))
{
	memset(c, 0, sizeof(*c));
	c->l = l;
	c->w.fd = fd;
	c->w.fn = on_io;
	c->on_event = on_event;
	c->reading = true;
	if (!(c->ssl = SSL_new(ctx)) || SSL_set_fd(c->ssl, fd) != 1) {
		SSL_free(c->ssl);
		close(fd);
		c->closed = true;
		return -ENOMEM;
	}
	SSL_set_accept_state(c->ssl);
	/* An idle connection (keep-alive, an agent between batches) keeps no
	 * read/write buffers: about 30 KB less each, allocated again on use. */
	SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	c->armed = EPOLLIN | EPOLLRDHUP;
	int rc = loop_add(l, &c->w, EPOLLIN | EPOLLRDHUP);
	if (rc) {
		SSL_free(c->ssl);
		close(fd);
		c->closed = true;
	}
	return rc;
}

ssize_t tlsconn_read(struct tlsconn *c, void *buf, size_t len)
{
	if (c->closed)
		return -EPIPE;
	c->read_wants_write = false;
	int n = SSL_read(c->ssl, buf, len > (1u << 30) ? 1 << 30 : (int)len);
	if (n > 0)
		return n;
	int e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {
		c->read_wants_write = true;
		return 0;
	}
	c->ssl_err = e == SSL_ERROR_ZERO_RETURN ? 0 : ERR_peek_last_error();
	ERR_clear_error();
	return -EPIPE;
}

int tlsconn_write(struct tlsconn *c, char *buf, size_t len)
{
	if (c->closed) {
		free(buf);
		return -EPIPE;
	}
	if (c->out) {
		/* still sending earlier output: append after what is left */
		size_t left = c->out_len - c->out_off;
		char *nb = malloc(left + len);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		memcpy(nb, c->out + c->out_off, left);
		memcpy(nb + left, buf, len);
		free(c->out);
		free(buf);
		c->out = nb;
		c->out_len = left + len;
		c->out_off = 0;
		rearm(c);
		return 0;
	}
	c->out = buf;
	c->out_len = len;
	c->out_off = 0;
	int r = flush_out(c);
	if (r < 0)
		return r;
	if (r == 1)
		c->on_event(c, TLSCONN_WRITTEN);
	else
		rearm(c);
	return 0;
}

void tlsconn_set_reading(struct tlsconn *c, bool on)
{
	c->reading = on;
	rearm(c);
}

bool tlsconn_has_buffered(const struct tlsconn *c)
{
	return !c->closed && SSL_pending(c->ssl) > 0;
}

void tlsconn_close(struct tlsconn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	loop_del(c->l, &c->w);
	if (c->handshaken)
		SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->w.fd);
	c->w.fd = -1;
	free(c->out);
	c->out = NULL;
}
