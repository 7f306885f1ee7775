/* inspect: detectors over decoded text, with exact spans mapped back to
 * the raw body.
 *
 * Two stages, because start-of-match tracking is what makes Hyperscan
 * slow (NOTES.md: HS_FLAG_SOM_LEFTMOST cut throughput from 363 to 130
 * MB/s): stage 1 scans every string with ONE block-mode database of
 * trigger patterns compiled with HS_FLAG_SINGLEMATCH (no SOM), which only
 * says which detectors fired; stage 2 runs, for those detectors only, a
 * small single-pattern SOM database (or a hand-written matcher for IP
 * addresses and PEM blocks) over that string, collects candidate spans,
 * validates them (checksums, structure, word boundaries) and resolves
 * overlaps by detector priority. Clean text never pays for stage 2.
 *
 * Before stage 1, what the model would read is made readable: layers
 * inside a string are undone (JSON in JSON, base64 text; binaries are
 * named OPAQUE_CONTENT), multipart parts and form pairs are decoded, and
 * the text is normalised (decode.h); every span still maps to raw body
 * bytes through composed offset maps. A limit reached (spans, candidates,
 * nesting, layers) is reported as INSPECTION_LIMIT, never silently.
 *
 * Owns: the scan and the injection score. The detector table is in
 * content/detectors.c, the validators in content/validators.c. Never
 * logs or keeps matched values; never writes to the inspected buffers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "content/inspect.h"
#include "osutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <hs.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/decode.h"
#include "content/detectors.h"
#include "content/json.h"
#include "content/validators.h"

/* ------------------------------------------------------------- inspector */

struct det_rt {
	enum finding_type type;
	uint16_t custom_id;
	validate_fn validate;
	enum extractor ex;
	uint32_t maxlen;          /* longest span: SOM window around a trigger hit */
	hs_database_t *som_db;    /* EX_SOM only */
};

struct inspector {
	int refs;
	hs_database_t *fast;      /* ids: [0, ndet) detectors, [ndet, ndet + DETECTORS_NINJ) injection */
	hs_scratch_t *proto;      /* sized for fast and every som_db */
	struct det_rt *dets;
	unsigned ndet;
	char **custom_names;
	unsigned ncustom;
};

struct cand { size_t s, e; uint32_t det; };

/* Stage-1 hits of one detector, merged into windows [s, e) of text where
 * its span pattern must be run; too many windows means scan it all. */
#define MAX_WIN 32
struct wins { unsigned n; bool all; struct { size_t s, e; } w[MAX_WIN]; };

struct inspect_scratch {
	struct inspector *ins;
	hs_scratch_t *hs;
	struct json_text text;
	uint64_t *hit;            /* bitset over detectors + injection rules */
	unsigned nwords;
	struct wins *win;         /* per detector */
	size_t som_base;          /* offset of the window being SOM-scanned */
	struct cand *c;           /* candidates of one detector on one string */
	size_t nc, capc;
	struct cand *acc;         /* accepted findings of one string */
	size_t nacc, capacc;
	size_t som_last_end;      /* end of the last accepted span of this detector */
	bool limit;               /* a limit was reached: findings incomplete */
	/* decoded layers inside one string, one slot per depth (see scan_layers) */
	struct json_text lt[INSPECT_MAX_LAYERS];
	uint32_t *lmap[INSPECT_MAX_LAYERS];
	size_t lmapcap[INSPECT_MAX_LAYERS];
	struct buf b64[INSPECT_MAX_LAYERS];
	bool seal;                /* inside base64: spans cover [seal_s, seal_e) */
	size_t seal_s, seal_e;
	struct buf part;     /* a decoded multipart part, a decoded form pair */
	uint32_t *pmap;
	size_t pmapcap;
	struct buf norm;     /* normalised text (decode_normalize) */
	struct buf u16;      /* sealed text in UTF-16, as UTF-8 (decode_utf16) */
	struct buf run[INSPECT_RUN_DEPTH];   /* base64 runs in text, decoded (scan_runs) */
	unsigned run_depth;
	uint32_t *nmap;           /* its map to raw offsets */
	size_t nmapcap;
	struct cand *rej;         /* card/IBAN-shaped spans whose checksum failed */
	size_t nrej, caprej;
	bool inj_hit[DETECTORS_NINJ];
};


static char *escape_literal(const char *kw)
{
	size_t n = strlen(kw);
	char *o = malloc(n * 4 + 16);
	if (!o)
		return NULL;
	size_t k = 0;
	o[k++] = '\\';
	o[k++] = 'b';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)kw[i];
		if (is_alnum(c) || c == ' ' || c == '_') {
			o[k++] = (char)c;
		} else {
			k += (size_t)sprintf(o + k, "\\x%02x", c);
		}
	}
	o[k++] = '\\';
	o[k++] = 'b';
	o[k] = '\0';
	return o;
}

