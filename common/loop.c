/* loop: a thin epoll wrapper and a timer heap. A callback may loop_del() any
 * watch during dispatch, but a later event of the same epoll_wait batch can
 * still name it: owners must not free a watch's memory inside a callback.
 * Timers run after the batch, so the conn module frees closed connections
 * from a timer due at once. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include "loop.h"

struct loop {
	int epfd;
	bool stop;
	struct loop_timer **heap;      /* min-heap on due_ms */
	size_t n, cap;
};

uint64_t loop_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->heap);
	free(l);
}

int loop_add(struct loop *l, struct loop_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev) ? -errno : 0;
}

int loop_mod(struct loop *l, struct loop_watch *w, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev) ? -errno : 0;
}

void loop_del(struct loop *l, struct loop_watch *w)
{
	if (w->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

static void heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];
	while (i > 0 && l->heap[(i - 1) / 2]->due_ms > t->due_ms) {
		heap_place(l, i, l->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_place(l, i, t);
}

static void heap_down(struct loop *l, size_t i)
{
	struct loop_timer *t = l->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->n)
			break;
		if (c + 1 < l->n && l->heap[c + 1]->due_ms < l->heap[c]->due_ms)
			c++;
		if (l->heap[c]->due_ms >= t->due_ms)
			break;
		heap_place(l, i, l->heap[c]);
		i = c;
	}
	heap_place(l, i, t);
}

int loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t due_ms)
{
	if (t->slot) {
		uint64_t was = t->due_ms;
		t->due_ms = due_ms;
		if (due_ms < was)
			heap_up(l, t->slot - 1);
		else
			heap_down(l, t->slot - 1);
		return 0;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->cap = cap;
	}
	t->due_ms = due_ms;
	heap_place(l, l->n++, t);
	heap_up(l, l->n - 1);
	return 0;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	if (!t->slot)
		return;
	size_t i = t->slot - 1;
	t->slot = 0;
	if (i == --l->n)
		return;
	struct loop_timer *last = l->heap[l->n];
	heap_place(l, i, last);
	heap_up(l, i);
	heap_down(l, last->slot - 1);
}

/* Runs the timers that are due, earliest first, at most as many as were set
 * when the pass began: a callback that sets its timer for now again cannot
 * hold the loop in this pass. */
static void run_timers(struct loop *l)
{
	uint64_t now = loop_now_ms();
	size_t budget = l->n;
	while (l->n && l->heap[0]->due_ms <= now && budget-- && !l->stop) {
		struct loop_timer *t = l->heap[0];
		loop_timer_cancel(l, t);
		t->fn(t, now);
	}
}

static int next_timeout(const struct loop *l)
{
	if (!l->n)
		return -1;
	uint64_t now = loop_now_ms(), due = l->heap[0]->due_ms;
	if (due <= now)
		return 0;
	return due - now > 3600 * 1000 ? 3600 * 1000 : (int)(due - now);
}

void loop_stop(struct loop *l) { l->stop = true; }

int loop_run(struct loop *l)
{
	struct epoll_event evs[128];
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 128, next_timeout(l));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			struct loop_watch *w = evs[i].data.ptr;
			if (w)
				w->fn(w, evs[i].events);
		}
		run_timers(l);
	}
	l->stop = false;   /* a later loop_run runs again (the collector winds its API down that way) */
	return 0;
}
