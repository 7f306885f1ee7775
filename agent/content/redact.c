/* redact: replacement of findings in a request body (vault.c keeps the
 * reversible tokens).
 *
 * JSON correctness comes from never editing raw bytes inside a string:
 * a string holding findings is decoded, edited as UTF-8 and re-encoded
 * with json_encode, and spliced between the untouched bytes around it.
 * Values seen during a call live only in this call's memory (wiped on
 * return); the vault keeps tokenized values until it wipes them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "content/redact.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* -------------------------------------------------------------- redaction */

const char *redact_action_name(enum redact_action a)
{
	switch (a) {
	case REDACT_KEEP: return "keep";
	case REDACT_PLACEHOLDER: return "redact";
	case REDACT_MASK: return "mask";
	case REDACT_HASH: return "hash";
	case REDACT_TOKENIZE: return "tokenize";
	}
	return "keep";
}

int redact_action_from_name(const char *name)
{
	static const char *const n[] = { "keep", "redact", "mask", "hash", "tokenize" };
	for (int i = 0; i < 5; i++)
		if (name && strcmp(name, n[i]) == 0)
			return i;
	return -1;
}

/* distinct values seen in this body, for [TYPE_n] numbering */
struct seen {
	unsigned char digest[32];
	enum finding_type type;
	unsigned num;
};

struct rctx {
	const struct redact_policy *pol;
	struct seen *seen;
	size_t nseen, capseen;
	unsigned next_num[FINDING__COUNT];
	unsigned char nkey[32];   /* per-call key for the numbering digest */
	size_t replaced;
};

static bool alnum_c(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int mask_value(enum finding_type type, const char *v, size_t n, struct buf *o)
{
	int rc;
	if (type == FINDING_EMAIL) {
		const char *at = memrchr(v, '@', n);
		if (at && at > v) {
			if ((rc = buf_append(o, v, 1)) || (rc = buf_append(o, "***", 3)))
				return rc;
			return buf_append(o, at, (size_t)(v + n - at));
		}
	}
	if (finding_is_secret(type) || type == FINDING_CUSTOM) {
		/* a secret keeps only a short prefix (sk-p, AKIA, ghp_) */
		size_t keep = n >= 16 ? 4 : 0;
		if ((rc = buf_append(o, v, keep)))
			return rc;
		return buf_append(o, "****", 4);
	}
	/* PII: keep separators and the last 4 alphanumerics (IBAN: also the
	 * country code) so the model still sees what kind of value it was */
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += alnum_c(v[i]);
	size_t seen = 0;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (alnum_c(c)) {
			seen++;
			bool keep = seen + 4 > total || (type == FINDING_IBAN && seen <= 2);
			if (type == FINDING_IP_ADDRESS)
				keep = false;
			if (!keep)
				c = '*';
		}
		if ((rc = buf_append(o, &c, 1)))
			return rc;
	}
	return 0;
}

/* Append the replacement for value v of type t (decoded UTF-8) to o. */
static int replacement(struct rctx *c, enum finding_type t, const char *v, size_t n,
		       struct buf *o)
{
	const struct redact_policy *pol = c->pol;
	char tmp[96];
	unsigned char d[32];
	int rc;
	switch (pol->action[t]) {
	case REDACT_KEEP:
		return buf_append(o, v, n);
	case REDACT_MASK:
		return mask_value(t, v, n, o);
	case REDACT_HASH:
		if (!pol->hash_key || !pol->hash_key_len)
			return -EINVAL;
		if ((rc = vault_keyed_digest(pol->hash_key, pol->hash_key_len, t, 0, v, n, d)))
			return rc;
		snprintf(tmp, sizeof(tmp), "[%s:%02x%02x%02x%02x]", finding_name(t), d[0], d[1], d[2], d[3]);
		return buf_append(o, tmp, strlen(tmp));
	case REDACT_TOKENIZE: {
		char tok[VAULT_TOKEN_MAX + 1];
		if (!pol->vault)
			return -EINVAL;
		if ((rc = vault_tokenize(pol->vault, t, v, n, tok)))
			return rc;
		return buf_append(o, tok, strlen(tok));
	}
	case REDACT_PLACEHOLDER:
	default: {
		if ((rc = vault_keyed_digest(c->nkey, sizeof(c->nkey), t, 0, v, n, d)))
			return rc;
		unsigned num = 0;
		for (size_t i = 0; i < c->nseen && !num; i++)
			if (c->seen[i].type == t && !memcmp(c->seen[i].digest, d, 32))
				num = c->seen[i].num;
		if (!num) {
			if (c->nseen == c->capseen) {
				size_t nc = c->capseen ? c->capseen * 2 : 16;
				struct seen *p = realloc(c->seen, nc * sizeof(*p));
				if (!p)
					return -ENOMEM;
				c->seen = p;
				c->capseen = nc;
			}
			num = ++c->next_num[t];
			c->seen[c->nseen].type = t;
			c->seen[c->nseen].num = num;
			memcpy(c->seen[c->nseen].digest, d, 32);
			c->nseen++;
		}
		snprintf(tmp, sizeof(tmp), "[%s_%u]", finding_name(t), num);
		return buf_append(o, tmp, strlen(tmp));
	}
	}
}

struct redact_session {
	struct rctx c;
};

struct redact_session *redact_session_new(const struct redact_policy *pol)
{
	struct redact_session *rs = calloc(1, sizeof(*rs));
	if (!rs)
		return NULL;
	rs->c.pol = pol;
	if (RAND_bytes(rs->c.nkey, sizeof(rs->c.nkey)) != 1) {
		free(rs);
		return NULL;
	}
	return rs;
}

