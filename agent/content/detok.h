/* detok: streaming restoration of vault tokens ([[VGL_EMAIL_7f3a2b]]) in a
 * response, so the user sees the original values the model was never sent.
 *
 * Owns: token recognition across arbitrary chunk boundaries with bounded
 * state (at most VAULT_TOKEN_MAX - 1 bytes held back, only while they can
 * still become a token). Never logs; never buffers a whole response.
 */
#ifndef VIGIL_DETOK_H
#define VIGIL_DETOK_H

#include <stdbool.h>
#include <stddef.h>

#include "content/json.h"
#include "content/redact.h"

struct detok;

/* vault: borrowed (the caller holds a reference), must outlive the restorer. json_escape: the stream
 * carries JSON strings (SSE data with JSON payloads, JSON bodies), so a
 * restored value is written JSON-escaped. NULL on ENOMEM. */
struct detok *detok_new(struct vault *v, bool json_escape);
void detok_free(struct detok *d);             /* NULL ok */

/* Append to out the restored form of in[0..n): everything except a
 * trailing possible token prefix, which is held until the next call.
 * Unknown tokens pass through unchanged. Returns 0 or -ENOMEM. */
int detok_feed(struct detok *d, const char *in, size_t n, struct buf *out);

/* End of stream: append whatever is held back. */
int detok_finish(struct detok *d, struct buf *out);

/* Tokens restored so far. */
size_t detok_restored(const struct detok *d);

#endif
