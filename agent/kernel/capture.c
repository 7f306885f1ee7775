/* capture: user-space half of the transparent capture. Loads
 * bpf/vigil.bpf.c (skeleton), writes the configuration, attaches every
 * program to one cgroup2 directory with bpf_link, and serves the maps to
 * the agent (targets, origins of accepted connections, bypass of the
 * agent's own upstream sockets, kernel events).
 *
 * Fail open: the links live only in this process, so a crash detaches them
 * and applications connect directly. Fail closed: links and maps are pinned
 * under pin_dir; while no agent listens the connect hook refuses target
 * connections; a new agent takes the pinned links over with
 * BPF_LINK_UPDATE (no instant where traffic goes direct) and reuses the
 * pinned maps (target set, origins and undelivered events survive).
 *
 * Must never: leave programs attached after capture_free, unpin anything in
 * capture_release, or attach to anything that is not a cgroup2 directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "kernel/capture.h"
#include "osutil.h"
#include "log.h"
#include "kernel/sockdiag.h"
#include "vigil.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

#define BPFFS_ROOT "/sys/fs/bpf"

/* Attach order: bookkeeping first, the redirecting hooks last, so that no
 * connection is redirected before the programs that track it are in place.
 * Detach goes in reverse. */
enum { P_RELEASE, P_SOCKOPS, P_GUARD, P_DNS, P_PEER4, P_PEER6, P_SEND4, P_SEND6, P_CONN4, P_CONN6, P_COUNT };
static const char *const prog_names[P_COUNT] = {
	"sock_release", "sockops", "guard_egress", "dns_ingress", "getpeername4", "getpeername6",
	"sendmsg4", "sendmsg6", "connect4", "connect6",
};

struct capture {
	struct vigil_bpf *skel;
	struct bpf_link *links[P_COUNT];
	struct bpf_program *progs[P_COUNT];
	struct ring_buffer *rb;
	struct sockdiag *diag;       /* NULL if sock_diag is unavailable */
	capture_event_fn ev_fn;      /* valid only during capture_events_poll */
	void *ev_arg;
	capture_dns_fn dns_fn;       /* NULL: DNS answers are not copied */
	void *dns_arg;
	capture_guard_fn guard_fn;   /* NULL: no first-flight guard */
	void *guard_arg;
	capture_exec_fn exec_fn;     /* NULL: no exec watch */
	void *exec_arg;
	struct bpf_link *exec_link;  /* never pinned: with no agent to continue them,
				      * stopped launches would hang */
	int cgroup_fd;
	bool pinned;                 /* links and maps pinned under pin_dir */
	int pin_dirfd;               /* pin_dir, opened while privileged: unpinning after
				      * a switch to an unprivileged user cannot walk
				      * the root-only bpffs mount by path */
	char cgroup_path[PATH_MAX];
	char pin_dir[PATH_MAX];      /* "" = no pin directory */
	uint64_t host_netns_cookie;  /* the agent's netns: where sock_diag can look */
};


static int on_kevent(void *ctx, void *data, size_t size);
static int on_dns(void *ctx, void *data, size_t size);
static int on_guard(void *ctx, void *data, size_t size);

/* libbpf talks a lot at debug level (verifier logs on failure come as
 * warnings): route it through our logger instead of raw stderr. */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[16384];
	size_t n;

	if (level == LIBBPF_DEBUG && log_get_level() < LOG_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_msg(level == LIBBPF_WARN ? LOG_WARN : LOG_DEBUG, "libbpf: %s", line);
	return 0;
}

static void addr_to_key(const struct sockaddr *sa, uint8_t out[16], int *ok)
{
	*ok = 1;
	if (sa->sa_family == AF_INET) {
		memset(out, 0, 10);
		out[10] = 0xff;
		out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		*ok = 0;
	}
}

static uint16_t addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}


static bool is_fs(const char *path, long magic)
{
	struct statfs st;

	return statfs(path, &st) == 0 && (long)st.f_type == magic;
}

/* The pin directory must live on bpffs. Debian does not always mount it
 * (containers, minimal systems): mount the standard one when the pin
 * directory is below it. */
