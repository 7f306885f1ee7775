/* collector_bench: the collector's two numbers that matter.
 *
 * 1. Ingest rate: events per second committed (acked after commit) through
 *    the real path: mTLS, Hello, zstd batches of 1000 signed, chained
 *    events, parse + signature + chain check + store commit + ack. Batches
 *    are built and signed before the clock starts (that is agent CPU), then
 *    AGENTS concurrent agents send them back to back. SQLite, and ClickHouse
 *    when a server is reachable (CH_URL) or clickhouse-server can be started.
 * 2. Query latency on a 1M-event store: `--since 24h --user U` (limit 1000)
 *    and `--top users --since 7d`, median of 5 runs after one warm-up, at
 *    the store interface the API calls.
 *
 * Targets (issue 7): >= 50,000 events/s ingested on SQLite (2 cores); a
 * filtered query over 1M events < 100 ms. Prints PASS/MISS per target.
 * Usage: collector_bench [--events N] [--store-events N] [--no-clickhouse] [--no-sqlite]
 *        [--remote IP PORT DIR BASE: only the senders, against a running collector]
 *        [--keep: leave the stores and the ClickHouse server running for a look] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "enroll.h"
#include "evcodec.h"
#include "ingest.h"
#include "log.h"
#include "pki.h"
#include "store.h"

#define BATCH 1000
#define AGENTS 4

static char dir[256];
static int port;
static struct in_addr host = { .s_addr = 0x0100007f };   /* 127.0.0.1, network order */
static size_t total_events = 200000, store_events = 1000000;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sender {
	int idx;
	uint8_t **frames;
	size_t *lens;
	size_t nframes;
	EVP_PKEY *key;
	int rc;
};

static int write_all(SSL *s, const uint8_t *b, size_t n)
{
	uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	if (SSL_write(s, h, 4) != 4)
		return -1;
	while (n) {
		int w = SSL_write(s, b, (int)n);
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *send_thread(void *arg)
{
	struct sender *sd = arg;
	char crt[300], key[300], ca[300], id[32];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = host };
	snprintf(id, sizeof(id), "bench-%d", sd->idx);
	snprintf(crt, sizeof(crt), "%s/%s/agent.crt", dir, id);
	snprintf(key, sizeof(key), "%s/%s/agent.key", dir, id);
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_load_verify_locations(ctx, ca, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM);
	SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
	SSL *ssl = SSL_new(ctx);
	sd->rc = -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		goto out;
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1)
		goto out;
	uint8_t pub[32], *hb;
	size_t hl;
	evcodec_key_public(sd->key, pub);
	evcodec_hello_encode(id, pub, &hb, &hl);
	evcodec_frame_write(ssl, hb, hl);
	free(hb);
	for (size_t i = 0; i < sd->nframes; i++) {
		uint8_t *ack;
		size_t al;
		enum evcodec_ack_status st;
		uint64_t seq;
		char reason[200];
		int wr = write_all(ssl, sd->frames[i], sd->lens[i]), rr = wr ? 0 : evcodec_frame_read(ssl, &ack, &al, 4096);
		if (wr || rr) {
			fprintf(stderr, "bench: agent %d: connection lost at batch %zu (write %d read %d ssl %d)\n", sd->idx, i, wr, rr,
				SSL_get_error(ssl, -1));
			ERR_print_errors_fp(stderr);
			goto out;
		}
		int rc = evcodec_ack_decode(ack, al, &st, &seq, reason, sizeof(reason));
		free(ack);
		if (rc || st != EVCODEC_ACK_OK) {
			fprintf(stderr, "bench: batch %zu not acked: %d %s\n", i, st, reason);
			goto out;
		}
	}
	sd->rc = 0;
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return NULL;
}

