/* colconf: YAML -> struct colconf. Unknown keys are errors (a typo in a
 * security tool's config must not silently mean "off"); every message
 * carries file:line. Never logs token values. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "colconf.h"
#include "ytree.h"

void colconf_free(struct colconf *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->listen);
	free(c->api);
	free(c->store);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->client_ca);
	free(c->client_ca_key);
	for (size_t i = 0; i < c->n_tokens; i++) {
		if (c->tokens[i].token)
			OPENSSL_cleanse(c->tokens[i].token, strlen(c->tokens[i].token));
		free(c->tokens[i].token);
		free(c->tokens[i].name);
	}
	free(c->tokens);
	free(c->syslog_forward);
	free(c->metrics);
	for (size_t i = 0; i < c->n_forwards; i++) {
		struct colconf_forward *f = &c->forwards[i];
		free(f->name);
		free(f->url);
		if (f->token)
			OPENSSL_cleanse(f->token, strlen(f->token));
		free(f->token);
		free(f->address);
		free(f->ca);
	}
	free(c->forwards);
	free(c->forward_state);
	struct pricing pr = { c->prices, c->n_prices, "" };
	pricing_free(&pr);
	free(c);
}

static int scalar(const char *file, const struct ynode *n, char **out, char *err, size_t errlen)
{
	if (!n || n->kind != YNODE_SCALAR || !n->str[0]) {
		snprintf(err, errlen, "%s:%d: expected a non-empty string", file, n ? n->line : 0);
		return -EINVAL;
	}
	free(*out);
	*out = strdup(n->str);
	return *out ? 0 : -ENOMEM;
}

static int hostport(const char *file, const struct ynode *n, char **out, char *err, size_t errlen)
{
	int rc = scalar(file, n, out, err, errlen);
	if (rc)
		return rc;
	const char *colon = strrchr(*out, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || colon == *out || *end || port < 0 || port > 65535) {
		snprintf(err, errlen, "%s:%d: expected HOST:PORT such as 0.0.0.0:7443", file, n->line);
		return -EINVAL;
	}
	return 0;
}

static int tokens(const char *file, const struct ynode *n, struct colconf *c, char *err, size_t errlen)
{
	if (n->kind != YNODE_SEQ) {
		snprintf(err, errlen, "%s:%d: tokens must be a list of {token, role, name}", file, n->line);
		return -EINVAL;
	}
	c->tokens = calloc(n->nkids ? n->nkids : 1, sizeof(*c->tokens));
	if (!c->tokens)
		return -ENOMEM;
	for (size_t i = 0; i < n->nkids; i++) {
		const struct ynode *t = n->kids[i];
		struct colconf_token *k = &c->tokens[c->n_tokens++];
		if (t->kind != YNODE_MAP) {
			snprintf(err, errlen, "%s:%d: each token is a mapping {token, role, name}", file, t->line);
			return -EINVAL;
		}
		for (size_t j = 0; j < ytree_map_len(t); j++) {
			const char *key = ytree_map_key(t, j)->str;
			const struct ynode *v = ytree_map_val(t, j);
			int rc;
			if (!strcmp(key, "token")) {
				if ((rc = scalar(file, v, &k->token, err, errlen)))
					return rc;
				if (strlen(k->token) < 16) {
					snprintf(err, errlen, "%s:%d: a token must be at least 16 characters", file,
						 v->line);
					return -EINVAL;
				}
			} else if (!strcmp(key, "name")) {
				if ((rc = scalar(file, v, &k->name, err, errlen)))
					return rc;
			} else if (!strcmp(key, "role")) {
				if (v->kind == YNODE_SCALAR && !strcmp(v->str, "analyst"))
					k->role = ROLE_ANALYST;
				else if (v->kind == YNODE_SCALAR && !strcmp(v->str, "admin"))
					k->role = ROLE_ADMIN;
				else if (v->kind == YNODE_SCALAR && !strcmp(v->str, "metrics"))
					k->role = ROLE_METRICS;
				else {
					snprintf(err, errlen, "%s:%d: role must be analyst, admin or metrics", file, v->line);
					return -EINVAL;
				}
			} else {
				snprintf(err, errlen, "%s:%d: unknown key 'tokens.%s'", file, ytree_map_key(t, j)->line,
					 key);
				return -EINVAL;
			}
		}
		if (!k->token || !k->role) {
			snprintf(err, errlen, "%s:%d: a token needs token and role", file, t->line);
			return -EINVAL;
		}
		for (size_t p = 0; p + 1 < c->n_tokens; p++)
			if (!strcmp(c->tokens[p].token, k->token)) {
				snprintf(err, errlen, "%s:%d: the same token is listed twice", file, t->line);
				return -EINVAL;
			}
		if (!k->name && !(k->name = strdup(k->role == ROLE_ADMIN ? "admin" : k->role == ROLE_ANALYST ? "analyst" : "metrics")))
			return -ENOMEM;
	}
	return 0;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return s[-n] != '.';
}

static int fwd_key(const char *file, const char *key, const struct ynode *v, struct colconf_forward *f, char *err,
		   size_t errlen)
{
	unsigned long long u;
	int rc;
	if (!strcmp(key, "name")) {
		if (!(rc = scalar(file, v, &f->name, err, errlen)) && !name_ok(f->name)) {
			snprintf(err, errlen, "%s:%d: a forward name is 1 to 64 of [A-Za-z0-9._-]", file, v->line);
			rc = -EINVAL;
		}
		return rc;
	}
	if (!strcmp(key, "format")) {
		static const char *const names[] = { "otlp", "ocsf", "hec", "syslog" };
		for (int i = 0; v->kind == YNODE_SCALAR && i < 4; i++)
			if (!strcmp(v->str, names[i])) {
				f->format = (enum colconf_fwd_format)(i + 1);
				return 0;
			}
		snprintf(err, errlen, "%s:%d: format must be otlp, ocsf, hec or syslog", file, v->line);
		return -EINVAL;
	}
	if (!strcmp(key, "url")) {
		if (!(rc = scalar(file, v, &f->url, err, errlen)) && strncmp(f->url, "http://", 7) &&
		    strncmp(f->url, "https://", 8)) {
			snprintf(err, errlen, "%s:%d: url must start with http:// or https://", file, v->line);
			rc = -EINVAL;
		}
		return rc;
	}
	if (!strcmp(key, "token"))
		return scalar(file, v, &f->token, err, errlen);
	if (!strcmp(key, "address"))
		return hostport(file, v, &f->address, err, errlen);
	if (!strcmp(key, "ca"))
		return scalar(file, v, &f->ca, err, errlen);
	if (!strcmp(key, "transport")) {
		if (v->kind == YNODE_SCALAR && (!strcmp(v->str, "tcp") || !strcmp(v->str, "tls"))) {
			f->tls = !strcmp(v->str, "tls");
			return 0;
		}
		snprintf(err, errlen, "%s:%d: transport must be tcp or tls (udp: syslog_forward)", file, v->line);
		return -EINVAL;
	}
	if (!strcmp(key, "batch")) {
		if (!(rc = ytree_u64(file, v, 1, 5000, &u, err, errlen)))
			f->batch = (unsigned)u;
		return rc;
	}
	snprintf(err, errlen, "%s:%d: unknown key 'forward.%s'", file, v->line, key);
	return -EINVAL;
}

/* forward: a list of {name, format, url|address, token, transport, ca, batch}. */
static int forwards(const char *file, const struct ynode *n, struct colconf *c, char *err, size_t errlen)
{
	if (n->kind != YNODE_SEQ) {
		snprintf(err, errlen, "%s:%d: forward must be a list of targets", file, n->line);
		return -EINVAL;
	}
	c->forwards = calloc(n->nkids ? n->nkids : 1, sizeof(*c->forwards));
	if (!c->forwards)
		return -ENOMEM;
	for (size_t i = 0; i < n->nkids; i++) {
		const struct ynode *t = n->kids[i];
		struct colconf_forward *f = &c->forwards[c->n_forwards++];
		int rc;
		f->batch = 500;
		if (t->kind != YNODE_MAP) {
			snprintf(err, errlen, "%s:%d: each forward target is a mapping {name, format, ...}", file, t->line);
			return -EINVAL;
		}
		for (size_t j = 0; j < ytree_map_len(t); j++)
			if ((rc = fwd_key(file, ytree_map_key(t, j)->str, ytree_map_val(t, j), f, err, errlen)))
				return rc;
		const char *why = !f->name ? "needs a name" : !f->format ? "needs a format"
				: f->format == FWD_SYSLOG && !f->address ? "syslog needs address: HOST:PORT"
				: f->format != FWD_SYSLOG && !f->url ? "needs a url"
				: f->format == FWD_HEC && !f->token ? "hec needs the HEC token" : NULL;
		for (size_t p = 0; !why && p + 1 < c->n_forwards; p++)
			if (!strcmp(c->forwards[p].name, f->name))
				why = "the same name is used twice";
		if (why) {
			snprintf(err, errlen, "%s:%d: forward target %s", file, t->line, why);
			return -EINVAL;
		}
	}
	return 0;
}

