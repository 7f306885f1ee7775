/* Unit and fault tests for the agent's audit pipeline (agent/audit/audit.c with
 * agent/audit/spool.c and agent/audit/ship.c): the chain over protobuf encodings, the
 * restart continuity, the full-spool gap record, the JSON tap, and
 * shipping to a test collector that speaks the real protocol (mutual TLS
 * 1.3, Hello, zstd batches, signature + chain checks, commit then ack):
 *   - collector down while 20,000 events are produced, then up: all
 *     arrive, none stored twice;
 *   - the connection cut after commit but before the ack, repeatedly: no
 *     duplicates stored, nothing missing;
 *   - a REJECTED batch: quarantined, reported by a gap event, not retried;
 *   - the agent process killed -9 while shipping (a child process of this
 *     test), restarted: nothing acknowledged lost, the chain continues
 *     across the restart with an agent_start event.
 * Waits are bounded polls (a condition or a generous deadline), never
 * timing assertions. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"
#include "check.h"
#include "evcodec.h"
#include "pki.h"
#include "audit/spool.h"

#define AGENT_ID "agent-test"
#define MAX_SEQ 200000

static char g_pki[128];   /* ca.crt, server.crt/key, agent.crt/key */

static void rm_rf(const char *d)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "rm -rf %s failed\n", d);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int make_pki(void)
{
	static int done = 0;
	char err[256], p[300];
	EVP_PKEY *cak = NULL, *sk = NULL, *ak = NULL;
	X509 *ca = NULL, *sc = NULL, *ac = NULL;
	if (done)
		return 0;
	snprintf(g_pki, sizeof(g_pki), "/tmp/vigil-test-audit-pki-%d", (int)getpid());
	rm_rf(g_pki);
	mkdir(g_pki, 0700);
	struct pki_ca_opts co = { .common_name = "test collector CA", .days = 1, .pathlen = 0 };
	const char *dns[] = { "localhost", NULL };
	struct pki_leaf_opts so = { .common_name = "localhost", .dns = dns, .server_auth = true, .days = 1 };
	struct pki_leaf_opts ao = { .common_name = AGENT_ID, .client_auth = true, .days = 1 };
	if (pki_key_generate(PKI_KEY_EC_P256, &cak, err, sizeof(err)) ||
	    pki_ca_self_signed(cak, &co, &ca, err, sizeof(err)) ||
	    pki_key_generate(PKI_KEY_EC_P256, &sk, err, sizeof(err)) ||
	    pki_leaf_issue(ca, cak, sk, &so, &sc, err, sizeof(err)) ||
	    pki_key_generate(PKI_KEY_EC_P256, &ak, err, sizeof(err)) ||
	    pki_leaf_issue(ca, cak, ak, &ao, &ac, err, sizeof(err))) {
		fprintf(stderr, "pki: %s\n", err);
		return -1;
	}
#define SAVE_CERT(name, c) snprintf(p, sizeof(p), "%s/%s", g_pki, name); \
	if (pki_certs_save(p, &c, 1, true, err, sizeof(err))) return -1
#define SAVE_KEY(name, k) snprintf(p, sizeof(p), "%s/%s", g_pki, name); \
	if (pki_key_save(p, k, true, err, sizeof(err))) return -1
	SAVE_CERT("ca.crt", ca);
	SAVE_CERT("server.crt", sc);
	SAVE_KEY("server.key", sk);
	SAVE_CERT("agent.crt", ac);
	SAVE_KEY("agent.key", ak);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(sk);
	EVP_PKEY_free(ak);
	X509_free(ca);
	X509_free(sc);
	X509_free(ac);
	done = 1;
	return 0;
}

/* ------------------------------------------------------ test collector */

struct srv {
	int lfd;
	uint16_t port;
	SSL_CTX *ctx;
	pthread_t th;
	volatile int stop;
	pthread_mutex_t lock;
	/* the "store": indexed by seq */
	uint8_t (*hash)[32];
	uint8_t (*prev)[32];
	char (*kind)[16];
	bool *have;
	uint64_t stored, duplicates, batches, acks_dropped, rejected;
	uint64_t max_seq;
	uint64_t chain_errors, sig_errors;
	/* faults */
	int drop_ack_every;       /* close after commit, before ack, on every Nth batch */
	int reject_next;          /* answer REJECTED to the next N batches (nothing stored) */
	uint8_t pub[32];
	bool pinned;
	char last_error[256];
};

