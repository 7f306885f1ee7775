/* ingest: non-blocking mTLS server on the collector's event loop (loop.c),
 * shared with the API; TLS and its want-read/want-write are the connection
 * layer's (tlsconn.c). Each connection is a small state machine: TLS
 * handshake -> Hello frame -> Batch frames. A frame is a 4-byte
 * big-endian length and a payload; the payload buffer grows only as bytes
 * arrive (a peer announcing 8 MiB and sending 10 bytes costs 10 bytes), and
 * evcodec caps the decompressed size (zstd bombs). The loop thread does
 * TLS, parsing, signature and chain checks; one writer thread commits, with
 * its own store handle, every batch that is waiting in one transaction
 * (group commit: one fsync for all) and hands the results back through an
 * eventfd; only then does the loop send the acks. A connection whose batch
 * is being committed is not read (its agent waits for that ack anyway), so
 * each agent's batches commit in order. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "chain.h"
#include "cmetrics.h"
#include "evcodec.h"
#include "export.h"
#include "ingest.h"
#include "log.h"
#include "loop.h"
#include "tlsconn.h"
#include "pki.h"

#define HANDSHAKE_TIMEOUT_S 10
#define IDLE_TIMEOUT_S 600
#define FRAME_STALL_TIMEOUT_S 60

enum cstate { C_HANDSHAKE, C_HELLO, C_BATCH, C_CLOSING };

struct ingest;

struct conn {
	struct tlsconn t;          /* the socket, TLS, pending output (common/tlsconn.c) */
	struct ingest *g;
	enum cstate st;
	char peer[64];
	char cn[128];              /* agent id from the client certificate */
	uint8_t pub[32];
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *buf;
	size_t want, got, cap;
	time_t last;
	bool busy;                 /* a batch of this connection is with the writer */
	bool dead;                 /* freed as soon as the writer hands it back */
	bool freed;                /* off the list, its memory goes with the reap timer */
	struct loop_timer reap;    /* frees it outside the loop's dispatch (loop.h) */
	struct conn *next, *prev;
};

/* A verified batch on its way to the writer thread and back. */
struct job {
	struct conn *c;
	struct evcodec_batch *b;
	struct store_event *rows;
	struct store_finding *fb;
	struct store_batch sb;
	struct store_result res;
	int rc;                    /* store failure: RETRY */
	struct job *next;
};

#define GROUP_MAX 64

