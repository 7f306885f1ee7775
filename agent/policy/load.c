/* policy load: parses a policy file into a fresh object, collecting every
 * mistake with its line, then runs whole-policy checks (contradictions
 * inside a rule, rules shadowed by an earlier broader rule). Nothing of a
 * file with a mistake is ever returned, so a reload cannot half-apply.
 * Builds the dpkg set of packaged paths once, at load. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
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


/* ------------------------------------------------------------ errors */

struct errs {
	const char *file;
	char *buf;
	size_t len, cap;
	int n;
	bool oom;
};

static void __attribute__((format(printf, 3, 4))) eadd(struct errs *e, int line, const char *fmt, ...)
{
	char msg[512];
	int m, k;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	m = snprintf(NULL, 0, "%s:%d: %s\n", e->file, line, msg);
	if (e->len + (size_t)m + 1 > e->cap) {
		size_t nc = (e->cap + (size_t)m + 1) * 2;
		char *nb = realloc(e->buf, nc);
		if (!nb) {
			e->oom = true;
			return;
		}
		e->buf = nb;
		e->cap = nc;
	}
	k = snprintf(e->buf + e->len, e->cap - e->len, "%s:%d: %s\n", e->file, line, msg);
	e->len += (size_t)k;
	e->n++;
}

/* ------------------------------------------------------------ helpers */

static bool is_scalar(const struct ynode *n)
{
	return n && n->kind == YNODE_SCALAR;
}

/* Call fn for every scalar of a scalar-or-sequence node; non-scalars are
 * reported. */
typedef void (*item_fn)(void *ctx, const struct ynode *item);
static void for_items(struct errs *e, const struct ynode *n, const char *what, item_fn fn, void *ctx)
{
	if (n->kind == YNODE_SCALAR) {
		fn(ctx, n);
		return;
	}
	if (n->kind == YNODE_MAP) {
		eadd(e, n->line, "%s: expected a string or a list of strings", what);
		return;
	}
	if (n->nkids == 0)
		eadd(e, n->line, "%s: empty list", what);
	for (size_t i = 0; i < n->nkids; i++) {
		if (n->kids[i]->kind != YNODE_SCALAR)
			eadd(e, n->kids[i]->line, "%s: expected a string in this list", what);
		else
			fn(ctx, n->kids[i]);
	}
}

static bool has_glob(const char *s)
{
	return strpbrk(s, "*?[\\") != NULL;
}

/* fnmatch(3) accepts anything; refuse what is surely a mistake. */
static const char *glob_problem(const char *p)
{
	if (!*p)
		return "empty pattern";
	for (const char *s = p; *s; s++) {
		if (*s == '\\') {
			if (!s[1])
				return "pattern ends with a lone backslash";
			s++;
		} else if (*s == '[') {
			const char *q = s + 1;
			if (*q == '!' || *q == '^')
				q++;
			if (*q == ']')
				q++;
			for (; *q && *q != ']'; q++) {
				if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
					char close = q[1];
					const char *r = q + 2;
					while (*r && !(*r == close && r[1] == ']'))
						r++;
					if (!*r)
						return "unterminated character class name in '[...]'";
					q = r + 1;
				}
			}
			if (!*q)
				return "unbalanced '[' (no closing ']')";
			s = q;
		}
	}
	return NULL;
}

static int parse_action(const char *s, enum policy_action *a)
{
	static const char *const n[] = { "allow", "alert", "redact", "block", "warn" };
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, n[i])) {
			*a = (enum policy_action)i;
			return 0;
		}
	return -1;
}

static int parse_redact_mode(const char *s)
{
	if (!strcmp(s, "redact") || !strcmp(s, "placeholder"))
		return REDACT_PLACEHOLDER;
	if (!strcmp(s, "mask"))
		return REDACT_MASK;
	if (!strcmp(s, "hash"))
		return REDACT_HASH;
	if (!strcmp(s, "tokenize"))
		return REDACT_TOKENIZE;
	if (!strcmp(s, "keep"))
		return REDACT_KEEP;
	return -1;
}

static const char *const builtin_lists[] = { "all", "all_secrets", "all_pii" };

/* Resolve a finding reference: a type name, a detector name, or @list. */
static int finding_ref(const struct policy *p, const char *s, uint64_t *mask, uint64_t *custom)
{
	int t;

	if (s[0] == '@') {
		const char *ln = s + 1;
		if (!strcmp(ln, "all")) {
			*mask |= (1ull << FINDING__COUNT) - 1;
			*custom = ~0ull;    /* every detector, see CUSTOM below */
			return 0;
		}
		if (!strcmp(ln, "all_secrets") || !strcmp(ln, "all_pii")) {
			for (int i = 0; i < FINDING__COUNT; i++)
				if (ln[4] == 's' ? finding_is_secret(i) : finding_is_pii(i))
					*mask |= 1ull << i;
			return 0;
		}
		for (size_t i = 0; i < p->nlists; i++)
			if (!strcmp(p->lists[i].name, ln)) {
				*mask |= p->lists[i].mask;
				*custom |= p->lists[i].custom;
				return 0;
			}
		return -1;
	}
	if ((t = finding_from_name(s)) >= 0) {
		*mask |= 1ull << t;
		/* the type CUSTOM means any custom detector: all bits set, which
		 * conds_match also takes as "any CUSTOM count" */
		if (t == FINDING_CUSTOM)
			*custom = ~0ull;
		return 0;
	}
	for (size_t i = 0; i < p->ndets; i++)
		if (!strcmp(p->dets[i].name, s)) {
			*custom |= 1ull << i;
			*mask |= 1ull << FINDING_CUSTOM;
			return 0;
		}
	return -1;
}

