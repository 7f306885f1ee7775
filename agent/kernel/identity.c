/* identity: /proc lookups are best effort: a short-lived client may have
 * exited by the time the agent looks, and then the kernel-recorded fields
 * (uid, pid, comm, cgroup id) still stand. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdbool.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "kernel/identity.h"

static void read_cgroup(int tgid, char *out, size_t outlen)
{
	char path[64], line[1024];
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", tgid);
	out[0] = 0;
	if (!(f = fopen(path, "re")))
		return;
	while (fgets(line, sizeof(line), f)) {
		/* cgroup v2 line: "0::/path" */
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, outlen, "%s", line + 3);
			break;
		}
	}
	fclose(f);
}

/* Is s[0..n) exactly a container id (64 hex digits, as runtimes write it)? */
static bool is_container_id(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The id in one path component c[0..n), or NULL. */
static const char *component_id(const char *c, size_t n)
{
	static const char *const prefixes[] = { "docker-", "libpod-", "cri-containerd-", "crio-", NULL };
	static const char scope[] = ".scope";
	const size_t sl = sizeof(scope) - 1;

	if (is_container_id(c, n))
		return c;
	if (n <= sl || memcmp(c + n - sl, scope, sl))
		return NULL;
	n -= sl;
	for (int i = 0; prefixes[i]; i++) {
		size_t pl = strlen(prefixes[i]);

		if (n > pl && !memcmp(c, prefixes[i], pl) && is_container_id(c + pl, n - pl))
			return c + pl;
	}
	return NULL;
}

bool identity_container_id(const char *cgroup, char *out, size_t outlen)
{
	const char *end, *start, *id;

	if (!out || outlen < 65)
		return false;
	out[0] = 0;
	if (!cgroup)
		return false;
	/* From the last component back: the nearest runtime is the one that
	 * runs this process. */
	end = cgroup + strlen(cgroup);
	while (end > cgroup) {
		start = end;
		while (start > cgroup && start[-1] != '/')
			start--;
		if ((id = component_id(start, (size_t)(end - start)))) {
			memcpy(out, id, 64);
			out[64] = 0;
			return true;
		}
		end = start > cgroup ? start - 1 : cgroup;
	}
	return false;
}

/* For an interpreter, the script it runs: the first argument that is not
 * an option, made absolute against the process's cwd. "python3 -c code"
 * and "node -e code" have no script. Policy can then tell a packaged tool
 * from a script someone dropped in their home directory. */
static void read_script(int tgid, const char *comm, char *out, size_t outlen)
{
	static const char *const interpreters[] = { "python", "node", "perl", "ruby", "php", "bash",
						    "sh", "dash", "zsh", "deno", "bun", "Rscript", NULL };
	char path[64], args[4096], cwd[512];
	ssize_t n;
	int fd;
	bool interp = false;

	out[0] = 0;
	for (int i = 0; interpreters[i]; i++)
		if (!strncmp(comm, interpreters[i], strlen(interpreters[i])))
			interp = true;
	if (!interp)
		return;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", tgid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, args, sizeof(args) - 1);
	close(fd);
	if (n <= 0)
		return;
	args[n] = 0;
	for (const char *a = args + strlen(args) + 1; a < args + n; a += strlen(a) + 1) {
		if (!strcmp(a, "-c") || !strcmp(a, "-e") || !strcmp(a, "-m") || !strcmp(a, "--eval"))
			return;
		if (a[0] == '-')
			continue;
		if (a[0] == '/') {
			snprintf(out, outlen, "%s", a);
			return;
		}
		snprintf(path, sizeof(path), "/proc/%d/cwd", tgid);
		ssize_t cl = readlink(path, cwd, sizeof(cwd) - 1);
		if (cl <= 0)
			return;
		cwd[cl] = 0;
		snprintf(out, outlen, "%s/%s", cwd, a);
		return;
	}
}

void identity_from_origin(struct identity *id, const struct vigil_origin *o)
{
	char path[64];
	ssize_t n;

	memset(id, 0, sizeof(*id));
	id->uid = id->gid = id->pid = id->tid = -1;
	if (!o)
		return;
	id->uid = o->uid;
	id->gid = o->gid;
	id->pid = o->tgid;
	id->tid = o->pid;
	memcpy(id->comm, o->comm, VIGIL_COMM_LEN);
	id->comm[VIGIL_COMM_LEN] = 0;
	id->dst_port = o->orig_port;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (!memcmp(o->orig_addr, mapped, 12))
		inet_ntop(AF_INET, o->orig_addr + 12, id->dst_ip, sizeof(id->dst_ip));
	else
		inet_ntop(AF_INET6, o->orig_addr, id->dst_ip, sizeof(id->dst_ip));

	snprintf(path, sizeof(path), "/proc/%u/exe", o->tgid);
	n = readlink(path, id->exe, sizeof(id->exe) - 1);
	id->exe[n > 0 ? n : 0] = 0;
	read_cgroup((int)o->tgid, id->cgroup, sizeof(id->cgroup));
	identity_container_id(id->cgroup, id->container_id, sizeof(id->container_id));
	read_script((int)o->tgid, id->comm, id->script, sizeof(id->script));

	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwuid_r(o->uid, &pw, buf, sizeof(buf), &res) == 0 && res) {
		snprintf(id->user, sizeof(id->user), "%s", pw.pw_name);
		id->ngroups = (int)(sizeof(id->groups) / sizeof(id->groups[0]));
		if (getgrouplist(pw.pw_name, pw.pw_gid, id->groups, &id->ngroups) < 0)
			id->ngroups = 0;
	} else {
		snprintf(id->user, sizeof(id->user), "%u", o->uid);
	}
}
