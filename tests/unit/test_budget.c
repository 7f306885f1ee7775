/* Unit tests for agent/policy/budget.c: fixed windows (injected clock), token and
 * request budgets, keys per user / group / exe / all, `when` filters,
 * monitor budgets, persistence across a restart (and windows that passed
 * while the agent was down), counters surviving a policy reload, and
 * concurrent charging. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/budget.h"
#include "pricing.h"
#include "check.h"

/* 2023-11-14 00:00:00 UTC, a day boundary */
#define DAY0 1699920000LL

static struct policy *load(const char *yaml)
{
	struct policy *p = NULL;
	char *errs = NULL;
	if (policy_parse("b.yaml", yaml, strlen(yaml), NULL, &p, &errs)) {
		printf("policy errors: %s\n", errs ? errs : "?");
		free(errs);
		return NULL;
	}
	return p;
}

static struct policy_ctx who(const char *user, const char *exe)
{
	static const gid_t groups[] = { 4 };   /* adm */
	struct policy_ctx c = { .user = user, .uid = 1000, .gid = 1000, .groups = groups, .ngroups = 1,
				.exe = exe, .provider = "openai", .host = "api.openai.com" };
	return c;
}

TEST(window_alignment)
{
	CHECK(budget_window_start(DAY0 + 3599, 3600, true) == DAY0, "hour window start");
	CHECK(budget_window_start(DAY0 + 3600, 3600, true) == DAY0 + 3600, "next hour");
	CHECK(budget_window_start(DAY0 + 86399, 86400, true) == DAY0, "day window start");
	CHECK(budget_window_start(DAY0 + 86400, 86400, true) == DAY0 + 86400, "next day");
	CHECK(budget_window_start(DAY0 + 61, 60, true) == DAY0 + 60, "minute window");
	CHECK(budget_estimate_tokens(0) == 0 && budget_estimate_tokens(1) == 1 && budget_estimate_tokens(400) == 100,
	      "estimate: bytes/4 rounded up");
}

TEST(token_budget_per_user_day)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p = load("timezone: utc\nbudgets:\n  - name: daily\n    per: user\n    tokens: 1000\n    window: day\n");
	struct policy_ctx alice = who("alice", "/usr/bin/curl"), bob = who("bob", "/usr/bin/curl");

	CHECK(p, "load");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	CHECK(budget_check(s, p, &alice, DAY0 + 10, &v) == 0 && !v.exhausted, "fresh budget admits");
	budget_charge(s, p, &alice, 600, DAY0 + 20);
	CHECK(budget_check(s, p, &alice, DAY0 + 30, &v) == 0, "600/1000 admits");
	budget_charge(s, p, &alice, 400, DAY0 + 40);
	CHECK(budget_used(s, "daily", "alice", 86400, true, DAY0 + 41) == 1000, "used 1000");
	CHECK(budget_check(s, p, &alice, DAY0 + 50, &v) == 1, "1000/1000 refuses");
	CHECK(v.exhausted && !v.monitor && v.status == 429 && !strcmp(v.budget, "daily") &&
	      v.limit == 1000 && v.used == 1000, "verdict fields (status %d)", v.status);
	CHECK(v.retry_after == 86400 - 50, "retry after the day ends: %lld", (long long)v.retry_after);
	CHECK(strstr(v.message, "'daily'") && strstr(v.message, "per user per day"), "message: %s", v.message);
	CHECK(budget_check(s, p, &bob, DAY0 + 50, &v) == 0, "bob has his own counter");
	CHECK(budget_check(s, p, &alice, DAY0 + 86400, &v) == 0 && !v.exhausted, "next day resets");
	CHECK(budget_used(s, "daily", "alice", 86400, true, DAY0 + 86400) == 0, "counter reset");
	budget_store_free(s);
	policy_unref(p);
}

/* A budget in currency: the policy's own pricing table prices each
 * exchange (cached prompt tokens at cached_input, as the collector does),
 * and the budget refuses once the day's spend reaches its amount. */