struct inspector *inspector_new(const struct inspect_custom *custom, size_t ncustom,
				char *err, size_t errlen)
{
	struct inspector *ins = calloc(1, sizeof(*ins));
	const char **exprs = NULL;
	unsigned *flags = NULL, *ids = NULL;
	char **owned = NULL;
	size_t nowned = 0, nexpr = 0;
	hs_compile_error_t *cerr = NULL;

	if (!ins)
		goto enomem;
	ins->refs = 1;
	size_t nkw = 0;
	for (size_t i = 0; i < ncustom; i++)
		nkw += custom[i].regex ? 1 : custom[i].nkeywords;
	size_t maxdet = detectors_nbuiltin + nkw;
	ins->dets = calloc(maxdet, sizeof(*ins->dets));
	exprs = calloc(maxdet + DETECTORS_NINJ, sizeof(*exprs));
	flags = calloc(maxdet + DETECTORS_NINJ, sizeof(*flags));
	ids = calloc(maxdet + DETECTORS_NINJ, sizeof(*ids));
	owned = calloc(nkw + 1, sizeof(*owned));
	ins->custom_names = calloc(ncustom + 1, sizeof(char *));
	if (!ins->dets || !exprs || !flags || !ids || !owned || !ins->custom_names)
		goto enomem;

	/* custom rules first: an operator's rule outranks a built-in one */
	for (size_t i = 0; i < ncustom; i++) {
		if (!custom[i].name || (!custom[i].regex && !custom[i].nkeywords)) {
			osutil_errf(err, errlen, "custom rule %s%s: needs a name and a regex or keywords",
				custom[i].name ? custom[i].name : "(unnamed)", "");
			goto fail;
		}
		if (!(ins->custom_names[i] = strdup(custom[i].name)))
			goto enomem;
		ins->ncustom = (unsigned)i + 1;
		size_t nk = custom[i].regex ? 1 : custom[i].nkeywords;
		for (size_t k = 0; k < nk; k++) {
			struct det_rt *d = &ins->dets[ins->ndet];
			const char *re;
			unsigned fl = 0;
			if (custom[i].regex) {
				re = custom[i].regex;
			} else {
				if (!custom[i].keywords[k] || !custom[i].keywords[k][0]) {
					osutil_errf(err, errlen, "custom rule '%s'%s: empty keyword", custom[i].name, "");
					goto fail;
				}
				if (!(owned[nowned] = escape_literal(custom[i].keywords[k])))
					goto enomem;
				re = owned[nowned++];
				fl = HS_FLAG_CASELESS;
			}
			d->type = FINDING_CUSTOM;
			d->custom_id = (uint16_t)i;
			d->validate = NULL;
			d->ex = EX_SOM;
			if (hs_compile(re, fl | HS_FLAG_SOM_LEFTMOST,
				       HS_MODE_BLOCK, NULL, &d->som_db, &cerr) != HS_SUCCESS) {
				osutil_errf(err, errlen, "custom rule '%s': %s", custom[i].name,
					cerr ? cerr->message : "compile error");
				goto fail;
			}
			exprs[nexpr] = re;
			flags[nexpr] = fl;
			d->maxlen = 1024;
			ids[nexpr] = ins->ndet;
			nexpr++;
			ins->ndet++;
		}
	}
	for (size_t i = 0; i < detectors_nbuiltin; i++) {
		const struct det *b = &detectors_builtin[i];
		struct det_rt *d = &ins->dets[ins->ndet];
		d->type = b->type;
		d->validate = b->validate;
		d->ex = b->ex;
		if ((b->ex == EX_SOM || b->ex == EX_WRAPPED) &&
		    hs_compile(b->som, b->flags | HS_FLAG_SOM_LEFTMOST, HS_MODE_BLOCK, NULL,
			       &d->som_db, &cerr) != HS_SUCCESS) {
			osutil_errf(err, errlen, "built-in detector %s: %s", finding_name(b->type),
				cerr ? cerr->message : "compile error");
			goto fail;
		}
		exprs[nexpr] = b->trigger ? b->trigger : b->som;
		/* span detectors report every hit (their windows); the others
		 * only need to know that they fired */
		flags[nexpr] = b->flags | (b->ex == EX_SOM ? 0 : HS_FLAG_SINGLEMATCH);
		d->maxlen = b->maxlen ? b->maxlen : 512;
		ids[nexpr] = ins->ndet;
		nexpr++;
		ins->ndet++;
	}
	for (size_t i = 0; i < DETECTORS_NINJ; i++) {
		exprs[nexpr] = detectors_injection[i].re;
		flags[nexpr] = detectors_injection[i].flags | HS_FLAG_SINGLEMATCH;
		ids[nexpr] = ins->ndet + (unsigned)i;
		nexpr++;
	}
	if (hs_compile_multi(exprs, flags, ids, (unsigned)nexpr, HS_MODE_BLOCK, NULL,
			     &ins->fast, &cerr) != HS_SUCCESS) {
		char idx[32];
		snprintf(idx, sizeof(idx), "%d", cerr ? cerr->expression : -1);
		osutil_errf(err, errlen, "trigger database (expression %s): %s", idx,
			cerr ? cerr->message : "compile error");
		goto fail;
	}
	if (hs_alloc_scratch(ins->fast, &ins->proto) != HS_SUCCESS)
		goto enomem;
	for (unsigned i = 0; i < ins->ndet; i++)
		if (ins->dets[i].som_db && hs_alloc_scratch(ins->dets[i].som_db, &ins->proto) != HS_SUCCESS)
			goto enomem;
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(exprs);
	free(flags);
	free(ids);
	return ins;

enomem:
	osutil_errf(err, errlen, "%s%s", "out of memory", "");
fail:
	if (cerr)
		hs_free_compile_error(cerr);
	for (size_t i = 0; owned && i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(exprs);
	free(flags);
	free(ids);
	inspector_unref(ins);
	return NULL;
}

struct inspector *inspector_ref(struct inspector *ins)
{
	if (ins)
		__atomic_add_fetch(&ins->refs, 1, __ATOMIC_RELAXED);
	return ins;
}

void inspector_unref(struct inspector *ins)
{
	if (!ins || __atomic_sub_fetch(&ins->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (unsigned i = 0; ins->dets && i < ins->ndet; i++)
		hs_free_database(ins->dets[i].som_db);
	free(ins->dets);
	hs_free_database(ins->fast);
	hs_free_scratch(ins->proto);
	for (unsigned i = 0; ins->custom_names && i < ins->ncustom; i++)
		free(ins->custom_names[i]);
	free(ins->custom_names);
	free(ins);
}

const char *inspector_custom_name(const struct inspector *ins, unsigned id)
{
	return ins && id < ins->ncustom ? ins->custom_names[id] : NULL;
}

struct inspect_scratch *inspect_scratch_new(struct inspector *ins)
{
	struct inspect_scratch *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->part.secret = s->norm.secret = s->u16.secret = true;   /* decoded and normalised text */
	for (int i = 0; i < INSPECT_RUN_DEPTH; i++)
		s->run[i].secret = true;
	for (int i = 0; i < INSPECT_MAX_LAYERS; i++)
		s->b64[i].secret = true;
	s->nwords = (ins->ndet + DETECTORS_NINJ + 63) / 64;
	s->hit = calloc(s->nwords, sizeof(uint64_t));
	s->win = calloc(ins->ndet ? ins->ndet : 1, sizeof(*s->win));
	if (!s->hit || !s->win || hs_clone_scratch(ins->proto, &s->hs) != HS_SUCCESS) {
		free(s->hit);
		free(s->win);
		free(s);
		return NULL;
	}
	s->ins = inspector_ref(ins);
	return s;
}

void inspect_scratch_free(struct inspect_scratch *s)
{
	if (!s)
		return;
	hs_free_scratch(s->hs);
	json_text_free(&s->text);
	buf_free(&s->norm);
	buf_free(&s->u16);
	for (unsigned i = 0; i < INSPECT_RUN_DEPTH; i++)
		buf_free(&s->run[i]);
	free(s->nmap);
	buf_free(&s->part);
	free(s->pmap);
	for (unsigned i = 0; i < INSPECT_MAX_LAYERS; i++) {
		json_text_free(&s->lt[i]);
		free(s->lmap[i]);
		buf_free(&s->b64[i]);
	}
	free(s->hit);
	free(s->win);
	free(s->c);
	free(s->acc);
	free(s->rej);
	inspector_unref(s->ins);
	free(s);
}

struct inspector *inspect_scratch_inspector(const struct inspect_scratch *s)
{
	return s->ins;
}

void inspect_result_init(struct inspect_result *r)
{
	memset(r, 0, sizeof(*r));
}

void inspect_result_free(struct inspect_result *r)
{
	if (!r)
		return;
	free(r->spans);
	r->spans = NULL;
	r->nspans = r->cap = 0;
}

static void result_reset(struct inspect_result *r)
{
	struct inspect_span *sp = r->spans;
	size_t cap = r->cap;
	memset(r, 0, sizeof(*r));
	r->spans = sp;
	r->cap = cap;
}

uint32_t inspect_result_total(const struct inspect_result *r)
{
	uint32_t t = 0;
	for (int i = 0; i < FINDING__COUNT; i++)
		t += r->counts[i];
	return t;
}

/* ------------------------------------------------------------- scanning */

#define MAX_CANDS 8192

/* Returns 1 when the array is full: the caller reports INSPECTION_LIMIT
 * (never a silent partial result). */
static int push_cand(struct cand **v, size_t *n, size_t *cap, size_t s, size_t e, uint32_t det)
{
	if (*n >= MAX_CANDS)
		return 1;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct cand *p = realloc(*v, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = (struct cand){ s, e, det };
	return 0;
}

static int on_trigger(unsigned id, unsigned long long from, unsigned long long to,
		      unsigned fl, void *ctx)
{
	struct inspect_scratch *s = ctx;
	(void)from; (void)fl;
	s->hit[id / 64] |= 1ull << (id % 64);
	if (id < s->ins->ndet && s->ins->dets[id].ex == EX_SOM) {
		struct wins *w = &s->win[id];
		size_t ml = s->ins->dets[id].maxlen;
		size_t lo = to > ml ? (size_t)to - ml : 0, hi = (size_t)to + ml;
		if (w->all)
			return 0;
		if (w->n && lo <= w->w[w->n - 1].e) {
			if (hi > w->w[w->n - 1].e)
				w->w[w->n - 1].e = hi;
		} else if (w->n < MAX_WIN) {
			w->w[w->n].s = lo;
			w->w[w->n].e = hi;
			w->n++;
		} else {
			w->all = true;
		}
	}
	return 0;
}

struct som_ctx {
	struct inspect_scratch *s;
	const char *t;
	size_t n;
	uint32_t det;
	int err;          /* < 0 error, 1 limit reached */
};

static int cand_cmp(const void *a, const void *b);

static bool yields_to_claims(enum finding_type type);
static bool claimed(const struct inspect_scratch *s, size_t st, size_t en, enum finding_type type);

/* Validate the candidates of detector det that start before upto (all of
 * them for SIZE_MAX) and accept those that do not overlap an earlier one;
 * the rest stay in s->c for later. Called when the candidate array is
 * full, so that rejected look-alikes (8,000 copies of a documentation key)
 * never crowd out a real value after them. Returns 0, 1 (accepted array
 * full), or -ENOMEM. */
static int som_drain(struct inspect_scratch *s, const char *t, size_t n, uint32_t det, size_t upto)
{
	const struct det_rt *d = &s->ins->dets[det];
	size_t i = 0;
	int rc = 0;
	qsort(s->c, s->nc, sizeof(*s->c), cand_cmp);
	for (; i < s->nc && s->c[i].s < upto; i++) {
		size_t st = s->c[i].s, en = s->c[i].e;
		if (en <= s->som_last_end || en <= st)
			continue;
		/* a leftmost start may reach into the previous finding; the
		 * validator may move it to a later group start */
		if (d->validate && !d->validate(t, n, &st, &en)) {
			/* a rejected card or IBAN shape: no other detector may
			 * take its leftover digits (see claimed) */
			if (val_rejected_claim(d->type, t, st, en) &&
			    (rc = push_cand(&s->rej, &s->nrej, &s->caprej, st, en, det)))
				break;
			continue;
		}
		if (st < s->som_last_end)
			continue;
		if (yields_to_claims(d->type) && claimed(s, st, en, d->type))
			continue;
		if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, st, en, det)))
			break;
		s->som_last_end = en;
	}
	memmove(s->c, s->c + i, (s->nc - i) * sizeof(*s->c));
	s->nc -= i;
	return rc;
}

static int on_som(unsigned id, unsigned long long from, unsigned long long to,
		  unsigned fl, void *ctx)
{
	struct som_ctx *c = ctx;
	struct inspect_scratch *s = c->s;
	(void)id; (void)fl;
	if (s->nc >= MAX_CANDS) {
		/* Matches arrive by end offset: a later one cannot start before
		 * to - maxlen, so every candidate starting earlier is final. */
		size_t end = s->som_base + (size_t)to, ml = s->ins->dets[c->det].maxlen;
		size_t before = s->nc;
		c->err = som_drain(s, c->t, c->n, c->det, end > ml ? end - ml : 0);
		if (!c->err && s->nc == before)
			c->err = 1;   /* 8,192 candidates inside one span length */
		if (c->err)
			return 1;
	}
	if (push_cand(&s->c, &s->nc, &s->capc, s->som_base + (size_t)from,
		      s->som_base + (size_t)to, c->det)) {
		c->err = -ENOMEM;
		return 1;
	}
	return 0;
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	if (x->e != y->e)
		return x->e > y->e ? -1 : 1;   /* longest first */
	return 0;
}

static bool ip_char(int c) { return isxdigit(c) || c == ':' || c == '.'; }

static bool ipv4_ok(const char *t, size_t n)
{
	char b[16];
	struct in_addr a;
	if (n < 7 || n > 15)
		return false;
	memcpy(b, t, n);
	b[n] = '\0';
	/* inet_pton rejects leading zeros differently per libc; require 1-3
	 * digit octets without leading zeros beyond "0" */
	for (size_t i = 0; i < n; i++)
		if (b[i] == '0' && (i == 0 || b[i - 1] == '.') && i + 1 < n && is_digit((unsigned char)b[i + 1]))
			return false;
	return inet_pton(AF_INET, b, &a) == 1;
}

static bool ipv6_ok(const char *t, size_t n)
{
	char b[64];
	struct in6_addr a;
	if (n < 2 || n >= sizeof(b))
		return false;
	memcpy(b, t, n);
	b[n] = '\0';
	return inet_pton(AF_INET6, b, &a) == 1;
}

/* "version 1.2.3.4", "==10.0.0.1", "pkg@1.2.3.4": a four-part version
 * number, not an address. Looks back over a few bytes of punctuation to
 * the word before. */
static bool version_context(const char *t, size_t p)
{
	static const char *const words[] = {
		"version", "ver", "v", "release", "build", "firmware", "fw", "rev", "revision",
		"kernel", "sdk", "patch", "tag", NULL
	};
	size_t i = p;
	while (i > 0 && p - i < 4 && strchr(" \"'", t[i - 1]))
		i--;
	if (i >= 2 && strchr("=~<>", t[i - 1]) && strchr("=~<>!", t[i - 2]))
		return true;                                  /* ==, >=, ~=, <= */
	if (i >= 2 && t[i - 1] == '@' && is_alnum((unsigned char)t[i - 2]))
		return true;                                  /* npm: pkg@1.2.3.4 */
	while (i > 0 && p - i < 6 && (t[i - 1] == ' ' || t[i - 1] == ':' || t[i - 1] == '='))
		i--;
	size_t we = i;
	while (i > 0 && we - i < 12 && isalpha((unsigned char)t[i - 1]))
		i--;
	if (i == we || (i > 0 && is_alnum((unsigned char)t[i - 1])))
		return false;
	return val_word_is_one_of(t + i, we - i, words);
}

/* IP addresses: hand-written because the interesting part (is this a valid
 * address, does it stop at a word boundary) is not a regular language in
 * any useful size. Runs of hex digits, ':' and '.' are candidates. */
static int extract_ip(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		if (!ip_char((unsigned char)t[i])) {
			i++;
			continue;
		}
		size_t st = i;
		while (i < n && ip_char((unsigned char)t[i]))
			i++;
		size_t en = i;
		/* a run glued to a word ("IP192.168.1.1text") is not an address */
		bool glued_before = st > 0 && is_alnum((unsigned char)t[st - 1]);
		const char *colon = memchr(t + st, ':', en - st);
		if (colon) {
			size_t e2 = en;
			while (e2 > st && (t[e2 - 1] == '.' || (t[e2 - 1] == ':' && !(e2 - st >= 2 && t[e2 - 2] == ':'))))
				e2--;
			if (!glued_before && ipv6_ok(t + st, e2 - st)) {
				size_t ze = e2;
				if (ze < n && t[ze] == '%') {
					size_t z = ze + 1;
					while (z < n && (is_alnum((unsigned char)t[z]) || t[z] == '_'))
						z++;
					if (z > ze + 1)
						ze = z;
				}
				if (!(ze == e2 && next_is(t, n, ze, is_alnum))) {
					if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, st, ze, det)))
						return rc;
					continue;
				}
			}
		}
		/* IPv4 anywhere in the run, at digit boundaries */
		for (size_t p = st; p < en; p++) {
			if (!is_digit((unsigned char)t[p]) || (p > st && is_digit((unsigned char)t[p - 1])))
				continue;
			if (p == st ? glued_before : (t[p - 1] == '.'))
				continue;
			if (p > st && isxdigit((unsigned char)t[p - 1]))
				continue;
			size_t q = p, dots = 0, digs = 0;
			while (q < en && (is_digit((unsigned char)t[q]) || (t[q] == '.' && dots < 3 && digs))) {
				if (t[q] == '.') { dots++; digs = 0; } else { digs++; }
				q++;
			}
			while (q > p && t[q - 1] == '.')
				q--;
			if (q < n && is_digit((unsigned char)t[q]))
				continue;
			/* a fifth part: an SNMP OID (1.3.6.1.4.1.5516.3.4) or a
			 * long version number, not an address */
			if (q + 1 < n && t[q] == '.' && is_digit((unsigned char)t[q + 1]))
				continue;
			if (dots == 3 && version_context(t, p))
				continue;
			if (next_is(t, n, q, is_alnum) && !(q < en))
				continue;
			if (dots == 3 && ipv4_ok(t + p, q - p)) {
				if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, p, q, det)))
					return rc;
				p = q;
			}
		}
	}
	return 0;
}

