/* Unit tests for agent/policy/ (policy.c, load.c, eval.c): every condition (positive and negative),
 * first-match order, defaults, monitor mode, redaction modes, load errors
 * with file:line (all of them, not just the first), hash stability, and
 * reload keeping the old policy when the new file is broken. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "policy/policy.h"

static char *last_errs;

/* Parse yaml; NULL on failure (errors kept in last_errs). */
static struct policy *load(const char *yaml)
{
	struct policy *p = NULL;
	free(last_errs);
	last_errs = NULL;
	if (policy_parse("t.yaml", yaml, strlen(yaml), NULL, &p, &last_errs))
		return NULL;
	return p;
}

static struct policy_ctx base_ctx(void)
{
	static const gid_t groups[] = { 4, 27 };
	struct policy_ctx c = {
		.user = "alice", .uid = 1000, .gid = 1000, .groups = groups, .ngroups = 2,
		.exe = "/usr/bin/python3.11", .comm = "python3", .cgroup = "/user.slice/user-1000.slice/session-2.scope",
		.host = "api.openai.com", .provider = "openai", .model = "gpt-4o", .path = "/v1/chat/completions",
		.now = 1700000000,
	};
	return c;
}

static const char *decide(struct policy *p, const struct policy_ctx *c)
{
	static struct policy_decision d;
	if (policy_eval(p, c, &d))
		return "EVAL-ERROR";
	return d.rule;
}

/* One rule "r" with the given when-map (flow YAML) and action block; says
 * whether the context matches it. */
static int matches(const char *when, const struct policy_ctx *c)
{
	char y[2048];
	struct policy *p;
	int m;

	snprintf(y, sizeof(y), "default: allow\nrules:\n  - name: r\n    when: %s\n    action: block\n", when);
	if (!(p = load(y)))
		return -1;
	m = !strcmp(decide(p, c), "r");
	policy_unref(p);
	return m;
}

#define MATCH(when, ctx) CHECK(matches(when, &(ctx)) == 1, "'%s' should match (errs: %s)", when, last_errs ? last_errs : "")
#define NOMATCH(when, ctx) CHECK(matches(when, &(ctx)) == 0, "'%s' should not match (errs: %s)", when, last_errs ? last_errs : "")

TEST(default_allow_and_block)
{
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	struct policy *p = load("default: allow\n");
	CHECK(p, "load failed: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(d.action == POLICY_ALLOW && d.is_default && !strcmp(d.rule, "default") && d.status == 0,
	      "empty allow policy: action %d rule %s", d.action, d.rule);
	policy_unref(p);
	p = load("default: block\n");
	CHECK(p, "load failed: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(d.action == POLICY_BLOCK && d.enforce == POLICY_BLOCK && d.status == 403 && d.is_default,
	      "default block: action %d status %d", d.action, d.status);
	CHECK(strstr(d.message, "default"), "message should name the default: %s", d.message);
	policy_unref(p);
}

TEST(cond_user)
{
	struct policy_ctx c = base_ctx();
	MATCH("{ user: alice }", c);
	MATCH("{ user: [bob, 'al*'] }", c);
	MATCH("{ user: '1000' }", c);
	NOMATCH("{ user: bob }", c);
	NOMATCH("{ user_not: [alice] }", c);
	MATCH("{ user_not: [bob] }", c);
	c.user = NULL;
	c.uid = -1;
	NOMATCH("{ user: alice }", c);
	MATCH("{ user_not: alice }", c);
}

TEST(cond_unix_group_uses_supplementary_groups)
{
	struct policy_ctx c = base_ctx();
	MATCH("{ unix_group: adm }", c);        /* gid 4, supplementary */
	MATCH("{ unix_group: sudo }", c);       /* gid 27, supplementary */
	MATCH("{ unix_group: '1000' }", c);     /* primary gid by number */
	NOMATCH("{ unix_group: daemon }", c);
	NOMATCH("{ unix_group: no-such-group-xyz }", c);
	NOMATCH("{ unix_group_not: adm }", c);
	MATCH("{ unix_group_not: daemon }", c);
	c.ngroups = 0;
	NOMATCH("{ unix_group: adm }", c);
	c.gid = 4;
	MATCH("{ unix_group: adm }", c);
}

TEST(cond_exe_glob_pathname)
{
	struct policy_ctx c = base_ctx();
	MATCH("{ exe: '/usr/bin/python3*' }", c);
	MATCH("{ exe: ['/opt/*', '/usr/bin/*'] }", c);
	NOMATCH("{ exe: '/usr/*' }", c);         /* FNM_PATHNAME: * does not cross '/' */
	NOMATCH("{ exe: /usr/bin/python3 }", c);
	MATCH("{ exe_not: ['/opt/*'] }", c);
	NOMATCH("{ exe_not: ['/usr/bin/*'] }", c);
}

TEST(cond_script_comm_cgroup)
{
	struct policy_ctx c = base_ctx();
	NOMATCH("{ script: '/home/*/*.py' }", c);
	c.script = "/home/alice/run.py";
	MATCH("{ script: '/home/*/*.py' }", c);
	NOMATCH("{ script_not: '/home/*/*.py' }", c);
	MATCH("{ comm: python3 }", c);
	NOMATCH("{ comm: node }", c);
	MATCH("{ comm_not: node }", c);
	MATCH("{ cgroup: '/user.slice/*' }", c);
	NOMATCH("{ cgroup: '*docker*' }", c);
	c.cgroup = "/system.slice/docker-abc.scope";
	MATCH("{ cgroup: '*docker*' }", c);
	MATCH("{ cgroup_not: '/user.slice/*' }", c);
}

TEST(cond_host_provider_model_path)
{
	struct policy_ctx c = base_ctx();
	MATCH("{ host: API.OpenAI.com }", c);     /* SNI compare ignores case */
	MATCH("{ host: '*.openai.com' }", c);
	NOMATCH("{ host: api.anthropic.com }", c);
	MATCH("{ host_not: api.anthropic.com }", c);
	MATCH("{ provider: openai }", c);
	NOMATCH("{ provider: [anthropic, gemini] }", c);
	MATCH("{ provider_not: anthropic }", c);
	MATCH("{ model: 'gpt-4o*' }", c);
	NOMATCH("{ model: gpt-4o-mini }", c);
	MATCH("{ model_not: gpt-4o-mini }", c);
	NOMATCH("{ model_not: 'gpt-*' }", c);
	MATCH("{ model: 'gpt-*', model_not: gpt-4o-mini }", c);
	c.model = "gpt-4o-mini";
	NOMATCH("{ model: 'gpt-*', model_not: gpt-4o-mini }", c);
	c.model = "";
	NOMATCH("{ model: '*' }", c);            /* unknown model never matches a positive */
	MATCH("{ model_not: gpt-4o-mini }", c);  /* ... but does match a negative */
	c = base_ctx();
	MATCH("{ path: /v1/chat/completions }", c);
	c.path = "/v1/chat/completions?api-version=2024";
	MATCH("{ path: /v1/chat/completions }", c);   /* query string ignored */
	NOMATCH("{ path: '/v1/embeddings*' }", c);
	MATCH("{ path_not: '/v1/embeddings*' }", c);
}