static void srv_commit(struct srv *s, const struct evcodec_batch *b)
{
	for (size_t i = 0; i < b->n_events; i++) {
		const struct vigil_event *e = &b->events[i].ev;
		if (e->seq >= MAX_SEQ)
			continue;
		if (s->have[e->seq]) {
			s->duplicates++;
			continue;
		}
		s->have[e->seq] = true;
		memcpy(s->hash[e->seq], e->hash, 32);
		memcpy(s->prev[e->seq], e->prev_hash, 32);
		snprintf(s->kind[e->seq], 16, "%s", e->kind ? e->kind : "");
		s->stored++;
		if (e->seq > s->max_seq)
			s->max_seq = e->seq;
	}
}

static void srv_conn(struct srv *s, int fd)
{
	SSL *ssl = SSL_new(s->ctx);
	uint8_t *buf = NULL, pub[32];
	size_t len = 0;
	char id[128];
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1)
		goto out;
	X509 *peer = SSL_get1_peer_certificate(ssl);
	char cn[128] = "";
	if (peer)
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
	X509_free(peer);
	if (evcodec_frame_read(ssl, &buf, &len, 0) || evcodec_hello_decode(buf, len, id, sizeof(id), pub) ||
	    strcmp(id, cn) != 0) {
		snprintf(s->last_error, sizeof(s->last_error), "bad hello (cn '%s')", cn);
		goto out;
	}
	free(buf);
	buf = NULL;
	pthread_mutex_lock(&s->lock);
	if (!s->pinned) {
		memcpy(s->pub, pub, 32);
		s->pinned = true;
	} else if (memcmp(s->pub, pub, 32) != 0) {
		snprintf(s->last_error, sizeof(s->last_error), "agent key changed");
		pthread_mutex_unlock(&s->lock);
		goto out;
	}
	pthread_mutex_unlock(&s->lock);
	while (!s->stop) {
		struct evcodec_batch *b = NULL;
		char err[256];
		uint8_t *ack = NULL;
		size_t alen = 0;
		enum evcodec_ack_status st = EVCODEC_ACK_OK;
		const char *reason = "";
		uint64_t last = 0;
		if (evcodec_frame_read(ssl, &buf, &len, 0))
			break;
		int rc = evcodec_batch_parse(buf, len, &b, err, sizeof(err));
		free(buf);
		buf = NULL;
		pthread_mutex_lock(&s->lock);
		s->batches++;
		if (rc) {
			st = EVCODEC_ACK_REJECTED;
			reason = "malformed";
		} else if (evcodec_batch_verify(b, s->pub)) {
			s->sig_errors++;
			st = EVCODEC_ACK_REJECTED;
			reason = "bad signature";
		} else if (evcodec_batch_check(b, err, sizeof(err))) {
			s->chain_errors++;
			snprintf(s->last_error, sizeof(s->last_error), "%s", err);
			st = EVCODEC_ACK_REJECTED;
			reason = "chain";
		} else if (s->reject_next > 0) {
			s->reject_next--;
			s->rejected++;
			st = EVCODEC_ACK_REJECTED;
			reason = "test says no\nnewline";
		} else {
			srv_commit(s, b);
			last = b->last_seq;
			if (s->drop_ack_every && s->batches % (uint64_t)s->drop_ack_every == 0) {
				/* committed, but the ack never leaves */
				s->acks_dropped++;
				pthread_mutex_unlock(&s->lock);
				evcodec_batch_free(b);
				break;
			}
		}
		pthread_mutex_unlock(&s->lock);
		evcodec_batch_free(b);
		if (evcodec_ack_encode(st, last, reason, &ack, &alen) || evcodec_frame_write(ssl, ack, alen)) {
			free(ack);
			break;
		}
		free(ack);
	}
out:
	free(buf);
	SSL_free(ssl);
	close(fd);
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;
	while (!s->stop) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		if (poll(&p, 1, 50) != 1)
			continue;
		int fd = accept(s->lfd, NULL, NULL);
		if (fd >= 0)
			srv_conn(s, fd);
	}
	return NULL;
}

/* port 0 = pick one; otherwise reuse (collector restart on the same port). */
static int srv_start(struct srv *s, uint16_t port)
{
	char p1[300], p2[300], p3[300];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				  .sin_port = htons(port) };
	socklen_t sl = sizeof(sa);
	int one = 1;
	if (!s->have) {
		s->hash = calloc(MAX_SEQ, 32);
		s->prev = calloc(MAX_SEQ, 32);
		s->kind = calloc(MAX_SEQ, 16);
		s->have = calloc(MAX_SEQ, sizeof(bool));
		pthread_mutex_init(&s->lock, NULL);
	}
	snprintf(p1, sizeof(p1), "%s/server.crt", g_pki);
	snprintf(p2, sizeof(p2), "%s/server.key", g_pki);
	snprintf(p3, sizeof(p3), "%s/ca.crt", g_pki);
	s->ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION);
	if (SSL_CTX_use_certificate_chain_file(s->ctx, p1) != 1 ||
	    SSL_CTX_use_PrivateKey_file(s->ctx, p2, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_load_verify_locations(s->ctx, p3, NULL) != 1)
		return -1;
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(s->lfd, 16) ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &sl))
		return -1;
	s->port = ntohs(sa.sin_port);
	s->stop = 0;
	return pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(struct srv *s)
{
	s->stop = 1;
	pthread_join(s->th, NULL);
	close(s->lfd);
	SSL_CTX_free(s->ctx);
	s->ctx = NULL;
}

