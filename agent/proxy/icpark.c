/* icpark: intercepted client connections on the event loop while no thread
 * serves them (see icpark.h for the ownership rules).
 *
 * The watch is level-triggered: the loop asks for exactly what OpenSSL
 * said it wants (read or write), and a parked connection only for input.
 * A parked connection that becomes readable is peeked at through TLS on
 * the loop: a partial record, a KeyUpdate or a ticket keeps it parked, a
 * close_notify or EOF closes it quietly, and only application data starts
 * a thread. Timers are one-shot and set once per state change, so a parked
 * connection adds no wake-up of its own until its idle timeout is due.
 * A connection moves (ops.pack) only while off the loop: its watch and
 * timer are embedded, so they are removed first and added back after. */
#include <errno.h>
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "agent.h"
#include "log.h"
#include "proxy/icpark.h"

#define THREAD_STACK (256 * 1024)
#define SHUTDOWN_WAIT_MS 2000

static struct icpark *held;            /* loop-held connections (loop thread only) */
static struct loop_watch backw = { .fd = -1 };   /* eventfd: something was handed back */
static pthread_mutex_t back_lock = PTHREAD_MUTEX_INITIALIZER;
static struct icpark *back_queue;      /* handed back, not yet on the loop (back_lock) */
static bool back_closed;               /* shut down: threads free what they hold (back_lock) */
static atomic_uint serving;            /* connections on serving threads now */
static atomic_uint threads;            /* serving threads not yet ended */
static uint64_t trimmed_ms;            /* last heap trim (loop thread) */
static struct loop_timer trim_timer;   /* a trim after connections parked (loop thread) */
static uint64_t trim_first;            /* the first park the pending trim waits for */
#define TRIM_QUIET_MS 200                 /* parks this far apart end a burst */

static void park(struct icpark *p);

static void clear_errors(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

static void hold(struct icpark *p)
{
	p->prev = NULL;
	p->next = held;
	if (held)
		held->prev = p;
	held = p;
}

static void unhold(struct icpark *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		held = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
}

/* Takes p off the loop (watch, timer, list): the caller passes it on. */
static void release(struct icpark *p)
{
	struct loop *l = p->ag->loop;
	if (p->events)
		loop_del(l, &p->w);
	p->events = 0;
	loop_timer_cancel(l, &p->timer);
	unhold(p);
}

/* The watch waits for events (added on first use). False if epoll refused. */
static bool want(struct icpark *p, uint32_t events)
{
	int ret = 0;
	if (p->events == events)
		return true;
	if (!events) {
		loop_del(p->ag->loop, &p->w);
		p->events = 0;
		return true;
	}
	ret = p->events ? loop_mod(p->ag->loop, &p->w, events) : loop_add(p->ag->loop, &p->w, events);
	if (ret) {
		log_warn("intercepted connection: epoll: %s", strerror(-ret));
		return false;
	}
	p->events = events;
	return true;
}

/* Closes a loop-held connection without a word to the audit: the end of an
 * idle keep-alive connection is normal, as it is on a serving thread. */
static void close_quietly(struct icpark *p, bool notify)
{
	release(p);
	if (notify) {
		/* close_notify, best effort: the socket is non-blocking */
		clear_errors();
		SSL_shutdown(p->ssl);
	}
	p->ops->free(p);
}

/* A serving thread gives p back to the loop (or frees it at shutdown). */
static void hand_back(struct icpark *p)
{
	pthread_mutex_lock(&back_lock);
	if (back_closed) {
		pthread_mutex_unlock(&back_lock);
		p->ops->free(p);
		return;
	}
	bool first = !back_queue;
	p->qnext = back_queue;
	back_queue = p;
	/* one wake-up per batch: the loop takes the whole queue */
	if (first && eventfd_write(backw.fd, 1))
		log_warn("intercepted connection: eventfd: %s", strerror(errno));
	pthread_mutex_unlock(&back_lock);
}

static void *serve_thread(void *arg)
{
	struct icpark *p = arg;
	p = p->ops->serve(p);
	/* before the hand-back: the loop must see 0 after the last one */
	atomic_fetch_sub(&serving, 1);
	if (p)
		hand_back(p);
	OPENSSL_thread_stop();
	atomic_fetch_sub(&threads, 1);
	return NULL;
}

/* Hands p to a new thread that serves what the client sent. */
static void wake(struct icpark *p)
{
	pthread_attr_t attr;
	pthread_t tid;
	int ret;

	release(p);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&serving, 1);
	atomic_fetch_add(&threads, 1);
	ret = pthread_create(&tid, &attr, serve_thread, p);
	pthread_attr_destroy(&attr);
	if (ret) {
		atomic_fetch_sub(&serving, 1);
		atomic_fetch_sub(&threads, 1);
		/* out of threads: this client is closed, the others keep going */
		log_warn("intercepted connection closed: cannot start a thread: %s", strerror(ret));
		p->ops->free(p);
	}
}

