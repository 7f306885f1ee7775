/* inflight: fixed slots of in-flight exchange records (see inflight.h).
 *
 * Slot layout: [u32 state][u32 crc32c(len, record)][u64 done seq][u32 len]
 * [12 bytes zero][record]. state: 0 free, 1 open, 2 done. A slot is reused
 * as soon as it is done: the done mark only matters until the complete
 * event is in the spool, and the next start written there is newer. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "audit/inflight.h"
#include "log.h"
#include "audit/spool.h"

#define HDR 32u
#define ST_FREE 0u
#define ST_OPEN 1u
#define ST_DONE 2u
#define MAX_SLOTS (1u << 16)    /* 256 MiB of journal: more exchanges than max_connections allows */

struct found {
	uint8_t *rec;
	size_t len;
	uint32_t state;
	uint64_t seq;
};

struct inflight {
	pthread_mutex_t lock;
	int fd;
	bool sync_each;
	uint32_t *free_slots;        /* stack of free slot numbers */
	size_t n_free, cap_free;
	uint32_t n_slots;            /* slots the file holds */
	uint32_t *crc;               /* each slot's record CRC, for its done mark */
	size_t cap_crc;
	size_t open;
	struct found *found;         /* left by the previous run */
	size_t n_found;
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint32_t rec_crc(uint32_t len, const uint8_t *rec)
{
	uint8_t buf[INFLIGHT_SLOT];
	put32(buf, len);
	memcpy(buf + 4, rec, len);
	return spool_crc32c(buf, 4 + (size_t)len, false);
}

static void load(struct inflight *j)
{
	uint8_t slot[INFLIGHT_SLOT];
	struct stat st;
	if (fstat(j->fd, &st) != 0)
		return;
	/* never hand out a slot that still holds what the last run left */
	j->n_slots = (uint32_t)((st.st_size + INFLIGHT_SLOT - 1) / INFLIGHT_SLOT > MAX_SLOTS ?
				MAX_SLOTS : (st.st_size + INFLIGHT_SLOT - 1) / INFLIGHT_SLOT);
	/* the last slot is as long as its record: the file is not padded */
	for (off_t off = 0; off < st.st_size && off / INFLIGHT_SLOT < MAX_SLOTS; off += INFLIGHT_SLOT) {
		uint32_t state, len;
		struct found *f;
		ssize_t got = pread(j->fd, slot, INFLIGHT_SLOT, off);
		if (got < (ssize_t)HDR)
			break;
		memset(slot + got, 0, INFLIGHT_SLOT - (size_t)got);
		state = get32(slot);
		len = get32(slot + 16);
		if (state != ST_OPEN && state != ST_DONE)
			continue;
		if (len == 0 || len > INFLIGHT_MAX_RECORD || rec_crc(len, slot + HDR) != get32(slot + 4)) {
			/* torn by a power cut mid-write: the start itself is lost */
			log_warn("inflight: slot %lld is damaged; one exchange start cannot be read",
				 (long long)(off / INFLIGHT_SLOT));
			continue;
		}
		f = realloc(j->found, (j->n_found + 1) * sizeof(*f));
		if (!f)
			break;
		j->found = f;
		f = &j->found[j->n_found];
		if (!(f->rec = malloc(len)))
			break;
		memcpy(f->rec, slot + HDR, len);
		f->len = len;
		f->state = state;
		f->seq = get64(slot + 8);
		j->n_found++;
	}
}

int inflight_open(const char *path, bool sync_each, struct inflight **out, char *err, size_t errlen)
{
	struct inflight *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	pthread_mutex_init(&j->lock, NULL);
	j->sync_each = sync_each;
	j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		int ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		inflight_close(j);
		return ret;
	}
	load(j);
	*out = j;
	return 0;
}

size_t inflight_recover(struct inflight *j, uint64_t last_seq,
			void (*fn)(void *arg, const uint8_t *rec, size_t len), void *arg)
{
	size_t n = 0;
	for (size_t i = 0; i < j->n_found; i++) {
		struct found *f = &j->found[i];
		if (f->state == ST_OPEN || f->seq > last_seq) {
			fn(arg, f->rec, f->len);
			n++;
		}
		free(f->rec);
	}
	free(j->found);
	j->found = NULL;
	j->n_found = 0;
	/* Everything owed is now an event of its own: start afresh. */
	pthread_mutex_lock(&j->lock);
	if (ftruncate(j->fd, 0) != 0)
		log_warn("inflight: cannot empty the journal: %s", strerror(errno));
	j->n_slots = 0;
	j->n_free = 0;
	pthread_mutex_unlock(&j->lock);
	return n;
}

