/* ingest: the collector's agent-facing server, in process, driven by real
 * TLS clients speaking the audit protocol (common/evcodec). Asserts what an
 * operator relies on: authentic batches are committed before the ack and
 * deduplicated; a client without a certificate from the enrollment CA,
 * with another agent's id, replaying a captured batch with new content,
 * mis-signing, sending a zstd bomb or an oversized frame is refused with a
 * reason, counted, and recorded as a security event; revoked ids and
 * changed keys are refused; and chain verification names a deleted or
 * altered row. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include <zstd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "check.h"
#include "chain.h"
#include "enroll.h"
#include "evcodec.h"
#include "ingest.h"
#include "log.h"
#include "pki.h"
#include "store.h"

static char dir[256], dbpath[300], url[320];
static struct store *ist, *qst;     /* ingest's handle, the test's handle */
static struct ingest *ing;
static volatile sig_atomic_t stop;
static pthread_t thr;
static int port;
static EVP_PKEY *key_a, *key_b, *key_x;
static SSL_CTX *sctx;
static uint8_t *captured;     /* a batch of agent-a as sent */
static size_t captured_len;

static void *loop(void *arg) { (void)arg; ingest_run(ing, &stop); OPENSSL_thread_stop(); return NULL; }

static void teardown(void)
{
	stop = 1;
	if (ing) {
		pthread_join(thr, NULL);
		ingest_free(ing);
	}
	store_close(ist);
	store_close(qst);
	SSL_CTX_free(sctx);
	EVP_PKEY_free(key_a);
	EVP_PKEY_free(key_b);
	EVP_PKEY_free(key_x);
	free(captured);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void path(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", dir, name); }

static int enroll_to(const char *id, const char *sub)
{
	char err[256], cacrt[300], cakey[300], out[300], *k, *c;
	path(cacrt, sizeof(cacrt), "pki/ca.crt");
	path(cakey, sizeof(cakey), "pki/ca.key");
	path(out, sizeof(out), sub);
	if (enroll_issue(cacrt, cakey, NULL, id, 1, &k, &c, err, sizeof(err)))
		return -1;
	int rc = enroll_write(out, cacrt, k, c, err, sizeof(err));
	free(k);
	free(c);
	return rc;
}

static void setup(void)
{
	char err[512], crt[300], key[300], ca[300];
	static bool done;
	if (done)
		return;
	done = true;
	log_set_level(LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/vigil-test-ingest-XXXXXX");
	if (!mkdtemp(dir))
		exit(1);
	/* OpenSSL's own atexit cleanup must run after ours (LIFO). */
	OPENSSL_init_ssl(0, NULL);
	atexit(teardown);
	path(crt, sizeof(crt), "pki");
	if (enroll_pki_init(crt, NULL, 0, err, sizeof(err))) {
		fprintf(stderr, "pki init: %s\n", err);
		exit(1);
	}
	path(crt, sizeof(crt), "rogue");
	if (enroll_pki_init(crt, NULL, 0, err, sizeof(err)) || enroll_to("agent-a", "a") || enroll_to("agent-b", "b") ||
	    enroll_to("agent-r", "r") || enroll_to("agent-k", "k")) {
		fprintf(stderr, "enroll failed\n");
		exit(1);
	}
	/* A certificate for agent-a from a CA the collector does not trust. */
	{
		char rc[300], rk[300], out[300], *k, *c;
		path(rc, sizeof(rc), "rogue/ca.crt");
		path(rk, sizeof(rk), "rogue/ca.key");
		path(out, sizeof(out), "rogue-a");
		if (enroll_issue(rc, rk, NULL, "agent-a", 1, &k, &c, err, sizeof(err)) ||
		    enroll_write(out, rc, k, c, err, sizeof(err))) {
			fprintf(stderr, "rogue: %s\n", err);
			exit(1);
		}
		free(k);
		free(c);
	}
	path(dbpath, sizeof(dbpath), "c.db");
	snprintf(url, sizeof(url), "sqlite:%s", dbpath);
	if (store_open(url, &ist, err, sizeof(err)) || store_open(url, &qst, err, sizeof(err))) {
		fprintf(stderr, "store: %s\n", err);
		exit(1);
	}
	path(crt, sizeof(crt), "pki/server.crt");
	path(key, sizeof(key), "pki/server.key");
	path(ca, sizeof(ca), "pki/ca.crt");
	SSL_CTX *ctx = sctx = ingest_server_ctx(crt, key, ca, true, err, sizeof(err));
	struct ingest_opts o = { .listen = "127.0.0.1:0", .ctx = ctx, .store = ist, .store_url = url, .max_conns = 64, .host = "test" };
	if (!ctx || ingest_new(&o, &ing, err, sizeof(err))) {
		fprintf(stderr, "ingest: %s\n", err);
		exit(1);
	}
	port = ingest_port(ing);
	pthread_create(&thr, NULL, loop, NULL);
	if (pki_key_generate(PKI_KEY_ED25519, &key_a, err, sizeof(err)) ||
	    pki_key_generate(PKI_KEY_ED25519, &key_b, err, sizeof(err)) ||
	    pki_key_generate(PKI_KEY_ED25519, &key_x, err, sizeof(err)))
		exit(1);
}

struct client {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
};

static void client_close(struct client *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* sub: directory with agent.crt/agent.key, or NULL for no client cert. */
static int client_open(struct client *c, const char *sub)
{
	char crt[300], key[300], ca[300];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	c->ctx = SSL_CTX_new(TLS_client_method());
	path(ca, sizeof(ca), "pki/ca.crt");
	SSL_CTX_load_verify_locations(c->ctx, ca, NULL);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	if (sub) {
		snprintf(crt, sizeof(crt), "%s/%s/agent.crt", dir, sub);
		snprintf(key, sizeof(key), "%s/%s/agent.key", dir, sub);
		if (SSL_CTX_use_certificate_file(c->ctx, crt, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)
			return -2;
	}
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set1_host(c->ssl, "127.0.0.1");
	X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
	if (SSL_connect(c->ssl) != 1) {
		ERR_clear_error();
		return -3;
	}
	return 0;
}

static int send_hello(struct client *c, const char *id, EVP_PKEY *k)
{
	uint8_t pub[32], *buf;
	size_t len;
	if (evcodec_key_public(k, pub) || evcodec_hello_encode(id, pub, &buf, &len))
		return -1;
	int rc = evcodec_frame_write(c->ssl, buf, len);
	free(buf);
	return rc;
}

/* Reads one Ack: returns its status, or -1 if the connection ended first. */
static int read_ack(struct client *c, uint64_t *seq, char *reason, size_t rl)
{
	uint8_t *buf;
	size_t len;
	enum evcodec_ack_status st;
	uint64_t seq0;
	char r0[8];
	if (!seq)
		seq = &seq0;
	if (!reason) {
		reason = r0;
		rl = sizeof(r0);
	}
	if (evcodec_frame_read(c->ssl, &buf, &len, 4096)) {
		ERR_clear_error();
		return -1;
	}
	int rc = evcodec_ack_decode(buf, len, &st, seq, reason, rl);
	free(buf);
	return rc ? -1 : (int)st;
}

static int64_t time_shift_us; /* added to every event's time */

/* n chained events seq0.. for agent, continuing from prev (updated). */
static int make_batch(const char *agent, const char *boot, uint64_t seq0, size_t n, uint8_t prev[32],
		      EVP_PKEY *k, const char *user, uint8_t **out, size_t *outlen)
{
	uint8_t *encs[64];
	size_t lens[64];
	static const struct vigil_finding f[] = { { "EMAIL", 2 } };
	for (size_t i = 0; i < n; i++) {
		struct vigil_event ev;
		char id[40];
		vigil_event_init(&ev, "request");
		snprintf(id, sizeof(id), "e-%s-%llu", agent, (unsigned long long)(seq0 + i));
		ev.time_us = (int64_t)time(NULL) * 1000000 - 1000000 + (int64_t)i + time_shift_us;
		ev.event_id = id;
		ev.agent_id = agent;
		ev.boot_id = boot;
		ev.seq = seq0 + i;
		ev.host = "ws-1";
		ev.user = user;
		ev.uid = 1000;
		ev.exe = "/usr/bin/python3";
		ev.provider = "openai";
		ev.model = "gpt-4o";
		ev.action = i % 2 ? "allow" : "block";
		ev.findings = f;
		ev.n_findings = i % 2 ? 0 : 1;
		memcpy(ev.prev_hash, prev, 32);
		if (evcodec_event_hash(prev, &ev, ev.hash))
			return -1;
		memcpy(prev, ev.hash, 32);
		size_t l = evcodec_event_encode(&ev, true, NULL, 0);
		encs[i] = malloc(l);
		lens[i] = evcodec_event_encode(&ev, true, encs[i], l);
	}
	struct evcodec_batch_hdr h = { .agent_id = agent, .boot_id = boot, .first_seq = seq0, .last_seq = seq0 + n - 1 };
	int rc = evcodec_batch_build(&h, (const uint8_t *const *)encs, lens, n, k, 0, out, outlen, NULL);
	for (size_t i = 0; i < n; i++)
		free(encs[i]);
	return rc;
}

static size_t count_where(const char *agent, const char *kind)
{
	struct store_filter f = { .agent_id = agent, .kind = kind };
	uint64_t n = 0;
	store_count(qst, &f, &n);
	return (size_t)n;
}

static uint8_t chain_a[32];   /* agent-a's chain head as the tests advance it */
static uint64_t next_a = 1;


TEST(authentic_batch_committed_then_acked)
{
	struct client c;
	uint8_t *b;
	size_t bl;
	uint64_t seq = 0;
	char reason[256] = "";
	setup();
	CHECK(client_open(&c, "a") == 0, "agent-a with an enrolled certificate could not connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello not sent");
	CHECK(make_batch("agent-a", "boot-1", next_a, 5, chain_a, key_a, "alice", &b, &bl) == 0, "build");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send");
	int st = read_ack(&c, &seq, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_OK && seq == next_a + 4, "ack %d seq %llu (%s), want OK 5", st, (unsigned long long)seq, reason);
	/* Acked means committed: visible through another handle right now. */
	CHECK(count_where("agent-a", NULL) == 5, "after the ack the store has %zu events, want 5", count_where("agent-a", NULL));
	struct store_filter f = { .user = "alice", .finding = "EMAIL", .action = "block" };
	uint64_t n = 0;
	CHECK(store_count(qst, &f, &n) == 0 && n == 3, "alice/EMAIL/block: %llu, want 3", (unsigned long long)n);
	/* The same batch again (ack lost): OK, nothing stored twice. */
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "resend");
	st = read_ack(&c, &seq, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_OK, "resend acked %d (%s), want OK", st, reason);
	CHECK(count_where("agent-a", NULL) == 5, "a resend stored duplicates: %zu", count_where("agent-a", NULL));
	captured = b;
	captured_len = bl;
	next_a += 5;
	/* A second batch continues the chain. */
	CHECK(make_batch("agent-a", "boot-1", next_a, 3, chain_a, key_a, "bob", &b, &bl) == 0, "build 2");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send 2");
	CHECK(read_ack(&c, &seq, reason, sizeof(reason)) == EVCODEC_ACK_OK && seq == 8, "second batch: %s", reason);
	next_a += 3;
	free(b);
	client_close(&c);
}

static size_t rejections(const char *rule)
{
	struct store_filter f = { .kind = "ingest_rejected" };
	struct store_rows r;
	size_t n = 0;
	if (store_query(qst, &f, &r))
		return 0;
	for (size_t i = 0; i < r.n; i++)
		if (!rule || !strcmp(r.ev[i].rule, rule))
			n++;
	store_rows_free(&r);
	return n;
}

TEST(no_client_certificate_refused)
{
	struct client c;
	setup();
	size_t before = count_where(NULL, NULL);
	int rc = client_open(&c, NULL);
	/* TLS 1.3: the server's refusal can arrive after the client's handshake
	 * returned; either way no Hello gets through. */
	if (rc == 0) {
		send_hello(&c, "agent-a", key_a);
		CHECK(read_ack(&c, NULL, NULL, 0) == -1, "a client without a certificate got an answer");
	}
	client_close(&c);
	CHECK(count_where(NULL, NULL) == before, "something was stored for a client without a certificate");
}

TEST(certificate_from_another_ca_refused)
{
	struct client c;
	uint8_t *b;
	size_t bl;
	uint8_t prev[32];
	setup();
	memcpy(prev, chain_a, 32);
	int rc = client_open(&c, "rogue-a");
	if (rc == 0) {
		send_hello(&c, "agent-a", key_a);
		CHECK(make_batch("agent-a", "boot-1", next_a, 1, prev, key_a, "mallory", &b, &bl) == 0, "build");
		evcodec_frame_write(c.ssl, b, bl);
		free(b);
		CHECK(read_ack(&c, NULL, NULL, 0) == -1, "a certificate from an untrusted CA was answered");
	}
	client_close(&c);
	struct store_filter f = { .user = "mallory" };
	uint64_t n = 1;
	CHECK(store_count(qst, &f, &n) == 0 && n == 0, "the rogue batch was stored");
}

TEST(hello_with_another_agents_id_refused)
{
	struct client c;
	char reason[256] = "";
	setup();
	size_t before = rejections("agent_mismatch");
	CHECK(client_open(&c, "b") == 0, "agent-b could not connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "agent_mismatch"), "Hello for agent-a on agent-b's cert: %d %s",
	      st, reason);
	client_close(&c);
	CHECK(rejections("agent_mismatch") == before + 1, "the refusal was not recorded as a security event");
}

TEST(captured_batch_replayed_by_another_agent_refused)
{
	struct client c;
	char reason[256] = "";
	setup();
	CHECK(captured, "needs authentic_batch_committed_then_acked first");
	CHECK(client_open(&c, "b") == 0, "agent-b could not connect");
	CHECK(send_hello(&c, "agent-b", key_b) == 0, "hello");
	CHECK(evcodec_frame_write(c.ssl, captured, captured_len) == 0, "send");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "agent_mismatch"),
	      "agent-a's captured batch on agent-b's connection: %d %s", st, reason);
	client_close(&c);
}

TEST(replay_with_altered_content_refused)
{
	struct client c;
	char reason[256] = "";
	uint8_t *b, zero[32] = { 0 };
	size_t bl;
	setup();
	CHECK(client_open(&c, "a") == 0, "connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	/* Properly signed and chained, but seqs 1..5 already hold other events. */
	CHECK(make_batch("agent-a", "boot-1", 1, 5, zero, key_a, "eve", &b, &bl) == 0, "build");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send");
	free(b);
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "replay"), "altered replay: %d %s", st, reason);
	struct store_filter f = { .user = "eve" };
	uint64_t n = 1;
	CHECK(store_count(qst, &f, &n) == 0 && n == 0, "the altered replay was stored");
	client_close(&c);
}

TEST(mis_signed_batch_refused)
{
	struct client c;
	char reason[256] = "";
	uint8_t *b, prev[32];
	size_t bl;
	setup();
	memcpy(prev, chain_a, 32);
	CHECK(client_open(&c, "a") == 0, "connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	CHECK(make_batch("agent-a", "boot-1", next_a, 2, prev, key_x, "trent", &b, &bl) == 0, "build");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send");
	free(b);
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "bad_signature"), "foreign signature: %d %s", st, reason);
	/* The connection stays usable for the next (good) batch. */
	memcpy(prev, chain_a, 32);
	CHECK(make_batch("agent-a", "boot-1", next_a, 2, prev, key_a, "carol", &b, &bl) == 0, "build");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send good");
	free(b);
	st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_OK, "good batch after a rejected one: %d %s", st, reason);
	memcpy(chain_a, prev, 32);
	next_a += 2;
	client_close(&c);
}

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

