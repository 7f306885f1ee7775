/* dnsmsg: reads the addresses out of a DNS response (RFC 1035) that the
 * kernel copied from a UDP/53 packet delivered to a workstation process.
 * The agent uses them to learn which addresses a watched domain resolves
 * to for the clients themselves (CDN rotation, wildcard domains that the
 * agent cannot resolve up front). Pure: no I/O.
 *
 * The bytes are hostile (anyone on the path can send a UDP packet to port
 * 53's clients): every offset is bounds-checked, compression pointers may
 * only point backwards and are followed at most DNSMSG_MAX_JUMPS times, a
 * name is at most 255 bytes, and a truncated message yields only the
 * records that were complete. */
#ifndef VIGIL_DNSMSG_H
#define VIGIL_DNSMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNSMSG_NAME_MAX 256      /* presentation form incl. NUL */
#define DNSMSG_MAX_JUMPS 32
#define DNSMSG_MAX_CHAIN 8       /* CNAME hops followed from the question */

/* One address for the question's name: qname is the name the client asked
 * for (lowercased, no trailing dot), addr an AF_INET or AF_INET6 address
 * (port 0), ttl the record's TTL in seconds. Both pointers are borrowed
 * for the call only. */
typedef void (*dnsmsg_addr_fn)(void *arg, const char *qname, const struct sockaddr *addr,
			       uint32_t ttl);

/* Parses a response (QR set, RCODE 0, one question of class IN) and calls
 * fn for each A/AAAA record whose owner is the question's name or reached
 * from it through CNAME records in the answer section. Returns the number
 * of addresses reported, or -EINVAL if msg is not such a response. Uses
 * about 26 KB of stack. */
int dnsmsg_addresses(const uint8_t *msg, size_t len, dnsmsg_addr_fn fn, void *arg);

#endif
