/* store_sqlite: the embedded store. One database file in WAL mode, one
 * connection, every batch in one transaction, prepared statements kept for
 * the hot insert path. Indexes serve the SOC's filters (time, user, host,
 * action, finding through the event_findings side table) and verify's
 * per-agent walk (the UNIQUE (agent_id, seq, boot_id) key doubles as both the
 * deduplication key and the chain order).
 *
 * ev_user and ev_host carry action too, so "top users/hosts" (count and
 * blocked) is answered from the index alone.
 * Row ids are time-ordered (time_us * 1024 + a counter), so a time range is
 * a range of the table's own B-tree: no separate time index to maintain on
 * every insert, and "newest first" is the table order. The action index is
 * partial (action != 'allow'): allowed traffic is most of the rows and the
 * least asked for, so it skips that index entirely.
 *
 * Must never: paste a caller string into SQL (everything is bound), or ack
 * (return 0 from insert) before COMMIT returned SQLITE_OK. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/random.h>
#include <sqlite3.h>
#include "buf.h"
#include "store.h"

#define SCHEMA_VERSION 6

struct sq {
	struct store base;
	sqlite3 *db;
	sqlite3_stmt *ins_ev, *ins_find, *sel_hash, *ins_batch;
	uint64_t idctr;
	char local_boot[40];
	uint64_t local_seq;
};

#define SQ(s) ((struct sq *)(s))

static const char *const migrations[] = {
	/* 1: the first schema. */
	"CREATE TABLE events("
	" id INTEGER PRIMARY KEY, time INTEGER NOT NULL, event_id TEXT, agent_id TEXT NOT NULL,"
	" boot_id TEXT NOT NULL, seq INTEGER NOT NULL, host TEXT, kind TEXT, user TEXT, uid INTEGER,"
	" gid INTEGER, pid INTEGER, tid INTEGER, comm TEXT, exe TEXT, cgroup TEXT, dst_ip TEXT,"
	" dst_port INTEGER, sni TEXT, provider TEXT, method TEXT, path TEXT, model TEXT, stream INTEGER,"
	" action TEXT, rule TEXT, reason TEXT, error TEXT, findings TEXT, injection_score REAL,"
	" status INTEGER, bytes_up INTEGER, bytes_down INTEGER, prompt_tokens INTEGER,"
	" completion_tokens INTEGER, latency_ms INTEGER, policy_hash TEXT, gap_count INTEGER,"
	" gap_first_seq INTEGER, gap_last_seq INTEGER, prev_hash BLOB, hash BLOB, content TEXT, raw BLOB,"
	" UNIQUE(agent_id, seq, boot_id));"
	"CREATE INDEX ev_user ON events(user, time, action);"
	"CREATE INDEX ev_host ON events(host, time, action);"
	"CREATE INDEX ev_action ON events(action, time) WHERE action != 'allow';"
	"CREATE TABLE event_findings(ev INTEGER NOT NULL, type TEXT NOT NULL, count INTEGER, time INTEGER);"
	"CREATE INDEX evf_type ON event_findings(type, time);"
	"CREATE TABLE batches(agent_id TEXT NOT NULL, boot_id TEXT NOT NULL, first_seq INTEGER NOT NULL,"
	" last_seq INTEGER NOT NULL, schema_version INTEGER, prev_batch_hash BLOB, signature BLOB,"
	" received INTEGER, PRIMARY KEY(agent_id, first_seq, last_seq, boot_id));"
	"CREATE TABLE agents(agent_id TEXT PRIMARY KEY, pubkey BLOB, revoked INTEGER NOT NULL DEFAULT 0,"
	" first_seen INTEGER, last_seen INTEGER, horizon_seq INTEGER, horizon_hash BLOB);",
	/* 2: the container an event's process ran in. Added at the end of
	 * the record (after raw): reading it walks past raw, which costs a
	 * page only for the few events whose raw spills over one. */
	"ALTER TABLE events ADD COLUMN container_id TEXT;",
	/* 3: commit order for the forwarders (store_feed). id follows the
	 * event's own time, so an agent's spool shipped late lands behind a
	 * forwarder's cursor; ingest_seq grows with every commit instead.
	 * Existing rows keep their id order. */
	"ALTER TABLE events ADD COLUMN ingest_seq INTEGER;"
	"UPDATE events SET ingest_seq = id;"
	"CREATE UNIQUE INDEX ev_ingest ON events(ingest_seq);",
	/* 4: review states of (program, provider) pairs for the inventory. */
	"CREATE TABLE reviews(exe TEXT NOT NULL, provider TEXT NOT NULL, state TEXT NOT NULL, reviewer TEXT,"
	" reviewed_at INTEGER, PRIMARY KEY(exe, provider));",
	/* 5: the MCP fields as columns, for the SOC's filters and top views.
	 * Empty values are stored as NULL so that the partial indexes hold MCP
	 * events only: the LLM traffic that is most of the rows costs them
	 * nothing on insert, and "tool = ?" implies "tool IS NOT NULL", so the
	 * planner uses them. */
	"ALTER TABLE events ADD COLUMN mcp_server TEXT;"
	"ALTER TABLE events ADD COLUMN mcp_method TEXT;"
	"ALTER TABLE events ADD COLUMN tool TEXT;"
	"ALTER TABLE events ADD COLUMN mcp_session TEXT;"
	"CREATE INDEX ev_mcp_server ON events(mcp_server, time) WHERE mcp_server IS NOT NULL;"
	"CREATE INDEX ev_tool ON events(tool, time) WHERE tool IS NOT NULL;"
	"CREATE INDEX ev_mcp_session ON events(mcp_session, time) WHERE mcp_session IS NOT NULL;",
	/* 6: prompt tokens read from the provider's cache (priced at
	 * cached_input); older rows: unknown. */
	"ALTER TABLE events ADD COLUMN cached_tokens INTEGER DEFAULT -1;",
};

#define EV_COLS_A "time, event_id, agent_id, boot_id, seq, host, kind, user, uid, gid, pid, tid, comm, exe," \
	" cgroup, dst_ip, dst_port, sni, provider, method, path, model, stream, action, rule, reason," \
	" error, findings, injection_score, status, bytes_up, bytes_down, prompt_tokens," \
	" completion_tokens, latency_ms, policy_hash, gap_count, gap_first_seq, gap_last_seq, prev_hash," \
	" hash, container_id, mcp_server, mcp_method, tool, mcp_session, cached_tokens"
