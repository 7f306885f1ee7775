/* netns: see netns.h. Two halves: the helper process (fork, then a blocking
 * request/reply loop with no other duty) and the agent side (a table of
 * namespaces by netns cookie, driven by kernel reports and housekeeping). */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "agent.h"
#include "kernel/capture.h"
#include "net/conn.h"
#include "log.h"
#include "loop.h"
#include "net/netns.h"
#include "osutil.h"
#include "privs.h"
#include "kernel/sockdiag.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

#define HELPER_FD 3

/* One request: open the agent's listeners in the netns of tgid, which the
 * kernel reported as netns_cookie (NETNS_OP_LISTEN, answered), or destroy
 * the TCP socket local <-> remote with socket cookie sock there
 * (NETNS_OP_DESTROY, not answered: the first-flight guard refused it). */
enum { NETNS_OP_LISTEN, NETNS_OP_DESTROY };

struct netns_req {
	uint32_t tgid;
	uint32_t op;
	uint64_t cookie;
	uint64_t sock;
	uint8_t local[16], remote[16];    /* IPv4 as v4-mapped */
	uint16_t lport, rport;
	uint32_t ifindex;
};

/* One reply, with n_fds listening sockets attached (SCM_RIGHTS). */
struct netns_reply {
	int32_t err;         /* 0 or -errno: why no listener was opened */
	uint32_t tgid;
	uint64_t cookie;     /* the netns's cookie (as asked, or found for a start-up request) */
	uint64_t ino;        /* nsfs inode of the namespace entered */
	uint32_t n_fds;      /* 0..2: IPv4 listener first, then IPv6 */
	uint32_t primed;     /* 1: asked with cookie 0 (start-up scan); cookie is the netns's */
};

/* ---- helper process -------------------------------------------------------- */

struct helper_cfg {
	struct sockaddr_in l4;
	struct sockaddr_in6 l6;
	bool destroy;        /* the first-flight guard runs: SOCK_DESTROY requests served */
};

/* Opens the listeners inside the namespace the thread is in now. The IPv6
 * one is optional: many containers have IPv6 disabled. */
static int open_listeners(const struct helper_cfg *hc, uint64_t *cookie, int fds[2], uint32_t *n)
{
	char err[256];
	uint64_t got = 0;
	socklen_t len = sizeof(got);

	*n = 0;
	fds[0] = osutil_listen((const struct sockaddr *)&hc->l4, sizeof(hc->l4), err, sizeof(err));
	if (fds[0] < 0)
		return -errno;
	/* The pid may have exited and been reused, or moved to another
	 * namespace, between the kernel's report and now. Cookie 0: the
	 * agent's start-up scan, which asks for whatever netns pid is in. */
	if (getsockopt(fds[0], SOL_SOCKET, SO_NETNS_COOKIE, &got, &len) || !got || (*cookie && got != *cookie)) {
		close(fds[0]);
		return -ESRCH;
	}
	*cookie = got;
	*n = 1;
	if (hc->l6.sin6_port) {
		fds[1] = osutil_listen((const struct sockaddr *)&hc->l6, sizeof(hc->l6), err, sizeof(err));
		if (fds[1] >= 0)
			*n = 2;
	}
	return 0;
}

static void helper_reply(const struct netns_reply *r, const int *fds)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { .iov_base = (void *)r, .iov_len = sizeof(*r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(cbuf, 0, sizeof(cbuf));
	if (r->n_fds) {
		struct cmsghdr *cm;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(r->n_fds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(r->n_fds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, r->n_fds * sizeof(int));
	}
	if (sendmsg(HELPER_FD, &mh, MSG_NOSIGNAL) < 0)
		_exit(0);   /* the agent is gone */
}

/* Enters ns, opens the listeners there (checking it is the netns the
 * kernel named), comes back. Returns 0 or -errno; -ESRCH: another netns. */
static int listen_in(const struct helper_cfg *hc, int ns, int host_ns, uint64_t *cookie, int fds[2], uint32_t *n)
{
	int err;

	*n = 0;
	if (setns(ns, CLONE_NEWNET))
		return -errno;
	err = open_listeners(hc, cookie, fds, n);
	/* Back home, or this process is useless (and the next namespace
	 * would be entered from the wrong one). */
	if (setns(host_ns, CLONE_NEWNET))
		_exit(1);
	return err;
}

/* The netns cookie of ns (0 if it cannot be told). */
static uint64_t cookie_of(int ns, int host_ns)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd;

	if (setns(ns, CLONE_NEWNET))
		return 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
			cookie = 0;
		close(fd);
	}
	if (setns(host_ns, CLONE_NEWNET))
		_exit(1);
	return cookie;
}

