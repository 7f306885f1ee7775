/* sse: incremental text/event-stream parser (WHATWG HTML "Server-sent
 * events", section "Event stream interpretation") over the DECODED response
 * body (after chunked decoding). Bounded state: one buffer of
 * max_event_bytes for an event's data, fixed arrays for the event type and
 * last event id. Never allocates after sse_new, never does I/O or logging.
 *
 * Ownership: sse_new returns a parser the caller owns (sse_free). Bytes
 * passed to sse_feed are borrowed for the call. The event/data pointers
 * given to the callback are borrowed, valid only during the callback. */
#ifndef VIGIL_SSE_H
#define VIGIL_SSE_H

#include <stddef.h>

/* Longest event type ("event:" value) and last-event-id kept. A longer
 * event type makes the event oversized; a longer id is ignored. */
#define SSE_MAX_EVENT_NAME 128
#define SSE_MAX_ID         256

struct sse_parser;

/* max_event_bytes bounds an event's data (data lines joined with "\n").
 * Returns NULL if max_event_bytes is 0 or memory is short. */
struct sse_parser *sse_new(size_t max_event_bytes);
void sse_free(struct sse_parser *p);   /* NULL ok */
/* Forget any partial event and the last event id: a new stream begins. */
void sse_reset(struct sse_parser *p);

/* Called per dispatched event. event is the type ("message" when the event
 * had no event: field); data has its lines joined with "\n", no trailing
 * newline. A non-zero return aborts sse_feed, which returns that value. */
typedef int (*sse_event_fn)(void *arg, const char *event, size_t event_len,
			    const char *data, size_t data_len);

/* Parse buf[0..len). Lines end in LF, CRLF or CR (a CR ending one feed and
 * an LF starting the next count once). Returns 0; or -E2BIG if an event
 * went over the bound during this call (that event is dropped, parsing
 * resumes after its blank line and later events in the same call are still
 * delivered; each oversized event is reported once); or the callback's
 * abort value. A partial event at the end of the stream is never
 * dispatched (as the spec says). */
int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_fn fn, void *arg);

/* The last event id seen (id: field), borrowed; length in *len, 0 if none. */
const char *sse_last_event_id(const struct sse_parser *p, size_t *len);

#endif
