/* alerts: the detectors and their thread (see alerts.h). State lives in one
 * binary tree (tsearch) of records keyed by a typed string: "u\x1fUSER",
 * "x\x1fEXE", "p\x1fUSER\x1fEXE\x1fPROVIDER", "a\x1fAGENT". */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "osutil.h"
#include "alerts.h"
#include "log.h"

#define BURST_MAX 1000

/* One identity's state; which fields matter depends on the key's type. */
struct ident {
	char *key;
	/* volume (users, programs) */
	int64_t bucket;            /* index of the window being summed */
	double cur;                /* tokens in it */
	double mean, var;          /* EWMA of past active windows */
	unsigned windows;          /* past windows seen */
	bool volume_alerted;       /* once per window */
	/* users */
	int64_t first_us;
	int64_t *bad;              /* ring of the last burst_count bad event times */
	unsigned nbad, badpos;
	int64_t burst_alerted_us;
	/* agents */
	int64_t last_us;
	bool silent_alerted;
	char *agent_host;
};

struct alerts {
	const struct colconf_alerts *c;
	void *root;
	size_t n;
};

static int cmp_ident(const void *a, const void *b)
{
	return strcmp(((const struct ident *)a)->key, ((const struct ident *)b)->key);
}

static const char *s_or(const char *s) { return s && *s ? s : "?"; }

/* The record for key, created (zeroed) if new; *fresh tells which. */
static struct ident *ident_get(struct alerts *a, const char *key, bool *fresh)
{
	struct ident probe = { .key = (char *)key };
	struct ident **found = tfind(&probe, &a->root, cmp_ident);
	if (fresh)
		*fresh = !found;
	if (found)
		return *found;
	struct ident *n = calloc(1, sizeof(*n));
	if (!n || !(n->key = strdup(key))) {
		free(n);
		return NULL;
	}
	n->bucket = -1;
	if (!tsearch(n, &a->root, cmp_ident)) {
		free(n->key);
		free(n);
		return NULL;
	}
	a->n++;
	return n;
}

struct alerts *alerts_new(const struct colconf_alerts *c)
{
	struct alerts *a = calloc(1, sizeof(*a));
	if (a)
		a->c = c;
	return a;
}

static void ident_free(void *p)
{
	struct ident *i = p;
	free(i->key);
	free(i->bad);
	free(i->agent_host);
	free(i);
}

void alerts_free(struct alerts *a)
{
	if (!a)
		return;
	tdestroy(a->root, ident_free);
	free(a);
}

/* An alert about the subject of e (user, exe, provider, host copied). */
static void emit(const struct store_event *e, int64_t t, const char *rule, const char *reason, alerts_cb cb, void *ctx)
{
	struct store_event al = {
		.time_us = t, .kind = "alert", .rule = rule, .reason = reason, .action = "alert",
		.user = e ? e->user : NULL, .exe = e ? e->exe : NULL, .provider = e ? e->provider : NULL,
		.host = e ? e->host : NULL, .model = e ? e->model : NULL, .uid = e ? e->uid : -1, .pid = e ? e->pid : -1,
		.injection_score = e ? e->injection_score : -1, .event_id = NULL,
	};
	cb(ctx, &al);
}

static int64_t tokens_of(const struct store_event *e)
{
	return (e->prompt_tokens > 0 ? e->prompt_tokens : 0) + (e->completion_tokens > 0 ? e->completion_tokens : 0);
}

/* Closes the window being summed into the baseline (EWMA, alpha 0.2:
 * about the last ten active windows weigh most). */
static void volume_roll(struct ident *id, int64_t bucket)
{
	if (id->bucket >= 0) {
		const double alpha = 0.2;
		if (!id->windows) {
			id->mean = id->cur;
			id->var = 0;
		} else {
			double d = id->cur - id->mean;
			id->mean += alpha * d;
			id->var = (1 - alpha) * (id->var + alpha * d * d);
		}
		id->windows++;
	}
	id->bucket = bucket;
	id->cur = 0;
	id->volume_alerted = false;
}