/* "200000", "200k", "1.5M" (decimal: tokens are not bytes) */
static int parse_count(const char *s, uint64_t *out)
{
	char *end;
	double v;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtod(s, &end);
	if (errno || end == s)
		return -1;
	if (*end == 'k' || *end == 'K')
		v *= 1e3, end++;
	else if (*end == 'M' || *end == 'm')
		v *= 1e6, end++;
	else if (*end == 'G' || *end == 'g')
		v *= 1e9, end++;
	if (*end || v < 0 || v > 1e18)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int parse_hhmm(const char *s, uint16_t *out)
{
	unsigned h, m;
	int n = 0;

	if (sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2 || s[n] || h > 24 || m > 59 || (h == 24 && m))
		return -1;
	*out = (uint16_t)(h * 60 + m);
	return 0;
}

static int day_index(const char *s)
{
	static const char *const d[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
	for (int i = 0; i < 7; i++)
		if (!strncasecmp(s, d[i], 3) && strlen(s) == 3)
			return i;
	return -1;
}

/* ------------------------------------------------------------ dpkg set */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static bool pathset_has(const struct pathset *ps, const char *s)
{
	if (!ps || !ps->nslots || !s || !*s)
		return false;
	for (size_t i = fnv1a(s) & (ps->nslots - 1);; i = (i + 1) & (ps->nslots - 1)) {
		uint32_t o = ps->slots[i];
		if (!o)
			return false;
		if (!strcmp(ps->arena + o - 1, s))
			return true;
	}
}

static int pathset_grow(struct pathset *ps)
{
	size_t ns = ps->nslots ? ps->nslots * 2 : 1 << 16;
	uint32_t *sl = calloc(ns, sizeof(*sl));

	if (!sl)
		return -ENOMEM;
	for (size_t i = 0; i < ps->nslots; i++) {
		uint32_t o = ps->slots[i];
		if (!o)
			continue;
		size_t j = fnv1a(ps->arena + o - 1) & (ns - 1);
		while (sl[j])
			j = (j + 1) & (ns - 1);
		sl[j] = o;
	}
	free(ps->slots);
	ps->slots = sl;
	ps->nslots = ns;
	return 0;
}

static int pathset_add(struct pathset *ps, const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 4095)
		return 0;
	if ((ps->count + 1) * 2 > ps->nslots && pathset_grow(ps))
		return -ENOMEM;
	if (ps->alen + n + 1 > ps->acap) {
		size_t nc = ps->acap ? ps->acap * 2 : 1 << 20;
		while (nc < ps->alen + n + 1)
			nc *= 2;
		if (nc > UINT32_MAX - 1)
			return -E2BIG;
		char *na = realloc(ps->arena, nc);
		if (!na)
			return -ENOMEM;
		ps->arena = na;
		ps->acap = nc;
	}
	memcpy(ps->arena + ps->alen, s, n);
	ps->arena[ps->alen + n] = 0;
	if (pathset_has(ps, ps->arena + ps->alen))
		return 0;
	for (i = fnv1a(ps->arena + ps->alen) & (ps->nslots - 1); ps->slots[i];
	     i = (i + 1) & (ps->nslots - 1))
		;
	ps->slots[i] = (uint32_t)ps->alen + 1;
	ps->alen += n + 1;
	ps->count++;
	return 0;
}

static void pathset_free(struct pathset *ps)
{
	if (!ps)
		return;
	free(ps->arena);
	free(ps->slots);
	free(ps);
}

/* Every path of every installed package's file list. A missing directory
 * (not a dpkg system) gives an empty set: nothing counts as packaged. */
static struct pathset *pathset_load_dpkg(const char *dir)
{
	struct pathset *ps = calloc(1, sizeof(*ps));
	DIR *d;
	struct dirent *de;
	char fn[4096], *line = NULL;
	size_t lcap = 0;

	if (!ps || pathset_grow(ps)) {
		pathset_free(ps);
		return NULL;
	}
	if (!(d = opendir(dir)))
		return ps;
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		FILE *f;
		ssize_t n;

		if (nl < 6 || strcmp(de->d_name + nl - 5, ".list"))
			continue;
		snprintf(fn, sizeof(fn), "%s/%s", dir, de->d_name);
		if (!(f = fopen(fn, "re")))
			continue;
		while ((n = getline(&line, &lcap, f)) > 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				n--;
			if (n > 0 && line[0] == '/' && pathset_add(ps, line, (size_t)n)) {
				fclose(f);
				closedir(d);
				free(line);
				pathset_free(ps);
				return NULL;
			}
		}
		fclose(f);
	}
	closedir(d);
	free(line);
	return ps;
}

bool policy_path_packaged(const struct policy *p, const char *path)
{
	if (!p || !p->packaged || !path || path[0] != '/')
		return false;
	if (pathset_has(p->packaged, path))
		return true;
	/* merged /usr: dpkg may list /bin/x while /proc/<pid>/exe says /usr/bin/x */
	if (!strncmp(path, "/usr/", 5) && pathset_has(p->packaged, path + 4))
		return true;
	return false;
}

/* ------------------------------------------------------------ parsing */

struct loader {
	struct policy *p;
	struct errs *e;
	const struct policy_load_opts *opts;
	bool need_dpkg;
};

struct scond_ctx {
	struct loader *L;
	struct strcond *sc;
	enum scond kind;
	const char *key;
};

static void scond_item(void *vctx, const struct ynode *it)
{
	struct scond_ctx *c = vctx;
	struct strcond *sc = c->sc;
	const char *s = it->str, *why;
	struct pat *np;

	if (c->kind == SC_PROVIDER) {
		if (!provider_known(s) && !has_glob(s)) {
			eadd(c->L->e, it->line,
			     "%s: unknown provider '%s' (openai, anthropic, gemini, azure_openai, bedrock, mistral, "
			     "generic, or a web app: chatgpt_web, claude_web, ...)",
			     c->key, s);
			return;
		}
	}
	if (c->kind == SC_GROUP) {
		/* Group names are resolved now: evaluation compares gids. A group
		 * unknown on this machine is not a mistake (the same policy goes
		 * to a fleet) but it can never match here. */
		struct group gr, *res = NULL;
		char *buf = NULL;
		size_t blen = 4096;
		int rc = ERANGE;
		char *end;
		long v = strtol(s, &end, 10);
		gid_t g;
		gid_t *ng;

		if (has_glob(s)) {
			eadd(c->L->e, it->line, "%s: group names are exact (no glob): '%s'", c->key, s);
			return;
		}
		/* a group with many members needs a bigger buffer than the usual */
		while (!(*s && !*end && v >= 0) && rc == ERANGE && blen <= (1u << 22)) {
			char *nb = realloc(buf, blen);
			if (!nb)
				break;
			buf = nb;
			rc = getgrnam_r(s, &gr, buf, blen, &res);
			blen *= 4;
		}
		if (*s && !*end && v >= 0) {
			g = (gid_t)v;
		} else if (rc == 0 && res) {
			g = res->gr_gid;
		} else {
			char w[256];
			int k = snprintf(w, sizeof(w), "%s:%d: warning: unix_group '%s' does not exist here; it never matches\n",
					 c->L->e->file, it->line, s);
			if (k < 0 || k >= (int)sizeof(w))
				k = (int)sizeof(w) - 1;
			w[k - 1] = '\n';
			size_t ol = c->L->p->warnings ? strlen(c->L->p->warnings) : 0;
			char *nw = realloc(c->L->p->warnings, ol + (size_t)k + 1);
			if (nw) {
				memcpy(nw + ol, w, (size_t)k + 1);
				c->L->p->warnings = nw;
			}
			g = (gid_t)-1;
		}
		free(buf);
		ng = realloc(sc->gids, (sc->ngids + 1) * sizeof(*ng));
		if (!ng) {
			c->L->e->oom = true;
			return;
		}
		sc->gids = ng;
		sc->gids[sc->ngids++] = g;
	} else if ((why = glob_problem(s))) {
		eadd(c->L->e, it->line, "%s: bad pattern '%s': %s", c->key, s, why);
		return;
	}
	np = realloc(sc->pats, (sc->n + 1) * sizeof(*np));
	if (!np || !(s = strdup(s))) {
		if (np)
			sc->pats = np;
		c->L->e->oom = true;
		return;
	}
	sc->pats = np;
	sc->pats[sc->n].s = (char *)s;
	sc->pats[sc->n].glob = c->kind != SC_GROUP && has_glob(s);
	sc->pats[sc->n].simple = !strpbrk(s, "[\\");
	sc->pats[sc->n].num = -1;
	if (c->kind == SC_USER) {
		char *end;
		long long v = strtoll(s, &end, 10);
		if (*s && !*end && v >= 0)
			sc->pats[sc->n].num = v;
	}
	sc->n++;
}

struct fref_ctx {
	struct loader *L;
	uint64_t *mask, *custom;
	const char *key;
};

static void fref_item(void *vctx, const struct ynode *it)
{
	struct fref_ctx *c = vctx;

	if (finding_ref(c->L->p, it->str, c->mask, c->custom))
		eadd(c->L->e, it->line, "%s: unknown finding type, detector or list '%s'", c->key,
		     it->str);
}

