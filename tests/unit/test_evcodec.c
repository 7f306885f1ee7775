/* Unit tests for common/evcodec.c: event encoding round trip, the hash
 * chain, batch signatures, zstd limits, forward compatibility (unknown
 * fields from a newer agent), Hello/Ack. */
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>
#include <zstd.h>
#include "check.h"
#include "evfill.h"
#include "evcodec.h"
#include "jsonw.h"
#include "pki.h"
#include "vigil/audit.pb-c.h"

static const struct vigil_finding k_findings[] = { { "EMAIL", 2 }, { "AWS_ACCESS_KEY", 1 } };

static void sample(struct vigil_event *ev, uint64_t seq)
{
	vigil_event_init(ev, "request");
	ev->time_us = 1763769600123456LL;
	ev->event_id = "0b6b5f7e-3c1d-4f7a-9a55-2f7e1c9d0a11";
	ev->agent_id = "ws-042";
	ev->boot_id = "5a1c0a34-7d7f-4bb4-8f1e-111111111111";
	ev->seq = seq;
	ev->host = "ws-042.corp";
	ev->user = "alice";
	ev->uid = 1000;
	ev->gid = 0;          /* root group: must stay distinct from unknown (-1) */
	ev->pid = 4242;
	ev->comm = "python3";
	ev->exe = "/usr/bin/python3.11";
	ev->cgroup = "/user.slice/user-1000.slice";
	ev->container_id = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
	ev->dst_ip = "104.18.7.192";
	ev->dst_port = 443;
	ev->sni = "api.openai.com";
	ev->provider = "openai";
	ev->method = "POST";
	ev->path = "/v1/chat/completions";
	ev->model = "gpt-4o-mini";
	ev->stream = true;
	ev->action = "redact";
	ev->rule = "pii";
	ev->findings = k_findings;
	ev->n_findings = 2;
	ev->injection_score = 0.25;
	ev->status = 200;
	ev->bytes_up = 1234;
	ev->bytes_down = 5678;
	ev->prompt_tokens = 0;
	ev->completion_tokens = 17;
	ev->latency_ms = 812;
	ev->policy_hash = "ab12";
	ev->content = "my mail is [EMAIL]";
}

static int streq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

TEST(event_roundtrip_keeps_every_field)
{
	struct vigil_event ev;
	struct evcodec_decoded *d = NULL;
	uint8_t buf[4096];
	size_t n;
	sample(&ev, 7);
	memset(ev.prev_hash, 0xaa, 32);
	memset(ev.hash, 0xbb, 32);
	n = evcodec_event_encode(&ev, true, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf), "encode returned %zu", n);
	CHECK(evcodec_event_decode(buf, n, &d) == 0, "decode of our own encoding failed");
	const struct vigil_event *o = &d->ev;
	CHECK(o->schema_version == EVCODEC_SCHEMA_VERSION, "schema_version %u", o->schema_version);
	CHECK(o->time_us == ev.time_us && o->seq == 7, "time/seq changed");
	CHECK(streq(o->event_id, ev.event_id) && streq(o->agent_id, "ws-042") &&
	      streq(o->boot_id, ev.boot_id) && streq(o->host, ev.host), "ids changed");
	CHECK(streq(o->kind, "request") && streq(o->user, "alice"), "kind/user changed");
	CHECK(o->uid == 1000 && o->gid == 0 && o->pid == 4242 && o->tid == -1,
	      "uid/gid/pid/tid = %lld/%lld/%lld/%lld", (long long)o->uid, (long long)o->gid,
	      (long long)o->pid, (long long)o->tid);
	CHECK(streq(o->comm, ev.comm) && streq(o->exe, ev.exe) && streq(o->cgroup, ev.cgroup) &&
		      streq(o->container_id, ev.container_id),
	      "process identity changed");
	CHECK(streq(o->dst_ip, ev.dst_ip) && o->dst_port == 443 && streq(o->sni, ev.sni),
	      "destination changed");
	CHECK(streq(o->provider, "openai") && streq(o->method, "POST") && streq(o->path, ev.path) &&
	      streq(o->model, ev.model) && o->stream, "request fields changed");
	CHECK(streq(o->action, "redact") && streq(o->rule, "pii") && o->reason == NULL &&
	      o->error == NULL, "decision fields changed (empty must decode as NULL)");
	CHECK(o->n_findings == 2 && streq(o->findings[0].type, "EMAIL") && o->findings[0].count == 2 &&
	      streq(o->findings[1].type, "AWS_ACCESS_KEY") && o->findings[1].count == 1,
	      "findings changed");
	CHECK(o->injection_score == 0.25 && o->status == 200, "score/status changed");
	CHECK(o->bytes_up == 1234 && o->bytes_down == 5678 && o->prompt_tokens == 0 &&
	      o->completion_tokens == 17 && o->latency_ms == 812, "usage/timings changed");
	CHECK(streq(o->policy_hash, "ab12") && streq(o->content, ev.content), "policy_hash/content");
	CHECK(memcmp(o->prev_hash, ev.prev_hash, 32) == 0 && memcmp(o->hash, ev.hash, 32) == 0 &&
	      d->has_hash, "hashes changed");
	/* E = the encoding without field 42 = encode(with_hash = false). */
	{
		uint8_t e[4096];
		size_t en = evcodec_event_encode(&ev, false, e, sizeof(e));
		CHECK(en == d->enc_len && memcmp(e, d->enc, en) == 0,
		      "E from the wire (%zu bytes) differs from encode(with_hash=false) (%zu)",
		      d->enc_len, en);
	}
	evcodec_decoded_free(d);
}

