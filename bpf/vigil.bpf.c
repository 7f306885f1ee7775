// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Vigil kernel side: steers TCP connections to watched endpoints into the
 * local agent and remembers who made them.
 *
 * Owns: the connect hooks (redirect, attribution in task context, listener
 * check for fail-open/fail-closed), UDP/443 refusal (QUIC falls back to
 * TCP), the sockops hook that keys the origin by the application's local
 * address+port before the SYN leaves, getpeername rewriting (the
 * application sees what it dialled), cleanup on socket release, and a copy
 * of the DNS answers the cgroup's processes receive (dnsmsgs ring) so the
 * agent learns the addresses watched names resolve to for them.
 *
 * Must never: touch a connection that is not to a target, redirect a socket
 * the agent owns (bypass map), redirect a socket of another network
 * namespace (container, pod) anywhere but to a listener the agent opened in
 * that namespace, let such a socket go direct, or break a connection when
 * the agent is down in fail-open mode. Every target connection that does
 * not reach the agent is reported on the kevents ring buffer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "vigil.h"

#define AF_INET       2
#define AF_INET6      10
#define SOCK_STREAM   1
#define SOCK_DGRAM    2
#define ECONNREFUSED  111
#define EOPNOTSUPP    95
#define QUIC_PORT     443

/* Verdicts of a connect program: 0 rejects (EPERM unless bpf_set_retval
 * changed it), 1 lets the (possibly rewritten) call proceed. */
#define VERDICT_REJECT 0
#define VERDICT_PASS   1

#define ETH_P_IP      0x0800
#define ETH_P_IPV6    0x86DD
#define DNS_PORT      53
#define DNS_HEADER    12

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_MAX_TARGETS);
	__type(key, struct vigil_target_key);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VIGIL_MAX_ORIGINS);
	__type(key, __u64);
	__type(value, struct vigil_origin);
} origins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VIGIL_MAX_ORIGINS);
	__type(key, struct vigil_tuple_key);
	__type(value, struct vigil_origin);
} tuples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_MAX_BYPASS);
	__type(key, __u64);
	__type(value, __u8);
} bypass SEC(".maps");

/* The agent's listening sockets in other network namespaces, marked from
 * user space (key: the socket's fd). A listener found at the agent's
 * address in a container is redirected to only if it carries this mark:
 * a process of the container that bound that port first must not receive
 * its neighbours' redirected connections. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} agent_listeners SEC(".maps");

/* The single vigil_config entry. Named `settings` because vmlinux.h
 * already declares a typedef `config`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_config);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VIGIL_KEVENTS_BYTES);
} kevents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VIGIL_DNS_BYTES);
} dnsmsgs SEC(".maps");

static __always_inline const struct vigil_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&settings, &zero);
}

static __always_inline void addr_set_v4mapped(__u8 *a, __u32 ip4_be)
{
	__builtin_memset(a, 0, 10);
	a[10] = 0xff;
	a[11] = 0xff;
	__builtin_memcpy(a + 12, &ip4_be, 4);
}

static __always_inline bool ip6_is_v4mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
}

static __always_inline bool is_target(const __u8 *addr16, __u16 port)
{
	struct vigil_target_key k = {};

	__builtin_memcpy(k.addr, addr16, 16);
	k.port = port;
	return bpf_map_lookup_elem(&targets, &k) != NULL;
}

/* Attribution, taken here because connect runs in the calling task's
 * context (in sockops it would be whatever softirq happened to run). */
static __always_inline void fill_origin(struct bpf_sock_addr *ctx, struct vigil_origin *o, const __u8 *addr16,
					__u16 port, __u16 family)
{
	__u64 v;

	__builtin_memcpy(o->orig_addr, addr16, 16);
	o->orig_port = port;
	o->family = family;
	o->flags = 0;
	v = bpf_get_current_pid_tgid();
	o->tgid = v >> 32;
	o->pid = (__u32)v;
	v = bpf_get_current_uid_gid();
	o->uid = (__u32)v;
	o->gid = v >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->cookie = bpf_get_socket_cookie(ctx);
	o->netns_cookie = bpf_get_netns_cookie(ctx);
	o->ktime_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void emit(const struct vigil_origin *o, __u32 reason, __u32 proto)
{
	struct vigil_kevent *ev = bpf_ringbuf_reserve(&kevents, sizeof(*ev), 0);

	/* A full ring drops the event; the agent counts drops from the gap
	 * in its own accounting, the connection itself is unaffected. */
	if (!ev)
		return;
	__builtin_memcpy(&ev->origin, o, sizeof(*o));
	ev->origin.flags = reason;
	ev->reason = reason;
	ev->proto = proto;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int refuse(void)
{
	/* Needs 5.18+; without it the application would see EPERM. */
	bpf_set_retval(-ECONNREFUSED);
	return VERDICT_REJECT;
}

/* Does the socket a lookup found belong to the agent? In the host netns
 * any listener at the configured address is the agent's (it bound it
 * before attaching); in another netns only a marked one is. Releases sk. */
static __always_inline bool agent_owns(struct bpf_sock *sk, bool need_mark)
{
	bool ok = !need_mark || bpf_sk_storage_get(&agent_listeners, sk, 0, 0) != NULL;

	bpf_sk_release(sk);
	return ok;
}

/* Is there an agent TCP listener at addr:port in the caller's netns? With
 * saddr and sport zero only a listening socket can match. */
static __always_inline bool listener4_up(struct bpf_sock_addr *ctx, __u32 addr_be, __u16 port, bool need_mark)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (!port)
		return false;
	t.ipv4.daddr = addr_be;
	t.ipv4.dport = bpf_htons(port);
	sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	return agent_owns(sk, need_mark);
}

static __always_inline bool listener6_up(struct bpf_sock_addr *ctx, const __u8 *addr16, __u16 port,
					 bool need_mark)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (!port)
		return false;
	__builtin_memcpy(t.ipv6.daddr, addr16, 16);
	t.ipv6.dport = bpf_htons(port);
	sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	return agent_owns(sk, need_mark);
}

enum decision { D_PASS, D_REFUSE, D_REDIRECT };

/* Is the caller in a network namespace other than the agent's (a
 * container, a pod, `ip netns exec`)? 127.0.0.1 there is not the agent's. */
static __always_inline bool foreign_netns(const struct vigil_config *cfg, const struct vigil_origin *o)
{
	return cfg->host_netns_cookie && o->netns_cookie != cfg->host_netns_cookie;
}

/* A target connection from another netns: redirected to the agent's
 * listener in that netns (`up`: one exists and is marked), else refused
 * and reported, so the agent opens a listener there and the client's retry
 * is captured. Never direct: the namespace's first connection included,
 * whatever the fail mode (in fail-open the programs go away with the agent,
 * so refusing here never outlives it). */
static __always_inline enum decision decide_foreign(struct vigil_origin *o, bool up)
{
	if (!up) {
		emit(o, VIGIL_ORIGIN_NETNS_NEW, IPPROTO_TCP);
		return D_REFUSE;
	}
	o->flags = VIGIL_ORIGIN_REDIRECTED;
	bpf_map_update_elem(&origins, &o->cookie, o, BPF_ANY);
	return D_REDIRECT;
}

