/* privs: raw capset(2)/prctl(2), no libcap: the rules are few and fixed.
 * Order matters: the bounding set is trimmed while CAP_SETPCAP is still
 * effective, then capset() removes CAP_SETPCAP itself. */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "privs.h"

/* CAP_KILL: the exec watch stops a stdio MCP launch of any user and the
 * agent must continue or kill it (mcpexec.c). */
#define KEEP_CAPS (1ULL << CAP_SYS_PTRACE | 1ULL << CAP_KILL)

static int capget_raw(struct __user_cap_header_struct *h, struct __user_cap_data_struct *d)
{
	return (int)syscall(SYS_capget, h, d);
}

static int capset_raw(struct __user_cap_header_struct *h, struct __user_cap_data_struct *d)
{
	return (int)syscall(SYS_capset, h, d);
}

uint64_t privs_effective(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (capget_raw(&h, d))
		return 0;
	return (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
}

int privs_drop(char *err, size_t errlen)
{
	return privs_drop_keep(KEEP_CAPS, err, errlen);
}

int privs_drop_keep(uint64_t keep, char *err, size_t errlen)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	int last = CAP_LAST_CAP;
	FILE *f;

	/* The running kernel may know more capabilities than our headers. */
	if ((f = fopen("/proc/sys/kernel/cap_last_cap", "re"))) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	for (int c = 0; c <= last && c < 64; c++) {
		if (keep & (1ULL << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) {
			snprintf(err, errlen, "cannot drop capability %d from the bounding set: %s", c,
				 strerror(errno));
			return -errno;
		}
	}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	memset(d, 0, sizeof(d));
	d[0].effective = d[0].permitted = (uint32_t)keep;
	d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
	if (capset_raw(&h, d)) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -errno;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		return -errno;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		snprintf(err, errlen, "dumpable: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* chown path (and, for a directory, what is in it, one level of subfolders
 * deep: the spool's quarantine folder) to uid:gid. */
static int give(const char *path, uid_t uid, gid_t gid, int depth)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	char sub[4096];

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (lchown(path, uid, gid) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || depth > 2 || !(d = opendir(path)))
		return 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		give(sub, uid, gid, depth + 1);
	}
	closedir(d);
	return 0;
}

int privs_become(const char *user, const char *const *paths, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int ret;

	if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -ENOENT;
	}
	for (int i = 0; paths && paths[i]; i++)
		if ((ret = give(paths[i], pw.pw_uid, pw.pw_gid, 0))) {
			snprintf(err, errlen, "cannot give %s to %s: %s", paths[i], user, strerror(-ret));
			return ret;
		}
	/* Keep the permitted set across setuid; privs_drop trims it after. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setgroups(0, NULL) ||
	    setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) || setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)) {
		snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
		return -errno;
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* The uid change cleared the effective set: raise it back to the
	 * permitted one so privs_drop can trim the bounding set. */
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	if (capget_raw(&h, d) == 0) {
		d[0].effective = d[0].permitted;
		d[1].effective = d[1].permitted;
		capset_raw(&h, d);
	}
	return 0;
}
