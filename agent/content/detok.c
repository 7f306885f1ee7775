/* detok: token restoration in response streams.
 *
 * A token is "[[VGL_" [A-Z_]+ "_" 6 hex "]]" (redact.h). The restorer
 * copies bytes through until it meets '['; from there it either sees a
 * whole token (restore or pass through), sees a byte that no token could
 * contain (pass the '[' through and continue after it), or reaches the
 * end of the chunk while the bytes are still a possible token prefix:
 * only then are they held back, never more than VAULT_TOKEN_MAX bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "content/detok.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

struct detok {
	struct vault *v;
	bool json;
	char held[VAULT_TOKEN_MAX];
	size_t nheld;
	size_t restored;
	struct buf work;
	struct buf val;     /* a restored value, copied out of the vault; wiped */
};

struct detok *detok_new(struct vault *v, bool json_escape)
{
	struct detok *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->v = v;
	d->json = json_escape;
	d->val.secret = true;
	return d;
}

void detok_free(struct detok *d)
{
	if (!d)
		return;
	buf_free(&d->work);
	buf_free(&d->val);
	free(d);
}

size_t detok_restored(const struct detok *d)
{
	return d->restored;
}

static bool tok_body_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '_';
}

/* How p[0..n) (starting with '[') relates to the token grammar:
 * >0: a complete token of that length; 0: a prefix that may still become
 * a token; <0: cannot be a token. */
static long tok_match(const char *p, size_t n)
{
	static const char pre[] = VAULT_TOKEN_PREFIX;
	const size_t pl = sizeof(pre) - 1;
	size_t i;
	for (i = 0; i < n && i < pl; i++)
		if (p[i] != pre[i])
			return -1;
	if (i < pl)
		return 0;
	for (; i < n && i < VAULT_TOKEN_MAX; i++) {
		if (p[i] == ']') {
			if (i + 1 >= n)
				return i + 2 <= VAULT_TOKEN_MAX ? 0 : -1;
			if (p[i + 1] != ']' || i == pl)
				return -1;
			return (long)(i + 2);
		}
		if (!tok_body_char(p[i]))
			return -1;
	}
	return i >= VAULT_TOKEN_MAX ? -1 : 0;
}

static int emit_value(struct detok *d, const char *v, size_t n, struct buf *out)
{
	if (d->json)
		return json_encode(v, n, out);
	return buf_append(out, v, n);
}

/* Process buf[0..n); hold back a trailing token prefix unless final. */
static int process(struct detok *d, const char *buf, size_t n, bool final, struct buf *out)
{
	size_t i = 0, run = 0;
	int rc;
	while (i < n) {
		const char *b = memchr(buf + i, '[', n - i);
		if (!b)
			break;
		i = (size_t)(b - buf);
		long m = tok_match(buf + i, n - i);
		if (m < 0) {
			i++;
			continue;
		}
		if (m == 0) {
			if (final) {
				i++;
				continue;
			}
			/* hold back the possible prefix */
			if ((rc = buf_append(out, buf + run, i - run)))
				return rc;
			d->nheld = n - i;
			memmove(d->held, buf + i, d->nheld);
			return 0;
		}
		d->val.len = 0;
		if ((rc = vault_lookup(d->v, buf + i, (size_t)m, &d->val)) < 0)
			return rc;
		if (rc == 0) {
			i += (size_t)m;
			continue;
		}
		rc = buf_append(out, buf + run, i - run);
		if (!rc)
			rc = emit_value(d, d->val.data, d->val.len, out);
		OPENSSL_cleanse(d->val.data, d->val.len);
		if (rc)
			return rc;
		d->restored++;
		i += (size_t)m;
		run = i;
	}
	d->nheld = 0;
	return buf_append(out, buf + run, n - run);
}

int detok_feed(struct detok *d, const char *in, size_t n, struct buf *out)
{
	int rc;
	if (!d->nheld)
		return process(d, in, n, false, out);
	/* a prefix is held (rare: a chunk ended inside a possible token):
	 * join it with this chunk; the copy is bounded by the chunk size */
	d->work.len = 0;
	if ((rc = buf_append(&d->work, d->held, d->nheld)) ||
	    (rc = buf_append(&d->work, in, n)))
		return rc;
	d->nheld = 0;
	return process(d, d->work.data, d->work.len, false, out);
}

int detok_finish(struct detok *d, struct buf *out)
{
	size_t n = d->nheld;
	char tmp[VAULT_TOKEN_MAX];
	memcpy(tmp, d->held, n);
	d->nheld = 0;
	return process(d, tmp, n, true, out);
}