/* Common policy for a TCP connect to a target, after the listener check.
 * Records the origin by cookie when redirecting. */
static __always_inline enum decision decide_tcp(struct bpf_sock_addr *ctx, const struct vigil_config *cfg,
						struct vigil_origin *o, bool up)
{
	if (foreign_netns(cfg, o))
		return decide_foreign(o, up);
	if (!up) {
		if (cfg->fail_closed) {
			emit(o, VIGIL_ORIGIN_REFUSED, IPPROTO_TCP);
			return D_REFUSE;
		}
		emit(o, VIGIL_ORIGIN_BYPASS_DOWN, IPPROTO_TCP);
		return D_PASS;
	}
	o->flags = VIGIL_ORIGIN_REDIRECTED;
	bpf_map_update_elem(&origins, &o->cookie, o, BPF_ANY);
	return D_REDIRECT;
}

static __always_inline bool bypassed(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&bypass, &cookie) != NULL;
}

/* First-flight guard, for a TCP connect that is not redirected (defined
 * in the guard section below): VERDICT_PASS or a refusal. */
static __always_inline int guard_connect(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port, __u16 family);

/* UDP/443 to an address that is not a target: QUIC's first flight is
 * encrypted, so the first-flight guard cannot read its name and the client
 * may reach a watched service through an address the agent never learned
 * (DoH, a hard-coded address). With quic: all it is refused as well (the
 * client falls back to TCP, where the guard reads the name) and audited. */
static __always_inline int quic_elsewhere(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port, __u16 family)
{
	const struct vigil_config *cfg = get_config();
	struct vigil_origin o = {};

	if (!cfg || !cfg->quic_all || bypassed(ctx))
		return VERDICT_PASS;
	fill_origin(ctx, &o, addr, port, family);
	emit(&o, VIGIL_ORIGIN_REFUSED, IPPROTO_UDP);
	return refuse();
}

SEC("cgroup/connect4")
int vigil_connect4(struct bpf_sock_addr *ctx)
{
	const struct vigil_config *cfg;
	struct vigil_origin origin = {}, *o = &origin;
	__u8 addr[16];
	__u32 dst = ctx->user_ip4;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 type = ctx->type;
	enum decision d;

	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return VERDICT_PASS;
	if (type == SOCK_DGRAM && port != QUIC_PORT)
		return VERDICT_PASS;
	addr_set_v4mapped(addr, dst);
	if (!is_target(addr, port))
		return type == SOCK_STREAM ? guard_connect(ctx, addr, port, AF_INET) : quic_elsewhere(ctx, addr, port, AF_INET);
	if (bypassed(ctx))
		return VERDICT_PASS;
	cfg = get_config();
	if (!cfg)
		return VERDICT_PASS;
	fill_origin(ctx, o, addr, port, AF_INET);
	if (type == SOCK_DGRAM) {
		/* QUIC to a watched endpoint: refuse so the client retries
		 * over TCP, which we can redirect. */
		emit(o, VIGIL_ORIGIN_REFUSED, IPPROTO_UDP);
		return refuse();
	}
	if (ctx->protocol != IPPROTO_TCP)
		return VERDICT_PASS;
	d = decide_tcp(ctx, cfg, o, listener4_up(ctx, cfg->listen4_addr, cfg->listen4_port, foreign_netns(cfg, o)));
	if (d == D_REFUSE)
		return refuse();
	if (d == D_REDIRECT) {
		ctx->user_ip4 = cfg->listen4_addr;
		/* 32-bit store: a 16-bit store to user_port is rejected. */
		ctx->user_port = (__u32)bpf_htons(cfg->listen4_port);
	}
	return VERDICT_PASS;
}

SEC("cgroup/connect6")
int vigil_connect6(struct bpf_sock_addr *ctx)
{
	const struct vigil_config *cfg;
	struct vigil_origin origin = {}, *o = &origin;
	__u8 addr[16];
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 type = ctx->type;
	bool mapped = ip6_is_v4mapped(w0, w1, w2);
	bool up;
	enum decision d;

	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return VERDICT_PASS;
	if (type == SOCK_DGRAM && port != QUIC_PORT)
		return VERDICT_PASS;
	__builtin_memcpy(addr, &w0, 4);
	__builtin_memcpy(addr + 4, &w1, 4);
	__builtin_memcpy(addr + 8, &w2, 4);
	__builtin_memcpy(addr + 12, &w3, 4);
	if (!is_target(addr, port))
		return type == SOCK_STREAM ? guard_connect(ctx, addr, port, AF_INET6) : quic_elsewhere(ctx, addr, port, AF_INET6);
	if (bypassed(ctx))
		return VERDICT_PASS;
	cfg = get_config();
	if (!cfg)
		return VERDICT_PASS;
	fill_origin(ctx, o, addr, port, AF_INET6);
	if (type == SOCK_DGRAM) {
		emit(o, VIGIL_ORIGIN_REFUSED, IPPROTO_UDP);
		return refuse();
	}
	if (ctx->protocol != IPPROTO_TCP)
		return VERDICT_PASS;
	/* A v4-mapped destination travels over IPv4: the agent's IPv4
	 * listener is the one that must exist, addressed as ::ffff:a.b.c.d. */
	if (mapped)
		up = listener4_up(ctx, cfg->listen4_addr, cfg->listen4_port, foreign_netns(cfg, o));
	else
		up = listener6_up(ctx, cfg->listen6_addr, cfg->listen6_port, foreign_netns(cfg, o));
	d = decide_tcp(ctx, cfg, o, up);
	if (d == D_REFUSE)
		return refuse();
	if (d == D_REDIRECT) {
		if (mapped) {
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
			ctx->user_ip6[3] = cfg->listen4_addr;
			ctx->user_port = (__u32)bpf_htons(cfg->listen4_port);
		} else {
			__u32 l[4];

			__builtin_memcpy(l, cfg->listen6_addr, 16);
			ctx->user_ip6[0] = l[0];
			ctx->user_ip6[1] = l[1];
			ctx->user_ip6[2] = l[2];
			ctx->user_ip6[3] = l[3];
			ctx->user_port = (__u32)bpf_htons(cfg->listen6_port);
		}
	}
	return VERDICT_PASS;
}

/* Unconnected UDP sends carry their destination here (connected sockets
 * went through the connect hook already). */
static __always_inline int udp_send_check(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port, __u16 family)
{
	struct vigil_origin o = {};

	if (port != QUIC_PORT)
		return VERDICT_PASS;
	if (!is_target(addr, port))
		return quic_elsewhere(ctx, addr, port, family);
	if (bypassed(ctx))
		return VERDICT_PASS;
	fill_origin(ctx, &o, addr, port, family);
	emit(&o, VIGIL_ORIGIN_REFUSED, IPPROTO_UDP);
	return refuse();
}

SEC("cgroup/sendmsg4")
int vigil_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u8 addr[16];

	if (ctx->type != SOCK_DGRAM)
		return VERDICT_PASS;
	addr_set_v4mapped(addr, ctx->user_ip4);
	return udp_send_check(ctx, addr, bpf_ntohs((__u16)ctx->user_port), AF_INET);
}