static void parse_time(struct loader *L, const struct ynode *v, struct conds *c)
{
	c->has_time = true;
	c->days = 0x7f;
	c->t_start = 0;
	c->t_end = 24 * 60;
	if (v->kind != YNODE_MAP) {
		eadd(L->e, v->line, "time: expected a map with days and/or hours");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(v); i++) {
		const struct ynode *k = ytree_map_key(v, i), *x = ytree_map_val(v, i);
		if (!strcmp(k->str, "days")) {
			c->days = 0;
			if (x->kind == YNODE_SEQ) {
				for (size_t j = 0; j < x->nkids; j++) {
					int d = is_scalar(x->kids[j]) ? day_index(x->kids[j]->str) : -1;
					if (d < 0)
						eadd(L->e, x->kids[j]->line, "time.days: expected sun..sat");
					else
						c->days |= (uint8_t)(1u << d);
				}
			} else if (is_scalar(x)) {
				/* "mon-fri" (may wrap: "fri-mon") or a single day */
				char a[8] = "", b[8] = "";
				int da, db;
				if (sscanf(x->str, "%3[a-zA-Z]-%3[a-zA-Z]", a, b) == 2 &&
				    strlen(x->str) == 7 && (da = day_index(a)) >= 0 && (db = day_index(b)) >= 0) {
					for (int d = da;; d = (d + 1) % 7) {
						c->days |= (uint8_t)(1u << d);
						if (d == db)
							break;
					}
				} else if ((da = day_index(x->str)) >= 0) {
					c->days = (uint8_t)(1u << da);
				} else {
					eadd(L->e, x->line, "time.days: expected a list of sun..sat or a range like mon-fri");
				}
			} else {
				eadd(L->e, x->line, "time.days: expected a list or a range");
			}
		} else if (!strcmp(k->str, "hours")) {
			char a[8] = "", b[8] = "";
			if (!is_scalar(x) || sscanf(x->str, "%5[0-9:]-%5[0-9:]", a, b) != 2 ||
			    parse_hhmm(a, &c->t_start) || parse_hhmm(b, &c->t_end))
				eadd(L->e, x->line, "time.hours: expected HH:MM-HH:MM");
			else if (c->t_start == c->t_end)
				eadd(L->e, x->line, "time.hours: empty window (start == end) can never match");
		} else {
			eadd(L->e, k->line, "time: unknown key '%s' (days, hours)", k->str);
		}
	}
	if (!c->days)
		eadd(L->e, v->line, "time: no day selected: can never match");
}

/* Where a `when` map may stand, apart from a rule (which takes every
 * condition): the string conditions it takes and the message naming them. */
struct cond_scope {
	uint32_t sconds;           /* bit per enum scond */
	const char *kind, *takes;
};

static const struct cond_scope budget_scope = {
	~0u, "budget", "budgets take user, unix_group, exe, script, comm, cgroup, host, provider, model, path"
};

/* A refusal of the CA is decided before any request is read: only who and
 * where are known. */
static const struct cond_scope rejca_scope = {
	1u << SC_USER | 1u << SC_GROUP | 1u << SC_EXE | 1u << SC_SCRIPT | 1u << SC_COMM | 1u << SC_CGROUP |
		1u << SC_HOST | 1u << SC_PROVIDER,
	"rejected_ca", "rejected_ca takes user, unix_group, exe, script, comm, cgroup, host, provider"
};

static void cond_unknown(struct loader *L, const struct ynode *kn, const struct cond_scope *scope)
{
	eadd(L->e, kn->line, "when: unknown %s condition '%s' (%s and their _not forms)", scope->kind, kn->str,
	     scope->takes);
}

/* Parse a `when:` map into c; scope NULL = a rule's (every condition). */
static void parse_conds(struct loader *L, const struct ynode *w, struct conds *c, const struct cond_scope *scope)
{
	c->empty = true;
	if (!w)
		return;
	if (w->kind != YNODE_MAP) {
		eadd(L->e, w->line, "when: expected a map of conditions");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(w); i++) {
		const struct ynode *kn = ytree_map_key(w, i), *v = ytree_map_val(w, i);
		const char *k = kn->str;
		bool done = false;

		for (size_t j = 0; j < i; j++)
			if (!strcmp(ytree_map_key(w, j)->str, k))
				eadd(L->e, kn->line, "when: duplicate condition '%s'", k);
		c->empty = false;
		for (int s = 0; s < SC__COUNT && !done; s++) {
			size_t nl = strlen(scond_info[s].name);
			bool neg;
			if (strncmp(k, scond_info[s].name, nl))
				continue;
			if (!k[nl])
				neg = false;
			else if (!strcmp(k + nl, "_not"))
				neg = true;
			else
				continue;
			done = true;
			if (scope && !(scope->sconds & (1u << s))) {
				cond_unknown(L, kn, scope);
				break;
			}
			struct strcond *sc = neg ? &c->neg[s] : &c->pos[s];
			struct scond_ctx sx = { L, sc, (enum scond)s, k };
			sc->line = kn->line;
			if (neg)
				c->neg_mask |= 1u << s;
			else
				c->pos_mask |= 1u << s;
			for_items(L->e, v, k, scond_item, &sx);
		}
		if (done)
			continue;
		if (scope) {
			cond_unknown(L, kn, scope);
			continue;
		}
		if (!strcmp(k, "finding")) {
			struct fref_ctx fx = { L, &c->finding_mask, &c->custom_mask, k };
			c->has_finding = true;
			for_items(L->e, v, k, fref_item, &fx);
		} else if (!strcmp(k, "output_finding")) {
			/* answers are scanned per type: a custom detector counts as CUSTOM */
			uint64_t custom = 0;
			struct fref_ctx fx = { L, &c->output_mask, &custom, k };
			c->has_output = true;
			for_items(L->e, v, k, fref_item, &fx);
		} else if (!strcmp(k, "injection_score")) {
			char *end;
			double d = is_scalar(v) ? strtod(v->str, &end) : -1;
			if (!is_scalar(v) || end == v->str || *end || !(d >= 0.0 && d <= 1.0))
				eadd(L->e, v->line, "injection_score: expected a number from 0 to 1 (matches when the score is at least this)");
			c->has_score = true;
			c->min_score = (float)d;
		} else if (!strcmp(k, "request_bytes")) {
			unsigned long long b = 0;
			char buf[512];
			if (!is_scalar(v) || ytree_size(L->e->file, v, &b, buf, sizeof(buf)))
				eadd(L->e, v->line, "request_bytes: expected a size such as 4096, 512k or 1M");
			c->has_bytes = true;
			c->min_bytes = b;
		} else if (!strcmp(k, "packaged")) {
			bool b = false;
			char buf[512];
			if (!is_scalar(v) || ytree_bool(L->e->file, v, &b, buf, sizeof(buf)))
				eadd(L->e, v->line, "packaged: expected true or false");
			c->has_packaged = true;
			c->packaged = b;
			L->need_dpkg = true;
		} else if (!strcmp(k, "time")) {
			parse_time(L, v, c);
			L->p->uses_time = true;
		} else {
			eadd(L->e, kn->line,
			     "when: unknown condition '%s' (user, unix_group, exe, script, comm, cgroup, host, provider, model, path, tool, mcp_server, mcp_method, each also as <name>_not; finding, output_finding, injection_score, request_bytes, packaged, time)",
			     k);
		}
	}
}

