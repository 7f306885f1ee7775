/* evcodec: the audit event's protobuf encoding, its hash in the chain, and
 * the check of the event field list against the proto. The JSON line is in
 * evjson.c, signed zstd batches in evbatch.c, hello/ack and frames in
 * evframe.c; the wire helpers they share are in evcodec_int.h.
 *
 * Owns the wire format (see evcodec.h for the definitions of E, hash and
 * batch digest). Must never: hash or sign a re-encoding of received bytes
 * (a tiny protobuf wire scanner removes the covered field from the bytes as
 * received instead), allocate from a length it has not capped, or leave a
 * half-built object behind on error. */
#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#include "evcodec.h"
#include "evcodec_int.h"
#include "jsonw.h"
#include "vigil/audit.pb-c.h"


/* ---------------------------------------------------------------- helpers */

void evcodec_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

/* Event ids must be unique, not secret: a per-thread splitmix64 stream
 * seeded once from the CSPRNG. RAND_bytes per event took OpenSSL's DRBG
 * lock on every call and showed in the proxy's profile under load. */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int evcodec_uuid(char out[37])
{
	static const char digits[] = "0123456789abcdef";
	static __thread uint64_t state;
	static __thread bool seeded;
	unsigned char r[16];
	size_t o = 0;
	if (!seeded) {
		if (RAND_bytes((unsigned char *)&state, sizeof(state)) != 1)
			return -EIO;
		seeded = true;
	}
	uint64_t a = splitmix64(&state), b = splitmix64(&state);
	memcpy(r, &a, 8);
	memcpy(r + 8, &b, 8);
	r[6] = (r[6] & 0x0f) | 0x40;   /* version 4 */
	r[8] = (r[8] & 0x3f) | 0x80;   /* RFC 4122 variant */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = digits[r[i] >> 4];
		out[o++] = digits[r[i] & 15];
	}
	out[o] = 0;
	return 0;
}

/* SHA-256 fetched once: the implicit fetch behind EVP_sha256() takes a
 * lock and a lookup on every call in OpenSSL 3 (it showed in profiles). */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *evc_sha256(void)
{
	pthread_once(&g_sha256_once, sha256_fetch);
	return g_sha256 ? g_sha256 : EVP_sha256();
}

char *evc_pstr(const char *s)
{
	return (char *)(s ? s : "");
}

const char *evc_vstr(const char *s)
{
	return (s && *s) ? s : NULL;
}

/* Reads a varint at in[*pos..len). */
int evc_read_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*pos >= len)
			return -EBADMSG;
		uint8_t b = in[(*pos)++];
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -EBADMSG;
}

size_t evc_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

int evc_wire_next(const uint8_t *in, size_t len, size_t *pos, struct evc_wire_field *f)
{
	uint64_t tag, v;
	size_t p = *pos;
	f->start = p;
	if (evc_read_varint(in, len, &p, &tag))
		return -EBADMSG;
	if ((tag >> 3) == 0 || (tag >> 3) > 536870911u)
		return -EBADMSG;
	f->number = (uint32_t)(tag >> 3);
	f->type = (unsigned)(tag & 7);
	switch (f->type) {
	case 0:
		if (evc_read_varint(in, len, &p, &v))
			return -EBADMSG;
		break;
	case 1:
		if (len - p < 8)
			return -EBADMSG;
		p += 8;
		break;
	case 2:
		if (evc_read_varint(in, len, &p, &v) || v > len - p)
			return -EBADMSG;
		f->payload = p;
		p += (size_t)v;
		break;
	case 5:
		if (len - p < 4)
			return -EBADMSG;
		p += 4;
		break;
	default:   /* groups (3, 4) are not used by this schema */
		return -EBADMSG;
	}
	if (f->type != 2)
		f->payload = p;
	f->end = p;
	*pos = p;
	return 0;
}

/* Copies in[0..len) to out without the fields numbered `skip`; returns the
 * copied length or -EBADMSG. out must hold len bytes. */
ssize_t evc_wire_strip(const uint8_t *in, size_t len, uint32_t skip, uint8_t *out)
{
	size_t pos = 0, n = 0;
	struct evc_wire_field f;
	while (pos < len) {
		if (evc_wire_next(in, len, &pos, &f))
			return -EBADMSG;
		if (f.number == skip)
			continue;
		memcpy(out + n, in + f.start, f.end - f.start);
		n += f.end - f.start;
	}
	return (ssize_t)n;
}

