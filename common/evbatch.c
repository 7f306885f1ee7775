/* evbatch: event signing keys and signed, zstd-compressed batches (built by
 * the agent's shipper, parsed and verified by the collector) with bomb
 * protection: never allocates from a length it has not capped. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#include <openssl/ssl.h>
#include "evcodec.h"
#include "evcodec_int.h"
#include "jsonw.h"
#include "vigil/audit.pb-c.h"

int evcodec_key_public(EVP_PKEY *key, uint8_t pub[32])
{
	size_t n = 32;
	if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_public_key(key, pub, &n) != 1 || n != 32)
		return -EINVAL;
	return 0;
}

int evcodec_sign_digest(EVP_PKEY *key, const uint8_t digest[EVCODEC_HASH_LEN],
			uint8_t sig[EVCODEC_SIG_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t n = EVCODEC_SIG_LEN;
	int ret = -EIO;
	if (c && EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1 &&
	    EVP_DigestSign(c, sig, &n, digest, EVCODEC_HASH_LEN) == 1 && n == EVCODEC_SIG_LEN)
		ret = 0;
	EVP_MD_CTX_free(c);
	return ret;
}

int evcodec_verify_digest(const uint8_t pub[32], const uint8_t digest[EVCODEC_HASH_LEN],
			  const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ret = -EBADMSG;
	if (k && c && siglen == EVCODEC_SIG_LEN && EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) == 1 &&
	    EVP_DigestVerify(c, sig, siglen, digest, EVCODEC_HASH_LEN) == 1)
		ret = 0;
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	return ret;
}

/* ---------------------------------------------------------------- batches */

int evcodec_batch_build(const struct evcodec_batch_hdr *h, const uint8_t *const *events,
			const size_t *lens, size_t n, EVP_PKEY *key, int zlevel, uint8_t **out,
			size_t *outlen, uint8_t digest[EVCODEC_HASH_LEN])
{
	Vigil__Audit__Batch m = VIGIL__AUDIT__BATCH__INIT;
	uint8_t *raw = NULL, *z = NULL, dg[EVCODEC_HASH_LEN], sig[EVCODEC_SIG_LEN];
	size_t total, pos, zcap, zn;
	int ret;

	m.schema_version = EVCODEC_SCHEMA_VERSION;
	m.agent_id = evc_pstr(h->agent_id);
	m.boot_id = evc_pstr(h->boot_id);
	m.first_seq = h->first_seq;
	m.last_seq = h->last_seq;
	if (h->prev_batch_hash) {
		m.prev_batch_hash.len = EVCODEC_HASH_LEN;
		m.prev_batch_hash.data = (uint8_t *)h->prev_batch_hash;
	}
	/* Header fields 1..6 by protobuf-c, then the events (field 7) embedded
	 * as stored, then the signature (field 8): field-number order, which
	 * is what protobuf-c itself would produce. */
	total = vigil__audit__batch__get_packed_size(&m);
	for (size_t i = 0; i < n; i++) {
		if (lens[i] > EVCODEC_MAX_FRAME)
			return -EMSGSIZE;
		total += 1 + 10 + lens[i];
		if (total > EVCODEC_MAX_BATCH_RAW)
			return -EMSGSIZE;
	}
	total += 2 + EVCODEC_SIG_LEN;
	if (!(raw = malloc(total)))
		return -ENOMEM;
	pos = vigil__audit__batch__pack(&m, raw);
	for (size_t i = 0; i < n; i++) {
		raw[pos++] = (FIELD_BATCH_EVENTS << 3) | 2;
		pos += evc_put_varint(raw + pos, lens[i]);
		memcpy(raw + pos, events[i], lens[i]);
		pos += lens[i];
	}
	{
		unsigned int dn = 0;
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		ret = (c && EVP_DigestInit_ex(c, evc_sha256(), NULL) == 1 &&
		       EVP_DigestUpdate(c, raw, pos) == 1 && EVP_DigestFinal_ex(c, dg, &dn) == 1)
			      ? 0
			      : -EIO;
		EVP_MD_CTX_free(c);
		if (ret)
			goto err;
	}
	if ((ret = evcodec_sign_digest(key, dg, sig)))
		goto err;
	raw[pos++] = (FIELD_BATCH_SIGNATURE << 3) | 2;
	raw[pos++] = EVCODEC_SIG_LEN;
	memcpy(raw + pos, sig, EVCODEC_SIG_LEN);
	pos += EVCODEC_SIG_LEN;

	zcap = ZSTD_compressBound(pos);
	ret = -ENOMEM;
	if (!(z = malloc(zcap)))
		goto err;
	zn = ZSTD_compress(z, zcap, raw, pos, zlevel ? zlevel : 3);
	ret = -EIO;
	if (ZSTD_isError(zn))
		goto err;
	ret = -EMSGSIZE;
	if (zn > EVCODEC_MAX_FRAME)
		goto err;
	free(raw);
	if (digest)
		memcpy(digest, dg, EVCODEC_HASH_LEN);
	*out = z;
	*outlen = zn;
	return 0;
err:
	free(z);
	free(raw);
	return ret;
}

