/* api: the SOC's HTTPS query API. Bearer tokens from the config with roles:
 * analyst reads (events, top, verify, agents), admin also enrolls and
 * revokes, metrics may only scrape. /metrics needs no token (counters only).
 *
 *   GET  /api/v1/events?since=24h&until=&user=&host=&finding=&action=&exe=
 *            &provider=&model=&kind=&agent=&rule=&limit=&format=table|json|csv&cursor=
 *                                      a full page carries X-Vigil-Next: the cursor= of the next
 *   GET  /api/v1/top?by=users|exes|providers|findings|hosts|models|actions|agents
 *            &since=7d&limit=&format=...
 *   GET  /api/v1/verify[?agent=ID]     text report; header X-Vigil-Verify: intact|broken
 *   GET  /api/v1/event?agent=&boot=&seq=  one event (JSON) with its chain position
 *   GET  /api/v1/whoami                the token's name and role (the console's login)
 *   GET  /api/v1/agents[?format=]      json adds version, silent, unclean_stops, tamper, gaps
 *   GET  /api/v1/inventory?since=&user=&host=&exe=&provider=&format=
 *                                      (user, exe, provider, host) with counts and review state
 *   POST /api/v1/review?exe=&provider=&state=unreviewed|approved|unapproved
 *                                      admin; recorded as a kind "review" event
 *   POST /api/v1/enroll?agent_id=ID    admin: JSON {agent_id, key_pem, cert_pem, ca_pem}
 *   POST /api/v1/revoke?agent_id=ID    admin (&undo=1 lifts it)
 *   GET  /metrics                      Prometheus text
 *   GET  /, /index.html, /console.js, /console.css   the web console (console.h), no token
 *   POST from a browser: refused unless same-origin (Origin, Sec-Fetch-Site)
 *
 * Owns: its listening socket, its event loop thread and connections, a
 * worker pool (threads started on demand, at most 4) that runs the
 * requests, its own store handle (separate from ingest's, serialised
 * between workers by one mutex; verify opens a further read handle so that
 * it never holds that mutex). Must never: log
 * a token, answer without checking the role first, or echo a query parameter
 * unescaped into a JSON or CSV body. */
#ifndef VIGIL_API_H
#define VIGIL_API_H

#include <openssl/ssl.h>
#include "colconf.h"
#include "store.h"

struct loop;

struct api_opts {
	const char *listen;
	SSL_CTX *ctx;                 /* borrowed, server-only TLS */
	const char *store_url;        /* the API opens its own handle */
	const struct colconf *conf;   /* borrowed: tokens, CA paths, cert_days */
	struct loop *loop;            /* optional, borrowed: the collector's one event loop,
	                               * run by the caller (NULL: the API runs its own thread) */
};

struct api;
int api_start(const struct api_opts *o, struct api **out, char *err, size_t errlen);
/* Stops accepting and closes idle connections; requests being read or
 * answered finish (bounded by their deadlines), queued ones are answered
 * 503; then the workers end, and only then does the store close. With a
 * shared loop: call it on the loop's thread once loop_run returned (it
 * runs the loop again until the API's connections are gone). */
void api_stop(struct api *a);
/* Swaps in a reloaded configuration (takes ownership of c): new requests
 * see its tokens at once, requests in flight finish under the old one. */
void api_reload(struct api *a, struct colconf *c);
int api_port(const struct api *a);

/* Output helpers shared with `vigil-collector export` (and tested). */
enum api_format { FMT_TABLE, FMT_JSON, FMT_CSV };
int api_format_parse(const char *s, enum api_format *out);
/* c: the pricing table for the cost column (borrowed). */
void api_render_events(const struct store_rows *r, const struct colconf *c, enum api_format fmt, FILE *out);
/* cost: one per row, or NULL for no cost column. */
void api_render_top(const char *what, const struct store_top_row *rows, size_t n, const double *cost,
		    const char *currency, enum api_format fmt, FILE *out);
/* "24h", "7d", "30m", "90s", "2w" -> microseconds; -EINVAL otherwise. */
int api_parse_duration(const char *s, int64_t *us);

#endif