/* raw (E) is the last column: a scan that does not ask for it stops
 * decoding the record before it (and never touches its overflow pages). */
#define EV_COLS EV_COLS_A ", e.raw, e.content"
#define EV_NCOLS 48

static int sq_fail(struct sq *q, const char *what)
{
	store_seterr(&q->base, "sqlite: %s: %s", what, sqlite3_errmsg(q->db));
	return -EIO;
}

static int exec(struct sq *q, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		store_seterr(&q->base, "sqlite: %s", msg ? msg : "error");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int user_version(struct sq *q, int *v)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "user_version");
	*v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return 0;
}

/* Migrations are numbered by PRAGMA user_version; each runs in its own
 * transaction so a crash leaves the database at a whole version. */
static int migrate(struct sq *q)
{
	int v, rc;
	if ((rc = user_version(q, &v)))
		return rc;
	if (v > SCHEMA_VERSION) {
		store_seterr(&q->base, "sqlite: database schema %d is newer than this collector (%d)", v,
			     SCHEMA_VERSION);
		return -EPROTO;
	}
	for (; v < SCHEMA_VERSION; v++) {
		char pragma[64];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d;", v + 1);
		if ((rc = exec(q, "BEGIN IMMEDIATE")) || (rc = exec(q, migrations[v])) ||
		    (rc = exec(q, pragma)) || (rc = exec(q, "COMMIT"))) {
			exec(q, "ROLLBACK");
			return rc;
		}
	}
	return 0;
}

static void sq_close(struct store *s)
{
	struct sq *q = SQ(s);
	sqlite3_finalize(q->ins_ev);
	sqlite3_finalize(q->ins_find);
	sqlite3_finalize(q->sel_hash);
	sqlite3_finalize(q->ins_batch);
	sqlite3_close(q->db);
	free(q);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* "" as NULL: the columns of migration 5 (partial indexes). */
static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int insert_event(struct sq *q, const struct store_event *e, bool *dup)
{
	sqlite3_stmt *st = q->ins_ev;
	char findings[2048];
	int i = 1, rc;
	*dup = false;
	if (store_findings_format(e->findings, e->nfindings, findings, sizeof(findings))) {
		store_seterr(&q->base, "too many findings in one event");
		return -E2BIG;
	}
	sqlite3_reset(st);
	int64_t t = e->time_us < 0 ? 0 : e->time_us > (INT64_MAX >> 10) - 1 ? (INT64_MAX >> 10) - 1 : e->time_us;
	sqlite3_bind_int64(st, i++, (t << 10) | (sqlite3_int64)(q->idctr++ & 1023));
	sqlite3_bind_int64(st, i++, e->time_us);
	bind_text(st, i++, e->event_id);
	bind_text(st, i++, e->agent_id);
	bind_text(st, i++, e->boot_id);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)e->seq);
	bind_text(st, i++, e->host);
	bind_text(st, i++, e->kind);
	bind_text(st, i++, e->user);
	sqlite3_bind_int64(st, i++, e->uid);
	sqlite3_bind_int64(st, i++, e->gid);
	sqlite3_bind_int64(st, i++, e->pid);
	sqlite3_bind_int64(st, i++, e->tid);
	bind_text(st, i++, e->comm);
	bind_text(st, i++, e->exe);
	bind_text(st, i++, e->cgroup);
	bind_text(st, i++, e->dst_ip);
	sqlite3_bind_int64(st, i++, e->dst_port);
	bind_text(st, i++, e->sni);
	bind_text(st, i++, e->provider);
	bind_text(st, i++, e->method);
	bind_text(st, i++, e->path);
	bind_text(st, i++, e->model);
	sqlite3_bind_int(st, i++, e->stream);
	bind_text(st, i++, e->action);
	bind_text(st, i++, e->rule);
	bind_text(st, i++, e->reason);
	bind_text(st, i++, e->error);
	bind_text(st, i++, findings);
	sqlite3_bind_double(st, i++, e->injection_score);
	sqlite3_bind_int64(st, i++, e->status);
	sqlite3_bind_int64(st, i++, e->bytes_up);
	sqlite3_bind_int64(st, i++, e->bytes_down);
	sqlite3_bind_int64(st, i++, e->prompt_tokens);
	sqlite3_bind_int64(st, i++, e->completion_tokens);
	sqlite3_bind_int64(st, i++, e->latency_ms);
	bind_text(st, i++, e->policy_hash);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)e->gap_count);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)e->gap_first_seq);
	sqlite3_bind_int64(st, i++, (sqlite3_int64)e->gap_last_seq);
	sqlite3_bind_blob(st, i++, e->prev_hash, STORE_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, i++, e->hash, STORE_HASH_LEN, SQLITE_STATIC);
	bind_text(st, i++, e->container_id);
	bind_text_or_null(st, i++, e->mcp_server);
	bind_text_or_null(st, i++, e->mcp_method);
	bind_text_or_null(st, i++, e->tool);
	bind_text_or_null(st, i++, e->mcp_session);
	sqlite3_bind_int64(st, i++, e->cached_tokens);
	if (e->content)
		bind_text(st, i++, e->content);
	else
		sqlite3_bind_null(st, i++);
	if (e->raw)
		sqlite3_bind_blob(st, i++, e->raw, (int)e->raw_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i++);
	rc = sqlite3_step(st);
	int xrc = sqlite3_extended_errcode(q->db);
	sqlite3_reset(st);
	for (int tries = 0; rc != SQLITE_DONE && xrc == SQLITE_CONSTRAINT_PRIMARYKEY && tries < 2048; tries++) {
		/* Same microsecond and counter as another row: next id. */
		sqlite3_bind_int64(st, 1, (t << 10) | (sqlite3_int64)(q->idctr++ & 1023));
		rc = sqlite3_step(st);
		xrc = sqlite3_extended_errcode(q->db);
		sqlite3_reset(st);
	}
	if (rc != SQLITE_DONE && xrc != SQLITE_CONSTRAINT_UNIQUE)
		return sq_fail(q, "insert event");
	if (rc != SQLITE_DONE) {
		/* Already there: the same event again is a harmless resend, a
		 * different one under the same key is a replay attack. */
		sqlite3_stmt *h = q->sel_hash;
		sqlite3_reset(h);
		bind_text(h, 1, e->agent_id);
		sqlite3_bind_int64(h, 2, (sqlite3_int64)e->seq);
		bind_text(h, 3, e->boot_id);
		if (sqlite3_step(h) != SQLITE_ROW)
			return sq_fail(q, "dedup lookup");
		const void *old = sqlite3_column_blob(h, 0);
		bool same = sqlite3_column_bytes(h, 0) == STORE_HASH_LEN && !memcmp(old, e->hash, STORE_HASH_LEN);
		/* Reset at once: a statement left on a row keeps a read
		 * transaction open, and a stale snapshot cannot later write. */
		sqlite3_reset(h);
		if (!same) {
			store_seterr(&q->base, "seq %llu of boot %s already stored with different content",
				     (unsigned long long)e->seq, e->boot_id ? e->boot_id : "");
			return -EEXIST;
		}
		*dup = true;
		return 0;
	}
	sqlite3_int64 id = sqlite3_last_insert_rowid(q->db);
	for (size_t k = 0; k < e->nfindings; k++) {
		sqlite3_stmt *f = q->ins_find;
		sqlite3_reset(f);
		sqlite3_bind_int64(f, 1, id);
		bind_text(f, 2, e->findings[k].type);
		sqlite3_bind_int64(f, 3, e->findings[k].count);
		sqlite3_bind_int64(f, 4, e->time_us);
		rc = sqlite3_step(f);
		sqlite3_reset(f);
		if (rc != SQLITE_DONE)
			return sq_fail(q, "insert finding");
	}
	return 0;
}