static void srv_free(struct srv *s)
{
	free(s->hash);
	free(s->prev);
	free(s->kind);
	free(s->have);
}

/* A port that is free now (the collector is "down" on it). */
static uint16_t free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	return ntohs(sa.sin_port);
}

/* Every seq 1..n stored, and every stored event's prev_hash is the hash of
 * seq-1 (unless a gap event covers the hole). Returns a message or NULL. */
static const char *srv_check_chain(struct srv *s, uint64_t n)
{
	static char msg[256];
	static const uint8_t zero[32];
	pthread_mutex_lock(&s->lock);
	msg[0] = 0;
	for (uint64_t q = 1; q <= n && !msg[0]; q++) {
		if (!s->have[q])
			snprintf(msg, sizeof(msg), "seq %llu never arrived (stored %llu of %llu)",
				 (unsigned long long)q, (unsigned long long)s->stored, (unsigned long long)n);
		else if (memcmp(s->prev[q], q == 1 ? zero : s->hash[q - 1], 32) != 0)
			snprintf(msg, sizeof(msg), "seq %llu does not chain to seq %llu", (unsigned long long)q,
				 (unsigned long long)q - 1);
	}
	pthread_mutex_unlock(&s->lock);
	return msg[0] ? msg : NULL;
}

/* ------------------------------------------------------------ helpers */

static char g_dir[200];

static const char *fresh_dir(const char *name)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/vigil-test-audit-%d-%s", (int)getpid(), name);
	rm_rf(g_dir);
	return g_dir;
}

static int open_audit(const char *dir, const char *log, uint16_t port, uint64_t max_bytes,
		      struct audit **a)
{
	char err[512], addr[64], ca[300], crt[300], key[300];
	snprintf(addr, sizeof(addr), "localhost:%u", port);
	snprintf(ca, sizeof(ca), "%s/ca.crt", g_pki);
	snprintf(crt, sizeof(crt), "%s/agent.crt", g_pki);
	snprintf(key, sizeof(key), "%s/agent.key", g_pki);
	struct audit_opts o = {
		.agent_id = AGENT_ID, .log_path = log, .state_dir = dir,
		.spool_max_bytes = max_bytes, .spool_fsync = SPOOL_FSYNC_BATCH,
		.collector_address = port ? addr : NULL, .collector_ca = ca, .collector_cert = crt,
		.collector_key = key, .ship_batch_events = 500, .ship_interval_ms = 50,
		.ship_backoff_max_ms = 400,
	};
	int ret = audit_open(&o, a, err, sizeof(err));
	if (ret)
		fprintf(stderr, "audit_open: %s\n", err);
	return ret;
}

static uint64_t emit_request(struct audit *a, unsigned i)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	ev.user = "alice";
	ev.uid = 1000;
	ev.gid = 1000;
	ev.pid = 4000 + (int)(i % 50);
	ev.tid = ev.pid;
	ev.comm = "python3";
	ev.exe = "/usr/bin/python3.11";
	ev.cgroup = "/user.slice/user-1000.slice/session-2.scope";
	ev.dst_ip = "104.18.7.192";
	ev.dst_port = 443;
	ev.sni = "api.openai.com";
	ev.provider = "openai";
	ev.method = "POST";
	ev.path = "/v1/chat/completions";
	ev.model = "gpt-4o-mini";
	ev.action = i % 7 ? "allow" : "redact";
	ev.rule = i % 7 ? NULL : "pii";
	if (!(i % 7)) {
		ev.findings[0].type = "EMAIL";
		ev.findings[0].count = 1 + i % 3;
		ev.n_findings = 1;
	}
	ev.status = 200;
	ev.bytes_up = 800 + i % 400;
	ev.bytes_down = 2000 + i % 1500;
	ev.prompt_tokens = 120 + i % 80;
	ev.completion_tokens = 30 + i % 200;
	ev.latency_ms = 300 + i % 900;
	return audit_emit(a, &ev);
}