/* Serves what the client sent on the loop (ops.loop_begin). */
static void serve_here(struct icpark *p)
{
	release(p);
	if (!(p = p->ops->unpack(p)))
		return;
	hold(p);
	p->looping = true;
	p->ops->loop_begin(p);
}

static void handshake_failed(struct icpark *p, bool timed_out)
{
	release(p);
	p->ops->handshake_failed(p, timed_out);
	p->ops->free(p);
}

static void handshake_step(struct icpark *p)
{
	clear_errors();
	int n = SSL_do_handshake(p->ssl);
	if (n == 1) {
		p->handshaking = false;
		loop_timer_cancel(p->ag->loop, &p->timer);
		park(p);
		return;
	}
	int e = SSL_get_error(p->ssl, n);
	uint32_t ev = e == SSL_ERROR_WANT_READ ? EPOLLIN : e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0;
	if (!ev || !want(p, ev))
		handshake_failed(p, false);
}

/* A parked connection became readable: what did the client send? */
static void parked_input(struct icpark *p, uint32_t events)
{
	char c;
	clear_errors();
	int n = SSL_peek(p->ssl, &c, 1);
	if (n > 0) {
		serve_here(p);
		return;
	}
	int e = SSL_get_error(p->ssl, n);
	if (e == SSL_ERROR_WANT_READ && !(events & (EPOLLHUP | EPOLLERR)))
		return;   /* not a whole record yet, or a record that carried no data */
	if (e == SSL_ERROR_WANT_WRITE) {
		serve_here(p);  /* the serving I/O handles a write the read needs */
		return;
	}
	/* close_notify, EOF, a reset or a broken record: between requests,
	 * every end of the connection is a normal close */
	close_quietly(p, false);
}

static void on_event(struct loop_watch *w, uint32_t events)
{
	struct icpark *p = (struct icpark *)((char *)w - offsetof(struct icpark, w));
	if (p->looping)
		p->ops->loop_event(p, events);
	else if (p->handshaking)
		handshake_step(p);
	else
		parked_input(p, events);
}

static void on_timer(struct loop_timer *t, uint64_t now)
{
	struct icpark *p = (struct icpark *)((char *)t - offsetof(struct icpark, timer));
	if (p->looping)
		p->ops->loop_timer(p, now);
	else if (p->handshaking)
		handshake_failed(p, true);
	else
		close_quietly(p, true);
}

/* Waits on the loop for the client's next request (the connection is
 * loop-held): bytes OpenSSL already holds go straight to a thread. Before
 * the first request the header timeout applies, as it did on a thread. */
static void park(struct icpark *p)
{
	const struct config *cfg = p->ag->cfg;
	if (SSL_has_pending(p->ssl)) {
		serve_here(p);
		return;
	}
	if (!p->packed) {
		/* off the loop while its memory moves, then back */
		release(p);
		p = p->ops->pack(p);
		hold(p);
	}
	if (!want(p, EPOLLIN | EPOLLRDHUP)) {
		close_quietly(p, false);
		return;
	}
	uint64_t ms = p->served ? cfg->idle_timeout_ms : cfg->header_timeout_ms;
	if (loop_timer_set(p->ag->loop, &p->timer, loop_now_ms() + ms))
		close_quietly(p, false);
}

/* When the last serving thread is done, the buffers the burst used are
 * free in every thread's heap, where they would stay resident while the
 * connections idle: give them back (at most once a second, and never
 * while requests are served). */
static void trim_after_burst(void)
{
	uint64_t now = loop_now_ms();
	if (atomic_load(&serving) || now - trimmed_ms < 1000)
		return;
	trimmed_ms = now;
	malloc_trim(0);
}

