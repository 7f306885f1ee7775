/* audit: serializes events as JSON lines with a per-agent hash chain:
 * hash = SHA-256(prev_hash || the event's JSON without the hash field), so
 * removing or editing a line breaks every later hash. The sequence and the
 * chain head persist in state_dir across restarts. One mutex orders the
 * sequence, the chain and the write; the line is written with one write(2)
 * on an O_APPEND descriptor so concurrent readers never see half a line. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "audit.h"
#include "jsonw.h"
#include "log.h"

struct audit {
	pthread_mutex_t lock;
	char *agent_id;
	char host[256];
	char *log_path;
	char *state_path;
	int fd;
	uint64_t seq;
	char prev_hash[65];
	struct jsonw w;
};

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

static void load_state(struct audit *a)
{
	FILE *f = fopen(a->state_path, "re");
	unsigned long long seq;
	char h[65];
	if (!f)
		return;
	if (fscanf(f, "%llu %64s", &seq, h) == 2 && strlen(h) == 64) {
		a->seq = seq;
		memcpy(a->prev_hash, h, 65);
	}
	fclose(f);
}

static void save_state(struct audit *a)
{
	char tmp[4200], line[128];
	int fd, n;
	if (!a->state_path)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)a->seq, a->prev_hash);
	if (write(fd, line, (size_t)n) == n)
		rename(tmp, a->state_path);
	close(fd);
}

int audit_open(const struct audit_opts *o, struct audit **out, char *err, size_t errlen)
{
	struct audit *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	jsonw_init(&a->w);
	a->fd = -1;
	memset(a->prev_hash, '0', 64);
	a->prev_hash[64] = 0;
	if (gethostname(a->host, sizeof(a->host)) != 0)
		strcpy(a->host, "unknown");
	a->host[sizeof(a->host) - 1] = 0;
	if (!(a->agent_id = strdup(o->agent_id ? o->agent_id : a->host)))
		goto oom;
	if (o->state_dir) {
		if (mkdir(o->state_dir, 0700) && errno != EEXIST) {
			snprintf(err, errlen, "%s: %s", o->state_dir, strerror(errno));
			audit_close(a);
			return -errno;
		}
		if (asprintf(&a->state_path, "%s/audit.state", o->state_dir) < 0) {
			a->state_path = NULL;
			goto oom;
		}
		load_state(a);
	}
	if (o->log_path) {
		if (!(a->log_path = strdup(o->log_path)))
			goto oom;
		int ret = audit_reopen(a);
		if (ret) {
			snprintf(err, errlen, "%s: %s", o->log_path, strerror(-ret));
			audit_close(a);
			return ret;
		}
	}
	*out = a;
	return 0;
oom:
	audit_close(a);
	return -ENOMEM;
}

int audit_reopen(struct audit *a)
{
	int fd;
	if (!a->log_path)
		return 0;
	fd = open(a->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&a->lock);
	if (a->fd >= 0)
		close(a->fd);
	a->fd = fd;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	jsonw_free(&a->w);
	free(a->agent_id);
	free(a->log_path);
	free(a->state_path);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

void audit_event_init(struct audit_event *ev, const char *kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->uid = ev->gid = ev->pid = ev->tid = -1;
	ev->prompt_tokens = ev->completion_tokens = -1;
	ev->injection_score = -1;
}

static void opt_i64(struct jsonw *w, const char *k, int64_t v)
{
	if (v < 0)
		jsonw_null(w, k);
	else
		jsonw_i64(w, k, v);
}

uint64_t audit_emit(struct audit *a, const struct audit_event *ev)
{
	struct timespec ts;
	struct tm tm;
	char when[64], id[37], hash[65];
	unsigned char rnd[16], md[32];
	unsigned int mdlen = 0;
	uint64_t seq;
	struct jsonw *w = &a->w;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return 0;
	rnd[6] = (rnd[6] & 0x0f) | 0x40;   /* UUID v4 */
	rnd[8] = (rnd[8] & 0x3f) | 0x80;
	snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9],
		 rnd[10], rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);

	pthread_mutex_lock(&a->lock);
	seq = ++a->seq;
	jsonw_reset(w);
	jsonw_obj_open(w);
	jsonw_str(w, "time", when);
	jsonw_str(w, "event_id", id);
	jsonw_str(w, "agent_id", a->agent_id);
	jsonw_str(w, "host", a->host);
	jsonw_u64(w, "seq", seq);
	jsonw_str(w, "kind", ev->kind);
	jsonw_str(w, "user", ev->user);
	opt_i64(w, "uid", ev->uid);
	opt_i64(w, "gid", ev->gid);
	opt_i64(w, "pid", ev->pid);
	opt_i64(w, "tid", ev->tid);
	jsonw_str(w, "comm", ev->comm);
	jsonw_str(w, "exe", ev->exe);
	jsonw_str(w, "cgroup", ev->cgroup);
	jsonw_str(w, "dst_ip", ev->dst_ip);
	jsonw_u64(w, "dst_port", ev->dst_port);
	jsonw_str(w, "sni", ev->sni);
	jsonw_str(w, "provider", ev->provider);
	jsonw_str(w, "method", ev->method);
	jsonw_str(w, "path", ev->path);
	jsonw_str(w, "model", ev->model);
	jsonw_bool(w, "stream", ev->stream);
	jsonw_str(w, "action", ev->action);
	jsonw_str(w, "rule", ev->rule);
	jsonw_str(w, "reason", ev->reason);
	jsonw_arr_open(w, "findings");
	for (unsigned i = 0; i < ev->n_findings && i < AUDIT_MAX_FINDING_TYPES; i++) {
		jsonw_obj_open(w);
		jsonw_str(w, "type", ev->findings[i].type);
		jsonw_u64(w, "count", ev->findings[i].count);
		jsonw_obj_close(w);
	}
	jsonw_arr_close(w);
	if (ev->injection_score < 0)
		jsonw_null(w, "injection_score");
	else
		jsonw_double(w, "injection_score", ev->injection_score);
	if (ev->status)
		jsonw_i64(w, "status", ev->status);
	else
		jsonw_null(w, "status");
	jsonw_u64(w, "bytes_up", ev->bytes_up);
	jsonw_u64(w, "bytes_down", ev->bytes_down);
	opt_i64(w, "prompt_tokens", ev->prompt_tokens);
	opt_i64(w, "completion_tokens", ev->completion_tokens);
	jsonw_u64(w, "latency_ms", ev->latency_ms);
	jsonw_str(w, "error", ev->error);
	jsonw_str(w, "policy_hash", ev->policy_hash);
	jsonw_str(w, "prev_hash", a->prev_hash);

	/* The chain covers everything written so far, hash field excluded. */
	{
		EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();
		if (!md_ctx || EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestUpdate(md_ctx, a->prev_hash, 64) != 1 ||
		    EVP_DigestUpdate(md_ctx, w->buf, w->len) != 1 ||
		    EVP_DigestFinal_ex(md_ctx, md, &mdlen) != 1) {
			EVP_MD_CTX_free(md_ctx);
			pthread_mutex_unlock(&a->lock);
			return 0;
		}
		EVP_MD_CTX_free(md_ctx);
	}
	hex(md, 32, hash);
	jsonw_str(w, "hash", hash);
	jsonw_obj_close(w);
	jsonw_raw(w, "\n", 1);
	if (w->oom) {
		pthread_mutex_unlock(&a->lock);
		log_err("audit: out of memory, event %llu lost", (unsigned long long)seq);
		return 0;
	}
	memcpy(a->prev_hash, hash, 65);
	if (a->fd >= 0 && write(a->fd, w->buf, w->len) != (ssize_t)w->len)
		log_err("audit: cannot write %s: %s", a->log_path, strerror(errno));
	save_state(a);
	pthread_mutex_unlock(&a->lock);
	return seq;
}
