/* sse: text/event-stream parsing (see sse.h). Owns the per-stream event
 * state; must never grow memory with the input (a hostile or broken
 * upstream can stream without blank lines forever), never buffer a line
 * that is not kept (comments and unknown fields are skipped as they
 * arrive), and never dispatch an event whose data was cut short. */
#include "proxy/sse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { S_NAME, S_VALUE_START, S_VALUE, S_SKIP };
enum { F_IGNORE, F_DATA, F_EVENT, F_ID };

/* Field names we act on are at most 5 bytes; keep one more so "datax" is
 * not mistaken for "data". */
#define NAME_KEEP 6

struct sse_parser {
	size_t cap;                 /* bound on data_len */
	size_t data_len;
	size_t ndata;               /* data lines in the current event */
	size_t event_len;
	size_t id_len, id_tmp_len;
	size_t name_len;            /* capped at NAME_KEEP + 1 */
	uint8_t state, field, bom;  /* bom: BOM bytes matched, 3 = past it */
	bool last_cr;               /* previous byte was CR: swallow one LF */
	bool oversize;              /* current event overflowed: drop it */
	bool id_bad;                /* current id value too long or has NUL */
	char name[NAME_KEEP];
	char event[SSE_MAX_EVENT_NAME];
	char id[SSE_MAX_ID];
	char id_tmp[SSE_MAX_ID];
	char data[];
};

static const unsigned char bom_bytes[3] = { 0xef, 0xbb, 0xbf };

struct sse_parser *sse_new(size_t max_event_bytes)
{
	if (max_event_bytes == 0 || max_event_bytes > SIZE_MAX - sizeof(struct sse_parser))
		return NULL;
	struct sse_parser *p = malloc(sizeof(*p) + max_event_bytes);
	if (!p)
		return NULL;
	p->cap = max_event_bytes;
	sse_reset(p);
	return p;
}

void sse_free(struct sse_parser *p)
{
	free(p);
}

void sse_reset(struct sse_parser *p)
{
	p->data_len = p->ndata = p->event_len = 0;
	p->id_len = p->id_tmp_len = p->name_len = 0;
	p->state = S_NAME;
	p->field = F_IGNORE;
	p->bom = 0;
	p->last_cr = p->oversize = p->id_bad = false;
}

const char *sse_last_event_id(const struct sse_parser *p, size_t *len)
{
	*len = p->id_len;
	return p->id;
}

/* Mark the current event oversized; true the first time (report once). */
static bool overflow(struct sse_parser *p)
{
	bool first = !p->oversize;
	p->oversize = true;
	return first;
}

static void append(struct sse_parser *p, const char *s, size_t n, bool *e2big)
{
	switch (p->field) {
	case F_DATA:
		if (p->oversize)
			return;
		if (n > p->cap - p->data_len) {
			*e2big |= overflow(p);
			return;
		}
		memcpy(p->data + p->data_len, s, n);
		p->data_len += n;
		return;
	case F_EVENT:
		if (p->oversize)
			return;
		if (n > SSE_MAX_EVENT_NAME - p->event_len) {
			*e2big |= overflow(p);
			return;
		}
		memcpy(p->event + p->event_len, s, n);
		p->event_len += n;
		return;
	case F_ID:
		/* Spec: an id containing NUL is ignored. */
		if (p->id_bad || n > SSE_MAX_ID - p->id_tmp_len || memchr(s, '\0', n)) {
			p->id_bad = true;
			return;
		}
		memcpy(p->id_tmp + p->id_tmp_len, s, n);
		p->id_tmp_len += n;
		return;
	default:
		return;
	}
}

/* The field name is complete (at ':' or end of line): pick the field and
 * do what starting its value means. Names are case-sensitive. */
static void begin_value(struct sse_parser *p, bool *e2big)
{
	size_t n = p->name_len;
	p->field = F_IGNORE;
	if (n == 4 && memcmp(p->name, "data", 4) == 0) {
		p->field = F_DATA;
		if (p->ndata++ > 0)
			append(p, "\n", 1, e2big);
	} else if (n == 5 && memcmp(p->name, "event", 5) == 0) {
		p->field = F_EVENT;
		if (!p->oversize)
			p->event_len = 0;
	} else if (n == 2 && memcmp(p->name, "id", 2) == 0) {
		p->field = F_ID;
		p->id_tmp_len = 0;
		p->id_bad = false;
	}
}

