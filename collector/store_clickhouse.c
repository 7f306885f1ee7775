/* store_clickhouse: the fleet store, over ClickHouse's HTTP interface with
 * libcurl (one keep-alive connection per handle). Rows travel as
 * TabSeparated, which is binary-safe with its backslash escapes, so hashes
 * and the stored encodings E go in and out unchanged.
 *
 * Tables (schema_migrations records applied versions):
 *   events   ReplacingMergeTree, PARTITION BY day, ORDER BY (time, agent_id,
 *            seq, boot_id): time-range queries read only the parts they need,
 *            and an identical row inserted twice (two collectors, a resend
 *            racing) collapses on merge.
 *   event_keys  (agent_id, seq, boot_id, hash, time) ordered by agent and seq:
 *            the deduplication lookup and each chain's head without scanning
 *            a table ordered by time.
 *   batches  ReplacingMergeTree ORDER BY (agent_id, first_seq, last_seq, boot_id).
 *   agents   ReplacingMergeTree(version) ORDER BY agent_id, read with FINAL:
 *            every change inserts a new version of the row.
 *   event_feed  (ingest_seq, time, agent_id, seq, boot_id) ordered by
 *            ingest_seq: where store_feed finds a page in commit order
 *            without scanning a table ordered by time (then reads the
 *            page's events by their times, the events' primary key).
 * Collectors hold no state of their own, so several can share one server or
 * a cluster (point `events` etc. at Distributed tables sharded by agent_id).
 *
 * The commit order (migration 4, events.ingest_seq) that store_feed pages
 * on: ClickHouse has no transactions and no sequence, so the collector
 * assigns it at insert time, a hybrid clock in microseconds: max(wall
 * clock, last + 1) per row, seeded at open from the stored maximum so it
 * keeps growing across restarts and clock steps back. Rows older than the
 * migration read it as their event time (the column's DEFAULT), below any
 * new value. Guarantees:
 *  - one collector process (every handle in it: ingest, alerts, the API's
 *    records) on one server or on a cluster: exact. Inserts that take a
 *    sequence are serialised by a process-wide lock, and a feed never reads
 *    past the first sequence of the insert in flight, so everything below
 *    its bound has been acknowledged (with a cluster: by every shard, via
 *    insert_distributed_sync) and no later insert can land below it.
 *  - several collectors on one server or cluster: a feed also stays
 *    FEED_SETTLE_US behind its own clock, so an insert another collector
 *    started is visible before the feed passes its sequence as long as the
 *    insert took less than the window minus the clocks' skew (NTP). An
 *    insert slower than that may be skipped by another collector's feed;
 *    its own collector's feed never skips it. Order between collectors is
 *    their clocks' order, not a total commit order.
 *  - a row inserted twice (two collectors racing with one batch) is fed
 *    twice until the merge collapses it: at least once, never lost.
 *
 * Must never: put a caller string into SQL except through ch_quote(), or
 * report an insert as committed before ClickHouse answered 200. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <curl/curl.h>
#include "buf.h"
#include "store.h"

#define CH_SCHEMA_VERSION 5
/* How far behind its own clock a feed reads (see the top of the file). */
#define FEED_SETTLE_US 2000000LL

/* The commit order, process-wide: every handle of one collector shares it.
 * insert_mu serialises the inserts that take sequences (held across the
 * HTTP call); order_mu guards the two numbers only, so a feed asking for
 * its bound never waits for a slow insert. */
static pthread_mutex_t insert_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t order_last;      /* highest sequence handed out or stored */
static uint64_t order_pending;   /* first sequence of the insert in flight, 0 = none */

struct ch {
	struct store base;
	CURL *curl;
	char base_url[512];
	char db[128];
	char cluster[128];         /* "" = single server */
	const char *local;         /* suffix of the tables that hold data: "" or "_local" */
	char local_boot[40];
	uint64_t local_seq;
	/* response buffer */
	char *resp;
	size_t rlen, rcap;
};

#define CH(s) ((struct ch *)(s))

/* SQL text and TSV bodies: a buf with a sticky out-of-memory mark (a
 * query is built whole, then checked once). */
struct chbuf {
	struct buf out;
	bool oom;
};

static void b_add(struct chbuf *b, const void *d, size_t n)
{
	if (!b->oom && buf_append(&b->out, d, n))
		b->oom = true;
}

static void __attribute__((format(printf, 2, 3))) b_fmt(struct chbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (!b->oom && buf_vprintf(&b->out, fmt, ap))
		b->oom = true;
	va_end(ap);
}

static void b_free(struct chbuf *b)
{
	buf_free(&b->out);
	b->oom = false;
}

/* A SQL string literal: quotes and backslashes escaped, bytes as they are. */
static void ch_quote(struct chbuf *b, const char *s)
{
	b_add(b, "'", 1);
	for (; s && *s; s++) {
		if (*s == '\'' || *s == '\\')
			b_add(b, "\\", 1);
		b_add(b, s, 1);
	}
	b_add(b, "'", 1);
}

/* A TSV field (binary-safe). */
static void tsv_bytes(struct chbuf *b, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (p[i]) {
		case '\\': b_add(b, "\\\\", 2); break;
		case '\t': b_add(b, "\\t", 2); break;
		case '\n': b_add(b, "\\n", 2); break;
		case '\r': b_add(b, "\\r", 2); break;
		case 0: b_add(b, "\\0", 2); break;
		default: b_add(b, &p[i], 1);
		}
	}
}

static void tsv_str(struct chbuf *b, const char *s) { tsv_bytes(b, (const uint8_t *)(s ? s : ""), s ? strlen(s) : 0); }

/* Unescapes a TSV field in place; returns its length. */
static size_t tsv_unescape(char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 == n) {
			s[o++] = s[i];
			continue;
		}
		char c = s[++i];
		switch (c) {
		case 'b': s[o++] = '\b'; break;
		case 'f': s[o++] = '\f'; break;
		case 'r': s[o++] = '\r'; break;
		case 'n': s[o++] = '\n'; break;
		case 't': s[o++] = '\t'; break;
		case '0': s[o++] = 0; break;
		case 'a': s[o++] = '\a'; break;
		case 'v': s[o++] = '\v'; break;
		default: s[o++] = c;
		}
	}
	return o;
}

/* Splits the response into rows and fields. fields[i] and lens[i] point into
 * the (unescaped in place) line. Returns the number of fields, or -1 at end. */
struct tsv_cursor {
	char *p, *end;
};

static int tsv_next(struct tsv_cursor *c, char **fields, size_t *lens, int max)
{
	if (c->p >= c->end)
		return -1;
	char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
	char *line_end = nl ? nl : c->end;
	int n = 0;
	char *f = c->p;
	while (n < max) {
		char *tab = memchr(f, '\t', (size_t)(line_end - f));
		char *fe = tab ? tab : line_end;
		fields[n] = f;
		lens[n] = tsv_unescape(f, (size_t)(fe - f));
		fields[n][lens[n]] = 0; /* the separator (or newline) slot is ours */
		n++;
		if (!tab)
			break;
		f = tab + 1;
	}
	c->p = nl ? nl + 1 : c->end;
	return n;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct ch *c = arg;
	size_t add = sz * n;
	if (c->rlen + add + 1 > c->rcap) {
		size_t nc = c->rcap ? c->rcap : 65536;
		while (nc < c->rlen + add + 1)
			nc *= 2;
		char *np = realloc(c->resp, nc);
		if (!np)
			return 0;
		c->resp = np;
		c->rcap = nc;
	}
	memcpy(c->resp + c->rlen, p, add);
	c->rlen += add;
	c->resp[c->rlen] = 0;
	return add;
}

/* Runs query (URL-encoded into the query string) with body as POST data (may
 * be NULL). On success the answer is in c->resp[0..rlen). */
static int ch_exec(struct ch *c, const char *query, const char *body, size_t blen)
{
	char *eq = curl_easy_escape(c->curl, query, (int)strlen(query));
	struct chbuf url = { 0 };
	long code = 0;
	if (!eq)
		return -ENOMEM;
	/* With a cluster, an INSERT into a Distributed table returns only once
	 * every shard has the rows: the ack still means committed. */
	b_fmt(&url, "%s/?database=%s%s&query=%s", c->base_url, c->db, c->cluster[0] ? "&insert_distributed_sync=1" : "",
	      eq);
	curl_free(eq);
	if (url.oom)
		return -ENOMEM;
	c->rlen = 0;
	if (c->resp)
		c->resp[0] = 0;
	curl_easy_setopt(c->curl, CURLOPT_URL, url.out.data);
	curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? blen : 0));
	CURLcode cc = curl_easy_perform(c->curl);
	b_free(&url);
	if (cc != CURLE_OK) {
		store_seterr(&c->base, "clickhouse: %s", curl_easy_strerror(cc));
		return -EIO;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		char *nl = c->resp ? strchr(c->resp, '\n') : NULL;
		if (nl)
			*nl = 0;
		store_seterr(&c->base, "clickhouse: HTTP %ld: %.300s", code, c->resp ? c->resp : "");
		return -EIO;
	}
	return 0;
}