/* ----------------------------------------------------------------- events */

void vigil_event_init(struct vigil_event *ev, const char *kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->uid = ev->gid = ev->pid = ev->tid = -1;
	ev->prompt_tokens = ev->completion_tokens = ev->cached_tokens = -1;
	ev->injection_score = -1;
}

/* The mapping struct vigil_event <-> Vigil__Audit__Event is generated from
 * common/evfields.h, one macro per kind: EVF_<step>_<kind>(field). */
/* EVF_FINDINGS_ONLY_<kind>(x): x for a FINDINGS field, nothing for the others. */
#define EVF_FINDINGS_ONLY_FINDINGS(x) x
#define EVF_FINDINGS_ONLY_STR(x)
#define EVF_FINDINGS_ONLY_U32(x)
#define EVF_FINDINGS_ONLY_U64(x)
#define EVF_FINDINGS_ONLY_I32(x)
#define EVF_FINDINGS_ONLY_I64(x)
#define EVF_FINDINGS_ONLY_S64(x)
#define EVF_FINDINGS_ONLY_BOOL(x)
#define EVF_FINDINGS_ONLY_DOUBLE(x)
#define EVF_FINDINGS_ONLY_HASH(x)
#define EVF_COUNT_FINDINGS(f, num, kind, json, store, origin) EVF_FINDINGS_ONLY_##kind(+1)
/* The finding lists of an event (findings, output findings, output
 * redactions: every FINDINGS field, in list order as fbuf/fptr hold them). */
#define EVCODEC_FINDING_LISTS (0 EVFIELDS(EVF_COUNT_FINDINGS))

/* Encode: a FINDINGS field takes the next EVCODEC_MAX_FINDINGS slots of
 * fbuf/fptr; the hashes point at the event's (to_msg overrides both). */
static void to_msg_findings(const struct vigil_finding *in, size_t n, Vigil__Audit__Finding ***out,
			    size_t *nout, Vigil__Audit__Finding *fbuf, Vigil__Audit__Finding **fptr)
{
	for (size_t i = 0; i < n; i++) {
		vigil__audit__finding__init(&fbuf[i]);
		fbuf[i].type = evc_pstr(in[i].type);
		fbuf[i].count = in[i].count;
		fptr[i] = &fbuf[i];
	}
	*nout = n;
	*out = n ? fptr : NULL;
}

#define EVF_TO_STR(f) m->f = evc_pstr(ev->f);
#define EVF_TO_U32(f) m->f = ev->f;
#define EVF_TO_U64(f) m->f = ev->f;
#define EVF_TO_I32(f) m->f = ev->f;
#define EVF_TO_I64(f) m->f = ev->f;
#define EVF_TO_S64(f) m->f = ev->f;
#define EVF_TO_BOOL(f) m->f = ev->f;
#define EVF_TO_DOUBLE(f) m->f = ev->f;
#define EVF_TO_FINDINGS(f)                                                              \
	to_msg_findings(ev->f, ev->n_##f, &m->f, &m->n_##f, fbuf + lists * EVCODEC_MAX_FINDINGS, \
			fptr + lists * EVCODEC_MAX_FINDINGS);                                   \
	lists++;
#define EVF_TO_HASH(f)                        \
	m->f.len = EVCODEC_HASH_LEN;          \
	m->f.data = (uint8_t *)ev->f;
#define EVF_TO(f, num, kind, json, store, origin) EVF_TO_##kind(f)

#define EVF_BAD(f, num, kind, json, store, origin) \
	EVF_FINDINGS_ONLY_##kind(|| ev->n_##f > EVCODEC_MAX_FINDINGS || (ev->n_##f && !ev->f))

/* Fills m from ev; fbuf/fptr hold the finding lists
 * (EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS). */
static int to_msg(const struct vigil_event *ev, const uint8_t *prev_hash, bool with_hash,
		  Vigil__Audit__Event *m, Vigil__Audit__Finding *fbuf, Vigil__Audit__Finding **fptr)
{
	size_t lists = 0;
	if (0 EVFIELDS(EVF_BAD))
		return -EINVAL;
	vigil__audit__event__init(m);
	EVFIELDS(EVF_TO)
	if (!m->schema_version)
		m->schema_version = EVCODEC_SCHEMA_VERSION;
	/* E is encoded with the prev_hash given (evcodec_event_hash) and
	 * without field 42 unless asked. */
	m->prev_hash.data = (uint8_t *)prev_hash;
	if (!with_hash) {
		m->hash.len = 0;
		m->hash.data = NULL;
	}
	return 0;
}