static bool wait_for(struct srv *s, uint64_t want_max_seq, unsigned timeout_ms)
{
	for (unsigned t = 0; t < timeout_ms; t += 20) {
		pthread_mutex_lock(&s->lock);
		bool ok = s->max_seq >= want_max_seq;
		pthread_mutex_unlock(&s->lock);
		if (ok)
			return true;
		sleep_ms(20);
	}
	return false;
}

/* Reads every record of the spool in dir. */
static size_t read_spool(const char *dir, struct spool_batch *b)
{
	struct spool *s = NULL;
	struct spool_reader *r = NULL;
	char err[256];
	struct spool_opts o = { .dir = dir, .fsync = SPOOL_FSYNC_NEVER };
	if (spool_open(&o, &s, err, sizeof(err)) || spool_reader_new(s, &r))
		return 0;
	for (size_t before = (size_t)-1; before != b->n;) {
		before = b->n;
		spool_read(r, 100000, 64 << 20, b, NULL);
	}
	spool_reader_free(r);
	spool_close(s);
	return b->n;
}

/* ---------------------------------------------------------------- tests */

TEST(chain_over_protobuf_and_restart_continuity)
{
	const char *dir = fresh_dir("chain");
	char log[300];
	struct audit *a = NULL;
	struct spool_batch b = { 0 };
	uint8_t prev[32] = { 0 };
	snprintf(log, sizeof(log), "%s.jsonl", dir);
	unlink(log);
	CHECK(make_pki() == 0, "test PKI");
	CHECK(open_audit(dir, log, 0, 0, &a) == 0, "audit_open");
	char boot1[37];
	snprintf(boot1, sizeof(boot1), "%s", audit_boot_id(a));
	for (unsigned i = 0; i < 10; i++)
		CHECK(emit_request(a, i) == i + 1, "seq of event %u", i);
	audit_close(a);
	/* restart: the chain continues */
	CHECK(open_audit(dir, log, 0, 0, &a) == 0, "reopen");
	CHECK(strcmp(boot1, audit_boot_id(a)) != 0, "boot id reused across restarts");
	struct audit_event ev;
	audit_event_init(&ev, "agent_start");
	CHECK(audit_emit(a, &ev) == 11, "seq did not continue across restart");
	audit_close(a);

	CHECK(read_spool(dir, &b) == 11, "spool holds %zu records, want 11", b.n);
	for (size_t i = 0; i < b.n; i++) {
		struct evcodec_decoded *d = NULL;
		uint8_t h[32];
		CHECK(evcodec_event_decode(b.data + b.off[i], b.len[i], &d) == 0, "record %zu decode", i);
		CHECK(d->ev.seq == i + 1 && d->has_hash, "record %zu: seq %llu", i,
		      (unsigned long long)d->ev.seq);
		CHECK(memcmp(d->ev.prev_hash, prev, 32) == 0, "seq %llu: prev_hash is not the previous hash",
		      (unsigned long long)d->ev.seq);
		CHECK(evcodec_hash_encoded(d->ev.prev_hash, d->enc, d->enc_len, h) == 0 &&
		      memcmp(h, d->ev.hash, 32) == 0, "seq %llu: hash is not SHA-256(prev || E)",
		      (unsigned long long)d->ev.seq);
		CHECK(strcmp(d->ev.agent_id, AGENT_ID) == 0 && d->ev.boot_id && d->ev.event_id &&
		      d->ev.time_us > 0, "seq %llu: stamps missing", (unsigned long long)d->ev.seq);
		CHECK(strcmp(d->ev.boot_id, boot1) == 0 || i == 10, "boot id changed within a run");
		CHECK(i != 10 || strcmp(d->ev.kind, "agent_start") == 0, "kind of seq 11");
		if (i == 7)
			CHECK(d->ev.n_findings == 1 && strcmp(d->ev.findings[0].type, "EMAIL") == 0 &&
			      d->ev.findings[0].count == 2, "findings of seq 8");
		memcpy(prev, d->ev.hash, 32);
		evcodec_decoded_free(d);
	}
	spool_batch_free(&b);

	/* The JSON tap: 11 lines, same seq and hash as the spool, with boot_id. */
	FILE *f = fopen(log, "r");
	char line[4096], hx[65];
	unsigned lines = 0;
	CHECK(f != NULL, "no audit_log");
	while (fgets(line, sizeof(line), f)) {
		lines++;
		char want[32];
		snprintf(want, sizeof(want), "\"seq\":%u,", lines);
		CHECK(strstr(line, want) && strstr(line, "\"boot_id\":\"") && strstr(line, "\"hash\":\""),
		      "JSON line %u lacks seq/boot_id/hash: %s", lines, line);
	}
	fclose(f);
	CHECK(lines == 11, "%u JSON lines, want 11", lines);
	evcodec_hex(prev, 32, hx);
	CHECK(strstr(line, hx) != NULL, "last JSON line's hash differs from the spool's");
	/* the signing key exists, owner-only */
	char kp[300];
	struct stat st;
	snprintf(kp, sizeof(kp), "%s/agent.ed25519.key", dir);
	CHECK(stat(kp, &st) == 0 && (st.st_mode & 077) == 0, "signing key missing or readable by others");
	unlink(log);
	rm_rf(dir);
}

