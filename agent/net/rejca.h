/* rejca: the programs and hosts whose clients refused the interception
 * certificate, remembered for on_rejected_ca: passthrough. A bounded table
 * (oldest rejection evicted first), safe across the interceptor threads
 * that note rejections and the loop thread that looks them up. Keys are
 * the program's executable path and the TLS server name; nothing else is
 * stored. */
#ifndef VIGIL_REJCA_H
#define VIGIL_REJCA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rejca;

/* A table of at most cap entries; NULL on ENOMEM. */
struct rejca *rejca_new(size_t cap);
void rejca_free(struct rejca *t);

/* exe (a program path, "" = unknown: not remembered) refused the CA for
 * sni at now_ms. A repeated rejection refreshes the entry. */
void rejca_note(struct rejca *t, const char *exe, const char *sni, uint64_t now_ms);

/* When exe last refused the CA for sni: true and *at_ms if remembered.
 * The common case (nothing refused) costs one atomic load. */
bool rejca_last(struct rejca *t, const char *exe, const char *sni, uint64_t *at_ms);

/* Whether a refusal at at_ms is less than ttl_ms before now_ms. The ttl
 * comes from the policy, consulted only once rejca_last found a refusal;
 * a slightly older clock (another thread's now) counts as recent. */
static inline bool rejca_within(uint64_t at_ms, uint64_t now_ms, uint64_t ttl_ms)
{
	return now_ms < at_ms || now_ms - at_ms < ttl_ms;
}

#endif
