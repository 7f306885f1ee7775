/* chain: decoded event -> store row, and the end-to-end verification.
 *
 * How a batch signature is re-checked from the store: the agent builds a
 * batch as protobuf-c's encoding of header fields 1..6, then each event's
 * full encoding as a field-7 record, then the signature (evcodec.c). The
 * store keeps, per event, E (the encoding without field 42) and the hash, and
 * per batch the header fields and the signature. The full encoding is E with
 * the field-42 record put back where protobuf-c writes it (before the first
 * field numbered above 42), so the signed bytes are rebuilt exactly without
 * keeping a second copy of every batch. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "chain.h"
#include "vigil/audit.pb-c.h"

static const char *nz(const char *s) { return s ? s : ""; }

/* decoded event -> row: every store COL field of common/evfields.h.
 * Strings absent on the wire become "" (a column holds no NULL) except
 * those the JSON line omits when absent (content), which stay NULL. The
 * stores keep one finding list as a column (findings, nfindings). */
#define TO_ROW_STRV_STR(x) nz(x)
#define TO_ROW_STRV_OMIT(x) (x)
#define TO_ROW_STR(f, json) o->f = TO_ROW_STRV_##json(v->f);
#define TO_ROW_NUM(f, json) o->f = v->f;
#define TO_ROW_U32 TO_ROW_NUM
#define TO_ROW_U64 TO_ROW_NUM
#define TO_ROW_I32 TO_ROW_NUM
#define TO_ROW_I64 TO_ROW_NUM
#define TO_ROW_S64 TO_ROW_NUM
#define TO_ROW_BOOL TO_ROW_NUM
#define TO_ROW_DOUBLE TO_ROW_NUM
#define TO_ROW_FINDINGS(f, json) o->nfindings = row_findings(v->f, v->n_##f, fbuf), o->f = fbuf;
#define TO_ROW_HASH(f, json) memcpy(o->f, v->f, STORE_HASH_LEN);
#define TO_ROW_COL(kind, f, json) TO_ROW_##kind(f, json)
#define TO_ROW_RAW(kind, f, json)
#define TO_ROW(f, num, kind, json, store, origin) TO_ROW_##store(kind, f, json)

static size_t row_findings(const struct vigil_finding *in, size_t n, struct store_finding *fbuf)
{
	if (n > EVCODEC_MAX_FINDINGS)
		n = EVCODEC_MAX_FINDINGS;
	for (size_t i = 0; i < n; i++) {
		snprintf(fbuf[i].type, sizeof(fbuf[i].type), "%s", nz(in[i].type));
		fbuf[i].count = in[i].count;
	}
	return n;
}

void chain_to_store(const struct evcodec_decoded *d, struct store_event *o, struct store_finding *fbuf)
{
	const struct vigil_event *v = &d->ev;
	memset(o, 0, sizeof(*o));
	EVFIELDS(TO_ROW)
	o->raw = d->enc;
	o->raw_len = d->enc_len;
}

void chain_report_free(struct chain_report *r)
{
	for (size_t i = 0; i < r->nlines; i++)
		free(r->lines[i]);
	memset(r, 0, sizeof(*r));
}

static void __attribute__((format(printf, 2, 3))) problem(struct chain_report *r, const char *fmt, ...)
{
	va_list ap;
	r->problems++;
	if (r->nlines >= CHAIN_MAX_PROBLEMS)
		return;
	char *line = NULL;
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) >= 0)
		r->lines[r->nlines++] = line;
	va_end(ap);
}

static size_t put_varint(uint8_t *b, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		b[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b[n++] = (uint8_t)v;
	return n;
}

/* One stored batch header being re-verified while events stream past. */
struct vbatch {
	uint64_t first_seq, last_seq;
	uint8_t sig[EVCODEC_SIG_LEN];
	size_t siglen;
	EVP_MD_CTX *md;
	size_t fed;
	bool done;
};

struct vctx {
	struct store *s;
	struct chain_report *r;
	const struct store_agent *a;
	const char *agent;
	/* chain walk */
	bool have_prev;
	uint64_t prev_seq;
	uint8_t prev_hash[32];
	char prev_boot[64];
	uint64_t first_seq;
	size_t events;
	/* declared gaps (kind gap): first..last ranges */
	uint64_t (*gaps)[2];
	size_t ngaps, capgaps;
	/* missing ranges, checked against gaps at the end */
	uint64_t (*holes)[2];
	size_t nholes, capholes;
	/* batches */
	struct vbatch *b;
	size_t nb, bnext;
	int err;
};

static int push_range(uint64_t (**v)[2], size_t *n, size_t *cap, uint64_t a, uint64_t b)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		void *nv = realloc(*v, nc * sizeof(**v));
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n][0] = a;
	(*v)[*n][1] = b;
	(*n)++;
	return 0;
}