static void volume(struct alerts *a, struct ident *id, const char *what, const struct store_event *e, bool on,
		   alerts_cb cb, void *ctx)
{
	const struct colconf_alerts *c = a->c;
	int64_t bucket = e->time_us / ((int64_t)c->volume_window_s * 1000000);
	if (bucket > id->bucket)
		volume_roll(id, bucket);
	else if (bucket < id->bucket)
		return;   /* late event of a closed window: baseline only */
	id->cur += (double)tokens_of(e);
	if (id->volume_alerted || id->windows < c->volume_history)
		return;
	double sd = sqrt(id->var);
	double limit = fmax(fmax((double)c->volume_min_tokens, c->volume_factor * id->mean), id->mean + c->volume_sigma * sd);
	if (id->cur <= limit)
		return;
	id->volume_alerted = true;
	if (!on)
		return;
	char why[512];
	snprintf(why, sizeof(why), "%s %s: %.0f tokens in %us, own baseline %.0f (sd %.0f) over %u windows", what,
		 what[0] == 'u' ? s_or(e->user) : s_or(e->exe), id->cur, c->volume_window_s, id->mean, sd, id->windows);
	emit(e, e->time_us, "volume", why, cb, ctx);
}

static void burst(struct alerts *a, struct ident *u, const struct store_event *e, bool on, alerts_cb cb, void *ctx)
{
	const struct colconf_alerts *c = a->c;
	bool blocked = e->action && !strcmp(e->action, "block");
	if (!blocked && !e->nfindings)
		return;
	if (!u->bad && !(u->bad = calloc(c->burst_count, sizeof(*u->bad))))
		return;
	u->bad[u->badpos] = e->time_us;
	u->badpos = (u->badpos + 1) % c->burst_count;
	if (u->nbad < c->burst_count)
		u->nbad++;
	if (u->nbad < c->burst_count)
		return;
	int64_t oldest = u->bad[u->badpos], win = (int64_t)c->burst_window_s * 1000000;
	if (e->time_us - oldest > win || (u->burst_alerted_us && e->time_us - u->burst_alerted_us <= win))
		return;
	u->burst_alerted_us = e->time_us;
	if (!on)
		return;
	char why[256];
	snprintf(why, sizeof(why), "%u blocked or finding events of %s within %.0fs", c->burst_count, s_or(e->user),
		 (double)(e->time_us - oldest) / 1e6);
	emit(e, e->time_us, "burst", why, cb, ctx);
}

/* Events that are use by someone (not the collector's own records). */
static bool is_use(const struct store_event *e)
{
	return !(e->kind && (!strcmp(e->kind, "alert") || !strcmp(e->kind, "review") ||
			     !strcmp(e->kind, "ingest_rejected")));
}

void alerts_agent_seen(struct alerts *a, const char *agent_id, const char *host, int64_t t_us)
{
	char key[256];
	snprintf(key, sizeof(key), "a\x1f%s", agent_id);
	struct ident *ag = ident_get(a, key, NULL);
	if (!ag || t_us <= ag->last_us)
		return;
	ag->last_us = t_us;
	ag->silent_alerted = false;
	if (host && *host && (!ag->agent_host || strcmp(ag->agent_host, host))) {
		free(ag->agent_host);
		ag->agent_host = strdup(host);
	}
}

