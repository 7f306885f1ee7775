/* enroll: the collector's PKI. `pki init` makes the enrollment CA and the
 * collector's server certificate; enroll issues an agent its key and a
 * short-lived client certificate whose CN is the agent id (the id ingest
 * trusts). Must never: issue for a revoked id, for an id outside
 * [A-Za-z0-9._-]{1,64} (the CN must not smuggle anything), or write a key
 * readable by anyone but the owner (pki.h creates keys 0600 from the start). */
#ifndef VIGIL_ENROLL_H
#define VIGIL_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include "store.h"

/* DIR/ca.crt, ca.key, server.crt, server.key. names: extra DNS names or IP
 * addresses for the server certificate (localhost, 127.0.0.1, ::1 and the
 * hostname are always included). Refuses to overwrite an existing CA. */
int enroll_pki_init(const char *dir, const char *const *names, size_t nnames, char *err, size_t errlen);

bool enroll_agent_id_ok(const char *id);

/* Issues a key + certificate for agent_id (days of validity). key_pem and
 * cert_pem are malloc'ed PEM strings. store (optional) is consulted for
 * revocation: -EPERM if revoked. */
int enroll_issue(const char *ca_cert, const char *ca_key, struct store *store, const char *agent_id, int days,
		 char **key_pem, char **cert_pem, char *err, size_t errlen);
/* Writes DIR/agent.key (0600), DIR/agent.crt, DIR/ca.crt. */
int enroll_write(const char *dir, const char *ca_cert, const char *key_pem, const char *cert_pem, char *err,
		 size_t errlen);

#endif
