/* spool: durable segment files of audit records (see spool.h for the
 * guarantees). Owns the segment files, the acked watermark and the fsync
 * policy's background flusher thread.
 *
 * Must never: delete a record the collector has not acknowledged except by
 * a drop or a quarantine that it reports; hold the mutex across an fsync
 * or a segment read (audit_emit() on the proxy's threads waits on it);
 * trust a length read back from disk without checking it against the file
 * and SPOOL_MAX_RECORD. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "osutil.h"
#include "log.h"
#include "audit/spool.h"

#define SEG_MAGIC "VIGSPOOL"
#define SEG_VERSION 1
#define SEG_HDR 24
#define REC_HDR 16
#define MAX_SEG_FILE (256u << 20)     /* a segment file larger than this is not ours */
#define MAX_OPEN_LOSSES 16
#define MAX_HELD_RANGES 64
/* Kept free on the spool's filesystem for the gap record that reports a
 * loss: a disk full of someone else's data must not also swallow the
 * record saying what it cost (one gap event is well under 1 KiB). */
#define RESERVE_BYTES (64u << 10)

struct segment {
	uint64_t id;
	uint64_t first_seq, last_seq;  /* 0 = no record */
	uint64_t records;
	uint64_t size;                 /* bytes written (file size) */
};

struct spool {
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* the flusher's */
	pthread_cond_t durable_cond;   /* readers waiting for records (spool_wait) */
	uint64_t wake_gen;             /* spool_wake() calls */
	char *segdir, *qdir, *acked_path, *reserve_path;
	bool have_reserve;             /* reserve_path holds RESERVE_BYTES */
	int companion_fd;              /* synced before the segments (-1 = none) */
	uint32_t reserve_retry;        /* appends until the next try to rebuild it */
	enum spool_fsync fsync;
	uint32_t interval_ms;
	uint64_t max_bytes, segment_bytes;

	struct segment *segs;          /* sorted by id; the last one is active if fd >= 0 */
	size_t nseg, capseg;
	int fd;                        /* active segment, -1 = none (next append creates one) */
	uint64_t next_id;
	uint64_t total_bytes;
	uint64_t last_seq, acked_seq;
	uint64_t durable_size;         /* of the active segment */
	uint64_t durable_seq;
	uint64_t dropped;
	/* The reader's records are in the shipper's memory, resent from there
	 * until acked: a drop does not lose them (read_seq). And a record a
	 * drop reported lost is never handed to the reader (lost_seq), so a
	 * seq is either delivered or inside a gap, never both. */
	uint64_t read_seq, lost_seq;
	/* Records the shipper holds whose segment a drop removed: they exist
	 * only in its memory now. Delivered, they are acked; not delivered by
	 * the stop, they are a loss the caller must report (spool_held_lost). */
	struct spool_loss held[MAX_HELD_RANGES];
	size_t n_held;
	bool dirty;

	struct spool_loss open_losses[MAX_OPEN_LOSSES];
	size_t n_open_losses;

	pthread_t flusher;
	bool flusher_started, stop;
};

/* ------------------------------------------------------------- crc32c */

/* CRC32C (Castagnoli): SSE4.2 instruction when the CPU has it, else
 * slicing-by-8 tables. Every record is checksummed on append and read, so
 * a byte-at-a-time loop showed up at the top of the pipeline's profile. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_update_hw(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
	if (crc_hw)
		return crc_update_hw(crc, p, n);
#endif
	while (n >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
		      crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

uint32_t spool_crc32c(const void *p, size_t n, bool software)
{
	pthread_once(&crc_once, crc_init);
	if (software) {
		bool hw = crc_hw;
		uint32_t c;
		crc_hw = false;   /* tests only: single-threaded */
		c = ~crc_update(0xffffffffu, p, n);
		crc_hw = hw;
		return c;
	}
	return ~crc_update(0xffffffffu, p, n);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* CRC over the length and seq fields too, so a corrupt length or seq is
 * caught like a corrupt payload. */
static uint32_t rec_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
	uint32_t c = 0xffffffffu;
	c = crc_update(c, hdr, 4);
	c = crc_update(c, hdr + 8, 8);
	c = crc_update(c, payload, len);
	return ~c;
}

/* Validates the record at buf[off..end). Returns its total size or 0. */
static size_t rec_check(const uint8_t *buf, size_t off, size_t end, uint64_t *seq)
{
	uint32_t len;
	if (end - off < REC_HDR)
		return 0;
	len = get_le32(buf + off);
	if (len == 0 || len > SPOOL_MAX_RECORD || end - off - REC_HDR < len)
		return 0;
	if (rec_crc(buf + off, buf + off + REC_HDR, len) != get_le32(buf + off + 4))
		return 0;
	*seq = get_le64(buf + off + 8);
	return REC_HDR + len;
}

/* ------------------------------------------------------------ helpers */

static void seg_path(const struct spool *s, uint64_t id, char *out, size_t n)
{
	snprintf(out, n, "%s/%016llx.seg", s->segdir, (unsigned long long)id);
}

