/* loop: a thin epoll wrapper. A callback may loop_del() any watch during
 * dispatch, but a later event of the same epoll_wait batch can still name
 * it: owners must not free a watch's memory inside a callback. The conn
 * module marks closed connections dead and frees them on the next tick. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include "net/loop.h"

struct loop {
	int epfd;
	bool stop;
	unsigned tick_ms;
	void (*tick)(void *arg, uint64_t now_ms);
	void *tick_arg;
	uint64_t next_tick;
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

void loop_set_tick(struct loop *l, unsigned tick_ms, void (*fn)(void *, uint64_t), void *arg)
{
	l->tick_ms = tick_ms;
	l->tick = fn;
	l->tick_arg = arg;
	l->next_tick = loop_now_ms() + tick_ms;
}

void loop_stop(struct loop *l) { l->stop = true; }

int loop_run(struct loop *l)
{
	struct epoll_event evs[128];
	while (!l->stop) {
		int timeout = -1;
		if (l->tick) {
			uint64_t now = loop_now_ms();
			timeout = now >= l->next_tick ? 0 : (int)(l->next_tick - now);
		}
		int n = epoll_wait(l->epfd, evs, 128, timeout);
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
		if (l->tick) {
			uint64_t now = loop_now_ms();
			if (now >= l->next_tick) {
				l->next_tick = now + l->tick_ms;
				l->tick(l->tick_arg, now);
			}
		}
	}
	return 0;
}