TEST(cond_tools)
{
	struct policy_ctx c = base_ctx();
	char tools[2][PROVIDER_TOOL_NAME_MAX] = { "web_search", "run_shell" };
	NOMATCH("{ tool: run_shell }", c);         /* no tools declared */
	NOMATCH("{ tool_not: [web_search] }", c);
	c.tools = (const char (*)[PROVIDER_TOOL_NAME_MAX])tools;
	c.ntools = 2;
	MATCH("{ tool: run_shell }", c);
	MATCH("{ tool: 'run_*' }", c);
	NOMATCH("{ tool: calculator }", c);
	MATCH("{ tool_not: [web_search] }", c);              /* run_shell is outside the allow-list */
	NOMATCH("{ tool_not: [web_search, run_shell] }", c); /* everything declared is allowed */
}

TEST(cond_finding_types_lists_detectors)
{
	struct policy_ctx c = base_ctx();
	uint32_t counts[FINDING__COUNT] = { 0 };
	const char *pol =
		"default: allow\n"
		"detectors:\n"
		"  - name: falcon\n"
		"    keywords: [falcon]\n"
		"  - name: ticket\n"
		"    regex: 'TICKET-[0-9]{6}'\n"
		"lists:\n"
		"  secrets: [AWS_ACCESS_KEY, PRIVATE_KEY]\n"
		"  internal: [ticket]\n"
		"rules:\n"
		"  - name: secrets\n"
		"    when: { finding: ['@secrets'] }\n"
		"    action: block\n"
		"  - name: falcon\n"
		"    when: { finding: falcon }\n"
		"    action: block\n"
		"  - name: internal\n"
		"    when: { finding: '@internal' }\n"
		"    action: alert\n"
		"  - name: anysecret\n"
		"    when: { finding: '@all_secrets' }\n"
		"    action: block\n"
		"  - name: email\n"
		"    when: { finding: [EMAIL, PHONE] }\n"
		"    action: redact\n";
	struct policy *p = load(pol);
	CHECK(p, "load failed: %s", last_errs);
	c.counts = counts;
	CHECK(!strcmp(decide(p, &c), "default"), "no findings should fall to default, got %s", decide(p, &c));
	counts[FINDING_PRIVATE_KEY] = 1;
	CHECK(!strcmp(decide(p, &c), "secrets"), "PRIVATE_KEY via @secrets, got %s", decide(p, &c));
	counts[FINDING_PRIVATE_KEY] = 0;
	counts[FINDING_GITHUB_TOKEN] = 2;
	CHECK(!strcmp(decide(p, &c), "anysecret"), "GITHUB_TOKEN via @all_secrets, got %s", decide(p, &c));
	counts[FINDING_GITHUB_TOKEN] = 0;
	counts[FINDING_PHONE] = 1;
	CHECK(!strcmp(decide(p, &c), "email"), "PHONE in [EMAIL, PHONE], got %s", decide(p, &c));
	counts[FINDING_PHONE] = 0;
	counts[FINDING_CUSTOM] = 1;
	c.custom_hits = 1u << 1;     /* ticket */
	CHECK(!strcmp(decide(p, &c), "internal"), "custom ticket via @internal, got %s", decide(p, &c));
	c.custom_hits = 1u << 0;     /* falcon */
	CHECK(!strcmp(decide(p, &c), "falcon"), "custom falcon, got %s", decide(p, &c));
	c.custom_hits = 0;
	counts[FINDING_CUSTOM] = 0;
	size_t n = 0;
	const struct inspect_custom *cu = policy_detectors(p, &n);
	CHECK(n == 2 && !strcmp(cu[0].name, "falcon") && cu[0].nkeywords == 1 &&
	      !strcmp(cu[0].keywords[0], "falcon") && !cu[0].regex && !strcmp(cu[1].regex, "TICKET-[0-9]{6}"),
	      "detectors exposed in file order as inspect_custom (n=%zu)", n);
	policy_unref(p);
}

TEST(cond_finding_custom_type_means_any_detector)
{
	struct policy_ctx c = base_ctx();
	uint32_t counts[FINDING__COUNT] = { 0 };
	struct policy *p = load("detectors:\n  - name: a\n    keywords: [x]\n  - name: b\n    keywords: [y]\n"
				"rules:\n  - name: r\n    when: { finding: [CUSTOM, a] }\n    action: alert\n");
	CHECK(p, "load: %s", last_errs);
	c.counts = counts;
	CHECK(!strcmp(decide(p, &c), "default"), "no custom hit");
	c.custom_hits = 1u << 1;
	CHECK(!strcmp(decide(p, &c), "r"), "CUSTOM matches detector b too");
	c.custom_hits = 0;
	counts[FINDING_CUSTOM] = 1;   /* counted, spans truncated */
	CHECK(!strcmp(decide(p, &c), "r"), "CUSTOM matches a bare CUSTOM count");
	policy_unref(p);
}

TEST(cond_thresholds)
{
	struct policy_ctx c = base_ctx();
	c.injection_score = 0.69f;
	NOMATCH("{ injection_score: 0.7 }", c);
	c.injection_score = 0.7f;
	MATCH("{ injection_score: 0.7 }", c);
	c.request_bytes = 1023;
	NOMATCH("{ request_bytes: 1k }", c);
	c.request_bytes = 1024;
	MATCH("{ request_bytes: 1k }", c);
}

TEST(cond_time_windows)
{
	struct policy_ctx c = base_ctx();
	/* 1700000000 = Tue 2023-11-14 22:13:20 UTC */
#define TFMT "default: allow\ntimezone: utc\nrules:\n  - name: r\n    when: { time: %s }\n    action: block\n"
	char y[512];
	struct { const char *t; int match; } cases[] = {
		{ "{ days: mon-fri }", 1 },
		{ "{ days: [sat, sun] }", 0 },
		{ "{ hours: '22:00-23:00' }", 1 },
		{ "{ hours: '09:00-18:00' }", 0 },
		{ "{ days: tue, hours: '22:00-06:00' }", 1 },      /* wraps midnight */
		{ "{ days: wed, hours: '22:00-06:00' }", 0 },
		{ "{ days: sat-sun }", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(y, sizeof(y), TFMT, cases[i].t);
		struct policy *p = load(y);
		CHECK(p, "load %s failed: %s", cases[i].t, last_errs);
		int m = !strcmp(decide(p, &c), "r");
		policy_unref(p);
		CHECK(m == cases[i].match, "time %s: expected %d", cases[i].t, cases[i].match);
	}
	/* Wed 03:00 UTC is inside the Tuesday 22:00-06:00 window */
	c.now = 1700000000 + 4 * 3600 + 46 * 60 + 40;
	snprintf(y, sizeof(y), TFMT, "{ days: tue, hours: '22:00-06:00' }");
	struct policy *p = load(y);
	CHECK(p, "load failed");
	CHECK(!strcmp(decide(p, &c), "r"), "early Wednesday belongs to Tuesday's night window");
	policy_unref(p);
}

static char tmpdir[64];

static void write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(s, f);
		fclose(f);
	}
}

