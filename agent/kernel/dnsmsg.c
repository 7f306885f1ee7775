/* dnsmsg: see dnsmsg.h. Two passes over the answer section: the first
 * decodes every record's owner (and a CNAME's target) into a small table,
 * the second follows the CNAME chain from the question and reports the
 * addresses at its names. Nothing is allocated. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <netinet/in.h>
#include "kernel/dnsmsg.h"

#define DNS_HEADER 12
#define TYPE_A 1
#define TYPE_CNAME 5
#define TYPE_AAAA 28
#define CLASS_IN 1
#define MAX_RECORDS 48

struct record {
	char owner[DNSMSG_NAME_MAX];
	char target[DNSMSG_NAME_MAX];   /* CNAME only */
	uint16_t type;
	uint32_t ttl;
	size_t rdata, rdlen;
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A label byte we accept: host names plus '_' (service labels). Anything
 * else (notably '.', which would let one label pose as two) rejects the
 * name. */
static int label_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Decodes the name at *off into out (lowercase, dots, no trailing dot; the
 * root is ""), and moves *off past it in the message (a compression pointer
 * counts two bytes). Pointers must go strictly backwards, so decoding
 * always ends. Returns 0 or -EINVAL. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char out[DNSMSG_NAME_MAX])
{
	size_t pos = *off, n = 0, end = 0;
	int jumps = 0;

	for (;;) {
		if (pos >= len)
			return -EINVAL;
		uint8_t l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++jumps > DNSMSG_MAX_JUMPS)
				return -EINVAL;
			size_t to = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			if (!end)
				end = pos + 2;
			if (to >= pos)
				return -EINVAL;
			pos = to;
			continue;
		}
		if (l & 0xc0)
			return -EINVAL;     /* 0x40/0x80: extended label types */
		if (l == 0) {
			if (!end)
				end = pos + 1;
			break;
		}
		if (pos + 1 + l > len || n + (n ? 1 : 0) + l > 253)
			return -EINVAL;
		if (n)
			out[n++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = msg[pos + 1 + i];
			if (!label_char(c))
				return -EINVAL;
			out[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		pos += 1 + (size_t)l;
	}
	out[n] = '\0';
	*off = end;
	return 0;
}

/* Decodes the answer section into recs; stops quietly at the first record
 * that is cut short (a truncated UDP answer keeps what was complete).
 * Returns the number of records. */
static size_t read_answers(const uint8_t *msg, size_t len, size_t off, unsigned count,
			   struct record *recs)
{
	size_t n = 0;

	for (unsigned i = 0; i < count && n < MAX_RECORDS; i++) {
		struct record *r = &recs[n];
		if (read_name(msg, len, &off, r->owner) || off + 10 > len)
			break;
		r->type = get16(msg + off);
		uint16_t class = get16(msg + off + 2);
		r->ttl = get32(msg + off + 4);
		r->rdlen = get16(msg + off + 8);
		r->rdata = off + 10;
		if (r->rdata + r->rdlen > len)
			break;
		off = r->rdata + r->rdlen;
		if (class != CLASS_IN)
			continue;
		if (r->type == TYPE_CNAME) {
			size_t t = r->rdata;
			if (read_name(msg, r->rdata + r->rdlen, &t, r->target) || t != r->rdata + r->rdlen)
				continue;
		} else if (!(r->type == TYPE_A && r->rdlen == 4) && !(r->type == TYPE_AAAA && r->rdlen == 16)) {
			continue;
		}
		n++;
	}
	return n;
}

int dnsmsg_addresses(const uint8_t *msg, size_t len, dnsmsg_addr_fn fn, void *arg)
{
	/* On the stack (~26 KB), not in thread-local storage: static TLS is
	 * reserved in every thread, and the agent runs one per intercepted
	 * connection (the 5,000-idle-connection test caught it). */
	struct record recs[MAX_RECORDS];
	char qname[DNSMSG_NAME_MAX];
	const char *chain[DNSMSG_MAX_CHAIN + 1];
	size_t off = DNS_HEADER, n_chain = 1, n_recs;
	int found = 0;

	if (!msg || len < DNS_HEADER)
		return -EINVAL;
	uint16_t flags = get16(msg + 2);
	if (!(flags & 0x8000) || (flags >> 11 & 0xf) != 0 || (flags & 0xf) != 0)
		return -EINVAL;         /* not a response, not QUERY, or an error */
	if (get16(msg + 4) != 1)
		return -EINVAL;
	if (read_name(msg, len, &off, qname) || off + 4 > len || !qname[0])
		return -EINVAL;
	if (get16(msg + off) != TYPE_A && get16(msg + off) != TYPE_AAAA)
		return 0;
	if (get16(msg + off + 2) != CLASS_IN)
		return -EINVAL;
	off += 4;
	n_recs = read_answers(msg, len, off, get16(msg + 6), recs);

	/* The question's name, then each CNAME target in turn. A loop in the
	 * chain just stops at the hop limit. */
	chain[0] = qname;
	while (n_chain <= DNSMSG_MAX_CHAIN) {
		const char *next = NULL;
		for (size_t i = 0; i < n_recs && !next; i++)
			if (recs[i].type == TYPE_CNAME && !strcmp(recs[i].owner, chain[n_chain - 1]))
				next = recs[i].target;
		if (!next)
			break;
		chain[n_chain++] = next;
	}
	for (size_t i = 0; i < n_recs; i++) {
		struct sockaddr_storage ss;
		bool on_chain = false;

		if (recs[i].type == TYPE_CNAME)
			continue;
		for (size_t k = 0; k < n_chain && !on_chain; k++)
			on_chain = !strcmp(recs[i].owner, chain[k]);
		if (!on_chain)
			continue;
		memset(&ss, 0, sizeof(ss));
		if (recs[i].type == TYPE_A) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, msg + recs[i].rdata, 4);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			s6->sin6_family = AF_INET6;
			memcpy(&s6->sin6_addr, msg + recs[i].rdata, 16);
		}
		if (fn)
			fn(arg, qname, (struct sockaddr *)&ss, recs[i].ttl);
		found++;
	}
	return found;
}
