/* answer: redaction of the model's answer, whole or streamed.
 *
 * Stream: the buffer holds up to ANSWER_CONTEXT_BYTES of text already
 * released (left context, so a detector that looks behind a value still
 * sees it) followed by the pending text. Every ANSWER_HOLD_BYTES of new
 * text the buffer is scanned whole (inspect_text) and the pending text is
 * released up to a cut ANSWER_HOLD_BYTES before its end, moved back to
 * the start of any value that crosses it. Scanning ~3x the text (context,
 * held and new bytes) keeps the cost per byte bounded whatever the event
 * size: one-byte deltas do not rescan per byte.
 *
 * Whole documents: every model text field is decoded, scanned, and its
 * spans mapped back to raw offsets; redact_body then rewrites only those
 * strings, so the rest of the document is copied byte for byte.
 */
#include "content/answer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "providers/providers.h"

struct answer {
	struct inspect_scratch *s;
	const struct redact_policy *pol;
	struct redact_session *rs;
	struct buf t;               /* secret: released context, then pending text */
	size_t rel;                 /* t.data[0..rel) was released (context) */
	bool overrun;
	struct inspect_result r;
	struct inspect_result rel_spans;   /* spans to replace in one release */
	uint32_t counts[FINDING__COUNT];
};

struct answer *answer_new(struct inspect_scratch *scratch, const struct redact_policy *pol)
{
	struct answer *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->s = scratch;
	a->pol = pol;
	a->t.secret = true;
	inspect_result_init(&a->r);
	inspect_result_init(&a->rel_spans);
	if (!(a->rs = redact_session_new(pol))) {
		free(a);
		return NULL;
	}
	return a;
}

void answer_free(struct answer *a)
{
	if (!a)
		return;
	buf_free(&a->t);
	inspect_result_free(&a->rel_spans);
	inspect_result_free(&a->r);
	redact_session_free(a->rs);
	free(a);
}

const uint32_t *answer_counts(const struct answer *a)
{
	return a->counts;
}

static bool acts_on(const struct answer *a, enum finding_type t)
{
	return (unsigned)t < FINDING__COUNT && a->pol->action[t] != REDACT_KEEP;
}

/* Where released text may end: before the last ANSWER_HOLD_BYTES (all of
 * it if final), and never inside a value. Sets a->overrun if a value
 * reaches back into text already released. */
static size_t find_cut(struct answer *a, bool final)
{
	size_t cut = final ? a->t.len : a->t.len - ANSWER_HOLD_BYTES;
	bool moved = true;
	while (moved) {
		moved = false;
		for (size_t i = 0; i < a->r.nspans; i++) {
			const struct inspect_span *sp = &a->r.spans[i];
			if (sp->end <= a->rel || !acts_on(a, sp->type))
				continue;      /* context, or a type left as is */
			if (sp->start < a->rel) {
				a->overrun = true;
				return a->rel;
			}
			if (sp->start < cut && sp->end > cut) {
				cut = sp->start;
				moved = true;
			}
		}
	}
	return cut;
}

static int release(struct answer *a, bool final, struct buf *out)
{
	int rc = inspect_text(a->s, a->t.data, a->t.len, &a->r);
	size_t cut, replaced;
	if (rc)
		return rc;
	cut = find_cut(a, final);
	if (a->overrun || (!final && a->t.len - cut > ANSWER_MAX_HELD)) {
		a->overrun = true;   /* a value longer than we may hold */
		return ANSWER_OVERRUN;
	}
	a->rel_spans.nspans = 0;
	for (size_t i = 0; i < a->r.nspans; i++) {
		struct inspect_span sp = a->r.spans[i];
		if (sp.start < a->rel || sp.end > cut || !acts_on(a, sp.type))
			continue;
		sp.start -= a->rel;
		sp.end -= a->rel;
		if ((rc = inspect_result_push(&a->rel_spans, &sp)))
			return rc;
	}
	if ((rc = redact_text(a->rs, a->t.data + a->rel, cut - a->rel, a->rel_spans.spans, a->rel_spans.nspans, out,
			      &replaced)))
		return rc;
	for (size_t i = 0; i < a->rel_spans.nspans; i++)
		a->counts[a->rel_spans.spans[i].type]++;
	a->rel = cut;
	if (a->rel > ANSWER_CONTEXT_BYTES) {
		size_t drop = a->rel - ANSWER_CONTEXT_BYTES;
		memmove(a->t.data, a->t.data + drop, a->t.len - drop);
		OPENSSL_cleanse(a->t.data + a->t.len - drop, drop);
		a->t.len -= drop;
		a->rel -= drop;
	}
	return 0;
}