static int ch_q(struct ch *c, struct chbuf *sql)
{
	if (sql->oom) {
		b_free(sql);
		return -ENOMEM;
	}
	/* The statement goes as the POST body, not in the URL: a long one (a
	 * group commit's key lookup, a feed page's times) would pass the
	 * server's URI limit (HTTP 400 near 16 KB). */
	int rc = ch_exec(c, "", sql->out.data, sql->out.len);
	b_free(sql);
	return rc;
}

/* A NUL-terminated copy of the last response, set up for tsv_next() in
 * cur: callers that query again while walking rows must not read c->resp.
 * The caller frees the copy; NULL on ENOMEM. */
static char *ch_resp_copy(struct ch *c, struct tsv_cursor *cur)
{
	char *copy = malloc(c->rlen + 1);
	if (!copy)
		return NULL;
	memcpy(copy, c->resp, c->rlen);
	copy[c->rlen] = 0;
	cur->p = copy;
	cur->end = copy + c->rlen;
	return copy;
}

/* Version 1: table name, then the definition; the data tables get the
 * suffix "" or "_local" (cluster) between the two. */
static const char *const migrations[][2] = {
	{ "events", " ("
	" time Int64, event_id String, agent_id String, boot_id String, seq UInt64, host String, kind String,"
	" `user` String, uid Int64, gid Int64, pid Int64, tid Int64, comm String, exe String, cgroup String,"
	" dst_ip String, dst_port Int64, sni String, provider String, method String, path String, model String,"
	" stream UInt8, action String, rule String, reason String, error String, findings String,"
	" injection_score Float64, status Int64, bytes_up Int64, bytes_down Int64, prompt_tokens Int64,"
	" completion_tokens Int64, latency_ms Int64, policy_hash String, gap_count UInt64, gap_first_seq UInt64,"
	" gap_last_seq UInt64, prev_hash String, hash String, raw String, content String, has_content UInt8,"
	" container_id String"
	") ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMMDD(toDateTime(intDiv(time, 1000000)))"
	" ORDER BY (time, agent_id, seq, boot_id)" },
	{ "event_keys", " (agent_id String, seq UInt64, boot_id String, hash String, time Int64)"
	" ENGINE = ReplacingMergeTree() ORDER BY (agent_id, seq, boot_id)" },
	{ "batches", " (agent_id String, boot_id String, first_seq UInt64, last_seq UInt64,"
	" schema_version UInt32, prev_batch_hash String, signature String, received Int64)"
	" ENGINE = ReplacingMergeTree() ORDER BY (agent_id, first_seq, last_seq, boot_id)" },
	{ "agents", " (agent_id String, pubkey String, revoked UInt8, first_seen Int64,"
	" last_seen Int64, has_horizon UInt8, horizon_seq UInt64, horizon_hash String, version UInt64)"
	" ENGINE = ReplacingMergeTree(version) ORDER BY agent_id" },
};

/* Adds a column to events (and its Distributed table) unless a collector
 * already did: 18.16 has no ADD COLUMN IF NOT EXISTS. */
static int add_event_column(struct ch *c, struct chbuf *q, const char *name, const char *def)
{
	const char *const tables[2] = { c->local, c->cluster[0] ? "" : NULL };
	int rc;

	for (int i = 0; i < 2 && tables[i]; i++) {
		b_fmt(q, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'events%s'"
			 " AND name = '%s' FORMAT TabSeparated", tables[i], name);
		if ((rc = ch_q(c, q)))
			return rc;
		if (atoi(c->resp ? c->resp : "0") > 0)
			continue;
		b_fmt(q, "ALTER TABLE events%s ADD COLUMN %s %s", tables[i], name, def);
		if ((rc = ch_q(c, q)))
			return rc;
	}
	return 0;
}

/* Migration v: the String columns names (NULL-terminated) on events. */
static int migrate_columns(struct ch *c, struct chbuf *q, int v, const char *const *names)
{
	int rc;
	for (; *names; names++)
		if ((rc = add_event_column(c, q, *names, "String")))
			return rc;
	b_fmt(q, "INSERT INTO schema_migrations VALUES (%d, %lld)", v, (long long)time(NULL));
	return ch_q(c, q);
}

/* 2: container_id. */
static const char *const v2_columns[] = { "container_id", NULL };
/* 4: the MCP fields, for the SOC's filters and top views. */
static const char *const v4_columns[] = { "mcp_server", "mcp_method", "tool", "mcp_session", NULL };

/* 5: the commit order (rows stored before read their event time, which is
 * below every sequence handed out from now on) with its index event_feed,
 * and the prompt tokens read from the provider's cache (older rows:
 * unknown). */
static int migrate_v5(struct ch *c, struct chbuf *q)
{
	int rc = add_event_column(c, q, "ingest_seq", "UInt64 DEFAULT toUInt64(time)");
	if (rc || (rc = add_event_column(c, q, "cached_tokens", "Int64 DEFAULT -1")))
		return rc;
	/* Replacing: two collectors migrating at once both backfill. */
	b_fmt(q, "CREATE TABLE IF NOT EXISTS event_feed%s (ingest_seq UInt64, time Int64, agent_id String, seq UInt64,"
		 " boot_id String) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(toDateTime(intDiv(ingest_seq,"
		 " 1000000))) ORDER BY (ingest_seq, agent_id, seq, boot_id)", c->local);
	if ((rc = ch_q(c, q)))
		return rc;
	if (c->cluster[0]) {
		b_fmt(q, "CREATE TABLE IF NOT EXISTS event_feed AS event_feed_local ENGINE = Distributed(%s, %s,"
			 " event_feed_local, sipHash64(agent_id))", c->cluster, c->db);
		if ((rc = ch_q(c, q)))
			return rc;
	}
	/* The rows stored so far, shard by shard (each shard's collector
	 * migrates its own, as it created its tables). */
	b_fmt(q, "INSERT INTO event_feed%s SELECT ingest_seq, time, agent_id, seq, boot_id FROM events%s", c->local,
	      c->local);
	if ((rc = ch_q(c, q)))
		return rc;
	b_fmt(q, "INSERT INTO schema_migrations VALUES (5, %lld)", (long long)time(NULL));
	return ch_q(c, q);
}

static int migrate(struct ch *c)
{
	int rc;
	struct chbuf q = { 0 };
	if ((rc = ch_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, applied Int64)"
			     " ENGINE = MergeTree() ORDER BY version", NULL, 0)))
		return rc;
	if ((rc = ch_exec(c, "SELECT max(version) FROM schema_migrations FORMAT TabSeparated", NULL, 0)))
		return rc;
	int v = atoi(c->resp ? c->resp : "0");
	if (v > CH_SCHEMA_VERSION) {
		store_seterr(&c->base, "clickhouse: schema version %d is newer than this collector (%d)", v,
			     CH_SCHEMA_VERSION);
		return -EPROTO;
	}
	if (v < 1) {
		/* CREATE ... IF NOT EXISTS: two collectors starting at once both
		 * succeed. */
		for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
			b_fmt(&q, "CREATE TABLE IF NOT EXISTS %s%s", migrations[i][0], c->local);
			b_add(&q, migrations[i][1], strlen(migrations[i][1]));
			if ((rc = ch_q(c, &q)))
				return rc;
			/* A cluster: the collectors read and write Distributed
			 * tables sharded by agent, so one agent's chain, keys and
			 * row versions live on one shard (dedup and FINAL stay
			 * exact). Each shard gets its _local tables from the
			 * collectors that connect to it. */
			if (c->cluster[0]) {
				b_fmt(&q, "CREATE TABLE IF NOT EXISTS %s AS %s_local ENGINE = Distributed(%s, %s, %s_local,"
					  " sipHash64(agent_id))", migrations[i][0], migrations[i][0], c->cluster, c->db,
				      migrations[i][0]);
				if ((rc = ch_q(c, &q)))
					return rc;
			}
		}
		/* The tables above already have migration 2's column. */
		b_fmt(&q, "INSERT INTO schema_migrations VALUES (2, %lld)", (long long)time(NULL));
		if ((rc = ch_q(c, &q)))
			return rc;
		v = 2;
	}
	if (v < 2 && (rc = migrate_columns(c, &q, 2, v2_columns)))
		return rc;
	if (v < 3) {
		/* 3: review states for the inventory; on a cluster sharded by
		 * the pair, so FINAL sees every version of a row on one shard. */
		b_fmt(&q, "CREATE TABLE IF NOT EXISTS reviews%s (exe String, provider String, state String, reviewer String,"
			  " reviewed_at Int64, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY (exe, provider)",
		      c->local);
		if ((rc = ch_q(c, &q)))
			return rc;
		if (c->cluster[0]) {
			b_fmt(&q, "CREATE TABLE IF NOT EXISTS reviews AS reviews_local ENGINE = Distributed(%s, %s,"
				  " reviews_local, sipHash64(concat(exe, '|', provider)))", c->cluster, c->db);
			if ((rc = ch_q(c, &q)))
				return rc;
		}
		b_fmt(&q, "INSERT INTO schema_migrations VALUES (3, %lld)", (long long)time(NULL));
		if ((rc = ch_q(c, &q)))
			return rc;
	}
	if (v < 4 && (rc = migrate_columns(c, &q, 4, v4_columns)))
		return rc;
	if (v < 5 && (rc = migrate_v5(c, &q)))
		return rc;
	return 0;
}

