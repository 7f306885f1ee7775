/* siem: OTLP, OCSF and HEC renderings of a stored event (see siem.h). The
 * mappings live here so that `export --format` and the forwarder emit the
 * same records. */
#include <stdio.h>
#include <string.h>
#include "export.h"
#include "siem.h"

static bool has(const char *s) { return s && *s; }

static bool is_block(const struct store_event *e) { return has(e->action) && !strcmp(e->action, "block"); }

static bool kind_is(const struct store_event *e, const char *k) { return has(e->kind) && !strcmp(e->kind, k); }

/* Records of trouble with the pipeline itself rather than an exchange. */
static bool kind_is_incident(const struct store_event *e)
{
	static const char *const k[] = { "bypass", "gap", "tamper", "ingest_rejected", "alert" };
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
		if (kind_is(e, k[i]))
			return true;
	return false;
}

static bool finding_is_injection(const struct store_finding *f) { return !strcmp(f->type, "PROMPT_INJECTION"); }

/* ---- OTLP ---- */

/* GenAI semconv's well-known gen_ai.provider.name values where ours differ. */
static const char *otel_provider(const char *p)
{
	if (!strcmp(p, "gemini"))
		return "gcp.gemini";
	if (!strcmp(p, "bedrock"))
		return "aws.bedrock";
	if (!strcmp(p, "azure"))
		return "azure.ai.openai";
	return p;
}

/* gen_ai.operation.name from the API path (NULL when we cannot tell). */
static const char *otel_operation(const struct store_event *e)
{
	const char *p = e->path;
	if (kind_is(e, "mcp"))
		return "execute_tool";
	if (!has(p))
		return NULL;
	if (strstr(p, "chat/completions") || strstr(p, "/messages") || strstr(p, "/responses"))
		return "chat";
	if (strstr(p, "embed"))
		return "embeddings";
	if (strstr(p, "generateContent") || strstr(p, "GenerateContent"))
		return "generate_content";
	if (strstr(p, "/completions") || strstr(p, "/complete"))
		return "text_completion";
	return NULL;
}

static void attr_open(struct jsonw *w, const char *key)
{
	jsonw_obj_open(w);
	jsonw_str(w, "key", key);
	jsonw_key(w, "value");
	jsonw_obj_open(w);
}

static void attr_str(struct jsonw *w, const char *key, const char *v)
{
	if (!has(v))
		return;
	attr_open(w, key);
	jsonw_str(w, "stringValue", v);
	jsonw_obj_close(w);
	jsonw_obj_close(w);
}

/* OTLP/JSON carries 64-bit integers as decimal strings (proto3 JSON). */
static void attr_int(struct jsonw *w, const char *key, int64_t v)
{
	char n[24];
	snprintf(n, sizeof(n), "%lld", (long long)v);
	attr_open(w, key);
	jsonw_str(w, "intValue", n);
	jsonw_obj_close(w);
	jsonw_obj_close(w);
}

static void attr_double(struct jsonw *w, const char *key, double v)
{
	attr_open(w, key);
	jsonw_double(w, "doubleValue", v);
	jsonw_obj_close(w);
	jsonw_obj_close(w);
}

void siem_otlp_open(struct jsonw *w, const char *collector_host)
{
	jsonw_obj_open(w);
	jsonw_arr_open(w, "resourceLogs");
	jsonw_obj_open(w);
	jsonw_key(w, "resource");
	jsonw_obj_open(w);
	jsonw_arr_open(w, "attributes");
	attr_str(w, "service.name", "vigil-collector");
	attr_str(w, "host.name", collector_host);
	jsonw_arr_close(w);
	jsonw_obj_close(w);
	jsonw_arr_open(w, "scopeLogs");
	jsonw_obj_open(w);
	jsonw_key(w, "scope");
	jsonw_obj_open(w);
	jsonw_str(w, "name", "vigil");
	jsonw_obj_close(w);
	jsonw_arr_open(w, "logRecords");
}

void siem_otlp_close(struct jsonw *w)
{
	jsonw_arr_close(w);   /* logRecords */
	jsonw_obj_close(w);
	jsonw_arr_close(w);   /* scopeLogs */
	jsonw_obj_close(w);
	jsonw_arr_close(w);   /* resourceLogs */
	jsonw_obj_close(w);
}

