/* libFuzzer target: the web app adapters on hostile requests. Input: a
 * host, a path and a body separated by NUL bytes. Request parsing, route
 * matching and the refusal never crash or read out of bounds, a
 * conversation id only ever holds id characters, and a refusal's
 * Content-Length is its body's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "providers/providers.h"
#include "providers/webapps.h"

static int nop(void *ctx, size_t off, size_t len, bool visible)
{
	(void)ctx; (void)off; (void)len; (void)visible;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char host[256] = "chatgpt.com", path[1024] = "/backend-api/conversation", out[4096];
	const char *d = (const char *)data, *e = d + size, *z;
	struct provider_info info;
	if ((z = memchr(d, 0, (size_t)(e - d)))) {
		if ((size_t)(z - d) < sizeof(host) && z > d)
			memcpy(host, d, (size_t)(z - d)), host[z - d] = 0;
		d = z + 1;
		if ((z = memchr(d, 0, (size_t)(e - d)))) {
			if ((size_t)(z - d) < sizeof(path))
				memcpy(path, d, (size_t)(z - d)), path[z - d] = 0;
			d = z + 1;
		}
	}
	char *body = malloc((size_t)(e - d) + 1);
	if (!body)
		return 0;
	memcpy(body, d, (size_t)(e - d));
	provider_parse_request(host, path, body, (size_t)(e - d), &info, nop, NULL);
	for (const char *c = info.conversation; *c; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:", *c))
			abort();
	const struct webapp *a = provider_webapp(info.provider);
	if (a) {
		body[e - d] = 0;
		int n = webapp_refusal(a, path, host, 403, "policy_blocked", body, out, sizeof(out));
		if (n > 0) {
			const char *cl = strstr(out, "Content-Length: "), *b = strstr(out, "\r\n\r\n");
			if (!cl || !b || (size_t)atol(cl + 16) != (size_t)n - (size_t)(b + 4 - out))
				abort();
		}
	}
	free(body);
	return 0;
}
