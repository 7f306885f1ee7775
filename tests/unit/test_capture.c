/* Tests for capture (agent/kernel/capture.c + bpf/vigil.bpf.c) on the real kernel:
 * the programs are loaded and attached to a scratch cgroup2 directory;
 * child processes moved into it connect to loopback "endpoints" and must
 * land on a test listener that plays the agent. Needs root.
 *
 * Addresses: target 127.0.0.2:4443 (an "upstream" listens there too, so a
 * connection that is NOT redirected visibly lands on it), non-target
 * 127.0.0.2:4444, IPv6 target [::1]:4443, UDP target 127.0.0.2:443.
 * The agent listens on 127.0.0.1:<ephemeral> and [::1]:<ephemeral>.
 *
 * The scratch cgroup and pin directory are always removed at exit (atexit
 * and signal handlers), after children are killed and moved out. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include "check.h"
#include "kernel/capture.h"

#define UP_PORT      4443
#define NONTARGET    4444
#define QUIC         443
#define NOBODY       65534
#define CHILD_COMM   "vigil-tchild"
#define MAX_CHILDREN 8

static char cg_root[256];            /* cgroup2 mount */
static char cg_path[600];            /* scratch cgroup */
static char pin_dir[128];
static struct capture *cap;
static int cap_kind = -1;            /* which configuration cap has */
static int agent4 = -1, agent6 = -1; /* listeners playing the agent */
static int up4 = -1, up4b = -1, up6 = -1;
static uint16_t agent4_port, agent6_port;
static int env_ok;
static pid_t children[MAX_CHILDREN];
static pid_t main_pid;               /* only the test process cleans up */
static int go_fds[MAX_CHILDREN];

/* ---- environment ---------------------------------------------------- */

static void move_out_of_cgroup(void)
{
	char path[700], root_procs[600];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg_path);
	snprintf(root_procs, sizeof(root_procs), "%s/cgroup.procs", cg_root);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fscanf(f, "%d", &pid) == 1) {
		FILE *r = fopen(root_procs, "w");

		if (r) {
			fprintf(r, "%d\n", pid);
			fclose(r);
		}
	}
	fclose(f);
}

static void reap_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (go_fds[i] > 0)
			close(go_fds[i]);
		go_fds[i] = 0;
		if (children[i] > 0) {
			int st;

			if (waitpid(children[i], &st, WNOHANG) == 0) {
				/* Give a released child a moment to exit by itself. */
				for (int t = 0; t < 100 && waitpid(children[i], &st, WNOHANG) == 0; t++)
					usleep(10000);
				if (kill(children[i], 0) == 0) {
					kill(children[i], SIGKILL);
					waitpid(children[i], &st, 0);
				}
			}
		}
		children[i] = 0;
	}
}

static void remove_pins(void)
{
	DIR *d = opendir(pin_dir);
	struct dirent *e;
	char p[400];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", pin_dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(pin_dir);
}

static void cleanup(void)
{
	static int done;

	if (done || !cg_path[0] || getpid() != main_pid)
		return;
	done = 1;
	reap_children();
	capture_free(cap);
	cap = NULL;
	remove_pins();
	move_out_of_cgroup();
	if (rmdir(cg_path) < 0 && errno != ENOENT)
		fprintf(stderr, "test_capture: cannot remove %s: %s\n", cg_path, strerror(errno));
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int find_cgroup2(char *out, size_t len)
{
	char dev[256], mnt[256], type[64];
	FILE *f = fopen("/proc/mounts", "r");
	int found = 0;

	if (!f)
		return -errno;
	while (fscanf(f, "%255s %255s %63s %*[^\n]", dev, mnt, type) == 3) {
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(out, len, "%s", mnt);
			found = 1;
			break;
		}
	}
	fclose(f);
	return found ? 0 : -ENOENT;
}