static int prepare_pin_dir(const char *dir, char *err, size_t errlen)
{
	int rc;

	if (strncmp(dir, BPFFS_ROOT "/", sizeof(BPFFS_ROOT)) == 0 && !is_fs(BPFFS_ROOT, BPF_FS_MAGIC)) {
		if (mount("bpffs", BPFFS_ROOT, "bpf", 0, "mode=0700") < 0) {
			rc = -errno;
			osutil_errf(err, errlen, "cannot mount bpffs at %s: %s", BPFFS_ROOT, strerror(-rc));
			return rc;
		}
		log_info("mounted bpffs at %s", BPFFS_ROOT);
	}
	rc = osutil_mkdir_p(dir, 0700, 0700);
	if (rc < 0) {
		osutil_errf(err, errlen, "cannot create pin directory %s: %s", dir, strerror(-rc));
		return rc;
	}
	if (!is_fs(dir, BPF_FS_MAGIC)) {
		osutil_errf(err, errlen, "pin directory %s is not on a bpf filesystem", dir);
		return -EINVAL;
	}
	return 0;
}

static int pin_path(char *buf, size_t len, const char *dir, const char *prefix, const char *name)
{
	int n = snprintf(buf, len, "%s/%s%s", dir, prefix, name);

	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static bool link_pins_exist(const char *dir)
{
	char p[PATH_MAX];

	for (int i = 0; i < P_COUNT; i++)
		if (pin_path(p, sizeof(p), dir, "", prog_names[i]) == 0 && access(p, F_OK) == 0)
			return true;
	return false;
}

/* cgroup2 file handles are the 64-bit cgroup id. */
static uint64_t cgroup_id_of(const char *path)
{
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + sizeof(uint64_t)];
	} h;
	uint64_t id;
	int mount_id;

	h.fh.handle_bytes = sizeof(id);
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0 || h.fh.handle_bytes != sizeof(id))
		return 0;
	memcpy(&id, h.buf + sizeof(struct file_handle), sizeof(id));
	return id;
}

static void set_map_pins(struct capture *c, bool on)
{
	struct bpf_map *m;
	char p[PATH_MAX];

	bpf_object__for_each_map(m, c->skel->obj) {
		if (!on || pin_path(p, sizeof(p), c->pin_dir, "map_", bpf_map__name(m)) < 0) {
			bpf_map__set_pin_path(m, NULL);
			continue;
		}
		bpf_map__set_pin_path(m, p);
	}
}

static void unlink_map_pins(struct capture *c)
{
	struct bpf_map *m;
	char p[PATH_MAX];

	bpf_object__for_each_map(m, c->skel->obj)
		if (pin_path(p, sizeof(p), c->pin_dir, "map_", bpf_map__name(m)) == 0)
			unlink(p);
}

static void collect_progs(struct capture *c)
{
	c->progs[P_RELEASE] = c->skel->progs.vigil_sock_release;
	c->progs[P_SOCKOPS] = c->skel->progs.vigil_sockops;
	c->progs[P_GUARD] = c->guard_fn ? c->skel->progs.vigil_guard_egress : NULL;
	c->progs[P_DNS] = c->dns_fn ? c->skel->progs.vigil_dns_ingress : NULL;
	c->progs[P_PEER4] = c->skel->progs.vigil_getpeername4;
	c->progs[P_PEER6] = c->skel->progs.vigil_getpeername6;
	c->progs[P_SEND4] = c->skel->progs.vigil_sendmsg4;
	c->progs[P_SEND6] = c->skel->progs.vigil_sendmsg6;
	c->progs[P_CONN4] = c->skel->progs.vigil_connect4;
	c->progs[P_CONN6] = c->skel->progs.vigil_connect6;
}

/* Opens and loads the skeleton; with use_pins, maps pinned by a previous
 * agent are reused. A pinned map whose definition changed (upgrade) makes
 * the load fail: then the stale map pins are dropped and fresh maps made. */
