/* ship: the shipper thread (see ship.h for the delivery guarantees).
 *
 * Owns its TLS connection to the collector, the in-flight batch and the
 * backoff state. Must never: delete from the spool anything not acked OK
 * with acked_seq covering it; resend a batch with different content under
 * the same seqs (a batch is built once and resent byte for byte); block
 * audit_emit() (the only shared state is the spool's own mutex and this
 * module's, neither held across I/O); retry a REJECTED batch. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "osutil.h"
#include "evcodec.h"
#include "log.h"
#include "audit/ship.h"

#define SHIP_MAX_BATCH_BYTES (4u << 20)   /* raw records per batch: stays under the 8 MiB frame */

struct ship {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop, draining, kicked;
	int fd;                              /* current socket, for shutdown() from ship_stop */

	char *address, *host, *port, *ca, *cert, *key, *agent_id, *boot_id;
	EVP_PKEY *sign_key;
	uint8_t pub[32];
	struct spool *spool;
	uint32_t batch_events, interval_ms, backoff_min_ms, backoff_max_ms, io_timeout_ms;
	int zlevel;
	void (*on_loss)(void *arg, const struct spool_loss *loss, const char *reason);
	void *arg;

	/* shipper-thread state */
	SSL_CTX *ctx;
	SSL *ssl;
	struct spool_reader *reader;
	struct spool_batch recs;
	uint8_t *zbuf;                       /* in-flight batch frame payload, NULL = none */
	size_t zlen;
	uint64_t first_seq, last_seq, n_events;
	uint8_t digest[32], prev_digest[32];
	bool have_prev;
	unsigned failures_in_row;

