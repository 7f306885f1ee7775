/* loop: the agent's epoll event loop. Watches are embedded in their owners
 * (no allocation per registration); a periodic tick drives timeouts. One
 * thread runs the loop; other threads talk to it only through fds. */
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
/* Called every tick_ms with the monotonic time in ms. */
void loop_set_tick(struct loop *l, unsigned tick_ms, void (*fn)(void *arg, uint64_t now_ms), void *arg);
/* Runs until loop_stop(). Returns 0 or -errno. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
uint64_t loop_now_ms(void);

#endif