static int load_skel(struct capture *c, bool use_pins, char *err, size_t errlen)
{
	bool pins_reset = false;
	int rc;

	for (int attempt = 0; attempt < 3; attempt++) {
		c->skel = vigil_bpf__open();
		if (!c->skel) {
			rc = -errno;
			osutil_errf(err, errlen, "cannot open BPF object: %s", strerror(-rc));
			return rc;
		}
		set_map_pins(c, use_pins);
		bpf_program__set_autoload(c->skel->progs.vigil_dns_ingress, c->dns_fn != NULL);
		bpf_program__set_autoload(c->skel->progs.vigil_guard_egress, c->guard_fn != NULL);
		bpf_program__set_autoload(c->skel->progs.vigil_exec, c->exec_fn != NULL);
		rc = vigil_bpf__load(c->skel);
		if (rc == 0) {
			collect_progs(c);
			return 0;
		}
		vigil_bpf__destroy(c->skel);
		c->skel = NULL;
		if (use_pins && !pins_reset) {
			log_warn("capture: pinned maps in %s do not match this build, recreating them", c->pin_dir);
			unlink_map_pins(c);
			pins_reset = true;
		} else if (c->exec_fn) {
			log_warn("capture: the exec watch does not load here (%s): stdio MCP launches are not seen",
				 strerror(-rc));
			c->exec_fn = NULL;
		} else if (c->guard_fn) {
			/* Said loudly: without it, a watched name pinned to an
			 * address the agent never learned goes direct. */
			log_err("capture: the first-flight guard does not load here (%s): it is OFF", strerror(-rc));
			c->guard_fn = NULL;
		} else if (c->dns_fn) {
			/* DNS learning is an addition: a kernel that refuses
			 * its program still gets the capture. */
			log_warn("capture: the DNS answer program does not load here (%s): DNS learning is off",
				 strerror(-rc));
			c->dns_fn = NULL;
		} else {
			break;
		}
	}
	osutil_errf(err, errlen, "cannot load BPF programs: %s (needs Linux >= 5.18 with BTF)", strerror(-rc));
	return rc;
}

static int write_config(struct capture *c, const struct capture_opts *o)
{
	struct vigil_config cfg;
	uint32_t zero = 0;

	memset(&cfg, 0, sizeof(cfg));
	if (o->listen4.sin_family == AF_INET && o->listen4.sin_port) {
		cfg.listen4_addr = o->listen4.sin_addr.s_addr;
		cfg.listen4_port = ntohs(o->listen4.sin_port);
	}
	if (o->listen6.sin6_family == AF_INET6 && o->listen6.sin6_port) {
		memcpy(cfg.listen6_addr, &o->listen6.sin6_addr, 16);
		cfg.listen6_port = ntohs(o->listen6.sin6_port);
	}
	cfg.host_netns_cookie = o->host_netns_cookie;
	/* Where this process (its sock_diag socket, its host listeners) lives,
	 * whatever the hook was told to treat as the host (tests pretend). */
	c->host_netns_cookie = capture_netns_cookie();
	cfg.fail_closed = o->fail_closed ? 1 : 0;
	cfg.quic_all = o->quic_all ? 1 : 0;
	return bpf_map__update_elem(c->skel->maps.settings, &zero, sizeof(zero), &cfg, sizeof(cfg), BPF_ANY);
}

/* A pinned link from a previous agent: keep it (swap in our program) if
 * it is attached where we want to be, otherwise drop it. Returns the link
 * or NULL (errno set) when the caller must attach fresh. */
static struct bpf_link *take_over(struct capture *c, int i, const char *path, uint64_t cg_id)
{
	struct bpf_link_info info;
	uint32_t len = sizeof(info);
	struct bpf_link *l = bpf_link__open(path);
	int rc;

	if (!l) {
		log_warn("capture: cannot open pinned link %s (%s), replacing it", path, strerror(errno));
		unlink(path);
		return NULL;
	}
	memset(&info, 0, sizeof(info));
	rc = bpf_obj_get_info_by_fd(bpf_link__fd(l), &info, &len);
	if (rc == 0 && info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cg_id &&
	    info.cgroup.attach_type == bpf_program__expected_attach_type(c->progs[i])) {
		rc = bpf_link__update_program(l, c->progs[i]);
		if (rc == 0) {
			log_info("capture: took over pinned %s link", prog_names[i]);
			return l;
		}
		log_warn("capture: cannot update pinned %s link: %s", prog_names[i], strerror(-rc));
	} else {
		log_warn("capture: pinned link %s is attached elsewhere, detaching it", path);
	}
	bpf_link__unpin(l);
	bpf_link__detach(l);
	bpf_link__destroy(l);
	errno = ENOENT;
	return NULL;
}