static int extract_pem(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		const char *b = memmem(t + i, n - i, "-----BEGIN", 10);
		if (!b)
			break;
		size_t bs = (size_t)(b - t);
		const char *hdr_end = memmem(b + 10, n - bs - 10, "-----", 5);
		if (!hdr_end || hdr_end - b > 80 || !memmem(b, (size_t)(hdr_end - b), "PRIVATE KEY", 11) ||
		    memmem(b, (size_t)(hdr_end - b), "FAKE", 4) || memmem(b, (size_t)(hdr_end - b), "EXAMPLE", 7)) {
			i = bs + 10;
			continue;
		}
		size_t body = (size_t)(hdr_end - t) + 5;
		const char *end = memmem(t + body, n - body, "-----END", 8);
		size_t es = n;
		if (end) {
			const char *close = memmem(end + 8, n - (size_t)(end - t) - 8, "-----", 5);
			es = close ? (size_t)(close - t) + 5 : n;
		}
		/* a header with no key material is a mention, not a key */
		size_t mat = 0;
		for (size_t k = body; k < (end ? (size_t)(end - t) : n); k++)
			if (is_alnum((unsigned char)t[k]) || t[k] == '+' || t[k] == '/')
				mat++;
		if (mat >= 16 && (rc = push_cand(&s->acc, &s->nacc, &s->capacc, bs, es, det)))
			return rc;
		i = es > bs ? es : bs + 10;
	}
	return 0;
}

static bool b64ch(int c) { return is_alnum(c) || c == '/' || c == '+'; }

/* A 40-character base64 run with upper, lower and digits within 300 bytes
 * after an access key id: the classic key-id/secret pair. */