void siem_otlp_record(const struct store_event *e, struct jsonw *w)
{
	char ns[32], fs[1024];
	bool warn = is_block(e) || kind_is_incident(e);
	snprintf(ns, sizeof(ns), "%lld000", (long long)e->time_us);
	if (store_findings_format(e->findings, e->nfindings, fs, sizeof(fs)))
		snprintf(fs, sizeof(fs), "(too many)");
	jsonw_obj_open(w);
	jsonw_str(w, "timeUnixNano", ns);
	jsonw_str(w, "observedTimeUnixNano", ns);
	jsonw_u64(w, "severityNumber", warn ? 13 : 9);   /* WARN : INFO */
	jsonw_str(w, "severityText", warn ? "WARN" : "INFO");
	jsonw_key(w, "body");
	jsonw_obj_open(w);
	jsonw_str(w, "stringValue", has(e->kind) ? e->kind : "event");
	jsonw_obj_close(w);
	jsonw_arr_open(w, "attributes");
	attr_str(w, "event.name", "vigil.audit");
	if (has(e->provider))
		attr_str(w, "gen_ai.provider.name", otel_provider(e->provider));
	attr_str(w, "gen_ai.request.model", e->model);
	attr_str(w, "gen_ai.operation.name", otel_operation(e));
	if (kind_is(e, "request") || e->prompt_tokens || e->completion_tokens) {
		attr_int(w, "gen_ai.usage.input_tokens", e->prompt_tokens);
		attr_int(w, "gen_ai.usage.output_tokens", e->completion_tokens);
		/* part of input_tokens, as the conventions say it should be */
		if (e->cached_tokens >= 0)
			attr_int(w, "gen_ai.usage.cache_read.input_tokens", e->cached_tokens);
	}
	attr_str(w, "server.address", e->sni);
	if (e->dst_port)
		attr_int(w, "server.port", e->dst_port);
	attr_str(w, "http.request.method", e->method);
	if (e->status)
		attr_int(w, "http.response.status_code", e->status);
	attr_str(w, "vigil.event_id", e->event_id);
	attr_str(w, "vigil.agent_id", e->agent_id);
	attr_str(w, "vigil.boot_id", e->boot_id);
	attr_int(w, "vigil.seq", (int64_t)e->seq);
	attr_str(w, "vigil.kind", e->kind);
	attr_str(w, "vigil.host", e->host);
	attr_str(w, "vigil.user", e->user);
	attr_int(w, "vigil.uid", e->uid);
	attr_int(w, "vigil.pid", e->pid);
	attr_str(w, "vigil.comm", e->comm);
	attr_str(w, "vigil.exe", e->exe);
	attr_str(w, "vigil.cgroup", e->cgroup);
	attr_str(w, "vigil.dst_ip", e->dst_ip);
	attr_str(w, "vigil.path", e->path);
	attr_str(w, "vigil.action", e->action);
	attr_str(w, "vigil.rule", e->rule);
	attr_str(w, "vigil.reason", e->reason);
	attr_str(w, "vigil.error", e->error);
	attr_str(w, "vigil.findings", fs);
	/* OpenTelemetry's MCP and GenAI tool conventions. */
	attr_str(w, "mcp.method.name", e->mcp_method);
	attr_str(w, "mcp.session.id", e->mcp_session);
	attr_str(w, "gen_ai.tool.name", e->tool);
	attr_str(w, "vigil.mcp_server", e->mcp_server);
	if (e->injection_score >= 0)
		attr_double(w, "vigil.injection_score", e->injection_score);
	if (e->latency_ms)
		attr_int(w, "vigil.latency_ms", e->latency_ms);
	jsonw_arr_close(w);
	jsonw_obj_close(w);
}

/* ---- OCSF 1.3.0 ---- */

#define OCSF_VERSION "1.3.0"

unsigned siem_ocsf_classes(const struct store_event *e)
{
	unsigned m = 0;
	if (kind_is_incident(e))
		return SIEM_OCSF_DETECTION;
	m |= SIEM_OCSF_ACTIVITY;
	for (size_t i = 0; i < e->nfindings; i++)
		m |= finding_is_injection(&e->findings[i]) ? SIEM_OCSF_DETECTION : SIEM_OCSF_DATA;
	return m;
}

/* HTTP Activity activity_id from the method (99 Other). */
static int http_activity(const char *m)
{
	static const char *const names[] = { "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE" };
	for (int i = 0; has(m) && i < 8; i++)
		if (!strcmp(m, names[i]))
			return i + 1;
	return 99;
}