static bool check_name(struct errs *e, const struct ynode *n, const char *what)
{
	if (!is_scalar(n) || !n->str[0]) {
		eadd(e, n ? n->line : 0, "%s: name must be a non-empty string", what);
		return false;
	}
	for (const char *s = n->str; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') {
			eadd(e, n->line, "%s: name '%s' may only hold letters, digits, '_', '-', '.'", what, n->str);
			return false;
		}
	return true;
}

/* The name nm of an entry (rule, budget, rejected_ca) at line: "what:
 * missing name" without one, check_name, then "what: dup '%s' (first at
 * line N)" when another of the n entries of arr (stride bytes apart, the
 * name and line at name_off and line_off; self is this one) has it.
 * Returns a copy of the name, or NULL. */
static char *entry_name(struct loader *L, int line, const struct ynode *nm, const char *what, const char *dup,
			const void *arr, size_t n, size_t stride, size_t name_off, size_t line_off, const void *self)
{
	char *copy;

	if (!nm) {
		eadd(L->e, line, "%s: missing name", what);
		return NULL;
	}
	if (!check_name(L->e, nm, what))
		return NULL;
	for (size_t j = 0; j < n; j++) {
		const char *e = (const char *)arr + j * stride;
		const char *name = *(char *const *)(e + name_off);
		if (e != self && name && !strcmp(name, nm->str))
			eadd(L->e, nm->line, "%s: %s '%s' (first at line %d)", what, dup, nm->str,
			     *(const int *)(e + line_off));
	}
	if (!(copy = strdup(nm->str)))
		L->e->oom = true;
	return copy;
}

static void parse_lists(struct loader *L, const struct ynode *v)
{
	struct policy *p = L->p;

	if (v->kind != YNODE_MAP) {
		eadd(L->e, v->line, "lists: expected a map of name: [finding types]");
		return;
	}
	p->lists = calloc(ytree_map_len(v) + 1, sizeof(*p->lists));
	if (!p->lists) {
		L->e->oom = true;
		return;
	}
	for (size_t i = 0; i < ytree_map_len(v); i++) {
		const struct ynode *k = ytree_map_key(v, i), *x = ytree_map_val(v, i);
		struct flist fl = { .line = k->line };
		struct fref_ctx fx = { L, &fl.mask, &fl.custom, k->str };
		bool bad = !check_name(L->e, k, "lists");

		for (size_t b = 0; b < 3 && !bad; b++)
			if (!strcmp(k->str, builtin_lists[b])) {
				eadd(L->e, k->line, "lists: '%s' is a built-in list (@all, @all_secrets, @all_pii)", k->str);
				bad = true;
			}
		for (size_t j = 0; j < p->nlists && !bad; j++)
			if (!strcmp(p->lists[j].name, k->str)) {
				eadd(L->e, k->line, "lists: duplicate list '%s' (first at line %d)", k->str, p->lists[j].line);
				bad = true;
			}
		for_items(L->e, x, k->str, fref_item, &fx);
		if (bad)
			continue;
		if (!(fl.name = strdup(k->str))) {
			L->e->oom = true;
			return;
		}
		p->lists[p->nlists++] = fl;
	}
}

static void parse_detectors(struct loader *L, const struct ynode *v)
{
	struct policy *p = L->p;

	if (v->kind != YNODE_SEQ) {
		eadd(L->e, v->line, "detectors: expected a list of {name, regex | keywords}");
		return;
	}
	p->dets = calloc(v->nkids + 1, sizeof(*p->dets));
	if (!p->dets) {
		L->e->oom = true;
		return;
	}
	if (v->nkids > POLICY_MAX_DETECTORS)
		eadd(L->e, v->line, "detectors: at most %d custom detectors", POLICY_MAX_DETECTORS);
	for (size_t i = 0; i < v->nkids && i < POLICY_MAX_DETECTORS; i++) {
		const struct ynode *d = v->kids[i], *nm, *re, *kw;
		struct detector det = { .line = d->line };
		bool bad = false;

		if (d->kind != YNODE_MAP) {
			eadd(L->e, d->line, "detectors: each detector is a map {name, regex | keywords}");
			continue;
		}
		for (size_t j = 0; j < ytree_map_len(d); j++) {
			const char *k = ytree_map_key(d, j)->str;
			if (strcmp(k, "name") && strcmp(k, "regex") && strcmp(k, "keywords"))
				eadd(L->e, ytree_map_key(d, j)->line, "detectors: unknown key '%s' (name, regex, keywords)", k);
		}
		nm = ytree_get(d, "name");
		re = ytree_get(d, "regex");
		kw = ytree_get(d, "keywords");
		if (!nm) {
			eadd(L->e, d->line, "detectors: detector without a name");
			continue;
		}
		if (!check_name(L->e, nm, "detectors"))
			continue;
		if (finding_from_name(nm->str) >= 0) {
			eadd(L->e, nm->line, "detectors: '%s' is a built-in finding type name", nm->str);
			bad = true;
		}
		for (size_t j = 0; j < p->ndets; j++)
			if (!strcmp(p->dets[j].name, nm->str)) {
				eadd(L->e, nm->line, "detectors: duplicate detector '%s' (first at line %d)", nm->str,
				     p->dets[j].line);
				bad = true;
			}
		if (!!re == !!kw) {
			eadd(L->e, d->line, "detectors: '%s' needs exactly one of regex or keywords", nm->str);
			bad = true;
		} else if (re) {
			hs_expr_info_t *info = NULL;
			hs_compile_error_t *ce = NULL;
			if (!is_scalar(re) || !re->str[0]) {
				eadd(L->e, re->line, "detectors: regex must be a non-empty string");
				bad = true;
			} else if (hs_expression_info(re->str, HS_FLAG_UTF8 | HS_FLAG_UCP, &info, &ce) != HS_SUCCESS) {
				eadd(L->e, re->line, "detectors: bad regex for '%s': %s", nm->str,
				     ce && ce->message ? ce->message : "rejected");
				bad = true;
			}
			if (ce)
				hs_free_compile_error(ce);
			free(info);
		} else {
			if (kw->kind == YNODE_SEQ && kw->nkids) {
				det.keywords = calloc(kw->nkids + 1, sizeof(char *));
				if (!det.keywords) {
					L->e->oom = true;
					return;
				}
			}
			if (kw->kind != YNODE_SEQ || !kw->nkids) {
				eadd(L->e, kw->line, "detectors: keywords must be a non-empty list");
				bad = true;
			}
			for (size_t j = 0; det.keywords && j < kw->nkids; j++) {
				const struct ynode *x = kw->kids[j];
				if (!is_scalar(x) || !x->str[0]) {
					eadd(L->e, x->line, "detectors: keywords must be non-empty strings");
					bad = true;
				} else if (!(det.keywords[det.nkeywords++] = strdup(x->str))) {
					L->e->oom = true;
				}
			}
		}
		if (!(det.name = strdup(nm->str)) || (re && is_scalar(re) && !(det.regex = strdup(re->str))))
			L->e->oom = true;
		/* keep even a bad detector so that later references to it do not
		 * produce a second, misleading "unknown detector" error */
		p->dets[p->ndets++] = det;
		(void)bad;
	}
}

