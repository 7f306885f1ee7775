/* protowalk: protobuf wire format read without a schema (the .proto of an
 * arbitrary gRPC method is not known to the agent). Every field is
 * reported with the path of field numbers that leads to it; a
 * length-delimited field is taken as text when it is printable UTF-8, as
 * a nested message when it parses as one (then walked), as text when it
 * is other valid UTF-8, and as opaque bytes otherwise. A rewrite replaces
 * chosen text fields and re-encodes the length of every message that
 * encloses them.
 *
 * Owns: nothing past a call. Bounded: nesting depth PROTOWALK_MAX_DEPTH,
 * fields per walk PROTOWALK_MAX_FIELDS (past either, -E2BIG: the caller
 * treats the message as not inspectable whole). Never logs content. */
#ifndef VIGIL_PROTOWALK_H
#define VIGIL_PROTOWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define PROTOWALK_MAX_DEPTH 24
#define PROTOWALK_MAX_FIELDS 65536

enum protowalk_kind { PROTOWALK_VARINT, PROTOWALK_FIXED64, PROTOWALK_FIXED32, PROTOWALK_TEXT,
		      PROTOWALK_BYTES };

struct protowalk_field {
	const uint32_t *path;        /* field numbers from the top message, depth of them */
	unsigned depth;
	enum protowalk_kind kind;
	uint64_t value;              /* VARINT, FIXED64, FIXED32 */
	size_t off, len;             /* TEXT, BYTES: the payload in the walked message */
};

/* Non-zero stops the walk and protowalk returns it. */
typedef int (*protowalk_fn)(void *arg, const struct protowalk_field *f);

/* Walks msg[0..len) (not a nested message's own payload: every field,
 * nested ones included, is reported through fn; a nested message itself
 * is not). Returns 0, -EINVAL (not a protobuf message), -E2BIG (a limit),
 * or fn's result. */
int protowalk(const uint8_t *msg, size_t len, protowalk_fn fn, void *arg);

/* Whether path (depth numbers) equals the numbers given (n of them). */
bool protowalk_path_is(const struct protowalk_field *f, const uint32_t *want, unsigned n);

/* One replacement: the TEXT field whose payload is at off (as reported by
 * protowalk) gets the bytes repl[0..repl_len). */
struct protowalk_edit {
	size_t off;
	const char *repl;
	size_t repl_len;
};

/* Writes msg with the edits applied (sorted by off, each naming a TEXT
 * field reported by protowalk on this msg) to out, every enclosing length
 * re-encoded. Returns 0, -EINVAL (an edit names no such field), -EPROTO
 * (an edit would change the length of printable text that also reads as
 * a nested message: its inner lengths could not be kept right), -E2BIG,
 * -ENOMEM. */
int protowalk_rewrite(const uint8_t *msg, size_t len, const struct protowalk_edit *edits, size_t nedits,
		      struct buf *out);

#endif
