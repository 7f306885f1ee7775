/* privs: once the BPF programs are attached, the maps open, the listeners
 * bound and the keys read, the agent no longer needs to be all-powerful.
 * privs_drop() keeps only what serving needs and can never get the rest
 * back. */
#ifndef VIGIL_PRIVS_H
#define VIGIL_PRIVS_H

#include <stddef.h>
#include <stdint.h>

/* Capabilities kept while serving: CAP_SYS_PTRACE, to read
 * /proc/<pid>/exe of other users' processes (the identity on every event),
 * and CAP_KILL, to continue or kill the stdio MCP launches of any user
 * that the exec watch stopped (mcpexec.c).
 * Everything else (CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN, ...) is dropped
 * from the effective, permitted, inheritable, ambient and bounding sets;
 * no_new_privs is set and the process is made non-dumpable (no core file
 * with the CA key, no ptrace by other processes of the same user).
 * Returns 0 or -errno with a reason in err. */
int privs_drop(char *err, size_t errlen);

/* The same with another set to keep (a mask of 1 << CAP_x): the netns
 * helper (netns.c) keeps CAP_SYS_ADMIN for setns() and nothing else that
 * the agent does not keep itself. */
int privs_drop_keep(uint64_t keep, char *err, size_t errlen);

/* Before privs_drop when the config names a `user:`: hands the paths the
 * agent still writes (spool, audit log, pins; NULL-terminated list,
 * directories recursively) to that user, then switches uid, gid and
 * supplementary groups to it, keeping CAP_SYS_PTRACE and CAP_KILL across the switch.
 * Returns 0 or -errno with a reason in err. */
int privs_become(const char *user, const char *const *paths, char *err, size_t errlen);

/* The effective capability set of this process, as in /proc/self/status. */
uint64_t privs_effective(void);

#endif
