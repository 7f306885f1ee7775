/* policy: `vigil policy check FILE...` and `vigil policy explain`, the
 * admin's tools for the policy file before it reaches the agents.
 *
 * check loads each file exactly as the agent does (agent/policy/policy.c), prints
 * every mistake as "file:line: reason" and exits 2 if there was any; it also
 * compiles the custom detectors with the agent's inspector so a regex that
 * Hyperscan refuses is caught here, not at reload.
 *
 * explain is a dry run: it inspects a request body with the policy's
 * detectors and the same inspector the agent uses, evaluates the policy
 * for the identity given on the command line, and prints the decision, the
 * rule, the findings (types and counts) and the budgets that would count
 * the request. With --rejected-ca it says instead what the agent does
 * after that program's client refused the interception CA for that host
 * (the policy's rejected_ca: entry, or the agent's on_rejected_ca). Must never: send anything anywhere, print matched values
 * (only finding types and counts), or touch budget state. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "content/inspect.h"
#include "proxy/jsonrpc.h"
#include "content/mcplaunch.h"
#include "policy/policy.h"

#define MAX_BODY (64u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vigil policy check [--dpkg-info DIR] FILE...\n"
		"       vigil policy explain --policy FILE --request BODY.json [options]\n"
		"       vigil policy explain --policy FILE --rejected-ca --exe PATH --host HOST [options]\n\n"
		"check: validate policy files; prints FILE:LINE: reason for every mistake\n"
		"       and exits 2 if there is any, 0 if all are valid.\n\n"
		"explain: dry-run one request (nothing is sent). Options:\n"
		"  --policy FILE        the policy to evaluate\n"
		"  --request FILE       the request body (JSON as the client sends it; - = stdin)\n"
		"  --user NAME          user (uid, gid and groups from the passwd/group databases)\n"
		"  --group NAME         an extra unix group for the user (repeatable)\n"
		"  --exe PATH           executable (/proc/PID/exe)\n"
		"  --script PATH        script run by an interpreter (argv[1])\n"
		"  --comm NAME          process name (default: basename of --exe)\n"
		"  --cgroup PATH        cgroup v2 path (e.g. /system.slice/app.service)\n"
		"  --host HOST          SNI / Host (default api.openai.com)\n"
		"  --path PATH          request path (default /v1/chat/completions)\n"
		"  --mcp-server HOST    the request is a JSON-RPC message to this MCP server\n"
		"                       (conditions mcp_server, mcp_method, tool = the tool called)\n"
		"  --stdio-launch CMD   instead of a request: a local MCP server launched with the\n"
		"                       command line CMD (words split on spaces), decided as the\n"
		"                       agent decides launches (mcp_server = the package,\n"
		"                       mcp_method = stdio_launch; only rules naming them apply)\n"
		"  --rejected-ca        instead of a request: what follows a refusal of the\n"
		"                       interception CA by --exe for --host (the rejected_ca:\n"
		"                       entry that decides, block or passthrough, and its ttl)\n"
		"  --time WHEN          unix seconds or YYYY-MM-DDTHH:MM[:SS][Z] (default now)\n"
		"  --dpkg-info DIR      dpkg file lists for `packaged:` (default /var/lib/dpkg/info)\n");
}

static int print_load_errors(const char *file, int ret, char *errs)
{
	if (errs && *errs)
		fputs(errs, stderr);
	else
		fprintf(stderr, "%s:0: %s\n", file, strerror(-ret));
	free(errs);
	return CLI_EXIT_USAGE;
}

/* Compile the detectors as the agent will (Hyperscan may refuse a regex
 * that its parser accepted). */
