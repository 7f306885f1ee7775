/* policy: the policy engine. Loads a policy file (YAML, see
 * scripts/policy.example.yaml for the full syntax) into an immutable,
 * reference-counted object, and decides one request from a context of
 * identity (user, groups, exe, script, comm, cgroup), destination (host,
 * provider, model, path), content (finding counts, custom detector hits,
 * injection score, size, tools) and time.
 *
 * Owns: parsing and validating policy files (every mistake reported as
 * "file:line: reason", not just the first), the rule matcher, the dpkg
 * "is this program packaged" set, and the policy hash.
 * Must never: allocate, lock or do I/O in policy_eval (the hot path);
 * modify a policy after load (other threads may be evaluating it); apply a
 * file that failed validation, even partly (load builds a new object or
 * nothing). Budget counters live in budget.c.
 *
 * Threads: a struct policy is immutable once policy_load returns; share it
 * with policy_ref/policy_unref. struct policy_holder swaps the current
 * policy under a mutex on reload.
 */
#ifndef VIGIL_POLICY_H
#define VIGIL_POLICY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "content/findings.h"
#include "content/inspect.h"
#include "providers/providers.h"
#include "content/redact.h"

/* Ordered by severity (allow < alert < redact < block); warn, added last,
 * is a block that the user can lift with `vigil justify` (justify.h). */
enum policy_action { POLICY_ALLOW = 0, POLICY_ALERT, POLICY_REDACT, POLICY_BLOCK, POLICY_WARN };

/* "allow", "alert", "redact", "block", "warn" (static). */
const char *policy_action_name(enum policy_action a);

/* At most this many custom detectors per policy (hits travel as a bitmask). */
#define POLICY_MAX_DETECTORS 64

/* Everything a rule can look at. All pointers borrowed for the call; NULL
 * or "" means unknown, and an unknown value never matches a positive
 * condition (user: [alice]) but does match a negative one (model_not). */
struct policy_ctx {
	const char *user;               /* login name */
	int64_t uid, gid;               /* -1 = unknown */
	const gid_t *groups;            /* supplementary groups (may include gid) */
	size_t ngroups;
	const char *exe;                /* /proc/<pid>/exe target */
	const char *script;             /* interpreters: the script run (absolute
					 * argv[1] of python3/node/...), else NULL */
	const char *comm;
	const char *cgroup;             /* cgroup v2 path, e.g. /system.slice/x.service */
	const char *host;               /* SNI */
	const char *provider;           /* provider_name(): "openai", ... */
	const char *model;
	const char *path;               /* request path, query included */
	const uint32_t *counts;         /* [FINDING__COUNT] or NULL = no findings */
	uint64_t custom_hits;           /* bit i: custom detector i (policy order) fired */
	float injection_score;          /* 0..1 */
	uint64_t request_bytes;
	const char (*tools)[PROVIDER_TOOL_NAME_MAX];   /* declared tool names, or the MCP tool called */
	size_t ntools;
	const char *mcp_server;         /* MCP: the server's host (NULL = not an MCP exchange) */
	const char *mcp_method;         /* MCP: JSON-RPC method (tools/call, ...) */
	int64_t now;                    /* unix seconds (time windows); 0 = time(NULL) */
	bool mcp_rules_only;            /* a stdio MCP launch (mcplaunch.c): only rules with an
					 * mcp_server or mcp_method condition apply, and when
					 * none matches the launch is allowed (the default and
					 * the rules written for LLM traffic do not kill
					 * processes) */
};

/* Fill the content part of ctx from an inspection result (counts, custom
 * hits from the spans, injection score, provider, model, tools). r is
 * borrowed and must outlive ctx's use. */
void policy_ctx_set_inspect(struct policy_ctx *ctx, const struct inspect_result *r);

struct policy_decision {
	enum policy_action action;      /* what the matching rule (or default) says */
	enum policy_action enforce;     /* what to do: action, or ALERT (forward
					 * untouched, audit) when monitor is set */
	bool monitor;                   /* rule or global mode: monitor */
	bool is_default;                /* no rule matched */
	const char *rule;               /* rule name, or "default" (borrowed from the policy) */
	int rule_line;                  /* line of the rule in the file, 0 for default */
	int status;                     /* 403 when enforce == BLOCK or WARN, else 0 */
	/* Redaction mode per finding type (enum redact_action values) for
	 * action == REDACT, borrowed from the policy: the rule's `redact:` map,
	 * else the policy's `redaction:` map, else REDACT_PLACEHOLDER; types
	 * that the rule's finding condition does not name are REDACT_KEEP
	 * unless named in the rule's `redact:` map. */
	const uint8_t *redact;
	char message[224];              /* "blocked by policy rule 'x'" ... (no values) */
};

struct policy;

/* The answer rule for a request: rules whose `when` has output_finding
 * are chosen apart from the request rules (first match wins among them),
 * on the same context, when the request is decided, because a streamed
 * answer must be redacted as it passes. */
struct policy_answer {
	const char *rule;               /* borrowed from the policy */
	bool monitor;                   /* audit only: do not redact */
	bool warn;                      /* action warn: the answer passes unchanged and its
					 * event says warn when it carries a type of the rule
					 * (those whose redact[] is not REDACT_KEEP) */
	const uint8_t *redact;          /* [FINDING__COUNT] enum redact_action, never TOKENIZE */
};