TEST(event_unknown_markers_and_gap_roundtrip)
{
	struct vigil_event ev;
	struct evcodec_decoded *d = NULL;
	uint8_t buf[1024];
	size_t n;
	vigil_event_init(&ev, "gap");
	ev.agent_id = "a";
	ev.gap_count = 500;
	ev.gap_first_seq = 100;
	ev.gap_last_seq = 599;
	n = evcodec_event_encode(&ev, false, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf), "encode %zu", n);
	CHECK(evcodec_event_decode(buf, n, &d) == 0, "decode failed");
	CHECK(d->ev.uid == -1 && d->ev.pid == -1 && d->ev.prompt_tokens == -1 &&
	      d->ev.completion_tokens == -1 && d->ev.injection_score < 0, "unknown markers lost");
	CHECK(d->ev.gap_count == 500 && d->ev.gap_first_seq == 100 && d->ev.gap_last_seq == 599,
	      "gap fields lost");
	CHECK(!d->has_hash, "an event without hash field claims to have one");
	evcodec_decoded_free(d);
}

TEST(encode_reports_needed_size)
{
	struct vigil_event ev;
	uint8_t small[8];
	size_t need;
	sample(&ev, 1);
	need = evcodec_event_encode(&ev, true, small, sizeof(small));
	CHECK(need > sizeof(small), "needed size %zu not reported", need);
	ev.n_findings = EVCODEC_MAX_FINDINGS + 1;
	CHECK(evcodec_event_encode(&ev, true, NULL, 0) == 0, "too many findings accepted");
}

TEST(decode_rejects_garbage)
{
	struct evcodec_decoded *d = NULL;
	const uint8_t bad1[] = { 0x0a, 0x80 };                     /* truncated varint length */
	const uint8_t bad2[] = { 0xca, 0x02, 0x05, 1, 2, 3, 4, 5 }; /* prev_hash (41) of 5 bytes */
	CHECK(evcodec_event_decode(bad1, sizeof(bad1), &d) == -EBADMSG, "truncated accepted");
	CHECK(evcodec_event_decode(bad2, sizeof(bad2), &d) == -EBADMSG, "5-byte hash accepted");
}

/* Builds a chain of n sample events; encodings go to enc[i] (malloc'ed). */
static int build_chain(size_t n, uint64_t first_seq, uint8_t *prev, uint8_t **enc, size_t *lens)
{
	for (size_t i = 0; i < n; i++) {
		struct vigil_event ev;
		sample(&ev, first_seq + i);
		ev.latency_ms = i;
		memcpy(ev.prev_hash, prev, 32);
		if (evcodec_event_hash(prev, &ev, ev.hash))
			return -1;
		lens[i] = evcodec_event_encode(&ev, true, NULL, 0);
		enc[i] = malloc(lens[i]);
		evcodec_event_encode(&ev, true, enc[i], lens[i]);
		memcpy(prev, ev.hash, 32);
	}
	return 0;
}

TEST(chain_hash_matches_definition)
{
	struct vigil_event ev;
	uint8_t zero[32] = { 0 }, h[32], h2[32], e[4096], manual[32];
	size_t en;
	unsigned int mdn = 0;
	sample(&ev, 1);
	CHECK(evcodec_event_hash(zero, &ev, h) == 0, "hash failed");
	memset(ev.prev_hash, 0, 32);
	en = evcodec_event_encode(&ev, false, e, sizeof(e));
	/* SHA-256(prev_hash || E) computed independently */
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, zero, 32);
	EVP_DigestUpdate(c, e, en);
	EVP_DigestFinal_ex(c, manual, &mdn);
	EVP_MD_CTX_free(c);
	CHECK(memcmp(h, manual, 32) == 0, "hash is not SHA-256(prev_hash || E)");
	/* the hash field itself does not influence the hash */
	memset(ev.hash, 0x55, 32);
	CHECK(evcodec_event_hash(zero, &ev, h2) == 0 && memcmp(h, h2, 32) == 0,
	      "hash depends on the hash field");
	/* any content change changes the hash */
	ev.bytes_up++;
	CHECK(evcodec_event_hash(zero, &ev, h2) == 0 && memcmp(h, h2, 32) != 0,
	      "editing bytes_up kept the same hash");
	ev.bytes_up--;
	h[0] ^= 1;
	CHECK(evcodec_event_hash(h, &ev, h2) == 0 && memcmp(manual, h2, 32) != 0,
	      "prev_hash does not influence the hash");
}