struct ingest {
	int lfd, port;
	struct loop *loop;
	bool own_loop;             /* no shared loop given (tests, the bench) */
	struct loop_watch lw, ew;  /* the listening socket, the writer's eventfd */
	struct loop_timer tick;    /* once a second: stalled connections, retention, *stop */
	volatile sig_atomic_t *stop;
	SSL_CTX *ctx;
	struct store *store;
	struct forward *fwd;
	unsigned max_conns, nconns, retain_days;
	char host[128];
	struct conn *conns;
	struct conn *graveyard;    /* closed, waiting for their reap timer */
	time_t next_retain;
	/* writer thread */
	struct store *wstore;
	pthread_t wthr;
	bool wthr_started, wstop;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct job *q_head, *q_tail, *done;
	int efd;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

SSL_CTX *ingest_server_ctx(const char *cert, const char *key, const char *client_ca, bool require_client,
			   char *err, size_t errlen)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	if (!c)
		goto ssl_err;
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	/* Agents hold long connections: no resumption, no session cache. */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
		snprintf(err, errlen, "%s: cannot load certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(c) != 1) {
		snprintf(err, errlen, "%s: cannot load key (or it does not match %s)", key, cert);
		goto fail;
	}
	if (require_client) {
		if (SSL_CTX_load_verify_locations(c, client_ca, NULL) != 1) {
			snprintf(err, errlen, "%s: cannot load client CA", client_ca);
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (names)
			SSL_CTX_set_client_CA_list(c, names);
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		SSL_CTX_set_verify_depth(c, 3);
	}
	return c;
ssl_err:
	snprintf(err, errlen, "TLS context: %s", ERR_reason_error_string(ERR_get_error()));
fail:
	ERR_clear_error();
	SSL_CTX_free(c);
	return NULL;
}

int ingest_listen(const char *hostport, int backlog, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	int fd = -1, one = 1, rc;
	if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
		snprintf(err, errlen, "%s: expected HOST:PORT", hostport);
		return -EINVAL;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = 0;
	char *h = host;
	if (h[0] == '[') {
		h++;
		h[strlen(h) - 1] = 0;
	}
	if ((rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai))) {
		snprintf(err, errlen, "%s: %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", hostport, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	return fd;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->rows);
	free(j->fb);
	evcodec_batch_free(j->b);
	free(j);
}

/* The writer thread: takes every waiting batch (up to GROUP_MAX), commits
 * them together, hands them back. */
static void *writer(void *arg)
{
	struct ingest *g = arg;
	struct store_batch sbs[GROUP_MAX];
	struct store_result res[GROUP_MAX];
	struct job *js[GROUP_MAX];
	pthread_setname_np(pthread_self(), "vigil-writer");
	for (;;) {
		size_t n = 0;
		pthread_mutex_lock(&g->qlock);
		while (!g->q_head && !g->wstop)
			pthread_cond_wait(&g->qcond, &g->qlock);
		if (!g->q_head && g->wstop) {
			pthread_mutex_unlock(&g->qlock);
			OPENSSL_thread_stop();
			return NULL;
		}
		while (g->q_head && n < GROUP_MAX) {
			js[n] = g->q_head;
			g->q_head = g->q_head->next;
			sbs[n] = js[n]->sb;
			n++;
		}
		if (!g->q_head)
			g->q_tail = NULL;
		pthread_mutex_unlock(&g->qlock);
		int rc = store_insert_batches(g->wstore, sbs, n, res);
		if (rc) {
			log_err("ingest: store: %s", store_errmsg(g->wstore));
			cmetrics_store_error();
		}
		pthread_mutex_lock(&g->qlock);
		for (size_t i = 0; i < n; i++) {
			js[i]->rc = rc;
			js[i]->res = res[i];
			js[i]->next = g->done;
			g->done = js[i];
		}
		pthread_mutex_unlock(&g->qlock);
		uint64_t one = 1;
		if (write(g->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_err("ingest: eventfd: %s", strerror(errno));
	}
}

static void on_listen(struct loop_watch *w, uint32_t events);
static void on_writer_done(struct loop_watch *w, uint32_t events);
static void on_tick(struct loop_timer *t, uint64_t now_ms);
static void on_conn_event(struct tlsconn *t, enum tlsconn_event ev);

int ingest_new(const struct ingest_opts *o, struct ingest **out, char *err, size_t errlen)
{
	struct ingest *g = calloc(1, sizeof(*g));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	*out = NULL;
	if (!g)
		return -ENOMEM;
	g->ctx = o->ctx;
	g->store = o->store;
	g->fwd = o->fwd;
	g->max_conns = o->max_conns ? o->max_conns : 1024;
	g->retain_days = o->retain_days;
	snprintf(g->host, sizeof(g->host), "%s", o->host ? o->host : "collector");
	g->efd = -1;
	g->loop = o->loop;
	if (!g->loop) {
		g->own_loop = true;
		if (!(g->loop = loop_new())) {
			free(g);
			return -ENOMEM;
		}
	}
	if ((g->lfd = ingest_listen(o->listen, 256, err, errlen)) < 0) {
		int rc = g->lfd;
		if (g->own_loop)
			loop_free(g->loop);
		free(g);
		return rc;
	}
	fcntl(g->lfd, F_SETFL, O_NONBLOCK);
	if (getsockname(g->lfd, (struct sockaddr *)&ss, &sl) == 0)
		g->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&g->qlock, NULL);
	pthread_cond_init(&g->qcond, NULL);
	g->lw = (struct loop_watch){ .fd = g->lfd, .fn = on_listen };
	g->ew = (struct loop_watch){ .fd = g->efd, .fn = on_writer_done };
	g->tick.fn = on_tick;
	int erc = g->efd < 0 ? -errno : loop_add(g->loop, &g->lw, EPOLLIN);
	if (erc || (erc = loop_add(g->loop, &g->ew, EPOLLIN))) {
		snprintf(err, errlen, "event loop: %s", strerror(-erc));
		ingest_free(g);
		return -EIO;
	}
	int rc = store_open(o->store_url, &g->wstore, err, errlen);
	if (rc || (rc = -pthread_create(&g->wthr, NULL, writer, g))) {
		if (rc && !err[0])
			snprintf(err, errlen, "writer thread: %s", strerror(-rc));
		ingest_free(g);
		return rc;
	}
	g->wthr_started = true;
	*out = g;
	return 0;
}

int ingest_port(const struct ingest *g) { return g->port; }

static void on_reap(struct loop_timer *t, uint64_t now_ms)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, reap));
	struct ingest *g = c->g;
	if (c->prev)
		c->prev->next = c->next;
	else
		g->graveyard = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Closes c at once; its memory goes from a timer, since the connection
 * layer may still look at it when the callback that closed it returns. */