static int check_detectors(const char *file, struct policy *p)
{
	size_t n;
	const struct inspect_custom *c = policy_detectors(p, &n);
	char err[512] = "";
	struct inspector *ins = inspector_new(c, n, err, sizeof(err));

	if (!ins) {
		fprintf(stderr, "%s:0: detectors: %s\n", file, err[0] ? err : "cannot compile");
		return -EINVAL;
	}
	inspector_unref(ins);
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dpkg-info", required_argument, NULL, 'd' },
		{ "rejected-ca", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct policy_load_opts lo = { 0 };
	int c, rc = CLI_EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'd')
			lo.dpkg_info_dir = optarg;
		else if (c == 'h') {
			usage(stdout);
			return CLI_EXIT_OK;
		} else {
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "vigil policy check: no policy file given\n");
		return CLI_EXIT_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		struct policy *p = NULL;
		char *errs = NULL;
		int ret = policy_load(argv[i], &lo, &p, &errs);

		if (ret) {
			print_load_errors(argv[i], ret, errs);
			rc = CLI_EXIT_USAGE;
			continue;
		}
		fputs(policy_warnings(p), stderr);
		if (check_detectors(argv[i], p)) {
			rc = CLI_EXIT_USAGE;
		} else {
			size_t nd;
			policy_detectors(p, &nd);
			printf("%s: OK: %zu rules, %zu detectors, %zu budgets, %zu rejected_ca entries, default %s%s, hash %s\n",
			       argv[i], policy_rule_count(p), nd, policy_budget_count(p), policy_rejected_ca_count(p),
			       policy_action_name(policy_default(p)),
			       policy_global_monitor(p) ? " (monitor mode)" : "", policy_hash(p));
		}
		policy_unref(p);
	}
	return rc;
}