static EVP_PKEY *ed_key(void)
{
	EVP_PKEY *k = NULL;
	char err[256];
	pki_key_generate(PKI_KEY_ED25519, &k, err, sizeof(err));
	return k;
}

TEST(batch_build_parse_verify_check)
{
	enum { N = 50 };
	uint8_t *enc[N], prev[32] = { 0 }, digest[32], pub[32], *z = NULL;
	size_t lens[N], zn = 0;
	struct evcodec_batch *b = NULL;
	char err[256] = "";
	EVP_PKEY *k = ed_key(), *other = ed_key();
	CHECK(k && other, "Ed25519 key generation failed");
	CHECK(build_chain(N, 100, prev, enc, lens) == 0, "chain build failed");
	struct evcodec_batch_hdr h = { "ws-042", "boot-1", 100, 100 + N - 1, NULL };
	CHECK(evcodec_batch_build(&h, (const uint8_t *const *)enc, lens, N, k, 0, &z, &zn, digest) == 0,
	      "batch build failed");
	CHECK(evcodec_batch_parse(z, zn, &b, err, sizeof(err)) == 0, "parse failed: %s", err);
	CHECK(b->n_events == N && b->first_seq == 100 && b->last_seq == 100 + N - 1 &&
	      strcmp(b->agent_id, "ws-042") == 0 && strcmp(b->boot_id, "boot-1") == 0 &&
	      !b->has_prev_batch_hash, "batch header changed");
	CHECK(memcmp(b->digest, digest, 32) == 0, "parsed digest differs from the signed one");
	CHECK(evcodec_key_public(k, pub) == 0, "public key");
	CHECK(evcodec_batch_verify(b, pub) == 0, "signature does not verify with the signer's key");
	CHECK(evcodec_batch_check(b, err, sizeof(err)) == 0, "consistency check failed: %s", err);
	CHECK(b->events[3].ev.seq == 103 && b->events[3].ev.latency_ms == 3, "event order changed");
	CHECK(evcodec_key_public(other, pub) == 0 && evcodec_batch_verify(b, pub) == -EBADMSG,
	      "signature verified with another key");
	evcodec_batch_free(b);
	b = NULL;

	/* Tamper with one event inside a re-signed batch: the signature is
	 * fine (attacker has a key) but the chain check catches it. */
	{
		struct evcodec_decoded *d = NULL;
		struct vigil_event ev;
		uint8_t *z2 = NULL;
		size_t zn2 = 0;
		CHECK(evcodec_event_decode(enc[10], lens[10], &d) == 0, "decode");
		ev = d->ev;
		ev.bytes_up = 1;   /* edited, hash kept */
		size_t n = evcodec_event_encode(&ev, true, NULL, 0);
		uint8_t *edited = malloc(n);
		evcodec_event_encode(&ev, true, edited, n);
		uint8_t *saved = enc[10];
		size_t savedn = lens[10];
		enc[10] = edited;
		lens[10] = n;
		CHECK(evcodec_batch_build(&h, (const uint8_t *const *)enc, lens, N, other, 0, &z2, &zn2,
					  NULL) == 0, "build");
		CHECK(evcodec_batch_parse(z2, zn2, &b, err, sizeof(err)) == 0, "parse: %s", err);
		CHECK(evcodec_batch_check(b, err, sizeof(err)) == -EBADMSG &&
		      strstr(err, "seq 110") != NULL, "edited event not detected (err '%s')", err);
		evcodec_batch_free(b);
		b = NULL;
		/* Deleting an event in the middle breaks the chain. */
		enc[10] = saved;
		lens[10] = savedn;
		free(enc[20]);
		memmove(&enc[20], &enc[21], sizeof(enc[0]) * (N - 21));
		memmove(&lens[20], &lens[21], sizeof(lens[0]) * (N - 21));
		free(z2);
		z2 = NULL;
		CHECK(evcodec_batch_build(&h, (const uint8_t *const *)enc, lens, N - 1, k, 0, &z2, &zn2,
					  NULL) == 0, "build");
		CHECK(evcodec_batch_parse(z2, zn2, &b, err, sizeof(err)) == 0, "parse: %s", err);
		/* seq 119 -> 121: a hole (left for the verifier with gap events),
		 * but not a chain break between consecutive seqs */
		CHECK(evcodec_batch_check(b, err, sizeof(err)) == 0, "hole flagged as tampering: %s", err);
		evcodec_batch_free(b);
		b = NULL;
		free(z2);
		free(edited);
		evcodec_decoded_free(d);
	}

	/* Flip one byte of the compressed payload: parse or verify fails. */
	z[zn / 2] ^= 0x40;
	if (evcodec_batch_parse(z, zn, &b, err, sizeof(err)) == 0) {
		CHECK(evcodec_key_public(k, pub) == 0, "pub");
		CHECK(evcodec_batch_verify(b, pub) != 0 || evcodec_batch_check(b, err, sizeof(err)) != 0,
		      "a corrupted batch verified");
		evcodec_batch_free(b);
	}
	for (size_t i = 0; i < N - 1; i++)
		free(enc[i]);
	free(z);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

TEST(batch_prev_hash_and_signature_covers_header)
{
	uint8_t *enc[3], prev[32] = { 0 }, pbh[32], pub[32], *z = NULL, *raw;
	size_t lens[3], zn = 0, rn;
	struct evcodec_batch *b = NULL;
	char err[256];
	EVP_PKEY *k = ed_key();
	memset(pbh, 0x77, 32);
	CHECK(build_chain(3, 1, prev, enc, lens) == 0, "chain");
	struct evcodec_batch_hdr h = { "ws-042", "boot-1", 1, 3, pbh };
	CHECK(evcodec_batch_build(&h, (const uint8_t *const *)enc, lens, 3, k, 0, &z, &zn, NULL) == 0,
	      "build");
	CHECK(evcodec_batch_parse(z, zn, &b, err, sizeof(err)) == 0, "parse: %s", err);
	CHECK(b->has_prev_batch_hash && memcmp(b->prev_batch_hash, pbh, 32) == 0, "prev_batch_hash");
	evcodec_batch_free(b);
	b = NULL;
	/* Change the agent id in the raw bytes (same length) and recompress:
	 * the signature must no longer verify. */
	rn = ZSTD_getFrameContentSize(z, zn);
	raw = malloc(rn);
	CHECK(ZSTD_decompress(raw, rn, z, zn) == rn, "decompress");
	uint8_t *at = memmem(raw, 16, "ws-042", 6);
	CHECK(at != NULL, "agent id not in header");
	at[5] = '3';
	uint8_t *z2 = malloc(ZSTD_compressBound(rn));
	size_t zn2 = ZSTD_compress(z2, ZSTD_compressBound(rn), raw, rn, 1);
	CHECK(evcodec_batch_parse(z2, zn2, &b, err, sizeof(err)) == 0, "parse: %s", err);
	CHECK(evcodec_key_public(k, pub) == 0 && evcodec_batch_verify(b, pub) == -EBADMSG,
	      "header change kept a valid signature");
	CHECK(evcodec_batch_check(b, err, sizeof(err)) == -EBADMSG, "agent id mismatch not flagged");
	evcodec_batch_free(b);
	for (int i = 0; i < 3; i++)
		free(enc[i]);
	free(z);
	free(z2);
	free(raw);
	EVP_PKEY_free(k);
}

TEST(zstd_bomb_refused)
{
	size_t big = (size_t)EVCODEC_MAX_BATCH_RAW + 4096;
	uint8_t *zeros = calloc(1, big), *z;
	size_t zcap = ZSTD_compressBound(big), zn;
	struct evcodec_batch *b = NULL;
	char err[256] = "";
	CHECK(zeros != NULL, "oom");
	z = malloc(zcap);
	/* with the content size in the frame header */
	zn = ZSTD_compress(z, zcap, zeros, big, 1);
	CHECK(!ZSTD_isError(zn) && zn < 1024 * 1024, "compress");
	CHECK(evcodec_batch_parse(z, zn, &b, err, sizeof(err)) == -EMSGSIZE,
	      "declared 64 MiB+ batch not refused (%s)", err);
	/* without it (streaming compression): the hard cap must still hold */
	{
		ZSTD_CCtx *c = ZSTD_createCCtx();
		ZSTD_outBuffer o = { z, zcap, 0 };
		ZSTD_inBuffer in = { zeros, big, 0 };
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		size_t r;
		do
			r = ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
		while (r && !ZSTD_isError(r));
		ZSTD_freeCCtx(c);
		CHECK(ZSTD_getFrameContentSize(z, o.pos) == ZSTD_CONTENTSIZE_UNKNOWN, "size in header");
		CHECK(evcodec_batch_parse(z, o.pos, &b, err, sizeof(err)) == -EMSGSIZE,
		      "undeclared 64 MiB+ batch not refused (%s)", err);
	}
	CHECK(evcodec_batch_parse(z, EVCODEC_MAX_FRAME + 1, &b, err, sizeof(err)) == -EMSGSIZE,
	      "frame over 8 MiB accepted");
	{
		const uint8_t junk[] = "definitely not zstd";
		CHECK(evcodec_batch_parse(junk, sizeof(junk), &b, err, sizeof(err)) == -EBADMSG,
		      "junk accepted");
	}
	free(z);
	free(zeros);
}

/* A newer agent adds field 60 to its events. An old collector (this code)
 * must decode the event, and the hash computed over the bytes as sent must
 * still verify. */
TEST(forward_compatible_unknown_fields)
{
	struct vigil_event ev;
	uint8_t zero[32] = { 0 }, e[4096], full[4200], h[32];
	size_t en, fn;
	struct evcodec_decoded *d = NULL;
	sample(&ev, 5);
	en = evcodec_event_encode(&ev, false, e, sizeof(e));
	/* append field 60 (string "new") to E, as a newer encoder would */
	e[en++] = ((60 << 3 | 2) & 0x7f) | 0x80;
	e[en++] = (60 << 3 | 2) >> 7;
	e[en++] = 3;
	memcpy(e + en, "new", 3);
	en += 3;
	CHECK(evcodec_hash_encoded(zero, e, en, h) == 0, "hash");
	/* full = E with hash (field 42) inserted before field 43 would be; any
	 * position works since E strips it wherever it is: append it */
	memcpy(full, e, en);
	fn = en;
	full[fn++] = ((42 << 3 | 2) & 0x7f) | 0x80;
	full[fn++] = (42 << 3 | 2) >> 7;
	full[fn++] = 32;
	memcpy(full + fn, h, 32);
	fn += 32;
	CHECK(evcodec_event_decode(full, fn, &d) == 0, "event with an unknown field rejected");
	CHECK(d->enc_len == en && memcmp(d->enc, e, en) == 0, "E lost the unknown field");
	CHECK(evcodec_hash_encoded(d->ev.prev_hash, d->enc, d->enc_len, h) == 0 &&
	      memcmp(h, d->ev.hash, 32) == 0, "newer agent's hash does not verify");
	CHECK(streq(d->ev.model, "gpt-4o-mini"), "known fields lost");
	evcodec_decoded_free(d);
}

TEST(hello_ack_roundtrip)
{
	uint8_t pub[32], pub2[32], *buf = NULL;
	size_t n = 0;
	char id[64], reason[64];
	enum evcodec_ack_status st;
	uint64_t seq = 0;
	memset(pub, 0x42, 32);
	CHECK(evcodec_hello_encode("ws-042", pub, &buf, &n) == 0, "hello encode");
	CHECK(evcodec_hello_decode(buf, n, id, sizeof(id), pub2) == 0 && strcmp(id, "ws-042") == 0 &&
	      memcmp(pub, pub2, 32) == 0, "hello roundtrip");
	CHECK(evcodec_hello_decode(buf, n, id, 4, pub2) == -EBADMSG, "agent id overflow accepted");
	free(buf);
	CHECK(evcodec_ack_encode(EVCODEC_ACK_REJECTED, 99, "bad signature", &buf, &n) == 0, "ack");
	CHECK(evcodec_ack_decode(buf, n, &st, &seq, reason, sizeof(reason)) == 0 &&
	      st == EVCODEC_ACK_REJECTED && seq == 99 && strcmp(reason, "bad signature") == 0,
	      "ack roundtrip");
	free(buf);
	/* unknown status (newer collector) is never taken as OK */
	const uint8_t unk[] = { 0x08, 0x09, 0x10, 0x05 };
	CHECK(evcodec_ack_decode(unk, sizeof(unk), &st, &seq, NULL, 0) == 0 && st == EVCODEC_ACK_RETRY,
	      "unknown ack status treated as %d", (int)st);
}

TEST(json_has_contract_fields)
{
	struct vigil_event ev;
	struct jsonw w;
	sample(&ev, 9);
	jsonw_init(&w);
	evcodec_event_json(&ev, &w);
	jsonw_raw(&w, "", 1);
	const char *want[] = { "\"time\":\"2025-11-22T00:00:00.123456Z\"", "\"seq\":9",
			       "\"boot_id\":", "\"findings\":[{\"type\":\"EMAIL\",\"count\":2}",
			       "\"uid\":1000", "\"tid\":null", "\"prev_hash\":\"", "\"hash\":\"",
			       "\"kind\":\"request\"", "\"latency_ms\":812" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK(strstr(w.out.data, want[i]) != NULL, "JSON lacks %s: %s", want[i], w.out.data);
	jsonw_free(&w);
}

/* Findings in the model's answer travel in their own field and come back
 * apart from the request's. */
TEST(output_findings_roundtrip_and_json)
{
	static const struct vigil_finding out[] = { { "AWS_ACCESS_KEY", 1 }, { "EMAIL", 3 } };
	struct vigil_event ev;
	uint8_t buf[4096];
	struct evcodec_decoded *d = NULL;
	sample(&ev, 9);
	ev.output_findings = out;
	ev.n_output_findings = 2;
	size_t n = evcodec_event_encode(&ev, true, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf), "encode %zu", n);
	CHECK(evcodec_event_decode(buf, n, &d) == 0, "decode");
	CHECK(d->ev.n_findings == 2 && d->ev.n_output_findings == 2, "counts %zu/%zu", d->ev.n_findings,
	      d->ev.n_output_findings);
	CHECK(!strcmp(d->ev.output_findings[0].type, "AWS_ACCESS_KEY") && d->ev.output_findings[1].count == 3,
	      "output findings changed in transit");
	CHECK(!strcmp(d->ev.findings[0].type, k_findings[0].type), "request findings mixed with output findings");
	struct jsonw w;
	jsonw_init(&w);
	evcodec_event_json(&d->ev, &w);
	CHECK(!w.oom && strstr(w.out.data, "\"output_findings\":[{\"type\":\"AWS_ACCESS_KEY\",\"count\":1},"
				      "{\"type\":\"EMAIL\",\"count\":3}]"), "JSON: %.*s", (int)w.out.len, w.out.data);
	jsonw_free(&w);
	evcodec_decoded_free(d);
	ev.n_output_findings = EVCODEC_MAX_FINDINGS + 1;
	CHECK(evcodec_event_encode(&ev, true, buf, sizeof(buf)) == 0, "too many output findings encoded");
}

/* What an answer rule replaced travels in a third list, apart from what
 * was found in the answer and in the request. */
TEST(output_redacted_roundtrip_and_json)
{
	static const struct vigil_finding found[] = { { "EMAIL", 3 } };
	static const struct vigil_finding red[] = { { "EMAIL", 2 } };
	struct vigil_event ev;
	uint8_t buf[4096];
	struct evcodec_decoded *d = NULL;
	sample(&ev, 10);
	ev.output_findings = found;
	ev.n_output_findings = 1;
	ev.output_redacted = red;
	ev.n_output_redacted = 1;
	size_t n = evcodec_event_encode(&ev, true, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf), "encode %zu", n);
	CHECK(evcodec_event_decode(buf, n, &d) == 0, "decode");
	CHECK(d->ev.n_findings == 2 && d->ev.n_output_findings == 1 && d->ev.n_output_redacted == 1,
	      "counts %zu/%zu/%zu", d->ev.n_findings, d->ev.n_output_findings, d->ev.n_output_redacted);
	CHECK(!strcmp(d->ev.output_redacted[0].type, "EMAIL") && d->ev.output_redacted[0].count == 2 &&
	      d->ev.output_findings[0].count == 3, "lists mixed in transit");
	struct jsonw w;
	jsonw_init(&w);
	evcodec_event_json(&d->ev, &w);
	CHECK(!w.oom && strstr(w.out.data, "\"output_redacted\":[{\"type\":\"EMAIL\",\"count\":2}]"),
	      "JSON: %.*s", (int)w.out.len, w.out.data);
	jsonw_free(&w);
	evcodec_decoded_free(d);
	ev.n_output_redacted = EVCODEC_MAX_FINDINGS + 1;
	CHECK(evcodec_event_encode(&ev, true, buf, sizeof(buf)) == 0, "too many output redactions encoded");
}