TEST(zstd_bomb_rejected_without_exhausting_memory)
{
	struct client c;
	char reason[256] = "";
	setup();
	/* 2 GiB of zeros, streamed (no content size in the frame header). */
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t cap = 8u << 20, pos = 0;
	uint8_t *out = malloc(cap), *zeros = calloc(1, 1 << 20);
	CHECK(z && out && zeros, "alloc");
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 19);
	for (int i = 0; i < 2048; i++) {
		ZSTD_inBuffer in = { zeros, 1 << 20, 0 };
		ZSTD_outBuffer ob = { out, cap, pos };
		while (in.pos < in.size)
			ZSTD_compressStream2(z, &ob, &in, ZSTD_e_continue);
		pos = ob.pos;
	}
	ZSTD_outBuffer ob = { out, cap, pos };
	ZSTD_inBuffer none = { NULL, 0, 0 };
	while (ZSTD_compressStream2(z, &ob, &none, ZSTD_e_end) > 0)
		;
	pos = ob.pos;
	ZSTD_freeCCtx(z);
	free(zeros);
	long before = vm_hwm_kb();
	CHECK(client_open(&c, "a") == 0, "connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	CHECK(evcodec_frame_write(c.ssl, out, pos) == 0, "send %zu-byte bomb", pos);
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	free(out);
	long after = vm_hwm_kb();
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "oversized"), "bomb: %d %s", st, reason);
	CHECK(after - before < 200 * 1024, "peak memory grew by %ld KiB handling a 2 GiB bomb", after - before);
	client_close(&c);
}

