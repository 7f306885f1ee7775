/* dnsmsg: the addresses a client received for the name it asked, through
 * CNAME chains and compression, and nothing from hostile or unrelated
 * bytes: queries, errors, forward pointers, loops, dotted labels, records
 * for other names, truncated messages. */
#include <arpa/inet.h>
#include "check.h"
#include "kernel/dnsmsg.h"

struct got {
	int n;
	char qname[8][DNSMSG_NAME_MAX];
	char addr[8][INET6_ADDRSTRLEN];
	uint32_t ttl[8];
};

static void collect(void *arg, const char *qname, const struct sockaddr *sa, uint32_t ttl)
{
	struct got *g = arg;
	if (g->n >= 8)
		return;
	snprintf(g->qname[g->n], DNSMSG_NAME_MAX, "%s", qname);
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, g->addr[g->n], INET6_ADDRSTRLEN);
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, g->addr[g->n], INET6_ADDRSTRLEN);
	g->ttl[g->n++] = ttl;
}

/* A message under construction. */
struct msg {
	uint8_t b[1024];
	size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put16(struct msg *m, unsigned v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(m, b, 2);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

/* "api.openai.com" as labels. */
static void put_name(struct msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		uint8_t lb = (uint8_t)l;
		put(m, &lb, 1);
		put(m, name, l);
		name += l + (dot ? 1 : 0);
	}
	put(m, "", 1);
}

static void header(struct msg *m, unsigned flags, unsigned qd, unsigned an)
{
	m->n = 0;
	put16(m, 0x1234);
	put16(m, flags);
	put16(m, qd);
	put16(m, an);
	put16(m, 0);
	put16(m, 0);
}

static void question(struct msg *m, const char *name, unsigned type)
{
	put_name(m, name);
	put16(m, type);
	put16(m, 1);
}

/* Owner given as a compression pointer to offset ptr (0 = write name). */
static void rr(struct msg *m, const char *owner, unsigned ptr, unsigned type, uint32_t ttl,
	       const void *rdata, size_t rdlen)
{
	if (ptr)
		put16(m, 0xc000 | ptr);
	else
		put_name(m, owner);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	put16(m, (unsigned)rdlen);
	put(m, rdata, rdlen);
}

static const uint8_t ip1[4] = { 127, 0, 10, 9 }, ip2[4] = { 127, 0, 10, 10 };

TEST(a_and_aaaa_for_the_question)
{
	struct msg m;
	struct got g = { 0 };
	uint8_t ip6[16];
	inet_pton(AF_INET6, "2001:db8::7", ip6);
	header(&m, 0x8180, 1, 3);
	question(&m, "API.OpenAI.com", 1);
	rr(&m, NULL, 12, 1, 300, ip1, 4);
	rr(&m, NULL, 12, 28, 60, ip6, 16);
	rr(&m, "other.example", 0, 1, 300, ip2, 4);
	CHECK(dnsmsg_addresses(m.b, m.n, collect, &g) == 2, "expected the 2 addresses of the question, got %d", g.n);
	CHECK(!strcmp(g.qname[0], "api.openai.com"), "qname not lowercased: %s", g.qname[0]);
	CHECK(!strcmp(g.addr[0], "127.0.10.9") && g.ttl[0] == 300, "A %s ttl %u", g.addr[0], g.ttl[0]);
	CHECK(!strcmp(g.addr[1], "2001:db8::7") && g.ttl[1] == 60, "AAAA %s ttl %u", g.addr[1], g.ttl[1]);
}

TEST(cname_chain_followed_and_unrelated_records_ignored)
{
	struct msg m;
	struct msg cn;
	struct got g = { 0 };
	header(&m, 0x8180, 1, 4);
	question(&m, "chat.llm.test", 1);
	cn.n = 0;
	put_name(&cn, "edge.cdn.test");
	rr(&m, NULL, 12, 5, 300, cn.b, cn.n);
	size_t edge = m.n - cn.n;            /* the CNAME target, for a pointer */
	rr(&m, "evil.test", 0, 1, 300, ip2, 4);  /* glue for a name nobody asked */
	rr(&m, NULL, (unsigned)edge, 1, 20, ip1, 4);
	cn.n = 0;
	put_name(&cn, "loop.test");
	rr(&m, "unasked.test", 0, 5, 300, cn.b, cn.n);
	CHECK(dnsmsg_addresses(m.b, m.n, collect, &g) == 1, "expected one address via the CNAME, got %d", g.n);
	CHECK(!strcmp(g.qname[0], "chat.llm.test") && !strcmp(g.addr[0], "127.0.10.9") && g.ttl[0] == 20,
	      "reported %s -> %s ttl %u", g.qname[0], g.addr[0], g.ttl[0]);
}

TEST(queries_errors_and_other_classes_refused)
{
	struct msg m;
	header(&m, 0x0100, 1, 1);               /* a query, not a response */
	question(&m, "api.openai.com", 1);
	rr(&m, NULL, 12, 1, 300, ip1, 4);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "a query was read as an answer");
	m.b[2] = 0x81, m.b[3] = 0x83;           /* NXDOMAIN */
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "an error response was read");
	m.b[3] = 0x80;
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == 1, "the fixed response is not read");
	m.b[5] = 2;                              /* two questions */
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "qdcount 2 accepted");
	CHECK(dnsmsg_addresses(m.b, 11, NULL, NULL) == -EINVAL, "short header accepted");
}

