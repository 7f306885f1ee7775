/* audit: stamps events (time, event id, boot id, seq) and chains them:
 * hash = SHA-256(prev_hash || E), E = the event's protobuf encoding without
 * its hash field (common/evcodec.h), so removing, reordering or editing an
 * event breaks every later hash. Each event is appended to the durable
 * spool before it counts as recorded, then written as a JSON line to
 * audit_log (the local tap, same fields plus boot_id). The chain head and
 * sequence survive restarts: they are recovered from the spool's last
 * record (or audit.state when the spool is empty). Exchanges going
 * upstream are journaled first (audit_begin, agent/audit/inflight.h) and settled
 * by their complete event; what a crash left open is reported at the next
 * start as incomplete requests (error agent_stopped).
 *
 * Owns: the sequence, the chain head, the JSON log fd, the spool, the
 * in-flight journal, the running marker (spool_dir/running: present while
 * an agent runs, so a start finds out the last stop was unclean), the
 * Ed25519 signing key and the shipper thread. One mutex orders sequence,
 * chain, spool append and log write. Must never: do network I/O or wait
 * for an fsync under that mutex (except spool_fsync: always, by choice),
 * lose an event silently (a failed or dropped append becomes a signed gap
 * event with the exact seq range), or put a raw finding value in an event. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"
#include "content/findings.h"
#include "evcodec.h"
#include "audit/inflight.h"
#include "jsonw.h"
#include "log.h"
#include "pki.h"
#include "audit/ship.h"
#include "audit/spool.h"

#define MAX_PENDING_GAPS 8

struct pending_gap {
	uint64_t count, first, last;
	char why[128];
};

struct audit {
	pthread_mutex_t lock;
	char *agent_id;
	char host[256];
	char boot_id[37];
	char *log_path;
	char *state_path;
	int fd;
	uint64_t seq;
	uint8_t head[EVCODEC_HASH_LEN];
	struct spool *spool;
	struct ship *ship;
	EVP_PKEY *key;
	uint8_t *enc;
	size_t enc_cap;
	struct jsonw w;
	struct pending_gap gaps[MAX_PENDING_GAPS];
	unsigned n_gaps;
	uint64_t gap_events;
	/* The spool refuses appends (disk full of other data): said once when
	 * it starts and once when it ends, with the count, never per event. */
	bool spool_failing;
	uint64_t spool_failed;
	/* exchanges in flight (spool_dir/inflight), and how the last run ended */
	struct inflight *inflight;
	char *running_path;          /* exists while an agent runs on this spool */
	bool prev_unclean;
	size_t prev_open;
	atomic_bool journal_failing;
};

/* ------------------------------------------------------------ state file */

static int unhex(const char *h, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static bool load_state(const char *path, uint64_t *seq, uint8_t head[32])
{
	FILE *f = fopen(path, "re");
	unsigned long long s;
	char h[65];
	bool ok = false;
	if (!f)
		return false;
	if (fscanf(f, "%llu %64s", &s, h) == 2 && strlen(h) == 64 && unhex(h, head, 32) == 0) {
		*seq = s;
		ok = true;
	}
	fclose(f);
	return ok;
}

/* Called with the lock held (or before any thread exists). */
static void save_state(struct audit *a)
{
	char tmp[4200], line[128], hx[65];
	int fd, n;
	if (!a->state_path)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	evcodec_hex(a->head, 32, hx);
	n = snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)a->seq, hx);
	if (write(fd, line, (size_t)n) == n && fsync(fd) == 0)
		rename(tmp, a->state_path);
	close(fd);
}

/* ---------------------------------------------------------------- emit */

/* "a; b" when a contiguous loss had two causes (each named once). */
static void merge_why(struct pending_gap *g, const char *why)
{
	size_t n = strlen(g->why);
	if (strstr(g->why, why) || n + 2 + strlen(why) >= sizeof(g->why))
		return;
	snprintf(g->why + n, sizeof(g->why) - n, "; %s", why);
}

