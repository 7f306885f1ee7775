/* Unit tests for agent/audit/spool.c: append/replay, torn-tail recovery at every
 * byte of the last record, CRC corruption, full spool drops with an exact
 * loss report, ack, quarantine, and "the reader sees only durable data". */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "audit/spool.h"

static char g_dir[256];

static void rm_rf(const char *d)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "rm -rf %s failed\n", d);
}

static const char *fresh_dir(const char *name)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/vigil-test-spool-%d-%s", (int)getpid(), name);
	rm_rf(g_dir);
	return g_dir;
}

/* Record content for seq: deterministic, variable length. */
static size_t rec_for(uint64_t seq, uint8_t *buf)
{
	size_t n = 20 + (seq * 37) % 200;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(seq * 131 + i);
	return n;
}

static int open_sp(const char *dir, uint64_t max, uint64_t seg, enum spool_fsync fs, struct spool **s)
{
	char err[256];
	struct spool_opts o = { .dir = dir, .max_bytes = max, .segment_bytes = seg, .fsync = fs,
				.fsync_interval_ms = 3600 * 1000 };
	return spool_open(&o, s, err, sizeof(err));
}

static int append_range(struct spool *s, uint64_t from, uint64_t to, struct spool_loss *total)
{
	uint8_t buf[512];
	for (uint64_t q = from; q <= to; q++) {
		struct spool_loss l;
		int ret = spool_append(s, q, buf, rec_for(q, buf), &l);
		if (ret)
			return ret;
		if (total && l.count) {
			if (!total->count)
				total->first_seq = l.first_seq;
			total->last_seq = l.last_seq;
			total->count += l.count;
		}
	}
	return 0;
}

/* Reads everything and checks it is exactly seqs from..to with the right
 * content. Returns a message or NULL. */
static const char *expect_all(struct spool *s, uint64_t from, uint64_t to)
{
	static char msg[200];
	struct spool_reader *r = NULL;
	struct spool_batch b = { 0 };
	uint8_t want[512];
	if (spool_reader_new(s, &r))
		return "reader_new failed";
	for (;;) {
		size_t before = b.n;
		if (spool_read(r, 100, 1 << 20, &b, NULL))
			return "spool_read failed";
		if (b.n == before)
			break;
	}
	spool_reader_free(r);
	msg[0] = 0;
	if (b.n != (from <= to ? to - from + 1 : 0))
		snprintf(msg, sizeof(msg), "read %zu records, want %llu (%llu..%llu)", b.n,
			 (unsigned long long)(to - from + 1), (unsigned long long)from,
			 (unsigned long long)to);
	for (size_t i = 0; !msg[0] && i < b.n; i++) {
		size_t n = rec_for(from + i, want);
		if (b.seq[i] != from + i || b.len[i] != n || memcmp(b.data + b.off[i], want, n) != 0)
			snprintf(msg, sizeof(msg), "record %zu: seq %llu (want %llu) or content differs", i,
				 (unsigned long long)b.seq[i], (unsigned long long)(from + i));
	}
	spool_batch_free(&b);
	return msg[0] ? msg : NULL;
}

/* Path of the newest segment file in dir/segments. */
static int last_segment(const char *dir, char *out, size_t n, int index_from_end)
{
	char segdir[300], names[64][32];
	int cnt = 0;
	DIR *d;
	struct dirent *de;
	snprintf(segdir, sizeof(segdir), "%s/segments", dir);
	if (!(d = opendir(segdir)))
		return -1;
	while ((de = readdir(d)) && cnt < 64)
		if (strstr(de->d_name, ".seg"))
			snprintf(names[cnt++], 32, "%s", de->d_name);
	closedir(d);
	if (cnt <= index_from_end)
		return -1;
	qsort(names, (size_t)cnt, 32, (int (*)(const void *, const void *))strcmp);
	snprintf(out, n, "%s/%s", segdir, names[cnt - 1 - index_from_end]);
	return 0;
}

