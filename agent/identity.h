/* identity: who is behind a redirected connection, from what the kernel
 * recorded at connect() (struct vigil_origin) plus /proc and the passwd
 * database. Nothing here comes from the client's own bytes. */
#ifndef VIGIL_IDENTITY_H
#define VIGIL_IDENTITY_H

#include <stdint.h>
#include <sys/types.h>
#include "vigil.h"

struct identity {
	int64_t uid, gid, pid, tid;    /* -1 = unknown */
	char user[64];
	char comm[VIGIL_COMM_LEN + 1];
	char exe[512];
	char cgroup[512];
	char script[512];              /* interpreters: the script they run (absolute), else "" */
	char dst_ip[64];               /* the original destination, as dialled */
	uint16_t dst_port;
	gid_t groups[64];              /* supplementary groups of the user */
	int ngroups;
};

/* Fills id from origin (NULL = unknown origin). exe and cgroup are read
 * from /proc/<tgid> (empty if the process is gone). */
void identity_from_origin(struct identity *id, const struct vigil_origin *origin);

#endif