static int listen_on(int family, const char *addr, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		inet_pton(AF_INET, addr, &s->sin_addr);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &s->sin6_addr);
		sl = sizeof(*s);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	if (bound) {
		sl = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*bound = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						 : ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

/* Sets up once; returns 0 or a message about what is missing. */
static const char *env_init(void)
{
	static char why[1024];

	if (env_ok)
		return NULL;
	if (why[0])
		return why;
	if (geteuid() != 0) {
		snprintf(why, sizeof(why), "needs root (real BPF programs)");
		return why;
	}
	if (find_cgroup2(cg_root, sizeof(cg_root)) < 0) {
		snprintf(why, sizeof(why), "no cgroup2 mount in /proc/mounts");
		return why;
	}
	snprintf(cg_path, sizeof(cg_path), "%s/vigil-test-%d", cg_root, (int)getpid());
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/vigil-test-%d", (int)getpid());
	if (mkdir(cg_path, 0755) < 0) {
		snprintf(why, sizeof(why), "cannot create %s: %s", cg_path, strerror(errno));
		cg_path[0] = '\0';
		return why;
	}
	main_pid = getpid();
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGSEGV, on_signal);
	signal(SIGABRT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	agent4 = listen_on(AF_INET, "127.0.0.1", 0, &agent4_port);
	agent6 = listen_on(AF_INET6, "::1", 0, &agent6_port);
	up4 = listen_on(AF_INET, "127.0.0.2", UP_PORT, NULL);
	up4b = listen_on(AF_INET, "127.0.0.2", NONTARGET, NULL);
	up6 = listen_on(AF_INET6, "::1", UP_PORT, NULL);
	if (agent4 < 0 || agent6 < 0 || up4 < 0 || up4b < 0 || up6 < 0) {
		snprintf(why, sizeof(why), "cannot open test listeners (ports %d/%d in use?): %s", UP_PORT,
			 NONTARGET, strerror(errno));
		return why;
	}
	env_ok = 1;
	return NULL;
}

static void sa4(struct sockaddr_in *s, const char *a, uint16_t port)
{
	memset(s, 0, sizeof(*s));
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	inet_pton(AF_INET, a, &s->sin_addr);
}

static void sa6(struct sockaddr_in6 *s, const char *a, uint16_t port)
{
	memset(s, 0, sizeof(*s));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	inet_pton(AF_INET6, a, &s->sin6_addr);
}

enum { K_DEFAULT, K_DOWN_OPEN, K_NETNS_OTHER, K_CLOSED };

/* Opens cap with one of the configurations above (closing the previous
 * one). Returns 0 or -errno; err gets libbpf/capture's reason. */
static int use_capture(int kind, uint16_t listen_port, char *err, size_t errlen)
{
	struct capture_opts o;
	struct sockaddr_in t4;
	struct sockaddr_in6 t6;
	int rc;

	if (cap && cap_kind == kind && kind == K_DEFAULT)
		return 0;
	capture_free(cap);
	cap = NULL;
	cap_kind = -1;
	memset(&o, 0, sizeof(o));
	o.cgroup_path = cg_path;
	o.pin_dir = pin_dir;
	o.fail_closed = kind == K_CLOSED;
	sa4(&o.listen4, "127.0.0.1", kind == K_DEFAULT ? agent4_port : listen_port);
	sa6(&o.listen6, "::1", kind == K_DEFAULT ? agent6_port : listen_port);
	o.host_netns_cookie = capture_netns_cookie();
	if (kind == K_NETNS_OTHER)
		o.host_netns_cookie += 1000;
	rc = capture_open(&o, &cap, err, errlen);
	if (rc < 0)
		return rc;
	cap_kind = kind;
	sa4(&t4, "127.0.0.2", UP_PORT);
	rc = capture_target_add(cap, (struct sockaddr *)&t4, UP_PORT);
	if (rc == 0)
		rc = capture_target_add(cap, (struct sockaddr *)&t4, QUIC);
	sa6(&t6, "::1", UP_PORT);
	if (rc == 0)
		rc = capture_target_add(cap, (struct sockaddr *)&t6, UP_PORT);
	if (rc < 0)
		snprintf(err, errlen, "capture_target_add: %s", strerror(-rc));
	return rc;
}

/* ---- children ----------------------------------------------------------- */

struct child_req {
	int family, type;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	int use_sendto;      /* UDP: sendto() the destination instead of connect() */
	int bypass;          /* capture_bypass_add() before connecting */
	int drop_uid;        /* run as nobody */
	int outside;         /* stay out of the scratch cgroup */
	int from_thread;     /* connect from a second thread (pid != tgid) */
	uint16_t bind_port;  /* bind 127.0.0.1:bind_port (SO_REUSEADDR) first */
};

struct child_res {
	int stage;           /* 0 ok; where it failed otherwise */
	int err;             /* errno of connect/sendto (0 = success) */
	struct sockaddr_storage peer;
	socklen_t peerlen;
	pid_t pid;
	pid_t tid;           /* thread that called connect */
};

struct child {
	pid_t pid;
	int slot;
	struct child_res res;
};

static int join_cgroup(void)
{
	char p[700];
	int fd, n;

	snprintf(p, sizeof(p), "%s/cgroup.procs", cg_path);
	fd = open(p, O_WRONLY);
	if (fd < 0)
		return -1;
	n = (int)write(fd, "0\n", 2);
	close(fd);
	return n == 2 ? 0 : -1;
}

struct child_op {
	const struct child_req *rq;
	struct child_res *r;
	int fd;
};

static void *child_connect(void *arg)
{
	struct child_op *op = arg;
	const struct child_req *rq = op->rq;
	struct child_res *r = op->r;

	r->tid = gettid();
	if (rq->use_sendto) {
		/* On a TCP socket: TCP Fast Open, connect and send in one call. */
		int flags = rq->type == SOCK_STREAM ? MSG_FASTOPEN : 0;

		if (sendto(op->fd, "x", 1, flags, (const struct sockaddr *)&rq->dst, rq->dstlen) < 0)
			r->err = errno;
	} else if (connect(op->fd, (const struct sockaddr *)&rq->dst, rq->dstlen) < 0) {
		r->err = errno;
	}
	if (!r->err && rq->type == SOCK_STREAM) {
		r->peerlen = sizeof(r->peer);
		if (getpeername(op->fd, (struct sockaddr *)&r->peer, &r->peerlen) < 0)
			r->stage = 5;
	}
	return NULL;
}

static void child_main(const struct child_req *rq, int res_fd, int go_fd)
{
	struct child_res r;
	struct child_op op = { rq, &r, -1 };

	memset(&r, 0, sizeof(r));
	r.pid = getpid();
	alarm(20);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	prctl(PR_SET_NAME, CHILD_COMM);
	/* The socket's cgroup is fixed when it is created: join first. */
	if (!rq->outside && join_cgroup() < 0) {
		r.stage = 1;
		goto out;
	}
	op.fd = socket(rq->family, rq->type, 0);
	if (op.fd < 0) {
		r.stage = 2;
		goto out;
	}
	if (rq->bind_port) {
		struct sockaddr_in b;
		int one = 1;

		sa4(&b, "127.0.0.1", rq->bind_port);
		setsockopt(op.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(op.fd, (struct sockaddr *)&b, sizeof(b)) < 0) {
			r.stage = 7;
			r.err = errno;
			goto out;
		}
	}
	if (rq->bypass && capture_bypass_add(cap, op.fd) < 0) {
		r.stage = 3;
		goto out;
	}
	if (rq->drop_uid && (setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)) {
		r.stage = 4;
		goto out;
	}
	if (rq->from_thread) {
		pthread_t th;

		if (pthread_create(&th, NULL, child_connect, &op) != 0) {
			r.stage = 6;
			goto out;
		}
		pthread_join(th, NULL);
	} else {
		child_connect(&op);
	}
out:
	if (write(res_fd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
	/* Keep the socket open until the parent is done looking it up. */
	{
		char b;
		while (read(go_fd, &b, 1) < 0 && errno == EINTR)
			;
	}
	_exit(0);
}

/* Forks a child that performs rq and waits; res is filled. Returns 0 or -1. */
static int child_run(const struct child_req *rq, struct child *ch)
{
	int rp[2], gp[2], slot = -1;
	ssize_t n;

	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			slot = i;
			break;
		}
	if (slot < 0 || pipe2(rp, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(gp, O_CLOEXEC) < 0) {
		close(rp[0]);
		close(rp[1]);
		return -1;
	}
	fflush(stdout);
	ch->pid = fork();
	if (ch->pid < 0)
		return -1;
	if (ch->pid == 0) {
		close(rp[0]);
		close(gp[1]);
		child_main(rq, rp[1], gp[0]);
	}
	close(rp[1]);
	close(gp[0]);
	children[slot] = ch->pid;
	go_fds[slot] = gp[1];
	ch->slot = slot;
	n = read(rp[0], &ch->res, sizeof(ch->res));
	close(rp[0]);
	return n == sizeof(ch->res) ? 0 : -1;
}

/* Lets the child close its socket and exit; waits for it. */
static void child_done(struct child *ch)
{
	int st;

	if (go_fds[ch->slot] > 0)
		close(go_fds[ch->slot]);
	go_fds[ch->slot] = 0;
	waitpid(ch->pid, &st, 0);
	children[ch->slot] = 0;
}

static void req_tcp4(struct child_req *rq, const char *a, uint16_t port)
{
	memset(rq, 0, sizeof(*rq));
	rq->family = AF_INET;
	rq->type = SOCK_STREAM;
	sa4((struct sockaddr_in *)&rq->dst, a, port);
	rq->dstlen = sizeof(struct sockaddr_in);
}

static void req_tcp6(struct child_req *rq, const char *a, uint16_t port)
{
	memset(rq, 0, sizeof(*rq));
	rq->family = AF_INET6;
	rq->type = SOCK_STREAM;
	sa6((struct sockaddr_in6 *)&rq->dst, a, port);
	rq->dstlen = sizeof(struct sockaddr_in6);
}

/* Accepts one pending connection within ms; -1 if none. */
static int accept_within(int lfd, int ms, struct sockaddr_storage *peer, socklen_t *peerlen)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	*peerlen = sizeof(*peer);
	return accept4(lfd, (struct sockaddr *)peer, peerlen, SOCK_CLOEXEC);
}

static int pending(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

/* Empties a listener's queue so a stale connection cannot satisfy a later
 * test. */
static void drain(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	while ((fd = accept_within(lfd, 0, &ss, &sl)) >= 0)
		close(fd);
}

static void drain_all(void)
{
	drain(agent4);
	drain(agent6);
	drain(up4);
	drain(up4b);
	drain(up6);
}

static int is_v4(const struct sockaddr_storage *ss, const char *a, uint16_t port)
{
	const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
	struct in_addr want;

	inet_pton(AF_INET, a, &want);
	return s->sin_family == AF_INET && s->sin_addr.s_addr == want.s_addr && ntohs(s->sin_port) == port;
}

static int is_v6(const struct sockaddr_storage *ss, const char *a, uint16_t port)
{
	const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
	struct in6_addr want;

	inet_pton(AF_INET6, a, &want);
	return s->sin6_family == AF_INET6 && memcmp(&s->sin6_addr, &want, 16) == 0 && ntohs(s->sin6_port) == port;
}

static int origin_is(const struct vigil_origin *o, const char *a6, uint16_t port)
{
	struct in6_addr want;

	inet_pton(AF_INET6, a6, &want);
	return memcmp(o->orig_addr, &want, 16) == 0 && o->orig_port == port;
}

static const char *fmt_peer(const struct sockaddr_storage *ss)
{
	static char buf[80];
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a, sizeof(a));
		snprintf(buf, sizeof(buf), "%s:%u", a, ntohs(((const struct sockaddr_in *)ss)->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a, sizeof(a));
		snprintf(buf, sizeof(buf), "[%s]:%u", a, ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
	} else {
		snprintf(buf, sizeof(buf), "family %d", ss->ss_family);
	}
	return buf;
}

static uint64_t cgroup_id(const char *path)
{
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + 8];
	} h;
	uint64_t id;
	int mnt;

	h.fh.handle_bytes = 8;
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mnt, 0) < 0)
		return 0;
	memcpy(&id, h.buf + sizeof(struct file_handle), 8);
	return id;
}