static int attach_all(struct capture *c, bool takeover, char *err, size_t errlen)
{
	uint64_t cg_id = cgroup_id_of(c->cgroup_path);
	char path[PATH_MAX];
	int rc;

	for (int i = 0; i < P_COUNT; i++) {
		struct bpf_link *l = NULL;

		if (!c->progs[i]) {
			/* Not wanted (DNS learning off): a pinned link of a
			 * previous agent that had it goes. */
			if (c->pin_dir[0] && pin_path(path, sizeof(path), c->pin_dir, "", prog_names[i]) == 0 &&
			    access(path, F_OK) == 0 && (l = bpf_link__open(path))) {
				bpf_link__unpin(l);
				bpf_link__detach(l);
				bpf_link__destroy(l);
			}
			continue;
		}
		if (c->pin_dir[0] && pin_path(path, sizeof(path), c->pin_dir, "", prog_names[i]) < 0) {
			osutil_errf(err, errlen, "pin path too long under %s", c->pin_dir);
			return -ENAMETOOLONG;
		}
		if (takeover && access(path, F_OK) == 0)
			l = take_over(c, i, path, cg_id);
		if (!l) {
			l = bpf_program__attach_cgroup(c->progs[i], c->cgroup_fd);
			if (!l) {
				rc = -errno;
				osutil_errf(err, errlen, "cannot attach %s to %s: %s", prog_names[i], c->cgroup_path,
				       strerror(-rc));
				return rc;
			}
			if (c->pinned) {
				rc = bpf_link__pin(l, path);
				if (rc < 0) {
					c->links[i] = l;
					osutil_errf(err, errlen, "cannot pin %s link at %s: %s", prog_names[i], path,
					       strerror(-rc));
					return rc;
				}
			}
		}
		c->links[i] = l;
	}
	return 0;
}

/* Fail-open after a fail-closed agent: we hold the links now, the pins
 * (which would keep them attached after our death) must go. */
static void drop_pins(struct capture *c)
{
	for (int i = 0; i < P_COUNT; i++)
		if (c->links[i] && bpf_link__pin_path(c->links[i]))
			bpf_link__unpin(c->links[i]);
	if (c->skel)
		bpf_object__unpin_maps(c->skel->obj, NULL);
	if (c->pin_dir[0])
		rmdir(c->pin_dir);
}

/* Tells the connect hooks (loaded either way: they refuse TCP Fast Open
 * while the guard runs) whether it does; written even when off, over what
 * a pinned map of a previous agent may say. */
static int guard_configure(struct capture *c, char *err, size_t errlen)
{
	uint32_t zero = 0, on = c->guard_fn != NULL;
	int rc;

	rc = bpf_map__update_elem(c->skel->maps.guard_conf, &zero, sizeof(zero), &on, sizeof(on), BPF_ANY);
	if (rc < 0)
		osutil_errf(err, errlen, "cannot configure the first-flight guard: %s", strerror(-rc));
	return rc;
}

static int on_exec(void *ctx, void *data, size_t size)
{
	struct capture *c = ctx;
	struct vigil_exec_event ev;

	if (size < sizeof(ev))
		return 0;
	memcpy(&ev, data, sizeof(ev));
	ev.comm[sizeof(ev.comm) - 1] = 0;
	c->exec_fn(c->exec_arg, &ev);
	return 0;
}

/* The exec tracepoint fires for the whole machine; the program keeps to
 * the cgroup through exec_cgroup[0]. Its ring is added last, once the
 * link exists. */
static int exec_attach(struct capture *c)
{
	uint32_t zero = 0, fd = (uint32_t)c->cgroup_fd;
	int rc = bpf_map__update_elem(c->skel->maps.exec_cgroup, &zero, sizeof(zero), &fd, sizeof(fd), BPF_ANY);

	if (rc < 0)
		return rc;
	if (!(c->exec_link = bpf_program__attach(c->skel->progs.vigil_exec)))
		return -errno;
	return ring_buffer__add(c->rb, bpf_map__fd(c->skel->maps.exec_events), on_exec, c);
}

int capture_exec_set_names(struct capture *c, const char *const *names, size_t n)
{
	struct bpf_map *m;
	struct vigil_exec_name k, next;
	uint8_t one = 1;
	int rc;

	if (!c->exec_fn)
		return -EOPNOTSUPP;
	m = c->skel->maps.exec_names;
	for (size_t i = 0; i < n && i < VIGIL_EXEC_MAX_NAMES; i++) {
		memset(&k, 0, sizeof(k));
		snprintf(k.comm, sizeof(k.comm), "%s", names[i]);
		if ((rc = bpf_map__update_elem(m, &k, sizeof(k), &one, sizeof(one), BPF_ANY)) < 0)
			return rc;
	}
	/* Stale names go after the new ones are in. */
	bool more = bpf_map__get_next_key(m, NULL, &k, sizeof(k)) == 0;
	while (more) {
		bool keep = false;
		more = bpf_map__get_next_key(m, &k, &next, sizeof(next)) == 0;
		for (size_t i = 0; i < n && !keep; i++)
			keep = !strncmp(k.comm, names[i], sizeof(k.comm) - 1);
		if (!keep)
			bpf_map__delete_elem(m, &k, sizeof(k), 0);
		k = next;
	}
	return 0;
}