static int extract_aws_pair(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	for (size_t i = 0; i + 20 <= n; i++) {
		const char *a = memchr(t + i, 'A', n - 20 - i + 1);
		if (!a)
			break;
		i = (size_t)(a - t);
		bool hit = (a[1] == 'K' && a[2] == 'I' && a[3] == 'A') ||
			   (a[1] == 'S' && a[2] == 'I' && a[3] == 'A') || (a[1] == '3' && a[2] == 'T');
		if (!hit || prev_is(t, i, is_alnum))
			continue;
		size_t lim = i + 20 + 300 < n ? i + 20 + 300 : n;
		for (size_t j = i + 20; j + 40 <= lim; j++) {
			if (!b64ch((unsigned char)t[j]) || b64ch((unsigned char)t[j - 1]))
				continue;
			size_t k = j;
			while (k < n && b64ch((unsigned char)t[k]))
				k++;
			if (k - j == 40) {
				bool up = false, lo = false, dg = false;
				for (size_t q = j; q < k; q++) {
					up |= isupper((unsigned char)t[q]) != 0;
					lo |= islower((unsigned char)t[q]) != 0;
					dg |= is_digit((unsigned char)t[q]);
				}
				if (up && lo && dg && !val_looks_fake(t + j, 40)) {
					int rc = push_cand(&s->acc, &s->nacc, &s->capacc, j, k, det);
					if (rc)
						return rc;
				}
			}
			j = k;
		}
		i += 19;
	}
	return 0;
}

static bool yields_to_claims(enum finding_type type)
{
	return type == FINDING_PHONE || type == FINDING_US_SSN || type == FINDING_CREDIT_CARD;
}

/* claimed by a rejected span of another type, or strictly inside a
 * rejected one of its own ("5893-0545-4755" in "2663-5893-0545-4755") */
static bool claimed(const struct inspect_scratch *s, size_t st, size_t en, enum finding_type type)
{
	for (size_t i = 0; i < s->nrej; i++)
		if (st < s->rej[i].e && s->rej[i].s < en && (s->ins->dets[s->rej[i].det].type != type ||
		    (s->rej[i].s <= st && en <= s->rej[i].e && en - st < s->rej[i].e - s->rej[i].s)))
			return true;
	return false;
}

/* A card or IBAN wrapped across lines (a PDF copy, a psql cell): at each
 * line break with a word character on both sides, join up to WRAP_SIDE
 * bytes of the number on each side (with and without a separator in place
 * of the break, which may fall inside a group or between two) and run the
 * detector's span pattern over the joined bytes; a value that crosses the
 * joint and validates is reported over the raw bytes. */
#define WRAP_SIDE 40
static bool wrap_ch(int c) { return is_alnum(c) || c == ' ' || c == '-'; }
/* what may end a line inside a card or an IBAN, and start the next */
static bool wrap_edge(int c) { return is_digit(c) || (c >= 'A' && c <= 'Z') || c == '-'; }

static int wrapped_try(struct inspect_scratch *s, const char *buf, size_t k, size_t joint,
		       const uint32_t *map, uint32_t det)
{
	const struct det_rt *d = &s->ins->dets[det];
	struct som_ctx c = { s, buf, k, det, 0 };
	s->nc = 0;
	s->som_base = 0;
	hs_error_t e = hs_scan(d->som_db, buf, (unsigned)k, 0, s->hs, on_som, &c);
	if (c.err)
		return c.err;
	if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED)
		return -EIO;
	if (s->nc)
		qsort(s->c, s->nc, sizeof(*s->c), cand_cmp);
	for (size_t i = 0; i < s->nc; i++) {
		size_t st = s->c[i].s, en = s->c[i].e;
		if (!(st < joint && en > joint) || !d->validate(buf, k, &st, &en) || !(st < joint && en > joint))
			continue;
		return push_cand(&s->acc, &s->nacc, &s->capacc, map[st], map[en - 1] + 1, det);
	}
	return 0;
}

static int extract_wrapped(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	char buf[2 * WRAP_SIDE + 1];
	uint32_t map[2 * WRAP_SIDE + 1];
	for (const char *nl = t; (nl = memchr(nl, '\n', n - (size_t)(nl - t))); nl++) {
		size_t a = (size_t)(nl - t), b = a + 1;
		while (a > 0 && (t[a - 1] == ' ' || t[a - 1] == '\t' || t[a - 1] == '\r'))
			a--;
		while (b < n && (t[b] == ' ' || t[b] == '\t'))
			b++;
		/* "3738-\n   087447-51608": the separator may stay on either line */
		if (a == 0 || b >= n || !wrap_edge((unsigned char)t[a - 1]) || !wrap_edge((unsigned char)t[b]))
			continue;
		size_t l = a, r = b;
		while (l > 0 && a - l < WRAP_SIDE && wrap_ch((unsigned char)t[l - 1]))
			l--;
		while (r < n && r - b < WRAP_SIDE && wrap_ch((unsigned char)t[r]))
			r++;
		/* a card has 12 digits or more, an IBAN 10 or more: count
		 * before paying for a scan (most line breaks are prose) */
		size_t nd = 0;
		for (size_t i = l; i < r; i++)
			nd += is_digit((unsigned char)t[i]);
		if (nd < 10)
			continue;
		char sep = memchr(t + l, '-', a - l) ? '-' : memchr(t + l, ' ', a - l) ? ' ' : 0;
		if (t[a - 1] == '-' || t[b] == '-')
			sep = 0;                           /* the break kept its separator */
		for (int with_sep = 0; with_sep < (sep ? 2 : 1); with_sep++) {
			size_t k = 0;
			for (size_t i = l; i < a; i++, k++) {
				buf[k] = t[i];
				map[k] = (uint32_t)i;
			}
			size_t joint = k;
			if (with_sep) {
				buf[k] = sep;
				map[k++] = (uint32_t)b;
			}
			for (size_t i = b; i < r; i++, k++) {
				buf[k] = t[i];
				map[k] = (uint32_t)i;
			}
			size_t before = s->nacc;
			int rc = wrapped_try(s, buf, k, joint, map, det);
			if (rc)
				return rc;
			if (s->nacc > before)
				break;
		}
	}
	return 0;
}

static int run_som(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	const struct det_rt *d = &s->ins->dets[det];
	struct som_ctx c = { s, t, n, det, 0 };
	struct wins *w = &s->win[det];
	s->nc = 0;
	s->som_last_end = 0;
	/* only the windows around stage-1 hits (all of it if there were many) */
	for (unsigned k = 0; k < (w->all ? 1u : w->n); k++) {
		size_t lo = w->all ? 0 : w->w[k].s, hi = w->all ? n : w->w[k].e;
		if (hi > n)
			hi = n;
		if (lo >= hi)
			continue;
		s->som_base = lo;
		hs_error_t e = hs_scan(d->som_db, t + lo, (unsigned)(hi - lo), 0, s->hs, on_som, &c);
		if (c.err)
			break;
		if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED)
			return -EIO;
	}
	if (c.err < 0)
		return c.err;
	/* after a limit, what was collected is still validated and reported */
	int rc = som_drain(s, t, n, det, SIZE_MAX);
	return rc ? rc : c.err;
}

/* Overlaps between detectors: the lower detector index (priority) wins. */
static int acc_prio_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->det != y->det)
		return x->det < y->det ? -1 : 1;
	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	return 0;
}

static int acc_pos_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

static void resolve_overlaps(struct inspect_scratch *s)
{
	if (!s->nacc)
		return;   /* acc may be NULL: qsort(NULL, 0) is undefined */
	qsort(s->acc, s->nacc, sizeof(*s->acc), acc_prio_cmp);
	size_t k = 0;
	for (size_t i = 0; i < s->nacc; i++) {
		bool clash = false;
		for (size_t j = 0; j < k && !clash; j++)
			clash = s->acc[i].s < s->acc[j].e && s->acc[j].s < s->acc[i].e;
		if (!clash)
			s->acc[k++] = s->acc[i];
	}
	s->nacc = k;
	qsort(s->acc, s->nacc, sizeof(*s->acc), acc_pos_cmp);
}

struct scan_target {
	const char *raw;         /* inspected buffer (body) */
	size_t str_off, str_len; /* raw content of this string within it */
	bool json;
	bool visible;
};

