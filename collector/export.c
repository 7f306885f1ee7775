/* export: jsonl / CEF / RFC 5424 formatting and the UDP syslog forward. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "export.h"
#include "jsonw.h"
#include "siem.h"

int export_format_parse(const char *name, enum export_format *out)
{
	if (!strcmp(name, "jsonl") || !strcmp(name, "json"))
		*out = EXPORT_JSONL;
	else if (!strcmp(name, "cef"))
		*out = EXPORT_CEF;
	else if (!strcmp(name, "syslog"))
		*out = EXPORT_SYSLOG;
	else if (!strcmp(name, "otlp"))
		*out = EXPORT_OTLP;
	else if (!strcmp(name, "ocsf"))
		*out = EXPORT_OCSF;
	else if (!strcmp(name, "hec"))
		*out = EXPORT_HEC;
	else
		return -EINVAL;
	return 0;
}

/* row -> wire struct: every store COL field of common/evfields.h (the
 * stores keep one finding list as a column: findings, nfindings). */
#define FROM_ROW_ANY(f) v->f = e->f;
#define FROM_ROW_STR FROM_ROW_ANY
#define FROM_ROW_U32 FROM_ROW_ANY
#define FROM_ROW_U64 FROM_ROW_ANY
#define FROM_ROW_I32 FROM_ROW_ANY
#define FROM_ROW_I64 FROM_ROW_ANY
#define FROM_ROW_S64 FROM_ROW_ANY
#define FROM_ROW_BOOL FROM_ROW_ANY
#define FROM_ROW_DOUBLE FROM_ROW_ANY
#define FROM_ROW_FINDINGS(f) v->n_##f = wire_findings(e->f, e->nfindings, fbuf), v->f = fbuf;
#define FROM_ROW_HASH(f) memcpy(v->f, e->f, EVCODEC_HASH_LEN);
#define FROM_ROW_COL(kind, f) FROM_ROW_##kind(f)
#define FROM_ROW_RAW(kind, f)
#define FROM_ROW(f, num, kind, json, store, origin) FROM_ROW_##store(kind, f)

static size_t wire_findings(const struct store_finding *in, size_t n, struct vigil_finding *fbuf)
{
	if (n > EVCODEC_MAX_FINDINGS)
		n = EVCODEC_MAX_FINDINGS;
	for (size_t i = 0; i < n; i++) {
		fbuf[i].type = in[i].type;
		fbuf[i].count = in[i].count;
	}
	return n;
}

void export_to_vigil(const struct store_event *e, struct vigil_event *v, struct vigil_finding *fbuf)
{
	memset(v, 0, sizeof(*v));
	EVFIELDS(FROM_ROW)
}

#define EXPORT_RAW_COL(kind, f)
#define EXPORT_RAW_RAW(kind, f) EVCODEC_COPY_##kind(&v, r, f)
#define EXPORT_FROM_RAW(f, num, kind, json, store, origin) EXPORT_RAW_##store(kind, f)

void export_json(const struct store_event *e, struct jsonw *w)
{
	struct vigil_event v;
	struct vigil_finding fb[EVCODEC_MAX_FINDINGS];
	struct evcodec_decoded *d = NULL;
	export_to_vigil(e, &v, fb);
	/* Fields the stores keep no column for (store RAW in common/evfields.h:
	 * output findings, output redactions, the MCP and tool-call fields)
	 * come from the event as the agent signed it. */
	if (e->raw && e->raw_len && evcodec_event_decode(e->raw, e->raw_len, &d) == 0) {
		const struct vigil_event *r = &d->ev;
		EVFIELDS(EXPORT_FROM_RAW)
	}
	evcodec_event_json(&v, w);
	evcodec_decoded_free(d);
}

static const char *nz(const char *s) { return s && *s ? s : NULL; }

/* CEF extension values escape '\' and '=' and have no newlines; header
 * fields escape '\' and '|'. */
static void cef_val(FILE *out, const char *s, bool header)
{
	for (; s && *s; s++) {
		if (*s == '\\' || (header && *s == '|') || (!header && *s == '='))
			fputc('\\', out);
		if (*s == '\n' || *s == '\r')
			fputs(header ? " " : "\\n", out);
		else
			fputc(*s, out);
	}
}

