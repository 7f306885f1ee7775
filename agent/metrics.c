/* metrics: Prometheus text exposition format 0.0.4. The request is not
 * parsed beyond its first line: GET /ready answers the readiness check
 * (Kubernetes probes, scripts/k8s/), any other path the metrics page (the
 * endpoint serves nothing else). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "audit/audit.h"
#include "kernel/capture.h"
#include "loop.h"
#include "metrics.h"
#include "kernel/targets.h"

struct metrics_listener {
	struct loop_watch w;
	struct agent *ag;
};

static const char *const actions[] = { "allow", "alert", "redact", "block" };

void metrics_count_action(struct agent *ag, const char *action)
{
	for (int i = 0; i < 4; i++)
		if (action && !strcmp(action, actions[i])) {
			atomic_fetch_add(&ag->stats.requests[i], 1);
			return;
		}
}

void metrics_count_reason(struct agent *ag, enum reason why)
{
	if (why > REASON_NONE && why < REASON__COUNT)
		atomic_fetch_add(&ag->stats.refused[why], 1);
}

size_t metrics_render(struct agent *ag, char *out, size_t outlen)
{
	struct audit_stats st;
	size_t n = 0;
#define EMIT(...) do { int k = snprintf(out + n, outlen - n, __VA_ARGS__); \
	if (k > 0) n = n + (size_t)k < outlen ? n + (size_t)k : outlen - 1; } while (0)

	memset(&st, 0, sizeof(st));
	if (ag->audit)
		audit_get_stats(ag->audit, &st);
	EMIT("# HELP vigil_agent_connections_total Redirected connections by outcome.\n"
	     "# TYPE vigil_agent_connections_total counter\n");
	EMIT("vigil_agent_connections_total{outcome=\"accepted\"} %lu\n", atomic_load(&ag->stats.accepted));
	EMIT("vigil_agent_connections_total{outcome=\"passthrough\"} %lu\n", atomic_load(&ag->stats.passthrough));
	EMIT("vigil_agent_connections_total{outcome=\"intercepted\"} %lu\n", atomic_load(&ag->stats.intercepted));
	EMIT("vigil_agent_connections_total{outcome=\"no_origin\"} %lu\n", atomic_load(&ag->stats.no_origin));
	EMIT("vigil_agent_connections_total{outcome=\"upstream_failed\"} %lu\n", atomic_load(&ag->stats.upstream_fail));
	EMIT("# HELP vigil_agent_refused_total Connections and requests the agent refused, by reason.\n"
	     "# TYPE vigil_agent_refused_total counter\n");
	for (int r = REASON_NONE + 1; r < REASON__COUNT; r++)
		EMIT("vigil_agent_refused_total{reason=\"%s\"} %lu\n", reason_name((enum reason)r),
		     atomic_load(&ag->stats.refused[r]));
	EMIT("# HELP vigil_agent_dns_answers_total DNS answers received by watched processes and parsed.\n"
	     "# TYPE vigil_agent_dns_answers_total counter\nvigil_agent_dns_answers_total %lu\n",
	     atomic_load(&ag->stats.dns_answers));
	EMIT("# HELP vigil_agent_dns_learned_total Target addresses learned from clients' DNS answers.\n"
	     "# TYPE vigil_agent_dns_learned_total counter\nvigil_agent_dns_learned_total %lu\n",
	     atomic_load(&ag->stats.dns_learned));
	if (ag->cap) {
		struct capture_guard_stats g;

		capture_guard_get_stats(ag->cap, &g);
		EMIT("# HELP vigil_agent_guard_segments_total First-flight segments the guard read, held or dropped.\n"
		     "# TYPE vigil_agent_guard_segments_total counter\n"
		     "vigil_agent_guard_segments_total{outcome=\"inspected\"} %llu\n"
		     "vigil_agent_guard_segments_total{outcome=\"held\"} %llu\n"
		     "vigil_agent_guard_segments_total{outcome=\"dropped\"} %llu\n",
		     (unsigned long long)g.inspected, (unsigned long long)g.held, (unsigned long long)g.dropped);
		EMIT("# HELP vigil_agent_guard_refused_total Connections the first-flight guard refused.\n"
		     "# TYPE vigil_agent_guard_refused_total counter\nvigil_agent_guard_refused_total %llu\n",
		     (unsigned long long)g.refused);
		EMIT("# HELP vigil_agent_guard_destroyed_total Refused sockets sent to the helper to destroy (the client told at once).\n"
		     "# TYPE vigil_agent_guard_destroyed_total counter\nvigil_agent_guard_destroyed_total %lu\n",
		     atomic_load(&ag->stats.guard_destroyed));
	}
	EMIT("# HELP vigil_agent_targets Addresses in the target set now.\n"
	     "# TYPE vigil_agent_targets gauge\nvigil_agent_targets %zu\n",
	     ag->targets ? targets_count(ag->targets) : (size_t)0);
	EMIT("# HELP vigil_agent_buffered_bytes Request buffer bytes charged to limits.max_buffered_bytes.\n"
	     "# TYPE vigil_agent_buffered_bytes gauge\nvigil_agent_buffered_bytes %lu\n",
	     atomic_load(&ag->stats.buffered));
	EMIT("# HELP vigil_agent_buffer_refusals_total Requests refused (503) because the buffer budget was spent.\n"
	     "# TYPE vigil_agent_buffer_refusals_total counter\nvigil_agent_buffer_refusals_total %lu\n",
	     atomic_load(&ag->stats.buffer_refusals));
	EMIT("# HELP vigil_agent_links_detached BPF links no longer attached to the watched cgroup.\n"
	     "# TYPE vigil_agent_links_detached gauge\nvigil_agent_links_detached %d\n",
	     ag->cap ? capture_links_detached(ag->cap) : 0);
	EMIT("# HELP vigil_agent_netns_listeners Other network namespaces (containers) the agent listens in now.\n"
	     "# TYPE vigil_agent_netns_listeners gauge\nvigil_agent_netns_listeners %lu\n", atomic_load(&ag->stats.netns_listeners));
	EMIT("# HELP vigil_agent_intercept_thread_handoffs_total Intercepted connections the event loop "
	     "handed to a thread (HTTP/2, a new upstream, a WebSocket, a linger, a large request).\n"
	     "# TYPE vigil_agent_intercept_thread_handoffs_total counter\nvigil_agent_intercept_thread_handoffs_total %lu\n",
	     atomic_load(&ag->stats.loop_handoffs));
	EMIT("# HELP vigil_agent_connections_active Connections open now.\n"
	     "# TYPE vigil_agent_connections_active gauge\n"
	     "vigil_agent_connections_active %lu\n", atomic_load(&ag->stats.active));
	EMIT("# HELP vigil_agent_requests_total Intercepted HTTP requests by the action taken.\n"
	     "# TYPE vigil_agent_requests_total counter\n");
	for (int i = 0; i < 4; i++)
		EMIT("vigil_agent_requests_total{action=\"%s\"} %lu\n", actions[i],
		     atomic_load(&ag->stats.requests[i]));
	EMIT("# HELP vigil_agent_audit_seq Sequence number of the last audit event.\n"
	     "# TYPE vigil_agent_audit_seq counter\nvigil_agent_audit_seq %llu\n", (unsigned long long)st.seq);
	EMIT("# HELP vigil_agent_spool_bytes Bytes in the audit spool.\n"
	     "# TYPE vigil_agent_spool_bytes gauge\nvigil_agent_spool_bytes %llu\n",
	     (unsigned long long)st.spool_bytes);
	EMIT("# HELP vigil_agent_ship_lag_events Audit events not yet acknowledged by the collector.\n"
	     "# TYPE vigil_agent_ship_lag_events gauge\nvigil_agent_ship_lag_events %llu\n",
	     (unsigned long long)(st.seq > st.spool_acked_seq ? st.seq - st.spool_acked_seq : 0));
	EMIT("# HELP vigil_agent_shipped_events_total Audit events acknowledged by the collector.\n"
	     "# TYPE vigil_agent_shipped_events_total counter\nvigil_agent_shipped_events_total %llu\n",
	     (unsigned long long)st.shipped_events);
	EMIT("# HELP vigil_agent_rejected_batches_total Batches the collector rejected (quarantined).\n"
	     "# TYPE vigil_agent_rejected_batches_total counter\nvigil_agent_rejected_batches_total %llu\n",
	     (unsigned long long)st.rejected_batches);
	EMIT("# HELP vigil_agent_dropped_events_total Events dropped from a full spool (recorded as gaps).\n"
	     "# TYPE vigil_agent_dropped_events_total counter\nvigil_agent_dropped_events_total %llu\n",
	     (unsigned long long)st.spool_dropped);
	EMIT("# HELP vigil_agent_shipping_halted 1 if the collector refuses this agent's identity or key "
	     "(shipping stopped, spool kept).\n"
	     "# TYPE vigil_agent_shipping_halted gauge\nvigil_agent_shipping_halted %d\n",
	     st.shipping_halted ? 1 : 0);
	EMIT("# HELP vigil_agent_collector_connected 1 if connected to the collector.\n"
	     "# TYPE vigil_agent_collector_connected gauge\nvigil_agent_collector_connected %d\n",
	     st.collector_connected ? 1 : 0);
#undef EMIT
	return n;
}

/* Ready means what a node needs from the agent: this loop answers (so
 * its listeners are served) and every BPF link is still attached (so
 * connections are redirected). Anything less is 503 with the reason. */