static char *read_body(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n + 65536 + 1 > cap) {
			char *nb;
			cap = cap ? cap * 2 : 65536 * 2;
			if (cap > MAX_BODY + 65536 * 2 || !(nb = realloc(buf, cap))) {
				free(buf);
				buf = NULL;
				errno = EFBIG;
				break;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, 65536, f);
		n += r;
		if (r == 0)
			break;
		if (n > MAX_BODY) {
			free(buf);
			buf = NULL;
			errno = EFBIG;
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

static int parse_time(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!errno && *s && !*end) {
		*out = v;
		return 0;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
	if (!end)
		return -EINVAL;
	if (*end == ':')
		end = strptime(end, ":%S", &tm);
	if (!end)
		return -EINVAL;
	if (*end == 'Z' && !end[1]) {
		*out = (int64_t)timegm(&tm);
		return 0;
	}
	if (*end)
		return -EINVAL;
	tm.tm_isdst = -1;
	*out = (int64_t)mktime(&tm);
	return 0;
}

static const char *redact_mode_name(uint8_t m)
{
	switch (m) {
	case REDACT_KEEP: return "keep";
	case REDACT_PLACEHOLDER: return "redact";
	case REDACT_MASK: return "mask";
	case REDACT_HASH: return "hash";
	case REDACT_TOKENIZE: return "tokenize";
	}
	return "?";
}

static const char *per_name(enum policy_budget_per p)
{
	switch (p) {
	case BUDGET_PER_USER: return "user";
	case BUDGET_PER_GROUP: return "unix_group";
	case BUDGET_PER_EXE: return "exe";
	case BUDGET_PER_ALL: return "all";
	}
	return "?";
}

/* The agent's classification of a launch (mcplaunch.c), from a command
 * line given as words separated by spaces. 0 if it starts an MCP server. */
static int explain_launch(const char *cmdline, struct mcplaunch *out)
{
	char buf[4096], comm[VIGIL_COMM_LEN];
	const char *argv[MCPLAUNCH_MAX_ARGS];
	size_t argc = 0;
	snprintf(buf, sizeof(buf), "%s", cmdline);
	for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && argc < MCPLAUNCH_MAX_ARGS; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	if (!argc)
		return -1;
	const char *b = strrchr(argv[0], '/');
	snprintf(comm, sizeof(comm), "%s", b ? b + 1 : argv[0]);   /* TASK_COMM_LEN */
	return mcplaunch_classify(comm, argv, argc, NULL, 0, out) ? 0 : -1;
}

/* What the agent does after ctx's program refused the CA for ctx's host:
 * no request has been read then, so only identity and host count (the
 * provider is the host's, as the agent sees it). */
static void explain_rejected_ca(const struct policy *p, const char *pol_path, struct policy_ctx *ctx)
{
	struct policy_rejca d;

	ctx->path = ctx->model = NULL;
	ctx->provider = ctx->host ? provider_name(provider_identify(ctx->host, NULL)) : NULL;
	printf("rejected_ca: exe=%s host=%s user=%s\n", ctx->exe ? ctx->exe : "(unknown)",
	       ctx->host ? ctx->host : "(unknown)", ctx->user ? ctx->user : "(unknown)");
	if (!policy_eval_rejected_ca(p, ctx, &d)) {
		printf("decision: the agent's on_rejected_ca (no rejected_ca entry matches)\nrule: on_rejected_ca\n");
		return;
	}
	printf("decision: %s\nrule: %s (%s:%d)\n", d.passthrough ? "passthrough" : "block", d.rule, pol_path, d.line);
	if (!d.passthrough)
		printf("effect: intercepted again at each connection, each refusal audited (client_rejected_interception)\n");
	else if (d.ttl_ms)
		printf("ttl: %ums\neffect: relayed undecrypted for the ttl after each refusal, audited as rejected_ca_exception\n",
		       d.ttl_ms);
	else
		printf("ttl: the agent's rejected_ca_ttl\neffect: relayed undecrypted for the ttl after each refusal, audited as rejected_ca_exception\n");
}

static int cmd_explain(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'P' },
		{ "request", required_argument, NULL, 'r' },
		{ "user", required_argument, NULL, 'u' },
		{ "group", required_argument, NULL, 'g' },
		{ "exe", required_argument, NULL, 'e' },
		{ "script", required_argument, NULL, 's' },
		{ "comm", required_argument, NULL, 'c' },
		{ "cgroup", required_argument, NULL, 'C' },
		{ "host", required_argument, NULL, 'H' },
		{ "path", required_argument, NULL, 'p' },
		{ "time", required_argument, NULL, 't' },
		{ "mcp-server", required_argument, NULL, 'M' },
		{ "stdio-launch", required_argument, NULL, 'L' },
		{ "dpkg-info", required_argument, NULL, 'd' },
		{ "rejected-ca", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pol_path = NULL, *req_path = NULL, *user = NULL, *exe = NULL, *script = NULL;
	const char *comm = NULL, *cgroup = NULL, *host = "api.openai.com", *path = "/v1/chat/completions";
	struct policy_load_opts lo = { 0 };
	gid_t groups[256];
	int ngroups = 0, c, rc = CLI_EXIT_FAIL, ret;
	int64_t now = (int64_t)time(NULL);
	struct policy *p = NULL;
	struct inspector *ins = NULL;
	struct inspect_scratch *scr = NULL;
	struct inspect_result res;
	struct policy_ctx ctx = { .uid = -1, .gid = -1 };
	struct policy_decision d;
	char *body = NULL, *errs = NULL, err[512] = "", commbuf[16];
	size_t blen = 0, ndet;
	const char *extra_groups[64];
	int nextra = 0;
	const char *mcp_server = NULL, *launch = NULL;
	bool rejca = false;
	struct jsonrpc_request rpc;
	struct mcplaunch ml;
	char rpc_tool[1][PROVIDER_TOOL_NAME_MAX];

	inspect_result_init(&res);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'P': pol_path = optarg; break;
		case 'r': req_path = optarg; break;
		case 'u': user = optarg; break;
		case 'g':
			if (nextra < 64)
				extra_groups[nextra++] = optarg;
			break;
		case 'e': exe = optarg; break;
		case 's': script = optarg; break;
		case 'c': comm = optarg; break;
		case 'C': cgroup = optarg; break;
		case 'H': host = optarg; break;
		case 'p': path = optarg; break;
		case 'M': mcp_server = optarg; break;
		case 'L': launch = optarg; break;
		case 'd': lo.dpkg_info_dir = optarg; break;
		case 'R': rejca = true; break;
		case 't':
			if (parse_time(optarg, &now)) {
				fprintf(stderr, "vigil policy explain: bad --time '%s'\n", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (!pol_path || (!!req_path + !!launch + rejca) != 1 || optind < argc) {
		fprintf(stderr, "vigil policy explain: --policy and one of --request, --stdio-launch or --rejected-ca are required\n");
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if ((ret = policy_load(pol_path, &lo, &p, &errs)))
		return print_load_errors(pol_path, ret, errs);
	if ((launch || rejca) && !(body = strdup(""))) {
		fprintf(stderr, "vigil policy explain: out of memory\n");
		goto out;
	}
	if (req_path && !(body = read_body(req_path, &blen))) {
		fprintf(stderr, "vigil policy explain: cannot read %s: %s\n", req_path, strerror(errno));
		goto out;
	}
	const struct inspect_custom *cu = policy_detectors(p, &ndet);
	if (!(ins = inspector_new(cu, ndet, err, sizeof(err))) || !(scr = inspect_scratch_new(ins))) {
		fprintf(stderr, "vigil policy explain: detectors: %s\n", err[0] ? err : "out of memory");
		goto out;
	}
	if (inspect_request(scr, host, path, body, blen, &res)) {
		fprintf(stderr, "vigil policy explain: inspection failed\n");
		goto out;
	}

	/* identity as the agent would resolve it */
	if (user) {
		struct passwd *pw = getpwnam(user);
		ctx.user = user;
		if (pw) {
			int n = 256;
			ctx.uid = pw->pw_uid;
			ctx.gid = pw->pw_gid;
			if (getgrouplist(user, pw->pw_gid, groups, &n) >= 0)
				ngroups = n;
		}
	}
	for (int i = 0; i < nextra && ngroups < 256; i++) {
		struct group *gr = getgrnam(extra_groups[i]);
		char *end;
		long v = strtol(extra_groups[i], &end, 10);
		if (gr)
			groups[ngroups++] = gr->gr_gid;
		else if (!*end && v >= 0)
			groups[ngroups++] = (gid_t)v;
		else
			fprintf(stderr, "vigil policy explain: warning: unknown group '%s'\n", extra_groups[i]);
	}
	ctx.groups = groups;
	ctx.ngroups = (size_t)ngroups;
	if (!comm && exe) {
		const char *b = strrchr(exe, '/');
		snprintf(commbuf, sizeof(commbuf), "%s", b ? b + 1 : exe);   /* TASK_COMM_LEN */
		comm = commbuf;
	}
	ctx.exe = exe;
	ctx.script = script;
	ctx.comm = comm;
	ctx.cgroup = cgroup;
	ctx.host = host;
	ctx.path = path;
	ctx.request_bytes = blen;
	ctx.now = now;
	policy_ctx_set_inspect(&ctx, &res);
	if (mcp_server) {
		/* as the agent does for a host under mcp_servers (agent/proxy/mcp.c) */
		ctx.mcp_server = mcp_server;
		if (jsonrpc_parse_request(body, blen, &rpc) == 0) {
			ctx.mcp_method = rpc.method;
			if (!strcmp(rpc.method, "tools/call") && rpc.name[0]) {
				snprintf(rpc_tool[0], sizeof(rpc_tool[0]), "%s", rpc.name);
				ctx.tools = (const char (*)[PROVIDER_TOOL_NAME_MAX])rpc_tool;
				ctx.ntools = 1;
			}
		}
		printf("mcp_server: %s\nmcp_method: %s\ntool: %s\n", mcp_server,
		       ctx.mcp_method ? ctx.mcp_method : "(none)", ctx.ntools ? ctx.tools[0] : "(none)");
	}
	if (rejca) {
		explain_rejected_ca(p, pol_path, &ctx);
		rc = CLI_EXIT_OK;
		goto out;
	}
	if (launch) {
		if (explain_launch(launch, &ml)) {
			printf("stdio launch: not an MCP server (the agent lets it run, unaudited)\n");
			rc = CLI_EXIT_OK;
			goto out;
		}
		ctx.mcp_server = ml.package;
		ctx.mcp_method = "stdio_launch";
		ctx.mcp_rules_only = true;
		ctx.host = ctx.path = NULL;
		ctx.provider = "(none)";   /* no request: nothing was inspected */
		printf("stdio launch: program %s\nmcp_server: %s\nmcp_method: stdio_launch\n", ml.program, ml.package);
	}
	policy_eval(p, &ctx, &d);

	printf("decision: %s%s\n", policy_action_name(d.enforce),
	       d.monitor && d.action != d.enforce ? " (monitor mode)" : "");
	printf("action: %s\n", policy_action_name(d.action));
	printf("rule: %s", d.rule);
	if (d.rule_line)
		printf(" (%s:%d)", pol_path, d.rule_line);
	printf("\n");
	if (d.status)
		printf("status: %d\n", d.status);
	if (d.message[0])
		printf("message: %s\n", d.message);
	printf("provider: %s\nmodel: %s\n", ctx.provider, ctx.model && *ctx.model ? ctx.model : "(none)");
	printf("user: %s uid=%lld groups=%d exe=%s comm=%s\n", user ? user : "(unknown)", (long long)ctx.uid,
	       ngroups, exe ? exe : "(unknown)", comm ? comm : "(unknown)");
	printf("findings:");
	int any = 0;
	for (int t = 0; t < FINDING__COUNT; t++)
		if (res.counts[t] && t != FINDING_CUSTOM) {
			printf(" %s=%u", finding_name(t), res.counts[t]);
			any = 1;
		}
	for (size_t i = 0; i < ndet; i++)
		if (ctx.custom_hits & (1ull << i)) {
			unsigned n = 0;
			for (size_t s = 0; s < res.nspans; s++)
				n += res.spans[s].type == FINDING_CUSTOM && res.spans[s].custom_id == i;
			printf(" CUSTOM:%s=%u", cu[i].name, n);
			any = 1;
		}
	printf("%s\n", any ? "" : " none");
	printf("injection_score: %.2f\n", res.injection_score);
	printf("request_bytes: %zu\n", blen);
	if (res.info.ntools) {
		printf("tools:");
		for (unsigned i = 0; i < res.info.ntools; i++)
			printf(" %s", res.info.tools[i]);
		printf("\n");
	}
	if (d.action == POLICY_REDACT) {
		printf("redact:");
		for (int t = 0; t < FINDING__COUNT; t++)
			if (res.counts[t] && d.redact[t] != REDACT_KEEP)
				printf(" %s=%s", finding_name(t), redact_mode_name(d.redact[t]));
		printf("\n");
	}
	for (size_t i = 0; i < policy_budget_count(p); i++) {
		const struct policy_budget *b = policy_budget_get(p, i);
		char key[512];
		if (policy_budget_applies(p, i, &ctx, key, sizeof(key)))
			printf("budget: %s (%llu %s per %s '%s' per %s%s)\n", b->name,
			       (unsigned long long)b->limit,
			       b->kind == BUDGET_TOKENS ? "tokens" : "requests", per_name(b->per), key,
			       b->window_s == 60 ? "minute" : b->window_s == 3600 ? "hour" : "day",
			       b->monitor ? ", monitor" : "");
	}
	printf("policy_hash: %s\n", policy_hash(p));
	rc = CLI_EXIT_OK;
out:
	inspect_result_free(&res);
	inspect_scratch_free(scr);
	inspector_unref(ins);
	free(body);
	policy_unref(p);
	return rc;
}

int cli_policy_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "explain"))
		return cmd_explain(argc - 1, argv + 1);
	fprintf(stderr, "vigil policy: unknown subcommand '%s' (check, explain)\n", argv[1]);
	return CLI_EXIT_USAGE;
}