/* The agent stores E with field 42 inserted; the verifier rebuilds the
 * signed bytes the same way. Both must equal what an encoder writes with
 * the hash set, whatever fields above 42 (content, output findings) exist. */
TEST(hash_insertion_equals_encoding_with_hash)
{
	static const struct vigil_finding out[] = { { "EMAIL", 1 } };
	for (int variant = 0; variant < 4; variant++) {
		struct vigil_event ev;
		uint8_t e[4096], full[4096];
		sample(&ev, 5);
		memset(ev.hash, 0x5a, sizeof(ev.hash));
		if (!(variant & 1))
			ev.content = NULL;
		if (variant & 2) {
			ev.output_findings = out;
			ev.n_output_findings = 1;
		}
		size_t n = evcodec_event_encode(&ev, false, e, sizeof(e) - EVCODEC_HASH_FIELD_LEN);
		size_t fn = evcodec_event_encode(&ev, true, full, sizeof(full));
		CHECK(n && fn == n + EVCODEC_HASH_FIELD_LEN, "sizes %zu %zu", n, fn);
		CHECK(evcodec_insert_hash(e, n, ev.hash) == fn && !memcmp(e, full, fn),
		      "field 42 inserted elsewhere than an encoder puts it (variant %d)", variant);
	}
	uint8_t junk[8 + EVCODEC_HASH_FIELD_LEN] = { 0x0a, 0x50 };
	CHECK(evcodec_insert_hash(junk, 2, junk) == 0, "invalid E accepted");
}

