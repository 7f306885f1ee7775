/* cmetrics: relaxed atomic counters and their Prometheus rendering. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cmetrics.h"

static const char *const reject_names[REJ__COUNT] = {
	[REJ_MALFORMED] = "malformed", [REJ_OVERSIZED] = "oversized", [REJ_BAD_SIGNATURE] = "bad_signature",
	[REJ_BAD_CHAIN] = "bad_chain", [REJ_AGENT_MISMATCH] = "agent_mismatch", [REJ_REPLAY] = "replay",
	[REJ_REVOKED] = "revoked", [REJ_KEY_MISMATCH] = "key_mismatch", [REJ_NO_HELLO] = "no_hello",
};
static const char *const api_names[API__COUNT] = {
	[API_EVENTS] = "events", [API_TOP] = "top", [API_VERIFY] = "verify", [API_ENROLL] = "enroll",
	[API_REVOKE] = "revoke", [API_AGENTS] = "agents", [API_EXPORT] = "export", [API_METRICS] = "metrics",
	[API_DENIED] = "denied",
};

static uint64_t events_in, dups, batches, store_errors, tls_failures, retained;
static uint64_t act_allow, act_block, act_redact, act_alert, act_other;
static uint64_t rejects[REJ__COUNT], api[API__COUNT];
static int64_t conns, newest_us;

#define ADD(v, n) __atomic_fetch_add(&(v), (n), __ATOMIC_RELAXED)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)

const char *reject_reason_name(enum reject_reason r) { return (unsigned)r < REJ__COUNT ? reject_names[r] : "other"; }

void cmetrics_event_in(uint64_t n, const char *action)
{
	ADD(events_in, n);
	if (!action || !*action)
		ADD(act_other, n);
	else if (!strcmp(action, "allow"))
		ADD(act_allow, n);
	else if (!strcmp(action, "block"))
		ADD(act_block, n);
	else if (!strcmp(action, "redact"))
		ADD(act_redact, n);
	else if (!strcmp(action, "alert"))
		ADD(act_alert, n);
	else
		ADD(act_other, n);
}
void cmetrics_duplicates(uint64_t n) { ADD(dups, n); }
void cmetrics_batch(void) { ADD(batches, 1); }
void cmetrics_reject(enum reject_reason r) { if ((unsigned)r < REJ__COUNT) ADD(rejects[r], 1); }
void cmetrics_store_error(void) { ADD(store_errors, 1); }
void cmetrics_tls_failure(void) { ADD(tls_failures, 1); }
void cmetrics_conn(int d) { ADD(conns, d); }
void cmetrics_api(enum api_action a) { if ((unsigned)a < API__COUNT) ADD(api[a], 1); }
void cmetrics_retained(uint64_t n) { ADD(retained, n); }
void cmetrics_newest_event(int64_t t)
{
	int64_t cur = GET(newest_us);
	while (t > cur && !__atomic_compare_exchange_n(&newest_us, &cur, t, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

char *cmetrics_render(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, nw = GET(newest_us);
	fprintf(f, "# HELP vigil_collector_events_total Audit events committed to the store.\n"
		   "# TYPE vigil_collector_events_total counter\n");
	fprintf(f, "vigil_collector_events_total{action=\"allow\"} %llu\n", (unsigned long long)GET(act_allow));
	fprintf(f, "vigil_collector_events_total{action=\"block\"} %llu\n", (unsigned long long)GET(act_block));
	fprintf(f, "vigil_collector_events_total{action=\"redact\"} %llu\n", (unsigned long long)GET(act_redact));
	fprintf(f, "vigil_collector_events_total{action=\"alert\"} %llu\n", (unsigned long long)GET(act_alert));
	fprintf(f, "vigil_collector_events_total{action=\"other\"} %llu\n", (unsigned long long)GET(act_other));
	fprintf(f, "# TYPE vigil_collector_events_in_total counter\nvigil_collector_events_in_total %llu\n",
		(unsigned long long)GET(events_in));
	fprintf(f, "# TYPE vigil_collector_duplicate_events_total counter\nvigil_collector_duplicate_events_total %llu\n",
		(unsigned long long)GET(dups));
	fprintf(f, "# TYPE vigil_collector_batches_total counter\nvigil_collector_batches_total %llu\n",
		(unsigned long long)GET(batches));
	fprintf(f, "# HELP vigil_collector_rejected_total Batches or connections refused, by reason.\n"
		   "# TYPE vigil_collector_rejected_total counter\n");
	for (int i = 0; i < REJ__COUNT; i++)
		fprintf(f, "vigil_collector_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
			(unsigned long long)GET(rejects[i]));
	fprintf(f, "# TYPE vigil_collector_store_errors_total counter\nvigil_collector_store_errors_total %llu\n",
		(unsigned long long)GET(store_errors));
	fprintf(f, "# TYPE vigil_collector_tls_failures_total counter\nvigil_collector_tls_failures_total %llu\n",
		(unsigned long long)GET(tls_failures));
	fprintf(f, "# TYPE vigil_collector_agent_connections gauge\nvigil_collector_agent_connections %lld\n",
		(long long)GET(conns));
	fprintf(f, "# HELP vigil_collector_lag_seconds Now minus the time of the newest committed event.\n"
		   "# TYPE vigil_collector_lag_seconds gauge\nvigil_collector_lag_seconds %.3f\n",
		nw ? (double)(now - nw) / 1e6 : 0.0);
	fprintf(f, "# TYPE vigil_collector_retention_deleted_total counter\nvigil_collector_retention_deleted_total %llu\n",
		(unsigned long long)GET(retained));
	fprintf(f, "# HELP vigil_collector_api_requests_total API requests by action.\n"
		   "# TYPE vigil_collector_api_requests_total counter\n");
	for (int i = 0; i < API__COUNT; i++)
		fprintf(f, "vigil_collector_api_requests_total{action=\"%s\"} %llu\n", api_names[i],
			(unsigned long long)GET(api[i]));
	fclose(f);
	return buf;
}
