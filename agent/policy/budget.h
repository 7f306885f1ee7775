/* budget: token and request budgets declared in the policy (`budgets:`),
 * counted per user, unix group, executable or globally, and persisted
 * across agent restarts.
 *
 * Windows are FIXED and aligned: minute and hour windows start on the
 * minute/hour (UTC), day windows at midnight in the policy's timezone
 * (local unless `timezone: utc`). A counter remembers the start of its
 * window; when the current window differs (time passed, also while the
 * agent was down, or the budget's window changed on reload) it restarts
 * from zero. Counters are keyed by budget name + key, so a reload that
 * keeps a budget's name keeps its counts.
 *
 * Owns: the counters and the state file. Must never: block a request for a
 * budget that does not apply to it, write the state file in place (always
 * temp file + fsync + rename), or hold its lock across I/O other than
 * budget_save's own write.
 *
 * Threads: every function is safe to call from any thread (one mutex).
 */
#ifndef VIGIL_BUDGET_H
#define VIGIL_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

struct budget_store;

/* Open the store; state_path (copied; NULL = memory only) is read if it
 * exists (a missing file is an empty store; a corrupt line is skipped).
 * Returns 0 or -errno (-ENOMEM; an unreadable existing file: -errno). */
int budget_store_open(const char *state_path, struct budget_store **out);
void budget_store_free(struct budget_store *s);        /* NULL ok; does not save */

struct budget_verdict {
	bool exhausted;             /* some applicable budget is used up */
	bool monitor;               /* ... but it (or the policy) is in monitor mode */
	const char *budget;         /* its name, borrowed from the policy; NULL if none */
	uint64_t limit, used;
	int64_t retry_after;        /* seconds until its window restarts */
	int status;                 /* 429 when the request must be refused, else 0 */
	char message[224];          /* "token budget 'daily' exhausted: 200000 tokens per user per day" */
};

/* Before forwarding: check every budget of p that applies to ctx at time
 * now (unix seconds). Returns 0 if the request may go (v->exhausted may
 * still be set with v->monitor: log it), 1 if it must be refused with a
 * 429 naming v->budget. An admitted request counts one against every
 * applicable request budget; a refused one counts nothing. */
int budget_check(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
		 int64_t now, struct budget_verdict *v);

/* After the response: add tokens (prompt + completion from the provider's
 * usage, else budget_estimate_tokens of the bytes) to every applicable
 * token budget. */
void budget_charge(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
		   uint64_t tokens, int64_t now);

/* After the response: add its cost, in millionths of the policy's
 * currency (policy_pricing), to every applicable cost budget. */
void budget_charge_cost(struct budget_store *s, const struct policy *p, const struct policy_ctx *ctx,
			uint64_t micro, int64_t now);

/* Used when the provider reported no usage: ~4 bytes per token. */
static inline uint64_t budget_estimate_tokens(uint64_t bytes)
{
	return (bytes + 3) / 4;
}

/* Current count of budget `name` for key (0 if none or its window passed). */
uint64_t budget_used(struct budget_store *s, const char *name, const char *key,
		     uint32_t window_s, bool utc, int64_t now);

/* Write the state file atomically (temp + fsync + rename + fsync dir),
 * dropping counters whose window has passed. Call periodically (see
 * budget_dirty) and at shutdown. 0 or -errno; no-op for a memory store. */
int budget_save(struct budget_store *s, int64_t now);
/* Whether counts changed since the last save. */
bool budget_dirty(struct budget_store *s);

/* Start of the window holding now (exposed for tests). */
int64_t budget_window_start(int64_t now, uint32_t window_s, bool utc);

#endif
