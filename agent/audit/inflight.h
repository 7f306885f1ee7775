/* inflight: the journal of exchanges that are going upstream and have not
 * ended yet (spool_dir/inflight), so that a crash leaves an incomplete
 * event for each of them, never no event (DESIGN.md decision 11).
 *
 * The file is an array of fixed slots; a slot holds one opaque record (the
 * caller's encoding of what it knew when the exchange started) and a state:
 * open, or done at the sequence number the complete event got. The caller
 * marks a slot done BEFORE it appends the complete event, so after a crash
 * "done at seq S" with S not in the spool means the event was lost with the
 * crash and the exchange is still reported; done with S in the spool means
 * nothing is owed. Durability of the marks follows spool_fsync: always =
 * fdatasync before inflight_begin/inflight_done return; batch and never =
 * written (a killed process loses nothing: the page cache survives it),
 * synced with the spool's flusher (inflight_fd) before the spool itself.
 *
 * Thread-safe (one mutex; never held across an fdatasync). Must never: let
 * a record cross its slot, or trust a length read back from disk. */
#ifndef VIGIL_INFLIGHT_H
#define VIGIL_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INFLIGHT_SLOT 4096u
#define INFLIGHT_MAX_RECORD (INFLIGHT_SLOT - 32u)

struct inflight;

/* Opens (creating 0600) path. sync_each: fdatasync every mark (spool_fsync
 * always). The slots found are kept for inflight_recover. */
int inflight_open(const char *path, bool sync_each, struct inflight **out, char *err, size_t errlen);
/* Accepts NULL. A clean close empties the file: nothing is in flight. */
void inflight_close(struct inflight *j);

/* Calls fn for every exchange the previous run left unaccounted for (open,
 * or done at a seq above last_seq, the newest seq the spool holds), then
 * forgets them all. Returns how many. fn's record is borrowed. */
size_t inflight_recover(struct inflight *j, uint64_t last_seq,
			void (*fn)(void *arg, const uint8_t *rec, size_t len), void *arg);

/* How many inflight_recover would report (nothing is forgotten). */
size_t inflight_pending(const struct inflight *j, uint64_t last_seq);

/* Records an exchange about to go upstream. Returns a slot (>= 0) for
 * inflight_done, or -errno (-EMSGSIZE: len > INFLIGHT_MAX_RECORD). */
int inflight_begin(struct inflight *j, const void *rec, size_t len);
/* The exchange's complete event is about to be appended with seq. */
int inflight_done(struct inflight *j, int slot, uint64_t seq);

/* The journal's fd, for the spool flusher to sync (batch mode). */
int inflight_fd(const struct inflight *j);

size_t inflight_open_count(struct inflight *j);

#endif
