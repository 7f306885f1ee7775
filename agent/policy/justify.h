/* justify: the `warn` action's memory. A warned request gets an id; the
 * user who was warned runs `vigil justify ID "reason"`, which reaches the
 * agent over a local unix socket (justify_socket) that names the caller by
 * SO_PEERCRED; the agent then exempts that user and program from that rule
 * for justify_ttl. Both the warning (the request's own event, action warn)
 * and the justification (an event of kind justification) are audited.
 *
 * Owns: the table of warnings and exemptions (bounded, oldest evicted),
 * the socket and its thread. Must never: let a caller justify a warning
 * issued to another uid, trust anything the caller says about itself, or
 * block the exchange threads on the socket. */
#ifndef VIGIL_JUSTIFY_H
#define VIGIL_JUSTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JUSTIFY_ID_LEN 17          /* 16 hex digits + NUL */
#define JUSTIFY_REASON_MAX 200

struct agent;
struct justify;

/* Opens the socket (mode 0666: any local user may ask; the kernel says
 * who asked) and starts its thread. ttl_ms bounds an exemption. */
int justify_start(struct agent *ag, const char *path, uint64_t ttl_ms, struct justify **out, char *err,
		  size_t errlen);
void justify_stop(struct justify *j);   /* NULL ok: closes, joins, unlinks */

/* A warning for uid's program exe under rule: writes its id. */
void justify_warn(struct justify *j, int64_t uid, const char *exe, const char *rule, char id[JUSTIFY_ID_LEN]);
/* Whether uid's program exe holds a live exemption from rule; writes the
 * justified warning's id. */
bool justify_exempt(struct justify *j, int64_t uid, const char *exe, const char *rule, char id[JUSTIFY_ID_LEN]);

/* The grant itself (what the socket does), exposed for tests: 0, -ENOENT
 * (unknown or expired id), -EPERM (issued to another uid). */
int justify_grant(struct justify *j, const char *id, int64_t uid, uint64_t now_ms);

#endif