static void conn_free(struct ingest *g, struct conn *c)
{
	if (c->freed)
		return;
	tlsconn_close(&c->t);
	if (c->busy) {
		/* The writer still holds a batch of ours: free on its return. */
		c->dead = true;
		return;
	}
	c->freed = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		g->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->buf);
	c->buf = NULL;
	g->nconns--;
	cmetrics_conn(-1);
	c->prev = NULL;
	c->next = g->graveyard;
	if (g->graveyard)
		g->graveyard->prev = c;
	g->graveyard = c;
	if (loop_timer_set(g->loop, &c->reap, 0))
		log_err("ingest: out of memory freeing a connection");   /* ingest_free frees it */
}

void ingest_free(struct ingest *g)
{
	if (!g)
		return;
	if (g->wthr_started) {
		pthread_mutex_lock(&g->qlock);
		g->wstop = true;
		pthread_cond_signal(&g->qcond);
		pthread_mutex_unlock(&g->qlock);
		pthread_join(g->wthr, NULL);
	}
	/* Whatever the writer finished: its connections are closing anyway. */
	for (struct job *j = g->done, *n; j; j = n) {
		n = j->next;
		j->c->busy = false;
		job_free(j);
	}
	while (g->conns)
		conn_free(g, g->conns);
	while (g->graveyard) {
		loop_timer_cancel(g->loop, &g->graveyard->reap);
		on_reap(&g->graveyard->reap, 0);
	}
	store_close(g->wstore);
	loop_timer_cancel(g->loop, &g->tick);
	if (g->efd >= 0) {
		loop_del(g->loop, &g->ew);
		close(g->efd);
	}
	if (g->lfd >= 0) {
		loop_del(g->loop, &g->lw);
		close(g->lfd);
	}
	if (g->own_loop)
		loop_free(g->loop);
	free(g);
}

/* Records a refusal as a security event the SOC can query. */
static void record_reject(struct ingest *g, struct conn *c, enum reject_reason r, const char *detail)
{
	struct store_event e = { 0 };
	char reason[300];
	snprintf(reason, sizeof(reason), "%s: %s", reject_reason_name(r), detail);
	e.time_us = now_us();
	e.kind = "ingest_rejected";
	e.host = g->host;
	e.dst_ip = c->peer;
	e.rule = reject_reason_name(r);
	e.reason = reason;
	e.user = c->cn; /* the certificate's agent id (who was refused) */
	e.action = "reject";
	e.injection_score = -1;
	e.uid = e.gid = e.pid = e.tid = -1;
	e.prompt_tokens = e.completion_tokens = e.cached_tokens = -1;
	cmetrics_reject(r);
	log_warn("ingest: %s (agent %s): rejected: %s", c->peer, c->cn[0] ? c->cn : "?", reason);
	if (store_insert_local(g->store, &e))
		log_err("ingest: cannot record the rejection: %s", store_errmsg(g->store));
}