static void ch_close(struct store *s)
{
	struct ch *c = CH(s);
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->resp);
	free(c);
}

#define EV_COLS "time, event_id, agent_id, boot_id, seq, host, kind, `user`, uid, gid, pid, tid, comm, exe," \
	" cgroup, dst_ip, dst_port, sni, provider, method, path, model, stream, action, rule, reason," \
	" error, findings, injection_score, status, bytes_up, bytes_down, prompt_tokens," \
	" completion_tokens, latency_ms, policy_hash, gap_count, gap_first_seq, gap_last_seq, prev_hash," \
	" hash, raw, content, has_content, container_id, mcp_server, mcp_method, tool, mcp_session, cached_tokens"
#define EV_NCOLS 50

/* One row of EV_COLS then ingest_seq. */
static void tsv_event(struct chbuf *b, const struct store_event *e, uint64_t ingest_seq)
{
	char f[2048], num[512];
	if (store_findings_format(e->findings, e->nfindings, f, sizeof(f)))
		f[0] = 0;
	snprintf(num, sizeof(num), "%lld\t", (long long)e->time_us);
	b_add(b, num, strlen(num));
#define S(x) do { tsv_str(b, x); b_add(b, "\t", 1); } while (0)
#define N(x) do { snprintf(num, sizeof(num), "%lld\t", (long long)(x)); b_add(b, num, strlen(num)); } while (0)
#define U(x) do { snprintf(num, sizeof(num), "%llu\t", (unsigned long long)(x)); b_add(b, num, strlen(num)); } while (0)
	S(e->event_id);
	S(e->agent_id);
	S(e->boot_id);
	U(e->seq);
	S(e->host);
	S(e->kind);
	S(e->user);
	N(e->uid);
	N(e->gid);
	N(e->pid);
	N(e->tid);
	S(e->comm);
	S(e->exe);
	S(e->cgroup);
	S(e->dst_ip);
	N(e->dst_port);
	S(e->sni);
	S(e->provider);
	S(e->method);
	S(e->path);
	S(e->model);
	N(e->stream ? 1 : 0);
	S(e->action);
	S(e->rule);
	S(e->reason);
	S(e->error);
	S(f);
	/* %.17g: the double round-trips exactly. */
	snprintf(num, sizeof(num), "%.17g\t", e->injection_score);
	b_add(b, num, strlen(num));
	N(e->status);
	N(e->bytes_up);
	N(e->bytes_down);
	N(e->prompt_tokens);
	N(e->completion_tokens);
	N(e->latency_ms);
	S(e->policy_hash);
	U(e->gap_count);
	U(e->gap_first_seq);
	U(e->gap_last_seq);
	tsv_bytes(b, e->prev_hash, 32);
	b_add(b, "\t", 1);
	tsv_bytes(b, e->hash, 32);
	b_add(b, "\t", 1);
	tsv_bytes(b, e->raw ? e->raw : (const uint8_t *)"", e->raw ? e->raw_len : 0);
	b_add(b, "\t", 1);
	S(e->content);
	snprintf(num, sizeof(num), "%d\t", e->content ? 1 : 0);
	b_add(b, num, strlen(num));
	S(e->container_id);
	S(e->mcp_server);
	S(e->mcp_method);
	S(e->tool);
	tsv_str(b, e->mcp_session);
	snprintf(num, sizeof(num), "\t%lld\t%llu\n", (long long)e->cached_tokens, (unsigned long long)ingest_seq);
	b_add(b, num, strlen(num));
#undef S
#undef N
#undef U
}

/* One row of event_feed: where the event with this commit order is. */
static void tsv_feed(struct chbuf *b, const struct store_event *e, uint64_t ingest_seq)
{
	char num[64];
	snprintf(num, sizeof(num), "%llu\t%lld\t", (unsigned long long)ingest_seq, (long long)e->time_us);
	b_add(b, num, strlen(num));
	tsv_str(b, e->agent_id);
	snprintf(num, sizeof(num), "\t%llu\t", (unsigned long long)e->seq);
	b_add(b, num, strlen(num));
	tsv_str(b, e->boot_id);
	b_add(b, "\n", 1);
}

#define FEED_INSERT "INSERT INTO event_feed (ingest_seq, time, agent_id, seq, boot_id) FORMAT TabSeparated"