SEC("cgroup/sendmsg6")
int vigil_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u8 addr[16];
	__u32 w[4];

	if (ctx->type != SOCK_DGRAM)
		return VERDICT_PASS;
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memcpy(addr, w, 16);
	return udp_send_check(ctx, addr, bpf_ntohs((__u16)ctx->user_port), AF_INET6);
}

/* The application's side of the connection, as the agent sees its peer. */
static __always_inline void tuple_key(struct bpf_sock_ops *skops, struct vigil_tuple_key *k)
{
	if (skops->family == AF_INET) {
		addr_set_v4mapped(k->addr, skops->local_ip4);
	} else {
		__u32 r0 = skops->remote_ip6[0], r1 = skops->remote_ip6[1], r2 = skops->remote_ip6[2];

		/* An AF_INET6 socket talking IPv4 (v4-mapped peer): its
		 * IPv4 source is authoritative, the agent sees it as an
		 * IPv4 (or v4-mapped) peer. */
		if (ip6_is_v4mapped(r0, r1, r2)) {
			addr_set_v4mapped(k->addr, skops->local_ip4);
		} else {
			__u32 l[4];

			l[0] = skops->local_ip6[0];
			l[1] = skops->local_ip6[1];
			l[2] = skops->local_ip6[2];
			l[3] = skops->local_ip6[3];
			__builtin_memcpy(k->addr, l, 16);
		}
	}
	k->port = (__u16)skops->local_port;
	k->netns_cookie = bpf_get_netns_cookie(skops);
}

/* TCP_CONNECT_CB runs in tcp_connect(), after the local port is bound and
 * before the SYN is sent: the tuple key exists before the agent can
 * possibly accept the connection, so there is no race with accept(). */
SEC("sockops")
int vigil_sockops(struct bpf_sock_ops *skops)
{
	struct vigil_tuple_key k = {};
	struct vigil_origin *o;
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	o = bpf_map_lookup_elem(&origins, &cookie);
	if (!o || !(o->flags & VIGIL_ORIGIN_REDIRECTED)) {
		/* A direct connection to the agent's port must not inherit
		 * a stale entry left by an earlier redirected connection
		 * from the same local address and port that the agent never
		 * consumed: drop any such entry. */
		const struct vigil_config *cfg = get_config();
		__u16 rport = bpf_ntohs((__u16)(skops->remote_port >> 16));

		if (!cfg || !rport || (rport != cfg->listen4_port && rport != cfg->listen6_port))
			return 1;
		tuple_key(skops, &k);
		bpf_map_delete_elem(&tuples, &k);
		return 1;
	}
	tuple_key(skops, &k);
	bpf_map_update_elem(&tuples, &k, o, BPF_ANY);
	return 1;
}

static __always_inline int peername(struct bpf_sock_addr *ctx, bool v6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct vigil_origin *o = bpf_map_lookup_elem(&origins, &cookie);
	__u32 w[4];

	if (!o || !(o->flags & VIGIL_ORIGIN_REDIRECTED))
		return 1;
	__builtin_memcpy(w, o->orig_addr, 16);
	if (v6) {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	} else {
		ctx->user_ip4 = w[3];
	}
	ctx->user_port = (__u32)bpf_htons(o->orig_port);
	return 1;
}

SEC("cgroup/getpeername4")
int vigil_getpeername4(struct bpf_sock_addr *ctx)
{
	return peername(ctx, false);
}

SEC("cgroup/getpeername6")
int vigil_getpeername6(struct bpf_sock_addr *ctx)
{
	return peername(ctx, true);
}

/* Origins are kept while the socket lives (getpeername needs them); the
 * tuple entry stays until the agent consumes it, since the application may
 * close before the agent accepts. */
SEC("cgroup/sock_release")
int vigil_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);

	bpf_map_delete_elem(&origins, &cookie);
	bpf_map_delete_elem(&bypass, &cookie);
	return 1;
}

/* Copies UDP/53 responses to the dnsmsgs ring; never drops a packet. The
 * agent parses them (agent/kernel/dnsmsg.c): here only the cheap filters (UDP,
 * source port 53, not a fragment, QR bit set) so that other traffic costs a
 * few loads. cgroup_skb programs see the packet from its network header. A
 * full ring loses the copy, not the packet: learning is an addition to the
 * agent's own resolution, not a condition for it. */
SEC("cgroup_skb/ingress")
int vigil_dns_ingress(struct __sk_buff *skb)
{
	struct vigil_dns_msg *m;
	struct udphdr uh;
	__u64 off, len;   /* 64-bit: no zero-extended copies for clang to check instead */
	__u8 flags;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol != IPPROTO_UDP || (ip.frag_off & bpf_htons(0x3fff)))
			return 1;
		off = (__u64)ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		/* Extension headers before UDP are not followed: DNS
		 * answers do not carry them in practice. */
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) || ip6.nexthdr != IPPROTO_UDP)
			return 1;
		off = sizeof(ip6);
	} else {
		return 1;
	}
	if (off < 20 || off > 60 || bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)))
		return 1;
	if (uh.source != bpf_htons(DNS_PORT))
		return 1;
	off += sizeof(uh);
	if (skb->len <= off + DNS_HEADER || bpf_skb_load_bytes(skb, off + 2, &flags, 1) || !(flags & 0x80))
		return 1;
	len = skb->len - off;
	if (bpf_ntohs(uh.len) < sizeof(uh))
		return 1;
	if (len > (__u64)bpf_ntohs(uh.len) - sizeof(uh))
		len = (__u64)bpf_ntohs(uh.len) - sizeof(uh);
	if (len > VIGIL_DNS_MAX)
		len = VIGIL_DNS_MAX;
	m = bpf_ringbuf_reserve(&dnsmsgs, sizeof(*m), 0);
	if (!m)
		return 1;
	/* The verifier needs the copy length bounded on the register that is
	 * passed: the barriers keep clang from folding the two checks into
	 * one range check on a temporary (which leaves len unbounded). */
	asm volatile("" : "+r"(len));
	if (len <= DNS_HEADER) {
		bpf_ringbuf_discard(m, 0);
		return 1;
	}
	asm volatile("" : "+r"(len));
	if (len > VIGIL_DNS_MAX) {
		bpf_ringbuf_discard(m, 0);
		return 1;
	}
	m->len = len;
	m->pad = 0;
	if (bpf_skb_load_bytes(skb, off, m->data, len)) {
		bpf_ringbuf_discard(m, 0);
		return 1;
	}
	bpf_ringbuf_submit(m, 0);
	return 1;
}