/* pricing: common/pricing.c (the agent's budgets read the same syntax). */
static int pricing(const char *file, const struct ynode *n, struct colconf *c, char *err, size_t errlen)
{
	struct pricing pr = { 0 };
	int rc = pricing_parse(file, n, &pr, err, errlen);
	c->prices = pr.rows;
	c->n_prices = pr.n;
	memcpy(c->currency, pr.currency, sizeof(c->currency));
	return rc;
}

static int num_in(const char *file, const struct ynode *v, double lo, double hi, double *out, char *err, size_t errlen)
{
	char *end;
	double d = v->kind == YNODE_SCALAR ? strtod(v->str, &end) : lo - 1;
	if (v->kind != YNODE_SCALAR || end == v->str || *end || !isfinite(d) || d < lo || d > hi) {
		snprintf(err, errlen, "%s:%d: expected a number from %g to %g", file, v->line, lo, hi);
		return -EINVAL;
	}
	*out = d;
	return 0;
}

/* alerts: {volume_window, volume_factor, ...}: see struct colconf_alerts. */
static int alerts_conf(const char *file, const struct ynode *n, struct colconf_alerts *a, char *err, size_t errlen)
{
	if (n->kind != YNODE_MAP) {
		if (n->kind == YNODE_SCALAR && !n->str[0])
			return 0;   /* "alerts:" alone: the defaults */
		snprintf(err, errlen, "%s:%d: alerts must be a mapping of thresholds", file, n->line);
		return -EINVAL;
	}
	for (size_t i = 0; i < ytree_map_len(n); i++) {
		const char *k = ytree_map_key(n, i)->str;
		const struct ynode *v = ytree_map_val(n, i);
		unsigned long long u;
		int rc;
		/* dur: a duration (30s, 5m, 1h, 7d), bounds in seconds. */
		struct { const char *name; unsigned *dst; unsigned long long lo, hi; bool dur; } ints[] = {
			{ "volume_window", &a->volume_window_s, 60, 86400 * 7, true },
			{ "volume_history", &a->volume_history, 1, 10000, false },
			{ "new_use_after", &a->new_use_after_s, 0, 86400 * 365, true },
			{ "burst_count", &a->burst_count, 2, 1000, false },
			{ "burst_window", &a->burst_window_s, 1, 86400, true },
			{ "silent_after", &a->silent_after_s, 60, 86400 * 30, true },
		};
		struct { const char *name; double *dst; double lo, hi; } nums[] = {
			{ "volume_factor", &a->volume_factor, 1, 1e6 },
			{ "volume_sigma", &a->volume_sigma, 0, 1000 },
			{ "injection_score", &a->injection_score, 0, 1 },
		};
		rc = 1;
		for (size_t j = 0; rc == 1 && j < sizeof(ints) / sizeof(ints[0]); j++) {
			if (strcmp(k, ints[j].name))
				continue;
			if (!ints[j].dur) {
				rc = ytree_u64(file, v, ints[j].lo, ints[j].hi, &u, err, errlen);
			} else if (!(rc = ytree_duration_ms(file, v, &u, err, errlen))) {
				u /= 1000;
				if (u < ints[j].lo || u > ints[j].hi) {
					snprintf(err, errlen, "%s:%d: %s must be from %llus to %llus", file, v->line, k,
						 ints[j].lo, ints[j].hi);
					rc = -EINVAL;
				}
			}
			if (!rc)
				*ints[j].dst = (unsigned)u;
		}
		for (size_t j = 0; rc == 1 && j < sizeof(nums) / sizeof(nums[0]); j++)
			if (!strcmp(k, nums[j].name))
				rc = num_in(file, v, nums[j].lo, nums[j].hi, nums[j].dst, err, errlen);
		if (rc == 1 && !strcmp(k, "volume_min_tokens")) {
			if (!(rc = ytree_u64(file, v, 0, 1ULL << 40, &u, err, errlen)))
				a->volume_min_tokens = u;
		}
		if (rc == 1) {
			snprintf(err, errlen, "%s:%d: unknown key 'alerts.%s'", file, ytree_map_key(n, i)->line, k);
			rc = -EINVAL;
		}
		if (rc)
			return rc;
	}
	return 0;
}