void alerts_observe(struct alerts *a, const struct store_event *e, bool on, alerts_cb cb, void *ctx)
{
	const struct colconf_alerts *c = a->c;
	char key[1024];
	bool fresh;
	if (!is_use(e))
		return;
	if (e->agent_id && *e->agent_id)
		alerts_agent_seen(a, e->agent_id, e->host, e->time_us);
	if (e->kind && (!strcmp(e->kind, "tamper") || !strcmp(e->kind, "bypass"))) {
		if (on) {
			char why[512];
			snprintf(why, sizeof(why), "agent %s on %s reported %s: %s", s_or(e->agent_id), s_or(e->host), e->kind,
				 s_or(e->reason));
			emit(e, e->time_us, "tamper", why, cb, ctx);
		}
		return;
	}
	if (e->injection_score >= c->injection_score && on) {
		char why[256];
		snprintf(why, sizeof(why), "injection score %.2f >= %.2f (event %s)", e->injection_score, c->injection_score,
			 s_or(e->event_id));
		emit(e, e->time_us, "injection", why, cb, ctx);
	}
	snprintf(key, sizeof(key), "u\x1f%s", e->user ? e->user : "");
	struct ident *u = ident_get(a, key, &fresh);
	if (!u)
		return;
	if (fresh || e->time_us < u->first_us)
		u->first_us = e->time_us;
	volume(a, u, "user", e, on, cb, ctx);
	burst(a, u, e, on, cb, ctx);
	if (e->exe && *e->exe) {
		snprintf(key, sizeof(key), "x\x1f%s", e->exe);
		struct ident *x = ident_get(a, key, NULL);
		if (x)
			volume(a, x, "exe", e, on, cb, ctx);
	}
	const char *svc = e->provider && *e->provider ? e->provider : e->sni;
	if (svc && *svc) {
		snprintf(key, sizeof(key), "p\x1f%s\x1f%s\x1f%s", e->user ? e->user : "", e->exe ? e->exe : "", svc);
		struct ident *p = ident_get(a, key, &fresh);
		/* New for a user with history: not for someone new altogether. */
		if (p && fresh && on && e->time_us - u->first_us >= (int64_t)c->new_use_after_s * 1000000) {
			char why[1200];
			snprintf(why, sizeof(why), "%s used %s through %s for the first time", s_or(e->user), svc, s_or(e->exe));
			emit(e, e->time_us, "new_use", why, cb, ctx);
		}
	}
}

struct tick_ctx {
	const struct colconf_alerts *c;
	int64_t now;
	bool on;
	alerts_cb cb;
	void *ctx;
};

static void tick_one(const void *node, VISIT v, void *arg)
{
	struct tick_ctx *t = arg;
	struct ident *id = *(struct ident *const *)node;
	if ((v != postorder && v != leaf) || id->key[0] != 'a' || id->silent_alerted)
		return;
	if (t->now - id->last_us <= (int64_t)t->c->silent_after_s * 1000000)
		return;
	id->silent_alerted = true;
	if (!t->on)
		return;
	char why[300];
	struct store_event subject = { .host = id->agent_host, .uid = -1, .pid = -1, .injection_score = -1 };
	snprintf(why, sizeof(why), "agent %s sent nothing for %.0fs (silent_after %us)", id->key + 2,
		 (double)(t->now - id->last_us) / 1e6, t->c->silent_after_s);
	emit(&subject, t->now, "silent", why, t->cb, t->ctx);
}

void alerts_tick(struct alerts *a, int64_t now_us, bool on, alerts_cb cb, void *ctx)
{
	struct tick_ctx t = { a->c, now_us, on, cb, ctx };
	twalk_r(a->root, tick_one, &t);
}

/* ---- the thread ---- */

struct alerts_thread {
	const struct colconf *conf;
	struct alerts *det;
	struct store *store;
	char cursor_path[PATH_MAX];
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	uint64_t stored;
};

static void store_alert(void *ctx, const struct store_event *al)
{
	struct alerts_thread *t = ctx;
	if (store_insert_local(t->store, al))
		log_err("alerts: cannot store an alert: %s", store_errmsg(t->store));
	else
		t->stored++;
	log_warn("alert %s: %s", al->rule, al->reason);
}