static int touch_agent(struct sq *q, const char *id, int64_t now)
{
	sqlite3_stmt *st;
	int rc = 0;
	if (sqlite3_prepare_v2(q->db,
			       "INSERT INTO agents(agent_id, first_seen, last_seen) VALUES(?1, ?2, ?2)"
			       " ON CONFLICT(agent_id) DO UPDATE SET last_seen = max(coalesce(last_seen, 0), ?2)",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "agent upsert");
	bind_text(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = sq_fail(q, "agent upsert");
	sqlite3_finalize(st);
	return rc;
}

/* One batch inside an open transaction. */
static int insert_one(struct sq *q, const struct store_batch *b, size_t *ins, size_t *dups)
{
	int rc;
	*ins = *dups = 0;
	for (size_t i = 0; i < b->nevents; i++) {
		bool dup;
		if ((rc = insert_event(q, &b->events[i], &dup)))
			return rc;
		if (dup)
			(*dups)++;
		else
			(*ins)++;
	}
	sqlite3_stmt *st = q->ins_batch;
	sqlite3_reset(st);
	bind_text(st, 1, b->agent_id);
	bind_text(st, 2, b->boot_id);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)b->first_seq);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)b->last_seq);
	sqlite3_bind_int(st, 5, (int)b->schema_version);
	sqlite3_bind_blob(st, 6, b->prev_batch_hash ? (const void *)b->prev_batch_hash : "",
			  (int)b->prev_batch_hash_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, b->signature ? (const void *)b->signature : "", (int)b->signature_len,
			  SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, b->received_us);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sq_fail(q, "insert batch");
	return touch_agent(q, b->agent_id, b->received_us);
}

static void rollback_keep_err(struct sq *q)
{
	char keep[sizeof(q->base.errmsg)];
	memcpy(keep, q->base.errmsg, sizeof(keep));
	exec(q, "ROLLBACK");
	memcpy(q->base.errmsg, keep, sizeof(keep));
}

static int sq_insert_batch(struct store *s, const struct store_batch *b, size_t *ins, size_t *dups)
{
	struct sq *q = SQ(s);
	int rc;
	if ((rc = exec(q, "BEGIN IMMEDIATE")))
		return rc;
	if ((rc = insert_one(q, b, ins, dups)) || (rc = exec(q, "COMMIT"))) {
		rollback_keep_err(q);
		*ins = *dups = 0;
		return rc;
	}
	return 0;
}

/* Group commit: one transaction (one fsync) for n batches, each in its own
 * savepoint so that a replayed batch is refused alone. */
static int sq_insert_batches(struct store *s, const struct store_batch *b, size_t n, struct store_result *res)
{
	struct sq *q = SQ(s);
	int rc;
	if ((rc = exec(q, "BEGIN IMMEDIATE")))
		return rc;
	for (size_t i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		if ((rc = exec(q, "SAVEPOINT b")))
			goto err;
		rc = insert_one(q, &b[i], &res[i].inserted, &res[i].dups);
		if (rc == -EEXIST) {
			res[i].rc = rc;
			snprintf(res[i].why, sizeof(res[i].why), "%s", s->errmsg);
			res[i].inserted = res[i].dups = 0;
			if ((rc = exec(q, "ROLLBACK TO b")))
				goto err;
		} else if (rc) {
			goto err;
		}
		if ((rc = exec(q, "RELEASE b")))
			goto err;
	}
	if ((rc = exec(q, "COMMIT")))
		goto err;
	return 0;
err:
	rollback_keep_err(q);
	return rc;
}

static int sq_insert_local(struct store *s, const struct store_event *e)
{
	struct sq *q = SQ(s);
	struct store_event c = *e;
	bool dup;
	int rc;
	c.boot_id = q->local_boot;
	c.seq = ++q->local_seq;
	if (!c.agent_id)
		c.agent_id = "collector";
	if ((rc = exec(q, "BEGIN IMMEDIATE")))
		return rc;
	if ((rc = insert_event(q, &c, &dup)) || (rc = exec(q, "COMMIT"))) {
		exec(q, "ROLLBACK");
		return rc;
	}
	return 0;
}

/* WHERE clause builder: appends conditions with numbered parameters and
 * remembers the values to bind. Text parameters take ?1..?WHERE_TEXT (13
 * equality filters, a finding and an event reference use 16 today),
 * numbers the slots after them. */
#define WHERE_TEXT 24
#define WHERE_FIRST_NUM "25"   /* WHERE_TEXT + 1, spelled out for SQL text */
_Static_assert(WHERE_TEXT == 24, "WHERE_FIRST_NUM must be WHERE_TEXT + 1");
struct where {
	char sql[1024];
	size_t len;
	const char *text[WHERE_TEXT];
	int64_t num[8];
	int ntext, nnum;
};