TEST(cost_budget_from_the_policy_pricing)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p = load("timezone: utc\n"
				"pricing:\n"
				"  - { provider: openai, model: \"gpt-4o*\", input: 2.50, output: 10, cached_input: 1.25, currency: EUR }\n"
				"budgets:\n"
				"  - { name: spend, per: user, cost: 0.05, window: day }\n"
				"  - { name: tokens, per: user, tokens: 1M, window: day }\n");
	struct policy_ctx alice = who("alice", "/usr/bin/curl");
	const struct pricing *pr;
	double c1 = 0, c2 = 0;

	CHECK(p, "load");
	pr = policy_pricing(p);
	CHECK(pr->n == 1 && !strcmp(pr->currency, "EUR") && policy_budget_get(p, 0)->kind == BUDGET_COST &&
		      policy_budget_get(p, 0)->limit == 50000,
	      "parsed: %zu prices, limit %llu", pr->n, (unsigned long long)policy_budget_get(p, 0)->limit);
	/* 10000 prompt tokens, 8000 of them cached, 1000 out: 2000 x 2.5 + 8000 x 1.25 + 1000 x 10 = 0.025 */
	CHECK(pricing_cost(pr->rows, pr->n, "openai", "gpt-4o", 10000, 1000, 8000, &c1) && c1 > 0.02499 && c1 < 0.02501,
	      "cost %f, want 0.025", c1);
	CHECK(!pricing_cost(pr->rows, pr->n, "anthropic", "claude", 10, 10, -1, &c2), "an unpriced provider has no cost");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	CHECK(budget_check(s, p, &alice, DAY0 + 10, &v) == 0 && !v.exhausted, "fresh");
	budget_charge_cost(s, p, &alice, 25000, DAY0 + 20);
	CHECK(budget_check(s, p, &alice, DAY0 + 30, &v) == 0, "0.025 of 0.05 admits");
	budget_charge_cost(s, p, &alice, 25000, DAY0 + 40);
	CHECK(budget_check(s, p, &alice, DAY0 + 50, &v) == 1 && v.status == 429 && !strcmp(v.budget, "spend"),
	      "0.05 of 0.05 refuses (status %d, budget %s)", v.status, v.budget ? v.budget : "-");
	CHECK(strstr(v.message, "cost budget 'spend' exhausted: 0.05 EUR per user per day"), "message: %s", v.message);
	CHECK(budget_used(s, "tokens", "alice", 86400, true, DAY0 + 50) == 0, "a cost charge counted as tokens");
	budget_charge(s, p, &alice, 100, DAY0 + 60);
	CHECK(budget_used(s, "spend", "alice", 86400, true, DAY0 + 60) == 50000, "a token charge counted as cost");
	budget_store_free(s);
	policy_unref(p);
}

TEST(requests_per_minute)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p = load("budgets:\n  - name: rpm\n    per: user\n    requests_per_minute: 3\n");
	struct policy_ctx a = who("alice", "/usr/bin/curl");

	CHECK(p, "load");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	for (int i = 0; i < 3; i++)
		CHECK(budget_check(s, p, &a, DAY0 + i, &v) == 0, "request %d of 3 admitted", i + 1);
	CHECK(budget_check(s, p, &a, DAY0 + 5, &v) == 1 && v.status == 429 && !strcmp(v.budget, "rpm"),
	      "4th request in the minute refused");
	CHECK(budget_check(s, p, &a, DAY0 + 6, &v) == 1, "still refused");
	CHECK(budget_used(s, "rpm", "alice", 60, false, DAY0 + 6) == 3, "refused requests are not counted");
	CHECK(budget_check(s, p, &a, DAY0 + 60, &v) == 0, "next minute admitted");
	CHECK(strstr(policy_budget_get(p, 0)->name, "rpm") && policy_budget_get(p, 0)->window_s == 60 &&
	      policy_budget_get(p, 0)->kind == BUDGET_REQUESTS, "parsed as a per-minute request budget");
	budget_store_free(s);
	policy_unref(p);
}

