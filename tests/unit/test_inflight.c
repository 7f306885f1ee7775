/* inflight: exchange starts survive a crash; a done mark settles an
 * exchange only if its complete event reached the spool; damaged slots are
 * skipped, never trusted. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "audit/inflight.h"

static char path[128];
static char got[8][64];
static int ngot;

static void collect(void *arg, const uint8_t *rec, size_t len)
{
	(void)arg;
	if (ngot < 8)
		snprintf(got[ngot++], 64, "%.*s", (int)len, (const char *)rec);
}

static struct inflight *reopen(void)
{
	struct inflight *j = NULL;
	char err[256];
	return inflight_open(path, false, &j, err, sizeof(err)) ? NULL : j;
}

TEST(open_and_unsettled_exchanges_are_recovered_once)
{
	char err[256];
	struct inflight *j = NULL;
	snprintf(path, sizeof(path), "/tmp/vigil-test-inflight-%d", (int)getpid());
	unlink(path);
	CHECK(inflight_open(path, false, &j, err, sizeof(err)) == 0, "open: %s", err);
	int a = inflight_begin(j, "alpha", 5), b = inflight_begin(j, "bravo", 5), c = inflight_begin(j, "charlie", 7);
	CHECK(a >= 0 && b >= 0 && c >= 0 && a != b && b != c, "slots %d %d %d", a, b, c);
	CHECK(inflight_done(j, b, 10) == 0, "done");
	CHECK(inflight_open_count(j) == 2, "open count %zu", inflight_open_count(j));
	/* a crash, as far as the file goes: closing with exchanges still open
	 * leaves them in it, as a killed process would */
	inflight_close(j);
	struct inflight *k = reopen();
	CHECK(k, "reopen");
	CHECK(inflight_pending(k, 10) == 2, "with seq 10 in the spool: %zu pending, want 2", inflight_pending(k, 10));
	CHECK(inflight_pending(k, 9) == 3, "with seq 10 lost: %zu pending, want 3", inflight_pending(k, 9));
	ngot = 0;
	CHECK(inflight_recover(k, 10, collect, NULL) == 2, "recovered %d", ngot);
	CHECK(ngot == 2 && ((!strcmp(got[0], "alpha") && !strcmp(got[1], "charlie")) ||
			    (!strcmp(got[1], "alpha") && !strcmp(got[0], "charlie"))),
	      "recovered %s, %s", got[0], got[1]);
	inflight_close(k);
	k = reopen();
	CHECK(k && inflight_pending(k, 0) == 0, "exchanges reported twice across restarts");
	/* a slot is reused once done, and a clean close owes nothing */
	int d = inflight_begin(k, "delta", 5);
	inflight_done(k, d, 11);
	int e = inflight_begin(k, "echo", 4);
	CHECK(d == e, "done slot %d not reused (%d)", d, e);
	inflight_done(k, e, 12);
	inflight_close(k);
	k = reopen();
	CHECK(k && inflight_pending(k, 0) == 0, "a clean close left exchanges owed");
	CHECK(inflight_begin(k, "x", INFLIGHT_MAX_RECORD + 1) == -EMSGSIZE, "oversized record accepted");
	inflight_close(k);
	unlink(path);
}

TEST(damaged_slot_is_skipped)
{
	char err[256];
	struct inflight *j = NULL;
	snprintf(path, sizeof(path), "/tmp/vigil-test-inflight-%d-d", (int)getpid());
	unlink(path);
	CHECK(inflight_open(path, true, &j, err, sizeof(err)) == 0, "open: %s", err);
	int a = inflight_begin(j, "alpha", 5), b = inflight_begin(j, "bravo", 5);
	inflight_close(j);
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "X", 1, (off_t)b * INFLIGHT_SLOT + 33) == 1, "corrupt");
	close(fd);
	struct inflight *k = reopen();
	ngot = 0;
	CHECK(k && inflight_recover(k, 0, collect, NULL) == 1 && !strcmp(got[0], "alpha"),
	      "recovered %d (%s) from slots %d, %d", ngot, got[0], a, b);
	inflight_close(k);
	unlink(path);
}

/* A done mark is one write of state, CRC and seq: the CRC it rewrites is
 * the record's own (else the slot would read as damaged), also for slots
 * numbered past those the last run left. */
TEST(done_marks_keep_their_slots_readable)
{
	char err[256], rec[16];
	struct inflight *j = NULL;
	snprintf(path, sizeof(path), "/tmp/vigil-test-inflight-%d-m", (int)getpid());
	unlink(path);
	CHECK(inflight_open(path, false, &j, err, sizeof(err)) == 0, "open: %s", err);
	for (int i = 0; i < 150; i++) {
		int n = snprintf(rec, sizeof(rec), "r%d", i);
		int s = inflight_begin(j, rec, (size_t)n);
		CHECK(s == i, "slot %d for record %d", s, i);
	}
	for (int i = 1; i < 150; i += 2)
		CHECK(inflight_done(j, i, 100 + (uint64_t)i) == 0, "done %d", i);
	inflight_close(j);   /* 75 still open: kept, as after a crash */
	struct inflight *k = reopen();
	CHECK(k, "reopen");
	CHECK(inflight_pending(k, 1000) == 75, "%zu open, want 75", inflight_pending(k, 1000));
	CHECK(inflight_pending(k, 0) == 150, "%zu read back, want 150 (a done mark spoiled its slot)",
	      inflight_pending(k, 0));
	/* before recovery, new starts go past the old slots */
	int a = inflight_begin(k, "new-a", 5), b = inflight_begin(k, "new-b", 5), c = inflight_begin(k, "new-c", 5);
	CHECK(a >= 150 && b >= 150 && c >= 150, "new slots %d %d %d reuse the last run's", a, b, c);
	CHECK(inflight_done(k, a, 500) == 0 && inflight_done(k, b, 501) == 0, "done new");
	CHECK(inflight_done(k, 100000, 1) == -EINVAL, "a slot never handed out was marked done");
	inflight_close(k);   /* c still open */
	struct inflight *m = reopen();
	CHECK(m, "reopen 2");
	CHECK(inflight_pending(m, 499) == 78, "%zu pending with seq 499 in the spool, want 78", inflight_pending(m, 499));
	CHECK(inflight_pending(m, 501) == 76, "%zu pending with seq 501 in the spool, want 76", inflight_pending(m, 501));
	inflight_close(m);
	unlink(path);
}
