/* grpc: the gRPC message framing carried in HTTP/2 DATA (gRPC over HTTP/2,
 * "Length-Prefixed-Message"): one byte compressed flag, a big-endian u32
 * length, the message. Messages are cut out of DATA as it arrives, in any
 * chunking (a prefix split across frames included), and a compressed
 * message is inflated (grpc-encoding identity, gzip, deflate) with its
 * decoded size capped.
 *
 * Owns: the partial message of one direction of one call (bounded by
 * max_msg). Never logs; never trusts a length before checking it against
 * the limit (a hostile prefix of 4 GiB costs nothing). */
#ifndef VIGIL_GRPC_H
#define VIGIL_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define GRPC_PREFIX 5

struct grpc_reader {
	uint8_t prefix[GRPC_PREFIX];
	size_t have_prefix;
	bool compressed;
	uint32_t need;          /* bytes of the message body still to come */
	size_t max_msg;         /* a larger prefix is refused */
	struct buf msg;         /* the message being assembled */
};

/* Called for each whole message (borrowed for the call). Non-zero stops
 * grpc_reader_feed, which returns it. */
typedef int (*grpc_msg_fn)(void *arg, bool compressed, const uint8_t *msg, size_t len);

void grpc_reader_init(struct grpc_reader *r, size_t max_msg);
void grpc_reader_free(struct grpc_reader *r);

/* Feeds DATA bytes. Returns 0, -EMSGSIZE (a prefix announces more than
 * max_msg), -EPROTO (compressed flag neither 0 nor 1), -ENOMEM, or fn's
 * result. After an error the reader must not be fed again. */
int grpc_reader_feed(struct grpc_reader *r, const void *data, size_t len, grpc_msg_fn fn, void *arg);

/* No partial message held: the end of the stream may come now (a stream
 * ending mid-message is a protocol error). */
bool grpc_reader_idle(const struct grpc_reader *r);

/* A message's bytes as the application sees them: appended to out as is
 * when not compressed, else inflated per encoding (the grpc-encoding header
 * value: gzip, deflate; identity or none with the flag set is an error),
 * at most cap bytes. 0, -ENOTSUP (unknown encoding), -E2BIG (past cap),
 * -EINVAL (corrupt), -ENOMEM. */
int grpc_message_decode(const char *encoding, size_t enc_len, bool compressed, const uint8_t *msg,
			size_t len, size_t cap, struct buf *out);

/* Appends one framed message (prefix with the compressed flag, then msg) to out. */
int grpc_frame(struct buf *out, bool compressed, const void *msg, size_t len);

#endif
