/* workers: a small pool of threads for the work an event loop must not do
 * itself (store queries, chain verification, exports). A task runs on a
 * worker and completes as an event on the loop's thread (nginx's thread
 * pool): the owner never sees its callbacks from two threads at once.
 *
 * Owns: its threads, an eventfd watched on the loop, the queue. Borrows the
 * tasks (embedded in their owners: no allocation per submission). Must
 * never: run a done callback off the loop thread, or return from
 * workers_free while a task is still running. */
#ifndef VIGIL_WORKERS_H
#define VIGIL_WORKERS_H

#include <stdbool.h>
#include "loop.h"

struct work {
	void (*run)(struct work *w);                    /* on a worker thread */
	/* On the loop thread, after run; cancelled: run never started
	 * (workers_free with the task still queued). */
	void (*done)(struct work *w, bool cancelled);
	struct work *next;                              /* private */
};

struct workers;
/* n threads (at least 1) whose results come back on loop l. NULL on error. */
struct workers *workers_new(struct loop *l, unsigned n);
/* Queues w (borrowed until its done callback). Loop thread only. */
void workers_submit(struct workers *p, struct work *w);
/* Tasks queued or running now. */
unsigned workers_pending(const struct workers *p);
/* Waits for the running tasks, cancels the queued ones, and runs every
 * outstanding done callback on the calling thread (the loop's, after
 * loop_run returned) before the threads are gone. Accepts NULL. */
void workers_free(struct workers *p);

#endif