static void w_add(struct where *w, const char *cond)
{
	int n = snprintf(w->sql + w->len, sizeof(w->sql) - w->len, "%s%s", w->len ? " AND " : " WHERE ", cond);
	if (n > 0 && (size_t)n < sizeof(w->sql) - w->len)
		w->len += (size_t)n;
}

/* The keyset cursor and the one-event lookup, both through the UNIQUE
 * (agent_id, seq, boot_id) index. The cursor compares row ids, the order
 * sq_query returns; a cursor event that retention deleted meanwhile falls
 * back to its time (the id's high bits). */
static void where_evref(const struct store_filter *f, struct where *w)
{
	char c[256];
	const struct store_evref *r = f->before ? f->before : f->at;
	if (!r)
		return;
	w->text[w->ntext++] = r->agent_id ? r->agent_id : "";
	w->text[w->ntext++] = r->boot_id ? r->boot_id : "";
	w->num[w->nnum++] = (int64_t)r->seq;
	if (f->at) {
		snprintf(c, sizeof(c), "e.agent_id = ?%d AND e.boot_id = ?%d AND e.seq = ?%d", w->ntext - 1, w->ntext,
			 WHERE_TEXT + w->nnum);
	} else {
		w->num[w->nnum++] = (r->time_us < 0 ? 0 : r->time_us) << 10;
		snprintf(c, sizeof(c),
			 "e.id < COALESCE((SELECT id FROM events WHERE agent_id = ?%d AND boot_id = ?%d AND seq = ?%d), ?%d)",
			 w->ntext - 1, w->ntext, WHERE_TEXT - 1 + w->nnum, WHERE_TEXT + w->nnum);
	}
	w_add(w, c);
}

/* Conditions on table alias "e". Text params are ?1..?WHERE_TEXT; numbers follow. */
static void build_where(const struct store_filter *f, struct where *w)
{
	memset(w, 0, sizeof(*w));
	char c[256];
	struct { const char *col; const char *val; } eq[] = {
		{ "user", f->user }, { "host", f->host }, { "action", f->action }, { "exe", f->exe },
		{ "provider", f->provider }, { "model", f->model }, { "kind", f->kind },
		{ "agent_id", f->agent_id }, { "rule", f->rule }, { "mcp_server", f->mcp_server },
		{ "mcp_method", f->mcp_method }, { "tool", f->tool }, { "mcp_session", f->mcp_session },
	};
	for (size_t i = 0; i < sizeof(eq) / sizeof(eq[0]); i++) {
		if (!eq[i].val)
			continue;
		w->text[w->ntext++] = eq[i].val;
		snprintf(c, sizeof(c), "e.%s = ?%d", eq[i].col, w->ntext);
		w_add(w, c);
	}
	/* The time bound twice: on the column (for the (user, time)-style
	 * indexes) and on the time-ordered row id (a range of the table). */
	if (f->since_us) {
		w->num[w->nnum++] = f->since_us;
		w->num[w->nnum++] = (f->since_us < 0 ? 0 : f->since_us) << 10;
		snprintf(c, sizeof(c), "e.time >= ?%d AND e.id >= ?%d", WHERE_TEXT - 1 + w->nnum, WHERE_TEXT + w->nnum);
		w_add(w, c);
	}
	if (f->until_us) {
		w->num[w->nnum++] = f->until_us;
		w->num[w->nnum++] = (f->until_us < 0 ? 0 : f->until_us) << 10;
		snprintf(c, sizeof(c), "e.time < ?%d AND e.id < ?%d", WHERE_TEXT - 1 + w->nnum, WHERE_TEXT + w->nnum);
		w_add(w, c);
	}
	if (f->action && strcmp(f->action, "allow")) {
		/* Lets SQLite use the partial index ev_action. */
		w_add(w, "e.action != 'allow'");
	}
	if (f->finding) {
		w->text[w->ntext++] = f->finding;
		snprintf(c, sizeof(c), "e.id IN (SELECT ev FROM event_findings WHERE type = ?%d%s)", w->ntext,
			 f->since_us ? " AND time >= ?" WHERE_FIRST_NUM : "");
		w_add(w, c);
	}
	where_evref(f, w);
}

static void bind_where(sqlite3_stmt *st, const struct where *w)
{
	for (int i = 0; i < w->ntext; i++)
		sqlite3_bind_text(st, i + 1, w->text[i], -1, SQLITE_STATIC);
	for (int i = 0; i < w->nnum; i++)
		sqlite3_bind_int64(st, WHERE_TEXT + 1 + i, w->num[i]);
}

static const uint8_t *col_blob32(sqlite3_stmt *st, int i, uint8_t out[32])
{
	memset(out, 0, 32);
	if (sqlite3_column_bytes(st, i) == 32)
		memcpy(out, sqlite3_column_blob(st, i), 32);
	return out;
}

/* Reads the EV_COLS row at column offset 0. Strings point into st (valid until
 * the next step) unless a is given, in which case they are copied. */
static int read_event(sqlite3_stmt *st, struct store_event *e, struct store_arena *a,
		      struct store_finding *fbuf, size_t fmax)
{
	int i = 0;
#define TXT() ({ const char *t_ = (const char *)sqlite3_column_text(st, i); size_t l_ = (size_t)sqlite3_column_bytes(st, i); i++; \
		a ? store_arena_strdup(a, t_, l_) : (t_ ? t_ : ""); })
