/* vigil-agent: loads the capture programs, listens for redirected
 * connections and serves them until SIGTERM. Start-up failures are fatal
 * with a clear message; after "vigil-agent ready" nothing a client or an
 * upstream does can stop the process. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "agent.h"
#include "audit/audit.h"
#include "policy/budget.h"
#include "proxy/exchange.h"
#include "policy/policy.h"
#include "kernel/capture.h"
#include "net/conn.h"
#include "kernel/dnsmsg.h"
#include "net/egress.h"
#include "net/certgen.h"
#include "log.h"
#include "loop.h"
#include "proxy/mcp.h"
#include "kernel/mcpexec.h"
#include "content/mcplaunch.h"
#include "metrics.h"
#include "net/netns.h"
#include "osutil.h"
#include "privs.h"
#include "proxy/proxyconn.h"
#include "kernel/targets.h"
#include "content/vault.h"
#include "providers/webapps.h"

#define VIGIL_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vigil-agent [--config FILE] [--check] [--log-level LEVEL]\n"
		"\n"
		"Puts every connection to a watched LLM endpoint under Vigil's control: eBPF\n"
		"programs at the configured cgroup redirect them to this agent, which\n"
		"identifies the process and user behind each one and relays or intercepts it.\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE      agent configuration (default /etc/vigil/agent.yaml)\n"
		"      --check            validate the configuration and exit: 0 if valid,\n"
		"                         2 with FILE:LINE: reason if not\n"
		"  -l, --log-level LEVEL  error | warning | info | debug (overrides log_level:)\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             this help\n"
		"\n"
		"Signals: SIGHUP reloads the configuration's domains and reopens the audit\n"
		"log; SIGTERM or SIGINT detaches the programs and exits 0.\n"
		"Prints \"vigil-agent ready\" on stderr once attached and accepting.\n");
}

static int apply_target(void *arg, const struct sockaddr *addr, bool add)
{
	struct agent *ag = arg;
	uint16_t port = ntohs(addr->sa_family == AF_INET ? ((const struct sockaddr_in *)addr)->sin_port :
							   ((const struct sockaddr_in6 *)addr)->sin6_port);
	int ret = 0;

	/* One port: an address:port the first-flight guard caught. */
	if (port)
		return add ? capture_target_add(ag->cap, addr, port) : capture_target_del(ag->cap, addr, port);
	for (size_t i = 0; i < ag->cfg->n_target_ports; i++) {
		int r = add ? capture_target_add(ag->cap, addr, ag->cfg->target_ports[i]) :
			      capture_target_del(ag->cap, addr, ag->cfg->target_ports[i]);
		if (r)
			ret = r;
	}
	return ret;
}

/* A kernel address (16 bytes, IPv4 as v4-mapped) and host-order port as a
 * sockaddr: AF_INET for v4-mapped, AF_INET6 otherwise. */
/* targets: which names are chat web apps (their addresses are told apart) */
static bool webapp_host(const char *name)
{
	return webapp_by_host(name, strlen(name), NULL) != NULL;
}

static void kernel_sockaddr(const uint8_t addr[16], uint16_t port, struct sockaddr_storage *ss)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(ss, 0, sizeof(*ss));
	if (!memcmp(addr, mapped, 12)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, addr + 12, 4);
		s4->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, addr, 16);
		s6->sin6_port = htons(port);
	}
}

/* In closed mode the target map survives a restart (pinned): remove what
 * the new configuration no longer watches, so a dropped endpoint is not
 * redirected forever. */
static void drop_stale_targets(struct agent *ag)
{
	static struct vigil_target_key keys[4096];
	int n = capture_target_list(ag->cap, keys, sizeof(keys) / sizeof(keys[0]));

	for (int i = 0; i < n && i < (int)(sizeof(keys) / sizeof(keys[0])); i++) {
		struct sockaddr_storage ss;
		bool port_ok = false;
		kernel_sockaddr(keys[i].addr, 0, &ss);   /* port 0: the all-ports entry */
		for (size_t p = 0; p < ag->cfg->n_target_ports; p++)
			port_ok |= ag->cfg->target_ports[p] == keys[i].port;
		if (proxyconn_is_proxy_addr(ag, (struct sockaddr *)&ss, keys[i].port))
			continue;
		if (!port_ok || !targets_contains(ag->targets, (struct sockaddr *)&ss))
			capture_target_del(ag->cap, (struct sockaddr *)&ss, keys[i].port);
	}
}