TEST(cond_packaged_via_dpkg_lists)
{
	char dir[128], path[256], y[512];
	struct policy_load_opts o = { 0 };
	struct policy *p = NULL;
	struct policy_ctx c = base_ctx();

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_policy.XXXXXX");
	CHECK(mkdtemp(tmpdir), "mkdtemp");
	snprintf(dir, sizeof(dir), "%s/info", tmpdir);
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/python3.11.list", dir);
	write_file(path, "/.\n/usr\n/usr/bin/python3.11\n/bin/legacy\n");
	snprintf(path, sizeof(path), "%s/python3.11.md5sums", dir);
	write_file(path, "/usr/bin/evil\n");
	o.dpkg_info_dir = dir;
	snprintf(y, sizeof(y), "default: allow\nrules:\n  - name: unpackaged\n    when: { packaged: false, provider: openai }\n    action: block\n");
	CHECK(policy_parse("t.yaml", y, strlen(y), &o, &p, &last_errs) == 0, "load: %s", last_errs);
	CHECK(!strcmp(decide(p, &c), "default"), "packaged python3.11 should pass");
	c.exe = "/usr/bin/evil";
	CHECK(!strcmp(decide(p, &c), "unpackaged"), "exe only in a non-.list file is not packaged");
	c.exe = "/usr/bin/legacy";
	CHECK(!strcmp(decide(p, &c), "default"), "merged-/usr: /usr/bin/legacy listed as /bin/legacy");
	c.exe = "/usr/bin/python3.11";
	c.script = "/home/alice/agent.py";
	CHECK(!strcmp(decide(p, &c), "unpackaged"), "packaged interpreter running an unpackaged script is unpackaged");
	CHECK(policy_path_packaged(p, "/usr/bin/python3.11") && !policy_path_packaged(p, "/home/alice/agent.py"),
	      "policy_path_packaged");
	policy_unref(p);
	snprintf(y, sizeof(y), "default: allow\nrules:\n  - name: packaged\n    when: { packaged: true }\n    action: alert\n");
	CHECK(policy_parse("t.yaml", y, strlen(y), &o, &p, &last_errs) == 0, "load: %s", last_errs);
	c.script = NULL;
	CHECK(!strcmp(decide(p, &c), "packaged"), "packaged: true matches a packaged exe");
	policy_unref(p);
}

TEST(first_match_wins)
{
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	struct policy *p = load("default: block\n"
				"rules:\n"
				"  - name: a\n"
				"    when: { user: alice }\n"
				"    action: allow\n"
				"  - name: b\n"
				"    when: { provider: openai }\n"
				"    action: block\n");
	CHECK(p, "load: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(!strcmp(d.rule, "a") && d.action == POLICY_ALLOW && d.rule_line == 3,
	      "alice should hit the first rule a (line 3), got %s line %d", d.rule, d.rule_line);
	c.user = "bob";
	policy_eval(p, &c, &d);
	CHECK(!strcmp(d.rule, "b") && d.action == POLICY_BLOCK && d.status == 403,
	      "bob should fall to b, got %s", d.rule);
	CHECK(strstr(d.message, "'b'"), "block message names the rule: %s", d.message);
	c.provider = "anthropic";
	policy_eval(p, &c, &d);
	CHECK(d.is_default && d.action == POLICY_BLOCK, "nothing matches: default block");
	policy_unref(p);
}

TEST(monitor_mode_rule_and_global)
{
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	struct policy *p = load("rules:\n"
				"  - name: watch\n"
				"    when: { user: alice }\n"
				"    action: block\n"
				"    mode: monitor\n"
				"  - name: hard\n"
				"    when: { user: bob }\n"
				"    action: block\n");
	CHECK(p, "load: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(d.action == POLICY_BLOCK && d.monitor && d.enforce == POLICY_ALERT && d.status == 0,
	      "monitor rule: decide block, enforce alert (action %d enforce %d status %d)", d.action, d.enforce, d.status);
	CHECK(strstr(d.message, "monitor") && strstr(d.message, "watch"), "message: %s", d.message);
	c.user = "bob";
	policy_eval(p, &c, &d);
	CHECK(!d.monitor && d.enforce == POLICY_BLOCK && d.status == 403, "enforced rule still blocks");
	policy_unref(p);
	p = load("mode: monitor\ndefault: block\nrules:\n  - name: r\n    when: { finding: EMAIL }\n    action: redact\n");
	CHECK(p && policy_global_monitor(p), "global monitor: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(d.is_default && d.action == POLICY_BLOCK && d.monitor && d.enforce == POLICY_ALERT && !d.status,
	      "global monitor turns default block into alert");
	uint32_t counts[FINDING__COUNT] = { [FINDING_EMAIL] = 1 };
	c.counts = counts;
	policy_eval(p, &c, &d);
	CHECK(d.action == POLICY_REDACT && d.enforce == POLICY_ALERT, "global monitor: redact is only logged");
	policy_unref(p);
}

TEST(redaction_modes)
{
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	uint32_t counts[FINDING__COUNT] = { [FINDING_EMAIL] = 1 };
	struct policy *p = load("redaction: { default: hash, CREDIT_CARD: tokenize }\n"
				"rules:\n"
				"  - name: pii\n"
				"    when: { finding: [EMAIL, CREDIT_CARD, PHONE] }\n"
				"    action: redact\n"
				"    redact: { EMAIL: mask }\n"
				"  - name: all\n"
				"    when: { finding: '@all' }\n"
				"    action: redact\n");
	CHECK(p, "load: %s", last_errs);
	c.counts = counts;
	policy_eval(p, &c, &d);
	CHECK(!strcmp(d.rule, "pii") && d.action == POLICY_REDACT, "pii rule");
	CHECK(d.redact[FINDING_EMAIL] == REDACT_MASK, "rule map: EMAIL mask, got %d", d.redact[FINDING_EMAIL]);
	CHECK(d.redact[FINDING_CREDIT_CARD] == REDACT_TOKENIZE, "policy map: CREDIT_CARD tokenize");
	CHECK(d.redact[FINDING_PHONE] == REDACT_HASH, "policy default: PHONE hash");
	CHECK(d.redact[FINDING_IBAN] == REDACT_KEEP, "IBAN is not in the rule's finding list: keep");
	counts[FINDING_EMAIL] = 0;
	counts[FINDING_IBAN] = 1;
	policy_eval(p, &c, &d);
	CHECK(!strcmp(d.rule, "all") && d.redact[FINDING_IBAN] == REDACT_HASH, "@all rule redacts IBAN with hash");
	policy_unref(p);
	p = load("rules:\n  - name: r\n    when: { finding: EMAIL }\n    action: redact\n");
	CHECK(p, "load");
	counts[FINDING_EMAIL] = 1;
	policy_eval(p, &c, &d);
	CHECK(d.redact[FINDING_EMAIL] == REDACT_PLACEHOLDER, "default mode is redact (placeholder)");
	policy_unref(p);
}

