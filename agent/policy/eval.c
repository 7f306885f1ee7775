/* policy eval: a linear first-match scan over the pre-compiled rules:
 * finding and threshold tests are bit/integer compares, literal strings
 * are strcmp and only patterns with glob characters reach fnmatch(3). It
 * never allocates, locks or does I/O. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hs/hs.h>
#include <openssl/evp.h>

#include "policy/policy.h"
#include "policy/policy_int.h"
#include "ytree.h"

#define DEFAULT_DPKG_INFO "/var/lib/dpkg/info"
#define MAX_POLICY_BYTES (4u << 20)


/* ------------------------------------------------------------ evaluation */

static inline bool ch_eq(char a, char b, bool fold)
{
	return a == b || (fold && tolower((unsigned char)a) == tolower((unsigned char)b));
}

/* fnmatch(3) for patterns of only '*' and '?' (the common case), without
 * its locale and multibyte machinery: greedy with one backtrack point,
 * linear in practice. pathname: wildcards never match '/'. */
static bool wild_match(const char *p, const char *s, bool pathname, bool fold)
{
	const char *star = NULL, *ss = NULL;

	for (;;) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			star = p;
			ss = s;
			continue;
		}
		if (!*s) {
			if (!*p)
				return true;
		} else if (*p && ((*p == '?' && !(pathname && *s == '/')) || (*p != '?' && ch_eq(*p, *s, fold)))) {
			p++;
			s++;
			continue;
		}
		/* mismatch: let the last '*' swallow one more character */
		if (!star || !*ss || (pathname && *ss == '/'))
			return false;
		ss++;
		p = star;
		s = ss;
	}
}

static bool str_match(const struct strcond *sc, const char *v, int flags)
{
	if (!v || !*v)
		return false;
	for (size_t i = 0; i < sc->n; i++) {
		const struct pat *pt = &sc->pats[i];
		bool m;
		if (!pt->glob)
			m = (flags & FNM_CASEFOLD) ? !strcasecmp(pt->s, v) : !strcmp(pt->s, v);
		else if (pt->simple)
			m = wild_match(pt->s, v, flags & FNM_PATHNAME, flags & FNM_CASEFOLD);
		else
			m = fnmatch(pt->s, v, flags) == 0;
		if (m)
			return true;
	}
	return false;
}

static bool user_match(const struct strcond *sc, const struct policy_ctx *x)
{
	if (str_match(sc, x->user, 0))
		return true;
	if (x->uid >= 0)
		for (size_t i = 0; i < sc->n; i++)
			if (sc->pats[i].num == x->uid)
				return true;
	return false;
}

/* Index into sc->gids of the first group the identity is in, or -1. */
static int group_match(const struct strcond *sc, const struct policy_ctx *x)
{
	for (size_t i = 0; i < sc->ngids; i++) {
		if (sc->gids[i] == (gid_t)-1)
			continue;
		if (x->gid >= 0 && (gid_t)x->gid == sc->gids[i])
			return (int)i;
		for (size_t j = 0; j < x->ngroups; j++)
			if (x->groups[j] == sc->gids[i])
				return (int)i;
	}
	return -1;
}

static bool tool_match(const struct strcond *sc, const struct policy_ctx *x, bool neg)
{
	/* tool: any declared tool matches; tool_not: any declared tool is
	 * outside the list (an allow-list of tools) */
	for (size_t i = 0; i < x->ntools; i++) {
		bool m = str_match(sc, x->tools[i], 0);
		if (m != neg)
			return true;
	}
	return false;
}

static bool scond_match(const struct policy *p, enum scond s, const struct strcond *sc,
			const struct policy_ctx *x, bool neg)
{
	const char *v = NULL;
	char pbuf[1024];
	bool m;

	switch (s) {
	case SC_USER:
		m = user_match(sc, x);
		return m != neg;
	case SC_GROUP:
		m = group_match(sc, x) >= 0;
		return m != neg;
	case SC_TOOL:
		return tool_match(sc, x, neg);
	case SC_EXE: v = x->exe; break;
	case SC_SCRIPT: v = x->script; break;
	case SC_COMM: v = x->comm; break;
	case SC_CGROUP: v = x->cgroup; break;
	case SC_HOST: v = x->host; break;
	case SC_PROVIDER: v = x->provider; break;
	case SC_MODEL: v = x->model; break;
	case SC_MCP_SERVER: v = x->mcp_server; break;
	case SC_MCP_METHOD: v = x->mcp_method; break;
	case SC_PATH:
		v = x->path;
		if (v) {
			/* rules name paths, not query strings */
			size_t n = strcspn(v, "?");
			if (v[n]) {
				if (n >= sizeof(pbuf))
					n = sizeof(pbuf) - 1;
				memcpy(pbuf, v, n);
				pbuf[n] = 0;
				v = pbuf;
			}
		}
		break;
	default:
		break;
	}
	(void)p;
	m = str_match(sc, v, scond_info[s].fnm_flags);
	return m != neg;
}

