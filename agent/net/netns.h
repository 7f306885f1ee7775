/* netns: the agent's listeners in other network namespaces (Docker and
 * Podman containers, Kubernetes pods, `ip netns exec`), as service meshes'
 * node proxies do. The connect hook redirects a target connection of such a
 * namespace to the agent's address *in that namespace* (127.0.0.1 there is
 * not the agent's), and refuses it (ECONNREFUSED, reported) while no
 * listener the agent marked exists there. On that report the agent opens
 * one, so the client's retry is captured.
 *
 * Privilege: entering a namespace (setns) needs CAP_SYS_ADMIN, which the
 * serving agent drops (privs.c). A small helper process, forked before the
 * agent reads any key or loads BPF, keeps exactly CAP_SYS_ADMIN and
 * CAP_SYS_PTRACE (to open /proc/PID/ns/net of other users' processes; plus
 * CAP_NET_BIND_SERVICE if the agent's port is below 1024; plus
 * CAP_NET_ADMIN while the first-flight guard runs), and does two things: given a pid and the netns cookie the
 * kernel reported, it opens listeners at the agent's fixed addresses in
 * that pid's namespace and passes them back over a socketpair
 * (SCM_RIGHTS); given a socket the first-flight guard refused (4-tuple and
 * socket cookie), it destroys it in its namespace. The agent cannot ask it
 * for any other address, nor for anything else.
 *
 * A listening socket keeps its namespace alive: once no process is left in
 * a namespace, its listeners are closed (checked every few seconds), so
 * `ip netns del` or a stopped container frees the namespace.
 *
 * Must never: change a namespace's own configuration (a namespace whose
 * loopback is down gets no listener: its target connections stay refused
 * and audited), accept a reply for a namespace other than the one asked,
 * or block the event loop on the helper. */
#ifndef VIGIL_NETNS_H
#define VIGIL_NETNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>
#include "vigil.h"

struct agent;
struct netns_set;

#define NETNS_MAX 1024          /* namespaces with listeners at once */
#define NETNS_SWEEP_MS 2000     /* how often namespaces are checked for processes */
#define NETNS_RETRY_MS 5000     /* a namespace that failed is not asked again before */

/* Forks the privileged helper. Call before keys are read, BPF is loaded
 * and other threads exist: the child closes every other fd. listen6 with
 * port 0 = no IPv6 listener. destroy: the helper keeps CAP_NET_ADMIN and
 * serves netns_destroy (the first-flight guard is on). On success *fd is the agent's end of the
 * socketpair and *pid the helper's. Returns 0 or -errno (reason in err). */
int netns_helper_spawn(const struct sockaddr_in *listen4, const struct sockaddr_in6 *listen6, bool destroy,
		       int *fd, pid_t *pid, char *err, size_t errlen);

/* Takes ownership of the helper (fd and pid) and puts its fd on ag's loop.
 * NULL on allocation or epoll failure (the helper is then stopped). */
struct netns_set *netns_new(struct agent *ag, int helper_fd, pid_t helper_pid);

/* Stops the helper and closes every namespace listener. Accepts NULL. */
void netns_free(struct netns_set *s);

/* The kernel refused a target connection from origin->netns_cookie for
 * lack of a listener there: asks the helper for one (once; a failed
 * namespace again after NETNS_RETRY_MS). */
void netns_seen(struct netns_set *s, const struct vigil_origin *origin);

/* Start-up: asks for listeners in every network namespace (other than the
 * agent's) that a process under cgroup_prefix already lives in (the path
 * as /proc/PID/cgroup shows it; "/" or "" = every process), so that
 * containers running before the agent have their first connection
 * captured rather than refused. */
void netns_prime(struct netns_set *s, const char *cgroup_prefix);

/* The first-flight guard refused ev's socket (nothing of it left the
 * host, TCP keeps retrying): has the helper destroy it (SOCK_DESTROY in
 * the socket's namespace, which needs CAP_NET_ADMIN: the helper keeps it,
 * the serving agent does not), so the client gets ECONNABORTED at once. */
void netns_destroy(struct netns_set *s, const struct vigil_guard_event *ev);

/* Housekeeping (once a second): closes the listeners of namespaces with no
 * process left. */
void netns_tick(struct netns_set *s, uint64_t now_ms);

/* The nsfs inode of pid's network namespace (as `lsns` and
 * /proc/PID/ns/net show it), 0 if unknown. */
uint64_t netns_inode_of(pid_t pid);

#endif
