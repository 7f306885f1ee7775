/* evcodec: the audit pipeline's wire format, shared by the agent, the
 * collector and the `vigil` CLI (proto/vigil/audit.proto).
 *
 * Owns: struct vigil_event <-> protobuf Event, the event hash chain, batch
 * build (sign + zstd) and parse (size limits, zstd bomb cap, signature
 * digest), Hello/Ack messages, and length-prefixed frames over an SSL*.
 * Must never: trust a length from the network without a cap, or compute a
 * hash or signature over a re-encoding of received bytes (an old collector
 * re-encoding a newer agent's event could reorder unknown fields): hashes
 * and signatures are always over the bytes as sent, with the one field they
 * cover removed.
 *
 * Definitions (AUDIT_PROTOCOL.md):
 *   E    = an Event's encoding with field 42 (hash) absent, prev_hash set;
 *   hash = SHA-256(prev_hash || E);
 *   batch digest = SHA-256(the Batch's encoding with field 8 (signature)
 *          absent); signature = Ed25519(batch digest).
 * A chain break (event seq s+1 whose prev_hash is not the hash of seq s)
 * is legitimate only where a signed gap event covers the missing seqs
 * (gap_first_seq..gap_last_seq); the verifier checks that, not evcodec.
 *
 * Functions return 0 or -errno unless said otherwise. */
#ifndef VIGIL_EVCODEC_H
#define VIGIL_EVCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include "evfields.h"

struct jsonw;

#define EVCODEC_SCHEMA_VERSION 1
#define EVCODEC_HASH_LEN 32
#define EVCODEC_SIG_LEN 64
#define EVCODEC_MAX_FRAME (8u << 20)          /* one frame, compressed batch included */
#define EVCODEC_MAX_BATCH_RAW (64u << 20)     /* a batch after zstd decompression */
#define EVCODEC_MAX_FINDINGS 64

struct vigil_finding {
	const char *type;      /* e.g. "EMAIL"; never the matched value */
	uint32_t count;
};

/* The C view of one event, generated from common/evfields.h (the
 * comments on each field are there). Strings: NULL and "" mean the same
 * (absent). Pointers are borrowed: for encoding, from the caller; for
 * decoded events, from the evcodec_decoded / evcodec_batch that returned
 * them. */
#define EVCODEC_CTYPE_STR(n) const char *n;
#define EVCODEC_CTYPE_U32(n) uint32_t n;
#define EVCODEC_CTYPE_U64(n) uint64_t n;
#define EVCODEC_CTYPE_I32(n) int32_t n;
#define EVCODEC_CTYPE_I64(n) int64_t n;
#define EVCODEC_CTYPE_S64(n) int64_t n;
#define EVCODEC_CTYPE_BOOL(n) bool n;
#define EVCODEC_CTYPE_DOUBLE(n) double n;
#define EVCODEC_CTYPE_FINDINGS(n) const struct vigil_finding *n; size_t n_##n;
#define EVCODEC_CTYPE_HASH(n) uint8_t n[EVCODEC_HASH_LEN];
#define EVCODEC_MEMBER(name, num, kind, json, store, origin) EVCODEC_CTYPE_##kind(name)
struct vigil_event {
	EVFIELDS(EVCODEC_MEMBER)
};

/* EVCODEC_COPY_<kind>(dst, src, field): one field of a vigil_event to
 * another (pointers stay borrowed from src's owner). */
#define EVCODEC_COPY_ANY(d, s, f) (d)->f = (s)->f;
#define EVCODEC_COPY_STR EVCODEC_COPY_ANY
#define EVCODEC_COPY_U32 EVCODEC_COPY_ANY
#define EVCODEC_COPY_U64 EVCODEC_COPY_ANY
#define EVCODEC_COPY_I32 EVCODEC_COPY_ANY
#define EVCODEC_COPY_I64 EVCODEC_COPY_ANY
#define EVCODEC_COPY_S64 EVCODEC_COPY_ANY
#define EVCODEC_COPY_BOOL EVCODEC_COPY_ANY
#define EVCODEC_COPY_DOUBLE EVCODEC_COPY_ANY
#define EVCODEC_COPY_FINDINGS(d, s, f) (d)->f = (s)->f; (d)->n_##f = (s)->n_##f;
#define EVCODEC_COPY_HASH(d, s, f) memcpy((d)->f, (s)->f, EVCODEC_HASH_LEN);