static void parse_redact_map(struct loader *L, const struct ynode *v, uint8_t *modes, bool *set,
			     int *def)
{
	if (v->kind != YNODE_MAP) {
		eadd(L->e, v->line, "redact: expected a map of finding type (or @list, or default): mode");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(v); i++) {
		const struct ynode *k = ytree_map_key(v, i), *x = ytree_map_val(v, i);
		int m = is_scalar(x) ? parse_redact_mode(x->str) : -1;
		uint64_t mask = 0, cm = 0;

		if (m < 0) {
			eadd(L->e, x->line, "redact: mode must be redact, mask, hash, tokenize or keep");
			continue;
		}
		if (!strcmp(k->str, "default")) {
			*def = m;
			continue;
		}
		if (finding_ref(L->p, k->str, &mask, &cm)) {
			eadd(L->e, k->line, "redact: unknown finding type or list '%s'", k->str);
			continue;
		}
		for (int t = 0; t < FINDING__COUNT; t++)
			if (mask & (1ull << t)) {
				modes[t] = (uint8_t)m;
				set[t] = true;
			}
	}
}

static bool parse_mode(struct loader *L, const struct ynode *v, bool *monitor)
{
	if (is_scalar(v) && !strcmp(v->str, "monitor"))
		*monitor = true;
	else if (is_scalar(v) && !strcmp(v->str, "enforce"))
		*monitor = false;
	else {
		eadd(L->e, v->line, "mode: expected enforce or monitor");
		return false;
	}
	return true;
}

/* An answer rule (when: output_finding): it redacts the model's answer,
 * so its action is redact, and its modes apply to the types it names. A
 * token in an answer would reach the user, never the model: tokenize is
 * refused in the rule's own map and, inherited from `redaction:`, falls
 * back to the placeholder. */
static void answer_rule_modes(struct loader *L, struct rule *ru, const struct ynode *act,
			      const uint8_t *modes, const bool *set, int def)
{
	const char *nm = ru->name ? ru->name : "?";
	if (act && is_scalar(act) && ru->action != POLICY_REDACT && ru->action != POLICY_WARN)
		eadd(L->e, act->line,
		     "rule '%s': a rule on output_finding redacts the answer or warns: action must be redact or warn",
		     nm);
	if (!ru->c.output_mask)
		eadd(L->e, ru->line, "rule '%s' can never match: its output_finding list is empty", nm);
	for (int t = 0; t < FINDING__COUNT; t++) {
		int m;
		if (set[t])
			m = modes[t];
		else if (!(ru->c.output_mask & (1ull << t)))
			m = REDACT_KEEP;
		else
			m = def >= 0 ? def : modes[t];
		if (m == REDACT_TOKENIZE) {
			if (set[t] || def == REDACT_TOKENIZE)
				eadd(L->e, ru->line,
				     "rule '%s': tokenize cannot apply to an answer (the token would reach the user); use redact, mask or hash",
				     nm);
			m = REDACT_PLACEHOLDER;
		}
		ru->redact[t] = (uint8_t)m;
	}
}

static void parse_rule(struct loader *L, const struct ynode *r, struct rule *ru)
{
	struct policy *p = L->p;
	const struct ynode *nm = NULL, *when = NULL, *act = NULL, *red = NULL;
	uint8_t modes[FINDING__COUNT];
	bool set[FINDING__COUNT] = { 0 };
	int def = -1;

	ru->line = r->line;
	if (r->kind != YNODE_MAP) {
		eadd(L->e, r->line, "rules: each rule is a map {name, when, action}");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(r); i++) {
		const struct ynode *k = ytree_map_key(r, i), *v = ytree_map_val(r, i);
		if (!strcmp(k->str, "name"))
			nm = v;
		else if (!strcmp(k->str, "when"))
			when = v;
		else if (!strcmp(k->str, "action"))
			act = v;
		else if (!strcmp(k->str, "redact"))
			red = v;
		else if (!strcmp(k->str, "mode"))
			parse_mode(L, v, &ru->monitor);
		else if (!strcmp(k->str, "message")) {
			if (!is_scalar(v))
				eadd(L->e, v->line, "message: expected a string");
			else if (!(ru->message = strndup(v->str, 160)))
				L->e->oom = true;
		} else
			eadd(L->e, k->line, "rule: unknown key '%s' (name, when, action, redact, mode, message)",
			     k->str);
	}
	ru->name = entry_name(L, r->line, nm, "rule", "duplicate rule name", p->rules, p->nrules,
			      sizeof(*p->rules), offsetof(struct rule, name), offsetof(struct rule, line), ru);
	if (!act)
		eadd(L->e, r->line, "rule '%s': missing action", nm && is_scalar(nm) ? nm->str : "?");
	else if (!is_scalar(act) || parse_action(act->str, &ru->action))
		eadd(L->e, act->line, "action: expected allow, block, redact, alert or warn");
	parse_conds(L, when, &ru->c, NULL);
	memcpy(modes, p->base_redact, sizeof(modes));
	if (red) {
		if (act && is_scalar(act) && strcmp(act->str, "redact"))
			eadd(L->e, red->line, "redact: only meaningful with action: redact");
		parse_redact_map(L, red, modes, set, &def);
	}
	if (ru->c.has_output) {
		answer_rule_modes(L, ru, act, modes, set, def);
		return;
	}
	for (int t = 0; t < FINDING__COUNT; t++) {
		if (set[t])
			ru->redact[t] = modes[t];
		else if (ru->c.has_finding && !(ru->c.finding_mask & (1ull << t)))
			ru->redact[t] = REDACT_KEEP;
		else
			ru->redact[t] = def >= 0 ? (uint8_t)def : modes[t];
	}
}

/* pricing: the collector's syntax and code (common/pricing.c), so the
 * agent's copy of the table prices an exchange as the collector will. Its
 * errors come back as ":LINE: reason" (no file name given) and join the
 * policy's own. */
static void parse_pricing(struct loader *L, const struct ynode *v)
{
	char err[512];
	int line = v->line, off = 0;
	if (!pricing_parse("", v, &L->p->pricing, err, sizeof(err)))
		return;
	if (sscanf(err, ":%d: %n", &line, &off) < 1 || !off)
		off = 0;
	eadd(L->e, line, "%s", err + off);
}

/* cost: an amount of the pricing table's currency such as 25 or 2.50,
 * kept in millionths (the counters are integers). */
static int parse_cost(const char *s, uint64_t *out)
{
	char *end;
	double d = strtod(s, &end);
	if (end == s || *end || !(d > 0) || d > 1e9)
		return -EINVAL;
	*out = (uint64_t)llround(d * 1e6);
	return 0;
}

