/* mcpexec: the exec watch's events (see mcpexec.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "kernel/mcpexec.h"
#include "content/inspect.h"
#include "content/mcplaunch.h"
#include "agent.h"
#include "audit/audit.h"
#include "config.h"
#include "kernel/identity.h"
#include "log.h"
#include "policy/policy.h"

/* /proc/<pid>/cmdline split in place into argv; returns argc. *cut: the
 * buffer or argv filled up (the last argument may be a part of one). */
static size_t read_argv(int pid, char *buf, size_t cap, const char **argv, size_t max, bool *cut)
{
	char path[64];
	size_t len = 0, argc = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = 0;
	size_t i = 0;
	for (; i < len && argc < max; i += strlen(buf + i) + 1)
		argv[argc++] = buf + i;
	*cut = len == cap - 1 || i < len;
	return argc;
}

/* The parent's executable: the MCP client that launched the server. */
static void parent_exe(int pid, char *out, size_t outlen)
{
	char path[64], stat[512];
	int fd, ppid = 0;
	ssize_t n;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return;
	stat[n] = 0;
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses */
	char *rp = strrchr(stat, ')');
	if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1 || ppid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/exe", ppid);
	n = readlink(path, out, outlen - 1);
	out[n > 0 ? n : 0] = 0;
}

/* Through the pidfd taken before anything was read: the signal reaches
 * the process whose command line was judged, never a later one that got
 * its pid (a stopped process cannot exit by itself, but another user's
 * SIGKILL can end it while we look). */
static void signal_launch(int pidfd, int pid, int sig)
{
	/* without a pidfd (out of descriptors), by pid: a stopped launch must
	 * never be left stopped */
	if ((pidfd >= 0 ? syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) : kill(pid, sig)) == 0)
		return;
	if (errno != ESRCH)
		log_warn("mcp: cannot signal the stdio server launch pid %d (%s): %s", pid,
			 sig == SIGKILL ? "kill" : "continue", strerror(errno));
}

/* The policy's word on the launch: block kills it; anything else lets it
 * run (warn and alert are recorded as such: a launch has no one to show
 * a message to). */
static const char *decide(struct agent *ag, const struct identity *id, const struct mcplaunch *l, char *rule,
			  size_t rulelen)
{
	struct policy *p = ag->policy ? policy_holder_get(ag->policy) : NULL;
	struct policy_decision d;
	struct policy_ctx c;
	const char *action = "allow";

	rule[0] = 0;
	if (!p)
		return action;
	conn_info_identity_ctx(id, &c);
	c.mcp_server = l->package;
	c.mcp_method = "stdio_launch";
	c.mcp_rules_only = true;
	if (policy_eval(p, &c, &d) == 0 && !d.is_default) {
		action = d.enforce == POLICY_BLOCK ? "block" : d.enforce == POLICY_REDACT ? "allow" :
			 policy_action_name(d.enforce);
		snprintf(rule, rulelen, "%s", d.rule);   /* the name lives in the policy */
	}
	policy_unref(p);
	return action;
}

/* The command line for the event, scanned by the agent's current
 * detectors (a scratch of its own: launches are rare, and the loop thread
 * has none). Left empty if the scan fails: the launch is still audited. */
static void redacted_command(struct agent *ag, const char *const *argv, size_t argc, bool cut, char *out,
			     size_t outlen, struct audit_event *ae)
{
	struct inspect_result r;
	struct inspect_scratch *s;

	out[0] = 0;
	pthread_mutex_lock(&ag->inspector_lock);
	s = ag->inspector ? inspect_scratch_new(ag->inspector) : NULL;
	pthread_mutex_unlock(&ag->inspector_lock);
	if (!s) {
		log_warn("mcp: no detectors for a stdio server's command line: recorded without it");
		return;
	}
	inspect_result_init(&r);
	if (mcplaunch_command(s, argv, argc, cut, out, outlen, &r) == 0) {
		ae->command = out;
		ae->n_findings = audit_findings_from_counts(r.counts, ae->findings);
	} else {
		log_warn("mcp: a stdio server's command line could not be inspected: recorded without it");
	}
	inspect_result_free(&r);
	inspect_scratch_free(s);
}

void mcpexec_event(void *arg, const struct vigil_exec_event *ev)
{
	struct agent *ag = arg;
	const char *argv[MCPLAUNCH_MAX_ARGS];
	char buf[8192], parent[512], rule[128], command[MCPLAUNCH_COMMAND_MAX];
	struct vigil_origin o;
	struct identity id;
	struct mcplaunch l;
	struct audit_event ae;
	const char *action;
	int pid = (int)ev->tgid;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	bool cut = false;

	size_t argc = read_argv(pid, buf, sizeof(buf), argv, MCPLAUNCH_MAX_ARGS, &cut);
	if (!mcplaunch_classify(ev->comm, argv, argc, (const char *const *)ag->cfg->mcp_commands,
				ag->cfg->n_mcp_commands, &l)) {
		if (ev->stopped)
			signal_launch(pidfd, pid, SIGCONT);
		goto out;
	}
	memset(&o, 0, sizeof(o));
	o.tgid = ev->tgid;
	o.pid = ev->pid;
	o.uid = ev->uid;
	o.gid = ev->gid;
	o.cgroup_id = ev->cgroup_id;
	memcpy(o.comm, ev->comm, sizeof(o.comm));
	identity_from_origin(&id, &o);
	parent_exe(pid, parent, sizeof(parent));
	action = decide(ag, &id, &l, rule, sizeof(rule));
	/* Audited first, as a request is before it is forwarded: the process
	 * is stopped meanwhile. */
	audit_event_init(&ae, "mcp");
	conn_info_identity_event(&id, &ae);
	ae.dst_ip = NULL;           /* a launch has no destination */
	ae.dst_port = 0;
	ae.comm = l.program;
	ae.parent_exe = parent[0] ? parent : NULL;
	ae.mcp_server = l.package;
	ae.mcp_method = "stdio_launch";
	ae.action = action;
	ae.rule = rule[0] ? rule : NULL;
	ae.reason = !strcmp(action, "block") ? "mcp_stdio_launch_killed" : NULL;
	redacted_command(ag, argv, argc, cut, command, sizeof(command), &ae);
	audit_emit(ag->audit, &ae);
	/* SIGKILL ends a stopped process too: it never runs a line. */
	if (!strcmp(action, "block"))
		signal_launch(pidfd, pid, SIGKILL);
	else if (ev->stopped)
		signal_launch(pidfd, pid, SIGCONT);
	log_info("mcp: stdio server %s (%s) launched by uid %lld: %s%s%s", l.package, l.program, (long long)id.uid,
		 action, rule[0] ? " by rule " : "", rule);
out:
	/* the command line may hold tokens */
	explicit_bzero(buf, sizeof(buf));
	if (pidfd >= 0)
		close(pidfd);
}