static void dns_learned(void *arg, const char *qname, const struct sockaddr *addr, uint32_t ttl)
{
	struct agent *ag = arg;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (targets_learn(ag->targets, qname, addr, ttl, loop_now_ms() / 1000) != 1)
		return;
	atomic_fetch_add(&ag->stats.dns_learned, 1);
	inet_ntop(addr->sa_family,
		  addr->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
					     : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr,
		  ip, sizeof(ip));
	log_info("learned target %s for %s from a client's DNS answer", ip, qname);
}

/* The attached cgroup as /proc/PID/cgroup names it (relative to the
 * cgroup2 mount), for netns_prime. A cgroup given outside that mount (a
 * node's root mounted elsewhere in a Kubernetes pod) counts as every
 * process: "/". */
static const char *cgroup_prefix(const char *cgroup)
{
	static char root[512];
	size_t rl;

	if (config_cgroup2_root(root, sizeof(root)))
		return "/";
	rl = strlen(root);
	if (strncmp(cgroup, root, rl) || (cgroup[rl] != '/' && cgroup[rl] != 0))
		return "/";
	return cgroup[rl] ? cgroup + rl : "/";
}

/* A DNS answer a watched process received (kernel copy, hostile bytes). */
static void dns_answer(void *arg, const uint8_t *msg, size_t len)
{
	struct agent *ag = arg;

	if (!ag->targets)
		return;
	atomic_fetch_add(&ag->stats.dns_answers, 1);
	dnsmsg_addresses(msg, len, dns_learned, ag);
}

/* The programs whose exec the kernel stops for mcplaunch: the built-in
 * launchers and mcp_commands (reloaded with the config). */
static int watch_launches(struct agent *ag)
{
	const char *names[VIGIL_EXEC_MAX_NAMES];
	size_t n = mcplaunch_watch_names(ag->cfg, names, VIGIL_EXEC_MAX_NAMES);
	return capture_exec_set_names(ag->cap, names, n);
}

static void kernel_event(void *arg, const struct vigil_kevent *kev)
{
	struct agent *ag = arg;
	struct identity id;
	struct audit_event ev;

	identity_from_origin(&id, &kev->origin);
	audit_event_init(&ev, "bypass");
	conn_info_identity_event(&id, &ev);
	ev.action = kev->reason == VIGIL_ORIGIN_REFUSED || kev->reason == VIGIL_ORIGIN_NETNS_NEW ? "block" : "allow";
	ev.reason = kev->reason == VIGIL_ORIGIN_REFUSED ? (kev->proto == IPPROTO_UDP ? "udp_refused" : "agent_down_fail_closed") :
		    kev->reason == VIGIL_ORIGIN_NETNS_NEW ? "netns_no_listener" :
		    kev->reason == VIGIL_ORIGIN_BYPASS_NETNS ? "other_netns" :
		    kev->reason == VIGIL_ORIGIN_BYPASS_DOWN ? "agent_down_fail_open" : "bypass";
	audit_emit(ag->audit, &ev);
	/* A namespace with no listener of ours yet: open one, so the
	 * client's retry lands in the agent. */
	if (kev->reason == VIGIL_ORIGIN_NETNS_NEW)
		netns_seen(ag->netns, &kev->origin);
}

/* The name a refused first flight carried, printable for the event and
 * the log: raw bytes from the wire, so anything outside a host name's
 * alphabet makes it "?" rather than reaching a log line. */
static void guard_name(const struct vigil_guard_event *g, char *out, size_t outlen)
{
	size_t n = g->name_len < outlen - 1 ? g->name_len : outlen - 1;

	for (size_t i = 0; i < n; i++) {
		char ch = g->name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '-' || ch == '_')) {
			snprintf(out, outlen, "?");
			return;
		}
		out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	out[n] = 0;
	if (n && out[n - 1] == '.')
		out[n - 1] = 0;
}