int inspect_result_push(struct inspect_result *r, const struct inspect_span *sp)
{
	if (r->nspans == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 16;
		struct inspect_span *p = realloc(r->spans, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->spans = p;
		r->cap = nc;
	}
	r->spans[r->nspans++] = *sp;
	return 0;
}

static int add_span(struct inspect_result *r, const struct inspect_span *sp)
{
	if (r->counts[sp->type] < UINT32_MAX)
		r->counts[sp->type]++;
	if (r->nspans >= INSPECT_MAX_SPANS) {
		r->spans_truncated = true;
		return 0;
	}
	return inspect_result_push(r, sp);
}

static uint32_t map_at(const uint32_t *map, size_t i)
{
	return map ? map[i] : (uint32_t)i;
}

/* Scan one decoded, normalised string t[0..n) (map: t -> raw offsets
 * relative to tg->str_off, NULL for identity). */
static int scan_text(struct inspect_scratch *s, const struct scan_target *tg,
		     const char *t, size_t n, const uint32_t *map,
		     struct inspect_result *r)
{
	struct inspector *ins = s->ins;
	int rc;
	if (n > UINT32_MAX)
		return -E2BIG;
	memset(s->hit, 0, s->nwords * sizeof(uint64_t));
	for (unsigned d = 0; d < ins->ndet; d++) {
		s->win[d].n = 0;
		s->win[d].all = false;
	}
	hs_error_t e = hs_scan(ins->fast, n ? t : "", (unsigned)n, 0, s->hs, on_trigger, s);
	if (e != HS_SUCCESS)
		return -EIO;
	bool any = false;
	for (unsigned w = 0; w < s->nwords; w++)
		any |= s->hit[w] != 0;
	if (!any)
		return 0;
	if (tg->visible)
		for (unsigned i = 0; i < DETECTORS_NINJ; i++) {
			unsigned id = ins->ndet + i;
			if (s->hit[id / 64] & (1ull << (id % 64)))
				s->inj_hit[i] = true;
		}
	s->nacc = 0;
	s->nrej = 0;
	for (unsigned d = 0; d < ins->ndet; d++) {
		if (!(s->hit[d / 64] & (1ull << (d % 64))))
			continue;
		switch (ins->dets[d].ex) {
		case EX_SOM: rc = run_som(s, t, n, d); break;
		case EX_IP:  rc = extract_ip(s, t, n, d); break;
		case EX_PEM: rc = extract_pem(s, t, n, d); break;
		case EX_AWS_PAIR: rc = extract_aws_pair(s, t, n, d); break;
		case EX_WRAPPED: rc = extract_wrapped(s, t, n, d); break;
		default:     rc = 0;
		}
		if (rc > 0) {
			s->limit = true;    /* this detector stopped early: say so */
			rc = 0;
		}
		if (rc)
			return rc;
	}
	resolve_overlaps(s);
	for (size_t i = 0; i < s->nacc; i++) {
		const struct det_rt *d = &ins->dets[s->acc[i].det];
		struct inspect_span sp = {
			.type = d->type, .custom_id = d->custom_id, .in_json = tg->json,
			.str_off = tg->str_off, .str_len = tg->str_len,
		};
		sp.start = tg->str_off + (map ? map[s->acc[i].s] : s->acc[i].s);
		sp.end = tg->str_off + (map ? map[s->acc[i].e] : s->acc[i].e);
		if (s->seal) {
			sp.start = s->seal_s;
			sp.end = s->seal_e;
			sp.sealed = true;
		}
		if ((rc = add_span(r, &sp)))
			return rc;
	}
	return 0;
}

static int scan_decoded(struct inspect_scratch *s, const struct scan_target *tg,
			const char *t, size_t n, const uint32_t *map,
			struct inspect_result *r);

/* The invisible characters the injection rules DETECTORS_INJ_TAGS and
 * DETECTORS_INJ_BIDI look for, in text about to be normalised (which
 * folds the tags to the ASCII they hide and drops the bidi controls). */
static void invisible_marks(struct inspect_scratch *s, const char *t, size_t n)
{
	const unsigned char *p = (const unsigned char *)t;
	for (const unsigned char *q = p; (q = memchr(q, 0xf3, n - (size_t)(q - p))) && q + 3 < p + n; q++)
		if (q[1] == 0xa0 && (q[2] == 0x80 || q[2] == 0x81) && (q[3] & 0xc0) == 0x80) {
			s->inj_hit[DETECTORS_INJ_TAGS] = true;
			break;
		}
	for (const unsigned char *q = p; (q = memchr(q, 0xe2, n - (size_t)(q - p))) && q + 2 < p + n; q++)
		if ((q[1] == 0x80 && q[2] >= 0xaa && q[2] <= 0xae) || (q[1] == 0x81 && q[2] >= 0xa6 && q[2] <= 0xa9)) {
			s->inj_hit[DETECTORS_INJ_BIDI] = true;
			break;
		}
}

/* The base64 alphabets, standard and URL-safe */
static const bool run_chars[256] = {
	['+'] = 1, ['-'] = 1, ['/'] = 1, ['_'] = 1,
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

#define RUN_MIN 16

/* Whether run[0..n) may be base64 of text: a group's first character
 * holds its first byte's top six bits, so a byte below 0x80 makes it one
 * of A-Z a-f. Text with a few non-ASCII characters passes (up to one group
 * in four); most identifiers and hashes fail here, before any decoding. */
static bool run_may_be_text(const char *run, size_t n)
{
	size_t groups = 0, ascii = 0;
	for (size_t g = 0; g < n; g += 4, groups++) {
		unsigned char c = (unsigned char)run[g];
		ascii += (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'f');
	}
	return ascii * 4 >= groups * 3;
}

/* Whether run[0..n) is hexadecimal that may be text: every character a
 * hex digit, and (as for base64) three bytes in four starting with a
 * digit 2 to 7 (printable ASCII); hashes and ids fail here. */
static bool hex_may_be_text(const char *run, size_t n)
{
	size_t ascii = 0;
	if (n % 2)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)run[i]))
			return false;
	for (size_t i = 0; i < n; i += 2)
		ascii += run[i] >= '2' && run[i] <= '7';
	return ascii * 4 >= n / 2 * 3;
}

/* Base64 of text written in text ("decode this: QUtJQV...", a Kubernetes
 * Secret's data, a docker config's auth, a Basic credential in a pasted
 * curl command), or hexadecimal: a model decodes either at sight. Each run
 * of RUN_MIN or more base64 characters (with its padding), or of
 * 2 x RUN_MIN hex digits, that decodes to text is scanned as well, its
 * spans sealed to the run (it cannot be rewritten in place); runs that
 * decode to bytes (hashes, identifiers, keys, images) are skipped. Runs in
 * that text are read too, INSPECT_RUN_DEPTH deep. */
static int scan_runs(struct inspect_scratch *s, const struct scan_target *tg, const char *t, size_t n,
		     const uint32_t *map, struct inspect_result *r)
{
	if (s->run_depth >= INSPECT_RUN_DEPTH)
		return 0;
	for (size_t i = 0, j, e; i + RUN_MIN <= n; i = e) {
		/* a run starts after the last character outside the alphabet
		 * in the next RUN_MIN (prose is passed a word at a time) */
		for (e = i + RUN_MIN; e > i && run_chars[(unsigned char)t[e - 1]]; e--)
			;
		if (e > i)
			continue;
		for (j = i + RUN_MIN; j < n && run_chars[(unsigned char)t[j]]; j++)
			;
		for (e = j; e < n && e - j < 2 && t[e] == '='; e++)
			;
		bool hex = j - i >= 2 * RUN_MIN && hex_may_be_text(t + i, j - i);
		if (!hex && !run_may_be_text(t + i, j - i))
			continue;
		struct buf *o = &s->run[s->run_depth];
		o->len = 0;
		int rc = hex ? decode_hex(t + i, j - i, o) : decode_base64(t + i, e - i, e - i, o);
		if (rc == -ENOMEM)
			return rc;
		if (rc || o->len < RUN_MIN * 3 / 4 || decode_sniff(o->data, o->len))
			continue;
		bool was = s->seal;
		if (!was) {
			s->seal = true;
			s->seal_s = tg->str_off + map_at(map, i);
			s->seal_e = tg->str_off + map_at(map, e);
		}
		s->run_depth++;
		rc = scan_decoded(s, tg, o->data, o->len, NULL, r);
		s->run_depth--;
		s->seal = was;
		if (rc)
			return rc;
	}
	return 0;
}

/* Scan one decoded string t[0..n) (map as for scan_text) after folding
 * what the model would not see as different (decode_normalize: format
 * characters, Unicode spaces, fullwidth and mathematical forms). Spans
 * come back in raw offsets through the composed map, so the redactor
 * replaces the raw bytes, zero-width characters inside a value included.
 * ASCII text is scanned as it is, with no copy. */
static int scan_decoded(struct inspect_scratch *s, const struct scan_target *tg,
			const char *t, size_t n, const uint32_t *map,
			struct inspect_result *r)
{
	int rc = decode_normalize(t, n, &s->norm, &s->nmap, &s->nmapcap);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		rc = scan_text(s, tg, t, n, map, r);
	} else {
		if (tg->visible)
			invisible_marks(s, t, n);
		for (size_t i = 0; i <= s->norm.len; i++)
			s->nmap[i] = map_at(map, s->nmap[i]);
		rc = scan_text(s, tg, s->norm.data, s->norm.len, s->nmap, r);
	}
	return rc ? rc : scan_runs(s, tg, t, n, map, r);
}