void redact_session_free(struct redact_session *rs)
{
	if (!rs)
		return;
	free(rs->c.seen);
	OPENSSL_cleanse(rs, sizeof(*rs));
	free(rs);
}

int redact_text(struct redact_session *rs, const char *text, size_t n,
		const struct inspect_span *sp, size_t nsp, struct buf *out, size_t *replaced)
{
	size_t pos = 0, before = rs->c.replaced;
	int rc;
	for (size_t k = 0; k < nsp; k++) {
		if (sp[k].start < pos || sp[k].end <= sp[k].start || sp[k].end > n)
			continue;
		if ((rc = buf_append(out, text + pos, sp[k].start - pos)) ||
		    (rc = replacement(&rs->c, sp[k].type, text + sp[k].start, sp[k].end - sp[k].start, out)))
			return rc;
		if (rs->c.pol->action[sp[k].type] != REDACT_KEEP)
			rs->c.replaced++;
		pos = sp[k].end;
	}
	if (replaced)
		*replaced = rs->c.replaced - before;
	return buf_append(out, text + pos, n - pos);
}

/* first decoded index whose raw offset is >= raw */
static size_t dec_index(const struct json_text *t, size_t raw)
{
	size_t lo = 0, hi = t->len;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->map[mid] < raw)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Rewrite spans [i, j) that all lie in the JSON string at str_off. */
static int redact_string(struct rctx *c, const char *body, const struct inspect_span *sp,
			 size_t nsp, struct buf *out, struct json_text *t, struct buf *dec)
{
	size_t off = sp[0].str_off, len = sp[0].str_len;
	int rc = json_decode(body + off, len, t);
	if (rc)
		return rc;
	dec->len = 0;
	size_t pos = 0;
	for (size_t k = 0; k < nsp; k++) {
		size_t ds = dec_index(t, sp[k].start - off);
		size_t de = dec_index(t, sp[k].end - off);
		if (ds < pos || de <= ds || de > t->len)
			continue;                           /* overlapping or empty: skip */
		if ((rc = buf_append(dec, t->data + pos, ds - pos)))
			return rc;
		if ((rc = replacement(c, sp[k].type, t->data + ds, de - ds, dec)))
			return rc;
		if (c->pol->action[sp[k].type] != REDACT_KEEP)
			c->replaced++;
		pos = de;
	}
	if ((rc = buf_append(dec, t->data + pos, t->len - pos)))
		return rc;
	rc = json_encode(dec->data ? dec->data : "", dec->len, out);
	OPENSSL_cleanse(t->data, t->len);
	if (dec->data)
		OPENSSL_cleanse(dec->data, dec->len);
	return rc;
}

int redact_body(const char *body, size_t len, const struct inspect_result *r,
		const struct redact_policy *pol, struct buf *out, size_t *replaced)
{
	struct rctx c = { .pol = pol };
	struct buf tmp = { .secret = true }, dec = { .secret = true };
	struct json_text t = { 0 };
	size_t orig_len = out->len;
	int rc = 0;

	if (replaced)
		*replaced = 0;
	if (r->info.invalid_json)
		return REDACT_INVALID_JSON;
	bool any = false;
	for (size_t i = 0; i < r->nspans; i++)
		any |= pol->action[r->spans[i].type] != REDACT_KEEP;
	if (!any)
		return REDACT_UNCHANGED;
	if (RAND_bytes(c.nkey, sizeof(c.nkey)) != 1)
		return -EIO;

	size_t pos = 0, i = 0;
	while (i < r->nspans) {
		const struct inspect_span *sp = &r->spans[i];
		if (sp->start < pos || sp->end > len || sp->start >= sp->end) {
			i++;
			continue;
		}
		if (!sp->in_json) {
			/* plain text body: replace raw bytes directly */
			if ((rc = buf_append(&tmp, body + pos, sp->start - pos)) ||
			    (rc = replacement(&c, sp->type, body + sp->start, sp->end - sp->start, &tmp)))
				goto done;
			if (pol->action[sp->type] != REDACT_KEEP)
				c.replaced++;
			pos = sp->end;
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < r->nspans && r->spans[j].in_json && r->spans[j].str_off == sp->str_off)
			j++;
		bool act = false;
		for (size_t k = i; k < j; k++)
			act |= pol->action[r->spans[k].type] != REDACT_KEEP;
		if (!act || sp->str_off < pos || sp->str_off + sp->str_len > len) {
			i = j;
			continue;
		}
		if ((rc = buf_append(&tmp, body + pos, sp->str_off - pos)) ||
		    (rc = redact_string(&c, body, sp, j - i, &tmp, &t, &dec)))
			goto done;
		pos = sp->str_off + sp->str_len;
		i = j;
	}
	if ((rc = buf_append(&tmp, body + pos, len - pos)))
		goto done;
	if (c.replaced == 0) {
		rc = REDACT_UNCHANGED;
		goto done;
	}
	if ((rc = buf_append(out, tmp.data, tmp.len)))
		goto done;
	rc = REDACT_CHANGED;
done:
	if (rc < 0)
		out->len = orig_len;
	if (replaced)
		*replaced = c.replaced;
	buf_free(&tmp);
	buf_free(&dec);
	json_text_free(&t);
	free(c.seen);
	OPENSSL_cleanse(c.nkey, sizeof(c.nkey));
	return rc;
}