/* Fills e from one TSV row of EV_COLS (pointers into the row). */
static int read_event(char **f, size_t *l, int n, struct store_event *e, struct store_finding *fb, size_t fmax)
{
	if (n != EV_NCOLS)
		return -EPROTO;
	int i = 0;
	memset(e, 0, sizeof(*e));
#define I64() strtoll(f[i++], NULL, 10)
#define U64() strtoull(f[i++], NULL, 10)
#define STR() (f[i++])
	e->time_us = I64();
	e->event_id = STR();
	e->agent_id = STR();
	e->boot_id = STR();
	e->seq = U64();
	e->host = STR();
	e->kind = STR();
	e->user = STR();
	e->uid = I64();
	e->gid = I64();
	e->pid = I64();
	e->tid = I64();
	e->comm = STR();
	e->exe = STR();
	e->cgroup = STR();
	e->dst_ip = STR();
	e->dst_port = I64();
	e->sni = STR();
	e->provider = STR();
	e->method = STR();
	e->path = STR();
	e->model = STR();
	e->stream = I64() != 0;
	e->action = STR();
	e->rule = STR();
	e->reason = STR();
	e->error = STR();
	e->findings = fb;
	e->nfindings = store_findings_parse(f[i++], fb, fmax);
	e->injection_score = strtod(f[i++], NULL);
	e->status = I64();
	e->bytes_up = I64();
	e->bytes_down = I64();
	e->prompt_tokens = I64();
	e->completion_tokens = I64();
	e->latency_ms = I64();
	e->policy_hash = STR();
	e->gap_count = U64();
	e->gap_first_seq = U64();
	e->gap_last_seq = U64();
	if (l[i] == 32)
		memcpy(e->prev_hash, f[i], 32);
	i++;
	if (l[i] == 32)
		memcpy(e->hash, f[i], 32);
	i++;
	e->raw = l[i] ? (const uint8_t *)f[i] : NULL;
	e->raw_len = l[i];
	i++;
	const char *content = STR();
	e->content = I64() ? content : NULL;
	e->container_id = STR();
	e->mcp_server = STR();
	e->mcp_method = STR();
	e->tool = STR();
	e->mcp_session = STR();
	e->cached_tokens = I64();
#undef I64
#undef U64
#undef STR
	return 0;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Takes n sequences for one insert and holds the insert lock until
 * order_end(): inserts that take sequences commit one at a time, in
 * sequence order. Returns the first. */
static uint64_t order_begin(size_t n)
{
	pthread_mutex_lock(&insert_mu);
	pthread_mutex_lock(&order_mu);
	uint64_t first = (uint64_t)now_us();
	if (first <= order_last)
		first = order_last + 1;
	order_last = first + (n ? n : 1) - 1;
	order_pending = first;
	pthread_mutex_unlock(&order_mu);
	return first;
}

static void order_end(void)
{
	pthread_mutex_lock(&order_mu);
	order_pending = 0;
	pthread_mutex_unlock(&order_mu);
	pthread_mutex_unlock(&insert_mu);
}

/* A stored maximum (another collector's, or this one's before a restart)
 * is never handed out again. */
static void order_seen(uint64_t stored_max)
{
	pthread_mutex_lock(&order_mu);
	if (stored_max > order_last)
		order_last = stored_max;
	pthread_mutex_unlock(&order_mu);
}

/* The highest sequence a feed may read now: behind the settle window, and
 * below this process's insert in flight. */
static uint64_t order_feed_bound(void)
{
	int64_t t = now_us() - FEED_SETTLE_US;
	uint64_t bound = t > 0 ? (uint64_t)t : 0;
	pthread_mutex_lock(&order_mu);
	if (order_pending && order_pending - 1 < bound)
		bound = order_pending - 1;
	pthread_mutex_unlock(&order_mu);
	return bound;
}

static int agent_get(struct ch *c, const char *id, struct store_agent *a, bool *found);
static int agent_put(struct ch *c, const struct store_agent *a);

/* n batches in one round: one lookup of the keys already stored, then one
 * INSERT each into events, event_keys and batches (ClickHouse prefers few
 * large inserts: each one is a new part to merge). A batch with a key
 * stored under a different hash is refused alone (res[i].rc = -EEXIST). */
static int ch_insert_batches(struct store *s, const struct store_batch *bs, size_t n, struct store_result *res)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 }, ev = { 0 }, keys = { 0 }, hdr = { 0 }, feed = { 0 };
	bool **skip = calloc(n ? n : 1, sizeof(*skip));
	size_t total = 0;
	bool ordered = false;
	int rc = 0;
	if (!skip)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		memset(&res[k], 0, sizeof(res[k]));
		if (!(skip[k] = calloc(bs[k].nevents ? bs[k].nevents : 1, sizeof(bool)))) {
			rc = -ENOMEM;
			goto out;
		}
	}
	/* Which keys are stored already? event_keys is ordered by (agent_id,
	 * seq), so each range reads a few granules only. */
	b_add(&q, "SELECT agent_id, seq, boot_id, hash FROM event_keys WHERE 0", 59);
	for (size_t k = 0; k < n; k++) {
		const struct store_batch *b = &bs[k];
		if (!b->nevents)
			continue;
		uint64_t smin = b->events[0].seq, smax = smin;
		for (size_t i = 1; i < b->nevents; i++) {
			smin = b->events[i].seq < smin ? b->events[i].seq : smin;
			smax = b->events[i].seq > smax ? b->events[i].seq : smax;
		}
		b_fmt(&q, " OR (seq >= %llu AND seq <= %llu AND agent_id = ", (unsigned long long)smin, (unsigned long long)smax);
		ch_quote(&q, b->agent_id);
		b_add(&q, ")", 1);
	}
	b_add(&q, " FORMAT TabSeparated", 20);
	if ((rc = ch_q(c, &q)))
		goto out;
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *f[4];
	size_t l[4];
	int nf;
	while ((nf = tsv_next(&cur, f, l, 4)) >= 0) {
		if (nf != 4)
			continue;
		uint64_t seq = strtoull(f[1], NULL, 10);
		for (size_t k = 0; k < n; k++) {
			if (res[k].rc || strcmp(bs[k].agent_id ? bs[k].agent_id : "", f[0]))
				continue;
			for (size_t i = 0; i < bs[k].nevents; i++) {
				const struct store_event *e = &bs[k].events[i];
				if (e->seq != seq || strcmp(e->boot_id ? e->boot_id : "", f[2]))
					continue;
				if (l[3] != 32 || memcmp(f[3], e->hash, 32)) {
					res[k].rc = -EEXIST;
					snprintf(res[k].why, sizeof(res[k].why),
						 "seq %llu of boot %s already stored with different content",
						 (unsigned long long)seq, f[2]);
				}
				skip[k][i] = true;
			}
		}
	}
	/* The sequences are taken before rendering and the lock is held until
	 * the insert is answered (released at out:). */
	size_t want = 0;
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; !res[k].rc && i < bs[k].nevents; i++)
			want += !skip[k][i];
	uint64_t iseq = order_begin(want);
	ordered = true;
	for (size_t k = 0; k < n; k++) {
		const struct store_batch *b = &bs[k];
		char num[128];
		if (res[k].rc)
			continue;
		for (size_t i = 0; i < b->nevents; i++) {
			const struct store_event *e = &b->events[i];
			if (skip[k][i]) {
				res[k].dups++;
				continue;
			}
			res[k].inserted++;
			total++;
			tsv_feed(&feed, e, iseq);
			tsv_event(&ev, e, iseq++);
			tsv_str(&keys, e->agent_id);
			snprintf(num, sizeof(num), "\t%llu\t", (unsigned long long)e->seq);
			b_add(&keys, num, strlen(num));
			tsv_str(&keys, e->boot_id);
			b_add(&keys, "\t", 1);
			tsv_bytes(&keys, e->hash, 32);
			snprintf(num, sizeof(num), "\t%lld\n", (long long)e->time_us);
			b_add(&keys, num, strlen(num));
		}
		tsv_str(&hdr, b->agent_id);
		b_add(&hdr, "\t", 1);
		tsv_str(&hdr, b->boot_id);
		snprintf(num, sizeof(num), "\t%llu\t%llu\t%u\t", (unsigned long long)b->first_seq,
			 (unsigned long long)b->last_seq, b->schema_version);
		b_add(&hdr, num, strlen(num));
		tsv_bytes(&hdr, b->prev_batch_hash ? b->prev_batch_hash : (const uint8_t *)"", b->prev_batch_hash_len);
		b_add(&hdr, "\t", 1);
		tsv_bytes(&hdr, b->signature ? b->signature : (const uint8_t *)"", b->signature_len);
		snprintf(num, sizeof(num), "\t%lld\n", (long long)b->received_us);
		b_add(&hdr, num, strlen(num));
	}
	if (ev.oom || keys.oom || hdr.oom || feed.oom) {
		rc = -ENOMEM;
		goto out;
	}
	/* Events, then their keys and feed rows, then the headers: a header
	 * always has its events, and a key or a feed row always its event. */
	if (total && ((rc = ch_exec(c, "INSERT INTO events (" EV_COLS ", ingest_seq) FORMAT TabSeparated", ev.out.data, ev.out.len)) ||
		      (rc = ch_exec(c, "INSERT INTO event_keys (agent_id, seq, boot_id, hash, time) FORMAT TabSeparated",
				    keys.out.data, keys.out.len)) ||
		      (rc = ch_exec(c, FEED_INSERT, feed.out.data, feed.out.len))))
		goto out;
	if (hdr.out.len && (rc = ch_exec(c, "INSERT INTO batches (agent_id, boot_id, first_seq, last_seq, schema_version,"
				       " prev_batch_hash, signature, received) FORMAT TabSeparated", hdr.out.data, hdr.out.len)))
		goto out;
	order_end();
	ordered = false;
	/* last_seen, at most once a minute per agent (each is a new row version). */
	for (size_t k = 0; k < n; k++) {
		struct store_agent a;
		bool found = false, seen = false;
		if (res[k].rc)
			continue;
		for (size_t j = 0; j < k; j++)
			seen |= !res[j].rc && !strcmp(bs[j].agent_id, bs[k].agent_id);
		if (seen || agent_get(c, bs[k].agent_id, &a, &found))
			continue;
		if (found && bs[k].received_us - a.last_seen_us <= 60000000LL)
			continue;
		if (!found) {
			memset(&a, 0, sizeof(a));
			snprintf(a.agent_id, sizeof(a.agent_id), "%s", bs[k].agent_id);
			a.first_seen_us = bs[k].received_us;
		}
		a.last_seen_us = bs[k].received_us;
		agent_put(c, &a);
	}
out:
	if (ordered)
		order_end();
	for (size_t k = 0; k < n; k++)
		free(skip[k]);
	free(skip);
	b_free(&ev);
	b_free(&keys);
	b_free(&hdr);
	b_free(&feed);
	return rc;
}

static int ch_insert_batch(struct store *s, const struct store_batch *b, size_t *ins, size_t *dups)
{
	struct store_result r;
	int rc = ch_insert_batches(s, b, 1, &r);
	*ins = rc ? 0 : r.inserted;
	*dups = rc ? 0 : r.dups;
	if (!rc && r.rc) {
		store_seterr(s, "%s", r.why);
		return r.rc;
	}
	return rc;
}

static int ch_insert_local(struct store *s, const struct store_event *e)
{
	struct ch *c = CH(s);
	struct store_event x = *e;
	struct chbuf body = { 0 }, feed = { 0 };
	x.boot_id = c->local_boot;
	x.seq = ++c->local_seq;
	if (!x.agent_id)
		x.agent_id = "collector";
	uint64_t iseq = order_begin(1);
	tsv_event(&body, &x, iseq);
	tsv_feed(&feed, &x, iseq);
	int rc = body.oom || feed.oom ? -ENOMEM
	     : ch_exec(c, "INSERT INTO events (" EV_COLS ", ingest_seq) FORMAT TabSeparated", body.out.data, body.out.len);
	if (!rc)
		rc = ch_exec(c, FEED_INSERT, feed.out.data, feed.out.len);
	order_end();
	b_free(&body);
	b_free(&feed);
	return rc;
}