/* ====================================================================
 * First-flight guard: a watched name in the first bytes of ANY outgoing
 * TCP connection of the cgroup that was not redirected is refused.
 *
 * Addresses, ports and DNS are the client's to choose (curl --resolve, a
 * hosts entry, DoH, port 8443): the target set cannot be complete. So
 * vigil_guard_egress (cgroup_skb/egress, on the same cgroup) looks at the
 * first data segment of every TCP connection, statelessly, with no
 * per-socket kernel state (an earlier design put each socket in a sockhash
 * for an sk_msg program: creating and destroying the psock cost about
 * 1.5 us per connection):
 *  - a packet of a non-TCP socket, a socket whose peer has ACKed data
 *    (tcp_sock.bytes_acked != 0: an established flow pays this one
 *    compare), or one that never sent data passes at once;
 *  - a segment that starts at snd_una (the first byte of the stream: its
 *    first transmission, a retransmission, or the head of the write queue
 *    grown by later writes) is parsed: TLS ClientHello SNI, HTTP CONNECT
 *    authority, absolute-form authority, Host headers;
 *  - a watched name (or a TLS/HTTP first flight too malformed or large to
 *    read) is dropped (return 0): nothing leaves the host. TCP does not
 *    fail a send on that, it keeps the segment queued and probes, so the
 *    refusal goes to the guard_events ring with the socket's 4-tuple and
 *    cookie, and the agent destroys the socket (SOCK_DESTROY): the client
 *    gets ECONNABORTED within milliseconds. The socket is marked refused
 *    (guard_marks, socket-local storage) so its later segments are
 *    dropped too until it is gone;
 *  - a first flight that is a prefix of a TLS or HTTP one (a ClientHello
 *    in several writes) is dropped without a mark: the data stays at the
 *    head of the write queue, the next write appends to it (or the probe
 *    timer resends it) and the program sees the longer prefix. This is
 *    how the segment is "held", as bpf_msg_cork_bytes did.
 * GSO hands the program 64 KB super-packets, and only segments of a
 * socket's first flight are read: no per-byte cost.
 * The agent's own sockets are marked exempt in guard_marks from user space
 * (capture_bypass_add), connections to the agent's listener pass.
 * Must never: hold a connection that is not a TLS/HTTP prefix, see a
 * redirected connection (the agent classifies those), or run per byte. */
#define GUARD_BUF         16384                    /* first-flight bytes copied and read, at most */
#define GUARD_OFF_MASK    0x7fff                   /* offsets < 32 KiB: bounded for the verifier */
#define GUARD_MAX_EXTS    128                      /* ClientHello extensions walked */
#define GUARD_MAX_LABELS  16                       /* suffix lookups per name, from the right */
#define GUARD_MAX_HOSTS   4                        /* Host headers checked in one head */
#define TLS_HANDSHAKE     0x16
#define TLS_CLIENT_HELLO  1

enum guard_result { G_PASS, G_MORE, G_REFUSE, G_UNPARSED };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_GUARD_MAX_NAMES);
	__type(key, __u64);                   /* vigil_name_hash */
	__type(value, __u8);                  /* VIGIL_GUARD_EXACT | VIGIL_GUARD_SUFFIX */
} guard_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} guard_marks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VIGIL_GUARD_EVENTS_BYTES);
} guard_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_GUARD_STATS);
	__type(key, __u32);
	__type(value, __u64);
} guard_stats SEC(".maps");

/* [0]: 1 while the agent runs the guard (the connect hooks are loaded
 * either way and must know). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} guard_conf SEC(".maps");

/* The refusal being assembled (too big for the stack next to the parser). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_guard_event);
} guard_scratch SEC(".maps");

static __always_inline void guard_count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&guard_stats, &which);

	if (v)
		*v += 1;
}

/* TCP Fast Open sends the first flight with the SYN (or, without a cookie,
 * right after the handshake but still inside the connect/sendto call).
 * The egress program is not asked to classify data in a SYN (a dropped SYN
 * fails or stalls the connect itself, a path not worth its own tests): a
 * Fast Open connect the guard would have to check is refused (EOPNOTSUPP)
 * and audited; the client's plain connect is guarded as any.
 * Both forms: sendto(MSG_FASTOPEN) (fastopen_req set when the hook runs)
 * and TCP_FASTOPEN_CONNECT (flag set before connect()). */
static __always_inline int guard_connect(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port, __u16 family)
{
	struct bpf_sock *sk = ctx->sk;
	struct vigil_guard_event *ev;
	struct tcp_sock *tp;
	__u32 zero = 0, *on;

	if (!sk || ctx->protocol != IPPROTO_TCP)
		return VERDICT_PASS;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || (!tp->fastopen_req && !BPF_CORE_READ_BITFIELD(tp, fastopen_connect)))
		return VERDICT_PASS;
	on = bpf_map_lookup_elem(&guard_conf, &zero);
	if (!on || !*on || bypassed(ctx))
		return VERDICT_PASS;
	ev = bpf_ringbuf_reserve(&guard_events, sizeof(*ev), 0);
	if (ev) {
		__builtin_memset(ev, 0, sizeof(*ev));
		fill_origin(ctx, &ev->origin, addr, port, family);
		ev->reason = VIGIL_GUARD_TFO;
		bpf_ringbuf_submit(ev, 0);
	}
	guard_count(VIGIL_GUARD_STAT_REFUSED);
	bpf_set_retval(-EOPNOTSUPP);
	return VERDICT_REJECT;
}

/* The first flight being read: copied out of the packet (its payload is
 * in page fragments, out of reach of direct packet access). One per CPU;
 * busy makes a nested run (a softirq's segment interrupting a task's on
 * the same CPU) hold its segment instead of reading a buffer in use. */
struct guard_buf {
	__u32 busy;
	__u32 len;
	__u8 data[GUARD_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_buf);
} guard_bufs SEC(".maps");

/* One byte of the copied first flight, or -1 past its end. */
static __always_inline int msg_byte(struct guard_buf *msg, __u32 off)
{
	off &= GUARD_OFF_MASK;
	if (off >= msg->len)
		return -1;
	/* len <= GUARD_BUF, so the mask only bounds the index for the verifier */
	return msg->data[off & (GUARD_BUF - 1)];
}

static __always_inline int msg_u16(struct guard_buf *msg, __u32 off)
{
	int a = msg_byte(msg, off), b = msg_byte(msg, off + 1);

	if (a < 0 || b < 0)
		return -1;
	return a << 8 | b;
}

static __always_inline int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* What a parser found: the name's place in the first flight, or how many
 * bytes to wait for. */
struct guard_name {
	__u32 start, len, via;
	__u32 need;
};

/* The parsers and the name check are global functions: the verifier checks
 * each once, on its own, instead of once per path through the caller (the
 * inlined version exceeded its complexity limit). */
#define GUARD_FUNC __attribute__((noinline))

/* Walks a name right to left (see vigil_name_hash): looks each suffix up
 * at its '.', the whole name at the end. */
struct name_walk {
	struct guard_buf *msg;
	__u32 last;          /* offset of the name's last byte */
	__u32 lookups;
	__u64 h;
	int hit;             /* 1 watched, -1 unreadable */
};

static long name_walk_step(__u64 i, void *arg)
{
	struct name_walk *w = arg;
	int c = msg_byte(w->msg, w->last - (__u32)i);

	if (c < 0) {
		w->hit = -1;
		return 1;
	}
	if (c == '.' && w->lookups < GUARD_MAX_LABELS) {
		__u8 *f = bpf_map_lookup_elem(&guard_names, &w->h);

		w->lookups++;
		if (f && (*f & VIGIL_GUARD_SUFFIX)) {
			w->hit = 1;
			return 1;
		}
	}
	w->h = vigil_name_hash_step(w->h, (__u8)c);
	return 0;
}

/* 1 if the name is watched, 0 if not, -1 if it cannot be read. One
 * trailing dot is dropped ("api.openai.com." is api.openai.com). */