static void parse_budget(struct loader *L, const struct ynode *b, struct budget_def *bd)
{
	struct policy *p = L->p;
	const struct ynode *nm = ytree_get(b, "name");
	bool have_limit = false, have_window = false;

	bd->pub.line = b->line;
	bd->pub.per = BUDGET_PER_USER;
	bd->c.empty = true;
	if (b->kind != YNODE_MAP) {
		eadd(L->e, b->line, "budgets: each budget is a map {name, per, tokens | requests | cost, window}");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(b); i++) {
		const struct ynode *k = ytree_map_key(b, i), *v = ytree_map_val(b, i);
		const char *ks = k->str;
		if (!strcmp(ks, "name")) {
			continue;
		} else if (!strcmp(ks, "per")) {
			static const char *const per[] = { "user", "unix_group", "exe", "all" };
			int f = -1;
			for (int j = 0; j < 4 && is_scalar(v); j++)
				if (!strcmp(v->str, per[j]) || (j == 1 && !strcmp(v->str, "group")))
					f = j;
			if (f < 0)
				eadd(L->e, v->line, "budget: per must be user, unix_group, exe or all");
			else
				bd->pub.per = (enum policy_budget_per)f;
		} else if (!strcmp(ks, "cost")) {
			if (have_limit)
				eadd(L->e, k->line, "budget: give one of tokens, requests, requests_per_minute, cost");
			have_limit = true;
			bd->pub.kind = BUDGET_COST;
			if (!is_scalar(v) || parse_cost(v->str, &bd->pub.limit))
				eadd(L->e, v->line, "budget: cost: expected an amount of the pricing currency such as 25 or 2.50");
			else if (!p->pricing.n)
				eadd(L->e, v->line, "budget: cost needs a pricing: table in the policy (as in collector.yaml)");
		} else if (!strcmp(ks, "tokens") || !strcmp(ks, "requests") ||
			   !strcmp(ks, "requests_per_minute")) {
			if (have_limit)
				eadd(L->e, k->line, "budget: give one of tokens, requests, requests_per_minute, cost");
			have_limit = true;
			bd->pub.kind = ks[0] == 't' ? BUDGET_TOKENS : BUDGET_REQUESTS;
			if (!is_scalar(v) || parse_count(v->str, &bd->pub.limit))
				eadd(L->e, v->line, "budget: %s: expected a count such as 1000, 200k or 1M", ks);
			if (!strcmp(ks, "requests_per_minute")) {
				if (have_window)
					eadd(L->e, k->line, "budget: requests_per_minute already sets the window");
				have_window = true;
				bd->pub.window_s = 60;
			}
		} else if (!strcmp(ks, "window")) {
			if (have_window && bd->pub.window_s == 60 && bd->pub.kind == BUDGET_REQUESTS)
				eadd(L->e, k->line, "budget: requests_per_minute already sets the window");
			have_window = true;
			if (is_scalar(v) && !strcmp(v->str, "minute"))
				bd->pub.window_s = 60;
			else if (is_scalar(v) && !strcmp(v->str, "hour"))
				bd->pub.window_s = 3600;
			else if (is_scalar(v) && !strcmp(v->str, "day"))
				bd->pub.window_s = 86400;
			else
				eadd(L->e, v->line, "budget: window must be minute, hour or day");
		} else if (!strcmp(ks, "when")) {
			parse_conds(L, v, &bd->c, &budget_scope);
		} else if (!strcmp(ks, "mode")) {
			parse_mode(L, v, &bd->pub.monitor);
		} else {
			eadd(L->e, k->line, "budget: unknown key '%s' (name, per, tokens, requests, requests_per_minute, cost, window, when, mode)", ks);
		}
	}
	bd->pub.name = entry_name(L, b->line, nm, "budget", "duplicate budget", p->budgets, p->nbudgets,
				  sizeof(*p->budgets), offsetof(struct budget_def, pub.name),
				  offsetof(struct budget_def, pub.line), bd);
	if (!have_limit)
		eadd(L->e, b->line, "budget: needs tokens, requests or requests_per_minute");
	if (!have_window)
		eadd(L->e, b->line, "budget: needs window (minute, hour, day)");
	if (bd->pub.per == BUDGET_PER_GROUP && !bd->c.pos[SC_GROUP].line)
		eadd(L->e, b->line, "budget: per: unix_group needs when: { unix_group: [...] } (the groups that share it)");
}

/* One rejected_ca: entry {name, when, action: block | passthrough, ttl}. */
static void parse_rejca(struct loader *L, const struct ynode *r, struct rejca_rule *rr)
{
	struct policy *p = L->p;
	const struct ynode *nm = NULL, *act = NULL, *ttl = NULL;

	rr->line = r->line;
	rr->c.empty = true;
	if (r->kind != YNODE_MAP) {
		eadd(L->e, r->line, "rejected_ca: each entry is a map {name, when, action, ttl}");
		return;
	}
	for (size_t i = 0; i < ytree_map_len(r); i++) {
		const struct ynode *k = ytree_map_key(r, i), *v = ytree_map_val(r, i);
		if (!strcmp(k->str, "name"))
			nm = v;
		else if (!strcmp(k->str, "when"))
			parse_conds(L, v, &rr->c, &rejca_scope);
		else if (!strcmp(k->str, "action"))
			act = v;
		else if (!strcmp(k->str, "ttl"))
			ttl = v;
		else
			eadd(L->e, k->line, "rejected_ca: unknown key '%s' (name, when, action, ttl)", k->str);
	}
	rr->name = entry_name(L, r->line, nm, "rejected_ca", "duplicate name", p->rejca, p->nrejca,
			      sizeof(*p->rejca), offsetof(struct rejca_rule, name), offsetof(struct rejca_rule, line), rr);
	if (!act)
		eadd(L->e, r->line, "rejected_ca: missing action (block or passthrough)");
	else if (is_scalar(act) && (!strcmp(act->str, "block") || !strcmp(act->str, "passthrough")))
		rr->passthrough = act->str[0] == 'p';
	else
		eadd(L->e, act->line, "rejected_ca: action must be block or passthrough");
	if (ttl) {
		unsigned long long ms = 0;
		char buf[512];
		if (!is_scalar(ttl) || ytree_duration_ms(L->e->file, ttl, &ms, buf, sizeof(buf)) || !ms ||
		    ms > 24ULL * 3600 * 1000)
			eadd(L->e, ttl->line, "rejected_ca: ttl must be a duration from 1ms to 24h (such as 30m)");
		else if (act && is_scalar(act) && strcmp(act->str, "passthrough"))
			eadd(L->e, ttl->line, "rejected_ca: ttl is only meaningful with action: passthrough");
		rr->ttl_ms = (uint32_t)(ms <= 24ULL * 3600 * 1000 ? ms : 0);
	}
}

/* ------------------------------------------------------------ static checks */

/* Every string matching a also matches b (conservative: false when unsure). */
static bool pat_covers(const struct pat *b, const struct pat *a, int flags)
{
	if (!strcmp(b->s, "*") && !(flags & FNM_PATHNAME))
		return true;
	if (!strcmp(a->s, b->s))
		return true;
	if (!a->glob)
		return b->glob ? fnmatch(b->s, a->s, flags) == 0 : false;
	return false;
}

static bool set_covers(const struct strcond *big, const struct strcond *small, int flags)
{
	for (size_t i = 0; i < small->n; i++) {
		bool ok = false;
		for (size_t j = 0; j < big->n && !ok; j++)
			ok = pat_covers(&big->pats[j], &small->pats[i], flags);
		if (!ok)
			return false;
	}
	return true;
}

/* Whether a literal positive pattern list is entirely outside neg (so any
 * value it matches satisfies a _not condition with neg). */
static bool set_disjoint_literal(const struct strcond *pos, const struct strcond *neg, int flags)
{
	for (size_t i = 0; i < pos->n; i++) {
		if (pos->pats[i].glob)
			return false;
		for (size_t j = 0; j < neg->n; j++)
			if (neg->pats[j].glob ? fnmatch(neg->pats[j].s, pos->pats[i].s, flags) == 0
					      : !strcmp(neg->pats[j].s, pos->pats[i].s))
				return false;
	}
	return true;
}

static bool gids_subset(const struct strcond *small, const struct strcond *big)
{
	for (size_t i = 0; i < small->ngids; i++) {
		bool ok = false;
		if (small->gids[i] == (gid_t)-1)    /* unknown here: be conservative */
			return false;
		for (size_t j = 0; j < big->ngids && !ok; j++)
			ok = small->gids[i] == big->gids[j];
		if (!ok)
			return false;
	}
	return true;
}