static void queue_gap(struct audit *a, uint64_t count, uint64_t first, uint64_t last,
		      const char *why)
{
	struct pending_gap *g;
	if (!count)
		return;
	if (a->n_gaps) {
		g = &a->gaps[a->n_gaps - 1];
		/* a contiguous range is one loss, one record, whatever the causes */
		if (g->last + 1 == first) {
			g->last = last;
			g->count += count;
			merge_why(g, why);
			return;
		}
	}
	if (a->n_gaps == MAX_PENDING_GAPS) {
		g = &a->gaps[MAX_PENDING_GAPS - 1];
		g->count += count;
		if (first < g->first)
			g->first = first;
		if (last > g->last)
			g->last = last;
		snprintf(g->why, sizeof(g->why), "several losses");
		return;
	}
	g = &a->gaps[a->n_gaps++];
	g->count = count;
	g->first = first;
	g->last = last;
	snprintf(g->why, sizeof(g->why), "%s", why);
}

/* Stamps, chains, spools and logs v (time_us and event_id already set).
 * Returns the seq, or 0 if the event could not even be encoded. With the
 * lock held. */
static uint64_t emit_locked(struct audit *a, struct vigil_event *v, bool reserved, int slot,
			    bool *spool_failed)
{
	size_t n;
	uint64_t seq = a->seq + 1;
	int ret;

	v->agent_id = a->agent_id;
	v->boot_id = a->boot_id;
	v->host = a->host;
	v->seq = seq;
	memcpy(v->prev_hash, a->head, EVCODEC_HASH_LEN);
	memset(v->hash, 0, EVCODEC_HASH_LEN);
	for (;;) {
		n = evcodec_event_encode(v, false, a->enc, a->enc_cap > EVCODEC_HASH_FIELD_LEN ?
							    a->enc_cap - EVCODEC_HASH_FIELD_LEN : 0);
		if (n == 0) {
			log_err("audit: event of kind %s cannot be encoded; dropped",
				v->kind ? v->kind : "?");
			return 0;
		}
		if (n + EVCODEC_HASH_FIELD_LEN <= a->enc_cap)
			break;
		size_t nc = (n + EVCODEC_HASH_FIELD_LEN) * 2;
		uint8_t *nb = realloc(a->enc, nc);
		if (!nb) {
			log_err("audit: out of memory, event of kind %s lost", v->kind ? v->kind : "?");
			return 0;
		}
		a->enc = nb;
		a->enc_cap = nc;
	}
	if (evcodec_hash_encoded(a->head, a->enc, n, v->hash)) {
		log_err("audit: SHA-256 failed, event lost");
		return 0;
	}
	/* The stored record is E with field 42 where an encoder would put it
	 * (before 43, 44): the collector's verifier rebuilds the signed batch
	 * that way from the E it stores. */
	if (!(n = evcodec_insert_hash(a->enc, n, v->hash))) {
		log_err("audit: event of kind %s encoded invalidly; dropped", v->kind ? v->kind : "?");
		return 0;
	}

	/* From here the event exists in the chain; if the spool cannot take
	 * it, it is a recorded loss (gap event), not a hole. */
	a->seq = seq;
	memcpy(a->head, v->hash, EVCODEC_HASH_LEN);
	/* Done before the append: after a crash, "done at seq" with seq not in
	 * the spool still reports the exchange (see inflight.h). */
	if (slot >= 0 && a->inflight)
		inflight_done(a->inflight, slot, seq);
	if (a->spool) {
		struct spool_loss loss = { 0 };
		ret = reserved ? spool_append_reserved(a->spool, seq, a->enc, n, &loss) :
				 spool_append(a->spool, seq, a->enc, n, &loss);
		if (loss.count)
			queue_gap(a, loss.count, loss.first_seq, loss.last_seq, loss.why);
		if (ret) {
			char why[128];
			snprintf(why, sizeof(why), "spool write failed: %s", strerror(-ret));
			if (!a->spool_failing)
				log_err("audit: the spool refuses events from seq %llu on (%s); counting them "
					"for one gap record once it takes events again",
					(unsigned long long)seq, strerror(-ret));
			a->spool_failing = true;
			a->spool_failed++;
			queue_gap(a, 1, seq, seq, why);
			if (spool_failed)
				*spool_failed = true;
		} else if (a->spool_failing) {
			log_warn("audit: the spool takes events again after %llu were refused",
				 (unsigned long long)a->spool_failed);
			a->spool_failing = false;
			a->spool_failed = 0;
		}
	}
	if (a->fd >= 0) {
		jsonw_reset(&a->w);
		evcodec_event_json(v, &a->w);
		jsonw_raw(&a->w, "\n", 1);
		if (a->w.oom)
			log_err("audit: out of memory writing the JSON line of event %llu",
				(unsigned long long)seq);
		else if (write(a->fd, a->w.out.data, a->w.out.len) != (ssize_t)a->w.out.len)
			log_err("audit: cannot write %s: %s", a->log_path, strerror(errno));
	}
	return seq;
}