static void finish_score(struct inspect_scratch *s, struct inspect_result *r)
{
	if (s->limit || r->spans_truncated)
		r->counts[FINDING_INSPECTION_LIMIT] = 1;
	float keep = 1.0f;
	for (unsigned i = 0; i < DETECTORS_NINJ; i++)
		if (s->inj_hit[i])
			keep *= 1.0f - detectors_injection[i].w;
	r->injection_score = 1.0f - keep;
	if (r->injection_score >= INSPECT_INJECTION_THRESHOLD)
		r->counts[FINDING_PROMPT_INJECTION] = 1;
}

struct req_ctx {
	struct inspect_scratch *s;
	struct inspect_result *r;
	const char *body;
};

/* ------------------------------------------------------- decoded layers */

static void add_opaque(struct inspect_result *r, const char *type, size_t size)
{
	if (r->counts[FINDING_OPAQUE_CONTENT] < UINT32_MAX)
		r->counts[FINDING_OPAQUE_CONTENT]++;
	if (size >= r->opaque_bytes) {
		r->opaque_bytes = size;
		snprintf(r->opaque_type, sizeof(r->opaque_type), "%s", type);
	}
}

static int scan_layers(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r);

/* Opaque bytes are still scanned as text, sealed to [seal_s, seal_e) (raw
 * offsets): a prefix of magic bytes must not hide a key that follows in
 * plain text, and the redactor must not rewrite inside a binary. */
static int scan_sealed(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, size_t seal_s, size_t seal_e, struct inspect_result *r)
{
	bool was = s->seal;
	if (!was) {
		s->seal = true;
		s->seal_s = seal_s;
		s->seal_e = seal_e;
	}
	/* text in UTF-16 is read as the model's reader decodes it; the raw
	 * bytes too (audio taken for UTF-16 must not hide text after it).
	 * Two readings of one content: each type counts what the reading
	 * that found more of it found (an ASCII key in UTF-16 is found by
	 * both, through its NULs, and is one key). */
	uint32_t before[FINDING__COUNT], wide[FINDING__COUNT];
	memcpy(before, r->counts, sizeof(before));
	s->u16.len = 0;
	int rc = decode_utf16(t, n, &s->u16);
	bool two = rc == 1;
	if (two && !(rc = scan_decoded(s, tg, s->u16.data, s->u16.len, NULL, r))) {
		memcpy(wide, r->counts, sizeof(wide));
		memcpy(r->counts, before, sizeof(before));
	}
	if (rc == 0)
		rc = scan_decoded(s, tg, t, n, NULL, r);
	for (int k = 0; two && !rc && k < FINDING__COUNT; k++)
		if (wide[k] > r->counts[k])
			r->counts[k] = wide[k];
	s->seal = was;
	return rc;
}

struct layer_ctx {
	struct inspect_scratch *s;
	const struct scan_target *tg;
	const uint32_t *map;      /* decoded -> raw map of the text being walked */
	unsigned depth;
	struct inspect_result *r;
};

/* A composed map for slot d: raw offset of every byte of a piece of the
 * text at [off, ...) whose own map is inner (NULL: the piece is copied). */
static int compose_map(struct layer_ctx *c, unsigned d, size_t off, const uint32_t *inner, size_t len)
{
	struct inspect_scratch *s = c->s;
	if (len + 1 > s->lmapcap[d]) {
		uint32_t *m = realloc(s->lmap[d], (len + 1) * sizeof(*m));
		if (!m)
			return -ENOMEM;
		s->lmap[d] = m;
		s->lmapcap[d] = len + 1;
	}
	for (size_t i = 0; i <= len; i++)
		s->lmap[d][i] = map_at(c->map, off + (inner ? inner[i] : i));
	return 0;
}

/* One scalar of JSON found inside a string: values are decoded and scanned
 * again (they may hold more layers); numbers are scanned as they are (a
 * card number written as a JSON number); keys are names, not content. */
static int layer_scalar(void *vctx, const char *doc, const struct json_string *js)
{
	struct layer_ctx *c = vctx;
	struct inspect_scratch *s = c->s;
	unsigned d = c->depth;
	int rc;
	if (js->kind == JSON_NUMBER) {
		if ((rc = compose_map(c, d, js->off, NULL, js->len)))
			return rc;
		return scan_decoded(s, c->tg, doc + js->off, js->len, s->lmap[d], c->r);
	}
	if (js->kind != JSON_STRING && js->kind != JSON_KEY)
		return 0;
	if ((rc = json_decode(doc + js->off, js->len, &s->lt[d])) ||
	    (rc = compose_map(c, d, js->off, s->lt[d].map, s->lt[d].len)))
		return rc;
	return scan_layers(s, c->tg, s->lt[d].data, s->lt[d].len, s->lmap[d], d + 1, c->r);
}

/* Base64 b[0..bn) standing for the raw bytes [raw_s, raw_e) of the string:
 * text is scanned with its spans sealed to that range (the redactor cannot
 * rewrite inside base64), anything else is OPAQUE_CONTENT. Returns 1 if b
 * is not base64 (the caller scans it as text). */
static int scan_base64(struct inspect_scratch *s, const struct scan_target *tg, const char *b,
		       size_t bn, size_t raw_s, size_t raw_e, unsigned depth, struct inspect_result *r)
{
	struct buf *o = &s->b64[depth];
	o->len = 0;
	int rc = decode_base64(b, bn, bn, o);
	if (rc == -ENOMEM)
		return rc;
	if (rc || !o->len)
		return 1;
	const char *type = decode_sniff(o->data, o->len);
	if (type) {
		add_opaque(r, type, o->len);
		return scan_sealed(s, tg, o->data, o->len, tg->str_off + raw_s, tg->str_off + raw_e, r);
	}
	bool was = s->seal;
	if (!was) {
		s->seal = true;
		s->seal_s = tg->str_off + raw_s;
		s->seal_e = tg->str_off + raw_e;
	}
	rc = scan_layers(s, tg, o->data, o->len, NULL, depth + 1, r);
	s->seal = was;
	return rc;
}

/* data:[<media type>][;base64],<data> (RFC 2397) */
static int scan_data_uri(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
			 size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r)
{
	const char *comma = memchr(t, ',', n < 256 ? n : 256);
	if (comma && comma - t >= 7 && !strncasecmp(comma - 7, ";base64", 7)) {
		size_t hl = (size_t)(comma - t) + 1;
		int rc = scan_base64(s, tg, t + hl, n - hl, map_at(map, 0), map_at(map, n), depth, r);
		if (rc <= 0)
			return rc;
	}
	return scan_decoded(s, tg, t, n, map, r);
}

/* Whether the JSON string at body offset off is the value of a member
 * named "data", "file_data", "bytes" or "audio" (base64 blocks: Anthropic
 * document and image sources, OpenAI input_audio, Gemini inlineData,
 * Bedrock, the Realtime API's audio appends and input_audio items). */
static bool base64_member(const char *body, size_t off)
{
	static const char *const names[] = { "data", "file_data", "bytes", "audio" };
	size_t p = off;
	if (p < 2 || body[--p] != '"')
		return false;
	while (p > 0 && (body[p - 1] == ' ' || body[p - 1] == '\t' || body[p - 1] == '\n' || body[p - 1] == '\r'))
		p--;
	if (p == 0 || body[--p] != ':')
		return false;
	while (p > 0 && (body[p - 1] == ' ' || body[p - 1] == '\t' || body[p - 1] == '\n' || body[p - 1] == '\r'))
		p--;
	if (p == 0 || body[--p] != '"')
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t l = strlen(names[i]);
		if (p >= l + 1 && body[p - l - 1] == '"' && !memcmp(body + p - l, names[i], l))
			return true;
	}
	return false;
}

/* Scan decoded text t (map: to raw offsets relative to tg->str_off), first
 * undoing the layers it may hold: JSON in the string is walked again so
 * its escapes do not stay in the text; data: URIs are decoded. */
static int scan_layers(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r)
{
	size_t i = 0;
	while (i < n && (t[i] == ' ' || t[i] == '\n' || t[i] == '\r' || t[i] == '\t'))
		i++;
	if (i < n && (t[i] == '{' || t[i] == '[')) {
		int v = json_scan(t, n, NULL, NULL);
		if (v == 0 && depth < INSPECT_MAX_LAYERS) {
			struct layer_ctx c = { s, tg, map, depth, r };
			return json_scan(t, n, layer_scalar, &c);
		}
		if (v == 0 || v == -E2BIG)
			s->limit = true;    /* read as text from here on: say so */
	}
	if (n > 5 && !strncasecmp(t, "data:", 5) && depth < INSPECT_MAX_LAYERS)
		return scan_data_uri(s, tg, t, n, map, depth, r);
	return scan_decoded(s, tg, t, n, map, r);
}