static void findings_text(const struct store_event *e, char *buf, size_t len)
{
	if (store_findings_format(e->findings, e->nfindings, buf, len))
		snprintf(buf, len, "(too many)");
}

static void rfc3339(int64_t us, char *buf, size_t len)
{
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(us % 1000000 + (us % 1000000 < 0 ? 1000000 : 0)));
}

static int severity(const struct store_event *e)
{
	if (nz(e->action) && !strcmp(e->action, "block"))
		return 7;
	if (e->nfindings)
		return 5;
	if (nz(e->kind) && (!strcmp(e->kind, "bypass") || !strcmp(e->kind, "gap") || !strcmp(e->kind, "ingest_rejected")))
		return 8;
	return 3;
}

/* RFC 5424 PARAM-VALUE escapes '"', '\' and ']'. */
static void sd_val(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\' || *s == ']')
			fputc('\\', out);
		fputc(*s == '\n' || *s == '\r' ? ' ' : *s, out);
	}
}

static void syslog_line(const struct store_event *e, const char *host, FILE *out)
{
	char ts[40], fs[1024];
	rfc3339(e->time_us, ts, sizeof(ts));
	findings_text(e, fs, sizeof(fs));
	/* PRI: facility 13 (log audit) * 8 + severity (notice 5, warning 4). */
	int pri = 13 * 8 + (severity(e) >= 7 ? 4 : 5);
	fprintf(out, "<%d>1 %s %s vigil-collector - %s [vigil@32473", pri, ts, host && *host ? host : "-",
		nz(e->kind) ? e->kind : "-");
	struct { const char *k, *v; } kv[] = {
		{ "event_id", e->event_id }, { "agent_id", e->agent_id }, { "host", e->host }, { "user", e->user },
		{ "exe", e->exe }, { "provider", e->provider }, { "model", e->model }, { "sni", e->sni },
		{ "action", e->action }, { "rule", e->rule }, { "findings", fs }, { "reason", e->reason },
		{ "mcp_server", e->mcp_server }, { "mcp_method", e->mcp_method }, { "tool", e->tool },
		{ "mcp_session", e->mcp_session },
	};
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (!nz(kv[i].v))
			continue;
		fprintf(out, " %s=\"", kv[i].k);
		sd_val(out, kv[i].v);
		fputc('"', out);
	}
	fprintf(out, " seq=\"%llu\" uid=\"%lld\" pid=\"%lld\"] %s %s by %s via %s\n", (unsigned long long)e->seq,
		(long long)e->uid, (long long)e->pid, nz(e->action) ? e->action : "-", nz(e->kind) ? e->kind : "event",
		nz(e->user) ? e->user : "?", nz(e->exe) ? e->exe : "?");
}

/* The JSON formats: each record one line. */
static int json_lines(enum export_format fmt, const struct store_event *e, const char *host, FILE *out)
{
	struct jsonw w;
	jsonw_init(&w);
	if (fmt == EXPORT_JSONL) {
		export_json(e, &w);
	} else if (fmt == EXPORT_HEC) {
		siem_hec_event(e, &w);
	} else if (fmt == EXPORT_OTLP) {
		siem_otlp_open(&w, host);
		siem_otlp_record(e, &w);
		siem_otlp_close(&w);
	} else {
		unsigned m = siem_ocsf_classes(e);
		for (unsigned c = 1; c <= SIEM_OCSF_DETECTION; c <<= 1) {
			if (!(m & c))
				continue;
			if (w.out.len)
				jsonw_raw(&w, "\n", 1);
			w.need_comma = false;
			siem_ocsf_record(e, (enum siem_ocsf_class)c, &w);
		}
	}
	if (w.oom) {
		jsonw_free(&w);
		return -ENOMEM;
	}
	fwrite(w.out.data, 1, w.out.len, out);
	fputc('\n', out);
	jsonw_free(&w);
	return 0;
}