static int send_ack(struct ingest *g, struct conn *c, enum evcodec_ack_status st, uint64_t seq, const char *reason)
{
	uint8_t *p = NULL;
	size_t n = 0;
	int rc = evcodec_ack_encode(st, seq, reason, &p, &n);
	if (rc)
		return rc;
	uint8_t *nb = malloc(4 + n);
	if (!nb) {
		free(p);
		return -ENOMEM;
	}
	nb[0] = (uint8_t)(n >> 24);
	nb[1] = (uint8_t)(n >> 16);
	nb[2] = (uint8_t)(n >> 8);
	nb[3] = (uint8_t)n;
	memcpy(nb + 4, p, n);
	free(p);
	return tlsconn_write(&c->t, (char *)nb, 4 + n) < 0 ? -EIO : 0;
}

static void reject(struct ingest *g, struct conn *c, enum reject_reason r, const char *detail, bool close_after)
{
	char reason[300];
	snprintf(reason, sizeof(reason), "%s: %s", reject_reason_name(r), detail);
	record_reject(g, c, r, detail);
	send_ack(g, c, EVCODEC_ACK_REJECTED, 0, reason);
	if (close_after)
		c->st = C_CLOSING;
}

static void handle_hello(struct ingest *g, struct conn *c)
{
	char id[128];
	uint8_t pub[32];
	struct store_agent a;
	int rc;
	if (evcodec_hello_decode(c->buf, c->got, id, sizeof(id), pub)) {
		reject(g, c, REJ_NO_HELLO, "the first frame is not a valid Hello", true);
		return;
	}
	if (strcmp(id, c->cn)) {
		char d[300];
		snprintf(d, sizeof(d), "Hello names agent '%.100s' but the certificate is for '%.100s'", id, c->cn);
		reject(g, c, REJ_AGENT_MISMATCH, d, true);
		return;
	}
	rc = store_agent_get(g->store, id, &a);
	if (rc == 0 && a.revoked) {
		reject(g, c, REJ_REVOKED, "this agent id is revoked", true);
		return;
	}
	rc = store_agent_pin_key(g->store, id, pub);
	if (rc == -EEXIST) {
		reject(g, c, REJ_KEY_MISMATCH, "the signing key differs from the key pinned for this agent id", true);
		return;
	}
	if (rc) {
		log_err("ingest: pin key for %s: %s", id, store_errmsg(g->store));
		cmetrics_store_error();
		send_ack(g, c, EVCODEC_ACK_RETRY, 0, "store unavailable");
		c->st = C_CLOSING;
		return;
	}
	memcpy(c->pub, pub, 32);
	c->st = C_BATCH;
	log_info("ingest: agent %s connected from %s", id, c->peer);
}