/* errs has a line "t.yaml:LINE: ...needle..." */
static int has_err(int line, const char *needle)
{
	char pre[32];
	const char *s = last_errs;
	snprintf(pre, sizeof(pre), "t.yaml:%d: ", line);
	while (s && (s = strstr(s, pre))) {
		const char *eol = strchr(s, '\n');
		const char *hit = strstr(s, needle);
		if (hit && (!eol || hit < eol))
			return 1;
		s += strlen(pre);
	}
	return 0;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

TEST(errors_all_reported_with_lines)
{
	const char *y =
		"default: allow\n"                          /* 1 */
		"colour: blue\n"                            /* 2 unknown top key */
		"rules:\n"                                  /* 3 */
		"  - name: a\n"                             /* 4 */
		"    when: { finding: [EMAIL, SSN_US] }\n"  /* 5 unknown finding */
		"    action: block\n"                       /* 6 */
		"  - name: b\n"                             /* 7 */
		"    when:\n"                               /* 8 */
		"      exe: '/usr/bin/[py'\n"               /* 9 bad glob */
		"      colour: red\n"                       /* 10 unknown condition */
		"    action: explode\n"                     /* 11 bad action */
		"  - name: c\n"                             /* 12 */
		"    when:\n"                               /* 13 */
		"      model: gpt-4o-mini\n"                /* 14 */
		"      model_not: 'gpt-4o*'\n"              /* 15 contradiction */
		"    action: block\n"                       /* 16 */
		"    colour: green\n";                      /* 17 unknown rule key */
	CHECK(!load(y), "a broken policy must not load");
	CHECK(has_err(2, "unknown key 'colour'"), "top-level unknown key at line 2: %s", last_errs);
	CHECK(has_err(5, "SSN_US"), "unknown finding type at line 5: %s", last_errs);
	CHECK(has_err(9, "unbalanced '['"), "bad glob at line 9: %s", last_errs);
	CHECK(has_err(10, "unknown condition 'colour'"), "unknown condition at line 10: %s", last_errs);
	CHECK(has_err(11, "action"), "bad action at line 11: %s", last_errs);
	CHECK(has_err(15, "never match"), "model/model_not contradiction at line 15: %s", last_errs);
	CHECK(has_err(17, "unknown key 'colour'"), "unknown rule key at line 17: %s", last_errs);
	CHECK(count_lines(last_errs) == 7, "exactly 7 mistakes expected, got %d:\n%s", count_lines(last_errs), last_errs);
}

TEST(errors_shadowed_rules)
{
	const char *y =
		"rules:\n"                                            /* 1 */
		"  - name: openai\n"                                  /* 2 */
		"    when: { provider: openai }\n"                    /* 3 */
		"    action: alert\n"                                 /* 4 */
		"  - name: openai-alice\n"                            /* 5 shadowed (narrower) */
		"    when: { provider: openai, user: alice }\n"       /* 6 */
		"    action: block\n"                                 /* 7 */
		"  - name: gpt\n"                                     /* 8 */
		"    when: { model: 'gpt-*' }\n"                      /* 9 */
		"    action: block\n"                                 /* 10 */
		"  - name: gpt4\n"                                    /* 11 shadowed by glob */
		"    when: { model: [gpt-4o, gpt-4o-mini] }\n"        /* 12 */
		"    action: allow\n"                                 /* 13 */
		"  - name: secrets\n"                                 /* 14 */
		"    when: { finding: [AWS_ACCESS_KEY, PRIVATE_KEY] }\n" /* 15 */
		"    action: block\n"                                 /* 16 */
		"  - name: aws\n"                                     /* 17 shadowed (subset) */
		"    when: { finding: AWS_ACCESS_KEY, injection_score: 0.5 }\n" /* 18 */
		"    action: block\n"                                 /* 19 */
		"  - name: everyone\n"                                /* 20 */
		"    action: block\n"                                 /* 21 */
		"  - name: after-everyone\n"                          /* 22 shadowed by empty when */
		"    when: { user: bob }\n"                           /* 23 */
		"    action: allow\n";                                /* 24 */
	CHECK(!load(y), "shadowed rules must be refused");
	CHECK(has_err(5, "shadowed by the earlier rule 'openai'"), "openai-alice: %s", last_errs);
	CHECK(has_err(11, "shadowed by the earlier rule 'gpt'"), "gpt4: %s", last_errs);
	CHECK(has_err(17, "shadowed by the earlier rule 'secrets'"), "aws: %s", last_errs);
	CHECK(has_err(22, "shadowed by the earlier rule"), "after-everyone: %s", last_errs);
	CHECK(count_lines(last_errs) == 4, "exactly 4 shadowed rules, got:\n%s", last_errs);

	/* not shadowed: narrower first, or disjoint */
	struct policy *p = load("rules:\n"
				"  - name: alice\n    when: { provider: openai, user: alice }\n    action: block\n"
				"  - name: openai\n    when: { provider: openai }\n    action: alert\n"
				"  - name: mini\n    when: { model: gpt-4o-mini }\n    action: allow\n"
				"  - name: other\n    when: { model_not: gpt-4o-mini }\n    action: block\n"
				"  - name: big\n    when: { finding: EMAIL, request_bytes: 1M }\n    action: block\n"
				"  - name: small\n    when: { finding: EMAIL, request_bytes: 1k }\n    action: alert\n");
	CHECK(p, "a narrower rule before a broader one is fine: %s", last_errs);
	policy_unref(p);
}

TEST(errors_misc_sections)
{
	const char *y =
		"default: redact\n"                               /* 1 default cannot be redact */
		"lists:\n"                                        /* 2 */
		"  secrets: [AWS_ACCESS_KEY, NOPE]\n"             /* 3 unknown type in list */
		"  all: [EMAIL]\n"                                /* 4 built-in name */
		"detectors:\n"                                    /* 5 */
		"  - name: bad-re\n"                              /* 6 */
		"    regex: '(unclosed'\n"                        /* 7 bad regex */
		"  - name: EMAIL\n"                               /* 8 clash with type */
		"    keywords: [x]\n"                             /* 9 */
		"  - name: both\n"                                /* 10 regex and keywords */
		"    regex: a\n"                                  /* 11 */
		"    keywords: [b]\n"                             /* 12 */
		"budgets:\n"                                      /* 13 */
		"  - name: daily\n"                               /* 14 */
		"    per: planet\n"                               /* 15 bad per */
		"    tokens: lots\n"                              /* 16 bad count */
		"    window: fortnight\n"                         /* 17 bad window */
		"rules:\n"                                        /* 18 */
		"  - name: r\n"                                   /* 19 */
		"    when: { provider: openia, finding: '@nolist', time: { hours: '25:00-26:00' } }\n" /* 20 */
		"    action: block\n";                            /* 21 */
	CHECK(!load(y), "must not load");
	CHECK(has_err(1, "default"), "default redact: %s", last_errs);
	CHECK(has_err(3, "NOPE"), "list member: %s", last_errs);
	CHECK(has_err(4, "built-in"), "builtin list name: %s", last_errs);
	CHECK(has_err(7, "bad regex"), "regex: %s", last_errs);
	CHECK(has_err(8, "built-in finding type"), "detector named like a type: %s", last_errs);
	CHECK(has_err(10, "exactly one of regex or keywords"), "regex+keywords: %s", last_errs);
	CHECK(has_err(15, "per"), "per: %s", last_errs);
	CHECK(has_err(16, "tokens"), "tokens: %s", last_errs);
	CHECK(has_err(17, "window"), "window: %s", last_errs);
	CHECK(has_err(20, "unknown provider 'openia'"), "provider: %s", last_errs);
	CHECK(has_err(20, "@nolist"), "unknown list: %s", last_errs);
	CHECK(has_err(20, "time.hours"), "hours: %s", last_errs);
	CHECK(!load("rules:\n  - when: { user: a }\n    action: block\n") && has_err(2, "missing name"),
	      "rule without name: %s", last_errs);
	CHECK(!load("rules:\n  - name: x\n    action: block\n    when: {user: a}\n  - name: x\n    when: {user: b}\n    action: block\n") &&
	      has_err(5, "duplicate rule name"), "duplicate rule: %s", last_errs);
	CHECK(!load("rules: [\n") && last_errs && strstr(last_errs, "t.yaml:"), "YAML syntax error has file:line: %s", last_errs);
}

/* Budgets in currency: `cost` needs the policy's own `pricing:` table
 * (the collector's syntax), and each mistake names its line. */
TEST(errors_cost_budgets_and_pricing)
{
	CHECK(!load("budgets:\n  - { name: spend, cost: 25, window: day }\n") &&
		      has_err(2, "cost needs a pricing: table"),
	      "cost without pricing: %s", last_errs);
	CHECK(!load("pricing:\n  - { provider: openai, model: x, input: 1, output: 1 }\n"
		    "budgets:\n  - { name: spend, cost: lots, window: day }\n") && has_err(4, "budget: cost: expected an amount"),
	      "bad amount: %s", last_errs);
	CHECK(!load("pricing:\n  - { provider: openai, model: x, input: 1, output: 1 }\n"
		    "budgets:\n  - { name: spend, cost: 1, tokens: 5, window: day }\n") &&
		      has_err(4, "give one of tokens, requests, requests_per_minute, cost"),
	      "cost and tokens: %s", last_errs);
	CHECK(!load("pricing:\n  - { provider: openai, model: x, input: -1, output: 1 }\n") &&
		      has_err(2, "a price is a number"),
	      "pricing error with its line: %s", last_errs);
	CHECK(!load("pricing:\n  - { provider: openai, input: 1, output: 1 }\n") &&
		      has_err(2, "a price needs provider and model"),
	      "price without model: %s", last_errs);
	CHECK(!load("pricing: {}\n") && has_err(1, "pricing must be a list"), "pricing not a list: %s", last_errs);
	struct policy *p = load("pricing:\n  - { provider: openai, model: \"gpt-*\", input: 1, output: 1 }\n"
				"budgets:\n  - { name: spend, per: user, cost: 2.50, window: day }\n");
	CHECK(p && policy_budget_count(p) == 1 && policy_budget_get(p, 0)->kind == BUDGET_COST &&
		      policy_budget_get(p, 0)->limit == 2500000,
	      "cost 2.50 kept as 2500000 millionths: %s", last_errs);
	policy_unref(p);
}

TEST(hash_stable_and_sensitive)
{
	const char *a = "default: allow\nrules:\n  - name: r\n    when: { user: bob }\n    action: block\n";
	const char *b = "default: allow\nrules:\n  - name: r\n    when: { user: eve }\n    action: block\n";
	struct policy *p1 = load(a), *p2 = load(a), *p3 = load(b);
	CHECK(p1 && p2 && p3, "load");
	CHECK(strlen(policy_hash(p1)) == 64, "hash is 64 hex digits");
	CHECK(!strcmp(policy_hash(p1), policy_hash(p2)), "same bytes, same hash");
	CHECK(strcmp(policy_hash(p1), policy_hash(p3)), "different policy, different hash");
	policy_unref(p1);
	policy_unref(p2);
	policy_unref(p3);
}

TEST(reload_with_broken_file_keeps_old_policy)
{
	char path[128];
	struct policy_holder h;
	struct policy *p, *held;
	struct policy_ctx c = base_ctx();
	char *errs = NULL;

	snprintf(path, sizeof(path), "/tmp/test_policy_reload.%d.yaml", (int)getpid());
	write_file(path, "default: allow\nrules:\n  - name: no-alice\n    when: { user: alice }\n    action: block\n");
	CHECK(policy_load(path, NULL, &p, &errs) == 0, "first load: %s", errs);
	policy_holder_init(&h, p);
	held = policy_holder_get(&h);    /* a worker thread evaluating */
	const char *old_hash = policy_hash(held);

	write_file(path, "default: allow\nrules:\n  - name: broken\n    when: { usr: alice }\n    action: block\n");
	CHECK(policy_holder_reload(&h, path, NULL, &errs) == -EINVAL, "broken reload must fail");
	CHECK(errs && strstr(errs, ":4: "), "reload error names the line: %s", errs);
	free(errs);
	errs = NULL;
	p = policy_holder_get(&h);
	CHECK(p == held && !strcmp(decide(p, &c), "no-alice"), "old policy still enforced after a broken reload");
	policy_unref(p);

	write_file(path, "default: block\n");
	CHECK(policy_holder_reload(&h, path, NULL, &errs) == 0, "good reload: %s", errs);
	p = policy_holder_get(&h);
	CHECK(p != held && !strcmp(decide(p, &c), "default"), "new policy in force");
	policy_unref(p);
	/* the worker still holds the old object: usable until it unrefs */
	CHECK(!strcmp(decide(held, &c), "no-alice") && !strcmp(policy_hash(held), old_hash),
	      "old object remains valid for its holder");
	policy_unref(held);
	policy_holder_destroy(&h);
	unlink(path);
}

TEST(ctx_from_inspect_result)
{
	struct inspect_result r;
	struct inspect_span spans[2] = { { .type = FINDING_CUSTOM, .custom_id = 3 }, { .type = FINDING_EMAIL } };
	struct policy_ctx c = base_ctx();

	memset(&r, 0, sizeof(r));
	r.info.provider = PROVIDER_ANTHROPIC;
	snprintf(r.info.model, sizeof(r.info.model), "claude-3-5-sonnet");
	snprintf(r.info.tools[0], sizeof(r.info.tools[0]), "bash");
	r.info.ntools = 1;
	r.counts[FINDING_EMAIL] = 1;
	r.counts[FINDING_CUSTOM] = 1;
	r.injection_score = 0.8f;
	r.spans = spans;
	r.nspans = 2;
	policy_ctx_set_inspect(&c, &r);
	CHECK(!strcmp(c.provider, "anthropic") && !strcmp(c.model, "claude-3-5-sonnet"), "provider/model");
	CHECK(c.custom_hits == (1u << 3), "custom hits bitmask from spans: %llx", (unsigned long long)c.custom_hits);
	CHECK(c.ntools == 1 && !strcmp(c.tools[0], "bash"), "tools");
	CHECK(c.counts[FINDING_EMAIL] == 1 && c.injection_score > 0.79f, "counts and score");
}

TEST(example_policy_loads)
{
	struct policy *p = NULL;
	char *errs = NULL;
	int ret = policy_load("scripts/policy.example.yaml", NULL, &p, &errs);
	CHECK(ret == 0, "scripts/policy.example.yaml must be valid (run from the repo root): %d %s", ret, errs);
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	static const gid_t fin[] = { 0 };
	c.groups = fin;
	c.ngroups = 1;
	c.gid = 0;
	c.exe = "/usr/bin/curl";
	policy_eval(p, &c, &d);
	(void)d;
	CHECK(policy_budget_count(p) >= 1, "example declares budgets");
	policy_unref(p);
}

/* The fast matcher for '*'/'?' patterns must agree with fnmatch(3),
 * including FNM_PATHNAME for exe and FNM_CASEFOLD for host. */
TEST(glob_matcher_agrees_with_fnmatch)
{
	static const char *const pats[] = { "*", "a*", "*b", "a*b", "a?c", "*a*b*c*", "gpt-4o*", "**x",
					    "a*a*a*b", "?", "/usr/*/py*", "/usr/bin/*", "/*", "*.openai.com",
					    "a[bc]d", "x\\*y" };
	static const char *const strs[] = { "a", "ab", "abc", "aXb", "aaaaab", "aaaa", "xaybzc", "gpt-4o-mini",
					    "gpt-4", "x", "xx", "/usr/bin/python3", "/usr/lib/x/python",
					    "/usr/bin/a/b", "API.OPENAI.COM", "a.openai.com", "abd", "x*y", "xay" };
	char y[512];
	struct policy_ctx c = base_ctx();
	static const struct { const char *cond; int flags; } kinds[] = {
		{ "model", 0 }, { "exe", FNM_PATHNAME }, { "host", FNM_CASEFOLD },
	};

	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
			struct policy *p;
			snprintf(y, sizeof(y), "rules:\n  - name: r\n    when: { %s: '%s' }\n    action: block\n",
				 kinds[k].cond, pats[i]);
			p = load(y);
			CHECK(p, "pattern %s: %s", pats[i], last_errs);
			for (size_t j = 0; j < sizeof(strs) / sizeof(strs[0]); j++) {
				c.model = c.exe = c.host = strs[j];
				int want = fnmatch(pats[i], strs[j], kinds[k].flags) == 0;
				int got = !strcmp(decide(p, &c), "r");
				if (want != got)
					policy_unref(p);
				CHECK(want == got, "%s '%s' vs '%s': fnmatch says %d, policy says %d", kinds[k].cond,
				      pats[i], strs[j], want, got);
			}
			policy_unref(p);
		}
}