TEST(oversized_frame_refused)
{
	struct client c;
	char reason[256] = "";
	setup();
	CHECK(client_open(&c, "a") == 0, "connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	uint8_t hdr[4] = { 0x7f, 0xff, 0xff, 0xff };
	CHECK(SSL_write(c.ssl, hdr, 4) == 4, "write header");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "oversized"), "2 GiB frame header: %d %s", st, reason);
	client_close(&c);
}

TEST(malformed_batch_refused)
{
	struct client c;
	char reason[256] = "";
	setup();
	CHECK(client_open(&c, "a") == 0, "connect");
	CHECK(send_hello(&c, "agent-a", key_a) == 0, "hello");
	uint8_t junk[100];
	memset(junk, 0xa5, sizeof(junk));
	CHECK(evcodec_frame_write(c.ssl, junk, sizeof(junk)) == 0, "send");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "malformed"), "junk batch: %d %s", st, reason);
	client_close(&c);
}

TEST(revoked_agent_refused)
{
	struct client c;
	char reason[256] = "";
	setup();
	CHECK(store_agent_set_revoked(qst, "agent-r", true) == 0, "revoke");
	CHECK(client_open(&c, "r") == 0, "connect");
	CHECK(send_hello(&c, "agent-r", key_b) == 0, "hello");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "revoked"), "revoked agent: %d %s", st, reason);
	client_close(&c);
	char err[256], *k = NULL, *crt = NULL, ca[300], cak[300];
	path(ca, sizeof(ca), "pki/ca.crt");
	path(cak, sizeof(cak), "pki/ca.key");
	CHECK(enroll_issue(ca, cak, qst, "agent-r", 1, &k, &crt, err, sizeof(err)) == -EPERM,
	      "enroll issued a certificate for a revoked id");
}