int capture_open(const struct capture_opts *o, struct capture **out, char *err, size_t errlen)
{
	struct capture *c;
	bool takeover = false;
	int rc;

	if (!o || !out || !o->cgroup_path) {
		osutil_errf(err, errlen, "capture: no cgroup path");
		return -EINVAL;
	}
	if (o->fail_closed && (!o->pin_dir || !o->pin_dir[0])) {
		osutil_errf(err, errlen, "fail-closed mode needs a pin directory on bpffs");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		osutil_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->cgroup_fd = -1;
	c->pin_dirfd = -1;
	libbpf_set_print(libbpf_log);
	if (snprintf(c->cgroup_path, sizeof(c->cgroup_path), "%s", o->cgroup_path) >= (int)sizeof(c->cgroup_path) ||
	    (o->pin_dir && snprintf(c->pin_dir, sizeof(c->pin_dir), "%s", o->pin_dir) >= (int)sizeof(c->pin_dir))) {
		osutil_errf(err, errlen, "path too long");
		rc = -ENAMETOOLONG;
		goto err;
	}
	c->cgroup_fd = open(o->cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->cgroup_fd < 0) {
		rc = -errno;
		osutil_errf(err, errlen, "cannot open cgroup %s: %s", o->cgroup_path, strerror(-rc));
		goto err;
	}
	if (!is_fs(o->cgroup_path, CGROUP2_SUPER_MAGIC)) {
		osutil_errf(err, errlen, "%s is not a cgroup2 directory", o->cgroup_path);
		rc = -ENOTDIR;
		goto err;
	}
	if (c->pin_dir[0]) {
		if (o->fail_closed) {
			rc = prepare_pin_dir(c->pin_dir, err, errlen);
			if (rc < 0)
				goto err;
		}
		takeover = is_fs(c->pin_dir, BPF_FS_MAGIC) && link_pins_exist(c->pin_dir);
	}
	c->pinned = o->fail_closed;
	c->dns_fn = o->dns_fn;
	c->dns_arg = o->dns_arg;
	c->guard_fn = o->guard_fn;
	c->guard_arg = o->guard_arg;
	c->exec_fn = o->exec_fn;
	c->exec_arg = o->exec_arg;
	rc = load_skel(c, c->pinned || takeover, err, errlen);
	if (rc < 0)
		goto err;
	rc = write_config(c, o);
	if (rc < 0) {
		osutil_errf(err, errlen, "cannot write BPF config: %s", strerror(-rc));
		goto err;
	}
	rc = guard_configure(c, err, errlen);
	if (rc < 0)
		goto err;
	rc = attach_all(c, takeover, err, errlen);
	if (rc < 0)
		goto err;
	if (!c->pinned && takeover)
		drop_pins(c);
	if (c->pinned)
		c->pin_dirfd = open(c->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	c->rb = ring_buffer__new(bpf_map__fd(c->skel->maps.kevents), on_kevent, c, NULL);
	if (!c->rb) {
		rc = -errno;
		osutil_errf(err, errlen, "cannot open kernel event ring buffer: %s", strerror(-rc));
		goto err;
	}
	if (c->dns_fn && (rc = ring_buffer__add(c->rb, bpf_map__fd(c->skel->maps.dnsmsgs), on_dns, c)) < 0) {
		osutil_errf(err, errlen, "cannot open the DNS answer ring buffer: %s", strerror(-rc));
		goto err;
	}
	if (c->guard_fn && (rc = ring_buffer__add(c->rb, bpf_map__fd(c->skel->maps.guard_events), on_guard, c)) < 0) {
		osutil_errf(err, errlen, "cannot open the guard event ring buffer: %s", strerror(-rc));
		goto err;
	}
	if (c->exec_fn && (rc = exec_attach(c)) < 0) {
		/* Said loudly, but the capture itself stands. */
		log_err("capture: the exec watch does not attach here (%s): stdio MCP launches are not seen",
			strerror(-rc));
		bpf_link__destroy(c->exec_link);
		c->exec_link = NULL;
		c->exec_fn = NULL;
	}
	rc = sockdiag_new(&c->diag);
	if (rc < 0) {
		log_warn("capture: sock_diag unavailable (%s): lookups rely on the tuple map only", strerror(-rc));
		c->diag = NULL;
	}
	*out = c;
	return 0;
err:
	/* A half-done open leaves nothing attached and no new pins; pins we
	 * only took over stay (the previous agent's protection holds). */
	for (int i = P_COUNT - 1; i >= 0; i--) {
		if (!c->links[i])
			continue;
		if (c->pinned && !takeover)
			bpf_link__unpin(c->links[i]);
		bpf_link__destroy(c->links[i]);
		c->links[i] = NULL;
	}
	if (c->pinned && !takeover && c->skel)
		bpf_object__unpin_maps(c->skel->obj, NULL);
	c->pinned = false;
	capture_release(c);
	return rc;
}

/* Frees everything in user space; links that are still pinned stay. */
static void close_all(struct capture *c)
{
	bpf_link__destroy(c->exec_link);
	for (int i = P_COUNT - 1; i >= 0; i--)
		bpf_link__destroy(c->links[i]);
	ring_buffer__free(c->rb);
	sockdiag_free(c->diag);
	vigil_bpf__destroy(c->skel);
	if (c->cgroup_fd >= 0)
		close(c->cgroup_fd);
	if (c->pin_dirfd >= 0)
		close(c->pin_dirfd);
	free(c);
}

void capture_free(struct capture *c)
{
	if (!c)
		return;
	/* Connect hooks go first so nothing is redirected to a listener
	 * that is about to close while the bookkeeping hooks are gone. */
	for (int i = P_COUNT - 1; i >= 0; i--) {
		if (!c->links[i])
			continue;
		if (bpf_link__pin_path(c->links[i]))
			bpf_link__unpin(c->links[i]);
		bpf_link__detach(c->links[i]);
	}
	if (c->pinned && c->skel) {
		bpf_object__unpin_maps(c->skel->obj, NULL);
		/* Whatever the paths could not reach (no longer root), by fd. */
		int dfd = c->pin_dirfd >= 0 ? dup(c->pin_dirfd) : -1;
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(c->pin_dirfd, e->d_name, 0);
		if (d)
			closedir(d);
		else if (dfd >= 0)
			close(dfd);
		rmdir(c->pin_dir);
	}
	close_all(c);
}

void capture_release(struct capture *c)
{
	if (!c)
		return;
	close_all(c);
}

static int target_key(const struct sockaddr *addr, uint16_t port, struct vigil_target_key *k)
{
	int ok;

	if (!addr)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	addr_to_key(addr, k->addr, &ok);
	if (!ok)
		return -EAFNOSUPPORT;
	k->port = port;
	return 0;
}

int capture_target_add(struct capture *c, const struct sockaddr *addr, uint16_t port)
{
	struct vigil_target_key k;
	uint8_t one = 1;
	int rc = target_key(addr, port, &k);

	if (rc < 0)
		return rc;
	return bpf_map__update_elem(c->skel->maps.targets, &k, sizeof(k), &one, sizeof(one), BPF_ANY);
}

int capture_target_del(struct capture *c, const struct sockaddr *addr, uint16_t port)
{
	struct vigil_target_key k;
	int rc = target_key(addr, port, &k);

	if (rc < 0)
		return rc;
	return bpf_map__delete_elem(c->skel->maps.targets, &k, sizeof(k), 0);
}

int capture_target_list(struct capture *c, struct vigil_target_key *out, size_t max)
{
	struct vigil_target_key k, next;
	const struct vigil_target_key *prev = NULL;
	size_t n = 0;
	int fd;

	if (!c || (max && !out))
		return -EINVAL;
	fd = bpf_map__fd(c->skel->maps.targets);
	/* Bounded: a concurrent delete of prev restarts the walk. */
	while (n <= VIGIL_MAX_TARGETS && bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (n < max)
			out[n] = next;
		n++;
		k = next;
		prev = &k;
	}
	if (n <= VIGIL_MAX_TARGETS && errno != ENOENT)
		return -errno;
	return (int)n;
}

int capture_lookup(struct capture *c, const struct sockaddr *peer, const struct sockaddr *local,
		   struct vigil_origin *out)
{
	return capture_lookup_in(c, c ? c->host_netns_cookie : 0, peer, local, out);
}

int capture_lookup_in(struct capture *c, uint64_t netns_cookie, const struct sockaddr *peer,
		      const struct sockaddr *local, struct vigil_origin *out)
{
	struct vigil_tuple_key k;
	uint64_t cookie;
	int ok, rc;

	if (!c || !peer || !out)
		return -EINVAL;
	memset(&k, 0, sizeof(k));
	addr_to_key(peer, k.addr, &ok);
	if (!ok)
		return -EAFNOSUPPORT;
	k.port = addr_port(peer);
	k.netns_cookie = netns_cookie;
	if (bpf_map__lookup_elem(c->skel->maps.tuples, &k, sizeof(k), out, sizeof(*out), 0) == 0) {
		bpf_map__delete_elem(c->skel->maps.tuples, &k, sizeof(k), 0);
		/* The key holds the netns already; a record that says
		 * otherwise is not this connection's. */
		return out->netns_cookie == netns_cookie ? 0 : -ENOENT;
	}
	/* No tuple entry (sockops missed it, or the LRU evicted it): ask
	 * the kernel which socket is the other end of this connection. Our
	 * netlink socket sees the agent's own netns only: a container's
	 * 127.0.0.1:port there would name some other socket. */
	if (!c->diag || !local || netns_cookie != c->host_netns_cookie)
		return -ENOENT;
	rc = sockdiag_tcp_cookie(c->diag, peer, local, &cookie);
	if (rc < 0)
		return -ENOENT;
	if (bpf_map__lookup_elem(c->skel->maps.origins, &cookie, sizeof(cookie), out, sizeof(*out), 0) < 0)
		return -ENOENT;
	if (!(out->flags & VIGIL_ORIGIN_REDIRECTED))
		return -ENOENT;
	return 0;
}

static int sock_cookie(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) < 0)
		return -errno;
	return 0;
}

