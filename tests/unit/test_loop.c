/* Unit tests for common/loop.c's timers: they fire in due order whatever
 * the order they were set, moved and cancelled in; a timer set again from
 * its own callback does not spin the loop; the loop sleeps until the next
 * timer (no tick) and wakes for an fd in between. */
#include "check.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop.h"

#define N 500

struct rec {
	struct loop_timer t;
	int id;
};

static struct loop *L;
static int fired[N], nfired;
static uint64_t last_due;
static int out_of_order;

static void on_fire(struct loop_timer *t, uint64_t now)
{
	struct rec *r = (struct rec *)t;
	(void)now;
	if (t->due_ms < last_due)
		out_of_order++;
	last_due = t->due_ms;
	fired[nfired++] = r->id;
}

static void on_stop(struct loop_timer *t, uint64_t now)
{
	(void)t;
	(void)now;
	loop_stop(L);
}

TEST(timers_fire_in_due_order_after_moves_and_cancels)
{
	static struct rec recs[N];
	struct loop_timer stop = { .fn = on_stop };
	uint64_t base = loop_now_ms();
	L = loop_new();
	CHECK(L, "loop_new");
	srand(7);
	for (int i = 0; i < N; i++) {
		recs[i].id = i;
		recs[i].t.fn = on_fire;
		CHECK(loop_timer_set(L, &recs[i].t, base + rand() % 50) == 0, "set %d", i);
	}
	for (int i = 0; i < N; i += 3)      /* moved, earlier or later */
		loop_timer_set(L, &recs[i].t, base + rand() % 50);
	for (int i = 1; i < N; i += 5)      /* cancelled, twice for some */
		loop_timer_cancel(L, &recs[i].t);
	loop_timer_cancel(L, &recs[1].t);
	int want = 0;
	for (int i = 0; i < N; i++)
		want += loop_timer_is_set(&recs[i].t);
	loop_timer_set(L, &stop, base + 80);
	CHECK(loop_run(L) == 0, "loop_run");
	CHECK(nfired == want, "%d timers fired, %d were set", nfired, want);
	CHECK(out_of_order == 0, "%d timers fired before an earlier one", out_of_order);
	for (int i = 0; i < nfired; i++)
		CHECK(fired[i] % 5 != 1, "cancelled timer %d fired", fired[i]);
	for (int i = 0; i < N; i++)
		CHECK(!loop_timer_is_set(&recs[i].t), "timer %d still set after firing", i);
	loop_free(L);
}

static int rearmed;

static void on_rearm(struct loop_timer *t, uint64_t now)
{
	if (++rearmed < 1000)
		loop_timer_set(L, t, now);   /* due at once, again and again */
}

TEST(timer_set_again_for_now_does_not_hold_the_loop)
{
	struct loop_timer self = { .fn = on_rearm }, stop = { .fn = on_stop };
	L = loop_new();
	rearmed = 0;
	loop_timer_set(L, &self, 0);
	loop_timer_set(L, &stop, loop_now_ms() + 30);
	CHECK(loop_run(L) == 0, "loop_run");
	CHECK(rearmed == 1000, "self-setting timer ran %d times", rearmed);
	loop_free(L);
}

static struct loop_watch efd_w;
static uint64_t woke_at;

static void on_efd(struct loop_watch *w, uint32_t ev)
{
	uint64_t v;
	(void)ev;
	if (read(w->fd, &v, sizeof(v)) == sizeof(v))
		woke_at = loop_now_ms();
}

static void on_kick(struct loop_timer *t, uint64_t now)
{
	uint64_t one = 1;
	(void)t;
	(void)now;
	if (write(efd_w.fd, &one, sizeof(one)) != sizeof(one))
		abort();
}

TEST(loop_sleeps_until_the_next_timer_and_wakes_for_fds)
{
	struct loop_timer kick = { .fn = on_kick }, stop = { .fn = on_stop };
	uint64_t t0 = loop_now_ms();
	L = loop_new();
	efd_w.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	efd_w.fn = on_efd;
	CHECK(efd_w.fd >= 0 && loop_add(L, &efd_w, EPOLLIN) == 0, "eventfd watch");
	loop_timer_set(L, &kick, t0 + 40);
	loop_timer_set(L, &stop, t0 + 120);
	CHECK(loop_run(L) == 0, "loop_run");
	uint64_t t1 = loop_now_ms();
	CHECK(woke_at >= t0 + 40, "fd event seen at +%llu ms, before its timer", (unsigned long long)(woke_at - t0));
	CHECK(t1 >= t0 + 120, "loop stopped at +%llu ms, before the stop timer", (unsigned long long)(t1 - t0));
	close(efd_w.fd);
	loop_free(L);
}
