/* policy_int: the compiled policy's types, shared by the loader
 * (policy/load.c), the evaluator (policy/eval.c) and policy/policy.c; not
 * for use outside policy/. */
#ifndef VIGIL_POLICY_INT_H
#define VIGIL_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "pricing.h"

/* String conditions, each with a negative twin (<name>_not). */
enum scond {
	/* evaluation order: cheap and selective first */
	SC_PROVIDER, SC_USER, SC_GROUP, SC_COMM, SC_MODEL, SC_HOST, SC_EXE, SC_SCRIPT,
	SC_CGROUP, SC_PATH, SC_TOOL, SC_MCP_SERVER, SC_MCP_METHOD, SC__COUNT
};

static const struct {
	const char *name;
	int fnm_flags;
} scond_info[SC__COUNT] = {
	[SC_USER] = { "user", 0 },
	[SC_GROUP] = { "unix_group", 0 },
	[SC_EXE] = { "exe", FNM_PATHNAME },
	[SC_SCRIPT] = { "script", FNM_PATHNAME },
	[SC_COMM] = { "comm", 0 },
	[SC_CGROUP] = { "cgroup", 0 },
	[SC_HOST] = { "host", FNM_CASEFOLD },
	[SC_PROVIDER] = { "provider", 0 },
	[SC_MODEL] = { "model", 0 },
	[SC_PATH] = { "path", 0 },
	[SC_TOOL] = { "tool", 0 },
	[SC_MCP_SERVER] = { "mcp_server", FNM_CASEFOLD },
	[SC_MCP_METHOD] = { "mcp_method", 0 },
};

struct pat {
	char *s;
	bool glob;         /* has * ? [ \ : a wildcard match, else strcmp */
	bool simple;       /* only * and ?: our matcher, else fnmatch(3) */
	int64_t num;       /* user: the pattern as a uid, -1 if not a number */
};

struct strcond {
	struct pat *pats;
	size_t n;
	int line;          /* 0 = absent */
	gid_t *gids;       /* SC_GROUP: parallel to pats, (gid_t)-1 = unknown here */
	size_t ngids;
};

struct conds {
	struct strcond pos[SC__COUNT], neg[SC__COUNT];
	uint32_t pos_mask, neg_mask;   /* bit s: pos[s] / neg[s] present */
	bool has_finding;
	uint64_t finding_mask;     /* bit per enum finding_type */
	bool has_output;           /* output_finding: an answer rule */
	uint64_t output_mask;      /* types it redacts in the answer */
	uint64_t custom_mask;      /* bit per detector */
	bool has_score;
	float min_score;
	bool has_bytes;
	uint64_t min_bytes;
	bool has_packaged;
	bool packaged;
	bool has_time;
	uint8_t days;              /* bit 0 = Sunday (tm_wday) */
	uint16_t t_start, t_end;   /* minutes of the day, [start, end), wraps if end < start */
	bool empty;                /* no condition at all: matches everything */
};

struct rule {
	char *name;
	int line;
	enum policy_action action;
	bool monitor;
	char *message;
	struct conds c;
	uint8_t redact[FINDING__COUNT];
};

struct budget_def {
	struct policy_budget pub;
	struct conds c;
};

/* A rejected_ca: entry (what follows a client's refusal of the CA). */
struct rejca_rule {
	char *name;
	int line;
	bool passthrough;
	uint32_t ttl_ms;           /* 0 = the agent's rejected_ca_ttl */
	struct conds c;            /* identity and host conditions only */
};

struct detector {
	char *name;
	char *regex;
	char **keywords;
	size_t nkeywords;
	int line;
};

struct flist {
	char *name;
	uint64_t mask, custom;
	int line;
};

/* Set of packaged paths (from dpkg's *.list): open addressing over offsets
 * into one string arena. */
struct pathset {
	char *arena;
	size_t alen, acap;
	uint32_t *slots;          /* offset + 1, 0 = empty */
	size_t nslots, count;
};

struct policy {
	int refs;
	char *path;
	char hash[65];
	enum policy_action def;
	bool monitor;
	bool utc;
	bool uses_time;
	uint8_t base_redact[FINDING__COUNT];
	struct rule *rules;
	size_t nrules;
	struct budget_def *budgets;
	size_t nbudgets;
	struct pricing pricing;           /* for cost budgets */
	struct rejca_rule *rejca;
	size_t nrejca;
	struct detector *dets;
	size_t ndets;
	struct inspect_custom *custom;    /* views of dets for inspector_new */
	struct flist *lists;
	size_t nlists;
	struct pathset *packaged;
	char *warnings;
};

#endif