/* Audits a first-flight refusal with the sender's identity. */
static void guard_audit(struct agent *ag, const struct vigil_guard_event *g, const struct identity *id,
			const char *name)
{
	static const char *const via[] = { "", "TLS server name", "HTTP CONNECT", "HTTP request target", "HTTP Host" };
	char why[VIGIL_GUARD_NAME_MAX + 160];
	struct audit_event ev;

	if (g->reason == VIGIL_GUARD_WATCHED)
		snprintf(why, sizeof(why), "%s %s sent to %s port %u, which the agent does not capture",
			 via[g->via < 5 ? g->via : 0], name, id->dst_ip, id->dst_port);
	else if (g->reason == VIGIL_GUARD_TFO)
		snprintf(why, sizeof(why), "TCP Fast Open to %s port %u: data sent with the SYN cannot be checked",
			 id->dst_ip, id->dst_port);
	else
		snprintf(why, sizeof(why), "a TLS or HTTP first flight the guard cannot read whole, to %s port %u",
			 id->dst_ip, id->dst_port);
	audit_event_init(&ev, "connection");
	conn_info_identity_event(id, &ev);
	ev.sni = name[0] ? name : NULL;
	ev.action = "block";
	ev.reason = g->reason == VIGIL_GUARD_WATCHED ? "first_flight" :
		    g->reason == VIGIL_GUARD_TFO ? "first_flight_tfo" : "first_flight_unparsed";
	ev.error = why;
	audit_emit(ag->audit, &ev);
	log_warn("first-flight guard refused pid %lld (%s, uid %lld): %s", (long long)id->pid, id->comm,
		 (long long)id->uid, why);
}

/* The first-flight guard refused a connection: audit it, and put the
 * address:port a watched name went to in the target set so that the
 * client's retry lands in the agent. */
static void guard_refused(void *arg, const struct vigil_guard_event *g)
{
	struct agent *ag = arg;
	struct sockaddr_storage ss;
	struct identity id;
	char name[VIGIL_GUARD_NAME_MAX + 1];

	guard_name(g, name, sizeof(name));
	identity_from_origin(&id, &g->origin);
	if (!g->origin.tgid)
		id.pid = id.tid = id.gid = -1;   /* refused outside the sender's send(): owner uid only */
	/* Nothing of the connection left the host, but TCP keeps the data
	 * queued and retries: the client learns of the refusal when its
	 * socket is destroyed (TFO was refused in connect() already). */
	if (g->reason != VIGIL_GUARD_TFO)
		netns_destroy(ag->netns, g);
	guard_audit(ag, g, &id, name);
	if (g->reason != VIGIL_GUARD_WATCHED || !ag->targets || !id.dst_port)
		return;
	kernel_sockaddr(g->origin.orig_addr, id.dst_port, &ss);
	/* As long as a learned DNS answer may live: the client retries now.
	 * A CONNECT went to an explicit proxy: its retry is a proxy request
	 * (read by proxyconn), not a first flight for the TLS classifier. */
	if (g->via == VIGIL_GUARD_VIA_CONNECT) {
		if (proxyconn_learn(ag, name, (struct sockaddr *)&ss, ag->cfg->dns_max_ttl_s, loop_now_ms() / 1000) == 1)
			log_info("proxy %s port %u added: CONNECT %s was sent there", id.dst_ip, id.dst_port, name);
		return;
	}
	if (targets_learn_endpoint(ag->targets, name, (struct sockaddr *)&ss, ag->cfg->dns_max_ttl_s,
				   loop_now_ms() / 1000) == 1)
		log_info("target %s port %u added: %s was sent there", id.dst_ip, id.dst_port, name);
}

struct runtime {
	struct agent *ag;
	struct loop_watch sigw;
	struct loop_watch kevw;
	struct loop_timer housekeeping;
	const char *config_path;
};

/* Tamper signals: what an attacker with root (or a careless admin) would
 * change to get around the agent. Each change is audited once. */
#define TRUST_ANCHOR "/usr/local/share/ca-certificates/vigil-intercept.crt"

