/* sni: reads the server name from a TLS ClientHello that the agent peeked
 * (MSG_PEEK) from a redirected connection, without consuming it, so the
 * connection can still be passed through untouched. Pure: no I/O. */
#ifndef VIGIL_SNI_H
#define VIGIL_SNI_H

#include <stddef.h>
#include <stdint.h>

#define SNI_MAX_HELLO 16384   /* the ClientHello handshake message we accept, reassembled */

enum sni_status {
	SNI_NEED_MORE = 0,        /* a prefix of a plausible ClientHello: peek more */
	SNI_FOUND = 1,            /* ClientHello complete, server name written */
	SNI_ABSENT = 2,           /* ClientHello complete, no (valid) server_name */
	SNI_NOT_TLS = -1,         /* first bytes are not a TLS handshake record */
	SNI_MALFORMED = -2,       /* TLS, but the ClientHello is malformed or too large */
};

/* Parses buf[0..len). On SNI_FOUND writes the host name (lowercased,
 * NUL-terminated) to name (namelen >= 256). Names with bytes outside
 * [A-Za-z0-9.-], empty labels or over 253 bytes count as SNI_ABSENT. */
enum sni_status sni_parse(const uint8_t *buf, size_t len, char *name, size_t namelen);

#endif