/* ---- the field list (common/evfields.h) against the proto and the JSON line */

TEST(field_list_matches_the_proto)
{
	char err[256] = "";
	CHECK(evcodec_fields_check(err, sizeof(err)) == 0, "common/evfields.h vs audit.proto: %s", err);
}

/* The checker really compares: another message's descriptor fails it. */
TEST(field_check_names_a_disagreement)
{
	char err[256] = "";
	CHECK(evcodec_fields_check_desc(&vigil__audit__batch__descriptor, err, sizeof(err)) == -EINVAL &&
		      strstr(err, "schema_version") == NULL && strstr(err, "time_us") != NULL,
	      "Batch accepted as the Event, or the first difference misnamed: %s", err);
}

/* "key": for a field the JSON line carries, NULL for one it never does. */
#define JKEY_NONE(f) NULL
#define JKEY_TIME(f) "\"time\":"
#define JKEY_ANY(f) "\"" #f "\":"
#define JKEY_STR JKEY_ANY
#define JKEY_U64 JKEY_ANY
#define JKEY_OPT JKEY_ANY
#define JKEY_NZ JKEY_ANY
#define JKEY_SCORE JKEY_ANY
#define JKEY_BOOL JKEY_ANY
#define JKEY_FINDINGS JKEY_ANY
#define JKEY_GAP JKEY_ANY
#define JKEY_OMIT JKEY_ANY
#define JKEY_HEX JKEY_ANY
#define JKEY(f, num, kind, json, store, origin) JKEY_##json(f),
static const char *const k_json_keys[] = { EVFIELDS(JKEY) };

