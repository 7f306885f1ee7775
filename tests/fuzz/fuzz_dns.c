/* libFuzzer target: the DNS answer reader (bytes any host on the path can
 * send to a workstation's UDP/53 clients) must never read out of bounds or
 * loop, and whatever it reports is a valid lowercase name with an IPv4 or
 * IPv6 address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kernel/dnsmsg.h"

static void check_addr(void *arg, const char *qname, const struct sockaddr *addr, uint32_t ttl)
{
	size_t n = strlen(qname);
	(void)arg, (void)ttl;
	if (n == 0 || n > 253 || strspn(qname, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != n)
		abort();
	if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int n = dnsmsg_addresses(data, size, check_addr, NULL);
	if (n < -22 || n > 48)
		abort();
	return 0;
}
