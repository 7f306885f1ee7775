/* alerts: unusual behaviour, detected at the collector from each identity's
 * own history, each alert an event (kind "alert", rule = the detector) in
 * the store, so that it is queried (`vigil alerts`), exported and forwarded
 * like any other.
 *
 * Detectors, over events in event time:
 *   volume     a user's or a program's tokens in one window far above its
 *              own baseline (EWMA mean and deviation of its past active
 *              windows): a runaway agent loop;
 *   new_use    a (program, provider) pair never seen for a user who has
 *              history older than new_use_after;
 *   burst      burst_count blocked or finding events of one user within
 *              burst_window;
 *   injection  an injection score at or above injection_score;
 *   tamper     an agent's tamper or bypass record;
 *   silent     an agent with no event for silent_after (alerts_tick).
 *
 * The detector (alerts_observe / alerts_tick) is pure: it calls back with
 * alert events and touches no store, so tests drive it with generated
 * traffic. alerts_start runs it on a thread over the store in commit order
 * (store_feed), with a cursor file like the forwarders; on start it replays
 * the stored history to rebuild baselines, emitting only past the cursor.
 * Memory: one small record per user, program, (user, program, provider)
 * and agent. Must never: alert on its own records (kind alert, review). */
#ifndef VIGIL_ALERTS_H
#define VIGIL_ALERTS_H

#include <stdbool.h>
#include <stdint.h>
#include "colconf.h"
#include "store.h"

struct alerts;
/* Receives one alert (kind "alert"; strings valid during the call only). */
typedef void (*alerts_cb)(void *ctx, const struct store_event *alert);

/* c: thresholds (borrowed for the detector's life). */
struct alerts *alerts_new(const struct colconf_alerts *c);
void alerts_free(struct alerts *a);
/* Feeds one event; emit false while replaying history (baselines only). */
void alerts_observe(struct alerts *a, const struct store_event *e, bool emit, alerts_cb cb, void *ctx);
/* An agent was heard from at t_us (its last batch, even an empty one): the
 * silent detector's input besides the events themselves. */
void alerts_agent_seen(struct alerts *a, const char *agent_id, const char *host, int64_t t_us);
/* Time-driven checks (silent agents) at now_us. */
void alerts_tick(struct alerts *a, int64_t now_us, bool emit, alerts_cb cb, void *ctx);

/* The detector thread over conf->store (SQLite): -EINVAL with a reason in
 * err when it cannot run. Stopped and joined by alerts_stop (NULL ok). */
struct alerts_thread;
int alerts_start(const struct colconf *conf, struct alerts_thread **out, char *err, size_t errlen);
void alerts_stop(struct alerts_thread *t);

#endif