TEST(json_line_carries_every_field_in_list_order_and_survives_the_codec)
{
	struct vigil_event ev;
	struct evcodec_decoded *d = NULL;
	struct jsonw w, w2;
	uint8_t buf[8192];
	evfill_every_field(&ev, k_findings);
	jsonw_init(&w);
	evcodec_event_json(&ev, &w);
	jsonw_raw(&w, "", 1);
	const char *at = w.out.data;
	for (size_t i = 0; i < sizeof(k_json_keys) / sizeof(k_json_keys[0]); i++) {
		if (!k_json_keys[i])
			continue;
		const char *p = strstr(w.out.data, k_json_keys[i]);
		CHECK(p != NULL, "JSON line lacks %s: %s", k_json_keys[i], w.out.data);
		CHECK(p >= at, "%s out of the list's order: %s", k_json_keys[i], w.out.data);
		at = p;
	}
	size_t n = evcodec_event_encode(&ev, true, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf) && evcodec_event_decode(buf, n, &d) == 0, "round trip failed");
	jsonw_init(&w2);
	evcodec_event_json(&d->ev, &w2);
	jsonw_raw(&w2, "", 1);
	CHECK(strcmp(w.out.data, w2.out.data) == 0, "a field changed through the protobuf mapping:\n%s\n%s", w.out.data, w2.out.data);
	CHECK(d->ev.schema_version == 7, "schema_version (not in the JSON) lost: %u", d->ev.schema_version);
	evcodec_decoded_free(d);
	jsonw_free(&w);
	jsonw_free(&w2);
}