/* Pre-builds one agent's signed frames. */
static int build_frames(struct sender *sd, size_t nevents)
{
	char id[32], boot[40], eid[48], user[16], exe[32];
	uint8_t prev[32] = { 0 };
	static const struct vigil_finding f[] = { { "EMAIL", 1 }, { "US_SSN", 2 } };
	snprintf(id, sizeof(id), "bench-%d", sd->idx);
	snprintf(boot, sizeof(boot), "boot-%d", sd->idx);
	sd->nframes = nevents / BATCH;
	sd->frames = calloc(sd->nframes, sizeof(*sd->frames));
	sd->lens = calloc(sd->nframes, sizeof(*sd->lens));
	uint8_t **encs = calloc(BATCH, sizeof(*encs));
	size_t *lens = calloc(BATCH, sizeof(*lens));
	int64_t t0 = (int64_t)time(NULL) * 1000000;
	for (size_t b = 0; b < sd->nframes; b++) {
		for (size_t i = 0; i < BATCH; i++) {
			uint64_t seq = b * BATCH + i + 1;
			struct vigil_event ev;
			vigil_event_init(&ev, "request");
			snprintf(eid, sizeof(eid), "%08x-0000-4000-8000-%012llx", sd->idx, (unsigned long long)seq);
			snprintf(user, sizeof(user), "user%zu", seq % 50);
			snprintf(exe, sizeof(exe), "/usr/bin/tool%zu", seq % 7);
			ev.time_us = t0 + (int64_t)seq;
			ev.event_id = eid;
			ev.agent_id = id;
			ev.boot_id = boot;
			ev.seq = seq;
			ev.host = id;
			ev.user = user;
			ev.uid = 1000 + (int64_t)(seq % 50);
			ev.gid = 1000;
			ev.pid = 4000 + (int64_t)(seq % 100);
			ev.comm = "python3";
			ev.exe = exe;
			ev.cgroup = "/user.slice/user-1000.slice";
			ev.dst_ip = "104.18.7.192";
			ev.dst_port = 443;
			ev.sni = "api.openai.com";
			ev.provider = "openai";
			ev.method = "POST";
			ev.path = "/v1/chat/completions";
			ev.model = "gpt-4o-mini";
			ev.action = seq % 10 ? "allow" : "block";
			ev.rule = seq % 10 ? "" : "no-secrets";
			ev.findings = f;
			ev.n_findings = seq % 3 == 0 ? 2 : 0;
			ev.status = 200;
			ev.bytes_up = 900;
			ev.bytes_down = 3000;
			ev.prompt_tokens = 120;
			ev.completion_tokens = 40;
			ev.latency_ms = 800;
			ev.policy_hash = "0123456789abcdef";
			memcpy(ev.prev_hash, prev, 32);
			evcodec_event_hash(prev, &ev, ev.hash);
			memcpy(prev, ev.hash, 32);
			size_t l = evcodec_event_encode(&ev, true, NULL, 0);
			encs[i] = malloc(l);
			lens[i] = evcodec_event_encode(&ev, true, encs[i], l);
		}
		struct evcodec_batch_hdr h = { .agent_id = id, .boot_id = boot, .first_seq = b * BATCH + 1,
					       .last_seq = (b + 1) * BATCH };
		int rc = evcodec_batch_build(&h, (const uint8_t *const *)encs, lens, BATCH, sd->key, 0, &sd->frames[b],
					     &sd->lens[b], NULL);
		for (size_t i = 0; i < BATCH; i++)
			free(encs[i]);
		if (rc)
			return rc;
	}
	free(encs);
	free(lens);
	return 0;
}

static volatile sig_atomic_t stop_ingest;
static struct ingest *ing;
static void *ingest_thread(void *arg) { (void)arg; ingest_run(ing, &stop_ingest); return NULL; }

