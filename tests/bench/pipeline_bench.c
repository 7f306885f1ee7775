/* pipeline_bench: drives the agent's audit pipeline (agent/audit/audit.c ->
 * spool -> ship) with typical request events and reports what the issue
 * asks of `make bench`: events per second from audit_emit() to
 * committed-at-collector (acked), bytes per event on the wire after zstd,
 * and CPU per event (the emitting thread alone = the proxy's hot-path cost,
 * and the whole agent process including the shipper). Built and run by
 * tests/bench/pipeline_bench.sh against a real vigil-collector.
 *
 * Usage: pipeline_bench SPOOL_DIR HOST:PORT PKI_DIR AGENT_ID N always|batch|never
 * (PKI_DIR holds ca.crt, agent.crt, agent.key as `vigil-collector enroll`
 * writes them). Prints one "key=value ..." line; exit 1 if not all events
 * were acknowledged within 300 s. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A typical intercepted request: identity, destination, model, usage; a
 * finding on one in seven. */
static void emit_one(struct audit *a, unsigned i)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	ev.user = "alice";
	ev.uid = 1000;
	ev.gid = 1000;
	ev.pid = 4000 + (int)(i % 50);
	ev.tid = ev.pid + (int)(i % 3);
	ev.comm = "python3";
	ev.exe = "/usr/bin/python3.11";
	ev.cgroup = "/user.slice/user-1000.slice/session-2.scope";
	ev.dst_ip = "104.18.7.192";
	ev.dst_port = 443;
	ev.sni = "api.openai.com";
	ev.provider = "openai";
	ev.method = "POST";
	ev.path = "/v1/chat/completions";
	ev.model = i % 3 ? "gpt-4o-mini" : "gpt-4o";
	ev.stream = i % 2;
	ev.action = i % 7 ? "allow" : "redact";
	ev.rule = i % 7 ? NULL : "pii";
	if (!(i % 7)) {
		ev.findings[0].type = "EMAIL";
		ev.findings[0].count = 1 + i % 3;
		ev.n_findings = 1;
	}
	ev.status = 200;
	ev.bytes_up = 800 + (i * 7919) % 4000;
	ev.bytes_down = 2000 + (i * 104729) % 30000;
	ev.prompt_tokens = 120 + (i * 31) % 900;
	ev.completion_tokens = 30 + (i * 17) % 600;
	ev.latency_ms = 300 + (i * 13) % 4000;
	ev.policy_hash = "3f9a1c0d";
	audit_emit(a, &ev);
}

int main(int argc, char **argv)
{
	char err[512], ca[4200], crt[4200], key[4200];
	struct audit *a = NULL;
	struct audit_stats st;
	unsigned n;
	int fsync_mode;
	double t0, t1, t2, c0, c1, p0, p2;

	if (argc != 7) {
		fprintf(stderr, "usage: %s SPOOL_DIR HOST:PORT PKI_DIR AGENT_ID N always|batch|never\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	n = (unsigned)strtoul(argv[5], NULL, 10);
	fsync_mode = !strcmp(argv[6], "always") ? 0 : !strcmp(argv[6], "never") ? 2 : 1;
	snprintf(ca, sizeof(ca), "%s/ca.crt", argv[3]);
	snprintf(crt, sizeof(crt), "%s/agent.crt", argv[3]);
	snprintf(key, sizeof(key), "%s/agent.key", argv[3]);
	struct audit_opts o = {
		.agent_id = argv[4], .state_dir = argv[1], .spool_fsync = fsync_mode,
		.collector_address = argv[2], .collector_ca = ca, .collector_cert = crt,
		.collector_key = key, .ship_batch_events = 1000, .ship_interval_ms = 200,
		.ship_backoff_max_ms = 1000,
	};
	if (audit_open(&o, &a, err, sizeof(err))) {
		fprintf(stderr, "pipeline_bench: %s\n", err);
		return 2;
	}
	p0 = cpu_s(RUSAGE_SELF);
	c0 = cpu_s(RUSAGE_THREAD);
	t0 = now_s();
	for (unsigned i = 0; i < n; i++)
		emit_one(a, i);
	t1 = now_s();
	c1 = cpu_s(RUSAGE_THREAD);
	audit_get_stats(a, &st);
	uint64_t last = st.seq;
	for (;;) {
		audit_get_stats(a, &st);
		if (st.spool_acked_seq >= last || now_s() - t0 > 300)
			break;
		usleep(2000);
	}
	t2 = now_s();
	p2 = cpu_s(RUSAGE_SELF);
	printf("events=%u emit_per_s=%.0f emit_cpu_us_per_event=%.2f acked=%llu e2e_per_s=%.0f "
	       "wire_bytes_per_event=%.1f raw_bytes_per_event=%.1f agent_cpu_us_per_event=%.2f "
	       "batches=%llu\n",
	       n, n / (t1 - t0), (c1 - c0) * 1e6 / n, (unsigned long long)st.shipped_events,
	       st.shipped_events / (t2 - t0),
	       st.shipped_events ? (double)st.wire_bytes / (double)st.shipped_events : 0.0,
	       st.shipped_events ? (double)st.raw_bytes / (double)st.shipped_events : 0.0,
	       (p2 - p0) * 1e6 / n, (unsigned long long)st.shipped_batches);
	fflush(stdout);
	int ok = st.spool_acked_seq >= last;
	audit_close(a);
	return ok ? 0 : 1;
}