	struct ship_stats st;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits on the condition for up to ms (or until kicked/stopped).
 * Called with the lock held. */
static void wait_ms_locked(struct ship *sh, uint64_t ms)
{
	struct timespec ts;
	osutil_deadline_ms(&ts, ms);
	if (!sh->kicked && !sh->stop)
		pthread_cond_timedwait(&sh->cond, &sh->lock, &ts);
	sh->kicked = false;
}

/* How long a partial batch still waits for more records (at least 1 ms:
 * 0 would mean no timeout to spool_wait). */
static uint32_t partial_due_ms(struct ship *sh, uint64_t first_wait)
{
	uint64_t now = now_ms(), due = first_wait + sh->interval_ms;
	return due > now ? (uint32_t)(due - now) : 1;
}

static bool stopping(struct ship *sh)
{
	pthread_mutex_lock(&sh->lock);
	bool s = sh->stop;
	pthread_mutex_unlock(&sh->lock);
	return s;
}

/* Splits "host:port" / "[v6]:port". */
static int split_address(const char *a, char **host, char **port)
{
	const char *colon;
	if (a[0] == '[') {
		const char *close = strchr(a, ']');
		if (!close || close[1] != ':' || !close[2])
			return -EINVAL;
		*host = strndup(a + 1, (size_t)(close - a - 1));
		*port = strdup(close + 2);
	} else {
		colon = strrchr(a, ':');
		if (!colon || colon == a || !colon[1])
			return -EINVAL;
		*host = strndup(a, (size_t)(colon - a));
		*port = strdup(colon + 1);
	}
	return (*host && *port) ? 0 : -ENOMEM;
}

static SSL_CTX *make_ctx(struct ship *sh, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned long e;
	if (!ctx)
		goto ssl_err;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, sh->ca, NULL) != 1) {
		snprintf(err, errlen, "collector.ca %s: cannot load", sh->ca);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, sh->cert) != 1) {
		snprintf(err, errlen, "collector.cert %s: cannot load", sh->cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, sh->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "collector.key %s: cannot load or does not match the certificate",
			 sh->key);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ERR_clear_error();
	return ctx;
ssl_err:
	e = ERR_peek_last_error();
	snprintf(err, errlen, "TLS: %s", e ? ERR_reason_error_string(e) : "out of memory");
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static void disconnect(struct ship *sh)
{
	if (sh->ssl) {
		SSL_free(sh->ssl);
		sh->ssl = NULL;
	}
	pthread_mutex_lock(&sh->lock);
	if (sh->fd >= 0)
		close(sh->fd);
	sh->fd = -1;
	sh->st.connected = false;
	pthread_mutex_unlock(&sh->lock);
}

/* TCP connect with a deadline, then blocking I/O with socket timeouts. */
static int tcp_connect(struct ship *sh)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res = NULL;
	int fd = -1, ret;
	if ((ret = getaddrinfo(sh->host, sh->port, &hints, &res)) != 0) {
		log_warn("ship: cannot resolve %s: %s", sh->host, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	ret = -ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			ret = -errno;
			close(fd);
			fd = -1;
			continue;
		}
		/* Poll in slices so ship_stop() is not held up by a collector
		 * that drops SYNs. */
		int pr = 0;
		for (uint32_t waited = 0; waited < sh->io_timeout_ms && pr == 0 && !stopping(sh);
		     waited += 100) {
			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			pr = poll(&p, 1, 100);
		}
		if (pr != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
			ret = soerr ? -soerr : -ETIMEDOUT;
			close(fd);
			fd = -1;
			continue;
		}
		break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return ret;
	{
		int fl = fcntl(fd, F_GETFL), one = 1;
		struct timeval tv = { .tv_sec = sh->io_timeout_ms / 1000,
				      .tv_usec = (sh->io_timeout_ms % 1000) * 1000 };
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

static int ship_connect(struct ship *sh)
{
	char err[256];
	uint8_t *hello = NULL;
	size_t hlen = 0;
	unsigned char buf6[16];
	int fd, ret;

	/* Reload the TLS files on every connection: a renewed certificate is
	 * picked up without a restart. */
	SSL_CTX_free(sh->ctx);
	if (!(sh->ctx = make_ctx(sh, err, sizeof(err)))) {
		log_warn("ship: %s", err);
		return -EINVAL;
	}
	if ((fd = tcp_connect(sh)) < 0)
		return fd;
	pthread_mutex_lock(&sh->lock);
	sh->fd = fd;
	pthread_mutex_unlock(&sh->lock);
	if (!(sh->ssl = SSL_new(sh->ctx)) || SSL_set_fd(sh->ssl, fd) != 1) {
		disconnect(sh);
		return -ENOMEM;
	}
	/* Hostname (or IP) check of the collector's certificate. */
	if (inet_pton(AF_INET, sh->host, buf6) == 1 || inet_pton(AF_INET6, sh->host, buf6) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(sh->ssl), sh->host);
	} else {
		SSL_set_tlsext_host_name(sh->ssl, sh->host);
		SSL_set1_host(sh->ssl, sh->host);
	}
	if (SSL_connect(sh->ssl) != 1) {
		long vr = SSL_get_verify_result(sh->ssl);
		unsigned long e = ERR_get_error();
		if (vr != X509_V_OK)
			log_warn("ship: collector %s certificate refused: %s", sh->address,
				 X509_verify_cert_error_string(vr));
		else
			log_warn("ship: TLS handshake with %s failed: %s", sh->address,
				 e ? ERR_reason_error_string(e) : "connection closed");
		ERR_clear_error();
		disconnect(sh);
		return -EPROTO;
	}
	if ((ret = evcodec_hello_encode(sh->agent_id, sh->pub, &hello, &hlen)) ||
	    (ret = evcodec_frame_write(sh->ssl, hello, hlen))) {
		free(hello);
		disconnect(sh);
		return ret;
	}
	free(hello);
	pthread_mutex_lock(&sh->lock);
	sh->st.connects++;
	sh->st.connected = true;
	pthread_mutex_unlock(&sh->lock);
	log_info("ship: connected to collector %s", sh->address);
	return 0;
}

/* Builds the next batch from durable records. Returns 1 if a batch is
 * ready, 0 if there is nothing (yet), -errno on failure. */
static int build_batch(struct ship *sh, uint64_t *first_wait_ms)
{
	struct spool_loss loss;
	int ret;
	const uint8_t **ptrs;
	if (sh->recs.n < sh->batch_events) {
		if ((ret = spool_read(sh->reader, sh->batch_events - sh->recs.n, SHIP_MAX_BATCH_BYTES,
				      &sh->recs, &loss)))
			return ret;
		if (loss.count && sh->on_loss)
			sh->on_loss(sh->arg, &loss, "spool record corrupt on disk");
	}
	if (sh->recs.n == 0)
		return 0;
	/* Time bound: a partial batch waits until interval_ms after its first
	 * record was seen (or shipping is draining). */
	if (sh->recs.n < sh->batch_events && sh->recs.data_len < SHIP_MAX_BATCH_BYTES / 2) {
		uint64_t now = now_ms();
		bool draining;
		pthread_mutex_lock(&sh->lock);
		draining = sh->draining;
		pthread_mutex_unlock(&sh->lock);
		if (!*first_wait_ms)
			*first_wait_ms = now;
		if (!draining && now - *first_wait_ms < sh->interval_ms)
			return 0;
	}
	*first_wait_ms = 0;
	if (!(ptrs = malloc(sh->recs.n * sizeof(*ptrs))))
		return -ENOMEM;
	for (size_t i = 0; i < sh->recs.n; i++)
		ptrs[i] = sh->recs.data + sh->recs.off[i];
	struct evcodec_batch_hdr h = {
		.agent_id = sh->agent_id, .boot_id = sh->boot_id,
		.first_seq = sh->recs.seq[0], .last_seq = sh->recs.seq[sh->recs.n - 1],
		.prev_batch_hash = sh->have_prev ? sh->prev_digest : NULL,
	};
	ret = evcodec_batch_build(&h, ptrs, sh->recs.len, sh->recs.n, sh->sign_key, sh->zlevel,
				  &sh->zbuf, &sh->zlen, sh->digest);
	free(ptrs);
	if (ret)
		return ret;
	sh->first_seq = h.first_seq;
	sh->last_seq = h.last_seq;
	sh->n_events = sh->recs.n;
	pthread_mutex_lock(&sh->lock);
	sh->st.raw_bytes += sh->recs.data_len;
	pthread_mutex_unlock(&sh->lock);
	spool_batch_reset(&sh->recs);
	return 1;
}

static void drop_inflight(struct ship *sh)
{
	free(sh->zbuf);
	sh->zbuf = NULL;
	sh->zlen = 0;
}

/* A rejection about who the agent is (not about this batch's bytes) will
 * come back for every batch: the collector's reason starts with the name of
 * its reject reason (collector/cmetrics.c). bad_signature: the key the
 * collector pinned for this id is not ours, for every batch alike. */
static bool rejection_repeats(const char *reason)
{
	static const char *const repeats[] = { "agent_mismatch", "revoked", "key_mismatch",
					       "no_hello", "bad_signature" };
	for (size_t i = 0; i < sizeof(repeats) / sizeof(repeats[0]); i++) {
		size_t n = strlen(repeats[i]);
		if (!strncmp(reason, repeats[i], n) && (reason[n] == ':' || !reason[n]))
			return true;
	}
	return false;
}

/* Sends the in-flight batch and waits for its ack. Returns 0 when the
 * batch is settled (acked or quarantined), -EAGAIN for RETRY, another
 * -errno on a connection failure. */
static int send_batch(struct ship *sh)
{
	uint8_t *ack = NULL;
	size_t alen = 0;
	enum evcodec_ack_status status;
	uint64_t acked = 0;
	char reason[256] = "";
	int ret;

	if ((ret = evcodec_frame_write(sh->ssl, sh->zbuf, sh->zlen)))
		return ret;
	pthread_mutex_lock(&sh->lock);
	sh->st.bytes_sent += sh->zlen + 4;
	pthread_mutex_unlock(&sh->lock);
	if ((ret = evcodec_frame_read(sh->ssl, &ack, &alen, 65536)))
		return ret;
	ret = evcodec_ack_decode(ack, alen, &status, &acked, reason, sizeof(reason));
	free(ack);
	if (ret)
		return -EPROTO;
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (status == EVCODEC_ACK_OK && acked >= sh->last_seq) {
		pthread_mutex_lock(&sh->lock);
		sh->st.batches_acked++;
		sh->st.events_acked += sh->n_events;
		sh->st.acked_seq = sh->last_seq;
		pthread_mutex_unlock(&sh->lock);
		spool_ack(sh->spool, sh->last_seq);
		memcpy(sh->prev_digest, sh->digest, 32);
		sh->have_prev = true;
		drop_inflight(sh);
		return 0;
	}
	if (status == EVCODEC_ACK_REJECTED && rejection_repeats(reason)) {
		/* Quarantining would empty the whole spool one batch at a time
		 * for a configuration slip; keep it for when the slip is fixed. */
		log_err("ship: collector %s refuses this agent (%s); shipping stopped, the spool is kept "
			"(seq %llu onwards) until the configuration is fixed and the agent restarted",
			sh->address, reason, (unsigned long long)sh->first_seq);
		pthread_mutex_lock(&sh->lock);
		sh->st.halted = true;
		snprintf(sh->st.halted_reason, sizeof(sh->st.halted_reason), "%s", reason);
		sh->st.batches_rejected++;
		pthread_mutex_unlock(&sh->lock);
		return -EPERM;
	}
	if (status == EVCODEC_ACK_REJECTED) {
		struct spool_loss loss = { 0 };
		log_err("ship: collector rejected batch seq %llu..%llu: %s; quarantining it",
			(unsigned long long)sh->first_seq, (unsigned long long)sh->last_seq, reason);
		spool_quarantine(sh->spool, sh->first_seq, sh->last_seq, &loss);
		if (sh->on_loss) {
			char why[300];
			snprintf(why, sizeof(why), "batch rejected by the collector: %s", reason);
			if (!loss.count) {
				/* Already gone from the spool (dropped): still say so. */
				loss.first_seq = sh->first_seq;
				loss.last_seq = sh->last_seq;
				loss.count = sh->n_events;
			}
			sh->on_loss(sh->arg, &loss, why);
		}
		pthread_mutex_lock(&sh->lock);
		sh->st.batches_rejected++;
		pthread_mutex_unlock(&sh->lock);
		drop_inflight(sh);
		return 0;
	}
	log_warn("ship: collector asked to retry batch seq %llu..%llu%s%s",
		 (unsigned long long)sh->first_seq, (unsigned long long)sh->last_seq,
		 reason[0] ? ": " : "", reason);
	return -EAGAIN;
}

/* Capped exponential backoff with jitter (half fixed, half random) so a
 * fleet does not reconnect in lockstep after a collector restart. */
static uint64_t backoff_ms(struct ship *sh)
{
	uint64_t cap = sh->backoff_min_ms;
	uint32_t r = 0;
	for (unsigned i = 1; i < sh->failures_in_row && cap < sh->backoff_max_ms; i++)
		cap *= 2;
	if (cap > sh->backoff_max_ms)
		cap = sh->backoff_max_ms;
	RAND_bytes((unsigned char *)&r, sizeof(r));
	return cap / 2 + (cap / 2 ? r % (cap / 2 + 1) : 0);
}

static void *ship_main(void *arg)
{
	struct ship *sh = arg;
	uint64_t first_wait = 0;

	while (!stopping(sh)) {
		int ret;
		if (!sh->zbuf) {
			uint64_t seen_seq, seen_gen;
			/* Before reading: a record made durable after the read
			 * ends the wait below at once. */
			spool_snapshot(sh->spool, &seen_seq, &seen_gen);
			ret = build_batch(sh, &first_wait);
			if (ret < 0) {
				log_err("ship: cannot build a batch: %s", strerror(-ret));
				sh->failures_in_row++;
			}
			if (ret <= 0) {
				bool draining_done;
				pthread_mutex_lock(&sh->lock);
				draining_done = sh->draining && ret == 0 && sh->recs.n == 0 &&
						!spool_reader_pending(sh->reader);
				if (draining_done) {
					pthread_mutex_unlock(&sh->lock);
					break;
				}
				if (ret < 0) {
					wait_ms_locked(sh, backoff_ms(sh));
					pthread_mutex_unlock(&sh->lock);
					continue;
				}
				pthread_mutex_unlock(&sh->lock);
				/* Nothing to send yet: sleep until more is durable, a
				 * partial batch is due, or ship_stop(); never on a tick. */
				spool_wait(sh->spool, seen_seq, seen_gen,
					   sh->recs.n ? partial_due_ms(sh, first_wait) : 0);
				continue;
			}
		}
		if (!sh->ssl && (ret = ship_connect(sh))) {
			sh->failures_in_row++;
			pthread_mutex_lock(&sh->lock);
			sh->st.failures++;
			if (sh->draining) {
				pthread_mutex_unlock(&sh->lock);
				break;   /* no collector: the spool keeps it for next start */
			}
			wait_ms_locked(sh, backoff_ms(sh));
			pthread_mutex_unlock(&sh->lock);
			continue;
		}
		ret = send_batch(sh);
		if (ret == -EPERM) {
			disconnect(sh);
			/* Nothing to do until a restart with a fixed config. */
			pthread_mutex_lock(&sh->lock);
			while (!sh->stop)
				pthread_cond_wait(&sh->cond, &sh->lock);
			pthread_mutex_unlock(&sh->lock);
			break;
		}
		if (ret == 0) {
			sh->failures_in_row = 0;
			continue;
		}
		sh->failures_in_row++;
		pthread_mutex_lock(&sh->lock);
		sh->st.failures++;
		pthread_mutex_unlock(&sh->lock);
		if (ret != -EAGAIN) {
			log_warn("ship: connection to %s lost: %s; will resend batch seq %llu..%llu",
				 sh->address, strerror(-ret), (unsigned long long)sh->first_seq,
				 (unsigned long long)sh->last_seq);
			disconnect(sh);
		}
		pthread_mutex_lock(&sh->lock);
		if (sh->draining && sh->failures_in_row > 2) {
			pthread_mutex_unlock(&sh->lock);
			break;
		}
		wait_ms_locked(sh, backoff_ms(sh));
		pthread_mutex_unlock(&sh->lock);
	}
	if (sh->ssl)
		SSL_shutdown(sh->ssl);
	disconnect(sh);
	return NULL;
}

static void ship_free(struct ship *sh)
{
	if (!sh)
		return;
	disconnect(sh);
	SSL_CTX_free(sh->ctx);
	spool_reader_free(sh->reader);
	spool_batch_free(&sh->recs);
	free(sh->zbuf);
	EVP_PKEY_free(sh->sign_key);
	free(sh->address);
	free(sh->host);
	free(sh->port);
	free(sh->ca);
	free(sh->cert);
	free(sh->key);
	free(sh->agent_id);
	free(sh->boot_id);
	pthread_cond_destroy(&sh->cond);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

int ship_start(const struct ship_opts *o, struct ship **out, char *err, size_t errlen)
{
	struct ship *sh = calloc(1, sizeof(*sh));
	SSL_CTX *probe;
	int ret = -ENOMEM;
	if (!sh)
		return -ENOMEM;
	pthread_mutex_init(&sh->lock, NULL);
	pthread_cond_init(&sh->cond, NULL);
	sh->fd = -1;
	if (!o->address || !o->ca || !o->cert || !o->key || !o->agent_id || !o->sign_key || !o->spool) {
		snprintf(err, errlen, "collector needs address, ca, cert, key and a signing key");
		ret = -EINVAL;
		goto err;
	}
	if (!(sh->address = strdup(o->address)) || !(sh->ca = strdup(o->ca)) ||
	    !(sh->cert = strdup(o->cert)) || !(sh->key = strdup(o->key)) ||
	    !(sh->agent_id = strdup(o->agent_id)) ||
	    !(sh->boot_id = strdup(o->boot_id ? o->boot_id : "")))
		goto err;
	if ((ret = split_address(o->address, &sh->host, &sh->port))) {
		snprintf(err, errlen, "collector.address %s: expected HOST:PORT", o->address);
		goto err;
	}
	if ((ret = evcodec_key_public(o->sign_key, sh->pub))) {
		snprintf(err, errlen, "the audit signing key is not Ed25519");
		goto err;
	}
	EVP_PKEY_up_ref(o->sign_key);
	sh->sign_key = o->sign_key;
	sh->spool = o->spool;
	sh->batch_events = o->batch_events ? o->batch_events : 1000;
	sh->interval_ms = o->interval_ms ? o->interval_ms : 1000;
	sh->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 200;
	sh->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 10000;
	if (sh->backoff_max_ms < sh->backoff_min_ms)
		sh->backoff_max_ms = sh->backoff_min_ms;
	sh->io_timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : 30000;
	sh->zlevel = o->zstd_level;
	sh->on_loss = o->on_loss;
	sh->arg = o->arg;
	/* Fail at start on unreadable TLS files rather than forever later. */
	if (!(probe = make_ctx(sh, err, errlen))) {
		ret = -EINVAL;
		goto err;
	}
	SSL_CTX_free(probe);
	if ((ret = spool_reader_new(sh->spool, &sh->reader)))
		goto err;
	if ((ret = -pthread_create(&sh->thread, NULL, ship_main, sh))) {
		snprintf(err, errlen, "cannot start the shipper thread: %s", strerror(-ret));
		goto err;
	}
	sh->started = true;
	*out = sh;
	return 0;
err:
	if (ret == -ENOMEM && err && !err[0])
		snprintf(err, errlen, "out of memory");
	ship_free(sh);
	return ret;
}

void ship_kick(struct ship *sh)
{
	if (!sh)
		return;
	pthread_mutex_lock(&sh->lock);
	sh->kicked = true;
	pthread_cond_signal(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
	spool_wake(sh->spool);
}

void ship_stop(struct ship *sh, uint32_t drain_ms)
{
	struct timespec ts;
	if (!sh)
		return;
	if (sh->started) {
		pthread_mutex_lock(&sh->lock);
		sh->draining = true;
		if (!drain_ms)
			sh->stop = true;
		pthread_cond_broadcast(&sh->cond);
		pthread_mutex_unlock(&sh->lock);
		spool_wake(sh->spool);
		osutil_deadline_ms(&ts, drain_ms);
		if (pthread_timedjoin_np(sh->thread, NULL, &ts) != 0) {
			/* Out of time: break any blocking read/write and join. */
			pthread_mutex_lock(&sh->lock);
			sh->stop = true;
			if (sh->fd >= 0)
				shutdown(sh->fd, SHUT_RDWR);
			pthread_cond_broadcast(&sh->cond);
			pthread_mutex_unlock(&sh->lock);
			spool_wake(sh->spool);
			pthread_join(sh->thread, NULL);
		}
	}
	ship_free(sh);
}

void ship_get_stats(struct ship *sh, struct ship_stats *st)
{
	pthread_mutex_lock(&sh->lock);
	*st = sh->st;
	pthread_mutex_unlock(&sh->lock);
}
