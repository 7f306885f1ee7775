/* detectors: the built-in detector table and the prompt-injection rules
 * (content/detectors.c), shared by the scanner (content/inspect.c). */
#ifndef VIGIL_DETECTORS_H
#define VIGIL_DETECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/findings.h"

/* Confirms a candidate span [*s, *e) of t[0..n) and may narrow it. */
typedef bool (*validate_fn)(const char *t, size_t n, size_t *s, size_t *e);

/* How a detector's span is found once its trigger fired: a start-of-match
 * pattern, or a hand-written matcher in content/inspect.c. */
enum extractor { EX_SOM, EX_IP, EX_PEM, EX_AWS_PAIR, EX_WRAPPED };

/* A line break inside a run of digits and capitals: a card or IBAN may
 * continue on the next line (EX_WRAPPED). */
#define WRAP_TRIGGER "[0-9A-Z\\-][ \\t]{0,3}\\r?\\n[ \\t]{0,16}[0-9A-Z\\-]"

struct det {
	enum finding_type type;
	const char *som;          /* span pattern (also the trigger if trigger == NULL) */
	const char *trigger;
	unsigned flags;           /* extra Hyperscan flags */
	validate_fn validate;
	enum extractor ex;
	uint32_t maxlen;          /* longest span (0 = 512) */
};

/* Order is priority: when two findings overlap, the earlier entry wins. */
extern const struct det detectors_builtin[];
extern const size_t detectors_nbuiltin;

struct inj_rule { const char *re; float w; unsigned flags; };
#define DETECTORS_NINJ 71
/* The last two injection rules match invisible characters the normaliser
 * removes or folds (Unicode tags; bidi overrides and isolates): the
 * inspector also looks for them in the text before normalising. */
#define DETECTORS_INJ_TAGS (DETECTORS_NINJ - 2)
#define DETECTORS_INJ_BIDI (DETECTORS_NINJ - 1)
extern const struct inj_rule detectors_injection[DETECTORS_NINJ];

#endif
