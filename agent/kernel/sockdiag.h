/* sockdiag: asks the kernel (NETLINK_SOCK_DIAG, through libnl) about one
 * TCP socket by its exact 4-tuple and returns its socket cookie, the same
 * value bpf_get_socket_cookie() gave the connect hook. capture uses it when
 * the tuple map has no entry for an accepted connection; the netns helper
 * destroys the sockets the first-flight guard refused.
 *
 * One netlink socket per struct sockdiag; not thread-safe (one per thread). */
#ifndef VIGIL_SOCKDIAG_H
#define VIGIL_SOCKDIAG_H

#include <stdint.h>
#include <sys/socket.h>

struct sockdiag;

/* Opens the netlink socket. Returns 0 or -errno. */
int sockdiag_new(struct sockdiag **out);
void sockdiag_free(struct sockdiag *sd);

/* Cookie of the TCP socket (any state) whose own local end is `local` and
 * remote end is `remote` (both borrowed; AF_INET or AF_INET6, v4-mapped
 * IPv6 is treated as IPv4). Returns 0, -ENOENT if no such socket, or
 * another -errno. */
int sockdiag_tcp_cookie(struct sockdiag *sd, const struct sockaddr *local, const struct sockaddr *remote,
			uint64_t *cookie);

/* Destroys (SOCK_DESTROY: tcp_abort, the owner gets ECONNABORTED and the
 * peer a reset) the TCP socket local <-> remote whose cookie is cookie
 * (ifindex: the device its traffic leaves by, which finds a socket bound
 * to it as well as an unbound one; 0 finds unbound sockets only), in
 * the network namespace the netlink socket was opened in. Needs
 * CAP_NET_ADMIN over that namespace in the calling process. Returns 0,
 * -ENOENT (gone already, or another socket), -EPERM, or another -errno. */
int sockdiag_tcp_destroy(struct sockdiag *sd, const struct sockaddr *local, const struct sockaddr *remote,
			 uint32_t ifindex, uint64_t cookie);

#endif
