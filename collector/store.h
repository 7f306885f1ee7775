/* store: the collector's one storage interface, with two implementations
 * behind it: SQLite (store_sqlite.c, the embedded default for a pilot) and
 * ClickHouse over its HTTP interface (store_clickhouse.c, a fleet). Both
 * give the same answers to the same calls; tests/unit/test_store.c runs one
 * suite against each.
 *
 * Owns: the schema (created on first open, versioned migrations), batch
 * commits with (agent_id, boot_id, seq) deduplication, per-agent key pinning
 * and revocation, the SOC's filtered queries and aggregates, the scans that
 * `vigil verify` walks, and retention. Must never: decide whether a batch is
 * authentic (ingest.c does that before calling in), or build SQL by pasting
 * caller strings (SQLite binds parameters; ClickHouse quotes every literal
 * through one escaping function).
 *
 * Ownership: everything passed in is borrowed for the duration of the call.
 * Rows returned (store_rows, store_top_row, store_agent lists) are owned by
 * the caller and freed with the matching _free. The store is not thread safe:
 * callers serialise (collector/server.c holds one mutex around it). */
#ifndef VIGIL_STORE_H
#define VIGIL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define STORE_HASH_LEN 32
#define STORE_FINDING_TYPE_MAX 48

struct store_finding {
	char type[STORE_FINDING_TYPE_MAX];
	uint32_t count;
};

/* One audit event as the store keeps it: the contract's columns, plus raw
 * (the protobuf encoding E that the hash covers) so that verify can recompute
 * the chain and compare every column with what the agent signed. Strings may
 * be NULL (stored as empty). On insert everything is borrowed; in store_rows
 * everything points into the rows' own memory. */
struct store_event {
	int64_t time_us;
	const char *event_id, *agent_id, *boot_id;
	uint64_t seq;
	const char *host, *kind, *user;
	int64_t uid, gid, pid, tid;
	const char *comm, *exe, *cgroup, *dst_ip;
	const char *container_id;     /* "" = not in a container (older events: absent) */
	int64_t dst_port;
	const char *sni, *provider, *method, *path, *model;
	bool stream;
	const char *action, *rule, *reason, *error;
	struct store_finding *findings;
	size_t nfindings;
	double injection_score;          /* < 0 = none */
	int64_t status, bytes_up, bytes_down, prompt_tokens, completion_tokens, latency_ms;
	int64_t cached_tokens;           /* of prompt_tokens, from the provider's cache; -1 = unknown */
	const char *policy_hash;
	uint64_t gap_count, gap_first_seq, gap_last_seq;
	uint8_t prev_hash[STORE_HASH_LEN], hash[STORE_HASH_LEN];
	const uint8_t *raw;              /* E; NULL for records the collector made itself */
	size_t raw_len;
	const char *content;             /* optional redacted prompt text */
	/* MCP (kind mcp, and requests on an MCP server; older events: ""): the
	 * server (remote host or stdio package), JSON-RPC method, tool /
	 * resource / prompt named, and session id. */
	const char *mcp_server, *mcp_method, *tool, *mcp_session;
};

/* One signed batch: what the signature covers besides the events. */
struct store_batch {
	const char *agent_id, *boot_id;
	uint32_t schema_version;
	uint64_t first_seq, last_seq;
	const uint8_t *prev_batch_hash;
	size_t prev_batch_hash_len;
	const uint8_t *signature;
	size_t signature_len;
	int64_t received_us;
	const struct store_event *events;
	size_t nevents;
};

/* A batch header as read back by store_scan_batches (owned by the callback's
 * caller: valid only during the callback). */
struct store_batch_info {
	const char *agent_id, *boot_id;
	uint32_t schema_version;
	uint64_t first_seq, last_seq;
	const uint8_t *prev_batch_hash;
	size_t prev_batch_hash_len;
	const uint8_t *signature;
	size_t signature_len;
	int64_t received_us;
};

struct store_agent {
	char agent_id[128];
	bool has_key;
	uint8_t pubkey[32];              /* Ed25519, pinned on first use */
	bool revoked;
	int64_t first_seen_us, last_seen_us;
	/* Head of the stored chain (highest seq), if any event is stored. */
	bool has_head;
	uint64_t head_seq;
	uint8_t head_hash[STORE_HASH_LEN];
	/* Retention horizon: the newest event retention deleted (verify starts
	 * the chain there). */
	bool has_horizon;
	uint64_t horizon_seq;
	uint8_t horizon_hash[STORE_HASH_LEN];
};

/* One stored event named by its chain position (agent, boot, seq), plus
 * its time (used by the cursor only): the console's keyset cursor and its
 * link to one event. */
struct store_evref {
	int64_t time_us;
	const char *agent_id, *boot_id;
	uint64_t seq;
};

