/* colconf: the collector's config. A mistake is reported as FILE:LINE:
 * reason (what `vigil-collector --check` prints), unknown keys are errors,
 * tokens need a role and a real length, and defaults are what the
 * documentation says. */
#include <unistd.h>
#include "check.h"
#include "colconf.h"

static char path[64];

static int load(const char *text, struct colconf **c, char *err, size_t len)
{
	snprintf(path, sizeof(path), "/tmp/vigil-test-colconf-%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	fclose(f);
	int rc = colconf_load(path, c, err, len);
	unlink(path);
	return rc;
}

#define BASE "tls_cert: /p/server.crt\ntls_key: /p/server.key\nclient_ca: /p/ca.crt\n"

TEST(minimal_config_gets_documented_defaults)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE, &c, err, sizeof(err)) == 0, "minimal config refused: %s", err);
	CHECK(!strcmp(c->listen, "0.0.0.0:7443") && !strcmp(c->api, "127.0.0.1:7444"), "defaults %s %s", c->listen, c->api);
	CHECK(!strncmp(c->store, "sqlite:", 7) && c->cert_days == 30 && c->retain_days == 0, "store %s days %u", c->store,
	      c->cert_days);
	CHECK(!strcmp(c->client_ca_key, "/p/ca.key"), "CA key not derived from client_ca: %s", c->client_ca_key);
	colconf_free(c);
}

TEST(full_config_and_token_roles)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE "listen: 127.0.0.1:9000\napi: 127.0.0.1:9001\nstore: clickhouse://127.0.0.1:8123/vigil\n"
		       "retain_days: 90\nsyslog_forward: 127.0.0.1:514\ntokens:\n"
		       "  - { token: aaaaaaaaaaaaaaaaaaaa, role: admin, name: alice }\n"
		       "  - { token: bbbbbbbbbbbbbbbbbbbb, role: analyst }\n"
		       "  - { token: cccccccccccccccccccc, role: metrics }\n",
		   &c, err, sizeof(err)) == 0, "full config refused: %s", err);
	CHECK(c->n_tokens == 3 && c->retain_days == 90, "tokens %zu retain %u", c->n_tokens, c->retain_days);
	const struct colconf_token *t = colconf_token_find(c, "bbbbbbbbbbbbbbbbbbbb");
	CHECK(t && t->role == ROLE_ANALYST && !strcmp(t->name, "analyst"), "analyst token not found or wrong role");
	CHECK(colconf_token_find(c, "aaaaaaaaaaaaaaaaaaaa")->role == ROLE_ADMIN, "admin role");
	CHECK(!colconf_token_find(c, "aaaaaaaaaaaaaaaaaaa") && !colconf_token_find(c, "") && !colconf_token_find(c, NULL),
	      "a prefix or empty token matched");
	colconf_free(c);
}

TEST(mistakes_are_reported_with_file_and_line)
{
	struct {
		const char *text, *want;
	} cases[] = {
		{ BASE "listen: nowhere\n", ":4: expected HOST:PORT" },
		{ BASE "stroe: sqlite:/x\n", ":4: unknown key 'stroe'" },
		{ BASE "store: mysql://x\n", ":4: store must be" },
		{ BASE "tokens:\n  - { token: short, role: admin }\n", ":5: a token must be at least 16" },
		{ BASE "tokens:\n  - { token: aaaaaaaaaaaaaaaaaaaa, role: root }\n", ":5: role must be" },
		{ BASE "tokens:\n  - { token: aaaaaaaaaaaaaaaaaaaa }\n", ":5: a token needs token and role" },
		{ BASE "retain_days: -3\n", ":4:" },
		{ "listen: 127.0.0.1:1\n", ":1: tls_cert, tls_key and client_ca are required" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct colconf *c = NULL;
		char err[256] = "";
		int rc = load(cases[i].text, &c, err, sizeof(err));
		CHECK(rc == -EINVAL && strstr(err, path) && strstr(err, cases[i].want),
		      "case %zu: rc %d, error '%s', want '%s'", i, rc, err, cases[i].want);
		CHECK(!c, "a refused config was returned");
	}
}

/* pricing: first matching (provider, model glob) row wins; unknown token
 * counts are 0; no price or no tokens means no cost. */
TEST(pricing_table_and_cost)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE "pricing:\n"
		       "  - { provider: openai, model: \"gpt-4o-mini*\", input: 0.15, output: 0.60, cached_input: 0.075, currency: EUR }\n"
		       "  - { provider: openai, model: \"gpt-4o*\", input: 2.50, output: 10 }\n"
		       "  - { provider: anthropic, model: \"*\", input: 3, output: 15 }\n",
		   &c, err, sizeof(err)) == 0, "pricing refused: %s", err);
	double d = -1;
	CHECK(c->n_prices == 3 && !strcmp(c->currency, "EUR"), "%zu prices, currency %s", c->n_prices, c->currency);
	CHECK(colconf_cost(c, "openai", "gpt-4o-mini-2024-07-18", 1000000, 2000000, -1, &d) && d > 1.3499 && d < 1.3501,
	      "mini priced %f (want 0.15 + 1.20)", d);
	CHECK(colconf_cost(c, "openai", "gpt-4o", 1000, 1000, -1, &d) && d > 0.01249 && d < 0.01251, "gpt-4o %f", d);
	CHECK(colconf_cost(c, "anthropic", "claude-3-5-sonnet", 100, -1, -1, &d) && d > 0.000299 && d < 0.000301,
	      "unknown output tokens not 0: %f", d);
	CHECK(!colconf_cost(c, "gemini", "gemini-1.5-pro", 100, 100, -1, &d), "a provider without a price got a cost");
	CHECK(!colconf_cost(c, "openai", "gpt-4o", -1, -1, -1, &d), "a cost without tokens");
	CHECK(!colconf_cost(c, "openai", "o1", 10, 10, -1, &d), "o1 matched no glob");
	/* Cached input: 1M prompt tokens of which 600k from the cache, at
	 * 0.075 rather than 0.15; a row without cached_input prices them as
	 * input; a cached count above the prompt count is capped at it. */
	CHECK(colconf_cost(c, "openai", "gpt-4o-mini", 1000000, 0, 600000, &d) && d > 0.1049 && d < 0.1051,
	      "cached priced %f (want 0.4 x 0.15 + 0.6 x 0.075 = 0.105)", d);
	CHECK(colconf_cost(c, "openai", "gpt-4o", 1000000, 0, 600000, &d) && d > 2.4999 && d < 2.5001,
	      "no cached_input price: %f (want the input price, 2.50)", d);
	CHECK(colconf_cost(c, "openai", "gpt-4o-mini", 1000, 0, 5000, &d) && d > 0.0000749 && d < 0.0000751,
	      "cached above input: %f (want 1000 x 0.075 / 1M)", d);
	colconf_free(c);
	CHECK(load(BASE, &c, err, sizeof(err)) == 0 && !colconf_cost(c, "openai", "gpt-4o", 10, 10, -1, &d),
	      "no table, no cost");
	colconf_free(c);
}