/* The trim after parks: its timer already spaces them out. */
static void on_trim(struct loop_timer *t, uint64_t now)
{
	(void)t;
	trim_first = 0;
	if (atomic_load(&serving))
		return;   /* the hand-back of the last one trims */
	trimmed_ms = now;
	malloc_trim(0);
}

/* Connections parked on the loop free the buffers of the requests they
 * served: trim once parks stop for TRIM_QUIET_MS, and at least once a
 * second while they go on. */
static void trim_after_parks(struct agent *ag)
{
	uint64_t now = loop_now_ms(), due = now + TRIM_QUIET_MS;
	if (!trim_first)
		trim_first = now;
	if (due > trim_first + 1000)
		due = trim_first + 1000;
	trim_timer.fn = on_trim;
	if (loop_timer_set(ag->loop, &trim_timer, due))
		trim_first = 0;   /* no timer: the next park tries again */
}

static void on_handed_back(struct loop_watch *w, uint32_t events)
{
	eventfd_t n;
	struct icpark *q;
	(void)events;
	if (eventfd_read(w->fd, &n))
		return;
	pthread_mutex_lock(&back_lock);
	q = back_queue;
	back_queue = NULL;
	pthread_mutex_unlock(&back_lock);
	while (q) {
		struct icpark *p = q;
		q = q->qnext;
		p->served = true;
		hold(p);
		if (p->resume) {
			p->resume = false;
			p->looping = true;
			p->ops->loop_begin(p);
		} else {
			park(p);
		}
	}
	trim_after_burst();
}

int icpark_init(struct agent *ag)
{
	int ret;
	backw.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (backw.fd < 0)
		return -errno;
	backw.fn = on_handed_back;
	if ((ret = loop_add(ag->loop, &backw, EPOLLIN))) {
		close(backw.fd);
		backw.fd = -1;
		return ret;
	}
	pthread_mutex_lock(&back_lock);
	back_closed = false;
	pthread_mutex_unlock(&back_lock);
	return 0;
}

void icpark_shutdown(struct agent *ag)
{
	struct icpark *q;
	pthread_mutex_lock(&back_lock);
	back_closed = true;
	q = back_queue;
	back_queue = NULL;
	pthread_mutex_unlock(&back_lock);
	while (q) {
		struct icpark *p = q;
		q = q->qnext;
		p->ops->free(p);
	}
	while (held)
		close_quietly(held, false);
	loop_timer_cancel(ag->loop, &trim_timer);
	trim_first = 0;
	/* Serving threads finish their request (or their short wait before
	 * parking) and free their connection themselves: give them a moment,
	 * so that the process does not end under them. */
	for (int i = 0; i < SHUTDOWN_WAIT_MS / 10 && atomic_load(&threads); i++)
		usleep(10000);
	if (backw.fd >= 0) {
		loop_del(ag->loop, &backw);
		close(backw.fd);
		backw.fd = -1;
	}
}

void icpark_start(struct icpark *p, struct agent *ag, int fd, SSL *ssl, const struct icpark_ops *ops)
{
	p->w.fd = fd;
	p->w.fn = on_event;
	p->timer.fn = on_timer;
	p->ag = ag;
	p->ssl = ssl;
	p->ops = ops;
	p->events = 0;
	p->handshaking = true;
	p->served = false;
	p->packed = false;
	p->looping = false;
	p->resume = false;
	hold(p);
	if (loop_timer_set(ag->loop, &p->timer, loop_now_ms() + ag->cfg->header_timeout_ms)) {
		close_quietly(p, false);
		return;
	}
	/* the ClientHello is usually there already (the first flight was
	 * classified before the hand-over): no need to wait for epoll */
	handshake_step(p);
}

int icpark_watch(struct icpark *p, uint32_t events)
{
	return want(p, events) ? 0 : -EIO;
}

int icpark_timer(struct icpark *p, uint64_t due_ms)
{
	if (!due_ms) {
		loop_timer_cancel(p->ag->loop, &p->timer);
		return 0;
	}
	return loop_timer_set(p->ag->loop, &p->timer, due_ms);
}

void icpark_to_thread(struct icpark *p)
{
	p->looping = false;
	wake(p);
}

void icpark_idle(struct icpark *p)
{
	struct agent *ag = p->ag;
	p->looping = false;
	p->served = true;
	park(p);
	trim_after_parks(ag);
}

void icpark_close(struct icpark *p)
{
	p->looping = false;
	close_quietly(p, false);
}
