/* justify: warnings, exemptions and the local socket (see justify.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "agent.h"
#include "audit/audit.h"
#include "policy/justify.h"
#include "log.h"
#include "loop.h"

#define SLOTS 256
#define WARNING_TTL_MS (24u * 3600u * 1000u)   /* how long a warning id may be justified */

struct entry {
	char id[JUSTIFY_ID_LEN];
	int64_t uid;
	char exe[256];
	char rule[64];
	uint64_t warned_ms;         /* 0 = free slot */
	uint64_t exempt_until_ms;   /* 0 = not justified */
};

struct justify {
	struct agent *ag;
	pthread_mutex_t lock;
	struct entry e[SLOTS];
	uint64_t ttl_ms;
	int fd;
	char path[108];
	pthread_t thread;
	bool started;
};

static bool same(const struct entry *e, int64_t uid, const char *exe, const char *rule)
{
	return e->warned_ms && e->uid == uid && !strncmp(e->exe, exe ? exe : "", sizeof(e->exe) - 1) &&
	       !strncmp(e->rule, rule, sizeof(e->rule) - 1);
}

void justify_warn(struct justify *j, int64_t uid, const char *exe, const char *rule, char id[JUSTIFY_ID_LEN])
{
	uint64_t now = loop_now_ms();
	unsigned char r[8];
	struct entry *slot = NULL;

	if (RAND_bytes(r, sizeof(r)) != 1)
		memset(r, 0, sizeof(r));
	for (int i = 0; i < 8; i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);
	pthread_mutex_lock(&j->lock);
	/* a slot free, expired, or else the oldest warning that is not a live exemption */
	for (int i = 0; i < SLOTS && !slot; i++)
		if (!j->e[i].warned_ms ||
		    (now - j->e[i].warned_ms > WARNING_TTL_MS && j->e[i].exempt_until_ms < now))
			slot = &j->e[i];
	for (int i = 0; i < SLOTS && !slot; i++)
		if (j->e[i].exempt_until_ms < now && (!slot || j->e[i].warned_ms < slot->warned_ms))
			slot = &j->e[i];
	if (!slot)
		slot = &j->e[r[0] % SLOTS];
	memset(slot, 0, sizeof(*slot));
	memcpy(slot->id, id, JUSTIFY_ID_LEN);
	slot->uid = uid;
	snprintf(slot->exe, sizeof(slot->exe), "%s", exe ? exe : "");
	snprintf(slot->rule, sizeof(slot->rule), "%s", rule);
	slot->warned_ms = now ? now : 1;
	pthread_mutex_unlock(&j->lock);
}

bool justify_exempt(struct justify *j, int64_t uid, const char *exe, const char *rule, char id[JUSTIFY_ID_LEN])
{
	uint64_t now = loop_now_ms();
	bool ok = false;
	pthread_mutex_lock(&j->lock);
	for (int i = 0; i < SLOTS && !ok; i++)
		if (same(&j->e[i], uid, exe, rule) && j->e[i].exempt_until_ms > now) {
			memcpy(id, j->e[i].id, JUSTIFY_ID_LEN);
			ok = true;
		}
	pthread_mutex_unlock(&j->lock);
	return ok;
}

