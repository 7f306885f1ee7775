/* forwarder: continuous, durable forwarding of stored events to SIEM
 * targets (the forward: list of collector.yaml): OTLP/HTTP logs, OCSF over
 * HTTP (NDJSON), Splunk HEC, and syslog over TCP (RFC 6587) or TLS
 * (RFC 5425), both with octet-counting framing.
 *
 * Each target has its own thread and its own store handle and reads the
 * store in commit order (store_feed) from a cursor kept in a file
 * (forward_state/NAME.cursor, replaced atomically after each delivered
 * batch). So a restart resumes where delivery stopped: nothing is lost,
 * and at most the batch in flight at a crash is sent twice (at least once).
 * A target that is down is retried with exponential backoff (0.5 s up to
 * 30 s) and holds at most one batch (`batch` events) in memory; the store
 * is the queue.
 *
 * Must never: block ingest (it only reads the store), drop a batch the
 * target did not accept, or log a target's token. */
#ifndef VIGIL_FORWARDER_H
#define VIGIL_FORWARDER_H

#include <stddef.h>
#include "colconf.h"

struct forwarder;

/* Starts one thread per target in c->forwards (borrowed until
 * forwarder_stop). -EINVAL with a reason in err if the store keeps no
 * commit order or the state directory is unusable. */
int forwarder_start(const struct colconf *c, struct forwarder **out, char *err, size_t errlen);
/* Stops and joins every thread (a request in flight ends within its
 * timeout); accepts NULL. */
void forwarder_stop(struct forwarder *f);

#endif