/* Kernel events collected by capture_events_poll. */
struct evlog {
	int n;
	struct vigil_kevent ev[64];
};

static void on_ev(void *arg, const struct vigil_kevent *ev)
{
	struct evlog *l = arg;

	if (l->n < 64)
		l->ev[l->n++] = *ev;
}

static int find_event(struct evlog *l, uint32_t reason, uint32_t proto, pid_t tgid)
{
	for (int i = 0; i < l->n; i++)
		if (l->ev[i].reason == reason && l->ev[i].proto == proto && (int)l->ev[i].origin.tgid == tgid)
			return 1;
	return 0;
}

#define SETUP(kind, port) \
	char err[256] = ""; \
	const char *why = env_init(); \
	CHECK(!why, "environment: %s", why); \
	reap_children(); \
	if (!cap) \
		remove_pins(); /* a failed test may have left some */ \
	drain_all(); \
	CHECK(use_capture(kind, port, err, sizeof(err)) == 0, "capture_open: %s", err)

/* ---- tests --------------------------------------------------------------- */

TEST(redirect_v4_records_identity_and_original_destination)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct vigil_origin o;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	rq.drop_uid = 1;
	rq.from_thread = 1;
	CHECK(child_run(&rq, &ch) == 0, "child did not report");
	CHECK(ch.res.stage == 0, "child failed at stage %d", ch.res.stage);
	CHECK(ch.res.err == 0, "connect to target failed: %s", strerror(ch.res.err));
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "redirected connection did not reach the agent listener (upstream pending: %d)",
	      pending(up4));
	CHECK(!pending(up4), "connection also reached the real upstream");
	CHECK(is_v4(&ch.res.peer, "127.0.0.2", UP_PORT), "child's getpeername says %s, want 127.0.0.2:%d",
	      fmt_peer(&ch.res.peer), UP_PORT);
	/* No local address: only the tuple map (sockops) can answer. */
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	close(fd);
	CHECK(rc == 0, "capture_lookup of %s via the tuple map: %s", fmt_peer(&peer), strerror(-rc));
	CHECK((int)o.tgid == ch.res.pid && (int)o.pid == ch.res.tid && ch.res.tid != ch.res.pid,
	      "origin tgid/pid %u/%u, child process %d thread %d", o.tgid, o.pid, ch.res.pid, ch.res.tid);
	CHECK(o.uid == NOBODY && o.gid == NOBODY, "origin uid/gid %u/%u, want %d", o.uid, o.gid, NOBODY);
	CHECK(strcmp(o.comm, CHILD_COMM) == 0, "origin comm '%.16s', want %s", o.comm, CHILD_COMM);
	CHECK(origin_is(&o, "::ffff:127.0.0.2", UP_PORT), "origin destination wrong (port %u)", o.orig_port);
	CHECK(o.family == AF_INET, "origin family %u, want AF_INET", o.family);
	CHECK(o.flags & VIGIL_ORIGIN_REDIRECTED, "origin flags 0x%x lack REDIRECTED", o.flags);
	CHECK(o.cgroup_id == cgroup_id(cg_path), "origin cgroup id %llu, scratch cgroup %llu",
	      (unsigned long long)o.cgroup_id, (unsigned long long)cgroup_id(cg_path));
	CHECK(o.netns_cookie == capture_netns_cookie(), "origin netns cookie differs from ours");
	CHECK(o.cookie != 0 && o.ktime_ns != 0, "origin cookie/ktime not set");
	child_done(&ch);
}