static void where(struct chbuf *q, const struct store_filter *f)
{
	struct { const char *col, *val; } eq[] = {
		{ "`user`", f->user }, { "host", f->host }, { "action", f->action }, { "exe", f->exe },
		{ "provider", f->provider }, { "model", f->model }, { "kind", f->kind }, { "agent_id", f->agent_id },
		{ "rule", f->rule }, { "mcp_server", f->mcp_server }, { "mcp_method", f->mcp_method },
		{ "tool", f->tool }, { "mcp_session", f->mcp_session },
	};
	bool first = true;
#define AND() do { b_add(q, first ? " WHERE " : " AND ", first ? 7 : 5); first = false; } while (0)
	for (size_t i = 0; i < sizeof(eq) / sizeof(eq[0]); i++) {
		if (!eq[i].val)
			continue;
		AND();
		b_fmt(q, "%s = ", eq[i].col);
		ch_quote(q, eq[i].val);
	}
	if (f->since_us) {
		AND();
		b_fmt(q, "time >= %lld", (long long)f->since_us);
	}
	if (f->until_us) {
		AND();
		b_fmt(q, "time < %lld", (long long)f->until_us);
	}
	if (f->finding) {
		/* Types have no ',' or ':' (store_findings_format), so this
		 * matches the whole type only. */
		struct chbuf t = { 0 };
		b_fmt(&t, ",%s:", f->finding);
		AND();
		b_add(q, "position(concat(',', findings), ", 32);
		ch_quote(q, t.out.data ? t.out.data : "");
		b_add(q, ") > 0", 5);
		b_free(&t);
	}
	if (f->before || f->at) {
		/* ch_query's order is (time, agent_id, seq) descending. */
		const struct store_evref *r = f->before ? f->before : f->at;
		AND();
		if (f->at)
			b_add(q, "(agent_id, seq, boot_id) = (", 28);
		else
			b_fmt(q, "(time, agent_id, seq) < (%lld, ", (long long)r->time_us);
		ch_quote(q, r->agent_id ? r->agent_id : "");
		b_fmt(q, ", %llu", (unsigned long long)r->seq);
		if (f->at) {
			b_add(q, ", ", 2);
			ch_quote(q, r->boot_id ? r->boot_id : "");
		}
		b_add(q, ")", 1);
	}
	if (first)
		b_add(q, " WHERE 1", 8);
#undef AND
}

/* Reads the rows of the last answer into out: EV_COLS, then (feed only,
 * next != NULL) ingest_seq, whose last value goes to *next. */
static int ch_fetch(struct ch *c, struct store_rows *out, uint64_t *next)
{
	int rc, want = EV_NCOLS + (next ? 1 : 0);
	/* The rows keep pointers into a private copy of the response. */
	out->arena = store_arena_new();
	char *copy = out->arena ? store_arena_alloc(out->arena, c->rlen + 1) : NULL;
	size_t cap = 64;
	out->ev = malloc(cap * sizeof(*out->ev));
	if (!copy || !out->ev) {
		rc = -ENOMEM;
		goto err;
	}
	memcpy(copy, c->resp, c->rlen);
	copy[c->rlen] = 0;
	struct tsv_cursor cur = { copy, copy + c->rlen };
	char *fl[EV_NCOLS + 2];
	size_t ll[EV_NCOLS + 2];
	int n;
	while ((n = tsv_next(&cur, fl, ll, EV_NCOLS + 2)) >= 0) {
		if ((rc = buf_grow_array(&out->ev, &cap, out->n, sizeof(*out->ev))))
			goto err;
		struct store_finding *fb = store_arena_alloc(out->arena, 64 * sizeof(*fb));
		if (!fb) {
			rc = -ENOMEM;
			goto err;
		}
		if (n != want || read_event(fl, ll, EV_NCOLS, &out->ev[out->n], fb, 64)) {
			store_seterr(&c->base, "clickhouse: unexpected row with %d columns", n);
			rc = -EPROTO;
			goto err;
		}
		if (next)
			*next = strtoull(fl[EV_NCOLS], NULL, 10);
		out->n++;
	}
	struct store_event *ev = store_arena_alloc(out->arena, (out->n ? out->n : 1) * sizeof(*ev));
	if (!ev) {
		rc = -ENOMEM;
		goto err;
	}
	memcpy(ev, out->ev, out->n * sizeof(*ev));
	free(out->ev);
	out->ev = ev;
	return 0;
err:
	free(out->ev);
	store_arena_free(out->arena);
	memset(out, 0, sizeof(*out));
	return rc;
}

static int ch_query(struct store *s, const struct store_filter *f, struct store_rows *out)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	size_t limit = f->limit ? f->limit : STORE_DEFAULT_LIMIT;
	int rc;
	memset(out, 0, sizeof(*out));
	if (limit > STORE_MAX_LIMIT)
		limit = STORE_MAX_LIMIT;
	b_add(&q, "SELECT " EV_COLS " FROM events", strlen("SELECT " EV_COLS " FROM events"));
	where(&q, f);
	b_fmt(&q, " ORDER BY time DESC, agent_id DESC, seq DESC LIMIT 1 BY agent_id, boot_id, seq LIMIT %zu"
		  " FORMAT TabSeparated", limit);
	if ((rc = ch_q(c, &q)))
		return rc;
	return ch_fetch(c, out, NULL);
}

/* The commit order (see the top of the file): never past the bound, so a
 * row this process is still inserting, or another collector inserted less
 * than the settle window ago, is read on a later call, not skipped. */
static int ch_feed(struct store *s, uint64_t after, size_t limit, struct store_rows *out, uint64_t *next)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	uint64_t bound = order_feed_bound();
	int rc;
	memset(out, 0, sizeof(*out));
	*next = after;
	if (bound <= after)
		return 0;
	if (limit > 50000)
		limit = 50000;
	/* The page in event_feed: a range of its primary key. */
	b_fmt(&q, "SELECT ingest_seq, time FROM event_feed WHERE ingest_seq > %llu AND ingest_seq <= %llu"
		  " ORDER BY ingest_seq LIMIT 1 BY ingest_seq LIMIT %zu FORMAT TabSeparated", (unsigned long long)after,
	      (unsigned long long)bound, limit ? limit : 1);
	if ((rc = ch_q(c, &q)))
		return rc;
	/* Then its events, by their times (the events' primary key): every
	 * event whose sequence lies in the page's range is in the page. */
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *f[2];
	size_t l[2];
	uint64_t first = 0, last = 0;
	size_t n = 0;
	b_add(&q, "SELECT " EV_COLS ", ingest_seq FROM events WHERE time IN (",
	      strlen("SELECT " EV_COLS ", ingest_seq FROM events WHERE time IN ("));
	for (int nf; (nf = tsv_next(&cur, f, l, 2)) >= 0;) {
		if (nf != 2)
			continue;
		last = strtoull(f[0], NULL, 10);
		first = n++ ? first : last;
		b_fmt(&q, "%s%lld", n > 1 ? "," : "", strtoll(f[1], NULL, 10));
	}
	if (!n) {
		b_free(&q);
		return 0;
	}
	b_fmt(&q, ") AND ingest_seq >= %llu AND ingest_seq <= %llu ORDER BY ingest_seq LIMIT 1 BY ingest_seq"
		  " FORMAT TabSeparated", (unsigned long long)first, (unsigned long long)last);
	if ((rc = ch_q(c, &q)) || (rc = ch_fetch(c, out, next)))
		return rc;
	*next = last;   /* past the page even if retention took some of its events */
	return 0;
}

static int ch_count(struct store *s, const struct store_filter *f, uint64_t *out)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	b_add(&q, "SELECT count() FROM events", 26);
	where(&q, f);
	b_add(&q, " FORMAT TabSeparated", 20);
	int rc = ch_q(c, &q);
	*out = rc ? 0 : strtoull(c->resp ? c->resp : "0", NULL, 10);
	return rc;
}

static int ch_top(struct store *s, enum store_top_kind k, const struct store_filter *f, size_t limit,
		  struct store_top_row **out, size_t *n)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	int rc;
	static const char *const col[] = {
		[STORE_TOP_USERS] = "`user`", [STORE_TOP_EXES] = "exe", [STORE_TOP_PROVIDERS] = "provider",
		[STORE_TOP_HOSTS] = "host", [STORE_TOP_MODELS] = "model", [STORE_TOP_ACTIONS] = "action",
		[STORE_TOP_AGENTS] = "agent_id", [STORE_TOP_FINDINGS] = "findings", [STORE_TOP_TOOLS] = "tool",
		[STORE_TOP_MCP_SERVERS] = "mcp_server", [STORE_TOP_MCP_METHODS] = "mcp_method",
		[STORE_TOP_MCP_SESSIONS] = "mcp_session",
	};
	if (k == STORE_TOP_FINDINGS) {
		b_add(&q, "SELECT splitByChar(':', fnd)[1] AS k, count(), countIf(action = 'block'),"
			  " sum(toUInt64OrZero(splitByChar(':', fnd)[2])) FROM events ARRAY JOIN splitByChar(',', findings) AS fnd",
		      strlen("SELECT splitByChar(':', fnd)[1] AS k, count(), countIf(action = 'block'),"
			     " sum(toUInt64OrZero(splitByChar(':', fnd)[2])) FROM events ARRAY JOIN splitByChar(',', findings) AS fnd"));
		where(&q, f);
		b_add(&q, " AND fnd != ''", 14);
	} else {
		b_fmt(&q, "SELECT %s AS k, count(), countIf(action = 'block'), 0 FROM events", col[k]);
		where(&q, f);
		b_fmt(&q, " AND %s != ''", col[k]);
	}
	b_fmt(&q, " GROUP BY k ORDER BY count() DESC, k LIMIT %zu FORMAT TabSeparated", limit);
	if ((rc = ch_q(c, &q)))
		return rc;
	struct store_top_row *rows = calloc(limit ? limit : 1, sizeof(*rows));
	size_t cnt = 0;
	if (!rows)
		return -ENOMEM;
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *fl[4];
	size_t ll[4];
	int nf;
	while ((nf = tsv_next(&cur, fl, ll, 4)) >= 0 && cnt < limit) {
		if (nf != 4)
			continue;
		if (!(rows[cnt].key = strdup(fl[0]))) {
			store_top_free(rows, cnt);
			return -ENOMEM;
		}
		rows[cnt].events = strtoull(fl[1], NULL, 10);
		rows[cnt].blocked = strtoull(fl[2], NULL, 10);
		rows[cnt].total = strtoull(fl[3], NULL, 10);
		cnt++;
	}
	*out = rows;
	*n = cnt;
	return 0;
}