struct watched_file {
	const char *path;
	struct timespec mtime;
	bool present;
};

static struct {
	struct watched_file files[3];   /* config, policy, trust anchor */
	int detached_reported;
	bool anchor_reported;
} tamper;

static void watch_file(struct watched_file *w, const char *path)
{
	struct stat st;
	w->path = path;
	w->present = path && stat(path, &st) == 0;
	if (w->present)
		w->mtime = st.st_mtim;
}

static void tamper_init(struct agent *ag, const char *config_path)
{
	watch_file(&tamper.files[0], config_path);
	watch_file(&tamper.files[1], ag->cfg->policy);
	watch_file(&tamper.files[2], TRUST_ANCHOR);
}

static void tamper_event(struct agent *ag, const char *reason, const char *error)
{
	struct audit_event ev;
	audit_event_init(&ev, "tamper");
	ev.action = "alert";
	ev.reason = reason;
	ev.error = error;
	audit_emit(ag->audit, &ev);
	log_err("tamper: %s", error);
}

static void tamper_check(struct agent *ag)
{
	char msg[512];
	int detached = capture_links_detached(ag->cap);
	struct stat st;

	if (detached > tamper.detached_reported) {
		snprintf(msg, sizeof(msg), "%d of the agent's BPF links were detached from %s", detached,
			 ag->cfg->cgroup);
		tamper_event(ag, "programs_detached", msg);
	}
	tamper.detached_reported = detached;
	for (int i = 0; i < 2; i++) {
		struct watched_file *w = &tamper.files[i];
		if (!w->path || stat(w->path, &st) != 0 || !w->present)
			continue;
		if (st.st_mtim.tv_sec != w->mtime.tv_sec || st.st_mtim.tv_nsec != w->mtime.tv_nsec) {
			w->mtime = st.st_mtim;
			snprintf(msg, sizeof(msg), "%s changed while the agent runs (not yet applied: SIGHUP applies it)",
				 w->path);
			tamper_event(ag, "config_changed", msg);
		}
	}
	/* The interception CA was trusted when the agent started, and is not now. */
	if (tamper.files[2].present && stat(TRUST_ANCHOR, &st) != 0 && !tamper.anchor_reported) {
		tamper.anchor_reported = true;
		tamper_event(ag, "ca_untrusted", "the interception CA was removed from the system trust store");
	}
}

/* Policy reloads compile a Hyperscan database (a second or more): off the
 * event loop, one at a time. A bad file keeps the running policy; either
 * way the outcome is audited. */
static void *policy_reload_main(void *arg)
{
	struct agent *ag = arg;
	struct audit_event ev;
	char *errs = NULL;
	int ret = exchange_reload_policy(ag, &errs);
	struct policy *p = ag->policy ? policy_holder_get(ag->policy) : NULL;

	audit_event_init(&ev, "policy_reload");
	ev.action = ret ? "block" : "allow";
	ev.reason = ret ? "rejected: the running policy stays" : "applied";
	if (errs) {
		errs[strcspn(errs, "\n")] = 0;   /* the first mistake; the log has them all */
		ev.error = errs;
	}
	ev.policy_hash = p ? policy_hash(p) : NULL;
	audit_emit(ag->audit, &ev);
	if (ret)
		log_err("policy reload refused, keeping the running policy: %s", errs ? errs : strerror(-ret));
	else if (p)
		log_info("policy reloaded: %s (%zu rules)", policy_path(p), policy_rule_count(p));
	policy_unref(p);
	free(errs);
	atomic_store(&ag->reloading, false);
	return NULL;
}