static bool nap(struct alerts_thread *t, unsigned ms)
{
	struct timespec ts;
	osutil_deadline_ms(&ts, ms);
	pthread_mutex_lock(&t->mu);
	while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &ts) != ETIMEDOUT)
		;
	bool stop = t->stop;
	pthread_mutex_unlock(&t->mu);
	return stop;
}

/* false when there is no cursor yet (alerts were just enabled). */
static bool cursor_read(const char *path, uint64_t *out)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;
	if (!f)
		return false;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	*out = v;
	return true;
}

static void cursor_write(const char *path, uint64_t v)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%llu\n", (unsigned long long)v);
	fflush(f);
	fsync(fileno(f));
	fclose(f);
	if (rename(tmp, path))
		log_err("alerts: cannot save %s", path);
}

static void *alerts_loop(void *arg)
{
	struct alerts_thread *t = arg;
	uint64_t done = 0, cur = 0;
	/* Without a cursor, the stored history only builds baselines: enabling
	 * alerts on a full store does not raise its whole past at once. */
	bool have = cursor_read(t->cursor_path, &done);
	for (;;) {
		struct store_rows rows;
		uint64_t next;
		if (store_feed(t->store, cur, 2000, &rows, &next)) {
			log_err("alerts: %s", store_errmsg(t->store));
			store_rows_free(&rows);
			if (nap(t, 5000))
				break;
			continue;
		}
		/* Replay (baselines only) up to the saved cursor, then detect; a
		 * batch across the cursor is detected whole (at least once). */
		bool on = have && next > done;
		for (size_t i = 0; i < rows.n; i++)
			alerts_observe(t->det, &rows.ev[i], on, store_alert, t);
		size_t n = rows.n;
		store_rows_free(&rows);
		cur = next;
		if (n)
			continue;
		struct store_agent *ags;
		size_t na;
		if (!store_agent_list(t->store, &ags, &na)) {
			for (size_t i = 0; i < na; i++)
				if (!ags[i].revoked && ags[i].last_seen_us)
					alerts_agent_seen(t->det, ags[i].agent_id, NULL, ags[i].last_seen_us);
			free(ags);
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		alerts_tick(t->det, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, have, store_alert, t);
		if (cur > done || !have) {
			cursor_write(t->cursor_path, cur);
			done = cur;
			have = true;
		}
		if (nap(t, 1000))
			break;
	}
	return NULL;
}

int alerts_start(const struct colconf *conf, struct alerts_thread **out, char *err, size_t errlen)
{
	*out = NULL;
	err[0] = 0;
	if (!conf->alerts.enabled)
		return 0;
	if (strncmp(conf->store, "sqlite:", 7) && !conf->forward_state) {
		snprintf(err, errlen, "alerts: the ClickHouse store needs forward_state (a directory for the cursor)");
		return -EINVAL;
	}
	if (conf->forward_state && mkdir(conf->forward_state, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "forward_state %s: %s", conf->forward_state, strerror(errno));
		return -EINVAL;
	}
	struct alerts_thread *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->conf = conf;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	const char *p = conf->store + 7, *slash = strrchr(p, '/');
	if (conf->forward_state)
		snprintf(t->cursor_path, sizeof(t->cursor_path), "%s/alerts.cursor", conf->forward_state);
	else
		snprintf(t->cursor_path, sizeof(t->cursor_path), "%.*s/alerts.cursor", slash ? (int)(slash - p) : 1,
			 slash ? p : ".");
	if (!(t->det = alerts_new(&conf->alerts)) || store_open(conf->store, &t->store, err, errlen) ||
	    pthread_create(&t->thr, NULL, alerts_loop, t)) {
		if (!err[0])
			snprintf(err, errlen, "alerts: cannot start");
		store_close(t->store);
		alerts_free(t->det);
		free(t);
		return -EINVAL;
	}
	*out = t;
	return 0;
}

void alerts_stop(struct alerts_thread *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thr, NULL);
	store_close(t->store);
	alerts_free(t->det);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	free(t);
}
