/* export: events out of the collector for SIEMs. Line formats, one or more
 * lines per event: otlp, ocsf and hec (siem.c), and jsonl (the contract's JSON event, as `vigil query --json`),
 * cef (ArcSight Common Event Format 0) and syslog (RFC 5424 with the event as
 * structured data), and a streaming forward of newly committed events to a
 * syslog target over UDP (RFC 5426). Must never: emit a raw finding value
 * (events do not carry any), or let a field break the line framing (every
 * format escapes its own metacharacters and newlines). */
#ifndef VIGIL_EXPORT_H
#define VIGIL_EXPORT_H

#include <stdio.h>
#include "evcodec.h"
#include "store.h"

struct jsonw;

/* otlp: one ExportLogsServiceRequest (OTLP/JSON) per line; ocsf: one OCSF
 * record per line (an event may give several); hec: one Splunk HEC event
 * object per line (see siem.h). */
enum export_format { EXPORT_JSONL, EXPORT_CEF, EXPORT_SYSLOG, EXPORT_OTLP, EXPORT_OCSF, EXPORT_HEC };
int export_format_parse(const char *name, enum export_format *out);

/* Borrowing view of a stored row as the wire struct (fbuf holds the
 * findings, EVCODEC_MAX_FINDINGS entries). */
void export_to_vigil(const struct store_event *e, struct vigil_event *v, struct vigil_finding *fbuf);
/* One event as a JSON object (CONTRACT.md fields). */
void export_json(const struct store_event *e, struct jsonw *w);
/* One line (with '\n') in fmt. host: the collector's hostname for syslog. */
int export_line(enum export_format fmt, const struct store_event *e, const char *host, FILE *out);

struct forward;
/* target HOST:PORT, UDP. */
int forward_new(const char *target, struct forward **out, char *err, size_t errlen);
void forward_free(struct forward *f);
/* Best effort (UDP syslog): never blocks ingest. */
void forward_event(struct forward *f, const struct store_event *e);

#endif
