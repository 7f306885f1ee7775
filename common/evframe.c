/* evframe: the collector protocol's hello and ack messages and its
 * length-prefixed frames over TLS. */
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
	m.agent_id = evc_pstr(agent_id);
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
	m.reason = evc_pstr(reason);
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