TEST(tcp_fast_open_redirected)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct vigil_origin o;
	char b = 0;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	rq.use_sendto = 1;
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed at stage %d", ch.res.stage);
	CHECK(ch.res.err == 0, "sendto(MSG_FASTOPEN) to target failed: %s", strerror(ch.res.err));
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "TCP Fast Open connection not redirected (upstream pending: %d)", pending(up4));
	rc = (int)recv(fd, &b, 1, 0);
	CHECK(rc == 1 && b == 'x', "agent did not receive the fast-open payload (%d)", rc);
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	close(fd);
	CHECK(rc == 0 && (int)o.tgid == ch.res.pid, "lookup of the fast-open connection: %d", rc);
	child_done(&ch);
}

TEST(target_set_add_list_delete)
{
	struct vigil_target_key keys[8];
	struct sockaddr_in t;
	struct sockaddr_un u = { .sun_family = AF_UNIX };
	int n, found = 0;

	SETUP(K_DEFAULT, 0);
	n = capture_target_list(cap, keys, 8);
	CHECK(n == 3, "target list has %d entries, want 3", n);
	for (int i = 0; i < n; i++)
		if (keys[i].port == UP_PORT && keys[i].addr[10] == 0xff && keys[i].addr[12] == 127 &&
		    keys[i].addr[15] == 2)
			found = 1;
	CHECK(found, "127.0.0.2:%d not listed as ::ffff:127.0.0.2", UP_PORT);
	CHECK(capture_target_list(cap, keys, 1) == 3, "a short array must still report the total");
	sa4(&t, "127.0.0.9", 1);
	CHECK(capture_target_add(cap, (struct sockaddr *)&t, 1) == 0, "add failed");
	CHECK(capture_target_list(cap, keys, 8) == 4, "add did not show up");
	CHECK(capture_target_del(cap, (struct sockaddr *)&t, 1) == 0, "del failed");
	CHECK(capture_target_list(cap, keys, 8) == 3, "del did not take effect");
	CHECK(capture_target_del(cap, (struct sockaddr *)&t, 1) == -ENOENT, "deleting a missing target must be -ENOENT");
	CHECK(capture_target_add(cap, (struct sockaddr *)&u, 1) == -EAFNOSUPPORT, "AF_UNIX target accepted");
}

/* A redirected connection the agent never looked up leaves a tuple entry;
 * a later direct connection to the agent from the same local port must
 * not inherit that identity. */
TEST(stale_tuple_not_inherited_by_direct_connection)
{
	struct child_req rq;
	struct child a, b;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct vigil_origin o;
	uint16_t port;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	/* The client port is an ephemeral one: another process on a busy
	 * machine may bind it between the two connections (EADDRINUSE at the
	 * bind). That says nothing about the agent: start over with a new port. */
	for (int attempt = 0;; attempt++) {
		req_tcp4(&rq, "127.0.0.2", UP_PORT);
		CHECK(child_run(&rq, &a) == 0 && a.res.stage == 0 && a.res.err == 0, "first child failed");
		fd = accept_within(agent4, 2000, &peer, &pl);
		CHECK(fd >= 0, "not redirected");
		port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
		/* Reset, not close: whichever side closed first would keep the
		 * 4-tuple in TIME_WAIT, and the direct connection below reuses exactly
		 * that 4-tuple (same client port, same listener). Closing "agent first"
		 * raced with the child's exit and failed now and then. */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "SO_LINGER: %s", strerror(errno));
		close(fd);
		usleep(20000);
		child_done(&a);
		usleep(20000);

		req_tcp4(&rq, "127.0.0.1", agent4_port);
		rq.bind_port = port;
		CHECK(child_run(&rq, &b) == 0, "second child did not report");
		if (b.res.stage != 7 || b.res.err != EADDRINUSE || attempt == 4)
			break;
		child_done(&b);
	}
	CHECK(b.res.stage == 0 && b.res.err == 0, "direct connect from port %u failed at stage %d: %s", port,
	      b.res.stage, strerror(b.res.err));
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "direct connection did not arrive");
	CHECK(ntohs(((struct sockaddr_in *)&peer)->sin_port) == port, "port not reused");
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	close(fd);
	CHECK(rc == -ENOENT, "direct connection got an identity (tgid %u; first child %d, second %d)", o.tgid,
	      a.res.pid, b.res.pid);
	child_done(&b);
}