TEST(unknown_group_is_a_warning_not_an_error)
{
	struct policy_ctx c = base_ctx();
	struct policy *p = load("rules:\n  - name: fin\n    when: { unix_group: [no-such-group-xyz, adm] }\n    action: block\n");
	CHECK(p, "an unknown group must not make the policy invalid: %s", last_errs);
	CHECK(strstr(policy_warnings(p), "t.yaml:3: warning: unix_group 'no-such-group-xyz'"),
	      "warning with file:line: %s", policy_warnings(p));
	CHECK(!strcmp(decide(p, &c), "fin"), "the known group in the same list still matches");
	policy_unref(p);
	p = load("default: allow\n");
	CHECK(p && !strcmp(policy_warnings(p), ""), "no warnings");
	struct policy_decision d;
	CHECK(policy_eval(NULL, &c, &d) == -EINVAL, "NULL policy is an error, not a crash");
	policy_unref(p);
}

TEST(answer_rules_are_chosen_apart_from_request_rules)
{
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	struct policy_answer a;
	struct policy *p = load("redaction: { EMAIL: tokenize }\n"
				"rules:\n"
				"  - name: alice-answers\n"
				"    when: { user: alice, output_finding: [EMAIL, PHONE] }\n"
				"    action: redact\n"
				"    redact: { PHONE: mask }\n"
				"  - name: everyone-answers\n"
				"    when: { output_finding: ['@all_pii'] }\n"
				"    action: redact\n"
				"  - name: block-all\n"
				"    action: block\n");
	CHECK(p, "load: %s", last_errs);
	policy_eval(p, &c, &d);
	CHECK(!strcmp(d.rule, "block-all"), "request decision must skip answer rules: %s", d.rule);
	CHECK(policy_eval_answer(p, &c, &a) == 1 && !strcmp(a.rule, "alice-answers") && !a.monitor, "answer rule");
	CHECK(a.redact[FINDING_EMAIL] == REDACT_PLACEHOLDER,
	      "tokenize inherited from redaction: falls back to the placeholder in answers (%d)", a.redact[FINDING_EMAIL]);
	CHECK(a.redact[FINDING_PHONE] == REDACT_MASK, "rule map: PHONE mask");
	CHECK(a.redact[FINDING_IBAN] == REDACT_KEEP, "types the rule does not name are kept");
	c.user = "bob";
	c.uid = 1001;
	CHECK(policy_eval_answer(p, &c, &a) == 1 && !strcmp(a.rule, "everyone-answers") &&
	      a.redact[FINDING_IBAN] == REDACT_PLACEHOLDER && a.redact[FINDING_AWS_ACCESS_KEY] == REDACT_KEEP,
	      "@all_pii answer rule for bob");
	policy_unref(p);
	p = load("rules:\n  - name: r\n    when: { finding: [EMAIL] }\n    action: redact\n");
	CHECK(p && policy_eval_answer(p, &c, &a) == 0 && !a.rule && !a.redact, "no answer rule: nothing to redact");
	policy_unref(p);
}