struct eval_state {
	uint64_t found;        /* finding types with count > 0 */
	int minute_of_week;    /* -1 = not computed yet */
	int packaged;          /* -1 = not computed yet */
	int64_t now;
	bool utc;
};

static int minute_of_week(struct eval_state *st)
{
	/* localtime_r takes glibc's timezone lock: convert once per minute and
	 * thread, not once per request */
	static __thread int64_t cached_min = INT64_MIN;
	static __thread bool cached_utc;
	static __thread int cached_mow;

	if (st->minute_of_week < 0) {
		int64_t min = st->now >= 0 ? st->now / 60 : (st->now - 59) / 60;
		if (min != cached_min || st->utc != cached_utc) {
			time_t t = (time_t)(min * 60);
			struct tm tm;
			if (st->utc)
				gmtime_r(&t, &tm);
			else
				localtime_r(&t, &tm);
			cached_mow = tm.tm_wday * 1440 + tm.tm_hour * 60 + tm.tm_min;
			cached_min = min;
			cached_utc = st->utc;
		}
		st->minute_of_week = cached_mow;
	}
	return st->minute_of_week;
}

static bool time_match(const struct conds *c, struct eval_state *st)
{
	int mow = minute_of_week(st), day = mow / 1440, min = mow % 1440;

	if (c->t_start < c->t_end)
		return (c->days & (1u << day)) && min >= c->t_start && min < c->t_end;
	/* wraps midnight (22:00-06:00): the early part belongs to the window
	 * that started on the previous day */
	if (min >= c->t_start)
		return c->days & (1u << day);
	if (min < c->t_end)
		return c->days & (1u << ((day + 6) % 7));
	return false;
}

static bool conds_match(const struct policy *p, const struct conds *c, const struct policy_ctx *x,
			struct eval_state *st)
{
	if (c->empty)
		return true;
	if (c->has_finding && !((st->found & c->finding_mask & ~(1ull << FINDING_CUSTOM)) ||
				(x->custom_hits & c->custom_mask) ||
				(c->custom_mask == ~0ull && (st->found & (1ull << FINDING_CUSTOM)))))
		return false;
	if (c->has_score && !(x->injection_score >= c->min_score))
		return false;
	if (c->has_bytes && x->request_bytes < c->min_bytes)
		return false;
	if (c->has_time && !time_match(c, st))
		return false;
	for (uint32_t m = c->pos_mask; m; m &= m - 1) {
		int s = __builtin_ctz(m);
		if (!scond_match(p, (enum scond)s, &c->pos[s], x, false))
			return false;
	}
	for (uint32_t m = c->neg_mask; m; m &= m - 1) {
		int s = __builtin_ctz(m);
		if (!scond_match(p, (enum scond)s, &c->neg[s], x, true))
			return false;
	}
	if (c->has_packaged) {
		if (st->packaged < 0) {
			/* an interpreter is only as trusted as the script it runs */
			bool ok = policy_path_packaged(p, x->exe) &&
				  (!x->script || !*x->script || policy_path_packaged(p, x->script));
			st->packaged = ok;
		}
		if ((bool)st->packaged != c->packaged)
			return false;
	}
	return true;
}

static void eval_state_init(const struct policy *p, const struct policy_ctx *x, struct eval_state *st)
{
	st->found = 0;
	if (x->counts)
		for (int t = 0; t < FINDING__COUNT; t++)
			if (x->counts[t])
				st->found |= 1ull << t;
	if (x->custom_hits)
		st->found |= 1ull << FINDING_CUSTOM;
	st->minute_of_week = -1;
	st->packaged = -1;
	st->now = x->now ? x->now : (p->uses_time ? (int64_t)time(NULL) : 0);
	st->utc = p->utc;
}

static bool names_mcp(const struct conds *c)
{
	uint32_t mcp = (1u << SC_MCP_SERVER) | (1u << SC_MCP_METHOD);
	return ((c->pos_mask | c->neg_mask) & mcp) != 0;
}

