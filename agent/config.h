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

/* unwatched_sni: what a TLS connection to an endpoint address gets when its
 * server name is not watched (CDNs host other sites on the same address). */
enum config_unwatched {
	CONFIG_UNWATCHED_INTERCEPT = 0,   /* decrypt; each request's Host must be the SNI (default) */
	CONFIG_UNWATCHED_PASSTHROUGH = 1, /* relay undecrypted, audited (accepts domain fronting) */
	CONFIG_UNWATCHED_BLOCK = 2,       /* refuse with a TLS alert, audited */
};

/* A proxy address from the configuration: host normalised (see proxyhead.h). */
struct config_hostport {
	char *host;                    /* a DNS name or an address literal (IPv6 without brackets) */
	uint16_t port;
};

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
	char **mcp_servers;            /* remote MCP servers (exact, or "*.suffix"); also
					* appended to endpoints at load, so they are watched */
	size_t n_mcp_servers;
	char **mcp_commands;           /* programs that are local (stdio) MCP servers, by file
					* name, besides the built-in launchers (mcplaunch.c) */
	size_t n_mcp_commands;
	char **webapps_exclude;        /* web app hosts (webapps.h catalog) left unwatched */
	size_t n_webapps_exclude;
	char **passthrough;            /* watched domains never decrypted */
	size_t n_passthrough;
	struct sockaddr_storage *target_addrs;  /* target_addresses: always redirected */
	size_t n_target_addrs;
	uint16_t *target_ports;        /* ports redirected on target addresses (default 443, 80) */
	size_t n_target_ports;
	int unwatched_sni;             /* unwatched_sni: enum config_unwatched */
	struct config_hostport *proxies;   /* proxies: explicit HTTP proxies the clients use */
	size_t n_proxies;
	struct config_hostport upstream_proxy;   /* upstream_proxy: agent's own egress (host NULL = direct) */
	/* "Basic <base64>" from upstream_proxy_auth:, never logged; NULL = none.
	 * Read at load (the agent may drop privileges later). */
	char *upstream_proxy_auth;
	char *policy;
	char *audit_log;               /* NULL = none */
	char *spool_dir;
	char *agent_id;                /* default: the enrolled certificate's CN, else hostname */
	int agent_id_line;             /* line of agent_id: in the file, 0 = not set */
	char *user;                    /* run as this user once attached (NULL = stay root, capabilities dropped) */
	struct {
		char *address, *ca, *cert, *key;
	} collector;
	/* audit pipeline (agent/audit/spool.c, agent/audit/ship.c) */
	uint64_t spool_max_bytes;      /* spool_max_bytes: full spool drops oldest + gap event */
	int spool_fsync;               /* spool_fsync: CONFIG_FSYNC_* (default batch) */
	uint32_t ship_batch_events;    /* ship_batch_events: events per batch, at most */
	uint32_t ship_interval_ms;     /* ship_interval: a partial batch waits at most this */
	/* limits */
	uint32_t max_head_bytes;
	uint32_t max_headers;
	uint64_t max_body_bytes;
	uint64_t ws_max_frame, ws_max_message; /* WebSocket limits (ws.h) */
	uint64_t max_buffered_bytes;   /* request bytes all connections may buffer together */
	uint32_t header_timeout_ms;
	uint32_t clienthello_timeout_ms; /* limits.clienthello_timeout: first flight must be complete by then */
	uint32_t idle_timeout_ms;
	uint32_t ws_idle_timeout_ms;   /* a WebSocket session with no frame either way (voice sessions idle long) */
	uint32_t upstream_timeout_ms;  /* connect + TLS handshake + response head */
	uint32_t max_connections;
	uint32_t dns_min_ttl_s, dns_max_ttl_s;
	bool dns_learning;             /* dns_learning: learn target addresses from clients' DNS answers */
	bool first_flight_guard;       /* first_flight_guard: refuse a watched name sent to an address not captured */
	bool quic_all;                 /* quic: all (refuse UDP/443 everywhere) or targets */
	int log_level;
	/* reversible tokens (agent/content/vault.c), kept per user and program */
	char *justify_socket;          /* justify_socket: where `vigil justify` reaches the agent */
	uint32_t justify_ttl_ms;       /* justify_ttl: how long a justification exempts */
	uint32_t vault_ttl_ms;         /* vault_ttl: a value unused this long is wiped */
	uint32_t vault_max_entries;    /* vault_max_entries: values per user and program */
	/* on_rejected_ca: after a program's client refused the interception
	 * certificate for a host, block (keep intercepting: it keeps failing,
	 * audited each time) or passthrough (relay that program and host
	 * undecrypted for rejected_ca_ttl, audited as rejected_ca_exception). */
	bool rejected_ca_passthrough;
	uint32_t rejected_ca_ttl_ms;   /* rejected_ca_ttl (default 1h, at most 24h) */
	/* http2: HTTP/2 toward clients (agent/proxy/h2.c) */
	struct {
		bool enabled;                  /* http2.enabled: offer h2 in ALPN */
		uint32_t max_concurrent_streams;
		uint32_t max_header_list_bytes;
		uint32_t max_resets_per_second;
		uint32_t max_continuations;
		uint32_t header_table_size;
	} h2;
};

/* Loads and validates path. Returns 0 and a new config, or -errno with
 * "file:line: reason" in err. */
int config_load(const char *path, struct config **out, char *err, size_t errlen);
void config_free(struct config *c);

/* The agent's identity must be the one its collector certificate names
 * (the collector refuses every batch otherwise): without agent_id, takes
 * the CN of collector.cert; with one that differs, fails naming both.
 * No collector: agent_id (or the hostname) stands. 0 or -errno with
 * "file:line: reason" in err. Separate from config_load so that loading
 * stays a pure parse (the certificate is a file of its own). */
int config_resolve_identity(struct config *c, char *err, size_t errlen);

/* True if sni is watched (exact, or matches a "*.suffix" entry). */
bool config_host_watched(const char *const *list, size_t n, const char *host);

/* The keyword of an unwatched_sni mode ("intercept", ...). */
const char *config_unwatched_name(int mode);

/* Where `vigil justify` reaches the agent unless justify_socket says otherwise. */
#define CONFIG_JUSTIFY_SOCKET "/run/vigil/justify.sock"
#define CONFIG_COMMAND_MAX 64           /* mcp_commands: a file name, at most */

/* The built-in catalog of LLM API hosts used when endpoints: is absent. */
extern const char *const config_default_endpoints[];

/* Finds the cgroup2 mount point in /proc/mounts. Returns 0 or -ENOENT. */
int config_cgroup2_root(char *out, size_t outlen);

#endif