/* The pid the kernel reported is gone (a client refused once often exits
 * at once) or in another netns now: find a process still in the netns
 * with that cookie (a container's init, a pod's pause process). Each
 * distinct namespace is entered once; only on such a miss. Returns an fd
 * of the namespace or -1. */
static int find_ns(uint64_t cookie, int host_ns)
{
	static uint64_t seen[4096];
	size_t n_seen = 0;
	struct stat hst, st;
	struct dirent *d;
	DIR *dir = opendir("/proc");
	int found = -1;

	if (!dir || fstat(host_ns, &hst)) {
		if (dir)
			closedir(dir);
		return -1;
	}
	while (found < 0 && (d = readdir(dir))) {
		char path[64], *end;
		unsigned long pid = strtoul(d->d_name, &end, 10);
		bool dup = false;
		int ns;

		if (*end || !pid)
			continue;
		snprintf(path, sizeof(path), "/proc/%lu/ns/net", pid);
		if ((ns = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		if (fstat(ns, &st) || st.st_ino == hst.st_ino) {
			close(ns);
			continue;
		}
		for (size_t i = 0; i < n_seen && !dup; i++)
			dup = seen[i] == (uint64_t)st.st_ino;
		if (!dup && n_seen < sizeof(seen) / sizeof(seen[0]))
			seen[n_seen++] = st.st_ino;
		if (!dup && cookie_of(ns, host_ns) == cookie)
			found = ns;
		else
			close(ns);
	}
	closedir(dir);
	return found;
}

static void sockaddr_of(struct sockaddr_in6 *sa, const uint8_t addr[16], uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin6_family = AF_INET6;
	memcpy(&sa->sin6_addr, addr, 16);
	sa->sin6_port = htons(port);
}

/* Destroys a socket the first-flight guard refused, in its namespace (the
 * SOCK_DESTROY request acts in the netlink socket's namespace, so the
 * netlink socket is opened in there). The kernel compares the cookie: a
 * request cannot reach another socket on the same ports. */
static void helper_destroy(const struct netns_req *q, int host_ns, uint64_t host_cookie)
{
	struct sockaddr_in6 local, remote;
	struct sockdiag *sd = NULL;
	bool away = false;
	int ns = -1, rc;
	char path[64];

	if (q->cookie && q->cookie != host_cookie) {
		snprintf(path, sizeof(path), "/proc/%u/ns/net", q->tgid);
		if (q->tgid && (ns = open(path, O_RDONLY | O_CLOEXEC)) >= 0 && cookie_of(ns, host_ns) != q->cookie) {
			close(ns);
			ns = -1;
		}
		if (ns < 0)
			ns = find_ns(q->cookie, host_ns);
		if (ns < 0 || setns(ns, CLONE_NEWNET)) {
			fprintf(stderr, "vigil-netns: cannot enter the namespace of a refused socket (cookie %llu)\n",
				(unsigned long long)q->cookie);
			if (ns >= 0)
				close(ns);
			return;
		}
		close(ns);
		away = true;
	}
	sockaddr_of(&local, q->local, q->lport);
	sockaddr_of(&remote, q->remote, q->rport);
	rc = sockdiag_new(&sd);
	if (rc == 0)
		rc = sockdiag_tcp_destroy(sd, (struct sockaddr *)&local, (struct sockaddr *)&remote, q->ifindex, q->sock);
	sockdiag_free(sd);
	/* -ENOENT: the client closed it first, nothing to tell. */
	if (rc < 0 && rc != -ENOENT)
		fprintf(stderr, "vigil-netns: cannot destroy a refused socket: %s\n", strerror(-rc));
	if (away && setns(host_ns, CLONE_NEWNET))
		_exit(1);
}

static uint64_t own_netns_cookie(void)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd >= 0) {
		if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
			cookie = 0;
		close(fd);
	}
	return cookie;
}

