/* sockdiag: exact TCP socket lookups over NETLINK_SOCK_DIAG (libnl for the
 * socket and message plumbing, the request itself is inet_diag_req_v2).
 *
 * Owns one netlink socket. Must never dump the whole socket table: every
 * request names one 4-tuple (no NLM_F_DUMP), so the cost is one hash
 * lookup in the kernel whatever the number of connections. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/socket.h>
#include "kernel/sockdiag.h"

struct sockdiag {
	struct nl_sock *nl;
};

struct diag_reply {
	int err;          /* -errno from an NLMSG_ERROR, 0 if none */
	int found;
	uint64_t cookie;
};

int sockdiag_new(struct sockdiag **out)
{
	struct sockdiag *sd = calloc(1, sizeof(*sd));
	int rc;

	if (!sd)
		return -ENOMEM;
	sd->nl = nl_socket_alloc();
	if (!sd->nl) {
		rc = -ENOMEM;
		goto err;
	}
	/* An exact lookup answers with one message or one error; an ACK on
	 * top would only make us wait for a second read. */
	nl_socket_disable_auto_ack(sd->nl);
	rc = nl_connect(sd->nl, NETLINK_SOCK_DIAG);
	if (rc < 0) {
		rc = -EPROTONOSUPPORT;
		goto err;
	}
	*out = sd;
	return 0;
err:
	sockdiag_free(sd);
	return rc;
}

void sockdiag_free(struct sockdiag *sd)
{
	if (!sd)
		return;
	if (sd->nl)
		nl_socket_free(sd->nl);
	free(sd);
}

static int on_valid(struct nl_msg *msg, void *arg)
{
	struct diag_reply *r = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	const struct inet_diag_msg *m;

	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || nlmsg_datalen(h) < (int)sizeof(*m))
		return NL_SKIP;
	m = nlmsg_data(h);
	r->cookie = (uint64_t)m->id.idiag_cookie[0] | ((uint64_t)m->id.idiag_cookie[1] << 32);
	r->found = 1;
	return NL_STOP;
}

static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
	struct diag_reply *r = arg;

	r->err = e->error ? e->error : -EIO;
	return NL_STOP;
}

/* Reduces an address to (family, 16 bytes, port): v4-mapped IPv6 becomes
 * IPv4 so that a mix of AF_INET and v4-mapped AF_INET6 still matches. */
static int split_addr(const struct sockaddr *sa, int *family, uint32_t a[4], uint16_t *port_be)
{
	memset(a, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		*family = AF_INET;
		a[0] = s4->sin_addr.s_addr;
		*port_be = s4->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		*port_be = s6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			*family = AF_INET;
			memcpy(&a[0], &s6->sin6_addr.s6_addr[12], 4);
		} else {
			*family = AF_INET6;
			memcpy(a, &s6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
	struct diag_reply *r = arg;

	(void)msg;
	r->found = 1;
	return NL_STOP;
}

/* One exact request (type SOCK_DIAG_BY_FAMILY or SOCK_DESTROY) for the
 * socket local <-> remote; cookie INET_DIAG_NOCOOKIE matches the tuple
 * alone. The answer lands in *r. */
static int diag_request(struct sockdiag *sd, int type, int flags, const struct sockaddr *local,
			const struct sockaddr *remote, uint32_t ifindex, uint64_t cookie, struct diag_reply *r)
{
	struct inet_diag_req_v2 req;
	int lfam, rfam, rc;

	if (!sd || !local || !remote)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	if (split_addr(local, &lfam, req.id.idiag_src, &req.id.idiag_sport) < 0 ||
	    split_addr(remote, &rfam, req.id.idiag_dst, &req.id.idiag_dport) < 0)
		return -EAFNOSUPPORT;
	if (lfam != rfam)
		return -EINVAL;
	req.sdiag_family = lfam;
	req.sdiag_protocol = IPPROTO_TCP;
	req.idiag_states = ~0u;
	req.id.idiag_if = ifindex;
	req.id.idiag_cookie[0] = (uint32_t)cookie;
	req.id.idiag_cookie[1] = (uint32_t)(cookie >> 32);

	nl_socket_modify_cb(sd->nl, NL_CB_VALID, NL_CB_CUSTOM, on_valid, r);
	nl_socket_modify_cb(sd->nl, NL_CB_ACK, NL_CB_CUSTOM, on_ack, r);
	nl_socket_modify_err_cb(sd->nl, NL_CB_CUSTOM, on_error, r);
	rc = nl_send_simple(sd->nl, type, NLM_F_REQUEST | flags, &req, sizeof(req));
	if (rc < 0)
		return -EIO;
	return nl_recvmsgs_default(sd->nl);
}

int sockdiag_tcp_cookie(struct sockdiag *sd, const struct sockaddr *local, const struct sockaddr *remote,
			uint64_t *cookie)
{
	struct diag_reply r = { 0 };
	/* NOCOOKIE: match on the tuple alone (an exact request otherwise
	 * also compares the cookie). */
	uint64_t any = (uint64_t)INET_DIAG_NOCOOKIE << 32 | INET_DIAG_NOCOOKIE;
	int rc;

	if (!cookie)
		return -EINVAL;
	rc = diag_request(sd, SOCK_DIAG_BY_FAMILY, 0, local, remote, 0, any, &r);
	if (r.found) {
		*cookie = r.cookie;
		return 0;
	}
	if (r.err)
		return r.err;
	return rc < 0 ? -EIO : -ENOENT;
}

int sockdiag_tcp_destroy(struct sockdiag *sd, const struct sockaddr *local, const struct sockaddr *remote,
			 uint32_t ifindex, uint64_t cookie)
{
	struct diag_reply r = { 0 };
	int rc;

	/* The cookie must match: a tuple alone could name a new socket that
	 * reused the port after the refused one closed. */
	if (!cookie)
		return -EINVAL;
	rc = diag_request(sd, SOCK_DESTROY, NLM_F_ACK, local, remote, ifindex, cookie, &r);
	if (r.err)
		return r.err;
	if (r.found)
		return 0;
	return rc < 0 ? -EIO : -ENOENT;
}
