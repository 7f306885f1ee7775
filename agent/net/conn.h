/* conn: the per-connection state machine on the event loop for every
 * redirected connection: accept, find origin and identity, peek the
 * ClientHello, then either hand the socket to the interceptor (watched SNI)
 * or relay it untouched to the original destination with splice(2). */
#ifndef VIGIL_CONN_H
#define VIGIL_CONN_H

#include "agent.h"

/* Starts accepting on the listening socket lfd (non-blocking). */
int conn_listen(struct agent *ag, int lfd);
/* Stops accepting on lfd (the caller closes it); connections already
 * accepted go on. Returns 0 or -ENOENT. */
int conn_unlisten(struct agent *ag, int lfd);
/* Closes every connection (shutdown). */
void conn_close_all(struct agent *ag);

#endif
