/* capture: loads the BPF programs (bpf/vigil.bpf.c), attaches them to a
 * cgroup2 directory, and gives the agent the maps: the target set, the
 * origin records of redirected sockets, the bypass set for the agent's own
 * upstream sockets, the ring buffer of kernel events (bypass/refusal), and
 * (optionally) the ring of DNS answers the cgroup's processes receive.
 *
 * Fail modes: open = links held only by this process (killed -> the kernel
 * detaches, traffic goes direct); closed = links pinned under pin_dir, the
 * connect hook refuses target connections while no agent listener exists,
 * and a restarted agent takes over the pinned links (program replaced
 * atomically, no window where traffic goes direct). */
#ifndef VIGIL_CAPTURE_H
#define VIGIL_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "vigil.h"

struct capture;

/* A DNS answer a process in the cgroup received (UDP payload, at most
 * VIGIL_DNS_MAX bytes, hostile: parse with dnsmsg). Borrowed for the call. */
typedef void (*capture_dns_fn)(void *arg, const uint8_t *msg, size_t len);

/* A connection the first-flight guard refused (bpf/vigil.h): a watched
 * name sent to an address:port the connect hook does not redirect. The
 * record is copied; name bytes are raw from the wire. */
typedef void (*capture_guard_fn)(void *arg, const struct vigil_guard_event *ev);

/* A watched exec in the cgroup (bpf/vigil.h, stdio MCP launches): the
 * process is stopped when ev->stopped, and the callee must continue or
 * kill it. The record is copied. */
typedef void (*capture_exec_fn)(void *arg, const struct vigil_exec_event *ev);

struct capture_opts {
	const char *cgroup_path;          /* cgroup2 directory to attach at (borrowed) */
	const char *pin_dir;              /* bpffs dir for pinned links in closed mode (borrowed) */
	bool fail_closed;
	bool quic_all;                    /* refuse UDP/443 to every address (config quic: all) */
	struct sockaddr_in listen4;       /* agent listener for IPv4 sockets (port 0 = none) */
	struct sockaddr_in6 listen6;      /* agent listener for IPv6 sockets (port 0 = none) */
	uint64_t host_netns_cookie;       /* 0 = redirect in every netns */
	capture_dns_fn dns_fn;            /* NULL = do not copy DNS answers (no ingress program) */
	void *dns_arg;                    /* called from capture_events_poll */
	capture_guard_fn guard_fn;        /* NULL = no first-flight guard (programs not loaded) */
	void *guard_arg;                  /* called from capture_events_poll */
	capture_exec_fn exec_fn;          /* NULL = no exec watch (program not loaded) */
	void *exec_arg;                   /* called from capture_events_poll */
};

/* Kernel event callback: a target connection that did not reach the agent. */
typedef void (*capture_event_fn)(void *arg, const struct vigil_kevent *ev);

/* Loads, configures and attaches. On error returns -errno and writes a
 * human-readable reason into err (errlen bytes). */
int capture_open(const struct capture_opts *o, struct capture **out, char *err, size_t errlen);

/* Detaches (removes pins too) and frees. Accepts NULL. */
void capture_free(struct capture *c);

/* Closes the agent's references without detaching pinned links (closed mode
 * crash simulation / exec restart). Accepts NULL. */
void capture_release(struct capture *c);

/* Target set. addr is AF_INET or AF_INET6; port in host order. */
int capture_target_add(struct capture *c, const struct sockaddr *addr, uint16_t port);
int capture_target_del(struct capture *c, const struct sockaddr *addr, uint16_t port);

/* Copies up to max keys of the target set into out (caller's array) and
 * returns how many there are in total (may exceed max), or -errno. In
 * fail-closed mode the set survives a restart (pinned map): a new agent
 * lists it to delete entries its endpoints no longer resolve to. */
int capture_target_list(struct capture *c, struct vigil_target_key *out, size_t max);

/* Finds the origin of an accepted connection by its peer (the application's
 * address and port). Tries the tuple map first, then asks sock_diag for the
 * application socket's cookie (local = the listener address it reached).
 * Returns 0 and fills out, or -ENOENT. Deletes the tuple entry it used.
 * local (the accepted socket's getsockname) may be NULL: then no sock_diag
 * fallback. Not thread-safe (one netlink socket per capture). */
int capture_lookup(struct capture *c, const struct sockaddr *peer, const struct sockaddr *local,
		   struct vigil_origin *out);

/* The same for a connection accepted on a listener in another network
 * namespace: netns_cookie is the accepted socket's
 * (capture_sock_netns_cookie), the tuple map is keyed by it, and the
 * sock_diag fallback is used only for the agent's own netns. */
int capture_lookup_in(struct capture *c, uint64_t netns_cookie, const struct sockaddr *peer,
		      const struct sockaddr *local, struct vigil_origin *out);

/* Marks lfd, a listener the agent opened in another network namespace, as
 * the agent's: the connect hook redirects that namespace's target
 * connections to it (and to no unmarked listener at the same address).
 * The mark lives as long as the socket. Returns 0 or -errno. */
int capture_listener_mark(struct capture *c, int lfd);

/* Marks a socket the agent created (before connect) as never redirected;
 * capture_bypass_del when the socket is connected or closed. */
int capture_bypass_add(struct capture *c, int fd);
int capture_bypass_del(struct capture *c, int fd);

/* Ring buffer of kernel events: its fd for epoll, and a non-blocking drain
 * that calls fn for each event (fn NULL = discard) and returns the number
 * of events consumed or -errno. In fail-closed mode the ring is pinned:
 * events from while the agent was down are delivered after a restart. */
int capture_events_fd(struct capture *c);
int capture_events_poll(struct capture *c, capture_event_fn fn, void *arg);

/* The exec watch's program names (comm, truncated to VIGIL_COMM_LEN - 1
 * bytes), replacing the previous set (added before stale ones go).
 * Returns 0, -EOPNOTSUPP when the watch is off, or -errno. */
int capture_exec_set_names(struct capture *c, const char *const *names, size_t n);

/* The first-flight guard's watched names: exact names and "*.suffix"
 * patterns (config endpoints). Replaces the previous set: new keys are
 * added before stale ones go, so a reload never leaves a window with
 * fewer names. Returns 0, -EOPNOTSUPP when the guard is off, or -errno. */
int capture_guard_set_names(struct capture *c, const char *const *names, size_t n);

/* The key capture_guard_set_names stores for one pattern (exposed for the
 * unit test): *flag gets VIGIL_GUARD_EXACT or VIGIL_GUARD_SUFFIX. Returns
 * 0, or -EINVAL for an empty name. */
int capture_guard_key(const char *pattern, uint64_t *key, uint8_t *flag);

struct capture_guard_stats {
	bool on;
	uint64_t inspected;    /* first-flight segments read */
	uint64_t held;         /* segments held until more bytes came (a TLS/HTTP prefix) */
	uint64_t refused;      /* connections refused */
	uint64_t dropped;      /* later segments of refused connections dropped */
};
void capture_guard_get_stats(struct capture *c, struct capture_guard_stats *st);

/* Tamper check: how many of the agent's links are no longer attached
 * (someone ran `bpftool link detach`, or removed the cgroup). */
int capture_links_detached(struct capture *c);

/* The netns cookie of the calling process's network namespace (0 if the
 * kernel cannot tell). */
uint64_t capture_netns_cookie(void);

/* The netns cookie of socket fd's network namespace (0 if unknown). */
uint64_t capture_sock_netns_cookie(int fd);

#endif