/* Returns events/s, or < 0 if the run failed. */
static double bench_ingest(const char *url)
{
	char err[512], crt[300], key[300], ca[300];
	struct store *s;
	struct sender sd[AGENTS];
	pthread_t th[AGENTS], it;
	if (store_open(url, &s, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		return -1;
	}
	snprintf(crt, sizeof(crt), "%s/pki/server.crt", dir);
	snprintf(key, sizeof(key), "%s/pki/server.key", dir);
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir);
	SSL_CTX *ctx = ingest_server_ctx(crt, key, ca, true, err, sizeof(err));
	struct ingest_opts o = { .listen = "127.0.0.1:0", .ctx = ctx, .store = s, .store_url = url, .max_conns = 64, .host = "bench" };
	if (!ctx || ingest_new(&o, &ing, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		return -1;
	}
	port = ingest_port(ing);
	stop_ingest = 0;
	pthread_create(&it, NULL, ingest_thread, NULL);
	printf("  building %zu signed events in batches of %d for %d agents...\n", total_events, BATCH, AGENTS);
	fflush(stdout);
	for (int i = 0; i < AGENTS; i++) {
		memset(&sd[i], 0, sizeof(sd[i]));
		sd[i].idx = i;
		pki_key_generate(PKI_KEY_ED25519, &sd[i].key, err, sizeof(err));
		if (build_frames(&sd[i], total_events / AGENTS))
			return -1;
	}
	if (getenv("BENCH_PAUSE")) {
		printf("  pid %d: timed phase in 3 s\n", (int)getpid());
		fflush(stdout);
		sleep(3);
	}
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double t0 = now_s();
	for (int i = 0; i < AGENTS; i++)
		pthread_create(&th[i], NULL, send_thread, &sd[i]);
	int bad = 0;
	for (int i = 0; i < AGENTS; i++) {
		pthread_join(th[i], NULL);
		bad |= sd[i].rc;
	}
	double dt = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	printf("  %.2f s wall, %.2f s CPU (collector and the %d senders): %.1f us CPU per event\n", dt, cpu, AGENTS,
	       cpu * 1e6 / (double)total_events);
	stop_ingest = 1;
	pthread_join(it, NULL);
	ingest_free(ing);
	SSL_CTX_free(ctx);
	struct store_filter f = { .kind = "request" };
	uint64_t n = 0;
	store_count(s, &f, &n);
	store_close(s);
	for (int i = 0; i < AGENTS; i++) {
		for (size_t b = 0; b < sd[i].nframes; b++)
			free(sd[i].frames[b]);
		free(sd[i].frames);
		free(sd[i].lens);
		EVP_PKEY_free(sd[i].key);
	}
	if (bad || n != (total_events / AGENTS / BATCH) * BATCH * AGENTS) {
		fprintf(stderr, "bench: ingest failed (%llu events stored)\n", (unsigned long long)n);
		return -1;
	}
	return (double)n / dt;
}

/* --remote: the senders against a running vigil-collector whose client CA
 * issued DIR/bench-N/agent.{crt,key} (see colloop_bench.py). Events/s
 * acked, or < 0. */
static double bench_remote(int base)
{
	char err[512];
	struct sender sd[AGENTS];
	pthread_t th[AGENTS];
	for (int i = 0; i < AGENTS; i++) {
		memset(&sd[i], 0, sizeof(sd[i]));
		sd[i].idx = base + i;
		pki_key_generate(PKI_KEY_ED25519, &sd[i].key, err, sizeof(err));
		if (build_frames(&sd[i], total_events / AGENTS))
			return -1;
	}
	printf("ready\n");
	fflush(stdout);
	if (getchar() == EOF)
		return -1;
	double t0 = now_s();
	int bad = 0;
	for (int i = 0; i < AGENTS; i++)
		pthread_create(&th[i], NULL, send_thread, &sd[i]);
	for (int i = 0; i < AGENTS; i++) {
		pthread_join(th[i], NULL);
		bad |= sd[i].rc;
	}
	double dt = now_s() - t0;
	return bad ? -1 : (double)(total_events / AGENTS / BATCH * BATCH * AGENTS) / dt;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Fills a store with n events over 7 days, 1000 users, 50 hosts (fast path,
 * not timed), then times the two SOC queries. */
static int bench_queries(const char *url, double *q_user_ms, double *q_top_ms, size_t *rows_user)
{
	char err[512];
	struct store *s;
	if (store_open(url, &s, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		return -1;
	}
	static struct store_event ev[5000];
	static char users[1000][16], hosts[50][16], ids[5000][40];
	static struct store_finding fd[2] = { { "EMAIL", 1 }, { "IBAN", 1 } };
	static const uint8_t raw[200] = { 1 };
	for (int i = 0; i < 1000; i++)
		snprintf(users[i], sizeof(users[i]), "user%03d", i);
	for (int i = 0; i < 50; i++)
		snprintf(hosts[i], sizeof(hosts[i]), "ws-%02d", i);
	int64_t now = (int64_t)time(NULL) * 1000000, span = 7LL * 86400 * 1000000;
	uint64_t have = 0;
	struct store_filter all = { 0 };
	store_count(s, &all, &have);
	double t0 = now_s();
	size_t per = sizeof(ev) / sizeof(ev[0]);
	for (size_t done = have; done < store_events; done += per) {
		size_t n = store_events - done < per ? store_events - done : per;
		for (size_t i = 0; i < n; i++) {
			uint64_t k = done + i;
			struct store_event *e = &ev[i];
			memset(e, 0, sizeof(*e));
			snprintf(ids[i], sizeof(ids[i]), "ev-%llu", (unsigned long long)k);
			e->time_us = now - span + (int64_t)((double)k / (double)store_events * (double)span);
			e->event_id = ids[i];
			e->agent_id = hosts[k % 50];
			e->boot_id = "b";
			e->seq = k / 50 + 1;
			e->host = hosts[k % 50];
			e->kind = "request";
			e->user = users[(k * 7919) % 1000];
			e->exe = k % 3 ? "/usr/bin/python3" : "/usr/bin/node";
			e->provider = k % 2 ? "openai" : "anthropic";
			e->model = "gpt-4o";
			e->action = k % 10 ? "allow" : "block";
			e->findings = fd;
			e->nfindings = k % 4 == 0 ? 1 : 0;
			e->injection_score = -1;
			e->raw = raw;
			e->raw_len = sizeof(raw);
			memcpy(e->hash, &k, sizeof(k));
		}
		struct store_batch b = { .agent_id = "x", .boot_id = "b", .first_seq = done, .last_seq = done + n - 1,
					 .received_us = now, .events = ev, .nevents = n };
		if (store_insert_batch(s, &b, NULL, NULL)) {
			fprintf(stderr, "bench: fill: %s\n", store_errmsg(s));
			store_close(s);
			return -1;
		}
	}
	if (have < store_events)
		printf("  filled %zu events in %.1f s\n", store_events - (size_t)have, now_s() - t0);
	double tu[6], tt[6];
	struct store_filter fu = { .since_us = now - 86400LL * 1000000, .user = "user042", .limit = 1000 };
	struct store_filter ft = { .since_us = now - 7 * 86400LL * 1000000 };
	for (int r = 0; r < 6; r++) {
		struct store_rows rows;
		struct store_top_row *top;
		size_t n;
		double a = now_s();
		if (store_query(s, &fu, &rows))
			return -1;
		tu[r] = (now_s() - a) * 1000;
		*rows_user = rows.n;
		store_rows_free(&rows);
		a = now_s();
		if (store_top(s, STORE_TOP_USERS, &ft, 10, &top, &n))
			return -1;
		tt[r] = (now_s() - a) * 1000;
		store_top_free(top, n);
	}
	qsort(tu + 1, 5, sizeof(double), cmp_d);
	qsort(tt + 1, 5, sizeof(double), cmp_d);
	*q_user_ms = tu[3];
	*q_top_ms = tt[3];
	store_close(s);
	return 0;
}

static pid_t ch_pid;
static bool keep;
static void stop_ch(void)
{
	if (ch_pid > 0) {
		kill(ch_pid, SIGTERM);
		waitpid(ch_pid, NULL, 0);
		ch_pid = 0;
	}
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &l);
	close(fd);
	return ntohs(a.sin_port);
}

static int start_clickhouse(char *url, size_t len)
{
	const char *bin = "/usr/sbin/clickhouse-server";
	char chd[300], cfg[400], users[400];
	if (access(bin, X_OK))
		return -1;
	int http = free_port(), tcp = free_port();
	snprintf(chd, sizeof(chd), "%s/ch", dir);
	mkdir(chd, 0755);
	snprintf(cfg, sizeof(cfg), "%s/config.xml", chd);
	snprintf(users, sizeof(users), "%s/users.xml", chd);
	FILE *f = fopen(users, "w");
	fprintf(f, "<yandex><profiles><default></default></profiles><users><default><password></password><networks>"
		   "<ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>"
		   "<quotas><default></default></quotas></yandex>\n");
	fclose(f);
	f = fopen(cfg, "w");
	fprintf(f, "<yandex><logger><level>warning</level><log>%s/server.log</log><errorlog>%s/err.log</errorlog>"
		   "<console>0</console></logger><http_port>%d</http_port><tcp_port>%d</tcp_port>"
		   "<listen_host>127.0.0.1</listen_host><path>%s/data/</path><tmp_path>%s/tmp/</tmp_path>"
		   "<users_config>%s</users_config><default_profile>default</default_profile>"
		   "<default_database>default</default_database><mark_cache_size>268435456</mark_cache_size></yandex>\n",
		chd, chd, http, tcp, chd, chd, users);
	fclose(f);
	if ((ch_pid = fork()) == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr) || chdir(chd))
			_exit(126);
		execl(bin, bin, "--config-file", cfg, (char *)NULL);
		_exit(127);
	}
	if (!keep)
		atexit(stop_ch);
	for (int i = 0; i < 300; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (ok) {
			snprintf(url, len, "clickhouse://127.0.0.1:%d/vigil_bench", http);
			return 0;
		}
		usleep(100000);
	}
	return -1;
}

