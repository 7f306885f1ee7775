/* audit: the agent's audit events. An event is filled by the code that saw
 * the connection or request, then audit_emit() stamps it (time, event id,
 * boot id, sequence, hash chain over its protobuf encoding, see
 * common/evcodec.h), appends it to the durable spool (agent/audit/spool.h) and
 * writes the JSON line (audit_log, the local tap). If a collector is
 * configured, a shipper thread (agent/audit/ship.h) sends the spool to it.
 * Events carry finding types and counts, never raw values. Thread-safe;
 * audit_emit() never does network I/O and never waits for an fsync unless
 * spool_fsync is "always". */
#ifndef VIGIL_AUDIT_H
#define VIGIL_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "evfields.h"

#define AUDIT_MAX_FINDING_TYPES 32

struct audit_finding {
	const char *type;     /* borrowed, e.g. "EMAIL" */
	uint32_t count;
};

/* An event as the code that saw the connection or request fills it: the
 * fields of common/evfields.h with origin EV (their comments are there),
 * generated. All string pointers are borrowed for the duration of
 * audit_emit(). Finding lists hold up to AUDIT_MAX_FINDING_TYPES. */
#define AUDIT_CTYPE_STR(f) const char *f;
#define AUDIT_CTYPE_U32(f) uint32_t f;
#define AUDIT_CTYPE_U64(f) uint64_t f;
#define AUDIT_CTYPE_I32(f) int32_t f;
#define AUDIT_CTYPE_I64(f) int64_t f;
#define AUDIT_CTYPE_S64(f) int64_t f;
#define AUDIT_CTYPE_BOOL(f) bool f;
#define AUDIT_CTYPE_DOUBLE(f) double f;
#define AUDIT_CTYPE_FINDINGS(f) struct audit_finding f[AUDIT_MAX_FINDING_TYPES]; unsigned n_##f;
#define AUDIT_MEMBER_EV(kind, f) AUDIT_CTYPE_##kind(f)
#define AUDIT_MEMBER_STAMP(kind, f)
#define AUDIT_MEMBER(f, num, kind, json, store, origin) AUDIT_MEMBER_##origin(kind, f)
struct audit_event {
	EVFIELDS(AUDIT_MEMBER)
};

struct audit;

struct audit_opts {
	const char *agent_id;     /* copied */
	const char *log_path;     /* JSON lines; NULL = none (copied) */
	/* spool_dir: the spool, the chain head and the Ed25519 signing key
	 * (agent.ed25519.key, created 0600 at first start). NULL = no spool
	 * and no chain persistence (tests and tools only). */
	const char *state_dir;
	uint64_t spool_max_bytes;     /* 0 = 1 GiB */
	int spool_fsync;              /* CONFIG_FSYNC_* / SPOOL_FSYNC_*: 0 always, 1 batch, 2 never */
	/* collector: address NULL = no shipping (spool + audit_log only). */
	const char *collector_address, *collector_ca, *collector_cert, *collector_key;
	uint32_t ship_batch_events;   /* 0 = 1000 */
	uint32_t ship_interval_ms;    /* 0 = 1000 */
	uint32_t ship_backoff_max_ms; /* 0 = 10 s */
};

int audit_open(const struct audit_opts *o, struct audit **out, char *err, size_t errlen);
void audit_close(struct audit *a);   /* accepts NULL */

/* Initializes ev with "unknown" markers (uid -1, tokens -1, score -1). */
void audit_event_init(struct audit_event *ev, const char *kind);

/* A findings list from counts[FINDING__COUNT] (content/findings.h): the
 * types with a count, in type order, at most AUDIT_MAX_FINDING_TYPES.
 * Returns how many. */
unsigned audit_findings_from_counts(const uint32_t *counts, struct audit_finding out[AUDIT_MAX_FINDING_TYPES]);

/* Stamps and writes ev. Returns the sequence number given, or 0 on error. */
uint64_t audit_emit(struct audit *a, const struct audit_event *ev);

/* Audit before forwarding (DESIGN.md decision 11): records that an
 * exchange described by ev (identity, host, path, decision, findings) is
 * about to go upstream, in the in-flight journal (inflight.h). Returns a
 * ticket for audit_end, 0 if it could not be recorded (the exchange goes
 * on; its complete event is still written at the end). Durable as
 * spool_fsync says: always = on disk before return; batch = survives a
 * killed agent at once, a power cut after the next flush (100 ms);
 * never = survives a killed agent. */
uint64_t audit_begin(struct audit *a, const struct audit_event *ev);
/* The exchange's complete event: audit_emit that also closes the ticket
 * (0 = none), so the exchange is never reported twice. */
uint64_t audit_end(struct audit *a, uint64_t ticket, const struct audit_event *ev);

/* Whether the previous run on this spool stopped without audit_close (a
 * crash, kill -9, OOM kill), and how many exchanges it left open. */
bool audit_previous_stop(const struct audit *a, size_t *open_exchanges);
/* Emits one incomplete request (kind request, error agent_stopped) per
 * exchange the previous run left open; call once, after agent_start.
 * Returns how many. */
size_t audit_report_interrupted(struct audit *a);

/* Reopens the log file (after rotation; SIGHUP). */
int audit_reopen(struct audit *a);

/* The process's boot id (UUID, borrowed). */
const char *audit_boot_id(const struct audit *a);

struct audit_stats {
	uint64_t seq;               /* last sequence given */
	uint64_t spool_bytes, spool_acked_seq, spool_durable_seq, spool_dropped;
	uint64_t gap_events;        /* gap events this process recorded */
	uint64_t shipped_events, shipped_batches, rejected_batches, wire_bytes, raw_bytes;
	bool collector_connected;
	bool shipping_halted;       /* the collector refuses this agent (see ship.h) */
};
void audit_get_stats(struct audit *a, struct audit_stats *st);

#endif