static void helper_serve(const struct helper_cfg *hc, int host_ns)
{
	uint64_t host_cookie = own_netns_cookie();
	struct netns_req q;
	struct netns_reply r;
	char path[64];
	struct stat st;
	int fds[2] = { -1, -1 }, ns;

	for (;;) {
		ssize_t n = recv(HELPER_FD, &q, sizeof(q), 0);

		if (n == 0 || (n < 0 && errno != EINTR))
			_exit(0);
		if (n != (ssize_t)sizeof(q))
			continue;
		if (q.op == NETNS_OP_DESTROY) {
			if (hc->destroy)
				helper_destroy(&q, host_ns, host_cookie);
			continue;
		}
		memset(&r, 0, sizeof(r));
		r.tgid = q.tgid;
		r.cookie = q.cookie;
		r.primed = q.cookie == 0;
		r.err = -ESRCH;
		snprintf(path, sizeof(path), "/proc/%u/ns/net", q.tgid);
		if (q.tgid && (ns = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			r.err = listen_in(hc, ns, host_ns, &r.cookie, fds, &r.n_fds);
			if (r.err != -ESRCH && fstat(ns, &st) == 0)
				r.ino = st.st_ino;
			close(ns);
		}
		if (q.cookie && (r.err == -ESRCH || r.err == -ENOENT) && (ns = find_ns(q.cookie, host_ns)) >= 0) {
			r.err = listen_in(hc, ns, host_ns, &r.cookie, fds, &r.n_fds);
			if (fstat(ns, &st) == 0)
				r.ino = st.st_ino;
			close(ns);
		}
		helper_reply(&r, fds);
		for (uint32_t i = 0; i < r.n_fds; i++)
			close(fds[i]);
	}
}

static void helper_main(int sock, const struct helper_cfg *hc, pid_t parent)
{
	uint64_t keep = 1ULL << CAP_SYS_ADMIN | 1ULL << CAP_SYS_PTRACE;
	char err[256];
	sigset_t all;
	int host_ns;

	prctl(PR_SET_NAME, "vigil-netns", 0, 0, 0);
	/* Never outlive the agent (killed -9 included). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(0);
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	if (sock != HELPER_FD && (dup2(sock, HELPER_FD) < 0 || close(sock)))
		_exit(1);
	/* Nothing of the agent's (CA key, maps, sockets) stays here. */
	if (close_range(HELPER_FD + 1, ~0U, 0))
		_exit(1);
	if ((host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
		_exit(1);
	if (ntohs(hc->l4.sin_port) < 1024 || (hc->l6.sin6_port && ntohs(hc->l6.sin6_port) < 1024))
		keep |= 1ULL << CAP_NET_BIND_SERVICE;
	/* SOCK_DESTROY of the sockets the first-flight guard refused, which
	 * the serving agent (CAP_SYS_PTRACE only) cannot do. */
	if (hc->destroy)
		keep |= 1ULL << CAP_NET_ADMIN;
	if (privs_drop_keep(keep, err, sizeof(err))) {
		fprintf(stderr, "vigil-netns: %s\n", err);
		_exit(1);
	}
	helper_serve(hc, host_ns);
}

int netns_helper_spawn(const struct sockaddr_in *listen4, const struct sockaddr_in6 *listen6, bool destroy,
		       int *fd, pid_t *pid, char *err, size_t errlen)
{
	struct helper_cfg hc;
	pid_t parent = getpid(), child;
	int sv[2];

	memset(&hc, 0, sizeof(hc));
	hc.l4 = *listen4;
	hc.destroy = destroy;
	if (listen6)
		hc.l6 = *listen6;
	/* SEQPACKET: one request, one reply, boundaries kept. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		osutil_errf(err, errlen, "netns helper: socketpair: %s", strerror(errno));
		return -errno;
	}
	child = fork();
	if (child < 0) {
		int e = errno;

		close(sv[0]);
		close(sv[1]);
		osutil_errf(err, errlen, "netns helper: fork: %s", strerror(e));
		return -e;
	}
	if (child == 0) {
		close(sv[0]);
		helper_main(sv[1], &hc, parent);
		_exit(0);
	}
	close(sv[1]);
	*fd = sv[0];
	*pid = child;
	return 0;
}

/* ---- agent side ------------------------------------------------------------ */

struct netns_entry {
	uint64_t cookie;              /* netns cookie (the kernel's name for it) */
	uint64_t ino;                 /* nsfs inode (the name /proc and lsns use) */
	uint32_t tgid;                /* a process last seen in it */
	int lfd[2];                   /* listeners, -1 = none */
	uint64_t retry_ms;            /* no listener: not asked again before */
	bool pending;                 /* a request is at the helper */
	struct netns_entry *next;
};

struct netns_set {
	struct loop_watch w;          /* the helper's socket; first member */
	struct agent *ag;
	pid_t helper;
	struct netns_entry *list;
	size_t n_open, n_entries;
	size_t n_priming;             /* start-up requests not answered yet */
	bool full_warned;             /* NETNS_MAX reached, said since the last sweep */
	uint64_t last_sweep;
};

uint64_t netns_inode_of(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static struct netns_entry *find(struct netns_set *s, uint64_t cookie)
{
	for (struct netns_entry *e = s->list; e; e = e->next)
		if (e->cookie == cookie)
			return e;
	return NULL;
}

static void close_listeners(struct netns_set *s, struct netns_entry *e)
{
	for (int i = 0; i < 2; i++) {
		if (e->lfd[i] < 0)
			continue;
		conn_unlisten(s->ag, e->lfd[i]);
		close(e->lfd[i]);
		e->lfd[i] = -1;
	}
}

static void unlink_entry(struct netns_set *s, struct netns_entry *e)
{
	for (struct netns_entry **p = &s->list; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
	if (e->lfd[0] >= 0) {
		s->n_open--;
		atomic_fetch_sub(&s->ag->stats.netns_listeners, 1);
	}
	close_listeners(s, e);
	s->n_entries--;
	free(e);
}

/* A primed namespace (start-up scan): its entry exists only now that the
 * helper named its cookie. NULL if it is served already or on ENOMEM. */
static struct netns_entry *primed_entry(struct netns_set *s, const struct netns_reply *r)
{
	struct netns_entry *e;

	if (s->n_priming)
		s->n_priming--;
	if (r->err || !r->cookie)
		return NULL;
	/* A kernel report for the same namespace got there first: these
	 * listeners serve it (its own request will then find the port taken). */
	if ((e = find(s, r->cookie)))
		return e->pending ? e : NULL;
	if (s->n_entries >= NETNS_MAX)
		return NULL;
	if (!(e = calloc(1, sizeof(*e))))
		return NULL;
	e->cookie = r->cookie;
	e->tgid = r->tgid;
	e->lfd[0] = e->lfd[1] = -1;
	e->pending = true;
	e->next = s->list;
	s->list = e;
	s->n_entries++;
	return e;
}

/* Receives one reply and up to 4 fds (*nf). Returns the bytes received,
 * 0 when the helper is gone, -1 with errno otherwise. */
static ssize_t recv_reply(struct netns_set *s, struct netns_reply *r, int fds[4], int *nf)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = { .iov_base = r, .iov_len = sizeof(*r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(s->w.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	*nf = 0;
	if (n <= 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && *nf < 4; i++)
				memcpy(&fds[(*nf)++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
		}
	return n;
}

/* Puts the listeners of a good reply on the loop, each marked for the hook
 * before it can accept. Without the IPv4 one the namespace is not served. */
static void serve(struct netns_set *s, struct netns_entry *e, const struct netns_reply *r, const int *fds, int nf)
{
	e->ino = r->ino;
	for (int i = 0; i < nf; i++) {
		if (capture_listener_mark(s->ag->cap, fds[i]) || conn_listen(s->ag, fds[i])) {
			log_warn("netns: cannot serve a listener in net:[%llu]", (unsigned long long)r->ino);
			conn_unlisten(s->ag, fds[i]);
			close(fds[i]);
			continue;
		}
		e->lfd[i] = fds[i];
	}
	if (e->lfd[0] < 0) {
		close_listeners(s, e);
		e->retry_ms = loop_now_ms() + NETNS_RETRY_MS;
		return;
	}
	s->n_open++;
	atomic_fetch_add(&s->ag->stats.netns_listeners, 1);
	log_info("netns: listening in the network namespace of pid %u (net:[%llu], cookie %llu%s)", r->tgid,
		 (unsigned long long)r->ino, (unsigned long long)r->cookie, r->primed ? ", at start" : "");
}

/* One reply: fds beyond what it announces, or for a namespace not asked,
 * are closed. */
static void take_reply(struct netns_set *s)
{
	struct netns_reply r;
	struct netns_entry *e = NULL;
	int fds[4], nf;
	ssize_t n = recv_reply(s, &r, fds, &nf);

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			log_err("netns: the helper is gone: new namespaces stay refused");
			loop_del(s->ag->loop, &s->w);
			close(s->w.fd);
			s->w.fd = -1;
		}
		return;
	}
	if (n == (ssize_t)sizeof(r))
		e = r.primed ? primed_entry(s, &r) : find(s, r.cookie);
	if (!e || !e->pending || r.n_fds > 2 || (int)r.n_fds != nf || (r.err == 0 && nf == 0)) {
		for (int i = 0; i < nf; i++)
			close(fds[i]);
		if (!e || !e->pending)
			return;
		if (!r.err)
			r.err = -EPROTO;
	}
	e->pending = false;
	if (r.err) {
		e->retry_ms = loop_now_ms() + NETNS_RETRY_MS;
		log_warn("netns: no listener in the network namespace of pid %u (net:[%llu]): %s%s; its target "
			 "connections stay refused", r.tgid, (unsigned long long)r.ino, strerror(-r.err),
			 r.err == -EADDRNOTAVAIL ? " (loopback down there?)" : "");
		return;
	}
	serve(s, e, &r, fds, nf);
}

static void helper_event(struct loop_watch *w, uint32_t events)
{
	(void)events;
	take_reply((struct netns_set *)w);
}

struct netns_set *netns_new(struct agent *ag, int helper_fd, pid_t helper_pid)
{
	struct netns_set *s = calloc(1, sizeof(*s));

	if (!s) {
		close(helper_fd);
		return NULL;
	}
	s->ag = ag;
	s->helper = helper_pid;
	s->w.fd = helper_fd;
	s->w.fn = helper_event;
	if (loop_add(ag->loop, &s->w, EPOLLIN)) {
		netns_free(s);
		return NULL;
	}
	return s;
}

void netns_free(struct netns_set *s)
{
	if (!s)
		return;
	while (s->list)
		unlink_entry(s, s->list);
	if (s->w.fd >= 0) {
		loop_del(s->ag->loop, &s->w);
		close(s->w.fd);   /* the helper reads EOF and exits */
	}
	if (s->helper > 0)
		waitpid(s->helper, NULL, 0);
	free(s);
}

void netns_seen(struct netns_set *s, const struct vigil_origin *o)
{
	struct netns_entry *e;
	struct netns_req q = { .tgid = o->tgid, .cookie = o->netns_cookie };
	uint64_t now = loop_now_ms();

	if (!s || s->w.fd < 0 || !o->netns_cookie || !o->tgid)
		return;
	e = find(s, o->netns_cookie);
	if (e && (e->pending || e->lfd[0] >= 0 || now < e->retry_ms))
		return;
	if (!e) {
		if (s->n_entries >= NETNS_MAX) {
			/* Once per sweep: namespaces are cheap to make
			 * (unshare -rn), a log line per refusal is not. */
			if (!s->full_warned)
				log_warn("netns: %d namespaces already served; pid %u's stays refused", NETNS_MAX,
					 o->tgid);
			s->full_warned = true;
			return;
		}
		if (!(e = calloc(1, sizeof(*e))))
			return;
		e->cookie = o->netns_cookie;
		e->lfd[0] = e->lfd[1] = -1;
		e->next = s->list;
		s->list = e;
		s->n_entries++;
	}
	e->tgid = o->tgid;
	if (send(s->w.fd, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(q)) {
		log_warn("netns: cannot ask the helper (%s): pid %u's namespace stays refused", strerror(errno), o->tgid);
		e->retry_ms = now + NETNS_RETRY_MS;
		return;
	}
	log_debug("netns: asked for a listener in the network namespace of pid %u (cookie %llu)", o->tgid,
		  (unsigned long long)o->netns_cookie);
	e->pending = true;
}

/* Is /proc/pid's cgroup (as /proc/pid/cgroup shows it) under prefix? */
static bool cgroup_under(unsigned long pid, const char *prefix)
{
	char path[64], line[1024];
	size_t pl = strlen(prefix);
	bool under = false;
	FILE *f;

	if (!pl || !strcmp(prefix, "/"))
		return true;
	snprintf(path, sizeof(path), "/proc/%lu/cgroup", pid);
	if (!(f = fopen(path, "re")))
		return false;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			const char *p = line + 3;

			line[strcspn(line, "\n")] = 0;
			under = !strncmp(p, prefix, pl) && (p[pl] == 0 || p[pl] == '/');
			break;
		}
	fclose(f);
	return under;
}

void netns_prime(struct netns_set *s, const char *cgroup_prefix)
{
	static uint64_t seen[NETNS_MAX];
	size_t n_seen = 0;
	uint64_t host = netns_inode_of(getpid());
	struct dirent *d;
	DIR *dir;

	if (!s || s->w.fd < 0 || !(dir = opendir("/proc")))
		return;
	while ((d = readdir(dir)) && n_seen < NETNS_MAX) {
		char *end;
		unsigned long pid = strtoul(d->d_name, &end, 10);
		uint64_t ino;
		bool dup = false;
		struct netns_req q = { .cookie = 0 };

		if (*end || !pid || !(ino = netns_inode_of((pid_t)pid)) || ino == host)
			continue;
		for (size_t i = 0; i < n_seen && !dup; i++)
			dup = seen[i] == ino;
		if (dup || !cgroup_under(pid, cgroup_prefix))
			continue;
		seen[n_seen++] = ino;
		q.tgid = (uint32_t)pid;
		/* The helper answers one at a time; a full socket buffer
		 * leaves the rest to the kernel's reports. */
		if (send(s->w.fd, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(q))
			break;
		s->n_priming++;
	}
	closedir(dir);
	if (n_seen)
		log_info("netns: %zu network namespaces already under the cgroup: opening listeners there", n_seen);
}

/* Is some process still in e's namespace? The one last seen first (cheap),
 * else a walk of /proc, remembering whoever is found. */
static bool inhabited(struct netns_entry *e)
{
	struct dirent *d;
	DIR *dir;
	bool found = false;

	if (!e->ino || netns_inode_of((pid_t)e->tgid) == e->ino)
		return true;
	if (!(dir = opendir("/proc")))
		return true;   /* cannot tell: keep serving */
	while (!found && (d = readdir(dir))) {
		char *end;
		unsigned long pid = strtoul(d->d_name, &end, 10);

		if (*end || !pid)
			continue;
		if (netns_inode_of((pid_t)pid) == e->ino) {
			e->tgid = (uint32_t)pid;
			found = true;
		}
	}
	closedir(dir);
	return found;
}

void netns_tick(struct netns_set *s, uint64_t now)
{
	if (!s || now - s->last_sweep < NETNS_SWEEP_MS)
		return;
	s->last_sweep = now;
	s->full_warned = false;
	for (struct netns_entry *e = s->list, *next; e; e = next) {
		next = e->next;
		if (e->pending)
			continue;
		if (e->lfd[0] < 0 && now >= e->retry_ms) {
			unlink_entry(s, e);   /* failed long ago: forget it */
			continue;
		}
		if (e->lfd[0] >= 0 && !inhabited(e)) {
			log_info("netns: no process left in net:[%llu]: closing its listeners",
				 (unsigned long long)e->ino);
			unlink_entry(s, e);
		}
	}
}

void netns_destroy(struct netns_set *s, const struct vigil_guard_event *ev)
{
	struct netns_req q = { .op = NETNS_OP_DESTROY, .tgid = ev->origin.tgid, .cookie = ev->origin.netns_cookie,
			       .sock = ev->origin.cookie, .lport = ev->local_port, .rport = ev->origin.orig_port,
			       .ifindex = ev->ifindex };

	if (!s || s->w.fd < 0) {
		log_warn("first-flight guard: no helper to destroy the refused socket: its client waits for TCP's "
			 "own timeout");
		return;
	}
	memcpy(q.local, ev->local_addr, 16);
	memcpy(q.remote, ev->origin.orig_addr, 16);
	if (send(s->w.fd, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof(q)) {
		log_warn("first-flight guard: cannot ask the helper to destroy a refused socket (%s)", strerror(errno));
		return;
	}
	atomic_fetch_add(&s->ag->stats.guard_destroyed, 1);
}