static size_t ready_render(struct agent *ag, char *out, size_t outlen, bool *ok)
{
	int detached = ag->cap ? capture_links_detached(ag->cap) : -1;
	int n;

	*ok = detached == 0;
	if (detached < 0)
		n = snprintf(out, outlen, "not ready: BPF programs not loaded\n");
	else if (detached > 0)
		n = snprintf(out, outlen, "not ready: %d BPF links detached\n", detached);
	else
		n = snprintf(out, outlen, "ready\n");
	return n > 0 && (size_t)n < outlen ? (size_t)n : 0;
}

static void metrics_event(struct loop_watch *w, uint32_t events)
{
	struct metrics_listener *l = (struct metrics_listener *)w;
	static char body[8192], resp[8448];
	(void)events;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return;
		/* A scraper's request is one small packet; do not wait for more
		 * than a moment for it (this runs on the event loop). */
		struct timeval tv = { 0, 200000 };
		char req[2048];
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		ssize_t rn = recv(fd, req, sizeof(req), 0);
		if (rn > 0) {
			bool probe = (size_t)rn > 11 && !memcmp(req, "GET /ready ", 11);
			bool ok = true;
			size_t bl = probe ? ready_render(l->ag, body, sizeof(body), &ok) :
					    metrics_render(l->ag, body, sizeof(body));
			int hl = snprintf(resp, sizeof(resp),
					  "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
					  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
					  ok ? "200 OK" : "503 Service Unavailable", bl);
			if (hl > 0 && (size_t)hl + bl < sizeof(resp)) {
				memcpy(resp + hl, body, bl);
				/* A scraper that went away gets nothing: no retry. */
				(void)!send(fd, resp, (size_t)hl + bl, MSG_NOSIGNAL);
			}
		}
		close(fd);
	}
}

int metrics_listen(struct agent *ag, int lfd)
{
	/* One endpoint per process, watched for its whole life: static, so
	 * nothing is left to free (LeakSanitizer counted the heap copy). */
	static struct metrics_listener l;
	if (l.ag)
		return -EBUSY;
	l.w.fd = lfd;
	l.w.fn = metrics_event;
	l.ag = ag;
	return loop_add(ag->loop, &l.w, EPOLLIN);
}