TEST(append_replay_across_reopen)
{
	const char *dir = fresh_dir("replay");
	struct spool *s = NULL;
	const char *m;
	uint8_t *rec = NULL, want[512];
	size_t len = 0;
	uint64_t seq = 0;
	CHECK(open_sp(dir, 0, 4096, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(spool_last(s, &seq, &rec, &len) == -ENOENT, "empty spool has a last record");
	CHECK(append_range(s, 1, 500, NULL) == 0, "append");
	CHECK(spool_append(s, 500, want, 10, NULL) == -EINVAL, "non-increasing seq accepted");
	CHECK((m = expect_all(s, 1, 500)) == NULL, "before reopen: %s", m);
	spool_close(s);
	CHECK(open_sp(dir, 0, 4096, SPOOL_FSYNC_ALWAYS, &s) == 0, "reopen");
	CHECK((m = expect_all(s, 1, 500)) == NULL, "after reopen: %s", m);
	CHECK(spool_last(s, &seq, &rec, &len) == 0 && seq == 500 && len == rec_for(500, want) &&
	      memcmp(rec, want, len) == 0, "last record is not seq 500");
	free(rec);
	CHECK(append_range(s, 501, 510, NULL) == 0, "append after reopen");
	CHECK((m = expect_all(s, 1, 510)) == NULL, "after append: %s", m);
	struct spool_open_losses_unused;
	struct spool_loss l[4];
	CHECK(spool_open_losses(s, l, 4) == 0, "a clean spool reported losses");
	spool_close(s);
	rm_rf(dir);
}

TEST(torn_tail_cut_at_every_byte)
{
	const char *dir = fresh_dir("torn");
	char seg[400];
	struct spool *s = NULL;
	struct stat st;
	uint8_t buf[512];
	off_t full, last_start;
	const char *m;
	/* Build a spool of 5 records; remember where the last one starts. */
	CHECK(open_sp(dir, 0, 1 << 20, SPOOL_FSYNC_ALWAYS, &s) == 0, "open");
	CHECK(append_range(s, 1, 4, NULL) == 0, "append");
	spool_close(s);
	CHECK(last_segment(dir, seg, sizeof(seg), 0) == 0, "no segment file");
	CHECK(stat(seg, &st) == 0, "stat");
	last_start = st.st_size;
	CHECK(open_sp(dir, 0, 1 << 20, SPOOL_FSYNC_ALWAYS, &s) == 0, "open");
	CHECK(append_range(s, 5, 5, NULL) == 0, "append");
	spool_close(s);
	CHECK(stat(seg, &st) == 0, "stat");
	full = st.st_size;
	CHECK(full - last_start == 16 + (off_t)rec_for(5, buf), "record size on disk %lld",
	      (long long)(full - last_start));
	/* Save the file, then for every truncation point inside the last
	 * record: reopen recovers 1..4 exactly, and appending 5 again works. */
	char *orig = malloc((size_t)full);
	int fd = open(seg, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, orig, (size_t)full, 0) == full, "read segment");
	close(fd);
	for (off_t t = last_start; t < full; t++) {
		fd = open(seg, O_WRONLY | O_TRUNC);
		CHECK(fd >= 0 && write(fd, orig, (size_t)t) == t, "rewrite");
		close(fd);
		CHECK(open_sp(dir, 0, 1 << 20, SPOOL_FSYNC_ALWAYS, &s) == 0, "open after cut at %lld",
		      (long long)t);
		CHECK((m = expect_all(s, 1, 4)) == NULL, "cut at %lld: %s", (long long)t, m);
		CHECK(stat(seg, &st) == 0 && st.st_size == last_start,
		      "torn tail not cut at %lld (size %lld)", (long long)t, (long long)st.st_size);
		struct spool_loss l[4];
		size_t nl = spool_open_losses(s, l, 4);
		CHECK(nl == (t == last_start ? 0u : 1u), "cut at %lld: %zu losses reported",
		      (long long)t, nl);
		CHECK(nl == 0 || (l[0].first_seq == 5 && l[0].last_seq == 0),
		      "tail loss should start at 5 with an unknown end");
		CHECK(append_range(s, 5, 5, NULL) == 0, "append after recovery");
		CHECK((m = expect_all(s, 1, 5)) == NULL, "after re-append at %lld: %s", (long long)t, m);
		spool_close(s);
	}
	free(orig);
	rm_rf(dir);
}

TEST(crc_corruption_detected_and_reported)
{
	const char *dir = fresh_dir("crc");
	char seg[400];
	struct spool *s = NULL;
	struct spool_loss l[4];
	uint8_t b;
	const char *m;
	/* Small segments: several files. Corrupt a payload byte of the 3rd
	 * record of the oldest segment. */
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 100, NULL) == 0, "append");
	spool_close(s);
	CHECK(last_segment(dir, seg, sizeof(seg), 0) == 0, "segments");
	int nseg = 0;
	while (last_segment(dir, seg, sizeof(seg), nseg) == 0)
		nseg++;
	CHECK(nseg >= 3, "only %d segments", nseg);
	CHECK(last_segment(dir, seg, sizeof(seg), nseg - 1) == 0, "oldest");
	uint8_t tmp[512];
	off_t off = 24 + 16 + (off_t)rec_for(1, tmp) + 16 + (off_t)rec_for(2, tmp) + 16 + 5;
	int fd = open(seg, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1, "read byte");
	b ^= 0x01;
	CHECK(pwrite(fd, &b, 1, off) == 1, "write byte");
	close(fd);
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "reopen");
	size_t nl = spool_open_losses(s, l, 4);
	CHECK(nl == 1, "%zu losses reported for one corrupt record", nl);
	CHECK(l[0].first_seq == 3 && l[0].last_seq >= 3 && l[0].count == l[0].last_seq - 2,
	      "loss %llu..%llu count %llu", (unsigned long long)l[0].first_seq,
	      (unsigned long long)l[0].last_seq, (unsigned long long)l[0].count);
	/* The reader returns 1..2, then everything after the lost range. */
	struct spool_reader *r = NULL;
	struct spool_batch bt = { 0 };
	CHECK(spool_reader_new(s, &r) == 0, "reader");
	for (size_t before = (size_t)-1; before != bt.n;) {
		before = bt.n;
		CHECK(spool_read(r, 1000, 1 << 20, &bt, NULL) == 0, "read");
	}
	CHECK(bt.n == 100 - l[0].count, "read %zu records, want %llu", bt.n,
	      (unsigned long long)(100 - l[0].count));
	CHECK(bt.seq[0] == 1 && bt.seq[1] == 2 && bt.seq[2] == l[0].last_seq + 1 &&
	      bt.seq[bt.n - 1] == 100, "wrong records around the corruption");
	spool_batch_free(&bt);
	spool_reader_free(r);
	(void)m;
	spool_close(s);
	rm_rf(dir);
}