#define I64() (sqlite3_column_int64(st, i++))
	memset(e, 0, sizeof(*e));
	e->time_us = I64();
	e->event_id = TXT();
	e->agent_id = TXT();
	e->boot_id = TXT();
	e->seq = (uint64_t)I64();
	e->host = TXT();
	e->kind = TXT();
	e->user = TXT();
	e->uid = I64();
	e->gid = I64();
	e->pid = I64();
	e->tid = I64();
	e->comm = TXT();
	e->exe = TXT();
	e->cgroup = TXT();
	e->dst_ip = TXT();
	e->dst_port = I64();
	e->sni = TXT();
	e->provider = TXT();
	e->method = TXT();
	e->path = TXT();
	e->model = TXT();
	e->stream = I64() != 0;
	e->action = TXT();
	e->rule = TXT();
	e->reason = TXT();
	e->error = TXT();
	{
		const char *fs = (const char *)sqlite3_column_text(st, i++);
		if (a) {
			fbuf = store_arena_alloc(a, sizeof(*fbuf) * 64);
			fmax = 64;
		}
		if (!fbuf)
			return -ENOMEM;
		e->findings = fbuf;
		e->nfindings = store_findings_parse(fs, fbuf, fmax);
	}
	e->injection_score = sqlite3_column_double(st, i++);
	e->status = I64();
	e->bytes_up = I64();
	e->bytes_down = I64();
	e->prompt_tokens = I64();
	e->completion_tokens = I64();
	e->latency_ms = I64();
	e->policy_hash = TXT();
	e->gap_count = (uint64_t)I64();
	e->gap_first_seq = (uint64_t)I64();
	e->gap_last_seq = (uint64_t)I64();
	col_blob32(st, i++, e->prev_hash);
	col_blob32(st, i++, e->hash);
	e->container_id = TXT();
	e->mcp_server = TXT();
	e->mcp_method = TXT();
	e->tool = TXT();
	e->mcp_session = TXT();
	e->cached_tokens = I64();
	if (sqlite3_column_type(st, i) == SQLITE_BLOB) {
		size_t l = (size_t)sqlite3_column_bytes(st, i);
		const void *b = sqlite3_column_blob(st, i);
		if (a) {
			uint8_t *c = store_arena_alloc(a, l ? l : 1);
			if (!c)
				return -ENOMEM;
			memcpy(c, b, l);
			e->raw = c;
		} else {
			e->raw = b;
		}
		e->raw_len = l;
	}
	i++;
	if (sqlite3_column_type(st, i) != SQLITE_NULL)
		e->content = TXT();
	else
		i++;
#undef TXT
#undef I64
	return 0;
}

/* Materialises every row of st (EV_COLS first) into out. With last_id, the
 * statement's final column is the row id and the last one is returned. */
static int sq_fetch(struct sq *q, sqlite3_stmt *st, struct store_rows *out, uint64_t *last_id)
{
	size_t cap = 64;
	int rc = 0;
	memset(out, 0, sizeof(*out));
	out->arena = store_arena_new();
	out->ev = malloc(cap * sizeof(*out->ev));
	if (!out->arena || !out->ev) {
		rc = -ENOMEM;
		goto err;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = buf_grow_array(&out->ev, &cap, out->n, sizeof(*out->ev))))
			goto err;
		if ((rc = read_event(st, &out->ev[out->n], out->arena, NULL, 0)))
			goto err;
		if (last_id)
			*last_id = (uint64_t)sqlite3_column_int64(st, sqlite3_column_count(st) - 1);
		out->n++;
	}
	if (rc != SQLITE_DONE) {
		rc = sq_fail(q, "query");
		goto err;
	}
	sqlite3_finalize(st);
	/* ev lives in malloc memory; hand it to the arena's owner via rows. */
	struct store_event *copy = store_arena_alloc(out->arena, (out->n ? out->n : 1) * sizeof(*copy));
	if (!copy) {
		rc = -ENOMEM;
		goto err2;
	}
	memcpy(copy, out->ev, out->n * sizeof(*copy));
	free(out->ev);
	out->ev = copy;
	return 0;
err:
	sqlite3_finalize(st);
err2:
	free(out->ev);
	store_arena_free(out->arena);
	memset(out, 0, sizeof(*out));
	return rc < 0 ? rc : -EIO;
}

static int sq_query(struct store *s, const struct store_filter *f, struct store_rows *out)
{
	struct sq *q = SQ(s);
	struct where w;
	char sql[2048];
	sqlite3_stmt *st;
	size_t limit = f->limit ? f->limit : STORE_DEFAULT_LIMIT;
	if (limit > STORE_MAX_LIMIT)
		limit = STORE_MAX_LIMIT;
	build_where(f, &w);
	/* The page's ids first, then its rows: on an indexed filter (user,
	 * host) the inner query sorts ids out of the index alone, and only the
	 * page's rows are read, not every match of a busy user (1M events:
	 * 1.6 s -> see tests/bench/console_bench.py). */
	snprintf(sql, sizeof(sql),
		 "SELECT " EV_COLS " FROM events e WHERE e.id IN (SELECT e.id FROM events e%s ORDER BY e.id DESC"
		 " LIMIT %zu) ORDER BY e.id DESC",
		 w.sql, limit);
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "query");
	bind_where(st, &w);
	return sq_fetch(q, st, out, NULL);
}

/* ingest_seq is the commit order (migration 2); retention only removes
 * rows, so the cursor never has to move back. */
static int sq_feed(struct store *s, uint64_t after, size_t limit, struct store_rows *out, uint64_t *next)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db, "SELECT " EV_COLS ", e.ingest_seq FROM events e WHERE e.ingest_seq > ?1"
			       " ORDER BY e.ingest_seq LIMIT ?2",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "feed");
	sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	*next = after;
	return sq_fetch(q, st, out, next);
}

static const char *top_col(enum store_top_kind k)
{
	switch (k) {
	case STORE_TOP_USERS: return "e.user";
	case STORE_TOP_EXES: return "e.exe";
	case STORE_TOP_PROVIDERS: return "e.provider";
	case STORE_TOP_HOSTS: return "e.host";
	case STORE_TOP_MODELS: return "e.model";
	case STORE_TOP_ACTIONS: return "e.action";
	case STORE_TOP_AGENTS: return "e.agent_id";
	case STORE_TOP_FINDINGS: return "f.type";
	case STORE_TOP_TOOLS: return "e.tool";
	case STORE_TOP_MCP_SERVERS: return "e.mcp_server";
	case STORE_TOP_MCP_METHODS: return "e.mcp_method";
	case STORE_TOP_MCP_SESSIONS: return "e.mcp_session";
	}
	return "e.user";
}