/* An answer rule with action warn: no redaction, the rule's types named. */
TEST(answer_rule_warn)
{
	struct policy *p = load("rules:\n  - name: coach\n    when: { output_finding: [EMAIL, PHONE] }\n    action: warn\n");
	struct policy_ctx c = base_ctx();
	struct policy_answer a;
	CHECK(p, "an answer rule with action warn does not load: %s", last_errs);
	CHECK(policy_eval_answer(p, &c, &a) == 1 && a.warn && !strcmp(a.rule, "coach"), "warn answer rule not found");
	CHECK(a.redact[FINDING_EMAIL] != REDACT_KEEP && a.redact[FINDING_PHONE] != REDACT_KEEP &&
		      a.redact[FINDING_US_SSN] == REDACT_KEEP,
	      "the rule's types are not the ones it names");
	policy_unref(p);
	p = load("rules:\n  - name: r\n    when: { output_finding: [EMAIL] }\n    action: redact\n");
	CHECK(p && policy_eval_answer(p, &c, &a) == 1 && !a.warn, "a redact answer rule reads as warn");
	policy_unref(p);
}

TEST(answer_rule_errors)
{
	const char *y =
		"rules:\n"                                             /* 1 */
		"  - name: a\n"                                        /* 2 */
		"    when: { output_finding: [EMAIL] }\n"              /* 3 */
		"    action: block\n"                                  /* 4 action must be redact or warn */
		"  - name: b\n"                                        /* 5 */
		"    when: { output_finding: [EMAIL] }\n"              /* 6 */
		"    action: redact\n"                                 /* 7 */
		"    redact: { EMAIL: tokenize }\n"                    /* 8 */
		"  - name: c\n"                                        /* 9 */
		"    when: { output_finding: [NOT_A_TYPE] }\n"         /* 10 */
		"    action: redact\n";                                /* 11 */
	CHECK(!load(y), "a broken policy must not load");
	CHECK(has_err(4, "must be redact or warn"), "block on an answer rule at line 4: %s", last_errs);
	CHECK(has_err(5, "tokenize cannot apply"), "tokenize in an answer rule (rule b, line 5): %s", last_errs);
	CHECK(has_err(10, "NOT_A_TYPE"), "unknown type at line 10: %s", last_errs);
	/* request and answer rules do not shadow each other; answer rules do */
	struct policy *p = load("rules:\n  - name: all\n    action: block\n"
				"  - name: ans\n    when: { output_finding: [EMAIL] }\n    action: redact\n");
	CHECK(p, "an answer rule after a catch-all request rule is not shadowed: %s", last_errs);
	policy_unref(p);
	CHECK(!load("rules:\n  - name: a1\n    when: { output_finding: [EMAIL] }\n    action: redact\n"
		    "  - name: a2\n    when: { output_finding: [PHONE], user: bob }\n    action: redact\n") &&
	      has_err(5, "shadowed"), "a later answer rule covered by an earlier one: %s", last_errs);
}

