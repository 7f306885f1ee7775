/* icpark: an intercepted client connection while no thread serves it. The
 * client's TLS handshake runs here, on the event loop (non-blocking, the
 * header timeout a loop timer), and so does the wait for each next request
 * of a keep-alive connection (parked: the idle timeout a loop timer, the
 * SSL object's buffers released). When request bytes arrive the owner
 * serves them on the loop too (ops.loop_begin, then the icpark_* calls
 * below); what would block goes to a thread (icpark_to_thread,
 * ops.serve), which hands the connection back when done. An idle
 * connection so costs its socket, its SSL object and its owner's struct
 * packed (ops.pack), not a thread.
 *
 * Ownership: exactly one side holds a connection at a time. The loop
 * thread from icpark_start on (serving on the loop included); a thread
 * from the moment the loop starts it; the loop again once the thread
 * handed it back (a locked queue
 * and an eventfd: the loop is the only one that touches the epoll watch,
 * the timer and the list of loop-held connections).
 *
 * Must never: start a thread for a client that only handshakes, idles or
 * closes; wake the loop periodically for parked connections; lose track of
 * a connection at shutdown. */
#ifndef VIGIL_ICPARK_H
#define VIGIL_ICPARK_H

#include <stdbool.h>
#include <stdint.h>
#include "loop.h"

struct agent;
typedef struct ssl_st SSL;
struct icpark;

struct icpark_ops {
	/* Loop thread: the client's handshake failed (timed_out: the header
	 * timeout passed first). free follows. */
	void (*handshake_failed)(struct icpark *p, bool timed_out);
	/* Loop thread, p off the loop (watch and timer removed): packs the
	 * idle connection into as little memory as it can, in the loop's
	 * heap. Returns where p is now (p itself, or a new allocation and p
	 * freed). */
	struct icpark *(*pack)(struct icpark *p);
	/* A thread of its own: serves what the client sent. Returns the
	 * connection to park again (nothing of a next request buffered;
	 * packed or not), or NULL when it is done and freed. */
	struct icpark *(*serve)(struct icpark *p);
	/* Closes the socket and frees the connection (packed or not). */
	void (*free)(struct icpark *p);
	/* Loop thread: the client sent data (or a serving thread handed p
	 * back with an exchange to go on with, p->resume): serve it here,
	 * driving p through icpark_watch/_timer/_to_thread/_idle/_close.
	 * p is unpacked and held; its watch and timer are off. */
	void (*loop_begin)(struct icpark *p);
	/* Loop thread, while serving here: the client socket's events, and
	 * the timer (icpark_timer). */
	void (*loop_event)(struct icpark *p, uint32_t events);
	void (*loop_timer)(struct icpark *p, uint64_t now);
	/* Loop thread: unpacks a packed p into a live connection (p freed)
	 * and returns it; p itself when not packed; NULL (p freed, the
	 * connection closed) when out of memory. */
	struct icpark *(*unpack)(struct icpark *p);
};

/* Embedded in the owner's connection struct (container_of to get back). */
struct icpark {
	struct loop_watch w;           /* the client socket */
	struct loop_timer timer;       /* header timeout (handshake), idle timeout (parked) */
	struct agent *ag;              /* borrowed */
	SSL *ssl;                      /* borrowed: the owner frees it */
	const struct icpark_ops *ops;
	uint32_t events;               /* what the watch waits for now (0: not on the loop) */
	bool handshaking;
	bool served;                   /* a request was served: idle_timeout, not header_timeout */
	bool packed;                   /* the owner's: p heads a packed connection (ops.pack) */
	bool looping;                  /* served on the loop now (ops.loop_*) */
	bool resume;                   /* handed back mid-connection: serve on (ops.loop_begin), not park */
	struct icpark *prev, *next;    /* connections the loop holds (loop thread only) */
	struct icpark *qnext;          /* the hand-back queue (under its lock) */
};

/* Sets up the hand-back queue on ag->loop. Loop thread, once. 0 or -errno. */
int icpark_init(struct agent *ag);
/* Frees every connection the loop holds or that is queued to it; a thread
 * that hands one back later frees it itself, and serving threads get up to
 * 2 s to do so. After the loop stopped. */
void icpark_shutdown(struct agent *ag);

/* Loop thread. Takes the accepted client (fd, non-blocking; ssl in accept
 * state on it) and runs its TLS handshake on the loop. Always
 * takes ownership: on a failure the ops are called (possibly before it
 * returns), so the caller must not touch p afterwards. */
void icpark_start(struct icpark *p, struct agent *ag, int fd, SSL *ssl, const struct icpark_ops *ops);

/* ---- while p is served on the loop (p->looping; loop thread only) ---- */

/* The client watch waits for events (0: off the loop). 0 or -errno. */
int icpark_watch(struct icpark *p, uint32_t events);
/* ops.loop_timer runs at due_ms (0: cancel). 0 or -ENOMEM. */
int icpark_timer(struct icpark *p, uint64_t due_ms);
/* A thread of its own goes on (ops.serve); it hands p back when done. */
void icpark_to_thread(struct icpark *p);
/* Between requests, quiet: parks p (packed, the idle timeout its timer).
 * Moves p's memory: never from an epoll callback of a connection with a
 * second watch (only from ops.loop_timer). */
void icpark_idle(struct icpark *p);
/* Closes and frees p (ops.free). The same rule as icpark_idle. */
void icpark_close(struct icpark *p);

#endif
