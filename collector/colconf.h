/* colconf: the collector's YAML configuration (CONTRACT.md keys plus the
 * documented extras). Every key is checked; unknown keys and bad values are
 * "file:line: reason" errors. Owns the strings it returns (colconf_free). */
#ifndef VIGIL_COLCONF_H
#define VIGIL_COLCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pricing.h"

/* analyst reads events; admin also enrolls and revokes; metrics may only
 * scrape /metrics. */
enum colconf_role { ROLE_METRICS = 1, ROLE_ANALYST = 2, ROLE_ADMIN = 3 };

struct colconf_token {
	char *token;
	char *name;
	enum colconf_role role;
};

/* One continuous forwarding target (forward: list). */
enum colconf_fwd_format { FWD_OTLP = 1, FWD_OCSF, FWD_HEC, FWD_SYSLOG };
struct colconf_forward {
	char *name;               /* [A-Za-z0-9._-]{1,64}, unique: names its cursor file */
	enum colconf_fwd_format format;
	char *url;                /* otlp, ocsf, hec: http:// or https:// */
	char *token;              /* hec: required (Splunk <token>); otlp/ocsf: optional Bearer */
	char *address;            /* syslog: HOST:PORT */
	bool tls;                 /* syslog: transport tls (RFC 5425) rather than tcp (RFC 6587) */
	char *ca;                 /* trust anchor for https/tls (default: the system's) */
	unsigned batch;           /* events per request (default 500) */
};

/* alerts: thresholds of the detectors (alerts.h); enabled by the section. */
struct colconf_alerts {
	bool enabled;
	unsigned volume_window_s;     /* one volume window (default 3600) */
	double volume_factor;         /* above factor x own mean (default 5) */
	double volume_sigma;          /* and above mean + sigma x deviation (default 4) */
	uint64_t volume_min_tokens;   /* and at least this many tokens (default 20000) */
	unsigned volume_history;      /* past windows needed first (default 6) */
	unsigned new_use_after_s;     /* a user's history needed for new_use (default 86400) */
	unsigned burst_count;         /* blocks or findings (default 5) ... */
	unsigned burst_window_s;      /* ... within this (default 600) */
	double injection_score;       /* at or above (default 0.8) */
	unsigned silent_after_s;      /* an agent's silence (default 900) */
};

struct colconf {
	char *path;
	char *listen;            /* agent ingest, mTLS: HOST:PORT (default 0.0.0.0:7443) */
	char *api;               /* HTTPS query API: HOST:PORT (default 127.0.0.1:7444) */
	char *store;             /* sqlite:PATH | clickhouse://HOST:PORT/DB */
	char *tls_cert, *tls_key;/* the collector's server certificate and key */
	char *client_ca;         /* the enrollment CA certificate (verifies agents) */
	char *client_ca_key;     /* its key, for enroll (default: client_ca with .crt -> .key) */
	struct colconf_token *tokens;
	size_t n_tokens;
	unsigned retain_days;    /* 0 = keep forever */
	unsigned cert_days;      /* validity of enrolled agent certificates (default 30) */
	unsigned max_agents;     /* concurrent ingest connections (default 1024) */
	char *syslog_forward;    /* optional HOST:PORT (UDP) for streaming RFC 5424 forward */
	char *metrics;           /* optional plain-HTTP HOST:PORT for /metrics (also on the API) */
	struct colconf_forward *forwards;
	size_t n_forwards;
	char *forward_state;
	struct price *prices;            /* common/pricing.h */
	size_t n_prices;
	char currency[4];        /* ISO 4217 of every price (one table, one currency) */
	struct colconf_alerts alerts;     /* directory of the forwarders' cursors (default: the SQLite store's) */
	int log_level;           /* 0..3, default 2 */
};

/* Loads and validates path. -EINVAL with "file:line: reason" in err. */
int colconf_load(const char *path, struct colconf **out, char *err, size_t errlen);
void colconf_free(struct colconf *c);
/* The token's entry, or NULL (constant-time comparison per token). */
const struct colconf_token *colconf_token_find(const struct colconf *c, const char *token);

/* Cost of input/output tokens (negative = unknown, counted as 0) at the
 * first matching price; false when no price matches or no token is known.
 * cached_tokens are the part of input_tokens the provider read from its
 * prompt cache: priced at cached_input where the row has one, else as
 * input. */
bool colconf_cost(const struct colconf *c, const char *provider, const char *model, int64_t input_tokens,
		  int64_t output_tokens, int64_t cached_tokens, double *cost);

#endif
