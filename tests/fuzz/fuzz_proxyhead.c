/* libFuzzer target for agent/proxy/proxyhead.c: a client's request to its proxy
 * and a proxy's answer to the agent's CONNECT, both hostile bytes.
 * Properties, aborting on a violation:
 *  - every prefix of an accepted head answers 0 (more) or the same length;
 *  - an accepted host is normalised (no upper case, no trailing dot, only
 *    name characters or an address literal) and the port is 1..65535;
 *  - the Proxy-Authorization value lies inside the head;
 *  - the CONNECT the agent would send for that host re-parses to the same
 *    host and port.
 * Input: byte 0 selects the target. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxyhead.h"

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static void fuzz_client(const char *d, size_t n)
{
	struct proxyhead ph, ph2;
	char out[1024];
	int hl = proxyhead_parse(d, n, 4096, &ph);

	if (hl <= 0)
		return;
	REQUIRE((size_t)hl <= n && ph.head_len == (size_t)hl && ph.port >= 1);
	for (size_t i = 0; i < (size_t)hl; i += 7) {
		int r = proxyhead_parse(d, i, 4096, &ph2);
		REQUIRE(r == 0 || r < 0);
	}
	for (const char *p = ph.host; *p; p++)
		REQUIRE(!(*p >= 'A' && *p <= 'Z') && *p != ' ' && *p != '@' && *p != '/');
	REQUIRE(ph.host[0] && ph.host[strlen(ph.host) - 1] != '.');
	REQUIRE(!ph.auth || (ph.auth >= d && ph.auth + ph.auth_len <= d + hl));
	int m = proxyhead_connect_request(out, sizeof(out), ph.host, ph.port, NULL, 0);
	REQUIRE(m > 0);
	REQUIRE(proxyhead_parse(out, (size_t)m, 4096, &ph2) == m);
	REQUIRE(!strcmp(ph.host, ph2.host) && ph.port == ph2.port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int status;
	if (size < 1)
		return 0;
	const char *d = (const char *)data + 1;
	size_t n = size - 1;
	if (data[0] & 1) {
		fuzz_client(d, n);
	} else {
		int64_t body = 0;
		int r = proxyhead_connect_reply(d, n, 2048, &status, &body);
		REQUIRE(r <= 0 || ((size_t)r <= n && status >= 100 && status <= 599));
	}
	return 0;
}