static void ocsf_endpoints(const struct store_event *e, struct jsonw *w)
{
	jsonw_key(w, "actor");
	jsonw_obj_open(w);
	jsonw_key(w, "user");
	jsonw_obj_open(w);
	jsonw_str(w, "name", has(e->user) ? e->user : NULL);
	if (e->uid >= 0) {
		char u[24];
		snprintf(u, sizeof(u), "%lld", (long long)e->uid);
		jsonw_str(w, "uid", u);
	}
	jsonw_obj_close(w);
	jsonw_key(w, "process");
	jsonw_obj_open(w);
	jsonw_i64(w, "pid", e->pid);
	jsonw_str(w, "name", has(e->comm) ? e->comm : NULL);
	jsonw_key(w, "file");
	jsonw_obj_open(w);
	const char *base = has(e->exe) ? strrchr(e->exe, '/') : NULL;
	jsonw_str(w, "path", has(e->exe) ? e->exe : NULL);
	jsonw_str(w, "name", base ? base + 1 : has(e->exe) ? e->exe : "unknown");
	jsonw_u64(w, "type_id", 1);   /* Regular File */
	jsonw_obj_close(w);
	jsonw_obj_close(w);
	jsonw_obj_close(w);
	jsonw_key(w, "src_endpoint");
	jsonw_obj_open(w);
	jsonw_str(w, "hostname", has(e->host) ? e->host : NULL);
	jsonw_str(w, "uid", has(e->agent_id) ? e->agent_id : NULL);
	jsonw_obj_close(w);
	jsonw_key(w, "dst_endpoint");
	jsonw_obj_open(w);
	jsonw_str(w, "hostname", has(e->sni) ? e->sni : NULL);
	if (has(e->dst_ip))
		jsonw_str(w, "ip", e->dst_ip);
	if (e->dst_port)
		jsonw_i64(w, "port", e->dst_port);
	jsonw_obj_close(w);
}

/* What OCSF keeps no place for: our provider, model, tokens, chain position. */
static void ocsf_unmapped(const struct store_event *e, struct jsonw *w)
{
	char fs[1024];
	if (store_findings_format(e->findings, e->nfindings, fs, sizeof(fs)))
		snprintf(fs, sizeof(fs), "(too many)");
	jsonw_key(w, "unmapped");
	jsonw_obj_open(w);
	jsonw_str(w, "vigil.kind", e->kind);
	jsonw_str(w, "vigil.provider", e->provider);
	jsonw_str(w, "vigil.model", e->model);
	jsonw_str(w, "vigil.rule", e->rule);
	jsonw_str(w, "vigil.findings", fs);
	if (has(e->mcp_server) || has(e->mcp_method) || has(e->tool)) {
		jsonw_str(w, "vigil.mcp_server", e->mcp_server);
		jsonw_str(w, "vigil.mcp_method", e->mcp_method);
		jsonw_str(w, "vigil.tool", e->tool);
		jsonw_str(w, "vigil.mcp_session", e->mcp_session);
	}
	jsonw_i64(w, "vigil.prompt_tokens", e->prompt_tokens);
	jsonw_i64(w, "vigil.completion_tokens", e->completion_tokens);
	if (e->cached_tokens >= 0)
		jsonw_i64(w, "vigil.cached_tokens", e->cached_tokens);
	jsonw_str(w, "vigil.agent_id", e->agent_id);
	jsonw_u64(w, "vigil.seq", e->seq);
	jsonw_obj_close(w);
}

static void ocsf_head(const struct store_event *e, int class_uid, const char *class_name, int category_uid,
		      const char *category_name, int activity_id, const char *activity_name, int severity_id,
		      struct jsonw *w)
{
	jsonw_u64(w, "class_uid", (uint64_t)class_uid);
	jsonw_str(w, "class_name", class_name);
	jsonw_u64(w, "category_uid", (uint64_t)category_uid);
	jsonw_str(w, "category_name", category_name);
	jsonw_u64(w, "activity_id", (uint64_t)activity_id);
	jsonw_str(w, "activity_name", activity_name);
	jsonw_u64(w, "type_uid", (uint64_t)class_uid * 100 + (uint64_t)activity_id);
	jsonw_u64(w, "severity_id", (uint64_t)severity_id);
	jsonw_str(w, "severity", severity_id >= 4 ? "High" : severity_id == 3 ? "Medium" : severity_id == 2 ? "Low"
								     : "Informational");
	jsonw_i64(w, "time", e->time_us / 1000);
	jsonw_key(w, "metadata");
	jsonw_obj_open(w);
	jsonw_str(w, "version", OCSF_VERSION);
	jsonw_str(w, "uid", e->event_id);
	jsonw_key(w, "product");
	jsonw_obj_open(w);
	jsonw_str(w, "name", "Vigil");
	jsonw_str(w, "vendor_name", "Vigil");
	jsonw_str(w, "version", "1");
	jsonw_obj_close(w);
	jsonw_obj_close(w);
	bool block = is_block(e);
	jsonw_u64(w, "action_id", block ? 2 : 1);
	jsonw_str(w, "action", block ? "Denied" : "Allowed");
	jsonw_u64(w, "disposition_id", block ? 2 : 1);
	jsonw_str(w, "disposition", block ? "Blocked" : "Allowed");
}