static int sq_top(struct store *s, enum store_top_kind k, const struct store_filter *f, size_t limit,
		  struct store_top_row **out, size_t *n)
{
	struct sq *q = SQ(s);
	struct where w;
	char sql[2048];
	sqlite3_stmt *st;
	const char *col = top_col(k);
	int rc;
	build_where(f, &w);
	if (k == STORE_TOP_FINDINGS)
		snprintf(sql, sizeof(sql),
			 "SELECT f.type, count(*), sum(e.action = 'block'), sum(f.count) FROM event_findings f"
			 " JOIN events e ON e.id = f.ev%s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %zu",
			 w.sql, limit);
	else
		snprintf(sql, sizeof(sql),
			 "SELECT %s, count(*), sum(e.action = 'block'), 0 FROM events e%s%s%s != ''"
			 " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %zu",
			 col, w.sql, w.len ? " AND " : " WHERE ", col, limit);
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "top");
	bind_where(st, &w);
	struct store_top_row *rows = calloc(limit ? limit : 1, sizeof(*rows));
	size_t cnt = 0;
	if (!rows) {
		sqlite3_finalize(st);
		return -ENOMEM;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && cnt < limit) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		rows[cnt].key = strdup(key ? key : "");
		rows[cnt].events = (uint64_t)sqlite3_column_int64(st, 1);
		rows[cnt].blocked = (uint64_t)sqlite3_column_int64(st, 2);
		rows[cnt].total = (uint64_t)sqlite3_column_int64(st, 3);
		if (!rows[cnt].key) {
			rc = SQLITE_NOMEM;
			break;
		}
		cnt++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_top_free(rows, cnt);
		return sq_fail(q, "top");
	}
	*out = rows;
	*n = cnt;
	return 0;
}

static int sq_usage(struct store *s, enum store_top_kind k, const struct store_filter *f, struct store_usage_row **out,
		    size_t *n)
{
	struct sq *q = SQ(s);
	struct where w;
	char sql[2048];
	sqlite3_stmt *st;
	const char *col = top_col(k);
	int rc;
	build_where(f, &w);
	snprintf(sql, sizeof(sql),
		 "SELECT %s, e.provider, e.model, sum(max(e.prompt_tokens, 0)), sum(max(e.completion_tokens, 0)),"
		 " sum(max(e.cached_tokens, 0)) FROM %s%s%s%s != '' GROUP BY 1, 2, 3 LIMIT %d",
		 col, k == STORE_TOP_FINDINGS ? "event_findings f JOIN events e ON e.id = f.ev" : "events e", w.sql,
		 w.len ? " AND " : " WHERE ", col, STORE_USAGE_MAX);
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "usage");
	bind_where(st, &w);
	size_t cap = 64, cnt = 0;
	struct store_usage_row *rows = calloc(cap, sizeof(*rows));
	while (rows && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows)))
			break;
		struct store_usage_row *r = &rows[cnt++];
		const char *t[3];
		for (int i = 0; i < 3; i++)
			t[i] = (const char *)sqlite3_column_text(st, i);
		r->key = strdup(t[0] ? t[0] : "");
		r->provider = strdup(t[1] ? t[1] : "");
		r->model = strdup(t[2] ? t[2] : "");
		r->input_tokens = (uint64_t)sqlite3_column_int64(st, 3);
		r->cached_tokens = (uint64_t)sqlite3_column_int64(st, 5);
		r->output_tokens = (uint64_t)sqlite3_column_int64(st, 4);
		if (!r->key || !r->provider || !r->model) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(st);
	if (!rows || rc != SQLITE_DONE) {
		store_usage_free(rows, cnt);
		return rows && rc != SQLITE_NOMEM && rc != SQLITE_ROW ? sq_fail(q, "usage") : -ENOMEM;
	}
	*out = rows;
	*n = cnt;
	return 0;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	return strdup(t ? t : "");
}

#define SVC "COALESCE(NULLIF(e.provider, ''), e.sni, '')"

static int sq_inventory(struct store *s, const struct store_filter *f, struct store_inventory_row **out, size_t *n)
{
	struct sq *q = SQ(s);
	struct where w;
	char sql[2048];
	sqlite3_stmt *st;
	int rc;
	build_where(f, &w);
	snprintf(sql, sizeof(sql),
		 "SELECT e.user, e.exe, " SVC ", e.host, min(e.time), max(e.time), count(*), sum(e.kind IN ('request', 'websocket')),"
		 " sum(max(e.prompt_tokens, 0) + max(e.completion_tokens, 0)), sum(e.findings != ''),"
		 " sum(e.action = 'block') FROM events e%s%s" SVC " != '' AND e.kind NOT IN ('review', 'alert')"
		 " GROUP BY 1, 2, 3, 4 ORDER BY 7 DESC, 1, 2, 3, 4"
		 " LIMIT %d",
		 w.sql, w.len ? " AND " : " WHERE ", STORE_USAGE_MAX);
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "inventory");
	bind_where(st, &w);
	size_t cap = 64, cnt = 0;
	struct store_inventory_row *rows = calloc(cap, sizeof(*rows));
	while (rows && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows)))
			break;
		struct store_inventory_row *r = &rows[cnt++];
		r->user = col_dup(st, 0);
		r->exe = col_dup(st, 1);
		r->provider = col_dup(st, 2);
		r->host = col_dup(st, 3);
		r->first_us = sqlite3_column_int64(st, 4);
		r->last_us = sqlite3_column_int64(st, 5);
		r->events = (uint64_t)sqlite3_column_int64(st, 6);
		r->requests = (uint64_t)sqlite3_column_int64(st, 7);
		r->tokens = (uint64_t)sqlite3_column_int64(st, 8);
		r->findings = (uint64_t)sqlite3_column_int64(st, 9);
		r->blocks = (uint64_t)sqlite3_column_int64(st, 10);
		if (!r->user || !r->exe || !r->provider || !r->host)
			break;
	}
	sqlite3_finalize(st);
	if (!rows || rc != SQLITE_DONE) {
		store_inventory_free(rows, cnt);
		store_seterr(s, "sqlite: inventory failed");
		return -EIO;
	}
	*out = rows;
	*n = cnt;
	return 0;
}

static int sq_review_set(struct store *s, const struct store_review *r)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db, "INSERT OR REPLACE INTO reviews(exe, provider, state, reviewer, reviewed_at) VALUES(?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "review");
	sqlite3_bind_text(st, 1, r->exe, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->state, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->by ? r->by : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, r->at_us);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sq_fail(q, "review");
}