GUARD_FUNC int guard_watched(struct guard_buf *msg, __u32 start, __u32 len)
{
	struct name_walk w = { .msg = msg, .h = VIGIL_NAME_HASH_INIT };
	__u8 *f;

	if (!msg)
		return -1;
	start &= GUARD_OFF_MASK;
	if (len && msg_byte(msg, start + len - 1) == '.')
		len--;
	if (!len)
		return 0;
	if (len > VIGIL_GUARD_NAME_MAX - 3)
		return -1;
	w.last = start + len - 1;
	bpf_loop(len, name_walk_step, &w, 0);
	if (w.hit)
		return w.hit;
	f = bpf_map_lookup_elem(&guard_names, &w.h);
	return f && (*f & VIGIL_GUARD_EXACT) ? 1 : 0;
}

/* ---- TLS: the server_name of a ClientHello in one record ---- */
struct ext_walk {
	struct guard_buf *msg;
	__u32 pos, end;
	__u32 sni_start, sni_len;
	int result;          /* 0 walking, 1 SNI found, 2 no SNI, -1 malformed */
};

static long ext_walk_step(__u64 i, void *arg)
{
	struct ext_walk *w = arg;
	int type, len, list, nlen;

	if (w->pos == w->end) {
		w->result = 2;
		return 1;
	}
	type = msg_u16(w->msg, w->pos);
	len = msg_u16(w->msg, w->pos + 2);
	if (type < 0 || len < 0 || w->pos + 4 + (__u32)len > w->end) {
		w->result = -1;
		return 1;
	}
	if (type == 0) {
		/* ServerNameList: the first entry, a host_name. */
		list = msg_u16(w->msg, w->pos + 4);
		nlen = msg_u16(w->msg, w->pos + 7);
		if (len < 5 || list < 3 || msg_byte(w->msg, w->pos + 6) != 0 || nlen < 1 || 5 + nlen > len) {
			w->result = -1;
			return 1;
		}
		w->sni_start = w->pos + 9;
		w->sni_len = (__u32)nlen;
		w->result = 1;
		return 1;
	}
	/* Masked (a no-op: pos <= end < 32 KiB here) so that the stored
	 * cursor keeps one range: the verifier checks a bpf_loop callback
	 * until its state converges, and a growing range never does. */
	w->pos = (w->pos + 4 + (__u32)len) & GUARD_OFF_MASK;
	return 0;
}

GUARD_FUNC int guard_tls(struct guard_buf *msg, __u32 size, struct guard_name *n)
{
	struct ext_walk w = { .msg = msg };
	int rec, hs_hi, hs_lo, sid, cs, comp, exts;
	__u32 hello_end, pos;

	if (!msg || !n)
		return G_UNPARSED;
	if (size < 9) {
		n->need = 9;
		return G_MORE;
	}
	if (msg_byte(msg, 1) != 3 || msg_byte(msg, 5) != TLS_CLIENT_HELLO)
		return G_PASS;   /* not a client's first TLS flight: nothing a server would take as one */
	rec = msg_u16(msg, 3);
	hs_hi = msg_byte(msg, 6);
	hs_lo = msg_u16(msg, 7);
	if (rec < 0 || hs_hi != 0 || hs_lo < 0)
		return G_UNPARSED;
	hello_end = 9 + (__u32)hs_lo;
	/* A ClientHello split over several records: real clients do not send
	 * one below 16 KiB, and reassembling here is not worth its cost. */
	if (hello_end > 5 + (__u32)rec || hello_end > GUARD_BUF)
		return G_UNPARSED;
	if (size < hello_end) {
		n->need = hello_end;
		return G_MORE;
	}
	pos = 9 + 2 + 32;                       /* legacy_version, random */
	sid = msg_byte(msg, pos);
	if (sid < 0 || sid > 32)
		return G_UNPARSED;
	pos += 1 + (__u32)sid;
	cs = msg_u16(msg, pos);
	if (cs < 2)
		return G_UNPARSED;
	pos += 2 + (__u32)cs;
	comp = msg_byte(msg, pos);
	if (comp < 1)
		return G_UNPARSED;
	pos += 1 + (__u32)comp;
	if (pos == hello_end)
		return G_PASS;                  /* no extensions: no name */
	exts = msg_u16(msg, pos);
	if (exts < 0 || pos + 2 + (__u32)exts != hello_end)
		return G_UNPARSED;
	w.pos = pos + 2;
	w.end = hello_end;
	bpf_loop(GUARD_MAX_EXTS, ext_walk_step, &w, 0);
	if (w.result == 2)
		return G_PASS;                  /* no SNI: no name to refuse (the agent handles
						 * SNI-less hellos on target addresses) */
	if (w.result != 1)
		return G_UNPARSED;              /* malformed, or more extensions than walked */
	n->start = w.sni_start;
	n->len = w.sni_len;
	n->via = VIGIL_GUARD_VIA_SNI;
	rec = guard_watched(msg, n->start, n->len);
	return rec > 0 ? G_REFUSE : rec < 0 ? G_UNPARSED : G_PASS;
}

/* ---- HTTP/1.x: CONNECT / absolute-form authority, Host headers ---- */

/* Cursors in the walks below are base + the loop index, never a value the
 * callback carries from one iteration to the next: the verifier checks a
 * bpf_loop callback until its state converges, which a cursor it knows
 * exactly (a constant it increments) never does. */

/* The end of a host starting at base: the first of ": /?#" or white
 * space, -1 if the first flight ends before it. '@' restarts the host
 * (userinfo) except in a Host header. */
struct host_walk {
	struct guard_buf *msg;
	__u32 base, start;
	int end;             /* offset of the terminator, -1 unknown */
	int header;          /* a Host header value */
	int out;             /* the first flight ended before a terminator */
};

static long host_walk_step(__u64 i, void *arg)
{
	struct host_walk *w = arg;
	__u32 pos = (w->base + (__u32)i) & GUARD_OFF_MASK;
	int c = msg_byte(w->msg, pos);

	if (c < 0) {
		w->out = 1;
		return 1;
	}
	if (c == ':' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '?' || c == '#') {
		w->end = (int)pos;
		return 1;
	}
	if (c == '@' && !w->header)
		w->start = (pos + 1) & GUARD_OFF_MASK;
	return 0;
}

/* Finds the next Host header from base (inside a line: the request line
 * or the value of the previous Host); stops at the end of the head. */
struct head_walk {
	struct guard_buf *msg;
	__u32 base;
	int found;           /* 1 Host at value_start, 2 end of head, 0 ran out */
	__u32 value_start;
};

static long head_walk_step(__u64 i, void *arg)
{
	struct head_walk *w = arg;
	__u32 pos = (w->base + (__u32)i) & GUARD_OFF_MASK, v;
	int c = msg_byte(w->msg, pos);

	if (c < 0)
		return 1;
	if (i == 0 || msg_byte(w->msg, pos - 1) != '\n')
		return 0;                       /* not at a line start */
	if (c == '\n' || (c == '\r' && msg_byte(w->msg, pos + 1) == '\n')) {
		w->found = 2;
		return 1;
	}
	if (lower(c) != 'h' || lower(msg_byte(w->msg, pos + 1)) != 'o' || lower(msg_byte(w->msg, pos + 2)) != 's' ||
	    lower(msg_byte(w->msg, pos + 3)) != 't' || msg_byte(w->msg, pos + 4) != ':')
		return 0;
	v = pos + 5;
	/* optional whitespace, bounded */
	if (msg_byte(w->msg, v) == ' ' || msg_byte(w->msg, v) == '\t')
		v++;
	if (msg_byte(w->msg, v) == ' ' || msg_byte(w->msg, v) == '\t')
		v++;
	w->value_start = v & GUARD_OFF_MASK;
	w->found = 1;
	return 1;
}