TEST(non_target_destination_untouched)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	int fd;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", NONTARGET);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "connect to non-target failed: %s", strerror(ch.res.err));
	fd = accept_within(up4b, 2000, &peer, &pl);
	CHECK(fd >= 0, "non-target connection did not reach its real destination");
	close(fd);
	CHECK(!pending(agent4), "non-target connection was redirected to the agent");
	CHECK(is_v4(&ch.res.peer, "127.0.0.2", NONTARGET), "getpeername %s", fmt_peer(&ch.res.peer));
	child_done(&ch);
}

TEST(process_outside_cgroup_untouched)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	int fd;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	rq.outside = 1;
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "connect failed: %s", strerror(ch.res.err));
	fd = accept_within(up4, 2000, &peer, &pl);
	CHECK(fd >= 0, "connection from outside the cgroup did not reach the real upstream");
	close(fd);
	CHECK(!pending(agent4), "connection from outside the cgroup was redirected");
	child_done(&ch);
}

TEST(udp_443_to_target_refused)
{
	struct child_req rq;
	struct child ch;
	struct evlog log = { 0 };

	SETUP(K_DEFAULT, 0);
	capture_events_poll(cap, NULL, NULL);

	memset(&rq, 0, sizeof(rq));
	rq.family = AF_INET;
	rq.type = SOCK_DGRAM;
	sa4((struct sockaddr_in *)&rq.dst, "127.0.0.2", QUIC);
	rq.dstlen = sizeof(struct sockaddr_in);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == ECONNREFUSED, "UDP connect to target:443 gave '%s', want ECONNREFUSED",
	      ch.res.err ? strerror(ch.res.err) : "success");
	child_done(&ch);
	CHECK(capture_events_poll(cap, on_ev, &log) >= 1, "no kernel event for the UDP refusal");
	CHECK(find_event(&log, VIGIL_ORIGIN_REFUSED, IPPROTO_UDP, ch.pid), "no REFUSED/UDP event for the child");

	rq.use_sendto = 1;
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == ECONNREFUSED, "UDP sendto target:443 gave '%s', want ECONNREFUSED",
	      ch.res.err ? strerror(ch.res.err) : "success");
	child_done(&ch);

	rq.family = AF_INET6;
	sa6((struct sockaddr_in6 *)&rq.dst, "::ffff:127.0.0.2", QUIC);
	rq.dstlen = sizeof(struct sockaddr_in6);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == ECONNREFUSED, "UDP sendto ::ffff:127.0.0.2:443 gave '%s', want ECONNREFUSED",
	      ch.res.err ? strerror(ch.res.err) : "success");
	child_done(&ch);

	/* Control: UDP to a port that is not 443 passes. */
	rq.family = AF_INET;
	sa4((struct sockaddr_in *)&rq.dst, "127.0.0.2", NONTARGET);
	rq.dstlen = sizeof(struct sockaddr_in);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "UDP sendto non-443 failed: %s", strerror(ch.res.err));
	child_done(&ch);
}

TEST(bypass_socket_not_redirected)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	int fd;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	rq.bypass = 1;
	CHECK(child_run(&rq, &ch) == 0, "child did not report");
	CHECK(ch.res.stage == 0, "child failed at stage %d (3 = capture_bypass_add)", ch.res.stage);
	CHECK(ch.res.err == 0, "connect failed: %s", strerror(ch.res.err));
	fd = accept_within(up4, 2000, &peer, &pl);
	CHECK(fd >= 0, "bypassed socket did not reach the real upstream (agent pending: %d)", pending(agent4));
	close(fd);
	CHECK(!pending(agent4), "bypassed socket was redirected");
	child_done(&ch);
}

TEST(redirect_native_ipv6)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct vigil_origin o;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	req_tcp6(&rq, "::1", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "connect to [::1]:%d failed: %s", UP_PORT, strerror(ch.res.err));
	fd = accept_within(agent6, 2000, &peer, &pl);
	CHECK(fd >= 0, "IPv6 connection not redirected to [::1]:%u (upstream pending: %d)", agent6_port,
	      pending(up6));
	CHECK(is_v6(&ch.res.peer, "::1", UP_PORT), "child's getpeername says %s", fmt_peer(&ch.res.peer));
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	close(fd);
	CHECK(rc == 0, "capture_lookup of %s via the tuple map: %s", fmt_peer(&peer), strerror(-rc));
	CHECK((int)o.tgid == ch.res.pid, "origin tgid %u, child %d", o.tgid, ch.res.pid);
	CHECK(o.family == AF_INET6 && origin_is(&o, "::1", UP_PORT), "origin family %u port %u", o.family,
	      o.orig_port);
	child_done(&ch);
}

TEST(redirect_v4_mapped_on_ipv6_socket)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct vigil_origin o;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	req_tcp6(&rq, "::ffff:127.0.0.2", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "connect to ::ffff:127.0.0.2 failed: %s", strerror(ch.res.err));
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "v4-mapped connection not redirected to the IPv4 agent (upstream pending: %d)",
	      pending(up4));
	CHECK(is_v6(&ch.res.peer, "::ffff:127.0.0.2", UP_PORT), "child's getpeername says %s",
	      fmt_peer(&ch.res.peer));
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	close(fd);
	CHECK(rc == 0, "capture_lookup of %s via the tuple map: %s", fmt_peer(&peer), strerror(-rc));
	CHECK((int)o.tgid == ch.res.pid, "origin tgid %u, child %d", o.tgid, ch.res.pid);
	CHECK(o.family == AF_INET6 && origin_is(&o, "::ffff:127.0.0.2", UP_PORT), "origin family %u port %u",
	      o.family, o.orig_port);
	child_done(&ch);
}

