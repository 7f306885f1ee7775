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
	SNI_ABSENT = 2,           /* ClientHello complete, no server_name host_name */
	SNI_NOT_TLS = -1,         /* first bytes are not a TLS handshake record */
	SNI_MALFORMED = -2,       /* TLS, but the ClientHello is malformed or too large */
	SNI_BAD_NAME = -3,        /* ClientHello complete, its host_name is not a valid host name */
};

/* Parses buf[0..len). On SNI_FOUND writes the host name, normalised by
 * sni_host_normalise, to name (namelen >= 256). A name with bytes outside
 * [A-Za-z0-9._-], empty labels or over 253 bytes is SNI_BAD_NAME. */
enum sni_status sni_parse(const uint8_t *buf, size_t len, char *name, size_t namelen);

/* The one spelling of a host name that the agent matches, forges
 * certificates for and sends upstream: lower case, one trailing dot
 * removed. Writes it NUL-terminated to out; returns 0, or -1 if host is not
 * a valid DNS name (bytes outside [A-Za-z0-9._-], empty or > 63-byte
 * labels, over 253 bytes, or longer than outlen - 1). host is borrowed and
 * need not be NUL-terminated. */
int sni_host_normalise(const char *host, size_t len, char *out, size_t outlen);
/* The same for an HTTP authority (a Host header): a ":port" suffix is
 * removed first. */
int sni_authority_host(const char *auth, size_t len, char *out, size_t outlen);

#endif