/* The first n (<= 8) bytes at pos, lower-cased, packed little-endian:
 * compared with a constant below, so no string literal lands in a
 * .rodata map (whose name cannot be pinned in fail-closed mode). */
static __always_inline __u64 word_ci(struct guard_buf *msg, __u32 pos, __u32 n)
{
	__u64 w = 0;

	for (__u32 k = 0; k < n && k < 8; k++)
		w |= (__u64)(__u8)lower(msg_byte(msg, pos + k)) << (8 * k);
	return w;
}

#define PACK4(a, b, c, d) ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24)
#define PACK8(a, b, c, d, e, f, g, h) (PACK4(a, b, c, d) | PACK4(e, f, g, h) << 32)
#define WORD_HTTP   PACK8('h', 't', 't', 'p', ':', '/', '/', 0)        /* 7 bytes */
#define WORD_HTTPS  PACK8('h', 't', 't', 'p', 's', ':', '/', '/')
#define WORD_CONNECT PACK8('c', 'o', 'n', 'n', 'e', 'c', 't', 0)    /* 7 bytes */

/* The authority of the request target, if the request line carries one:
 * 1 found (n filled), 0 none, -1 incomplete. */
static __always_inline int http_authority(struct guard_buf *msg, __u32 t, bool connect, struct guard_name *n)
{
	struct host_walk h = { .msg = msg, .end = -1 };

	if (connect) {
		h.base = t;
	} else if (word_ci(msg, t, 7) == WORD_HTTP) {
		h.base = t + 7;
	} else if (word_ci(msg, t, 8) == WORD_HTTPS) {
		h.base = t + 8;
	} else {
		return 0;
	}
	h.start = h.base;
	bpf_loop(VIGIL_GUARD_NAME_MAX + 64, host_walk_step, &h, 0);
	if (h.end < 0)
		return -1;
	n->start = h.start;
	n->len = (__u32)h.end - h.start;
	n->via = connect ? VIGIL_GUARD_VIA_CONNECT : VIGIL_GUARD_VIA_TARGET;
	return 1;
}

static __always_inline int http_incomplete(__u32 size, struct guard_name *n)
{
	/* Wait for the next write, up to the scan limit; a head longer than
	 * that is not read: refused rather than let through unread. */
	if (size >= VIGIL_GUARD_SCAN)
		return G_UNPARSED;
	n->need = size + 1;
	return G_MORE;
}

/* The end of the line starting at base: offset of its '\n', or -1. */
struct line_walk {
	struct guard_buf *msg;
	__u32 base;
	int end;
};

static long line_walk_step(__u64 i, void *arg)
{
	struct line_walk *w = arg;
	__u32 pos = (w->base + (__u32)i) & GUARD_OFF_MASK;
	int c = msg_byte(w->msg, pos);

	if (c < 0)
		return 1;
	if (c == '\n') {
		w->end = (int)pos;
		return 1;
	}
	return 0;
}

/* Do the first `have` bytes w (lower-cased, packed) agree with method m
 * of len bytes (its space included) as far as both go? */
static __always_inline bool method_is(__u64 w, __u32 have, __u64 m, __u32 len)
{
	__u32 k = have < len ? have : len;
	__u64 mask = k >= 8 ? ~0ULL : (1ULL << (8 * k)) - 1;

	return (w & mask) == (m & mask);
}

/* The first bytes begin (or, when fewer arrived, may begin) one of the
 * HTTP methods a client sends first, with its space. */
static __always_inline bool http_method_prefix(__u64 w, __u32 have)
{
	return method_is(w, have, PACK4('g', 'e', 't', ' '), 4) || method_is(w, have, PACK4('p', 'u', 't', ' '), 4) ||
	       method_is(w, have, PACK8('p', 'o', 's', 't', ' ', 0, 0, 0), 5) ||
	       method_is(w, have, PACK8('h', 'e', 'a', 'd', ' ', 0, 0, 0), 5) ||
	       method_is(w, have, PACK8('d', 'e', 'l', 'e', 't', 'e', ' ', 0), 7) ||
	       method_is(w, have, PACK8('p', 'a', 't', 'c', 'h', ' ', 0, 0), 6) ||
	       method_is(w, have, PACK8('t', 'r', 'a', 'c', 'e', ' ', 0, 0), 6) ||
	       method_is(w, have, PACK8('o', 'p', 't', 'i', 'o', 'n', 's', ' '), 8) ||
	       method_is(w, have, PACK8('c', 'o', 'n', 'n', 'e', 'c', 't', ' '), 8);
}

GUARD_FUNC int guard_http(struct guard_buf *msg, __u32 size, __u32 lead, struct guard_name *n)
{
	struct head_walk hw = { .msg = msg };
	struct line_walk lw = { .msg = msg, .end = -1 };
	__u32 mlen = 0, have, v;
	int r, cr;

	if (!msg || !n || lead >= size)
		return G_UNPARSED;
	/* Only a request line of HTTP/1.x is held or parsed: other text
	 * protocols (SMTP "EHLO", FTP "USER", Redis "GET key") must never wait
	 * here for a head that will not come. First, a known method... */
	have = size - lead < 8 ? size - lead : 8;
	if (!http_method_prefix(word_ci(msg, lead, have), have))
		return G_PASS;
	for (__u32 k = 3; k < 8; k++)
		if (msg_byte(msg, lead + k) == ' ') {
			mlen = k;
			break;
		}
	if (!mlen)
		return http_incomplete(size, n);
	/* ...then a whole request line ending in HTTP/x.y. */
	lw.base = lead + mlen + 1;
	bpf_loop(VIGIL_GUARD_SCAN, line_walk_step, &lw, 0);
	if (lw.end < 0)
		return http_incomplete(size, n);
	cr = msg_byte(msg, (__u32)lw.end - 1) == '\r';
	v = (__u32)lw.end - (__u32)cr - 9;      /* " HTTP/x.y" */
	if ((__u32)lw.end < lead + mlen + 10 ||
	    word_ci(msg, v, 6) != PACK8(' ', 'h', 't', 't', 'p', '/', 0, 0))
		return G_PASS;
	r = http_authority(msg, lead + mlen + 1, mlen == 7 && word_ci(msg, lead, 7) == WORD_CONNECT, n);
	if (r < 0)
		return G_UNPARSED;              /* the line is whole: a host that long is no host */
	if (r > 0) {
		r = guard_watched(msg, n->start, n->len);
		if (r)
			return r > 0 ? G_REFUSE : G_UNPARSED;
	}
	hw.base = lead + mlen + 1;
	for (int round = 0; round < GUARD_MAX_HOSTS; round++) {
		struct host_walk h = { .msg = msg, .end = -1, .header = 1 };

		hw.found = 0;
		bpf_loop(VIGIL_GUARD_SCAN, head_walk_step, &hw, 0);
		if (hw.found == 2)
			return G_PASS;
		if (hw.found == 0)
			return http_incomplete(size, n);
		h.base = h.start = hw.value_start;
		bpf_loop(VIGIL_GUARD_NAME_MAX + 64, host_walk_step, &h, 0);
		if (h.end < 0)
			return h.out ? http_incomplete(size, n) : G_UNPARSED;
		n->start = h.start;
		n->len = (__u32)h.end - h.start;
		n->via = VIGIL_GUARD_VIA_HOST;
		r = guard_watched(msg, n->start, n->len);
		if (r)
			return r > 0 ? G_REFUSE : G_UNPARSED;
		hw.base = (__u32)h.end;
	}
	return G_UNPARSED;   /* more Host headers than checked */
}