static int mkdir_p(const char *d)
{
	if (mkdir(d, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static void fsync_dir(const char *d)
{
	int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int seg_push(struct spool *s, const struct segment *g)
{
	if (s->nseg == s->capseg) {
		size_t nc = s->capseg ? s->capseg * 2 : 16;
		struct segment *n = realloc(s->segs, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->segs = n;
		s->capseg = nc;
	}
	s->segs[s->nseg++] = *g;
	return 0;
}

static void seg_remove(struct spool *s, size_t i)
{
	s->total_bytes -= s->segs[i].size;
	memmove(&s->segs[i], &s->segs[i + 1], (s->nseg - i - 1) * sizeof(*s->segs));
	s->nseg--;
}

static bool is_active(const struct spool *s, size_t i)
{
	return s->fd >= 0 && i + 1 == s->nseg;
}

static void save_acked(struct spool *s)
{
	char tmp[4200], line[32];
	int fd, n;
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->acked_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)s->acked_seq);
	/* No fsync: a lost watermark only means a resend, which the
	 * collector deduplicates. */
	if (write(fd, line, (size_t)n) == n)
		rename(tmp, s->acked_path);
	close(fd);
}

static void add_open_loss(struct spool *s, uint64_t first, uint64_t last, const char *why)
{
	if (s->n_open_losses < MAX_OPEN_LOSSES)
		s->open_losses[s->n_open_losses++] = (struct spool_loss){
			.count = last >= first && last ? last - first + 1 : 0,
			.first_seq = first, .last_seq = last, .why = why };
}

/* Records of a segment with seq > acked (contiguous seqs: one per event). */
static uint64_t unacked_records(const struct segment *g, uint64_t acked, uint64_t *first)
{
	if (!g->records || g->last_seq <= acked)
		return 0;
	if (g->first_seq > acked) {
		*first = g->first_seq;
		return g->records;
	}
	*first = acked + 1;
	return g->last_seq - acked;
}

static void loss_add(struct spool_loss *l, uint64_t count, uint64_t first, uint64_t last)
{
	if (!count)
		return;
	if (!l->count || first < l->first_seq)
		l->first_seq = first;
	if (last > l->last_seq)
		l->last_seq = last;
	l->count += count;
}

/* The reserve: a file of RESERVE_BYTES given back to the filesystem only
 * for an append that reports a loss (spool_append_reserved). Built at open
 * and rebuilt after use once there is room. */
static void reserve_build(struct spool *s)
{
	int fd = open(s->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (posix_fallocate(fd, 0, RESERVE_BYTES) == 0) {
		s->have_reserve = true;
	} else {
		/* no room yet: leave nothing half-built behind */
		unlink(s->reserve_path);
		s->reserve_retry = 64;
	}
	close(fd);
}

static bool reserve_release(struct spool *s)
{
	if (!s->have_reserve)
		return false;
	s->have_reserve = false;
	s->reserve_retry = 64;
	return unlink(s->reserve_path) == 0;
}

/* Segment size for a small filesystem: a full disk drops a slice, not all. */
static uint64_t fs_segment_cap(const char *dir)
{
	struct statvfs v;
	if (statvfs(dir, &v) != 0 || !v.f_blocks)
		return UINT64_MAX;
	return (uint64_t)v.f_blocks * v.f_frsize / 16;
}

/* ------------------------------------------------------------- open */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_size > MAX_SEG_FILE) {
		close(fd);
		return -EFBIG;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = got;
	return 0;
}

/* Scans one segment: validates every record, cuts a bad tail (ftruncate)
 * and fills g. Returns 0, or -EBADMSG if the header is not ours. *cut is
 * set when something was cut; *bad_crc when it was a complete record that
 * failed its CRC rather than a short (torn) one. */
static int scan_segment(struct spool *s, uint64_t id, struct segment *g, bool *cut,
			size_t *cut_bytes)
{
	char path[4200];
	uint8_t *buf = NULL;
	size_t len = 0, off = SEG_HDR;
	int ret;

	seg_path(s, id, path, sizeof(path));
	*cut = false;
	*cut_bytes = 0;
	memset(g, 0, sizeof(*g));
	g->id = id;
	if ((ret = read_file(path, &buf, &len)))
		return ret == -EFBIG ? -EBADMSG : ret;
	if (len < SEG_HDR || memcmp(buf, SEG_MAGIC, 8) != 0 || get_le32(buf + 8) != SEG_VERSION ||
	    get_le64(buf + 16) != id) {
		free(buf);
		return -EBADMSG;
	}
	while (off < len) {
		uint64_t seq;
		size_t n = rec_check(buf, off, len, &seq);
		if (!n || (g->records && seq <= g->last_seq)) {
			*cut = true;
			*cut_bytes = len - off;
			break;
		}
		if (!g->records)
			g->first_seq = seq;
		g->last_seq = seq;
		g->records++;
		off += n;
	}
	g->size = off;
	free(buf);
	if (*cut && truncate(path, (off_t)off) != 0)
		return -errno;
	return 0;
}

static int open_active(struct spool *s)
{
	char path[4200];
	struct segment *g = &s->segs[s->nseg - 1];
	seg_path(s, g->id, path, sizeof(path));
	s->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	s->durable_size = g->size;
	return 0;
}

static void *flusher_main(void *arg);

int spool_open(const struct spool_opts *o, struct spool **out, char *err, size_t errlen)
{
	struct spool *s = calloc(1, sizeof(*s));
	uint64_t *ids = NULL;
	size_t nids = 0, capids = 0;
	DIR *d = NULL;
	struct dirent *de;
	int ret = -ENOMEM;

	pthread_once(&crc_once, crc_init);
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_cond_init(&s->durable_cond, NULL);
	s->fd = -1;
	s->companion_fd = -1;
	s->fsync = o->fsync;
	s->interval_ms = o->fsync_interval_ms ? o->fsync_interval_ms : 100;
	s->max_bytes = o->max_bytes;
	s->segment_bytes = o->segment_bytes;
	if (!s->segment_bytes) {
		s->segment_bytes = o->max_bytes ? o->max_bytes / 16 : 4u << 20;
		/* at least ~16 segments, so a full spool drops a small slice */
		if (s->segment_bytes < (4u << 10))
			s->segment_bytes = 4u << 10;
		if (s->segment_bytes > (4u << 20))
			s->segment_bytes = 4u << 20;
	}
	if (asprintf(&s->segdir, "%s/segments", o->dir) < 0 ||
	    asprintf(&s->qdir, "%s/quarantine", o->dir) < 0 ||
	    asprintf(&s->acked_path, "%s/segments/acked", o->dir) < 0 ||
	    asprintf(&s->reserve_path, "%s/reserve", o->dir) < 0)
		goto err;
	if ((ret = mkdir_p(o->dir)) || (ret = mkdir_p(s->segdir)) || (ret = mkdir_p(s->qdir))) {
		snprintf(err, errlen, "%s: %s", o->dir, strerror(-ret));
		goto err;
	}
	{
		FILE *f = fopen(s->acked_path, "re");
		unsigned long long a;
		if (f) {
			if (fscanf(f, "%llu", &a) == 1)
				s->acked_seq = a;
			fclose(f);
		}
	}
	if (!o->segment_bytes && fs_segment_cap(o->dir) < s->segment_bytes)
		s->segment_bytes = fs_segment_cap(o->dir) < (4u << 10) ? 4u << 10 : fs_segment_cap(o->dir);
	unlink(s->reserve_path);   /* rebuilt whole: a crash may have left it short */
	reserve_build(s);
	if (!(d = opendir(s->segdir))) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", s->segdir, strerror(errno));
		goto err;
	}
	while ((de = readdir(d))) {
		char *end;
		unsigned long long id;
		size_t nl = strlen(de->d_name);
		if (nl != 20 || strcmp(de->d_name + 16, ".seg") != 0)
			continue;
		id = strtoull(de->d_name, &end, 16);
		if (end != de->d_name + 16)
			continue;
		if (nids == capids) {
			size_t nc = capids ? capids * 2 : 64;
			uint64_t *n = realloc(ids, nc * sizeof(*n));
			if (!n) {
				ret = -ENOMEM;
				goto err;
			}
			ids = n;
			capids = nc;
		}
		ids[nids++] = id;
	}
	closedir(d);
	d = NULL;
	if (nids)
		qsort(ids, nids, sizeof(*ids), cmp_u64);

	for (size_t i = 0; i < nids; i++) {
		struct segment g;
		bool cut;
		size_t cut_bytes;
		ret = scan_segment(s, ids[i], &g, &cut, &cut_bytes);
		if (ret == -EBADMSG) {
			/* Not a segment we wrote: keep it for a human, out of the way. */
			char from[4200], to[4200];
			seg_path(s, ids[i], from, sizeof(from));
			snprintf(to, sizeof(to), "%s/%016llx.badheader", s->qdir, (unsigned long long)ids[i]);
			rename(from, to);
			log_err("spool: %s has no valid header; moved to %s", from, to);
			add_open_loss(s, s->last_seq + 1, 0, "spool segment with a corrupt header");
			continue;
		}
		if (ret) {
			snprintf(err, errlen, "spool segment %016llx: %s", (unsigned long long)ids[i],
				 strerror(-ret));
			goto err;
		}
		if (g.records && g.first_seq <= s->last_seq) {
			/* Seqs must grow across segments; a segment that goes back
			 * is corrupt (or copied in by hand): quarantine it. */
			char from[4200], to[4200];
			seg_path(s, ids[i], from, sizeof(from));
			snprintf(to, sizeof(to), "%s/%016llx.seg", s->qdir, (unsigned long long)ids[i]);
			rename(from, to);
			log_err("spool: %s goes back in sequence; moved to quarantine", from);
			continue;
		}
		if (cut) {
			log_warn("spool: segment %016llx: cut %zu bytes of torn or corrupt records",
				 (unsigned long long)ids[i], cut_bytes);
			/* The range is known only when a later segment exists;
			 * fixed up below. */
			add_open_loss(s, (g.records ? g.last_seq : s->last_seq) + 1, 0,
				      "torn or corrupt spool records cut");
		}
		if (g.records)
			s->last_seq = g.last_seq;
		if ((ret = seg_push(s, &g)))
			goto err;
		s->total_bytes += g.size;
		s->next_id = ids[i] + 1;
	}
	/* A cut (or bad segment) followed by later records: the lost range is
	 * exactly up to the next record kept. */
	for (size_t i = 0; i < s->n_open_losses; i++) {
		struct spool_loss *l = &s->open_losses[i];
		for (size_t k = 0; k < s->nseg; k++)
			if (s->segs[k].records && s->segs[k].first_seq > l->first_seq) {
				l->last_seq = s->segs[k].first_seq - 1;
				l->count = l->last_seq >= l->first_seq ? l->last_seq - l->first_seq + 1 : 0;
				break;
			}
	}
	free(ids);
	ids = NULL;
	if (s->nseg && (ret = open_active(s))) {
		snprintf(err, errlen, "spool: cannot reopen the last segment: %s", strerror(-ret));
		goto err;
	}
	s->durable_seq = s->last_seq;
	if (s->fsync == SPOOL_FSYNC_BATCH) {
		if ((ret = -pthread_create(&s->flusher, NULL, flusher_main, s))) {
			snprintf(err, errlen, "spool: cannot start the flusher: %s", strerror(-ret));
			goto err;
		}
		s->flusher_started = true;
	}
	*out = s;
	return 0;
err:
	if (d)
		closedir(d);
	free(ids);
	spool_close(s);
	return ret;
}

size_t spool_open_losses(struct spool *s, struct spool_loss *out, size_t max)
{
	for (size_t i = 0; i < s->n_open_losses && i < max; i++)
		out[i] = s->open_losses[i];
	return s->n_open_losses;
}

int spool_last(struct spool *s, uint64_t *seq, uint8_t **rec, size_t *len)
{
	char path[4200];
	uint8_t *buf = NULL;
	size_t n = 0, off = SEG_HDR, last_off = 0, last_n = 0;
	uint64_t sq = 0, last = 0;
	int ret = -ENOENT;
	uint64_t id = 0;
	bool found = false;

	pthread_mutex_lock(&s->lock);
	for (size_t i = s->nseg; i-- > 0;)
		if (s->segs[i].records) {
			id = s->segs[i].id;
			found = true;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	if (!found)
		return -ENOENT;
	seg_path(s, id, path, sizeof(path));
	if ((ret = read_file(path, &buf, &n)))
		return ret;
	while (off < n) {
		size_t r = rec_check(buf, off, n, &sq);
		if (!r)
			break;
		last = sq;
		last_off = off;
		last_n = r;
		off += r;
	}
	ret = -ENOENT;
	if (last_n) {
		uint8_t *c = malloc(last_n - REC_HDR);
		ret = -ENOMEM;
		if (c) {
			memcpy(c, buf + last_off + REC_HDR, last_n - REC_HDR);
			*rec = c;
			*len = last_n - REC_HDR;
			*seq = last;
			ret = 0;
		}
	}
	free(buf);
	return ret;
}

/* ------------------------------------------------------------ writing */

static int seal_active(struct spool *s)
{
	int ret = 0;
	if (s->fd < 0)
		return 0;
	/* Sealed segments are always durable (outside "never"), so the
	 * reader may read them to their end. */
	if (s->fsync != SPOOL_FSYNC_NEVER && fdatasync(s->fd) != 0)
		ret = -errno;
	close(s->fd);
	s->fd = -1;
	s->durable_size = 0;
	s->durable_seq = s->last_seq;
	return ret;
}

static int new_segment(struct spool *s)
{
	char path[4200];
	uint8_t hdr[SEG_HDR] = { 0 };
	struct segment g = { .id = s->next_id, .size = SEG_HDR };
	int fd, ret;

	seg_path(s, g.id, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	memcpy(hdr, SEG_MAGIC, 8);
	put_le32(hdr + 8, SEG_VERSION);
	put_le32(hdr + 12, SEG_HDR);
	put_le64(hdr + 16, g.id);
	if (pwrite(fd, hdr, SEG_HDR, 0) != SEG_HDR) {
		ret = errno ? -errno : -EIO;
		close(fd);
		unlink(path);
		return ret;
	}
	if ((ret = seg_push(s, &g))) {
		close(fd);
		unlink(path);
		return ret;
	}
	if (s->fsync != SPOOL_FSYNC_NEVER) {
		fdatasync(fd);
		fsync_dir(s->segdir);
	}
	s->fd = fd;
	s->next_id++;
	s->total_bytes += SEG_HDR;
	s->durable_size = SEG_HDR;
	return 0;
}

/* The part of segment g the shipper holds (read, not acked) becomes a held
 * range: lost with the segment unless the shipper delivers it. Ranges it
 * has delivered since are forgotten first. */
static void held_add(struct spool *s, const struct segment *g)
{
	uint64_t lo = g->first_seq > s->acked_seq ? g->first_seq : s->acked_seq + 1;
	uint64_t hi = g->last_seq < s->read_seq ? g->last_seq : s->read_seq;
	size_t k = 0;
	for (size_t i = 0; i < s->n_held; i++)
		if (s->held[i].last_seq > s->acked_seq)
			s->held[k++] = s->held[i];
	s->n_held = k;
	if (!g->records || hi < lo)
		return;
	if (s->n_held && s->held[s->n_held - 1].last_seq + 1 == lo) {
		/* the next segment of the same batch: one range */
		s->held[s->n_held - 1].last_seq = hi;
		s->held[s->n_held - 1].count += hi - lo + 1;
		return;
	}
	if (s->n_held == MAX_HELD_RANGES) {
		/* never reached with one batch in flight; keep the bound */
		s->held[s->n_held - 1].last_seq = hi;
		return;
	}
	s->held[s->n_held++] = (struct spool_loss){ .count = hi - lo + 1, .first_seq = lo, .last_seq = hi,
						    .why = "spool full: records the shipper held were dropped "
							   "from disk and not delivered before the agent stopped" };
}

size_t spool_held_lost(struct spool *s, struct spool_loss *out, size_t max)
{
	size_t n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n_held && n < max; i++) {
		struct spool_loss l = s->held[i];
		if (l.last_seq <= s->acked_seq)
			continue;
		if (l.first_seq <= s->acked_seq)
			l.first_seq = s->acked_seq + 1;
		l.count = l.last_seq - l.first_seq + 1;
		out[n++] = l;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Drops the oldest segment; the active one too when it is the only one
 * left (a disk that fills before max_bytes must still lose its oldest
 * records, not the newest). Returns false if nothing holds a record. */
static bool drop_oldest(struct spool *s, struct spool_loss *loss)
{
	char path[4200];
	uint64_t first = 0, n;
	if (s->nseg == 0 || (is_active(s, 0) && !s->segs[0].records))
		return false;
	if (is_active(s, 0)) {
		close(s->fd);
		s->fd = -1;
		s->durable_size = 0;
		s->durable_seq = s->last_seq;
	}
	held_add(s, &s->segs[0]);
	n = unacked_records(&s->segs[0], s->acked_seq > s->read_seq ? s->acked_seq : s->read_seq,
			    &first);
	loss_add(loss, n, first, s->segs[0].last_seq);
	if (n && s->segs[0].last_seq > s->lost_seq)
		s->lost_seq = s->segs[0].last_seq;
	s->dropped += n;
	seg_path(s, s->segs[0].id, path, sizeof(path));
	unlink(path);
	seg_remove(s, 0);
	return true;
}

static bool no_space(int ret)
{
	return ret == -ENOSPC || ret == -EDQUOT;
}

static int append(struct spool *s, uint64_t seq, const void *rec, size_t len,
		  struct spool_loss *loss, bool reserved)
{
	uint8_t hdr[REC_HDR];
	struct spool_loss l = { .why = "spool full: oldest records dropped" };
	size_t need = REC_HDR + len;
	int ret = 0;

	if (len == 0 || len > SPOOL_MAX_RECORD)
		return -EMSGSIZE;
	put_le32(hdr, (uint32_t)len);
	put_le64(hdr + 8, seq);
	put_le32(hdr + 4, rec_crc(hdr, rec, len));

	pthread_mutex_lock(&s->lock);
	if (seq <= s->last_seq) {
		ret = -EINVAL;
		goto out;
	}
	if (s->fd >= 0 && s->segs[s->nseg - 1].records &&
	    s->segs[s->nseg - 1].size + need > s->segment_bytes) {
		if ((ret = seal_active(s)))
			log_warn("spool: fsync of a full segment failed: %s", strerror(-ret));
		ret = 0;
	}
	/* Make room: drop whole old segments, oldest first. */
	while (s->max_bytes && s->total_bytes + need + (s->fd < 0 ? SEG_HDR : 0) > s->max_bytes &&
	       drop_oldest(s, &l))
		;
	/* A disk that fills before max_bytes: make room the same way, and for
	 * a loss report, with the reserve as a last resort. */
	for (int attempt = 0;; attempt++) {
		if (s->fd < 0)
			ret = new_segment(s);
		if (s->fd >= 0) {
			struct segment *g = &s->segs[s->nseg - 1];
			struct iovec iov[2] = { { hdr, REC_HDR }, { (void *)rec, len } };
			ssize_t w = pwritev(s->fd, iov, 2, (off_t)g->size);
			if (w == (ssize_t)need) {
				ret = 0;
				break;
			}
			ret = w < 0 ? -errno : -ENOSPC;
			/* Never leave half a record behind a good one. */
			if (ftruncate(s->fd, (off_t)g->size) != 0)
				log_err("spool: cannot cut a partial record: %s", strerror(errno));
		}
		if (!no_space(ret) || attempt > 64)
			goto out;
		if (drop_oldest(s, &l))
			continue;
		if (!reserved || !reserve_release(s))
			goto out;
	}
	{
		struct segment *g = &s->segs[s->nseg - 1];
		if (!g->records)
			g->first_seq = seq;
		g->last_seq = seq;
		g->records++;
		g->size += need;
		s->total_bytes += need;
		s->last_seq = seq;
	}
	if (s->fsync == SPOOL_FSYNC_ALWAYS) {
		if (fdatasync(s->fd) != 0)
			log_warn("spool: fdatasync: %s", strerror(errno));
		s->durable_size = s->segs[s->nseg - 1].size;
		s->durable_seq = seq;
		pthread_cond_broadcast(&s->durable_cond);
	} else if (s->fsync == SPOOL_FSYNC_NEVER) {
		s->durable_size = s->segs[s->nseg - 1].size;
		s->durable_seq = seq;
		pthread_cond_broadcast(&s->durable_cond);
	} else {
		if (!s->dirty)
			pthread_cond_signal(&s->cond);   /* the flusher sleeps while clean */
		s->dirty = true;
	}
	/* Rebuild a used reserve now and then, once the disk has room again. */
	if (!s->have_reserve && (!s->reserve_retry || !--s->reserve_retry))
		reserve_build(s);
out:
	pthread_mutex_unlock(&s->lock);
	if (loss)
		*loss = l;
	if (l.count)
		log_warn("spool: full, dropped %llu unshipped records (seq %llu..%llu)",
			 (unsigned long long)l.count, (unsigned long long)l.first_seq,
			 (unsigned long long)l.last_seq);
	return ret;
}

int spool_append(struct spool *s, uint64_t seq, const void *rec, size_t len,
		 struct spool_loss *loss)
{
	return append(s, seq, rec, len, loss, false);
}

int spool_append_reserved(struct spool *s, uint64_t seq, const void *rec, size_t len,
			  struct spool_loss *loss)
{
	return append(s, seq, rec, len, loss, true);
}

/* fsync outside the lock: a dup of the active fd, then publish the size
 * that is now durable if the segment is still the same. */
static int sync_once(struct spool *s)
{
	int fd, ret = 0;
	uint64_t id, size, seq;
	pthread_mutex_lock(&s->lock);
	if (s->fd < 0 || !s->dirty) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	fd = dup(s->fd);
	id = s->segs[s->nseg - 1].id;
	size = s->segs[s->nseg - 1].size;
	seq = s->last_seq;
	s->dirty = false;
	pthread_mutex_unlock(&s->lock);
	if (fd < 0)
		return -errno;
	if (s->companion_fd >= 0 && fdatasync(s->companion_fd) != 0)
		ret = -errno;
	if (fdatasync(fd) != 0)
		ret = -errno;
	close(fd);
	pthread_mutex_lock(&s->lock);
	if (ret) {
		s->dirty = true;
	} else if (s->fd >= 0 && s->segs[s->nseg - 1].id == id && size > s->durable_size) {
		s->durable_size = size;
		if (seq > s->durable_seq)
			s->durable_seq = seq;
		pthread_cond_broadcast(&s->durable_cond);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void spool_set_companion(struct spool *s, int fd)
{
	s->companion_fd = fd;
}

int spool_sync(struct spool *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->fd >= 0)
		s->dirty = true;
	pthread_mutex_unlock(&s->lock);
	return sync_once(s);
}

/* Sleeps while the spool is clean (an idle agent does not wake for it);
 * once a record is written, waits interval_ms so one fdatasync covers the
 * records of that interval. */
static void *flusher_main(void *arg)
{
	struct spool *s = arg;
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		if (!s->dirty) {
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		struct timespec ts;
		osutil_deadline_ms(&ts, s->interval_ms);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		if (s->stop)
			break;
		if (!s->dirty)
			continue;
		pthread_mutex_unlock(&s->lock);
		int ret = sync_once(s);
		if (ret)
			log_warn("spool: fdatasync: %s", strerror(-ret));
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->flusher_started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->flusher, NULL);
	}
	if (s->fd >= 0) {
		if (s->fsync != SPOOL_FSYNC_NEVER)
			fdatasync(s->fd);
		close(s->fd);
	}
	free(s->segs);
	free(s->segdir);
	free(s->qdir);
	free(s->acked_path);
	free(s->reserve_path);
	pthread_cond_destroy(&s->cond);
	pthread_cond_destroy(&s->durable_cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* --------------------------------------------------- ack / quarantine */

int spool_ack(struct spool *s, uint64_t seq)
{
	char path[4200];
	pthread_mutex_lock(&s->lock);
	if (seq > s->last_seq)
		seq = s->last_seq;   /* never ahead of what exists */
	if (seq <= s->acked_seq) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	s->acked_seq = seq;
	/* Whole sealed segments only; the active one stays (it also carries
	 * the chain head across restarts). */
	while (s->nseg && !is_active(s, 0) && s->segs[0].last_seq <= seq) {
		seg_path(s, s->segs[0].id, path, sizeof(path));
		unlink(path);
		seg_remove(s, 0);
	}
	save_acked(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int spool_quarantine(struct spool *s, uint64_t first_seq, uint64_t last_seq,
		     struct spool_loss *loss)
{
	struct spool_loss l = { .why = "batch rejected by the collector: segment quarantined" };
	bool any = false;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nseg;) {
		struct segment *g = &s->segs[i];
		char from[4200], to[4200];
		uint64_t first = 0, n;
		if (!g->records || g->first_seq > last_seq || g->last_seq < first_seq) {
			i++;
			continue;
		}
		if (is_active(s, i))
			seal_active(s);
		n = unacked_records(g, s->acked_seq, &first);
		loss_add(&l, n, first, g->last_seq);
		seg_path(s, g->id, from, sizeof(from));
		snprintf(to, sizeof(to), "%s/%016llx.seg", s->qdir, (unsigned long long)g->id);
		if (rename(from, to) != 0)
			log_err("spool: cannot quarantine %s: %s", from, strerror(errno));
		else
			log_err("spool: segment %s quarantined (%llu records)", to, (unsigned long long)n);
		seg_remove(s, i);
		any = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (loss)
		*loss = l;
	return any ? 0 : -ENOENT;
}

void spool_snapshot(struct spool *s, uint64_t *durable_seq, uint64_t *wake_gen)
{
	pthread_mutex_lock(&s->lock);
	*durable_seq = s->durable_seq;
	*wake_gen = s->wake_gen;
	pthread_mutex_unlock(&s->lock);
}

void spool_wait(struct spool *s, uint64_t durable_seq, uint64_t wake_gen, uint32_t timeout_ms)
{
	struct timespec ts;
	if (timeout_ms) {
		osutil_deadline_ms(&ts, timeout_ms);
	}
	pthread_mutex_lock(&s->lock);
	while (s->durable_seq == durable_seq && s->wake_gen == wake_gen) {
		if (!timeout_ms)
			pthread_cond_wait(&s->durable_cond, &s->lock);
		else if (pthread_cond_timedwait(&s->durable_cond, &s->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&s->lock);
}

void spool_wake(struct spool *s)
{
	pthread_mutex_lock(&s->lock);
	s->wake_gen++;
	pthread_cond_broadcast(&s->durable_cond);
	pthread_mutex_unlock(&s->lock);
}

void spool_get_stats(struct spool *s, struct spool_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	st->bytes = s->total_bytes;
	st->segments = s->nseg;
	for (size_t i = 0; i < s->nseg; i++)
		if (s->segs[i].records) {
			st->first_seq = s->segs[i].first_seq;
			break;
		}
	st->last_seq = s->last_seq;
	st->durable_seq = s->durable_seq;
	st->acked_seq = s->acked_seq;
	st->dropped = s->dropped;
	pthread_mutex_unlock(&s->lock);
}

/* --------------------------------------------------------------- reader */

struct spool_reader {
	struct spool *s;
	uint64_t seg_id;     /* current segment */
	uint64_t off;        /* next record offset in it */
	uint64_t after_seq;  /* skip records at or below (acked at creation) */
	int fd;
	uint64_t fd_id;
	uint8_t *buf;
	size_t cap;
};

int spool_reader_new(struct spool *s, struct spool_reader **out)
{
	struct spool_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	r->fd = -1;
	pthread_mutex_lock(&s->lock);
	r->seg_id = s->nseg ? s->segs[0].id : s->next_id;
	r->after_seq = s->acked_seq;
	s->read_seq = s->acked_seq;
	pthread_mutex_unlock(&s->lock);
	r->off = SEG_HDR;
	*out = r;
	return 0;
}

void spool_reader_free(struct spool_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r);
}

/* Where the reader may read: the segment at or after r->seg_id and the
 * durable end in it. Returns false if there is no such segment. */
static bool reader_locate(struct spool_reader *r, uint64_t *end, bool *sealed, uint64_t *last_seq)
{
	struct spool *s = r->s;
	bool ok = false;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nseg; i++) {
		if (s->segs[i].id < r->seg_id)
			continue;
		if (s->segs[i].id != r->seg_id) {
			r->seg_id = s->segs[i].id;
			r->off = SEG_HDR;
		}
		*sealed = !is_active(s, i);
		*end = *sealed ? s->segs[i].size : s->durable_size;
		*last_seq = s->segs[i].last_seq;
		ok = true;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

bool spool_reader_pending(struct spool_reader *r)
{
	struct spool *s = r->s;
	bool pending = false;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nseg; i++) {
		uint64_t end;
		if (s->segs[i].id < r->seg_id)
			continue;
		end = is_active(s, i) ? s->durable_size : s->segs[i].size;
		if (s->segs[i].id > r->seg_id ? end > SEG_HDR : end > r->off) {
			pending = true;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return pending;
}

static int batch_push(struct spool_batch *b, uint64_t seq, const uint8_t *p, size_t len)
{
	if (b->n == b->cap_n) {
		size_t nc = b->cap_n ? b->cap_n * 2 : 256;
		uint64_t *sq = realloc(b->seq, nc * sizeof(*sq));
		if (!sq)
			return -ENOMEM;
		b->seq = sq;
		size_t *o = realloc(b->off, nc * sizeof(*o));
		if (!o)
			return -ENOMEM;
		b->off = o;
		size_t *l = realloc(b->len, nc * sizeof(*l));
		if (!l)
			return -ENOMEM;
		b->len = l;
		b->cap_n = nc;
	}
	if (b->data_len + len > b->cap_data) {
		size_t nc = b->cap_data ? b->cap_data : 65536;
		while (nc < b->data_len + len)
			nc *= 2;
		uint8_t *d = realloc(b->data, nc);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap_data = nc;
	}
	memcpy(b->data + b->data_len, p, len);
	b->seq[b->n] = seq;
	b->off[b->n] = b->data_len;
	b->len[b->n] = len;
	b->data_len += len;
	b->n++;
	return 0;
}

void spool_batch_reset(struct spool_batch *b)
{
	b->n = 0;
	b->data_len = 0;
}

void spool_batch_free(struct spool_batch *b)
{
	free(b->seq);
	free(b->off);
	free(b->len);
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Publishes what the reader took (b->seq[n0..]) and takes back what a drop
 * reported lost meanwhile (a prefix: drops go oldest first). */
static void reader_settle(struct spool_reader *r, struct spool_batch *b, size_t n0)
{
	struct spool *s = r->s;
	size_t k = n0;
	pthread_mutex_lock(&s->lock);
	while (k < b->n && b->seq[k] <= s->lost_seq)
		k++;
	if (k > n0) {
		size_t keep = b->n - k;
		memmove(b->seq + n0, b->seq + k, keep * sizeof(*b->seq));
		memmove(b->off + n0, b->off + k, keep * sizeof(*b->off));
		memmove(b->len + n0, b->len + k, keep * sizeof(*b->len));
		b->n = n0 + keep;
	}
	if (b->n > n0 && b->seq[b->n - 1] > s->read_seq)
		s->read_seq = b->seq[b->n - 1];
	pthread_mutex_unlock(&s->lock);
}

static int read_records(struct spool_reader *r, size_t max_records, size_t max_bytes,
			struct spool_batch *b, struct spool_loss *loss);

int spool_read(struct spool_reader *r, size_t max_records, size_t max_bytes, struct spool_batch *b,
	       struct spool_loss *loss)
{
	size_t n0 = b->n;
	int ret = read_records(r, max_records, max_bytes, b, loss);
	reader_settle(r, b, n0);
	return ret;
}

static int read_records(struct spool_reader *r, size_t max_records, size_t max_bytes,
			struct spool_batch *b, struct spool_loss *loss)
{
	size_t got = 0, bytes = 0;
	if (loss)
		*loss = (struct spool_loss){ .why = "corrupt spool record skipped" };
	while (got < max_records) {
		uint64_t end, seg_last;
		bool sealed;
		char path[4200];
		size_t want, have, pos;

		if (!reader_locate(r, &end, &sealed, &seg_last))
			break;
		if (r->off >= end) {
			if (!sealed)
				break;
			r->seg_id++;
			r->off = SEG_HDR;
			continue;
		}
		if (r->fd < 0 || r->fd_id != r->seg_id) {
			if (r->fd >= 0)
				close(r->fd);
			seg_path(r->s, r->seg_id, path, sizeof(path));
			r->fd = open(path, O_RDONLY | O_CLOEXEC);
			if (r->fd < 0) {
				/* dropped or quarantined under us: next one */
				r->seg_id++;
				r->off = SEG_HDR;
				continue;
			}
			r->fd_id = r->seg_id;
		}
		want = end - r->off;
		if (want > (1u << 20) + REC_HDR)
			want = (1u << 20) + REC_HDR;
		if (want > r->cap) {
			uint8_t *nb = realloc(r->buf, want);
			if (!nb)
				return -ENOMEM;
			r->buf = nb;
			r->cap = want;
		}
		ssize_t n = pread(r->fd, r->buf, want, (off_t)r->off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		have = (size_t)n;
		pos = 0;
		while (pos < have && got < max_records) {
			uint64_t seq;
			size_t rn = rec_check(r->buf, pos, have, &seq);
			if (!rn) {
				uint32_t len = have - pos >= 4 ? get_le32(r->buf + pos) : 0;
				if (have - pos < REC_HDR || (len <= SPOOL_MAX_RECORD &&
							     have - pos - REC_HDR < len &&
							     r->off + pos + REC_HDR + len <= end))
					break;   /* record continues past this chunk */
				/* Corrupt after open (disk error): the rest of this
				 * segment cannot be framed; skip it and report. */
				log_err("spool: corrupt record in segment %016llx at %llu; skipping the rest",
					(unsigned long long)r->seg_id, (unsigned long long)(r->off + pos));
				if (loss && seg_last > r->after_seq)
					loss_add(loss, seg_last - r->after_seq, r->after_seq + 1, seg_last);
				r->seg_id++;
				r->off = SEG_HDR;
				pos = 0;
				goto next_segment;
			}
			if (got && bytes + rn - REC_HDR > max_bytes)
				goto done_chunk;
			if (seq > r->after_seq) {
				int ret = batch_push(b, seq, r->buf + pos + REC_HDR, rn - REC_HDR);
				if (ret)
					return ret;
				got++;
				bytes += rn - REC_HDR;
				r->after_seq = seq;
			}
			pos += rn;
		}
done_chunk:
		r->off += pos;
		if (pos == 0)
			break;   /* cannot progress: should not happen with durable data */
		if (bytes >= max_bytes)
			break;
		continue;
next_segment:
		continue;
	}
	return 0;
}
