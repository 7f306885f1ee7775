/* Types shared by the BPF programs (bpf/vigil.bpf.c) and user space
 * (agent/kernel/capture.c). Fixed-width types only, explicit padding, no pointers:
 * the layout must be identical for clang -target bpf and gcc x86_64.
 *
 * Addresses are always 16 bytes: IPv6 as is, IPv4 as v4-mapped
 * (::ffff:a.b.c.d), network byte order. Ports are host byte order. */
#ifndef VIGIL_BPF_SHARED_H
#define VIGIL_BPF_SHARED_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define VIGIL_COMM_LEN 16
#define VIGIL_MAX_TARGETS 65536
#define VIGIL_MAX_ORIGINS 65536
#define VIGIL_MAX_BYPASS 16384            /* agent upstream sockets in flight */
#define VIGIL_KEVENTS_BYTES (256 * 1024)  /* ring buffer, power of two pages */
#define VIGIL_DNS_BYTES (256 * 1024)      /* ring buffer of DNS answers */
#define VIGIL_DNS_MAX 1232                /* bytes of a DNS answer copied (the usual EDNS UDP size) */

/* Key of the target set: one (address, port) a watched endpoint resolves to. */
struct vigil_target_key {
	__u8  addr[16];
	__u16 port;
	__u16 pad;
};

/* What the connect hook recorded for one redirected (or bypassed) socket. */
struct vigil_origin {
	__u8  orig_addr[16];     /* the address the application dialled */
	__u16 orig_port;
	__u16 family;            /* AF_INET or AF_INET6 of the application's socket */
	__u32 flags;             /* VIGIL_ORIGIN_* */
	__u32 tgid;              /* process id */
	__u32 pid;               /* thread id */
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	__u64 cookie;            /* socket cookie of the application's socket */
	__u64 netns_cookie;
	__u64 ktime_ns;          /* bpf_ktime_get_ns() at connect */
	char  comm[VIGIL_COMM_LEN];
};

#define VIGIL_ORIGIN_REDIRECTED   0x1  /* rewritten to the agent */
#define VIGIL_ORIGIN_BYPASS_NETNS 0x2  /* no longer emitted: other netns are refused (NETNS_NEW) */
#define VIGIL_ORIGIN_BYPASS_DOWN  0x4  /* target, but no agent listener (fail open) */
#define VIGIL_ORIGIN_REFUSED      0x8  /* target refused (fail closed, or UDP/443) */
#define VIGIL_ORIGIN_NETNS_NEW    0x10 /* target from another netns where the agent has no
					* listener yet: refused, the agent opens one there */

/* Key of the tuple map: the application's side of a redirected TCP
 * connection as the agent sees it on accept (its peer address and port),
 * and the network namespace it lives in: two containers both connect from
 * 127.0.0.1 and may well pick the same ephemeral port. */
struct vigil_tuple_key {
	__u8  addr[16];
	__u16 port;
	__u16 pad;
	__u32 pad2;
	__u64 netns_cookie;
};

/* Single-entry configuration, written by the agent before attach. */
struct vigil_config {
	__u8  listen6_addr[16];  /* agent listener for IPv6 sockets (e.g. ::1) */
	__u32 listen4_addr;      /* agent listener for IPv4 sockets, network order */
	__u16 listen4_port;      /* host order; 0 = not listening on IPv4 */
	__u16 listen6_port;      /* host order; 0 = not listening on IPv6 */
	__u64 host_netns_cookie; /* the agent's own netns (0 = treat every netns as the host's);
				  * others are redirected only to a listener the agent
				  * marked in agent_listeners, else refused and reported */
	__u32 fail_closed;       /* 1: refuse target connections when the listener is gone */
	__u32 quic_all;          /* 1: refuse UDP/443 to every address, not only targets (quic: all) */
};

/* Events the kernel side reports to the agent (ring buffer): bypasses and
 * refusals, so that every connection that did not reach the agent is still
 * audited. */
struct vigil_kevent {
	struct vigil_origin origin;
	__u32 reason;            /* VIGIL_ORIGIN_* flag that applied */
	__u32 proto;             /* IPPROTO_TCP or IPPROTO_UDP */
};

/* A DNS response (UDP source port 53) delivered to a process of the
 * cgroup: the first len bytes of its payload, so the agent learns the
 * addresses watched domains resolve to for the clients themselves. */
struct vigil_dns_msg {
	__u32 len;
	__u32 pad;
	__u8  data[VIGIL_DNS_MAX];
};

/* ---- stdio MCP server launches (bpf/vigil.bpf.c "exec", agent/content/mcplaunch.c) ----
 * MCP clients start local servers as child processes speaking JSON-RPC on
 * stdin/stdout, which no socket hook sees. An exec in the cgroup whose new
 * comm (the basename of the file executed, 15 bytes) is a watched launcher
 * (npx, uvx, docker, configured commands: exec_names) or starts with
 * "mcp-server-" is stopped (SIGSTOP, delivered before the new program's
 * first instruction in user space) and reported; the agent reads its
 * command line, decides, audits, and continues (SIGCONT) or kills it. */
#define VIGIL_EXEC_EVENTS_BYTES (64 * 1024)
#define VIGIL_EXEC_MAX_NAMES 256
#define VIGIL_EXEC_PREFIX "mcp-server-"
#define VIGIL_EXEC_PREFIX_LEN 11

struct vigil_exec_name {
	char comm[VIGIL_COMM_LEN];       /* zero-padded */
};

