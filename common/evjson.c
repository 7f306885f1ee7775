/* evjson: the audit event as one JSON line (the agent's local log, the
 * collector's exports). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#include <openssl/ssl.h>
#include "evcodec.h"
#include "evcodec_int.h"
#include "jsonw.h"
#include "vigil/audit.pb-c.h"

static void opt_i64(struct jsonw *w, const char *k, int64_t v)
{
	if (v < 0)
		jsonw_null(w, k);
	else
		jsonw_i64(w, k, v);
}

/* key: [{"type": T, "count": N}, ...] */
static void json_findings(struct jsonw *w, const char *key, const struct vigil_finding *f, size_t n)
{
	jsonw_arr_open(w, key);
	for (size_t i = 0; i < n; i++) {
		jsonw_obj_open(w);
		jsonw_str(w, "type", f[i].type);
		jsonw_u64(w, "count", f[i].count);
		jsonw_obj_close(w);
	}
	jsonw_arr_close(w);
}

/* "time": RFC 3339 in UTC with microseconds. */
static void json_time(struct jsonw *w, int64_t time_us)
{
	char when[64];
	time_t sec = (time_t)(time_us / 1000000);
	long usec = (long)(time_us % 1000000);
	struct tm tm;
	if (usec < 0) {
		usec += 1000000;
		sec--;
	}
	gmtime_r(&sec, &tm);
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	jsonw_str(w, "time", when);
}

/* The JSON line: keys in the order of common/evfields.h, written by the
 * field's json rendering. */
#define EVF_JSON_NONE(f)
#define EVF_JSON_TIME(f) json_time(w, ev->f);
#define EVF_JSON_STR(f) jsonw_str(w, #f, ev->f);
#define EVF_JSON_U64(f) jsonw_u64(w, #f, ev->f);
#define EVF_JSON_OPT(f) opt_i64(w, #f, ev->f);
#define EVF_JSON_NZ(f)                       \
	if (ev->f)                           \
		jsonw_i64(w, #f, ev->f);     \
	else                                 \
		jsonw_null(w, #f);
#define EVF_JSON_SCORE(f)                    \
	if (ev->f < 0)                       \
		jsonw_null(w, #f);           \
	else                                 \
		jsonw_double(w, #f, ev->f);
#define EVF_JSON_BOOL(f) jsonw_bool(w, #f, ev->f);
#define EVF_JSON_FINDINGS(f) json_findings(w, #f, ev->f, ev->n_##f);
#define EVF_JSON_GAP(f)                      \
	if (gap)                             \
		jsonw_u64(w, #f, ev->f);
#define EVF_JSON_OMIT(f)                     \
	if (ev->f)                           \
		jsonw_str(w, #f, ev->f);
#define EVF_JSON_HEX(f)                                  \
	evcodec_hex(ev->f, EVCODEC_HASH_LEN, hx);        \
	jsonw_str(w, #f, hx);
#define EVF_JSON(f, num, kind, json, store, origin) EVF_JSON_##json(f)

void evcodec_event_json(const struct vigil_event *ev, struct jsonw *w)
{
	char hx[2 * EVCODEC_HASH_LEN + 1];
	bool gap = ev->gap_count || (ev->kind && strcmp(ev->kind, "gap") == 0);
	jsonw_obj_open(w);
	EVFIELDS(EVF_JSON)
	jsonw_obj_close(w);
}

