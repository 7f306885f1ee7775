/* answer: redaction of findings in the model's answer, as a policy's
 * answer rule (`output_finding:`) asks, before the client sees it.
 *
 * Two forms. A whole JSON answer: the text fields the model produced
 * (providers.h: chat content, tool-call arguments, Anthropic, Gemini,
 * Responses and Bedrock text) are decoded, scanned and rewritten in place,
 * the document stays valid JSON. A stream: the text of successive events
 * is fed in any chunking; the redactor releases text only once no value
 * can still straddle its end, holding back at most ANSWER_HOLD_BYTES
 * (more only while a value it already sees keeps growing, up to
 * ANSWER_MAX_HELD), so a value split across events is replaced whole.
 *
 * A value longer than the hold-back (one the detectors recognise only
 * after part of it was released, e.g. a PEM block) cannot be redacted
 * whole: the redactor says so (ANSWER_OVERRUN) and the caller cuts the
 * stream rather than send the rest.
 *
 * Owns: the released/held split and the per-type counts of replaced
 * values. Never logs; held text is wiped when released and on free.
 * Threads: one redactor per answer, used by one thread at a time; it
 * borrows the caller's inspect_scratch.
 */
#ifndef VIGIL_ANSWER_H
#define VIGIL_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "content/inspect.h"
#include "content/json.h"
#include "content/redact.h"

/* Text held back from the client while a value may still be growing: a
 * value is recognised once this much text follows it (or the stream
 * ends). 256 bytes: the longest e-mail, card, IBAN, phone or API key the
 * detectors know fits, and a model streaming ~50 tokens/s is delayed by
 * about a second. */
#define ANSWER_HOLD_BYTES 256
/* A value seen growing is held whole up to this size. */
#define ANSWER_MAX_HELD 8192
/* Text already released kept as left context for the detectors. */
#define ANSWER_CONTEXT_BYTES 256

/* answer_feed / answer_finish: a value straddled text already released. */
#define ANSWER_OVERRUN 1

struct answer;

/* pol (borrowed, must outlive the redactor; TOKENIZE is not used for
 * answers) says what to do per type; scratch borrowed. NULL on ENOMEM. */
struct answer *answer_new(struct inspect_scratch *scratch, const struct redact_policy *pol);
void answer_free(struct answer *a);     /* NULL ok */

/* Appends to out the redacted text that can be released. Returns 0,
 * ANSWER_OVERRUN (nothing more may be sent), or -errno. */
int answer_feed(struct answer *a, const char *text, size_t n, struct buf *out);
/* End of the text: releases everything held, redacted. */
int answer_finish(struct answer *a, struct buf *out);

/* Values replaced so far, per finding type ([FINDING__COUNT]). */
const uint32_t *answer_counts(const struct answer *a);

/* Which strings of a document are model text (a json_path predicate). */
typedef bool (*answer_text_fn)(const struct json_path *p);

/* A whole answer document: rewrites its model text fields, those is_text
 * accepts (NULL: provider_response_text_path); a document that is not
 * JSON is treated as text. Appends the new document to out and returns
 * REDACT_CHANGED, or REDACT_UNCHANGED (out untouched: send the original),
 * or -errno. counts[FINDING__COUNT] is incremented per value replaced. */
int answer_redact_doc(struct inspect_scratch *scratch, const struct redact_policy *pol,
		      answer_text_fn is_text, const char *doc, size_t len, struct buf *out,
		      uint32_t *counts);

#endif