/* Does every request that b matches also match a? */
static bool conds_cover(const struct conds *a, const struct conds *b)
{
	for (int s = 0; s < SC__COUNT; s++) {
		int fl = scond_info[s].fnm_flags;
		if (a->pos[s].line) {
			if (!b->pos[s].line)
				return false;
			if (s == SC_GROUP ? !gids_subset(&b->pos[s], &a->pos[s])
					  : !set_covers(&a->pos[s], &b->pos[s], fl))
				return false;
		}
		if (a->neg[s].line) {
			bool ok = false;
			if (b->neg[s].line)
				ok = s == SC_GROUP ? gids_subset(&a->neg[s], &b->neg[s])
						   : set_covers(&b->neg[s], &a->neg[s], fl);
			if (!ok && b->pos[s].line && s != SC_GROUP && s != SC_TOOL)
				ok = set_disjoint_literal(&b->pos[s], &a->neg[s], fl);
			if (!ok)
				return false;
		}
	}
	if (a->has_finding && (!b->has_finding || (b->finding_mask & ~a->finding_mask) ||
			       (b->custom_mask & ~a->custom_mask)))
		return false;
	if (a->has_score && (!b->has_score || b->min_score < a->min_score))
		return false;
	if (a->has_bytes && (!b->has_bytes || b->min_bytes < a->min_bytes))
		return false;
	if (a->has_packaged && (!b->has_packaged || b->packaged != a->packaged))
		return false;
	if (a->has_time && (!b->has_time || (b->days & ~a->days) || b->t_start != a->t_start ||
			    b->t_end != a->t_end))
		return false;
	return true;
}

/* A condition and its _not twin that exclude each other entirely. */
static void check_contradictions(struct loader *L, const struct rule *r)
{
	for (int s = 0; s < SC__COUNT; s++) {
		const struct strcond *ps = &r->c.pos[s], *ns = &r->c.neg[s];
		bool dead;
		if (!ps->line || !ns->line || s == SC_TOOL)   /* tools: a request declares several */
			continue;
		if (s == SC_GROUP)
			dead = false;    /* a user is in several groups: never certain */
		else
			dead = set_covers(ns, ps, scond_info[s].fnm_flags);
		if (dead)
			eadd(L->e, ns->line,
			     "rule '%s' can never match: every value allowed by '%s' is excluded by '%s_not'",
			     r->name ? r->name : "?", scond_info[s].name, scond_info[s].name);
	}
	if (r->c.has_finding && !r->c.finding_mask && !r->c.custom_mask)
		eadd(L->e, r->line, "rule '%s' can never match: its finding list is empty",
		     r->name ? r->name : "?");
}

/* ------------------------------------------------------------ load */

static void conds_free(struct conds *c)
{
	for (int s = 0; s < SC__COUNT; s++)
		for (int n = 0; n < 2; n++) {
			struct strcond *sc = n ? &c->neg[s] : &c->pos[s];
			for (size_t i = 0; i < sc->n; i++)
				free(sc->pats[i].s);
			free(sc->pats);
			free(sc->gids);
		}
}

static void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nrules; i++) {
		free(p->rules[i].name);
		free(p->rules[i].message);
		conds_free(&p->rules[i].c);
	}
	free(p->rules);
	for (size_t i = 0; i < p->nbudgets; i++) {
		free((char *)p->budgets[i].pub.name);
		conds_free(&p->budgets[i].c);
	}
	free(p->budgets);
	for (size_t i = 0; i < p->nrejca; i++) {
		free(p->rejca[i].name);
		conds_free(&p->rejca[i].c);
	}
	free(p->rejca);
	for (size_t i = 0; i < p->ndets; i++) {
		free(p->dets[i].name);
		free(p->dets[i].regex);
		for (size_t k = 0; k < p->dets[i].nkeywords; k++)
			free(p->dets[i].keywords[k]);
		free(p->dets[i].keywords);
	}
	free(p->dets);
	free(p->custom);
	for (size_t i = 0; i < p->nlists; i++)
		free(p->lists[i].name);
	free(p->lists);
	pathset_free(p->packaged);
	pricing_free(&p->pricing);
	free(p->warnings);
	free(p->path);
	free(p);
}

static void parse_rejca_list(struct loader *L, const struct ynode *v)
{
	struct policy *p = L->p;

	if (v->kind != YNODE_SEQ) {
		eadd(L->e, v->line, "rejected_ca: expected a list of entries");
		return;
	}
	if (!(p->rejca = calloc(v->nkids + 1, sizeof(*p->rejca)))) {
		L->e->oom = true;
		return;
	}
	for (size_t i = 0; i < v->nkids; i++)
		parse_rejca(L, v->kids[i], &p->rejca[p->nrejca++]);
	/* first match wins: an entry covered by an earlier one is dead */
	for (size_t j = 0; j < p->nrejca; j++)
		for (size_t i = 0; i < j; i++)
			if (conds_cover(&p->rejca[i].c, &p->rejca[j].c)) {
				eadd(L->e, p->rejca[j].line,
				     "rejected_ca '%s' can never match: shadowed by the earlier entry '%s' (line %d)",
				     p->rejca[j].name ? p->rejca[j].name : "?",
				     p->rejca[i].name ? p->rejca[i].name : "?", p->rejca[i].line);
				break;
			}
}