struct batch_priv {
	Vigil__Audit__Batch *msg;
	uint8_t *ebuf;
	struct vigil_finding *findings;
};

static void seterr(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

/* Streaming decompression with a hard output cap: the frame header's
 * content size is only a hint (and may be absent or a lie). */
static int unzstd(const uint8_t *z, size_t zlen, uint8_t **out, size_t *outlen, char *err,
		  size_t errlen)
{
	unsigned long long csize = ZSTD_getFrameContentSize(z, zlen);
	ZSTD_DCtx *d = NULL;
	uint8_t *buf = NULL;
	size_t cap, used = 0, r = 1;
	ZSTD_inBuffer in = { z, zlen, 0 };
	int ret;

	if (csize == ZSTD_CONTENTSIZE_ERROR) {
		seterr(err, errlen, "not a zstd frame");
		return -EBADMSG;
	}
	if (csize != ZSTD_CONTENTSIZE_UNKNOWN && csize > EVCODEC_MAX_BATCH_RAW) {
		seterr(err, errlen, "batch larger than 64 MiB decompressed");
		return -EMSGSIZE;
	}
	cap = csize != ZSTD_CONTENTSIZE_UNKNOWN ? (size_t)csize + 1 : zlen * 4 + 1024;
	if (cap > EVCODEC_MAX_BATCH_RAW)
		cap = EVCODEC_MAX_BATCH_RAW;
	if (!(d = ZSTD_createDCtx()) || !(buf = malloc(cap))) {
		ret = -ENOMEM;
		goto err;
	}
	for (;;) {
		ZSTD_outBuffer o = { buf, cap, used };
		r = ZSTD_decompressStream(d, &o, &in);
		used = o.pos;
		if (ZSTD_isError(r)) {
			seterr(err, errlen, "corrupt zstd data");
			ret = -EBADMSG;
			goto err;
		}
		if (r == 0 && in.pos == in.size)
			break;
		if (used == cap) {
			uint8_t *nb;
			if (cap >= EVCODEC_MAX_BATCH_RAW) {
				seterr(err, errlen, "batch larger than 64 MiB decompressed");
				ret = -EMSGSIZE;
				goto err;
			}
			cap = cap * 2 > EVCODEC_MAX_BATCH_RAW ? EVCODEC_MAX_BATCH_RAW : cap * 2;
			if (!(nb = realloc(buf, cap))) {
				ret = -ENOMEM;
				goto err;
			}
			buf = nb;
		} else if (in.pos == in.size) {
			seterr(err, errlen, "truncated zstd data");
			ret = -EBADMSG;
			goto err;
		}
	}
	ZSTD_freeDCtx(d);
	*out = buf;
	*outlen = used;
	return 0;
err:
	ZSTD_freeDCtx(d);
	free(buf);
	return ret;
}

int evcodec_batch_parse(const uint8_t *zbuf, size_t zlen, struct evcodec_batch **out,
			char *err, size_t errlen)
{
	struct evcodec_batch *b = NULL;
	struct batch_priv *p = NULL;
	uint8_t *raw = NULL;
	size_t rawlen = 0, pos = 0, epos = 0, nev = 0, ei = 0, nfind = 0, fi = 0;
	struct evc_wire_field f;
	EVP_MD_CTX *c = NULL;
	unsigned int dn = 0;
	int ret;

	if (zlen > EVCODEC_MAX_FRAME) {
		seterr(err, errlen, "batch frame larger than 8 MiB");
		return -EMSGSIZE;
	}
	if ((ret = unzstd(zbuf, zlen, &raw, &rawlen, err, errlen)))
		return ret;
	ret = -ENOMEM;
	if (!(b = calloc(1, sizeof(*b))) || !(p = calloc(1, sizeof(*p))))
		goto err;
	b->priv_ = p;
	b->raw_len = rawlen;
	if (!(c = EVP_MD_CTX_new()) || EVP_DigestInit_ex(c, evc_sha256(), NULL) != 1)
		goto err;
	/* Digest: every top-level field but the signature, as received. */
	while (pos < rawlen) {
		if (evc_wire_next(raw, rawlen, &pos, &f)) {
			seterr(err, errlen, "malformed batch encoding");
			ret = -EBADMSG;
			goto err;
		}
		if (f.number == FIELD_BATCH_SIGNATURE)
			continue;
		if (f.number == FIELD_BATCH_EVENTS)
			nev++;
		if (EVP_DigestUpdate(c, raw + f.start, f.end - f.start) != 1) {
			ret = -EIO;
			goto err;
		}
	}
	if (EVP_DigestFinal_ex(c, b->digest, &dn) != 1) {
		ret = -EIO;
		goto err;
	}
	if (!(p->msg = vigil__audit__batch__unpack(NULL, rawlen, raw)) || p->msg->n_events != nev) {
		seterr(err, errlen, "malformed batch");
		ret = -EBADMSG;
		goto err;
	}
	for (size_t i = 0; i < nev; i++)
		nfind += evc_msg_findings(p->msg->events[i]);
	ret = -ENOMEM;
	if (!(b->events = calloc(nev ? nev : 1, sizeof(*b->events))) ||
	    !(p->findings = calloc(nfind ? nfind : 1, sizeof(*p->findings))) ||
	    !(p->ebuf = malloc(rawlen ? rawlen : 1)))
		goto err;
	/* E of each event: its bytes as received minus field 42. */
	pos = 0;
	while (pos < rawlen) {
		ssize_t n;
		struct evcodec_decoded *d;
		evc_wire_next(raw, rawlen, &pos, &f);   /* validated above */
		if (f.number != FIELD_BATCH_EVENTS || f.type != 2)
			continue;
		d = &b->events[ei];
		if (evc_from_msg(p->msg->events[ei], &d->ev, p->findings + fi, &d->has_hash) ||
		    (n = evc_wire_strip(raw + f.payload, f.end - f.payload, FIELD_EVENT_HASH,
				    p->ebuf + epos)) < 0) {
			seterr(err, errlen, "malformed event in batch");
			ret = -EBADMSG;
			goto err;
		}
		fi += evc_msg_findings(p->msg->events[ei]);
		d->enc = p->ebuf + epos;
		d->enc_len = (size_t)n;
		epos += (size_t)n;
		ei++;
	}
	if (ei != nev) {
		seterr(err, errlen, "malformed batch");
		ret = -EBADMSG;
		goto err;
	}
	b->n_events = nev;
	b->schema_version = p->msg->schema_version;
	b->agent_id = p->msg->agent_id;
	b->boot_id = p->msg->boot_id;
	b->first_seq = p->msg->first_seq;
	b->last_seq = p->msg->last_seq;
	if (p->msg->prev_batch_hash.len == EVCODEC_HASH_LEN) {
		memcpy(b->prev_batch_hash, p->msg->prev_batch_hash.data, EVCODEC_HASH_LEN);
		b->has_prev_batch_hash = true;
	}
	b->signature = p->msg->signature.data;
	b->signature_len = p->msg->signature.len;
	EVP_MD_CTX_free(c);
	free(raw);
	*out = b;
	return 0;
err:
	EVP_MD_CTX_free(c);
	free(raw);
	if (b)
		evcodec_batch_free(b);
	else
		free(p);
	return ret;
}

void evcodec_batch_free(struct evcodec_batch *b)
{
	struct batch_priv *p;
	if (!b)
		return;
	p = b->priv_;
	if (p) {
		if (p->msg)
			vigil__audit__batch__free_unpacked(p->msg, NULL);
		free(p->ebuf);
		free(p->findings);
		free(p);
	}
	free(b->events);
	free(b);
}

int evcodec_batch_verify(const struct evcodec_batch *b, const uint8_t pub[32])
{
	if (!b->signature || b->signature_len != EVCODEC_SIG_LEN)
		return -EBADMSG;
	return evcodec_verify_digest(pub, b->digest, b->signature, b->signature_len);
}

int evcodec_batch_check(const struct evcodec_batch *b, char *err, size_t errlen)
{
	uint8_t h[EVCODEC_HASH_LEN];
	if (b->n_events == 0) {
		seterr(err, errlen, "empty batch");
		return -EBADMSG;
	}
	if (b->first_seq != b->events[0].ev.seq || b->last_seq != b->events[b->n_events - 1].ev.seq) {
		seterr(err, errlen, "first_seq/last_seq do not match the events");
		return -EBADMSG;
	}
	for (size_t i = 0; i < b->n_events; i++) {
		const struct evcodec_decoded *d = &b->events[i];
		if (!d->ev.agent_id || strcmp(d->ev.agent_id, b->agent_id) != 0) {
			if (err)
				snprintf(err, errlen, "event seq %llu: agent_id differs from the batch",
					 (unsigned long long)d->ev.seq);
			return -EBADMSG;
		}
		if (i && d->ev.seq <= b->events[i - 1].ev.seq) {
			if (err)
				snprintf(err, errlen, "event seq %llu: sequence not increasing",
					 (unsigned long long)d->ev.seq);
			return -EBADMSG;
		}
		if (!d->has_hash || evcodec_hash_encoded(d->ev.prev_hash, d->enc, d->enc_len, h) ||
		    memcmp(h, d->ev.hash, EVCODEC_HASH_LEN) != 0) {
			if (err)
				snprintf(err, errlen, "event seq %llu: hash does not match its content",
					 (unsigned long long)d->ev.seq);
			return -EBADMSG;
		}
		if (i && d->ev.seq == b->events[i - 1].ev.seq + 1 &&
		    memcmp(d->ev.prev_hash, b->events[i - 1].ev.hash, EVCODEC_HASH_LEN) != 0) {
			if (err)
				snprintf(err, errlen, "event seq %llu: prev_hash breaks the chain",
					 (unsigned long long)d->ev.seq);
			return -EBADMSG;
		}
	}
	return 0;
}