/* Every field the code that saw an exchange fills (origin EV in
 * common/evfields.h) reaches the signed, spooled event unchanged. */
#define AFILL_STR(f) ev.f = #f;
#define AFILL_U32(f) ev.f = 7;
#define AFILL_U64(f) ev.f = 7;
#define AFILL_I32(f) ev.f = 7;
#define AFILL_I64(f) ev.f = 7;
#define AFILL_S64(f) ev.f = 7;
#define AFILL_BOOL(f) ev.f = true;
#define AFILL_DOUBLE(f) ev.f = 0.5;
#define AFILL_FINDINGS(f) ev.f[0] = (struct audit_finding){ "EMAIL", 2 }, ev.n_##f = 1;
#define AFILL_EV(kind, f) AFILL_##kind(f)
#define AFILL_STAMP(kind, f)
#define AFILL(f, num, kind, json, store, origin) AFILL_##origin(kind, f)
#define ASAME_STR(f) if (!o->f || strcmp(o->f, ev.f)) bad = #f;
#define ASAME_NUM(f) if (o->f != ev.f) bad = #f;
#define ASAME_U32 ASAME_NUM
#define ASAME_U64 ASAME_NUM
#define ASAME_I32 ASAME_NUM
#define ASAME_I64 ASAME_NUM
#define ASAME_S64 ASAME_NUM
#define ASAME_BOOL ASAME_NUM
#define ASAME_DOUBLE ASAME_NUM
#define ASAME_FINDINGS(f) \
	if (o->n_##f != 1 || !o->f[0].type || strcmp(o->f[0].type, "EMAIL") || o->f[0].count != 2) bad = #f;
#define ASAME_EV(kind, f) ASAME_##kind(f)
#define ASAME_STAMP(kind, f)
#define ASAME(f, num, kind, json, store, origin) ASAME_##origin(kind, f)

TEST(every_event_field_reaches_the_spool)
{
	const char *dir = fresh_dir("fields");
	struct audit *a = NULL;
	struct spool_batch b = { 0 };
	struct evcodec_decoded *d = NULL;
	struct audit_event ev;
	const char *bad = NULL;
	CHECK(make_pki() == 0, "test PKI");
	CHECK(open_audit(dir, NULL, 0, 0, &a) == 0, "audit_open");
	audit_event_init(&ev, "request");
	EVFIELDS(AFILL)
	CHECK(audit_emit(a, &ev) == 1, "emit");
	audit_close(a);
	CHECK(read_spool(dir, &b) == 1, "spool holds %zu records, want 1", b.n);
	CHECK(evcodec_event_decode(b.data + b.off[0], b.len[0], &d) == 0, "decode");
	const struct vigil_event *o = &d->ev;
	EVFIELDS(ASAME)
	evcodec_decoded_free(d);
	spool_batch_free(&b);
	CHECK(bad == NULL, "field %s of the agent's event did not reach the spooled event", bad);
}

TEST(full_spool_records_signed_gap)
{
	const char *dir = fresh_dir("full");
	struct audit *a = NULL;
	struct spool_batch b = { 0 };
	CHECK(make_pki() == 0, "test PKI");
	CHECK(open_audit(dir, NULL, 0, 64 * 1024, &a) == 0, "audit_open");
	for (unsigned i = 0; i < 3000; i++)
		CHECK(emit_request(a, i) != 0, "emit %u", i);
	struct audit_stats st;
	audit_get_stats(a, &st);
	CHECK(st.gap_events > 0 && st.spool_dropped > 0, "a full spool recorded no gap (dropped %llu)",
	      (unsigned long long)st.spool_dropped);
	CHECK(st.spool_bytes <= 64 * 1024, "spool holds %llu bytes", (unsigned long long)st.spool_bytes);
	audit_close(a);
	/* Every seq missing from the spool is covered by a gap event in it. */
	CHECK(read_spool(dir, &b) > 0, "empty spool");
	static bool covered[8000];
	memset(covered, 0, sizeof(covered));
	uint64_t first = 0, last = 0, gaps = 0;
	for (size_t i = 0; i < b.n; i++) {
		struct evcodec_decoded *d = NULL;
		CHECK(evcodec_event_decode(b.data + b.off[i], b.len[i], &d) == 0, "decode");
		if (!first)
			first = d->ev.seq;
		last = d->ev.seq;
		covered[d->ev.seq] = true;
		if (strcmp(d->ev.kind, "gap") == 0) {
			gaps++;
			CHECK(d->ev.gap_count == d->ev.gap_last_seq - d->ev.gap_first_seq + 1 &&
			      d->ev.reason && strstr(d->ev.reason, "full"),
			      "gap event %llu: count %llu for %llu..%llu, reason %s",
			      (unsigned long long)d->ev.seq, (unsigned long long)d->ev.gap_count,
			      (unsigned long long)d->ev.gap_first_seq, (unsigned long long)d->ev.gap_last_seq,
			      d->ev.reason ? d->ev.reason : "(none)");
			for (uint64_t q = d->ev.gap_first_seq; q <= d->ev.gap_last_seq && q < 8000; q++)
				covered[q] = true;
		}
		evcodec_decoded_free(d);
	}
	spool_batch_free(&b);
	CHECK(gaps > 0, "no gap event in the spool");
	/* gap events for early drops may themselves have been dropped later,
	 * but then a later gap event covers them: every seq up to the last
	 * one is either present or covered */
	for (uint64_t q = first; q <= last; q++)
		CHECK(covered[q], "seq %llu neither in the spool nor covered by a gap event",
		      (unsigned long long)q);
	rm_rf(dir);
}

/* A disk full of someone else's data with nothing of the spool left to
 * drop: every refused event is counted into ONE gap record, written once
 * the spool takes events again (the JSON log gets that one gap line, not
 * one per failed write), and spool + gap cover every seq exactly once. */
TEST(refused_writes_become_one_exact_gap)
{
	const char *dir = fresh_dir("refused");
	char log[300], filler[300];
	struct audit *a = NULL;
	struct spool_batch b = { 0 };
	static uint8_t zero[4096];
	if (geteuid() != 0) {
		printf("SKIP refused_writes_become_one_exact_gap: needs root for a tmpfs\n");
		return;
	}
	CHECK(make_pki() == 0, "test PKI");
	snprintf(log, sizeof(log), "%s.jsonl", dir);
	unlink(log);
	CHECK(mkdir(dir, 0700) == 0, "mkdir");
	CHECK(mount("vigil-test", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=512k") == 0, "mount: %s",
	      strerror(errno));
	int ret = open_audit(dir, log, 0, 0, &a);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	int fd = ret ? -1 : open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	while (fd >= 0 && write(fd, zero, sizeof(zero)) > 0)
		;
	while (fd >= 0 && write(fd, zero, 1) > 0)
		;
	if (fd >= 0)
		close(fd);
	for (unsigned i = 0; !ret && i < 300; i++)
		emit_request(a, i);
	unlink(filler);
	for (unsigned i = 0; !ret && i < 20; i++)
		emit_request(a, i);
	audit_close(a);
	size_t n = ret ? 0 : read_spool(dir, &b);
	umount2(dir, MNT_DETACH);
	rm_rf(dir);
	CHECK(ret == 0, "audit_open");
	static int cover[1000];
	memset(cover, 0, sizeof(cover));
	unsigned gaps = 0;
	uint64_t last = 0;
	for (size_t i = 0; i < n; i++) {
		struct evcodec_decoded *d = NULL;
		CHECK(evcodec_event_decode(b.data + b.off[i], b.len[i], &d) == 0, "decode");
		CHECK(d->ev.seq < 1000, "seq %llu", (unsigned long long)d->ev.seq);
		cover[d->ev.seq]++;
		last = d->ev.seq;
		if (!strcmp(d->ev.kind, "gap")) {
			gaps++;
			CHECK(d->ev.gap_first_seq == 1 && d->ev.gap_last_seq == 300 && d->ev.gap_count == 300,
			      "gap %llu..%llu count %llu, want 1..300 (300)", (unsigned long long)d->ev.gap_first_seq,
			      (unsigned long long)d->ev.gap_last_seq, (unsigned long long)d->ev.gap_count);
			for (uint64_t q = d->ev.gap_first_seq; q <= d->ev.gap_last_seq && q < 1000; q++)
				cover[q]++;
		}
		evcodec_decoded_free(d);
	}
	spool_batch_free(&b);
	CHECK(gaps == 1, "%u gap records for one contiguous loss", gaps);
	CHECK(last == 321, "last seq %llu, want 321 (300 refused, 20 kept, 1 gap)", (unsigned long long)last);
	for (uint64_t q = 1; q <= last; q++)
		CHECK(cover[q] == 1, "seq %llu covered %d times", (unsigned long long)q, cover[q]);
	FILE *f = fopen(log, "r");
	char line[4096];
	unsigned gap_lines = 0, lines = 0;
	while (f && fgets(line, sizeof(line), f)) {
		lines++;
		gap_lines += strstr(line, "\"kind\":\"gap\"") != NULL;
	}
	if (f)
		fclose(f);
	unlink(log);
	CHECK(gap_lines == 1 && lines == 321, "JSON log: %u gap lines, %u lines (want 1, 321)", gap_lines, lines);
}

TEST(collector_down_then_up_all_arrive_once)
{
	const char *dir = fresh_dir("down");
	struct audit *a = NULL;
	struct srv s = { 0 };
	const char *m;
	CHECK(make_pki() == 0, "test PKI");
	uint16_t port = free_port();
	CHECK(open_audit(dir, NULL, port, 0, &a) == 0, "audit_open");
	for (unsigned i = 0; i < 20000; i++)
		CHECK(emit_request(a, i) == i + 1, "emit %u", i);
	sleep_ms(300);   /* the shipper fails a few times against nothing */
	CHECK(srv_start(&s, port) == 0, "start the collector on port %u", port);
	CHECK(wait_for(&s, 20000, 60000), "only %llu of 20000 events arrived (last error: %s)",
	      (unsigned long long)s.stored, s.last_error);
	audit_close(a);
	srv_stop(&s);
	CHECK((m = srv_check_chain(&s, 20000)) == NULL, "%s", m);
	CHECK(s.stored == 20000, "stored %llu events, want 20000 (duplicates ignored: %llu)",
	      (unsigned long long)s.stored, (unsigned long long)s.duplicates);
	CHECK(s.sig_errors == 0 && s.chain_errors == 0, "collector saw %llu bad signatures, %llu bad chains",
	      (unsigned long long)s.sig_errors, (unsigned long long)s.chain_errors);
	/* acked events left the spool (only the active segment may remain) */
	struct spool_batch b = { 0 };
	CHECK(read_spool(dir, &b) == 0, "%zu acked events still pending in the spool", b.n);
	spool_batch_free(&b);
	srv_free(&s);
	rm_rf(dir);
}

TEST(ack_lost_after_commit_no_duplicates)
{
	const char *dir = fresh_dir("ackcut");
	struct audit *a = NULL;
	struct srv s = { 0 };
	const char *m;
	CHECK(make_pki() == 0, "test PKI");
	s.drop_ack_every = 2;   /* every second batch: committed, connection cut, no ack */
	CHECK(srv_start(&s, 0) == 0, "start the collector");
	CHECK(open_audit(dir, NULL, s.port, 0, &a) == 0, "audit_open");
	for (unsigned i = 0; i < 5000; i++)
		CHECK(emit_request(a, i) == i + 1, "emit %u", i);
	CHECK(wait_for(&s, 5000, 60000), "only %llu of 5000 events arrived", (unsigned long long)s.stored);
	/* the last batch's ack may have been one of the dropped: let it settle */
	for (int i = 0; i < 100; i++) {
		struct audit_stats st;
		audit_get_stats(a, &st);
		if (st.spool_acked_seq >= 5000)
			break;
		sleep_ms(50);
	}
	audit_close(a);
	srv_stop(&s);
	CHECK(s.acks_dropped >= 3, "the fault was injected only %llu times", (unsigned long long)s.acks_dropped);
	CHECK(s.duplicates > 0, "no batch was resent after a lost ack");
	CHECK(s.stored == 5000, "stored %llu, want 5000", (unsigned long long)s.stored);
	CHECK((m = srv_check_chain(&s, 5000)) == NULL, "%s", m);
	srv_free(&s);
	rm_rf(dir);
}

TEST(rejected_batch_quarantined_and_reported)
{
	const char *dir = fresh_dir("reject");
	struct audit *a = NULL;
	struct srv s = { 0 };
	CHECK(make_pki() == 0, "test PKI");
	s.reject_next = 1;
	CHECK(srv_start(&s, 0) == 0, "start the collector");
	CHECK(open_audit(dir, NULL, s.port, 0, &a) == 0, "audit_open");
	for (unsigned i = 0; i < 100; i++)
		CHECK(emit_request(a, i) == i + 1, "emit %u", i);
	/* the rejected batch is not retried; a gap event reports it and
	 * arrives itself */
	bool gap_seen = false;
	for (int t = 0; t < 3000 && !gap_seen; t++) {
		pthread_mutex_lock(&s.lock);
		for (uint64_t q = 1; q <= s.max_seq && q < MAX_SEQ; q++)
			if (s.have[q] && strcmp(s.kind[q], "gap") == 0)
				gap_seen = true;
		pthread_mutex_unlock(&s.lock);
		if (!gap_seen)
			sleep_ms(20);
	}
	audit_close(a);
	srv_stop(&s);
	CHECK(gap_seen, "no gap event reached the collector after a rejected batch");
	CHECK(s.rejected == 1, "rejected %llu batches", (unsigned long long)s.rejected);
	CHECK(!s.have[1], "the rejected batch was resent");
	char q[300];
	snprintf(q, sizeof(q), "%s/quarantine", dir);
	DIR *d = opendir(q);
	int files = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		files += strstr(de->d_name, ".seg") != NULL;
	if (d)
		closedir(d);
	CHECK(files >= 1, "no segment in quarantine");
	srv_free(&s);
	rm_rf(dir);
}

/* ------------------------------------------------- kill -9 while shipping */

/* Child mode: this binary re-executed with VIGIL_AUDIT_CHILD=dir:port:n
 * emits agent_start then n events (slowly enough to be mid-shipping when
 * killed), then agent_stop, and exits. */
__attribute__((constructor)) static void child_mode(void)
{
	const char *spec = getenv("VIGIL_AUDIT_CHILD");
	char dir[200];
	unsigned port, n;
	struct audit *a = NULL;
	struct audit_event ev;
	/* as in vigil-agent: a peer closing mid-write is an error, not a signal */
	signal(SIGPIPE, SIG_IGN);
	if (!spec || sscanf(spec, "%199[^:]:%u:%u", dir, &port, &n) != 3)
		return;
	snprintf(g_pki, sizeof(g_pki), "%s", getenv("VIGIL_AUDIT_PKI"));
	if (open_audit(dir, NULL, (uint16_t)port, 0, &a))
		_exit(2);
	audit_event_init(&ev, "agent_start");
	audit_emit(a, &ev);
	for (unsigned i = 0; i < n; i++) {
		emit_request(a, i);
		if (i % 100 == 0)
			sleep_ms(5);
	}
	audit_event_init(&ev, "agent_stop");
	audit_emit(a, &ev);
	audit_close(a);
	_exit(0);
}

static pid_t spawn_child(const char *dir, uint16_t port, unsigned n)
{
	char spec[300];
	pid_t pid;
	snprintf(spec, sizeof(spec), "%s:%u:%u", dir, port, n);
	pid = fork();
	if (pid == 0) {
		setenv("VIGIL_AUDIT_CHILD", spec, 1);
		setenv("VIGIL_AUDIT_PKI", g_pki, 1);
		execl("/proc/self/exe", "test_audit", "no_such_test", (char *)NULL);
		_exit(3);
	}
	return pid;
}

TEST(kill9_while_shipping_loses_nothing_acked)
{
	const char *dir = fresh_dir("kill9");
	struct srv s = { 0 };
	int status;
	const char *m;
	CHECK(make_pki() == 0, "test PKI");
	CHECK(srv_start(&s, 0) == 0, "start the collector");
	pid_t pid = spawn_child(dir, s.port, 20000);
	CHECK(pid > 0, "fork");
	/* kill it once some batches were acknowledged, while it still emits */
	CHECK(wait_for(&s, 2000, 30000), "the child shipped nothing");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status), "the child ended before the kill (status %d)", status);
	pthread_mutex_lock(&s.lock);
	uint64_t acked_before = s.max_seq;
	pthread_mutex_unlock(&s.lock);
	/* restart: a short run that ends cleanly */
	pid = spawn_child(dir, s.port, 100);
	CHECK(pid > 0, "fork");
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "restarted child failed (status %d)", status);
	/* everything up to the final agent_stop arrives, chained */
	pthread_mutex_lock(&s.lock);
	uint64_t last = s.max_seq;
	pthread_mutex_unlock(&s.lock);
	CHECK(last > acked_before && strcmp(s.kind[last], "agent_stop") == 0,
	      "last stored event is seq %llu kind '%s'", (unsigned long long)last, s.kind[last]);
	srv_stop(&s);
	CHECK((m = srv_check_chain(&s, last)) == NULL, "%s", m);
	/* the restart's agent_start sits in the chain right after the last
	 * event the killed process spooled */
	uint64_t starts = 0, second_start = 0;
	for (uint64_t q = 1; q <= last; q++)
		if (strcmp(s.kind[q], "agent_start") == 0) {
			starts++;
			second_start = q;
		}
	CHECK(starts == 2 && second_start > acked_before,
	      "%llu agent_start events; the restart's is seq %llu (acked before kill: %llu)",
	      (unsigned long long)starts, (unsigned long long)second_start,
	      (unsigned long long)acked_before);
	CHECK(s.duplicates == 0 || s.stored == last, "stored %llu of %llu", (unsigned long long)s.stored,
	      (unsigned long long)last);
	srv_free(&s);
	rm_rf(dir);
	rm_rf(g_pki);
}
