/* libFuzzer target: token restoration over arbitrary response bytes. The
 * restorer must never crash or leak, and the output must not depend on how
 * the stream was cut: feeding the input whole and feeding it in two pieces
 * at a position taken from the input give the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "content/detok.h"
#include "content/redact.h"

static struct vault *vault;
static char tok[VAULT_TOKEN_MAX + 1];

static void restore(const uint8_t *d, size_t n, size_t cut, struct buf *out, bool esc)
{
	struct detok *t = detok_new(vault, esc);
	if (!t)
		abort();
	detok_feed(t, (const char *)d, cut, out);
	detok_feed(t, (const char *)d + cut, n - cut, out);
	detok_finish(t, out);
	detok_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vault) {
		vault = vault_new((const unsigned char *)"fuzz-key", 8, 16);
		vault_tokenize(vault, FINDING_EMAIL, "a\"b@example.com", 15, tok);
	}
	if (size < 1)
		return 0;
	bool esc = data[0] & 1;
	size_t cut = size > 1 ? data[1] % size : 0;
	/* Splice a real token into the input so restorations happen. */
	size_t n = size + strlen(tok);
	uint8_t *buf = malloc(n);
	size_t at = size / 2;
	memcpy(buf, data, at);
	memcpy(buf + at, tok, strlen(tok));
	memcpy(buf + at + strlen(tok), data + at, size - at);
	struct buf whole = { 0 }, split = { 0 };
	restore(buf, n, 0, &whole, esc);
	restore(buf, n, cut % n, &split, esc);
	if (whole.len != split.len || memcmp(whole.data, split.data, whole.len))
		abort();
	buf_free(&whole);
	buf_free(&split);
	free(buf);
	return 0;
}