static void ocsf_activity(const struct store_event *e, struct jsonw *w)
{
	bool conn = kind_is(e, "connection");
	int act = conn ? 6 : http_activity(e->method);   /* 4001: 6 Traffic */
	ocsf_head(e, conn ? 4001 : 4002, conn ? "Network Activity" : "HTTP Activity", 4, "Network Activity", act,
		  conn ? "Traffic" : act == 99 ? "Other" : e->method, is_block(e) ? 3 : 1, w);
	ocsf_endpoints(e, w);
	if (!conn) {
		char url[1024];
		snprintf(url, sizeof(url), "https://%s%s", has(e->sni) ? e->sni : "", has(e->path) ? e->path : "");
		jsonw_key(w, "http_request");
		jsonw_obj_open(w);
		jsonw_str(w, "http_method", has(e->method) ? e->method : NULL);
		jsonw_key(w, "url");
		jsonw_obj_open(w);
		jsonw_str(w, "hostname", has(e->sni) ? e->sni : NULL);
		jsonw_str(w, "path", has(e->path) ? e->path : NULL);
		jsonw_str(w, "scheme", "https");
		jsonw_str(w, "url_string", url);
		jsonw_obj_close(w);
		jsonw_obj_close(w);
		if (e->status) {
			jsonw_key(w, "http_response");
			jsonw_obj_open(w);
			jsonw_i64(w, "code", e->status);
			jsonw_obj_close(w);
		}
	}
	jsonw_key(w, "traffic");
	jsonw_obj_open(w);
	jsonw_i64(w, "bytes_out", e->bytes_up);
	jsonw_i64(w, "bytes_in", e->bytes_down);
	jsonw_obj_close(w);
}

static void ocsf_finding_info(const struct store_event *e, const char *suffix, const char *title, struct jsonw *w,
			      bool data)
{
	char uid[256];
	snprintf(uid, sizeof(uid), "%s:%s", has(e->event_id) ? e->event_id : "-", suffix);
	jsonw_key(w, "finding_info");
	jsonw_obj_open(w);
	jsonw_str(w, "uid", uid);
	jsonw_str(w, "title", title);
	jsonw_arr_open(w, "types");
	if (kind_is_incident(e))
		jsonw_str(w, NULL, e->kind);
	else
		for (size_t i = 0; i < e->nfindings; i++)
			if (finding_is_injection(&e->findings[i]) != data)
				jsonw_str(w, NULL, e->findings[i].type);
	jsonw_arr_close(w);
	jsonw_str(w, "desc", has(e->reason) ? e->reason : NULL);
	jsonw_obj_close(w);
}

static void ocsf_data(const struct store_event *e, struct jsonw *w)
{
	ocsf_head(e, 2006, "Data Security Finding", 2, "Findings", 1, "Create", is_block(e) ? 4 : 3, w);
	jsonw_u64(w, "status_id", 1);   /* New */
	ocsf_finding_info(e, "data", "Sensitive data in an AI request", w, true);
	jsonw_key(w, "data_security");
	jsonw_obj_open(w);
	jsonw_u64(w, "data_lifecycle_state_id", 3);   /* Data in Transit */
	jsonw_u64(w, "detection_system_id", 6);       /* Data Loss Prevention */
	jsonw_obj_close(w);
	ocsf_endpoints(e, w);
}

static void ocsf_detection(const struct store_event *e, struct jsonw *w)
{
	bool incident = kind_is_incident(e);
	ocsf_head(e, 2004, "Detection Finding", 2, "Findings", 1, "Create", incident || is_block(e) ? 4 : 3, w);
	jsonw_u64(w, "status_id", 1);
	ocsf_finding_info(e, incident ? e->kind : "injection",
			  incident ? "Vigil pipeline incident" : "Prompt injection in an AI exchange", w, false);
	if (e->injection_score >= 0)
		jsonw_i64(w, "risk_score", (int64_t)(e->injection_score * 100));
	ocsf_endpoints(e, w);
}

void siem_ocsf_record(const struct store_event *e, enum siem_ocsf_class c, struct jsonw *w)
{
	jsonw_obj_open(w);
	if (c == SIEM_OCSF_ACTIVITY)
		ocsf_activity(e, w);
	else if (c == SIEM_OCSF_DATA)
		ocsf_data(e, w);
	else
		ocsf_detection(e, w);
	ocsf_unmapped(e, w);
	jsonw_obj_close(w);
}

/* ---- Splunk HEC ---- */

void siem_hec_event(const struct store_event *e, struct jsonw *w)
{
	char t[40];
	snprintf(t, sizeof(t), "%lld.%06lld", (long long)(e->time_us / 1000000), (long long)(e->time_us % 1000000));
	jsonw_obj_open(w);
	jsonw_key(w, "time");
	jsonw_raw(w, t, strlen(t));
	w->need_comma = true;   /* raw does not know it wrote a value */
	jsonw_str(w, "host", has(e->host) ? e->host : "unknown");
	jsonw_str(w, "source", "vigil-collector");
	jsonw_str(w, "sourcetype", "vigil:event");
	jsonw_key(w, "event");
	export_json(e, w);
	jsonw_obj_close(w);
}
