/* evcodec_int: protobuf wire helpers shared by evcodec.c, evjson.c,
 * evbatch.c and evframe.c; not for use outside the codec. */
#ifndef VIGIL_EVCODEC_INT_H
#define VIGIL_EVCODEC_INT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#include "evcodec.h"
#include "vigil/audit.pb-c.h"

#define FIELD_EVENT_HASH 42
#define FIELD_BATCH_EVENTS 7
#define FIELD_BATCH_SIGNATURE 8

/* One top-level field of a protobuf message: the field spans
 * in[start..end); for length-delimited fields the payload is
 * in[payload..end). */
struct evc_wire_field {
	uint32_t number;
	unsigned type;
	size_t start, payload, end;
};

/* SHA-256, fetched once. */
const EVP_MD *evc_sha256(void);
/* s, or NULL for "" (an absent proto3 string); and back. */
char *evc_pstr(const char *s);
const char *evc_vstr(const char *s);
int evc_read_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *v);
size_t evc_put_varint(uint8_t *out, uint64_t v);
/* The next top-level field at *pos, or -EBADMSG. */
int evc_wire_next(const uint8_t *in, size_t len, size_t *pos, struct evc_wire_field *f);
/* in without the fields numbered skip, into out (at least len bytes). */
ssize_t evc_wire_strip(const uint8_t *in, size_t len, uint32_t skip, uint8_t *out);
/* How many findings m's lists hold together (the fbuf evc_from_msg needs). */
size_t evc_msg_findings(const Vigil__Audit__Event *m);
/* Points ev at m's data; fbuf takes the finding lists. */
int evc_from_msg(const Vigil__Audit__Event *m, struct vigil_event *ev, struct vigil_finding *fbuf,
		 bool *has_hash);

#endif
