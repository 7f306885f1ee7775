/* bench_policy: decision time of policy_eval for a 50-rule policy (target:
 * under 5 microseconds per request). Not a unit test: prints numbers and
 * PASS/MISS against the target; exits non-zero only if it cannot measure.
 *
 * The policy mixes every kind of condition (globs on exe/model/host/cgroup,
 * groups, findings, thresholds, tools, time windows, _not forms); the
 * measured requests are the expensive ones: no rule matches, so all 50
 * rules are tried before the default, and the typical ones that match
 * somewhere in the middle.
 *
 * Build and run (from the repository root, after `make`):
 *   gcc -std=gnu11 -O2 -Iagent -Icommon -Ibuild tests/bench/bench_policy.c \
 *       build/libagent.a build/libcommon.a -o build/bench_policy \
 *       $(pkg-config --cflags --libs libhs libssl libcrypto yaml-0.1) -lm -lpthread
 *   build/bench_policy
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"

#define TARGET_NS 5000.0

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);   /* CPU time: robust to a busy machine */
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static char *build_policy(void)
{
	static const char *const conds[] = {
		"{ user: [u%d, 'svc-%d-*'], provider: openai }",
		"{ unix_group: [daemon, adm], model: 'gpt-4-%d*' }",
		"{ exe: ['/opt/app%d/bin/*', '/srv/tool%d'] }",
		"{ host: ['*.internal%d.example.com'], path: '/v%d/*' }",
		"{ finding: [PRIVATE_KEY, AWS_SECRET_KEY], cgroup: '/system.slice/job%d.service' }",
		"{ model: ['claude-%d-*', 'gemini-%d*'], model_not: 'claude-%d-haiku' }",
		"{ tool: ['danger_%d', 'exec_%d_*'] }",
		"{ injection_score: 0.9, comm: 'bot%d' }",
		"{ request_bytes: 10M, user: 'batch%d' }",
		"{ time: { days: [sat, sun], hours: '01:00-02:00' }, user: 'night%d' }",
	};
	size_t cap = 1 << 16, len = 0;
	char *y = malloc(cap);

	len += snprintf(y + len, cap - len, "default: allow\nrules:\n");
	for (int i = 0; i < 50; i++) {
		char c[256];
		snprintf(c, sizeof(c), conds[i % 10], i, i, i);
		len += snprintf(y + len, cap - len, "  - name: rule-%d\n    when: %s\n    action: %s\n", i, c,
				i % 3 == 0 ? "block" : i % 3 == 1 ? "alert" : "redact");
	}
	return y;
}

static double run(const struct policy *p, const struct policy_ctx *c, const char *expect, long iters)
{
	struct policy_decision d;
	double t0, t1;

	policy_eval(p, c, &d);
	if (strcmp(d.rule, expect)) {
		fprintf(stderr, "bench_policy: expected rule %s, got %s\n", expect, d.rule);
		exit(1);
	}
	t0 = now_ns();
	for (long i = 0; i < iters; i++)
		policy_eval(p, c, &d);
	t1 = now_ns();
	return (t1 - t0) / iters;
}

int main(void)
{
	char *y = build_policy();
	struct policy *p = NULL;
	char *errs = NULL;
	static const gid_t groups[] = { 1000, 27, 100 };
	uint32_t counts[FINDING__COUNT] = { [FINDING_EMAIL] = 2 };
	char tools[2][PROVIDER_TOOL_NAME_MAX] = { "web_search", "calculator" };
	struct policy_ctx c = {
		.user = "alice", .uid = 1000, .gid = 1000, .groups = groups, .ngroups = 3,
		.exe = "/usr/bin/python3.11", .script = "/home/alice/agent.py", .comm = "python3",
		.cgroup = "/user.slice/user-1000.slice/session-4.scope", .host = "api.openai.com",
		.provider = "openai", .model = "gpt-4o-2024-08-06", .path = "/v1/chat/completions",
		.counts = counts, .injection_score = 0.1f, .request_bytes = 4096,
		.tools = (const char (*)[PROVIDER_TOOL_NAME_MAX])tools, .ntools = 2, .now = 1700000000,
	};
	long iters = 200000;
	double worst, mid;

	if (policy_parse("bench.yaml", y, strlen(y), NULL, &p, &errs)) {
		fprintf(stderr, "bench_policy: policy does not load:\n%s", errs ? errs : "?");
		return 1;
	}
	worst = run(p, &c, "default", iters);
	c.model = "claude-25-sonnet";
	c.provider = "anthropic";
	mid = run(p, &c, "rule-25", iters);
	printf("bench_policy: 50 rules, no match (all rules tried): %.0f ns/decision\n", worst);
	printf("bench_policy: 50 rules, match at rule 25: %.0f ns/decision\n", mid);
	printf("%s bench_policy: worst case %.2f us per decision (target < %.0f us)\n",
	       worst < TARGET_NS ? "PASS" : "MISS", worst / 1000, TARGET_NS / 1000);
	policy_unref(p);
	free(y);
	return 0;
}