/* 0 if common/evfields.h and the protoc-c descriptor of Event (from
 * proto/vigil/audit.proto) agree on every field's name, number, type and
 * cardinality; -EINVAL with the first disagreement in err. The build runs it
 * (common/evfields_check.c) before linking any binary. _desc takes another
 * descriptor (tests). */
struct ProtobufCMessageDescriptor;
int evcodec_fields_check(char *err, size_t errlen);
int evcodec_fields_check_desc(const struct ProtobufCMessageDescriptor *d, char *err, size_t errlen);

/* Zeroes ev and sets the "unknown" markers (ids -1, tokens -1, score -1). */
void vigil_event_init(struct vigil_event *ev, const char *kind);

/* Encodes ev into buf[0..cap). with_hash false leaves field 42 out (that is
 * E). Returns the encoded length; if it is > cap nothing was written and
 * the caller retries with a buffer that large (snprintf-style). Returns 0
 * if ev is invalid (n_findings, n_output_findings or n_output_redacted >
 * EVCODEC_MAX_FINDINGS). */
size_t evcodec_event_encode(const struct vigil_event *ev, bool with_hash, uint8_t *buf, size_t cap);

/* out = SHA-256(prev_hash || E) where E is ev encoded with prev_hash
 * replaced by the argument and no hash. ev is not modified. */
int evcodec_event_hash(const uint8_t prev_hash[EVCODEC_HASH_LEN], const struct vigil_event *ev,
		       uint8_t out[EVCODEC_HASH_LEN]);
/* out = SHA-256(prev_hash || e[0..len)) for an E already encoded (stored). */
int evcodec_hash_encoded(const uint8_t prev_hash[EVCODEC_HASH_LEN], const uint8_t *e, size_t len,
			 uint8_t out[EVCODEC_HASH_LEN]);

/* Field 42 (the event's hash) as encoded: tag (2 bytes), length, 32 bytes. */
#define EVCODEC_HASH_FIELD_LEN (3 + EVCODEC_HASH_LEN)
/* Where field 42 goes in E: before the first field numbered above it (the
 * order a protobuf encoder writes), else at the end; -EBADMSG if E is not
 * a valid encoding. The batch signature covers the events with field 42
 * in that place, so agent and verifier must agree on it. */
long evcodec_hash_field_offset(const uint8_t *e, size_t len);
/* Inserts field 42 with hash into E in place (e needs len +
 * EVCODEC_HASH_FIELD_LEN bytes). Returns the new length, 0 if E is invalid. */
size_t evcodec_insert_hash(uint8_t *e, size_t len, const uint8_t hash[EVCODEC_HASH_LEN]);

/* A decoded event. ev's pointers point into this object. enc/enc_len is E
 * (the bytes as received with field 42 removed): store it, and verify with
 * evcodec_hash_encoded(ev.prev_hash, enc, enc_len) == ev.hash. */
struct evcodec_decoded {
	struct vigil_event ev;
	const uint8_t *enc;
	size_t enc_len;
	bool has_hash;                    /* fields 41 and 42 both present, 32 bytes each */
	void *priv_;
};

/* Decodes one Event (with or without its hash field). -EBADMSG if
 * malformed (including a prev_hash/hash that is not 0 or 32 bytes). */
int evcodec_event_decode(const uint8_t *buf, size_t len, struct evcodec_decoded **out);
void evcodec_decoded_free(struct evcodec_decoded *d);

/* Writes ev as one JSON object (the audit_log / `vigil query --json`
 * shape: CONTRACT.md field names, RFC 3339 time, hex hashes). */
void evcodec_event_json(const struct vigil_event *ev, struct jsonw *w);

/* A random UUID v4 string into out[37]. */
int evcodec_uuid(char out[37]);
/* Lower-case hex of in[0..n) into out[2n+1]. */
void evcodec_hex(const uint8_t *in, size_t n, char *out);

/* ---- batches ---- */

struct evcodec_batch_hdr {
	const char *agent_id;
	const char *boot_id;              /* the sending agent process's boot id */
	uint64_t first_seq, last_seq;
	const uint8_t *prev_batch_hash;   /* 32 bytes or NULL */
};

/* Builds a signed, zstd-compressed Batch (the payload of a batch frame)
 * from events[i][0..lens[i]): full Event encodings (hash included) as the
 * spool stores them, embedded as is. key: the agent's Ed25519 key
 * (borrowed). zlevel: zstd level (0 = default 3). *out is malloc'ed (the
 * caller frees); digest (optional) receives the signed digest, which is the
 * next batch's prev_batch_hash. -EMSGSIZE if the result exceeds
 * EVCODEC_MAX_FRAME. */
