/* evfill: a vigil_event with every field of common/evfields.h set to a
 * value of its kind (strings: the field's name; numbers: 7; findings: the
 * two given; hashes: 0x5a). gap_count is set, so the JSON line carries the
 * gap fields too. For tests that check every field reaches an encoding. */
#ifndef VIGIL_TEST_EVFILL_H
#define VIGIL_TEST_EVFILL_H

#include <string.h>
#include "evcodec.h"

#define EVFILL_STR(f) ev->f = #f;
#define EVFILL_U32(f) ev->f = 7;
#define EVFILL_U64(f) ev->f = 7;
#define EVFILL_I32(f) ev->f = 7;
#define EVFILL_I64(f) ev->f = 7;
#define EVFILL_S64(f) ev->f = 7;
#define EVFILL_BOOL(f) ev->f = true;
#define EVFILL_DOUBLE(f) ev->f = 0.5;
#define EVFILL_FINDINGS(f) ev->f = two, ev->n_##f = 2;
#define EVFILL_HASH(f) memset(ev->f, 0x5a, EVCODEC_HASH_LEN);
#define EVFILL(f, num, kind, json, store, origin) EVFILL_##kind(f)

static inline void evfill_every_field(struct vigil_event *ev, const struct vigil_finding two[2])
{
	vigil_event_init(ev, NULL);
	EVFIELDS(EVFILL)
}

#endif