/* The headers of a packet the guard may read, from its network header. */
struct guard_pkt {
	__u8  saddr[16], daddr[16];   /* IPv4 as v4-mapped */
	__u16 sport, dport;           /* host order */
	__u32 seq;                    /* host order */
	__u32 off;                    /* payload offset */
	__u32 len;                    /* payload bytes (all of a GSO super-packet) */
};

#define IPV6_HOPOPTS  0
#define IPV6_ROUTING  43
#define IPV6_DSTOPTS  60
#define GUARD_MAX_EXTHDRS 4

/* 0 and p filled for a TCP packet, -1 for anything else (passes). */
static __always_inline int guard_headers(struct __sk_buff *skb, struct guard_pkt *p)
{
	struct tcphdr th;
	__u32 off;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
			return -1;
		off = (__u32)ip.ihl * 4;
		addr_set_v4mapped(p->saddr, ip.saddr);
		addr_set_v4mapped(p->daddr, ip.daddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u8 next, eh[2];

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		next = ip6.nexthdr;
		off = sizeof(ip6);
		/* Options an unprivileged socket can set (IPV6_RTHDR) sit
		 * between the header and TCP: walked, not trusted away. */
		for (int i = 0; i < GUARD_MAX_EXTHDRS && next != IPPROTO_TCP; i++) {
			if (next != IPV6_HOPOPTS && next != IPV6_ROUTING && next != IPV6_DSTOPTS)
				return -1;
			if (bpf_skb_load_bytes(skb, off, eh, 2))
				return -1;
			next = eh[0];
			off += ((__u32)eh[1] + 1) * 8;
		}
		if (next != IPPROTO_TCP)
			return -1;
	} else {
		return -1;
	}
	if (off < 20 || off > 512 || bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
		return -1;
	off += (__u32)th.doff * 4;
	if (th.doff < 5 || off >= skb->len)
		return -1;                      /* no payload: SYN, pure ACK, FIN, RST */
	p->off = off;
	p->len = skb->len - off;
	p->seq = bpf_ntohl(th.seq);
	p->sport = bpf_ntohs(th.source);
	p->dport = bpf_ntohs(th.dest);
	return 0;
}

/* Is the peer the agent's own listener (a redirected connection, or an
 * application talking to it directly: the agent classifies those)? */
static __always_inline bool addr16_eq(const __u8 *x, const __u8 *y)
{
	__u32 a[4], b[4];

	__builtin_memcpy(a, x, 16);
	__builtin_memcpy(b, y, 16);
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline bool guard_peer_is_agent(const struct guard_pkt *p)
{
	const struct vigil_config *cfg = get_config();
	__u8 a[16];

	if (!cfg)
		return false;
	addr_set_v4mapped(a, cfg->listen4_addr);
	if (cfg->listen4_port && p->dport == cfg->listen4_port && addr16_eq(p->daddr, a))
		return true;
	return cfg->listen6_port && p->dport == cfg->listen6_port && addr16_eq(p->daddr, cfg->listen6_addr);
}

/* Copies up to want bytes of payload into b (want clamped to GUARD_BUF). */
static __always_inline int guard_copy(struct __sk_buff *skb, const struct guard_pkt *p, struct guard_buf *b,
				      __u32 want)
{
	__u64 n = want;

	b->len = 0;
	/* The verifier needs the length bounded on the register passed (see
	 * vigil_dns_ingress): the barriers keep clang from merging checks. */
	asm volatile("" : "+r"(n));
	if (n > GUARD_BUF)
		n = GUARD_BUF;
	asm volatile("" : "+r"(n));
	if (n < 1 || n > GUARD_BUF)
		return -1;
	if (bpf_skb_load_bytes(skb, p->off, b->data, n))
		return -1;
	b->len = (__u32)n;
	return 0;
}

struct name_copy {
	struct guard_buf *msg;
	struct vigil_guard_event *ev;
	__u32 start;
};

static long name_copy_step(__u64 i, void *arg)
{
	struct name_copy *nc = arg;
	int c = msg_byte(nc->msg, nc->start + (__u32)i);

	if (c < 0 || i >= VIGIL_GUARD_NAME_MAX)
		return 1;
	nc->ev->name[i & (VIGIL_GUARD_NAME_MAX - 1)] = (char)c;
	nc->ev->name_len = (__u32)i + 1;
	return 0;
}

/* Reports a refusal. The socket's owner and cgroup are the socket's; the
 * process is the current task only when it is plausibly the sender (the
 * first transmission runs in the sender's send(); a retransmission runs in
 * a softirq over whatever task was interrupted): same uid and cgroup as the
 * socket, else pid 0 and the agent says it does not know. */
static __always_inline void guard_report(struct __sk_buff *skb, const struct guard_pkt *p, struct guard_buf *msg,
					 __u32 reason, const struct guard_name *n)
{
	__u32 zero = 0;
	struct vigil_guard_event *ev = bpf_map_lookup_elem(&guard_scratch, &zero);
	struct vigil_origin *o;
	struct name_copy nc;
	__u64 v, ug;

	guard_count(VIGIL_GUARD_STAT_REFUSED);
	if (!ev)
		return;
	o = &ev->origin;
	__builtin_memset(ev, 0, sizeof(*ev));
	__builtin_memcpy(o->orig_addr, p->daddr, 16);
	o->orig_port = p->dport;
	__builtin_memcpy(ev->local_addr, p->saddr, 16);
	ev->local_port = p->sport;
	ev->ifindex = skb->ifindex;
	o->family = skb->family;
	o->uid = bpf_get_socket_uid(skb);
	o->cgroup_id = bpf_skb_cgroup_id(skb);
	o->cookie = bpf_get_socket_cookie(skb);
	o->netns_cookie = bpf_get_netns_cookie(skb);
	o->ktime_ns = bpf_ktime_get_ns();
	ug = bpf_get_current_uid_gid();
	if ((__u32)ug == o->uid && bpf_get_current_cgroup_id() == o->cgroup_id) {
		v = bpf_get_current_pid_tgid();
		o->tgid = v >> 32;
		o->pid = (__u32)v;
		o->gid = ug >> 32;
		bpf_get_current_comm(o->comm, sizeof(o->comm));
	}
	ev->reason = reason;
	ev->via = n->via;
	if (n->len && n->len < VIGIL_GUARD_NAME_MAX) {
		nc.msg = msg;
		nc.ev = ev;
		nc.start = n->start;
		bpf_loop(n->len, name_copy_step, &nc, 0);
	}
	bpf_ringbuf_output(&guard_events, ev, sizeof(*ev), 0);
}

/* The verdict on the first flight in msg (size bytes of it). */
static __always_inline int guard_classify(struct guard_buf *msg, __u32 size, struct guard_name *n)
{
	int first = msg_byte(msg, 0);
	__u32 lead = 0;

	if (first == TLS_HANDSHAKE)
		return guard_tls(msg, size, n);
	/* HTTP servers and proxies skip empty lines before a request line
	 * (RFC 9112 2.2): so does the guard, or "\r\nCONNECT" would walk
	 * past it. */
	while (lead < 16 && (first == '\r' || first == '\n'))
		first = msg_byte(msg, ++lead);
	if (first < 0)
		return http_incomplete(size, n);
	if (first == '\r' || first == '\n')
		return G_UNPARSED;              /* no client sends that many */
	if (first >= 'A' && first <= 'Z')
		return guard_http(msg, size, lead, n);
	return G_PASS;
}

/* Bytes read before the rest is copied: a ClientHello or a request head
 * fits in most first flights' first 2 KiB. */
#define GUARD_FIRST_COPY 2048
#define GUARD_SYN_ACKED  1

/* The verdict on the segment at the head of the stream. */
static __always_inline int guard_first_segment(struct __sk_buff *skb, const struct guard_pkt *p,
					       struct guard_buf *b, struct guard_name *n)
{
	__u8 first;
	int r;

	/* Most protocols are told apart by their first byte: no copy. */
	if (bpf_skb_load_bytes(skb, p->off, &first, 1))
		return G_UNPARSED;
	if (first != TLS_HANDSHAKE && first != '\r' && first != '\n' && (first < 'A' || first > 'Z'))
		return G_PASS;
	if (guard_copy(skb, p, b, p->len < GUARD_FIRST_COPY ? p->len : GUARD_FIRST_COPY))
		return G_UNPARSED;
	r = guard_classify(b, b->len, n);
	if (r == G_MORE && p->len > b->len) {
		__builtin_memset(n, 0, sizeof(*n));
		if (guard_copy(skb, p, b, p->len))
			return G_UNPARSED;
		r = guard_classify(b, b->len, n);
		/* A head that does not end within GUARD_BUF bytes of a longer
		 * segment is not waited for: it is not read. */
		if (r == G_MORE && p->len > b->len)
			r = G_UNPARSED;
	}
	return r;
}

SEC("cgroup_skb/egress")
int vigil_guard_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct bpf_tcp_sock *tp;
	struct guard_name n = {};
	struct guard_pkt p;
	struct guard_buf *b;
	__u32 zero = 0, *mark;
	int r;

	if (!sk)
		return VERDICT_PASS;
	tp = bpf_tcp_sock(sk);
	/* Established flows leave here: the peer has ACKed data, so the
	 * verdict was given. bytes_acked counts sequence space: the SYN's
	 * one is in it from the handshake on (verified on 6.18). */
	if (!tp || tp->bytes_acked > GUARD_SYN_ACKED)
		return VERDICT_PASS;
	/* No data sent yet (SYN, the handshake's ACK, a client that only
	 * reads): nothing to read. The kernel counts a data segment before
	 * handing it to IP, so the first one is counted when it gets here. */
	if (!tp->data_segs_out)
		return VERDICT_PASS;
	if (guard_headers(skb, &p))
		return VERDICT_PASS;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return VERDICT_PASS;
	mark = bpf_sk_storage_get(&guard_marks, sk, 0, 0);
	if (mark && *mark == VIGIL_GUARD_MARK_EXEMPT)
		return VERDICT_PASS;
	if (mark && *mark == VIGIL_GUARD_MARK_REFUSED) {
		guard_count(VIGIL_GUARD_STAT_DROPPED);
		return VERDICT_REJECT;
	}
	/* Later segments of a first flight whose head passed: the verdict
	 * on the head holds for the connection. */
	if (p.seq != tp->snd_una || guard_peer_is_agent(&p))
		return VERDICT_PASS;
	b = bpf_map_lookup_elem(&guard_bufs, &zero);
	if (!b)
		return VERDICT_REJECT;
	if (b->busy) {
		guard_count(VIGIL_GUARD_STAT_HELD);
		return VERDICT_REJECT;          /* nested on this CPU: resent later */
	}
	b->busy = 1;
	guard_count(VIGIL_GUARD_STAT_INSPECTED);
	r = guard_first_segment(skb, &p, b, &n);
	if (r == G_PASS) {
		b->busy = 0;
		return VERDICT_PASS;
	}
	if (r == G_MORE) {
		/* Held: stays queued, the next write or probe brings more. */
		b->busy = 0;
		guard_count(VIGIL_GUARD_STAT_HELD);
		return VERDICT_REJECT;
	}
	mark = bpf_sk_storage_get(&guard_marks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (mark)
		*mark = VIGIL_GUARD_MARK_REFUSED;
	guard_report(skb, &p, b, r == G_REFUSE ? VIGIL_GUARD_WATCHED : VIGIL_GUARD_UNPARSED, &n);
	b->busy = 0;
	return VERDICT_REJECT;
}

/* ---- stdio MCP server launches (see vigil.h) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} exec_cgroup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_EXEC_MAX_NAMES);
	__type(key, struct vigil_exec_name);
	__type(value, __u8);
} exec_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VIGIL_EXEC_EVENTS_BYTES);
} exec_events SEC(".maps");

#define VIGIL_SIGSTOP 19

static __always_inline bool exec_prefixed(const char *comm)
{
	const char pre[] = VIGIL_EXEC_PREFIX;

#pragma unroll
	for (int i = 0; i < VIGIL_EXEC_PREFIX_LEN; i++)
		if (comm[i] != pre[i])
			return false;
	return true;
}

/* Runs in the context of the task that just exec'd, after the point of no
 * return: comm is already the new program's. Every exec of the machine
 * comes here, so the cheap tests go first. A launch the ring cannot
 * report is not stopped: a stop nobody knows of would hang it forever.
 * A raw tracepoint: it attaches by name (bpf_raw_tracepoint_open), with
 * no tracefs mounted (this VM has none; a classic tracepoint needs its
 * events/.../id file). */
SEC("raw_tracepoint/sched_process_exec")
int vigil_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct vigil_exec_name k = {};
	struct vigil_exec_event *ev;
	__u64 v;

	if (bpf_current_task_under_cgroup(&exec_cgroup, 0) != 1)
		return 0;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	if (!bpf_map_lookup_elem(&exec_names, &k) && !exec_prefixed(k.comm))
		return 0;
	ev = bpf_ringbuf_reserve(&exec_events, sizeof(*ev), 0);
	if (!ev)
		return 0;
	v = bpf_get_current_pid_tgid();
	ev->tgid = v >> 32;
	ev->pid = (__u32)v;
	v = bpf_get_current_uid_gid();
	ev->uid = (__u32)v;
	ev->gid = v >> 32;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->ktime_ns = bpf_ktime_get_ns();
	__builtin_memcpy(ev->comm, k.comm, sizeof(ev->comm));
	ev->stopped = bpf_send_signal(VIGIL_SIGSTOP) == 0;
	ev->pad = 0;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