TEST(lookup_falls_back_to_sock_diag)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer, local;
	socklen_t pl, ll = sizeof(local);
	struct vigil_origin o;
	int fd, rc;

	SETUP(K_DEFAULT, 0);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0 && ch.res.err == 0, "child connect failed");
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "not redirected");
	getsockname(fd, (struct sockaddr *)&local, &ll);
	/* First lookup consumes the tuple entry. */
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	CHECK(rc == 0, "first lookup: %s", strerror(-rc));
	/* Second: no tuple entry any more, sock_diag must find the socket. */
	memset(&o, 0, sizeof(o));
	rc = capture_lookup(cap, (struct sockaddr *)&peer, (struct sockaddr *)&local, &o);
	CHECK(rc == 0, "lookup via sock_diag: %s", strerror(-rc));
	CHECK((int)o.tgid == ch.res.pid && origin_is(&o, "::ffff:127.0.0.2", UP_PORT),
	      "sock_diag lookup returned tgid %u port %u, want %d/%d", o.tgid, o.orig_port, ch.res.pid, UP_PORT);
	/* Without the local address there is no fallback: the tuple entry
	 * is really gone. */
	rc = capture_lookup(cap, (struct sockaddr *)&peer, NULL, &o);
	CHECK(rc == -ENOENT, "lookup without tuple entry nor local address gave %d, want -ENOENT", rc);
	/* Once the application socket is closed its origin is gone too. */
	child_done(&ch);
	rc = capture_lookup(cap, (struct sockaddr *)&peer, (struct sockaddr *)&local, &o);
	close(fd);
	CHECK(rc == -ENOENT, "lookup after the application closed gave %d, want -ENOENT", rc);
}

/* A socket of another network namespace (here: the hook is told the
 * agent lives elsewhere) is never let through direct: refused and reported
 * while no marked agent listener exists in its netns, redirected to the
 * marked one after, and its origin found under its own netns cookie. */
TEST(netns_other_refused_then_redirected_to_marked_listener)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct evlog log = { 0 };
	struct vigil_origin o;
	int fd, rc;

	SETUP(K_NETNS_OTHER, agent4_port);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == ECONNREFUSED, "first connect from a foreign netns: %s, want ECONNREFUSED",
	      strerror(ch.res.err));
	fd = accept_within(up4, 300, &peer, &pl);
	CHECK(fd < 0, "a connection from a foreign netns went direct to the upstream");
	child_done(&ch);
	capture_events_poll(cap, on_ev, &log);
	CHECK(find_event(&log, VIGIL_ORIGIN_NETNS_NEW, IPPROTO_TCP, ch.pid), "no NETNS_NEW event (%d events)",
	      log.n);
	/* An unmarked listener at the agent's address (a container process
	 * squatting the port) is not enough: only the agent's mark is. */
	CHECK(capture_listener_mark(cap, agent4) == 0, "capture_listener_mark failed");
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0 && ch.res.err == 0, "retry failed: %s",
	      strerror(ch.res.err));
	fd = accept_within(agent4, 2000, &peer, &pl);
	CHECK(fd >= 0, "the retry was not redirected to the marked listener (upstream pending: %d)", pending(up4));
	rc = capture_lookup_in(cap, capture_sock_netns_cookie(fd), (struct sockaddr *)&peer, NULL, &o);
	CHECK(rc == 0 && o.tgid == (uint32_t)ch.res.pid, "lookup by netns cookie: %d (tgid %u, want %d)", rc,
	      o.tgid, ch.res.pid);
	rc = capture_lookup_in(cap, capture_sock_netns_cookie(fd) + 1, (struct sockaddr *)&peer, NULL, &o);
	CHECK(rc == -ENOENT, "lookup under another netns cookie gave %d, want -ENOENT", rc);
	close(fd);
	child_done(&ch);
}

TEST(fail_open_without_listener_goes_direct)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer;
	socklen_t pl;
	struct evlog log = { 0 };
	uint16_t dead_port;
	int fd, tmp = listen_on(AF_INET, "127.0.0.1", 0, &dead_port);

	close(tmp); /* a port where nothing listens */
	SETUP(K_DOWN_OPEN, dead_port);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == 0, "fail-open with agent down must not break the connection: %s",
	      strerror(ch.res.err));
	fd = accept_within(up4, 2000, &peer, &pl);
	CHECK(fd >= 0, "connection did not go direct");
	close(fd);
	child_done(&ch);
	capture_events_poll(cap, on_ev, &log);
	CHECK(find_event(&log, VIGIL_ORIGIN_BYPASS_DOWN, IPPROTO_TCP, ch.pid), "no BYPASS_DOWN event (%d events)",
	      log.n);
}

TEST(fail_closed_without_listener_refuses)
{
	struct child_req rq;
	struct child ch;
	struct evlog log = { 0 };
	char p[300];
	uint16_t dead_port;
	int tmp = listen_on(AF_INET, "127.0.0.1", 0, &dead_port);

	close(tmp);
	SETUP(K_CLOSED, dead_port);
	snprintf(p, sizeof(p), "%s/connect4", pin_dir);
	CHECK(access(p, F_OK) == 0, "fail-closed link not pinned at %s", p);
	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	CHECK(child_run(&rq, &ch) == 0 && ch.res.stage == 0, "child failed");
	CHECK(ch.res.err == ECONNREFUSED, "fail-closed with agent down gave '%s', want ECONNREFUSED",
	      ch.res.err ? strerror(ch.res.err) : "success");
	CHECK(!pending(up4), "refused connection reached the upstream anyway");
	child_done(&ch);
	capture_events_poll(cap, on_ev, &log);
	CHECK(find_event(&log, VIGIL_ORIGIN_REFUSED, IPPROTO_TCP, ch.pid), "no REFUSED event (%d events)", log.n);
	capture_free(cap);
	cap = NULL;
	CHECK(access(pin_dir, F_OK) < 0, "capture_free left the pin directory %s", pin_dir);
}