struct store_filter {
	int64_t since_us, until_us;      /* 0 = unbounded */
	const char *user, *host, *finding, *action, *exe, *provider, *model, *kind, *agent_id, *rule;
	const char *mcp_server, *mcp_method, *tool, *mcp_session;
	size_t limit;                    /* 0 = STORE_DEFAULT_LIMIT */
	/* Keyset paging (never OFFSET, which re-reads every skipped row):
	 * before keeps only the events that come after that one in query
	 * order (older); at keeps that one event only. NULL = unused. */
	const struct store_evref *before, *at;
};
#define STORE_DEFAULT_LIMIT 1000
#define STORE_MAX_LIMIT 1000000

struct store_rows {
	struct store_event *ev;          /* newest first */
	size_t n;
	void *arena;                     /* private */
};

enum store_top_kind {
	STORE_TOP_USERS, STORE_TOP_EXES, STORE_TOP_PROVIDERS, STORE_TOP_FINDINGS,
	STORE_TOP_HOSTS, STORE_TOP_MODELS, STORE_TOP_ACTIONS, STORE_TOP_AGENTS,
	STORE_TOP_TOOLS, STORE_TOP_MCP_SERVERS, STORE_TOP_MCP_METHODS, STORE_TOP_MCP_SESSIONS,
};
/* "users" -> STORE_TOP_USERS ...; -EINVAL if unknown. */
int store_top_parse(const char *name, enum store_top_kind *out);
const char *store_top_name(enum store_top_kind k);

struct store_top_row {
	char *key;
	uint64_t events;                 /* events (for findings: events with it) */
	uint64_t blocked;                /* of which action == block */
	uint64_t total;                  /* findings: summed counts; else 0 */
};

struct store;

/* url: "sqlite:PATH" or "clickhouse://HOST:PORT/DB". Creates or migrates the
 * schema. -EINVAL for an unknown scheme, with a reason in err. */