static void stamp(struct vigil_event *v)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	v->time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Puts g back at the head of the queue, merged with the entries that
 * continue it (contiguous seqs): one contiguous loss stays one gap record,
 * never two records or overlapping ones. */
static void requeue_gap_front(struct audit *a, const struct pending_gap *g)
{
	struct pending_gap m = *g;
	for (unsigned i = 0; i < a->n_gaps;) {
		struct pending_gap *o = &a->gaps[i];
		if (o->first == m.last + 1 || o->last + 1 == m.first) {
			m.first = o->first < m.first ? o->first : m.first;
			m.last = o->last > m.last ? o->last : m.last;
			m.count += o->count;
			merge_why(&m, o->why);
			memmove(o, o + 1, (a->n_gaps - i - 1) * sizeof(*o));
			a->n_gaps--;
			i = 0;
			continue;
		}
		i++;
	}
	if (a->n_gaps == MAX_PENDING_GAPS) {   /* full: merge into the head */
		queue_gap(a, m.count, m.first, m.last, m.why);
		return;
	}
	memmove(&a->gaps[1], &a->gaps[0], a->n_gaps * sizeof(a->gaps[0]));
	a->gaps[0] = m;
	a->n_gaps++;
}

/* Emits the queued gap events. With the lock held. */
static void flush_gaps_locked(struct audit *a)
{
	for (unsigned round = 0; a->n_gaps && round < MAX_PENDING_GAPS * 2; round++) {
		struct pending_gap g = a->gaps[0];
		struct vigil_event v;
		char id[37];
		bool failed = false;
		memmove(&a->gaps[0], &a->gaps[1], (a->n_gaps - 1) * sizeof(a->gaps[0]));
		a->n_gaps--;
		vigil_event_init(&v, "gap");
		stamp(&v);
		if (evcodec_uuid(id) == 0)
			v.event_id = id;
		v.gap_count = g.count;
		v.gap_first_seq = g.first;
		v.gap_last_seq = g.last;
		v.reason = g.why;
		log_warn("audit: recording a gap of %llu events (seq %llu..%llu): %s",
			 (unsigned long long)g.count, (unsigned long long)g.first,
			 (unsigned long long)g.last, g.why);
		if (emit_locked(a, &v, true, -1, &failed))
			a->gap_events++;
		if (failed) {
			/* The gap event did not reach the spool even with the
			 * reserve: its own seq was queued as lost (at the end).
			 * Put the range back first and retry on a later emit that
			 * succeeds, instead of spinning now. */
			requeue_gap_front(a, &g);
			break;
		}
	}
}

/* Room for an event's finding lists in the codec's form (borrowed by the
 * vigil_event built from it): one array per FINDINGS field of the list. */
#define WIRE_FINDINGS_FINDINGS(f) struct vigil_finding f[AUDIT_MAX_FINDING_TYPES];
#define WIRE_FINDINGS_STR(f)
#define WIRE_FINDINGS_U32(f)
#define WIRE_FINDINGS_U64(f)
#define WIRE_FINDINGS_I32(f)
#define WIRE_FINDINGS_I64(f)
#define WIRE_FINDINGS_S64(f)
#define WIRE_FINDINGS_BOOL(f)
#define WIRE_FINDINGS_DOUBLE(f)
#define WIRE_FINDINGS_HASH(f)
#define WIRE_FINDINGS(f, num, kind, json, store, origin) WIRE_FINDINGS_##kind(f)
struct wire_findings {
	EVFIELDS(WIRE_FINDINGS)
};

