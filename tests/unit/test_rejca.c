/* rejca: a program that refused the CA for a host is remembered for that
 * host only, for ttl; unknown programs are never remembered; a full table
 * drops its oldest rejection and never grows. */
#include <stdio.h>
#include "check.h"
#include "net/rejca.h"

/* What the connection asks (conn.c): a refusal remembered, within ttl. */
static bool active(struct rejca *t, const char *exe, const char *sni, uint64_t now_ms, uint64_t ttl_ms)
{
	uint64_t at;
	return rejca_last(t, exe, sni, &at) && rejca_within(at, now_ms, ttl_ms);
}

TEST(remembered_per_program_and_host_for_ttl)
{
	struct rejca *t = rejca_new(4);
	CHECK(t, "rejca_new");
	CHECK(!active(t, "/usr/bin/curl", "api.openai.com", 1000, 5000), "empty table active");
	rejca_note(t, "/usr/bin/curl", "api.openai.com", 1000);
	uint64_t at = 0;
	CHECK(rejca_last(t, "/usr/bin/curl", "api.openai.com", &at) && at == 1000, "last refusal at %llu",
	      (unsigned long long)at);
	CHECK(!rejca_last(t, "/usr/bin/curl", "api.anthropic.com", &at), "last refusal for another host");
	CHECK(active(t, "/usr/bin/curl", "api.openai.com", 5999, 5000), "not active within ttl");
	CHECK(!active(t, "/usr/bin/curl", "api.openai.com", 6000, 5000), "active after ttl");
	CHECK(!active(t, "/usr/bin/node", "api.openai.com", 2000, 5000), "another program matched");
	CHECK(!active(t, "/usr/bin/curl", "api.anthropic.com", 2000, 5000), "another host matched");
	rejca_note(t, "/usr/bin/curl", "api.openai.com", 7000);   /* a new refusal refreshes */
	CHECK(active(t, "/usr/bin/curl", "api.openai.com", 8000, 5000), "refresh ignored");
	/* A clock read on another thread may be a little behind the note. */
	CHECK(active(t, "/usr/bin/curl", "api.openai.com", 6990, 5000), "a slightly older clock");
	rejca_note(t, "", "api.openai.com", 1000);
	CHECK(!active(t, "", "api.openai.com", 1000, 5000), "an unknown program was remembered");
	rejca_free(t);
	rejca_free(NULL);
}

TEST(full_table_evicts_the_oldest)
{
	struct rejca *t = rejca_new(3);
	char host[64];
	for (int i = 0; i < 3; i++) {
		snprintf(host, sizeof(host), "h%d.example", i);
		rejca_note(t, "/bin/x", host, 100 + (uint64_t)i);
	}
	rejca_note(t, "/bin/x", "h3.example", 200);
	CHECK(!active(t, "/bin/x", "h0.example", 201, 1000), "oldest not evicted");
	for (int i = 1; i < 4; i++) {
		snprintf(host, sizeof(host), "h%d.example", i);
		CHECK(active(t, "/bin/x", host, 201, 1000), "%s lost", host);
	}
	rejca_free(t);
}
