/* egress: the agent's own CONNECT through a proxy, against a scripted
 * proxy on loopback: the request carries host, port and credentials; a 2xx
 * leaves the socket at the first tunnel byte; a refusal, a broken answer,
 * bytes after a 2xx, a silent proxy and a closed port each fail with the
 * reason the client's 502 will name. No root needed (no capture). */
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include "check.h"
#include "config.h"
#include "net/egress.h"
#include "loop.h"

struct fake {
	int lfd;
	uint16_t port;
	const char *answer;     /* sent after the request head; NULL = say nothing */
	const char *then;       /* tunnel bytes, sent once the client sent one */
	char request[2048];
	pthread_t thread;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	size_t n = 0;
	if (c < 0)
		return NULL;
	while (n < sizeof(f->request) - 1 && !strstr(f->request, "\r\n\r\n")) {
		ssize_t r = recv(c, f->request + n, sizeof(f->request) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		f->request[n] = 0;
	}
	if (f->answer)
		send(c, f->answer, strlen(f->answer), MSG_NOSIGNAL);
	char buf[64];
	if (f->then && recv(c, buf, 1, 0) == 1)
		send(c, f->then, strlen(f->then), MSG_NOSIGNAL);
	struct pollfd p = { .fd = c, .events = POLLIN };
	if (poll(&p, 1, 3000) > 0)
		(void)!recv(c, buf, sizeof(buf), 0);   /* until the client closes */
	close(c);
	return NULL;
}

static void fake_start(struct fake *f, const char *answer, const char *then)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	memset(f, 0, sizeof(*f));
	f->answer = answer;
	f->then = then;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.12.2.1", &sa.sin_addr);
	bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa));
	listen(f->lfd, 4);
	getsockname(f->lfd, (struct sockaddr *)&sa, &len);
	f->port = ntohs(sa.sin_port);
	pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static struct config cfg;
static struct agent ag = { .cfg = &cfg };

static void route_to(struct egress_route *r, uint16_t port, const char *auth)
{
	struct sockaddr_in *sa = (struct sockaddr_in *)&r->addr;
	memset(r, 0, sizeof(*r));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	inet_pton(AF_INET, "127.12.2.1", &sa->sin_addr);
	r->addrlen = sizeof(*sa);
	r->via_proxy = true;
	snprintf(r->host, sizeof(r->host), "api.openai.com");
	r->port = 443;
	r->auth = auth;
}

static int open_via(struct fake *f, const char *auth, uint64_t ms, const char **reason, char *err)
{
	struct egress_route r;
	route_to(&r, f->port, auth);
	return egress_open(&ag, &r, loop_now_ms() + ms, reason, err, 256);
}

TEST(tunnel_opens_at_the_first_tunnel_byte)
{
	struct fake f;
	const char *reason = NULL;
	char err[256], buf[16] = { 0 };
	fake_start(&f, "HTTP/1.1 200 Connection established\r\nVia: fake\r\n\r\n", "tunnel!");
	int fd = open_via(&f, "Basic dTpw", 2000, &reason, err);
	CHECK(fd >= 0, "open failed: %s", err);
	/* Nothing of the answer is left for TLS to read, nothing after it taken. */
	CHECK(send(fd, "x", 1, MSG_NOSIGNAL) == 1, "send");
	struct pollfd p = { .fd = fd, .events = POLLIN };
	CHECK(poll(&p, 1, 2000) == 1 && recv(fd, buf, sizeof(buf) - 1, 0) == 7 && !strcmp(buf, "tunnel!"),
	      "tunnel bytes %s", buf);
	CHECK(!strcmp(f.request, "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n"
				 "Proxy-Authorization: Basic dTpw\r\n\r\n"), "request %s", f.request);
	close(fd);
	fake_stop(&f);
}

TEST(refusal_names_the_status)
{
	struct fake f;
	const char *reason = NULL;
	char err[256];
	fake_start(&f, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nnope!", NULL);
	int fd = open_via(&f, NULL, 2000, &reason, err);
	CHECK(fd == -ECONNREFUSED && !strcmp(reason, "upstream_proxy_refused") && strstr(err, "407"),
	      "fd %d reason %s err %s", fd, reason, err);
	CHECK(!strstr(f.request, "Proxy-Authorization"), "credentials sent without any");
	fake_stop(&f);
}

TEST(broken_answers_fail)
{
	static const char *const bad[][2] = {
		{ "SSH-2.0-OpenSSH\r\n\r\n", NULL },
		{ "HTTP/1.1 200 OK\r\n\r\nunexpected", NULL },   /* bytes before our ClientHello */
		{ "HTTP/1.1 200 OK\r\n", NULL },                  /* then silence */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fake f;
		const char *reason = NULL;
		char err[256];
		fake_start(&f, bad[i][0], bad[i][1]);
		int fd = open_via(&f, NULL, 500, &reason, err);
		if (fd >= 0)
			close(fd);
		CHECK(fd < 0 && !strcmp(reason, "upstream_proxy_failed"), "case %zu: fd %d reason %s", i, fd,
		      reason);
		fake_stop(&f);
	}
}

TEST(silent_proxy_times_out)
{
	struct fake f;
	const char *reason = NULL;
	char err[256];
	fake_start(&f, NULL, NULL);
	uint64_t t0 = loop_now_ms();
	int fd = open_via(&f, NULL, 300, &reason, err);
	CHECK(fd == -ETIMEDOUT && strstr(err, "timed out"), "fd %d err %s", fd, err);
	CHECK(loop_now_ms() - t0 < 2000, "deadline not kept");
	fake_stop(&f);
}

TEST(closed_port_is_unreachable)
{
	struct egress_route r;
	const char *reason = NULL;
	char err[256];
	route_to(&r, 1, NULL);
	int fd = egress_open(&ag, &r, loop_now_ms() + 2000, &reason, err, sizeof(err));
	CHECK(fd < 0 && !strcmp(reason, "upstream_unreachable"), "fd %d reason %s", fd, reason);
}

TEST(route_follows_the_client_tunnel)
{
	struct conn_info info = { 0 };
	struct egress_route r;
	char err[256];
	static const uint8_t v4[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 3 };
	memcpy(info.origin.orig_addr, v4, 16);
	info.origin.orig_port = 3128;
	snprintf(info.tunnel_host, sizeof(info.tunnel_host), "api.openai.com");
	info.tunnel_port = 443;
	snprintf(info.tunnel_auth, sizeof(info.tunnel_auth), "Basic eA==");
	CHECK(egress_route_for(&ag, &info, &r, err, sizeof(err)) == 0 && r.via_proxy && r.port == 443 &&
	      !strcmp(r.host, "api.openai.com") && r.auth && !strcmp(r.auth, "Basic eA==") &&
	      ntohs(((struct sockaddr_in *)&r.addr)->sin_port) == 3128, "tunnel route");
	info.tunnel_port = 0;
	CHECK(egress_route_for(&ag, &info, &r, err, sizeof(err)) == 0 && !r.via_proxy &&
	      ((struct sockaddr_in *)&r.addr)->sin_addr.s_addr == htonl(0x0a000003), "direct route");
}