TEST(changed_signing_key_refused)
{
	struct client c;
	char reason[256] = "";
	uint8_t *b, zero[32] = { 0 };
	size_t bl;
	setup();
	CHECK(client_open(&c, "k") == 0, "connect");
	CHECK(send_hello(&c, "agent-k", key_b) == 0, "hello");
	CHECK(make_batch("agent-k", "boot-1", 1, 1, zero, key_b, "kim", &b, &bl) == 0, "build");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send");
	free(b);
	CHECK(read_ack(&c, NULL, reason, sizeof(reason)) == EVCODEC_ACK_OK, "first key: %s", reason);
	client_close(&c);
	CHECK(client_open(&c, "k") == 0, "reconnect");
	CHECK(send_hello(&c, "agent-k", key_x) == 0, "hello");
	int st = read_ack(&c, NULL, reason, sizeof(reason));
	CHECK(st == EVCODEC_ACK_REJECTED && strstr(reason, "key_mismatch"), "new key for agent-k: %d %s", st, reason);
	client_close(&c);
}

static int sql(const char *stmt)
{
	sqlite3 *db;
	if (sqlite3_open(dbpath, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 5000);
	int rc = sqlite3_exec(db, stmt, NULL, NULL, NULL);
	int ch = sqlite3_changes(db);
	sqlite3_close(db);
	return rc == SQLITE_OK ? ch : -1;
}

static bool report_has(const struct chain_report *r, const char *needle)
{
	for (size_t i = 0; i < r->nlines; i++)
		if (strstr(r->lines[i], needle))
			return true;
	return false;
}

TEST(verify_names_altered_and_missing_rows)
{
	struct chain_report r;
	setup();
	CHECK(next_a > 8, "needs the earlier batches");
	CHECK(chain_verify(qst, "agent-a", &r) == 0, "verify ran");
	CHECK(r.problems == 0 && r.events == next_a - 1, "intact store: %zu problems over %zu events (first: %s)", r.problems,
	      r.events, r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
	/* An insider edits a column. */
	CHECK(sql("UPDATE events SET user = 'nobody' WHERE agent_id = 'agent-a' AND seq = 3") == 1, "update");
	CHECK(chain_verify(qst, "agent-a", &r) == 0, "verify ran");
	CHECK(r.problems >= 1 && report_has(&r, "seq 3 altered") && report_has(&r, "column user"),
	      "altered user not named (%zu problems, first: %s)", r.problems, r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
	CHECK(sql("UPDATE events SET user = 'alice' WHERE agent_id = 'agent-a' AND seq = 3") == 1, "restore");
	CHECK(chain_verify(qst, "agent-a", &r) == 0 && r.problems == 0, "restored row still reported: %s",
	      r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
	/* An insider deletes a row in the middle, and the newest one. */
	CHECK(sql("DELETE FROM events WHERE agent_id = 'agent-a' AND seq = 4") == 1, "delete");
	CHECK(chain_verify(qst, "agent-a", &r) == 0, "verify ran");
	CHECK(report_has(&r, "events 4..4 missing") && report_has(&r, "batch 1..5: signature does not verify"),
	      "deleted seq 4 not named (%zu problems, first: %s)", r.problems, r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
	char q[160];
	snprintf(q, sizeof(q), "DELETE FROM events WHERE agent_id = 'agent-a' AND seq = %llu", (unsigned long long)(next_a - 1));
	CHECK(sql(q) == 1, "delete newest");
	CHECK(chain_verify(qst, "agent-a", &r) == 0, "verify ran");
	snprintf(q, sizeof(q), "events %llu..%llu missing at the end", (unsigned long long)(next_a - 1),
		 (unsigned long long)(next_a - 1));
	CHECK(report_has(&r, q), "deleted newest event not named (want '%s'; first: %s)", q, r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
}

TEST(rejections_are_security_events)
{
	setup();
	CHECK(rejections(NULL) >= 6, "only %zu rejections recorded as ingest_rejected events", rejections(NULL));
	CHECK(rejections("bad_signature") >= 1 && rejections("replay") >= 1 && rejections("oversized") >= 2,
	      "reasons missing: bad_signature %zu replay %zu oversized %zu", rejections("bad_signature"), rejections("replay"),
	      rejections("oversized"));
}

TEST(verify_accepts_a_chain_cut_by_retention)
{
	struct client c;
	char reason[256] = "";
	uint8_t *b, prev[32] = { 0 };
	size_t bl;
	struct chain_report r;
	setup();
	CHECK(client_open(&c, "b") == 0, "connect");
	CHECK(send_hello(&c, "agent-b", key_b) == 0, "hello");
	/* Ten days old, then fresh: retention of 7 days removes the first batch. */
	time_shift_us = -10LL * 86400 * 1000000;
	CHECK(make_batch("agent-b", "boot-1", 1, 4, prev, key_b, "olga", &b, &bl) == 0, "build old");
	time_shift_us = 0;
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send old");
	free(b);
	CHECK(read_ack(&c, NULL, reason, sizeof(reason)) == EVCODEC_ACK_OK, "old batch: %s", reason);
	CHECK(make_batch("agent-b", "boot-1", 5, 3, prev, key_b, "olga", &b, &bl) == 0, "build new");
	CHECK(evcodec_frame_write(c.ssl, b, bl) == 0, "send new");
	free(b);
	CHECK(read_ack(&c, NULL, reason, sizeof(reason)) == EVCODEC_ACK_OK, "new batch: %s", reason);
	client_close(&c);
	uint64_t del = 0;
	CHECK(store_retain(qst, (int64_t)time(NULL) * 1000000 - 7LL * 86400 * 1000000, &del) == 0 && del == 4,
	      "retention deleted %llu events, want 4: %s", (unsigned long long)del, store_errmsg(qst));
	CHECK(chain_verify(qst, "agent-b", &r) == 0, "verify ran");
	CHECK(r.problems == 0 && r.events == 3 && r.batches == 1, "after retention: %zu problems (first: %s), %zu events, %zu batches",
	      r.problems, r.nlines ? r.lines[0] : "", r.events, r.batches);
	chain_report_free(&r);
	/* Deleting the first event after the horizon is still caught. */
	CHECK(sql("DELETE FROM events WHERE agent_id = 'agent-b' AND seq = 5") == 1, "delete");
	CHECK(chain_verify(qst, "agent-b", &r) == 0, "verify ran");
	CHECK(report_has(&r, "agent-b: events 5..5 missing after the retention horizon"),
	      "a deleted row right after the horizon was not named (first: %s)", r.nlines ? r.lines[0] : "");
	chain_report_free(&r);
}
