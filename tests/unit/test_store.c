/* store: one suite, two backends. Every behaviour the collector relies on
 * (commit, dedup, replay detection, each filter, aggregates, agents and key
 * pinning, verify's scans, retention) runs against SQLite and against a real
 * ClickHouse server that this test starts itself (Debian's clickhouse-server
 * on loopback ports with its own data directory, stopped at exit). Without
 * the clickhouse binary the ClickHouse half FAILs rather than skipping, unless
 * VIGIL_NO_CLICKHOUSE=1. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sqlite3.h>
#include <curl/curl.h>
#include "chain.h"
#include "check.h"
#include "evfill.h"
#include "export.h"
#include "jsonw.h"
#include "store.h"

static char tmpdir[256];
static int store_seq;
/* Two ClickHouse servers: the first serves the single-server backend; both
 * together form the cluster "vigil_test" (one shard each) for the
 * Distributed backend. */
static pid_t ch_pid[2];
static int ch_http[2], ch_tcp[2];
/* ZooKeeper for the cluster's distributed DDL (retention ON CLUSTER), on
 * 127.88.0.10 (this test's own loopback address). */
#define ZK_HOST "127.88.0.10"
static pid_t zk_pid;
static int zk_port;
static const char *ch_skip_reason;
static struct store *shard2;   /* the cluster backend's handle on the second shard */