int evcodec_batch_build(const struct evcodec_batch_hdr *h, const uint8_t *const *events,
			const size_t *lens, size_t n, EVP_PKEY *key, int zlevel, uint8_t **out,
			size_t *outlen, uint8_t digest[EVCODEC_HASH_LEN]);

/* A parsed batch; every pointer points into this object. */
struct evcodec_batch {
	uint32_t schema_version;
	const char *agent_id, *boot_id;
	uint64_t first_seq, last_seq;
	uint8_t prev_batch_hash[EVCODEC_HASH_LEN];
	bool has_prev_batch_hash;
	uint8_t digest[EVCODEC_HASH_LEN];     /* what the signature covers */
	const uint8_t *signature;
	size_t signature_len;
	size_t n_events;
	struct evcodec_decoded *events;       /* n_events entries (not separately freeable) */
	size_t raw_len;                       /* decompressed size */
	void *priv_;
};

/* Decompresses (zbuf_len <= EVCODEC_MAX_FRAME, output capped at
 * EVCODEC_MAX_BATCH_RAW whatever the frame header claims) and decodes a
 * batch. Does not verify anything: see evcodec_batch_verify/check.
 * -EMSGSIZE over a limit, -EBADMSG if malformed; err says why. */
int evcodec_batch_parse(const uint8_t *zbuf, size_t zlen, struct evcodec_batch **out,
			char *err, size_t errlen);
void evcodec_batch_free(struct evcodec_batch *b);

/* 0 if the batch signature verifies with the raw 32-byte Ed25519 public
 * key, -EBADMSG if not. */
int evcodec_batch_verify(const struct evcodec_batch *b, const uint8_t pub[32]);

/* Internal consistency: at least one event; every event's agent_id equals
 * the batch's; seqs strictly increasing, first_seq/last_seq match; every
 * event has a hash equal to SHA-256(prev_hash || E); consecutive seqs
 * chain (prev_hash == previous hash). 0 or -EBADMSG with the reason. */
int evcodec_batch_check(const struct evcodec_batch *b, char *err, size_t errlen);

/* ---- keys ---- */

/* Raw 32-byte public key of an Ed25519 key. */
int evcodec_key_public(EVP_PKEY *key, uint8_t pub[32]);
int evcodec_sign_digest(EVP_PKEY *key, const uint8_t digest[EVCODEC_HASH_LEN],
			uint8_t sig[EVCODEC_SIG_LEN]);
int evcodec_verify_digest(const uint8_t pub[32], const uint8_t digest[EVCODEC_HASH_LEN],
			  const uint8_t *sig, size_t siglen);

/* ---- Hello / Ack (plain protobuf, no zstd) ---- */

int evcodec_hello_encode(const char *agent_id, const uint8_t pub[32], uint8_t **out, size_t *len);
/* agent_id: copied into agent_id[idlen] (-EBADMSG if it does not fit or
 * the key is not 32 bytes). */
int evcodec_hello_decode(const uint8_t *buf, size_t len, char *agent_id, size_t idlen,
			 uint8_t pub[32]);

enum evcodec_ack_status { EVCODEC_ACK_OK = 0, EVCODEC_ACK_REJECTED = 1, EVCODEC_ACK_RETRY = 2 };

int evcodec_ack_encode(enum evcodec_ack_status st, uint64_t acked_seq, const char *reason,
		       uint8_t **out, size_t *len);
/* reason (optional) is copied, truncated to reasonlen. */
int evcodec_ack_decode(const uint8_t *buf, size_t len, enum evcodec_ack_status *st,
		       uint64_t *acked_seq, char *reason, size_t reasonlen);

/* ---- frames: 4-byte big-endian length + payload ---- */

/* Blocking SSL (or a non-blocking one whose caller set a socket timeout:
 * a timeout is -ETIMEDOUT). -EMSGSIZE if len > EVCODEC_MAX_FRAME, -EIO on
 * any other failure. */
int evcodec_frame_write(SSL *ssl, const uint8_t *buf, size_t len);
/* *out is malloc'ed. -EMSGSIZE if the announced length exceeds max (or
 * EVCODEC_MAX_FRAME), -ECONNRESET on a clean close before a frame, -EIO. */
int evcodec_frame_read(SSL *ssl, uint8_t **out, size_t *len, size_t max);

#endif
