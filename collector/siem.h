/* siem: events in the formats SIEMs and observability stacks ingest, as JSON
 * built with jsonw (so every string from an agent is escaped):
 *
 *   OTLP logs (the JSON encoding of an ExportLogsServiceRequest, as POSTed
 *     to /v1/logs): one logRecord per event, attributes named after the
 *     OpenTelemetry GenAI semantic conventions (gen_ai.provider.name,
 *     gen_ai.request.model, gen_ai.operation.name, gen_ai.usage.*) plus our
 *     own identity fields under vigil.*.
 *   OCSF 1.3.0: HTTP Activity (4002) for an exchange (Network Activity 4001
 *     for a pass-through connection), Data Security Finding (2006) for PII
 *     and secrets found in it, Detection Finding (2004) for prompt injection
 *     and for bypass/gap/tamper records. One event gives one to three
 *     records.
 *   Splunk HEC: {time, host, source, sourcetype, event} with the contract's
 *     JSON event as "event".
 *
 * Must never: emit a raw finding value (events carry only types and
 * counts). */
#ifndef VIGIL_SIEM_H
#define VIGIL_SIEM_H

#include "jsonw.h"
#include "store.h"

/* OTLP: open writes {"resourceLogs":[{resource, "scopeLogs":[{scope,
 * "logRecords":[ ; record appends one record; close ends the request. */
void siem_otlp_open(struct jsonw *w, const char *collector_host);
void siem_otlp_record(const struct store_event *e, struct jsonw *w);
void siem_otlp_close(struct jsonw *w);

enum siem_ocsf_class {
	SIEM_OCSF_ACTIVITY = 1 << 0,  /* 4002 HTTP Activity or 4001 Network Activity */
	SIEM_OCSF_DATA = 1 << 1,      /* 2006 Data Security Finding */
	SIEM_OCSF_DETECTION = 1 << 2, /* 2004 Detection Finding */
};
/* Which records e gives (a mask of siem_ocsf_class). */
unsigned siem_ocsf_classes(const struct store_event *e);
/* One OCSF record of class c (a single bit) for e, as one JSON object. */
void siem_ocsf_record(const struct store_event *e, enum siem_ocsf_class c, struct jsonw *w);

/* One HEC event object. */
void siem_hec_event(const struct store_event *e, struct jsonw *w);

#endif