TEST(full_spool_drops_oldest_and_reports_exactly)
{
	const char *dir = fresh_dir("full");
	struct spool *s = NULL;
	struct spool_loss total = { 0 };
	struct spool_stats st;
	const char *m;
	CHECK(open_sp(dir, 32768, 4096, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 2000, &total) == 0, "append");
	spool_get_stats(s, &st);
	CHECK(st.bytes <= 32768, "spool holds %llu bytes, max 32768", (unsigned long long)st.bytes);
	CHECK(total.count > 0 && total.first_seq == 1, "no drop reported (count %llu)",
	      (unsigned long long)total.count);
	CHECK(total.last_seq + 1 == st.first_seq && total.count == total.last_seq,
	      "dropped 1..%llu (count %llu) but oldest kept is %llu",
	      (unsigned long long)total.last_seq, (unsigned long long)total.count,
	      (unsigned long long)st.first_seq);
	CHECK(st.dropped == total.count, "stats dropped %llu", (unsigned long long)st.dropped);
	CHECK((m = expect_all(s, st.first_seq, 2000)) == NULL, "kept records: %s", m);
	spool_close(s);
	rm_rf(dir);
}

TEST(ack_deletes_and_reader_resumes_after_ack)
{
	const char *dir = fresh_dir("ack");
	struct spool *s = NULL;
	struct spool_stats st;
	const char *m;
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 100, NULL) == 0, "append");
	spool_get_stats(s, &st);
	uint64_t segs_before = st.segments;
	CHECK(spool_ack(s, 60) == 0, "ack");
	spool_get_stats(s, &st);
	CHECK(st.acked_seq == 60 && st.segments < segs_before && st.first_seq <= 61,
	      "ack kept %llu of %llu segments, oldest %llu", (unsigned long long)st.segments,
	      (unsigned long long)segs_before, (unsigned long long)st.first_seq);
	CHECK((m = expect_all(s, 61, 100)) == NULL, "reader after ack: %s", m);
	spool_close(s);
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "reopen");
	CHECK((m = expect_all(s, 61, 100)) == NULL, "reader after reopen: %s", m);
	/* acking everything keeps the newest record (the chain head) */
	CHECK(spool_ack(s, 1000) == 0, "ack all");
	uint64_t seq;
	uint8_t *rec = NULL;
	size_t len;
	CHECK(spool_last(s, &seq, &rec, &len) == 0 && seq == 100, "chain head record gone");
	free(rec);
	CHECK((m = expect_all(s, 1, 0)) == NULL, "acked records still read: %s", m);
	spool_close(s);
	rm_rf(dir);
}