/* The JSON line is part of the contract: names, order, null and absent
 * fields byte for byte (this is the line the code wrote before the field
 * list was generated). */
#define GOLDEN_FULL \
	"{\"time\":\"2023-11-14T22:13:20.123456Z\",\"event_id\":\"e-1\",\"agent_id\":\"a\",\"boot_id\":\"b\"," \
	"\"host\":\"h\",\"seq\":7,\"kind\":\"request\",\"user\":\"u\",\"uid\":1000,\"gid\":0,\"pid\":4,\"tid\":5," \
	"\"comm\":\"curl\",\"exe\":\"/usr/bin/curl\",\"cgroup\":\"/x\",\"container_id\":\"c1\",\"dst_ip\":\"1.2.3.4\"," \
	"\"dst_port\":443,\"sni\":\"api\",\"provider\":\"openai\",\"method\":\"POST\",\"path\":\"/v1\"," \
	"\"model\":\"gpt\",\"mcp_server\":\"mcp.example\",\"mcp_method\":\"tools/call\",\"tool\":\"t\",\"mcp_session\":\"s\",\"tool_calls\":\"x:1\",\"parent_exe\":\"/usr/bin/claude\",\"command\":\"npx -y x --token [REDACTED]\",\"app\":\"chatgpt\",\"conversation\":\"c-1\"," \
	"\"stream\":true,\"action\":\"allow\",\"rule\":\"r\",\"reason\":\"why\",\"findings\":[{\"type\":\"EMAIL\"," \
	"\"count\":2},{\"type\":\"AWS_ACCESS_KEY\",\"count\":1}],\"output_findings\":[{\"type\":\"PHONE\"," \
	"\"count\":3}],\"output_redacted\":[{\"type\":\"SSN\",\"count\":1}],\"injection_score\":0.5," \
	"\"status\":200,\"bytes_up\":10,\"bytes_down\":20,\"prompt_tokens\":3,\"completion_tokens\":4," \
	"\"cached_tokens\":2," \
	"\"latency_ms\":99,\"error\":\"err\",\"policy_hash\":\"ph\",\"content\":\"hello\"," \
	"\"prev_hash\":\"abababababababababababababababababababababababababababababababab\"," \
	"\"hash\":\"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\"}"