int capture_bypass_add(struct capture *c, int fd)
{
	uint64_t cookie;
	uint8_t one = 1;
	uint32_t exempt = VIGIL_GUARD_MARK_EXEMPT;
	int rc = sock_cookie(fd, &cookie);

	if (rc < 0)
		return rc;
	rc = bpf_map__update_elem(c->skel->maps.bypass, &cookie, sizeof(cookie), &one, sizeof(one), BPF_ANY);
	if (rc < 0 || !c->guard_fn)
		return rc;
	/* The first-flight guard must not read the agent's own first flights
	 * (SNI api.openai.com to wherever the provider is): marked in the
	 * socket's own storage, gone with the socket, no per-connection cost
	 * for anyone else. */
	return bpf_map__update_elem(c->skel->maps.guard_marks, &fd, sizeof(fd), &exempt, sizeof(exempt), BPF_ANY);
}

int capture_bypass_del(struct capture *c, int fd)
{
	uint64_t cookie;
	int rc = sock_cookie(fd, &cookie);

	if (rc < 0)
		return rc;
	rc = bpf_map__delete_elem(c->skel->maps.bypass, &cookie, sizeof(cookie), 0);
	return rc == -ENOENT ? 0 : rc;
}

int capture_events_fd(struct capture *c)
{
	return ring_buffer__epoll_fd(c->rb);
}