static void reload(struct runtime *rt)
{
	struct config *nc;
	char err[512];
	if (config_load(rt->config_path, &nc, err, sizeof(err))) {
		log_err("reload refused, keeping the running configuration: %s", err);
		return;
	}
	targets_set_domains(rt->ag->targets, (const char *const *)nc->endpoints, nc->n_endpoints);
	proxyconn_set_names(rt->ag, (const char *const *)nc->endpoints, nc->n_endpoints);
	if (rt->ag->cfg->first_flight_guard)
		capture_guard_set_names(rt->ag->cap, (const char *const *)nc->endpoints, nc->n_endpoints);
	/* Domain lists are read by the loop thread only; swap them under it. */
	struct config *old = rt->ag->cfg;
	char **e = old->endpoints, **p = old->passthrough;
	size_t ne = old->n_endpoints, np = old->n_passthrough;
	old->endpoints = nc->endpoints, old->n_endpoints = nc->n_endpoints;
	old->passthrough = nc->passthrough, old->n_passthrough = nc->n_passthrough;
	nc->endpoints = e, nc->n_endpoints = ne;
	nc->passthrough = p, nc->n_passthrough = np;
	/* MCP servers and stdio MCP programs follow, like the domains. */
	mcp_swap_servers(old, nc);
	char **mc = old->mcp_commands;
	size_t nmc = old->n_mcp_commands;
	old->mcp_commands = nc->mcp_commands, old->n_mcp_commands = nc->n_mcp_commands;
	nc->mcp_commands = mc, nc->n_mcp_commands = nmc;
	int wret = watch_launches(rt->ag);
	if (wret && wret != -EOPNOTSUPP)
		log_err("reload: cannot give the exec watch its program names: %s", strerror(-wret));
	/* Classification settings go with the domain lists (loop thread only). */
	old->unwatched_sni = nc->unwatched_sni;
	old->rejected_ca_passthrough = nc->rejected_ca_passthrough;
	old->rejected_ca_ttl_ms = nc->rejected_ca_ttl_ms;
	old->clienthello_timeout_ms = nc->clienthello_timeout_ms;
	/* HTTP/2 on or off for new connections (the limits stay as started:
	 * connection threads read them without a lock) */
	old->h2.enabled = nc->h2.enabled;
	if (rt->ag->certgen)
		certgen_offer_h2(rt->ag->certgen, nc->h2.enabled);
	config_free(nc);
	audit_reopen(rt->ag->audit);
	watch_file(&tamper.files[0], rt->config_path);
	watch_file(&tamper.files[1], rt->ag->cfg->policy);
	log_info("configuration reloaded (domains, mcp_servers, mcp_commands, unwatched_sni, clienthello_timeout, http2.enabled, audit log)");
	if (rt->ag->policy && !atomic_exchange(&rt->ag->reloading, true)) {
		pthread_t t;
		if (pthread_create(&t, NULL, policy_reload_main, rt->ag) == 0)
			pthread_detach(t);
		else
			atomic_store(&rt->ag->reloading, false);
	}
}

/* A relayed connection holds six fds (two sockets, two pipes), an
 * intercepted one its socket and, while serving, an upstream: the usual
 * soft limit of 1024 would refuse clients long before max_connections.
 * The soft limit goes up to what that needs, within the hard limit. */
static void raise_fd_limit(uint32_t max_connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_connections * 6 + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= want)
		return;
	/* Still privileged here (CAP_SYS_RESOURCE): the hard limit may be
	 * raised too. Else (an unprivileged run) up to the hard limit. */
	struct rlimit up = { want, rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? want : rl.rlim_max };
	if (!setrlimit(RLIMIT_NOFILE, &up))
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_warn("cannot raise the open file limit: %s", strerror(errno));
	if (rl.rlim_cur < want)
		log_warn("open file limit %llu: fewer than max_connections (%u) may fit",
			 (unsigned long long)rl.rlim_cur, max_connections);
}

static void signal_event(struct loop_watch *w, uint32_t events)
{
	struct runtime *rt = (struct runtime *)((char *)w - offsetof(struct runtime, sigw));
	struct signalfd_siginfo si;
	(void)events;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			reload(rt);
		else
			loop_stop(rt->ag->loop);
	}
}

static void kev_event(struct loop_watch *w, uint32_t events)
{
	struct runtime *rt = (struct runtime *)((char *)w - offsetof(struct runtime, kevw));
	(void)events;
	capture_events_poll(rt->ag->cap, kernel_event, rt->ag);
}

/* Housekeeping, once a second: the agent's only periodic wake-up
 * (connection deadlines are timers of their own). */