static int ch_usage(struct store *s, enum store_top_kind k, const struct store_filter *f, struct store_usage_row **out,
		    size_t *n)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	int rc;
	static const char *const col[] = {
		[STORE_TOP_USERS] = "`user`", [STORE_TOP_EXES] = "exe", [STORE_TOP_PROVIDERS] = "provider",
		[STORE_TOP_HOSTS] = "host", [STORE_TOP_MODELS] = "model", [STORE_TOP_ACTIONS] = "action",
		[STORE_TOP_AGENTS] = "agent_id", [STORE_TOP_FINDINGS] = "splitByChar(':', fnd)[1]",
		[STORE_TOP_TOOLS] = "tool", [STORE_TOP_MCP_SERVERS] = "mcp_server", [STORE_TOP_MCP_METHODS] = "mcp_method",
		[STORE_TOP_MCP_SESSIONS] = "mcp_session",
	};
	b_fmt(&q, "SELECT %s AS k, provider, model, sum(greatest(prompt_tokens, 0)), sum(greatest(completion_tokens, 0)),"
		  " sum(greatest(cached_tokens, 0)) FROM events%s", col[k], k == STORE_TOP_FINDINGS ? " ARRAY JOIN splitByChar(',', findings) AS fnd" : "");
	where(&q, f);
	b_fmt(&q, " AND %s != '' GROUP BY k, provider, model LIMIT %d FORMAT TabSeparated",
	      k == STORE_TOP_FINDINGS ? "fnd" : col[k], STORE_USAGE_MAX);
	if ((rc = ch_q(c, &q)))
		return rc;
	size_t cap = 64, cnt = 0;
	struct store_usage_row *rows = calloc(cap, sizeof(*rows));
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *fl[6];
	size_t ll[6];
	int nf;
	while (rows && (nf = tsv_next(&cur, fl, ll, 6)) >= 0) {
		if (nf != 6)
			continue;
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows))) {
			store_usage_free(rows, cnt);
			return -ENOMEM;
		}
		struct store_usage_row *r = &rows[cnt++];
		r->key = strdup(fl[0]);
		r->provider = strdup(fl[1]);
		r->model = strdup(fl[2]);
		r->input_tokens = strtoull(fl[3], NULL, 10);
		r->output_tokens = strtoull(fl[4], NULL, 10);
		r->cached_tokens = strtoull(fl[5], NULL, 10);
		if (!r->key || !r->provider || !r->model) {
			store_usage_free(rows, cnt);
			return -ENOMEM;
		}
	}
	if (!rows)
		return -ENOMEM;
	*out = rows;
	*n = cnt;
	return 0;
}

static int ch_inventory(struct store *s, const struct store_filter *f, struct store_inventory_row **out, size_t *n)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	int rc;
	b_add(&q, "SELECT `user`, exe, if(provider != '', provider, sni) AS svc, host, min(time), max(time), count(),"
		  " countIf(kind IN ('request', 'websocket')), sum(greatest(prompt_tokens, 0) + greatest(completion_tokens, 0)),"
		  " countIf(findings != ''), countIf(action = 'block') FROM events",
	      strlen("SELECT `user`, exe, if(provider != '', provider, sni) AS svc, host, min(time), max(time), count(),"
		     " countIf(kind IN ('request', 'websocket')), sum(greatest(prompt_tokens, 0) + greatest(completion_tokens, 0)),"
		     " countIf(findings != ''), countIf(action = 'block') FROM events"));
	where(&q, f);
	b_fmt(&q, " AND if(provider != '', provider, sni) != '' AND kind NOT IN ('review', 'alert') GROUP BY `user`, exe, svc, host"
		  " ORDER BY count() DESC, `user`, exe, svc, host LIMIT %d FORMAT TabSeparated", STORE_USAGE_MAX);
	if ((rc = ch_q(c, &q)))
		return rc;
	size_t cap = 64, cnt = 0;
	struct store_inventory_row *rows = calloc(cap, sizeof(*rows));
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *fl[11];
	size_t ll[11];
	int nf;
	while (rows && (nf = tsv_next(&cur, fl, ll, 11)) >= 0) {
		if (nf != 11)
			continue;
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows)))
			break;
		struct store_inventory_row *r = &rows[cnt++];
		r->user = strdup(fl[0]);
		r->exe = strdup(fl[1]);
		r->provider = strdup(fl[2]);
		r->host = strdup(fl[3]);
		r->first_us = strtoll(fl[4], NULL, 10);
		r->last_us = strtoll(fl[5], NULL, 10);
		r->events = strtoull(fl[6], NULL, 10);
		r->requests = strtoull(fl[7], NULL, 10);
		r->tokens = strtoull(fl[8], NULL, 10);
		r->findings = strtoull(fl[9], NULL, 10);
		r->blocks = strtoull(fl[10], NULL, 10);
		if (!r->user || !r->exe || !r->provider || !r->host) {
			store_inventory_free(rows, cnt);
			return -ENOMEM;
		}
	}
	if (!rows)
		return -ENOMEM;
	*out = rows;
	*n = cnt;
	return 0;
}

static int ch_review_set(struct store *s, const struct store_review *r)
{
	struct ch *c = CH(s);
	static uint64_t last_version;
	struct chbuf body = { 0 };
	char num[64];
	uint64_t v = (uint64_t)now_us();
	if (v <= last_version)
		v = last_version + 1;
	last_version = v;
	tsv_str(&body, r->exe);
	b_add(&body, "\t", 1);
	tsv_str(&body, r->provider);
	b_add(&body, "\t", 1);
	tsv_str(&body, r->state);
	b_add(&body, "\t", 1);
	tsv_str(&body, r->by ? r->by : "");
	snprintf(num, sizeof(num), "\t%lld\t%llu\n", (long long)r->at_us, (unsigned long long)v);
	b_add(&body, num, strlen(num));
	int rc = body.oom ? -ENOMEM
			  : ch_exec(c, "INSERT INTO reviews (exe, provider, state, reviewer, reviewed_at, version) FORMAT TabSeparated",
				    body.out.data, body.out.len);
	b_free(&body);
	return rc;
}

static int ch_review_list(struct store *s, struct store_review **out, size_t *n)
{
	struct ch *c = CH(s);
	int rc = ch_exec(c, "SELECT exe, provider, state, reviewer, reviewed_at, version FROM reviews FINAL ORDER BY exe, provider"
			    " FORMAT TabSeparated", NULL, 0);
	if (rc)
		return rc;
	size_t cap = 16, cnt = 0;
	struct store_review *rows = calloc(cap, sizeof(*rows));
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *fl[6];
	size_t ll[6];
	int nf;
	while (rows && (nf = tsv_next(&cur, fl, ll, 6)) >= 0) {
		if (nf != 6)
			continue;
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows)))
			break;
		struct store_review *r = &rows[cnt++];
		r->exe = strdup(fl[0]);
		r->provider = strdup(fl[1]);
		r->state = strdup(fl[2]);
		r->by = strdup(fl[3]);
		r->at_us = strtoll(fl[4], NULL, 10);
		if (!r->exe || !r->provider || !r->state || !r->by) {
			store_review_free(rows, cnt);
			return -ENOMEM;
		}
	}
	if (!rows)
		return -ENOMEM;
	*out = rows;
	*n = cnt;
	return 0;
}

#define AGENT_COLS "agent_id, pubkey, revoked, first_seen, last_seen, has_horizon, horizon_seq, horizon_hash"

static void read_agent_row(char **f, size_t *l, struct store_agent *a)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->agent_id, sizeof(a->agent_id), "%s", f[0]);
	if (l[1] == 32) {
		a->has_key = true;
		memcpy(a->pubkey, f[1], 32);
	}
	a->revoked = atoi(f[2]) != 0;
	a->first_seen_us = strtoll(f[3], NULL, 10);
	a->last_seen_us = strtoll(f[4], NULL, 10);
	a->has_horizon = atoi(f[5]) != 0;
	a->horizon_seq = strtoull(f[6], NULL, 10);
	if (l[7] == 32)
		memcpy(a->horizon_hash, f[7], 32);
}