size_t evcodec_event_encode(const struct vigil_event *ev, bool with_hash, uint8_t *buf, size_t cap)
{
	Vigil__Audit__Event m;
	Vigil__Audit__Finding fbuf[EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS],
		*fptr[EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS];
	size_t need;
	if (to_msg(ev, ev->prev_hash, with_hash, &m, fbuf, fptr))
		return 0;
	need = vigil__audit__event__get_packed_size(&m);
	if (need <= cap)
		vigil__audit__event__pack(&m, buf);
	return need;
}

int evcodec_hash_encoded(const uint8_t prev_hash[EVCODEC_HASH_LEN], const uint8_t *e, size_t len,
			 uint8_t out[EVCODEC_HASH_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ret = -EIO;
	if (c && EVP_DigestInit_ex(c, evc_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, prev_hash, EVCODEC_HASH_LEN) == 1 &&
	    EVP_DigestUpdate(c, e, len) == 1 && EVP_DigestFinal_ex(c, out, &n) == 1 &&
	    n == EVCODEC_HASH_LEN)
		ret = 0;
	EVP_MD_CTX_free(c);
	return ret;
}

int evcodec_event_hash(const uint8_t prev_hash[EVCODEC_HASH_LEN], const struct vigil_event *ev,
		       uint8_t out[EVCODEC_HASH_LEN])
{
	Vigil__Audit__Event m;
	Vigil__Audit__Finding fbuf[EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS],
		*fptr[EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS];
	uint8_t stackbuf[2048], *buf = stackbuf;
	size_t need;
	int ret;
	if (to_msg(ev, prev_hash, false, &m, fbuf, fptr))
		return -EINVAL;
	need = vigil__audit__event__get_packed_size(&m);
	if (need > sizeof(stackbuf) && !(buf = malloc(need)))
		return -ENOMEM;
	vigil__audit__event__pack(&m, buf);
	ret = evcodec_hash_encoded(prev_hash, buf, need, out);
	if (buf != stackbuf)
		free(buf);
	return ret;
}

/* Entries of every finding list of m (each already bounded by from_msg's
 * checks when it is called; sums of a few size_t stay small anyway). */
#define EVF_SUM(f, num, kind, json, store, origin) EVF_FINDINGS_ONLY_##kind(+ m->n_##f)
size_t evc_msg_findings(const Vigil__Audit__Event *m)
{
	return 0 EVFIELDS(EVF_SUM);
}

/* Decode: findings packed one list after the other into fbuf. */
static const struct vigil_finding *from_msg_findings(Vigil__Audit__Finding *const *in, size_t n,
						     struct vigil_finding *fbuf)
{
	for (size_t i = 0; i < n; i++) {
		fbuf[i].type = evc_vstr(in[i]->type);
		fbuf[i].count = in[i]->count;
	}
	return n ? fbuf : NULL;
}

#define EVF_FROM_STR(f) ev->f = evc_vstr(m->f);
#define EVF_FROM_U32(f) ev->f = m->f;
#define EVF_FROM_U64(f) ev->f = m->f;
#define EVF_FROM_I32(f) ev->f = m->f;
#define EVF_FROM_I64(f) ev->f = m->f;
#define EVF_FROM_S64(f) ev->f = m->f;
#define EVF_FROM_BOOL(f) ev->f = m->f;
#define EVF_FROM_DOUBLE(f) ev->f = m->f;
#define EVF_FROM_FINDINGS(f)                                  \
	ev->f = from_msg_findings(m->f, m->n_##f, fbuf + off); \
	ev->n_##f = m->n_##f;                                  \
	off += m->n_##f;
#define EVF_FROM_HASH(f)          \
	if (m->f.len)             \
		memcpy(ev->f, m->f.data, EVCODEC_HASH_LEN);
#define EVF_FROM(f, num, kind, json, store, origin) EVF_FROM_##kind(f)

#define EVF_MSGBAD(f, num, kind, json, store, origin) EVF_MSGBAD_##kind(f)
#define EVF_MSGBAD_FINDINGS(f) || m->n_##f > EVCODEC_MAX_FINDINGS
#define EVF_MSGBAD_HASH(f) || (m->f.len != 0 && m->f.len != EVCODEC_HASH_LEN)
#define EVF_MSGBAD_STR(f)
#define EVF_MSGBAD_U32(f)
#define EVF_MSGBAD_U64(f)
#define EVF_MSGBAD_I32(f)
#define EVF_MSGBAD_I64(f)
#define EVF_MSGBAD_S64(f)
#define EVF_MSGBAD_BOOL(f)
#define EVF_MSGBAD_DOUBLE(f)

/* Points ev at m's data; fbuf takes the finding lists (evc_msg_findings(m)
 * entries). -EBADMSG on hashes of the wrong size or too many findings. */
int evc_from_msg(const Vigil__Audit__Event *m, struct vigil_event *ev,
		    struct vigil_finding *fbuf, bool *has_hash)
{
	size_t off = 0;
	if (0 EVFIELDS(EVF_MSGBAD))
		return -EBADMSG;
	memset(ev, 0, sizeof(*ev));
	EVFIELDS(EVF_FROM)
	*has_hash = m->prev_hash.len && m->hash.len;
	return 0;
}

long evcodec_hash_field_offset(const uint8_t *e, size_t len)
{
	size_t pos = 0;
	struct evc_wire_field f;
	while (pos < len) {
		if (evc_wire_next(e, len, &pos, &f))
			return -EBADMSG;
		if (f.number > FIELD_EVENT_HASH)
			return (long)f.start;
	}
	return (long)len;
}

size_t evcodec_insert_hash(uint8_t *e, size_t len, const uint8_t hash[EVCODEC_HASH_LEN])
{
	long off = evcodec_hash_field_offset(e, len);
	if (off < 0)
		return 0;
	memmove(e + off + EVCODEC_HASH_FIELD_LEN, e + off, len - (size_t)off);
	e[off] = (uint8_t)((((FIELD_EVENT_HASH << 3) | 2) & 0x7f) | 0x80);   /* 0xd2 0x02 */
	e[off + 1] = (uint8_t)(((FIELD_EVENT_HASH << 3) | 2) >> 7);
	e[off + 2] = EVCODEC_HASH_LEN;
	memcpy(e + off + 3, hash, EVCODEC_HASH_LEN);
	return len + EVCODEC_HASH_FIELD_LEN;
}

struct decoded_priv {
	Vigil__Audit__Event *msg;
	uint8_t *ebuf;
	struct vigil_finding findings[EVCODEC_FINDING_LISTS * EVCODEC_MAX_FINDINGS];
};

int evcodec_event_decode(const uint8_t *buf, size_t len, struct evcodec_decoded **out)
{
	struct evcodec_decoded *d = calloc(1, sizeof(*d));
	struct decoded_priv *p = calloc(1, sizeof(*p));
	ssize_t n;
	int ret = -ENOMEM;
	if (!d || !p)
		goto err;
	d->priv_ = p;
	ret = -EBADMSG;
	if (!(p->msg = vigil__audit__event__unpack(NULL, len, buf)))
		goto err;
	if (evc_from_msg(p->msg, &d->ev, p->findings, &d->has_hash))
		goto err;
	ret = -ENOMEM;
	if (!(p->ebuf = malloc(len ? len : 1)))
		goto err;
	ret = -EBADMSG;
	if ((n = evc_wire_strip(buf, len, FIELD_EVENT_HASH, p->ebuf)) < 0)
		goto err;
	d->enc = p->ebuf;
	d->enc_len = (size_t)n;
	*out = d;
	return 0;
err:
	if (d) {
		d->priv_ = p;
		evcodec_decoded_free(d);
	} else {
		free(p);
	}
	return ret;
}

void evcodec_decoded_free(struct evcodec_decoded *d)
{
	struct decoded_priv *p;
	if (!d)
		return;
	p = d->priv_;
	if (p) {
		if (p->msg)
			vigil__audit__event__free_unpacked(p->msg, NULL);
		free(p->ebuf);
		free(p);
	}
	free(d);
}

/* ---------------------------------------------------- the list vs the proto */

#define EVF_PB_STR PROTOBUF_C_TYPE_STRING
#define EVF_PB_U32 PROTOBUF_C_TYPE_UINT32
#define EVF_PB_U64 PROTOBUF_C_TYPE_UINT64
#define EVF_PB_I32 PROTOBUF_C_TYPE_INT32
#define EVF_PB_I64 PROTOBUF_C_TYPE_INT64
#define EVF_PB_S64 PROTOBUF_C_TYPE_SINT64
#define EVF_PB_BOOL PROTOBUF_C_TYPE_BOOL
#define EVF_PB_DOUBLE PROTOBUF_C_TYPE_DOUBLE
#define EVF_PB_FINDINGS PROTOBUF_C_TYPE_MESSAGE
#define EVF_PB_HASH PROTOBUF_C_TYPE_BYTES

static const char *const pb_type_names[] = {
	[PROTOBUF_C_TYPE_INT32] = "int32", [PROTOBUF_C_TYPE_SINT32] = "sint32",
	[PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
	[PROTOBUF_C_TYPE_SINT64] = "sint64", [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
	[PROTOBUF_C_TYPE_UINT32] = "uint32", [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
	[PROTOBUF_C_TYPE_UINT64] = "uint64", [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
	[PROTOBUF_C_TYPE_FLOAT] = "float", [PROTOBUF_C_TYPE_DOUBLE] = "double",
	[PROTOBUF_C_TYPE_BOOL] = "bool", [PROTOBUF_C_TYPE_ENUM] = "enum",
	[PROTOBUF_C_TYPE_STRING] = "string", [PROTOBUF_C_TYPE_BYTES] = "bytes",
	[PROTOBUF_C_TYPE_MESSAGE] = "message",
};

static const char *pb_type_name(ProtobufCType t)
{
	size_t i = (size_t)t;
	return i < sizeof(pb_type_names) / sizeof(pb_type_names[0]) && pb_type_names[i] ?
		       pb_type_names[i] : "?";
}

struct evf_spec {
	const char *name;
	unsigned number;
	ProtobufCType type;
	bool repeated;
};
#define EVF_SPEC(f, num, kind, json, store, origin) \
	{ #f, num, EVF_PB_##kind, 0 EVF_FINDINGS_ONLY_##kind(+1) },
static const struct evf_spec evf_specs[] = { EVFIELDS(EVF_SPEC) };

/* One field of the list against the descriptor's: same number, type and
 * cardinality (a repeated field is a list of Finding). */
static int check_field(const ProtobufCMessageDescriptor *d, const struct evf_spec *s, char *err,
		       size_t errlen)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, s->name);
	if (!f) {
		snprintf(err, errlen, "field %s (%u) of common/evfields.h is not in %s", s->name,
			 s->number, d->name);
		return -EINVAL;
	}
	if (f->id != s->number || f->type != s->type ||
	    (f->label == PROTOBUF_C_LABEL_REPEATED) != s->repeated ||
	    (s->repeated && f->descriptor != &vigil__audit__finding__descriptor)) {
		snprintf(err, errlen, "field %s: common/evfields.h says %s%s = %u, %s says %s%s = %u",
			 s->name, s->repeated ? "repeated " : "", pb_type_name(s->type), s->number,
			 d->name, f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated " : "",
			 pb_type_name(f->type), f->id);
		return -EINVAL;
	}
	return 0;
}

int evcodec_fields_check_desc(const ProtobufCMessageDescriptor *d, char *err, size_t errlen)
{
	size_t n = sizeof(evf_specs) / sizeof(evf_specs[0]);
	for (size_t i = 0; i < n; i++)
		if (check_field(d, &evf_specs[i], err, errlen))
			return -EINVAL;
	/* Every list field is in the proto, numbers are unique there: equal
	 * counts leave no proto field outside the list. */
	if (d->n_fields != n) {
		for (unsigned i = 0; i < d->n_fields; i++) {
			size_t j = 0;
			while (j < n && strcmp(evf_specs[j].name, d->fields[i].name))
				j++;
			if (j == n) {
				snprintf(err, errlen, "field %s (%u) of %s is not in common/evfields.h",
					 d->fields[i].name, d->fields[i].id, d->name);
				return -EINVAL;
			}
		}
		snprintf(err, errlen, "%s has %u fields, common/evfields.h %zu", d->name, d->n_fields, n);
		return -EINVAL;
	}
	return 0;
}

int evcodec_fields_check(char *err, size_t errlen)
{
	return evcodec_fields_check_desc(&vigil__audit__event__descriptor, err, errlen);
}