TEST(quarantine_moves_segment)
{
	const char *dir = fresh_dir("quar");
	struct spool *s = NULL;
	struct spool_loss l;
	char q[400];
	const char *m;
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 50, NULL) == 0, "append");
	CHECK(spool_quarantine(s, 1, 3, &l) == 0, "quarantine");
	CHECK(l.count > 0 && l.first_seq == 1, "loss %llu from %llu", (unsigned long long)l.count,
	      (unsigned long long)l.first_seq);
	CHECK((m = expect_all(s, l.last_seq + 1, 50)) == NULL, "after quarantine: %s", m);
	snprintf(q, sizeof(q), "%s/quarantine", dir);
	DIR *d = opendir(q);
	int files = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		files += strstr(de->d_name, ".seg") != NULL;
	if (d)
		closedir(d);
	CHECK(files == 1, "%d files in quarantine", files);
	/* quarantining the active segment: appends continue in a new one */
	CHECK(spool_quarantine(s, 50, 50, &l) == 0 && l.last_seq == 50, "quarantine active");
	CHECK(append_range(s, 51, 52, NULL) == 0, "append after");
	CHECK(spool_quarantine(s, 1000, 1001, &l) == -ENOENT, "quarantine of nothing succeeded");
	spool_close(s);
	rm_rf(dir);
}

TEST(reader_sees_only_durable_records)
{
	const char *dir = fresh_dir("durable");
	struct spool *s = NULL;
	struct spool_reader *r = NULL;
	struct spool_batch b = { 0 };
	/* batch mode with a 1 h interval: nothing is durable until spool_sync */
	CHECK(open_sp(dir, 0, 1 << 20, SPOOL_FSYNC_BATCH, &s) == 0, "open");
	CHECK(append_range(s, 1, 10, NULL) == 0, "append");
	CHECK(spool_reader_new(s, &r) == 0, "reader");
	CHECK(!spool_reader_pending(r), "unsynced records pending");
	CHECK(spool_read(r, 100, 1 << 20, &b, NULL) == 0 && b.n == 0, "read %zu unsynced records", b.n);
	CHECK(spool_sync(s) == 0, "sync");
	CHECK(spool_reader_pending(r), "synced records not pending");
	CHECK(spool_read(r, 100, 1 << 20, &b, NULL) == 0 && b.n == 10, "read %zu after sync", b.n);
	CHECK(append_range(s, 11, 12, NULL) == 0, "append");
	spool_batch_reset(&b);
	CHECK(spool_read(r, 100, 1 << 20, &b, NULL) == 0 && b.n == 0, "read unsynced again");
	spool_batch_free(&b);
	spool_reader_free(r);
	spool_close(s);
	/* close synced: all 12 are there */
	CHECK(open_sp(dir, 0, 1 << 20, SPOOL_FSYNC_NEVER, &s) == 0, "reopen");
	const char *m = expect_all(s, 1, 12);
	CHECK(m == NULL, "after close: %s", m);
	spool_close(s);
	rm_rf(dir);
}