size_t inflight_pending(const struct inflight *j, uint64_t last_seq)
{
	size_t n = 0;
	for (size_t i = 0; i < j->n_found; i++)
		n += j->found[i].state == ST_OPEN || j->found[i].seq > last_seq;
	return n;
}

static int take_slot(struct inflight *j, uint32_t *slot)
{
	if (j->n_free) {
		*slot = j->free_slots[--j->n_free];
		return 0;
	}
	if (j->n_slots >= MAX_SLOTS)
		return -ENOSPC;
	if (j->n_slots >= j->cap_crc) {
		size_t nc = j->cap_crc ? j->cap_crc * 2 : 64;
		while (nc <= j->n_slots)   /* after load: slots the last run left are skipped */
			nc *= 2;
		uint32_t *n = realloc(j->crc, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		j->crc = n;
		j->cap_crc = nc;
	}
	*slot = j->n_slots++;
	return 0;
}

static int give_slot(struct inflight *j, uint32_t slot)
{
	if (j->n_free == j->cap_free) {
		size_t nc = j->cap_free ? j->cap_free * 2 : 64;
		uint32_t *n = realloc(j->free_slots, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;   /* the slot is leaked, never reused wrongly */
		j->free_slots = n;
		j->cap_free = nc;
	}
	j->free_slots[j->n_free++] = slot;
	return 0;
}

int inflight_begin(struct inflight *j, const void *rec, size_t len)
{
	uint8_t slot[INFLIGHT_SLOT];
	uint32_t n;
	int ret;
	if (len == 0 || len > INFLIGHT_MAX_RECORD)
		return -EMSGSIZE;
	memset(slot, 0, HDR);
	put32(slot, ST_OPEN);
	uint32_t crc = rec_crc((uint32_t)len, rec);
	put32(slot + 4, crc);
	put32(slot + 16, (uint32_t)len);
	memcpy(slot + HDR, rec, len);
	pthread_mutex_lock(&j->lock);
	if ((ret = take_slot(j, &n)) == 0) {
		j->crc[n] = crc;
		/* one write for the whole slot: a killed process leaves it whole */
		if (pwrite(j->fd, slot, HDR + len, (off_t)n * INFLIGHT_SLOT) != (ssize_t)(HDR + len)) {
			ret = errno ? -errno : -ENOSPC;
			give_slot(j, n);
		} else {
			j->open++;
		}
	}
	pthread_mutex_unlock(&j->lock);
	if (ret)
		return ret;
	if (j->sync_each && fdatasync(j->fd) != 0)
		log_warn("inflight: fdatasync: %s", strerror(errno));
	return (int)n;
}

int inflight_done(struct inflight *j, int slot, uint64_t seq)
{
	uint8_t hdr[16];
	int ret = 0;
	if (slot < 0)
		return -EINVAL;
	put32(hdr, ST_DONE);
	put64(hdr + 8, seq);
	pthread_mutex_lock(&j->lock);
	if ((uint32_t)slot >= j->n_slots) {
		pthread_mutex_unlock(&j->lock);
		return -EINVAL;
	}
	/* state, CRC (unchanged) and seq in one write at the slot's start:
	 * a killed process leaves the slot either open or done with its seq,
	 * never done with a stale seq (a page-cache write is not torn) */
	put32(hdr + 4, j->crc[slot]);
	if (pwrite(j->fd, hdr, 16, (off_t)slot * INFLIGHT_SLOT) != 16)
		ret = -EIO;
	if (j->open)
		j->open--;
	give_slot(j, (uint32_t)slot);
	pthread_mutex_unlock(&j->lock);
	if (j->sync_each && fdatasync(j->fd) != 0)
		log_warn("inflight: fdatasync: %s", strerror(errno));
	return ret;
}

int inflight_fd(const struct inflight *j)
{
	return j ? j->fd : -1;
}

size_t inflight_open_count(struct inflight *j)
{
	pthread_mutex_lock(&j->lock);
	size_t n = j->open;
	pthread_mutex_unlock(&j->lock);
	return n;
}

void inflight_close(struct inflight *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n_found; i++)
		free(j->found[i].rec);
	free(j->found);
	if (j->fd >= 0) {
		/* A clean stop owes nothing; exchanges still open (threads cut
		 * at exit) were counted by the caller. */
		if (!j->open && ftruncate(j->fd, 0) != 0)
			log_warn("inflight: cannot empty the journal: %s", strerror(errno));
		close(j->fd);
	}
	free(j->free_slots);
	free(j->crc);
	pthread_mutex_destroy(&j->lock);
	free(j);
}