int store_open(const char *url, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
/* The last error message of a failed call (never NULL). */
const char *store_errmsg(struct store *s);
/* "sqlite" or "clickhouse". */
const char *store_kind(const struct store *s);

/* Commits b in one transaction. Events whose (agent_id, boot_id, seq) is
 * already stored with the same hash are skipped (counted in *dups); a stored
 * one with a different hash makes the whole call fail with -EEXIST and
 * nothing is written (a replay with different content). The batch header is
 * recorded once. Returns 0 only after the store committed. */
int store_insert_batch(struct store *s, const struct store_batch *b, size_t *inserted,
		       size_t *dups);
/* Group commit of n batches in one transaction where the backend has them
 * (one fsync for all): res[i].rc is 0 or -EEXIST (that batch alone was
 * refused, why says so). Returns non-zero, with nothing committed, on a
 * store failure. */
struct store_result {
	int rc;
	size_t inserted, dups;
	char why[200];
};
int store_insert_batches(struct store *s, const struct store_batch *b, size_t n, struct store_result *res);
/* A record the collector makes itself (rejected batches and the like):
 * kind/agent_id/reason etc. from e; seq and boot are assigned here. */
int store_insert_local(struct store *s, const struct store_event *e);

int store_query(struct store *s, const struct store_filter *f, struct store_rows *out);
/* Up to limit events committed after cursor `after`, oldest commit first;
 * *next is the cursor of the last one (after itself when none). Cursors
 * only grow, so a forwarder that saves *next resumes exactly there.
 * SQLite: its commit order, exact. ClickHouse: a sequence the collector
 * assigns at insert time, read a little behind (store_clickhouse.c says
 * what holds with several collectors). */
int store_feed(struct store *s, uint64_t after, size_t limit, struct store_rows *out, uint64_t *next);
void store_rows_free(struct store_rows *r);
int store_top(struct store *s, enum store_top_kind k, const struct store_filter *f,
	      size_t limit, struct store_top_row **out, size_t *n);
void store_top_free(struct store_top_row *rows, size_t n);
/* Token use grouped by (key of k, provider, model) over the events matching
 * f, for pricing the top views: unknown token counts (< 0) count as 0. At
 * most STORE_USAGE_MAX rows. */
struct store_usage_row {
	char *key, *provider, *model;
	uint64_t input_tokens, output_tokens;
	uint64_t cached_tokens;          /* of input_tokens */
};
#define STORE_USAGE_MAX 100000
int store_usage(struct store *s, enum store_top_kind k, const struct store_filter *f, struct store_usage_row **out,
		size_t *n);
void store_usage_free(struct store_usage_row *rows, size_t n);
/* Events matching f (ignores limit). */
int store_count(struct store *s, const struct store_filter *f, uint64_t *out);

/* The inventory of AI use: events grouped by (user, exe, service, host),
 * where service is the provider, or the SNI for a connection that was
 * passed through undecrypted; busiest first, at most STORE_USAGE_MAX.
 * The collector's own "review" and "alert" records are not use. */
struct store_inventory_row {
	char *user, *exe, *provider, *host;
	int64_t first_us, last_us;
	uint64_t events, requests, tokens, findings, blocks;
};
int store_inventory(struct store *s, const struct store_filter *f, struct store_inventory_row **out, size_t *n);
void store_inventory_free(struct store_inventory_row *rows, size_t n);

/* Review state of a (program, provider) pair, set by an admin. */
struct store_review {
	char *exe, *provider, *state, *by;
	int64_t at_us;
};
#define STORE_REVIEW_STATE_OK(s) (!strcmp(s, "unreviewed") || !strcmp(s, "approved") || !strcmp(s, "unapproved"))
int store_review_set(struct store *s, const struct store_review *r);
int store_review_list(struct store *s, struct store_review **out, size_t *n);
void store_review_free(struct store_review *rows, size_t n);

/* -ENOENT if the agent was never seen, enrolled or revoked. */
int store_agent_get(struct store *s, const char *agent_id, struct store_agent *out);
/* Creates the agent row if needed and pins key; -EEXIST if another key is pinned. */
int store_agent_pin_key(struct store *s, const char *agent_id, const uint8_t key[32]);
int store_agent_set_revoked(struct store *s, const char *agent_id, bool revoked);
int store_agent_list(struct store *s, struct store_agent **out, size_t *n);

/* Walks one agent's events in seq order (then boot_id), every column plus raw.
 * cb returns 0 to continue, non-zero to stop (returned). Row memory is valid
 * only during cb. */
typedef int (*store_event_cb)(void *ctx, const struct store_event *e);
int store_scan_events(struct store *s, const char *agent_id, store_event_cb cb, void *ctx);
typedef int (*store_batch_cb)(void *ctx, const struct store_batch_info *b);
int store_scan_batches(struct store *s, const char *agent_id, store_batch_cb cb, void *ctx);

/* Deletes events (and batch headers) older than before_us, remembering for each
 * agent the newest deleted event as its horizon. */
int store_retain(struct store *s, int64_t before_us, uint64_t *deleted);

/* Implementation vtable (store_sqlite.c, store_clickhouse.c). */
struct store_ops {
	const char *kind;
	void (*close)(struct store *s);
	int (*insert_batch)(struct store *s, const struct store_batch *b, size_t *ins, size_t *dups);
	int (*insert_batches)(struct store *s, const struct store_batch *b, size_t n, struct store_result *res);
	int (*insert_local)(struct store *s, const struct store_event *e);
	int (*query)(struct store *s, const struct store_filter *f, struct store_rows *out);
	int (*feed)(struct store *s, uint64_t after, size_t limit, struct store_rows *out, uint64_t *next);
	int (*top)(struct store *s, enum store_top_kind k, const struct store_filter *f,
		   size_t limit, struct store_top_row **out, size_t *n);
	int (*count)(struct store *s, const struct store_filter *f, uint64_t *out);
	int (*usage)(struct store *s, enum store_top_kind k, const struct store_filter *f, struct store_usage_row **out,
		     size_t *n);
	int (*inventory)(struct store *s, const struct store_filter *f, struct store_inventory_row **out, size_t *n);
	int (*review_set)(struct store *s, const struct store_review *r);
	int (*review_list)(struct store *s, struct store_review **out, size_t *n);
	int (*agent_get)(struct store *s, const char *id, struct store_agent *out);
	int (*agent_pin_key)(struct store *s, const char *id, const uint8_t key[32]);
	int (*agent_set_revoked)(struct store *s, const char *id, bool revoked);
	int (*agent_list)(struct store *s, struct store_agent **out, size_t *n);
	int (*scan_events)(struct store *s, const char *id, store_event_cb cb, void *ctx);
	int (*scan_batches)(struct store *s, const char *id, store_batch_cb cb, void *ctx);
	int (*retain)(struct store *s, int64_t before_us, uint64_t *deleted);
};

struct store {
	const struct store_ops *ops;
	char errmsg[512];
};

int store_sqlite_open(const char *path, struct store **out, char *err, size_t errlen);
int store_clickhouse_open(const char *url, struct store **out, char *err, size_t errlen);

/* Helpers shared by the implementations (store.c). */
void store_seterr(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Findings as stored: "EMAIL:2,US_SSN:1" (types are [A-Z0-9_] so this is
 * unambiguous); parse tolerates garbage by skipping it. */
int store_findings_format(const struct store_finding *f, size_t n, char *buf, size_t len);
size_t store_findings_parse(const char *s, struct store_finding *out, size_t max);
/* Arena for result strings: copies s (NULL -> "") and returns the copy. */
struct store_arena;
struct store_arena *store_arena_new(void);
void store_arena_free(struct store_arena *a);
void *store_arena_alloc(struct store_arena *a, size_t n);
char *store_arena_strdup(struct store_arena *a, const char *s, size_t n);

#endif