int export_line(enum export_format fmt, const struct store_event *e, const char *host, FILE *out)
{
	if (fmt == EXPORT_JSONL || fmt == EXPORT_HEC || fmt == EXPORT_OTLP || fmt == EXPORT_OCSF)
		return json_lines(fmt, e, host, out);
	if (fmt == EXPORT_SYSLOG) {
		syslog_line(e, host, out);
		return 0;
	}
	char fs[1024], ts[40];
	findings_text(e, fs, sizeof(fs));
	rfc3339(e->time_us, ts, sizeof(ts));
	fputs("CEF:0|Vigil|vigil-collector|1|", out);
	cef_val(out, nz(e->kind) ? e->kind : "event", true);
	fputc('|', out);
	cef_val(out, nz(e->kind) ? e->kind : "event", true);
	fputc(' ', out);
	cef_val(out, nz(e->action) ? e->action : "", true);
	fprintf(out, "|%d|rt=%lld", severity(e), (long long)(e->time_us / 1000));
	struct { const char *k, *v; } kv[] = {
		{ "suser", e->user }, { "shost", e->host }, { "sproc", e->exe }, { "dhost", e->sni }, { "dst", e->dst_ip },
		{ "act", e->action }, { "cs1Label", "provider" }, { "cs1", e->provider }, { "cs2Label", "model" },
		{ "cs2", e->model }, { "cs3Label", "findings" }, { "cs3", fs }, { "cs4Label", "rule" }, { "cs4", e->rule },
		{ "cs5Label", "agent_id" }, { "cs5", e->agent_id }, { "externalId", e->event_id }, { "reason", e->reason },
		{ "cs6Label", nz(e->tool) ? "tool" : NULL }, { "cs6", e->tool },
		{ "flexString1Label", nz(e->mcp_server) ? "mcp_server" : NULL }, { "flexString1", e->mcp_server },
		{ "flexString2Label", nz(e->mcp_method) ? "mcp_method" : NULL }, { "flexString2", e->mcp_method },
	};
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (!nz(kv[i].v))
			continue;
		fprintf(out, " %s=", kv[i].k);
		cef_val(out, kv[i].v, false);
	}
	if (e->uid >= 0)
		fprintf(out, " suid=%lld", (long long)e->uid);
	if (e->pid >= 0)
		fprintf(out, " spid=%lld", (long long)e->pid);
	if (e->dst_port)
		fprintf(out, " dpt=%lld", (long long)e->dst_port);
	fprintf(out, " cn1Label=seq cn1=%llu\n", (unsigned long long)e->seq);
	return 0;
}

struct forward {
	int fd;
	char host[256];
};

int forward_new(const char *target, struct forward **out, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(target, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	int rc;
	*out = NULL;
	if (!colon || (size_t)(colon - target) >= sizeof(host)) {
		snprintf(err, errlen, "%s: expected HOST:PORT", target);
		return -EINVAL;
	}
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = 0;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &ai))) {
		snprintf(err, errlen, "%s: %s", target, gai_strerror(rc));
		return -EINVAL;
	}
	struct forward *f = calloc(1, sizeof(*f));
	if (!f) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	f->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0 || connect(f->fd, ai->ai_addr, ai->ai_addrlen)) {
		snprintf(err, errlen, "%s: %s", target, strerror(errno));
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		freeaddrinfo(ai);
		return -EIO;
	}
	freeaddrinfo(ai);
	if (gethostname(f->host, sizeof(f->host)))
		snprintf(f->host, sizeof(f->host), "-");
	*out = f;
	return 0;
}

void forward_free(struct forward *f)
{
	if (!f)
		return;
	close(f->fd);
	free(f);
}

void forward_event(struct forward *f, const struct store_event *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m)
		return;
	syslog_line(e, f->host, m);
	fclose(m);
	if (len && buf[len - 1] == '\n')
		len--;
	if (send(f->fd, buf, len, MSG_DONTWAIT) < 0) {
		/* UDP syslog is best effort by design (RFC 5426): a full socket
		 * buffer or an unreachable target drops this line only. */
	}
	free(buf);
}