/* One of the event's finding lists in the codec's form; returns its length. */
static size_t copy_findings(const struct audit_finding *in, unsigned n, struct vigil_finding *out)
{
	size_t k = n < AUDIT_MAX_FINDING_TYPES ? n : AUDIT_MAX_FINDING_TYPES;
	for (size_t i = 0; i < k; i++) {
		out[i].type = in[i].type;
		out[i].count = in[i].count;
	}
	return k;
}

/* The wire form of ev (every EV field of common/evfields.h); its finding
 * lists go in wf (borrowed by v). */
#define TO_VIGIL_FINDINGS(f)  \
	v->f = wf->f;         \
	v->n_##f = copy_findings(ev->f, ev->n_##f, wf->f);
#define TO_VIGIL_STR(f) v->f = ev->f;
#define TO_VIGIL_U32 TO_VIGIL_STR
#define TO_VIGIL_U64 TO_VIGIL_STR
#define TO_VIGIL_I32 TO_VIGIL_STR
#define TO_VIGIL_I64 TO_VIGIL_STR
#define TO_VIGIL_S64 TO_VIGIL_STR
#define TO_VIGIL_BOOL TO_VIGIL_STR
#define TO_VIGIL_DOUBLE TO_VIGIL_STR
#define TO_VIGIL_EV(kind, f) TO_VIGIL_##kind(f)
#define TO_VIGIL_STAMP(kind, f)
#define TO_VIGIL(f, num, kind, json, store, origin) TO_VIGIL_##origin(kind, f)
static void to_vigil(const struct audit_event *ev, struct vigil_event *v, struct wire_findings *wf)
{
	vigil_event_init(v, ev->kind);
	EVFIELDS(TO_VIGIL)
}

/* Emits v (stamped here) and closes slot (-1 = none). */
static uint64_t emit_one(struct audit *a, struct vigil_event *v, int slot)
{
	char id[37];
	uint64_t seq;
	stamp(v);
	if (evcodec_uuid(id))
		return 0;
	v->event_id = id;
	pthread_mutex_lock(&a->lock);
	seq = emit_locked(a, v, false, slot, NULL);
	/* Gaps only once the spool takes events again: while it refuses them,
	 * trying would add a gap line per event and split one loss in many. */
	if (a->n_gaps && !a->spool_failing)
		flush_gaps_locked(a);
	pthread_mutex_unlock(&a->lock);
	return seq;
}

uint64_t audit_emit(struct audit *a, const struct audit_event *ev)
{
	struct vigil_event v;
	struct wire_findings wf;
	to_vigil(ev, &v, &wf);
	return emit_one(a, &v, -1);
}

uint64_t audit_begin(struct audit *a, const struct audit_event *ev)
{
	struct vigil_event v;
	struct wire_findings wf;
	uint8_t buf[INFLIGHT_MAX_RECORD];
	size_t n;
	int slot = -EMSGSIZE;
	if (!a->inflight)
		return 0;
	to_vigil(ev, &v, &wf);
	v.agent_id = a->agent_id;
	v.boot_id = a->boot_id;
	v.host = a->host;
	stamp(&v);
	n = evcodec_event_encode(&v, false, buf, sizeof(buf));
	if (n > sizeof(buf)) {
		/* long paths: the exchange matters more than where the binary lives */
		v.exe = v.cgroup = NULL;
		n = evcodec_event_encode(&v, false, buf, sizeof(buf));
	}
	if (n == 0 || n > sizeof(buf) || (slot = inflight_begin(a->inflight, buf, n)) < 0) {
		/* once per stretch of failures (a full disk), not per request */
		if (!atomic_exchange(&a->journal_failing, true))
			log_warn("audit: exchange starts cannot be journaled (%s); they go on, and "
				 "their events are written when they end", n > sizeof(buf) ? "too large" :
				 strerror(-slot));
		return 0;
	}
	if (atomic_exchange(&a->journal_failing, false))
		log_info("audit: exchange starts are journaled again");
	return (uint64_t)slot + 1;
}