static void stop_server(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		usleep(100000);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

static void cleanup(void)
{
	store_close(shard2);
	stop_server(&ch_pid[0]);
	stop_server(&ch_pid[1]);
	stop_server(&zk_pid);
	if (tmpdir[0]) {
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}

static void ensure_tmpdir(void)
{
	if (tmpdir[0])
		return;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vigil-test-store-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(cleanup);
}

static int free_port_on(const char *host)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	inet_pton(AF_INET, host, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || getsockname(fd, (struct sockaddr *)&a, &l)) {
		close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static int free_port(void) { return free_port_on("127.0.0.1"); }

static bool port_open_on(const char *host, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &a.sin_addr);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

static bool port_open(int port) { return port_open_on("127.0.0.1", port); }

/* Debian's ZooKeeper (scripts/deps.sh test), standalone, in the foreground. */
static int spawn_zookeeper(void)
{
	char dir[512], cfg[600];
	snprintf(dir, sizeof(dir), "%s/zk", tmpdir);
	mkdir(dir, 0755);
	snprintf(cfg, sizeof(cfg), "%s/zoo.cfg", dir);
	FILE *f = fopen(cfg, "w");
	if (!f)
		return -1;
	zk_port = free_port_on(ZK_HOST);
	fprintf(f, "tickTime=500\ndataDir=%s/data\nclientPort=%d\nclientPortAddress=" ZK_HOST "\n"
		   "admin.enableServer=false\n", dir, zk_port);
	fclose(f);
	pid_t pid = fork();
	if (pid == 0) {
		char logp[600];
		snprintf(logp, sizeof(logp), "%s/zk.log", dir);
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/bin/java", "java", "-Xmx128m", "-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
		      "org.apache.zookeeper.server.ZooKeeperServerMain", cfg, (char *)NULL);
		_exit(127);
	}
	zk_pid = pid;
	return 0;
}

static int spawn_server(int i, const char *bin)
{
	char dir[512], cfg[600], users[600];
	snprintf(dir, sizeof(dir), "%s/ch%d", tmpdir, i);
	mkdir(dir, 0755);
	snprintf(cfg, sizeof(cfg), "%s/config.xml", dir);
	snprintf(users, sizeof(users), "%s/users.xml", dir);
	FILE *f = fopen(users, "w");
	if (!f)
		return -1;
	fprintf(f, "<yandex><profiles><default></default></profiles>"
		   "<users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"
		   "<profile>default</profile><quota>default</quota></default></users>"
		   "<quotas><default></default></quotas></yandex>\n");
	fclose(f);
	f = fopen(cfg, "w");
	if (!f)
		return -1;
	fprintf(f, "<yandex><logger><level>warning</level><log>%s/server.log</log><errorlog>%s/err.log</errorlog>"
		   "<console>0</console></logger>"
		   "<http_port>%d</http_port><tcp_port>%d</tcp_port><listen_host>127.0.0.1</listen_host>"
		   "<path>%s/data/</path><tmp_path>%s/tmp/</tmp_path><users_config>%s</users_config>"
		   "<default_profile>default</default_profile><default_database>default</default_database>"
		   "<mark_cache_size>67108864</mark_cache_size>"
		   "<remote_servers><vigil_test>"
		   "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>"
		   "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>"
		   "</vigil_test></remote_servers>"
		   "<zookeeper><node><host>" ZK_HOST "</host><port>%d</port></node></zookeeper>"
		   "<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl></yandex>\n",
		dir, dir, ch_http[i], ch_tcp[i], dir, dir, users, ch_tcp[0], ch_tcp[1], zk_port);
	fclose(f);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", 0);
		dup2(fd, 0);
		char logp[600];
		snprintf(logp, sizeof(logp), "%s/stdout.log", dir);
		FILE *lf = freopen(logp, "w", stdout);
		(void)lf;
		dup2(1, 2);
		if (chdir(dir) != 0)
			_exit(126);
		execl(bin, bin, "--config-file", cfg, (char *)NULL);
		_exit(127);
	}
	ch_pid[i] = pid;
	return 0;
}

/* Starts both clickhouse-servers once for the whole run. */
static int start_clickhouse(void)
{
	static bool up;
	if (up)
		return 0;
	if (ch_skip_reason)
		return -1;
	const char *bin = access("/usr/sbin/clickhouse-server", X_OK) == 0 ? "/usr/sbin/clickhouse-server" : NULL;
	if (!bin) {
		ch_skip_reason = "clickhouse-server is not installed (scripts/deps.sh test installs it)";
		return -1;
	}
	if (access("/usr/share/java/zookeeper.jar", R_OK)) {
		ch_skip_reason = "zookeeper is not installed (scripts/deps.sh test installs it)";
		return -1;
	}
	ensure_tmpdir();
	for (int i = 0; i < 2; i++) {
		ch_http[i] = free_port();
		ch_tcp[i] = free_port();
	}
	if (spawn_zookeeper())
		return -1;
	for (int i = 0; i < 2; i++)
		if (spawn_server(i, bin))
			return -1;
	for (int i = 0; i < 300; i++) {
		if (port_open(ch_http[0]) && port_open(ch_http[1]) && port_open(ch_tcp[0]) && port_open(ch_tcp[1]) &&
		    port_open_on(ZK_HOST, zk_port)) {
			up = true;
			return 0;
		}
		for (int k = 0; k < 2; k++)
			if (waitpid(ch_pid[k], NULL, WNOHANG) == ch_pid[k]) {
				ch_pid[k] = 0;
				ch_skip_reason = "clickhouse-server exited at start (see its log under the test dir)";
				return -1;
			}
		usleep(100000);
	}
	ch_skip_reason = "clickhouse-server or zookeeper did not open its ports in 30 s";
	return -1;
}

/* A fresh, empty store of the given backend: sqlite, clickhouse, or
 * clickhouse_cluster (Distributed tables over two shards). */
static struct store *fresh(const char *backend, char *why, size_t whylen)
{
	char url[512], err[512];
	struct store *s = NULL;
	int rc;
	ensure_tmpdir();
	store_seq++;
	if (strcmp(backend, "sqlite") == 0) {
		snprintf(url, sizeof(url), "sqlite:%s/s%d.db", tmpdir, store_seq);
	} else {
		if (start_clickhouse()) {
			snprintf(why, whylen, "%s", ch_skip_reason);
			return NULL;
		}
		bool cluster = !strcmp(backend, "clickhouse_cluster");
		if (cluster) {
			/* Each shard gets its _local tables from a collector that
			 * connects to it: here, a handle on the second server. */
			store_close(shard2);
			shard2 = NULL;
			snprintf(url, sizeof(url), "clickhouse://127.0.0.1:%d/vigil_t%d_%d?cluster=vigil_test", ch_http[1],
				 (int)getpid(), store_seq);
			if ((rc = store_open(url, &shard2, err, sizeof(err)))) {
				snprintf(why, whylen, "store_open(%s) = %d: %s", url, rc, err);
				return NULL;
			}
		}
		snprintf(url, sizeof(url), "clickhouse://127.0.0.1:%d/vigil_t%d_%d%s", ch_http[0], (int)getpid(), store_seq,
			 cluster ? "?cluster=vigil_test" : "");
	}
	rc = store_open(url, &s, err, sizeof(err));
	if (rc)
		snprintf(why, whylen, "store_open(%s) = %d: %s", url, rc, err);
	return s;
}

static const int64_t T0 = 1700000000000000LL; /* 2023-11-14 */

struct gen {
	struct store_event ev[64];
	struct store_finding fd[64][2];
	char ids[64][40];
	uint8_t raw[64][16];
};

/* Events i = 0..n-1 of agent: users alice/bob/carol by i%3, exes by i%2,
 * providers openai/anthropic by i%2, action block every 4th, a finding EMAIL
 * on even i and US_SSN on every 3rd, one minute apart from base, chained. */
static void gen_events(struct gen *g, const char *agent, const char *boot, uint64_t seq0, size_t n,
		       int64_t base, const uint8_t *prev)
{
	static const char *users[] = { "alice", "bob", "carol" };
	static const char *exes[] = { "/usr/bin/python3", "/usr/bin/curl" };
	static const char *provs[] = { "openai", "anthropic" };
	static const char *models[] = { "gpt-4o", "claude-3-5-sonnet" };
	memset(g, 0, sizeof(*g));
	for (size_t i = 0; i < n; i++) {
		struct store_event *e = &g->ev[i];
		snprintf(g->ids[i], sizeof(g->ids[i]), "ev-%s-%llu", agent, (unsigned long long)(seq0 + i));
		e->time_us = base + (int64_t)i * 60000000LL;
		e->event_id = g->ids[i];
		e->agent_id = agent;
		e->boot_id = boot;
		e->seq = seq0 + i;
		e->host = i % 5 == 0 ? "ws-2" : "ws-1";
		e->kind = "request";
		e->user = users[i % 3];
		e->uid = 1000 + (int64_t)(i % 3);
		e->gid = 1000;
		e->pid = 4242;
		e->tid = 4243;
		e->comm = "python3";
		e->exe = exes[i % 2];
		e->cgroup = "/user.slice";
		e->container_id = i % 2 ? "" : "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
		e->dst_ip = "104.18.7.192";
		e->dst_port = 443;
		e->sni = "api.openai.com";
		e->provider = provs[i % 2];
		e->method = "POST";
		e->path = "/v1/chat/completions";
		e->model = models[i % 2];
		e->stream = i % 2;
		e->action = i % 4 == 0 ? "block" : "allow";
		e->rule = i % 4 == 0 ? "no-secrets" : "";
		e->reason = "";
		e->error = "";
		size_t nf = 0;
		if (i % 2 == 0) {
			snprintf(g->fd[i][nf].type, STORE_FINDING_TYPE_MAX, "EMAIL");
			g->fd[i][nf++].count = 2;
		}
		if (i % 3 == 0) {
			snprintf(g->fd[i][nf].type, STORE_FINDING_TYPE_MAX, "US_SSN");
			g->fd[i][nf++].count = 1;
		}
		e->findings = g->fd[i];
		e->nfindings = nf;
		e->injection_score = -1;
		e->status = 200;
		e->bytes_up = 100 + (int64_t)i;
		e->bytes_down = 2000;
		e->prompt_tokens = 12;
		e->completion_tokens = -1;
		e->cached_tokens = i % 2 ? 4 : -1;
		e->latency_ms = 250;
		e->policy_hash = "abcd";
		memset(e->hash, (int)(seq0 + i + 1), STORE_HASH_LEN);
		if (i == 0) {
			if (prev)
				memcpy(e->prev_hash, prev, 32);
		} else {
			memcpy(e->prev_hash, g->ev[i - 1].hash, 32);
		}
		memset(g->raw[i], 'r', sizeof(g->raw[i]));
		g->raw[i][0] = (uint8_t)i;
		e->raw = g->raw[i];
		e->raw_len = sizeof(g->raw[i]);
	}
}

static struct store_batch batch_of(struct gen *g, size_t n)
{
	static const uint8_t sig[64] = { 1, 2, 3 };
	return (struct store_batch){
		.agent_id = g->ev[0].agent_id, .boot_id = g->ev[0].boot_id, .schema_version = 1,
		.first_seq = g->ev[0].seq, .last_seq = g->ev[n - 1].seq, .signature = sig, .signature_len = 64,
		.received_us = g->ev[n - 1].time_us, .events = g->ev, .nevents = n,
	};
}

static size_t count(struct store *s, const struct store_filter *f)
{
	uint64_t c = 0;
	if (store_count(s, f, &c))
		return (size_t)-1;
	return (size_t)c;
}

static size_t nrows(struct store *s, const struct store_filter *f)
{
	struct store_rows r;
	if (store_query(s, f, &r))
		return (size_t)-1;
	size_t n = r.n;
	store_rows_free(&r);
	return n;
}

/* Each suite function runs against one store; SUITE makes one TEST per backend. */
#define SUITE(name) \
	static void name##_run(struct store *s); \
	TEST(sqlite_##name) { char why[600]; struct store *s = fresh("sqlite", why, sizeof(why)); \
		CHECK(s, "%s", why); name##_run(s); store_close(s); } \
	TEST(clickhouse_##name) { char why[600]; \
		if (getenv("VIGIL_NO_CLICKHOUSE")) { printf("SKIP clickhouse_%s\n", #name); return; } \
		struct store *s = fresh("clickhouse", why, sizeof(why)); \
		CHECK(s, "%s", why); name##_run(s); store_close(s); } \
	TEST(clickhouse_cluster_##name) { char why[600]; \
		if (getenv("VIGIL_NO_CLICKHOUSE")) { printf("SKIP clickhouse_cluster_%s\n", #name); return; } \
		struct store *s = fresh("clickhouse_cluster", why, sizeof(why)); \
		CHECK(s, "%s", why); name##_run(s); store_close(s); } \
	static void name##_run(struct store *s)

/* CHECK inside suite bodies returns from the _run function; the TEST wrapper
 * sees check_failed_now. __func__ names the _run function in the message. */

SUITE(insert_roundtrip)
{
	static struct gen g;
	size_t ins = 0, dups = 0;
	gen_events(&g, "agent-a", "boot-1", 1, 6, T0, NULL);
	struct store_batch b = batch_of(&g, 6);
	int rc = store_insert_batch(s, &b, &ins, &dups);
	CHECK(rc == 0, "insert_batch = %d: %s", rc, store_errmsg(s));
	CHECK(ins == 6 && dups == 0, "inserted %zu dups %zu, want 6/0", ins, dups);
	struct store_filter f = { 0 };
	struct store_rows r;
	rc = store_query(s, &f, &r);
	CHECK(rc == 0, "query = %d: %s", rc, store_errmsg(s));
	CHECK(r.n == 6, "query returned %zu rows, want 6", r.n);
	/* newest first */
	const struct store_event *e = &r.ev[5], *want = &g.ev[0];
	CHECK(r.ev[0].seq == 6 && e->seq == 1, "order: first seq %llu last %llu, want newest first",
	      (unsigned long long)r.ev[0].seq, (unsigned long long)e->seq);
	CHECK(e->time_us == want->time_us, "time %lld != %lld", (long long)e->time_us, (long long)want->time_us);
	CHECK(!strcmp(e->event_id, want->event_id) && !strcmp(e->agent_id, "agent-a") &&
		      !strcmp(e->boot_id, "boot-1") && !strcmp(e->user, "alice") && !strcmp(e->host, "ws-2") &&
		      !strcmp(e->exe, "/usr/bin/python3") && !strcmp(e->provider, "openai") &&
		      !strcmp(e->model, "gpt-4o") && !strcmp(e->action, "block") && !strcmp(e->rule, "no-secrets") &&
		      !strcmp(e->sni, "api.openai.com") && !strcmp(e->dst_ip, "104.18.7.192") &&
		      !strcmp(e->policy_hash, "abcd") && !strcmp(e->kind, "request") &&
		      !strcmp(e->container_id, want->container_id) && e->container_id[0],
	      "string columns did not round-trip (user=%s host=%s exe=%s action=%s)", e->user, e->host, e->exe,
	      e->action);
	CHECK(e->uid == 1000 && e->pid == 4242 && e->dst_port == 443 && e->status == 200 && e->bytes_up == 100 &&
		      e->prompt_tokens == 12 && e->completion_tokens == -1 && e->latency_ms == 250 &&
		      e->injection_score < 0,
	      "numeric columns did not round-trip (uid=%lld completion_tokens=%lld score=%f)", (long long)e->uid,
	      (long long)e->completion_tokens, e->injection_score);
	CHECK(e->nfindings == 2 && !strcmp(e->findings[0].type, "EMAIL") && e->findings[0].count == 2 &&
		      !strcmp(e->findings[1].type, "US_SSN") && e->findings[1].count == 1,
	      "findings did not round-trip (%zu)", e->nfindings);
	CHECK(!memcmp(e->hash, want->hash, 32) && !memcmp(r.ev[4].prev_hash, want->hash, 32),
	      "hashes did not round-trip");
	CHECK(e->raw_len == 16 && !memcmp(e->raw, want->raw, 16), "raw E did not round-trip (%zu bytes)", e->raw_len);
	store_rows_free(&r);
}

/* Every field of common/evfields.h reaches the store and comes back out of
 * the export: what the collector writes to the store (chain_to_store), each
 * backend's columns, binds and readers, and the export (export_json: a
 * column for store COL fields, the raw event for RAW ones) must give the
 * JSON line of the event the agent sent. A field added to the list without
 * its column (or reader, or copy) fails here. */
SUITE(every_listed_field_survives_store_and_export)
{
	static const struct vigil_finding two[2] = { { "EMAIL", 2 }, { "US_SSN", 1 } };
	struct vigil_event ev;
	struct evcodec_decoded *d = NULL;
	struct store_finding fb[EVCODEC_MAX_FINDINGS];
	struct store_event se;
	struct store_rows r = { 0 };
	struct jsonw sent, got;
	uint8_t buf[8192];
	size_t ins = 0, dups = 0;
	evfill_every_field(&ev, two);
	ev.seq = 1;
	ev.time_us = T0;   /* the store's partitions want a plausible time */
	size_t n = evcodec_event_encode(&ev, true, buf, sizeof(buf));
	CHECK(n > 0 && n <= sizeof(buf) && evcodec_event_decode(buf, n, &d) == 0, "encode/decode failed");
	chain_to_store(d, &se, fb);
	struct store_batch b = { .agent_id = ev.agent_id, .boot_id = ev.boot_id, .schema_version = 1,
				 .first_seq = 1, .last_seq = 1, .signature = buf, .signature_len = 64,
				 .received_us = T0, .events = &se, .nevents = 1 };
	int rc = store_insert_batch(s, &b, &ins, &dups);
	struct store_filter f = { .agent_id = ev.agent_id };
	if (rc == 0)
		rc = store_query(s, &f, &r);
	evcodec_decoded_free(d);
	CHECK(rc == 0 && r.n == 1, "insert/query = %d, %zu rows: %s", rc, r.n, store_errmsg(s));
	jsonw_init(&sent);
	jsonw_init(&got);
	evcodec_event_json(&ev, &sent);
	jsonw_raw(&sent, "", 1);
	export_json(&r.ev[0], &got);
	jsonw_raw(&got, "", 1);
	store_rows_free(&r);
	size_t at = 0;
	while (sent.out.data[at] && sent.out.data[at] == got.out.data[at])
		at++;
	size_t from = at > 40 ? at - 40 : 0;
	char where[200];
	snprintf(where, sizeof(where), "sent ...%.80s, exported ...%.80s", sent.out.data + from, got.out.data + from);
	bool same = sent.out.data[at] == got.out.data[at];
	jsonw_free(&sent);
	jsonw_free(&got);
	CHECK(same, "a field of common/evfields.h was lost or changed between the agent's event and the "
		    "export: %s", where);
}

SUITE(dedup_and_replay)
{
	static struct gen g, h;
	size_t ins = 0, dups = 0;
	gen_events(&g, "agent-a", "boot-1", 1, 5, T0, NULL);
	struct store_batch b = batch_of(&g, 5);
	CHECK(store_insert_batch(s, &b, &ins, &dups) == 0, "first insert: %s", store_errmsg(s));
	CHECK(store_insert_batch(s, &b, &ins, &dups) == 0, "resend: %s", store_errmsg(s));
	CHECK(ins == 0 && dups == 5, "resend inserted %zu dups %zu, want 0/5", ins, dups);
	struct store_filter f = { 0 };
	CHECK(count(s, &f) == 5, "after a resend count is %zu, want 5", count(s, &f));
	/* Same keys, another boot: distinct events. */
	gen_events(&h, "agent-a", "boot-2", 1, 2, T0, NULL);
	b = batch_of(&h, 2);
	CHECK(store_insert_batch(s, &b, &ins, &dups) == 0 && ins == 2, "other boot not inserted: %s", store_errmsg(s));
	/* Overlap: seqs 4..7 of boot-1 where 4,5 exist identically. */
	gen_events(&h, "agent-a", "boot-1", 1, 7, T0, NULL);
	b = batch_of(&h, 7);
	b.events = &h.ev[3];
	b.nevents = 4;
	b.first_seq = 4;
	CHECK(store_insert_batch(s, &b, &ins, &dups) == 0, "overlap: %s", store_errmsg(s));
	CHECK(ins == 2 && dups == 2, "overlap inserted %zu dups %zu, want 2/2", ins, dups);
	/* Replay with different content under stored keys: refused, nothing written. */
	gen_events(&h, "agent-a", "boot-1", 7, 3, T0 + 3600000000LL, NULL);
	h.ev[0].hash[0] ^= 0xff;
	b = batch_of(&h, 3);
	int rc = store_insert_batch(s, &b, &ins, &dups);
	CHECK(rc == -EEXIST, "altered replay of seq 7 returned %d, want -EEXIST", rc);
	f.agent_id = "agent-a";
	CHECK(count(s, &f) == 9, "a refused batch left rows behind: count %zu, want 9", count(s, &f));
}

SUITE(every_filter)
{
	static struct gen g;
	gen_events(&g, "agent-f", "boot-1", 1, 12, T0, NULL);
	struct store_batch b = batch_of(&g, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	struct {
		struct store_filter f;
		size_t want;
		const char *what;
	} cases[] = {
		{ { .user = "alice" }, 4, "user alice" },
		{ { .user = "nobody" }, 0, "user nobody" },
		{ { .host = "ws-2" }, 3, "host ws-2" },
		{ { .finding = "EMAIL" }, 6, "finding EMAIL" },
		{ { .finding = "US_SSN" }, 4, "finding US_SSN" },
		{ { .finding = "IBAN" }, 0, "finding IBAN" },
		{ { .action = "block" }, 3, "action block" },
		{ { .exe = "/usr/bin/curl" }, 6, "exe curl" },
		{ { .provider = "anthropic" }, 6, "provider anthropic" },
		{ { .model = "gpt-4o" }, 6, "model gpt-4o" },
		{ { .kind = "request" }, 12, "kind request" },
		{ { .kind = "gap" }, 0, "kind gap" },
		{ { .agent_id = "agent-f" }, 12, "agent" },
		{ { .since_us = T0 + 6 * 60000000LL }, 6, "since minute 6" },
		{ { .until_us = T0 + 2 * 60000000LL }, 2, "until minute 2" },
		{ { .since_us = T0 + 60000000LL, .until_us = T0 + 4 * 60000000LL }, 3, "window" },
		{ { .user = "alice", .finding = "EMAIL" }, 2, "alice with EMAIL" },
		{ { .user = "bob", .action = "block", .since_us = T0 }, 1, "bob blocked" },
		{ { .finding = "EMAIL", .since_us = T0 + 6 * 60000000LL }, 3, "EMAIL since minute 6" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = nrows(s, &cases[i].f);
		CHECK(got == cases[i].want, "filter %s: query returned %zu, want %zu (%s)", cases[i].what, got,
		      cases[i].want, store_errmsg(s));
		got = count(s, &cases[i].f);
		CHECK(got == cases[i].want, "filter %s: count %zu, want %zu", cases[i].what, got, cases[i].want);
	}
	struct store_filter f = { .limit = 5 };
	struct store_rows r;
	CHECK(store_query(s, &f, &r) == 0 && r.n == 5, "limit 5 returned %zu", r.n);
	CHECK(r.ev[0].seq == 12 && r.ev[4].seq == 8, "limit keeps the newest: %llu..%llu",
	      (unsigned long long)r.ev[0].seq, (unsigned long long)r.ev[4].seq);
	store_rows_free(&r);
	/* A filter value with SQL metacharacters is data, not syntax. */
	struct store_filter evil = { .user = "x' OR '1'='1" };
	CHECK(nrows(s, &evil) == 0, "a quote in a filter value matched rows");
}

SUITE(aggregates)
{
	static struct gen g;
	gen_events(&g, "agent-t", "boot-1", 1, 12, T0, NULL);
	struct store_batch b = batch_of(&g, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	struct store_filter f = { 0 };
	struct store_top_row *rows;
	size_t n;
	int rc = store_top(s, STORE_TOP_USERS, &f, 10, &rows, &n);
	CHECK(rc == 0, "top users = %d: %s", rc, store_errmsg(s));
	CHECK(n == 3, "top users has %zu rows, want 3", n);
	for (size_t i = 0; i < n; i++)
		CHECK(rows[i].events == 4, "user %s has %llu events, want 4", rows[i].key,
		      (unsigned long long)rows[i].events);
	CHECK(!strcmp(rows[0].key, "alice") && rows[0].blocked == 1,
	      "ties sort by name; alice blocked %llu, want 1 (first %s)", (unsigned long long)rows[0].blocked,
	      rows[0].key);
	store_top_free(rows, n);
	rc = store_top(s, STORE_TOP_FINDINGS, &f, 10, &rows, &n);
	CHECK(rc == 0 && n == 2, "top findings = %d, %zu rows: %s", rc, n, store_errmsg(s));
	CHECK(!strcmp(rows[0].key, "EMAIL") && rows[0].events == 6 && rows[0].total == 12,
	      "EMAIL: %s %llu events total %llu, want 6 / 12", rows[0].key, (unsigned long long)rows[0].events,
	      (unsigned long long)rows[0].total);
	CHECK(!strcmp(rows[1].key, "US_SSN") && rows[1].events == 4 && rows[1].blocked == 1,
	      "US_SSN: %llu events %llu blocked, want 4 / 1", (unsigned long long)rows[1].events,
	      (unsigned long long)rows[1].blocked);
	store_top_free(rows, n);
	f.since_us = T0 + 6 * 60000000LL;
	rc = store_top(s, STORE_TOP_EXES, &f, 1, &rows, &n);
	CHECK(rc == 0 && n == 1 && rows[0].events == 3, "top exes since minute 6 limit 1: %zu rows", n);
	store_top_free(rows, n);
	f.since_us = 0;
	rc = store_top(s, STORE_TOP_PROVIDERS, &f, 10, &rows, &n);
	CHECK(rc == 0 && n == 2 && rows[0].events == 6, "top providers: %zu rows", n);
	store_top_free(rows, n);
}

/* The MCP columns (migration 5 on SQLite, 4 on ClickHouse): events 0, 3,
 * 6, 9 are MCP calls (servers a/b by parity, tool read_file before minute
 * 6 and run_shell after, sessions by parity); the rest are LLM requests
 * with none of the fields. */
static void gen_mcp(struct gen *g)
{
	static const char *servers[] = { "mcp-a.example", "mcp-b.example" };
	static const char *sessions[] = { "sess-0", "sess-1" };
	for (size_t i = 0; i < 12; i += 3) {
		struct store_event *e = &g->ev[i];
		e->kind = "mcp";
		e->mcp_server = servers[(i / 3) % 2];
		e->mcp_method = "tools/call";
		e->tool = i < 6 ? "read_file" : "run_shell";
		e->mcp_session = sessions[(i / 3) % 2];
	}
	g->ev[9].mcp_method = "resources/read";
}

SUITE(mcp_filters_and_top)
{
	static struct gen g;
	gen_events(&g, "agent-p", "boot-1", 1, 12, T0, NULL);
	gen_mcp(&g);
	struct store_batch b = batch_of(&g, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	struct {
		struct store_filter f;
		size_t want;
		const char *what;
	} cases[] = {
		{ { .mcp_server = "mcp-a.example" }, 2, "mcp_server a" },
		{ { .mcp_server = "mcp-c.example" }, 0, "mcp_server c" },
		{ { .tool = "read_file" }, 2, "tool read_file" },
		{ { .tool = "run_shell", .mcp_server = "mcp-b.example" }, 1, "run_shell on b" },
		{ { .mcp_method = "tools/call" }, 3, "method tools/call" },
		{ { .mcp_method = "resources/read" }, 1, "method resources/read" },
		{ { .mcp_session = "sess-1" }, 2, "session 1" },
		{ { .tool = "read_file", .action = "block" }, 1, "read_file blocked" },
		{ { .tool = "read_file", .since_us = T0 + 60000000LL }, 1, "read_file since minute 1" },
		{ { .tool = "x' OR '1'='1" }, 0, "a quote in a tool name" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = nrows(s, &cases[i].f);
		CHECK(got == cases[i].want, "filter %s: query returned %zu, want %zu (%s)", cases[i].what, got,
		      cases[i].want, store_errmsg(s));
		got = count(s, &cases[i].f);
		CHECK(got == cases[i].want, "filter %s: count %zu, want %zu", cases[i].what, got, cases[i].want);
	}
	struct store_filter f = { .tool = "run_shell" };
	struct store_rows r;
	CHECK(store_query(s, &f, &r) == 0 && r.n == 2, "run_shell rows: %zu", r.n);
	CHECK(!strcmp(r.ev[0].mcp_server, "mcp-b.example") && !strcmp(r.ev[0].mcp_method, "resources/read") &&
		      !strcmp(r.ev[0].tool, "run_shell") && !strcmp(r.ev[0].mcp_session, "sess-1") &&
		      !strcmp(r.ev[0].kind, "mcp"),
	      "MCP columns did not round-trip: %s %s %s %s", r.ev[0].mcp_server, r.ev[0].mcp_method, r.ev[0].tool,
	      r.ev[0].mcp_session);
	store_rows_free(&r);
	f = (struct store_filter){ .user = "bob" };
	CHECK(store_query(s, &f, &r) == 0 && r.n == 4 && r.ev[0].tool && !r.ev[0].tool[0] && !r.ev[0].mcp_server[0],
	      "an LLM request reads back with empty MCP columns");
	store_rows_free(&r);
	/* Top views: LLM requests (no MCP fields) are not a group. */
	struct { enum store_top_kind k; size_t n; const char *key0; uint64_t ev0, blocked0; } tops[] = {
		{ STORE_TOP_TOOLS, 2, "read_file", 2, 1 },
		{ STORE_TOP_MCP_SERVERS, 2, "mcp-a.example", 2, 1 },
		{ STORE_TOP_MCP_METHODS, 2, "tools/call", 3, 1 },
		{ STORE_TOP_MCP_SESSIONS, 2, "sess-0", 2, 1 },
	};
	f = (struct store_filter){ 0 };
	for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
		struct store_top_row *rows;
		size_t n;
		int rc = store_top(s, tops[i].k, &f, 10, &rows, &n);
		CHECK(rc == 0, "top %s = %d: %s", store_top_name(tops[i].k), rc, store_errmsg(s));
		CHECK(n == tops[i].n && !strcmp(rows[0].key, tops[i].key0) && rows[0].events == tops[i].ev0 &&
			      rows[0].blocked == tops[i].blocked0,
		      "top %s: %zu rows, first %s %llu events %llu blocked; want %zu, %s %llu %llu",
		      store_top_name(tops[i].k), n, n ? rows[0].key : "-", n ? (unsigned long long)rows[0].events : 0,
		      n ? (unsigned long long)rows[0].blocked : 0, tops[i].n, tops[i].key0,
		      (unsigned long long)tops[i].ev0, (unsigned long long)tops[i].blocked0);
		store_top_free(rows, n);
	}
	/* A filter narrows a top view: tools on server b. */
	struct store_top_row *rows;
	size_t n;
	f.mcp_server = "mcp-b.example";
	CHECK(store_top(s, STORE_TOP_TOOLS, &f, 10, &rows, &n) == 0 && n == 2 && rows[0].events == 1,
	      "tools on server b: %zu rows", n);
	store_top_free(rows, n);
	enum store_top_kind k;
	CHECK(store_top_parse("tools", &k) == 0 && k == STORE_TOP_TOOLS && store_top_parse("mcp_servers", &k) == 0 &&
		      k == STORE_TOP_MCP_SERVERS && store_top_parse("mcp_sessions", &k) == 0 &&
		      store_top_parse("mcp_methods", &k) == 0,
	      "top names of the MCP views");
}

SUITE(agents_and_keys)
{
	static struct gen g;
	struct store_agent a;
	uint8_t k1[32], k2[32];
	memset(k1, 1, 32);
	memset(k2, 2, 32);
	CHECK(store_agent_get(s, "agent-k", &a) == -ENOENT, "unknown agent found");
	CHECK(store_agent_pin_key(s, "agent-k", k1) == 0, "pin: %s", store_errmsg(s));
	CHECK(store_agent_pin_key(s, "agent-k", k1) == 0, "pin same key again failed");
	CHECK(store_agent_pin_key(s, "agent-k", k2) == -EEXIST, "a different key replaced the pinned one");
	CHECK(store_agent_get(s, "agent-k", &a) == 0 && a.has_key && !memcmp(a.pubkey, k1, 32) && !a.revoked &&
		      !a.has_head,
	      "agent row wrong after pin");
	gen_events(&g, "agent-k", "boot-1", 10, 3, T0, NULL);
	struct store_batch b = batch_of(&g, 3);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	CHECK(store_agent_get(s, "agent-k", &a) == 0 && a.has_head && a.head_seq == 12 &&
		      !memcmp(a.head_hash, g.ev[2].hash, 32),
	      "head is seq %llu, want 12 with its hash", (unsigned long long)a.head_seq);
	CHECK(store_agent_set_revoked(s, "agent-k", true) == 0, "revoke: %s", store_errmsg(s));
	CHECK(store_agent_set_revoked(s, "agent-z", true) == 0, "revoke unknown: %s", store_errmsg(s));
	CHECK(store_agent_get(s, "agent-k", &a) == 0 && a.revoked && a.has_key, "revocation lost the key or flag");
	CHECK(store_agent_get(s, "agent-z", &a) == 0 && a.revoked, "revoking a never-seen agent did not stick");
	CHECK(store_agent_set_revoked(s, "agent-z", false) == 0 && store_agent_get(s, "agent-z", &a) == 0 &&
		      !a.revoked,
	      "un-revoke failed");
	struct store_agent *list;
	size_t n;
	CHECK(store_agent_list(s, &list, &n) == 0 && n == 2, "list has %zu agents, want 2", n);
	CHECK(!strcmp(list[0].agent_id, "agent-k") && !strcmp(list[1].agent_id, "agent-z"), "list order");
	free(list);
}

/* The console pages through millions of events with a keyset cursor: every
 * event exactly once, newest first, also across events of two agents that
 * share a time; `at` finds one event by its chain position. */
SUITE(keyset_paging)
{
	static struct gen g1, g2;
	gen_events(&g1, "agent-p", "boot-1", 1, 12, T0, NULL);
	gen_events(&g2, "agent-q", "boot-9", 1, 12, T0, NULL);
	struct store_batch b = batch_of(&g1, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert p: %s", store_errmsg(s));
	b = batch_of(&g2, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert q: %s", store_errmsg(s));
	int seen[2][13] = { { 0 } };
	size_t total = 0, pages = 0;
	int64_t last_time = INT64_MAX;
	char agent[32] = "", boot[32] = "";
	struct store_evref cur = { 0 };
	for (;;) {
		struct store_filter f = { .limit = 5, .before = pages ? &cur : NULL };
		struct store_rows r;
		CHECK(store_query(s, &f, &r) == 0, "page %zu: %s", pages, store_errmsg(s));
		for (size_t i = 0; i < r.n; i++) {
			const struct store_event *e = &r.ev[i];
			int a = !strcmp(e->agent_id, "agent-q");
			CHECK(e->seq >= 1 && e->seq <= 12 && !seen[a][e->seq]++, "page %zu repeats %s seq %llu", pages,
			      e->agent_id, (unsigned long long)e->seq);
			CHECK(e->time_us <= last_time, "page %zu is not newest first", pages);
			last_time = e->time_us;
		}
		total += r.n;
		pages++;
		if (r.n) {
			const struct store_event *e = &r.ev[r.n - 1];
			snprintf(agent, sizeof(agent), "%s", e->agent_id);
			snprintf(boot, sizeof(boot), "%s", e->boot_id);
			cur = (struct store_evref){ .time_us = e->time_us, .agent_id = agent, .boot_id = boot, .seq = e->seq };
		}
		size_t n = r.n;
		store_rows_free(&r);
		if (n < 5 || pages > 10)
			break;
	}
	CHECK(total == 24 && pages == 5, "paging saw %zu events in %zu pages, want 24 in 5", total, pages);
	struct store_evref one = { .agent_id = "agent-q", .boot_id = "boot-9", .seq = 7 };
	struct store_filter f = { .at = &one };
	struct store_rows r;
	CHECK(store_query(s, &f, &r) == 0 && r.n == 1, "at: %zu rows: %s", r.n, store_errmsg(s));
	CHECK(!strcmp(r.ev[0].agent_id, "agent-q") && r.ev[0].seq == 7 && !strcmp(r.ev[0].event_id, "ev-agent-q-7"),
	      "at found %s seq %llu", r.ev[0].agent_id, (unsigned long long)r.ev[0].seq);
	store_rows_free(&r);
	one.boot_id = "boot-1";
	CHECK(nrows(s, &f) == 0, "at with another boot matched an event");
}

struct scan_ctx {
	uint64_t seqs[64];
	size_t n;
	size_t batches;
	uint64_t bfirst[8], blast[8];
};

static int scan_cb(void *c, const struct store_event *e)
{
	struct scan_ctx *x = c;
	if (x->n < 64 && e->raw_len == 16)
		x->seqs[x->n++] = e->seq;
	return 0;
}

static int batch_cb(void *c, const struct store_batch_info *b)
{
	struct scan_ctx *x = c;
	if (x->batches < 8 && b->signature_len == 64 && b->signature[0] == 1) {
		x->bfirst[x->batches] = b->first_seq;
		x->blast[x->batches] = b->last_seq;
	}
	x->batches++;
	return 0;
}

SUITE(scans_for_verify)
{
	static struct gen g;
	gen_events(&g, "agent-v", "boot-1", 1, 8, T0, NULL);
	struct store_batch b = batch_of(&g, 8);
	/* Two batches inserted out of order. */
	b.events = &g.ev[4];
	b.nevents = 4;
	b.first_seq = 5;
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert 5..8: %s", store_errmsg(s));
	b = batch_of(&g, 4);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert 1..4: %s", store_errmsg(s));
	struct scan_ctx x = { 0 };
	CHECK(store_scan_events(s, "agent-v", scan_cb, &x) == 0, "scan: %s", store_errmsg(s));
	CHECK(x.n == 8, "scan saw %zu events with raw, want 8", x.n);
	for (size_t i = 0; i < 8; i++)
		CHECK(x.seqs[i] == i + 1, "scan position %zu has seq %llu: not in seq order", i,
		      (unsigned long long)x.seqs[i]);
	CHECK(store_scan_batches(s, "agent-v", batch_cb, &x) == 0, "scan batches: %s", store_errmsg(s));
	CHECK(x.batches == 2 && x.bfirst[0] == 1 && x.blast[0] == 4 && x.bfirst[1] == 5 && x.blast[1] == 8,
	      "batches: %zu, first %llu..%llu", x.batches, (unsigned long long)x.bfirst[0],
	      (unsigned long long)x.blast[0]);
}

SUITE(local_records)
{
	struct store_event e = { .time_us = T0, .kind = "ingest_rejected", .reason = "bad signature",
				 .host = "collector-1", .dst_ip = "127.0.0.1", .rule = "agent-x" };
	CHECK(store_insert_local(s, &e) == 0, "local 1: %s", store_errmsg(s));
	CHECK(store_insert_local(s, &e) == 0, "local 2: %s", store_errmsg(s));
	struct store_filter f = { .kind = "ingest_rejected" };
	struct store_rows r;
	CHECK(store_query(s, &f, &r) == 0 && r.n == 2, "rejections stored: %zu, want 2", r.n);
	CHECK(!strcmp(r.ev[0].reason, "bad signature") && !strcmp(r.ev[0].agent_id, "collector") &&
		      r.ev[0].seq != r.ev[1].seq,
	      "rejection record wrong (agent %s)", r.ev[0].agent_id);
	store_rows_free(&r);
}

SUITE(retention)
{
	static struct gen g;
	int64_t now = (int64_t)time(NULL) * 1000000LL;
	/* 10 events one minute apart starting 10 days ago... then 2 recent. */
	gen_events(&g, "agent-r", "boot-1", 1, 12, now - 10LL * 86400000000LL, NULL);
	for (size_t i = 10; i < 12; i++)
		g.ev[i].time_us = now - (int64_t)(12 - i) * 1000000LL;
	struct store_batch b = batch_of(&g, 12);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	uint64_t deleted = 0;
	int rc = store_retain(s, now - 7LL * 86400000000LL, &deleted);
	CHECK(rc == 0, "retain = %d: %s", rc, store_errmsg(s));
	/* A cluster: one collector's retention deletes on every shard (ON
	 * CLUSTER): agent-r's events are all on one shard, and which one
	 * depends on the hash, so the suite also runs it from the second
	 * shard's handle below, with nothing left to delete. */
	struct store_filter f = { .agent_id = "agent-r" };
	CHECK(count(s, &f) == 2, "after retention %zu events remain, want 2", count(s, &f));
	f.finding = "EMAIL";
	CHECK(count(s, &f) == 1, "finding index kept deleted events: %zu, want 1", count(s, &f));
	struct store_agent a;
	CHECK(store_agent_get(s, "agent-r", &a) == 0 && a.has_horizon && a.horizon_seq == 10 &&
		      !memcmp(a.horizon_hash, g.ev[9].hash, 32),
	      "horizon is seq %llu (has %d), want 10 with its hash", (unsigned long long)a.horizon_seq,
	      a.has_horizon);
	CHECK(a.has_head && a.head_seq == 12, "head after retention is %llu, want 12", (unsigned long long)a.head_seq);
}

/* store_usage: token sums by (key, provider, model), the input of the cost
 * column of the top views; unknown counts (-1) add nothing. */
SUITE(usage_by_key_provider_model)
{
	static struct gen g;
	struct store_usage_row *u;
	size_t n;
	gen_events(&g, "agent-u", "boot-1", 1, 6, T0, NULL);
	struct store_batch b = batch_of(&g, 6);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	struct store_filter f = { .since_us = T0 - 1 };
	CHECK(store_usage(s, STORE_TOP_USERS, &f, &u, &n) == 0, "usage: %s", store_errmsg(s));
	uint64_t in = 0, out = 0, alice_openai = 0, cached = 0;
	for (size_t i = 0; i < n; i++) {
		in += u[i].input_tokens;
		out += u[i].output_tokens;
		cached += u[i].cached_tokens;
		if (!strcmp(u[i].key, "alice") && !strcmp(u[i].provider, "openai") && !strcmp(u[i].model, "gpt-4o"))
			alice_openai += u[i].input_tokens;
	}
	store_usage_free(u, n);
	/* users by i%3, providers by i%2: 6 distinct (user, provider, model) */
	/* cached: 4 on the odd events, unknown (-1, adds nothing) on the even */
	CHECK(cached == 12, "cached tokens summed to %llu, want 12", (unsigned long long)cached);
	CHECK(n == 6 && in == 72 && out == 0 && alice_openai == 12, "%zu rows, in %llu out %llu alice/openai %llu", n,
	      (unsigned long long)in, (unsigned long long)out, (unsigned long long)alice_openai);
	CHECK(store_usage(s, STORE_TOP_FINDINGS, &f, &u, &n) == 0, "usage findings: %s", store_errmsg(s));
	uint64_t email = 0, ssn = 0;
	for (size_t i = 0; i < n; i++)
		*(!strcmp(u[i].key, "EMAIL") ? &email : !strcmp(u[i].key, "US_SSN") ? &ssn : &in) += u[i].input_tokens;
	store_usage_free(u, n);
	CHECK(email == 36 && ssn == 24, "EMAIL %llu (want 36), US_SSN %llu (want 24)", (unsigned long long)email,
	      (unsigned long long)ssn);
}

/* The inventory: one row per (user, exe, service, host) with counts, a
 * pass-through connection (no provider) listed under its SNI; reviews
 * replace the previous state of a (program, provider) pair. */
SUITE(inventory_and_reviews)
{
	static struct gen g;
	struct store_inventory_row *inv;
	struct store_review *rv;
	size_t n;
	gen_events(&g, "agent-i", "boot-1", 1, 6, T0, NULL);
	g.ev[5].kind = "connection";         /* passed through: no provider, no tokens */
	g.ev[5].provider = "";
	g.ev[5].sni = "api.mistral.ai";
	g.ev[5].prompt_tokens = -1;
	struct store_batch b = batch_of(&g, 6);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	struct store_filter f = { .since_us = T0 - 1 };
	CHECK(store_inventory(s, &f, &inv, &n) == 0, "inventory: %s", store_errmsg(s));
	/* i: user i%3, exe i%2, provider i%2, host ws-2 when i%5==0:
	 * 0 alice/python/openai/ws-2, 1 bob/curl/anthropic, 2 carol/python/openai,
	 * 3 alice/curl/anthropic, 4 bob/python/openai, 5 carol/curl/mistral(sni) */
	bool mistral = false, alice_openai = false;
	uint64_t events = 0, blocks = 0, findings = 0, requests = 0, tokens = 0;
	for (size_t i = 0; i < n; i++) {
		events += inv[i].events;
		blocks += inv[i].blocks;
		findings += inv[i].findings;
		requests += inv[i].requests;
		tokens += inv[i].tokens;
		if (!strcmp(inv[i].provider, "api.mistral.ai"))
			mistral = !strcmp(inv[i].user, "carol") && !strcmp(inv[i].exe, "/usr/bin/curl") && inv[i].requests == 0;
		if (!strcmp(inv[i].user, "alice") && !strcmp(inv[i].provider, "openai"))
			alice_openai = !strcmp(inv[i].host, "ws-2") && inv[i].first_us == T0 && inv[i].last_us == T0 &&
				       inv[i].tokens == 12 && inv[i].blocks == 1 && inv[i].findings == 1;
	}
	store_inventory_free(inv, n);
	/* blocks: i%4==0 (0, 4); findings: even i or i%3==0 (0, 2, 3, 4) */
	CHECK(n == 6 && events == 6 && requests == 5 && tokens == 60 && blocks == 2 && findings == 4,
	      "%zu rows: events %llu requests %llu tokens %llu blocks %llu findings %llu", n, (unsigned long long)events,
	      (unsigned long long)requests, (unsigned long long)tokens, (unsigned long long)blocks,
	      (unsigned long long)findings);
	CHECK(mistral, "the pass-through connection is not listed under its SNI");
	CHECK(alice_openai, "alice/openai row has wrong seen times or counts");
	struct store_review r = { .exe = "/usr/bin/curl", .provider = "anthropic", .state = "approved", .by = "soc",
				  .at_us = T0 };
	CHECK(store_review_set(s, &r) == 0, "review: %s", store_errmsg(s));
	r.state = "unapproved";
	r.at_us = T0 + 1;
	CHECK(store_review_set(s, &r) == 0, "review again: %s", store_errmsg(s));
	r.state = "maybe";
	CHECK(store_review_set(s, &r) == -EINVAL, "a state outside unreviewed|approved|unapproved was stored");
	CHECK(store_review_list(s, &rv, &n) == 0, "reviews: %s", store_errmsg(s));
	CHECK(n == 1 && !strcmp(rv[0].state, "unapproved") && !strcmp(rv[0].by, "soc") && rv[0].at_us == T0 + 1,
	      "%zu reviews, state %s", n, n ? rv[0].state : "-");
	store_review_free(rv, n);
}

/* store_feed: commit order, not event time (an agent's spool shipped late
 * must not fall behind a forwarder's cursor), resumable from any cursor.
 * ClickHouse reads a settle window behind its clock, hence the waits. */
static void feed_settle(struct store *s)
{
	if (strcmp(store_kind(s), "sqlite"))
		usleep(2100000);
}

SUITE(feed_in_commit_order)
{
	static struct gen a, b;
	struct store_rows r;
	uint64_t cur = 0, next;
	gen_events(&a, "agent-now", "boot-1", 1, 5, T0 + 3600000000LL, NULL);
	gen_events(&b, "agent-late", "boot-1", 1, 4, T0, NULL);   /* older events, committed later */
	struct store_batch ba = batch_of(&a, 5), bb = batch_of(&b, 4);
	CHECK(store_insert_batch(s, &ba, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	CHECK(store_insert_batch(s, &bb, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	const char *want[9];
	for (int i = 0; i < 5; i++)
		want[i] = a.ids[i];
	for (int i = 0; i < 4; i++)
		want[5 + i] = b.ids[i];
	feed_settle(s);
	size_t got = 0;
	for (int round = 0; round < 5 && got < 9; round++) {
		CHECK(store_feed(s, cur, 4, &r, &next) == 0, "feed: %s", store_errmsg(s));
		CHECK(r.n && next > cur, "round %d: %zu rows, cursor %llu -> %llu", round, r.n, (unsigned long long)cur,
		      (unsigned long long)next);
		for (size_t i = 0; i < r.n; i++, got++)
			CHECK(got < 9 && !strcmp(r.ev[i].event_id, want[got]), "row %zu is %s, want %s", got,
			      r.ev[i].event_id, got < 9 ? want[got] : "none");
		store_rows_free(&r);
		cur = next;
	}
	CHECK(got == 9, "fed %zu of 9", got);
	CHECK(store_feed(s, cur, 4, &r, &next) == 0 && r.n == 0 && next == cur, "feed past the end: %zu rows", r.n);
	store_rows_free(&r);
	struct store_event local = { .time_us = T0, .kind = "ingest_rejected", .agent_id = "agent-x", .reason = "bad" };
	CHECK(store_insert_local(s, &local) == 0, "insert_local: %s", store_errmsg(s));
	feed_settle(s);
	CHECK(store_feed(s, cur, 4, &r, &next) == 0 && r.n == 1 && !strcmp(r.ev[0].kind, "ingest_rejected"),
	      "the collector's own record is not fed: %zu rows", r.n);
	store_rows_free(&r);
}

/* ClickHouse: a feed never returns a row inserted less than the settle
 * window ago (another collector's insert may still be landing below it),
 * then returns it once settled; a later commit of older events comes after
 * the cursor, not before it. */
SUITE(feed_settles_then_continues)
{
	static struct gen a, b;
	struct store_rows r;
	uint64_t cur, next;
	if (!strcmp(store_kind(s), "sqlite"))
		return;   /* exact at commit: feed_in_commit_order covers it */
	gen_events(&a, "agent-one", "boot-1", 1, 3, T0, NULL);
	struct store_batch ba = batch_of(&a, 3);
	CHECK(store_insert_batch(s, &ba, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	CHECK(store_feed(s, 0, 10, &r, &next) == 0 && r.n == 0 && next == 0,
	      "fed %zu rows inserted just now (inside the settle window)", r.n);
	store_rows_free(&r);
	feed_settle(s);
	CHECK(store_feed(s, 0, 10, &r, &next) == 0 && r.n == 3, "settled: fed %zu of 3", r.n);
	store_rows_free(&r);
	cur = next;
	gen_events(&b, "agent-two", "boot-1", 1, 2, T0 - 86400000000LL, NULL);  /* a day older in event time */
	struct store_batch bb = batch_of(&b, 2);
	CHECK(store_insert_batch(s, &bb, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	feed_settle(s);
	CHECK(store_feed(s, cur, 10, &r, &next) == 0 && r.n == 2 && !strcmp(r.ev[0].agent_id, "agent-two") && next > cur,
	      "after the first page: %zu rows, cursor %llu -> %llu", r.n, (unsigned long long)cur,
	      (unsigned long long)next);
	store_rows_free(&r);
}

TEST(unknown_store_scheme_refused)
{
	struct store *s;
	char err[256];
	CHECK(store_open("mysql://x", &s, err, sizeof(err)) == -EINVAL && strstr(err, "unknown scheme"),
	      "unknown scheme accepted or unclear error: %s", err);
}

static size_t sink(char *p, size_t sz, size_t n, void *arg)
{
	struct { char b[64]; size_t len; } *o = arg;
	size_t add = sz * n;
	if (o->len + add < sizeof(o->b)) {
		memcpy(o->b + o->len, p, add);
		o->len += add;
		o->b[o->len] = 0;
	}
	return add;
}

/* A number answered by one server alone (not through the cluster). */
static long long ch_local_number(int http_port, const char *db, const char *sql)
{
	struct { char b[64]; size_t len; } out = { { 0 }, 0 };
	char url[256];
	long code = 0;
	CURL *c = curl_easy_init();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/?database=%s", http_port, db);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, sql);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	return rc == CURLE_OK && code == 200 ? atoll(out.b) : -1;
}

/* Retention on a cluster is the cluster's: one collector (connected to the
 * first server) deletes the old rows on both shards, with no collector on
 * the second (ON CLUSTER through ZooKeeper). Eight agents spread over
 * both shards (checked, so the test cannot pass on one shard alone). */
TEST(clickhouse_cluster_retention_from_one_collector)
{
	static struct gen g;
	char why[600], db[64];
	if (getenv("VIGIL_NO_CLICKHOUSE")) {
		printf("SKIP clickhouse_cluster_retention_from_one_collector\n");
		return;
	}
	struct store *s = fresh("clickhouse_cluster", why, sizeof(why));
	CHECK(s, "%s", why);
	snprintf(db, sizeof(db), "vigil_t%d_%d", (int)getpid(), store_seq);
	/* The second server's handle only created its tables: this test's
	 * collector is the one on the first server. */
	store_close(shard2);
	shard2 = NULL;
	int64_t now = (int64_t)time(NULL) * 1000000LL;
	for (int k = 0; k < 8; k++) {
		char agent[32];
		snprintf(agent, sizeof(agent), "agent-c%d", k);
		gen_events(&g, agent, "boot-1", 1, 3, now - 10LL * 86400000000LL, NULL);
		g.ev[2].time_us = now - 1000000LL;
		struct store_batch b = batch_of(&g, 3);
		b.received_us = now - 10LL * 86400000000LL;
		CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	}
	char sql[200];
	snprintf(sql, sizeof(sql), "SELECT count() FROM events_local WHERE time < %lld",
		 (long long)(now - 7LL * 86400000000LL));
	long long before[2] = { ch_local_number(ch_http[0], db, sql), ch_local_number(ch_http[1], db, sql) };
	CHECK(before[0] > 0 && before[1] > 0 && before[0] + before[1] == 16,
	      "old rows per shard before retention: %lld and %lld (want both > 0, 16 in all)", before[0], before[1]);
	uint64_t deleted = 0;
	int rc = store_retain(s, now - 7LL * 86400000000LL, &deleted);
	CHECK(rc == 0 && deleted == 16, "retain = %d (%llu deleted): %s", rc, (unsigned long long)deleted,
	      store_errmsg(s));
	long long after[2] = { ch_local_number(ch_http[0], db, sql), ch_local_number(ch_http[1], db, sql) };
	CHECK(after[0] == 0 && after[1] == 0, "old rows per shard after retention: %lld and %lld", after[0], after[1]);
	snprintf(sql, sizeof(sql), "SELECT count() FROM batches_local WHERE received < %lld",
		 (long long)(now - 7LL * 86400000000LL));
	CHECK(ch_local_number(ch_http[0], db, sql) == 0 && ch_local_number(ch_http[1], db, sql) == 0,
	      "old batch headers left on a shard");
	snprintf(sql, sizeof(sql), "SELECT count() FROM event_feed_local WHERE time < %lld",
		 (long long)(now - 7LL * 86400000000LL));
	CHECK(ch_local_number(ch_http[0], db, sql) == 0 && ch_local_number(ch_http[1], db, sql) == 0,
	      "old commit-order rows (event_feed) left on a shard");
	struct store_filter f = { .since_us = 1 };
	CHECK(count(s, &f) == 8, "%zu recent events remain, want 8", count(s, &f));
	store_close(s);
}

/* A ClickHouse database from before migration 4 (no ingest_seq, no
 * cached_tokens) is migrated on open: its rows read their event time as
 * their commit order, so a new forwarder feeds them first, oldest first,
 * then what is inserted after; their cached tokens are unknown. */
TEST(clickhouse_schema3_database_gains_commit_order)
{
	static struct gen g, h;
	char why[600], db[64], url[256], err[512];
	struct store_rows r;
	uint64_t next;
	if (getenv("VIGIL_NO_CLICKHOUSE")) {
		printf("SKIP clickhouse_schema3_database_gains_commit_order\n");
		return;
	}
	struct store *s = fresh("clickhouse", why, sizeof(why));
	CHECK(s, "%s", why);
	snprintf(db, sizeof(db), "vigil_t%d_%d", (int)getpid(), store_seq);
	snprintf(url, sizeof(url), "clickhouse://127.0.0.1:%d/%s", ch_http[0], db);
	gen_events(&g, "agent-old", "boot-1", 1, 3, T0 + 60000000LL, NULL);
	g.ev[0].time_us = T0 + 600000000LL;   /* stored first, but the newest */
	struct store_batch b = batch_of(&g, 3);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	store_close(s);
	/* Back to schema 3. */
	CHECK(ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN ingest_seq") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN cached_tokens") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN mcp_server") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN mcp_method") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN tool") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE events DROP COLUMN mcp_session") == 0 &&
		      ch_local_number(ch_http[0], db, "ALTER TABLE schema_migrations DELETE WHERE version >= 4") == 0,
	      "downgrade to schema 3");
	for (int i = 0; i < 300 && ch_local_number(ch_http[0], db, "SELECT count() FROM system.mutations WHERE"
						     " database = currentDatabase() AND is_done = 0") != 0; i++)
		usleep(100000);
	CHECK(ch_local_number(ch_http[0], db, "SELECT max(version) FROM schema_migrations") == 3, "not at schema 3");
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open of a schema 3 database: %s", err);
	CHECK(ch_local_number(ch_http[0], db, "SELECT max(version) FROM schema_migrations") == 5, "not migrated to 5");
	gen_events(&h, "agent-new", "boot-1", 1, 1, T0, NULL);   /* the oldest event, committed last */
	struct store_batch bh = batch_of(&h, 1);
	CHECK(store_insert_batch(s, &bh, NULL, NULL) == 0, "insert after migration: %s", store_errmsg(s));
	feed_settle(s);
	CHECK(store_feed(s, 0, 10, &r, &next) == 0 && r.n == 4, "fed %zu of 4: %s", r.n, store_errmsg(s));
	const char *want[4] = { g.ids[1], g.ids[2], g.ids[0], h.ids[0] };
	for (size_t i = 0; i < 4 && i < r.n; i++)
		CHECK(!strcmp(r.ev[i].event_id, want[i]), "row %zu is %s, want %s", i, r.ev[i].event_id, want[i]);
	CHECK(r.ev[0].cached_tokens == -1 && r.ev[3].cached_tokens == h.ev[0].cached_tokens,
	      "cached_tokens: old %lld (want -1), new %lld", (long long)r.ev[0].cached_tokens,
	      (long long)r.ev[3].cached_tokens);
	store_rows_free(&r);
	store_close(s);
}

TEST(sqlite_reopen_keeps_data_and_schema)
{
	static struct gen g;
	char url[512], err[512];
	struct store *s;
	ensure_tmpdir();
	snprintf(url, sizeof(url), "sqlite:%s/reopen.db", tmpdir);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open: %s", err);
	gen_events(&g, "agent-o", "boot-1", 1, 3, T0, NULL);
	struct store_batch b = batch_of(&g, 3);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	store_close(s);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "reopen: %s", err);
	struct store_filter f = { 0 };
	CHECK(count(s, &f) == 3, "reopened store has %zu events, want 3", count(s, &f));
	store_close(s);
}

/* A database written by a collector before container_id existed (schema
 * 1) is migrated on open: old rows read back with no container, new rows
 * keep theirs. */
TEST(sqlite_schema1_database_gains_container_id)
{
	static struct gen g;
	char url[512], path[512], err[512];
	struct store *s;
	sqlite3 *db;

	ensure_tmpdir();
	snprintf(path, sizeof(path), "%s/schema1.db", tmpdir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open: %s", err);
	gen_events(&g, "agent-m", "boot-1", 1, 4, T0, NULL);
	struct store_batch b = batch_of(&g, 2);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	store_close(s);
	/* Back to what schema 1 was. */
	CHECK(sqlite3_open(path, &db) == SQLITE_OK, "sqlite3_open");
	CHECK(sqlite3_exec(db, "DROP INDEX ev_mcp_server; DROP INDEX ev_tool; DROP INDEX ev_mcp_session;"
			   " ALTER TABLE events DROP COLUMN mcp_server; ALTER TABLE events DROP COLUMN mcp_method;"
			   " ALTER TABLE events DROP COLUMN tool; ALTER TABLE events DROP COLUMN mcp_session;"
			   " ALTER TABLE events DROP COLUMN container_id; DROP INDEX ev_ingest;"
			   " ALTER TABLE events DROP COLUMN ingest_seq; DROP TABLE reviews;"
			   " ALTER TABLE events DROP COLUMN cached_tokens; PRAGMA user_version=1;", NULL, NULL,
			   NULL) == SQLITE_OK, "downgrade: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open of a schema 1 database: %s", err);
	struct store_batch b2 = batch_of(&g, 4);
	b2.events += 2;
	b2.nevents = 2;
	b2.first_seq = 3;
	CHECK(store_insert_batch(s, &b2, NULL, NULL) == 0, "insert after migration: %s", store_errmsg(s));
	struct store_filter f = { 0 };
	struct store_rows r = { 0 };
	CHECK(store_query(s, &f, &r) == 0 && r.n == 4, "query after migration: %zu rows", r.n);
	/* newest first: seq 4, 3 are new (3 has an id), 2, 1 are old. */
	CHECK(!strcmp(r.ev[1].container_id, g.ev[2].container_id) && r.ev[1].container_id[0],
	      "new row lost its container_id: '%s'", r.ev[1].container_id);
	CHECK(r.ev[2].container_id[0] == 0 && r.ev[3].container_id[0] == 0, "old rows got a container_id");
	CHECK(r.ev[2].cached_tokens == -1 && r.ev[1].cached_tokens == g.ev[2].cached_tokens,
	      "cached_tokens: old row %lld (want unknown), new row %lld (want %lld)", (long long)r.ev[2].cached_tokens,
	      (long long)r.ev[1].cached_tokens, (long long)g.ev[2].cached_tokens);
	store_rows_free(&r);
	store_close(s);
}

/* A database of schema 4 (before the MCP columns) is migrated on open:
 * its rows read back with empty MCP fields and match no MCP filter, new
 * rows are found by them, and the partial index serves the tool filter. */
TEST(sqlite_schema4_database_gains_mcp_columns)
{
	static struct gen g;
	char url[512], path[512], err[512];
	struct store *s;
	sqlite3 *db;
	sqlite3_stmt *st;

	ensure_tmpdir();
	snprintf(path, sizeof(path), "%s/schema4.db", tmpdir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open: %s", err);
	gen_events(&g, "agent-4", "boot-1", 1, 6, T0, NULL);
	gen_mcp(&g);
	struct store_batch b = batch_of(&g, 3);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert: %s", store_errmsg(s));
	store_close(s);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK, "sqlite3_open");
	CHECK(sqlite3_exec(db, "DROP INDEX ev_mcp_server; DROP INDEX ev_tool; DROP INDEX ev_mcp_session;"
			   " ALTER TABLE events DROP COLUMN mcp_server; ALTER TABLE events DROP COLUMN mcp_method;"
			   " ALTER TABLE events DROP COLUMN tool; ALTER TABLE events DROP COLUMN mcp_session;"
			   " ALTER TABLE events DROP COLUMN cached_tokens; PRAGMA user_version=4;", NULL, NULL, NULL) == SQLITE_OK,
	      "downgrade: %s", sqlite3_errmsg(db));
	sqlite3_close(db);
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open of a schema 4 database: %s", err);
	struct store_batch b2 = batch_of(&g, 6);
	b2.events += 3;
	b2.nevents = 3;
	b2.first_seq = 4;
	CHECK(store_insert_batch(s, &b2, NULL, NULL) == 0, "insert after migration: %s", store_errmsg(s));
	struct store_filter f = { .tool = "read_file" };
	CHECK(count(s, &f) == 1, "tool filter after migration: %zu, want 1 (the new row only)", count(s, &f));
	struct store_rows r = { 0 };
	f = (struct store_filter){ 0 };
	CHECK(store_query(s, &f, &r) == 0 && r.n == 6, "query after migration: %zu rows", r.n);
	CHECK(!strcmp(r.ev[2].tool, "read_file") && !strcmp(r.ev[2].mcp_server, "mcp-b.example"),
	      "new MCP row: tool '%s' server '%s'", r.ev[2].tool, r.ev[2].mcp_server);
	CHECK(!r.ev[5].tool[0] && !r.ev[5].mcp_server[0], "old MCP row got MCP columns");
	store_rows_free(&r);
	store_close(s);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK, "sqlite3_open");
	CHECK(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT count(*) FROM events e WHERE e.tool = ?1", -1, &st, NULL) ==
		      SQLITE_OK, "explain: %s", sqlite3_errmsg(db));
	bool indexed = false;
	while (sqlite3_step(st) == SQLITE_ROW)
		indexed |= strstr((const char *)sqlite3_column_text(st, 3), "ev_tool") != NULL;
	sqlite3_finalize(st);
	sqlite3_close(db);
	CHECK(indexed, "the tool filter does not use the partial index ev_tool");
}

/* One statement to the first ClickHouse server, outside the store (curl,
 * the server's own HTTP interface). 0 on HTTP 200. */
static int ch_sql(const char *db, const char *sql)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "curl -sf -o /dev/null --data-binary @- 'http://127.0.0.1:%d/?database=%s'", ch_http[0], db);
	FILE *p = popen(cmd, "w");
	if (!p)
		return -1;
	fputs(sql, p);
	return pclose(p) == 0 ? 0 : -1;
}

/* A ClickHouse database of schema 3 (before the MCP columns) is migrated
 * on open: the columns are added, old rows read back with empty MCP
 * fields, new rows are found by them. */
TEST(clickhouse_schema3_database_gains_mcp_columns)
{
	static struct gen g;
	char why[600], url[512], db[64], err[512];
	if (getenv("VIGIL_NO_CLICKHOUSE")) {
		printf("SKIP clickhouse_schema3_database_gains_mcp_columns\n");
		return;
	}
	struct store *s = fresh("clickhouse", why, sizeof(why));
	CHECK(s, "%s", why);
	snprintf(db, sizeof(db), "vigil_t%d_%d", (int)getpid(), store_seq);
	snprintf(url, sizeof(url), "clickhouse://127.0.0.1:%d/%s", ch_http[0], db);
	store_close(s);
	/* Back to schema 3: no MCP columns, migrations 1..3 recorded. */
	static const char *const down[] = {
		"ALTER TABLE events DROP COLUMN mcp_server", "ALTER TABLE events DROP COLUMN mcp_method",
		"ALTER TABLE events DROP COLUMN tool", "ALTER TABLE events DROP COLUMN mcp_session",
		"DROP TABLE schema_migrations",
		"CREATE TABLE schema_migrations (version UInt32, applied Int64) ENGINE = MergeTree() ORDER BY version",
		"INSERT INTO schema_migrations VALUES (2, 0), (3, 0)",
	};
	for (size_t i = 0; i < sizeof(down) / sizeof(down[0]); i++)
		CHECK(ch_sql(db, down[i]) == 0, "downgrade step %zu failed: %s", i, down[i]);
	/* An old collector's row: the columns it knew. */
	CHECK(ch_sql(db, "INSERT INTO events (time, agent_id, boot_id, seq, kind, `user`) VALUES"
			 " (1700000000000000, 'agent-3', 'boot-1', 1, 'mcp', 'alice')") == 0, "old row");
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "open of a schema 3 database: %s", err);
	gen_events(&g, "agent-3", "boot-1", 2, 4, T0 + 60000000LL, NULL);
	gen_mcp(&g);
	struct store_batch b = batch_of(&g, 4);
	CHECK(store_insert_batch(s, &b, NULL, NULL) == 0, "insert after migration: %s", store_errmsg(s));
	struct store_filter f = { .tool = "read_file" };
	CHECK(count(s, &f) == 2, "tool filter after migration: %zu, want 2", count(s, &f));
	struct store_rows r = { 0 };
	f = (struct store_filter){ 0 };
	CHECK(store_query(s, &f, &r) == 0 && r.n == 5, "query after migration: %zu rows (%s)", r.n, store_errmsg(s));
	CHECK(r.ev[4].seq == 1 && !r.ev[4].tool[0] && !r.ev[4].mcp_server[0], "the old row reads back with MCP columns");
	store_rows_free(&r);
	store_close(s);
	/* Opening again is a no-op (the columns are there, versions 4 and 5 recorded). */
	CHECK(store_open(url, &s, err, sizeof(err)) == 0, "reopen: %s", err);
	store_close(s);
}

TEST(findings_text_form)
{
	struct store_finding in[3] = { { "EMAIL", 2 }, { "BAD,TYPE:x", 1 }, { "US_SSN", 7 } }, out[4];
	char buf[128];
	CHECK(store_findings_format(in, 3, buf, sizeof(buf)) == 0, "format failed");
	CHECK(!strcmp(buf, "EMAIL:2,BADTYPEx:1,US_SSN:7"), "separators in a type were not dropped: %s", buf);
	size_t n = store_findings_parse(buf, out, 4);
	CHECK(n == 3 && !strcmp(out[2].type, "US_SSN") && out[2].count == 7, "parse gave %zu", n);
}