static void housekeeping(struct loop_timer *t, uint64_t now)
{
	static uint64_t last_save;
	struct runtime *rt = (struct runtime *)((char *)t - offsetof(struct runtime, housekeeping));
	struct agent *ag = rt->ag;
	loop_timer_set(ag->loop, t, now + 1000);
	netns_tick(ag->netns, now);
	tamper_check(ag);
	/* expired vault values are wiped within a second of their ttl */
	if (ag->vaults)
		vault_store_sweep(ag->vaults);
	/* Budget counters survive restarts: saved every few seconds when changed. */
	if (ag->budgets && now - last_save >= 5000 && budget_dirty(ag->budgets)) {
		last_save = now;
		budget_save(ag->budgets, time(NULL));
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *config_path = "/etc/vigil/agent.yaml", *level = NULL;
	bool check = false;
	struct agent ag = { 0 };
	struct runtime rt = { .ag = &ag };
	char err[1024];
	int opt, ret = 1, lfd4 = -1, lfd6 = -1, lfdm = -1, nsfd = -1;
	pid_t nspid = -1;
	sigset_t mask;

	log_set_prog("vigil-agent");
	/* One malloc arena per intercepting thread would multiply idle memory. */
	mallopt(M_ARENA_MAX, 2);
	/* Request bodies (up to max_body_bytes each) must go back to the
	 * system when freed: a fixed mmap threshold stops glibc from raising
	 * it after the first big free and keeping later bodies in the heap,
	 * where limits.max_buffered_bytes would no longer bound the RSS. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	while ((opt = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'k': check = true; break;
		case 'l': level = optarg; break;
		case 'V': printf("vigil-agent %s\n", VIGIL_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(config_path, &ag.cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (config_resolve_identity(ag.cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		config_free(ag.cfg);
		return 2;
	}
	if (check) {
		/* The policy is part of what the agent would run with. */
		if (ag.cfg->policy) {
			struct policy *p = NULL;
			char *errs = NULL;
			int pr = policy_load(ag.cfg->policy, NULL, &p, &errs);
			policy_unref(p);
			if (pr) {
				fprintf(stderr, "%s", errs ? errs : strerror(-pr));
				free(errs);
				config_free(ag.cfg);
				return 2;
			}
		}
		printf("%s: ok\n", config_path);
		config_free(ag.cfg);
		return 0;
	}
	log_set_level((enum log_level)ag.cfg->log_level);
	if (level) {
		static const char *const lv[] = { "error", "warning", "info", "debug" };
		for (int i = 0; i < 4; i++)
			if (!strcmp(level, lv[i]))
				log_set_level((enum log_level)i);
	}
	rt.config_path = config_path;
	signal(SIGPIPE, SIG_IGN);
	/* Block the signals we handle before any thread exists, so every thread
	 * inherits the mask and they arrive only through the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	/* Core dumps would contain the interception CA key. */
	setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
	raise_fd_limit(ag.cfg->max_connections);
	/* The helper that opens listeners in containers' namespaces keeps
	 * CAP_SYS_ADMIN, so it is forked now: before any key is read, any
	 * map exists or any thread runs. */
	if (netns_helper_spawn(&ag.cfg->listen4, &ag.cfg->listen6, ag.cfg->first_flight_guard, &nsfd, &nspid, err, sizeof(err)))
		log_warn("%s: target connections from other network namespaces will be refused", err);

	struct audit_opts ao = { .agent_id = ag.cfg->agent_id, .log_path = ag.cfg->audit_log,
				 .state_dir = ag.cfg->spool_dir,
				 .spool_max_bytes = ag.cfg->spool_max_bytes,
				 .spool_fsync = ag.cfg->spool_fsync,
				 .collector_address = ag.cfg->collector.address,
				 .collector_ca = ag.cfg->collector.ca,
				 .collector_cert = ag.cfg->collector.cert,
				 .collector_key = ag.cfg->collector.key,
				 .ship_batch_events = ag.cfg->ship_batch_events,
				 .ship_interval_ms = ag.cfg->ship_interval_ms };
	if (audit_open(&ao, &ag.audit, err, sizeof(err))) {
		log_err("audit: %s", err);
		goto out;
	}
	if (!(ag.loop = loop_new())) {
		log_err("cannot create the event loop");
		goto out;
	}
	if ((lfd4 = osutil_listen((struct sockaddr *)&ag.cfg->listen4, sizeof(ag.cfg->listen4), err,
			      sizeof(err))) < 0) {
		log_err("%s", err);
		goto out;
	}
	if (ag.cfg->listen6.sin6_port &&
	    (lfd6 = osutil_listen((struct sockaddr *)&ag.cfg->listen6, sizeof(ag.cfg->listen6), err,
			      sizeof(err))) < 0) {
		log_err("%s", err);
		goto out;
	}
	if (ag.cfg->metrics.sin_port &&
	    (lfdm = osutil_listen((struct sockaddr *)&ag.cfg->metrics, sizeof(ag.cfg->metrics), err,
			      sizeof(err))) < 0) {
		log_err("metrics: %s", err);
		goto out;
	}
	if (intercept_init(&ag, err, sizeof(err))) {
		log_err("%s", err);
		goto out;
	}

	struct capture_opts co = {
		.cgroup_path = ag.cfg->cgroup,
		.pin_dir = ag.cfg->pin_dir,
		.fail_closed = ag.cfg->fail_closed,
		.quic_all = ag.cfg->quic_all,
		.listen4 = ag.cfg->listen4,
		.listen6 = ag.cfg->listen6,
		.host_netns_cookie = capture_netns_cookie(),
		.dns_fn = ag.cfg->dns_learning ? dns_answer : NULL,
		.dns_arg = &ag,
		.guard_fn = ag.cfg->first_flight_guard ? guard_refused : NULL,
		.guard_arg = &ag,
		.exec_fn = mcpexec_event,
		.exec_arg = &ag,
	};
	if (capture_open(&co, &ag.cap, err, sizeof(err))) {
		log_err("capture: %s", err);
		goto out;
	}
	if (ag.cfg->first_flight_guard &&
	    (ret = capture_guard_set_names(ag.cap, (const char *const *)ag.cfg->endpoints, ag.cfg->n_endpoints)) &&
	    ret != -EOPNOTSUPP) {
		log_err("cannot give the first-flight guard its names: %s", strerror(-ret));
		ret = 1;
		goto out;
	}
	if ((ret = watch_launches(&ag)) && ret != -EOPNOTSUPP) {
		log_err("cannot give the exec watch its program names: %s", strerror(-ret));
		ret = 1;
		goto out;
	}
	struct targets_opts to = { .apply = apply_target, .arg = &ag, .is_app = webapp_host,
				   .min_ttl_s = ag.cfg->dns_min_ttl_s, .max_ttl_s = ag.cfg->dns_max_ttl_s };
	if (!(ag.targets = targets_new(&to))) {
		log_err("out of memory");
		goto out;
	}
	for (size_t i = 0; i < ag.cfg->n_target_addrs; i++)
		if ((ret = targets_add_static(ag.targets, (struct sockaddr *)&ag.cfg->target_addrs[i]))) {
			log_err("cannot add a target address: %s", strerror(-ret));
			ret = 1;
			goto out;
		}
	err[0] = 0;
	if ((ret = proxyconn_init(&ag, err, sizeof(err))) || (ret = egress_init(&ag, err, sizeof(err)))) {
		log_err("%s", err[0] ? err : strerror(-ret));
		ret = 1;
		goto out;
	}
	targets_set_domains(ag.targets, (const char *const *)ag.cfg->endpoints, ag.cfg->n_endpoints);
	/* Resolve once before announcing readiness, so that the first
	 * connection after "ready" is already captured. */
	targets_refresh(ag.targets, loop_now_ms() / 1000);
	drop_stale_targets(&ag);
	if ((ret = targets_start(ag.targets))) {
		log_err("cannot start the resolver: %s", strerror(-ret));
		ret = 1;
		goto out;
	}

	if (nsfd >= 0) {
		ag.netns = netns_new(&ag, nsfd, nspid);
		nsfd = -1;
		if (!ag.netns)
			log_warn("netns: cannot watch the helper: other network namespaces will be refused");
		netns_prime(ag.netns, cgroup_prefix(ag.cfg->cgroup));
	}
	rt.sigw.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	rt.sigw.fn = signal_event;
	rt.kevw.fd = capture_events_fd(ag.cap);
	rt.kevw.fn = kev_event;
	if (rt.sigw.fd < 0 || loop_add(ag.loop, &rt.sigw, EPOLLIN) ||
	    (rt.kevw.fd >= 0 && loop_add(ag.loop, &rt.kevw, EPOLLIN)) ||
	    conn_listen(&ag, lfd4) || (lfd6 >= 0 && conn_listen(&ag, lfd6)) ||
	    (lfdm >= 0 && metrics_listen(&ag, lfdm))) {
		log_err("event loop setup failed: %s", strerror(errno));
		ret = 1;
		goto out;
	}
	tamper_init(&ag, config_path);
	rt.housekeeping.fn = housekeeping;
	loop_timer_set(ag.loop, &rt.housekeeping, loop_now_ms() + 1000);
	/* Everything privileged is done: attached, listening, keys read. */
	if (ag.cfg->user) {
		const char *paths[] = { ag.cfg->spool_dir, ag.cfg->audit_log,
					ag.cfg->fail_closed ? ag.cfg->pin_dir : NULL, NULL };
		if (privs_become(ag.cfg->user, paths, err, sizeof(err))) {
			log_err("%s", err);
			ret = 1;
			goto out;
		}
	}
	if (privs_drop(err, sizeof(err))) {
		log_err("cannot drop privileges: %s", err);
		ret = 1;
		goto out;
	}

	struct audit_event ev;
	char start_reason[160];
	size_t left_open = 0;
	bool unclean = audit_previous_stop(ag.audit, &left_open);
	/* A crash loop shows as agent_start after agent_start saying so. */
	/* version= first: the collector's console shows it per agent. */
	snprintf(start_reason, sizeof(start_reason), "version=%s fail_mode=%s previous_stop=%s open_exchanges=%zu",
		 VIGIL_VERSION, ag.cfg->fail_closed ? "closed" : "open", unclean ? "unclean" : "clean", left_open);
	audit_event_init(&ev, "agent_start");
	ev.reason = start_reason;
	ev.error = unclean ? "unclean_stop" : NULL;
	if (unclean)
		log_warn("the previous run stopped uncleanly, leaving %zu exchanges open", left_open);
	audit_emit(ag.audit, &ev);
	audit_report_interrupted(ag.audit);
	log_info("watching %zu domains (%zu addresses) at %s, fail_mode %s, interception %s",
		 ag.cfg->n_endpoints, targets_count(ag.targets), ag.cfg->cgroup,
		 ag.cfg->fail_closed ? "closed" : "open", ag.certgen ? "on" : "off (no ca_cert)");
	/* Loading the policy and compiling the detectors leave tens of MB
	 * free in the heap: give them back before serving. */
	malloc_trim(0);
	fprintf(stderr, "vigil-agent ready\n");
	fflush(stderr);

	ret = loop_run(ag.loop) ? 1 : 0;
	log_info("stopping");
	audit_event_init(&ev, "agent_stop");
	audit_emit(ag.audit, &ev);
out:
	for (int i = 0; i < 500 && atomic_load(&ag.reloading); i++)
		usleep(10000);   /* a policy reload thread still holds the agent */
	netns_free(ag.netns);
	if (nsfd >= 0) {
		close(nsfd);
		waitpid(nspid, NULL, 0);
	}
	if (ag.loop)
		conn_close_all(&ag);
	targets_free(ag.targets);
	proxyconn_free(&ag);
	egress_free();
	capture_free(ag.cap);
	intercept_shutdown(&ag);
	if (lfd4 >= 0)
		close(lfd4);
	if (lfd6 >= 0)
		close(lfd6);
	if (lfdm >= 0)
		close(lfdm);
	loop_free(ag.loop);
	audit_close(ag.audit);
	config_free(ag.cfg);
	return ret;
}
