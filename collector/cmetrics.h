/* cmetrics: the collector's counters, exported in the Prometheus text format
 * on the API's /metrics. Lock-free (relaxed atomics): any thread may bump a
 * counter. Must never hold a label value that came from the network other
 * than the fixed reason names below. */
#ifndef VIGIL_CMETRICS_H
#define VIGIL_CMETRICS_H

#include <stdint.h>

struct jsonw;

/* One enum of reasons, used by the reject Ack, the log line, the security
 * event and the metric label alike. */
enum reject_reason {
	REJ_MALFORMED, REJ_OVERSIZED, REJ_BAD_SIGNATURE, REJ_BAD_CHAIN, REJ_AGENT_MISMATCH, REJ_REPLAY,
	REJ_REVOKED, REJ_KEY_MISMATCH, REJ_NO_HELLO, REJ__COUNT
};
const char *reject_reason_name(enum reject_reason r);

enum api_action { API_EVENTS, API_TOP, API_VERIFY, API_ENROLL, API_REVOKE, API_AGENTS, API_EXPORT,
		  API_METRICS, API_DENIED, API__COUNT };

void cmetrics_event_in(uint64_t n, const char *action);
void cmetrics_duplicates(uint64_t n);
void cmetrics_batch(void);
void cmetrics_reject(enum reject_reason r);
void cmetrics_store_error(void);
void cmetrics_tls_failure(void);
void cmetrics_conn(int delta);
void cmetrics_api(enum api_action a);
void cmetrics_newest_event(int64_t time_us);
void cmetrics_retained(uint64_t n);
/* Appends the exposition text to *buf (malloc'ed, caller frees). */
char *cmetrics_render(void);

#endif
