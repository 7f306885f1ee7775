/* loop: the epoll event loop of the agent and the collector. Watches and
 * timers are embedded in their owners (no allocation per registration). Timers sit in a binary
 * heap: the loop sleeps until the earliest one is due, so an idle agent
 * does not wake for nothing and no tick scans every connection. One thread
 * runs the loop; other threads talk to it only through fds. */
#ifndef VIGIL_LOOP_H
#define VIGIL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_watch;
typedef void (*loop_fn)(struct loop_watch *w, uint32_t events);

struct loop_watch {
	int fd;
	loop_fn fn;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);
/* events: EPOLLIN | EPOLLOUT | EPOLLET ... */
int loop_add(struct loop *l, struct loop_watch *w, uint32_t events);
int loop_mod(struct loop *l, struct loop_watch *w, uint32_t events);
void loop_del(struct loop *l, struct loop_watch *w);
/* A one-shot timer: fn runs on the loop thread once loop_now_ms() >= due_ms,
 * after the epoll events of the same turn (so an owner freed by a timer is
 * never named by a later event of that turn). fn may set the timer again. */
struct loop_timer {
	uint64_t due_ms;
	size_t slot;                   /* 1 + index in the heap; 0: not set */
	void (*fn)(struct loop_timer *t, uint64_t now_ms);
};

/* Sets (or moves) t to due_ms. Returns 0 or -ENOMEM. */
int loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t due_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_is_set(const struct loop_timer *t) { return t->slot != 0; }
/* Runs until loop_stop() (which may come before it). Returns 0 or -errno;
 * once it returned, the loop can be run again. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
uint64_t loop_now_ms(void);

#endif