static uint32_t pinned_link_id(const char *name)
{
	struct bpf_link_info info;
	uint32_t len = sizeof(info);
	char p[300];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", pin_dir, name);
	fd = bpf_obj_get(p);
	if (fd < 0)
		return 0;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		info.id = 0;
	close(fd);
	return info.id;
}

static uint32_t attached_connect4_progs(void)
{
	uint32_t ids[8], cnt = 8, flags = 0;
	int fd = open(cg_path, O_RDONLY | O_DIRECTORY);

	if (fd < 0)
		return 99;
	if (bpf_prog_query(fd, BPF_CGROUP_INET4_CONNECT, 0, &flags, ids, &cnt) < 0)
		cnt = 99;
	close(fd);
	return cnt;
}

/* One redirected connect from a child; 0 if it reached the agent and the
 * lookup found the child. */
static const char *redirect_once(void)
{
	struct child_req rq;
	struct child ch;
	struct sockaddr_storage peer, local;
	socklen_t pl, ll = sizeof(local);
	struct vigil_origin o;
	int fd, rc;

	req_tcp4(&rq, "127.0.0.2", UP_PORT);
	if (child_run(&rq, &ch) < 0 || ch.res.stage)
		return "child failed";
	if (ch.res.err) {
		child_done(&ch);
		return "connect failed";
	}
	fd = accept_within(agent4, 2000, &peer, &pl);
	if (fd < 0) {
		child_done(&ch);
		return "not redirected to the agent";
	}
	getsockname(fd, (struct sockaddr *)&local, &ll);
	rc = cap ? capture_lookup(cap, (struct sockaddr *)&peer, (struct sockaddr *)&local, &o) : 0;
	close(fd);
	child_done(&ch);
	if (rc < 0 || (cap && (int)o.tgid != ch.res.pid))
		return "capture_lookup did not find the child";
	return NULL;
}

TEST(fail_closed_takeover_after_release)
{
	const char *bad;
	uint32_t id_before, id_after;

	SETUP(K_CLOSED, agent4_port);
	bad = redirect_once();
	CHECK(!bad, "fail-closed with a listener: %s", bad);
	id_before = pinned_link_id("connect4");
	CHECK(id_before != 0, "connect4 link not pinned");

	/* Agent "crashes": references closed, pins stay, still redirecting
	 * (targets survive in the pinned maps). */
	capture_release(cap);
	cap = NULL;
	cap_kind = -1;
	bad = redirect_once();
	CHECK(!bad, "after capture_release: %s", bad);

	/* New agent takes the pinned links over. */
	CHECK(use_capture(K_CLOSED, agent4_port, err, sizeof(err)) == 0, "reopen: %s", err);
	id_after = pinned_link_id("connect4");
	CHECK(id_after == id_before, "connect4 link id %u after reopen, was %u: re-attached instead of taken over",
	      id_after, id_before);
	CHECK(attached_connect4_progs() == 1, "%u connect4 programs attached after takeover, want 1",
	      attached_connect4_progs());
	bad = redirect_once();
	CHECK(!bad, "after takeover: %s", bad);

	capture_free(cap);
	cap = NULL;
	cap_kind = -1;
	CHECK(access(pin_dir, F_OK) < 0, "capture_free left the pin directory %s", pin_dir);
	CHECK(attached_connect4_progs() == 0, "%u connect4 programs still attached after capture_free",
	      attached_connect4_progs());
}

TEST(open_errors_are_explained)
{
	struct capture_opts o;
	struct capture *c = NULL;
	char err[256] = "";
	const char *why = env_init();
	int rc;

	CHECK(!why, "environment: %s", why);
	memset(&o, 0, sizeof(o));
	sa4(&o.listen4, "127.0.0.1", 1);
	o.cgroup_path = "/tmp";
	rc = capture_open(&o, &c, err, sizeof(err));
	CHECK(rc < 0 && !c && strstr(err, "/tmp is not a cgroup2 directory"), "rc %d err '%s'", rc, err);
	o.cgroup_path = "/nonexistent/vigil";
	rc = capture_open(&o, &c, err, sizeof(err));
	CHECK(rc == -ENOENT && strstr(err, "cannot open cgroup /nonexistent/vigil"), "rc %d err '%s'", rc, err);
	o.cgroup_path = cg_path;
	o.fail_closed = true;
	rc = capture_open(&o, &c, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "pin directory"), "fail-closed without pin_dir: rc %d err '%s'", rc, err);
	o.pin_dir = "/tmp/vigil-not-bpffs";
	rc = capture_open(&o, &c, err, sizeof(err));
	rmdir("/tmp/vigil-not-bpffs");
	CHECK(rc < 0 && strstr(err, "not on a bpf filesystem"), "pin_dir on tmpfs: rc %d err '%s'", rc, err);
}

/* The guard's name keys: user space computes them with the same inline
 * function (bpf/vigil.h) the BPF walk uses, so they agree by construction;
 * checked here against FNV-1a 64 reference values of the reversed,
 * lower-cased name, and for the normalisations both sides apply. */