/* MCP conditions match only MCP exchanges; tool covers the MCP tool called. */
TEST(mcp_conditions)
{
	static const char tool[1][PROVIDER_TOOL_NAME_MAX] = { "exec_command" };
	struct policy_ctx c = base_ctx();
	CHECK(matches("{ mcp_server: ['*.example.com'] }", &c) == 0, "an LLM request matched mcp_server");
	CHECK(matches("{ mcp_method: ['*'] }", &c) == 0, "an LLM request matched mcp_method");
	c.mcp_server = "Mcp.Example.com";
	c.mcp_method = "tools/call";
	c.tools = tool;
	c.ntools = 1;
	CHECK(matches("{ mcp_server: ['*.example.com'], mcp_method: [tools/call], tool: ['exec_*'] }", &c) == 1,
	      "MCP call not matched (host globs are caseless)");
	CHECK(matches("{ mcp_server_not: [mcp.example.com] }", &c) == 0, "mcp_server_not");
	CHECK(matches("{ mcp_method: [resources/read] }", &c) == 0, "mcp_method");
}

/* A stdio MCP launch (mcp_rules_only): rules that do not name mcp_server
 * or mcp_method, and the default, never decide it. */
TEST(stdio_launches_see_only_mcp_rules)
{
	struct policy *p = load("version: 1\ndefault: block\nrules:\n"
				"  - name: alice-blocked\n    when: { user: [alice] }\n    action: block\n"
				"  - name: no-fs\n    when: { mcp_server: ['@modelcontextprotocol/server-filesystem'],"
				" mcp_method: [stdio_launch] }\n    action: block\n"
				"  - name: watch-docker\n    when: { mcp_server: ['mcp/*'] }\n    action: alert\n");
	CHECK(p, "load: %s", last_errs);
	struct policy_ctx c = { .user = "alice", .uid = 1000, .gid = 1000, .exe = "/usr/bin/node", .comm = "npx",
				.mcp_server = "@modelcontextprotocol/server-filesystem", .mcp_method = "stdio_launch",
				.now = 1700000000, .mcp_rules_only = true };
	struct policy_decision d;
	CHECK(policy_eval(p, &c, &d) == 0 && d.enforce == POLICY_BLOCK && !strcmp(d.rule, "no-fs"),
	      "filesystem server: %s", d.rule);
	c.mcp_server = "mcp/github";
	CHECK(policy_eval(p, &c, &d) == 0 && d.enforce == POLICY_ALERT && !strcmp(d.rule, "watch-docker"),
	      "docker image: %s", d.rule);
	c.mcp_server = "mcp-server-git";
	CHECK(policy_eval(p, &c, &d) == 0 && d.enforce == POLICY_ALLOW && d.is_default,
	      "no MCP rule matches: the launch is allowed whatever the default (got %s)", d.rule);
	/* The same identity on an LLM request: the user rule applies. */
	c.mcp_rules_only = false;
	c.mcp_server = c.mcp_method = NULL;
	CHECK(policy_eval(p, &c, &d) == 0 && !strcmp(d.rule, "alice-blocked"), "LLM request: %s", d.rule);
	policy_unref(p);
}