static void handle_batch(struct ingest *g, struct conn *c)
{
	struct evcodec_batch *b = NULL;
	struct store_event *rows = NULL;
	struct store_finding *fb = NULL;
	struct store_agent a;
	char err[256];
	int rc = evcodec_batch_parse(c->buf, c->got, &b, err, sizeof(err));
	if (rc) {
		reject(g, c, rc == -EMSGSIZE ? REJ_OVERSIZED : REJ_MALFORMED, err, false);
		return;
	}
	if (strcmp(b->agent_id ? b->agent_id : "", c->cn)) {
		char d[300];
		snprintf(d, sizeof(d), "batch for agent '%.100s' on the connection of '%.100s'", b->agent_id, c->cn);
		reject(g, c, REJ_AGENT_MISMATCH, d, true);
		goto out;
	}
	if (store_agent_get(g->store, c->cn, &a) == 0 && a.revoked) {
		reject(g, c, REJ_REVOKED, "this agent id was revoked", true);
		goto out;
	}
	if (evcodec_batch_verify(b, c->pub)) {
		reject(g, c, REJ_BAD_SIGNATURE, "the batch signature does not verify with the pinned key", false);
		goto out;
	}
	if (evcodec_batch_check(b, err, sizeof(err))) {
		reject(g, c, REJ_BAD_CHAIN, err, false);
		goto out;
	}
	struct job *j = calloc(1, sizeof(*j));
	/* Findings storage sized to what this batch carries (most events
	 * have none). */
	size_t nf = 0;
	for (size_t i = 0; i < b->n_events; i++)
		nf += b->events[i].ev.n_findings < EVCODEC_MAX_FINDINGS ? b->events[i].ev.n_findings : EVCODEC_MAX_FINDINGS;
	rows = malloc(b->n_events * sizeof(*rows));
	fb = malloc((nf ? nf : 1) * sizeof(*fb));
	if (!j || !rows || !fb) {
		free(j);
		send_ack(g, c, EVCODEC_ACK_RETRY, 0, "collector out of memory");
		goto out;
	}
	nf = 0;
	for (size_t i = 0; i < b->n_events; i++) {
		chain_to_store(&b->events[i], &rows[i], fb + nf);
		nf += rows[i].nfindings;
	}
	j->c = c;
	j->b = b;
	j->rows = rows;
	j->fb = fb;
	j->sb = (struct store_batch){
		.agent_id = b->agent_id, .boot_id = b->boot_id, .schema_version = b->schema_version,
		.first_seq = b->first_seq, .last_seq = b->last_seq,
		.prev_batch_hash = b->has_prev_batch_hash ? b->prev_batch_hash : NULL,
		.prev_batch_hash_len = b->has_prev_batch_hash ? EVCODEC_HASH_LEN : 0,
		.signature = b->signature, .signature_len = b->signature_len, .received_us = now_us(),
		.events = rows, .nevents = b->n_events,
	};
	/* Stop reading this agent until its batch is committed and acked. */
	c->busy = true;
	tlsconn_set_reading(&c->t, false);
	pthread_mutex_lock(&g->qlock);
	if (g->q_tail)
		g->q_tail->next = j;
	else
		g->q_head = j;
	g->q_tail = j;
	pthread_cond_signal(&g->qcond);
	pthread_mutex_unlock(&g->qlock);
	return;
out:
	free(rows);
	free(fb);
	evcodec_batch_free(b);
}

static int on_readable(struct ingest *g, struct conn *c);

/* Back from the writer: ack (only now), then resume reading. */
static void job_done(struct ingest *g, struct job *j)
{
	struct conn *c = j->c;
	c->busy = false;
	if (c->dead) {
		job_free(j);
		conn_free(g, c);
		return;
	}
	struct evcodec_batch *b = j->b;
	if (j->rc) {
		send_ack(g, c, EVCODEC_ACK_RETRY, 0, "store unavailable, retry later");
	} else if (j->res.rc == -EEXIST) {
		reject(g, c, REJ_REPLAY, j->res.why, false);
	} else {
		send_ack(g, c, EVCODEC_ACK_OK, b->last_seq, NULL);
		cmetrics_batch();
		cmetrics_duplicates(j->res.dups);
		for (size_t i = 0; i < b->n_events; i++) {
			cmetrics_event_in(1, j->rows[i].action);
			cmetrics_newest_event(j->rows[i].time_us);
		}
		if (g->fwd && j->res.inserted)
			for (size_t i = 0; i < b->n_events; i++)
				forward_event(g->fwd, &j->rows[i]);
		log_debug("ingest: %s: batch %llu..%llu: %zu new, %zu duplicate", c->cn,
			  (unsigned long long)b->first_seq, (unsigned long long)b->last_seq, j->res.inserted, j->res.dups);
	}
	job_free(j);
	if (c->freed)
		return;
	tlsconn_set_reading(&c->t, true);
	/* TLS may already hold the next frame in its buffer: epoll would not
	 * say so. */
	if (on_readable(g, c) < 0 || (c->st == C_CLOSING && !c->t.out))
		conn_free(g, c);
}