static int sq_review_list(struct store *s, struct store_review **out, size_t *n)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(q->db, "SELECT exe, provider, state, reviewer, reviewed_at FROM reviews ORDER BY exe, provider", -1, &st,
			       NULL) != SQLITE_OK)
		return sq_fail(q, "reviews");
	size_t cap = 16, cnt = 0;
	struct store_review *rows = calloc(cap, sizeof(*rows));
	while (rows && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (buf_grow_array(&rows, &cap, cnt, sizeof(*rows)))
			break;
		struct store_review *r = &rows[cnt++];
		r->exe = col_dup(st, 0);
		r->provider = col_dup(st, 1);
		r->state = col_dup(st, 2);
		r->by = col_dup(st, 3);
		r->at_us = sqlite3_column_int64(st, 4);
		if (!r->exe || !r->provider || !r->state || !r->by)
			break;
	}
	sqlite3_finalize(st);
	if (!rows || rc != SQLITE_DONE) {
		store_review_free(rows, cnt);
		store_seterr(s, "sqlite: reviews failed");
		return -EIO;
	}
	*out = rows;
	*n = cnt;
	return 0;
}

static int sq_count(struct store *s, const struct store_filter *f, uint64_t *out)
{
	struct sq *q = SQ(s);
	struct where w;
	char sql[1536];
	sqlite3_stmt *st;
	build_where(f, &w);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM events e%s", w.sql);
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "count");
	bind_where(st, &w);
	int rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : sq_fail(q, "count");
}

static int read_agent(struct sq *q, sqlite3_stmt *st, struct store_agent *a)
{
	sqlite3_stmt *h;
	memset(a, 0, sizeof(*a));
	snprintf(a->agent_id, sizeof(a->agent_id), "%s", (const char *)sqlite3_column_text(st, 0));
	if (sqlite3_column_bytes(st, 1) == 32) {
		a->has_key = true;
		memcpy(a->pubkey, sqlite3_column_blob(st, 1), 32);
	}
	a->revoked = sqlite3_column_int(st, 2) != 0;
	a->first_seen_us = sqlite3_column_int64(st, 3);
	a->last_seen_us = sqlite3_column_int64(st, 4);
	if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
		a->has_horizon = true;
		a->horizon_seq = (uint64_t)sqlite3_column_int64(st, 5);
		col_blob32(st, 6, a->horizon_hash);
	}
	if (sqlite3_prepare_v2(q->db, "SELECT seq, hash FROM events WHERE agent_id = ?1 ORDER BY seq DESC LIMIT 1",
			       -1, &h, NULL) != SQLITE_OK)
		return sq_fail(q, "agent head");
	bind_text(h, 1, a->agent_id);
	if (sqlite3_step(h) == SQLITE_ROW) {
		a->has_head = true;
		a->head_seq = (uint64_t)sqlite3_column_int64(h, 0);
		col_blob32(h, 1, a->head_hash);
	}
	sqlite3_finalize(h);
	return 0;
}

#define AGENT_COLS "agent_id, pubkey, revoked, first_seen, last_seen, horizon_seq, horizon_hash"

static int sq_agent_get(struct store *s, const char *id, struct store_agent *out)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(q->db, "SELECT " AGENT_COLS " FROM agents WHERE agent_id = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(q, "agent");
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = read_agent(q, st, out);
	else if (rc == SQLITE_DONE)
		rc = -ENOENT;
	else
		rc = sq_fail(q, "agent");
	sqlite3_finalize(st);
	return rc;
}

static int sq_agent_list(struct store *s, struct store_agent **out, size_t *n)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	size_t cap = 16, cnt = 0;
	struct store_agent *v = malloc(cap * sizeof(*v));
	int rc;
	if (!v)
		return -ENOMEM;
	if (sqlite3_prepare_v2(q->db, "SELECT " AGENT_COLS " FROM agents ORDER BY agent_id", -1, &st, NULL) !=
	    SQLITE_OK) {
		free(v);
		return sq_fail(q, "agents");
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((rc = buf_grow_array(&v, &cap, cnt, sizeof(*v))))
			break;
		if ((rc = read_agent(q, st, &v[cnt])))
			break;
		cnt++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(v);
		return rc < 0 ? rc : sq_fail(q, "agents");
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int sq_agent_pin_key(struct store *s, const char *id, const uint8_t key[32])
{
	struct sq *q = SQ(s);
	struct store_agent a;
	int rc = sq_agent_get(s, id, &a);
	if (rc == 0 && a.has_key)
		return memcmp(a.pubkey, key, 32) ? -EEXIST : 0;
	if (rc && rc != -ENOENT)
		return rc;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db,
			       "INSERT INTO agents(agent_id, pubkey) VALUES(?1, ?2)"
			       " ON CONFLICT(agent_id) DO UPDATE SET pubkey = ?2 WHERE pubkey IS NULL",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "pin key");
	bind_text(st, 1, id);
	sqlite3_bind_blob(st, 2, key, 32, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sq_fail(q, "pin key");
	sqlite3_finalize(st);
	return rc;
}

static int sq_agent_set_revoked(struct store *s, const char *id, bool revoked)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(q->db,
			       "INSERT INTO agents(agent_id, revoked) VALUES(?1, ?2)"
			       " ON CONFLICT(agent_id) DO UPDATE SET revoked = ?2",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "revoke");
	bind_text(st, 1, id);
	sqlite3_bind_int(st, 2, revoked);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sq_fail(q, "revoke");
	sqlite3_finalize(st);
	return rc;
}