static int batch_cb(void *c, const struct store_batch_info *bi)
{
	struct vctx *x = c;
	Vigil__Audit__Batch m = VIGIL__AUDIT__BATCH__INIT;
	uint8_t hdr[1024];
	if (x->nb % 64 == 0) {
		struct vbatch *nb = realloc(x->b, (x->nb + 64) * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		x->b = nb;
	}
	/* A batch reaching back to or behind the retention horizon lost
	 * events to retention: its signature cannot be checked any more (the
	 * chain from the horizon on still is). */
	if (x->a->has_horizon && bi->first_seq <= x->a->horizon_seq)
		return 0;
	struct vbatch *b = &x->b[x->nb];
	memset(b, 0, sizeof(*b));
	b->first_seq = bi->first_seq;
	b->last_seq = bi->last_seq;
	b->siglen = bi->signature_len <= sizeof(b->sig) ? bi->signature_len : 0;
	memcpy(b->sig, bi->signature, b->siglen);
	m.schema_version = bi->schema_version;
	m.agent_id = (char *)nz(bi->agent_id);
	m.boot_id = (char *)nz(bi->boot_id);
	m.first_seq = bi->first_seq;
	m.last_seq = bi->last_seq;
	m.prev_batch_hash.len = bi->prev_batch_hash_len;
	m.prev_batch_hash.data = (uint8_t *)bi->prev_batch_hash;
	if (vigil__audit__batch__get_packed_size(&m) > sizeof(hdr))
		return -E2BIG;
	size_t hl = vigil__audit__batch__pack(&m, hdr);
	if (!(b->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(b->md, hdr, hl) != 1) {
		EVP_MD_CTX_free(b->md);
		return -ENOMEM;
	}
	x->nb++;
	x->r->batches++;
	return 0;
}

static void finish_batch(struct vctx *x, struct vbatch *b)
{
	uint8_t dg[32];
	unsigned int dn = 0;
	if (b->done)
		return;
	b->done = true;
	if (EVP_DigestFinal_ex(b->md, dg, &dn) != 1) {
		x->err = -EIO;
		return;
	}
	if (!x->a->has_key)
		problem(x->r, "agent %s: batch %llu..%llu: no public key pinned for this agent", x->agent,
			(unsigned long long)b->first_seq, (unsigned long long)b->last_seq);
	else if (!b->fed || evcodec_verify_digest(x->a->pubkey, dg, b->sig, b->siglen))
		problem(x->r, "agent %s: batch %llu..%llu: signature does not verify over the stored events "
			      "(an event of this range was deleted, altered or added)",
			x->agent, (unsigned long long)b->first_seq, (unsigned long long)b->last_seq);
}

static void feed_batches(struct vctx *x, const struct store_event *e, const uint8_t *full, size_t fl)
{
	uint8_t rec[12];
	size_t rl;
	/* Batches are sorted by first_seq; close those that ended before seq. */
	while (x->bnext < x->nb && x->b[x->bnext].last_seq < e->seq)
		finish_batch(x, &x->b[x->bnext++]);
	rec[0] = (7 << 3) | 2;
	rl = 1 + put_varint(rec + 1, fl);
	for (size_t i = x->bnext; i < x->nb && x->b[i].first_seq <= e->seq; i++) {
		struct vbatch *b = &x->b[i];
		if (b->done || e->seq > b->last_seq)
			continue;
		EVP_DigestUpdate(b->md, rec, rl);
		EVP_DigestUpdate(b->md, full, fl);
		b->fed++;
	}
}

/* A stored row against the row made from its raw event: every store COL
 * field of common/evfields.h (a score < 0 is "none" however stored). */
#define CMP_STR(f) do { if (strcmp(nz(e->f), nz(want.f))) { bad = #f; goto diff; } } while (0);
#define CMP_NUM(f) do { if (e->f != want.f) { bad = #f; goto diff; } } while (0);
#define CMP_U32 CMP_NUM
#define CMP_U64 CMP_NUM
#define CMP_I32 CMP_NUM
#define CMP_I64 CMP_NUM
#define CMP_S64 CMP_NUM
#define CMP_BOOL CMP_NUM
#define CMP_DOUBLE(f) \
	do { if (!(e->f == want.f || (e->f < 0 && want.f < 0))) { bad = #f; goto diff; } } while (0);
#define CMP_FINDINGS(f) \
	do { if (!same_findings(e->f, e->nfindings, want.f, want.nfindings)) { bad = #f; goto diff; } } while (0);
#define CMP_HASH(f) do { if (memcmp(e->f, want.f, STORE_HASH_LEN)) { bad = #f; goto diff; } } while (0);
#define CMP_COL(kind, f) CMP_##kind(f)
#define CMP_RAW(kind, f)
#define CMP(f, num, kind, json, store, origin) CMP_##store(kind, f)

static bool same_findings(const struct store_finding *a, size_t na, const struct store_finding *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].type, b[i].type) || a[i].count != b[i].count)
			return false;
	return true;
}

static int event_cb(void *c, const struct store_event *e)
{
	struct vctx *x = c;
	struct chain_report *r = x->r;
	struct evcodec_decoded *d = NULL;
	struct store_finding fb[EVCODEC_MAX_FINDINGS];
	struct store_event want;
	uint8_t h[32];
	const char *bad = NULL;
	unsigned long long seq = (unsigned long long)e->seq;

	/* A row stored twice with identical content (ClickHouse merges such
	 * duplicates only eventually) is one event. */
	if (x->have_prev && e->seq == x->prev_seq && !memcmp(e->hash, x->prev_hash, 32) &&
	    !strcmp(nz(e->boot_id), x->prev_boot))
		return 0;
	x->events++;
	r->events++;
	if (x->have_prev && e->seq == x->prev_seq) {
		problem(r, "agent %s: seq %llu stored twice (boots %s and %s)", x->agent, seq, x->prev_boot,
			nz(e->boot_id));
		return 0;
	}
	if (!e->raw || !e->raw_len || evcodec_event_decode(e->raw, e->raw_len, &d)) {
		problem(r, "agent %s: seq %llu altered: its stored encoding is missing or malformed", x->agent, seq);
		goto chain;
	}
	if (evcodec_hash_encoded(d->ev.prev_hash, e->raw, e->raw_len, h) || memcmp(h, e->hash, 32)) {
		problem(r, "agent %s: seq %llu altered: hash does not match its stored encoding", x->agent, seq);
		goto chain;
	}
	memcpy(d->ev.hash, e->hash, 32);
	chain_to_store(d, &want, fb);
	EVFIELDS(CMP)
	goto ok;
diff:
	problem(r, "agent %s: seq %llu altered: column %s differs from what the agent signed", x->agent, seq, bad);
ok:
	if (!strcmp(nz(e->kind), "gap") && e->gap_last_seq >= e->gap_first_seq && e->gap_first_seq)
		if (push_range(&x->gaps, &x->ngaps, &x->capgaps, e->gap_first_seq, e->gap_last_seq))
			x->err = -ENOMEM;
	{
		/* Rebuild the full encoding (E + field 42) for the batch digests. */
		uint8_t *full = malloc(e->raw_len + EVCODEC_HASH_FIELD_LEN);
		size_t fl = 0;
		if (full) {
			memcpy(full, e->raw, e->raw_len);
			fl = evcodec_insert_hash(full, e->raw_len, e->hash);
		}
		if (fl)
			feed_batches(x, e, full, fl);
		free(full);
	}
chain:
	/* Chain continuity. */
	if (!x->have_prev) {
		x->first_seq = e->seq;
		if (x->a->has_horizon) {
			if (e->seq != x->a->horizon_seq + 1 || memcmp(e->prev_hash, x->a->horizon_hash, 32))
				problem(r, "agent %s: events %llu..%llu missing after the retention horizon", x->agent,
					(unsigned long long)x->a->horizon_seq + 1, seq - 1);
		} else {
			static const uint8_t zero[32];
			if (memcmp(e->prev_hash, zero, 32)) {
				if (e->seq > 1) {
					if (push_range(&x->holes, &x->nholes, &x->capholes, 1, e->seq - 1))
						x->err = -ENOMEM;
				} else {
					problem(r, "agent %s: seq %llu does not start a chain (its prev_hash is not zero)",
						x->agent, seq);
				}
			}
		}
	} else if (e->seq != x->prev_seq + 1) {
		if (push_range(&x->holes, &x->nholes, &x->capholes, x->prev_seq + 1, e->seq - 1))
			x->err = -ENOMEM;
	} else if (memcmp(e->prev_hash, x->prev_hash, 32)) {
		problem(r, "agent %s: chain broken between seq %llu and %llu (prev_hash does not match)", x->agent,
			(unsigned long long)x->prev_seq, seq);
	}
	x->have_prev = true;
	x->prev_seq = e->seq;
	memcpy(x->prev_hash, e->hash, 32);
	snprintf(x->prev_boot, sizeof(x->prev_boot), "%s", nz(e->boot_id));
	evcodec_decoded_free(d);
	return x->err;
}

/* True if every seq of [a, b] is declared dropped by some signed gap event. */
static bool covered(const struct vctx *x, uint64_t a, uint64_t b)
{
	for (uint64_t s = a; s <= b;) {
		bool hit = false;
		for (size_t i = 0; i < x->ngaps; i++)
			if (x->gaps[i][0] <= s && s <= x->gaps[i][1]) {
				s = x->gaps[i][1] + 1;
				hit = true;
				if (s == 0)
					return true;
				break;
			}
		if (!hit)
			return false;
	}
	return true;
}

static int verify_agent(struct store *s, const struct store_agent *a, struct chain_report *r)
{
	struct vctx x = { .s = s, .r = r, .a = a, .agent = a->agent_id };
	int rc;
	r->agents++;
	if ((rc = store_scan_batches(s, a->agent_id, batch_cb, &x)))
		goto out;
	if ((rc = store_scan_events(s, a->agent_id, event_cb, &x)))
		goto out;
	if ((rc = x.err))
		goto out;
	for (size_t i = 0; i < x.nholes; i++)
		if (!covered(&x, x.holes[i][0], x.holes[i][1]))
			problem(r, "agent %s: events %llu..%llu missing (no gap record covers them)", a->agent_id,
				(unsigned long long)x.holes[i][0], (unsigned long long)x.holes[i][1]);
	/* The newest events: every acked batch says how far the agent got. */
	uint64_t acked = 0;
	for (size_t i = 0; i < x.nb; i++)
		if (x.b[i].last_seq > acked)
			acked = x.b[i].last_seq;
	if (acked && (!x.have_prev || x.prev_seq < acked) && !covered(&x, x.have_prev ? x.prev_seq + 1 : 1, acked))
		problem(r, "agent %s: events %llu..%llu missing at the end (acked batches reach %llu)", a->agent_id,
			(unsigned long long)(x.have_prev ? x.prev_seq + 1 : 1), (unsigned long long)acked,
			(unsigned long long)acked);
	for (size_t i = x.bnext; i < x.nb; i++)
		finish_batch(&x, &x.b[i]);
	rc = x.err;
out:
	for (size_t i = 0; i < x.nb; i++)
		EVP_MD_CTX_free(x.b[i].md);
	free(x.b);
	free(x.gaps);
	free(x.holes);
	return rc;
}

int chain_verify(struct store *s, const char *agent_id, struct chain_report *r)
{
	struct store_agent *list = NULL;
	size_t n = 0;
	int rc;
	memset(r, 0, sizeof(*r));
	if ((rc = store_agent_list(s, &list, &n)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (agent_id && strcmp(agent_id, list[i].agent_id))
			continue;
		if (!list[i].has_head && !list[i].has_key)
			continue; /* enrolled or revoked, never sent anything */
		if ((rc = verify_agent(s, &list[i], r)))
			break;
	}
	free(list);
	return rc;
}