TEST(read_respects_limits)
{
	const char *dir = fresh_dir("limits");
	struct spool *s = NULL;
	struct spool_reader *r = NULL;
	struct spool_batch b = { 0 };
	CHECK(open_sp(dir, 0, 2048, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 100, NULL) == 0, "append");
	CHECK(spool_reader_new(s, &r) == 0, "reader");
	CHECK(spool_read(r, 7, 1 << 20, &b, NULL) == 0 && b.n == 7 && b.seq[6] == 7, "max_records");
	spool_batch_reset(&b);
	CHECK(spool_read(r, 1000, 300, &b, NULL) == 0 && b.n >= 1 && b.data_len <= 300 + 220 &&
	      b.seq[0] == 8, "max_bytes: %zu records, %zu bytes", b.n, b.data_len);
	spool_batch_free(&b);
	spool_reader_free(r);
	spool_close(s);
	rm_rf(dir);
}

TEST(crc32c_known_vectors_hw_and_software_agree)
{
	uint8_t buf[1031];
	CHECK(spool_crc32c("123456789", 9, false) == 0xe3069283u, "CRC32C check value: %08x",
	      spool_crc32c("123456789", 9, false));
	CHECK(spool_crc32c("123456789", 9, true) == 0xe3069283u, "software CRC32C check value: %08x",
	      spool_crc32c("123456789", 9, true));
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	for (size_t n = 0; n < sizeof(buf); n += 97)
		CHECK(spool_crc32c(buf + 1, n, false) == spool_crc32c(buf + 1, n, true),
		      "paths disagree at length %zu", n);
}

/* A disk that fills up before spool_max_bytes: appends keep working by
 * dropping the oldest segment, and every drop is reported. Needs root for
 * a private 192 KiB tmpfs; without root it says so and checks nothing. */
