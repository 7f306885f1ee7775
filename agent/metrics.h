/* metrics: the agent's Prometheus endpoint (config `metrics: ADDR:PORT`,
 * loopback by default): connection and request counters, spool and
 * shipping state. One short response per connection, served from the event
 * loop; nothing in it identifies a user or carries content. */
#ifndef VIGIL_METRICS_H
#define VIGIL_METRICS_H

#include "agent.h"

/* Starts serving on the listening socket lfd (non-blocking). */
int metrics_listen(struct agent *ag, int lfd);
/* Counts one audited request by its action ("allow", "alert", "redact", "block"). */
void metrics_count_action(struct agent *ag, const char *action);
/* Counts one refusal (a connection closed or a request refused) by reason. */
void metrics_count_reason(struct agent *ag, enum reason why);
/* The exposition text (for tests); returns its length, out NUL-terminated. */
size_t metrics_render(struct agent *ag, char *out, size_t outlen);

#endif
