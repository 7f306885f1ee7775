/* protowalk: schema-less protobuf reading and rewriting (see protowalk.h).
 *
 * The classification of a length-delimited payload (text, message or
 * bytes) is one function used by both the walk and the rewrite, so a
 * rewrite always re-encodes exactly the structure the inspector saw.
 * Must never: read past a length, recurse past PROTOWALK_MAX_DEPTH, or
 * accept groups (wire types 3 and 4, deprecated; a group in an LLM API is
 * more likely an attacker's way to hide text from a schema-less reader
 * than a real field, and it is refused as not a message). */
#include <errno.h>
#include <string.h>
#include "content/protowalk.h"
#include "utf8.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* One varint at *p (at most 10 bytes, before end). 0 or -EINVAL. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (*p >= end)
			return -EINVAL;
		uint8_t b = *(*p)++;
		if (i == 9 && b > 1)
			return -EINVAL;
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -EINVAL;
}

/* One field's tag and payload bounds. */
struct field {
	uint32_t num;
	unsigned wt;
	uint64_t value;
	const uint8_t *start;          /* the tag */
	const uint8_t *pay, *pay_end;  /* LEN: the payload */
};

static int next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	uint64_t tag, n;

	f->start = *p;
	if (varint(p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
		return -EINVAL;
	f->num = (uint32_t)(tag >> 3);
	f->wt = (unsigned)(tag & 7);
	switch (f->wt) {
	case WT_VARINT:
		return varint(p, end, &f->value);
	case WT_I64:
	case WT_I32: {
		size_t w = f->wt == WT_I64 ? 8 : 4;
		if ((size_t)(end - *p) < w)
			return -EINVAL;
		f->value = 0;
		for (size_t i = 0; i < w; i++)
			f->value |= (uint64_t)(*p)[i] << (8 * i);
		*p += w;
		return 0;
	}
	case WT_LEN:
		if (varint(p, end, &n) || n > (uint64_t)(end - *p))
			return -EINVAL;
		f->pay = *p;
		f->pay_end = *p + n;
		*p += n;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Strict UTF-8. printable: also no C0 controls other than tab, CR, LF,
 * and no DEL. */
static bool utf8_ok(const uint8_t *p, size_t n, bool *printable)
{
	*printable = true;
	for (size_t i = 0, l; i < n; i += l) {
		if (!(l = utf8_len(p + i, n - i)))
			return false;
		if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] == 0x7f)
			*printable = false;
	}
	return true;
}

/* Whether p[0..end) is a sequence of whole fields (one level: nested
 * payloads are classified when the walk reaches them). */
static bool is_message(const uint8_t *p, const uint8_t *end)
{
	struct field f;
	while (p < end) {
		if (next_field(&p, end, &f))
			return false;
	}
	return true;
}

/* Whether printable text p[0..end) also reads whole as fields, one of
 * them length-delimited: a nested message whose first tag and length are
 * printable bytes (field 4 or higher, a length of 32 or more) is read as
 * text (it is inspected whole), but a rewrite that changed its length
 * would leave the inner length stale. */
static bool nests_message(const uint8_t *p, const uint8_t *end)
{
	struct field f;
	bool len_field = false;
	while (p < end) {
		if (next_field(&p, end, &f))
			return false;
		len_field |= f.wt == WT_LEN;
	}
	return len_field;
}

enum payload { PAY_TEXT, PAY_MESSAGE, PAY_BYTES, PAY_TOO_DEEP };

/* The one classification (see the file comment). Printable text first:
 * a nested message nearly always has a control byte (a tag of a low field
 * or a short length) within its first two bytes, so prose is not taken
 * for one. The exception: field 1 as a length (0x0a, '\n'), fixed64
 * ('\t') or fixed32 ('\r') followed by printable bytes (Vertex AI's
 * Part { text = 1 } of 9, 10 or 13 bytes is "\n\n..."): printable text
 * that starts so and parses whole as fields is taken for a message. */
static enum payload classify(const uint8_t *p, const uint8_t *end, unsigned depth)
{
	bool printable;
	bool utf8 = utf8_ok(p, (size_t)(end - p), &printable);

	if (p == end)
		return PAY_TEXT;
	if (utf8 && printable && !((*p == '\n' || *p == '\t' || *p == '\r') && end - p >= 2))
		return PAY_TEXT;
	if (is_message(p, end))
		/* past the depth limit a message is refused, never read as
		 * text: a redaction inside it would break its inner lengths */
		return depth + 1 < PROTOWALK_MAX_DEPTH ? PAY_MESSAGE : PAY_TOO_DEEP;
	return utf8 ? PAY_TEXT : PAY_BYTES;
}

struct walk {
	const uint8_t *base;
	protowalk_fn fn;
	void *arg;
	uint32_t path[PROTOWALK_MAX_DEPTH];
	unsigned fields;
};

static int walk_msg(struct walk *w, const uint8_t *p, const uint8_t *end, unsigned depth)
{
	struct field f;
	int rc;

	while (p < end) {
		if (next_field(&p, end, &f))
			return -EINVAL;
		if (++w->fields > PROTOWALK_MAX_FIELDS)
			return -E2BIG;
		w->path[depth] = f.num;
		struct protowalk_field out = { .path = w->path, .depth = depth + 1, .value = f.value };
		if (f.wt == WT_LEN) {
			enum payload k = classify(f.pay, f.pay_end, depth);
			if (k == PAY_TOO_DEEP)
				return -E2BIG;
			if (k == PAY_MESSAGE) {
				if ((rc = walk_msg(w, f.pay, f.pay_end, depth + 1)))
					return rc;
				continue;
			}
			out.kind = k == PAY_TEXT ? PROTOWALK_TEXT : PROTOWALK_BYTES;
			out.off = (size_t)(f.pay - w->base);
			out.len = (size_t)(f.pay_end - f.pay);
		} else {
			out.kind = f.wt == WT_VARINT ? PROTOWALK_VARINT : f.wt == WT_I64 ? PROTOWALK_FIXED64 :
										   PROTOWALK_FIXED32;
		}
		if ((rc = w->fn(w->arg, &out)))
			return rc;
	}
	return 0;
}

int protowalk(const uint8_t *msg, size_t len, protowalk_fn fn, void *arg)
{
	struct walk w = { .base = msg, .fn = fn, .arg = arg };
	if (!len)
		return 0;              /* msg may be NULL: an empty message */
	return walk_msg(&w, msg, msg + len, 0);
}

bool protowalk_path_is(const struct protowalk_field *f, const uint32_t *want, unsigned n)
{
	return f->depth == n && !memcmp(f->path, want, n * sizeof(*want));
}

/* ---- rewrite ---- */

struct rw {
	const uint8_t *base;
	const struct protowalk_edit *e;
	size_t n, next;               /* edits, count, the next to apply */
};

static int put_varint(struct buf *o, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;
	do {
		b[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	return buf_append(o, b, n) ? -ENOMEM : 0;
}

/* Whether an edit still to apply lies in [p, end). */
static bool edit_within(const struct rw *r, const uint8_t *p, const uint8_t *end)
{
	if (r->next >= r->n)
		return false;
	size_t off = r->e[r->next].off;
	return off >= (size_t)(p - r->base) && off < (size_t)(end - r->base);
}

static int rw_msg(struct rw *r, const uint8_t *p, const uint8_t *end, unsigned depth, struct buf *o);

/* One length-delimited field holding an edit: the tag as it was, then the
 * new payload with its new length. */
static int rw_len_field(struct rw *r, const struct field *f, unsigned depth, struct buf *o)
{
	struct buf sub = { 0 };
	int rc;
	enum payload k = classify(f->pay, f->pay_end, depth);

	if (k == PAY_MESSAGE) {
		rc = rw_msg(r, f->pay, f->pay_end, depth + 1, &sub);
	} else if (k == PAY_TEXT && r->e[r->next].off == (size_t)(f->pay - r->base)) {
		/* text that may be a message keeps its length or is refused:
		 * the caller blocks what it cannot rewrite exactly */
		if (r->e[r->next].repl_len != (size_t)(f->pay_end - f->pay) && nests_message(f->pay, f->pay_end)) {
			buf_free(&sub);
			return -EPROTO;
		}
		rc = buf_append(&sub, r->e[r->next].repl, r->e[r->next].repl_len) ? -ENOMEM : 0;
		r->next++;
		/* a second edit of the same field is a caller's mistake */
		if (!rc && edit_within(r, f->pay, f->pay_end))
			rc = -EINVAL;
	} else {
		rc = -EINVAL;
	}
	if (!rc) {
		const uint8_t *q = f->start;
		uint64_t tag;
		varint(&q, f->pay, &tag);
		rc = buf_append(o, f->start, (size_t)(q - f->start)) ? -ENOMEM : 0;
		if (!rc)
			rc = put_varint(o, sub.len);
		if (!rc && sub.len)
			rc = buf_append(o, sub.data, sub.len) ? -ENOMEM : 0;
	}
	buf_free(&sub);
	return rc;
}

static int rw_msg(struct rw *r, const uint8_t *p, const uint8_t *end, unsigned depth, struct buf *o)
{
	struct field f;
	int rc;

	if (depth >= PROTOWALK_MAX_DEPTH)
		return -E2BIG;
	while (p < end) {
		if (next_field(&p, end, &f))
			return -EINVAL;
		if (f.wt == WT_LEN && edit_within(r, f.pay, f.pay_end)) {
			if ((rc = rw_len_field(r, &f, depth, o)))
				return rc;
		} else if (edit_within(r, f.start, p)) {
			return -EINVAL;        /* an edit inside a tag or a number */
		} else if (buf_append(o, f.start, (size_t)(p - f.start))) {
			return -ENOMEM;
		}
	}
	return 0;
}

int protowalk_rewrite(const uint8_t *msg, size_t len, const struct protowalk_edit *edits, size_t nedits,
		      struct buf *out)
{
	struct rw r = { .base = msg, .e = edits, .n = nedits };
	size_t base = out->len;

	if (!len)
		return nedits ? -EINVAL : 0;
	for (size_t i = 1; i < nedits; i++)
		if (edits[i].off <= edits[i - 1].off)
			return -EINVAL;
	int rc = rw_msg(&r, msg, msg + len, 0, out);
	if (!rc && r.next != nedits)
		rc = -EINVAL;
	if (rc)
		out->len = base;
	return rc;
}