bool colconf_cost(const struct colconf *c, const char *provider, const char *model, int64_t input_tokens,
		  int64_t output_tokens, int64_t cached_tokens, double *cost)
{
	return c && pricing_cost(c->prices, c->n_prices, provider, model, input_tokens, output_tokens, cached_tokens,
				 cost);
}

int colconf_load(const char *path, struct colconf **out, char *err, size_t errlen)
{
	struct ynode *root = NULL;
	struct colconf *c = calloc(1, sizeof(*c));
	int rc;
	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->cert_days = 30;
	c->max_agents = 1024;
	c->alerts = (struct colconf_alerts){ .volume_window_s = 3600, .volume_factor = 5, .volume_sigma = 4,
					     .volume_min_tokens = 20000, .volume_history = 6,
					     .new_use_after_s = 86400, .burst_count = 5, .burst_window_s = 600,
					     .injection_score = 0.8, .silent_after_s = 900 };
	c->log_level = 2;
	if (!(c->path = strdup(path))) {
		rc = -ENOMEM;
		goto err;
	}
	if ((rc = ytree_load(path, &root, err, errlen)))
		goto err;
	if (!root || root->kind != YNODE_MAP) {
		snprintf(err, errlen, "%s:1: expected a mapping of settings", path);
		rc = -EINVAL;
		goto err;
	}
	for (size_t i = 0; i < ytree_map_len(root); i++) {
		const struct ynode *kn = ytree_map_key(root, i), *v = ytree_map_val(root, i);
		const char *k = kn->str;
		unsigned long long u;
		if (!strcmp(k, "listen"))
			rc = hostport(path, v, &c->listen, err, errlen);
		else if (!strcmp(k, "api"))
			rc = hostport(path, v, &c->api, err, errlen);
		else if (!strcmp(k, "metrics"))
			rc = hostport(path, v, &c->metrics, err, errlen);
		else if (!strcmp(k, "syslog_forward"))
			rc = hostport(path, v, &c->syslog_forward, err, errlen);
		else if (!strcmp(k, "store")) {
			if (!(rc = scalar(path, v, &c->store, err, errlen)) && strncmp(c->store, "sqlite:", 7) &&
			    strncmp(c->store, "clickhouse://", 13)) {
				snprintf(err, errlen, "%s:%d: store must be sqlite:PATH or clickhouse://HOST:PORT/DB",
					 path, v->line);
				rc = -EINVAL;
			}
		} else if (!strcmp(k, "tls_cert"))
			rc = scalar(path, v, &c->tls_cert, err, errlen);
		else if (!strcmp(k, "tls_key"))
			rc = scalar(path, v, &c->tls_key, err, errlen);
		else if (!strcmp(k, "client_ca"))
			rc = scalar(path, v, &c->client_ca, err, errlen);
		else if (!strcmp(k, "client_ca_key"))
			rc = scalar(path, v, &c->client_ca_key, err, errlen);
		else if (!strcmp(k, "tokens"))
			rc = tokens(path, v, c, err, errlen);
		else if (!strcmp(k, "forward"))
			rc = forwards(path, v, c, err, errlen);
		else if (!strcmp(k, "alerts")) {
			c->alerts.enabled = true;
			rc = alerts_conf(path, v, &c->alerts, err, errlen);
		} else if (!strcmp(k, "pricing"))
			rc = pricing(path, v, c, err, errlen);
		else if (!strcmp(k, "forward_state"))
			rc = scalar(path, v, &c->forward_state, err, errlen);
		else if (!strcmp(k, "retain_days")) {
			if (!(rc = ytree_u64(path, v, 0, 36500, &u, err, errlen)))
				c->retain_days = (unsigned)u;
		} else if (!strcmp(k, "cert_days")) {
			if (!(rc = ytree_u64(path, v, 1, 3650, &u, err, errlen)))
				c->cert_days = (unsigned)u;
		} else if (!strcmp(k, "max_agents")) {
			if (!(rc = ytree_u64(path, v, 1, 100000, &u, err, errlen)))
				c->max_agents = (unsigned)u;
		} else if (!strcmp(k, "log_level")) {
			static const char *lv[] = { "error", "warning", "info", "debug" };
			rc = -EINVAL;
			for (int l = 0; l < 4; l++)
				if (v->kind == YNODE_SCALAR && !strcmp(v->str, lv[l])) {
					c->log_level = l;
					rc = 0;
				}
			if (rc)
				snprintf(err, errlen, "%s:%d: log_level must be error, warning, info or debug", path,
					 v->line);
		} else {
			snprintf(err, errlen, "%s:%d: unknown key '%s'", path, kn->line, k);
			rc = -EINVAL;
		}
		if (rc)
			goto err;
	}
	if (!c->store && !(c->store = strdup("sqlite:/var/lib/vigil/collector.db"))) {
		rc = -ENOMEM;
		goto err;
	}
	if (!c->listen && !(c->listen = strdup("0.0.0.0:7443"))) {
		rc = -ENOMEM;
		goto err;
	}
	if (!c->api && !(c->api = strdup("127.0.0.1:7444"))) {
		rc = -ENOMEM;
		goto err;
	}
	if (!c->tls_cert || !c->tls_key || !c->client_ca) {
		snprintf(err, errlen, "%s:1: tls_cert, tls_key and client_ca are required (vigil-collector pki init "
				      "--dir DIR creates them)", path);
		rc = -EINVAL;
		goto err;
	}
	if (!c->client_ca_key) {
		size_t l = strlen(c->client_ca);
		if (!(c->client_ca_key = malloc(l + 5))) {
			rc = -ENOMEM;
			goto err;
		}
		memcpy(c->client_ca_key, c->client_ca, l + 1);
		if (l > 4 && !strcmp(c->client_ca + l - 4, ".crt"))
			c->client_ca_key[l - 4] = 0;
		strcat(c->client_ca_key, ".key");
	}
	if (c->n_prices && !c->currency[0])
		memcpy(c->currency, "USD", 4);
	ytree_free(root);
	*out = c;
	return 0;
err:
	ytree_free(root);
	colconf_free(c);
	return rc;
}

const struct colconf_token *colconf_token_find(const struct colconf *c, const char *token)
{
	const struct colconf_token *hit = NULL;
	size_t tl = token ? strlen(token) : 0;
	if (!tl)
		return NULL;
	/* Compare against every token in constant time per byte so response
	 * timing does not reveal a prefix. */
	for (size_t i = 0; i < c->n_tokens; i++) {
		size_t l = strlen(c->tokens[i].token);
		if (l == tl && CRYPTO_memcmp(c->tokens[i].token, token, l) == 0)
			hit = &c->tokens[i];
	}
	return hit;
}