uint64_t audit_end(struct audit *a, uint64_t ticket, const struct audit_event *ev)
{
	struct vigil_event v;
	struct wire_findings wf;
	to_vigil(ev, &v, &wf);
	return emit_one(a, &v, ticket ? (int)(ticket - 1) : -1);
}

/* One exchange the previous run left open: its start, now an incomplete
 * request (CONTRACT: error agent_stopped). */
static void emit_orphan(void *arg, const uint8_t *rec, size_t len)
{
	struct audit *a = arg;
	struct evcodec_decoded *d = NULL;
	if (evcodec_event_decode(rec, len, &d) != 0) {
		log_err("audit: an in-flight record cannot be decoded; one exchange cannot be reported");
		return;
	}
	struct vigil_event v = d->ev;
	char started[64];
	time_t t = (time_t)(v.time_us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(started, sizeof(started), "exchange started %Y-%m-%dT%H:%M:%SZ; the agent stopped before it ended", &tm);
	v.kind = "request";
	v.error = "agent_stopped";
	v.reason = started;
	v.status = 0;
	emit_one(a, &v, -1);
	evcodec_decoded_free(d);
}

size_t audit_report_interrupted(struct audit *a)
{
	size_t n;
	if (!a->inflight)
		return 0;
	n = inflight_recover(a->inflight, a->seq, emit_orphan, a);
	if (n) {
		log_warn("audit: %zu exchanges were in flight when the previous run stopped; "
			 "reported as incomplete requests (error agent_stopped)", n);
		if (a->spool)
			spool_sync(a->spool);
	}
	return n;
}

bool audit_previous_stop(const struct audit *a, size_t *open_exchanges)
{
	*open_exchanges = a->prev_open;
	return a->prev_unclean;
}

/* Shipper thread: records left the spool unacknowledged (quarantine). */
static void on_ship_loss(void *arg, const struct spool_loss *loss, const char *reason)
{
	struct audit *a = arg;
	pthread_mutex_lock(&a->lock);
	save_state(a);   /* the chain head may have left with the segment */
	queue_gap(a, loss->count, loss->first_seq, loss->last_seq, reason);
	flush_gaps_locked(a);
	pthread_mutex_unlock(&a->lock);
}

/* ---------------------------------------------------------- open/close */

static int load_or_create_key(const char *dir, EVP_PKEY **out, char *err, size_t errlen)
{
	char path[4200];
	EVP_PKEY *k = NULL;
	int ret;
	snprintf(path, sizeof(path), "%s/agent.ed25519.key", dir);
	ret = pki_key_load(path, &k, err, errlen);
	if (ret == -ENOENT) {
		if ((ret = pki_key_generate(PKI_KEY_ED25519, &k, err, errlen)))
			return ret;
		ret = pki_key_save(path, k, false, err, errlen);
		if (ret == -EEXIST) {   /* another instance won the race */
			EVP_PKEY_free(k);
			k = NULL;
			ret = pki_key_load(path, &k, err, errlen);
		}
		if (!ret)
			log_info("audit: created the agent's signing key %s", path);
	}
	if (ret) {
		EVP_PKEY_free(k);
		return ret;
	}
	if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
		snprintf(err, errlen, "%s: not an Ed25519 key", path);
		EVP_PKEY_free(k);
		return -EINVAL;
	}
	*out = k;
	return 0;
}

