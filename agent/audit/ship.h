/* ship: the agent's shipper thread. Reads durable records from the spool,
 * batches them (size and time bounded), signs and compresses them
 * (evcodec), sends them over mutual TLS 1.3 to the collector, and deletes
 * them from the spool only after the collector's ack (sent after commit).
 *
 * Exactly once: a batch is resent unchanged until acked (the collector
 * deduplicates on agent/boot/seq, so a resend after "committed but the ack
 * was lost" stores nothing twice); the spool forgets only acked seqs. A
 * REJECTED batch is quarantined (spool_quarantine) and reported through
 * on_loss, never retried forever; unless the rejection is about the agent
 * itself (agent_mismatch, revoked, key_mismatch, bad_signature, ...): every
 * batch would get it, so shipping stops with an error and the spool is
 * kept for a restart with the configuration fixed (ship_stats.halted). RETRY and every network error back off
 * exponentially (capped, with jitter) and retry.
 *
 * Never touches the proxy's hot path: its own thread, its own connection;
 * audit_emit() only appends to the spool. The process must ignore SIGPIPE
 * (vigil-agent does): a collector closing mid-write is an error here. */
#ifndef VIGIL_SHIP_H
#define VIGIL_SHIP_H

#include <stdbool.h>
#include <stdint.h>
#include <openssl/evp.h>
#include "audit/spool.h"

struct ship_opts {
	const char *address;            /* collector HOST:PORT or [V6]:PORT (copied) */
	const char *ca;                 /* PEM anchors for the collector's certificate (copied) */
	const char *cert, *key;         /* the agent's client certificate and key (copied) */
	const char *agent_id;           /* must equal the certificate's CN (copied) */
	const char *boot_id;            /* copied */
	EVP_PKEY *sign_key;             /* Ed25519 batch signing key (a reference is taken) */
	struct spool *spool;            /* borrowed; must outlive ship_stop() */
	uint32_t batch_events;          /* 0 = 1000 */
	uint32_t interval_ms;           /* a partial batch waits at most this; 0 = 1000 */
	uint32_t backoff_min_ms;        /* 0 = 200 */
	uint32_t backoff_max_ms;        /* 0 = 10000 */
	uint32_t io_timeout_ms;         /* connect, handshake, ack wait; 0 = 30000 */
	int zstd_level;                 /* 0 = 3 */
	/* Called on the shipper thread when records left the spool without an
	 * ack (quarantined after a REJECTED batch), so the caller can record a
	 * gap event. reason: the collector's words (untrusted, printable). */
	void (*on_loss)(void *arg, const struct spool_loss *loss, const char *reason);
	void *arg;
};

struct ship;

/* Validates the TLS files and starts the thread. */
int ship_start(const struct ship_opts *o, struct ship **out, char *err, size_t errlen);

/* Ships what is durable for up to drain_ms (0 = not at all), then stops
 * the thread and frees. Accepts NULL. */
void ship_stop(struct ship *sh, uint32_t drain_ms);

/* Wakes the thread (new records); cheap, callable from any thread. */
void ship_kick(struct ship *sh);

struct ship_stats {
	uint64_t batches_acked, events_acked, batches_rejected;
	uint64_t bytes_sent;            /* batch frame payloads (zstd), resends included */
	uint64_t raw_bytes;             /* the same batches before zstd */
	uint64_t connects, failures;
	uint64_t acked_seq;
	bool connected;
	bool halted;                    /* the collector refuses this agent: not shipping */
	char halted_reason[256];        /* the collector's words */
};
void ship_get_stats(struct ship *sh, struct ship_stats *st);

#endif