/* Fills the entry's exe and rule for the audit event. */
static int grant(struct justify *j, const char *id, int64_t uid, uint64_t now, struct entry *out)
{
	int ret = -ENOENT;
	pthread_mutex_lock(&j->lock);
	for (int i = 0; i < SLOTS; i++) {
		struct entry *e = &j->e[i];
		if (!e->warned_ms || strcmp(e->id, id) || now - e->warned_ms > WARNING_TTL_MS)
			continue;
		if (e->uid != uid) {
			ret = -EPERM;
			break;
		}
		e->exempt_until_ms = now + j->ttl_ms;
		if (out)
			*out = *e;
		ret = 0;
		break;
	}
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int justify_grant(struct justify *j, const char *id, int64_t uid, uint64_t now_ms)
{
	return grant(j, id, uid, now_ms, NULL);
}

/* ---- the socket ---- */

static void audit_justification(struct justify *j, const struct ucred *cr, const struct entry *e,
				const char *reason, const char *action, const char *why)
{
	struct audit_event ev;
	char user[64] = "", buf[1024], rbuf[JUSTIFY_REASON_MAX + 64];
	struct passwd pw, *res = NULL;

	audit_event_init(&ev, "justification");
	if (getpwuid_r(cr->uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(user, sizeof(user), "%s", pw.pw_name);
	ev.user = user[0] ? user : NULL;
	ev.uid = cr->uid;
	ev.gid = cr->gid;
	ev.pid = cr->pid;
	ev.exe = e && e->exe[0] ? e->exe : NULL;
	ev.rule = e ? e->rule : NULL;
	ev.action = action;
	snprintf(rbuf, sizeof(rbuf), "%s: %s", why, reason);
	ev.reason = rbuf;
	audit_emit(j->ag->audit, &ev);
}

/* "JUSTIFY <id> <reason>\n": id 16 hex digits, the reason free text
 * (control characters replaced, bounded). */
static void serve_one(struct justify *j, int fd)
{
	char in[JUSTIFY_REASON_MAX + 64], reason[JUSTIFY_REASON_MAX + 1], id[JUSTIFY_ID_LEN], out[256];
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	size_t n = 0;
	struct entry e;
	struct timeval tv = { .tv_sec = 2 };
	int ret;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) || cl != sizeof(cr))
		return;
	while (n < sizeof(in) - 1) {
		ssize_t r = read(fd, in + n, sizeof(in) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(in, '\n', n))
			break;
	}
	in[n] = 0;
	in[strcspn(in, "\n")] = 0;
	if (strncmp(in, "JUSTIFY ", 8) || strspn(in + 8, "0123456789abcdef") != JUSTIFY_ID_LEN - 1 ||
	    in[8 + JUSTIFY_ID_LEN - 1] != ' ') {
		snprintf(out, sizeof(out), "ERR expected: JUSTIFY <id> <reason>\n");
		goto reply;
	}
	memcpy(id, in + 8, JUSTIFY_ID_LEN - 1);
	id[JUSTIFY_ID_LEN - 1] = 0;
	snprintf(reason, sizeof(reason), "%s", in + 8 + JUSTIFY_ID_LEN);
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (!reason[0]) {
		snprintf(out, sizeof(out), "ERR a reason is required\n");
		goto reply;
	}
	ret = grant(j, id, cr.uid, loop_now_ms(), &e);
	if (ret == 0) {
		audit_justification(j, &cr, &e, reason, "allow", "justified");
		snprintf(out, sizeof(out), "OK rule %s exempted for %llu s\n", e.rule,
			 (unsigned long long)(j->ttl_ms / 1000));
	} else {
		audit_justification(j, &cr, NULL, reason, "block",
				    ret == -EPERM ? "refused: warning issued to another user" : "refused: unknown id");
		snprintf(out, sizeof(out), "ERR %s\n", ret == -EPERM ? "this warning was issued to another user" :
						      "unknown or expired warning id");
	}
reply:
	if (write(fd, out, strlen(out)) < 0)
		log_debug("justify: reply not sent");
}

static void *justify_main(void *arg)
{
	struct justify *j = arg;
	for (;;) {
		int c = accept4(j->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;   /* shut down */
		}
		serve_one(j, c);
		close(c);
	}
	return NULL;
}

int justify_start(struct agent *ag, const char *path, uint64_t ttl_ms, struct justify **out, char *err,
		  size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct justify *j;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "justify_socket: path too long");
		return -ENAMETOOLONG;
	}
	if (!(j = calloc(1, sizeof(*j))))
		return -ENOMEM;
	j->ag = ag;
	j->ttl_ms = ttl_ms;
	pthread_mutex_init(&j->lock, NULL);
	snprintf(j->path, sizeof(j->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* the default lives in /run/vigil, which a fresh boot does not have */
	char dir[sizeof(j->path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) && errno != EEXIST)
			log_debug("justify: cannot create %s: %s", dir, strerror(errno));
	}
	/* a socket left by an agent that was killed; never anything else (a
	 * mistyped path must not cost the file it names) */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if ((j->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(j->fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(path, 0666) || listen(j->fd, 16)) {
		snprintf(err, errlen, "justify_socket %s: %s", path, strerror(errno));
		int ret = -errno;
		if (j->fd >= 0)
			close(j->fd);
		pthread_mutex_destroy(&j->lock);
		free(j);
		return ret;
	}
	if (pthread_create(&j->thread, NULL, justify_main, j)) {
		snprintf(err, errlen, "justify: cannot start its thread");
		close(j->fd);
		unlink(path);
		pthread_mutex_destroy(&j->lock);
		free(j);
		return -EAGAIN;
	}
	j->started = true;
	*out = j;
	return 0;
}

void justify_stop(struct justify *j)
{
	if (!j)
		return;
	shutdown(j->fd, SHUT_RDWR);   /* wakes accept() */
	if (j->started)
		pthread_join(j->thread, NULL);
	close(j->fd);
	unlink(j->path);
	pthread_mutex_destroy(&j->lock);
	free(j);
}