/* Chain head and losses found in the spool at start. */
static int recover(struct audit *a, char *err, size_t errlen)
{
	uint64_t st_seq = 0, sp_seq = 0;
	uint8_t st_head[32] = { 0 };
	uint8_t *rec = NULL;
	size_t len = 0;
	bool have_state = load_state(a->state_path, &st_seq, st_head);
	struct spool_loss losses[16];
	size_t nl;

	if (spool_last(a->spool, &sp_seq, &rec, &len) == 0) {
		struct evcodec_decoded *d = NULL;
		if (evcodec_event_decode(rec, len, &d) == 0 && d->has_hash && d->ev.seq == sp_seq) {
			a->seq = sp_seq;
			memcpy(a->head, d->ev.hash, 32);
		} else {
			/* CRC-valid but not our encoding: refuse to guess a chain. */
			snprintf(err, errlen, "spool: the last record (seq %llu) is not a valid event",
				 (unsigned long long)sp_seq);
			evcodec_decoded_free(d);
			free(rec);
			return -EBADMSG;
		}
		evcodec_decoded_free(d);
		free(rec);
	}
	if (have_state && st_seq > a->seq) {
		a->seq = st_seq;
		memcpy(a->head, st_head, 32);
	}
	nl = spool_open_losses(a->spool, losses, 16);
	for (size_t i = 0; i < nl && i < 16; i++) {
		struct spool_loss *l = &losses[i];
		if (l->last_seq == 0) {
			/* A cut tail: lost only if the chain had gone further
			 * (state written after those records were durable). */
			if (st_seq >= l->first_seq)
				queue_gap(a, st_seq - l->first_seq + 1, l->first_seq, st_seq, l->why);
		} else {
			queue_gap(a, l->count, l->first_seq, l->last_seq, l->why);
		}
	}
	return 0;
}

/* How the previous run ended (its running marker still there = it never
 * reached audit_close), the exchanges it left open, and this run's marker
 * and journal. The journal is synced by the spool's flusher, before it. */
static int open_run_state(struct audit *a, const char *dir, bool sync_each, char *err, size_t errlen)
{
	char path[4200];
	int fd, ret;
	if (asprintf(&a->running_path, "%s/running", dir) < 0) {
		a->running_path = NULL;
		return -ENOMEM;
	}
	a->prev_unclean = access(a->running_path, F_OK) == 0;
	fd = open(a->running_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", a->running_path, strerror(errno));
		return ret;
	}
	close(fd);
	snprintf(path, sizeof(path), "%s/inflight", dir);
	if ((ret = inflight_open(path, sync_each, &a->inflight, err, errlen)))
		return ret;
	a->prev_open = inflight_pending(a->inflight, a->seq);
	spool_set_companion(a->spool, inflight_fd(a->inflight));
	return 0;
}

int audit_open(const struct audit_opts *o, struct audit **out, char *err, size_t errlen)
{
	struct audit *a = calloc(1, sizeof(*a));
	int ret = -ENOMEM;
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	jsonw_init(&a->w);
	a->fd = -1;
	if (gethostname(a->host, sizeof(a->host)) != 0)
		strcpy(a->host, "unknown");
	a->host[sizeof(a->host) - 1] = 0;
	if (evcodec_uuid(a->boot_id)) {
		snprintf(err, errlen, "no randomness for the boot id");
		ret = -EIO;
		goto err;
	}
	if (!(a->agent_id = strdup(o->agent_id ? o->agent_id : a->host)))
		goto oom;
	if (o->log_path) {
		if (!(a->log_path = strdup(o->log_path)))
			goto oom;
		if ((ret = audit_reopen(a))) {
			snprintf(err, errlen, "%s: %s", o->log_path, strerror(-ret));
			goto err;
		}
	}
	if (o->state_dir) {
		struct spool_opts so = {
			.dir = o->state_dir,
			.max_bytes = o->spool_max_bytes ? o->spool_max_bytes : 1ULL << 30,
			.fsync = (enum spool_fsync)o->spool_fsync,
		};
		if (mkdir(o->state_dir, 0700) && errno != EEXIST) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", o->state_dir, strerror(errno));
			goto err;
		}
		if (asprintf(&a->state_path, "%s/audit.state", o->state_dir) < 0) {
			a->state_path = NULL;
			goto oom;
		}
		if ((ret = spool_open(&so, &a->spool, err, errlen)))
			goto err;
		if ((ret = recover(a, err, errlen)))
			goto err;
		if ((ret = load_or_create_key(o->state_dir, &a->key, err, errlen)))
			goto err;
		if ((ret = open_run_state(a, o->state_dir, o->spool_fsync == SPOOL_FSYNC_ALWAYS, err,
					  errlen)))
			goto err;
		if (o->collector_address) {
			struct ship_opts sho = {
				.address = o->collector_address, .ca = o->collector_ca,
				.cert = o->collector_cert, .key = o->collector_key,
				.agent_id = a->agent_id, .boot_id = a->boot_id, .sign_key = a->key,
				.spool = a->spool, .batch_events = o->ship_batch_events,
				.interval_ms = o->ship_interval_ms,
				.backoff_max_ms = o->ship_backoff_max_ms,
				.on_loss = on_ship_loss, .arg = a,
			};
			if ((ret = ship_start(&sho, &a->ship, err, errlen)))
				goto err;
		}
		pthread_mutex_lock(&a->lock);
		flush_gaps_locked(a);
		pthread_mutex_unlock(&a->lock);
	} else if (o->collector_address) {
		snprintf(err, errlen, "a collector needs spool_dir");
		ret = -EINVAL;
		goto err;
	}
	*out = a;
	return 0;
