/* redact: rewrite a request body so findings no longer leave the machine
 * (reversible tokens come from vault.h and are restored by detok.h).
 *
 * Owns: replacement formats (placeholder, mask, keyed hash, vault token)
 * and JSON-correct splicing. Never logs values; the vault is the only
 * place raw values are kept.
 */
#ifndef VIGIL_REDACT_H
#define VIGIL_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/findings.h"
#include "content/inspect.h"
#include "content/json.h"
#include "content/vault.h"

/* -------------------------------------------------------------- redaction */

enum redact_action {
	REDACT_KEEP = 0,      /* leave the value */
	REDACT_PLACEHOLDER,   /* [EMAIL_1], numbered per distinct value in the body */
	REDACT_MASK,          /* format-preserving: ****1881, j***@example.com */
	REDACT_HASH,          /* [EMAIL:3f2a9c1b]: HMAC-SHA256(key, type|value), 32 bits */
	REDACT_TOKENIZE,      /* [[VGL_EMAIL_7f3a2b]], reversible through the vault */
};

struct redact_policy {
	enum redact_action action[FINDING__COUNT];   /* per finding type */
	const unsigned char *hash_key;               /* borrowed; required for HASH */
	size_t hash_key_len;
	struct vault *vault;                         /* borrowed; required for TOKENIZE */
};

enum redact_status {
	REDACT_UNCHANGED = 0,     /* nothing replaced: forward the original bytes */
	REDACT_CHANGED = 1,       /* out holds the new body (valid JSON if the input was) */
	REDACT_INVALID_JSON = 2,  /* body is not valid JSON: left untouched, audit it */
};

/* Apply pol to the findings r found in body (r from inspect_request on the
 * same bytes). Only JSON string contents are rewritten (decoded, replaced,
 * re-encoded with JSON escaping); every byte outside them is copied as is.
 * A non-JSON body is rewritten as text. out (caller-owned, appended to)
 * is only written when the result is REDACT_CHANGED; *replaced (may be
 * NULL) gets the number of values replaced. Returns a redact_status or
 * -EINVAL (HASH without key, TOKENIZE without vault), -ENOSPC, -ENOMEM. */
int redact_body(const char *body, size_t len, const struct inspect_result *r,
		const struct redact_policy *pol, struct buf *out, size_t *replaced);

/* Text redaction across calls (one streamed answer): [EMAIL_n] numbering
 * stays consistent from one call to the next. pol borrowed, must outlive
 * the session. NULL on ENOMEM or when the random numbering key fails. */
struct redact_session;
struct redact_session *redact_session_new(const struct redact_policy *pol);
void redact_session_free(struct redact_session *rs);   /* NULL ok */
/* Appends text[0..n) to out with the spans (offsets into text, sorted by
 * start; in_json ignored) replaced as the policy says; overlapping spans
 * after the first are skipped. *replaced (may be NULL) gets the number of
 * values replaced. Returns 0 or -EINVAL, -ENOSPC, -ENOMEM. */
int redact_text(struct redact_session *rs, const char *text, size_t n,
		const struct inspect_span *sp, size_t nsp, struct buf *out, size_t *replaced);

/* Name of an action ("keep", "redact", "mask", "hash", "tokenize") and the
 * reverse (-1 if unknown) for config parsing. */
const char *redact_action_name(enum redact_action a);
int redact_action_from_name(const char *name);

#endif
