/* evcodec: protobuf Event/Batch/Ack/Hello encoding for the audit pipeline,
 * the hash chain, batch signatures, zstd with bomb protection and frames.
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
#include "jsonw.h"
#include "vigil/audit.pb-c.h"

#define FIELD_EVENT_HASH 42
#define FIELD_BATCH_EVENTS 7
#define FIELD_BATCH_SIGNATURE 8

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

static const EVP_MD *sha256(void)
{
	pthread_once(&g_sha256_once, sha256_fetch);
	return g_sha256 ? g_sha256 : EVP_sha256();
}

static char *pstr(const char *s)
{
	return (char *)(s ? s : "");
}

static const char *vstr(const char *s)
{
	return (s && *s) ? s : NULL;
}

/* Reads a varint at in[*pos..len). */
static int read_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *v)
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

static size_t put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* One top-level field of a protobuf message: the field spans
 * in[start..end); for length-delimited fields the payload is
 * in[payload..end). */
struct wire_field {
	uint32_t number;
	unsigned type;
	size_t start, payload, end;
};

static int wire_next(const uint8_t *in, size_t len, size_t *pos, struct wire_field *f)
{
	uint64_t tag, v;
	size_t p = *pos;
	f->start = p;
	if (read_varint(in, len, &p, &tag))
		return -EBADMSG;
	if ((tag >> 3) == 0 || (tag >> 3) > 536870911u)
		return -EBADMSG;
	f->number = (uint32_t)(tag >> 3);
	f->type = (unsigned)(tag & 7);
	switch (f->type) {
	case 0:
		if (read_varint(in, len, &p, &v))
			return -EBADMSG;
		break;
	case 1:
		if (len - p < 8)
			return -EBADMSG;
		p += 8;
		break;
	case 2:
		if (read_varint(in, len, &p, &v) || v > len - p)
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
static ssize_t wire_strip(const uint8_t *in, size_t len, uint32_t skip, uint8_t *out)
{
	size_t pos = 0, n = 0;
	struct wire_field f;
	while (pos < len) {
		if (wire_next(in, len, &pos, &f))
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
	ev->prompt_tokens = ev->completion_tokens = -1;
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
		fbuf[i].type = pstr(in[i].type);
		fbuf[i].count = in[i].count;
		fptr[i] = &fbuf[i];
	}
	*nout = n;
	*out = n ? fptr : NULL;
}

#define EVF_TO_STR(f) m->f = pstr(ev->f);
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
	if (c && EVP_DigestInit_ex(c, sha256(), NULL) == 1 &&
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
static size_t msg_findings(const Vigil__Audit__Event *m)
{
	return 0 EVFIELDS(EVF_SUM);
}

/* Decode: findings packed one list after the other into fbuf. */
static const struct vigil_finding *from_msg_findings(Vigil__Audit__Finding *const *in, size_t n,
						     struct vigil_finding *fbuf)
{
	for (size_t i = 0; i < n; i++) {
		fbuf[i].type = vstr(in[i]->type);
		fbuf[i].count = in[i]->count;
	}
	return n ? fbuf : NULL;
}

#define EVF_FROM_STR(f) ev->f = vstr(m->f);
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

/* Points ev at m's data; fbuf takes the finding lists (msg_findings(m)
 * entries). -EBADMSG on hashes of the wrong size or too many findings. */
static int from_msg(const Vigil__Audit__Event *m, struct vigil_event *ev,
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
	struct wire_field f;
	while (pos < len) {
		if (wire_next(e, len, &pos, &f))
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
	if (from_msg(p->msg, &d->ev, p->findings, &d->has_hash))
		goto err;
	ret = -ENOMEM;
	if (!(p->ebuf = malloc(len ? len : 1)))
		goto err;
	ret = -EBADMSG;
	if ((n = wire_strip(buf, len, FIELD_EVENT_HASH, p->ebuf)) < 0)
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

static void opt_i64(struct jsonw *w, const char *k, int64_t v)
{
	if (v < 0)
		jsonw_null(w, k);
	else
		jsonw_i64(w, k, v);
}

/* key: [{"type": T, "count": N}, ...] */
static void json_findings(struct jsonw *w, const char *key, const struct vigil_finding *f, size_t n)
{
	jsonw_arr_open(w, key);
	for (size_t i = 0; i < n; i++) {
		jsonw_obj_open(w);
		jsonw_str(w, "type", f[i].type);
		jsonw_u64(w, "count", f[i].count);
		jsonw_obj_close(w);
	}
	jsonw_arr_close(w);
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

/* "time": RFC 3339 in UTC with microseconds. */
static void json_time(struct jsonw *w, int64_t time_us)
{
	char when[64];
	time_t sec = (time_t)(time_us / 1000000);
	long usec = (long)(time_us % 1000000);
	struct tm tm;
	if (usec < 0) {
		usec += 1000000;
		sec--;
	}
	gmtime_r(&sec, &tm);
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	jsonw_str(w, "time", when);
}

/* The JSON line: keys in the order of common/evfields.h, written by the
 * field's json rendering. */
#define EVF_JSON_NONE(f)
#define EVF_JSON_TIME(f) json_time(w, ev->f);
#define EVF_JSON_STR(f) jsonw_str(w, #f, ev->f);
#define EVF_JSON_U64(f) jsonw_u64(w, #f, ev->f);
#define EVF_JSON_OPT(f) opt_i64(w, #f, ev->f);
#define EVF_JSON_NZ(f)                       \
	if (ev->f)                           \
		jsonw_i64(w, #f, ev->f);     \
	else                                 \
		jsonw_null(w, #f);
#define EVF_JSON_SCORE(f)                    \
	if (ev->f < 0)                       \
		jsonw_null(w, #f);           \
	else                                 \
		jsonw_double(w, #f, ev->f);
#define EVF_JSON_BOOL(f) jsonw_bool(w, #f, ev->f);
#define EVF_JSON_FINDINGS(f) json_findings(w, #f, ev->f, ev->n_##f);
#define EVF_JSON_GAP(f)                      \
	if (gap)                             \
		jsonw_u64(w, #f, ev->f);
#define EVF_JSON_OMIT(f)                     \
	if (ev->f)                           \
		jsonw_str(w, #f, ev->f);
#define EVF_JSON_HEX(f)                                  \
	evcodec_hex(ev->f, EVCODEC_HASH_LEN, hx);        \
	jsonw_str(w, #f, hx);
#define EVF_JSON(f, num, kind, json, store, origin) EVF_JSON_##json(f)

void evcodec_event_json(const struct vigil_event *ev, struct jsonw *w)
{
	char hx[2 * EVCODEC_HASH_LEN + 1];
	bool gap = ev->gap_count || (ev->kind && strcmp(ev->kind, "gap") == 0);
	jsonw_obj_open(w);
	EVFIELDS(EVF_JSON)
	jsonw_obj_close(w);
}

/* ------------------------------------------------------------------- keys */

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
	m.agent_id = pstr(h->agent_id);
	m.boot_id = pstr(h->boot_id);
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
		pos += put_varint(raw + pos, lens[i]);
		memcpy(raw + pos, events[i], lens[i]);
		pos += lens[i];
	}
	{
		unsigned int dn = 0;
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		ret = (c && EVP_DigestInit_ex(c, sha256(), NULL) == 1 &&
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
	struct wire_field f;
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
	if (!(c = EVP_MD_CTX_new()) || EVP_DigestInit_ex(c, sha256(), NULL) != 1)
		goto err;
	/* Digest: every top-level field but the signature, as received. */
	while (pos < rawlen) {
		if (wire_next(raw, rawlen, &pos, &f)) {
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
		nfind += msg_findings(p->msg->events[i]);
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
		wire_next(raw, rawlen, &pos, &f);   /* validated above */
		if (f.number != FIELD_BATCH_EVENTS || f.type != 2)
			continue;
		d = &b->events[ei];
		if (from_msg(p->msg->events[ei], &d->ev, p->findings + fi, &d->has_hash) ||
		    (n = wire_strip(raw + f.payload, f.end - f.payload, FIELD_EVENT_HASH,
				    p->ebuf + epos)) < 0) {
			seterr(err, errlen, "malformed event in batch");
			ret = -EBADMSG;
			goto err;
		}
		fi += msg_findings(p->msg->events[ei]);
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

/* ----------------------------------------------------------- hello / ack */

static int pack_alloc(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return -ENOMEM;
	protobuf_c_message_pack(m, b);
	*out = b;
	*len = n;
	return 0;
}

int evcodec_hello_encode(const char *agent_id, const uint8_t pub[32], uint8_t **out, size_t *len)
{
	Vigil__Audit__Hello m = VIGIL__AUDIT__HELLO__INIT;
	m.agent_id = pstr(agent_id);
	m.ed25519_public_key.len = 32;
	m.ed25519_public_key.data = (uint8_t *)pub;
	m.schema_version = EVCODEC_SCHEMA_VERSION;
	return pack_alloc(&m.base, out, len);
}

int evcodec_hello_decode(const uint8_t *buf, size_t len, char *agent_id, size_t idlen,
			 uint8_t pub[32])
{
	Vigil__Audit__Hello *m = vigil__audit__hello__unpack(NULL, len, buf);
	int ret = -EBADMSG;
	if (!m)
		return -EBADMSG;
	if (m->ed25519_public_key.len == 32 && strlen(m->agent_id) < idlen && m->agent_id[0]) {
		memcpy(pub, m->ed25519_public_key.data, 32);
		strcpy(agent_id, m->agent_id);
		ret = 0;
	}
	vigil__audit__hello__free_unpacked(m, NULL);
	return ret;
}

int evcodec_ack_encode(enum evcodec_ack_status st, uint64_t acked_seq, const char *reason,
		       uint8_t **out, size_t *len)
{
	Vigil__Audit__Ack m = VIGIL__AUDIT__ACK__INIT;
	m.status = (Vigil__Audit__Ack__Status)st;
	m.acked_seq = acked_seq;
	m.reason = pstr(reason);
	return pack_alloc(&m.base, out, len);
}

int evcodec_ack_decode(const uint8_t *buf, size_t len, enum evcodec_ack_status *st,
		       uint64_t *acked_seq, char *reason, size_t reasonlen)
{
	Vigil__Audit__Ack *m = vigil__audit__ack__unpack(NULL, len, buf);
	if (!m)
		return -EBADMSG;
	/* proto3 enums are open: an unknown status from a newer collector is
	 * treated as a transient failure, never as an ack. */
	switch ((int)m->status) {
	case EVCODEC_ACK_OK:
	case EVCODEC_ACK_REJECTED:
	case EVCODEC_ACK_RETRY:
		*st = (enum evcodec_ack_status)m->status;
		break;
	default:
		*st = EVCODEC_ACK_RETRY;
	}
	*acked_seq = m->acked_seq;
	if (reason && reasonlen)
		snprintf(reason, reasonlen, "%s", m->reason ? m->reason : "");
	vigil__audit__ack__free_unpacked(m, NULL);
	return 0;
}

/* ----------------------------------------------------------------- frames */

static int ssl_errno(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_ZERO_RETURN)
		return -ECONNRESET;
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
	    (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)))
		return -ETIMEDOUT;
	return -EIO;
}

static int write_full(SSL *ssl, const uint8_t *buf, size_t len)
{
	while (len) {
		size_t n = 0;
		int r = SSL_write_ex(ssl, buf, len, &n);
		if (r <= 0) {
			int e = ssl_errno(ssl, r);
			return e == -ECONNRESET ? -EIO : e;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

/* -ECONNRESET only for a clean close before the first byte. */
static int read_full(SSL *ssl, uint8_t *buf, size_t len, bool first)
{
	size_t got = 0;
	while (got < len) {
		size_t n = 0;
		int r = SSL_read_ex(ssl, buf + got, len - got, &n);
		if (r <= 0) {
			int e = ssl_errno(ssl, r);
			if (e == -ECONNRESET && !(first && got == 0))
				e = -EIO;
			if (e == -EIO && first && got == 0 && SSL_get_error(ssl, r) == SSL_ERROR_SYSCALL)
				e = -ECONNRESET;   /* peer vanished between frames */
			return e;
		}
		got += n;
	}
	return 0;
}

int evcodec_frame_write(SSL *ssl, const uint8_t *buf, size_t len)
{
	uint8_t hdr[4];
	uint8_t small[4096];
	if (len > EVCODEC_MAX_FRAME)
		return -EMSGSIZE;
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	/* One TLS record for small frames (acks, hellos). */
	if (len + 4 <= sizeof(small)) {
		memcpy(small, hdr, 4);
		if (len)
			memcpy(small + 4, buf, len);
		return write_full(ssl, small, len + 4);
	}
	int ret = write_full(ssl, hdr, 4);
	return ret ? ret : write_full(ssl, buf, len);
}

int evcodec_frame_read(SSL *ssl, uint8_t **out, size_t *len, size_t max)
{
	uint8_t hdr[4], *buf;
	size_t n;
	int ret;
	if (!max || max > EVCODEC_MAX_FRAME)
		max = EVCODEC_MAX_FRAME;
	if ((ret = read_full(ssl, hdr, 4, true)))
		return ret;
	n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (n > max)
		return -EMSGSIZE;
	if (!(buf = malloc(n ? n : 1)))
		return -ENOMEM;
	if ((ret = read_full(ssl, buf, n, false))) {
		free(buf);
		return ret;
	}
	*out = buf;
	*len = n;
	return 0;
}
