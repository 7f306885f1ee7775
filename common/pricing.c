/* pricing: see pricing.h. */
#include "pricing.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int price_str(const char *file, const struct ynode *v, char **out, char *err, size_t errlen)
{
	if (v->kind != YNODE_SCALAR || !v->str[0]) {
		snprintf(err, errlen, "%s:%d: expected a non-empty string", file, v->line);
		return -EINVAL;
	}
	free(*out);
	*out = strdup(v->str);
	return *out ? 0 : -ENOMEM;
}

static int price_num(const char *file, const struct ynode *v, double *out, char *err, size_t errlen)
{
	char *end;
	double d = v->kind == YNODE_SCALAR ? strtod(v->str, &end) : -1;
	if (v->kind != YNODE_SCALAR || end == v->str || *end || !isfinite(d) || d < 0 || d > 1e6) {
		snprintf(err, errlen, "%s:%d: a price is a number of currency units per million tokens (0 to 1000000)",
			 file, v->line);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

static int price_currency(const char *file, const struct ynode *v, struct pricing *pr, char *err, size_t errlen)
{
	const char *s = v->kind == YNODE_SCALAR ? v->str : "";
	bool ok = strlen(s) == 3;
	for (int i = 0; ok && i < 3; i++)
		ok = s[i] >= 'A' && s[i] <= 'Z';
	if (!ok) {
		snprintf(err, errlen, "%s:%d: currency is an ISO 4217 code such as USD", file, v->line);
		return -EINVAL;
	}
	if (pr->currency[0] && strcmp(pr->currency, s)) {
		snprintf(err, errlen, "%s:%d: every price must be in one currency (%s so far)", file, v->line,
			 pr->currency);
		return -EINVAL;
	}
	memcpy(pr->currency, s, 4);
	return 0;
}

static int price_key(const char *file, const char *key, const struct ynode *v, struct pricing *pr, struct price *p,
		     char *err, size_t errlen)
{
	if (!strcmp(key, "provider"))
		return price_str(file, v, &p->provider, err, errlen);
	if (!strcmp(key, "model"))
		return price_str(file, v, &p->model, err, errlen);
	if (!strcmp(key, "input"))
		return price_num(file, v, &p->input, err, errlen);
	if (!strcmp(key, "output"))
		return price_num(file, v, &p->output, err, errlen);
	if (!strcmp(key, "cached_input"))
		return price_num(file, v, &p->cached_input, err, errlen);
	if (!strcmp(key, "currency"))
		return price_currency(file, v, pr, err, errlen);
	snprintf(err, errlen, "%s:%d: unknown key 'pricing.%s'", file, v->line, key);
	return -EINVAL;
}

int pricing_parse(const char *file, const struct ynode *n, struct pricing *pr, char *err, size_t errlen)
{
	if (n->kind != YNODE_SEQ) {
		snprintf(err, errlen, "%s:%d: pricing must be a list of {provider, model, input, output, ...}", file,
			 n->line);
		return -EINVAL;
	}
	pr->rows = calloc(n->nkids ? n->nkids : 1, sizeof(*pr->rows));
	if (!pr->rows)
		return -ENOMEM;
	for (size_t i = 0; i < n->nkids; i++) {
		const struct ynode *t = n->kids[i];
		struct price *p = &pr->rows[pr->n++];
		int rc;
		p->cached_input = -1;
		if (t->kind != YNODE_MAP) {
			snprintf(err, errlen, "%s:%d: each price is a mapping {provider, model, input, output}", file,
				 t->line);
			return -EINVAL;
		}
		for (size_t j = 0; j < ytree_map_len(t); j++)
			if ((rc = price_key(file, ytree_map_key(t, j)->str, ytree_map_val(t, j), pr, p, err, errlen)))
				return rc;
		if (!p->provider || !p->model) {
			snprintf(err, errlen, "%s:%d: a price needs provider and model (a glob such as gpt-4o*)", file,
				 t->line);
			return -EINVAL;
		}
	}
	return 0;
}

void pricing_free(struct pricing *pr)
{
	if (!pr)
		return;
	for (size_t i = 0; i < pr->n; i++) {
		free(pr->rows[i].provider);
		free(pr->rows[i].model);
	}
	free(pr->rows);
	memset(pr, 0, sizeof(*pr));
}

bool pricing_cost(const struct price *rows, size_t n, const char *provider, const char *model, int64_t input_tokens,
		  int64_t output_tokens, int64_t cached_tokens, double *cost)
{
	if (!provider || !model || (input_tokens <= 0 && output_tokens <= 0))
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct price *p = &rows[i];
		if (strcmp(p->provider, provider) || fnmatch(p->model, model, 0))
			continue;
		/* A cached count above the input count (a provider's slip) never
		 * makes the fresh part negative. */
		double in = (double)(input_tokens > 0 ? input_tokens : 0);
		double cached = (double)(cached_tokens > 0 ? cached_tokens : 0);
		if (cached > in)
			cached = in;
		*cost = ((in - cached) * p->input + cached * (p->cached_input >= 0 ? p->cached_input : p->input) +
			 (double)(output_tokens > 0 ? output_tokens : 0) * p->output) / 1e6;
		return true;
	}
	return false;
}
