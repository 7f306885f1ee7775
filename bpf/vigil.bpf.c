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
#include "vigil.h"

#define AF_INET       2
#define AF_INET6      10
#define SOCK_STREAM   1
#define SOCK_DGRAM    2
#define ECONNREFUSED  111
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
		return VERDICT_PASS;
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
		return VERDICT_PASS;
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

	if (port != QUIC_PORT || !is_target(addr, port))
		return VERDICT_PASS;
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
 * agent parses them (agent/dnsmsg.c): here only the cheap filters (UDP,
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