TEST(hostile_names_refused)
{
	struct msg m;
	/* A label containing a dot would pose as two labels. */
	header(&m, 0x8180, 1, 1);
	put(&m, "\x0a" "api.openai" "\x03" "com" "\x00", 16);
	put16(&m, 1);
	put16(&m, 1);
	rr(&m, NULL, 12, 1, 300, ip1, 4);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "dotted label accepted");

	/* A pointer to itself (loop) and a forward pointer. */
	header(&m, 0x8180, 1, 0);
	put16(&m, 0xc000 | 12);
	put16(&m, 1);
	put16(&m, 1);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "self pointer accepted");
	header(&m, 0x8180, 1, 0);
	put16(&m, 0xc000 | 40);
	put16(&m, 1);
	put16(&m, 1);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "forward pointer accepted");

	/* A name over 253 bytes. */
	header(&m, 0x8180, 1, 0);
	for (int i = 0; i < 5; i++) {
		uint8_t label[64];
		label[0] = 63;
		memset(label + 1, 'a', 63);
		put(&m, label, sizeof(label));
	}
	put(&m, "", 1);
	put16(&m, 1);
	put16(&m, 1);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == -EINVAL, "over-long name accepted");
}

TEST(truncated_message_keeps_complete_records)
{
	struct msg m;
	struct got g = { 0 };
	header(&m, 0x8380, 1, 2);                /* TC set: cut at 512 bytes */
	question(&m, "api.openai.com", 1);
	rr(&m, NULL, 12, 1, 300, ip1, 4);
	rr(&m, NULL, 12, 1, 300, ip2, 4);
	for (size_t cut = 0; cut < m.n; cut++) {
		g.n = 0;
		int r = dnsmsg_addresses(m.b, cut, collect, &g);
		CHECK(r >= -EINVAL && r <= 1, "cut at %zu: %d addresses from a partial message", cut, r);
	}
	CHECK(dnsmsg_addresses(m.b, m.n - 1, collect, &g) == 1, "the complete first record was lost");
}

TEST(wrong_rdata_lengths_ignored)
{
	struct msg m;
	uint8_t five[5] = { 1, 2, 3, 4, 5 };
	header(&m, 0x8180, 1, 1);
	question(&m, "api.openai.com", 1);
	rr(&m, NULL, 12, 1, 300, five, 5);
	CHECK(dnsmsg_addresses(m.b, m.n, NULL, NULL) == 0, "an A record of 5 bytes was read");
}