TEST(guard_name_keys)
{
	uint64_t k1, k2;
	uint8_t f1, f2;

	/* FNV-1a 64 of "" and of "a" (reference values of the algorithm) */
	CHECK(vigil_name_hash("", 0) == 0xcbf29ce484222325ULL, "empty name hash");
	CHECK(vigil_name_hash("a", 1) == 0xaf63dc4c8601ec8cULL, "FNV-1a 64 of \"a\": %llx",
	      (unsigned long long)vigil_name_hash("a", 1));
	/* taken right to left: "ab" hashes as FNV-1a("ba") */
	CHECK(vigil_name_hash("ab", 2) == vigil_name_hash_step(vigil_name_hash_step(VIGIL_NAME_HASH_INIT, 'b'), 'a'),
	      "not hashed from the last byte");
	CHECK(capture_guard_key("api.openai.com", &k1, &f1) == 0 && f1 == VIGIL_GUARD_EXACT, "exact key");
	CHECK(capture_guard_key("API.OpenAI.com.", &k2, &f2) == 0 && k1 == k2, "case and trailing dot change the key");
	CHECK(capture_guard_key("*.openai.azure.com", &k1, &f1) == 0 && f1 == VIGIL_GUARD_SUFFIX, "suffix flag");
	CHECK(k1 == vigil_name_hash("openai.azure.com", 16), "a suffix is keyed by what follows \"*.\"");
	/* the BPF walk reaches a suffix's key at the '.' before it: the
	 * running hash over "x.openai.azure.com" from the right, stopped
	 * there, is the suffix key */
	{
		const char *n = "x.openai.azure.com";
		uint64_t h = VIGIL_NAME_HASH_INIT;

		for (size_t i = strlen(n); i > 2;)      /* down to the '.' after "x" */
			h = vigil_name_hash_step(h, (uint8_t)n[--i]);
		CHECK(h == k1, "running hash at the label boundary differs from the suffix key");
	}
	CHECK(capture_guard_key("", &k1, &f1) == -EINVAL && capture_guard_key("*.", &k1, &f1) == -EINVAL,
	      "empty names accepted");
}

TEST(fail_open_links_vanish_on_release)
{
	SETUP(K_DEFAULT, 0);
	CHECK(attached_connect4_progs() == 1, "%u connect4 programs attached, want 1", attached_connect4_progs());
	capture_release(cap);
	cap = NULL;
	cap_kind = -1;
	CHECK(attached_connect4_progs() == 0, "fail-open links survived the agent's exit (%u attached)",
	      attached_connect4_progs());
}

/* ---- latency (printed, not asserted) ------------------------------------- */

#define LAT_N 2000

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Connects LAT_N times to dst, accepting on lfd; median connect() in µs
 * (the median resists scheduler noise on a 2-core box). */
static double connect_loop(const struct sockaddr_in *dst, int lfd)
{
	static double t[LAT_N];

	for (int i = 0; i < LAT_N; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), a;
		double t0 = now_us();

		if (fd < 0 || connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0) {
			if (fd >= 0)
				close(fd);
			return -1;
		}
		t[i] = now_us() - t0;
		a = accept(lfd, NULL, NULL);
		if (a >= 0)
			close(a);
		close(fd);
	}
	qsort(t, LAT_N, sizeof(t[0]), cmp_double);
	return t[LAT_N / 2];
}

/* Cumulative run time and count of the program attached at `type`
 * (kernel BPF stats, enabled by the test). */
static void prog_stats(enum bpf_attach_type type, double *ns, double *cnt)
{
	struct bpf_prog_info info;
	uint32_t ids[4], n = 4, flags = 0, len = sizeof(info);
	int cg = open(cg_path, O_RDONLY | O_DIRECTORY), fd;

	*ns = *cnt = 0;
	if (cg < 0)
		return;
	if (bpf_prog_query(cg, type, 0, &flags, ids, &n) == 0 && n == 1) {
		fd = bpf_prog_get_fd_by_id(ids[0]);
		memset(&info, 0, sizeof(info));
		if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			*ns = (double)info.run_time_ns;
			*cnt = (double)info.run_cnt;
		}
		if (fd >= 0)
			close(fd);
	}
	close(cg);
}

/* Median connect() and the mean run time of connect4 during the loop. */
static void timed_loop(const struct sockaddr_in *dst, int lfd, double out[2])
{
	double ns0, c0, ns1, c1;

	prog_stats(BPF_CGROUP_INET4_CONNECT, &ns0, &c0);
	out[0] = connect_loop(dst, lfd);
	prog_stats(BPF_CGROUP_INET4_CONNECT, &ns1, &c1);
	out[1] = c1 > c0 ? (ns1 - ns0) / (c1 - c0) : -1;
}

TEST(measure_connect_latency)
{
	struct sockaddr_in agent, target;
	double res[5] = { -1, -1, -1, -1, -1 }, sns, scnt, rns, rcnt;
	int p[2], stats_fd;
	pid_t pid;

	SETUP(K_DEFAULT, 0);
	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	sa4(&agent, "127.0.0.1", agent4_port);
	sa4(&target, "127.0.0.2", UP_PORT);
	/* Outside the cgroup: no hook runs. */
	res[0] = connect_loop(&agent, agent4);
	CHECK(pipe(p) == 0, "pipe");
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		double r[4] = { -1, -1, -1, -1 };

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (join_cgroup() == 0) {
			timed_loop(&agent, agent4, &r[0]);  /* hook runs, not a target */
			timed_loop(&target, agent4, &r[2]); /* hook redirects */
		}
		if (write(p[1], r, sizeof(r)) != sizeof(r))
			_exit(1);
		_exit(0);
	}
	children[0] = pid; /* killed by cleanup if we are interrupted */
	close(p[1]);
	if (read(p[0], &res[1], sizeof(double) * 4) != sizeof(double) * 4)
		res[1] = res[3] = -1;
	close(p[0]);
	waitpid(pid, NULL, 0);
	children[0] = 0;
	prog_stats(BPF_CGROUP_SOCK_OPS, &sns, &scnt);
	prog_stats(BPF_CGROUP_INET_SOCK_RELEASE, &rns, &rcnt);
	if (stats_fd >= 0)
		close(stats_fd);
	printf("# connect() median over %d loopback connects: no hook %.1f us, hook/non-target %.1f us, "
	       "hook/redirected %.1f us\n", LAT_N, res[0], res[1], res[3]);
	printf("# BPF run time per call: connect4 non-target %.0f ns, connect4 redirect %.0f ns, "
	       "sockops %.0f ns, sock_release %.0f ns\n", res[2], res[4], scnt ? sns / scnt : -1,
	       rcnt ? rns / rcnt : -1);
	CHECK(res[0] > 0 && res[1] > 0 && res[3] > 0, "a connect loop failed");
}
