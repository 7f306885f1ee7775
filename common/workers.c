/* workers: see workers.h. One mutex guards both lists; a worker appends to
 * `finished` and bumps the eventfd, the loop drains it in one go. The
 * eventfd counter coalesces wake-ups, so a burst of results costs one read. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "workers.h"
#include "efd.h"

#define WORKERS_MAX 16

struct workers {
	struct loop *l;
	struct loop_watch w;           /* the eventfd */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work *queue, **queue_tail;
	struct work *finished;         /* LIFO; reversed when drained */
	unsigned pending;              /* queued + running + finished not yet drained */
	bool stop;
	unsigned n, max, idle;         /* threads started, allowed, waiting */
	unsigned queued;
	struct work *refused;          /* no thread could start: cancelled via the eventfd */
	pthread_t thr[WORKERS_MAX];
};

static void *worker_main(void *arg)
{
	struct workers *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		p->idle++;
		while (!p->queue && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		p->idle--;
		if (!p->queue)
			break;
		struct work *w = p->queue;
		p->queued--;
		if (!(p->queue = w->next))
			p->queue_tail = &p->queue;
		pthread_mutex_unlock(&p->mu);
		w->run(w);
		pthread_mutex_lock(&p->mu);
		w->next = p->finished;
		p->finished = w;
		efd_signal(p->w.fd);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Runs the done callbacks of everything finished, oldest first. */
static void drain(struct workers *p)
{
	pthread_mutex_lock(&p->mu);
	struct work *w = p->finished, *rev = NULL, *refused = p->refused;
	p->finished = p->refused = NULL;
	pthread_mutex_unlock(&p->mu);
	while (refused) {
		struct work *n = refused->next;
		pthread_mutex_lock(&p->mu);
		p->pending--;
		pthread_mutex_unlock(&p->mu);
		refused->done(refused, true);
		refused = n;
	}
	while (w) {
		struct work *n = w->next;
		w->next = rev;
		rev = w;
		w = n;
	}
	while (rev) {
		struct work *n = rev->next;
		pthread_mutex_lock(&p->mu);
		p->pending--;
		pthread_mutex_unlock(&p->mu);
		rev->done(rev, false);
		rev = n;
	}
}

static void on_wake(struct loop_watch *lw, uint32_t events)
{
	struct workers *p = (struct workers *)((char *)lw - offsetof(struct workers, w));
	efd_drain(lw->fd);
	drain(p);
}

struct workers *workers_new(struct loop *l, unsigned n)
{
	struct workers *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->l = l;
	p->queue_tail = &p->queue;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->w.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->w.fn = on_wake;
	if (p->w.fd < 0 || loop_add(l, &p->w, EPOLLIN))
		goto err;
	/* Threads start on demand (workers_submit): an idle process that was
	 * never asked anything has none. */
	p->max = n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
	return p;
err:
	workers_free(p);
	return NULL;
}

void workers_submit(struct workers *p, struct work *w)
{
	w->next = NULL;
	pthread_mutex_lock(&p->mu);
	*p->queue_tail = w;
	p->queue_tail = &w->next;
	p->pending++;
	p->queued++;
	/* More queued than threads waiting: one more, up to max. If that fails
	 * the task waits for a running one; with none at all it would wait for
	 * ever, so it is cancelled instead (done runs from the eventfd). */
	if (p->queued > p->idle && p->n < p->max && !pthread_create(&p->thr[p->n], NULL, worker_main, p))
		p->n++;
	if (!p->n) {
		p->queue = NULL;
		p->queue_tail = &p->queue;
		p->queued = 0;
		w->next = p->refused;
		p->refused = w;
		efd_signal(p->w.fd);
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

unsigned workers_pending(const struct workers *p)
{
	pthread_mutex_lock((pthread_mutex_t *)&p->mu);
	unsigned n = p->pending;
	pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
	return n;
}

void workers_free(struct workers *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	struct work *cancelled = p->queue;
	p->queue = NULL;
	p->queue_tail = &p->queue;
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->thr[i], NULL);
	drain(p);
	while (cancelled) {
		struct work *n = cancelled->next;
		p->pending--;
		cancelled->done(cancelled, true);
		cancelled = n;
	}
	if (p->w.fd >= 0) {
		loop_del(p->l, &p->w);
		close(p->w.fd);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