#define GOLDEN_GAP \
	"{\"time\":\"1970-01-01T00:00:00.000000Z\",\"event_id\":null,\"agent_id\":null,\"boot_id\":null," \
	"\"host\":null,\"seq\":0,\"kind\":\"gap\",\"user\":null,\"uid\":null,\"gid\":null,\"pid\":null,\"tid\":null," \
	"\"comm\":null,\"exe\":null,\"cgroup\":null,\"container_id\":null,\"dst_ip\":null,\"dst_port\":0," \
	"\"sni\":null,\"provider\":null,\"method\":null,\"path\":null,\"model\":null,\"mcp_server\":null,\"mcp_method\":null," \
	"\"tool\":null,\"mcp_session\":null,\"tool_calls\":null,\"parent_exe\":null,\"command\":null,\"app\":null,\"conversation\":null,\"stream\":false,\"action\":null," \
	"\"rule\":null,\"reason\":null,\"findings\":[],\"output_findings\":[],\"output_redacted\":[]," \
	"\"injection_score\":null,\"status\":null,\"bytes_up\":0,\"bytes_down\":0,\"prompt_tokens\":null," \
	"\"completion_tokens\":null,\"cached_tokens\":null,\"latency_ms\":0,\"error\":null,\"policy_hash\":null,\"gap_count\":3," \
	"\"gap_first_seq\":1,\"gap_last_seq\":3," \
	"\"prev_hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"," \
	"\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}"
TEST(json_line_is_the_contract_byte_for_byte)
{
	static const struct vigil_finding of[] = { { "PHONE", 3 } }, orr[] = { { "SSN", 1 } };
	struct vigil_event ev;
	struct jsonw w;
	vigil_event_init(&ev, "request");
	ev.time_us = 1700000000123456; ev.event_id = "e-1"; ev.agent_id = "a"; ev.boot_id = "b";
	ev.seq = 7; ev.host = "h"; ev.user = "u"; ev.uid = 1000; ev.gid = 0; ev.pid = 4; ev.tid = 5;
	ev.comm = "curl"; ev.exe = "/usr/bin/curl"; ev.cgroup = "/x"; ev.container_id = "c1";
	ev.dst_ip = "1.2.3.4"; ev.dst_port = 443; ev.sni = "api"; ev.provider = "openai";
	ev.method = "POST"; ev.path = "/v1"; ev.model = "gpt"; ev.mcp_method = "tools/call";
	ev.mcp_server = "mcp.example";
	ev.tool = "t"; ev.mcp_session = "s"; ev.tool_calls = "x:1"; ev.parent_exe = "/usr/bin/claude"; ev.command = "npx -y x --token [REDACTED]"; ev.app = "chatgpt"; ev.conversation = "c-1"; ev.stream = true;
	ev.action = "allow"; ev.rule = "r"; ev.reason = "why"; ev.error = "err";
	ev.findings = k_findings; ev.n_findings = 2; ev.output_findings = of; ev.n_output_findings = 1;
	ev.output_redacted = orr; ev.n_output_redacted = 1; ev.injection_score = 0.5; ev.status = 200;
	ev.bytes_up = 10; ev.bytes_down = 20; ev.prompt_tokens = 3; ev.completion_tokens = 4; ev.cached_tokens = 2;
	ev.latency_ms = 99; ev.policy_hash = "ph"; ev.gap_first_seq = 1; ev.gap_last_seq = 5;
	ev.content = "hello"; memset(ev.prev_hash, 0xab, 32); memset(ev.hash, 0xcd, 32);
	jsonw_init(&w);
	evcodec_event_json(&ev, &w);
	jsonw_raw(&w, "", 1);
	CHECK(strcmp(w.out.data, GOLDEN_FULL) == 0, "JSON line changed:\n%s\nwant\n%s", w.out.data, GOLDEN_FULL);
	/* A gap event writes the gap fields; unknowns are null, no content. */
	vigil_event_init(&ev, "gap");
	ev.gap_count = 3; ev.gap_first_seq = 1; ev.gap_last_seq = 3;
	jsonw_reset(&w);
	evcodec_event_json(&ev, &w);
	jsonw_raw(&w, "", 1);
	CHECK(strcmp(w.out.data, GOLDEN_GAP) == 0, "gap JSON line changed:\n%s\nwant\n%s", w.out.data, GOLDEN_GAP);
	jsonw_free(&w);
}
