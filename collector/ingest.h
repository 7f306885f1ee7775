/* ingest: the agents' side of the collector. One epoll loop on one thread
 * serves every agent connection: mutual TLS 1.3 (client certificates from
 * the enrollment CA only), Hello (agent id == certificate CN, Ed25519 key
 * pinned on first use), then Batch frames, each parsed with hard limits,
 * signature- and chain-checked, committed, and only then acked.
 *
 * Owns: the listening socket, the connections and their buffers, the reject
 * policy (every refusal is acked with a reason, counted, and recorded in the
 * store as a security event of kind "ingest_rejected"). Must never: ack
 * before the store committed, allocate a frame buffer larger than the bytes
 * that actually arrived, or let one connection's bad input affect another.
 * The store passed in is used only from the loop's thread. */
#ifndef VIGIL_INGEST_H
#define VIGIL_INGEST_H

#include <signal.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include "store.h"

struct forward;
struct loop;

struct ingest_opts {
	const char *listen;        /* HOST:PORT */
	SSL_CTX *ctx;              /* borrowed; from ingest_server_ctx(..., true) */
	struct store *store;       /* borrowed; only the loop thread touches it */
	const char *store_url;     /* the writer thread opens its own handle */
	unsigned max_conns;
	unsigned retain_days;      /* 0 = off; enforced at start and hourly */
	struct forward *fwd;       /* optional, borrowed: syslog forward of committed events */
	const char *host;          /* this collector's name, for its own records */
	struct loop *loop;         /* optional, borrowed: the collector's one event loop
	                            * (NULL: ingest makes its own) */
};

struct ingest;

int ingest_new(const struct ingest_opts *o, struct ingest **out, char *err, size_t errlen);
/* Runs the loop (and whatever else shares it: the API) until *stop
 * becomes non-zero; *stop is looked at once a second. */
int ingest_run(struct ingest *g, volatile sig_atomic_t *stop);
void ingest_free(struct ingest *g);
/* The bound port (useful with port 0). */
int ingest_port(const struct ingest *g);

/* A TLS 1.3 server context for cert/key; require_client: demand a client
 * certificate verified against client_ca. */
SSL_CTX *ingest_server_ctx(const char *cert, const char *key, const char *client_ca, bool require_client,
			   char *err, size_t errlen);
/* Binds and listens on HOST:PORT (IPv4, IPv6 in brackets, or a name). */
int ingest_listen(const char *hostport, int backlog, char *err, size_t errlen);

#endif
