/* Unit tests for common/tlsconn.c over a socketpair, a real OpenSSL client
 * on a thread and the real loop: the handshake, then input and output
 * through the events; an answer far larger than the socket buffer to a
 * client that reads late (TLS write wants write: WRITTEN comes once, after
 * the client read it all, and the bytes arrive whole and in order); a
 * client that is not TLS at all (CLOSED before READY, with the reason). */
#include "check.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "loop.h"
#include "pki.h"
#include "tlsconn.h"

#define BIG (8u << 20)

static SSL_CTX *server_ctx(void)
{
	char err[256];
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	struct pki_ca_opts o = { .common_name = "tlsconn-test", .days = 1, .pathlen = -1 };
	if (pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err)) || pki_ca_self_signed(k, &o, &x, err, sizeof(err)))
		return NULL;
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(c, x);
	SSL_CTX_use_PrivateKey(c, k);
	X509_free(x);
	EVP_PKEY_free(k);
	return c;
}

/* The server side under test. */
struct srv {
	struct tlsconn t;
	struct loop *l;
	int ready, readable, written, closed;
	bool closed_before_ready;
	unsigned long ssl_err;
	char got[64];
	size_t got_len;
	bool big;                  /* on READY, send BIG bytes */
	uint64_t written_ms;
};

static void on_event(struct tlsconn *t, enum tlsconn_event ev)
{
	struct srv *s = (struct srv *)t;
	switch (ev) {
	case TLSCONN_READY:
		s->ready++;
		if (s->big) {
			char *b = malloc(BIG);
			for (size_t i = 0; i < BIG; i++)
				b[i] = (char)(i * 7 + i / 4096);
			tlsconn_write(t, b, BIG);
		}
		return;
	case TLSCONN_READABLE: {
		s->readable++;
		ssize_t n;
		while ((n = tlsconn_read(t, s->got + s->got_len, sizeof(s->got) - s->got_len)) > 0) {
			s->got_len += (size_t)n;
			if (s->got_len >= 5 && !s->big) {
				char *ans = malloc(5);
				for (int i = 0; i < 5; i++)
					ans[i] = (char)(s->got[i] - 32);
				tlsconn_write(t, ans, 5);
				s->got_len = 0;
			}
		}
		if (n < 0) {
			s->closed++;
			s->ssl_err = t->ssl_err;
			tlsconn_close(t);
			loop_stop(s->l);
		}
		return;
	}
	case TLSCONN_WRITTEN:
		s->written++;
		s->written_ms = loop_now_ms();
		return;
	case TLSCONN_CLOSED:
		s->closed++;
		s->closed_before_ready = !s->ready;
		s->ssl_err = t->ssl_err;
		tlsconn_close(t);
		loop_stop(s->l);
		return;
	}
}

/* The peer, on its own thread, blocking. */
struct cli {
	int fd;
	int mode;                  /* 0 echo, 1 read BIG late, 2 not TLS */
	bool ok;
	uint64_t read_start_ms;
	char why[128];
};

static void *client(void *arg)
{
	struct cli *c = arg;
	if (c->mode == 2) {
		static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
		c->ok = write(c->fd, junk, sizeof(junk) - 1) == (ssize_t)(sizeof(junk) - 1);
		usleep(50000);
		close(c->fd);
		return NULL;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, c->fd);
	if (SSL_connect(ssl) != 1) {
		snprintf(c->why, sizeof(c->why), "SSL_connect failed");
		goto out;
	}
	if (c->mode == 0) {
		char b[5];
		if (SSL_write(ssl, "hello", 5) != 5 || SSL_read(ssl, b, 5) != 5 || memcmp(b, "HELLO", 5)) {
			snprintf(c->why, sizeof(c->why), "echo: wrong answer");
			goto out;
		}
		c->ok = true;
	} else {
		usleep(300000);        /* the server's buffers fill meanwhile */
		c->read_start_ms = loop_now_ms();
		static char b[65536];
		size_t total = 0;
		while (total < BIG) {
			int n = SSL_read(ssl, b, sizeof(b));
			if (n <= 0) {
				snprintf(c->why, sizeof(c->why), "read stopped at %zu", total);
				goto out;
			}
			for (int i = 0; i < n; i++, total++)
				if (b[i] != (char)(total * 7 + total / 4096)) {
					snprintf(c->why, sizeof(c->why), "byte %zu differs", total);
					goto out;
				}
		}
		c->ok = true;
	}
	SSL_shutdown(ssl);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(c->fd);
	return NULL;
}

static void run(SSL_CTX *ctx, struct srv *s, struct cli *c)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* tlsconn_accept wants a non-blocking socket (accept4 gives one) */
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	s->l = loop_new();
	c->fd = sv[1];
	tlsconn_accept(&s->t, s->l, ctx, sv[0], on_event);
	signal(SIGPIPE, SIG_IGN);   /* as in the collector: a peer gone is an error, not a signal */
	pthread_t th;
	pthread_create(&th, NULL, client, c);
	loop_run(s->l);
	pthread_join(th, NULL);
	loop_free(s->l);
}

TEST(handshake_then_echo_then_peer_close)
{
	SSL_CTX *ctx = server_ctx();
	CHECK(ctx, "server context");
	static struct srv s;
	struct cli c = { .mode = 0 };
	run(ctx, &s, &c);
	CHECK(c.ok, "client: %s", c.why);
	CHECK(s.ready == 1 && s.readable >= 1 && s.written == 1 && s.closed == 1,
	      "events: ready %d readable %d written %d closed %d", s.ready, s.readable, s.written, s.closed);
	SSL_CTX_free(ctx);
}

TEST(big_answer_to_a_late_reader_written_once_whole)
{
	SSL_CTX *ctx = server_ctx();
	static struct srv s;
	s.big = true;
	struct cli c = { .mode = 1 };
	run(ctx, &s, &c);
	CHECK(c.ok, "client: %s", c.why);
	CHECK(s.written == 1, "WRITTEN %d times", s.written);
	CHECK(s.written_ms >= c.read_start_ms, "WRITTEN at %llu before the client read (%llu)",
	      (unsigned long long)s.written_ms, (unsigned long long)c.read_start_ms);
	CHECK(s.closed == 1, "closed %d", s.closed);
	SSL_CTX_free(ctx);
}

TEST(not_tls_closed_before_ready_with_a_reason)
{
	SSL_CTX *ctx = server_ctx();
	static struct srv s;
	struct cli c = { .mode = 2 };
	run(ctx, &s, &c);
	CHECK(s.ready == 0 && s.closed == 1 && s.closed_before_ready, "ready %d closed %d", s.ready, s.closed);
	CHECK(s.ssl_err != 0, "no OpenSSL reason kept for the failed handshake");
	SSL_CTX_free(ctx);
}