static int agent_head(struct ch *c, struct store_agent *a)
{
	struct chbuf q = { 0 };
	b_add(&q, "SELECT seq, hash FROM event_keys WHERE agent_id = ", 50);
	ch_quote(&q, a->agent_id);
	b_add(&q, " ORDER BY seq DESC LIMIT 1 FORMAT TabSeparated", 46);
	int rc = ch_q(c, &q);
	if (rc)
		return rc;
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *f[2];
	size_t l[2];
	if (tsv_next(&cur, f, l, 2) == 2) {
		a->has_head = true;
		a->head_seq = strtoull(f[0], NULL, 10);
		if (l[1] == 32)
			memcpy(a->head_hash, f[1], 32);
	}
	return 0;
}

static int agent_get(struct ch *c, const char *id, struct store_agent *a, bool *found)
{
	struct chbuf q = { 0 };
	*found = false;
	b_add(&q, "SELECT " AGENT_COLS ", version FROM agents FINAL WHERE agent_id = ",
	      strlen("SELECT " AGENT_COLS ", version FROM agents FINAL WHERE agent_id = "));
	ch_quote(&q, id);
	b_add(&q, " FORMAT TabSeparated", 20);
	int rc = ch_q(c, &q);
	if (rc)
		return rc;
	struct tsv_cursor cur = { c->resp, c->resp + c->rlen };
	char *f[8];
	size_t l[8];
	if (tsv_next(&cur, f, l, 8) == 8) {
		read_agent_row(f, l, a);
		*found = true;
	}
	return 0;
}

/* Writes a new version of the agent row. Versions are microsecond clocks,
 * bumped past the last one this process wrote so two quick updates keep
 * their order. */
static int agent_put(struct ch *c, const struct store_agent *a)
{
	static uint64_t last_version;
	struct chbuf body = { 0 };
	char num[160];
	uint64_t v = (uint64_t)now_us();
	if (v <= last_version)
		v = last_version + 1;
	last_version = v;
	tsv_str(&body, a->agent_id);
	b_add(&body, "\t", 1);
	if (a->has_key)
		tsv_bytes(&body, a->pubkey, 32);
	snprintf(num, sizeof(num), "\t%d\t%lld\t%lld\t%d\t%llu\t", a->revoked, (long long)a->first_seen_us,
		 (long long)a->last_seen_us, a->has_horizon, (unsigned long long)a->horizon_seq);
	b_add(&body, num, strlen(num));
	if (a->has_horizon)
		tsv_bytes(&body, a->horizon_hash, 32);
	snprintf(num, sizeof(num), "\t%llu\n", (unsigned long long)v);
	b_add(&body, num, strlen(num));
	int rc = body.oom ? -ENOMEM : ch_exec(c, "INSERT INTO agents (" AGENT_COLS ", version) FORMAT TabSeparated", body.out.data, body.out.len);
	b_free(&body);
	return rc;
}

static int ch_agent_get(struct store *s, const char *id, struct store_agent *out)
{
	struct ch *c = CH(s);
	bool found;
	int rc = agent_get(c, id, out, &found);
	if (rc)
		return rc;
	if (!found)
		return -ENOENT;
	return agent_head(c, out);
}

static int ch_agent_pin_key(struct store *s, const char *id, const uint8_t key[32])
{
	struct ch *c = CH(s);
	struct store_agent a;
	bool found;
	int rc = agent_get(c, id, &a, &found);
	if (rc)
		return rc;
	if (found && a.has_key)
		return memcmp(a.pubkey, key, 32) ? -EEXIST : 0;
	if (!found) {
		memset(&a, 0, sizeof(a));
		snprintf(a.agent_id, sizeof(a.agent_id), "%s", id);
		a.first_seen_us = now_us();
	}
	a.has_key = true;
	memcpy(a.pubkey, key, 32);
	return agent_put(c, &a);
}

static int ch_agent_set_revoked(struct store *s, const char *id, bool revoked)
{
	struct ch *c = CH(s);
	struct store_agent a;
	bool found;
	int rc = agent_get(c, id, &a, &found);
	if (rc)
		return rc;
	if (!found) {
		memset(&a, 0, sizeof(a));
		snprintf(a.agent_id, sizeof(a.agent_id), "%s", id);
	}
	a.revoked = revoked;
	return agent_put(c, &a);
}

static int ch_agent_list(struct store *s, struct store_agent **out, size_t *n)
{
	struct ch *c = CH(s);
	/* version is selected (and ignored) because FINAL through a Distributed
	 * table in ClickHouse 18.16 fails without it. */
	int rc = ch_exec(c, "SELECT " AGENT_COLS ", version FROM agents FINAL ORDER BY agent_id FORMAT TabSeparated", NULL, 0);
	if (rc)
		return rc;
	/* Copy: agent_head reuses the response buffer. */
	struct tsv_cursor cur;
	char *copy = ch_resp_copy(c, &cur);
	size_t cap = 16, cnt = 0;
	struct store_agent *v = malloc(cap * sizeof(*v));
	if (!copy || !v) {
		free(copy);
		free(v);
		return -ENOMEM;
	}
	char *f[8];
	size_t l[8];
	int nf;
	while ((nf = tsv_next(&cur, f, l, 8)) >= 0) {
		if (nf != 8)
			continue;
		if ((rc = buf_grow_array(&v, &cap, cnt, sizeof(*v))))
			break;
		read_agent_row(f, l, &v[cnt++]);
	}
	free(copy);
	for (size_t i = 0; !rc && i < cnt; i++)
		rc = agent_head(c, &v[i]);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int ch_scan_events(struct store *s, const char *id, store_event_cb cb, void *ctx)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	struct store_finding fb[64];
	int rc;
	/* Pages of 50,000 rows by seq, so a long chain never sits in memory whole. */
	uint64_t after = 0;
	bool first = true;
	for (;;) {
		b_add(&q, "SELECT " EV_COLS " FROM events WHERE agent_id = ", strlen("SELECT " EV_COLS " FROM events WHERE agent_id = "));
		ch_quote(&q, id);
		b_fmt(&q, " AND seq %s %llu ORDER BY seq, boot_id LIMIT 50000 FORMAT TabSeparated", first ? ">=" : ">",
		      (unsigned long long)after);
		if ((rc = ch_q(c, &q)))
			return rc;
		struct tsv_cursor cur;
		char *copy = ch_resp_copy(c, &cur);
		if (!copy)
			return -ENOMEM;
		char *fl[EV_NCOLS + 1];
		size_t ll[EV_NCOLS + 1];
		int nf;
		size_t rows = 0;
		uint64_t last = after;
		rc = 0;
		while (!rc && (nf = tsv_next(&cur, fl, ll, EV_NCOLS + 1)) >= 0) {
			struct store_event e;
			if (read_event(fl, ll, nf, &e, fb, 64)) {
				store_seterr(s, "clickhouse: unexpected row with %d columns", nf);
				rc = -EPROTO;
				break;
			}
			rows++;
			last = e.seq;
			rc = cb(ctx, &e);
		}
		free(copy);
		if (rc)
			return rc;
		/* A page boundary inside one seq (several boots) would be cut; 50,000
		 * rows of one seq do not occur. */
		if (rows < 50000)
			return 0;
		after = last;
		first = false;
	}
}

static int ch_scan_batches(struct store *s, const char *id, store_batch_cb cb, void *ctx)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	b_add(&q, "SELECT agent_id, boot_id, schema_version, first_seq, last_seq, prev_batch_hash, signature, received"
		  " FROM batches FINAL WHERE agent_id = ", strlen("SELECT agent_id, boot_id, schema_version, first_seq, last_seq, prev_batch_hash, signature, received"
		  " FROM batches FINAL WHERE agent_id = "));
	ch_quote(&q, id);
	b_add(&q, " ORDER BY first_seq, last_seq FORMAT TabSeparated", strlen(" ORDER BY first_seq, last_seq FORMAT TabSeparated"));
	int rc = ch_q(c, &q);
	if (rc)
		return rc;
	struct tsv_cursor cur;
	char *copy = ch_resp_copy(c, &cur);
	if (!copy)
		return -ENOMEM;
	char *f[8];
	size_t l[8];
	int nf;
	while (!rc && (nf = tsv_next(&cur, f, l, 8)) >= 0) {
		if (nf != 8)
			continue;
		struct store_batch_info b = {
			.agent_id = f[0], .boot_id = f[1], .schema_version = (uint32_t)strtoul(f[2], NULL, 10),
			.first_seq = strtoull(f[3], NULL, 10), .last_seq = strtoull(f[4], NULL, 10),
			.prev_batch_hash = (const uint8_t *)f[5], .prev_batch_hash_len = l[5],
			.signature = (const uint8_t *)f[6], .signature_len = l[6], .received_us = strtoll(f[7], NULL, 10),
		};
		rc = cb(ctx, &b);
	}
	free(copy);
	return rc;
}

/* Deletes table's rows older than before_us. On a cluster, on every shard
 * at once (ON CLUSTER: distributed DDL through the cluster's ZooKeeper),
 * so retention does not depend on which shards have a collector; a cluster
 * without ZooKeeper gets this shard only (*local_only). */