static int req_string(void *vctx, size_t off, size_t len, bool visible)
{
	struct req_ctx *c = vctx;
	struct scan_target tg = { c->body, off, len, true, visible };
	const char *raw = c->body + off;
	int rc;
	if (len >= 8 && base64_member(c->body, off)) {
		if ((rc = scan_base64(c->s, &tg, raw, len, 0, len, 0, c->r)) <= 0)
			return rc;
	}
	if (!memchr(raw, '\\', len)) {
		/* no escapes: nested JSON always has some; only data: URIs remain */
		if (len > 5 && !strncasecmp(raw, "data:", 5))
			return scan_data_uri(c->s, &tg, raw, len, NULL, 0, c->r);
		return scan_decoded(c->s, &tg, raw, len, NULL, c->r);
	}
	if ((rc = json_decode(raw, len, &c->s->text)))
		return rc;
	return scan_layers(c->s, &tg, c->s->text.data, c->s->text.len, c->s->text.map, 0, c->r);
}

/* Bytes [from, to) of the body read as text. */
static int scan_between(struct req_ctx *c, size_t from, size_t to)
{
	struct scan_target tg = { c->body, from, to - from, false, true };
	return to > from ? scan_decoded(c->s, &tg, c->body + from, to - from, NULL, c->r) : 0;
}

/* Text that is not valid JSON (a body with NaN or trailing commas, which
 * lenient parsers take; a file part), read as such a parser would read
 * it: each "..." token in [off, len) as a JSON string, its escapes decoded
 * (a key written as \u0041KIA... is a key), and the bytes between them
 * as text. A token with a bad escape is read as it is. */
static int scan_invalid_json(struct req_ctx *c, size_t off, size_t len)
{
	const char *b = c->body;
	size_t from = off, i = off;
	int rc = 0;

	while (!rc && i < len) {
		if (b[i] != '"') {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < len && b[j] != '"')
			j += b[j] == '\\' ? 2 : 1;
		if (j >= len)
			break;             /* unterminated: the rest is text */
		if (!(rc = scan_between(c, from, i)) && (rc = req_string(c, i + 1, j - i - 1, true)) == -EINVAL)
			rc = scan_between(c, i + 1, j);
		from = i = j + 1;
	}
	return rc ? rc : scan_between(c, from, len);
}

/* JSON in UTF-16 (a byte order mark, or NULs beside the ASCII): RFC 8259
 * wants UTF-8, and the agent cannot rewrite it in place, but Python's
 * json.loads(bytes) reads it, escapes and all. So it is invalid JSON,
 * read the way such a parser reads it (scan_invalid_json over its UTF-8
 * reading), every span sealed. Returns 1 if body is not JSON in UTF-16
 * (nothing scanned). */
static int scan_utf16_json(struct inspect_scratch *s, const char *body, size_t len, struct inspect_result *out)
{
	/* its own buffer: a string in it may hold base64 of more UTF-16,
	 * read in s->u16 */
	struct buf u = { .secret = true };
	int rc = decode_utf16(body, len, &u);
	size_t j = rc == 1 ? json_lead(u.data, u.len) : 0;
	if (rc != 1 || j >= u.len || (u.data[j] != '{' && u.data[j] != '[')) {
		buf_free(&u);
		return rc < 0 ? rc : 1;
	}
	out->info.invalid_json = true;
	out->counts[FINDING_INVALID_JSON] = 1;
	bool was = s->seal;
	s->seal = true;
	s->seal_s = 0;
	s->seal_e = len;
	struct req_ctx c = { s, out, u.data };
	rc = scan_invalid_json(&c, 0, u.len);
	s->seal = was;
	buf_free(&u);
	return rc;
}

struct jsonl_ctx { struct req_ctx *rc; size_t base; };

static int jsonl_string(void *vctx, const char *doc, const struct json_string *js)
{
	struct jsonl_ctx *c = vctx;
	(void)doc;
	if (js->kind != JSON_STRING && js->kind != JSON_KEY)
		return 0;
	return req_string(c->rc, c->base + js->off, js->len, js->kind == JSON_STRING);
}

/* JSON lines (Batch API input files): every non-empty line of
 * c->body[off, off + len) one JSON value, at least min_lines of them.
 * Returns 1 if it is not JSON lines (nothing scanned). */
static int scan_jsonl(struct req_ctx *c, size_t off, size_t len, size_t min_lines)
{
	const char *body = c->body;
	size_t lines = 0;
	len += off;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = off; i < len;) {
			const char *nl = memchr(body + i, '\n', len - i);
			size_t e = nl ? (size_t)(nl - body) : len, ws = i;
			while (ws < e && (body[ws] == ' ' || body[ws] == '\r' || body[ws] == '\t'))
				ws++;
			if (ws < e) {
				struct jsonl_ctx jc = { c, i };
				int rc = json_scan(body + i, e - i, pass ? jsonl_string : NULL, &jc);
				if (!pass && rc)
					return 1;
				if (pass && rc)
					return rc;
				lines++;
			}
			i = e + 1;
		}
		if (lines < min_lines)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------- multipart and forms */

#define PART_DECODED_MAX (64u << 20)

/* One part's content at c->body[off, off + len): binaries are named
 * OPAQUE_CONTENT, JSON (or JSON lines) is walked as a body, other text
 * is read as a lenient JSON parser would (scan_invalid_json). */
static int scan_part(struct req_ctx *c, size_t off, size_t len, const char *ctype, size_t ctlen)
{
	const char *sniff = decode_sniff(c->body + off, len);
	if (sniff) {
		char declared[64];
		snprintf(declared, sizeof(declared), "%.*s", (int)(ctlen < 63 ? ctlen : 63), ctype ? ctype : "");
		add_opaque(c->r, !strcmp(sniff, "application/octet-stream") && ctlen ? declared : sniff, len);
		struct scan_target tg = { c->body, off, len, false, true };
		return scan_sealed(c->s, &tg, c->body + off, len, off, off + len, c->r);
	}
	int rc = scan_jsonl(c, off, len, 1);
	return rc <= 0 ? rc : scan_invalid_json(c, off, off + len);
}

/* multipart/form-data (file uploads, /v1/files, audio transcriptions).
 * A part with a Content-Encoding is decoded and scanned sealed: its
 * findings cannot be redacted inside the compressed part, so a redaction
 * is refused. */
static int scan_multipart(struct inspect_scratch *s, struct inspect_result *r, const char *body,
			  size_t len, const char *b, size_t blen)
{
	struct req_ctx c = { s, r, body };
	struct decode_part part;
	size_t pos = 0;
	int rc, any = 0;
	while ((rc = decode_multipart_next(body, len, b, blen, &pos, &part)) == 1) {
		const char *ct = NULL, *ce = NULL;
		size_t ctl = 0, cel = 0;
		any = 1;
		decode_header_value(body + part.hdr_off, part.hdr_len, "content-type", &ct, &ctl);
		bool coded = decode_header_value(body + part.hdr_off, part.hdr_len, "content-encoding", &ce, &cel);
		/* a gzipped file (a browser uploads notes.txt.gz as it is): read
		 * what is inside, as for a gzip Content-Encoding */
		if (!coded && part.len >= 2 && (unsigned char)body[part.off] == 0x1f &&
		    (unsigned char)body[part.off + 1] == 0x8b) {
			ce = "gzip";
			cel = 4;
			coded = true;
		}
		if (!coded || (cel == 8 && !strncasecmp(ce, "identity", 8))) {
			if ((rc = scan_part(&c, part.off, part.len, ct, ctl)))
				return rc;
			continue;
		}
		s->part.len = 0;
		rc = decode_content(ce, cel, body + part.off, part.len, PART_DECODED_MAX, &s->part);
		if (rc == -ENOMEM)
			return rc;
		if (rc == -E2BIG) {
			s->limit = true;
			continue;
		}
		if (rc) {
			add_opaque(r, "application/octet-stream", part.len);   /* unreadable coding */
			continue;
		}
		struct req_ctx pc = { s, r, s->part.data ? s->part.data : "" };
		s->seal = true;
		s->seal_s = part.off;
		s->seal_e = part.off + part.len;
		rc = scan_part(&pc, 0, s->part.len, ct, ctl);
		s->seal = false;
		if (rc)
			return rc;
	}
	if (rc < 0 || !any) {
		/* not the multipart it claims (from here on): read it as text,
		 * through the escapes of its quoted strings (JSON so labelled) */
		return scan_invalid_json(&c, any ? pos : 0, len);
	}
	return 0;
}