static void reset_event(struct sse_parser *p)
{
	p->data_len = p->ndata = p->event_len = 0;
	p->oversize = false;
}

static int dispatch(struct sse_parser *p, sse_event_fn fn, void *arg)
{
	int rc = 0;
	if (!p->oversize && p->ndata > 0 && fn) {
		if (p->event_len)
			rc = fn(arg, p->event, p->event_len, p->data, p->data_len);
		else
			rc = fn(arg, "message", 7, p->data, p->data_len);
	}
	reset_event(p);
	return rc;
}

static int end_line(struct sse_parser *p, sse_event_fn fn, void *arg, bool *e2big)
{
	int rc = 0;
	if (p->state == S_NAME) {
		if (p->name_len == 0)
			rc = dispatch(p, fn, arg);
		else
			begin_value(p, e2big);   /* "data" alone = empty value */
	}
	if (p->field == F_ID && !p->id_bad) {
		memcpy(p->id, p->id_tmp, p->id_tmp_len);
		p->id_len = p->id_tmp_len;
	}
	p->state = S_NAME;
	p->field = F_IGNORE;
	p->name_len = 0;
	return rc;
}

/* Length of the run before the first CR or LF. Word at a time: event data
 * (JSON deltas) is nearly all of an event-stream's bytes. */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)

static size_t run_to_eol(const char *s, size_t n)
{
	size_t i = 0;
	while (n - i >= 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (HAS_ZERO(w ^ (ONES * '\n')) | HAS_ZERO(w ^ (ONES * '\r')))
			break;
		i += 8;
	}
	while (i < n && s[i] != '\n' && s[i] != '\r')
		i++;
	return i;
}

static int process(struct sse_parser *p, const char *s, size_t n, sse_event_fn fn, void *arg,
		   bool *e2big)
{
	size_t i = 0;
	while (i < n) {
		char c = s[i];
		if (p->last_cr) {
			p->last_cr = false;
			if (c == '\n') {
				i++;
				continue;
			}
		}
		if (c == '\r' || c == '\n') {
			p->last_cr = c == '\r';
			i++;
			int rc = end_line(p, fn, arg, e2big);
			if (rc)
				return rc;
			continue;
		}
		switch (p->state) {
		case S_NAME:
			if (c == ':') {
				if (p->name_len == 0) {
					p->state = S_SKIP;   /* comment */
				} else {
					begin_value(p, e2big);
					p->state = S_VALUE_START;
				}
			} else if (p->name_len < NAME_KEEP) {
				p->name[p->name_len++] = c;
			} else {
				p->name_len = NAME_KEEP + 1;   /* too long to be ours */
			}
			i++;
			break;
		case S_VALUE_START:
			p->state = S_VALUE;
			if (c == ' ') {   /* one leading space is syntax */
				i++;
				break;
			}
			/* fallthrough */
		case S_VALUE: {
			size_t k = run_to_eol(s + i, n - i);
			append(p, s + i, k, e2big);
			i += k;
			break;
		}
		case S_SKIP:
		default:
			i += run_to_eol(s + i, n - i);
			break;
		}
	}
	return 0;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *arg)
{
	bool e2big = false;
	size_t i = 0;
	int rc;

	/* A UTF-8 BOM at the very start of the stream is not data. It may be
	 * split across feeds: on a mismatch, replay what was held back. */
	while (p->bom < 3 && i < len) {
		if ((unsigned char)buf[i] == bom_bytes[p->bom]) {
			p->bom++;
			i++;
			continue;
		}
		unsigned held = p->bom;
		p->bom = 3;
		if (held && (rc = process(p, (const char *)bom_bytes, held, fn, arg, &e2big)))
			return rc;
	}
	if ((rc = process(p, buf + i, len - i, fn, arg, &e2big)))
		return rc;
	return e2big ? -E2BIG : 0;
}