int policy_eval(const struct policy *p, const struct policy_ctx *x, struct policy_decision *d)
{
	struct eval_state st;
	const struct rule *r = NULL;

	if (!p || !x || !d)
		return -EINVAL;
	eval_state_init(p, x, &st);
	for (size_t i = 0; i < p->nrules; i++)
		if (!p->rules[i].c.has_output && (!x->mcp_rules_only || names_mcp(&p->rules[i].c)) &&
		    conds_match(p, &p->rules[i].c, x, &st)) {
			r = &p->rules[i];
			break;
		}
	d->action = r ? r->action : x->mcp_rules_only ? POLICY_ALLOW : p->def;
	d->monitor = p->monitor || (r && r->monitor);
	d->is_default = !r;
	d->rule = r ? r->name : "default";
	d->rule_line = r ? r->line : 0;
	d->redact = r ? r->redact : p->base_redact;
	d->enforce = d->action;
	if (d->monitor && d->action != POLICY_ALLOW)
		d->enforce = POLICY_ALERT;
	d->status = d->enforce == POLICY_BLOCK || d->enforce == POLICY_WARN ? 403 : 0;
	d->message[0] = 0;
	if (d->action == POLICY_ALLOW)
		return 0;
	if (d->monitor)
		snprintf(d->message, sizeof(d->message), "policy %s '%s' would %s (monitor mode)",
			 r ? "rule" : "default", d->rule, policy_action_name(d->action));
	else if (d->action == POLICY_BLOCK)
		snprintf(d->message, sizeof(d->message), "blocked by policy %s '%s'%s%s",
			 r ? "rule" : "default", d->rule, r && r->message ? ": " : "",
			 r && r->message ? r->message : "");
	else if (d->action == POLICY_WARN)
		snprintf(d->message, sizeof(d->message), "%s (policy rule '%s')",
			 r && r->message ? r->message : "this request needs a justification", d->rule);
	else
		snprintf(d->message, sizeof(d->message), "policy rule '%s': %s%s%s", d->rule,
			 policy_action_name(d->action), r && r->message ? ": " : "",
			 r && r->message ? r->message : "");
	return 0;
}

int policy_eval_rejected_ca(const struct policy *p, const struct policy_ctx *x, struct policy_rejca *d)
{
	struct eval_state st;

	memset(d, 0, sizeof(*d));
	if (!p || !x)
		return 0;
	eval_state_init(p, x, &st);
	for (size_t i = 0; i < p->nrejca; i++) {
		const struct rejca_rule *r = &p->rejca[i];
		if (!conds_match(p, &r->c, x, &st))
			continue;
		d->passthrough = r->passthrough;
		d->ttl_ms = r->ttl_ms;
		d->rule = r->name;
		d->line = r->line;
		return 1;
	}
	return 0;
}

int policy_eval_answer(const struct policy *p, const struct policy_ctx *x, struct policy_answer *a)
{
	struct eval_state st;

	memset(a, 0, sizeof(*a));
	if (!p || !x)
		return 0;
	eval_state_init(p, x, &st);
	for (size_t i = 0; i < p->nrules; i++) {
		const struct rule *r = &p->rules[i];
		if (!r->c.has_output || !conds_match(p, &r->c, x, &st))
			continue;
		a->rule = r->name;
		a->monitor = p->monitor || r->monitor;
		a->warn = r->action == POLICY_WARN;
		a->redact = r->redact;
		return 1;
	}
	return 0;
}

bool policy_budget_applies(const struct policy *p, size_t i, const struct policy_ctx *x, char *key,
			   size_t keylen)
{
	const struct budget_def *b;
	struct eval_state st;

	if (!p || i >= p->nbudgets)
		return false;
	b = &p->budgets[i];
	eval_state_init(p, x, &st);
	if (!conds_match(p, &b->c, x, &st))
		return false;
	switch (b->pub.per) {
	case BUDGET_PER_USER:
		if (x->user && *x->user)
			snprintf(key, keylen, "%s", x->user);
		else if (x->uid >= 0)
			snprintf(key, keylen, "uid:%lld", (long long)x->uid);
		else
			snprintf(key, keylen, "unknown");
		return true;
	case BUDGET_PER_GROUP: {
		const struct strcond *sc = &b->c.pos[SC_GROUP];
		int g = group_match(sc, x);
		if (g < 0)
			return false;
		snprintf(key, keylen, "%s", sc->pats[g].s);
		return true;
	}
	case BUDGET_PER_EXE:
		snprintf(key, keylen, "%s", x->exe && *x->exe ? x->exe : "unknown");
		return true;
	case BUDGET_PER_ALL:
		snprintf(key, keylen, "*");
		return true;
	}
	return false;
}

void policy_ctx_set_inspect(struct policy_ctx *ctx, const struct inspect_result *r)
{
	ctx->counts = r->counts;
	ctx->injection_score = r->injection_score;
	ctx->provider = provider_name(r->info.provider);
	ctx->model = r->info.model;
	ctx->tools = r->info.tools;
	ctx->ntools = r->info.ntools;
	ctx->custom_hits = 0;
	for (size_t i = 0; i < r->nspans; i++)
		if (r->spans[i].type == FINDING_CUSTOM && r->spans[i].custom_id < 64)
			ctx->custom_hits |= 1ull << r->spans[i].custom_id;
}