struct vigil_exec_event {
	__u32 tgid, pid, uid, gid;
	__u64 cgroup_id;
	__u64 ktime_ns;
	char  comm[VIGIL_COMM_LEN];
	__u32 stopped;                   /* 1: SIGSTOP was sent; the agent must continue or kill */
	__u32 pad;
};

/* ---- First-flight guard (bpf/vigil.bpf.c "guard" section, agent/kernel/capture.c) ----
 * A cgroup_skb/egress program reads the first data segment of every
 * outgoing TCP connection of the cgroup that the connect hook did not
 * redirect (TLS SNI, HTTP CONNECT authority, absolute-form authority,
 * Host) and drops it when the name is watched: nothing leaves, the refusal
 * goes to user space, which destroys the socket (the client gets
 * ECONNABORTED). No per-socket kernel state unless refused. */
#define VIGIL_GUARD_MAX_NAMES 4096       /* watched names and suffixes */
#define VIGIL_GUARD_EVENTS_BYTES (256 * 1024)
#define VIGIL_GUARD_NAME_MAX 256         /* a DNS name is at most 253 bytes */

/* Value of the guard_marks socket storage. */
#define VIGIL_GUARD_MARK_EXEMPT  1       /* the agent's own socket (set from user space) */
#define VIGIL_GUARD_MARK_REFUSED 2       /* refused: every segment dropped until it is destroyed */

/* Value of the watched-name map (key: vigil_name_hash of the name). */
#define VIGIL_GUARD_EXACT  0x1           /* the name itself is watched */
#define VIGIL_GUARD_SUFFIX 0x2           /* "*.name": any name ending in ".name" */

/* Where the name was found (vigil_guard_event.via). */
#define VIGIL_GUARD_VIA_SNI     1        /* TLS ClientHello server_name */
#define VIGIL_GUARD_VIA_CONNECT 2        /* HTTP CONNECT host:port */
#define VIGIL_GUARD_VIA_TARGET  3        /* HTTP absolute-form request target */
#define VIGIL_GUARD_VIA_HOST    4        /* HTTP Host header */

/* Why the guard refused (vigil_guard_event.reason). */
#define VIGIL_GUARD_WATCHED  1           /* a watched name, to an address not captured */
#define VIGIL_GUARD_TFO      3           /* TCP Fast Open: the first flight leaves with the SYN,
					  * before the guard can see it */
#define VIGIL_GUARD_UNPARSED 2           /* a TLS or HTTP first flight the guard cannot read
					  * whole within its limits (fragmented ClientHello,
					  * head over VIGIL_GUARD_SCAN bytes) */

#define VIGIL_GUARD_SCAN 16384           /* bytes of a first flight examined, at most */

/* Counters of the guard_stats per-CPU array (index). */
#define VIGIL_GUARD_STAT_INSPECTED 0     /* first-flight segments read */
#define VIGIL_GUARD_STAT_HELD      1     /* segments held for more bytes (a prefix of TLS/HTTP) */
#define VIGIL_GUARD_STAT_DROPPED   2     /* later segments of refused sockets dropped */
#define VIGIL_GUARD_STAT_REFUSED   3
#define VIGIL_GUARD_STATS         4

/* A refusal, reported on the guard_events ring. origin.orig_addr/orig_port
 * are the peer the connection went to, local_addr/local_port the socket's
 * own end (with origin.cookie: what SOCK_DESTROY needs); uid and cgroup_id
 * are the socket's, tgid/pid/comm the sender's when the program ran in its
 * send() (tgid 0: not known; the TFO refusal in connect always knows).
 * name is not NUL-terminated: name_len bytes, raw from the wire (hostile:
 * validate before use). */
struct vigil_guard_event {
	struct vigil_origin origin;
	__u32 reason;                    /* VIGIL_GUARD_WATCHED | VIGIL_GUARD_UNPARSED */
	__u32 via;                       /* VIGIL_GUARD_VIA_*, 0 if no name */
	__u32 name_len;
	__u16 local_port;
	__u16 pad;
	__u32 ifindex;                   /* the device the segment left by: a socket bound to
					  * one (SO_BINDTODEVICE) is found only with it */
	__u32 pad2;
	__u8  local_addr[16];            /* IPv4 as v4-mapped */
	char  name[VIGIL_GUARD_NAME_MAX];
};

/* The watched-name hash, shared by the BPF side and user space so both
 * compute the same key: FNV-1a 64 over the name's bytes taken from the LAST
 * to the first, ASCII lower-cased. Reversed so that one right-to-left pass
 * over a name yields, at each '.', the hash of the suffix after it: the
 * "*.suffix" entries are checked on the way with no second pass. Not
 * collision-resistant: a collision can only make the guard refuse an
 * unwatched name (a watched name always hashes to its key), never let a
 * watched one through. */
#define VIGIL_NAME_HASH_INIT 0xcbf29ce484222325ULL

static inline __u64 vigil_name_hash_step(__u64 h, __u8 c)
{
	if (c >= 'A' && c <= 'Z')
		c = (__u8)(c + ('a' - 'A'));
	return (h ^ c) * 0x100000001b3ULL;
}

/* The key of name[0..len) (len without a terminating NUL). User space
 * drops one trailing '.' before calling it, as the BPF side does. */
static inline __u64 vigil_name_hash(const char *name, __u32 len)
{
	__u64 h = VIGIL_NAME_HASH_INIT;

	while (len)
		h = vigil_name_hash_step(h, (__u8)name[--len]);
	return h;
}

#endif
