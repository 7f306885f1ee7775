/* store: dispatch from the one interface to its implementation, plus the
 * small helpers both implementations share (findings text form, result
 * arena). Must never contain backend-specific SQL. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store.h"

int store_open(const char *url, struct store **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!url || !*url) {
		snprintf(err, errlen, "store: empty URL");
		return -EINVAL;
	}
	if (strncmp(url, "sqlite:", 7) == 0)
		return store_sqlite_open(url + 7, out, err, errlen);
	if (strncmp(url, "clickhouse://", 13) == 0)
		return store_clickhouse_open(url, out, err, errlen);
	snprintf(err, errlen, "store: unknown scheme in '%.100s' (sqlite:PATH or clickhouse://HOST:PORT/DB)", url);
	return -EINVAL;
}

void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}

const char *store_errmsg(struct store *s) { return s->errmsg; }
const char *store_kind(const struct store *s) { return s->ops->kind; }

void store_seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
}

int store_insert_batch(struct store *s, const struct store_batch *b, size_t *ins, size_t *dups)
{
	size_t i0 = 0, d0 = 0;
	return s->ops->insert_batch(s, b, ins ? ins : &i0, dups ? dups : &d0);
}

int store_insert_batches(struct store *s, const struct store_batch *b, size_t n, struct store_result *res)
{
	if (s->ops->insert_batches)
		return s->ops->insert_batches(s, b, n, res);
	/* No transactions across batches (ClickHouse): one after the other. */
	for (size_t i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		int rc = s->ops->insert_batch(s, &b[i], &res[i].inserted, &res[i].dups);
		if (rc == -EEXIST) {
			res[i].rc = rc;
			snprintf(res[i].why, sizeof(res[i].why), "%s", s->errmsg);
		} else if (rc) {
			return rc;
		}
	}
	return 0;
}

int store_insert_local(struct store *s, const struct store_event *e) { return s->ops->insert_local(s, e); }

int store_query(struct store *s, const struct store_filter *f, struct store_rows *out)
{
	memset(out, 0, sizeof(*out));
	return s->ops->query(s, f, out);
}

int store_usage(struct store *s, enum store_top_kind k, const struct store_filter *f, struct store_usage_row **out,
		size_t *n)
{
	*out = NULL;
	*n = 0;
	return s->ops->usage(s, k, f, out, n);
}

void store_usage_free(struct store_usage_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		free(rows[i].key);
		free(rows[i].provider);
		free(rows[i].model);
	}
	free(rows);
}

int store_inventory(struct store *s, const struct store_filter *f, struct store_inventory_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	return s->ops->inventory(s, f, out, n);
}

void store_inventory_free(struct store_inventory_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		free(rows[i].user);
		free(rows[i].exe);
		free(rows[i].provider);
		free(rows[i].host);
	}
	free(rows);
}

int store_review_set(struct store *s, const struct store_review *r)
{
	if (!r->exe || !r->provider || !r->state || !STORE_REVIEW_STATE_OK(r->state)) {
		store_seterr(s, "a review needs exe, provider and a state unreviewed|approved|unapproved");
		return -EINVAL;
	}
	return s->ops->review_set(s, r);
}

int store_review_list(struct store *s, struct store_review **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	return s->ops->review_list(s, out, n);
}

void store_review_free(struct store_review *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		free(rows[i].exe);
		free(rows[i].provider);
		free(rows[i].state);
		free(rows[i].by);
	}
	free(rows);
}

int store_feed(struct store *s, uint64_t after, size_t limit, struct store_rows *out, uint64_t *next)
{
	memset(out, 0, sizeof(*out));
	*next = after;
	if (!s->ops->feed) {
		store_seterr(s, "the %s store keeps no commit order to forward from", s->ops->kind);
		return -ENOTSUP;
	}
	return s->ops->feed(s, after, limit, out, next);
}

int store_top(struct store *s, enum store_top_kind k, const struct store_filter *f, size_t limit,
	      struct store_top_row **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	return s->ops->top(s, k, f, limit ? limit : 10, out, n);
}

int store_count(struct store *s, const struct store_filter *f, uint64_t *out) { return s->ops->count(s, f, out); }

int store_agent_get(struct store *s, const char *id, struct store_agent *out)
{
	memset(out, 0, sizeof(*out));
	return s->ops->agent_get(s, id, out);
}

int store_agent_pin_key(struct store *s, const char *id, const uint8_t key[32]) { return s->ops->agent_pin_key(s, id, key); }
int store_agent_set_revoked(struct store *s, const char *id, bool r) { return s->ops->agent_set_revoked(s, id, r); }