TEST(disk_full_drops_oldest_and_reports)
{
	const char *dir = fresh_dir("enospc");
	struct spool *s = NULL;
	struct spool_loss total = { 0 };
	struct spool_stats st;
	const char *m;
	if (geteuid() != 0) {
		printf("SKIP disk_full_drops_oldest_and_reports: needs root for a tmpfs\n");
		return;
	}
	CHECK(mkdir(dir, 0700) == 0, "mkdir");
	CHECK(mount("vigil-test", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=192k") == 0,
	      "mount tmpfs: %s", strerror(errno));
	CHECK(open_sp(dir, 0, 16384, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	int ret = append_range(s, 1, 5000, &total);
	spool_get_stats(s, &st);
	spool_close(s);
	umount2(dir, MNT_DETACH);
	rm_rf(dir);
	CHECK(ret == 0, "append failed on a full disk instead of dropping: %s", strerror(-ret));
	CHECK(total.count > 0 && total.first_seq == 1 && total.last_seq + 1 == st.first_seq,
	      "drops %llu..%llu (count %llu) vs oldest kept %llu", (unsigned long long)total.first_seq,
	      (unsigned long long)total.last_seq, (unsigned long long)total.count,
	      (unsigned long long)st.first_seq);
	CHECK(st.last_seq == 5000 && st.bytes < 192 * 1024, "last %llu, %llu bytes",
	      (unsigned long long)st.last_seq, (unsigned long long)st.bytes);
	(void)m;
}

/* Fills the filesystem of dir with a file until ENOSPC. Returns its path's fd
 * (closed) in path; 0 or -errno. */
static int fill_disk(const char *dir, char *path, size_t n)
{
	static uint8_t zero[4096];
	snprintf(path, n, "%s/filler", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	while (write(fd, zero, sizeof(zero)) > 0)
		;
	while (write(fd, zero, 1) > 0)
		;
	close(fd);
	return 0;
}

/* A disk filled by someone else while the only segment is the active one:
 * the oldest records go (the active segment included), never the newest.
 * Then an empty spool on a full disk: a plain append fails, but a loss
 * report still fits (the reserve), and freed space brings the reserve back. */
TEST(disk_full_drops_active_segment_and_keeps_room_for_the_gap)
{
	const char *dir = fresh_dir("reserve");
	struct spool *s = NULL;
	struct spool_loss total = { 0 };
	struct spool_stats st;
	char filler[300], rpath[300], cmd[400];
	uint8_t buf[512];
	struct stat sb;
	int ret;
	if (geteuid() != 0) {
		printf("SKIP disk_full_drops_active_segment_and_keeps_room_for_the_gap: needs root\n");
		return;
	}
	CHECK(mkdir(dir, 0700) == 0, "mkdir");
	CHECK(mount("vigil-test", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k") == 0,
	      "mount tmpfs: %s", strerror(errno));
	snprintf(rpath, sizeof(rpath), "%s/reserve", dir);
	/* A: default segment size, so the filesystem's size decides (256k / 16) */
	ret = open_sp(dir, 0, 0, SPOOL_FSYNC_NEVER, &s);
	bool reserved = !ret && stat(rpath, &sb) == 0 && sb.st_size == 64 * 1024;
	if (!ret)
		ret = append_range(s, 1, 10, &total);
	if (!ret)
		ret = fill_disk(dir, filler, sizeof(filler));
	if (!ret)
		ret = append_range(s, 11, 3000, &total);
	if (s)
		spool_get_stats(s, &st);
	spool_close(s);
	s = NULL;
	/* B: an empty spool on a full disk */
	unlink(filler);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/segments' '%s/quarantine'", dir, dir);
	int b = system(cmd);
	if (!b)
		b = open_sp(dir, 0, 0, SPOOL_FSYNC_NEVER, &s);
	if (!b)
		b = fill_disk(dir, filler, sizeof(filler));
	int plain = b ? b : spool_append(s, 1, buf, rec_for(1, buf), NULL);
	int gap = b ? b : spool_append_reserved(s, 2, buf, rec_for(2, buf), NULL);
	unlink(filler);
	int again = b ? b : append_range(s, 3, 200, NULL);
	bool rebuilt = stat(rpath, &sb) == 0 && sb.st_size == 64 * 1024;
	spool_close(s);
	umount2(dir, MNT_DETACH);
	rm_rf(dir);
	CHECK(reserved, "no 64 KiB reserve at open");
	CHECK(ret == 0, "an append failed on a disk full of other data while old records were left: %s",
	      strerror(-ret));
	CHECK(total.count > 0 && total.first_seq == 1 && total.count == total.last_seq &&
	      total.last_seq + 1 == st.first_seq && st.last_seq == 3000,
	      "drops %llu..%llu (count %llu), spool keeps %llu..%llu: not the oldest first, or not exact",
	      (unsigned long long)total.first_seq, (unsigned long long)total.last_seq,
	      (unsigned long long)total.count, (unsigned long long)st.first_seq,
	      (unsigned long long)st.last_seq);
	CHECK(plain == -ENOSPC, "a plain append into an empty spool on a full disk: %d", plain);
	CHECK(gap == 0, "the loss report did not fit in the reserve: %d", gap);
	CHECK(again == 0, "appends after the disk was freed: %d", again);
	CHECK(rebuilt, "reserve not rebuilt after the disk was freed");
}

/* A seq is either handed to the shipper or reported lost, never both:
 * records the reader already took are in the shipper's memory (resent from
 * there until acked), so a drop does not count them; records a drop
 * counted are never handed out afterwards. */
TEST(drop_and_reader_never_both_claim_a_seq)
{
	const char *dir = fresh_dir("dropread");
	struct spool *s = NULL;
	struct spool_reader *r = NULL;
	struct spool_batch b = { 0 };
	struct spool_loss total = { 0 };
	static char seen[4001];
	memset(seen, 0, sizeof(seen));
	CHECK(open_sp(dir, 32768, 4096, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 100, NULL) == 0, "append");
	CHECK(spool_reader_new(s, &r) == 0, "reader");
	CHECK(spool_read(r, 30, 1 << 20, &b, NULL) == 0 && b.n == 30, "first read: %zu", b.n);
	for (size_t i = 0; i < b.n; i++)
		seen[b.seq[i]] = 1;
	CHECK(append_range(s, 101, 4000, &total) == 0, "append more");
	spool_batch_reset(&b);
	for (;;) {
		size_t before = b.n;
		CHECK(spool_read(r, 500, 1 << 20, &b, NULL) == 0, "read");
		if (b.n == before)
			break;
	}
	for (size_t i = 0; i < b.n; i++)
		seen[b.seq[i]]++;
	spool_batch_free(&b);
	spool_reader_free(r);
	spool_close(s);
	rm_rf(dir);
	CHECK(total.count > 0 && total.first_seq == 31, "loss starts at %llu, want 31 (1..30 are with the reader)",
	      (unsigned long long)total.first_seq);
	for (uint64_t q = 1; q <= 4000; q++) {
		int lost = q >= total.first_seq && q <= total.last_seq;
		CHECK(seen[q] + lost == 1, "seq %llu: handed out %d times, lost %d", (unsigned long long)q, seen[q], lost);
	}
}

/* Records the reader took before a full disk dropped their segment exist
 * only in the shipper's memory: delivered (acked) they are fine, else the
 * spool names them for a gap record, never both and never neither. */
TEST(held_records_dropped_from_disk_are_named_until_acked)
{
	const char *dir = fresh_dir("held");
	struct spool *s = NULL;
	struct spool_reader *r = NULL;
	struct spool_batch b = { 0 };
	struct spool_loss total = { 0 }, held[8];
	CHECK(open_sp(dir, 32768, 4096, SPOOL_FSYNC_NEVER, &s) == 0, "open");
	CHECK(append_range(s, 1, 100, NULL) == 0, "append");
	CHECK(spool_reader_new(s, &r) == 0, "reader");
	CHECK(spool_read(r, 30, 1 << 20, &b, NULL) == 0 && b.n == 30, "first read: %zu", b.n);
	CHECK(spool_held_lost(s, held, 8) == 0, "nothing dropped yet, nothing held-lost");
	CHECK(append_range(s, 101, 4000, &total) == 0, "append more");
	size_t n = spool_held_lost(s, held, 8);
	CHECK(n == 1 && held[0].first_seq == 1 && held[0].last_seq == 30 && held[0].count == 30,
	      "held-lost ranges %zu: %llu..%llu", n, n ? (unsigned long long)held[0].first_seq : 0ull,
	      n ? (unsigned long long)held[0].last_seq : 0ull);
	CHECK(total.first_seq == 31, "the drop itself counted from %llu", (unsigned long long)total.first_seq);
	CHECK(spool_ack(s, 10) == 0, "ack");
	n = spool_held_lost(s, held, 8);
	CHECK(n == 1 && held[0].first_seq == 11 && held[0].count == 20, "after ack 10: %zu ranges from %llu",
	      n, n ? (unsigned long long)held[0].first_seq : 0ull);
	CHECK(spool_ack(s, 30) == 0, "ack");
	CHECK(spool_held_lost(s, held, 8) == 0, "all delivered: nothing held-lost");
	spool_batch_free(&b);
	spool_reader_free(r);
	spool_close(s);
	rm_rf(dir);
}