TEST(keys_group_exe_all_and_when)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p = load("timezone: utc\n"
				"budgets:\n"
				"  - name: adm-pool\n    per: unix_group\n    when: { unix_group: [daemon, adm] }\n    tokens: 100\n    window: hour\n"
				"  - name: per-exe\n    per: exe\n    tokens: 1000\n    window: hour\n"
				"  - name: fleet\n    per: all\n    tokens: 5000\n    window: hour\n"
				"  - name: anthropic-only\n    per: user\n    when: { provider: anthropic }\n    tokens: 1\n    window: hour\n");
	struct policy_ctx a = who("alice", "/usr/bin/curl"), b = who("bob", "/usr/bin/python3.11");
	char key[128];

	CHECK(p, "load");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	CHECK(policy_budget_applies(p, 0, &a, key, sizeof(key)) && !strcmp(key, "adm"), "group key is the group name: %s", key);
	CHECK(policy_budget_applies(p, 1, &a, key, sizeof(key)) && !strcmp(key, "/usr/bin/curl"), "exe key: %s", key);
	CHECK(policy_budget_applies(p, 2, &a, key, sizeof(key)) && !strcmp(key, "*"), "all key: %s", key);
	CHECK(!policy_budget_applies(p, 3, &a, key, sizeof(key)), "when: provider anthropic does not apply to openai");
	budget_charge(s, p, &a, 100, DAY0);
	CHECK(budget_check(s, p, &b, DAY0 + 1, &v) == 1 && !strcmp(v.budget, "adm-pool"),
	      "bob shares alice's adm group budget");
	CHECK(budget_used(s, "per-exe", "/usr/bin/python3.11", 3600, true, DAY0 + 1) == 0 &&
	      budget_used(s, "per-exe", "/usr/bin/curl", 3600, true, DAY0 + 1) == 100, "exe counters separate");
	CHECK(budget_used(s, "fleet", "*", 3600, true, DAY0 + 1) == 100, "global counter");
	struct policy_ctx c = who("carol", "/usr/bin/curl");
	c.ngroups = 0;
	CHECK(!policy_budget_applies(p, 0, &c, key, sizeof(key)), "group budget does not apply outside its groups");
	CHECK(budget_check(s, p, &c, DAY0 + 1, &v) == 0, "carol (not in adm) is not limited by adm-pool");
	budget_store_free(s);
	policy_unref(p);
}

TEST(monitor_budget_only_logs)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p = load("budgets:\n  - name: soft\n    per: user\n    tokens: 10\n    window: hour\n    mode: monitor\n");
	struct policy_ctx a = who("alice", "/usr/bin/curl");

	CHECK(p, "load");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	budget_charge(s, p, &a, 50, DAY0);
	CHECK(budget_check(s, p, &a, DAY0 + 1, &v) == 0 && v.exhausted && v.monitor && v.status == 0,
	      "monitor budget: exhausted is reported but the request goes");
	CHECK(strstr(v.message, "monitor"), "message says monitor: %s", v.message);
	budget_store_free(s);
	policy_unref(p);
}

