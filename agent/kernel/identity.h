/* identity: who is behind a redirected connection, from what the kernel
 * recorded at connect() (struct vigil_origin) plus /proc and the passwd
 * database. Nothing here comes from the client's own bytes. */
#ifndef VIGIL_IDENTITY_H
#define VIGIL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "vigil.h"

struct identity {
	int64_t uid, gid, pid, tid;    /* -1 = unknown */
	char user[64];
	char comm[VIGIL_COMM_LEN + 1];
	char exe[512];
	char cgroup[512];
	char container_id[65];         /* from the cgroup path (identity_container_id), else "" */
	char script[512];              /* interpreters: the script they run (absolute), else "" */
	char dst_ip[64];               /* the original destination, as dialled */
	uint16_t dst_port;
	gid_t groups[64];              /* supplementary groups of the user */
	int ngroups;
};

/* Fills id from origin (NULL = unknown origin). exe and cgroup are read
 * from /proc/<tgid> (empty if the process is gone). */
void identity_from_origin(struct identity *id, const struct vigil_origin *origin);

/* The container id a runtime wrote into a cgroup v2 path, lower-case hex
 * (64 digits), in out[outlen >= 65]; "" and false if there is none. The
 * component nearest the process wins (nested runtimes). Recognised:
 * systemd scopes docker-<id>.scope, libpod-<id>.scope (Podman),
 * cri-containerd-<id>.scope and crio-<id>.scope (Kubernetes with the
 * systemd driver, under kubepods-...-pod<uid>.slice), and a bare <id>
 * component (the cgroupfs drivers: /docker/<id>,
 * /kubepods/burstable/pod<uid>/<id>). Conmon scopes (libpod-conmon-,
 * crio-conmon-) are the runtime's monitor, not the container: no id. */
bool identity_container_id(const char *cgroup, char *out, size_t outlen);

#endif