TEST(alert_thresholds_and_defaults)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE, &c, err, sizeof(err)) == 0 && !c->alerts.enabled && c->alerts.volume_factor == 5 &&
	      c->alerts.silent_after_s == 900, "defaults: %s", err);
	colconf_free(c);
	CHECK(load(BASE "alerts:\n  volume_window: 30m\n  volume_factor: 8\n  burst_count: 3\n  silent_after: 1h\n"
		       "  injection_score: 0.7\n", &c, err, sizeof(err)) == 0, "alerts refused: %s", err);
	CHECK(c->alerts.enabled && c->alerts.volume_window_s == 1800 && c->alerts.volume_factor == 8 &&
	      c->alerts.burst_count == 3 && c->alerts.silent_after_s == 3600 && c->alerts.injection_score == 0.7 &&
	      c->alerts.burst_window_s == 600, "alerts parsed wrong");
	colconf_free(c);
}

TEST(pricing_and_forward_mistakes_name_the_line)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "pricing:\n  - { provider: openai, model: x, input: -1, output: 1 }\n", ":5: a price is a number" },
		{ "pricing:\n  - { provider: openai, model: x, input: lots, output: 1 }\n", ":5: a price is a number" },
		{ "pricing:\n  - { provider: openai, model: x, input: 1, output: 1, cached_input: -0.5 }\n",
		  ":5: a price is a number" },
		{ "pricing:\n  - { provider: openai, input: 1, output: 1 }\n", ":5: a price needs provider and model" },
		{ "pricing:\n  - { provider: openai, model: x, input: 1, currency: usd }\n", ":5: currency is an ISO 4217" },
		{ "pricing:\n  - { provider: a, model: x, currency: USD }\n  - { provider: b, model: y, currency: EUR }\n",
		  ":6: every price must be in one currency" },
		{ "pricing:\n  - { provider: a, model: x, cost: 1 }\n", ":5: unknown key 'pricing.cost'" },
		{ "pricing: free\n", ":4: pricing must be a list" },
		{ "forward: x\n", ":4: forward must be a list" },
		{ "alerts:\n  volume_factor: 0\n", ":5: expected a number from 1" },
		{ "alerts:\n  burst_window: 2d\n", ":5: burst_window must be from" },
		{ "alerts:\n  injection_score: high\n", ":5: expected a number from 0 to 1" },
		{ "alerts:\n  volume: 1\n", ":5: unknown key 'alerts.volume'" },
		{ "alerts: [1]\n", ":4: alerts must be a mapping" },
		{ "forward:\n  - { name: a, format: hec, url: \"http://h:1\", batch: 9999 }\n", ":5:" },
		{ "forward:\n  - { format: otlp, url: \"http://h:1\" }\n", ":5: forward target needs a name" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct colconf *c = NULL;
		char text[512], err[256] = "";
		snprintf(text, sizeof(text), BASE "%s", cases[i].text);
		CHECK(load(text, &c, err, sizeof(err)) != 0 && strstr(err, cases[i].want) && strstr(err, path),
		      "case %zu: want '%s', got '%s'", i, cases[i].want, err);
	}
}
