/* audit: the agent's audit events. An event is filled by the code that saw
 * the connection or request, then audit_emit() stamps it (time, event id,
 * sequence, hash chain) and writes it out. Events carry finding types and
 * counts, never raw values. Thread-safe. */
#ifndef VIGIL_AUDIT_H
#define VIGIL_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_MAX_FINDING_TYPES 32

struct audit_finding {
	const char *type;     /* borrowed, e.g. "EMAIL" */
	uint32_t count;
};

/* All string pointers are borrowed for the duration of audit_emit(). */
struct audit_event {
	const char *kind;     /* request | connection | bypass | gap | agent_start | agent_stop | ... */
	/* identity (from the kernel) */
	const char *user;
	int64_t uid, gid;     /* -1 = unknown */
	int64_t pid, tid;
	const char *comm, *exe, *cgroup;
	/* destination */
	const char *dst_ip;
	uint32_t dst_port;
	const char *sni;
	/* request */
	const char *provider, *method, *path, *model;
	bool stream;
	const char *action, *rule, *reason;
	struct audit_finding findings[AUDIT_MAX_FINDING_TYPES];
	unsigned n_findings;
	double injection_score;   /* < 0 = not computed */
	int status;               /* HTTP status, 0 = none */
	uint64_t bytes_up, bytes_down;
	int64_t prompt_tokens, completion_tokens;   /* -1 = unknown */
	uint64_t latency_ms;
	const char *error;        /* why a connection failed, if it did */
	const char *policy_hash;
};

struct audit;

struct audit_opts {
	const char *agent_id;     /* copied */
	const char *log_path;     /* JSON lines; NULL = none (copied) */
	const char *state_dir;    /* where the sequence and chain head persist; NULL = none */
};

int audit_open(const struct audit_opts *o, struct audit **out, char *err, size_t errlen);
void audit_close(struct audit *a);   /* accepts NULL */

/* Initializes ev with "unknown" markers (uid -1, tokens -1, score -1). */
void audit_event_init(struct audit_event *ev, const char *kind);

/* Stamps and writes ev. Returns the sequence number given, or 0 on error. */
uint64_t audit_emit(struct audit *a, const struct audit_event *ev);

/* Reopens the log file (after rotation; SIGHUP). */
int audit_reopen(struct audit *a);

#endif