/* application/x-www-form-urlencoded: each key=value pair decoded ('+',
 * %XX) and scanned whole, so "password=..." keeps its key; spans map to
 * the raw, still-encoded bytes. The redactor replaces those raw bytes:
 * every replacement format ([EMAIL_1], masks, hashes, vault tokens) is
 * made of characters a form decoder leaves as they are. */
static int scan_form(struct inspect_scratch *s, struct inspect_result *r, const char *body, size_t len)
{
	for (size_t i = 0; i < len;) {
		const char *amp = memchr(body + i, '&', len - i);
		size_t e = amp ? (size_t)(amp - body) : len;
		if (e > i) {
			struct scan_target tg = { body, i, e - i, false, true };
			int rc = decode_form(body + i, e - i, &s->part, &s->pmap, &s->pmapcap);
			if (!rc)
				rc = scan_decoded(s, &tg, s->part.data, s->part.len, s->pmap, r);
			if (rc)
				return rc;
		}
		i = e + 1;
	}
	return 0;
}

int inspect_request_typed(struct inspect_scratch *s, const char *host, const char *path,
			  const char *ctype, size_t ctlen, const char *body, size_t len,
			  struct inspect_result *out)
{
	const char *b;
	size_t blen;
	int rc;
	bool mp = ctlen >= 19 && !strncasecmp(ctype, "multipart/form-data", 19) &&
		  decode_multipart_boundary(ctype, ctlen, &b, &blen);
	/* JSON labelled a form is read as the JSON it is (a parser that
	 * ignores the label would read its escapes) */
	size_t j = json_lead(body, len);
	bool form = ctlen >= 33 && !strncasecmp(ctype, "application/x-www-form-urlencoded", 33) &&
		    !(j < len && (body[j] == '{' || body[j] == '['));
	/* a binary body (raw audio, an image, an archive) is named, not read
	 * as text; JSON bodies skip the check */
	const char *opaque = !mp && !form && len && body[0] != '{' && body[0] != '[' ?
			     decode_sniff(body, len) : NULL;
	if (!mp && !form && !opaque)
		return inspect_request(s, host, path, body, len, out);
	result_reset(out);
	if (opaque) {
		struct scan_target tg = { body, 0, len, false, true };
		out->info.provider = provider_identify(host, path);
		/* JSON in UTF-16 behind a byte order mark, or big-endian */
		if (!strcmp(opaque, "text/plain; charset=utf-16") && (rc = scan_utf16_json(s, body, len, out)) <= 0) {
			if (!rc)
				finish_score(s, out);
			return rc;
		}
		add_opaque(out, opaque, len);
		rc = scan_sealed(s, &tg, body, len, 0, len, out);
		if (!rc)
			finish_score(s, out);
		return rc;
	}
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	out->info.provider = provider_identify(host, path);
	rc = mp ? scan_multipart(s, out, body, len, b, blen) : scan_form(s, out, body, len);
	if (rc)
		return rc;
	finish_score(s, out);
	return 0;
}

int inspect_request(struct inspect_scratch *s, const char *host, const char *path,
		    const char *body, size_t len, struct inspect_result *out)
{
	struct req_ctx c = { s, out, body };
	int rc;
	result_reset(out);
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	rc = provider_parse_request(host, path, body, len, &out->info, req_string, &c);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (!out->info.is_json && out->info.invalid_json && (rc = scan_jsonl(&c, 0, len, 2)) <= 0) {
		if (rc < 0)
			return rc;
		out->info.is_json = true;
		out->info.invalid_json = false;
	}
	if (!out->info.is_json) {
		struct scan_target tg = { body, 0, len, false, true };
		/* nested past JSON_MAX_DEPTH is a limit, not a malformed body */
		if (out->info.invalid_json && json_scan(body, len, NULL, NULL) == -E2BIG)
			s->limit = true;
		else if (out->info.invalid_json)
			out->counts[FINDING_INVALID_JSON] = 1;
		rc = 1;
		if (out->info.invalid_json && len >= 2 && !body[1])
			rc = scan_utf16_json(s, body, len, out);       /* '{' then NUL */
		if (rc == 1 && out->info.invalid_json)
			rc = scan_invalid_json(&c, 0, len);
		else if (rc == 1)
			rc = scan_decoded(s, &tg, body, len, NULL, out);
		if (rc)
			return rc;
	}
	finish_score(s, out);
	return 0;
}

/* p[0..len) whole, as text, or as bytes (sealed: scan_sealed) */
static int inspect_whole(struct inspect_scratch *s, const char *p, size_t len, bool bytes,
			 struct inspect_result *out)
{
	struct scan_target tg = { p, 0, len, false, true };
	int rc;
	result_reset(out);
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	rc = bytes ? scan_sealed(s, &tg, p, len, 0, len, out) : scan_decoded(s, &tg, p, len, NULL, out);
	if (rc)
		return rc;
	finish_score(s, out);
	return 0;
}

int inspect_text(struct inspect_scratch *s, const char *text, size_t len,
		 struct inspect_result *out)
{
	return inspect_whole(s, text, len, false, out);
}

int inspect_bytes(struct inspect_scratch *s, const char *p, size_t len,
		  struct inspect_result *out)
{
	return inspect_whole(s, p, len, true, out);
}

/* --------------------------------------------------------------- stream */

#define STREAM_PIECE 16384
#define STREAM_MARGIN 256

struct inspect_stream {
	struct inspect_scratch *s;
	char *buf;                /* window + current piece */
	size_t len;
	unsigned long long base;  /* absolute offset of buf[0] */
	unsigned long long counted_upto, last_end;
	size_t unscanned;         /* bytes appended since the last scan */
	uint32_t counts[FINDING__COUNT];
	struct inspect_result r;
};

struct inspect_stream *inspect_stream_new(struct inspect_scratch *s)
{
	struct inspect_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->buf = malloc(INSPECT_STREAM_WINDOW + STREAM_PIECE);
	if (!st->buf) {
		free(st);
		return NULL;
	}
	st->s = s;
	return st;
}

/* Count findings that end after what was already counted and do not
 * overlap a counted one; findings near the end of the buffer wait for
 * more text (unless final). */
static int stream_scan(struct inspect_stream *st, bool final)
{
	int rc = inspect_text(st->s, st->buf, st->len, &st->r);
	if (rc)
		return rc;
	/* hold back the last STREAM_MARGIN bytes: a value may still grow, and
	 * a longer, higher-priority one (a card around a phone-like run) may
	 * still appear */
	size_t margin = final ? 0 : (st->len < STREAM_MARGIN ? st->len : STREAM_MARGIN);
	unsigned long long limit = st->base + st->len - margin;
	for (size_t i = 0; i < st->r.nspans; i++) {
		unsigned long long as = st->base + st->r.spans[i].start;
		unsigned long long ae = st->base + st->r.spans[i].end;
		if (ae <= st->counted_upto || ae > limit || as < st->last_end)
			continue;
		st->counts[st->r.spans[i].type]++;
		st->last_end = ae;
	}
	if (limit > st->counted_upto)
		st->counted_upto = limit;
	return 0;
}

int inspect_stream_feed(struct inspect_stream *st, const char *text, size_t len)
{
	while (len) {
		size_t take = len < STREAM_PIECE ? len : STREAM_PIECE;
		if (st->len > INSPECT_STREAM_WINDOW) {
			size_t drop = st->len - INSPECT_STREAM_WINDOW;
			memmove(st->buf, st->buf + drop, INSPECT_STREAM_WINDOW);
			st->len = INSPECT_STREAM_WINDOW;
			st->base += drop;
		}
		memcpy(st->buf + st->len, text, take);
		st->len += take;
		st->unscanned += take;
		text += take;
		len -= take;
		/* SSE deltas are a few bytes each: scan once enough has arrived */
		if (st->unscanned < STREAM_MARGIN)
			continue;
		st->unscanned = 0;
		int rc = stream_scan(st, false);
		if (rc)
			return rc;
	}
	return 0;
}

int inspect_stream_finish(struct inspect_stream *st)
{
	if (!st->len)
		return 0;
	return stream_scan(st, true);
}

const uint32_t *inspect_stream_counts(const struct inspect_stream *st)
{
	return st->counts;
}

void inspect_stream_free(struct inspect_stream *st)
{
	if (!st)
		return;
	inspect_result_free(&st->r);
	free(st->buf);
	free(st);
}
