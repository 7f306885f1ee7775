/* chain: the bridge between the wire format (common/evcodec.h) and the
 * store, and the end-to-end verification `vigil verify` asks for.
 *
 * Owns: converting a decoded event to the row the store keeps, and walking
 * every agent's stored events and batch headers to prove that what the
 * store shows is what the agents signed: each row's columns equal its stored
 * encoding E, each hash equals SHA-256(prev_hash || E), consecutive seqs
 * chain, missing seqs are covered by a signed gap event or the retention
 * horizon, and every batch signature verifies (with the pinned key) over the
 * batch rebuilt from the stored events. Must never: trust a stored column
 * over the stored encoding, or stop at the first problem (the report names
 * them all, up to a cap). */
#ifndef VIGIL_CHAIN_H
#define VIGIL_CHAIN_H

#include <stddef.h>
#include <stdint.h>
#include "evcodec.h"
#include "store.h"

/* out borrows from d; findings go to fbuf[EVCODEC_MAX_FINDINGS]. */
void chain_to_store(const struct evcodec_decoded *d, struct store_event *out, struct store_finding *fbuf);

#define CHAIN_MAX_PROBLEMS 200

struct chain_report {
	size_t agents, events, batches, problems;
	char *lines[CHAIN_MAX_PROBLEMS];   /* malloc'ed, first CHAIN_MAX_PROBLEMS problems */
	size_t nlines;
};

/* Verifies every agent in the store (or only agent_id if non-NULL).
 * Returns 0 when the walk completed (r->problems says whether it is intact),
 * -errno if the store failed. */
int chain_verify(struct store *s, const char *agent_id, struct chain_report *r);
void chain_report_free(struct chain_report *r);

#endif