oom:
	ret = -ENOMEM;
	snprintf(err, errlen, "out of memory");
err:
	audit_close(a);
	return ret;
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
	if (a->spool)
		spool_sync(a->spool);   /* agent_stop and friends become shippable */
	/* Give the collector a moment to take what is left; the spool keeps
	 * the rest for the next start. Records a full disk dropped while the
	 * shipper held them exist only in its memory: give those longer. */
	struct spool_loss held[8];
	ship_stop(a->ship, a->spool && spool_held_lost(a->spool, held, 8) ? 12000 : 2000);
	a->ship = NULL;
	/* What the shipper still held is lost now: said, never silent. */
	if (a->spool) {
		size_t n = spool_held_lost(a->spool, held, 8);
		if (n) {
			pthread_mutex_lock(&a->lock);
			for (size_t i = 0; i < n; i++)
				queue_gap(a, held[i].count, held[i].first_seq, held[i].last_seq, held[i].why);
			flush_gaps_locked(a);
			pthread_mutex_unlock(&a->lock);
			spool_sync(a->spool);
		}
	}
	if (a->spool && a->seq)
		save_state(a);
	spool_close(a->spool);
	inflight_close(a->inflight);
	/* Reached only by a clean stop (or a start-up error): say so. */
	if (a->running_path)
		unlink(a->running_path);
	free(a->running_path);
	EVP_PKEY_free(a->key);
	if (a->fd >= 0)
		close(a->fd);
	jsonw_free(&a->w);
	free(a->enc);
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
	ev->prompt_tokens = ev->completion_tokens = ev->cached_tokens = -1;
	ev->injection_score = -1;
}

unsigned audit_findings_from_counts(const uint32_t *counts, struct audit_finding out[AUDIT_MAX_FINDING_TYPES])
{
	unsigned n = 0;
	for (int t = 0; t < FINDING__COUNT && n < AUDIT_MAX_FINDING_TYPES; t++) {
		if (!counts[t])
			continue;
		out[n].type = finding_name((enum finding_type)t);
		out[n].count = counts[t];
		n++;
	}
	return n;
}

const char *audit_boot_id(const struct audit *a)
{
	return a->boot_id;
}

void audit_get_stats(struct audit *a, struct audit_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&a->lock);
	st->seq = a->seq;
	st->gap_events = a->gap_events;
	pthread_mutex_unlock(&a->lock);
	if (a->spool) {
		struct spool_stats ss;
		spool_get_stats(a->spool, &ss);
		st->spool_bytes = ss.bytes;
		st->spool_acked_seq = ss.acked_seq;
		st->spool_durable_seq = ss.durable_seq;
		st->spool_dropped = ss.dropped;
	}
	if (a->ship) {
		struct ship_stats sh;
		ship_get_stats(a->ship, &sh);
		st->shipped_events = sh.events_acked;
		st->shipped_batches = sh.batches_acked;
		st->rejected_batches = sh.batches_rejected;
		st->wire_bytes = sh.bytes_sent;
		st->raw_bytes = sh.raw_bytes;
		st->collector_connected = sh.connected;
		st->shipping_halted = sh.halted;
	}
}