int answer_feed(struct answer *a, const char *text, size_t n, struct buf *out)
{
	int rc;
	if (a->overrun)
		return ANSWER_OVERRUN;
	if (n && (rc = buf_append(&a->t, text, n)))   /* an empty delta may come with no text */
		return rc;
	if (a->t.len - a->rel < 2 * ANSWER_HOLD_BYTES)
		return 0;
	return release(a, false, out);
}

int answer_finish(struct answer *a, struct buf *out)
{
	if (a->overrun)
		return ANSWER_OVERRUN;
	if (a->t.len == a->rel)
		return 0;
	return release(a, true, out);
}

/* ---------------------------------------------------------- documents */

struct doc_ctx {
	struct inspect_scratch *s;
	answer_text_fn is_text;
	const struct redact_policy *pol;
	struct inspect_result *all;   /* spans in raw document offsets */
	struct inspect_result one;    /* one decoded string */
	struct json_text t;
};

static int doc_string(void *vctx, const char *doc, const struct json_string *s)
{
	struct doc_ctx *c = vctx;
	int rc;
	if (s->kind != JSON_STRING || s->is_key || !c->is_text(s->path))
		return 0;
	if ((rc = json_decode(doc + s->off, s->len, &c->t)) ||
	    (rc = inspect_text(c->s, c->t.data, c->t.len, &c->one)))
		return rc;
	for (size_t i = 0; i < c->one.nspans; i++) {
		const struct inspect_span *d = &c->one.spans[i];
		if (c->pol->action[d->type] == REDACT_KEEP)
			continue;
		struct inspect_span sp = *d;
		sp.in_json = true;
		sp.start = s->off + c->t.map[d->start];
		sp.end = s->off + c->t.map[d->end];
		sp.str_off = s->off;
		sp.str_len = s->len;
		if ((rc = inspect_result_push(c->all, &sp)))
			return rc;
	}
	return 0;
}

int answer_redact_doc(struct inspect_scratch *scratch, const struct redact_policy *pol,
		      answer_text_fn is_text, const char *doc, size_t len, struct buf *out,
		      uint32_t *counts)
{
	struct inspect_result all;
	struct doc_ctx c;
	int rc;

	memset(&c, 0, sizeof(c));
	c.s = scratch;
	c.pol = pol;
	c.all = &all;
	c.is_text = is_text ? is_text : provider_response_text_path;
	inspect_result_init(&all);
	inspect_result_init(&c.one);
	if (json_valid(doc, len)) {
		rc = json_scan(doc, len, doc_string, &c);
	} else {
		/* not JSON (a text/plain answer): the whole body is model text */
		rc = inspect_text(scratch, doc, len, &all);
		size_t k = 0;
		for (size_t i = 0; i < all.nspans; i++)
			if (pol->action[all.spans[i].type] != REDACT_KEEP)
				all.spans[k++] = all.spans[i];
		all.nspans = k;
		memset(&all.info, 0, sizeof(all.info));
	}
	if (rc == 0 && all.nspans) {
		rc = redact_body(doc, len, &all, pol, out, NULL);
		if (rc == REDACT_CHANGED)
			for (size_t i = 0; i < all.nspans; i++)
				counts[all.spans[i].type]++;
		else if (rc == REDACT_INVALID_JSON)
			rc = REDACT_UNCHANGED;
	}
	json_text_free(&c.t);   /* wiped */
	inspect_result_free(&c.one);
	inspect_result_free(&all);
	return rc;
}
