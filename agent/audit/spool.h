/* spool: the agent's durable on-disk queue of audit records (encoded
 * events), between audit_emit() and the collector's ack.
 *
 * Layout: <dir>/segments/<id>.seg files, each a 24-byte header then
 * records [u32 len][u32 crc32c(len, seq, payload)][u64 seq][payload];
 * <dir>/segments/acked holds the highest seq the collector acknowledged;
 * <dir>/quarantine/ receives segments the collector rejected.
 *
 * Guarantees: a record counts as recorded once spool_append() returned 0
 * (durable on disk once the fsync policy says so: always = before return,
 * batch = within fsync_interval_ms, never = left to the kernel). A torn or
 * corrupt record is detected by its CRC at open and cut, with the loss
 * reported; a full spool (max_bytes, or ENOSPC) drops its oldest segment
 * (the active one too when it is the only one) and reports exactly which
 * seqs went, never silently. The reader only
 * sees durable records, so nothing the collector acknowledged can vanish
 * from the agent's history after a power cut. Records are deleted only by
 * spool_ack() (after the collector committed them), a drop, or quarantine.
 *
 * Thread-safety: one writer (appends are serialized by the caller or by
 * the internal mutex), one reader thread, any thread for ack/quarantine/
 * stats. The mutex is never held across an fsync or a read of a segment. */
#ifndef VIGIL_SPOOL_H
#define VIGIL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_MAX_RECORD (1u << 20)   /* one encoded event, at most */

enum spool_fsync { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_BATCH = 1, SPOOL_FSYNC_NEVER = 2 };

struct spool_opts {
	const char *dir;              /* created 0700 if absent (borrowed) */
	uint64_t max_bytes;           /* 0 = unlimited */
	uint64_t segment_bytes;       /* 0 = clamp(max_bytes / 16, 4 KiB, 4 MiB) */
	enum spool_fsync fsync;
	uint32_t fsync_interval_ms;   /* batch mode: 0 = 100 */
};

/* Records the spool lost. last_seq == 0 means "unknown" (a cut tail: the
 * caller compares with what it knows it appended). why: static string. */
struct spool_loss {
	uint64_t count, first_seq, last_seq;
	const char *why;
};

struct spool;

int spool_open(const struct spool_opts *o, struct spool **out, char *err, size_t errlen);
/* Syncs (unless fsync never) and frees. Accepts NULL. */
void spool_close(struct spool *s);

/* Losses found while opening (corrupt or torn records cut). Copies up to
 * max entries and returns how many there were. */
size_t spool_open_losses(struct spool *s, struct spool_loss *out, size_t max);

/* The last record in the spool: *rec is malloc'ed (caller frees).
 * -ENOENT if the spool holds no record. */
int spool_last(struct spool *s, uint64_t *seq, uint8_t **rec, size_t *len);

/* Appends one record; seq must exceed every seq appended before. If older
 * segments had to be dropped to make room, *loss (optional) says which
 * seqs (count 0 = none). -EMSGSIZE if len > SPOOL_MAX_RECORD, -ENOSPC if
 * even dropping everything old left no room, other -errno from the disk. */
int spool_append(struct spool *s, uint64_t seq, const void *rec, size_t len,
		 struct spool_loss *loss);

/* The same for a record that reports a loss (a gap event): when the disk
 * is full and nothing older is left to drop, it may take the space kept in
 * reserve (<dir>/reserve, 64 KiB, rebuilt once there is room again), so
 * the record saying what was lost is not lost itself. */
int spool_append_reserved(struct spool *s, uint64_t seq, const void *rec, size_t len,
			  struct spool_loss *loss);

/* A file that must be durable no later than the records appended after
 * it was written (the in-flight journal): the flusher and spool_sync
 * fdatasync it first. -1 = none. Call before any append. */
void spool_set_companion(struct spool *s, int fd);

/* fdatasync the active segment now (any mode). */
int spool_sync(struct spool *s);

/* Deletes every record with seq <= seq (whole segments; the collector
 * committed them) and persists the watermark. */
int spool_ack(struct spool *s, uint64_t seq);

/* Records the reader handed out, not acked, whose segment a full disk
 * dropped meanwhile: after the shipper stopped, they exist nowhere and are
 * a loss to report. Fills out (at most max ranges, oldest first). */
size_t spool_held_lost(struct spool *s, struct spool_loss *out, size_t max);

/* Moves every segment holding a seq in [first_seq, last_seq] to
 * <dir>/quarantine/ and describes the records that left the queue in
 * *loss. -ENOENT if none matched. */
int spool_quarantine(struct spool *s, uint64_t first_seq, uint64_t last_seq,
		     struct spool_loss *loss);

struct spool_stats {
	uint64_t bytes;          /* on disk, headers included */
	uint64_t segments;
	uint64_t first_seq;      /* oldest record held (0 = none) */
	uint64_t last_seq;       /* newest record appended (0 = none) */
	uint64_t durable_seq;    /* newest record the reader may see */
	uint64_t acked_seq;
	uint64_t dropped;        /* records dropped since open */
};

/* For a reader that has read everything: spool_snapshot() before reading,
 * then spool_wait() blocks until a record beyond that durable seq is
 * durable, spool_wake() is called, or timeout_ms passes (0: no timeout).
 * Nothing wakes a reader that has nothing to read. */
void spool_snapshot(struct spool *s, uint64_t *durable_seq, uint64_t *wake_gen);
void spool_wait(struct spool *s, uint64_t durable_seq, uint64_t wake_gen, uint32_t timeout_ms);
void spool_wake(struct spool *s);
void spool_get_stats(struct spool *s, struct spool_stats *st);

/* ---- reader (one thread) ---- */

struct spool_reader;

/* Positioned at the oldest record not yet acked. */
int spool_reader_new(struct spool *s, struct spool_reader **out);
void spool_reader_free(struct spool_reader *r);

/* Records read by spool_read: record i is data[off[i] .. off[i]+len[i]). */
struct spool_batch {
	size_t n;
	uint64_t *seq;
	size_t *off, *len;
	uint8_t *data;
	size_t data_len;
	size_t cap_n, cap_data;
};
void spool_batch_reset(struct spool_batch *b);
void spool_batch_free(struct spool_batch *b);   /* frees the contents */

/* Appends to b up to max_records durable records after the reader's
 * position (stopping before max_bytes of payload is exceeded, but always
 * at least one record) and advances. b->n unchanged = nothing new. A
 * record whose CRC fails at read time ends its segment: *loss (optional)
 * says what was skipped. */
int spool_read(struct spool_reader *r, size_t max_records, size_t max_bytes, struct spool_batch *b,
	       struct spool_loss *loss);

/* True if durable records exist after the reader's position. */
bool spool_reader_pending(struct spool_reader *r);

/* CRC32C of p[0..n) as records use it; software = force the table path
 * (tests check both paths agree; not thread-safe with software = true). */
uint32_t spool_crc32c(const void *p, size_t n, bool software);

#endif