static void drain_done(struct ingest *g)
{
	uint64_t v;
	if (read(g->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_err("ingest: eventfd: %s", strerror(errno));
	pthread_mutex_lock(&g->qlock);
	struct job *list = g->done;
	g->done = NULL;
	pthread_mutex_unlock(&g->qlock);
	/* The list is newest first; ack in commit order. */
	struct job *rev = NULL;
	while (list) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *n = rev->next;
		job_done(g, rev);
		rev = n;
	}
}

static void frame_done(struct ingest *g, struct conn *c)
{
	if (c->st == C_HELLO)
		handle_hello(g, c);
	else
		handle_batch(g, c);
	free(c->buf);
	c->buf = NULL;
	c->want = c->got = c->cap = 0;
	c->hdr_got = 0;
}

static bool handshake_done(struct ingest *g, struct conn *c)
{
	X509 *cert = SSL_get1_peer_certificate(c->t.ssl);
	if (!cert || SSL_get_verify_result(c->t.ssl) != X509_V_OK) {
		X509_free(cert);
		cmetrics_tls_failure();
		return false;
	}
	int n = pki_cert_cn(cert, c->cn, sizeof(c->cn));
	X509_free(cert);
	if (n || !strcmp(c->cn, "collector")) {
		c->cn[0] = 0;
		reject(g, c, REJ_AGENT_MISMATCH, "client certificate has no usable agent id (CN)", true);
		return true;
	}
	c->st = C_HELLO;
	return true;
}

/* Reads as much as is available. Returns <0 when the connection must go. */
static int on_readable(struct ingest *g, struct conn *c)
{
	while (c->st != C_CLOSING && !c->busy) {
		uint8_t *dst;
		size_t room;
		if (c->hdr_got < 4) {
			dst = c->hdr + c->hdr_got;
			room = 4 - c->hdr_got;
		} else {
			size_t need = c->want - c->got;
			if (c->cap - c->got < need) {
				/* Grow with what arrives, at most 256 KiB ahead. */
				size_t nc = c->got + (need < 262144 ? need : 262144);
				uint8_t *nb = realloc(c->buf, nc ? nc : 1);
				if (!nb)
					return -ENOMEM;
				c->buf = nb;
				c->cap = nc;
			}
			dst = c->buf + c->got;
			room = c->cap - c->got;
		}
		ssize_t n = tlsconn_read(&c->t, dst, room);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (c->t.ssl_err)
				log_info("ingest: %s (%s): connection lost (TLS error: %s)", c->peer, c->cn,
					 ERR_reason_error_string(c->t.ssl_err));
			return -EIO;
		}
		c->last = time(NULL);
		if (c->hdr_got < 4) {
			c->hdr_got += (size_t)n;
			if (c->hdr_got < 4)
				continue;
			c->want = ((size_t)c->hdr[0] << 24) | ((size_t)c->hdr[1] << 16) | ((size_t)c->hdr[2] << 8) | c->hdr[3];
			if (c->want > EVCODEC_MAX_FRAME || c->want == 0) {
				char d[96];
				snprintf(d, sizeof(d), "frame of %zu bytes (limit %u)", c->want, EVCODEC_MAX_FRAME);
				reject(g, c, c->want ? REJ_OVERSIZED : REJ_MALFORMED, d, true);
				return 0;
			}
			c->got = 0;
			continue;
		}
		c->got += (size_t)n;
		if (c->got == c->want)
			frame_done(g, c);
	}
	return 0;
}