static int retain_delete(struct ch *c, struct chbuf *q, const char *table, const char *col, int64_t before_us,
			 bool *local_only)
{
	if (c->cluster[0] && !*local_only) {
		b_fmt(q, "ALTER TABLE %s.%s_local ON CLUSTER %s DELETE WHERE %s < %lld", c->db, table, c->cluster, col,
		      (long long)before_us);
		int rc = ch_q(c, q);
		if (!rc || !strstr(c->base.errmsg, "Zookeeper"))
			return rc;
		*local_only = true;
	}
	b_fmt(q, "ALTER TABLE %s%s DELETE WHERE %s < %lld", table, c->local, col, (long long)before_us);
	return ch_q(c, q);
}

/* Waits (up to a minute) until the deletes are applied: on one server, no
 * mutation left; on a cluster, no row older than the cut-off left on any
 * shard (read through the Distributed table: 18.16 cannot list another
 * shard's mutations). */
static int retain_wait(struct ch *c, struct chbuf *q, int64_t before_us, bool local_only)
{
	int rc = 0;
	for (int i = 0; i < 600; i++) {
		if (c->cluster[0] && !local_only)
			b_fmt(q, "SELECT (SELECT count() FROM events WHERE time < %lld) + (SELECT count() FROM batches"
				 " WHERE received < %lld) FORMAT TabSeparated", (long long)before_us, (long long)before_us);
		else
			b_fmt(q, "SELECT count() FROM system.mutations WHERE database = currentDatabase()"
				 " AND is_done = 0 FORMAT TabSeparated");
		if ((rc = ch_q(c, q)))
			return rc;
		if (atoi(c->resp ? c->resp : "1") == 0)
			return 0;
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int ch_retain(struct store *s, int64_t before_us, uint64_t *deleted)
{
	struct ch *c = CH(s);
	struct chbuf q = { 0 };
	int rc;
	*deleted = 0;
	/* Horizons first: per agent, the newest event about to go. */
	b_fmt(&q, "SELECT agent_id, max(seq), argMax(hash, seq), count() FROM events WHERE time < %lld"
		  " AND agent_id != 'collector' GROUP BY agent_id FORMAT TabSeparated", (long long)before_us);
	if ((rc = ch_q(c, &q)))
		return rc;
	struct tsv_cursor cur;
	char *copy = ch_resp_copy(c, &cur);
	if (!copy)
		return -ENOMEM;
	char *f[4];
	size_t l[4];
	int nf;
	while (!rc && (nf = tsv_next(&cur, f, l, 4)) >= 0) {
		if (nf != 4)
			continue;
		struct store_agent a;
		bool found;
		char id[128];
		snprintf(id, sizeof(id), "%s", f[0]);
		uint64_t hs = strtoull(f[1], NULL, 10);
		uint8_t hh[32] = { 0 };
		if (l[2] == 32)
			memcpy(hh, f[2], 32);
		if ((rc = agent_get(c, id, &a, &found)))
			break;
		if (!found) {
			memset(&a, 0, sizeof(a));
			snprintf(a.agent_id, sizeof(a.agent_id), "%s", id);
		}
		a.has_horizon = true;
		a.horizon_seq = hs;
		memcpy(a.horizon_hash, hh, 32);
		rc = agent_put(c, &a);
	}
	free(copy);
	if (rc)
		return rc;
	b_fmt(&q, "SELECT count() FROM events WHERE time < %lld FORMAT TabSeparated", (long long)before_us);
	if ((rc = ch_q(c, &q)))
		return rc;
	*deleted = strtoull(c->resp ? c->resp : "0", NULL, 10);
	if (!*deleted)
		return 0;
	/* A mutation: asynchronous in ClickHouse (18.16 has no mutations_sync),
	 * so wait below until it is done. Batch headers received before the
	 * cut-off only cover events older than it. */
	static const char *const cut[4][2] = { { "events", "time" }, { "event_keys", "time" }, { "event_feed", "time" },
					       { "batches", "received" } };
	bool local_only = false;
	for (int i = 0; i < 4; i++)
		if ((rc = retain_delete(c, &q, cut[i][0], cut[i][1], before_us, &local_only)))
			return rc;
	rc = retain_wait(c, &q, before_us, local_only);
	b_free(&q);
	if (!rc && local_only) {
		store_seterr(s, "clickhouse: retention ran on this shard only: cluster %s has no distributed DDL"
			     " (ZooKeeper in the servers' configuration); without it every shard needs a collector with"
			     " retain_days", c->cluster);
		return -ENOTSUP;
	}
	return rc;
}

static const struct store_ops ch_ops = {
	.kind = "clickhouse",
	.close = ch_close,
	.insert_batch = ch_insert_batch,
	.insert_batches = ch_insert_batches,
	.insert_local = ch_insert_local,
	.query = ch_query,
	.feed = ch_feed,
	.top = ch_top,
	.inventory = ch_inventory,
	.review_set = ch_review_set,
	.review_list = ch_review_list,
	.usage = ch_usage,
	.count = ch_count,
	.agent_get = ch_agent_get,
	.agent_pin_key = ch_agent_pin_key,
	.agent_set_revoked = ch_agent_set_revoked,
	.agent_list = ch_agent_list,
	.scan_events = ch_scan_events,
	.scan_batches = ch_scan_batches,
	.retain = ch_retain,
};

int store_clickhouse_open(const char *url, struct store **out, char *err, size_t errlen)
{
	/* clickhouse://HOST:PORT/DB */
	/* clickhouse://HOST:PORT/DB[?cluster=NAME] */
	const char *hp = url + strlen("clickhouse://"), *slash = strchr(hp, '/');
	const char *qm = slash ? strchr(slash, '?') : NULL, *cluster = "";
	struct ch *c;
	int rc;
	*out = NULL;
	size_t dblen = slash ? (qm ? (size_t)(qm - slash - 1) : strlen(slash + 1)) : 0;
	if (qm) {
		if (strncmp(qm, "?cluster=", 9) || !qm[9]) {
			snprintf(err, errlen, "%s: the only option is ?cluster=NAME", url);
			return -EINVAL;
		}
		cluster = qm + 9;
	}
	if (!slash || slash == hp || !dblen || dblen >= sizeof(c->db) || strlen(cluster) >= sizeof(c->cluster)) {
		snprintf(err, errlen, "%s: expected clickhouse://HOST:PORT/DB[?cluster=NAME]", url);
		return -EINVAL;
	}
	for (const char *p = slash + 1; *p; p++) {
		if (p == qm) {
			p += 8;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) {
			snprintf(err, errlen, "%s: database and cluster names may only hold [A-Za-z0-9_]", url);
			return -EINVAL;
		}
	}
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->base.ops = &ch_ops;
	snprintf(c->base_url, sizeof(c->base_url), "http://%.*s", (int)(slash - hp), hp);
	snprintf(c->db, sizeof(c->db), "%.*s", (int)dblen, slash + 1);
	snprintf(c->cluster, sizeof(c->cluster), "%s", cluster);
	c->local = c->cluster[0] ? "_local" : "";
	if (!(c->curl = curl_easy_init())) {
		free(c);
		return -ENOMEM;
	}
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	/* The database itself: created from the default database. */
	{
		char saved[128];
		struct chbuf q = { 0 };
		snprintf(saved, sizeof(saved), "%s", c->db);
		snprintf(c->db, sizeof(c->db), "default");
		b_fmt(&q, "CREATE DATABASE IF NOT EXISTS %s", saved);
		rc = ch_q(c, &q);
		snprintf(c->db, sizeof(c->db), "%s", saved);
	}
	if (rc || (rc = migrate(c))) {
		snprintf(err, errlen, "%s: %s", url, c->base.errmsg);
		ch_close(&c->base);
		return rc;
	}
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0x5a, sizeof(rnd));
	snprintf(c->local_boot, sizeof(c->local_boot),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
	if (ch_exec(c, "SELECT max(seq) FROM events WHERE agent_id = 'collector' FORMAT TabSeparated", NULL, 0) == 0)
		c->local_seq = strtoull(c->resp ? c->resp : "0", NULL, 10);
	/* The commit order continues above everything stored: after a restart,
	 * or a clock that stepped back. */
	/* A cluster whose other shards have no tables yet (their collectors
	 * have not started) cannot answer for the whole: this shard's part. */
	if ((rc = ch_exec(c, "SELECT max(ingest_seq) FROM events FORMAT TabSeparated", NULL, 0)) && c->cluster[0])
		rc = ch_exec(c, "SELECT max(ingest_seq) FROM events_local FORMAT TabSeparated", NULL, 0);
	if (rc) {
		snprintf(err, errlen, "%s: %s", url, c->base.errmsg);
		ch_close(&c->base);
		return rc;
	}
	order_seen(strtoull(c->resp ? c->resp : "0", NULL, 10));
	*out = &c->base;
	return 0;
}
