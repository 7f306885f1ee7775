/* pricing: the price table of LLM use (per provider and model glob, per
 * million tokens, one currency) and the cost of one exchange. Shared by the
 * collector (cost when events are read, collector.yaml `pricing:`) and the
 * agent (budgets in currency, policy.yaml `pricing:`), so both price alike.
 *
 * Owns: the syntax of a `pricing:` list and the cost formula. Must never:
 * guess a price (no matching row: no cost). */
#ifndef VIGIL_PRICING_H
#define VIGIL_PRICING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ytree.h"

/* One row: first matching (provider, model glob) wins. */
struct price {
	char *provider, *model;
	double input, output;
	double cached_input;      /* < 0: not given, cached tokens priced as input */
};

struct pricing {
	struct price *rows;       /* owned */
	size_t n;
	char currency[4];         /* ISO 4217; "" when no row named one */
};

/* Parses a `pricing:` node (a list of {provider, model, input, output,
 * cached_input, currency}) into *pr (zeroed by the caller). Errors are
 * "file:line: reason" in err; *pr is then partly filled (pricing_free it). */
int pricing_parse(const char *file, const struct ynode *n, struct pricing *pr, char *err, size_t errlen);
void pricing_free(struct pricing *pr);

/* Cost of one exchange at the first matching row: (input - cached) x input
 * + cached x cached_input (input's price when the row has none) + output x
 * output, per million. Negative counts are unknown (0); cached is a part of
 * input and capped at it. false when no row matches or no token is known. */
bool pricing_cost(const struct price *rows, size_t n, const char *provider, const char *model, int64_t input_tokens,
		  int64_t output_tokens, int64_t cached_tokens, double *cost);

#endif