static int on_kevent(void *ctx, void *data, size_t size)
{
	struct capture *c = ctx;
	struct vigil_kevent ev;

	if (size < sizeof(ev) || !c->ev_fn)
		return 0;
	/* Copy out: the record lives in the shared ring, which the kernel
	 * may reuse once we return. */
	memcpy(&ev, data, sizeof(ev));
	c->ev_fn(c->ev_arg, &ev);
	return 0;
}

static int on_dns(void *ctx, void *data, size_t size)
{
	struct capture *c = ctx;
	const struct vigil_dns_msg *m = data;

	/* The parser reads the ring's record in place: it copies what it
	 * keeps before we return. */
	if (size < sizeof(*m) || m->len > VIGIL_DNS_MAX)
		return 0;
	c->dns_fn(c->dns_arg, m->data, m->len);
	return 0;
}

int capture_events_poll(struct capture *c, capture_event_fn fn, void *arg)
{
	int n;

	if (!c || !c->rb)
		return -EINVAL;
	c->ev_fn = fn;
	c->ev_arg = arg;
	n = ring_buffer__consume(c->rb);
	c->ev_fn = NULL;
	c->ev_arg = NULL;
	return n;
}

uint64_t capture_sock_netns_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0)
		return 0;
	return cookie;
}

uint64_t capture_netns_cookie(void)
{
	uint64_t cookie;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	cookie = capture_sock_netns_cookie(fd);
	close(fd);
	return cookie;
}

int capture_listener_mark(struct capture *c, int lfd)
{
	uint8_t one = 1;

	if (!c || lfd < 0)
		return -EINVAL;
	return bpf_map__update_elem(c->skel->maps.agent_listeners, &lfd, sizeof(lfd), &one, sizeof(one), BPF_ANY);
}