static void accept_all(struct ingest *g)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(g->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (g->nconns >= g->max_conns) {
			log_warn("ingest: %u connections: refusing one more", g->nconns);
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (tlsconn_accept(&c->t, g->loop, g->ctx, fd, on_conn_event)) {
			free(c);       /* fd closed by tlsconn_accept */
			continue;
		}
		c->g = g;
		c->reap.fn = on_reap;
		c->last = time(NULL);
		char ip[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
		snprintf(c->peer, sizeof(c->peer), "%s", ip);
		c->next = g->conns;
		if (g->conns)
			g->conns->prev = c;
		g->conns = c;
		g->nconns++;
		cmetrics_conn(1);
	}
}

static void sweep(struct ingest *g)
{
	time_t now = time(NULL);
	for (struct conn *c = g->conns, *n; c; c = n) {
		n = c->next;
		if (c->busy)
			continue;
		time_t limit = c->st == C_HANDSHAKE ? HANDSHAKE_TIMEOUT_S
			       : (c->hdr_got ? FRAME_STALL_TIMEOUT_S : IDLE_TIMEOUT_S);
		if (now - c->last > limit || (c->st == C_CLOSING && !c->t.out)) {
			if (c->st != C_CLOSING)
				log_info("ingest: %s: closing idle or stalled connection", c->peer);
			conn_free(g, c);
		}
	}
	if (g->retain_days && now >= g->next_retain) {
		uint64_t del = 0;
		g->next_retain = now + 3600;
		if (store_retain(g->store, now_us() - (int64_t)g->retain_days * 86400 * 1000000LL, &del))
			log_err("retention: %s", store_errmsg(g->store));
		else if (del) {
			cmetrics_retained(del);
			log_info("retention: deleted %llu events older than %u days", (unsigned long long)del,
				 g->retain_days);
		}
	}
}

/* What the connection layer reports for an agent connection: the
 * handshake done (the certificate's CN is the agent id), frames to read,
 * acks out (a refused agent is closed once its reason is sent), gone. */
static void on_conn_event(struct tlsconn *t, enum tlsconn_event ev)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, t));
	struct ingest *g = c->g;
	if (c->freed || c->dead)
		return;
	switch (ev) {
	case TLSCONN_READY:
		if (!handshake_done(g, c)) {
			log_info("ingest: %s: client certificate refused", c->peer);
			conn_free(g, c);
			return;
		}
		c->last = time(NULL);
		/* the Hello may have come with the handshake */
		__attribute__((fallthrough));
	case TLSCONN_READABLE:
		if (c->busy)
			return;
		if (on_readable(g, c) < 0 || (c->st == C_CLOSING && !c->t.out))
			conn_free(g, c);
		return;
	case TLSCONN_WRITTEN:
		if (c->st == C_CLOSING)
			conn_free(g, c);
		return;
	case TLSCONN_CLOSED:
		if (!c->t.handshaken) {
			cmetrics_tls_failure();
			log_info("ingest: %s: TLS handshake failed: %s", c->peer,
				 c->t.ssl_err ? ERR_reason_error_string(c->t.ssl_err) : "connection closed");
		}
		conn_free(g, c);
		return;
	}
}

static void on_listen(struct loop_watch *w, uint32_t events)
{
	accept_all((struct ingest *)((char *)w - offsetof(struct ingest, lw)));
}

static void on_writer_done(struct loop_watch *w, uint32_t events)
{
	drain_done((struct ingest *)((char *)w - offsetof(struct ingest, ew)));
}

static void on_tick(struct loop_timer *t, uint64_t now_ms)
{
	struct ingest *g = (struct ingest *)((char *)t - offsetof(struct ingest, tick));
	if (g->stop && *g->stop) {
		loop_stop(g->loop);
		return;
	}
	sweep(g);
	loop_timer_set(g->loop, &g->tick, now_ms + 1000);
}

int ingest_run(struct ingest *g, volatile sig_atomic_t *stop)
{
	g->stop = stop;
	sweep(g);
	int rc = loop_timer_set(g->loop, &g->tick, loop_now_ms() + 1000);
	if (!rc)
		rc = loop_run(g->loop);
	loop_timer_cancel(g->loop, &g->tick);
	return rc;
}