static void cleanup(void)
{
	char cmd[300];
	if (keep) {
		printf("kept %s (clickhouse pid %d)\n", dir, (int)ch_pid);
		return;
	}
	stop_ch();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

int main(int argc, char **argv)
{
	char err[512], url[400], p[300];
	bool with_ch = true, with_sqlite = true;
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--events") && i + 1 < argc)
			total_events = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--store-events") && i + 1 < argc)
			store_events = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--no-clickhouse"))
			with_ch = false;
		else if (!strcmp(argv[i], "--no-sqlite"))
			with_sqlite = false;
		else if (!strcmp(argv[i], "--keep"))
			keep = true;
		else if (!strcmp(argv[i], "--remote") && i + 4 < argc) {
			/* --remote IP PORT DIR BASE: agents bench-BASE.. (each run
			 * needs fresh ids: the collector pins the first key it saw);
			 * prints "ready", starts on a line from stdin */
			if (inet_pton(AF_INET, argv[i + 1], &host) != 1)
				return 2;
			port = atoi(argv[i + 2]);
			snprintf(dir, sizeof(dir), "%s", argv[i + 3]);
			log_set_level(LOG_ERR);
			double r = bench_remote(atoi(argv[i + 4]));
			printf("events_per_s %.0f\n", r);
			return r < 0;
		}
	}
	log_set_level(getenv("BENCH_DEBUG") ? LOG_INFO : LOG_ERR);
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/vigil-collector-bench-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	atexit(cleanup);
	snprintf(p, sizeof(p), "%s/pki", dir);
	if (enroll_pki_init(p, NULL, 0, err, sizeof(err)))
		return 1;
	for (int i = 0; i < AGENTS; i++) {
		char id[32], out[300], ca[300], cak[300], *k, *c;
		snprintf(id, sizeof(id), "bench-%d", i);
		snprintf(out, sizeof(out), "%s/%s", dir, id);
		snprintf(ca, sizeof(ca), "%s/pki/ca.crt", dir);
		snprintf(cak, sizeof(cak), "%s/pki/ca.key", dir);
		if (enroll_issue(ca, cak, NULL, id, 1, &k, &c, err, sizeof(err)) || enroll_write(out, ca, k, c, err, sizeof(err)))
			return 1;
		free(k);
		free(c);
	}
	struct { const char *name; char url[400]; } stores[2];
	int ns = 0;
	if (with_sqlite) {
		stores[ns].name = "sqlite";
		snprintf(stores[ns++].url, sizeof(stores[0].url), "sqlite:%s/ingest.db", dir);
	}
	const char *ch_env = getenv("CH_URL");
	if (with_ch && (ch_env || start_clickhouse(url, sizeof(url)) == 0)) {
		stores[ns].name = "clickhouse";
		snprintf(stores[ns++].url, sizeof(stores[0].url), "%s", ch_env ? ch_env : url);
	} else if (with_ch) {
		printf("clickhouse: not available (install clickhouse-server); skipped\n");
	}
	for (int i = 0; i < ns; i++) {
		printf("== ingest, %s: %d agents, batches of %d events, mTLS + zstd + Ed25519 + chain check\n", stores[i].name,
		       AGENTS, BATCH);
		fflush(stdout);
		double r = bench_ingest(stores[i].url);
		if (r < 0) {
			rc = 1;
			continue;
		}
		printf("  ingest %-10s %10.0f events/s committed", stores[i].name, r);
		if (!strcmp(stores[i].name, "sqlite"))
			printf("   target >= 50000: %s", r >= 50000 ? "PASS" : "MISS");
		printf("\n");
	}
	for (int i = 0; i < ns; i++) {
		char qurl[420];
		double qu, qt;
		size_t nu = 0;
		if (!strcmp(stores[i].name, "sqlite"))
			snprintf(qurl, sizeof(qurl), "sqlite:%s/query.db", dir);
		else
			snprintf(qurl, sizeof(qurl), "%s_q", stores[i].url);
		printf("== queries, %s, %zu-event store (7 days, 1000 users)\n", stores[i].name, store_events);
		fflush(stdout);
		if (bench_queries(qurl, &qu, &qt, &nu)) {
			rc = 1;
			continue;
		}
		printf("  query %-10s --since 24h --user U: %7.1f ms (%zu rows)   target < 100 ms: %s\n", stores[i].name, qu, nu,
		       qu < 100 ? "PASS" : "MISS");
		printf("  query %-10s --top users --since 7d: %7.1f ms\n", stores[i].name, qt);
	}
	return rc;
}