TEST(persistence_round_trip_and_restart_windows)
{
	char dir[64], path[128], tmp[160];
	struct budget_store *s;
	struct budget_verdict v;
	struct stat st;
	struct policy *p = load("timezone: utc\nbudgets:\n"
				"  - name: daily\n    per: user\n    tokens: 1000\n    window: day\n"
				"  - name: hourly\n    per: exe\n    tokens: 1000\n    window: hour\n");
	struct policy_ctx a = who("al\tice%", "/opt/odd path/x");   /* names needing escapes */

	CHECK(p, "load");
	snprintf(dir, sizeof(dir), "/tmp/test_budget.XXXXXX");
	CHECK(mkdtemp(dir), "mkdtemp");
	snprintf(path, sizeof(path), "%s/budgets.state", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK(budget_store_open(path, &s) == 0, "open with no state file");
	budget_charge(s, p, &a, 1000, DAY0 + 100);
	CHECK(budget_dirty(s), "dirty after charge");
	CHECK(budget_save(s, DAY0 + 100) == 0, "save");
	CHECK(!budget_dirty(s), "clean after save");
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "state file 0600");
	CHECK(access(tmp, F_OK) != 0, "no temp file left behind");
	budget_store_free(s);

	/* restart in the same hour: both counters back */
	CHECK(budget_store_open(path, &s) == 0, "reopen");
	CHECK(budget_check(s, p, &a, DAY0 + 200, &v) == 1 && !strcmp(v.budget, "daily"),
	      "exhausted budget still exhausted after restart");
	CHECK(budget_used(s, "hourly", "/opt/odd path/x", 3600, true, DAY0 + 200) == 1000, "hourly counter restored");
	budget_store_free(s);

	/* restart two hours later, same day: hourly reset, daily kept */
	CHECK(budget_store_open(path, &s) == 0, "reopen");
	CHECK(budget_used(s, "hourly", "/opt/odd path/x", 3600, true, DAY0 + 7300) == 0,
	      "hour that passed while down is reset");
	CHECK(budget_used(s, "daily", "al\tice%", 86400, true, DAY0 + 7300) == 1000, "daily kept");
	CHECK(budget_save(s, DAY0 + 7300) == 0, "save drops expired counters");
	budget_store_free(s);

	/* next day: everything reset */
	CHECK(budget_store_open(path, &s) == 0, "reopen");
	CHECK(budget_check(s, p, &a, DAY0 + 86400 + 5, &v) == 0 && !v.exhausted, "day that passed while down is reset");
	budget_store_free(s);

	/* a corrupt file: bad lines skipped, good ones kept */
	FILE *f = fopen(path, "w");
	CHECK(f, "write state");
	fprintf(f, "vigil-budgets 1\ngarbage\n%lld\t86400\t7\tdaily\tbob\n1\t2\t3\n", DAY0);
	fclose(f);
	CHECK(budget_store_open(path, &s) == 0, "open corrupt file");
	CHECK(budget_used(s, "daily", "bob", 86400, true, DAY0 + 5) == 7, "good line kept");
	budget_store_free(s);
	unlink(path);
	rmdir(dir);
	policy_unref(p);
}

TEST(counters_survive_policy_reload)
{
	struct budget_store *s;
	struct budget_verdict v;
	struct policy *p1 = load("budgets:\n  - name: daily\n    per: user\n    tokens: 100\n    window: day\n");
	struct policy *p2 = load("default: block\nbudgets:\n  - name: daily\n    per: user\n    tokens: 100\n    window: day\n");
	struct policy *p3 = load("budgets:\n  - name: daily\n    per: user\n    tokens: 100000\n    window: day\n");
	struct policy_ctx a = who("alice", "/usr/bin/curl");

	CHECK(p1 && p2 && p3, "load");
	CHECK(budget_store_open(NULL, &s) == 0, "open");
	budget_charge(s, p1, &a, 100, DAY0 + 1);
	CHECK(budget_check(s, p2, &a, DAY0 + 2, &v) == 1, "same budget name after reload: still exhausted");
	CHECK(budget_check(s, p3, &a, DAY0 + 2, &v) == 0, "raised limit after reload admits");
	budget_store_free(s);
	policy_unref(p1);
	policy_unref(p2);
	policy_unref(p3);
}

struct thr {
	struct budget_store *s;
	struct policy *p;
};

static void *charger(void *arg)
{
	struct thr *t = arg;
	struct policy_ctx a = who("alice", "/usr/bin/curl");
	struct budget_verdict v;
	for (int i = 0; i < 2000; i++) {
		budget_check(t->s, t->p, &a, DAY0 + 1, &v);
		budget_charge(t->s, t->p, &a, 1, DAY0 + 1);
	}
	return NULL;
}

TEST(concurrent_charges_are_not_lost)
{
	struct thr t;
	pthread_t th[4];
	t.p = load("timezone: utc\nbudgets:\n  - name: big\n    per: user\n    tokens: 1M\n    window: day\n"
		   "  - name: reqs\n    per: user\n    requests: 1M\n    window: hour\n");
	CHECK(t.p, "load");
	CHECK(budget_store_open(NULL, &t.s) == 0, "open");
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, charger, &t);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK(budget_used(t.s, "big", "alice", 86400, true, DAY0 + 1) == 8000, "8000 tokens charged");
	CHECK(budget_used(t.s, "reqs", "alice", 3600, true, DAY0 + 1) == 8000, "8000 requests counted");
	budget_store_free(t.s);
	policy_unref(t.p);
}