static void parse_root(struct loader *L, const struct ynode *root)
{
	struct policy *p = L->p;
	static const char *const keys[] = { "version", "default", "mode", "timezone", "redaction",
					    "lists", "detectors", "pricing", "budgets", "rules", "rejected_ca", NULL };
	const struct ynode *v;
	uint8_t modes[FINDING__COUNT];
	bool set[FINDING__COUNT] = { 0 };
	int def = -1;

	for (size_t i = 0; i < ytree_map_len(root); i++) {
		const struct ynode *k = ytree_map_key(root, i);
		bool ok = false;
		for (int j = 0; keys[j] && !ok; j++)
			ok = !strcmp(k->str, keys[j]);
		if (!ok)
			eadd(L->e, k->line,
			     "unknown key '%s' (version, default, mode, timezone, redaction, lists, detectors, pricing, budgets,"
			     " rules, rejected_ca)",
			     k->str);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(ytree_map_key(root, j)->str, k->str))
				eadd(L->e, k->line, "duplicate key '%s'", k->str);
	}
	if ((v = ytree_get(root, "version")) && !(is_scalar(v) && !strcmp(v->str, "1")))
		eadd(L->e, v->line, "version: only version 1 is known");
	p->def = POLICY_ALLOW;
	if ((v = ytree_get(root, "default")) && (!is_scalar(v) || parse_action(v->str, &p->def) ||
						 p->def == POLICY_REDACT || p->def == POLICY_WARN))
		eadd(L->e, v->line, "default: expected allow, alert or block");
	if ((v = ytree_get(root, "mode")))
		parse_mode(L, v, &p->monitor);
	if ((v = ytree_get(root, "timezone"))) {
		if (is_scalar(v) && !strcmp(v->str, "utc"))
			p->utc = true;
		else if (!is_scalar(v) || strcmp(v->str, "local"))
			eadd(L->e, v->line, "timezone: expected local or utc");
	}
	if ((v = ytree_get(root, "detectors")))
		parse_detectors(L, v);
	if ((v = ytree_get(root, "lists")))
		parse_lists(L, v);
	memset(modes, REDACT_PLACEHOLDER, sizeof(modes));
	if ((v = ytree_get(root, "redaction")))
		parse_redact_map(L, v, modes, set, &def);
	for (int t = 0; t < FINDING__COUNT; t++)
		p->base_redact[t] = set[t] ? modes[t] : def >= 0 ? (uint8_t)def : REDACT_PLACEHOLDER;
	if ((v = ytree_get(root, "pricing")))
		parse_pricing(L, v);
	if ((v = ytree_get(root, "budgets"))) {
		if (v->kind != YNODE_SEQ) {
			eadd(L->e, v->line, "budgets: expected a list");
		} else if ((p->budgets = calloc(v->nkids + 1, sizeof(*p->budgets)))) {
			for (size_t i = 0; i < v->nkids; i++)
				parse_budget(L, v->kids[i], &p->budgets[p->nbudgets++]);
		} else {
			L->e->oom = true;
		}
	}
	if ((v = ytree_get(root, "rules"))) {
		if (v->kind != YNODE_SEQ) {
			eadd(L->e, v->line, "rules: expected a list of rules");
		} else if ((p->rules = calloc(v->nkids + 1, sizeof(*p->rules)))) {
			for (size_t i = 0; i < v->nkids; i++)
				parse_rule(L, v->kids[i], &p->rules[p->nrules++]);
		} else {
			L->e->oom = true;
		}
	}
	if ((v = ytree_get(root, "rejected_ca")))
		parse_rejca_list(L, v);
	/* whole-policy checks: contradictions, then shadowing (first match
	 * wins, so a rule covered by an earlier one is dead) */
	for (size_t j = 0; j < p->nrules; j++) {
		check_contradictions(L, &p->rules[j]);
		for (size_t i = 0; i < j; i++)
			if (p->rules[i].c.has_output == p->rules[j].c.has_output &&
			    conds_cover(&p->rules[i].c, &p->rules[j].c)) {
				eadd(L->e, p->rules[j].line,
				     "rule '%s' can never match: shadowed by the earlier rule '%s' (line %d), which matches every request it matches",
				     p->rules[j].name ? p->rules[j].name : "?",
				     p->rules[i].name ? p->rules[i].name : "?", p->rules[i].line);
				break;
			}
	}
}

int policy_parse(const char *name, const char *buf, size_t len, const struct policy_load_opts *opts,
		 struct policy **out, char **errs)
{
	struct errs e = { .file = name };
	struct loader L = { .e = &e, .opts = opts };
	struct ynode *root = NULL;
	struct policy *p;
	char yerr[512];
	unsigned char md[32];
	unsigned mdlen = 0;
	int ret;

	*out = NULL;
	if (errs)
		*errs = NULL;
	if (!(p = calloc(1, sizeof(*p))) || !(p->path = strdup(name))) {
		free(p);
		return -ENOMEM;
	}
	p->refs = 1;
	L.p = p;
	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL)) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < 32; i++)
		snprintf(p->hash + 2 * i, 3, "%02x", md[i]);
	if ((ret = ytree_parse(name, buf, len, &root, yerr, sizeof(yerr)))) {
		if (errs && ret == -EINVAL)
			*errs = strdup(yerr[0] ? yerr : "parse error");
		goto err;
	}
	if (!root) {
		eadd(&e, 1, "empty policy file (write at least `default: allow` or `default: block`)");
	} else if (root->kind != YNODE_MAP) {
		eadd(&e, root->line, "expected a map at the top level");
	} else {
		parse_root(&L, root);
	}
	if (e.oom) {
		ret = -ENOMEM;
		goto err;
	}
	if (e.n) {
		ret = -EINVAL;
		goto err;
	}
	if (L.need_dpkg) {
		const char *dir = opts && opts->dpkg_info_dir ? opts->dpkg_info_dir : DEFAULT_DPKG_INFO;
		if (!(p->packaged = pathset_load_dpkg(dir))) {
			ret = -ENOMEM;
			goto err;
		}
	}
	if (p->ndets) {
		if (!(p->custom = calloc(p->ndets, sizeof(*p->custom)))) {
			ret = -ENOMEM;
			goto err;
		}
		for (size_t i = 0; i < p->ndets; i++)
			p->custom[i] = (struct inspect_custom){ .name = p->dets[i].name,
				.regex = p->dets[i].regex,
				.keywords = (const char *const *)p->dets[i].keywords,
				.nkeywords = p->dets[i].nkeywords };
	}
	ytree_free(root);
	free(e.buf);
	*out = p;
	return 0;
err:
	if (errs && !*errs && e.buf)
		*errs = e.buf;
	else
		free(e.buf);
	ytree_free(root);
	policy_free(p);
	return ret;
}

int policy_load(const char *path, const struct policy_load_opts *opts, struct policy **out,
		char **errs)
{
	int fd, ret;
	struct stat st;
	char *buf = NULL;
	size_t got = 0;

	*out = NULL;
	if (errs)
		*errs = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		ret = -errno;
		goto io_err;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		close(fd);
		goto io_err;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_POLICY_BYTES) {
		ret = S_ISREG(st.st_mode) ? -EFBIG : -EISDIR;
		close(fd);
		goto io_err;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	ret = policy_parse(path, buf, got, opts, out, errs);
	free(buf);
	return ret;
io_err:
	if (errs && asprintf(errs, "%s:0: cannot read policy: %s\n", path, strerror(-ret)) < 0)
		*errs = NULL;
	return ret;
}

struct policy *policy_ref(struct policy *p)
{
	if (p)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void policy_unref(struct policy *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		policy_free(p);
}

const char *policy_hash(const struct policy *p) { return p ? p->hash : ""; }
const char *policy_path(const struct policy *p) { return p ? p->path : ""; }
size_t policy_rule_count(const struct policy *p) { return p ? p->nrules : 0; }

bool policy_has_tool_rules(const struct policy *p)
{
	for (size_t i = 0; p && i < p->nrules; i++)
		if ((p->rules[i].c.pos_mask | p->rules[i].c.neg_mask) & (1u << SC_TOOL))
			return true;
	return false;
}
bool policy_names_finding(const struct policy *p, enum finding_type t)
{
	for (size_t i = 0; p && i < p->nrules; i++)
		if (p->rules[i].c.has_finding && (p->rules[i].c.finding_mask & (1ull << t)))
			return true;
	return false;
}
bool policy_global_monitor(const struct policy *p) { return p && p->monitor; }
bool policy_utc(const struct policy *p) { return p && p->utc; }
enum policy_action policy_default(const struct policy *p) { return p ? p->def : POLICY_ALLOW; }
size_t policy_budget_count(const struct policy *p) { return p ? p->nbudgets : 0; }
size_t policy_rejected_ca_count(const struct policy *p) { return p ? p->nrejca : 0; }

const struct pricing *policy_pricing(const struct policy *p) { return &p->pricing; }

const char *policy_warnings(const struct policy *p) { return p && p->warnings ? p->warnings : ""; }

const struct policy_budget *policy_budget_get(const struct policy *p, size_t i)
{
	return p && i < p->nbudgets ? &p->budgets[i].pub : NULL;
}

const struct inspect_custom *policy_detectors(const struct policy *p, size_t *n)
{
	*n = p ? p->ndets : 0;
	return p ? p->custom : NULL;
}

