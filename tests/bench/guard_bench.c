/* guard_bench: the load driver of tests/bench/guard_bench.py (the
 * first-flight guard's cost on non-LLM traffic). No agent code: plain
 * sockets, timed from the client side.
 *
 *   guard_bench serve HOST PORT       accept one at a time: read until the end of an HTTP head
 *                                     (or EOF), answer "ok", close (the server closes first, so
 *                                     TIME_WAIT stays on its side and the client never runs out
 *                                     of ports)
 *   guard_bench conn HOST PORT N      N x (connect, send a 40-byte HTTP request for example.org,
 *                                     read the answer, close); prints one JSON line
 *   guard_bench bulk HOST PORT MIB    one connection, MIB MiB of bytes that are no protocol,
 *                                     then wait for the answer; prints one JSON line
 * JSON: wall and CPU (user + system, this process: the send path runs in
 * the sender's context) per connection or per MiB. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static struct sockaddr_in addr_of(const char *host, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };

	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "guard_bench: bad IPv4 address %s\n", host);
		exit(2);
	}
	return sa;
}

static int serve(struct sockaddr_in sa)
{
	static char buf[1 << 20];
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1024)) {
		perror("guard_bench: listen");
		return 1;
	}
	printf("serve ready\n");
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		size_t have = 0;
		ssize_t n;

		if (fd < 0)
			continue;
		while ((n = read(fd, buf + (have < 64 ? have : 64), sizeof(buf) - 64)) > 0) {
			have += (size_t)n;
			/* an HTTP head ends the request; anything else runs to EOF */
			if (have <= 64 && memmem(buf, have, "\r\n\r\n", 4))
				break;
		}
		if (write(fd, "ok", 2) < 0)
			perror("guard_bench: write");
		close(fd);
	}
}

static int conn(struct sockaddr_in sa, long n)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
	double t0 = now_s(), c0 = cpu_s();
	char buf[16];
	long errors = 0;

	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
		    write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1 || read(fd, buf, sizeof(buf)) != 2)
			errors++;
		if (fd >= 0)
			close(fd);
	}
	printf("{\"n\": %ld, \"errors\": %ld, \"wall_us\": %.3f, \"cpu_us\": %.3f}\n", n, errors,
	       (now_s() - t0) * 1e6 / n, (cpu_s() - c0) * 1e6 / n);
	return errors ? 1 : 0;
}

static int bulk(struct sockaddr_in sa, long mib)
{
	static char buf[1 << 20];
	double t0, c0;
	char ans[4];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);       /* starts with 0x00: not TLS, not HTTP */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("guard_bench: connect");
		return 1;
	}
	t0 = now_s();
	c0 = cpu_s();
	for (long i = 0; i < mib; i++) {
		size_t off = 0;

		while (off < sizeof(buf)) {
			ssize_t w = write(fd, buf + off, sizeof(buf) - off);

			if (w <= 0) {
				perror("guard_bench: write");
				return 1;
			}
			off += (size_t)w;
		}
	}
	shutdown(fd, SHUT_WR);
	if (read(fd, ans, sizeof(ans)) != 2) {
		fprintf(stderr, "guard_bench: no answer\n");
		return 1;
	}
	printf("{\"mib\": %ld, \"mib_s\": %.1f, \"cpu_ms_per_gib\": %.1f}\n", mib, mib / (now_s() - t0),
	       (cpu_s() - c0) * 1e3 * 1024 / mib);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(addr_of(argv[2], argv[3]));
	if (argc == 5 && !strcmp(argv[1], "conn"))
		return conn(addr_of(argv[2], argv[3]), atol(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "bulk"))
		return bulk(addr_of(argv[2], argv[3]), atol(argv[4]));
	fprintf(stderr, "usage: guard_bench serve|conn|bulk HOST PORT [N|MIB]\n");
	return 2;
}