static int sq_scan_events(struct store *s, const char *id, store_event_cb cb, void *ctx)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	struct store_finding fb[64];
	int rc;
	if (sqlite3_prepare_v2(q->db, "SELECT " EV_COLS " FROM events e WHERE agent_id = ?1 ORDER BY seq, boot_id",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "scan");
	bind_text(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_event e;
		if ((rc = read_event(st, &e, NULL, fb, 64)) || (rc = cb(ctx, &e)))
			break;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc == SQLITE_ERROR ? sq_fail(q, "scan") : rc;
}

static int sq_scan_batches(struct store *s, const char *id, store_batch_cb cb, void *ctx)
{
	struct sq *q = SQ(s);
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(q->db,
			       "SELECT agent_id, boot_id, schema_version, first_seq, last_seq, prev_batch_hash,"
			       " signature, received FROM batches WHERE agent_id = ?1 ORDER BY first_seq, last_seq",
			       -1, &st, NULL) != SQLITE_OK)
		return sq_fail(q, "scan batches");
	bind_text(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_batch_info b = {
			.agent_id = (const char *)sqlite3_column_text(st, 0),
			.boot_id = (const char *)sqlite3_column_text(st, 1),
			.schema_version = (uint32_t)sqlite3_column_int(st, 2),
			.first_seq = (uint64_t)sqlite3_column_int64(st, 3),
			.last_seq = (uint64_t)sqlite3_column_int64(st, 4),
			.prev_batch_hash = sqlite3_column_blob(st, 5),
			.prev_batch_hash_len = (size_t)sqlite3_column_bytes(st, 5),
			.signature = sqlite3_column_blob(st, 6),
			.signature_len = (size_t)sqlite3_column_bytes(st, 6),
			.received_us = sqlite3_column_int64(st, 7),
		};
		if ((rc = cb(ctx, &b)))
			break;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc == SQLITE_ERROR ? sq_fail(q, "scan batches") : rc;
}

static int sq_retain(struct store *s, int64_t before_us, uint64_t *deleted)
{
	struct sq *q = SQ(s);
	int rc;
	char sql[1024];
	*deleted = 0;
	if ((rc = exec(q, "BEGIN IMMEDIATE")))
		return rc;
	/* Remember, per agent, the newest event about to go, so verify can
	 * start each chain from there instead of reporting a missing head. */
	snprintf(sql, sizeof(sql),
		 "UPDATE agents SET (horizon_seq, horizon_hash) = (SELECT seq, hash FROM events e"
		 " WHERE e.agent_id = agents.agent_id AND e.time < %lld ORDER BY seq DESC LIMIT 1)"
		 " WHERE EXISTS (SELECT 1 FROM events e WHERE e.agent_id = agents.agent_id AND e.time < %lld);"
		 "DELETE FROM event_findings WHERE time < %lld;"
		 "DELETE FROM batches WHERE last_seq <= (SELECT horizon_seq FROM agents a"
		 " WHERE a.agent_id = batches.agent_id);",
		 (long long)before_us, (long long)before_us, (long long)before_us);
	if ((rc = exec(q, sql)))
		goto err;
	snprintf(sql, sizeof(sql), "DELETE FROM events WHERE id < %lld AND time < %lld",
		 (long long)((before_us < 0 ? 0 : before_us) << 10), (long long)before_us);
	if ((rc = exec(q, sql)))
		goto err;
	*deleted = (uint64_t)sqlite3_changes(q->db);
	if ((rc = exec(q, "COMMIT")))
		goto err;
	return 0;
err:
	exec(q, "ROLLBACK");
	return rc;
}

static const struct store_ops sq_ops = {
	.kind = "sqlite",
	.close = sq_close,
	.insert_batch = sq_insert_batch,
	.insert_batches = sq_insert_batches,
	.insert_local = sq_insert_local,
	.query = sq_query,
	.inventory = sq_inventory,
	.review_set = sq_review_set,
	.review_list = sq_review_list,
	.usage = sq_usage,
	.feed = sq_feed,
	.top = sq_top,
	.count = sq_count,
	.agent_get = sq_agent_get,
	.agent_pin_key = sq_agent_pin_key,
	.agent_set_revoked = sq_agent_set_revoked,
	.agent_list = sq_agent_list,
	.scan_events = sq_scan_events,
	.scan_batches = sq_scan_batches,
	.retain = sq_retain,
};

static void sq_global_init(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int store_sqlite_open(const char *path, struct store **out, char *err, size_t errlen)
{
	struct sq *q = calloc(1, sizeof(*q));
	uint8_t rnd[16];
	int rc;
	*out = NULL;
	if (!q)
		return -ENOMEM;
	q->base.ops = &sq_ops;
	/* Memory statistics take a global mutex on every allocation; the
	 * collector does not read them. Must precede sqlite3_initialize (a
	 * no-op, returning SQLITE_MISUSE, once initialised). */
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, sq_global_init);
	if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "sqlite:%s: %s", path, q->db ? sqlite3_errmsg(q->db) : "cannot open");
		rc = -EIO;
		goto err;
	}
	sqlite3_busy_timeout(q->db, 5000);
	/* WAL: readers (queries, verify) never block the ingest writer.
	 * synchronous=FULL: an ack promises the agent it may drop the batch from
	 * its spool, so the commit must survive power loss; the fsync is paid
	 * once per batch, not per event. */
	/* page_size (new databases only; it must precede WAL mode): 32 KiB
	 * pages took ingest from 37-53k to 56-60k events/s on the 2-core
	 * bench machine (shallower indexes, fewer splits and WAL frames per
	 * group commit) with no change to the SOC queries' latency. The WAL
	 * is checkpointed every 2000 pages (64 MiB). */
	if ((rc = exec(q, "PRAGMA page_size=32768; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			  " PRAGMA foreign_keys=ON;"
			  " PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=2000;")) ||
	    (rc = migrate(q))) {
		snprintf(err, errlen, "sqlite:%s: %s", path, q->base.errmsg);
		goto err;
	}
	/* ingest_seq: one writer at a time (SQLite's write lock), so MAX+1
	 * inside the write transaction is the commit order. */
	if (sqlite3_prepare_v2(q->db, "INSERT INTO events(id, " EV_COLS_A ", content, raw, ingest_seq) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,"
			       "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
			       "(SELECT IFNULL(MAX(ingest_seq), 0) + 1 FROM events))",
			       -1, &q->ins_ev, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db, "INSERT INTO event_findings(ev, type, count, time) VALUES(?,?,?,?)", -1,
			       &q->ins_find, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db, "SELECT hash FROM events WHERE agent_id = ?1 AND seq = ?2 AND boot_id = ?3",
			       -1, &q->sel_hash, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db, "INSERT OR IGNORE INTO batches(agent_id, boot_id, first_seq, last_seq,"
			       " schema_version, prev_batch_hash, signature, received) VALUES(?,?,?,?,?,?,?,?)",
			       -1, &q->ins_batch, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "sqlite:%s: prepare: %s", path, sqlite3_errmsg(q->db));
		rc = -EIO;
		goto err;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0x5a, sizeof(rnd));
	snprintf(q->local_boot, sizeof(q->local_boot),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
		 rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13], rnd[14],
		 rnd[15]);
	{
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(q->db, "SELECT max(seq) FROM events WHERE agent_id = 'collector'", -1, &st,
				       NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				q->local_seq = (uint64_t)sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
		}
	}
	*out = &q->base;
	return 0;
err:
	sq_close(&q->base);
	return rc;
}
