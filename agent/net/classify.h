/* classify: what the first bytes of a redirected connection are, before
 * the agent decides anything. A connection to an LLM endpoint address must
 * show, within a short deadline, either a complete TLS ClientHello with a
 * valid server name or a complete plain-HTTP request head; everything else
 * (no SNI, a bad name, a hello that never completes, bytes that are neither
 * TLS nor HTTP) is a refusal with a reason. There is no "unknown, relay it"
 * outcome: a client must not be able to choose "not inspected" by staying
 * silent, splitting its hello forever or speaking another protocol.
 *
 * Pure: no I/O, no allocation; the caller peeks (MSG_PEEK) and decides
 * (conn.c). Watched or not is the caller's question too. */
#ifndef VIGIL_CLASSIFY_H
#define VIGIL_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "audit/reason.h"

enum classify_kind {
	CLASSIFY_NEED_MORE,   /* a prefix of a hello or of a request head: peek again */
	CLASSIFY_TLS,         /* a complete ClientHello; name = its normalised SNI */
	CLASSIFY_HTTP,        /* a complete plain-HTTP request head; name = normalised Host or "" */
	CLASSIFY_REFUSE,      /* reason says why; tls/http say what the client spoke */
};

struct classify_result {
	enum classify_kind kind;
	enum reason reason;       /* CLASSIFY_REFUSE */
	bool tls, http;           /* the client spoke TLS / HTTP (shape of the refusal) */
	int http_status;          /* CLASSIFY_REFUSE with http: the status to answer */
	char name[256];           /* SNI or Host (normalised), "" if none seen */
	char method[16];          /* CLASSIFY_HTTP */
	char path[256];           /* CLASSIFY_HTTP: query string removed (it can carry keys) */
};

/* Classifies buf[0..len), the bytes peeked so far. final: no more bytes
 * will come in time (the deadline passed) or will fit (the peek buffer is
 * full, full = true); an incomplete hello or head is then refused. */
void classify_first_flight(const uint8_t *buf, size_t len, bool final, bool full,
			   struct classify_result *r);

#endif
