/* config: the agent's YAML configuration (keys in shared CONTRACT.md plus
 * the ones documented in README.md). Loading never half-applies: a config
 * is built whole, validated, then handed over; on any mistake the caller
 * gets "file:line: reason" and keeps what it had. */
#ifndef VIGIL_CONFIG_H
#define VIGIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

enum { CONFIG_FSYNC_ALWAYS = 0, CONFIG_FSYNC_BATCH = 1, CONFIG_FSYNC_NEVER = 2 };

struct config {
	char *path;                    /* the file it came from */
	struct sockaddr_in listen4;    /* listen: (IPv4) */
	struct sockaddr_in6 listen6;   /* listen6: (port 0 = no IPv6 listener) */
	struct sockaddr_in metrics;    /* metrics: Prometheus endpoint (port 0 = off) */
	char *cgroup;                  /* "auto" resolved to the cgroup2 mount */
	bool fail_closed;              /* fail_mode: closed */
	char *pin_dir;                 /* pin_dir: bpffs folder for closed mode */
	char *ca_cert, *ca_key;
	char *upstream_ca;             /* "system" or a PEM file */
	char **endpoints;              /* watched domains (exact, or "*.suffix") */
	size_t n_endpoints;
	char **passthrough;            /* watched domains never decrypted */
	size_t n_passthrough;
	struct sockaddr_storage *target_addrs;  /* target_addresses: always redirected */
	size_t n_target_addrs;
	uint16_t *target_ports;        /* ports redirected on target addresses */
	size_t n_target_ports;
	char *policy;
	char *audit_log;               /* NULL = none */
	char *spool_dir;
	char *agent_id;                /* default: hostname */
	char *user;                    /* run as this user once attached (NULL = stay root, capabilities dropped) */
	struct {
		char *address, *ca, *cert, *key;
	} collector;
	/* audit pipeline (agent/spool.c, agent/ship.c) */
	uint64_t spool_max_bytes;      /* spool_max_bytes: full spool drops oldest + gap event */
	int spool_fsync;               /* spool_fsync: CONFIG_FSYNC_* (default batch) */
	uint32_t ship_batch_events;    /* ship_batch_events: events per batch, at most */
	uint32_t ship_interval_ms;     /* ship_interval: a partial batch waits at most this */
	/* limits */
	uint32_t max_head_bytes;
	uint32_t max_headers;
	uint64_t max_body_bytes;
	uint32_t header_timeout_ms;
	uint32_t idle_timeout_ms;
	uint32_t upstream_timeout_ms;  /* connect + TLS handshake + response head */
	uint32_t max_connections;
	uint32_t dns_min_ttl_s, dns_max_ttl_s;
	bool dns_learning;             /* dns_learning: learn target addresses from clients' DNS answers */
	bool first_flight_guard;       /* first_flight_guard: refuse a watched name sent to an address not captured */
	int log_level;
};

/* Loads and validates path. Returns 0 and a new config, or -errno with
 * "file:line: reason" in err. */
int config_load(const char *path, struct config **out, char *err, size_t errlen);
void config_free(struct config *c);

/* True if sni is watched (exact, or matches a "*.suffix" entry). */
bool config_host_watched(const char *const *list, size_t n, const char *host);

/* The built-in catalog of LLM API hosts used when endpoints: is absent. */
extern const char *const config_default_endpoints[];

/* Finds the cgroup2 mount point in /proc/mounts. Returns 0 or -ENOENT. */
int config_cgroup2_root(char *out, size_t outlen);

#endif