TEST(warn_action_refuses_with_the_rules_message)
{
	struct policy *p = load("version: 1\nrules:\n  - name: coach\n    when: { model: [gpt-4o] }\n"
				"    action: warn\n    message: not approved here\n");
	CHECK(p, "load: %s", last_errs);
	struct policy_ctx c = base_ctx();
	struct policy_decision d;
	policy_eval(p, &c, &d);
	CHECK(d.action == POLICY_WARN && d.enforce == POLICY_WARN && d.status == 403, "action %d status %d", d.action,
	      d.status);
	CHECK(strstr(d.message, "not approved here") && strstr(d.message, "coach"), "message %s", d.message);
	CHECK(!strcmp(policy_action_name(POLICY_WARN), "warn"), "name");
	policy_unref(p);
	CHECK(!load("version: 1\ndefault: warn\n"), "default: warn accepted");
	CHECK(policy_has_tool_rules(p = load("version: 1\nrules:\n  - name: t\n    when: { tool_not: [a] }\n"
					     "    action: block\n")), "tool_not rule not seen");
	policy_unref(p);
	CHECK(!policy_has_tool_rules(p = load("version: 1\nrules:\n  - name: t\n    when: { model: [a] }\n"
					      "    action: block\n")), "a model rule counted as a tool rule");
	policy_unref(p);
	/* a policy decides INVALID_JSON itself only when a rule names it */
	CHECK(policy_names_finding(p = load("version: 1\nrules:\n  - name: j\n    when: { finding: [EMAIL, INVALID_JSON] }\n"
					    "    action: alert\n"), FINDING_INVALID_JSON), "INVALID_JSON rule not seen");
	policy_unref(p);
	CHECK(!policy_names_finding(p = load("version: 1\nrules:\n  - name: s\n    when: { finding: ['@all_secrets'] }\n"
					     "    action: block\n"), FINDING_INVALID_JSON), "@all_secrets taken to name INVALID_JSON");
	CHECK(policy_names_finding(p, FINDING_AWS_ACCESS_KEY), "a group's member not named");
	policy_unref(p);
}

/* rejected_ca: after a client refused the CA, the first entry matching the
 * program and host decides block or passthrough (and for how long); no
 * match leaves it to the agent's on_rejected_ca. */
TEST(rejected_ca_first_match_by_exe_and_host)
{
	struct policy *p = load("version: 1\n"
				"rejected_ca:\n"
				"  - name: pinned-tool\n"
				"    when: { exe: [/opt/tool/bin/*], host: [api.openai.com] }\n"
				"    action: passthrough\n"
				"    ttl: 30m\n"
				"  - name: no-curl\n"
				"    when: { exe: [/usr/bin/curl] }\n"
				"    action: block\n"
				"  - name: rest-of-openai\n"
				"    when: { host: [\"*.openai.com\"], user_not: [root] }\n"
				"    action: passthrough\n");
	CHECK(p, "load: %s", last_errs);
	CHECK(policy_rejected_ca_count(p) == 3, "count %zu", policy_rejected_ca_count(p));
	struct policy_ctx c = base_ctx();
	struct policy_rejca d;

	c.exe = "/opt/tool/bin/x";
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 1 && d.passthrough && d.ttl_ms == 1800000 &&
	      !strcmp(d.rule, "pinned-tool") && d.line == 3, "exe+host: %s %d %u", d.rule, d.passthrough, d.ttl_ms);
	c.host = "api.anthropic.com";   /* same program, another host: no entry */
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 0 && !d.rule, "another host matched %s", d.rule);
	c.exe = "/usr/bin/curl";        /* order: no-curl before rest-of-openai */
	c.host = "api.openai.com";
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 1 && !d.passthrough && !strcmp(d.rule, "no-curl"), "curl: %s",
	      d.rule);
	c.exe = "/usr/bin/node";        /* ttl absent: the agent's rejected_ca_ttl */
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 1 && d.passthrough && d.ttl_ms == 0 &&
	      !strcmp(d.rule, "rest-of-openai"), "node: %s %u", d.rule, d.ttl_ms);
	c.user = "root";
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 0, "user_not ignored: %s", d.rule);
	c.exe = NULL;                   /* an unknown program never matches an exe condition */
	c.user = "alice";
	c.host = "api.openai.com";
	CHECK(policy_eval_rejected_ca(p, &c, &d) == 1 && !strcmp(d.rule, "rest-of-openai"), "unknown exe: %s", d.rule);
	/* The request rules are not consulted, nor the reverse. */
	CHECK(!strcmp(decide(p, &c), "default"), "a rejected_ca entry decided a request: %s", decide(p, &c));
	policy_unref(p);
	/* No entries, no policy: the agent's setting. */
	CHECK((p = load("version: 1\n")) && policy_eval_rejected_ca(p, &c, &d) == 0 && !d.passthrough, "empty policy");
	policy_unref(p);
	CHECK(policy_eval_rejected_ca(NULL, &c, &d) == 0, "no policy");
}

TEST(rejected_ca_errors_name_file_and_line)
{
	CHECK(!load("version: 1\n"                                 /* 1 */
		    "rejected_ca:\n"                               /* 2 */
		    "  - name: a\n"                                /* 3 */
		    "    when: { exe: [/x], model: [gpt-4o] }\n"   /* 4 */
		    "    action: allow\n"                          /* 5 */
		    "  - name: b\n"                                /* 6 */
		    "    action: passthrough\n"                    /* 7 */
		    "    ttl: 2d\n"                                /* 8 */
		    "  - name: c\n"                                /* 9 */
		    "    action: block\n"                          /* 10 */
		    "    ttl: 1h\n"                                /* 11 */
		    "    colour: red\n"                            /* 12 */
		    "  - when: { finding: [EMAIL] }\n"             /* 13 */
		    "    action: passthrough\n"                    /* 14 */
		    "  - name: a\n"                                /* 15 */
		    "    when: { host: [x.example] }\n"            /* 16 */
		    "    ttl: soon\n"),                            /* 17 */
	      "a broken rejected_ca list loaded");
	CHECK(has_err(4, "unknown rejected_ca condition 'model'"), "model condition: %s", last_errs);
	CHECK(has_err(5, "action must be block or passthrough"), "action: %s", last_errs);
	CHECK(has_err(8, "ttl must be a duration from 1ms to 24h"), "ttl 2d: %s", last_errs);
	CHECK(has_err(11, "only meaningful with action: passthrough"), "ttl with block: %s", last_errs);
	CHECK(has_err(12, "unknown key 'colour'"), "unknown key: %s", last_errs);
	CHECK(has_err(13, "missing name") && has_err(13, "unknown rejected_ca condition 'finding'"), "finding: %s",
	      last_errs);
	CHECK(has_err(15, "duplicate name 'a' (first at line 3)") && has_err(15, "missing action"), "dup: %s",
	      last_errs);
	CHECK(has_err(17, "ttl must be a duration"), "ttl soon: %s", last_errs);
	/* b (any program, any host) covers c: c can never match. */
	CHECK(has_err(9, "rejected_ca 'c' can never match: shadowed by the earlier entry 'b' (line 6)"), "shadow: %s",
	      last_errs);
	CHECK(!load("version: 1\nrejected_ca: { name: a }\n") && has_err(2, "rejected_ca: expected a list"), "map: %s",
	      last_errs);
	CHECK(!load("version: 1\nrejected_ca:\n  - passthrough\n") && has_err(3, "each entry is a map"), "scalar: %s",
	      last_errs);
}
