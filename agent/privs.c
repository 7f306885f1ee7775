/* privs: raw capset(2)/prctl(2), no libcap: the rules are few and fixed.
 * Order matters: the bounding set is trimmed while CAP_SETPCAP is still
 * effective, then capset() removes CAP_SETPCAP itself. */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "privs.h"

#define KEEP_CAPS (1ULL << CAP_SYS_PTRACE)

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
		if (KEEP_CAPS & (1ULL << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) {
			snprintf(err, errlen, "cannot drop capability %d from the bounding set: %s", c,
				 strerror(errno));
			return -errno;
		}
	}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	memset(d, 0, sizeof(d));
	d[0].effective = d[0].permitted = (uint32_t)KEEP_CAPS;
	d[1].effective = d[1].permitted = (uint32_t)(KEEP_CAPS >> 32);
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
