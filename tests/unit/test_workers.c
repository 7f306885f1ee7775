/* Unit tests for common/workers.c: results come back on the loop thread in
 * completion order, several tasks run at once (a slow one does not hold the
 * others), no thread exists before the first task, and workers_free waits
 * for a running task and cancels the queued ones before it returns. */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "loop.h"
#include "workers.h"

struct task {
	struct work w;
	int id;
	atomic_int *gate;          /* run spins until *gate != 0 (NULL: no wait) */
	bool ran, done, cancelled, done_on_loop;
};

static struct loop *L;
static pthread_t loop_thr;
static int ndone, stop_after;
/* First test: when the 20 quick tasks are back, whether the slow one was
 * still out, then it is let go. */
static int open_gate_after;
static atomic_int *gate_to_open;
static bool slow_out_when_quick_done;
static struct task *slow_task;

static void t_run(struct work *w)
{
	struct task *t = (struct task *)w;
	while (t->gate && !atomic_load(t->gate))
		usleep(1000);
	t->ran = true;
}

static void t_done(struct work *w, bool cancelled)
{
	struct task *t = (struct task *)w;
	t->done = true;
	t->cancelled = cancelled;
	t->done_on_loop = pthread_equal(pthread_self(), loop_thr);
	if (++ndone == open_gate_after) {
		slow_out_when_quick_done = !slow_task->done;
		atomic_store(gate_to_open, 1);
	}
	if (ndone == stop_after)
		loop_stop(L);
}

static void task_init(struct task *t, int id, atomic_int *gate)
{
	*t = (struct task){ .w = { .run = t_run, .done = t_done }, .id = id, .gate = gate };
}

static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Threads:", 8))
			n = atoi(line + 8);
	if (f)
		fclose(f);
	return n;
}

TEST(results_come_back_on_the_loop_and_slow_task_does_not_hold_others)
{
	L = loop_new();
	loop_thr = pthread_self();
	int before = threads_now();
	struct workers *p = workers_new(L, 3);
	CHECK(p != NULL, "workers_new");
	CHECK(threads_now() == before, "threads before any task: %d, was %d", threads_now(), before);
	atomic_int gate = 0;
	static struct task slow, quick[20];
	task_init(&slow, 0, &gate);
	workers_submit(p, &slow.w);
	for (int i = 0; i < 20; i++) {
		task_init(&quick[i], i + 1, NULL);
		workers_submit(p, &quick[i].w);
	}
	ndone = 0;
	open_gate_after = 20;      /* the quick ones, while the slow one still runs */
	gate_to_open = &gate;
	slow_task = &slow;
	stop_after = 21;
	loop_run(L);
	for (int i = 0; i < 20; i++)
		CHECK(quick[i].done && quick[i].ran && !quick[i].cancelled && quick[i].done_on_loop,
		      "quick task %d: done %d ran %d on loop %d", i, quick[i].done, quick[i].ran, quick[i].done_on_loop);
	CHECK(slow_out_when_quick_done, "the quick tasks waited for the slow one");
	CHECK(threads_now() <= before + 3, "more threads than the pool's 3: %d", threads_now() - before);
	CHECK(workers_pending(p) == 0, "pending %u after all done", workers_pending(p));
	CHECK(slow.done && slow.ran && !slow.cancelled, "slow task after its gate opened");
	workers_free(p);
	loop_free(L);
}

static void *open_later(void *arg)
{
	usleep(50000);
	atomic_store((atomic_int *)arg, 1);
	return NULL;
}

TEST(free_waits_for_running_and_cancels_queued)
{
	L = loop_new();
	loop_thr = pthread_self();
	struct workers *p = workers_new(L, 1);
	atomic_int gate = 0;
	static struct task running, queued[5];
	task_init(&running, 0, &gate);
	workers_submit(p, &running.w);
	for (int i = 0; i < 5; i++) {
		task_init(&queued[i], i + 1, NULL);
		workers_submit(p, &queued[i].w);
	}
	usleep(20000);             /* the one thread has taken the gated task */
	pthread_t opener;          /* opens the gate while workers_free waits */
	pthread_create(&opener, NULL, open_later, &gate);
	ndone = 0;
	stop_after = open_gate_after = -1;
	workers_free(p);
	pthread_join(opener, NULL);
	CHECK(running.ran && running.done && !running.cancelled, "running task: ran %d done %d cancelled %d",
	      running.ran, running.done, running.cancelled);
	int cancelled = 0;
	for (int i = 0; i < 5; i++) {
		CHECK(queued[i].done, "queued task %d without its done callback", i);
		cancelled += queued[i].cancelled;
		CHECK(queued[i].cancelled != queued[i].ran, "task %d: cancelled %d ran %d", i, queued[i].cancelled,
		      queued[i].ran);
	}
	CHECK(cancelled == 5, "free cancelled %d of the 5 queued tasks", cancelled);
	loop_free(L);
}