/* Fills a and returns 1 if an answer rule matches, else 0 (a zeroed).
 * Never allocates or blocks. */
int policy_eval_answer(const struct policy *p, const struct policy_ctx *ctx, struct policy_answer *a);

/* What policy_load reads besides the file. NULL opts = defaults. */
struct policy_load_opts {
	const char *dpkg_info_dir;      /* NULL = /var/lib/dpkg/info */
};

/* A budget as declared in the file (read by budget.c). */
enum policy_budget_per { BUDGET_PER_USER, BUDGET_PER_GROUP, BUDGET_PER_EXE, BUDGET_PER_ALL };
enum policy_budget_kind { BUDGET_TOKENS, BUDGET_REQUESTS, BUDGET_COST };

struct policy_budget {
	const char *name;
	int line;
	enum policy_budget_per per;
	enum policy_budget_kind kind;
	uint64_t limit;                 /* tokens, requests or (cost) millionths of the currency per window */
	uint32_t window_s;              /* 60, 3600 or 86400 */
	bool monitor;                   /* log instead of 429 */
};

struct policy;

/* Load and validate FILE. On success *out holds a new policy (one
 * reference) and returns 0. On failure returns -EINVAL (or -errno for I/O)
 * and, if errs != NULL, *errs is a malloc'd string of one
 * "file:line: reason" line per mistake (caller frees); *out is NULL. */
int policy_load(const char *path, const struct policy_load_opts *opts, struct policy **out,
		char **errs);
/* Same from a buffer; name is used in messages and as policy_path. */
int policy_parse(const char *name, const char *buf, size_t len, const struct policy_load_opts *opts,
		 struct policy **out, char **errs);

struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);            /* NULL ok */

/* Decide. Never allocates or blocks; p and ctx borrowed. Returns 0. */
int policy_eval(const struct policy *p, const struct policy_ctx *ctx, struct policy_decision *d);

/* SHA-256 of the file bytes, 64 lower-case hex digits (borrowed). */
const char *policy_hash(const struct policy *p);
const char *policy_path(const struct policy *p);
size_t policy_rule_count(const struct policy *p);
/* Whether a rule has a tool or tool_not condition (answers are then held
 * event by event so a forbidden tool call can be refused before it leaves). */
bool policy_has_tool_rules(const struct policy *p);
/* Whether a rule's finding: condition names type t (a group such as
 * @all_secrets counts for its members). */
bool policy_names_finding(const struct policy *p, enum finding_type t);
bool policy_global_monitor(const struct policy *p);
enum policy_action policy_default(const struct policy *p);
/* timezone: utc in the file (time windows and budget days in UTC). */
bool policy_utc(const struct policy *p);
/* Non-fatal remarks ("file:line: warning: ..." lines, e.g. a unix_group
 * unknown on this machine); "" if none. Borrowed. */
const char *policy_warnings(const struct policy *p);

/* Custom detectors in policy order (custom_id i == detector i); pass to
 * inspector_new. Borrowed from p. */
const struct inspect_custom *policy_detectors(const struct policy *p, size_t *n);

/* Budgets in file order (borrowed). */
size_t policy_budget_count(const struct policy *p);
/* The policy's own price table (`pricing:`, common/pricing.h) that cost
 * budgets are charged from; n == 0 when the file has none. */
struct pricing;
const struct pricing *policy_pricing(const struct policy *p);
const struct policy_budget *policy_budget_get(const struct policy *p, size_t i);
/* Whether budget i applies to ctx (its `when` matches and, for per: group,
 * the user is in one of its groups); if so writes its counter key (user
 * name or uid, group name, exe path, or "*") to key. */
bool policy_budget_applies(const struct policy *p, size_t i, const struct policy_ctx *ctx,
			   char *key, size_t keylen);

/* rejected_ca: what happens to a program and host after its client
 * refused the interception CA. The first entry whose `when` matches ctx
 * (identity and host only) decides; with none (or no policy) the agent's
 * on_rejected_ca does. */
struct policy_rejca {
	bool passthrough;               /* else block: keep intercepting */
	uint32_t ttl_ms;                /* passthrough: 0 = the agent's rejected_ca_ttl */
	const char *rule;               /* entry name (borrowed from the policy) */
	int line;
};

/* Fills d and returns 1 if an entry matches, else 0 (d zeroed). Never
 * allocates or blocks. */
int policy_eval_rejected_ca(const struct policy *p, const struct policy_ctx *ctx, struct policy_rejca *d);
size_t policy_rejected_ca_count(const struct policy *p);

/* Whether path is listed in the dpkg file lists this policy loaded (only
 * loaded when a rule uses `packaged:`; false otherwise). */
bool policy_path_packaged(const struct policy *p, const char *path);

/* The running policy, swapped whole on reload. */
struct policy_holder {
	pthread_mutex_t lock;
	struct policy *cur;
};

void policy_holder_init(struct policy_holder *h, struct policy *p);   /* takes ownership of p */
void policy_holder_destroy(struct policy_holder *h);
/* A new reference to the current policy (NULL if none); unref when done. */
struct policy *policy_holder_get(struct policy_holder *h);
/* Load path; only if it is valid, replace the current policy (threads that
 * hold the old one keep using it until they unref). On failure the current
 * policy stays and *errs says why (as policy_load). */
int policy_holder_reload(struct policy_holder *h, const char *path,
			 const struct policy_load_opts *opts, char **errs);

#endif