int store_agent_list(struct store *s, struct store_agent **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	return s->ops->agent_list(s, out, n);
}

int store_scan_events(struct store *s, const char *id, store_event_cb cb, void *ctx) { return s->ops->scan_events(s, id, cb, ctx); }
int store_scan_batches(struct store *s, const char *id, store_batch_cb cb, void *ctx) { return s->ops->scan_batches(s, id, cb, ctx); }

int store_retain(struct store *s, int64_t before_us, uint64_t *deleted)
{
	uint64_t d0 = 0;
	return s->ops->retain(s, before_us, deleted ? deleted : &d0);
}

static const char *const top_names[] = {
	[STORE_TOP_USERS] = "users", [STORE_TOP_EXES] = "exes", [STORE_TOP_PROVIDERS] = "providers",
	[STORE_TOP_FINDINGS] = "findings", [STORE_TOP_HOSTS] = "hosts", [STORE_TOP_MODELS] = "models",
	[STORE_TOP_ACTIONS] = "actions", [STORE_TOP_AGENTS] = "agents", [STORE_TOP_TOOLS] = "tools",
	[STORE_TOP_MCP_SERVERS] = "mcp_servers", [STORE_TOP_MCP_METHODS] = "mcp_methods",
	[STORE_TOP_MCP_SESSIONS] = "mcp_sessions",
};

int store_top_parse(const char *name, enum store_top_kind *out)
{
	for (size_t i = 0; i < sizeof(top_names) / sizeof(top_names[0]); i++)
		if (name && strcmp(name, top_names[i]) == 0) {
			*out = (enum store_top_kind)i;
			return 0;
		}
	return -EINVAL;
}

const char *store_top_name(enum store_top_kind k)
{
	return (size_t)k < sizeof(top_names) / sizeof(top_names[0]) ? top_names[k] : "?";
}

void store_rows_free(struct store_rows *r)
{
	if (!r)
		return;
	store_arena_free(r->arena);
	memset(r, 0, sizeof(*r));
}

void store_top_free(struct store_top_row *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i].key);
	free(rows);
}

static bool type_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '.';
}

int store_findings_format(const struct store_finding *f, size_t n, char *buf, size_t len)
{
	size_t off = 0;
	if (len)
		buf[0] = 0;
	for (size_t i = 0; i < n; i++) {
		char t[STORE_FINDING_TYPE_MAX];
		size_t k = 0;
		/* Types come from the agent's catalogue; anything outside the
		 * alphabet is dropped so the text form stays unambiguous. */
		for (const char *p = f[i].type; *p && k + 1 < sizeof(t); p++)
			if (type_char_ok(*p))
				t[k++] = *p;
		t[k] = 0;
		if (!k)
			continue;
		int w = snprintf(buf + off, len - off, "%s%s:%u", off ? "," : "", t, f[i].count);
		if (w < 0 || (size_t)w >= len - off)
			return -ENOSPC;
		off += (size_t)w;
	}
	return 0;
}

size_t store_findings_parse(const char *s, struct store_finding *out, size_t max)
{
	size_t n = 0;
	while (s && *s && n < max) {
		const char *comma = strchr(s, ',');
		size_t l = comma ? (size_t)(comma - s) : strlen(s);
		const char *colon = memchr(s, ':', l);
		if (colon && (size_t)(colon - s) < STORE_FINDING_TYPE_MAX && colon > s) {
			memcpy(out[n].type, s, (size_t)(colon - s));
			out[n].type[colon - s] = 0;
			out[n].count = (uint32_t)strtoul(colon + 1, NULL, 10);
			n++;
		}
		s = comma ? comma + 1 : s + l;
	}
	return n;
}

/* A chain of 64 KiB blocks; freed all at once with the rows. */
struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	char data[];
};
struct store_arena {
	struct arena_block *head;
};

struct store_arena *store_arena_new(void) { return calloc(1, sizeof(struct store_arena)); }

void store_arena_free(struct store_arena *a)
{
	if (!a)
		return;
	for (struct arena_block *b = a->head, *n; b; b = n) {
		n = b->next;
		free(b);
	}
	free(a);
}

void *store_arena_alloc(struct store_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct arena_block *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

char *store_arena_strdup(struct store_arena *a, const char *s, size_t n)
{
	if (!s) {
		s = "";
		n = 0;
	}
	char *p = store_arena_alloc(a, n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}