int capture_links_detached(struct capture *c)
{
	int n = 0;
	for (int i = 0; i < P_COUNT; i++) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);
		if (!c->links[i])
			continue;
		memset(&info, 0, sizeof(info));
		/* A detached cgroup link reports no cgroup any more. */
		if (bpf_obj_get_info_by_fd(bpf_link__fd(c->links[i]), &info, &len) ||
		    info.type != BPF_LINK_TYPE_CGROUP || info.cgroup.cgroup_id == 0)
			n++;
	}
	return n;
}

static int on_guard(void *ctx, void *data, size_t size)
{
	struct capture *c = ctx;
	struct vigil_guard_event ev;

	if (size < sizeof(ev) || !c->guard_fn)
		return 0;
	memcpy(&ev, data, sizeof(ev));
	if (ev.name_len > sizeof(ev.name))
		ev.name_len = 0;
	c->guard_fn(c->guard_arg, &ev);
	return 0;
}

int capture_guard_key(const char *pattern, uint64_t *key, uint8_t *flag)
{
	size_t len;

	*flag = VIGIL_GUARD_EXACT;
	if (pattern[0] == '*' && pattern[1] == '.') {
		/* "*.suffix": the BPF walk looks up the hash of what follows
		 * each '.', so the key is the suffix without its dot. */
		pattern += 2;
		*flag = VIGIL_GUARD_SUFFIX;
	}
	len = strlen(pattern);
	if (len && pattern[len - 1] == '.')
		len--;
	if (!len || len >= VIGIL_GUARD_NAME_MAX)
		return -EINVAL;
	*key = vigil_name_hash(pattern, (uint32_t)len);
	return 0;
}

int capture_guard_set_names(struct capture *c, const char *const *names, size_t n)
{
	int fd, rc = 0;
	uint64_t k, next, *keep;
	size_t nkeep = 0;
	const uint64_t *prev = NULL;

	if (!c || !c->guard_fn)
		return -EOPNOTSUPP;
	if (n > VIGIL_GUARD_MAX_NAMES)
		return -E2BIG;
	fd = bpf_map__fd(c->skel->maps.guard_names);
	keep = calloc(n ? n : 1, sizeof(*keep));
	if (!keep)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint8_t flag, old = 0;
		uint64_t key;

		if (capture_guard_key(names[i], &key, &flag) < 0)
			continue;
		/* "a.b" and "*.a.b" share a key: both flags. */
		if (bpf_map_lookup_elem(fd, &key, &old) == 0)
			for (size_t j = 0; j < nkeep; j++)
				if (keep[j] == key)
					flag |= old;
		if ((rc = bpf_map_update_elem(fd, &key, &flag, BPF_ANY)) < 0)
			goto out;
		keep[nkeep++] = key;
	}
	/* Stale keys go; a delete restarts the walk (bounded by the map size). */
	for (int guard = 0; guard <= VIGIL_GUARD_MAX_NAMES && bpf_map_get_next_key(fd, prev, &next) == 0; guard++) {
		bool wanted = false;

		for (size_t j = 0; j < nkeep && !wanted; j++)
			wanted = keep[j] == next;
		if (!wanted) {
			bpf_map_delete_elem(fd, &next);
			prev = NULL;
			continue;
		}
		k = next;
		prev = &k;
	}
out:
	free(keep);
	return rc;
}

void capture_guard_get_stats(struct capture *c, struct capture_guard_stats *st)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals;
	int fd;

	memset(st, 0, sizeof(*st));
	if (!c || !c->guard_fn || ncpu <= 0)
		return;
	st->on = true;
	vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return;
	fd = bpf_map__fd(c->skel->maps.guard_stats);
	for (uint32_t i = 0; i < VIGIL_GUARD_STATS; i++) {
		uint64_t sum = 0;

		if (bpf_map_lookup_elem(fd, &i, vals) < 0)
			continue;
		for (int cpu = 0; cpu < ncpu; cpu++)
			sum += vals[cpu];
		if (i == VIGIL_GUARD_STAT_INSPECTED)
			st->inspected = sum;
		else if (i == VIGIL_GUARD_STAT_HELD)
			st->held = sum;
		else if (i == VIGIL_GUARD_STAT_DROPPED)
			st->dropped = sum;
		else if (i == VIGIL_GUARD_STAT_REFUSED)
			st->refused = sum;
	}
	free(vals);
}
